//! Daemon pass cost with declarative conditions at scale: 100 daily assets × 1,000 partitions
//! under `eager` (one source asset and 99 eager readers), every partition materialized and
//! fresh; then the cost of a pass with nothing new, with one re-materialized source day (99
//! readers evaluated and requested) and with 24 (2,376), and the latency from a pass to the
//! first requested step starting in a worker.
//!
//! `cargo bench --bench daemon` (SQLite). Figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::automation::{Automation, Condition};
use engine::{
    Definitions, Executor, NoObserver, Output, PartitionsDef, Resources, SystemClock, Until, WorkerConfig, asset,
};
use lineage::{InputVersion, LineageStore, NewMaterialization, NewRun, RequestQueue, RunId, SqliteStore};
use resources::{LocalObjectStore, ParquetIoManager};
use tokio_util::sync::CancellationToken;

const READERS: usize = 99;
const DAYS: i64 = 1_000;

fn day(i: i64) -> String {
    (chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Duration::days(i)).format("%Y-%m-%d").to_string()
}

fn materialization(run_id: RunId, asset: &str, key: &str, data: &str, inputs: Vec<InputVersion>) -> NewMaterialization {
    let hash = engine::exec::inputs_hash(&inputs);
    let now = chrono::Utc::now();
    NewMaterialization {
        asset_key: asset.into(),
        partition_key: key.into(),
        run_id,
        attempt: 1,
        data_version: data.into(),
        logical_version: engine::exec::logical_version("1", &hash),
        code_version: "1".into(),
        inputs,
        inputs_hash: hash,
        storage_uri: None,
        bytes: None,
        row_count: None,
        schema: None,
        metadata: serde_json::json!({}),
        started_at: now,
        finished_at: now,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
        let noop = |_ctx: engine::AssetContext| async { Ok(Output::none().with_data_version("x")) };
        let mut defs = vec![asset("source").partitions(PartitionsDef::daily("2023-01-01")).compute(noop)];
        let names: Vec<String> = (1..=READERS).map(|i| format!("reader_{i:02}")).collect();
        for name in &names {
            defs.push(asset(name).partitions(PartitionsDef::daily("2023-01-01")).dep("source").compute(noop));
        }
        let exec = Executor {
            defs: Definitions::new(defs).unwrap(),
            store: store.clone(),
            io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path().join("s"))))),
            resources: Resources::default(),
            clock: Arc::new(SystemClock),
        };
        let automation = Automation {
            conditions: names.iter().map(|n| (n.clone(), Condition::Eager)).collect(),
            ..Automation::default()
        };

        // 100,000 fresh materializations, written directly.
        let started = Instant::now();
        let run_id = RunId::new();
        store
            .create_run(&NewRun { id: run_id, trigger: lineage::Trigger::Manual, selection: "*".into(), n_steps: 0, tags: serde_json::json!({}), created_at: chrono::Utc::now(), owner: None })
            .await
            .unwrap();
        let sources: Vec<NewMaterialization> = (0..DAYS).map(|i| materialization(run_id, "source", &day(i), "v1", vec![])).collect();
        let ids = store.record_materializations(&sources).await.unwrap();
        for name in &names {
            let batch: Vec<NewMaterialization> = (0..DAYS)
                .map(|i| {
                    let input = InputVersion { asset_key: "source".into(), partition_key: day(i), materialization_id: Some(ids[i as usize]), data_version: "v1".into() };
                    materialization(run_id, name, &day(i), "r1", vec![input])
                })
                .collect();
            store.record_materializations(&batch).await.unwrap();
        }
        println!("set-up: {} materializations in {:.2?}", DAYS * (READERS as i64 + 1), started.elapsed());

        // The first pass reads the history (10,000 materializations per pass) until caught up.
        let t = Instant::now();
        let mut passes = 0;
        loop {
            passes += 1;
            let reports = engine::automation::run_once(&exec, &automation, chrono::Utc::now()).await.unwrap();
            if reports.is_empty() {
                break;
            }
            assert!(reports.iter().all(|r| r.requests.is_empty()), "everything is fresh");
        }
        println!("catching up on the history: {passes} passes in {:.2?} (everything fresh, nothing requested)", t.elapsed());

        let new_run = || {
            let store = store.clone();
            async move {
                let id = RunId::new();
                store
                    .create_run(&NewRun { id, trigger: lineage::Trigger::Manual, selection: "source".into(), n_steps: 0, tags: serde_json::json!({}), created_at: chrono::Utc::now(), owner: None })
                    .await
                    .unwrap();
                id
            }
        };
        let pass = |label: &'static str| {
            let (exec, automation) = (&exec, &automation);
            async move {
                let t = Instant::now();
                let reports = engine::automation::run_once(exec, automation, chrono::Utc::now()).await.unwrap();
                let requested: usize = reports.iter().map(|r| r.requests.len()).sum();
                println!("pass, {label:<40} {:>9.2?}  {requested:>5} requested", t.elapsed());
                requested
            }
        };
        for _ in 0..3 {
            pass("nothing new").await;
        }
        // One source day changes: its 99 readers are stale.
        let changed = materialization(new_run().await, "source", &day(DAYS - 1), "v2", vec![]);
        store.record_materializations(&[changed]).await.unwrap();
        assert_eq!(pass("1 source day re-materialized (99 evals)").await, READERS);
        // 24 source days change.
        let run = new_run().await;
        let changed: Vec<NewMaterialization> = (DAYS - 30..DAYS - 6).map(|i| materialization(run, "source", &day(i), "v3", vec![])).collect();
        store.record_materializations(&changed).await.unwrap();
        assert_eq!(pass("24 source days re-materialized (2,376 evals)").await, 24 * READERS);

        // Latency: from the end of a pass to the first requested step starting in a worker.
        let changed = materialization(new_run().await, "source", &day(DAYS - 2), "v4", vec![]);
        store.record_materializations(&[changed]).await.unwrap();
        let cancel = CancellationToken::new();
        let worker = {
            let (exec, cancel) = (exec.clone(), cancel.clone());
            tokio::spawn(async move {
                let config = WorkerConfig { poll: Duration::from_millis(50), ..WorkerConfig::new(8) };
                engine::run_worker(&exec, &config, Until::Canceled, Arc::new(NoObserver), cancel).await.unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = chrono::Utc::now();
        let t = Instant::now();
        let reports = engine::automation::run_once(&exec, &automation, chrono::Utc::now()).await.unwrap();
        let pass_time = t.elapsed();
        let mut first_start = None;
        while first_start.is_none() {
            let requests = store.requests(None, None, None, 500).await.unwrap();
            first_start = requests.iter().filter(|r| r.trigger == lineage::Trigger::Condition && r.created_at >= before).filter_map(|r| r.started_at).min();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let latency = (first_start.unwrap() - before).to_std().unwrap_or_default();
        println!(
            "tick to first step start: {latency:.2?} (the pass itself {pass_time:.2?}, {} requested; worker polls every 50 ms)",
            reports.iter().map(|r| r.requests.len()).sum::<usize>()
        );
        cancel.cancel();
        let _ = worker.await;
    });
}
