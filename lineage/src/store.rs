//! The [`LineageStore`] trait: the only way the engine reads or writes what it remembers.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::model::*;

/// Everything the engine remembers, behind one trait that SQLite and PostgreSQL both serve.
///
/// Every method is one transaction: a caller never sees half of a write.
#[async_trait]
pub trait LineageStore: Send + Sync + 'static {
    /// A short name of the backend and where it lives, with secrets redacted.
    fn describe(&self) -> String;

    /// Creates a run in `queued` state.
    async fn create_run(&self, run: &NewRun) -> Result<()>;

    /// Moves a run to `status`, appending `event` to its log in the same transaction.
    ///
    /// `running` sets `started_at`; a terminal status sets `finished_at`.
    async fn set_run_status(&self, run_id: RunId, status: RunStatus, event: &RunEvent) -> Result<()>;

    /// Appends one event to a run's log.
    async fn append_event(&self, event: &RunEvent) -> Result<()>;

    /// Marks each event's (asset, partition) as running in its run and logs `step_started`, all
    /// in one transaction (group commit: the executor batches steps that start together).
    async fn record_steps_started(&self, events: &[RunEvent]) -> Result<()>;

    /// Records materializations, their inputs, their current-state rows and their
    /// `step_succeeded` events, all in one transaction; returns their ids in order.
    async fn record_materializations(&self, ms: &[NewMaterialization]) -> Result<Vec<MaterializationId>>;

    /// Marks one (asset, partition) as running; see [`LineageStore::record_steps_started`].
    async fn record_step_started(&self, event: &RunEvent) -> Result<()> {
        self.record_steps_started(std::slice::from_ref(event)).await
    }

    /// Records one materialization; see [`LineageStore::record_materializations`].
    async fn record_materialization(&self, m: &NewMaterialization) -> Result<MaterializationId> {
        Ok(self.record_materializations(std::slice::from_ref(m)).await?[0])
    }

    /// Records a step that failed for good: the current-state row keeps its last successful
    /// materialization, and its latest attempt becomes `failed` with the error.
    async fn record_step_failed(&self, failure: &StepFailure) -> Result<()>;

    /// Forgets that a step is running without recording an outcome (a canceled step).
    ///
    /// Restores the attempt status and error the partition had before this attempt started;
    /// a partition that had never been attempted goes back to having no row.
    async fn record_step_canceled(&self, event: &RunEvent) -> Result<()>;

    /// The current state of every known partition of `asset_key`.
    async fn partition_states(&self, asset_key: &str) -> Result<Vec<PartitionState>>;

    /// The current state of each requested (asset, partition), in the order asked; `None` when
    /// the store has never seen it.
    async fn partition_states_of(&self, keys: &[(String, String)]) -> Result<Vec<Option<PartitionState>>>;

    /// Materializations of an asset (optionally one partition), newest first.
    async fn history(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MaterializationRecord>>;

    /// One materialization by id.
    async fn materialization(&self, id: MaterializationId) -> Result<Option<MaterializationRecord>>;

    /// The inputs a materialization read, ordered by asset then partition.
    async fn inputs_of(&self, id: MaterializationId) -> Result<Vec<InputVersion>>;

    /// Materializations that read materialization `id` as an input, oldest first (impact).
    async fn readers_of(&self, id: MaterializationId) -> Result<Vec<MaterializationRecord>>;

    /// Runs, newest first, optionally only those with `status`.
    async fn runs(&self, status: Option<RunStatus>, limit: i64) -> Result<Vec<RunRecord>>;

    /// One run.
    async fn run(&self, id: RunId) -> Result<Option<RunRecord>>;

    /// A run's event log, oldest first.
    async fn run_events(&self, id: RunId) -> Result<Vec<RunEvent>>;

    /// Materializations recorded by a run, in recording order.
    async fn run_materializations(&self, id: RunId) -> Result<Vec<MaterializationRecord>>;

    /// Adds keys to a dynamic partitions definition; returns how many were new.
    async fn add_dynamic_partitions(&self, partitions_def: &str, keys: &[String], now: DateTime<Utc>) -> Result<u64>;

    /// The keys of a dynamic partitions definition, in the order they were added.
    async fn dynamic_partitions(&self, partitions_def: &str) -> Result<Vec<String>>;
}
