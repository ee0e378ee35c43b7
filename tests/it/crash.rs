//! What survives Ctrl-C and `kill -9` of a real `robo-assets` process mid-run.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::Robo;

/// Three months of the billing chain: 2,208 hours and 92 days, long enough to interrupt.
const ARGS: [&str; 8] =
    ["materialize", "+storage_bill", "--from", "2025-10-01", "--to", "2025-12-31", "--concurrency", "2"];
const TOTAL_STEPS: i64 = 2_208 + 92;

/// Starts the long run and waits until it has recorded some materializations.
#[allow(clippy::zombie_processes)] // the callers wait for it
async fn start_and_wait(robo: &Robo) -> Child {
    let child = robo.command(&ARGS).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let db = robo.home().join("lineage.db");
    loop {
        assert!(Instant::now() < deadline, "the run never got going");
        if db.exists() {
            let mut conn = crate::common::connect(&db).await;
            let n: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(&mut conn).await;
            if n.is_ok_and(|n| n >= 20) {
                return child;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(child: &Child, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Every materialization points at a complete Parquet file whose content is its data version.
async fn assert_no_orphan_lineage_rows(robo: &Robo) -> i64 {
    let mut db = robo.lineage_db().await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT storage_uri, data_version FROM materializations").fetch_all(&mut db).await.unwrap();
    for (uri, version) in &rows {
        let path = uri.strip_prefix("file://").unwrap();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("lineage row points at {path}: {e}"));
        assert_eq!(&crate::common::data_version(bytes), version, "{path} is not the recorded output");
    }
    rows.len() as i64
}

#[tokio::test]
async fn ctrl_c_cancels_the_run_cleanly() {
    let robo = Robo::new();
    let child = start_and_wait(&robo).await;
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" canceled: 2300 steps"), "{stdout}");

    let recorded = assert_no_orphan_lineage_rows(&robo).await;
    assert!(recorded > 0 && recorded < TOTAL_STEPS, "{recorded} materializations");
    let mut db = robo.lineage_db().await;
    let (status, finished): (String, Option<String>) =
        sqlx::query_as("SELECT status, finished_at FROM runs").fetch_one(&mut db).await.unwrap();
    assert_eq!(status, "canceled");
    assert!(finished.is_some());
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(running, 0);
}

#[tokio::test]
async fn kill_9_leaves_no_orphan_lineage_rows_and_the_rerun_completes_the_rest() {
    let robo = Robo::new();
    let child = start_and_wait(&robo).await;
    signal(&child, "-9");
    let _ = child.wait_with_output().unwrap();

    let before = assert_no_orphan_lineage_rows(&robo).await;
    assert!(before > 0 && before < TOTAL_STEPS);
    let hours_before: i64 = {
        let mut db = robo.lineage_db().await;
        sqlx::query_scalar("SELECT count(*) FROM asset_partitions WHERE asset_key = 'usage_snapshot' AND current_materialization_id IS NOT NULL")
            .fetch_one(&mut db)
            .await
            .unwrap()
    };

    // Re-running the bills with --with-upstream plans only the hours that are still missing.
    let run = robo.ok(&[
        "materialize",
        "storage_bill",
        "--from",
        "2025-10-01",
        "--to",
        "2025-12-31",
        "--with-upstream",
        "--dry-run",
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let hours_planned =
        plan["steps"].as_array().unwrap().iter().filter(|s| s["asset"] == "usage_snapshot").count() as i64;
    assert_eq!(hours_planned, 2_208 - hours_before);
    robo.ok(&["materialize", "storage_bill", "--from", "2025-10-01", "--to", "2025-12-31", "--with-upstream"]);
    let mut db = robo.lineage_db().await;
    let current: i64 =
        sqlx::query_scalar("SELECT count(*) FROM asset_partitions WHERE current_materialization_id IS NOT NULL")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(current, TOTAL_STEPS, "every cell ends materialized");
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT asset_key, partition_key FROM materializations WHERE asset_key = 'usage_snapshot' \
         GROUP BY asset_key, partition_key HAVING count(*) > 1)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(twice, 0, "no hour materialized before the crash was redone");
    assert_no_orphan_lineage_rows(&robo).await;

    // The killed run ended canceled as soon as the next process of this host looked (the re-run),
    // with a reason, and nothing of it is left for a worker to run later.
    let runs: serde_json::Value = serde_json::from_str(&robo.ok(&["runs", "--json"]).stdout).unwrap();
    let runs = &runs["runs"];
    let statuses: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "canceled"], "newest first: the re-run, then the killed run");
    let killed = runs[1]["run_id"].as_str().unwrap();
    let logs = robo.ok(&["runs", "logs", killed]).stdout;
    assert!(logs.contains("run_canceled") && logs.contains("its process exited"), "{logs}");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM materialization_requests WHERE state IN ('blocked', 'available', 'running')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(left, 0, "no leftover request of the killed run for a worker to run later");
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(&mut db).await.unwrap();
    assert_eq!(all, TOTAL_STEPS, "one materialization per cell, nothing run twice");
}

/// A `robo-assets worker` told to stop (SIGTERM: a rollout, a scale-down) hands what it holds
/// back to the queue, the interrupted attempts not charged, instead of canceling it; another
/// worker then carries the backfill to its end.
#[tokio::test]
async fn sigterm_to_a_worker_releases_its_requests_for_other_workers() {
    let robo = Robo::new();
    robo.ok(&["backfill", "usage_snapshot", "--from", "2025-12-15T00:00", "--to", "2025-12-15T03:00", "--detach"]);
    let count = |state: &'static str| {
        let robo = &robo;
        async move {
            let mut db = robo.lineage_db().await;
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM materialization_requests WHERE state = $1")
                .bind(state)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
    };
    // Every step waits a minute on the (slow) dev source: the worker holds all four.
    let worker = robo
        .command(&["worker", "--concurrency", "4"])
        .env("ROBO_ASSETS_DEV_LATENCY_MS", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("running").await < 4 {
        assert!(Instant::now() < deadline, "the worker never held the four requests");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&worker, "-TERM");
    let out = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("0 canceled") && stderr.contains("4 released to the queue"), "{stderr}");
    assert_eq!((count("available").await, count("running").await, count("canceled").await), (4, 0, 0));
    let mut db = robo.lineage_db().await;
    let attempts: Vec<i64> =
        sqlx::query_scalar("SELECT attempt FROM materialization_requests").fetch_all(&mut db).await.unwrap();
    assert_eq!(attempts, [0, 0, 0, 0], "the interrupted attempts are not charged");

    // Another worker finishes the backfill.
    let mut other = robo.command(&["worker"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("succeeded").await < 4 {
        assert!(Instant::now() < deadline, "the other worker did not finish the backfill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = other.kill();
    let _ = other.wait();
    let backfills: serde_json::Value = serde_json::from_str(&robo.ok(&["backfill", "list", "--json"]).stdout).unwrap();
    assert_eq!(backfills["backfills"][0]["status"], "succeeded", "{backfills}");
    assert_eq!(assert_no_orphan_lineage_rows(&robo).await, 4);
}
