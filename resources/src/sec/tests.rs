//! The client against a fixture SEC on 127.0.0.1 (axum) shaped like data.sec.gov: it refuses
//! requests without a declared User-Agent, throttles past 10 requests/s with the 403 "Request
//! Rate Threshold Exceeded" page, answers 429s and other 403s for some CIKs, answers 404 with
//! an S3 XML body for an unknown CIK, gzips when asked, and serves companyfacts with instant and
//! duration facts, a missing frame, a restated duplicate, exponents, and `facts: {}`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int32Type};
use arrow_array::{Array, Decimal128Array};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::*;

const UA: &str = "RoboSystems Test admin@robosystems.test";
const APPLE: &str = "0000320193";

const RATE_PAGE: &str = "<html><head><title>SEC.gov | Request Rate Threshold Exceeded</title></head><body>\
    <h1>Your Request Originates from an Undeclared Automated Tool</h1>\
    <p>Request Rate Threshold Exceeded</p></body></html>";
const UNDECLARED_PAGE: &str = "<html><head><title>SEC.gov | Your Request Originates from an Undeclared Automated \
    Tool</title></head><body><h1>Your Request Originates from an Undeclared Automated Tool</h1><p>To allow for equitable \
    access to all users, SEC reserves the right to limit requests originating from undeclared automated tools. Please \
    declare your traffic by updating your user agent to include company specific information.</p></body></html>";
const NO_SUCH_KEY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
    <Message>The specified key does not exist.</Message></Error>";

/// One request the fixture saw: when, path, user agent, accept-encoding, status answered.
type Seen = (std::time::Instant, String, String, String, u16);

/// What the fixture saw and how it misbehaves.
#[derive(Default)]
struct Fixture {
    /// Every request.
    log: Mutex<Vec<Seen>>,
    /// Times of answered requests in the last second, for the rate limit.
    window: Mutex<Vec<std::time::Instant>>,
    /// Times the rate limit answered the 403 page.
    over_limit: AtomicUsize,
    /// Per-CIK call counts.
    calls: Mutex<HashMap<String, usize>>,
    /// Bytes of gzip bodies sent.
    gzipped: AtomicUsize,
}

