//! `robo-assets materialize`: plan, then run, with progress and a summary.

use std::sync::Arc;

use engine::backfill::{BackfillPolicy, CellStates};
use engine::{PlanOptions, RunConfig, RunOutcome, StepStatus};
use lineage::RunStatus;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::MaterializeArgs;
use crate::commands::{human_bytes, partition_spec, print_json, select, short, show_key};
use crate::progress::Progress;
use crate::{ExitStatus, user_error};

/// Above this many steps, the summary groups steps by asset.
const MAX_LISTED_STEPS: usize = 40;

pub async fn materialize(app: &App, args: &MaterializeArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let selected = select(app, &args.selection)?;
    // Planning reads the selection and its upstream, never other assets: only their dynamic
    // definitions' keys are loaded (a statement each).
    let upstream = graph.upstream_closure(&selected, None);
    let ctx = app.partitions_context_of(&upstream.iter().copied().collect::<Vec<_>>()).await?;
    let targets = engine::plan::targets(graph, &selected, &partition_spec(&args.partitions), &ctx)
        .map_err(|e| user_error(e.to_string()))?;
    let (plan, skipped) = if args.stale {
        // The backfill planner's `stale` policy: one definition of stale everywhere.
        let states = CellStates::load(&*app.store, graph, upstream).await?;
        let bf = engine::backfill::plan_backfill(graph, &targets, &states, BackfillPolicy::Stale, &ctx)
            .map_err(|e| user_error(e.to_string()))?;
        let skipped = bf.assets.iter().flat_map(|a| &a.skipped).map(|(_, keys)| keys.len()).sum::<usize>();
        (bf.plan, Some(skipped))
    } else {
        let options = PlanOptions { with_upstream: args.with_upstream };
        let snapshot = CellStates::snapshot_for_plan(&*app.store, graph, &targets, &ctx, options).await?;
        let plan =
            engine::plan::plan(graph, &targets, &snapshot, &ctx, options).map_err(|e| user_error(e.to_string()))?;
        (plan, None)
    };
    if let Some(fresh) = skipped
        && !args.json
    {
        eprintln!("--stale: {fresh} fresh partition{} skipped", if fresh == 1 { "" } else { "s" });
    }
    if plan.steps.is_empty() {
        // No run: nothing is recorded, and the JSON says there were no steps.
        if args.json {
            print_json(&serde_json::json!({ "steps": [] }))?;
        } else if skipped.is_some() {
            println!("Nothing is stale or missing: no step to run.");
        } else {
            println!("No step to run.");
        }
        return Ok(ExitStatus::Success);
    }

    if args.dry_run {
        if args.json {
            let steps: Vec<_> = plan
                .steps
                .iter()
                .map(|s| serde_json::json!({"asset": graph.asset(s.asset).key, "partition": s.partition_key, "deps": s.deps}))
                .collect();
            print_json(&serde_json::json!({ "steps": steps }))?;
        } else {
            println!(
                "Plan: {} step{} (dry run, nothing was run)",
                plan.steps.len(),
                if plan.steps.len() == 1 { "" } else { "s" }
            );
            print!("{}", plan.render(graph));
        }
        return Ok(ExitStatus::Success);
    }

    let exec = app.executor().await?;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let progress = Arc::new(Progress::new());
    let config = RunConfig {
        concurrency: args.concurrency as usize,
        trigger: lineage::Trigger::Manual,
        selection: args.selection.clone(),
        tags: serde_json::json!({ "partition": args.partitions.partition, "from": args.partitions.from, "to": args.partitions.to }),
    };
    let outcome = exec.execute(&plan, &config, progress.clone(), cancel).await?;
    progress.finish();

    // The run's check verdicts, as `checks` and `runs show` name them.
    let check_results = app.store.run_check_results(outcome.run_id).await?;
    if args.json {
        print_json(&MaterializeBody { outcome: &outcome, check_results: &check_results })?;
        for r in check_results.iter().filter(|r| !r.passed) {
            eprintln!("warning: check failed: {}", crate::commands::check_line(r));
        }
    } else {
        print_summary(&outcome);
        crate::commands::print_checks(&check_results);
    }
    Ok(match outcome.status {
        RunStatus::Succeeded => ExitStatus::Success,
        RunStatus::Canceled => ExitStatus::Canceled,
        _ => ExitStatus::Failure,
    })
}

