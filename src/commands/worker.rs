//! `robo-assets worker`: claims requests and runs them until Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use engine::{ExecEvent, Observer, StepStatus, Until, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::app::App;
use crate::cli::WorkerArgs;
use crate::commands::materialize::cancel_on_signal;

/// Logs each finished step.
struct StepLog;

impl Observer for StepLog {
    fn on_event(&self, event: ExecEvent<'_>) {
        match event {
            ExecEvent::StepFinished(o) => match &o.status {
                StepStatus::Succeeded { data_version, .. } => tracing::info!(
                    message = "Materialized.",
                    asset = %o.asset,
                    partition = %o.partition_key,
                    data_version = &data_version[..12.min(data_version.len())],
                    ms = o.duration.as_millis() as u64,
                ),
                StepStatus::Failed { error, attempts } => {
                    tracing::warn!(message = "Step failed.", asset = %o.asset, partition = %o.partition_key, attempts, error = %error);
                }
                _ => {}
            },
            ExecEvent::StepRetrying { asset, partition_key, attempt, delay, error } => tracing::warn!(
                message = "Step attempt failed; retrying.",
                %asset,
                partition = partition_key,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error,
            ),
            _ => {}
        }
    }
}

pub async fn worker(app: &App, args: &WorkerArgs) -> anyhow::Result<ExitStatus> {
    let exec = app.executor().await?;
    let config = WorkerConfig {
        lease: Duration::from_secs(args.lease_secs),
        release_on_shutdown: true,
        ..WorkerConfig::new(args.concurrency as usize)
    };
    tracing::info!(
        message = "Worker started.",
        worker = %config.id,
        store = %app.store.describe(),
        concurrency = config.concurrency,
    );
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let metrics = match args.metrics_bind {
        Some(addr) => Some(crate::metrics::serve(app.store.clone(), addr, cancel.clone()).await?),
        None => None,
    };
    // A lineage-store failure (a restarted database, a dropped connection) stops the worker
    // loop; the process starts it again after a pause instead of exiting. Steps it held are
    // abandoned: their leases expire and they are reclaimed, and fenced completion guarantees
    // nothing is recorded twice.
    let mut pause = Duration::from_secs(1);
    let mut restarts = 0;
    let stats = loop {
        match engine::run_worker(&exec, &config, Until::Canceled, Arc::new(StepLog), cancel.clone()).await {
            Ok(stats) => break stats,
            Err(e) if !cancel.is_cancelled() => {
                restarts += 1;
                engine::metrics::global().store_error("worker");
                tracing::warn!(
                    message = "Lineage store failed; restarting the worker loop.",
                    error = %crate::project::chain(&e),
                    pause_ms = pause.as_millis() as u64,
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    eprintln!(
        "Worker {} stopped: {} completed, {} failed attempts, {} canceled, {} lost leases, {} released to the queue{}",
        config.id,
        stats.completed,
        stats.failed,
        stats.canceled,
        stats.lease_lost,
        stats.released,
        if restarts > 0 {
            format!(" (since its last of {restarts} restarts after store failures)")
        } else {
            String::new()
        }
    );
    Ok(ExitStatus::Success)
}
