//! Lineage-store growth over a simulated month (issue 17): the RoboSystems schedules (hourly
//! usage snapshots and API-key cleanup, the daily bill, the weekly credit health, the monthly
//! allocation, report and QuickBooks close) driven as the daemon drives them, a pass every hour
//! of a December on a virtual clock (the ticks, the worker's queue clock and every stamp read
//! it; the December ahead of the wall clock, see [`december`]), each pass's runs carried out by
//! an in-process worker and every OpenLineage event and alert delivered; with retention off,
//! and with 7d (a prune after every pass, as the daemon's hourly pass does). The assets compute nothing
//! (a data version and a little metadata each): the figures are the store's own growth, what
//! the engine writes per step, not the outputs'. Sensors need the app database and are left out.
//!
//! Reports the store's size at month end, its growth per day (least-squares slope over the last
//! 21 days) and rows per table. SQLite's size is the file's (free pages, reused later, are
//! counted) and its live pages'; PostgreSQL's is `pg_database_size` (dead rows stay until
//! vacuum: autovacuum runs as it likes).
//!
//! `cargo bench --bench retention --profile dev` (SQLite); with
//! `ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres` PostgreSQL too (a fresh
//! database each, dropped after). Figures go to BENCHMARKS.md.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use engine::automation::Automation;
use engine::{Clock, Definitions, Executor, NoObserver, Output, Resources, Until, WorkerConfig, asset};
use lineage::{LineageStore, RunFilter, RunStatus};
use resources::{LocalObjectStore, ParquetIoManager};
use sqlx::{Connection, Executor as _};
use tokio_util::sync::CancellationToken;

/// The tables the engine writes, lineage and history alike.
const TABLES: &[&str] = &[
    "runs",
    "run_events",
    "materializations",
    "materialization_inputs",
    "asset_partitions",
    "materialization_requests",
    "request_edges",
    "ticks",
    "condition_evaluations",
    "asset_check_results",
    "openlineage_outbox",
    "alerts",
];

const DAYS: i64 = 31;

/// A clock the benchmark moves by hand.
struct Virtual(Mutex<DateTime<Utc>>);

impl Clock for Virtual {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The RoboSystems assets, each computing nothing but a data version and a little metadata.
fn definitions() -> Definitions {
    let noop = |ctx: engine::AssetContext| async move {
        Ok(Output::none()
            .with_data_version(format!("{}:{}", ctx.key, ctx.partition_key))
            .with_metadata("rows", 4)
            .with_metadata("tenants", 2))
    };
    let compute = asset("noop").compute(noop).compute;
    let defs = assets::assets()
        .into_iter()
        .map(|mut d| {
            d.compute = compute.clone();
            d.required_resources.clear();
            d
        })
        .collect();
    Definitions::new(defs).unwrap()
}

/// The store's size in bytes: (the file's, its live pages') on SQLite; the database's twice on
/// PostgreSQL.
async fn size(store: &Backend) -> (i64, i64) {
    match store {
        Backend::Sqlite(s, path) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(s.pool()).await.unwrap();
            let file = std::fs::metadata(path).unwrap().len() as i64;
            let pages: i64 =
                sqlx::query_scalar("SELECT page_count - freelist_count FROM pragma_page_count, pragma_freelist_count")
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
            let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(s.pool()).await.unwrap();
            (file, pages * page_size)
        }
        Backend::Postgres(s) => {
            let n: i64 =
                sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(s.pool()).await.unwrap();
            (n, n)
        }
    }
}

async fn rows(store: &Backend, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    match store {
        Backend::Sqlite(s, _) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(s.pool()).await.unwrap(),
        Backend::Postgres(s) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(s.pool()).await.unwrap(),
    }
}

enum Backend {
    Sqlite(Arc<lineage::SqliteStore>, std::path::PathBuf),
    Postgres(Arc<lineage::PgStore>),
}

impl Backend {
    fn store(&self) -> Arc<dyn LineageStore> {
        match self {
            Backend::Sqlite(s, _) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }
}

/// Least-squares slope of `ys` over consecutive days, per day.
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        num += (i as f64 - mx) * (y - my);
        den += (i as f64 - mx).powi(2);
    }
    num / den
}

/// 00:10 on the first December 1 at least a day ahead of the wall clock. The queue stamps a
/// request's `run_at` with the wall clock (queue time is never pinned), so a worker whose queue
/// clock is virtual claims nothing while that clock is behind the wall: December 2025 cannot be
/// replayed with both clocks virtual and equal, which is what production has. Any December is
/// the same month for this benchmark: 31 days of the same schedules.
fn december() -> DateTime<Utc> {
    let soon = Utc::now() + chrono::Duration::days(1);
    let year = if soon.month() == 12 && soon.day() == 1 { soon.year() } else { soon.year() + 1 };
    let first = Utc.with_ymd_and_hms(year, 12, 1, 0, 10, 0).unwrap();
    if first > soon { first } else { Utc.with_ymd_and_hms(year + 1, 12, 1, 0, 10, 0).unwrap() }
}

