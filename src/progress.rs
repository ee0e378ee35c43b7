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
                with_rate_and_eta(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} steps  {rate}  eta {eta_human}  {msg}",
                    )
                    .expect("valid template"),
                )
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
                        tracing::warn!(message = "Step attempt failed; retrying.", %asset, partition = partition_key, attempt, error);
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
                        eta = human(eta),
                    );
                }
            }
        }
    }
}

/// Reports a backfill's progress on stderr: a bar per asset (counts, running and failed cells,
/// ETA) on a terminal, a log line with every asset's counts otherwise. A failure is printed the
/// first time its error is seen for an asset; the same error again only counts, and
/// [`BackfillProgress::finish`] prints each repeated one once, with how many cells it failed
/// (`24 × usage_snapshot failed: …`).
pub struct BackfillProgress {
    multi: Option<indicatif::MultiProgress>,
    bars: Vec<(String, ProgressBar)>,
    lines: Mutex<BackfillLines>,
}

/// One asset's cells as the backfill goes.
#[derive(Debug, Clone, Default)]
struct AssetCells {
    asset: String,
    /// Ended (in any way).
    done: usize,
    total: usize,
    running: usize,
    failed: usize,
}

impl AssetCells {
    fn text(&self) -> String {
        let mut text = format!("{} {}/{}", self.asset, self.done, self.total);
        if self.running > 0 || self.failed > 0 {
            text.push_str(&format!(" ({} running, {} failed)", self.running, self.failed));
        }
        text
    }
}

struct BackfillLines {
    assets: Vec<AssetCells>,
    started: Instant,
    last: Instant,
    failed: usize,
    /// Failures by (asset, error), in the order first seen, with how many cells each failed.
    failures: Vec<((String, String), usize)>,
}

impl BackfillProgress {
    /// `assets` in dependency order: (asset, cells done so far, cells in all).
    pub fn new(assets: &[(String, usize, usize)]) -> BackfillProgress {
        let width = assets.iter().map(|(a, ..)| a.len()).max().unwrap_or(8);
        let (multi, bars) = if std::io::stderr().is_terminal() {
            let multi = indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = with_rate_and_eta(
                ProgressStyle::with_template(&format!(
                    "{{prefix:<{width}}} {{bar:32.cyan/blue}} {{pos:>6}}/{{len:<6}} {{rate:>8}}  eta {{eta_human:<7}} {{msg}}"
                ))
                .expect("valid template"),
            )
            .progress_chars("█▉▊▋▌▍▎▏ ");
            let bars = assets
                .iter()
                .map(|(asset, done, total)| {
                    let bar = multi.add(ProgressBar::new(*total as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(asset.clone());
                    bar.set_position(*done as u64);
                    bar.enable_steady_tick(Duration::from_millis(200));
                    (asset.clone(), bar)
                })
                .collect();
            (Some(multi), bars)
        } else {
            (None, Vec::new())
        };
        let now = Instant::now();
        let lines = BackfillLines {
            assets: assets
                .iter()
                .map(|(asset, done, total)| AssetCells {
                    asset: asset.clone(),
                    done: *done,
                    total: *total,
                    ..Default::default()
                })
                .collect(),
            started: now,
            last: now,
            failed: 0,
            failures: Vec::new(),
        };
        if multi.is_none() {
            // Without a terminal, the first line comes at once: what is to do, before any of it.
            lines.log(now);
        }
        BackfillProgress { multi, bars, lines: Mutex::new(lines) }
    }

    /// Removes the bars, leaving the terminal clean for the summary, and prints each failure
    /// that repeated once, with its count.
    pub fn finish(&self) {
        for (_, bar) in &self.bars {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
        let lines = self.lines.lock().expect("not poisoned");
        for ((asset, error), n) in lines.failures.iter().filter(|(_, n)| *n > 1) {
            let text = format!("{n} × {asset} failed: {error}");
            if self.multi.is_some() {
                eprintln!("  ✗ {text}");
            } else {
                tracing::warn!(message = "Cells failed alike.", detail = %text);
            }
        }
    }
}

impl BackfillLines {
    fn log(&self, now: Instant) {
        let (done, total) = self.assets.iter().fold((0, 0), |(d, t), c| (d + c.done, t + c.total));
        let running: usize = self.assets.iter().map(|c| c.running).sum();
        let per_asset: Vec<String> = self.assets.iter().map(AssetCells::text).collect();
        tracing::info!(
            message = "Backfill progress.",
            cells = format!("{done}/{total}"),
            per_asset = per_asset.join(", "),
            running,
            failed = self.failed,
            elapsed = human(now - self.started),
        );
    }

    /// Counts a failure; true the first time its (asset, error) is seen.
    fn first_failure(&mut self, asset: &str, error: &str) -> bool {
        match self.failures.iter_mut().find(|((a, e), _)| a == asset && e == error) {
            Some((_, n)) => {
                *n += 1;
                false
            }
            None => {
                self.failures.push(((asset.to_owned(), error.to_owned()), 1));
                true
            }
        }
    }
}

impl Observer for BackfillProgress {
    fn on_event(&self, event: ExecEvent<'_>) {
        let mut lines = self.lines.lock().expect("not poisoned");
        let (asset, finished) = match &event {
            ExecEvent::StepStarted { asset, .. } => (asset.as_str(), None),
            ExecEvent::StepRetrying { asset, .. } => (asset.as_str(), None),
            ExecEvent::StepFinished(outcome) => (outcome.asset.as_str(), Some(*outcome)),
            ExecEvent::RunStarted { .. } => return,
        };
        let Some(idx) = lines.assets.iter().position(|c| c.asset == asset) else { return };
        let mut first_failure = None;
        {
            let cells = &mut lines.assets[idx];
            match &event {
                ExecEvent::StepStarted { .. } => cells.running += 1,
                // Back in the queue until its next attempt starts.
                ExecEvent::StepRetrying { .. } => cells.running = cells.running.saturating_sub(1),
                _ => {
                    cells.running = cells.running.saturating_sub(1);
                    cells.done += 1;
                }
            }
        }
        if let Some(outcome) = finished
            && let StepStatus::Failed { error, .. } = &outcome.status
        {
            lines.assets[idx].failed += 1;
            lines.failed += 1;
            if lines.first_failure(asset, error) {
                first_failure = Some(format!("failed {asset} {}: {error}", outcome.partition_key));
            }
        }
        let cells = lines.assets[idx].clone();
        if let Some(multi) = &self.multi {
            if let Some((_, bar)) = self.bars.iter().find(|(a, _)| a == asset) {
                bar.set_position(cells.done as u64);
                bar.set_message(format!("{} running, {} failed", cells.running, cells.failed));
            }
            if let Some(text) = first_failure {
                let _ = multi.println(format!("  ✗ {text}"));
            }
            return;
        }
        if let Some(text) = first_failure {
            tracing::warn!(message = "Cell failed.", detail = %text);
        }
        if finished.is_none() {
            return;
        }
        let (done, total) = lines.assets.iter().fold((0, 0), |(d, t), c| (d + c.done, t + c.total));
        let now = Instant::now();
        let tenth = (total / 10).max(1);
        if (done.is_multiple_of(tenth) && now - lines.last >= Duration::from_secs(2))
            || now - lines.last >= Duration::from_secs(10)
            || done == total
        {
            lines.last = now;
            lines.log(now);
        }
    }
}

/// A bar style with `{rate}` (steps a second, one decimal under 10, none above; `-` before the
/// first) and `{eta_human}` (a human duration; `-` until there is a rate to go by).
fn with_rate_and_eta(style: ProgressStyle) -> ProgressStyle {
    style
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate(state.per_sec()));
        })
        .with_key("eta_human", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let known = state.pos() > 0 && state.per_sec().is_finite() && state.per_sec() > 0.0;
            let _ = w.write_str(&if known { human(state.eta()) } else { "-".to_owned() });
        })
}

