//! Plaid `/transactions/sync`: the live client (`PLAID_API_URL`, `PLAID_CLIENT_ID`,
//! `PLAID_SECRET`, an access token per item in the app database) and the labeled dev source
//! (fixture pages shipped in `plaid/dev_pages.json`), behind one trait, [`PlaidSource`].
//!
//! A sync ([`PlaidSource::sync`]) starts from a cursor (`""` the first time) and pages with
//! `count` 500 until `has_more` is false, returning every change in order and the cursor to
//! store. Outcomes, as the assets see them:
//! - `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`: the pages read so far are thrown away and the
//!   loop restarts from the cursor it began with (Plaid's rule; retrying only the failed page
//!   makes the error recur), up to [`PlaidConfig::max_restarts`] times.
//! - HTTP 429 (`TRANSACTIONS_SYNC_LIMIT`), 5xx, timeouts, refused connections: the same page is
//!   retried with exponential backoff and jitter (`backon`).
//! - `next_cursor: ""` (transactions not ready yet): asked again after a pause, a few times; then
//!   [`PlaidError::NotReady`], a failed step that keeps the old cursor.
//! - `ITEM_LOGIN_REQUIRED`: [`PlaidError::LoginRequired`] at once, naming the item and saying to
//!   re-link it. Any other Plaid error: [`PlaidError::Refused`] at once, with its code.
//!
//! Secrets (the client secret, access tokens) are [`Secret`]s: sent in the JSON body (never in a
//! URL or a header), shown as `[redacted]`, never in an error or a log line. Amounts are parsed
//! from the JSON number's text into an exact decimal ([`parse_amount`]), never through `f64`.
//!
//! This module knows nothing of assets or the lineage store: `assets` turns a [`SyncBatch`] into
//! rows, and [`ChangeLog`] keeps each sync's changes so the current set can be folded.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::ExponentialBuilder;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::appdb::AppDbError;
use crate::graph_api::describe_reqwest;
use crate::object_store::{ObjectStore, ObjectStoreError};

#[cfg(any(test, feature = "plaid-fixture"))]
pub mod fixture;

/// Decimal scale of amounts: 8 places, so crypto amounts (satoshis) fit; USD has 2.
pub const AMOUNT_SCALE: i8 = 8;
/// Decimal precision of amounts: 28 digits, 20 before the point.
pub const AMOUNT_PRECISION: u8 = 28;
/// Plaid's production server, the default of `PLAID_API_URL`.
pub const PRODUCTION_URL: &str = "https://production.plaid.com";
/// Transactions per page: Plaid's maximum, which makes mutations during pagination rarer.
pub const PAGE_SIZE: u32 = 500;

pub use crate::secret::Secret;

/// Access tokens per Plaid item, stored in the app database (`plaid_items`).
#[async_trait]
pub trait PlaidItems: Send + Sync + 'static {
    /// Stores (or replaces, after a re-link) the access token of `item_id`; returns whether the
    /// item is new.
    async fn link_plaid_item(
        &self,
        item_id: &str,
        access_token: &Secret,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, AppDbError>;
    /// The access token of `item_id`, if it is linked.
    async fn plaid_access_token(&self, item_id: &str) -> Result<Option<Secret>, AppDbError>;
    /// Every linked item, sorted.
    async fn plaid_item_ids(&self) -> Result<Vec<String>, AppDbError>;
}

/// What one change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new transaction.
    Added,
    /// A transaction changed; the row is its new state.
    Modified,
    /// A transaction is gone (only its ids are known).
    Removed,
}

impl ChangeKind {
    /// `added`, `modified` or `removed`: its name in the `change` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Removed => "removed",
        }
    }
}

/// One change of a sync, in Plaid's order. A removed transaction has only its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// added, modified or removed.
    pub kind: ChangeKind,
    /// Plaid's transaction id (case-sensitive).
    pub transaction_id: String,
    /// Its account (a removal may omit it).
    pub account_id: Option<String>,
    /// Positive = money out of the account, negative = money in; scaled by 10^[`AMOUNT_SCALE`].
    pub amount: Option<i128>,
    /// ISO 4217 currency, when the amount is in one.
    pub iso_currency_code: Option<String>,
    /// Posted date (transaction date while pending).
    pub date: Option<NaiveDate>,
    /// When it was authorized, if known.
    pub authorized_date: Option<NaiveDate>,
    /// The (legacy) description.
    pub name: Option<String>,
    /// The merchant, if known.
    pub merchant_name: Option<String>,
    /// Whether it is still pending.
    pub pending: Option<bool>,
    /// `personal_finance_category.primary`.
    pub category_primary: Option<String>,
    /// `personal_finance_category.detailed`.
    pub category_detailed: Option<String>,
}