fn html(status: StatusCode, page: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

fn json(headers: &HeaderMap, fixture: &Fixture, body: String) -> Response {
    let accepts_gzip =
        headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"));
    if !accepts_gzip {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    fixture.gzipped.fetch_add(gz.len(), Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/json"), (header::CONTENT_ENCODING, "gzip")], gz).into_response()
}

fn fact(start: Option<&str>, end: &str, val: &str, accn: &str, frame: Option<&str>) -> String {
    let start = start.map(|s| format!("\"start\":\"{s}\",")).unwrap_or_default();
    let frame = frame.map(|f| format!(",\"frame\":\"{f}\"")).unwrap_or_default();
    format!(
        "{{{start}\"end\":\"{end}\",\"val\":{val},\"accn\":\"{accn}\",\"fy\":2024,\"fp\":\"FY\",\"form\":\"10-K\",\
         \"filed\":\"2024-11-01\"{frame}}}"
    )
}

/// Apple-shaped companyfacts: instant and duration facts, a restated duplicate without a frame,
/// a per-share decimal, an exponent, and a 15-billion share count.
fn apple_facts() -> String {
    let revenue = [
        fact(Some("2023-10-01"), "2024-09-28", "391035000000", "0000320193-24-000123", Some("CY2024")),
        fact(Some("2023-10-01"), "2024-09-28", "391036000000", "0000320193-25-000008", None),
    ]
    .join(",");
    let eps = fact(Some("2023-10-01"), "2024-09-28", "1.52", "0000320193-24-000123", Some("CY2024"));
    let ratio = fact(Some("2023-10-01"), "2024-09-28", "2.5E-4", "0000320193-24-000123", None);
    let shares = fact(None, "2024-10-18", "15441881000", "0000320193-24-000123", Some("CY2024Q3I"));
    format!(
        "{{\"cik\":320193,\"entityName\":\"Apple Inc.\",\"facts\":{{\
         \"dei\":{{\"EntityCommonStockSharesOutstanding\":{{\"label\":\"Shares\",\"description\":null,\
         \"units\":{{\"shares\":[{shares}]}}}}}},\
         \"us-gaap\":{{\"Revenues\":{{\"label\":\"Revenues\",\"description\":\"…\",\"units\":{{\"USD\":[{revenue}]}}}},\
         \"EarningsPerShareDiluted\":{{\"label\":null,\"description\":null,\"units\":{{\"USD/shares\":[{eps}]}}}},\
         \"SomeRatio\":{{\"label\":\"r\",\"description\":null,\"units\":{{\"pure\":[{ratio}]}}}}}}}}}}"
    )
}

fn submissions(cik: u64, with_older: bool) -> String {
    let files = if with_older {
        format!(
            "[{{\"name\":\"CIK{cik:010}-submissions-001.json\",\"filingCount\":1,\"filingFrom\":\"2001-01-01\",\"filingTo\":\"2001-12-31\"}}]"
        )
    } else {
        "[]".to_owned()
    };
    format!(
        "{{\"cik\":\"{cik}\",\"entityType\":\"operating\",\"name\":\"Apple Inc.\",\"tickers\":[\"AAPL\"],\
         \"filings\":{{\"recent\":{{\
         \"accessionNumber\":[\"0000320193-25-000057\",\"0000320193-25-000040\",\"0000320193-24-000123\"],\
         \"filingDate\":[\"2025-05-02\",\"2025-04-01\",\"2024-11-01\"],\
         \"reportDate\":[\"2025-03-29\",\"\",\"2024-09-28\"],\
         \"acceptanceDateTime\":[\"2025-05-02T16:30:00.000Z\",\"2025-04-01T18:00:00.000Z\",\"2024-11-01T16:30:00.000Z\"],\
         \"form\":[\"10-Q\",\"4\",\"10-K\"],\
         \"primaryDocument\":[\"aapl-20250329.htm\",\"\",\"aapl-20240928.htm\"]}},\
         \"files\":{files}}}}}"
    )
}

impl Fixture {
    /// The SEC's checks every request goes through; `Some` when one refuses it.
    fn gatekeep(&self, headers: &HeaderMap) -> Option<Response> {
        let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ua.contains('@') {
            return Some(html(StatusCode::FORBIDDEN, UNDECLARED_PAGE));
        }
        let now = std::time::Instant::now();
        let mut window = self.window.lock().unwrap();
        window.retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        if window.len() >= 10 {
            self.over_limit.fetch_add(1, Ordering::SeqCst);
            return Some(html(StatusCode::FORBIDDEN, RATE_PAGE));
        }
        window.push(now);
        None
    }

    fn record(&self, path: &str, headers: &HeaderMap, status: u16) {
        let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        self.log.lock().unwrap().push((
            std::time::Instant::now(),
            path.to_owned(),
            h(header::USER_AGENT),
            h(header::ACCEPT_ENCODING),
            status,
        ));
    }

    fn call(&self, cik: &str) -> usize {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(cik.to_owned()).or_default();
        *n += 1;
        *n
    }

    fn calls(&self, cik: &str) -> usize {
        self.calls.lock().unwrap().get(cik).copied().unwrap_or(0)
    }
}

/// The faults shared by both endpoints, by CIK; `None` to answer normally.
fn fault(f: &Fixture, cik: &str) -> Option<Response> {
    let n = f.call(cik);
    match cik {
        "0000000404" => {
            Some((StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/xml")], NO_SUCH_KEY).into_response())
        }
        // Throttled once by 429, once by the 403 page, or always.
        "0000000429" if n == 1 => Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response()),
        "0000000403" if n == 1 => Some(html(StatusCode::FORBIDDEN, RATE_PAGE)),
        "0000000430" => Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response()),
        "0000000999" => Some(html(
            StatusCode::FORBIDDEN,
            "<html><body><h1>Access Denied</h1><p>You don't have permission to access this resource.</p></body></html>",
        )),
        "0000000503" if n <= 2 => Some((StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()),
        _ => None,
    }
}

async fn companyfacts(State(f): State<Arc<Fixture>>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    let path = format!("/api/xbrl/companyfacts/{file}");
    let response = companyfacts_answer(&f, &headers, &file);
    f.record(&path, &headers, response.status().as_u16());
    response
}

fn companyfacts_answer(f: &Fixture, headers: &HeaderMap, file: &str) -> Response {
    if let Some(refused) = f.gatekeep(headers) {
        return refused;
    }
    let cik = file.trim_start_matches("CIK").trim_end_matches(".json").to_owned();
    if let Some(faulty) = fault(f, &cik) {
        return faulty;
    }
    let body = match cik.as_str() {
        APPLE | "0000000429" | "0000000403" | "0000000503" => {
            apple_facts().replace("\"cik\":320193", &format!("\"cik\":{}", cik.parse::<u64>().unwrap()))
        }
        "0000000001" => "{\"cik\":1,\"entityName\":\"Empty Shell Co\",\"facts\":{}}".to_owned(),
        "0000000002" => apple_facts().replace("\"cik\":320193", "\"cik\":2").replace("1.52", "0.12345678901"),
        _ => return (StatusCode::NOT_FOUND, NO_SUCH_KEY).into_response(),
    };
    json(headers, f, body)
}

async fn submissions_route(State(f): State<Arc<Fixture>>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    let path = format!("/submissions/{file}");
    let response = submissions_answer(&f, &headers, &file);
    f.record(&path, &headers, response.status().as_u16());
    response
}

fn submissions_answer(f: &Fixture, headers: &HeaderMap, file: &str) -> Response {
    if let Some(refused) = f.gatekeep(headers) {
        return refused;
    }
    if file == "CIK0000320193-submissions-001.json" {
        let page = "{\"accessionNumber\":[\"0000912057-01-000001\"],\"filingDate\":[\"2001-03-01\"],\
            \"reportDate\":[\"2000-12-30\"],\"form\":[\"10-Q\"],\"primaryDocument\":[\"\"]}";
        return json(headers, f, page.to_owned());
    }
    let cik = file.trim_start_matches("CIK").trim_end_matches(".json").to_owned();
    if let Some(faulty) = fault(f, &cik) {
        return faulty;
    }
    match cik.as_str() {
        APPLE => json(headers, f, submissions(320193, true)),
        "0000000429" | "0000000403" => json(headers, f, submissions(cik.parse().unwrap(), false)),
        _ => (StatusCode::NOT_FOUND, NO_SUCH_KEY).into_response(),
    }
}

async fn serve() -> (String, Arc<Fixture>) {
    let fixture = Arc::new(Fixture::default());
    let app = Router::new()
        .route("/api/xbrl/companyfacts/{file}", get(companyfacts))
        .route("/submissions/{file}", get(submissions_route))
        .with_state(fixture.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fixture)
}

fn config(cool_down_ms: u64) -> SecConfig {
    SecConfig {
        cool_down: Duration::from_millis(cool_down_ms),
        timeout: Duration::from_secs(5),
        first_delay: Duration::from_millis(10),
        ..SecConfig::new(UA)
    }
}

fn client(url: &str, config: SecConfig) -> SecClient {
    SecClient::new(url, config).unwrap()
}

/// The facts as readable rows: `taxonomy:concept unit start..end val accn frame`.
fn rows(facts: &CompanyFacts) -> Vec<String> {
    let t = &facts.table;
    let s = |i: usize| t.column(i).as_string::<i32>();
    let d = |i: usize| t.column(i).as_primitive::<Date32Type>();
    let val = t.column(6).as_any().downcast_ref::<Decimal128Array>().unwrap();
    let date = |i: usize, r: usize| {
        let a = d(i);
        if a.is_null(r) { "-".to_owned() } else { a.value_as_date(r).unwrap().to_string() }
    };
    let opt = |i: usize, r: usize| if s(i).is_null(r) { "-".to_owned() } else { s(i).value(r).to_owned() };
    (0..t.num_rows())
        .map(|r| {
            format!(
                "{} {}:{} {} {}..{} {} {} fy={} {} {} filed={} frame={}",
                s(0).value(r),
                s(1).value(r),
                s(2).value(r),
                s(3).value(r),
                date(4, r),
                date(5, r),
                val.value_as_string(r),
                s(7).value(r),
                t.column(8).as_primitive::<Int32Type>().value(r),
                opt(9, r),
                s(10).value(r),
                date(11, r),
                opt(12, r),
            )
        })
        .collect()
}

#[tokio::test]
async fn company_facts_keep_every_reported_row_exactly_with_real_dates() {
    let (url, fixture) = serve().await;
    let facts = client(&url, config(10_000)).company_facts(APPLE).await.unwrap();
    assert_eq!(facts.entity_name, "Apple Inc.");
    assert_eq!(facts.table.schema(), company_facts_schema());
    assert_eq!(
        rows(&facts),
        [
            "0000320193 dei:EntityCommonStockSharesOutstanding shares -..2024-10-18 15441881000.0000000000 \
             0000320193-24-000123 fy=2024 FY 10-K filed=2024-11-01 frame=CY2024Q3I",
            "0000320193 us-gaap:Revenues USD 2023-10-01..2024-09-28 391035000000.0000000000 0000320193-24-000123 \
             fy=2024 FY 10-K filed=2024-11-01 frame=CY2024",
            // The restatement of the same period in a later filing is its own row (no frame).
            "0000320193 us-gaap:Revenues USD 2023-10-01..2024-09-28 391036000000.0000000000 0000320193-25-000008 \
             fy=2024 FY 10-K filed=2024-11-01 frame=-",
            "0000320193 us-gaap:EarningsPerShareDiluted USD/shares 2023-10-01..2024-09-28 1.5200000000 \
             0000320193-24-000123 fy=2024 FY 10-K filed=2024-11-01 frame=CY2024",
            "0000320193 us-gaap:SomeRatio pure 2023-10-01..2024-09-28 0.0002500000 0000320193-24-000123 fy=2024 \
             FY 10-K filed=2024-11-01 frame=-",
        ]
    );
    // Sent with the declared User-Agent, asking for gzip, and the gzip body was decoded.
    let log = fixture.log.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].2, UA);
    assert!(log[0].3.contains("gzip"), "accept-encoding: {:?}", log[0].3);
    assert!(fixture.gzipped.load(Ordering::SeqCst) > 0, "the body travelled gzip-encoded");
}

#[tokio::test]
async fn a_filer_without_facts_is_an_empty_table_with_the_schema() {
    let (url, _) = serve().await;
    let facts = client(&url, config(10_000)).company_facts("0000000001").await.unwrap();
    assert_eq!((facts.entity_name.as_str(), facts.table.num_rows()), ("Empty Shell Co", 0));
    assert_eq!(facts.table.schema(), company_facts_schema());
}

#[tokio::test]
async fn a_404_with_an_xml_body_says_the_cik_has_no_xbrl_data() {
    let (url, fixture) = serve().await;
    let err = client(&url, config(10_000)).company_facts("0000000404").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "CIK 0000000404 has no company facts at the SEC (HTTP 404): it has no XBRL data or is not a filer"
    );
    assert_eq!(fixture.calls("0000000404"), 1, "not retried");
}

#[tokio::test]
async fn a_value_with_more_decimals_than_the_column_fails_instead_of_rounding() {
    let (url, _) = serve().await;
    let err = client(&url, config(10_000)).company_facts("0000000002").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "CIK 0000000002: us-gaap:EarningsPerShareDiluted (USD/shares, accn 0000320193-24-000123) has val \
         0.12345678901, which does not fit Decimal128(38, 10) exactly: more than 10 decimal places"
    );
}

