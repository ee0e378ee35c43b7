//! The write path: runs, events, "started" marks and materializations, written with multi-row
//! statements on a caller's transaction.

use std::collections::{HashMap, HashSet};

use const_format::concatcp;
use sqlx::QueryBuilder;

use super::db;
use super::{ROWS_PER_STATEMENT, STALE_INPUTS_RECOUNT};
use crate::model::*;
use crate::{Error, Result};

/// The advisory-lock key of a partition (PostgreSQL): 64 bits of blake3, never `i64::MIN`, which
/// is the maintenance lock every writer takes first.
pub(super) fn partition_lock_key(asset: &str, partition: &str) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(asset.as_bytes());
    h.update(b"\x1f");
    h.update(partition.as_bytes());
    let key = i64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    key.max(i64::MIN + 1)
}

/// Serializes staleness maintenance among writers that touch the same partitions. On PostgreSQL
/// transactions overlap: two could adjust one reader from the same old version, or record a
/// reader while its input changes unseen. So a batch takes a transaction-scoped advisory lock
/// on every partition it writes or reads (`partitions`), in one statement, in key order (no
/// deadlock), after the maintenance lock in shared mode. On SQLite every write transaction
/// already holds the single writer lock.
pub(super) async fn lock_staleness(tx: &mut db::Conn, partitions: &[(&str, &str)]) -> Result<()> {
    let Some(sql) = db::LOCK_PARTITIONS else {
        return Ok(());
    };
    let mut keys: Vec<i64> = partitions.iter().map(|(a, p)| partition_lock_key(a, p)).collect();
    keys.sort_unstable();
    keys.dedup();
    let keys = format!("{{{}}}", keys.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
    sqlx::query(sql).bind(keys).execute(&mut *tx).await?;
    Ok(())
}

/// Excludes every other staleness maintenance (`wipe`, `repair_staleness`), and every
/// transaction drawing materialization ids (`materializations_after`): the maintenance lock in
/// exclusive mode.
pub(super) async fn lock_staleness_all(tx: &mut db::Conn) -> Result<()> {
    if let Some(sql) = db::LOCK_MAINTENANCE {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Inserts a queued run.
pub(super) async fn insert_run(conn: &mut db::Conn, run: &NewRun) -> Result<()> {
    sqlx::query(concatcp!(
        "INSERT INTO runs (id, status, trigger, selection, n_steps, tags, created_at, owner, owner_expires_at) \
         VALUES ($1, 'queued', $2, $3, $4, $5",
        db::JSON,
        ", $6, $7, $8)"
    ))
    .bind(run.id.to_string())
    .bind(run.trigger.as_str())
    .bind(&run.selection)
    .bind(run.n_steps)
    .bind(run.tags.to_string())
    .bind(run.created_at)
    .bind(run.owner.as_ref().map(|o| o.worker.as_str()))
    .bind(run.owner.as_ref().map(|o| o.lease_until))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Statements whose results nobody reads, written in order on one transaction: on SQLite sent
/// as one query string (sqlx steps through its statements on the connection's thread: one round
/// trip instead of one per statement, ≈ 90 µs each on this machine), on PostgreSQL one call each
/// (`db::ONE_CALL_WRITES`). A statement that fails fails the call, and its transaction with it.
pub(super) struct Writes {
    calls: Vec<QueryBuilder<db::Db>>,
}

impl Writes {
    pub(super) fn new() -> Writes {
        Writes { calls: Vec::new() }
    }

    /// Starts the next statement with `sql`; the rest of it is pushed on what this returns.
    pub(super) fn statement(&mut self, sql: &str) -> &mut QueryBuilder<db::Db> {
        match self.calls.last_mut() {
            Some(q) if db::ONE_CALL_WRITES => {
                q.push("; ").push(sql);
            }
            _ => self.calls.push(QueryBuilder::new(sql)),
        }
        self.calls.last_mut().expect("a statement was just started")
    }

    pub(super) async fn execute(self, tx: &mut db::Conn) -> Result<()> {
        for mut q in self.calls {
            // Anonymous `?`s are bound in order across the statements of one call; a numbered
            // `$N` would name the N-th argument of the whole call instead.
            debug_assert!(
                !db::ONE_CALL_WRITES || !q.sql().as_str().contains('$'),
                "a numbered parameter in one-call writes: {}",
                q.sql().as_str()
            );
            q.build().execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// Appends events to run logs (one multi-row statement; callers chunk large batches).
pub(super) async fn insert_events(conn: &mut db::Conn, events: &[RunEvent]) -> Result<()> {
    let mut writes = Writes::new();
    push_events(&mut writes, events);
    writes.execute(conn).await
}

/// [`insert_events`] as the next statement of `writes`.
pub(super) fn push_events(writes: &mut Writes, events: &[RunEvent]) {
    let q = writes.statement("INSERT INTO run_events (run_id, ts, kind, asset_key, partition_key, message, body) ");
    q.push_values(events, |mut row, e| {
        row.push_bind(e.run_id.to_string())
            .push_bind(e.ts)
            .push_bind(e.kind.as_str())
            .push_bind(e.asset_key.as_deref())
            .push_bind(e.partition_key.as_deref())
            .push_bind(&e.message)
            .push_bind(e.body.to_string())
            .push_unseparated(db::JSON);
    });
}

/// Marks partitions running and logs `step_started`, as the next statements of `writes`.
pub(super) fn push_steps_started(writes: &mut Writes, events: &[RunEvent]) {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        push_events(writes, chunk);
        let q = writes.statement(
            "INSERT INTO asset_partitions (asset_key, partition_key, last_run_id, last_attempt_status, updated_at) ",
        );
        q.push_values(chunk, |mut row, e| {
            row.push_bind(e.asset_key.as_deref().unwrap_or_default())
                .push_bind(e.partition_key.as_deref().unwrap_or_default())
                .push_bind(e.run_id.to_string())
                .push_bind(AttemptStatus::Running.as_str())
                .push_bind(e.ts);
        });
        q.push(
            // A partition another run is materializing keeps the state from before that run as
            // the one to restore (never `running`, which no lease would then hold).
            " ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
               prev_attempt_status = CASE WHEN asset_partitions.last_attempt_status = 'running' \
                   THEN asset_partitions.prev_attempt_status ELSE asset_partitions.last_attempt_status END, \
               prev_error = CASE WHEN asset_partitions.last_attempt_status = 'running' \
                   THEN asset_partitions.prev_error ELSE asset_partitions.last_error END, \
               last_run_id = excluded.last_run_id, last_attempt_status = 'running', \
               last_error = NULL, updated_at = excluded.updated_at",
        );
    }
}

/// Takes the staleness locks (`lock_staleness`) of the partitions materializations write and
/// read. Staleness counts are read-modify-write across partitions: writers of the same
/// partitions take turns. Ids drawn after this follow the order the partitions' current
/// versions are written in, so a partition's current materialization is its newest (largest id).
pub(super) async fn lock_partitions_of<'a>(
    tx: &mut db::Conn,
    ms: impl Iterator<Item = &'a NewMaterialization>,
) -> Result<()> {
    let touched: Vec<(&str, &str)> = ms
        .flat_map(|m| {
            std::iter::once((m.asset_key.as_str(), m.partition_key.as_str()))
                .chain(m.inputs.iter().map(|i| (i.asset_key.as_str(), i.partition_key.as_str())))
        })
        .collect();
    lock_staleness(tx, &touched).await
}

/// Writes materializations and, as the next statements of `writes`, their inputs, current-state
/// rows, the staleness counts of their readers and their `step_succeeded` events. Their ids are
/// returned, in order: `given` (drawn by the caller after `lock_partitions_of`, as the
/// completion's fence does; ascending) or, when `None`, the ones the store assigns, read back now.
pub(super) async fn write_materializations<'a>(
    tx: &mut db::Conn,
    ms: &'a [NewMaterialization],
    given: Option<&[MaterializationId]>,
    writes: &mut Writes,
) -> Result<Vec<MaterializationId>> {
    let ids = match given {
        // The caller locked the partitions before it drew the ids.
        Some(ids) => {
            debug_assert!(ids.windows(2).all(|w| w[0] < w[1]), "given ids ascend: {ids:?}");
            push_materializations_with_ids(writes, ids, ms);
            ids.to_vec()
        }
        None => {
            lock_partitions_of(&mut *tx, ms.iter()).await?;
            insert_materializations(&mut *tx, ms).await?
        }
    };
    push_inputs(writes, &ids, ms);
    push_adjust_readers(writes, ms);
    let with_ids: Vec<(i64, &'a NewMaterialization)> = ids.iter().copied().zip(ms).collect();
    push_upsert_current(writes, &with_ids);
    // The new materializations' own counts, from the current versions of what they read (a
    // materialization without inputs keeps 0).
    let with_inputs: Vec<i64> = with_ids.iter().filter(|(_, m)| !m.inputs.is_empty()).map(|(id, _)| *id).collect();
    for chunk in with_inputs.chunks(ROWS_PER_STATEMENT) {
        let q = writes.statement(concatcp!("UPDATE asset_partitions SET stale_inputs = ", STALE_INPUTS_RECOUNT));
        q.push(" WHERE current_materialization_id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        list.push_unseparated(")");
    }
    let events: Vec<RunEvent> = with_ids
        .iter()
        .map(|(id, m)| {
            let mut event =
                RunEvent::step(m.run_id, m.finished_at, EventKind::StepSucceeded, &m.asset_key, &m.partition_key, "");
            event.body = serde_json::json!({
                "materialization_id": id,
                "data_version": m.data_version,
                "attempt": m.attempt,
                "storage_uri": m.storage_uri,
            });
            event
        })
        .collect();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        push_events(writes, chunk);
    }
    Ok(ids)
}

/// The columns a materialization row is written with, but its id.
const NEW_MATERIALIZATION_COLUMNS: &str = "asset_key, partition_key, run_id, attempt, data_version, \
     logical_version, code_version, n_inputs, inputs_hash, storage_uri, bytes, row_count, \
     schema, metadata, started_at, finished_at";

/// One row's values, in [`NEW_MATERIALIZATION_COLUMNS`]' order.
fn push_materialization(row: &mut sqlx::query_builder::Separated<'_, db::Db, &'static str>, m: &NewMaterialization) {
    row.push_bind(&m.asset_key)
        .push_bind(&m.partition_key)
        .push_bind(m.run_id.to_string())
        .push_bind(m.attempt)
        .push_bind(&m.data_version)
        .push_bind(&m.logical_version)
        .push_bind(&m.code_version)
        .push_bind(m.inputs.len() as i64)
        .push_bind(&m.inputs_hash)
        .push_bind(m.storage_uri.as_deref())
        .push_bind(m.bytes)
        .push_bind(m.row_count)
        .push_bind(m.schema.as_ref().map(std::string::ToString::to_string))
        .push_unseparated(db::JSON)
        .push_bind(m.metadata.to_string())
        .push_unseparated(db::JSON)
        .push_bind(m.started_at)
        .push_bind(m.finished_at);
}

/// The materialization rows with the ids their writer drew, as the next statements of `writes`
/// (nothing to read back).
fn push_materializations_with_ids(writes: &mut Writes, ids: &[MaterializationId], ms: &[NewMaterialization]) {
    let rows: Vec<(MaterializationId, &NewMaterialization)> = ids.iter().copied().zip(ms).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let q = writes.statement(concatcp!(
            "INSERT INTO materializations (id, ",
            NEW_MATERIALIZATION_COLUMNS,
            ")",
            db::OVERRIDING_IDENTITY,
            " "
        ));
        q.push_values(chunk, |mut row, (id, m)| {
            row.push_bind(*id);
            push_materialization(&mut row, m);
        });
    }
}

/// Inserts the materialization rows; returns their ids in the order of `ms`.
async fn insert_materializations(tx: &mut db::Conn, ms: &[NewMaterialization]) -> Result<Vec<MaterializationId>> {
    let mut ids = Vec::with_capacity(ms.len());
    for chunk in ms.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(concatcp!("INSERT INTO materializations (", NEW_MATERIALIZATION_COLUMNS, ") "));
        q.push_values(chunk, |mut row, m| push_materialization(&mut row, m));
        q.push(" RETURNING id, asset_key, partition_key, run_id");
        let rows: Vec<(i64, String, String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
        // RETURNING order is unspecified: match rows by their UNIQUE (run, asset, partition).
        for m in chunk {
            let run = m.run_id.to_string();
            let id = rows
                .iter()
                .find(|(_, a, p, r)| *a == m.asset_key && *p == m.partition_key && *r == run)
                .map(|(id, ..)| *id)
                .ok_or_else(|| Error::Decode { what: "materializations RETURNING", detail: "row missing".into() })?;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The exact input versions each materialization read, as the next statements of `writes`.
fn push_inputs<'a>(writes: &mut Writes, ids: &[MaterializationId], ms: &'a [NewMaterialization]) {
    let inputs: Vec<(i64, &'a InputVersion)> =
        ids.iter().zip(ms).flat_map(|(id, m)| m.inputs.iter().map(move |i| (*id, i))).collect();
    for chunk in inputs.chunks(ROWS_PER_STATEMENT) {
        let q = writes.statement(
            "INSERT INTO materialization_inputs (materialization_id, upstream_asset_key, \
             upstream_partition_key, upstream_materialization_id, upstream_data_version) ",
        );
        q.push_values(chunk, |mut row, (id, input)| {
            row.push_bind(*id)
                .push_bind(&input.asset_key)
                .push_bind(&input.partition_key)
                .push_bind(input.materialization_id)
                .push_bind(&input.data_version);
        });
    }
}

/// Readers of a partition whose data version changes: an input read at the old version becomes
/// stale, one read at the new version no longer is; identical bytes change nothing. Runs before
/// the current-state upsert, so the old version is still in `asset_partitions` (read in SQL, no
/// round trip); several versions of one partition in a batch telescope to (version before the
/// batch, last version of the batch). The next statements of `writes`.
fn push_adjust_readers<'a>(writes: &mut Writes, ms: &'a [NewMaterialization]) {
    let mut last_version: Vec<(&'a str, &'a str, &'a str)> = Vec::with_capacity(ms.len());
    let mut seen = HashSet::with_capacity(ms.len());
    for m in ms.iter().rev() {
        if seen.insert((m.asset_key.as_str(), m.partition_key.as_str())) {
            last_version.push((m.asset_key.as_str(), m.partition_key.as_str(), m.data_version.as_str()));
        }
    }
    for chunk in last_version.chunks(ROWS_PER_STATEMENT) {
        let q = writes.statement("WITH changed (asset_key, partition_key, new_version) AS (");
        q.push_values(chunk, |mut row, (asset, partition, new)| {
            row.push_bind(*asset).push_bind(*partition).push_bind(*new);
        });
        q.push(
            ") UPDATE asset_partitions SET stale_inputs = stale_inputs + d.delta \
             FROM (SELECT mi.materialization_id, \
                     SUM(CASE WHEN mi.upstream_data_version = c.new_version THEN 0 ELSE 1 END \
                       - CASE WHEN mi.upstream_data_version = old.data_version THEN 0 ELSE 1 END) AS delta \
                   FROM changed c \
                   JOIN materialization_inputs mi \
                     ON mi.upstream_asset_key = c.asset_key AND mi.upstream_partition_key = c.partition_key \
                   LEFT JOIN asset_partitions old \
                     ON old.asset_key = c.asset_key AND old.partition_key = c.partition_key \
                   GROUP BY mi.materialization_id) d \
             WHERE asset_partitions.current_materialization_id = d.materialization_id AND d.delta <> 0",
        );
    }
}

/// One current-state row per partition: the last of the batch (PostgreSQL refuses to upsert a
/// row twice in one statement). The next statements of `writes`.
fn push_upsert_current<'a>(writes: &mut Writes, with_ids: &[(i64, &'a NewMaterialization)]) {
    let last: HashMap<(&str, &str), usize> =
        with_ids.iter().enumerate().map(|(i, (_, m))| ((m.asset_key.as_str(), m.partition_key.as_str()), i)).collect();
    let current: Vec<(i64, &'a NewMaterialization)> = with_ids
        .iter()
        .enumerate()
        .filter(|(i, (_, m))| last[&(m.asset_key.as_str(), m.partition_key.as_str())] == *i)
        .map(|(_, row)| *row)
        .collect();
    for chunk in current.chunks(ROWS_PER_STATEMENT) {
        let q = writes.statement(
            "INSERT INTO asset_partitions (asset_key, partition_key, current_materialization_id, data_version, \
             logical_version, code_version, materialized_at, last_run_id, last_attempt_status, \
             last_error, stale_inputs, input_keys_hash, updated_at) ",
        );
        q.push_values(chunk, |mut row, (id, m)| {
            row.push_bind(&m.asset_key)
                .push_bind(&m.partition_key)
                .push_bind(*id)
                .push_bind(&m.data_version)
                .push_bind(&m.logical_version)
                .push_bind(&m.code_version)
                .push_bind(m.finished_at)
                .push_bind(m.run_id.to_string())
                .push_bind(AttemptStatus::Materialized.as_str())
                .push_bind(None::<String>)
                .push_bind(0i64)
                .push_bind(input_keys_hash(m.inputs.iter().map(|i| (i.asset_key.as_str(), i.partition_key.as_str()))))
                .push_bind(m.finished_at);
        });
        q.push(
            " ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
               current_materialization_id = excluded.current_materialization_id, \
               data_version = excluded.data_version, logical_version = excluded.logical_version, \
               code_version = excluded.code_version, materialized_at = excluded.materialized_at, \
               last_run_id = excluded.last_run_id, last_attempt_status = 'materialized', \
               last_error = NULL, stale_inputs = 0, input_keys_hash = excluded.input_keys_hash, \
               updated_at = excluded.updated_at",
        );
    }
}

/// Records asset check verdicts on `tx`.
pub(super) async fn insert_check_results(tx: &mut db::Conn, results: &[NewCheckResult]) -> Result<()> {
    for chunk in results.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
            "INSERT INTO asset_check_results (asset_key, partition_key, run_id, check_name, severity, passed, \
             message, created_at) ",
        );
        q.push_values(chunk, |mut row, r| {
            row.push_bind(&r.asset_key)
                .push_bind(&r.partition_key)
                .push_bind(r.run_id.to_string())
                .push_bind(&r.check_name)
                .push_bind(r.severity.as_str())
                .push_bind(r.passed)
                .push_bind(&r.message)
                .push_bind(r.created_at);
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
