//! Schedules and sensors through the CLI: catch-up after downtime (bounded; a first pass fires
//! each schedule's latest tick), listings that write nothing, the missing-upstream cap, log
//! times on the pinned clock, the provisioning sensor end to end, a sensor evaluation that dies before
//! its commit, two daemons on one PostgreSQL, and `simulate`.

use lineage::AutomationStore as _;
use std::sync::Arc;

use crate::common::Robo;

fn at(robo: &Robo, now: &str, args: &[&str]) -> crate::common::Run {
    let run = robo.run_with(args, &[("ROBO_ASSETS_NOW", now)]);
    assert_eq!(run.code, 0, "{args:?} at {now}:\n{}\n{}", run.stdout, run.stderr);
    run
}

async fn ticks(robo: &Robo, name: &str) -> Vec<(String, String, i64)> {
    let mut db = robo.lineage_db().await;
    sqlx::query_as("SELECT tick_time, status, requests FROM ticks WHERE instigator = $1 ORDER BY tick_time")
        .bind(name)
        .fetch_all(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_day_of_downtime_is_caught_up_and_a_first_pass_fires_only_the_latest_tick() {
    let robo = Robo::new();
    // First start at 2026-01-10 12:00: each schedule fires its latest tick, not its history.
    let first = at(&robo, "2026-01-10T12:00:00Z", &["daemon", "--once", "--no-worker"]);
    assert!(
        first.stdout.contains("usage_snapshot_hourly        requested usage_snapshot 2026-01-10T10:00"),
        "{}",
        first.stdout
    );
    let hourly = ticks(&robo, "usage_snapshot_hourly").await;
    assert_eq!(hourly.len(), 1, "{hourly:?}");
    assert!(hourly[0].0.starts_with("2026-01-10T11:05"), "{hourly:?}");

    // Next start three days later: only the last day (the catch-up window) is requested.
    at(&robo, "2026-01-13T12:30:00Z", &["daemon", "--once", "--no-worker"]);
    let hourly = ticks(&robo, "usage_snapshot_hourly").await;
    assert_eq!(hourly.len(), 1 + 24, "11:05 on the 10th, then 13:05 on the 12th .. 12:05 on the 13th");
    assert!(hourly[1].0.starts_with("2026-01-12T13:05"), "{hourly:?}");
    assert!(hourly.iter().all(|(_, status, n)| status == "requested" && *n >= 1));
    let daily = ticks(&robo, "storage_bill_daily").await;
    assert_eq!(daily.len(), 2, "02:00 on the 10th (the first pass), 02:00 on the 13th: {daily:?}");
    // The bill's tick requested yesterday's bill and the 12 hours it reads that nothing had
    // requested; the 12 the hourly ticks of this pass requested are waited on, not requested
    // again.
    assert_eq!(daily[1].2, 13);
    let bill = at(&robo, "2026-01-13T12:30:00Z", &["ticks", "storage_bill_daily", "--limit", "1"]);
    assert!(
        bill.stdout.contains(
            "requested  13 requests  storage_bill 2026-01-12; usage_snapshot: 12 partitions (2026-01-12T00:00 .. \
             2026-01-12T11:00); already requested, pending: usage_snapshot: 12 partitions (2026-01-12T12:00 .. \
             2026-01-12T23:00)"
        ),
        "{}",
        bill.stdout
    );

    // Evaluating again at the same time adds nothing: ticks are unique.
    let again = at(&robo, "2026-01-13T12:30:00Z", &["daemon", "--once", "--no-worker"]);
    assert!(!again.stdout.contains("usage_snapshot_hourly"), "{}", again.stdout);
    assert_eq!(ticks(&robo, "usage_snapshot_hourly").await.len(), 25);

    // A stopped schedule is not evaluated; started again, it resumes from its last tick.
    at(&robo, "2026-01-13T12:30:00Z", &["schedules", "stop", "usage_snapshot_hourly"]);
    at(&robo, "2026-01-13T15:30:00Z", &["daemon", "--once", "--no-worker"]);
    assert_eq!(ticks(&robo, "usage_snapshot_hourly").await.len(), 25);
    let list = at(&robo, "2026-01-13T15:30:00Z", &["schedules"]);
    assert!(list.stdout.contains("usage_snapshot_hourly        stopped"), "{}", list.stdout);
    // The zone column is named as `--json` names it, and every row's last tick starts under its
    // header.
    let header = list.stdout.lines().next().unwrap();
    assert!(header.contains(" TIMEZONE "), "{header}");
    let col = header.find("LAST TICK").unwrap();
    for row in list.stdout.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        assert!(row[..col].ends_with(' ') && !row[col..].starts_with(' '), "{row}\n{header}");
    }
    at(&robo, "2026-01-13T15:30:00Z", &["schedules", "start", "usage_snapshot_hourly"]);
    at(&robo, "2026-01-13T15:30:00Z", &["daemon", "--once", "--no-worker"]);
    assert_eq!(ticks(&robo, "usage_snapshot_hourly").await.len(), 28, "13:05, 14:05, 15:05");
    let shown = at(&robo, "2026-01-13T15:30:00Z", &["ticks", "usage_snapshot_hourly", "--limit", "1"]);
    assert!(shown.stdout.contains("requested   1 request   usage_snapshot 2026-01-13T14:00"), "{}", shown.stdout);

    let bad = robo.run(&["schedules", "stop", "nightly"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("no schedule named \"nightly\"; known: usage_snapshot_hourly"), "{}", bad.stderr);
}

/// Every table's row count and the instigators' rows, as text: what a read must leave alone.
async fn store_dump(robo: &Robo) -> Vec<String> {
    let mut db = robo.lineage_db().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut dump = Vec::new();
    for table in tables {
        // Table names come from the store's own schema.
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{table}\"")))
            .fetch_one(&mut db)
            .await
            .unwrap();
        dump.push(format!("{table}: {n}"));
    }
    let instigators: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT name, status, created_at, updated_at FROM instigators ORDER BY name")
            .fetch_all(&mut db)
            .await
            .unwrap();
    dump.extend(instigators.into_iter().map(|i| format!("{i:?}")));
    dump
}

