//! `graph_provisioning`: one partition per subscription id (dynamic partitions named
//! `subscriptions`). For a subscription in `provisioning`, creates its graph through the Graph
//! API (or the dev source) and activates the subscription with that graph, so billing starts
//! with the next hourly snapshot. Re-running a partition is safe: the API treats an existing
//! graph as created, and an active subscription is left as it is.
//!
//! Partitions are added by `pending_subscription_sensor` (or `robo-assets partitions add
//! subscriptions SUB_ID`).

use std::sync::Arc;

use engine::{AssetContext, AssetDef, AssetError, Output, PartitionsDef, RetryPolicy, asset};
use resources::{AppDb, GraphStorage};

use crate::{APP_DB, GRAPH_STORAGE};

/// The dynamic partitions definition of subscription ids.
pub const SUBSCRIPTIONS: &str = "subscriptions";

pub(crate) fn definition() -> AssetDef {
    asset("graph_provisioning")
        .requires(APP_DB)
        .requires(GRAPH_STORAGE)
        .description(
            "Creates the graph of each new subscription through the Graph API, then activates the subscription.",
        )
        .group("provisioning")
        .owner("platform@robosystems.ai")
        .tag("team", "platform")
        .code_version("1")
        .partitions(PartitionsDef::dynamic(SUBSCRIPTIONS))
        .retry(RetryPolicy::exponential(3, std::time::Duration::from_millis(500)))
        .pool("graph_api")
        .compute(compute)
}

/// The graph a subscription gets: stable, so a retried creation finds the same graph.
pub fn graph_id_for(subscription_id: &str) -> String {
    format!("graph-{subscription_id}")
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let app_db: Arc<dyn AppDb> = ctx.resource(APP_DB)?;
    let graphs: Arc<dyn GraphStorage> = ctx.resource(GRAPH_STORAGE)?;
    let id = ctx.partition_key.clone();
    let sub =
        app_db.subscription(&id).await?.ok_or_else(|| format!("no subscription {id:?} in {}", app_db.describe()))?;
    let graph_id = graph_id_for(&id);
    let out = Output::none()
        .with_metadata("subscription", id.clone())
        .with_metadata("tenant", sub.tenant_id.clone())
        .with_metadata("graph", graph_id.clone());
    match sub.status.as_str() {
        "active" => Ok(out.with_metadata("outcome", "already active")),
        "canceled" => Err(format!("subscription {id} was canceled; no graph is created").into()),
        _ => {
            let created = graphs.create_graph(&graph_id, &sub.tenant_id).await?;
            let activated = app_db.activate_subscription(&id, &graph_id, ctx.now()).await?;
            Ok(out
                .with_metadata("graph_created", created)
                .with_metadata("outcome", if activated { "activated" } else { "already active" })
                .with_metadata("source", graphs.describe()))
        }
    }
}
