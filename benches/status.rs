//! `robo-assets status`, end to end (process start to exit), over a store holding a year and a
//! half of the billing chain: ~10,000 hourly partitions, their daily bills, monthly allocations
//! and reports, all materialized by a real backfill first.
//!
//! Then the cost of recording one materialization, staleness maintenance included, through the
//! lineage store API on the same store: a re-materialized hour with other bytes (its bill's
//! count goes up), the same hour with identical bytes (nothing downstream changes), and a bill
//! with its 24 inputs (its allocation's count goes up).
//!
//! `cargo bench --bench status`. Figures go to BENCHMARKS.md.
//!
//! `STATUS_BENCH_ONLY=scale cargo bench --bench status`: instead, `robo-assets status
//! usage_snapshot` over one asset of 100,000 and of 1,000,000 hourly partitions (sizes from
//! `STATUS_BENCH_SIZES`, comma-separated), written through the store's multi-row write path, not
//! by a backfill. With `STATUS_BENCH_BASELINE=<another robo-assets binary>` that binary is timed
//! on the same stores too, and its output must be the same.

use std::process::Command;
use std::time::{Duration, Instant};

const NOW: &str = "2026-02-21T16:00:00Z"; // 10,000 hours after 2025-01-01

fn robo(home: &std::path::Path, args: &[&str]) -> Duration {
    run(env!("CARGO_BIN_EXE_robo-assets"), home, NOW, args).0
}

/// Runs `bin` with `args` as a process, start to exit; its time and stdout.
fn run(bin: &str, home: &std::path::Path, now: &str, args: &[&str]) -> (Duration, String) {
    run_on(bin, home, None, now, args)
}

/// [`run`] with the lineage store at `lineage_url` (PostgreSQL) instead of the home's SQLite file.
fn run_on(
    bin: &str,
    home: &std::path::Path,
    lineage_url: Option<&str>,
    now: &str,
    args: &[&str],
) -> (Duration, String) {
    let started = Instant::now();
    let mut command = Command::new(bin);
    if let Some(url) = lineage_url {
        command.env("ROBO_ASSETS_LINEAGE_URL", url);
    }
    let out = command
        .args(args)
        .env("ROBO_ASSETS_HOME", home)
        .env("ROBO_ASSETS_NOW", now)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{bin} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (took, String::from_utf8(out.stdout).unwrap())
}

fn main() {
    if std::env::var("STATUS_BENCH_ONLY").as_deref() == Ok("scale") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        return runtime.block_on(scale());
    }
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
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(record_one(&home.join("lineage.db")));
}

/// Times `record_materialization` one at a time (one transaction each, as a lone worker
/// completing one step would), 500 times per case.
async fn record_one(db: &std::path::Path) {
    use lineage::{InputVersion, LineageStore, NewMaterialization, NewRun, RunId};
    let store = lineage::SqliteStore::open(db).await.unwrap();
    let now = chrono::Utc::now();
    let run = RunId::new();
    let new_run = NewRun {
        id: run,
        trigger: lineage::Trigger::Manual,
        selection: "bench".into(),
        n_steps: 0,
        tags: serde_json::json!({}),
        created_at: now,
        owner: None,
    };
    store.create_run(&new_run).await.unwrap();
    let state = |asset: &str, key: &str| (asset.to_owned(), key.to_owned());
    let materialization = |asset: &str, key: &str, data: String, inputs: Vec<InputVersion>| NewMaterialization {
        asset_key: asset.into(),
        partition_key: key.into(),
        run_id: run,
        attempt: 1,
        data_version: data,
        logical_version: "bench".into(),
        code_version: "1".into(),
        inputs_hash: "bench".into(),
        inputs,
        storage_uri: None,
        bytes: None,
        row_count: None,
        schema: None,
        metadata: serde_json::json!({}),
        started_at: now,
        finished_at: now,
    };
    const N: u32 = 500;
    // (run, asset, partition) is UNIQUE: each recording gets its own run.
    let mut runs = Vec::new();
    for _ in 0..3 * N {
        let id = RunId::new();
        store.create_run(&NewRun { id, ..new_run.clone() }).await.unwrap();
        runs.push(id);
    }
    let hours: Vec<String> = (0..N).map(|i| format!("2025-06-{:02}T{:02}:00", 1 + i / 24 % 30, i % 24)).collect();
    let mut next = runs.into_iter();
    for (case, same_bytes) in [("an hour, new bytes (1 reader updated)", false), ("an hour, identical bytes", true)] {
        let mut took = Duration::ZERO;
        for h in &hours {
            let current = store.partition_states_of(&[state("usage_snapshot", h)]).await.unwrap().remove(0).unwrap();
            let data = if same_bytes { current.data_version.unwrap() } else { format!("{}-{}", h, fastrand::u64(..)) };
            let mut m = materialization("usage_snapshot", h, data, vec![]);
            m.run_id = next.next().unwrap();
            let started = Instant::now();
            store.record_materialization(&m).await.unwrap();
            took += started.elapsed();
        }
        println!("record one materialization: {case:<44} mean {:>8.2?}  ({N} runs)", took / N);
    }
    let mut took = Duration::ZERO;
    for i in 0..N {
        let day = format!("2025-06-{:02}", 1 + i % 30);
        let keys: Vec<(String, String)> =
            (0..24).map(|h| state("usage_snapshot", &format!("{day}T{h:02}:00"))).collect();
        let inputs = store
            .partition_states_of(&keys)
            .await
            .unwrap()
            .into_iter()
            .zip(&keys)
            .map(|(s, (a, p))| {
                let s = s.unwrap();
                InputVersion {
                    asset_key: a.clone(),
                    partition_key: p.clone(),
                    materialization_id: s.current_materialization_id,
                    data_version: s.data_version.unwrap(),
                }
            })
            .collect();
        let mut m = materialization("storage_bill", &day, format!("{day}-{}", fastrand::u64(..)), inputs);
        m.run_id = next.next().unwrap();
        let started = Instant::now();
        store.record_materialization(&m).await.unwrap();
        took += started.elapsed();
    }
    println!(
        "record one materialization: {:<44} mean {:>8.2?}  ({N} runs)",
        "a bill with 24 inputs (its allocation updated)",
        took / N
    );
    assert_eq!(store.repair_staleness().await.unwrap(), 0, "the maintained counts are exact");
}

