//! The executor: runs a [`Plan`] on tokio, independent steps in parallel.
//!
//! A step is: record "started", gather the exact upstream versions, run the compute function
//! (retrying per the asset's policy), store the output through the [`IoManager`], then record
//! the materialization in one transaction. Cancellation stops new steps, interrupts running
//! computations, and never interrupts that final transaction, so a step is recorded entirely or
//! not at all. A failing asset is data (a failed step), not an `Err`: `Err` means the lineage
//! store itself failed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lineage::{
    EventKind, InputVersion, LineageStore, MaterializationId, NewRequest, NewRun, RequestId, RequestState, RunEvent,
    RunId, RunOwner, RunStatus, Trigger,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::context::{Clock, Inputs, Resources};
use crate::definition::{AssetKey, Definitions};
use crate::graph::AssetId;
use crate::io::IoManager;
use crate::partition::PartitionsContext;
use crate::plan::Plan;
use crate::worker::{Until, WorkerConfig, run_worker};

/// The executor failed to talk to the lineage store; the run's state may be incomplete.
#[derive(Debug, thiserror::Error)]
#[error("lineage store failed during run {run_id}")]
pub struct ExecError {
    /// The run.
    pub run_id: RunId,
    /// The store's error.
    #[source]
    pub source: lineage::Error,
}

/// How one run is executed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// At most this many steps at once.
    pub concurrency: usize,
    /// What asked for the run.
    pub trigger: Trigger,
    /// The selection as the user wrote it.
    pub selection: String,
    /// Tags stored with the run.
    pub tags: serde_json::Value,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { concurrency: 8, trigger: Trigger::Manual, selection: String::new(), tags: serde_json::json!({}) }
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum StepStatus {
    /// Materialized.
    Succeeded {
        /// The recorded materialization.
        materialization_id: MaterializationId,
        /// Its data version.
        data_version: String,
        /// Where the output lives.
        storage_uri: Option<String>,
        /// Output bytes.
        bytes: Option<u64>,
        /// Output rows.
        rows: Option<u64>,
        /// Which attempt succeeded.
        attempt: u32,
    },
    /// Failed for good.
    Failed {
        /// The last error.
        error: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Not run: an upstream step failed.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not run or interrupted: the run was canceled.
    Canceled,
}

/// The outcome of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    /// Index in the plan.
    pub step_idx: usize,
    /// The asset.
    pub asset: AssetKey,
    /// The partition.
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: StepStatus,
    /// Wall time from start to end (zero when it never started).
    #[serde(rename = "duration_ms", serialize_with = "ser_millis")]
    pub duration: Duration,
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The run.
    pub run_id: RunId,
    /// How it ended.
    pub status: RunStatus,
    /// Every step, in plan order.
    pub steps: Vec<StepOutcome>,
    /// Wall time of the whole run.
    #[serde(rename = "duration_ms", serialize_with = "ser_millis")]
    pub duration: Duration,
}

/// What the executor reports while it works (progress bars, log lines).
pub enum ExecEvent<'a> {
    /// A run started with this many steps.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// Steps in the plan.
        n_steps: usize,
    },
    /// A step started.
    StepStarted {
        /// The asset.
        asset: &'a AssetKey,
        /// The partition.
        partition_key: &'a str,
    },
    /// An attempt failed and will be retried after `delay`.
    StepRetrying {
        /// The asset.
        asset: &'a AssetKey,
        /// The partition.
        partition_key: &'a str,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next.
        delay: Duration,
        /// The error.
        error: &'a str,
    },
    /// A step ended.
    StepFinished(&'a StepOutcome),
}

