//! QuickBooks Online reports: the live client (OAuth 2.0 with rotating refresh tokens), the
//! labeled dev source, and the flattening of a report's nested sections into rows.
//!
//! Facts (`../shared/reference/ingestion-apis.md` §2): reports are `GET
//! {api}/v3/company/{realm}/reports/{ProfitAndLoss|BalanceSheet}?start_date&end_date&minorversion=75`
//! with `Accept: application/json` and a bearer access token that lives an hour. The refresh
//! token **rotates**: every refresh returns a new one and the old one is then refused with
//! `invalid_grant`, so the new one is stored in the transaction that receives it, under a lock
//! on the realm's row, before the access token is used ([`QboTokens::access_token`]). A 401
//! (either envelope: `Fault`/`Error`/`Message` or the gateway's lowercase `fault`/`error`/
//! `message`) buys one refresh and one retry; a 200 can carry a `Fault`; a 429 waits (60 s, as
//! Intuit asks) and retries; a realm's requests are paced to 10 a second and 500 a minute across
//! every worker, by slots reserved on its row in the app database
//! ([`QboTokens::reserve_request_slot`]), and the `quickbooks` pool, one per realm, caps how many
//! of its steps run at once. `intuit_tid` is kept for support.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Date32Array, Decimal128Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::appdb::AppDbError;
use crate::secret::Secret;

/// Precision and scale of `amount`: money in the report's currency, to the cent.
pub const AMOUNT_PRECISION: u8 = 18;
/// Scale of `amount`.
pub const AMOUNT_SCALE: i8 = 2;

/// The minor version sent with every request (Intuit ends support for 1–74 in August 2025).
pub const MINOR_VERSION: u32 = 75;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QboReport {
    /// Income and expenses over the month.
    ProfitAndLoss,
    /// Assets, liabilities and equity at the month's end.
    BalanceSheet,
}

impl QboReport {
    /// The report's name in the API's path.
    pub fn path(self) -> &'static str {
        match self {
            QboReport::ProfitAndLoss => "ProfitAndLoss",
            QboReport::BalanceSheet => "BalanceSheet",
        }
    }
}

/// Why a QuickBooks request failed. Never holds a token or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum QboError {
    /// The realm has no stored refresh token.
    #[error("QuickBooks realm {realm} is not connected: run `robo-assets qbo connect {realm} --refresh-token …`")]
    NotConnected {
        /// The realm.
        realm: String,
    },
    /// The refresh token was refused (expired, revoked or superseded): only a person can fix it.
    #[error(
        "QuickBooks refused the refresh token of realm {realm} (invalid_grant: {reason}): the connection was revoked or expired; reconnect the realm with `robo-assets qbo connect {realm} --refresh-token …`{}",
        tid_text(.intuit_tid)
    )]
    InvalidGrant {
        /// The realm.
        realm: String,
        /// Intuit's `error_description`.
        reason: String,
        /// Intuit's transaction id, for support.
        intuit_tid: Option<String>,
    },
    /// Intuit answered with an error (a `Fault`, even in a 200, or an error status).
    #[error("QuickBooks {what} for realm {realm} failed: HTTP {status}: {message}{}", tid_text(.intuit_tid))]
    Api {
        /// What was asked (`ProfitAndLoss 2025-12`, `token refresh`).
        what: String,
        /// The realm.
        realm: String,
        /// The HTTP status.
        status: u16,
        /// The fault's code, message and detail, or the status's reason.
        message: String,
        /// Intuit's transaction id, for support.
        intuit_tid: Option<String>,
        /// Whether a later try can succeed (a throttle or a server or system fault, not a
        /// validation or authorization fault).
        retryable: bool,
    },
    /// The request did not complete (connection refused, timeout).
    #[error("QuickBooks {what} for realm {realm}: {reason}")]
    Transport {
        /// What was asked.
        what: String,
        /// The realm.
        realm: String,
        /// What went wrong (without the URL's query or any header).
        reason: String,
    },
    /// The answer was not what the API documents.
    #[error("QuickBooks {what} for realm {realm}: {reason}")]
    Malformed {
        /// What was asked.
        what: String,
        /// The realm.
        realm: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The app database failed.
    #[error("storing QuickBooks tokens: {0}")]
    Database(#[from] AppDbError),
}

fn tid_text(tid: &Option<String>) -> String {
    tid.as_ref().map(|t| format!(" (intuit_tid {t})")).unwrap_or_default()
}

impl QboError {
    /// Whether retrying the step later can help (not for a refused or missing connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            QboError::NotConnected { .. } | QboError::InvalidGrant { .. } => false,
            QboError::Api { retryable, .. } => *retryable,
            _ => true,
        }
    }
}

