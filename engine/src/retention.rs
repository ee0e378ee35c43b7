//! Retention: how long finished history is kept, and the daemon's pass that prunes it.
//!
//! The store does the deleting ([`lineage::RetentionStore::prune`]: run events, finished
//! requests and their edges, old ticks, delivered OpenLineage rows, settled alerts; never
//! lineage). This module parses an age (`30d`, `12h`), turns it into a cutoff, and spaces the
//! daemon's passes: one pass per [`PASS_EVERY`] across every daemon on the store, by the store's
//! `retention` lease (the delivery leases' table), which a pass takes for that long and never
//! renews. It knows nothing of the command line or the configuration file.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lineage::{Delivery, LineageStore, PruneReport};
use tokio_util::sync::CancellationToken;

/// At most one pass this often, across every daemon on the store.
pub const PASS_EVERY: Duration = Duration::from_secs(3600);

/// How often a daemon looks whether a pass is due (cheap: one upsert of the lease row).
pub const CHECK_EVERY: Duration = Duration::from_secs(300);

/// How long finished history is kept: `30d`, `12h` (a whole number of days or hours, at least 1).
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let t = s.trim();
    // The unit is the last character, not the last byte: `3€` is bad input, not a panic.
    let unit_at = t.char_indices().last().map_or(0, |(i, _)| i);
    let (digits, unit) = t.split_at(unit_at);
    let n: Option<i64> = digits.parse().ok().filter(|n| *n >= 1 && digits.bytes().all(|b| b.is_ascii_digit()));
    let age = match (n, unit) {
        (Some(n), "d") => chrono::Duration::try_days(n),
        (Some(n), "h") => chrono::Duration::try_hours(n),
        _ => None,
    };
    age.ok_or_else(|| {
        let shown: String = s.chars().take(40).collect();
        let cut = if shown.len() < s.len() { "…" } else { "" };
        format!("{shown:?}{cut} is not an age: use a whole number of days or hours, at least 1, like 30d, 7d or 12h")
    })
}

/// Prunes (or with `dry_run` counts) what finished more than `age` before `now`.
pub async fn prune_older_than(
    store: &dyn LineageStore,
    age: chrono::Duration,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, lineage::Error> {
    store.prune(now - age, dry_run).await
}

/// One daemon pass at `now`, if due: none when another pass (this daemon's or another's) took
/// the `retention` lease less than [`PASS_EVERY`] ago. `owner` names this daemon; each pass
/// takes the lease under a name of its own, so no holder ever renews it and a pass is due only
/// once the last one's lease ran out.
pub async fn pass(
    store: &dyn LineageStore,
    age: chrono::Duration,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Option<PruneReport>, lineage::Error> {
    let until = now + chrono::Duration::from_std(PASS_EVERY).expect("an hour");
    let name = format!("{owner}@{}", now.to_rfc3339());
    if !store.delivery_lease(Delivery::Retention, &name, now, until, None).await? {
        return Ok(None);
    }
    prune_older_than(store, age, now, false).await.map(Some)
}

/// The daemon's retention loop until `cancel`: every [`CHECK_EVERY`], a [`pass`] if one is due,
/// logged with what it removed. A store error is logged and tried again at the next check.
pub async fn run_retention(
    store: std::sync::Arc<dyn LineageStore>,
    age: chrono::Duration,
    clock: std::sync::Arc<dyn crate::Clock>,
    cancel: CancellationToken,
) {
    let owner = crate::delivery::deliverer_name();
    while !cancel.is_cancelled() {
        match pass(&*store, age, &owner, clock.now()).await {
            Ok(Some(report)) => tracing::info!(
                message = "Retention pass.",
                removed = report.total(),
                run_events = report.run_events,
                materialization_requests = report.materialization_requests,
                request_edges = report.request_edges,
                ticks = report.ticks,
                openlineage_outbox = report.openlineage_outbox,
                alerts = report.alerts,
            ),
            Ok(None) => {}
            Err(e) => {
                crate::metrics::global().store_error("retention");
                tracing::warn!(message = "Retention pass failed; retrying later.", error = %e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests;
