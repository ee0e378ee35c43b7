//! Partition mappings: which upstream partitions a downstream partition reads, and back.
//!
//! Time-window offsets are counted in downstream partitions: `credit_allocation` for month M
//! with `time_window(-1, -1)` reads the `storage_bill` days of M-1. Every function is O(result).

use serde::Serialize;

use crate::partition::{PartitionKeyError, PartitionsContext, PartitionsDef};

/// How a downstream partition maps onto upstream partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

    /// The default mapping between two definitions, as Dagster infers it: time→time is a time
    /// window, the same static or dynamic set is identity, and an unpartitioned side is all.
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
        }
    }
}

#[cfg(test)]
mod tests;
