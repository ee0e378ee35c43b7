//! A full year of the billing chain as one backfill: 8,760 hourly + 365 daily + 12 monthly
//! cells with trivial compute, planned, persisted, submitted and carried out through the
//! request queue by the in-process worker (what `robo-assets backfill` does).
//!
//! `cargo bench --bench backfill` (SQLite); add
//! `ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres` for PostgreSQL (a
//! fresh database per run). Figures go to BENCHMARKS.md.

mod common;
use common::peak_rss_mib;
use std::sync::Arc;
use std::time::Instant;

use chrono::TimeZone;
use engine::backfill::{BackfillPolicy, BackfillSpec, CellStates};
use engine::{
    Definitions, Executor, FixedClock, NoObserver, Output, PartitionMapping, PartitionSpec, PartitionsDef, Resources,
    asset,
};
use lineage::LineageStore;
use resources::{LocalObjectStore, ParquetIoManager};
use sqlx::{Connection, Executor as _};
use tokio_util::sync::CancellationToken;

fn definitions() -> Definitions {
    let noop =
        |ctx: engine::AssetContext| async move { Ok(Output::none().with_metadata("p", ctx.partition_key.clone())) };
    Definitions::new(vec![
        asset("usage_snapshot").partitions(PartitionsDef::hourly("2025-01-01")).compute(noop),
        asset("storage_bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage_snapshot").compute(noop),
        asset("usage_report")
            .partitions(PartitionsDef::monthly("2025-01-01"))
            .dep_mapped("storage_bill", PartitionMapping::time_window(0, 0))
            .compute(noop),
    ])
    .unwrap()
}

async fn year(name: &str, store: Arc<dyn LineageStore>, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor {
        defs: definitions(),
        store: store.clone(),
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path().join("storage"))))),
        resources: Resources::default(),
        clock: Arc::new(FixedClock(chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap())),
    };
    let started = Instant::now();
    let graph = exec.defs.graph();
    let spec = BackfillSpec { selection: "+usage_report".into(), from: "2025-01-01".into(), to: "2025-12-31".into() };
    let selected = engine::selection::resolve(graph, &spec.selection).unwrap();
    let ctx = exec.partitions_context(None).await.unwrap();
    let targets =
        engine::plan::targets(graph, &selected, &PartitionSpec::Range(spec.from.clone(), spec.to.clone()), &ctx)
            .unwrap();
    let states = CellStates::load(&*store, graph, graph.upstream_closure(&selected, None)).await.unwrap();
    let bf = engine::backfill::plan_backfill(graph, &targets, &states, BackfillPolicy::Missing, &ctx).unwrap();
    let planned = started.elapsed();
    let (_, run) = engine::backfill::launch(&exec, &spec, &bf).await.unwrap();
    let submitted = started.elapsed();
    engine::backfill::drive(&exec, run, concurrency, Arc::new(NoObserver), CancellationToken::new()).await.unwrap();
    let total = started.elapsed();
    assert_eq!(store.run(run).await.unwrap().unwrap().status, lineage::RunStatus::Succeeded);
    let n = bf.cells();
    assert_eq!(n, 8_760 + 365 + 12);
    println!(
        "{name:<36} {n} cells  plan {planned:>8.2?}  plan+persist+submit {submitted:>8.2?}  total {total:>8.2?}  \
         {:.3} ms/cell  peak RSS {:.1} MiB",
        total.as_secs_f64() * 1000.0 / n as f64,
        peak_rss_mib()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        for concurrency in [8, 64] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(lineage::SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
            year(&format!("SQLite, embedded, concurrency {concurrency}"), store, concurrency).await;
        }
        let Ok(url) = std::env::var("ROBO_ASSETS_BENCH_PG_URL") else {
            println!("PostgreSQL skipped: set ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres");
            return;
        };
        let admin: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
        let db = format!("robo_bench_{:08x}", fastrand::u32(..));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
        let store = Arc::new(lineage::PgStore::connect_with(admin.clone().database(&db), db.clone()).await.unwrap());
        year("PostgreSQL, in-process worker, conc. 64", store.clone(), 64).await;
        store.pool().close().await;
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
    });
}
