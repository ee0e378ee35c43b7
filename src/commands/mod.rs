//! One module per verb; each takes its parsed args and the wired [`App`] and returns an
//! [`ExitStatus`]. Data goes to stdout, everything else to stderr.

pub(crate) mod automation;
mod backfill;
mod history;
mod lineage;
pub(crate) use lineage::impact_of;
mod list;
mod materialize;
pub(crate) mod path;
mod prune;
mod requests;
pub(crate) mod runs;
pub(crate) mod status;
mod submit;
pub(crate) mod why;
mod worker;

use std::collections::BTreeSet;

use engine::{AssetId, PartitionSpec};

use crate::app::App;
use crate::cli::{Cli, Command, PartitionArgs};
use crate::config::Config;
use crate::{ExitStatus, user_error};

/// Runs the command `cli` names on a validated project.
/// Runs one of the project's own commands ([`crate::Project::command`]).
pub(crate) async fn run_project_command(
    name: &str,
    matches: clap::ArgMatches,
    deployment: crate::project::Deployment,
) -> anyhow::Result<ExitStatus> {
    let app = std::mem::ManuallyDrop::new(App::open(Config::from_env()?, deployment).await?);
    app.run_project_command(name, matches).await?;
    Ok(ExitStatus::Success)
}

pub(crate) async fn run(cli: Cli, deployment: crate::project::Deployment) -> anyhow::Result<ExitStatus> {
    // Not dropped when the command ends: the process ends next, and closing the stores is work
    // nobody waits for (a thread per SQLite connection to close it, started as the process
    // exits: about 1 ms a run, BENCHMARKS.md). The long-running commands take it over.
    let app = std::mem::ManuallyDrop::new(App::open(Config::from_env()?, deployment).await?);
    match cli.command {
        Command::List(args) => list::list(&app, &args).await,
        Command::Materialize(args) => materialize::materialize(&app, &args).await,
        Command::Status(args) => status::status(&app, &args).await,
        Command::History(args) => history::history(&app, &args).await,
        Command::Path(args) => path::path(&app, &args).await,
        Command::Runs(args) => runs::runs(&app, &args).await,
        Command::Lineage(args) => lineage::lineage(&app, &args).await,
        Command::Submit(args) => submit::submit(&app, &args).await,
        Command::Worker(args) => worker::worker(&app, &args).await,
        Command::Requests(args) => requests::requests(&app, &args).await,
        Command::Backfill(args) => backfill::backfill(&app, &args).await,
        Command::Daemon(args) => automation::daemon(&app, &args).await,
        Command::Schedules(args) => automation::instigators(&app, ::lineage::InstigatorKind::Schedule, &args).await,
        Command::Sensors(args) => automation::instigators(&app, ::lineage::InstigatorKind::Sensor, &args).await,
        Command::Ticks(args) => automation::ticks(&app, &args).await,
        Command::Simulate(args) => automation::simulate(&app, &args).await,
        Command::Why(args) => why::why(&app, &args).await,
        Command::Wipe(args) => why::wipe(&app, &args).await,
        Command::Repair => why::repair(&app).await,
        Command::Prune(args) => prune::prune(&app, &args).await,
        // Answered by `Project::main` before any store is opened: it needs the whole command.
        Command::Completions(_) => unreachable!("`completions` is answered before commands run"),
        Command::Ui(args) => {
            let app = std::sync::Arc::new(std::mem::ManuallyDrop::into_inner(app));
            let cancel = tokio_util::sync::CancellationToken::new();
            tokio::spawn(materialize::cancel_on_signal(cancel.clone()));
            let listener = crate::view::server::bind(args.bind).await?;
            crate::view::server::serve(app, listener, cancel).await?;
            Ok(ExitStatus::Success)
        }
        Command::Dev(args) => automation::dev(std::mem::ManuallyDrop::into_inner(app), &args).await,
        Command::Partitions(args) => {
            let declared: std::collections::BTreeSet<&str> = app
                .defs
                .graph()
                .assets()
                .iter()
                .filter_map(|a| a.partitions.as_ref())
                .flat_map(engine::PartitionsDef::dynamic_names)
                .collect();
            let valid = declared.iter().copied().collect::<Vec<_>>().join(", ");
            let ((
                Some(crate::cli::PartitionsCommand::List { name } | crate::cli::PartitionsCommand::Add { name, .. }),
                _,
            )
            | (None, Some(name))) = (&args.command, &args.name)
            else {
                return Err(user_error(format!(
                    "name a dynamic partitions definition: `partitions NAME` lists its keys, \
                     `partitions add NAME KEY…` adds some; defined: {valid}"
                )));
            };
            if !declared.contains(name.as_str()) {
                // An asset's name is the natural guess: say which definition it is partitioned by.
                let of_asset = app.defs.graph().lookup(name).ok().and_then(|id| {
                    let def = app.defs.graph().asset(id).partitions.as_ref()?;
                    def.dynamic_names().first().map(|n| (*n).to_owned())
                });
                let hint = match of_asset {
                    Some(def) => format!(" ({} is an asset partitioned by the dynamic definition {def:?})", clip(name)),
                    None => String::new(),
                };
                return Err(user_error(format!(
                    "no dynamic partitions definition named {}{hint}; defined: {valid}",
                    clip(name)
                )));
            }
            if let Some(crate::cli::PartitionsCommand::Add { keys, .. }) = &args.command {
                if let Some(bad) = keys.iter().find(|k| check_key(k).is_err()) {
                    let why = check_key(bad).expect_err("found above");
                    return Err(user_error(format!("{} is not a partition key: {why}", clip(bad))));
                }
                // The set's key format, if its definition has one (CIKs are padded to 10 digits).
                let def = app
                    .defs
                    .graph()
                    .assets()
                    .iter()
                    .filter_map(|a| a.partitions.as_ref())
                    .find_map(|p| p.dynamic_def(name))
                    .expect("declared above");
                let keys = keys
                    .iter()
                    .map(|k| def.normalize_key(k).map_err(|e| user_error(format!("{name}: {e}"))))
                    .collect::<anyhow::Result<Vec<String>>>()?;
                let added = app.store.add_dynamic_partitions(name, &keys, app.clock.now()).await?;
                println!("{name}: {added} key{} added", if added == 1 { "" } else { "s" });
            } else if args.json {
                let keys = app.store.dynamic_partitions(name).await?;
                print_json(&serde_json::json!({ "name": name, "total": keys.len(), "keys": keys }))?;
            } else {
                for key in app.store.dynamic_partitions(name).await? {
                    println!("{key}");
                }
            }
            Ok(ExitStatus::Success)
        }
        Command::Checks(args) => {
            let asset = lookup(&app, &args.asset)?;
            let key = app.defs.graph().asset(asset).key.to_string();
            let limit = args.limit.max(1);
            let mut results = app.store.check_results(&key, args.partition.as_deref(), args.before, limit + 1).await?;
            let next_cursor = if results.len() as i64 > limit {
                results.truncate(limit as usize);
                results.last().map(|r| r.id)
            } else {
                None
            };
            let total = app
                .store
                .count(::lineage::Counted::CheckResults { asset: &key, partition: args.partition.as_deref() })
                .await?;
            if let Some(next) = next_cursor.filter(|_| !args.json) {
                eprintln!("{} of {total} shown; more: --before {next}", results.len());
            }
            if args.json {
                print_json(
                    &serde_json::json!({ "check_results": results, "total": total, "next_cursor": next_cursor }),
                )?;
            } else if results.is_empty() {
                println!("{key} has no check results");
            } else {
                println!(
                    "{:<10} {:<24} {:<8} {:<6} {:<20} MESSAGE",
                    "PARTITION", "CHECK", "SEVERITY", "PASSED", "WHEN"
                );
                for r in &results {
                    println!(
                        "{:<10} {:<24} {:<8} {:<6} {:<20} {}",
                        show_key(&r.partition_key),
                        r.check_name,
                        r.severity,
                        if r.passed { "yes" } else { "NO" },
                        r.created_at.format("%Y-%m-%d %H:%M:%S"),
                        r.message
                    );
                }
            }
            Ok(ExitStatus::Success)
        }
        Command::Demo(crate::cli::DemoArgs { command: crate::cli::DemoCommand::Seed }) => {
            println!("{}", app.seed_demo().await?);
            Ok(ExitStatus::Success)
        }
        Command::Pools(args) => {
            let declared: std::collections::BTreeMap<&str, Vec<&str>> =
                app.defs.graph().assets().iter().fold(Default::default(), |mut m, a| {
                    if let Some(p) = &a.pool {
                        m.entry(p.as_str()).or_default().push(a.key.as_str());
                    }
                    m
                });
            if let Some(crate::cli::PoolsCommand::Set { name, limit }) = &args.command {
                // A limit on a pool no asset declares would limit nothing: refuse it.
                if !declared.contains_key(name.as_str()) {
                    return Err(user_error(format!(
                        "no asset declares a pool named {}; declared pools: {}",
                        clip(name),
                        if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.keys().copied().collect::<Vec<_>>().join(", ")
                        }
                    )));
                }
                app.store.set_pool_limit(name, *limit).await?;
            }
            // A pool kept per partition dimension: its limit holds for each key of it.
            let per: std::collections::BTreeMap<&str, &str> = app
                .defs
                .graph()
                .assets()
                .iter()
                .filter_map(|a| Some((a.pool.as_deref()?, a.pool_dimension.as_deref()?)))
                .collect();
            let limits = app.store.pools().await?;
            let mut names: std::collections::BTreeSet<&str> = declared.keys().copied().collect();
            names.extend(limits.iter().map(|p| p.name.as_str()));
            if args.json {
                let pools: Vec<serde_json::Value> = names
                    .iter()
                    .map(|name| {
                        let state = limits.iter().find(|p| p.name == *name);
                        serde_json::json!({
                            "name": name,
                            "slot_limit": state.map(|p| p.slot_limit),
                            "per": per.get(name),
                            "running": state.map_or(0, |p| p.running),
                            "assets": declared.get(name).cloned().unwrap_or_default(),
                        })
                    })
                    .collect();
                print_json(&pools)?;
                return Ok(ExitStatus::Success);
            }
            println!("{:<16} {:>16} {:>8}  ASSETS", "POOL", "LIMIT", "RUNNING");
            for name in names {
                let (mut limit, running) = limits
                    .iter()
                    .find(|p| p.name == name)
                    .map_or(("none".to_owned(), 0), |p| (p.slot_limit.to_string(), p.running));
                if let Some(dim) = per.get(name) {
                    limit = format!("{limit} per {dim}");
                }
                let assets = declared.get(name).map(|a| a.join(", ")).unwrap_or_default();
                println!("{name:<16} {limit:>16} {running:>8}  {assets}");
            }
            Ok(ExitStatus::Success)
        }
        Command::Migrate => {
            // Opening the store applied any pending migration.
            println!("lineage store {} is up to date", app.store.describe());
            Ok(ExitStatus::Success)
        }
    }
}

