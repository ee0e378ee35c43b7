//! The engine's configuration from the environment: where state lives, the lineage store, where
//! outputs go, and "now". A project's own resources read theirs in their factories.
//!
//! Precedence: command-line flag > environment variable (empty = unset) > `robo-assets.toml` >
//! embedded default. Every URL that could hold a secret is shown redacted.
//!
//! A setting is one name everywhere: the variable (`ROBO_ASSETS_LINEAGE_URL`), its flag
//! (`--lineage-url`) and its key in the file (`lineage_url`): the variable's name in lower case
//! without `ROBO_ASSETS_`. The engine's settings are [`ENGINE_SETTINGS`]; a project adds its own
//! (`Project::setting`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    /// The most missing upstream partitions a schedule tick requests
    /// (`ROBO_ASSETS_MAX_UPSTREAM_FILL`); none: the project's own (48 unless it says).
    pub max_upstream_fill: Option<usize>,
    /// Where the daemon delivers OpenLineage events (`OPENLINEAGE_URL`); none: they stay in the
    /// outbox, for `lineage export --openlineage`.
    pub openlineage_url: Option<String>,
    /// The receiver's bearer token (`OPENLINEAGE_API_KEY`).
    pub openlineage_api_key: Option<resources::Secret>,
    /// The jobs' namespace in OpenLineage events (`OPENLINEAGE_NAMESPACE`, default `robo-assets`).
    pub openlineage_namespace: String,
    /// Where the daemon posts failure alerts (`ROBO_ASSETS_ALERT_WEBHOOK`): a secret, shown only
    /// by its origin.
    pub alert_webhook: Option<resources::Secret>,
    /// The web view's address, for links in alerts (`ROBO_ASSETS_UI_URL`).
    pub ui_url: Option<String>,
    /// How long the daemon keeps finished history (`ROBO_ASSETS_RETENTION`, `30d`); none: forever.
    pub retention: Option<chrono::Duration>,
}

/// A setting read from a flag, the environment or `robo-assets.toml`.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable, e.g. `ROBO_ASSETS_LINEAGE_URL`.
    pub name: &'static str,
    /// What it means, for `--help`.
    pub help: &'static str,
    /// A credential (or a URL that can hold one): `--help` never shows its value.
    pub secret: bool,
}

impl Setting {
    /// Its key in `robo-assets.toml` (and, in kebab case, its flag): `lineage_url`.
    pub fn key(&self) -> String {
        self.name.strip_prefix("ROBO_ASSETS_").unwrap_or(self.name).to_ascii_lowercase()
    }
}

/// The engine's settings, in the order `--help` lists them.
pub const ENGINE_SETTINGS: &[Setting] = &[
    Setting { name: "ROBO_ASSETS_HOME", help: "State directory [default: ./.robo-assets]", secret: false },
    Setting {
        name: "ROBO_ASSETS_LINEAGE_URL",
        help: "Lineage store: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [default: sqlite://$ROBO_ASSETS_HOME/lineage.db]",
        secret: true,
    },
    Setting {
        name: "S3_BUCKET_NAME",
        help: "Write outputs to this S3 bucket [default: the local directory $ROBO_ASSETS_HOME/storage]",
        secret: false,
    },
    Setting {
        name: "ROBO_ASSETS_S3_PREFIX",
        help: "Key prefix inside the bucket [default: robo-assets]",
        secret: false,
    },
    Setting { name: "AWS_REGION", help: "The bucket's region [default: us-east-1]", secret: false },
    Setting { name: "AWS_ENDPOINT_URL", help: "Endpoint of an S3-compatible server [default: AWS]", secret: false },
    Setting { name: "ROBO_ASSETS_NOW", help: "Pin \"now\" (RFC 3339), for reproducible runs and tests", secret: false },
    Setting {
        name: "ROBO_ASSETS_MAX_UPSTREAM_FILL",
        help: "The most missing upstream partitions one schedule tick requests; beyond, it requests none and names the backfill that fills them [default: 48]",
        secret: false,
    },
    Setting {
        name: "OPENLINEAGE_URL",
        help: "Where the daemon delivers OpenLineage events (http://HOST:PORT) [default: none, they wait in the outbox]",
        secret: true,
    },
    Setting { name: "OPENLINEAGE_API_KEY", help: "The OpenLineage receiver's bearer token", secret: true },
    Setting {
        name: "OPENLINEAGE_NAMESPACE",
        help: "The jobs' namespace in OpenLineage events [default: robo-assets]",
        secret: false,
    },
    Setting {
        name: "ROBO_ASSETS_ALERT_WEBHOOK",
        help: "Where the daemon posts an alert (JSON) for each failed run (https://HOST/PATH) [default: none]",
        secret: true,
    },
    Setting {
        name: "ROBO_ASSETS_UI_URL",
        help: "The web view's address, for links in alerts (https://HOST) [default: no links]",
        secret: false,
    },
    Setting {
        name: "ROBO_ASSETS_RETENTION",
        help: "The daemon deletes finished history (run events, finished requests, old ticks, delivered events) older than this, hourly: 30d, 12h; lineage is kept [default: none, kept forever]",
        secret: false,
    },
];

