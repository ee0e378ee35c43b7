//! Partition mappings: which upstream partitions a downstream partition reads, and back.
//!
//! Time-window offsets are counted in downstream partitions: `credit_allocation` for month M
//! with `time_window(-1, -1)` reads the `storage_bill` days of M-1. Every function is O(result).
//!
//! Between multi-dimensional definitions (or one and a one-dimensional definition) a mapping
//! is per dimension ([`PartitionMapping::Dimensions`]): each upstream dimension paired with a
//! downstream dimension maps through its own mapping; an upstream dimension paired with none
//! is read whole; a downstream dimension paired with none reads the same upstream partitions
//! for each of its keys. A one-dimensional side is one dimension named `""`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::partition::{PartitionKeyError, PartitionsContext, PartitionsDef};

/// One pair of dimensions of a [`PartitionMapping::Dimensions`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DimensionMapping {
    /// The upstream dimension (`""` when the upstream side is one-dimensional).
    pub upstream: String,
    /// The downstream dimension (`""` when the downstream side is one-dimensional).
    pub downstream: String,
    /// How the downstream dimension's keys map onto the upstream dimension's.
    pub mapping: PartitionMapping,
}

/// How a downstream partition maps onto upstream partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PartitionMapping {
    /// The same key on both sides (same static set, same dynamic set, or the same time windows).
    Identity,
    /// Every upstream window overlapping the downstream window, shifted by offsets counted in
    /// downstream partitions.
    TimeWindow {
        /// Shift of the window's start.
        start_offset: i64,
        /// Shift of the window's end.
        end_offset: i64,
    },
    /// Every upstream partition that exists.
    AllPartitions,
    /// The last upstream partition that exists.
    LastPartition,
    /// Per dimension, between multi-dimensional definitions (see the module documentation).
    Dimensions {
        /// The pairs of dimensions, each with its mapping.
        dimensions: Arc<[DimensionMapping]>,
    },
}

/// The dimensions of one side: a multi definition's, or one unnamed.
fn dims(def: &PartitionsDef) -> Vec<(&str, &PartitionsDef)> {
    match def {
        PartitionsDef::Multi(m) => m.dimensions().iter().map(|d| (d.name.as_str(), &d.def)).collect(),
        other => vec![("", other)],
    }
}

/// A key's value per dimension, in the order of [`dims`].
fn values<'k>(def: &PartitionsDef, key: &'k str) -> Result<Vec<&'k str>, PartitionKeyError> {
    match def {
        PartitionsDef::Multi(m) => m.split(key),
        _ => Ok(vec![key]),
    }
}

/// The keys of a side from one value set per dimension.
fn product(def: &PartitionsDef, per_dim: Vec<Vec<String>>) -> Vec<String> {
    match def {
        PartitionsDef::Multi(m) => m.product(&per_dim),
        _ => per_dim.into_iter().next().unwrap_or_default(),
    }
}

impl fmt::Display for PartitionMapping {
    /// `identity`, `time_window`, `time_window(-1, -1)`, `all_partitions`, `last_partition`;
    /// per dimension: `month: time_window(-1, -1), realm: identity` (`day→month` when the names
    /// differ; the named one alone when the other side is one-dimensional).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionMapping::TimeWindow { start_offset: 0, end_offset: 0 } => f.write_str("time_window"),
            PartitionMapping::TimeWindow { start_offset, end_offset } => {
                write!(f, "time_window({start_offset}, {end_offset})")
            }
            PartitionMapping::Dimensions { dimensions } => {
                for (i, d) in dimensions.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match (d.upstream.as_str(), d.downstream.as_str()) {
                        (up, down) if up == down || down.is_empty() => write!(f, "{up}: {}", d.mapping)?,
                        ("", down) => write!(f, "{down}: {}", d.mapping)?,
                        (up, down) => write!(f, "{up}→{down}: {}", d.mapping)?,
                    }
                }
                Ok(())
            }
            other => f.write_str(other.name()),
        }
    }
}

/// Why a mapping cannot connect two partitions definitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IncompatibleMapping(pub String);

fn describe(def: Option<&PartitionsDef>) -> String {
    def.map_or_else(|| "unpartitioned".to_owned(), PartitionsDef::describe)
}

