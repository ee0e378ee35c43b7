use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn ctx() -> PartitionsContext {
    PartitionsContext::at(at(2026, 1, 1, 0))
}

fn tw(def: &PartitionsDef) -> &TimeWindowPartitions {
    def.as_time_window().unwrap()
}

fn defs() -> Vec<PartitionsDef> {
    vec![
        PartitionsDef::hourly("2024-01-01"),
        PartitionsDef::daily("2024-01-01"),
        PartitionsDef::weekly("2024-01-01"),
        PartitionsDef::monthly("2024-01-01"),
        PartitionsDef::hourly("2024-01-01").timezone("America/New_York"),
        PartitionsDef::daily("2024-01-01").timezone("America/New_York"),
        PartitionsDef::weekly("2024-01-07").timezone("Europe/Berlin"),
        PartitionsDef::monthly("2024-01-01").timezone("Australia/Lord_Howe"),
        PartitionsDef::daily("2024-01-01").timezone("Asia/Kolkata"),
    ]
}

proptest! {
    /// A key written digit by digit is what chrono's `format` writes for its cadence, across
    /// years, leap days and time zones (the keys stored in every lineage store so far).
    #[test]
    fn keys_are_written_as_chrono_formats_them(def_idx in 0usize..9, idx in -2_000i64..200_000) {
        let defs = defs();
        let tw = tw(&defs[def_idx]);
        let local = tw.local_start(idx);
        let expected = match tw.cadence {
            Cadence::Hourly if tw.tz == Tz::UTC => local.format("%Y-%m-%dT%H:%M").to_string(),
            Cadence::Hourly => tw.utc_start(idx).with_timezone(&tw.tz).format("%Y-%m-%dT%H:%M%:z").to_string(),
            Cadence::Daily | Cadence::Weekly => local.format("%Y-%m-%d").to_string(),
            Cadence::Monthly => local.format("%Y-%m").to_string(),
        };
        prop_assert_eq!(tw.key(idx), expected);
    }
}

#[test]
fn keys_of_years_with_fewer_or_more_than_four_digits_are_written_as_chrono_formats_them() {
    for year in [0, 7, 999, 2025, 9999, 10_000, -1] {
        let at = NaiveDate::from_ymd_opt(year, 2, 3).unwrap().and_hms_opt(4, 5, 0).unwrap();
        assert_eq!(key_text(at, KeyUpTo::Minute), at.format("%Y-%m-%dT%H:%M").to_string(), "{year}");
        assert_eq!(key_text(at, KeyUpTo::Day), at.format("%Y-%m-%d").to_string(), "{year}");
        assert_eq!(key_text(at, KeyUpTo::Month), at.format("%Y-%m").to_string(), "{year}");
    }
}

proptest! {
    /// Windows tile time: each starts where the previous ended (by construction), and each is
    /// the calendar unit it claims to be, checked against the local calendar independently:
    /// an hour is 3,600 s; a day, week or month starts at local midnight (or just after a DST
    /// gap) and advances the local date by exactly one day, seven days or one month.
    #[test]
    fn windows_are_the_calendar_units_they_claim(def_idx in 0usize..9, idx in -500i64..20_000) {
        let def = &defs()[def_idx];
        let tw = tw(def);
        let (a, b) = (tw.window(idx), tw.window(idx + 1));
        prop_assert!(a.start < a.end, "window {idx} of {def} is empty");
        prop_assert_eq!(a.end, b.start);
        let tz = tw.timezone();
        let (la, lb) = (a.start.with_timezone(tz).naive_local(), b.start.with_timezone(tz).naive_local());
        match tw.cadence() {
            Cadence::Hourly => prop_assert_eq!((a.end - a.start).num_seconds(), 3600),
            cadence => {
                prop_assert!(la.hour() <= 1 && la.minute() == 0, "{def} window {idx} starts at local {la}");
                let expected = match cadence {
                    Cadence::Daily => la.date().succ_opt().unwrap(),
                    Cadence::Weekly => la.date() + Duration::days(7),
                    _ => la.date().checked_add_months(Months::new(1)).unwrap(),
                };
                prop_assert_eq!(lb.date(), expected, "{} window {} starts {}", def, idx, la);
            }
        }
    }

    #[test]
    fn key_window_key_round_trips(def_idx in 0usize..9, idx in -500i64..20_000) {
        let def = &defs()[def_idx];
        let tw = tw(def);
        let key = tw.key(idx);
        prop_assert_eq!(tw.parse_index(&key), Ok(idx), "key {} of {}", key, def);
        let w = tw.window(idx);
        prop_assert_eq!(tw.index_containing(w.start), idx);
        prop_assert_eq!(tw.index_containing(w.end - Duration::nanoseconds(1)), idx);
        prop_assert_eq!(tw.index_containing(w.start - Duration::nanoseconds(1)), idx - 1, "just before window {}", idx);
    }

}

