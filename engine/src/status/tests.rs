//! The status model on a real SQLite lineage store: each state as the queue and the write path
//! leave it, counts, the overall word, and lateness.

use std::time::Duration;

use chrono::TimeZone;
use lineage::RequestQueue as _;
use lineage::{
    FailedAttempt, InputVersion, NewMaterialization, NewRequest, NewRun, RequestId, RunId, SqliteStore, Trigger,
};
use strum::IntoEnumIterator;

use super::*;
use crate::definition::{AssetDef, Definitions, FreshnessPolicy, Output, asset};
use crate::partition::PartitionsDef;

fn noop(builder: crate::definition::AssetBuilder) -> AssetDef {
    builder.compute(|_ctx| async { Ok(Output::none()) })
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 5, 12, 0, 0).unwrap()
}

/// Daily usage due six hours after each day ends; a daily bill reading it.
fn defs() -> Definitions {
    Definitions::new(vec![
        noop(
            asset("usage")
                .partitions(PartitionsDef::daily("2025-12-01"))
                .freshness(FreshnessPolicy::AfterWindowEnd(Duration::from_secs(6 * 3600))),
        ),
        noop(asset("bill").partitions(PartitionsDef::daily("2025-12-01")).dep("usage")),
    ])
    .unwrap()
}

async fn new_run(store: &dyn LineageStore) -> RunId {
    let id = RunId::new();
    let run = NewRun {
        id,
        trigger: Trigger::Manual,
        selection: "test".into(),
        n_steps: 1,
        tags: serde_json::json!({}),
        created_at: now(),
        owner: None,
    };
    store.create_run(&run).await.unwrap();
    id
}

fn materialization(run: RunId, asset: &str, key: &str, data: &str, inputs: Vec<InputVersion>) -> NewMaterialization {
    NewMaterialization {
        asset_key: asset.into(),
        partition_key: key.into(),
        run_id: run,
        attempt: 1,
        data_version: data.into(),
        logical_version: data.into(),
        code_version: "1".into(),
        inputs_hash: String::new(),
        inputs,
        storage_uri: None,
        bytes: None,
        row_count: None,
        schema: None,
        metadata: serde_json::json!({}),
        started_at: now(),
        finished_at: now(),
    }
}

/// Claims one request of `asset key` as worker `w`: the partition is in progress.
async fn claim(store: &dyn LineageStore, asset: &str, key: &str) -> lineage::ClaimedRequest {
    let run = new_run(store).await;
    let request = NewRequest {
        id: RequestId::new(),
        idempotency_key: format!("{run}:{asset}:{key}"),
        run_id: run,
        asset_key: asset.into(),
        partition_key: key.into(),
        trigger: Trigger::Manual,
        pool: None,
        priority: 0,
        max_attempts: 1,
        run_at: now(),
        created_at: now(),
    };
    store.submit_requests(&[request], &[]).await.unwrap();
    store.claim_requests("w", Some(run), 1, now(), now() + chrono::Duration::hours(1)).await.unwrap().remove(0)
}

fn check(expected: &[(&str, PartitionStatus, Option<&str>)], actual: &AssetStatus) {
    let shown: Vec<(String, PartitionStatus, Option<String>)> = actual
        .partitions
        .iter()
        .map(|p| (p.partition.clone(), p.status, p.late_since.map(|t| t.format("%Y-%m-%d %H:%M").to_string())))
        .collect();
    let expected: Vec<(String, PartitionStatus, Option<String>)> =
        expected.iter().map(|(k, s, late)| ((*k).to_owned(), *s, late.map(str::to_owned))).collect();
    assert_eq!(shown, expected);
}

