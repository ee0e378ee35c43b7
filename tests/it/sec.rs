//! SEC EDGAR through the CLI: the labeled dev source offline, the Parquet it writes (read back
//! with the parquet crate and with pyarrow), start-up refusals (exit 2), the live client against
//! a fixture SEC on loopback, and `sec_filings_sensor` with its JSON cursor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::Date32Type;
use arrow_array::{Array, Decimal128Array, RecordBatch};
use arrow_schema::DataType;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::common::Robo;

const APPLE: &str = "0000320193";
const MSFT: &str = "0000789019";
const APPLE_FACTS: &str = include_str!("../../resources/fixtures/sec/companyfacts/CIK0000320193.json");
const APPLE_SUBMISSIONS: &str = include_str!("../../resources/fixtures/sec/submissions/CIK0000320193.json");

fn read_parquet(path: &std::path::Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "small outputs are one batch");
    batches[0].clone()
}

/// (facts, instant facts) in a companyfacts document, counted from the JSON itself.
fn count_facts(doc: &str) -> (usize, usize) {
    let v: serde_json::Value = serde_json::from_str(doc).unwrap();
    let facts: Vec<&serde_json::Value> = v["facts"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|concepts| concepts.as_object().unwrap().values())
        .flat_map(|c| c["units"].as_object().unwrap().values())
        .flat_map(|f| f.as_array().unwrap())
        .collect();
    (facts.len(), facts.iter().filter(|f| f.get("start").is_none()).count())
}

async fn metadata(robo: &Robo, asset: &str) -> Vec<serde_json::Value> {
    let mut db = robo.lineage_db().await;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT metadata FROM materializations WHERE asset_key = $1 ORDER BY id")
            .bind(asset)
            .fetch_all(&mut db)
            .await
            .unwrap();
    rows.iter().map(|m| serde_json::from_str(m).unwrap()).collect()
}

#[tokio::test]
async fn the_dev_source_materializes_sec_offline_with_exact_types_and_says_so() {
    let robo = Robo::new();
    robo.ok(&["partitions", "add", "sec_ciks", APPLE]);
    let run = robo.run_with(&["materialize", "group:sec", "--partition", APPLE], &[("RUST_LOG", "info")]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("2 materialized"), "{}", run.stdout);
    assert!(run.stderr.contains("SEC data from the dev source"), "{}", run.stderr);

    let facts = read_parquet(&robo.home().join(format!("storage/sec_company_facts/{APPLE}.parquet")));
    let (n, instants) = count_facts(APPLE_FACTS);
    assert_eq!(facts.num_rows(), n);
    let schema = facts.schema();
    assert_eq!(schema.field_with_name("val").unwrap().data_type(), &DataType::Decimal128(38, 10));
    for date in ["start", "end", "filed"] {
        assert_eq!(schema.field_with_name(date).unwrap().data_type(), &DataType::Date32, "{date}");
    }
    assert!(schema.field_with_name("start").unwrap().is_nullable());
    let start = facts.column_by_name("start").unwrap();
    assert_eq!(start.null_count(), instants, "instant facts have no start");
    // EPS 2.40 and a 15-billion share count are exact.
    let val = facts.column_by_name("val").unwrap().as_any().downcast_ref::<Decimal128Array>().unwrap();
    let vals: Vec<String> = (0..val.len()).map(|i| val.value_as_string(i)).collect();
    assert!(
        vals.contains(&"2.4000000000".to_owned()) && vals.contains(&"15116786000.0000000000".to_owned()),
        "{vals:?}"
    );
    let end = facts.column_by_name("end").unwrap().as_primitive::<Date32Type>();
    assert_eq!(end.value_as_date(0).unwrap().to_string(), "2024-10-18");

    let subs = read_parquet(&robo.home().join(format!("storage/sec_submissions/{APPLE}.parquet")));
    let doc: serde_json::Value = serde_json::from_str(APPLE_SUBMISSIONS).unwrap();
    assert_eq!(subs.num_rows(), doc["filings"]["recent"]["accessionNumber"].as_array().unwrap().len());
    assert_eq!(subs.schema().field_with_name("filing_date").unwrap().data_type(), &DataType::Date32);

    for asset in ["sec_company_facts", "sec_submissions"] {
        let meta = metadata(&robo, asset).await;
        assert_eq!(meta.len(), 1);
        assert_eq!(meta[0]["source"], "dev", "{asset}: {}", meta[0]);
        assert_eq!(meta[0]["cik"], APPLE);
    }
    assert_eq!(metadata(&robo, "sec_company_facts").await[0]["facts"], n);
}

