use chrono::{TimeZone, Utc};
use lineage::{AutomationStore, LineageStore, NewTick, SqliteStore, TickStatus};

use super::*;

fn at(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hours)
}

#[test]
fn an_age_is_whole_days_or_hours() {
    assert_eq!(parse_age("30d"), Ok(chrono::Duration::days(30)));
    assert_eq!(parse_age("12h"), Ok(chrono::Duration::hours(12)));
    assert_eq!(parse_age(" 7d "), Ok(chrono::Duration::days(7)));
    for bad in ["", "d", "0d", "-1d", "+3d", "1.5d", "30", "30m", "30 d", "7w", "99999999999999999d", "3€", "€", "30д"]
    {
        let err = parse_age(bad).unwrap_err();
        assert!(err.contains("is not an age: use a whole number of days or hours"), "{bad}: {err}");
    }
}

/// A schedule's tick at `hours`, requesting nothing.
fn tick(hours: i64) -> NewTick {
    NewTick::empty("hourly", at(hours), TickStatus::Skipped, "", at(hours))
}

#[tokio::test]
async fn one_pass_an_hour_across_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    store.ensure_instigators(&[("hourly".into(), lineage::InstigatorKind::Schedule)], at(0)).await.unwrap();
    for h in 0..100 {
        store.commit_tick(&tick(h)).await.unwrap();
    }
    let store: &dyn LineageStore = &store;
    let age = chrono::Duration::hours(48);
    // Daemon a prunes at hour 100: ticks before hour 52 go.
    let first = pass(store, age, "daemon-a", at(100)).await.unwrap().expect("due");
    assert_eq!(first.ticks, 52);
    // Within the hour neither daemon prunes again, a itself included.
    store.commit_tick(&tick(100)).await.unwrap();
    assert_eq!(pass(store, age, "daemon-b", at(100) + chrono::Duration::minutes(30)).await.unwrap(), None);
    assert_eq!(pass(store, age, "daemon-a", at(100) + chrono::Duration::minutes(59)).await.unwrap(), None);
    // An hour later, whichever looks first does (the ticks at hours 52 and 53 go).
    let later = pass(store, age, "daemon-b", at(101) + chrono::Duration::seconds(1)).await.unwrap().expect("due");
    assert_eq!(later.ticks, 2);
    assert_eq!(pass(store, age, "daemon-a", at(101) + chrono::Duration::seconds(2)).await.unwrap(), None);
    assert_eq!(store.ticks("hourly", None, 1_000).await.unwrap().len(), 47);
}
