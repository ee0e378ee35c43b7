//! Orchestration overhead per step, measured on the real executor, SQLite lineage store and
//! local object store, with trivial compute.
//!
//! `cargo bench --bench overhead` runs: a 31-day range of the billing chain's shape (744 hourly +
//! 31 daily steps) with no output (pure orchestration: plan, record started, gather the exact
//! input versions, record the materialization) and with a one-row Parquet output per step (adds
//! encoding, blake3, write + fsync + rename); then a full year (8,760 + 365 steps) without output.
//! Figures go to BENCHMARKS.md.

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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn measure(name: &str, with_table: bool, from: &str, to: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let exec = Executor {
        defs: Definitions::new(chain(with_table)).unwrap(),
        store,
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path().join("storage"))))),
        resources: Resources::default(),
        clock: Arc::new(FixedClock(chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap())),
        dynamic: Default::default(),
    };
    let graph = exec.defs.graph();
    let ctx = exec.partitions_context();
    let started = Instant::now();
    let selected = engine::selection::resolve(graph, "+storage_bill").unwrap();
    let targets = engine::plan::targets(graph, &selected, &PartitionSpec::Range(from.into(), to.into()), &ctx).unwrap();
    let plan = engine::plan::plan(graph, &targets, &Default::default(), &ctx, PlanOptions::default()).unwrap();
    let planned = started.elapsed();
    let outcome =
        exec.execute(&plan, &RunConfig::default(), Arc::new(NoObserver), CancellationToken::new()).await.unwrap();
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

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: run either way.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        measure("31 days, no output", false, "2025-12-01", "2025-12-31").await;
        measure("31 days, one-row Parquet per step", true, "2025-12-01", "2025-12-31").await;
        measure("365 days, no output", false, "2025-01-01", "2025-12-31").await;
    });
}