impl PartitionMapping {
    /// A time-window mapping shifted by `start_offset` and `end_offset` downstream partitions.
    pub fn time_window(start_offset: i64, end_offset: i64) -> PartitionMapping {
        PartitionMapping::TimeWindow { start_offset, end_offset }
    }

    /// A mapping per pair of dimensions `(upstream, downstream, mapping)`; name a
    /// one-dimensional side's dimension `""`.
    pub fn dimensions<I, S>(pairs: I) -> PartitionMapping
    where
        I: IntoIterator<Item = (S, S, PartitionMapping)>,
        S: Into<String>,
    {
        let dimensions = pairs
            .into_iter()
            .map(|(upstream, downstream, mapping)| DimensionMapping {
                upstream: upstream.into(),
                downstream: downstream.into(),
                mapping,
            })
            .collect();
        PartitionMapping::Dimensions { dimensions }
    }

    /// The default mapping between two definitions, as Dagster infers it: time→time is a time
    /// window, the same definition is identity, and an unpartitioned side is all. Between a
    /// multi-dimensional definition and another, dimensions pair by name, then the two time
    /// dimensions if both are left, then (against a one-dimensional side) the dimension with
    /// that side's definition; each pair maps by the same rule.
    pub fn infer(
        upstream: Option<&PartitionsDef>,
        downstream: Option<&PartitionsDef>,
    ) -> Result<PartitionMapping, IncompatibleMapping> {
        match (upstream, downstream) {
            (None, _) | (_, None) => Ok(PartitionMapping::AllPartitions),
            (Some(PartitionsDef::TimeWindow(_)), Some(PartitionsDef::TimeWindow(_))) => {
                Ok(PartitionMapping::time_window(0, 0))
            }
            (Some(up), Some(down)) if up == down => Ok(PartitionMapping::Identity),
            (Some(up), Some(down)) if up.as_multi().is_some() || down.as_multi().is_some() => {
                infer_dimensions(up, down)
            }
            (Some(up), Some(down)) => Err(IncompatibleMapping(format!(
                "no default mapping from {} to {}; declare one (identity, time_window, all or last)",
                up.describe(),
                down.describe()
            ))),
        }
    }

    /// Checks that this mapping can connect `upstream` to `downstream`.
    pub fn validate(
        &self,
        upstream: Option<&PartitionsDef>,
        downstream: Option<&PartitionsDef>,
    ) -> Result<(), IncompatibleMapping> {
        let ok = match self {
            PartitionMapping::Identity => match (upstream, downstream) {
                (None, None) => true,
                (Some(PartitionsDef::Static(up)), Some(PartitionsDef::Static(down))) => {
                    down.iter().all(|k| up.contains(k))
                }
                (Some(up), Some(down)) => up == down,
                _ => false,
            },
            PartitionMapping::TimeWindow { .. } => {
                matches!(
                    (upstream, downstream),
                    (Some(PartitionsDef::TimeWindow(_)), Some(PartitionsDef::TimeWindow(_)))
                )
            }
            PartitionMapping::AllPartitions | PartitionMapping::LastPartition => true,
            PartitionMapping::Dimensions { dimensions } => {
                let (Some(up), Some(down)) = (upstream, downstream) else {
                    return Err(IncompatibleMapping(format!(
                        "a per-dimension mapping cannot connect {} to {}",
                        describe(upstream),
                        describe(downstream)
                    )));
                };
                return validate_dimensions(dimensions, up, down);
            }
        };
        if ok {
            Ok(())
        } else {
            Err(IncompatibleMapping(format!(
                "{} mapping cannot connect {} to {}",
                self.name(),
                describe(upstream),
                describe(downstream)
            )))
        }
    }