/// Steps a second as people read it: `71/s`, `2.5/s`, `-` when there is none yet.
fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "-".to_owned()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// A duration as people read it: `0s`, `4.2s`, `3m05s`, `2h07m`; never nanoseconds.
fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let tenths = (secs * 10.0).round() / 10.0;
        if tenths == 0.0 { "0s".to_owned() } else { format!("{tenths:.1}s") }
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the bars and the log lines count, event by event: a cell is running from its
    /// start until it ends or goes back to the queue for a retry; failures count once each and
    /// repeated errors are grouped.
    #[test]
    fn each_asset_counts_its_running_failed_and_done_cells() {
        use engine::exec::{ExecEvent, StepOutcome, StepStatus};
        let progress = BackfillProgress::new(&[("usage_snapshot".into(), 0, 4), ("storage_bill".into(), 1, 2)]);
        let snap = engine::AssetKey::parse("usage_snapshot").unwrap();
        let started = |k| ExecEvent::StepStarted { asset: &snap, partition_key: k };
        let failed = |k: &str| StepOutcome {
            step_idx: 0,
            asset: snap.clone(),
            partition_key: k.into(),
            status: StepStatus::Failed { error: "graph api 503".into(), attempts: 2 },
            duration: Duration::from_millis(5),
        };
        let texts = |p: &BackfillProgress| -> Vec<String> {
            p.lines.lock().unwrap().assets.iter().map(AssetCells::text).collect()
        };
        for k in ["h0", "h1", "h2"] {
            progress.on_event(started(k));
        }
        assert_eq!(texts(&progress), ["usage_snapshot 0/4 (3 running, 0 failed)", "storage_bill 1/2"]);
        progress.on_event(ExecEvent::StepRetrying {
            asset: &snap,
            partition_key: "h0",
            attempt: 1,
            delay: Duration::from_secs(1),
            error: "graph api 503",
        });
        assert_eq!(texts(&progress)[0], "usage_snapshot 0/4 (2 running, 0 failed)", "h0 waits for its retry");
        progress.on_event(ExecEvent::StepFinished(&failed("h1")));
        progress.on_event(ExecEvent::StepFinished(&failed("h2")));
        assert_eq!(texts(&progress)[0], "usage_snapshot 2/4 (0 running, 2 failed)");
        let lines = progress.lines.lock().unwrap();
        assert_eq!(lines.failed, 2);
        assert_eq!(lines.failures, [(("usage_snapshot".to_owned(), "graph api 503".to_owned()), 2)], "grouped");
    }

    #[test]
    fn rates_have_at_most_one_decimal() {
        assert_eq!(rate(71.126_778_625_4), "71/s");
        assert_eq!(rate(2.54), "2.5/s");
        assert_eq!(rate(0.0), "-");
        assert_eq!(rate(f64::INFINITY), "-");
    }

    #[test]
    fn durations_are_human_never_nanoseconds() {
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_nanos(3)), "0s");
        assert_eq!(human(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(7_620)), "2h07m");
    }
}
