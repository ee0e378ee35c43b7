//! Staleness on a real SQLite lineage store: materializations are recorded the way the worker
//! records them (inputs gathered from the current states through the mappings), then read back
//! through [`stale_causes`] and [`root_causes`].

use std::collections::HashMap;

use chrono::TimeZone;
use lineage::{InputVersion, NewMaterialization, NewRun, RunId, SqliteStore};
use proptest::prelude::*;

use super::*;
use crate::definition::{AssetDef, Definitions, Output, asset};
use crate::mapping::PartitionMapping;
use crate::partition::PartitionsDef;

fn noop(builder: crate::definition::AssetBuilder) -> AssetDef {
    builder.compute(|_ctx| async { Ok(Output::none()) })
}

fn ctx() -> PartitionsContext {
    PartitionsContext::at(Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap())
}

/// hourly usage → daily bill → monthly allocation over the month's bills.
fn billing(bill_code: &str) -> Definitions {
    Definitions::new(vec![
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(asset("bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage").code_version(bill_code)),
        noop(
            asset("allocation")
                .partitions(PartitionsDef::monthly("2025-01-01"))
                .dep_mapped("bill", PartitionMapping::time_window(0, 0)),
        ),
    ])
    .unwrap()
}

pub(crate) struct Store {
    pub(crate) store: SqliteStore,
    _dir: tempfile::TempDir,
}

pub(crate) async fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    Store { store, _dir: dir }
}

/// Records `asset key` with bytes `data`, reading what the mappings give now, as the worker does.
async fn record(store: &dyn LineageStore, defs: &Definitions, asset: &str, key: &str, data: &str) {
    record_many(store, defs, &[(asset, key, data)]).await;
}

pub(crate) async fn record_many(store: &dyn LineageStore, defs: &Definitions, cells: &[(&str, &str, &str)]) {
    let graph = defs.graph();
    let now = ctx().now;
    let mut batch = Vec::new();
    for (asset, key, data) in cells {
        let run = RunId::new();
        store
            .create_run(&NewRun {
                id: run,
                trigger: lineage::Trigger::Manual,
                selection: "test".into(),
                n_steps: 1,
                tags: serde_json::json!({}),
                created_at: now,
                owner: None,
            })
            .await
            .unwrap();
        let id = graph.lookup(asset).unwrap();
        let def = graph.asset(id);
        let mut inputs = Vec::new();
        for edge in graph.upstream(id) {
            let up = graph.asset(edge.asset);
            let keys =
                edge.mapping.upstream_keys(up.partitions.as_ref(), def.partitions.as_ref(), key, &ctx()).unwrap();
            let wanted: Vec<(String, String)> = keys.iter().map(|k| (up.key.to_string(), k.clone())).collect();
            for ((a, k), s) in
                wanted.into_iter().zip(store.partition_states_of(&keys_of(&up.key, &keys)).await.unwrap())
            {
                let s = s.unwrap_or_else(|| panic!("{a} {k} is materialized before its readers"));
                inputs.push(InputVersion {
                    asset_key: a,
                    partition_key: k,
                    materialization_id: s.current_materialization_id,
                    data_version: s.data_version.unwrap(),
                });
            }
        }
        let inputs_hash = crate::exec::inputs_hash(&inputs);
        batch.push(NewMaterialization {
            asset_key: asset.to_string(),
            partition_key: key.to_string(),
            run_id: run,
            attempt: 1,
            data_version: data.to_string(),
            logical_version: crate::exec::logical_version(&def.code_version, &inputs_hash),
            code_version: def.code_version.clone(),
            inputs,
            inputs_hash,
            storage_uri: None,
            bytes: None,
            row_count: None,
            schema: None,
            metadata: serde_json::json!({}),
            started_at: now,
            finished_at: now,
        });
    }
    store.record_materializations(&batch).await.unwrap();
}

fn keys_of(asset: &crate::definition::AssetKey, keys: &[String]) -> Vec<(String, String)> {
    keys.iter().map(|k| (asset.to_string(), k.clone())).collect()
}

