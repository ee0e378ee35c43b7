//! The lineage store: what was materialized, from which inputs, by which run.
//!
//! This crate owns every fact the engine remembers. It exposes the store's traits
//! ([`LineageStore`], with [`RequestQueue`] and [`AutomationStore`]: the port the engine talks
//! to), the facts it stores ([`model`]), and two implementations that pass one behaviour suite:
//! [`SqliteStore`] (the embedded default) and [`PgStore`] (production). Their methods are written
//! once, in `sql/`, and compiled once per backend.
//!
//! It deliberately knows nothing about partitions definitions, graphs or compute: asset and
//! partition keys are plain strings here, validated by the engine before they arrive.
#![warn(missing_docs)]

pub mod model;
mod postgres;
mod rows;
mod sqlite;
mod store;

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use store::{AutomationStore, LineageStore, RequestQueue};

use std::sync::Arc;

/// The one error type of the lineage store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database rejected or failed a statement.
    #[error("lineage store database error")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("lineage store migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (a corrupt row or an incompatible version).
    #[error("lineage store holds an undecodable value in {what}: {detail}")]
    Decode {
        /// Which column or value.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The URL names a backend this build does not serve.
    #[error("unsupported lineage store URL {url} (expected sqlite://PATH or postgres://USER@HOST/DB)")]
    UnsupportedUrl {
        /// The URL, with any password redacted.
        url: String,
    },
    /// A batched write (group commit) failed; every step in the batch gets this error.
    #[error("batched lineage store write failed")]
    Batch(#[source] Arc<Error>),
    /// Something referred to a run that does not exist.
    #[error("no run with id {0}")]
    UnknownRun(RunId),
    /// A partition cannot be wiped while a run is materializing it.
    #[error("{asset} {partition} is being materialized by run {run}; wait for it or cancel the run, then wipe")]
    PartitionRunning {
        /// The asset.
        asset: String,
        /// The partition.
        partition: String,
        /// The run materializing it.
        run: String,
    },
}

/// Result alias for the lineage store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Opens the store named by `url` and applies pending migrations.
///
/// `sqlite://PATH` opens (creating if needed) a SQLite database in WAL mode;
/// `postgres://…` (or `postgresql://…`) connects to PostgreSQL.
pub async fn open(url: &str) -> Result<Arc<dyn LineageStore>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url).await?));
    }
    Err(Error::UnsupportedUrl { url: redact_url(url) })
}

/// Replaces the password of a connection string with `***`, for anything printed or stored.
///
/// `scheme://user:secret@host/db` keeps the user; everything between the first `:` of the
/// userinfo and the *last* `@` is hidden, so a password containing `/`, `?` or `@` is hidden
/// too. A `key=value` DSN has its `password=` value hidden. When in doubt, more is hidden.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_dsn(url);
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or_default();
    let redacted = if userinfo.contains(':') || user.contains(['/', '?', '#']) {
        format!("{}:***", user.split(['/', '?', '#']).next().unwrap_or_default())
    } else {
        user.to_owned()
    };
    format!("{}://{}{}", &url[..scheme_end], redacted, &rest[at..])
}

/// Hides `password=…` values in a `key=value` connection string.
fn redact_dsn(dsn: &str) -> String {
    dsn.split(' ')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
