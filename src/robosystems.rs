//! The RoboSystems resources, from the environment names RoboSystems already uses: the app
//! database (`DATABASE_URL`: embedded SQLite seeded with labeled demo data by default, PostgreSQL
//! in production) and the graph storage source (`GRAPH_API_URL`, `GRAPH_API_TOKEN`,
//! `GRAPH_API_TIMEOUT_MS`; the labeled dev source under `$ROBO_ASSETS_HOME/graphs` when unset,
//! slowed by `ROBO_ASSETS_DEV_LATENCY_MS`), and SEC EDGAR (`SEC_API_URL`, `SEC_USER_AGENT`,
//! `SEC_RATE_LIMIT`, `SEC_COOL_DOWN_SECS`; the labeled dev source when none is set). Every URL
//! that could hold a secret is shown redacted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use resources::{
    AppDb, DevGraphStorage, DevSecSource, GraphApiClient, GraphStorage, PgAppDb, SecClient, SecSource, SqliteAppDb,
};
use robo_assets::{Setup, user_error};

/// Where the app database is.
enum AppDbLocation {
    /// A SQLite file (the embedded default, seeded with labeled demo data on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (never seeded unless `robo-assets demo seed` is run).
    Postgres(String),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
    let Some(url) = var("GRAPH_API_URL") else { return Ok(None) };
    let timeout_ms = match var("GRAPH_API_TIMEOUT_MS") {
        None => 10_000,
        Some(ms) => ms.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
            user_error(format!("GRAPH_API_TIMEOUT_MS={ms:?} is not a positive number of milliseconds"))
        })?,
    };
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
    if let Some(rate) = var("SEC_RATE_LIMIT") {
        config.rate_per_sec = rate.trim().parse::<f64>().ok().filter(|r| *r > 0.0 && *r <= 10.0).ok_or_else(|| {
            user_error(format!(
                "SEC_RATE_LIMIT={rate:?} is not a number of requests per second above 0 and at most 10 (the SEC's limit)"
            ))
        })?;
    }
    if let Some(secs) = var("SEC_COOL_DOWN_SECS") {
        config.cool_down = Duration::from_secs(secs.trim().parse().map_err(|_| {
            user_error(format!("SEC_COOL_DOWN_SECS={secs:?} is not a whole number of seconds (default 600)"))
        })?);
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
            "Seeded {} with {} demo tenants (labeled \"(demo)\") and their graph folders in {}",
            app_db.describe(),
            resources::appdb::DEMO_TENANTS.len(),
            setup.home.join("graphs").display()
        )
    } else {
        format!("{} already has tenants: nothing seeded", app_db.describe())
    })
}
