//! `robo-assets backfill`: plan, persist and follow a backfill; list, status, cancel, resume
//! and retry-failed.

use std::sync::Arc;

use engine::backfill::{BackfillPlan, BackfillPolicy, BackfillSpec, CellStates};
use engine::{Executor, PartitionSpec};
use lineage::{BackfillId, BackfillRecord, IdKind, RequestState, RunId, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::{BackfillArgs, BackfillCommand, BackfillLaunchArgs, BackfillRunArgs};
use crate::commands::materialize::cancel_on_signal;
use crate::commands::{print_json, printed_id, printed_short_id, resolve_id, select};
use crate::progress::BackfillProgress;
use crate::{ExitStatus, user_error};

pub async fn backfill(app: &App, args: &BackfillArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        None => launch(app, &args.launch).await,
        Some(BackfillCommand::List { limit, before, json }) => list(app, *limit, before.as_deref(), *json).await,
        Some(BackfillCommand::Status { id, json }) => status(app, &load(app, id).await?, *json).await,
        Some(BackfillCommand::Cancel { id }) => cancel(app, &load(app, id).await?).await,
        Some(BackfillCommand::Resume { id, run }) => resume(app, &load(app, id).await?, run).await,
        Some(BackfillCommand::RetryFailed { id, run }) => retry_failed(app, &load(app, id).await?, run).await,
    }
}

/// The cells `policy` keeps of `selection` over `from..=to`, against the store as it is now.
async fn plan(app: &App, spec: &BackfillSpec, policy: BackfillPolicy) -> anyhow::Result<BackfillPlan> {
    let graph = app.defs.graph();
    let selected = select(app, &spec.selection)?;
    let ctx = app.partitions_context().await?;
    let targets =
        engine::plan::targets(graph, &selected, &PartitionSpec::Range(spec.from.clone(), spec.to.clone()), &ctx)
            .map_err(|e| user_error(e.to_string()))?;
    let states = CellStates::load(&*app.store, graph, graph.upstream_closure(&selected, None)).await?;
    engine::backfill::plan_backfill(graph, &targets, &states, policy, &ctx).map_err(|e| user_error(e.to_string()))
}

async fn launch(app: &App, args: &BackfillLaunchArgs) -> anyhow::Result<ExitStatus> {
    let (Some(selection), Some(from), Some(to)) = (&args.selection, &args.from, &args.to) else {
        return Err(user_error("backfill needs SELECTION, --from and --to (or a subcommand: list, status, …)"));
    };
    let (from, to) = (&crate::commands::with_dims(from, &args.dims), &crate::commands::with_dims(to, &args.dims));
    let spec = BackfillSpec { selection: selection.clone(), from: from.clone(), to: to.clone() };
    let policy = args.policy;
    let bf = plan(app, &spec, policy).await?;
    let graph = app.defs.graph();
    if args.dry_run {
        if args.json {
            print_json(&serde_json::json!({
                "cells": bf.cells(), "policy": policy, "assets": bf.assets, "skipped": bf.skipped_json(graph),
            }))?;
        } else {
            println!(
                "Backfill plan: {selection} from {from} to {to}, policy {policy}: {} cell{} (dry run, nothing was submitted)",
                bf.cells(),
                if bf.cells() == 1 { "" } else { "s" }
            );
            print!("{}", bf.render(graph));
            if bf.cells() > 0 {
                println!("Cells run in dependency order: each one as soon as the cells it reads are done.");
            }
        }
        return Ok(ExitStatus::Success);
    }
    if bf.cells() == 0 {
        println!("Nothing to backfill: policy {policy} leaves no cell of {selection} from {from} to {to}.");
        print!("{}", bf.render(graph));
        return Ok(ExitStatus::Success);
    }
    let exec = app.executor().await?;
    let (id, run) = engine::backfill::launch(&exec, &spec, &bf).await?;
    if args.json {
        print_json(&serde_json::json!({ "backfill_id": id, "run_id": run, "cells": bf.cells() }))?;
    } else {
        println!(
            "Backfill {}: {} cell{} of {selection} from {from} to {to} (policy {policy}), run {run}",
            backfill_text(id),
            bf.cells(),
            if bf.cells() == 1 { "" } else { "s" }
        );
    }
    follow(app, &exec, id, run, &args.run, args.json).await
}