#[tokio::test]
async fn listing_writes_nothing_and_a_daemon_pass_at_an_earlier_time_still_fires() {
    let robo = Robo::new();
    // A first listing creates the store (its schema); every listing after it changes no row.
    at(&robo, "2026-12-06T04:00:00Z", &["schedules"]);
    let before = store_dump(&robo).await;
    assert!(before.contains(&"instigators: 0".to_owned()), "{before:?}");
    for args in [
        &["schedules"][..],
        &["schedules", "--json"],
        &["schedules", "list"],
        &["sensors"],
        &["sensors", "--json"],
        &["ticks", "usage_snapshot_hourly"],
        &["sensors", "cursor", "pending_subscription_sensor"],
    ] {
        at(&robo, "2026-12-06T04:00:00Z", args);
        assert_eq!(store_dump(&robo).await, before, "{args:?} wrote to the store");
    }
    // The daemon's first pass, pinned five days earlier, fires what was due then.
    let out = at(&robo, "2026-12-01T23:10:00Z", &["daemon", "--once", "--no-worker"]);
    assert!(
        out.stdout.contains(
            "2026-12-01 23:05:00 UTC  usage_snapshot_hourly        requested usage_snapshot 2026-12-01T22:00"
        ),
        "{}",
        out.stdout
    );
    let hourly = ticks(&robo, "usage_snapshot_hourly").await;
    assert_eq!(hourly.len(), 1, "{hourly:?}");
    assert!(hourly[0].0.starts_with("2026-12-01T23:05"), "{hourly:?}");
}

#[tokio::test]
async fn a_fresh_home_fires_the_latest_due_tick_of_each_running_schedule_once() {
    let robo = Robo::new();
    // Stopped before the daemon ever ran: it is not evaluated.
    at(&robo, "2026-12-02T07:30:00Z", &["schedules", "stop", "qbo_monthly_close"]);
    let out = at(&robo, "2026-12-02T07:30:00Z", &["daemon", "--once", "--no-worker"]);
    // Wednesday 2 December 07:30: each schedule's latest tick at or before it.
    for (schedule, tick, requested) in [
        ("usage_snapshot_hourly", "2026-12-02T07:05", "usage_snapshot 2026-12-02T06:00"),
        ("storage_bill_daily", "2026-12-02T02:00", "storage_bill 2026-12-01"),
        ("credit_health_weekly", "2026-11-30T03:00", "credit_health 2026-11-23"),
        ("api_key_cleanup_hourly", "2026-12-02T07:00", "api_key_cleanup 2026-12-02T06:00"),
    ] {
        let t = ticks(&robo, schedule).await;
        assert_eq!(t.len(), 1, "{schedule}: one tick, not its history: {t:?}");
        assert!(t[0].0.starts_with(tick) && t[0].1 == "requested", "{schedule}: {t:?}");
        assert!(out.stdout.contains(&format!("{schedule:<28} requested {requested}")), "{schedule}:\n{}", out.stdout);
    }
    assert!(ticks(&robo, "qbo_monthly_close").await.is_empty(), "a stopped schedule does not fire");
    // The monthly ticks are due too, and recorded: skipped, for their month of missing upstream
    // partitions (see the missing-upstream cap).
    for (schedule, tick) in
        [("credit_allocation_monthly", "2026-12-01T00:00"), ("usage_report_monthly", "2026-12-02T06:00")]
    {
        let t = ticks(&robo, schedule).await;
        assert_eq!(t.len(), 1, "{schedule}: {t:?}");
        assert!(t[0].0.starts_with(tick) && t[0].1 == "skipped", "{schedule}: {t:?}");
    }
    // A second pass at the same time fires nothing more.
    let again = at(&robo, "2026-12-02T07:30:00Z", &["daemon", "--once", "--no-worker"]);
    assert!(!again.stdout.contains("requested"), "{}", again.stdout);
}

