//! Backfills: a selection over a partition range, expanded into (asset, partition) cells across
//! partition definitions, filtered by a policy, persisted, and carried out as the requests of
//! one run.
//!
//! The cells are requests keyed `backfill:<id>:<asset>:<partition>` with an edge per
//! dependency, so a daily cell becomes claimable the moment its 24 hourly cells succeed (not
//! after every hour of the range), and resubmitting a backfill after a crash adds nothing that
//! exists. Downstream assets get a higher queue priority than their upstream, so a cell that
//! just became ready is claimed before the remaining upstream cells. Progress and status are
//! read from the run's requests; nothing about a backfill's progress is stored twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lineage::{AttemptStatus, BackfillId, NewBackfill, NewRun, RunId, Trigger};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::exec::{Executor, Observer, plan_requests};
use crate::graph::{AssetGraph, AssetId};
use crate::partition::{PartitionsContext, compress_ranges};
use crate::plan::{self, LineageSnapshot, Plan, PlanError, PlanOptions};
use crate::worker::{Until, WorkerConfig, run_worker};

pub use lineage::BackfillPolicy;

/// Why the policy left a cell out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `missing`: it has a materialization.
    AlreadyMaterialized,
    /// `failed`: its latest attempt did not fail.
    NotFailed,
    /// `stale`: its code version and inputs are those of its materialization.
    Fresh,
}

impl SkipReason {
    /// For people.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::AlreadyMaterialized => "already materialized",
            SkipReason::NotFailed => "latest attempt did not fail",
            SkipReason::Fresh => "fresh (same code version and inputs)",
        }
    }
}

/// What the store says about one cell.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Its current materialization: (id, data version, logical version, code version).
    pub current: Option<(i64, String, String, String)>,
    /// Whether its latest attempt failed.
    pub failed: bool,
    /// Inputs of the current materialization that changed since (maintained by the store).
    pub stale_inputs: i64,
    /// The keys the current materialization read, hashed (`None` when not recorded).
    pub input_keys_hash: Option<String>,
}

/// The cells of some assets, as the store knows them.
#[derive(Debug, Clone, Default)]
pub struct CellStates {
    cells: HashMap<AssetId, HashMap<String, Cell>>,
}

impl CellStates {
    /// Reads every partition state of `assets`.
    pub async fn load(
        store: &dyn lineage::LineageStore,
        graph: &AssetGraph,
        assets: impl IntoIterator<Item = AssetId>,
    ) -> Result<CellStates, lineage::Error> {
        let mut out = CellStates::default();
        for id in assets {
            let states = store.partition_states(graph.asset(id).key.as_str()).await?;
            out.add(id, &states);
        }
        Ok(out)
    }

    /// Adds the partition states of one asset (read once by a caller that needs them too).
    pub fn add(&mut self, asset: AssetId, states: &[lineage::PartitionState]) {
        let cells = self.cells.entry(asset).or_default();
        cells.reserve(states.len());
        for s in states {
            let current = current_of(s);
            cells.insert(
                s.partition_key.clone(),
                Cell {
                    current,
                    failed: s.last_attempt_status == AttemptStatus::Failed,
                    stale_inputs: s.stale_inputs,
                    input_keys_hash: s.input_keys_hash.clone(),
                },
            );
        }
    }

    /// The snapshot [`plan::plan`] reads to plan `targets`: the state of each upstream partition
    /// it will ask about, not of every partition of every upstream asset (a year of hourly
    /// snapshots for one bill). Read level by level: the targets' upstream partitions, then, with
    /// `with_upstream`, the upstream of those not materialized, which become steps.
    pub async fn snapshot_for_plan(
        store: &dyn lineage::LineageStore,
        graph: &AssetGraph,
        targets: &[(AssetId, Vec<String>)],
        ctx: &PartitionsContext,
        options: PlanOptions,
    ) -> Result<LineageSnapshot, lineage::Error> {
        let mut seen: HashSet<(AssetId, String)> =
            targets.iter().flat_map(|(asset, keys)| keys.iter().map(|k| (*asset, k.clone()))).collect();
        let mut frontier: Vec<(AssetId, String)> = seen.iter().cloned().collect();
        let mut snapshot = LineageSnapshot::default();
        while !frontier.is_empty() {
            let mut wanted = Vec::new();
            for (asset, key) in &frontier {
                // A key the mappings refuse is the planner's to report.
                let Ok(upstream) = plan::upstream_partitions(graph, *asset, key, ctx) else { continue };
                for (up, keys) in upstream {
                    wanted.extend(keys.into_iter().filter(|k| seen.insert((up, k.clone()))).map(|k| (up, k)));
                }
            }
            let keys: Vec<(String, String)> =
                wanted.iter().map(|(asset, key)| (graph.asset(*asset).key.to_string(), key.clone())).collect();
            let states = if keys.is_empty() { Vec::new() } else { store.partition_states_of(&keys).await? };
            frontier.clear();
            for ((asset, key), state) in wanted.into_iter().zip(states) {
                if state.as_ref().and_then(current_of).is_some() {
                    snapshot.insert(asset, key);
                } else if options.with_upstream {
                    frontier.push((asset, key));
                }
            }
        }
        Ok(snapshot)
    }