#[tokio::test]
async fn a_request_without_a_declared_user_agent_is_refused_with_the_variable_to_set() {
    let (url, _) = serve().await;
    let err = client(&url, SecConfig { user_agent: "robo-assets/0.1".into(), ..config(10_000) })
        .company_facts(APPLE)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SecError::Forbidden { .. }), "{err:?}");
    assert!(text.starts_with("SEC refused GET /api/xbrl/companyfacts/CIK0000320193.json (HTTP 403): SEC.gov | Your Request Originates from an Undeclared Automated Tool"), "{text}");
    assert!(text.ends_with("(set SEC_USER_AGENT to \"Company Name admin@company.com\")"), "{text}");
}

#[tokio::test]
async fn another_403_fails_at_once_with_the_reason() {
    let (url, fixture) = serve().await;
    let err = client(&url, config(10_000)).company_facts("0000000999").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "SEC refused GET /api/xbrl/companyfacts/CIK0000000999.json (HTTP 403): Access Denied You don't have \
         permission to access this resource."
    );
    assert_eq!(fixture.calls("0000000999"), 1, "not retried");
}

/// A throttle answer for `cik` pauses every request of the client (here: another CIK's
/// request made meanwhile) for the cool-down; then the throttled request is sent again.
async fn check_throttle_pauses_every_request(cik: &str, status: u16) {
    let cool_down = Duration::from_millis(600);
    let (url, fixture) = serve().await;
    let sec = client(&url, config(cool_down.as_millis() as u64));
    let throttled = tokio::spawn({
        let sec = sec.clone();
        let cik = cik.to_owned();
        async move { sec.company_facts(&cik).await }
    });
    // Wait until the fixture has throttled, then ask for another CIK.
    while !fixture.log.lock().unwrap().iter().any(|e| e.4 == status) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = sec.submissions(APPLE).await.unwrap();
    assert_eq!(other.table.num_rows(), 4);
    let facts = throttled.await.unwrap().unwrap();
    assert_eq!(facts.table.num_rows(), 5);

    let log = fixture.log.lock().unwrap();
    let throttle_at = log.iter().find(|e| e.4 == status).unwrap().0;
    let after: Vec<_> = log.iter().filter(|e| e.0 > throttle_at).collect();
    assert_eq!(after.len(), 3, "the retry, the other CIK and its older page: {after:?}");
    for e in after {
        assert!(e.0.duration_since(throttle_at) >= cool_down, "{} was sent during the cool-down", e.1);
    }
    assert_eq!(fixture.calls(cik), 2);
}