#[test]
fn each_recorded_state_has_one_word() {
    use AttemptStatus::*;
    use PartitionStatus as S;
    let cases = [
        ((false, None, false), S::Missing),
        ((false, Some(Running), false), S::InProgress),
        ((true, Some(Running), true), S::InProgress),
        ((false, Some(Failed), false), S::Failed),
        ((true, Some(Failed), false), S::Failed),
        ((true, Some(Materialized), false), S::Materialized),
        ((true, Some(Materialized), true), S::Stale),
        ((false, Some(Materialized), false), S::Missing),
    ];
    for ((materialized, attempt, stale), expected) in cases {
        assert_eq!(PartitionStatus::of(materialized, attempt, stale), expected, "{materialized} {attempt:?} {stale}");
    }
    let words: Vec<&str> = PartitionStatus::iter().map(PartitionStatus::as_str).collect();
    assert_eq!(words, ["missing", "materialized", "stale", "failed", "in_progress"]);
    assert_eq!(serde_json::to_value(PartitionStatus::InProgress).unwrap(), "in_progress", "JSON says the same word");
}

#[test]
fn the_overall_word_is_the_most_urgent_state() {
    let counts = |materialized, stale, failed, in_progress, missing| StatusCounts {
        partitions: materialized + failed + in_progress + missing,
        materialized,
        stale,
        failed,
        in_progress,
        missing,
        late: 0,
    };
    assert_eq!(counts(3, 0, 0, 0, 0).overall(), PartitionStatus::Materialized);
    assert_eq!(counts(3, 0, 0, 0, 1).overall(), PartitionStatus::Missing);
    assert_eq!(counts(0, 0, 0, 0, 0).overall(), PartitionStatus::Missing, "no partition yet");
    assert_eq!(counts(3, 1, 0, 0, 1).overall(), PartitionStatus::Stale);
    assert_eq!(counts(3, 1, 0, 1, 1).overall(), PartitionStatus::InProgress);
    assert_eq!(counts(3, 1, 1, 1, 1).overall(), PartitionStatus::Failed);
}

#[tokio::test]
async fn every_state_counted_and_late_ones_name_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    let defs = defs();
    let graph = defs.graph();
    let (usage, bill) = (graph.lookup("usage").unwrap(), graph.lookup("bill").unwrap());
    let run = new_run(&store).await;
    // 12-01 materialized; 12-02 failed; 12-03 running; 12-04 missing; 12-05 has not ended yet.
    let first = store.record_materialization(&materialization(run, "usage", "2025-12-01", "u1", vec![])).await.unwrap();
    let failed = claim(&store, "usage", "2025-12-02").await;
    let attempt = FailedAttempt {
        id: failed.id,
        attempt: failed.attempt,
        error: "graph api 503".into(),
        retry_at: None,
        checks: Vec::new(),
        messages: Vec::new(),
    };
    store.fail_request("w", &attempt, now()).await.unwrap();
    claim(&store, "usage", "2025-12-03").await;
    // The bill of 12-01 read u1; then the hour changes: the bill is stale.
    let read = InputVersion {
        asset_key: "usage".into(),
        partition_key: "2025-12-01".into(),
        materialization_id: Some(first),
        data_version: "u1".into(),
    };
    let mut billed = materialization(run, "bill", "2025-12-01", "b1", vec![read]);
    billed.inputs_hash = "h".into();
    store.record_materialization(&billed).await.unwrap();
    let run2 = new_run(&store).await;
    store.record_materialization(&materialization(run2, "usage", "2025-12-01", "u2", vec![])).await.unwrap();

    let ctx = PartitionsContext::at(now());
    let status = asset_status(&store, graph, usage, None, &ctx).await.unwrap();
    // Due six hours after each day: 12-02 was due 12-03 06:00 and failed; 12-03 was due 12-04
    // 06:00 and still runs; 12-04 was due 12-05 06:00 and nothing ran it; 12-01 was on time.
    check(
        &[
            ("2025-12-01", PartitionStatus::Materialized, None),
            ("2025-12-02", PartitionStatus::Failed, Some("2025-12-03 06:00")),
            ("2025-12-03", PartitionStatus::InProgress, Some("2025-12-04 06:00")),
            ("2025-12-04", PartitionStatus::Missing, Some("2025-12-05 06:00")),
        ],
        &status,
    );
    assert_eq!(
        status.counts,
        StatusCounts { partitions: 4, materialized: 1, stale: 0, failed: 1, in_progress: 1, missing: 1, late: 3 }
    );
    assert_eq!(status.counts.overall(), PartitionStatus::Failed);

    let keys = ["2025-12-01".to_owned(), "2025-12-02".to_owned()];
    let status = asset_status(&store, graph, bill, Some(&keys), &ctx).await.unwrap();
    check(&[("2025-12-01", PartitionStatus::Stale, None), ("2025-12-02", PartitionStatus::Missing, None)], &status);
    assert_eq!(status.partitions[0].stale_causes, [StaleCause::Inputs { changed: 1 }]);
    assert_eq!(
        (status.counts.materialized, status.counts.stale, status.counts.overall()),
        (1, 1, PartitionStatus::Stale)
    );
}

