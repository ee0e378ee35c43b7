//! What a compute function is handed: its partition, its inputs, resources, and the clock.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use lineage::{InputVersion, RunId};
use tokio_util::sync::CancellationToken;

use crate::definition::{AssetError, AssetKey};
use crate::io::IoManager;
use crate::partition::TimeWindow;

/// The source of "now", injected so tests and simulations control time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A resource key that no resource was bound to, or bound with another type.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resource {key:?} is not bound{detail}")]
pub struct ResourceError {
    /// The key asked for.
    pub key: String,
    /// What went wrong beyond absence.
    pub detail: String,
}

/// Resources by key (Dagster's resource keys): configured once by the binary, handed to every
/// compute function. Assets ask for a key and a trait-object type, never a concrete type.
#[derive(Clone, Default)]
pub struct Resources {
    map: HashMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// The keys an asset declared (`.requires(..)`), when these are handed to its compute
    /// function: any other key is refused with the fix, so a deployment's start-up check of
    /// declared keys covers every key an asset uses.
    declared: Option<Arc<[String]>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.map.keys().collect();
        keys.sort();
        f.debug_struct("Resources").field("keys", &keys).finish()
    }
}

impl Resources {
    /// Binds `key` to `value` (e.g. an `Arc<dyn AppDb>`).
    pub fn with<T: Any + Send + Sync>(mut self, key: &'static str, value: T) -> Resources {
        self.map.insert(key, Arc::new(value));
        self
    }

    /// Binds `key` to a value already boxed as `Any` (what [`Resources::with`] stores).
    pub fn insert(&mut self, key: &'static str, value: Arc<dyn Any + Send + Sync>) {
        self.map.insert(key, value);
    }

    /// Whether `key` is bound.
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// These resources as one asset sees them: only the keys it declared.
    pub fn declared_by(&self, keys: &[String]) -> Resources {
        Resources { map: self.map.clone(), declared: Some(keys.into()) }
    }

    /// The resource bound to `key`, as `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self, key: &str) -> Result<T, ResourceError> {
        if let Some(declared) = &self.declared
            && !declared.iter().any(|k| k == key)
        {
            return Err(ResourceError {
                key: key.to_owned(),
                detail: format!(" for this asset: declare it with .requires({key:?}) in its definition"),
            });
        }
        let value = self.map.get(key).ok_or_else(|| ResourceError { key: key.to_owned(), detail: String::new() })?;
        value
            .downcast_ref::<T>()
            .cloned()
            .ok_or_else(|| ResourceError { key: key.to_owned(), detail: format!(" as {}", std::any::type_name::<T>()) })
    }
}

/// The inputs of one step: for each upstream asset, the partitions and versions it reads.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub(crate) by_asset: Vec<(AssetKey, Vec<InputVersion>)>,
}

impl Inputs {
    /// Every input version, ordered by asset then partition order.
    pub fn versions(&self) -> impl Iterator<Item = &InputVersion> {
        self.by_asset.iter().flat_map(|(_, v)| v.iter())
    }

    /// The partitions of `upstream` this step reads.
    pub fn partitions_of(&self, upstream: &str) -> Vec<String> {
        self.find(upstream).map(|(_, v)| v.iter().map(|i| i.partition_key.clone()).collect()).unwrap_or_default()
    }

    fn find(&self, upstream: &str) -> Option<(&AssetKey, &[InputVersion])> {
        self.by_asset
            .iter()
            .find(|(k, _)| k.as_str() == upstream || k.name() == upstream)
            .map(|(k, v)| (k, v.as_slice()))
    }
}

/// The context of one attempt at one (asset, partition).
#[derive(Clone)]
pub struct AssetContext {
    /// The asset.
    pub key: AssetKey,
    /// The partition (`""` when unpartitioned).
    pub partition_key: String,
    /// The partition's time window, for time-window partitions.
    pub time_window: Option<TimeWindow>,
    /// The run.
    pub run_id: RunId,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// The upstream versions this step reads (recorded with the materialization).
    pub inputs: Arc<Inputs>,
    /// Resources by key.
    pub resources: Resources,
    /// Canceled when the run is canceled; long computations should watch it.
    pub cancel: CancellationToken,
    /// Lines for the run's event log: `ctx.log.info(format!("billed {n} tenants"))`.
    pub log: StepLog,
    pub(crate) io: Arc<dyn IoManager>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: Arc<dyn lineage::LineageStore>,
}

