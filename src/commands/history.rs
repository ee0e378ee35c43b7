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
    let limit = args.limit.max(1);
    let mut records = app.store.history(def.key.as_str(), partition.as_deref(), args.before, limit + 1).await?;
    let next_cursor = if records.len() as i64 > limit {
        records.truncate(limit as usize);
        records.last().map(|m| m.id)
    } else {
        None
    };
    let total =
        app.store.count(lineage::Counted::History { asset: def.key.as_str(), partition: partition.as_deref() }).await?;
    if args.json {
        print_json(&serde_json::json!({ "materializations": records, "total": total, "next_cursor": next_cursor }))?;
        return Ok(ExitStatus::Success);
    }
    if let Some(next) = next_cursor {
        eprintln!("{} of {total} shown; more: --before {next}", records.len());
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
        "{:>6}  {:<18} {:<20} {:<12} {:<5} {:>6} {:>10}  {:<8}  CHANGED SINCE THE PREVIOUS ONE",
        "ID", "PARTITION", "FINISHED", "DATA", "CODE", "ROWS", "BYTES", "RUN"
    );
    for m in &records {
        println!(
            "{:>6}  {:<18} {:<20} {:<12} {:<5} {:>6} {:>10}  {:<8}  {}",
            m.id,
            show_key(&m.partition_key),
            m.finished_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            short(&m.data_version),
            m.code_version,
            m.row_count.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            m.bytes.map(|b| human_bytes(b as u64)).unwrap_or_else(|| "-".into()),
            crate::commands::printed_short_id(lineage::IdKind::Run, &m.run_id.0),
            changes(app, m).await?
        );
    }
    Ok(ExitStatus::Success)
}

/// What changed between `m` and the materialization of the same partition before it: its data,
/// its code version, and which inputs it read at another version (or newly, or no longer).
async fn changes(app: &App, m: &lineage::MaterializationRecord) -> anyhow::Result<String> {
    // The partition's newest materialization older than `m`: one row through the history index.
    let Some(prev) = app.store.history(&m.asset_key, Some(&m.partition_key), Some(m.id), 1).await?.pop() else {
        return Ok("first materialization".to_owned());
    };
    let mut parts = Vec::new();
    parts.push(if prev.data_version == m.data_version { "same data".to_owned() } else { "new data".to_owned() });
    if prev.code_version != m.code_version {
        parts.push(format!("code {} → {}", prev.code_version, m.code_version));
    }
    let (now, before) = (app.store.inputs_of(m.id).await?, app.store.inputs_of(prev.id).await?);
    let key = |i: &lineage::InputVersion| (i.asset_key.clone(), i.partition_key.clone());
    let before_map: std::collections::HashMap<_, _> = before.iter().map(|i| (key(i), i.data_version.clone())).collect();
    let now_keys: std::collections::HashSet<_> = now.iter().map(key).collect();
    let changed: Vec<String> = now
        .iter()
        .filter(|i| before_map.get(&key(i)).is_some_and(|v| *v != i.data_version))
        .map(|i| format!("{} {}", i.asset_key, i.partition_key))
        .collect();
    let added = now.iter().filter(|i| !before_map.contains_key(&key(i))).count();
    let removed = before.iter().filter(|i| !now_keys.contains(&key(i))).count();
    if !changed.is_empty() {
        let shown: Vec<&str> = changed.iter().take(3).map(String::as_str).collect();
        let more = if changed.len() > 3 { format!(" and {} more", changed.len() - 3) } else { String::new() };
        parts.push(format!("read a new version of {}{more}", shown.join(", ")));
    }
    if added > 0 {
        parts.push(format!("{added} new input{}", if added == 1 { "" } else { "s" }));
    }
    if removed > 0 {
        parts.push(format!("{removed} input{} no longer read", if removed == 1 { "" } else { "s" }));
    }
    if changed.is_empty() && added == 0 && removed == 0 && !now.is_empty() {
        parts.push("same inputs".to_owned());
    }
    Ok(parts.join("; "))
}
