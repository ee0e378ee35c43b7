//! `robo-assets runs`, `runs show RUN_ID`, `runs logs RUN_ID`.

use lineage::{IdKind, RunId, RunRecord, RunStatus};

use crate::ExitStatus;
use crate::app::App;
use crate::cli::{RunsArgs, RunsCommand};
use crate::commands::{parse_choice, print_json, printed_short_id, resolve_id, short, show_key};
use crate::user_error;

/// A run id given on the command line: whole or abbreviated ([`resolve_id`]).
pub(crate) async fn resolve_run(app: &App, given: &str) -> anyhow::Result<RunId> {
    Ok(RunId(resolve_id(app, IdKind::Run, given).await?))
}

/// A page of runs, newest first: the body of `runs --json` and `/api/v1/runs`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RunsPage {
    pub runs: Vec<RunRecord>,
    /// Runs the filter selects, on every page.
    pub total: i64,
    /// Pass as `--before` (`?before=`) for the next page; absent on the last page.
    pub next_cursor: Option<RunId>,
}

/// One page of runs older than `before`.
pub(crate) async fn page(app: &App, filter: lineage::RunFilter) -> anyhow::Result<RunsPage> {
    let limit = filter.limit;
    let total = app.store.count(lineage::Counted::Runs(&filter)).await?;
    let mut runs = app.store.runs(&lineage::RunFilter { limit: limit + 1, ..filter }).await?;
    let next_cursor = if runs.len() as i64 > limit {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(RunsPage { runs, total, next_cursor })
}

/// A run with what it recorded: the body of `runs show --json` and `/api/v1/runs/{id}`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RunDetail {
    pub run: RunRecord,
    pub materializations: Vec<lineage::MaterializationRecord>,
    /// The latest verdict of each check the run evaluated, as `checks` lists them.
    pub check_results: Vec<lineage::CheckResultRecord>,
    pub events: Vec<lineage::RunEvent>,
}

pub(crate) async fn show(app: &App, run: RunRecord) -> anyhow::Result<RunDetail> {
    let materializations = app.store.run_materializations(run.id).await?;
    let check_results = app.store.run_check_results(run.id).await?;
    let events = app.store.run_events(run.id).await?;
    Ok(RunDetail { run, materializations, check_results, events })
}

pub(crate) async fn find(app: &App, s: &str) -> anyhow::Result<RunRecord> {
    let id = resolve_run(app, s).await?;
    app.store.run(id).await?.ok_or_else(|| user_error(format!("no run with id {id}; see `robo-assets runs`")))
}

fn duration(run: &RunRecord) -> String {
    match (run.started_at, run.finished_at) {
        (Some(a), Some(b)) => format!("{:.2?}", (b - a).to_std().unwrap_or_default()),
        (Some(_), None) => "running".to_owned(),
        _ => "-".to_owned(),
    }
}

