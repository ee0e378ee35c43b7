//! `AutomationStore`: instigators, ticks committed with their requests, and condition
//! evaluations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::QueryBuilder;

use super::lineage::insert_dynamic_partitions;
use super::queue::{finish_run, submit_in};
use super::writes::insert_run;
use super::{ROWS_PER_STATEMENT, db};
use crate::Result;
use crate::model::*;
use crate::rows::{InstigatorRow, TickRow};
use crate::store::AutomationStore;

#[async_trait]
impl AutomationStore for db::Store {
    async fn ensure_instigators(&self, instigators: &[(String, InstigatorKind)], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (name, kind) in instigators {
            sqlx::query(
                "INSERT INTO instigators (name, kind, status, created_at, updated_at) \
                 VALUES ($1, $2, 'running', $3, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn instigators(&self) -> Result<Vec<InstigatorState>> {
        let rows: Vec<InstigatorRow> =
            sqlx::query_as("SELECT name, kind, status, cursor, created_at, updated_at FROM instigators ORDER BY name")
                .fetch_all(self.reader())
                .await?;
        rows.into_iter().map(InstigatorRow::into_state).collect()
    }

    async fn set_instigator(
        &self,
        name: &str,
        status: Option<InstigatorStatus>,
        cursor: Option<Option<&str>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let mut found = false;
        if let Some(status) = status {
            found |= sqlx::query("UPDATE instigators SET status = $2, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(status.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        }
        if let Some(cursor) = cursor {
            found |= sqlx::query("UPDATE instigators SET cursor = $2, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(cursor)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        }
        tx.commit().await?;
        Ok(found)
    }

    async fn commit_tick(&self, tick: &NewTick) -> Result<TickCommit> {
        let mut tx = self.begin_write().await?;
        if let Some(interval) = tick.min_interval {
            // Serializes the ticks of one instigator (SQLite's single writer already does), so
            // of two daemons evaluating it within its interval only the first records a tick.
            sqlx::query(concatcp!("SELECT name FROM instigators WHERE name = $1", db::LOCK_ROW))
                .bind(&tick.instigator)
                .fetch_optional(&mut *tx)
                .await?;
            let near: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ticks WHERE instigator = $1 AND tick_time > $2 AND tick_time < $3",
            )
            .bind(&tick.instigator)
            .bind(tick.tick_time - interval)
            .bind(tick.tick_time + interval)
            .fetch_one(&mut *tx)
            .await?;
            if near > 0 {
                return Ok(TickCommit::AlreadyTicked);
            }
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ticks (instigator, tick_time, status, message, cursor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instigator, tick_time) DO NOTHING RETURNING id",
        )
        .bind(&tick.instigator)
        .bind(tick.tick_time)
        .bind(tick.status.as_str())
        .bind(&tick.message)
        .bind(tick.cursor.as_ref().and_then(|c| c.1.as_deref()))
        .bind(tick.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(TickCommit::AlreadyTicked);
        };
        if let Some((before, after)) = &tick.cursor {
            let moved = sqlx::query(
                "UPDATE instigators SET cursor = $3, updated_at = $4 \
                 WHERE name = $1 AND cursor IS NOT DISTINCT FROM $2",
            )
            .bind(&tick.instigator)
            .bind(before.as_deref())
            .bind(after.as_deref())
            .bind(tick.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(TickCommit::CursorMoved);
            }
        }
        for (def, keys) in &tick.dynamic_partitions {
            insert_dynamic_partitions(&mut tx, def, keys, tick.created_at).await?;
        }
        for chunk in tick.evaluations.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(
                "INSERT INTO condition_evaluations (asset_key, partition_key, condition, evaluated_at, requested, \
                 reason, request_key) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.push_bind(&e.asset_key)
                    .push_bind(&e.partition_key)
                    .push_bind(&e.condition)
                    .push_bind(e.evaluated_at)
                    .push_bind(e.requested)
                    .push_bind(&e.reason)
                    .push_bind(e.request_key.as_deref());
            });
            q.build().execute(&mut *tx).await?;
        }
        let mut created = 0;
        if let Some(run) = &tick.run {
            let outcomes = submit_in(&mut tx, &tick.requests, &tick.edges).await?;
            created = outcomes.iter().filter(|o| o.inserted).count();
            if created > 0 {
                insert_run(&mut tx, &NewRun { n_steps: created as i64, ..run.clone() }).await?;
                // A step waiting on another run's request that failed meanwhile has failed
                // already: a run left with nothing to do ends now.
                finish_run(&mut tx, &run.id.to_string(), tick.created_at).await?;
                sqlx::query("UPDATE ticks SET run_id = $2, requests = $3 WHERE id = $1")
                    .bind(id)
                    .bind(run.id.to_string())
                    .bind(created as i64)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        if created > 0 {
            self.woke();
        }
        Ok(TickCommit::Committed { requests: created })
    }

    async fn condition_evaluations(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ConditionEvaluationRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, asset_key, partition_key, condition, evaluated_at, requested, reason, request_key \
             FROM condition_evaluations WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(asset_key)
        .bind(partition_key)
        .bind(limit)
        .fetch_all(self.reader())
        .await?)
    }

    async fn ticks(&self, instigator: &str, before: Option<i64>, limit: i64) -> Result<Vec<TickRecord>> {
        let rows: Vec<TickRow> = sqlx::query_as(
            "SELECT id, instigator, tick_time, status, run_id, requests, message, cursor, created_at FROM ticks \
             WHERE instigator = $1 AND ($3 IS NULL OR (tick_time, id) < \
                 (SELECT b.tick_time, b.id FROM ticks b WHERE b.id = $3)) \
             ORDER BY tick_time DESC, id DESC LIMIT $2",
        )
        .bind(instigator)
        .bind(limit)
        .bind(before)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(TickRow::into_record).collect()
    }
}