#[tokio::test]
async fn sec_outputs_open_in_pyarrow_with_decimal_and_date_types() {
    let Some(python) = std::env::var("ROBO_ASSETS_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CI").is_err(), "CI must set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow");
        eprintln!("skipped: set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow to run this test");
        return;
    };
    let robo = Robo::new();
    robo.ok(&["partitions", "add", "sec_ciks", APPLE]);
    robo.ok(&["materialize", "group:sec", "--partition", APPLE]);
    let script = "import sys, pyarrow.parquet as pq\n\
        t = pq.read_table(sys.argv[1]); s = pq.read_table(sys.argv[2])\n\
        f = {n: t.schema.field(n) for n in t.schema.names}\n\
        print(f['val'].type, f['start'].type, f['start'].nullable, f['end'].type, f['filed'].type)\n\
        print(t.num_rows, t.column('start').null_count, sum(t.column('val').to_pylist()) > 0)\n\
        print(s.schema.field('filing_date').type, s.num_rows)";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(robo.home().join(format!("storage/sec_company_facts/{APPLE}.parquet")))
        .arg(robo.home().join(format!("storage/sec_submissions/{APPLE}.parquet")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (n, instants) = count_facts(APPLE_FACTS);
    let doc: serde_json::Value = serde_json::from_str(APPLE_SUBMISSIONS).unwrap();
    let filings = doc["filings"]["recent"]["accessionNumber"].as_array().unwrap().len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "decimal128(38, 10) date32[day] True date32[day] date32[day]\n{n} {instants} True\ndate32[day] {filings}"
        )
    );
}

