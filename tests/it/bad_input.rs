//! Issue 14's bad-input suite: every command and every environment variable, given something
//! wrong, exits 2 with a message that says what was wrong and what is valid, and leaves the
//! stores and the home directory exactly as they were (a dump of every table of the lineage
//! store and the app database, and every file's bytes, compared before and after each case).

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::{Connection, Row};

use crate::common::Robo;

/// One bad invocation: its arguments, extra environment, and a part of the message it must print.
struct Case {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    says: String,
}

fn case(args: &[&str], says: &str) -> Case {
    Case { args: args.iter().map(ToString::to_string).collect(), env: Vec::new(), says: says.to_owned() }
}

fn with_env(args: &[&str], env: &[(&'static str, &str)], says: &str) -> Case {
    Case { env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(), ..case(args, says) }
}

const HOUR: &str = "2025-12-15T05:00";

fn cases(file: &str) -> Vec<Case> {
    let huge = "k".repeat(100_000);
    let long_key = "p".repeat(300);
    let mut cases = vec![
        // materialize
        case(&["materialize", "nope"], "unknown asset \"nope\""),
        case(&["materialize", "storage_bill"], "give a partition key"),
        case(&["materialize", "storage_bill", "-p", "2025-13-01"], "expected YYYY-MM-DD"),
        case(&["materialize", "storage_bill", "-p", "2030-01-01"], "valid range is"),
        case(&["materialize", "storage_bill", "-p", "2024-12-31"], "before the first partition"),
        case(&["materialize", "usage_snapshot", "-p", "2025-12-15T05:30"], "expected"),
        case(&["materialize", "usage_snapshot", "--from", "2025-12-15T06:00", "--to", HOUR], "is reversed"),
        case(&["materialize", "storage_bill", "--from", "2025-12-16", "--to", "2025-12-15"], "is reversed"),
        case(&["materialize", "usage_snapshot", "-p", HOUR, "--concurrency", "0"], "0 is not in 1..=256"),
        case(&["materialize", "usage_snapshot", "-p", HOUR, "--concurrency=-1"], "-1 is not in 1..=256"),
        case(&["materialize", "usage_snapshot", "--from", HOUR], "--to"),
        case(&["materialize", "usage_snapshot", "-p", HOUR, "--from", HOUR, "--to", HOUR], "cannot be used with"),
        case(&["materialize", "usage_snapshot", "-p", HOUR, "--dim", "realm"], "is not NAME=KEY"),
        case(&["materialize", "usage_snapshot", "-p", HOUR, "--stale", "--with-upstream"], "cannot be used with"),
        case(&["materialize", "group:nope"], "group"),
        case(&["materialize", ""], "selection"),
        case(&["materialize", &huge], "is too long: at most 4096 characters"),
        case(&["history", &huge], "is too long: at most 255 characters"),
        // submit
        case(&["submit", "nope", "-p", HOUR], "unknown asset \"nope\""),
        case(&["submit", "usage_snapshot", "-p", HOUR, "--key", ""], "1 to 255 characters"),
        case(&["submit", "usage_snapshot", "-p", HOUR, "--key", &huge], "1 to 255 characters"),
        case(&["submit", "usage_snapshot", "-p", HOUR, "--key", "a\nb"], "no control characters"),
        case(&["submit", "usage_snapshot", "-p", "2025-12-15T06:00", "--key", "K"], "a key names one selection"),
        case(&["submit", "usage_snapshot", "--from", "2025-12-15T06:00", "--to", HOUR], "is reversed"),
        case(&["submit", "usage_snapshot", "-p", "not-a-key"], "expected"),
        // status, history, checks, why, lineage, wipe
        case(&["status", "nope"], "unknown asset \"nope\""),
        case(&["status", "usage_snapshot", "-p", "2025-99-99T00:00"], "expected"),
        case(&["history", "nope"], "unknown asset \"nope\""),
        case(&["history", "usage_snapshot", "--limit", "0"], "1..=100000"),
        case(&["history", "usage_snapshot", "--limit=-1"], "1..=100000"),
        case(&["history", "usage_snapshot", "--limit", "100001"], "1..=100000"),
        case(&["history", "usage_snapshot", "--before", "x"], "invalid digit"),
        case(&["checks", "nope"], "unknown asset \"nope\""),
        case(&["checks", "credit_health", "--limit", "0"], "1..=100000"),
        case(&["checks", "credit_health", "--limit=-1"], "1..=100000"),
        case(&["why", "nope"], "unknown asset \"nope\""),
        case(&["why", "storage_bill", "--limit", "0"], "1..=100000"),
        case(&["why", "storage_bill", "--limit=-5"], "1..=100000"),
        case(&["why", "storage_bill", "-p", "yesterday"], "expected YYYY-MM-DD"),
        case(&["lineage", "nope"], "unknown asset \"nope\""),
        case(&["lineage", "storage_bill", "--format", "png"], "possible values"),
        case(&["lineage", "storage_bill", "--upstream=-1"], "invalid digit"),
        case(&["lineage", "storage_bill", "--impact"], "--partition"),
        case(&["lineage", "export"], "--openlineage"),
        case(&["lineage", "export", "--openlineage", "--since", "yesterday"], "RFC 3339"),
        case(&["lineage", "export", "--openlineage", "--since=-5d"], "a duration ago"),
        case(&["wipe", "nope", "-p", "2025-12-15"], "unknown asset \"nope\""),
        case(&["wipe", "storage_bill", "-p", "2025-12-15"], "--yes"),
        case(&["wipe", "storage_bill", "-p", "2025-13-15", "--yes"], "expected YYYY-MM-DD"),
        // prune
        case(&["prune"], "--older-than <AGE>"),
        case(&["prune", "--older-than", "30"], "is not an age: use a whole number of days or hours"),
        case(&["prune", "--older-than", "0d"], "at least 1, like 30d, 7d or 12h"),
        case(&["prune", "--older-than", "2w", "--dry-run"], "is not an age"),
        case(&["prune", "--older-than", "30m"], "is not an age"),
        case(&["prune", "--older-than=-7d"], "is not an age"),
        // runs, requests
        case(&["runs", "show", "not-a-run"], "is not a run id"),
        case(&["runs", "logs", "not-a-run"], "is not a run id"),
        case(&["runs", "--limit", "0"], "1..=100000"),
        case(&["runs", "--status", "exploded"], "queued, running, succeeded, failed, canceled"),
        case(&["runs", "--trigger", "nope"], "manual"),
        case(&["runs", "--since", "yesterday"], "2026-01-01"),
        case(&["runs", "--before", "nope"], "run id"),
        case(&["requests", "--limit", "0"], "1..=100000"),
        case(&["requests", "--limit=-1"], "1..=100000"),
        case(&["requests", "--state", "nope"], "available"),
        case(&["requests", "--run", "nope"], "run id"),
        case(&["requests", "show", "nope"], "request id"),
        case(&["requests", "cancel", "nope"], "request id"),
        // pools
        case(&["pools", "set", "", "4"], "no asset declares a pool named \"\""),
        case(&["pools", "set", "nope_pool", "4"], "declared pools: graph_api"),
        case(&["pools", "set", "graph_api", "0"], "1..=100000"),
        case(&["pools", "set", "graph_api", "--", "-4"], "1..=100000"),
        case(&["pools", "set", "graph_api", "many"], "invalid digit"),
        case(&["pools", "set", &huge, "4"], "(100000 characters"),
        // backfill
        case(&["backfill", "usage_snapshot", "--from", "2025-12-15T06:00", "--to", HOUR], "is reversed"),
        case(&["backfill", "storage_bill", "--from", "2025-12-16", "--to", "2025-12-15", "--dry-run"], "is reversed"),
        case(&["backfill", "nope", "--from", "2025-12-15", "--to", "2025-12-16"], "unknown asset \"nope\""),
        case(&["backfill", "storage_bill", "--from", "2025-12-15"], "--to"),
        case(
            &["backfill", "storage_bill", "--from", "2025-12-15", "--to", "2025-12-16", "--policy", "some"],
            "possible values",
        ),
        case(
            &["backfill", "storage_bill", "--from", "2025-12-15", "--to", "2025-12-16", "--concurrency", "0"],
            "1..=256",
        ),
        case(&["backfill", "list", "--limit", "0"], "1..=100000"),
        case(&["backfill", "list", "--limit=-1"], "1..=100000"),
        case(&["backfill", "list", "--before", "nope"], "backfill id"),
        case(&["backfill", "status", "nope"], "backfill id"),
        case(&["backfill", "cancel", "nope"], "backfill id"),
        case(&["backfill", "resume", "nope"], "backfill id"),
        case(&["backfill", "retry-failed", "nope"], "backfill id"),
        // partitions
        case(&["partitions", "list", "nope"], "subscriptions"),
        case(&["partitions", "add", "nope", "a"], "subscriptions"),
        case(&["partitions", "add", "subscriptions", "a\nb"], "control character"),
        case(&["partitions", "add", "subscriptions", "a\tb"], "control character"),
        case(&["partitions", "add", "subscriptions", "a/b"], "'/' or '..'"),
        case(&["partitions", "add", "subscriptions", ".."], "'/' or '..'"),
        case(&["partitions", "add", "subscriptions", ""], "it is empty"),
        case(&["partitions", "add", "subscriptions", &long_key], "at most 255"),
        case(&["partitions", "add", "subscriptions", &huge], "100000 characters; at most 255"),
        case(&["partitions", "add", "subscriptions"], "<KEYS>"),
        // schedules, sensors, ticks, simulate
        case(&["schedules", "stop", "nope"], "known:"),
        case(&["schedules", "start", "nope"], "known:"),
        case(&["schedules", "stop", &huge], "(100000 characters)"),
        case(&["sensors", "cursor", "nope"], "known:"),
        case(&["sensors", "stop", "storage_bill_daily"], "known:"),
        case(&["sensors", "start", "nope"], "known:"),
        case(&["sensors", "cursor", "pending_subscription_sensor", "--set", &huge], "at most 65536 bytes"),
        case(&["sensors", "cursor", "pending_subscription_sensor", "--set", "x", "--clear"], "cannot be used with"),
        case(&["ticks", "nope"], "known:"),
        case(&["ticks", "storage_bill_daily", "--limit", "0"], "1..=100000"),
        case(&["ticks", "storage_bill_daily", "--limit=-1"], "1..=100000"),
        case(&["simulate", "--from", "yesterday", "--to", "2026-01-15"], "RFC 3339"),
        case(&["simulate", "--from", "2026-01-15", "--to", "2026-01-01"], "after"),
        // daemon, worker, dev, ui
        case(&["daemon", "--interval-secs", "0"], "1..=3600"),
        case(&["daemon", "--concurrency", "0"], "1..=256"),
        case(&["worker", "--concurrency", "0"], "1..=256"),
        case(&["worker", "--lease-secs", "1"], "3..=3600"),
        case(&["dev", "--interval-secs", "0"], "1..=3600"),
        case(&["ui", "--bind", "localhost"], "invalid socket address"),
        // qbo, plaid
        case(&["qbo", "connect"], "<realm>"),
        case(&["plaid", "link"], "<ITEM"),
        // the CLI itself
        case(&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        case(&["list", "--log-format", "xml"], "possible values: text, json"),
        // environment variables
        with_env(&["status"], &[("ROBO_ASSETS_HOME", file)], "is a file; it must be a directory"),
        with_env(&["status"], &[("ROBO_ASSETS_LINEAGE_URL", "sqlite://")], "sqlite:// names no file"),
        with_env(&["status"], &[("ROBO_ASSETS_LINEAGE_URL", "mysql://u@h/db")], "use sqlite://PATH or postgres://"),
        with_env(&["status"], &[("ROBO_ASSETS_NOW", "tomorrow")], "is not an RFC 3339 time"),
        with_env(&["status"], &[("S3_BUCKET_NAME", "Bad_Bucket!")], "is not a bucket name"),
        with_env(&["status"], &[("S3_BUCKET_NAME", "ab")], "is not a bucket name"),
        with_env(&["status"], &[("S3_BUCKET_NAME", "192.168.1.1")], "is not a bucket name"),
        with_env(
            &["status"],
            &[("S3_BUCKET_NAME", "outputs"), ("AWS_ENDPOINT_URL", "not-a-url")],
            "is not an endpoint URL",
        ),
        with_env(&["status"], &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")], "S3_BUCKET_NAME is not"),
        // The password never shown, whichever way the URL is wrong.
        with_env(&["daemon", "--once"], &[("OPENLINEAGE_URL", "ftp://u:hunter2@x")], "ftp://u:***@x is not an http://"),
        with_env(
            &["status"],
            &[("OPENLINEAGE_URL", "http://u:hunter2@")],
            "OPENLINEAGE_URL=http://u:***@ is not a URL",
        ),
        // A webhook's path and query are secrets too: only its origin is shown.
        with_env(
            &["daemon", "--once"],
            &[("ROBO_ASSETS_ALERT_WEBHOOK", "ftp://u:hunter2@x/hooks/hunter2?k=hunter2")],
            "ROBO_ASSETS_ALERT_WEBHOOK=ftp://x/… is not an http:// or https:// URL with a host",
        ),
        with_env(
            &["status"],
            &[("ROBO_ASSETS_ALERT_WEBHOOK", "hooks.example.com/hunter2")],
            "ROBO_ASSETS_ALERT_WEBHOOK=(not a URL) is not a URL",
        ),
        with_env(&["status"], &[("ROBO_ASSETS_UI_URL", "assets.example.com")], "ROBO_ASSETS_UI_URL=assets.example.com"),
        with_env(
            &["daemon", "--once"],
            &[("ROBO_ASSETS_RETENTION", "forever")],
            "ROBO_ASSETS_RETENTION=\"forever\" is not an age",
        ),
        with_env(&["status"], &[("ROBO_ASSETS_RETENTION", "0h")], "like 30d, 7d or 12h"),
        with_env(&["status"], &[("SEC_API_URL", "http://127.0.0.1:1")], "SEC_USER_AGENT is not set"),
        with_env(
            &["status"],
            &[("SEC_API_URL", "http://127.0.0.1:1"), ("SEC_USER_AGENT", "   ")],
            "SEC_USER_AGENT is not set",
        ),
        with_env(
            &["status"],
            &[("SEC_API_URL", "http://127.0.0.1:1"), ("SEC_USER_AGENT", "robo")],
            "declares no contact",
        ),
        with_env(&["status"], &[("SEC_RATE_LIMIT", "fast")], "SEC_RATE_LIMIT=\"fast\""),
        with_env(&["status"], &[("SEC_RATE_LIMIT", "0")], "at most 10"),
        with_env(&["status"], &[("SEC_RATE_LIMIT", "11")], "at most 10"),
        with_env(&["status"], &[("SEC_COOL_DOWN_SECS", "-3")], "SEC_COOL_DOWN_SECS=\"-3\""),
        with_env(&["status"], &[("SEC_COOL_DOWN_SECS", "soon")], "whole number of seconds"),
        with_env(&["status"], &[("GRAPH_API_TIMEOUT_MS", "0")], "GRAPH_API_TIMEOUT_MS"),
        with_env(&["status"], &[("GRAPH_API_TIMEOUT_MS", "slow")], "GRAPH_API_TIMEOUT_MS"),
        with_env(&["status"], &[("ROBO_ASSETS_DEV_LATENCY_MS", "x")], "ROBO_ASSETS_DEV_LATENCY_MS"),
        with_env(&["status"], &[("ROBO_ASSETS_FAILPOINT", "worker.nope")], "names no crash point"),
        with_env(&["status"], &[("ROBO_ASSETS_FAILPOINT", "worker.after_complete:0")], "at least 1"),
        with_env(&["status"], &[("ROBO_ASSETS_FAILPOINT", "worker.after_complete:x")], "at least 1"),
        with_env(&["status"], &[("QBO_REQUESTS_PER_SECOND", "lots")], "QBO_REQUESTS_PER_SECOND"),
        with_env(&["status"], &[("QBO_THROTTLE_WAIT_SECS", "-1")], "QBO_THROTTLE_WAIT_SECS"),
        with_env(&["status"], &[("GRAPH_API_URL", "ftp://x")], "GRAPH_API_URL"),
        with_env(&["status"], &[("PLAID_API_URL", "not-a-url")], "PLAID"),
        with_env(&["status"], &[("DATABASE_URL", "mysql://u@h/db")], "DATABASE_URL"),
    ];
    cases.retain(|c| !c.args.is_empty());
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_exits_2_says_what_is_valid_and_changes_nothing() {
    let robo = Robo::new();
    // Stores with something in them: the demo app data, a keyed submission, a dynamic partition.
    robo.ok(&["demo", "seed"]);
    robo.ok(&["submit", "usage_snapshot", "-p", HOUR, "--key", "K"]);
    robo.ok(&["partitions", "add", "subscriptions", "sub_existing"]);
    let file = robo.dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let cases = cases(&file.display().to_string());
    assert!(cases.len() >= 80, "{} cases", cases.len());

    let before = dump(&robo.home()).await;
    let mut failures = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = robo.run_with(&args, &env);
        let shown = format!(
            "{:?} {:?}",
            clip(&args.join(" ")),
            env.iter().map(|(k, v)| format!("{k}={}", clip(v))).collect::<Vec<_>>()
        );
        if run.code != 2 {
            failures.push(format!("{shown}: exit {} (want 2): {}", run.code, clip(&run.stderr)));
        } else if !run.stderr.contains(&c.says) {
            failures.push(format!("{shown}: stderr lacks {:?}: {}", c.says, clip(&run.stderr)));
        } else if run.stderr.len() > 3_000 {
            failures.push(format!("{shown}: the error echoes the whole argument ({} bytes)", run.stderr.len()));
        }
        let after = dump(&robo.home()).await;
        if after != before {
            failures.push(format!("{shown}: changed {}", diff(&before, &after)));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn clip(s: &str) -> String {
    if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s.to_owned() }
}

/// What bad input must not change: every row of every table of each SQLite database under
/// `home`, in a stable order, and every other file's bytes (or, over 1 MiB, length and time) (SQLite's -wal/-shm/-journal files
/// are left out: opening a database may create them without changing what it holds).
async fn dump(home: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(home).unwrap().display().to_string();
            if path.is_dir() {
                out.insert(format!("{name}/"), String::new());
                stack.push(path);
            } else if name.ends_with(".db") {
                for (table, rows) in tables(&path).await {
                    out.insert(format!("{name}:{table}"), rows);
                }
            } else if !(name.ends_with("-wal") || name.ends_with("-shm") || name.ends_with("-journal")) {
                // The demo's graph folders hold sparse files of many GB: those are compared by
                // length and modification time, the others by their bytes.
                let meta = std::fs::metadata(&path).unwrap();
                let content = if meta.len() > 1 << 20 {
                    format!("{} bytes, modified {:?}", meta.len(), meta.modified().unwrap())
                } else {
                    format!("{:?}", std::fs::read(&path).unwrap())
                };
                out.insert(name, content);
            }
        }
    }
    out
}

/// Every table's rows, each row as SQLite's `quote()` of its columns, sorted.
async fn tables(path: &Path) -> Vec<(String, String)> {
    let mut conn = crate::common::connect(path).await;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for table in names {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{table}\""))).fetch_all(&mut conn).await.unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<i64>, _>(i)
                            .map(|v| format!("{v:?}"))
                            .or_else(|_| row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| row.try_get::<Option<String>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| row.try_get::<Option<Vec<u8>>, _>(i).map(|v| format!("{v:?}")))
                            .unwrap_or_else(|e| format!("<{e}>"))
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        out.push((table, lines.join("\n")));
    }
    conn.close().await.unwrap();
    out
}

fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter().filter(|k| before.get(*k) != after.get(*k)).map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// The cases that reach the lineage store, on PostgreSQL: the same exit 2 and message, and
/// every table unchanged (negative `--limit`s were a raw database error, exit 1, there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_postgres_exits_2_and_changes_nothing() {
    let Some(db) = crate::postgres::TestDb::create().await else { return };
    let robo = Robo::new();
    let env = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    for args in [
        vec!["submit", "usage_snapshot", "-p", HOUR, "--key", "K"],
        vec!["partitions", "add", "subscriptions", "sub_existing"],
    ] {
        let run = robo.run_with(&args, &env);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    let cases = [
        case(&["ticks", "storage_bill_daily", "--limit=-1"], "1..=100000"),
        case(&["backfill", "list", "--limit=-1"], "1..=100000"),
        case(&["why", "storage_bill", "--limit=-1"], "1..=100000"),
        case(&["checks", "credit_health", "--limit=-1"], "1..=100000"),
        case(&["history", "usage_snapshot", "--limit", "0"], "1..=100000"),
        case(&["runs", "--limit=-1"], "1..=100000"),
        case(&["requests", "--limit=-1"], "1..=100000"),
        case(&["pools", "set", "", "4"], "no asset declares a pool named \"\""),
        case(&["pools", "set", "nope_pool", "4"], "declared pools: graph_api"),
        case(&["schedules", "stop", "nope"], "known:"),
        case(&["schedules", "start", "nope"], "known:"),
        case(&["sensors", "cursor", "nope"], "known:"),
        case(&["sensors", "stop", "storage_bill_daily"], "known:"),
        case(&["partitions", "add", "subscriptions", "a\nb"], "control character"),
        case(&["submit", "usage_snapshot", "-p", HOUR, "--key", ""], "1 to 255 characters"),
        case(&["submit", "usage_snapshot", "-p", "2025-12-15T06:00", "--key", "K"], "a key names one selection"),
        case(&["backfill", "usage_snapshot", "--from", "2025-12-15T06:00", "--to", HOUR], "is reversed"),
        case(&["backfill", "status", "nope"], "backfill id"),
        case(&["runs", "show", "not-a-run"], "is not a run id"),
    ];
    let mut conn = db.connect().await;
    let before = pg_dump(&mut conn).await;
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let run = robo.run_with(&args, &env);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(&c.says), "{args:?}: expected {:?} in {}", c.says, run.stderr);
        assert_eq!(pg_dump(&mut conn).await, before, "{args:?} changed the store");
    }
    drop(conn);
    db.drop_db().await;
}

/// Every row of every table in the `public` schema, as JSON, sorted.
async fn pg_dump(conn: &mut sqlx::PgConnection) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let mut rows: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT to_jsonb(t)::text FROM \"{table}\" t")))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        rows.sort();
        out.insert(table, rows);
    }
    out
}
