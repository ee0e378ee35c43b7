//! The JSON contract: the shape (keys and value types) of every command's `--json`,
//! snapshotted, so a changed name or shape is a reviewed diff. One name per concept (`asset`, `partition`, `rows`, `<thing>_id`), units in
//! names (`duration_ms`), and errors as `{"error": {"kind", "message"}}` on stdout.

use crate::common::Robo;
use crate::robo_snapshot;

const DAY: &str = "2025-12-15";

fn json(robo: &Robo, args: &[&str]) -> serde_json::Value {
    let run = robo.ok(args);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("robo-assets {args:?} is not JSON ({e}): {}", run.stdout))
}

/// The shape of a JSON value: its keys and value types, an array as its first element. The
/// contract is names and types; values (versions, times, ids) differ from run to run.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => Value::from("string"),
        Value::Number(_) => Value::from("number"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::from("null"),
    }
}

/// Every object key anywhere in `v`.
fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn every_command_speaks_one_json_vocabulary() {
    let robo = Robo::new();
    let materialized = json(&robo, &["materialize", "storage_bill", "-p", DAY, "--with-upstream", "--json"]);
    robo.ok(&["backfill", "usage_snapshot", "--from", "2025-12-16T00:00", "--to", "2025-12-16T01:00"]);
    let run = materialized["run_id"].as_str().unwrap().to_owned();
    // Seed every listing so no snapshot is an empty array: check verdicts, a sensor tick, a
    // dynamic key.
    let checked = json(&robo, &["materialize", "credit_health", "-p", "2026-01-05", "--json"]);
    let checked_run = checked["run_id"].as_str().unwrap().to_owned();
    robo.ok(&["partitions", "add", "subscriptions", "sub-contract"]);
    robo.ok(&["daemon", "--once", "--no-worker"]);
    let backfills = json(&robo, &["backfill", "list", "--json"]);
    let backfill = backfills["backfills"][0]["backfill_id"].as_str().expect("backfill_id").to_owned();
    let outputs = [
        ("materialize", materialized),
        ("list", json(&robo, &["list", "--json"])),
        ("status", json(&robo, &["status", "+storage_bill", "--json"])),
        ("status_partitions", json(&robo, &["status", "storage_bill", "-p", DAY, "--json"])),
        ("history", json(&robo, &["history", "storage_bill", "--json"])),
        ("path", json(&robo, &["path", "storage_bill", "-p", DAY, "--json"])),
        ("runs", json(&robo, &["runs", "--json"])),
        ("runs_show", json(&robo, &["runs", "show", &run, "--json"])),
        ("materialize_checks", checked),
        ("runs_show_checks", json(&robo, &["runs", "show", &checked_run, "--json"])),
        ("status_checks", json(&robo, &["status", "credit_health", "--json"])),
        ("runs_logs", json(&robo, &["runs", "logs", &run, "--json"])),
        ("lineage", json(&robo, &["lineage", "storage_bill", "--format", "json"])),
        ("lineage_partition", json(&robo, &["lineage", "storage_bill", "-p", DAY, "--format", "json"])),
        ("why", json(&robo, &["why", "storage_bill", "-p", DAY, "--json"])),
        ("checks", json(&robo, &["checks", "credit_health", "--json"])),
        ("requests", json(&robo, &["requests", "--json"])),
        ("backfill_list", backfills),
        ("backfill_status", json(&robo, &["backfill", "status", &backfill, "--json"])),
        ("schedules", json(&robo, &["schedules", "--json"])),
        ("sensors", json(&robo, &["sensors", "--json"])),
        ("ticks", json(&robo, &["ticks", "pending_subscription_sensor", "--json"])),
        ("pools", json(&robo, &["pools", "--json"])),
        ("partitions_list", json(&robo, &["partitions", "list", "subscriptions", "--json"])),
        ("simulate", json(&robo, &["simulate", "--from", "2026-01-14", "--to", "2026-01-15", "--json"])),
    ];
    let mut all = std::collections::BTreeSet::new();
    for (name, value) in &outputs {
        keys(value, &mut all);
        // A list that is empty pins no shape: the seeded ones are not.
        let list = match *name {
            "pools" | "schedules" | "sensors" => Some(value),
            "ticks" => Some(&value["ticks"]),
            "backfill_list" => Some(&value["backfills"]),
            "checks" | "materialize_checks" | "runs_show_checks" => Some(&value["check_results"]),
            "status_checks" => Some(&value[0]["failed_check_results"]),
            "partitions_list" => Some(&value["keys"]),
            "history" => Some(&value["materializations"]),
            "requests" => Some(&value["requests"]),
            _ => None,
        };
        if let Some(list) = list {
            assert!(list.as_array().is_some_and(|a| !a.is_empty()), "{name}: {value}");
        }
        let snapshot = format!("json_{name}");
        robo_snapshot!(robo, snapshot.as_str(), serde_json::to_string_pretty(&shape(value)).unwrap());
    }
    // One name per concept: none of the old spellings is left anywhere.
    for old in ["asset_key", "partition_key", "row_count", "id", "duration", "secs", "nanos"] {
        assert!(!all.contains(old), "{old:?} is still a JSON key somewhere");
    }
}