/// The most characters a partition key, an idempotency key or a name given on the command line
/// may have (they become file names and index keys).
pub(crate) const MAX_KEY_CHARS: usize = 255;

/// Why `key` cannot be a partition key: empty, too long, a path separator or `..` (keys are
/// file names), or a control character.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        Err("it is empty".to_owned())
    } else if key.chars().count() > MAX_KEY_CHARS {
        Err(format!("it has {} characters; at most {MAX_KEY_CHARS}", key.chars().count()))
    } else if key.contains('/') || key.contains("..") {
        Err("it contains '/' or '..' (keys become file names)".to_owned())
    } else if key.chars().any(char::is_control) {
        Err("it contains a control character (a newline, a tab, …)".to_owned())
    } else if key.contains(engine::partition::multi::DIMENSION_SEPARATOR) {
        Err("it contains '|', which separates the dimensions of multi-dimensional keys".to_owned())
    } else {
        Ok(())
    }
}

/// A value for an error message: quoted, and cut to 80 characters with its length said, so a
/// 100 kB argument does not flood the terminal.
pub fn clip(value: &str) -> String {
    const SHOWN: usize = 80;
    let n = value.chars().count();
    if n <= SHOWN {
        format!("{value:?}")
    } else {
        format!("{:?}… ({n} characters)", value.chars().take(SHOWN).collect::<String>())
    }
}