/// Runs the backfill's run here (unless `--detach`) with progress, then prints its status.
async fn follow(
    app: &App,
    exec: &Executor,
    id: BackfillId,
    run: RunId,
    args: &BackfillRunArgs,
    quiet: bool,
) -> anyhow::Result<ExitStatus> {
    if args.detach {
        if !quiet {
            println!(
                "Submitted: `robo-assets worker` processes carry it out; follow it with `robo-assets backfill status {}`.",
                backfill_text(id)
            );
        }
        return Ok(ExitStatus::Success);
    }
    let record = load(app, &id.to_string()).await?;
    let progress = engine::status::backfill_progress(&*app.store, app.defs.graph(), &record).await?;
    let assets: Vec<(String, usize, usize)> =
        progress.assets.iter().map(|(a, c)| (a.clone(), c.done as usize, c.total() as usize)).collect();
    let progress = Arc::new(BackfillProgress::new(&assets));
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    engine::backfill::drive(exec, run, args.concurrency as usize, progress.clone(), cancel).await?;
    progress.finish();
    let record = load(app, &id.to_string()).await?;
    if !quiet {
        status(app, &record, false).await?;
    }
    Ok(match record.status {
        RunStatus::Succeeded => ExitStatus::Success,
        RunStatus::Canceled => ExitStatus::Canceled,
        _ => ExitStatus::Failure,
    })
}

/// A backfill id as text prints it: `bf-` and the UUID ([`crate::commands::BACKFILL_ID_PREFIX`]).
fn backfill_text(id: BackfillId) -> String {
    printed_id(IdKind::Backfill, &id.0)
}

/// The backfill a command names: by its whole id or a unique beginning or end ([`resolve_id`]).
async fn load(app: &App, id: &str) -> anyhow::Result<BackfillRecord> {
    let id = BackfillId(resolve_id(app, IdKind::Backfill, id).await?);
    app.store.backfills(Some(id), None, 1).await?.into_iter().next().ok_or_else(|| {
        user_error(format!(
            "no backfill {} in {} (see `robo-assets backfill list`)",
            backfill_text(id),
            app.store.describe()
        ))
    })
}

