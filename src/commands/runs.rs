//! `robo-assets runs`, `runs show RUN_ID`, `runs logs RUN_ID`.

use std::str::FromStr;

use lineage::{RunId, RunRecord, RunStatus};

use crate::ExitStatus;
use crate::app::App;
use crate::cli::{RunsArgs, RunsCommand};
use crate::commands::{parse_choice, print_json, short, show_key};
use crate::user_error;

fn parse_run_id(s: &str) -> anyhow::Result<RunId> {
    RunId::from_str(s)
        .map_err(|_| user_error(format!("{s:?} is not a run id (a UUID like 0193f1c2-…; see `robo-assets runs`)")))
}

async fn find(app: &App, s: &str) -> anyhow::Result<RunRecord> {
    let id = parse_run_id(s)?;
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
            let runs = app.store.runs(status, args.limit.max(1)).await?;
            if args.json {
                print_json(&runs)?;
                return Ok(ExitStatus::Success);
            }
            println!(
                "{:<36}  {:<9} {:<8} {:>5} {:<20} {:>10}  SELECTION",
                "RUN", "STATUS", "TRIGGER", "STEPS", "CREATED", "DURATION"
            );
            for r in runs {
                println!(
                    "{:<36}  {:<9} {:<8} {:>5} {:<20} {:>10}  {}",
                    r.id.to_string(),
                    r.status.as_str(),
                    r.trigger,
                    r.n_steps,
                    r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    duration(&r),
                    r.selection
                );
            }
        }
        Some(RunsCommand::Show { run_id, json }) => {
            let run = find(app, run_id).await?;
            let materializations = app.store.run_materializations(run.id).await?;
            let events = app.store.run_events(run.id).await?;
            if *json {
                print_json(&serde_json::json!({ "run": run, "materializations": materializations, "events": events }))?;
                return Ok(ExitStatus::Success);
            }
            println!("Run {}", run.id);
            println!("  status     {}", run.status);
            println!("  trigger    {}", run.trigger);
            println!("  selection  {}", run.selection);
            println!("  steps      {}", run.n_steps);
            println!("  created    {}", run.created_at.to_rfc3339());
            println!("  duration   {}", duration(&run));
            println!("  tags       {}", run.tags);
            println!("\nMaterializations ({}):", materializations.len());
            for m in &materializations {
                println!(
                    "  {:<36} data {}  attempt {}  {}",
                    format!("{} {}", m.asset_key, show_key(&m.partition_key)),
                    short(&m.data_version),
                    m.attempt,
                    m.storage_uri.as_deref().unwrap_or("(no output)")
                );
            }
            print_events(&events);
        }
        Some(RunsCommand::Logs { run_id, json }) => {
            let run = find(app, run_id).await?;
            let events = app.store.run_events(run.id).await?;
            if *json {
                print_json(&events)?;
            } else {
                print_events(&events);
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn print_events(events: &[lineage::RunEvent]) {
    println!("\nEvents ({}):", events.len());
    for e in events {
        let subject = match (&e.asset_key, &e.partition_key) {
            (Some(a), Some(p)) => format!("{a} {}", show_key(p)),
            _ => String::new(),
        };
        println!("  {}  {:<15} {:<36} {}", e.ts.format("%H:%M:%S%.3f"), e.kind.as_str(), subject, e.message);
    }
}
