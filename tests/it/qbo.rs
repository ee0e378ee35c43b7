//! QuickBooks Online against a fixture Intuit on 127.0.0.1 (axum): a token endpoint that rotates
//! the refresh token on every refresh and answers `invalid_grant` to a superseded one, reports
//! behind a bearer check answering the gateway's lowercase `fault` 401, nested sections, a 200
//! carrying a `Fault`, `NoReportData`, 429s, and requests it holds so a test can `kill -9` the
//! process in the middle. The realm id picks the behaviour.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use resources::qbo::{QboTokens, TokenExchange};
use serde_json::{Value, json};

use crate::common::Robo;

const CLIENT_ID: &str = "ABqboClientIdFixture";
const CLIENT_SECRET: &str = "QBOSECRETfixture9x7Q";
/// Every token the fixture issues starts with this, so a test can hunt for leaks.
const TOKEN_MARK: &str = "QBTOKEN";

const NORMAL: &str = "1001";
const FAULT_IN_200: &str = "1002";
const NO_DATA: &str = "1003";
const THROTTLED: &str = "1004";
const HELD_REPORT: &str = "1005";

const SAMPLE: &str = include_str!("../../resources/fixtures/qbo/profit_and_loss.json");

#[derive(Default)]
struct Intuit {
    generation: AtomicUsize,
    /// The one refresh token that works.
    refresh: Mutex<String>,
    /// The one access token that works (`None`: every bearer is refused).
    access: Mutex<Option<String>>,
    /// Refreshes answered.
    exchanges: AtomicUsize,
    /// Token requests received (answered or not).
    token_requests: AtomicUsize,
    /// Report requests received, by realm.
    reports: Mutex<HashMap<String, usize>>,
    /// Hold token requests (before rotating).
    hold_token: AtomicBool,
    /// Hold report requests of HELD_REPORT.
    hold_report: AtomicBool,
    /// Seconds slept before answering a refresh (to widen a race).
    refresh_delay_ms: AtomicUsize,
    /// Milliseconds a report takes (so steps overlap).
    report_delay_ms: AtomicUsize,
    /// Intuit's rate limit, scaled down: more than this many reports of one realm within
    /// `WINDOW` get a 429 (0: no limit).
    window_limit: AtomicUsize,
    /// Arrival times of each realm's reports within the window.
    arrivals: Mutex<HashMap<String, std::collections::VecDeque<std::time::Instant>>>,
    /// 429s answered for going over `window_limit`.
    rate_limited: AtomicUsize,
    /// Reports being answered now, by realm, and the most seen at once: per realm and in all.
    in_flight: Mutex<(HashMap<String, usize>, usize, usize)>,
}

/// The window of the fixture's rate limit.
const WINDOW: Duration = Duration::from_secs(3);

fn with_tid(status: StatusCode, body: Value) -> Response {
    let tid = format!("1-{:08x}", fastrand::u32(..));
    (status, [("intuit_tid", tid)], axum::Json(body)).into_response()
}

async fn token(State(f): State<Arc<Intuit>>, headers: HeaderMap, body: String) -> Response {
    f.token_requests.fetch_add(1, Ordering::SeqCst);
    if f.hold_token.load(Ordering::SeqCst) {
        while f.hold_token.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A held request never reached processing: the caller is gone, nothing rotates.
        return with_tid(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "unavailable"}));
    }
    let delay = f.refresh_delay_ms.load(Ordering::SeqCst) as u64;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let basic = format!("Basic {}", base64(&format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return with_tid(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(form.get("grant_type").map(String::as_str), Some("refresh_token"));
    let mut refresh = f.refresh.lock().unwrap();
    if form.get("refresh_token") != Some(&*refresh) {
        return with_tid(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}),
        );
    }
    let g = f.generation.fetch_add(1, Ordering::SeqCst) + 1;
    *refresh = format!("{TOKEN_MARK}-refresh-{g}");
    let access = format!("{TOKEN_MARK}-access-{g}");
    *f.access.lock().unwrap() = Some(access.clone());
    f.exchanges.fetch_add(1, Ordering::SeqCst);
    // Intuit's samples give the numbers as strings: parse leniently.
    with_tid(
        StatusCode::OK,
        json!({"access_token": access, "refresh_token": *refresh, "token_type": "bearer",
               "expires_in": "3600", "x_refresh_token_expires_in": 8726400}),
    )
}

