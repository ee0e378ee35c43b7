//! The lineage-store contract: every behaviour runs against a real SQLite file and a fresh
//! PostgreSQL database (`ROBO_ASSETS_TEST_PG_URL`, default the server on 127.0.0.1:5432).

use chrono::{TimeZone, Utc};

use super::*;
use crate::test_support::{postgres, sqlite};

fn ts(h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 16, h, 0, 0).unwrap()
}

async fn new_run(store: &dyn LineageStore) -> RunId {
    let id = RunId::new();
    store
        .create_run(&NewRun {
            id,
            trigger: Trigger::Manual,
            selection: "storage_bill".into(),
            n_steps: 2,
            tags: serde_json::json!({}),
            created_at: ts(1),
            owner: None,
        })
        .await
        .unwrap();
    id
}

fn materialization(
    run_id: RunId,
    asset: &str,
    partition: &str,
    version: &str,
    inputs: Vec<InputVersion>,
) -> NewMaterialization {
    NewMaterialization {
        asset_key: asset.into(),
        partition_key: partition.into(),
        run_id,
        attempt: 1,
        data_version: version.into(),
        logical_version: format!("logical-{version}"),
        code_version: "1".into(),
        inputs_hash: format!("inputs-{}", inputs.len()),
        inputs,
        storage_uri: Some(format!("file:///tmp/{asset}/{partition}.parquet")),
        bytes: Some(100),
        row_count: Some(3),
        schema: Some(serde_json::json!({"fields": []})),
        metadata: serde_json::json!({"tenants": 2}),
        started_at: ts(2),
        finished_at: ts(3),
    }
}

async fn materialization_updates_current_state_and_keeps_history(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let first = store
        .record_materialization(&materialization(run_id, "usage_snapshot", "2025-12-15T00:00", "v1", vec![]))
        .await
        .unwrap();
    let run2 = new_run(store).await;
    let second = store
        .record_materialization(&materialization(run2, "usage_snapshot", "2025-12-15T00:00", "v2", vec![]))
        .await
        .unwrap();
    assert!(second > first);

    let states = store.partition_states("usage_snapshot").await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].current_materialization_id, Some(second));
    assert_eq!(states[0].data_version.as_deref(), Some("v2"));
    assert_eq!(states[0].last_attempt_status, AttemptStatus::Materialized);

    let history = store.history("usage_snapshot", Some("2025-12-15T00:00"), None, 10).await.unwrap();
    assert_eq!(history.iter().map(|m| m.data_version.as_str()).collect::<Vec<_>>(), ["v2", "v1"]);
    assert_eq!(history[0].metadata["tenants"], 2);
    let older = store.history("usage_snapshot", Some("2025-12-15T00:00"), Some(second), 10).await.unwrap();
    assert_eq!(older.iter().map(|m| m.data_version.as_str()).collect::<Vec<_>>(), ["v1"]);
    let counted = Counted::History { asset: "usage_snapshot", partition: Some("2025-12-15T00:00") };
    assert_eq!(store.count(counted).await.unwrap(), 2);
}

async fn inputs_are_recorded_exactly_in_order(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let mut inputs = Vec::new();
    for h in 0..24 {
        let pk = format!("2025-12-15T{h:02}:00");
        let id = store
            .record_materialization(&materialization(run_id, "usage_snapshot", &pk, &format!("h{h}"), vec![]))
            .await
            .unwrap();
        inputs.push(InputVersion {
            asset_key: "usage_snapshot".into(),
            partition_key: pk,
            materialization_id: Some(id),
            data_version: format!("h{h}"),
        });
    }
    let bill = store
        .record_materialization(&materialization(run_id, "storage_bill", "2025-12-15", "b1", inputs.clone()))
        .await
        .unwrap();
    assert_eq!(store.inputs_of(bill).await.unwrap(), inputs);
    assert_eq!(store.materialization(bill).await.unwrap().unwrap().n_inputs, 24);
    assert_eq!(store.run_materializations(run_id).await.unwrap().len(), 25);
    let readers = store.readers_of(inputs[3].materialization_id.unwrap()).await.unwrap();
    assert_eq!(readers.iter().map(|m| m.id).collect::<Vec<_>>(), [bill]);
}

async fn failure_keeps_the_last_good_materialization(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let id = store
        .record_materialization(&materialization(run_id, "storage_bill", "2025-12-15", "b1", vec![]))
        .await
        .unwrap();
    let run2 = new_run(store).await;
    let c = claim_one(store, run2, "storage_bill", "2025-12-15", 1).await;
    assert_eq!(
        store.fail_request("w", &failed(&c, "graph api unavailable", None), t(5)).await.unwrap(),
        FailOutcome::Failed
    );
    let state = store.partition_states("storage_bill").await.unwrap().remove(0);
    assert_eq!(state.last_attempt_status, AttemptStatus::Failed);
    assert_eq!(state.current_materialization_id, Some(id));
    assert_eq!(state.last_error.as_deref(), Some("graph api unavailable"));
    let events = store.run_events(run2).await.unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::StepFailed);
    assert_eq!(events.last().unwrap().body["attempts"], 1);
    assert_eq!(store.run(run2).await.unwrap().unwrap().status, RunStatus::Failed);
}

async fn canceled_step_leaves_no_trace_in_current_state(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let c = claim_one(store, run_id, "storage_bill", "2025-12-15", 3).await;
    assert_eq!(store.partition_states("storage_bill").await.unwrap()[0].last_attempt_status, AttemptStatus::Running);
    assert_eq!(store.cancel_request(c.id, t(2)).await.unwrap(), Some(RequestState::Running));
    assert!(store.acknowledge_cancel("w", c.id, c.attempt, t(3)).await.unwrap());
    assert!(store.partition_states("storage_bill").await.unwrap().is_empty());
    assert_eq!(store.run_events(run_id).await.unwrap().last().unwrap().kind, EventKind::StepCanceled);

    // With a previous materialization, cancel restores `materialized`.
    store.record_materialization(&materialization(run_id, "storage_bill", "2025-12-15", "b1", vec![])).await.unwrap();
    let run2 = new_run(store).await;
    let c = claim_one(store, run2, "storage_bill", "2025-12-15", 3).await;
    store.cancel_request(c.id, t(4)).await.unwrap();
    assert!(store.acknowledge_cancel("w", c.id, c.attempt, t(5)).await.unwrap());
    let state = store.partition_states("storage_bill").await.unwrap().remove(0);
    assert_eq!(state.last_attempt_status, AttemptStatus::Materialized);
    assert_eq!(state.data_version.as_deref(), Some("b1"));
}

async fn run_status_transitions_are_logged(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store
        .set_run_status(run_id, RunStatus::Running, &RunEvent::run(run_id, ts(2), EventKind::RunStarted, ""))
        .await
        .unwrap();
    store
        .set_run_status(run_id, RunStatus::Canceled, &RunEvent::run(run_id, ts(4), EventKind::RunCanceled, "ctrl-c"))
        .await
        .unwrap();
    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Canceled);
    assert_eq!(run.started_at, Some(ts(2)));
    assert_eq!(run.finished_at, Some(ts(4)));
    let kinds: Vec<_> = store.run_events(run_id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::RunStarted, EventKind::RunCanceled]);
    assert_eq!(
        store
            .runs(&RunFilter { status: Some(RunStatus::Canceled), limit: 10, ..RunFilter::default() })
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .runs(&RunFilter { status: Some(RunStatus::Succeeded), limit: 10, ..RunFilter::default() })
            .await
            .unwrap()
            .is_empty()
    );

    // Keyset pages, newest first: a page ends where the next begins, with nothing twice.
    let (older, newer) = (new_run(store).await, new_run(store).await);
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let page = |before: Option<RunId>| RunFilter { before, limit: 2, ..RunFilter::default() };
    let first = ids(store.runs(&page(None)).await.unwrap());
    assert_eq!(first, [newer, older]);
    assert_eq!(ids(store.runs(&page(Some(older))).await.unwrap()), [run_id]);
    assert!(store.runs(&page(Some(run_id))).await.unwrap().is_empty());
    let manual = RunFilter { trigger: Some(Trigger::Manual), limit: 10, ..RunFilter::default() };
    assert_eq!(store.runs(&manual).await.unwrap().len(), 3);
    let of_asset = RunFilter { asset: Some("storage_bill".to_owned()), limit: 10, ..RunFilter::default() };
    assert!(store.runs(&of_asset).await.unwrap().is_empty(), "no request of these runs names storage_bill");

    let missing = RunId::new();
    let err = store
        .set_run_status(missing, RunStatus::Running, &RunEvent::run(missing, ts(2), EventKind::RunStarted, ""))
        .await;
    assert!(matches!(err, Err(Error::UnknownRun(_))));
}

async fn a_run_records_one_materialization_per_partition(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store.record_materialization(&materialization(run_id, "storage_bill", "2025-12-15", "b1", vec![])).await.unwrap();
    let again =
        store.record_materialization(&materialization(run_id, "storage_bill", "2025-12-15", "b2", vec![])).await;
    assert!(again.is_err(), "the UNIQUE(run, asset, partition) fence must reject a second effect");
    assert_eq!(store.partition_states("storage_bill").await.unwrap()[0].data_version.as_deref(), Some("b1"));
}

async fn dynamic_partitions_are_added_once_in_order(store: &dyn LineageStore) {
    let keys = vec!["sub_b".to_owned(), "sub_a".to_owned()];
    assert_eq!(store.add_dynamic_partitions("subscriptions", &keys, ts(1)).await.unwrap(), 2);
    assert_eq!(
        store.add_dynamic_partitions("subscriptions", &["sub_a".to_owned(), "sub_c".to_owned()], ts(2)).await.unwrap(),
        1
    );
    assert_eq!(store.dynamic_partitions("subscriptions").await.unwrap(), ["sub_b", "sub_a", "sub_c"]);
    // Several definitions in one read: each in its own order, one without keys empty, and a
    // definition not asked for left out.
    store.add_dynamic_partitions("realms", &["r2".to_owned(), "r1".to_owned()], ts(3)).await.unwrap();
    store.add_dynamic_partitions("items", &["i1".to_owned()], ts(4)).await.unwrap();
    store.add_dynamic_partitions("subscriptions", &["sub_0".to_owned()], ts(5)).await.unwrap();
    let of = store.dynamic_partitions_of(&["subscriptions", "realms", "ciks"]).await.unwrap();
    assert_eq!(of.len(), 3, "{of:?}");
    assert_eq!(of["subscriptions"], ["sub_b", "sub_a", "sub_c", "sub_0"]);
    assert_eq!(of["realms"], ["r2", "r1"]);
    assert!(of["ciks"].is_empty());
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    let run_id = {
        let store = SqliteStore::open(&path).await.unwrap();
        let run_id = new_run(&store).await;
        store
            .record_materialization(&materialization(run_id, "storage_bill", "2025-12-15", "b1", vec![]))
            .await
            .unwrap();
        store.pool().close().await;
        run_id
    };
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.run_materializations(run_id).await.unwrap().len(), 1);
}

/// Every process's first statement reads the whole WAL back to rebuild its index, so the store
/// checkpoints it once it holds 250 pages (SQLite's default is 1,000) and the WAL file, reused
/// from its start after each checkpoint, stays short however much is written.
#[tokio::test]
async fn the_wal_is_checkpointed_before_it_grows_long() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let run_id = new_run(&store).await;
    // One commit each: several thousand pages written in all.
    for h in 0..1200 {
        let hour = materialization(run_id, "usage_snapshot", &format!("h{h:04}"), &format!("v{h}"), vec![]);
        store.record_materialization(&hour).await.unwrap();
    }
    let page: u64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(store.pool()).await.unwrap();
    let frame = 24 + page;
    let wal = std::fs::metadata(dir.path().join("lineage.db-wal")).unwrap().len();
    assert!(wal < 300 * frame, "the WAL grew to {} pages", wal / frame);
    assert_eq!(store.run_materializations(run_id).await.unwrap().len(), 1200);
}

/// Two stores on one SQLite file, as two processes would open it, the first holding the write
/// lock in an open transaction (the temp dir lives as long as the stores).
async fn two_stores_the_first_holding_the_lock()
-> (tempfile::TempDir, SqliteStore, SqliteStore, sqlx::Transaction<'static, sqlx::Sqlite>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    let (holder, store) = (SqliteStore::open(&path).await.unwrap(), SqliteStore::open(&path).await.unwrap());
    let lock = holder.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    (dir, holder, store, lock)
}

/// A store's statements run on the thread that awaits them (vendor/README.md). A write that meets
/// another connection's write lock waits for it on a blocking thread, not in SQLite's busy
/// handler on the awaiting thread: here the lock's holder is a task of the same one-thread
/// runtime, which could not commit if the waiting write held the thread (the write would fail
/// after the 30 s busy timeout).
#[tokio::test]
async fn a_write_waiting_for_another_connections_lock_leaves_the_thread_free() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_dir, holder, store, lock) = two_stores_the_first_holding_the_lock().await;
    let committed = AtomicBool::new(false);
    let write = async {
        let run_id = new_run(&store).await;
        assert!(committed.load(Ordering::SeqCst), "the write waited for the lock");
        run_id
    };
    let commit_later = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        committed.store(true, Ordering::SeqCst);
        lock.commit().await.unwrap();
    };
    let (run_id, ()) =
        tokio::time::timeout(std::time::Duration::from_secs(10), async { tokio::join!(write, commit_later) })
            .await
            .expect("the holder committed while the write waited");
    assert!(holder.run(run_id).await.unwrap().is_some(), "the write committed");
}

/// A write transaction given up while it waits for the lock (a timeout, a canceled task) does not
/// begin later behind its caller's back: once the lock is free, the other connection takes it
/// again (within 10 s: a lock left held would keep it waiting for the 30 s busy timeout), and
/// the given-up write's connection begins anew.
#[tokio::test]
async fn a_write_given_up_while_waiting_for_the_lock_leaves_no_transaction_behind() {
    let (_dir, holder, store, lock) = two_stores_the_first_holding_the_lock().await;
    let given_up =
        tokio::time::timeout(std::time::Duration::from_millis(100), store.pool().begin_with("BEGIN IMMEDIATE")).await;
    assert!(given_up.is_err(), "the write waited for the lock");
    lock.commit().await.unwrap();
    let ten_seconds = std::time::Duration::from_secs(10);
    let other = tokio::time::timeout(ten_seconds, new_run(&holder)).await.expect("the lock is free again");
    let run_id =
        tokio::time::timeout(ten_seconds, new_run(&store)).await.expect("the given-up write's connection begins anew");
    assert!(holder.run(run_id).await.unwrap().is_some() && store.run(other).await.unwrap().is_some());
}

/// The SQLite store has one connection, which reads and writes take in turn: many tasks of one
/// process writing and reading at once all finish, each read seeing what committed before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_many_tasks_reading_and_writing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap());
    let partitions: Vec<String> = (1..=16).map(|d| format!("2025-12-{d:02}")).collect();
    let tasks: Vec<_> = partitions
        .iter()
        .map(|partition| {
            let (store, partition) = (store.clone(), partition.clone());
            tokio::spawn(async move {
                for n in 0..5 {
                    let (run_id, version) = (new_run(&*store).await, format!("v{n}"));
                    store
                        .record_materialization(&materialization(run_id, "storage_bill", &partition, &version, vec![]))
                        .await
                        .unwrap();
                    let key = [("storage_bill".to_owned(), partition.clone())];
                    let state = store.partition_states_of(&key).await.unwrap().pop().flatten().unwrap();
                    assert_eq!(state.data_version.as_deref(), Some(version.as_str()), "a read sees this task's commit");
                    assert_eq!(store.run_materializations(run_id).await.unwrap().len(), 1);
                }
            })
        })
        .collect();
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    // A query waiting for the connection held by its own task would wait until the pool's
    // acquire timeout: the timeout here turns a hang into a failure.
    tokio::time::timeout(std::time::Duration::from_secs(60), all).await.expect("every task finished");
    let keys: Vec<_> = partitions.iter().map(|p| ("storage_bill".to_owned(), p.clone())).collect();
    for state in store.partition_states_of(&keys).await.unwrap() {
        assert_eq!(state.unwrap().data_version.as_deref(), Some("v4"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_first_opens_at_once_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("every concurrent open succeeds");
    }
}

/// Opening skips the migrator when every migration is applied as embedded, but a changed or a
/// dirty migration is still refused at open, as the migrator refuses it.
#[tokio::test]
async fn an_open_checks_every_applied_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    assert!(crate::migrations_current(&mut conn, &crate::sqlite::MIGRATOR).await, "a fresh store is current");
    let first = crate::sqlite::MIGRATOR.iter().next().unwrap().version;
    let set = |sql: &'static str| sqlx::query(sql).bind(first);
    set("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = $1").execute(&mut *conn).await.unwrap();
    assert!(!crate::migrations_current(&mut conn, &crate::sqlite::MIGRATOR).await);
    drop(conn);
    store.pool().close().await;
    drop(store);
    let err = SqliteStore::open(&path).await.expect_err("a changed migration is refused");
    assert!(matches!(err, Error::Migrate(sqlx::migrate::MigrateError::VersionMismatch(v)) if v == first), "{err:?}");

    let checksum = crate::sqlite::MIGRATOR.iter().next().unwrap().checksum.to_vec();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $2, success = false WHERE version = $1")
        .bind(first)
        .bind(checksum)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    let err = SqliteStore::open(&path).await.expect_err("a dirty migration is refused");
    assert!(matches!(err, Error::Migrate(sqlx::migrate::MigrateError::Dirty(v)) if v == first), "{err:?}");
}

#[test]
fn a_special_scheme_without_slashes_is_still_a_url() {
    // Found by the redact_url fuzz target: WHATWG parsers read these as userinfo.
    for (text, shown) in [
        ("wss:wss:3IIIIIII@IIIIIIIIIII.", "wss://wss:***@IIIIIIIIIII."),
        ("http:key:secret@s3.internal:9000", "http://key:***@s3.internal:9000"),
        ("HTTPS:/key:secret@host/x", "HTTPS://key:***@host/x"),
    ] {
        assert_eq!(crate::redact_url(text), shown);
    }
    assert_eq!(crate::redact_url("https://key:secret@host"), "https://key:***@host");
    // Found next: leading newlines, and a tab in the host, which WHATWG parsers drop.
    assert_eq!(crate::redact_url("\n\nzs://apm\0\0\0:ion_name@\tb\0"), "zs://apm\0\0\0:***@b");
    assert_eq!(crate::redact_url(" postgres://app:secret@db/robo\n"), "postgres://app:***@db/robo");
}

#[test]
fn urls_are_redacted() {
    assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
    assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    assert_eq!(redact_url("sqlite://./.robo-assets/lineage.db"), "sqlite://./.robo-assets/lineage.db");
    assert_eq!(redact_url("postgres://u:p@ss@h/db?sslmode=require"), "postgres://u:***@h/db?sslmode=require");
    assert_eq!(redact_url("postgres://app:pa/ss@db/x"), "postgres://app:***@db/x");
    assert_eq!(redact_url("postgres://app:p?a#s@db/x"), "postgres://app:***@db/x");
    assert_eq!(redact_url("host=db user=app password=s3cret dbname=x"), "host=db user=app password=*** dbname=x");
    // Every other form sqlx and libpq accept.
    assert_eq!(redact_url("postgres://app@db/x?password=s3cret"), "postgres://app@db/x?password=***");
    assert_eq!(
        redact_url("postgres://db/x?sslmode=require&PASSWORD=s3cret&sslpassword=k3y#frag"),
        "postgres://db/x?sslmode=require&PASSWORD=***&sslpassword=***#frag"
    );
    assert_eq!(redact_url("postgres://db/x?password=a@s3cret"), "postgres://db/x?password=***");
    assert_eq!(redact_url("host=db password = 'my s3cret' user=app"), "host=db password=*** user=app");
    assert_eq!(redact_url("host=db password='it\\'s s3cret' user=app"), "host=db password=*** user=app");
    assert_eq!(redact_url("host=db sslpassword=s3cret"), "host=db sslpassword=***");
    assert_eq!(redact_url("postgres://db/x?passw%6Frd=s3cret"), "postgres://db/x?passw%6Frd=***");
    // sqlx logs a parameter it does not support with its value: such secrets never reach it.
    assert_eq!(
        crate::without_unsupported_secrets("postgres://db/x?sslmode=disable&sslpassword=s3cret&password=p#f"),
        "postgres://db/x?sslmode=disable&password=p#f"
    );
    assert_eq!(crate::without_unsupported_secrets("postgres://db/x?sslpassword=s3cret"), "postgres://db/x");
    for url in ["postgres://app:pa/ss@db/x", "postgres://app:p?a#s@db/x", "host=db password=s3cret"] {
        assert!(!redact_url(url).contains("ss@") && !redact_url(url).contains("s3cret"), "{url} leaks");
    }
}