/// What a whole sync (every page until `has_more` is false) returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncBatch {
    /// Every change, in order (per page: added, modified, removed).
    pub changes: Vec<Change>,
    /// The cursor to start the next sync from (store it with these changes).
    pub next_cursor: String,
    /// Pages read in the pagination that completed.
    pub pages: u32,
    /// Times the pagination restarted from its first cursor after a mutation.
    pub restarts: u32,
}

/// Why a sync failed. No variant carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum PlaidError {
    /// The item has no access token in the app database.
    #[error(
        "plaid item {item} is not linked: run `robo-assets plaid link {item} --access-token …` (or with PLAID_ACCESS_TOKEN set)"
    )]
    NotLinked {
        /// The item.
        item: String,
    },
    /// `ITEM_LOGIN_REQUIRED`: the user must re-authenticate at the bank; retrying cannot help.
    #[error(
        "plaid item {item} needs to be re-linked: its bank login changed (ITEM_LOGIN_REQUIRED); the user must re-link \
         it through Plaid Link's update mode, then run `robo-assets plaid link {item} --access-token …`"
    )]
    LoginRequired {
        /// The item.
        item: String,
    },
    /// `next_cursor` stayed `""`: Plaid has not prepared the item's transactions yet.
    #[error(
        "plaid item {item}: transactions are not ready yet (next_cursor was empty {attempts} times); try again later"
    )]
    NotReady {
        /// The item.
        item: String,
        /// Times asked.
        attempts: u32,
    },
    /// Every restart after `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION` met another mutation.
    #[error("plaid item {item}: transactions kept changing during pagination ({restarts} restarts); try again later")]
    KeptMutating {
        /// The item.
        item: String,
        /// Restarts made.
        restarts: u32,
    },
    /// Still failing after every attempt (429, 5xx, timeouts, connection errors).
    #[error("Plaid unavailable for item {item}: POST /transactions/sync failed {attempts} times; last: {last}")]
    Unavailable {
        /// The item.
        item: String,
        /// Attempts made.
        attempts: usize,
        /// The last cause.
        last: String,
    },
    /// Another Plaid error: the request is wrong (bad keys, a revoked token, …); not retried.
    #[error("Plaid refused /transactions/sync for item {item}: HTTP {status} {error_type} {error_code}: {message}")]
    Refused {
        /// The item.
        item: String,
        /// The HTTP status.
        status: u16,
        /// Plaid's `error_type`.
        error_type: String,
        /// Plaid's `error_code`.
        error_code: String,
        /// Plaid's `error_message` (for people).
        message: String,
    },
    /// The body is not Plaid's JSON, or an amount or date cannot be stored exactly.
    #[error("Plaid returned malformed data for item {item}: {detail}")]
    Malformed {
        /// The item.
        item: String,
        /// What was wrong.
        detail: String,
    },
    /// The access token could not be read.
    #[error("reading the access token of plaid item {item}")]
    AppDb {
        /// The item.
        item: String,
        /// The cause.
        #[source]
        source: AppDbError,
    },
    /// `PLAID_API_URL` is unusable or the client could not be built.
    #[error("PLAID_API_URL {url} is not usable: {detail}")]
    Config {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// Where transactions come from: Plaid, or the labeled dev source.
#[async_trait]
pub trait PlaidSource: Send + Sync + 'static {
    /// Every change of `item_id` since `cursor` (`""`: its whole history), paging until
    /// `has_more` is false, and the cursor to store with them.
    async fn sync(&self, item_id: &str, cursor: &str) -> Result<SyncBatch, PlaidError>;
    /// `live` or `dev`: the `source` metadata of what it produced.
    fn source(&self) -> &'static str;
    /// Where it is, for people (no secrets).
    fn describe(&self) -> String;
}

// ---------------------------------------------------------------------------------------------
// Wire format.

#[derive(Deserialize)]
struct SyncResponse {
    #[serde(default)]
    added: Vec<WireTransaction>,
    #[serde(default)]
    modified: Vec<WireTransaction>,
    #[serde(default)]
    removed: Vec<WireRemoved>,
    next_cursor: String,
    has_more: bool,
}

