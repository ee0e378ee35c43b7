//! The SQLite lineage store: one file in WAL mode, the embedded default.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock up front
//! and waits on `busy_timeout` instead of failing with a stale snapshot.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, SqlitePool};

use crate::model::*;
use crate::rows::{EventRow, InputRow, MaterializationRow, PartitionRow, RunRow};
use crate::store::LineageStore;
use crate::writes::ROWS_PER_STATEMENT;
use crate::{Error, Result};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Holds an exclusive lock on `<db>.migrate-lock` until dropped (released on close, also by a
/// killed process).
pub(crate) async fn migration_lock(db: &Path) -> Result<std::fs::File> {
    let io = |e| Error::Database(sqlx::Error::Io(e));
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate-lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(name).map_err(io)?;
    // Waiting for the lock blocks a thread: do it on the blocking pool.
    tokio::task::spawn_blocking(move || file.lock().map(|()| file)).await.expect("lock task does not panic").map_err(io)
}

/// The lineage store on a SQLite file.
///
/// Writes go through one dedicated connection, so writers in this process queue in tokio
/// instead of meeting SQLite's busy handler (which sleeps in whole milliseconds); reads use a
/// small pool and see the last committed state (WAL).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    path: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit is durable once the WAL is fsynced at checkpoint; a power
            // loss can drop the last commits but never corrupts the file (BENCHMARKS.md).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        // sqlx takes no lock for SQLite migrations: two processes opening a new database at once
        // would both run them. A file lock beside the database serializes that.
        let lock = migration_lock(path).await?;
        MIGRATOR.run(&writer).await?;
        drop(lock);
        let pool = SqlitePoolOptions::new().max_connections(4).test_before_acquire(false).connect_with(options).await?;
        Ok(SqliteStore { pool, writer, path: path.display().to_string() })
    }

    /// The underlying pool, for tests that inspect tables directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction on the single writer, holding the write lock from its start.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// The columns of a [`MaterializationRow`], as a literal so queries stay `&'static str`.
macro_rules! materialization_columns {
    () => {
        "id, asset_key, partition_key, run_id, attempt, data_version, logical_version, code_version, \
         n_inputs, inputs_hash, storage_uri, bytes, row_count, schema, metadata, started_at, finished_at"
    };
}

