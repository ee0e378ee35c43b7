//! `robo-assets status`: per asset, how many partitions are in each state, with a strip of the
//! latest partitions; per partition with `--partition/--from`. Every status comes from
//! `engine::status`; this module only renders it.

use std::collections::HashMap;

use engine::AssetId;
use engine::status::{AssetSummary, PartitionReport, PartitionStatus, StatusCounts, StatusRun};
use serde::Serialize;
use strum::IntoEnumIterator as _;

use crate::app::App;
use crate::cli::StatusArgs;
use crate::commands::{partition_spec, print_json, select, short, show_key};
use crate::{ExitStatus, user_error};

/// How many partitions the strip shows.
const STRIP: usize = 48;
/// How many partitions are listed per asset with `--partition/--from/--to`.
const MAX_LISTED: usize = 200;

/// A listed partition: its status from `engine::status`, with the details shown beside it.
#[derive(Debug, Serialize)]
pub(crate) struct PartitionRow {
    #[serde(flatten)]
    report: PartitionReport,
    data_version: Option<String>,
    materialized_at: Option<chrono::DateTime<chrono::Utc>>,
    last_run_id: Option<lineage::RunId>,
    error: Option<String>,
    /// Where the current output lives (as `robo-assets path` prints it), with `--partition`
    /// only: one read per listed partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// The stale causes for people, with the changed inputs named.
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<String>,
}

/// One asset's status: the body of `status --json` (one per asset) and of `/api/v1/status`.
#[derive(Debug, Serialize)]
pub(crate) struct AssetRow {
    pub asset: String,
    pub partitions: Option<String>,
    /// The asset as a whole, in the same words as its partitions.
    pub status: PartitionStatus,
    pub counts: StatusCounts,
    /// Every partition (or those asked for) in partition order, as runs of one status: a
    /// year of hours that is all missing is one range.
    pub ranges: Vec<StatusRun>,
    /// The latest verdict of each check on each partition (those asked for), counted.
    pub checks: CheckCounts,
    /// Those latest verdicts that failed, as `checks` lists them (partition order).
    pub failed_check_results: Vec<lineage::CheckResultRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions_listed: Vec<PartitionRow>,
    /// The strip: up to `STRIP` partitions ending where the data ends (the latest partition, or
    /// the last one not missing when that is further back), with the first and last key.
    #[serde(skip)]
    pub strip: Vec<PartitionStatus>,
    #[serde(skip)]
    pub strip_keys: Option<(String, String)>,
    /// Every partition's report, for the web view's grid.
    #[serde(skip)]
    pub reports: Vec<PartitionReport>,
}

/// How many of an asset's latest check verdicts passed and failed (a check counts once per
/// partition: its latest verdict there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CheckCounts {
    pub passed: usize,
    pub failed: usize,
}

impl CheckCounts {
    /// The CHECKS column (and the web view's asset page): `-` (no verdict), `3 passed`, `1 failed`.
    pub(crate) fn render(self) -> String {
        match self {
            CheckCounts { passed: 0, failed: 0 } => "-".to_owned(),
            CheckCounts { failed: 0, passed } => format!("{passed} passed"),
            CheckCounts { failed, .. } => format!("{failed} failed"),
        }
    }
}

/// At most this many failed checks are listed per asset under the status table.
const MAX_LISTED_CHECKS: usize = 5;

/// What [`rows`] keeps of each partition besides the counts and the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// The counts and the runs only (read as ranges where the store can).
    Summary,
    /// Every partition's report too ([`AssetRow::reports`], the web view's grid).
    Reports,
}

pub async fn status(app: &App, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let selected = select(app, &args.selection)?;
    let spec = partition_spec(&args.partitions);
    let out = rows(app, &selected, &spec, Detail::Summary).await?;
    if args.json {
        print_json(&out)?;
        return Ok(ExitStatus::Success);
    }
    render(&out);
    Ok(ExitStatus::Success)
}

