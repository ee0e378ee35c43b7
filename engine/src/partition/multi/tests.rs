use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::mapping::PartitionMapping;

fn ctx() -> PartitionsContext {
    let mut ctx = PartitionsContext::at(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    ctx.dynamic.insert("qbo_realms".into(), vec!["123".into(), "456".into(), "9130".into()]);
    ctx
}

/// Three dimensions: a dynamic set, a time window and a static set.
fn three() -> PartitionsDef {
    PartitionsDef::multi([
        ("realm", PartitionsDef::dynamic("qbo_realms")),
        ("month", PartitionsDef::monthly("2025-01-01")),
        ("report", PartitionsDef::fixed(["pl", "bs"])),
    ])
}

fn m(def: &PartitionsDef) -> &MultiPartitions {
    def.as_multi().unwrap()
}

#[test]
fn keys_are_canonical_in_dimension_name_order() {
    let def = three();
    let ctx = ctx();
    assert_eq!(def.describe(), "multi [month: monthly × realm: dynamic qbo_realms × report: static [pl, bs]]");
    assert_eq!(def.len(&ctx), 12 * 3 * 2);
    let keys = def.keys(&ctx);
    assert_eq!(keys.len(), 72);
    assert_eq!(keys[0], "month=2025-01|realm=123|report=pl");
    assert_eq!(keys[1], "month=2025-01|realm=123|report=bs");
    assert_eq!(keys[71], "month=2025-12|realm=9130|report=bs");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 72, "no key twice");
    // Any order and a bare time value resolve to the canonical key; aliases too.
    for given in ["report=pl|realm=123|month=2025-12", "2025-12-01|report=pl|realm=123", "realm=123|report=pl|2025-12"]
    {
        assert_eq!(def.resolve(given, &ctx).unwrap(), "month=2025-12|realm=123|report=pl", "{given}");
    }
}

#[test]
fn bad_keys_say_what_is_valid() {
    let def = three();
    let ctx = ctx();
    let err = |k: &str| def.resolve(k, &ctx).unwrap_err().to_string();
    assert!(
        err("month=2025-12|realm=123").contains("month=KEY|realm=KEY|report=KEY"),
        "{}",
        err("month=2025-12|realm=123")
    );
    assert!(err("month=2025-12|realm=123|report=pl|region=eu").contains("\"region\" is not one of them"));
    assert!(err("month=2025-12|month=2025-11|realm=123|report=pl").contains("dimension \"month\" once"));
    let unknown = err("month=2025-12|realm=777|report=pl");
    assert!(unknown.starts_with("in dimension realm: unknown partition \"777\""), "{unknown}");
    assert!(unknown.contains("123, 456, 9130"), "{unknown}");
    let future = err("month=2026-01|realm=123|report=pl");
    assert!(future.starts_with("in dimension month: partition \"2026-01\" is out of range"), "{future}");
    // Without a time dimension a bare value names nothing.
    let plain = PartitionsDef::multi([("a", PartitionsDef::fixed(["x"])), ("b", PartitionsDef::fixed(["y"]))]);
    assert!(plain.resolve("x|b=y", &ctx).is_err());
}

#[test]
#[should_panic(expected = "at most one dimension is a time window")]
fn two_time_dimensions_are_refused() {
    PartitionsDef::multi([
        ("day", PartitionsDef::daily("2025-01-01")),
        ("month", PartitionsDef::monthly("2025-01-01")),
    ]);
}

#[test]
fn a_range_runs_over_the_time_dimension_with_the_others_fixed_or_all() {
    let def = three();
    let ctx = ctx();
    let one = def.range("2025-03|realm=456|report=bs", "2025-05|report=bs|realm=456", &ctx).unwrap();
    assert_eq!(
        one,
        ["month=2025-03|realm=456|report=bs", "month=2025-04|realm=456|report=bs", "month=2025-05|realm=456|report=bs"]
    );
    let all = def.range("2025-03", "2025-04", &ctx).unwrap();
    assert_eq!(all.len(), 2 * 3 * 2);
    let err = def.range("2025-03|realm=123", "2025-04|realm=456", &ctx).unwrap_err().to_string();
    assert!(err.contains("the same realm on both ends"), "{err}");
    assert_eq!(
        m(&def).window_of("month=2025-02|realm=123|report=pl").unwrap().start.to_rfc3339(),
        "2025-02-01T00:00:00+00:00"
    );
    assert_eq!(def.order_index("month=2025-02|realm=123|report=pl"), 1);
}