#[derive(Deserialize)]
struct WireTransaction {
    transaction_id: String,
    account_id: String,
    amount: Box<RawValue>,
    iso_currency_code: Option<String>,
    date: String,
    authorized_date: Option<String>,
    name: Option<String>,
    merchant_name: Option<String>,
    pending: bool,
    personal_finance_category: Option<WireCategory>,
}

#[derive(Deserialize)]
struct WireCategory {
    primary: Option<String>,
    detailed: Option<String>,
}

#[derive(Deserialize)]
struct WireRemoved {
    transaction_id: String,
    account_id: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    error_type: String,
    error_code: String,
    #[serde(default)]
    error_message: String,
}

/// One page, parsed.
struct Page {
    changes: Vec<Change>,
    next_cursor: String,
    has_more: bool,
}

fn parse_date(text: &str, field: &str, tx: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("transaction {tx}: {field} {text:?} is not YYYY-MM-DD"))
}

fn parse_page(body: &[u8]) -> Result<Page, String> {
    let response: SyncResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut changes = Vec::with_capacity(response.added.len() + response.modified.len() + response.removed.len());
    for (kind, list) in [(ChangeKind::Added, response.added), (ChangeKind::Modified, response.modified)] {
        for t in list {
            let amount = parse_amount(t.amount.get())
                .map_err(|e| format!("transaction {}: amount {}: {e}", t.transaction_id, t.amount.get()))?;
            let date = parse_date(&t.date, "date", &t.transaction_id)?;
            let authorized_date = t
                .authorized_date
                .as_deref()
                .map(|d| parse_date(d, "authorized_date", &t.transaction_id))
                .transpose()?;
            let (category_primary, category_detailed) = match t.personal_finance_category {
                Some(c) => (c.primary, c.detailed),
                None => (None, None),
            };
            changes.push(Change {
                kind,
                transaction_id: t.transaction_id,
                account_id: Some(t.account_id),
                amount: Some(amount),
                iso_currency_code: t.iso_currency_code,
                date: Some(date),
                authorized_date,
                name: t.name,
                merchant_name: t.merchant_name,
                pending: Some(t.pending),
                category_primary,
                category_detailed,
            });
        }
    }
    for r in response.removed {
        changes.push(Change {
            kind: ChangeKind::Removed,
            transaction_id: r.transaction_id,
            account_id: r.account_id,
            amount: None,
            iso_currency_code: None,
            date: None,
            authorized_date: None,
            name: None,
            merchant_name: None,
            pending: None,
            category_primary: None,
            category_detailed: None,
        });
    }
    Ok(Page { changes, next_cursor: response.next_cursor, has_more: response.has_more })
}

/// Parses a JSON number's text (`72.1`, `-4.5`, `1e2`, `0.00012345`) into an integer scaled by
/// 10^[`AMOUNT_SCALE`], exactly: a value with more decimals than that, or more than
/// [`AMOUNT_PRECISION`] digits, is refused rather than rounded.
pub fn parse_amount(text: &str) -> Result<i128, String> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (number, exponent) = match rest.find(['e', 'E']) {
        Some(i) => {
            let exp = &rest[i + 1..];
            let exp: i32 = exp.strip_prefix('+').unwrap_or(exp).parse().map_err(|_| "is not a number".to_owned())?;
            (&rest[..i], exp)
        }
        None => (rest, 0),
    };
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
        || (number.contains('.') && frac_part.is_empty())
    {
        return Err("is not a number".to_owned());
    }
    let digits = format!("{int_part}{frac_part}");
    // value = digits × 10^(exponent − frac_len); stored = value × 10^SCALE.
    let shift = i64::from(exponent) - frac_part.len() as i64 + i64::from(AMOUNT_SCALE);
    let significant = digits.trim_start_matches('0');
    let (kept, dropped) = if shift >= 0 {
        (significant, "")
    } else {
        let cut = significant.len().saturating_sub(shift.unsigned_abs() as usize);
        significant.split_at(cut)
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!("has more than {AMOUNT_SCALE} decimal places; refusing to round it"));
    }
    let too_big = || format!("does not fit in decimal({AMOUNT_PRECISION}, {AMOUNT_SCALE})");
    let zeros = if shift > 0 { shift as usize } else { 0 };
    if kept.len() + zeros > usize::from(AMOUNT_PRECISION) {
        return Err(too_big());
    }
    let mut value: i128 = if kept.is_empty() { 0 } else { kept.parse().map_err(|_| too_big())? };
    for _ in 0..zeros {
        value = value.checked_mul(10).ok_or_else(too_big)?;
    }
    Ok(if negative { -value } else { value })
}

