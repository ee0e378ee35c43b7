//! robo-assets as a library: bring your own assets and get the whole command line for them.
//!
//! A [`Project`] takes your asset definitions, your schedules and sensors, and the resources
//! your assets ask for by key, and runs every command of the `robo-assets` CLI on them
//! (materialize, backfill, status, lineage, why, daemon, worker, …): validated at start-up, with
//! the same lineage store, queue and exit codes. The `robo-assets` binary itself is a few lines
//! calling it with the RoboSystems assets.
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     robo_assets::Project::new("my-assets")
//!         .assets(vec![my_hourly_asset(), my_daily_aggregate()])
//!         .resource(PRICES, Arc::new(Prices::default()))
//!         .main()
//! }
//! ```
//!
//! Everything a definition needs is re-exported here (`asset`, `Output`, `PartitionsDef`, the
//! arrow crates, …), so a project depends on this crate alone. The CLI's own modules (clap
//! types, commands, progress) stay private: the library's surface is [`Project`] and what it
//! re-exports.
//!
//! Exit codes: 0 success, 1 a run failed or something broke, 2 bad input (unknown asset,
//! malformed or out-of-range key, missing upstream, bad configuration or definitions),
//! 130 canceled.

mod app;
mod cli;
mod commands;
mod config;
mod metrics;
mod progress;
mod project;
mod view;

pub use commands::clip;
pub use config::{Setting, setting};
pub use project::{OBJECT_STORE, Project, Setup};

pub use arrow_array;
pub use arrow_schema;
pub use chrono;
pub use clap;
pub use engine;
pub use engine::automation::{
    Automation, AutomationError, Condition, SensorRequest, SensorResult, on_cron, schedule, sensor,
};
pub use engine::{
    AssetBuilder, AssetContext, AssetDef, AssetError, AssetKey, Clock, Definitions, FreshnessPolicy, Output,
    PartitionMapping, PartitionsDef, Resources, RetryPolicy, Severity, TimeWindow, asset,
};
pub use lineage;
pub use resources::ObjectStore;

/// Bad input or configuration: the message says what was wrong and what is valid; exit code 2.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// A [`UserError`] as an `anyhow::Error`, for resource factories and start-up checks.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Everything worked.
    Success,
    /// A run ended with failed steps.
    Failure,
    /// The user canceled (Ctrl-C).
    Canceled,
}