proptest! {
    /// A key resolves to itself from any order of its parts.
    #[test]
    fn keys_round_trip_in_any_dimension_order(idx in 0usize..72, perm in Just([0usize, 1, 2]).prop_shuffle()) {
        let def = three();
        let ctx = ctx();
        let key = def.keys(&ctx)[idx].clone();
        let parts: Vec<&str> = key.split('|').collect();
        let shuffled: Vec<&str> = perm.iter().map(|&i| parts[i]).collect();
        prop_assert_eq!(def.resolve(&shuffled.join("|"), &ctx).unwrap(), key);
    }

    /// A range is the product of the time range and the fixed or whole other dimensions.
    #[test]
    fn range_expansion_is_the_product(a in 0i64..12, b in 0i64..12, realm in proptest::option::of(0usize..3), report in proptest::option::of(0usize..2)) {
        let def = three();
        let ctx = ctx();
        let tw = PartitionsDef::monthly("2025-01-01");
        let tw = tw.as_time_window().unwrap();
        let realms = ["123", "456", "9130"];
        let reports = ["pl", "bs"];
        let mut fixed = String::new();
        if let Some(r) = realm { fixed.push_str(&format!("|realm={}", realms[r])); }
        if let Some(r) = report { fixed.push_str(&format!("|report={}", reports[r])); }
        let res = def.range(&format!("{}{fixed}", tw.key(a)), &format!("{}{fixed}", tw.key(b)), &ctx);
        if a > b {
            // A reversed range is refused, not swapped (issue 14).
            prop_assert!(res.unwrap_err().to_string().contains("is reversed"));
            return Ok(());
        }
        let got = res.unwrap();
        let mut want = BTreeSet::new();
        for month in a.min(b)..=a.max(b) {
            for (ri, r) in realms.iter().enumerate() {
                for (pi, p) in reports.iter().enumerate() {
                    if realm.is_none_or(|x| x == ri) && report.is_none_or(|x| x == pi) {
                        want.insert(format!("month={}|realm={r}|report={p}", tw.key(month)));
                    }
                }
            }
        }
        prop_assert_eq!(got.len(), want.len());
        prop_assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    }

    /// Up and down agree for every pair of definitions and mapping: d reads u exactly when u is
    /// read by d.
    #[test]
    fn mappings_agree_up_and_down_per_dimension(case in 0usize..6, down_idx in 0usize..200, up_idx in 0usize..400) {
        let ctx = ctx();
        let realm_month = PartitionsDef::multi([("realm", PartitionsDef::dynamic("qbo_realms")), ("month", PartitionsDef::monthly("2025-01-01"))]);
        let realm_day = PartitionsDef::multi([("realm", PartitionsDef::dynamic("qbo_realms")), ("day", PartitionsDef::daily("2025-01-01"))]);
        let realms = PartitionsDef::dynamic("qbo_realms");
        let monthly = PartitionsDef::monthly("2025-01-01");
        let cases: Vec<(PartitionsDef, PartitionsDef, PartitionMapping)> = vec![
            // realm × day → realm × month: time dimensions pair although named differently.
            (realm_day.clone(), realm_month.clone(), PartitionMapping::infer(Some(&realm_day), Some(&realm_month)).unwrap()),
            // realm × month → realm: every month of the realm.
            (realm_month.clone(), realms.clone(), PartitionMapping::infer(Some(&realm_month), Some(&realms)).unwrap()),
            // realm → realm × month: the realm for every month.
            (realms.clone(), realm_month.clone(), PartitionMapping::infer(Some(&realms), Some(&realm_month)).unwrap()),
            // monthly → realm × month.
            (monthly.clone(), realm_month.clone(), PartitionMapping::infer(Some(&monthly), Some(&realm_month)).unwrap()),
            // realm × month → realm × month, the month before (declared).
            (realm_month.clone(), realm_month.clone(), PartitionMapping::dimensions([("realm", "realm", PartitionMapping::Identity), ("month", "month", PartitionMapping::time_window(-1, -1))])),
            // realm × month → monthly: every realm of the month.
            (realm_month.clone(), monthly.clone(), PartitionMapping::infer(Some(&realm_month), Some(&monthly)).unwrap()),
        ];
        let (up, down, mapping) = &cases[case];
        mapping.validate(Some(up), Some(down)).unwrap();
        let downs = down.keys(&ctx);
        let ups = up.keys(&ctx);
        let d = &downs[down_idx % downs.len()];
        let u = &ups[up_idx % ups.len()];
        let reads = mapping.upstream_keys(Some(up), Some(down), d, &ctx).unwrap();
        let read_by = mapping.downstream_keys(Some(up), Some(down), u, &ctx).unwrap();
        prop_assert_eq!(reads.contains(u), read_by.contains(d), "{} reads {:?}; {} read by {:?}", d, reads, u, read_by);
    }
}

