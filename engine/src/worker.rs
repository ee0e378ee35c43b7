//! The worker: claims materialization requests from the queue, runs them, and completes them
//! fenced on its lease. `robo-assets worker` runs one per process on any number of machines;
//! `materialize` runs one in-process for its own run. There is no other execution path.
//!
//! A step: mark the partition running, gather the exact upstream versions, run the compute
//! function, store the output through the [`IoManager`](crate::IoManager), then complete the
//! request, which records the materialization in the same transaction (so a worker that lost its
//! lease records nothing). A failed attempt goes back to the queue with backoff until its
//! attempts are spent. Leases are renewed by heartbeat; the reaper returns expired ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lineage::{
    ClaimedRequest, Completion, CompletionResult, FailOutcome, FailedAttempt, InputVersion, LineageStore,
    NewCheckResult, NewMaterialization, Reaped, RequestId, RunId,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::{AssetContext, Clock, StepLog, SystemClock};
use crate::exec::{
    ExecEvent, Executor, Observer, StepOutcome, StepStatus, gather_inputs, inputs_hash, logical_version,
};

/// Queue time: leases, claims and retry times follow the wall clock, not the executor's
/// [`Clock`] (which pins "now" for partitions and recorded timestamps), so a pinned clock cannot
/// stall a retry or keep a lease alive forever. A worker reads it through its
/// [`WorkerConfig::queue_clock`], which tests replace.
pub(crate) fn queue_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Where process ids of this machine mean the same thing: the boot (Linux's boot id) and the
/// pid namespace (a container has its own). `None` where either cannot be read (not Linux):
/// then no worker is ever judged dead by its pid, and leases expire instead.
fn pid_space() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let namespace = namespace.to_string_lossy();
    let namespace = namespace.trim_start_matches("pid:[").trim_end_matches(']');
    Some(format!("{}.{namespace}", &boot.trim().get(..8)?))
}

/// This host as worker ids name it: the host name, for people, and the pid space, so a pid is
/// only ever looked up where it means the process that wrote it.
fn this_host() -> String {
    let name =
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".to_owned());
    match pid_space() {
        Some(space) => format!("{name}/{space}"),
        None => name,
    }
}

/// A name for this process in leases, `host/pid-space:pid:random`, that
/// [`is_dead_local_worker`] can judge.
pub fn process_name() -> String {
    format!("{}:{}:{:08x}", this_host(), std::process::id(), fastrand::u32(..))
}

/// Whether `owner` (a worker id, `host/pid-space:pid:random`) names a process of this boot and
/// pid namespace that no longer exists. Workers of other machines, containers or boots, and
/// every worker where the pid space cannot be known, are never judged: their leases expire.
pub fn is_dead_local_worker(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    pid_space().is_some()
        && host == this_host()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its name in leases: `host:pid:random`.
    pub id: String,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// How often an idle worker looks for work when its store wakes only this process's
    /// workers (SQLite: another process's submissions are found by polling).
    pub poll: Duration,
    /// How often an idle worker looks for work when its store wakes every process's workers
    /// (PostgreSQL's `LISTEN`/`NOTIFY`): only for what no notification announces, such as a
    /// notification lost with its connection. Retries this worker scheduled wake it when due.
    pub idle_poll: Duration,
    /// The time leases and retry times are stamped with (the wall clock); the worker schedules
    /// its heartbeats, reaper passes and polls on tokio's clock.
    pub queue_clock: Arc<dyn Clock>,
    /// When the worker is canceled (its process is stopping: SIGTERM in a rollout, Ctrl-C),
    /// put the requests it holds back in the queue, the interrupted attempts not charged, for
    /// other workers to run, instead of canceling them. `robo-assets worker` and the daemon's
    /// worker do; an in-process `materialize` does not (Ctrl-C there means stop this run).
    pub release_on_shutdown: bool,
}

impl WorkerConfig {
    /// A worker named after this host and process.
    pub fn new(concurrency: usize) -> WorkerConfig {
        WorkerConfig {
            id: process_name(),
            concurrency: concurrency.max(1),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(50),
            idle_poll: Duration::from_secs(5),
            queue_clock: Arc::new(SystemClock),
            release_on_shutdown: false,
        }
    }
}

/// When a worker stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// When canceled (a `robo-assets worker` process).
    Canceled,
    /// When this run has ended or on cancel; only this run's requests are claimed.
    RunEnded(RunId),
}

