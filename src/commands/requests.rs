//! `robo-assets requests [list|show ID|cancel ID]`.

use lineage::{IdKind, RequestId, RequestState};

use crate::app::App;
use crate::cli::{RequestsArgs, RequestsCommand};
use crate::commands::runs::resolve_run;
use crate::commands::{parse_choice, print_json, printed_short_id, resolve_id, show_key};
use crate::{ExitStatus, user_error};

/// A request id given on the command line: whole or abbreviated ([`resolve_id`]).
async fn resolve_request(app: &App, given: &str) -> anyhow::Result<RequestId> {
    Ok(RequestId(resolve_id(app, IdKind::Request, given).await?))
}

pub async fn requests(app: &App, args: &RequestsArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        None | Some(RequestsCommand::List) => {
            let run = match &args.run {
                Some(r) => Some(resolve_run(app, r).await?),
                None => None,
            };
            let state = match &args.state {
                Some(s) => Some(parse_choice::<RequestState>("request state", s)?),
                None => None,
            };
            let before = match &args.before {
                Some(b) => Some(resolve_request(app, b).await?),
                None => None,
            };
            let mut list = app.store.requests(run, state, before, args.limit + 1).await?;
            let next_cursor = if list.len() as i64 > args.limit {
                list.truncate(args.limit as usize);
                list.last().map(|r| r.id)
            } else {
                None
            };
            let total = app.store.count(lineage::Counted::Requests { run, state }).await?;
            if args.json {
                print_json(&serde_json::json!({ "requests": list, "total": total, "next_cursor": next_cursor }))?;
                return Ok(ExitStatus::Success);
            }
            if let Some(next) = next_cursor {
                eprintln!("{} of {total} shown; more: --before {next}", list.len());
            }
            println!("{:<8}  {:<15} {:>7}  {:<8}  ASSET PARTITION", "REQUEST", "STATE", "ATTEMPT", "RUN");
            for r in list {
                println!(
                    "{:<8}  {:<15} {:>7}  {:<8}  {} {}",
                    printed_short_id(IdKind::Request, &r.id.0),
                    r.state.as_str(),
                    format!("{}/{}", r.attempt, r.max_attempts),
                    printed_short_id(IdKind::Run, &r.run_id.0),
                    r.asset_key,
                    show_key(&r.partition_key)
                );
            }
        }
        Some(RequestsCommand::Show { id }) => {
            let id = resolve_request(app, id).await?;
            let r = app.store.request(id).await?.ok_or_else(|| user_error(format!("no request with id {id}")))?;
            if args.json {
                print_json(&r)?;
            } else {
                println!("Request {}", r.id);
                println!("  key        {}", r.idempotency_key);
                println!("  run        {}", r.run_id);
                println!("  asset      {} {}", r.asset_key, show_key(&r.partition_key));
                println!("  state      {}", r.state);
                println!("  attempt    {}/{}", r.attempt, r.max_attempts);
                println!("  lease      {}", r.lease_owner.as_deref().unwrap_or("-"));
                println!("  error      {}", r.last_error.as_deref().unwrap_or("-"));
                println!("  created    {}", r.created_at.to_rfc3339());
            }
        }
        Some(RequestsCommand::Cancel { id }) => {
            let id = resolve_request(app, id).await?;
            match app.store.cancel_request(id, chrono::Utc::now()).await? {
                None => return Err(user_error(format!("no request with id {id}"))),
                Some(RequestState::Running) => println!("Request {id} is running: its worker was asked to stop"),
                Some(state) => println!("Request {id} is {state}"),
            }
        }
    }
    Ok(ExitStatus::Success)
}
