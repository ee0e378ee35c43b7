//! The request queue's SQL, written once for both backends.
//!
//! Placeholders are `$N`, which both SQLite and PostgreSQL accept; timestamps are bound as
//! `DateTime<Utc>` (RFC 3339 text on SQLite, `timestamptz` on PostgreSQL), so comparisons agree.
//! [`queue_methods!`] expands the `LineageStore` queue methods inside each backend's impl; the
//! backend supplies how to begin a write transaction and its row-locking clause (`FOR UPDATE
//! SKIP LOCKED` on PostgreSQL; nothing on SQLite, whose single writer already serializes claims).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::model::*;
use crate::rows::parse_run_id;
use crate::{Error, Result};

#[derive(FromRow)]
pub(crate) struct RequestRow {
    pub(crate) id: String,
    pub(crate) idempotency_key: String,
    pub(crate) run_id: String,
    pub(crate) asset_key: String,
    pub(crate) partition_key: String,
    pub(crate) origin: String,
    pub(crate) pool: Option<String>,
    pub(crate) priority: i64,
    pub(crate) state: String,
    pub(crate) pending_deps: i64,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) attempt: i64,
    pub(crate) max_attempts: i64,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_expires_at: Option<DateTime<Utc>>,
    pub(crate) cancel_requested: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) materialization_id: Option<i64>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
}

pub(crate) fn parse_request_id(s: &str) -> Result<RequestId> {
    RequestId::from_str(s).map_err(|e| Error::Decode { what: "request id", detail: e.to_string() })
}

