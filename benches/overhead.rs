//! Orchestration overhead per step, measured on the real executor, SQLite lineage store and
//! local object store, with trivial compute.
//!
//! `cargo bench --bench overhead` runs: a 31-day range of the billing chain's shape (744 hourly +
//! 31 daily steps) with no output (pure orchestration: plan, record started, gather the exact
//! input versions, record the materialization) and with a one-row Parquet output per step (adds
//! encoding, blake3, write + fsync + rename); then a full year (8,760 + 365 steps) without output.
//! Figures go to BENCHMARKS.md.

mod common;
use common::peak_rss_mib;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::TimeZone;
use engine::{
    AssetContext, AssetDef, Definitions, Executor, FixedClock, NoObserver, Output, PartitionSpec, PartitionsDef,
    PlanOptions, Resources, RunConfig, asset,
};
use lineage::SqliteStore;
use resources::{LocalObjectStore, ParquetIoManager};
use tokio_util::sync::CancellationToken;

fn output(ctx: &AssetContext, with_table: bool) -> Output {
    if !with_table {
        return Output::none().with_metadata("partition", ctx.partition_key.clone());
    }
    let schema = Arc::new(Schema::new(vec![Field::new("partition", DataType::Utf8, false)]));
    Output::table(
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![ctx.partition_key.clone()]))]).unwrap(),
    )
}

fn chain(with_table: bool) -> Vec<AssetDef> {
    vec![
        asset("usage_snapshot")
            .partitions(PartitionsDef::hourly("2025-01-01"))
            .compute(move |ctx| async move { Ok(output(&ctx, with_table)) }),
        asset("storage_bill")
            .partitions(PartitionsDef::daily("2025-01-01"))
            .dep("usage_snapshot")
            .compute(move |ctx| async move { Ok(output(&ctx, with_table)) }),
    ]
}

async fn measure(name: &str, with_table: bool, from: &str, to: &str, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn lineage::LineageStore> =
        Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    measure_on(name, store, &dir, with_table, from, to, concurrency).await;
}

/// The same on a fresh PostgreSQL database (`ROBO_ASSETS_BENCH_PG_URL`, an admin URL).
async fn measure_pg(name: &str, from: &str, to: &str, concurrency: usize) {
    use sqlx::{Connection, Executor as _};
    let Ok(url) = std::env::var("ROBO_ASSETS_BENCH_PG_URL") else {
        println!("{name:<38} skipped: set ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres");
        return;
    };
    let admin: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    let db = format!("robo_bench_{:08x}", fastrand::u32(..));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
    let store: Arc<dyn lineage::LineageStore> =
        Arc::new(lineage::PgStore::connect_with(admin.clone().database(&db), db.clone()).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    measure_on(name, store, &dir, false, from, to, concurrency).await;
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
}

async fn measure_on(
    name: &str,
    store: Arc<dyn lineage::LineageStore>,
    dir: &tempfile::TempDir,
    with_table: bool,
    from: &str,
    to: &str,
    concurrency: usize,
) {
    let exec = Executor {
        defs: Definitions::new(chain(with_table)).unwrap(),
        store,
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path().join("storage"))))),
        resources: Resources::default(),
        clock: Arc::new(FixedClock(chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap())),
    };
    let graph = exec.defs.graph();
    let ctx = exec.partitions_context(None).await.unwrap();
    let started = Instant::now();
    let selected = engine::selection::resolve(graph, "+storage_bill").unwrap();
    let targets = engine::plan::targets(graph, &selected, &PartitionSpec::Range(from.into(), to.into()), &ctx).unwrap();
    let plan = engine::plan::plan(graph, &targets, &Default::default(), &ctx, PlanOptions::default()).unwrap();
    let planned = started.elapsed();
    let outcome = exec
        .execute(
            &plan,
            &RunConfig { concurrency, ..RunConfig::default() },
            Arc::new(NoObserver),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let total = started.elapsed();
    assert_eq!(outcome.status, lineage::RunStatus::Succeeded);
    let n = plan.steps.len();
    println!(
        "{name:<34} {n:>6} steps  plan {:>8.2?}  total {:>9.2?}  {:>7.3} ms/step  peak RSS {:>6.1} MiB",
        planned,
        total,
        total.as_secs_f64() * 1000.0 / n as f64,
        peak_rss_mib()
    );
}

