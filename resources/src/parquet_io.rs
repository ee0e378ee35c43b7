//! The Parquet IO manager: the engine's `IoManager` port over any [`ObjectStore`].
//!
//! Layout: `{asset}/{partition}.parquet` (`{asset}/unpartitioned.parquet` without partitions);
//! a multi-dimensional key is Hive-style, one directory per dimension:
//! `month=2025-12|realm=123` is `{asset}/month=2025-12/realm=123/data.parquet`, so DuckDB, polars
//! and pyarrow read a whole asset with hive partitioning and get `month` and `realm` as columns
//! (they read `key=value` from directory names only, never from a file name).
//! Files are snappy-compressed Parquet (the pandas/pyarrow default) that DuckDB, pandas and polars
//! read; snappy over zstd because decoding many small hourly files is dominated by codec set-up
//! (BENCHMARKS.md: 21 ms vs 15 ms for a bill over 24 hours). Encoding and hashing
//! run on the blocking pool.
//!
//! Provenance: every file's key-value metadata says who wrote it ([`PROVENANCE_KEYS`]:
//! `robo_assets.asset`, `robo_assets.partition`, `robo_assets.code_version`,
//! `robo_assets.run_id`), from the [`OutputContext`] the worker hands [`IoManager::store`]; assets
//! do nothing for it. Tables read back never carry those keys. The data version leaves the
//! provenance out ([`data_version`]): blake3 over the bytes before the footer (every page of
//! every column) and the footer's other key-value pairs (the Arrow schema with its metadata),
//! so the same table stored by another run has the same version.

use std::sync::Arc;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use engine::{AssetKey, IoError, IoManager, OutputContext, StoredOutput};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::object_store::{ObjectStore, validate_key};

/// Writes outputs as Parquet files into an object store.
#[derive(Clone)]
pub struct ParquetIoManager {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for ParquetIoManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetIoManager").field("store", &self.store.describe()).finish()
    }
}

/// The object key of (asset, partition).
pub fn object_key(asset: &AssetKey, partition_key: &str) -> Result<String, IoError> {
    let name = if partition_key.is_empty() { "unpartitioned" } else { partition_key };
    let hive = name.contains('=');
    let segments: Vec<&str> = if hive { name.split('|').collect() } else { vec![name] };
    if segments.iter().any(|s| s.is_empty() || s.contains('/') || s.starts_with('.')) {
        return Err(format!(
            "partition key {partition_key:?} is not path-safe (a part is empty, contains '/' or starts with '.')"
        )
        .into());
    }
    let key = if hive {
        format!("{}/{}/data.parquet", asset.as_str(), segments.join("/"))
    } else {
        format!("{}/{name}.parquet", asset.as_str())
    };
    validate_key(&key)?;
    Ok(key)
}

/// The prefix of the provenance keys in a file's key-value metadata.
pub const PROVENANCE_PREFIX: &str = "robo_assets.";

/// The provenance keys every file carries: the asset, the partition key (`""` unpartitioned),
/// the asset's code version and the run id.
pub const PROVENANCE_KEYS: [&str; 4] =
    ["robo_assets.asset", "robo_assets.partition", "robo_assets.code_version", "robo_assets.run_id"];

/// The provenance of `output` as key-value pairs, in [`PROVENANCE_KEYS`] order.
pub fn provenance(output: &OutputContext) -> Vec<(String, String)> {
    let values = [
        output.asset.to_string(),
        output.partition_key.clone(),
        output.code_version.clone(),
        output.run_id.to_string(),
    ];
    PROVENANCE_KEYS.iter().zip(values).map(|(k, v)| ((*k).to_owned(), v)).collect()
}

/// Encodes a batch as snappy Parquet with `provenance` in the file's key-value metadata (the
/// batch's own schema metadata goes into the Arrow schema, as always); returns the bytes and the
/// schema as JSON.
pub fn encode(
    batch: &RecordBatch,
    provenance: &[(String, String)],
) -> Result<(Vec<u8>, serde_json::Value), parquet::errors::ParquetError> {
    let batch = without_provenance(batch.clone())?;
    let kv: Vec<KeyValue> = provenance.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata((!kv.is_empty()).then_some(kv))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    let schema = serde_json::json!({
        "fields": batch.schema().fields().iter().map(|f| serde_json::json!({
            "name": f.name(),
            "type": f.data_type().to_string(),
            "nullable": f.is_nullable(),
        })).collect::<Vec<_>>()
    });
    Ok((buf, schema))
}

