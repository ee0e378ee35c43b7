//! OpenLineage: the lineage store's outbox rendered as spec 2-0-2 RunEvents, and delivered.
//!
//! The store writes an outbox row with every transition it describes (a run or a step attempt
//! started, completed, failed, aborted), in the same transaction. Here a row becomes an event:
//!
//! - a **run** is an OpenLineage run of the job `<trigger>:<selection>` (`manual:storage_bill+`),
//!   `runId` = the run id;
//! - a **step attempt** is an OpenLineage run of the job named by the asset key, `runId` derived
//!   from (request id, attempt), with the run as its `parent` facet. Its COMPLETE event carries
//!   the output dataset (`version` = the data version, `schema` from the Parquet schema,
//!   `dataSource`, the partition as a `subset`, `outputStatistics`) and the exact upstream
//!   datasets read, each with the data version read;
//! - run facets: `nominalTime` (the partition's time window), `errorMessage` (a failed or aborted
//!   attempt), `processing_engine`, and `robo_assets` (code version, partition key, request id,
//!   attempt, outbox id; schema in `openlineage/RoboAssetsRunFacet.json`).
//!
//! A row renders to the same JSON every time it is rendered (delivery after a crash, export):
//! everything in it is read from the row and from facts that never change once written.
//! Delivery ([`ship_pending`]) is done by one process at a time (a lease in the store, renewed
//! per page of events; several daemons may run). It posts pending rows in id order, stops at the first that fails (so
//! a run's events arrive in order, and a receiver that is down delays events and loses none), and
//! marks each delivered; a receiver that refuses an event for good (a 4xx other than 408/429)
//! gets it marked with the refusal instead of blocking every later event.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lineage::{Delivery, LineageEventType, LineageStore, OutboxEvent, RequestId};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::definition::Definitions;
use crate::partition::PartitionsDef;

/// The core spec's RunEvent schema.
pub const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// Who produced the events (the version is in each event's `processing_engine` facet).
pub const PRODUCER: &str = "https://github.com/RoboFinSystems/robo-assets";

/// The published schema of the `robo_assets` run facet.
pub const ROBO_ASSETS_FACET_SCHEMA: &str = "https://raw.githubusercontent.com/RoboFinSystems/robo-assets/main/openlineage/RoboAssetsRunFacet.json#/$defs/RoboAssetsRunFacet";

const FACETS: &str = "https://openlineage.io/spec/facets";

/// Where events say they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLineageConfig {
    /// The jobs' namespace (`OPENLINEAGE_NAMESPACE`, default `robo-assets`).
    pub namespace: String,
    /// The datasets' namespace: where the object store keeps outputs (`s3://bucket`,
    /// `file:///…/storage`).
    pub dataset_namespace: String,
}

