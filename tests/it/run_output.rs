//! Run output a Dagster user can work with (issue 16 §3, §6): ids abbreviated by their beginning
//! or their end, backfill ids unlike run ids, `runs show` sorted and summarized, step messages in
//! `runs logs`, a hint when `submit --wait` has no worker, and failures grouped.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use sqlx::ConnectOptions;

use crate::common::Robo;

const DAY: &str = "2025-12-15";

fn json(robo: &Robo, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&robo.ok(args).stdout).unwrap()
}

/// The runs, newest first, as their whole ids.
fn run_ids(robo: &Robo) -> Vec<String> {
    json(robo, &["runs", "--json"])["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_run_or_request_id_is_taken_whole_or_by_its_beginning_or_its_end() {
    let robo = Robo::new();
    robo.ok(&["materialize", "usage_snapshot", "--partition", "2025-12-15T00:00"]);
    robo.ok(&["materialize", "usage_snapshot", "--partition", "2025-12-15T01:00"]);
    let ids = run_ids(&robo);
    assert_eq!(ids.len(), 2);
    let newest = &ids[0];
    let short = &newest.replace('-', "")[24..];

    // Listings print the short form: the last 8 hex digits, the part of a UUIDv7 that differs.
    let listing = robo.ok(&["runs"]).stdout;
    let first_row = listing.lines().nth(1).unwrap();
    assert!(first_row.starts_with(&format!("{short}  succeeded")), "{listing}");
    assert!(!listing.contains(newest.as_str()), "the whole id is for --json and `runs show`: {listing}");

    // The short form, another end, a beginning and the whole id all name the run.
    for given in
        [short.to_owned(), newest[30..].to_owned(), newest[..24].to_owned(), newest.clone(), newest.to_uppercase()]
    {
        let shown = robo.ok(&["runs", "show", &given]).stdout;
        assert!(shown.starts_with(&format!("Run {newest}\n")), "{given}: {shown}");
        let logs = robo.ok(&["runs", "logs", &given]).stdout;
        assert!(logs.contains("run_succeeded"), "{given}: {logs}");
    }

    // Two runs made the same day share their first characters: ambiguous, and both are named.
    let ambiguous = robo.run(&["runs", "show", &newest[..4]]);
    assert_eq!(ambiguous.code, 2, "{}", ambiguous.stderr);
    assert!(
        ambiguous.stderr.contains("matches more than one run; give more of its characters"),
        "{}",
        ambiguous.stderr
    );
    assert!(ambiguous.stderr.contains(&ids[0]) && ambiguous.stderr.contains(&ids[1]), "{}", ambiguous.stderr);

    let unknown = robo.run(&["runs", "logs", "0000-0000-0000"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("no run matches \"0000-0000-0000\""), "{}", unknown.stderr);
    for bad in ["xyz123", "ab", "1234 5678", "12%4"] {
        let refused = robo.run(&["runs", "show", bad]);
        assert_eq!(refused.code, 2, "{bad}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("is not a run id: give the whole id or at least 4 of its hex digits"),
            "{}",
            refused.stderr
        );
    }

    // Requests: listed short, with their run's short form, and taken back the same way.
    let requests = json(&robo, &["requests", "--json"]);
    let request = requests["requests"][0]["request_id"].as_str().unwrap().to_owned();
    let request_short = &request.replace('-', "")[24..];
    let listing = robo.ok(&["requests"]).stdout;
    assert!(listing.lines().nth(1).unwrap().starts_with(request_short), "{listing}");
    let shown = robo.ok(&["requests", "show", request_short]).stdout;
    assert!(shown.starts_with(&format!("Request {request}\n")), "{shown}");
    let of_run = json(&robo, &["requests", "--run", short, "--json"]);
    assert_eq!(of_run["total"], 1, "{of_run}");
    let before = json(&robo, &["runs", "--before", short, "--json"]);
    assert_eq!(before["runs"][0]["run_id"].as_str(), Some(ids[1].as_str()));
}

#[test]
fn a_backfill_id_is_printed_unlike_its_runs_and_taken_back_short() {
    let robo = Robo::new();
    let out = robo.ok(&["backfill", "usage_snapshot", "--from", "2025-12-15T00:00", "--to", "2025-12-15T07:00"]);
    let backfills = json(&robo, &["backfill", "list", "--json"]);
    let backfill = backfills["backfills"][0]["backfill_id"].as_str().unwrap().to_owned();
    let run = backfills["backfills"][0]["run_id"].as_str().unwrap().to_owned();
    // JSON keeps bare UUIDs; text prints the backfill with `bf-`, its run without.
    assert!(out.stdout.starts_with(&format!("Backfill bf-{backfill}: 8 cells")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("run {run}")), "{}", out.stdout);
    let short = format!("bf-{}", &backfill.replace('-', "")[24..]);
    let listing = robo.ok(&["backfill", "list"]).stdout;
    assert!(listing.lines().nth(1).unwrap().starts_with(&format!("{short}  succeeded")), "{listing}");
    for given in [short.clone(), short[3..].to_owned(), format!("bf-{}", &backfill[..20]), backfill.clone()] {
        let status = robo.ok(&["backfill", "status", &given]).stdout;
        assert!(status.starts_with(&format!("Backfill bf-{backfill}: usage_snapshot")), "{given}: {status}");
    }
    // A backfill id where a run id is expected says what it is.
    let refused = robo.run(&["runs", "show", &short]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("is a backfill id, not a run id"), "{}", refused.stderr);

    // `runs show` of the backfill's run: sorted by asset, a range per asset, not a line per cell.
    let shown = robo.ok(&["runs", "show", &run]).stdout;
    let section: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("Materializations (8):"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(section, ["  usage_snapshot       8 materialized  2025-12-15T00:00..2025-12-15T07:00 (8)"], "{shown}");
    let detail = json(&robo, &["runs", "show", &run, "--json"]);
    assert_eq!(detail["materializations"].as_array().unwrap().len(), 8, "--json keeps every row");
}

#[test]
fn runs_show_lists_few_materializations_one_by_one_in_partition_order() {
    let robo = Robo::new();
    robo.ok(&["materialize", "usage_snapshot", "--from", "2025-12-15T00:00", "--to", "2025-12-15T02:00"]);
    let run = &run_ids(&robo)[0];
    let shown = robo.ok(&["runs", "show", run]).stdout;
    let rows: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("Materializations (3):"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 3, "{shown}");
    for (row, hour) in rows.iter().zip(["00:00", "01:00", "02:00"]) {
        assert!(row.starts_with(&format!("  usage_snapshot 2025-12-15T{hour}")), "{shown}");
    }
}

#[test]
fn what_a_step_logs_is_in_its_runs_event_log_and_filtered_by_asset() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "--partition", DAY, "--with-upstream"]);
    let run = &run_ids(&robo)[0];
    let bill = robo.ok(&["runs", "logs", run, "--asset", "storage_bill"]).stdout;
    let messages: Vec<&str> = bill.lines().filter(|l| l.contains("step_message")).collect();
    assert_eq!(messages.len(), 1, "{bill}");
    assert!(
        messages[0].contains("storage_bill 2025-12-15")
            && messages[0].contains("info: billed 3 tenants for 24 hours: 159.750 credits"),
        "{bill}"
    );
    assert!(!bill.contains("usage_snapshot"), "only the asset's events: {bill}");
    assert!(bill.contains("step_succeeded"), "{bill}");

    let all = json(&robo, &["runs", "logs", run, "--json"]);
    let messages: Vec<&serde_json::Value> =
        all.as_array().unwrap().iter().filter(|e| e["kind"] == "step_message").collect();
    assert_eq!(messages.len(), 25, "a line per snapshot hour and the bill's");
    assert!(messages.iter().all(|e| e["body"]["level"] == "info"), "{messages:?}");
    let hour = messages.iter().find(|e| e["asset"] == "usage_snapshot").unwrap();
    assert!(hour["message"].as_str().unwrap().contains(" graphs measured: "), "{hour}");
    // A step's messages come before the event that ends it.
    let events = all.as_array().unwrap();
    let message_at = events.iter().position(|e| e["kind"] == "step_message" && e["asset"] == "storage_bill").unwrap();
    let done_at = events.iter().position(|e| e["kind"] == "step_succeeded" && e["asset"] == "storage_bill").unwrap();
    assert!(message_at < done_at);

    let unknown = robo.run(&["runs", "logs", run, "--asset", "nope"]);
    assert_eq!(unknown.code, 2);
}

