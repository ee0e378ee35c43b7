//! The OpenLineage outbox: what happened to a run or a step attempt, recorded with the change.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RequestId, RunId};

/// The OpenLineage event type of an outbox row (stored and sent in upper case, as the spec spells
/// them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[serde(rename_all = "UPPERCASE")]
#[strum(serialize_all = "UPPERCASE")]
pub enum LineageEventType {
    /// A run, or a step attempt, started.
    Start,
    /// It ended successfully (a step: its materialization was recorded).
    Complete,
    /// It failed (a step attempt: with its error, whether or not it will be retried).
    Fail,
    /// It was canceled, or its worker stopped, before it ended.
    Abort,
}

impl LineageEventType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEvent {
    /// Its place in delivery order.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: RunId,
    /// The step's request; `None` for the run's own events.
    pub request_id: Option<RequestId>,
    /// The step's attempt.
    pub attempt: Option<i64>,
    /// What happened.
    pub event_type: LineageEventType,
    /// When.
    pub event_time: DateTime<Utc>,
    /// The step's asset.
    pub asset_key: Option<String>,
    /// The step's partition (`""` for an unpartitioned asset).
    pub partition_key: Option<String>,
    /// Why a step failed or was aborted.
    pub error: Option<String>,
    /// When it was delivered (or given up on as rejected).
    pub delivered_at: Option<DateTime<Utc>>,
    /// How many deliveries were tried.
    pub delivery_attempts: i64,
}

/// What a process delivers from the store, one process per kind at a time (the name of its
/// lease in `delivery_leases`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Delivery {
    /// The OpenLineage outbox, to `OPENLINEAGE_URL`.
    Openlineage,
    /// Failure alerts, to `ROBO_ASSETS_ALERT_WEBHOOK`.
    Alerts,
    /// Not a delivery: the daemon's retention pass (`ROBO_ASSETS_RETENTION`), one process at a
    /// time the same way. Its holder takes it for an hour and never renews it, so the lease is
    /// also what spaces passes across daemons.
    Retention,
}

impl Delivery {
    /// The lease's stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A run that failed, to be told: written in the transaction that failed the run (once each time
/// its status became failed), sent by the daemon.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Its place in delivery order.
    pub id: i64,
    /// The run that failed.
    pub run_id: RunId,
    /// When its status became failed.
    pub failed_at: DateTime<Utc>,
    /// When it was sent (or refused for good by the receiver).
    pub delivered_at: Option<DateTime<Utc>>,
    /// How many deliveries were tried.
    pub delivery_attempts: i64,
    /// The last delivery failure, or the receiver's refusal.
    pub last_error: Option<String>,
}
