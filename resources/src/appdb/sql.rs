//! The [`AppDb`] methods, written once in plain Rust and compiled once per backend: `sqlite.rs`
//! and `postgres.rs` include this file beside a `dialect` module naming the backend's types.
//! Placeholders are `$N`, which both drivers accept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::dialect as db;
use crate::appdb::*;

impl db::Store {
    /// Replaces a ledger entry's amount, keeping the old one as a revision.
    async fn revise(
        tx: &mut db::Conn,
        id: i64,
        old_amount: i64,
        old_revision: i64,
        new_amount: i64,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AppDbError> {
        sqlx::query(
            "INSERT INTO credit_ledger_revisions (ledger_id, revision, amount_millicredits, replaced_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(old_revision)
        .bind(old_amount)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE credit_ledger SET amount_millicredits = $2, description = $3, revision = revision + 1, \
                 updated_at = $4 WHERE id = $1",
        )
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
impl AppDb for db::Store {
    /// Seeds the demo data set if the database has no tenants; returns whether it did.
    async fn seed_demo(&self, now: DateTime<Utc>) -> Result<bool, AppDbError> {
        // Every open but the first finds tenants: a read, without taking the write lock.
        let seeded: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants)").fetch_one(&self.pool).await?;
        if seeded {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut *tx).await?;
        if n > 0 {
            return Ok(false);
        }
        for (id, name, monthly, included, rate) in DEMO_PLANS {
            sqlx::query(
                "INSERT INTO plans (id, name, monthly_millicredits, included_storage_gb, \
                     storage_millicredits_per_gb_day) \
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
            sqlx::query(
                "INSERT INTO subscriptions (id, tenant_id, plan_id, status, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&subscription)
            .bind(tenant)
            .bind(plan)
            .bind(status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for (graph, _) in graphs {
                sqlx::query(
                    "INSERT INTO graphs (id, tenant_id, subscription_id, status, created_at) \
                     VALUES ($1, $2, $3, 'active', $4)",
                )
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
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
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
                 SELECT 1 FROM credit_ledger l WHERE l.tenant_id = s.tenant_id AND l.kind = 'allocation' \
                     AND l.period = $1) \
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
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> =
            sqlx::query_scalar("DELETE FROM api_keys WHERE expires_at IS NOT NULL AND expires_at < $1 RETURNING id")
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
        let mut tx = self.begin_write().await?;
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
        engine::failpoint::hit("appdb.ledger_written");
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
        Ok(sqlx::query_scalar(
            "SELECT CAST(coalesce(sum(amount_millicredits), 0) AS BIGINT) FROM credit_ledger WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?)
    }
}
