//! `robo-assets status`, end to end (process start to exit), over a store holding a year and a
//! half of the billing chain: ~10,000 hourly partitions, their daily bills, monthly allocations
//! and reports, all materialized by a real backfill first.
//!
//! `cargo bench --bench status`. Figures go to BENCHMARKS.md.

use std::process::Command;
use std::time::{Duration, Instant};

const NOW: &str = "2026-02-21T16:00:00Z"; // 10,000 hours after 2025-01-01

fn robo(home: &std::path::Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_robo-assets"))
        .args(args)
        .env("ROBO_ASSETS_HOME", home)
        .env("ROBO_ASSETS_NOW", NOW)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let t = robo(&home, &["backfill", "+usage_report", "--from", "2025-01", "--to", "2026-01", "--concurrency", "16"]);
    println!("set-up: backfill of 2025-01 .. 2026-01 (hours, days, allocations, reports) in {t:.2?}");
    for args in [
        vec!["status", "usage_snapshot"],
        vec!["status"],
        vec!["status", "storage_bill", "--from", "2025-01-01", "--to", "2025-12-31"],
    ] {
        let mut runs: Vec<Duration> = (0..15).map(|_| robo(&home, &args)).collect();
        runs.sort();
        let mean = runs.iter().sum::<Duration>() / runs.len() as u32;
        println!(
            "robo-assets {:<48} mean {:>8.2?}  min {:>8.2?}  max {:>8.2?}  (15 runs)",
            args.join(" "),
            mean,
            runs[0],
            runs[runs.len() - 1]
        );
    }
}
