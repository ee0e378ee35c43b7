//! The web view's HTTP side: routes, security headers, errors, and `/api/v1` (whose bodies are
//! the CLI's `--json` outputs, built by the same functions).
//!
//! Read-only: every route answers GET and HEAD (axum answers HEAD from the GET handler) and any
//! other method 405. Pages are rendered on the server ([`super::pages`]); the only static file is
//! the stylesheet, embedded in the binary. The Content-Security-Policy allows nothing but this
//! origin's stylesheet and same-origin forms: no script runs, inline or not.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::pages;
use crate::app::App;

/// The shared state of every handler.
pub(crate) type Shared = Arc<App>;

/// The Content-Security-Policy of every response.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                              base-uri 'none'; frame-ancestors 'none'";

const STYLE: &str = include_str!("style.css");

/// An error page (or, under `/api/`, an error object) with its status code.
#[derive(Debug)]
pub(crate) struct WebError {
    pub status: StatusCode,
    pub message: String,
    api: bool,
}

impl WebError {
    pub(crate) fn not_found(message: impl Into<String>) -> WebError {
        WebError { status: StatusCode::NOT_FOUND, message: message.into(), api: false }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> WebError {
        WebError { status: StatusCode::BAD_REQUEST, message: message.into(), api: false }
    }

    fn api(mut self) -> WebError {
        self.api = true;
        self
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> WebError {
        // A user error (bad selection, unknown key) is the request's fault; the rest is ours.
        let status = if e.downcast_ref::<crate::UserError>().is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        WebError { status, message: format!("{e:#}"), api: false }
    }
}

impl From<lineage::Error> for WebError {
    fn from(e: lineage::Error) -> WebError {
        anyhow::Error::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if self.api {
            let kind = match self.status {
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::BAD_REQUEST => "invalid_input",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::MISDIRECTED_REQUEST => "misdirected",
                _ => "internal",
            };
            let body = serde_json::json!({ "error": { "kind": kind, "message": self.message } });
            return (self.status, axum::Json(body)).into_response();
        }
        (self.status, pages::error_page(self.status, &self.message)).into_response()
    }
}

pub(crate) type PageResult = Result<Response, WebError>;

/// The router: pages, the API and the stylesheet, behind the host check and the security headers.
pub(crate) fn router(app: Shared, hosts: Hosts) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/assets/{key}", get(pages::asset))
        .route("/assets/{key}/partition", get(pages::partition))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/backfills", get(pages::backfills))
        .route("/backfills/{id}", get(pages::backfill))
        .route("/automation", get(pages::automation))
        .route("/queue", get(pages::queue))
        .route("/static/style.css", get(style))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/runs", get(api_runs))
        .route("/api/v1/runs/{id}", get(api_run))
        .route("/api/v1/assets/{key}/partition", get(api_partition))
        .route("/api/v1/schedules", get(api_schedules))
        .route("/api/v1/sensors", get(api_sensors))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(hosts, check_host))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

async fn not_found(request: Request) -> WebError {
    let api = request.uri().path().starts_with("/api/");
    let e = WebError::not_found(format!("no page at {}", request.uri().path()));
    if api { e.api() } else { e }
}

/// The hosts a request may name: loopback names always, and with an explicit non-loopback
/// `--bind` any host (the user chose to serve the network). Checking `Host` defeats DNS
/// rebinding: a page on another site whose name re-resolves to 127.0.0.1 sends its own name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hosts {
    any: bool,
}

impl Hosts {
    pub(crate) fn for_bind(addr: &SocketAddr) -> Hosts {
        Hosts { any: !addr.ip().is_loopback() }
    }

    fn allows(self, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some(host) = host else { return false };
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Refuses a request whose `Host` is not one the view answers to (421).
pub(crate) async fn check_host(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if hosts.allows(host) {
        return next.run(request).await;
    }
    let e = WebError {
        status: StatusCode::MISDIRECTED_REQUEST,
        message: "this web view answers to localhost and loopback addresses only".to_owned(),
        api: request.uri().path().starts_with("/api/"),
    };
    e.into_response()
}

/// Security headers on every response, and 405 for any method but GET and HEAD (also on paths
/// that do not exist, so the answer does not depend on the path; JSON under `/api/`).
async fn security_headers(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let mut response = if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        next.run(request).await
    } else {
        let e = WebError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "the web view is read-only: GET and HEAD only".to_owned(),
            api: request.uri().path().starts_with("/api/"),
        };
        let mut r = e.into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn metrics(State(app): State<Shared>) -> Response {
    crate::metrics::respond(&*app.store).await
}

async fn style() -> Response {
    let css = format!("{STYLE}\n/* status colours, shared with the SVG */\n{}", super::graph::status_css());
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], css).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// `?select=` of the API's status: the same as `robo-assets status SELECT --json`.
#[derive(Debug, Deserialize)]
pub(crate) struct SelectQuery {
    #[serde(default)]
    pub select: Option<String>,
}

async fn api_status(State(app): State<Shared>, q: Result<Query<SelectQuery>, QueryRejection>) -> PageResult {
    let Query(q) = q.map_err(|e| WebError::bad_request(e.body_text()).api())?;
    let run = async {
        let selected = crate::commands::select(&app, q.select.as_deref().unwrap_or("*"))?;
        crate::commands::status::rows(
            &app,
            &selected,
            &engine::PartitionSpec::None,
            crate::commands::status::Detail::Summary,
        )
        .await
    };
    let rows = run.await.map_err(|e| WebError::from(e).api())?;
    Ok(axum::Json(rows).into_response())
}

/// `?status=&before=&limit=` of the runs list.
#[derive(Debug, Deserialize)]
pub(crate) struct RunsQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub asset: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    /// Kept as text and parsed here, so a bad value is this view's error, not the extractor's.
    #[serde(default)]
    pub limit: Option<String>,
}

