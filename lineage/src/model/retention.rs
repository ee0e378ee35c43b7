//! What a retention pass removed (or, dry, would remove): finished history, never lineage.

use serde::Serialize;

/// Rows removed per table by one `prune` (or counted by a dry run). Materializations, their
/// inputs, runs, partition state, check verdicts, backfills and dynamic partitions are lineage
/// and never appear here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// `run_events` of runs that finished before the cutoff.
    pub run_events: u64,
    /// Finished `materialization_requests` of those runs (a backfill's are kept).
    pub materialization_requests: u64,
    /// `request_edges` touching those requests.
    pub request_edges: u64,
    /// `ticks` older than the cutoff (each instigator's latest is kept).
    pub ticks: u64,
    /// Delivered `openlineage_outbox` rows delivered before the cutoff.
    pub openlineage_outbox: u64,
    /// Settled `alerts` (sent or refused for good) of failures before the cutoff.
    pub alerts: u64,
}

impl PruneReport {
    /// Each table's name and its count, in the order `prune` reports them.
    pub fn tables(&self) -> [(&'static str, u64); 6] {
        [
            ("run_events", self.run_events),
            ("materialization_requests", self.materialization_requests),
            ("request_edges", self.request_edges),
            ("ticks", self.ticks),
            ("openlineage_outbox", self.openlineage_outbox),
            ("alerts", self.alerts),
        ]
    }

    /// Rows in every table together.
    pub fn total(&self) -> u64 {
        self.tables().iter().map(|(_, n)| n).sum()
    }
}
