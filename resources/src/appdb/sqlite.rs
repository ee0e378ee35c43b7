//! The embedded app database on SQLite (seeded with labeled demo data on first use).

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::AppDbError;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/app/sqlite");

/// What the shared SQL (`sql.rs`) needs to know about SQLite.
mod dialect {
    /// A connection (a transaction derefs to one).
    pub(super) type Conn = sqlx::SqliteConnection;
    /// Locks the selected rows until the transaction ends (SQLite's write transaction already
    /// holds the database's only write lock).
    pub(super) const FOR_UPDATE: &str = "";
    /// The store the shared methods are implemented for.
    pub(super) type Store = super::SqliteAppDb;
}

// The shared SQL is compiled once per backend on purpose: each copy sees its own `dialect`.
#[allow(clippy::duplicate_mod)]
#[path = "qbo.rs"]
mod qbo;
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

// Plaid items (access tokens per item), written once like `sql.rs`.
#[allow(clippy::duplicate_mod)]
#[path = "plaid.rs"]
mod plaid;

/// The embedded app database on SQLite.
///
/// Two connections, as the lineage store once had: reads on one, write transactions on the
/// other, connected on the first write. Writes of this process queue in tokio rather than in
/// SQLite's busy handler, and reads never wait behind a write: QuickBooks' token refresh holds
/// its write transaction across an HTTP exchange (`BEGIN IMMEDIATE`, the database's write lock).
/// One connection for both was tried and not kept: a write waiting for that lock held the
/// only connection, and every read of the process waited behind it (BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct SqliteAppDb {
    pool: SqlitePool,
    writer: SqlitePool,
    shown: String,
}

impl SqliteAppDb {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<SqliteAppDb, AppDbError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| AppDbError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Statements run on the thread that awaits them, as the lineage store's do. A
            // statement that meets another process's lock (the token refresh's, say) waits on a
            // blocking thread (vendor/README.md).
            .calling_thread(true)
            // A checkpoint once the WAL holds 250 pages, as the lineage store's: every process's
            // first statement reads the whole WAL back to rebuild its index, and a bill against an
            // app database with a 486-page WAL took 0.76 ms longer than against a 66-page one
            // (BENCHMARKS.md). Only committed pages are copied: durability is unchanged.
            .pragma("wal_autocheckpoint", "250");
        // sqlx takes no lock for SQLite migrations, and the first connection switches a new file to
        // WAL, which needs it to itself: serialize concurrent first opens (several workers starting
        // at once) with a file lock beside the database, held until the pool is connected.
        let lock = lineage::migration_lock(path).await.map_err(|e| AppDbError::Database(sqlx::Error::Io(e)))?;
        // One connection each (with room for more, sqlx's spawned hand-back of a released
        // connection made a query right after another open one more).
        // Never reaped: no maintenance task (vendor/README.md).
        let one = || {
            SqlitePoolOptions::new().max_connections(1).test_before_acquire(false).idle_timeout(None).max_lifetime(None)
        };
        let writer = one().connect_lazy_with(options.clone());
        let pool = one().connect_with(options).await?;
        if !lineage::migrations_current(&mut *pool.acquire().await?, &MIGRATOR).await {
            MIGRATOR.run(&writer).await?;
        }
        drop(lock);
        Ok(SqliteAppDb { pool, writer, shown: format!("sqlite://{}", path.display()) })
    }

    /// [`SqliteAppDb::open`] for an owned path (for spawning).
    pub async fn open_owned(path: std::path::PathBuf) -> Result<SqliteAppDb, AppDbError> {
        SqliteAppDb::open(&path).await
    }

    /// The pool, for tests and seeding.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction on the writer connection, holding the write lock from its start.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, AppDbError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}
