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
mod work;

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::{SqliteStore, migration_lock, migrations_current};
pub use store::{AutomationStore, LineageStore, OutboxStore, RequestQueue, RetentionStore};
pub use work::WorkSignal;

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

/// A lineage or app database URL for people: every credential form sqlx accepts is hidden — the
/// userinfo password (`user:***@`, however odd its characters), `password=` and `sslpassword=`
/// query parameters, and the same keys in a `key=value` connection string (quoted or not).
pub fn redact_url(url: &str) -> String {
    // WHATWG parsers (reqwest, the `url` crate that sqlx uses) drop leading and trailing control
    // characters and spaces, and every tab and newline: read the text as they do.
    let cleaned: String =
        url.trim_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    if cleaned != url && cleaned.contains(':') {
        let shown = redact_url(&cleaned);
        if shown != cleaned {
            return shown;
        }
    }
    // A special scheme of the WHATWG URL rules (which reqwest and the `url` crate follow) needs
    // no `//`: `http:key:secret@host` is `http://key:secret@host` to them, so it is to us.
    if let Some((scheme, rest)) = url.split_once(':')
        && ["http", "https", "ws", "wss", "ftp"].iter().any(|s| s.eq_ignore_ascii_case(scheme))
        && !rest.starts_with("//")
    {
        return redact_url(&format!("{scheme}://{}", rest.trim_start_matches(['/', '\\'])));
    }
    // A URL starts with its scheme; anything else is a key=value DSN, even when a quoted
    // password in it contains "://".
    let is_url = url.find("://").is_some_and(|end| {
        let scheme = &url[..end];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if !is_url {
        return redact_dsn(url);
    }
    let url = redact_query(url);
    let scheme_end = url.find("://").expect("checked above");
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url;
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

/// A PostgreSQL URL as sqlx should parse it: secret query parameters sqlx does not support
/// (`sslpassword`, …) are removed, because sqlx logs an unsupported parameter *with its value*.
/// Each removed name is logged, without its value. Use it before every `PgConnectOptions` parse.
pub fn without_unsupported_secrets(url: &str) -> String {
    let Some(q) = url.find('?') else { return url.to_owned() };
    let (base, query) = (&url[..q], &url[q + 1..]);
    let (query, fragment) = match query.find('#') {
        Some(h) => (&query[..h], &query[h..]),
        None => (query, ""),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let unsupported = is_secret(key) && key != "password";
            if unsupported {
                tracing::warn!(
                    message = "Ignoring a connection parameter sqlx does not support (its value is not shown).",
                    parameter = key
                );
            }
            !unsupported
        })
        .collect();
    if kept.is_empty() { format!("{base}{fragment}") } else { format!("{base}?{}{fragment}", kept.join("&")) }
}

/// Whether a connection parameter holds a secret (`password`, `sslpassword`, …), its name
/// percent-decoded as sqlx decodes query keys (`passw%6Frd` is `password`).
fn is_secret(key: &str) -> bool {
    let mut decoded = Vec::with_capacity(key.len());
    let bytes = key.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let key = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    key.contains("password") || key.contains("secret") || key.contains("token")
}

/// Hides the values of secret query parameters (`?password=…&sslpassword=…`), wherever they are.
fn redact_query(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let end = rest.find(['&', '#']).unwrap_or(rest.len());
        match rest[..end].split_once('=') {
            Some((key, _)) if is_secret(key) => {
                out.push_str(key);
                out.push_str("=***");
                rest = &rest[end..];
            }
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

/// Hides secret values in a `key=value` connection string, where values may be quoted
/// (`password='a b'`) and `=` may have spaces around it.
fn redact_dsn(dsn: &str) -> String {
    let chars: Vec<char> = dsn.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_spaces(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_spaces(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            out.push(key);
            continue;
        }
        i += 1;
        skip_spaces(&mut i);
        let value_start = i;
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
        }
        let value: String = chars[value_start..i.min(chars.len())].iter().collect();
        out.push(if is_secret(&key) { format!("{key}=***") } else { format!("{key}={value}") });
    }
    out.join(" ")
}

/// Completions fenced, recorded and unblocked per statement (at most 5 binds each in the fence,
/// well under both backends' parameter limits).
pub(crate) const COMPLETIONS_PER_STATEMENT: usize = 500;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