#[test]
fn inferred_mappings_pair_dimensions_as_dagster_does() {
    let realm_month = PartitionsDef::multi([
        ("realm", PartitionsDef::dynamic("qbo_realms")),
        ("month", PartitionsDef::monthly("2025-01-01")),
    ]);
    let realm_day = PartitionsDef::multi([
        ("realm", PartitionsDef::dynamic("qbo_realms")),
        ("day", PartitionsDef::daily("2025-01-01")),
    ]);
    let infer = |u: &PartitionsDef, d: &PartitionsDef| PartitionMapping::infer(Some(u), Some(d)).map(|m| m.to_string());
    assert_eq!(infer(&realm_month, &realm_month).unwrap(), "identity");
    assert_eq!(infer(&realm_day, &realm_month).unwrap(), "day→month: time_window, realm: identity");
    assert_eq!(infer(&realm_month, &PartitionsDef::dynamic("qbo_realms")).unwrap(), "realm: identity");
    assert_eq!(infer(&PartitionsDef::daily("2025-01-01"), &realm_month).unwrap(), "month: time_window");
    let err = infer(&realm_month, &PartitionsDef::fixed(["a"])).unwrap_err().to_string();
    assert!(err.contains("they share no dimension"), "{err}");
    let ctx = ctx();
    // A month of a realm reads that realm's days of the month.
    let m = PartitionMapping::infer(Some(&realm_day), Some(&realm_month)).unwrap();
    let days = m.upstream_keys(Some(&realm_day), Some(&realm_month), "month=2025-02|realm=456", &ctx).unwrap();
    assert_eq!(days.len(), 28);
    assert_eq!(days[0], "day=2025-02-01|realm=456");
    // A realm's whole history reads every month of it.
    let m = PartitionMapping::infer(Some(&realm_month), Some(&PartitionsDef::dynamic("qbo_realms"))).unwrap();
    let months =
        m.upstream_keys(Some(&realm_month), Some(&PartitionsDef::dynamic("qbo_realms")), "9130", &ctx).unwrap();
    assert_eq!(months.len(), 12);
    assert!(months.iter().all(|k| k.ends_with("|realm=9130")));
    // A declared mapping naming a dimension that does not exist is refused.
    let bad = PartitionMapping::dimensions([("region", "realm", PartitionMapping::Identity)]);
    let err = bad.validate(Some(&realm_month), Some(&realm_month)).unwrap_err().to_string();
    assert!(err.contains("has no dimension \"region\"; its dimensions: \"month\", \"realm\""), "{err}");
}

#[test]
fn a_schedule_takes_the_latest_windows_for_every_other_key() {
    let ctx = ctx(); // 2026-01-01: December 2025 is the last closed month
    let realm_month = PartitionsDef::multi([
        ("realm", PartitionsDef::dynamic("qbo_realms")),
        ("month", PartitionsDef::monthly("2025-01-01")),
    ]);
    assert_eq!(
        realm_month.latest(&ctx, 2),
        [
            "month=2025-11|realm=123",
            "month=2025-11|realm=456",
            "month=2025-11|realm=9130",
            "month=2025-12|realm=123",
            "month=2025-12|realm=456",
            "month=2025-12|realm=9130"
        ]
    );
    assert_eq!(PartitionsDef::monthly("2025-01-01").latest(&ctx, 1), ["2025-12"]);
    assert_eq!(PartitionsDef::monthly("2025-12-01").latest(&ctx, 3), ["2025-12"], "no window before the first");
    assert_eq!(PartitionsDef::dynamic("qbo_realms").latest(&ctx, 2), ["9130"]);
}