/// Receives [`ExecEvent`]s; the binary turns them into progress bars or log lines.
pub trait Observer: Send + Sync {
    /// Called for every event, from any task.
    fn on_event(&self, event: ExecEvent<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_event(&self, _event: ExecEvent<'_>) {}
}

/// Everything a run needs, wired once by the binary.
#[derive(Clone)]
pub struct Executor {
    /// The asset definitions.
    pub defs: Definitions,
    /// Where facts are recorded.
    pub store: Arc<dyn LineageStore>,
    /// Where outputs are stored.
    pub io: Arc<dyn IoManager>,
    /// Resources by key.
    pub resources: Resources,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// blake3 over the ordered input versions: (asset, partition, data version) per line.
pub fn inputs_hash(inputs: &[InputVersion]) -> String {
    let mut h = blake3::Hasher::new();
    for i in inputs {
        h.update(i.asset_key.as_bytes());
        h.update(b"\x1f");
        h.update(i.partition_key.as_bytes());
        h.update(b"\x1f");
        h.update(i.data_version.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// The logical version: blake3 of the code version and the inputs hash.
pub fn logical_version(code_version: &str, inputs_hash: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(code_version.as_bytes());
    h.update(b"\x1f");
    h.update(inputs_hash.as_bytes());
    h.finalize().to_hex().to_string()
}

/// The requests of one run for `plan` (one per step, keyed `{key}:{asset}:{partition}`) and the
/// edges between them (`(upstream index, downstream index)`), ready for `submit_run`.
pub fn plan_requests(
    defs: &Definitions,
    plan: &Plan,
    run_id: RunId,
    key: &str,
    trigger: Trigger,
    now: chrono::DateTime<chrono::Utc>,
) -> (Vec<NewRequest>, Vec<(usize, usize)>) {
    let graph = defs.graph();
    let requests = plan
        .steps
        .iter()
        .map(|step| {
            let def = graph.asset(step.asset);
            NewRequest {
                id: RequestId::new(),
                idempotency_key: format!("{key}:{}:{}", def.key, step.partition_key),
                run_id,
                asset_key: def.key.to_string(),
                partition_key: step.partition_key.clone(),
                trigger,
                pool: def.request_pool(&step.partition_key),
                // Downstream first: a cell whose inputs just finished is claimed before the
                // remaining upstream cells, so a daily bill follows its 24th hour at once.
                priority: graph.rank(step.asset) as i64,
                max_attempts: def.retry.max_attempts as i64,
                // Queue time is wall time (see `worker`): claimable at once.
                run_at: chrono::Utc::now(),
                created_at: now,
            }
        })
        .collect();
    let edges = plan.steps.iter().enumerate().flat_map(|(i, s)| s.deps.iter().map(move |d| (*d, i))).collect();
    (requests, edges)
}

impl Executor {
    /// The partitions context at the clock's current time, with the dynamic keys `assets` use
    /// (every asset's when `None`) as the store holds them now.
    pub async fn partitions_context(&self, assets: Option<&[AssetId]>) -> Result<PartitionsContext, lineage::Error> {
        self.partitions_context_at(assets, self.clock.now()).await
    }

    /// [`Executor::partitions_context`] at another time (a schedule's tick).
    pub async fn partitions_context_at(
        &self,
        assets: Option<&[AssetId]>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<PartitionsContext, lineage::Error> {
        PartitionsContext::load(&*self.store, self.defs.graph(), assets, now).await
    }

    /// Runs `plan` to the end (or until `cancel`): submits it to the request queue as one run
    /// (a request per step, edges for its dependencies) and drains that run with an in-process
    /// worker, the same code `robo-assets worker` runs. A plan without steps runs and records
    /// nothing: its outcome has no steps and names a run the store does not hold.
    pub async fn execute(
        &self,
        plan: &Plan,
        config: &RunConfig,
        observer: Arc<dyn Observer>,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, ExecError> {
        let started = Instant::now();
        let run_id = RunId::new();
        if plan.steps.is_empty() {
            // Nothing to run: no run is recorded (a run without requests would never end).
            return Ok(RunOutcome {
                run_id,
                status: RunStatus::Succeeded,
                steps: Vec::new(),
                duration: started.elapsed(),
            });
        }
        let err = |source| ExecError { run_id, source };
        let now = self.clock.now();
        let graph = self.defs.graph();
        // The run belongs to this process: only its worker claims the run's requests, and if the
        // process dies the run ends canceled (at once when another process of this host looks, as
        // this one does now for the runs of earlier ones; elsewhere when the lease expires).
        crate::worker::release_dead_local_workers(&*self.store).await.map_err(err)?;
        let worker = WorkerConfig { concurrency: config.concurrency.max(1), ..WorkerConfig::new(config.concurrency) };
        let owner = RunOwner {
            worker: worker.id.clone(),
            lease_until: worker.queue_clock.now() + chrono::Duration::from_std(worker.lease).expect("lease fits"),
        };
        let run = NewRun {
            id: run_id,
            trigger: config.trigger,
            selection: config.selection.clone(),
            n_steps: plan.steps.len() as i64,
            tags: config.tags.clone(),
            created_at: now,
            owner: Some(owner),
        };
        let (requests, edges) = plan_requests(&self.defs, plan, run_id, &format!("run:{run_id}"), config.trigger, now);
        // The run, its requests and its start event in one transaction: a crash leaves all or none.
        let start = RunEvent::run(run_id, now, EventKind::RunStarted, steps_text(plan.steps.len()));
        let submitted = self.store.submit_run(&run, &requests, &edges, Some(&start)).await.map_err(err)?;
        observer.on_event(ExecEvent::RunStarted { run_id, n_steps: plan.steps.len() });

        if let Err(source) = run_worker(self, &worker, Until::RunEnded(run_id), observer, cancel.clone()).await {
            // Nothing else claims this run's requests (it is this process's): cancel what waits,
            // ask what runs to stop, and record the run failed.
            if let Err(e) = self.store.cancel_run(run_id, self.clock.now()).await {
                tracing::error!(message = "Could not cancel the run's requests.", %run_id, error = %e);
            }
            let event = RunEvent::run(
                run_id,
                self.clock.now(),
                EventKind::RunFailed,
                format!("lineage store failed: {source}"),
            );
            if let Err(e) = self.store.set_run_status(run_id, RunStatus::Failed, &event).await {
                tracing::error!(message = "Could not record the run as failed.", %run_id, error = %e);
            }
            return Err(ExecError { run_id, source });
        }
        if cancel.is_cancelled() {
            // Whatever has not started is canceled; the run ends canceled.
            self.store.cancel_run(run_id, self.clock.now()).await.map_err(err)?;
        }

        // The outcome, from what the store recorded.
        let records: HashMap<RequestId, lineage::RequestRecord> = self
            .store
            .requests(Some(run_id), None, None, plan.steps.len() as i64 + 1)
            .await
            .map_err(err)?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let materializations: HashMap<i64, lineage::MaterializationRecord> =
            self.store.run_materializations(run_id).await.map_err(err)?.into_iter().map(|m| (m.id, m)).collect();
        let state_of = |i: usize| records.get(&submitted[i].id).map(|r| r.state);
        let mut steps = Vec::with_capacity(plan.steps.len());
        for (i, step) in plan.steps.iter().enumerate() {
            let record = records.get(&submitted[i].id);
            let duration = record
                .and_then(|r| Some((r.finished_at? - r.started_at?).to_std().unwrap_or_default()))
                .unwrap_or_default();
            let status = match record.map(|r| r.state) {
                Some(RequestState::Succeeded) => {
                    let r = record.expect("matched");
                    let m = r.materialization_id.and_then(|id| materializations.get(&id));
                    StepStatus::Succeeded {
                        materialization_id: r.materialization_id.unwrap_or_default(),
                        data_version: m.map(|m| m.data_version.clone()).unwrap_or_default(),
                        storage_uri: m.and_then(|m| m.storage_uri.clone()),
                        bytes: m.and_then(|m| m.bytes).map(|b| b as u64),
                        rows: m.and_then(|m| m.row_count).map(|r| r as u64),
                        attempt: r.attempt as u32,
                    }
                }
                Some(RequestState::Failed) => {
                    let r = record.expect("matched");
                    StepStatus::Failed { error: r.last_error.clone().unwrap_or_default(), attempts: r.attempt as u32 }
                }
                Some(RequestState::UpstreamFailed) => {
                    // Name the failed step upstream of it.
                    let mut queue: VecDeque<usize> = step.deps.iter().copied().collect();
                    let mut failed = None;
                    while let Some(d) = queue.pop_front() {
                        if state_of(d) == Some(RequestState::Failed) {
                            failed = Some(d);
                            break;
                        }
                        queue.extend(plan.steps[d].deps.iter().copied());
                    }
                    match failed {
                        Some(d) => {
                            let up = &plan.steps[d];
                            let name = format!("{} {}", graph.asset(up.asset).key, up.partition_key);
                            StepStatus::Skipped { reason: format!("upstream step {} failed", name.trim_end()) }
                        }
                        None => StepStatus::Canceled,
                    }
                }
                _ => StepStatus::Canceled,
            };
            steps.push(StepOutcome {
                step_idx: i,
                asset: graph.asset(step.asset).key.clone(),
                partition_key: step.partition_key.clone(),
                status,
                duration,
            });
        }
        let run = self
            .store
            .run(run_id)
            .await
            .map_err(err)?
            .ok_or(ExecError { run_id, source: lineage::Error::UnknownRun(run_id) })?;
        let status = if run.status.is_terminal() {
            run.status
        } else if cancel.is_cancelled() {
            RunStatus::Canceled
        } else {
            RunStatus::Failed
        };
        let (kind, message) = match status {
            RunStatus::Succeeded => (EventKind::RunSucceeded, format!("{} materialized", steps_text(steps.len()))),
            RunStatus::Canceled => (EventKind::RunCanceled, "canceled".to_owned()),
            _ => (EventKind::RunFailed, "some steps failed".to_owned()),
        };
        let event = RunEvent::run(run_id, self.clock.now(), kind, message);
        if run.status.is_terminal() {
            self.store.append_event(&event).await.map_err(err)?;
        } else {
            self.store.set_run_status(run_id, status, &event).await.map_err(err)?;
        }
        Ok(RunOutcome { run_id, status, steps, duration: started.elapsed() })
    }
}

/// "1 step", "25 steps": the run events' count of steps.
fn steps_text(n: usize) -> String {
    format!("{n} step{}", if n == 1 { "" } else { "s" })
}

/// Gathers the current upstream versions a step reads.
pub(crate) async fn gather_inputs(
    exec: &Executor,
    ctx: &PartitionsContext,
    asset: AssetId,
    partition_key: &str,
) -> Result<Result<Inputs, String>, lineage::Error> {
    let graph = exec.defs.graph();
    let mut inputs = Inputs::default();
    let upstream = match crate::plan::upstream_partitions(graph, asset, partition_key, ctx) {
        Ok(upstream) => upstream,
        Err(e) => return Ok(Err(format!("mapping {partition_key:?} onto its upstream: {e}"))),
    };
    for (up, keys) in upstream {
        let up = graph.asset(up);
        let wanted: Vec<(String, String)> = keys.iter().map(|k| (up.key.to_string(), k.clone())).collect();
        let states = exec.store.partition_states_of(&wanted).await?;
        let mut versions = Vec::with_capacity(keys.len());
        for ((_, key), state) in wanted.into_iter().zip(states) {
            match state.and_then(|s| Some((s.current_materialization_id?, s.data_version?))) {
                Some((id, data_version)) => versions.push(InputVersion {
                    asset_key: up.key.to_string(),
                    partition_key: key,
                    materialization_id: Some(id),
                    data_version,
                }),
                None => {
                    return Ok(Err(format!("upstream {} partition {key:?} has no materialization", up.key)));
                }
            }
        }
        inputs.by_asset.push((up.key.clone(), versions));
    }
    Ok(Ok(inputs))
}

pub(crate) fn metadata_version(metadata: &serde_json::Map<String, serde_json::Value>) -> String {
    blake3::hash(serde_json::Value::Object(metadata.clone()).to_string().as_bytes()).to_hex().to_string()
}
