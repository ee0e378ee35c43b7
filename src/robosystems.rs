//! The RoboSystems resources, from the environment names RoboSystems already uses: the app
//! database (`DATABASE_URL`: embedded SQLite seeded with labeled demo data by default, PostgreSQL
//! in production), the graph storage source (`GRAPH_API_URL`, `GRAPH_API_TOKEN`,
//! `GRAPH_API_TIMEOUT_MS`; the labeled dev source under `$ROBO_ASSETS_HOME/graphs` when unset,
//! slowed by `ROBO_ASSETS_DEV_LATENCY_MS`), Plaid (`PLAID_API_URL`, `PLAID_CLIENT_ID`,
//! `PLAID_SECRET`; the labeled dev source when none is set) with the `plaid link` command, SEC
//! EDGAR (`SEC_API_URL`, `SEC_USER_AGENT`, `SEC_RATE_LIMIT`, `SEC_COOL_DOWN_SECS`; the labeled
//! dev source when none is set), and QuickBooks (`quickbooks.rs`). Every URL that could hold a
//! secret is shown redacted; credentials are never shown.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use resources::{
    AppDb, DevGraphStorage, DevSecSource, GraphApiClient, GraphStorage, PgAppDb, SecClient, SecSource, SqliteAppDb,
};
use robo_assets::{Setup, user_error};

pub mod quickbooks;

/// Where the app database is.
enum AppDbLocation {
    /// A SQLite file (the embedded default, seeded with labeled demo data on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (never seeded unless `robo-assets demo seed` is run).
    Postgres(String),
}

/// A setting: its flag or environment variable, else its key in `robo-assets.toml` (the
/// settings are listed in `src/main.rs`, so `--help` documents each one).
fn var(name: &str) -> Option<String> {
    robo_assets::setting(name)
}

/// The app database's location; `home` holds the embedded one.
fn app_db_location(home: &std::path::Path) -> anyhow::Result<AppDbLocation> {
    Ok(match var("DATABASE_URL") {
        None => AppDbLocation::Sqlite(home.join("app.db")),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => AppDbLocation::Postgres(url),
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
    })
}

/// The Graph API client, when `GRAPH_API_URL` is set.
fn graph_api() -> anyhow::Result<Option<GraphApiClient>> {
    // Checked even without GRAPH_API_URL: a garbage value is a mistake whether or not it is used.
    let timeout_ms = match var("GRAPH_API_TIMEOUT_MS") {
        None => 10_000,
        Some(ms) => ms.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
            user_error(format!("GRAPH_API_TIMEOUT_MS={ms:?} is not a positive number of milliseconds"))
        })?,
    };
    let Some(url) = var("GRAPH_API_URL") else { return Ok(None) };
    let config = resources::GraphApiConfig {
        timeout: Duration::from_millis(timeout_ms),
        token: var("GRAPH_API_TOKEN"),
        ..Default::default()
    };
    let shown = lineage::redact_url(&url);
    Ok(Some(GraphApiClient::new(&url, shown, config).map_err(|e| user_error(e.to_string()))?))
}

/// The labeled dev graph source under `$ROBO_ASSETS_HOME/graphs`.
fn dev_graphs(home: &std::path::Path) -> anyhow::Result<DevGraphStorage> {
    let latency = match var("ROBO_ASSETS_DEV_LATENCY_MS") {
        None => Duration::ZERO,
        Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
            user_error(format!("ROBO_ASSETS_DEV_LATENCY_MS={ms:?} is not a whole number of milliseconds"))
        })?),
    };
    Ok(DevGraphStorage::new(home.join("graphs")).with_latency(latency))
}

