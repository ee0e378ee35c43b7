//! QuickBooks Online: the `qbo` resource from `QBO_CLIENT_ID`, `QBO_CLIENT_SECRET`,
//! `QBO_API_URL` (default production; sandbox by URL), `QBO_TOKEN_URL` (default Intuit's
//! bearer-token endpoint), `QBO_THROTTLE_WAIT_SECS` (how long a 429 waits, default 60) and
//! `QBO_REQUESTS_PER_SECOND` (each realm's pace across all workers, 1 to 10, default 10), or the
//! labeled dev source when none is set; and `robo-assets qbo connect REALM` / `qbo realms`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use resources::qbo::{DevQbo, QboClient, QboConfig, QboSource, QboTokens};
use resources::{PgAppDb, Secret, SqliteAppDb};
use robo_assets::{Setup, clap, user_error};

use super::{AppDbLocation, app_db_location, var};

const VARIABLES: [&str; 6] = [
    "QBO_CLIENT_ID",
    "QBO_CLIENT_SECRET",
    "QBO_API_URL",
    "QBO_TOKEN_URL",
    "QBO_THROTTLE_WAIT_SECS",
    "QBO_REQUESTS_PER_SECOND",
];

/// The live configuration when any QuickBooks variable is set; `None` for the dev source.
fn live_config() -> anyhow::Result<Option<QboConfig>> {
    if VARIABLES.iter().all(|v| var(v).is_none()) {
        return Ok(None);
    }
    let required = |name: &str| {
        var(name).ok_or_else(|| {
            user_error(format!(
                "{name} is not set: live QuickBooks use (any of {} set) needs QBO_CLIENT_ID and QBO_CLIENT_SECRET; \
                 unset them all for the dev source",
                VARIABLES.join(", ")
            ))
        })
    };
    let mut config = QboConfig::new(required("QBO_CLIENT_ID")?, Secret::new(required("QBO_CLIENT_SECRET")?));
    for (name, field) in [("QBO_API_URL", &mut config.api_url), ("QBO_TOKEN_URL", &mut config.token_url)] {
        if let Some(url) = var(name) {
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.split("://").nth(1).is_none_or(str::is_empty)
            {
                return Err(user_error(format!(
                    "{name}={} is not an http(s) URL (e.g. https://sandbox-quickbooks.api.intuit.com)",
                    lineage::redact_url(&url)
                )));
            }
            *field = url;
        }
    }
    if let Some(secs) = var("QBO_THROTTLE_WAIT_SECS") {
        let secs: u64 = secs.parse().ok().filter(|s| *s <= 3600).ok_or_else(|| {
            user_error(format!("QBO_THROTTLE_WAIT_SECS={secs:?} is not a whole number of seconds from 0 to 3600"))
        })?;
        config.throttle_wait = Duration::from_secs(secs);
    }
    if let Some(rate) = var("QBO_REQUESTS_PER_SECOND") {
        config.requests_per_second = rate.parse().ok().filter(|r| (1..=10).contains(r)).ok_or_else(|| {
            user_error(format!(
                "QBO_REQUESTS_PER_SECOND={rate:?} is not a whole number from 1 to 10 (Intuit allows a realm 10 a second)"
            ))
        })?;
    }
    Ok(Some(config))
}

/// Refuses a bad QuickBooks configuration at start-up.
pub(super) fn check() -> anyhow::Result<()> {
    live_config().map(|_| ())
}

/// Where the realms' tokens are: the app database.
async fn tokens(setup: &Setup) -> anyhow::Result<Arc<dyn QboTokens>> {
    Ok(match app_db_location(&setup.home)? {
        AppDbLocation::Sqlite(path) => Arc::new(
            SqliteAppDb::open(&path).await.with_context(|| format!("opening app database {}", path.display()))?,
        ),
        AppDbLocation::Postgres(url) => {
            let shown = lineage::redact_url(&url);
            Arc::new(
                PgAppDb::connect(&url, shown.clone()).await.with_context(|| format!("opening app database {shown}"))?,
            )
        }
    })
}

/// The `qbo` resource: the live client, or the labeled dev source.
pub async fn source(setup: Setup) -> anyhow::Result<Arc<dyn QboSource>> {
    Ok(match live_config()? {
        Some(config) => Arc::new(QboClient::new(config, tokens(&setup).await?).map_err(|e| user_error(e.to_string()))?),
        None => Arc::new(DevQbo),
    })
}

/// `robo-assets qbo …`.
pub fn command() -> clap::Command {
    clap::Command::new("qbo")
        .about("Connect QuickBooks Online companies (realms) and list them")
        .subcommand_required(true)
        .subcommand(
            clap::Command::new("connect")
                .about("Store a realm's refresh token (from Intuit's OAuth consent) and add the realm to qbo_realms")
                .arg(clap::Arg::new("realm").required(true).help("The realm (company) id: digits"))
                .arg(
                    clap::Arg::new("refresh_token")
                        .long("refresh-token")
                        .env("QBO_REFRESH_TOKEN")
                        .hide_env_values(true)
                        .required(true)
                        .help("The refresh token (or QBO_REFRESH_TOKEN, kept out of shell history)"),
                ),
        )
        .subcommand(clap::Command::new("realms").about("List the connected realms (never their tokens)"))
}

/// Runs `qbo connect` and `qbo realms`.
pub async fn run(setup: Setup, args: clap::ArgMatches) -> anyhow::Result<()> {
    match args.subcommand() {
        Some(("connect", args)) => {
            let given = args.get_one::<String>("realm").expect("required");
            let realm = assets::quickbooks::realm_id(given).map_err(|valid| {
                user_error(format!("{} is not a realm id: expected {valid}", robo_assets::clip(given)))
            })?;
            let token = args.get_one::<String>("refresh_token").expect("required").trim().to_owned();
            if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_whitespace) {
                return Err(user_error(
                    "the refresh token is empty, longer than 4,096 characters or has spaces: paste it as Intuit gave it",
                ));
            }
            let now = setup.clock.now();
            tokens(&setup).await?.connect(&realm, &Secret::new(token), now).await?;
            setup
                .store
                .add_dynamic_partitions(assets::quickbooks::QBO_REALMS, std::slice::from_ref(&realm), now)
                .await?;
            let mode = if live_config()?.is_some() {
                "live: reports come from QuickBooks"
            } else {
                "no QBO_* variable is set, so reports come from the labeled dev source"
            };
            println!(
                "Connected QuickBooks realm {realm} ({mode}); its refresh token is stored in the app database and rotates on every refresh."
            );
            println!("Next: robo-assets materialize qbo_profit_and_loss -p 'month=2025-11|realm={realm}'");
            Ok(())
        }
        Some(("realms", _)) => {
            let realms = tokens(&setup).await?.connected_realms().await?;
            if realms.is_empty() {
                println!(
                    "No QuickBooks realm is connected. Connect one: robo-assets qbo connect REALM --refresh-token …"
                );
            }
            for realm in realms {
                println!("{realm}");
            }
            Ok(())
        }
        _ => unreachable!("clap requires a subcommand"),
    }
}