async fn status(app: &App, record: &BackfillRecord, json: bool) -> anyhow::Result<ExitStatus> {
    let progress = engine::status::backfill_progress(&*app.store, app.defs.graph(), record).await?;
    let skipped = record.skipped.as_array().cloned().unwrap_or_default();
    let failed = app.store.requests(Some(record.run_id), Some(RequestState::Failed), None, 1_000).await?;
    if json {
        let assets: Vec<_> = progress
            .assets
            .iter()
            .map(|(a, c)| serde_json::json!({ "asset": a, "cells": c.total(), "counts": c }))
            .collect();
        let failed: Vec<_> = failed
            .iter()
            .map(|r| serde_json::json!({ "asset": r.asset_key, "partition": r.partition_key, "error": r.last_error, "attempts": r.attempt }))
            .collect();
        print_json(&serde_json::json!({ "backfill": record, "assets": assets, "failed": failed }))?;
        return Ok(ExitStatus::Success);
    }
    println!(
        "Backfill {}: {} from {} to {}, policy {}: {} (run {})",
        backfill_text(record.id),
        record.selection,
        record.partition_from,
        record.partition_to,
        record.policy,
        record.status,
        record.run_id
    );
    println!(
        "  {:<20} {:>7} {:>7} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8}",
        "ASSET", "CELLS", "DONE", "RUNNING", "QUEUED", "FAILED", "UPSTREAM", "CANCELED", "SKIPPED"
    );
    for (asset, c) in &progress.assets {
        println!(
            "  {:<20} {:>7} {:>7} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8}",
            asset,
            c.total(),
            c.done,
            c.running,
            c.queued,
            c.failed,
            c.upstream_failed,
            c.canceled,
            c.skipped
        );
    }
    println!("  (UPSTREAM: waiting on a failed cell; SKIPPED: left out by the policy, not requested)");
    if !failed.is_empty() {
        // Cells that failed alike (same asset, same error) are one line with their count and
        // partitions: a bad credential fails every hour the same way.
        let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&lineage::RequestRecord>> = Default::default();
        for r in &failed {
            groups
                .entry((r.asset_key.as_str(), r.last_error.as_deref().unwrap_or("(no error recorded)")))
                .or_default()
                .push(r);
        }
        println!("Failed cells ({}):", failed.len());
        for ((asset, error), cells) in groups.iter().take(20) {
            let attempts = cells.iter().map(|r| r.attempt).max().unwrap_or(0);
            let after = format!("after {attempts} attempt{}", if attempts == 1 { "" } else { "s" });
            if let [r] = cells.as_slice() {
                println!("  ✗ {asset} {} {after}: {error}", r.partition_key);
                continue;
            }
            let def = app.defs.graph().lookup(asset).ok().and_then(|id| app.defs.graph().asset(id).partitions.as_ref());
            let keys: Vec<String> = cells.iter().map(|r| r.partition_key.clone()).collect();
            let ranges = engine::partition::compress_ranges(def, &keys);
            let mut shown = ranges.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            if ranges.len() > 8 {
                shown.push_str(", …");
            }
            println!("  ✗ {} × {asset} failed {after}: {error}", cells.len());
            println!("      {shown}");
        }
        if groups.len() > 20 {
            println!(
                "  … and {} more kinds of failure (`robo-assets backfill status {} --json`)",
                groups.len() - 20,
                backfill_text(record.id)
            );
        }
        println!(
            "Re-run them and what depends on them: robo-assets backfill retry-failed {}",
            backfill_text(record.id)
        );
    }
    for s in &skipped {
        let keys: Vec<&str> =
            s["keys"].as_array().map(|k| k.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        let reason = s["reason"].as_str().unwrap_or_default().replace('_', " ");
        println!(
            "Skipped {} {} ({}): {}",
            s["count"],
            s["asset"].as_str().unwrap_or_default(),
            reason,
            keys.join(", ")
        );
    }
    Ok(ExitStatus::Success)
}

async fn list(app: &App, limit: i64, before: Option<&str>, json: bool) -> anyhow::Result<ExitStatus> {
    let before = match before {
        Some(b) => Some(BackfillId(resolve_id(app, IdKind::Backfill, b).await?)),
        None => None,
    };
    let mut backfills = app.store.backfills(None, before, limit + 1).await?;
    let next_cursor = if backfills.len() as i64 > limit {
        backfills.truncate(limit as usize);
        backfills.last().map(|b| b.id)
    } else {
        None
    };
    let total = app.store.count(lineage::Counted::Backfills).await?;
    if json {
        print_json(&serde_json::json!({ "backfills": backfills, "total": total, "next_cursor": next_cursor }))?;
        return Ok(ExitStatus::Success);
    }
    if let Some(next) = next_cursor {
        eprintln!("{} of {total} shown; more: --before {}", backfills.len(), backfill_text(next));
    }
    if backfills.is_empty() {
        println!("No backfills yet. Start one: robo-assets backfill +storage_bill --from 2025-12-01 --to 2025-12-31");
        return Ok(ExitStatus::Success);
    }
    println!(
        "{:<11}  {:<9}  {:<7}  {:>11}  {:<20}  SELECTION AND RANGE",
        "BACKFILL", "STATUS", "POLICY", "DONE/CELLS", "CREATED"
    );
    for b in backfills {
        let (done, _) = engine::status::backfill_progress(&*app.store, app.defs.graph(), &b).await?.done_of_total();
        println!(
            "{:<11}  {:<9}  {:<7}  {:>11}  {:<20}  {} {} → {}",
            printed_short_id(IdKind::Backfill, &b.id.0),
            b.status.to_string(),
            b.policy,
            format!("{done}/{}", b.cells),
            b.created_at.format("%Y-%m-%d %H:%M:%S"),
            b.selection,
            b.partition_from,
            b.partition_to
        );
    }
    Ok(ExitStatus::Success)
}

async fn cancel(app: &App, record: &BackfillRecord) -> anyhow::Result<ExitStatus> {
    if record.status.is_terminal() {
        println!("Backfill {} already ended: {}", backfill_text(record.id), record.status);
        return Ok(ExitStatus::Success);
    }
    let (canceled, asked) = app.store.cancel_run(record.run_id, app.clock.now()).await?;
    println!(
        "Backfill {}: {canceled} waiting cell{} canceled; {asked} running cell{} asked to stop (they end within a heartbeat).",
        backfill_text(record.id),
        if canceled == 1 { "" } else { "s" },
        if asked == 1 { "" } else { "s" },
    );
    Ok(ExitStatus::Success)
}

async fn resume(app: &App, record: &BackfillRecord, args: &BackfillRunArgs) -> anyhow::Result<ExitStatus> {
    if record.status == RunStatus::Succeeded {
        println!("Backfill {} is complete: nothing to resume.", backfill_text(record.id));
        return Ok(ExitStatus::Success);
    }
    let exec = app.executor().await?;
    let released = engine::release_dead_local_workers(&*exec.store).await?.requests.len();
    // Cells the first submission did not reach (a crash mid-submission) are requested after the
    // reopening; requested ones keep their request (same key). Planned first: a plan that fails
    // leaves the canceled cells as they were.
    let spec = BackfillSpec {
        selection: record.selection.clone(),
        from: record.partition_from.clone(),
        to: record.partition_to.clone(),
    };
    let policy = record.policy;
    let bf = plan(app, &spec, policy).await?;
    // One transaction: a worker finishing the reopened cells cannot end the run before the new
    // ones are in it, and if the reopened ones all failed upstream again at once, with nothing
    // new, the run ends there rather than wait, queued, for work that will not come.
    let (reopened, added) =
        engine::backfill::resume(&exec, record.id, record.run_id, &bf.plan, engine::backfill::RESUME_REOPENS).await?;
    println!(
        "Resuming backfill {}: {released} cell{} of a stopped process back in the queue, {reopened} canceled or upstream_failed cell{} reopened, {added} new cell{} requested",
        backfill_text(record.id),
        if released == 1 { "" } else { "s" },
        if reopened == 1 { "" } else { "s" },
        if added == 1 { "" } else { "s" },
    );
    follow(app, &exec, record.id, record.run_id, args, false).await
}

async fn retry_failed(app: &App, record: &BackfillRecord, args: &BackfillRunArgs) -> anyhow::Result<ExitStatus> {
    let reopened = app
        .store
        .reopen_requests(record.run_id, &[RequestState::Failed, RequestState::UpstreamFailed], app.clock.now())
        .await?;
    if reopened == 0 {
        println!("Backfill {} has no failed cells.", backfill_text(record.id));
        return Ok(ExitStatus::Success);
    }
    app.store.finish_run(record.run_id, app.clock.now()).await?;
    println!(
        "Backfill {}: {reopened} failed cell{} and cells downstream of them back in the queue",
        backfill_text(record.id),
        if reopened == 1 { "" } else { "s" }
    );
    let exec = app.executor().await?;
    follow(app, &exec, record.id, record.run_id, args, false).await
}
