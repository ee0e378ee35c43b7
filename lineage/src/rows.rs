//! Row types shared by the SQLite and PostgreSQL stores.
//!
//! Both backends return JSON columns as text (PostgreSQL casts `jsonb` to `text` in its
//! queries), so one set of rows and conversions serves both.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::model::*;
use crate::{Error, Result};

/// Parses a stored name (a state, a kind, an id) into its type; `what` names the column.
pub(crate) fn decode<T>(what: &'static str, stored: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    T::from_str(stored).map_err(|e| Error::Decode { what, detail: format!("{stored:?}: {e}") })
}

#[derive(FromRow)]
pub(crate) struct RunRow {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) trigger: String,
    pub(crate) selection: String,
    pub(crate) n_steps: i64,
    pub(crate) tags: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    pub(crate) owner: Option<String>,
}

impl RunRow {
    pub(crate) fn into_record(self) -> Result<RunRecord> {
        Ok(RunRecord {
            id: parse_run_id(&self.id)?,
            status: decode("runs.status", &self.status)?,
            trigger: decode("runs.trigger", &self.trigger)?,
            selection: self.selection,
            n_steps: self.n_steps,
            tags: parse_json("runs.tags", &self.tags)?,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            owner: self.owner,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct EventRow {
    pub(crate) run_id: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) kind: String,
    pub(crate) asset_key: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) message: String,
    pub(crate) body: String,
}

#[derive(FromRow)]
pub(crate) struct MaterializationRow {
    pub(crate) id: i64,
    pub(crate) asset_key: String,
    pub(crate) partition_key: String,
    pub(crate) run_id: String,
    pub(crate) attempt: i64,
    pub(crate) data_version: String,
    pub(crate) logical_version: String,
    pub(crate) code_version: String,
    pub(crate) n_inputs: i64,
    pub(crate) inputs_hash: String,
    pub(crate) storage_uri: Option<String>,
    pub(crate) bytes: Option<i64>,
    pub(crate) row_count: Option<i64>,
    pub(crate) schema: Option<String>,
    pub(crate) metadata: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: DateTime<Utc>,
}

impl MaterializationRow {
    pub(crate) fn into_record(self) -> Result<MaterializationRecord> {
        Ok(MaterializationRecord {
            id: self.id,
            asset_key: self.asset_key,
            partition_key: self.partition_key,
            run_id: parse_run_id(&self.run_id)?,
            attempt: self.attempt,
            data_version: self.data_version,
            logical_version: self.logical_version,
            code_version: self.code_version,
            n_inputs: self.n_inputs,
            inputs_hash: self.inputs_hash,
            storage_uri: self.storage_uri,
            bytes: self.bytes,
            row_count: self.row_count,
            schema: self.schema.as_deref().map(|s| parse_json("materializations.schema", s)).transpose()?,
            metadata: parse_json("materializations.metadata", &self.metadata)?,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct PartitionRow {
    pub(crate) asset_key: String,
    pub(crate) partition_key: String,
    pub(crate) current_materialization_id: Option<i64>,
    pub(crate) data_version: Option<String>,
    pub(crate) logical_version: Option<String>,
    pub(crate) code_version: Option<String>,
    pub(crate) materialized_at: Option<DateTime<Utc>>,
    pub(crate) last_run_id: Option<String>,
    pub(crate) last_attempt_status: String,
    pub(crate) last_error: Option<String>,
    pub(crate) stale_inputs: i64,
    pub(crate) input_keys_hash: Option<String>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl PartitionRow {
    pub(crate) fn into_state(self) -> Result<PartitionState> {
        Ok(PartitionState {
            asset_key: self.asset_key,
            partition_key: self.partition_key,
            current_materialization_id: self.current_materialization_id,
            data_version: self.data_version,
            logical_version: self.logical_version,
            code_version: self.code_version,
            materialized_at: self.materialized_at,
            last_run_id: self.last_run_id.as_deref().map(parse_run_id).transpose()?,
            last_attempt_status: decode("asset_partitions.last_attempt_status", &self.last_attempt_status)?,
            last_error: self.last_error,
            stale_inputs: self.stale_inputs,
            input_keys_hash: self.input_keys_hash,
            updated_at: self.updated_at,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct InputRow {
    pub(crate) upstream_asset_key: String,
    pub(crate) upstream_partition_key: String,
    pub(crate) upstream_materialization_id: Option<i64>,
    pub(crate) upstream_data_version: String,
}

pub(crate) fn parse_run_id(s: &str) -> Result<RunId> {
    decode("run id", s)
}

pub(crate) fn parse_request_id(s: &str) -> Result<RequestId> {
    decode("request id", s)
}

pub(crate) fn parse_json(what: &'static str, s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| Error::Decode { what, detail: e.to_string() })
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<RunEvent> {
        Ok(RunEvent {
            run_id: parse_run_id(&self.run_id)?,
            ts: self.ts,
            kind: decode("run_events.kind", &self.kind)?,
            asset_key: self.asset_key,
            partition_key: self.partition_key,
            message: self.message,
            body: parse_json("run_events.body", &self.body)?,
        })
    }
}

impl InputRow {
    pub(crate) fn into_input(self) -> InputVersion {
        InputVersion {
            asset_key: self.upstream_asset_key,
            partition_key: self.upstream_partition_key,
            materialization_id: self.upstream_materialization_id,
            data_version: self.upstream_data_version,
        }
    }
}

#[derive(FromRow)]
pub(crate) struct BackfillRow {
    pub(crate) id: String,
    pub(crate) selection: String,
    pub(crate) partition_from: String,
    pub(crate) partition_to: String,
    pub(crate) policy: String,
    pub(crate) run_id: String,
    pub(crate) status: String,
    pub(crate) cells: i64,
    pub(crate) skipped: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
}

impl BackfillRow {
    pub(crate) fn into_record(self) -> Result<BackfillRecord> {
        Ok(BackfillRecord {
            id: decode("backfills.id", &self.id)?,
            selection: self.selection,
            partition_from: self.partition_from,
            partition_to: self.partition_to,
            policy: decode("backfills.policy", &self.policy)?,
            run_id: parse_run_id(&self.run_id)?,
            status: decode("runs.status", &self.status)?,
            cells: self.cells,
            skipped: parse_json("backfills.skipped", &self.skipped)?,
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

/// One [`PartitionSummary`] as selected: (partition, has a current materialization, attempt
/// status, code version, stale inputs, input keys hash).
pub(crate) type SummaryRow = (String, bool, String, Option<String>, i64, Option<String>);

pub(crate) fn into_summary(
    (partition_key, materialized, status, code_version, stale_inputs, input_keys_hash): SummaryRow,
) -> Result<PartitionSummary> {
    Ok(PartitionSummary {
        partition_key,
        materialized,
        last_attempt_status: decode("asset_partitions.last_attempt_status", &status)?,
        code_version,
        stale_inputs,
        input_keys_hash,
    })
}

#[derive(FromRow)]
pub(crate) struct RequestRow {
    pub(crate) id: String,
    pub(crate) idempotency_key: String,
    pub(crate) run_id: String,
    pub(crate) asset_key: String,
    pub(crate) partition_key: String,
    pub(crate) trigger: String,
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

impl RequestRow {
    pub(crate) fn into_record(self) -> Result<RequestRecord> {
        Ok(RequestRecord {
            id: parse_request_id(&self.id)?,
            idempotency_key: self.idempotency_key,
            run_id: parse_run_id(&self.run_id)?,
            asset_key: self.asset_key,
            partition_key: self.partition_key,
            trigger: decode("materialization_requests.trigger", &self.trigger)?,
            pool: self.pool,
            priority: self.priority,
            state: decode("materialization_requests.state", &self.state)?,
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

#[derive(FromRow)]
pub(crate) struct CheckRow {
    pub(crate) id: i64,
    pub(crate) asset_key: String,
    pub(crate) partition_key: String,
    pub(crate) run_id: String,
    pub(crate) check_name: String,
    pub(crate) severity: String,
    pub(crate) passed: bool,
    pub(crate) message: String,
    pub(crate) created_at: DateTime<Utc>,
}

impl CheckRow {
    pub(crate) fn into_record(self) -> Result<CheckResultRecord> {
        Ok(CheckResultRecord {
            id: self.id,
            asset_key: self.asset_key,
            partition_key: self.partition_key,
            run_id: parse_run_id(&self.run_id)?,
            check_name: self.check_name,
            severity: decode("asset_check_results.severity", &self.severity)?,
            passed: self.passed,
            message: self.message,
            created_at: self.created_at,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct InstigatorRow {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) status: String,
    pub(crate) cursor: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl InstigatorRow {
    pub(crate) fn into_state(self) -> Result<InstigatorState> {
        Ok(InstigatorState {
            name: self.name,
            kind: decode("instigators.kind", &self.kind)?,
            status: decode("instigators.status", &self.status)?,
            cursor: self.cursor,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct TickRow {
    pub(crate) id: i64,
    pub(crate) instigator: String,
    pub(crate) tick_time: DateTime<Utc>,
    pub(crate) status: String,
    pub(crate) run_id: Option<String>,
    pub(crate) requests: i64,
    pub(crate) message: String,
    pub(crate) cursor: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
}

impl TickRow {
    pub(crate) fn into_record(self) -> Result<TickRecord> {
        Ok(TickRecord {
            id: self.id,
            instigator: self.instigator,
            tick_time: self.tick_time,
            status: decode("ticks.status", &self.status)?,
            run_id: self.run_id.as_deref().map(parse_run_id).transpose()?,
            requests: self.requests,
            message: self.message,
            cursor: self.cursor,
            created_at: self.created_at,
        })
    }
}
