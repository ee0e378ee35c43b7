//! `RetentionStore`: deletes finished history older than a cutoff, in batches of bounded size
//! (each its own transaction), and never lineage (materializations, their inputs, runs,
//! partition state, check verdicts, backfills, dynamic partitions).
//!
//! Each table's rows are named by one `FROM … WHERE …` fragment, counted by a dry run (once, over
//! every old run, in one read) and deleted by a real one (batch by batch), so the two agree. No fragment depends on another table's deletion
//! (the edges go before the requests they name, and both are chosen by the same condition),
//! so the order of the statements changes no count.
//!
//! The first prune of a store that kept everything for months can delete millions of rows: in
//! one transaction that held SQLite's only write lock for its whole length, and every worker's
//! claim and completion waited behind it (past `busy_timeout`, they fail). So the old runs are
//! taken [`RUNS_PER_BATCH`] at a time, in the order they finished (`runs_finished`; those whose
//! history is already gone are skipped by index, so an hourly prune does not walk them), and their
//! events, requests and edges deleted in one transaction per batch; the tables pruned by their
//! own age (ticks, OpenLineage rows, alerts) go [`ROWS_PER_BATCH`] rows a transaction. A prune
//! that stops half-way (a crash) has deleted whole batches, each consistent, and the next one
//! carries on.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use const_format::concatcp;

use super::db;
use crate::Result;
use crate::model::PruneReport;
use crate::store::RetentionStore;

/// Old runs whose history one transaction deletes (small in this crate's tests, so the contract
/// test crosses batch boundaries on both backends).
const RUNS_PER_BATCH: i64 = if cfg!(test) { 2 } else { 2_000 };

/// Rows of a table pruned by its own age that one transaction deletes.
const ROWS_PER_BATCH: i64 = if cfg!(test) { 2 } else { 20_000 };

/// How often a long prune logs how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a run ended before the cutoff (`$1`). The status is tested with `NOT IN` on purpose:
/// an `IN` of the ended ones made SQLite walk `runs_status_id`, every ended run for every batch.
const ENDED_BEFORE: &str = "r.finished_at < $1 AND r.status NOT IN ('queued', 'running')";

/// Whether a run (`r`) still has history a prune deletes: events, or finished requests that are
/// not a backfill's. Runs stay forever (lineage), so without this every prune would walk, batch
/// by batch, every run that ever ended; with it, one read skips the pruned ones by index.
const HAS_HISTORY: &str = "(EXISTS (SELECT 1 FROM run_events e WHERE e.run_id = r.id) \
     OR EXISTS (SELECT 1 FROM materialization_requests q WHERE q.run_id = r.id \
         AND q.state IN ('succeeded', 'failed', 'canceled', 'upstream_failed') \
         AND NOT EXISTS (SELECT 1 FROM backfills b WHERE b.run_id = r.id)))";

/// The next batch of old runs with history left after the last one done (`$2`, `$3`: its finish
/// time and id), in the order they finished.
const NEXT_BATCH: &str = concatcp!(
    "SELECT r.finished_at, r.id FROM runs r WHERE ",
    ENDED_BEFORE,
    " AND (r.finished_at, r.id) > ($2, $3) AND ",
    HAS_HISTORY,
    " ORDER BY r.finished_at, r.id LIMIT $4"
);

/// The last run that ended before the cutoff: a dry run counts every fragment once up to it.
const LAST_OLD_RUN: &str = concatcp!(
    "SELECT r.finished_at, r.id FROM runs r WHERE ",
    ENDED_BEFORE,
    " ORDER BY r.finished_at DESC, r.id DESC LIMIT 1"
);

/// The runs of one batch: after the previous batch's last run (`$1`, `$2`: its finish time and
/// id), up to and including this one's (`$3`, `$4`), which [`NEXT_BATCH`] found ended before the
/// cutoff. Both bounds are row values, so SQLite seeks `runs_finished` from one to the other.
const OLD_RUNS: &str = "SELECT r.id FROM runs r WHERE r.status NOT IN ('queued', 'running') \
     AND (r.finished_at, r.id) > ($1, $2) AND (r.finished_at, r.id) <= ($3, $4)";

/// Their events, unless an alert of the run is unsent: its body is rendered from them.
const RUN_EVENTS: &str = concatcp!(
    " FROM run_events WHERE run_id IN (",
    OLD_RUNS,
    " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.run_id = r.id AND a.delivered_at IS NULL))"
);

/// Their finished requests, except a backfill's (its status and progress are counted from them).
const PRUNED_REQUESTS: &str = concatcp!(
    "SELECT q.id FROM materialization_requests q \
     WHERE q.state IN ('succeeded', 'failed', 'canceled', 'upstream_failed') AND q.run_id IN (",
    OLD_RUNS,
    ") AND NOT EXISTS (SELECT 1 FROM backfills b WHERE b.run_id = q.run_id)"
);

/// The requests themselves.
const REQUESTS: &str = concatcp!(" FROM materialization_requests WHERE id IN (", PRUNED_REQUESTS, ")");

/// Every edge touching one of them: an edge from a finished request has already been counted by
/// its downstream request, and one into it has nothing left to unblock.
const REQUEST_EDGES: &str = concatcp!(
    " FROM request_edges WHERE upstream_request_id IN (",
    PRUNED_REQUESTS,
    ") OR downstream_request_id IN (",
    PRUNED_REQUESTS,
    ")"
);

/// Ticks before the cutoff but each instigator's latest: a schedule catches up from it.
const TICKS: &str = " FROM ticks WHERE tick_time < $1 \
     AND tick_time < (SELECT max(l.tick_time) FROM ticks l WHERE l.instigator = ticks.instigator)";