/// The settings in force: flags and variables as clap read them, then the file's values.
static SETTINGS: OnceLock<Resolved> = OnceLock::new();

#[derive(Debug, Default)]
struct Resolved {
    values: BTreeMap<&'static str, String>,
    /// The settings the file gave (variable name → its key), and the file, for error messages.
    from_file: BTreeMap<&'static str, String>,
    file: Option<PathBuf>,
}

/// A setting's value, `None` when unset or blank: its flag or environment variable, else
/// `robo-assets.toml`. Before the command line is read (in tests of the library's parts), the
/// environment alone.
pub fn setting(name: &str) -> Option<String> {
    let env = || std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    // A name no project declared is read from the environment alone.
    SETTINGS.get().and_then(|resolved| resolved.values.get(name).cloned()).or_else(env)
}

/// An environment variable of the engine's, `None` when unset or blank (see [`setting`]).
pub(crate) fn var(name: &str) -> Option<String> {
    setting(name)
}

/// Fixes the settings for this process: `given` has what flags and variables set (clap read
/// them), the rest comes from the configuration file: `--config FILE` (`ROBO_ASSETS_CONFIG`),
/// else `./robo-assets.toml`, else `$ROBO_ASSETS_HOME/robo-assets.toml`.
pub(crate) fn resolve(
    settings: &[Setting],
    given: BTreeMap<&'static str, String>,
    explicit: Option<&Path>,
) -> anyhow::Result<()> {
    let given: BTreeMap<&'static str, String> = given.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    let file = match explicit {
        Some(path) if !path.is_file() => {
            return Err(user_error(format!(
                "configuration file {} (--config, ROBO_ASSETS_CONFIG) does not exist or is not a file",
                path.display()
            )));
        }
        Some(path) => Some(path.to_path_buf()),
        None => {
            let home = given.get("ROBO_ASSETS_HOME").map_or_else(|| PathBuf::from("./.robo-assets"), PathBuf::from);
            [PathBuf::from("robo-assets.toml"), home.join("robo-assets.toml")].into_iter().find(|p| p.is_file())
        }
    };
    let mut resolved = Resolved { file: file.clone(), ..Resolved::default() };
    let from_file = match &file {
        Some(path) => read_file(path, settings, explicit.is_none() && path != Path::new("robo-assets.toml"))?,
        None => BTreeMap::new(),
    };
    for s in settings {
        if let Some(v) = given.get(s.name) {
            resolved.values.insert(s.name, v.clone());
        } else if let Some(v) = from_file.get(s.name) {
            resolved.values.insert(s.name, v.clone());
            resolved.from_file.insert(s.name, s.key());
        }
    }
    // Set once per process; a second call (none today) keeps the first.
    let _ = SETTINGS.set(resolved);
    Ok(())
}

