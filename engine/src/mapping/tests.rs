use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

fn ctx() -> PartitionsContext {
    PartitionsContext::at(chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap())
}

fn up(mapping: PartitionMapping, upstream: &PartitionsDef, downstream: &PartitionsDef, key: &str) -> Vec<String> {
    mapping.upstream_keys(Some(upstream), Some(downstream), key, &ctx()).unwrap()
}

#[test]
fn a_day_reads_its_24_hours() {
    let keys = up(
        PartitionMapping::time_window(0, 0),
        &PartitionsDef::hourly("2025-01-01"),
        &PartitionsDef::daily("2025-01-01"),
        "2025-12-15",
    );
    assert_eq!(keys.len(), 24);
    assert_eq!((keys[0].as_str(), keys[23].as_str()), ("2025-12-15T00:00", "2025-12-15T23:00"));
}

#[test]
fn a_new_york_day_reads_23_or_25_utc_hours_on_dst_days() {
    let hourly = PartitionsDef::hourly("2025-01-01");
    let daily = PartitionsDef::daily("2025-01-01").timezone("America/New_York");
    let m = PartitionMapping::time_window(0, 0);
    assert_eq!(up(m.clone(), &hourly, &daily, "2025-03-09").len(), 23);
    assert_eq!(up(m.clone(), &hourly, &daily, "2025-11-02").len(), 25);
    assert_eq!(up(m.clone(), &hourly, &daily, "2025-11-02")[0], "2025-11-02T04:00");
}

#[test]
fn a_month_with_offset_minus_one_reads_the_previous_months_days() {
    let keys = up(
        PartitionMapping::time_window(-1, -1),
        &PartitionsDef::daily("2025-01-01"),
        &PartitionsDef::monthly("2025-01-01"),
        "2025-03",
    );
    assert_eq!(keys.len(), 28);
    assert_eq!((keys[0].as_str(), keys[27].as_str()), ("2025-02-01", "2025-02-28"));
    // Before the upstream's first partition there is nothing to read.
    assert!(
        up(
            PartitionMapping::time_window(-1, -1),
            &PartitionsDef::daily("2025-01-01"),
            &PartitionsDef::monthly("2025-01-01"),
            "2025-01"
        )
        .is_empty()
    );
}

#[test]
fn an_upstream_that_starts_later_is_not_read_before_its_start() {
    let hourly = PartitionsDef::hourly("2025-02-01");
    let daily = PartitionsDef::daily("2025-01-01");
    assert!(up(PartitionMapping::time_window(0, 0), &hourly, &daily, "2025-01-31").is_empty());
    assert_eq!(up(PartitionMapping::time_window(0, 0), &hourly, &daily, "2025-02-01").len(), 24);
    let m = PartitionMapping::time_window(0, 0);
    assert_eq!(m.downstream_keys(Some(&hourly), Some(&daily), "2025-02-01T00:00", &ctx()).unwrap(), ["2025-02-01"]);
}

#[test]
fn a_month_reads_744_hours_directly() {
    let keys = up(
        PartitionMapping::time_window(0, 0),
        &PartitionsDef::hourly("2025-01-01"),
        &PartitionsDef::monthly("2025-01-01"),
        "2025-12",
    );
    assert_eq!(keys.len(), 744);
}

#[test]
fn defaults_are_inferred_as_in_dagster() {
    let hourly = PartitionsDef::hourly("2025-01-01");
    let daily = PartitionsDef::daily("2025-01-01");
    let realms = PartitionsDef::fixed(["us", "eu"]);
    assert_eq!(PartitionMapping::infer(Some(&hourly), Some(&daily)), Ok(PartitionMapping::time_window(0, 0)));
    assert_eq!(PartitionMapping::infer(Some(&realms), Some(&realms)), Ok(PartitionMapping::Identity));
    assert_eq!(PartitionMapping::infer(None, Some(&daily)), Ok(PartitionMapping::AllPartitions));
    assert_eq!(PartitionMapping::infer(Some(&daily), None), Ok(PartitionMapping::AllPartitions));
    let err = PartitionMapping::infer(Some(&realms), Some(&daily)).unwrap_err();
    assert!(err.0.contains("no default mapping from static [us, eu] to daily"), "{}", err.0);
    assert!(PartitionMapping::Identity.validate(Some(&hourly), Some(&daily)).is_err());
    assert!(PartitionMapping::time_window(0, 0).validate(Some(&realms), Some(&daily)).is_err());
}

#[test]
fn all_and_last_partitions() {
    let daily = PartitionsDef::daily("2026-05-01");
    let all = PartitionMapping::AllPartitions.upstream_keys(Some(&daily), None, "", &ctx()).unwrap();
    assert_eq!(all.len(), 31);
    let last = PartitionMapping::LastPartition.upstream_keys(Some(&daily), None, "", &ctx()).unwrap();
    assert_eq!(last, ["2026-05-31"]);
    assert_eq!(PartitionMapping::AllPartitions.upstream_keys(None, Some(&daily), "2026-05-03", &ctx()).unwrap(), [""]);
}

fn time_defs() -> Vec<PartitionsDef> {
    vec![
        PartitionsDef::hourly("2025-01-01"),
        PartitionsDef::daily("2025-01-01"),
        PartitionsDef::daily("2025-01-01").timezone("America/New_York"),
        PartitionsDef::weekly("2025-01-06"),
        PartitionsDef::monthly("2025-01-01"),
    ]
}

proptest! {
    /// `d` reads `u` exactly when `u`'s downstream keys contain `d`: the two directions agree.
    #[test]
    fn upstream_and_downstream_mappings_agree(
        u_def in 0usize..5, d_def in 0usize..5, idx in 30i64..400, so in -2i64..=0, width in 0i64..=1,
    ) {
        let defs = time_defs();
        let (upd, downd) = (&defs[u_def], &defs[d_def]);
        let m = PartitionMapping::time_window(so, so + width);
        let d_key = downd.as_time_window().unwrap().key(idx);
        let ups = m.upstream_keys(Some(upd), Some(downd), &d_key, &ctx()).unwrap();
        for u_key in &ups {
            let downs = m.downstream_keys(Some(upd), Some(downd), u_key, &ctx()).unwrap();
            prop_assert!(downs.contains(&d_key), "{d_key} reads {u_key} but {u_key} does not map back");
        }
        // And nothing else maps onto d: check the neighbours just outside the read set.
        if let (Some(first), Some(last)) = (ups.first(), ups.last()) {
            let tw = upd.as_time_window().unwrap();
            for outside in [tw.parse_index(first).unwrap() - 1, tw.parse_index(last).unwrap() + 1] {
                if outside < 0 { continue; }
                let downs = m.downstream_keys(Some(upd), Some(downd), &tw.key(outside), &ctx()).unwrap();
                prop_assert!(!downs.contains(&d_key), "{} maps onto {d_key} but is not read by it", tw.key(outside));
            }
        }
    }

    /// Mappings compose: hour → day → month reads the same hours as hour → month.
    #[test]
    fn mappings_compose(month in 0i64..15) {
        let (h, d, m) = (PartitionsDef::hourly("2025-01-01"), PartitionsDef::daily("2025-01-01"), PartitionsDef::monthly("2025-01-01"));
        let tw = PartitionMapping::time_window(0, 0);
        let key = m.as_time_window().unwrap().key(month);
        let via_days: Vec<String> = up(tw.clone(), &d, &m, &key).iter().flat_map(|day| up(tw.clone(), &h, &d, day)).collect();
        prop_assert_eq!(via_days, up(tw, &h, &m, &key));
    }
}
