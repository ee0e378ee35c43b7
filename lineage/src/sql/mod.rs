//! Every store method, written once in plain Rust and compiled once per backend.
//!
//! `sqlite.rs` and `postgres.rs` each include this folder as a module (`#[path = "sql/mod.rs"]`)
//! beside a `dialect` module that names the backend's types (`Db`, `Conn`, `Store`) and the few
//! SQL fragments that differ (a JSON cast, a set of keys from a JSON array, row-locking clauses,
//! advisory locks). Fragments are `const`s joined with `concatcp!` at compile time, so every
//! query stays a `&'static str` and nothing is built with `format!`.
//!
//! Placeholders are `$N`, which both drivers accept; timestamps are bound as `DateTime<Utc>`
//! (RFC 3339 text on SQLite, `timestamptz` on PostgreSQL), so comparisons agree; JSON columns are
//! read back with `CAST(.. AS TEXT)` into the shared rows of `rows.rs`.
//!
//! The backend's store type supplies, as inherent methods: `reader()` (the pool reads go
//! through), `begin_write()` (a write transaction), `begin_claim()` (the claim's transaction)
//! and `summaries()` (the lean status read, which differs in shape).

mod automation;
mod lineage;
mod outbox;
mod queue;
mod retention;
mod writes;

use super::dialect as db;

#[cfg(test)]
#[allow(unused_imports)] // the SQLite copy's is read by a test of the plan; the PostgreSQL one's not
pub(crate) use queue::{REQUEST_COUNTS, REQUESTS_OF_RUN};

/// Rows per multi-row statement: 16 columns × 500 rows stays under SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 500;

use crate::COMPLETIONS_PER_STATEMENT;

/// The columns of a `MaterializationRow`.
const MATERIALIZATION_COLUMNS: &str = "id, asset_key, partition_key, run_id, attempt, data_version, \
     logical_version, code_version, n_inputs, inputs_hash, storage_uri, bytes, row_count, \
     CAST(schema AS TEXT) AS schema, CAST(metadata AS TEXT) AS metadata, started_at, finished_at";

/// The columns of a `CheckRow`.
const CHECK_COLUMNS: &str = "id, asset_key, partition_key, run_id, check_name, severity, passed, message, created_at";

/// The columns of a `PartitionRow`.
const PARTITION_COLUMNS: &str = "asset_key, partition_key, current_materialization_id, data_version, \
     logical_version, code_version, materialized_at, last_run_id, last_attempt_status, last_error, stale_inputs, \
     input_keys_hash, updated_at";

/// The columns of a `RequestRow`.
const REQUEST_COLUMNS: &str = "id, idempotency_key, run_id, asset_key, partition_key, trigger, pool, priority, \
     state, pending_deps, run_at, attempt, max_attempts, lease_owner, lease_expires_at, cancel_requested, \
     last_error, materialization_id, created_at, started_at, finished_at";

/// The exact count of `asset_partitions.stale_inputs` for the row being updated: inputs of its
/// current materialization whose upstream partition now has another data version, or none.
/// Shared by the write path (for new materializations) and `repair_staleness` (for every row).
const STALE_INPUTS_RECOUNT: &str = "(SELECT COUNT(*) FROM materialization_inputs mi \
       LEFT JOIN asset_partitions up \
         ON up.asset_key = mi.upstream_asset_key AND up.partition_key = mi.upstream_partition_key \
       WHERE mi.materialization_id = asset_partitions.current_materialization_id \
         AND (up.data_version IS NULL OR up.data_version <> mi.upstream_data_version))";
