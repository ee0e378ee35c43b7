//! `usage_snapshot`: hourly storage bytes of every active graph.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use engine::{AssetContext, AssetDef, AssetError, Output, PartitionsDef, RetryPolicy, asset};
use resources::{AppDb, GraphStorage};

use crate::{APP_DB, GRAPH_STORAGE, START_DATE};

pub(crate) fn definition() -> AssetDef {
    asset("usage_snapshot")
        .requires(APP_DB)
        .requires(GRAPH_STORAGE)
        .description("Storage bytes of every active graph at each hour, from the Graph API (or the dev source).")
        .group("billing")
        .owner("platform@robosystems.ai")
        .tag("team", "billing")
        .code_version("1")
        .partitions(PartitionsDef::hourly(START_DATE))
        .retry(RetryPolicy::exponential(3, std::time::Duration::from_millis(200)))
        // Every snapshot calls the Graph API: `robo-assets pools set graph_api 4` caps them.
        .pool("graph_api")
        .compute(compute)
}

/// The schema of a snapshot: `hour` is the instant the hour starts (UTC).
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("hour", crate::columns::hour_type(), false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("graph_id", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, false),
    ]))
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let app_db: Arc<dyn AppDb> = ctx.resource(APP_DB)?;
    let storage: Arc<dyn GraphStorage> = ctx.resource(GRAPH_STORAGE)?;
    let graphs = app_db.active_graphs().await?;
    let ids: Vec<String> = graphs.iter().map(|g| g.graph_id.clone()).collect();
    let sizes = storage.storage_bytes(&ids).await?;
    // A graph the source no longer knows (deleted since the app database listed it) is not
    // billed; the snapshot says which.
    let mut rows = Vec::with_capacity(graphs.len());
    let mut not_found = Vec::new();
    for (graph, size) in graphs.iter().zip(sizes) {
        match size {
            Some(b) => rows.push((graph, i64::try_from(b).unwrap_or(i64::MAX))),
            None => not_found.push(graph.graph_id.clone()),
        }
    }
    if !not_found.is_empty() {
        ctx.log.warn(format!("graphs unknown to the storage source, not billed: {}", not_found.join(", ")));
    }
    let total: i64 = rows.iter().map(|r| r.1).sum();
    ctx.log.info(format!("{} graph{} measured: {total} bytes", rows.len(), if rows.len() == 1 { "" } else { "s" }));
    let table = RecordBatch::try_new(
        schema(),
        vec![
            crate::columns::hours(&ctx, rows.len())?,
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.tenant_id.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.graph_id.as_str()))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )?;
    Ok(Output::table(table)
        .with_metadata("graphs", rows.len())
        .with_metadata("graphs_not_found", not_found)
        .with_metadata("total_bytes", total)
        .with_metadata("source", storage.describe()))
}
