//! `/metrics`: the Prometheus text exposition (format 0.0.4) of this process's metrics
//! ([`engine::metrics`]) and of the queue as the lineage store holds it.
//!
//! The queue's depth and the runs by status are read from the store at each scrape, so every
//! process (worker, daemon, web view) reports the same figures, the ones an autoscaler needs;
//! what one process observes (step durations, claim latency, retries, fenced completions) is
//! counted in that process. `ui` and `dev` serve `/metrics` beside the web view; `worker` and
//! `daemon` serve it only with `--metrics-bind`, on a listener of its own.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lineage::LineageStore;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// A request state and pool family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabels {
    state: String,
    /// The pool family, `""` for requests without a pool.
    pool: String,
}

/// A run status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RunLabels {
    status: String,
}

struct Exposition {
    registry: Registry,
    requests: Family<QueueLabels, Gauge>,
    runs: Family<RunLabels, Gauge>,
    outbox: Gauge,
    alerts: Gauge,
}

/// The process's registry; the mutex keeps two scrapes from interleaving their store reads.
static EXPOSITION: LazyLock<Mutex<Exposition>> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("robo_assets");
    engine::metrics::global().register(&mut registry);
    let requests = Family::<QueueLabels, Gauge>::default();
    registry.register(
        "requests",
        "Requests waiting or running, by state (blocked, available, running) and pool: the queue's depth",
        requests.clone(),
    );
    let runs = Family::<RunLabels, Gauge>::default();
    registry.register("runs", "Runs by status", runs.clone());
    let outbox = Gauge::default();
    registry.register("openlineage_backlog", "OpenLineage events waiting in the outbox for delivery", outbox.clone());
    let alerts = Gauge::default();
    registry.register("alert_backlog", "Failure alerts waiting to be sent", alerts.clone());
    Mutex::new(Exposition { registry, requests, runs, outbox, alerts })
});

/// The exposition text: the store's figures as of now, then this process's.
pub(crate) async fn render(store: &dyn LineageStore) -> String {
    let exposition = EXPOSITION.lock().await;
    exposition.requests.clear();
    exposition.runs.clear();
    match tokio::try_join!(store.queue_depth(), store.run_counts(), store.outbox_backlog(), store.alert_backlog()) {
        Ok((depth, runs, backlog, alerts)) => {
            exposition.outbox.set(backlog);
            exposition.alerts.set(alerts);
            for d in depth {
                let labels = QueueLabels { state: d.state.to_string(), pool: d.pool.unwrap_or_default() };
                exposition.requests.get_or_create(&labels).set(d.requests);
            }
            for (status, n) in runs {
                exposition.runs.get_or_create(&RunLabels { status: status.to_string() }).set(n);
            }
        }
        // The rest is still worth serving; the missing series and the error count say why.
        Err(e) => {
            engine::metrics::global().store_error("metrics");
            tracing::warn!(message = "Reading the queue for /metrics failed.", error = %e);
        }
    }
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &exposition.registry)
        .expect("writing to a String cannot fail");
    text
}

/// The response to `GET /metrics`.
pub(crate) async fn respond(store: &dyn LineageStore) -> Response {
    let text = render(store).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], text)
        .into_response()
}

async fn handler(State(store): State<Arc<dyn LineageStore>>) -> Response {
    respond(&*store).await
}

/// Parses `--metrics-bind`: an address (`0.0.0.0:9464`), or a bare port for loopback (`9464`).
pub(crate) fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an address: give HOST:PORT (e.g. 127.0.0.1:9464) or a port for loopback"))
}

/// Serves `/metrics` alone on `addr` until `cancel` (for `worker` and `daemon`, which have no
/// web view); prints the URL first.
pub(crate) async fn serve(
    store: Arc<dyn LineageStore>,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::user_error(format!("cannot listen on {addr} for --metrics-bind: {e}")))?;
    let local = listener.local_addr()?;
    eprintln!("Metrics on http://{local}/metrics");
    // The web view's Host check: on loopback, only loopback names (no DNS rebinding).
    let hosts = crate::view::server::Hosts::for_bind(&local);
    let router = Router::new()
        .route("/metrics", get(handler))
        .layer(axum::middleware::from_fn_with_state(hosts, crate::view::server::check_host))
        .with_state(store);
    Ok(tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await?;
        Ok(())
    }))
}
