//! `LineageStore`: runs and their events, materializations, current state, staleness, history,
//! check results, backfills and dynamic partitions.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use const_format::concatcp;

use super::outbox;
use super::writes::{
    Writes, insert_events, insert_run, lock_staleness_all, push_steps_started, write_materializations,
};
use super::{CHECK_COLUMNS, MATERIALIZATION_COLUMNS, PARTITION_COLUMNS, STALE_INPUTS_RECOUNT, db};
use crate::model::*;
use crate::rows::{BackfillRow, CheckRow, EventRow, InputRow, MaterializationRow, PartitionRow, RunRow, decode};
use crate::store::LineageStore;
use crate::{Error, Result};

/// The [`PartitionClass`] of an `asset_partitions` row (its columns unqualified), for the code
/// version `$2` and the input keys hash `$3` the caller knows.
const PARTITION_CLASS: &str = "CASE \
     WHEN last_attempt_status = 'running' THEN 'in_progress' \
     WHEN last_attempt_status = 'failed' THEN 'failed' \
     WHEN current_materialization_id IS NULL THEN 'missing' \
     WHEN code_version IS NULL THEN 'materialized' \
     WHEN code_version <> $2 OR stale_inputs > 0 THEN 'stale' \
     WHEN input_keys_hash IS NULL OR input_keys_hash = $3 THEN 'materialized' \
     ELSE 'unverified' END";

#[async_trait]
impl LineageStore for db::Store {
    fn describe(&self) -> String {
        self.describe_store()
    }

