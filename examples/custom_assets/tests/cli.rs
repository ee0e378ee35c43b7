//! The custom project through the whole CLI, from its own binary: materialize, backfill,
//! status, lineage and why, with the revenue checked against a calculation made here from the
//! CSV it ships.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/events.csv");

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A fresh home and a copy of the events file (so a test can change an hour's events).
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(SHIPPED, dir.path().join("events.csv")).unwrap();
        Project { dir }
    }

    fn events(&self) -> PathBuf {
        self.dir.path().join("events.csv")
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_custom-assets"))
            .args(args)
            .env("ROBO_ASSETS_HOME", self.dir.path().join("home"))
            .env("ROBO_ASSETS_NOW", "2025-12-04T12:00:00Z")
            .env("CUSTOM_ASSETS_EVENTS", self.events())
            .env_remove("ROBO_ASSETS_LINEAGE_URL")
            .env_remove("S3_BUCKET_NAME")
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(code, 0, "custom-assets {args:?}:\n{stdout}\n{stderr}");
        stdout
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

/// A day's (events, gross cents, tax cents) computed here from the CSV: tax is 20 % of each
/// kind's gross, rounded half away from zero, then summed.
fn expected(events: &Path, day: &str) -> (i64, i64, i64) {
    let text = std::fs::read_to_string(events).unwrap();
    let mut by_kind: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| l.starts_with(day)) {
        let f: Vec<&str> = line.split(',').collect();
        let e = by_kind.entry(f[1]).or_default();
        e.0 += 1;
        e.1 += f[2].parse::<i64>().unwrap();
    }
    let round = |q: i64| {
        let (whole, rest) = (q / 10_000, q % 10_000);
        if rest.abs() >= 5_000 { whole + q.signum() } else { whole }
    };
    let tax: i64 = by_kind.values().map(|(_, gross)| round(gross * 2_000)).sum();
    (by_kind.values().map(|v| v.0).sum(), by_kind.values().map(|v| v.1).sum(), tax)
}

fn recorded(project: &Project, day: &str) -> (i64, i64, i64) {
    let history = project.json(&["history", "daily_revenue", "-p", day, "--json"]);
    let m = &history["materializations"][0]["metadata"];
    (m["events"].as_i64().unwrap(), m["gross_cents"].as_i64().unwrap(), m["tax_cents"].as_i64().unwrap())
}

#[test]
fn the_whole_cli_works_for_a_project_of_its_own() {
    let project = Project::new();
    let listed = project.ok(&["list"]);
    assert!(listed.contains("events") && listed.contains("daily_revenue"), "{listed}");

    // Materialize one day: its 24 hours of events, then the aggregate priced by the resource.
    let run = project.ok(&["materialize", "daily_revenue", "-p", "2025-12-01", "--with-upstream"]);
    assert!(run.contains("succeeded: 25 steps"), "{run}");
    let day1 = expected(&project.events(), "2025-12-01");
    assert!(day1.0 > 20, "the shipped CSV has events on the first day");
    assert_eq!(recorded(&project, "2025-12-01"), day1);

    // Backfill the next two days in dependency order.
    let backfill = project.ok(&["backfill", "+daily_revenue", "--from", "2025-12-02", "--to", "2025-12-03"]);
    assert!(backfill.contains("daily_revenue") && backfill.contains("events"), "{backfill}");
    for day in ["2025-12-02", "2025-12-03"] {
        assert_eq!(recorded(&project, day), expected(&project.events(), day), "{day}");
    }

    // Status: every day there is (12-04 has not ended at noon) and 72 of its 84 hours.
    let status = project.json(&["status", "--json"]);
    let counts = |asset: &str| {
        let a = status.as_array().unwrap().iter().find(|a| a["asset"] == asset).unwrap();
        (a["counts"]["partitions"].as_i64().unwrap(), a["counts"]["materialized"].as_i64().unwrap())
    };
    assert_eq!(counts("daily_revenue"), (3, 3));
    assert_eq!(counts("events"), (84, 72));

    // Lineage: the day read its 24 hours, with their versions.
    let lineage = project.ok(&["lineage", "daily_revenue", "-p", "2025-12-02"]);
    assert!(lineage.contains("events ← 24 partitions: 2025-12-02T00:00..2025-12-02T23:00 (24)"), "{lineage}");

    // Why: materialized and current; then an hour's events change and the day turns stale,
    // with that hour as its root cause.
    let why = project.json(&["why", "daily_revenue", "-p", "2025-12-02", "--json"]);
    assert_eq!(why["partition"]["status"], "materialized");
    let text = std::fs::read_to_string(project.events()).unwrap();
    let changed = text.lines().find(|l| l.starts_with("2025-12-02T05:")).expect("an event at 05:00 on 12-02");
    let (prefix, amount) = changed.rsplit_once(',').unwrap();
    let amount: i64 = amount.parse().unwrap();
    std::fs::write(project.events(), text.replace(changed, &format!("{prefix},{}", amount + 100))).unwrap();
    project.ok(&["materialize", "events", "-p", "2025-12-02T05:00"]);
    let why = project.ok(&["why", "daily_revenue", "-p", "2025-12-02"]);
    assert!(why.starts_with("daily_revenue 2025-12-02: stale: 1 input changed since it was read"), "{why}");
    assert!(why.contains("events 2025-12-02T05:00"), "{why}");

    // Re-running what is stale brings the day up to date with the new amount.
    project.ok(&["materialize", "daily_revenue", "--from", "2025-12-01", "--to", "2025-12-03", "--stale"]);
    let day2 = expected(&project.events(), "2025-12-02");
    assert_eq!(recorded(&project, "2025-12-02"), day2);
    assert_eq!(
        project.json(&["why", "daily_revenue", "-p", "2025-12-02", "--json"])["partition"]["status"],
        "materialized"
    );
}

