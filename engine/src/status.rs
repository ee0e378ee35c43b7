//! One status model: the state of each partition of an asset in one word, how many partitions
//! are in each, which are late and which deadline they missed, and how far a backfill has got.
//!
//! The CLI's text and `--json`, the lineage picture and the web view all render what this module
//! computes; none of them decides a status of its own. It reads the store's lean partition
//! summaries (staleness is maintained at write time, see [`crate::staleness`]) and never walks
//! upstream states.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use lineage::{AttemptStatus, BackfillRecord, LineageStore, PartitionSummary, RequestState};
use serde::Serialize;

use crate::definition::FreshnessPolicy;
use crate::graph::{AssetGraph, AssetId};
use crate::partition::PartitionsContext;
use crate::staleness::{Recorded, StaleCause, stale_causes};

/// The state of one partition, in one word.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PartitionStatus {
    /// No current materialization (never materialized, or wiped), and nothing runs it.
    Missing,
    /// Materialized, and its code version, dependencies and the data versions it read are current.
    Materialized,
    /// Materialized, but its code version, dependencies or inputs changed since.
    Stale,
    /// Its latest attempt failed (an earlier materialization, if any, still stands).
    Failed,
    /// A worker holds a lease on it now.
    InProgress,
}

impl PartitionStatus {
    /// The word, as printed and serialized.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// One character for strips and tables.
    pub fn glyph(self) -> char {
        match self {
            PartitionStatus::Missing => '·',
            PartitionStatus::Materialized => '█',
            PartitionStatus::Stale => '░',
            PartitionStatus::Failed => '✗',
            PartitionStatus::InProgress => '▶',
        }
    }

    /// From what the store records: whether the partition has a current materialization, the
    /// outcome of its latest attempt (`None` when the store never saw it), and whether it is stale.
    pub fn of(materialized: bool, attempt: Option<AttemptStatus>, stale: bool) -> PartitionStatus {
        match attempt {
            None => PartitionStatus::Missing,
            Some(AttemptStatus::Running) => PartitionStatus::InProgress,
            Some(AttemptStatus::Failed) => PartitionStatus::Failed,
            Some(AttemptStatus::Materialized) if !materialized => PartitionStatus::Missing,
            Some(AttemptStatus::Materialized) if stale => PartitionStatus::Stale,
            Some(AttemptStatus::Materialized) => PartitionStatus::Materialized,
        }
    }
}

/// One partition's status, with why it is stale and the deadline it missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// The partition (`""` when unpartitioned).
    pub partition: String,
    /// Its state.
    pub status: PartitionStatus,
    /// Why it is stale (code, dependencies, inputs); empty unless stale.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_causes: Vec<StaleCause>,
    /// The freshness deadline it missed, when it is late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_since: Option<DateTime<Utc>>,
}

/// How many partitions of an asset are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// Partitions the definition has now.
    pub partitions: usize,
    /// Materialized, current or stale.
    pub materialized: usize,
    /// Of those, stale.
    pub stale: usize,
    /// Latest attempt failed.
    pub failed: usize,
    /// Running now.
    pub in_progress: usize,
    /// Neither materialized, failed nor running.
    pub missing: usize,
    /// Past their freshness deadline without a materialization (counted in their state too).
    pub late: usize,
}

impl StatusCounts {
    fn add(&mut self, report: &PartitionReport) {
        match report.status {
            PartitionStatus::Missing => self.missing += 1,
            PartitionStatus::Materialized => self.materialized += 1,
            PartitionStatus::Stale => {
                self.materialized += 1;
                self.stale += 1;
            }
            PartitionStatus::Failed => self.failed += 1,
            PartitionStatus::InProgress => self.in_progress += 1,
        }
        self.late += usize::from(report.late_since.is_some());
    }