/// Reads a configuration file: every key a setting's, every value a string, number or boolean.
/// `in_home`: the file is the one in the state directory, which cannot move that directory.
fn read_file(path: &Path, settings: &[Setting], in_home: bool) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_error(format!("configuration file {shown} cannot be read: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|span| line_col(&text, span.start)).unwrap_or_default();
        user_error(format!("configuration file {shown}{at} is not valid TOML: {}", e.message()))
    })?;
    let keys: Vec<String> = settings.iter().map(Setting::key).collect();
    let mut values = BTreeMap::new();
    for (key, value) in &table {
        let Some(setting) = settings.iter().find(|s| s.key() == *key) else {
            let close = engine::graph::suggest(key, keys.iter().map(String::as_str));
            let hint = match close.as_slice() {
                [] => String::new(),
                close => format!(" (did you mean {}?)", close.join(", ")),
            };
            return Err(user_error(format!(
                "configuration file {shown}: unknown key {}{hint}; valid keys: {}",
                crate::commands::clip(key),
                keys.join(", ")
            )));
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(user_error(format!(
                    "configuration file {shown}: key {key:?} is of type {}; it must be a string (the value of {})",
                    other.type_str(),
                    setting.name
                )));
            }
        };
        if setting.name == "ROBO_ASSETS_HOME" && in_home {
            return Err(user_error(format!(
                "configuration file {shown}: key \"home\" cannot move the state directory the file is in; \
                 set it in ./robo-assets.toml, a --config file or ROBO_ASSETS_HOME"
            )));
        }
        values.insert(setting.name, text);
    }
    Ok(values)
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
        let max_upstream_fill = match var("ROBO_ASSETS_MAX_UPSTREAM_FILL") {
            None => None,
            Some(s) => Some(s.trim().parse::<usize>().map_err(|_| {
                user_error(format!(
                    "ROBO_ASSETS_MAX_UPSTREAM_FILL={} is not a count of partitions: use a whole number like 48 (0: a tick never requests missing upstream partitions)",
                    crate::commands::clip(&s)
                ))
            })?),
        };
        let openlineage_url = var("OPENLINEAGE_URL");
        if let Some(url) = &openlineage_url {
            resources::openlineage::check_url(url).map_err(user_error)?;
        }
        let openlineage_namespace = var("OPENLINEAGE_NAMESPACE").unwrap_or_else(|| "robo-assets".to_owned());
        let alert_webhook = var("ROBO_ASSETS_ALERT_WEBHOOK");
        if let Some(url) = &alert_webhook {
            resources::webhook::alert_webhook(url, std::time::Duration::from_secs(10)).map_err(user_error)?;
        }
        let ui_url = var("ROBO_ASSETS_UI_URL");
        if let Some(url) = &ui_url {
            let shown = lineage::redact_url(url);
            resources::webhook::check_url(
                "ROBO_ASSETS_UI_URL",
                url,
                &shown,
                "https://HOST, as people open the web view",
            )
            .map_err(user_error)?;
        }
        let retention = match var("ROBO_ASSETS_RETENTION") {
            None => None,
            Some(s) => {
                Some(engine::retention::parse_age(&s).map_err(|e| user_error(format!("ROBO_ASSETS_RETENTION={e}")))?)
            }
        };
        Ok(Config {
            storage_dir: home.join("storage"),
            s3,
            home,
            lineage_url,
            now,
            max_upstream_fill,
            openlineage_url,
            openlineage_api_key: var("OPENLINEAGE_API_KEY").map(resources::Secret::new),
            openlineage_namespace,
            alert_webhook: alert_webhook.map(resources::Secret::new),
            ui_url,
            retention,
        })
    }
}

/// ` (line L, column C)` of a byte offset.
fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    format!(" (line {line}, column {column})")
}

/// For an error about a setting the configuration file gave: which key of which file it was.
pub(crate) fn file_note(message: &str) -> Option<String> {
    let resolved = SETTINGS.get()?;
    let file = resolved.file.as_ref()?;
    let (_, key) = resolved.from_file.iter().find(|(name, _)| message.contains(&format!("{name}=")))?;
    Some(format!(" (set by {key:?} in {})", file.display()))
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
