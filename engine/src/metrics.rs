//! What this process observes, for Prometheus: one set of metrics per process, recorded by the
//! worker and the automation where things happen, and exposed by the binary (`/metrics`).
//!
//! Only what a process sees lives here (step durations, claim latency, retries, fenced-out
//! completions, settled leases, tick lag, sensor evaluations, store errors). What the queue
//! holds is shared by every process, so it is read from the store when scraped, not counted
//! here (`robo_assets_requests`, `robo_assets_runs`: see the binary's `metrics` module).
//!
//! Labels are bounded: asset keys, schedule and sensor names, outcomes and states come from the
//! deployment's definitions or from fixed sets; partition keys, run ids and pool members never
//! become labels.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// An asset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AssetLabel {
    /// The asset key.
    pub asset: String,
}

/// An asset and how its step ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepLabels {
    /// The asset key.
    pub asset: String,
    /// `succeeded`, `failed` (a failed attempt, retried or not), `canceled` or `skipped`.
    pub outcome: String,
}

/// Why a request's holder lost it, and the state the request was left in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SettledLabels {
    /// `lease_expired` (the reaper found the lease run out) or `holder_exited` (its process on
    /// this host was gone).
    pub cause: String,
    /// The request's state afterwards: `available` (reclaimable, retried), `failed`,
    /// `canceled`.
    pub state: String,
}

/// A schedule or sensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct InstigatorLabel {
    /// Its name.
    pub instigator: String,
}

/// How an OpenLineage delivery ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeliveryLabel {
    /// `delivered`, `rejected` (refused for good by the receiver) or `failed` (to be retried).
    pub outcome: String,
}

/// A part of this process that talks to the lineage store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ComponentLabel {
    /// `worker`, `daemon`, `metrics` (a scrape) or `openlineage` (delivery).
    pub component: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds from 1 ms to about 4.7 hours: steps, waits and lags all fit.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

/// The process's metrics. Cloning shares them (every metric is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// How long each claimed step took, from claim to its recorded end, by asset and outcome.
    pub step_duration: HistogramFamily<StepLabels>,
    /// From when a request could first be claimed (submitted, due for retry, or its last
    /// upstream request finished) to its claim, by asset.
    pub claim_latency: HistogramFamily<AssetLabel>,
    /// Failed attempts that will be tried again, by asset.
    pub retries: Family<AssetLabel, Counter>,
    /// Completions refused because the worker had lost the lease (the fence held).
    pub fenced_completions: Counter,
    /// Requests whose holder was gone, settled by this process's reaper.
    pub settled: Family<SettledLabels, Counter>,
    /// How late a schedule tick was evaluated after its tick time.
    pub tick_lag: HistogramFamily<InstigatorLabel>,
    /// How long a sensor's evaluation took.
    pub sensor_evaluation: HistogramFamily<InstigatorLabel>,
    /// Lineage-store operations that failed (the loop that ran them started again).
    pub store_errors: Family<ComponentLabel, Counter>,
    /// OpenLineage events sent by this process, by outcome.
    pub openlineage_events: Family<DeliveryLabel, Counter>,
    /// Failure alerts sent by this process, by outcome (`sent`, `refused`, `failed`).
    pub alerts: Family<DeliveryLabel, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            step_duration: Family::new_with_constructor(seconds),
            claim_latency: Family::new_with_constructor(seconds),
            retries: Family::default(),
            fenced_completions: Counter::default(),
            settled: Family::default(),
            tick_lag: Family::new_with_constructor(seconds),
            sensor_evaluation: Family::new_with_constructor(seconds),
            store_errors: Family::default(),
            openlineage_events: Family::default(),
            alerts: Family::default(),
        }
    }

    /// Registers every metric, under the `robo_assets` prefix the registry was made with.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "step_duration",
            "Duration of each claimed step, from claim to its recorded end",
            Unit::Seconds,
            self.step_duration.clone(),
        );
        registry.register_with_unit(
            "claim_latency",
            "Time from when a request could first be claimed to its claim",
            Unit::Seconds,
            self.claim_latency.clone(),
        );
        registry.register("step_retries", "Failed attempts that will be tried again", self.retries.clone());
        registry.register(
            "fenced_completions",
            "Completions refused because the worker had lost the lease",
            self.fenced_completions.clone(),
        );
        registry.register(
            "requests_settled",
            "Requests whose holder was gone (lease expired, process exited), settled by this process",
            self.settled.clone(),
        );
        registry.register_with_unit(
            "schedule_tick_lag",
            "How late a schedule tick was evaluated after its tick time",
            Unit::Seconds,
            self.tick_lag.clone(),
        );
        registry.register_with_unit(
            "sensor_evaluation_duration",
            "Duration of a sensor's evaluation",
            Unit::Seconds,
            self.sensor_evaluation.clone(),
        );
        registry.register(
            "lineage_store_errors",
            "Lineage-store operations that failed; the loop that ran them started again",
            self.store_errors.clone(),
        );
        registry.register(
            "openlineage_events",
            "OpenLineage events this process sent, by outcome",
            self.openlineage_events.clone(),
        );
        registry.register("alerts", "Failure alerts this process posted, by outcome", self.alerts.clone());
    }

    /// Records a step's end.
    pub fn step_finished(&self, asset: &str, outcome: &str, took: Duration) {
        let labels = StepLabels { asset: asset.to_owned(), outcome: outcome.to_owned() };
        self.step_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Records an OpenLineage delivery's outcome.
    pub fn openlineage_sent(&self, outcome: &str) {
        self.openlineage_events.get_or_create(&DeliveryLabel { outcome: outcome.to_owned() }).inc();
    }

    /// Records a failure alert's delivery outcome.
    pub fn alert_sent(&self, outcome: &str) {
        self.alerts.get_or_create(&DeliveryLabel { outcome: outcome.to_owned() }).inc();
    }

    /// Records a failed lineage-store operation of `component`.
    pub fn store_error(&self, component: &str) {
        self.store_errors.get_or_create(&ComponentLabel { component: component.to_owned() }).inc();
    }
}

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}