#[tokio::test]
async fn a_429_pauses_every_sec_request_for_the_cool_down_then_retries() {
    check_throttle_pauses_every_request("0000000429", 429).await;
}

#[tokio::test]
async fn the_rate_threshold_403_page_pauses_every_sec_request_for_the_cool_down_then_retries() {
    check_throttle_pauses_every_request("0000000403", 403).await;
}

#[tokio::test]
async fn throttled_on_every_attempt_fails_saying_so() {
    let (url, fixture) = serve().await;
    let err = client(&url, config(50)).company_facts("0000000430").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "SEC throttled GET /api/xbrl/companyfacts/CIK0000000430.json 3 times (each followed by a 50ms pause of every SEC request)"
    );
    assert_eq!(fixture.calls("0000000430"), 3);
}

#[tokio::test]
async fn many_requests_stay_under_the_secs_rate_limit() {
    // 15 requests at once: the token bucket spaces them at 8/s (a margin for network jitter), so
    // the fixture's 10-per-second limit never answers its 403 page.
    let (url, fixture) = serve().await;
    let sec = client(&url, SecConfig { rate_per_sec: 8.0, ..config(10_000) });
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..15 {
        let sec = sec.clone();
        calls.spawn(async move { sec.latest_accession(APPLE).await });
    }
    while let Some(res) = calls.join_next().await {
        assert_eq!(res.unwrap().unwrap().as_deref(), Some("0000320193-25-000057"));
    }
    assert_eq!(fixture.over_limit.load(Ordering::SeqCst), 0);
    assert_eq!(fixture.calls(APPLE), 15);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (url, fixture) = serve().await;
    let facts = client(&url, config(10_000)).company_facts("0000000503").await.unwrap();
    assert_eq!(facts.table.num_rows(), 5);
    assert_eq!(fixture.calls("0000000503"), 3);
}

