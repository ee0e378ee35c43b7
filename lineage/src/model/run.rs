//! Runs and their event logs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RunId;

/// Where a run stands.
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
        self.into()
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }
}

/// What asked for a run and its requests: one word, stored with both.
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
pub enum Trigger {
    /// A person, from the CLI (`materialize`, `submit`).
    Manual,
    /// A schedule's tick.
    Schedule,
    /// A sensor's evaluation.
    Sensor,
    /// A declarative automation condition (`eager`, `on_missing`, `on_cron`).
    Condition,
    /// A backfill's cells.
    Backfill,
}

impl Trigger {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A run about to be created.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its id.
    pub id: RunId,
    /// What asked for it.
    pub trigger: Trigger,
    /// The selection as the user wrote it, for display.
    pub selection: String,
    /// How many steps the plan holds.
    pub n_steps: i64,
    /// Free-form tags (JSON object).
    pub tags: serde_json::Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The process it belongs to, if any (an in-process `materialize`): only that process's
    /// worker claims its requests, and when the process is gone the run ends canceled.
    pub owner: Option<RunOwner>,
}

/// The worker of the process a run belongs to, and how long its claim on the run lasts unless
/// renewed by heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    /// The worker's id (`host:pid:random`).
    pub worker: String,
    /// When the run is abandoned if no heartbeat renews it.
    pub lease_until: DateTime<Utc>,
}

/// A stored run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Its id.
    #[serde(rename = "run_id")]
    pub id: RunId,
    /// Where it stands.
    pub status: RunStatus,
    /// What asked for it.
    pub trigger: Trigger,
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
    /// The worker of the process it belongs to (see [`NewRun::owner`]).
    pub owner: Option<String>,
}

/// The kinds of entries in a run's event log.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// A running step was canceled: its attempt recorded nothing.
    StepCanceled,
    /// The run ended successfully.
    RunSucceeded,
    /// The run ended with failures.
    RunFailed,
    /// The run was canceled.
    RunCanceled,
    /// A line a step's compute function logged (`ctx.log`): its level in the body, its text as
    /// the message. Recorded in the transaction that ends the attempt.
    StepMessage,
}

impl EventKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        self.into()
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
    #[serde(rename = "asset")]
    pub asset_key: Option<String>,
    /// The partition of a step event (`""` for an unpartitioned asset).
    #[serde(rename = "partition")]
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

/// Which runs to list, newest first (by id: UUIDv7 ids are in creation order).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs asked for by this trigger (manual, schedule, sensor, backfill, …).
    pub trigger: Option<Trigger>,
    /// Only runs with a step of this asset.
    pub asset: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs older than this one (keyset pagination: the last id of the previous page).
    pub before: Option<RunId>,
    /// At most this many.
    pub limit: i64,
}

/// A listing whose rows [`crate::LineageStore::count`] counts.
#[derive(Debug, Clone, Copy)]
pub enum Counted<'a> {
    /// Runs as a filter selects them (its `before` and `limit` are ignored).
    Runs(&'a RunFilter),
    /// Materializations of an asset (one partition when given), wiped ones left out.
    History {
        /// The asset.
        asset: &'a str,
        /// The partition.
        partition: Option<&'a str>,
    },
    /// Check results of an asset (one partition when given).
    CheckResults {
        /// The asset.
        asset: &'a str,
        /// The partition.
        partition: Option<&'a str>,
    },
    /// Ticks of a schedule or sensor.
    Ticks {
        /// Its name.
        instigator: &'a str,
    },
    /// Backfills.
    Backfills,
    /// Requests of a run and/or in a state.
    Requests {
        /// The run.
        run: Option<RunId>,
        /// The state.
        state: Option<crate::RequestState>,
    },
}
