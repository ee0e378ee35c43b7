//! Any key text, for every kind of single-dimension definition (time windows in several zones,
//! fixed, dynamic): it resolves to a canonical key that resolves to itself, or is refused; a
//! range between any two texts is keys or a refusal. Never a panic.

#![no_main]

use chrono::{TimeZone as _, Utc};
use engine::{PartitionsContext, PartitionsDef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (key, other) = input;
    let mut ctx = PartitionsContext::at(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    ctx.dynamic.insert("subs".to_owned(), vec!["sub-a".to_owned(), "sub-b".to_owned()]);
    let defs = [
        PartitionsDef::hourly("2025-12-01"),
        PartitionsDef::daily("2024-01-01"),
        PartitionsDef::weekly("2024-01-01"),
        PartitionsDef::monthly("2024-01-01"),
        PartitionsDef::hourly("2025-12-01").timezone("America/New_York"),
        PartitionsDef::daily("2024-01-01").timezone("Asia/Kolkata"),
        PartitionsDef::monthly("2024-01-01").timezone("Australia/Lord_Howe"),
        PartitionsDef::daily("2024-01-01").end_offset(1),
        PartitionsDef::fixed(["a", "b", "c"]),
        PartitionsDef::dynamic("subs"),
    ];
    for def in &defs {
        if let Ok(canonical) = def.resolve(key, &ctx) {
            let again = def.resolve(&canonical, &ctx);
            assert_eq!(again.as_ref().ok(), Some(&canonical), "{}: {key:?} -> {canonical:?}", def.describe());
        }
        if let Ok(keys) = def.range(key, other, &ctx) {
            assert!(keys.len() <= def.len(&ctx), "{}: a range has more keys than the definition", def.describe());
        }
        let _ = def.window_of(key);
    }
});