/// The OpenLineage run id of one attempt of a step: a UUID (version 8) derived from the request
/// id and the attempt, so every rendering of the attempt's events names the same run.
pub fn step_run_id(request: RequestId, attempt: i64) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(request.0.as_bytes());
    h.update(&attempt.to_le_bytes());
    let bytes: [u8; 16] = h.finalize().as_bytes()[..16].try_into().expect("16 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The job name of a run.
pub fn run_job_name(trigger: &str, selection: &str) -> String {
    format!("{trigger}:{selection}")
}

fn facet(schema: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("_producer".into(), PRODUCER.into());
    m.insert("_schemaURL".into(), schema.into());
    m
}

fn facet_with(schema: &str, fields: Value) -> Value {
    let mut m = facet(schema);
    if let Value::Object(fields) = fields {
        m.extend(fields);
    }
    Value::Object(m)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Turns outbox rows into RunEvents.
pub struct Renderer<'a> {
    /// The current definitions (partition windows, code versions of steps not yet completed).
    pub defs: &'a Definitions,
    /// Where the facts are.
    pub store: &'a dyn LineageStore,
    /// Namespaces.
    pub config: &'a OpenLineageConfig,
}

impl Renderer<'_> {
    /// The RunEvent of one outbox row.
    pub async fn render(&self, e: &OutboxEvent) -> Result<Value, lineage::Error> {
        let run = self.store.run(e.run_id).await?.ok_or(lineage::Error::UnknownRun(e.run_id))?;
        let run_job = run_job_name(run.trigger.as_str(), &run.selection);
        let engine = facet_with(
            &format!("{FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"),
            json!({ "version": env!("CARGO_PKG_VERSION"), "name": "robo-assets" }),
        );
        let (Some(request), Some(attempt), Some(asset), Some(partition)) =
            (e.request_id, e.attempt, e.asset_key.as_deref(), e.partition_key.as_deref())
        else {
            // The run's own event.
            let facets = json!({
                "processing_engine": engine,
                "robo_assets": facet_with(ROBO_ASSETS_FACET_SCHEMA, json!({
                    "trigger": run.trigger.as_str(),
                    "selection": run.selection,
                    "outboxId": e.id,
                })),
            });
            return Ok(json!({
                "eventType": e.event_type.as_str(),
                "eventTime": time(e.event_time),
                "producer": PRODUCER,
                "schemaURL": RUN_EVENT_SCHEMA,
                "run": { "runId": e.run_id.to_string(), "facets": facets },
                "job": self.job(&run_job, "RUN"),
                "inputs": [],
                "outputs": [],
            }));
        };
        let def = self.defs.graph().lookup(asset).ok().map(|id| self.defs.graph().asset(id));
        let partitions = def.and_then(|d| d.partitions.as_ref());
        let materialization = match e.event_type {
            LineageEventType::Complete => self.store.step_materialization(e.run_id, asset, partition).await?,
            _ => None,
        };
        let code_version = materialization
            .as_ref()
            .map(|m| m.code_version.clone())
            .or_else(|| def.map(|d| d.code_version.clone()))
            .unwrap_or_default();

        let mut run_facets = Map::new();
        run_facets.insert(
            "parent".into(),
            facet_with(
                &format!("{FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"),
                json!({
                    "run": { "runId": e.run_id.to_string() },
                    "job": { "namespace": self.config.namespace, "name": run_job },
                }),
            ),
        );
        if let Some(window) = partitions.and_then(|p| p.window_of(partition)) {
            run_facets.insert(
                "nominalTime".into(),
                facet_with(
                    &format!("{FACETS}/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet"),
                    json!({ "nominalStartTime": time(window.start), "nominalEndTime": time(window.end) }),
                ),
            );
        }
        if let Some(error) = &e.error {
            run_facets.insert(
                "errorMessage".into(),
                facet_with(
                    &format!("{FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"),
                    json!({ "message": error, "programmingLanguage": "Rust" }),
                ),
            );
        }
        run_facets.insert("processing_engine".into(), engine);
        run_facets.insert(
            "robo_assets".into(),
            facet_with(
                ROBO_ASSETS_FACET_SCHEMA,
                json!({
                    "codeVersion": code_version,
                    "partitionKey": partition,
                    "requestId": request.to_string(),
                    "attempt": attempt,
                    "outboxId": e.id,
                }),
            ),
        );

        let (inputs, outputs) = match &materialization {
            Some(m) => {
                let mut inputs = Vec::new();
                for input in self.store.inputs_of(m.id).await? {
                    let upstream = self.defs.graph().lookup(&input.asset_key).ok();
                    let up_partitions = upstream.and_then(|id| self.defs.graph().asset(id).partitions.as_ref());
                    let mut dataset = self.dataset(&input.asset_key, Some(&input.data_version));
                    if let Some(subset) = subset(up_partitions, &input.partition_key) {
                        dataset["inputFacets"] = json!({ "subset": facet_with(
                            &format!("{FACETS}/1-0-0/BaseSubsetDatasetFacet.json#/$defs/InputSubsetInputDatasetFacet"),
                            json!({ "inputCondition": subset }),
                        ) });
                    }
                    inputs.push(dataset);
                }
                let mut output = self.dataset(asset, Some(&m.data_version));
                if let Some(schema) = m.schema.as_ref().and_then(schema_fields) {
                    output["facets"]["schema"] = facet_with(
                        &format!("{FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"),
                        json!({ "fields": schema }),
                    );
                }
                let mut output_facets = Map::new();
                if let Some(subset) = subset(partitions, partition) {
                    output_facets.insert(
                        "subset".into(),
                        facet_with(
                            &format!(
                                "{FACETS}/1-0-0/BaseSubsetDatasetFacet.json#/$defs/OutputSubsetOutputDatasetFacet"
                            ),
                            json!({ "outputCondition": subset }),
                        ),
                    );
                }
                let mut stats = json!({ "rowCount": m.row_count.unwrap_or(0) });
                if let Some(bytes) = m.bytes {
                    stats["size"] = bytes.into();
                    stats["fileCount"] = 1.into();
                }
                output_facets.insert(
                    "outputStatistics".into(),
                    facet_with(
                        &format!(
                            "{FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
                        ),
                        stats,
                    ),
                );
                output["outputFacets"] = Value::Object(output_facets);
                (inputs, vec![output])
            }
            // Before completion (and after a failure) only the dataset a step writes is known.
            None => (Vec::new(), vec![self.dataset(asset, None)]),
        };
        Ok(json!({
            "eventType": e.event_type.as_str(),
            "eventTime": time(e.event_time),
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "run": { "runId": step_run_id(request, attempt).to_string(), "facets": run_facets },
            "job": self.job(asset, "ASSET"),
            "inputs": inputs,
            "outputs": outputs,
        }))
    }

    fn job(&self, name: &str, job_type: &str) -> Value {
        json!({
            "namespace": self.config.namespace,
            "name": name,
            "facets": {
                "jobType": facet_with(
                    &format!("{FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"),
                    json!({ "processingType": "BATCH", "integration": "ROBO_ASSETS", "jobType": job_type }),
                ),
            },
        })
    }

    fn dataset(&self, asset: &str, version: Option<&str>) -> Value {
        let mut facets = Map::new();
        facets.insert(
            "dataSource".into(),
            facet_with(
                &format!("{FACETS}/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"),
                json!({ "name": self.config.dataset_namespace, "uri": self.config.dataset_namespace }),
            ),
        );
        if let Some(version) = version {
            facets.insert(
                "version".into(),
                facet_with(
                    &format!("{FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"),
                    json!({ "datasetVersion": version }),
                ),
            );
        }
        json!({ "namespace": self.config.dataset_namespace, "name": asset, "facets": facets })
    }
}

