//! [`QboTokens`] on the app database, written once and compiled per backend like `sql.rs`.
//!
//! The refresh happens inside a write transaction that locks the realm's row (`FOR UPDATE` on
//! PostgreSQL; `BEGIN IMMEDIATE`, the database's write lock, on SQLite): the token endpoint is
//! called while it is held, and the rotated refresh token and the access token are written
//! before it is released. A second worker waiting on the lock then finds a fresh access token
//! and uses it instead of refreshing with a refresh token that was just superseded.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::dialect as db;
use crate::appdb::AppDbError;
use crate::qbo::{QboError, QboTokens, TokenExchange};
use crate::secret::Secret;

/// An access token is used only while it lives at least this much longer.
const MARGIN: Duration = Duration::seconds(60);

#[async_trait]
impl QboTokens for db::Store {
    async fn connect(&self, realm: &str, refresh_token: &Secret, now: DateTime<Utc>) -> Result<(), AppDbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO qbo_realms (realm_id, refresh_token, connected_at) VALUES ($1, $2, $3) \
             ON CONFLICT (realm_id) DO UPDATE SET refresh_token = excluded.refresh_token, \
                 access_token = NULL, access_expires_at = NULL, connected_at = excluded.connected_at",
        )
        .bind(realm)
        .bind(refresh_token.expose())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connected_realms(&self) -> Result<Vec<String>, AppDbError> {
        Ok(sqlx::query_scalar("SELECT realm_id FROM qbo_realms ORDER BY realm_id").fetch_all(&self.pool).await?)
    }

    async fn access_token(
        &self,
        realm: &str,
        stale: Option<&Secret>,
        now: DateTime<Utc>,
        exchange: &dyn TokenExchange,
    ) -> Result<Secret, QboError> {
        let mut tx = self.begin_write().await?;
        let select = format!(
            "SELECT refresh_token, access_token, access_expires_at FROM qbo_realms WHERE realm_id = $1{}",
            db::FOR_UPDATE
        );
        let row: Option<(String, Option<String>, Option<DateTime<Utc>>)> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(realm)
            .fetch_optional(&mut *tx)
            .await
            .map_err(AppDbError::from)?;
        let Some((refresh, access, expires)) = row else {
            return Err(QboError::NotConnected { realm: realm.to_owned() });
        };
        if let (Some(access), Some(expires)) = (access, expires)
            && expires > now + MARGIN
            && stale.is_none_or(|s| s.expose() != access)
        {
            return Ok(Secret::new(access));
        }
        // The lock is held across the call: one refresh per realm at a time.
        let grant = exchange.exchange(realm, &Secret::new(refresh)).await?;
        sqlx::query(
            "UPDATE qbo_realms SET refresh_token = $2, access_token = $3, access_expires_at = $4, refreshed_at = $5 \
             WHERE realm_id = $1",
        )
        .bind(realm)
        .bind(grant.refresh_token.expose())
        .bind(grant.access_token.expose())
        .bind(now + Duration::seconds(grant.expires_in))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(AppDbError::from)?;
        tx.commit().await.map_err(AppDbError::from)?;
        tracing::info!(realm, "QuickBooks access token refreshed; the rotated refresh token is stored");
        Ok(grant.access_token)
    }

    async fn reserve_request_slot(
        &self,
        realm: &str,
        now: DateTime<Utc>,
        gap: Duration,
    ) -> Result<DateTime<Utc>, QboError> {
        let mut tx = self.begin_write().await?;
        let select = format!("SELECT next_request_at FROM qbo_realms WHERE realm_id = $1{}", db::FOR_UPDATE);
        let row: Option<(Option<DateTime<Utc>>,)> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(realm)
            .fetch_optional(&mut *tx)
            .await
            .map_err(AppDbError::from)?;
        let Some((next,)) = row else {
            return Err(QboError::NotConnected { realm: realm.to_owned() });
        };
        let slot = next.map_or(now, |next| next.max(now));
        sqlx::query("UPDATE qbo_realms SET next_request_at = $2 WHERE realm_id = $1")
            .bind(realm)
            .bind(slot + gap)
            .execute(&mut *tx)
            .await
            .map_err(AppDbError::from)?;
        tx.commit().await.map_err(AppDbError::from)?;
        Ok(slot)
    }
}