/// What a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Requests completed and recorded.
    pub completed: u64,
    /// Attempts that failed (retried or not).
    pub failed: u64,
    /// Completions rejected because the lease was lost.
    pub lease_lost: u64,
    /// Requests canceled while held.
    pub canceled: u64,
    /// Requests put back in the queue as the worker stopped (`release_on_shutdown`).
    pub released: u64,
}

enum Finished {
    Succeeded { materialization: Box<NewMaterialization>, size: Option<(u64, u64)>, checks: Vec<NewCheckResult> },
    Failed { error: String, retryable: bool, checks: Vec<NewCheckResult> },
    Canceled,
}

struct Held {
    claim: ClaimedRequest,
    token: CancellationToken,
    started: Instant,
    /// What the step's compute function logs, recorded with the attempt's outcome.
    log: StepLog,
    /// This worker claimed the request again while the step ran: the step's lease is lost, and
    /// whatever it ends with is dropped here, never handed to the store. Its attempt number is
    /// no proof of that (attempts start again when a request is reopened: the old step and the
    /// new claim can both be attempt 1 of this worker), so the store's fence could not tell.
    superseded: bool,
}

impl Held {
    /// The step's logged lines as events, taken once.
    fn messages(&self) -> Vec<lineage::RunEvent> {
        self.log.take_events(self.claim.run_id, &self.claim.asset_key, &self.claim.partition_key)
    }
}

/// When a worker next renews its leases (every third of the lease) and looks for work that lost
/// its holder (every half lease, and at once on start), on tokio's clock: paused in tests.
#[derive(Debug)]
struct Cadence {
    lease: Duration,
    next_heartbeat: Instant,
    next_reap: Instant,
}

impl Cadence {
    fn new(lease: Duration) -> Cadence {
        let now = Instant::now();
        Cadence { lease, next_heartbeat: now + lease / 3, next_reap: now }
    }

    /// Whether a heartbeat is due now; if so, the next one is a third of a lease away.
    fn heartbeat_due(&mut self) -> bool {
        let now = Instant::now();
        let due = now >= self.next_heartbeat;
        if due {
            self.next_heartbeat = now + self.lease / 3;
        }
        due
    }

    /// Whether a reaper pass is due now; if so, the next one is half a lease away.
    fn reap_due(&mut self) -> bool {
        let now = Instant::now();
        let due = now >= self.next_reap;
        if due {
            self.next_reap = now + self.lease / 2;
        }
        due
    }
}