proptest! {
    // Listing every key of a definition is O(keys); fewer cases keep the suite fast.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_range_expands_to_exactly_the_listed_keys(def_idx in 0usize..4, a in 0i64..200, len in 0i64..200) {
        let def = &defs()[def_idx];
        let all = def.keys(&ctx());
        let (a, b) = (a as usize, (a + len) as usize);
        prop_assume!(b < all.len());
        prop_assert_eq!(def.range(&all[a], &all[b], &ctx()).unwrap(), all[a..=b].to_vec());
    }
}

#[test]
fn new_york_days_have_23_and_25_hours_on_dst_transitions() {
    let day = PartitionsDef::daily("2025-01-01").timezone("America/New_York");
    let hours = |key: &str| {
        let w = day.window_of(key).unwrap();
        (w.end - w.start).num_hours()
    };
    assert_eq!(hours("2025-03-09"), 23);
    assert_eq!(hours("2025-11-02"), 25);
    assert_eq!(hours("2025-12-15"), 24);
    // The 2025-03-09 window starts at local midnight, 05:00 UTC.
    assert_eq!(day.window_of("2025-03-09").unwrap().start, at(2025, 3, 9, 5));
}

#[test]
fn hourly_keys_in_a_dst_zone_carry_their_offset() {
    let hourly = PartitionsDef::hourly("2025-01-01").timezone("America/New_York");
    let tw = tw(&hourly);
    // 01:00 happens twice on 2025-11-02; the offset tells them apart.
    let first = tw.index_containing(at(2025, 11, 2, 5));
    let second = tw.index_containing(at(2025, 11, 2, 6));
    assert_eq!(tw.key(first), "2025-11-02T01:00-04:00");
    assert_eq!(tw.key(second), "2025-11-02T01:00-05:00");
    assert_eq!(tw.parse_index("2025-11-02T01:00-05:00"), Ok(second));
    // Without an offset, an ambiguous wall time means the first occurrence.
    assert_eq!(tw.parse_index("2025-11-02T01:00"), Ok(first));
    // 02:30 on 2025-03-09 never happens in New York.
    assert!(tw.parse_index("2025-03-09T02:00").is_err());
}

#[test]
fn month_ends_and_leap_years() {
    let month = PartitionsDef::monthly("2024-01-01");
    let days = |key: &str| {
        let w = month.window_of(key).unwrap();
        (w.end - w.start).num_days()
    };
    assert_eq!(days("2024-02"), 29);
    assert_eq!(days("2025-02"), 28);
    assert_eq!(days("2025-12"), 31);
    let day = PartitionsDef::daily("2024-01-01");
    assert_eq!(day.resolve("2024-02-29", &ctx()), Ok("2024-02-29".to_owned()));
    assert!(matches!(day.resolve("2025-02-29", &ctx()), Err(PartitionKeyError::Malformed { .. })));
    // The day after the last day of a month is the first of the next.
    let i = tw(&day).parse_index("2025-01-31").unwrap();
    assert_eq!(tw(&day).key(i + 1), "2025-02-01");
}

#[test]
fn dagster_style_aliases_resolve_to_canonical_keys() {
    let c = ctx();
    assert_eq!(PartitionsDef::hourly("2025-01-01").resolve("2025-12-15-02:00", &c), Ok("2025-12-15T02:00".to_owned()));
    assert_eq!(PartitionsDef::monthly("2025-01-01").resolve("2025-12-01", &c), Ok("2025-12".to_owned()));
    assert!(PartitionsDef::monthly("2025-01-01").resolve("2025-12-15", &c).is_err(), "a mid-month date is not a month");
    assert!(PartitionsDef::hourly("2025-01-01").resolve("2025-12-15T02:30", &c).is_err(), "not on the hour");
    assert!(PartitionsDef::weekly("2025-12-01").resolve("2025-12-09", &c).is_err(), "not a week start (Mondays)");
    assert_eq!(PartitionsDef::weekly("2025-12-01").resolve("2025-12-08", &c), Ok("2025-12-08".to_owned()));
}

#[test]
fn a_partition_exists_once_its_window_closes_unless_the_end_offset_says_otherwise() {
    let now = PartitionsContext::at(at(2025, 12, 15, 10));
    let day = PartitionsDef::daily("2025-12-01");
    assert_eq!(day.keys(&now).last().unwrap(), "2025-12-14");
    let err = day.resolve("2025-12-15", &now).unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition \"2025-12-15\" is out of range for daily partitions: its window closes at \
         2025-12-16T00:00:00+00:00 and does not exist yet; valid range is 2025-12-01 ..= 2025-12-14"
    );
    let ahead = PartitionsDef::daily("2025-12-01").end_offset(1);
    assert_eq!(ahead.keys(&now).last().unwrap(), "2025-12-15");
    assert!(PartitionsDef::daily("2025-12-20").keys(&now).is_empty());
    let hourly = PartitionsDef::hourly("2025-12-15");
    assert_eq!(hourly.len(&now), 10);
}