#[tokio::test]
async fn submissions_are_every_filing_with_real_dates_including_older_pages() {
    let (url, _) = serve().await;
    let subs = client(&url, config(10_000)).submissions(APPLE).await.unwrap();
    assert_eq!(subs.name, "Apple Inc.");
    assert_eq!(subs.table.schema(), submissions_schema());
    let t = &subs.table;
    let date = |c: usize, r: usize| {
        let a = t.column(c).as_primitive::<Date32Type>();
        if a.is_null(r) { "-".to_owned() } else { a.value_as_date(r).unwrap().to_string() }
    };
    let s = |c: usize, r: usize| {
        let a = t.column(c).as_string::<i32>();
        if a.is_null(r) { "-".to_owned() } else { a.value(r).to_owned() }
    };
    let got: Vec<String> = (0..t.num_rows())
        .map(|r| format!("{} {} {} {} {} {}", s(0, r), s(1, r), s(2, r), date(3, r), date(4, r), s(5, r)))
        .collect();
    assert_eq!(
        got,
        [
            "0000320193 0000320193-25-000057 10-Q 2025-05-02 2025-03-29 aapl-20250329.htm",
            "0000320193 0000320193-25-000040 4 2025-04-01 - -",
            "0000320193 0000320193-24-000123 10-K 2024-11-01 2024-09-28 aapl-20240928.htm",
            "0000320193 0000912057-01-000001 10-Q 2001-03-01 2000-12-30 -",
        ]
    );
}

