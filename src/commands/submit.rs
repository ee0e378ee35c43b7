//! `robo-assets submit`: request a materialization through the queue.

use std::time::Duration;

use engine::PlanOptions;
use lineage::{NewRun, RequestState, RunId, RunStatus};

use crate::app::App;
use crate::cli::SubmitArgs;
use crate::commands::{partition_spec, print_json, select};
use crate::{ExitStatus, user_error};

pub async fn submit(app: &App, args: &SubmitArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let selected = select(app, &args.selection)?;
    let ctx = app.partitions_context().await?;
    let targets = engine::plan::targets(graph, &selected, &partition_spec(&args.partitions), &ctx)
        .map_err(|e| user_error(e.to_string()))?;
    let options = PlanOptions { with_upstream: args.with_upstream };
    let snapshot = engine::backfill::CellStates::snapshot_for_plan(&*app.store, graph, &targets, &ctx, options).await?;
    let plan = engine::plan::plan(graph, &targets, &snapshot, &ctx, options).map_err(|e| user_error(e.to_string()))?;

    let run_id = RunId::new();
    let now = app.clock.now();
    // Without --key, every submission is new. A user's key lives in its own namespace
    // (`user:K`, never a system key such as `sched:…`) and names one selection: the same key
    // with the same cells returns the first run, with other cells it is refused.
    let mut cells = None;
    let key = match &args.key {
        None => format!("manual:{run_id}"),
        Some(k) => {
            if k.is_empty() || k.chars().count() > crate::commands::MAX_KEY_CHARS || k.chars().any(char::is_control) {
                return Err(user_error(format!(
                    "--key {} is not an idempotency key: give 1 to {} characters, no control characters",
                    crate::commands::clip(k),
                    crate::commands::MAX_KEY_CHARS
                )));
            }
            let key = format!("{USER_KEY_PREFIX}{k}");
            let digest = cells_digest(graph, &targets);
            if let Some(first) = keyed_run(app, &key, graph, &targets).await?
                && first.tags.get("cells").and_then(|c| c.as_str()) != Some(digest.as_str())
            {
                return Err(user_error(format!(
                    "--key {} was already used for another selection ({} in run {}): a key names one \
                     selection (its assets and partitions); submit the same selection to get that run again, \
                     or use a new key",
                    crate::commands::clip(k),
                    crate::commands::clip(&first.selection),
                    first.id
                )));
            }
            cells = Some(digest);
            key
        }
    };
    let (requests, edges) = engine::exec::plan_requests(&app.defs, &plan, run_id, &key, lineage::Trigger::Manual, now);
    // The run and its requests in one transaction: a worker claiming a request finds its run
    // (created after, it would stay queued for good once a fast worker had finished it).
    let run = NewRun {
        id: run_id,
        trigger: lineage::Trigger::Manual,
        selection: args.selection.clone(),
        n_steps: 0,
        tags: match &cells {
            Some(cells) => serde_json::json!({ "idempotency_key": key, "cells": cells }),
            None => serde_json::json!({ "idempotency_key": key }),
        },
        created_at: now,
        owner: None,
    };
    let outcomes = app.store.submit_run(&run, &requests, &edges, None).await?;
    let inserted = outcomes.iter().filter(|o| o.inserted).count();
    let run_id = if inserted > 0 {
        run_id
    } else {
        // Everything was already requested: follow the first submission's run.
        app.store.request(outcomes[0].id).await?.map(|r| r.run_id).unwrap_or(run_id)
    };
    if args.json {
        print_json(&serde_json::json!({ "run_id": run_id, "requests": outcomes }))?;
    } else {
        println!(
            "Run {run_id}: {} request{} ({inserted} new, {} already requested)",
            outcomes.len(),
            if outcomes.len() == 1 { "" } else { "s" },
            outcomes.len() - inserted
        );
        // What each request materializes: a bare request id says nothing.
        for (o, r) in outcomes.iter().zip(&requests).take(5) {
            println!("  {} {}  request {}", r.asset_key, crate::commands::show_key(&r.partition_key), o.id);
        }
        if outcomes.len() > 5 {
            println!("  … see `robo-assets requests --run {run_id}`");
        }
    }
    if !args.wait {
        return Ok(ExitStatus::Success);
    }
    wait(app, run_id, outcomes.len()).await
}