/// Cost of single lineage-store operations, to see where a step's time goes.
async fn store_ops() {
    use lineage::{EventKind, InputVersion, LineageStore, NewMaterialization, NewRun, RunEvent, RunId};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    let now = chrono::Utc::now();
    let run_id = RunId::new();
    store
        .create_run(&NewRun {
            id: run_id,
            trigger: lineage::Trigger::Manual,
            selection: "x".into(),
            n_steps: 0,
            tags: serde_json::json!({}),
            created_at: now,
            owner: None,
        })
        .await
        .unwrap();
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        let e = RunEvent::step(run_id, now, EventKind::StepStarted, "a", &i.to_string(), "");
        store.record_step_started(&e).await.unwrap();
    }
    let started = t.elapsed() / n;
    let mk = |i: u32, inputs: Vec<InputVersion>| NewMaterialization {
        asset_key: "a".into(),
        partition_key: i.to_string(),
        run_id,
        attempt: 1,
        data_version: "v".into(),
        logical_version: "l".into(),
        code_version: "1".into(),
        inputs,
        inputs_hash: "h".into(),
        storage_uri: None,
        bytes: None,
        row_count: None,
        schema: None,
        metadata: serde_json::json!({}),
        started_at: now,
        finished_at: now,
    };
    let t = Instant::now();
    for i in 0..n {
        store.record_materialization(&mk(i, Vec::new())).await.unwrap();
    }
    let recorded = t.elapsed() / n;
    let inputs: Vec<InputVersion> = (0..24)
        .map(|h| InputVersion {
            asset_key: "u".into(),
            partition_key: h.to_string(),
            materialization_id: Some(1),
            data_version: "v".into(),
        })
        .collect();
    let t = Instant::now();
    for i in n..n + 200 {
        store.record_materialization(&mk(i, inputs.clone())).await.unwrap();
    }
    let recorded24 = t.elapsed() / 200;
    let keys: Vec<(String, String)> = (0..24).map(|i| ("a".to_owned(), i.to_string())).collect();
    let t = Instant::now();
    for _ in 0..200 {
        store.partition_states_of(&keys).await.unwrap();
    }
    let read24 = t.elapsed() / 200;
    let t = Instant::now();
    for _ in 0..2000 {
        let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(store.pool()).await.unwrap();
    }
    let select1 = t.elapsed() / 2000;
    let mut conn = store.pool().acquire().await.unwrap();
    let t = Instant::now();
    for _ in 0..2000 {
        let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await.unwrap();
    }
    let select1_conn = t.elapsed() / 2000;
    println!("store ops: SELECT 1 via pool {select1:.2?}, on one connection {select1_conn:.2?}");
    println!(
        "store ops: step started {started:.2?}, materialization (0 inputs) {recorded:.2?}, (24 inputs) {recorded24:.2?}, 24 state lookups {read24:.2?}"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: run either way.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        store_ops().await;
        measure("31 days, no output, concurrency 4", false, "2025-12-01", "2025-12-31", 4).await;
        measure("31 days, no output, concurrency 8", false, "2025-12-01", "2025-12-31", 8).await;
        measure("31 days, no output, concurrency 16", false, "2025-12-01", "2025-12-31", 16).await;
        measure("31 days, Parquet per step, conc. 4", true, "2025-12-01", "2025-12-31", 4).await;
        measure("365 days, no output, concurrency 16", false, "2025-01-01", "2025-12-31", 16).await;
        measure_pg("31 days, no output, PostgreSQL, conc. 16", "2025-12-01", "2025-12-31", 16).await;
        measure_pg("365 days, no output, PostgreSQL, c. 16", "2025-01-01", "2025-12-31", 16).await;
    });
}
