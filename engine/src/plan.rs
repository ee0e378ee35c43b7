//! The planner: `(AssetGraph, LineageSnapshot, PartitionsContext) -> Plan`.
//!
//! Pure: no IO, no clock (the time is in the context), no async. The same inputs always give
//! the same plan, which is what the tests snapshot.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;

use crate::graph::{AssetGraph, AssetId};
use crate::partition::{PartitionKeyError, PartitionsContext, compress_ranges};

/// Which partitions the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    /// None: only unpartitioned assets can be planned.
    None,
    /// One key.
    Key(String),
    /// A range of keys, both ends included.
    Range(String, String),
}

/// What the lineage store knows that the planner needs: which partitions are materialized.
#[derive(Debug, Clone, Default)]
pub struct LineageSnapshot {
    materialized: HashMap<AssetId, HashSet<String>>,
}

impl LineageSnapshot {
    /// Notes that (asset, partition) has a current materialization.
    pub fn insert(&mut self, asset: AssetId, partition_key: String) {
        self.materialized.entry(asset).or_default().insert(partition_key);
    }

    /// Whether (asset, partition) has a current materialization.
    pub fn is_materialized(&self, asset: AssetId, partition_key: &str) -> bool {
        self.materialized.get(&asset).is_some_and(|keys| keys.contains(partition_key))
    }
}

/// Options that change what gets planned.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Plan missing upstream partitions too, instead of refusing.
    pub with_upstream: bool,
}

/// One (asset, partition) to materialize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The asset.
    pub asset: AssetId,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// Steps of this plan that must succeed first (indices into [`Plan::steps`]).
    pub deps: Vec<usize>,
}

/// Steps in dependency order: every step comes after its deps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

/// Upstream partitions a plan needs that are neither materialized nor planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingUpstream {
    /// The upstream asset.
    pub upstream: String,
    /// Its missing keys, as ranges.
    pub keys: Vec<String>,
    /// How many keys.
    pub count: usize,
    /// The downstream assets that need them.
    pub needed_by: Vec<String>,
    /// Whether some of them do not exist yet (their window has not closed), so even
    /// `--with-upstream` cannot help.
    pub not_yet_available: bool,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A partition key did not fit an asset.
    #[error("asset {asset}: {source}")]
    Key {
        /// The asset.
        asset: String,
        /// What was wrong with the key.
        #[source]
        source: PartitionKeyError,
    },
    /// Upstream partitions are missing.
    #[error("{}", missing_text(.0))]
    MissingUpstream(Vec<MissingUpstream>),
}

fn missing_text(missing: &[MissingUpstream]) -> String {
    let mut s = String::from("missing upstream partitions:");
    for m in missing {
        let _ = write!(
            s,
            "\n  {} ({} partition{}) needed by {}: {}",
            m.upstream,
            m.count,
            if m.count == 1 { "" } else { "s" },
            m.needed_by.join(", "),
            m.keys.join(", ")
        );
        if m.not_yet_available {
            s.push_str(" (some do not exist yet: their windows have not closed)");
        }
    }
    if missing.iter().all(|m| !m.not_yet_available) {
        s.push_str("\nmaterialize them first, or add --with-upstream (or select +ASSET) to include them");
    }
    s
}

