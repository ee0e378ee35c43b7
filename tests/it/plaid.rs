//! `group:plaid` through the binary: the labeled dev source offline; Plaid live against the
//! fixture server (`resources::plaid::fixture`, axum on 127.0.0.1) with paging, a mutation on
//! page 2, `removed[]`, `ITEM_LOGIN_REQUIRED`; secrets in no output, store or file; bad input
//! exits 2; and `kill -9` in the middle of a sync.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type};
use arrow_schema::DataType;
use resources::plaid::fixture::{FixtureEvent, FixtureTx, PlaidFixture};
use resources::plaid::parse_amount;

use crate::common::{Robo, Run};

const CLIENT_ID: &str = "robo-client-id-31337";
const SECRET: &str = "plaid-secret-zz9-plural-z-alpha";
const TOKEN: &str = "access-production-7c0ffee-deadbeef";

async fn run(robo: &Robo, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd: Command = robo.command(args);
    cmd.envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

async fn ok(robo: &Robo, args: &[&str], env: &[(&str, &str)]) -> Run {
    let r = run(robo, args, env).await;
    assert_eq!(r.code, 0, "robo-assets {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn read(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let mut batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1, "one batch of at most 2^20 rows");
    batches.remove(0)
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    batch.column_by_name(column).unwrap().as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect()
}

/// transaction id → amount (scaled by 10^8) of a Parquet output.
fn amounts(batch: &RecordBatch) -> BTreeMap<String, Option<i128>> {
    let amounts = batch.column_by_name("amount").unwrap().as_primitive::<Decimal128Type>();
    strings(batch, "transaction_id").into_iter().map(Option::unwrap).zip(amounts.iter()).collect()
}

/// The latest materialization's metadata of (asset, item).
async fn metadata(robo: &Robo, asset: &str, item: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let out = ok(robo, &["history", asset, "-p", item, "--json"], env).await;
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["materializations"][0]["metadata"].clone()
}

async fn count_materializations(robo: &Robo, asset: &str) -> i64 {
    let mut db = robo.lineage_db().await;
    sqlx::query_scalar("SELECT count(*) FROM materializations WHERE asset_key = $1")
        .bind(asset)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

fn output(robo: &Robo, asset: &str, item: &str) -> RecordBatch {
    read(&robo.home().join(format!("storage/{asset}/{item}.parquet")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_source_syncs_offline_and_says_so_and_the_current_set_folds_its_changes() {
    let robo = Robo::new();
    ok(&robo, &["partitions", "add", "plaid_items", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-demo"], &[]).await;
    let mut meta = metadata(&robo, "plaid_transactions", "item-demo", &[]).await;
    assert!(meta.as_object_mut().unwrap().remove("generation").is_some_and(|g| g.is_string()));
    assert_eq!(
        meta,
        serde_json::json!({"source": "dev", "cursor": "dev-1", "sync_seq": 1, "added": 7, "modified": 0,
            "removed": 0, "pages": 2, "restarts": 0})
    );
    let changes = output(&robo, "plaid_transactions", "item-demo");
    // Types users read: decimal128(28, 8), date32, bool, nullable authorized_date.
    let schema = changes.schema();
    assert_eq!(schema.field_with_name("amount").unwrap().data_type(), &DataType::Decimal128(28, 8));
    assert_eq!(schema.field_with_name("date").unwrap().data_type(), &DataType::Date32);
    assert_eq!(schema.field_with_name("pending").unwrap().data_type(), &DataType::Boolean);
    assert!(schema.field_with_name("authorized_date").unwrap().is_nullable());
    let a = amounts(&changes);
    assert_eq!(a["dev-tx-01"], Some(7_210_000_000), "72.1 exactly");
    assert_eq!(a["dev-tx-05"], Some(123_456_700_000), "1234.567 KWD exactly");
    assert_eq!(a["dev-tx-02"], Some(-250_000_000_000), "a deposit is negative");
    let dates = changes.column_by_name("authorized_date").unwrap().as_primitive::<Date32Type>();
    assert_eq!(arrow_array::Array::null_count(dates), 3);

    ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-demo"], &[]).await;
    let changes = output(&robo, "plaid_transactions", "item-demo");
    assert_eq!(strings(&changes, "change"), [Some("added".into()), Some("modified".into()), Some("removed".into())]);
    ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-demo"], &[]).await;
    let current = amounts(&output(&robo, "plaid_transactions_current", "item-demo"));
    assert_eq!(current.len(), 7, "7 + 1 added − 1 removed");
    assert!(!current.contains_key("dev-tx-04"), "removed");
    assert_eq!(current["dev-tx-03"], Some(485_000_000), "modified: 4.35 became 4.85");
    let meta = metadata(&robo, "plaid_transactions_current", "item-demo", &[]).await;
    assert_eq!((meta["source"].as_str(), meta["transactions"].as_u64()), (Some("dev"), Some(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_set_folds_every_sync_it_missed() {
    // Two syncs in a row, then the current set: it folds both (the output holds only the last).
    let robo = Robo::new();
    ok(&robo, &["partitions", "add", "plaid_items", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-demo"], &[]).await;
    let current = amounts(&output(&robo, "plaid_transactions_current", "item-demo"));
    assert_eq!(current.len(), 7);
    assert!(current.contains_key("dev-tx-01") && current.contains_key("dev-tx-08"), "{current:?}");
    let meta = metadata(&robo, "plaid_transactions_current", "item-demo", &[]).await;
    assert_eq!(meta["syncs_folded"], 2);
    // Again with nothing new: the same set, nothing folded twice.
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-demo"], &[]).await;
    assert_eq!(amounts(&output(&robo, "plaid_transactions_current", "item-demo")), current);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_with_the_same_changes_are_still_two_syncs_to_the_fold() {
    // Empty, then changes, then empty again: the two empty syncs have the same rows, and the
    // fold must still see the changes between them.
    let (fixture, robo, env) = live(50).await;
    let env = pairs(&env);
    let with_token: Vec<(&str, &str)> = env.iter().copied().chain([("PLAID_ACCESS_TOKEN", TOKEN)]).collect();
    ok(&robo, &["plaid", "link", "item-1"], &with_token).await;
    let sync = ["materialize", "plaid_transactions", "-p", "item-1"];
    let fold = ["materialize", "plaid_transactions_current", "-p", "item-1"];
    ok(&robo, &sync, &env).await;
    ok(&robo, &sync, &env).await; // nothing new
    ok(&robo, &fold, &env).await;
    fixture.with(|s| s.log.push(FixtureEvent::Removed("tx-000003".into(), "acc-0".into())));
    fixture.add_generated(100, 2);
    ok(&robo, &sync, &env).await;
    ok(&robo, &sync, &env).await; // nothing new again
    ok(&robo, &fold, &env).await;
    let current = amounts(&output(&robo, "plaid_transactions_current", "item-1"));
    assert_eq!(current.len(), 51);
    assert_eq!(current, truth(&fixture));
    let meta = metadata(&robo, "plaid_transactions_current", "item-1", &env).await;
    assert_eq!((meta["folded_seq"].as_u64(), meta["syncs_folded"].as_u64()), (Some(4), Some(2)));
}

/// A fixture item with `n` transactions and a linked robo-assets home.
async fn live(n: usize) -> (Arc<PlaidFixture>, Robo, Vec<(&'static str, String)>) {
    let fixture = PlaidFixture::new(CLIENT_ID, SECRET, TOKEN);
    fixture.add_generated(0, n);
    let url = fixture.serve().await;
    let env =
        vec![("PLAID_API_URL", url), ("PLAID_CLIENT_ID", CLIENT_ID.to_owned()), ("PLAID_SECRET", SECRET.to_owned())];
    let robo = Robo::new();
    (fixture, robo, env)
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn truth(fixture: &PlaidFixture) -> BTreeMap<String, Option<i128>> {
    fixture.truth().into_iter().map(|(id, t)| (id, Some(parse_amount(&t.amount).unwrap()))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_item_syncs_pages_survives_a_mutation_on_page_2_and_no_secret_shows_anywhere() {
    let (fixture, robo, env) = live(1_203).await;
    let env = pairs(&env);
    let trace: Vec<(&str, &str)> = env.iter().copied().chain([("RUST_LOG", "trace")]).collect();
    let mut seen = String::new();
    let mut keep = |r: Run| {
        seen.push_str(&r.stdout);
        seen.push_str(&r.stderr);
        r
    };
    let link = ["plaid", "link", "item-1"];
    let with_token: Vec<(&str, &str)> = trace.iter().copied().chain([("PLAID_ACCESS_TOKEN", TOKEN)]).collect();
    let linked = keep(ok(&robo, &link, &with_token).await);
    assert!(linked.stdout.starts_with("Linked plaid item item-1"), "{}", linked.stdout);
    let partitions = keep(ok(&robo, &["partitions", "list", "plaid_items"], &trace).await);
    assert_eq!(partitions.stdout.trim(), "item-1", "linking added the partition");
    let relinked = keep(ok(&robo, &link, &with_token).await);
    assert!(relinked.stdout.starts_with("Re-linked plaid item item-1"), "{}", relinked.stdout);
    keep(ok(&robo, &["materialize", "plaid_transactions", "-p", "item-1"], &trace).await);
    let first = metadata(&robo, "plaid_transactions", "item-1", &env).await;
    assert_eq!(
        (first["source"].as_str(), first["added"].as_u64(), first["pages"].as_u64()),
        (Some("live"), Some(1_203), Some(3))
    );
    assert!(fixture.with(|s| s.seen.iter().all(|(count, _)| *count == 500)), "count 500");

    // Then: a modification, a removal of a transaction added earlier, 600 new; and the data
    // changes while page 2 of this sync is read.
    let mut changed = FixtureTx::generated(10);
    changed.amount = "-12345.678".to_owned();
    fixture.with(|s| {
        s.log.push(FixtureEvent::Modified(changed));
        s.log.push(FixtureEvent::Removed("tx-000011".into(), "acc-2".into()));
        s.mutate_on_request = Some(s.requests + 2);
        s.mutation = vec![FixtureEvent::Removed("tx-000012".into(), "acc-0".into())];
    });
    fixture.add_generated(5_000, 600);
    keep(ok(&robo, &["materialize", "plaid_transactions", "-p", "item-1"], &trace).await);
    let second = metadata(&robo, "plaid_transactions", "item-1", &env).await;
    assert_eq!(second["restarts"], 1);
    assert_eq!(
        (second["added"].as_u64(), second["modified"].as_u64(), second["removed"].as_u64()),
        (Some(600), Some(1), Some(2))
    );
    let cursors: Vec<String> = fixture.with(|s| s.seen.iter().map(|(_, c)| c.clone()).collect());
    assert_eq!(cursors[3], first["cursor"].as_str().unwrap(), "the second sync began at the stored cursor");
    keep(ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-1"], &trace).await);
    let current = amounts(&output(&robo, "plaid_transactions_current", "item-1"));
    assert_eq!(current, truth(&fixture), "the folded set is the fixture's truth");
    assert_eq!(current["tx-000010"], Some(-1_234_567_800_000));

    // ITEM_LOGIN_REQUIRED: a failed step naming the item and saying to re-link; the cursor stays.
    fixture.with(|s| {
        s.login_required.insert(TOKEN.to_owned());
    });
    let failed = keep(run(&robo, &["materialize", "plaid_transactions", "-p", "item-1"], &trace).await);
    assert_eq!(failed.code, 1);
    assert!(
        failed.stdout.contains("failed after 1 attempt(s): plaid item item-1 needs to be re-linked"),
        "{}",
        failed.stdout
    );
    assert_eq!(count_materializations(&robo, "plaid_transactions").await, 2, "nothing recorded");
    assert_eq!(metadata(&robo, "plaid_transactions", "item-1", &env).await["cursor"], second["cursor"]);

    // Every output a user or operator sees: runs, logs and JSON views.
    for args in [
        vec!["history", "plaid_transactions", "--json"],
        vec!["runs", "--json"],
        vec!["status", "--json"],
        vec!["lineage", "plaid_transactions_current", "-p", "item-1", "--format", "json"],
    ] {
        keep(ok(&robo, &args, &trace).await);
    }
    // Every file of the home too: the lineage store (with its WAL), the Parquet outputs and the
    // change log (not the demo graphs' sparse files, hundreds of GB of holes). The app database is where access tokens live, by design; the secret is not there.
    let mut haystack = seen.into_bytes();
    let mut app_db = Vec::new();
    let files = walk(&robo.home());
    assert!(files.iter().any(|f| f.ends_with("lineage.db")) && files.iter().any(|f| f.ends_with("0000000002.parquet")));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        match file.file_name().unwrap().to_str().unwrap().starts_with("app.db") {
            true => app_db.extend(bytes),
            false => haystack.extend(bytes),
        }
    }
    for secret in [SECRET, TOKEN] {
        assert!(!contains(&haystack, secret.as_bytes()), "{secret} leaked");
    }
    assert!(!contains(&app_db, SECRET.as_bytes()), "the client secret is never stored");
    // The token did reach Plaid, in the JSON body.
    assert!(fixture.with(|s| s.bodies.iter().all(|b| b.contains(TOKEN) && b.contains(SECRET))));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("graphs") {
                out.extend(walk(&path));
            }
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plaid_input_exits_2_or_fails_the_step_and_records_nothing() {
    let (fixture, robo, env) = live(5).await;
    let env = pairs(&env);
    // Live without the secret: exit 2, naming the variable, before anything runs.
    let no_secret: Vec<(&str, &str)> = env.iter().copied().filter(|(k, _)| *k != "PLAID_SECRET").collect();
    let mut cmd = robo.command(&["list"]);
    cmd.envs(no_secret).env_remove("PLAID_SECRET");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PLAID_SECRET is not set"), "{out:?}");
    let mut cmd = robo.command(&["list"]);
    cmd.env("PLAID_SECRET", SECRET).env_remove("PLAID_CLIENT_ID").env_remove("PLAID_API_URL");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PLAID_CLIENT_ID is not set: Plaid is live because PLAID_SECRET is set"), "{stderr}");
    assert!(!stderr.contains(SECRET));

    // An empty access token: exit 2.
    let empty: Vec<(&str, &str)> = env.iter().copied().chain([("PLAID_ACCESS_TOKEN", " ")]).collect();
    let r = run(&robo, &["plaid", "link", "item-1"], &empty).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("the access token is empty"), "{}", r.stderr);
    let r = run(&robo, &["plaid", "link", "../x", "--access-token", TOKEN], &env).await;
    assert_eq!(r.code, 2, "{r:?}");

    // An item that is not linked: a failed step saying to link it; nothing recorded, no call made.
    ok(&robo, &["partitions", "add", "plaid_items", "item-1"], &env).await;
    let r = run(&robo, &["materialize", "plaid_transactions", "-p", "item-1"], &env).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("failed after 1 attempt(s): plaid item item-1 is not linked: run `robo-assets plaid link item-1"),
        "{}",
        r.stdout
    );
    assert_eq!(count_materializations(&robo, "plaid_transactions").await, 0);
    assert_eq!(fixture.with(|s| s.requests), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_sync_keeps_the_old_cursor_and_the_next_run_doubles_nothing() {
    let (fixture, robo, env) = live(1_100).await;
    let env = pairs(&env);
    let with_token: Vec<(&str, &str)> = env.iter().copied().chain([("PLAID_ACCESS_TOKEN", TOKEN)]).collect();
    ok(&robo, &["plaid", "link", "item-1"], &with_token).await;
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-1"], &env).await;
    let first = metadata(&robo, "plaid_transactions", "item-1", &env).await;

    // New changes over 3 pages; the fixture holds page 2 of the next sync.
    let mut changed = FixtureTx::generated(1);
    changed.amount = "0.01".to_owned();
    fixture.with(|s| {
        s.log.push(FixtureEvent::Removed("tx-000002".into(), "acc-2".into()));
        s.log.push(FixtureEvent::Modified(changed));
        s.hold_on_request = Some(s.requests + 2);
    });
    fixture.add_generated(10_000, 1_000);
    let mut cmd = robo.command(&["materialize", "plaid_transactions", "-p", "item-1"]);
    cmd.envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fixture.holding() {
        assert!(Instant::now() < deadline, "the sync never reached page 2");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    fixture.release();
    assert_eq!(count_materializations(&robo, "plaid_transactions").await, 1, "the killed sync recorded nothing");
    assert_eq!(metadata(&robo, "plaid_transactions", "item-1", &env).await["cursor"], first["cursor"]);

    let before = fixture.with(|s| s.requests);
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-1"], &env).await;
    let resumed_from = fixture.with(|s| s.seen[before].1.clone());
    assert_eq!(resumed_from, first["cursor"].as_str().unwrap(), "the next run synced from the old cursor");
    let changes = output(&robo, "plaid_transactions", "item-1");
    assert_eq!(changes.num_rows(), 1_002, "exactly the new changes, once each");
    ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-1"], &env).await;
    let current = amounts(&output(&robo, "plaid_transactions_current", "item-1"));
    assert_eq!(current.len(), 1_100 - 1 + 1_000);
    assert_eq!(current, truth(&fixture), "the folded set is the fixture's truth, nothing doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaid_outputs_open_in_pyarrow_with_their_types() {
    let Some(python) = std::env::var("ROBO_ASSETS_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CI").is_err(), "CI must set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow");
        eprintln!("skipped: set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow to run this test");
        return;
    };
    let robo = Robo::new();
    ok(&robo, &["partitions", "add", "plaid_items", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions", "-p", "item-demo"], &[]).await;
    ok(&robo, &["materialize", "plaid_transactions_current", "-p", "item-demo"], &[]).await;
    let script = "import sys, pyarrow.parquet as pq\n\
        for path in sys.argv[1:]:\n\
        \x20   t = pq.read_table(path)\n\
        \x20   s = t.schema\n\
        \x20   print(s.field('amount').type, s.field('date').type, s.field('pending').type, s.field('authorized_date').type, s.field('authorized_date').nullable, t.column('authorized_date').null_count, str(sum(t.column('amount').to_pylist())))\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(robo.home().join("storage/plaid_transactions/item-demo.parquet"))
        .arg(robo.home().join("storage/plaid_transactions_current/item-demo.parquet"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Sums are exact decimals: 72.1 − 2500 + 4.35 + 0.1 + 1234.567 + 18.99 − 18.99.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "decimal128(28, 8) date32[day] bool date32[day] True 3 -1188.88300000\n\
         decimal128(28, 8) date32[day] bool date32[day] True 3 -1188.88300000\n"
    );
}
