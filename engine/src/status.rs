//! One status model: the state of each partition of an asset in one word, how many partitions
//! are in each, which are late and which deadline they missed, and how far a backfill has got.
//!
//! The CLI's text and `--json`, the lineage picture and the web view all render what this module
//! computes; none of them decides a status of its own. It reads the store's lean partition
//! summaries (staleness is maintained at write time, see [`crate::staleness`]) and never walks
//! upstream states.
//!
//! [`asset_summary`] is the same status for a whole asset as runs of one status, not a report per
//! partition: for time-window partitions it reads the store's ranges
//! ([`LineageStore::partition_runs`]) and finds the missing partitions between them by index
//! arithmetic, so a million hours cost a handful of runs; otherwise (and where a range cannot
//! stand for its partitions) it summarizes [`asset_status`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use lineage::{
    AttemptStatus, BackfillRecord, LineageStore, PartitionClass, PartitionRun, PartitionSummary, RequestState,
};
use serde::Serialize;

use crate::definition::FreshnessPolicy;
use crate::graph::{AssetGraph, AssetId};
use crate::partition::{PartitionsContext, PartitionsDef, TimeWindowPartitions};
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

/// Consecutive partitions of an asset with one status, all late or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRun {
    /// The first partition.
    pub first: String,
    /// The last partition.
    pub last: String,
    /// Their status.
    pub status: PartitionStatus,
    /// How many partitions.
    pub count: usize,
    /// How many of them are late: all or none.
    #[serde(skip_serializing_if = "is_zero")]
    pub late: usize,
    /// The position of `first` among the asset's partitions.
    #[serde(skip)]
    pub start: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where an [`AssetSummary`] finds the key at a position.
#[derive(Debug, Clone)]
enum KeyAt {
    /// Time windows: the key of window `i`.
    Window(TimeWindowPartitions),
    /// The keys, listed.
    Listed(Vec<String>),
}

/// The status of every partition of an asset, as runs of one status.
#[derive(Debug, Clone)]
pub struct AssetSummary {
    /// The asset.
    pub asset: AssetId,
    /// Counts over its partitions.
    pub counts: StatusCounts,
    /// Every partition, in partition order, as runs of one status (late or not): a year of
    /// hours that is all missing is one run.
    pub runs: Vec<StatusRun>,
    keys: KeyAt,
}

impl AssetSummary {
    /// The summary of per-partition reports (every partition of the asset, in order).
    pub fn of_status(status: &AssetStatus) -> AssetSummary {
        AssetSummary {
            asset: status.asset,
            counts: status.counts,
            runs: runs_of_reports(&status.partitions),
            keys: KeyAt::Listed(status.partitions.iter().map(|p| p.partition.clone()).collect()),
        }
    }

    /// The key of the partition at position `i`.
    pub fn key_at(&self, i: usize) -> Option<String> {
        match &self.keys {
            KeyAt::Window(tw) => (i < self.counts.partitions).then(|| tw.key(i as i64)),
            KeyAt::Listed(keys) => keys.get(i).cloned(),
        }
    }

    /// The status of the partition at each position in `range`.
    pub fn statuses(&self, range: std::ops::Range<usize>) -> Vec<PartitionStatus> {
        let mut out = Vec::with_capacity(range.len());
        for run in &self.runs {
            let from = run.start.max(range.start);
            let to = (run.start + run.count).min(range.end);
            out.extend(std::iter::repeat_n(run.status, to.saturating_sub(from)));
        }
        out
    }
}

/// Run-length runs of partition reports, in their order: a run goes on while the status and
/// whether a partition is late stay the same.
pub fn runs_of_reports(reports: &[PartitionReport]) -> Vec<StatusRun> {
    let mut out: Vec<StatusRun> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let late = usize::from(r.late_since.is_some());
        match out.last_mut() {
            Some(last) if last.status == r.status && (last.late > 0) == (late > 0) => {
                last.last.clone_from(&r.partition);
                last.count += 1;
                last.late += late;
            }
            _ => out.push(StatusRun {
                first: r.partition.clone(),
                last: r.partition.clone(),
                status: r.status,
                count: 1,
                late,
                start: i,
            }),
        }
    }
    out
}

/// The status of every partition of `asset`, as runs: from the store's ranges for time-window
/// partitions of an asset without upstream whose ranges stand for their partitions (see
/// [`summary_of_runs`]), otherwise
/// summarized from [`asset_status`]. Either way, what [`AssetSummary::of_status`] of
/// `asset_status(.., None, ..)` gives.
pub async fn asset_summary(
    store: &dyn LineageStore,
    graph: &AssetGraph,
    asset: AssetId,
    ctx: &PartitionsContext,
) -> Result<AssetSummary, lineage::Error> {
    let def = graph.asset(asset);
    // With upstream, each partition read keys of its own, which only the definitions can check:
    // every materialized run would be unverified, so the ranges are not worth reading.
    if let (Some(PartitionsDef::TimeWindow(tw)), Some(known)) = (&def.partitions, no_upstream_keys_hash(graph, asset)) {
        // A run costs more than a row; past one run per 16 partitions, rows are cheaper.
        let max_runs = tw.last_index(ctx.now).map_or(0, |last| last as usize + 1) / 16 + 64;
        let runs = store.partition_runs(def.key.as_str(), &def.code_version, Some(&known), max_runs + 1).await?;
        let latest_at = match (def.freshness, tw.last_index(ctx.now)) {
            (Some(FreshnessPolicy::MaxLag(_)), Some(last)) => store
                .partition_states_of(&[(def.key.to_string(), tw.key(last))])
                .await?
                .remove(0)
                .and_then(|s| s.materialized_at),
            _ => None,
        };
        if runs.len() <= max_runs
            && let Some(summary) = summary_of_runs(graph, asset, tw, &runs, latest_at, ctx)
        {
            return Ok(summary);
        }
    }
    Ok(AssetSummary::of_status(&asset_status(store, graph, asset, None, ctx).await?))
}

