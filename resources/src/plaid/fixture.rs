//! A fixture Plaid `/transactions/sync` server (axum on 127.0.0.1) for tests and the benchmark
//! (feature `plaid-fixture`). It holds one item's history as a log of changes and pages it by
//! the request's `count`, as Plaid does (`removed[]` for a transaction added earlier too), and
//! reproduces Plaid's faults on demand: `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION` on a given
//! request (after which every mid-pagination cursor handed out before is refused the same way,
//! so only a restart from the pagination's first cursor gets through), 429
//! `TRANSACTIONS_SYNC_LIMIT` (on given requests, or past N requests per window as Plaid's 50 per
//! minute per item), `ITEM_LOGIN_REQUIRED` for a flagged token, `next_cursor: ""` while
//! not ready, and holding a request open (for `kill -9` tests). Amounts are written as exact
//! JSON number text (`1234.567`), never through `f64`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

/// A transaction as the fixture serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureTx {
    /// Its id.
    pub transaction_id: String,
    /// Its account.
    pub account_id: String,
    /// The amount, as JSON number text (exact).
    pub amount: String,
    /// ISO currency.
    pub iso_currency_code: Option<String>,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `YYYY-MM-DD` or none.
    pub authorized_date: Option<String>,
    /// Description.
    pub name: String,
    /// Merchant.
    pub merchant_name: Option<String>,
    /// Pending.
    pub pending: bool,
    /// Category (primary, detailed).
    pub category: Option<(String, String)>,
}

/// One entry of the item's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixtureEvent {
    /// A new transaction.
    Added(FixtureTx),
    /// A changed transaction.
    Modified(FixtureTx),
    /// A removed transaction: (transaction id, account id).
    Removed(String, String),
}

/// Faults and state, changed by tests between or during syncs.
#[derive(Debug, Default)]
pub struct FixtureState {
    /// The history, oldest first.
    pub log: Vec<FixtureEvent>,
    /// Access tokens the item answers to.
    pub tokens: HashSet<String>,
    /// Tokens whose item needs re-linking (`ITEM_LOGIN_REQUIRED`).
    pub login_required: HashSet<String>,
    /// The request (1-based, over the fixture's life) answered with a mutation error, after
    /// appending `mutation` to the log.
    pub mutate_on_request: Option<usize>,
    /// What the mutation appends.
    pub mutation: Vec<FixtureEvent>,
    /// Requests (1-based) answered 429 `TRANSACTIONS_SYNC_LIMIT`.
    pub rate_limited: BTreeSet<usize>,
    /// Plaid's per-item limit: at most this many requests per `rate_window` (50 per minute in
    /// production); more are answered 429 `TRANSACTIONS_SYNC_LIMIT`.
    pub rate_limit: Option<(usize, std::time::Duration)>,
    /// When the requests within the window arrived.
    recent: std::collections::VecDeque<std::time::Instant>,
    /// Requests (1-based) answered `next_cursor: ""` (not ready).
    pub not_ready: BTreeSet<usize>,
    /// The request (1-based) held open until [`PlaidFixture::release`].
    pub hold_on_request: Option<usize>,
    /// Requests received so far.
    pub requests: usize,
    /// The `count` and `cursor` of every request, in order.
    pub seen: Vec<(u64, String)>,
    /// Every request body, verbatim (to check where secrets went).
    pub bodies: Vec<String>,
    generation: u64,
    stable: HashSet<String>,
}

/// The fixture: its state and the client credentials it expects.
#[derive(Debug)]
pub struct PlaidFixture {
    /// State and faults.
    pub state: Mutex<FixtureState>,
    /// `PLAID_CLIENT_ID` it expects.
    pub client_id: String,
    /// `PLAID_SECRET` it expects.
    pub secret: String,
    holding: AtomicBool,
    release: tokio::sync::Notify,
}

