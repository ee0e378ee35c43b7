//! `RetentionStore`: deletes finished history older than a cutoff, in one transaction, and
//! never lineage (materializations, their inputs, runs, partition state, check verdicts,
//! backfills, dynamic partitions).
//!
//! Each table's rows are named by one `FROM … WHERE …` fragment, counted by a dry run and
//! deleted by a real one, so the two agree. No fragment depends on another table's deletion
//! (the edges go before the requests they name, and both are chosen by the same condition),
//! so the order of the statements changes no count.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use const_format::concatcp;

use super::db;
use crate::Result;
use crate::model::PruneReport;
use crate::store::RetentionStore;

/// Runs that ended before the cutoff (`$1`).
const OLD_RUNS: &str =
    "SELECT r.id FROM runs r WHERE r.status IN ('succeeded', 'failed', 'canceled') AND r.finished_at < $1";

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

/// Counts (`dry_run`) or deletes the rows of one fragment on the transaction.
async fn prune_table(
    tx: &mut db::Conn,
    count: &'static str,
    delete: &'static str,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<u64> {
    if dry_run {
        let n: i64 = sqlx::query_scalar(count).bind(cutoff).fetch_one(&mut *tx).await?;
        return Ok(n as u64);
    }
    Ok(sqlx::query(delete).bind(cutoff).execute(&mut *tx).await?.rows_affected())
}

/// One table's count and deletion statements.
macro_rules! statements {
    ($from:expr) => {
        (concatcp!("SELECT count(*)", $from), concatcp!("DELETE", $from))
    };
}

#[async_trait]
impl RetentionStore for db::Store {
    async fn prune(&self, cutoff: DateTime<Utc>, dry_run: bool) -> Result<PruneReport> {
        let mut tx = self.begin_write().await?;
        let mut report = PruneReport::default();
        for (n, (count, delete)) in [
            (&mut report.run_events, statements!(RUN_EVENTS)),
            (&mut report.request_edges, statements!(REQUEST_EDGES)),
            (&mut report.materialization_requests, statements!(REQUESTS)),
            (&mut report.ticks, statements!(TICKS)),
            (&mut report.openlineage_outbox, statements!(OUTBOX)),
            (&mut report.alerts, statements!(ALERTS)),
        ] {
            *n = prune_table(&mut tx, count, delete, cutoff, dry_run).await?;
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }
}
