//! A Dagster user's first hour (issue 16 §7, §8): grouped `--help` that documents every setting
//! without printing values, shell completions, `--version` with the commit, `robo-assets.toml`
//! under the environment, `partitions NAME`, and weekly keys in date ranges.

use std::path::Path;

use crate::common::Robo;
use crate::robo_snapshot;

#[test]
fn help_groups_commands_and_documents_every_setting_without_values() {
    let robo = Robo::new();
    let secret = "hunter2-not-for-help";
    let url = format!("postgres://robo:{secret}@db.example/robo");
    let run = robo.run_with(
        &["--help"],
        &[("DATABASE_URL", url.as_str()), ("PLAID_SECRET", secret), ("QBO_CLIENT_SECRET", secret)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains(secret), "--help printed a secret:\n{}", run.stdout);
    // Each heading once, in order, with its commands under it.
    let pos = |s: &str| run.stdout.find(s).unwrap_or_else(|| panic!("{s:?} missing from --help:\n{}", run.stdout));
    assert!(pos("Run:\n") < pos("Inspect:\n") && pos("Inspect:\n") < pos("Automate:\n"));
    assert!(pos("Automate:\n") < pos("Operate:\n") && pos("Operate:\n") < pos("robo-assets commands:\n"));
    let section = |heading: &str| {
        let start = pos(heading);
        run.stdout[start..].split("\n\n").next().unwrap_or_default().to_owned()
    };
    assert!(section("Run:\n").contains("  materialize ") && section("Run:\n").contains("  backfill "));
    assert!(section("Inspect:\n").contains("  status ") && section("Inspect:\n").contains("  lineage "));
    assert!(section("Inspect:\n").contains("  path "), "{}", section("Inspect:\n"));
    assert!(section("Automate:\n").contains("  daemon ") && section("Automate:\n").contains("  schedules "));
    assert!(section("Operate:\n").contains("  completions ") && section("Operate:\n").contains("  migrate "));
    assert!(
        section("robo-assets commands:\n").contains("  qbo ")
            && section("robo-assets commands:\n").contains("  plaid ")
    );
    // Every variable the README's configuration tables name is in --help.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let config = readme.split("## Configuration").nth(1).unwrap().split("### QuickBooks").next().unwrap();
    for line in config.lines().filter(|l| l.starts_with("| `")) {
        for var in line.split('|').nth(1).unwrap().split('`').skip(1).step_by(2) {
            assert!(run.stdout.contains(&format!("[env: {var}]")), "{var} is not documented in --help");
        }
    }
    for var in ["PLAID_API_URL", "PLAID_CLIENT_ID", "PLAID_SECRET", "ROBO_ASSETS_CONFIG"] {
        assert!(run.stdout.contains(&format!("[env: {var}")), "{var} is not documented in --help");
    }
    assert!(run.stdout.contains("--database-url <VALUE>  [env: DATABASE_URL] [toml: database_url] (secret)"));
    robo_snapshot!(robo, "help_grouped", run.stdout);
}

#[test]
fn completions_load_in_each_shell() {
    let robo = Robo::new();
    let bash = robo.ok(&["completions", "bash"]).stdout;
    assert!(bash.contains("materialize") && bash.contains("backfill") && bash.contains("qbo"), "{bash}");
    // bash itself loads the script and registers the completion.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("robo-assets.bash");
    std::fs::write(&script, &bash).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p robo-assets", script.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("robo-assets"));
    let zsh = robo.ok(&["completions", "zsh"]).stdout;
    assert!(zsh.starts_with("#compdef robo-assets"), "{zsh}");
    let fish = robo.ok(&["completions", "fish"]).stdout;
    assert!(fish.contains("complete -c robo-assets") && fish.contains("materialize"), "{fish}");
    // Every command completes, `path` too (clap builds the scripts from the whole command).
    assert!(fish.contains("-a \"path\""), "{fish}");
    let bad = robo.run(&["completions", "powershell7"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("bash") && bad.stderr.contains("zsh") && bad.stderr.contains("fish"), "{}", bad.stderr);
}

#[test]
fn version_names_the_commit() {
    let robo = Robo::new();
    let version = robo.ok(&["--version"]).stdout;
    let commit = version
        .trim()
        .strip_prefix(concat!("robo-assets ", env!("CARGO_PKG_VERSION"), " (commit "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {version:?}"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        // Built from a clone: the commit it was built from.
        Some(head) => assert_eq!(commit, head),
        None => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn config_file_sets_what_the_environment_does_not() {
    let robo = Robo::new();
    let dir = robo.home().parent().unwrap().to_path_buf();
    let from_file = dir.join("from-file.db");
    std::fs::write(dir.join("robo-assets.toml"), format!("lineage_url = \"sqlite://{}\"\n", from_file.display()))
        .unwrap();
    robo.ok(&["materialize", "usage_snapshot", "-p", "2025-12-15T00:00"]);
    assert!(from_file.exists(), "the file's lineage_url was not used");
    assert!(!robo.home().join("lineage.db").exists());

    // The environment wins over the file.
    let from_env = dir.join("from-env.db");
    let url = format!("sqlite://{}", from_env.display());
    let run = robo.run_with(
        &["materialize", "usage_snapshot", "-p", "2025-12-15T01:00"],
        &[("ROBO_ASSETS_LINEAGE_URL", url.as_str())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(from_env.exists());

    // --config names another file; the flag of a setting wins over everything.
    let other = dir.join("other.toml");
    let from_config = dir.join("from-config.db");
    std::fs::write(&other, format!("lineage_url = \"sqlite://{}\"\n", from_config.display())).unwrap();
    robo.ok(&["--config", other.to_str().unwrap(), "history", "usage_snapshot"]);
    assert!(from_config.exists());
    let from_flag = dir.join("from-flag.db");
    robo.ok(&["--lineage-url", &format!("sqlite://{}", from_flag.display()), "history", "usage_snapshot"]);
    assert!(from_flag.exists());
}

#[test]
fn invalid_config_file_exits_2_naming_file_key_and_what_is_valid() {
    let robo = Robo::new();
    let dir = robo.home().parent().unwrap().to_path_buf();
    let file = dir.join("robo-assets.toml");
    let refused = |text: &str, args: &[&str], remove_now: bool| {
        std::fs::write(&file, text).unwrap();
        let mut cmd = robo.command(args);
        if remove_now {
            cmd.env_remove("ROBO_ASSETS_NOW");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{text:?} was accepted");
        assert!(!robo.home().exists(), "{text:?}: the home was created");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = refused("lineage_uri = \"sqlite://x.db\"\n", &["status"], false);
    assert!(err.contains("robo-assets.toml: unknown key \"lineage_uri\" (did you mean lineage_url?)"), "{err}");
    assert!(err.contains("valid keys: home, lineage_url,") && err.contains("database_url"), "{err}");
    let err = refused("home = [\"a\"]\n", &["status"], false);
    assert!(err.contains("robo-assets.toml: key \"home\" is of type array; it must be a string"), "{err}");
    let err = refused("home = \"a\"\nhome = \"b\"\n", &["status"], false);
    assert!(err.contains("robo-assets.toml (line 2, column"), "{err}");
    // A value the file gave that is wrong names the variable, the key and the file.
    let err = refused("now = \"yesterday\"\n", &["status"], true);
    assert!(err.contains("ROBO_ASSETS_NOW=\"yesterday\" is not an RFC 3339 time"), "{err}");
    assert!(err.contains("(set by \"now\" in robo-assets.toml)"), "{err}");
    // A --config file that does not exist.
    std::fs::remove_file(&file).unwrap();
    let run = robo.run(&["--config", "nowhere.toml", "status"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("configuration file nowhere.toml (--config, ROBO_ASSETS_CONFIG) does not exist"),
        "{}",
        run.stderr
    );
}

#[test]
fn partitions_takes_a_definition_name_and_explains_an_asset_name() {
    let robo = Robo::new();
    robo.ok(&["partitions", "add", "subscriptions", "sub-hooli"]);
    let run = robo.ok(&["partitions", "subscriptions"]);
    assert_eq!(run.stdout, "sub-hooli\n");
    let run = robo.run(&["partitions", "graph_provisioning"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "no dynamic partitions definition named \"graph_provisioning\" (\"graph_provisioning\" is an asset \
             partitioned by the dynamic definition \"subscriptions\"); defined: plaid_items, qbo_realms, sec_ciks, \
             subscriptions"
        ),
        "{}",
        run.stderr
    );
    let run = robo.run(&["partitions"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("`partitions NAME` lists its keys") && run.stderr.contains("subscriptions"),
        "{}",
        run.stderr
    );
}

#[test]
fn weekly_keys_snap_in_ranges_and_name_their_week() {
    let robo = Robo::new();
    // 2025-12-10 is a Wednesday: one key is refused with its week, in full weekday names.
    let run = robo.run(&["materialize", "credit_health", "-p", "2025-12-10"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "expected a week start, i.e. a Monday (2025-12-10 is a Wednesday, in the week 2025-12-08 (a Monday) to \
             2025-12-14 (a Sunday); the next week starts 2025-12-15)"
        ),
        "{}",
        run.stderr
    );
    // A range of days covers the weeks it touches.
    let run = robo.ok(&["materialize", "credit_health", "--from", "2025-12-03", "--to", "2025-12-10"]);
    assert!(
        run.stdout.contains("credit_health 2025-12-01") && run.stdout.contains("credit_health 2025-12-08"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("credit_health 2025-11-24") && !run.stdout.contains("credit_health 2025-12-15"));
}

#[test]
fn tour_checks_print_results_after_materializing_credit_health() {
    // The README tour materializes a week of credit_health before `checks credit_health`.
    let robo = Robo::new();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let tour = readme.split("## A tour").nth(1).unwrap();
    let materialize =
        tour.find("robo-assets materialize credit_health -p 2025-12-08").expect("the tour materializes it");
    assert!(materialize < tour.find("robo-assets checks credit_health").unwrap());
    robo.ok(&["materialize", "credit_health", "-p", "2025-12-08"]);
    let run = robo.ok(&["checks", "credit_health"]);
    for check in ["balance_equals_ledger", "no_duplicate_entries", "subscriptions_allocated"] {
        assert!(run.stdout.contains(check), "{check} missing:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("no check results"));
}