    /// The one word for the asset as a whole: its most urgent partition state (failed, then in
    /// progress, then stale, then missing), or materialized when every partition is.
    pub fn overall(&self) -> PartitionStatus {
        if self.failed > 0 {
            PartitionStatus::Failed
        } else if self.in_progress > 0 {
            PartitionStatus::InProgress
        } else if self.stale > 0 {
            PartitionStatus::Stale
        } else if self.missing > 0 || self.materialized == 0 {
            PartitionStatus::Missing
        } else {
            PartitionStatus::Materialized
        }
    }
}

/// The status of (some of) an asset's partitions.
#[derive(Debug, Clone)]
pub struct AssetStatus {
    /// The asset.
    pub asset: AssetId,
    /// Counts over the partitions asked for.
    pub counts: StatusCounts,
    /// Each partition asked for, in partition order.
    pub partitions: Vec<PartitionReport>,
}

/// For an asset without upstream, the input keys hash every current materialization of it has
/// (the empty set's), which the store's summaries may leave out; `None` for an asset with
/// upstream (each partition reads other keys).
pub fn no_upstream_keys_hash(graph: &AssetGraph, asset: AssetId) -> Option<String> {
    graph.upstream(asset).is_empty().then(|| lineage::input_keys_hash([]))
}

/// The status of `keys` of `asset` (every partition the definition has now when `None`).
pub async fn asset_status(
    store: &dyn LineageStore,
    graph: &AssetGraph,
    asset: AssetId,
    keys: Option<&[String]>,
    ctx: &PartitionsContext,
) -> Result<AssetStatus, lineage::Error> {
    let def = graph.asset(asset);
    let summaries: HashMap<String, PartitionSummary> = store
        .partition_summaries(def.key.as_str(), no_upstream_keys_hash(graph, asset).as_deref())
        .await?
        .into_iter()
        .map(|s| (s.partition_key.clone(), s))
        .collect();
    // Asked about every partition, an asset is late only from its first partition ever attempted
    // on: the months before a new deployment's first run are history to backfill, not news (a
    // fresh install would otherwise report every day since the definition's start as late).
    // Asked about given partitions, each is judged.
    let judged_from = match keys {
        Some(_) => 0,
        None => usize::MAX,
    };
    let all;
    let keys = match keys {
        Some(keys) => keys,
        None => {
            all = match &def.partitions {
                Some(p) => p.keys(ctx),
                None => vec![String::new()],
            };
            &all
        }
    };
    // A maximum-lag policy looks at when the latest partition was materialized.
    let latest_at = match (def.freshness, keys.last()) {
        (Some(FreshnessPolicy::MaxLag(_)), Some(last)) => store
            .partition_states_of(&[(def.key.to_string(), last.clone())])
            .await?
            .remove(0)
            .and_then(|s| s.materialized_at),
        _ => None,
    };
    let judged_from = judged_from.min(keys.iter().position(|k| summaries.contains_key(k)).unwrap_or(keys.len()));
    let mut counts = StatusCounts { partitions: keys.len(), ..StatusCounts::default() };
    let mut partitions = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let summary = summaries.get(key);
        let causes = match summary.and_then(Recorded::of_summary) {
            // A key whose upstream partitions the definitions can no longer derive has, in effect,
            // other dependencies than the ones it read.
            Some(recorded) => {
                stale_causes(graph, asset, key, recorded, ctx).unwrap_or_else(|_| vec![StaleCause::Dependencies])
            }
            None => Vec::new(),
        };
        let status = PartitionStatus::of(
            summary.is_some_and(|s| s.materialized),
            summary.map(|s| s.last_attempt_status),
            !causes.is_empty(),
        );
        let latest = i + 1 == keys.len();
        let report = PartitionReport {
            partition: key.clone(),
            status,
            late_since: if i >= judged_from {
                late_since(graph, asset, key, status, latest, latest_at, ctx)
            } else {
                None
            },
            stale_causes: causes,
        };
        counts.add(&report);
        partitions.push(report);
    }
    Ok(AssetStatus { asset, counts, partitions })
}

