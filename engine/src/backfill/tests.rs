use chrono::TimeZone;

use super::*;
use crate::definition::{AssetDef, Definitions, Output, asset};
use crate::mapping::PartitionMapping;
use crate::partition::PartitionsDef;
use crate::plan::PartitionSpec;
use lineage::InputVersion;

fn noop(builder: crate::definition::AssetBuilder) -> AssetDef {
    builder.compute(|_ctx| async { Ok(Output::none()) })
}

/// hourly usage → daily bill → monthly report over the month's bills.
fn billing(bill_code: &str) -> Definitions {
    Definitions::new(vec![
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(asset("bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage").code_version(bill_code)),
        noop(
            asset("report")
                .partitions(PartitionsDef::monthly("2025-01-01"))
                .dep_mapped("bill", PartitionMapping::time_window(0, 0)),
        ),
    ])
    .unwrap()
}

fn ctx() -> PartitionsContext {
    PartitionsContext::at(chrono::Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap())
}

fn hours(day: &str) -> Vec<String> {
    (0..24).map(|h| format!("{day}T{h:02}:00")).collect()
}

/// A materialized cell as the executor would have recorded it, reading `inputs`.
fn materialized(defs: &Definitions, states: &mut CellStates, asset: &str, key: &str, data: &str, code: &str) {
    let graph = defs.graph();
    let id = graph.lookup(asset).unwrap();
    let def = graph.asset(id);
    let mut inputs = Vec::new();
    for edge in graph.upstream(id) {
        let up = graph.asset(edge.asset);
        for k in edge.mapping.upstream_keys(up.partitions.as_ref(), def.partitions.as_ref(), key, &ctx()).unwrap() {
            let (m, d, ..) = states.get(edge.asset, &k).unwrap().current.clone().unwrap();
            inputs.push(InputVersion {
                asset_key: up.key.to_string(),
                partition_key: k,
                materialization_id: Some(m),
                data_version: d,
            });
        }
    }
    let logical = crate::exec::logical_version(code, &crate::exec::inputs_hash(&inputs));
    let n = states.cells.values().map(std::collections::HashMap::len).sum::<usize>() as i64 + 1;
    let keys = lineage::input_keys_hash(inputs.iter().map(|i| (i.asset_key.as_str(), i.partition_key.as_str())));
    states.insert(
        id,
        key.to_owned(),
        Cell {
            current: Some((n, data.to_owned(), logical, code.to_owned())),
            input_keys_hash: Some(keys),
            ..Cell::default()
        },
    );
}

fn plan_for(
    defs: &Definitions,
    selection: &str,
    from: &str,
    to: &str,
    states: &CellStates,
    policy: BackfillPolicy,
) -> BackfillPlan {
    let graph = defs.graph();
    let selected = crate::selection::resolve(graph, selection).unwrap();
    let targets = plan::targets(graph, &selected, &PartitionSpec::Range(from.into(), to.into()), &ctx()).unwrap();
    plan_backfill(graph, &targets, states, policy, &ctx()).unwrap()
}

