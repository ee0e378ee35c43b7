//! `robo-assets history ASSET`: materializations, newest first.

use crate::ExitStatus;
use crate::app::App;
use crate::cli::HistoryArgs;
use crate::commands::{human_bytes, lookup, print_json, short, show_key};
use crate::user_error;

pub async fn history(app: &App, args: &HistoryArgs) -> anyhow::Result<ExitStatus> {
    let id = lookup(app, &args.asset)?;
    let def = app.defs.graph().asset(id);
    let partition = match (&args.partition, &def.partitions) {
        (Some(k), Some(p)) => Some(
            p.resolve(k, &app.partitions_context().await?)
                .map_err(|e| user_error(format!("asset {}: {e}", def.key)))?,
        ),
        (Some(k), None) => {
            return Err(user_error(format!(
                "asset {} is not partitioned, so it takes no partition key (got {k:?})",
                def.key
            )));
        }
        (None, _) => None,
    };
    let records = app.store.history(def.key.as_str(), partition.as_deref(), args.limit.max(1)).await?;
    if args.json {
        print_json(&records)?;
        return Ok(ExitStatus::Success);
    }
    if records.is_empty() {
        println!(
            "{} has no materializations{}",
            def.key,
            partition.map(|p| format!(" for partition {p}")).unwrap_or_default()
        );
        return Ok(ExitStatus::Success);
    }
    println!(
        "{:>6}  {:<18} {:<20} {:<12} {:<5} {:>6} {:>10}  RUN",
        "ID", "PARTITION", "FINISHED", "DATA", "CODE", "ROWS", "BYTES"
    );
    for m in records {
        println!(
            "{:>6}  {:<18} {:<20} {:<12} {:<5} {:>6} {:>10}  {}",
            m.id,
            show_key(&m.partition_key),
            m.finished_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            short(&m.data_version),
            m.code_version,
            m.row_count.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            m.bytes.map(|b| human_bytes(b as u64)).unwrap_or_else(|| "-".into()),
            m.run_id
        );
    }
    Ok(ExitStatus::Success)
}