/// From the `redact_url` fuzz target (fuzz/): a percent-encoded password that reads like the
/// host (`%40db.inter` is `@db.inter`) is hidden, and the host is kept whole.
#[test]
fn a_password_that_looks_like_the_host_is_hidden_and_the_host_kept() {
    let shown = redact_url("postgres://app:%40db.inter@db.internal:5432/robo");
    assert_eq!(shown, "postgres://app:***@db.internal:5432/robo");
    let shown = redact_url("postgres://db.internal/robo?password=%40db.inter&sslmode=require");
    assert_eq!(shown, "postgres://db.internal/robo?password=***&sslmode=require");
    // A password of colons, and its encoded form elsewhere in the text, which stays.
    let shown = redact_url("es://ap:::@3=//ap%3A%3A11app/?x");
    assert_eq!(shown, "es://ap:***@3=//ap%3A%3A11app/?x");
}

/// Found by `no_password_form_leaks`: a DSN whose quoted password contains "://" was taken for a
/// URL (with nothing to redact) and shown whole.
#[test]
fn a_dsn_whose_password_looks_like_a_url_is_still_a_dsn() {
    let shown = redact_url("host=db user=app password='Zq://!*/' dbname=x");
    assert!(!shown.contains("Zq://"), "{shown}");
    assert!(shown.contains("host=db"), "{shown}");
}

proptest::proptest! {
    /// No password, whatever its characters, survives redaction in any form sqlx accepts.
    #[test]
    fn no_password_form_leaks(pw in "[A-Za-z0-9!$%*+,;=~@:/?#&'-]{6,24}") {
        let marker = format!("Zq{pw}");
        let query = marker.replace(['&', '#'], "_");
        let quoted = marker.replace(['\'', '\\'], "_");
        for url in [
            format!("postgres://app:{marker}@db:5432/x"),
            format!("postgres://app@db/x?sslmode=require&password={query}"),
            format!("postgres://db/x?sslpassword={query}&password={query}"),
            format!("host=db user=app password='{quoted}' dbname=x"),
        ] {
            let shown = redact_url(&url);
            // Not the password, nor its first 8 characters.
            proptest::prop_assert!(!shown.contains(&marker[..8]), "{} -> {}", url, shown);
        }
    }
}

async fn canceling_a_retry_of_a_failed_partition_keeps_it_failed(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let c = claim_one(store, run_id, "storage_bill", "2025-12-15", 1).await;
    store.fail_request("w", &failed(&c, "quota exceeded", None), t(2)).await.unwrap();
    let run2 = new_run(store).await;
    let c = claim_one(store, run2, "storage_bill", "2025-12-15", 1).await;
    store.cancel_request(c.id, t(3)).await.unwrap();
    store.acknowledge_cancel("w", c.id, c.attempt, t(4)).await.unwrap();
    let state = store.partition_states("storage_bill").await.unwrap().remove(0);
    assert_eq!(state.last_attempt_status, AttemptStatus::Failed);
    assert_eq!(state.last_error.as_deref(), Some("quota exceeded"));
}

async fn a_batch_of_materializations_is_recorded_in_order_with_its_inputs(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let hours: Vec<NewMaterialization> = (0..600)
        .map(|h| materialization(run_id, "usage_snapshot", &format!("h{h:03}"), &format!("v{h}"), vec![]))
        .collect();
    let events: Vec<RunEvent> = hours
        .iter()
        .map(|m| RunEvent::step(run_id, ts(2), EventKind::StepStarted, &m.asset_key, &m.partition_key, ""))
        .collect();
    store.record_steps_started(&events).await.unwrap();
    assert!(
        store
            .partition_states("usage_snapshot")
            .await
            .unwrap()
            .iter()
            .all(|s| s.last_attempt_status == AttemptStatus::Running)
    );
    let ids = store.record_materializations(&hours).await.unwrap();
    assert_eq!(ids.len(), 600, "more rows than one statement holds");
    for (id, m) in ids.iter().zip(&hours) {
        let record = store.materialization(*id).await.unwrap().unwrap();
        assert_eq!(
            (record.partition_key.as_str(), record.data_version.as_str()),
            (m.partition_key.as_str(), m.data_version.as_str())
        );
    }
    let inputs: Vec<InputVersion> = ids
        .iter()
        .zip(&hours)
        .map(|(id, m)| InputVersion {
            asset_key: m.asset_key.clone(),
            partition_key: m.partition_key.clone(),
            materialization_id: Some(*id),
            data_version: m.data_version.clone(),
        })
        .collect();
    let month = store
        .record_materialization(&materialization(run_id, "report", "2025-12", "r1", inputs.clone()))
        .await
        .unwrap();
    assert_eq!(store.inputs_of(month).await.unwrap(), inputs);
    let keys: Vec<(String, String)> =
        vec![("usage_snapshot".into(), "h007".into()), ("report".into(), "2025-12".into()), ("x".into(), "y".into())];
    let states = store.partition_states_of(&keys).await.unwrap();
    assert_eq!(states[0].as_ref().unwrap().data_version.as_deref(), Some("v7"));
    assert_eq!(states[1].as_ref().unwrap().current_materialization_id, Some(month));
    assert!(states[2].is_none());
    assert_eq!(store.run_events(run_id).await.unwrap().len(), 1201);
}

// --- The request queue ----------------------------------------------------------------------

fn t(s: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(s)
}

fn request(run_id: RunId, key: &str, asset: &str, partition: &str) -> NewRequest {
    NewRequest {
        id: RequestId::new(),
        idempotency_key: key.to_owned(),
        run_id,
        asset_key: asset.to_owned(),
        partition_key: partition.to_owned(),
        trigger: Trigger::Manual,
        pool: None,
        priority: 0,
        max_attempts: 3,
        run_at: t(0),
        created_at: t(0),
    }
}

fn completion(claim: &ClaimedRequest, version: &str) -> Completion {
    let mut m = materialization(claim.run_id, &claim.asset_key, &claim.partition_key, version, vec![]);
    m.attempt = claim.attempt;
    Completion { id: claim.id, attempt: claim.attempt, materialization: m, checks: Vec::new(), messages: Vec::new() }
}

fn failed(claim: &ClaimedRequest, error: &str, retry_at: Option<chrono::DateTime<Utc>>) -> FailedAttempt {
    FailedAttempt {
        id: claim.id,
        attempt: claim.attempt,
        error: error.to_owned(),
        retry_at,
        checks: Vec::new(),
        messages: Vec::new(),
    }
}

fn check(claim: &ClaimedRequest, name: &str, severity: Severity, passed: bool) -> NewCheckResult {
    NewCheckResult {
        asset_key: claim.asset_key.clone(),
        partition_key: claim.partition_key.clone(),
        run_id: claim.run_id,
        check_name: name.into(),
        severity,
        passed,
        message: format!("{name} on {}", claim.partition_key),
        created_at: t(5),
    }
}

/// Submits one request of `run` (with `max_attempts`) and claims it as worker `w` at t(1).
async fn claim_one(
    store: &dyn LineageStore,
    run: RunId,
    asset: &str,
    partition: &str,
    max_attempts: i64,
) -> ClaimedRequest {
    let mut r = request(run, &format!("{run}:{asset}:{partition}"), asset, partition);
    r.max_attempts = max_attempts;
    store.submit_requests(&[r], &[]).await.unwrap();
    store.claim_requests("w", Some(run), 1, t(1), t(61)).await.unwrap().remove(0)
}

async fn state_of(store: &dyn LineageStore, id: RequestId) -> RequestState {
    store.request(id).await.unwrap().unwrap().state
}

async fn a_duplicate_idempotency_key_returns_the_first_request(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let first =
        store.submit_requests(&[request(run_id, "sched:bill:2025-12-15", "bill", "2025-12-15")], &[]).await.unwrap();
    let again =
        store.submit_requests(&[request(run_id, "sched:bill:2025-12-15", "bill", "2025-12-15")], &[]).await.unwrap();
    assert!(first[0].inserted && !again[0].inserted);
    assert_eq!(first[0].id, again[0].id);
    assert_eq!(store.requests(Some(run_id), None, None, 10).await.unwrap().len(), 1);

    // In one submission too, mixed with new keys, across statement-sized chunks.
    let mut batch: Vec<NewRequest> =
        (0..1_200).map(|i| request(run_id, &format!("k{i}"), "usage", &format!("h{i}"))).collect();
    batch.push(request(run_id, "sched:bill:2025-12-15", "bill", "2025-12-15"));
    batch.push(request(run_id, "k7", "usage", "h7"));
    let outcomes = store.submit_requests(&batch, &[]).await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| o.inserted).count(), 1_200);
    assert!(!outcomes[1_200].inserted && outcomes[1_200].id == first[0].id);
    assert!(!outcomes[1_201].inserted && outcomes[1_201].id == outcomes[7].id);
    assert_eq!(store.requests(Some(run_id), None, None, 5_000).await.unwrap().len(), 1_201);
}

async fn claims_are_exclusive_and_completion_is_fenced_on_the_lease(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let reqs: Vec<NewRequest> = (0..3).map(|h| request(run_id, &format!("k{h}"), "usage", &format!("h{h}"))).collect();
    store.submit_requests(&reqs, &[]).await.unwrap();
    let a = store.claim_requests("worker-a", None, 2, t(1), t(61)).await.unwrap();
    let b = store.claim_requests("worker-b", None, 5, t(1), t(61)).await.unwrap();
    assert_eq!((a.len(), b.len()), (2, 1));
    assert!(a.iter().all(|c| c.attempt == 1 && !b.iter().any(|d| d.id == c.id)));
    assert!(store.claim_requests("worker-c", None, 5, t(1), t(61)).await.unwrap().is_empty());

    // worker-b cannot complete worker-a's request; worker-a can.
    let stolen = store.complete_requests("worker-b", &[completion(&a[0], "v")], t(2)).await.unwrap();
    assert_eq!(stolen, [CompletionResult::LeaseLost]);
    let done =
        store.complete_requests("worker-a", &[completion(&a[0], "v"), completion(&a[1], "v")], t(2)).await.unwrap();
    assert!(done.iter().all(|r| matches!(r, CompletionResult::Recorded(_))));
    assert_eq!(state_of(store, a[0].id).await, RequestState::Succeeded);
    let states = store.partition_states("usage").await.unwrap();
    let count = |s: AttemptStatus| states.iter().filter(|p| p.last_attempt_status == s).count();
    assert_eq!(
        (count(AttemptStatus::Materialized), count(AttemptStatus::Running)),
        (2, 1),
        "the claim marked b's partition running"
    );
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Running, "one request still runs");
    store.complete_requests("worker-b", &[completion(&b[0], "v")], t(3)).await.unwrap();
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Succeeded);
}

async fn a_request_waits_for_its_upstream_requests(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let reqs = [
        request(run_id, "h0", "usage", "h0"),
        request(run_id, "h1", "usage", "h1"),
        request(run_id, "bill", "bill", "d"),
    ];
    let ids = store.submit_requests(&reqs, &[(0, 2), (1, 2)]).await.unwrap();
    assert_eq!(state_of(store, ids[2].id).await, RequestState::Blocked);
    let claimed = store.claim_requests("w", None, 10, t(1), t(61)).await.unwrap();
    assert_eq!(claimed.len(), 2, "the bill is blocked");
    store.complete_requests("w", &[completion(&claimed[0], "v")], t(2)).await.unwrap();
    assert_eq!(state_of(store, ids[2].id).await, RequestState::Blocked);
    store.complete_requests("w", &[completion(&claimed[1], "v")], t(2)).await.unwrap();
    assert_eq!(state_of(store, ids[2].id).await, RequestState::Available);
    let bill = store.claim_requests("w", None, 10, t(3), t(63)).await.unwrap();
    assert_eq!(bill.len(), 1);
    assert_eq!(bill[0].asset_key, "bill");

    // Resubmitting the same keys (a crash and a retry of the submitter) adds nothing.
    let again = store.submit_requests(&reqs, &[(0, 2), (1, 2)]).await.unwrap();
    assert!(again.iter().all(|o| !o.inserted));
}

async fn completing_every_upstream_in_one_batch_unblocks_the_downstream(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let reqs = [
        request(run_id, "h0", "usage", "h0"),
        request(run_id, "h1", "usage", "h1"),
        request(run_id, "h2", "usage", "h2"),
        request(run_id, "bill", "bill", "d"),
    ];
    let ids = store.submit_requests(&reqs, &[(0, 3), (1, 3), (2, 3)]).await.unwrap();
    let claimed = store.claim_requests("w", None, 10, t(1), t(61)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let done: Vec<Completion> = claimed.iter().take(2).map(|c| completion(c, "v")).collect();
    store.complete_requests("w", &done, t(2)).await.unwrap();
    let bill = store.request(ids[3].id).await.unwrap().unwrap();
    assert_eq!((bill.state, bill.pending_deps), (RequestState::Blocked, 1), "two of three done in one batch");
    let results = store
        .complete_requests("w", &[completion(&claimed[2], "v"), completion(&claimed[0], "again")], t(3))
        .await
        .unwrap();
    assert!(matches!(results[0], CompletionResult::Recorded(_)));
    assert_eq!(results[1], CompletionResult::LeaseLost, "a completed request cannot complete twice");
    let bill = store.request(ids[3].id).await.unwrap().unwrap();
    assert_eq!((bill.state, bill.pending_deps), (RequestState::Available, 0));
    let recorded = store.request(claimed[0].id).await.unwrap().unwrap().materialization_id;
    assert!(recorded.is_some(), "the request points at what it materialized");
}

async fn an_expired_lease_is_reclaimed_and_the_late_completion_rejected(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store.submit_requests(&[request(run_id, "k", "usage", "h0")], &[]).await.unwrap();
    let dead = store.claim_requests("dead-worker", None, 1, t(0), t(60)).await.unwrap().remove(0);
    assert!(
        store.reap_expired(t(59), &|_| std::time::Duration::from_secs(5)).await.unwrap().is_empty(),
        "not expired yet"
    );
    let reaped = store.reap_expired(t(61), &|_| std::time::Duration::from_secs(5)).await.unwrap();
    assert_eq!(reaped.requests, [(dead.id, RequestState::Available)]);
    let record = store.request(dead.id).await.unwrap().unwrap();
    assert_eq!(record.last_error.as_deref(), Some("lease expired (worker dead-worker)"));
    assert!(store.claim_requests("w2", None, 1, t(62), t(122)).await.unwrap().is_empty(), "backoff: not before t(66)");
    let retry = store.claim_requests("w2", None, 1, t(66), t(126)).await.unwrap().remove(0);
    assert_eq!(retry.attempt, 2);
    assert_eq!(
        store.complete_requests("dead-worker", &[completion(&dead, "late")], t(67)).await.unwrap(),
        [CompletionResult::LeaseLost]
    );
    assert!(matches!(
        store.complete_requests("w2", &[completion(&retry, "ok")], t(67)).await.unwrap()[0],
        CompletionResult::Recorded(_)
    ));
    let history = store.history("usage", Some("h0"), None, 10).await.unwrap();
    assert_eq!(history.len(), 1, "materialized exactly once");
    assert_eq!(history[0].data_version, "ok");
}

/// A run of an hour (`max_attempts` attempts) and a bill that waits for it; the hour claimed by
/// worker `w`.
async fn an_hour_and_its_bill_the_hour_claimed(
    store: &dyn LineageStore,
    max_attempts: i64,
) -> (RunId, Vec<SubmitOutcome>, ClaimedRequest) {
    let run_id = new_run(store).await;
    let mut up = request(run_id, "up", "usage", "h0");
    up.max_attempts = max_attempts;
    let ids = store.submit_requests(&[up, request(run_id, "down", "bill", "d")], &[(0, 1)]).await.unwrap();
    let claimed = store.claim_requests("w", None, 1, t(0), t(60)).await.unwrap().remove(0);
    (run_id, ids, claimed)
}

async fn failures_retry_then_fail_and_fail_their_downstream(store: &dyn LineageStore) {
    let (run_id, ids, first) = an_hour_and_its_bill_the_hour_claimed(store, 2).await;
    assert_eq!(
        store.fail_request("w", &failed(&first, "graph api 503", Some(t(10))), t(1)).await.unwrap(),
        FailOutcome::Retrying
    );
    assert_eq!(state_of(store, first.id).await, RequestState::Available);
    assert!(
        store.partition_states("usage").await.unwrap().is_empty(),
        "a retrying partition is not shown running while it waits (it was never attempted before)"
    );
    assert_eq!(
        store.fail_request("w", &failed(&first, "again", Some(t(10))), t(2)).await.unwrap(),
        FailOutcome::LeaseLost,
        "fenced: no longer held"
    );
    let second = store.claim_requests("w", None, 1, t(10), t(70)).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        store.fail_request("w", &failed(&second, "graph api 503", Some(t(20))), t(11)).await.unwrap(),
        FailOutcome::Failed
    );
    let state = store.partition_states("usage").await.unwrap().remove(0);
    assert_eq!(
        (state.last_attempt_status, state.last_error.as_deref()),
        (AttemptStatus::Failed, Some("graph api 503"))
    );
    assert_eq!(state_of(store, first.id).await, RequestState::Failed, "attempts exhausted");
    assert_eq!(state_of(store, ids[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
}

async fn reopening_only_requests_whose_upstream_still_failed_ends_the_run_again(store: &dyn LineageStore) {
    // `backfill resume` reopens what was canceled or failed upstream; a request whose upstream is
    // still failed is upstream_failed again at once, and with nothing else to run the run ends
    // when `finish_run` checks it after the resume's submission (it used to stay `queued`
    // for good).
    let (run_id, ids, claimed) = an_hour_and_its_bill_the_hour_claimed(store, 1).await;
    store.fail_request("w", &failed(&claimed, "graph api 503", None), t(1)).await.unwrap();
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
    assert_eq!(store.reopen_requests(run_id, &[RequestState::UpstreamFailed], t(2)).await.unwrap(), 1);
    assert_eq!(state_of(store, ids[1].id).await, RequestState::UpstreamFailed);
    // Reopened, the run waits for what a resume may still submit to it; then it is checked.
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Queued);
    assert!(store.finish_run(run_id, t(2)).await.unwrap());
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed, "nothing is left to run");
    assert!(!store.finish_run(run_id, t(3)).await.unwrap(), "it ends once");
    assert!(store.claim_requests("w", None, 10, t(3), t(63)).await.unwrap().is_empty());
    // A run with work left is not ended.
    let busy = new_run(store).await;
    store.submit_requests(&[request(busy, "busy", "usage", "h9")], &[]).await.unwrap();
    assert!(!store.finish_run(busy, t(4)).await.unwrap());
    assert_eq!(store.run(busy).await.unwrap().unwrap().status, RunStatus::Queued);
}

/// `submit` creates its run with its requests in one transaction: a worker that claims and ends
/// them at once finds the run and ends it (the run was created after the requests, and stayed
/// `queued` for good once a fast worker had finished them).
async fn a_run_is_submitted_with_its_requests_or_not_at_all(store: &dyn LineageStore) {
    let new_run = |n_steps| NewRun {
        id: RunId::new(),
        trigger: Trigger::Manual,
        selection: "+bill".into(),
        n_steps,
        tags: serde_json::json!({ "idempotency_key": "user:k" }),
        created_at: t(0),
        owner: None,
    };
    let first = new_run(0);
    let mut up = request(first.id, "user:k:up", "usage", "h0");
    up.max_attempts = 1;
    let reqs = [up, request(first.id, "user:k:down", "bill", "d")];
    let start = |run: &NewRun| RunEvent::run(run.id, t(0), EventKind::RunStarted, "2 steps".to_owned());
    let ids = store.submit_run(&first, &reqs, &[(0, 1)], Some(&start(&first))).await.unwrap();
    assert!(ids.iter().all(|o| o.inserted));
    let run = store.run(first.id).await.unwrap().expect("the run is created with its requests");
    assert_eq!((run.status, run.n_steps), (RunStatus::Queued, 2), "n_steps counts the new requests");
    let events = store.run_events(first.id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| (e.kind, e.message.as_str())).collect::<Vec<_>>(),
        [(EventKind::RunStarted, "2 steps")],
        "the start event is written with the run"
    );
    // A worker claims the first request at once and it fails: the run ends with its requests.
    let claimed = store.claim_requests("w", None, 1, t(0), t(60)).await.unwrap().remove(0);
    assert_eq!(claimed.id, ids[0].id);
    assert_eq!(store.run(first.id).await.unwrap().unwrap().status, RunStatus::Running);
    store.fail_request("w", &failed(&claimed, "graph api 503", None), t(1)).await.unwrap();
    assert_eq!(state_of(store, ids[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(first.id).await.unwrap().unwrap().status, RunStatus::Failed);

    // The same keys again: no new request, so no new run; the outcomes name the first ones.
    let again = new_run(2);
    let reqs = [request(again.id, "user:k:up", "usage", "h0"), request(again.id, "user:k:down", "bill", "d")];
    let outcomes = store.submit_run(&again, &reqs, &[(0, 1)], Some(&start(&again))).await.unwrap();
    assert_eq!(
        outcomes.iter().map(|o| (o.id, o.inserted)).collect::<Vec<_>>(),
        [(ids[0].id, false), (ids[1].id, false)]
    );
    assert!(store.run(again.id).await.unwrap().is_none(), "nothing new, no run");
    assert!(store.run_events(again.id).await.unwrap().is_empty(), "no run, no start event");

    // A new request waiting on a known one that has failed fails at once, and its run, with
    // nothing left to do, ends in the same transaction.
    let late = new_run(2);
    let reqs = [request(late.id, "user:k:up", "usage", "h0"), request(late.id, "user:k2:down", "bill", "d")];
    let outcomes = store.submit_run(&late, &reqs, &[(0, 1)], None).await.unwrap();
    assert!(!outcomes[0].inserted && outcomes[1].inserted);
    assert_eq!(state_of(store, outcomes[1].id).await, RequestState::UpstreamFailed);
    let run = store.run(late.id).await.unwrap().expect("a new request, a new run");
    assert_eq!((run.status, run.n_steps), (RunStatus::Failed, 1));
    assert!(store.claim_requests("w", None, 10, t(2), t(62)).await.unwrap().is_empty());
}

/// `backfill retry-failed` while the backfill still runs: the failed cell is reopened and the
/// run stays running; its claim does not start the run a second time.
async fn reopening_a_cell_of_a_running_run_keeps_it_running(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let mut a = request(run_id, "a", "usage", "h0");
    a.max_attempts = 1;
    let ids = store.submit_requests(&[a, request(run_id, "b", "usage", "h1")], &[]).await.unwrap();
    let claimed = store.claim_requests("w", None, 2, t(0), t(60)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store.fail_request("w", &failed(&claimed[0], "graph api 503", None), t(1)).await.unwrap();
    assert_eq!(state_of(store, ids[0].id).await, RequestState::Failed);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Running, "b still runs");
    assert_eq!(store.reopen_requests(run_id, &[RequestState::Failed], t(2)).await.unwrap(), 1);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Running);
    let again = store.claim_requests("w", None, 1, t(3), t(63)).await.unwrap();
    assert_eq!(again.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[0].id]);
    let starts = outbox_log(store)
        .await
        .into_iter()
        .filter(|(kind, what, _, _)| *kind == LineageEventType::Start && what.starts_with("run "))
        .count();
    assert_eq!(starts, 1, "the run started once");
}

