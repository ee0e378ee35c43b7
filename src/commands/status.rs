//! `robo-assets status`: per asset, how many partitions are materialized, failed, in progress
//! or missing, with a strip of the latest partitions; per partition with `--partition/--from`.

use std::collections::HashMap;

use lineage::{AttemptStatus, PartitionState, PartitionSummary};
use serde::Serialize;

use crate::app::App;
use crate::cli::StatusArgs;
use crate::commands::{no_upstream_keys, partition_spec, print_json, select, short, show_key};
use crate::{ExitStatus, user_error};

/// How many partitions the strip shows.
const STRIP: usize = 48;
/// How many partitions are listed per asset with `--partition/--from/--to`.
const MAX_LISTED: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Missing,
    Materialized,
    Stale,
    Failed,
    InProgress,
}

impl Status {
    fn of(summary: Option<&PartitionSummary>) -> Status {
        match summary {
            None => Status::Missing,
            Some(s) => match s.last_attempt_status {
                AttemptStatus::Running => Status::InProgress,
                AttemptStatus::Failed => Status::Failed,
                AttemptStatus::Materialized if s.materialized => Status::Materialized,
                AttemptStatus::Materialized => Status::Missing,
            },
        }
    }

    fn glyph(self) -> char {
        match self {
            Status::Missing => '·',
            Status::Materialized => '█',
            Status::Stale => '░',
            Status::Failed => '✗',
            Status::InProgress => '▶',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Status::Missing => "missing",
            Status::Materialized => "materialized",
            Status::Stale => "stale",
            Status::Failed => "failed",
            Status::InProgress => "in progress",
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    partitions: usize,
    /// Materialized, fresh or stale.
    materialized: usize,
    /// Of those, stale.
    stale: usize,
    /// Not materialized past their freshness deadline (counted in missing or failed too).
    late: usize,
    failed: usize,
    in_progress: usize,
    missing: usize,
}

#[derive(Debug, Serialize)]
struct PartitionRow {
    partition: String,
    status: Status,
    data_version: Option<String>,
    materialized_at: Option<chrono::DateTime<chrono::Utc>>,
    last_run_id: Option<String>,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<String>,
    /// Why it is stale, structured (code, dependencies, inputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stale_causes: Vec<engine::staleness::StaleCause>,
    /// The freshness deadline it missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    late_since: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize)]
struct AssetStatus {
    asset: String,
    partitions_def: Option<String>,
    counts: Counts,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    partitions_listed: Vec<PartitionRow>,
    #[serde(skip)]
    strip: String,
}

pub async fn status(app: &App, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let selected = select(app, &args.selection)?;
    let ctx = app.partitions_context().await?;
    let spec = partition_spec(&args.partitions);
    let listing = spec != engine::PartitionSpec::None;
    let keys_of: HashMap<usize, Vec<String>> = if listing {
        engine::plan::targets(graph, &selected, &spec, &ctx)
            .map_err(|e| user_error(e.to_string()))?
            .into_iter()
            .collect()
    } else {
        HashMap::new()
    };

    // Staleness is read, not recomputed: the store keeps each partition's count of changed
    // inputs current as materializations are recorded (engine::staleness), so status reads only
    // the selected assets' own rows, and only the columns it needs.
    let mut out = Vec::new();
    for &id in graph.topo_order().iter().filter(|id| selected.contains(id)) {
        let def = graph.asset(id);
        let summaries: HashMap<String, PartitionSummary> = app
            .store
            .partition_summaries(def.key.as_str(), no_upstream_keys(graph, id).as_deref())
            .await?
            .into_iter()
            .map(|s| (s.partition_key.clone(), s))
            .collect();
        let keys = match keys_of.get(&id) {
            Some(keys) => keys.clone(),
            None => match &def.partitions {
                Some(p) => p.keys(&ctx),
                None => vec![String::new()],
            },
        };
        // Versions, times and errors only where they are shown: listed partitions, and the
        // latest one for a maximum-lag freshness policy.
        let mut detailed: Vec<(String, String)> = Vec::new();
        if listing {
            detailed.extend(keys.iter().take(MAX_LISTED).map(|k| (def.key.to_string(), k.clone())));
        }
        if let (Some(engine::FreshnessPolicy::MaxLag(_)), Some(last)) = (def.freshness, keys.last()) {
            detailed.push((def.key.to_string(), last.clone()));
        }
        let details: HashMap<String, PartitionState> = app
            .store
            .partition_states_of(&detailed)
            .await?
            .into_iter()
            .flatten()
            .map(|s| (s.partition_key.clone(), s))
            .collect();
        let mut counts = Counts { partitions: keys.len(), ..Counts::default() };
        let mut strip = String::new();
        let mut listed = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let summary = summaries.get(key);
            let state = details.get(key);
            let mut status = Status::of(summary);
            let mut stale = Vec::new();
            if status == Status::Materialized
                && let Some(recorded) = summary.and_then(engine::staleness::Recorded::of_summary)
            {
                stale = engine::staleness::stale_causes(graph, id, key, recorded, &ctx)
                    .map_err(|e| user_error(e.to_string()))?;
                if !stale.is_empty() {
                    status = Status::Stale;
                }
            }
            // Late: not materialized (or only failing) past its freshness deadline.
            let late_since = match (def.freshness, def.partitions.as_ref().and_then(|p| p.window_of(key))) {
                (Some(policy), Some(window)) => policy.deadline(window.end).filter(|d| {
                    ctx.now > *d && matches!(status, Status::Missing | Status::Failed | Status::InProgress)
                }),
                (Some(engine::FreshnessPolicy::MaxLag(lag)), None) if i + 1 == keys.len() => {
                    let due = ctx.now - chrono::Duration::from_std(lag).unwrap_or_default();
                    state.and_then(|s| s.materialized_at).is_none_or(|t| t < due).then_some(due)
                }
                _ => None,
            };
            if late_since.is_some() {
                counts.late += 1;
            }
            match status {
                Status::Missing => counts.missing += 1,
                Status::Materialized => counts.materialized += 1,
                Status::Stale => {
                    counts.materialized += 1;
                    counts.stale += 1;
                }
                Status::Failed => counts.failed += 1,
                Status::InProgress => counts.in_progress += 1,
            }
            if i + STRIP >= keys.len() {
                strip.push(status.glyph());
            }
            if listing && listed.len() < MAX_LISTED {
                listed.push(PartitionRow {
                    partition: key.clone(),
                    status,
                    data_version: state.and_then(|s| s.data_version.clone()),
                    materialized_at: state.and_then(|s| s.materialized_at),
                    last_run_id: state.and_then(|s| s.last_run_id.map(|r| r.to_string())),
                    error: state.and_then(|s| s.last_error.clone()),
                    late_since,
                    stale: match state.and_then(|s| s.current_materialization_id) {
                        Some(mid) if !stale.is_empty() => Some(describe_stale(app, &stale, mid).await?),
                        _ => None,
                    },
                    stale_causes: stale,
                });
            }
        }
        out.push(AssetStatus {
            asset: def.key.to_string(),
            partitions_def: def.partitions.as_ref().map(|p| p.describe()),
            counts,
            partitions_listed: listed,
            strip,
        });
    }

    if args.json {
        print_json(&out)?;
        return Ok(ExitStatus::Success);
    }
    println!(
        "{:<20} {:<12} {:>10} {:>12} {:>6} {:>7} {:>11} {:>9} {:>5}  LATEST (█ materialized ░ stale · missing ✗ failed ▶ in progress)",
        "ASSET", "PARTITIONS", "TOTAL", "MATERIALIZED", "STALE", "FAILED", "IN PROGRESS", "MISSING", "LATE"
    );
    for a in &out {
        println!(
            "{:<20} {:<12} {:>10} {:>12} {:>6} {:>7} {:>11} {:>9} {:>5}  {}",
            a.asset,
            a.partitions_def.as_deref().unwrap_or("-"),
            a.counts.partitions,
            a.counts.materialized,
            a.counts.stale,
            a.counts.failed,
            a.counts.in_progress,
            a.counts.missing,
            a.counts.late,
            a.strip
        );
    }
    for a in out.iter().filter(|a| !a.partitions_listed.is_empty()) {
        println!("\n{}:", a.asset);
        for p in &a.partitions_listed {
            let detail = match p.status {
                Status::Materialized => format!(
                    "data {}  at {}",
                    p.data_version.as_deref().map(short).unwrap_or("-"),
                    p.materialized_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
                ),
                Status::Failed => {
                    format!("run {}: {}", p.last_run_id.as_deref().unwrap_or("-"), p.error.as_deref().unwrap_or(""))
                }
                Status::InProgress => format!("run {}", p.last_run_id.as_deref().unwrap_or("-")),
                Status::Stale => format!("stale: {}", p.stale.as_deref().unwrap_or("")),
                Status::Missing => String::new(),
            };
            let late =
                p.late_since.map(|d| format!("  LATE: due {}", d.format("%Y-%m-%d %H:%M %Z"))).unwrap_or_default();
            println!("  {} {:<20} {:<13} {detail}{late}", p.status.glyph(), show_key(&p.partition), p.status.name());
        }
        if a.counts.partitions > a.partitions_listed.len() {
            println!("  … {} more", a.counts.partitions - a.partitions_listed.len());
        }
    }
    Ok(ExitStatus::Success)
}

/// The causes for people; changed inputs are named, e.g. `usage_snapshot 2025-12-15T07:00
/// changed since it was read` (`robo-assets why` follows them to their root causes).
async fn describe_stale(app: &App, causes: &[engine::staleness::StaleCause], mid: i64) -> anyhow::Result<String> {
    let mut parts = Vec::with_capacity(causes.len());
    for cause in causes {
        parts.push(match cause {
            engine::staleness::StaleCause::Inputs { .. } => changed_inputs(app, mid).await?,
            other => other.to_string(),
        });
    }
    Ok(parts.join("; "))
}

/// The inputs of materialization `mid` whose current data version differs from the one it read.
async fn changed_inputs(app: &App, mid: i64) -> anyhow::Result<String> {
    let inputs = app.store.inputs_of(mid).await?;
    let keys: Vec<(String, String)> = inputs.iter().map(|i| (i.asset_key.clone(), i.partition_key.clone())).collect();
    let now = app.store.partition_states_of(&keys).await?;
    let changed: Vec<String> = inputs
        .iter()
        .zip(now)
        .filter(|(i, s)| s.as_ref().and_then(|s| s.data_version.as_deref()) != Some(i.data_version.as_str()))
        .map(|(i, s)| {
            let gone = if s.and_then(|s| s.data_version).is_none() { " (no materialization now)" } else { "" };
            format!("{} {}{gone}", i.asset_key, i.partition_key)
        })
        .collect();
    Ok(match changed.len() {
        0 => "its inputs changed".to_owned(),
        n => format!(
            "{} changed since it was read{}",
            changed.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if n > 3 { format!(" (and {} more)", n - 3) } else { String::new() }
        ),
    })
}
