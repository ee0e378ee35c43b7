//! The outboxes: OpenLineage rows written by the transitions they describe and failure alerts
//! written by a run failing (each on the transaction of the change), read back in id order for
//! delivery and export; and the delivery leases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::QueryBuilder;

use super::writes::Writes;
use super::{ROWS_PER_STATEMENT, db};
use crate::Result;
use crate::model::*;
use crate::rows::{decode, parse_request_id, parse_run_id};
use crate::store::OutboxStore;

/// An outbox row about to be written.
pub(super) struct NewOutboxEvent<'a> {
    pub run_id: &'a str,
    pub request_id: Option<&'a str>,
    pub attempt: Option<i64>,
    pub event_type: LineageEventType,
    pub event_time: DateTime<Utc>,
    pub asset_key: Option<&'a str>,
    pub partition_key: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl<'a> NewOutboxEvent<'a> {
    /// An event of the run itself.
    pub fn run(run_id: &'a str, event_type: LineageEventType, event_time: DateTime<Utc>) -> Self {
        NewOutboxEvent {
            run_id,
            request_id: None,
            attempt: None,
            event_type,
            event_time,
            asset_key: None,
            partition_key: None,
            error: None,
        }
    }

    /// An event of one attempt of a step.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        run_id: &'a str,
        request_id: &'a str,
        attempt: i64,
        asset_key: &'a str,
        partition_key: &'a str,
        event_type: LineageEventType,
        event_time: DateTime<Utc>,
        error: Option<&'a str>,
    ) -> Self {
        NewOutboxEvent {
            run_id,
            request_id: Some(request_id),
            attempt: Some(attempt),
            event_type,
            event_time,
            asset_key: Some(asset_key),
            partition_key: Some(partition_key),
            error,
        }
    }
}

/// Writes outbox rows on the caller's transaction, in the order given (their delivery order).
pub(super) async fn enqueue(tx: &mut db::Conn, events: &[NewOutboxEvent<'_>]) -> Result<()> {
    let mut writes = Writes::new();
    push(&mut writes, events);
    writes.execute(tx).await
}

/// [`enqueue`] as the next statements of `writes`.
pub(super) fn push(writes: &mut Writes, events: &[NewOutboxEvent<'_>]) {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let q = writes.statement(
            "INSERT INTO openlineage_outbox (run_id, request_id, attempt, event_type, event_time, asset_key, \
                 partition_key, error) ",
        );
        q.push_values(chunk, |mut row, e| {
            row.push_bind(e.run_id)
                .push_bind(e.request_id)
                .push_bind(e.attempt)
                .push_bind(e.event_type.as_str())
                .push_bind(e.event_time)
                .push_bind(e.asset_key)
                .push_bind(e.partition_key)
                .push_bind(e.error);
        });
    }
}

/// The run-level event for a run that just ended with `status`, if it had started (a run never
/// started has no START to end).
pub(super) fn run_ended<'a>(
    run_id: &'a str,
    status: &str,
    started: bool,
    now: DateTime<Utc>,
) -> Option<NewOutboxEvent<'a>> {
    let event_type = match status {
        "succeeded" => LineageEventType::Complete,
        "failed" => LineageEventType::Fail,
        "canceled" => LineageEventType::Abort,
        _ => return None,
    };
    started.then(|| NewOutboxEvent::run(run_id, event_type, now))
}