/// The longest selection accepted (many comma-separated asset names fit).
pub(crate) const MAX_SELECTION_CHARS: usize = 4_096;

/// Refuses a name too long to be one before it is echoed in a "did you mean" error.
fn check_name_length(what: &str, given: &str, max: usize) -> anyhow::Result<()> {
    if given.chars().count() > max {
        return Err(user_error(format!(
            "{what} {} is too long: at most {max} characters (`robo-assets list` shows the assets)",
            clip(given)
        )));
    }
    Ok(())
}

/// Resolves a selection, turning its errors into user errors.
pub(crate) fn select(app: &App, selection: &str) -> anyhow::Result<BTreeSet<AssetId>> {
    check_name_length("selection", selection, MAX_SELECTION_CHARS)?;
    engine::selection::resolve(app.defs.graph(), selection).map_err(|e| user_error(e.to_string()))
}

/// Parses a stored name given on the command line (a run status, a request state), saying which
/// names are valid when it is none of them.
pub(crate) fn parse_choice<T: std::str::FromStr + strum::VariantNames>(what: &str, given: &str) -> anyhow::Result<T> {
    T::from_str(given).map_err(|_| user_error(format!("unknown {what} {given:?} (valid: {})", T::VARIANTS.join(", "))))
}

/// Finds one asset by key or name.
pub(crate) fn lookup(app: &App, name: &str) -> anyhow::Result<AssetId> {
    check_name_length("asset", name, MAX_KEY_CHARS)?;
    app.defs.graph().lookup(name).map_err(|e| user_error(e.to_string()))
}