/// Formats a scaled amount as decimal text (`7210000000` → `72.10000000`), for people and tests.
pub fn format_amount(value: i128) -> String {
    let scale = 10i128.pow(AMOUNT_SCALE as u32);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!("{sign}{}.{:0width$}", abs / scale as u128, abs % scale as u128, width = AMOUNT_SCALE as usize)
}

// ---------------------------------------------------------------------------------------------
// The live client.

/// How the live client behaves.
#[derive(Clone)]
pub struct PlaidConfig {
    /// `PLAID_CLIENT_ID`.
    pub client_id: String,
    /// `PLAID_SECRET`.
    pub secret: Secret,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per page on a transient failure (5xx, timeout, connection), the first included.
    pub attempts: usize,
    /// The first retry delay after a transient failure (doubling, with jitter).
    pub first_delay: Duration,
    /// Attempts per page while Plaid answers 429 `TRANSACTIONS_SYNC_LIMIT`, the first included.
    pub rate_limit_attempts: usize,
    /// The first delay after a 429 (doubling, with jitter, up to 60 s).
    pub rate_limit_delay: Duration,
    /// Times to ask while `next_cursor` is `""` (transactions not ready).
    pub not_ready_attempts: u32,
    /// The pause between those.
    pub not_ready_delay: Duration,
    /// Restarts of a pagination after `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`.
    pub max_restarts: u32,
}

impl std::fmt::Debug for PlaidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaidConfig")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl PlaidConfig {
    /// Production defaults for these credentials.
    pub fn new(client_id: impl Into<String>, secret: Secret) -> PlaidConfig {
        PlaidConfig {
            client_id: client_id.into(),
            secret,
            timeout: Duration::from_secs(30),
            attempts: 4,
            first_delay: Duration::from_millis(500),
            // Plaid allows 50 syncs per minute per item: back off from 5 s towards a minute.
            rate_limit_attempts: 6,
            rate_limit_delay: Duration::from_secs(5),
            not_ready_attempts: 4,
            not_ready_delay: Duration::from_secs(10),
            max_restarts: 5,
        }
    }
}

/// Plaid's `/transactions/sync` over HTTP, with access tokens from [`PlaidItems`].
#[derive(Clone)]
pub struct PlaidClient {
    http: reqwest::Client,
    url: String,
    shown: String,
    config: PlaidConfig,
    items: Arc<dyn PlaidItems>,
}

impl std::fmt::Debug for PlaidClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaidClient").field("url", &self.shown).field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why one request failed, as the retry loop sees it.
enum Attempt {
    /// Retry this page after a pause (5xx, timeout, connection).
    Transient(String),
    /// Retry this page after a longer pause (429).
    RateLimited(String),
    /// `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`: restart the pagination.
    Mutated,
    /// Give up (retrying cannot help).
    Fatal(PlaidError),
}

impl PlaidClient {
    /// A client for `base_url` (`PLAID_API_URL`); `shown` is the URL without credentials.
    pub fn new(
        base_url: &str,
        shown: String,
        config: PlaidConfig,
        items: Arc<dyn PlaidItems>,
    ) -> Result<PlaidClient, PlaidError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(PlaidError::Config { url: shown, detail: "expected http:// or https://".to_owned() });
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("robo-assets/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PlaidError::Config { url: shown.clone(), detail: e.to_string() })?;
        let url = format!("{}/transactions/sync", base_url.trim_end_matches('/'));
        Ok(PlaidClient { http, url, shown, config, items })
    }

