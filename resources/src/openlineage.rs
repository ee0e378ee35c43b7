//! The OpenLineage HTTP transport: each event `POST`ed as JSON to `{OPENLINEAGE_URL}/api/v1/lineage`
//! (Marquez's endpoint; any 2xx is delivered), with `OPENLINEAGE_API_KEY` as a bearer token,
//! through [`crate::webhook::HttpPoster`] (what is retried, what refuses an event).
//!
//! No error or log line carries the URL's credentials or the key.

use std::time::Duration;

use crate::Secret;
use crate::webhook::HttpPoster;

/// Checks an `OPENLINEAGE_URL`: an http(s) URL with a host. The error shows it redacted.
pub fn check_url(base: &str) -> Result<(), String> {
    crate::webhook::check_url(
        "OPENLINEAGE_URL",
        base,
        &lineage::redact_url(base),
        "http://HOST:PORT (Marquez: http://marquez:5000)",
    )
}

/// A transport to `base` (`http://marquez:5000`), or to `base` itself when it already names the
/// endpoint (ends in `/api/v1/lineage`).
pub fn transport(base: &str, api_key: Option<Secret>, timeout: Duration) -> Result<HttpPoster, String> {
    check_url(base)?;
    let trimmed = base.trim_end_matches('/');
    let endpoint =
        if trimmed.ends_with("/api/v1/lineage") { trimmed.to_owned() } else { format!("{trimmed}/api/v1/lineage") };
    HttpPoster::new(&endpoint, lineage::redact_url(&endpoint), api_key, timeout)
}
