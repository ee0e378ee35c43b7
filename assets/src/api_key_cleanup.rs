//! `api_key_cleanup`: hourly. Deletes the API keys that expired before the end of the hour and
//! records how many (and which) in its metadata. Running an hour again deletes nothing new.

use std::sync::Arc;

use engine::{AssetContext, AssetDef, AssetError, Output, PartitionsDef, asset};
use resources::AppDb;

use crate::{APP_DB, START_DATE};

pub(crate) fn definition() -> AssetDef {
    asset("api_key_cleanup")
        .requires(APP_DB)
        .description("Deletes API keys that expired before the end of each hour; records the count.")
        .group("infrastructure")
        .owner("platform@robosystems.ai")
        .tag("team", "platform")
        .code_version("1")
        .partitions(PartitionsDef::hourly(START_DATE))
        .compute(compute)
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let app_db: Arc<dyn AppDb> = ctx.resource(APP_DB)?;
    let window = ctx.time_window.as_ref().ok_or_else(|| format!("{:?} is not an hour", ctx.partition_key))?;
    let deleted = app_db.delete_expired_api_keys(window.end).await?;
    Ok(Output::none()
        .with_metadata("deleted", deleted.len())
        .with_metadata("deleted_keys", deleted)
        .with_metadata("expired_before", window.end.to_rfc3339()))
}