impl std::fmt::Debug for AssetContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetContext")
            .field("key", &self.key)
            .field("partition_key", &self.partition_key)
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl AssetContext {
    /// The value of one dimension of a multi-dimensional partition key: `ctx.dimension("realm")`
    /// is `Some("123")` for `month=2025-12|realm=123`.
    pub fn dimension(&self, name: &str) -> Option<&str> {
        crate::partition::multi::dimension_value(&self.partition_key, name)
    }

    /// This partition's current materialization, with its metadata: where an incremental
    /// asset left off (Plaid's sync cursor is metadata of the materialization that wrote the
    /// changes up to it, so both are recorded in one transaction, and a failed or killed attempt
    /// leaves the previous one current). `None` before the first and after a wipe. One read,
    /// only when asked.
    pub async fn previous(&self) -> Result<Option<lineage::MaterializationRecord>, AssetError> {
        let state = self
            .store
            .partition_states_of(&[(self.key.to_string(), self.partition_key.clone())])
            .await?
            .pop()
            .flatten();
        match state.and_then(|s| s.current_materialization_id) {
            Some(id) => Ok(self.store.materialization(id).await?),
            None => Ok(None),
        }
    }

    /// This partition's current output, for an incremental asset that builds on it (Plaid's
    /// current set folds new changes into the previous set): `None` when there is nothing to
    /// build on, i.e. no current materialization, or its stored output is not the recorded
    /// version (a run that did not finish rewrote it in place), so the asset rebuilds from its
    /// source instead of trusting bytes nobody recorded.
    pub async fn load_previous(&self) -> Result<Option<(lineage::MaterializationRecord, RecordBatch)>, AssetError> {
        let Some(previous) = self.previous().await? else { return Ok(None) };
        if previous.storage_uri.is_none() {
            return Ok(None);
        }
        let (batch, version) = self.io.load(&self.key, &self.partition_key).await.map_err(|e| {
            format!("loading the previous output of {} partition {:?}: {e}", self.key, self.partition_key)
        })?;
        if version != previous.data_version {
            tracing::warn!(
                message = "The stored output is not the recorded version; rebuilding.",
                asset = %self.key,
                partition = %self.partition_key
            );
            return Ok(None);
        }
        Ok(Some((previous, batch)))
    }

    /// Loads every partition of `upstream` this step reads, in partition order.
    pub async fn load(&self, upstream: &str) -> Result<Vec<(String, RecordBatch)>, AssetError> {
        let (key, versions) =
            self.inputs.find(upstream).ok_or_else(|| format!("asset {} does not depend on {upstream:?}", self.key))?;
        let keys: Vec<String> = versions.iter().map(|input| input.partition_key.clone()).collect();
        let loaded = self.io.load_many(key, &keys).await;
        if loaded.len() != keys.len() {
            return Err(format!(
                "the IO manager ({}) gave {} results for {} partitions of {key}",
                self.io.describe(),
                loaded.len(),
                keys.len()
            )
            .into());
        }
        let mut out = Vec::with_capacity(versions.len());
        for (input, loaded) in versions.iter().zip(loaded) {
            let (batch, version) =
                loaded.map_err(|e| format!("loading {key} partition {:?}: {e}", input.partition_key))?;
            // Outputs are stored in place; one rewritten by a run that died before recording it
            // no longer holds the recorded version. Refuse to read it rather than record a lie.
            if version != input.data_version {
                return Err(format!(
                    "the stored output of {key} partition {:?} is not the recorded version \
                     (file has {}, lineage has {}): a run that did not finish rewrote it; \
                     re-materialize {key} for that partition",
                    input.partition_key,
                    &version[..12.min(version.len())],
                    &input.data_version[..12.min(input.data_version.len())],
                )
                .into());
            }
            out.push((input.partition_key.clone(), batch));
        }
        Ok(out)
    }

    /// The resource bound to `key`.
    pub fn resource<T: Any + Send + Sync + Clone>(&self, key: &str) -> Result<T, ResourceError> {
        self.resources.get(key)
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// How serious a line a compute function logs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum LogLevel {
    /// Detail for whoever debugs the asset.
    Debug,
    /// What happened (`billed 3 tenants`).
    Info,
    /// Something a person should look at; the step still succeeded.
    Warn,
    /// Something went wrong (the step usually fails too).
    Error,
}

/// The most lines one attempt records; later ones are counted, and the count is recorded.
pub const MAX_STEP_LOG_LINES: usize = 1_000;

/// The most characters of one line that are recorded; the rest is cut with `…`.
pub const MAX_STEP_LOG_CHARS: usize = 4_096;

/// A compute function's logger (`ctx.log.info(..)`): its lines become `step_message` events in
/// the run's event log (`robo-assets runs logs RUN --asset A`), recorded in the transaction that
/// ends the attempt, with its materialization or its failure, so a worker that lost its lease
/// records none of them. Each line is also a `tracing` event of the process. At most
/// [`MAX_STEP_LOG_LINES`] lines of [`MAX_STEP_LOG_CHARS`] characters are kept per attempt.
#[derive(Clone)]
pub struct StepLog {
    lines: Arc<std::sync::Mutex<Lines>>,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Lines {
    kept: Vec<(DateTime<Utc>, LogLevel, String)>,
    dropped: usize,
}

impl std::fmt::Debug for StepLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepLog").finish_non_exhaustive()
    }
}