#[test]
fn submit_wait_without_a_worker_says_how_to_start_one() {
    let robo = Robo::new();
    let mut child = robo
        .command(&["submit", "usage_snapshot", "--partition", "2025-12-15T00:00", "--wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // A guard, not an assertion on time: a hint that never comes ends the process, and the test
    // fails on the missing line.
    let guard = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    });
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let hint = line.contains("No worker has claimed any of these requests");
        seen.push(line);
        if hint {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(guard);
    let hint = seen.last().unwrap();
    assert!(hint.contains("Start one with `robo-assets worker`"), "{seen:?}");
    assert_eq!(seen.iter().filter(|l| l.contains("No worker")).count(), 1, "{seen:?}");
    // Still waiting: the run is queued, and a worker started now carries it out.
    let runs = json(&robo, &["runs", "--json"]);
    assert_eq!(runs["runs"][0]["status"], "queued");
}

#[tokio::test]
async fn cells_that_fail_alike_are_reported_once_with_their_count() {
    let robo = Robo::new();
    robo.ok(&["materialize", "usage_snapshot", "--partition", "2025-12-14T00:00"]);
    // The app database loses its graphs table: every hour fails with the same error.
    let mut db =
        sqlx::sqlite::SqliteConnectOptions::new().filename(robo.home().join("app.db")).connect().await.unwrap();
    sqlx::query("ALTER TABLE graphs RENAME TO graphs_gone").execute(&mut db).await.unwrap();
    drop(db);
    let out = robo.run_with(
        &["backfill", "usage_snapshot", "--from", "2025-12-15T00:00", "--to", "2025-12-15T05:00"],
        &[("RUST_LOG", "info")],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    // The status groups them too: one line with the count and the partitions.
    assert!(out.stdout.contains("Failed cells (6):"), "{}", out.stdout);
    assert!(out.stdout.contains("  ✗ 6 × usage_snapshot failed after 3 attempts: "), "{}", out.stdout);
    assert!(out.stdout.contains("      2025-12-15T00:00..2025-12-15T05:00 (6)"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("app database query failed").count(), 1, "{}", out.stdout);
}