#[test]
fn static_and_dynamic_keys() {
    let mut c = ctx();
    let realms = PartitionsDef::fixed(["us", "eu"]);
    assert_eq!(realms.resolve("eu", &c), Ok("eu".to_owned()));
    let err = realms.resolve("apac", &c).unwrap_err();
    assert_eq!(err.to_string(), "unknown partition \"apac\" for static [us, eu] partitions; valid keys: us, eu");
    let subs = PartitionsDef::dynamic("subscriptions");
    assert!(subs.resolve("sub_1", &c).is_err());
    c.dynamic.insert("subscriptions".into(), vec!["sub_1".into(), "sub_2".into()]);
    assert_eq!(subs.resolve("sub_1", &c), Ok("sub_1".to_owned()));
    assert_eq!(subs.range("sub_1", "sub_2", &c).unwrap(), ["sub_1", "sub_2"]);
}

#[test]
fn ranges_are_compressed_for_display() {
    let hourly = PartitionsDef::hourly("2025-01-01");
    let keys: Vec<String> =
        ["2025-12-15T00:00", "2025-12-15T01:00", "2025-12-15T02:00", "2025-12-15T05:00"].map(String::from).to_vec();
    assert_eq!(compress_ranges(Some(&hourly), &keys), ["2025-12-15T00:00..2025-12-15T02:00 (3)", "2025-12-15T05:00"]);
}

#[test]
fn a_dynamic_key_format_normalizes_what_is_typed() {
    fn cik(key: &str) -> Result<String, String> {
        if (1..=10).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_digit()) {
            Ok(format!("{key:0>10}"))
        } else {
            Err("1 to 10 digits (a CIK)".to_owned())
        }
    }
    let def = PartitionsDef::dynamic("sec_ciks").key_format(cik);
    let mut ctx = ctx();
    ctx.dynamic.insert("sec_ciks".into(), vec!["0000320193".into()]);
    assert_eq!(def.normalize_key("320193").unwrap(), "0000320193");
    assert_eq!(def.resolve("320193", &ctx).unwrap(), "0000320193");
    let err = def.resolve("AAPL", &ctx).unwrap_err().to_string();
    assert_eq!(
        err,
        "malformed partition key \"AAPL\" for dynamic sec_ciks partitions: expected 1 to 10 digits (a CIK)"
    );
    // In a dimension too.
    let multi = PartitionsDef::multi([("cik", def.clone()), ("month", PartitionsDef::monthly("2025-01-01"))]);
    assert_eq!(multi.resolve("cik=320193|month=2025-03", &ctx).unwrap(), "cik=0000320193|month=2025-03");
    assert_eq!(multi.dynamic_def("sec_ciks"), Some(&def));
}

/// Issue 14: a reversed range is refused, not silently swapped, on every kind of definition.
#[test]
fn a_reversed_range_is_refused() {
    let hourly = PartitionsDef::hourly("2024-01-01");
    let err = hourly.range("2025-12-15T06:00", "2025-12-15T05:00", &ctx()).unwrap_err();
    assert!(matches!(err, PartitionKeyError::Reversed { .. }), "{err}");
    assert!(err.to_string().contains("--from must not come after --to"), "{err}");
    let daily = PartitionsDef::daily("2024-01-01");
    assert!(matches!(daily.range("2025-12-16", "2025-12-15", &ctx()), Err(PartitionKeyError::Reversed { .. })));
    assert_eq!(daily.range("2025-12-15", "2025-12-15", &ctx()).unwrap(), ["2025-12-15"]);
}

proptest! {
    /// Any key text, for every kind of definition, resolves to a canonical key (which resolves
    /// to itself) or is refused: never a panic. Ranges between any two texts likewise.
    #[test]
    fn any_key_text_resolves_canonically_or_is_refused(
        key in "[0-9T:|=a-z-]{0,24}|\\PC{0,16}",
        other in "[0-9T:|=a-z-]{0,24}",
    ) {
        let mut all = defs();
        all.push(PartitionsDef::fixed(["a", "b", "c"]));
        all.push(PartitionsDef::multi([("month", PartitionsDef::monthly("2024-01-01")), ("kind", PartitionsDef::fixed(["a", "b"]))]));
        for def in &all {
            if let Ok(canonical) = def.resolve(&key, &ctx()) {
                let again = def.resolve(&canonical, &ctx());
                proptest::prop_assert!(again.as_ref().is_ok_and(|k| *k == canonical), "{}: {key:?} -> {canonical:?} -> {again:?}", def.describe());
            }
            let _ = def.range(&key, &other, &ctx());
        }
    }
}