impl FixtureTx {
    /// A generated transaction, varied: amounts with 0–3 decimals, positive and negative,
    /// nullable fields null now and then.
    pub fn generated(i: usize) -> FixtureTx {
        let cents = (i * 7919) % 250_000;
        let amount = match i % 10 {
            0 => format!("-{}.{:02}", cents / 100, cents % 100),
            3 => format!("{}.{:03}", cents / 100, (cents * 7) % 1000),
            7 => format!("{}", cents / 100),
            _ => format!("{}.{:02}", cents / 100, cents % 100),
        };
        let day = 1 + i % 28;
        FixtureTx {
            transaction_id: format!("tx-{i:06}"),
            account_id: format!("acc-{}", i % 3),
            amount,
            iso_currency_code: (!i.is_multiple_of(50)).then(|| "USD".to_owned()),
            date: format!("2025-{:02}-{day:02}", 1 + i % 12),
            authorized_date: (!i.is_multiple_of(5)).then(|| format!("2025-{:02}-{day:02}", 1 + i % 12)),
            name: format!("PURCHASE #{i}"),
            merchant_name: (!i.is_multiple_of(4)).then(|| format!("Merchant {}", i % 97)),
            pending: i.is_multiple_of(7),
            category: (!i.is_multiple_of(9))
                .then(|| ("GENERAL_MERCHANDISE".to_owned(), format!("GENERAL_MERCHANDISE_{}", i % 5))),
        }
    }

    fn json(&self) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("a string serializes");
        let opt = |v: &Option<String>| v.as_deref().map(s).unwrap_or_else(|| "null".to_owned());
        let category = match &self.category {
            Some((p, d)) => format!("{{\"primary\":{},\"detailed\":{},\"confidence_level\":\"HIGH\"}}", s(p), s(d)),
            None => "null".to_owned(),
        };
        format!(
            "{{\"transaction_id\":{},\"account_id\":{},\"amount\":{},\"iso_currency_code\":{},\
             \"unofficial_currency_code\":null,\"date\":{},\"authorized_date\":{},\"name\":{},\
             \"merchant_name\":{},\"pending\":{},\"pending_transaction_id\":null,\"payment_channel\":\"online\",\
             \"personal_finance_category\":{category},\"location\":{{}},\"counterparties\":[]}}",
            s(&self.transaction_id),
            s(&self.account_id),
            self.amount,
            opt(&self.iso_currency_code),
            s(&self.date),
            opt(&self.authorized_date),
            s(&self.name),
            opt(&self.merchant_name),
            self.pending,
        )
    }
}

impl PlaidFixture {
    /// A fixture expecting these credentials, with one valid access token and no history.
    pub fn new(client_id: &str, secret: &str, token: &str) -> Arc<PlaidFixture> {
        let mut state = FixtureState::default();
        state.tokens.insert(token.to_owned());
        Arc::new(PlaidFixture {
            state: Mutex::new(state),
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
            holding: AtomicBool::new(false),
            release: tokio::sync::Notify::new(),
        })
    }

    /// Changes the state (faults, history).
    pub fn with<T>(&self, f: impl FnOnce(&mut FixtureState) -> T) -> T {
        f(&mut self.state.lock().expect("fixture lock"))
    }

    /// Appends `n` generated transactions, numbered from `from`.
    pub fn add_generated(&self, from: usize, n: usize) {
        self.with(|s| s.log.extend((from..from + n).map(|i| FixtureEvent::Added(FixtureTx::generated(i)))));
    }

    /// The current set the history folds to: transaction id → transaction.
    pub fn truth(&self) -> BTreeMap<String, FixtureTx> {
        let mut current = BTreeMap::new();
        for event in &self.state.lock().expect("fixture lock").log {
            match event {
                FixtureEvent::Added(t) | FixtureEvent::Modified(t) => {
                    current.insert(t.transaction_id.clone(), t.clone());
                }
                FixtureEvent::Removed(id, _) => {
                    current.remove(id);
                }
            }
        }
        current
    }

    /// Whether a request is being held open now.
    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::SeqCst)
    }

    /// Lets a held request go (it then fails with 503, as a server that gave up).
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    /// Serves the fixture on 127.0.0.1; returns its base URL (`PLAID_API_URL`).
    pub async fn serve(self: &Arc<Self>) -> String {
        let app = Router::new().route("/transactions/sync", post(sync)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fixture server runs") });
        url
    }
}

fn error(status: StatusCode, error_type: &str, code: &str, message: &str) -> (StatusCode, String) {
    (
        status,
        serde_json::json!({
            "error_type": error_type, "error_code": code, "error_message": message,
            "display_message": null, "request_id": "fixture",
        })
        .to_string(),
    )
}

fn mutation_error() -> (StatusCode, String) {
    error(
        StatusCode::BAD_REQUEST,
        "TRANSACTIONS_ERROR",
        "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        "Underlying transaction data changed since last page was fetched. Please restart pagination from last update.",
    )
}