pub async fn runs(app: &App, args: &RunsArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        None => {
            let status = match &args.status {
                Some(s) => Some(parse_choice::<RunStatus>("run status", s)?),
                None => None,
            };
            let filter = lineage::RunFilter {
                status,
                trigger: args.trigger.as_deref().map(|t| parse_choice::<lineage::Trigger>("trigger", t)).transpose()?,
                asset: match &args.asset {
                    Some(a) => Some(app.defs.graph().asset(crate::commands::lookup(app, a)?).key.to_string()),
                    None => None,
                },
                since: args.since.as_deref().map(|s| crate::commands::parse_time("--since", s)).transpose()?,
                before: match &args.before {
                    Some(b) => Some(resolve_run(app, b).await?),
                    None => None,
                },
                limit: args.limit.max(1),
            };
            let RunsPage { runs, total, next_cursor } = page(app, filter).await?;
            if args.json {
                print_json(&RunsPage { runs, total, next_cursor })?;
                return Ok(ExitStatus::Success);
            }
            println!(
                "{:<8}  {:<9} {:<8} {:>5} {:<20} {:>10}  SELECTION",
                "RUN", "STATUS", "TRIGGER", "STEPS", "CREATED", "DURATION"
            );
            let runs_shown = runs.len();
            for r in runs {
                println!(
                    "{:<8}  {:<9} {:<8} {:>5} {:<20} {:>10}  {}",
                    printed_short_id(IdKind::Run, &r.id.0),
                    r.status.as_str(),
                    r.trigger,
                    r.n_steps,
                    r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    duration(&r),
                    r.selection
                );
            }
            if let Some(next) = next_cursor {
                eprintln!("{runs_shown} of {total} shown; more: robo-assets runs --before {next}");
            }
        }
        Some(RunsCommand::Show { run_id, json }) => {
            let detail = show(app, find(app, run_id).await?).await?;
            if *json {
                print_json(&detail)?;
                return Ok(ExitStatus::Success);
            }
            let RunDetail { run, materializations, check_results, events } = detail;
            println!("Run {}", run.id);
            println!("  status     {}", run.status);
            println!("  trigger    {}", run.trigger);
            println!("  selection  {}", run.selection);
            println!("  steps      {}", run.n_steps);
            println!("  created    {}", run.created_at.to_rfc3339());
            println!("  duration   {}", duration(&run));
            println!("  tags       {}", run.tags);
            println!("\nMaterializations ({}):", materializations.len());
            print_materializations(app, &materializations);
            if !check_results.is_empty() {
                println!();
                crate::commands::print_checks(&check_results);
            }
            print_events(&events);
        }
        Some(RunsCommand::Logs { run_id, asset, json }) => {
            let run = find(app, run_id).await?;
            let mut events = app.store.run_events(run.id).await?;
            if let Some(asset) = asset {
                let key = app.defs.graph().asset(crate::commands::lookup(app, asset)?).key.to_string();
                events.retain(|e| e.asset_key.as_deref() == Some(key.as_str()));
            }
            if *json {
                print_json(&events)?;
            } else {
                print_events(&events);
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// An asset with at most this many materializations in a run has each listed with its data
/// version, attempt and output; one with more is summarized as ranges of partitions.
const LISTED_PER_ASSET: usize = 5;

/// At most this many ranges of partitions are printed per asset.
const RANGES_PER_ASSET: usize = 8;

/// A run's materializations by asset, then partition: each one when an asset has few, else the
/// asset's count and its contiguous ranges (`2025-12-01T00:00..2025-12-31T23:00 (744)`). `--json`
/// keeps every row.
fn print_materializations(app: &App, materializations: &[lineage::MaterializationRecord]) {
    let mut by_asset: std::collections::BTreeMap<&str, Vec<&lineage::MaterializationRecord>> = Default::default();
    for m in materializations {
        by_asset.entry(m.asset_key.as_str()).or_default().push(m);
    }
    let width = by_asset.keys().map(|a| a.len()).max().unwrap_or(0);
    for (asset, mut ms) in by_asset {
        ms.sort_by(|a, b| (&a.partition_key, a.id).cmp(&(&b.partition_key, b.id)));
        if ms.len() <= LISTED_PER_ASSET {
            for m in ms {
                println!(
                    "  {:<36} data {}  attempt {}  {}",
                    format!("{asset} {}", show_key(&m.partition_key)),
                    short(&m.data_version),
                    m.attempt,
                    m.storage_uri.as_deref().unwrap_or("(no output)")
                );
            }
            continue;
        }
        let def = app.defs.graph().lookup(asset).ok().and_then(|id| app.defs.graph().asset(id).partitions.as_ref());
        let keys: Vec<String> = ms.iter().map(|m| m.partition_key.clone()).collect();
        let ranges = engine::partition::compress_ranges(def, &keys);
        let mut shown = ranges.iter().take(RANGES_PER_ASSET).cloned().collect::<Vec<_>>().join(", ");
        if ranges.len() > RANGES_PER_ASSET {
            shown.push_str(&format!(", … {} more ranges (--json lists every one)", ranges.len() - RANGES_PER_ASSET));
        }
        println!("  {asset:<width$}  {:>6} materialized  {shown}", ms.len());
    }
}

fn print_events(events: &[lineage::RunEvent]) {
    println!("\nEvents ({}):", events.len());
    for e in events {
        let subject = match (&e.asset_key, &e.partition_key) {
            (Some(a), Some(p)) => format!("{a} {}", show_key(p)),
            _ => String::new(),
        };
        let message = match e.body.get("level").and_then(|l| l.as_str()) {
            Some(level) if e.kind == lineage::EventKind::StepMessage => format!("{level}: {}", e.message),
            _ => e.message.clone(),
        };
        println!("  {}  {:<15} {:<36} {}", e.ts.format("%H:%M:%S%.3f"), e.kind.as_str(), subject, message);
    }
}