#[tokio::test]
async fn a_report_tick_over_an_empty_month_requests_no_bills_and_names_the_backfill() {
    let robo = Robo::new();
    let out = at(&robo, "2026-12-02T06:30:00Z", &["daemon", "--once"]);
    let backfill = "`robo-assets backfill +usage_report --from 2026-11 --to 2026-11`";
    let line = out.stdout.lines().find(|l| l.contains("usage_report_monthly")).unwrap_or_default();
    assert_eq!(
        line,
        format!(
            "2026-12-02 06:00:00 UTC  usage_report_monthly         skipped   left out usage_report 2026-11: 1527 missing \
             upstream partitions are more than a tick fills (ROBO_ASSETS_MAX_UPSTREAM_FILL=48); fill them with {backfill}"
        ),
        "{}",
        out.stdout
    );
    // No November bill was requested, so none was run and no November day was debited.
    let mut db = robo.lineage_db().await;
    let november: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM materialization_requests WHERE asset_key = 'storage_bill' AND partition_key LIKE '2026-11-%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(november, 0);
    let mut app = robo.app_db().await;
    let debited: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT period FROM credit_ledger WHERE kind = 'storage_charge' ORDER BY 1")
            .fetch_all(&mut app)
            .await
            .unwrap();
    assert!(debited.iter().all(|d| !d.starts_with("2026-11")), "{debited:?}");
    // The named command fills exactly what the report needs: its month of bills and hours.
    let command: Vec<&str> = backfill.trim_matches('`').split(' ').skip(1).collect();
    let dry = at(&robo, "2026-12-02T06:30:00Z", &[command.as_slice(), &["--dry-run"]].concat());
    for needed in ["usage_report", "storage_bill", "usage_snapshot"] {
        assert!(dry.stdout.contains(needed), "{needed}:\n{}", dry.stdout);
    }
    // The report and the 1527 partitions the tick said were missing.
    assert!(dry.stdout.contains(": 1528 cells (dry run"), "{}", dry.stdout);

    // A deployment that allows more fills the month by itself.
    let generous = Robo::new();
    let out = generous.run_with(
        &["daemon", "--once", "--no-worker"],
        &[("ROBO_ASSETS_NOW", "2026-12-02T06:30:00Z"), ("ROBO_ASSETS_MAX_UPSTREAM_FILL", "1000")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = ticks(&generous, "usage_report_monthly").await;
    // The report, November's allocation and the October it reads (31 bills, 744 hours); the rest
    // the allocation's tick had just requested, and the report waits on those.
    assert_eq!((report[0].1.as_str(), report[0].2), ("requested", 1 + 1 + 31 + 744), "{report:?}");
    assert!(!out.stdout.contains("left out"), "{}", out.stdout);
    let bad = generous.run_with(&["schedules"], &[("ROBO_ASSETS_MAX_UPSTREAM_FILL", "lots")]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("ROBO_ASSETS_MAX_UPSTREAM_FILL=\"lots\" is not a count of partitions"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn a_partition_already_requested_is_waited_on_and_materialized_once() {
    let robo = Robo::new();
    // 23:30: the hourly schedule's first tick requests 22:00; nothing runs it yet.
    at(&robo, "2026-12-01T23:30:00Z", &["daemon", "--once", "--no-worker"]);
    // 02:30 the next day: one pass ticks the hourly schedule at 00:05 (23:00), 01:05 and 02:05,
    // and the daily bill at 02:00, whose day needs 22:00 and 23:00 too: it waits on their
    // pending requests instead of requesting them again. Then the pass runs it all.
    let out = at(&robo, "2026-12-02T02:30:00Z", &["daemon", "--once"]);
    let bill = out.stdout.lines().find(|l| l.contains("storage_bill_daily")).unwrap_or_default();
    assert!(
        bill.ends_with(
            "requested storage_bill 2026-12-01; usage_snapshot: 22 partitions (2026-12-01T00:00 .. 2026-12-01T21:00); \
             already requested, pending: usage_snapshot: 2 partitions (2026-12-01T22:00 .. 2026-12-01T23:00)"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("failed"), "{}", out.stdout);
    let mut db = robo.lineage_db().await;
    let per_hour: Vec<(String, i64)> = sqlx::query_as(
        "SELECT partition_key, count(*) FROM materializations WHERE asset_key = 'usage_snapshot' \
         AND partition_key LIKE '2026-12-01T%' GROUP BY partition_key ORDER BY partition_key",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(per_hour.len(), 24, "{per_hour:?}");
    assert!(per_hour.iter().all(|(_, n)| *n == 1), "each hour materialized once: {per_hour:?}");
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM materialization_requests WHERE idempotency_key LIKE 'sched:storage_bill_daily:%:usage_snapshot:%' \
         AND partition_key IN ('2026-12-01T22:00', '2026-12-01T23:00')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(doubled, 0, "the bill's tick requested no hour the hourly schedule had requested");
    // The bill read the one materialization of 23:00.
    let read: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT i.upstream_materialization_id, h.id FROM materializations b \
         JOIN materialization_inputs i ON i.materialization_id = b.id \
         JOIN materializations h ON h.asset_key = 'usage_snapshot' AND h.partition_key = '2026-12-01T23:00' \
         WHERE b.asset_key = 'storage_bill' AND b.partition_key = '2026-12-01' \
           AND i.upstream_asset_key = 'usage_snapshot' AND i.upstream_partition_key = '2026-12-01T23:00'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].0, read[0].1);
}

#[test]
fn the_daemon_logs_on_the_pinned_clock_and_warns_of_what_a_tick_left_out() {
    let robo = Robo::new();
    let child = robo
        .command(&["daemon", "--interval-secs", "1", "--no-worker"])
        .env("ROBO_ASSETS_NOW", "2026-12-02T06:30:00Z")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "the daemon never ticked");
        let shown = robo.run_with(&["ticks", "usage_report_monthly"], &[("ROBO_ASSETS_NOW", "2026-12-02T06:30:00Z")]);
        if shown.stdout.contains("skipped") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let started = stderr.lines().find(|l| l.contains("Daemon started.")).unwrap_or_default();
    assert!(started.starts_with("2026-12-02T06:30:00.000000Z  INFO"), "{stderr}");
    let warned = stderr.lines().find(|l| l.contains("left out usage_report 2026-11")).unwrap_or_default();
    assert!(warned.starts_with("2026-12-02T06:30:00.000000Z  WARN"), "{stderr}");
    assert!(warned.contains("robo-assets backfill +usage_report --from 2026-11 --to 2026-11"), "{warned}");
}

#[tokio::test]
async fn the_provisioning_sensor_requests_each_pending_subscription_once_and_the_daemon_runs_it() {
    let robo = Robo::new();
    let out = at(&robo, "2026-01-15T12:00:00Z", &["daemon", "--once"]);
    assert!(
        out.stdout.contains("pending_subscription_sensor  requested graph_provisioning sub-hooli"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(" succeeded"), "the daemon ran the request: {}", out.stdout);
    let mut app = robo.app_db().await;
    let status: String = sqlx::query_scalar("SELECT status FROM subscriptions WHERE id = 'sub-hooli'")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(status, "active");
    let cursor = at(&robo, "2026-01-15T12:00:00Z", &["sensors", "cursor", "pending_subscription_sensor"]);
    assert_eq!(cursor.stdout.trim(), "sub-hooli");

    // Within its 30 s interval it is not evaluated; after it, nothing is new.
    at(&robo, "2026-01-15T12:00:10Z", &["daemon", "--once"]);
    assert_eq!(ticks(&robo, "pending_subscription_sensor").await.len(), 1);
    at(&robo, "2026-01-15T12:01:00Z", &["daemon", "--once"]);
    let t = ticks(&robo, "pending_subscription_sensor").await;
    assert_eq!((t.len(), t[1].1.as_str(), t[1].2), (2, "skipped", 0));
    let mut db = robo.lineage_db().await;
    let provisioned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM materializations WHERE asset_key = 'graph_provisioning'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(provisioned, 1);
}

#[tokio::test]
async fn a_sensor_evaluation_that_dies_before_its_commit_leaves_nothing_and_is_redone_once() {
    use engine::automation::{Automation, SensorRequest, SensorResult, sensor};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![
            engine::asset("graph_provisioning")
                .partitions(engine::PartitionsDef::dynamic("subscriptions"))
                .compute(|_ctx| async { Ok(engine::Output::none()) }),
        ])
        .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(dir.path())))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::SystemClock),
    };
    let pending =
        sensor("pending", std::time::Duration::from_secs(30), std::time::Duration::from_secs(5), |ctx| async move {
            let seen = ctx.cursor.unwrap_or_default();
            if seen.contains("sub-1") {
                return Ok(SensorResult::default());
            }
            Ok(SensorResult {
                requests: vec![SensorRequest {
                    asset: "graph_provisioning".into(),
                    partition_key: "sub-1".into(),
                    key: "sensor:pending:sub-1".into(),
                }],
                dynamic_partitions: vec![("subscriptions".into(), vec!["sub-1".into()])],
                cursor: Some("sub-1".into()),
                skip_reason: None,
            })
        });
    let automation = Automation {
        schedules: vec![],
        sensors: vec![pending.clone()],
        conditions: vec![],
        catch_up: std::time::Duration::from_secs(3600),
        max_upstream_fill: engine::automation::DEFAULT_MAX_UPSTREAM_FILL,
    };
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-15T12:00:00Z".parse().unwrap();
    use lineage::{LineageStore, RequestQueue};
    store.ensure_instigators(&[("pending".into(), lineage::InstigatorKind::Sensor)], t0).await.unwrap();
    // Evaluated, then the process dies before committing: the tick is simply never written.
    let (uncommitted, listed) = engine::automation::sensor_tick(&exec, &pending, None, t0).await;
    assert_eq!(listed.len(), 1);
    drop(uncommitted);
    assert!(store.ticks("pending", None, 10).await.unwrap().is_empty());
    assert!(store.requests(None, None, None, 10).await.unwrap().is_empty());
    assert!(store.dynamic_partitions("subscriptions").await.unwrap().is_empty());
    // The restarted daemon evaluates from the old cursor and requests it: once.
    let reports = engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::seconds(5)).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(store.requests(None, None, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.dynamic_partitions("subscriptions").await.unwrap(), ["sub-1"]);
    let later = engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::minutes(5)).await.unwrap();
    assert_eq!(later[0].status, lineage::TickStatus::Skipped);
    assert_eq!(store.requests(None, None, None, 10).await.unwrap().len(), 1);
}

