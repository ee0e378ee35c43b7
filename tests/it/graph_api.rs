//! `usage_snapshot` from a Graph API on 127.0.0.1 (`GRAPH_API_URL`) instead of the dev source:
//! sizes, a deleted graph, a token that never shows, malformed JSON as a failed step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::common::Robo;

const TOKEN: &str = "graph-api-sekrit-token-99";

async fn storage(
    State(broken): State<Arc<AtomicBool>>,
    headers: HeaderMap,
    Path(graph): Path<String>,
) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    if broken.load(Ordering::SeqCst) {
        return (StatusCode::OK, "{\"graph_id\": oops".into());
    }
    let bytes: u64 = match graph.as_str() {
        "acme-main" => 14_500_000_000,
        "acme-staging" => 2_000_000_000,
        "initech-ledger" => 3_000_000_000,
        "graph-sub-hooli" => 12_000_000_000,
        _ => return (StatusCode::NOT_FOUND, String::new()), // globex-prod was deleted
    };
    (StatusCode::OK, format!("{{\"graph_id\":\"{graph}\",\"bytes\":{bytes}}}"))
}

async fn create(headers: HeaderMap, body: String) -> StatusCode {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return StatusCode::UNAUTHORIZED;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["graph_id"].as_str(), v["tenant_id"].as_str()), (Some("graph-sub-hooli"), Some("hooli")));
    StatusCode::CREATED
}

async fn serve(broken: Arc<AtomicBool>) -> String {
    let app =
        Router::new().route("/graphs/{graph}/storage", get(storage)).route("/graphs", post(create)).with_state(broken);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_come_from_the_graph_api_and_a_deleted_graph_is_not_billed() {
    let broken = Arc::new(AtomicBool::new(false));
    let url = serve(broken.clone()).await;
    let robo = Robo::new();
    let env = [("GRAPH_API_URL", url.as_str()), ("GRAPH_API_TOKEN", TOKEN), ("RUST_LOG", "debug")];
    let run = {
        let mut cmd = robo.command(&["materialize", "storage_bill", "-p", "2025-12-15", "--with-upstream"]);
        cmd.envs(env);
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "the token never shows");

    let mut db = robo.lineage_db().await;
    let metadata: Vec<String> =
        sqlx::query_scalar("SELECT metadata FROM materializations WHERE asset_key = 'usage_snapshot'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(metadata.len(), 24);
    for m in &metadata {
        let m: serde_json::Value = serde_json::from_str(m).unwrap();
        assert_eq!(m["source"], format!("Graph API at {url}"));
        assert_eq!(m["graphs_not_found"], serde_json::json!(["globex-prod"]));
        assert_eq!(m["graphs"], 3);
        assert!(!m.to_string().contains(TOKEN));
    }
    // acme: 16.5 GB on Starter (10 included, 1.5 credits/GB-day) = 9.75 credits; globex is gone.
    let mut app = robo.app_db().await;
    let charges: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tenant_id, amount_millicredits FROM credit_ledger WHERE period = '2025-12-15' ORDER BY tenant_id",
    )
    .fetch_all(&mut app)
    .await
    .unwrap();
    assert_eq!(charges, [("acme".to_owned(), -9_750), ("initech".to_owned(), 0)]);

    // The API starts answering garbage: the snapshot fails with the reason, after its attempts.
    broken.store(true, Ordering::SeqCst);
    let run = {
        let mut cmd = robo.command(&["materialize", "usage_snapshot", "-p", "2025-12-16T00:00"]);
        cmd.envs(env);
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    };
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("failed after 3 attempt(s): Graph API returned malformed JSON for GET /graphs/acme-main/storage"),
        "{stdout}"
    );
}

#[test]
fn a_graph_api_url_that_is_not_http_is_refused_with_exit_2() {
    let robo = Robo::new();
    let run = robo.run_with(&["list"], &[("GRAPH_API_URL", "ftp://user:pw@graphs")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("GRAPH_API_URL ftp://user:***@graphs is not usable: expected http:// or https://"),
        "{}",
        run.stderr
    );
    let run = robo.run_with(&["list"], &[("GRAPH_API_URL", "http://127.0.0.1:1"), ("GRAPH_API_TIMEOUT_MS", "soon")]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("GRAPH_API_TIMEOUT_MS=\"soon\" is not a positive number of milliseconds"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_provisioning_creates_the_graph_and_activates_the_subscription() {
    let url = serve(Arc::new(AtomicBool::new(false))).await;
    let robo = Robo::new();
    let env = [("GRAPH_API_URL", url.as_str()), ("GRAPH_API_TOKEN", TOKEN)];
    let run = |args: &'static [&'static str]| {
        let mut cmd = robo.command(args);
        cmd.envs(env);
        async move { tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap() }
    };
    // The demo has one subscription waiting for its graph: hooli's.
    let out = run(&["demo", "seed"]).await;
    assert!(out.status.success());
    let out = run(&["partitions", "add", "subscriptions", "sub-hooli"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "subscriptions: 1 key added\n");
    let out = run(&["materialize", "graph_provisioning", "-p", "sub-hooli"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut app = robo.app_db().await;
    let (status, graph): (String, String) = sqlx::query_as(
        "SELECT s.status, g.id FROM subscriptions s JOIN graphs g ON g.subscription_id = s.id WHERE s.id = 'sub-hooli'",
    )
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert_eq!((status.as_str(), graph.as_str()), ("active", "graph-sub-hooli"));
    let history = run(&["history", "graph_provisioning", "--json"]).await;
    let h = serde_json::from_slice::<serde_json::Value>(&history.stdout).unwrap()["materializations"].clone();
    assert_eq!(h[0]["metadata"]["outcome"], "activated");
    assert_eq!(h[0]["metadata"]["graph_created"], true);

    // Billing picks the new graph up at the next snapshot; running provisioning again is a no-op.
    let out = run(&["materialize", "usage_snapshot", "-p", "2025-12-20T00:00"]).await;
    assert!(out.status.success());
    let mut db = robo.lineage_db().await;
    let meta: String = sqlx::query_scalar("SELECT metadata FROM materializations WHERE asset_key = 'usage_snapshot'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(meta.contains("\"graphs\":4"), "{meta}");
    let out = run(&["materialize", "graph_provisioning", "-p", "sub-hooli"]).await;
    assert!(out.status.success());
    let history = run(&["history", "graph_provisioning", "--json"]).await;
    let h = serde_json::from_slice::<serde_json::Value>(&history.stdout).unwrap()["materializations"].clone();
    assert_eq!(h[0]["metadata"]["outcome"], "already active");

    // An unknown subscription is a failed step that says so.
    let out = run(&["partitions", "add", "subscriptions", "sub-nobody"]).await;
    assert!(out.status.success());
    let out = run(&["materialize", "graph_provisioning", "-p", "sub-nobody"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no subscription \"sub-nobody\""));
}