#[test]
fn a_month_of_the_billing_chain_expands_across_partition_definitions() {
    let defs = billing("1");
    let bf = plan_for(&defs, "+report", "2025-12-01", "2025-12-31", &CellStates::default(), BackfillPolicy::Missing);
    insta::assert_snapshot!(bf.render(defs.graph()), @r"
      usage                   744 cells  2025-12-01T00:00..2025-12-31T23:00 (744)
      bill                     31 cells  2025-12-01..2025-12-31 (31)
      report                    1 cell   2025-12
    ");
    let graph = defs.graph();
    // Each bill depends on exactly its own 24 hours; the report on the 31 bills.
    for step in &bf.plan.steps {
        let expected = match graph.asset(step.asset).key.as_str() {
            "usage" => 0,
            "bill" => 24,
            _ => 31,
        };
        assert_eq!(step.deps.len(), expected, "{step:?}");
        for d in &step.deps {
            assert!(bf.plan.steps[*d].partition_key.starts_with(&step.partition_key));
        }
    }
}

#[test]
fn missing_skips_what_is_materialized_and_says_so_as_ranges() {
    let defs = billing("1");
    let mut states = CellStates::default();
    for day in ["2025-12-14", "2025-12-15"] {
        for h in hours(day) {
            materialized(&defs, &mut states, "usage", &h, "u", "1");
        }
    }
    materialized(&defs, &mut states, "bill", "2025-12-15", "b", "1");
    let bf = plan_for(&defs, "+bill", "2025-12-01", "2025-12-31", &states, BackfillPolicy::Missing);
    insta::assert_snapshot!(bf.render(defs.graph()), @r"
      usage                   696 cells  2025-12-01T00:00..2025-12-13T23:00 (312), 2025-12-16T00:00..2025-12-31T23:00 (384)
                               48 skipped: already materialized (2025-12-14T00:00..2025-12-15T23:00 (48))
      bill                     30 cells  2025-12-01..2025-12-14 (14), 2025-12-16..2025-12-31 (16)
                                1 skipped: already materialized (2025-12-15)
    ");
    assert_eq!(bf.cells(), 726);
    let skipped = bf.skipped_json(defs.graph());
    assert_eq!(skipped[0]["count"], 48);
    assert_eq!(skipped[1]["reason"], "already_materialized");
    // The bill of the 14th reads hours that exist: no edge to them, it is ready at once.
    let graph = defs.graph();
    let bill14 = bf
        .plan
        .steps
        .iter()
        .find(|s| graph.asset(s.asset).key.as_str() == "bill" && s.partition_key == "2025-12-14")
        .unwrap();
    assert!(bill14.deps.is_empty());
}

#[test]
fn all_runs_every_cell_and_failed_only_the_failed_ones() {
    let defs = billing("1");
    let graph = defs.graph();
    let mut states = CellStates::default();
    for h in hours("2025-12-01") {
        materialized(&defs, &mut states, "usage", &h, "u", "1");
    }
    materialized(&defs, &mut states, "bill", "2025-12-01", "b", "1");
    states.insert(graph.lookup("bill").unwrap(), "2025-12-02".into(), Cell { failed: true, ..Cell::default() });
    for h in hours("2025-12-02") {
        materialized(&defs, &mut states, "usage", &h, "u", "1");
    }
    let all = plan_for(&defs, "+bill", "2025-12-01", "2025-12-02", &states, BackfillPolicy::All);
    assert_eq!(all.cells(), 50);
    let failed = plan_for(&defs, "+bill", "2025-12-01", "2025-12-02", &states, BackfillPolicy::Failed);
    insta::assert_snapshot!(failed.render(graph), @r"
      usage                     0 cells  -
                               48 skipped: latest attempt did not fail (2025-12-01T00:00..2025-12-02T23:00 (48))
      bill                      1 cell   2025-12-02
                                1 skipped: latest attempt did not fail (2025-12-01)
    ");
}

#[test]
fn stale_takes_changed_code_changed_inputs_and_readers_of_rerun_cells() {
    let defs = billing("1");
    let graph = defs.graph();
    let mut states = CellStates::default();
    for day in ["2025-12-01", "2025-12-02", "2025-12-03"] {
        for h in hours(day) {
            materialized(&defs, &mut states, "usage", &h, "u", "1");
        }
        materialized(&defs, &mut states, "bill", day, "b", "1");
    }
    // Everything is current: nothing to do.
    let fresh = plan_for(&defs, "+bill", "2025-12-01", "2025-12-03", &states, BackfillPolicy::Stale);
    assert_eq!(fresh.cells(), 0);
    assert_eq!(
        fresh.assets[1].skipped,
        vec![(SkipReason::Fresh, vec!["2025-12-01".into(), "2025-12-02".into(), "2025-12-03".into()])]
    );

    // An hour of the 2nd was re-materialized with other bytes after its bill read it: the
    // store counts one changed input on that bill (lineage tests cover the counting).
    let usage = graph.lookup("usage").unwrap();
    states.cells.get_mut(&graph.lookup("bill").unwrap()).unwrap().get_mut("2025-12-02").unwrap().stale_inputs = 1;
    let changed = plan_for(&defs, "+bill", "2025-12-01", "2025-12-03", &states, BackfillPolicy::Stale);
    insta::assert_snapshot!(changed.render(graph), @r"
      usage                     0 cells  -
                               72 skipped: fresh (same code version and inputs) (2025-12-01T00:00..2025-12-03T23:00 (72))
      bill                      1 cell   2025-12-02
                                2 skipped: fresh (same code version and inputs) (2025-12-01, 2025-12-03)
    ");

    // A new code version of the bill makes every bill stale, not the hours.
    let defs2 = billing("2");
    let code = plan_for(&defs2, "+bill", "2025-12-01", "2025-12-03", &states, BackfillPolicy::Stale);
    assert_eq!(code.assets[0].planned.len(), 0);
    assert_eq!(code.assets[1].planned.len(), 3);

    // A missing hour is planned, and so is the bill that will read it.
    let mut states = CellStates::default();
    for h in hours("2025-12-01") {
        materialized(&defs, &mut states, "usage", &h, "u", "1");
    }
    materialized(&defs, &mut states, "bill", "2025-12-01", "b", "1");
    states.cells.get_mut(&usage).unwrap().remove("2025-12-01T07:00");
    let missing = plan_for(&defs, "+bill", "2025-12-01", "2025-12-01", &states, BackfillPolicy::Stale);
    assert_eq!(missing.assets[0].planned, vec!["2025-12-01T07:00".to_owned()]);
    assert_eq!(missing.assets[1].planned, vec!["2025-12-01".to_owned()]);
    assert_eq!(missing.plan.steps[1].deps, vec![0]);
}

#[test]
fn policies_parse_and_reject_unknown_names() {
    for p in ["missing", "failed", "stale", "all"] {
        assert_eq!(p.parse::<BackfillPolicy>().unwrap().as_str(), p);
    }
    assert!("newest".parse::<BackfillPolicy>().is_err());
}

/// The snapshot a plan reads holds the upstream partitions it asks about, not every partition of
/// every upstream asset, and plans as the snapshot of every partition does.
#[tokio::test]
async fn a_plans_snapshot_reads_the_partitions_the_plan_asks_about() {
    use crate::staleness::tests as recorded;
    let defs = billing("v1");
    let graph = defs.graph();
    let s = recorded::store().await;
    // Two days of hours but the last one, and the first day's bill.
    let hours: Vec<String> = ["2025-01-01", "2025-01-02"].iter().flat_map(|d| hours(d)).collect();
    let cells: Vec<(&str, &str, &str)> = hours[..47].iter().map(|h| ("usage", h.as_str(), "u")).collect();
    recorded::record_many(&s.store, &defs, &cells).await;
    recorded::record_many(&s.store, &defs, &[("bill", "2025-01-01", "b")]).await;
    let id = |key: &str| graph.lookup(key).unwrap();
    let every = CellStates::load(&s.store, graph, [id("usage"), id("bill"), id("report")]).await.unwrap().snapshot();
    assert!(every.is_materialized(id("usage"), "2025-01-01T05:00"));
    // (target, with upstream, whether the first day's hours are read: only its own bill's plan asks).
    let cases = [
        ("bill", "2025-01-01", false, true),
        ("bill", "2025-01-02", false, false),
        ("bill", "2025-01-02", true, false),
        ("bill", "2025-01-03", true, false),
        // The month's missing bills become steps, and their hours are read in turn: the second
        // day's but one are there.
        ("report", "2025-01", true, false),
        ("report", "2025-01", false, false),
    ];
    for (asset, key, with_upstream, reads_first_day) in cases {
        let (targets, options) = (vec![(id(asset), vec![key.to_owned()])], PlanOptions { with_upstream });
        let snapshot = CellStates::snapshot_for_plan(&s.store, graph, &targets, &ctx(), options).await.unwrap();
        let lean = plan::plan(graph, &targets, &snapshot, &ctx(), options);
        let full = plan::plan(graph, &targets, &every, &ctx(), options);
        assert_eq!(lean, full, "{asset} {key}, with_upstream {with_upstream}");
        assert_eq!(snapshot.is_materialized(id("usage"), "2025-01-01T05:00"), reads_first_day, "{asset} {key}");
    }
}

/// Plans `cases` (asset, key, with upstream) from [`CellStates::snapshot_for_plan`] and from
/// `every` (the snapshot of every cell), which must agree.
async fn plans_agree(
    store: &dyn lineage::LineageStore,
    defs: &Definitions,
    every: &LineageSnapshot,
    cases: &[(&str, &str, bool)],
    label: &str,
) {
    let graph = defs.graph();
    for &(asset, key, with_upstream) in cases {
        let (targets, options) =
            (vec![(graph.lookup(asset).unwrap(), vec![key.to_owned()])], PlanOptions { with_upstream });
        let snapshot = CellStates::snapshot_for_plan(store, graph, &targets, &ctx(), options).await.unwrap();
        let lean = plan::plan(graph, &targets, &snapshot, &ctx(), options);
        let full = plan::plan(graph, &targets, every, &ctx(), options);
        assert_eq!(lean, full, "{label}: {asset} {key}, with_upstream {with_upstream}");
    }
}

/// The same through an unpartitioned upstream that every hour and every bill read (a diamond),
/// before anything is recorded, once part of it is, and for keys the store has never seen.
#[tokio::test]
async fn a_plans_snapshot_follows_an_unpartitioned_upstream_read_two_ways() {
    use crate::staleness::tests as recorded;
    let defs = Definitions::new(vec![
        noop(asset("rates")),
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01")).dep("rates")),
        noop(asset("bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage").dep("rates")),
    ])
    .unwrap();
    let graph = defs.graph();
    let all: Vec<AssetId> = ["rates", "usage", "bill"].iter().map(|k| graph.lookup(k).unwrap()).collect();
    let cases = [
        ("bill", "2025-01-01", true),
        ("bill", "2025-01-01", false),
        ("bill", "2025-01-02", true),
        ("usage", "2025-01-02T05:00", false),
        ("usage", "2025-01-02T05:00", true),
    ];
    let s = recorded::store().await;
    let every = CellStates::load(&s.store, graph, all.clone()).await.unwrap().snapshot();
    plans_agree(&s.store, &defs, &every, &cases, "nothing recorded").await;
    recorded::record_many(&s.store, &defs, &[("rates", "", "r")]).await;
    let day = hours("2025-01-01");
    let cells: Vec<(&str, &str, &str)> = day.iter().map(|h| ("usage", h.as_str(), "u")).collect();
    recorded::record_many(&s.store, &defs, &cells).await;
    let every = CellStates::load(&s.store, graph, all).await.unwrap().snapshot();
    plans_agree(&s.store, &defs, &every, &cases, "the rates and a day of hours").await;
}