/// What a refresh returns.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// The new access token.
    pub access_token: Secret,
    /// The new refresh token (the old one is refused from now on).
    pub refresh_token: Secret,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

/// Trades a refresh token for a grant (the token endpoint).
#[async_trait]
pub trait TokenExchange: Send + Sync {
    /// One refresh.
    async fn exchange(&self, realm: &str, refresh_token: &Secret) -> Result<TokenGrant, QboError>;
}

/// Where the realms' tokens live (the app database), with one refresh per realm at a time.
#[async_trait]
pub trait QboTokens: Send + Sync + std::fmt::Debug {
    /// Stores a realm's first refresh token (or replaces it: reconnecting); forgets its access token.
    async fn connect(&self, realm: &str, refresh_token: &Secret, now: DateTime<Utc>) -> Result<(), AppDbError>;

    /// The realms connected, in order.
    async fn connected_realms(&self) -> Result<Vec<String>, AppDbError>;

    /// A valid access token for `realm`. Under a lock on the realm's row: the stored one if it
    /// lives another minute and is not `stale` (the one a 401 refused); otherwise a refresh
    /// through `exchange`, whose new refresh token and access token are stored before the lock
    /// is released, so a crash never loses the only valid refresh token and two workers never
    /// refresh the same realm at once.
    async fn access_token(
        &self,
        realm: &str,
        stale: Option<&Secret>,
        now: DateTime<Utc>,
        exchange: &dyn TokenExchange,
    ) -> Result<Secret, QboError>;

    /// Reserves the realm's next request slot for a sender that is ready at `now`: the later of
    /// `now` and the slot the previous reservation left, after which the next one is `gap` later.
    /// Every worker of a deployment reserves through the same row (in a write transaction), so
    /// the realm's requests are paced across processes and machines, not only within one.
    async fn reserve_request_slot(
        &self,
        realm: &str,
        now: DateTime<Utc>,
        gap: chrono::Duration,
    ) -> Result<DateTime<Utc>, QboError>;
}

/// A report as fetched.
#[derive(Debug, Clone)]
pub struct ReportFetch {
    /// The report JSON.
    pub report: Value,
    /// Intuit's transaction id of the answer.
    pub intuit_tid: Option<String>,
    /// `live`, or `dev` for the labeled dev source.
    pub source: &'static str,
}

