//! The facts the lineage store records and returns.
//!
//! These are plain data: no behaviour beyond formatting and parsing of ids and states.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Defines a UUIDv7 id newtype: time-ordered, displayed and parsed as a UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> $name {
                $name(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(
    /// The id of a run: a UUIDv7, so ids sort by creation time.
    RunId
);

uuid_id!(
    /// The id of a materialization request: a UUIDv7.
    RequestId
);

uuid_id!(
    /// The id of a backfill: a UUIDv7.
    BackfillId
);

/// The id of one recorded materialization; also the store's global, monotonic cursor.
pub type MaterializationId = i64;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, no step started yet.
    Queued,
    /// At least one step started and the run has not ended.
    Running,
    /// Every step materialized.
    Succeeded,
    /// At least one step failed for good (others may have succeeded).
    Failed,
    /// Stopped on request (Ctrl-C or cancel) before every step finished.
    Canceled,
}

impl RunStatus {
    /// The name stored in the database and printed by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "canceled" => RunStatus::Canceled,
            other => {
                return Err(format!(
                    "unknown run status {other:?} (valid: queued, running, succeeded, failed, canceled)"
                ));
            }
        })
    }
}

/// A run about to be created.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its id.
    pub id: RunId,
    /// What asked for it: `manual`, `schedule`, `sensor`, `backfill`.
    pub trigger: String,
    /// The selection as the user wrote it, for display.
    pub selection: String,
    /// How many steps the plan holds.
    pub n_steps: i64,
    /// Free-form tags (JSON object).
    pub tags: serde_json::Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A stored run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Its id.
    pub id: RunId,
    /// Where it stands.
    pub status: RunStatus,
    /// What asked for it.
    pub trigger: String,
    /// The selection as written.
    pub selection: String,
    /// How many steps the plan held.
    pub n_steps: i64,
    /// Free-form tags.
    pub tags: serde_json::Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the first step started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The kinds of entries in a run's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The run started.
    RunStarted,
    /// A step started its first attempt.
    StepStarted,
    /// A step attempt failed and will be retried.
    StepRetried,
    /// A step materialized its output.
    StepSucceeded,
    /// A step failed for good.
    StepFailed,
    /// A step was not run because an upstream step failed or the run was canceled.
    StepSkipped,
    /// The run ended successfully.
    RunSucceeded,
    /// The run ended with failures.
    RunFailed,
    /// The run was canceled.
    RunCanceled,
}

impl EventKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "run_started",
            EventKind::StepStarted => "step_started",
            EventKind::StepRetried => "step_retried",
            EventKind::StepSucceeded => "step_succeeded",
            EventKind::StepFailed => "step_failed",
            EventKind::StepSkipped => "step_skipped",
            EventKind::RunSucceeded => "run_succeeded",
            EventKind::RunFailed => "run_failed",
            EventKind::RunCanceled => "run_canceled",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "run_started" => EventKind::RunStarted,
            "step_started" => EventKind::StepStarted,
            "step_retried" => EventKind::StepRetried,
            "step_succeeded" => EventKind::StepSucceeded,
            "step_failed" => EventKind::StepFailed,
            "step_skipped" => EventKind::StepSkipped,
            "run_succeeded" => EventKind::RunSucceeded,
            "run_failed" => EventKind::RunFailed,
            "run_canceled" => EventKind::RunCanceled,
            other => return Err(format!("unknown event kind {other:?}")),
        })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a run's structured event log.
#[derive(Debug, Clone, Serialize)]
pub struct RunEvent {
    /// The run it belongs to.
    pub run_id: RunId,
    /// When it happened.
    pub ts: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The asset of a step event.
    pub asset_key: Option<String>,
    /// The partition of a step event (`""` for an unpartitioned asset).
    pub partition_key: Option<String>,
    /// A human-readable message (an error, a retry delay).
    pub message: String,
    /// Structured details (JSON object).
    pub body: serde_json::Value,
}