/// The status of the `selected` assets (their partitions in `spec`, or all), in dependency order.
pub(crate) async fn rows(
    app: &App,
    selected: &std::collections::BTreeSet<AssetId>,
    spec: &engine::PartitionSpec,
    detail: Detail,
) -> anyhow::Result<Vec<AssetRow>> {
    let graph = app.defs.graph();
    let ctx = app.partitions_context().await?;
    let listing = *spec != engine::PartitionSpec::None;
    let keys_of: HashMap<AssetId, Vec<String>> = if listing {
        engine::plan::targets(graph, selected, spec, &ctx).map_err(|e| user_error(e.to_string()))?.into_iter().collect()
    } else {
        HashMap::new()
    };

    let mut out = Vec::new();
    for &id in graph.topo_order().iter().filter(|id| selected.contains(id)) {
        let def = graph.asset(id);
        let keys = keys_of.get(&id).map(Vec::as_slice);
        // Every partition's report only where one is needed: listed, or for the web view's grid.
        let (summary, reports) = if listing || detail == Detail::Reports {
            let status = engine::status::asset_status(&*app.store, graph, id, keys, &ctx).await?;
            (AssetSummary::of_status(&status), status.partitions)
        } else {
            (engine::status::asset_summary(&*app.store, graph, id, &ctx).await?, Vec::new())
        };
        let (strip, strip_keys) = strip_of(&summary, def.partitions.is_some());
        // Versions, times and errors only where they are shown: the listed partitions.
        let mut listed = Vec::new();
        if listing {
            let shown: Vec<&PartitionReport> = reports.iter().take(MAX_LISTED).collect();
            let wanted: Vec<(String, String)> =
                shown.iter().map(|p| (def.key.to_string(), p.partition.clone())).collect();
            let states = app.store.partition_states_of(&wanted).await?;
            for (report, state) in shown.into_iter().zip(states) {
                let stale = match state.as_ref().and_then(|s| s.current_materialization_id) {
                    Some(mid) if !report.stale_causes.is_empty() => {
                        Some(describe_stale(app, &report.stale_causes, mid).await?)
                    }
                    _ => None,
                };
                let path = match state.as_ref().and_then(|s| s.current_materialization_id) {
                    Some(mid) if matches!(spec, engine::PartitionSpec::Key(_)) => app
                        .store
                        .materialization(mid)
                        .await?
                        .and_then(|m| m.storage_uri)
                        .map(|uri| crate::commands::path::location(&uri)),
                    _ => None,
                };
                listed.push(PartitionRow {
                    report: report.clone(),
                    data_version: state.as_ref().and_then(|s| s.data_version.clone()),
                    materialized_at: state.as_ref().and_then(|s| s.materialized_at),
                    last_run_id: state.as_ref().and_then(|s| s.last_run_id),
                    error: state.as_ref().and_then(|s| s.last_error.clone()),
                    path,
                    stale,
                });
            }
        }
        let mut verdicts = app.store.latest_check_results(&def.key.to_string()).await?;
        if let Some(keys) = keys {
            let wanted: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
            verdicts.retain(|r| wanted.contains(r.partition_key.as_str()));
        }
        let failed = verdicts.iter().filter(|r| !r.passed).count();
        let checks = CheckCounts { passed: verdicts.len() - failed, failed };
        verdicts.retain(|r| !r.passed);
        out.push(AssetRow {
            asset: def.key.to_string(),
            partitions: def.partitions.as_ref().map(engine::PartitionsDef::describe),
            status: summary.counts.overall(),
            counts: summary.counts,
            ranges: summary.runs,
            checks,
            failed_check_results: verdicts,
            partitions_listed: listed,
            strip,
            strip_keys,
            reports,
        });
    }
    Ok(out)
}

/// The strip's partitions and its first and last key (none for an unpartitioned asset): the
/// `STRIP` latest, or, when the latest data is further back than that, the `STRIP` ending at the
/// last partition that is not missing, so a new deployment's first days are what it shows.
fn strip_of(summary: &AssetSummary, partitioned: bool) -> (Vec<PartitionStatus>, Option<(String, String)>) {
    let n = summary.counts.partitions;
    let data_end =
        summary.runs.iter().rev().find(|r| r.status != PartitionStatus::Missing).map_or(n, |r| r.start + r.count);
    let end = if data_end + STRIP >= n { n } else { data_end };
    let begin = end.saturating_sub(STRIP);
    let keys = match (partitioned, end > begin) {
        (true, true) => summary.key_at(begin).zip(summary.key_at(end - 1)),
        _ => None,
    };
    (summary.statuses(begin..end), keys)
}

