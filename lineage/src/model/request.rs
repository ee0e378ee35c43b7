//! The request queue: requests with idempotency keys, leases and fenced completion.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{MaterializationId, NewCheckResult, NewMaterialization, RequestId, RunId, Trigger};

/// Where a materialization request stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RequestState {
    /// Waiting for its upstream requests (of its run, or a pending request of another run a
    /// tick waits on).
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
        self.into()
    }

    /// Whether the request has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Succeeded | RequestState::Failed | RequestState::Canceled | RequestState::UpstreamFailed
        )
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
    /// What asked for it.
    pub trigger: Trigger,
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

/// A request that has not ended (blocked, available or running), as a tick finds it for a
/// partition it would request: the tick's downstream steps wait on it instead of requesting the
/// partition a second time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingRequest {
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition.
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// The request.
    #[serde(rename = "request_id")]
    pub id: RequestId,
    /// Its idempotency key: submitting it again names this request.
    pub idempotency_key: String,
    /// Its run.
    pub run_id: RunId,
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SubmitOutcome {
    /// The request (the existing one if the key was known).
    #[serde(rename = "request_id")]
    pub id: RequestId,
    /// Whether it was new.
    pub inserted: bool,
}

/// A request a worker now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimedRequest {
    /// The request.
    #[serde(rename = "request_id")]
    pub id: RequestId,
    /// Its run.
    pub run_id: RunId,
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition.
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// This attempt (1-based): completion is fenced on it.
    pub attempt: i64,
    /// Attempts in all.
    pub max_attempts: i64,
    /// When it could first be claimed: submitted, due for retry, or its last upstream request
    /// finished, whichever is latest (claim latency is measured from it).
    #[serde(skip)]
    pub claimable_since: DateTime<Utc>,
}

/// How many requests are in one waiting or running state, in one pool family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// `blocked`, `available` or `running`.
    pub state: RequestState,
    /// The pool family, or `None` for requests without a pool.
    pub pool: Option<String>,
    /// How many.
    pub requests: i64,
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
    /// Check verdicts on its output, recorded with it (and only if it is recorded).
    pub checks: Vec<NewCheckResult>,
    /// What its compute function logged (`step_message` events), recorded with it (and only if
    /// it is recorded).
    pub messages: Vec<super::RunEvent>,
}

/// A failed attempt to record, fenced on the lease like a [`Completion`].
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    /// The request.
    pub id: RequestId,
    /// The attempt that failed.
    pub attempt: i64,
    /// What went wrong, as shown to people.
    pub error: String,
    /// When to try again; `None`, or no attempts left, fails the request for good.
    pub retry_at: Option<DateTime<Utc>>,
    /// Check verdicts the attempt produced (a failed `error` check is why it failed).
    pub checks: Vec<NewCheckResult>,
    /// What its compute function logged (`step_message` events), recorded with the failure.
    pub messages: Vec<super::RunEvent>,
}

/// What recording a failed attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailOutcome {
    /// Back in the queue at its retry time.
    Retrying,
    /// Failed for good: its partition is failed and its downstream `upstream_failed`.
    Failed,
    /// A cancel was asked while it ran: canceled, not retried.
    Canceled,
    /// The worker no longer held the lease: nothing was recorded.
    LeaseLost,
}

/// What the reaper, or releasing a dead process's work, did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reaped {
    /// Requests whose holder was gone, with the state each was left in (`available` to be
    /// retried, `failed` when its attempts are spent, `canceled` when a cancel was asked).
    pub requests: Vec<(RequestId, RequestState)>,
    /// Runs whose owning process was gone: ended canceled with what had not finished.
    pub runs: Vec<RunId>,
}

impl Reaped {
    /// Whether nothing was reaped.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.runs.is_empty()
    }
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
    #[serde(rename = "request_id")]
    pub id: RequestId,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// Its run.
    pub run_id: RunId,
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition.
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// What asked for it.
    pub trigger: Trigger,
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

/// The pool whose slot limit a request's pool takes: the pool itself or, for a member of a pool
/// kept per partition dimension (`quickbooks[realm=123]`, see [`pool_member`]), its family
/// (`quickbooks`), whose limit each member has.
pub fn pool_family(pool: &str) -> &str {
    pool.split_once('[').map_or(pool, |(family, _)| family)
}

/// The member of pool `family` for one key of a partition dimension: `quickbooks[realm=123]`.
pub fn pool_member(family: &str, dimension: &str, key: &str) -> String {
    format!("{family}[{dimension}={key}]")
}

/// A concurrency pool: its slot limit and how many of its requests run now (for a pool kept
/// per partition dimension, of all its members together; each member has the limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolState {
    /// Its name.
    pub name: String,
    /// Requests of it that may run at once, cluster-wide.
    pub slot_limit: i64,
    /// Requests of it running now.
    pub running: i64,
}
