//! The SQLite lineage store: one file in WAL mode, the embedded default.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock up front
//! and waits on `busy_timeout` instead of failing with a stale snapshot.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::model::PartitionSummary;
use crate::{Error, Result};

/// What the shared SQL (`sql/`) needs to know about SQLite.
mod dialect {
    /// The sqlx database.
    pub(super) type Db = sqlx::Sqlite;
    /// A connection (a transaction derefs to one).
    pub(super) type Conn = sqlx::SqliteConnection;
    /// A stored time as the column holds it, to bind back unchanged: the text SQLite stores
    /// (a `DateTime` decoded and encoded again need not be the same text, and text compares).
    pub(super) type StoredTime = String;
    /// A stored time before every other: the empty text.
    pub(super) fn before_all_times() -> StoredTime {
        String::new()
    }
    /// Nothing to vacuum after a prune: SQLite reuses the pages a `DELETE` frees.
    pub(super) const VACUUM_PRUNED: Option<&str> = None;
    /// The store the shared methods are implemented for.
    pub(super) type Store = super::SqliteStore;
    /// Appended to a bind that holds JSON text: JSON columns are text on SQLite.
    pub(super) const JSON: &str = "";
    /// The set of keys in the JSON text array bound as `$2`.
    pub(super) const JSON_KEYS: &str = "SELECT value FROM json_each($2)";
    /// The order dynamic partitions were added in.
    pub(super) const DYNAMIC_ORDER: &str = "created_at, rowid";
    /// Locks the selected queue rows, skipping locked ones: SQLite's single writer already
    /// serializes claims.
    pub(super) const SKIP_LOCKED: &str = "";
    /// Locks a row that must be waited for (a pool, a run): the single writer again.
    pub(super) const LOCK_ROW: &str = "";
    /// Locks a row (a request, when settling it) unless another transaction holds it, which is
    /// skipped; `FOR NO KEY UPDATE`, which foreign-key checks of new rows do not conflict with.
    pub(super) const LOCK_ROW_SKIP: &str = "";
    /// No pin for a run's end check: the single writer serializes every check (`end_or_pin_run`).
    pub(super) const PIN_UNFINISHED: Option<&str> = None;
    /// Staleness maintenance locks: the single writer serializes every write transaction.
    pub(super) const LOCK_PARTITIONS: Option<&str> = None;
    /// See [`LOCK_PARTITIONS`].
    pub(super) const LOCK_MAINTENANCE: Option<&str> = None;
    /// No notifications across processes: only this process's workers are woken.
    pub(super) const NOTIFY_WORK: Option<&str> = None;
    /// Writes whose results nobody reads go to the connection as one query string of several
    /// statements ([`Writes`](super::sql)): sqlx steps through them in order, one call instead of
    /// one per statement (each call was a round trip of ≈ 90 µs to a thread of the connection's
    /// own, before statements ran on the calling thread; it still saves binding and logging).
    pub(super) const ONE_CALL_WRITES: bool = true;
    /// SQLite has no writable CTEs: the claimed attempts' lineage STARTs are one multi-row
    /// `INSERT` after the claim (triggers doing it cost 4.6 % more instructions per request than
    /// that `INSERT`, measured with callgrind: BENCHMARKS.md).
    pub(super) const CLAIM_WITH_OUTBOX: Option<(&str, &str)> = None;
    /// No sequences: the completion's fence numbers the materializations it records after the
    /// largest id (what `INTEGER PRIMARY KEY` would pick), under the single writer's lock.
    pub(super) const NEXT_MATERIALIZATION_ID: Option<&str> = None;
    /// An `INTEGER PRIMARY KEY` takes an explicit id as it is.
    pub(super) const OVERRIDING_IDENTITY: &str = "";
}

// The shared SQL is compiled once per backend on purpose: each copy sees its own `dialect`.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