/// How many runs a page lists when `?limit=` is not given: the CLI's default.
pub(crate) const RUNS_PER_PAGE: i64 = 20;

async fn api_runs(State(app): State<Shared>, q: Result<Query<RunsQuery>, QueryRejection>) -> PageResult {
    let Query(q) = q.map_err(|e| WebError::bad_request(e.body_text()).api())?;
    let page = runs_page(&app, &q).await.map_err(WebError::api)?;
    Ok(axum::Json(page).into_response())
}

/// One page of runs, the body of `runs --json` and `/api/v1/runs`.
pub(crate) async fn runs_page(app: &App, q: &RunsQuery) -> Result<crate::commands::runs::RunsPage, WebError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::commands::parse_choice::<lineage::RunStatus>("run status", s)?),
        None => None,
    };
    let before = match q.before.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            Some(s.parse::<lineage::RunId>().map_err(|_| WebError::bad_request(format!("{s:?} is not a run id")))?)
        }
        None => None,
    };
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => RUNS_PER_PAGE,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| WebError::bad_request(format!("limit {s:?} is not a number from 1 to 1000")))?,
    };
    let trigger = match q.trigger.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::commands::parse_choice::<lineage::Trigger>("trigger", s)?),
        None => None,
    };
    let asset = match q.asset.as_deref().filter(|s| !s.is_empty()) {
        Some(a) => Some(app.defs.graph().asset(crate::commands::lookup(app, a)?).key.to_string()),
        None => None,
    };
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::commands::parse_time("since", s)?),
        None => None,
    };
    let filter = lineage::RunFilter { status, trigger, asset, since, before, limit };
    Ok(crate::commands::runs::page(app, filter).await?)
}

async fn api_run(State(app): State<Shared>, id: Result<Path<String>, PathRejection>) -> PageResult {
    let Path(id) = id.map_err(|e| WebError::bad_request(e.body_text()).api())?;
    let run = async {
        let run = crate::commands::runs::find(&app, &id).await?;
        crate::commands::runs::show(&app, run).await
    };
    let body = run.await.map_err(|e| {
        let e = WebError::from(e);
        if e.message.starts_with("no run") { WebError::not_found(e.message).api() } else { e.api() }
    })?;
    Ok(axum::Json(body).into_response())
}

async fn api_schedules(State(app): State<Shared>) -> PageResult {
    let rows = crate::commands::automation::instigator_rows(&app, lineage::InstigatorKind::Schedule).await;
    Ok(axum::Json(rows.map_err(|e| WebError::from(e).api())?).into_response())
}

async fn api_sensors(State(app): State<Shared>) -> PageResult {
    let rows = crate::commands::automation::instigator_rows(&app, lineage::InstigatorKind::Sensor).await;
    Ok(axum::Json(rows.map_err(|e| WebError::from(e).api())?).into_response())
}

/// `?key=` of a partition.
#[derive(Debug, Deserialize)]
pub(crate) struct PartitionQuery {
    #[serde(default)]
    pub key: String,
}

async fn api_partition(
    State(app): State<Shared>,
    asset: Result<Path<String>, PathRejection>,
    q: Result<Query<PartitionQuery>, QueryRejection>,
) -> PageResult {
    let Path(asset) = asset.map_err(|e| WebError::bad_request(e.body_text()).api())?;
    let Query(q) = q.map_err(|e| WebError::bad_request(e.body_text()).api())?;
    let (id, key) = pages::resolve_partition(&app, &asset, &q.key).await.map_err(WebError::api)?;
    let run = async {
        let why = crate::commands::why::explain(&app, id, &key).await?;
        let asset = app.defs.graph().asset(id).key.to_string();
        // The CLI's default: `why --limit 5`.
        let evaluations = app.store.condition_evaluations(&asset, Some(&key), 5).await?;
        anyhow::Ok(crate::commands::why::body(why, &evaluations))
    };
    Ok(axum::Json(run.await.map_err(|e| WebError::from(e).api())?).into_response())
}

/// Whether `addr` is a loopback address (the default; anything else is said to be unauthenticated).
pub(crate) fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Binds `addr` (a user error when it cannot), warning when it is not loopback.
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    if !is_loopback(&addr) {
        tracing::warn!(
            message = "The web view has no authentication: anyone who can reach this address can read the lineage store.",
            bind = %addr,
        );
    }
    tokio::net::TcpListener::bind(addr).await.map_err(|e| crate::user_error(format!("cannot listen on {addr}: {e}")))
}

/// Serves the web view on `listener` until `cancel`; prints the URL first.
pub(crate) async fn serve(
    app: Shared,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    eprintln!("Web view on http://{local}/ (read-only; Ctrl-C to stop)");
    axum::serve(listener, router(app, Hosts::for_bind(&local)))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await?;
    Ok(())
}