/// `backfill resume` reopens the canceled cells and requests the new ones in one transaction: the
/// run waits for both, and ends only when both have.
async fn resuming_reopens_and_submits_at_once_and_ends_the_run_after_both(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let reqs = |n: usize| {
        let mut r = [
            request(run_id, "bf:usage:h0", "usage", "h0"),
            request(run_id, "bf:bill:d", "bill", "d"),
            request(run_id, "bf:usage:h1", "usage", "h1"),
        ];
        r[0].max_attempts = 1;
        r[2].max_attempts = 1;
        r.into_iter().take(n).collect::<Vec<_>>()
    };
    let ids = store.submit_requests(&reqs(2), &[(0, 1)]).await.unwrap();
    assert_eq!(store.cancel_run(run_id, t(1)).await.unwrap(), (2, 0));
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Canceled);
    // The plan now holds a third cell (a cell already requested does not wait on a new one:
    // only a new request's edges are added).
    let (reopened, outcomes) =
        store.resume_run(run_id, &[RequestState::Canceled], &reqs(3), &[(0, 1), (2, 1)], t(2)).await.unwrap();
    assert_eq!(reopened, 2);
    assert_eq!(outcomes.iter().map(|o| o.inserted).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Queued);
    assert_eq!(state_of(store, ids[1].id).await, RequestState::Blocked);
    let mut claimed = store.claim_requests("w", None, 10, t(3), t(63)).await.unwrap();
    claimed.sort_by_key(|c| c.id != ids[0].id);
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[0].id, outcomes[2].id], "both hours");
    // The reopened hour fails, and its bill with it: the run waits for the new hour still.
    store.fail_request("w", &failed(&claimed[0], "graph api 503", None), t(4)).await.unwrap();
    assert_eq!(state_of(store, ids[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Running);
    store.fail_request("w", &failed(&claimed[1], "graph api 503", None), t(5)).await.unwrap();
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);

    // Resumed again with nothing new: the reopened bill waits on a failed hour, fails upstream
    // at once, and the run ends in the same call.
    let (reopened, outcomes) =
        store.resume_run(run_id, &[RequestState::UpstreamFailed], &reqs(3), &[(0, 1), (2, 1)], t(6)).await.unwrap();
    assert_eq!(reopened, 1);
    assert!(outcomes.iter().all(|o| !o.inserted));
    assert_eq!(state_of(store, ids[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
}

async fn cancel_stops_waiting_requests_at_once_and_asks_running_ones(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let reqs =
        [request(run_id, "a", "usage", "h0"), request(run_id, "b", "usage", "h1"), request(run_id, "c", "bill", "d")];
    let ids = store.submit_requests(&reqs, &[(1, 2)]).await.unwrap();
    let running = store.claim_requests("w", None, 1, t(0), t(60)).await.unwrap().remove(0);
    assert_eq!(running.id, ids[0].id);
    assert_eq!(store.cancel_request(ids[1].id, t(1)).await.unwrap(), Some(RequestState::Canceled));
    assert_eq!(state_of(store, ids[2].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.cancel_request(running.id, t(1)).await.unwrap(), Some(RequestState::Running));
    assert_eq!(store.heartbeat("w", &[running.id], t(90)).await.unwrap(), [(running.id, true)]);
    assert!(store.acknowledge_cancel("w", running.id, 1, t(2)).await.unwrap());
    assert_eq!(state_of(store, running.id).await, RequestState::Canceled);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Canceled);
    assert_eq!(store.cancel_request(RequestId::new(), t(3)).await.unwrap(), None);
}

/// A tick that finds a partition's request pending names that request's key: its step waits on
/// the other run's request, and follows it as it would a request of its own run.
async fn a_step_waiting_on_another_runs_request_follows_it(store: &dyn LineageStore) {
    let cell = |p: &str| ("usage".to_owned(), p.to_owned());
    // Run A requests an hour; run B's bill waits on it.
    let a = new_run(store).await;
    store.submit_requests(&[request(a, "sched:hourly:h23", "usage", "h23")], &[]).await.unwrap();
    let pending = store.pending_requests(&[cell("h22"), cell("h23")]).await.unwrap();
    assert_eq!(pending.len(), 1, "h22 has no request");
    assert_eq!((pending[0].idempotency_key.as_str(), pending[0].run_id), ("sched:hourly:h23", a));
    let b = new_run(store).await;
    let ids = store
        .submit_requests(
            &[request(b, &pending[0].idempotency_key, "usage", "h23"), request(b, "sched:daily:d", "bill", "d")],
            &[(0, 1)],
        )
        .await
        .unwrap();
    assert!(!ids[0].inserted && ids[0].id == pending[0].id && ids[1].inserted, "the hour is not requested twice");
    assert_eq!(state_of(store, ids[1].id).await, RequestState::Blocked);
    assert_eq!(store.runs_waited_on(b).await.unwrap(), [a]);
    assert!(store.claim_requests("w", Some(b), 5, t(1), t(61)).await.unwrap().is_empty(), "b waits");
    // A's hour succeeds: B's bill is claimable, and nothing of A is pending any more.
    let hour = store.claim_requests("w", Some(a), 1, t(1), t(61)).await.unwrap().remove(0);
    store.complete_requests("w", &[completion(&hour, "v")], t(2)).await.unwrap();
    assert_eq!(state_of(store, ids[1].id).await, RequestState::Available);
    assert!(store.runs_waited_on(b).await.unwrap().is_empty());
    assert!(store.pending_requests(&[cell("h23")]).await.unwrap().is_empty());
    assert_eq!(store.history("usage", Some("h23"), None, 10).await.unwrap().len(), 1, "materialized once");

    // The hour fails for good: the bill waiting on it fails, and its run ends failed.
    let c = new_run(store).await;
    let mut hour = request(c, "c:h1", "usage", "h1");
    hour.max_attempts = 1;
    store.submit_requests(&[hour], &[]).await.unwrap();
    let d = new_run(store).await;
    let down = store
        .submit_requests(&[request(d, "c:h1", "usage", "h1"), request(d, "d:bill", "bill", "d1")], &[(0, 1)])
        .await
        .unwrap();
    let claimed = store.claim_requests("w", Some(c), 1, t(3), t(63)).await.unwrap().remove(0);
    assert_eq!(store.fail_request("w", &failed(&claimed, "boom", None), t(4)).await.unwrap(), FailOutcome::Failed);
    assert_eq!(state_of(store, down[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(d).await.unwrap().unwrap().status, RunStatus::Failed);

    // The other run is canceled while the hour waits: the bill fails, its run ends.
    let e = new_run(store).await;
    store.submit_requests(&[request(e, "e:h2", "usage", "h2")], &[]).await.unwrap();
    let f = new_run(store).await;
    let down = store
        .submit_requests(&[request(f, "e:h2", "usage", "h2"), request(f, "f:bill", "bill", "d2")], &[(0, 1)])
        .await
        .unwrap();
    store.cancel_run(e, t(5)).await.unwrap();
    assert_eq!(state_of(store, down[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(f).await.unwrap().unwrap().status, RunStatus::Failed);
    assert!(store.claim_requests("w", Some(f), 10, t(6), t(66)).await.unwrap().is_empty(), "nothing of f runs");

    // A running hour canceled by its worker: the same.
    let g = new_run(store).await;
    store.submit_requests(&[request(g, "g:h3", "usage", "h3")], &[]).await.unwrap();
    let running = store.claim_requests("w", Some(g), 1, t(7), t(67)).await.unwrap().remove(0);
    let h = new_run(store).await;
    let down = store
        .submit_requests(&[request(h, "g:h3", "usage", "h3"), request(h, "h:bill", "bill", "d3")], &[(0, 1)])
        .await
        .unwrap();
    assert_eq!(state_of(store, down[1].id).await, RequestState::Blocked, "it waits on a running request too");
    store.cancel_run(g, t(8)).await.unwrap();
    assert!(store.acknowledge_cancel("w", running.id, running.attempt, t(9)).await.unwrap());
    assert_eq!(state_of(store, down[1].id).await, RequestState::UpstreamFailed);
    assert_eq!(store.run(h).await.unwrap().unwrap().status, RunStatus::Failed);
}

async fn pool_limits_hold_across_workers(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store.set_pool_limit("graph_api", 2).await.unwrap();
    let reqs: Vec<NewRequest> = (0..5)
        .map(|h| {
            let mut r = request(run_id, &format!("p{h}"), "usage", &format!("h{h}"));
            r.pool = Some("graph_api".to_owned());
            r
        })
        .chain([request(run_id, "free", "other", "x")])
        .collect();
    store.submit_requests(&reqs, &[]).await.unwrap();
    let a = store.claim_requests("a", None, 10, t(0), t(60)).await.unwrap();
    assert_eq!(store.pools().await.unwrap(), [PoolState { name: "graph_api".to_owned(), slot_limit: 2, running: 2 }]);
    assert_eq!(a.iter().filter(|c| c.asset_key == "usage").count(), 2);
    assert_eq!(a.len(), 3, "the request outside the pool is not limited");
    assert!(store.claim_requests("b", None, 10, t(0), t(60)).await.unwrap().is_empty());
    let first = a.iter().find(|c| c.asset_key == "usage").unwrap();
    store.complete_requests("a", &[completion(first, "v")], t(1)).await.unwrap();
    assert_eq!(store.claim_requests("b", None, 10, t(1), t(61)).await.unwrap().len(), 1);
}

async fn a_claim_passes_over_a_full_pools_requests_to_one_behind_them(store: &dyn LineageStore) {
    // A claim reads only as many candidates as it may claim unless some pool has a limit; then
    // it reads past the requests of a full pool to claim one behind them.
    let run_id = new_run(store).await;
    let reqs: Vec<NewRequest> = (0..3)
        .map(|h| {
            let mut r = request(run_id, &format!("p{h}"), "usage", &format!("h{h}"));
            r.pool = Some("graph_api".to_owned());
            r.priority = 1;
            r
        })
        .chain([request(run_id, "behind", "other", "x")])
        .collect();
    store.submit_requests(&reqs, &[]).await.unwrap();
    let first = store.claim_requests("a", None, 1, t(0), t(60)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].asset_key, "usage", "the pooled requests come first (priority)");
    store.set_pool_limit("graph_api", 1).await.unwrap();
    let second = store.claim_requests("b", None, 1, t(0), t(60)).await.unwrap();
    assert_eq!(second.iter().map(|c| c.partition_key.as_str()).collect::<Vec<_>>(), ["x"]);
    assert!(store.claim_requests("c", None, 1, t(0), t(60)).await.unwrap().is_empty(), "the pool is full");
}

async fn queue_depth_counts_what_waits_and_runs_by_pool_family(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let mut reqs: Vec<NewRequest> = ["123", "456"]
        .iter()
        .enumerate()
        .map(|(i, realm)| {
            let mut r = request(run_id, &format!("q{i}"), "qbo", &format!("month=2025-01|realm={realm}"));
            r.pool = Some(pool_member("quickbooks", "realm", realm));
            r
        })
        .collect();
    reqs.push(request(run_id, "up", "usage", "h0"));
    reqs.push(request(run_id, "down", "bill", "d0"));
    // `bill` waits on `usage`.
    store.submit_requests(&reqs, &[(2, 3)]).await.unwrap();
    let depth = |state, pool: Option<&str>, requests| QueueDepth { state, pool: pool.map(str::to_owned), requests };
    assert_eq!(
        store.queue_depth().await.unwrap(),
        [
            depth(RequestState::Available, None, 1),
            depth(RequestState::Available, Some("quickbooks"), 2),
            depth(RequestState::Blocked, None, 1),
        ],
        "members of a pool kept per dimension count under their family"
    );
    let claimed = store.claim_requests("w", None, 10, t(5), t(65)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|c| c.claimable_since == t(0)), "claimable since submission: {claimed:?}");
    let up = claimed.iter().find(|c| c.asset_key == "usage").unwrap();
    store.complete_requests("w", &[completion(up, "v")], t(7)).await.unwrap();
    let down = store.claim_requests("w", None, 10, t(9), t(69)).await.unwrap();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].claimable_since, t(7), "a blocked request is claimable from when its upstream finished");
    assert_eq!(
        store.queue_depth().await.unwrap(),
        [depth(RequestState::Running, None, 1), depth(RequestState::Running, Some("quickbooks"), 2)],
        "finished requests are not counted"
    );
    assert_eq!(store.run_counts().await.unwrap(), [(RunStatus::Running, 1)]);
}

async fn a_pool_kept_per_dimension_limits_each_member(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store.set_pool_limit("quickbooks", 1).await.unwrap();
    let reqs: Vec<NewRequest> = ["123", "123", "456"]
        .iter()
        .enumerate()
        .map(|(i, realm)| {
            let mut r = request(run_id, &format!("q{i}"), "qbo", &format!("month=2025-0{}|realm={realm}", i + 1));
            r.pool = Some(pool_member("quickbooks", "realm", realm));
            r
        })
        .collect();
    store.submit_requests(&reqs, &[]).await.unwrap();
    let a = store.claim_requests("a", None, 10, t(0), t(60)).await.unwrap();
    let mut claimed: Vec<&str> = a.iter().map(|c| c.partition_key.as_str()).collect();
    claimed.sort_unstable();
    assert_eq!(claimed, ["month=2025-01|realm=123", "month=2025-03|realm=456"], "one per realm");
    assert_eq!(
        store.pools().await.unwrap(),
        [PoolState { name: "quickbooks".to_owned(), slot_limit: 1, running: 2 }],
        "the family counts its members"
    );
    assert!(store.claim_requests("b", None, 10, t(0), t(60)).await.unwrap().is_empty());
    let first = a.iter().find(|c| c.partition_key.ends_with("123")).unwrap();
    store.complete_requests("a", &[completion(first, "v")], t(1)).await.unwrap();
    let b = store.claim_requests("b", None, 10, t(1), t(61)).await.unwrap();
    assert_eq!(b.iter().map(|c| c.partition_key.as_str()).collect::<Vec<_>>(), ["month=2025-02|realm=123"]);
}

async fn heartbeats_extend_only_the_workers_own_leases(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store.submit_requests(&[request(run_id, "k", "usage", "h0")], &[]).await.unwrap();
    let c = store.claim_requests("w1", None, 1, t(0), t(60)).await.unwrap().remove(0);
    assert!(store.heartbeat("w2", &[c.id], t(120)).await.unwrap().is_empty());
    assert_eq!(store.heartbeat("w1", &[c.id], t(120)).await.unwrap(), [(c.id, false)]);
    assert!(
        store.reap_expired(t(100), &|_| std::time::Duration::ZERO).await.unwrap().is_empty(),
        "the lease was extended"
    );
}

async fn an_abbreviated_id_is_found_by_its_beginning_or_its_end(store: &dyn LineageStore) {
    let id = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    // Two runs made in the same minute share their first characters; their ends differ.
    let (a, b) = (id("019b2a10-0000-7000-8000-0000aaaa1111"), id("019b2a10-0001-7000-8000-0000bbbb2222"));
    for run in [a, b] {
        let r = NewRun {
            id: RunId(run),
            trigger: Trigger::Manual,
            selection: "bill".into(),
            n_steps: 1,
            tags: serde_json::json!({}),
            created_at: t(0),
            owner: None,
        };
        store.create_run(&r).await.unwrap();
    }
    let request = request(RunId(a), "k", "bill", "d");
    let request_id = request.id.0;
    store.submit_requests(&[request], &[]).await.unwrap();

    assert_eq!(store.ids_matching(IdKind::Run, "019b2a10", 10).await.unwrap(), vec![a, b], "a shared prefix: both");
    assert_eq!(store.ids_matching(IdKind::Run, "019b2a10-0001", 10).await.unwrap(), vec![b], "a longer prefix");
    assert_eq!(store.ids_matching(IdKind::Run, "aaaa1111", 10).await.unwrap(), vec![a], "a suffix");
    assert_eq!(store.ids_matching(IdKind::Run, &a.to_string(), 10).await.unwrap(), vec![a], "the whole id");
    assert_eq!(store.ids_matching(IdKind::Run, "019b2a10", 1).await.unwrap(), vec![a], "at most `limit`");
    assert!(store.ids_matching(IdKind::Run, "cccc", 10).await.unwrap().is_empty());
    assert!(store.ids_matching(IdKind::Backfill, "aaaa1111", 10).await.unwrap().is_empty(), "runs are not backfills");
    let end = &request_id.simple().to_string()[24..];
    assert_eq!(store.ids_matching(IdKind::Request, end, 10).await.unwrap(), vec![request_id]);
    assert!(store.ids_matching(IdKind::Request, "aaaa1111", 10).await.unwrap().is_empty());
}

/// Instantiates each contract test for both backends.
async fn a_backfill_is_stored_with_its_run_and_its_cells_reopen(store: &dyn LineageStore) {
    let id = BackfillId::new();
    let run_id = RunId::new();
    store
        .create_backfill(&NewBackfill {
            id,
            selection: "+bill".into(),
            partition_from: "2025-12-01".into(),
            partition_to: "2025-12-31".into(),
            policy: BackfillPolicy::Missing,
            run: NewRun {
                id: run_id,
                trigger: Trigger::Backfill,
                selection: "+bill".into(),
                n_steps: 3,
                tags: serde_json::json!({}),
                created_at: t(0),
                owner: None,
            },
            cells: 3,
            skipped: serde_json::json!([{"asset": "usage", "reason": "already_materialized", "count": 24, "keys": ["a..b (24)"]}]),
        })
        .await
        .unwrap();
    let reqs = [
        request(run_id, "backfill:h0", "usage", "h0"),
        request(run_id, "backfill:h1", "usage", "h1"),
        request(run_id, "backfill:bill", "bill", "d"),
    ];
    store.submit_requests(&reqs, &[(0, 2), (1, 2)]).await.unwrap();
    let b = store.backfills(Some(id), None, 10).await.unwrap().remove(0);
    assert_eq!((b.run_id, b.status, b.cells, b.policy.as_str()), (run_id, RunStatus::Queued, 3, "missing"));
    assert_eq!(b.skipped[0]["count"], 24);
    assert_eq!(store.backfills(None, None, 10).await.unwrap().len(), 1);

    // h0 succeeds, h1 fails for good: the bill is upstream_failed, the run failed.
    let claimed = store.claim_requests("w", None, 10, t(1), t(61)).await.unwrap();
    let h0 = claimed.iter().find(|c| c.partition_key == "h0").unwrap();
    let h1 = claimed.iter().find(|c| c.partition_key == "h1").unwrap();
    store.complete_requests("w", &[completion(h0, "v")], t(2)).await.unwrap();
    for attempt in 1..=3 {
        let c = if attempt == 1 {
            h1.clone()
        } else {
            store.claim_requests("w", None, 10, t(10 * attempt), t(100)).await.unwrap().remove(0)
        };
        store.fail_request("w", &failed(&c, "boom", Some(t(10 * attempt + 5))), t(10 * attempt)).await.unwrap();
    }
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
    let counts = store.request_counts(run_id).await.unwrap();
    assert_eq!(
        counts,
        vec![
            ("bill".to_owned(), RequestState::UpstreamFailed, 1),
            ("usage".to_owned(), RequestState::Failed, 1),
            ("usage".to_owned(), RequestState::Succeeded, 1)
        ]
    );

    // Retry failed: h1 is available with fresh attempts, the bill blocked behind it, the run open.
    assert_eq!(
        store.reopen_requests(run_id, &[RequestState::Failed, RequestState::UpstreamFailed], t(40)).await.unwrap(),
        2
    );
    assert_eq!(state_of(store, reqs[2].id).await, RequestState::Blocked);
    assert_eq!(store.request(reqs[1].id).await.unwrap().unwrap().attempt, 0);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Queued);

    // A worker that died holding h1 gives it back without charging the attempt.
    let c = store.claim_requests("dead-worker", None, 10, t(41), t(1000)).await.unwrap().remove(0);
    assert_eq!(c.attempt, 1);
    assert_eq!(
        store.release_abandoned(&["dead-worker".to_owned()], t(42)).await.unwrap().requests,
        vec![(c.id, RequestState::Available)]
    );
    assert!(store.release_abandoned(&["dead-worker".to_owned()], t(42)).await.unwrap().is_empty());
    let again = store.claim_requests("w", None, 10, t(43), t(100)).await.unwrap().remove(0);
    assert_eq!((again.id, again.attempt), (c.id, 1));

    // Cancel the run: the waiting bill is canceled at once, the running h1 is asked to stop.
    assert_eq!(store.cancel_run(run_id, t(44)).await.unwrap(), (1, 1));
    assert_eq!(state_of(store, reqs[2].id).await, RequestState::Canceled);
    assert!(store.heartbeat("w", &[again.id], t(200)).await.unwrap()[0].1, "cancel requested");
    store.acknowledge_cancel("w", again.id, again.attempt, t(45)).await.unwrap();
    assert_eq!(store.backfills(Some(id), None, 1).await.unwrap()[0].status, RunStatus::Canceled);
}

async fn check_results_are_stored_and_read_newest_first(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let w1 = claim_one(store, run_id, "credit_health", "w1", 1).await;
    let mut done = completion(&w1, "v");
    done.checks = vec![check(&w1, "balance", Severity::Error, true), check(&w1, "duplicates", Severity::Warn, true)];
    store.complete_requests("w", &[done], t(5)).await.unwrap();
    let w2 = claim_one(store, run_id, "credit_health", "w2", 1).await;
    let mut fail = failed(&w2, "asset check failed: balance", None);
    fail.checks = vec![check(&w2, "balance", Severity::Error, false)];
    store.fail_request("w", &fail, t(6)).await.unwrap();
    let all = store.check_results("credit_health", None, None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!((all[0].partition_key.as_str(), all[0].passed), ("w2", false), "newest first");
    let w1 = store.check_results("credit_health", Some("w1"), None, 10).await.unwrap();
    assert_eq!(w1.iter().map(|r| r.check_name.as_str()).collect::<Vec<_>>(), ["duplicates", "balance"]);
    assert_eq!((w1[0].run_id, w1[0].severity), (run_id, Severity::Warn));
    assert!(store.check_results("other", None, None, 10).await.unwrap().is_empty());
    // Pages and totals: the second page starts after the first's last id.
    let first = store.check_results("credit_health", None, None, 2).await.unwrap();
    let rest = store.check_results("credit_health", None, Some(first[1].id), 2).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), [all[2].id]);
    let total = store.count(Counted::CheckResults { asset: "credit_health", partition: None }).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(store.count(Counted::CheckResults { asset: "credit_health", partition: Some("w1") }).await.unwrap(), 2);
    assert_eq!(store.count(Counted::Requests { run: Some(run_id), state: None }).await.unwrap(), 2);
    assert_eq!(store.count(Counted::Requests { run: None, state: Some(RequestState::Failed) }).await.unwrap(), 1);
    let filter = RunFilter { status: Some(RunStatus::Canceled), ..RunFilter::default() };
    assert_eq!(store.count(Counted::Runs(&filter)).await.unwrap(), 0);
    assert_eq!(store.count(Counted::Runs(&RunFilter::default())).await.unwrap(), 1);
}

// --- Every terminal transition is fenced and complete -----------------------------------------

async fn a_reaped_final_attempt_fails_its_partition_and_its_run(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let mut bill = request(run_id, "bill", "storage_bill", "2025-12-15");
    bill.max_attempts = 1;
    let mut hour = request(run_id, "hour", "usage", "h0");
    hour.max_attempts = 2;
    store.submit_requests(&[bill, hour], &[]).await.unwrap();
    let held = store.claim_requests("dead-worker", None, 10, t(0), t(60)).await.unwrap();
    assert_eq!(held.len(), 2);
    let reaped = store.reap_expired(t(61), &|_| std::time::Duration::from_secs(5)).await.unwrap();
    let state_after = |asset: &str| {
        reaped.requests.iter().find(|(id, _)| held.iter().any(|c| c.id == *id && c.asset_key == asset)).unwrap().1
    };
    assert_eq!((state_after("storage_bill"), state_after("usage")), (RequestState::Failed, RequestState::Available));

    // The bill's last attempt is over: its partition is failed, not "in progress" forever.
    let bill = store.partition_states("storage_bill").await.unwrap().remove(0);
    assert_eq!(bill.last_attempt_status, AttemptStatus::Failed);
    assert_eq!(bill.last_error.as_deref(), Some("lease expired (worker dead-worker)"));
    // The hour will be retried: it waits, it does not run.
    assert!(store.partition_states("usage").await.unwrap().is_empty(), "never materialized, nothing runs it now");
    let kinds: Vec<EventKind> = store.run_events(run_id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::StepFailed) && kinds.contains(&EventKind::StepRetried));
    // Nothing is left "being materialized": wipe is allowed.
    store.wipe("storage_bill", Some(&["2025-12-15".to_owned()]), t(62)).await.expect("wipe after a reaped attempt");

    // The hour's retry fails for good: the run ends failed.
    let retry = store.claim_requests("w", None, 10, t(70), t(130)).await.unwrap().remove(0);
    store.fail_request("w", &failed(&retry, "boom", None), t(71)).await.unwrap();
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
}

