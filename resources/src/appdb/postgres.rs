//! The production app database on PostgreSQL (`DATABASE_URL=postgres://…`).

use std::time::Duration;

use super::AppDbError;

/// What the shared SQL (`sql.rs`) needs to know about PostgreSQL.
mod dialect {
    /// A connection (a transaction derefs to one).
    pub(super) type Conn = sqlx::PgConnection;
    /// Locks the selected rows until the transaction ends (SQLite's write transaction already
    /// holds the database's only write lock).
    pub(super) const FOR_UPDATE: &str = " FOR UPDATE";
    /// The store the shared methods are implemented for.
    pub(super) type Store = super::PgAppDb;
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

/// The production app database on PostgreSQL (`DATABASE_URL=postgres://…`).
#[derive(Debug, Clone)]
pub struct PgAppDb {
    pool: sqlx::PgPool,
    shown: String,
}

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/app/postgres");

impl PgAppDb {
    /// Connects to `url` (a `postgres://` URL) and applies pending migrations; `shown` describes
    /// it without secrets.
    pub async fn connect(url: &str, shown: String) -> Result<PgAppDb, AppDbError> {
        let options: sqlx::postgres::PgConnectOptions = lineage::without_unsupported_secrets(url).parse()?;
        PgAppDb::connect_with(options, shown).await
    }

    /// Connects to `options` and applies pending migrations; `shown` describes it without secrets.
    pub async fn connect_with(options: sqlx::postgres::PgConnectOptions, shown: String) -> Result<PgAppDb, AppDbError> {
        // One direct connection first, as the lineage store does: a refused connection or a bad
        // password fails at once with its real cause, instead of being retried by the pool until
        // its acquire timeout and reported as "pool timed out".
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await
        .map_err(|_| AppDbError::Database(sqlx::Error::PoolTimedOut))??;
        let _ = sqlx::Connection::close(probe).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgAppDb { pool, shown })
    }

    /// The pool, for tests.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// A write transaction.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, AppDbError> {
        Ok(self.pool.begin().await?)
    }
}
