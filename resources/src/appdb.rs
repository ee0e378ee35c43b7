//! The RoboSystems application database: tenants, plans, subscriptions, graphs and the credits
//! ledger. SQLite in embedded mode (seeded with labeled demo data); PostgreSQL in production.
//!
//! Money is `i64` millicredits end to end. Every ledger entry has a UNIQUE idempotency key, so
//! writing the same charge twice revises it instead of adding it again.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/app/sqlite");

/// Why an app database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AppDbError {
    /// The database failed.
    #[error("app database query failed")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("app database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A graph whose storage is billed.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ActiveGraph {
    /// The graph.
    pub graph_id: String,
    /// Its tenant.
    pub tenant_id: String,
}

/// The storage terms of a tenant's active subscription.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TenantPlan {
    /// The tenant.
    pub tenant_id: String,
    /// The active subscription.
    pub subscription_id: String,
    /// The plan.
    pub plan_id: String,
    /// Credits the plan allocates each month.
    pub monthly_millicredits: i64,
    /// Storage included in the plan, in GB (10^9 bytes).
    pub included_storage_gb: i64,
    /// Price of storage above that, per GB-day.
    pub storage_millicredits_per_gb_day: i64,
}

/// A ledger entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The tenant.
    pub tenant_id: String,
    /// Unique key: writing it again revises, never duplicates.
    pub idempotency_key: String,
    /// `storage_charge`, `allocation`, `overage`.
    pub kind: String,
    /// The partition the entry belongs to.
    pub period: String,
    /// Negative for a debit.
    pub amount_millicredits: i64,
    /// For people.
    pub description: String,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The plan.
    pub plan_id: String,
    /// `provisioning`, `active` or `canceled`.
    pub status: String,
}

/// Findings of the ledger health checks (empty = healthy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerHealth {
    /// (tenant, stored balance, ledger sum) where they differ.
    pub balance_mismatches: Vec<(String, i64, i64)>,
    /// (tenant, kind, period, entries) where one kind has several entries for one period.
    pub duplicate_entries: Vec<(String, String, String, i64)>,
    /// (tenant, subscription) active without an allocation entry for the month.
    pub unallocated: Vec<(String, String)>,
    /// Tenants looked at.
    pub tenants: i64,
}

/// A stored ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LedgerRow {
    /// The tenant.
    pub tenant_id: String,
    /// Its key.
    pub idempotency_key: String,
    /// Its kind.
    pub kind: String,
    /// Its period.
    pub period: String,
    /// The amount.
    pub amount_millicredits: i64,
    /// How often it was revised (1 = never).
    pub revision: i64,
}

/// What a ledger write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerWrite {
    /// New entries.
    pub inserted: u64,
    /// Entries whose amount changed.
    pub revised: u64,
    /// Entries written again with the same amount.
    pub unchanged: u64,
    /// Entries of the period no longer charged, set to zero.
    pub zeroed: u64,
}

/// The app database, as the assets need it.
#[async_trait]
pub trait AppDb: Send + Sync + 'static {
    /// Where it lives, with secrets redacted.
    fn describe(&self) -> String;
    /// Seeds the labeled demo data set if the database has no tenants; returns whether it did.
    async fn seed_demo(&self, now: DateTime<Utc>) -> Result<bool, AppDbError>;
    /// Graphs whose storage is billed, ordered by id.
    async fn active_graphs(&self) -> Result<Vec<ActiveGraph>, AppDbError>;
    /// Storage terms of every tenant with an active subscription, ordered by tenant.
    async fn tenant_plans(&self) -> Result<Vec<TenantPlan>, AppDbError>;
    /// Makes `entries` the complete set of `kind` entries for `period`, in one transaction:
    /// upserts each by idempotency key and zeroes entries of that kind and period not given.
    async fn replace_period_entries(
        &self,
        kind: &str,
        period: &str,
        entries: &[LedgerEntry],
        now: DateTime<Utc>,
    ) -> Result<LedgerWrite, AppDbError>;
    /// What `credit_health` checks, for `month` (`2025-12`): stored balances that differ from
    /// their ledger's sum, two entries of one kind for one tenant and period, and active
    /// subscriptions without their allocation for the month.
    async fn ledger_health(&self, month: &str) -> Result<LedgerHealth, AppDbError>;
    /// Subscriptions in `status` (`provisioning`, `active`, `canceled`), ordered by id.
    async fn subscriptions(&self, status: &str) -> Result<Vec<Subscription>, AppDbError>;
    /// One subscription.
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, AppDbError>;
    /// Records `graph_id` for a provisioning subscription and activates it, in one transaction;
    /// returns false (changing nothing) when it is not `provisioning`.
    async fn activate_subscription(&self, id: &str, graph_id: &str, now: DateTime<Utc>) -> Result<bool, AppDbError>;
    /// Deletes the API keys that expired before `before`; returns their ids, sorted.
    async fn delete_expired_api_keys(&self, before: DateTime<Utc>) -> Result<Vec<String>, AppDbError>;
    /// Ledger entries, optionally of one tenant, ordered by tenant and key.
    async fn ledger(&self, tenant_id: Option<&str>) -> Result<Vec<LedgerRow>, AppDbError>;
    /// A tenant's balance: the sum of its ledger entries.
    async fn balance(&self, tenant_id: &str) -> Result<i64, AppDbError>;
}

