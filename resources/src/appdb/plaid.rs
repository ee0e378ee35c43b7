//! [`PlaidItems`] for the app database, written once and compiled per backend (`sqlite.rs` and
//! `postgres.rs` include this file beside their `dialect`, as they include `sql.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::dialect as db;
use crate::appdb::AppDbError;
use crate::plaid::{PlaidItems, Secret};

#[async_trait]
impl PlaidItems for db::Store {
    async fn link_plaid_item(
        &self,
        item_id: &str,
        access_token: &Secret,
        now: DateTime<Utc>,
    ) -> Result<bool, AppDbError> {
        let mut tx = self.begin_write().await?;
        let existed: i64 = sqlx::query_scalar("SELECT count(*) FROM plaid_items WHERE item_id = $1")
            .bind(item_id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO plaid_items (item_id, access_token, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (item_id) DO UPDATE SET access_token = excluded.access_token, linked_at = excluded.linked_at",
        )
        .bind(item_id)
        .bind(access_token.expose())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed == 0)
    }

    async fn plaid_access_token(&self, item_id: &str) -> Result<Option<Secret>, AppDbError> {
        let token: Option<String> = sqlx::query_scalar("SELECT access_token FROM plaid_items WHERE item_id = $1")
            .bind(item_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(token.map(Secret::new))
    }

    async fn plaid_item_ids(&self) -> Result<Vec<String>, AppDbError> {
        Ok(sqlx::query_scalar("SELECT item_id FROM plaid_items ORDER BY item_id").fetch_all(&self.pool).await?)
    }
}
