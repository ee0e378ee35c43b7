//! Staleness: whether a materialized partition is still what its definition and its inputs
//! would give, and why not.
//!
//! The lineage store maintains the expensive part when a materialization is recorded:
//! `stale_inputs` counts the inputs of the current materialization that now have another data
//! version (or none), adjusted only for the direct readers of the partition that changed. Here
//! that count is combined with what only the definitions know — the code version, and which
//! upstream partitions the mappings give now — so a status read is a point lookup per partition,
//! never a walk over upstream states. [`root_causes`] walks the lineage backwards to the leaf
//! partitions whose change made a partition stale.
//!
//! Staleness is one hop, as data versions are: a bill whose hour changed is stale, but the
//! allocation that read the bill is not until the bill is re-materialized with other bytes.

use chrono::{DateTime, Utc};
use lineage::{LineageStore, MaterializationId, PartitionState, RunId};
use serde::Serialize;

use crate::graph::{AssetGraph, AssetId};
use crate::partition::PartitionsContext;
use crate::plan::PlanError;

/// Why a materialized partition is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum StaleCause {
    /// Its definition's code version is not the one it was materialized with.
    Code {
        /// Materialized with.
        recorded: String,
        /// The definition's now.
        current: String,
    },
    /// The mappings now give other upstream partitions than the ones it read (a dependency was
    /// added or removed, or a mapping changed).
    Dependencies,
    /// Inputs it read now have another data version, or none.
    Inputs {
        /// How many.
        changed: i64,
    },
}

impl std::fmt::Display for StaleCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaleCause::Code { recorded, current } => write!(f, "code version {recorded} → {current}"),
            StaleCause::Dependencies => f.write_str("its dependencies changed (the mappings give other partitions)"),
            StaleCause::Inputs { changed: 1 } => f.write_str("1 input changed since it was read"),
            StaleCause::Inputs { changed } => write!(f, "{changed} inputs changed since they were read"),
        }
    }
}

/// What staleness needs to know of a materialized partition, as the store records it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// The code version it was materialized with.
    pub code_version: &'a str,
    /// Inputs that changed since it read them (maintained by the store).
    pub stale_inputs: i64,
    /// The keys it read, hashed ([`lineage::input_keys_hash`]); `None` when not recorded.
    pub input_keys_hash: Option<&'a str>,
}

