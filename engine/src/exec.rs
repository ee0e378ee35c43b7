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

use chrono::{DateTime, Utc};
use lineage::{
    EventKind, InputVersion, LineageStore, MaterializationId, NewMaterialization, NewRun, RunEvent, RunId, RunStatus,
    StepFailure,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::{AssetContext, Clock, Inputs, Resources};
use crate::definition::{AssetKey, Definitions};
use crate::graph::AssetId;
use crate::io::IoManager;
use crate::partition::PartitionsContext;
use crate::plan::Plan;

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
    /// What asked for the run (`manual`, `schedule`, …).
    pub trigger: String,
    /// The selection as the user wrote it.
    pub selection: String,
    /// Tags stored with the run.
    pub tags: serde_json::Value,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            concurrency: 8,
            trigger: "manual".to_owned(),
            selection: String::new(),
            tags: serde_json::json!({}),
        }
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
    pub partition_key: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: StepStatus,
    /// Wall time from start to end (zero when it never started).
    #[serde(serialize_with = "ser_millis")]
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
    #[serde(serialize_with = "ser_millis")]
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
    /// Dynamic partition keys, for partitions contexts.
    pub dynamic: HashMap<String, Vec<String>>,
}

struct Shared {
    exec: Executor,
    run_id: RunId,
    observer: Arc<dyn Observer>,
    /// The partitions context the plan was made with.
    ctx: PartitionsContext,
    /// The group-commit recorder.
    recorder: mpsc::UnboundedSender<Record>,
}

/// A write for the recorder, with where to send its result.
enum Record {
    Started(RunEvent, oneshot::Sender<Result<(), lineage::Error>>),
    Materialized(Box<NewMaterialization>, oneshot::Sender<Result<MaterializationId, lineage::Error>>),
}

impl Shared {
    async fn record_started(&self, event: RunEvent) -> Result<(), lineage::Error> {
        let (tx, rx) = oneshot::channel();
        self.recorder.send(Record::Started(event, tx)).expect("the recorder outlives the run's steps");
        rx.await.expect("the recorder answers every record")
    }

    async fn record_materialization(&self, m: NewMaterialization) -> Result<MaterializationId, lineage::Error> {
        let (tx, rx) = oneshot::channel();
        self.recorder.send(Record::Materialized(Box::new(m), tx)).expect("the recorder outlives the run's steps");
        rx.await.expect("the recorder answers every record")
    }
}

