//! Fresh stores for tests: a SQLite file in a temp dir, or a new PostgreSQL database.
//!
//! PostgreSQL comes from `ROBO_ASSETS_TEST_PG_URL` (an admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test gets its own database, dropped at
//! the end. Without a server the test is skipped with a printed reason, unless `CI` is set: then
//! it fails, so a skip never looks green.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use crate::{LineageStore, PgStore, SqliteStore};

/// The default admin URL of the test PostgreSQL.
pub(crate) const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub(crate) struct Fixture {
    store: Box<dyn LineageStore>,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(PgConnectOptions, String)>,
}

impl Fixture {
    pub(crate) fn store(&self) -> &dyn LineageStore {
        &*self.store
    }

    /// The SQLite file (SQLite fixtures only).
    pub(crate) fn path(&self) -> std::path::PathBuf {
        self._dir.as_ref().expect("a SQLite fixture").path().join("lineage.db")
    }

    /// A second store on the same database, as another process would open it.
    pub(crate) async fn another_store(&self) -> Box<dyn LineageStore> {
        match &self.pg {
            Some((admin, db)) => Box::new(
                PgStore::connect_with(admin.clone().database(db), format!("postgres test database {db}"))
                    .await
                    .expect("postgres store opens"),
            ),
            None => Box::new(SqliteStore::open(&self.path()).await.expect("sqlite store opens")),
        }
    }

    /// A plain connection to the test's PostgreSQL database (PostgreSQL fixtures only), to read
    /// what the store API does not show.
    pub(crate) async fn pg_connection(&self) -> PgConnection {
        let (admin, db) = self.pg.as_ref().expect("a PostgreSQL fixture");
        PgConnection::connect_with(&admin.clone().database(db)).await.expect("test database connection")
    }

    /// Drops the PostgreSQL database (a panicking test leaves it behind, named `robo_test_*`).
    pub(crate) async fn teardown(self) {
        let Fixture { store, pg, .. } = self;
        drop(store);
        if let Some((admin, db)) = pg {
            let mut conn = PgConnection::connect_with(&admin).await.expect("admin connection");
            conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                .await
                .expect("drop test db");
        }
    }
}

pub(crate) async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.expect("sqlite store opens");
    Fixture { store: Box::new(store), _dir: Some(dir), pg: None }
}

pub(crate) async fn postgres() -> Option<Fixture> {
    let url = std::env::var("ROBO_ASSETS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    let admin: PgConnectOptions = url.parse().expect("ROBO_ASSETS_TEST_PG_URL is a postgres:// URL");
    let mut conn = match PgConnection::connect_with(&admin).await {
        Ok(conn) => conn,
        Err(e) => {
            let shown = crate::redact_url(&url);
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL at {shown} is required when CI is set: {e}");
            }
            eprintln!(
                "skipped: no PostgreSQL at {shown} ({e}); set ROBO_ASSETS_TEST_PG_URL to run the PostgreSQL suite"
            );
            return None;
        }
    };
    // The name is ours (a UUID), so formatting it into DDL is safe; identifiers cannot be bound.
    let db = format!("robo_test_{}", uuid::Uuid::now_v7().simple());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.expect("create test database");
    let store = PgStore::connect_with(admin.clone().database(&db), format!("postgres test database {db}"))
        .await
        .expect("postgres store opens");
    Some(Fixture { store: Box::new(store), _dir: None, pg: Some((admin, db)) })
}
