//! The executor against the real SQLite lineage store and Parquet files: retries, failures,
//! cancellation and bounded concurrency, with test assets whose behaviour we choose.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::TimeZone;
use engine::{
    AssetContext, AssetDef, AssetError, Definitions, Executor, FixedClock, NoObserver, Output, PartitionSpec,
    PartitionsDef, PlanOptions, Resources, RetryPolicy, RunConfig, StepStatus, asset,
};
use lineage::{EventKind, LineageStore, RequestQueue as _, RunStatus, SqliteStore};
use resources::{LocalObjectStore, ParquetIoManager};
use tokio_util::sync::CancellationToken;

struct Harness {
    _dir: tempfile::TempDir,
    exec: Executor,
    store: Arc<SqliteStore>,
}

async fn harness(assets: Vec<AssetDef>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let exec = Executor {
        defs: Definitions::new(assets).unwrap(),
        store: store.clone(),
        io: Arc::new(ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path().join("storage"))))),
        resources: Resources::default(),
        clock: Arc::new(FixedClock(chrono::Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap())),
    };
    Harness { _dir: dir, exec, store }
}

impl Harness {
    fn plan(&self, selection: &str, spec: PartitionSpec) -> engine::Plan {
        let graph = self.exec.defs.graph();
        let ctx = engine::PartitionsContext::at(self.exec.clock.now()); // no dynamic partitions here
        let selected = engine::selection::resolve(graph, selection).unwrap();
        let targets = engine::plan::targets(graph, &selected, &spec, &ctx).unwrap();
        engine::plan::plan(graph, &targets, &Default::default(), &ctx, PlanOptions { with_upstream: true }).unwrap()
    }

    async fn run(&self, plan: &engine::Plan, concurrency: usize, cancel: CancellationToken) -> engine::RunOutcome {
        let config = RunConfig { concurrency, ..RunConfig::default() };
        self.exec.execute(plan, &config, Arc::new(NoObserver), cancel).await.unwrap()
    }

    /// Submits `plan` as one run of `selection`, as a worker process would find it queued; its run
    /// and its first request.
    async fn submit(&self, plan: &engine::Plan, selection: &str) -> (lineage::RunId, lineage::RequestId) {
        let run = lineage::RunId::new();
        let now = self.exec.clock.now();
        let new_run = lineage::NewRun {
            id: run,
            trigger: lineage::Trigger::Manual,
            selection: selection.into(),
            n_steps: plan.steps.len() as i64,
            tags: serde_json::json!({}),
            created_at: now,
            owner: None,
        };
        self.store.create_run(&new_run).await.unwrap();
        let (requests, edges) =
            engine::exec::plan_requests(&self.exec.defs, plan, run, "lease-test", lineage::Trigger::Manual, now);
        (run, self.store.submit_requests(&requests, &edges).await.unwrap()[0].id)
    }

    /// Waits (30 s at most) until request `id` is as `ok` wants it.
    async fn wait_for(
        &self,
        id: lineage::RequestId,
        what: &str,
        ok: fn(&lineage::RequestRecord) -> bool,
    ) -> lineage::RequestRecord {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.store.request(id).await.unwrap().unwrap();
            if ok(&r) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "never {what}: {r:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.store.pool()).await.unwrap()
    }
}

/// A one-row table holding the partition key.
fn table(ctx: &AssetContext) -> Output {
    let schema = Arc::new(Schema::new(vec![Field::new("partition", DataType::Utf8, false)]));
    Output::table(
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![ctx.partition_key.clone()]))]).unwrap(),
    )
}

fn key(spec: &str) -> PartitionSpec {
    PartitionSpec::Key(spec.to_owned())
}

#[tokio::test]
async fn a_flaky_asset_is_retried_until_it_succeeds() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let h = harness(vec![
        asset("flaky")
            .partitions(PartitionsDef::daily("2025-01-01"))
            .retry(RetryPolicy::exponential(3, Duration::from_millis(1)))
            .compute(move |ctx| {
                let counter = counter.clone();
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err::<Output, AssetError>("graph api returned 503".into());
                    }
                    Ok(table(&ctx))
                }
            }),
    ])
    .await;
    let outcome = h.run(&h.plan("flaky", key("2025-12-15")), 4, CancellationToken::new()).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(matches!(outcome.steps[0].status, StepStatus::Succeeded { attempt: 3, .. }), "{:?}", outcome.steps[0]);
    let events = h.store.run_events(outcome.run_id).await.unwrap();
    let retries: Vec<_> = events.iter().filter(|e| e.kind == EventKind::StepRetried).collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0].message, "graph api returned 503");
    assert_eq!(retries[1].body["attempt"], 2);
    assert_eq!(h.count("SELECT attempt FROM materializations").await, 3);
}