#[test]
fn simulate_prints_what_would_be_requested_in_order_and_writes_nothing() {
    let robo = Robo::new();
    let out = at(
        &robo,
        "2026-01-15T12:00:00Z",
        &["simulate", "--from", "2026-01-31T22:00:00Z", "--to", "2026-02-01T02:30:00Z"],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("Simulated 2026-01-31T22:00:00+00:00 → 2026-02-01T02:30:00+00:00:"), "{}", out.stdout);
    let find = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in\n{}", out.stdout))
    };
    // A month of bills and hours is more than a tick fills: the allocation names its backfill.
    let allocation = find(
        "credit_allocation_monthly    skipped   left out credit_allocation 2026-02: 775 missing upstream partitions are \
         more than a tick fills (ROBO_ASSETS_MAX_UPSTREAM_FILL=48); fill them with \
         `robo-assets backfill +credit_allocation --from 2026-02 --to 2026-02`",
    );
    let bill = find("storage_bill_daily           requested");
    assert!(lines[allocation].starts_with("2026-02-01 00:00:00 UTC"));
    assert!(
        lines[bill].starts_with("2026-02-01 02:00:00 UTC")
            && lines[bill].contains("requested storage_bill 2026-01-31;"),
        "{}",
        lines[bill]
    );
    assert!(allocation < bill, "in time order");
    assert!(
        find("2026-01-31 22:05:00 UTC  usage_snapshot_hourly        requested usage_snapshot 2026-01-31T21:00")
            < allocation
    );
    // Nothing was written: no ticks, no requests.
    let ticks = at(&robo, "2026-01-15T12:00:00Z", &["ticks", "storage_bill_daily"]);
    assert!(ticks.stdout.contains("has no ticks yet"), "{}", ticks.stdout);
    let bad = robo.run(&["simulate", "--from", "yesterday", "--to", "2026-01-01"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("--from \"yesterday\" is not a time"), "{}", bad.stderr);
}

