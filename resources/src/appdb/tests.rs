use super::*;

fn entry(tenant: &str, amount: i64) -> LedgerEntry {
    LedgerEntry {
        tenant_id: tenant.into(),
        idempotency_key: format!("storage_bill:{tenant}:2025-12-15"),
        kind: "storage_charge".into(),
        period: "2025-12-15".into(),
        amount_millicredits: amount,
        description: "storage".into(),
    }
}

#[test]
fn both_backends_have_the_same_migration_versions() {
    let versions =
        |m: &sqlx::migrate::Migrator| m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>();
    assert_eq!(versions(&sqlite::MIGRATOR), versions(&postgres::MIGRATOR));
    assert!(sqlite::MIGRATOR.iter().next().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_first_opens_at_once_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let opens: Vec<_> = (0..6).map(|_| tokio::spawn(SqliteAppDb::open_owned(path.clone()))).collect();
    for open in opens {
        open.await.unwrap().expect("every concurrent open succeeds");
    }
}

#[tokio::test]
async fn rewriting_a_period_revises_instead_of_double_charging_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap();
    rewriting_a_period_revises_instead_of_double_charging(&db).await;
    let revisions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credit_ledger_revisions").fetch_one(db.pool()).await.unwrap();
    assert_eq!(revisions, 2);
}

/// Every process's first statement reads the whole WAL back to rebuild its index, so the app
/// database checkpoints it once it holds 250 pages (SQLite's default is 1,000) and the WAL file,
/// reused from its start after each checkpoint, stays short however many days are billed.
#[tokio::test]
async fn the_wal_is_checkpointed_before_it_grows_long() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap();
    let now = Utc::now();
    assert!(db.seed_demo(now).await.unwrap());
    // A day's bill each, one transaction per day: a few thousand pages written in all.
    let days: Vec<String> = (0..500)
        .map(|d| (chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Duration::days(d)).to_string())
        .collect();
    for day in &days {
        let entry = |tenant: &str| LedgerEntry {
            idempotency_key: format!("storage_bill:{tenant}:{day}"),
            period: day.clone(),
            ..entry(tenant, -1_000)
        };
        db.replace_period_entries("storage_charge", day, &[entry("acme"), entry("globex")], now).await.unwrap();
    }
    let page: u64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(db.pool()).await.unwrap();
    let frame = 24 + page;
    let wal = std::fs::metadata(dir.path().join("app.db-wal")).unwrap().len();
    assert!(wal < 300 * frame, "the WAL grew to {} pages", wal / frame);
    assert_eq!(db.balance("acme").await.unwrap(), -500_000);
}

/// The same on a fresh PostgreSQL database (`ROBO_ASSETS_TEST_PG_URL`, as the lineage suite:
/// skipped without a server unless `CI` is set).
#[tokio::test]
async fn rewriting_a_period_revises_instead_of_double_charging_on_postgres() {
    use sqlx::{Connection, Executor};
    let url = std::env::var("ROBO_ASSETS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let mut conn = match sqlx::PgConnection::connect_with(&admin).await {
        Ok(conn) => conn,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: no PostgreSQL ({e}); set ROBO_ASSETS_TEST_PG_URL");
            return;
        }
        Err(e) => panic!("PostgreSQL is required when CI is set: {e}"),
    };
    let name = format!("robo_test_app_{:08x}{:08x}", fastrand::u32(..), fastrand::u32(..));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let db = PgAppDb::connect_with(admin.clone().database(&name), name.clone()).await.unwrap();
    rewriting_a_period_revises_instead_of_double_charging(&db).await;
    let revisions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credit_ledger_revisions").fetch_one(db.pool()).await.unwrap();
    assert_eq!(revisions, 2);
    a_plaid_item_is_linked_and_re_linked(&db).await;
    db.pool().close().await;
    conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.unwrap();
}