async fn month(label: &str, backend: Backend, retention: Option<chrono::Duration>, dir: &std::path::Path) {
    let started = Instant::now();
    let start = december();
    let clock = Arc::new(Virtual(Mutex::new(start)));
    let store = backend.store();
    let exec = Executor {
        defs: definitions(),
        store: store.clone(),
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.join("storage"))))),
        resources: Resources::default(),
        clock: clock.clone(),
    };
    let robosystems = assets::automation::automation().unwrap();
    let automation = Automation { schedules: robosystems.schedules, sensors: Vec::new(), ..robosystems };
    let config = WorkerConfig { queue_clock: clock.clone(), ..WorkerConfig::new(4) };
    let mut daily: Vec<(i64, i64)> = Vec::new();
    let (mut n_runs, mut pruned) = (0usize, 0u64);
    for hour in 0..DAYS * 24 {
        let now = start + chrono::Duration::hours(hour);
        *clock.0.lock().unwrap() = now;
        engine::automation::run_once(&exec, &automation, now).await.unwrap();
        let mut waiting = Vec::new();
        for status in [RunStatus::Queued, RunStatus::Running] {
            let filter = RunFilter { status: Some(status), limit: 1_000, ..RunFilter::default() };
            waiting.extend(store.runs(&filter).await.unwrap().into_iter().map(|r| r.id));
        }
        waiting.reverse();
        for run in waiting {
            let worker = engine::run_worker(
                &exec,
                &config,
                Until::RunEnded(run),
                Arc::new(NoObserver),
                CancellationToken::new(),
            );
            if tokio::time::timeout(std::time::Duration::from_secs(60), worker).await.is_err() {
                let requests = store.requests(Some(run), None, None, 100).await.unwrap();
                panic!("run {run} did not end at {now}: {requests:#?}");
            }
            n_runs += 1;
        }
        // A receiver that accepts every event and alert (OPENLINEAGE_URL and the alert webhook
        // set), so delivered rows are what retention may take.
        let events: Vec<i64> = store.outbox_pending(100_000).await.unwrap().iter().map(|e| e.id).collect();
        store.outbox_delivered(&events, now, None).await.unwrap();
        for alert in store.alerts_pending(1_000).await.unwrap() {
            store.alert_delivered(alert.id, now, None).await.unwrap();
        }
        if let Some(age) = retention {
            pruned += engine::retention::prune_older_than(&*store, age, now, false).await.unwrap().total();
        }
        if hour % 24 == 23 {
            daily.push(size(&backend).await);
        }
    }
    let (file, live) = *daily.last().unwrap();
    let last21: Vec<f64> = daily[daily.len() - 21..].iter().map(|(f, _)| *f as f64).collect();
    let last21_live: Vec<f64> = daily[daily.len() - 21..].iter().map(|(_, l)| *l as f64).collect();
    let mb = |b: f64| b / 1_000_000.0;
    println!(
        "{label}, December {}: {n_runs} runs, {pruned} rows pruned; at month end {:.2} MB ({:.2} MB live); growth {:.3} MB/day ({:.3} MB/day live) over the last 21 days; {:.0} s",
        start.year(),
        mb(file as f64),
        mb(live as f64),
        mb(slope(&last21)),
        mb(slope(&last21_live)),
        started.elapsed().as_secs_f64()
    );
    let mut counts = Vec::new();
    for table in TABLES {
        counts.push(format!("{table} {}", rows(&backend, table).await));
    }
    println!("  rows: {}", counts.join(", "));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        for retention in [None, Some(chrono::Duration::days(7))] {
            let what = retention.map_or("retention off".to_owned(), |d| format!("retention {}d", d.num_days()));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lineage.db");
            let store = Arc::new(lineage::SqliteStore::open(&path).await.unwrap());
            month(&format!("SQLite, {what}"), Backend::Sqlite(store, path), retention, dir.path()).await;
        }
        let Ok(url) = std::env::var("ROBO_ASSETS_BENCH_PG_URL") else {
            println!("PostgreSQL skipped: set ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres");
            return;
        };
        let admin: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
        for retention in [None, Some(chrono::Duration::days(7))] {
            let what = retention.map_or("retention off".to_owned(), |d| format!("retention {}d", d.num_days()));
            let db = format!("robo_bench_{:08x}", fastrand::u32(..));
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
            let store =
                Arc::new(lineage::PgStore::connect_with(admin.clone().database(&db), db.clone()).await.unwrap());
            let dir = tempfile::tempdir().unwrap();
            month(&format!("PostgreSQL, {what}"), Backend::Postgres(store.clone()), retention, dir.path()).await;
            store.pool().close().await;
            conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
        }
    });
}