#[tokio::test]
async fn a_failed_hour_skips_its_day_and_nothing_else() {
    let h = harness(vec![
        asset("usage")
            .partitions(PartitionsDef::hourly("2025-01-01"))
            .retry(RetryPolicy::exponential(2, Duration::from_millis(1)))
            .compute(|ctx| async move {
                if ctx.partition_key == "2025-12-15T03:00" {
                    return Err::<Output, AssetError>("disk quota exceeded".into());
                }
                Ok(table(&ctx))
            }),
        asset("bill")
            .partitions(PartitionsDef::daily("2025-01-01"))
            .dep("usage")
            .compute(|ctx| async move { Ok(table(&ctx)) }),
    ])
    .await;
    let plan = h.plan("bill", PartitionSpec::Range("2025-12-14".into(), "2025-12-15".into()));
    assert_eq!(plan.steps.len(), 50);
    let outcome = h.run(&plan, 4, CancellationToken::new()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let by_status = |f: fn(&StepStatus) -> bool| outcome.steps.iter().filter(|s| f(&s.status)).count();
    assert_eq!(by_status(|s| matches!(s, StepStatus::Succeeded { .. })), 48, "47 hours and the 14th's bill");
    assert_eq!(by_status(|s| matches!(s, StepStatus::Failed { attempts: 2, .. })), 1);
    let skipped: Vec<_> = outcome.steps.iter().filter(|s| matches!(s.status, StepStatus::Skipped { .. })).collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!((skipped[0].asset.as_str(), skipped[0].partition_key.as_str()), ("bill", "2025-12-15"));
    assert!(
        matches!(&skipped[0].status, StepStatus::Skipped { reason } if reason == "upstream step usage 2025-12-15T03:00 failed")
    );

    let failed = h
        .store
        .partition_states("usage")
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.partition_key == "2025-12-15T03:00")
        .unwrap();
    assert_eq!(failed.last_attempt_status, lineage::AttemptStatus::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("disk quota exceeded"));
    assert!(h.store.partition_states("bill").await.unwrap().iter().all(|s| s.partition_key == "2025-12-14"));
    assert_eq!(h.store.run(outcome.run_id).await.unwrap().unwrap().status, RunStatus::Failed);
}

#[tokio::test]
async fn cancel_stops_the_run_and_records_nothing_half_written() {
    let h = harness(vec![asset("usage").partitions(PartitionsDef::hourly("2025-01-01")).compute(|ctx| async move {
        // Hours after 05:00 hang until canceled: they are running when the cancel comes.
        if ctx.partition_key.as_str() > "2025-12-15T05:00" {
            ctx.cancel.cancelled().await;
            return Err::<Output, AssetError>("interrupted".into());
        }
        Ok(table(&ctx))
    })])
    .await;
    let plan = h.plan("usage", PartitionSpec::Range("2025-12-15T00:00".into(), "2025-12-15T23:00".into()));
    let cancel = CancellationToken::new();
    let run = {
        let (h_exec, plan, cancel) = (h.exec.clone(), plan.clone(), cancel.clone());
        tokio::spawn(async move {
            h_exec
                .execute(&plan, &RunConfig { concurrency: 3, ..RunConfig::default() }, Arc::new(NoObserver), cancel)
                .await
        })
    };
    // Wait until the six quick hours are recorded and three slow ones are running.
    for _ in 0..500 {
        if h.count("SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running'").await == 3
            && h.count("SELECT count(*) FROM materializations").await == 6
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.status, RunStatus::Canceled);
    assert_eq!(outcome.steps.iter().filter(|s| matches!(s.status, StepStatus::Succeeded { .. })).count(), 6);
    assert_eq!(outcome.steps.iter().filter(|s| s.status == StepStatus::Canceled).count(), 18);
    assert_eq!(h.count("SELECT count(*) FROM materializations").await, 6);
    assert_eq!(
        h.count("SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running'").await,
        0,
        "no partition is left 'running'"
    );
    assert_eq!(h.count("SELECT count(*) FROM asset_partitions").await, 6);
    let run = h.store.run(outcome.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Canceled);
    assert!(run.finished_at.is_some());
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let gauge = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gauge.clone(), peak.clone());
    let h = harness(vec![asset("usage").partitions(PartitionsDef::hourly("2025-01-01")).compute(move |ctx| {
        let (g, p) = (g.clone(), p.clone());
        async move {
            let now = g.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
            g.fetch_sub(1, Ordering::SeqCst);
            Ok(table(&ctx))
        }
    })])
    .await;
    let plan = h.plan("usage", PartitionSpec::Range("2025-12-15T00:00".into(), "2025-12-15T23:00".into()));
    let outcome = h.run(&plan, 3, CancellationToken::new()).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak concurrency {peak} with --concurrency 3");
}