async fn a_cancel_asked_of_a_dead_worker_is_not_lost(store: &dyn LineageStore) {
    // Reaped when the lease expires …
    let run_id = new_run(store).await;
    store
        .submit_requests(&[request(run_id, "a", "usage", "h0"), request(run_id, "b", "usage", "h1")], &[])
        .await
        .unwrap();
    let held = store.claim_requests("dead-worker", None, 1, t(0), t(60)).await.unwrap().remove(0);
    let other = store.claim_requests("alive", None, 1, t(0), t(60)).await.unwrap().remove(0);
    assert_eq!(store.cancel_request(held.id, t(1)).await.unwrap(), Some(RequestState::Running), "asked");
    store.heartbeat("alive", &[other.id], t(600)).await.unwrap();
    let reaped = store.reap_expired(t(61), &|_| std::time::Duration::ZERO).await.unwrap();
    assert_eq!(reaped.requests, [(held.id, RequestState::Canceled)]);
    assert!(store.claim_requests("w", None, 10, t(62), t(122)).await.unwrap().is_empty(), "nothing runs it later");
    assert!(store.partition_states("usage").await.unwrap().iter().all(|s| s.partition_key != "h0"), "restored");
    assert_eq!(
        store.complete_requests("dead-worker", &[completion(&held, "late")], t(63)).await.unwrap(),
        [CompletionResult::LeaseLost]
    );
    store.complete_requests("alive", &[completion(&other, "v")], t(64)).await.unwrap();
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Canceled);

    // … and at once when its process is known to be dead.
    let run_id = new_run(store).await;
    let held = claim_one(store, run_id, "usage", "h9", 3).await;
    store.cancel_request(held.id, t(2)).await.unwrap();
    let released = store.release_abandoned(&["w".to_owned()], t(3)).await.unwrap();
    assert_eq!(released.requests, [(held.id, RequestState::Canceled)]);
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Canceled);
}

async fn a_run_whose_owner_is_gone_ends_canceled_and_nothing_of_it_runs_later(store: &dyn LineageStore) {
    let owned_run = |owner: &str, lease: i64| NewRun {
        id: RunId::new(),
        trigger: Trigger::Manual,
        selection: "+bill".into(),
        n_steps: 3,
        tags: serde_json::json!({}),
        created_at: t(0),
        owner: Some(RunOwner { worker: owner.to_owned(), lease_until: t(lease) }),
    };
    let run = owned_run("materialize-1", 30);
    store.create_run(&run).await.unwrap();
    let reqs =
        [request(run.id, "h0", "usage", "h0"), request(run.id, "h1", "usage", "h1"), request(run.id, "d", "bill", "d")];
    let ids = store.submit_requests(&reqs, &[(0, 2), (1, 2)]).await.unwrap();
    assert!(store.claim_requests("worker-2", None, 10, t(1), t(61)).await.unwrap().is_empty(), "owned: not ours");
    let held = store.claim_requests("materialize-1", Some(run.id), 1, t(1), t(61)).await.unwrap().remove(0);
    assert_eq!(store.lease_holders().await.unwrap(), ["materialize-1"]);

    // Heartbeats keep it alive past its first lease.
    store.heartbeat("materialize-1", &[held.id], t(90)).await.unwrap();
    assert!(store.reap_expired(t(40), &|_| std::time::Duration::ZERO).await.unwrap().is_empty());

    // The process dies: once its lease expires the run ends canceled with all it had not finished.
    let reaped = store.reap_expired(t(91), &|_| std::time::Duration::ZERO).await.unwrap();
    assert_eq!(reaped.runs, [run.id]);
    let record = store.run(run.id).await.unwrap().unwrap();
    assert_eq!((record.status, record.owner.as_deref()), (RunStatus::Canceled, Some("materialize-1")));
    for id in &ids {
        assert_eq!(state_of(store, id.id).await, RequestState::Canceled);
    }
    assert!(store.partition_states("usage").await.unwrap().is_empty(), "the running hour's partition is restored");
    let events = store.run_events(run.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::RunCanceled);
    assert!(last.message.contains("materialize-1"), "{}", last.message);
    assert!(store.claim_requests("worker-2", None, 10, t(92), t(152)).await.unwrap().is_empty(), "nothing runs later");
    assert_eq!(
        store.complete_requests("materialize-1", &[completion(&held, "late")], t(93)).await.unwrap(),
        [CompletionResult::LeaseLost]
    );

    // A process of this host seen dead is settled at once, without waiting for the lease.
    let run = owned_run("materialize-2", 600);
    store.create_run(&run).await.unwrap();
    store.submit_requests(&[request(run.id, "x", "usage", "x")], &[]).await.unwrap();
    let released = store.release_abandoned(&["materialize-2".to_owned()], t(100)).await.unwrap();
    assert_eq!((released.runs, released.requests.len()), (vec![run.id], 0));
    assert_eq!(store.run(run.id).await.unwrap().unwrap().status, RunStatus::Canceled);
    assert!(store.lease_holders().await.unwrap().is_empty());
}

async fn a_failure_after_a_cancel_was_asked_is_canceled_not_retried(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    let c = claim_one(store, run_id, "usage", "h0", 3).await;
    assert_eq!(store.cancel_request(c.id, t(2)).await.unwrap(), Some(RequestState::Running));
    let outcome = store.fail_request("w", &failed(&c, "graph api 503", Some(t(10))), t(3)).await.unwrap();
    assert_eq!(outcome, FailOutcome::Canceled, "a retryable failure does not lose the cancel");
    assert_eq!(state_of(store, c.id).await, RequestState::Canceled);
    assert!(store.claim_requests("w2", None, 10, t(20), t(80)).await.unwrap().is_empty(), "nothing runs it later");
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Canceled);
}

async fn a_partition_two_runs_materialize_is_running_only_while_one_of_them_is(store: &dyn LineageStore) {
    let status = || async {
        store.partition_states("usage").await.unwrap().first().map(|s| (s.last_attempt_status, s.last_run_id))
    };
    let (run1, run2) = (new_run(store).await, new_run(store).await);
    let first = claim_one(store, run1, "usage", "h0", 1).await;
    let second = claim_one(store, run2, "usage", "h0", 1).await;
    assert_eq!(status().await, Some((AttemptStatus::Running, Some(run2))));
    // The second is canceled: the partition is still running, as the first run's.
    store.cancel_request(second.id, t(2)).await.unwrap();
    assert!(store.acknowledge_cancel("w", second.id, second.attempt, t(3)).await.unwrap());
    assert_eq!(status().await, Some((AttemptStatus::Running, Some(run1))));
    // The first fails: it is failed, not running with no lease behind it.
    store.fail_request("w", &failed(&first, "boom", None), t(4)).await.unwrap();
    assert_eq!(status().await, Some((AttemptStatus::Failed, Some(run1))));
    // And in the other order: the first ends, then the second, which restores what was before.
    let (run3, run4) = (new_run(store).await, new_run(store).await);
    let third = claim_one(store, run3, "usage", "h1", 1).await;
    let fourth = claim_one(store, run4, "usage", "h1", 1).await;
    store.complete_requests("w", &[completion(&third, "v3")], t(5)).await.unwrap();
    store.cancel_request(fourth.id, t(6)).await.unwrap();
    store.acknowledge_cancel("w", fourth.id, fourth.attempt, t(7)).await.unwrap();
    let h1 = store.partition_states("usage").await.unwrap().into_iter().find(|s| s.partition_key == "h1").unwrap();
    assert_eq!((h1.last_attempt_status, h1.data_version.as_deref()), (AttemptStatus::Materialized, Some("v3")));
}

async fn settling_the_same_attempt_twice_at_once_settles_it_once(store: &dyn LineageStore) {
    for round in 0..10 {
        let run_id = new_run(store).await;
        let mut r = request(run_id, &format!("twice:{round}"), "usage", &format!("h{round}"));
        r.max_attempts = 3;
        store.submit_requests(&[r], &[]).await.unwrap();
        let held = store.claim_requests("dead", Some(run_id), 1, t(0), t(60)).await.unwrap().remove(0);
        let dead = ["dead".to_owned()];
        let (a, b) = tokio::join!(store.release_abandoned(&dead, t(1)), store.release_abandoned(&dead, t(1)));
        let settled = a.unwrap().requests.len() + b.unwrap().requests.len();
        assert_eq!(settled, 1, "round {round}: released once");
        let record = store.request(held.id).await.unwrap().unwrap();
        assert_eq!((record.state, record.attempt), (RequestState::Available, 0), "round {round}");
        let retried =
            store.run_events(run_id).await.unwrap().iter().filter(|e| e.kind == EventKind::StepRetried).count();
        assert_eq!(retried, 1, "round {round}: one event");
    }
}

async fn an_owner_completing_while_the_reaper_abandons_its_run_never_deadlocks(store: &dyn LineageStore) {
    // The owner's lease has lapsed but it is alive and completing a step: the reaper and the
    // completion race. Whichever wins, neither fails, and the request is settled once.
    for round in 0..10 {
        let run = NewRun {
            id: RunId::new(),
            trigger: Trigger::Manual,
            selection: "x".into(),
            n_steps: 2,
            tags: serde_json::json!({}),
            created_at: t(0),
            owner: Some(RunOwner { worker: "owner".into(), lease_until: t(30) }),
        };
        store.create_run(&run).await.unwrap();
        let reqs = [
            request(run.id, &format!("r{round}:a"), "usage", "a"),
            request(run.id, &format!("r{round}:b"), "bill", "b"),
        ];
        store.submit_requests(&reqs, &[(0, 1)]).await.unwrap();
        let held = store.claim_requests("owner", Some(run.id), 1, t(1), t(61)).await.unwrap().remove(0);
        let done = completion(&held, "v");
        let (reaped, completed) = tokio::join!(
            store.reap_expired(t(100), &|_| std::time::Duration::ZERO),
            store.complete_requests("owner", std::slice::from_ref(&done), t(100)),
        );
        let (reaped, completed) = (reaped.expect("the reaper never deadlocks"), completed.expect("nor the owner"));
        let state = state_of(store, held.id).await;
        match completed[0] {
            CompletionResult::Recorded(_) => assert_eq!(state, RequestState::Succeeded, "round {round}"),
            CompletionResult::LeaseLost => assert_eq!(state, RequestState::Canceled, "round {round}"),
        }
        // A pass that skipped the run (the owner held a row) settles it on the next one.
        store.reap_expired(t(101), &|_| std::time::Duration::ZERO).await.unwrap();
        let _ = reaped;
        assert_eq!(store.run(run.id).await.unwrap().unwrap().status, RunStatus::Canceled, "round {round}");
    }
}