#[test]
fn the_daemon_stops_cleanly_on_ctrl_c() {
    let robo = Robo::new();
    let child = robo
        .command(&["daemon", "--interval-secs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it evaluate at least once (the sensor requests hooli's graph), then Ctrl-C.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let db = robo.home().join("lineage.db");
    loop {
        assert!(std::time::Instant::now() < deadline, "the daemon never ticked");
        if db.exists() {
            let ticks = std::process::Command::new(env!("CARGO_BIN_EXE_robo-assets"))
                .args(["ticks", "pending_subscription_sensor"])
                .env("ROBO_ASSETS_HOME", robo.home())
                .output()
                .unwrap();
            if String::from_utf8_lossy(&ticks.stdout).contains("requested") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Daemon stopped."), "{stderr}");
}

/// The billing chain's shape with `eager` on the daily bill and `on_missing` on a monthly
/// report, driven pass by pass (each pass = a daemon evaluation, then the worker drains).
#[tokio::test]
async fn eager_waits_for_all_24_hours_fires_once_and_again_when_an_hour_changes() {
    use engine::automation::{Automation, Condition};
    use lineage::{LineageStore, RequestQueue};
    use std::sync::atomic::{AtomicI64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let bytes = Arc::new(AtomicI64::new(100));
    let hour_bytes = bytes.clone();
    let table = |ctx: &engine::AssetContext, v: i64| {
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("partition", arrow_schema::DataType::Utf8, false),
            arrow_schema::Field::new("bytes", arrow_schema::DataType::Int64, false),
        ]));
        engine::Output::table(
            arrow_array::RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(arrow_array::StringArray::from(vec![ctx.partition_key.clone()])),
                    Arc::new(arrow_array::Int64Array::from(vec![v])),
                ],
            )
            .unwrap(),
        )
    };
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![
            engine::asset("usage").partitions(engine::PartitionsDef::hourly("2025-01-01")).compute(move |ctx| {
                let v = hour_bytes.load(Ordering::SeqCst);
                async move { Ok(table(&ctx, v)) }
            }),
            engine::asset("bill")
                .partitions(engine::PartitionsDef::daily("2025-01-01"))
                .dep("usage")
                .compute(move |ctx| async move { Ok(table(&ctx, 0)) }),
        ])
        .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(
            dir.path().join("s"),
        )))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::FixedClock("2026-01-15T12:00:00Z".parse().unwrap())),
    };
    let automation = Automation { conditions: vec![("bill".into(), Condition::Eager)], ..Automation::default() };
    let materialize = |spec: engine::PartitionSpec| {
        let exec = &exec;
        async move {
            let graph = exec.defs.graph();
            let ctx = exec.partitions_context(None).await.unwrap();
            let targets =
                engine::plan::targets(graph, &engine::selection::resolve(graph, "usage").unwrap(), &spec, &ctx)
                    .unwrap();
            let plan = engine::plan::plan(graph, &targets, &Default::default(), &ctx, Default::default()).unwrap();
            exec.execute(&plan, &Default::default(), Arc::new(engine::NoObserver), Default::default()).await.unwrap();
        }
    };
    let mut clock = exec.clock.now();
    let pass = |now: chrono::DateTime<chrono::Utc>| {
        let (exec, automation) = (&exec, &automation);
        async move {
            let reports = engine::automation::run_once(exec, automation, now).await.unwrap();
            // Drain what was requested.
            for run in exec
                .store
                .runs(&lineage::RunFilter { limit: 100, ..Default::default() })
                .await
                .unwrap()
                .into_iter()
                .filter(|r| !r.status.is_terminal())
            {
                engine::run_worker(
                    exec,
                    &engine::WorkerConfig::new(4),
                    engine::Until::RunEnded(run.id),
                    Arc::new(engine::NoObserver),
                    tokio_util::sync::CancellationToken::new(),
                )
                .await
                .unwrap();
            }
            reports
        }
    };
    let bills = || async { store.history("bill", Some("2025-12-15"), None, 10).await.unwrap().len() };
    let why = || async { store.condition_evaluations("bill", Some("2025-12-15"), 1).await.unwrap().remove(0) };

    // 23 of the 24 hours: the bill waits, and says for what.
    materialize(engine::PartitionSpec::Range("2025-12-15T00:00".into(), "2025-12-15T22:00".into())).await;
    clock += chrono::Duration::minutes(1);
    pass(clock).await;
    assert_eq!(bills().await, 0);
    let w = why().await;
    assert!(!w.requested);
    assert_eq!(w.reason, "waiting: 1 of 24 upstream partitions missing (usage 2025-12-15T23:00)");

    // The 24th hour lands: the bill fires, once.
    materialize(engine::PartitionSpec::Key("2025-12-15T23:00".into())).await;
    clock += chrono::Duration::minutes(1);
    pass(clock).await;
    assert_eq!(bills().await, 1);
    assert_eq!(why().await.reason, "missing, and all 24 upstream partitions exist");
    clock += chrono::Duration::minutes(1);
    let quiet = pass(clock).await;
    // Only the bill's own materialization is new: the cursor moves past it, nothing is evaluated.
    assert!(
        quiet.iter().all(|r| r.requests.is_empty() && r.message == "0 evaluations, nothing to request"),
        "{quiet:?}"
    );
    clock += chrono::Duration::minutes(1);
    assert!(pass(clock).await.is_empty(), "nothing new at all: no tick");
    assert_eq!(bills().await, 1);

    // A late hour is re-materialized with the same bytes: nothing is stale (early cut-off).
    materialize(engine::PartitionSpec::Key("2025-12-15T07:00".into())).await;
    clock += chrono::Duration::minutes(1);
    pass(clock).await;
    assert_eq!(bills().await, 1);
    assert_eq!(why().await.reason, "fresh: its code version and the data versions it read are current");

    // ... and with other bytes: the bill fires again, once.
    bytes.store(999, Ordering::SeqCst);
    materialize(engine::PartitionSpec::Key("2025-12-15T07:00".into())).await;
    clock += chrono::Duration::minutes(1);
    pass(clock).await;
    assert_eq!(bills().await, 2);
    assert_eq!(why().await.reason, "stale: an upstream partition has a new data version");
    // Other days were never touched.
    assert!(store.condition_evaluations("bill", Some("2025-12-16"), 10).await.unwrap().is_empty());
    let requests = store.requests(None, None, None, 100).await.unwrap();
    assert_eq!(requests.iter().filter(|r| r.trigger == lineage::Trigger::Condition).count(), 2);
}