/// `status` of one asset with `n` hourly partitions: 2025-01-01 plus `n` hours is "now", so the
/// definition has exactly `n`. All are materialized but a stale block (1 % of them, of another
/// code version, in the middle) and the latest 0.5 %, missing: a handful of ranges. On SQLite,
/// and on PostgreSQL too when `ROBO_ASSETS_BENCH_PG_URL` names a server (a fresh database per
/// size, dropped after).
async fn scale() {
    let sizes: Vec<usize> = std::env::var("STATUS_BENCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let baseline = std::env::var("STATUS_BENCH_BASELINE").ok();
    let pg = std::env::var("ROBO_ASSETS_BENCH_PG_URL").ok();
    let this = env!("CARGO_BIN_EXE_robo-assets");
    let dir = tempfile::tempdir().unwrap();
    for n in sizes {
        for backend in ["SQLite", "PostgreSQL"] {
            let home = dir.path().join(format!("home-{n}-{backend}"));
            let start = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().to_utc();
            let now = (start + chrono::Duration::hours(n as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let args = ["status", "usage_snapshot"];
            let (url, admin) = match (backend, &pg) {
                ("SQLite", _) => (None, None),
                (_, Some(server)) => {
                    use sqlx::{Connection, Executor as _};
                    let admin: sqlx::postgres::PgConnectOptions = server.parse().unwrap();
                    let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
                    let db = format!("robo_bench_status_{:08x}", fastrand::u32(..));
                    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
                    // The server's URL with this database (a URL without query parameters).
                    let url = format!("{}/{db}", server.rsplit_once('/').unwrap().0);
                    (Some(url), Some((conn, db)))
                }
                _ => {
                    println!(
                        "PostgreSQL skipped: set ROBO_ASSETS_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/postgres"
                    );
                    continue;
                }
            };
            run_on(this, &home, url.as_deref(), &now, &args); // creates the stores
            let started = Instant::now();
            match &url {
                None => {
                    write_hours(&lineage::SqliteStore::open(&home.join("lineage.db")).await.unwrap(), start, n).await;
                }
                Some(url) => {
                    let store = lineage::PgStore::connect(url).await.unwrap();
                    write_hours(&store, start, n).await;
                    store.pool().close().await;
                }
            }
            println!(
                "set-up: {n} partitions of usage_snapshot written to {backend} in {:.2?} (now = {now})",
                started.elapsed()
            );
            let times = if n >= 1_000_000 { 5 } else { 10 };
            let (_, expected) = run_on(this, &home, url.as_deref(), &now, &args);
            let mut bins = vec![("this build", this.to_owned())];
            bins.extend(baseline.iter().map(|b| ("baseline", b.clone())));
            for (name, bin) in bins {
                let mut runs = Vec::new();
                for _ in 0..times {
                    let (took, out) = run_on(&bin, &home, url.as_deref(), &now, &args);
                    assert_eq!(out, expected, "{name}: the same output");
                    runs.push(took);
                }
                runs.sort();
                let mean = runs.iter().sum::<Duration>() / runs.len() as u32;
                println!(
                    "{name:<10} {backend:<10} robo-assets status usage_snapshot ({n} partitions)  mean {mean:>9.2?}  min {:>9.2?}  max {:>9.2?}  ({times} runs)",
                    runs[0],
                    runs[runs.len() - 1]
                );
            }
            print!("{expected}");
            if let Some((mut conn, db)) = admin {
                use sqlx::Executor as _;
                conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).await.unwrap();
            }
        }
    }
}

/// Writes hours `0..n` of `usage_snapshot` (see [`scale`]) through `record_materializations`, in
/// batches of 10,000.
async fn write_hours(store: &dyn lineage::LineageStore, start: chrono::DateTime<chrono::Utc>, n: usize) {
    use lineage::{NewMaterialization, NewRun, RunId};
    let run = RunId::new();
    let at = chrono::Utc::now();
    store
        .create_run(&NewRun {
            id: run,
            trigger: lineage::Trigger::Manual,
            selection: "bench".into(),
            n_steps: 0,
            tags: serde_json::json!({}),
            created_at: at,
            owner: None,
        })
        .await
        .unwrap();
    let stale = n / 2..n / 2 + n / 100;
    let written = n - n / 200;
    let hours: Vec<usize> = (0..written).collect();
    for batch in hours.chunks(10_000) {
        let ms: Vec<NewMaterialization> = batch
            .iter()
            .map(|&i| NewMaterialization {
                asset_key: "usage_snapshot".into(),
                partition_key: (start + chrono::Duration::hours(i as i64)).format("%Y-%m-%dT%H:%M").to_string(),
                run_id: run,
                attempt: 1,
                data_version: format!("d{i}"),
                logical_version: format!("l{i}"),
                code_version: if stale.contains(&i) { "0".into() } else { "1".into() },
                inputs_hash: "bench".into(),
                inputs: Vec::new(),
                storage_uri: None,
                bytes: None,
                row_count: None,
                schema: None,
                metadata: serde_json::json!({}),
                started_at: at,
                finished_at: at,
            })
            .collect();
        store.record_materializations(&ms).await.unwrap();
    }
}