/// The SEC source's configuration from the environment; `None` when no SEC variable is set
/// (the labeled dev source). Live use requires `SEC_USER_AGENT`: the SEC refuses undeclared
/// automated tools.
fn sec_config() -> anyhow::Result<Option<(String, resources::SecConfig)>> {
    // The tuning variables are checked even for the dev source: a garbage value is a mistake
    // whether or not it is used.
    let rate_per_sec = match var("SEC_RATE_LIMIT") {
        None => None,
        Some(rate) => Some(rate.trim().parse::<f64>().ok().filter(|r| *r > 0.0 && *r <= 10.0).ok_or_else(|| {
            user_error(format!(
                "SEC_RATE_LIMIT={rate:?} is not a number of requests per second above 0 and at most 10 (the SEC's limit)"
            ))
        })?),
    };
    let cool_down = match var("SEC_COOL_DOWN_SECS") {
        None => None,
        Some(secs) => Some(Duration::from_secs(secs.trim().parse().map_err(|_| {
            user_error(format!("SEC_COOL_DOWN_SECS={secs:?} is not a whole number of seconds (default 600)"))
        })?)),
    };
    const SEC_VARS: [&str; 2] = ["SEC_API_URL", "SEC_USER_AGENT"];
    if SEC_VARS.iter().all(|v| var(v).is_none()) {
        return Ok(None);
    }
    let url = var("SEC_API_URL").unwrap_or_else(|| "https://data.sec.gov".to_owned());
    let Some(user_agent) = var("SEC_USER_AGENT") else {
        return Err(user_error(
            "SEC_USER_AGENT is not set: the SEC refuses requests from undeclared tools; set it to who you are, \
             e.g. SEC_USER_AGENT=\"Company Name admin@company.com\" (or unset SEC_API_URL for the dev source)",
        ));
    };
    if !user_agent.contains('@') {
        return Err(user_error(format!(
            "SEC_USER_AGENT={user_agent:?} declares no contact: the SEC asks for a name and an email address, \
             e.g. \"Company Name admin@company.com\""
        )));
    }
    let mut config = resources::SecConfig::new(user_agent);
    if let Some(rate) = rate_per_sec {
        config.rate_per_sec = rate;
    }
    if let Some(cool_down) = cool_down {
        config.cool_down = cool_down;
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(user_error(format!(
            "SEC_API_URL={} is not an http(s) URL: use https://data.sec.gov, or unset it for the dev source",
            lineage::redact_url(&url)
        )));
    }
    Ok(Some((url, config)))
}

/// Refuses a bad configuration at start-up, before any command runs.
pub fn check_config() -> anyhow::Result<()> {
    app_db_location(std::path::Path::new("."))?;
    graph_api()?;
    sec_config()?;
    dev_graphs(std::path::Path::new("."))?;
    quickbooks::check()?;
    Ok(())
}

async fn open_app_db(setup: &Setup) -> anyhow::Result<(Arc<dyn AppDb>, bool)> {
    Ok(match app_db_location(&setup.home)? {
        AppDbLocation::Sqlite(path) => (
            Arc::new(
                SqliteAppDb::open(&path).await.with_context(|| format!("opening app database {}", path.display()))?,
            ),
            true,
        ),
        AppDbLocation::Postgres(url) => {
            let shown = lineage::redact_url(&url);
            let db =
                PgAppDb::connect(&url, shown.clone()).await.with_context(|| format!("opening app database {shown}"))?;
            (Arc::new(db), false)
        }
    })
}

/// Seeds the demo tenants and their graph folders if the app database has no tenants.
async fn seed(setup: &Setup, app_db: &dyn AppDb) -> anyhow::Result<bool> {
    if !app_db.seed_demo(setup.clock.now()).await? {
        return Ok(false);
    }
    let sizes: Vec<(&str, u64)> = resources::appdb::DEMO_TENANTS.iter().flat_map(|t| t.3.iter().copied()).collect();
    dev_graphs(&setup.home)?.seed(&sizes).context("seeding demo graph folders")?;
    tracing::info!(message = "Seeded the app database with demo tenants (dev source).", app_db = %app_db.describe());
    Ok(true)
}