impl RunEvent {
    /// A run-level event.
    pub fn run(run_id: RunId, ts: DateTime<Utc>, kind: EventKind, message: impl Into<String>) -> RunEvent {
        RunEvent {
            run_id,
            ts,
            kind,
            asset_key: None,
            partition_key: None,
            message: message.into(),
            body: serde_json::json!({}),
        }
    }

    /// A step-level event.
    pub fn step(
        run_id: RunId,
        ts: DateTime<Utc>,
        kind: EventKind,
        asset_key: &str,
        partition_key: &str,
        message: impl Into<String>,
    ) -> RunEvent {
        RunEvent {
            run_id,
            ts,
            kind,
            asset_key: Some(asset_key.to_owned()),
            partition_key: Some(partition_key.to_owned()),
            message: message.into(),
            body: serde_json::json!({}),
        }
    }
}

/// One upstream (asset, partition) version that a materialization read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputVersion {
    /// The upstream asset.
    pub asset_key: String,
    /// The upstream partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The upstream materialization read, if it is known to the store.
    pub materialization_id: Option<MaterializationId>,
    /// The upstream data version read.
    pub data_version: String,
}

/// A materialization about to be recorded.
#[derive(Debug, Clone)]
pub struct NewMaterialization {
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The run that produced it.
    pub run_id: RunId,
    /// Which attempt of the step succeeded (1-based).
    pub attempt: i64,
    /// Content version: blake3 of the output bytes, or user-provided.
    pub data_version: String,
    /// Hash of the code version and the ordered input versions.
    pub logical_version: String,
    /// The asset's code version at the time.
    pub code_version: String,
    /// Every input read, in a stable order (asset, then partition).
    pub inputs: Vec<InputVersion>,
    /// blake3 over the ordered inputs, so wide fan-in compares in O(1).
    pub inputs_hash: String,
    /// Where the output lives (`file://…`, `s3://…`), if it has one.
    pub storage_uri: Option<String>,
    /// Output size in bytes.
    pub bytes: Option<i64>,
    /// Output rows.
    pub row_count: Option<i64>,
    /// Output schema (JSON).
    pub schema: Option<serde_json::Value>,
    /// User metadata (JSON object); never secrets.
    pub metadata: serde_json::Value,
    /// When the step started.
    pub started_at: DateTime<Utc>,
    /// When the output was stored.
    pub finished_at: DateTime<Utc>,
}

/// A recorded materialization.
#[derive(Debug, Clone, Serialize)]
pub struct MaterializationRecord {
    /// Its id (the global cursor).
    pub id: MaterializationId,
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The run that produced it.
    pub run_id: RunId,
    /// Which attempt succeeded.
    pub attempt: i64,
    /// Content version.
    pub data_version: String,
    /// Logical version.
    pub logical_version: String,
    /// Code version.
    pub code_version: String,
    /// How many inputs it read.
    pub n_inputs: i64,
    /// blake3 over the ordered inputs.
    pub inputs_hash: String,
    /// Where the output lives.
    pub storage_uri: Option<String>,
    /// Output size in bytes.
    pub bytes: Option<i64>,
    /// Output rows.
    pub row_count: Option<i64>,
    /// Output schema.
    pub schema: Option<serde_json::Value>,
    /// User metadata.
    pub metadata: serde_json::Value,
    /// Step start.
    pub started_at: DateTime<Utc>,
    /// Output stored.
    pub finished_at: DateTime<Utc>,
}

/// The outcome of the latest attempt at an (asset, partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// A step is running now.
    Running,
    /// The last attempt materialized.
    Materialized,
    /// The last attempt failed.
    Failed,
}

impl AttemptStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Running => "running",
            AttemptStatus::Materialized => "materialized",
            AttemptStatus::Failed => "failed",
        }
    }
}

impl FromStr for AttemptStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => AttemptStatus::Running,
            "materialized" => AttemptStatus::Materialized,
            "failed" => AttemptStatus::Failed,
            other => return Err(format!("unknown attempt status {other:?}")),
        })
    }
}

