//! The billing domain end to end in embedded mode: a month of hourly snapshots and daily bills,
//! then the next month's credit allocation with the overage settled. Every expected amount is
//! computed here from the fixture sizes, not by calling the code under test.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::Robo;

const GB: u64 = 1_000_000_000;

fn resize(robo: &Robo, graph: &str, bytes: u64) {
    let path = robo.home().join("graphs").join(graph).join("data.bin");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(bytes).unwrap();
}

/// Where the app database lives: the embedded file, or a PostgreSQL database.
enum AppData<'a> {
    Embedded(&'a Robo),
    Postgres(&'a crate::postgres::TestDb),
}

impl AppData<'_> {
    async fn ledger(&self, kind: &str) -> Vec<(String, String, i64, i64)> {
        const SQL: &str = "SELECT tenant_id, idempotency_key, amount_millicredits, revision FROM credit_ledger \
                           WHERE kind = $1 ORDER BY tenant_id, idempotency_key";
        match self {
            AppData::Embedded(robo) => {
                sqlx::query_as(SQL).bind(kind).fetch_all(&mut robo.app_db().await).await.unwrap()
            }
            AppData::Postgres(db) => sqlx::query_as(SQL).bind(kind).fetch_all(&mut db.connect().await).await.unwrap(),
        }
    }

    async fn balance(&self, tenant: &str) -> i64 {
        const SQL: &str = "SELECT CAST(sum(amount_millicredits) AS BIGINT) FROM credit_ledger WHERE tenant_id = $1";
        match self {
            AppData::Embedded(robo) => {
                sqlx::query_scalar(SQL).bind(tenant).fetch_one(&mut robo.app_db().await).await.unwrap()
            }
            AppData::Postgres(db) => {
                sqlx::query_scalar(SQL).bind(tenant).fetch_one(&mut db.connect().await).await.unwrap()
            }
        }
    }
}

