//! The CLI as a new user drives it: a fresh home, the README's first command, then inspection.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::Row;

use crate::common::Robo;
use crate::robo_snapshot;

const DAY: &str = "2025-12-15";

/// tenant → charge in millicredits, computed here from the demo data, not by the code under test:
/// acme 14.5 + 2 GB on Starter (10 GB included, 1.5 credits/GB-day): 6.5 × 1,500 = 9,750;
/// globex 250 GB on Pro (100 GB, 1 credit/GB-day): 150 × 1,000 = 150,000; initech 3 GB: 0.
const EXPECTED_CHARGES: [(&str, i64); 3] = [("acme", 9_750), ("globex", 150_000), ("initech", 0)];

fn read_parquet(path: &std::path::Path) -> arrow_array::RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1);
    batches.into_iter().next().unwrap()
}

/// A Parquet file's key-value metadata.
fn key_values(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    kv.into_iter().map(|kv| (kv.key, kv.value.unwrap_or_default())).collect()
}

/// A run's event log, as `runs show` prints it, opens with the run's start, written with the
/// run and its requests, and counts its steps in words a person reads.
#[test]
fn a_runs_event_log_starts_with_the_run_and_counts_its_steps() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let run = robo.ok(&["materialize", "storage_bill", "--partition", DAY]);
    let id = run.stdout.split_whitespace().nth(1).expect("Run <id> succeeded: …");
    let shown = robo.ok(&["runs", "show", id]).stdout;
    let events: Vec<(&str, &str)> = shown
        .lines()
        .skip_while(|l| !l.starts_with("Events"))
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(1);
            Some((words.next()?, l))
        })
        .collect();
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        ["run_started", "step_started", "step_message", "step_succeeded", "run_succeeded"],
        "{shown}"
    );
    assert!(events[0].1.trim_end().ends_with("  1 step"), "{shown}");
    assert!(events[4].1.trim_end().ends_with("  1 step materialized"), "{shown}");
}

#[tokio::test]
async fn materialize_with_upstream_writes_parquet_lineage_and_ledger() {
    let robo = Robo::new();
    let run = robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    assert!(run.stdout.contains("succeeded: 25 steps"), "{}", run.stdout);
    assert_eq!(run.stdout.lines().filter(|l| l.trim_start().starts_with('✓')).count(), 25);

    // 24 hourly snapshots and one bill, as Parquet.
    let storage = robo.home().join("storage");
    for h in 0..24 {
        let snapshot = read_parquet(&storage.join(format!("usage_snapshot/{DAY}T{h:02}:00.parquet")));
        assert_eq!(snapshot.num_rows(), 4, "one row per demo graph");
    }
    let bill = read_parquet(&storage.join(format!("storage_bill/{DAY}.parquet")));
    let tenants = bill.column_by_name("tenant_id").unwrap().as_string::<i32>();
    let charges = bill.column_by_name("charge_millicredits").unwrap().as_primitive::<Int64Type>();
    let hours = bill.column_by_name("hours").unwrap().as_primitive::<Int64Type>();
    let got: Vec<(&str, i64)> = (0..bill.num_rows()).map(|i| (tenants.value(i), charges.value(i))).collect();
    assert_eq!(got, EXPECTED_CHARGES);
    assert!(hours.values().iter().all(|h| *h == 24));

    // The lineage store: 25 materializations; the bill read exactly the 24 hours, with versions.
    let mut db = robo.lineage_db().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM materializations").fetch_one(&mut db).await.unwrap();
    assert_eq!(n, 25);
    let inputs = sqlx::query(
        "SELECT i.upstream_partition_key, i.upstream_data_version, u.data_version AS current \
         FROM materializations m JOIN materialization_inputs i ON i.materialization_id = m.id \
         JOIN materializations u ON u.id = i.upstream_materialization_id \
         WHERE m.asset_key = 'storage_bill' ORDER BY i.upstream_partition_key",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(inputs.len(), 24);
    assert_eq!(inputs[0].get::<String, _>(0), format!("{DAY}T00:00"));
    for row in &inputs {
        assert_eq!(row.get::<String, _>(1), row.get::<String, _>(2), "the recorded input version is the one stored");
    }
    let (version, uri): (String, String) =
        sqlx::query_as("SELECT data_version, storage_uri FROM materializations WHERE asset_key = 'storage_bill'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    let bytes = std::fs::read(storage.join(format!("storage_bill/{DAY}.parquet"))).unwrap();
    let (_, read) = resources::parquet_io::decode(bytes::Bytes::from(bytes.clone())).unwrap();
    assert_eq!(version, read, "the data version is the one the stored bytes give");
    assert!(uri.starts_with("file://") && uri.ends_with("storage_bill/2025-12-15.parquet"));
    let provenance = key_values(&bytes);
    assert_eq!(provenance["robo_assets.asset"], "storage_bill");
    assert_eq!(provenance["robo_assets.partition"], DAY);

    // Another run writes the same bill: the file says so, and its data version is unchanged,
    // so nothing downstream of it is stale.
    let first_run = provenance["robo_assets.run_id"].clone();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY]);
    let again = key_values(&std::fs::read(storage.join(format!("storage_bill/{DAY}.parquet"))).unwrap());
    assert_ne!(again["robo_assets.run_id"], first_run);
    let versions: Vec<String> =
        sqlx::query_scalar("SELECT data_version FROM materializations WHERE asset_key = 'storage_bill' ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(versions, [version.clone(), version], "the same bill by another run is the same data");

    // The ledger: one debit per tenant for the day, keyed for idempotency.
    let mut app = robo.app_db().await;
    let ledger: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT tenant_id, idempotency_key, amount_millicredits FROM credit_ledger ORDER BY tenant_id")
            .fetch_all(&mut app)
            .await
            .unwrap();
    let expected: Vec<(String, String, i64)> =
        EXPECTED_CHARGES.iter().map(|(t, c)| (t.to_string(), format!("storage_bill:{t}:{DAY}"), -c)).collect();
    assert_eq!(ledger, expected);
}

#[tokio::test]
async fn rematerializing_a_bill_replaces_the_charge_instead_of_adding_it() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    robo.ok(&["materialize", "storage_bill", "--partition", DAY]);
    robo.ok(&["materialize", "storage_bill", "--partition", DAY]);
    let balance = |tenant: &'static str| {
        let home = robo.home();
        async move {
            let mut app = crate::common::connect(&home.join("app.db")).await;
            sqlx::query_scalar::<_, i64>("SELECT sum(amount_millicredits) FROM credit_ledger WHERE tenant_id = ?1")
                .bind(tenant)
                .fetch_one(&mut app)
                .await
                .unwrap()
        }
    };
    assert_eq!(balance("acme").await, -9_750, "three bills of the same day charge once");

    // acme's main graph grows by 5 GB; the day is re-collected and re-billed.
    let grown = robo.home().join("graphs/acme-main/more.bin");
    std::fs::File::create(&grown).unwrap().set_len(5_000_000_000).unwrap();
    robo.ok(&["materialize", "+storage_bill", "--partition", DAY]);
    // 21.5 GB − 10 included = 11.5 GB-days × 1,500 = 17,250 millicredits.
    assert_eq!(balance("acme").await, -17_250);
    assert_eq!(balance("globex").await, -150_000);
    let mut app = robo.app_db().await;
    let (entries, revision): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(revision) FROM credit_ledger WHERE tenant_id = 'acme'")
            .fetch_one(&mut app)
            .await
            .unwrap();
    assert_eq!((entries, revision), (1, 2), "one entry, revised once");
    let old: i64 = sqlx::query_scalar("SELECT amount_millicredits FROM credit_ledger_revisions")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(old, -9_750, "the replaced amount is kept for audit");
}