    /// Notes one cell (tests and benchmarks).
    pub fn insert(&mut self, asset: AssetId, partition_key: String, cell: Cell) {
        self.cells.entry(asset).or_default().insert(partition_key, cell);
    }

    fn get(&self, asset: AssetId, key: &str) -> Option<&Cell> {
        self.cells.get(&asset).and_then(|c| c.get(key))
    }

    /// Which cells are materialized, for the planner.
    pub fn snapshot(&self) -> LineageSnapshot {
        let mut snapshot = LineageSnapshot::default();
        for (asset, cells) in &self.cells {
            for (key, cell) in cells {
                if cell.current.is_some() {
                    snapshot.insert(*asset, key.clone());
                }
            }
        }
        snapshot
    }
}

/// A partition's current materialization as a cell holds it: (id, data, logical and code
/// versions), or `None` when it has none.
fn current_of(s: &lineage::PartitionState) -> Option<(i64, String, String, String)> {
    match (s.current_materialization_id, &s.data_version, &s.logical_version, &s.code_version) {
        (Some(m), Some(d), Some(l), Some(c)) => Some((m, d.clone(), l.clone(), c.clone())),
        _ => None,
    }
}

/// One asset's cells in a backfill.
#[derive(Debug, Clone, Serialize)]
pub struct AssetCells {
    /// The asset.
    pub asset: String,
    /// Cells to run, in partition order.
    pub planned: Vec<String>,
    /// Cells the policy left out, by reason.
    pub skipped: Vec<(SkipReason, Vec<String>)>,
}

/// A backfill's cells in dependency order, and what the policy skipped.
#[derive(Debug, Clone)]
pub struct BackfillPlan {
    /// The steps (one per cell, deps as edges).
    pub plan: Plan,
    /// Per asset, in dependency order.
    pub assets: Vec<AssetCells>,
    /// The policy.
    pub policy: BackfillPolicy,
}

impl BackfillPlan {
    /// Cells to run.
    pub fn cells(&self) -> usize {
        self.plan.steps.len()
    }

    /// What was skipped, as stored with the backfill: `[{asset, reason, count, keys}]` with
    /// keys as ranges.
    pub fn skipped_json(&self, graph: &AssetGraph) -> serde_json::Value {
        let mut out = Vec::new();
        for a in &self.assets {
            let def = graph.lookup(&a.asset).ok().map(|id| graph.asset(id));
            for (reason, keys) in &a.skipped {
                out.push(serde_json::json!({
                    "asset": a.asset,
                    "reason": reason,
                    "count": keys.len(),
                    "keys": compress_ranges(def.and_then(|d| d.partitions.as_ref()), keys),
                }));
            }
        }
        serde_json::Value::Array(out)
    }

    /// The plan for people: per asset, cells as ranges, then what the policy skips and why.
    pub fn render(&self, graph: &AssetGraph) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for a in &self.assets {
            let def = graph.lookup(&a.asset).ok().map(|id| graph.asset(id));
            let partitions = def.and_then(|d| d.partitions.as_ref());
            let shown = if partitions.is_none() {
                "(unpartitioned)".to_owned()
            } else if a.planned.is_empty() {
                "-".to_owned()
            } else {
                compress_ranges(partitions, &a.planned).join(", ")
            };
            let _ = writeln!(out, "  {:<20} {:>6} cell{}  {shown}", a.asset, a.planned.len(), plural(a.planned.len()));
            for (reason, keys) in &a.skipped {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>6} skipped: {} ({})",
                    "",
                    keys.len(),
                    reason.describe(),
                    compress_ranges(partitions, keys).join(", ")
                );
            }
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { " " } else { "s" }
}

