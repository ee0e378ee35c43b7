//! Backfills: dependency order across hourly → daily → monthly, kill -9 and resume, failed
//! cells and retry-failed, cancel, the dry run; the CLI on SQLite and the engine with test
//! assets whose failures we choose.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeZone;
use engine::backfill::{BackfillPolicy, BackfillSpec, CellStates};
use engine::{
    AssetDef, AssetError, Definitions, Executor, FixedClock, NoObserver, Output, PartitionMapping, PartitionSpec,
    PartitionsDef, Resources, asset,
};
use lineage::{LineageStore, RequestQueue, RequestState, RunStatus, SqliteStore};
use resources::{LocalObjectStore, ParquetIoManager};
use tokio_util::sync::CancellationToken;

use crate::common::Robo;

fn backfill_id(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("Backfill ")).unwrap_or_else(|| panic!("no id in {stdout}"));
    line.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_owned()
}

/// (asset, partition, materializations) for every cell, and the total.
async fn materializations_per_cell(robo: &Robo) -> Vec<(String, String, i64)> {
    let mut db = robo.lineage_db().await;
    sqlx::query_as(
        "SELECT asset_key, partition_key, count(*) FROM materializations GROUP BY asset_key, partition_key \
         ORDER BY asset_key, partition_key",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
}

#[test]
fn the_dry_run_prints_cells_per_asset_as_ranges_and_what_the_policy_skips() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-15", "--with-upstream"]);
    let out = robo.ok(&["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-31", "--dry-run"]);
    insta::assert_snapshot!(out.stdout, @r"
    Backfill plan: +storage_bill from 2025-12-01 to 2025-12-31, policy missing: 750 cells (dry run, nothing was submitted)
      usage_snapshot          720 cells  2025-12-01T00:00..2025-12-14T23:00 (336), 2025-12-16T00:00..2025-12-31T23:00 (384)
                               24 skipped: already materialized (2025-12-15T00:00..2025-12-15T23:00 (24))
      storage_bill             30 cells  2025-12-01..2025-12-14 (14), 2025-12-16..2025-12-31 (16)
                                1 skipped: already materialized (2025-12-15)
    Cells run in dependency order: each one as soon as the cells it reads are done.
    ");
    let all = robo.ok(&[
        "backfill",
        "+storage_bill",
        "--from",
        "2025-12-14",
        "--to",
        "2025-12-15",
        "--dry-run",
        "--policy",
        "all",
    ]);
    assert!(all.stdout.contains("policy all: 50 cells"), "{}", all.stdout);
    let failed = robo.ok(&[
        "backfill",
        "+storage_bill",
        "--from",
        "2025-12-14",
        "--to",
        "2025-12-15",
        "--dry-run",
        "--policy",
        "failed",
    ]);
    assert!(failed.stdout.contains("policy failed: 0 cells"), "{}", failed.stdout);
    // Nothing was submitted or persisted by dry runs.
    assert!(robo.ok(&["backfill", "list"]).stdout.starts_with("No backfills yet."));

    let bad =
        robo.run(&["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-31", "--policy", "newest"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("possible values: missing, failed, stale, all"), "{}", bad.stderr);
    let not_a_day = robo.run(&["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-13-01"]);
    assert_eq!(not_a_day.code, 2, "{}", not_a_day.stderr);
    let unknown = robo.run(&["backfill", "status", "01a2154d-ee9a-7184-83aa-214a1d39aae6"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no backfill matches \"01a2154d-ee9a-7184-83aa-214a1d39aae6\""),
        "{}",
        unknown.stderr
    );
}

#[tokio::test]
async fn each_bill_runs_as_soon_as_its_24_hours_are_done_not_after_all_hours() {
    let robo = Robo::new();
    let out =
        robo.ok(&["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-03", "--concurrency", "2"]);
    assert!(out.stdout.contains("policy missing: succeeded"), "{}", out.stdout);
    let mut db = robo.lineage_db().await;
    let ids: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT asset_key, partition_key, id FROM materializations").fetch_all(&mut db).await.unwrap();
    let id_of = |asset: &str, key: &str| ids.iter().find(|(a, k, _)| a == asset && k == key).unwrap().2;
    for day in ["2025-12-01", "2025-12-02", "2025-12-03"] {
        let last_hour = (0..24).map(|h| id_of("usage_snapshot", &format!("{day}T{h:02}:00"))).max().unwrap();
        assert!(id_of("storage_bill", day) > last_hour, "the bill of {day} waited for its hours");
    }
    let last_hour_of_the_range =
        (0..24).map(|h| id_of("usage_snapshot", &format!("2025-12-03T{h:02}:00"))).max().unwrap();
    assert!(
        id_of("storage_bill", "2025-12-01") < last_hour_of_the_range,
        "the bill of the 1st ran before the hours of the 3rd were done"
    );
    assert_eq!(ids.len(), 75);
}

#[tokio::test]
async fn kill_9_mid_backfill_then_resume_materializes_every_cell_exactly_once() {
    let robo = Robo::new();
    let args = ["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-05", "--concurrency", "2"];
    let child = robo
        .command(&args)
        .env("ROBO_ASSETS_DEV_LATENCY_MS", "25")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let db = robo.home().join("lineage.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the backfill never got going");
        if db.exists() {
            let mut conn = crate::common::connect(&db).await;
            let n: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(&mut conn).await;
            if n.is_ok_and(|n| n >= 30) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let id = backfill_id(&String::from_utf8_lossy(&out.stdout));
    let before = materializations_per_cell(&robo).await;
    assert!(before.len() >= 30 && before.len() < 125, "{} cells done before the kill", before.len());

    let status = robo.ok(&["backfill", "status", &id]);
    assert!(status.stdout.contains(": running (run"), "{}", status.stdout);

    let resumed = robo.ok(&["backfill", "resume", &id]);
    assert!(resumed.stdout.contains("0 new cells requested"), "{}", resumed.stdout);
    assert!(resumed.stdout.contains("policy missing: succeeded"), "{}", resumed.stdout);
    let after = materializations_per_cell(&robo).await;
    assert_eq!(after.len(), 125, "every cell materialized");
    assert!(after.iter().all(|(_, _, n)| *n == 1), "exactly once each: {after:?}");
    // Nothing done before the crash was redone: the same rows, not new ones.
    for cell in &before {
        assert!(after.contains(cell));
    }
    let again = robo.ok(&["backfill", "resume", &id]);
    assert!(again.stdout.contains("is complete: nothing to resume"), "{}", again.stdout);
}

#[tokio::test]
async fn a_failed_cell_is_reported_with_its_error_and_retry_failed_runs_only_it() {
    let robo = Robo::new();
    robo.ok(&["materialize", "usage_snapshot", "--from", "2025-12-03T00:00", "--to", "2025-12-03T23:00"]);
    // Someone rewrites an hour's file behind the store's back: the bill that reads it must fail.
    let mut db = robo.lineage_db().await;
    let uri: String =
        sqlx::query_scalar("SELECT storage_uri FROM materializations WHERE partition_key = '2025-12-03T05:00'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    let path = uri.strip_prefix("file://").unwrap().to_owned();
    let good = std::fs::read(&path).unwrap();
    let other = path.replace("2025-12-03T05:00", "2025-12-03T06:00");
    assert_ne!(other, path);
    std::fs::copy(&other, &path).unwrap();

    let out = robo.run(&["backfill", "+storage_bill", "--from", "2025-12-02", "--to", "2025-12-04"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let id = backfill_id(&out.stdout);
    let status = robo.ok(&["backfill", "status", &id]);
    assert!(status.stdout.contains("policy missing: failed"), "{}", status.stdout);
    assert!(status.stdout.contains("Failed cells (1):"), "{}", status.stdout);
    assert!(status.stdout.contains("✗ storage_bill 2025-12-03 after 1 attempt: "), "{}", status.stdout);
    assert!(status.stdout.contains("is not the recorded version"), "the error says why: {}", status.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&robo.ok(&["backfill", "status", &id, "--json"]).stdout).unwrap();
    let bill = json["assets"].as_array().unwrap().iter().find(|a| a["asset"] == "storage_bill").unwrap();
    assert_eq!((bill["counts"]["done"].as_i64(), bill["counts"]["failed"].as_i64()), (Some(2), Some(1)));
    assert_eq!(bill["counts"]["skipped"].as_i64(), Some(0));
    let usage = json["assets"].as_array().unwrap().iter().find(|a| a["asset"] == "usage_snapshot").unwrap();
    assert_eq!((usage["cells"].as_i64(), usage["counts"]["skipped"].as_i64()), (Some(48), Some(24)));

    // The file is put back; retry-failed re-runs the one failed cell and nothing else.
    std::fs::write(&path, good).unwrap();
    let before = materializations_per_cell(&robo).await;
    let retried = robo.ok(&["backfill", "retry-failed", &id]);
    assert!(
        retried.stdout.contains("1 failed cell and cells downstream of them back in the queue"),
        "{}",
        retried.stdout
    );
    assert!(retried.stdout.contains("policy missing: succeeded"), "{}", retried.stdout);
    let after = materializations_per_cell(&robo).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains(&("storage_bill".into(), "2025-12-03".into(), 1)));
    assert!(after.iter().all(|(_, _, n)| *n == 1));
    assert!(robo.ok(&["backfill", "retry-failed", &id]).stdout.contains("has no failed cells"));
}

#[tokio::test]
async fn cancel_stops_a_detached_backfill_and_resume_finishes_it() {
    let robo = Robo::new();
    let out = robo.ok(&["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-02", "--detach"]);
    let id = backfill_id(&out.stdout);
    assert!(out.stdout.contains("Submitted: `robo-assets worker` processes carry it out"), "{}", out.stdout);
    let canceled = robo.ok(&["backfill", "cancel", &id]);
    assert!(
        canceled.stdout.contains("50 waiting cells canceled; 0 running cells asked to stop"),
        "{}",
        canceled.stdout
    );
    let status = robo.ok(&["backfill", "status", &id]);
    assert!(status.stdout.contains("policy missing: canceled"), "{}", status.stdout);
    assert!(materializations_per_cell(&robo).await.is_empty());
    let list = robo.ok(&["backfill", "list"]);
    // Listed by its short form: `bf-` and the last 8 hex digits.
    assert!(list.stdout.contains(&format!("bf-{}  canceled", &id[id.len() - 8..])), "{}", list.stdout);

    let resumed = robo.ok(&["backfill", "resume", &id]);
    assert!(resumed.stdout.contains("50 canceled or upstream_failed cells reopened"), "{}", resumed.stdout);
    assert!(resumed.stdout.contains("policy missing: succeeded"), "{}", resumed.stdout);
    assert_eq!(materializations_per_cell(&robo).await.len(), 50);
}

// The engine with test assets: hourly → daily → monthly, and a cell that fails until fixed.

fn chain(broken: Arc<AtomicBool>) -> Vec<AssetDef> {
    vec![
        asset("usage")
            .partitions(PartitionsDef::hourly("2025-01-01"))
            .compute(|ctx| async move { Ok(Output::none().with_metadata("partition", ctx.partition_key.clone())) }),
        asset("bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage").compute(move |ctx| {
            let broken = broken.clone();
            async move {
                if ctx.partition_key == "2025-12-10" && broken.load(Ordering::SeqCst) {
                    return Err::<Output, AssetError>("upstream API said no for 2025-12-10".into());
                }
                Ok(Output::none().with_metadata("partition", ctx.partition_key.clone()))
            }
        }),
        asset("report")
            .partitions(PartitionsDef::monthly("2025-01-01"))
            .dep_mapped("bill", PartitionMapping::time_window(0, 0))
            .compute(|ctx| async move { Ok(Output::none().with_metadata("partition", ctx.partition_key.clone())) }),
    ]
}

async fn mid(store: &SqliteStore, asset: &str, key: &str) -> i64 {
    store.history(asset, Some(key), None, 1).await.unwrap()[0].id
}

async fn engine_harness(assets: Vec<AssetDef>) -> (tempfile::TempDir, Executor, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let exec = Executor {
        defs: Definitions::new(assets).unwrap(),
        store: store.clone(),
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path().join("storage"))))),
        resources: Resources::default(),
        clock: Arc::new(FixedClock(chrono::Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap())),
    };
    (dir, exec, store)
}

/// A Ctrl-C stops a running step first, which marks its downstream `upstream_failed`, then
/// cancels the waiting rest. `resume` puts both back: the day's bill is done, and the backfill
/// does not end failed with nothing failed.
#[tokio::test]
async fn resume_also_does_the_cells_a_canceled_step_held_back() {
    let (_dir, exec, store) = engine_harness(chain(Arc::new(AtomicBool::new(false)))).await;
    let graph = exec.defs.graph();
    let spec = BackfillSpec { selection: "+bill".into(), from: "2025-12-01".into(), to: "2025-12-01".into() };
    let selected = engine::selection::resolve(graph, &spec.selection).unwrap();
    let ctx = exec.partitions_context(None).await.unwrap();
    let range = PartitionSpec::Range(spec.from.clone(), spec.to.clone());
    let targets = engine::plan::targets(graph, &selected, &range, &ctx).unwrap();
    let states = CellStates::load(&*store, graph, graph.upstream_closure(&selected, None)).await.unwrap();
    let bf = engine::backfill::plan_backfill(graph, &targets, &states, BackfillPolicy::Missing, &ctx).unwrap();
    let (id, run) = engine::backfill::launch(&exec, &spec, &bf).await.unwrap();

    // One hour is running when the cancel comes: it stops, then the waiting rest is canceled.
    let now = chrono::Utc::now();
    let hour =
        store.claim_requests("w", Some(run), 1, now, now + chrono::Duration::seconds(60)).await.unwrap().remove(0);
    assert_eq!(store.cancel_request(hour.id, now).await.unwrap(), Some(RequestState::Running));
    let stopped = lineage::FailedAttempt {
        id: hour.id,
        attempt: hour.attempt,
        error: "canceled".into(),
        retry_at: None,
        checks: Vec::new(),
        messages: Vec::new(),
    };
    assert_eq!(store.fail_request("w", &stopped, now).await.unwrap(), lineage::FailOutcome::Canceled);
    store.cancel_run(run, now).await.unwrap();
    let counts = store.request_counts(run).await.unwrap();
    let count =
        |asset: &str, state: RequestState| counts.iter().find(|(a, s, _)| a == asset && *s == state).map_or(0, |c| c.2);
    assert_eq!((count("usage", RequestState::Canceled), count("bill", RequestState::UpstreamFailed)), (24, 1));

    let (reopened, added) =
        engine::backfill::resume(&exec, id, run, &bf.plan, engine::backfill::RESUME_REOPENS).await.unwrap();
    assert_eq!((reopened, added), (25, 0));
    engine::backfill::drive(&exec, run, 4, Arc::new(NoObserver), CancellationToken::new()).await.unwrap();
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Succeeded);
    assert!(mid(&store, "bill", "2025-12-01").await > mid(&store, "usage", "2025-12-01T23:00").await);
}