/// The partitions of each selected asset that `spec` designates.
///
/// An asset whose own partitions accept the key takes it. One that does not (an hourly asset
/// under `--partition 2025-12-15`) takes the partitions its selected downstream assets read,
/// or else the partitions of it that read its selected upstream assets' keys.
pub fn targets(
    graph: &AssetGraph,
    selected: &BTreeSet<AssetId>,
    spec: &PartitionSpec,
    ctx: &PartitionsContext,
) -> Result<Vec<(AssetId, Vec<String>)>, PlanError> {
    let mut keys_of: HashMap<AssetId, Vec<String>> = HashMap::new();
    let mut unresolved: HashMap<AssetId, PartitionKeyError> = HashMap::new();
    for &id in selected {
        let def = graph.asset(id);
        let Some(partitions) = def.partitions.as_ref() else {
            keys_of.insert(id, vec![String::new()]);
            continue;
        };
        let own = match spec {
            PartitionSpec::None => Err(PartitionKeyError::KeyRequired { def: partitions.describe() }),
            PartitionSpec::Key(k) => partitions.resolve(k, ctx).map(|k| vec![k]),
            PartitionSpec::Range(a, b) => partitions.range(a, b, ctx),
        };
        match own {
            Ok(keys) => {
                keys_of.insert(id, keys);
            }
            Err(err @ (PartitionKeyError::Malformed { .. } | PartitionKeyError::KeyRequired { .. })) => {
                unresolved.insert(id, err);
            }
            Err(err) => {
                return Err(PlanError::Key { asset: def.key.to_string(), source: err });
            }
        }
    }
    let key_error = |id: AssetId, source| PlanError::Key { asset: graph.asset(id).key.to_string(), source };
    // Upstream of a resolved asset: the partitions it reads.
    for &id in graph.topo_order().iter().rev() {
        if !unresolved.contains_key(&id) {
            continue;
        }
        let partitions = graph.asset(id).partitions.as_ref();
        let mut keys = KeySet::default();
        for edge in graph.downstream(id).iter().filter(|e| keys_of.contains_key(&e.asset)) {
            let down = graph.asset(edge.asset).partitions.as_ref();
            for down_key in &keys_of[&edge.asset] {
                let ups = edge.mapping.upstream_keys(partitions, down, down_key, ctx).map_err(|e| key_error(id, e))?;
                // Only partitions that exist: with an end offset downstream, today's bill may
                // exist before today's last hours do; `plan` reports those as not yet available.
                keys.extend(ups.into_iter().filter(|k| partitions.is_none_or(|p| p.resolve(k, ctx).is_ok())));
            }
        }
        if keys.seen.is_empty() && !graph.downstream(id).iter().any(|e| keys_of.contains_key(&e.asset)) {
            continue;
        }
        unresolved.remove(&id);
        keys_of.insert(id, keys.ordered);
    }
    // Downstream of a resolved asset: its partitions that read the resolved keys.
    for &id in graph.topo_order() {
        if !unresolved.contains_key(&id) {
            continue;
        }
        let partitions = graph.asset(id).partitions.as_ref().expect("only partitioned assets are unresolved");
        let mut keys = KeySet::default();
        let edges: Vec<_> = graph.upstream(id).iter().filter(|e| keys_of.contains_key(&e.asset)).collect();
        if edges.is_empty() {
            continue;
        }
        for edge in edges {
            let up = graph.asset(edge.asset).partitions.as_ref();
            for up_key in &keys_of[&edge.asset] {
                let downs =
                    edge.mapping.downstream_keys(up, Some(partitions), up_key, ctx).map_err(|e| key_error(id, e))?;
                // Only partitions that exist: an hour late in the month does not make the
                // month's partition exist before the month closes.
                keys.extend(downs.into_iter().filter(|k| partitions.resolve(k, ctx).is_ok()));
            }
        }
        unresolved.remove(&id);
        keys_of.insert(id, keys.ordered);
    }
    if let Some((&id, err)) = unresolved.iter().min_by_key(|(id, _)| graph.rank(**id)) {
        return Err(key_error(id, err.clone()));
    }
    let mut out: Vec<(AssetId, Vec<String>)> = keys_of.into_iter().filter(|(_, keys)| !keys.is_empty()).collect();
    out.sort_by_key(|(id, _)| graph.rank(*id));
    Ok(out)
}

/// Keys in first-seen order, without duplicates.
#[derive(Default)]
struct KeySet {
    seen: HashSet<String>,
    ordered: Vec<String>,
}

impl KeySet {
    fn extend(&mut self, keys: impl IntoIterator<Item = String>) {
        for k in keys {
            if self.seen.insert(k.clone()) {
                self.ordered.push(k);
            }
        }
    }
}

/// Upstream partitions found missing while planning: keys in order (and as a set), the
/// downstream assets needing them, and whether some do not exist yet.
type Missing = (Vec<String>, HashSet<String>, BTreeSet<String>, bool);