#[cfg(test)]
pub(crate) use sql::{REQUEST_COUNTS, REQUESTS_OF_RUN};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Holds an exclusive lock on `<db>.migrate-lock` until dropped (released on close, also by a
/// killed process). Used by the app database's open too.
pub async fn migration_lock(db: &Path) -> std::io::Result<std::fs::File> {
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate-lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(name)?;
    match file.try_lock() {
        // Free, as at every open but concurrent first ones: no hand-off to another thread.
        Ok(()) => Ok(file),
        // Waiting for the lock blocks a thread: wait on the blocking pool.
        Err(std::fs::TryLockError::WouldBlock) => {
            tokio::task::spawn_blocking(move || file.lock().map(|()| file)).await.expect("lock task does not panic")
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether the database at `conn` has every migration of `migrator` applied, cleanly and with
/// the same checksums, and no other: then `Migrator::run` would do nothing.
///
/// One statement instead of the three `run` takes (create the table if missing, look for a
/// dirty migration, list the applied ones) on every start: BENCHMARKS.md. It checks what `run`
/// checks, every version and checksum, and answers `false` on any doubt (no table yet, a
/// migration to apply, a dirty or changed one, an error), so the caller runs the migrator, which
/// applies what is missing or reports the mismatch as before. Used by the app database too.
pub async fn migrations_current(conn: &mut sqlx::SqliteConnection, migrator: &sqlx::migrate::Migrator) -> bool {
    let applied: Vec<(i64, Vec<u8>, bool)> =
        match sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(conn)
            .await
        {
            Ok(rows) => rows,
            Err(_) => return false,
        };
    let mut embedded = migrator.iter().filter(|m| !m.migration_type.is_down_migration());
    applied.len() == embedded.clone().count()
        && applied.iter().zip(&mut embedded).all(|((version, checksum, success), m)| {
            *success && *version == m.version && checksum[..] == m.checksum[..]
        })
}

/// The lineage store on a SQLite file.
///
/// A process has one connection to the file, which reads and writes take in turn: writers in
/// this process queue in tokio instead of meeting SQLite's busy handler (which sleeps in whole
/// milliseconds), and the schema is parsed and each statement prepared once per process, not
/// once per connection (BENCHMARKS.md). Other processes' connections see the last committed
/// state (WAL).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: String,
    work: Arc<crate::work::Work>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit is durable once the WAL is fsynced at checkpoint; a power
            // loss can drop the last commits but never corrupts the file (BENCHMARKS.md).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Statements run on the thread that awaits them, not on a thread of the connection's
            // own: each of a bill's 36 statements cost two to four thread wake-ups, and a bill
            // took 20.0 against 16.0 ms (BENCHMARKS.md). A statement that meets another process's
            // lock waits on a blocking thread (vendor/README.md); this store's transactions hold
            // the lock for their statements only, never across other I/O.
            .calling_thread(true)
            // A checkpoint once the WAL holds 250 pages, not SQLite's 1,000: every process's
            // first statement reads the whole WAL back to rebuild its index (each frame read and
            // checksummed), so a shorter WAL makes every command's start cheaper (`list` 6.06 →
            // 5.29 ms), for more, smaller checkpoints (a bill's median unchanged, its mean 20.0 →
            // 17.4 ms; BENCHMARKS.md). A checkpoint only copies committed pages: nothing about
            // durability changes.
            .pragma("wal_autocheckpoint", "250");
        // sqlx takes no lock for SQLite migrations, and the first connection to a new file switches
        // it to WAL, which needs the file to itself: two processes opening a new database at once
        // could both run migrations, or one could meet "database is locked" without waiting. A file
        // lock beside the database serializes opening until the file is in WAL mode and migrated.
        let lock = migration_lock(path).await.map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        // One connection, for reads and writes. sqlx hands a released connection back to its pool
        // from a task it spawns (after a ping), so with room for more,
        // a query right after another opened a new connection (≈ 1 M instructions of schema
        // parsing and a thread each): one bill opened three. A query now waits for that hand-back
        // instead, cheaper than a connection; the queries of one process take turns, a few ms at
        // most each, and a read waits for a write transaction of this process to commit.
        // Never reaped: closing the one connection to a local file gains nothing, and without
        // an idle timeout or lifetime the pool runs no maintenance task (vendor/README.md).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        if !migrations_current(&mut *pool.acquire().await?, &MIGRATOR).await {
            MIGRATOR.run(&pool).await?;
        }
        drop(lock);
        Ok(SqliteStore { pool, path: path.display().to_string(), work: crate::work::Work::new() })
    }

    /// The underlying pool, for tests that inspect tables directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A wake-up for this process's idle workers; other processes' writes are found by polling.
    fn work_signal_of_store(&self) -> crate::WorkSignal {
        self.work.subscribe(false)
    }

    /// This process's waiting workers wake.
    fn woke(&self) {
        self.work.wake();
    }

    fn describe_store(&self) -> String {
        format!("sqlite://{}", self.path)
    }

    /// Where reads go: the one connection, between write transactions.
    fn reader(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction on the one connection, holding the write lock from its start.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The claim's transaction: a write transaction like any other.
    async fn begin_claim(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin_write().await
    }

    /// What status needs of every partition of an asset, as one aggregated JSON row: sqlx handed
    /// SQLite rows over one by one from a thread of the connection's own (≈ 5 µs each), which made
    /// reading 10,000 partitions take 55 ms; one row of JSON decodes in a few.
    async fn summaries(&self, asset_key: &str, known_keys_hash: Option<&str>) -> Result<Vec<PartitionSummary>> {
        let json: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(partition_key, current_materialization_id IS NOT NULL, \
                 last_attempt_status, code_version, stale_inputs, CASE WHEN input_keys_hash = $2 THEN NULL ELSE input_keys_hash END) ORDER BY partition_key) \
             FROM asset_partitions WHERE asset_key = $1",
        )
        .bind(asset_key)
        .bind(known_keys_hash)
        .fetch_one(&self.pool)
        .await?;
        // As SummaryRow, with SQLite's 0/1 for the boolean.
        type JsonRow = (String, u8, String, Option<String>, i64, Option<String>);
        let rows: Vec<JsonRow> = serde_json::from_str(&json)
            .map_err(|e| Error::Decode { what: "asset_partitions summary", detail: e.to_string() })?;
        rows.into_iter()
            .map(|(p, m, status, code, stale, keys)| crate::rows::into_summary((p, m != 0, status, code, stale, keys)))
            .collect()
    }
}