/// The current state of one (asset, partition): a point lookup, kept in step with history.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionState {
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The latest successful materialization, if any.
    pub current_materialization_id: Option<MaterializationId>,
    /// Its data version.
    pub data_version: Option<String>,
    /// Its logical version.
    pub logical_version: Option<String>,
    /// Its code version.
    pub code_version: Option<String>,
    /// When it was recorded.
    pub materialized_at: Option<DateTime<Utc>>,
    /// The run of the latest attempt.
    pub last_run_id: Option<RunId>,
    /// The outcome of the latest attempt.
    pub last_attempt_status: AttemptStatus,
    /// The error of the latest attempt, when it failed.
    pub last_error: Option<String>,
    /// How many inputs of the current materialization now have another data version than the
    /// one it read (or none): maintained when materializations are recorded.
    pub stale_inputs: i64,
    /// [`input_keys_hash`] of the keys the current materialization read.
    pub input_keys_hash: Option<String>,
    /// When this row last changed.
    pub updated_at: DateTime<Utc>,
}

/// What status needs of one partition: a lean [`PartitionState`] (no versions, times or errors),
/// so reading 10,000 of them stays cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// Whether it has a current materialization.
    pub materialized: bool,
    /// The outcome of the latest attempt.
    pub last_attempt_status: AttemptStatus,
    /// The code version of the current materialization.
    pub code_version: Option<String>,
    /// See [`PartitionState::stale_inputs`].
    pub stale_inputs: i64,
    /// See [`PartitionState::input_keys_hash`].
    pub input_keys_hash: Option<String>,
}

/// blake3 over the set of `(asset, partition)` input keys, without versions: equal for two
/// materializations that read the same partitions, in any order. A definition whose mappings now
/// give a different hash has had dependencies added or removed.
pub fn input_keys_hash<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut keys: Vec<(&str, &str)> = keys.into_iter().collect();
    keys.sort_unstable();
    let mut h = blake3::Hasher::new();
    for (asset, partition) in keys {
        h.update(asset.as_bytes());
        h.update(b"\x1f");
        h.update(partition.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// What `wipe` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WipeOutcome {
    /// Partitions whose current state was removed.
    pub partitions: u64,
    /// Materializations marked wiped (the partitions' whole history).
    pub materializations: u64,
    /// Current materializations elsewhere that read a wiped partition (now stale).
    pub readers: u64,
}

/// A step that failed for good, to be recorded with its error.
#[derive(Debug, Clone)]
pub struct StepFailure {
    /// The run.
    pub run_id: RunId,
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// How many attempts were made.
    pub attempts: i64,
    /// The last error, as shown to people.
    pub error: String,
    /// When it failed.
    pub ts: DateTime<Utc>,
}

/// Where a materialization request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for upstream requests of its run.
    Blocked,
    /// Ready to be claimed (at or after `run_at`).
    Available,
    /// Claimed by a worker holding a lease.
    Running,
    /// Materialized.
    Succeeded,
    /// Failed for good (attempts exhausted).
    Failed,
    /// Canceled before it finished.
    Canceled,
    /// Not run: an upstream request failed or was canceled.
    UpstreamFailed,
}

impl RequestState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Blocked => "blocked",
            RequestState::Available => "available",
            RequestState::Running => "running",
            RequestState::Succeeded => "succeeded",
            RequestState::Failed => "failed",
            RequestState::Canceled => "canceled",
            RequestState::UpstreamFailed => "upstream_failed",
        }
    }

    /// Whether the request has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Succeeded | RequestState::Failed | RequestState::Canceled | RequestState::UpstreamFailed
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "blocked" => RequestState::Blocked,
            "available" => RequestState::Available,
            "running" => RequestState::Running,
            "succeeded" => RequestState::Succeeded,
            "failed" => RequestState::Failed,
            "canceled" => RequestState::Canceled,
            "upstream_failed" => RequestState::UpstreamFailed,
            other => {
                return Err(format!(
                    "unknown request state {other:?} (valid: blocked, available, running, succeeded, failed, canceled, upstream_failed)"
                ));
            }
        })
    }
}

