//! The asset graph: a validated petgraph DAG of asset definitions.
//!
//! Built once at start-up; validation names every asset involved in a problem.

use std::collections::{BTreeSet, HashMap, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::definition::AssetDef;
use crate::mapping::PartitionMapping;

/// An asset of a graph: its index (stable for the life of a [`crate::Definitions`]). Only the
/// graph makes them, so an `AssetId` always names an asset of the graph it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct AssetId(usize);

impl AssetId {
    /// Its index, for tables kept beside the graph.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One edge, seen from either end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The asset at the other end.
    pub asset: AssetId,
    /// How the downstream partitions map onto the upstream ones.
    pub mapping: PartitionMapping,
}

/// Why a set of definitions was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionsError {
    /// A key is not `snake_case` segments joined by `/`.
    #[error("{reason}")]
    InvalidKey {
        /// What is wrong and what is valid.
        reason: String,
    },
    /// Two assets share a key.
    #[error("asset key {key:?} is defined twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A dependency names no asset.
    #[error("asset {asset:?} depends on unknown asset {dep:?}{}", suggestion_text(.suggestions))]
    UnknownDep {
        /// The dependent asset.
        asset: String,
        /// The missing dependency as written.
        dep: String,
        /// Close names.
        suggestions: Vec<String>,
    },
    /// A dependency's short name matches several assets.
    #[error("asset {asset:?} depends on {dep:?}, which is ambiguous: {}", .candidates.join(", "))]
    AmbiguousDep {
        /// The dependent asset.
        asset: String,
        /// The dependency as written.
        dep: String,
        /// Keys it could mean.
        candidates: Vec<String>,
    },
    /// The dependencies form a cycle.
    #[error("assets form a dependency cycle: {}", .assets.join(" -> "))]
    Cycle {
        /// The assets on the cycle, in order, first repeated at the end.
        assets: Vec<String>,
    },
    /// A pool is kept per a partition dimension the asset does not have.
    #[error("asset {asset:?}: {reason}")]
    PoolDimension {
        /// The asset.
        asset: String,
        /// What is wrong and what is valid.
        reason: String,
    },
    /// A mapping cannot connect the two partitions definitions.
    #[error("asset {downstream:?} cannot depend on {upstream:?}: {reason}")]
    IncompatibleMapping {
        /// The upstream asset.
        upstream: String,
        /// The downstream asset.
        downstream: String,
        /// Why.
        reason: String,
    },
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() { String::new() } else { format!(" (did you mean {}?)", suggestions.join(", ")) }
}

/// An asset name that matched nothing, with close matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown asset {name:?}{}", lookup_hint(.suggestions, .ambiguous))]
pub struct LookupError {
    /// The name as given.
    pub name: String,
    /// Close names.
    pub suggestions: Vec<String>,
    /// Whether the name matched several keys.
    pub ambiguous: bool,
}

fn lookup_hint(suggestions: &[String], ambiguous: &bool) -> String {
    if *ambiguous {
        format!(": it matches several assets, name one of {}", suggestions.join(", "))
    } else if suggestions.is_empty() {
        "; run `robo-assets list` to see every asset".to_owned()
    } else {
        format!(" (did you mean {}?)", suggestions.join(", "))
    }
}

/// Names from `candidates` close to `name`: Jaro-Winkler ≥ 0.8 or a substring match.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let score = strsim::jaro_winkler(name, c);
            let substring = !name.is_empty() && (c.contains(name) || name.contains(c));
            (score >= 0.8 || substring).then_some((if substring { score.max(0.9) } else { score }, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c.to_owned()).collect()
}

/// The validated graph of assets.
#[derive(Debug)]
pub struct AssetGraph {
    assets: Vec<AssetDef>,
    by_key: HashMap<String, AssetId>,
    by_name: HashMap<String, Vec<AssetId>>,
    upstream: Vec<Vec<Edge>>,
    downstream: Vec<Vec<Edge>>,
    topo: Vec<AssetId>,
    rank: Vec<usize>,
}

