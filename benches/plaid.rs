//! A Plaid item with 10,000 transactions over 20 pages (count 500), synced against the fixture
//! server on 127.0.0.1 (`resources::plaid::fixture`).
//!
//! `cargo bench --bench plaid` measures, five times each: the client alone (`PlaidClient::sync`
//! from an empty cursor: 20 requests, JSON parsing, exact amounts), and the whole first
//! materialization through the binary (`robo-assets materialize plaid_transactions -p item-1`,
//! process start to exit: opening the stores, the sync, the change log and the Parquet output,
//! recording it). Figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use resources::plaid::fixture::PlaidFixture;
use resources::plaid::{PlaidConfig, PlaidItems, PlaidSource, Secret};
use resources::{PlaidClient, SqliteAppDb};

const CLIENT_ID: &str = "bench-client";
const SECRET: &str = "bench-secret";
const TOKEN: &str = "access-bench-token";
const TRANSACTIONS: usize = 10_000;
const RUNS: usize = 5;

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1e3)).collect();
    println!("{name}: median {:.0} ms (runs: {} ms)", times[times.len() / 2].as_secs_f64() * 1e3, ms.join(", "));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fixture = PlaidFixture::new(CLIENT_ID, SECRET, TOKEN);
    fixture.add_generated(0, TRANSACTIONS);
    let url = fixture.serve().await;
    let dir = tempfile::tempdir().unwrap();

    // The client alone.
    let db = SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap();
    db.link_plaid_item("item-1", &Secret::new(TOKEN), chrono::Utc::now()).await.unwrap();
    let client =
        PlaidClient::new(&url, url.clone(), PlaidConfig::new(CLIENT_ID, Secret::new(SECRET)), Arc::new(db)).unwrap();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let batch = client.sync("item-1", "").await.unwrap();
        times.push(started.elapsed());
        assert_eq!((batch.changes.len(), batch.pages), (TRANSACTIONS, 20));
    }
    summary("client sync, 10,000 transactions over 20 pages", times);

    // The first materialization through the binary, in a fresh home each time.
    let bin = env!("CARGO_BIN_EXE_robo-assets");
    let mut times = Vec::new();
    for run in 0..RUNS {
        let home = dir.path().join(format!("home-{run}"));
        let command = |args: &[&str]| {
            let mut c = std::process::Command::new(bin);
            c.args(args)
                .env("ROBO_ASSETS_HOME", &home)
                .env("PLAID_API_URL", &url)
                .env("PLAID_CLIENT_ID", CLIENT_ID)
                .env("PLAID_SECRET", SECRET)
                .env("PLAID_ACCESS_TOKEN", TOKEN)
                .env("RUST_LOG", "warn")
                .env_remove("DATABASE_URL")
                .env_remove("ROBO_ASSETS_LINEAGE_URL")
                .env_remove("S3_BUCKET_NAME");
            c
        };
        let ok = |mut c: std::process::Command| {
            let out = c.output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        let (link, add) =
            (command(&["plaid", "link", "item-1"]), command(&["partitions", "add", "plaid_items", "item-1"]));
        tokio::task::spawn_blocking(move || {
            ok(link);
            ok(add);
        })
        .await
        .unwrap();
        let materialize = command(&["materialize", "plaid_transactions", "-p", "item-1"]);
        let started = Instant::now();
        tokio::task::spawn_blocking(move || ok(materialize)).await.unwrap();
        times.push(started.elapsed());
    }
    summary("robo-assets materialize plaid_transactions (first sync, process start to exit)", times);
}