/// Expands `targets` (from [`plan::targets`]) into the cells `policy` keeps, in dependency
/// order. Pure: `states` must cover the targets' assets and their upstream assets.
pub fn plan_backfill(
    graph: &AssetGraph,
    targets: &[(AssetId, Vec<String>)],
    states: &CellStates,
    policy: BackfillPolicy,
    ctx: &PartitionsContext,
) -> Result<BackfillPlan, PlanError> {
    let mut kept: HashSet<(AssetId, String)> = HashSet::new();
    let mut filtered = Vec::with_capacity(targets.len());
    let mut assets: Vec<AssetCells> = Vec::with_capacity(targets.len());
    // Targets come in dependency order, so an upstream cell is decided before its readers.
    for (asset, keys) in targets {
        let def = graph.asset(*asset);
        let mut planned = Vec::new();
        let mut skipped: HashMap<SkipReason, Vec<String>> = HashMap::new();
        for key in keys {
            let cell = states.get(*asset, key);
            let verdict = match policy {
                BackfillPolicy::All => None,
                BackfillPolicy::Missing => {
                    cell.and_then(|c| c.current.as_ref()).map(|_| SkipReason::AlreadyMaterialized)
                }
                BackfillPolicy::Failed => (!cell.is_some_and(|c| c.failed)).then_some(SkipReason::NotFailed),
                BackfillPolicy::Stale => {
                    (!is_stale(graph, *asset, key, cell, &kept, ctx)?).then_some(SkipReason::Fresh)
                }
            };
            match verdict {
                None => {
                    kept.insert((*asset, key.clone()));
                    planned.push(key.clone());
                }
                Some(reason) => skipped.entry(reason).or_default().push(key.clone()),
            }
        }
        let mut skipped: Vec<(SkipReason, Vec<String>)> = skipped.into_iter().collect();
        skipped.sort_by_key(|(r, _)| *r as u8);
        assets.push(AssetCells { asset: def.key.to_string(), planned: planned.clone(), skipped });
        if !planned.is_empty() {
            filtered.push((*asset, planned));
        }
    }
    // Missing upstream partitions of a *selected* asset are added even outside the range (the
    // report of January needs February's allocation); those of an asset outside the selection
    // are an error that names them, as for `materialize`.
    let strict = plan::plan(graph, &filtered, &states.snapshot(), ctx, PlanOptions { with_upstream: false });
    let plan = match strict {
        Ok(plan) => plan,
        Err(PlanError::MissingUpstream(missing)) => {
            let selected: HashSet<String> = assets.iter().map(|a| a.asset.clone()).collect();
            let outside: Vec<_> =
                missing.iter().filter(|m| !selected.contains(&m.upstream) || m.not_yet_available).cloned().collect();
            if !outside.is_empty() {
                return Err(PlanError::MissingUpstream(outside));
            }
            let plan = plan::plan(graph, &filtered, &states.snapshot(), ctx, PlanOptions { with_upstream: true })?;
            // Count the added cells with their asset.
            for step in &plan.steps {
                let key = graph.asset(step.asset).key.to_string();
                if let Some(a) = assets.iter_mut().find(|a| a.asset == key)
                    && !a.planned.contains(&step.partition_key)
                {
                    a.planned.push(step.partition_key.clone());
                }
            }
            plan
        }
        Err(e) => return Err(e),
    };
    Ok(BackfillPlan { plan, assets, policy })
}

/// Missing, stale (see [`crate::staleness`]), or an input runs in this backfill.
fn is_stale(
    graph: &AssetGraph,
    asset: AssetId,
    key: &str,
    cell: Option<&Cell>,
    kept: &HashSet<(AssetId, String)>,
    ctx: &PartitionsContext,
) -> Result<bool, PlanError> {
    if cell.and_then(|c| c.current.as_ref()).is_none() {
        return Ok(true);
    }
    for (up, keys) in plan::upstream_partitions(graph, asset, key, ctx)? {
        if keys.into_iter().any(|k| kept.contains(&(up, k))) {
            return Ok(true);
        }
    }
    let cell = cell.expect("materialized above");
    let (_, _, _, code_version) = cell.current.as_ref().expect("materialized above");
    let recorded = crate::staleness::Recorded {
        code_version,
        stale_inputs: cell.stale_inputs,
        input_keys_hash: cell.input_keys_hash.as_deref(),
    };
    Ok(!crate::staleness::stale_causes(graph, asset, key, recorded, ctx)?.is_empty())
}