/// Runs a worker until `until` says stop or `cancel` fires. `Err` means the lineage store failed.
pub async fn run_worker(
    exec: &Executor,
    config: &WorkerConfig,
    until: Until,
    observer: Arc<dyn Observer>,
    cancel: CancellationToken,
) -> Result<WorkerStats, lineage::Error> {
    let store = exec.store.clone();
    let only_run = match until {
        Until::RunEnded(run) => Some(run),
        Until::Canceled => None,
    };
    let mut stats = WorkerStats::default();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    // What each running step holds, by its task: one request can be held twice, when another
    // worker's reaper took it back from a step of this worker that outlived its lease and this
    // worker then claimed the retry while that step still ran.
    let mut held: HashMap<tokio::task::Id, Held> = HashMap::new();
    let mut cadence = Cadence::new(config.lease);
    // Idle, the worker waits for a wake-up from the store, a retry of its own coming due, or
    // its poll interval (rare when the store wakes every process).
    let mut work = store.work_signal();
    let poll = if work.across_processes() { config.idle_poll } else { config.poll };
    let mut retry_due: Option<Instant> = None;
    let retry_backoff = |attempt: i64| crate::retry::RetryPolicy::default().jittered_backoff(attempt.max(1) as u32);

    // Steps that finished while the worker waited, recorded at the top of the next turn.
    let mut finished: Vec<Result<(tokio::task::Id, Finished), tokio::task::JoinError>> = Vec::new();
    // Each turn claims first, for the slots the finished steps freed, then records those steps:
    // the new steps run while the completion's transaction is in flight, so they have all
    // finished by the next wait and the next turn records them in one transaction. (Recording
    // first, the steps finished during the completion were found one turn late and batches
    // alternated between large and small: 0.54 ms per cell of a backfill instead of 0.32,
    // BENCHMARKS.md.) The price: where only the finished steps' downstream is left to claim, the
    // first claim finds nothing and the completion's wake-up brings a second one; and a slot of
    // a pool is still taken while the claim runs, so the store wakes its workers when a failure
    // or cancel frees one, as when a completion does.
    loop {
        if cancel.is_cancelled() {
            for h in held.values() {
                h.token.cancel();
            }
        } else if held.len() - finished.len() < config.concurrency {
            let now = config.queue_clock.now();
            let lease_until = now + chrono::Duration::from_std(config.lease).expect("lease fits");
            let free = (config.concurrency - (held.len() - finished.len())) as i64;
            for claim in store.claim_requests(&config.id, only_run, free, now, lease_until).await? {
                let waited = (now - claim.claimable_since).to_std().unwrap_or_default();
                let asset = crate::metrics::AssetLabel { asset: claim.asset_key.clone() };
                crate::metrics::global().claim_latency.get_or_create(&asset).observe(waited.as_secs_f64());
                let token = cancel.child_token();
                let log = StepLog::new(exec.clock.clone());
                let handle = tasks.spawn(execute_claim(
                    exec.clone(),
                    claim.clone(),
                    token.clone(),
                    log.clone(),
                    observer.clone(),
                ));
                // An older attempt of the same request still running here (or finished and not
                // yet recorded) lost its lease when the request was taken back: stop it, and
                // drop what it ends with.
                for h in held.values_mut().filter(|h| h.claim.id == claim.id) {
                    h.token.cancel();
                    h.superseded = true;
                }
                held.insert(handle.id(), Held { claim, token, started: Instant::now(), log, superseded: false });
            }
        }
        let now = config.queue_clock.now();
        let mut completions = Vec::new();
        let mut sizes = Vec::new();
        for joined in finished.drain(..) {
            let (task, result) = match joined {
                Ok((task, result)) => (task, result),
                Err(join_error) => {
                    let error = format!("step task panicked: {join_error}");
                    (join_error.id(), Finished::Failed { error, retryable: false, checks: Vec::new() })
                }
            };
            let h = held.remove(&task).expect("every step task holds a request");
            if h.superseded {
                stats.lease_lost += 1;
                continue;
            }
            match result {
                Finished::Succeeded { materialization, size, checks } => {
                    let (id, attempt) = (h.claim.id, h.claim.attempt);
                    let messages = h.messages();
                    completions.push(Completion { id, attempt, materialization: *materialization, checks, messages });
                    sizes.push((h, size));
                }
                Finished::Failed { error, retryable, checks } => {
                    match fail(exec, config, &h, error, retryable, checks, &*observer).await? {
                        (FailOutcome::LeaseLost, _) => stats.lease_lost += 1,
                        (_, retry) => {
                            stats.failed += 1;
                            if let Some(delay) = retry {
                                let due = Instant::now() + delay;
                                retry_due = Some(retry_due.map_or(due, |d| d.min(due)));
                            }
                        }
                    }
                }
                // Stopping: the request goes back to the queue below, with all this worker holds.
                Finished::Canceled if config.release_on_shutdown && cancel.is_cancelled() => {}
                Finished::Canceled => {
                    if store.acknowledge_cancel(&config.id, h.claim.id, h.claim.attempt, now).await? {
                        stats.canceled += 1;
                        report(&*observer, &h, StepStatus::Canceled);
                    } else {
                        // Fenced off: the attempt's lease was lost (another worker took the
                        // request over).
                        stats.lease_lost += 1;
                    }
                }
            }
        }
        if !completions.is_empty() {
            crate::failpoint::hit("worker.before_complete");
            let results = store.complete_requests(&config.id, &completions, now).await?;
            crate::failpoint::hit("worker.after_complete");
            for ((result, completion), (h, size)) in results.into_iter().zip(&completions).zip(sizes) {
                match result {
                    CompletionResult::Recorded(materialization_id) => {
                        stats.completed += 1;
                        let m = &completion.materialization;
                        report(
                            &*observer,
                            &h,
                            StepStatus::Succeeded {
                                materialization_id,
                                data_version: m.data_version.clone(),
                                storage_uri: m.storage_uri.clone(),
                                bytes: size.map(|s| s.0),
                                rows: size.map(|s| s.1),
                                attempt: h.claim.attempt as u32,
                            },
                        );
                    }
                    CompletionResult::LeaseLost => {
                        stats.lease_lost += 1;
                        crate::metrics::global().fenced_completions.inc();
                        tracing::warn!(
                            message = "Lease lost before completion; result discarded.",
                            request = %h.claim.id,
                            asset = %h.claim.asset_key,
                            partition = %h.claim.partition_key,
                        );
                    }
                }
            }
        }

        // A worker draining one run heartbeats even when it holds nothing: it renews the lease of
        // the run it owns (an in-process `materialize`), which other processes would otherwise
        // take for abandoned.
        if (!held.is_empty() || only_run.is_some()) && cadence.heartbeat_due() {
            let ids: Vec<RequestId> = held.values().map(|h| h.claim.id).collect();
            let lease_until = config.queue_clock.now() + chrono::Duration::from_std(config.lease).expect("lease fits");
            let alive: HashMap<RequestId, bool> =
                store.heartbeat(&config.id, &ids, lease_until).await?.into_iter().collect();
            for h in held.values() {
                match alive.get(&h.claim.id) {
                    Some(false) => {}
                    // Cancel requested, or the lease is gone: stop the step; its result would be fenced off.
                    Some(true) | None => h.token.cancel(),
                }
            }
        }
        if only_run.is_none() && cadence.reap_due() {
            let released = release_dead_local_workers(&*store).await?;
            let reaped = store.reap_expired(config.queue_clock.now(), &retry_backoff).await?;
            for (what, cause, r) in [
                ("of processes of this host that exited", "holder_exited", released),
                ("whose lease expired", "lease_expired", reaped),
            ] {
                for (_, state) in &r.requests {
                    let labels = crate::metrics::SettledLabels { cause: cause.to_owned(), state: state.to_string() };
                    crate::metrics::global().settled.get_or_create(&labels).inc();
                }
                if !r.is_empty() {
                    tracing::info!(
                        message = "Settled work that lost its holder.",
                        what,
                        requests = r.requests.len(),
                        runs = r.runs.len(),
                    );
                }
            }
        }
        if held.is_empty() {
            if cancel.is_cancelled() {
                break;
            }
            if let Until::RunEnded(run) = until
                && store.run(run).await?.is_none_or(|r| r.status.is_terminal())
            {
                break;
            }
        }

        // Wait for a step to finish (then take every other finished one: group commit), a
        // heartbeat, the poll interval, or cancellation.
        tokio::select! {
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                finished.push(joined);
                while let Some(joined) = tasks.try_join_next_with_id() {
                    finished.push(joined);
                }
            }
            () = work.changed() => {}
            () = tokio::time::sleep(retry_due.map_or(poll, |due| due.saturating_duration_since(Instant::now()).min(poll))) => {
                retry_due = None;
            }
            // Enabled once canceled too while nothing is held: a cancel that lands between the
            // check above and this select would otherwise leave the worker asleep for `poll`.
            // (Disabled while steps are held: their tokens are canceled, so they finish soon.)
            _ = cancel.cancelled(), if held.is_empty() || !cancel.is_cancelled() => {}
        }
    }
    if config.release_on_shutdown && cancel.is_cancelled() {
        let released = store.release_abandoned(std::slice::from_ref(&config.id), config.queue_clock.now()).await?;
        if !released.is_empty() {
            tracing::info!(
                message = "Stopping: released the requests this worker held, for other workers.",
                requests = released.requests.len(),
            );
        }
        stats.released = released.requests.len() as u64;
    }
    Ok(stats)
}

