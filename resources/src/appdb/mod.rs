//! The RoboSystems application database: tenants, plans, subscriptions, graphs and the credits
//! ledger. SQLite in embedded mode (seeded with labeled demo data); PostgreSQL in production.
//!
//! Money is `i64` millicredits end to end. Every ledger entry has a UNIQUE idempotency key, so
//! writing the same charge twice revises it instead of adding it again.

//!
//! The methods are written once, in `sql.rs`, and compiled once per backend (`sqlite.rs`,
//! `postgres.rs`), as the lineage store does.

mod postgres;
mod sqlite;

pub use postgres::PgAppDb;
pub use sqlite::SqliteAppDb;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

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

#[cfg(test)]
mod tests;