/// The namespace of `submit --key K`: stored as `user:K`, so no user key can take one the
/// system makes (`sched:…`, `sensor:…`, `manual:…`, backfills').
pub(crate) const USER_KEY_PREFIX: &str = "user:";

/// What a user key covers: the selected cells (asset, partition), as one digest.
fn cells_digest(graph: &engine::AssetGraph, targets: &[(engine::AssetId, Vec<String>)]) -> String {
    let mut cells: Vec<(String, &str)> = targets
        .iter()
        .flat_map(|(id, keys)| keys.iter().map(move |k| (graph.asset(*id).key.to_string(), k.as_str())))
        .collect();
    cells.sort();
    cells.dedup();
    let mut hasher = blake3::Hasher::new();
    for (asset, partition) in &cells {
        hasher.update(asset.as_bytes()).update(b"\0").update(partition.as_bytes()).update(b"\n");
    }
    hasher.finalize().to_hex().to_string()
}

/// The first manual run submitted with `key`, if any: among the manual runs with a step of one
/// of the selected assets (a run of the same key has requests of its selection's assets).
async fn keyed_run(
    app: &App,
    key: &str,
    graph: &engine::AssetGraph,
    targets: &[(engine::AssetId, Vec<String>)],
) -> anyhow::Result<Option<lineage::RunRecord>> {
    let mut found = None;
    for (id, _) in targets {
        let mut filter = lineage::RunFilter {
            trigger: Some(lineage::Trigger::Manual),
            asset: Some(graph.asset(*id).key.to_string()),
            limit: 1_000,
            ..Default::default()
        };
        loop {
            let page = app.store.runs(&filter).await?;
            let Some(last) = page.last().map(|r| r.id) else { break };
            for run in page {
                if run.tags.get("idempotency_key").and_then(|k| k.as_str()) == Some(key) {
                    // Pages run newest first: the last match seen is the first run.
                    found = Some(run);
                }
            }
            filter.before = Some(last);
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(found)
}

/// How long `submit --wait` waits for a worker to claim one of its requests before it says that
/// none seems to be running.
const NO_WORKER_HINT_AFTER: Duration = Duration::from_secs(5);

/// Follows a run until it ends, printing progress on stderr. When none of its requests has been
/// claimed after [`NO_WORKER_HINT_AFTER`] while some could be, and no worker holds a lease on
/// anything, it says (once) that no worker seems to be running and how to start one, and keeps
/// waiting: a worker started later carries the run out.
async fn wait(app: &App, run_id: RunId, total: usize) -> anyhow::Result<ExitStatus> {
    let mut last = String::new();
    let started = tokio::time::Instant::now();
    let mut hinted = false;
    loop {
        let requests = app.store.requests(Some(run_id), None, None, total as i64 + 1).await?;
        let count = |s: RequestState| requests.iter().filter(|r| r.state == s).count();
        let line = format!(
            "{}/{} done ({} running, {} waiting, {} failed)",
            count(RequestState::Succeeded),
            requests.len(),
            count(RequestState::Running),
            count(RequestState::Available) + count(RequestState::Blocked),
            count(RequestState::Failed) + count(RequestState::UpstreamFailed),
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        let untouched = requests.iter().all(|r| r.attempt == 0 && !r.state.is_terminal());
        if !hinted && untouched && started.elapsed() >= NO_WORKER_HINT_AFTER {
            let claimable = requests.iter().any(|r| r.state == RequestState::Available);
            if claimable && app.store.lease_holders().await?.is_empty() {
                eprintln!(
                    "No worker has claimed any of these requests in {}s and no worker holds any: is one running? \
                     Start one with `robo-assets worker` (against the same ROBO_ASSETS_HOME or ROBO_ASSETS_LINEAGE_URL); \
                     this keeps waiting (Ctrl-C stops waiting; the run stays queued).",
                    NO_WORKER_HINT_AFTER.as_secs()
                );
            }
            hinted = true;
        }
        if let Some(run) = app.store.run(run_id).await?
            && run.status.is_terminal()
        {
            println!("Run {run_id} {}", run.status);
            return Ok(match run.status {
                RunStatus::Succeeded => ExitStatus::Success,
                RunStatus::Canceled => ExitStatus::Canceled,
                _ => ExitStatus::Failure,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
