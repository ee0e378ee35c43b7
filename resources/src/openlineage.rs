//! The OpenLineage HTTP transport: each event `POST`ed as JSON to `{OPENLINEAGE_URL}/api/v1/lineage`
//! (Marquez's endpoint; any 2xx is delivered), with `OPENLINEAGE_API_KEY` as a bearer token.
//!
//! Unreachable, a timeout, 5xx, 408 and 429 are worth retrying; another 4xx refuses the event for
//! good. No error or log line carries the URL's credentials or the key.

use std::time::Duration;

use async_trait::async_trait;
use engine::openlineage::{SendError, Transport};
use serde_json::Value;

use crate::Secret;

/// Checks an `OPENLINEAGE_URL`: an http(s) URL with a host. The error shows it redacted.
pub fn check_url(base: &str) -> Result<(), String> {
    let shown = lineage::redact_url(base);
    let parsed = reqwest::Url::parse(base).map_err(|e| {
        format!("OPENLINEAGE_URL={shown} is not a URL ({e}): use http://HOST:PORT (Marquez: http://marquez:5000)")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "OPENLINEAGE_URL={shown} is not an http:// or https:// URL with a host: use http://HOST:PORT"
        ));
    }
    Ok(())
}

/// Posts events to an OpenLineage receiver.
pub struct HttpTransport {
    http: reqwest::Client,
    endpoint: String,
    shown: String,
    api_key: Option<Secret>,
}

impl HttpTransport {
    /// A transport to `base` (`http://marquez:5000`), or to `base` itself when it already names
    /// the endpoint (ends in `/api/v1/lineage`).
    pub fn new(base: &str, api_key: Option<Secret>, timeout: Duration) -> Result<HttpTransport, String> {
        check_url(base)?;
        let shown = lineage::redact_url(base);
        let trimmed = base.trim_end_matches('/');
        let endpoint =
            if trimmed.ends_with("/api/v1/lineage") { trimmed.to_owned() } else { format!("{trimmed}/api/v1/lineage") };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("robo-assets/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("OpenLineage client for {shown}: {}", e.without_url()))?;
        Ok(HttpTransport { http, shown: lineage::redact_url(&endpoint), endpoint, api_key })
    }

    /// The endpoint, credentials redacted.
    pub fn describe(&self) -> &str {
        &self.shown
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, event: &Value) -> Result<(), SendError> {
        let body = serde_json::to_vec(event).map_err(|e| SendError::Rejected(e.to_string()))?;
        let mut req =
            self.http.post(&self.endpoint).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        let resp =
            req.send().await.map_err(|e| SendError::Retry(format!("POST {}: {}", self.shown, e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        let why = format!(
            "POST {}: HTTP {status}{}",
            self.shown,
            if text.is_empty() { String::new() } else { format!(": {text}") }
        );
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Rejected(why))
        }
    }
}
