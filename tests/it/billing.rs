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

async fn ledger(robo: &Robo, kind: &str) -> Vec<(String, String, i64, i64)> {
    let mut db = robo.app_db().await;
    sqlx::query_as(
        "SELECT tenant_id, idempotency_key, amount_millicredits, revision FROM credit_ledger WHERE kind = ?1 \
         ORDER BY tenant_id, idempotency_key",
    )
    .bind(kind)
    .fetch_all(&mut db)
    .await
    .unwrap()
}

async fn balance(robo: &Robo, tenant: &str) -> i64 {
    let mut db = robo.app_db().await;
    sqlx::query_scalar("SELECT sum(amount_millicredits) FROM credit_ledger WHERE tenant_id = ?1")
        .bind(tenant)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn december_bills_and_the_january_allocation_equal_an_independent_calculation() {
    let robo = Robo::new();
    // Seed the demo tenants (first use), then give globex 5 TB so it runs over its plan.
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-11-30T23:00"]);
    resize(&robo, "globex-prod", 5_000 * GB);

    let out = robo.ok(&["backfill", "+credit_allocation", "--from", "2026-01", "--to", "2026-01"]);
    assert!(out.stdout.contains("policy missing: succeeded"), "{}", out.stdout);

    // The fixture, by hand. Starter: 10,000 credits a month, 10 GB included, 1.5 credits per
    // GB-day over. Pro: 100,000 credits, 100 GB included, 1 credit per GB-day over.
    // acme 14.5 + 2 GB on starter; globex 5,000 GB on pro; initech 3 GB on starter.
    let acme_day = (16_500 - 10_000) * 1_500 / 1_000; // 6.5 GB over × 1.5 credits = 9.75 credits
    let globex_day = (5_000 - 100) * 1_000; // 4,900 GB over × 1 credit
    assert_eq!((acme_day, globex_day), (9_750, 4_900_000));

    let charges = ledger(&robo, "storage_charge").await;
    let month_charge = |tenant: &str| -> i64 { charges.iter().filter(|c| c.0 == tenant).map(|c| c.2).sum() };
    assert_eq!(charges.iter().filter(|c| c.0 == "acme").count(), 31);
    assert_eq!(month_charge("acme"), -31 * acme_day);
    assert_eq!(month_charge("globex"), -31 * globex_day);
    assert_eq!(month_charge("initech"), 0);

    let allocations = ledger(&robo, "allocation").await;
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
        ledger(&robo, "overage").await,
        vec![("globex".to_owned(), "overage:globex:2025-12".to_owned(), globex_overage, 1)]
    );
    assert_eq!(balance(&robo, "acme").await, 10_000_000 - 31 * acme_day);
    assert_eq!(balance(&robo, "globex").await, 100_000_000 - 31 * globex_day + globex_overage);
    assert_eq!(balance(&robo, "initech").await, 10_000_000);

    // The allocation's table says the same, and other tools can read it.
    let path = robo.home().join("storage/credit_allocation/2026-01.parquet");
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
    let history = robo.ok(&["history", "credit_allocation", "--json"]);
    let h: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(h[0]["metadata"]["total_overage_credits"], "51900.000");
    assert_eq!(h[0]["metadata"]["bills_read"], 31);

    // Re-materializing the allocation changes nothing: no entry is added or revised.
    robo.ok(&["materialize", "credit_allocation", "-p", "2026-01"]);
    assert_eq!(ledger(&robo, "allocation").await, allocations);
    assert_eq!(balance(&robo, "globex").await, 100_000_000 - 31 * globex_day + globex_overage);

    // globex shrinks back for the 31st; re-bill that day, then re-allocate: the overage is
    // revised to the new total, never added again.
    resize(&robo, "globex-prod", 250 * GB);
    robo.ok(&["materialize", "usage_snapshot", "--from", "2025-12-31T00:00", "--to", "2025-12-31T23:00"]);
    robo.ok(&["materialize", "storage_bill", "-p", "2025-12-31"]);
    robo.ok(&["materialize", "credit_allocation", "-p", "2026-01"]);
    let new_overage = 30 * globex_day + 150_000 - 100_000_000;
    assert_eq!(
        ledger(&robo, "overage").await,
        vec![("globex".to_owned(), "overage:globex:2025-12".to_owned(), new_overage, 2)]
    );
    assert_eq!(balance(&robo, "globex").await, 100_000_000 - (30 * globex_day + 150_000) + new_overage);
}