/// Plans `targets`, adding missing upstream partitions when `options.with_upstream`.
pub fn plan(
    graph: &AssetGraph,
    targets: &[(AssetId, Vec<String>)],
    snapshot: &LineageSnapshot,
    ctx: &PartitionsContext,
    options: PlanOptions,
) -> Result<Plan, PlanError> {
    let mut index: HashMap<(AssetId, String), usize> = HashMap::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut queue = VecDeque::new();
    for (asset, keys) in targets {
        for key in keys {
            if let std::collections::hash_map::Entry::Vacant(e) = index.entry((*asset, key.clone())) {
                e.insert(steps.len());
                queue.push_back(steps.len());
                steps.push(Step { asset: *asset, partition_key: key.clone(), deps: Vec::new() });
            }
        }
    }
    let mut missing: HashMap<AssetId, Missing> = HashMap::new();
    while let Some(step_idx) = queue.pop_front() {
        let (asset, key) = (steps[step_idx].asset, steps[step_idx].partition_key.clone());
        let def = graph.asset(asset);
        let mut deps = Vec::new();
        for (up_id, up_keys) in upstream_partitions(graph, asset, &key, ctx)? {
            let up = graph.asset(up_id);
            for up_key in up_keys {
                if let Some(&dep) = index.get(&(up_id, up_key.clone())) {
                    deps.push(dep);
                    continue;
                }
                let exists = up.partitions.as_ref().is_none_or(|p| p.resolve(&up_key, ctx).is_ok());
                if exists && snapshot.is_materialized(up_id, &up_key) {
                    continue;
                }
                if exists && options.with_upstream {
                    let dep = steps.len();
                    index.insert((up_id, up_key.clone()), dep);
                    steps.push(Step { asset: up_id, partition_key: up_key, deps: Vec::new() });
                    queue.push_back(dep);
                    deps.push(dep);
                    continue;
                }
                let entry = missing.entry(up_id).or_default();
                if entry.1.insert(up_key.clone()) {
                    entry.0.push(up_key);
                }
                entry.2.insert(def.key.to_string());
                entry.3 |= !exists;
            }
        }
        deps.sort_unstable();
        deps.dedup();
        steps[step_idx].deps = deps;
    }
    if !missing.is_empty() {
        let mut list: Vec<MissingUpstream> = missing
            .into_iter()
            .map(|(id, (keys, _, needed_by, not_yet))| MissingUpstream {
                upstream: graph.asset(id).key.to_string(),
                count: keys.len(),
                keys: compress_ranges(graph.asset(id).partitions.as_ref(), &keys),
                needed_by: needed_by.into_iter().collect(),
                not_yet_available: not_yet,
            })
            .collect();
        list.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        return Err(PlanError::MissingUpstream(list));
    }

    // Order by asset rank (a topological order of assets), keeping discovery order within an
    // asset; dependencies always point to a lower rank, so the order is valid.
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|i| (graph.rank(steps[*i].asset), partition_order(graph, &steps[*i]), *i));
    let mut new_index = vec![0; steps.len()];
    for (new, old) in order.iter().enumerate() {
        new_index[*old] = new;
    }
    let steps = order
        .into_iter()
        .map(|old| {
            let mut step = steps[old].clone();
            step.deps = step.deps.iter().map(|d| new_index[*d]).collect();
            step.deps.sort_unstable();
            step
        })
        .collect();
    Ok(Plan { steps })
}

fn partition_order(graph: &AssetGraph, step: &Step) -> i64 {
    graph.asset(step.asset).partitions.as_ref().map_or(0, |p| p.order_index(&step.partition_key))
}

impl Plan {
    /// A readable rendering: one line per asset with its partitions as ranges.
    pub fn render(&self, graph: &AssetGraph) -> String {
        let mut by_asset: Vec<(AssetId, Vec<String>)> = Vec::new();
        for step in &self.steps {
            match by_asset.last_mut() {
                Some((asset, keys)) if *asset == step.asset => keys.push(step.partition_key.clone()),
                _ => by_asset.push((step.asset, vec![step.partition_key.clone()])),
            }
        }
        let mut out = String::new();
        for (asset, keys) in by_asset {
            let def = graph.asset(asset);
            let ranges = compress_ranges(def.partitions.as_ref(), &keys);
            let shown = if def.partitions.is_none() { "(unpartitioned)".to_owned() } else { ranges.join(", ") };
            let _ = writeln!(
                out,
                "{:<20} {:>5} step{}  {}",
                def.key.as_str(),
                keys.len(),
                if keys.len() == 1 { " " } else { "s" },
                shown
            );
        }
        out
    }
}

/// The upstream partitions partition `key` of `asset` reads under the current definitions, per
/// upstream asset in declaration order (the order a materialization records its inputs in).
pub fn upstream_partitions(
    graph: &AssetGraph,
    asset: AssetId,
    key: &str,
    ctx: &PartitionsContext,
) -> Result<Vec<(AssetId, Vec<String>)>, PlanError> {
    let def = graph.asset(asset);
    graph
        .upstream(asset)
        .iter()
        .map(|edge| {
            let up = graph.asset(edge.asset);
            let keys = edge
                .mapping
                .upstream_keys(up.partitions.as_ref(), def.partitions.as_ref(), key, ctx)
                .map_err(|source| PlanError::Key { asset: def.key.to_string(), source })?;
            Ok((edge.asset, keys))
        })
        .collect()
}

#[cfg(test)]
mod tests;
