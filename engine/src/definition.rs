//! Asset definitions: the builder people write, and the validated [`Definitions`] value.
//!
//! Defining an asset reads like Dagster's `@asset`:
//!
//! ```ignore
//! asset("storage_bill")
//!     .group("billing")
//!     .code_version("2")
//!     .partitions(PartitionsDef::daily("2025-01-01"))
//!     .dep("usage_snapshot")
//!     .compute(|ctx| async move { bill(ctx).await })
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use serde::Serialize;

use crate::context::AssetContext;
use crate::graph::{AssetGraph, DefinitionsError};
use crate::mapping::PartitionMapping;
use crate::partition::PartitionsDef;
use crate::retry::RetryPolicy;

/// An asset key: `snake_case` segments joined by `/` (`billing/storage_bill`).
///
/// The last segment is the asset's name; it may stand for the key when it is unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AssetKey(String);

impl AssetKey {
    /// Parses and validates a key.
    pub fn parse(s: &str) -> Result<AssetKey, String> {
        let valid_segment = |seg: &str| {
            !seg.is_empty()
                && seg.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && seg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if s.split('/').all(valid_segment) {
            Ok(AssetKey(s.to_owned()))
        } else {
            Err(format!("invalid asset key {s:?}: use snake_case segments joined by '/', like billing/storage_bill"))
        }
    }

    /// The whole key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error an asset's compute function returns: anything, boxed.
pub type AssetError = Box<dyn std::error::Error + Send + Sync>;

/// An error that retrying cannot fix (a revoked credential, say): the step fails at once,
/// whatever its retry policy. Return it boxed as the [`AssetError`]; anything else is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotRetryable(pub String);

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The compute function of an asset.
pub type ComputeFn = Arc<dyn Fn(AssetContext) -> BoxFuture<Result<Output, AssetError>> + Send + Sync>;

/// What a compute function returns: a table (stored by the IO manager), metadata, and
/// optionally a data version of its own.
///
/// The data version of an output with a table is always blake3 of the stored bytes, so that a
/// reader can verify it read the recorded version; `data_version` applies to outputs without a
/// table (otherwise their version is the hash of their metadata).
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The table to store, if the asset has one.
    pub table: Option<RecordBatch>,
    /// Metadata recorded with the materialization (numbers, text, URLs, tables); never secrets.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// A user-provided data version, used only when there is no table.
    pub data_version: Option<String>,
    /// Asset check verdicts on this output; a failed `Error` check fails the step.
    pub checks: Vec<CheckResult>,
}

pub use lineage::Severity;

/// One asset check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// What a failure means.
    pub severity: Severity,
    /// Whether it passed.
    pub passed: bool,
    /// What it found (for a failure: what is wrong, with the numbers).
    pub message: String,
}

impl Output {
    /// An output holding `table`.
    pub fn table(table: RecordBatch) -> Output {
        Output { table: Some(table), ..Output::default() }
    }

    /// An output with no table; its data version is the hash of its metadata unless set.
    pub fn none() -> Output {
        Output::default()
    }

    /// Adds one asset check verdict.
    pub fn with_check(mut self, name: &str, severity: Severity, passed: bool, message: impl Into<String>) -> Output {
        self.checks.push(CheckResult { name: name.to_owned(), severity, passed, message: message.into() });
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<serde_json::Value>) -> Output {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the data version.
    pub fn with_data_version(mut self, version: impl Into<String>) -> Output {
        self.data_version = Some(version.into());
        self
    }
}

/// One declared upstream dependency.
#[derive(Debug, Clone)]
pub struct AssetDep {
    /// The key as written (full key or unique name); resolved when definitions are built.
    pub key: String,
    /// The mapping, or `None` to infer the default.
    pub mapping: Option<PartitionMapping>,
}

/// A complete asset definition.
#[derive(Clone)]
pub struct AssetDef {
    /// The key.
    pub key: AssetKey,
    /// What it is, for people.
    pub description: String,
    /// Its group (`billing`); `default` unless set.
    pub group: String,
    /// Who to ask about it.
    pub owners: Vec<String>,
    /// Free-form tags, selectable with `tag:k=v`.
    pub tags: BTreeMap<String, String>,
    /// Bumped by people when the logic changes; part of the logical version.
    pub code_version: String,
    /// Upstream dependencies.
    pub deps: Vec<AssetDep>,
    /// Its partitions, if any.
    pub partitions: Option<PartitionsDef>,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// A concurrency pool that limits how many of its steps run at once across the cluster.
    pub pool: Option<String>,
    /// The partition dimension the pool is kept per (`Some("realm")`: each realm has the
    /// pool's limit on its own); see [`AssetDef::request_pool`].
    pub pool_dimension: Option<String>,
    /// When its partitions are due; past that and not materialized, a partition is `late`.
    pub freshness: Option<FreshnessPolicy>,
    /// The resource keys its compute function asks for: a deployment that binds none of them is
    /// refused at start-up, naming the asset and the key.
    pub required_resources: Vec<String>,
    /// The compute function.
    pub compute: ComputeFn,
}

/// When an asset's data is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessPolicy {
    /// Each time-window partition is due this long after its window ends (`storage_bill` for
    /// day D by D+1 06:00: six hours).
    AfterWindowEnd(std::time::Duration),
    /// The latest partition (or the unpartitioned asset) must have been materialized within
    /// this long.
    MaxLag(std::time::Duration),
}

impl FreshnessPolicy {
    /// When the partition with `window_end` is due (`None` for a policy that does not use it).
    pub fn deadline(self, window_end: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            FreshnessPolicy::AfterWindowEnd(after) => Some(window_end + chrono::Duration::from_std(after).ok()?),
            FreshnessPolicy::MaxLag(_) => None,
        }
    }
}