    /// One request for one page, without retries.
    async fn page_once(&self, item: &str, token: &Secret, cursor: &str) -> Result<Page, Attempt> {
        let mut body = serde_json::json!({
            "client_id": self.config.client_id,
            "secret": self.config.secret.expose(),
            "access_token": token.expose(),
            "count": PAGE_SIZE,
        });
        if !cursor.is_empty() {
            body["cursor"] = serde_json::Value::from(cursor);
        }
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("plaid-version", "2020-09-14")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| Attempt::Transient(describe_reqwest(&e)))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| Attempt::Transient(describe_reqwest(&e)))?;
        if (200..300).contains(&status) {
            return parse_page(&bytes)
                .map_err(|detail| Attempt::Fatal(PlaidError::Malformed { item: item.to_owned(), detail }));
        }
        let error: Option<WireError> = serde_json::from_slice(&bytes).ok();
        match (status, error) {
            (_, Some(e)) if e.error_code == "ITEM_LOGIN_REQUIRED" => {
                Err(Attempt::Fatal(PlaidError::LoginRequired { item: item.to_owned() }))
            }
            (_, Some(e)) if e.error_code == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION" => Err(Attempt::Mutated),
            (429, e) => Err(Attempt::RateLimited(format!(
                "HTTP 429 {}",
                e.map(|e| e.error_code).unwrap_or_else(|| "RATE_LIMIT_EXCEEDED".to_owned())
            ))),
            (500..=599, e) => Err(Attempt::Transient(format!(
                "HTTP {status}{}",
                e.map(|e| format!(" {}", e.error_code)).unwrap_or_default()
            ))),
            (_, Some(e)) => Err(Attempt::Fatal(PlaidError::Refused {
                item: item.to_owned(),
                status,
                error_type: e.error_type,
                error_code: e.error_code,
                message: e.error_message,
            })),
            (_, None) => Err(Attempt::Fatal(PlaidError::Malformed {
                item: item.to_owned(),
                detail: format!("HTTP {status} without a Plaid error body"),
            })),
        }
    }

    /// One page, retrying transient failures and 429s with their own backoffs; `None` when
    /// the transactions changed during pagination (restart it).
    async fn page(&self, item: &str, token: &Secret, cursor: &str) -> Result<Option<Page>, PlaidError> {
        let (mut transient, mut limited) = (0usize, 0usize);
        let mut transient_delays = backon::BackoffBuilder::build(
            ExponentialBuilder::default()
                .with_min_delay(self.config.first_delay)
                .with_max_delay(Duration::from_secs(30))
                .with_max_times(self.config.attempts.saturating_sub(1))
                .with_jitter(),
        );
        let mut limited_delays = backon::BackoffBuilder::build(
            ExponentialBuilder::default()
                .with_min_delay(self.config.rate_limit_delay)
                .with_max_delay(Duration::from_secs(60))
                .with_max_times(self.config.rate_limit_attempts.saturating_sub(1))
                .with_jitter(),
        );
        loop {
            let (cause, delay) = match self.page_once(item, token, cursor).await {
                Ok(page) => return Ok(Some(page)),
                Err(Attempt::Mutated) => return Ok(None),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(cause)) => {
                    transient += 1;
                    (cause, Iterator::next(&mut transient_delays))
                }
                Err(Attempt::RateLimited(cause)) => {
                    limited += 1;
                    (cause, Iterator::next(&mut limited_delays))
                }
            };
            let Some(delay) = delay else {
                return Err(PlaidError::Unavailable {
                    item: item.to_owned(),
                    attempts: transient + limited,
                    last: cause,
                });
            };
            tracing::warn!(message = "Plaid call failed; retrying.", item, cause = %cause, delay_ms = delay.as_millis() as u64);
            tokio::time::sleep(delay).await;
        }
    }

    /// The whole sync loop with a token.
    async fn sync_with(&self, item: &str, token: &Secret, start: &str) -> Result<SyncBatch, PlaidError> {
        let (mut restarts, mut not_ready) = (0u32, 0u32);
        'pagination: loop {
            let mut batch = SyncBatch { restarts, ..SyncBatch::default() };
            let mut cursor = start.to_owned();
            loop {
                let Some(page) = self.page(item, token, &cursor).await? else {
                    // Plaid's rule: throw the pages away and start again from the first cursor.
                    restarts += 1;
                    if restarts > self.config.max_restarts {
                        return Err(PlaidError::KeptMutating { item: item.to_owned(), restarts: restarts - 1 });
                    }
                    tracing::warn!(
                        message = "Plaid transactions changed during pagination; restarting from the first cursor.",
                        item,
                        pages_discarded = batch.pages
                    );
                    continue 'pagination;
                };
                if page.next_cursor.is_empty() {
                    // Not ready yet: nothing to apply; ask again later from the same cursor.
                    not_ready += 1;
                    if not_ready >= self.config.not_ready_attempts {
                        return Err(PlaidError::NotReady { item: item.to_owned(), attempts: not_ready });
                    }
                    tracing::info!(message = "Plaid transactions not ready yet; asking again later.", item);
                    tokio::time::sleep(self.config.not_ready_delay).await;
                    continue;
                }
                batch.pages += 1;
                batch.changes.extend(page.changes);
                cursor = page.next_cursor;
                if !page.has_more {
                    batch.next_cursor = cursor;
                    return Ok(batch);
                }
            }
        }
    }
}