/// A partition as a subset condition: one partition, its key as the identifier and its value
/// per dimension (`{"month": "2025-12", "realm": "123"}`; a one-dimensional key is the
/// dimension `partition`). None for an unpartitioned asset.
fn subset(def: Option<&PartitionsDef>, key: &str) -> Option<Value> {
    if key.is_empty() {
        return None;
    }
    let mut dimensions = Map::new();
    match def {
        Some(PartitionsDef::Multi(m)) => {
            for (dim, value) in m.dimensions().iter().zip(m.split(key).ok()?) {
                dimensions.insert(dim.name.clone(), value.into());
            }
        }
        _ => {
            dimensions.insert("partition".into(), key.into());
        }
    }
    Some(json!({ "type": "partition", "partitions": [{ "identifier": key, "dimensions": dimensions }] }))
}

/// The schema facet's fields from the stored Parquet schema (`{"fields": [{name, type}]}`).
fn schema_fields(schema: &Value) -> Option<Vec<Value>> {
    let fields = schema.get("fields")?.as_array()?;
    Some(
        fields
            .iter()
            .filter_map(|f| {
                let name = f.get("name")?.as_str()?;
                let mut field = json!({ "name": name });
                if let Some(t) = f.get("type").and_then(Value::as_str) {
                    field["type"] = t.into();
                }
                Some(field)
            })
            .collect(),
    )
}

pub use crate::delivery::{SendError, Transport, deliverer_name};

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    /// Events delivered.
    pub delivered: usize,
    /// Events the receiver refused for good (marked, not retried).
    pub rejected: usize,
    /// The failure that stopped the pass, if one did: the event stays pending.
    pub stopped: Option<String>,
    /// Another process holds the delivery lease: this pass sent nothing more.
    pub busy: bool,
}

/// Events rendered and sent per page; the delivery lease is renewed before each.
const PER_PAGE: i64 = 200;

/// Delivers pending events in id order until none is left or one fails, as `owner`, while it
/// holds the one delivery lease (another process delivering: nothing is sent, `report.busy`).
pub async fn ship_pending(
    renderer: &Renderer<'_>,
    transport: &dyn Transport,
    owner: &str,
) -> Result<ShipReport, lineage::Error> {
    let store = renderer.store;
    let mut report = ShipReport::default();
    loop {
        if !crate::delivery::hold_lease(store, Delivery::Openlineage, owner).await? {
            report.busy = true;
            return Ok(report);
        }
        let pending = store.outbox_pending(PER_PAGE).await?;
        if pending.is_empty() {
            return Ok(report);
        }
        for e in &pending {
            let event = renderer.render(e).await?;
            match transport.send(&event).await {
                Ok(()) => {
                    crate::failpoint::hit("openlineage.sent");
                    store.outbox_delivered(&[e.id], Utc::now(), None).await?;
                    crate::metrics::global().openlineage_sent("delivered");
                    report.delivered += 1;
                }
                Err(SendError::Rejected(why)) => {
                    tracing::warn!(
                        message = "The OpenLineage receiver refused an event; it is marked and not sent again.",
                        outbox_id = e.id,
                        run_id = %e.run_id,
                        error = %why,
                    );
                    store.outbox_delivered(&[e.id], Utc::now(), Some(&why)).await?;
                    crate::metrics::global().openlineage_sent("rejected");
                    report.rejected += 1;
                }
                Err(SendError::Retry(why)) => {
                    store.outbox_delivery_failed(e.id, &why).await?;
                    crate::metrics::global().openlineage_sent("failed");
                    report.stopped = Some(why);
                    return Ok(report);
                }
            }
        }
    }
}

/// Delivers events as they are written until `cancel`: a pass every `interval` (while another
/// process holds the delivery lease, it only checks), and after a failed pass a jittered backoff
/// (up to a minute) before the next.
pub async fn run_shipper(
    defs: Definitions,
    store: Arc<dyn LineageStore>,
    config: OpenLineageConfig,
    transport: Arc<dyn Transport>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let owner = deliverer_name();
    crate::delivery::run_loop("openlineage", "OpenLineage", interval, cancel, || async {
        let renderer = Renderer { defs: &defs, store: &*store, config: &config };
        let report = ship_pending(&renderer, &*transport, &owner).await?;
        if report.delivered > 0 {
            tracing::debug!(message = "OpenLineage events delivered.", delivered = report.delivered);
        }
        Ok(report.stopped)
    })
    .await;
}