impl<'a> Recorded<'a> {
    /// The recorded facts of a materialized partition state (`None` when not materialized).
    pub fn of(state: &'a PartitionState) -> Option<Recorded<'a>> {
        state.current_materialization_id?;
        Some(Recorded {
            code_version: state.code_version.as_deref()?,
            stale_inputs: state.stale_inputs,
            input_keys_hash: state.input_keys_hash.as_deref(),
        })
    }

    /// The same from the lean summary `status` reads.
    pub fn of_summary(summary: &'a lineage::PartitionSummary) -> Option<Recorded<'a>> {
        if !summary.materialized {
            return None;
        }
        Some(Recorded {
            code_version: summary.code_version.as_deref()?,
            stale_inputs: summary.stale_inputs,
            input_keys_hash: summary.input_keys_hash.as_deref(),
        })
    }
}

/// Why partition `key` of `asset`, materialized as `recorded`, is stale; empty when fresh.
/// Causes come code first, then dependencies, then inputs.
pub fn stale_causes(
    graph: &AssetGraph,
    asset: AssetId,
    key: &str,
    recorded: Recorded<'_>,
    ctx: &PartitionsContext,
) -> Result<Vec<StaleCause>, PlanError> {
    let def = graph.asset(asset);
    let mut causes = Vec::new();
    if recorded.code_version != def.code_version {
        causes.push(StaleCause::Code { recorded: recorded.code_version.to_owned(), current: def.code_version.clone() });
    }
    if let Some(read) = recorded.input_keys_hash
        && read != expected_input_keys_hash(graph, asset, key, ctx)?
    {
        causes.push(StaleCause::Dependencies);
    }
    if recorded.stale_inputs > 0 {
        causes.push(StaleCause::Inputs { changed: recorded.stale_inputs });
    }
    Ok(causes)
}

/// The [`lineage::input_keys_hash`] of the upstream partitions the definition maps `key` to now.
pub fn expected_input_keys_hash(
    graph: &AssetGraph,
    asset: AssetId,
    key: &str,
    ctx: &PartitionsContext,
) -> Result<String, PlanError> {
    let ups = crate::plan::upstream_partitions(graph, asset, key, ctx)?;
    let keys = ups.iter().flat_map(|(up, keys)| keys.iter().map(|k| (graph.asset(*up).key.as_str(), k.as_str())));
    Ok(lineage::input_keys_hash(keys))
}

/// One changed partition in a root-cause tree: it was read at one data version and is now (or
/// was re-materialized to) another, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The asset.
    pub asset: String,
    /// The partition.
    pub partition: String,
    /// The data version that was read.
    pub from: String,
    /// The data version it changed to (at the top of the tree, the current one; below, the one
    /// the re-materialization above read), or `None` when it has no materialization any more.
    pub to: Option<String>,
    /// When `to` was materialized, and by which run.
    pub materialized: Option<(DateTime<Utc>, RunId)>,
    /// Why it changed.
    pub because: Because,
}

/// Why a partition's data version changed between two materializations.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Because {
    /// Its own inputs changed (the next hop; more than [`MAX_CHILDREN`] are cut, `more` says how many).
    Inputs {
        /// The inputs that changed.
        changes: Vec<Change>,
        /// Changed inputs not listed.
        more: usize,
    },
    /// A root cause: its code version changed.
    Code {
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// A root cause: same code and inputs, other bytes (the source it reads changed).
    Source,
    /// A root cause: it read other partitions (a dependency or mapping changed).
    Dependencies {
        /// Partitions read now and not before, as `asset partition`.
        added: Vec<String>,
        /// Partitions read before and not now.
        removed: Vec<String>,
    },
    /// A root cause: it was wiped or never materialized since.
    Missing,
    /// The materialization that was read is no longer in the store (wiped history).
    Unknown,
}

/// How many changed inputs a node of the tree lists.
pub const MAX_CHILDREN: usize = 10;

/// How many changes a whole tree holds at most (diamonds in the graph repeat subtrees).
pub const MAX_NODES: usize = 200;

/// The changed inputs of the current materialization of (`asset`, `key`), each with why it
/// changed, hop by hop back to the leaves: the root causes of its staleness. Empty when no
/// input changed. Bounded by the graph's depth; each node lists at most [`MAX_CHILDREN`].
pub async fn root_causes(store: &dyn LineageStore, asset: &str, key: &str) -> Result<Because, lineage::Error> {
    let state = store.partition_states_of(&[(asset.to_owned(), key.to_owned())]).await?.remove(0);
    let Some(current) = state.and_then(|s| s.current_materialization_id) else {
        return Ok(Because::Missing);
    };
    let inputs = store.inputs_of(current).await?;
    let keys: Vec<(String, String)> = inputs.iter().map(|i| (i.asset_key.clone(), i.partition_key.clone())).collect();
    let now = store.partition_states_of(&keys).await?;
    let mut changes = Vec::new();
    let mut more = 0;
    let mut budget = MAX_NODES;
    for (input, state) in inputs.into_iter().zip(now) {
        let to = state.as_ref().and_then(|s| Some((s.current_materialization_id?, s.data_version.clone()?)));
        if to.as_ref().map(|(_, d)| d.as_str()) == Some(input.data_version.as_str()) {
            continue;
        }
        if changes.len() == MAX_CHILDREN || budget == 0 {
            more += 1;
            continue;
        }
        changes.push(Box::pin(explain(store, input, to, &mut budget)).await?);
    }
    Ok(Because::Inputs { changes, more })
}

/// Why `input` (a version that was read) became `to` (a materialization id and data version).
/// Each change spends one of `budget`; when it runs out, deeper changes are counted, not listed.
async fn explain(
    store: &dyn LineageStore,
    input: lineage::InputVersion,
    to: Option<(MaterializationId, String)>,
    budget: &mut usize,
) -> Result<Change, lineage::Error> {
    *budget = budget.saturating_sub(1);
    let mut change = Change {
        asset: input.asset_key,
        partition: input.partition_key,
        from: input.data_version,
        to: to.as_ref().map(|(_, d)| d.clone()),
        materialized: None,
        because: Because::Missing,
    };
    let Some((to_id, _)) = to else { return Ok(change) };
    let Some(after) = store.materialization(to_id).await? else { return Ok(change) };
    change.materialized = Some((after.finished_at, after.run_id));
    let before = match input.materialization_id {
        Some(id) => store.materialization(id).await?,
        None => None,
    };
    let Some(before) = before else {
        change.because = Because::Unknown;
        return Ok(change);
    };
    let (read_before, read_after) = (store.inputs_of(before.id).await?, store.inputs_of(after.id).await?);
    let key = |i: &lineage::InputVersion| format!("{} {}", i.asset_key, i.partition_key);
    let same_key = |a: &lineage::InputVersion, b: &lineage::InputVersion| {
        a.asset_key == b.asset_key && a.partition_key == b.partition_key
    };
    let mut changes = Vec::new();
    let mut more = 0;
    for new in &read_after {
        let Some(old) = read_before.iter().find(|o| same_key(o, new)) else { continue };
        if old.data_version == new.data_version {
            continue;
        }
        if changes.len() == MAX_CHILDREN || *budget == 0 {
            more += 1;
            continue;
        }
        let next = new.materialization_id.map(|id| (id, new.data_version.clone()));
        changes.push(Box::pin(explain(store, old.clone(), next, budget)).await?);
    }
    let added: Vec<String> =
        read_after.iter().filter(|n| !read_before.iter().any(|o| same_key(o, n))).map(key).collect();
    let removed: Vec<String> =
        read_before.iter().filter(|o| !read_after.iter().any(|n| same_key(o, n))).map(key).collect();
    change.because = if !changes.is_empty() || more > 0 {
        Because::Inputs { changes, more }
    } else if before.code_version != after.code_version {
        Because::Code { from: before.code_version, to: after.code_version }
    } else if !added.is_empty() || !removed.is_empty() {
        Because::Dependencies { added, removed }
    } else {
        Because::Source
    };
    Ok(change)
}

/// Reference staleness from first principles, for tests: whether the logical version the
/// current upstream data versions give differs from the recorded one (or an input is missing).
/// The store's maintained counts must agree with it.
#[cfg(test)]
pub(crate) fn stale_by_logical_version(
    graph: &AssetGraph,
    asset: AssetId,
    key: &str,
    states: &std::collections::HashMap<(String, String), PartitionState>,
    ctx: &PartitionsContext,
) -> bool {
    let def = graph.asset(asset);
    let own = &states[&(def.key.to_string(), key.to_owned())];
    let mut inputs = Vec::new();
    for (up, keys) in crate::plan::upstream_partitions(graph, asset, key, ctx).unwrap() {
        let up = graph.asset(up);
        for k in keys {
            let Some(s) = states.get(&(up.key.to_string(), k.clone())).filter(|s| s.data_version.is_some()) else {
                return true;
            };
            inputs.push(lineage::InputVersion {
                asset_key: up.key.to_string(),
                partition_key: k,
                materialization_id: s.current_materialization_id,
                data_version: s.data_version.clone().unwrap(),
            });
        }
    }
    let expected = crate::exec::logical_version(&def.code_version, &crate::exec::inputs_hash(&inputs));
    own.logical_version.as_deref() != Some(expected.as_str())
}

#[cfg(test)]
pub(crate) mod tests;
