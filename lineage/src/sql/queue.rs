//! `RequestQueue`: submission with idempotency keys, claims with leases, heartbeats, fenced
//! completion and failure, cancel, the reaper, and pools.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::QueryBuilder;

use super::outbox::{self, NewOutboxEvent};
use super::writes::{
    Writes, insert_check_results, insert_events, insert_run, lock_partitions_of, push_steps_started,
    write_materializations,
};
use super::{COMPLETIONS_PER_STATEMENT, REQUEST_COLUMNS, ROWS_PER_STATEMENT, db};
use crate::model::*;
use crate::rows::{RequestRow, decode, parse_request_id, parse_run_id};
use crate::store::RequestQueue;
use crate::{Error, Result};

/// Marks `upstream_failed` every waiting request downstream of `$1`, transitively and in any
/// run; returns their runs.
const CASCADE_UPSTREAM_FAILED: &str = "WITH RECURSIVE down(id) AS ( \
         SELECT downstream_request_id FROM request_edges WHERE upstream_request_id = $1 \
         UNION SELECT e.downstream_request_id FROM request_edges e JOIN down ON e.upstream_request_id = down.id) \
     UPDATE materialization_requests SET state = 'upstream_failed', finished_at = $2 \
     WHERE id IN (SELECT id FROM down) AND state IN ('blocked', 'available') RETURNING run_id";

/// The requests of run `$1` that ended without succeeding and that a waiting request of another
/// run waits on (a tick's step waiting on a request it found pending).
const ENDED_UPSTREAM_OF_OTHER_RUNS: &str = "SELECT DISTINCT e.upstream_request_id FROM request_edges e \
     JOIN materialization_requests u ON u.id = e.upstream_request_id \
     JOIN materialization_requests d ON d.id = e.downstream_request_id \
     WHERE u.run_id = $1 AND u.state IN ('failed', 'canceled', 'upstream_failed') \
       AND d.run_id <> $1 AND d.state IN ('blocked', 'available') \
     ORDER BY e.upstream_request_id";

/// Marks `upstream_failed` every waiting request downstream of request `id`, in any run (a
/// tick's step may wait on another run's request: it then fails as it would behind a request of
/// its own run, never runs on a missing input), and ends each other run that leaves with
/// nothing waiting or running. The caller ends `own_run`.
async fn cascade_upstream_failed(tx: &mut db::Conn, id: &str, own_run: &str, now: DateTime<Utc>) -> Result<()> {
    let runs: Vec<String> = sqlx::query_scalar(CASCADE_UPSTREAM_FAILED).bind(id).bind(now).fetch_all(&mut *tx).await?;
    let others: BTreeSet<String> = runs.into_iter().filter(|r| r != own_run).collect();
    for run in others {
        finish_run(&mut *tx, &run, now).await?;
    }
    Ok(())
}

/// After run `run`'s waiting requests were canceled at once (no settle cascaded from them): the
/// requests of other runs that waited on them fail, and those runs end if nothing else is left.
async fn cascade_to_other_runs(tx: &mut db::Conn, run: &str, now: DateTime<Utc>) -> Result<()> {
    let ended: Vec<String> = sqlx::query_scalar(ENDED_UPSTREAM_OF_OTHER_RUNS).bind(run).fetch_all(&mut *tx).await?;
    for id in ended {
        cascade_upstream_failed(&mut *tx, &id, run, now).await?;
    }
    Ok(())
}

/// Sets, for the requests whose ids follow (`… IN (` is left open), how many upstream requests
/// they still wait for and their state: `upstream_failed` when one of those failed or was
/// canceled, `blocked` while any has not succeeded, else `available`.
const RECOMPUTE_WAITING: &str = "UPDATE materialization_requests SET \
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

/// Ends run `$1` when none of its requests is waiting or running (after `finish_run`'s lock).
const FINISH_RUN: &str = "UPDATE runs SET \
         status = CASE \
             WHEN EXISTS (SELECT 1 FROM materialization_requests WHERE run_id = $1 AND state = 'canceled') \
                 THEN 'canceled' \
             WHEN EXISTS (SELECT 1 FROM materialization_requests WHERE run_id = $1 \
                 AND state IN ('failed', 'upstream_failed')) THEN 'failed' \
             ELSE 'succeeded' END, \
         finished_at = $2 \
     WHERE id = $1 AND status IN ('queued', 'running') \
       AND NOT EXISTS (SELECT 1 FROM materialization_requests WHERE run_id = $1 \
           AND state IN ('blocked', 'available', 'running')) \
     RETURNING status, started_at IS NOT NULL";

/// Ends a run when none of its requests is waiting or running: first locks the run's row, then
/// looks. Without the lock, two workers completing a run's last two requests at once (on
/// PostgreSQL, each statement seeing only committed rows) each saw the other's request still
/// running, and the run stayed `running` forever with every request succeeded; with it, the
/// second one to lock starts its check after the first committed, and finishes the run. (On
/// SQLite the transaction already holds the single writer lock: no statement to send.)
pub(super) async fn finish_run(tx: &mut db::Conn, run: &str, now: DateTime<Utc>) -> Result<bool> {
    if !db::LOCK_ROW.is_empty() {
        let _: Option<String> = sqlx::query_scalar(concatcp!("SELECT id FROM runs WHERE id = $1", db::LOCK_ROW))
            .bind(run)
            .fetch_optional(&mut *tx)
            .await?;
    }
    let ended: Option<(String, bool)> = sqlx::query_as(FINISH_RUN).bind(run).bind(now).fetch_optional(&mut *tx).await?;
    if let Some((status, started)) = ended {
        let event = outbox::run_ended(run, &status, started, now);
        outbox::enqueue(&mut *tx, event.as_slice()).await?;
        outbox::alert_if_failed(&mut *tx, run, &status, now).await?;
        return Ok(true);
    }
    Ok(false)
}

/// [`finish_run`], or, on PostgreSQL, a pin that makes it needless: one of the run's other
/// unfinished requests that no transaction holds, locked (`db::PIN_UNFINISHED`). The run
/// cannot end before this transaction commits then, and whoever later settles that request waits
/// for this commit and checks after it. Only a completion with no request to pin (the run's last
/// ones, each held by its settler) locks the run's row, so completions of one run no longer queue
/// there one commit after another.
///
/// Only for the last statement before a commit: a transaction that waited for anything while
/// holding a pin could deadlock with the pinned request's settler.
async fn end_or_pin_run(tx: &mut db::Conn, run: &str, now: DateTime<Utc>) -> Result<()> {
    if let Some(pin) = db::PIN_UNFINISHED {
        let pinned: Option<String> = sqlx::query_scalar(pin).bind(run).fetch_one(&mut *tx).await?;
        if pinned.is_some() {
            return Ok(());
        }
    }
    finish_run(tx, run, now).await?;
    Ok(())
}

