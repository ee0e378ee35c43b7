use chrono::TimeZone;

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn new_york() -> crate::tz::Tz {
    "America/New_York".parse().unwrap()
}

fn ny(ticks: &[DateTime<Utc>]) -> Vec<String> {
    ticks.iter().map(|t| t.with_timezone(&new_york()).format("%Y-%m-%d %H:%M %Z").to_string()).collect()
}

#[test]
fn a_daily_0230_schedule_in_new_york_across_both_dst_changes() {
    let s = schedule("nightly", "30 2 * * *", "America/New_York", "storage_bill").unwrap();
    // Spring forward 2026-03-08: 02:30 does not exist; the tick happens at 03:00 EDT, once.
    let spring = s.ticks_between(utc("2026-03-07T00:00:00Z"), utc("2026-03-10T00:00:00Z"), 10);
    assert_eq!(ny(&spring), ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]);
    // Fall back 2026-11-01: 02:30 happens once (01:00–02:00 repeats, 02:30 does not).
    let fall = s.ticks_between(utc("2026-10-31T00:00:00Z"), utc("2026-11-03T00:00:00Z"), 10);
    assert_eq!(ny(&fall), ["2026-10-31 02:30 EDT", "2026-11-01 02:30 EST", "2026-11-02 02:30 EST"]);
}

#[test]
fn an_hourly_schedule_has_23_and_25_ticks_on_dst_days_and_a_repeated_hour_ticks_twice() {
    let s = schedule("hourly", "5 * * * *", "America/New_York", "usage_snapshot").unwrap();
    let day = |d: &str, next: &str| {
        let from = new_york().from_local_datetime(&d.parse::<chrono::NaiveDateTime>().unwrap()).unwrap();
        let to = new_york().from_local_datetime(&next.parse::<chrono::NaiveDateTime>().unwrap()).unwrap();
        s.ticks_between(from.with_timezone(&Utc), to.with_timezone(&Utc), 100)
    };
    assert_eq!(day("2026-03-08T00:00:00", "2026-03-09T00:00:00").len(), 23);
    let fall = day("2026-11-01T00:00:00", "2026-11-02T00:00:00");
    assert_eq!(fall.len(), 25);
    let ones: Vec<String> = ny(&fall).into_iter().filter(|t| t.contains(" 01:05")).collect();
    assert_eq!(ones, ["2026-11-01 01:05 EDT", "2026-11-01 01:05 EST"]);
}

#[test]
fn month_ends_and_the_first_of_the_month() {
    let s = schedule("allocation", "0 0 1 * *", "America/New_York", "credit_allocation").unwrap();
    let ticks = s.ticks_between(utc("2025-12-15T00:00:00Z"), utc("2026-03-15T00:00:00Z"), 10);
    assert_eq!(ny(&ticks), ["2026-01-01 00:00 EST", "2026-02-01 00:00 EST", "2026-03-01 00:00 EST"]);
    let last_day = schedule("eom", "0 23 28-31 * *", "UTC", "x").unwrap();
    let feb = last_day.ticks_between(utc("2028-02-27T00:00:00Z"), utc("2028-03-01T00:00:00Z"), 10);
    assert_eq!(feb, [utc("2028-02-28T23:00:00Z"), utc("2028-02-29T23:00:00Z")], "a leap year's February");
}

#[test]
fn bad_cron_and_bad_zones_are_refused_with_the_reason() {
    let e = schedule("x", "0 2 * *", "UTC", "a").unwrap_err().to_string();
    assert!(e.starts_with("schedule x: \"0 2 * *\" is not a 5-field cron expression"), "{e}");
    assert!(schedule("x", "0 0 2 * * *", "UTC", "a").is_err(), "seconds are not accepted");
    let e = schedule("x", "0 2 * * *", "Mars/Olympus", "a").unwrap_err().to_string();
    assert_eq!(e, "schedule x: \"Mars/Olympus\" is not an IANA time zone (e.g. America/New_York, UTC)");
}

proptest::proptest! {
    /// Any cron text and zone is a schedule or a reason: never a panic, and a schedule's ticks
    /// are increasing.
    #[test]
    fn any_cron_text_is_a_schedule_or_a_reason(
        cron in "[0-9*/,-]{1,6}( [0-9*/,-]{1,6}){4}|[0-9a-zA-Z*/,? -]{0,30}",
        tz in "UTC|America/New_York|Nowhere/Else|",
    ) {
        if let Ok(s) = schedule("s", &cron, &tz, "a") {
            let ticks = s.ticks_between(utc("2025-03-08T00:00:00Z"), utc("2025-03-10T00:00:00Z"), 200);
            proptest::prop_assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{cron}: {ticks:?}");
        }
    }
}

/// The cheap check accepts what the full parse accepts, with the same error, so a schedule that
/// passes `schedule` always parses on its first tick read.
fn check_agrees_with_parse(cron: &str) {
    let full = parse_cron(cron).map(drop).map_err(|e| e.to_string());
    assert_eq!(check_cron(cron).map_err(|e| e.to_string()), full, "{cron:?}");
}

#[test]
fn the_cheap_cron_check_agrees_with_the_full_parse() {
    for cron in [
        "5 * * * *",
        "0 2 * * *",
        "0 6 3 * *",
        "0 3 * * 1",
        "*/15 9-17 * * MON-FRI",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5#3",
        "0 0 * * 5L",
        "0 0 ? * 7",
        "0 0 1 JAN,JUL *",
        "  0 0 * * *  ",
        "0\t0 * * *",
        "@daily",
        "@hourly",
        "@weekly",
        "",
        "0 0 * *",
        "0 0 * * * *",
        "0 0 * * * 2026",
        "60 * * * *",
        "0 24 * * *",
        "0 0 32 * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "a b c d e",
        "0 0 * * MON#6",
        "0 0 W * *",
        "5-1 * * * *",
        "*/0 * * * *",
        "@yearly 5",
    ] {
        check_agrees_with_parse(cron);
    }
}

proptest::proptest! {
    #[test]
    fn the_cheap_cron_check_agrees_with_the_full_parse_on_any_five_fields(
        fields in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("*".to_owned()),
                "[0-9]{1,2}",
                "[0-9]{1,2}-[0-9]{1,2}",
                "[*0-9]/[0-9]{1,2}",
                "[0-9]{1,2},[0-9]{1,2}",
                "[0-9*/,#LW?A-Z-]{1,6}",
            ],
            5,
        )
    ) {
        check_agrees_with_parse(&fields.join(" "));
    }
}