/// A request about to be submitted.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Its id (used only if the idempotency key is new).
    pub id: RequestId,
    /// Accepted once: a second submission returns the first request.
    pub idempotency_key: String,
    /// The run it belongs to.
    pub run_id: RunId,
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// What asked: `manual`, `schedule`, `sensor`, `backfill`.
    pub origin: String,
    /// Its concurrency pool.
    pub pool: Option<String>,
    /// Higher first.
    pub priority: i64,
    /// Attempts in all.
    pub max_attempts: i64,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Submission time.
    pub created_at: DateTime<Utc>,
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SubmitOutcome {
    /// The request (the existing one if the key was known).
    pub id: RequestId,
    /// Whether it was new.
    pub inserted: bool,
}

/// A request a worker now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimedRequest {
    /// The request.
    pub id: RequestId,
    /// Its run.
    pub run_id: RunId,
    /// The asset.
    pub asset_key: String,
    /// The partition.
    pub partition_key: String,
    /// This attempt (1-based): completion is fenced on it.
    pub attempt: i64,
    /// Attempts in all.
    pub max_attempts: i64,
}

/// A finished attempt to record, fenced on the lease.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The request.
    pub id: RequestId,
    /// The attempt that produced it.
    pub attempt: i64,
    /// What it materialized.
    pub materialization: NewMaterialization,
}

/// The result of recording a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompletionResult {
    /// Recorded.
    Recorded(MaterializationId),
    /// The worker no longer held the lease (it expired and the request was reclaimed, or it was
    /// canceled): nothing was recorded.
    LeaseLost,
}

/// A stored request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Its id.
    pub id: RequestId,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// Its run.
    pub run_id: RunId,
    /// The asset.
    pub asset_key: String,
    /// The partition.
    pub partition_key: String,
    /// What asked.
    pub origin: String,
    /// Its pool.
    pub pool: Option<String>,
    /// Its priority.
    pub priority: i64,
    /// Where it stands.
    pub state: RequestState,
    /// Upstream requests not yet succeeded.
    pub pending_deps: i64,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Attempts made.
    pub attempt: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// The worker holding it.
    pub lease_owner: Option<String>,
    /// When that lease expires.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether cancel was asked while it ran.
    pub cancel_requested: bool,
    /// The last error.
    pub last_error: Option<String>,
    /// What it materialized.
    pub materialization_id: Option<MaterializationId>,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// First claim.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A backfill about to be created, with the run that carries its cells.
#[derive(Debug, Clone)]
pub struct NewBackfill {
    /// Its id.
    pub id: BackfillId,
    /// The selection as the user wrote it.
    pub selection: String,
    /// First partition key, as given.
    pub partition_from: String,
    /// Last partition key, as given.
    pub partition_to: String,
    /// `missing`, `failed`, `stale` or `all`.
    pub policy: String,
    /// Its run (trigger `backfill`).
    pub run: NewRun,
    /// Cells requested.
    pub cells: i64,
    /// What the policy left out: `[{asset, reason, count, keys}]`.
    pub skipped: serde_json::Value,
}