/// Writes a failure alert for `run` on the caller's transaction when its status just became
/// `status` and that is `failed` (a canceled run alerts nobody).
pub(super) async fn alert_if_failed(tx: &mut db::Conn, run: &str, status: &str, now: DateTime<Utc>) -> Result<()> {
    if status == "failed" {
        sqlx::query("INSERT INTO alerts (run_id, failed_at) VALUES ($1, $2)")
            .bind(run)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

const ALERT_COLUMNS: &str = "id, run_id, failed_at, delivered_at, delivery_attempts, last_error";

type AlertRow = (i64, String, DateTime<Utc>, Option<DateTime<Utc>>, i64, Option<String>);

fn into_alert(row: AlertRow) -> Result<Alert> {
    let (id, run_id, failed_at, delivered_at, delivery_attempts, last_error) = row;
    Ok(Alert { id, run_id: parse_run_id(&run_id)?, failed_at, delivered_at, delivery_attempts, last_error })
}

const OUTBOX_COLUMNS: &str = "id, run_id, request_id, attempt, event_type, event_time, asset_key, partition_key, \
     error, delivered_at, delivery_attempts";

type OutboxRow = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    i64,
);

fn into_event(row: OutboxRow) -> Result<OutboxEvent> {
    let (id, run_id, request_id, attempt, event_type, event_time, asset_key, partition_key, error, delivered_at, n) =
        row;
    Ok(OutboxEvent {
        id,
        run_id: parse_run_id(&run_id)?,
        request_id: request_id.as_deref().map(parse_request_id).transpose()?,
        attempt,
        event_type: decode("openlineage_outbox.event_type", &event_type)?,
        event_time,
        asset_key,
        partition_key,
        error,
        delivered_at,
        delivery_attempts: n,
    })
}

/// The two tables whose rows are delivered one by one and marked as they go.
#[derive(Clone, Copy)]
enum Table {
    Outbox,
    Alerts,
}

/// One more delivery attempt of row `id` of `table`, if still pending: delivered at
/// `delivered_at` (with `error` as why it was refused, empty when accepted), or failed with
/// `error` and pending still.
async fn mark(
    store: &db::Store,
    table: Table,
    id: i64,
    delivered_at: Option<DateTime<Utc>>,
    error: &str,
) -> Result<()> {
    let sql = match table {
        Table::Outbox => concatcp!("UPDATE openlineage_outbox", MARK),
        Table::Alerts => concatcp!("UPDATE alerts", MARK),
    };
    let mut tx = store.begin_write().await?;
    sqlx::query(sql).bind(id).bind(delivered_at).bind((!error.is_empty()).then_some(error)).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The rest of `mark`'s statement, the same for both tables.
const MARK: &str = " SET delivery_attempts = delivery_attempts + 1, delivered_at = $2, last_error = $3 \
     WHERE id = $1 AND delivered_at IS NULL";

#[async_trait]
impl OutboxStore for db::Store {
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<OutboxEvent>> {
        let rows: Vec<OutboxRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            OUTBOX_COLUMNS,
            " FROM openlineage_outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(into_event).collect()
    }

    async fn outbox_events(&self, since: DateTime<Utc>, after: i64, limit: i64) -> Result<Vec<OutboxEvent>> {
        let rows: Vec<OutboxRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            OUTBOX_COLUMNS,
            " FROM openlineage_outbox WHERE id > $1 AND event_time >= $2 ORDER BY id LIMIT $3"
        ))
        .bind(after)
        .bind(since)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(into_event).collect()
    }

    async fn outbox_delivered(&self, ids: &[i64], now: DateTime<Utc>, rejected: Option<&str>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new("UPDATE openlineage_outbox SET delivery_attempts = delivery_attempts + 1, ");
            q.push("delivered_at = ").push_bind(now).push(", last_error = ").push_bind(rejected);
            q.push(" WHERE delivered_at IS NULL AND id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_delivery_failed(&self, id: i64, error: &str) -> Result<()> {
        mark(self, Table::Outbox, id, None, error).await
    }

    async fn delivery_lease(
        &self,
        delivery: Delivery,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        replacing: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO delivery_leases (name, owner, lease_until) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE delivery_leases.owner = excluded.owner OR delivery_leases.lease_until < $3 \
                 OR delivery_leases.owner = $5 \
             RETURNING owner",
        )
        .bind(delivery.as_str())
        .bind(owner)
        .bind(now)
        .bind(until)
        .bind(replacing)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held.is_some())
    }

    async fn delivery_lease_holder(&self, delivery: Delivery) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT owner FROM delivery_leases WHERE name = $1")
            .bind(delivery.as_str())
            .fetch_optional(self.reader())
            .await?)
    }

    async fn alerts_pending(&self, limit: i64) -> Result<Vec<Alert>> {
        let rows: Vec<AlertRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            ALERT_COLUMNS,
            " FROM alerts WHERE delivered_at IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(into_alert).collect()
    }

    async fn run_alerts(&self, run: RunId) -> Result<Vec<Alert>> {
        let rows: Vec<AlertRow> =
            sqlx::query_as(concatcp!("SELECT ", ALERT_COLUMNS, " FROM alerts WHERE run_id = $1 ORDER BY id"))
                .bind(run.to_string())
                .fetch_all(self.reader())
                .await?;
        rows.into_iter().map(into_alert).collect()
    }

    async fn alert_delivered(&self, id: i64, now: DateTime<Utc>, refused: Option<&str>) -> Result<()> {
        mark(self, Table::Alerts, id, Some(now), refused.unwrap_or_default()).await
    }

    async fn alert_delivery_failed(&self, id: i64, error: &str) -> Result<()> {
        mark(self, Table::Alerts, id, None, error).await
    }

    async fn alert_backlog(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM alerts WHERE delivered_at IS NULL")
            .fetch_one(self.reader())
            .await?)
    }

    async fn outbox_backlog(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM openlineage_outbox WHERE delivered_at IS NULL")
            .fetch_one(self.reader())
            .await?)
    }
}