async fn an_abandoned_run_with_no_requests_ends_canceled(store: &dyn LineageStore) {
    let run = NewRun {
        id: RunId::new(),
        trigger: Trigger::Manual,
        selection: "x".into(),
        n_steps: 0,
        tags: serde_json::json!({}),
        created_at: t(0),
        owner: Some(RunOwner { worker: "killed-before-submitting".into(), lease_until: t(30) }),
    };
    store.create_run(&run).await.unwrap();
    assert_eq!(store.reap_expired(t(31), &|_| std::time::Duration::ZERO).await.unwrap().runs, [run.id]);
    assert_eq!(store.run(run.id).await.unwrap().unwrap().status, RunStatus::Canceled);
}

async fn a_runs_and_an_assets_latest_check_verdicts_are_read_per_check(store: &dyn LineageStore) {
    let first_run = new_run(store).await;
    let w1 = claim_one(store, first_run, "credit_health", "w1", 1).await;
    let mut done = completion(&w1, "v1");
    done.checks = vec![check(&w1, "balance", Severity::Error, true), check(&w1, "duplicates", Severity::Warn, true)];
    store.complete_requests("w", &[done], t(5)).await.unwrap();
    // w2 fails its error check, is retried, and passes: the run's verdict is the last attempt's.
    let w2 = claim_one(store, first_run, "credit_health", "w2", 2).await;
    let mut fail = failed(&w2, "asset check failed: balance", Some(t(6)));
    fail.checks = vec![check(&w2, "balance", Severity::Error, false)];
    store.fail_request("w", &fail, t(5)).await.unwrap();
    let again = store.claim_requests("w", Some(first_run), 1, t(7), t(67)).await.unwrap().remove(0);
    assert_eq!((again.id, again.attempt), (w2.id, 2));
    let mut done = completion(&again, "v2");
    done.checks = vec![check(&again, "balance", Severity::Error, true)];
    store.complete_requests("w", &[done], t(8)).await.unwrap();
    // A later run finds w1's duplicates failing.
    let second_run = new_run(store).await;
    let w1_again = claim_one(store, second_run, "credit_health", "w1", 1).await;
    let mut done = completion(&w1_again, "v3");
    done.checks = vec![check(&w1_again, "duplicates", Severity::Warn, false)];
    store.complete_requests("w", &[done], t(9)).await.unwrap();

    let verdicts = |rs: Vec<CheckResultRecord>| {
        rs.into_iter().map(|r| (r.partition_key, r.check_name, r.passed, r.run_id)).collect::<Vec<_>>()
    };
    let s = |x: &str| x.to_owned();
    assert_eq!(
        verdicts(store.run_check_results(first_run).await.unwrap()),
        [
            (s("w1"), s("balance"), true, first_run),
            (s("w1"), s("duplicates"), true, first_run),
            (s("w2"), s("balance"), true, first_run),
        ],
        "one verdict per check, the retried step's last"
    );
    assert_eq!(
        verdicts(store.run_check_results(second_run).await.unwrap()),
        [(s("w1"), s("duplicates"), false, second_run)]
    );
    assert!(store.run_check_results(new_run(store).await).await.unwrap().is_empty());
    assert_eq!(
        verdicts(store.latest_check_results("credit_health").await.unwrap()),
        [
            (s("w1"), s("balance"), true, first_run),
            (s("w1"), s("duplicates"), false, second_run),
            (s("w2"), s("balance"), true, first_run),
        ],
        "the latest verdict of each check on each partition, whichever run found it"
    );
    assert!(store.latest_check_results("other").await.unwrap().is_empty());
    // Wiping a partition forgets its verdicts.
    store.wipe("credit_health", Some(&[s("w1")]), t(10)).await.unwrap();
    assert_eq!(
        verdicts(store.latest_check_results("credit_health").await.unwrap()),
        [(s("w2"), s("balance"), true, first_run)]
    );
}

/// One request of `asset`/`partition` claimed by `first` at 0 with a lease to 60, reaped at 61,
/// and claimed again by `second` at 62 (lease to 122): the expired attempt and its retry.
async fn claimed_expired_and_reclaimed(
    store: &dyn LineageStore,
    (asset, partition): (&str, &str),
    first: &str,
    second: &str,
) -> (ClaimedRequest, ClaimedRequest) {
    let run_id = new_run(store).await;
    store.submit_requests(&[request(run_id, "k", asset, partition)], &[]).await.unwrap();
    let expired = store.claim_requests(first, None, 1, t(0), t(60)).await.unwrap().remove(0);
    store.reap_expired(t(61), &|_| std::time::Duration::ZERO).await.unwrap();
    let retry = store.claim_requests(second, None, 1, t(62), t(122)).await.unwrap().remove(0);
    (expired, retry)
}

/// One worker hands in two attempts of one request in one call: the first outlived its lease
/// and the same worker claimed the retry. Only the attempt holding the lease is recorded (the
/// fence once matched the returned rows by request id alone, and recorded both).
async fn a_completion_of_two_attempts_of_one_request_records_the_leased_one_only(store: &dyn LineageStore) {
    let (first, retry) = claimed_expired_and_reclaimed(store, ("usage", "h0"), "w", "w").await;
    assert_eq!((retry.id, retry.attempt), (first.id, 2));
    completing_both_records_the_holder_only(store, &first, &retry, t(63)).await;
}

/// Hands in `old` and `holder`, two attempts of one request (h0 of `usage`) in one completion:
/// only `holder`'s, which holds the lease, is recorded, under the request.
async fn completing_both_records_the_holder_only(
    store: &dyn LineageStore,
    old: &ClaimedRequest,
    holder: &ClaimedRequest,
    now: chrono::DateTime<Utc>,
) {
    let results =
        store.complete_requests("w", &[completion(old, "old"), completion(holder, "new")], now).await.unwrap();
    assert_eq!(results[0], CompletionResult::LeaseLost);
    let CompletionResult::Recorded(recorded) = results[1] else { panic!("the holder is recorded: {results:?}") };
    let history = store.history("usage", Some("h0"), None, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|m| (m.id, m.data_version.as_str(), m.attempt)).collect::<Vec<_>>(),
        [(recorded, "new", holder.attempt)]
    );
    assert_eq!(store.request(holder.id).await.unwrap().unwrap().materialization_id, Some(recorded));
}

/// Attempts start again when a request is reopened (`backfill resume`/`retry`): a worker can hand
/// in an older step with a higher attempt than the request's current one, and the current one
/// is recorded.
async fn a_completion_of_a_reopened_request_records_its_new_attempt_beside_an_older_higher_one(
    store: &dyn LineageStore,
) {
    let run_id = new_run(store).await;
    store.submit_requests(&[request(run_id, "k", "usage", "h0")], &[]).await.unwrap();
    let mut last = None;
    for (claim_at, reap_at) in [(0, 61), (62, 123), (124, 185)] {
        let claimed = store.claim_requests("w", None, 1, t(claim_at), t(claim_at + 60)).await.unwrap().remove(0);
        store.reap_expired(t(reap_at), &|_| std::time::Duration::ZERO).await.unwrap();
        last = Some(claimed);
    }
    let old = last.expect("claimed three times");
    assert_eq!(old.attempt, 3);
    assert_eq!(store.request(old.id).await.unwrap().unwrap().state, RequestState::Failed);
    assert_eq!(store.reopen_requests(run_id, &[RequestState::Failed], t(186)).await.unwrap(), 1);
    let new = store.claim_requests("w", None, 1, t(187), t(247)).await.unwrap().remove(0);
    assert_eq!((new.id, new.attempt), (old.id, 1));
    completing_both_records_the_holder_only(store, &old, &new, t(188)).await;
}

/// One completion batch over two statement chunks, with an attempt the fence turns away in the
/// middle and two runs' materializations of one partition: each recorded id is its request's
/// and names its partition, and a partition's current materialization is its newest.
async fn a_completion_batch_records_each_materialization_under_its_request(store: &dyn LineageStore) {
    let (run_a, run_b) = (new_run(store).await, new_run(store).await);
    let n = crate::COMPLETIONS_PER_STATEMENT + 20;
    let mut requests: Vec<NewRequest> =
        (0..n).map(|i| request(run_a, &format!("a{i}"), "usage", &format!("h{i:04}"))).collect();
    requests.push(request(run_b, "b", "usage", "h0007"));
    store.submit_requests(&requests, &[]).await.unwrap();
    let claimed = store.claim_requests("w", None, n as i64 + 1, t(0), t(60)).await.unwrap();
    assert_eq!(claimed.len(), n + 1);
    let mut completions: Vec<Completion> =
        claimed.iter().map(|c| completion(c, &format!("v-{}-{}", c.run_id, c.partition_key))).collect();
    // Run b's h0007 first, in the first chunk with run a's (submitted before it: PostgreSQL's
    // fence meets a's row first and draws its id first).
    completions.sort_by_key(|c| (c.materialization.run_id != run_b, c.id.to_string()));
    let turned_away = n / 2;
    completions[turned_away].attempt += 5;
    let results = store.complete_requests("w", &completions, t(1)).await.unwrap();
    let recorded = [store.run_materializations(run_a).await.unwrap(), store.run_materializations(run_b).await.unwrap()];
    for (c, result) in completions.iter().zip(&results) {
        if c.attempt > 1 {
            assert_eq!(*result, CompletionResult::LeaseLost);
            assert_eq!(store.request(c.id).await.unwrap().unwrap().materialization_id, None);
            continue;
        }
        let CompletionResult::Recorded(id) = *result else { panic!("{} is recorded: {result:?}", c.id) };
        assert_eq!(store.request(c.id).await.unwrap().unwrap().materialization_id, Some(id));
        let m = recorded[usize::from(c.materialization.run_id == run_b)]
            .iter()
            .find(|m| m.id == id)
            .expect("the id is a materialization of the request's run");
        assert_eq!(
            (m.partition_key.as_str(), m.data_version.as_str()),
            (c.materialization.partition_key.as_str(), c.materialization.data_version.as_str())
        );
    }
    let state = store.partition_states("usage").await.unwrap();
    let h7 = state.iter().find(|p| p.partition_key == "h0007").unwrap();
    let history = store.history("usage", Some("h0007"), None, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(h7.current_materialization_id, Some(history[0].id), "the newest is current: {history:?}");
}

async fn a_completion_that_lost_its_lease_records_no_check_results(store: &dyn LineageStore) {
    let (slow, fast) = claimed_expired_and_reclaimed(store, ("credit_health", "w1"), "slow", "fast").await;
    let mut late = completion(&slow, "late");
    late.checks = vec![check(&slow, "balance", Severity::Error, true)];
    assert_eq!(store.complete_requests("slow", &[late], t(63)).await.unwrap(), [CompletionResult::LeaseLost]);
    let mut late_failure = failed(&slow, "asset check failed: balance", None);
    late_failure.checks = vec![check(&slow, "balance", Severity::Error, false)];
    assert_eq!(store.fail_request("slow", &late_failure, t(63)).await.unwrap(), FailOutcome::LeaseLost);
    assert!(
        store.check_results("credit_health", None, None, 10).await.unwrap().is_empty(),
        "nothing from the lost lease"
    );
    let mut done = completion(&fast, "v");
    done.checks = vec![check(&fast, "balance", Severity::Error, true)];
    store.complete_requests("fast", &[done], t(64)).await.unwrap();
    let results = store.check_results("credit_health", None, None, 10).await.unwrap();
    assert_eq!((results.len(), results[0].passed), (1, true));
}

fn step_message(claim: &ClaimedRequest, text: &str) -> RunEvent {
    let mut e =
        RunEvent::step(claim.run_id, t(2), EventKind::StepMessage, &claim.asset_key, &claim.partition_key, text);
    e.body = serde_json::json!({ "level": "info" });
    e
}

async fn a_steps_messages_are_recorded_with_its_attempt_and_only_by_its_lease_holder(store: &dyn LineageStore) {
    let run_id = new_run(store).await;
    store
        .submit_requests(&[request(run_id, "a", "bill", "d1"), request(run_id, "b", "bill", "d2")], &[])
        .await
        .unwrap();
    let slow = store.claim_requests("slow", None, 1, t(0), t(60)).await.unwrap().remove(0);
    store.reap_expired(t(61), &|_| std::time::Duration::ZERO).await.unwrap();
    let fast = store.claim_requests("fast", None, 2, t(62), t(122)).await.unwrap();
    let mut late = completion(&slow, "late");
    late.messages = vec![step_message(&slow, "from a lost lease")];
    assert_eq!(store.complete_requests("slow", &[late], t(63)).await.unwrap(), [CompletionResult::LeaseLost]);
    let mut late_failure = failed(&slow, "boom", None);
    late_failure.messages = vec![step_message(&slow, "from a lost lease")];
    assert_eq!(store.fail_request("slow", &late_failure, t(63)).await.unwrap(), FailOutcome::LeaseLost);

    let (ok, bad) = (&fast[0], &fast[1]);
    let mut done = completion(ok, "v");
    done.messages = vec![step_message(ok, "billed 3 tenants"), step_message(ok, "second line")];
    store.complete_requests("fast", &[done], t(64)).await.unwrap();
    let mut failure = failed(bad, "boom", None);
    failure.messages = vec![step_message(bad, "why it failed")];
    assert_eq!(store.fail_request("fast", &failure, t(65)).await.unwrap(), FailOutcome::Failed);

    let events = store.run_events(run_id).await.unwrap();
    let messages: Vec<(&str, &str, &serde_json::Value)> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepMessage)
        .map(|e| (e.partition_key.as_deref().unwrap(), e.message.as_str(), &e.body["level"]))
        .collect();
    let info = serde_json::json!("info");
    assert_eq!(
        messages,
        [
            (ok.partition_key.as_str(), "billed 3 tenants", &info),
            (ok.partition_key.as_str(), "second line", &info),
            (bad.partition_key.as_str(), "why it failed", &info)
        ],
        "nothing from the lost lease; each line once, in order"
    );
    let position = |kind: EventKind, partition: &str| {
        events.iter().position(|e| e.kind == kind && e.partition_key.as_deref() == Some(partition)).unwrap()
    };
    assert!(
        position(EventKind::StepMessage, &ok.partition_key) < position(EventKind::StepSucceeded, &ok.partition_key)
    );
    assert!(position(EventKind::StepMessage, &bad.partition_key) < position(EventKind::StepFailed, &bad.partition_key));
}

/// Two workers complete their claims at the same moment (at `t(2)`), both accepted.
async fn complete_at_once(store: &dyn LineageStore, a: (&str, &ClaimedRequest), b: (&str, &ClaimedRequest)) {
    let (ca, cb) = (completion(a.1, "v"), completion(b.1, "v"));
    let (ra, rb) = tokio::join!(
        store.complete_requests(a.0, std::slice::from_ref(&ca), t(2)),
        store.complete_requests(b.0, std::slice::from_ref(&cb), t(2)),
    );
    ra.unwrap();
    rb.unwrap();
}

async fn a_run_whose_last_requests_complete_at_once_still_ends(store: &dyn LineageStore) {
    // Two workers complete a run's last two requests at the same moment, many times over: each
    // time, one of them must see the other's commit and end the run.
    for round in 0..25 {
        let run_id = new_run(store).await;
        let reqs = [
            request(run_id, &format!("r{round}:a"), "usage", "a"),
            request(run_id, &format!("r{round}:b"), "usage", "b"),
        ];
        store.submit_requests(&reqs, &[]).await.unwrap();
        let a = store.claim_requests("worker-a", Some(run_id), 1, t(1), t(61)).await.unwrap().remove(0);
        let b = store.claim_requests("worker-b", Some(run_id), 1, t(1), t(61)).await.unwrap().remove(0);
        complete_at_once(store, ("worker-a", &a), ("worker-b", &b)).await;
        assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Succeeded, "round {round}");
    }
}

async fn a_tick_is_recorded_once_with_its_requests_and_cursor(store: &dyn LineageStore) {
    store
        .ensure_instigators(
            &[("bill_daily".into(), InstigatorKind::Schedule), ("pending".into(), InstigatorKind::Sensor)],
            t(0),
        )
        .await
        .unwrap();
    let tick = |name: &str, at: i64, key: &str, cursor: Option<(Option<String>, Option<String>)>| {
        let run_id = RunId::new();
        NewTick {
            instigator: name.into(),
            tick_time: t(at),
            status: TickStatus::Requested,
            message: "1 request".into(),
            cursor,
            dynamic_partitions: vec![("subscriptions".into(), vec!["sub-1".into()])],
            run: Some(NewRun {
                id: run_id,
                trigger: Trigger::Schedule,
                selection: "bill".into(),
                n_steps: 1,
                tags: serde_json::json!({}),
                created_at: t(at),
                owner: None,
            }),
            requests: vec![request(run_id, key, "bill", "2025-12-15")],
            edges: vec![],
            evaluations: vec![],
            min_interval: None,
            created_at: t(at),
        }
    };
    // Two daemons evaluate the same tick: one records it, the other writes nothing.
    let first = tick("bill_daily", 100, "sched:bill_daily:100:bill:2025-12-15", None);
    let second = tick("bill_daily", 100, "sched:bill_daily:100:bill:2025-12-15", None);
    assert_eq!(store.commit_tick(&first).await.unwrap(), TickCommit::Committed { requests: 1 });
    assert_eq!(store.commit_tick(&second).await.unwrap(), TickCommit::AlreadyTicked);
    assert_eq!(store.requests(None, None, None, 10).await.unwrap().len(), 1);
    let ticks = store.ticks("bill_daily", None, 10).await.unwrap();
    assert_eq!((ticks.len(), ticks[0].requests, ticks[0].status.as_str()), (1, 1, "requested"));
    assert_eq!(ticks[0].run_id, Some(first.run.as_ref().unwrap().id));
    assert_eq!(store.run(first.run.as_ref().unwrap().id).await.unwrap().unwrap().trigger, Trigger::Schedule);
    assert_eq!(store.dynamic_partitions("subscriptions").await.unwrap(), ["sub-1"]);

    // A sensor's cursor moves with its tick; an evaluation from a stale cursor writes nothing.
    let s1 = tick("pending", 10, "sensor:pending:sub-1", Some((None, Some("c1".into()))));
    assert_eq!(store.commit_tick(&s1).await.unwrap(), TickCommit::Committed { requests: 1 });
    let stale = tick("pending", 11, "sensor:pending:sub-2", Some((None, Some("c2".into()))));
    assert_eq!(store.commit_tick(&stale).await.unwrap(), TickCommit::CursorMoved);
    assert!(store.ticks("pending", None, 10).await.unwrap().len() == 1, "the refused tick left nothing");
    let next = tick("pending", 12, "sensor:pending:sub-2", Some((Some("c1".into()), Some("c2".into()))));
    assert_eq!(store.commit_tick(&next).await.unwrap(), TickCommit::Committed { requests: 1 });
    let states = store.instigators().await.unwrap();
    let pending = states.iter().find(|s| s.name == "pending").unwrap();
    assert_eq!((pending.cursor.as_deref(), pending.status.as_str()), (Some("c2"), "running"));
    // Ticks page in time order; a cursor is the last tick's id. Requests page by id.
    let newest = store.ticks("pending", None, 1).await.unwrap();
    assert_eq!(newest[0].tick_time, next.tick_time);
    let older = store.ticks("pending", Some(newest[0].id), 10).await.unwrap();
    assert_eq!(older.iter().map(|t| t.tick_time).collect::<Vec<_>>(), [s1.tick_time]);
    assert_eq!(store.count(Counted::Ticks { instigator: "pending" }).await.unwrap(), 2);
    let all = store.requests(None, None, None, 10).await.unwrap();
    let page = store.requests(None, None, Some(all[0].id), 10).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), all[1..].iter().map(|r| r.id).collect::<Vec<_>>());
    assert!(store.set_instigator("pending", Some(InstigatorStatus::Stopped), Some(None), t(13)).await.unwrap());
    assert!(!store.set_instigator("nope", Some(InstigatorStatus::Stopped), None, t(13)).await.unwrap());
    let pending = store.instigators().await.unwrap().into_iter().find(|s| s.name == "pending").unwrap();
    assert_eq!((pending.cursor, pending.status.as_str()), (None, "stopped"));
}