impl AssetGraph {
    pub(crate) fn build(assets: Vec<AssetDef>) -> Result<AssetGraph, DefinitionsError> {
        let mut by_key = HashMap::new();
        let mut by_name: HashMap<String, Vec<AssetId>> = HashMap::new();
        for (i, def) in assets.iter().enumerate() {
            let id = AssetId(i);
            crate::definition::AssetKey::parse(def.key.as_str())
                .map_err(|reason| DefinitionsError::InvalidKey { reason })?;
            if by_key.insert(def.key.as_str().to_owned(), id).is_some() {
                return Err(DefinitionsError::DuplicateKey { key: def.key.to_string() });
            }
            by_name.entry(def.key.name().to_owned()).or_default().push(id);
            if let Some(dim) = def.pool_dimension.as_deref() {
                let dims = def
                    .partitions
                    .as_ref()
                    .and_then(|p| p.as_multi())
                    .map(crate::partition::multi::MultiPartitions::dimensions);
                if !dims.is_some_and(|d| d.iter().any(|d| d.name == dim)) {
                    let valid = dims.map_or("it has no multi-dimensional partitions".to_owned(), |d| {
                        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
                        format!("its dimensions are {}", names.join(", "))
                    });
                    return Err(DefinitionsError::PoolDimension {
                        asset: def.key.to_string(),
                        reason: format!("its pool is kept per {dim:?}, but {valid}"),
                    });
                }
            }
        }
        let mut graph = AssetGraph {
            upstream: vec![Vec::new(); assets.len()],
            downstream: vec![Vec::new(); assets.len()],
            topo: Vec::new(),
            rank: vec![0; assets.len()],
            assets,
            by_key,
            by_name,
        };

        let mut dag = DiGraph::<AssetId, ()>::new();
        let nodes: Vec<NodeIndex> = (0..graph.assets.len()).map(|i| dag.add_node(AssetId(i))).collect();
        for i in 0..graph.assets.len() {
            let id = AssetId(i);
            for dep in graph.assets[i].deps.clone() {
                let asset = graph.assets[i].key.to_string();
                let up = graph.lookup(&dep.key).map_err(|e| {
                    if e.ambiguous {
                        DefinitionsError::AmbiguousDep {
                            asset: asset.clone(),
                            dep: dep.key.clone(),
                            candidates: e.suggestions,
                        }
                    } else {
                        DefinitionsError::UnknownDep {
                            asset: asset.clone(),
                            dep: dep.key.clone(),
                            suggestions: e.suggestions,
                        }
                    }
                })?;
                let up_def = graph.assets[up.0].partitions.as_ref();
                let down_def = graph.assets[i].partitions.as_ref();
                let incompatible = |reason: String| DefinitionsError::IncompatibleMapping {
                    upstream: graph.assets[up.0].key.to_string(),
                    downstream: asset.clone(),
                    reason,
                };
                let mapping = match dep.mapping {
                    Some(m) => m,
                    None => PartitionMapping::infer(up_def, down_def).map_err(|e| incompatible(e.0))?,
                };
                mapping.validate(up_def, down_def).map_err(|e| incompatible(e.0))?;
                graph.upstream[i].push(Edge { asset: up, mapping: mapping.clone() });
                graph.downstream[up.0].push(Edge { asset: id, mapping });
                dag.add_edge(nodes[up.0], nodes[i], ());
            }
        }

        for scc in petgraph::algo::tarjan_scc(&dag) {
            let self_loop = scc.len() == 1 && dag.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let members: BTreeSet<AssetId> = scc.iter().map(|n| dag[*n]).collect();
                let first = *members.iter().min_by_key(|id| graph.assets[id.0].key.as_str()).expect("non-empty");
                return Err(DefinitionsError::Cycle { assets: graph.cycle_from(first, &members) });
            }
        }
        let order = petgraph::algo::toposort(&dag, None).expect("cycles were rejected above");
        graph.topo = order.into_iter().map(|n| dag[n]).collect();
        for (rank, id) in graph.topo.iter().enumerate() {
            graph.rank[id.0] = rank;
        }
        Ok(graph)
    }

    /// Walks downstream from `start` inside `members` until it returns, for the cycle message.
    fn cycle_from(&self, start: AssetId, members: &BTreeSet<AssetId>) -> Vec<String> {
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = self.downstream[current.0]
                .iter()
                .map(|e| e.asset)
                .filter(|a| members.contains(a))
                .min_by_key(|a| if *a == start { 0 } else { 1 + self.assets[a.0].key.as_str().len() })
                .expect("a member of a cycle has a successor in it");
            if next == start || path.contains(&next) {
                path.push(next);
                break;
            }
            path.push(next);
            current = next;
        }
        path.into_iter().map(|a| self.assets[a.0].key.to_string()).collect()
    }

    /// Every asset's id, in definition order.
    pub fn ids(&self) -> impl Iterator<Item = AssetId> + use<> {
        (0..self.assets.len()).map(AssetId)
    }

    /// Finds an asset by full key or unique name.
    pub fn lookup(&self, name: &str) -> Result<AssetId, LookupError> {
        if let Some(id) = self.by_key.get(name) {
            return Ok(*id);
        }
        match self.by_name.get(name).map(Vec::as_slice) {
            Some([id]) => Ok(*id),
            Some(ids) => Err(LookupError {
                name: name.to_owned(),
                suggestions: ids.iter().map(|id| self.assets[id.0].key.to_string()).collect(),
                ambiguous: true,
            }),
            None => Err(LookupError {
                name: name.to_owned(),
                suggestions: suggest(
                    name,
                    self.assets.iter().map(|a| a.key.as_str()).chain(self.by_name.keys().map(String::as_str)),
                ),
                ambiguous: false,
            }),
        }
    }

    /// The definition of an asset.
    pub fn asset(&self, id: AssetId) -> &AssetDef {
        &self.assets[id.0]
    }

    /// Every asset, in definition order.
    pub fn assets(&self) -> &[AssetDef] {
        &self.assets
    }

    /// How many assets there are.
    pub fn len(&self) -> usize {
        self.assets.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Direct upstream edges of an asset, in declaration order.
    pub fn upstream(&self, id: AssetId) -> &[Edge] {
        &self.upstream[id.0]
    }

    /// Direct downstream edges of an asset.
    pub fn downstream(&self, id: AssetId) -> &[Edge] {
        &self.downstream[id.0]
    }

    /// Assets in dependency order.
    pub fn topo_order(&self) -> &[AssetId] {
        &self.topo
    }

    /// An asset's position in dependency order.
    pub fn rank(&self, id: AssetId) -> usize {
        self.rank[id.0]
    }

    /// `roots` and their ancestors up to `depth` hops (`None`: all).
    pub fn upstream_closure(&self, roots: &BTreeSet<AssetId>, depth: Option<usize>) -> BTreeSet<AssetId> {
        self.closure(roots, depth, |id| &self.upstream[id.0])
    }

    /// `roots` and their descendants up to `depth` hops (`None`: all).
    pub fn downstream_closure(&self, roots: &BTreeSet<AssetId>, depth: Option<usize>) -> BTreeSet<AssetId> {
        self.closure(roots, depth, |id| &self.downstream[id.0])
    }

    fn closure<'a>(
        &'a self,
        roots: &BTreeSet<AssetId>,
        depth: Option<usize>,
        next: impl Fn(AssetId) -> &'a [Edge],
    ) -> BTreeSet<AssetId> {
        let mut seen = roots.clone();
        let mut queue: VecDeque<(AssetId, usize)> = roots.iter().map(|r| (*r, 0)).collect();
        while let Some((id, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for edge in next(id) {
                if seen.insert(edge.asset) {
                    queue.push_back((edge.asset, d + 1));
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests;