/// A stored backfill, with its run's status.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillRecord {
    /// Its id.
    pub id: BackfillId,
    /// The selection as the user wrote it.
    pub selection: String,
    /// First partition key, as given.
    pub partition_from: String,
    /// Last partition key, as given.
    pub partition_to: String,
    /// The policy.
    pub policy: String,
    /// Its run.
    pub run_id: RunId,
    /// Its run's status: the backfill's status.
    pub status: RunStatus,
    /// Cells requested.
    pub cells: i64,
    /// What the policy left out.
    pub skipped: serde_json::Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its run ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The verdict of one asset check on one partition, to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCheckResult {
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The run that evaluated it.
    pub run_id: RunId,
    /// The check's name.
    pub check_name: String,
    /// `warn` or `error` (an error that fails blocks downstream).
    pub severity: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A recorded check result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CheckResultRecord {
    /// Its id (increasing).
    pub id: i64,
    /// The asset.
    pub asset_key: String,
    /// The partition.
    pub partition_key: String,
    /// The run.
    pub run_id: String,
    /// The check's name.
    pub check_name: String,
    /// `warn` or `error`.
    pub severity: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A schedule or sensor as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InstigatorState {
    /// Its name.
    pub name: String,
    /// `schedule` or `sensor`.
    pub kind: String,
    /// `running` or `stopped`.
    pub status: String,
    /// A sensor's cursor.
    pub cursor: Option<String>,
    /// When it was first seen (no catch-up before this).
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One evaluation of a schedule or sensor, to commit with its requests in one transaction.
#[derive(Debug, Clone)]
pub struct NewTick {
    /// The schedule or sensor.
    pub instigator: String,
    /// The tick's time (a schedule's cron time; a sensor's evaluation time).
    pub tick_time: DateTime<Utc>,
    /// `requested`, `skipped` or `failed`.
    pub status: String,
    /// What was requested, or why nothing was.
    pub message: String,
    /// A sensor's cursor before and after this evaluation (the commit is refused if the stored
    /// cursor is no longer `before`: another daemon evaluated it meanwhile).
    pub cursor: Option<(Option<String>, Option<String>)>,
    /// Dynamic partitions to add: (definition, keys).
    pub dynamic_partitions: Vec<(String, Vec<String>)>,
    /// The run of its requests (when there are any).
    pub run: Option<NewRun>,
    /// Its requests and their edges.
    pub requests: Vec<NewRequest>,
    /// `(upstream index, downstream index)`.
    pub edges: Vec<(usize, usize)>,
    /// Condition evaluations made in this tick.
    pub evaluations: Vec<NewConditionEvaluation>,
    /// Now.
    pub created_at: DateTime<Utc>,
}

/// One evaluation of an asset's automation condition for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewConditionEvaluation {
    /// The asset.
    pub asset_key: String,
    /// The partition.
    pub partition_key: String,
    /// `eager`, `on_missing`, `on_cron`.
    pub condition: String,
    /// When.
    pub evaluated_at: DateTime<Utc>,
    /// Whether it requested a materialization.
    pub requested: bool,
    /// Why (or why not).
    pub reason: String,
    /// The request's idempotency key, when requested.
    pub request_key: Option<String>,
}

/// A stored condition evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ConditionEvaluationRecord {
    /// Its id.
    pub id: i64,
    /// The asset.
    pub asset_key: String,
    /// The partition.
    pub partition_key: String,
    /// The condition.
    pub condition: String,
    /// When.
    pub evaluated_at: DateTime<Utc>,
    /// Whether it requested.
    pub requested: bool,
    /// Why.
    pub reason: String,
    /// The request key.
    pub request_key: Option<String>,
}

/// What committing a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickCommit {
    /// Recorded, with this many new requests.
    Committed {
        /// Requests created.
        requests: usize,
    },
    /// Another daemon already recorded this tick: nothing was written.
    AlreadyTicked,
    /// A sensor's cursor moved since evaluation: nothing was written.
    CursorMoved,
}

/// A recorded tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TickRecord {
    /// Its id.
    pub id: i64,
    /// The schedule or sensor.
    pub instigator: String,
    /// The tick time.
    pub tick_time: DateTime<Utc>,
    /// `requested`, `skipped` or `failed`.
    pub status: String,
    /// Its run.
    pub run_id: Option<String>,
    /// Requests created.
    pub requests: i64,
    /// What happened.
    pub message: String,
    /// A sensor's cursor after it.
    pub cursor: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}