/// Group commit: writes everything that is waiting in one transaction per kind, so steps that
/// finish together share one commit (and SQLite's per-statement round trips) instead of each
/// paying for its own. A record, once sent, is written even if its step task is gone.
async fn recorder(store: Arc<dyn LineageStore>, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 512).await > 0 {
        let (mut started, mut started_tx, mut done, mut done_tx) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for record in buf.drain(..) {
            match record {
                Record::Started(event, tx) => {
                    started.push(event);
                    started_tx.push(tx);
                }
                Record::Materialized(m, tx) => {
                    done.push(*m);
                    done_tx.push(tx);
                }
            }
        }
        if !started.is_empty() {
            let res = store.record_steps_started(&started).await.map_err(Arc::new);
            for tx in started_tx {
                let _ = tx.send(res.clone().map_err(lineage::Error::Batch));
            }
        }
        if !done.is_empty() {
            match store.record_materializations(&done).await {
                Ok(ids) => {
                    for (tx, id) in done_tx.into_iter().zip(ids) {
                        let _ = tx.send(Ok(id));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for tx in done_tx {
                        let _ = tx.send(Err(lineage::Error::Batch(e.clone())));
                    }
                }
            }
        }
    }
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

impl Executor {
    /// The partitions context at the clock's current time.
    pub fn partitions_context(&self) -> PartitionsContext {
        PartitionsContext { now: self.clock.now(), dynamic: self.dynamic.clone() }
    }

    /// Runs `plan` to the end (or until `cancel`), recording everything in the lineage store.
    pub async fn execute(
        &self,
        plan: &Plan,
        config: &RunConfig,
        observer: Arc<dyn Observer>,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, ExecError> {
        let started = Instant::now();
        let run_id = RunId::new();
        let err = |source| ExecError { run_id, source };
        let now = self.clock.now();
        self.store
            .create_run(&NewRun {
                id: run_id,
                trigger: config.trigger.clone(),
                selection: config.selection.clone(),
                n_steps: plan.steps.len() as i64,
                tags: config.tags.clone(),
                created_at: now,
            })
            .await
            .map_err(err)?;
        self.store
            .set_run_status(
                run_id,
                RunStatus::Running,
                &RunEvent::run(run_id, now, EventKind::RunStarted, format!("{} steps", plan.steps.len())),
            )
            .await
            .map_err(err)?;
        observer.on_event(ExecEvent::RunStarted { run_id, n_steps: plan.steps.len() });

        let ctx = PartitionsContext { now: plan.now, dynamic: self.dynamic.clone() };
        let (record_tx, record_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(recorder(self.store.clone(), record_rx));
        let shared =
            Arc::new(Shared { exec: self.clone(), run_id, observer: observer.clone(), ctx, recorder: record_tx });
        let n = plan.steps.len();
        let mut waiting: Vec<usize> = plan.steps.iter().map(|s| s.deps.len()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, step) in plan.steps.iter().enumerate() {
            for d in &step.deps {
                dependents[*d].push(i);
            }
        }
        let mut ready: VecDeque<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
        let mut outcomes: Vec<Option<StepOutcome>> = vec![None; n];
        let mut tasks: JoinSet<Result<StepOutcome, lineage::Error>> = JoinSet::new();
        let mut task_step: HashMap<tokio::task::Id, usize> = HashMap::new();
        let step_cancel = cancel.child_token();
        let concurrency = config.concurrency.max(1);
        let mut canceled = false;

        // A lineage-store failure stops the run: cancel the running steps, let them clear their
        // `running` marks, then record the run as failed (best effort) and return the error.
        let mut store_error: Option<lineage::Error> = None;
        loop {
            while !canceled && tasks.len() < concurrency {
                let Some(i) = ready.pop_front() else { break };
                let step = &plan.steps[i];
                let handle = tasks.spawn(run_step(
                    shared.clone(),
                    i,
                    step.asset,
                    step.partition_key.clone(),
                    step_cancel.clone(),
                ));
                task_step.insert(handle.id(), i);
            }
            if tasks.is_empty() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled(), if !canceled => {
                    canceled = true;
                }
                Some(joined) = tasks.join_next_with_id() => {
                    let outcome = match joined {
                        Ok((_, Ok(outcome))) => outcome,
                        Ok((_, Err(e))) => {
                            store_error.get_or_insert(e);
                            canceled = true;
                            step_cancel.cancel();
                            continue;
                        }
                        Err(join_error) => {
                            let i = task_step[&join_error.id()];
                            match self.record_panic(plan, i, &join_error, run_id).await {
                                Ok(outcome) => {
                                    observer.on_event(ExecEvent::StepFinished(&outcome));
                                    outcome
                                }
                                Err(e) => {
                                    store_error.get_or_insert(e);
                                    canceled = true;
                                    step_cancel.cancel();
                                    continue;
                                }
                            }
                        }
                    };
                    let i = outcome.step_idx;
                    match &outcome.status {
                        StepStatus::Succeeded { .. } => {
                            for &d in &dependents[i] {
                                waiting[d] -= 1;
                                if waiting[d] == 0 && outcomes[d].is_none() {
                                    ready.push_back(d);
                                }
                            }
                        }
                        StepStatus::Failed { .. } => {
                            let failed = format!("{} {}", outcome.asset, outcome.partition_key).trim_end().to_owned();
                            if let Err(e) = self.skip_downstream(plan, &dependents, i, &failed, &mut outcomes, &observer, run_id).await {
                                store_error.get_or_insert(e);
                                canceled = true;
                            }
                        }
                        StepStatus::Skipped { .. } | StepStatus::Canceled => {}
                    }
                    outcomes[i] = Some(outcome);
                }
            }
            if canceled {
                step_cancel.cancel();
            }
        }
        // Every step task is done: close the recorder's channel and let it finish its last batch.
        drop(tasks);
        drop(shared);
        let _ = recorder.await;
        if let Some(source) = store_error {
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
        let mut n_canceled = 0;
        let steps: Vec<StepOutcome> = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    n_canceled += 1;
                    StepOutcome {
                        step_idx: i,
                        asset: self.defs.graph().asset(plan.steps[i].asset).key.clone(),
                        partition_key: plan.steps[i].partition_key.clone(),
                        status: StepStatus::Canceled,
                        duration: Duration::ZERO,
                    }
                })
            })
            .collect();
        let n_failed = steps.iter().filter(|s| matches!(s.status, StepStatus::Failed { .. })).count();
        let (status, kind, message) = if canceled {
            (RunStatus::Canceled, EventKind::RunCanceled, format!("canceled; {n_canceled} steps not run"))
        } else if n_failed > 0 {
            (RunStatus::Failed, EventKind::RunFailed, format!("{n_failed} steps failed"))
        } else {
            (RunStatus::Succeeded, EventKind::RunSucceeded, format!("{} steps materialized", steps.len()))
        };
        self.store
            .set_run_status(run_id, status, &RunEvent::run(run_id, self.clock.now(), kind, message))
            .await
            .map_err(err)?;
        Ok(RunOutcome { run_id, status, steps, duration: started.elapsed() })
    }

    /// Records a step whose task panicked as failed.
    async fn record_panic(
        &self,
        plan: &Plan,
        i: usize,
        join_error: &tokio::task::JoinError,
        run_id: RunId,
    ) -> Result<StepOutcome, lineage::Error> {
        let step = &plan.steps[i];
        let error = format!("step task panicked: {join_error}");
        let outcome = StepOutcome {
            step_idx: i,
            asset: self.defs.graph().asset(step.asset).key.clone(),
            partition_key: step.partition_key.clone(),
            status: StepStatus::Failed { error: error.clone(), attempts: 1 },
            duration: Duration::ZERO,
        };
        self.store
            .record_step_failed(&StepFailure {
                run_id,
                asset_key: outcome.asset.to_string(),
                partition_key: outcome.partition_key.clone(),
                attempts: 1,
                error,
                ts: self.clock.now(),
            })
            .await?;
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    async fn skip_downstream(
        &self,
        plan: &Plan,
        dependents: &[Vec<usize>],
        failed_idx: usize,
        failed: &str,
        outcomes: &mut [Option<StepOutcome>],
        observer: &Arc<dyn Observer>,
        run_id: RunId,
    ) -> Result<(), lineage::Error> {
        let mut queue: VecDeque<usize> = dependents[failed_idx].iter().copied().collect();
        while let Some(d) = queue.pop_front() {
            if outcomes[d].is_some() {
                continue;
            }
            let step = &plan.steps[d];
            let asset = self.defs.graph().asset(step.asset).key.clone();
            let reason = format!("upstream step {failed} failed");
            self.store
                .append_event(&RunEvent::step(
                    run_id,
                    self.clock.now(),
                    EventKind::StepSkipped,
                    asset.as_str(),
                    &step.partition_key,
                    reason.clone(),
                ))
                .await?;
            let outcome = StepOutcome {
                step_idx: d,
                asset,
                partition_key: step.partition_key.clone(),
                status: StepStatus::Skipped { reason },
                duration: Duration::ZERO,
            };
            observer.on_event(ExecEvent::StepFinished(&outcome));
            outcomes[d] = Some(outcome);
            queue.extend(dependents[d].iter().copied());
        }
        Ok(())
    }
}

