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
    let snapshot = app.snapshot(graph.upstream_closure(&selected, None)).await?;
    let plan = engine::plan::plan(graph, &targets, &snapshot, &ctx, PlanOptions { with_upstream: args.with_upstream })
        .map_err(|e| user_error(e.to_string()))?;

    let run_id = RunId::new();
    let now = app.clock.now();
    // Without --key, every submission is new; with it, the same key returns the first requests.
    if let Some(k) = &args.key
        && (k.is_empty() || k.chars().count() > crate::commands::MAX_KEY_CHARS || k.chars().any(char::is_control))
    {
        return Err(crate::user_error(format!(
            "--key {} is not an idempotency key: give 1 to {} characters, no control characters",
            crate::commands::clip(k),
            crate::commands::MAX_KEY_CHARS
        )));
    }
    let key = args.key.clone().unwrap_or_else(|| format!("manual:{run_id}"));
    let (requests, edges) = engine::exec::plan_requests(&app.defs, &plan, run_id, &key, lineage::Trigger::Manual, now);
    let outcomes = app.store.submit_requests(&requests, &edges).await?;
    let inserted = outcomes.iter().filter(|o| o.inserted).count();
    let run_id = if inserted > 0 {
        app.store
            .create_run(&NewRun {
                id: run_id,
                trigger: lineage::Trigger::Manual,
                selection: args.selection.clone(),
                n_steps: inserted as i64,
                tags: serde_json::json!({ "idempotency_key": key }),
                created_at: now,
                owner: None,
            })
            .await?;
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

/// Follows a run until it ends, printing progress on stderr.
async fn wait(app: &App, run_id: RunId, total: usize) -> anyhow::Result<ExitStatus> {
    let mut last = String::new();
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
