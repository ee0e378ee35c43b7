//! Delivery from the store to a receiver over a [`Transport`]: what OpenLineage events
//! ([`crate::openlineage`]) and failure alerts ([`crate::alert`]) share.
//!
//! What is delivered is a row the store wrote with the change it describes; a process delivers it
//! only while it holds the store's lease of that kind ([`hold_lease`]: one deliverer per kind at a
//! time, several daemons may run), and marks it after the receiver accepted it. A crash between
//! the two sends it again, the same body. The daemon's loop ([`run_loop`]) runs a pass every
//! interval and backs off (jittered, up to a minute) after a pass that failed.
//!
//! It knows no HTTP: the transport is `resources`' (`resources::webhook`), or a test's.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use lineage::{Delivery, LineageStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;

/// Why a body was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (unreachable, a timeout, 5xx, 408, 429).
    #[error("{0}")]
    Retry(String),
    /// The receiver refused this body for good (another 4xx).
    #[error("{0}")]
    Rejected(String),
}

/// Where bodies go: an HTTP receiver (`resources::webhook::HttpPoster`), or a test's.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Delivers one JSON body.
    async fn send(&self, body: &Value) -> Result<(), SendError>;
}

/// How long a deliverer's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(30);

/// Takes or renews the lease of `delivery` for `owner`: true while `owner` may deliver. A holder
/// of this host that died (kill -9, a crash) is replaced at once; others' leases run out.
pub async fn hold_lease(store: &dyn LineageStore, delivery: Delivery, owner: &str) -> Result<bool, lineage::Error> {
    let now = Utc::now();
    let until = now + chrono::Duration::from_std(LEASE).expect("a short lease");
    if store.delivery_lease(delivery, owner, now, until, None).await? {
        return Ok(true);
    }
    let dead = store.delivery_lease_holder(delivery).await?.filter(|h| crate::worker::is_dead_local_worker(h));
    Ok(match dead {
        Some(dead) => store.delivery_lease(delivery, owner, now, until, Some(&dead)).await?,
        None => false,
    })
}

/// A deliverer's name: unique per process, and judged dead as a worker's would be.
pub fn deliverer_name() -> String {
    crate::worker::process_name()
}

/// Runs `pass` until `cancel`: every `interval` while passes succeed; after a pass that stopped
/// on a failure (`Ok(Some(why))`) a jittered backoff from 200 ms doubling to a minute. A store
/// error is logged (counted as `component`'s) and tried again next interval. `what` names the
/// deliveries in log lines (`OpenLineage`, `Alert`).
pub async fn run_loop<F, Fut>(
    component: &'static str,
    what: &'static str,
    interval: Duration,
    cancel: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<String>, lineage::Error>>,
{
    let backoff = RetryPolicy {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(60),
    };
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        let wait = match pass().await {
            Ok(Some(why)) => {
                failures += 1;
                let wait = backoff.jittered_backoff(failures);
                tracing::warn!(
                    message = %format!("{what} delivery failed; it stays pending."),
                    error = %why,
                    retry_in_ms = wait.as_millis() as u64,
                );
                wait
            }
            Ok(None) => {
                failures = 0;
                interval
            }
            Err(e) => {
                crate::metrics::global().store_error(component);
                tracing::warn!(
                    message = %format!("{what} delivery could not read the store; retrying."),
                    error = %e,
                );
                interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => {}
        }
    }
}
