//! Configuration from the environment, with the names RoboSystems already uses.
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
    /// The app database (`DATABASE_URL`: embedded SQLite by default, PostgreSQL in production).
    pub app_db: AppDbLocation,
    /// Where outputs go when no bucket is configured.
    pub storage_dir: PathBuf,
    /// S3 outputs (`S3_BUCKET_NAME`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `ROBO_ASSETS_S3_PREFIX`).
    pub s3: Option<resources::S3Config>,
    /// A fixed "now" for reproducible runs and tests (`ROBO_ASSETS_NOW`, RFC 3339).
    pub now: Option<DateTime<Utc>>,
    /// The Graph API (`GRAPH_API_URL`, `GRAPH_API_TOKEN`, `GRAPH_API_TIMEOUT_MS`); the dev source when unset.
    pub graph_api: Option<resources::GraphApiClient>,
    /// Extra latency of the dev graph source (`ROBO_ASSETS_DEV_LATENCY_MS`), to simulate a slow API.
    pub dev_latency: std::time::Duration,
}

/// Where the RoboSystems app database is.
#[derive(Debug, Clone)]
pub enum AppDbLocation {
    /// A SQLite file (the embedded default, seeded with labeled demo data on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (never seeded unless `robo-assets demo seed` is run).
    Postgres(String),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        let home = PathBuf::from(var("ROBO_ASSETS_HOME").unwrap_or_else(|| "./.robo-assets".to_owned()));
        let lineage_url =
            var("ROBO_ASSETS_LINEAGE_URL").unwrap_or_else(|| format!("sqlite://{}", home.join("lineage.db").display()));
        if !["sqlite://", "postgres://", "postgresql://"].iter().any(|p| lineage_url.starts_with(p)) {
            return Err(user_error(format!(
                "ROBO_ASSETS_LINEAGE_URL={} is not a lineage store URL: use sqlite://PATH or postgres://USER@HOST/DB",
                lineage::redact_url(&lineage_url)
            )));
        }
        let app_db = match var("DATABASE_URL") {
            None => AppDbLocation::Sqlite(home.join("app.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                AppDbLocation::Postgres(url)
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => AppDbLocation::Sqlite(PathBuf::from(path)),
                None => {
                    return Err(user_error(format!(
                        "DATABASE_URL={} is not an app database URL: use postgres://USER@HOST/DB, sqlite://PATH, \
                         or unset it for the embedded demo database",
                        lineage::redact_url(&url)
                    )));
                }
            },
        };
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
        let graph_api = match var("GRAPH_API_URL") {
            None => None,
            Some(url) => {
                let timeout_ms = match var("GRAPH_API_TIMEOUT_MS") {
                    None => 10_000,
                    Some(ms) => ms.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                        user_error(format!("GRAPH_API_TIMEOUT_MS={ms:?} is not a positive number of milliseconds"))
                    })?,
                };
                let config = resources::GraphApiConfig {
                    timeout: std::time::Duration::from_millis(timeout_ms),
                    token: var("GRAPH_API_TOKEN"),
                    ..Default::default()
                };
                let shown = lineage::redact_url(&url);
                Some(resources::GraphApiClient::new(&url, shown, config).map_err(|e| user_error(e.to_string()))?)
            }
        };
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
        let dev_latency = match var("ROBO_ASSETS_DEV_LATENCY_MS") {
            None => std::time::Duration::ZERO,
            Some(ms) => std::time::Duration::from_millis(ms.parse().map_err(|_| {
                user_error(format!("ROBO_ASSETS_DEV_LATENCY_MS={ms:?} is not a whole number of milliseconds"))
            })?),
        };
        Ok(Config { storage_dir: home.join("storage"), s3, home, lineage_url, app_db, graph_api, now, dev_latency })
    }
}
