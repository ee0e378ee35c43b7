//! A synthetic project for the web view's benchmark (`BENCHMARKS.md`): `SYNTHETIC_ASSETS`
//! assets (default 1,000) in layers of 20, each reading two assets of the layer before, and
//! one hourly asset with `SYNTHETIC_HOURS` partitions (default 100,000). Compute functions write
//! nothing; the benchmark fills the lineage store with its own SQL.
//!
//! `cargo run --release --example synthetic -- ui`

use std::process::ExitCode;

use robo_assets::{AssetDef, Output, PartitionsDef, Project, asset};

fn number(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    let n = number("SYNTHETIC_ASSETS", 1000);
    let hours = number("SYNTHETIC_HOURS", 100_000);
    const LAYER: usize = 20;
    let mut assets: Vec<AssetDef> = (0..n)
        .map(|i| {
            let mut a = asset(&format!("a{i:05}"))
                .group(&format!("g{}", i / 100))
                .description("synthetic")
                .tag("kind", "synthetic");
            if i >= LAYER {
                let layer_start = (i / LAYER - 1) * LAYER;
                let (first, mut second) = (i % LAYER, (i * 7 + 3) % LAYER);
                if second == first {
                    second = (second + 1) % LAYER;
                }
                a = a.dep(&format!("a{:05}", layer_start + first)).dep(&format!("a{:05}", layer_start + second));
            }
            a.compute(|_ctx| async move { Ok(Output::none()) })
        })
        .collect();
    // Hourly partitions ending now: start far enough back for `hours` of them.
    let start = chrono::Utc::now() - chrono::Duration::hours(hours as i64);
    assets.push(
        asset("hourly")
            .partitions(PartitionsDef::hourly(&start.format("%Y-%m-%d").to_string()))
            .compute(|_ctx| async move { Ok(Output::none()) }),
    );
    Project::new("synthetic").assets(assets).main()
}
