//! Request-queue throughput: requests claimed, executed and completed per second with no-op
//! assets, on SQLite in one process and on PostgreSQL with 1, 4 and 8 worker processes.
//!
//! `cargo bench --bench queue` (PostgreSQL rows need
//! `ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres`; each run creates and
//! drops its own database). The bench submits `N` requests of a no-op hourly asset as one run,
//! starts the workers (this same binary re-executed with `--queue-worker`), waits until every
//! worker is connected, then times from "go" until the store holds `N` succeeded requests, and
//! checks that each partition was materialized exactly once. Worker processes run the real
//! `engine::run_worker` loop: batched claims with leases, fenced group completion, the lineage
//! rows of every materialization.
//!
//! `cargo bench --bench queue -- --soak` (PostgreSQL only; not in CI) is the soak of issue 14:
//! an idle-in-transaction session pins the xmin horizon (so no dead row version can be vacuumed)
//! for `ROBO_ASSETS_BENCH_SOAK_SECS` (default 600) while 4 worker processes drain requests that a
//! producer keeps submitting; every 30 s it prints the throughput of that interval, the rows in
//! `materialization_requests` (finished and open), its `pg_total_relation_size` and its dead rows.
//! `ROBO_ASSETS_BENCH_SOAK_PIN=0` is the control: the same soak with nothing pinned.

mod common;
use common::peak_rss_mib;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Definitions, Executor, NoObserver, Output, PartitionsDef, Resources, SystemClock, Until, WorkerConfig};
use lineage::{LineageStore, NewRequest, NewRun, PgStore, RequestId, RunId, SqliteStore};
use resources::{LocalObjectStore, ParquetIoManager};
use sqlx::{Connection, Executor as _};
use tokio_util::sync::CancellationToken;

const REQUESTS: usize = 20_000;

fn definitions() -> Definitions {
    Definitions::new(vec![
        engine::asset("noop")
            .partitions(PartitionsDef::hourly("2020-01-01"))
            .compute(|_ctx| async move { Ok(Output::none()) }),
    ])
    .unwrap()
}

fn executor(store: Arc<dyn LineageStore>, dir: &std::path::Path) -> Executor {
    Executor {
        defs: definitions(),
        store,
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.join("storage"))))),
        resources: Resources::default(),
        clock: Arc::new(SystemClock),
    }
}

/// Submits `n` no-op requests as one run.
async fn submit(store: &dyn LineageStore, n: usize) -> RunId {
    submit_from(store, 0, n).await
}

/// Submits `n` no-op requests as one run, for the hours from the `first`th on.
async fn submit_from(store: &dyn LineageStore, first: usize, n: usize) -> RunId {
    let now = chrono::Utc::now();
    let run_id = RunId::new();
    store
        .create_run(&NewRun {
            id: run_id,
            trigger: lineage::Trigger::Manual,
            selection: "noop".into(),
            n_steps: n as i64,
            tags: serde_json::json!({}),
            created_at: now,
            owner: None,
        })
        .await
        .unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let requests: Vec<NewRequest> = (0..n)
        .map(|i| {
            let key = (start + chrono::Duration::hours((first + i) as i64)).format("%Y-%m-%dT%H:%M").to_string();
            NewRequest {
                id: RequestId::new(),
                idempotency_key: format!("bench:{run_id}:{key}"),
                run_id,
                asset_key: "noop".into(),
                partition_key: key,
                trigger: lineage::Trigger::Manual,
                pool: None,
                priority: 0,
                max_attempts: 1,
                run_at: now,
                created_at: now,
            }
        })
        .collect();
    for chunk in requests.chunks(5_000) {
        store.submit_requests(chunk, &[]).await.unwrap();
    }
    run_id
}

async fn succeeded(store: &dyn LineageStore, run: RunId) -> bool {
    store.run(run).await.unwrap().is_some_and(|r| r.status == lineage::RunStatus::Succeeded)
}

fn report(name: &str, n: usize, elapsed: Duration) {
    println!(
        "{name:<44} {n:>6} requests  {:>8.2?}  {:>7.0} requests/s  peak RSS {:>5.1} MiB (parent)",
        elapsed,
        n as f64 / elapsed.as_secs_f64(),
        peak_rss_mib()
    );
}

/// SQLite, one process: the embedded mode's in-process worker.
async fn sqlite(concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LineageStore> = Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let run = submit(&*store, REQUESTS).await;
    let exec = executor(store.clone(), dir.path());
    let config = WorkerConfig { poll: Duration::from_millis(5), ..WorkerConfig::new(concurrency) };
    let started = Instant::now();
    engine::run_worker(&exec, &config, Until::RunEnded(run), Arc::new(NoObserver), CancellationToken::new())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(succeeded(&*store, run).await);
    report(&format!("SQLite, 1 in-process worker, concurrency {concurrency}"), REQUESTS, elapsed);
}