#[test]
fn live_sec_without_a_user_agent_or_with_a_bad_rate_is_refused_at_start_up() {
    let robo = Robo::new();
    let run = robo.run_with(
        &["materialize", "sec_company_facts", "--partition", APPLE],
        &[("SEC_API_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("SEC_USER_AGENT is not set"), "{}", run.stderr);
    let run = robo.run_with(&["status"], &[("SEC_USER_AGENT", "Acme admin@acme.test"), ("SEC_RATE_LIMIT", "20")]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("SEC_RATE_LIMIT=\"20\" is not a number of requests per second"), "{}", run.stderr);
    let run = robo.run_with(&["status"], &[("SEC_USER_AGENT", "robo-assets")]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("SEC_USER_AGENT=\"robo-assets\" declares no contact"), "{}", run.stderr);
    assert!(!robo.home().exists(), "nothing written");
}

#[test]
fn a_partition_that_is_not_a_cik_is_refused_and_nothing_is_recorded() {
    let robo = Robo::new();
    // Added as typed, stored zero-padded; given as typed, found padded.
    assert!(robo.ok(&["partitions", "add", "sec_ciks", "320193"]).stdout.contains("1 key added"));
    assert_eq!(robo.ok(&["partitions", "list", "sec_ciks"]).stdout, format!("{APPLE}\n"));
    let run = robo.run(&["materialize", "sec_company_facts", "--partition", "AAPL"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("\"AAPL\" is not a CIK: a CIK is 1 to 10 digits"), "{}", run.stderr);
    let run = robo.run(&["partitions", "add", "sec_ciks", "12345678901"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a CIK"), "{}", run.stderr);
    let run = robo.run(&["materialize", "sec_company_facts", "--partition", "789019"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown partition \"0000789019\"") && run.stderr.contains("valid keys: 0000320193"),
        "{}",
        run.stderr
    );
    assert!(!robo.home().join("storage/sec_company_facts").exists());
    assert_eq!(robo.ok(&["runs"]).stdout.lines().filter(|l| l.contains("sec_company_facts")).count(), 0);
}

#[derive(Default)]
struct LiveSec {
    requests: AtomicUsize,
}

async fn facts_route(State(s): State<Arc<LiveSec>>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ua.contains('@') {
        return (StatusCode::FORBIDDEN, "<h1>Your Request Originates from an Undeclared Automated Tool</h1>")
            .into_response();
    }
    if file == format!("CIK{APPLE}.json") {
        return ([(header::CONTENT_TYPE, "application/json")], APPLE_FACTS).into_response();
    }
    (StatusCode::NOT_FOUND, "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>").into_response()
}

async fn serve_live() -> (String, Arc<LiveSec>) {
    let state = Arc::new(LiveSec::default());
    let app = Router::new().route("/api/xbrl/companyfacts/{file}", get(facts_route)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

// Multi-threaded: the fixture serves on the runtime's workers while the test blocks on the binary.
#[tokio::test(flavor = "multi_thread")]
async fn live_sec_materializes_from_the_api_and_a_cik_without_xbrl_is_a_failed_step() {
    let (url, state) = serve_live().await;
    let robo = Robo::new();
    robo.ok(&["partitions", "add", "sec_ciks", APPLE, "0000000404"]);
    let env = [("SEC_API_URL", url.as_str()), ("SEC_USER_AGENT", "RoboSystems Test admin@robosystems.test")];
    let ok = robo.run_with(&["materialize", "sec_company_facts", "--partition", APPLE], &env);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    let meta = metadata(&robo, "sec_company_facts").await;
    assert_eq!(meta[0]["source"], "live");
    assert_eq!(meta[0]["facts"], count_facts(APPLE_FACTS).0);

    let failed = robo.run_with(&["materialize", "sec_company_facts", "--partition", "0000000404"], &env);
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stdout.contains("CIK 0000000404 has no company facts at the SEC (HTTP 404): it has no XBRL data"),
        "{}",
        failed.stdout
    );
    assert!(!robo.home().join("storage/sec_company_facts/0000000404.parquet").exists());
    assert_eq!(metadata(&robo, "sec_company_facts").await.len(), 1, "nothing recorded for the failed CIK");
    // One request for each CIK: a 404 is not retried.
    assert_eq!(state.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_filings_sensor_polls_every_cik_of_the_dev_source_and_keeps_a_json_cursor() {
    let robo = Robo::new();
    let at = |now: &str, args: &[&str]| {
        let run = robo.run_with(args, &[("ROBO_ASSETS_NOW", now)]);
        assert_eq!(run.code, 0, "{args:?}:\n{}\n{}", run.stdout, run.stderr);
        run
    };
    at("2026-01-15T12:00:00Z", &["partitions", "add", "sec_ciks", APPLE, MSFT, "0000000404"]);
    // First pass: both CIKs the source knows are new; the unknown one is skipped, not fatal.
    at("2026-01-15T12:00:00Z", &["daemon", "--once"]);
    let cursor = at("2026-01-15T12:00:00Z", &["sensors", "cursor", "sec_filings_sensor"]).stdout;
    let cursor: serde_json::Value = serde_json::from_str(cursor.trim()).unwrap();
    assert_eq!(
        cursor,
        serde_json::json!({ APPLE: "0000320193-25-000057", MSFT: "0000950170-25-010491" }),
        "the newest accession of each CIK"
    );
    let mut db = robo.lineage_db().await;
    let facts: Vec<String> = sqlx::query_scalar(
        "SELECT partition_key FROM materializations WHERE asset_key = 'sec_company_facts' ORDER BY partition_key",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(facts, [APPLE, MSFT]);

    // Ten minutes later nothing is new.
    at("2026-01-15T12:10:00Z", &["daemon", "--once"]);
    let ticks: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT status, requests, message FROM ticks WHERE instigator = 'sec_filings_sensor' ORDER BY tick_time",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(ticks.len(), 2);
    assert_eq!((ticks[1].0.as_str(), ticks[1].1), ("skipped", 0));
    assert!(ticks[1].2.contains("3 CIKs polled, no new accession; skipped: 0000000404"), "{}", ticks[1].2);
}

/// A source whose newest accession per CIK the test sets; `fail` makes every call fail.
#[derive(Default)]
struct Filings {
    latest: std::sync::Mutex<std::collections::HashMap<String, String>>,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl resources::SecSource for Filings {
    async fn submissions(&self, cik: &str) -> Result<resources::sec::Submissions, resources::SecError> {
        resources::DevSecSource.submissions(cik).await
    }
    async fn latest_accession(&self, cik: &str) -> Result<Option<String>, resources::SecError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(resources::SecError::Throttled {
                operation: format!("GET /submissions/CIK{cik}.json"),
                attempts: 3,
                cool_down: std::time::Duration::from_secs(600),
            });
        }
        self.latest
            .lock()
            .unwrap()
            .get(cik)
            .cloned()
            .map(Some)
            .ok_or_else(|| resources::SecError::NotFound { cik: cik.to_owned(), what: "submissions" })
    }
    async fn company_facts(&self, cik: &str) -> Result<resources::sec::CompanyFacts, resources::SecError> {
        resources::DevSecSource.company_facts(cik).await
    }
    fn kind(&self) -> &'static str {
        "dev"
    }
    fn describe(&self) -> String {
        "test filings".to_owned()
    }
}

#[tokio::test]
async fn a_new_accession_requests_that_ciks_facts_once_and_a_failed_poll_keeps_the_cursor() {
    use lineage::{AutomationStore as _, LineageStore as _, RequestQueue as _};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let filings = Arc::new(Filings::default());
    filings.latest.lock().unwrap().extend([(APPLE.to_owned(), "a-1".to_owned()), (MSFT.to_owned(), "m-1".to_owned())]);
    let source: Arc<dyn resources::SecSource> = filings.clone();
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![assets::sec::company_facts()]).unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(dir.path())))),
        resources: engine::Resources::default().with(assets::SEC, source),
        clock: Arc::new(engine::SystemClock),
    };
    let automation = engine::automation::Automation {
        schedules: vec![],
        sensors: vec![assets::sec::filings_sensor()],
        conditions: vec![],
        catch_up: std::time::Duration::from_secs(3600),
        max_upstream_fill: engine::automation::DEFAULT_MAX_UPSTREAM_FILL,
    };
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-15T12:00:00Z".parse().unwrap();
    store.add_dynamic_partitions("sec_ciks", &[APPLE.to_owned(), MSFT.to_owned()], t0).await.unwrap();
    let pass = |minutes: i64| {
        let exec = &exec;
        let automation = &automation;
        async move {
            let reports =
                engine::automation::run_once(exec, automation, t0 + chrono::Duration::minutes(minutes)).await.unwrap();
            assert_eq!(reports.len(), 1);
            reports.into_iter().next().unwrap()
        }
    };
    let keys = || async {
        let mut keys: Vec<String> =
            store.requests(None, None, None, 100).await.unwrap().into_iter().map(|r| r.idempotency_key).collect();
        keys.sort();
        keys
    };
    let cursor = || async {
        let state = store.instigators().await.unwrap().into_iter().find(|s| s.name == assets::sec::SENSOR).unwrap();
        serde_json::from_str::<serde_json::Value>(&state.cursor.unwrap()).unwrap()
    };

    let first = pass(0).await;
    assert_eq!(first.status, lineage::TickStatus::Requested);
    assert_eq!(keys().await, [format!("sec_filings_sensor:{APPLE}:a-1"), format!("sec_filings_sensor:{MSFT}:m-1")]);
    assert_eq!(cursor().await, serde_json::json!({ APPLE: "a-1", MSFT: "m-1" }));

    // Apple files again: only Apple is requested, for its new accession.
    filings.latest.lock().unwrap().insert(APPLE.to_owned(), "a-2".to_owned());
    let second = pass(10).await;
    assert_eq!(second.requests, [("sec_company_facts".to_owned(), APPLE.to_owned())]);
    assert_eq!(keys().await.len(), 3);
    assert!(keys().await.contains(&format!("sec_filings_sensor:{APPLE}:a-2")));
    assert_eq!(cursor().await, serde_json::json!({ APPLE: "a-2", MSFT: "m-1" }));

    // Microsoft files while the SEC throttles: the tick fails and the cursor stays, so the next
    // pass requests it.
    filings.latest.lock().unwrap().insert(MSFT.to_owned(), "m-2".to_owned());
    filings.fail.store(true, Ordering::SeqCst);
    let failed = pass(20).await;
    assert_eq!(failed.status, lineage::TickStatus::Failed);
    assert!(failed.message.contains("SEC throttled"), "{}", failed.message);
    assert_eq!(cursor().await, serde_json::json!({ APPLE: "a-2", MSFT: "m-1" }));
    filings.fail.store(false, Ordering::SeqCst);
    let recovered = pass(30).await;
    assert_eq!(recovered.requests, [("sec_company_facts".to_owned(), MSFT.to_owned())]);
    assert_eq!(cursor().await, serde_json::json!({ APPLE: "a-2", MSFT: "m-2" }));
}