/// What a backfill was asked for.
#[derive(Debug, Clone)]
pub struct BackfillSpec {
    /// The selection as written.
    pub selection: String,
    /// First key, as given.
    pub from: String,
    /// Last key, as given.
    pub to: String,
}

/// Persists a backfill (its row and its queued run, in one transaction), then submits its
/// cells. Returns its id and run.
pub async fn launch(
    exec: &Executor,
    spec: &BackfillSpec,
    bf: &BackfillPlan,
) -> Result<(BackfillId, RunId), lineage::Error> {
    let id = BackfillId::new();
    let run_id = RunId::new();
    let now = exec.clock.now();
    exec.store
        .create_backfill(&NewBackfill {
            id,
            selection: spec.selection.clone(),
            partition_from: spec.from.clone(),
            partition_to: spec.to.clone(),
            policy: bf.policy,
            run: NewRun {
                id: run_id,
                trigger: Trigger::Backfill,
                selection: spec.selection.clone(),
                n_steps: bf.cells() as i64,
                tags: serde_json::json!({
                    "backfill": id.to_string(), "from": spec.from, "to": spec.to, "policy": bf.policy.as_str(),
                }),
                created_at: now,
                owner: None,
            },
            cells: bf.cells() as i64,
            skipped: bf.skipped_json(exec.defs.graph()),
        })
        .await?;
    // The backfill exists, its cells are not requested yet: `backfill resume` requests them.
    crate::failpoint::hit("backfill.submit");
    submit(exec, id, run_id, &bf.plan).await?;
    Ok((id, run_id))
}

/// Submits a backfill's cells as requests of its run; cells already requested are left as they
/// are (their keys exist). Returns how many requests were new.
pub async fn submit(exec: &Executor, id: BackfillId, run_id: RunId, plan: &Plan) -> Result<usize, lineage::Error> {
    let (requests, edges) =
        plan_requests(&exec.defs, plan, run_id, &format!("backfill:{id}"), Trigger::Backfill, exec.clock.now());
    let outcomes = exec.store.submit_requests(&requests, &edges).await?;
    Ok(outcomes.iter().filter(|o| o.inserted).count())
}

/// The requests `backfill resume` puts back in the queue: the canceled ones, and those held back
/// `upstream_failed` by a canceled upstream (a step stopped mid-run by a cancel marks its
/// downstream so before the waiting rest is canceled). One whose upstream failed for good goes
/// straight back to `upstream_failed`: `retry-failed` is what reruns failed cells.
pub const RESUME_REOPENS: &[lineage::RequestState] =
    &[lineage::RequestState::Canceled, lineage::RequestState::UpstreamFailed];

/// Resumes a backfill in one transaction: its requests in `states` back in the queue, its cells
/// never requested (a crash before its submission, or cells `plan` holds now) requested, and its
/// run ended if that leaves nothing to do. A cell already requested keeps its upstream edges: it
/// does not wait on a cell requested now. Returns how many were reopened and how many are new.
pub async fn resume(
    exec: &Executor,
    id: BackfillId,
    run_id: RunId,
    plan: &Plan,
    states: &[lineage::RequestState],
) -> Result<(u64, usize), lineage::Error> {
    let now = exec.clock.now();
    let (requests, edges) = plan_requests(&exec.defs, plan, run_id, &format!("backfill:{id}"), Trigger::Backfill, now);
    let (reopened, outcomes) = exec.store.resume_run(run_id, states, &requests, &edges, now).await?;
    Ok((reopened, outcomes.iter().filter(|o| o.inserted).count()))
}

/// Runs `run`'s requests in this process until the run ends; on `cancel`, stops its running
/// steps and cancels the rest, so the backfill ends canceled.
pub async fn drive(
    exec: &Executor,
    run: RunId,
    concurrency: usize,
    observer: Arc<dyn Observer>,
    cancel: CancellationToken,
) -> Result<(), lineage::Error> {
    let config = WorkerConfig::new(concurrency);
    run_worker(exec, &config, Until::RunEnded(run), observer, cancel.clone()).await?;
    if cancel.is_cancelled() {
        exec.store.cancel_run(run, exec.clock.now()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