#[tokio::test]
async fn on_missing_and_on_cron_request_what_they_say() {
    use engine::automation::{Automation, Condition, on_cron};
    use lineage::RequestQueue;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let noop = |ctx: engine::AssetContext| async move {
        Ok(engine::Output::none().with_metadata("p", ctx.partition_key.clone()))
    };
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![
            engine::asset("day").partitions(engine::PartitionsDef::daily("2025-01-01")).compute(noop),
            engine::asset("copy").partitions(engine::PartitionsDef::daily("2025-01-01")).dep("day").compute(noop),
            engine::asset("nightly").partitions(engine::PartitionsDef::daily("2025-01-01")).compute(noop),
        ])
        .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(
            dir.path().join("s"),
        )))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::FixedClock("2026-01-15T12:00:00Z".parse().unwrap())),
    };
    let automation = Automation {
        conditions: vec![
            ("copy".into(), Condition::OnMissing),
            ("nightly".into(), on_cron("0 3 * * *", "America/New_York").unwrap()),
        ],
        ..Automation::default()
    };
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-15T07:00:00Z".parse().unwrap();
    engine::automation::run_once(&exec, &automation, t0).await.unwrap();
    // A day lands: its copy is missing and its upstream exists, so it is requested; once.
    let graph = exec.defs.graph();
    let ctx = exec.partitions_context(None).await.unwrap();
    let targets = engine::plan::targets(
        graph,
        &engine::selection::resolve(graph, "day").unwrap(),
        &engine::PartitionSpec::Key("2026-01-10".into()),
        &ctx,
    )
    .unwrap();
    let plan = engine::plan::plan(graph, &targets, &Default::default(), &ctx, Default::default()).unwrap();
    exec.execute(&plan, &Default::default(), Arc::new(engine::NoObserver), Default::default()).await.unwrap();
    let r = engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::minutes(30)).await.unwrap();
    assert_eq!(r[0].requests, [("copy".to_owned(), "2026-01-10".to_owned())]);
    let e = store.condition_evaluations("copy", Some("2026-01-10"), 1).await.unwrap().remove(0);
    assert_eq!(
        (e.condition.as_str(), e.reason.as_str()),
        ("on_missing", "missing, and every upstream partition exists")
    );
    // simulate shows what the next passes would request, and writes nothing.
    let sim = engine::automation::simulate(
        &exec,
        &automation,
        t0 + chrono::Duration::minutes(30),
        t0 + chrono::Duration::hours(25),
    )
    .await
    .unwrap();
    let conditions: Vec<_> = sim.iter().filter(|r| r.instigator == "automation_conditions").collect();
    assert_eq!(conditions.len(), 1);
    assert!(conditions[0].requests.contains(&("nightly".to_owned(), "2026-01-15".to_owned())), "{:?}", conditions[0]);
    assert_eq!(store.condition_evaluations("nightly", None, 10).await.unwrap().len(), 0, "nothing written");
    // 03:00 New York (08:00 UTC) passes: the nightly asset's latest day is requested.
    let r = engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::hours(1)).await.unwrap();
    let nightly: Vec<_> = r.iter().flat_map(|r| r.requests.clone()).filter(|(a, _)| a == "nightly").collect();
    assert_eq!(nightly, [("nightly".to_owned(), "2026-01-14".to_owned())]);
    let e = store.condition_evaluations("nightly", None, 1).await.unwrap().remove(0);
    assert_eq!(e.reason, "cron tick 2026-01-15T08:00:00+00:00: missing");
    assert_eq!(
        store
            .requests(None, None, None, 10)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.trigger == lineage::Trigger::Condition)
            .count(),
        2
    );
}

/// Conditions on multi-dimensional assets (day × kind): `eager` and `on_missing` follow the one
/// cell that changed upstream, through the identity on `kind` and on `day`, and `on_cron`
/// requests the latest day for every kind.
#[tokio::test]
async fn conditions_on_multi_dimensional_assets_follow_each_cell() {
    use engine::automation::{Automation, Condition, on_cron};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let noop = |ctx: engine::AssetContext| async move {
        Ok(engine::Output::none().with_metadata("p", ctx.partition_key.clone()))
    };
    let day_kind = || {
        engine::PartitionsDef::multi([
            ("day", engine::PartitionsDef::daily("2026-01-01")),
            ("kind", engine::PartitionsDef::fixed(["cpu", "disk"])),
        ])
    };
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![
            engine::asset("events").partitions(day_kind()).compute(noop),
            engine::asset("rollup").partitions(day_kind()).dep("events").compute(noop),
            engine::asset("copy").partitions(day_kind()).dep("events").compute(noop),
            engine::asset("nightly").partitions(day_kind()).compute(noop),
        ])
        .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(
            dir.path().join("s"),
        )))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::FixedClock("2026-01-15T12:00:00Z".parse().unwrap())),
    };
    let automation = Automation {
        conditions: vec![
            ("rollup".into(), Condition::Eager),
            ("copy".into(), Condition::OnMissing),
            ("nightly".into(), on_cron("0 3 * * *", "UTC").unwrap()),
        ],
        ..Automation::default()
    };
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-15T02:00:00Z".parse().unwrap();
    let first = engine::automation::run_once(&exec, &automation, t0).await.unwrap();
    assert!(first.iter().all(|r| r.requests.is_empty()), "nothing upstream yet: {first:?}");

    // One cell lands upstream: each condition requests that cell, not the other kind's.
    let graph = exec.defs.graph();
    let ctx = exec.partitions_context(None).await.unwrap();
    let targets = engine::plan::targets(
        graph,
        &engine::selection::resolve(graph, "events").unwrap(),
        &engine::PartitionSpec::Key("kind=disk|day=2026-01-10".into()),
        &ctx,
    )
    .unwrap();
    let plan = engine::plan::plan(graph, &targets, &Default::default(), &ctx, Default::default()).unwrap();
    exec.execute(&plan, &Default::default(), Arc::new(engine::NoObserver), Default::default()).await.unwrap();
    let r = engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::minutes(30)).await.unwrap();
    let mut requested: Vec<(String, String)> = r.iter().flat_map(|r| r.requests.clone()).collect();
    requested.sort();
    let cell = "day=2026-01-10|kind=disk".to_owned();
    assert_eq!(requested, [("copy".to_owned(), cell.clone()), ("rollup".to_owned(), cell.clone())]);
    let e = store.condition_evaluations("copy", Some(&cell), 1).await.unwrap().remove(0);
    assert_eq!(e.reason, "missing, and every upstream partition exists");

    // 03:00 passes: the latest complete day, for every kind.
    let r = engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::hours(1)).await.unwrap();
    let mut nightly: Vec<String> =
        r.iter().flat_map(|r| r.requests.clone()).filter(|(a, _)| a == "nightly").map(|(_, k)| k).collect();
    nightly.sort();
    assert_eq!(nightly, ["day=2026-01-14|kind=cpu", "day=2026-01-14|kind=disk"]);
}

