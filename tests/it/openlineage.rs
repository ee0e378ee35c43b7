//! OpenLineage: the billing chain's events, exported and delivered, validated against the vendored
//! 2-0-2 spec and its facet schemas (`openlineage/spec/`, offline, format checks on); a receiver
//! that fails twice gets every event in order; an abort between delivery and its mark re-sends
//! the same event after restart.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::common::Robo;

/// 24 hourly snapshots and the day's bill: a run START, 25 step STARTs and COMPLETEs, a run
/// COMPLETE.
const CHAIN: [&str; 5] = ["materialize", "storage_bill", "--partition", "2025-12-15", "--with-upstream"];
const EVENTS: usize = 52;
const API_KEY: &str = "ol-key-3f9a1c";

/// The vendored spec, every facet schema we emit and our own facet's, by `$id`.
struct Spec {
    registry: jsonschema::Registry<'static>,
}

impl Spec {
    fn load() -> Spec {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openlineage");
        let mut files = vec![root.join("spec/OpenLineage.json"), root.join("RoboAssetsRunFacet.json")];
        for entry in std::fs::read_dir(root.join("spec/facets")).unwrap() {
            files.push(entry.unwrap().path());
        }
        let resources: Vec<(String, Value)> = files
            .iter()
            .map(|path| {
                let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
                (schema["$id"].as_str().expect("every schema has an $id").to_owned(), schema)
            })
            .collect();
        let registry = jsonschema::Registry::new().extend(resources).unwrap().prepare().unwrap();
        Spec { registry }
    }

    /// Errors of `instance` against the schema at `url` (`…json#/$defs/Name`).
    fn errors(&self, url: &str, instance: &Value) -> Vec<String> {
        let validator = jsonschema::options()
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .build(&serde_json::json!({ "$ref": url }))
            .unwrap_or_else(|e| panic!("schema {url}: {e}"));
        validator.iter_errors(instance).map(|e| format!("{url} at {}: {e}", e.instance_path())).collect()
    }

    /// The event against RunEvent, and every facet against the schema its `_schemaURL` names.
    fn assert_valid(&self, event: &Value) {
        let mut errors = self.errors(engine::openlineage::RUN_EVENT_SCHEMA, event);
        let mut facets = Vec::new();
        for holder in [&event["run"], &event["job"]] {
            facets.push(&holder["facets"]);
        }
        for dataset in event["inputs"].as_array().unwrap().iter().chain(event["outputs"].as_array().unwrap()) {
            facets.extend([&dataset["facets"], &dataset["inputFacets"], &dataset["outputFacets"]]);
        }
        let mut checked = 0;
        for facet in facets.into_iter().filter_map(Value::as_object).flat_map(|m| m.values()) {
            let url = facet["_schemaURL"].as_str().expect("every facet names its schema");
            errors.extend(self.errors(url, facet));
            checked += 1;
        }
        assert!(checked >= 3, "facets were checked: {event}");
        assert!(errors.is_empty(), "{errors:#?}\n{event:#}");
    }
}

#[test]
fn the_validator_refuses_what_the_spec_refuses() {
    // A check that cannot fail proves nothing: a non-UUID runId (format checks on), a missing
    // schemaURL, and a facet missing a required field are each refused.
    let spec = Spec::load();
    let robo = Robo::new();
    robo.ok(&CHAIN);
    let event = export(&robo, &[]).remove(0);
    spec.assert_valid(&event);
    let mut bad = event.clone();
    bad["run"]["runId"] = "not-a-uuid".into();
    assert!(!spec.errors(engine::openlineage::RUN_EVENT_SCHEMA, &bad).is_empty());
    let mut bad = event.clone();
    bad.as_object_mut().unwrap().remove("schemaURL");
    assert!(!spec.errors(engine::openlineage::RUN_EVENT_SCHEMA, &bad).is_empty());
    let facet = &event["run"]["facets"]["processing_engine"];
    let mut bad = facet.clone();
    bad.as_object_mut().unwrap().remove("version");
    assert!(!spec.errors(facet["_schemaURL"].as_str().unwrap(), &bad).is_empty());
}

