//! The CLI with its lineage store on the real PostgreSQL at 127.0.0.1:5432 (or
//! `ROBO_ASSETS_TEST_PG_URL`), each test in a fresh database; skipped with a printed reason when
//! no server answers, and failed instead when `CI` is set.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use crate::common::Robo;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Trust auth accepts any password, so a real password travels through every code path.
const PASSWORD: &str = "s3cret-pw-4242";

pub(crate) struct TestDb {
    admin: PgConnectOptions,
    name: String,
    /// The URL the binary gets: with a password that must never be printed or stored.
    pub(crate) url: String,
}

impl TestDb {
    pub(crate) async fn create() -> Option<TestDb> {
        let url = std::env::var("ROBO_ASSETS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let admin: PgConnectOptions = url.parse().expect("a postgres:// URL");
        let mut conn = match PgConnection::connect_with(&admin).await {
            Ok(conn) => conn,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "PostgreSQL is required when CI is set: {e}");
                eprintln!("skipped: no PostgreSQL at {DEFAULT_PG_URL} ({e})");
                return None;
            }
        };
        let name = format!("robo_it_{}", uuid_like());
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        let url =
            format!("postgres://{}:{PASSWORD}@{}:{}/{name}", admin.get_username(), admin.get_host(), admin.get_port());
        Some(TestDb { admin, name, url })
    }

    /// The server's host and port, for a test that reaches it another way (a forwarder).
    pub(crate) fn server(&self) -> (String, u16) {
        (self.admin.get_host().to_owned(), self.admin.get_port())
    }

    /// The binary's URL with the server reached at `host:port` instead.
    pub(crate) fn url_at(&self, host: &str, port: u16) -> String {
        format!("postgres://{}:{PASSWORD}@{host}:{port}/{}", self.admin.get_username(), self.name)
    }

    pub(crate) async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.admin.clone().database(&self.name)).await.unwrap()
    }

    /// A lineage store on the database, as one process opens it.
    pub(crate) async fn store(&self) -> std::sync::Arc<dyn lineage::LineageStore> {
        std::sync::Arc::new(lineage::PgStore::connect(&self.url).await.unwrap())
    }

    pub(crate) async fn drop_db(self) {
        let mut conn = PgConnection::connect_with(&self.admin).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).await.unwrap();
    }
}

fn uuid_like() -> String {
    format!("{:016x}{:08x}", fastrand::u64(..), std::process::id())
}

#[tokio::test]
async fn materialize_records_lineage_in_postgres_and_never_shows_the_password() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str()), ("RUST_LOG", "debug")];
    let runs = [
        robo.run_with(&["migrate"], &env),
        robo.run_with(&["materialize", "storage_bill", "--partition", "2025-12-15", "--with-upstream"], &env),
        robo.run_with(&["status", "--json"], &env),
        robo.run_with(&["lineage", "storage_bill", "--partition", "2025-12-15"], &env),
        robo.run_with(&["runs", "--json"], &env),
    ];
    for run in &runs {
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert!(
            !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
            "the password leaked:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    assert!(runs[0].stdout.contains(":***@"), "migrate names the store, redacted: {}", runs[0].stdout);
    let status: serde_json::Value = serde_json::from_str(&runs[2].stdout).unwrap();
    let usage = status.as_array().unwrap().iter().find(|a| a["asset"] == "usage_snapshot").unwrap();
    assert_eq!(usage["counts"]["materialized"], 24);
    assert_eq!(runs[3].stdout.lines().filter(|l| l.contains("2025-12-15T") && l.contains("data ")).count(), 24);
    let run_id = serde_json::from_str::<serde_json::Value>(&runs[4].stdout).unwrap()["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let show = robo.run_with(&["runs", "show", &run_id], &env);
    assert!(!show.stdout.contains(PASSWORD));

    let mut conn = db.connect().await;
    let (n, inputs): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM materializations), (SELECT count(*) FROM materialization_inputs)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((n, inputs), (25, 24));
    let leaked: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM materializations WHERE metadata::text LIKE '%' || $1 || '%' OR storage_uri LIKE '%' || $1 || '%') \
              + (SELECT count(*) FROM run_events WHERE body::text LIKE '%' || $1 || '%' OR message LIKE '%' || $1 || '%') \
              + (SELECT count(*) FROM runs WHERE tags::text LIKE '%' || $1 || '%')",
    )
    .bind(PASSWORD)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "the password is stored somewhere in the lineage store");
    drop(conn);
    db.drop_db().await;
}

