//! Materializations and the exact input versions they read.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{MaterializationId, RunId};

/// One upstream (asset, partition) version that a materialization read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputVersion {
    /// The upstream asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The upstream partition (`""` when unpartitioned).
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// The upstream materialization read, if it is known to the store.
    pub materialization_id: Option<MaterializationId>,
    /// The upstream data version read.
    pub data_version: String,
}

/// A materialization about to be recorded.
#[derive(Debug, Clone)]
pub struct NewMaterialization {
    /// The asset.
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The run that produced it.
    pub run_id: RunId,
    /// Which attempt of the step succeeded (1-based).
    pub attempt: i64,
    /// Content version: blake3 of the output bytes, or user-provided.
    pub data_version: String,
    /// Hash of the code version and the ordered input versions.
    pub logical_version: String,
    /// The asset's code version at the time.
    pub code_version: String,
    /// Every input read, in a stable order (asset, then partition).
    pub inputs: Vec<InputVersion>,
    /// blake3 over the ordered inputs, so wide fan-in compares in O(1).
    pub inputs_hash: String,
    /// Where the output lives (`file://…`, `s3://…`), if it has one.
    pub storage_uri: Option<String>,
    /// Output size in bytes.
    pub bytes: Option<i64>,
    /// Output rows.
    pub row_count: Option<i64>,
    /// Output schema (JSON).
    pub schema: Option<serde_json::Value>,
    /// User metadata (JSON object); never secrets.
    pub metadata: serde_json::Value,
    /// When the step started.
    pub started_at: DateTime<Utc>,
    /// When the output was stored.
    pub finished_at: DateTime<Utc>,
}

/// A recorded materialization.
#[derive(Debug, Clone, Serialize)]
pub struct MaterializationRecord {
    /// Its id (the global cursor).
    #[serde(rename = "materialization_id")]
    pub id: MaterializationId,
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// The run that produced it.
    pub run_id: RunId,
    /// Which attempt succeeded.
    pub attempt: i64,
    /// Content version.
    pub data_version: String,
    /// Logical version.
    pub logical_version: String,
    /// Code version.
    pub code_version: String,
    /// How many inputs it read.
    pub n_inputs: i64,
    /// blake3 over the ordered inputs.
    pub inputs_hash: String,
    /// Where the output lives.
    pub storage_uri: Option<String>,
    /// Output size in bytes.
    pub bytes: Option<i64>,
    /// Output rows.
    #[serde(rename = "rows")]
    pub row_count: Option<i64>,
    /// Output schema.
    pub schema: Option<serde_json::Value>,
    /// User metadata.
    pub metadata: serde_json::Value,
    /// Step start.
    pub started_at: DateTime<Utc>,
    /// Output stored.
    pub finished_at: DateTime<Utc>,
}

/// blake3 over the set of `(asset, partition)` input keys, without versions: equal for two
/// materializations that read the same partitions, in any order. A definition whose mappings now
/// give a different hash has had dependencies added or removed.
pub fn input_keys_hash<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut keys: Vec<(&str, &str)> = keys.into_iter().collect();
    keys.sort_unstable();
    let mut h = blake3::Hasher::new();
    for (asset, partition) in keys {
        h.update(asset.as_bytes());
        h.update(b"\x1f");
        h.update(partition.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}