/// The deadline partition `key` missed, if it is late: a time-window partition not materialized
/// (missing, failed or still running) past its freshness deadline; or, under a maximum lag, the
/// latest partition when it was not materialized within the lag.
pub fn late_since(
    graph: &AssetGraph,
    asset: AssetId,
    key: &str,
    status: PartitionStatus,
    latest: bool,
    latest_materialized_at: Option<DateTime<Utc>>,
    ctx: &PartitionsContext,
) -> Option<DateTime<Utc>> {
    let def = graph.asset(asset);
    match (def.freshness?, def.partitions.as_ref().and_then(|p| p.window_of(key))) {
        (policy @ FreshnessPolicy::AfterWindowEnd(_), Some(window)) => policy.deadline(window.end).filter(|due| {
            ctx.now > *due
                && matches!(status, PartitionStatus::Missing | PartitionStatus::Failed | PartitionStatus::InProgress)
        }),
        (FreshnessPolicy::MaxLag(lag), _) if latest => {
            let due = ctx.now - chrono::Duration::from_std(lag).unwrap_or_default();
            latest_materialized_at.is_none_or(|t| t < due).then_some(due)
        }
        _ => None,
    }
}

/// One asset's cells in a backfill, by the state of their requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CellCounts {
    /// Materialized.
    pub done: i64,
    /// Running now.
    pub running: i64,
    /// Waiting for their upstream cells or for a worker.
    pub queued: i64,
    /// Failed for good.
    pub failed: i64,
    /// Not run: an upstream cell failed or was canceled.
    pub upstream_failed: i64,
    /// Canceled.
    pub canceled: i64,
    /// Left out by the policy (never requested).
    pub skipped: i64,
}

impl CellCounts {
    /// Cells requested (skipped ones are not).
    pub fn total(&self) -> i64 {
        self.done + self.running + self.queued + self.failed + self.upstream_failed + self.canceled
    }
}

/// How far a backfill has got, per asset in dependency order: read from its run's requests (and
/// what its policy skipped), never stored twice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillProgress {
    /// Per asset, in dependency order.
    pub assets: Vec<(String, CellCounts)>,
}

impl BackfillProgress {
    /// Cells done over cells requested, over every asset.
    pub fn done_of_total(&self) -> (i64, i64) {
        self.assets.iter().fold((0, 0), |(d, t), (_, c)| (d + c.done, t + c.total()))
    }
}

/// The progress of `backfill`.
pub async fn backfill_progress(
    store: &dyn LineageStore,
    graph: &AssetGraph,
    backfill: &BackfillRecord,
) -> Result<BackfillProgress, lineage::Error> {
    let mut assets: Vec<(String, CellCounts)> = Vec::new();
    let mut counts_of = |asset: &str| -> usize {
        match assets.iter().position(|(a, _)| a == asset) {
            Some(i) => i,
            None => {
                assets.push((asset.to_owned(), CellCounts::default()));
                assets.len() - 1
            }
        }
    };
    let mut found = Vec::new();
    for (asset, state, n) in store.request_counts(backfill.run_id).await? {
        found.push((counts_of(&asset), state, n));
    }
    let skipped: Vec<(usize, i64)> = backfill
        .skipped
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (counts_of(s["asset"].as_str().unwrap_or_default()), s["count"].as_i64().unwrap_or(0)))
        .collect();
    for (i, state, n) in found {
        let c = &mut assets[i].1;
        match state {
            RequestState::Succeeded => c.done += n,
            RequestState::Running => c.running += n,
            RequestState::Available | RequestState::Blocked => c.queued += n,
            RequestState::Failed => c.failed += n,
            RequestState::UpstreamFailed => c.upstream_failed += n,
            RequestState::Canceled => c.canceled += n,
        }
    }
    for (i, n) in skipped {
        assets[i].1.skipped += n;
    }
    assets.sort_by_key(|(a, _)| graph.lookup(a).map(|id| graph.rank(id)).unwrap_or(usize::MAX));
    Ok(BackfillProgress { assets })
}

#[cfg(test)]
mod tests;