#[tokio::test]
async fn bad_input_exits_2_and_records_nothing() {
    let robo = Robo::new();
    let cases: [(&[&str], &str); 6] = [
        (
            &["materialize", "storage_bil", "--partition", DAY],
            r#"unknown asset "storage_bil" (did you mean storage_bill?)"#,
        ),
        (
            &["materialize", "storage_bill", "--partition", "2025-13-01"],
            "malformed partition key \"2025-13-01\" for daily partitions: expected YYYY-MM-DD",
        ),
        (
            &["materialize", "storage_bill", "--partition", "2026-03-01"],
            "does not exist yet; valid range is 2025-01-01 ..= 2026-01-14",
        ),
        (&["materialize", "storage_bill", "--partition", "2024-12-31"], "it is before the first partition 2025-01-01"),
        (
            &["materialize", "storage_bill", "--partition", DAY],
            "usage_snapshot (24 partitions) needed by storage_bill: 2025-12-15T00:00..2025-12-15T23:00 (24)",
        ),
        (&["materialize", "storage_bill"], "it is partitioned (daily): give a partition key"),
    ];
    for (args, expected) in cases {
        let run = robo.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: expected {expected:?} in\n{}", run.stderr);
        assert!(run.stdout.is_empty(), "errors go to stderr");
    }
    let mut db = robo.lineage_db().await;
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs").fetch_one(&mut db).await.unwrap();
    assert_eq!(runs, 0);
    assert!(!robo.home().join("storage").exists(), "no output was written");

    let run = robo.run(&["materialize", "storage_bill", "--partition", DAY, "--concurrency", "0"]);
    assert_eq!(run.code, 2, "clap rejects a zero concurrency: {}", run.stderr);
    let run = robo.run(&["runs", "show", "not-a-run"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is not a run id"));
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_runs_nothing() {
    let robo = Robo::new();
    let run = robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-31", "--dry-run"]);
    robo_snapshot!(robo, "dry_run_month", run.stdout);
    let mut db = robo.lineage_db().await;
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs").fetch_one(&mut db).await.unwrap();
    assert_eq!(runs, 0);
}

#[tokio::test]
async fn path_prints_where_a_partitions_output_lives() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let storage = robo.home().join("storage");

    let bill = robo.ok(&["path", "storage_bill", "-p", DAY]);
    let expected = storage.join(format!("storage_bill/{DAY}.parquet"));
    assert_eq!(bill.stdout, format!("{}\n", expected.display()), "the path alone on a line");
    assert_eq!(read_parquet(&expected).num_rows(), 3, "it is the bill");
    let hour = robo.ok(&["path", "usage_snapshot", "-p", &format!("{DAY}T02:00")]);
    assert_eq!(hour.stdout.trim_end(), storage.join(format!("usage_snapshot/{DAY}T02:00.parquet")).to_str().unwrap());

    let json: serde_json::Value =
        serde_json::from_str(&robo.ok(&["path", "storage_bill", "-p", DAY, "--json"]).stdout).unwrap();
    assert_eq!(json["asset"], "storage_bill");
    assert_eq!(json["partition"], DAY);
    assert_eq!(json["path"], expected.to_str().unwrap());
    assert_eq!(json["uri"], format!("file://{}", expected.display()));
    let written_by = key_values(&std::fs::read(&expected).unwrap())["robo_assets.run_id"].clone();
    assert_eq!(json["run_id"], written_by, "the run that wrote the file");

    // status -p and lineage -p show the same line.
    let status = robo.ok(&["status", "storage_bill", "-p", DAY]);
    robo_snapshot!(robo, "status_partition_path", status.stdout);
    assert!(status.stdout.contains(&format!("    path {}\n", expected.display())), "{}", status.stdout);
    let lineage = robo.ok(&["lineage", "storage_bill", "-p", DAY]);
    assert_eq!(lineage.stdout.lines().nth(1), Some(format!("  path {}", expected.display()).as_str()));
    let status: serde_json::Value =
        serde_json::from_str(&robo.ok(&["status", "storage_bill", "-p", DAY, "--json"]).stdout).unwrap();
    assert_eq!(status[0]["partitions_listed"][0]["path"], expected.to_str().unwrap());

    // An asset that records metadata only has no output to point at.
    robo.ok(&["materialize", "api_key_cleanup", "-p", "2025-12-15T05:00"]);
    let cases: [(&[&str], &str); 6] = [
        (
            &["path", "storage_bill", "-p", "2025-12-16"],
            "storage_bill 2025-12-16 has no output: it has never been materialized",
        ),
        (&["path", "storage_bil", "-p", DAY], r#"unknown asset "storage_bil" (did you mean storage_bill?)"#),
        (
            &["path", "storage_bill"],
            "asset storage_bill is partitioned (daily): name the partition with --partition KEY",
        ),
        (&["path", "storage_bill", "-p", "2025-13-01"], "malformed partition key \"2025-13-01\""),
        (&["path", "api_key_cleanup", "-p", "2025-12-15T05:00"], "is materialized but stores no output"),
        (&["path", "storage_bill", "-p", "2025-12-16", "--json"], "has never been materialized"),
    ];
    for (args, says) in cases {
        let r = robo.run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}

#[tokio::test]
async fn inspection_commands_show_what_was_materialized() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);

    let status = robo.ok(&["status", "storage_bill", "--from", "2025-12-14", "--to", "2025-12-16"]);
    robo_snapshot!(robo, "status_range", status.stdout);
    let status = robo.ok(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let of = |asset: &str| json.as_array().unwrap().iter().find(|a| a["asset"] == asset).unwrap().clone();
    assert_eq!(of("usage_snapshot")["counts"]["materialized"], 24);
    assert_eq!(of("storage_bill")["counts"]["materialized"], 1);
    assert_eq!(of("storage_bill")["counts"]["partitions"], 379);
    assert_eq!(of("api_key_cleanup")["counts"]["materialized"], 0);

    let lineage = robo.ok(&["lineage", "storage_bill", "--partition", DAY]);
    assert_eq!(lineage.stdout.lines().filter(|l| l.contains("2025-12-15T") && l.contains("data ")).count(), 24);
    robo_snapshot!(robo, "lineage_partition_tree", lineage.stdout);
    let lineage = robo.ok(&["lineage", "storage_bill", "--partition", DAY, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&lineage.stdout).unwrap();
    assert_eq!(json["materialization"]["inputs"][0]["asset"], "usage_snapshot");
    assert_eq!(json["materialization"]["inputs"][0]["count"], 24);
    let dot = robo.ok(&["lineage", "storage_bill", "--format", "dot"]);
    assert!(dot.stdout.contains(r#""usage_snapshot" -> "storage_bill" [label="time_window"];"#), "{}", dot.stdout);
    let impact = robo.ok(&["lineage", "usage_snapshot", "--partition", "2025-12-15T07:00"]);
    assert!(impact.stdout.contains("read by:\n└── storage_bill 2025-12-15"), "{}", impact.stdout);
    robo_snapshot!(robo, "lineage_asset_tree", robo.ok(&["lineage", "storage_bill"]).stdout);

    let history = robo.ok(&["history", "storage_bill", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!((json["total"].as_i64(), &json["next_cursor"]), (Some(1), &serde_json::Value::Null));
    let json = &json["materializations"];
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["n_inputs"], 24);
    assert_eq!(json[0]["metadata"]["total_credits"], "159.750");

    let runs = robo.ok(&["runs", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let run_id = json["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(json["runs"][0]["status"], "succeeded");
    assert_eq!(json["next_cursor"], serde_json::Value::Null, "one run: one page");
    let show = robo.ok(&["runs", "show", &run_id]);
    assert!(show.stdout.contains("Materializations (25):"), "{}", show.stdout);
    assert_eq!(show.stdout.matches("step_succeeded").count(), 25);
    robo_snapshot!(robo, "list", robo.ok(&["list"]).stdout);
}

#[test]
fn help_is_complete() {
    let robo = Robo::new();
    robo_snapshot!(robo, "help", robo.ok(&["--help"]).stdout);
    robo_snapshot!(robo, "help_materialize", robo.ok(&["materialize", "--help"]).stdout);
}

#[tokio::test]
async fn parquet_outputs_open_in_other_tools() {
    // pyarrow reads the bill and sums the charges, reads `day` as a date and `hour` as a UTC
    // timestamp, and finds who wrote each file in its metadata; .ci/run installs it into a venv.
    let Some(python) = std::env::var("ROBO_ASSETS_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CI").is_err(), "CI must set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow");
        eprintln!("skipped: set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow to run this test");
        return;
    };
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let path = |asset: &str, key: &str| robo.ok(&["path", asset, "-p", key]).stdout.trim_end().to_owned();
    let (bill, hour) = (path("storage_bill", DAY), path("usage_snapshot", &format!("{DAY}T02:00")));
    let script = "import sys, pyarrow.parquet as pq\n\
        b = pq.read_table(sys.argv[1]); h = pq.read_table(sys.argv[2])\n\
        print(b.num_rows, sum(b.column('charge_millicredits').to_pylist()))\n\
        print(b.schema.field('day').type, b.column('day')[0].as_py().isoformat())\n\
        print(h.schema.field('hour').type, h.column('hour')[0].as_py().isoformat())\n\
        for f in sys.argv[1:]:\n\
        \x20   m = pq.read_metadata(f).metadata\n\
        \x20   print(*(m[k].decode() for k in (b'robo_assets.asset', b'robo_assets.partition', b'robo_assets.code_version', b'robo_assets.run_id')))";
    let out = std::process::Command::new(python).args(["-c", script, &bill, &hour]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The runs that wrote them, as the lineage store recorded them.
    let mut db = robo.lineage_db().await;
    let run_of = |asset: &'static str, key: String| {
        sqlx::query_scalar::<_, String>(
            "SELECT CAST(run_id AS TEXT) FROM materializations WHERE asset_key = ?1 AND partition_key = ?2",
        )
        .bind(asset)
        .bind(key)
    };
    let bill_run = run_of("storage_bill", DAY.to_owned()).fetch_one(&mut db).await.unwrap();
    let hour_run = run_of("usage_snapshot", format!("{DAY}T02:00")).fetch_one(&mut db).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        [
            "3 159750".to_owned(),
            "date32[day] 2025-12-15".to_owned(),
            "timestamp[us, tz=UTC] 2025-12-15T02:00:00+00:00".to_owned(),
            format!("storage_bill 2025-12-15 1 {bill_run}"),
            format!("usage_snapshot 2025-12-15T02:00 1 {hour_run}"),
        ]
    );
}

#[tokio::test]
async fn an_output_rewritten_behind_the_lineage_stores_back_is_refused_not_read() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    // Simulate a run that died after rewriting 03:00 but before recording it.
    let hour = robo.home().join(format!("storage/usage_snapshot/{DAY}T03:00.parquet"));
    let other = robo.home().join(format!("storage/usage_snapshot/{DAY}T04:00.parquet"));
    std::fs::copy(&other, &hour).unwrap();

    let run = robo.run(&["materialize", "storage_bill", "--partition", DAY]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("the stored output of usage_snapshot partition \"2025-12-15T03:00\" is not the recorded version"),
        "{}",
        run.stdout
    );
    let mut db = robo.lineage_db().await;
    let bills: i64 = sqlx::query_scalar("SELECT count(*) FROM materializations WHERE asset_key = 'storage_bill'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(bills, 1, "no bill was recorded from an input it could not vouch for");

    // Re-materializing the hour repairs it.
    robo.ok(&["materialize", "usage_snapshot", "--partition", "2025-12-15T03:00"]);
    robo.ok(&["materialize", "storage_bill", "--partition", DAY]);
}

#[test]
fn materialize_stale_reruns_only_the_bill_whose_hour_changed() {
    let robo = Robo::new();
    robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16"]);
    let fresh = robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16", "--stale"]);
    assert_eq!(fresh.stdout.trim(), "Nothing is stale or missing: no step to run.");
    assert!(fresh.stderr.contains("75 fresh partitions skipped"), "{}", fresh.stderr);
    // The same as JSON: no steps, and no run recorded for nothing.
    let runs_before = robo.ok(&["runs", "--json"]).stdout;
    let json =
        robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16", "--stale", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json.stdout).unwrap(), serde_json::json!({ "steps": [] }));
    assert_eq!(robo.ok(&["runs", "--json"]).stdout, runs_before);

    // The same hour again with the same bytes changes nothing downstream (early cut-off).
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    let same = robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16", "--stale"]);
    assert_eq!(same.stdout.trim(), "Nothing is stale or missing: no step to run.");

    // A graph grew; that hour is re-materialized with other bytes: only the 15th's bill is stale.
    let graph = robo.home().join("graphs/acme-main/data.bin");
    std::fs::OpenOptions::new().write(true).open(&graph).unwrap().set_len(90 << 30).unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    let plan = robo.ok(&[
        "materialize",
        "+storage_bill",
        "--from",
        "2025-12-14",
        "--to",
        "2025-12-16",
        "--stale",
        "--dry-run",
    ]);
    assert_eq!(plan.stdout, "Plan: 1 step (dry run, nothing was run)\nstorage_bill             1 step   2025-12-15\n");
    robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16", "--stale"]);
    let after = robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16", "--stale"]);
    assert_eq!(after.stdout.trim(), "Nothing is stale or missing: no step to run.");
}

#[test]
fn lineage_draws_the_asset_graph_as_mermaid_and_as_an_svg_with_status_colours() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let mermaid = robo.ok(&["lineage", "storage_bill", "--format", "mermaid"]);
    insta::assert_snapshot!(mermaid.stdout, @r#"
    flowchart LR
      n0["usage_snapshot<br/>hourly"]
      n1["storage_bill<br/>daily"]
      n2["credit_allocation<br/>monthly"]
      n3["usage_report<br/>monthly"]
      n0 -->|time_window| n1
      n1 -->|time_window(-1, -1)| n2
      n1 -->|time_window| n3
      n2 -->|time_window(0, 1)| n3
      style n1 stroke-width:3px
    "#);
    let svg = robo.ok(&["lineage", "storage_bill", "--format", "svg"]).stdout;
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<g class=\"node ").count(), 4, "one box per asset");
    assert_eq!(svg.matches("<g class=\"edge\"").count(), 4, "one edge per dependency");
    assert_eq!(svg.matches("marker-end=\"url(#arrow)\"").count(), 4, "each with an arrowhead");
    // The direct bill → report edge is drawn as its own edge (routed around the allocation: the
    // layout's property tests prove no edge passes under a node), labelled with its mapping.
    assert!(
        svg.contains("data-from=\"storage_bill\" data-to=\"usage_report\"><path")
            && svg.contains("font-size=\"10\">time_window(0, 1)</text>"),
        "{svg}"
    );
    // Boxes take the status words of `status`: hours and days are partly missing, months wholly.
    assert_eq!(svg.matches("data-status=\"missing\"").count(), 4, "{svg}");
    // Late only from the first day ever billed (2025-12-15): the 30 days after it to "now".
    assert!(svg.contains(">1/379 materialized, 30 late</text>"), "{svg}");
    assert!(svg.contains(">24/9108 materialized</text>"), "{svg}");
    // Each box's health bar shows its materialized share: 24 of 9,108 hours is a sliver.
    assert!(svg.contains("<rect class=\"bar-materialized\""), "{svg}");
    assert!(!svg.contains("class=\"partial\"") && !svg.contains("class=\"complete\""), "one vocabulary");
    // An hour re-materialized with other bytes: the bill's box turns stale (purple).
    let graph = robo.home().join("graphs/acme-main/data.bin");
    std::fs::OpenOptions::new().write(true).open(&graph).unwrap().set_len(90 << 30).unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    let svg = robo.ok(&["lineage", "storage_bill", "--format", "svg"]).stdout;
    assert!(svg.contains("data-asset=\"storage_bill\" data-status=\"stale\""), "{svg}");
    assert!(svg.contains(">1/379 materialized, 1 stale, 30 late</text>"), "{svg}");
    // A partition's picture: the bill and its 24 hours collapsed into one box of ranges, one of
    // which was re-materialized since it was read (stale), with an arrow into the bill.
    let svg = robo.ok(&["lineage", "storage_bill", "-p", DAY, "--format", "svg"]).stdout;
    assert_eq!(svg.matches("<g class=\"node ").count(), 2, "{svg}");
    assert!(svg.contains(">2025-12-15T00:00..2025-12-15T23:00 (24)</text>"), "{svg}");
    assert!(svg.contains(">24/24 materialized, 1 stale</text>"), "{svg}");
    assert!(svg.contains("data-from=\"usage_snapshot\" data-to=\"storage_bill\"><path"), "{svg}");
    assert!(svg.contains(">24 partitions</text>"), "{svg}");
    let refused = robo.run(&["lineage", "storage_bill", "-p", DAY, "--format", "mermaid"]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("--format mermaid draws the asset graph"), "{}", refused.stderr);
}

#[test]
fn lineage_impact_lists_every_downstream_materialization_that_read_a_version() {
    let robo = Robo::new();
    robo.ok(&["backfill", "+credit_allocation", "--from", "2026-01", "--to", "2026-01"]);
    let impact = robo.ok(&["lineage", "usage_snapshot", "-p", "2025-12-15T07:00", "--impact", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&impact.stdout).unwrap();
    let read_by: Vec<(String, String, i64, bool)> = v["read_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["asset"].as_str().unwrap().into(),
                r["partition"].as_str().unwrap().into(),
                r["hops"].as_i64().unwrap(),
                r["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        read_by,
        [
            ("storage_bill".into(), "2025-12-15".into(), 1, true),
            ("credit_allocation".into(), "2026-01".into(), 2, true)
        ]
    );
    // The bill is re-materialized: the allocation that read the old bill is still listed (it
    // read this hour through it) and the new bill, which read the same hour, too.
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-15"]);
    let text = robo.ok(&["lineage", "usage_snapshot", "-p", "2025-12-15T07:00", "--impact"]).stdout;
    assert!(text.contains("was read by 3 materializations, directly or through others:"), "{text}");
    assert!(text.contains("storage_bill 2025-12-15") && text.contains("superseded since"), "{text}");
}

#[test]
fn status_shows_stale_partitions_with_the_input_that_changed() {
    let robo = Robo::new();
    robo.ok(&["materialize", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-16"]);
    let graph = robo.home().join("graphs/acme-main/data.bin");
    std::fs::OpenOptions::new().write(true).open(&graph).unwrap().set_len(90 << 30).unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    let status = robo.ok(&["status", "storage_bill", "--from", "2025-12-14", "--to", "2025-12-16", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!((v[0]["counts"]["materialized"].as_i64(), v[0]["counts"]["stale"].as_i64()), (Some(3), Some(1)));
    let rows = v[0]["partitions_listed"].as_array().unwrap();
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["materialized", "stale", "materialized"]);
    assert_eq!(rows[1]["stale"], "usage_snapshot 2025-12-15T07:00 changed since it was read");
    // Re-materializing the bill makes it fresh again.
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-15"]);
    let status = robo.ok(&["status", "storage_bill", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v[0]["counts"]["stale"].as_i64(), Some(0));
}

#[test]
fn a_bill_not_there_by_six_the_next_morning_is_late_until_materialized() {
    let robo = Robo::new();
    let status = |now: &str| {
        let run = robo.run_with(&["status", "storage_bill", "-p", "2025-12-15", "--json"], &[("ROBO_ASSETS_NOW", now)]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()
    };
    let before = status("2025-12-16T05:59:00Z");
    assert_eq!(before[0]["counts"]["late"], 0);
    let after = status("2025-12-16T06:01:00Z");
    assert_eq!(after[0]["counts"]["late"], 1);
    assert_eq!(after[0]["partitions_listed"][0]["late_since"], "2025-12-16T06:00:00Z");
    let text =
        robo.run_with(&["status", "storage_bill", "-p", "2025-12-15"], &[("ROBO_ASSETS_NOW", "2025-12-16T06:01:00Z")]);
    assert!(text.stdout.contains("LATE: due 2025-12-16 06:00 UTC"), "{}", text.stdout);
    let run = robo.run_with(
        &["materialize", "storage_bill", "-p", "2025-12-15", "--with-upstream"],
        &[("ROBO_ASSETS_NOW", "2025-12-16T07:00:00Z")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(status("2025-12-16T07:30:00Z")[0]["counts"]["late"], 0, "materializing clears it");
}

#[test]
fn history_says_what_changed_between_two_materializations() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "-p", DAY, "--with-upstream"]);
    robo.ok(&["materialize", "storage_bill", "-p", DAY]);
    let graph = robo.home().join("graphs/acme-main/data.bin");
    std::fs::OpenOptions::new().write(true).open(&graph).unwrap().set_len(90 << 30).unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    robo.ok(&["materialize", "storage_bill", "-p", DAY]);
    let out = robo.ok(&["history", "storage_bill", "-p", DAY]).stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].ends_with("new data; read a new version of usage_snapshot 2025-12-15T07:00"), "{out}");
    assert!(lines[2].ends_with("same data; same inputs"), "{out}");
    assert!(lines[3].ends_with("first materialization"), "{out}");
}

#[test]
fn wipe_needs_yes_forgets_partitions_and_makes_their_readers_stale_then_repair_agrees() {
    let robo = Robo::new();
    robo.ok(&["materialize", "+storage_bill", "-p", "2025-12-15"]);
    let refused = robo.run(&["wipe", "usage_snapshot", "-p", "2025-12-15T07:00"]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("Nothing was wiped; run again with --yes to wipe"), "{}", refused.stderr);
    let status = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&robo.ok(&[&["status"], args, &["--json"]].concat()).stdout).unwrap()
    };
    assert_eq!(status(&["usage_snapshot", "-p", "2025-12-15T07:00"])[0]["counts"]["materialized"], 1);

    let wiped = robo.ok(&["wipe", "usage_snapshot", "-p", "2025-12-15T07:00", "--yes"]);
    assert_eq!(
        wiped.stdout.trim(),
        "Wiped 1 partition of usage_snapshot (2025-12-15T07:00): 1 partition state, 1 materialization \
         (kept for lineage, hidden from history); 1 current materialization that read them now stale."
    );
    assert_eq!(status(&["usage_snapshot", "-p", "2025-12-15T07:00"])[0]["counts"]["missing"], 1);
    let history = robo.ok(&["history", "usage_snapshot", "-p", "2025-12-15T07:00", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&history.stdout).unwrap(),
        serde_json::json!({ "materializations": [], "total": 0, "next_cursor": null })
    );
    let bill = status(&["storage_bill", "-p", "2025-12-15"]);
    assert_eq!(bill[0]["partitions_listed"][0]["status"], "stale");
    assert_eq!(
        bill[0]["partitions_listed"][0]["stale"],
        "usage_snapshot 2025-12-15T07:00 (no materialization now) changed since it was read"
    );
    assert_eq!(
        robo.ok(&["repair"]).stdout.trim(),
        "Staleness recomputed from scratch: every maintained count was right."
    );

    // --stale re-runs the wiped hour and the bill; then nothing is stale.
    robo.ok(&["materialize", "+storage_bill", "-p", "2025-12-15", "--stale"]);
    assert_eq!(status(&["storage_bill"])[0]["counts"]["stale"], 0);

    let bad = robo.run(&["wipe", "storage_bill", "-p", "2025-13-45", "--yes"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let unknown = robo.run(&["wipe", "nope", "--yes"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("unknown asset \"nope\""), "{}", unknown.stderr);
}

#[test]
fn a_password_in_any_url_form_is_never_printed() {
    let robo = Robo::new();
    for url in [
        "postgres://app@127.0.0.1:1/x?password=s3cretZ",
        "postgres://app@127.0.0.1:1/x?sslmode=disable&sslpassword=s3cretZ",
        "postgres://app:s3cretZ@127.0.0.1:1/x",
    ] {
        let run = robo.run_with(&["status", "--json"], &[("ROBO_ASSETS_LINEAGE_URL", url), ("RUST_LOG", "debug")]);
        assert_ne!(run.code, 0, "{url}: the server is unreachable");
        assert!(run.stderr.contains("opening lineage store postgres://app"), "{}", run.stderr);
        assert!(!run.stderr.contains("s3cretZ") && !run.stdout.contains("s3cretZ"), "{url} leaked: {run:?}");
    }
}

#[test]
fn every_limit_is_checked_before_anything_runs() {
    let robo = Robo::new();
    for args in [
        vec!["ticks", "storage_bill_daily", "--limit=-1"],
        vec!["backfill", "list", "--limit=-1"],
        vec!["why", "storage_bill", "-p", "2025-12-15", "--limit=-1"],
        vec!["checks", "credit_health", "--limit=0"],
        vec!["history", "storage_bill", "--limit=-5"],
        vec!["runs", "--limit=100001"],
        vec!["requests", "--limit=-1"],
    ] {
        let run = robo.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("--limit") && run.stderr.contains("1..=100000"), "{args:?}: {}", run.stderr);
    }
    assert!(!robo.home().join("lineage.db").exists(), "nothing was opened or written");
}

#[tokio::test]
async fn listing_or_refusing_schedules_and_sensors_writes_nothing() {
    let robo = Robo::new();
    robo.ok(&["schedules"]);
    robo.ok(&["sensors", "--json"]);
    for args in [
        vec!["schedules", "stop", "nope"],
        vec!["schedules", "start", "nope"],
        vec!["sensors", "cursor", "nope"],
        vec!["sensors", "stop", "storage_bill_daily"],
    ] {
        let run = robo.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("known:"), "{}", run.stderr);
    }
    let mut db = robo.lineage_db().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instigators").fetch_one(&mut db).await.unwrap();
    assert_eq!(rows, 0, "no first-seen time was recorded by reading or by a refused change");
    // A change that is accepted registers them.
    robo.ok(&["schedules", "stop", "storage_bill_daily"]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instigators").fetch_one(&mut db).await.unwrap();
    assert!(rows > 0);
}

#[tokio::test]
async fn bad_names_keys_and_cursors_are_refused_and_write_nothing() {
    let robo = Robo::new();
    robo.ok(&["status"]);
    let huge = "k".repeat(100_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["pools", "set", "", "4"], "no asset declares a pool named \"\""),
        (vec!["pools", "set", "nope_pool", "4"], "declared pools: graph_api"),
        (vec!["partitions", "add", "subscriptions", "a\nb"], "control character"),
        (vec!["partitions", "add", "subscriptions", "a/b"], "'/' or '..'"),
        (vec!["partitions", "add", "subscriptions", &huge], "100000 characters; at most 255"),
        (vec!["submit", "usage_snapshot", "-p", "2025-12-15T05:00", "--key", ""], "1 to 255 characters"),
        (vec!["submit", "usage_snapshot", "-p", "2025-12-15T05:00", "--key", &huge], "1 to 255 characters"),
        (vec!["sensors", "cursor", "pending_subscription_sensor", "--set", &huge[..70_000]], "at most 65536 bytes"),
        (vec!["schedules", "stop", &huge], "(100000 characters)"),
    ];
    let mut db = robo.lineage_db().await;
    let before = counts(&mut db).await;
    for (args, says) in cases {
        let run = robo.run(&args);
        assert_eq!(run.code, 2, "{:?}: {run:?}", &args[..2]);
        assert!(run.stderr.contains(says), "{:?}: {}", &args[..2], &run.stderr[..run.stderr.len().min(500)]);
        assert!(run.stderr.len() < 3_000, "{:?}: the error echoes the whole argument", &args[..2]);
    }
    assert_eq!(counts(&mut db).await, before, "nothing was written");
}

/// Rows of the tables bad input must not touch.
async fn counts(db: &mut sqlx::SqliteConnection) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for query in [
        "SELECT count(*) FROM pools",
        "SELECT count(*) FROM dynamic_partitions",
        "SELECT count(*) FROM materialization_requests",
        "SELECT count(*) FROM instigators",
        "SELECT count(*) FROM runs",
    ] {
        out.push((query, sqlx::query_scalar(query).fetch_one(&mut *db).await.unwrap()));
    }
    out
}

#[test]
fn bad_configuration_is_refused_at_start_naming_the_variable() {
    let robo = Robo::new();
    let file = robo.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let file = file.display().to_string();
    for (env, says) in [
        (vec![("ROBO_ASSETS_HOME", file.as_str())], "is a file; it must be a directory"),
        (vec![("ROBO_ASSETS_LINEAGE_URL", "sqlite://")], "sqlite:// names no file"),
        (vec![("S3_BUCKET_NAME", "Bad_Bucket!")], "S3_BUCKET_NAME=\"Bad_Bucket!\" is not a bucket name"),
        (
            vec![("S3_BUCKET_NAME", "outputs"), ("AWS_ENDPOINT_URL", "not-a-url")],
            "AWS_ENDPOINT_URL=not-a-url is not an endpoint URL",
        ),
        (vec![("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")], "AWS_ENDPOINT_URL is set but S3_BUCKET_NAME is not"),
    ] {
        let run = robo.run_with(&["materialize", "usage_snapshot", "-p", "2025-12-15T00:00"], &env);
        assert_eq!(run.code, 2, "{env:?}: {run:?}");
        assert!(run.stderr.contains(says), "{env:?}: {}", run.stderr);
        assert!(!robo.home().exists(), "{env:?}: nothing was created");
    }
}

/// Issue 14 §7: `--key K` is stored as `user:K` (no user key can take a system key such as a
/// schedule tick's) and names one selection: the same selection returns the first run, another
/// selection is refused with exit 2 and writes nothing.
#[tokio::test]
async fn a_user_key_names_one_selection_in_its_own_namespace() {
    let robo = Robo::new();
    let first = robo.ok(&["submit", "usage_snapshot", "-p", "2025-12-15T05:00", "--key", "K", "--json"]);
    let run_id = serde_json::from_str::<serde_json::Value>(&first.stdout).unwrap()["run_id"].clone();
    let again = robo.ok(&["submit", "usage_snapshot", "-p", "2025-12-15T05:00", "--key", "K", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&again.stdout).unwrap()["run_id"], run_id);

    let mut db = robo.lineage_db().await;
    let before = counts(&mut db).await;
    for args in [
        vec!["submit", "usage_snapshot", "--from", "2025-12-15T05:00", "--to", "2025-12-15T06:00", "--key", "K"],
        vec!["submit", "usage_snapshot", "-p", "2025-12-15T06:00", "--key", "K"],
    ] {
        let run = robo.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("was already used for another selection"), "{}", run.stderr);
        assert!(run.stderr.contains("a key names one selection"), "{}", run.stderr);
    }
    assert_eq!(counts(&mut db).await, before, "a refused key writes nothing");

    robo.ok(&["submit", "usage_snapshot", "-p", "2025-12-15T07:00", "--key", "sched:storage_bill_daily:2025-12-15"]);
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM materialization_requests ORDER BY idempotency_key")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with("user:")), "user keys are namespaced: {keys:?}");
}

/// Issue 14 §7: `demo seed` says how many tenants it created.
#[tokio::test]
async fn demo_seed_says_how_many_tenants_it_created() {
    let robo = Robo::new();
    let run = robo.ok(&["demo", "seed"]);
    let mut app = robo.app_db().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut app).await.unwrap();
    assert!(run.stdout.contains(&format!("with {n} demo tenants")), "{n} tenants: {}", run.stdout);
}

/// A failed `warn` check (`subscriptions_allocated` finds no allocation for a month nobody
/// allocated) stands out wherever results are shown: the summary, stderr, `--json`, `runs show`
/// and a CHECKS column in `status`.
#[test]
fn a_failed_warn_check_shows_wherever_results_are_shown() {
    let robo = Robo::new();
    let run = robo.ok(&["materialize", "credit_health", "-p", "2026-01-05"]);
    assert!(run.stdout.contains("succeeded: 1 step"), "a warn check fails no step: {}", run.stdout);
    assert!(run.stdout.contains("Checks: 3 evaluated, 2 passed, 1 failed"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "  ! credit_health 2026-01-05 subscriptions_allocated (warn): acme (sub-acme) has no allocation for 2026-01"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("warning: check failed: credit_health 2026-01-05 subscriptions_allocated (warn)"),
        "{}",
        run.stderr
    );

    let json = robo.ok(&["materialize", "credit_health", "-p", "2026-01-05", "--json"]);
    assert!(
        json.stderr.contains("warning: check failed: credit_health 2026-01-05 subscriptions_allocated"),
        "{}",
        json.stderr
    );
    let body: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let results = body["check_results"].as_array().expect("check_results");
    let verdicts: Vec<(&str, &str, bool)> = results
        .iter()
        .map(|r| (r["check_name"].as_str().unwrap(), r["severity"].as_str().unwrap(), r["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("balance_equals_ledger", "error", true),
            ("no_duplicate_entries", "error", true),
            ("subscriptions_allocated", "warn", false)
        ]
    );
    assert_eq!(results[2]["asset"], "credit_health");
    assert_eq!(results[2]["partition"], "2026-01-05");
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(results[2]["run_id"], run_id.as_str());

    let shown = robo.ok(&["runs", "show", &run_id]);
    assert!(shown.stdout.contains("Checks: 3 evaluated, 2 passed, 1 failed"), "{}", shown.stdout);
    assert!(shown.stdout.contains("  ! credit_health 2026-01-05 subscriptions_allocated (warn): "), "{}", shown.stdout);
    let shown: serde_json::Value = serde_json::from_str(&robo.ok(&["runs", "show", &run_id, "--json"]).stdout).unwrap();
    assert_eq!(shown["check_results"], body["check_results"], "one set of verdicts, one shape");

    let status = robo.ok(&["status", "credit_health,storage_bill"]);
    let header = status.stdout.lines().next().unwrap();
    assert!(header.contains("CHECKS"), "{header}");
    let row = status.stdout.lines().find(|l| l.starts_with("credit_health")).unwrap();
    assert!(row.contains("1 failed"), "{row}");
    let row = status.stdout.lines().find(|l| l.starts_with("storage_bill")).unwrap();
    assert!(row.contains("  - "), "no checks: {row}");
    assert!(status.stdout.contains("Failed checks (latest verdicts):"), "{}", status.stdout);
    assert!(status.stdout.contains("  ! credit_health 2026-01-05 subscriptions_allocated (warn)"), "{}", status.stdout);
    let status: serde_json::Value =
        serde_json::from_str(&robo.ok(&["status", "credit_health", "--json"]).stdout).unwrap();
    assert_eq!(status[0]["checks"], serde_json::json!({ "passed": 2, "failed": 1 }));
    assert_eq!(status[0]["failed_check_results"][0]["check_name"], "subscriptions_allocated");
    assert_eq!(status[0]["failed_check_results"].as_array().unwrap().len(), 1, "latest verdicts only");

    // Once the month is allocated, the latest verdict passes and status says so.
    robo.ok(&["backfill", "+credit_allocation", "--from", "2026-01", "--to", "2026-01"]);
    let run = robo.ok(&["materialize", "credit_health", "-p", "2026-01-05"]);
    assert!(run.stdout.contains("Checks: 3 evaluated, 3 passed, 0 failed"), "{}", run.stdout);
    assert!(!run.stderr.contains("warning: check failed"), "{}", run.stderr);
    let row = robo.ok(&["status", "credit_health"]).stdout;
    assert!(row.lines().any(|l| l.starts_with("credit_health") && l.contains("3 passed")), "{row}");
    assert!(!row.contains("Failed checks"), "{row}");
}

/// `submit` names what each request materializes, not only its id.
#[test]
fn submit_prints_the_asset_and_partition_of_each_request() {
    let robo = Robo::new();
    let out = robo.ok(&["submit", "usage_snapshot", "-p", "2025-12-15T05:00"]);
    assert!(out.stdout.contains("  usage_snapshot 2025-12-15T05:00  request "), "{}", out.stdout);
}

#[test]
fn the_status_strip_shows_where_the_data_is_with_its_first_and_last_key() {
    // "Now" is a month after the only data: the strip ends at the last hour that is not missing,
    // labelled, instead of showing the 48 empty hours before now; late counts start at the data.
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-15", "--with-upstream"]);
    let text = robo.ok(&["status", "+storage_bill"]).stdout;
    let hours = format!("2025-12-14T00:00 {}{} 2025-12-15T23:00", "·".repeat(24), "█".repeat(24));
    assert!(text.contains(&hours), "{text}");
    let line = text.lines().find(|l| l.starts_with("storage_bill ")).expect("a storage_bill row");
    // The bill is within the latest 48 days: those are shown, ending today.
    assert!(line.ends_with(&format!("2025-11-28 {}█{} 2026-01-14", "·".repeat(17), "·".repeat(30))), "{line}");
    assert!(!text.contains('\u{1b}'), "no colour when stdout is not a terminal: {text:?}");
    let json: serde_json::Value = serde_json::from_str(&robo.ok(&["status", "storage_bill", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["counts"]["late"], 30, "the 30 days after the first bill, not the 348 before it");
}
