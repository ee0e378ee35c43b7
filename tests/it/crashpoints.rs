//! Crash points: the real binary aborted (`ROBO_ASSETS_FAILPOINT`, as `kill -9` would) at each
//! commit boundary of a step, then resumed the way an operator would (`backfill resume`,
//! `daemon --once`). Afterwards every cell is materialized exactly once, nothing is left
//! running, the billing ledger equals an uninterrupted run's (in another home), and every
//! lineage row points at the output it recorded. The crash happens at a count of hits, never
//! after a sleep, so the tests do not depend on timing.

use std::os::unix::process::ExitStatusExt as _;

use crate::common::Robo;

/// Two days of the billing chain: 48 hours and two bills (each writing the ledger).
const BACKFILL: [&str; 7] =
    ["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-02", "--concurrency"];

pub(crate) fn backfill_args() -> Vec<&'static str> {
    BACKFILL.iter().copied().chain(["2"]).collect()
}

/// Runs `args` at `now` with the failpoint `point` armed and asserts the process aborted there.
fn crash_at(robo: &Robo, args: &[&str], now: &str, point: &str) {
    assert!(engine::failpoint::POINTS.contains(&point.split(':').next().unwrap()), "{point} is not a failpoint");
    let out = robo
        .command(args)
        .env("ROBO_ASSETS_NOW", now)
        .env(engine::failpoint::ENV, point)
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(6), "{args:?} did not abort at {point}: {:?}\n{stderr}", out.status);
    let name = point.split(':').next().unwrap();
    assert!(stderr.contains(&format!("failpoint {name}: aborting")), "{stderr}");
}

/// Runs `args` at `now` and asserts exit code 0.
fn ok_at(robo: &Robo, args: &[&str], now: &str) -> String {
    let run = robo.run_with(args, &[("ROBO_ASSETS_NOW", now)]);
    assert_eq!(run.code, 0, "{args:?} at {now}:\n{}\n{}", run.stdout, run.stderr);
    run.stdout
}

/// (asset, partition, materializations) for every cell.
pub(crate) async fn cells(robo: &Robo) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT asset_key, partition_key, count(*) FROM materializations GROUP BY asset_key, partition_key \
         ORDER BY asset_key, partition_key",
    )
    .fetch_all(&mut robo.lineage_db().await)
    .await
    .unwrap()
}

/// The ledger, minus its timestamps and descriptions.
pub(crate) async fn ledger(robo: &Robo) -> Vec<(String, String, String, String, i64, i64)> {
    sqlx::query_as(
        "SELECT tenant_id, idempotency_key, kind, period, amount_millicredits, revision FROM credit_ledger \
         ORDER BY idempotency_key",
    )
    .fetch_all(&mut robo.app_db().await)
    .await
    .unwrap()
}

/// What every crash point must leave once resumed, compared with the uninterrupted run `clean`.
async fn assert_recovered(robo: &Robo, clean: &Robo) {
    let (got, want) = (cells(robo).await, cells(clean).await);
    assert!(!want.is_empty());
    assert!(got.iter().all(|(_, _, n)| *n == 1), "exactly once each: {got:?}");
    assert_eq!(got, want, "the same cells as the uninterrupted run");

    let mut db = robo.lineage_db().await;
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(running, 0, "no partition left running");
    let waiting: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT asset_key, partition_key, state FROM materialization_requests \
         WHERE state IN ('blocked', 'available', 'running')",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(waiting.is_empty(), "no request left waiting or running: {waiting:?}");
    let open: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM runs WHERE status IN ('queued', 'running')")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(open.is_empty(), "no run left open: {open:?}");

    assert_eq!(ledger(robo).await, ledger(clean).await, "the ledger equals the uninterrupted run's");

    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT storage_uri, data_version FROM materializations WHERE storage_uri IS NOT NULL")
            .fetch_all(&mut db)
            .await
            .unwrap();
    for (uri, version) in &rows {
        let path = uri.strip_prefix("file://").unwrap();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("lineage row points at {path}: {e}"));
        assert_eq!(&crate::common::data_version(bytes), version, "{path} is not the recorded output");
    }
}

/// The backfill, uninterrupted, in a home of its own.
pub(crate) fn clean_backfill() -> Robo {
    let clean = Robo::new();
    let out = ok_at(&clean, &backfill_args(), crate::common::NOW);
    assert!(out.contains("policy missing: succeeded"), "{out}");
    clean
}

/// The clean backfill billed something, so comparing ledgers compares something.
pub(crate) async fn assert_bills_in_ledger(clean: &Robo) {
    let entries = ledger(clean).await;
    assert!(entries.iter().any(|e| e.2 == "storage" || e.1.starts_with("storage_bill:")), "{entries:?}");
}