/// Where reports come from: the live API or the labeled dev source.
#[async_trait]
pub trait QboSource: Send + Sync + std::fmt::Debug {
    /// One report of one realm over `[start, end]`.
    async fn report(
        &self,
        realm: &str,
        report: QboReport,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<ReportFetch, QboError>;
}

/// How to reach QuickBooks.
#[derive(Debug, Clone)]
pub struct QboConfig {
    /// API base, `https://quickbooks.api.intuit.com` (sandbox: `https://sandbox-quickbooks.api.intuit.com`).
    pub api_url: String,
    /// Token endpoint, `https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer`.
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// How long a 429 waits before the next try (Intuit asks 60 s).
    pub throttle_wait: Duration,
    /// Tries after a 429 before the step fails (and is retried by its policy).
    pub throttle_retries: u32,
    /// Requests per second per realm, across every worker (Intuit allows 10).
    pub requests_per_second: u32,
    /// Requests per minute per realm, across every worker (Intuit allows 500).
    pub requests_per_minute: u32,
    /// Each request's timeout (Intuit cuts requests at 120 s; the token request holds a row lock).
    pub timeout: Duration,
}

impl QboConfig {
    /// Production endpoints and Intuit's limits.
    pub fn new(client_id: String, client_secret: Secret) -> QboConfig {
        QboConfig {
            api_url: "https://quickbooks.api.intuit.com".to_owned(),
            token_url: "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer".to_owned(),
            client_id,
            client_secret,
            throttle_wait: Duration::from_secs(60),
            throttle_retries: 3,
            requests_per_second: 10,
            requests_per_minute: 500,
            timeout: Duration::from_secs(20),
        }
    }
}

/// The live client.
#[derive(Debug)]
pub struct QboClient {
    config: QboConfig,
    http: reqwest::Client,
    tokens: Arc<dyn QboTokens>,
}

/// The first error of a fault body, in either envelope: `code: message (detail)`.
fn fault_text(body: &Value) -> Option<String> {
    let fault = body.get("Fault").or_else(|| body.get("fault")).filter(|f| !f.is_null())?;
    let first = fault.get("Error").or_else(|| fault.get("error")).and_then(|e| e.get(0));
    let field = |name: &str, lower: &str| {
        first
            .and_then(|e| e.get(name).or_else(|| e.get(lower)))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let kind = fault.get("type").and_then(Value::as_str).unwrap_or("Fault");
    let mut text = kind.to_owned();
    if let Some(code) = field("code", "code") {
        text.push_str(&format!(" {code}"));
    }
    if let Some(message) = field("Message", "message") {
        text.push_str(&format!(": {message}"));
    }
    if let Some(detail) = field("Detail", "detail") {
        text.push_str(&format!(" ({detail})"));
    }
    Some(text)
}

/// A number that may come as a string (`"3600"`), as Intuit's samples show.
fn lenient_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl QboClient {
    /// A client with its own HTTP connection pool, storing tokens in `tokens`.
    pub fn new(config: QboConfig, tokens: Arc<dyn QboTokens>) -> Result<QboClient, QboError> {
        let http = reqwest::Client::builder().timeout(config.timeout).build().map_err(|e| QboError::Transport {
            what: "client set-up".to_owned(),
            realm: "-".to_owned(),
            reason: e.to_string(),
        })?;
        Ok(QboClient { config, http, tokens })
    }

    /// The spacing of one realm's requests that keeps both of Intuit's limits: 10 a second and
    /// 500 a minute give 120 ms.
    pub fn request_gap(&self) -> Duration {
        let per_second = Duration::from_secs(1) / self.config.requests_per_second.max(1);
        let per_minute = Duration::from_secs(60) / self.config.requests_per_minute.max(1);
        per_second.max(per_minute)
    }

    /// Waits for the realm's next request slot, reserved in the app database so that every
    /// worker sending to the realm shares one pace.
    async fn pace(&self, realm: &str) -> Result<(), QboError> {
        let gap = chrono::Duration::from_std(self.request_gap()).unwrap_or(chrono::Duration::milliseconds(120));
        let at = self.tokens.reserve_request_slot(realm, Utc::now(), gap).await?;
        if let Ok(wait) = (at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    fn transport(what: &str, realm: &str, e: reqwest::Error) -> QboError {
        let reason = crate::graph_api::describe_reqwest(&e);
        QboError::Transport { what: what.to_owned(), realm: realm.to_owned(), reason }
    }
}

fn intuit_tid(resp: &reqwest::Response) -> Option<String> {
    resp.headers().get("intuit_tid").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[async_trait]
impl TokenExchange for QboClient {
    async fn exchange(&self, realm: &str, refresh_token: &Secret) -> Result<TokenGrant, QboError> {
        let what = "token refresh";
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose())
            .finish();
        let resp = self
            .http
            .post(&self.config.token_url)
            .basic_auth(&self.config.client_id, Some(self.config.client_secret.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| Self::transport(what, realm, e))?;
        let status = resp.status();
        let tid = intuit_tid(&resp);
        let text = resp.text().await.map_err(|e| Self::transport(what, realm, e))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = json.get("error").and_then(Value::as_str).unwrap_or_default();
            let reason = json.get("error_description").and_then(Value::as_str).unwrap_or(error).to_owned();
            if error == "invalid_grant" {
                return Err(QboError::InvalidGrant { realm: realm.to_owned(), reason, intuit_tid: tid });
            }
            let message = if error.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                format!("{error}: {reason}")
            };
            return Err(QboError::Api {
                what: what.to_owned(),
                realm: realm.to_owned(),
                status: status.as_u16(),
                message,
                intuit_tid: tid,
                retryable: status.is_server_error() || status.as_u16() == 429,
            });
        }
        let token = |name: &str| json.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(Secret::new);
        match (token("access_token"), token("refresh_token")) {
            (Some(access_token), Some(refresh_token)) => Ok(TokenGrant {
                access_token,
                refresh_token,
                expires_in: lenient_i64(json.get("expires_in")).unwrap_or(3600),
            }),
            _ => Err(QboError::Malformed {
                what: what.to_owned(),
                realm: realm.to_owned(),
                reason: "the answer has no access_token or refresh_token".to_owned(),
            }),
        }
    }
}

#[async_trait]
impl QboSource for QboClient {
    async fn report(
        &self,
        realm: &str,
        report: QboReport,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<ReportFetch, QboError> {
        let what = format!("{} {}", report.path(), start.format("%Y-%m"));
        let url = format!("{}/v3/company/{realm}/reports/{}", self.config.api_url.trim_end_matches('/'), report.path());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("start_date", &start.to_string())
            .append_pair("end_date", &end.to_string())
            .append_pair("minorversion", &MINOR_VERSION.to_string())
            .finish();
        let url = format!("{url}?{query}");
        let mut access = self.tokens.access_token(realm, None, Utc::now(), self).await?;
        let (mut refreshed, mut throttled, mut server_errors) = (false, 0, 0);
        loop {
            self.pace(realm).await?;
            let resp = self
                .http
                .get(&url)
                .bearer_auth(access.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| Self::transport(&what, realm, e))?;
            let status = resp.status().as_u16();
            let tid = intuit_tid(&resp);
            let text = resp.text().await.map_err(|e| Self::transport(&what, realm, e))?;
            let body: Option<Value> = serde_json::from_str(&text).ok();
            let fault = body.as_ref().and_then(fault_text);
            let api_error = |message: String| QboError::Api {
                what: what.clone(),
                realm: realm.to_owned(),
                status,
                retryable: status >= 500
                    || status == 429
                    || ["System", "SERVICE"].iter().any(|kind| message.starts_with(kind)),
                message,
                intuit_tid: tid.clone(),
            };
            match status {
                200 => match (body, fault) {
                    (_, Some(fault)) => return Err(api_error(fault)),
                    (Some(report), None) => return Ok(ReportFetch { report, intuit_tid: tid, source: "live" }),
                    (None, None) => {
                        return Err(QboError::Malformed {
                            what,
                            realm: realm.to_owned(),
                            reason: "the answer is not JSON".to_owned(),
                        });
                    }
                },
                401 if !refreshed => {
                    refreshed = true;
                    tracing::info!(
                        realm,
                        intuit_tid = tid.as_deref(),
                        "QuickBooks answered 401; refreshing the access token once"
                    );
                    access = self.tokens.access_token(realm, Some(&access), Utc::now(), self).await?;
                }
                429 if throttled < self.config.throttle_retries => {
                    throttled += 1;
                    tracing::warn!(
                        realm,
                        intuit_tid = tid.as_deref(),
                        wait_s = self.config.throttle_wait.as_secs_f64(),
                        "QuickBooks throttled the realm (429); waiting before the next try"
                    );
                    tokio::time::sleep(self.config.throttle_wait).await;
                }
                500 | 502 | 503 | 504 if server_errors < 1 => {
                    server_errors += 1;
                    tokio::time::sleep(Duration::from_millis(500 + fastrand::u64(0..500))).await;
                }
                _ => {
                    let reason = reqwest::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("error")
                        .to_owned();
                    return Err(api_error(fault.unwrap_or(reason)));
                }
            }
        }
    }
}

/// The labeled dev source: a small sample company (`fixtures/qbo/*.json`, shipped in the
/// repository), the same accounts every month, its amounts varied by realm and month so
/// months differ. Used when no QuickBooks variable is set.
#[derive(Debug, Default)]
pub struct DevQbo;

const DEV_PROFIT_AND_LOSS: &str = include_str!("../fixtures/qbo/profit_and_loss.json");
const DEV_BALANCE_SHEET: &str = include_str!("../fixtures/qbo/balance_sheet.json");

#[async_trait]
impl QboSource for DevQbo {
    async fn report(
        &self,
        realm: &str,
        report: QboReport,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<ReportFetch, QboError> {
        let text = match report {
            QboReport::ProfitAndLoss => DEV_PROFIT_AND_LOSS,
            QboReport::BalanceSheet => DEV_BALANCE_SHEET,
        };
        let mut json: Value = serde_json::from_str(text).expect("the dev fixtures are JSON");
        json["Header"]["StartPeriod"] = Value::String(start.to_string());
        json["Header"]["EndPeriod"] = Value::String(end.to_string());
        // 90 % to 110 % of the sample, by realm and month, in whole percent: exact.
        let seed = blake3::hash(format!("{realm}|{start}").as_bytes());
        let percent = 90 + i128::from(seed.as_bytes()[0] % 21);
        scale_amounts(&mut json["Rows"], percent);
        Ok(ReportFetch { report: json, intuit_tid: None, source: "dev" })
    }
}

/// Multiplies every money cell by `percent` %, rounding half away from zero to the cent.
fn scale_amounts(rows: &mut Value, percent: i128) {
    let Some(list) = rows.get_mut("Row").and_then(Value::as_array_mut) else { return };
    for row in list {
        for part in ["Header", "Summary"] {
            if let Some(cells) = row.get_mut(part).and_then(|p| p.get_mut("ColData")).and_then(Value::as_array_mut) {
                scale_cells(cells, percent);
            }
        }
        if let Some(cells) = row.get_mut("ColData").and_then(Value::as_array_mut) {
            scale_cells(cells, percent);
        }
        if let Some(children) = row.get_mut("Rows") {
            scale_amounts(children, percent);
        }
    }
}

fn scale_cells(cells: &mut [Value], percent: i128) {
    for cell in cells.iter_mut().skip(1) {
        if let Some(Ok(Some(cents))) = cell.get("value").and_then(Value::as_str).map(parse_money) {
            let scaled = cents * percent;
            let rounded = (scaled + scaled.signum() * 50) / 100;
            cell["value"] = Value::String(format_money(rounded));
        }
    }
}

/// A money cell (`"900.00"`, `"-12.5"`, `""`) in cents; `None` for an empty cell. More than two
/// decimals is refused rather than rounded.
pub fn parse_money(text: &str) -> Result<Option<i128>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = !whole.is_empty()
        && whole.len() <= 16
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(format!("{text:?} is not an amount with at most 2 decimals and 16 digits before the point"));
    }
    let cents = whole.parse::<i128>().expect("digits") * 100 + format!("{frac:0<2}").parse::<i128>().expect("digits");
    Ok(Some(if negative { -cents } else { cents }))
}

fn format_money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// A report flattened: its rows and its header, for metadata.
#[derive(Debug)]
pub struct FlatReport {
    /// `realm_id, month, period_start, period_end, section_path, account_name, account_id, amount`.
    pub table: RecordBatch,
    /// `report_name`, `report_basis`, `start_period`, `end_period`, `currency`, `report_time`,
    /// `no_report_data`.
    pub header: serde_json::Map<String, Value>,
}

/// The schema of a flattened report.
pub fn flat_schema() -> Schema {
    Schema::new(vec![
        Field::new("realm_id", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("period_start", DataType::Date32, false),
        Field::new("period_end", DataType::Date32, false),
        Field::new("section_path", DataType::Utf8, false),
        Field::new("account_name", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(AMOUNT_PRECISION, AMOUNT_SCALE), true),
    ])
}

#[derive(Default)]
struct Rows {
    section_path: Vec<String>,
    account_name: Vec<String>,
    account_id: Vec<Option<String>>,
    amount: Vec<Option<i128>>,
}

/// The account cell and the total (last) money cell of a `ColData`.
fn cells(col_data: Option<&Value>) -> (String, Option<String>, Result<Option<i128>, String>) {
    let cells = col_data.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|c| c.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let name = text(cells.first(), "value").unwrap_or_default();
    let id = text(cells.first(), "id");
    let amount = match cells.last().filter(|_| cells.len() > 1) {
        Some(cell) => parse_money(cell.get("value").and_then(Value::as_str).unwrap_or_default()),
        None => Ok(None),
    };
    (name, id, amount)
}

fn walk(rows: &Value, path: &mut Vec<String>, out: &mut Rows) -> Result<(), String> {
    let Some(list) = rows.get("Row").and_then(Value::as_array) else { return Ok(()) };
    for row in list {
        match row.get("type").and_then(Value::as_str) {
            Some("Data") => {
                let (name, id, amount) = cells(row.get("ColData"));
                out.section_path.push(path.join("/"));
                out.account_name.push(name);
                out.account_id.push(id);
                out.amount.push(amount?);
            }
            Some("Section") => {
                let (header, _, _) = cells(row.get("Header").and_then(|h| h.get("ColData")));
                let group = row.get("group").and_then(Value::as_str).unwrap_or_default();
                let label = if header.is_empty() { group.to_owned() } else { header };
                let children =
                    row.get("Rows").filter(|r| r.get("Row").and_then(Value::as_array).is_some_and(|l| !l.is_empty()));
                match children {
                    Some(children) => {
                        path.push(label);
                        walk(children, path, out)?;
                        path.pop();
                    }
                    // A computed line (Gross Profit, Net Income): only its summary.
                    None => {
                        let (name, _, amount) = cells(row.get("Summary").and_then(|s| s.get("ColData")));
                        path.push(label);
                        out.section_path.push(path.join("/"));
                        path.pop();
                        out.account_name.push(if name.is_empty() { group.to_owned() } else { name });
                        out.account_id.push(None);
                        out.amount.push(amount?);
                    }
                }
            }
            other => return Err(format!("a row of type {other:?}; expected Data or Section")),
        }
    }
    Ok(())
}

/// Flattens a report into one row per account (its section path like `Income/Services`) and
/// one per computed line (`GrossProfit`, `NetIncome`); section totals are left out (they are
/// the sums of their rows). Empty cells are null. `month` is `YYYY-MM`.
pub fn flatten(report: &Value, realm: &str, month: &str) -> Result<FlatReport, String> {
    let header = report.get("Header").ok_or("the report has no Header")?;
    let date = |name: &str| -> Result<NaiveDate, String> {
        let text =
            header.get(name).and_then(Value::as_str).ok_or_else(|| format!("the report header has no {name}"))?;
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| format!("header {name} {text:?}: {e}"))
    };
    let (start, end) = (date("StartPeriod")?, date("EndPeriod")?);
    let no_data = header.get("Option").and_then(Value::as_array).into_iter().flatten().any(|o| {
        o.get("Name").and_then(Value::as_str) == Some("NoReportData")
            && o.get("Value").and_then(Value::as_str) == Some("true")
    });
    let mut rows = Rows::default();
    if let Some(r) = report.get("Rows") {
        walk(r, &mut Vec::new(), &mut rows)?;
    }
    let n = rows.account_name.len();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let days = |d: NaiveDate| (d - epoch).num_days() as i32;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![realm; n])),
        Arc::new(StringArray::from(vec![month; n])),
        Arc::new(Date32Array::from(vec![days(start); n])),
        Arc::new(Date32Array::from(vec![days(end); n])),
        Arc::new(StringArray::from(rows.section_path)),
        Arc::new(StringArray::from(rows.account_name)),
        Arc::new(StringArray::from(rows.account_id)),
        Arc::new(
            Decimal128Array::from(rows.amount)
                .with_precision_and_scale(AMOUNT_PRECISION, AMOUNT_SCALE)
                .map_err(|e| e.to_string())?,
        ),
    ];
    let table = RecordBatch::try_new(Arc::new(flat_schema()), columns).map_err(|e| e.to_string())?;
    let mut meta = serde_json::Map::new();
    for (key, name) in [
        ("report_name", "ReportName"),
        ("report_basis", "ReportBasis"),
        ("start_period", "StartPeriod"),
        ("end_period", "EndPeriod"),
        ("currency", "Currency"),
        ("report_time", "Time"),
    ] {
        if let Some(v) = header.get(name).filter(|v| !v.is_null()) {
            meta.insert(key.to_owned(), v.clone());
        }
    }
    meta.insert("no_report_data".to_owned(), Value::Bool(no_data));
    Ok(FlatReport { table, header: meta })
}

#[cfg(test)]
mod tests;
