//! The OpenLineage outbox: rows written by the transitions they describe (on their transaction),
//! read back in id order for delivery and export.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

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
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
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
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
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

#[async_trait]
impl OutboxStore for db::Store {
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<OutboxEvent>> {
        let rows: Vec<OutboxRow> = sqlx::query_as(const_format::concatcp!(
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
        let rows: Vec<OutboxRow> = sqlx::query_as(const_format::concatcp!(
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
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE openlineage_outbox SET delivery_attempts = delivery_attempts + 1, last_error = $2 \
             WHERE id = $1 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_lease(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        replacing: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO openlineage_shipper (id, owner, lease_until) VALUES (1, $1, $3) \
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE openlineage_shipper.owner = excluded.owner OR openlineage_shipper.lease_until < $2 \
                 OR openlineage_shipper.owner = $4 \
             RETURNING owner",
        )
        .bind(owner)
        .bind(now)
        .bind(until)
        .bind(replacing)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held.is_some())
    }

    async fn outbox_lease_holder(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT owner FROM openlineage_shipper WHERE id = 1")
            .fetch_optional(self.reader())
            .await?)
    }

    async fn outbox_backlog(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM openlineage_outbox WHERE delivered_at IS NULL")
            .fetch_one(self.reader())
            .await?)
    }
}
