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
        .resource_with(assets::quickbooks::QBO, robosystems::quickbooks::source)
        .command(robosystems::quickbooks::command(), robosystems::quickbooks::run)
        // Plaid (issue 13 §4).
        .check(robosystems::check_plaid)
        .resource_with(assets::PLAID, robosystems::plaid)
        .command(robosystems::plaid_command(), robosystems::plaid_run)
        .main()
}
