//! A project's definitions are checked at start-up: bad ones are refused before any command
//! runs, with exit code 2 and a message naming the assets and keys, and nothing is written.

use std::path::PathBuf;
use std::process::Command;

/// The `misdefined` example (built by `cargo test` with the other examples).
fn misdefined() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join("misdefined");
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

fn run(kind: &str, args: &[&str]) -> (i32, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(misdefined())
        .args(args)
        .env("MISDEFINED", kind)
        .env("ROBO_ASSETS_HOME", dir.path().join("home"))
        .env_remove("ROBO_ASSETS_LINEAGE_URL")
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr), dir)
}

#[test]
fn bad_definitions_are_refused_at_start_up_naming_the_assets_and_keys() {
    let cases: [(&str, &[&str]); 8] = [
        ("cycle", &["cycle", "a", "b", "c"]),
        ("unknown_dep", &["daily", "hourlly", "hourly"]),
        ("duplicate", &["asset key \"hourly\" is defined twice"]),
        ("key", &["invalid asset key \"Daily Totals\"", "snake_case"]),
        ("mapping", &["daily", "hourly", "time_window"]),
        ("unbound", &["asset daily requires resource \"warehouse\", which nothing binds", "bound: object_store"]),
        ("schedule", &["schedule nightly", "dailly"]),
        ("condition", &["eager condition", "montly"]),
    ];
    for (kind, named) in cases {
        for args in [&["list"][..], &["materialize", "daily", "-p", "2025-12-01"]] {
            let (code, stdout, stderr, dir) = run(kind, args);
            assert_eq!(code, 2, "{kind} {args:?}: {stdout}{stderr}");
            assert!(stdout.is_empty(), "{kind}: nothing ran: {stdout}");
            for name in named {
                assert!(stderr.contains(name), "{kind}: {name:?} not in {stderr}");
            }
            assert!(!dir.path().join("home").exists(), "{kind}: nothing was opened or written");
        }
    }
    let (code, stdout, stderr, _) = run("", &["list"]);
    assert_eq!(code, 0, "the valid project runs: {stderr}");
    assert!(stdout.contains("hourly") && stdout.contains("daily"), "{stdout}");
}