#[test]
fn why_says_whether_a_partition_is_materialized_stale_or_missing() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-15", "--with-upstream"]);
    let fresh = robo.ok(&["why", "storage_bill", "-p", "2025-12-15"]);
    let lines: Vec<&str> = fresh.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "storage_bill 2025-12-15: materialized: its code version, dependencies and the data versions it read are current"
    );
    assert!(lines[1].starts_with("  materialized 2026-01-15 12:00:00 UTC by run "), "{}", fresh.stdout);
    assert_eq!(lines[2..], ["No automation condition has evaluated it."]);
    let missing = robo.ok(&["why", "storage_bill", "-p", "2025-12-16"]);
    assert!(missing.stdout.starts_with("storage_bill 2025-12-16: "), "{}", missing.stdout);
    assert!(missing.stdout.contains(": missing: no materialization"), "{}", missing.stdout);
    // An hour re-materialized with other bytes makes the bill stale, and why says so.
    let graph = robo.home().join("graphs/acme-main/data.bin");
    std::fs::OpenOptions::new().write(true).open(&graph).unwrap().set_len(90 << 30).unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    let stale = robo.ok(&["why", "storage_bill", "-p", "2025-12-15"]);
    assert!(
        stale.stdout.starts_with("storage_bill 2025-12-15: stale: 1 input changed since it was read\n"),
        "{}",
        stale.stdout
    );
    let tree: Vec<&str> = stale.stdout.lines().skip_while(|l| !l.starts_with("Root causes")).skip(1).take(2).collect();
    assert!(tree[0].starts_with("└── usage_snapshot 2025-12-15T07:00: "), "{}", stale.stdout);
    assert_eq!(tree[1], "    └── root cause: re-materialized from the same code and inputs; its source changed");

    // The bill re-run with the new hour: the allocation of January (which settles December)
    // is stale, and why follows the change through the bill to the hour.
    robo.ok(&["materialize", "credit_allocation", "-p", "2026-01", "--with-upstream"]);
    std::fs::OpenOptions::new().write(true).open(&graph).unwrap().set_len(95 << 30).unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-15"]);
    let hops = robo.ok(&["why", "credit_allocation", "-p", "2026-01"]);
    let tree: Vec<&str> = hops.stdout.lines().skip_while(|l| !l.starts_with("Root causes")).skip(1).take(3).collect();
    assert!(tree[0].starts_with("└── storage_bill 2025-12-15: "), "{}", hops.stdout);
    assert!(tree[1].starts_with("    └── usage_snapshot 2025-12-15T07:00: "), "{}", hops.stdout);
    assert_eq!(tree[2], "        └── root cause: re-materialized from the same code and inputs; its source changed");
    let json = robo.ok(&["why", "credit_allocation", "-p", "2026-01", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["partition"]["status"], "stale");
    assert_eq!(v["partition"]["causes"][0], serde_json::json!({"cause": "inputs", "changed": 1}));
    assert_eq!(v["partition"]["root_causes"]["changes"][0]["because"]["changes"][0]["because"]["kind"], "source");
    let bad = robo.run(&["why", "storage_bill"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("storage_bill is partitioned (daily"), "{}", bad.stderr);
}

#[tokio::test]
async fn a_sensor_that_outlives_its_timeout_records_a_failed_tick_and_requests_nothing() {
    use engine::automation::{Automation, SensorResult, sensor};
    use lineage::RequestQueue;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![engine::asset("a").compute(|_ctx| async { Ok(engine::Output::none()) })])
            .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(dir.path())))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::SystemClock),
    };
    let slow = sensor("slow", std::time::Duration::from_secs(30), std::time::Duration::from_millis(50), |_ctx| async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        Ok(SensorResult::default())
    });
    let automation = Automation { sensors: vec![slow], ..Automation::default() };
    let reports =
        engine::automation::run_once(&exec, &automation, "2026-01-15T12:00:00Z".parse().unwrap()).await.unwrap();
    assert_eq!(
        (reports[0].status.as_str(), reports[0].message.as_str()),
        ("failed", "evaluation timed out after 50ms")
    );
    let ticks = store.ticks("slow", None, 10).await.unwrap();
    assert_eq!((ticks.len(), ticks[0].status.as_str()), (1, "failed"));
    assert!(store.requests(None, None, None, 10).await.unwrap().is_empty());
}

