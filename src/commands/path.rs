//! `robo-assets path ASSET [-p KEY]`: where a partition's current output lives, a local file
//! path or `s3://bucket/key`, alone on a line for a script (`duckdb -c "FROM '$(robo-assets
//! path storage_bill -p 2025-12-15)'"`). `status -p` and `lineage -p` show the same line.

use serde::Serialize;

use crate::ExitStatus;
use crate::app::App;
use crate::cli::PathArgs;
use crate::commands::{lookup, print_json};
use crate::user_error;

/// A partition's current output: the body of `path --json`.
#[derive(Debug, Serialize)]
struct OutputPath {
    asset: String,
    partition: String,
    /// A local file path, or `s3://bucket/key`.
    path: String,
    /// As recorded: `file:///…` or `s3://…`.
    uri: String,
    materialization_id: lineage::MaterializationId,
    data_version: String,
    run_id: lineage::RunId,
}

/// Where a recorded output URI is, for people and scripts: a `file://` URI as the local path it
/// names (the local object store writes the path as is), anything else (`s3://…`) unchanged.
pub(crate) fn location(uri: &str) -> String {
    uri.strip_prefix("file://").unwrap_or(uri).to_owned()
}

pub async fn path(app: &App, args: &PathArgs) -> anyhow::Result<ExitStatus> {
    let id = lookup(app, &args.asset)?;
    let def = app.defs.graph().asset(id);
    let key = match (&args.partition, &def.partitions) {
        (Some(k), Some(p)) => {
            p.resolve(k, &app.partitions_context().await?).map_err(|e| user_error(format!("asset {}: {e}", def.key)))?
        }
        (None, None) => String::new(),
        (Some(k), None) => {
            return Err(user_error(format!(
                "asset {} is not partitioned, so it takes no partition key (got {k:?})",
                def.key
            )));
        }
        (None, Some(p)) => {
            return Err(user_error(format!(
                "asset {} is partitioned ({}): name the partition with --partition KEY",
                def.key,
                p.describe()
            )));
        }
    };
    let shown = if key.is_empty() { def.key.to_string() } else { format!("{} {key}", def.key) };
    let state = app.store.partition_states_of(&[(def.key.to_string(), key.clone())]).await?.pop().flatten();
    // A wipe removes the state row: "never" is said of what the store knows now.
    let Some(current) = state.as_ref().and_then(|s| s.current_materialization_id) else {
        let why = match state.map(|s| s.last_attempt_status) {
            Some(lineage::AttemptStatus::Failed) => "its attempts failed and it has never been materialized",
            Some(lineage::AttemptStatus::Running) => "it is being materialized for the first time",
            _ => "it has never been materialized (or was wiped)",
        };
        return Err(user_error(format!(
            "{shown} has no output: {why}; run `robo-assets materialize {}{} --with-upstream`",
            def.key,
            if key.is_empty() { String::new() } else { format!(" --partition {key}") }
        )));
    };
    let record = app.store.materialization(current).await?.expect("the current materialization exists");
    let Some(uri) = record.storage_uri else {
        return Err(user_error(format!(
            "{shown} is materialized but stores no output: {} returns metadata only (see `robo-assets history {}`)",
            def.key, def.key
        )));
    };
    let out = OutputPath {
        asset: def.key.to_string(),
        partition: key,
        path: location(&uri),
        uri,
        materialization_id: record.id,
        data_version: record.data_version,
        run_id: record.run_id,
    };
    if args.json {
        print_json(&out)?;
    } else {
        println!("{}", out.path);
    }
    Ok(ExitStatus::Success)
}