/// Aborts the backfill at `point`, resumes it, and checks the result against a clean run.
async fn backfill_survives(point: &str) {
    let robo = Robo::new();
    crash_at(&robo, &backfill_args(), crate::common::NOW, point);
    let id: String =
        sqlx::query_scalar("SELECT id FROM backfills").fetch_one(&mut robo.lineage_db().await).await.unwrap();
    let resumed = ok_at(&robo, &["backfill", "resume", &id], crate::common::NOW);
    assert!(resumed.contains("policy missing: succeeded"), "{resumed}");
    let clean = clean_backfill();
    assert_bills_in_ledger(&clean).await;
    assert_recovered(&robo, &clean).await;
}

#[tokio::test]
async fn crash_after_a_backfill_is_created_before_its_cells_are_requested() {
    backfill_survives("backfill.submit").await;
}

#[tokio::test]
async fn crash_after_an_output_file_is_written_before_its_completion_commits() {
    backfill_survives("worker.output_written:5").await;
}

#[tokio::test]
async fn crash_after_a_bills_output_is_written_before_its_completion_commits() {
    // 48 hours, then the first bill: its ledger entries and its file are written, not recorded.
    backfill_survives("worker.output_written:49").await;
}

#[tokio::test]
async fn crash_before_the_fenced_completion_commits() {
    backfill_survives("worker.before_complete:3").await;
}

#[tokio::test]
async fn crash_after_the_fenced_completion_commits() {
    backfill_survives("worker.after_complete:3").await;
}

#[tokio::test]
async fn crash_after_the_ledger_is_written_before_the_bill_is_recorded() {
    backfill_survives("appdb.ledger_written:1").await;
}

#[tokio::test]
async fn crash_between_a_sensor_evaluation_and_its_tick_commit() {
    const AT: &str = "2026-01-15T12:00:00Z";
    let robo = Robo::new();
    crash_at(&robo, &["daemon", "--once"], AT, "automation.sensor_evaluated");
    // The schedules' first ticks were committed before it; the sensor's evaluation left nothing.
    let ticks: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks WHERE instigator = 'pending_subscription_sensor'")
        .fetch_one(&mut robo.lineage_db().await)
        .await
        .unwrap();
    assert_eq!(ticks, 0, "the evaluation left nothing");
    let out = ok_at(&robo, &["daemon", "--once"], AT);
    assert!(out.contains("pending_subscription_sensor  requested graph_provisioning sub-hooli"), "{out}");

    let clean = Robo::new();
    ok_at(&clean, &["daemon", "--once"], AT);
    assert_recovered(&robo, &clean).await;
    let cursor = ok_at(&robo, &["sensors", "cursor", "pending_subscription_sensor"], AT);
    assert_eq!(cursor.trim(), "sub-hooli");
}

#[tokio::test]
async fn crash_during_a_schedules_catch_up_then_the_next_pass_runs_every_tick() {
    const FIRST: &str = "2026-01-10T12:00:00Z";
    const LATER: &str = "2026-01-10T16:30:00Z";
    let robo = Robo::new();
    ok_at(&robo, &["daemon", "--once", "--no-worker"], FIRST);
    // 12:05 .. 16:05 are due: abort after the second tick is committed.
    crash_at(&robo, &["daemon", "--once"], LATER, "automation.schedule_tick_committed:2");
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks WHERE instigator = 'usage_snapshot_hourly'")
        .fetch_one(&mut robo.lineage_db().await)
        .await
        .unwrap();
    assert_eq!(committed, 1 + 2, "the first pass's tick (11:05), then two");
    // The next pass commits the other three ticks and runs all six: also the first pass's and
    // the two the crashed pass committed and never ran.
    ok_at(&robo, &["daemon", "--once"], LATER);
    ok_at(&robo, &["daemon", "--once"], LATER);

    let clean = Robo::new();
    ok_at(&clean, &["daemon", "--once", "--no-worker"], FIRST);
    ok_at(&clean, &["daemon", "--once"], LATER);
    ok_at(&clean, &["daemon", "--once"], LATER);
    assert_recovered(&robo, &clean).await;
    // (The first pass's daily tick requested the 9th's hours too.)
    let hours: Vec<(String, String, i64)> = cells(&robo)
        .await
        .into_iter()
        .filter(|(a, p, _)| a == "usage_snapshot" && p.starts_with("2026-01-10"))
        .collect();
    assert_eq!(hours.len(), 6, "10:00 (the first pass's hourly tick), 11:00 .. 15:00: {hours:?}");
}
