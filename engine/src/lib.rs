//! The asset engine: definitions, partitions, the graph, the planner and the executor.
//!
//! `engine` decides *what* to materialize and runs it. It never opens a connection or a socket:
//! it reaches facts only through [`lineage::LineageStore`] and data only through the
//! [`IoManager`] port it defines, which `resources` implements. The planner is pure; time comes
//! from an injected [`Clock`].
#![warn(missing_docs)]

pub mod alert;
pub mod automation;
pub mod backfill;
pub mod context;
pub mod definition;
pub mod delivery;
pub mod exec;
pub mod failpoint;
pub mod graph;
pub mod io;
pub mod mapping;
pub mod metrics;
pub mod openlineage;
pub mod partition;
pub mod plan;
pub mod retention;
pub mod retry;
pub mod selection;
pub mod staleness;
pub mod status;
pub mod tz;
pub mod worker;

pub use context::{AssetContext, Clock, FixedClock, Inputs, LogLevel, ResourceError, Resources, StepLog, SystemClock};
pub use definition::{
    AssetBuilder, AssetDef, AssetDep, AssetError, AssetKey, CheckResult, Definitions, FreshnessPolicy, NotRetryable,
    Output, Severity, asset,
};
pub use exec::{ExecEvent, Executor, NoObserver, Observer, RunConfig, RunOutcome, StepOutcome, StepStatus};
pub use graph::{AssetGraph, AssetId, DefinitionsError, LookupError};
pub use io::{IoError, IoManager, OutputContext, StoredOutput};
pub use mapping::PartitionMapping;
pub use partition::{Cadence, PartitionKeyError, PartitionsContext, PartitionsDef, TimeWindow};
pub use plan::{LineageSnapshot, PartitionSpec, Plan, PlanError, PlanOptions, Step};
pub use retry::RetryPolicy;
pub use selection::SelectionError;
pub use worker::{Until, WorkerConfig, WorkerStats, is_dead_local_worker, release_dead_local_workers, run_worker};