fn partition_spec(args: &PartitionArgs) -> PartitionSpec {
    match (&args.partition, &args.from, &args.to) {
        (Some(k), _, _) => PartitionSpec::Key(with_dims(k, &args.dims)),
        (None, Some(a), Some(b)) => PartitionSpec::Range(with_dims(a, &args.dims), with_dims(b, &args.dims)),
        _ => PartitionSpec::None,
    }
}

/// A key with `--dim NAME=KEY` parts added: `2025-12` and `realm=123` make `2025-12|realm=123`,
/// which a multi-dimensional definition reads as `month=2025-12|realm=123`.
pub(crate) fn with_dims(key: &str, dims: &[String]) -> String {
    let mut key = key.to_owned();
    for dim in dims {
        key.push(engine::partition::multi::DIMENSION_SEPARATOR);
        key.push_str(dim);
    }
    key
}

/// The first 12 hex digits of a version.
pub(crate) fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

/// At most this many failed checks are spelled out in a summary; `checks ASSET` lists them all.
const MAX_LISTED_CHECKS: usize = 20;

/// The check lines of a run's summary (`materialize`, `runs show`, `submit --wait`): a count, then
/// each failed verdict, with a warning on stderr per failed check so a failed `warn` check is
/// seen even when stdout is piped away.
pub(crate) fn print_checks(results: &[::lineage::CheckResultRecord]) {
    if results.is_empty() {
        return;
    }
    let failed: Vec<&::lineage::CheckResultRecord> = results.iter().filter(|r| !r.passed).collect();
    println!("Checks: {}", checks_summary(results));
    for r in failed.iter().take(MAX_LISTED_CHECKS) {
        println!("  ! {}", check_line(r));
        eprintln!("warning: check failed: {}", check_line(r));
    }
    if failed.len() > MAX_LISTED_CHECKS {
        println!("  … {} more: see `robo-assets checks ASSET`", failed.len() - MAX_LISTED_CHECKS);
        eprintln!("warning: {} more checks failed", failed.len() - MAX_LISTED_CHECKS);
    }
}

/// `3 evaluated, 2 passed, 1 failed`: a run's verdicts counted (its summary, `runs show`, the web
/// view's run page).
pub(crate) fn checks_summary(results: &[::lineage::CheckResultRecord]) -> String {
    let failed = results.iter().filter(|r| !r.passed).count();
    format!("{} evaluated, {} passed, {failed} failed", results.len(), results.len() - failed)
}

/// `credit_health 2025-12-15 subscriptions_allocated (warn): initech has no allocation`.
pub(crate) fn check_line(r: &::lineage::CheckResultRecord) -> String {
    format!("{} {} {} ({}): {}", r.asset_key, show_key(&r.partition_key), r.check_name, r.severity, r.message)
}

/// Prints a value as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A partition key for display: `(unpartitioned)` for `""`.
pub(crate) fn show_key(key: &str) -> &str {
    if key.is_empty() { "(unpartitioned)" } else { key }
}

