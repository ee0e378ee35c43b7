use super::*;
use crate::definition::{AssetBuilder, Definitions, Output, asset};
use crate::mapping::PartitionMapping;
use crate::partition::PartitionsDef;
use crate::selection;

fn noop(builder: AssetBuilder) -> AssetDef {
    builder.compute(|_ctx| async { Ok(Output::none()) })
}

/// Builds definitions and renders the error, or the assets in dependency order.
fn check(assets: Vec<AssetDef>) -> String {
    match Definitions::new(assets) {
        Ok(defs) => defs
            .graph()
            .topo_order()
            .iter()
            .map(|id| defs.graph().asset(*id).key.to_string())
            .collect::<Vec<_>>()
            .join(" -> "),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn a_valid_graph_is_ordered_by_dependencies() {
    let out = check(vec![
        noop(asset("billing/storage_bill").partitions(PartitionsDef::daily("2025-01-01")).dep("usage_snapshot")),
        noop(asset("usage_snapshot").partitions(PartitionsDef::hourly("2025-01-01"))),
    ]);
    assert_eq!(out, "usage_snapshot -> billing/storage_bill");
}

#[test]
fn cycles_name_every_asset_on_them() {
    let out = check(vec![
        noop(asset("a").dep("c")),
        noop(asset("b").dep("a")),
        noop(asset("c").dep("b")),
        noop(asset("d").dep("a")),
    ]);
    assert_eq!(out, "error: assets form a dependency cycle: a -> b -> c -> a");
    assert_eq!(check(vec![noop(asset("a").dep("a"))]), "error: assets form a dependency cycle: a -> a");
}

#[test]
fn unknown_dependencies_suggest_close_names() {
    let out = check(vec![noop(asset("usage_snapshot")), noop(asset("storage_bill").dep("usage_snapshots"))]);
    assert_eq!(
        out,
        r#"error: asset "storage_bill" depends on unknown asset "usage_snapshots" (did you mean usage_snapshot?)"#
    );
}

#[test]
fn duplicate_keys_and_ambiguous_names_are_rejected() {
    assert_eq!(check(vec![noop(asset("a")), noop(asset("a"))]), r#"error: asset key "a" is defined twice"#);
    let out = check(vec![noop(asset("x/bill")), noop(asset("y/bill")), noop(asset("report").dep("bill"))]);
    assert_eq!(out, r#"error: asset "report" depends on "bill", which is ambiguous: x/bill, y/bill"#);
}

#[test]
fn incompatible_mappings_name_both_assets() {
    let out = check(vec![
        noop(asset("realms").partitions(PartitionsDef::fixed(["us", "eu"]))),
        noop(asset("daily").partitions(PartitionsDef::daily("2025-01-01")).dep("realms")),
    ]);
    assert_eq!(
        out,
        r#"error: asset "daily" cannot depend on "realms": no default mapping from static [us, eu] to daily; declare one (identity, time_window, all or last)"#
    );
    let out = check(vec![
        noop(asset("hourly").partitions(PartitionsDef::hourly("2025-01-01"))),
        noop(
            asset("daily")
                .partitions(PartitionsDef::daily("2025-01-01"))
                .dep_mapped("hourly", PartitionMapping::Identity),
        ),
    ]);
    assert_eq!(
        out,
        r#"error: asset "daily" cannot depend on "hourly": identity mapping cannot connect hourly to daily"#
    );
}

fn chain() -> Definitions {
    Definitions::new(vec![
        noop(asset("raw").group("ingest").tag("team", "data")),
        noop(asset("usage").group("billing").tag("team", "billing").dep("raw")),
        noop(asset("bill").group("billing").tag("team", "billing").dep("usage")),
        noop(asset("report").group("reports").dep("bill")),
    ])
    .unwrap()
}

fn select(selection: &str) -> String {
    let defs = chain();
    match selection::resolve(defs.graph(), selection) {
        Ok(ids) => ids.iter().map(|id| defs.graph().asset(*id).key.to_string()).collect::<Vec<_>>().join(","),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn the_selection_syntax() {
    assert_eq!(select("bill"), "bill");
    assert_eq!(select("+bill"), "raw,usage,bill");
    assert_eq!(select("1+bill"), "usage,bill");
    assert_eq!(select("usage+"), "usage,bill,report");
    assert_eq!(select("usage+1"), "usage,bill");
    assert_eq!(select("group:billing"), "usage,bill");
    assert_eq!(select("tag:team=billing,report"), "usage,bill,report");
    assert_eq!(select("tag:team"), "raw,usage,bill");
    assert_eq!(select("*"), "raw,usage,bill,report");
}

#[test]
fn selection_errors_say_what_is_valid() {
    assert_eq!(select("bil"), r#"error: unknown asset "bil" (did you mean bill?)"#);
    assert_eq!(select("zzz"), r#"error: unknown asset "zzz"; run `robo-assets list` to see every asset"#);
    assert_eq!(select("group:finance"), r#"error: group "finance" matches no asset (known: billing, ingest, reports)"#);
    assert!(select("x+bill").starts_with(r#"error: malformed selection term "x+bill""#), "{}", select("x+bill"));
    assert!(select("bill,").starts_with("error: malformed selection term"));
}

#[test]
fn a_pool_kept_per_dimension_needs_that_dimension() {
    let months = || PartitionsDef::monthly("2025-01-01");
    let multi = || PartitionsDef::multi([("realm", PartitionsDef::fixed(["1", "2"])), ("month", months())]);
    assert_eq!(
        check(vec![noop(asset("report").partitions(multi()).pool_per("quickbooks", "company"))]),
        r#"error: asset "report": its pool is kept per "company", but its dimensions are month, realm"#
    );
    assert_eq!(
        check(vec![noop(asset("report").partitions(months()).pool_per("quickbooks", "realm"))]),
        r#"error: asset "report": its pool is kept per "realm", but it has no multi-dimensional partitions"#
    );
    let defs =
        Definitions::new(vec![noop(asset("report").partitions(multi()).pool_per("quickbooks", "realm"))]).unwrap();
    let def = &defs.graph().assets()[0];
    assert_eq!(def.request_pool("month=2025-03|realm=2").as_deref(), Some("quickbooks[realm=2]"));
}

proptest::proptest! {
    /// Any text, near-valid or not, is a selection or a clear error: never a panic, and what a
    /// valid one selects is named by the graph.
    #[test]
    fn any_selection_text_is_resolved_or_refused(text in "[-+*:,=a-z0-9 ]{0,24}|\\PC{0,24}") {
        let defs = chain();
        if let Ok(ids) = selection::resolve(defs.graph(), &text) {
            for id in ids {
                proptest::prop_assert!(["raw", "usage", "bill", "report"].contains(&defs.graph().asset(id).key.to_string().as_str()));
            }
        }
    }
}