fn report(observer: &dyn Observer, h: &Held, status: StepStatus) {
    let outcome = match status {
        StepStatus::Succeeded { .. } => "succeeded",
        StepStatus::Failed { .. } => "failed",
        StepStatus::Canceled => "canceled",
        StepStatus::Skipped { .. } => "skipped",
    };
    crate::metrics::global().step_finished(&h.claim.asset_key, outcome, h.started.elapsed());
    let outcome = StepOutcome {
        step_idx: 0,
        asset: crate::AssetKey::parse(&h.claim.asset_key)
            .unwrap_or_else(|_| crate::AssetKey::parse("unknown").expect("valid")),
        partition_key: h.claim.partition_key.clone(),
        status,
        duration: h.started.elapsed(),
    };
    observer.on_event(ExecEvent::StepFinished(&outcome));
}

/// Settles at once the requests and runs held by processes of this machine that no longer exist
/// (killed with `kill -9`), instead of when their leases expire: a killed `materialize`'s run
/// ends canceled, a killed worker's requests go back to the queue without charging the attempt.
pub async fn release_dead_local_workers(store: &dyn LineageStore) -> Result<Reaped, lineage::Error> {
    let dead: Vec<String> =
        store.lease_holders().await?.into_iter().filter(|owner| is_dead_local_worker(owner)).collect();
    store.release_abandoned(&dead, queue_now()).await
}