fn base64(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn report(
    State(f): State<Arc<Intuit>>,
    Path((realm, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let calls = {
        let mut reports = f.reports.lock().unwrap();
        let n = reports.entry(realm.clone()).or_default();
        *n += 1;
        *n
    };
    assert_eq!(q.get("minorversion").map(String::as_str), Some("75"));
    assert_eq!(headers.get("accept").and_then(|v| v.to_str().ok()), Some("application/json"));
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let valid = f.access.lock().unwrap().clone();
    if bearer.is_none() || bearer.map(str::to_owned) != valid {
        // The gateway's envelope: lowercase, as python-quickbooks#250 shows.
        return with_tid(
            StatusCode::UNAUTHORIZED,
            json!({"warnings": null, "intuitObject": null, "fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401", "detail": "Token expired", "code": "3200", "element": null}], "type": "AUTHENTICATION"}, "report": null, "time": 1733300000000u64}),
        );
    }
    let limit = f.window_limit.load(Ordering::SeqCst);
    if limit > 0 {
        let now = std::time::Instant::now();
        let mut arrivals = f.arrivals.lock().unwrap();
        let seen = arrivals.entry(realm.clone()).or_default();
        seen.retain(|t| now.duration_since(*t) < WINDOW);
        seen.push_back(now);
        if seen.len() > limit {
            f.rate_limited.fetch_add(1, Ordering::SeqCst);
            return with_tid(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"Fault": {"Error": [{"Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429", "Detail": "The request limit was reached.", "code": "3001"}], "type": "SERVICE"}}),
            );
        }
    }
    let delay = f.report_delay_ms.load(Ordering::SeqCst) as u64;
    if delay > 0 {
        {
            let mut guard = f.in_flight.lock().unwrap();
            let (by_realm, max_realm, max_total) = &mut *guard;
            *by_realm.entry(realm.clone()).or_default() += 1;
            *max_realm = (*max_realm).max(by_realm[&realm]);
            *max_total = (*max_total).max(by_realm.values().sum());
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        *f.in_flight.lock().unwrap().0.get_mut(&realm).unwrap() -= 1;
    }
    if realm == HELD_REPORT {
        while f.hold_report.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (start, end) = (q["start_date"].clone(), q["end_date"].clone());
    match realm.as_str() {
        FAULT_IN_200 => with_tid(
            StatusCode::OK,
            json!({"Fault": {"Error": [{"Message": "A business validation error has occurred", "Detail": "Invalid date range", "code": "6000"}], "type": "ValidationFault"}, "time": "2025-12-03T06:00:00-08:00"}),
        ),
        THROTTLED if calls <= 2 => with_tid(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"Fault": {"Error": [{"Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429", "Detail": "The request limit was reached.", "code": "3001"}], "type": "SERVICE"}}),
        ),
        NO_DATA => with_tid(
            StatusCode::OK,
            json!({"Header": {"ReportName": name, "StartPeriod": start, "EndPeriod": end, "Currency": "USD",
                "Option": [{"Name": "NoReportData", "Value": "true"}]}, "Columns": {"Column": []}, "Rows": {}}),
        ),
        _ => {
            let mut body: Value = serde_json::from_str(SAMPLE).unwrap();
            body["Header"]["ReportName"] = json!(name);
            body["Header"]["StartPeriod"] = json!(start);
            body["Header"]["EndPeriod"] = json!(end);
            with_tid(StatusCode::OK, body)
        }
    }
}

async fn serve() -> (String, Arc<Intuit>) {
    let intuit = Arc::new(Intuit::default());
    *intuit.refresh.lock().unwrap() = format!("{TOKEN_MARK}-refresh-0");
    let app = Router::new()
        .route("/oauth2/v1/tokens/bearer", post(token))
        .route("/v3/company/{realm}/reports/{name}", get(report))
        .with_state(intuit.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, intuit)
}