/// PostgreSQL, `workers` processes.
async fn postgres(admin_url: &str, workers: usize, concurrency: usize) {
    let admin: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    let db = format!("robo_bench_{:08x}", fastrand::u32(..));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
    let store = Arc::new(PgStore::connect_with(admin.clone().database(&db), db.clone()).await.unwrap());
    let run = submit(&*store, REQUESTS).await;
    let db_url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);

    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--queue-worker", &db_url, &concurrency.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in &mut children {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let started = Instant::now();
    for child in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    while !succeeded(&*store, run).await {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (total, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT partition_key) FROM materializations")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((total, distinct), (REQUESTS as i64, REQUESTS as i64), "each request materialized exactly once");
    report(&format!("PostgreSQL, {workers} worker process(es), concurrency {concurrency}"), REQUESTS, elapsed);
    store.pool().close().await;
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
}

/// Claim-to-start latency at a steady offered rate: 4 worker processes with the default worker
/// configuration (concurrency 8) on PostgreSQL, a producer submitting one request every 5 ms
/// (200/s) as its own run for 10 s; each request's latency is its `claimed_at - run_at` from
/// the store. Then the idle cost: transactions per second committed in the database by
/// `ROBO_ASSETS_BENCH_IDLE_WORKERS` (default 100) idle workers, 20 per process, over 30 s after
/// 15 s of warm-up.
async fn latency(admin_url: &str) {
    let admin: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    let db = format!("robo_bench_{:08x}", fastrand::u32(..));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
    let store = Arc::new(PgStore::connect_with(admin.clone().database(&db), db.clone()).await.unwrap());
    let db_url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let spawn = |loops: usize| {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--idle-worker", &db_url, &loops.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        child
    };
    let mut children: Vec<Child> = (0..4).map(|_| spawn(1)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = 2_000;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut runs = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        runs.push(submit_from(&*store, i, 1).await);
    }
    for run in &runs {
        while !succeeded(&*store, *run).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM claimed_at - run_at) * 1000)::float8 FROM materialization_requests",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "PostgreSQL, 4 worker processes (concurrency 8), 200 requests/s offered: claim-to-start p50 {:.1} ms, \
         p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        at(0.50),
        at(0.95),
        at(0.99),
        ms[ms.len() - 1],
        ms.len()
    );
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Idle cost: the database's committed transactions while only idle workers run.
    let idle: usize = std::env::var("ROBO_ASSETS_BENCH_IDLE_WORKERS").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
    // 20 workers per process: each process's pool has 16 connections (and a listener), so 100
    // workers stay within PostgreSQL's default 100 connections.
    let mut children: Vec<Child> = (0..idle.div_ceil(20)).map(|p| spawn((idle - p * 20).min(20))).collect();
    // Past the workers' start (connecting, the first reaper pass and claim), whose statistics
    // reach pg_stat_database late.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let commits = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    // Statistics reach pg_stat_database when a backend reports them (at most every second or so).
    let before = commits().await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = commits().await;
    println!(
        "PostgreSQL, {idle} idle workers ({} processes): {:.1} transactions/s",
        children.len(),
        (after - before - 1) as f64 / started.elapsed().as_secs_f64()
    );
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    store.pool().close().await;
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
}