async fn insert_event(conn: &mut sqlx::SqliteConnection, event: &RunEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_events (run_id, ts, kind, asset_key, partition_key, message, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(event.run_id.to_string())
    .bind(event.ts)
    .bind(event.kind.as_str())
    .bind(event.asset_key.as_deref())
    .bind(event.partition_key.as_deref())
    .bind(&event.message)
    .bind(event.body.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

crate::queue::queue_methods!(SqliteStore, pool, begin_write, "", "");

crate::writes::write_fns!(sqlx::SqliteConnection, "");

#[async_trait]
impl LineageStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path)
    }

    async fn create_run(&self, run: &NewRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO runs (id, status, trigger, selection, n_steps, tags, created_at) \
             VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(run.id.to_string())
        .bind(&run.trigger)
        .bind(&run.selection)
        .bind(run.n_steps)
        .bind(run.tags.to_string())
        .bind(run.created_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn set_run_status(&self, run_id: RunId, status: RunStatus, event: &RunEvent) -> Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let res = sqlx::query(
            "UPDATE runs SET status = ?2, \
                 started_at = CASE WHEN ?2 = 'running' THEN coalesce(started_at, ?3) ELSE started_at END, \
                 finished_at = CASE WHEN ?2 IN ('succeeded', 'failed', 'canceled') THEN ?3 ELSE finished_at END \
             WHERE id = ?1",
        )
        .bind(run_id.to_string())
        .bind(status.as_str())
        .bind(event.ts)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(Error::UnknownRun(run_id));
        }
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_event(&self, event: &RunEvent) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        insert_event(&mut conn, event).await
    }

    async fn record_steps_started(&self, events: &[RunEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        write_steps_started(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_materializations(&self, ms: &[NewMaterialization]) -> Result<Vec<MaterializationId>> {
        if ms.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let ids = write_materializations(&mut tx, ms).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn record_step_failed(&self, failure: &StepFailure) -> Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut event = RunEvent::step(
            failure.run_id,
            failure.ts,
            EventKind::StepFailed,
            &failure.asset_key,
            &failure.partition_key,
            failure.error.clone(),
        );
        event.body = serde_json::json!({ "attempts": failure.attempts });
        insert_event(&mut tx, &event).await?;
        sqlx::query(
            "INSERT INTO asset_partitions (asset_key, partition_key, last_run_id, last_attempt_status, \
                 last_error, updated_at) \
             VALUES (?1, ?2, ?3, 'failed', ?4, ?5) \
             ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
                 last_run_id = excluded.last_run_id, last_attempt_status = 'failed', \
                 last_error = excluded.last_error, updated_at = excluded.updated_at",
        )
        .bind(&failure.asset_key)
        .bind(&failure.partition_key)
        .bind(failure.run_id.to_string())
        .bind(&failure.error)
        .bind(failure.ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_step_canceled(&self, event: &RunEvent) -> Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        insert_event(&mut tx, event).await?;
        let asset_key = event.asset_key.as_deref().unwrap_or_default();
        let partition_key = event.partition_key.as_deref().unwrap_or_default();
        sqlx::query(
            "DELETE FROM asset_partitions WHERE asset_key = ?1 AND partition_key = ?2 \
                 AND current_materialization_id IS NULL AND prev_attempt_status IS NULL \
                 AND last_attempt_status = 'running' AND last_run_id = ?3",
        )
        .bind(asset_key)
        .bind(partition_key)
        .bind(event.run_id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE asset_partitions SET last_attempt_status = coalesce(prev_attempt_status, 'materialized'), \
                 last_error = prev_error, updated_at = ?4 \
             WHERE asset_key = ?1 AND partition_key = ?2 AND last_attempt_status = 'running' AND last_run_id = ?3",
        )
        .bind(asset_key)
        .bind(partition_key)
        .bind(event.run_id.to_string())
        .bind(event.ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn partition_states(&self, asset_key: &str) -> Result<Vec<PartitionState>> {
        let rows: Vec<PartitionRow> = sqlx::query_as(
            "SELECT asset_key, partition_key, current_materialization_id, data_version, logical_version, \
                 code_version, materialized_at, last_run_id, last_attempt_status, last_error, updated_at \
             FROM asset_partitions WHERE asset_key = ?1 ORDER BY partition_key",
        )
        .bind(asset_key)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(PartitionRow::into_state).collect()
    }

    async fn partition_states_of(&self, keys: &[(String, String)]) -> Result<Vec<Option<PartitionState>>> {
        // One query per asset: its partitions go in as a JSON array.
        let mut by_asset: Vec<(&str, Vec<&str>)> = Vec::new();
        for (asset, partition) in keys {
            match by_asset.iter_mut().find(|(a, _)| a == asset) {
                Some((_, ps)) => ps.push(partition),
                None => by_asset.push((asset, vec![partition])),
            }
        }
        let mut found: std::collections::HashMap<(String, String), PartitionState> = std::collections::HashMap::new();
        let mut conn = self.pool.acquire().await?;
        for (asset, partitions) in by_asset {
            let rows: Vec<PartitionRow> = sqlx::query_as(
                "SELECT asset_key, partition_key, current_materialization_id, data_version, logical_version, \
                     code_version, materialized_at, last_run_id, last_attempt_status, last_error, updated_at \
                 FROM asset_partitions WHERE asset_key = ?1 AND partition_key IN (SELECT value FROM json_each(?2))",
            )
            .bind(asset)
            .bind(serde_json::to_string(&partitions).expect("strings serialize"))
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let state = row.into_state()?;
                found.insert((state.asset_key.clone(), state.partition_key.clone()), state);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn history(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = match partition_key {
            Some(pk) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    materialization_columns!(),
                    " FROM materializations \
                     WHERE asset_key = ?1 AND partition_key = ?2 ORDER BY id DESC LIMIT ?3"
                ))
                .bind(asset_key)
                .bind(pk)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    materialization_columns!(),
                    " FROM materializations \
                     WHERE asset_key = ?1 ORDER BY id DESC LIMIT ?2"
                ))
                .bind(asset_key)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn materialization(&self, id: MaterializationId) -> Result<Option<MaterializationRecord>> {
        let row: Option<MaterializationRow> =
            sqlx::query_as(concat!("SELECT ", materialization_columns!(), " FROM materializations WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(MaterializationRow::into_record).transpose()
    }

    async fn inputs_of(&self, id: MaterializationId) -> Result<Vec<InputVersion>> {
        let rows: Vec<InputRow> = sqlx::query_as(
            "SELECT upstream_asset_key, upstream_partition_key, upstream_materialization_id, upstream_data_version \
             FROM materialization_inputs WHERE materialization_id = ?1 \
             ORDER BY upstream_asset_key, upstream_partition_key",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(InputRow::into_input).collect())
    }

    async fn readers_of(&self, id: MaterializationId) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concat!(
            "SELECT ",
            materialization_columns!(),
            " FROM materializations WHERE id IN \
             (SELECT materialization_id FROM materialization_inputs WHERE upstream_materialization_id = ?1) ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn runs(&self, status: Option<RunStatus>, limit: i64) -> Result<Vec<RunRecord>> {
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT id, status, trigger, selection, n_steps, tags, created_at, started_at, finished_at \
             FROM runs WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2",
        )
        .bind(status.map(RunStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>> {
        let row: Option<RunRow> = sqlx::query_as(
            "SELECT id, status, trigger, selection, n_steps, tags, created_at, started_at, finished_at \
             FROM runs WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(RunRow::into_record).transpose()
    }

    async fn run_events(&self, id: RunId) -> Result<Vec<RunEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT run_id, ts, kind, asset_key, partition_key, message, body \
             FROM run_events WHERE run_id = ?1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    async fn run_materializations(&self, id: RunId) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concat!(
            "SELECT ",
            materialization_columns!(),
            " FROM materializations WHERE run_id = ?1 ORDER BY id"
        ))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn add_dynamic_partitions(&self, partitions_def: &str, keys: &[String], now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut added = 0;
        for key in keys {
            let res = sqlx::query(
                "INSERT INTO dynamic_partitions (partitions_def, partition_key, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(partitions_def)
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            added += res.rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn dynamic_partitions(&self, partitions_def: &str) -> Result<Vec<String>> {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT partition_key FROM dynamic_partitions WHERE partitions_def = ?1 ORDER BY created_at, rowid",
        )
        .bind(partitions_def)
        .fetch_all(&self.pool)
        .await?;
        Ok(keys)
    }
}
