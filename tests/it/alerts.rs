//! Failure alerts: a run that fails is posted once to `ROBO_ASSETS_ALERT_WEBHOOK` by the daemon
//! (retried in its pass while the webhook answers 500), never again on later passes; an abort
//! between the webhook accepting it and its mark sends the same body again; the webhook's secrets
//! (its `user:password`, path and query) never appear in what the binary prints.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

use crate::common::Robo;

const SECRET: &str = "s3cret";
/// `alice:pw-s3cret` as HTTP basic auth.
const BASIC: &str = "Basic YWxpY2U6cHctczNjcmV0";
const HOUR: &str = "2025-12-15T00:00";

/// A webhook on loopback: answers 500 to the first `fail_first` posts, then 200, keeping each
/// body it accepted, and every request's credentials and query.
#[derive(Clone, Default)]
struct Webhook {
    fail_first: usize,
    posts: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn receive(State(w): State<Webhook>, uri: Uri, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    w.seen.lock().unwrap().push((auth, uri.query().unwrap_or_default().to_owned()));
    let n = {
        let mut posts = w.posts.lock().unwrap();
        *posts += 1;
        *posts
    };
    if n <= w.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    w.accepted.lock().unwrap().push(serde_json::from_slice(&body).expect("a JSON body"));
    StatusCode::OK
}

/// Serves `webhook`; its URL with a password, a secret path and a secret query.
async fn serve(webhook: Webhook) -> String {
    let app = axum::Router::new().route("/hooks/tok-s3cret", axum::routing::post(receive)).with_state(webhook);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://alice:pw-{SECRET}@{addr}/hooks/tok-{SECRET}?sig=q-{SECRET}")
}

/// A run of `usage_snapshot` that fails: the app database lost its graphs table. Returns its id.
async fn failed_run(robo: &Robo) -> String {
    robo.ok(&["materialize", "usage_snapshot", "--partition", "2025-12-14T00:00"]);
    rename_graphs(robo, "ALTER TABLE graphs RENAME TO graphs_gone").await;
    let out = robo.run(&["materialize", "usage_snapshot", "--partition", HOUR]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let runs: Value = serde_json::from_str(&robo.ok(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs["runs"][0]["status"], "failed");
    runs["runs"][0]["run_id"].as_str().unwrap().to_owned()
}

async fn rename_graphs(robo: &Robo, statement: &'static str) {
    use sqlx::ConnectOptions;
    let mut db =
        sqlx::sqlite::SqliteConnectOptions::new().filename(robo.home().join("app.db")).connect().await.unwrap();
    sqlx::query(statement).execute(&mut db).await.unwrap();
}

async fn pending(robo: &Robo) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM alerts WHERE delivered_at IS NULL")
        .fetch_one(&mut robo.lineage_db().await)
        .await
        .unwrap()
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the webhook's secret:\n{text}");
}

// The webhook answers on the runtime's other thread while this one waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_posted_once_after_a_500_and_never_again() {
    let robo = Robo::new();
    let run_id = failed_run(&robo).await;
    let webhook = Webhook { fail_first: 1, ..Webhook::default() };
    let url = serve(webhook.clone()).await;
    let env = [
        ("ROBO_ASSETS_ALERT_WEBHOOK", url.as_str()),
        ("ROBO_ASSETS_UI_URL", "https://assets.example.com/"),
        ("RUST_LOG", "info"),
    ];
    let first = robo.run_with(&["daemon", "--once", "--no-worker"], &env);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("alerts: 1 sent\n"), "{}", first.stdout);
    assert!(first.stderr.contains("Alert not delivered; trying again."), "{}", first.stderr);
    assert!(first.stderr.contains("HTTP 500"), "the retry says why: {}", first.stderr);
    assert_no_secret("stdout", &first.stdout);
    assert_no_secret("stderr", &first.stderr);
    assert_eq!(*webhook.posts.lock().unwrap(), 2, "one 500, then accepted");
    assert!(
        webhook.seen.lock().unwrap().iter().all(|(auth, query)| auth == BASIC && query == "sig=q-s3cret"),
        "the URL's password and query were sent: {:?}",
        webhook.seen.lock().unwrap()
    );