    /// The mapping's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            PartitionMapping::Identity => "identity",
            PartitionMapping::TimeWindow { .. } => "time_window",
            PartitionMapping::AllPartitions => "all_partitions",
            PartitionMapping::LastPartition => "last_partition",
            PartitionMapping::Dimensions { .. } => "dimensions",
        }
    }

    /// The upstream keys that downstream partition `down_key` reads, in order.
    ///
    /// Unpartitioned sides use the key `""`. Upstream time windows before the upstream start are
    /// left out; windows not closed yet are included, so the caller can report them missing.
    pub fn upstream_keys(
        &self,
        upstream: Option<&PartitionsDef>,
        downstream: Option<&PartitionsDef>,
        down_key: &str,
        ctx: &PartitionsContext,
    ) -> Result<Vec<String>, PartitionKeyError> {
        let Some(up) = upstream else {
            return Ok(vec![String::new()]);
        };
        match self {
            PartitionMapping::AllPartitions => Ok(up.keys(ctx)),
            PartitionMapping::LastPartition => Ok(up.keys(ctx).pop().into_iter().collect()),
            PartitionMapping::Identity => Ok(vec![down_key.to_owned()]),
            PartitionMapping::TimeWindow { start_offset, end_offset } => {
                let (Some(PartitionsDef::TimeWindow(up)), Some(PartitionsDef::TimeWindow(down))) =
                    (upstream, downstream)
                else {
                    return Ok(Vec::new());
                };
                let d = down.parse_index(down_key)?;
                let start = down.window(d + start_offset).start;
                let end = down.window(d + end_offset).end;
                if end <= start {
                    return Ok(Vec::new());
                }
                let first = up.index_containing(start).max(0);
                let last = up.index_containing(end - chrono::Duration::nanoseconds(1));
                Ok((first..=last).map(|i| up.key(i)).collect())
            }
            PartitionMapping::Dimensions { dimensions } => {
                let Some(down) = downstream else {
                    return Ok(Vec::new());
                };
                let down_dims = dims(down);
                let down_values = values(down, down_key)?;
                let mut per_dim = Vec::new();
                for (name, def) in dims(up) {
                    let keys = match dimensions.iter().find(|d| d.upstream == name) {
                        Some(pair) => {
                            let j = down_dims.iter().position(|(n, _)| *n == pair.downstream).expect("validated");
                            pair.mapping.upstream_keys(Some(def), Some(down_dims[j].1), down_values[j], ctx)?
                        }
                        None => def.keys(ctx),
                    };
                    per_dim.push(keys);
                }
                Ok(product(up, per_dim))
            }
        }
    }

    /// The downstream keys that read upstream partition `up_key`, in order.
    pub fn downstream_keys(
        &self,
        upstream: Option<&PartitionsDef>,
        downstream: Option<&PartitionsDef>,
        up_key: &str,
        ctx: &PartitionsContext,
    ) -> Result<Vec<String>, PartitionKeyError> {
        let Some(down) = downstream else {
            return Ok(vec![String::new()]);
        };
        match self {
            PartitionMapping::AllPartitions => Ok(down.keys(ctx)),
            PartitionMapping::LastPartition => {
                let is_last = upstream.is_none_or(|up| up.keys(ctx).last().map(String::as_str) == Some(up_key));
                Ok(if is_last { down.keys(ctx) } else { Vec::new() })
            }
            PartitionMapping::Identity => Ok(vec![up_key.to_owned()]),
            PartitionMapping::TimeWindow { start_offset, end_offset } => {
                let (Some(PartitionsDef::TimeWindow(up)), Some(PartitionsDef::TimeWindow(down))) =
                    (upstream, downstream)
                else {
                    return Ok(Vec::new());
                };
                let u = up.parse_index(up_key)?;
                let w = up.window(u);
                // Downstream d reads [start(d + so), end(d + eo)); it overlaps w when
                // start(d + so) < w.end and end(d + eo) > w.start.
                let hi = down.index_containing(w.end - chrono::Duration::nanoseconds(1)) - start_offset;
                let lo = down.index_containing(w.start) - end_offset;
                let lo = lo.max(0);
                Ok((lo..=hi).map(|i| down.key(i)).collect())
            }
            PartitionMapping::Dimensions { dimensions } => {
                let Some(up) = upstream else {
                    return Ok(Vec::new());
                };
                let up_dims = dims(up);
                let up_values = values(up, up_key)?;
                let mut per_dim = Vec::new();
                for (name, def) in dims(down) {
                    let keys = match dimensions.iter().find(|d| d.downstream == name) {
                        Some(pair) => {
                            let i = up_dims.iter().position(|(n, _)| *n == pair.upstream).expect("validated");
                            pair.mapping.downstream_keys(Some(up_dims[i].1), Some(def), up_values[i], ctx)?
                        }
                        None => def.keys(ctx),
                    };
                    per_dim.push(keys);
                }
                Ok(product(down, per_dim))
            }
        }
    }
}

