//! A project with one bad definition, chosen by `MISDEFINED` (the start-up validation tests in
//! `tests/it/project.rs` run it): `cycle`, `unknown_dep`, `duplicate`, `key`, `mapping`, `unbound`,
//! `schedule`, `condition`, or nothing for a valid project.

use std::process::ExitCode;

use robo_assets::{
    AssetBuilder, AssetDef, Automation, Condition, Output, PartitionMapping, PartitionsDef, Project, asset, schedule,
};

fn noop(builder: AssetBuilder) -> AssetDef {
    builder.compute(|_ctx| async { Ok(Output::none()) })
}

fn main() -> ExitCode {
    let hourly = || noop(asset("hourly").partitions(PartitionsDef::hourly("2025-12-01")));
    let daily = || noop(asset("daily").partitions(PartitionsDef::daily("2025-12-01")).dep("hourly"));
    let mut automation = Automation::default();
    let assets = match std::env::var("MISDEFINED").unwrap_or_default().as_str() {
        "cycle" => vec![noop(asset("a").dep("c")), noop(asset("b").dep("a")), noop(asset("c").dep("b"))],
        "unknown_dep" => vec![hourly(), noop(asset("daily").dep("hourlly"))],
        "duplicate" => vec![hourly(), hourly()],
        "key" => vec![hourly(), noop(asset("Daily Totals").dep("hourly"))],
        "mapping" => vec![
            hourly(),
            noop(
                asset("daily")
                    .partitions(PartitionsDef::fixed(["eu", "us"]))
                    .dep_mapped("hourly", PartitionMapping::time_window(0, 0)),
            ),
        ],
        "unbound" => vec![hourly(), noop(asset("daily").dep("hourly").requires("warehouse").requires("object_store"))],
        "schedule" => {
            automation.schedules.push(schedule("nightly", "0 2 * * *", "UTC", "+dailly").expect("a valid cron"));
            vec![hourly(), daily()]
        }
        "condition" => {
            automation.conditions.push(("montly".to_owned(), Condition::Eager));
            vec![hourly(), daily()]
        }
        _ => vec![hourly(), daily()],
    };
    Project::new("misdefined").assets(assets).automation(move || Ok(automation)).main()
}
