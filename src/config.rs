//! The engine's configuration from the environment: where state lives, the lineage store, where
//! outputs go, and "now". A project's own resources read theirs in their factories.
//!
//! Precedence: environment variable (empty = unset) > embedded default. Every URL that could
//! hold a secret is shown redacted.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::user_error;

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory (`ROBO_ASSETS_HOME`, default `./.robo-assets`).
    pub home: PathBuf,
    /// The lineage store URL (`ROBO_ASSETS_LINEAGE_URL`).
    pub lineage_url: String,
    /// Where outputs go when no bucket is configured.
    pub storage_dir: PathBuf,
    /// S3 outputs (`S3_BUCKET_NAME`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `ROBO_ASSETS_S3_PREFIX`).
    pub s3: Option<resources::S3Config>,
    /// A fixed "now" for reproducible runs and tests (`ROBO_ASSETS_NOW`, RFC 3339).
    pub now: Option<DateTime<Utc>>,
    /// Where the daemon delivers OpenLineage events (`OPENLINEAGE_URL`); none: they stay in the
    /// outbox, for `lineage export --openlineage`.
    pub openlineage_url: Option<String>,
    /// The receiver's bearer token (`OPENLINEAGE_API_KEY`).
    pub openlineage_api_key: Option<resources::Secret>,
    /// The jobs' namespace in OpenLineage events (`OPENLINEAGE_NAMESPACE`, default `robo-assets`).
    pub openlineage_namespace: String,
}

/// An environment variable, `None` when unset or blank.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        let home = PathBuf::from(var("ROBO_ASSETS_HOME").unwrap_or_else(|| "./.robo-assets".to_owned()));
        if home.exists() && !home.is_dir() {
            return Err(user_error(format!(
                "ROBO_ASSETS_HOME={} is a file; it must be a directory (robo-assets creates it when missing)",
                home.display()
            )));
        }
        let lineage_url =
            var("ROBO_ASSETS_LINEAGE_URL").unwrap_or_else(|| format!("sqlite://{}", home.join("lineage.db").display()));
        if !["sqlite://", "postgres://", "postgresql://"].iter().any(|p| lineage_url.starts_with(p)) {
            return Err(user_error(format!(
                "ROBO_ASSETS_LINEAGE_URL={} is not a lineage store URL: use sqlite://PATH or postgres://USER@HOST/DB",
                lineage::redact_url(&lineage_url)
            )));
        }
        if lineage_url.starts_with("sqlite://")
            && lineage_url["sqlite://".len()..].split('?').next().unwrap_or_default().is_empty()
        {
            return Err(user_error(
                "ROBO_ASSETS_LINEAGE_URL=sqlite:// names no file: use sqlite://PATH (e.g. sqlite://./.robo-assets/lineage.db)",
            ));
        }
        if let Some(bucket) = var("S3_BUCKET_NAME") {
            check_bucket(&bucket)?;
        } else if var("AWS_ENDPOINT_URL").is_some() {
            return Err(user_error(
                "AWS_ENDPOINT_URL is set but S3_BUCKET_NAME is not: outputs would go to the local disk; set S3_BUCKET_NAME, or unset AWS_ENDPOINT_URL",
            ));
        }
        if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
            check_endpoint(&endpoint)?;
        }
        let s3 = var("S3_BUCKET_NAME").map(|bucket| {
            let mut s3 = resources::S3Config::new(bucket);
            if let Some(region) = var("AWS_REGION") {
                s3.region = region;
            }
            s3.endpoint = var("AWS_ENDPOINT_URL");
            if let Some(prefix) = var("ROBO_ASSETS_S3_PREFIX") {
                s3.prefix = prefix;
            }
            s3
        });
        engine::failpoint::check_env().map_err(user_error)?;
        let now = match var("ROBO_ASSETS_NOW") {
            None => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(&s)
                    .map_err(|e| {
                        user_error(format!(
                            "ROBO_ASSETS_NOW={s:?} is not an RFC 3339 time like 2026-01-01T00:00:00Z: {e}"
                        ))
                    })?
                    .with_timezone(&Utc),
            ),
        };
        let openlineage_url = var("OPENLINEAGE_URL");
        if let Some(url) = &openlineage_url {
            resources::openlineage::check_url(url).map_err(user_error)?;
        }
        let openlineage_namespace = var("OPENLINEAGE_NAMESPACE").unwrap_or_else(|| "robo-assets".to_owned());
        Ok(Config {
            storage_dir: home.join("storage"),
            s3,
            home,
            lineage_url,
            now,
            openlineage_url,
            openlineage_api_key: var("OPENLINEAGE_API_KEY").map(resources::Secret::new),
            openlineage_namespace,
        })
    }
}

/// S3 bucket naming rules: 3 to 63 characters of lowercase letters, digits, dots and hyphens,
/// beginning and ending with a letter or digit, no two dots in a row, not an IP address.
fn check_bucket(bucket: &str) -> anyhow::Result<()> {
    let valid_chars = bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&bucket.len())
        && valid_chars
        && ends(bucket.chars().next())
        && ends(bucket.chars().last())
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err();
    if ok {
        Ok(())
    } else {
        Err(user_error(format!(
            "S3_BUCKET_NAME={} is not a bucket name: 3 to 63 lowercase letters, digits, dots or hyphens, \
             beginning and ending with a letter or digit",
            crate::commands::clip(bucket)
        )))
    }
}

/// An endpoint is an http(s) URL with a host.
fn check_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let rest = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default()).unwrap_or_default();
    if host.is_empty() {
        return Err(user_error(format!(
            "AWS_ENDPOINT_URL={} is not an endpoint URL: use http://HOST:PORT or https://HOST",
            lineage::redact_url(endpoint)
        )));
    }
    Ok(())
}
