//! The client against a fixture Graph API on 127.0.0.1 (axum) that is slow, fails with 503
//! twice then succeeds, has deleted a graph, returns malformed JSON, and wants a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use super::*;

const TOKEN: &str = "graph-api-token-7f3a";

#[derive(Default)]
struct Fixture {
    flaky_calls: AtomicUsize,
    malformed_calls: AtomicUsize,
    created: std::sync::Mutex<Vec<String>>,
}

async fn storage(State(f): State<Arc<Fixture>>, headers: HeaderMap, Path(graph): Path<String>) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"no token\"}".into());
    }
    let ok = |bytes: u64| (StatusCode::OK, format!("{{\"graph_id\":\"{graph}\",\"bytes\":{bytes}}}"));
    match graph.as_str() {
        "steady" => ok(14_500_000_000),
        "flaky" => {
            if f.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                (StatusCode::SERVICE_UNAVAILABLE, "busy".into())
            } else {
                ok(2_000_000_000)
            }
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            ok(1)
        }
        "malformed" => {
            f.malformed_calls.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, "{\"graph_id\":\"malformed\",\"bytes\":".into())
        }
        "forbidden" => (StatusCode::FORBIDDEN, "no".into()),
        _ => (StatusCode::NOT_FOUND, "{\"error\":\"no such graph\"}".into()),
    }
}

async fn create(State(f): State<Arc<Fixture>>, body: String) -> StatusCode {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["graph_id"].as_str().unwrap().to_owned();
    let mut created = f.created.lock().unwrap();
    if created.contains(&id) {
        return StatusCode::CONFLICT;
    }
    created.push(id);
    StatusCode::CREATED
}

async fn serve() -> (String, Arc<Fixture>) {
    let fixture = Arc::new(Fixture::default());
    let app = Router::new()
        .route("/graphs/{graph}/storage", get(storage))
        .route("/graphs", post(create))
        .with_state(fixture.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fixture)
}

fn client(url: &str, timeout_ms: u64, token: Option<&str>) -> GraphApiClient {
    let config = GraphApiConfig {
        timeout: Duration::from_millis(timeout_ms),
        attempts: 3,
        first_delay: Duration::from_millis(10),
        token: token.map(str::to_owned),
    };
    GraphApiClient::new(url, url.to_owned(), config).unwrap()
}

#[tokio::test]
async fn a_steady_graph_reports_its_bytes_and_a_deleted_one_is_none() {
    let (url, _) = serve().await;
    let api = client(&url, 2_000, Some(TOKEN));
    let sizes = api.storage_bytes(&["steady".into(), "deleted-last-week".into()]).await.unwrap();
    assert_eq!(sizes, [Some(14_500_000_000), None]);
    assert_eq!(api.describe(), format!("Graph API at {url}"));
}

#[tokio::test]
async fn two_503s_are_retried_and_the_third_attempt_succeeds() {
    let (url, fixture) = serve().await;
    let api = client(&url, 2_000, Some(TOKEN));
    assert_eq!(api.storage_of("flaky").await.unwrap(), Some(2_000_000_000));
    assert_eq!(fixture.flaky_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_slow_api_times_out_each_attempt_then_is_unavailable() {
    let (url, _) = serve().await;
    let err = client(&url, 200, Some(TOKEN)).storage_of("slow").await.unwrap_err();
    assert_eq!(err.to_string(), "Graph API unavailable: GET /graphs/slow/storage failed 3 times; last: timed out");
    // With a timeout longer than the delay, the same call succeeds.
    assert_eq!(client(&url, 5_000, Some(TOKEN)).storage_of("slow").await.unwrap(), Some(1));
}

#[tokio::test]
async fn malformed_json_fails_at_once_with_what_was_wrong() {
    let (url, fixture) = serve().await;
    let err = client(&url, 2_000, Some(TOKEN)).storage_of("malformed").await.unwrap_err();
    assert!(matches!(err, GraphApiError::Malformed { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("Graph API returned malformed JSON for GET /graphs/malformed/storage: EOF"),
        "{err}"
    );
    assert_eq!(fixture.malformed_calls.load(Ordering::SeqCst), 1, "not retried");
}

#[tokio::test]
async fn a_4xx_is_refused_at_once_and_the_token_never_shows() {
    let (url, _) = serve().await;
    let err = client(&url, 2_000, Some(TOKEN)).storage_of("forbidden").await.unwrap_err();
    assert_eq!(err.to_string(), "Graph API refused GET /graphs/forbidden/storage: HTTP 403");
    let err = client(&url, 2_000, Some("wrong-token")).storage_of("steady").await.unwrap_err();
    assert_eq!(err.to_string(), "Graph API refused GET /graphs/steady/storage: HTTP 401");
    let shown = format!("{err} {err:?} {:?}", client(&url, 2_000, Some(TOKEN)));
    assert!(!shown.contains(TOKEN) && !shown.contains("wrong-token"), "{shown}");
}

#[tokio::test]
async fn nothing_listening_is_unavailable_after_the_attempts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&url, 500, None).storage_of("steady").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Graph API unavailable: GET /graphs/steady/storage failed 3 times; last: connection failed"
    );
}

#[tokio::test]
async fn creating_a_graph_twice_is_one_graph() {
    let (url, fixture) = serve().await;
    let api = client(&url, 2_000, None);
    assert!(api.create_graph("g-new", "acme").await.unwrap());
    assert!(!api.create_graph("g-new", "acme").await.unwrap(), "409: it exists");
    assert_eq!(*fixture.created.lock().unwrap(), ["g-new"]);
    assert!(GraphApiClient::new("ftp://x", "ftp://x".into(), GraphApiConfig::default()).is_err());
}

#[test]
fn retry_delays_are_random_so_clients_do_not_retry_in_lockstep() {
    use backon::BackoffBuilder as _;
    // Two clients (as two processes would each build one): with a fixed jitter seed their
    // delays were identical (740, 1948, 3057 ms for every snapshot in an outage).
    let delays = || -> Vec<Duration> {
        let c = client("http://127.0.0.1:1", 100, None);
        c.backoff().build().collect()
    };
    let (a, b) = (delays(), delays());
    assert_eq!(a.len(), 2, "three attempts: two delays");
    assert_ne!(a, b, "two clients drew the same jitter");
    // Each stays within [delay, 2 × delay) of its exponential step.
    let first = Duration::from_millis(10);
    assert!(a[0] >= first && a[0] < first * 2, "{a:?}");
}