#[tokio::test]
async fn the_dev_source_parses_its_fixtures_and_says_it_is_dev() {
    let dev = DevSecSource;
    let facts = dev.company_facts(APPLE).await.unwrap();
    assert!(facts.entity_name.ends_with("(dev fixture)"), "{}", facts.entity_name);
    assert!(facts.table.num_rows() > 0);
    let subs = dev.submissions(APPLE).await.unwrap();
    assert_eq!(
        dev.latest_accession(APPLE).await.unwrap().as_deref(),
        Some(subs.table.column(1).as_string::<i32>().value(0))
    );
    assert_eq!(dev.kind(), "dev");
    assert!(dev.describe().starts_with("SEC dev source"), "{}", dev.describe());
    let err = dev.company_facts("0000000404").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "CIK 0000000404 has no company facts in the SEC dev source (it holds 0000320193, 0000789019); set \
         SEC_USER_AGENT to use the live API"
    );
}

#[test]
fn numbers_parse_exactly_or_say_why_not() {
    let check = |text: &str| parse_decimal(text, 10).map(|v| v.to_string());
    assert_eq!(check("0"), Ok("0".into()));
    assert_eq!(check("1.52"), Ok("15200000000".into()));
    assert_eq!(check("-0.0235"), Ok("-235000000".into()));
    assert_eq!(check("15441881000"), Ok("154418810000000000000".into()));
    assert_eq!(check("2.5E-4"), Ok("2500000".into()));
    assert_eq!(check("1e3"), Ok("10000000000000".into()));
    assert_eq!(check("1.000000000000"), Ok("10000000000".into()), "trailing zeros are not decimals");
    assert_eq!(check("0.00000000001"), Err("more than 10 decimal places".into()));
    assert_eq!(check("1e28"), Err("more than 38 digits".into()));
    assert_eq!(check("9999999999999999999999999999"), Ok("99999999999999999999999999990000000000".into()));
    assert_eq!(check("\"12\""), Err("not a number".into()));
}