#[tokio::test]
async fn hourly_daily_monthly_in_dependency_order_and_retry_failed_reruns_the_failed_cell_and_its_downstream() {
    let broken = Arc::new(AtomicBool::new(true));
    let (_dir, exec, store) = engine_harness(chain(broken.clone())).await;
    let graph = exec.defs.graph();
    let spec = BackfillSpec { selection: "+report".into(), from: "2025-12-01".into(), to: "2025-12-31".into() };
    let selected = engine::selection::resolve(graph, &spec.selection).unwrap();
    let ctx = exec.partitions_context(None).await.unwrap();
    let targets =
        engine::plan::targets(graph, &selected, &PartitionSpec::Range(spec.from.clone(), spec.to.clone()), &ctx)
            .unwrap();
    let states = CellStates::load(&*store, graph, graph.upstream_closure(&selected, None)).await.unwrap();
    let bf = engine::backfill::plan_backfill(graph, &targets, &states, BackfillPolicy::Missing, &ctx).unwrap();
    assert_eq!(bf.cells(), 744 + 31 + 1);

    let (id, run) = engine::backfill::launch(&exec, &spec, &bf).await.unwrap();
    engine::backfill::drive(&exec, run, 4, Arc::new(NoObserver), CancellationToken::new()).await.unwrap();
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Failed);
    let counts = store.request_counts(run).await.unwrap();
    let count =
        |asset: &str, state: RequestState| counts.iter().find(|(a, s, _)| a == asset && *s == state).map_or(0, |c| c.2);
    assert_eq!(count("usage", RequestState::Succeeded), 744);
    assert_eq!((count("bill", RequestState::Succeeded), count("bill", RequestState::Failed)), (30, 1));
    assert_eq!(count("report", RequestState::UpstreamFailed), 1, "the month waits on its failed day");

    // Order, from the store: each bill after its 24 hours, the first bill long before the last
    // hour, the report after every bill.
    let first_bill = mid(&store, "bill", "2025-12-01").await;
    assert!(first_bill > mid(&store, "usage", "2025-12-01T23:00").await);
    assert!(first_bill < mid(&store, "usage", "2025-12-31T23:00").await, "bills do not wait for the whole range");

    // Fixed: retry-failed runs the failed day and the month, nothing else.
    broken.store(false, Ordering::SeqCst);
    let materialized_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(store.pool()).await.unwrap();
    assert_eq!(
        store
            .reopen_requests(run, &[RequestState::Failed, RequestState::UpstreamFailed], chrono::Utc::now())
            .await
            .unwrap(),
        2
    );
    engine::backfill::drive(&exec, run, 4, Arc::new(NoObserver), CancellationToken::new()).await.unwrap();
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Succeeded);
    let materialized_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(store.pool()).await.unwrap();
    assert_eq!(materialized_after, materialized_before + 2);
    let report = mid(&store, "report", "2025-12").await;
    for day in 1..=31 {
        assert!(report > mid(&store, "bill", &format!("2025-12-{day:02}")).await);
    }
    let record = store.backfills(Some(id), None, 1).await.unwrap().remove(0);
    assert_eq!((record.status, record.cells), (RunStatus::Succeeded, 776));
}

