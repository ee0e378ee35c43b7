//! `robo-assets requests [list|show ID|cancel ID]`.

use std::str::FromStr;

use lineage::{RequestId, RequestState, RunId};

use crate::app::App;
use crate::cli::{RequestsArgs, RequestsCommand};
use crate::commands::{parse_choice, print_json, show_key};
use crate::{ExitStatus, user_error};

fn parse_id(s: &str) -> anyhow::Result<RequestId> {
    RequestId::from_str(s)
        .map_err(|_| user_error(format!("{s:?} is not a request id (a UUID; see `robo-assets requests`)")))
}

pub async fn requests(app: &App, args: &RequestsArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        None | Some(RequestsCommand::List) => {
            let run = match &args.run {
                Some(r) => Some(RunId::from_str(r).map_err(|_| user_error(format!("{r:?} is not a run id")))?),
                None => None,
            };
            let state = match &args.state {
                Some(s) => Some(parse_choice::<RequestState>("request state", s)?),
                None => None,
            };
            let before = args.before.as_deref().map(parse_id).transpose()?;
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
            println!("{:<36}  {:<15} {:>7}  {:<36}  ASSET PARTITION", "REQUEST", "STATE", "ATTEMPT", "RUN");
            for r in list {
                println!(
                    "{:<36}  {:<15} {:>7}  {:<36}  {} {}",
                    r.id.to_string(),
                    r.state.as_str(),
                    format!("{}/{}", r.attempt, r.max_attempts),
                    r.run_id.to_string(),
                    r.asset_key,
                    show_key(&r.partition_key)
                );
            }
        }
        Some(RequestsCommand::Show { id }) => {
            let id = parse_id(id)?;
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
            let id = parse_id(id)?;
            match app.store.cancel_request(id, chrono::Utc::now()).await? {
                None => return Err(user_error(format!("no request with id {id}"))),
                Some(RequestState::Running) => println!("Request {id} is running: its worker was asked to stop"),
                Some(state) => println!("Request {id} is {state}"),
            }
        }
    }
    Ok(ExitStatus::Success)
}