impl RequestRow {
    pub(crate) fn into_record(self) -> Result<RequestRecord> {
        Ok(RequestRecord {
            id: parse_request_id(&self.id)?,
            idempotency_key: self.idempotency_key,
            run_id: parse_run_id(&self.run_id)?,
            asset_key: self.asset_key,
            partition_key: self.partition_key,
            origin: self.origin,
            pool: self.pool,
            priority: self.priority,
            state: RequestState::from_str(&self.state)
                .map_err(|detail| Error::Decode { what: "request state", detail })?,
            pending_deps: self.pending_deps,
            run_at: self.run_at,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            cancel_requested: self.cancel_requested,
            last_error: self.last_error,
            materialization_id: self.materialization_id,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

/// The columns of a [`RequestRow`], as a literal so queries stay `&'static str`.
macro_rules! request_columns {
    () => {
        "id, idempotency_key, run_id, asset_key, partition_key, origin, pool, priority, \
         state, pending_deps, run_at, attempt, max_attempts, lease_owner, lease_expires_at, cancel_requested, last_error, \
         materialization_id, created_at, started_at, finished_at"
    };
}
pub(crate) use request_columns;

/// Marks `upstream_failed` every waiting request downstream of `$1`, transitively.
pub(crate) const CASCADE_UPSTREAM_FAILED: &str = "WITH RECURSIVE down(id) AS ( \
         SELECT downstream_request_id FROM request_edges WHERE upstream_request_id = $1 \
         UNION SELECT e.downstream_request_id FROM request_edges e JOIN down ON e.upstream_request_id = down.id) \
     UPDATE materialization_requests SET state = 'upstream_failed', finished_at = $2 \
     WHERE id IN (SELECT id FROM down) AND state IN ('blocked', 'available')";

/// Sets, for the requests whose ids follow (`… IN (` is left open), how many upstream requests
/// they still wait for and their state: `upstream_failed` when one of those failed or was
/// canceled, `blocked` while any has not succeeded, else `available`.
pub(crate) const RECOMPUTE_WAITING: &str = "UPDATE materialization_requests SET \
         pending_deps = (SELECT count(*) FROM request_edges e JOIN materialization_requests u \
             ON u.id = e.upstream_request_id WHERE e.downstream_request_id = materialization_requests.id \
             AND u.state <> 'succeeded'), \
         state = CASE \
             WHEN EXISTS (SELECT 1 FROM request_edges e JOIN materialization_requests u \
                 ON u.id = e.upstream_request_id WHERE e.downstream_request_id = materialization_requests.id \
                 AND u.state IN ('failed', 'canceled', 'upstream_failed')) THEN 'upstream_failed' \
             WHEN EXISTS (SELECT 1 FROM request_edges e JOIN materialization_requests u \
                 ON u.id = e.upstream_request_id WHERE e.downstream_request_id = materialization_requests.id \
                 AND u.state <> 'succeeded') THEN 'blocked' \
             ELSE 'available' END, \
         finished_at = NULL \
     WHERE id IN (";

/// Ends a run when none of its requests is waiting or running: first locks the run's row, then
/// looks. Without the lock, two workers completing a run's last two requests at once (on
/// PostgreSQL, each statement seeing only committed rows) each saw the other's request still
/// running, and the run stayed `running` forever with every request succeeded; with it, the
/// second one to lock starts its check after the first committed, and finishes the run.
macro_rules! finish_run {
    ($tx:ident, $run:expr, $now:expr, $lock:literal) => {{
        let run = $run;
        let _: Option<String> = sqlx::query_scalar(concat!("SELECT id FROM runs WHERE id = $1", $lock))
            .bind(&run)
            .fetch_optional(&mut *$tx)
            .await?;
        sqlx::query($crate::queue::FINISH_RUN).bind(&run).bind($now).execute(&mut *$tx).await?;
    }};
}
pub(crate) use finish_run;

/// Ends run `$1` when none of its requests is waiting or running (after `finish_run!`'s lock).
pub(crate) const FINISH_RUN: &str = "UPDATE runs SET \
         status = CASE \
             WHEN EXISTS (SELECT 1 FROM materialization_requests WHERE run_id = $1 AND state = 'canceled') THEN 'canceled' \
             WHEN EXISTS (SELECT 1 FROM materialization_requests WHERE run_id = $1 AND state IN ('failed', 'upstream_failed')) THEN 'failed' \
             ELSE 'succeeded' END, \
         finished_at = $2 \
     WHERE id = $1 AND status IN ('queued', 'running') \
       AND NOT EXISTS (SELECT 1 FROM materialization_requests WHERE run_id = $1 AND state IN ('blocked', 'available', 'running'))";

/// Completions fenced, recorded and unblocked per statement (at most 2 binds each, well under
/// both backends' parameter limits).
pub(crate) const COMPLETIONS_PER_STATEMENT: usize = 500;

/// Expands the queue methods of `LineageStore` for one backend.
///
/// `$pool`: the field reads go through; `$begin`: a method starting a write transaction;
/// `$skip`: the row-locking suffix for queue rows (`FOR UPDATE SKIP LOCKED`); `$lock`: for pool
/// rows and a run's row, which must be waited for (`FOR NO KEY UPDATE`: it does not conflict with
/// the key-share locks that foreign-key checks of new materializations take on the run's row).
macro_rules! queue_methods {
    ($store:ty, $conn:ty, $pool:ident, $begin:ident, $begin_claim:ident, $skip:literal, $lock:literal) => {

    /// Sets the pending count and state of the requests `ids` from their upstream requests
    /// (`RECOMPUTE_WAITING`), one statement per chunk.
    async fn recompute_waiting(tx: &mut $conn, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks($crate::writes::ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new($crate::queue::RECOMPUTE_WAITING);
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Inserts requests (multi-row; a known idempotency key keeps its first request) and their
    /// edges inside `tx`, then sets each new downstream's pending count and state.
    async fn submit_in(tx: &mut $conn, requests: &[NewRequest], edges: &[(usize, usize)]) -> Result<Vec<SubmitOutcome>> {
            // Multi-row statements: a backfill submits thousands of requests at once.
            let mut ids: std::collections::HashMap<String, String> = std::collections::HashMap::new();
            let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::new();
            for chunk in requests.chunks($crate::writes::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO materialization_requests (id, idempotency_key, run_id, asset_key, partition_key, origin, \
                         pool, priority, state, pending_deps, run_at, attempt, max_attempts, created_at) ",
                );
                q.push_values(chunk, |mut row, r| {
                    row.push_bind(r.id.to_string())
                        .push_bind(&r.idempotency_key)
                        .push_bind(r.run_id.to_string())
                        .push_bind(&r.asset_key)
                        .push_bind(&r.partition_key)
                        .push_bind(&r.origin)
                        .push_bind(r.pool.as_deref())
                        .push_bind(r.priority)
                        .push("'available'")
                        .push("0")
                        .push_bind(r.run_at)
                        .push("0")
                        .push_bind(r.max_attempts)
                        .push_bind(r.created_at);
                });
                q.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, id");
                let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                inserted.extend(rows.iter().map(|(key, _)| key.clone()));
                ids.extend(rows);
                // Keys that were already known: the first request stands.
                let known: Vec<&str> = chunk
                    .iter()
                    .map(|r| r.idempotency_key.as_str())
                    .filter(|k| !ids.contains_key(*k))
                    .collect();
                if !known.is_empty() {
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT idempotency_key, id FROM materialization_requests WHERE idempotency_key IN (",
                    );
                    let mut list = q.separated(", ");
                    for k in &known {
                        list.push_bind(*k);
                    }
                    q.push(")");
                    let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    ids.extend(rows);
                }
            }
            let mut outcomes = Vec::with_capacity(requests.len());
            for r in requests {
                let id = ids.get(&r.idempotency_key).ok_or_else(|| Error::Decode {
                    what: "materialization_requests",
                    detail: format!("no request for idempotency key {}", r.idempotency_key),
                })?;
                let id = $crate::queue::parse_request_id(id)?;
                // A key repeated within one submission is new only the first time.
                outcomes.push(SubmitOutcome { id, inserted: inserted.remove(&r.idempotency_key) });
            }
            let new_edges: Vec<(String, String)> = edges
                .iter()
                .filter(|(_, down)| outcomes[*down].inserted)
                .map(|&(up, down)| (outcomes[up].id.to_string(), outcomes[down].id.to_string()))
                .collect();
            for chunk in new_edges.chunks($crate::writes::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO request_edges (upstream_request_id, downstream_request_id) ");
                q.push_values(chunk, |mut row, (up, down)| {
                    row.push_bind(up.as_str()).push_bind(down.as_str());
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            let blocked: Vec<String> = new_edges
                .into_iter()
                .map(|(_, down)| down)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            // Waiting upstream requests block each; a failed or canceled one fails it.
            recompute_waiting(tx, &blocked).await?;
        Ok(outcomes)
    }

    #[async_trait::async_trait]
    impl $crate::store::RequestQueue for $store {
        async fn submit_requests(&self, requests: &[NewRequest], edges: &[(usize, usize)]) -> Result<Vec<SubmitOutcome>> {
            let mut tx = self.$begin().await?;
            let outcomes = submit_in(&mut tx, requests, edges).await?;
            tx.commit().await?;
            Ok(outcomes)
        }

        async fn ensure_instigators(&self, instigators: &[(String, String)], now: DateTime<Utc>) -> Result<()> {
            let mut tx = self.$begin().await?;
            for (name, kind) in instigators {
                sqlx::query(
                    "INSERT INTO instigators (name, kind, status, created_at, updated_at) VALUES ($1, $2, 'running', $3, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(kind)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn instigators(&self) -> Result<Vec<InstigatorState>> {
            Ok(sqlx::query_as("SELECT name, kind, status, cursor, created_at, updated_at FROM instigators ORDER BY name")
                .fetch_all(&self.$pool)
                .await?)
        }

        async fn set_instigator(&self, name: &str, status: Option<&str>, cursor: Option<Option<&str>>, now: DateTime<Utc>) -> Result<bool> {
            let mut tx = self.$begin().await?;
            let mut found = false;
            if let Some(status) = status {
                found |= sqlx::query("UPDATE instigators SET status = $2, updated_at = $3 WHERE name = $1")
                    .bind(name)
                    .bind(status)
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
            let mut tx = self.$begin().await?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO ticks (instigator, tick_time, status, message, cursor, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (instigator, tick_time) DO NOTHING RETURNING id",
            )
            .bind(&tick.instigator)
            .bind(tick.tick_time)
            .bind(&tick.status)
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
                    "UPDATE instigators SET cursor = $3, updated_at = $4 WHERE name = $1 AND cursor IS NOT DISTINCT FROM $2",
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
                for key in keys {
                    sqlx::query(
                        "INSERT INTO dynamic_partitions (partitions_def, partition_key, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(def)
                    .bind(key)
                    .bind(tick.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for chunk in tick.evaluations.chunks($crate::writes::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO condition_evaluations (asset_key, partition_key, condition, evaluated_at, requested, reason, request_key) ",
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
                    sqlx::query("UPDATE ticks SET run_id = $2, requests = $3 WHERE id = $1")
                        .bind(id)
                        .bind(run.id.to_string())
                        .bind(created as i64)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(TickCommit::Committed { requests: created })
        }

        async fn condition_evaluations(&self, asset_key: &str, partition_key: Option<&str>, limit: i64) -> Result<Vec<ConditionEvaluationRecord>> {
            Ok(sqlx::query_as(
                "SELECT id, asset_key, partition_key, condition, evaluated_at, requested, reason, request_key \
                 FROM condition_evaluations WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(asset_key)
            .bind(partition_key)
            .bind(limit)
            .fetch_all(&self.$pool)
            .await?)
        }

        async fn materializations_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>> {
            Ok(sqlx::query_as(
                "SELECT id, asset_key, partition_key FROM materializations WHERE id > $1 AND wiped_at IS NULL \
                 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.$pool)
            .await?)
        }

        async fn ticks(&self, instigator: &str, limit: i64) -> Result<Vec<TickRecord>> {
            Ok(sqlx::query_as(
                "SELECT id, instigator, tick_time, status, run_id, requests, message, cursor, created_at FROM ticks \
                 WHERE instigator = $1 ORDER BY tick_time DESC, id DESC LIMIT $2",
            )
            .bind(instigator)
            .bind(limit)
            .fetch_all(&self.$pool)
            .await?)
        }


        async fn claim_requests(
            &self,
            worker: &str,
            only_run: Option<RunId>,
            limit: i64,
            now: DateTime<Utc>,
            lease_until: DateTime<Utc>,
        ) -> Result<Vec<ClaimedRequest>> {
            if limit <= 0 {
                return Ok(Vec::new());
            }
            let mut tx = self.$begin_claim().await?;
            // Walks the claim index in priority order (see PostgreSQL's `begin_claim`).
            let candidates: Vec<(String, Option<String>)> = sqlx::query_as(concat!(
                "SELECT id, pool FROM materialization_requests WHERE state = 'available' AND run_at <= $1 \
                 AND ($3 IS NULL OR run_id = $3) ORDER BY priority DESC, run_at, id LIMIT $2",
                $skip
            ))
            .bind(now)
            .bind(limit * 4)
            .bind(only_run.map(|r| r.to_string()))
            .fetch_all(&mut *tx)
            .await?;
            let pools: Vec<String> = {
                let mut p: Vec<String> = candidates.iter().filter_map(|(_, p)| p.clone()).collect();
                p.sort();
                p.dedup();
                p
            };
            // Pool slots: lock the pools' rows (PostgreSQL) so concurrent claims of one pool
            // serialize, then count what runs now. Unknown pools are unlimited.
            let mut free: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            for pool in &pools {
                let limit: Option<i64> = sqlx::query_scalar(concat!("SELECT slot_limit FROM pools WHERE name = $1", $lock))
                    .bind(pool)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(limit) = limit {
                    let running: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM materialization_requests WHERE pool = $1 AND state = 'running'",
                    )
                    .bind(pool)
                    .fetch_one(&mut *tx)
                    .await?;
                    free.insert(pool.clone(), (limit - running).max(0));
                }
            }
            let mut picked = Vec::new();
            for (id, pool) in candidates {
                if picked.len() as i64 >= limit {
                    break;
                }
                if let Some(slots) = pool.as_ref().and_then(|p| free.get_mut(p)) {
                    if *slots == 0 {
                        continue;
                    }
                    *slots -= 1;
                }
                picked.push(id);
            }
            if picked.is_empty() {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE materialization_requests SET state = 'running', attempt = attempt + 1, lease_owner = ",
            );
            q.push_bind(worker)
                .push(", lease_expires_at = ")
                .push_bind(lease_until)
                .push(", started_at = coalesce(started_at, ")
                .push_bind(now)
                .push(") WHERE id IN (");
            let mut ids = q.separated(", ");
            for id in &picked {
                ids.push_bind(id.as_str());
            }
            q.push(") RETURNING id, run_id, asset_key, partition_key, attempt, max_attempts");
            let rows: Vec<(String, String, String, String, i64, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
            let mut claimed = Vec::with_capacity(rows.len());
            let mut runs = std::collections::BTreeSet::new();
            for row in rows {
                runs.insert(row.1.clone());
                claimed.push(ClaimedRequest {
                    id: $crate::queue::parse_request_id(&row.0)?,
                    run_id: $crate::rows::parse_run_id(&row.1)?,
                    asset_key: row.2,
                    partition_key: row.3,
                    attempt: row.4,
                    max_attempts: row.5,
                });
            }
            // Keep claim order (priority, run_at, id), whatever order RETURNING used.
            claimed.sort_by_key(|c| picked.iter().position(|p| *p == c.id.to_string()));
            for run in runs {
                sqlx::query("UPDATE runs SET status = 'running', started_at = coalesce(started_at, $2) WHERE id = $1 AND status = 'queued'")
                    .bind(run)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            // The claimed partitions are running, in the same transaction as the claim.
            let events: Vec<RunEvent> = claimed
                .iter()
                .map(|c| RunEvent::step(c.run_id, now, EventKind::StepStarted, &c.asset_key, &c.partition_key, ""))
                .collect();
            write_steps_started(&mut *tx, &events).await?;
            tx.commit().await?;
            Ok(claimed)
        }

        async fn heartbeat(&self, worker: &str, ids: &[RequestId], lease_until: DateTime<Utc>) -> Result<Vec<(RequestId, bool)>> {
            let mut out = Vec::with_capacity(ids.len());
            if ids.is_empty() {
                return Ok(out);
            }
            let mut tx = self.$begin().await?;
            for chunk in ids.chunks($crate::writes::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("UPDATE materialization_requests SET lease_expires_at = ");
                q.push_bind(lease_until)
                    .push(" WHERE lease_owner = ")
                    .push_bind(worker)
                    .push(" AND state = 'running' AND id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.to_string());
                }
                q.push(") RETURNING id, cancel_requested");
                let rows: Vec<(String, bool)> = q.build_query_as().fetch_all(&mut *tx).await?;
                for (id, cancel) in rows {
                    out.push(($crate::queue::parse_request_id(&id)?, cancel));
                }
            }
            tx.commit().await?;
            Ok(out)
        }

        async fn complete_requests(&self, worker: &str, completions: &[Completion], now: DateTime<Utc>) -> Result<Vec<CompletionResult>> {
            let mut results = vec![CompletionResult::LeaseLost; completions.len()];
            if completions.is_empty() {
                return Ok(results);
            }
            let mut tx = self.$begin().await?;
            let mut runs = std::collections::BTreeSet::new();
            // A constant number of statements per chunk, whatever its size (group commit).
            for (chunk_idx, chunk) in completions.chunks($crate::queue::COMPLETIONS_PER_STATEMENT).enumerate() {
                let offset = chunk_idx * $crate::queue::COMPLETIONS_PER_STATEMENT;
                // The fence: only the holder of each attempt's lease may record it.
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE materialization_requests SET state = 'succeeded', lease_owner = NULL, \
                     lease_expires_at = NULL, last_error = NULL, finished_at = ",
                );
                q.push_bind(now).push(" WHERE state = 'running' AND lease_owner = ").push_bind(worker);
                q.push(" AND (id, attempt) IN (");
                q.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id.to_string()).push_bind(c.attempt);
                });
                q.push(") RETURNING id");
                let fenced: std::collections::HashSet<String> = q.build_query_scalar().fetch_all(&mut *tx).await?.into_iter().collect();
                let held: Vec<usize> = (0..chunk.len()).filter(|i| fenced.contains(&chunk[*i].id.to_string())).collect();
                if held.is_empty() {
                    continue;
                }
                let ms: Vec<NewMaterialization> = held.iter().map(|i| chunk[*i].materialization.clone()).collect();
                let ids = write_materializations(&mut *tx, &ms).await?;
                let held_ids: Vec<String> = held.iter().map(|i| chunk[*i].id.to_string()).collect();
                for (i, mid) in held.iter().zip(&ids) {
                    results[offset + *i] = CompletionResult::Recorded(*mid);
                    runs.insert(chunk[*i].materialization.run_id.to_string());
                }
                let mut q = sqlx::QueryBuilder::new("UPDATE materialization_requests SET materialization_id = CASE id");
                for (id, mid) in held_ids.iter().zip(&ids) {
                    q.push(" WHEN ").push_bind(id.as_str()).push(" THEN ").push_bind(*mid);
                }
                q.push(" END WHERE id IN (");
                let mut list = q.separated(", ");
                for id in &held_ids {
                    list.push_bind(id.as_str());
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
                // Unblock what waited on them: each downstream loses one pending dependency per
                // completed upstream. Joined with the counted edges (not a correlated subquery
                // per row), so the plan stays an index lookup per downstream whatever the
                // statistics say: 90 ms per batch at 9,000 queued requests otherwise.
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE materialization_requests AS r SET pending_deps = r.pending_deps - d.n, \
                         state = CASE WHEN r.state = 'blocked' AND r.pending_deps - d.n = 0 THEN 'available' ELSE r.state END \
                     FROM (SELECT downstream_request_id AS id, count(*) AS n FROM request_edges \
                           WHERE upstream_request_id IN (",
                );
                let mut list = q.separated(", ");
                for id in &held_ids {
                    list.push_bind(id.as_str());
                }
                q.push(") GROUP BY downstream_request_id) AS d WHERE r.id = d.id");
                q.build().execute(&mut *tx).await?;
            }
            for run in runs {
                $crate::queue::finish_run!(tx, run, now, $lock);
            }
            tx.commit().await?;
            Ok(results)
        }

        async fn fail_request(
            &self,
            worker: &str,
            id: RequestId,
            attempt: i64,
            error: &str,
            retry_at: Option<DateTime<Utc>>,
            now: DateTime<Utc>,
        ) -> Result<bool> {
            let mut tx = self.$begin().await?;
            let state: Option<(String, String)> = sqlx::query_as(
                "UPDATE materialization_requests SET \
                     state = CASE WHEN $5 IS NOT NULL AND attempt < max_attempts THEN 'available' ELSE 'failed' END, \
                     run_at = CASE WHEN $5 IS NOT NULL AND attempt < max_attempts THEN $5 ELSE run_at END, \
                     finished_at = CASE WHEN $5 IS NOT NULL AND attempt < max_attempts THEN NULL ELSE $6 END, \
                     lease_owner = NULL, lease_expires_at = NULL, last_error = $4 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempt = $3 \
                 RETURNING state, run_id",
            )
            .bind(id.to_string())
            .bind(worker)
            .bind(attempt)
            .bind(error)
            .bind(retry_at)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((state, run)) = state else {
                return Ok(false);
            };
            if state == "failed" {
                sqlx::query($crate::queue::CASCADE_UPSTREAM_FAILED).bind(id.to_string()).bind(now).execute(&mut *tx).await?;
                $crate::queue::finish_run!(tx, run, now, $lock);
            }
            tx.commit().await?;
            Ok(true)
        }

        async fn acknowledge_cancel(&self, worker: &str, id: RequestId, attempt: i64, now: DateTime<Utc>) -> Result<bool> {
            let mut tx = self.$begin().await?;
            let run: Option<String> = sqlx::query_scalar(
                "UPDATE materialization_requests SET state = 'canceled', finished_at = $4, lease_owner = NULL, \
                     lease_expires_at = NULL \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempt = $3 RETURNING run_id",
            )
            .bind(id.to_string())
            .bind(worker)
            .bind(attempt)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(run) = run else {
                return Ok(false);
            };
            sqlx::query($crate::queue::CASCADE_UPSTREAM_FAILED).bind(id.to_string()).bind(now).execute(&mut *tx).await?;
            $crate::queue::finish_run!(tx, run, now, $lock);
            tx.commit().await?;
            Ok(true)
        }

        async fn reap_expired(
            &self,
            now: DateTime<Utc>,
            backoff: &(dyn Fn(i64) -> std::time::Duration + Send + Sync),
        ) -> Result<Vec<(RequestId, RequestState)>> {
            let mut tx = self.$begin().await?;
            let expired: Vec<(String, String, i64, i64, Option<String>)> = sqlx::query_as(concat!(
                "SELECT id, run_id, attempt, max_attempts, lease_owner FROM materialization_requests \
                 WHERE state = 'running' AND lease_expires_at < $1 ORDER BY lease_expires_at LIMIT 500",
                $skip
            ))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::with_capacity(expired.len());
            for (id, run, attempt, max_attempts, owner) in expired {
                let error = format!("lease expired (worker {})", owner.as_deref().unwrap_or("?"));
                let retry = attempt < max_attempts;
                let run_at = now + chrono::Duration::from_std(backoff(attempt)).unwrap_or_default();
                sqlx::query(
                    "UPDATE materialization_requests SET state = $2, run_at = $3, lease_owner = NULL, \
                         lease_expires_at = NULL, last_error = $4, finished_at = $5 WHERE id = $1",
                )
                .bind(&id)
                .bind(if retry { "available" } else { "failed" })
                .bind(run_at)
                .bind(&error)
                .bind(if retry { None } else { Some(now) })
                .execute(&mut *tx)
                .await?;
                if !retry {
                    sqlx::query($crate::queue::CASCADE_UPSTREAM_FAILED).bind(&id).bind(now).execute(&mut *tx).await?;
                    $crate::queue::finish_run!(tx, &run, now, $lock);
                }
                out.push((
                    $crate::queue::parse_request_id(&id)?,
                    if retry { RequestState::Available } else { RequestState::Failed },
                ));
            }
            tx.commit().await?;
            Ok(out)
        }

        async fn release_abandoned(&self, owners: &[String], now: DateTime<Utc>) -> Result<Vec<RequestId>> {
            if owners.is_empty() {
                return Ok(Vec::new());
            }
            let mut tx = self.$begin().await?;
            // The attempt is not charged: the asset did not fail, its worker process died.
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE materialization_requests SET state = 'available', attempt = attempt - 1, run_at = ",
            );
            q.push_bind(now)
                .push(", lease_owner = NULL, lease_expires_at = NULL, last_error = 'its worker exited mid-attempt' \
                     WHERE state = 'running' AND lease_owner IN (");
            let mut list = q.separated(", ");
            for owner in owners {
                list.push_bind(owner.as_str());
            }
            q.push(") RETURNING id");
            let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            ids.iter().map(|id| $crate::queue::parse_request_id(id)).collect()
        }

        async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<(u64, u64)> {
            let mut tx = self.$begin().await?;
            let canceled = sqlx::query(
                "UPDATE materialization_requests SET state = 'canceled', finished_at = $2 \
                 WHERE run_id = $1 AND state IN ('blocked', 'available')",
            )
            .bind(run.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let asked = sqlx::query(
                "UPDATE materialization_requests SET cancel_requested = TRUE WHERE run_id = $1 AND state = 'running'",
            )
            .bind(run.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            $crate::queue::finish_run!(tx, run.to_string(), now, $lock);
            tx.commit().await?;
            Ok((canceled, asked))
        }

        async fn reopen_requests(&self, run: RunId, states: &[RequestState], now: DateTime<Utc>) -> Result<u64> {
            if states.is_empty() {
                return Ok(0);
            }
            let mut tx = self.$begin().await?;
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE materialization_requests SET state = 'available', attempt = 0, last_error = NULL, \
                     cancel_requested = FALSE, materialization_id = NULL, finished_at = NULL, run_at = ",
            );
            q.push_bind(now).push(" WHERE run_id = ").push_bind(run.to_string()).push(" AND state IN (");
            let mut list = q.separated(", ");
            for state in states {
                list.push_bind(state.as_str());
            }
            q.push(") RETURNING id");
            let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
            // Then each waits again for whatever upstream has not succeeded (reopened ones included).
            recompute_waiting(&mut tx, &ids).await?;
            if !ids.is_empty() {
                sqlx::query("UPDATE runs SET status = 'queued', finished_at = NULL WHERE id = $1")
                    .bind(run.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(ids.len() as u64)
        }

        async fn request_counts(&self, run: RunId) -> Result<Vec<(String, RequestState, i64)>> {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT asset_key, state, count(*) FROM materialization_requests WHERE run_id = $1 \
                 GROUP BY asset_key, state ORDER BY asset_key, state",
            )
            .bind(run.to_string())
            .fetch_all(&self.$pool)
            .await?;
            rows.into_iter()
                .map(|(asset, state, n)| {
                    let state = <RequestState as std::str::FromStr>::from_str(&state)
                        .map_err(|detail| Error::Decode { what: "request state", detail })?;
                    Ok((asset, state, n))
                })
                .collect()
        }

        async fn cancel_request(&self, id: RequestId, now: DateTime<Utc>) -> Result<Option<RequestState>> {
            let mut tx = self.$begin().await?;
            let row: Option<(String, String)> =
                sqlx::query_as("SELECT state, run_id FROM materialization_requests WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((state, run)) = row else {
                return Ok(None);
            };
            let state = <RequestState as std::str::FromStr>::from_str(&state).map_err(|detail| Error::Decode { what: "request state", detail })?;
            let after = match state {
                RequestState::Blocked | RequestState::Available => {
                    sqlx::query("UPDATE materialization_requests SET state = 'canceled', finished_at = $2 WHERE id = $1")
                        .bind(id.to_string())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query($crate::queue::CASCADE_UPSTREAM_FAILED).bind(id.to_string()).bind(now).execute(&mut *tx).await?;
                    $crate::queue::finish_run!(tx, &run, now, $lock);
                    RequestState::Canceled
                }
                RequestState::Running => {
                    sqlx::query("UPDATE materialization_requests SET cancel_requested = TRUE WHERE id = $1")
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                    RequestState::Running
                }
                terminal => terminal,
            };
            tx.commit().await?;
            Ok(Some(after))
        }

        async fn request(&self, id: RequestId) -> Result<Option<RequestRecord>> {
            let row: Option<$crate::queue::RequestRow> = sqlx::query_as(concat!(
                "SELECT ",
                $crate::queue::request_columns!(),
                " FROM materialization_requests WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(&self.$pool)
            .await?;
            row.map($crate::queue::RequestRow::into_record).transpose()
        }

        async fn requests(&self, run_id: Option<RunId>, state: Option<RequestState>, limit: i64) -> Result<Vec<RequestRecord>> {
            let rows: Vec<$crate::queue::RequestRow> = sqlx::query_as(concat!(
                "SELECT ",
                $crate::queue::request_columns!(),
                " FROM materialization_requests \
                 WHERE ($1 IS NULL OR run_id = $1) AND ($2 IS NULL OR state = $2) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ))
            .bind(run_id.map(|r| r.to_string()))
            .bind(state.map(RequestState::as_str))
            .bind(limit)
            .fetch_all(&self.$pool)
            .await?;
            rows.into_iter().map($crate::queue::RequestRow::into_record).collect()
        }

        async fn pools(&self) -> Result<Vec<(String, i64, i64)>> {
            Ok(sqlx::query_as(
                "SELECT p.name, p.slot_limit, (SELECT count(*) FROM materialization_requests r \
                     WHERE r.pool = p.name AND r.state = 'running') \
                 FROM pools p ORDER BY p.name",
            )
            .fetch_all(&self.$pool)
            .await?)
        }

        async fn set_pool_limit(&self, pool: &str, slot_limit: i64) -> Result<()> {
            sqlx::query(
                "INSERT INTO pools (name, slot_limit) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET slot_limit = excluded.slot_limit",
            )
            .bind(pool)
            .bind(slot_limit)
            .execute(&self.$pool)
            .await?;
            Ok(())
        }
    }
    };
}

pub(crate) use queue_methods;