/// A process of `loops` workers with the default configuration (concurrency 8 each), sharing one
/// store: for the latency and idle-cost bench.
async fn idle_worker_process(url: &str, loops: usize) {
    let store: Arc<dyn LineageStore> = Arc::new(PgStore::connect(url).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(store, dir.path());
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..loops {
        let exec = exec.clone();
        let config = WorkerConfig::new(8);
        workers.spawn(async move {
            engine::run_worker(&exec, &config, Until::Canceled, Arc::new(NoObserver), CancellationToken::new()).await
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap().unwrap();
    }
}

/// Prints one line of the soak: the interval's throughput and the requests table's size.
async fn soak_line(pool: &sqlx::PgPool, started: Instant, since: Instant, done_before: i64) -> i64 {
    let (done, open, size, dead): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'succeeded'), \
                count(*) FILTER (WHERE state IN ('blocked', 'available', 'running')), \
                pg_total_relation_size('materialization_requests'), \
                (SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relname = 'materialization_requests') \
         FROM materialization_requests",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let secs = since.elapsed().as_secs_f64();
    println!(
        "{:>5.0} s  {:>7.0} requests/s  {:>9} finished  {:>6} open  {:>8.1} MiB  {:>9} dead rows",
        started.elapsed().as_secs_f64(),
        (done - done_before) as f64 / secs,
        done,
        open,
        size as f64 / (1024.0 * 1024.0),
        dead
    );
    done
}

/// The soak: 4 worker processes drain requests a producer keeps submitting (20,000 open at most,
/// in runs of 5,000) while another session sits idle in a transaction holding a snapshot (with
/// `pin_xmin`), for `secs` seconds; then the snapshot is released, `VACUUM` runs, and a last
/// minute is measured.
async fn soak(admin_url: &str, secs: u64, pin_xmin: bool) {
    const BATCH: usize = 5_000;
    const WORKERS: usize = 4;
    let admin: sqlx::postgres::PgConnectOptions = admin_url.parse().unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    let db = format!("robo_soak_{:08x}", fastrand::u32(..));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
    let store = Arc::new(PgStore::connect_with(admin.clone().database(&db), db.clone()).await.unwrap());
    let db_url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    // The pin: a repeatable-read transaction that has taken its snapshot and an xid, left idle.
    let mut pin = sqlx::PgConnection::connect_with(&admin.clone().database(&db)).await.unwrap();
    if pin_xmin {
        pin.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        let xid: i64 =
            sqlx::query_scalar("SELECT txid_current() FROM (SELECT count(*) FROM materialization_requests) AS pinned")
                .fetch_one(&mut pin)
                .await
                .unwrap();
        println!("soak: {WORKERS} worker processes, concurrency 64, xmin pinned at xid {xid} for {secs} s");
    } else {
        println!("soak: {WORKERS} worker processes, concurrency 64, nothing pinned (the control), {secs} s");
    }

    let mut children: Vec<Child> = (0..WORKERS)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--queue-worker", &db_url, "64"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in &mut children {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
    submit(&*store, BATCH).await;
    for child in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let started = Instant::now();
    let (mut since, mut done) = (started, 0);
    let mut runs = 1;
    let interval = Duration::from_secs(30);
    let mut pinned = true;
    let end = started + Duration::from_secs(secs) + Duration::from_secs(60);
    while Instant::now() < end {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM materialization_requests WHERE state IN ('blocked', 'available', 'running')",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if open < (4 * BATCH - BATCH) as i64 {
            submit(&*store, BATCH).await;
            runs += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if since.elapsed() >= interval {
            done = soak_line(store.pool(), started, since, done).await;
            since = Instant::now();
        }
        if pinned && started.elapsed() >= Duration::from_secs(secs) {
            pinned = false;
            if pin_xmin {
                pin.execute("ROLLBACK").await.unwrap();
            }
            let vacuum = Instant::now();
            store.pool().execute("VACUUM materialization_requests").await.unwrap();
            println!("soak: snapshot released; VACUUM materialization_requests took {:.1?}", vacuum.elapsed());
            done = soak_line(store.pool(), started, since, done).await;
            since = Instant::now();
        }
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT run_id, partition_key FROM materializations GROUP BY run_id, partition_key \
         HAVING count(*) > 1) AS twice",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(twice, 0, "each request materialized exactly once");
    println!("soak: {runs} runs of {BATCH} submitted, {done} requests finished, none twice");
    store.pool().close().await;
    drop(pin);
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
}

/// A worker process: connect, say "ready", wait for "go", work until killed.
async fn worker_process(url: &str, concurrency: usize) {
    let store: Arc<dyn LineageStore> = Arc::new(PgStore::connect(url).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(store, dir.path());
    let config = WorkerConfig { poll: Duration::from_millis(5), ..WorkerConfig::new(concurrency) };
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    engine::run_worker(&exec, &config, Until::Canceled, Arc::new(NoObserver), CancellationToken::new()).await.unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--queue-worker") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(worker_process(&args[i + 1], args[i + 2].parse().unwrap()));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--idle-worker") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(idle_worker_process(&args[i + 1], args[i + 2].parse().unwrap()));
        return;
    }
    if args.iter().any(|a| a == "--latency") {
        let url = std::env::var("ROBO_ASSETS_BENCH_PG_URL").expect("--latency needs ROBO_ASSETS_BENCH_PG_URL");
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(latency(&url));
        return;
    }
    if args.iter().any(|a| a == "--soak") {
        let url = std::env::var("ROBO_ASSETS_BENCH_PG_URL").expect("--soak needs ROBO_ASSETS_BENCH_PG_URL");
        let secs = std::env::var("ROBO_ASSETS_BENCH_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let pin_xmin = std::env::var("ROBO_ASSETS_BENCH_SOAK_PIN").as_deref() != Ok("0");
        runtime.block_on(soak(&url, secs, pin_xmin));
        return;
    }
    let concurrency: usize =
        std::env::var("ROBO_ASSETS_BENCH_CONCURRENCY").ok().and_then(|c| c.parse().ok()).unwrap_or(64);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // `ROBO_ASSETS_BENCH_WORKERS=1,8` picks the PostgreSQL worker counts; `0` alone skips SQLite.
    let counts: Vec<usize> = std::env::var("ROBO_ASSETS_BENCH_WORKERS")
        .map(|w| w.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![0, 1, 4, 8]);
    runtime.block_on(async {
        if counts.contains(&0) {
            sqlite(8).await;
            sqlite(concurrency).await;
        }
        match std::env::var("ROBO_ASSETS_BENCH_PG_URL") {
            Ok(url) => {
                for workers in counts.into_iter().filter(|w| *w > 0) {
                    postgres(&url, workers, concurrency).await;
                }
            }
            Err(_) => println!(
                "PostgreSQL rows skipped: set ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres"
            ),
        }
    });
}