async fn fail(
    exec: &Executor,
    config: &WorkerConfig,
    h: &Held,
    error: String,
    retryable: bool,
    checks: Vec<NewCheckResult>,
    observer: &dyn Observer,
) -> Result<(FailOutcome, Option<Duration>), lineage::Error> {
    let claim = &h.claim;
    let now = config.queue_clock.now();
    let policy = exec.defs.graph().lookup(&claim.asset_key).ok().map(|id| exec.defs.graph().asset(id).retry);
    let delay = policy.unwrap_or_default().jittered_backoff(claim.attempt as u32);
    let retry_at = (retryable && claim.attempt < claim.max_attempts)
        .then(|| now + chrono::Duration::from_std(delay).unwrap_or_default());
    let messages = h.messages();
    let failed = FailedAttempt { id: claim.id, attempt: claim.attempt, error, retry_at, checks, messages };
    let outcome = exec.store.fail_request(&config.id, &failed, now).await?;
    match outcome {
        FailOutcome::Retrying => {
            let metrics = crate::metrics::global();
            metrics.step_finished(&claim.asset_key, "failed", h.started.elapsed());
            metrics.retries.get_or_create(&crate::metrics::AssetLabel { asset: claim.asset_key.clone() }).inc();
            let key = crate::AssetKey::parse(&claim.asset_key)
                .unwrap_or_else(|_| crate::AssetKey::parse("unknown").expect("valid"));
            observer.on_event(ExecEvent::StepRetrying {
                asset: &key,
                partition_key: &claim.partition_key,
                attempt: claim.attempt as u32,
                delay,
                error: &failed.error,
            });
        }
        FailOutcome::Failed => {
            report(observer, h, StepStatus::Failed { error: failed.error, attempts: claim.attempt as u32 });
        }
        FailOutcome::Canceled => report(observer, h, StepStatus::Canceled),
        // The lease was lost: someone else owns the request now.
        FailOutcome::LeaseLost => {}
    }
    // The worker wakes for a retry it scheduled itself, not for one it lost.
    Ok((outcome, (outcome == FailOutcome::Retrying).then_some(delay)))
}

/// Runs one claimed request up to (not including) its completion.
async fn execute_claim(
    exec: Executor,
    claim: ClaimedRequest,
    token: CancellationToken,
    log: StepLog,
    observer: Arc<dyn Observer>,
) -> Finished {
    match try_execute(&exec, &claim, &token, log, &*observer).await {
        Ok(finished) => finished,
        Err(e) => Finished::Failed { error: format!("lineage store: {e}"), retryable: true, checks: Vec::new() },
    }
}

