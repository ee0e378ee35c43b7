//! Progress of a run: a bar on a terminal, plain log lines otherwise.
//!
//! Engine code never sees indicatif: it reports [`ExecEvent`]s to an [`Observer`].

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::{ExecEvent, Observer, StepStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports a run's progress on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Mutex<LineState>,
}

struct LineState {
    total: usize,
    done: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal and the run has more than one step; log lines otherwise.
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
                )
                .expect("valid template")
                .progress_chars("█▉▊▋▌▍▎▏ "),
            );
            bar
        });
        let now = Instant::now();
        Progress { bar, lines: Mutex::new(LineState { total: 0, done: 0, started: now, last: now }) }
    }

    /// Removes the bar, leaving the terminal clean for the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn on_event(&self, event: ExecEvent<'_>) {
        match event {
            ExecEvent::RunStarted { run_id, n_steps } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(n_steps as u64);
                    bar.set_message(format!("run {run_id}"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                } else {
                    let mut lines = self.lines.lock().expect("not poisoned");
                    lines.total = n_steps;
                    tracing::debug!(message = "Run started.", %run_id, steps = n_steps);
                }
            }
            ExecEvent::StepStarted { .. } => {}
            ExecEvent::StepRetrying { asset, partition_key, attempt, delay, error } => {
                let text = format!("retrying {asset} {partition_key} after attempt {attempt} in {delay:.1?}: {error}");
                match &self.bar {
                    Some(bar) => bar.println(format!("  ↻ {text}")),
                    None => {
                        tracing::warn!(message = "Step attempt failed; retrying.", %asset, partition = partition_key, attempt, error)
                    }
                }
            }
            ExecEvent::StepFinished(outcome) => {
                let failed = match &outcome.status {
                    StepStatus::Failed { error, .. } => {
                        Some(format!("failed {} {}: {error}", outcome.asset, outcome.partition_key))
                    }
                    _ => None,
                };
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    if let Some(text) = failed {
                        bar.println(format!("  ✗ {text}"));
                    }
                    return;
                }
                if let Some(text) = failed {
                    tracing::warn!(message = "Step failed.", detail = %text);
                }
                let mut lines = self.lines.lock().expect("not poisoned");
                lines.done += 1;
                // A line every 10 % of the steps, but not more often than every 2 s; short runs
                // print none (the summary says it all).
                let tenth = (lines.total / 10).max(1);
                let now = Instant::now();
                if (lines.done.is_multiple_of(tenth) && now - lines.last >= Duration::from_secs(2))
                    || now - lines.last >= Duration::from_secs(10)
                {
                    lines.last = now;
                    let elapsed = now - lines.started;
                    let eta = elapsed.mul_f64((lines.total - lines.done) as f64 / lines.done as f64);
                    tracing::info!(
                        message = "Progress.",
                        steps = format!("{}/{}", lines.done, lines.total),
                        percent = lines.done * 100 / lines.total.max(1),
                        eta = format!("{eta:.1?}"),
                    );
                }
            }
        }
    }
}