/// The summary of a time-window asset from the store's runs, without a report per partition;
/// `latest_materialized_at` as for [`late_since`]. `None` where the runs cannot stand for their
/// partitions: a run with partitions the store never saw inside it (only the keys could say
/// where), one reaching past the definition's first or last partition, a key not in canonical
/// form or out of order, or a materialization only the definitions can judge
/// ([`PartitionClass::Unverified`]).
pub fn summary_of_runs(
    graph: &AssetGraph,
    asset: AssetId,
    tw: &TimeWindowPartitions,
    runs: &[PartitionRun],
    latest_materialized_at: Option<DateTime<Utc>>,
    ctx: &PartitionsContext,
) -> Option<AssetSummary> {
    let n = tw.last_index(ctx.now).map_or(0, |last| last as usize + 1);
    // The stored runs as positions, in order, the partitions between them missing.
    let mut stored: Vec<(usize, usize, PartitionStatus)> = Vec::with_capacity(runs.len());
    let mut next = i64::MIN;
    for run in runs {
        let (i, j) = (tw.parse_index(&run.first).ok()?, tw.parse_index(&run.last).ok()?);
        if tw.key(i) != run.first || tw.key(j) != run.last || i < next || j - i + 1 != run.count {
            return None;
        }
        next = j + 1;
        if j < 0 || i >= n as i64 {
            continue; // None of the definition's partitions: not shown, as asset_status skips it.
        }
        if i < 0 || j >= n as i64 {
            return None;
        }
        let status = match run.class {
            PartitionClass::Missing => PartitionStatus::Missing,
            PartitionClass::Materialized => PartitionStatus::Materialized,
            PartitionClass::Stale => PartitionStatus::Stale,
            PartitionClass::Failed => PartitionStatus::Failed,
            PartitionClass::InProgress => PartitionStatus::InProgress,
            PartitionClass::Unverified => return None,
        };
        stored.push((i as usize, run.count as usize, status));
    }
    let mut segments: Vec<(usize, usize, PartitionStatus)> = Vec::with_capacity(2 * stored.len() + 1);
    let mut at = 0;
    for (start, len, status) in stored.iter().copied().chain([(n, 0, PartitionStatus::Missing)]) {
        if start > at {
            segments.push((at, start - at, PartitionStatus::Missing));
        }
        if len > 0 {
            segments.push((start, len, status));
        }
        at = start + len;
    }
    // Late, as `late_since` judges each partition from the first one the store holds: under a
    // deadline after the window's end, the unmaterialized ones among those whose deadline passed
    // (deadlines grow with the window); under a maximum lag, the latest one when it is late.
    let judged_from = stored.first().map_or(n, |(start, _, _)| *start);
    let def = graph.asset(asset);
    let (late_from, late_to, any_status) = match def.freshness {
        Some(policy @ FreshnessPolicy::AfterWindowEnd(_)) => {
            let due = |i: usize| policy.deadline(tw.window(i as i64).end).is_some_and(|due| ctx.now > due);
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if due(mid) { lo = mid + 1 } else { hi = mid }
            }
            (judged_from, lo, false)
        }
        Some(FreshnessPolicy::MaxLag(_)) if n > 0 => {
            let late = late_since(
                graph,
                asset,
                &tw.key(n as i64 - 1),
                PartitionStatus::Materialized,
                true,
                latest_materialized_at,
                ctx,
            )
            .is_some();
            if late { (judged_from.max(n - 1), n, true) } else { (n, n, true) }
        }
        _ => (n, n, false),
    };
    let late_status = |s: PartitionStatus| {
        any_status || matches!(s, PartitionStatus::Missing | PartitionStatus::Failed | PartitionStatus::InProgress)
    };
    let mut counts = StatusCounts { partitions: n, ..StatusCounts::default() };
    let mut out: Vec<StatusRun> = Vec::new();
    for (start, len, status) in segments {
        let end = start + len;
        let mut cuts = vec![start];
        cuts.extend([late_from, late_to].into_iter().filter(|c| *c > start && *c < end));
        cuts.push(end);
        for piece in cuts.windows(2) {
            let (from, to) = (piece[0], piece[1]);
            let late = late_status(status) && from >= late_from && to <= late_to;
            let count = to - from;
            match status {
                PartitionStatus::Missing => counts.missing += count,
                PartitionStatus::Materialized => counts.materialized += count,
                PartitionStatus::Stale => {
                    counts.materialized += count;
                    counts.stale += count;
                }
                PartitionStatus::Failed => counts.failed += count,
                PartitionStatus::InProgress => counts.in_progress += count,
            }
            counts.late += if late { count } else { 0 };
            match out.last_mut() {
                Some(last) if last.status == status && (last.late > 0) == late => {
                    last.count += count;
                    last.late += if late { count } else { 0 };
                }
                _ => out.push(StatusRun {
                    first: String::new(),
                    last: String::new(),
                    status,
                    count,
                    late: if late { count } else { 0 },
                    start: from,
                }),
            }
        }
    }
    for run in &mut out {
        run.first = tw.key(run.start as i64);
        run.last = tw.key((run.start + run.count - 1) as i64);
    }
    Some(AssetSummary { asset, counts, runs: out, keys: KeyAt::Window(tw.clone()) })
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
