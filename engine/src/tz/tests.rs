use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};

use super::*;

fn local(s: &str) -> NaiveDateTime {
    s.parse().unwrap()
}

fn ny() -> Tz {
    "America/New_York".parse().unwrap()
}

/// The UTC instant `utc` on the wall clock of `tz`, as `format` writes it.
fn wall(tz: &str, utc: &str, format: &str) -> String {
    let t: DateTime<Utc> = utc.parse().unwrap();
    t.with_timezone(&tz.parse::<Tz>().unwrap()).format(format).to_string()
}

#[test]
fn names_are_looked_up_ignoring_case_and_shown_as_the_database_spells_them() {
    assert_eq!("america/new_york".parse::<Tz>().unwrap().name(), "America/New_York");
    assert_eq!("UTC".parse::<Tz>().unwrap(), Tz::UTC);
    assert_eq!(Tz::UTC.name(), "UTC");
    assert_eq!("Asia/Kolkata".parse::<Tz>().unwrap().to_string(), "Asia/Kolkata");
    for bad in ["", "Mars/Olympus_Mons", "Etc/Unknown", "America/New York"] {
        assert_eq!(bad.parse::<Tz>(), Err(UnknownTimeZone), "{bad:?}");
    }
}

#[test]
fn a_skipped_hour_has_no_instant_and_a_repeated_one_has_two_earlier_first() {
    let tz = ny();
    assert_eq!(tz.from_local_datetime(&local("2026-03-08T02:30:00")), LocalResult::None);
    let LocalResult::Ambiguous(a, b) = tz.from_local_datetime(&local("2026-11-01T01:30:00")) else {
        panic!("01:30 on 2026-11-01 happens twice in New York")
    };
    assert_eq!(a.with_timezone(&Utc).to_rfc3339(), "2026-11-01T05:30:00+00:00");
    assert_eq!(b.with_timezone(&Utc).to_rfc3339(), "2026-11-01T06:30:00+00:00");
    assert_eq!(
        (a.format("%H:%M %Z %:z").to_string(), b.format("%H:%M %Z %:z").to_string()),
        ("01:30 EDT -04:00".to_owned(), "01:30 EST -05:00".to_owned())
    );
    let single = tz.from_local_datetime(&local("2026-07-04T12:00:00")).unwrap();
    assert_eq!(single.to_rfc3339(), "2026-07-04T12:00:00-04:00");
}

#[test]
fn offsets_and_abbreviations_at_instants_in_zones_of_every_shape() {
    for (tz, utc, expected) in [
        ("Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01 05:30 IST +05:30"),
        ("Asia/Kathmandu", "2026-01-01T00:00:00Z", "2026-01-01 05:45 +0545 +05:45"),
        ("America/St_Johns", "2026-07-01T12:00:00Z", "2026-07-01 09:30 NDT -02:30"),
        ("Australia/Sydney", "2026-01-15T00:00:00Z", "2026-01-15 11:00 AEDT +11:00"),
        ("Europe/London", "2026-03-29T00:59:59Z", "2026-03-29 00:59 GMT +00:00"),
        ("Europe/London", "2026-03-29T01:00:00Z", "2026-03-29 02:00 BST +01:00"),
        ("UTC", "2026-06-01T00:00:00Z", "2026-06-01 00:00 UTC +00:00"),
        // Dublin's standard time is summer's IST; winter's GMT is, in the database, a negative save.
        ("Europe/Dublin", "2026-01-15T12:00:00Z", "2026-01-15 12:00 GMT +00:00"),
        ("Europe/Dublin", "2026-07-15T12:00:00Z", "2026-07-15 13:00 IST +01:00"),
        // Lord Howe Island moves its clocks by half an hour.
        ("Australia/Lord_Howe", "2026-07-15T00:00:00Z", "2026-07-15 10:30 +1030 +10:30"),
        ("Australia/Lord_Howe", "2026-01-15T00:00:00Z", "2026-01-15 11:00 +11 +11:00"),
    ] {
        assert_eq!(wall(tz, utc, "%Y-%m-%d %H:%M %Z %:z"), expected, "{tz} at {utc}");
    }
}

#[test]
fn a_local_wall_time_and_back_agree_for_a_year_of_every_hour() {
    // Every UTC hour of 2026 in New York maps to a wall time whose offsets include that one.
    let tz = ny();
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut repeated = 0;
    for h in 0..(365 * 24) {
        let t = start + Duration::hours(h);
        let local = t.with_timezone(&tz);
        match tz.from_local_datetime(&local.naive_local()) {
            LocalResult::Single(back) => assert_eq!(back, t),
            LocalResult::Ambiguous(a, b) => {
                assert!(a == t || b == t, "{t}");
                assert_eq!(b - a, Duration::hours(1));
                repeated += 1;
            }
            LocalResult::None => panic!("{t} is a wall time in New York"),
        }
    }
    // 01:xx on 2026-11-01 is the one repeated hour, seen from both of its instants.
    assert_eq!(repeated, 2);
}

#[test]
fn a_half_hour_daylight_saving_change_has_a_half_hour_gap_and_overlap() {
    let tz: Tz = "Australia/Lord_Howe".parse().unwrap();
    // 2026-10-04 02:00 → 02:30: a half-hour gap.
    assert_eq!(tz.from_local_datetime(&local("2026-10-04T02:15:00")), LocalResult::None);
    // 2026-04-05 02:00 → 01:30: 01:30–02:00 happens twice, half an hour apart.
    match tz.from_local_datetime(&local("2026-04-05T01:45:00")) {
        LocalResult::Ambiguous(a, b) => assert_eq!(b - a, Duration::minutes(30)),
        other => panic!("01:45 on 2026-04-05 is repeated in Lord Howe, got {other:?}"),
    }
}

#[test]
fn a_zone_is_one_value_whatever_the_spelling_it_was_looked_up_by() {
    use std::collections::HashSet;
    let zones: HashSet<Tz> =
        ["America/New_York", "america/new_york", "AMERICA/NEW_YORK"].iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(zones.len(), 1);
    assert_ne!(ny(), Tz::UTC);
    // Links keep their own name, as in the database.
    assert_eq!("US/Eastern".parse::<Tz>().unwrap().name(), "US/Eastern");
}

proptest::proptest! {
    /// Any date-time chrono can hold, leap seconds included, has offsets in any zone: beyond
    /// the database's years the offset at its bound.
    #[test]
    fn any_date_time_has_an_offset_and_local_times_never_panic(
        secs in chrono::DateTime::<Utc>::MIN_UTC.timestamp()..=chrono::DateTime::<Utc>::MAX_UTC.timestamp(),
        nanos in 0u32..2_000_000_000,
        zone in proptest::sample::select(vec!["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
    ) {
        let tz: Tz = zone.parse().unwrap();
        let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) else { return Ok(()) };
        let local = t.naive_utc();
        let _ = tz.offset_from_utc_datetime(&local);
        let _ = tz.offset_from_local_datetime(&local);
        let _ = tz.offset_from_local_date(&local.date());
        let _ = tz.offset_from_utc_date(&local.date());
    }
}