async fn causes(store: &dyn LineageStore, defs: &Definitions, asset: &str, key: &str) -> Vec<StaleCause> {
    let graph = defs.graph();
    let state = store.partition_states_of(&[(asset.into(), key.into())]).await.unwrap().remove(0).unwrap();
    stale_causes(graph, graph.lookup(asset).unwrap(), key, Recorded::of(&state).unwrap(), &ctx()).unwrap()
}

fn hours(day: &str) -> Vec<String> {
    (0..24).map(|h| format!("{day}T{h:02}:00")).collect()
}

fn december() -> Vec<String> {
    (1..=31).map(|d| format!("2025-12-{d:02}")).collect()
}

/// December's 744 hours and 31 bills (two batches), then its allocation.
async fn record_december(store: &dyn LineageStore, defs: &Definitions) {
    let hours: Vec<String> = december().iter().flat_map(|d| hours(d)).collect();
    record_many(store, defs, &hours.iter().map(|h| ("usage", h.as_str(), "u")).collect::<Vec<_>>()).await;
    let days = december();
    record_many(store, defs, &days.iter().map(|d| ("bill", d.as_str(), "b")).collect::<Vec<_>>()).await;
    record(store, defs, "allocation", "2025-12", "a").await;
}

#[tokio::test]
async fn a_monthly_asset_reading_744_hours_directly_is_stale_when_one_hour_changes() {
    let defs = Definitions::new(vec![
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(
            asset("report")
                .partitions(PartitionsDef::monthly("2025-01-01"))
                .dep_mapped("usage", PartitionMapping::time_window(0, 0)),
        ),
    ])
    .unwrap();
    let s = store().await;
    let store = &s.store;
    let month: Vec<String> = december().iter().flat_map(|d| hours(d)).collect();
    let cells: Vec<(&str, &str, &str)> = month.iter().map(|h| ("usage", h.as_str(), "u")).collect();
    record_many(store, &defs, &cells).await;
    record(store, &defs, "report", "2025-12", "r").await;
    assert_eq!(causes(store, &defs, "report", "2025-12").await, [], "fresh with all 744 read");

    record(store, &defs, "usage", "2025-12-20T13:00", "u").await;
    assert_eq!(causes(store, &defs, "report", "2025-12").await, [], "identical bytes");
    record(store, &defs, "usage", "2025-12-20T13:00", "u2").await;
    assert_eq!(causes(store, &defs, "report", "2025-12").await, [StaleCause::Inputs { changed: 1 }]);
    let Because::Inputs { changes, more: 0 } = root_causes(store, "report", "2025-12").await.unwrap() else {
        panic!("the changed hour is the cause")
    };
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].partition.as_str(), changes[0].from.as_str()), ("2025-12-20T13:00", "u"));
    assert_eq!(changes[0].to.as_deref(), Some("u2"));
    assert!(matches!(changes[0].because, Because::Source), "{:?}", changes[0].because);
}

#[tokio::test]
async fn a_new_code_version_makes_its_partitions_stale_and_not_their_readers() {
    let defs = billing("1");
    let s = store().await;
    let store = &s.store;
    record_december(store, &defs).await;
    let v2 = billing("2");
    assert_eq!(
        causes(store, &v2, "bill", "2025-12-15").await,
        [StaleCause::Code { recorded: "1".into(), current: "2".into() }]
    );
    assert_eq!(causes(store, &v2, "allocation", "2025-12").await, [], "until the bill is re-run");
    assert_eq!(causes(store, &v2, "usage", "2025-12-15T03:00").await, []);
    // Re-run with other bytes: now the allocation is stale, and the root cause is the code.
    record(store, &v2, "bill", "2025-12-15", "b2").await;
    assert_eq!(causes(store, &v2, "bill", "2025-12-15").await, []);
    assert_eq!(causes(store, &v2, "allocation", "2025-12").await, [StaleCause::Inputs { changed: 1 }]);
    let Because::Inputs { changes, .. } = root_causes(store, "allocation", "2025-12").await.unwrap() else {
        panic!("the bill changed")
    };
    assert!(matches!(&changes[0].because, Because::Code { from, to } if from == "1" && to == "2"));
}