/// Defect 6: two daemons evaluate one sensor 5 ms apart (its cursor unchanged, so the cursor
/// check alone lets both through): the store records one tick, at once or in turn.
async fn a_sensors_minimum_interval_holds_across_daemons(store: &dyn LineageStore) {
    store.ensure_instigators(&[("watch".into(), InstigatorKind::Sensor)], t(0)).await.unwrap();
    let tick = |at: chrono::DateTime<chrono::Utc>| NewTick {
        cursor: Some((None, None)),
        min_interval: Some(chrono::Duration::seconds(30)),
        ..NewTick::empty("watch", at, TickStatus::Skipped, "nothing to request", at)
    };
    let (a, b) = (tick(t(100)), tick(t(100) + chrono::Duration::milliseconds(5)));
    let (ra, rb) = tokio::join!(store.commit_tick(&a), store.commit_tick(&b));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, TickCommit::AlreadyTicked));
    assert_eq!(outcomes, [TickCommit::Committed { requests: 0 }, TickCommit::AlreadyTicked]);
    assert_eq!(store.ticks("watch", None, 10).await.unwrap().len(), 1);
    // After its interval, the next evaluation is recorded.
    assert_eq!(store.commit_tick(&tick(t(131))).await.unwrap(), TickCommit::Committed { requests: 0 });
    assert_eq!(store.ticks("watch", None, 10).await.unwrap().len(), 2);
}

/// Records `asset partition` at `version`, reading the current versions of `reads`.
async fn record_reading(
    store: &dyn LineageStore,
    asset: &str,
    partition: &str,
    version: &str,
    reads: &[(&str, &str)],
) -> MaterializationId {
    let run = new_run(store).await;
    let m = materialization(run, asset, partition, version, current_inputs(store, reads).await);
    store.record_materialization(&m).await.unwrap()
}

async fn current_inputs(store: &dyn LineageStore, reads: &[(&str, &str)]) -> Vec<InputVersion> {
    let keys: Vec<(String, String)> = reads.iter().map(|(a, p)| (a.to_string(), p.to_string())).collect();
    let states = store.partition_states_of(&keys).await.unwrap();
    keys.into_iter()
        .zip(states)
        .map(|((asset_key, partition_key), s)| {
            let s = s.expect("inputs are materialized");
            InputVersion {
                asset_key,
                partition_key,
                materialization_id: s.current_materialization_id,
                data_version: s.data_version.unwrap(),
            }
        })
        .collect()
}

async fn stale_inputs(store: &dyn LineageStore, asset: &str, partition: &str) -> i64 {
    let state = store.partition_states_of(&[(asset.into(), partition.into())]).await.unwrap().remove(0);
    state.expect("partition is known").stale_inputs
}

async fn staleness_follows_new_data_versions_and_stops_at_identical_bytes(store: &dyn LineageStore) {
    for h in ["h0", "h1", "h2"] {
        record_reading(store, "usage_snapshot", h, "a", &[]).await;
    }
    record_reading(store, "storage_bill", "d1", "b", &[("usage_snapshot", "h0"), ("usage_snapshot", "h1")]).await;
    record_reading(store, "storage_bill", "d2", "b", &[("usage_snapshot", "h2")]).await;
    let bill = |p| stale_inputs(store, "storage_bill", p);
    assert_eq!((bill("d1").await, bill("d2").await), (0, 0));

    record_reading(store, "usage_snapshot", "h0", "a", &[]).await;
    assert_eq!(bill("d1").await, 0, "identical bytes make nothing stale");
    record_reading(store, "usage_snapshot", "h0", "b", &[]).await;
    assert_eq!((bill("d1").await, bill("d2").await), (1, 0), "only the day that read the hour");
    record_reading(store, "usage_snapshot", "h1", "b", &[]).await;
    assert_eq!(bill("d1").await, 2);
    record_reading(store, "usage_snapshot", "h0", "a", &[]).await;
    assert_eq!(bill("d1").await, 1, "back to the version it read");
    assert_eq!(store.repair_staleness().await.unwrap(), 0);
    record_reading(store, "storage_bill", "d1", "b2", &[("usage_snapshot", "h0"), ("usage_snapshot", "h1")]).await;
    assert_eq!(bill("d1").await, 0, "re-materialized with what is current");

    // Several versions of one partition in one batch count as the last one.
    let (r1, r2) = (new_run(store).await, new_run(store).await);
    let batch = [
        materialization(r1, "usage_snapshot", "h2", "c", vec![]),
        materialization(r2, "usage_snapshot", "h2", "a", vec![]),
    ];
    store.record_materializations(&batch).await.unwrap();
    assert_eq!(bill("d2").await, 0);
    store
        .record_materialization(&materialization(new_run(store).await, "usage_snapshot", "h2", "c", vec![]))
        .await
        .unwrap();
    assert_eq!(bill("d2").await, 1);
    assert_eq!(store.repair_staleness().await.unwrap(), 0);

    let summaries = store.partition_summaries("storage_bill", None).await.unwrap();
    let states = store.partition_states("storage_bill").await.unwrap();
    assert_eq!(summaries.len(), 2);
    for (summary, state) in summaries.iter().zip(&states) {
        assert_eq!(summary.partition_key, state.partition_key, "in partition order, like states");
        assert!(summary.materialized && summary.last_attempt_status == AttemptStatus::Materialized);
        assert_eq!((&summary.code_version, summary.stale_inputs), (&state.code_version, state.stale_inputs));
        assert_eq!(summary.input_keys_hash, state.input_keys_hash);
    }
    assert_eq!(summaries[1].stale_inputs, 1);
    let known = summaries[0].input_keys_hash.clone();
    let lean = store.partition_summaries("storage_bill", known.as_deref()).await.unwrap();
    assert_eq!(lean[0].input_keys_hash, None, "the known hash is left out");
    assert_eq!(lean[1].input_keys_hash, summaries[1].input_keys_hash, "another one is not");
    assert!(store.partition_summaries("nothing", None).await.unwrap().is_empty());
    let d1 = store.partition_states_of(&[("storage_bill".into(), "d1".into())]).await.unwrap().remove(0).unwrap();
    assert_eq!(d1.input_keys_hash, Some(input_keys_hash([("usage_snapshot", "h0"), ("usage_snapshot", "h1")])));
    assert_eq!(d1.input_keys_hash, Some(input_keys_hash([("usage_snapshot", "h1"), ("usage_snapshot", "h0")])));
    assert_ne!(d1.input_keys_hash, Some(input_keys_hash([("usage_snapshot", "h0")])));
}

async fn wipe_forgets_partitions_and_makes_their_readers_stale(store: &dyn LineageStore) {
    for h in ["h0", "h1"] {
        record_reading(store, "usage_snapshot", h, "a", &[]).await;
    }
    record_reading(store, "usage_snapshot", "h0", "a", &[]).await;
    let bill =
        record_reading(store, "storage_bill", "d1", "b", &[("usage_snapshot", "h0"), ("usage_snapshot", "h1")]).await;

    let wiped = store.wipe("usage_snapshot", Some(&["h0".to_owned()]), ts(5)).await.unwrap();
    assert_eq!(wiped, WipeOutcome { partitions: 1, materializations: 2, readers: 1 });
    let left: Vec<String> =
        store.partition_states("usage_snapshot").await.unwrap().into_iter().map(|s| s.partition_key).collect();
    assert_eq!(left, ["h1"]);
    assert!(store.history("usage_snapshot", Some("h0"), None, 10).await.unwrap().is_empty());
    assert_eq!(stale_inputs(store, "storage_bill", "d1").await, 1, "its input is gone");
    assert_eq!(store.inputs_of(bill).await.unwrap().len(), 2, "what it read is still recorded");
    let read = store.inputs_of(bill).await.unwrap()[0].materialization_id.unwrap();
    assert!(store.materialization(read).await.unwrap().is_some(), "the wiped version it read stays for lineage");
    assert_eq!(store.repair_staleness().await.unwrap(), 0);
    let again = record_reading(store, "usage_snapshot", "h0", "a", &[]).await;
    assert!(again > bill, "ids stay monotonic after a wipe (cursors rely on it)");
    assert_eq!(stale_inputs(store, "storage_bill", "d1").await, 0, "the same bytes again");

    let run = new_run(store).await;
    store
        .record_step_started(&RunEvent::step(run, ts(4), EventKind::StepStarted, "usage_snapshot", "h1", ""))
        .await
        .unwrap();
    match store.wipe("usage_snapshot", None, ts(5)).await {
        Err(Error::PartitionRunning { asset, partition, run: by }) => {
            assert_eq!((asset.as_str(), partition.as_str(), by), ("usage_snapshot", "h1", run.to_string()));
        }
        other => panic!("a running partition refuses the wipe, got {other:?}"),
    }
    assert_eq!(store.partition_states("usage_snapshot").await.unwrap().len(), 2, "nothing was wiped");
    let h1 = store.partition_states_of(&[("usage_snapshot".into(), "h1".into())]).await.unwrap().remove(0).unwrap();
    let h1 = h1.current_materialization_id.unwrap();
    assert_eq!(store.readers_of(h1).await.unwrap().len(), 1);
    let all = store.wipe("storage_bill", None, ts(5)).await.unwrap();
    assert_eq!((all.partitions, all.materializations, all.readers), (1, 1, 0));
    assert!(store.partition_states("storage_bill").await.unwrap().is_empty());
    assert!(store.readers_of(h1).await.unwrap().is_empty(), "a wiped reader is not listed");
    let seen: Vec<(String, String)> =
        store.materializations_after(0, 100).await.unwrap().into_iter().map(|(_, a, p)| (a, p)).collect();
    assert!(!seen.iter().any(|(a, _)| a == "storage_bill"), "the daemon does not react to wiped ones: {seen:?}");
    assert_eq!(seen.iter().filter(|(_, p)| p == "h0").count(), 1, "only h0's materialization since its wipe");
}

/// (asset, partition, the partitions it reads).
type Node = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

/// Four writers at once re-materialize hours, days and a month that read each other: the
/// maintained counts end equal to a recount (on PostgreSQL the writers really overlap).
async fn partition_runs_group_stored_partitions_by_class_in_key_order(store: &dyn LineageStore) {
    let run = new_run(store).await;
    let up = store.record_materialization(&materialization(run, "up", "u1", "x", vec![])).await.unwrap();
    let mut batch: Vec<NewMaterialization> = ["k01", "k02", "k05", "k06", "k10", "k11", "k13"]
        .into_iter()
        .map(|k| materialization(run, "a", k, "v", vec![]))
        .collect();
    let mut old_code = materialization(run, "a", "k07", "v", vec![]);
    old_code.code_version = "0".into();
    batch.push(old_code);
    let read = InputVersion {
        asset_key: "up".into(),
        partition_key: "u1".into(),
        materialization_id: Some(up),
        data_version: "x".into(),
    };
    batch.push(materialization(run, "a", "k08", "v", vec![read]));
    store.record_materializations(&batch).await.unwrap();
    let c = claim_one(store, new_run(store).await, "a", "k03", 1).await;
    assert_eq!(store.fail_request("w", &failed(&c, "boom", None), t(5)).await.unwrap(), FailOutcome::Failed);
    claim_one(store, new_run(store).await, "a", "k04", 1).await;

    let none_read = input_keys_hash([]);
    let runs = store.partition_runs("a", "1", Some(&none_read), 100).await.unwrap();
    let got: Vec<(&str, &str, PartitionClass, i64)> =
        runs.iter().map(|r| (r.first.as_str(), r.last.as_str(), r.class, r.count)).collect();
    assert_eq!(
        got,
        [
            ("k01", "k02", PartitionClass::Materialized, 2),
            ("k03", "k03", PartitionClass::Failed, 1),
            ("k04", "k04", PartitionClass::InProgress, 1),
            ("k05", "k06", PartitionClass::Materialized, 2),
            ("k07", "k07", PartitionClass::Stale, 1),
            ("k08", "k08", PartitionClass::Unverified, 1),
            // k09 and k12 were never stored: they do not break a run, the count tells.
            ("k10", "k13", PartitionClass::Materialized, 3),
        ]
    );
    assert_eq!(store.partition_count("a").await.unwrap(), 11);
    assert_eq!(runs.iter().map(|r| r.count).sum::<i64>(), 11);
    // Read up to a limit, the last run stands for the rest.
    let cut = store.partition_runs("a", "1", Some(&none_read), 3).await.unwrap();
    let got: Vec<(&str, &str, PartitionClass, i64)> =
        cut.iter().map(|r| (r.first.as_str(), r.last.as_str(), r.class, r.count)).collect();
    assert_eq!(
        got,
        [
            ("k01", "k02", PartitionClass::Materialized, 2),
            ("k03", "k03", PartitionClass::Failed, 1),
            ("k04", "k13", PartitionClass::InProgress, 8),
        ]
    );

    // Another code version makes every current materialization stale; an unknown keys hash
    // leaves every materialized one with recorded keys for the caller to judge.
    let classes = |runs: Vec<PartitionRun>| runs.into_iter().map(|r| (r.class, r.count)).collect::<Vec<_>>();
    assert_eq!(
        classes(store.partition_runs("a", "2", Some(&none_read), 100).await.unwrap()),
        [
            (PartitionClass::Stale, 2),
            (PartitionClass::Failed, 1),
            (PartitionClass::InProgress, 1),
            (PartitionClass::Stale, 7),
        ]
    );
    assert!(
        classes(store.partition_runs("a", "1", None, 100).await.unwrap())
            .iter()
            .all(|(c, _)| !matches!(c, PartitionClass::Materialized))
    );

    // A changed input makes its reader stale.
    store.record_materialization(&materialization(new_run(store).await, "up", "u1", "y", vec![])).await.unwrap();
    let runs = store.partition_runs("a", "1", Some(&none_read), 100).await.unwrap();
    assert_eq!((runs[4].first.as_str(), runs[4].last.as_str(), runs[4].class), ("k07", "k08", PartitionClass::Stale));

    assert!(store.partition_runs("nothing", "1", None, 100).await.unwrap().is_empty());
    assert_eq!(store.partition_count("nothing").await.unwrap(), 0);
}

async fn concurrent_writers_keep_staleness_counts_exact(store: &dyn LineageStore) {
    const NODES: [Node; 7] = [
        ("usage_snapshot", "h0", &[]),
        ("usage_snapshot", "h1", &[]),
        ("usage_snapshot", "h2", &[]),
        ("usage_snapshot", "h3", &[]),
        ("storage_bill", "d0", &[("usage_snapshot", "h0"), ("usage_snapshot", "h1")]),
        ("storage_bill", "d1", &[("usage_snapshot", "h2"), ("usage_snapshot", "h3")]),
        ("credit_allocation", "m0", &[("storage_bill", "d0"), ("storage_bill", "d1")]),
    ];
    for (asset, partition, reads) in NODES {
        record_reading(store, asset, partition, "v0", reads).await;
    }
    let writer = |seed: u64| async move {
        let mut x = seed;
        for _ in 0..25 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (asset, partition, reads) = NODES[(x >> 33) as usize % NODES.len()];
            record_reading(store, asset, partition, &format!("v{}", (x >> 40) % 3), reads).await;
        }
    };
    tokio::join!(writer(1), writer(2), writer(3), writer(4));
    assert_eq!(store.repair_staleness().await.unwrap(), 0, "no count drifted");
}

/// The outbox as (event type, asset or "run", attempt, error) in delivery order.
async fn outbox_log(store: &dyn LineageStore) -> Vec<(LineageEventType, String, Option<i64>, Option<String>)> {
    store
        .outbox_events(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let what = match (&e.asset_key, &e.partition_key) {
                (Some(a), Some(p)) => format!("{a} {p}"),
                _ => format!("run {}", e.run_id),
            };
            (e.event_type, what, e.attempt, e.error)
        })
        .collect()
}