/// OpenLineage rows delivered (or refused for good) before the cutoff; pending ones wait.
const OUTBOX: &str = " FROM openlineage_outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1";

/// Alerts settled (sent or refused for good) before the cutoff; pending ones wait.
const ALERTS: &str = " FROM alerts WHERE delivered_at IS NOT NULL AND delivered_at < $1";

/// One table's count and deletion statements.
macro_rules! statements {
    ($from:expr) => {
        (concatcp!("SELECT count(*)", $from), concatcp!("DELETE", $from))
    };
}

/// One table's count and its deletion of up to `$2` rows (by id, oldest first).
macro_rules! batched {
    ($table:literal, $from:expr) => {
        (
            concatcp!("SELECT count(*)", $from),
            concatcp!("DELETE FROM ", $table, " WHERE id IN (SELECT id", $from, " ORDER BY id LIMIT $2)"),
        )
    };
}

#[async_trait]
// The stored times are bound by reference: text on SQLite, a `Copy` timestamp on PostgreSQL.
#[allow(clippy::needless_borrows_for_generic_args)]
impl RetentionStore for db::Store {
    async fn prune(&self, cutoff: DateTime<Utc>, dry_run: bool) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let run_history = [statements!(RUN_EVENTS), statements!(REQUEST_EDGES), statements!(REQUESTS)];
        // The batches' bounds are the finish times as stored, bound back unchanged.
        let first: (db::StoredTime, String) = (db::before_all_times(), String::new());
        let mut progress = Progress::new();
        if dry_run {
            // One count per fragment over all the old runs, in one read: an edge between the
            // requests of two runs in different batches would be counted by each batch, though
            // the first batch deletes it.
            let mut tx = self.reader().begin().await?;
            let last: Option<(db::StoredTime, String)> =
                sqlx::query_as(LAST_OLD_RUN).bind(cutoff).fetch_optional(&mut *tx).await?;
            if let Some(last) = last {
                let counts = [&mut report.run_events, &mut report.request_edges, &mut report.materialization_requests];
                for (n, (count, _)) in counts.into_iter().zip(run_history) {
                    let q =
                        sqlx::query_scalar::<_, i64>(count).bind(&first.0).bind(&first.1).bind(&last.0).bind(&last.1);
                    *n = q.fetch_one(&mut *tx).await? as u64;
                }
            }
            for (n, (count, _)) in [
                (&mut report.ticks, batched!("ticks", TICKS)),
                (&mut report.openlineage_outbox, batched!("openlineage_outbox", OUTBOX)),
                (&mut report.alerts, batched!("alerts", ALERTS)),
            ] {
                *n = sqlx::query_scalar::<_, i64>(count).bind(cutoff).fetch_one(&mut *tx).await? as u64;
            }
            tx.rollback().await?;
            return Ok(report);
        }
        let mut after = first;
        loop {
            // Found without the write lock; the deletions re-check every condition under it.
            let batch: Vec<(db::StoredTime, String)> = sqlx::query_as(NEXT_BATCH)
                .bind(cutoff)
                .bind(&after.0)
                .bind(&after.1)
                .bind(RUNS_PER_BATCH)
                .fetch_all(self.reader())
                .await?;
            let Some(last) = batch.last().cloned() else { break };
            let mut tx = self.begin_write().await?;
            let counts = [&mut report.run_events, &mut report.request_edges, &mut report.materialization_requests];
            for (n, (_, delete)) in counts.into_iter().zip(run_history) {
                let q = sqlx::query(delete).bind(&after.0).bind(&after.1).bind(&last.0).bind(&last.1);
                *n += q.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            progress.tick(report.total());
            if (batch.len() as i64) < RUNS_PER_BATCH {
                break;
            }
            after = last;
        }
        let mut rows = report.total();
        for (n, (_, delete)) in [
            (&mut report.ticks, batched!("ticks", TICKS)),
            (&mut report.openlineage_outbox, batched!("openlineage_outbox", OUTBOX)),
            (&mut report.alerts, batched!("alerts", ALERTS)),
        ] {
            loop {
                let mut tx = self.begin_write().await?;
                let deleted =
                    sqlx::query(delete).bind(cutoff).bind(ROWS_PER_BATCH).execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                *n += deleted;
                rows += deleted;
                if (deleted as i64) < ROWS_PER_BATCH {
                    break;
                }
                progress.tick(rows);
            }
        }
        if let Some(vacuum) = db::VACUUM_PRUNED {
            // Outside any transaction, as VACUUM must be; a table another role owns is skipped
            // with a warning, not an error. The names are the report's own, none a user's. The
            // deletions are committed: a vacuum that fails is logged, and the prune stands.
            for (table, _) in report.tables().into_iter().filter(|(_, n)| *n > 0) {
                let vacuumed =
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{vacuum}{table}"))).execute(self.reader()).await;
                if let Err(error) = vacuumed {
                    tracing::warn!(message = "Could not vacuum a pruned table; autovacuum will.", table, %error);
                }
            }
        }
        Ok(report)
    }
}

/// A long prune's progress, logged at most once a second (nothing for one that takes less).
struct Progress {
    started: std::time::Instant,
    next: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        let started = std::time::Instant::now();
        Progress { started, next: started + PROGRESS_EVERY }
    }

    /// `rows`: deleted so far.
    fn tick(&mut self, rows: u64) {
        let now = std::time::Instant::now();
        if now >= self.next {
            self.next = now + PROGRESS_EVERY;
            tracing::info!(
                message = "Prune progress.",
                rows,
                elapsed = format!("{:.1}s", (now - self.started).as_secs_f64()),
            );
        }
    }
}
