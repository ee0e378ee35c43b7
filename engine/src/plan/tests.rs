use chrono::TimeZone;

use super::*;
use crate::definition::{AssetDef, Definitions, Output, asset};
use crate::mapping::PartitionMapping;
use crate::partition::PartitionsDef;

fn noop(builder: crate::definition::AssetBuilder) -> AssetDef {
    builder.compute(|_ctx| async { Ok(Output::none()) })
}

/// hourly usage → daily bill → monthly allocation (reads the previous month's bills).
fn billing() -> Definitions {
    Definitions::new(vec![
        noop(asset("usage").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(asset("bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage")),
        noop(
            asset("allocation")
                .partitions(PartitionsDef::monthly("2025-01-01"))
                .dep_mapped("bill", PartitionMapping::time_window(-1, -1)),
        ),
        noop(asset("report").dep("bill")),
    ])
    .unwrap()
}

/// Plans `selection` for `spec` with `materialized` facts and renders the plan or the error.
fn check(selection: &str, spec: PartitionSpec, materialized: &[(&str, &str)], with_upstream: bool) -> String {
    let defs = billing();
    let graph = defs.graph();
    let ctx = PartitionsContext::at(chrono::Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap());
    let mut snapshot = LineageSnapshot::default();
    for (asset, key) in materialized {
        snapshot.insert(graph.lookup(asset).unwrap(), (*key).to_owned());
    }
    let selected = crate::selection::resolve(graph, selection).unwrap();
    let res = targets(graph, &selected, &spec, &ctx)
        .and_then(|t| plan(graph, &t, &snapshot, &ctx, PlanOptions { with_upstream }));
    match res {
        Ok(plan) => {
            // Every dependency points backwards: the order is valid.
            for (i, step) in plan.steps.iter().enumerate() {
                assert!(step.deps.iter().all(|d| *d < i), "step {i} depends on a later step");
            }
            plan.render(graph)
        }
        Err(e) => format!("error: {e}"),
    }
}

fn all_hours(day: &str) -> Vec<(&'static str, String)> {
    (0..24).map(|h| ("usage", format!("{day}T{h:02}:00"))).collect()
}

#[test]
fn a_bill_with_its_hours_present_is_one_step() {
    let facts = all_hours("2025-12-15");
    let facts: Vec<(&str, &str)> = facts.iter().map(|(a, k)| (*a, k.as_str())).collect();
    insta::assert_snapshot!(check("bill", PartitionSpec::Key("2025-12-15".into()), &facts, false), @"bill                     1 step   2025-12-15");
}

#[test]
fn missing_hours_are_listed_as_ranges() {
    let facts = [("usage", "2025-12-15T05:00")];
    insta::assert_snapshot!(check("bill", PartitionSpec::Key("2025-12-15".into()), &facts, false), @r"
    error: missing upstream partitions:
      usage (23 partitions) needed by bill: 2025-12-15T00:00..2025-12-15T04:00 (5), 2025-12-15T06:00..2025-12-15T23:00 (18)
    materialize them first, or add --with-upstream (or select +ASSET) to include them
    ");
}

#[test]
fn with_upstream_adds_only_the_missing_hours() {
    let facts = [("usage", "2025-12-15T05:00")];
    insta::assert_snapshot!(check("bill", PartitionSpec::Key("2025-12-15".into()), &facts, true), @r"
    usage                   23 steps  2025-12-15T00:00..2025-12-15T04:00 (5), 2025-12-15T06:00..2025-12-15T23:00 (18)
    bill                     1 step   2025-12-15
    ");
}

#[test]
fn a_plus_selection_derives_upstream_partitions_through_the_mapping() {
    insta::assert_snapshot!(check("+bill", PartitionSpec::Range("2025-12-01".into(), "2025-12-31".into()), &[], false), @r"
    usage                  744 steps  2025-12-01T00:00..2025-12-31T23:00 (744)
    bill                    31 steps  2025-12-01..2025-12-31 (31)
    ");
}

#[test]
fn a_monthly_allocation_reaches_back_through_the_offset() {
    insta::assert_snapshot!(check("allocation", PartitionSpec::Key("2025-12".into()), &[], true), @r"
    usage                  720 steps  2025-11-01T00:00..2025-11-30T23:00 (720)
    bill                    30 steps  2025-11-01..2025-11-30 (30)
    allocation               1 step   2025-12
    ");
}

#[test]
fn an_unpartitioned_report_reads_every_bill() {
    let out = check("report", PartitionSpec::None, &[], false);
    assert!(out.starts_with("error: missing upstream partitions:\n  bill (379 partitions) needed by report: 2025-01-01..2026-01-14 (379)"), "{out}");
}

#[test]
fn partitions_not_closed_yet_cannot_be_planned() {
    insta::assert_snapshot!(check("bill", PartitionSpec::Key("2026-01-15".into()), &[], true), @r#"error: asset bill: partition "2026-01-15" is out of range for daily partitions: its window closes at 2026-01-16T00:00:00+00:00 and does not exist yet; valid range is 2025-01-01 ..= 2026-01-14"#);
}

#[test]
fn a_partitioned_asset_needs_a_key() {
    insta::assert_snapshot!(check("bill", PartitionSpec::None, &[], true), @"error: asset bill: it is partitioned (daily): give a partition key with --partition or a range with --from/--to");
}

#[test]
fn downstream_assets_take_the_partitions_that_read_the_key() {
    let mut facts: Vec<(&str, String)> = all_hours("2025-11-30");
    facts.extend((1..=30).map(|d| ("bill", format!("2025-11-{d:02}"))));
    let facts: Vec<(&str, &str)> = facts.iter().map(|(a, k)| (*a, k.as_str())).collect();
    // One hour, then the day's bill that reads it, then December's allocation that reads
    // November's bills (offset -1).
    let out = check("usage,bill,allocation", PartitionSpec::Key("2025-11-30T23:00".into()), &facts, false);
    insta::assert_snapshot!(out, @r"
    usage                    1 step   2025-11-30T23:00
    bill                     1 step   2025-11-30
    allocation               1 step   2025-12
    ");
}

#[test]
fn an_unpartitioned_downstream_pulls_in_every_partition_with_upstream() {
    let out = check("usage+", PartitionSpec::Key("2025-11-30T23:00".into()), &[], true);
    assert!(out.contains("report                   1 step   (unpartitioned)"), "{out}");
    assert!(out.contains("bill                   379 steps  2025-01-01..2026-01-14 (379)"), "{out}");
}