/// The app database (`assets::APP_DB`); the embedded one is seeded with demo data on first use,
/// a production one never is.
pub async fn app_db(setup: Setup) -> anyhow::Result<Arc<dyn AppDb>> {
    let (app_db, embedded) = open_app_db(&setup).await?;
    if embedded {
        seed(&setup, &*app_db).await?;
    }
    Ok(app_db)
}

/// The graph storage source (`assets::GRAPH_STORAGE`): the Graph API, or the dev source.
pub async fn graph_storage(setup: Setup) -> anyhow::Result<Arc<dyn GraphStorage>> {
    Ok(match graph_api()? {
        Some(api) => Arc::new(api),
        None => Arc::new(dev_graphs(&setup.home)?),
    })
}

/// The SEC source (`assets::SEC`): one live client per process (so one token bucket and one
/// cool-down for every SEC request it makes), or the labeled dev source.
pub async fn sec(_setup: Setup) -> anyhow::Result<Arc<dyn SecSource>> {
    Ok(match sec_config()? {
        Some((url, config)) => Arc::new(SecClient::new(&url, config).map_err(|e| user_error(e.to_string()))?),
        None => Arc::new(DevSecSource),
    })
}

/// `robo-assets demo seed`: the labeled demo data set, if the app database has no tenants yet.
pub async fn seed_demo(setup: Setup) -> anyhow::Result<String> {
    let (app_db, _) = open_app_db(&setup).await?;
    Ok(if seed(&setup, &*app_db).await? {
        format!(
            "Seeded {} with {} demo tenants (labeled \"(demo)\"; {} still provisioning its graph) and their graph \
             folders in {}",
            app_db.describe(),
            resources::appdb::DEMO_TENANTS.len() + resources::appdb::DEMO_PROVISIONING.len(),
            resources::appdb::DEMO_PROVISIONING.len(),
            setup.home.join("graphs").display()
        )
    } else {
        format!("{} already has tenants: nothing seeded", app_db.describe())
    })
}

// ---------------------------------------------------------------------------------------------
// Plaid (issue 13 §4): `PLAID_API_URL`, `PLAID_CLIENT_ID`, `PLAID_SECRET`; the labeled dev source
// when none is set. Access tokens live in the app database (`robo-assets plaid link`).

/// The Plaid variables; setting any of them makes Plaid live.
const PLAID_VARS: [&str; 3] = ["PLAID_API_URL", "PLAID_CLIENT_ID", "PLAID_SECRET"];

/// Plaid's URL and credentials when any Plaid variable is set (live), `None` for the dev source.
/// Live without `PLAID_CLIENT_ID` or `PLAID_SECRET`, or with a URL that is not http(s), is
/// refused naming the variable.
fn plaid_live() -> anyhow::Result<Option<(String, resources::PlaidConfig)>> {
    if PLAID_VARS.iter().all(|v| var(v).is_none()) {
        return Ok(None);
    }
    let set: Vec<&str> = PLAID_VARS.iter().copied().filter(|v| var(v).is_some()).collect();
    let required = |name: &str| {
        var(name).ok_or_else(|| {
            user_error(format!(
                "{name} is not set: Plaid is live because {} is set; set PLAID_CLIENT_ID and PLAID_SECRET, or unset \
                 every PLAID_* variable for the dev source",
                set.join(", ")
            ))
        })
    };
    let client_id = required("PLAID_CLIENT_ID")?;
    let secret = resources::Secret::new(required("PLAID_SECRET")?);
    let url = var("PLAID_API_URL").unwrap_or_else(|| resources::plaid::PRODUCTION_URL.to_owned());
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
        return Err(user_error(format!(
            "PLAID_API_URL={} is not an http(s) URL (Plaid's are https://production.plaid.com and https://sandbox.plaid.com)",
            lineage::redact_url(&url)
        )));
    }
    Ok(Some((url, resources::PlaidConfig::new(client_id, secret))))
}

/// Refuses a bad Plaid configuration at start-up.
pub fn check_plaid() -> anyhow::Result<()> {
    plaid_live().map(|_| ())
}