#[tokio::test]
async fn the_whole_asset_is_late_only_from_its_first_attempted_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    let defs = defs();
    let graph = defs.graph();
    let usage = graph.lookup("usage").unwrap();
    let ctx = PartitionsContext::at(now());
    // Never run: missing, but nothing is news yet; asked about a day, that day is judged.
    let status = asset_status(&store, graph, usage, None, &ctx).await.unwrap();
    assert_eq!((status.counts.missing, status.counts.late), (4, 0));
    let day = ["2025-12-02".to_owned()];
    let asked = asset_status(&store, graph, usage, Some(&day), &ctx).await.unwrap();
    assert_eq!(asked.counts.late, 1);
    // First run on 12-03: the days before it are history, 12-04 is late.
    let run = new_run(&store).await;
    store.record_materialization(&materialization(run, "usage", "2025-12-03", "u", vec![])).await.unwrap();
    let status = asset_status(&store, graph, usage, None, &ctx).await.unwrap();
    check(
        &[
            ("2025-12-01", PartitionStatus::Missing, None),
            ("2025-12-02", PartitionStatus::Missing, None),
            ("2025-12-03", PartitionStatus::Materialized, None),
            ("2025-12-04", PartitionStatus::Missing, Some("2025-12-05 06:00")),
        ],
        &status,
    );
    assert_eq!(status.counts.late, 1);
}

/// Hours due six hours after each ends; another asset of hours under a maximum lag.
fn hourly_defs() -> Definitions {
    Definitions::new(vec![
        noop(
            asset("hours")
                .partitions(PartitionsDef::hourly("2025-12-01"))
                .freshness(FreshnessPolicy::AfterWindowEnd(Duration::from_secs(6 * 3600))),
        ),
        noop(
            asset("lagged")
                .partitions(PartitionsDef::hourly("2025-12-01"))
                .freshness(FreshnessPolicy::MaxLag(Duration::from_secs(3600))),
        ),
        noop(asset("alternating").partitions(PartitionsDef::hourly("2025-12-01"))),
    ])
    .unwrap()
}

/// The summary of `asset` read as ranges agrees with the one of every partition's report
/// (counts, runs, each position's status and key); returns whether the ranges stood for their
/// partitions (the ranged path was taken).
async fn check_summary(store: &dyn LineageStore, defs: &Definitions, asset: &str) -> bool {
    let graph = defs.graph();
    let id = graph.lookup(asset).unwrap();
    let ctx = PartitionsContext::at(now());
    let per_partition = AssetSummary::of_status(&asset_status(store, graph, id, None, &ctx).await.unwrap());
    let summary = asset_summary(store, graph, id, &ctx).await.unwrap();
    assert_eq!(summary.counts, per_partition.counts, "{asset}");
    assert_eq!(summary.runs, per_partition.runs, "{asset}");
    let n = summary.counts.partitions;
    assert_eq!(summary.statuses(0..n), per_partition.statuses(0..n));
    assert_eq!(summary.statuses(n - 48..n), per_partition.statuses(n - 48..n));
    for i in [0, 1, n / 2, n - 1, n] {
        assert_eq!(summary.key_at(i), per_partition.key_at(i), "{asset} key {i}");
    }
    let def = graph.asset(id);
    let tw = def.partitions.as_ref().and_then(PartitionsDef::as_time_window).unwrap();
    let runs = store
        .partition_runs(asset, &def.code_version, no_upstream_keys_hash(graph, id).as_deref(), 1000)
        .await
        .unwrap();
    summary_of_runs(graph, id, tw, &runs, None, &ctx).is_some()
}