/// Formats a byte count: `1.2 KiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// A time given on the command line or in a query: RFC 3339, or a date (midnight UTC).
pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(user_error(format!("{flag} {s:?} is not a time: use RFC 3339 (2026-01-01T02:00:00Z) or a date (2026-01-01)")))
}

/// How a backfill id is printed and may be given: `bf-` and the UUID, so a backfill never looks
/// like the run that carries it out. JSON keeps the bare UUID.
pub(crate) const BACKFILL_ID_PREFIX: &str = "bf-";

/// The fewest characters an abbreviated id may have.
const MIN_ID_CHARS: usize = 4;

/// How many candidates an ambiguous abbreviation lists.
const MAX_ID_CANDIDATES: i64 = 10;

/// An id as text output prints it: a backfill's with [`BACKFILL_ID_PREFIX`].
pub(crate) fn printed_id(kind: ::lineage::IdKind, id: &uuid::Uuid) -> String {
    match kind {
        ::lineage::IdKind::Backfill => format!("{BACKFILL_ID_PREFIX}{id}"),
        _ => id.to_string(),
    }
}

/// An id's short form, as listings print it: its last hex digits (the random part of a UUIDv7;
/// its first characters are the creation time, shared by ids made within a minute), a
/// backfill's with [`BACKFILL_ID_PREFIX`]. [`resolve_id`] takes it back.
pub(crate) fn printed_short_id(kind: ::lineage::IdKind, id: &uuid::Uuid) -> String {
    match kind {
        ::lineage::IdKind::Backfill => format!("{BACKFILL_ID_PREFIX}{}", ::lineage::short_id(id)),
        _ => ::lineage::short_id(id),
    }
}

/// The command that lists ids of `kind`.
fn id_listing(kind: ::lineage::IdKind) -> &'static str {
    match kind {
        ::lineage::IdKind::Run => "robo-assets runs",
        ::lineage::IdKind::Backfill => "robo-assets backfill list",
        ::lineage::IdKind::Request => "robo-assets requests",
    }
}

/// Resolves an id given on the command line, by every command that takes one: the whole id, or
/// a unique beginning or end of it of at least [`MIN_ID_CHARS`] characters (a listing's short
/// form is its end); a backfill's may carry its printed `bf-`. Ambiguous, unknown or malformed
/// input is a user error that says what is valid (exit 2).
pub(crate) async fn resolve_id(app: &App, kind: ::lineage::IdKind, given: &str) -> anyhow::Result<uuid::Uuid> {
    let text = given.trim().to_ascii_lowercase();
    let fragment = match text.strip_prefix(BACKFILL_ID_PREFIX) {
        Some(rest) if kind == ::lineage::IdKind::Backfill => rest,
        Some(_) => {
            return Err(user_error(format!(
                "{} is a backfill id, not a {kind} id: see `robo-assets backfill status {}`",
                clip(given),
                given.trim()
            )));
        }
        None => text.as_str(),
    };
    let well_formed = fragment.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && fragment.chars().filter(char::is_ascii_hexdigit).count() >= MIN_ID_CHARS
        && fragment.len() <= 36;
    if !well_formed {
        return Err(user_error(format!(
            "{} is not a {kind} id: give the whole id or at least {MIN_ID_CHARS} of its hex digits \
             (0-9, a-f, dashes as printed), from its beginning or its end (see `{}`)",
            clip(given),
            id_listing(kind)
        )));
    }
    let found = app.store.ids_matching(kind, fragment, MAX_ID_CANDIDATES + 1).await?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(user_error(format!(
            "no {kind} matches {} in {} (see `{}`)",
            clip(given),
            app.store.describe(),
            id_listing(kind)
        ))),
        many => {
            let shown: Vec<String> =
                many.iter().take(MAX_ID_CANDIDATES as usize).map(|id| format!("  {}", printed_id(kind, id))).collect();
            let more = if many.len() as i64 > MAX_ID_CANDIDATES { "\n  …" } else { "" };
            Err(user_error(format!(
                "{} matches more than one {kind}; give more of its characters:\n{}{more}",
                clip(given),
                shown.join("\n")
            )))
        }
    }
}
