//! Failure alerts: a JSON body per failed run, posted to a webhook by the daemon.
//!
//! The store writes an alert row in the transaction that fails a run (`lineage`'s `alerts`), so an
//! alert survives any crash after the failure and none is sent for a run that did not fail. Here
//! a row becomes its body ([`render`]) and is sent ([`send_pending`]) under the store's `alerts`
//! delivery lease, in id order; each alert is tried up to three times in a pass (backoff from half
//! a second), and stays pending for the next pass when all fail. A receiver that refuses one for
//! good (a 4xx other than 408/429) gets it marked with the refusal.
//!
//! A body is rendered from facts that never change once the run failed (the run, and its step
//! events up to the failure), so a body sent again after a crash is the same body with the same
//! `alert_id`: a receiver can drop the duplicate.
//!
//! Body fields (the CLI's `--json` names: `run_id`, `asset`, `partition`):
//! `alert_id`, `event` (`run_failed`), `text` (one line for chat webhooks: Slack and Mattermost
//! post it as is), `run_id`, `status`, `trigger`, `selection`, `created_at`, `started_at`,
//! `failed_at`, `failed_steps` (at most [`MAX_STEPS`]: `asset`, `partition`, `attempts`,
//! `error`, the whole error up to [`MAX_ERROR`] characters), `failed_steps_total`, and `run_url`
//! (the web view's run page) when a UI address is configured.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lineage::{Alert, Delivery, EventKind, LineageStore};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::{SendError, Transport};
use crate::retry::RetryPolicy;

/// Failed steps listed in a body; `failed_steps_total` counts them all.
pub const MAX_STEPS: usize = 20;

/// Characters of a step's error in a body.
pub const MAX_ERROR: usize = 2000;

/// Alerts read per page; the lease is renewed before each.
const PER_PAGE: i64 = 100;

/// What a body says besides the store's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertConfig {
    /// The web view's address (`ROBO_ASSETS_UI_URL`), for `run_url`.
    pub ui_url: Option<String>,
    /// Tries per alert in one pass.
    pub retry: RetryPolicy,
}

impl AlertConfig {
    /// Three tries per pass, half a second then a second apart (jittered).
    pub fn new(ui_url: Option<String>) -> AlertConfig {
        AlertConfig { ui_url, retry: RetryPolicy::exponential(3, Duration::from_millis(500)) }
    }
}

