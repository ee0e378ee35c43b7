//! Backfills: a selection over a partition range, carried out as the requests of one run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BackfillId, NewRun, RunId, RunStatus};

/// Which cells of the range a backfill runs.
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
pub enum BackfillPolicy {
    /// Cells with no materialization.
    Missing,
    /// Cells whose latest attempt failed.
    Failed,
    /// Missing cells, and materialized ones whose code version or inputs changed since (or
    /// whose upstream cell runs in this backfill).
    Stale,
    /// Every cell.
    All,
}

impl BackfillPolicy {
    /// The name stored and accepted on the command line.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
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
    /// Which cells it runs.
    pub policy: BackfillPolicy,
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
    #[serde(rename = "backfill_id")]
    pub id: BackfillId,
    /// The selection as the user wrote it.
    pub selection: String,
    /// First partition key, as given.
    pub partition_from: String,
    /// Last partition key, as given.
    pub partition_to: String,
    /// Which cells it runs.
    pub policy: BackfillPolicy,
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