#[tokio::test]
async fn a_panicking_asset_fails_its_step_not_the_run() {
    let h = harness(vec![asset("usage").partitions(PartitionsDef::hourly("2025-01-01")).compute(|ctx| async move {
        if ctx.partition_key == "2025-12-15T01:00" {
            panic!("bug in asset code");
        }
        Ok(table(&ctx))
    })])
    .await;
    let plan = h.plan("usage", PartitionSpec::Range("2025-12-15T00:00".into(), "2025-12-15T02:00".into()));
    let outcome = h.run(&plan, 2, CancellationToken::new()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        matches!(&outcome.steps[1].status, StepStatus::Failed { error, .. } if error.contains("panicked")),
        "{:?}",
        outcome.steps[1]
    );
    assert_eq!(h.count("SELECT count(*) FROM materializations").await, 2);
}

#[tokio::test]
async fn a_failed_error_check_blocks_downstream_and_a_failed_warn_check_does_not() {
    use engine::Severity;
    let assets = vec![
        asset("ledger").partitions(PartitionsDef::daily("2025-01-01")).compute(|ctx| async move {
            let bad_day = ctx.partition_key == "2025-12-02";
            Ok(table(&ctx)
                .with_check("sums_match", Severity::Error, !bad_day, if bad_day { "off by 5" } else { "ok" })
                .with_check("looks_recent", Severity::Warn, false, "last entry is 3 days old"))
        }),
        asset("report")
            .partitions(PartitionsDef::daily("2025-01-01"))
            .dep("ledger")
            .compute(|ctx| async move { Ok(table(&ctx)) }),
    ];
    let h = harness(assets).await;
    let plan = h.plan("ledger+", PartitionSpec::Range("2025-12-01".into(), "2025-12-02".into()));
    let outcome = h.run(&plan, 2, CancellationToken::new()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let status_of = |asset: &str, key: &str| {
        outcome.steps.iter().find(|s| s.asset.as_str() == asset && s.partition_key == key).unwrap().status.clone()
    };
    assert!(
        matches!(status_of("ledger", "2025-12-01"), StepStatus::Succeeded { .. }),
        "a failed warn check does not fail"
    );
    assert!(matches!(status_of("report", "2025-12-01"), StepStatus::Succeeded { .. }));
    match status_of("ledger", "2025-12-02") {
        StepStatus::Failed { error, .. } => assert_eq!(error, "asset check failed: sums_match: off by 5"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(status_of("report", "2025-12-02"), StepStatus::Skipped { .. }), "nothing reads the bad day");
    // Every verdict is stored, and the bad day's data was never written.
    let results = h.store.check_results("ledger", Some("2025-12-02"), None, 10).await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().any(|r| r.check_name == "sums_match"
        && !r.passed
        && r.severity == lineage::Severity::Error
        && r.message == "off by 5"));
    assert_eq!(h.count("SELECT count(*) FROM materializations WHERE partition_key = '2025-12-02'").await, 0);
    assert!(!h._dir.path().join("storage/ledger/2025-12-02.parquet").exists());
}

/// A queue clock the test moves by hand: leases expire when the test says so, not after a wait.
struct ManualClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl engine::Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

/// `worker-a`, concurrency 2, with an hour-long lease on a hand-moved queue clock: no heartbeat
/// happens while a test runs, and its lease runs out when the test moves the clock.
fn worker_a_on_a_hand_moved_clock() -> (Arc<ManualClock>, engine::WorkerConfig) {
    let clock = Arc::new(ManualClock(std::sync::Mutex::new(chrono::Utc::now())));
    let config = engine::WorkerConfig {
        id: "worker-a".to_owned(),
        lease: Duration::from_secs(3600),
        poll: Duration::from_millis(10),
        queue_clock: clock.clone(),
        ..engine::WorkerConfig::new(2)
    };
    (clock, config)
}

/// The asset the lease tests run: daily, two attempts (the step that outlives its lease, and
/// its retry).
fn slow_daily_with_one_retry() -> engine::AssetBuilder {
    asset("slow")
        .partitions(PartitionsDef::daily("2025-12-01"))
        .retry(RetryPolicy { max_attempts: 2, ..RetryPolicy::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_hangs_past_its_lease_loses_the_step_to_another_worker_and_records_nothing() {
    // The first attempt hangs until the test lets it go; the second returns at once.
    let gate = CancellationToken::new();
    let hang = gate.clone();
    let h = harness(vec![slow_daily_with_one_retry().compute(move |ctx: AssetContext| {
        let hang = hang.clone();
        async move {
            if ctx.attempt == 1 {
                hang.cancelled().await;
            }
            Ok(table(&ctx))
        }
    })])
    .await;
    let plan = h.plan("slow", key("2025-12-15"));
    let (run, id) = h.submit(&plan, "slow").await;

    // Both workers stamp leases with the same hand-moved clock; an hour-long lease means no
    // heartbeat (every 20 minutes) happens while the test runs.
    let clock = Arc::new(ManualClock(std::sync::Mutex::new(chrono::Utc::now())));
    let worker = |name: &str| engine::WorkerConfig {
        id: name.to_owned(),
        lease: Duration::from_secs(3600),
        poll: Duration::from_millis(10),
        queue_clock: clock.clone(),
        ..engine::WorkerConfig::new(1)
    };
    let spawn = |config: engine::WorkerConfig, until: engine::Until, cancel: CancellationToken| {
        let exec = h.exec.clone();
        tokio::spawn(async move { engine::run_worker(&exec, &config, until, Arc::new(NoObserver), cancel).await })
    };
    let wait_for = |what: &'static str, ok: fn(&lineage::RequestRecord) -> bool| h.wait_for(id, what, ok);

    // A drains this run only, so it ends by itself once the run has ended and it holds nothing.
    let stop_b = CancellationToken::new();
    let a = spawn(worker("worker-a"), engine::Until::RunEnded(run), CancellationToken::new());
    wait_for("claimed by A", |r| r.lease_owner.as_deref() == Some("worker-a")).await;

    // A hangs past its lease: B's reaper takes the request back, and B runs it as attempt 2.
    clock.advance(chrono::Duration::hours(2));
    let b = spawn(worker("worker-b"), engine::Until::Canceled, stop_b.clone());
    let reaped = wait_for("reaped", |r| r.state == lineage::RequestState::Available).await;
    assert_eq!(reaped.last_error.as_deref(), Some("lease expired (worker worker-a)"));
    clock.advance(chrono::Duration::minutes(10)); // past the retry's backoff
    let done = wait_for("completed by B", |r| r.state == lineage::RequestState::Succeeded).await;
    assert_eq!(done.attempt, 2);

    // A's step finally returns: its completion is fenced off and records nothing.
    gate.cancel();
    let a = a.await.unwrap().unwrap();
    stop_b.cancel();
    let b = b.await.unwrap().unwrap();
    assert_eq!((a.completed, a.lease_lost), (0, 1), "A's late result was discarded");
    assert_eq!(b.completed, 1);
    assert_eq!(h.count("SELECT count(*) FROM materializations").await, 1, "materialized exactly once");
    assert_eq!(h.count("SELECT attempt FROM materializations").await, 2, "by the second attempt");
    assert_eq!(h.store.run(run).await.unwrap().unwrap().status, RunStatus::Succeeded);
}

/// A step that outlived its lease, whose retry this same worker then claimed: the worker holds
/// one request twice. The old attempt is stopped and fenced off, and the retry is what gets
/// recorded (the worker once keyed what it held by request, so one of the two panicked it, after
/// recording the old attempt's result as the retry's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_claims_the_retry_of_its_own_expired_step_records_the_retry_only() {
    // Each attempt waits for its own gate (the first ignores cancellation, as blocking code would).
    let gates = [CancellationToken::new(), CancellationToken::new()];
    let wait = gates.clone();
    // Set when attempt 1's compute is over: returned, or dropped by its canceled step.
    struct Over(Arc<AtomicBool>);
    impl Drop for Over {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let first_over = Arc::new(AtomicBool::new(false));
    let over = first_over.clone();
    let h = harness(vec![slow_daily_with_one_retry().compute(move |ctx: AssetContext| {
        let gate = wait[(ctx.attempt as usize - 1).min(1)].clone();
        let over = (ctx.attempt == 1).then(|| Over(over.clone()));
        async move {
            let _over = over;
            gate.cancelled().await;
            Ok(table(&ctx).with_metadata("computed_by_attempt", ctx.attempt))
        }
    })])
    .await;
    let plan = h.plan("slow", key("2025-12-15"));
    let (run, id) = h.submit(&plan, "slow").await;

    let (clock, config) = worker_a_on_a_hand_moved_clock();
    let exec = h.exec.clone();
    let a = tokio::spawn(async move {
        engine::run_worker(&exec, &config, engine::Until::RunEnded(run), Arc::new(NoObserver), CancellationToken::new())
            .await
    });
    let wait_for = |what: &'static str, ok: fn(&lineage::RequestRecord) -> bool| h.wait_for(id, what, ok);
    wait_for("claimed", |r| r.lease_owner.as_deref() == Some("worker-a")).await;

    // The lease runs out while attempt 1 hangs; another worker's reaper takes the request back,
    // and once its backoff passed, the same worker claims the retry.
    clock.advance(chrono::Duration::hours(2));
    let reaped = h.store.reap_expired(engine::Clock::now(&*clock), &|_| Duration::from_secs(60)).await.unwrap();
    assert_eq!(reaped.requests.len(), 1);
    clock.advance(chrono::Duration::minutes(10));
    wait_for("claimed again", |r| r.attempt == 2 && r.lease_owner.as_deref() == Some("worker-a")).await;

    // Attempt 1 is over before attempt 2 returns.
    gates[0].cancel();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !first_over.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "attempt 1 never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gates[1].cancel();
    let stats = tokio::time::timeout(Duration::from_secs(30), a).await.unwrap().unwrap().unwrap();
    let counted = (stats.completed, stats.lease_lost, stats.failed, stats.canceled);
    assert_eq!(counted, (1, 1, 0, 0), "the old attempt counts as a lost lease: {stats:?}");
    assert_eq!(h.count("SELECT count(*) FROM materializations").await, 1, "materialized exactly once");
    let recorded = h.store.history("slow", Some("2025-12-15"), None, 1).await.unwrap().remove(0);
    assert_eq!((recorded.attempt, &recorded.metadata["computed_by_attempt"]), (2, &serde_json::json!(2)));
    assert_eq!(h.store.run(run).await.unwrap().unwrap().status, RunStatus::Succeeded);
}

/// Attempts start again when a request is reopened (`backfill retry`): a step that outlived its
/// lease, failed by the reaper, and the same worker's claim of the reopened request are both
/// attempt 1 of worker-a. The old step's result is dropped by the worker (the store's fence
/// could not tell the two apart), and the new claim's is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drops_the_result_of_a_step_whose_reopened_request_it_claimed_again() {
    // Each call waits for its own gate (the first ignores cancellation, as blocking code would).
    let gates = [CancellationToken::new(), CancellationToken::new()];
    let wait = gates.clone();
    let calls = Arc::new(AtomicU32::new(0));
    let h = harness(vec![
        asset("slow")
            .partitions(PartitionsDef::daily("2025-12-01"))
            .retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
            .compute(move |ctx: AssetContext| {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let gate = wait[(call as usize - 1).min(1)].clone();
                async move {
                    gate.cancelled().await;
                    Ok(table(&ctx).with_metadata("call", call).with_metadata("attempt", ctx.attempt))
                }
            }),
    ])
    .await;
    let plan = h.plan("slow", key("2025-12-15"));
    let (run, id) = h.submit(&plan, "slow").await;
    let (clock, config) = worker_a_on_a_hand_moved_clock();
    let exec = h.exec.clone();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let a = tokio::spawn(async move {
        engine::run_worker(&exec, &config, engine::Until::Canceled, Arc::new(NoObserver), stopped).await
    });
    let wait_for = |what: &'static str, ok: fn(&lineage::RequestRecord) -> bool| h.wait_for(id, what, ok);
    wait_for("claimed", |r| r.lease_owner.as_deref() == Some("worker-a")).await;

    // The lease runs out while call 1 hangs; the reaper fails its only attempt, and the request
    // is reopened: the same worker claims it again, as attempt 1.
    clock.advance(chrono::Duration::hours(2));
    let now = engine::Clock::now(&*clock);
    h.store.reap_expired(now, &|_| Duration::from_secs(60)).await.unwrap();
    wait_for("failed by the reaper", |r| r.state == lineage::RequestState::Failed).await;
    assert_eq!(h.store.reopen_requests(run, &[lineage::RequestState::Failed], now).await.unwrap(), 1);
    wait_for("claimed again", |r| {
        r.state == lineage::RequestState::Running && r.attempt == 1 && r.lease_owner.as_deref() == Some("worker-a")
    })
    .await;

    // Call 1 returns first, then call 2.
    gates[0].cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gates[1].cancel();
    wait_for("succeeded", |r| r.state == lineage::RequestState::Succeeded).await;
    stop.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(30), a).await.unwrap().unwrap().unwrap();
    assert_eq!((stats.completed, stats.lease_lost), (1, 1), "call 1 counts as a lost lease: {stats:?}");
    assert_eq!(h.count("SELECT count(*) FROM materializations").await, 1, "materialized exactly once");
    let recorded = h.store.history("slow", Some("2025-12-15"), None, 1).await.unwrap().remove(0);
    assert_eq!(recorded.metadata["call"], serde_json::json!(2), "the new claim's result: {:?}", recorded.metadata);
    assert_eq!(h.store.run(run).await.unwrap().unwrap().status, RunStatus::Succeeded);
}

/// An incremental asset reads where its previous materialization left off (a cursor in its
/// metadata); a failed attempt records nothing, so the next one starts from the same cursor.
#[tokio::test]
async fn an_incremental_asset_reads_its_previous_materialization_and_a_failure_keeps_it() {
    let fail_next = Arc::new(AtomicU32::new(0));
    let fail = fail_next.clone();
    let h = harness(vec![asset("feed").compute(move |ctx| {
        let fail = fail.clone();
        async move {
            let cursor = match ctx.previous().await? {
                Some(m) => m.metadata["cursor"].as_i64().ok_or("the previous materialization has a cursor")?,
                None => 0,
            };
            if fail.swap(0, Ordering::SeqCst) == 1 {
                return Err(format!("failed after reading cursor {cursor}").into());
            }
            Ok(table(&ctx).with_metadata("read_from", cursor).with_metadata("cursor", cursor + 10))
        }
    })])
    .await;
    let plan = h.plan("feed", PartitionSpec::None);
    let metadata = |h: &Harness| {
        let h = h.store.clone();
        async move { h.history("feed", Some(""), None, 1).await.unwrap().remove(0).metadata }
    };
    assert_eq!(h.run(&plan, 1, CancellationToken::new()).await.status, RunStatus::Succeeded);
    assert_eq!(metadata(&h).await, serde_json::json!({"read_from": 0, "cursor": 10}));
    assert_eq!(h.run(&plan, 1, CancellationToken::new()).await.status, RunStatus::Succeeded);
    assert_eq!(metadata(&h).await, serde_json::json!({"read_from": 10, "cursor": 20}));
    fail_next.store(1, Ordering::SeqCst);
    let failed = h.run(&plan, 1, CancellationToken::new()).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(h.run(&plan, 1, CancellationToken::new()).await.status, RunStatus::Succeeded);
    assert_eq!(metadata(&h).await, serde_json::json!({"read_from": 20, "cursor": 30}), "the failure moved nothing");
}

/// An error retrying cannot fix fails the step at its first attempt, whatever the retry policy.
#[tokio::test]
async fn a_not_retryable_error_fails_at_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let h = harness(vec![asset("revoked").retry(RetryPolicy::exponential(3, Duration::from_millis(1))).compute(
        move |_ctx| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Err::<Output, AssetError>(Box::new(engine::NotRetryable("the token was revoked: reconnect".into())))
            }
        },
    )])
    .await;
    let outcome = h.run(&h.plan("revoked", PartitionSpec::None), 1, CancellationToken::new()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one attempt");
    match &outcome.steps[0].status {
        StepStatus::Failed { error, attempts } => {
            assert_eq!(*attempts, 1);
            assert!(error.contains("reconnect"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}