async fn every_transition_writes_its_lineage_event_with_it(store: &dyn LineageStore) {
    use LineageEventType::*;
    let run_id = new_run(store).await;
    let run = format!("run {run_id}");
    let mut up = request(run_id, "up", "usage", "h0");
    up.max_attempts = 2;
    let reqs = [up, request(run_id, "ok", "usage", "h1"), request(run_id, "down", "bill", "d")];
    let ids = store.submit_requests(&reqs, &[(0, 2)]).await.unwrap();
    assert!(outbox_log(store).await.is_empty(), "nothing started yet");
    let claimed = store.claim_requests("w", None, 2, t(0), t(60)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // A charged failure (retried), then an uncharged one (its worker exited), then for good.
    store.fail_request("w", &failed(&claimed[0], "graph api 503", Some(t(1))), t(1)).await.unwrap();
    store.complete_requests("w", &[completion(&claimed[1], "v1")], t(2)).await.unwrap();
    let second = store.claim_requests("w2", None, 1, t(3), t(60)).await.unwrap().remove(0);
    assert_eq!(second.id, ids[0].id);
    store.release_abandoned(&["w2".to_owned()], t(4)).await.unwrap();
    let third = store.claim_requests("w", None, 1, t(5), t(60)).await.unwrap().remove(0);
    assert_eq!(third.attempt, 2, "the released attempt was not charged");
    // A late completion of the first attempt is fenced out, and records no event either.
    store.complete_requests("w", &[completion(&claimed[0], "late")], t(6)).await.unwrap();
    store.fail_request("w", &failed(&third, "graph api 503", None), t(7)).await.unwrap();
    assert_eq!(store.run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
    let err = |s: &str| Some(s.to_owned());
    assert_eq!(
        outbox_log(store).await,
        vec![
            (Start, run.clone(), None, None),
            (Start, "usage h0".into(), Some(1), None),
            (Start, "usage h1".into(), Some(1), None),
            (Fail, "usage h0".into(), Some(1), err("graph api 503")),
            (Complete, "usage h1".into(), Some(1), None),
            (Start, "usage h0".into(), Some(2), None),
            (Abort, "usage h0".into(), Some(2), err("its worker exited mid-attempt")),
            (Start, "usage h0".into(), Some(2), None),
            (Fail, "usage h0".into(), Some(2), err("graph api 503")),
            (Fail, run.clone(), None, None),
        ],
        "bill d never started: no event of it"
    );
    // Each START at its claim, the COMPLETE when its materialization finished (the START written
    // by the claim's own statement on PostgreSQL, every other one by a multi-row INSERT).
    let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    let times: Vec<_> = store
        .outbox_events(epoch, 0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.request_id.is_some() && matches!(e.event_type, Start | Complete))
        .map(|e| (e.event_type, e.event_time))
        .collect();
    let finished = completion(&claimed[1], "v1").materialization.finished_at;
    assert_eq!(times, [(Start, t(0)), (Start, t(0)), (Complete, finished), (Start, t(3)), (Start, t(5))]);
    // A canceled run: START, the running step aborted, the run aborted.
    let canceled = new_run(store).await;
    let req = request(canceled, "c", "usage", "h9");
    store.submit_requests(&[req], &[]).await.unwrap();
    let c = store.claim_requests("w", Some(canceled), 1, t(8), t(60)).await.unwrap().remove(0);
    store.cancel_run(canceled, t(9)).await.unwrap();
    assert!(store.acknowledge_cancel("w", c.id, 1, t(10)).await.unwrap());
    let log = outbox_log(store).await;
    assert_eq!(
        log[10..].iter().map(|(ty, what, _, _)| (*ty, what.clone())).collect::<Vec<_>>(),
        vec![
            (Start, format!("run {canceled}")),
            (Start, "usage h9".into()),
            (Abort, "usage h9".into()),
            (Abort, format!("run {canceled}")),
        ]
    );
    // A run canceled before anything of it started has no lineage events at all.
    let never = new_run(store).await;
    store.submit_requests(&[request(never, "n", "usage", "h8")], &[]).await.unwrap();
    store.cancel_run(never, t(11)).await.unwrap();
    assert_eq!(store.run(never).await.unwrap().unwrap().status, RunStatus::Canceled);
    assert_eq!(outbox_log(store).await.len(), 14);
    // Delivery: pending in id order, marked once, the backlog counted.
    let pending = store.outbox_pending(100).await.unwrap();
    assert_eq!(pending.len(), 14);
    assert!(pending.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(store.outbox_backlog().await.unwrap(), 14);
    store.outbox_delivery_failed(pending[0].id, "HTTP 500").await.unwrap();
    store.outbox_delivered(&[pending[0].id, pending[1].id], t(20), None).await.unwrap();
    store.outbox_delivered(&[pending[2].id], t(21), Some("HTTP 400: bad event")).await.unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap(), 11);
    let rest = store.outbox_pending(100).await.unwrap();
    assert_eq!(rest[0].id, pending[3].id);
    let all = store.outbox_events(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(), 0, 100).await.unwrap();
    assert_eq!((all[0].delivery_attempts, all[0].delivered_at), (2, Some(t(20))));
    // One deliverer at a time: a second owner waits until the first stops renewing.
    assert!(store.delivery_lease(Delivery::Openlineage, "daemon-a", t(0), t(30), None).await.unwrap());
    assert!(
        !store.delivery_lease(Delivery::Openlineage, "daemon-b", t(10), t(40), None).await.unwrap(),
        "a's lease runs"
    );
    assert!(store.delivery_lease(Delivery::Openlineage, "daemon-a", t(20), t(50), None).await.unwrap(), "renewed");
    assert!(!store.delivery_lease(Delivery::Openlineage, "daemon-b", t(49), t(79), None).await.unwrap());
    assert!(
        store.delivery_lease(Delivery::Openlineage, "daemon-b", t(51), t(81), None).await.unwrap(),
        "a stopped renewing"
    );
    assert!(!store.delivery_lease(Delivery::Openlineage, "daemon-a", t(60), t(90), None).await.unwrap());
    assert_eq!(store.delivery_lease_holder(Delivery::Openlineage).await.unwrap().as_deref(), Some("daemon-b"));
    assert!(
        store.delivery_lease(Delivery::Openlineage, "daemon-c", t(61), t(91), Some("daemon-b")).await.unwrap(),
        "b is known dead"
    );
    assert_eq!(
        store
            .outbox_events(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(), pending[12].id, 100)
            .await
            .unwrap()
            .len(),
        1,
        "paged by id"
    );
    assert_eq!(
        store.outbox_events(t(10), 0, 100).await.unwrap().len(),
        2,
        "since: the aborts of the last step and its run"
    );
}

async fn a_run_that_fails_writes_one_alert_and_a_canceled_one_none(store: &dyn LineageStore) {
    // A step failing for good fails its run: one alert, written with it.
    let failing = new_run(store).await;
    store.submit_requests(&[request(failing, "f", "usage", "h0")], &[]).await.unwrap();
    let c = store.claim_requests("w", Some(failing), 1, t(0), t(60)).await.unwrap().remove(0);
    assert!(store.alerts_pending(10).await.unwrap().is_empty(), "nothing failed yet");
    store.fail_request("w", &failed(&c, "graph api 503", None), t(1)).await.unwrap();
    assert_eq!(store.run(failing).await.unwrap().unwrap().status, RunStatus::Failed);
    let alerts = store.alerts_pending(10).await.unwrap();
    assert_eq!(alerts.iter().map(|a| (a.run_id, a.failed_at)).collect::<Vec<_>>(), [(failing, t(1))]);
    // A run set failed by hand alerts too; setting it failed again does not.
    let set = new_run(store).await;
    store.set_run_status(set, RunStatus::Failed, &RunEvent::run(set, t(2), EventKind::RunFailed, "")).await.unwrap();
    store.set_run_status(set, RunStatus::Failed, &RunEvent::run(set, t(3), EventKind::RunFailed, "")).await.unwrap();
    // A canceled run and a succeeded one alert nobody.
    let canceled = new_run(store).await;
    store.submit_requests(&[request(canceled, "c", "usage", "h1")], &[]).await.unwrap();
    store.cancel_run(canceled, t(4)).await.unwrap();
    assert_eq!(store.run(canceled).await.unwrap().unwrap().status, RunStatus::Canceled);
    let ok = new_run(store).await;
    store.submit_requests(&[request(ok, "o", "usage", "h2")], &[]).await.unwrap();
    let c = store.claim_requests("w", Some(ok), 1, t(5), t(60)).await.unwrap().remove(0);
    store.complete_requests("w", &[completion(&c, "v1")], t(6)).await.unwrap();
    assert_eq!(store.run(ok).await.unwrap().unwrap().status, RunStatus::Succeeded);
    let pending = store.alerts_pending(10).await.unwrap();
    assert_eq!(pending.iter().map(|a| a.run_id).collect::<Vec<_>>(), [failing, set]);
    assert_eq!(store.alert_backlog().await.unwrap(), 2);
    // Delivery: a failure keeps it pending with its error; sent and refused are marked once.
    store.alert_delivery_failed(pending[0].id, "HTTP 500").await.unwrap();
    store.alert_delivered(pending[0].id, t(10), None).await.unwrap();
    store.alert_delivered(pending[0].id, t(11), None).await.unwrap();
    store.alert_delivered(pending[1].id, t(12), Some("HTTP 400: bad alert")).await.unwrap();
    assert_eq!(store.alert_backlog().await.unwrap(), 0);
    let sent = store.run_alerts(failing).await.unwrap();
    assert_eq!(
        (sent[0].delivered_at, sent[0].delivery_attempts, sent[0].last_error.as_deref()),
        (Some(t(10)), 2, None)
    );
    let refused = store.run_alerts(set).await.unwrap();
    assert_eq!(refused[0].last_error.as_deref(), Some("HTTP 400: bad alert"));
    assert!(store.run_alerts(canceled).await.unwrap().is_empty());
    // Each kind of delivery has its own lease.
    assert!(store.delivery_lease(Delivery::Alerts, "daemon-a", t(0), t(30), None).await.unwrap());
    assert!(store.delivery_lease(Delivery::Openlineage, "daemon-b", t(1), t(31), None).await.unwrap());
    assert!(!store.delivery_lease(Delivery::Alerts, "daemon-b", t(2), t(32), None).await.unwrap());
    assert_eq!(store.delivery_lease_holder(Delivery::Alerts).await.unwrap().as_deref(), Some("daemon-a"));
}

/// An idle worker is woken by new work: on PostgreSQL by another process's submission (through
/// `NOTIFY`), on SQLite by its own process's.
#[tokio::test]
async fn postgres_wakes_the_idle_workers_of_every_process() {
    let Some(fixture) = postgres().await else { return };
    let other = fixture.another_store().await;
    let mut signal = fixture.store().work_signal();
    assert!(signal.across_processes());
    let wait = std::time::Duration::from_secs(10);
    // The listener wakes everyone once it listens (for what was committed before).
    tokio::time::timeout(wait, signal.changed()).await.expect("the listener started");
    let run = new_run(&*other).await;
    other.submit_requests(&[request(run, "a", "usage", "h0")], &[]).await.unwrap();
    tokio::time::timeout(wait, signal.changed()).await.expect("woken by another process's submission");
    // A completion that unblocks a downstream request wakes it too.
    let run = new_run(&*other).await;
    let reqs = [request(run, "up", "usage", "h1"), request(run, "down", "bill", "d1")];
    other.submit_requests(&reqs, &[(0, 1)]).await.unwrap();
    tokio::time::timeout(wait, signal.changed()).await.expect("woken by the submission");
    let claimed = other.claim_requests("w", Some(run), 1, t(0), t(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    other.complete_requests("w", &[completion(&claimed[0], "v1")], t(1)).await.unwrap();
    tokio::time::timeout(wait, signal.changed()).await.expect("woken by the unblocking completion");
    drop(signal);
    drop(other);
    fixture.teardown().await;
}

/// Another PostgreSQL session, in a transaction that has run `sql` with `$1` bound to `arg`: a
/// concurrent transaction holding the locks that statement took.
async fn session_in_a_transaction(fixture: &crate::test_support::Fixture, sql: &str, arg: &str) -> sqlx::PgConnection {
    let mut session = fixture.pg_connection().await;
    sqlx::query("BEGIN").execute(&mut session).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(arg).execute(&mut session).await.unwrap();
    session
}

/// Completing a request of a run with work left neither waits for the run's row nor ends the
/// run: the run's other requests could not end it before this commit (`end_or_pin_run`'s pin).
/// Completions of one run used to queue on its row, one commit after another.
#[tokio::test]
async fn postgres_completions_of_a_run_with_work_left_do_not_wait_for_its_row() {
    let Some(fixture) = postgres().await else { return };
    let store = fixture.store();
    let run = new_run(store).await;
    let reqs = [request(run, "a", "usage", "h0"), request(run, "b", "usage", "h1"), request(run, "c", "usage", "h2")];
    store.submit_requests(&reqs, &[]).await.unwrap();
    let a = store.claim_requests("wa", Some(run), 1, t(0), t(60)).await.unwrap().remove(0);
    let b = store.claim_requests("wb", Some(run), 1, t(0), t(60)).await.unwrap().remove(0);
    // Another session holds the run's row, as a completion checking whether the run ended does.
    let mut holder =
        session_in_a_transaction(&fixture, "SELECT id FROM runs WHERE id = $1 FOR NO KEY UPDATE", &run.to_string())
            .await;
    let wait = std::time::Duration::from_secs(10);
    tokio::time::timeout(wait, store.complete_requests("wa", &[completion(&a, "v")], t(1)))
        .await
        .expect("a completion with requests of its run left does not wait for the run's row")
        .unwrap();
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Running);
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    // The last ones end it, whichever order they commit in.
    let c = store.claim_requests("wc", Some(run), 1, t(1), t(61)).await.unwrap().remove(0);
    complete_at_once(store, ("wb", &b), ("wc", &c)).await;
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Succeeded);
    drop(holder);
    fixture.teardown().await;
}

/// `retry-failed` while a worker ends the run: the reopening waits for the worker's commit and
/// puts the ended run back in the queue. It used to update the run as it was before that commit
/// (running: not an ended run, so left alone), and the run stayed failed with its cell queued.
#[tokio::test]
async fn postgres_reopening_as_a_worker_ends_the_run_queues_it_again() {
    let Some(fixture) = postgres().await else { return };
    let store = fixture.store();
    let run = new_run(store).await;
    let mut a = request(run, "a", "usage", "h0");
    a.max_attempts = 1;
    let ids = store.submit_requests(&[a, request(run, "b", "usage", "h1")], &[]).await.unwrap();
    let claimed = store.claim_requests("w", None, 2, t(0), t(60)).await.unwrap();
    store.fail_request("w", &failed(&claimed[0], "graph api 503", None), t(1)).await.unwrap();
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Running);
    // A worker ending the run, not committed yet.
    let mut ender = session_in_a_transaction(
        &fixture,
        "UPDATE runs SET status = 'failed', finished_at = now() WHERE id = $1",
        &run.to_string(),
    )
    .await;
    let other = fixture.another_store().await;
    let reopen = tokio::spawn(async move { other.reopen_requests(run, &[RequestState::Failed], t(2)).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!reopen.is_finished(), "the reopening waits for the run's row");
    sqlx::query("COMMIT").execute(&mut ender).await.unwrap();
    assert_eq!(reopen.await.unwrap(), 1);
    assert_eq!(state_of(store, ids[0].id).await, RequestState::Available);
    assert_eq!(store.run(run).await.unwrap().unwrap().status, RunStatus::Queued, "the ended run waits again");
    drop(ender);
    fixture.teardown().await;
}

/// A worker's heartbeat and a completion of one of its requests, at once, do not deadlock: the
/// heartbeat renews the requests' leases before the owned run's, in the completion's order
/// (requests, then their run). It renewed the run first, then waited for the request the
/// completion held, which then waited for the run's row.
#[tokio::test]
async fn postgres_a_heartbeat_beside_its_workers_completion_does_not_deadlock() {
    let Some(fixture) = postgres().await else { return };
    let store = fixture.store();
    let run = NewRun {
        id: RunId::new(),
        trigger: Trigger::Manual,
        selection: "usage".into(),
        n_steps: 1,
        tags: serde_json::json!({}),
        created_at: t(0),
        owner: Some(RunOwner { worker: "materialize-1".into(), lease_until: t(30) }),
    };
    store.create_run(&run).await.unwrap();
    store.submit_requests(&[request(run.id, "h0", "usage", "h0")], &[]).await.unwrap();
    let held = store.claim_requests("materialize-1", Some(run.id), 1, t(1), t(61)).await.unwrap().remove(0);
    // A completion in flight: its fence holds the request's row.
    let fence = "UPDATE materialization_requests SET lease_expires_at = lease_expires_at WHERE id = $1";
    let mut completing = session_in_a_transaction(&fixture, fence, &held.id.to_string()).await;
    // The heartbeat, the run's ownership due for renewal, waits for that row.
    let heartbeat = tokio::spawn({
        let store = fixture.another_store().await;
        async move { store.heartbeat("materialize-1", &[held.id], t(90)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The completion goes on to its run's row, as `finish_run` does, and commits.
    sqlx::query("SELECT id FROM runs WHERE id = $1 FOR NO KEY UPDATE")
        .bind(run.id.to_string())
        .execute(&mut completing)
        .await
        .expect("the completion is not chosen as a deadlock victim");
    sqlx::query("COMMIT").execute(&mut completing).await.unwrap();
    let renewed = tokio::time::timeout(std::time::Duration::from_secs(10), heartbeat).await.unwrap().unwrap();
    assert_eq!(renewed.expect("the heartbeat is not chosen as a deadlock victim"), [(held.id, false)]);
    drop(completing);
    fixture.teardown().await;
}

/// On PostgreSQL a materialization's id is drawn before its transaction commits: the cursor's
/// read waits for a transaction that drew a lower id, so a cursor moved to the largest id it
/// returns never skips that one when it commits.
#[tokio::test]
async fn postgres_a_cursor_past_the_read_misses_no_materialization_committed_later() {
    let Some(fixture) = postgres().await else { return };
    let store = fixture.store();
    let run = new_run(store).await;
    // A writer in flight, as `lock_staleness` and the fence do: the maintenance lock shared,
    // then an id drawn.
    let lock = "SELECT pg_advisory_xact_lock_shared($1::int8)";
    let mut writer = session_in_a_transaction(&fixture, lock, "-9223372036854775808").await;
    let early: i64 =
        sqlx::query_scalar("SELECT nextval('materializations_id_seq')").fetch_one(&mut writer).await.unwrap();
    // Another transaction records a materialization with the next id and commits first.
    let late = store.record_materialization(&materialization(run, "usage", "h1", "v", vec![])).await.unwrap();
    assert_eq!(late, early + 1);
    let read = tokio::spawn({
        let store = fixture.another_store().await;
        async move { store.materializations_after(0, 100).await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "the read waits for the writer that drew a lower id");
    // The writer records its materialization under the id it drew, then commits.
    for sql in [
        "CREATE TEMP TABLE m AS SELECT * FROM materializations WHERE id = $1",
        "UPDATE m SET id = $1 - 1, partition_key = 'h0'",
        "INSERT INTO materializations OVERRIDING SYSTEM VALUE SELECT * FROM m",
    ] {
        sqlx::query(sql).bind(late).execute(&mut writer).await.unwrap();
    }
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("the read ends").unwrap();
    assert_eq!(
        seen,
        [(early, "usage".to_owned(), "h0".to_owned()), (late, "usage".to_owned(), "h1".to_owned())],
        "the lower id, committed after the higher, is read before the cursor passes it"
    );
    drop(writer);
    fixture.teardown().await;
}

#[tokio::test]
async fn sqlite_wakes_the_idle_workers_of_its_own_process() {
    let fixture = sqlite().await;
    let mut signal = fixture.store().work_signal();
    assert!(!signal.across_processes(), "other processes are found by polling");
    let run = new_run(fixture.store()).await;
    fixture.store().submit_requests(&[request(run, "a", "usage", "h0")], &[]).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), signal.changed()).await.expect("woken");
}

/// SQLite's plan of `sql`, a statement about the run `$1` with `params` parameters in all (the
/// others bound null: a plan does not depend on the values), one line a step.
async fn sqlite_plan_of_a_runs_statement(sql: &str, params: usize) -> Vec<String> {
    use sqlx::Connection as _;
    let fixture = sqlite().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", fixture.path().display())).await.unwrap();
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query =
        sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain)).bind(RunId::new().to_string());
    for _ in 1..params {
        query = query.bind(None::<&str>);
    }
    let plan = query.fetch_all(&mut conn).await.unwrap().into_iter().map(|(_, _, _, detail)| detail).collect();
    drop(conn);
    fixture.teardown().await;
    plan
}

/// The executor reads every run's requests back for its outcome: through the run's index, not a
/// scan of the whole queue (which made each run slower than the one before, BENCHMARKS.md).
#[tokio::test]
async fn sqlite_reads_a_runs_requests_through_the_run_index() {
    let plan = sqlite_plan_of_a_runs_statement(crate::sqlite::REQUESTS_OF_RUN, 4).await;
    assert!(plan.iter().any(|d| d.contains("USING INDEX requests_run")), "{plan:?}");
    assert!(!plan.iter().any(|d| d.starts_with("SCAN materialization_requests")), "{plan:?}");
}

/// A backfill's progress counts its run's requests by asset and state from the run's index alone:
/// fetching each request from the table took 74 ms for a year of the chain (BENCHMARKS.md).
#[tokio::test]
async fn sqlite_counts_a_runs_requests_from_the_run_index_alone() {
    let plan = sqlite_plan_of_a_runs_statement(crate::sqlite::REQUEST_COUNTS, 1).await;
    assert!(plan.iter().any(|d| d.contains("USING COVERING INDEX requests_run")), "{plan:?}");
}

// --- Retention -------------------------------------------------------------------------------

/// A tick of `instigator` at `at` that requested nothing.
fn skipped_tick(instigator: &str, at: i64) -> NewTick {
    NewTick::empty(instigator, t(at), TickStatus::Skipped, "nothing to do", t(at))
}

/// Rows of each pruned table a test can read back through the store.
async fn kept(store: &dyn LineageStore, runs: &[RunId]) -> Vec<usize> {
    let mut out = Vec::new();
    for run in runs {
        out.push(store.run_events(*run).await.unwrap().len());
        out.push(store.requests(Some(*run), None, None, 100).await.unwrap().len());
    }
    out.push(store.ticks("bill_daily", None, 100).await.unwrap().len());
    out.push(store.ticks("only_old", None, 100).await.unwrap().len());
    out.push(store.outbox_events(t(-100_000_000), 0, 10_000).await.unwrap().len());
    out
}

async fn prune_removes_old_finished_history_and_keeps_lineage_and_live_work(store: &dyn LineageStore) {
    // A: a two-step run (usage → bill) that succeeded long ago.
    let a = new_run(store).await;
    let reqs = [request(a, "a:h0", "usage", "h0"), request(a, "a:bill", "bill", "d0")];
    store.submit_requests(&reqs, &[(0, 1)]).await.unwrap();
    let h0 = store.claim_requests("w", Some(a), 10, t(1), t(61)).await.unwrap().remove(0);
    store.complete_requests("w", &[completion(&h0, "v1")], t(2)).await.unwrap();
    let bill = store.claim_requests("w", Some(a), 10, t(3), t(63)).await.unwrap().remove(0);
    store.complete_requests("w", &[completion(&bill, "v1")], t(4)).await.unwrap();
    assert_eq!(store.run(a).await.unwrap().unwrap().status, RunStatus::Succeeded);
    // F: failed long ago, its alert not sent yet.
    let f = new_run(store).await;
    let c = claim_one(store, f, "usage", "f0", 1).await;
    store.fail_request("w", &failed(&c, "boom", None), t(10)).await.unwrap();
    assert_eq!(store.run(f).await.unwrap().unwrap().status, RunStatus::Failed);
    // B: a backfill that succeeded long ago.
    let b = RunId::new();
    store
        .create_backfill(&NewBackfill {
            id: BackfillId::new(),
            selection: "usage".into(),
            partition_from: "b0".into(),
            partition_to: "b0".into(),
            policy: BackfillPolicy::Missing,
            run: NewRun {
                id: b,
                trigger: Trigger::Backfill,
                selection: "usage".into(),
                n_steps: 1,
                tags: serde_json::json!({}),
                created_at: t(0),
                owner: None,
            },
            cells: 1,
            skipped: serde_json::json!([]),
        })
        .await
        .unwrap();
    let c = claim_one(store, b, "usage", "b0", 3).await;
    store.complete_requests("w", &[completion(&c, "v1")], t(5)).await.unwrap();
    // R running and Q queued since long ago.
    let r = new_run(store).await;
    claim_one(store, r, "usage", "r0", 3).await;
    let q = new_run(store).await;
    store.submit_requests(&[request(q, "q:q0", "usage", "q0")], &[]).await.unwrap();
    // Everything written so far is delivered at t(50).
    let delivered: Vec<i64> = store.outbox_pending(10_000).await.unwrap().iter().map(|e| e.id).collect();
    store.outbox_delivered(&delivered, t(50), None).await.unwrap();
    // N: finished after the cutoff; its events are not delivered yet.
    let n = new_run(store).await;
    let c = claim_one(store, n, "usage", "n0", 3).await;
    store.complete_requests("w", &[completion(&c, "v1")], t(2_000)).await.unwrap();
    // Ticks: two old ones and a recent one of a schedule, one old one (its latest) of another.
    store
        .ensure_instigators(
            &[("bill_daily".into(), InstigatorKind::Schedule), ("only_old".into(), InstigatorKind::Schedule)],
            t(0),
        )
        .await
        .unwrap();
    for tick in [skipped_tick("bill_daily", 100), skipped_tick("bill_daily", 200), skipped_tick("bill_daily", 5_000)] {
        store.commit_tick(&tick).await.unwrap();
    }
    store.commit_tick(&skipped_tick("only_old", 100)).await.unwrap();

    let runs = [a, f, b, r, q, n];
    let before = kept(store, &runs).await;
    assert!(before[0] > 0 && before[4] > 0);
    let expected = PruneReport {
        // A's and the backfill's: a backfill keeps its requests, not its events.
        run_events: (before[0] + before[4]) as u64,
        // A's two and F's one.
        materialization_requests: 3,
        request_edges: 1,
        ticks: 2,
        openlineage_outbox: delivered.len() as u64,
        alerts: 0,
    };
    let cutoff = t(1_000);

    // A dry run counts exactly what the prune removes, and removes nothing.
    assert_eq!(store.prune(cutoff, true).await.unwrap(), expected);
    assert_eq!(kept(store, &runs).await, before, "a dry run deletes nothing");
    assert_eq!(store.prune(cutoff, false).await.unwrap(), expected);

    // A's events and requests are gone; F's events stay while its alert is unsent.
    assert!(store.run_events(a).await.unwrap().is_empty());
    assert!(store.requests(Some(a), None, None, 10).await.unwrap().is_empty());
    assert!(store.request(h0.id).await.unwrap().is_none());
    assert_eq!(store.run_events(f).await.unwrap().len(), before[2], "an unsent alert's run keeps its events");
    assert!(store.requests(Some(f), None, None, 10).await.unwrap().is_empty());
    // The backfill's requests stay, so its status still counts them; live and recent work stays.
    assert!(store.run_events(b).await.unwrap().is_empty());
    assert_eq!(store.request_counts(b).await.unwrap(), [("usage".to_owned(), RequestState::Succeeded, 1)]);
    for (i, run) in [b, r, q, n].iter().enumerate() {
        assert_eq!(store.requests(Some(*run), None, None, 10).await.unwrap().len(), before[5 + 2 * i], "{run}");
    }
    assert_eq!(store.run_events(n).await.unwrap().len(), before[10]);
    assert_eq!(store.requests(Some(r), Some(RequestState::Running), None, 10).await.unwrap().len(), 1);
    assert_eq!(store.requests(Some(q), Some(RequestState::Available), None, 10).await.unwrap().len(), 1);
    // Each instigator keeps its latest tick.
    let ticks: Vec<_> = store.ticks("bill_daily", None, 10).await.unwrap().iter().map(|t| t.tick_time).collect();
    assert_eq!(ticks, [t(5_000)]);
    assert_eq!(store.ticks("only_old", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.outbox_events(t(-100_000_000), 0, 10_000).await.unwrap().len(), before[14] - delivered.len());
    assert_eq!(store.outbox_backlog().await.unwrap() as usize, before[14] - delivered.len(), "pending rows wait");

    // Lineage is kept: the runs, their materializations, the partitions' current state.
    for run in runs {
        assert!(store.run(run).await.unwrap().is_some());
    }
    assert_eq!(store.run(a).await.unwrap().unwrap().status, RunStatus::Succeeded);
    assert_eq!(store.run_materializations(a).await.unwrap().len(), 2);
    assert_eq!(store.history("bill", Some("d0"), None, 10).await.unwrap().len(), 1);
    let states = store.partition_states("usage").await.unwrap();
    let h0_state = states.iter().find(|s| s.partition_key == "h0").unwrap();
    assert_eq!(h0_state.data_version.as_deref(), Some("v1"));
    assert_eq!(states.iter().find(|s| s.partition_key == "f0").unwrap().last_attempt_status, AttemptStatus::Failed);
    // A run is still found by the asset it materialized.
    let filter = RunFilter { asset: Some("bill".into()), limit: 10, ..RunFilter::default() };
    assert_eq!(store.runs(&filter).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [a]);
    assert_eq!(store.count(Counted::Runs(&filter)).await.unwrap(), 1);

    // Once the alert is sent, F's events and the alert go too; then nothing is left to prune.
    let alert = store.alerts_pending(10).await.unwrap().remove(0);
    store.alert_delivered(alert.id, t(60), None).await.unwrap();
    let second = store.prune(cutoff, false).await.unwrap();
    assert_eq!(second, PruneReport { run_events: before[2] as u64, alerts: 1, ..PruneReport::default() });
    assert_eq!(store.prune(cutoff, false).await.unwrap().total(), 0, "a second prune removes nothing");
    assert_eq!(store.prune(cutoff, true).await.unwrap().total(), 0);
}

macro_rules! lineage_store_tests {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::sqlite().await;
                    super::$name(fixture.store()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(fixture) = super::postgres().await else { return };
                    super::$name(fixture.store()).await;
                    fixture.teardown().await;
                }
            )*
        }
    };
}

lineage_store_tests!(
    partition_runs_group_stored_partitions_by_class_in_key_order,
    every_transition_writes_its_lineage_event_with_it,
    a_run_that_fails_writes_one_alert_and_a_canceled_one_none,
    queue_depth_counts_what_waits_and_runs_by_pool_family,
    materialization_updates_current_state_and_keeps_history,
    inputs_are_recorded_exactly_in_order,
    failure_keeps_the_last_good_materialization,
    canceled_step_leaves_no_trace_in_current_state,
    run_status_transitions_are_logged,
    a_run_records_one_materialization_per_partition,
    dynamic_partitions_are_added_once_in_order,
    canceling_a_retry_of_a_failed_partition_keeps_it_failed,
    a_batch_of_materializations_is_recorded_in_order_with_its_inputs,
    a_duplicate_idempotency_key_returns_the_first_request,
    claims_are_exclusive_and_completion_is_fenced_on_the_lease,
    a_request_waits_for_its_upstream_requests,
    completing_every_upstream_in_one_batch_unblocks_the_downstream,
    an_expired_lease_is_reclaimed_and_the_late_completion_rejected,
    failures_retry_then_fail_and_fail_their_downstream,
    reopening_only_requests_whose_upstream_still_failed_ends_the_run_again,
    a_run_is_submitted_with_its_requests_or_not_at_all,
    reopening_a_cell_of_a_running_run_keeps_it_running,
    resuming_reopens_and_submits_at_once_and_ends_the_run_after_both,
    cancel_stops_waiting_requests_at_once_and_asks_running_ones,
    a_step_waiting_on_another_runs_request_follows_it,
    pool_limits_hold_across_workers,
    a_claim_passes_over_a_full_pools_requests_to_one_behind_them,
    a_pool_kept_per_dimension_limits_each_member,
    heartbeats_extend_only_the_workers_own_leases,
    a_backfill_is_stored_with_its_run_and_its_cells_reopen,
    check_results_are_stored_and_read_newest_first,
    a_run_whose_last_requests_complete_at_once_still_ends,
    a_tick_is_recorded_once_with_its_requests_and_cursor,
    a_sensors_minimum_interval_holds_across_daemons,
    staleness_follows_new_data_versions_and_stops_at_identical_bytes,
    wipe_forgets_partitions_and_makes_their_readers_stale,
    concurrent_writers_keep_staleness_counts_exact,
    a_reaped_final_attempt_fails_its_partition_and_its_run,
    a_cancel_asked_of_a_dead_worker_is_not_lost,
    a_run_whose_owner_is_gone_ends_canceled_and_nothing_of_it_runs_later,
    a_completion_that_lost_its_lease_records_no_check_results,
    a_completion_of_two_attempts_of_one_request_records_the_leased_one_only,
    a_completion_of_a_reopened_request_records_its_new_attempt_beside_an_older_higher_one,
    a_completion_batch_records_each_materialization_under_its_request,
    a_runs_and_an_assets_latest_check_verdicts_are_read_per_check,
    a_failure_after_a_cancel_was_asked_is_canceled_not_retried,
    a_partition_two_runs_materialize_is_running_only_while_one_of_them_is,
    settling_the_same_attempt_twice_at_once_settles_it_once,
    an_owner_completing_while_the_reaper_abandons_its_run_never_deadlocks,
    an_abandoned_run_with_no_requests_ends_canceled,
    an_abbreviated_id_is_found_by_its_beginning_or_its_end,
    a_steps_messages_are_recorded_with_its_attempt_and_only_by_its_lease_holder,
    prune_removes_old_finished_history_and_keeps_lineage_and_live_work,
);

#[test]
fn both_backends_have_the_same_migration_versions() {
    let versions =
        |m: &sqlx::migrate::Migrator| m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>();
    assert_eq!(versions(&crate::sqlite::MIGRATOR), versions(&crate::postgres::MIGRATOR));
    assert!(crate::sqlite::MIGRATOR.iter().next().is_some());
}

/// Incremental staleness equals staleness recomputed from scratch after any sequence of
/// materializations (new bytes, identical bytes, batches) and wipes.
mod incremental_equals_recomputed {
    use proptest::prelude::*;

    use super::*;

    /// A small graph: four hours, two days reading overlapping hours, a month reading both days.
    const NODES: [Node; 7] = [
        ("usage_snapshot", "h0", &[]),
        ("usage_snapshot", "h1", &[]),
        ("usage_snapshot", "h2", &[]),
        ("usage_snapshot", "h3", &[]),
        ("storage_bill", "d0", &[("usage_snapshot", "h0"), ("usage_snapshot", "h1")]),
        ("storage_bill", "d1", &[("usage_snapshot", "h1"), ("usage_snapshot", "h2"), ("usage_snapshot", "h3")]),
        ("credit_allocation", "m0", &[("storage_bill", "d0"), ("storage_bill", "d1")]),
    ];

    #[derive(Debug, Clone)]
    enum Op {
        /// Materialize node `.0` with data version `.1`, alone or with the next node in one batch.
        Materialize(usize, u8, bool),
        Wipe(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..NODES.len(), 0u8..3, any::<bool>()).prop_map(|(n, v, b)| Op::Materialize(n, v, b)),
            1 => (0..NODES.len()).prop_map(Op::Wipe),
        ]
    }

    /// The count from first principles: inputs of each current materialization whose upstream
    /// now has another data version or none.
    async fn recomputed(store: &dyn LineageStore) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for asset in ["usage_snapshot", "storage_bill", "credit_allocation"] {
            for s in store.partition_states(asset).await.unwrap() {
                let mut n = 0;
                if let Some(id) = s.current_materialization_id {
                    for input in store.inputs_of(id).await.unwrap() {
                        let now = store
                            .partition_states_of(&[(input.asset_key.clone(), input.partition_key.clone())])
                            .await
                            .unwrap()
                            .remove(0)
                            .and_then(|s| s.data_version);
                        n += i64::from(now.as_deref() != Some(input.data_version.as_str()));
                    }
                }
                out.push((s.asset_key, s.partition_key, n));
            }
        }
        out
    }

    async fn maintained(store: &dyn LineageStore) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for asset in ["usage_snapshot", "storage_bill", "credit_allocation"] {
            for s in store.partition_states(asset).await.unwrap() {
                out.push((s.asset_key, s.partition_key, s.stale_inputs));
            }
        }
        out
    }

    async fn new_materialization(store: &dyn LineageStore, node: usize, version: u8) -> Option<NewMaterialization> {
        let (asset, partition, reads) = NODES[node];
        let keys: Vec<(String, String)> = reads.iter().map(|(a, p)| (a.to_string(), p.to_string())).collect();
        if store
            .partition_states_of(&keys)
            .await
            .unwrap()
            .iter()
            .any(|s| s.as_ref().is_none_or(|s| s.data_version.is_none()))
        {
            return None; // an input is missing: the engine would not run it
        }
        let inputs = current_inputs(store, reads).await;
        Some(materialization(new_run(store).await, asset, partition, &format!("v{version}"), inputs))
    }

    async fn run(ops: Vec<Op>) {
        let fixture = crate::test_support::sqlite().await;
        let store = fixture.store();
        for op in ops {
            match op {
                Op::Materialize(node, version, batched) => {
                    let mut batch: Vec<NewMaterialization> =
                        new_materialization(store, node, version).await.into_iter().collect();
                    if batched && node + 1 < NODES.len() {
                        // The next node reads what is current before this batch commits.
                        batch.extend(new_materialization(store, node + 1, version).await);
                    }
                    store.record_materializations(&batch).await.unwrap();
                }
                Op::Wipe(node) => {
                    let (asset, partition, _) = NODES[node];
                    store.wipe(asset, Some(&[partition.to_owned()]), ts(5)).await.unwrap();
                }
            }
            assert_eq!(maintained(store).await, recomputed(store).await, "after {op:?}");
        }
        assert_eq!(store.repair_staleness().await.unwrap(), 0, "repair finds nothing to fix");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn after_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
        }
    }

    #[tokio::test]
    async fn repair_fixes_a_corrupted_count() {
        let fixture = crate::test_support::sqlite().await;
        let store = fixture.store();
        record_reading(store, "usage_snapshot", "h0", "a", &[]).await;
        record_reading(store, "storage_bill", "d0", "b", &[("usage_snapshot", "h0")]).await;
        let sqlite = SqliteStore::open(&fixture.path()).await.unwrap();
        sqlx::query("UPDATE asset_partitions SET stale_inputs = 7 WHERE asset_key = 'storage_bill'")
            .execute(sqlite.pool())
            .await
            .unwrap();
        assert_eq!(store.repair_staleness().await.unwrap(), 1);
        assert_eq!(stale_inputs(store, "storage_bill", "d0").await, 0);
        assert_eq!(store.repair_staleness().await.unwrap(), 0);
    }
}