async fn rewriting_a_period_revises_instead_of_double_charging(db: &dyn AppDb) {
    let now = Utc::now();
    assert!(db.seed_demo(now).await.unwrap());
    assert!(!db.seed_demo(now).await.unwrap(), "seeding twice is a no-op");
    assert_eq!(db.tenant_plans().await.unwrap().len(), 3);
    assert_eq!(db.active_graphs().await.unwrap().len(), 4);

    let w = db
        .replace_period_entries(
            "storage_charge",
            "2025-12-15",
            &[entry("acme", -9_750), entry("globex", -150_000)],
            now,
        )
        .await
        .unwrap();
    assert_eq!(w, LedgerWrite { inserted: 2, ..LedgerWrite::default() });
    let w = db
        .replace_period_entries(
            "storage_charge",
            "2025-12-15",
            &[entry("acme", -9_750), entry("globex", -150_000)],
            now,
        )
        .await
        .unwrap();
    assert_eq!(w, LedgerWrite { unchanged: 2, ..LedgerWrite::default() });
    assert_eq!(db.balance("acme").await.unwrap(), -9_750);

    // globex's graph was deleted: its charge for the day goes to zero, acme's is revised.
    let w = db.replace_period_entries("storage_charge", "2025-12-15", &[entry("acme", -12_000)], now).await.unwrap();
    assert_eq!(w, LedgerWrite { revised: 1, zeroed: 1, ..LedgerWrite::default() });
    assert_eq!(db.balance("acme").await.unwrap(), -12_000);
    assert_eq!(db.balance("globex").await.unwrap(), 0);
    let ledger = db.ledger(None).await.unwrap();
    assert_eq!(ledger.len(), 2, "entries are never deleted");
    assert_eq!(ledger[0].revision, 2);
}

/// One (re-)materialization, as its ledger effect: a bill of `day` charging each tenant
/// (`None`: not billed that day), or an allocation of `month` with its overages.
#[derive(Debug, Clone)]
enum Materialization {
    Bill { day: u8, charges: [Option<i64>; 3] },
    Allocation { month: u8, credits: [i64; 3], overage: [i64; 3] },
}

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn materialization() -> impl proptest::strategy::Strategy<Value = Materialization> {
    use proptest::prelude::*;
    let amount = || prop_oneof![Just(0i64), 1i64..20_000_000];
    prop_oneof![
        (0u8..4, proptest::array::uniform3(proptest::option::of(amount())))
            .prop_map(|(day, charges)| Materialization::Bill { day, charges }),
        (0u8..2, proptest::array::uniform3(amount()), proptest::array::uniform3(amount()))
            .prop_map(|(month, credits, overage)| Materialization::Allocation { month, credits, overage }),
    ]
}

