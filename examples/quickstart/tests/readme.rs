//! The README's "Define your own assets" example is this crate, exactly: its `main.rs` is the
//! README's, and it runs as the README says.

use std::process::Command;

const README: &str = include_str!("../../../README.md");
const MAIN: &str = include_str!("../src/main.rs");

fn run(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(args)
        .env("ROBO_ASSETS_HOME", home)
        .env("ROBO_ASSETS_NOW", "2025-12-03T12:00:00Z")
        .env_remove("ROBO_ASSETS_LINEAGE_URL")
        .env_remove("S3_BUCKET_NAME")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn the_readme_shows_this_main_rs_and_its_dependency_line() {
    let section = README.split("## Define your own assets").nth(1).expect("README has the section");
    let block = section.split("```rust\n").nth(1).and_then(|b| b.split("\n```").next()).expect("a rust block");
    assert_eq!(format!("{block}\n"), MAIN, "the README's main.rs is examples/quickstart/src/main.rs, verbatim");
    assert!(section.contains("robo-assets = { path = \"../robo-assets\" }"), "the dependency line");
}

#[test]
fn the_readme_example_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (code, stdout, stderr) = run(&home, &["materialize", "daily_bill", "-p", "2025-12-01", "--with-upstream"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("succeeded: 25 steps"), "{stdout}");

    let (code, history, _) = run(&home, &["history", "daily_bill", "--json"]);
    assert_eq!(code, 0);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(
        history["materializations"][0]["metadata"],
        serde_json::json!({ "readings": 48, "cents": 144 }),
        "{history}"
    );

    let (code, status, _) = run(&home, &["status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let bill = status.as_array().unwrap().iter().find(|a| a["asset"] == "daily_bill").unwrap();
    assert_eq!((bill["counts"]["partitions"].as_i64(), bill["counts"]["materialized"].as_i64()), (Some(2), Some(1)));

    // The price list is the project's own resource; a key nothing binds is refused at start-up.
    let (code, _, stderr) = run(&home, &["lineage", "daily_bill", "-p", "2025-12-01"]);
    assert_eq!(code, 0, "{stderr}");
}