#[tokio::test]
async fn root_causes_follow_a_change_across_hops_to_the_hour() {
    let defs = billing("1");
    let s = store().await;
    let store = &s.store;
    record_december(store, &defs).await;
    record(store, &defs, "usage", "2025-12-15T07:00", "u2").await;
    assert_eq!(causes(store, &defs, "bill", "2025-12-15").await, [StaleCause::Inputs { changed: 1 }]);
    assert_eq!(causes(store, &defs, "bill", "2025-12-14").await, [], "the other day is not stale");
    assert_eq!(causes(store, &defs, "allocation", "2025-12").await, [], "the bill's bytes did not change yet");
    record(store, &defs, "bill", "2025-12-15", "b2").await;
    let Because::Inputs { changes, more: 0 } = root_causes(store, "allocation", "2025-12").await.unwrap() else {
        panic!("the bill changed")
    };
    assert_eq!((changes.len(), changes[0].asset.as_str(), changes[0].partition.as_str()), (1, "bill", "2025-12-15"));
    let Because::Inputs { changes: hops, .. } = &changes[0].because else { panic!("because its hour changed") };
    assert_eq!((hops.len(), hops[0].asset.as_str(), hops[0].partition.as_str()), (1, "usage", "2025-12-15T07:00"));
    assert_eq!((hops[0].from.as_str(), hops[0].to.as_deref()), ("u", Some("u2")));
    assert!(matches!(hops[0].because, Because::Source));
    // Re-materializing the bill with the same bytes would have stopped it there (early cut-off).
    record(store, &defs, "usage", "2025-12-14T01:00", "u3").await;
    record(store, &defs, "bill", "2025-12-14", "b").await;
    assert_eq!(causes(store, &defs, "allocation", "2025-12").await, [StaleCause::Inputs { changed: 1 }]);
}

#[tokio::test]
async fn dependencies_added_or_removed_make_a_partition_stale() {
    let defs = billing("1");
    let s = store().await;
    let store = &s.store;
    for h in hours("2025-12-15") {
        record(store, &defs, "usage", &h, "u").await;
    }
    record(store, &defs, "bill", "2025-12-15", "b").await;
    // The bill now also reads the previous day's hours.
    let wider = Definitions::new(vec![
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(
            asset("bill")
                .partitions(PartitionsDef::daily("2025-01-01"))
                .dep_mapped("usage", PartitionMapping::time_window(-1, 0)),
        ),
    ])
    .unwrap();
    assert_eq!(causes(store, &wider, "bill", "2025-12-15").await, [StaleCause::Dependencies]);
    assert_eq!(causes(store, &defs, "bill", "2025-12-15").await, []);
    // The bill loses its only dependency: stale too, also through the lean summaries that
    // status reads (which leave out the hash an asset without upstream is known to have).
    let none = Definitions::new(vec![
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(asset("bill").partitions(PartitionsDef::daily("2025-01-01"))),
    ])
    .unwrap();
    assert_eq!(causes(store, &none, "bill", "2025-12-15").await, [StaleCause::Dependencies]);
    let empty = lineage::input_keys_hash([]);
    let summary = store.partition_summaries("bill", Some(&empty)).await.unwrap().remove(0);
    let recorded = Recorded::of_summary(&summary).unwrap();
    let graph = none.graph();
    let bill = graph.lookup("bill").unwrap();
    assert_eq!(stale_causes(graph, bill, "2025-12-15", recorded, &ctx()).unwrap(), [StaleCause::Dependencies]);
    // An hour (no upstream, ever) leaves its hash out and is fresh.
    let hour = store.partition_summaries("usage", Some(&empty)).await.unwrap().remove(0);
    assert_eq!(hour.input_keys_hash, None);
}

/// The nodes of the property test's graph (see [`small_chain`]).
const NODES: [(&str, &str); 10] = [
    ("usage", "a"),
    ("usage", "b"),
    ("usage", "c"),
    ("usage", "d"),
    ("rate", ""),
    ("bill", "a"),
    ("bill", "b"),
    ("bill", "c"),
    ("bill", "d"),
    ("allocation", ""),
];

