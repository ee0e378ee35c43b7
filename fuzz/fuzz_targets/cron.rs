//! Any cron text and time-zone text: a schedule whose ticks across a DST change are strictly
//! increasing, or a reason. Never a panic.

#![no_main]

use chrono::{TimeZone as _, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (cron, tz) = input;
    if let Ok(schedule) = engine::automation::schedule("s", cron, tz, "a") {
        let (after, until) =
            (Utc.with_ymd_and_hms(2025, 3, 8, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2025, 3, 11, 0, 0, 0).unwrap());
        let ticks = schedule.ticks_between(after, until, 200);
        assert!(ticks.len() <= 200);
        assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{cron:?} {tz:?}: {ticks:?}");
        assert!(ticks.iter().all(|t| *t > after && *t <= until), "{cron:?} {tz:?}: {ticks:?}");
    }
});