#[test]
fn upstream_partitions_of_selected_assets_outside_the_range_are_included() {
    // January's report reads February's allocation (which settles January's overage): a
    // backfill of +usage_report for January includes it, and the days and hours it needs.
    let robo = Robo::new();
    let out = robo.run_with(
        &["backfill", "+usage_report", "--from", "2026-01", "--to", "2026-01", "--dry-run"],
        &[("ROBO_ASSETS_NOW", "2026-02-21T16:00:00Z")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("credit_allocation         2 cells  2026-01..2026-02 (2)"), "{}", out.stdout);
    assert!(out.stdout.contains("usage_report              1 cell   2026-01"), "{}", out.stdout);
    // Without the upstream asset in the selection, missing partitions are an error, as for materialize.
    let refused = robo.run_with(
        &["backfill", "usage_report", "--from", "2026-01", "--to", "2026-01"],
        &[("ROBO_ASSETS_NOW", "2026-02-21T16:00:00Z")],
    );
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("missing upstream partitions"), "{}", refused.stderr);
}

/// Without a terminal, a backfill says what it is about to do at once (0 of 24 cells), before any
/// cell runs, and its durations are human (never nanoseconds, never ten decimals).
#[test]
fn a_backfill_without_a_terminal_reports_progress_from_its_start() {
    let robo = Robo::new();
    let run = robo.run_with(
        &["backfill", "usage_snapshot", "--from", "2025-12-15T00:00", "--to", "2025-12-15T23:00"],
        &[("RUST_LOG", "info")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("Backfill progress.")).collect();
    assert!(lines.first().is_some_and(|l| l.contains("cells=\"0/24\"")), "the first line comes at start: {lines:?}");
    assert!(lines.last().is_some_and(|l| l.contains("cells=\"24/24\"")), "{lines:?}");
    for line in &lines {
        assert!(!line.contains("ns\"") && !line.contains("µs\""), "a human duration: {line}");
    }
}
