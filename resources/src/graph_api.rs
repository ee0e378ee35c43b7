//! The RoboSystems Graph API client (`GRAPH_API_URL`): the storage of each graph, and graph
//! creation for provisioning.
//!
//! Endpoints (JSON):
//! - `GET  {base}/graphs/{graph_id}/storage` → `{"graph_id": "…", "bytes": 123}`
//! - `POST {base}/graphs` with `{"graph_id": "…", "tenant_id": "…"}` → 201 (or 409: it exists)
//!
//! Outcomes, as the assets see them:
//! - 2xx with the expected JSON: the value.
//! - 5xx, 429, a timeout or a refused connection: retried with exponential backoff and jitter
//!   (`attempts` in all); then [`GraphApiError::Unavailable`] with the last cause.
//! - 404 on a graph's storage: `None` (the graph was deleted; it is not billed).
//! - another 4xx: [`GraphApiError::Refused`] at once (retrying cannot help).
//! - malformed JSON: [`GraphApiError::Malformed`] at once, with what was wrong.
//!
//! The bearer token (`GRAPH_API_TOKEN`) is sent in a header and never appears in an error, a
//! log line or `describe()`; URLs are shown without credentials.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use serde::Deserialize;

use crate::graph_storage::{GraphStorage, GraphStorageError};

/// Why a Graph API call failed.
#[derive(Debug, thiserror::Error)]
pub enum GraphApiError {
    /// Still failing after every attempt (5xx, 429, timeouts, connection errors).
    #[error("Graph API unavailable: {operation} failed {attempts} times; last: {last}")]
    Unavailable {
        /// What was asked, e.g. `GET /graphs/g1/storage`.
        operation: String,
        /// Attempts made.
        attempts: usize,
        /// The last cause.
        last: String,
    },
    /// A 4xx other than 404 on storage: the request itself is wrong; not retried.
    #[error("Graph API refused {operation}: HTTP {status}")]
    Refused {
        /// What was asked.
        operation: String,
        /// The status code.
        status: u16,
    },
    /// The body is not the documented JSON; not retried.
    #[error("Graph API returned malformed JSON for {operation}: {detail}")]
    Malformed {
        /// What was asked.
        operation: String,
        /// What was wrong.
        detail: String,
    },
    /// `GRAPH_API_URL` is not an http(s) URL, or the client could not be built.
    #[error("GRAPH_API_URL {url} is not usable: {detail}")]
    Config {
        /// The URL, without credentials.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct GraphApiConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per call, the first included.
    pub attempts: usize,
    /// The first retry delay (doubling, with jitter, up to 30 s).
    pub first_delay: Duration,
    /// A bearer token, if the API needs one.
    pub token: Option<String>,
}

impl Default for GraphApiConfig {
    fn default() -> Self {
        GraphApiConfig {
            timeout: Duration::from_secs(10),
            attempts: 4,
            first_delay: Duration::from_millis(500),
            token: None,
        }
    }
}

/// The Graph API over HTTP.
#[derive(Clone)]
pub struct GraphApiClient {
    http: reqwest::Client,
    base: String,
    shown: String,
    config: GraphApiConfig,
}

impl std::fmt::Debug for GraphApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphApiClient").field("base", &self.shown).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct StorageBody {
    graph_id: String,
    bytes: u64,
}

impl GraphApiClient {
    /// A client for `base_url` (`GRAPH_API_URL`); `shown` is the URL without credentials.
    pub fn new(base_url: &str, shown: String, config: GraphApiConfig) -> Result<GraphApiClient, GraphApiError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(GraphApiError::Config { url: shown, detail: "expected http:// or https://".to_owned() });
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("robo-assets/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphApiError::Config { url: shown.clone(), detail: e.to_string() })?;
        Ok(GraphApiClient { http, base: base_url.trim_end_matches('/').to_owned(), shown, config })
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.first_delay)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(self.config.attempts.saturating_sub(1))
            .with_jitter()
    }

    /// Sends the request `build` makes, retrying transient failures; returns the status and body
    /// of the first non-transient response.
    async fn call(
        &self,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), GraphApiError> {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let once = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut request = build(&self.http);
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token);
            }
            // Every error here is transient (a 4xx or a bad body is an Ok for the caller to judge).
            let response = request.send().await.map_err(|e| describe_reqwest(&e))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            let body = response.bytes().await.map_err(|e| describe_reqwest(&e))?;
            Ok((status.as_u16(), body))
        };
        once.retry(self.backoff())
            .notify(|cause: &String, delay| {
                tracing::warn!(message = "Graph API call failed; retrying.", operation, cause = %cause, delay_ms = delay.as_millis() as u64);
            })
            .await
            .map_err(|last| GraphApiError::Unavailable {
                operation: operation.to_owned(),
                attempts: attempts.load(std::sync::atomic::Ordering::Relaxed),
                last,
            })
    }

    /// The storage of one graph in bytes; `None` when the API does not know it (deleted).
    pub async fn storage_of(&self, graph_id: &str) -> Result<Option<u64>, GraphApiError> {
        let operation = format!("GET /graphs/{graph_id}/storage");
        let url = format!("{}/graphs/{}/storage", self.base, path_segment(graph_id));
        let (status, body) = self.call(&operation, |http| http.get(&url)).await?;
        match status {
            404 => Ok(None),
            200..=299 => {
                let parsed: StorageBody = serde_json::from_slice(&body)
                    .map_err(|e| GraphApiError::Malformed { operation: operation.clone(), detail: e.to_string() })?;
                if parsed.graph_id != graph_id {
                    return Err(GraphApiError::Malformed {
                        operation,
                        detail: format!("answered for graph {:?}", parsed.graph_id),
                    });
                }
                Ok(Some(parsed.bytes))
            }
            status => Err(GraphApiError::Refused { operation, status }),
        }
    }

    /// Creates a graph for a tenant; an existing graph (409) counts as created. Returns whether
    /// this call created it.
    pub async fn create_graph(&self, graph_id: &str, tenant_id: &str) -> Result<bool, GraphApiError> {
        let operation = format!("POST /graphs ({graph_id})");
        let url = format!("{}/graphs", self.base);
        let body = serde_json::json!({ "graph_id": graph_id, "tenant_id": tenant_id }).to_string();
        let (status, _) = self
            .call(&operation, |http| http.post(&url).header("content-type", "application/json").body(body.clone()))
            .await?;
        match status {
            200..=299 => Ok(true),
            409 => Ok(false),
            status => Err(GraphApiError::Refused { operation, status }),
        }
    }
}

#[async_trait]
impl GraphStorage for GraphApiClient {
    async fn storage_bytes(&self, graph_ids: &[String]) -> Result<Vec<Option<u64>>, GraphStorageError> {
        let mut out = Vec::with_capacity(graph_ids.len());
        for id in graph_ids {
            out.push(self.storage_of(id).await?);
        }
        Ok(out)
    }

    async fn create_graph(&self, graph_id: &str, tenant_id: &str) -> Result<bool, GraphStorageError> {
        Ok(GraphApiClient::create_graph(self, graph_id, tenant_id).await?)
    }

    fn describe(&self) -> String {
        format!("Graph API at {}", self.shown)
    }
}

/// A reqwest error without its URL (which could carry credentials): what kind of failure it was.
/// Every HTTP client here (Graph API, SEC, Plaid, QuickBooks) describes transport errors with it.
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the response body was cut short".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// Percent-encodes what could break out of one path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