/// Whether stdout gets colour: a terminal, and `NO_COLOR` unset or empty (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A glyph, coloured by status on a terminal.
fn glyph(status: PartitionStatus, colour: bool) -> String {
    if !colour {
        return status.glyph().to_string();
    }
    let code = match status {
        PartitionStatus::Materialized => "32",
        PartitionStatus::Stale => "33",
        PartitionStatus::Failed => "31",
        PartitionStatus::InProgress => "36",
        PartitionStatus::Missing => "2",
    };
    format!("\x1b[{code}m{}\x1b[0m", status.glyph())
}

fn render(out: &[AssetRow]) {
    let colour = colour();
    let legend: Vec<String> = PartitionStatus::iter().map(|s| format!("{} {s}", glyph(s, colour))).collect();
    let asset_w = out.iter().map(|a| a.asset.chars().count()).max().unwrap_or(0).max("ASSET".len());
    let parts_w = out
        .iter()
        .map(|a| a.partitions.as_deref().unwrap_or("-").chars().count())
        .max()
        .unwrap_or(0)
        .max("PARTITIONS".len());
    println!(
        "{:<asset_w$} {:<parts_w$} {:>10} {:>12} {:>6} {:>7} {:>11} {:>9} {:>5} {:>10}  STRIP ({})",
        "ASSET",
        "PARTITIONS",
        "TOTAL",
        "MATERIALIZED",
        "STALE",
        "FAILED",
        "IN_PROGRESS",
        "MISSING",
        "LATE",
        "CHECKS",
        legend.join(" ")
    );
    for a in out {
        let glyphs: String = a.strip.iter().map(|s| glyph(*s, colour)).collect();
        let strip = match &a.strip_keys {
            Some((first, last)) if first != last => format!("{first} {glyphs} {last}"),
            Some((only, _)) => format!("{only} {glyphs}"),
            None => glyphs,
        };
        println!(
            "{:<asset_w$} {:<parts_w$} {:>10} {:>12} {:>6} {:>7} {:>11} {:>9} {:>5} {:>10}  {}",
            a.asset,
            a.partitions.as_deref().unwrap_or("-"),
            a.counts.partitions,
            a.counts.materialized,
            a.counts.stale,
            a.counts.failed,
            a.counts.in_progress,
            a.counts.missing,
            a.counts.late,
            a.checks.render(),
            strip
        );
    }
    if out.iter().any(|a| a.checks.failed > 0) {
        println!("\nFailed checks (latest verdicts):");
        for a in out.iter().filter(|a| a.checks.failed > 0) {
            for r in a.failed_check_results.iter().take(MAX_LISTED_CHECKS) {
                println!("  ! {}", crate::commands::check_line(r));
            }
            if a.checks.failed > MAX_LISTED_CHECKS {
                println!("  … {} more: robo-assets checks {}", a.checks.failed - MAX_LISTED_CHECKS, a.asset);
            }
        }
    }
    for a in out.iter().filter(|a| !a.partitions_listed.is_empty()) {
        println!("\n{}:", a.asset);
        for p in &a.partitions_listed {
            let run = || p.last_run_id.map(|r| r.to_string()).unwrap_or_else(|| "-".to_owned());
            let detail = match p.report.status {
                PartitionStatus::Materialized => format!(
                    "data {}  at {}",
                    p.data_version.as_deref().map(short).unwrap_or("-"),
                    p.materialized_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
                ),
                PartitionStatus::Failed => format!("run {}: {}", run(), p.error.as_deref().unwrap_or("")),
                PartitionStatus::InProgress => format!("run {}", run()),
                PartitionStatus::Stale => format!("stale: {}", p.stale.as_deref().unwrap_or("")),
                PartitionStatus::Missing => String::new(),
            };
            let late = p
                .report
                .late_since
                .map(|d| format!("  LATE: due {}", d.format("%Y-%m-%d %H:%M %Z")))
                .unwrap_or_default();
            println!(
                "  {} {:<20} {:<13} {detail}{late}",
                p.report.status.glyph(),
                show_key(&p.report.partition),
                p.report.status
            );
            if let Some(path) = &p.path {
                println!("    path {path}");
            }
        }
        if a.counts.partitions > a.partitions_listed.len() {
            println!("  … {} more", a.counts.partitions - a.partitions_listed.len());
        }
    }
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