/// The embedded app database on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteAppDb {
    pool: SqlitePool,
    shown: String,
}

/// The production app database on PostgreSQL (`DATABASE_URL=postgres://…`).
#[derive(Debug, Clone)]
pub struct PgAppDb {
    pool: sqlx::PgPool,
    shown: String,
}

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/app/postgres");

impl PgAppDb {
    /// Connects to `url` (a `postgres://` URL) and applies pending migrations; `shown` describes
    /// it without secrets.
    pub async fn connect(url: &str, shown: String) -> Result<PgAppDb, AppDbError> {
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        PgAppDb::connect_with(options, shown).await
    }

    /// Connects to `options` and applies pending migrations; `shown` describes it without secrets.
    pub async fn connect_with(options: sqlx::postgres::PgConnectOptions, shown: String) -> Result<PgAppDb, AppDbError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        PG_MIGRATOR.run(&pool).await?;
        Ok(PgAppDb { pool, shown })
    }

    /// The pool, for tests.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

/// A demo tenant: (tenant id, name, plan id, [(graph id, bytes)]).
pub type DemoTenant = (&'static str, &'static str, &'static str, &'static [(&'static str, u64)]);

/// The labeled demo data set of the embedded mode.
pub const DEMO_TENANTS: &[DemoTenant] = &[
    ("acme", "Acme Corp (demo)", "starter", &[("acme-main", 14_500_000_000), ("acme-staging", 2_000_000_000)]),
    ("globex", "Globex (demo)", "pro", &[("globex-prod", 250_000_000_000)]),
    ("initech", "Initech (demo)", "starter", &[("initech-ledger", 3_000_000_000)]),
];

/// Demo tenants whose subscription waits for its graph: (tenant id, name, plan id).
pub const DEMO_PROVISIONING: &[(&str, &str, &str)] = &[("hooli", "Hooli (demo)", "starter")];

/// Demo API keys: (id, tenant, name, expiry).
pub const DEMO_API_KEYS: &[(&str, &str, &str, Option<&str>)] = &[
    ("key-acme-ci", "acme", "CI (demo)", Some("2025-12-01T00:00:00Z")),
    ("key-acme-prod", "acme", "production (demo)", Some("2027-01-01T00:00:00Z")),
    ("key-globex-old", "globex", "old laptop (demo)", Some("2025-12-15T06:30:00Z")),
    ("key-initech", "initech", "forever (demo)", None),
];

/// Demo plans: (id, name, monthly millicredits, included GB, millicredits per GB-day).
pub const DEMO_PLANS: &[(&str, &str, i64, i64, i64)] =
    &[("starter", "Starter", 10_000_000, 10, 1_500), ("pro", "Pro", 100_000_000, 100, 1_000)];

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
        MIGRATOR.run(&pool).await?;
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
}

/// The [`AppDb`] methods, written once for both backends: `$N` placeholders (both drivers
/// accept them), the backend's write-transaction statement and connection type.
macro_rules! app_db_methods {
    ($db:ty, $conn:ty, $begin:literal) => {
        impl $db {
    async fn revise(
        tx: &mut $conn,
        id: i64,
        old_amount: i64,
        old_revision: i64,
        new_amount: i64,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AppDbError> {
        sqlx::query("INSERT INTO credit_ledger_revisions (ledger_id, revision, amount_millicredits, replaced_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(old_revision)
            .bind(old_amount)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE credit_ledger SET amount_millicredits = $2, description = $3, revision = revision + 1, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(new_amount)
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE tenants SET balance_millicredits = balance_millicredits + $2 \
             WHERE id = (SELECT tenant_id FROM credit_ledger WHERE id = $1)",
        )
        .bind(id)
        .bind(new_amount - old_amount)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
        }

        #[async_trait]
        impl AppDb for $db {
    /// Seeds the demo data set if the database has no tenants; returns whether it did.
    async fn seed_demo(&self, now: DateTime<Utc>) -> Result<bool, AppDbError> {
        let mut tx = self.pool.begin_with($begin).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut *tx).await?;
        if n > 0 {
            return Ok(false);
        }
        for (id, name, monthly, included, rate) in DEMO_PLANS {
            sqlx::query(
                "INSERT INTO plans (id, name, monthly_millicredits, included_storage_gb, storage_millicredits_per_gb_day) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(name)
            .bind(monthly)
            .bind(included)
            .bind(rate)
            .execute(&mut *tx)
            .await?;
        }
        // Active tenants with their graphs, then those whose subscription waits for its graph.
        let tenants = DEMO_TENANTS
            .iter()
            .map(|(t, n, p, g)| (*t, *n, *p, "active", *g))
            .chain(DEMO_PROVISIONING.iter().map(|(t, n, p)| (*t, *n, *p, "provisioning", &[][..])));
        for (tenant, name, plan, status, graphs) in tenants {
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(tenant)
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let subscription = format!("sub-{tenant}");
            sqlx::query("INSERT INTO subscriptions (id, tenant_id, plan_id, status, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&subscription)
                .bind(tenant)
                .bind(plan)
                .bind(status)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            for (graph, _) in graphs.iter() {
                sqlx::query("INSERT INTO graphs (id, tenant_id, subscription_id, status, created_at) VALUES ($1, $2, $3, 'active', $4)")
                    .bind(graph)
                    .bind(tenant)
                    .bind(&subscription)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (id, tenant, name, expires_at) in DEMO_API_KEYS {
            let expires_at = expires_at.map(|t| t.parse::<DateTime<Utc>>().expect("demo expiry is RFC 3339"));
            sqlx::query("INSERT INTO api_keys (id, tenant_id, name, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(tenant)
                .bind(name)
                .bind(expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn ledger_health(&self, month: &str) -> Result<LedgerHealth, AppDbError> {
        let balance_mismatches: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT t.id, t.balance_millicredits, CAST(coalesce(sum(l.amount_millicredits), 0) AS BIGINT) \
             FROM tenants t LEFT JOIN credit_ledger l ON l.tenant_id = t.id \
             GROUP BY t.id, t.balance_millicredits \
             HAVING t.balance_millicredits <> CAST(coalesce(sum(l.amount_millicredits), 0) AS BIGINT) ORDER BY t.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let duplicate_entries: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT tenant_id, kind, period, count(*) FROM credit_ledger \
             GROUP BY tenant_id, kind, period HAVING count(*) > 1 ORDER BY tenant_id, kind, period",
        )
        .fetch_all(&self.pool)
        .await?;
        let unallocated: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.tenant_id, s.id FROM subscriptions s WHERE s.status = 'active' AND NOT EXISTS ( \
                 SELECT 1 FROM credit_ledger l WHERE l.tenant_id = s.tenant_id AND l.kind = 'allocation' AND l.period = $1) \
             ORDER BY s.tenant_id, s.id",
        )
        .bind(month)
        .fetch_all(&self.pool)
        .await?;
        let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&self.pool).await?;
        Ok(LedgerHealth { balance_mismatches, duplicate_entries, unallocated, tenants })
    }

    async fn subscriptions(&self, status: &str) -> Result<Vec<Subscription>, AppDbError> {
        Ok(sqlx::query_as("SELECT id, tenant_id, plan_id, status FROM subscriptions WHERE status = $1 ORDER BY id")
            .bind(status)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, AppDbError> {
        Ok(sqlx::query_as("SELECT id, tenant_id, plan_id, status FROM subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn activate_subscription(&self, id: &str, graph_id: &str, now: DateTime<Utc>) -> Result<bool, AppDbError> {
        let mut tx = self.pool.begin_with($begin).await?;
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE subscriptions SET status = 'active' WHERE id = $1 AND status = 'provisioning' RETURNING tenant_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant) = tenant else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO graphs (id, tenant_id, subscription_id, status, created_at) VALUES ($1, $2, $3, 'active', $4) \
             ON CONFLICT (id) DO UPDATE SET status = 'active'",
        )
        .bind(graph_id)
        .bind(&tenant)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_expired_api_keys(&self, before: DateTime<Utc>) -> Result<Vec<String>, AppDbError> {
        let mut tx = self.pool.begin_with($begin).await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "DELETE FROM api_keys WHERE expires_at IS NOT NULL AND expires_at < $1 RETURNING id",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut ids = ids;
        ids.sort();
        Ok(ids)
    }
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn active_graphs(&self) -> Result<Vec<ActiveGraph>, AppDbError> {
        Ok(sqlx::query_as(
            "SELECT g.id AS graph_id, g.tenant_id FROM graphs g \
             WHERE g.status = 'active' ORDER BY g.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn tenant_plans(&self) -> Result<Vec<TenantPlan>, AppDbError> {
        Ok(sqlx::query_as(
            "SELECT s.tenant_id, s.id AS subscription_id, p.id AS plan_id, p.monthly_millicredits, \
                 p.included_storage_gb, p.storage_millicredits_per_gb_day \
             FROM subscriptions s JOIN plans p ON p.id = s.plan_id \
             WHERE s.status = 'active' ORDER BY s.tenant_id, s.created_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn replace_period_entries(
        &self,
        kind: &str,
        period: &str,
        entries: &[LedgerEntry],
        now: DateTime<Utc>,
    ) -> Result<LedgerWrite, AppDbError> {
        let mut tx = self.pool.begin_with($begin).await?;
        let mut out = LedgerWrite::default();
        let mut keep = Vec::with_capacity(entries.len());
        for e in entries {
            keep.push(e.idempotency_key.clone());
            let existing: Option<(i64, i64, i64)> = sqlx::query_as(
                "SELECT id, amount_millicredits, revision FROM credit_ledger WHERE idempotency_key = $1",
            )
            .bind(&e.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                None => {
                    sqlx::query(
                        "INSERT INTO credit_ledger (tenant_id, idempotency_key, kind, period, amount_millicredits, \
                             description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    )
                    .bind(&e.tenant_id)
                    .bind(&e.idempotency_key)
                    .bind(&e.kind)
                    .bind(&e.period)
                    .bind(e.amount_millicredits)
                    .bind(&e.description)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE tenants SET balance_millicredits = balance_millicredits + $2 WHERE id = $1")
                        .bind(&e.tenant_id)
                        .bind(e.amount_millicredits)
                        .execute(&mut *tx)
                        .await?;
                    out.inserted += 1;
                }
                Some((_, amount, _)) if amount == e.amount_millicredits => out.unchanged += 1,
                Some((id, amount, revision)) => {
                    Self::revise(&mut tx, id, amount, revision, e.amount_millicredits, &e.description, now).await?;
                    out.revised += 1;
                }
            }
        }
        let others: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT id, idempotency_key, amount_millicredits, revision FROM credit_ledger \
             WHERE kind = $1 AND period = $2 AND amount_millicredits <> 0",
        )
        .bind(kind)
        .bind(period)
        .fetch_all(&mut *tx)
        .await?;
        for (id, key, amount, revision) in others {
            if !keep.contains(&key) {
                Self::revise(&mut tx, id, amount, revision, 0, "no longer charged", now).await?;
                out.zeroed += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn ledger(&self, tenant_id: Option<&str>) -> Result<Vec<LedgerRow>, AppDbError> {
        Ok(sqlx::query_as(
            "SELECT tenant_id, idempotency_key, kind, period, amount_millicredits, revision FROM credit_ledger \
             WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id, idempotency_key",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn balance(&self, tenant_id: &str) -> Result<i64, AppDbError> {
        Ok(sqlx::query_scalar("SELECT CAST(coalesce(sum(amount_millicredits), 0) AS BIGINT) FROM credit_ledger WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&self.pool)
            .await?)
    }
        }
    };
}

app_db_methods!(SqliteAppDb, sqlx::SqliteConnection, "BEGIN IMMEDIATE");
app_db_methods!(PgAppDb, sqlx::PgConnection, "BEGIN");

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, amount: i64) -> LedgerEntry {
        LedgerEntry {
            tenant_id: tenant.into(),
            idempotency_key: format!("storage_bill:{tenant}:2025-12-15"),
            kind: "storage_charge".into(),
            period: "2025-12-15".into(),
            amount_millicredits: amount,
            description: "storage".into(),
        }
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let versions =
            |m: &sqlx::migrate::Migrator| m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>();
        assert_eq!(versions(&MIGRATOR), versions(&PG_MIGRATOR));
        assert!(MIGRATOR.iter().next().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_first_opens_at_once_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let opens: Vec<_> = (0..6).map(|_| tokio::spawn(SqliteAppDb::open_owned(path.clone()))).collect();
        for open in opens {
            open.await.unwrap().expect("every concurrent open succeeds");
        }
    }

    #[tokio::test]
    async fn rewriting_a_period_revises_instead_of_double_charging_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap();
        rewriting_a_period_revises_instead_of_double_charging(&db).await;
        let revisions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM credit_ledger_revisions").fetch_one(db.pool()).await.unwrap();
        assert_eq!(revisions, 2);
    }

    /// The same on a fresh PostgreSQL database (`ROBO_ASSETS_TEST_PG_URL`, as the lineage suite:
    /// skipped without a server unless `CI` is set).
    #[tokio::test]
    async fn rewriting_a_period_revises_instead_of_double_charging_on_postgres() {
        use sqlx::{Connection, Executor};
        let url = std::env::var("ROBO_ASSETS_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let mut conn = match sqlx::PgConnection::connect_with(&admin).await {
            Ok(conn) => conn,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: no PostgreSQL ({e}); set ROBO_ASSETS_TEST_PG_URL");
                return;
            }
            Err(e) => panic!("PostgreSQL is required when CI is set: {e}"),
        };
        let name = format!("robo_test_app_{:08x}{:08x}", fastrand::u32(..), fastrand::u32(..));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        let db = PgAppDb::connect_with(admin.clone().database(&name), name.clone()).await.unwrap();
        rewriting_a_period_revises_instead_of_double_charging(&db).await;
        let revisions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM credit_ledger_revisions").fetch_one(db.pool()).await.unwrap();
        assert_eq!(revisions, 2);
        db.pool().close().await;
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.unwrap();
    }

    async fn rewriting_a_period_revises_instead_of_double_charging(db: &dyn AppDb) {
        let now = Utc::now();
        assert!(db.seed_demo(now).await.unwrap());
        assert!(!db.seed_demo(now).await.unwrap(), "seeding twice is a no-op");
        assert_eq!(db.tenant_plans().await.unwrap().len(), 3);
        assert_eq!(db.active_graphs().await.unwrap().len(), 4);

        let w = db
            .replace_period_entries(
                "storage_charge",
                "2025-12-15",
                &[entry("acme", -9_750), entry("globex", -150_000)],
                now,
            )
            .await
            .unwrap();
        assert_eq!(w, LedgerWrite { inserted: 2, ..LedgerWrite::default() });
        let w = db
            .replace_period_entries(
                "storage_charge",
                "2025-12-15",
                &[entry("acme", -9_750), entry("globex", -150_000)],
                now,
            )
            .await
            .unwrap();
        assert_eq!(w, LedgerWrite { unchanged: 2, ..LedgerWrite::default() });
        assert_eq!(db.balance("acme").await.unwrap(), -9_750);

        // globex's graph was deleted: its charge for the day goes to zero, acme's is revised.
        let w =
            db.replace_period_entries("storage_charge", "2025-12-15", &[entry("acme", -12_000)], now).await.unwrap();
        assert_eq!(w, LedgerWrite { revised: 1, zeroed: 1, ..LedgerWrite::default() });
        assert_eq!(db.balance("acme").await.unwrap(), -12_000);
        assert_eq!(db.balance("globex").await.unwrap(), 0);
        let ledger = db.ledger(None).await.unwrap();
        assert_eq!(ledger.len(), 2, "entries are never deleted");
        assert_eq!(ledger[0].revision, 2);
    }

    /// One (re-)materialization, as its ledger effect: a bill of `day` charging each tenant
    /// (`None`: not billed that day), or an allocation of `month` with its overages.
    #[derive(Debug, Clone)]
    enum Materialization {
        Bill { day: u8, charges: [Option<i64>; 3] },
        Allocation { month: u8, credits: [i64; 3], overage: [i64; 3] },
    }

    const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

    fn materialization() -> impl proptest::strategy::Strategy<Value = Materialization> {
        use proptest::prelude::*;
        let amount = || prop_oneof![Just(0i64), 1i64..20_000_000];
        prop_oneof![
            (0u8..4, proptest::array::uniform3(proptest::option::of(amount())))
                .prop_map(|(day, charges)| Materialization::Bill { day, charges }),
            (0u8..2, proptest::array::uniform3(amount()), proptest::array::uniform3(amount()))
                .prop_map(|(month, credits, overage)| Materialization::Allocation { month, credits, overage }),
        ]
    }

    /// Writes one materialization's entries exactly as the assets do.
    async fn apply(db: &dyn AppDb, m: &Materialization, now: DateTime<Utc>) {
        match m {
            Materialization::Bill { day, charges } => {
                let period = format!("2025-12-{:02}", day + 1);
                let entries: Vec<LedgerEntry> = TENANTS
                    .iter()
                    .zip(charges)
                    .filter_map(|(t, c)| {
                        c.map(|c| LedgerEntry {
                            tenant_id: (*t).to_owned(),
                            idempotency_key: format!("storage_bill:{t}:{period}"),
                            kind: "storage_charge".into(),
                            period: period.clone(),
                            amount_millicredits: -c,
                            description: "storage".into(),
                        })
                    })
                    .collect();
                db.replace_period_entries("storage_charge", &period, &entries, now).await.unwrap();
            }
            Materialization::Allocation { month, credits, overage } => {
                let (m, previous) = if *month == 0 { ("2026-01", "2025-12") } else { ("2026-02", "2026-01") };
                let allocations: Vec<LedgerEntry> = TENANTS
                    .iter()
                    .zip(credits)
                    .map(|(t, c)| LedgerEntry {
                        tenant_id: (*t).to_owned(),
                        idempotency_key: format!("credit_allocation:{t}:{m}"),
                        kind: "allocation".into(),
                        period: m.to_owned(),
                        amount_millicredits: *c,
                        description: "plan".into(),
                    })
                    .collect();
                let overages: Vec<LedgerEntry> = TENANTS
                    .iter()
                    .zip(overage)
                    .filter(|(_, o)| **o > 0)
                    .map(|(t, o)| LedgerEntry {
                        tenant_id: (*t).to_owned(),
                        idempotency_key: format!("overage:{t}:{previous}"),
                        kind: "overage".into(),
                        period: previous.to_owned(),
                        amount_millicredits: *o,
                        description: "overage".into(),
                    })
                    .collect();
                db.replace_period_entries("allocation", m, &allocations, now).await.unwrap();
                db.replace_period_entries("overage", previous, &overages, now).await.unwrap();
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever the order and repetition of (re-)materializations, each tenant's balance is
        /// the sum of the *latest* effect of each bill and allocation (computed here from the
        /// sequence alone), the stored balance equals the ledger, and the health checks agree.
        #[test]
        fn any_sequence_of_rematerializations_leaves_the_correct_balances(ops in proptest::collection::vec(materialization(), 1..24)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let db = SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap();
                let now = Utc::now();
                db.seed_demo(now).await.unwrap();
                let mut latest_bill: std::collections::BTreeMap<u8, [Option<i64>; 3]> = Default::default();
                let mut latest_allocation: std::collections::BTreeMap<u8, ([i64; 3], [i64; 3])> = Default::default();
                for op in &ops {
                    apply(&db, op, now).await;
                    match op {
                        Materialization::Bill { day, charges } => { latest_bill.insert(*day, *charges); }
                        Materialization::Allocation { month, credits, overage } => { latest_allocation.insert(*month, (*credits, *overage)); }
                    }
                }
                for (i, tenant) in TENANTS.iter().enumerate() {
                    let expected: i64 = latest_bill.values().map(|c| -c[i].unwrap_or(0)).sum::<i64>()
                        + latest_allocation.values().map(|(c, o)| c[i] + o[i]).sum::<i64>();
                    assert_eq!(db.balance(tenant).await.unwrap(), expected, "{tenant} after {ops:?}");
                }
                let health = db.ledger_health("2026-01").await.unwrap();
                assert!(health.balance_mismatches.is_empty(), "{health:?}");
                assert!(health.duplicate_entries.is_empty(), "{health:?}");
            });
        }
    }
}