/// `batch` with no provenance key in its schema metadata: a table read back and stored again
/// carries its new provenance only.
fn without_provenance(batch: RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    if !batch.schema().metadata().keys().any(|k| k.starts_with(PROVENANCE_PREFIX)) {
        return Ok(batch);
    }
    let mut schema = batch.schema().as_ref().clone();
    schema.metadata.retain(|k, _| !k.starts_with(PROVENANCE_PREFIX));
    // `with_schema` takes only a superset of the batch's schema; this one has less metadata.
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(schema), batch.columns().to_vec(), &options)
}

/// The data version of a Parquet file: blake3 (hex) over the bytes before its footer (the pages
/// of every column, their indexes) and the footer's key-value pairs other than the provenance,
/// sorted by key (the Arrow schema: names, types, schema metadata). A file without provenance
/// (written before files carried it) has the version it was recorded with: blake3 of all its
/// bytes.
pub fn data_version(bytes: &[u8], key_values: Option<&Vec<KeyValue>>) -> Result<String, IoError> {
    let key_values = key_values.map(Vec::as_slice).unwrap_or_default();
    if !key_values.iter().any(|kv| kv.key.starts_with(PROVENANCE_PREFIX)) {
        return Ok(blake3::hash(bytes).to_hex().to_string());
    }
    // The file ends with the footer, its length (u32 LE) and `PAR1`.
    let n = bytes.len();
    let footer = bytes
        .get(n.saturating_sub(8)..n.saturating_sub(4))
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .filter(|len| len + 8 <= n)
        .ok_or("not a Parquet file: no footer")?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..n - 8 - footer]);
    let mut kept: Vec<&KeyValue> = key_values.iter().filter(|kv| !kv.key.starts_with(PROVENANCE_PREFIX)).collect();
    kept.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in kept {
        let value = kv.value.as_deref().unwrap_or_default();
        for part in [kv.key.as_bytes(), value.as_bytes()] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Decodes Parquet bytes into one batch (without the provenance keys) and its data version.
pub fn decode(bytes: Bytes) -> Result<(RecordBatch, String), IoError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    let version = data_version(&bytes, builder.metadata().file_metadata().key_value_metadata())?;
    let mut schema = builder.schema().as_ref().clone();
    schema.metadata.retain(|k, _| !k.starts_with(PROVENANCE_PREFIX));
    let reader = builder.build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((arrow_select_concat(Arc::new(schema), &batches)?, version))
}

fn arrow_select_concat(schema: arrow_schema::SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, IoError> {
    match batches {
        [] => Ok(RecordBatch::new_empty(schema)),
        // The reader's batches lack the schema's metadata (key-value pairs a writer put there);
        // give them the file's schema back.
        [one] => Ok(one.clone().with_schema(schema)?),
        many => {
            // Large outputs come back in several batches; concatenate them column by column.
            let columns = (0..schema.fields().len())
                .map(|i| {
                    let arrays: Vec<&dyn arrow_array::Array> = many.iter().map(|b| b.column(i).as_ref()).collect();
                    arrow_select::concat::concat(&arrays)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema, columns)?)
        }
    }
}

/// The fewest files one blocking task decodes when a load is split across cores: a small file
/// decodes in tens of microseconds, about what a hand-off to another thread costs.
const DECODES_PER_TASK: usize = 32;

impl ParquetIoManager {
    /// An IO manager writing into `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> ParquetIoManager {
        ParquetIoManager { store }
    }
}