#[test]
fn a_bad_events_file_fails_the_hour_with_what_was_wrong() {
    let project = Project::new();
    std::fs::write(project.events(), "ts,kind,amount_cents\n2025-12-01T00:10:00Z,order\n").unwrap();
    let (code, stdout, _) = project.run(&["materialize", "events", "-p", "2025-12-01T00:00"]);
    assert_eq!(code, 1, "a failed run exits 1: {stdout}");
    assert!(stdout.contains("line 2: expected ts,kind,amount_cents"), "{stdout}");
}

/// Gross cents of one kind's events, from the CSV, over the days given.
fn gross_of(events: &Path, kind: &str, days: &[&str]) -> i64 {
    let text = std::fs::read_to_string(events).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() == 3 && f[1] == kind && days.iter().any(|d| f[0].starts_with(d)))
        .map(|f| f[2].parse::<i64>().unwrap())
        .sum()
}

#[test]
fn two_dimensional_partitions_work_through_the_whole_cli() {
    let project = Project::new();
    let list = project.json(&["list", "--json"]);
    let kind_daily = list.as_array().unwrap().iter().find(|a| a["asset"] == "kind_daily").unwrap();
    assert_eq!(kind_daily["partitions_def"]["kind"], "multi");
    assert_eq!(kind_daily["partitions_def"]["dimensions"][0]["dimension"], "day");
    assert_eq!(
        kind_daily["partitions_def"]["dimensions"][1]["keys"],
        serde_json::json!(["order", "refund", "subscription"])
    );
    // 3 closed days × 3 kinds at noon on 12-04.
    assert_eq!(kind_daily["partitions_def"]["count"], 9);

    // One cell, its dimensions in any order or as --dim: the day's 24 hours, then the cell.
    let run = project.ok(&["materialize", "kind_daily", "-p", "2025-12-01", "--dim", "kind=order", "--with-upstream"]);
    assert!(run.contains("succeeded: 25 steps"), "{run}");
    let file = project.dir.path().join("home/storage/kind_daily/day=2025-12-01/kind=order/data.parquet");
    assert!(file.exists(), "Hive-style path {}", file.display());
    let history = project.json(&["history", "kind_daily", "-p", "kind=order|day=2025-12-01", "--json"]);
    let m = &history["materializations"][0];
    assert_eq!(m["partition"], "day=2025-12-01|kind=order", "the key is stored canonical");
    assert_eq!(m["metadata"]["gross_cents"], gross_of(&project.events(), "order", &["2025-12-01"]));

    // A backfill over the time dimension for every kind (the upstream hours too).
    let backfill = project.ok(&["backfill", "+kind_daily", "--from", "2025-12-01", "--to", "2025-12-03"]);
    assert!(backfill.contains("kind_daily"), "{backfill}");
    let status = project.json(&["status", "kind_daily", "--json"]);
    assert_eq!(status[0]["counts"]["partitions"], 9);
    assert_eq!(status[0]["counts"]["materialized"], 9, "{status}");
    for kind in ["order", "refund", "subscription"] {
        for day in ["2025-12-01", "2025-12-02", "2025-12-03"] {
            let h = project.json(&["history", "kind_daily", "-p", &format!("day={day}|kind={kind}"), "--json"]);
            assert_eq!(h["materializations"].as_array().unwrap().len(), 1, "{day} {kind} once: {h}");
            assert_eq!(h["materializations"][0]["metadata"]["gross_cents"], gross_of(&project.events(), kind, &[day]));
        }
    }

    // Lineage and why on a cell: it read its day's hours.
    let lineage = project.ok(&["lineage", "kind_daily", "-p", "day=2025-12-02|kind=refund"]);
    assert!(lineage.contains("events ← 24 partitions: 2025-12-02T00:00..2025-12-02T23:00 (24)"), "{lineage}");
    let why = project.json(&["why", "kind_daily", "-p", "kind=refund|day=2025-12-02", "--json"]);
    assert_eq!(why["partition"]["status"], "materialized", "{why}");

    // One dimension read from two: a kind's total over every day of it.
    project.ok(&["materialize", "kind_totals", "-p", "subscription"]);
    let h = project.json(&["history", "kind_totals", "-p", "subscription", "--json"]);
    let days = ["2025-12-01", "2025-12-02", "2025-12-03"];
    assert_eq!(h["materializations"][0]["metadata"]["gross_cents"], gross_of(&project.events(), "subscription", &days));

    // A change in one hour makes that day's cells stale for every kind (each read the hour).
    let text = std::fs::read_to_string(project.events()).unwrap();
    let changed = text.lines().find(|l| l.starts_with("2025-12-03T1")).expect("an event on 12-03");
    let (prefix, amount) = changed.rsplit_once(',').unwrap();
    let amount: i64 = amount.parse().unwrap();
    std::fs::write(project.events(), text.replace(changed, &format!("{prefix},{}", amount + 100))).unwrap();
    let hour = format!("{}:00", &changed[..13]);
    project.ok(&["materialize", "events", "-p", &hour]);
    for kind in ["order", "refund", "subscription"] {
        let why = project.ok(&["why", "kind_daily", "-p", &format!("day=2025-12-03|kind={kind}")]);
        assert!(why.starts_with(&format!("kind_daily day=2025-12-03|kind={kind}: stale: 1 input changed")), "{why}");
        assert!(why.contains(&format!("events {hour}")), "root cause is the hour: {why}");
    }
    let why = project.json(&["why", "kind_daily", "-p", "day=2025-12-02|kind=order", "--json"]);
    assert_eq!(why["partition"]["status"], "materialized", "another day is current: {why}");

    // Bad keys say what is valid, exit 2, and record nothing.
    for (key, says) in [
        ("day=2025-12-01|kind=gift", "in dimension kind: unknown partition \"gift\""),
        ("day=2025-12-01", "day=KEY|kind=KEY (every dimension once"),
        ("day=2025-12-09|kind=order", "in dimension day: partition \"2025-12-09\" is out of range"),
        ("day=2025-12-01|kind=order|region=eu", "\"region\" is not one of them"),
    ] {
        let (code, stdout, stderr) = project.run(&["materialize", "kind_daily", "-p", key]);
        assert_eq!(code, 2, "{key}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{key}: {stderr}");
    }
    let (code, _, stderr) =
        project.run(&["backfill", "kind_daily", "--from", "2025-12-01", "--to", "2025-12-02", "--dim", "kind"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not NAME=KEY"), "{stderr}");

    // Other tools read the whole asset at once, with day and kind as columns from the paths.
    let Ok(python) = std::env::var("ROBO_ASSETS_TEST_PYTHON") else {
        assert!(std::env::var("CI").is_err(), "CI must set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow");
        eprintln!("skipped the pyarrow read: set ROBO_ASSETS_TEST_PYTHON to a python with pyarrow");
        return;
    };
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, pyarrow.dataset as ds\n\
             t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table()\n\
             rows = t.filter(ds.field('kind') == 'order').num_rows\n\
             print(t.num_rows, rows, sorted(set(t.column('day').to_pylist())), t.schema.field('amount_cents').type)",
            project.dir.path().join("home/storage/kind_daily").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(project.events()).unwrap();
    let all = text.lines().skip(1).filter(|l| days.iter().any(|d| l.starts_with(d))).count();
    let orders =
        text.lines().skip(1).filter(|l| days.iter().any(|d| l.starts_with(d)) && l.contains(",order,")).count();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("{all} {orders} ['2025-12-01', '2025-12-02', '2025-12-03'] int64")
    );
}

#[test]
fn a_command_of_the_project_s_own_runs_beside_the_built_in_ones() {
    let project = Project::new();
    assert_eq!(project.ok(&["tax-rate", "order"]), "order: 20.00 %\n");
    assert!(project.ok(&["--help"]).contains("tax-rate"), "listed in --help");
    let (code, _, stderr) = project.run(&["tax-rate", "gift"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no tax rate for \"gift\"; kinds: order, refund, subscription"), "{stderr}");
}
