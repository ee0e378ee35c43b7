//! Posting JSON to an HTTP receiver: the transport both OpenLineage events and failure alerts go
//! through (`engine::delivery::Transport`).
//!
//! Any 2xx is delivered. Unreachable, a timeout, 5xx, 408 and 429 are worth retrying; another 4xx
//! refuses the body for good. A URL's `user:password` is sent as basic auth. No error or log line
//! carries a credential: the URL is shown as its caller shows it (an OpenLineage base URL
//! redacted with `lineage::redact_url`; a webhook, whose path or query often is the secret,
//! as its origin alone: [`redact_webhook`]).

use std::time::Duration;

use async_trait::async_trait;
use engine::delivery::{SendError, Transport};
use serde_json::Value;

use crate::Secret;

/// A webhook URL as it may be shown: its scheme, host and port, and `/…` for the rest (a Slack or
/// Teams webhook's path is its secret, as a token in a query or a `user:password` is). Text
/// that is not a URL is not shown at all.
pub fn redact_webhook(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() { "" } else { "/…" };
            format!("{}://{}{port}{rest}", u.scheme(), u.host_str().unwrap_or_default())
        }
        _ => "(not a URL)".to_owned(),
    }
}

/// Checks that `url`, the value of the setting `setting`, is an http(s) URL with a host; the
/// error shows it as `shown` and says what is valid (`use`, e.g. `http://HOST:PORT`).
pub fn check_url(setting: &str, url: &str, shown: &str, use_: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{setting}={shown} is not a URL ({e}): use {use_}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{setting}={shown} is not an http:// or https:// URL with a host: use {use_}"));
    }
    Ok(())
}

/// Posts JSON bodies to one endpoint.
pub struct HttpPoster {
    http: reqwest::Client,
    endpoint: String,
    shown: String,
    bearer: Option<Secret>,
}

impl HttpPoster {
    /// A poster to `endpoint` (already checked), shown as `shown` in errors, with `bearer` as
    /// its bearer token, each request given `timeout`.
    pub fn new(endpoint: &str, shown: String, bearer: Option<Secret>, timeout: Duration) -> Result<HttpPoster, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("robo-assets/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client for {shown}: {}", e.without_url()))?;
        Ok(HttpPoster { http, endpoint: endpoint.to_owned(), shown, bearer })
    }

    /// The endpoint, credentials redacted.
    pub fn describe(&self) -> &str {
        &self.shown
    }
}

#[async_trait]
impl Transport for HttpPoster {
    async fn send(&self, body: &Value) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SendError::Rejected(e.to_string()))?;
        let mut req =
            self.http.post(&self.endpoint).header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        if let Some(key) = &self.bearer {
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

/// The failure-alert webhook (`ROBO_ASSETS_ALERT_WEBHOOK`): each alert posted to the URL as
/// given, shown by its origin alone.
pub fn alert_webhook(url: &str, timeout: Duration) -> Result<HttpPoster, String> {
    let shown = redact_webhook(url);
    check_url("ROBO_ASSETS_ALERT_WEBHOOK", url, &shown, "https://HOST/PATH (a Slack incoming webhook, or your own)")?;
    HttpPoster::new(url, shown, None, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_shown_by_its_origin_alone() {
        let check = |url: &str, shown: &str| assert_eq!(redact_webhook(url), shown, "{url}");
        check("https://hooks.slack.com/services/T0/B0/s3cret", "https://hooks.slack.com/…");
        check("http://u:s3cret@127.0.0.1:8080/hook?token=s3cret", "http://127.0.0.1:8080/…");
        check("https://alerts.example.com", "https://alerts.example.com");
        check("https://alerts.example.com/?key=s3cret", "https://alerts.example.com/…");
        check("not a url s3cret", "(not a URL)");
        let err = check_url("X", "ftp://u:s3cret@host/p", &redact_webhook("ftp://u:s3cret@host/p"), "https://HOST")
            .unwrap_err();
        assert_eq!(err, "X=ftp://host/… is not an http:// or https:// URL with a host: use https://HOST");
    }
}