/// The body of `materialize --json`: the run's outcome and its check verdicts.
#[derive(serde::Serialize)]
struct MaterializeBody<'a> {
    #[serde(flatten)]
    outcome: &'a RunOutcome,
    check_results: &'a [lineage::CheckResultRecord],
}

/// First Ctrl-C (or SIGTERM) cancels the run cleanly; a second Ctrl-C exits at once.
pub(crate) async fn cancel_on_signal(cancel: CancellationToken) {
    let terminate = async {
        #[cfg(unix)]
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    eprintln!("Canceling: waiting for running steps to stop (Ctrl-C again to exit at once)…");
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

fn print_summary(outcome: &RunOutcome) {
    let count = |f: fn(&StepStatus) -> bool| outcome.steps.iter().filter(|s| f(&s.status)).count();
    let ok = count(|s| matches!(s, StepStatus::Succeeded { .. }));
    let failed = count(|s| matches!(s, StepStatus::Failed { .. }));
    let skipped = count(|s| matches!(s, StepStatus::Skipped { .. }));
    let canceled = count(|s| matches!(s, StepStatus::Canceled));
    println!(
        "Run {} {}: {} step{} in {:.2?} ({ok} materialized, {failed} failed, {skipped} skipped, {canceled} canceled)",
        outcome.run_id,
        outcome.status,
        outcome.steps.len(),
        if outcome.steps.len() == 1 { "" } else { "s" },
        outcome.duration,
    );
    let listed: Vec<_> = if outcome.steps.len() <= MAX_LISTED_STEPS {
        outcome.steps.iter().collect()
    } else {
        let mut per_asset: Vec<(String, usize, u64)> = Vec::new();
        for step in &outcome.steps {
            if let StepStatus::Succeeded { bytes, .. } = &step.status {
                match per_asset.iter_mut().find(|(a, _, _)| a == step.asset.as_str()) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 += bytes.unwrap_or(0);
                    }
                    None => per_asset.push((step.asset.to_string(), 1, bytes.unwrap_or(0))),
                }
            }
        }
        for (asset, n, bytes) in per_asset {
            println!("  {asset:<20} {n:>6} materialized  {}", human_bytes(bytes));
        }
        outcome
            .steps
            .iter()
            .filter(|s| !matches!(s.status, StepStatus::Succeeded { .. } | StepStatus::Canceled))
            .collect()
    };
    for step in listed {
        let name = format!("{} {}", step.asset, show_key(&step.partition_key));
        let time = format!("{:.1?}", step.duration);
        match &step.status {
            StepStatus::Succeeded { data_version, storage_uri, bytes, rows, attempt, .. } => {
                let size = match (bytes, rows) {
                    (Some(b), Some(r)) => format!(" ({}, {r} rows)", human_bytes(*b)),
                    _ => String::new(),
                };
                let retried = if *attempt > 1 { format!(" after {attempt} attempts") } else { String::new() };
                println!(
                    "  ✓ {name:<36} {time:>9}  {}  {}{size}{retried}",
                    short(data_version),
                    storage_uri.as_deref().unwrap_or("(no output)")
                );
            }
            StepStatus::Failed { error, attempts } => {
                println!("  ✗ {name:<36} {time:>9}  failed after {attempts} attempt(s): {error}");
            }
            StepStatus::Skipped { reason } => {
                println!("  - {name:<36} {:>9}  skipped: {reason}", "");
            }
            StepStatus::Canceled => println!("  - {name:<36} {:>9}  canceled", ""),
        }
    }
}