/// Runs the CLI off the async runtime (an in-process S3 server may be serving on it).
async fn run(robo: &Robo, args: &[&str], env: &[(String, String)]) -> crate::common::Run {
    let mut cmd = robo.command(args);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let shown = format!("{args:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let run = crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert_eq!(run.code, 0, "robo-assets {shown} failed:\n{}\n{}", run.stdout, run.stderr);
    run
}

#[tokio::test]
async fn december_bills_and_the_january_allocation_equal_an_independent_calculation() {
    let robo = Robo::new();
    // Seed the demo tenants (first use).
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-11-30T23:00"]);
    december_and_january(&robo, &[], AppData::Embedded(&robo), &robo.home().join("storage")).await;

    // pyarrow reads each month as a date (its first day), and a tenant's CSV has the report's
    // columns and, as text, its values.
    let Some(python) = std::env::var("ROBO_ASSETS_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CI").is_err(), "CI must set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow");
        eprintln!("skipped: set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow for the pyarrow part");
        return;
    };
    let path = |asset: &str, key: &str| robo.ok(&["path", asset, "-p", key]).stdout.trim_end().to_owned();
    let script = "import sys, csv, pyarrow.parquet as pq\n\
        r = pq.read_table(sys.argv[1]); a = pq.read_table(sys.argv[2])\n\
        print(r.schema.field('month').type, r.column('month')[0].as_py().isoformat(), r.schema.field('net_credits').type)\n\
        print(a.schema.field('month').type, a.column('month')[0].as_py().isoformat(), a.column('previous_month')[0].as_py().isoformat())\n\
        rows = list(csv.reader(open(sys.argv[3])))\n\
        g = [row for row in r.to_pylist() if row['tenant_id'] == 'globex'][0]\n\
        print(rows[0] == r.schema.names, [str(g[c]) for c in rows[0]] == rows[1], rows[1])";
    let csv = robo.home().join("storage/usage_report/2025-12/globex.csv");
    let out = std::process::Command::new(python)
        .args(["-c", script, &path("usage_report", "2025-12"), &path("credit_allocation", "2026-01")])
        .arg(csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        [
            "date32[day] 2025-12-01 decimal128(38, 3)",
            "date32[day] 2026-01-01 2025-12-01",
            "True True ['2025-12-01', 'globex', '31', '147150.000', '147150.000', '100000.000', '47150.000', '0.000']",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_month_on_postgresql_and_an_s3_compatible_server() {
    let Some(lineage_db) = crate::postgres::TestDb::create().await else { return };
    let Some(app_db) = crate::postgres::TestDb::create().await else { return };
    let server = crate::s3::start_s3().await;
    let robo = Robo::new();
    let env: Vec<(String, String)> = [
        ("ROBO_ASSETS_LINEAGE_URL", lineage_db.url.as_str()),
        ("DATABASE_URL", app_db.url.as_str()),
        ("S3_BUCKET_NAME", "outputs"),
        ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", crate::s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // A production app database is never seeded implicitly.
    let seeded = run(&robo, &["demo", "seed"], &env).await;
    assert!(seeded.stdout.contains("with 4 demo tenants"), "{}", seeded.stdout);
    assert!(!seeded.stdout.contains("s3cret"), "the password is never shown: {}", seeded.stdout);
    let outputs = server.object("");
    december_and_january(&robo, &env, AppData::Postgres(&app_db), &outputs).await;
    // `path` names the object in the bucket.
    let path = run(&robo, &["path", "usage_report", "-p", "2025-12"], &env).await;
    assert!(
        path.stdout.starts_with("s3://outputs/") && path.stdout.ends_with("/usage_report/2025-12.parquet\n"),
        "{}",
        path.stdout
    );
    lineage_db.drop_db().await;
    app_db.drop_db().await;
}

/// December's bills and January's allocation, with globex over its plan, checked against
/// amounts computed here; `outputs` is where `{asset}/{partition}.parquet` files land.
async fn december_and_january(robo: &Robo, env: &[(String, String)], data: AppData<'_>, outputs: &std::path::Path) {
    // globex gets 5 TB so it runs over its plan.
    resize(robo, "globex-prod", 5_000 * GB);

    let out = run(robo, &["backfill", "+credit_allocation", "--from", "2026-01", "--to", "2026-01"], env).await;
    assert!(out.stdout.contains("policy missing: succeeded"), "{}", out.stdout);

    // The fixture, by hand. Starter: 10,000 credits a month, 10 GB included, 1.5 credits per
    // GB-day over. Pro: 100,000 credits, 100 GB included, 1 credit per GB-day over.
    // acme 14.5 + 2 GB on starter; globex 5,000 GB on pro; initech 3 GB on starter.
    let acme_day = (16_500 - 10_000) * 1_500 / 1_000; // 6.5 GB over × 1.5 credits = 9.75 credits
    let globex_day = (5_000 - 100) * 1_000; // 4,900 GB over × 1 credit
    assert_eq!((acme_day, globex_day), (9_750, 4_900_000));

    let charges = data.ledger("storage_charge").await;
    let month_charge = |tenant: &str| -> i64 { charges.iter().filter(|c| c.0 == tenant).map(|c| c.2).sum() };
    assert_eq!(charges.iter().filter(|c| c.0 == "acme").count(), 31);
    assert_eq!(month_charge("acme"), -31 * acme_day);
    assert_eq!(month_charge("globex"), -31 * globex_day);
    assert_eq!(month_charge("initech"), 0);

    let allocations = data.ledger("allocation").await;
    assert_eq!(
        allocations,
        vec![
            ("acme".to_owned(), "credit_allocation:acme:2026-01".to_owned(), 10_000_000, 1),
            ("globex".to_owned(), "credit_allocation:globex:2026-01".to_owned(), 100_000_000, 1),
            ("initech".to_owned(), "credit_allocation:initech:2026-01".to_owned(), 10_000_000, 1),
        ]
    );
    // globex used 151,900 credits of storage in December against 100,000 included.
    let globex_overage = 31 * globex_day - 100_000_000;
    assert_eq!(globex_overage, 51_900_000);
    assert_eq!(
        data.ledger("overage").await,
        vec![("globex".to_owned(), "overage:globex:2025-12".to_owned(), globex_overage, 1)]
    );
    assert_eq!(data.balance("acme").await, 10_000_000 - 31 * acme_day);
    assert_eq!(data.balance("globex").await, 100_000_000 - 31 * globex_day + globex_overage);
    assert_eq!(data.balance("initech").await, 10_000_000);

    // The allocation's table says the same, and other tools can read it.
    let path = outputs.join("credit_allocation/2026-01.parquet");
    let batch = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let tenants: Vec<&str> = batch.column_by_name("tenant_id").unwrap().as_string::<i32>().iter().flatten().collect();
    let used: Vec<i64> =
        batch.column_by_name("previous_storage_millicredits").unwrap().as_primitive::<Int64Type>().values().to_vec();
    let overage: Vec<i64> =
        batch.column_by_name("overage_millicredits").unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(tenants, ["acme", "globex", "initech"]);
    assert_eq!(used, [31 * acme_day, 31 * globex_day, 0]);
    assert_eq!(overage, [0, globex_overage, 0]);
    let history = run(robo, &["history", "credit_allocation", "--json"], env).await;
    let h = serde_json::from_str::<serde_json::Value>(&history.stdout).unwrap()["materializations"].clone();
    assert_eq!(h[0]["metadata"]["total_overage_credits"], "51900.000");
    assert_eq!(h[0]["metadata"]["bills_read"], 31);

    // Re-materializing the allocation changes nothing: no entry is added or revised.
    run(robo, &["materialize", "credit_allocation", "-p", "2026-01"], env).await;
    assert_eq!(data.ledger("allocation").await, allocations);
    assert_eq!(data.balance("globex").await, 100_000_000 - 31 * globex_day + globex_overage);

    // globex shrinks back for the 31st; re-bill that day, then re-allocate: the overage is
    // revised to the new total, never added again.
    resize(robo, "globex-prod", 250 * GB);
    run(robo, &["materialize", "usage_snapshot", "--from", "2025-12-31T00:00", "--to", "2025-12-31T23:00"], env).await;
    run(robo, &["materialize", "storage_bill", "-p", "2025-12-31"], env).await;
    run(robo, &["materialize", "credit_allocation", "-p", "2026-01"], env).await;
    let new_overage = 30 * globex_day + 150_000 - 100_000_000;
    assert_eq!(
        data.ledger("overage").await,
        vec![("globex".to_owned(), "overage:globex:2025-12".to_owned(), new_overage, 2)]
    );
    assert_eq!(data.balance("globex").await, 100_000_000 - (30 * globex_day + 150_000) + new_overage);

    // December's usage report: the backfill adds what it needs (December's own allocation, so
    // November's bills and hours), and its numbers are December's, from the bills and the two
    // allocations that concern it.
    run(robo, &["backfill", "+usage_report", "--from", "2025-12", "--to", "2025-12"], env).await;
    let globex_storage = 30 * globex_day + 150_000;
    let batch = read(&outputs.join("usage_report/2025-12.parquet"));
    let days: Vec<i64> = batch.column_by_name("days_billed").unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(days, [31, 31, 31]);
    // Credits and GB-days are exact decimals with three places: their unscaled values are the
    // thousandths computed here.
    let col = |name: &str| -> Vec<i128> {
        let column = batch.column_by_name(name).unwrap();
        assert_eq!(column.data_type(), &arrow_schema::DataType::Decimal128(38, 3), "{name}");
        column.as_primitive::<arrow_array::types::Decimal128Type>().values().to_vec()
    };
    let thousandths = |v: [i64; 3]| v.map(i128::from).to_vec();
    assert_eq!(col("storage_credits"), thousandths([31 * acme_day, globex_storage, 0]));
    assert_eq!(col("allocated_credits"), thousandths([10_000_000, 100_000_000, 10_000_000]));
    assert_eq!(col("overage_credits"), thousandths([0, new_overage, 0]));
    assert_eq!(col("excess_gb_days"), thousandths([31 * 6_500, (30 * 4_900 + 150) * 1_000, 0]));
    assert_eq!(col("net_credits"), thousandths([10_000_000 - 31 * acme_day, 0, 10_000_000]));
    let month = batch.column_by_name("month").unwrap().as_primitive::<arrow_array::types::Date32Type>();
    assert_eq!(month.value_as_date(0), chrono::NaiveDate::from_ymd_opt(2025, 12, 1));
    let csv = std::fs::read_to_string(outputs.join("usage_report/2025-12/globex.csv")).unwrap();
    assert_eq!(
        csv,
        "month,tenant_id,days_billed,excess_gb_days,storage_credits,allocated_credits,overage_credits,net_credits\n\
         2025-12-01,globex,31,147150.000,147150.000,100000.000,47150.000,0.000\n"
    );
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(csv.lines().next().unwrap().split(',').collect::<Vec<_>>(), names, "the CSV has the Parquet's columns");
}

fn read(path: &std::path::Path) -> arrow_array::RecordBatch {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn api_key_cleanup_deletes_exactly_the_keys_expired_before_the_hour_ends() {
    let robo = Robo::new();
    // Demo keys: acme CI expired 2025-12-01, globex's old laptop at 2025-12-15T06:30, acme prod
    // expires in 2027, initech's never.
    let out = robo.ok(&["materialize", "api_key_cleanup", "-p", "2025-12-15T05:00"]);
    assert!(out.stdout.contains("succeeded: 1 step"), "{}", out.stdout);
    let keys = |robo: &Robo| {
        let path = robo.home().join("app.db");
        async move {
            let mut db = crate::common::connect(&path).await;
            sqlx::query_scalar::<_, String>("SELECT id FROM api_keys ORDER BY id").fetch_all(&mut db).await.unwrap()
        }
    };
    assert_eq!(
        keys(&robo).await,
        ["key-acme-prod", "key-globex-old", "key-initech"],
        "05:00-06:00 removes only the CI key"
    );
    robo.ok(&["materialize", "api_key_cleanup", "-p", "2025-12-15T06:00"]);
    assert_eq!(keys(&robo).await, ["key-acme-prod", "key-initech"], "06:30 is before the end of 06:00-07:00");
    robo.ok(&["materialize", "api_key_cleanup", "--from", "2025-12-15T07:00", "--to", "2025-12-31T23:00"]);
    assert_eq!(keys(&robo).await, ["key-acme-prod", "key-initech"]);

    let history = robo.ok(&["history", "api_key_cleanup", "-p", "2025-12-15T06:00", "--json"]);
    let h = serde_json::from_str::<serde_json::Value>(&history.stdout).unwrap()["materializations"].clone();
    assert_eq!(h[0]["metadata"]["deleted"], 1);
    assert_eq!(h[0]["metadata"]["deleted_keys"], serde_json::json!(["key-globex-old"]));
    assert_eq!(h[0]["metadata"]["expired_before"], "2025-12-15T07:00:00+00:00");
}

#[tokio::test]
async fn credit_health_passes_on_a_sound_ledger_and_catches_a_corrupted_one() {
    use sqlx::ConnectOptions;
    let robo = Robo::new();
    robo.ok(&["backfill", "+credit_allocation", "--from", "2026-01", "--to", "2026-01"]);
    let ok = robo.ok(&["materialize", "credit_health", "-p", "2026-01-05"]);
    assert!(ok.stdout.contains("succeeded: 1 step"), "{}", ok.stdout);
    let checks = robo.ok(&["checks", "credit_health", "--json"]);
    let results = serde_json::from_str::<serde_json::Value>(&checks.stdout).unwrap()["check_results"].clone();
    assert_eq!(results.as_array().unwrap().len(), 3);
    assert!(results.as_array().unwrap().iter().all(|r| r["passed"] == true), "{results}");

    // Corrupt the ledger behind the engine's back: acme's stored balance drifts, and globex gets
    // a second charge for one day under another key.
    let mut db =
        sqlx::sqlite::SqliteConnectOptions::new().filename(robo.home().join("app.db")).connect().await.unwrap();
    sqlx::query("UPDATE tenants SET balance_millicredits = balance_millicredits + 1 WHERE id = 'acme'")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO credit_ledger (tenant_id, idempotency_key, kind, period, amount_millicredits, description, \
         revision, created_at, updated_at) VALUES ('globex', 'manual-fix-42', 'storage_charge', '2025-12-24', -5, 'oops', 1, '2026-01-01', '2026-01-01')",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("UPDATE tenants SET balance_millicredits = balance_millicredits - 5 WHERE id = 'globex'")
        .execute(&mut db)
        .await
        .unwrap();
    // initech's allocation for January disappears.
    sqlx::query(
        "UPDATE credit_ledger SET kind = 'adjustment' WHERE idempotency_key = 'credit_allocation:initech:2026-01'",
    )
    .execute(&mut db)
    .await
    .unwrap();
    drop(db);

    let bad = robo.run(&["materialize", "credit_health", "-p", "2026-01-05"]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    assert!(bad.stdout.contains("asset check failed: balance_equals_ledger: acme: stored"), "{}", bad.stdout);
    assert!(
        bad.stdout.contains("no_duplicate_entries: globex: 2 storage_charge entries for 2025-12-24"),
        "{}",
        bad.stdout
    );
    let checks = robo.ok(&["checks", "credit_health", "-p", "2026-01-05", "--limit", "3"]);
    assert!(checks.stdout.contains("subscriptions_allocated  warn     NO"), "{}", checks.stdout);
    assert!(checks.stdout.contains("initech (sub-initech) has no allocation for 2026-01"), "{}", checks.stdout);
    assert!(checks.stdout.contains("balance_equals_ledger    error    NO"), "{}", checks.stdout);
    // The failed check left the partition failed, its last good materialization intact.
    let status = robo.ok(&["status", "credit_health", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json[0]["counts"]["failed"], 1, "{json}");
}