#[async_trait]
impl PlaidSource for PlaidClient {
    async fn sync(&self, item_id: &str, cursor: &str) -> Result<SyncBatch, PlaidError> {
        let token = self
            .items
            .plaid_access_token(item_id)
            .await
            .map_err(|source| PlaidError::AppDb { item: item_id.to_owned(), source })?
            .ok_or_else(|| PlaidError::NotLinked { item: item_id.to_owned() })?;
        self.sync_with(item_id, &token, cursor).await
    }

    fn source(&self) -> &'static str {
        "live"
    }

    fn describe(&self) -> String {
        format!("Plaid at {}", self.shown)
    }
}

// ---------------------------------------------------------------------------------------------
// The dev source.

/// The labeled dev source: fixture syncs shipped in `plaid/dev_pages.json`, the same for every
/// item. The first sync returns the initial history (two pages); each later sync returns the
/// next batch of updates (a modification, a removal, new transactions) until there are none left,
/// then nothing new. Cursors are `dev-N` (N batches read). Pages go through the same parser as
/// Plaid's, so amounts and dates are read exactly as live ones are.
#[derive(Debug, Clone, Default)]
pub struct DevPlaid;

const DEV_PAGES: &str = include_str!("plaid/dev_pages.json");

#[async_trait]
impl PlaidSource for DevPlaid {
    async fn sync(&self, item_id: &str, cursor: &str) -> Result<SyncBatch, PlaidError> {
        let malformed = |detail: String| PlaidError::Malformed { item: item_id.to_owned(), detail };
        let batches: Vec<Vec<Box<RawValue>>> =
            serde_json::from_str(DEV_PAGES).map_err(|e| malformed(format!("dev pages: {e}")))?;
        let done: usize = match cursor {
            "" => 0,
            c => c
                .strip_prefix("dev-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| malformed(format!("{c:?} is not a dev source cursor (the item was synced live)")))?,
        };
        let mut batch = SyncBatch { next_cursor: format!("dev-{}", done.min(batches.len())), ..Default::default() };
        if let Some(pages) = batches.get(done) {
            for page in pages {
                let page = parse_page(page.get().as_bytes()).map_err(|e| malformed(format!("dev pages: {e}")))?;
                batch.changes.extend(page.changes);
                batch.pages += 1;
            }
            batch.next_cursor = format!("dev-{}", done + 1);
        }
        Ok(batch)
    }

    fn source(&self) -> &'static str {
        "dev"
    }

    fn describe(&self) -> String {
        "the Plaid dev source (fixture transactions shipped with robo-assets)".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// The change log.

/// Every sync's changes, kept per item and sequence number (`plaid_changes/{item}/{seq}.parquet`
/// in the object store), so the current set can be folded from the changes it has not seen even
/// when several syncs ran since (the `plaid_transactions` output holds only the latest). A file
/// is written before its sync is recorded; a killed sync leaves a file for a sequence number
/// that is not recorded, which the next sync of that number replaces.
#[derive(Clone)]
pub struct ChangeLog {
    store: Arc<dyn ObjectStore>,
}

impl ChangeLog {
    /// The change log in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> ChangeLog {
        ChangeLog { store }
    }

    fn key(item: &str, seq: u64) -> String {
        format!("plaid_changes/{item}/{seq:010}.parquet")
    }

    /// Writes sync `seq` of `item`; returns the blake3 of the bytes (change-log files carry no
    /// provenance: they are the asset's own bookkeeping, not an output).
    pub async fn put(
        &self,
        item: &str,
        seq: u64,
        table: &arrow_array::RecordBatch,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let table = table.clone();
        let (bytes, version) = tokio::task::spawn_blocking(move || {
            let (bytes, _) = crate::parquet_io::encode(&table, &[])?;
            let version = blake3::hash(&bytes).to_hex().to_string();
            Ok::<_, parquet::errors::ParquetError>((bytes, version))
        })
        .await??;
        self.store.put(&Self::key(item, seq), bytes::Bytes::from(bytes)).await?;
        Ok(version)
    }

    /// Reads sync `seq` of `item` with the blake3 of its bytes; `None` if there is none.
    pub async fn get(
        &self,
        item: &str,
        seq: u64,
    ) -> Result<Option<(arrow_array::RecordBatch, String)>, Box<dyn std::error::Error + Send + Sync>> {
        let bytes = match self.store.get(&Self::key(item, seq)).await {
            Ok(bytes) => bytes,
            Err(ObjectStoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let read = tokio::task::spawn_blocking(move || crate::parquet_io::decode(bytes)).await??;
        Ok(Some(read))
    }
}

#[cfg(test)]
mod tests;