/// Work became claimable in `tx`: every listening worker process is told when it commits
/// (PostgreSQL's `NOTIFY`; nothing on SQLite, where the store wakes its own process's workers
/// after the commit).
async fn announce_work(tx: &mut db::Conn) -> Result<()> {
    if let Some(notify) = db::NOTIFY_WORK {
        sqlx::query(notify).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Commits a transaction that settled `held` (failed, retried or canceled it). A pool's slot
/// it held is free now, and a request waiting for one may be claimable: every listening process
/// is told at the commit and this process's workers wake, as after a completion that frees one
/// (a worker claims for the slots its steps freed before it records them, so a slot freed by a
/// failure would otherwise wait for the next poll).
async fn commit_freeing_slot(store: &db::Store, mut tx: sqlx::Transaction<'static, db::Db>, held: &Held) -> Result<()> {
    if held.pooled {
        announce_work(&mut tx).await?;
    }
    tx.commit().await?;
    if held.pooled {
        store.woke();
    }
    Ok(())
}

/// Puts run `run`'s requests in `states` back in the queue with fresh attempts, each blocked
/// again behind upstream requests that have not succeeded; returns their ids.
async fn reopen_in(tx: &mut db::Conn, run: &str, states: &[RequestState], now: DateTime<Utc>) -> Result<Vec<String>> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::new(
        "UPDATE materialization_requests SET state = 'available', attempt = 0, last_error = NULL, \
             cancel_requested = FALSE, materialization_id = NULL, finished_at = NULL, run_at = ",
    );
    q.push_bind(now).push(" WHERE run_id = ").push_bind(run).push(" AND state IN (");
    let mut list = q.separated(", ");
    for state in states {
        list.push_bind(state.as_str());
    }
    q.push(") RETURNING id");
    let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
    // Then each waits again for whatever upstream has not succeeded (reopened ones included).
    recompute_waiting(tx, &ids).await?;
    Ok(ids)
}

/// Run `run`, given work again: an ended run waits again; a running one stays running (queued,
/// its next claim would start it a second time, with a second lineage START). The run's row is
/// locked first (after the request rows, the lock order): on PostgreSQL a settler ending the
/// run at this moment holds it, and the update, started before that commit, would see the run
/// still running and skip it, leaving it ended with its cells back in the queue.
async fn wait_again(tx: &mut db::Conn, run: &str) -> Result<()> {
    if !db::LOCK_ROW.is_empty() {
        let _: Option<String> = sqlx::query_scalar(concatcp!("SELECT id FROM runs WHERE id = $1", db::LOCK_ROW))
            .bind(run)
            .fetch_optional(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE runs SET status = 'queued', finished_at = NULL \
         WHERE id = $1 AND status IN ('succeeded', 'failed', 'canceled')",
    )
    .bind(run)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sets the pending count and state of the requests `ids` from their upstream requests
/// (`RECOMPUTE_WAITING`), one statement per chunk.
async fn recompute_waiting(tx: &mut db::Conn, ids: &[String]) -> Result<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(RECOMPUTE_WAITING);
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        q.push(")");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// A running request, locked by the transition that settles it.
#[derive(sqlx::FromRow)]
struct Held {
    id: String,
    run_id: String,
    asset_key: String,
    partition_key: String,
    attempt: i64,
    max_attempts: i64,
    lease_owner: Option<String>,
    cancel_requested: bool,
    /// It holds a pool's slot, which its settling frees.
    pooled: bool,
}

impl Held {
    /// The lineage event of this attempt.
    fn lineage_event<'a>(
        &'a self,
        event_type: LineageEventType,
        now: DateTime<Utc>,
        error: Option<&'a str>,
    ) -> NewOutboxEvent<'a> {
        NewOutboxEvent::step(
            &self.run_id,
            &self.id,
            self.attempt,
            &self.asset_key,
            &self.partition_key,
            event_type,
            now,
            error,
        )
    }
}

/// The columns of a [`Held`].
const HELD_COLUMNS: &str = "id, run_id, asset_key, partition_key, attempt, max_attempts, lease_owner, cancel_requested, pool IS NOT NULL AS pooled";

/// The fence of a settling update: the lease owner and attempt it was read with, bound after
/// the update's own values.
const FENCE_RETRY: &str = " AND state = 'running' AND lease_owner = $5 AND attempt = $6";
/// See [`FENCE_RETRY`].
const FENCE_FAIL: &str = " AND state = 'running' AND lease_owner = $4 AND attempt = $5";
/// See [`FENCE_RETRY`].
const FENCE_CANCEL: &str = " AND state = 'running' AND lease_owner = $3 AND attempt = $4";

/// The requests of the run `$1`, newest first (`$2` a state or null, `$3` the limit, `$4` an id
/// they are before or null), read through the run's index `requests_run`.
pub(crate) const REQUESTS_OF_RUN: &str = concatcp!(
    "SELECT ",
    REQUEST_COLUMNS,
    " FROM materialization_requests \
     WHERE run_id = $1 AND ($2 IS NULL OR state = $2) AND ($4 IS NULL OR id < $4) \
     ORDER BY id DESC LIMIT $3"
);

/// The requests of the run `$1` counted by asset and state, from the run's index alone
/// (`requests_run` holds the asset).
pub(crate) const REQUEST_COUNTS: &str = "SELECT asset_key, state, count(*) FROM materialization_requests \
     WHERE run_id = $1 GROUP BY asset_key, state ORDER BY asset_key, state";

/// The ids of a run's requests that have not ended, in id order.
const UNFINISHED: &str = "SELECT id FROM materialization_requests WHERE run_id = $1 \
     AND state IN ('blocked', 'available', 'running') ORDER BY id";

/// How a held request's attempt ends.
enum Settle<'a> {
    /// Back in the queue at `run_at`; an uncharged attempt is given back (its process died).
    Retry { run_at: DateTime<Utc>, error: &'a str, charged: bool },
    /// Failed for good.
    Fail { error: &'a str },
    /// Canceled.
    Cancel { why: &'a str },
}

/// Ends `held`'s attempt on `tx`: the request, its event, its partition's current state, its
/// downstream requests and (when it was the last) its run, together. The caller has locked the
/// row; the request's update is fenced once more on (running, lease owner, attempt), and when it
/// no longer matches (settled by another transaction meanwhile) nothing is written: `None`.
async fn settle(tx: &mut db::Conn, held: &Held, how: Settle<'_>, now: DateTime<Utc>) -> Result<Option<RequestState>> {
    let run = parse_run_id(&held.run_id)?;
    let step = |kind, message: &str| RunEvent::step(run, now, kind, &held.asset_key, &held.partition_key, message);
    match how {
        Settle::Retry { run_at, error, charged } => {
            let updated = sqlx::query(concatcp!(
                "UPDATE materialization_requests SET state = 'available', run_at = $2, lease_owner = NULL, \
                     lease_expires_at = NULL, last_error = $3, attempt = attempt - $4 WHERE id = $1",
                FENCE_RETRY
            ))
            .bind(&held.id)
            .bind(run_at)
            .bind(error)
            .bind(i64::from(!charged))
            .bind(held.lease_owner.as_deref())
            .bind(held.attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(None);
            }
            // A charged attempt failed; an uncharged one was cut short (its worker exited or
            // stopped): the next attempt is another lineage run.
            let ended = if charged { LineageEventType::Fail } else { LineageEventType::Abort };
            outbox::enqueue(&mut *tx, &[held.lineage_event(ended, now, Some(error))]).await?;
            let mut event = step(EventKind::StepRetried, error);
            event.body = serde_json::json!({
                "attempt": held.attempt,
                "delay_ms": (run_at - now).num_milliseconds().max(0),
                "charged": charged,
            });
            insert_events(&mut *tx, &[event]).await?;
            restore_partition(&mut *tx, held, now).await?;
            Ok(Some(RequestState::Available))
        }
        Settle::Fail { error } => {
            let updated = sqlx::query(concatcp!(
                "UPDATE materialization_requests SET state = 'failed', finished_at = $2, lease_owner = NULL, \
                     lease_expires_at = NULL, last_error = $3 WHERE id = $1",
                FENCE_FAIL
            ))
            .bind(&held.id)
            .bind(now)
            .bind(error)
            .bind(held.lease_owner.as_deref())
            .bind(held.attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(None);
            }
            outbox::enqueue(&mut *tx, &[held.lineage_event(LineageEventType::Fail, now, Some(error))]).await?;
            let mut event = step(EventKind::StepFailed, error);
            event.body = serde_json::json!({ "attempts": held.attempt });
            insert_events(&mut *tx, &[event]).await?;
            sqlx::query(
                "INSERT INTO asset_partitions (asset_key, partition_key, last_run_id, last_attempt_status, \
                     last_error, updated_at) \
                 VALUES ($1, $2, $3, 'failed', $4, $5) \
                 ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
                     last_run_id = excluded.last_run_id, last_attempt_status = 'failed', \
                     last_error = excluded.last_error, updated_at = excluded.updated_at",
            )
            .bind(&held.asset_key)
            .bind(&held.partition_key)
            .bind(&held.run_id)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            cascade_upstream_failed(&mut *tx, &held.id, &held.run_id, now).await?;
            finish_run(&mut *tx, &held.run_id, now).await?;
            Ok(Some(RequestState::Failed))
        }
        Settle::Cancel { why } => {
            let updated = sqlx::query(concatcp!(
                "UPDATE materialization_requests SET state = 'canceled', finished_at = $2, lease_owner = NULL, \
                     lease_expires_at = NULL WHERE id = $1",
                FENCE_CANCEL
            ))
            .bind(&held.id)
            .bind(now)
            .bind(held.lease_owner.as_deref())
            .bind(held.attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(None);
            }
            outbox::enqueue(&mut *tx, &[held.lineage_event(LineageEventType::Abort, now, Some(why))]).await?;
            insert_events(&mut *tx, &[step(EventKind::StepCanceled, why)]).await?;
            restore_partition(&mut *tx, held, now).await?;
            cascade_upstream_failed(&mut *tx, &held.id, &held.run_id, now).await?;
            finish_run(&mut *tx, &held.run_id, now).await?;
            Ok(Some(RequestState::Canceled))
        }
    }
}

/// Puts a partition's attempt status and error back to what they were before `held`'s attempt
/// marked it running; a partition never attempted before goes back to having no row. Only if
/// the row is still this run's running attempt.
async fn restore_partition(tx: &mut db::Conn, held: &Held, now: DateTime<Utc>) -> Result<()> {
    // Another run may be materializing the same partition at the same time (a backfill and a
    // schedule): then it stays running, as that run's.
    let other: Option<String> = sqlx::query_scalar(
        "SELECT run_id FROM materialization_requests WHERE asset_key = $1 AND partition_key = $2 \
             AND state = 'running' AND id <> $3 ORDER BY started_at DESC, id LIMIT 1",
    )
    .bind(&held.asset_key)
    .bind(&held.partition_key)
    .bind(&held.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(other) = other {
        sqlx::query(
            "UPDATE asset_partitions SET last_run_id = $4, updated_at = $5 \
             WHERE asset_key = $1 AND partition_key = $2 AND last_attempt_status = 'running' AND last_run_id = $3",
        )
        .bind(&held.asset_key)
        .bind(&held.partition_key)
        .bind(&held.run_id)
        .bind(other)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM asset_partitions WHERE asset_key = $1 AND partition_key = $2 \
             AND current_materialization_id IS NULL AND prev_attempt_status IS NULL \
             AND last_attempt_status = 'running' AND last_run_id = $3",
    )
    .bind(&held.asset_key)
    .bind(&held.partition_key)
    .bind(&held.run_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE asset_partitions SET last_attempt_status = coalesce(prev_attempt_status, 'materialized'), \
             last_error = prev_error, updated_at = $4 \
         WHERE asset_key = $1 AND partition_key = $2 AND last_attempt_status = 'running' AND last_run_id = $3",
    )
    .bind(&held.asset_key)
    .bind(&held.partition_key)
    .bind(&held.run_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The request `id` if `worker` still holds its lease for `attempt`, locked for the transition.
async fn fenced(tx: &mut db::Conn, worker: &str, id: RequestId, attempt: i64) -> Result<Option<Held>> {
    Ok(sqlx::query_as(concatcp!(
        "SELECT ",
        HELD_COLUMNS,
        " FROM materialization_requests WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempt = $3",
        db::LOCK_ROW
    ))
    .bind(id.to_string())
    .bind(worker)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Ends a run whose owning process is gone: its waiting requests canceled, its running ones
/// canceled (partitions restored), a `run_canceled` event saying why, and the run canceled.
///
/// Lock order is the completion's (the run's requests, then the run), and the requests are
/// taken with `SKIP LOCKED`: when another transaction holds one of them (the owner completing a
/// step after all, or another reaper), this pass leaves the run alone and returns false; a later
/// pass settles it. So a reaper never waits for an owner that waits for the reaper.
async fn abandon_run(tx: &mut db::Conn, run: &str, why: &str, now: DateTime<Utc>) -> Result<bool> {
    let all: Vec<String> = sqlx::query_scalar(UNFINISHED).bind(run).fetch_all(&mut *tx).await?;
    let locked: Vec<String> =
        sqlx::query_scalar(concatcp!(UNFINISHED, db::LOCK_ROW_SKIP)).bind(run).fetch_all(&mut *tx).await?;
    if locked != all {
        return Ok(false);
    }
    let status: Option<String> = sqlx::query_scalar(concatcp!(
        "SELECT status FROM runs WHERE id = $1 AND status IN ('queued', 'running')",
        db::LOCK_ROW
    ))
    .bind(run)
    .fetch_optional(&mut *tx)
    .await?;
    if status.is_none() {
        return Ok(false);
    }
    // Waiting ones first, so they end canceled rather than failed by the canceled running ones.
    sqlx::query(
        "UPDATE materialization_requests SET state = 'canceled', finished_at = $2 \
         WHERE run_id = $1 AND state IN ('blocked', 'available')",
    )
    .bind(run)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let running: Vec<Held> = sqlx::query_as(concatcp!(
        "SELECT ",
        HELD_COLUMNS,
        " FROM materialization_requests WHERE run_id = $1 AND state = 'running' ORDER BY id"
    ))
    .bind(run)
    .fetch_all(&mut *tx)
    .await?;
    for held in &running {
        settle(&mut *tx, held, Settle::Cancel { why }, now).await?;
    }
    cascade_to_other_runs(&mut *tx, run, now).await?;
    insert_events(&mut *tx, &[RunEvent::run(parse_run_id(run)?, now, EventKind::RunCanceled, why)]).await?;
    // Canceled whatever it held (even nothing: a process killed between creating its run and
    // submitting its requests).
    let started: Option<bool> = sqlx::query_scalar(
        "UPDATE runs SET status = 'canceled', finished_at = $2 WHERE id = $1 AND status IN ('queued', 'running') \
         RETURNING started_at IS NOT NULL",
    )
    .bind(run)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let event = outbox::run_ended(run, "canceled", started.unwrap_or(false), now);
    outbox::enqueue(&mut *tx, event.as_slice()).await?;
    Ok(true)
}

/// Inserts requests (multi-row; a known idempotency key keeps its first request) and their
/// edges inside `tx`, then sets each new downstream's pending count and state.
pub(super) async fn submit_in(
    tx: &mut db::Conn,
    requests: &[NewRequest],
    edges: &[(usize, usize)],
) -> Result<Vec<SubmitOutcome>> {
    // Multi-row statements: a backfill submits thousands of requests at once.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut inserted: HashSet<String> = HashSet::new();
    for chunk in requests.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
            "INSERT INTO materialization_requests (id, idempotency_key, run_id, asset_key, partition_key, trigger, \
                 pool, priority, state, pending_deps, run_at, attempt, max_attempts, created_at) ",
        );
        q.push_values(chunk, |mut row, r| {
            row.push_bind(r.id.to_string())
                .push_bind(&r.idempotency_key)
                .push_bind(r.run_id.to_string())
                .push_bind(&r.asset_key)
                .push_bind(&r.partition_key)
                .push_bind(r.trigger.as_str())
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
        let known: Vec<&str> =
            chunk.iter().map(|r| r.idempotency_key.as_str()).filter(|k| !ids.contains_key(*k)).collect();
        if !known.is_empty() {
            let mut q = QueryBuilder::new(
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
        // A key repeated within one submission is new only the first time.
        outcomes.push(SubmitOutcome { id: parse_request_id(id)?, inserted: inserted.remove(&r.idempotency_key) });
    }
    let new_edges: Vec<(String, String)> = edges
        .iter()
        .filter(|(_, down)| outcomes[*down].inserted)
        .map(|&(up, down)| (outcomes[up].id.to_string(), outcomes[down].id.to_string()))
        .collect();
    for chunk in new_edges.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new("INSERT INTO request_edges (upstream_request_id, downstream_request_id) ");
        q.push_values(chunk, |mut row, (up, down)| {
            row.push_bind(up.as_str()).push_bind(down.as_str());
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    // An edge from a request that already existed (a pending request of another run, which a
    // tick's step waits on) is counted against that request's state as of now: its row is locked
    // first, so a worker settling it meanwhile either committed before (its state is read here) or
    // settles after this commits (and sees the edge). Without the lock, on PostgreSQL, a
    // completion between the two would leave the new step blocked for good.
    let existing: BTreeSet<String> = edges
        .iter()
        .filter(|(up, down)| outcomes[*down].inserted && !outcomes[*up].inserted)
        .map(|(up, _)| outcomes[*up].id.to_string())
        .collect();
    let existing: Vec<String> = existing.into_iter().collect();
    for chunk in existing.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new("SELECT id FROM materialization_requests WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        q.push(")").push(db::LOCK_ROW);
        let _: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
    }
    let blocked: Vec<String> =
        new_edges.into_iter().map(|(_, down)| down).collect::<BTreeSet<_>>().into_iter().collect();
    // Waiting upstream requests block each; a failed or canceled one fails it.
    recompute_waiting(tx, &blocked).await?;
    if outcomes.iter().any(|o| o.inserted) {
        announce_work(tx).await?;
    }
    Ok(outcomes)
}

#[async_trait]
impl RequestQueue for db::Store {
    fn work_signal(&self) -> crate::WorkSignal {
        self.work_signal_of_store()
    }

    async fn submit_requests(&self, requests: &[NewRequest], edges: &[(usize, usize)]) -> Result<Vec<SubmitOutcome>> {
        let mut tx = self.begin_write().await?;
        let outcomes = submit_in(&mut tx, requests, edges).await?;
        tx.commit().await?;
        self.woke();
        Ok(outcomes)
    }

    async fn submit_run(
        &self,
        run: &NewRun,
        requests: &[NewRequest],
        edges: &[(usize, usize)],
        event: Option<&RunEvent>,
    ) -> Result<Vec<SubmitOutcome>> {
        let mut tx = self.begin_write().await?;
        let outcomes = submit_in(&mut tx, requests, edges).await?;
        let created = outcomes.iter().filter(|o| o.inserted).count();
        if created > 0 {
            insert_run(&mut tx, &NewRun { n_steps: created as i64, ..run.clone() }).await?;
            if let Some(event) = event {
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
            }
            // Only a new request waiting on a known one can be finished already (it failed
            // upstream); when every request is new (a `materialize`), the run cannot have ended.
            if created < outcomes.len() {
                finish_run(&mut tx, &run.id.to_string(), run.created_at).await?;
            }
        }
        tx.commit().await?;
        if created > 0 {
            self.woke();
        }
        Ok(outcomes)
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
        let mut tx = self.begin_claim().await?;
        // Walks the claim index in priority order (see PostgreSQL's `begin_claim`), leaving out the
        // runs other processes own: their few ids are read once per claim (a correlated check per
        // candidate cost 5 % of the 8-worker throughput, BENCHMARKS.md). A worker draining one
        // run (`only_run`) needs no such check: that run is its own, or nobody's. Four times
        // `limit` are read when some pool has a limit (candidates past a full pool's slots are
        // passed over), else `limit`: each row read is locked until this claim commits, and
        // locking four times what it claims cost every claim (BENCHMARKS.md).
        let candidates: Vec<(String, String, Option<String>)> = sqlx::query_as(concatcp!(
            "SELECT id, run_id, pool FROM materialization_requests WHERE state = 'available' AND run_at <= $1 \
             AND ($3 IS NULL OR run_id = $3) \
             AND ($3 IS NOT NULL OR run_id NOT IN (SELECT id FROM runs WHERE owner IS NOT NULL \
                 AND owner <> $4 AND status IN ('queued', 'running'))) \
             ORDER BY priority DESC, run_at, id LIMIT CASE WHEN EXISTS (SELECT 1 FROM pools) THEN $2 * 4 ELSE $2 END",
            db::SKIP_LOCKED
        ))
        .bind(now)
        .bind(limit)
        .bind(only_run.map(|r| r.to_string()))
        .bind(worker)
        .fetch_all(&mut *tx)
        .await?;
        let pools: BTreeSet<&str> = candidates.iter().filter_map(|(_, _, p)| p.as_deref()).collect();
        // Pool slots: lock the pools' rows (PostgreSQL) so concurrent claims of one pool
        // serialize, then count what runs now. Unknown pools are unlimited. A pool kept per
        // partition dimension (`quickbooks[realm=123]`) has its family's limit (`quickbooks`)
        // for each of its members.
        let mut free: HashMap<&str, i64> = HashMap::new();
        for pool in pools {
            let family = pool_family(pool);
            let limit: Option<i64> =
                sqlx::query_scalar(concatcp!("SELECT slot_limit FROM pools WHERE name = $1", db::LOCK_ROW))
                    .bind(family)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(limit) = limit {
                let running: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM materialization_requests WHERE pool = $1 AND state = 'running'",
                )
                .bind(pool)
                .fetch_one(&mut *tx)
                .await?;
                free.insert(pool, (limit - running).max(0));
            }
        }
        let mut picked = Vec::new();
        let mut runs = BTreeSet::new();
        for (id, run, pool) in &candidates {
            if picked.len() as i64 >= limit {
                break;
            }
            if let Some(slots) = pool.as_deref().and_then(|p| free.get_mut(p)) {
                if *slots == 0 {
                    continue;
                }
                *slots -= 1;
            }
            picked.push(id.as_str());
            runs.insert(run.as_str());
        }
        if picked.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // The runs these requests belong to are running, and each that starts now has its
        // lineage START before its steps' (which the claim's trigger writes, see below).
        let mut started_runs = Vec::new();
        for run in runs {
            let started = sqlx::query(
                "UPDATE runs SET status = 'running', started_at = coalesce(started_at, $2) \
                 WHERE id = $1 AND status = 'queued'",
            )
            .bind(run)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if started > 0 {
                started_runs.push(NewOutboxEvent::run(run, LineageEventType::Start, now));
            }
        }
        outbox::enqueue(&mut tx, &started_runs).await?;
        // Each claimed attempt's lineage START (at `claimed_at`): written by this statement on
        // PostgreSQL (a CTE around it, `db::CLAIM_WITH_OUTBOX`), by one `INSERT` after it on SQLite.
        let (before, after) = db::CLAIM_WITH_OUTBOX.unwrap_or(("", ""));
        let mut q = QueryBuilder::new(before);
        q.push("UPDATE materialization_requests SET state = 'running', attempt = attempt + 1, lease_owner = ");
        q.push_bind(worker)
            .push(", lease_expires_at = ")
            .push_bind(lease_until)
            .push(", claimed_at = ")
            .push_bind(now)
            .push(", started_at = coalesce(started_at, ")
            .push_bind(now)
            .push(") WHERE id IN (");
        let mut ids = q.separated(", ");
        for id in &picked {
            ids.push_bind(*id);
        }
        // When each could first be claimed: its `run_at` (submission or retry time), or when the
        // last of its upstream requests finished, whichever is later (for claim latency).
        q.push(
            ") RETURNING id, run_id, asset_key, partition_key, attempt, max_attempts, run_at, \
             (SELECT max(u.finished_at) FROM request_edges e JOIN materialization_requests u \
                 ON u.id = e.upstream_request_id \
              WHERE e.downstream_request_id = materialization_requests.id) AS upstream_done, claimed_at",
        );
        q.push(after);
        type Row = (String, String, String, String, i64, i64, DateTime<Utc>, Option<DateTime<Utc>>, DateTime<Utc>);
        let rows: Vec<Row> = q.build_query_as().fetch_all(&mut *tx).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (id, run_id, asset_key, partition_key, attempt, max_attempts, run_at, upstream_done, _) in rows {
            claimed.push(ClaimedRequest {
                id: parse_request_id(&id)?,
                run_id: parse_run_id(&run_id)?,
                asset_key,
                partition_key,
                attempt,
                max_attempts,
                claimable_since: upstream_done.map_or(run_at, |done| done.max(run_at)),
            });
        }
        // Keep claim order (priority, run_at, id), whatever order RETURNING used.
        claimed.sort_by_key(|c| picked.iter().position(|p| *p == c.id.to_string()));
        // The outbox rows (SQLite), the step events and the partitions' state: one call on SQLite.
        let mut writes = Writes::new();
        if db::CLAIM_WITH_OUTBOX.is_none() {
            let ids: Vec<(String, String)> = claimed.iter().map(|c| (c.run_id.to_string(), c.id.to_string())).collect();
            let starts: Vec<NewOutboxEvent> = claimed
                .iter()
                .zip(&ids)
                .map(|(c, (run, id))| {
                    NewOutboxEvent::step(
                        run,
                        id,
                        c.attempt,
                        &c.asset_key,
                        &c.partition_key,
                        LineageEventType::Start,
                        now,
                        None,
                    )
                })
                .collect();
            outbox::push(&mut writes, &starts);
        }
        // The claimed partitions are running, in the same transaction as the claim.
        let events: Vec<RunEvent> = claimed
            .iter()
            .map(|c| RunEvent::step(c.run_id, now, EventKind::StepStarted, &c.asset_key, &c.partition_key, ""))
            .collect();
        push_steps_started(&mut writes, &events);
        writes.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[RequestId],
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<(RequestId, bool)>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut tx = self.begin_write().await?;
        // The requests' leases, then the owned runs: a completion locks its requests, then their
        // run (`finish_run`). In the other order, a heartbeat holding a run's row and waiting for
        // a request the same worker was completing, which waited for that run's row, deadlocked.
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new("UPDATE materialization_requests SET lease_expires_at = ");
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
                out.push((parse_request_id(&id)?, cancel));
            }
        }
        sqlx::query(
            "UPDATE runs SET owner_expires_at = $2 WHERE owner = $1 AND status IN ('queued', 'running') \
                 AND owner_expires_at < $2",
        )
        .bind(worker)
        .bind(lease_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn complete_requests(
        &self,
        worker: &str,
        completions: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<Vec<CompletionResult>> {
        let mut results = vec![CompletionResult::LeaseLost; completions.len()];
        if completions.is_empty() {
            return Ok(results);
        }
        let mut tx = self.begin_write().await?;
        let mut runs = BTreeSet::new();
        let mut waiting_runs = BTreeSet::new();
        let mut announced = false;
        // The partitions' staleness locks first, all of them in key order in one statement
        // (those of attempts the fence turns away too, released at the commit): the ids the
        // fences draw then follow the order in which transactions write a partition's current
        // version, and no row lock is held while they are waited for.
        lock_partitions_of(&mut tx, completions.iter().map(|c| &c.materialization)).await?;
        // A constant number of statements per chunk, whatever its size (group commit).
        for (chunk_idx, chunk) in completions.chunks(COMPLETIONS_PER_STATEMENT).enumerate() {
            let offset = chunk_idx * COMPLETIONS_PER_STATEMENT;
            // The fence: only the holder of each attempt's lease may record it. The same
            // statement gives each recorded request the id of its materialization (written
            // below): a request row is updated once per completion.
            let mut q = QueryBuilder::new(
                "UPDATE materialization_requests SET state = 'succeeded', lease_owner = NULL, \
                 lease_expires_at = NULL, last_error = NULL, finished_at = ",
            );
            q.push_bind(now).push(", materialization_id = ");
            match db::NEXT_MATERIALIZATION_ID {
                Some(next) => {
                    q.push(next);
                }
                None => {
                    // After the largest id, by place in the chunk: the ids a chunk's fenced-off
                    // attempts would have had are skipped, which ids allow.
                    q.push("(SELECT coalesce(max(id), 0) FROM materializations) + CASE id");
                    for (place, c) in chunk.iter().enumerate() {
                        q.push(" WHEN ").push_bind(c.id.to_string()).push(" THEN ").push_bind(place as i64 + 1);
                    }
                    q.push(" END");
                }
            }
            // Found by id in the primary key (`id = ANY` on PostgreSQL), then fenced on lease
            // owner and attempt. Given the (id, attempt) pairs as a row-value `IN`, PostgreSQL
            // walked every running request of the queue (the partial index `requests_leases`,
            // which `state = 'running'` alone matches: hence `IS TRUE`) and joined them with the
            // pairs; 2.4 ms of a batch of 64, 1.6 ms of it that walk and join.
            q.push(" WHERE (state = 'running') IS TRUE AND lease_owner = ").push_bind(worker);
            q.push(" AND id IN (");
            let mut list = q.separated(", ");
            for c in chunk {
                list.push_bind(c.id.to_string());
            }
            // Each request's attempts handed in (two when the same worker holds an attempt that
            // outlived its lease and the retry; attempts are not always increasing: reopening a
            // request starts them again), of which the row's must be one.
            let mut attempts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for c in chunk {
                attempts.entry(c.id.to_string()).or_default().push(c.attempt);
            }
            q.push(") AND CASE id");
            for (id, handed_in) in attempts {
                q.push(" WHEN ").push_bind(id).push(" THEN attempt IN (");
                let mut list = q.separated(", ");
                for attempt in handed_in {
                    list.push_bind(attempt);
                }
                q.push(")");
            }
            q.push(" END RETURNING id, attempt, pool IS NOT NULL, materialization_id");
            let rows: Vec<(String, i64, bool, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
            // A pool's slot came free: a request waiting for one may be claimable now.
            if rows.iter().any(|(_, _, pooled, _)| *pooled) && !announced {
                announce_work(&mut tx).await?;
                announced = true;
            }
            // Matched by attempt too: a worker can hand in two attempts of one request at once
            // (the first outlived its lease, and the same worker claimed the retry), and only
            // the attempt that holds the lease is recorded.
            let fenced: HashMap<(String, i64), i64> =
                rows.into_iter().map(|(id, attempt, _, mid)| ((id, attempt), mid)).collect();
            let mut held: Vec<(usize, MaterializationId)> = (0..chunk.len())
                .filter_map(|i| fenced.get(&(chunk[i].id.to_string(), chunk[i].attempt)).map(|mid| (i, *mid)))
                .collect();
            if held.is_empty() {
                continue;
            }
            // Recorded in the order of their ids (the fence's scan order drew them on
            // PostgreSQL): of two materializations of one partition, the later written is
            // current, and that is the one with the larger id.
            held.sort_by_key(|(_, mid)| *mid);
            let (held, given): (Vec<usize>, Vec<MaterializationId>) = held.into_iter().unzip();
            // What the steps logged, before the events that end them.
            let messages: Vec<RunEvent> = held.iter().flat_map(|i| chunk[*i].messages.iter().cloned()).collect();
            insert_step_messages(&mut tx, &messages).await?;
            let ms: Vec<NewMaterialization> = held.iter().map(|i| chunk[*i].materialization.clone()).collect();
            // Everything but the unblocking (whose result is read) goes in one call on SQLite:
            // the materializations have their ids from the fence.
            let mut writes = Writes::new();
            let ids = write_materializations(&mut tx, &ms, Some(&given), &mut writes).await?;
            let checks: Vec<NewCheckResult> = held.iter().flat_map(|i| chunk[*i].checks.iter().cloned()).collect();
            insert_check_results(&mut tx, &checks).await?;
            let held_ids: Vec<String> = held.iter().map(|i| chunk[*i].id.to_string()).collect();
            for (i, mid) in held.iter().zip(&ids) {
                results[offset + *i] = CompletionResult::Recorded(*mid);
                runs.insert(chunk[*i].materialization.run_id.to_string());
            }
            // Each step's lineage COMPLETE, at the materialization's finish time: one multi-row
            // `INSERT` of `writes`.
            let runs_of: Vec<String> = held.iter().map(|i| chunk[*i].materialization.run_id.to_string()).collect();
            let completes: Vec<NewOutboxEvent> = held
                .iter()
                .zip(runs_of.iter().zip(&held_ids))
                .map(|(i, (run, id))| {
                    let m = &chunk[*i].materialization;
                    NewOutboxEvent::step(
                        run,
                        id,
                        chunk[*i].attempt,
                        &m.asset_key,
                        &m.partition_key,
                        LineageEventType::Complete,
                        m.finished_at,
                        None,
                    )
                })
                .collect();
            outbox::push(&mut writes, &completes);
            writes.execute(&mut tx).await?;
            // Unblock what waited on them: each downstream loses one pending dependency per
            // completed upstream. Joined with the counted edges (not a correlated subquery per
            // row), so the plan stays an index lookup per downstream whatever the statistics
            // say: 90 ms per batch at 9,000 queued requests otherwise.
            let mut q = QueryBuilder::new(
                "UPDATE materialization_requests AS r SET pending_deps = r.pending_deps - d.n, \
                     state = CASE WHEN r.state = 'blocked' AND r.pending_deps - d.n = 0 THEN 'available' \
                         ELSE r.state END \
                 FROM (SELECT downstream_request_id AS id, count(*) AS n FROM request_edges \
                       WHERE upstream_request_id IN (",
            );
            let mut list = q.separated(", ");
            for id in &held_ids {
                list.push_bind(id.as_str());
            }
            q.push(") GROUP BY downstream_request_id) AS d WHERE r.id = d.id RETURNING state, run_id");
            let downstream: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
            if downstream.iter().any(|(state, _)| state == "available") && !announced {
                announce_work(&mut tx).await?;
                announced = true;
            }
            // A run with a request still waiting cannot end now (nothing later in this
            // transaction finishes one): its `finish_run` would change nothing, so it is not sent.
            for (state, run) in downstream {
                if state == "blocked" || state == "available" {
                    waiting_runs.insert(run);
                }
            }
        }
        // One run to check, as when a worker drains one: a pin may stand for the check (nothing
        // follows it but the commit). Several: each run's row in turn, as a pin held while
        // waiting for the next run's row could close a cycle with that pin's settler.
        let ending: Vec<&String> = runs.difference(&waiting_runs).collect();
        if let [run] = ending[..] {
            end_or_pin_run(&mut tx, run, now).await?;
        } else {
            for run in ending {
                finish_run(&mut tx, run, now).await?;
            }
        }
        tx.commit().await?;
        // Only when work became claimable (a request unblocked, a pool's slot freed): waking
        // this process's workers for every completion cost one more claim per batch.
        if announced {
            self.woke();
        }
        Ok(results)
    }

    async fn fail_request(&self, worker: &str, failed: &FailedAttempt, now: DateTime<Utc>) -> Result<FailOutcome> {
        let mut tx = self.begin_write().await?;
        let Some(held) = fenced(&mut tx, worker, failed.id, failed.attempt).await? else {
            return Ok(FailOutcome::LeaseLost);
        };
        insert_check_results(&mut tx, &failed.checks).await?;
        insert_step_messages(&mut tx, &failed.messages).await?;
        if held.cancel_requested {
            // A cancel was asked while it ran: it ends canceled, never retried.
            settle(&mut tx, &held, Settle::Cancel { why: "canceled" }, now).await?;
            commit_freeing_slot(self, tx, &held).await?;
            return Ok(FailOutcome::Canceled);
        }
        let outcome = match failed.retry_at.filter(|_| held.attempt < held.max_attempts) {
            Some(run_at) => {
                settle(&mut tx, &held, Settle::Retry { run_at, error: &failed.error, charged: true }, now).await?;
                FailOutcome::Retrying
            }
            None => {
                settle(&mut tx, &held, Settle::Fail { error: &failed.error }, now).await?;
                FailOutcome::Failed
            }
        };
        commit_freeing_slot(self, tx, &held).await?;
        Ok(outcome)
    }

    async fn acknowledge_cancel(&self, worker: &str, id: RequestId, attempt: i64, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(held) = fenced(&mut tx, worker, id, attempt).await? else {
            return Ok(false);
        };
        settle(&mut tx, &held, Settle::Cancel { why: "canceled" }, now).await?;
        commit_freeing_slot(self, tx, &held).await?;
        Ok(true)
    }

    async fn reap_expired(
        &self,
        now: DateTime<Utc>,
        backoff: &(dyn Fn(i64) -> std::time::Duration + Send + Sync),
    ) -> Result<Reaped> {
        let mut tx = self.begin_write().await?;
        let mut out = Reaped::default();
        // Runs first: the requests of an abandoned run are canceled, not retried.
        let runs: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, owner FROM runs WHERE owner IS NOT NULL AND status IN ('queued', 'running') \
             AND owner_expires_at < $1 ORDER BY owner_expires_at LIMIT 100",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (run, owner) in runs {
            let why = format!("its process stopped renewing its lease (worker {owner})");
            if abandon_run(&mut tx, &run, &why, now).await? {
                out.runs.push(parse_run_id(&run)?);
            }
        }
        let expired: Vec<Held> = sqlx::query_as(concatcp!(
            "SELECT ",
            HELD_COLUMNS,
            " FROM materialization_requests WHERE state = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT 500",
            db::LOCK_ROW_SKIP
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for held in expired {
            let error = format!("lease expired (worker {})", held.lease_owner.as_deref().unwrap_or("?"));
            let how = if held.cancel_requested {
                Settle::Cancel { why: "canceled (its worker stopped before it could stop the step)" }
            } else if held.attempt < held.max_attempts {
                let run_at = now + chrono::Duration::from_std(backoff(held.attempt)).unwrap_or_default();
                Settle::Retry { run_at, error: &error, charged: true }
            } else {
                Settle::Fail { error: &error }
            };
            if let Some(state) = settle(&mut tx, &held, how, now).await? {
                out.requests.push((parse_request_id(&held.id)?, state));
            }
        }
        let released = out.requests.iter().any(|(_, state)| *state == RequestState::Available);
        if released {
            announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        if released {
            self.woke();
        }
        Ok(out)
    }

    async fn release_abandoned(&self, owners: &[String], now: DateTime<Utc>) -> Result<Reaped> {
        let mut out = Reaped::default();
        if owners.is_empty() {
            return Ok(out);
        }
        let mut tx = self.begin_write().await?;
        let mut q =
            QueryBuilder::new("SELECT id, owner FROM runs WHERE status IN ('queued', 'running') AND owner IN (");
        let mut list = q.separated(", ");
        for owner in owners {
            list.push_bind(owner.as_str());
        }
        q.push(") ORDER BY id");
        let runs: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
        for (run, owner) in runs {
            let why = format!("its process exited (worker {owner})");
            if abandon_run(&mut tx, &run, &why, now).await? {
                out.runs.push(parse_run_id(&run)?);
            }
        }
        let mut q = QueryBuilder::new(concatcp!(
            "SELECT ",
            HELD_COLUMNS,
            " FROM materialization_requests WHERE state = 'running' AND lease_owner IN ("
        ));
        let mut list = q.separated(", ");
        for owner in owners {
            list.push_bind(owner.as_str());
        }
        q.push(") ORDER BY id").push(db::LOCK_ROW_SKIP);
        let held: Vec<Held> = q.build_query_as().fetch_all(&mut *tx).await?;
        for held in held {
            let how = if held.cancel_requested {
                Settle::Cancel { why: "canceled (its worker exited before it could stop the step)" }
            } else {
                // The attempt is not charged: the asset did not fail, its worker process died.
                Settle::Retry { run_at: now, error: "its worker exited mid-attempt", charged: false }
            };
            if let Some(state) = settle(&mut tx, &held, how, now).await? {
                out.requests.push((parse_request_id(&held.id)?, state));
            }
        }
        let released = out.requests.iter().any(|(_, state)| *state == RequestState::Available);
        if released {
            announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        if released {
            self.woke();
        }
        Ok(out)
    }

    async fn lease_holders(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT lease_owner FROM materialization_requests WHERE state = 'running' \
             UNION SELECT owner FROM runs WHERE owner IS NOT NULL AND status IN ('queued', 'running')",
        )
        .fetch_all(self.reader())
        .await?)
    }

    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<(u64, u64)> {
        let mut tx = self.begin_write().await?;
        let canceled = sqlx::query(
            "UPDATE materialization_requests SET state = 'canceled', finished_at = $2 \
             WHERE run_id = $1 AND state IN ('blocked', 'available')",
        )
        .bind(run.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        cascade_to_other_runs(&mut tx, &run.to_string(), now).await?;
        let asked = sqlx::query(
            "UPDATE materialization_requests SET cancel_requested = TRUE WHERE run_id = $1 AND state = 'running'",
        )
        .bind(run.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        finish_run(&mut tx, &run.to_string(), now).await?;
        tx.commit().await?;
        Ok((canceled, asked))
    }

    async fn reopen_requests(&self, run: RunId, states: &[RequestState], now: DateTime<Utc>) -> Result<u64> {
        if states.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let run = run.to_string();
        let ids = reopen_in(&mut tx, &run, states, now).await?;
        if !ids.is_empty() {
            wait_again(&mut tx, &run).await?;
            announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        self.woke();
        Ok(ids.len() as u64)
    }

    async fn resume_run(
        &self,
        run: RunId,
        states: &[RequestState],
        requests: &[NewRequest],
        edges: &[(usize, usize)],
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<SubmitOutcome>)> {
        let mut tx = self.begin_write().await?;
        let run = run.to_string();
        let ids = reopen_in(&mut tx, &run, states, now).await?;
        let outcomes = submit_in(&mut tx, requests, edges).await?;
        if !ids.is_empty() || outcomes.iter().any(|o| o.inserted) {
            wait_again(&mut tx, &run).await?;
            announce_work(&mut tx).await?;
        }
        // What was reopened may all be upstream_failed again at once, with nothing new.
        finish_run(&mut tx, &run, now).await?;
        tx.commit().await?;
        self.woke();
        Ok((ids.len() as u64, outcomes))
    }

    async fn finish_run(&self, run: RunId, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let ended = finish_run(&mut tx, &run.to_string(), now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn pending_requests(&self, cells: &[(String, String)]) -> Result<Vec<PendingRequest>> {
        // One statement per asset (its partitions as a JSON array), as `partition_states_of`.
        let mut by_asset: Vec<(&str, Vec<&str>)> = Vec::new();
        for (asset, partition) in cells {
            match by_asset.iter_mut().find(|(a, _)| a == asset) {
                Some((_, ps)) => ps.push(partition),
                None => by_asset.push((asset, vec![partition])),
            }
        }
        let mut found: Vec<PendingRequest> = Vec::new();
        let mut conn = self.reader().acquire().await?;
        for (asset, partitions) in by_asset {
            let rows: Vec<(String, String, String, String)> = sqlx::query_as(concatcp!(
                "SELECT partition_key, id, idempotency_key, run_id FROM materialization_requests \
                 WHERE asset_key = $1 AND state IN ('blocked', 'available', 'running') AND partition_key IN (",
                db::JSON_KEYS,
                ") ORDER BY partition_key, created_at, id"
            ))
            .bind(asset)
            .bind(serde_json::to_string(&partitions).expect("strings serialize"))
            .fetch_all(&mut *conn)
            .await?;
            for (partition_key, id, idempotency_key, run_id) in rows {
                if found.last().is_some_and(|p| p.asset_key == asset && p.partition_key == partition_key) {
                    continue;
                }
                found.push(PendingRequest {
                    asset_key: asset.to_owned(),
                    partition_key,
                    id: parse_request_id(&id)?,
                    idempotency_key,
                    run_id: parse_run_id(&run_id)?,
                });
            }
        }
        Ok(found)
    }

    async fn runs_waited_on(&self, run: RunId) -> Result<Vec<RunId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT u.run_id FROM request_edges e \
             JOIN materialization_requests d ON d.id = e.downstream_request_id \
             JOIN materialization_requests u ON u.id = e.upstream_request_id \
             WHERE d.run_id = $1 AND u.run_id <> $1 AND u.state IN ('blocked', 'available', 'running') \
             ORDER BY u.run_id",
        )
        .bind(run.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(|r| parse_run_id(r)).collect()
    }

    async fn request_counts(&self, run: RunId) -> Result<Vec<(String, RequestState, i64)>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(REQUEST_COUNTS).bind(run.to_string()).fetch_all(self.reader()).await?;
        rows.into_iter()
            .map(|(asset, state, n)| Ok((asset, decode("materialization_requests.state", &state)?, n)))
            .collect()
    }

    async fn cancel_request(&self, id: RequestId, now: DateTime<Utc>) -> Result<Option<RequestState>> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT state, run_id FROM materialization_requests WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((state, run)) = row else {
            return Ok(None);
        };
        let after = match decode("materialization_requests.state", &state)? {
            RequestState::Blocked | RequestState::Available => {
                sqlx::query("UPDATE materialization_requests SET state = 'canceled', finished_at = $2 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                cascade_upstream_failed(&mut tx, &id.to_string(), &run, now).await?;
                finish_run(&mut tx, &run, now).await?;
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
        let row: Option<RequestRow> =
            sqlx::query_as(concatcp!("SELECT ", REQUEST_COLUMNS, " FROM materialization_requests WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(self.reader())
                .await?;
        row.map(RequestRow::into_record).transpose()
    }

    async fn requests(
        &self,
        run_id: Option<RunId>,
        state: Option<RequestState>,
        before: Option<RequestId>,
        limit: i64,
    ) -> Result<Vec<RequestRecord>> {
        // Ids are UUIDv7: their order is creation order. A run's requests are read through the
        // run's index ([`REQUESTS_OF_RUN`]): one query with `($1 IS NULL OR run_id = $1)` kept
        // both planners off it, and a run with fewer requests than the limit (every run the
        // executor reads back for its outcome) scanned the whole table.
        let (state, before) = (state.map(RequestState::as_str), before.map(|b| b.to_string()));
        let rows: Vec<RequestRow> = match run_id {
            Some(run_id) => {
                sqlx::query_as(REQUESTS_OF_RUN)
                    .bind(run_id.to_string())
                    .bind(state)
                    .bind(limit)
                    .bind(before)
                    .fetch_all(self.reader())
                    .await?
            }
            None => {
                sqlx::query_as(concatcp!(
                    "SELECT ",
                    REQUEST_COLUMNS,
                    " FROM materialization_requests \
                     WHERE ($1 IS NULL OR state = $1) AND ($3 IS NULL OR id < $3) \
                     ORDER BY id DESC LIMIT $2"
                ))
                .bind(state)
                .bind(limit)
                .bind(before)
                .fetch_all(self.reader())
                .await?
            }
        };
        rows.into_iter().map(RequestRow::into_record).collect()
    }

    async fn set_pool_limit(&self, pool: &str, slot_limit: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO pools (name, slot_limit) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET slot_limit = excluded.slot_limit",
        )
        .bind(pool)
        .bind(slot_limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pools(&self) -> Result<Vec<PoolState>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT p.name, p.slot_limit, (SELECT count(*) FROM materialization_requests r \
                 WHERE r.state = 'running' \
                 AND (r.pool = p.name OR substr(r.pool, 1, length(p.name) + 1) = p.name || '[')) \
             FROM pools p ORDER BY p.name",
        )
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(|(name, slot_limit, running)| PoolState { name, slot_limit, running }).collect())
    }

    async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        // Grouped by pool first (members of a family are few: one per realm, say), then by family.
        let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT state, pool, count(*) FROM materialization_requests \
             WHERE state IN ('blocked', 'available', 'running') GROUP BY state, pool",
        )
        .fetch_all(self.reader())
        .await?;
        let mut depth: BTreeMap<(String, Option<String>), i64> = BTreeMap::new();
        for (state, pool, n) in rows {
            *depth.entry((state, pool.as_deref().map(|p| pool_family(p).to_owned()))).or_default() += n;
        }
        depth
            .into_iter()
            .map(|((state, pool), requests)| {
                Ok(QueueDepth { state: decode("materialization_requests.state", &state)?, pool, requests })
            })
            .collect()
    }
}

/// Writes what steps logged (`step_message` events), in bounded statements; nothing when empty.
async fn insert_step_messages(tx: &mut db::Conn, messages: &[RunEvent]) -> Result<()> {
    for chunk in messages.chunks(ROWS_PER_STATEMENT) {
        insert_events(&mut *tx, chunk).await?;
    }
    Ok(())
}