/// Writes one materialization's entries exactly as the assets do.
async fn apply(db: &dyn AppDb, m: &Materialization, now: DateTime<Utc>) {
    match m {
        Materialization::Bill { day, charges } => {
            let period = format!("2025-12-{:02}", day + 1);
            let entries: Vec<LedgerEntry> = TENANTS
                .iter()
                .zip(charges)
                .filter_map(|(t, c)| {
                    c.map(|c| LedgerEntry {
                        tenant_id: (*t).to_owned(),
                        idempotency_key: format!("storage_bill:{t}:{period}"),
                        kind: "storage_charge".into(),
                        period: period.clone(),
                        amount_millicredits: -c,
                        description: "storage".into(),
                    })
                })
                .collect();
            db.replace_period_entries("storage_charge", &period, &entries, now).await.unwrap();
        }
        Materialization::Allocation { month, credits, overage } => {
            let (m, previous) = if *month == 0 { ("2026-01", "2025-12") } else { ("2026-02", "2026-01") };
            let allocations: Vec<LedgerEntry> = TENANTS
                .iter()
                .zip(credits)
                .map(|(t, c)| LedgerEntry {
                    tenant_id: (*t).to_owned(),
                    idempotency_key: format!("credit_allocation:{t}:{m}"),
                    kind: "allocation".into(),
                    period: m.to_owned(),
                    amount_millicredits: *c,
                    description: "plan".into(),
                })
                .collect();
            let overages: Vec<LedgerEntry> = TENANTS
                .iter()
                .zip(overage)
                .filter(|(_, o)| **o > 0)
                .map(|(t, o)| LedgerEntry {
                    tenant_id: (*t).to_owned(),
                    idempotency_key: format!("overage:{t}:{previous}"),
                    kind: "overage".into(),
                    period: previous.to_owned(),
                    amount_millicredits: *o,
                    description: "overage".into(),
                })
                .collect();
            db.replace_period_entries("allocation", m, &allocations, now).await.unwrap();
            db.replace_period_entries("overage", previous, &overages, now).await.unwrap();
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the order and repetition of (re-)materializations, each tenant's balance is
    /// the sum of the *latest* effect of each bill and allocation (computed here from the
    /// sequence alone), the stored balance equals the ledger, and the health checks agree.
    #[test]
    fn any_sequence_of_rematerializations_leaves_the_correct_balances(ops in proptest::collection::vec(materialization(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap();
            let now = Utc::now();
            db.seed_demo(now).await.unwrap();
            let mut latest_bill: std::collections::BTreeMap<u8, [Option<i64>; 3]> = Default::default();
            let mut latest_allocation: std::collections::BTreeMap<u8, ([i64; 3], [i64; 3])> = Default::default();
            for op in &ops {
                apply(&db, op, now).await;
                match op {
                    Materialization::Bill { day, charges } => { latest_bill.insert(*day, *charges); }
                    Materialization::Allocation { month, credits, overage } => { latest_allocation.insert(*month, (*credits, *overage)); }
                }
            }
            for (i, tenant) in TENANTS.iter().enumerate() {
                let expected: i64 = latest_bill.values().map(|c| -c[i].unwrap_or(0)).sum::<i64>()
                    + latest_allocation.values().map(|(c, o)| c[i] + o[i]).sum::<i64>();
                assert_eq!(db.balance(tenant).await.unwrap(), expected, "{tenant} after {ops:?}");
            }
            let health = db.ledger_health("2026-01").await.unwrap();
            assert!(health.balance_mismatches.is_empty(), "{health:?}");
            assert!(health.duplicate_entries.is_empty(), "{health:?}");
        });
    }
}

#[tokio::test]
async fn a_plaid_item_is_linked_and_re_linked_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_plaid_item_is_linked_and_re_linked(&SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap()).await;
}

async fn a_plaid_item_is_linked_and_re_linked(db: &dyn crate::plaid::PlaidItems) {
    use crate::plaid::Secret;
    let now = Utc::now();
    assert_eq!(db.plaid_access_token("item-a").await.unwrap(), None);
    assert!(db.link_plaid_item("item-a", &Secret::new("access-1"), now).await.unwrap(), "new");
    assert!(!db.link_plaid_item("item-a", &Secret::new("access-2"), now).await.unwrap(), "re-linked");
    assert_eq!(db.plaid_access_token("item-a").await.unwrap().unwrap().expose(), "access-2");
    assert_eq!(db.plaid_item_ids().await.unwrap(), ["item-a"]);
}

/// A token exchange that waits until the test lets it answer.
struct HeldExchange {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl crate::qbo::TokenExchange for HeldExchange {
    async fn exchange(
        &self,
        _realm: &str,
        _refresh: &crate::secret::Secret,
    ) -> Result<crate::qbo::TokenGrant, crate::qbo::QboError> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(crate::qbo::TokenGrant {
            access_token: crate::secret::Secret::new("access-1".to_owned()),
            refresh_token: crate::secret::Secret::new("refresh-1".to_owned()),
            expires_in: 3600,
        })
    }
}

/// A QuickBooks token refresh holds its write transaction across the HTTP exchange; the app
/// database's reads are not held up behind it, even with a write of the same process queued
/// behind the refresh, and the queued write goes through once the refresh committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refresh_in_flight_does_not_hold_up_reads() {
    use crate::qbo::QboTokens;
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(SqliteAppDb::open(&dir.path().join("app.db")).await.unwrap());
    let now = chrono::Utc::now();
    db.seed_demo(now).await.unwrap();
    db.connect("realm-1", &crate::secret::Secret::new("refresh-0".to_owned()), now).await.unwrap();
    let exchange = std::sync::Arc::new(HeldExchange { entered: Default::default(), release: Default::default() });
    let refresh = tokio::spawn({
        let (db, exchange) = (db.clone(), exchange.clone());
        async move { db.access_token("realm-1", None, now, &*exchange).await.unwrap() }
    });
    exchange.entered.notified().await;
    // The refresh holds the write lock now; a ledger write queues behind it.
    let write = tokio::spawn({
        let db = db.clone();
        async move { db.replace_period_entries("storage_charge", "2025-12-15", &[entry("acme", -5_000)], now).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Reads answer meanwhile; one waiting behind the refresh would fail the timeout.
    let reads = async {
        let plans = db.tenant_plans().await.unwrap();
        let realms = db.connected_realms().await.unwrap();
        (plans.len(), realms)
    };
    let (plans, realms) = tokio::time::timeout(std::time::Duration::from_secs(20), reads)
        .await
        .expect("reads answer while a refresh holds its transaction");
    assert_eq!(plans, 3);
    assert_eq!(realms, ["realm-1"]);
    assert!(!refresh.is_finished(), "the refresh was still waiting for its exchange");
    assert!(!write.is_finished(), "the write was still waiting for the refresh");
    exchange.release.notify_one();
    assert_eq!(refresh.await.unwrap().expose(), "access-1");
    assert_eq!(write.await.unwrap().unwrap().inserted, 1, "the queued write went through");
    let stored: (String, String) =
        sqlx::query_as("SELECT refresh_token, access_token FROM qbo_realms").fetch_one(db.pool()).await.unwrap();
    assert_eq!(stored, ("refresh-1".to_owned(), "access-1".to_owned()), "the tokens the exchange bought");
}