    let accepted = webhook.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1);
    let alert = &accepted[0];
    assert_eq!(alert["event"], "run_failed");
    assert_eq!(alert["run_id"], run_id.as_str());
    assert_eq!((alert["status"].as_str(), alert["trigger"].as_str()), (Some("failed"), Some("manual")));
    assert_eq!(alert["selection"], "usage_snapshot");
    assert!(uuid::Uuid::parse_str(alert["alert_id"].as_str().unwrap()).is_ok(), "{alert:#}");
    assert_eq!(alert["failed_steps_total"], 1);
    let step = &alert["failed_steps"][0];
    assert_eq!((step["asset"].as_str(), step["partition"].as_str()), (Some("usage_snapshot"), Some(HOUR)));
    assert_eq!(step["attempts"], 3, "the asset's retries were spent: {step:#}");
    assert!(step["error"].as_str().unwrap().contains("app database query failed"), "{step:#}");
    let page = format!("https://assets.example.com/runs/{run_id}");
    assert_eq!(alert["run_url"], page.as_str());
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains(&format!("usage_snapshot {HOUR}: ")) && text.ends_with(&page), "{text}");
    // The store's error text is the one `runs show` prints.
    let shown = robo.ok(&["runs", "show", &run_id]);
    assert!(shown.stdout.contains(step["error"].as_str().unwrap().lines().next().unwrap()), "{}", shown.stdout);
    assert_eq!(pending(&robo).await, 0);

    // Later passes send nothing more; a run that succeeds alerts nobody.
    let second = robo.run_with(&["daemon", "--once", "--no-worker"], &env);
    assert!(second.stdout.contains("alerts: 0 sent\n"), "{}", second.stdout);
    rename_graphs(&robo, "ALTER TABLE graphs_gone RENAME TO graphs").await;
    robo.ok(&["materialize", "usage_snapshot", "--partition", HOUR]);
    let third = robo.run_with(&["daemon", "--once", "--no-worker"], &env);
    assert!(third.stdout.contains("alerts: 0 sent\n"), "{}", third.stdout);
    assert_eq!(*webhook.posts.lock().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_the_webhook_accepted_resends_the_same_alert() {
    let robo = Robo::new();
    failed_run(&robo).await;
    let webhook = Webhook::default();
    let url = serve(webhook.clone()).await;
    let hook = ("ROBO_ASSETS_ALERT_WEBHOOK", url.as_str());
    // Aborts (as kill -9 would) once the webhook accepted the alert, before the store marks it.
    let crashed = robo.run_with(&["daemon", "--once", "--no-worker"], &[hook, ("ROBO_ASSETS_FAILPOINT", "alert.sent")]);
    assert_ne!(crashed.code, 0, "aborted: {}", crashed.stderr);
    assert_no_secret("stderr", &crashed.stderr);
    assert_eq!(webhook.accepted.lock().unwrap().len(), 1);
    assert_eq!(pending(&robo).await, 1, "accepted, not marked");
    let resumed = robo.run_with(&["daemon", "--once", "--no-worker"], &[hook]);
    assert!(resumed.stdout.contains("alerts: 1 sent\n"), "{}", resumed.stdout);
    assert_eq!(pending(&robo).await, 0);
    let accepted = webhook.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0], accepted[1], "the same body, with the same alert_id for the receiver to drop");
    let again = robo.run_with(&["daemon", "--once", "--no-worker"], &[hook]);
    assert!(again.stdout.contains("alerts: 0 sent\n"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_daemon_sends_an_alert_and_counts_it() {
    let robo = Robo::new();
    let run_id = failed_run(&robo).await;
    let webhook = Webhook { fail_first: 1, ..Webhook::default() };
    let url = serve(webhook.clone()).await;
    let mut daemon = robo
        .command(&["daemon", "--no-worker", "--interval-secs", "3600", "--metrics-bind", "127.0.0.1:0"])
        .env("ROBO_ASSETS_ALERT_WEBHOOK", &url)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(daemon.stderr.take().unwrap());
    let mut log = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the daemon exited: {log}");
        log.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("Metrics on http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending(&robo).await > 0 {
        assert!(Instant::now() < deadline, "not sent: {} posts", webhook.posts.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scrape = tokio::task::spawn_blocking(move || crate::web::request(&addr, "GET", "/metrics").body).await.unwrap();
    assert!(scrape.contains("robo_assets_alerts_total{outcome=\"sent\"} 1\n"), "{scrape}");
    assert!(scrape.contains("robo_assets_alerts_total{outcome=\"failed\"} 1\n"), "{scrape}");
    assert!(scrape.contains("robo_assets_alert_backlog 0\n"), "{scrape}");
    let status = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        daemon.wait().unwrap();
        rest
    })
    .await
    .unwrap();
    log.push_str(&rest);
    assert!(log.contains("Sending failure alerts."), "{log}");
    assert_no_secret("the daemon's log", &log);
    let accepted = webhook.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["run_id"], run_id.as_str());
    assert!(accepted[0].get("run_url").is_none(), "no ROBO_ASSETS_UI_URL, no link");
}