/// An alert's identity: a UUID (version 8) derived from its run and the time the run failed, the
/// same in every rendering of it.
pub fn alert_id(alert: &Alert) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"robo-assets alert\0");
    h.update(alert.run_id.0.as_bytes());
    h.update(&alert.failed_at.timestamp_micros().to_le_bytes());
    let bytes: [u8; 16] = h.finalize().as_bytes()[..16].try_into().expect("16 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// The body of one alert.
pub async fn render(store: &dyn LineageStore, alert: &Alert, config: &AlertConfig) -> Result<Value, lineage::Error> {
    let run = store.run(alert.run_id).await?.ok_or(lineage::Error::UnknownRun(alert.run_id))?;
    let failed: Vec<_> = store
        .run_events(alert.run_id)
        .await?
        .into_iter()
        .filter(|e| e.kind == EventKind::StepFailed && e.ts <= alert.failed_at)
        .collect();
    let steps: Vec<Value> = failed
        .iter()
        .take(MAX_STEPS)
        .map(|e| {
            json!({
                "asset": e.asset_key,
                "partition": e.partition_key,
                "attempts": e.body.get("attempts"),
                "error": cut(&e.message, MAX_ERROR),
            })
        })
        .collect();
    let short = lineage::short_id(&alert.run_id.0);
    let mut text = format!("robo-assets: run {short} ({}, {}) failed", run.trigger, run.selection);
    if let Some(first) = failed.first() {
        let what = match first.partition_key.as_deref() {
            Some(p) if !p.is_empty() => format!("{} {p}", first.asset_key.as_deref().unwrap_or_default()),
            _ => first.asset_key.clone().unwrap_or_default(),
        };
        let line = first.message.lines().next().unwrap_or_default();
        text.push_str(&format!(": {what}: {}", cut(line, 200)));
        if failed.len() > 1 {
            text.push_str(&format!(" (and {} more failed steps)", failed.len() - 1));
        }
    }
    let mut body = json!({
        "alert_id": alert_id(alert).to_string(),
        "event": "run_failed",
        "text": text,
        "run_id": alert.run_id.to_string(),
        "status": "failed",
        "trigger": run.trigger.as_str(),
        "selection": run.selection,
        "created_at": time(run.created_at),
        "started_at": run.started_at.map(time),
        "failed_at": time(alert.failed_at),
        "failed_steps": steps,
        "failed_steps_total": failed.len(),
    });
    if let Some(ui) = &config.ui_url {
        let url = format!("{}/runs/{}", ui.trim_end_matches('/'), alert.run_id);
        body["text"] = format!("{text} {url}").into();
        body["run_url"] = url.into();
    }
    Ok(body)
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlertReport {
    /// Alerts the receiver accepted.
    pub sent: usize,
    /// Alerts the receiver refused for good (marked, not sent again).
    pub refused: usize,
    /// The failure that stopped the pass, if one did: the alert stays pending.
    pub stopped: Option<String>,
    /// Another process holds the alerts' lease: this pass sent nothing more.
    pub busy: bool,
}

/// Sends pending alerts in id order until none is left or one fails every try, as `owner`, while
/// it holds the alerts' delivery lease.
pub async fn send_pending(
    store: &dyn LineageStore,
    transport: &dyn Transport,
    config: &AlertConfig,
    owner: &str,
) -> Result<AlertReport, lineage::Error> {
    let mut report = AlertReport::default();
    loop {
        if !crate::delivery::hold_lease(store, Delivery::Alerts, owner).await? {
            report.busy = true;
            return Ok(report);
        }
        let pending = store.alerts_pending(PER_PAGE).await?;
        if pending.is_empty() {
            return Ok(report);
        }
        for alert in &pending {
            let body = render(store, alert, config).await?;
            let mut tries = 0;
            loop {
                tries += 1;
                match transport.send(&body).await {
                    Ok(()) => {
                        crate::failpoint::hit("alert.sent");
                        store.alert_delivered(alert.id, Utc::now(), None).await?;
                        crate::metrics::global().alert_sent("sent");
                        report.sent += 1;
                    }
                    Err(SendError::Rejected(why)) => {
                        tracing::warn!(
                            message = "The alert webhook refused an alert; it is marked and not sent again.",
                            run_id = %alert.run_id,
                            error = %why,
                        );
                        store.alert_delivered(alert.id, Utc::now(), Some(&why)).await?;
                        crate::metrics::global().alert_sent("refused");
                        report.refused += 1;
                    }
                    Err(SendError::Retry(why)) => {
                        store.alert_delivery_failed(alert.id, &why).await?;
                        crate::metrics::global().alert_sent("failed");
                        if config.retry.should_retry(tries) {
                            tracing::info!(message = "Alert not delivered; trying again.", error = %why, tries);
                            tokio::time::sleep(config.retry.jittered_backoff(tries)).await;
                            continue;
                        }
                        report.stopped = Some(why);
                        return Ok(report);
                    }
                }
                break;
            }
        }
    }
}

/// Sends alerts as runs fail, until `cancel`: a pass every `interval`, a backoff after a pass
/// that failed (see [`crate::delivery::run_loop`]).
pub async fn run_alerter(
    store: Arc<dyn LineageStore>,
    transport: Arc<dyn Transport>,
    config: AlertConfig,
    interval: Duration,
    cancel: CancellationToken,
) {
    let owner = crate::delivery::deliverer_name();
    crate::delivery::run_loop("alerts", "Alert", interval, cancel, || async {
        let report = send_pending(&*store, &*transport, &config, &owner).await?;
        if report.sent > 0 {
            tracing::info!(message = "Failure alerts sent.", sent = report.sent);
        }
        Ok(report.stopped)
    })
    .await;
}