impl StepLog {
    /// An empty log whose lines are stamped by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> StepLog {
        StepLog { lines: Default::default(), clock }
    }

    /// Logs `message` at `level`.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let mut message: String = message.into();
        if message.chars().count() > MAX_STEP_LOG_CHARS {
            message = message.chars().take(MAX_STEP_LOG_CHARS).collect::<String>() + "…";
        }
        // The run's event log keeps every line (`runs logs RUN --asset A`); the console shows
        // warnings and errors, and the rest at RUST_LOG=debug, so a 744-step backfill does not
        // print 744 lines of routine news.
        match level {
            LogLevel::Debug | LogLevel::Info => tracing::debug!(text = %message, "Step message."),
            LogLevel::Warn => tracing::warn!(text = %message, "Step message."),
            LogLevel::Error => tracing::error!(text = %message, "Step message."),
        }
        let now = self.clock.now();
        // No await happens under this lock.
        let mut lines = self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.kept.len() < MAX_STEP_LOG_LINES {
            lines.kept.push((now, level, message));
        } else {
            lines.dropped += 1;
        }
    }

    /// Logs at [`LogLevel::Debug`].
    pub fn debug(&self, message: impl Into<String>) {
        self.log(LogLevel::Debug, message);
    }

    /// Logs at [`LogLevel::Info`].
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at [`LogLevel::Warn`].
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message);
    }

    /// Logs at [`LogLevel::Error`].
    pub fn error(&self, message: impl Into<String>) {
        self.log(LogLevel::Error, message);
    }

    /// Takes the lines logged so far as `step_message` events of (`run`, `asset`, `partition`),
    /// with a last line counting those over [`MAX_STEP_LOG_LINES`].
    pub fn take_events(&self, run: RunId, asset: &str, partition: &str) -> Vec<lineage::RunEvent> {
        let Lines { kept, dropped } =
            std::mem::take(&mut *self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut events: Vec<lineage::RunEvent> =
            kept.into_iter().map(|(ts, level, message)| event(run, ts, asset, partition, level, message)).collect();
        if dropped > 0 {
            let message = format!("{dropped} more lines were logged; an attempt records at most {MAX_STEP_LOG_LINES}");
            events.push(event(run, self.clock.now(), asset, partition, LogLevel::Warn, message));
        }
        events
    }
}

fn event(
    run: RunId,
    ts: DateTime<Utc>,
    asset: &str,
    partition: &str,
    level: LogLevel,
    message: String,
) -> lineage::RunEvent {
    let mut e = lineage::RunEvent::step(run, ts, lineage::EventKind::StepMessage, asset, partition, message);
    e.body = serde_json::json!({ "level": <&'static str>::from(level) });
    e
}