async fn try_execute(
    exec: &Executor,
    claim: &ClaimedRequest,
    token: &CancellationToken,
    log: StepLog,
    observer: &dyn Observer,
) -> Result<Finished, lineage::Error> {
    let graph = exec.defs.graph();
    let Ok(asset) = graph.lookup(&claim.asset_key) else {
        return Ok(Finished::Failed {
            error: format!("asset {} is not defined in this deployment", claim.asset_key),
            retryable: false,
            checks: Vec::new(),
        });
    };
    let def = graph.asset(asset).clone();
    // The claim already marked the partition running.
    let started_at = exec.clock.now();
    observer.on_event(ExecEvent::StepStarted { asset: &def.key, partition_key: &claim.partition_key });
    // Dynamic keys as they are now (a sensor may have added some since this process started),
    // read only for the definitions this step maps through.
    let assets: Vec<crate::AssetId> =
        std::iter::once(asset).chain(graph.upstream(asset).iter().map(|e| e.asset)).collect();
    let ctx = exec.partitions_context(Some(&assets)).await?;
    let inputs = match gather_inputs(exec, &ctx, asset, &claim.partition_key).await? {
        Ok(inputs) => Arc::new(inputs),
        Err(error) => return Ok(Finished::Failed { error, retryable: false, checks: Vec::new() }),
    };
    let context = AssetContext {
        key: def.key.clone(),
        partition_key: claim.partition_key.clone(),
        time_window: def.partitions.as_ref().and_then(|p| p.window_of(&claim.partition_key)),
        run_id: claim.run_id,
        attempt: claim.attempt as u32,
        inputs: inputs.clone(),
        resources: exec.resources.declared_by(&def.required_resources),
        cancel: token.clone(),
        log,
        io: exec.io.clone(),
        clock: exec.clock.clone(),
        store: exec.store.clone(),
    };
    let work = async {
        let output =
            (def.compute)(context).await.map_err(|e| (e.to_string(), !e.is::<crate::definition::NotRetryable>()))?;
        // Data that fails an error check is never written: the previous output stays in place.
        let blocked = output.checks.iter().any(|c| !c.passed && c.severity == crate::Severity::Error);
        let stored = match output.table.as_ref().filter(|_| !blocked) {
            Some(table) => Some(
                exec.io
                    .store(
                        &crate::io::OutputContext {
                            asset: def.key.clone(),
                            partition_key: claim.partition_key.clone(),
                            code_version: def.code_version.clone(),
                            run_id: claim.run_id,
                        },
                        table,
                    )
                    .await
                    .map_err(|e| (format!("storing output: {e}"), true))?,
            ),
            None => None,
        };
        crate::failpoint::hit("worker.output_written");
        Ok::<_, (String, bool)>((output, stored))
    };
    let res = tokio::select! {
        biased;
        _ = token.cancelled() => return Ok(Finished::Canceled),
        res = work => res,
    };
    let (output, stored) = match res {
        Ok(ok) => ok,
        Err(_) if token.is_cancelled() => return Ok(Finished::Canceled),
        Err((error, retryable)) => return Ok(Finished::Failed { error, retryable, checks: Vec::new() }),
    };
    // Verdicts are recorded with the attempt's outcome, in its transaction: a worker that lost
    // its lease records none.
    let now = exec.clock.now();
    let checks: Vec<NewCheckResult> = output
        .checks
        .iter()
        .map(|c| NewCheckResult {
            asset_key: def.key.to_string(),
            partition_key: claim.partition_key.clone(),
            run_id: claim.run_id,
            check_name: c.name.clone(),
            severity: c.severity,
            passed: c.passed,
            message: c.message.clone(),
            created_at: now,
        })
        .collect();
    let failed: Vec<String> = output
        .checks
        .iter()
        .filter(|c| !c.passed && c.severity == crate::Severity::Error)
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect();
    if !failed.is_empty() {
        // Data that fails an error check is not recorded as a materialization: nothing
        // downstream may read it.
        let error = format!("asset check failed: {}", failed.join("; "));
        return Ok(Finished::Failed { error, retryable: false, checks });
    }
    let input_versions: Vec<InputVersion> = inputs.versions().cloned().collect();
    let inputs_hash = inputs_hash(&input_versions);
    let data_version = match (&stored, &output.data_version) {
        (Some(s), _) => s.data_version.clone(),
        (None, Some(v)) => v.clone(),
        (None, None) => crate::exec::metadata_version(&output.metadata),
    };
    let size = stored.as_ref().map(|s| (s.bytes, s.rows));
    Ok(Finished::Succeeded {
        materialization: Box::new(NewMaterialization {
            asset_key: def.key.to_string(),
            partition_key: claim.partition_key.clone(),
            run_id: claim.run_id,
            attempt: claim.attempt,
            data_version,
            logical_version: logical_version(&def.code_version, &inputs_hash),
            code_version: def.code_version.clone(),
            inputs: input_versions,
            inputs_hash,
            storage_uri: stored.as_ref().map(|s| s.uri.clone()),
            bytes: stored.as_ref().map(|s| s.bytes as i64),
            row_count: stored.as_ref().map(|s| s.rows as i64),
            schema: stored.as_ref().map(|s| s.schema.clone()),
            metadata: serde_json::Value::Object(output.metadata),
            started_at,
            finished_at: exec.clock.now(),
        }),
        size,
        checks,
    })
}

#[cfg(test)]
mod tests;