fn infer_dimensions(up: &PartitionsDef, down: &PartitionsDef) -> Result<PartitionMapping, IncompatibleMapping> {
    let (ups, downs) = (dims(up), dims(down));
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    // By name (both sides multi-dimensional).
    if up.as_multi().is_some() && down.as_multi().is_some() {
        for (i, (name, _)) in ups.iter().enumerate() {
            if let Some(j) = downs.iter().position(|(n, _)| n == name) {
                pairs.push((i, j));
            }
        }
    }
    let free_up = |pairs: &[(usize, usize)], i: usize| pairs.iter().all(|p| p.0 != i);
    let free_down = |pairs: &[(usize, usize)], j: usize| pairs.iter().all(|p| p.1 != j);
    // The time dimensions, if both are left.
    let time_up = ups.iter().position(|(_, d)| d.as_time_window().is_some());
    let time_down = downs.iter().position(|(_, d)| d.as_time_window().is_some());
    if let (Some(i), Some(j)) = (time_up, time_down)
        && free_up(&pairs, i)
        && free_down(&pairs, j)
    {
        pairs.push((i, j));
    }
    // The same definition on both sides.
    for (i, (_, ud)) in ups.iter().enumerate() {
        if !free_up(&pairs, i) {
            continue;
        }
        if let Some(j) = (0..downs.len()).find(|&j| free_down(&pairs, j) && downs[j].1 == *ud) {
            pairs.push((i, j));
        }
    }
    if pairs.is_empty() {
        return Err(IncompatibleMapping(format!(
            "no default mapping from {} to {}: they share no dimension; declare one per dimension (PartitionMapping::dimensions)",
            up.describe(),
            down.describe()
        )));
    }
    pairs.sort_unstable();
    let mut out = Vec::with_capacity(pairs.len());
    for (i, j) in pairs {
        let mapping = PartitionMapping::infer(Some(ups[i].1), Some(downs[j].1))
            .map_err(|e| IncompatibleMapping(format!("dimension {:?} to {:?}: {}", ups[i].0, downs[j].0, e.0)))?;
        out.push((ups[i].0, downs[j].0, mapping));
    }
    Ok(PartitionMapping::dimensions(out))
}

fn validate_dimensions(
    pairs: &[DimensionMapping],
    up: &PartitionsDef,
    down: &PartitionsDef,
) -> Result<(), IncompatibleMapping> {
    let (ups, downs) = (dims(up), dims(down));
    let names =
        |side: &[(&str, &PartitionsDef)]| side.iter().map(|(n, _)| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    for (k, pair) in pairs.iter().enumerate() {
        let ud = ups.iter().find(|(n, _)| *n == pair.upstream).ok_or_else(|| {
            IncompatibleMapping(format!(
                "{} has no dimension {:?}; its dimensions: {}",
                up.describe(),
                pair.upstream,
                names(&ups)
            ))
        })?;
        let dd = downs.iter().find(|(n, _)| *n == pair.downstream).ok_or_else(|| {
            IncompatibleMapping(format!(
                "{} has no dimension {:?}; its dimensions: {}",
                down.describe(),
                pair.downstream,
                names(&downs)
            ))
        })?;
        if pairs[..k].iter().any(|p| p.upstream == pair.upstream || p.downstream == pair.downstream) {
            return Err(IncompatibleMapping(format!(
                "dimension {:?} or {:?} is mapped twice",
                pair.upstream, pair.downstream
            )));
        }
        if matches!(pair.mapping, PartitionMapping::Dimensions { .. }) {
            return Err(IncompatibleMapping("a dimension's mapping cannot itself be per dimension".to_owned()));
        }
        pair.mapping.validate(Some(ud.1), Some(dd.1)).map_err(|e| {
            IncompatibleMapping(format!("dimension {:?} to {:?}: {}", pair.upstream, pair.downstream, e.0))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
