//! The `robo-assets` binary: the RoboSystems assets, schedules and sensors on the robo-assets
//! command line (the library's [`robo_assets::Project`]), with their resources bound by key.

mod robosystems;

use std::sync::Arc;

fn main() -> std::process::ExitCode {
    robo_assets::Project::new("robo-assets")
        .assets(assets::assets())
        .automation(assets::automation::automation)
        .check(robosystems::check_config)
        .resource_with(assets::APP_DB, robosystems::app_db)
        .resource_with(assets::GRAPH_STORAGE, robosystems::graph_storage)
        .resource_with(assets::SEC, robosystems::sec)
        .resource_with(assets::REPORTS, |setup| async move { Ok::<_, anyhow::Error>(Arc::clone(&setup.objects)) })
        .demo(robosystems::seed_demo)
        .secret_setting(
            "DATABASE_URL",
            "App database: postgres://USER:PASSWORD@HOST/DB or sqlite://PATH [default: sqlite://$ROBO_ASSETS_HOME/app.db with demo tenants]",
        )
        .setting("GRAPH_API_URL", "The Graph API reporting each graph's storage [default: the labeled dev source]")
        .secret_setting("GRAPH_API_TOKEN", "The Graph API's bearer token")
        .setting("GRAPH_API_TIMEOUT_MS", "Per-request timeout of the Graph API [default: 10000]")
        .setting("ROBO_ASSETS_DEV_LATENCY_MS", "Make the dev graph source slow, like a remote API [default: 0]")
        .setting("SEC_API_URL", "SEC EDGAR API; setting it makes SEC live [default: the labeled SEC dev source]")
        .setting("SEC_USER_AGENT", "Who you are, required for live SEC use: \"Company Name admin@company.com\"")
        .setting("SEC_RATE_LIMIT", "SEC requests per second per process, at most 10 [default: 10]")
        .setting("SEC_COOL_DOWN_SECS", "Pause of every SEC request after a throttle [default: 600]")
        .setting("QBO_CLIENT_ID", "QuickBooks app's OAuth client id; any QBO_* makes QuickBooks live [default: dev source]")
        .secret_setting("QBO_CLIENT_SECRET", "QuickBooks app's OAuth client secret")
        .setting("QBO_API_URL", "QuickBooks API base [default: production]")
        .setting("QBO_TOKEN_URL", "QuickBooks OAuth token endpoint [default: Intuit's]")
        .setting("QBO_THROTTLE_WAIT_SECS", "How long a QuickBooks 429 waits before the next try [default: 60]")
        .setting("QBO_REQUESTS_PER_SECOND", "Each realm's QuickBooks pace across all workers, 1 to 10 [default: 10]")
        .setting("PLAID_API_URL", "Plaid's server; any PLAID_* makes Plaid live [default: the labeled dev source]")
        .setting("PLAID_CLIENT_ID", "Plaid API client id")
        .secret_setting("PLAID_SECRET", "Plaid API secret")
        .resource_with(assets::quickbooks::QBO, robosystems::quickbooks::source)
        .command(robosystems::quickbooks::command(), robosystems::quickbooks::run)
        // Plaid (issue 13 §4).
        .check(robosystems::check_plaid)
        .resource_with(assets::PLAID, robosystems::plaid)
        .command(robosystems::plaid_command(), robosystems::plaid_run)
        .main()
}