impl AssetDef {
    /// The pool of a request for `partition_key`: the asset's pool, or with
    /// [`AssetBuilder::pool_per`] its member for the key's value of that dimension
    /// (`quickbooks[realm=123]`).
    pub fn request_pool(&self, partition_key: &str) -> Option<String> {
        let pool = self.pool.as_deref()?;
        Some(match self.pool_dimension.as_deref() {
            None => pool.to_owned(),
            Some(dim) => match crate::partition::multi::dimension_value(partition_key, dim) {
                Some(value) => lineage::pool_member(pool, dim, value),
                None => pool.to_owned(),
            },
        })
    }
}

impl fmt::Debug for AssetDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssetDef")
            .field("key", &self.key)
            .field("group", &self.group)
            .field("code_version", &self.code_version)
            .field("deps", &self.deps)
            .field("partitions", &self.partitions)
            .field("required_resources", &self.required_resources)
            .finish_non_exhaustive()
    }
}

/// Starts an asset definition. A malformed key is refused when the definitions are validated
/// ([`Definitions::new`]), naming it.
pub fn asset(key: &str) -> AssetBuilder {
    let key = AssetKey(key.to_owned());
    AssetBuilder {
        key,
        description: String::new(),
        group: "default".to_owned(),
        owners: Vec::new(),
        tags: BTreeMap::new(),
        code_version: "1".to_owned(),
        deps: Vec::new(),
        partitions: None,
        retry: RetryPolicy::default(),
        pool: None,
        pool_dimension: None,
        freshness: None,
        required_resources: Vec::new(),
    }
}

/// Builds an [`AssetDef`]; finish with [`AssetBuilder::compute`].
#[derive(Debug, Clone)]
#[must_use = "an asset is defined only once .compute(..) is called"]
pub struct AssetBuilder {
    key: AssetKey,
    description: String,
    group: String,
    owners: Vec<String>,
    tags: BTreeMap<String, String>,
    code_version: String,
    deps: Vec<AssetDep>,
    partitions: Option<PartitionsDef>,
    retry: RetryPolicy,
    pool: Option<String>,
    pool_dimension: Option<String>,
    freshness: Option<FreshnessPolicy>,
    required_resources: Vec<String>,
}

impl AssetBuilder {
    /// Declares a resource key its compute function asks for (`ctx.resource(key)`).
    pub fn requires(mut self, resource_key: &str) -> Self {
        self.required_resources.push(resource_key.to_owned());
        self
    }

    /// When its partitions are due (see [`FreshnessPolicy`]).
    pub fn freshness(mut self, policy: FreshnessPolicy) -> Self {
        self.freshness = Some(policy);
        self
    }

    /// What it is, for people.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }

    /// Its group.
    pub fn group(mut self, group: &str) -> Self {
        self.group = group.to_owned();
        self
    }

    /// Adds an owner.
    pub fn owner(mut self, owner: &str) -> Self {
        self.owners.push(owner.to_owned());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Its code version (default `"1"`).
    pub fn code_version(mut self, version: &str) -> Self {
        self.code_version = version.to_owned();
        self
    }

    /// Depends on `key` with the default partition mapping.
    pub fn dep(mut self, key: &str) -> Self {
        self.deps.push(AssetDep { key: key.to_owned(), mapping: None });
        self
    }

    /// Depends on `key` with an explicit partition mapping.
    pub fn dep_mapped(mut self, key: &str, mapping: PartitionMapping) -> Self {
        self.deps.push(AssetDep { key: key.to_owned(), mapping: Some(mapping) });
        self
    }

    /// Its partitions.
    pub fn partitions(mut self, def: PartitionsDef) -> Self {
        self.partitions = Some(def);
        self
    }

    /// Its retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Its concurrency pool: `robo-assets pools set POOL N` lets at most N of its steps run at
    /// once across every worker (a pool without a limit set is unlimited).
    pub fn pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.to_owned());
        self.pool_dimension = None;
        self
    }

    /// Its concurrency pool, kept per key of one dimension of its multi-dimensional partitions:
    /// `.pool_per("quickbooks", "realm")` lets at most N steps of *each realm* run at once, N
    /// being the limit of `quickbooks` (`robo-assets pools set quickbooks 10`: Intuit allows a
    /// realm 10 concurrent requests). The requests' pool is `quickbooks[realm=123]`.
    pub fn pool_per(mut self, pool: &str, dimension: &str) -> Self {
        self.pool = Some(pool.to_owned());
        self.pool_dimension = Some(dimension.to_owned());
        self
    }

    /// Finishes the definition with its compute function.
    pub fn compute<F, Fut>(self, f: F) -> AssetDef
    where
        F: Fn(AssetContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Output, AssetError>> + Send + 'static,
    {
        AssetDef {
            key: self.key,
            description: self.description,
            group: self.group,
            owners: self.owners,
            tags: self.tags,
            code_version: self.code_version,
            deps: self.deps,
            partitions: self.partitions,
            retry: self.retry,
            pool: self.pool,
            pool_dimension: self.pool_dimension,
            freshness: self.freshness,
            required_resources: self.required_resources,
            compute: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }
}

/// Every asset of a deployment, validated: keys unique, deps known, no cycles, mappings compatible.
#[derive(Debug, Clone)]
pub struct Definitions {
    graph: Arc<AssetGraph>,
}

impl Definitions {
    /// Validates `assets` into a graph; the error names every asset involved.
    pub fn new(assets: Vec<AssetDef>) -> Result<Definitions, DefinitionsError> {
        Ok(Definitions { graph: Arc::new(AssetGraph::build(assets)?) })
    }

    /// The validated asset graph.
    pub fn graph(&self) -> &AssetGraph {
        &self.graph
    }
}