/// One long-running daemon (one `Executor`, as `robo-assets daemon` holds): a sensor adds a
/// dynamic partition in one pass, and the next pass's condition sees it. (The executor used to
/// keep the dynamic keys it was wired with, so the new subscription stayed invisible to it.)
#[tokio::test]
async fn a_long_running_daemon_sees_partitions_a_sensor_added_after_it_started() {
    use engine::automation::{Automation, Condition, SensorRequest, SensorResult, sensor};
    use lineage::{LineageStore, RequestQueue};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let noop = |b: engine::AssetBuilder| b.compute(|_ctx| async { Ok(engine::Output::none()) });
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![
            noop(engine::asset("graph_provisioning").partitions(engine::PartitionsDef::dynamic("subscriptions"))),
            noop(
                engine::asset("graph_welcome")
                    .partitions(engine::PartitionsDef::dynamic("subscriptions"))
                    .dep("graph_provisioning"),
            ),
        ])
        .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(dir.path())))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::SystemClock),
    };
    let pending = sensor("pending", std::time::Duration::ZERO, std::time::Duration::from_secs(5), |ctx| async move {
        if ctx.cursor.is_some() {
            return Ok(SensorResult { cursor: ctx.cursor, ..SensorResult::default() });
        }
        Ok(SensorResult {
            requests: vec![SensorRequest {
                asset: "graph_provisioning".into(),
                partition_key: "sub-7".into(),
                key: "sensor:pending:sub-7".into(),
            }],
            dynamic_partitions: vec![("subscriptions".into(), vec!["sub-7".into()])],
            cursor: Some("sub-7".into()),
            skip_reason: None,
        })
    });
    let automation = Automation {
        schedules: vec![],
        sensors: vec![pending],
        conditions: vec![("graph_welcome".into(), Condition::OnMissing)],
        catch_up: std::time::Duration::from_secs(3600),
        max_upstream_fill: engine::automation::DEFAULT_MAX_UPSTREAM_FILL,
    };
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-15T12:00:00Z".parse().unwrap();
    assert!(store.dynamic_partitions("subscriptions").await.unwrap().is_empty(), "no subscription when it starts");

    // Pass 1: the sensor adds sub-7 and requests its provisioning, which a worker then runs.
    engine::automation::run_once(&exec, &automation, t0).await.unwrap();
    let run = store.requests(None, None, None, 10).await.unwrap()[0].run_id;
    let config = engine::WorkerConfig::new(2);
    let done = engine::run_worker(
        &exec,
        &config,
        engine::Until::RunEnded(run),
        Arc::new(engine::NoObserver),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(done.completed, 1);

    // Pass 2, same executor: the condition sees sub-7 exist and requests its welcome.
    engine::automation::run_once(&exec, &automation, t0 + chrono::Duration::minutes(1)).await.unwrap();
    let welcome: Vec<_> = store
        .requests(None, None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.asset_key == "graph_welcome")
        .collect();
    assert_eq!(welcome.len(), 1, "requested once the sensor's partition exists");
    assert_eq!(welcome[0].partition_key, "sub-7");
    let evaluated = store.condition_evaluations("graph_welcome", Some("sub-7"), 1).await.unwrap();
    assert!(evaluated[0].requested, "{evaluated:?}");
}

/// `simulate` over a month with 30-second sensors: no cap on evaluations (a request on day 20,
/// the 54,720th evaluation, is there), and a sensor that settles (read no clock, moved no cursor,
/// requested nothing) stands for its later evaluations instead of being called 89,280 times.
#[tokio::test]
async fn simulate_evaluates_a_month_of_sensors_without_a_cap_and_stops_a_settled_one() {
    use engine::automation::{Automation, SensorResult, sensor};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let noop = |_ctx: engine::AssetContext| async move { Ok(engine::Output::none()) };
    let exec = engine::Executor {
        defs: engine::Definitions::new(vec![
            engine::asset("report").partitions(engine::PartitionsDef::daily("2025-01-01")).compute(noop),
        ])
        .unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(
            dir.path().join("s"),
        )))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::FixedClock("2026-01-01T00:00:00Z".parse().unwrap())),
    };
    let from: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let to: chrono::DateTime<chrono::Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
    let day20: chrono::DateTime<chrono::Utc> = "2026-01-20T00:00:00Z".parse().unwrap();
    // Reads the clock every time; requests once, on the 20th.
    let clocked = Arc::new(AtomicUsize::new(0));
    let calls = clocked.clone();
    let on_the_20th = sensor("on_the_20th", Duration::from_secs(30), Duration::from_secs(5), move |ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let due = ctx.now() >= day20 && ctx.cursor.is_none();
            Ok(SensorResult {
                requests: due
                    .then(|| engine::automation::SensorRequest {
                        asset: "report".into(),
                        partition_key: "2026-01-19".into(),
                        key: "on_the_20th".into(),
                    })
                    .into_iter()
                    .collect(),
                cursor: if due { Some("done".into()) } else { ctx.cursor },
                ..SensorResult::default()
            })
        }
    });
    // Never reads the clock: its first evaluation requests, its second settles.
    let settled = Arc::new(AtomicUsize::new(0));
    let calls = settled.clone();
    let once = sensor("once", Duration::from_secs(30), Duration::from_secs(5), move |ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let first = ctx.cursor.is_none();
            Ok(SensorResult {
                requests: first
                    .then(|| engine::automation::SensorRequest {
                        asset: "report".into(),
                        partition_key: "2025-12-31".into(),
                        key: "once".into(),
                    })
                    .into_iter()
                    .collect(),
                cursor: Some("seen".into()),
                ..SensorResult::default()
            })
        }
    });
    let automation = Automation { sensors: vec![on_the_20th, once], ..Automation::default() };
    let sim = engine::automation::simulate(&exec, &automation, from, to).await.unwrap();
    type Requested = (String, chrono::DateTime<chrono::Utc>, Vec<(String, String)>);
    let requested: Vec<Requested> =
        sim.iter().map(|r| (r.instigator.clone(), r.tick_time, r.requests.clone())).collect();
    assert_eq!(
        requested,
        [
            (
                "once".to_owned(),
                from + chrono::Duration::seconds(30),
                vec![("report".to_owned(), "2025-12-31".to_owned())]
            ),
            ("on_the_20th".to_owned(), day20, vec![("report".to_owned(), "2026-01-19".to_owned())]),
        ]
    );
    // Every 30 s of January for the clocked sensor; two evaluations for the settled one.
    assert_eq!(clocked.load(Ordering::SeqCst), 31 * 24 * 120);
    assert_eq!(settled.load(Ordering::SeqCst), 2);
    assert!(store.ticks("once", None, 10).await.unwrap().is_empty(), "a simulation writes nothing");
}