async fn sync(State(f): State<Arc<PlaidFixture>>, body: String) -> (StatusCode, String) {
    let v: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "INVALID_BODY", "body is not JSON"),
    };
    let (n, hold) = f.with(|s| {
        s.requests += 1;
        s.bodies.push(body.clone());
        s.seen.push((v["count"].as_u64().unwrap_or(100), v["cursor"].as_str().unwrap_or("").to_owned()));
        (s.requests, s.hold_on_request == Some(s.requests))
    });
    if v["client_id"] != f.client_id.as_str() || v["secret"] != f.secret.as_str() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "INVALID_API_KEYS",
            "invalid client_id or secret provided",
        );
    }
    let token = v["access_token"].as_str().unwrap_or_default().to_owned();
    if hold {
        let released = f.release.notified();
        f.holding.store(true, Ordering::SeqCst);
        released.await;
        f.holding.store(false, Ordering::SeqCst);
        return error(StatusCode::SERVICE_UNAVAILABLE, "API_ERROR", "INTERNAL_SERVER_ERROR", "held and released");
    }
    let mut s = f.state.lock().expect("fixture lock");
    if s.login_required.contains(&token) {
        return error(
            StatusCode::BAD_REQUEST,
            "ITEM_ERROR",
            "ITEM_LOGIN_REQUIRED",
            "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information. use Link's update mode to restore the item to a good state",
        );
    }
    if !s.tokens.contains(&token) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "INVALID_ACCESS_TOKEN",
            "provided access token is in an invalid format",
        );
    }
    let now = std::time::Instant::now();
    let over_limit = match s.rate_limit {
        Some((limit, window)) => {
            while s.recent.front().is_some_and(|t| now.duration_since(*t) >= window) {
                s.recent.pop_front();
            }
            let over = s.recent.len() >= limit;
            if !over {
                s.recent.push_back(now);
            }
            over
        }
        None => false,
    };
    if s.rate_limited.contains(&n) || over_limit {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            "TRANSACTIONS_SYNC_LIMIT",
            "rate limit exceeded for attempts to access this item. please try again later",
        );
    }
    if s.not_ready.contains(&n) {
        return (
            StatusCode::OK,
            "{\"added\":[],\"modified\":[],\"removed\":[],\"next_cursor\":\"\",\"has_more\":false,\"request_id\":\"fixture\",\"accounts\":[],\"transactions_update_status\":\"NOT_READY\"}".to_owned(),
        );
    }
    let cursor = v["cursor"].as_str().unwrap_or("").to_owned();
    let start = match cursor.as_str() {
        "" => 0,
        c => {
            let Some((generation, idx)) =
                c.split_once('.').and_then(|(g, i)| Some((g.parse::<u64>().ok()?, i.parse::<usize>().ok()?)))
            else {
                return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", "INVALID_FIELD", "cursor is not valid");
            };
            if generation != s.generation && !s.stable.contains(c) {
                return mutation_error();
            }
            idx.min(s.log.len())
        }
    };
    if s.mutate_on_request == Some(n) {
        let mutation = std::mem::take(&mut s.mutation);
        s.log.extend(mutation);
        s.generation += 1;
        return mutation_error();
    }
    let count = v["count"].as_u64().unwrap_or(100).clamp(1, 500) as usize;
    let end = (start + count).min(s.log.len());
    let (mut added, mut modified, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for event in &s.log[start..end] {
        match event {
            FixtureEvent::Added(t) => added.push(t.json()),
            FixtureEvent::Modified(t) => modified.push(t.json()),
            FixtureEvent::Removed(id, account) => {
                removed.push(serde_json::json!({"transaction_id": id, "account_id": account}).to_string());
            }
        }
    }
    let has_more = end < s.log.len();
    let next_cursor = format!("{}.{end}", s.generation);
    if !has_more {
        s.stable.insert(next_cursor.clone());
    }
    (
        StatusCode::OK,
        format!(
            "{{\"added\":[{}],\"modified\":[{}],\"removed\":[{}],\"next_cursor\":\"{next_cursor}\",\"has_more\":{has_more},\
             \"request_id\":\"fixture-{n}\",\"accounts\":[],\"transactions_update_status\":\"HISTORICAL_UPDATE_COMPLETE\"}}",
            added.join(","),
            modified.join(","),
            removed.join(",")
        ),
    )
}
