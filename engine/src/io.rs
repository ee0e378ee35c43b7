//! Ports for data: the [`IoManager`] that stores and loads asset outputs.
//!
//! The engine defines the port; `resources` implements it (Parquet on a local directory or S3).

use arrow_array::RecordBatch;
use async_trait::async_trait;

use crate::definition::AssetKey;

/// What an IO manager is told about the output it stores: which (asset, partition) it is, and
/// who made it. Dagster's `OutputContext`. The Parquet IO manager writes the provenance into the
/// file's key-value metadata, so a file found on its own says where it came from; it is never
/// part of the output's data version (re-materializing the same rows gives the same version).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputContext {
    /// The asset.
    pub asset: AssetKey,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The asset's code version when it computed this output.
    pub code_version: String,
    /// The run that computed it.
    pub run_id: lineage::RunId,
}

/// How many loads [`IoManager::load_many`] has in flight at once, by default (a bill reads 24
/// files, a monthly report hundreds).
pub const LOAD_CONCURRENCY: usize = 8;

/// The error of an IO manager: anything, boxed, shown to people as is.
pub type IoError = Box<dyn std::error::Error + Send + Sync>;

/// What storing an output produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutput {
    /// Where it lives (`file:///…`, `s3://bucket/…`).
    pub uri: String,
    /// Size of the stored bytes.
    pub bytes: u64,
    /// Rows in the table.
    pub rows: u64,
    /// The table's schema (JSON: field names, types, nullability).
    pub schema: serde_json::Value,
    /// The content's version: blake3, hex, of what the stored bytes hold, never of who wrote
    /// them (the provenance is left out), so the same table stored again has the same version.
    pub data_version: String,
}

/// Stores and loads asset outputs.
///
/// `store` must be atomic: after it returns, the object is complete; if it fails or is
/// dropped midway, no partial object is visible under the final name.
#[async_trait]
pub trait IoManager: Send + Sync + 'static {
    /// Stores the output of (asset, partition), replacing any previous one.
    async fn store(&self, output: &OutputContext, table: &RecordBatch) -> Result<StoredOutput, IoError>;

    /// Loads the stored output of (asset, partition), with the data version of the bytes read
    /// (blake3, hex), so the caller can check it is the version the lineage store recorded.
    async fn load(&self, asset: &AssetKey, partition_key: &str) -> Result<(RecordBatch, String), IoError>;

    /// Loads several partitions of one asset: one result per key, in the keys' order. The
    /// default runs [`load`](IoManager::load) for up to [`LOAD_CONCURRENCY`] keys at once; a
    /// manager whose loads cost less together (files read, then decoded, in one blocking task
    /// instead of a hand-off to another thread per file) overrides it.
    async fn load_many(
        &self,
        asset: &AssetKey,
        partition_keys: &[String],
    ) -> Vec<Result<(RecordBatch, String), IoError>> {
        use futures_util::StreamExt;
        // The futures are made first: a closure in the stream's type is not `Send` for every lifetime.
        let loads: Vec<_> = partition_keys.iter().map(|key| self.load(asset, key)).collect();
        futures_util::stream::iter(loads).buffered(LOAD_CONCURRENCY).collect().await
    }

    /// Describes where outputs go, for people (`local directory …`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}
