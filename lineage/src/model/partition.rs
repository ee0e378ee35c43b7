//! The current state of each (asset, partition): a point lookup, kept in step with history.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{MaterializationId, RunId};

/// The outcome of the latest attempt at an (asset, partition).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
        self.into()
    }
}

/// The current state of one (asset, partition): a point lookup, kept in step with history.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionState {
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    #[serde(rename = "partition")]
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
    /// [`input_keys_hash`](super::input_keys_hash) of the keys the current materialization read.
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

/// What a partition's stored state says of it, as far as the store can judge: the classes a run
/// of [`PartitionRun`]s groups by, named as the status they give (`status` prints `missing`,
/// `materialized`, `stale`, `failed`, `in_progress`). One class of its own, `unverified`, is a
/// current materialization that only the definitions can judge (it read other keys than the ones
/// the caller knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum PartitionClass {
    /// Its latest attempt materialized but there is no current materialization (wiped).
    Missing,
    /// A current materialization with the code version asked about, no changed input, and the
    /// keys asked about (or none recorded, or no code version recorded).
    Materialized,
    /// A current materialization of another code version, or with changed inputs.
    Stale,
    /// A current materialization otherwise materialized-and-current whose recorded input keys
    /// are not the ones the caller knows: whether its dependencies changed is for the
    /// definitions to say.
    Unverified,
    /// Its latest attempt failed.
    Failed,
    /// A step is running it now.
    InProgress,
}

/// Consecutive stored partitions of an asset, in the database's order of partition keys, of one
/// [`PartitionClass`]: `count` rows from `first` to `last`. Consecutive among the stored rows:
/// partitions the store never saw between two rows do not break a run (the caller, who knows
/// the definition's keys, finds them from the count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRun {
    /// The first partition key of the run.
    pub first: String,
    /// The last partition key of the run.
    pub last: String,
    /// What the store says of each partition of the run.
    pub class: PartitionClass,
    /// How many stored partitions the run holds.
    pub count: i64,
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