/// Access tokens per item, in the app database.
async fn plaid_items(setup: &Setup) -> anyhow::Result<(Arc<dyn resources::PlaidItems>, String)> {
    Ok(match app_db_location(&setup.home)? {
        AppDbLocation::Sqlite(path) => {
            let db =
                SqliteAppDb::open(&path).await.with_context(|| format!("opening app database {}", path.display()))?;
            let shown = db.describe();
            (Arc::new(db), shown)
        }
        AppDbLocation::Postgres(url) => {
            let shown = lineage::redact_url(&url);
            let db =
                PgAppDb::connect(&url, shown.clone()).await.with_context(|| format!("opening app database {shown}"))?;
            (Arc::new(db), shown)
        }
    })
}

/// The Plaid source (`assets::PLAID`): Plaid when a Plaid variable is set, else the dev source.
pub async fn plaid(setup: Setup) -> anyhow::Result<Arc<dyn resources::PlaidSource>> {
    Ok(match plaid_live()? {
        None => Arc::new(resources::DevPlaid),
        Some((url, config)) => {
            let (items, _) = plaid_items(&setup).await?;
            let shown = lineage::redact_url(&url);
            Arc::new(resources::PlaidClient::new(&url, shown, config, items).map_err(|e| user_error(e.to_string()))?)
        }
    })
}

/// `robo-assets plaid link ITEM --access-token …`.
pub fn plaid_command() -> robo_assets::clap::Command {
    use robo_assets::clap::{Arg, Command};
    Command::new("plaid").about("Plaid items: link one with its access token").subcommand_required(true).subcommand(
        Command::new("link")
            .about(
                "Store the access token of a Plaid item (from Plaid Link) in the app database, replacing any earlier \
                 one, and add ITEM to the plaid_items partitions; then `materialize plaid_transactions -p ITEM`",
            )
            .arg(Arg::new("item").value_name("ITEM").required(true).help("the Plaid item id"))
            .arg(
                Arg::new("access-token")
                    .long("access-token")
                    .value_name("TOKEN")
                    .env("PLAID_ACCESS_TOKEN")
                    .hide_env_values(true)
                    .help("the item's access token (better: set PLAID_ACCESS_TOKEN, kept out of shell history)"),
            ),
    )
}

/// Runs `robo-assets plaid link`.
pub async fn plaid_run(setup: Setup, matches: robo_assets::clap::ArgMatches) -> anyhow::Result<()> {
    let Some(("link", link)) = matches.subcommand() else { unreachable!("clap requires a subcommand") };
    let item = link.get_one::<String>("item").expect("required").trim().to_owned();
    let shown: String = item.chars().take(80).collect();
    if item.is_empty()
        || item.chars().count() > 255
        || item.chars().any(|c| c.is_control() || c == '/' || c == '|')
        || item.starts_with('.')
    {
        return Err(user_error(format!(
            "plaid item {shown:?} is not a usable item id: 1 to 255 characters, no '/', '|' or control characters, \
             not starting with '.'"
        )));
    }
    let token = link.get_one::<String>("access-token").map(|t| t.trim().to_owned()).unwrap_or_default();
    if token.is_empty() {
        return Err(user_error(
            "the access token is empty: pass --access-token TOKEN or set PLAID_ACCESS_TOKEN".to_owned(),
        ));
    }
    let (items, db) = plaid_items(&setup).await?;
    let now = setup.clock.now();
    let new = items.link_plaid_item(&item, &resources::Secret::new(token), now).await?;
    // The item is a partition of the Plaid assets from now on (adding it again adds nothing).
    setup.store.add_dynamic_partitions(assets::plaid::PLAID_ITEMS, std::slice::from_ref(&item), now).await?;
    println!(
        "{} plaid item {item} (access token stored in {db}; partition of {}). Next: robo-assets materialize \
         plaid_transactions -p {item}",
        if new { "Linked" } else { "Re-linked" },
        assets::plaid::PLAID_ITEMS
    );
    Ok(())
}
