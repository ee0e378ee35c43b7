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
#[derive(Debug, Clone)]
pub struct SqliteAppDb {
    pool: SqlitePool,
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
            .foreign_keys(true);
        // sqlx takes no lock for SQLite migrations, and the first connection switches a new file to
        // WAL, which needs it to itself: serialize concurrent first opens (several workers starting
        // at once) with a file lock beside the database, held until the pool is connected.
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".migrate-lock");
        let io = |e| AppDbError::Database(sqlx::Error::Io(e));
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path).map_err(io)?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .expect("lock task does not panic")
            .map_err(io)?;
        let pool = SqlitePoolOptions::new().max_connections(4).test_before_acquire(false).connect_with(options).await?;
        if !lineage::migrations_current(&mut *pool.acquire().await?, &MIGRATOR).await {
            MIGRATOR.run(&pool).await?;
        }
        drop(lock);
        Ok(SqliteAppDb { pool, shown: format!("sqlite://{}", path.display()) })
    }

    /// [`SqliteAppDb::open`] for an owned path (for spawning).
    pub async fn open_owned(path: std::path::PathBuf) -> Result<SqliteAppDb, AppDbError> {
        SqliteAppDb::open(&path).await
    }

    /// The pool, for tests and seeding.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction, holding the write lock from its start.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, AppDbError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}
