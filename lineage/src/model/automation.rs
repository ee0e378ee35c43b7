//! Automation state: schedules and sensors (instigators), their ticks, and condition evaluations.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{NewRequest, NewRun, RunId};

/// What kind of instigator: both request materializations, neither runs anything.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum InstigatorKind {
    /// Ticks on a cron schedule.
    Schedule,
    /// Evaluates a function (or the declarative conditions) at an interval.
    Sensor,
}

impl InstigatorKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether the daemon evaluates an instigator.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum InstigatorStatus {
    /// Evaluated on every daemon pass.
    Running,
    /// Not evaluated until started.
    Stopped,
}

impl InstigatorStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What one evaluation of an instigator came to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TickStatus {
    /// It requested materializations.
    Requested,
    /// It requested nothing (with the reason in its message).
    Skipped,
    /// Its evaluation failed (with the error in its message).
    Failed,
}

impl TickStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A schedule or sensor as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstigatorState {
    /// Its name.
    pub name: String,
    /// Schedule or sensor.
    pub kind: InstigatorKind,
    /// Whether the daemon evaluates it.
    pub status: InstigatorStatus,
    /// A sensor's cursor.
    pub cursor: Option<String>,
    /// When a daemon (or a start, stop or cursor change) first registered it; the conditions'
    /// `on_cron` ticks are evaluated from here on.
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
    /// What it came to.
    pub status: TickStatus,
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
    /// A sensor's minimum interval: the commit is refused (`AlreadyTicked`) when another tick of
    /// the instigator is closer than this to `tick_time`, so daemons evaluating the same sensor
    /// at nearly the same instant record one tick. `None` for schedules (their tick time is the
    /// cron time, unique on its own).
    pub min_interval: Option<chrono::Duration>,
    /// Now.
    pub created_at: DateTime<Utc>,
}

impl NewTick {
    /// A tick of `instigator` at `tick_time` that requested nothing, created at `created_at`:
    /// no run, requests, cursor change, dynamic partitions, evaluations or minimum interval
    /// (set the fields that differ with struct-update syntax).
    pub fn empty(
        instigator: impl Into<String>,
        tick_time: DateTime<Utc>,
        status: TickStatus,
        message: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> NewTick {
        NewTick {
            instigator: instigator.into(),
            tick_time,
            status,
            message: message.into(),
            cursor: None,
            dynamic_partitions: Vec::new(),
            run: None,
            requests: Vec::new(),
            edges: Vec::new(),
            evaluations: Vec::new(),
            min_interval: None,
            created_at,
        }
    }
}

/// One evaluation of an asset's automation condition for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewConditionEvaluation {
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition.
    #[serde(rename = "partition")]
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
    #[serde(rename = "evaluation_id")]
    pub id: i64,
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition.
    #[serde(rename = "partition")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TickRecord {
    /// Its id.
    #[serde(rename = "tick_id")]
    pub id: i64,
    /// The schedule or sensor.
    pub instigator: String,
    /// The tick time.
    pub tick_time: DateTime<Utc>,
    /// What it came to.
    pub status: TickStatus,
    /// Its run.
    pub run_id: Option<RunId>,
    /// Requests created.
    pub requests: i64,
    /// What happened.
    pub message: String,
    /// A sensor's cursor after it.
    pub cursor: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}