/// The environment of a live QuickBooks deployment against the fixture.
fn live_env(url: &str) -> Vec<(String, String)> {
    vec![
        ("QBO_CLIENT_ID".into(), CLIENT_ID.into()),
        ("QBO_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
        ("QBO_API_URL".into(), url.into()),
        ("QBO_TOKEN_URL".into(), format!("{url}/oauth2/v1/tokens/bearer")),
        ("QBO_THROTTLE_WAIT_SECS".into(), "1".into()),
    ]
}

/// Runs the binary with the live environment (on a blocking thread: the fixture runs on this
/// test's runtime).
async fn run(robo: &Arc<Robo>, url: &str, args: &[&str]) -> crate::common::Run {
    run_env(robo, url, args, &[]).await
}

async fn run_env(robo: &Arc<Robo>, url: &str, args: &[&str], extra: &[(&str, &str)]) -> crate::common::Run {
    let (robo, args) = (robo.clone(), args.iter().map(ToString::to_string).collect::<Vec<_>>());
    let mut env = live_env(url);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        robo.run_with(&args, &env)
    })
    .await
    .unwrap()
}

async fn connect(robo: &Arc<Robo>, url: &str, realm: &str, token: &str) {
    let r = run(robo, url, &["qbo", "connect", realm, "--refresh-token", token]).await;
    assert_eq!(r.code, 0, "{r:?}");
}