/// Gathers the current upstream versions a step reads.
async fn gather_inputs(
    exec: &Executor,
    ctx: &PartitionsContext,
    asset: AssetId,
    partition_key: &str,
) -> Result<Result<Inputs, String>, lineage::Error> {
    let graph = exec.defs.graph();
    let def = graph.asset(asset);
    let mut inputs = Inputs::default();
    for edge in graph.upstream(asset) {
        let up = graph.asset(edge.asset);
        let keys = match edge.mapping.upstream_keys(up.partitions.as_ref(), def.partitions.as_ref(), partition_key, ctx)
        {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(format!("mapping {} onto {}: {e}", def.key, up.key))),
        };
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

async fn record_failure(
    exec: &Executor,
    run_id: RunId,
    asset_key: &str,
    partition_key: &str,
    error: String,
    attempts: u32,
) -> Result<StepStatus, lineage::Error> {
    exec.store
        .record_step_failed(&StepFailure {
            run_id,
            asset_key: asset_key.to_owned(),
            partition_key: partition_key.to_owned(),
            attempts: attempts as i64,
            error: error.clone(),
            ts: exec.clock.now(),
        })
        .await?;
    Ok(StepStatus::Failed { error, attempts })
}

fn metadata_version(metadata: &serde_json::Map<String, serde_json::Value>) -> String {
    blake3::hash(serde_json::Value::Object(metadata.clone()).to_string().as_bytes()).to_hex().to_string()
}

async fn run_step(
    shared: Arc<Shared>,
    step_idx: usize,
    asset: AssetId,
    partition_key: String,
    cancel: CancellationToken,
) -> Result<StepOutcome, lineage::Error> {
    let exec = &shared.exec;
    let run_id = shared.run_id;
    let def = exec.defs.graph().asset(asset).clone();
    let started_at: DateTime<Utc> = exec.clock.now();
    let started = Instant::now();
    let outcome = |status| StepOutcome {
        step_idx,
        asset: def.key.clone(),
        partition_key: partition_key.clone(),
        status,
        duration: started.elapsed(),
    };
    shared
        .record_started(RunEvent::step(
            run_id,
            started_at,
            EventKind::StepStarted,
            def.key.as_str(),
            &partition_key,
            "",
        ))
        .await?;
    shared.observer.on_event(ExecEvent::StepStarted { asset: &def.key, partition_key: &partition_key });

    let inputs = match gather_inputs(exec, &shared.ctx, asset, &partition_key).await? {
        Ok(inputs) => Arc::new(inputs),
        Err(error) => {
            let o = outcome(record_failure(exec, run_id, def.key.as_str(), &partition_key, error, 0).await?);
            shared.observer.on_event(ExecEvent::StepFinished(&o));
            return Ok(o);
        }
    };
    let time_window = def.partitions.as_ref().and_then(|p| p.window_of(&partition_key));

    let mut attempt = 1u32;
    let status = loop {
        let ctx = AssetContext {
            key: def.key.clone(),
            partition_key: partition_key.clone(),
            time_window,
            run_id,
            attempt,
            inputs: inputs.clone(),
            resources: exec.resources.clone(),
            cancel: cancel.clone(),
            io: exec.io.clone(),
            clock: exec.clock.clone(),
        };
        // Compute and store the output; both stop at cancellation. The store is atomic, so an
        // interrupted write leaves no object under the final name.
        let work = async {
            let output = (def.compute)(ctx).await.map_err(|e| e.to_string())?;
            let stored = match &output.table {
                Some(table) => Some(
                    exec.io.store(&def.key, &partition_key, table).await.map_err(|e| format!("storing output: {e}"))?,
                ),
                None => None,
            };
            Ok::<_, String>((output, stored))
        };
        let res = tokio::select! {
            // Cancellation wins a tie: an attempt that ends because the run was canceled is
            // canceled, not failed.
            biased;
            _ = cancel.cancelled() => {
                exec.store.record_step_canceled(&RunEvent::step(run_id, exec.clock.now(), EventKind::StepSkipped, def.key.as_str(), &partition_key, "canceled while running")).await?;
                break StepStatus::Canceled;
            }
            res = work => res,
        };
        if res.is_err() && cancel.is_cancelled() {
            exec.store
                .record_step_canceled(&RunEvent::step(
                    run_id,
                    exec.clock.now(),
                    EventKind::StepSkipped,
                    def.key.as_str(),
                    &partition_key,
                    "canceled while running",
                ))
                .await?;
            break StepStatus::Canceled;
        }
        match res {
            Ok((output, stored)) => {
                let input_versions: Vec<InputVersion> = inputs.versions().cloned().collect();
                let inputs_hash = inputs_hash(&input_versions);
                let data_version = match (&stored, &output.data_version) {
                    (Some(s), _) => s.data_version.clone(),
                    (None, Some(v)) => v.clone(),
                    (None, None) => metadata_version(&output.metadata),
                };
                let record = NewMaterialization {
                    asset_key: def.key.to_string(),
                    partition_key: partition_key.clone(),
                    run_id,
                    attempt: attempt as i64,
                    data_version: data_version.clone(),
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
                };
                // Not cancelable: once sent, the recorder writes the materialization entirely
                // (or not at all, if the transaction fails), whatever happens to this task.
                let storage_uri = record.storage_uri.clone();
                let materialization_id = shared.record_materialization(record).await?;
                break StepStatus::Succeeded {
                    materialization_id,
                    data_version,
                    storage_uri,
                    bytes: stored.as_ref().map(|s| s.bytes),
                    rows: stored.as_ref().map(|s| s.rows),
                    attempt,
                };
            }
            Err(error) if def.retry.should_retry(attempt) => {
                let delay = def.retry.backoff(attempt, fastrand::f64());
                shared.observer.on_event(ExecEvent::StepRetrying {
                    asset: &def.key,
                    partition_key: &partition_key,
                    attempt,
                    delay,
                    error: &error,
                });
                let mut event = RunEvent::step(
                    run_id,
                    exec.clock.now(),
                    EventKind::StepRetried,
                    def.key.as_str(),
                    &partition_key,
                    error,
                );
                event.body = serde_json::json!({ "attempt": attempt, "delay_ms": delay.as_millis() as u64 });
                exec.store.append_event(&event).await?;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => {
                        exec.store.record_step_canceled(&RunEvent::step(run_id, exec.clock.now(), EventKind::StepSkipped, def.key.as_str(), &partition_key, "canceled while waiting to retry")).await?;
                        break StepStatus::Canceled;
                    }
                }
                attempt += 1;
            }
            Err(error) => {
                break record_failure(exec, run_id, def.key.as_str(), &partition_key, error, attempt).await?;
            }
        }
    };
    let o = outcome(status);
    shared.observer.on_event(ExecEvent::StepFinished(&o));
    Ok(o)
}