#[test]
fn an_unreachable_store_is_a_clear_error_without_the_password() {
    let robo = Robo::new();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/lineage");
    let run = robo.run_with(&["status"], &[("ROBO_ASSETS_LINEAGE_URL", url.as_str())]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("opening lineage store postgres://app:***@127.0.0.1:1/lineage"), "{}", run.stderr);
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
}

/// Issue 14 §5: an unreachable app database fails with its real cause, not "pool timed out"
/// after 30 s, and each cause is printed once (the lineage store's too).
#[test]
fn an_unreachable_app_database_fails_with_its_cause_printed_once() {
    let robo = Robo::new();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/app");
    let run = robo.run_with(&["demo", "seed"], &[("DATABASE_URL", url.as_str())]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("opening app database postgres://app:***@127.0.0.1:1/app"), "{}", run.stderr);
    assert!(!run.stderr.contains("pool timed out"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("Connection refused").count(), 1, "{}", run.stderr);
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);

    let store = format!("postgres://app:{PASSWORD}@127.0.0.1:1/lineage");
    let run = robo.run_with(&["status"], &[("ROBO_ASSETS_LINEAGE_URL", store.as_str())]);
    assert_eq!(run.stderr.matches("Connection refused").count(), 1, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_drain_a_submitted_run_exactly_once() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let args = [
        "submit",
        "+storage_bill",
        "--from",
        "2025-12-01",
        "--to",
        "2025-12-03",
        "--key",
        "nightly-2025-12-03",
        "--json",
    ];
    let first = robo.run_with(&args, &env);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let submitted: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    let run_id = submitted["run_id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["requests"].as_array().unwrap().len(), 75);
    // The same key again: nothing new, the same run.
    let again: serde_json::Value = serde_json::from_str(&robo.run_with(&args, &env).stdout).unwrap();
    assert_eq!(again["run_id"], run_id.as_str());
    assert!(again["requests"].as_array().unwrap().iter().all(|r| r["inserted"] == false));

    let workers = spawn_workers(&robo, &env, 2, "4", &[]);
    let mut conn = db.connect().await;
    wait_for_success(&mut conn, &run_id, std::time::Duration::from_secs(120)).await;
    stop_workers(workers);
    let (materializations, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (asset_key, partition_key)) FROM materializations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((materializations, distinct), (75, 75), "every request executed exactly once");
    let bills: i64 =
        sqlx::query_scalar("SELECT count(*) FROM materializations WHERE asset_key = 'storage_bill' AND n_inputs = 24")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(bills, 3, "each bill ran after its 24 hours and read them");
    drop(conn);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_request_is_taken_back_at_once_on_its_host_and_completes_once() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let submitted = robo.run_with(&["submit", "usage_snapshot", "--partition", "2025-12-15T05:00", "--json"], &env);
    assert_eq!(submitted.code, 0, "{}", submitted.stderr);
    let mut conn = db.connect().await;

    // Worker A claims the request, then hangs in a slow Graph API call, and is killed -9.
    let mut slow = robo.command(&["worker", "--lease-secs", "3"]);
    slow.envs(env)
        .env("ROBO_ASSETS_DEV_LATENCY_MS", "60000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut a = slow.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let state: String =
            sqlx::query_scalar("SELECT state FROM materialization_requests").fetch_one(&mut conn).await.unwrap();
        if state == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "worker A never claimed the request");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    a.kill().unwrap();
    a.wait().unwrap();

    // Worker B, on the same host, sees that A's process is gone: it takes the request back at
    // once (without charging the interrupted attempt, as the asset did not fail) and completes it.
    // On another host it would wait for the lease to expire (the lineage contract tests).
    let mut b = robo.command(&["worker", "--lease-secs", "3"]);
    b.envs(env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let b = b.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (attempt, error) = loop {
        let row: (String, i64, Option<String>) =
            sqlx::query_as("SELECT state, attempt, last_error FROM materialization_requests")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if row.0 == "succeeded" {
            break (row.1, row.2);
        }
        assert!(std::time::Instant::now() < deadline, "the request was never reclaimed: {row:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = std::process::Command::new("kill").args(["-INT", &b.id().to_string()]).status();
    b.wait_with_output().unwrap();
    assert_eq!(attempt, 1, "the interrupted attempt was not charged");
    assert_eq!(error, None);
    let released: String = sqlx::query_scalar("SELECT message FROM run_events WHERE kind = 'step_retried'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(released, "its worker exited mid-attempt");
    let reclaimed: i64 = sqlx::query_scalar("SELECT count(*) FROM run_events WHERE kind = 'step_started'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(reclaimed, 2, "started twice: once by the killed worker, once by the one that finished");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 1, "materialized exactly once");
    drop(conn);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_drain_5000_requests_each_exactly_once() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    // 5,000 hourly snapshots: 2025-01-01T00:00 ..= 2025-07-28T07:00.
    let submitted = robo.run_with(
        &["submit", "usage_snapshot", "--from", "2025-01-01T00:00", "--to", "2025-07-28T07:00", "--json"],
        &env,
    );
    assert_eq!(submitted.code, 0, "{}", submitted.stderr);
    let json: serde_json::Value = serde_json::from_str(&submitted.stdout).unwrap();
    assert_eq!(json["requests"].as_array().unwrap().len(), 5_000);
    let run_id = json["run_id"].as_str().unwrap().to_owned();

    let workers = spawn_workers(&robo, &env, 4, "8", &[]);
    let mut conn = db.connect().await;
    wait_for_success(&mut conn, &run_id, std::time::Duration::from_secs(600)).await;
    stop_workers(workers);
    let (total, distinct, most): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT partition_key), coalesce(max(n), 0) FROM materializations \
         CROSS JOIN LATERAL (SELECT count(*) AS n FROM materializations m2 WHERE m2.partition_key = materializations.partition_key) c",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((total, distinct, most), (5_000, 5_000, 1), "every request executed exactly once, none lost");
    let (succeeded, attempts): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'succeeded'), coalesce(max(attempt), 0) FROM materialization_requests",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((succeeded, attempts), (5_000, 1), "no request needed a second attempt");
    drop(conn);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_limit_holds_across_worker_processes_under_load() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    assert_eq!(robo.run_with(&["pools", "set", "graph_api", "2"], &env).code, 0);
    let submitted =
        robo.run_with(&["submit", "usage_snapshot", "--from", "2025-12-15T00:00", "--to", "2025-12-15T23:00"], &env);
    assert_eq!(submitted.code, 0, "{}", submitted.stderr);
    // Two workers with room for 8 each; every snapshot holds the Graph API for 100 ms.
    let workers = spawn_workers(&robo, &env, 2, "8", &[("ROBO_ASSETS_DEV_LATENCY_MS", "100")]);
    let mut conn = db.connect().await;
    let (mut peak, mut done) = (0i64, 0i64);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while done < 24 {
        let (running, succeeded): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'succeeded') \
             FROM materialization_requests WHERE pool = 'graph_api'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        peak = peak.max(running);
        done = succeeded;
        assert!(std::time::Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop_workers(workers);
    assert_eq!(peak, 2, "never more than the pool's 2 running at once, and the limit was reached");
    drop(conn);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_request_stops_its_worker_step() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let submitted = robo.run_with(&["submit", "usage_snapshot", "--partition", "2025-12-15T05:00", "--json"], &env);
    let json: serde_json::Value = serde_json::from_str(&submitted.stdout).unwrap();
    let id = json["requests"][0]["request_id"].as_str().unwrap().to_owned();
    let mut cmd = robo.command(&["worker", "--lease-secs", "3"]);
    cmd.envs(env).env("ROBO_ASSETS_DEV_LATENCY_MS", "60000");
    let worker = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut conn = db.connect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while request_state(&mut conn, &id).await != "running" {
        assert!(std::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cancel = robo.run_with(&["requests", "cancel", &id], &env);
    assert!(cancel.stdout.contains("is running: its worker was asked to stop"), "{}", cancel.stdout);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while request_state(&mut conn, &id).await != "canceled" {
        assert!(std::time::Instant::now() < deadline, "the worker never stopped the step");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill").args(["-INT", &worker.id().to_string()]).status();
    let out = worker.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 canceled"), "{}", String::from_utf8_lossy(&out.stderr));
    let (materialized, running): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM materializations), \
                (SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((materialized, running), (0, 0));
    drop(conn);
    db.drop_db().await;
}

async fn request_state(conn: &mut PgConnection, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM materialization_requests WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// A worker stops cleanly on Ctrl-C (exit 0), or, if the signal came while it was still starting
/// (a worker that found nothing left to do), by the default SIGINT action; never by a crash.
fn stopped_by_ctrl_c(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.success() || status.signal() == Some(2)
}

/// Starts `n` `robo-assets worker` processes with `extra` environment.
fn spawn_workers(
    robo: &Robo,
    env: &[(&str, &str)],
    n: usize,
    concurrency: &str,
    extra: &[(&str, &str)],
) -> Vec<std::process::Child> {
    (0..n)
        .map(|_| {
            let mut cmd = robo.command(&["worker", "--concurrency", concurrency]);
            cmd.envs(env.iter().copied()).envs(extra.iter().copied());
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect()
}

/// Waits until run `run_id` ends and asserts it succeeded.
pub(crate) async fn wait_for_success(conn: &mut PgConnection, run_id: &str, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if status != "queued" && status != "running" {
            let errors: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT partition_key, state, last_error FROM materialization_requests \
                 WHERE run_id = $1 AND state <> 'succeeded' LIMIT 5",
            )
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            assert_eq!(status, "succeeded", "requests that did not succeed: {errors:?}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the workers did not drain run {run_id}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends Ctrl-C to every worker and asserts each stops cleanly.
pub(crate) fn stop_workers(workers: Vec<std::process::Child>) {
    for w in workers {
        let _ = std::process::Command::new("kill").args(["-INT", &w.id().to_string()]).status();
        let out = w.wait_with_output().unwrap();
        assert!(
            stopped_by_ctrl_c(&out.status),
            "a worker exits cleanly on Ctrl-C: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_is_carried_out_by_two_worker_processes() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let launched = robo.run_with(
        &["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-10", "--detach", "--json"],
        &env,
    );
    assert_eq!(launched.code, 0, "{}", launched.stderr);
    let json: serde_json::Value = serde_json::from_str(&launched.stdout).unwrap();
    assert_eq!(json["cells"], 250);
    let (id, run_id) = (json["backfill_id"].as_str().unwrap().to_owned(), json["run_id"].as_str().unwrap().to_owned());
    // Submitting the same cells again (a crashed launcher retried) adds nothing.
    let resumed = robo.run_with(&["backfill", "resume", &id, "--detach"], &env);
    assert!(resumed.stdout.contains("0 new cells requested"), "{}", resumed.stdout);

    let workers = spawn_workers(&robo, &env, 2, "4", &[]);
    let mut conn = db.connect().await;
    wait_for_success(&mut conn, &run_id, std::time::Duration::from_secs(300)).await;
    stop_workers(workers);
    let (total, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (asset_key, partition_key)) FROM materializations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((total, distinct), (250, 250), "every cell materialized exactly once");
    let owners: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT run_id) FROM materializations").fetch_one(&mut conn).await.unwrap();
    assert_eq!(owners, 1);
    let status = robo.run_with(&["backfill", "status", &id], &env);
    assert!(status.stdout.contains("policy missing: succeeded"), "{}", status.stdout);
    assert!(status.stdout.contains("usage_snapshot           240     240"), "{}", status.stdout);
    drop(conn);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_create_one_set_of_requests_per_tick() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = |now: &'static str| [("ROBO_ASSETS_LINEAGE_URL", db.url.clone()), ("ROBO_ASSETS_NOW", now.to_owned())];
    // Registered a day ago, then two daemons wake up at the same moment and catch up.
    let first = robo.command(&["daemon", "--once", "--no-worker"]).envs(env("2026-01-12T12:00:00Z")).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let daemons: Vec<_> = (0..2)
        .map(|_| {
            robo.command(&["daemon", "--once", "--no-worker"])
                .envs(env("2026-01-13T12:30:00Z"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for d in daemons {
        let out = d.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut conn = db.connect().await;
    let per_tick: Vec<(String, i64)> =
        sqlx::query_as("SELECT instigator, count(*) FROM ticks GROUP BY instigator, tick_time HAVING count(*) > 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(per_tick.is_empty(), "a tick recorded twice: {per_tick:?}");
    let hourly: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks WHERE instigator = 'usage_snapshot_hourly'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(hourly, 1 + 24, "the first pass's tick, then the day caught up once");
    // Every requested (asset, partition) of the hourly schedule exists once; keys never collide.
    let (requests, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM materialization_requests WHERE trigger IN ('schedule', 'sensor')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let from_ticks: i64 =
        sqlx::query_scalar("SELECT CAST(sum(requests) AS BIGINT) FROM ticks").fetch_one(&mut conn).await.unwrap();
    assert_eq!((requests, distinct), (from_ticks, from_ticks));
    drop(conn);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_dropped_database_connections_and_record_everything_once() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let submitted = robo.run_with(
        &["submit", "usage_snapshot", "--from", "2025-01-01T00:00", "--to", "2025-01-10T23:00", "--json"],
        &env,
    );
    assert_eq!(submitted.code, 0, "{}", submitted.stderr);
    let json: serde_json::Value = serde_json::from_str(&submitted.stdout).unwrap();
    let run_id = json["run_id"].as_str().unwrap().to_owned();
    let n = json["requests"].as_array().unwrap().len() as i64;
    assert_eq!(n, 240);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = robo.command(&["worker", "--concurrency", "8", "--lease-secs", "3"]);
            // Slow steps, so the connections are cut while requests are in flight.
            cmd.envs(env).env("ROBO_ASSETS_DEV_LATENCY_MS", "100");
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    // Cut every worker connection to the database, twenty times, while they drain: statements
    // in flight fail, and each worker restarts its loop instead of exiting.
    let mut admin = PgConnection::connect_with(&db.admin).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&db.name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let mut conn = db.connect().await;
    wait_for_success(&mut conn, &run_id, std::time::Duration::from_secs(300)).await;
    stop_workers(workers);
    let (total, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT partition_key) FROM materializations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((total, distinct), (n, n), "every request recorded exactly once");
    drop(conn);
    db.drop_db().await;
}

/// Issue 14 §1: a password given as `?password=` (a form sqlx accepts) is never shown: not in the
/// worker's start line, not in "no backfill … in …", not in "opening app database …", and not
/// at `RUST_LOG=debug`, nor an `AWS_ENDPOINT_URL`'s userinfo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_parameter_password_never_appears_in_any_output() {
    let Some(db) = TestDb::create().await else { return };
    let robo = Robo::new();
    // The suite's URL carries the password as userinfo; move it into the query.
    let url = db.url.replacen(&format!(":{PASSWORD}@"), "@", 1) + &format!("?password={PASSWORD}");
    assert!(url.contains(&format!("?password={PASSWORD}")), "{url}");
    let env = [("ROBO_ASSETS_LINEAGE_URL", url.as_str()), ("RUST_LOG", "debug")];

    let mut outputs = Vec::new();
    let run = robo.run_with(&["backfill", "status", "0190f5c0-0000-7000-8000-000000000000"], &env);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no backfill"), "{}", run.stderr);
    outputs.push(run);
    let app_url = db.url.replacen(&format!(":{PASSWORD}@"), "@", 1).replacen("/robo_it_", "/nope_", 1)
        + &format!("?password={PASSWORD}");
    let run = robo.run_with(&["demo", "seed"], &[("DATABASE_URL", app_url.as_str()), ("RUST_LOG", "debug")]);
    assert!(run.stderr.contains("opening app database"), "{}", run.stderr);
    outputs.push(run);
    let run = robo.run_with(
        &["status"],
        &[
            ("S3_BUCKET_NAME", "outputs"),
            ("AWS_ENDPOINT_URL", &format!("http://key:{PASSWORD}@127.0.0.1:1")),
            ("RUST_LOG", "debug"),
        ],
    );
    outputs.push(run);

    let mut cmd = robo.command(&["worker"]);
    cmd.envs(env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let worker = cmd.spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let _ = std::process::Command::new("kill").args(["-INT", &worker.id().to_string()]).status();
    let out = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("Worker started"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "the worker leaked the password: {stderr}");
    for run in outputs {
        assert!(!run.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD), "leaked: {run:?}");
    }
    db.drop_db().await;
}

/// A `robo-assets worker` loop (concurrency 2) that looks for work only when woken (its polls an
/// hour apart), returned once it has found the queue empty and gone idle.
async fn idle_worker(
    exec: &engine::Executor,
) -> (tokio::task::JoinHandle<Result<engine::WorkerStats, lineage::Error>>, tokio_util::sync::CancellationToken) {
    use std::time::Duration;
    let config = engine::WorkerConfig {
        poll: Duration::from_secs(3600),
        idle_poll: Duration::from_secs(3600),
        ..engine::WorkerConfig::new(2)
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn({
        let (exec, stop) = (exec.clone(), stop.clone());
        async move {
            engine::run_worker(&exec, &config, engine::Until::Canceled, std::sync::Arc::new(engine::NoObserver), stop)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    (worker, stop)
}

/// What a worker process runs: `assets` on `store`, outputs as Parquet under `dir`.
fn worker_executor(
    store: &std::sync::Arc<dyn lineage::LineageStore>,
    dir: &std::path::Path,
    assets: Vec<engine::AssetDef>,
) -> engine::Executor {
    use std::sync::Arc;
    engine::Executor {
        defs: engine::Definitions::new(assets).unwrap(),
        store: store.clone(),
        io: Arc::new(resources::ParquetIoManager::new(Arc::new(resources::LocalObjectStore::new(dir)))),
        resources: engine::Resources::default(),
        clock: Arc::new(engine::SystemClock),
    }
}

/// A manual run of `n_steps` on `store`, for requests submitted by hand.
async fn manual_run(
    store: &dyn lineage::LineageStore,
    selection: &str,
    n_steps: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> lineage::RunId {
    let run = lineage::RunId::new();
    let new = lineage::NewRun {
        id: run,
        trigger: lineage::Trigger::Manual,
        selection: selection.into(),
        n_steps,
        tags: serde_json::json!({}),
        created_at: now,
        owner: None,
    };
    store.create_run(&new).await.unwrap();
    run
}

/// An idle worker on PostgreSQL starts a request another process submits at once, woken by its
/// notification: its poll is an hour, so nothing else could have started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_another_processes_submission() {
    use std::time::Duration;
    let Some(db) = TestDb::create().await else { return };
    let (worker_store, submitter) = (db.store().await, db.store().await);
    let dir = tempfile::tempdir().unwrap();
    let exec = worker_executor(
        &worker_store,
        dir.path(),
        vec![
            engine::asset("noop")
                .partitions(engine::PartitionsDef::hourly("2026-01-01"))
                .compute(|_ctx| async move { Ok(engine::Output::none()) }),
        ],
    );
    let (worker, stop) = idle_worker(&exec).await;
    let now = chrono::Utc::now();
    let run = manual_run(&*submitter, "noop", 1, now).await;
    let request = lineage::NewRequest {
        id: lineage::RequestId::new(),
        idempotency_key: "woken".into(),
        run_id: run,
        asset_key: "noop".into(),
        partition_key: "2026-01-01T00:00".into(),
        trigger: lineage::Trigger::Manual,
        pool: None,
        priority: 0,
        max_attempts: 1,
        run_at: now,
        created_at: now,
    };
    submitter.submit_requests(&[request], &[]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = submitter.run(run).await.unwrap().unwrap().status;
        if status == lineage::RunStatus::Succeeded {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the idle worker was never woken: run {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    assert_eq!(worker.await.unwrap().unwrap().completed, 1);
    drop((exec, worker_store, submitter));
    db.drop_db().await;
}

/// A step that fails frees its pool's slot for the request waiting on it at once, as a completion
/// does: the worker claims before it records its finished steps, so without the wake-up the
/// freed slot waited for the next poll (an hour here; 5 s by default on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_by_a_failure_is_taken_at_once() {
    use std::time::Duration;
    let Some(db) = TestDb::create().await else { return };
    // The submission comes from another process's store: the worker hears of it only through
    // PostgreSQL's notification, once.
    let (store, submitter) = (db.store().await, db.store().await);
    let dir = tempfile::tempdir().unwrap();
    let exec = worker_executor(
        &store,
        dir.path(),
        vec![engine::asset("pooled").partitions(engine::PartitionsDef::hourly("2026-01-01")).compute(
            |ctx| async move {
                match ctx.partition_key.as_str() {
                    "2026-01-01T00:00" => Err("this hour fails".into()),
                    _ => Ok(engine::Output::none()),
                }
            },
        )],
    );
    submitter.set_pool_limit("one_at_a_time", 1).await.unwrap();
    let (worker, stop) = idle_worker(&exec).await;
    let now = chrono::Utc::now();
    let run = manual_run(&*submitter, "pooled", 2, now).await;
    // The failing hour first (higher priority), the other waiting for the pool's one slot.
    let requests: Vec<lineage::NewRequest> = [("2026-01-01T00:00", 1), ("2026-01-01T01:00", 0)]
        .into_iter()
        .map(|(hour, priority)| lineage::NewRequest {
            id: lineage::RequestId::new(),
            idempotency_key: format!("slot:{hour}"),
            run_id: run,
            asset_key: "pooled".into(),
            partition_key: hour.into(),
            trigger: lineage::Trigger::Manual,
            pool: Some("one_at_a_time".into()),
            priority,
            max_attempts: 1,
            run_at: now,
            created_at: now,
        })
        .collect();
    submitter.submit_requests(&requests, &[]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let states = loop {
        let mut states = Vec::new();
        for r in &requests {
            states.push(store.request(r.id).await.unwrap().unwrap().state);
        }
        if states[1] == lineage::RequestState::Succeeded {
            break states;
        }
        assert!(std::time::Instant::now() < deadline, "the slot the failure freed was not taken: {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(states[0], lineage::RequestState::Failed);
    stop.cancel();
    let stats = worker.await.unwrap().unwrap();
    assert_eq!((stats.completed, stats.failed), (1, 1));
    drop((exec, store, submitter));
    db.drop_db().await;
}
