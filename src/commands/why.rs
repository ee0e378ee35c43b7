//! `robo-assets why` (a partition's status, stale causes and root causes as a tree, and its
//! automation condition's evaluations), `wipe` and `repair`.

use std::fmt::Write as _;

use engine::staleness::{Because, Change, StaleCause};
use engine::status::PartitionStatus;
use serde::Serialize;

use crate::app::App;
use crate::cli::{WhyArgs, WipeArgs};
use crate::commands::{partition_spec, print_json, short, show_key};
use crate::{ExitStatus, user_error};

/// A partition's status with its causes: the `partition` of `why --json` and the web view's
/// partition page.
#[derive(Debug, Serialize)]
pub(crate) struct Why {
    pub asset: String,
    pub partition: String,
    pub status: PartitionStatus,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StaleCause>,
    /// The changed inputs, each traced to its root causes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_causes: Option<Because>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The freshness deadline it missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The body of `why --json` and `/api/v1/assets/{asset}/partition`: the partition's status
/// with its causes, and its automation condition's evaluations, newest first.
pub(crate) fn body(why: Why, evaluations: &[lineage::ConditionEvaluationRecord]) -> serde_json::Value {
    serde_json::json!({ "partition": why, "condition_evaluations": evaluations.iter().map(|e| {
        serde_json::json!({
            "evaluated_at": e.evaluated_at, "condition": e.condition, "requested": e.requested,
            "reason": e.reason, "request_key": e.request_key,
        })
    }).collect::<Vec<_>>() })
}

/// Why partition `key` of asset `id` is in its state, traced to root causes.
pub(crate) async fn explain(app: &App, id: engine::AssetId, key: &str) -> anyhow::Result<Why> {
    let graph = app.defs.graph();
    let def = graph.asset(id);
    let ctx = app.partitions_context().await?;
    let key = key.to_owned();
    // The partition's status, causes and lateness as `status` computes them.
    let report = engine::status::asset_status(&*app.store, graph, id, Some(std::slice::from_ref(&key)), &ctx)
        .await?
        .partitions
        .remove(0);
    let state = app.store.partition_states_of(&[(def.key.to_string(), key.clone())]).await?.remove(0);
    let mut why = Why {
        asset: def.key.to_string(),
        partition: key.clone(),
        status: report.status,
        root_causes: None,
        error: None,
        late_since: report.late_since,
        causes: report.stale_causes,
    };
    if why.causes.iter().any(|c| matches!(c, StaleCause::Inputs { .. })) {
        why.root_causes = Some(engine::staleness::root_causes(&*app.store, def.key.as_str(), &key).await?);
    }
    if why.status == PartitionStatus::Failed {
        why.error = state.as_ref().and_then(|s| s.last_error.clone());
    }
    Ok(why)
}

impl Why {
    /// The one-line verdict: `stale: inputs changed`.
    pub(crate) fn headline(&self) -> String {
        match self.status {
            PartitionStatus::Materialized => {
                "materialized: its code version, dependencies and the data versions it read are current".to_owned()
            }
            PartitionStatus::Stale => {
                format!("stale: {}", self.causes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
            }
            PartitionStatus::Failed => format!("failed: {}", self.error.as_deref().unwrap_or("")),
            PartitionStatus::InProgress => "in_progress: a worker holds it now".to_owned(),
            PartitionStatus::Missing => "missing: no materialization (never materialized, or wiped)".to_owned(),
        }
    }

    /// The root causes as a tree, hop by hop (empty when no input changed).
    pub(crate) fn tree(&self) -> String {
        let mut out = String::new();
        if let Some(Because::Inputs { changes, more }) = &self.root_causes {
            render_changes(&mut out, changes, *more, "");
        }
        out
    }
}

pub async fn why(app: &App, args: &WhyArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let id = graph.lookup(&args.asset).map_err(|e| user_error(e.to_string()))?;
    let def = graph.asset(id);
    let ctx = app.partitions_context().await?;
    let key = match (&def.partitions, &args.partition) {
        (None, _) => String::new(),
        (Some(p), Some(k)) => p.resolve(k, &ctx).map_err(|e| user_error(format!("asset {}: {e}", def.key)))?,
        (Some(p), None) => {
            return Err(user_error(format!("{} is partitioned ({}): give --partition", def.key, p.describe())));
        }
    };
    let why = explain(app, id, &key).await?;
    let state = app.store.partition_states_of(&[(def.key.to_string(), key.clone())]).await?.remove(0);
    let evaluations = app.store.condition_evaluations(def.key.as_str(), Some(&key), args.limit).await?;
    if args.json {
        print_json(&body(why, &evaluations))?;
        return Ok(ExitStatus::Success);
    }

    let shown = if key.is_empty() { def.key.to_string() } else { format!("{} {key}", def.key) };
    let headline = why.headline();
    let late = why.late_since.map(|d| format!(" (LATE: due {})", d.format("%Y-%m-%d %H:%M %Z"))).unwrap_or_default();
    println!("{shown}: {headline}{late}");
    if let Some(state) = state.as_ref().filter(|s| s.current_materialization_id.is_some()) {
        println!(
            "  materialized {} by run {}, data {}",
            state.materialized_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default(),
            state.last_run_id.map(|r| r.to_string()).unwrap_or_default(),
            state.data_version.as_deref().map(short).unwrap_or("-")
        );
    }
    if why.root_causes.is_some() {
        println!("Root causes, hop by hop:");
        print!("{}", why.tree());
    }
    if evaluations.is_empty() {
        println!("No automation condition has evaluated it.");
    } else {
        println!("Automation condition, newest first:");
    }
    for e in evaluations {
        println!(
            "  {}  {:<10} {}  {}{}",
            e.evaluated_at.format("%Y-%m-%d %H:%M:%S %Z"),
            e.condition,
            if e.requested { "requested    " } else { "not requested" },
            e.reason,
            e.request_key.map(|k| format!("  [{k}]")).unwrap_or_default()
        );
    }
    Ok(ExitStatus::Success)
}

/// Writes changed partitions as a tree, each followed by why it changed.
fn render_changes(out: &mut String, changes: &[Change], more: usize, indent: &str) {
    for (i, c) in changes.iter().enumerate() {
        let last = i + 1 == changes.len() && more == 0;
        let (branch, next) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
        let to = match (&c.to, &c.materialized) {
            (Some(to), Some((at, run))) => {
                format!("{} (materialized {} by run {run})", short(to), at.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            (Some(to), None) => short(to).to_owned(),
            (None, _) => "no materialization".to_owned(),
        };
        _ = writeln!(out, "{indent}{branch}{} {}: {} → {to}", c.asset, show_key(&c.partition), short(&c.from));
        let child = format!("{indent}{next}");
        match &c.because {
            Because::Inputs { changes, more } => render_changes(out, changes, *more, &child),
            Because::Code { from, to } => _ = writeln!(out, "{child}└── root cause: code version {from} → {to}"),
            Because::Source => {
                _ = writeln!(
                    out,
                    "{child}└── root cause: re-materialized from the same code and inputs; its source changed"
                );
            }
            Because::Dependencies { added, removed } => {
                _ = writeln!(
                    out,
                    "{child}└── root cause: it read other partitions ({} added, {} removed{})",
                    added.len(),
                    removed.len(),
                    added.first().or(removed.first()).map(|k| format!(", e.g. {k}")).unwrap_or_default()
                );
            }
            Because::Missing => {
                _ = writeln!(out, "{child}└── root cause: it has no materialization now (wiped or never re-run)");
            }
            Because::Unknown => {
                _ = writeln!(out, "{child}└── (the materialization that was read is no longer in the store)");
            }
        }
    }
    if more > 0 {
        _ = writeln!(out, "{indent}└── … and {more} more changed inputs");
    }
}

pub async fn wipe(app: &App, args: &WipeArgs) -> anyhow::Result<ExitStatus> {
    let graph = app.defs.graph();
    let id = graph.lookup(&args.asset).map_err(|e| user_error(e.to_string()))?;
    let def = graph.asset(id);
    let spec = partition_spec(&args.partitions);
    let keys: Option<Vec<String>> = if spec == engine::PartitionSpec::None {
        None
    } else {
        let ctx = app.partitions_context().await?;
        let selected = std::collections::BTreeSet::from([id]);
        let targets = engine::plan::targets(graph, &selected, &spec, &ctx).map_err(|e| user_error(e.to_string()))?;
        Some(targets.into_iter().find(|(a, _)| *a == id).map(|(_, keys)| keys).unwrap_or_default())
    };
    let what = match &keys {
        None => format!("every partition of {}", def.key),
        Some(keys) => format!(
            "{} partition{} of {} ({})",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" },
            def.key,
            engine::partition::compress_ranges(def.partitions.as_ref(), keys).join(", ")
        ),
    };
    if !args.yes {
        return Err(user_error(format!(
            "wipe forgets {what}: current state, materialization history and check results \
             (outputs and ledger entries stay). Nothing was wiped; run again with --yes to wipe"
        )));
    }
    let out = app.store.wipe(def.key.as_str(), keys.as_deref(), app.clock.now()).await.map_err(|e| match e {
        lineage::Error::PartitionRunning { .. } => user_error(e.to_string()),
        e => e.into(),
    })?;
    println!(
        "Wiped {what}: {} partition state{}, {} materialization{} (kept for lineage, hidden from history); \
         {} current materialization{} that read them now stale.",
        out.partitions,
        if out.partitions == 1 { "" } else { "s" },
        out.materializations,
        if out.materializations == 1 { "" } else { "s" },
        out.readers,
        if out.readers == 1 { "" } else { "s" },
    );
    Ok(ExitStatus::Success)
}

pub async fn repair(app: &App) -> anyhow::Result<ExitStatus> {
    let fixed = app.store.repair_staleness().await?;
    match fixed {
        0 => println!("Staleness recomputed from scratch: every maintained count was right."),
        n => println!("Staleness recomputed from scratch: fixed {n} wrong count{}.", if n == 1 { "" } else { "s" }),
    }
    Ok(ExitStatus::Success)
}