#[test]
fn errors_with_json_are_json_objects_and_keep_their_exit_codes() {
    let robo = Robo::new();
    for (args, code, kind) in [
        (vec!["status", "nope_asset", "--json"], 2, "invalid_input"),
        (vec!["runs", "show", "not-a-run", "--json"], 2, "invalid_input"),
        (vec!["ticks", "nope", "--json"], 2, "invalid_input"),
    ] {
        let run = robo.run(&args);
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        let body: serde_json::Value = serde_json::from_str(&run.stdout).expect("an error object on stdout");
        assert_eq!(body["error"]["kind"], kind, "{args:?}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        assert!(run.stderr.starts_with("error: "), "people still read it on stderr: {}", run.stderr);
    }
}

#[test]
fn lists_say_how_many_there_are_and_where_the_next_page_starts() {
    let robo = Robo::new();
    robo.ok(&["materialize", "storage_bill", "-p", DAY, "--with-upstream"]);
    let first = json(&robo, &["history", "usage_snapshot", "--limit", "20", "--json"]);
    assert_eq!(first["total"], 24);
    assert_eq!(first["materializations"].as_array().unwrap().len(), 20);
    let next = first["next_cursor"].as_i64().expect("a next page");
    let rest = json(&robo, &["history", "usage_snapshot", "--limit", "20", "--before", &next.to_string(), "--json"]);
    assert_eq!(rest["materializations"].as_array().unwrap().len(), 4);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
    let mut seen: Vec<i64> = first["materializations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["materializations"].as_array().unwrap())
        .map(|m| m["materialization_id"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 24, "every materialization once across the pages");
    // The text listing says it is cut, on stderr.
    // Impact on the partition page and in the CLI come from one function: the hour was read by
    // the bill.
    let impact = json(&robo, &["lineage", "usage_snapshot", "-p", "2025-12-15T07:00", "--impact", "--format", "json"]);
    assert_eq!(impact["read_by"][0]["asset"], "storage_bill");
    assert_eq!(
        (impact["read_by"][0]["hops"].as_i64(), impact["read_by"][0]["current"].as_bool()),
        (Some(1), Some(true))
    );
    let text = robo.ok(&["history", "usage_snapshot"]);
    assert!(text.stderr.contains(&format!("20 of 24 shown; more: --before {next}")), "{}", text.stderr);
    let requests = json(&robo, &["requests", "--limit", "20", "--json"]);
    assert_eq!(requests["total"], 25);
    let next = requests["next_cursor"].as_str().expect("a next page").to_owned();
    let rest = json(&robo, &["requests", "--limit", "20", "--before", &next, "--json"]);
    assert_eq!(rest["requests"].as_array().unwrap().len(), 5);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
    let runs = json(&robo, &["runs", "--json"]);
    assert_eq!(runs["total"], 1);
    assert_eq!(json(&robo, &["runs", "--since", "2026-01-16", "--json"])["total"], 0);
    assert_eq!(json(&robo, &["runs", "--since", "2026-01-15T11:00:00Z", "--json"])["total"], 1);
}
