//! Any key text for multi-dimensional definitions (`month=2025-12|realm=123`): a canonical key
//! that resolves to itself and is one of the definition's keys, or a refusal. Never a panic.

#![no_main]

use chrono::{TimeZone as _, Utc};
use engine::{PartitionsContext, PartitionsDef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (key, other) = input;
    let mut ctx = PartitionsContext::at(Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap());
    ctx.dynamic.insert("realms".to_owned(), vec!["123".to_owned(), "9130".to_owned()]);
    let defs = [
        PartitionsDef::multi([
            ("month", PartitionsDef::monthly("2024-11-01")),
            ("kind", PartitionsDef::fixed(["a", "b"])),
        ]),
        PartitionsDef::multi([
            ("month", PartitionsDef::monthly("2024-11-01")),
            ("realm", PartitionsDef::dynamic("realms")),
        ]),
        PartitionsDef::multi([
            ("day", PartitionsDef::daily("2025-02-20").timezone("Europe/Berlin")),
            ("kind", PartitionsDef::fixed(["x", "y"])),
            ("realm", PartitionsDef::dynamic("realms")),
        ]),
    ];
    for def in &defs {
        if let Ok(canonical) = def.resolve(key, &ctx) {
            let again = def.resolve(&canonical, &ctx);
            assert_eq!(again.as_ref().ok(), Some(&canonical), "{}: {key:?} -> {canonical:?}", def.describe());
            assert!(def.keys(&ctx).contains(&canonical), "{}: {canonical:?} is not one of its keys", def.describe());
        }
        let _ = def.range(key, other, &ctx);
        let _ = def.normalize_key(key);
        let _ = def.order_index(key);
    }
});