#[tokio::test]
async fn ranged_and_per_partition_summaries_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    let defs = hourly_defs();
    let hour = |i: i64| PartitionsDef::hourly("2025-12-01").as_time_window().unwrap().key(i);
    let run = new_run(&store).await;
    // 108 hours up to 2025-12-05 12:00. Never run before hour 10 (history, not late); then
    // materialized, failed (20), a gap (25), stale by code (26-28), running (29), and missing
    // from 100 on (100 is past its deadline, the rest are not yet).
    let mut batch = Vec::new();
    for i in (10..20).chain(21..25).chain(26..29).chain(30..100) {
        let mut m = materialization(run, "hours", &hour(i), "v", vec![]);
        if (26..29).contains(&i) {
            m.code_version = "0".into();
        }
        batch.push(m);
    }
    store.record_materializations(&batch).await.unwrap();
    let failed = claim(&store, "hours", &hour(20)).await;
    let attempt = FailedAttempt {
        id: failed.id,
        attempt: failed.attempt,
        error: "boom".into(),
        retry_at: None,
        checks: Vec::new(),
        messages: Vec::new(),
    };
    store.fail_request("w", &attempt, now()).await.unwrap();
    claim(&store, "hours", &hour(29)).await;
    assert!(check_summary(&store, &defs, "hours").await, "read as ranges");
    let graph = defs.graph();
    let summary =
        asset_summary(&store, graph, graph.lookup("hours").unwrap(), &PartitionsContext::at(now())).await.unwrap();
    let shown: Vec<(String, PartitionStatus, usize, usize)> =
        summary.runs.iter().map(|r| (r.first.clone(), r.status, r.count, r.late)).collect();
    let run_of = |first: i64, status, count, late| (hour(first), status, count, late);
    use PartitionStatus as S;
    assert_eq!(
        shown,
        [
            run_of(0, S::Missing, 10, 0),
            run_of(10, S::Materialized, 10, 0),
            run_of(20, S::Failed, 1, 1),
            run_of(21, S::Materialized, 4, 0),
            run_of(25, S::Missing, 1, 1),
            run_of(26, S::Stale, 3, 0),
            run_of(29, S::InProgress, 1, 1),
            run_of(30, S::Materialized, 70, 0),
            run_of(100, S::Missing, 1, 1),
            run_of(101, S::Missing, 7, 0),
        ]
    );

    // A partition the store never saw inside a run of one class: only the keys can say where,
    // so the summary comes from every partition's report, and still agrees.
    store.wipe("hours", Some(&[hour(50)]), now()).await.unwrap();
    assert!(!check_summary(&store, &defs, "hours").await, "a gap inside a run falls back");

    // Under a maximum lag, only the latest partition can be late.
    let lagged: Vec<NewMaterialization> =
        (0..107).map(|i| materialization(run, "lagged", &hour(i), "v", vec![])).collect();
    store.record_materializations(&lagged).await.unwrap();
    assert!(check_summary(&store, &defs, "lagged").await);
    store.record_materialization(&materialization(run, "lagged", &hour(107), "v", vec![])).await.unwrap();
    assert!(check_summary(&store, &defs, "lagged").await);

    // More runs than one per 16 partitions (and 64): rows are cheaper, and agree.
    let alternating: Vec<NewMaterialization> = (0..108)
        .map(|i| {
            let mut m = materialization(run, "alternating", &hour(i), "v", vec![]);
            m.code_version = if i % 2 == 0 { "1" } else { "0" }.into();
            m
        })
        .collect();
    store.record_materializations(&alternating).await.unwrap();
    check_summary(&store, &defs, "alternating").await;
}
