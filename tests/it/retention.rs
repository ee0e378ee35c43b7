//! Retention (issue 17): `prune` deletes finished history older than an age and never lineage;
//! every reader still answers on a pruned store; the daemon prunes at most once an hour.

use crate::common::Robo;
use crate::robo_snapshot;

const DAY: &str = "2025-12-15";

/// Far enough ahead that everything the tests ran finished more than 30 days before it.
const LATER: &str = "2099-01-01T00:00:00Z";

/// Rows per table of the lineage store, for the tables retention touches and lineage's.
async fn rows(robo: &Robo) -> Vec<(&'static str, i64)> {
    let mut db = robo.lineage_db().await;
    let mut out = Vec::new();
    for table in [
        "run_events",
        "materialization_requests",
        "request_edges",
        "ticks",
        "openlineage_outbox",
        "alerts",
        "runs",
        "materializations",
        "materialization_inputs",
        "asset_partitions",
        "backfills",
    ] {
        let sql = format!("SELECT count(*) FROM {table}");
        out.push((table, sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut db).await.unwrap()));
    }
    out
}

fn count(rows: &[(&str, i64)], table: &str) -> i64 {
    rows.iter().find(|(t, _)| *t == table).unwrap().1
}

/// The (table, rows) lines of `prune`'s output.
fn table(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip(2)
        .map(|l| {
            let mut words = l.split_whitespace();
            (words.next().unwrap().to_owned(), words.next().unwrap().to_owned())
        })
        .collect()
}

/// Requests of the runs `materialize` started (a daemon's ticks add their own).
async fn manual_requests(robo: &Robo) -> i64 {
    let mut db = robo.lineage_db().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM materialization_requests WHERE run_id IN (SELECT id FROM runs WHERE trigger = 'manual')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
}