    async fn create_run(&self, run: &NewRun) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_run(&mut tx, run).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_run_status(&self, run_id: RunId, status: RunStatus, event: &RunEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let before: Option<(String, bool)> =
            sqlx::query_as(concatcp!("SELECT status, started_at IS NOT NULL FROM runs WHERE id = $1", db::LOCK_ROW))
                .bind(run_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let res = sqlx::query(
            "UPDATE runs SET status = $2, \
                 started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, $3) ELSE started_at END, \
                 finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'canceled') THEN $3 ELSE finished_at END \
             WHERE id = $1",
        )
        .bind(run_id.to_string())
        .bind(status.as_str())
        .bind(event.ts)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(Error::UnknownRun(run_id));
        }
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        // The lineage event of the change, if it is one: a run starting, or a started run ending.
        if let Some((was, started)) = before {
            let run = run_id.to_string();
            let was_open = matches!(was.as_str(), "queued" | "running");
            let lineage_event = match status {
                RunStatus::Running if was == "queued" => {
                    Some(outbox::NewOutboxEvent::run(&run, LineageEventType::Start, event.ts))
                }
                _ if was_open => outbox::run_ended(&run, status.as_str(), started, event.ts),
                _ => None,
            };
            outbox::enqueue(&mut tx, lineage_event.as_slice()).await?;
            if was_open {
                outbox::alert_if_failed(&mut tx, &run, status.as_str(), event.ts).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append_event(&self, event: &RunEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_steps_started(&self, events: &[RunEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let mut writes = Writes::new();
        push_steps_started(&mut writes, events);
        writes.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_materializations(&self, ms: &[NewMaterialization]) -> Result<Vec<MaterializationId>> {
        if ms.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let mut writes = Writes::new();
        let ids = write_materializations(&mut tx, ms, None, &mut writes).await?;
        writes.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn partition_states(&self, asset_key: &str) -> Result<Vec<PartitionState>> {
        let rows: Vec<PartitionRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            PARTITION_COLUMNS,
            " FROM asset_partitions WHERE asset_key = $1 ORDER BY partition_key"
        ))
        .bind(asset_key)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(PartitionRow::into_state).collect()
    }

    async fn partition_summaries(
        &self,
        asset_key: &str,
        known_keys_hash: Option<&str>,
    ) -> Result<Vec<PartitionSummary>> {
        self.summaries(asset_key, known_keys_hash).await
    }

    async fn partition_runs(
        &self,
        asset_key: &str,
        code_version: &str,
        known_keys_hash: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PartitionRun>> {
        // Each run's first row is found from the previous one's by a seek along the primary key
        // to the next row of another class (a recursive query: one step per run, each scanning
        // its run once, with no window over every row, which costs SQLite ≈ 2 µs a row); its
        // last row and count are then index ranges up to the next run's first.
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(concatcp!(
            "WITH RECURSIVE starts (k, class, n) AS ( \
                 SELECT k, class, 1 FROM (SELECT partition_key AS k, ",
            PARTITION_CLASS,
            " AS class FROM asset_partitions WHERE asset_key = $1 ORDER BY partition_key LIMIT 1) AS first_row \
               UNION ALL \
                 SELECT a.partition_key, ",
            PARTITION_CLASS,
            ", s.n + 1 FROM starts s JOIN asset_partitions a ON s.n < $4 AND a.asset_key = $1 AND a.partition_key = ( \
                     SELECT partition_key FROM asset_partitions WHERE asset_key = $1 AND partition_key > s.k AND ",
            PARTITION_CLASS,
            " <> s.class ORDER BY partition_key LIMIT 1)), \
             bounded AS (SELECT k, class, LEAD(k) OVER (ORDER BY k) AS next_k FROM starts) \
             SELECT k, \
                 CASE WHEN next_k IS NULL THEN (SELECT MAX(partition_key) FROM asset_partitions WHERE asset_key = $1) \
                   ELSE (SELECT partition_key FROM asset_partitions WHERE asset_key = $1 AND partition_key < next_k \
                         ORDER BY partition_key DESC LIMIT 1) END, \
                 class, \
                 CASE WHEN next_k IS NULL \
                   THEN (SELECT COUNT(*) FROM asset_partitions WHERE asset_key = $1 AND partition_key >= k) \
                   ELSE (SELECT COUNT(*) FROM asset_partitions WHERE asset_key = $1 AND partition_key >= k \
                         AND partition_key < next_k) END \
             FROM bounded ORDER BY k"
        ))
        .bind(asset_key)
        .bind(code_version)
        .bind(known_keys_hash)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|(first, last, class, count)| {
                Ok(PartitionRun { first, last, class: decode("partition class", &class)?, count })
            })
            .collect()
    }

    async fn partition_count(&self, asset_key: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM asset_partitions WHERE asset_key = $1")
            .bind(asset_key)
            .fetch_one(self.reader())
            .await?)
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
        let mut found: HashMap<(String, String), PartitionState> = HashMap::new();
        let mut conn = self.reader().acquire().await?;
        for (asset, partitions) in by_asset {
            let rows: Vec<PartitionRow> = sqlx::query_as(concatcp!(
                "SELECT ",
                PARTITION_COLUMNS,
                " FROM asset_partitions WHERE asset_key = $1 AND partition_key IN (",
                db::JSON_KEYS,
                ")"
            ))
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

    async fn repair_staleness(&self) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        lock_staleness_all(&mut tx).await?;
        let fixed = sqlx::query(concatcp!(
            "UPDATE asset_partitions SET stale_inputs = ",
            STALE_INPUTS_RECOUNT,
            " WHERE stale_inputs <> ",
            STALE_INPUTS_RECOUNT
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(fixed)
    }

    async fn wipe(&self, asset_key: &str, partitions: Option<&[String]>, now: DateTime<Utc>) -> Result<WipeOutcome> {
        let mut tx = self.begin_write().await?;
        lock_staleness_all(&mut tx).await?;
        let keys: Vec<String> = match partitions {
            Some(keys) => keys.to_vec(),
            None => {
                sqlx::query_scalar(
                    "SELECT partition_key FROM asset_partitions WHERE asset_key = $1 \
                     UNION SELECT partition_key FROM materializations WHERE asset_key = $1 AND wiped_at IS NULL",
                )
                .bind(asset_key)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let keys = serde_json::to_string(&keys).expect("strings serialize");
        let running: Option<(String, Option<String>)> = sqlx::query_as(concatcp!(
            "SELECT partition_key, last_run_id FROM asset_partitions \
             WHERE asset_key = $1 AND last_attempt_status = 'running' AND partition_key IN (",
            db::JSON_KEYS,
            ") ORDER BY partition_key LIMIT 1"
        ))
        .bind(asset_key)
        .bind(&keys)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((partition, run)) = running {
            return Err(Error::PartitionRunning {
                asset: asset_key.to_owned(),
                partition,
                run: run.unwrap_or_default(),
            });
        }
        let partitions = sqlx::query(concatcp!(
            "DELETE FROM asset_partitions WHERE asset_key = $1 AND partition_key IN (",
            db::JSON_KEYS,
            ")"
        ))
        .bind(asset_key)
        .bind(&keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Materializations are facts: they stay (their ids are cursors and inputs name them),
        // hidden from history. Readers keep their inputs; their counts are recomputed below.
        let materializations = sqlx::query(concatcp!(
            "UPDATE materializations SET wiped_at = $3 WHERE asset_key = $1 AND wiped_at IS NULL \
             AND partition_key IN (",
            db::JSON_KEYS,
            ")"
        ))
        .bind(asset_key)
        .bind(&keys)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(concatcp!(
            "DELETE FROM asset_check_results WHERE asset_key = $1 AND partition_key IN (",
            db::JSON_KEYS,
            ")"
        ))
        .bind(asset_key)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
        let readers = sqlx::query(concatcp!(
            "UPDATE asset_partitions SET stale_inputs = ",
            STALE_INPUTS_RECOUNT,
            " WHERE current_materialization_id IN (SELECT materialization_id FROM materialization_inputs \
               WHERE upstream_asset_key = $1 AND upstream_partition_key IN (",
            db::JSON_KEYS,
            "))"
        ))
        .bind(asset_key)
        .bind(&keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(WipeOutcome { partitions, materializations, readers })
    }

    async fn history(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        before: Option<MaterializationId>,
        limit: i64,
    ) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            MATERIALIZATION_COLUMNS,
            " FROM materializations WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
             AND wiped_at IS NULL AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $3"
        ))
        .bind(asset_key)
        .bind(partition_key)
        .bind(limit)
        .bind(before)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn count(&self, of: Counted<'_>) -> Result<i64> {
        let query = match of {
            Counted::Runs(f) => {
                // Only the filters given, so an index (runs (status, id)) can serve the count; a
                // `$1 IS NULL OR …` condition would make SQLite scan every run.
                let mut q = sqlx::QueryBuilder::new("SELECT count(*) FROM runs WHERE 1 = 1");
                if let Some(status) = f.status {
                    q.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(trigger) = f.trigger {
                    q.push(" AND trigger = ").push_bind(trigger.as_str());
                }
                if let Some(asset) = &f.asset {
                    // A pruned run's requests are gone; its materializations are lineage, kept.
                    q.push(" AND (id IN (SELECT run_id FROM materialization_requests WHERE asset_key = ")
                        .push_bind(asset.clone())
                        .push(") OR id IN (SELECT run_id FROM materializations WHERE asset_key = ")
                        .push_bind(asset.clone())
                        .push("))");
                }
                if let Some(since) = f.since {
                    q.push(" AND created_at >= ").push_bind(since);
                }
                return Ok(q.build_query_scalar().fetch_one(self.reader()).await?);
            }
            Counted::History { asset, partition } => sqlx::query_scalar(
                "SELECT count(*) FROM materializations WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
                 AND wiped_at IS NULL",
            )
            .bind(asset)
            .bind(partition),
            Counted::CheckResults { asset, partition } => sqlx::query_scalar(
                "SELECT count(*) FROM asset_check_results WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2)",
            )
            .bind(asset)
            .bind(partition),
            Counted::Ticks { instigator } => {
                sqlx::query_scalar("SELECT count(*) FROM ticks WHERE instigator = $1").bind(instigator)
            }
            Counted::Backfills => sqlx::query_scalar("SELECT count(*) FROM backfills"),
            // A run's requests are counted through its index (`requests_run`), as `requests` reads them.
            Counted::Requests { run: Some(run), state } => sqlx::query_scalar(
                "SELECT count(*) FROM materialization_requests WHERE run_id = $1 AND ($2 IS NULL OR state = $2)",
            )
            .bind(run.to_string())
            .bind(state.map(RequestState::as_str)),
            Counted::Requests { run: None, state } => {
                sqlx::query_scalar("SELECT count(*) FROM materialization_requests WHERE ($1 IS NULL OR state = $1)")
                    .bind(state.map(RequestState::as_str))
            }
        };
        Ok(query.fetch_one(self.reader()).await?)
    }

    async fn materialization(&self, id: MaterializationId) -> Result<Option<MaterializationRecord>> {
        let row: Option<MaterializationRow> =
            sqlx::query_as(concatcp!("SELECT ", MATERIALIZATION_COLUMNS, " FROM materializations WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
        row.map(MaterializationRow::into_record).transpose()
    }

    async fn inputs_of(&self, id: MaterializationId) -> Result<Vec<InputVersion>> {
        let rows: Vec<InputRow> = sqlx::query_as(
            "SELECT upstream_asset_key, upstream_partition_key, upstream_materialization_id, upstream_data_version \
             FROM materialization_inputs WHERE materialization_id = $1 \
             ORDER BY upstream_asset_key, upstream_partition_key",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(InputRow::into_input).collect())
    }

    async fn readers_of(&self, id: MaterializationId) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            MATERIALIZATION_COLUMNS,
            " FROM materializations WHERE id IN \
             (SELECT materialization_id FROM materialization_inputs WHERE upstream_materialization_id = $1) \
             AND wiped_at IS NULL ORDER BY id"
        ))
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn check_results(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CheckResultRecord>> {
        let rows: Vec<CheckRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            CHECK_COLUMNS,
            " FROM asset_check_results WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
             AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $3"
        ))
        .bind(asset_key)
        .bind(partition_key)
        .bind(limit)
        .bind(before)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(CheckRow::into_record).collect()
    }

    async fn run_check_results(&self, run_id: RunId) -> Result<Vec<CheckResultRecord>> {
        let rows: Vec<CheckRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            CHECK_COLUMNS,
            " FROM asset_check_results c WHERE run_id = $1 AND id = (SELECT max(id) FROM asset_check_results l \
               WHERE l.run_id = c.run_id AND l.asset_key = c.asset_key AND l.partition_key = c.partition_key \
               AND l.check_name = c.check_name) \
             ORDER BY asset_key, partition_key, check_name"
        ))
        .bind(run_id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(CheckRow::into_record).collect()
    }

    async fn latest_check_results(&self, asset_key: &str) -> Result<Vec<CheckResultRecord>> {
        let rows: Vec<CheckRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            CHECK_COLUMNS,
            " FROM asset_check_results c WHERE asset_key = $1 AND id = (SELECT max(id) FROM asset_check_results l \
               WHERE l.asset_key = c.asset_key AND l.partition_key = c.partition_key \
               AND l.check_name = c.check_name) \
             ORDER BY partition_key, check_name"
        ))
        .bind(asset_key)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(CheckRow::into_record).collect()
    }

    async fn create_backfill(&self, backfill: &NewBackfill) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let run = &backfill.run;
        insert_run(&mut tx, run).await?;
        sqlx::query(concatcp!(
            "INSERT INTO backfills (id, selection, partition_from, partition_to, policy, run_id, cells, skipped, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8",
            db::JSON,
            ", $9)"
        ))
        .bind(backfill.id.to_string())
        .bind(&backfill.selection)
        .bind(&backfill.partition_from)
        .bind(&backfill.partition_to)
        .bind(backfill.policy.as_str())
        .bind(run.id.to_string())
        .bind(backfill.cells)
        .bind(backfill.skipped.to_string())
        .bind(run.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn backfills(
        &self,
        id: Option<BackfillId>,
        before: Option<BackfillId>,
        limit: i64,
    ) -> Result<Vec<BackfillRecord>> {
        // Ids are UUIDv7: their order is creation order.
        let rows: Vec<BackfillRow> = sqlx::query_as(
            "SELECT b.id, b.selection, b.partition_from, b.partition_to, b.policy, b.run_id, r.status, b.cells, \
                 CAST(b.skipped AS TEXT) AS skipped, b.created_at, r.finished_at \
             FROM backfills b JOIN runs r ON r.id = b.run_id \
             WHERE ($1 IS NULL OR b.id = $1) AND ($3 IS NULL OR b.id < $3) ORDER BY b.id DESC LIMIT $2",
        )
        .bind(id.map(|i| i.to_string()))
        .bind(limit)
        .bind(before.map(|b| b.to_string()))
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(BackfillRow::into_record).collect()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT id, status, trigger, selection, n_steps, CAST(tags AS TEXT) AS tags, created_at, started_at, \
                 finished_at, owner \
             FROM runs WHERE ($1 IS NULL OR status = $1) AND ($3 IS NULL OR id < $3) AND ($4 IS NULL OR trigger = $4) \
                 AND ($5 IS NULL OR id IN (SELECT run_id FROM materialization_requests WHERE asset_key = $5) \
                     OR id IN (SELECT run_id FROM materializations WHERE asset_key = $5)) \
                 AND ($6 IS NULL OR created_at >= $6) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.limit)
        .bind(filter.before.map(|b| b.to_string()))
        .bind(filter.trigger.map(Trigger::as_str))
        .bind(filter.asset.as_deref())
        .bind(filter.since)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>> {
        let row: Option<RunRow> = sqlx::query_as(
            "SELECT id, status, trigger, selection, n_steps, CAST(tags AS TEXT) AS tags, created_at, started_at, \
                 finished_at, owner \
             FROM runs WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.map(RunRow::into_record).transpose()
    }

    async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status")
                .fetch_all(self.reader())
                .await?;
        rows.into_iter().map(|(status, n)| Ok((decode("runs.status", &status)?, n))).collect()
    }

    async fn run_events(&self, id: RunId) -> Result<Vec<RunEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT run_id, ts, kind, asset_key, partition_key, message, CAST(body AS TEXT) AS body \
             FROM run_events WHERE run_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    async fn run_materializations(&self, id: RunId) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            MATERIALIZATION_COLUMNS,
            " FROM materializations WHERE run_id = $1 ORDER BY id"
        ))
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn step_materialization(
        &self,
        run: RunId,
        asset_key: &str,
        partition_key: &str,
    ) -> Result<Option<MaterializationRecord>> {
        let row: Option<MaterializationRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            MATERIALIZATION_COLUMNS,
            " FROM materializations WHERE run_id = $1 AND asset_key = $2 AND partition_key = $3"
        ))
        .bind(run.to_string())
        .bind(asset_key)
        .bind(partition_key)
        .fetch_optional(self.reader())
        .await?;
        row.map(MaterializationRow::into_record).transpose()
    }

    async fn add_dynamic_partitions(&self, partitions_def: &str, keys: &[String], now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let added = insert_dynamic_partitions(&mut tx, partitions_def, keys, now).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn dynamic_partitions(&self, partitions_def: &str) -> Result<Vec<String>> {
        let keys: Vec<String> = sqlx::query_scalar(concatcp!(
            "SELECT partition_key FROM dynamic_partitions WHERE partitions_def = $1 ORDER BY ",
            db::DYNAMIC_ORDER
        ))
        .bind(partitions_def)
        .fetch_all(self.reader())
        .await?;
        Ok(keys)
    }

    async fn dynamic_partitions_of(&self, partitions_defs: &[&str]) -> Result<HashMap<String, Vec<String>>> {
        let mut keys: HashMap<String, Vec<String>> =
            partitions_defs.iter().map(|name| ((*name).to_owned(), Vec::new())).collect();
        if partitions_defs.is_empty() {
            return Ok(keys);
        }
        // One read: a pool connection per back-to-back read is what a command start paid (the
        // pool opens another while the last one is being handed back).
        let mut q = sqlx::QueryBuilder::new(
            "SELECT partitions_def, partition_key FROM dynamic_partitions WHERE partitions_def IN (",
        );
        let mut list = q.separated(", ");
        for name in partitions_defs {
            list.push_bind(*name);
        }
        q.push(concatcp!(") ORDER BY ", db::DYNAMIC_ORDER));
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(self.reader()).await?;
        for (name, key) in rows {
            keys.entry(name).or_default().push(key);
        }
        Ok(keys)
    }

    async fn ids_matching(&self, kind: IdKind, fragment: &str, limit: i64) -> Result<Vec<uuid::Uuid>> {
        let query = match kind {
            IdKind::Run => "SELECT id FROM runs WHERE id LIKE $1 OR id LIKE $2 ORDER BY id LIMIT $3",
            IdKind::Backfill => "SELECT id FROM backfills WHERE id LIKE $1 OR id LIKE $2 ORDER BY id LIMIT $3",
            IdKind::Request => {
                "SELECT id FROM materialization_requests WHERE id LIKE $1 OR id LIKE $2 ORDER BY id LIMIT $3"
            }
        };
        let ids: Vec<String> = sqlx::query_scalar(query)
            .bind(format!("{fragment}%"))
            .bind(format!("%{fragment}"))
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        ids.iter().map(|id| decode::<uuid::Uuid>("id", id)).collect()
    }

    async fn materializations_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>> {
        const AFTER: &str = "SELECT id, asset_key, partition_key FROM materializations WHERE id > $1 \
             AND wiped_at IS NULL ORDER BY id LIMIT $2";
        if db::LOCK_MAINTENANCE.is_none() {
            // SQLite: ids are drawn and committed in order, under the single writer's lock.
            return Ok(sqlx::query_as(AFTER).bind(after).bind(limit).fetch_all(self.reader()).await?);
        }
        // PostgreSQL draws a materialization's id before its transaction commits, so a lower id
        // can become visible after a higher one: a cursor moved past the higher one would never
        // see it. Every transaction that draws ids holds the maintenance lock shared from before
        // the first (`lock_staleness`); taken exclusively here, it waits for those in flight and
        // holds off new ones while the largest id is read. Every id up to that horizon is then
        // committed or never will be (new ones are drawn above it), so the rows up to it are read
        // after the lock is let go. READ COMMITTED whatever the server's default: the horizon's
        // statement must see what committed while the lock was awaited.
        let mut tx = self.begin_write().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED").execute(&mut *tx).await?;
        lock_staleness_all(&mut tx).await?;
        let horizon: i64 =
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM materializations").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(sqlx::query_as(
            "SELECT id, asset_key, partition_key FROM materializations WHERE id > $1 AND id <= $3 \
             AND wiped_at IS NULL ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .bind(horizon)
        .fetch_all(self.reader())
        .await?)
    }
}

/// Adds keys to a dynamic partitions definition on `tx`; returns how many were new.
pub(super) async fn insert_dynamic_partitions(
    tx: &mut db::Conn,
    partitions_def: &str,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut added = 0;
    for key in keys {
        added += sqlx::query(
            "INSERT INTO dynamic_partitions (partitions_def, partition_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(partitions_def)
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    Ok(added)
}
