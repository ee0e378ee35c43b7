//! `robo-assets list`.

use serde_json::json;

use crate::ExitStatus;
use crate::app::App;
use crate::cli::ListArgs;

/// A description's first sentence (or line), at most 60 characters: the full text is in
/// `list --json` and the web view.
fn summary(description: &str) -> String {
    let first = description.lines().next().unwrap_or_default().trim();
    let first = first.split_once(". ").map_or(first, |(s, _)| s).trim_end_matches('.');
    if first.is_empty() {
        return "-".to_owned();
    }
    if first.chars().count() > 60 {
        format!("{}…", first.chars().take(59).collect::<String>())
    } else {
        first.to_owned()
    }
}

pub async fn list(app: &App, args: &ListArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let ctx = app.partitions_context().await?;
    let rows: Vec<_> = graph
        .topo_order()
        .iter()
        .map(|&id| {
            let def = graph.asset(id);
            let deps: Vec<String> = graph.upstream(id).iter().map(|e| graph.asset(e.asset).key.to_string()).collect();
            let partitions = def.partitions.as_ref().map(|p| {
                let keys = p.len(&ctx);
                let first_last = match p.as_time_window() {
                    Some(tw) => format!("from {}", tw.key(0)),
                    None => String::new(),
                };
                (p.describe(), first_last, keys)
            });
            (def, deps, partitions)
        })
        .collect();
    if args.json {
        let value: Vec<_> = rows
            .iter()
            .map(|(def, deps, partitions)| {
                json!({
                    "asset": def.key,
                    "group": def.group,
                    "description": def.description,
                    "owners": def.owners,
                    "tags": def.tags,
                    "code_version": def.code_version,
                    "deps": deps,
                    // `partitions` is the definition in words, as in `status` and `lineage`;
                    // `partitions_def` is its structure.
                    "partitions": partitions.as_ref().map(|(d, _, _)| d),
                    "partitions_def": def.partitions.as_ref().zip(partitions.as_ref()).map(|(p, (d, _, n))| {
                        let mut v = partitions_def_json(p);
                        v["description"] = json!(d);
                        v["count"] = json!(n);
                        v
                    }),
                    "retry": def.retry,
                })
            })
            .collect();
        crate::commands::print_json(&value)?;
        return Ok(ExitStatus::Success);
    }
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|(def, deps, partitions)| {
            let parts = match partitions {
                Some((d, from, n)) if from.is_empty() => format!("{d} ({n})"),
                Some((d, from, n)) => format!("{d} {from} ({n})"),
                None => "-".to_owned(),
            };
            let deps = if deps.is_empty() { "-".to_owned() } else { deps.join(", ") };
            [def.key.to_string(), def.group.clone(), parts, deps, def.code_version.clone(), summary(&def.description)]
        })
        .collect();
    // Columns as wide as their widest cell, so long names and multi-dimensional partitions align.
    let header = ["ASSET", "GROUP", "PARTITIONS", "DEPS", "CODE", "DESCRIPTION"].map(str::to_owned);
    let mut widths = [0usize; 6];
    for line in std::iter::once(&header).chain(&lines) {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in std::iter::once(&header).chain(&lines) {
        let cells: Vec<String> = line.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(ExitStatus::Success)
}

/// The structure of a partitions definition: `kind` and what that kind has.
fn partitions_def_json(p: &engine::PartitionsDef) -> serde_json::Value {
    match p {
        engine::PartitionsDef::TimeWindow(tw) => {
            json!({ "kind": tw.cadence(), "start": tw.key(0), "timezone": tw.timezone().name() })
        }
        engine::PartitionsDef::Static(keys) => json!({ "kind": "static", "keys": keys }),
        engine::PartitionsDef::Dynamic { name, .. } => json!({ "kind": "dynamic", "name": name }),
        engine::PartitionsDef::Multi(m) => json!({
            "kind": "multi",
            "dimensions": m.dimensions().iter().map(|d| {
                let mut v = partitions_def_json(&d.def);
                v["dimension"] = json!(d.name);
                v
            }).collect::<Vec<_>>(),
        }),
    }
}