async fn stored_refresh(robo: &Robo, realm: &str) -> String {
    let mut db = robo.app_db().await;
    sqlx::query_scalar("SELECT refresh_token FROM qbo_realms WHERE realm_id = $1")
        .bind(realm)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

fn metadata(robo: &Robo, asset: &str, key: &str) -> Value {
    let h = robo.ok(&["history", asset, "-p", key, "--json"]).stdout;
    let h: Value = serde_json::from_str(&h).unwrap();
    h["materializations"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reports_rotate_the_refresh_token_and_ride_out_a_401() {
    let (url, intuit) = serve().await;
    let robo = Arc::new(Robo::new());
    connect(&robo, &url, NORMAL, &format!("{TOKEN_MARK}-refresh-0")).await;

    let r = run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "2025-11", "--dim", "realm=1001"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 1, "one refresh for the first report");
    // The rotated refresh token was stored: the one Intuit accepts now.
    assert_eq!(stored_refresh(&robo, NORMAL).await, *intuit.refresh.lock().unwrap());
    let m = metadata(&robo, "qbo_profit_and_loss", "month=2025-11|realm=1001");
    assert_eq!(m["metadata"]["source"], "live");
    assert_eq!(m["metadata"]["report_name"], "ProfitAndLoss");
    assert!(m["metadata"]["intuit_tid"].as_str().unwrap().starts_with("1-"), "{m}");
    assert_eq!(m["rows"], 12);

    // The access token lives an hour: the balance sheet uses it without a refresh.
    let r = run(&robo, &url, &["materialize", "qbo_balance_sheet", "-p", "month=2025-11|realm=1001"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 1);

    // Intuit revokes the access token: the 401 buys one refresh and one retry.
    *intuit.access.lock().unwrap() = None;
    let r = run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "month=2025-10|realm=1001"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 2);
    assert_eq!(intuit.reports.lock().unwrap()[NORMAL], 4, "three reports, one of them tried twice");
    assert_eq!(stored_refresh(&robo, NORMAL).await, *intuit.refresh.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_refresh_token_fails_at_once_saying_to_reconnect() {
    let (url, intuit) = serve().await;
    let robo = Arc::new(Robo::new());
    connect(&robo, &url, NORMAL, &format!("{TOKEN_MARK}-refresh-old")).await;
    let r = run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "month=2025-11|realm=1001"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("invalid_grant"), "{}", r.stdout);
    assert!(
        r.stdout.contains("reconnect the realm with `robo-assets qbo connect 1001 --refresh-token …`"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("intuit_tid 1-"), "{}", r.stdout);
    assert_eq!(intuit.token_requests.load(Ordering::SeqCst), 1, "not retried: retrying cannot fix it");
    assert_eq!(intuit.reports.lock().unwrap().len(), 0, "no report was asked without a token");
    // Reconnecting with the valid token fixes it.
    connect(&robo, &url, NORMAL, &format!("{TOKEN_MARK}-refresh-0")).await;
    let r = run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "month=2025-11|realm=1001"]).await;
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_throttles_and_empty_reports() {
    let (url, intuit) = serve().await;
    let robo = Arc::new(Robo::new());
    for realm in [FAULT_IN_200, NO_DATA, THROTTLED] {
        connect(&robo, &url, realm, &format!("{TOKEN_MARK}-refresh-0")).await;
        // Each connect stores the same first token; the fixture accepts only the current one,
        // so give each realm its turn: refresh now, through the realm's first report.
        *intuit.refresh.lock().unwrap() = format!("{TOKEN_MARK}-refresh-0");
        let r =
            run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", &format!("month=2025-11|realm={realm}")])
                .await;
        match realm {
            FAULT_IN_200 => {
                // A 200 that carries a Fault is an error; a validation fault is not retried.
                assert_eq!(r.code, 1, "{r:?}");
                assert!(
                    r.stdout.contains(
                        "HTTP 200: ValidationFault 6000: A business validation error has occurred (Invalid date range)"
                    ),
                    "{}",
                    r.stdout
                );
                assert_eq!(intuit.reports.lock().unwrap()[realm], 1);
            }
            NO_DATA => {
                assert_eq!(r.code, 0, "{r:?}");
                let m = metadata(&robo, "qbo_profit_and_loss", "month=2025-11|realm=1003");
                assert_eq!(m["rows"], 0);
                assert_eq!(m["metadata"]["no_report_data"], true);
            }
            _ => {
                // Two 429s, each waited out (QBO_THROTTLE_WAIT_SECS=1), then the report.
                assert_eq!(r.code, 0, "{r:?}");
                assert_eq!(intuit.reports.lock().unwrap()[realm], 3);
                assert_eq!(metadata(&robo, "qbo_profit_and_loss", "month=2025-11|realm=1004")["rows"], 12);
            }
        }
    }
}

/// Two workers (two pools on one app database) whose access token expired refresh once between
/// them: the second waits on the realm's row lock, then uses the token the first stored.
async fn one_refresh_between_two_workers(a: Arc<dyn QboTokens>, b: Arc<dyn QboTokens>) {
    let (url, intuit) = serve().await;
    intuit.refresh_delay_ms.store(300, Ordering::SeqCst);
    let config = |url: &str| {
        let mut c = resources::QboConfig::new(CLIENT_ID.into(), resources::Secret::new(CLIENT_SECRET));
        c.api_url = url.to_owned();
        c.token_url = format!("{url}/oauth2/v1/tokens/bearer");
        c
    };
    let now = chrono::Utc::now();
    a.connect(NORMAL, &resources::Secret::new(format!("{TOKEN_MARK}-refresh-0")), now).await.unwrap();
    let client_a = Arc::new(resources::QboClient::new(config(&url), a.clone()).unwrap());
    let client_b = Arc::new(resources::QboClient::new(config(&url), b.clone()).unwrap());
    let (ta, tb) = tokio::join!(
        async { a.access_token(NORMAL, None, now, &*client_a as &dyn TokenExchange).await.unwrap() },
        async { b.access_token(NORMAL, None, now, &*client_b as &dyn TokenExchange).await.unwrap() },
    );
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(ta, tb, "both use the token it bought");
    assert_eq!(intuit.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_between_two_workers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let a = Arc::new(resources::SqliteAppDb::open(&path).await.unwrap());
    let b = Arc::new(resources::SqliteAppDb::open(&path).await.unwrap());
    one_refresh_between_two_workers(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_between_two_workers_on_postgres() {
    let Some(db) = crate::postgres::TestDb::create().await else { return };
    let a = Arc::new(resources::PgAppDb::connect(&db.url, "test app database".into()).await.unwrap());
    let b = Arc::new(resources::PgAppDb::connect(&db.url, "test app database".into()).await.unwrap());
    one_refresh_between_two_workers(a.clone(), b.clone()).await;
    a.pool().close().await;
    b.pool().close().await;
    db.drop_db().await;
}

/// Starts a `robo-assets worker` against the fixture.
fn spawn_worker(robo: &Robo, url: &str, args: &[&str], extra: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = robo.command(&[&["worker"], args].concat());
    cmd.envs(live_env(url)).envs(extra.iter().copied());
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}

/// Waits until `n` requests succeeded (failing on a failed one), then stops the workers.
async fn drain(robo: &Robo, n: i64, workers: Vec<std::process::Child>) {
    let mut db = robo.lineage_db().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (done, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed') \
             FROM materialization_requests",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(failed, 0, "no request failed");
        if done == n {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{done} of {n} requests succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mut w in workers {
        let _ = std::process::Command::new("kill").args(["-INT", &w.id().to_string()]).status();
        w.wait().unwrap();
    }
}

/// Two workers share one realm's pace: the slots are reserved on the realm's row in the app
/// database, so two processes at 2 requests a second each still send 2 a second between them.
/// A fixture that refuses more than 8 in 3 s (Intuit's limit, scaled down) answers no 429; with
/// pacing kept per process it would see 4 a second and throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_one_pace_per_realm() {
    let (url, intuit) = serve().await;
    intuit.window_limit.store(8, Ordering::SeqCst);
    let robo = Arc::new(Robo::new());
    connect(&robo, &url, NORMAL, &format!("{TOKEN_MARK}-refresh-0")).await;
    let pace = [("QBO_REQUESTS_PER_SECOND", "2")];
    let r =
        run_env(&robo, &url, &["submit", "qbo_profit_and_loss", "--from", "2025-01", "--to", "2025-12"], &pace).await;
    assert_eq!(r.code, 0, "{r:?}");
    let workers = (0..2).map(|_| spawn_worker(&robo, &url, &["--concurrency", "2"], &pace)).collect();
    drain(&robo, 12, workers).await;
    assert_eq!(intuit.rate_limited.load(Ordering::SeqCst), 0, "no report was throttled");
    assert_eq!(intuit.reports.lock().unwrap()[NORMAL], 12, "one report per month");
}

/// `pools set quickbooks 1` lets one step per realm run at once, across workers, while other
/// realms run beside it (the pool is kept per realm, not for QuickBooks as a whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickbooks_pool_holds_per_realm() {
    let (url, intuit) = serve().await;
    intuit.report_delay_ms.store(400, Ordering::SeqCst);
    let robo = Arc::new(Robo::new());
    for realm in [NORMAL, "2001"] {
        connect(&robo, &url, realm, &format!("{TOKEN_MARK}-refresh-0")).await;
    }
    // The fixture has one token chain: realm 2001 borrows the access token 1001 bought.
    let r = run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "2025-12", "--dim", "realm=1001"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        robo.home().join("app.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "UPDATE qbo_realms SET (access_token, access_expires_at) = \
         (SELECT access_token, access_expires_at FROM qbo_realms WHERE realm_id = '1001') WHERE realm_id = '2001'",
    )
    .execute(&mut db)
    .await
    .unwrap();
    robo.ok(&["pools", "set", "quickbooks", "1"]);
    let r = run(&robo, &url, &["submit", "qbo_profit_and_loss", "--from", "2025-01", "--to", "2025-04"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let workers = (0..2).map(|_| spawn_worker(&robo, &url, &["--concurrency", "8"], &[])).collect();
    drain(&robo, 9, workers).await;
    let (_, max_realm, max_total) = *intuit.in_flight.lock().unwrap();
    assert_eq!(max_realm, 1, "one report per realm at a time");
    assert_eq!(max_total, 2, "the two realms ran side by side");
    let pools = robo.ok(&["pools"]).stdout;
    assert!(pools.contains("1 per realm"), "{pools}");
}

/// Spawns a materialization, waits until `reached` says the fixture holds its request, and
/// kills the process with SIGKILL.
async fn kill_9_when(robo: &Arc<Robo>, url: &str, key: &str, reached: impl Fn() -> bool) {
    let mut cmd = robo.command(&["materialize", "qbo_profit_and_loss", "-p", key]);
    for (k, v) in live_env(url) {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    for _ in 0..500 {
        if reached() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reached(), "the process reached the fixture");
    let status = std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_token_refresh_or_a_report_loses_no_token() {
    let (url, intuit) = serve().await;
    let robo = Arc::new(Robo::new());
    connect(&robo, &url, HELD_REPORT, &format!("{TOKEN_MARK}-refresh-0")).await;

    // Killed while the token endpoint holds the refresh: the stored refresh token still works.
    intuit.hold_token.store(true, Ordering::SeqCst);
    kill_9_when(&robo, &url, "month=2025-11|realm=1005", || intuit.token_requests.load(Ordering::SeqCst) == 1).await;
    intuit.hold_token.store(false, Ordering::SeqCst);
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 0, "the held refresh was never answered");
    assert_eq!(stored_refresh(&robo, HELD_REPORT).await, *intuit.refresh.lock().unwrap());

    // Killed after the refresh, while the report is held: the rotated token was stored before
    // the access token was used, so nothing is lost and the rerun needs no refresh.
    intuit.hold_report.store(true, Ordering::SeqCst);
    let reports = || intuit.reports.lock().unwrap().get(HELD_REPORT).copied().unwrap_or(0);
    kill_9_when(&robo, &url, "month=2025-11|realm=1005", || reports() == 1).await;
    intuit.hold_report.store(false, Ordering::SeqCst);
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 1);
    assert_eq!(stored_refresh(&robo, HELD_REPORT).await, *intuit.refresh.lock().unwrap());

    let r = run(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "month=2025-11|realm=1005"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(intuit.exchanges.load(Ordering::SeqCst), 1, "the stored access token was reused");
    let runs: Value = serde_json::from_str(&robo.ok(&["runs", "--json"]).stdout).unwrap();
    let statuses: Vec<&str> = runs["runs"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "canceled", "canceled"], "the killed runs ended, nothing left running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output_or_the_lineage_store() {
    let (url, intuit) = serve().await;
    let robo = Arc::new(Robo::new());
    connect(&robo, &url, NORMAL, &format!("{TOKEN_MARK}-refresh-0")).await;
    let trace = [("RUST_LOG", "trace")];
    let mut outputs = Vec::new();
    for args in [
        &["materialize", "qbo_profit_and_loss", "-p", "month=2025-11|realm=1001", "--json"][..],
        &["qbo", "realms"],
        &["history", "qbo_profit_and_loss", "--json"],
        &["why", "qbo_profit_and_loss", "-p", "month=2025-11|realm=1001", "--json"],
        &["runs", "--json"],
    ] {
        let r = run_env(&robo, &url, args, &trace).await;
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        outputs.push(format!("{}{}", r.stdout, r.stderr));
    }
    // A refused token too: its error must not echo it.
    *intuit.access.lock().unwrap() = None;
    *intuit.refresh.lock().unwrap() = "something-else".into();
    let r =
        run_env(&robo, &url, &["materialize", "qbo_profit_and_loss", "-p", "month=2025-10|realm=1001"], &trace).await;
    assert_eq!(r.code, 1);
    outputs.push(format!("{}{}", r.stdout, r.stderr));
    // The lineage store's recent writes are in its WAL until a checkpoint: read both.
    let mut files = vec![std::fs::read(robo.home().join("lineage.db")).unwrap()];
    files.extend(std::fs::read(robo.home().join("lineage.db-wal")));
    for entry in walk(&robo.home().join("storage")) {
        files.push(std::fs::read(entry).unwrap());
    }
    for secret in [CLIENT_SECRET, TOKEN_MARK, &base64(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))] {
        for out in &outputs {
            assert!(!out.contains(secret), "{secret} leaked in output:\n{out}");
        }
        for bytes in &files {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} leaked in a file");
        }
    }
    assert!(outputs[0].contains("qbo_profit_and_loss"), "the trace ran");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_dev_source_works_offline_and_bad_input_exits_2() {
    let robo = Robo::new();
    let connect = robo.ok(&["qbo", "connect", "9130354", "--refresh-token", "dev-token"]).stdout;
    assert!(connect.contains("labeled dev source"), "{connect}");
    let r = robo.ok(&["backfill", "group:quickbooks", "--from", "2025-11", "--to", "2025-12"]);
    assert!(r.stdout.contains("qbo_balance_sheet") && r.stdout.contains("qbo_profit_and_loss"), "{}", r.stdout);
    let status: Value = serde_json::from_str(&robo.ok(&["status", "group:quickbooks", "--json"]).stdout).unwrap();
    for asset in status.as_array().unwrap() {
        assert_eq!(asset["counts"]["materialized"], 2, "{asset}");
    }
    let m = metadata(&robo, "qbo_profit_and_loss", "2025-12|realm=9130354");
    assert_eq!(m["metadata"]["source"], "dev");
    assert_eq!(m["metadata"]["end_period"], "2025-12-31");
    let file = robo.home().join("storage/qbo_profit_and_loss/month=2025-12/realm=9130354/data.parquet");
    assert!(file.exists());

    // The schedule re-reads the month before for every realm.
    let sim: Value = serde_json::from_str(
        &robo.ok(&["simulate", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-04T00:00:00Z", "--json"]).stdout,
    )
    .unwrap();
    let tick =
        sim["ticks"].as_array().unwrap().iter().find(|t| t["instigator"] == "qbo_monthly_close").expect("a tick");
    let mut requested: Vec<String> = tick["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["asset"].as_str().unwrap(), r["partition"].as_str().unwrap()))
        .collect();
    requested.sort();
    assert_eq!(
        requested,
        [
            "qbo_balance_sheet month=2025-11|realm=9130354",
            "qbo_balance_sheet month=2025-12|realm=9130354",
            "qbo_profit_and_loss month=2025-11|realm=9130354",
            "qbo_profit_and_loss month=2025-12|realm=9130354"
        ]
    );

    for (args, says) in [
        (
            &["qbo", "connect", "acme", "--refresh-token", "x"][..],
            "\"acme\" is not a realm id: expected a QuickBooks realm id: 1 to 20 digits",
        ),
        (&["qbo", "connect", "123", "--refresh-token", "has space"], "has spaces"),
        (
            &["materialize", "qbo_profit_and_loss", "-p", "month=2025-12|realm=4242"],
            "in dimension realm: unknown partition \"4242\" for dynamic qbo_realms partitions; valid keys: 9130354",
        ),
        (
            &["materialize", "qbo_profit_and_loss", "-p", "month=2026-02|realm=9130354"],
            "in dimension month: partition \"2026-02\" is out of range",
        ),
        (&["materialize", "qbo_profit_and_loss", "-p", "month=2025-12|realm=x1"], "expected a QuickBooks realm id"),
    ] {
        let r = robo.run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    let r = robo.run_with(&["qbo", "realms"], &[("QBO_CLIENT_ID", "abc")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("QBO_CLIENT_SECRET is not set"), "{}", r.stderr);
    let r = robo
        .run_with(&["status"], &[("QBO_CLIENT_ID", "abc"), ("QBO_CLIENT_SECRET", "s"), ("QBO_API_URL", "quickbooks")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("QBO_API_URL=quickbooks is not an http(s) URL"), "{}", r.stderr);

    // Other tools read the rows with their types.
    let Ok(python) = std::env::var("ROBO_ASSETS_TEST_PYTHON") else {
        assert!(std::env::var("CI").is_err(), "CI must set ROBO_ASSETS_TEST_PYTHON");
        return;
    };
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, pyarrow.dataset as ds\n\
             t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table()\n\
             s = t.schema\n\
             print(s.field('amount').type, s.field('period_end').type, s.field('amount').nullable, t.num_rows, sorted(set(t.column('month').to_pylist())))\n\
             print(sum(a for a, n in zip(t.column('amount').to_pylist(), t.column('account_name').to_pylist()) if a is not None and n == 'Net Income'))",
            robo.home().join("storage/qbo_profit_and_loss").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "decimal128(18, 2) date32[day] True 24 ['2025-11', '2025-12']");
    // Net income of the two months, summed exactly from the recorded rows.
    let net: i128 = ["2025-11", "2025-12"]
        .iter()
        .map(|m| {
            let t = std::fs::read(
                robo.home().join(format!("storage/qbo_profit_and_loss/month={m}/realm=9130354/data.parquet")),
            )
            .unwrap();
            net_income_cents(&t)
        })
        .sum();
    assert_eq!(lines.next().unwrap(), format!("{}.{:02}", net / 100, net % 100));
}

fn net_income_cents(parquet: &[u8]) -> i128 {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(parquet))
            .unwrap()
            .build()
            .unwrap();
    let mut total = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let names = batch.column_by_name("account_name").unwrap().as_string::<i32>();
        let amounts = batch.column_by_name("amount").unwrap().as_primitive::<arrow_array::types::Decimal128Type>();
        for i in 0..batch.num_rows() {
            if names.value(i) == "Net Income" && !amounts.is_null(i) {
                total += amounts.value(i);
            }
        }
    }
    total
}