fn export(robo: &Robo, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["lineage", "export", "--openlineage"];
    args.extend_from_slice(extra);
    robo.ok(&args).stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect()
}

/// (event type, job name) in order.
fn shape(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e["eventType"].as_str().unwrap().to_owned(), e["job"]["name"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn every_event_of_the_billing_chain_validates_and_says_what_was_read() {
    let spec = Spec::load();
    let robo = Robo::new();
    robo.ok(&CHAIN);
    let events = export(&robo, &[]);
    assert_eq!(events.len(), EVENTS);
    for event in &events {
        spec.assert_valid(event);
    }
    let shape = shape(&events);
    let run_job = "manual:storage_bill".to_owned();
    assert_eq!(shape[0], ("START".to_owned(), run_job.clone()), "the run starts first");
    assert_eq!(shape[EVENTS - 1], ("COMPLETE".to_owned(), run_job), "and ends last");
    let run_id = events[0]["run"]["runId"].as_str().unwrap();

    // Each step attempt: a START, then a COMPLETE of the same OpenLineage run, child of the run.
    let mut steps: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in &events[1..EVENTS - 1] {
        assert_eq!(e["run"]["facets"]["parent"]["run"]["runId"], run_id);
        steps.entry(e["run"]["runId"].as_str().unwrap()).or_default().push(e);
    }
    assert_eq!(steps.len(), 25);
    for pair in steps.values() {
        assert_eq!(pair.iter().map(|e| e["eventType"].as_str().unwrap()).collect::<Vec<_>>(), ["START", "COMPLETE"]);
    }

    // The bill's COMPLETE: its output at the stored data version, the 24 snapshots it read at
    // the versions it read them, its nominal time the day.
    let mut db = robo.lineage_db().await;
    let versions: BTreeMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT asset_key, partition_key, data_version FROM materializations",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .map(|(a, p, v)| ((a, p), v))
    .collect();
    let bill = events
        .iter()
        .find(|e| e["eventType"] == "COMPLETE" && e["job"]["name"] == "storage_bill")
        .expect("the bill's COMPLETE");
    let output = &bill["outputs"][0];
    assert_eq!(output["name"], "storage_bill");
    assert_eq!(output["facets"]["version"]["datasetVersion"], versions[&("storage_bill".into(), "2025-12-15".into())]);
    let storage = robo.home().join("storage");
    assert_eq!(output["namespace"], format!("file://{}", storage.display()));
    assert!(
        output["facets"]["schema"]["fields"].as_array().unwrap().iter().any(|f| f["name"] == "tenant_id"),
        "the Parquet schema: {:#}",
        output["facets"]["schema"]
    );
    let rows: i64 = sqlx::query_scalar("SELECT row_count FROM materializations WHERE asset_key = 'storage_bill'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(output["outputFacets"]["outputStatistics"]["rowCount"], rows);
    assert_eq!(output["outputFacets"]["subset"]["outputCondition"]["partitions"][0]["identifier"], "2025-12-15");
    let inputs = bill["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 24);
    for input in inputs {
        assert_eq!(input["name"], "usage_snapshot");
        let hour = input["inputFacets"]["subset"]["inputCondition"]["partitions"][0]["identifier"].as_str().unwrap();
        assert_eq!(input["facets"]["version"]["datasetVersion"], versions[&("usage_snapshot".into(), hour.into())]);
    }
    let nominal = &bill["run"]["facets"]["nominalTime"];
    assert_eq!(
        (nominal["nominalStartTime"].as_str(), nominal["nominalEndTime"].as_str()),
        (Some("2025-12-15T00:00:00.000Z"), Some("2025-12-16T00:00:00.000Z"))
    );
    let facet = &bill["run"]["facets"]["robo_assets"];
    assert_eq!((facet["partitionKey"].as_str(), facet["attempt"].as_i64()), (Some("2025-12-15"), Some(1)));

    // --since: a time after everything exports nothing; bad input is refused.
    assert!(export(&robo, &["--since", "2099-01-01"]).is_empty());
    assert_eq!(export(&robo, &["--since", "2025-01-01T00:00:00Z"]).len(), EVENTS);
    let bad = robo.run(&["lineage", "export", "--openlineage", "--since", "yesterday"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("RFC 3339"), "{}", bad.stderr);
}

/// A Marquez-like receiver on loopback: answers 500 to the first `fail_first` posts, then 201,
/// keeping each body it accepted and the bearer token it was sent.
#[derive(Clone, Default)]
struct Receiver {
    fail_first: usize,
    posts: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    tokens: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    r.tokens.lock().unwrap().push(token);
    let n = {
        let mut posts = r.posts.lock().unwrap();
        *posts += 1;
        *posts
    };
    if n <= r.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.accepted.lock().unwrap().push(serde_json::from_slice(&body).expect("a JSON body"));
    StatusCode::CREATED
}

async fn serve(receiver: Receiver) -> String {
    let app = axum::Router::new().route("/api/v1/lineage", axum::routing::post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn backlog(robo: &Robo) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM openlineage_outbox WHERE delivered_at IS NULL")
        .fetch_one(&mut robo.lineage_db().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_gets_every_event_exactly_in_order() {
    let robo = Robo::new();
    robo.ok(&CHAIN);
    let expected = export(&robo, &[]);
    let receiver = Receiver { fail_first: 2, ..Receiver::default() };
    let url = serve(receiver.clone()).await;
    assert_eq!(backlog(&robo).await, EVENTS as i64);
    let mut daemon = robo
        .command(&["daemon", "--no-worker", "--interval-secs", "3600"])
        .env("OPENLINEAGE_URL", &url)
        .env("OPENLINEAGE_API_KEY", API_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while backlog(&robo).await > 0 {
        assert!(Instant::now() < deadline, "not delivered: {} accepted", receiver.accepted.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        daemon.wait().unwrap();
        stderr
    })
    .await
    .unwrap();
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted, expected, "every event once, in outbox order, as exported");
    assert_eq!(*receiver.posts.lock().unwrap(), EVENTS + 2, "the first event was tried three times");
    assert!(receiver.tokens.lock().unwrap().iter().all(|t| *t == format!("Bearer {API_KEY}")));
    assert!(out.contains("OpenLineage delivery failed"), "{out}");
    assert!(out.contains("500"), "the failure says why: {out}");
    assert!(!out.contains(API_KEY), "the key never printed: {out}");
    let attempts: i64 = sqlx::query_scalar("SELECT delivery_attempts FROM openlineage_outbox ORDER BY id LIMIT 1")
        .fetch_one(&mut robo.lineage_db().await)
        .await
        .unwrap();
    assert_eq!(attempts, 3);
}

// The receiver answers on the runtime's other thread while this one waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_delivery_before_its_mark_resends_the_same_event() {
    let robo = Robo::new();
    robo.ok(&CHAIN);
    let expected = export(&robo, &[]);
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let env = [("OPENLINEAGE_URL", url.as_str())];
    // Aborts (as kill -9 would) once the receiver has accepted the third event, before the
    // outbox records it.
    let crashed =
        robo.run_with(&["daemon", "--once", "--no-worker"], &[env[0], ("ROBO_ASSETS_FAILPOINT", "openlineage.sent:3")]);
    assert_ne!(crashed.code, 0, "aborted: {}", crashed.stderr);
    assert_eq!(receiver.accepted.lock().unwrap().len(), 3);
    assert_eq!(backlog(&robo).await, EVENTS as i64 - 2, "the third was accepted but not marked");
    let resumed = robo.run_with(&["daemon", "--once", "--no-worker"], &env);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stdout.contains(&format!("openlineage: {} delivered, 0 rejected", EVENTS - 2)),
        "{}",
        resumed.stdout
    );
    assert_eq!(backlog(&robo).await, 0);
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), EVENTS + 1, "one duplicate");
    assert_eq!(accepted[2], accepted[3], "the duplicate is the same event, byte for byte");
    let mut deduped = accepted.clone();
    deduped.remove(3);
    assert_eq!(deduped, expected, "nothing lost, nothing reordered");
}