#[tokio::test]
async fn prune_deletes_old_finished_history_and_every_reader_still_answers() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let backfill = robo.ok(&["backfill", "+storage_bill", "--from", "2025-12-14", "--to", "2025-12-14"]);
    let backfill_id = backfill.stdout.lines().find(|l| l.starts_with("Backfill ")).unwrap();
    let backfill_id = backfill_id.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_owned();
    let runs: serde_json::Value = serde_json::from_str(&robo.ok(&["runs", "--json"]).stdout).unwrap();
    let manual = runs["runs"].as_array().unwrap().iter().find(|r| r["trigger"] == "manual").unwrap();
    let manual = manual["run_id"].as_str().unwrap().to_owned();
    let before = rows(&robo).await;
    assert_eq!(count(&before, "materialization_requests"), 50);
    assert_eq!(count(&before, "request_edges"), 48);

    // A dry run counts and deletes nothing.
    let later = [("ROBO_ASSETS_NOW", LATER)];
    let dry = robo.run_with(&["prune", "--older-than", "30d", "--dry-run"], &later);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stderr.contains("Dry run: nothing was deleted."), "{}", dry.stderr);
    robo_snapshot!(robo, "prune_dry_run", dry.stdout);
    assert_eq!(rows(&robo).await, before);

    // Not old enough at the pinned test time: nothing goes.
    let recent = robo.ok(&["prune", "--older-than", "30d", "--json"]);
    let recent: serde_json::Value = serde_json::from_str(&recent.stdout).unwrap();
    assert_eq!(recent["total"], 0);
    assert_eq!(rows(&robo).await, before);

    let pruned = robo.run_with(&["prune", "--older-than", "30d"], &later);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    robo_snapshot!(robo, "prune", pruned.stdout);
    assert_eq!(table(&pruned.stdout), table(&dry.stdout), "the dry run counted what the prune removed");

    // The manual run's events, requests and edges are gone; the backfill's requests and edges,
    // and all of lineage, stay.
    let after = rows(&robo).await;
    let mut db = robo.lineage_db().await;
    let manual_events: i64 = sqlx::query_scalar("SELECT count(*) FROM run_events WHERE run_id = $1")
        .bind(&manual)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(manual_events, 0);
    assert_eq!(count(&after, "materialization_requests"), 25, "the backfill's");
    assert_eq!(count(&after, "request_edges"), 24, "the backfill's");
    for table in ["runs", "materializations", "materialization_inputs", "asset_partitions", "backfills"] {
        assert_eq!(count(&after, table), count(&before, table), "{table} is lineage");
    }
    assert_eq!(count(&after, "materializations"), 50);

    // Every reader answers: the run without its event log, the backfill with its progress.
    let show = robo.ok(&["runs", "show", &manual]);
    assert!(show.stdout.contains("Materializations (25):"), "{}", show.stdout);
    assert!(!show.stdout.contains("step_succeeded"), "{}", show.stdout);
    let status = robo.ok(&["backfill", "status", &backfill_id]);
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    let by_asset: serde_json::Value =
        serde_json::from_str(&robo.ok(&["runs", "--asset", "storage_bill", "--json"]).stdout).unwrap();
    assert_eq!(by_asset["runs"].as_array().unwrap().len(), 2, "a pruned run is found by what it materialized");
    let history: serde_json::Value =
        serde_json::from_str(&robo.ok(&["history", "storage_bill", "--json"]).stdout).unwrap();
    assert_eq!(history["total"], 2);
    let lineage = robo.ok(&["lineage", "storage_bill", "--partition", DAY]);
    assert!(lineage.stdout.contains("usage_snapshot"), "{}", lineage.stdout);
    robo.ok(&["why", "storage_bill", "-p", DAY]);
    robo.ok(&["status", "storage_bill"]);
    robo.ok(&["runs", "logs", &manual]);
    // The web view's run page draws its timeline from the materializations.
    let ui = crate::web::Ui::start(&robo, &["ui", "--bind", "127.0.0.1:0"]);
    let page = ui.get(&format!("/runs/{manual}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("The event log was pruned"), "{}", page.body);
    assert_eq!(page.body.matches("gantt-bar succeeded").count(), 25, "{}", page.body);
    drop(ui);

    // A second prune finds nothing left.
    let again = robo.run_with(&["prune", "--older-than", "30d", "--json"], &later);
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!((again["total"].as_u64(), again["dry_run"].as_bool()), (Some(0), Some(false)));
    assert_eq!(rows(&robo).await, after);
}

#[tokio::test]
async fn the_daemon_prunes_when_retention_is_set_at_most_once_an_hour() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let before = rows(&robo).await;

    // Unset: the daemon prunes nothing.
    let off = robo.run_with(&["daemon", "--once", "--no-worker"], &[("ROBO_ASSETS_NOW", LATER)]);
    assert_eq!(off.code, 0, "{}", off.stderr);
    assert!(!off.stdout.contains("retention"), "{}", off.stdout);
    assert_eq!(manual_requests(&robo).await, 25);

    let env = [("ROBO_ASSETS_NOW", LATER), ("ROBO_ASSETS_RETENTION", "7d")];
    let first = robo.run_with(&["daemon", "--once", "--no-worker"], &env);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.contains("retention: "), "{}", first.stdout);
    let after = rows(&robo).await;
    assert_eq!(manual_requests(&robo).await, 0);
    assert_eq!(count(&after, "materializations"), count(&before, "materializations"));

    // Another daemon (another process) within the hour: not due.
    robo.ok(&["materialize", "usage_snapshot", "--partition", "2025-12-16T00:00"]);
    let within = robo.run_with(
        &["daemon", "--once", "--no-worker"],
        &[("ROBO_ASSETS_NOW", "2099-01-01T00:59:00Z"), ("ROBO_ASSETS_RETENTION", "7d")],
    );
    assert!(within.stdout.contains("retention: not due"), "{}", within.stdout);
    assert_eq!(manual_requests(&robo).await, 1);
    // An hour on, it is.
    let next = robo.run_with(
        &["daemon", "--once", "--no-worker"],
        &[("ROBO_ASSETS_NOW", "2099-01-01T01:00:01Z"), ("ROBO_ASSETS_RETENTION", "7d")],
    );
    assert!(next.stdout.contains("retention: "), "{}", next.stdout);
    assert!(!next.stdout.contains("not due"), "{}", next.stdout);
    assert_eq!(manual_requests(&robo).await, 0);
}