/// usage (4 static keys) and rate (unpartitioned) → bill (identity on usage, all of rate) →
/// allocation (unpartitioned, reads every bill).
fn small_chain(bill_code: &str) -> Definitions {
    let keys = || PartitionsDef::fixed(["a", "b", "c", "d"]);
    Definitions::new(vec![
        noop(asset("usage").partitions(keys())),
        noop(asset("rate")),
        noop(asset("bill").partitions(keys()).dep("usage").dep("rate").code_version(bill_code)),
        noop(asset("allocation").dep("bill")),
    ])
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Materialize a node with bytes `v{1}` (re-reading what is current).
    Materialize(usize, u8),
    /// Two nodes in one batch.
    Batch(usize, u8, usize, u8),
    /// Wipe a node.
    Wipe(usize),
    /// Switch the bill's code version.
    Code(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NODES.len(), 0u8..3).prop_map(|(n, v)| Op::Materialize(n, v)),
        2 => (0..NODES.len(), 0u8..3, 0..NODES.len(), 0u8..3).prop_map(|(a, v, b, w)| Op::Batch(a, v, b, w)),
        1 => (0..NODES.len()).prop_map(Op::Wipe),
        1 => any::<bool>().prop_map(Op::Code),
    ]
}

/// Whether every input of the node is materialized (the engine would not run it otherwise).
async fn runnable(store: &dyn LineageStore, defs: &Definitions, node: usize) -> bool {
    let (asset, key) = NODES[node];
    let graph = defs.graph();
    let id = graph.lookup(asset).unwrap();
    let def = graph.asset(id);
    for edge in graph.upstream(id) {
        let up = graph.asset(edge.asset);
        let keys = edge.mapping.upstream_keys(up.partitions.as_ref(), def.partitions.as_ref(), key, &ctx()).unwrap();
        let states = store.partition_states_of(&keys_of(&up.key, &keys)).await.unwrap();
        if states.iter().any(|s| s.as_ref().is_none_or(|s| s.data_version.is_none())) {
            return false;
        }
    }
    true
}

async fn check(store: &dyn LineageStore, defs: &Definitions, after: &Op) {
    let graph = defs.graph();
    let mut states = HashMap::new();
    for asset in ["usage", "rate", "bill", "allocation"] {
        for s in store.partition_states(asset).await.unwrap() {
            states.insert((s.asset_key.clone(), s.partition_key.clone()), s);
        }
    }
    for ((asset, key), state) in &states {
        let Some(recorded) = Recorded::of(state) else { continue };
        let id = graph.lookup(asset).unwrap();
        let incremental = !stale_causes(graph, id, key, recorded, &ctx()).unwrap().is_empty();
        let recomputed = stale_by_logical_version(graph, id, key, &states, &ctx());
        assert_eq!(incremental, recomputed, "{asset} {key} after {after:?}");
    }
}

async fn run(ops: Vec<Op>) {
    let s = store().await;
    let store = &s.store;
    let mut defs = small_chain("1");
    for op in ops {
        match op {
            Op::Materialize(n, v) => {
                if runnable(store, &defs, n).await {
                    record(store, &defs, NODES[n].0, NODES[n].1, &format!("v{v}")).await;
                }
            }
            Op::Batch(a, v, b, w) => {
                let (va, vb) = (format!("v{v}"), format!("v{w}"));
                let mut cells = Vec::new();
                if runnable(store, &defs, a).await {
                    cells.push((NODES[a].0, NODES[a].1, va.as_str()));
                }
                if runnable(store, &defs, b).await {
                    cells.push((NODES[b].0, NODES[b].1, vb.as_str()));
                }
                record_many(store, &defs, &cells).await;
            }
            Op::Wipe(n) => {
                store.wipe(NODES[n].0, Some(&[NODES[n].1.to_owned()]), ctx().now).await.unwrap();
            }
            Op::Code(two) => defs = small_chain(if two { "2" } else { "1" }),
        }
        check(store, &defs, &op).await;
    }
    assert_eq!(store.repair_staleness().await.unwrap(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Incremental status (counts maintained at write time) equals status recomputed from the
    /// logical versions after any sequence of materializations, batches, wipes and code changes.
    #[test]
    fn incremental_status_equals_recomputed_status(ops in proptest::collection::vec(op(), 1..30)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}