/// On PostgreSQL a prune vacuums what it deleted from, so the space is reused at once instead of
/// when autovacuum gets to it (a fifth of a table dead); tables it deleted nothing from are left.
#[tokio::test]
async fn a_prune_on_postgres_vacuums_the_tables_it_deleted_from() {
    let Some(fixture) = postgres().await else { return };
    let store = fixture.store();
    let run = new_run(store).await;
    let c = claim_one(store, run, "usage", "h0", 1).await;
    store.complete_requests("w", &[completion(&c, "v1")], t(2)).await.unwrap();
    let report = store.prune(t(1_000), false).await.unwrap();
    assert!(report.run_events > 0 && report.materialization_requests == 1 && report.alerts == 0, "{report:?}");
    let mut conn = fixture.pg_connection().await;
    let vacuumed: Vec<(String, bool)> = sqlx::query_as(
        "SELECT relname::text, last_vacuum IS NOT NULL FROM pg_stat_user_tables \
         WHERE relname IN ('run_events', 'materialization_requests', 'alerts') ORDER BY relname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let expected = [("alerts", false), ("materialization_requests", true), ("run_events", true)];
    assert_eq!(vacuumed, expected.map(|(t, v)| (t.to_owned(), v)));
    drop(conn);
    fixture.teardown().await;
}

/// SQLite holds times as text, which compares as text: prune's batches are bounded by the finish
/// times as stored, not by a time decoded and encoded again (which wrote `00:00:01+00:00` for a
/// stored `00:00:01.000000000+00:00`, so each batch's last run sorted after its own bound and the
/// last batch's was never pruned).
#[tokio::test]
async fn prune_batches_on_sqlite_are_bounded_by_the_stored_text_of_finish_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lineage.db")).await.unwrap();
    for i in 0..5 {
        let run = new_run(&store).await;
        sqlx::query("UPDATE runs SET status = 'succeeded', finished_at = $2 WHERE id = $1")
            .bind(run.to_string())
            .bind(format!("2025-01-01T00:00:0{i}.000000000+00:00"))
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO run_events (run_id, ts, kind) VALUES ($1, '2025-01-01T00:00:00Z', 'run_started')")
            .bind(run.to_string())
            .execute(store.pool())
            .await
            .unwrap();
    }
    let cutoff = ts(1);
    assert_eq!(store.prune(cutoff, true).await.unwrap().run_events, 5);
    assert_eq!(store.prune(cutoff, false).await.unwrap().run_events, 5);
    assert_eq!(store.prune(cutoff, false).await.unwrap().total(), 0);
}

/// A lineage database written by the version before migration `20251208000000` (built at
/// commit 480de33: one materialized bill with its 24 hours, a submitted run with its requests
/// still queued, a finished backfill, the schedules listed) opens, migrates and reads back.
#[tokio::test]
async fn a_sqlite_store_written_by_an_earlier_version_migrates_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/lineage-20251207000000.db"), &path).unwrap();
    let store = SqliteStore::open(&path).await.expect("the old database migrates");

    let bill = store.history("storage_bill", Some("2025-12-15"), None, 10).await.unwrap();
    assert_eq!(bill.len(), 1);
    assert_eq!(store.inputs_of(bill[0].id).await.unwrap().len(), 24, "the bill read its 24 hours");
    assert_eq!(store.partition_states("usage_snapshot").await.unwrap().len(), 27);

    let requests = store.requests(None, None, None, 100).await.unwrap();
    assert_eq!(requests.len(), 53);
    let count = |t: Trigger| requests.iter().filter(|r| r.trigger == t).count();
    assert_eq!((count(Trigger::Manual), count(Trigger::Backfill)), (50, 3), "origin became trigger");
    assert_eq!(requests.iter().filter(|r| r.state == RequestState::Available).count(), 24);

    let backfills = store.backfills(None, None, 10).await.unwrap();
    assert_eq!(
        (backfills.len(), backfills[0].policy, backfills[0].status),
        (1, BackfillPolicy::Missing, RunStatus::Succeeded)
    );
    let instigators = store.instigators().await.unwrap();
    assert!(!instigators.is_empty());
    assert!(instigators.iter().all(|i| i.kind == InstigatorKind::Schedule && i.status == InstigatorStatus::Running));
}