#[async_trait]
impl IoManager for ParquetIoManager {
    async fn store(&self, output: &OutputContext, table: &RecordBatch) -> Result<StoredOutput, IoError> {
        let key = object_key(&output.asset, &output.partition_key)?;
        let (batch, provenance) = (table.clone(), provenance(output));
        let (bytes, schema, data_version) = tokio::task::spawn_blocking(move || {
            let (bytes, schema) = encode(&batch, &provenance)?;
            let bytes = Bytes::from(bytes);
            // The version is read from the file as a reader would read it (`decode`).
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes)?;
            let version = data_version(&bytes, metadata.file_metadata().key_value_metadata())?;
            Ok::<_, IoError>((bytes, schema, version))
        })
        .await??;
        let n_bytes = bytes.len() as u64;
        let uri = self.store.put(&key, bytes).await?;
        Ok(StoredOutput { uri, bytes: n_bytes, rows: table.num_rows() as u64, schema, data_version })
    }

    async fn load(&self, asset: &AssetKey, partition_key: &str) -> Result<(RecordBatch, String), IoError> {
        let key = object_key(asset, partition_key)?;
        let bytes = self.store.get(&key).await?;
        tokio::task::spawn_blocking(move || decode(bytes)).await?
    }

    /// The objects are read with [`ObjectStore::get_many`] (one blocking task for local files),
    /// then decoded in as few blocking tasks as keep the cores busy: one for a bill's 24 hours,
    /// one per core for a month of them.
    async fn load_many(
        &self,
        asset: &AssetKey,
        partition_keys: &[String],
    ) -> Vec<Result<(RecordBatch, String), IoError>> {
        let keys: Vec<Result<String, IoError>> = partition_keys.iter().map(|p| object_key(asset, p)).collect();
        let valid: Vec<String> = keys.iter().filter_map(|key| key.as_ref().ok().cloned()).collect();
        let mut read = self.store.get_many(&valid).await.into_iter();
        let fetched: Vec<Result<Bytes, IoError>> = keys
            .into_iter()
            .map(|key| {
                key?;
                match read.next() {
                    Some(bytes) => Ok(bytes?),
                    None => Err(format!("{} gave fewer objects than keys", self.store.describe()).into()),
                }
            })
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let chunk = fetched.len().div_ceil(cores).max(DECODES_PER_TASK);
        let mut tasks = Vec::new();
        let mut fetched = fetched.into_iter();
        loop {
            let part: Vec<_> = fetched.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let n = part.len();
            let task =
                tokio::task::spawn_blocking(move || part.into_iter().map(|bytes| decode(bytes?)).collect::<Vec<_>>());
            tasks.push((n, task));
        }
        let mut out = Vec::with_capacity(partition_keys.len());
        for (n, task) in tasks {
            match task.await {
                Ok(decoded) => out.extend(decoded),
                // A decoder that panicked (a malformed file) fails the files of its task, each
                // with the panic, as an error of the step rather than a panic of it.
                Err(e) => out.extend((0..n).map(|_| Err(format!("decoding failed: {e}").into()))),
            }
        }
        out
    }

    fn describe(&self) -> String {
        format!("parquet in {}", self.store.describe())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::object_store::LocalObjectStore;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("graph_id", DataType::Utf8, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["g1", "g2"])), Arc::new(Int64Array::from(vec![10, 20_000_000_000]))],
        )
        .unwrap()
    }

    fn output(asset: &str, partition_key: &str) -> OutputContext {
        OutputContext {
            asset: AssetKey::parse(asset).unwrap(),
            partition_key: partition_key.to_owned(),
            code_version: "7".to_owned(),
            run_id: lineage::RunId::new(),
        }
    }

    fn key_values(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes)).unwrap();
        let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        kv.into_iter().map(|kv| (kv.key, kv.value.unwrap_or_default())).collect()
    }

    /// `load_many` over `io`: 70 partitions stored with their own rows (more than one decoding
    /// task's worth), read back in another order around a missing partition and a key that is
    /// not path-safe, each answering as `load` answers it.
    pub(crate) async fn loads_many_as_one_at_a_time(io: &ParquetIoManager) {
        let asset = AssetKey::parse("usage_snapshot").unwrap();
        let hours: Vec<String> = (0..70).map(|h| format!("2025-12-{:02}T{:02}:00", 1 + h / 24, h % 24)).collect();
        let mut versions = std::collections::HashMap::new();
        for (i, hour) in hours.iter().enumerate() {
            let rows = batch().slice(0, 1 + i % 2);
            versions
                .insert(hour.clone(), (rows.clone(), io.store(&output("usage_snapshot", hour), &rows).await.unwrap()));
        }
        let mut keys: Vec<String> = hours.iter().rev().cloned().collect();
        keys.insert(10, "2025-12-31T23:00".to_owned());
        keys.insert(40, "../escape".to_owned());
        let loaded = io.load_many(&asset, &keys).await;
        assert_eq!(loaded.len(), keys.len());
        for (key, got) in keys.iter().zip(&loaded) {
            match versions.get(key) {
                Some((rows, stored)) => {
                    let (batch, version) = got.as_ref().unwrap();
                    assert_eq!((batch, version), (rows, &stored.data_version), "{key}");
                    assert_eq!(io.load(&asset, key).await.unwrap(), (batch.clone(), version.clone()), "{key}");
                }
                None => {
                    let (many, one) = (got.as_ref().unwrap_err().to_string(), io.load(&asset, key).await.unwrap_err());
                    assert_eq!(many, one.to_string(), "{key}: the error load gives");
                }
            }
        }
        assert!(loaded[10].as_ref().unwrap_err().to_string().contains("2025-12-31T23:00.parquet"));
        assert!(loaded[40].as_ref().unwrap_err().to_string().contains("not path-safe"));
        assert!(io.load_many(&asset, &[]).await.is_empty());
    }

    /// A file larger than the reader's batch (1,024 rows) comes back whole, its batches
    /// concatenated, with the same values and version as stored.
    #[tokio::test]
    async fn a_file_of_several_batches_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let io = ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path())));
        let n = 5_000;
        let table = RecordBatch::try_new(
            batch().schema(),
            vec![
                Arc::new(StringArray::from((0..n).map(|i| format!("g{}", i % 97)).collect::<Vec<_>>())),
                Arc::new(Int64Array::from((0..n as i64).map(|i| i * 1_000_003).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let stored = io.store(&output("usage_snapshot", "2025-12-15T02:00"), &table).await.unwrap();
        let asset = AssetKey::parse("usage_snapshot").unwrap();
        let (back, version) = io.load(&asset, "2025-12-15T02:00").await.unwrap();
        assert_eq!((back, version), (table, stored.data_version));
    }

    #[tokio::test]
    async fn many_local_partitions_load_as_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        loads_many_as_one_at_a_time(&ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path())))).await;
    }

    #[tokio::test]
    async fn stored_parquet_reads_back_with_the_same_values_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let io = ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path())));
        let first = output("usage_snapshot", "2025-12-15T02:00");
        let stored = io.store(&first, &batch()).await.unwrap();
        let path = dir.path().join("usage_snapshot/2025-12-15T02:00.parquet");
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(stored.bytes, on_disk.len() as u64);
        assert_eq!(stored.rows, 2);
        assert_eq!(stored.schema["fields"][1]["type"], "Int64");
        assert_eq!(&on_disk[..4], b"PAR1");

        let (back, version) = io.load(&first.asset, "2025-12-15T02:00").await.unwrap();
        assert_eq!(back, batch(), "the provenance is not part of the table read back");
        assert_eq!(version, stored.data_version);

        // Another run stores the same table: other bytes (its run id), the same version.
        let second = output("usage_snapshot", "2025-12-15T02:00");
        let again = io.store(&second, &batch()).await.unwrap();
        let rewritten = std::fs::read(&path).unwrap();
        assert_ne!(rewritten, on_disk);
        assert_eq!(again.data_version, stored.data_version, "same table, same version, whoever stored it");
        assert_eq!(key_values(&rewritten)["robo_assets.run_id"], second.run_id.to_string());

        // Other rows, another version; a byte changed in a page, another version on load.
        let other = batch().slice(0, 1);
        assert_ne!(io.store(&second, &other).await.unwrap().data_version, stored.data_version);
        let mut flipped = rewritten.clone();
        flipped[4..rewritten.len() / 2].iter_mut().for_each(|b| *b ^= 0xff);
        let damaged = data_version(
            &flipped,
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(rewritten.clone()))
                .unwrap()
                .metadata()
                .file_metadata()
                .key_value_metadata(),
        )
        .unwrap();
        assert_ne!(damaged, stored.data_version);
    }

    #[tokio::test]
    async fn every_file_says_who_wrote_it_in_its_key_value_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let io = ParquetIoManager::new(Arc::new(LocalObjectStore::new(dir.path())));
        let out = output("qbo_balance_sheet", "month=2025-12|realm=123");
        io.store(&out, &batch()).await.unwrap();
        let kv = key_values(
            &std::fs::read(dir.path().join("qbo_balance_sheet/month=2025-12/realm=123/data.parquet")).unwrap(),
        );
        let provenance: Vec<(&str, &str)> =
            PROVENANCE_KEYS.iter().map(|k| (*k, kv.get(*k).map_or("(missing)", String::as_str))).collect();
        let run = out.run_id.to_string();
        assert_eq!(
            provenance,
            [
                ("robo_assets.asset", "qbo_balance_sheet"),
                ("robo_assets.partition", "month=2025-12|realm=123"),
                ("robo_assets.code_version", "7"),
                ("robo_assets.run_id", run.as_str()),
            ]
        );
        assert!(kv.contains_key("ARROW:schema"), "the Arrow schema is there too: {kv:?}");
    }

    #[test]
    fn one_table_has_one_version_whatever_order_its_metadata_was_given_in() {
        // The schema's metadata is hashed as the Arrow schema's footer entry holds it, so that
        // entry must not depend on the order keys were inserted (arrow keeps them sorted).
        let with_keys = |forwards: bool| {
            let mut keys: Vec<usize> = (0..12).collect();
            if !forwards {
                keys.reverse();
            }
            let mut metadata = std::collections::HashMap::new();
            for k in keys {
                metadata.insert(format!("plaid.key{k}"), format!("value {k}"));
            }
            let batch = batch();
            batch.clone().with_schema(Arc::new(batch.schema().as_ref().clone().with_metadata(metadata))).unwrap()
        };
        let prov = provenance(&output("plaid_transactions", "item-1"));
        let versions: std::collections::BTreeSet<String> = [true, false, true, false]
            .into_iter()
            .map(|forwards| decode(Bytes::from(encode(&with_keys(forwards), &prov).unwrap().0)).unwrap().1)
            .collect();
        assert_eq!(versions.len(), 1, "{versions:?}");
    }

    #[test]
    fn a_file_written_before_provenance_keeps_the_version_it_was_recorded_with() {
        // Files written before provenance were versioned by all their bytes; the lineage store
        // holds those versions, so reading them back must give the same.
        let (bytes, _) = encode(&batch(), &[]).unwrap();
        let (back, version) = decode(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(back, batch());
        assert_eq!(version, blake3::hash(&bytes).to_hex().to_string());
    }

    #[test]
    fn schema_metadata_survives_a_round_trip_and_is_part_of_the_version() {
        // Plaid's syncs say which sync they are in their schema metadata.
        let with_seq = |seq: &str| {
            let metadata = std::collections::HashMap::from([("plaid.sync_seq".to_owned(), seq.to_owned())]);
            let batch = batch();
            batch.clone().with_schema(Arc::new(batch.schema().as_ref().clone().with_metadata(metadata))).unwrap()
        };
        let prov = provenance(&output("plaid_transactions", "item-1"));
        let (bytes, _) = encode(&with_seq("3"), &prov).unwrap();
        let (back, version) = decode(Bytes::from(bytes)).unwrap();
        assert_eq!(back.schema().metadata()["plaid.sync_seq"], "3");
        assert_eq!(back, with_seq("3"));
        let (bytes, _) = encode(&with_seq("4"), &prov).unwrap();
        assert_ne!(decode(Bytes::from(bytes)).unwrap().1, version, "the sync it is belongs to the data");

        // A table read back and stored again carries its new provenance only.
        let mut stale = with_seq("3").schema().as_ref().clone();
        stale.metadata.insert("robo_assets.run_id".to_owned(), "an old run".to_owned());
        let (bytes, _) = encode(&with_seq("3").with_schema(Arc::new(stale)).unwrap(), &prov).unwrap();
        assert_eq!(key_values(&bytes)["robo_assets.run_id"], prov[3].1);
        assert_eq!(decode(Bytes::from(bytes)).unwrap().1, version);
    }

    #[test]
    fn partition_keys_that_are_not_path_safe_are_rejected() {
        let asset = AssetKey::parse("storage_bill").unwrap();
        assert!(object_key(&asset, "../../etc").is_err());
        assert!(object_key(&asset, "..").is_err());
        assert_eq!(object_key(&asset, "").unwrap(), "storage_bill/unpartitioned.parquet");
        assert_eq!(
            object_key(&asset, "month=2025-12|realm=123").unwrap(),
            "storage_bill/month=2025-12/realm=123/data.parquet"
        );
        assert!(object_key(&asset, "month=2025-12|..").is_err());
        assert!(object_key(&asset, "month=2025-12|").is_err());
    }
}
