//! Automation: schedules and sensors that *request* materializations; they never run anything.
//!
//! A **schedule** is a cron expression in an IANA time zone naming a selection; each tick
//! requests, for every selected asset, its latest partition that exists at the tick time (so a
//! daily 02:00 tick requests yesterday, a monthly tick on the 1st the month that just started for
//! an asset whose month exists from its first day), plus missing upstream partitions. A
//! **sensor** is a polling function with a persisted cursor, a minimum interval and a timeout; it
//! returns requests (with keys) and dynamic partitions to add.
//!
//! Every evaluation becomes a tick committed with its requests in one transaction; the tick is
//! unique per (instigator, tick time), so two daemons on one database create one set of requests
//! per tick, and a sensor's cursor moves only with its tick. A schedule's first evaluation fires
//! its latest tick at or before now (once: its history is not caught up); after that, ticks
//! missed during downtime are caught up, at most `catch_up` back.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lineage::{InstigatorKind, InstigatorStatus, NewRun, NewTick, RunId, TickCommit, TickStatus, Trigger};

use crate::definition::{AssetError, BoxFuture};
use crate::exec::{Executor, plan_requests};
use crate::partition::PartitionsContext;
use crate::plan::{self, PlanOptions};
use crate::tz::Tz;
use crate::{AssetId, Resources};

/// Why a schedule or sensor definition is invalid.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// The cron expression does not parse.
    #[error("schedule {name}: {cron:?} is not a 5-field cron expression: {detail}")]
    Cron {
        /// The schedule.
        name: String,
        /// The expression.
        cron: String,
        /// What was wrong.
        detail: String,
    },
    /// The time zone is unknown.
    #[error("schedule {name}: {tz:?} is not an IANA time zone (e.g. America/New_York, UTC)")]
    TimeZone {
        /// The schedule.
        name: String,
        /// The zone.
        tz: String,
    },
}

/// A schedule.
#[derive(Clone)]
pub struct ScheduleDef {
    /// Its unique name.
    pub name: String,
    /// The cron expression, as written: private, since the full parse is made from it later
    /// ([`ScheduleDef::cron`] reads it).
    cron: String,
    /// Its time zone.
    pub tz: Tz,
    /// What it requests (the selection syntax).
    pub selection: String,
    /// How many of the latest time windows each tick requests (1: the one that just closed; 2:
    /// that one and the one before it again, for late adjustments).
    pub windows: usize,
    /// The expression parsed in full, on the first tick read (see [`check_cron`]).
    parsed: OnceLock<croner::Cron>,
}

impl std::fmt::Debug for ScheduleDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleDef").field("name", &self.name).field("cron", &self.cron).field("tz", &self.tz).finish()
    }
}

/// A schedule: `cron` (5 fields, strictly parsed) in time zone `tz`, requesting `selection`.
pub fn schedule(name: &str, cron: &str, tz: &str, selection: &str) -> Result<ScheduleDef, AutomationError> {
    check_cron(cron).map_err(|e| AutomationError::Cron {
        name: name.to_owned(),
        cron: cron.to_owned(),
        detail: e.to_string(),
    })?;
    let tz: Tz = tz.parse().map_err(|_| AutomationError::TimeZone { name: name.to_owned(), tz: tz.to_owned() })?;
    Ok(ScheduleDef {
        name: name.to_owned(),
        cron: cron.to_owned(),
        tz,
        selection: selection.to_owned(),
        windows: 1,
        parsed: OnceLock::new(),
    })
}

/// How a schedule's expression is parsed: five fields, no seconds, no year.
fn parse_cron(cron: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(cron)
}

/// Whether [`parse_cron`] accepts `cron`, with the same error, at a fraction of the cost.
///
/// croner gives an expression without a year the year `*` and sets its 5,000 years (1 to 5000)
/// one bit at a time: 1.8 M instructions for the seven RoboSystems schedules on every start,
/// though most commands never read a tick (BENCHMARKS.md). The five fields are checked here as
/// croner parses them, between a seconds field of `0` (what croner puts there) and a year of one
/// year; the full parse waits for the first tick read.
fn check_cron(cron: &str) -> Result<(), croner::errors::CronError> {
    // A nickname (`@daily`) is expanded by croner itself: the full parse (and its cost) for
    // those. A wrong number of fields fails before any field is parsed, cheaply.
    if cron.contains('@') || cron.split_whitespace().count() != 5 {
        return parse_cron(cron).map(drop);
    }
    let checked = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Required)
        .build()
        .parse(&format!("0 {} 2000", cron.trim()));
    match checked {
        Ok(_) => Ok(()),
        // The error as the full parse words it (about the expression as written).
        Err(_) => parse_cron(cron).map(drop),
    }
}

impl ScheduleDef {
    /// Requests the latest `n` time windows on each tick instead of the latest one (a monthly
    /// close that also re-reads the month before, which may have been adjusted since). On
    /// multi-dimensional assets, those windows for every key of the other dimensions.
    pub fn windows(mut self, n: usize) -> ScheduleDef {
        self.windows = n.max(1);
        self
    }

    /// The cron expression, as written.
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// The expression, parsed in full once.
    fn parsed(&self) -> &croner::Cron {
        self.parsed.get_or_init(|| parse_cron(&self.cron).expect("checked by `schedule`"))
    }

    /// Tick times in `(after, until]`, in order, at most `limit`.
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        // Iterate in the schedule's zone, passing back the exact value croner returned, so the
        // two passes of a repeated (fall-back) hour stay apart.
        let mut cursor = after.with_timezone(&self.tz);
        while out.len() < limit {
            let Ok(next) = self.parsed().find_next_occurrence(&cursor, false) else { break };
            let utc = next.with_timezone(&Utc);
            if utc > until {
                break;
            }
            out.push(utc);
            cursor = next;
        }
        out
    }

    /// The latest tick at or before `at`.
    pub fn latest_tick(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parsed().find_previous_occurrence(&at.with_timezone(&self.tz), true).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The first tick after `after`.
    pub fn next_tick(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parsed().find_next_occurrence(&after.with_timezone(&self.tz), false).ok().map(|t| t.with_timezone(&Utc))
    }
}

/// What a sensor evaluation sees.
#[derive(Clone)]
pub struct SensorContext {
    /// The cursor its last committed evaluation left.
    pub cursor: Option<String>,
    /// The evaluation time, read through [`SensorContext::now`].
    now: DateTime<Utc>,
    /// Whether the evaluation read the clock (a simulation re-evaluates only sensors that did,
    /// or whose cursor moved).
    clock_read: Arc<std::sync::atomic::AtomicBool>,
    /// Resources by key (the app database, …).
    pub resources: Resources,
    /// The current keys of every dynamic partitions definition the assets use, by name (what a
    /// sensor polling "every CIK" iterates), read from the store as the evaluation starts.
    pub dynamic_partitions: std::collections::HashMap<String, Vec<String>>,
}

impl SensorContext {
    /// The evaluation time (the pinned clock in a simulation or under `ROBO_ASSETS_NOW`).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock_read.store(true, std::sync::atomic::Ordering::Relaxed);
        self.now
    }
}

/// A request a sensor makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorRequest {
    /// The asset.
    pub asset: String,
    /// The partition.
    pub partition_key: String,
    /// Its idempotency key (the same key never requests twice).
    pub key: String,
}

/// What a sensor evaluation returns.
#[derive(Debug, Clone, Default)]
pub struct SensorResult {
    /// Requests.
    pub requests: Vec<SensorRequest>,
    /// Dynamic partitions to add first: (definition, keys).
    pub dynamic_partitions: Vec<(String, Vec<String>)>,
    /// The new cursor.
    pub cursor: Option<String>,
    /// Why nothing was requested, for the tick's message.
    pub skip_reason: Option<String>,
}

type SensorFn = Arc<dyn Fn(SensorContext) -> BoxFuture<Result<SensorResult, AssetError>> + Send + Sync>;

/// A sensor.
#[derive(Clone)]
pub struct SensorDef {
    /// Its unique name.
    pub name: String,
    /// It is evaluated at most this often.
    pub min_interval: Duration,
    /// An evaluation taking longer fails its tick.
    pub timeout: Duration,
    evaluate: SensorFn,
}

/// A sensor evaluated at most every `min_interval`, failing after `timeout`.
pub fn sensor<F, Fut>(name: &str, min_interval: Duration, timeout: Duration, evaluate: F) -> SensorDef
where
    F: Fn(SensorContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<SensorResult, AssetError>> + Send + 'static,
{
    SensorDef { name: name.to_owned(), min_interval, timeout, evaluate: Arc::new(move |ctx| Box::pin(evaluate(ctx))) }
}

/// A declarative condition on an asset: when the daemon requests its partitions by itself.
#[derive(Clone, Debug)]
pub enum Condition {
    /// When an upstream partition it reads gets a new data version, and none of the partitions
    /// it reads is missing or in progress; only if that changes its inputs (logical version).
    /// So a daily bill fires once when its 24th hour lands, and again when a late hour changes.
    Eager,
    /// When it is missing and every partition it reads exists (evaluated as upstream
    /// partitions arrive).
    OnMissing,
    /// At each tick of a cron, its latest partition if missing or stale (for a multi-dimensional
    /// asset, the latest window for every key of its other dimensions).
    OnCron(Box<ScheduleDef>),
}

impl Condition {
    /// `eager`, `on_missing`, `on_cron`.
    pub fn name(&self) -> &'static str {
        match self {
            Condition::Eager => "eager",
            Condition::OnMissing => "on_missing",
            Condition::OnCron(_) => "on_cron",
        }
    }
}

/// An `on_cron` condition: `cron` in time zone `tz`.
pub fn on_cron(cron: &str, tz: &str) -> Result<Condition, AutomationError> {
    Ok(Condition::OnCron(Box::new(schedule("on_cron", cron, tz, "")?)))
}

/// The instigator under which condition evaluations are recorded; its cursor is the last
/// materialization id the conditions have seen.
pub const CONDITIONS: &str = "automation_conditions";

/// How many missing upstream partitions one schedule tick requests at most, unless the
/// deployment says otherwise: two days of hours, so a daily bill heals the hours an outage
/// skipped, and a month of them is a backfill someone decides on.
pub const DEFAULT_MAX_UPSTREAM_FILL: usize = 48;

/// Every schedule and sensor of a deployment.
#[derive(Clone)]
pub struct Automation {
    /// Schedules.
    pub schedules: Vec<ScheduleDef>,
    /// Sensors.
    pub sensors: Vec<SensorDef>,
    /// Declarative conditions: (asset, condition).
    pub conditions: Vec<(String, Condition)>,
    /// Missed schedule ticks older than this are not caught up.
    pub catch_up: Duration,
    /// A schedule tick requests the missing upstream partitions of its targets only when they
    /// are at most this many; beyond, it requests the targets whose inputs exist and its message
    /// names the `robo-assets backfill` command that fills the rest.
    pub max_upstream_fill: usize,
}

impl Default for Automation {
    fn default() -> Automation {
        Automation {
            schedules: Vec::new(),
            sensors: Vec::new(),
            conditions: Vec::new(),
            catch_up: Duration::ZERO,
            max_upstream_fill: DEFAULT_MAX_UPSTREAM_FILL,
        }
    }
}

/// The targets a tick left out for want of too many upstream partitions: (asset, keys), and how
/// many upstream partitions the whole tick was missing.
struct LeftOut {
    targets: Vec<(AssetId, Vec<String>)>,
    missing: usize,
}

impl LeftOut {
    /// `left out usage_report 2026-11: 750 missing upstream partitions are more than a tick
    /// fills (ROBO_ASSETS_MAX_UPSTREAM_FILL=48); fill them with `robo-assets backfill
    /// +usage_report --from 2026-11 --to 2026-11``.
    fn warning(&self, graph: &crate::AssetGraph, max: usize) -> String {
        let mut described = Vec::new();
        let mut commands = Vec::new();
        for (id, keys) in &self.targets {
            let def = graph.asset(*id);
            let listed: Vec<(String, String)> = keys.iter().map(|k| (def.key.to_string(), k.clone())).collect();
            described.push(describe(&listed));
            // The backfill's range is of the time dimension (every key of the others).
            let time_key = |k: &String| match def.partitions.as_ref().and_then(|p| p.as_multi()) {
                Some(m) => match (m.time_dimension(), m.split(k)) {
                    (Some((i, _)), Ok(values)) => values[i].to_owned(),
                    _ => k.clone(),
                },
                None => k.clone(),
            };
            match (keys.first(), keys.last()) {
                (Some(first), Some(last)) if !first.is_empty() => commands.push(format!(
                    "`robo-assets backfill +{} --from {} --to {}`",
                    def.key,
                    time_key(first),
                    time_key(last)
                )),
                _ => commands.push(format!("`robo-assets materialize +{}`", def.key)),
            }
        }
        format!(
            "left out {}: {} missing upstream partitions are more than a tick fills \
             (ROBO_ASSETS_MAX_UPSTREAM_FILL={max}); fill them with {}",
            described.join("; "),
            self.missing,
            commands.join(" and ")
        )
    }
}

/// The steps a tick submits, from `plan` (its targets and every missing upstream partition):
/// a step that a pending request covers (`pending`) stays, as a step to wait on, but what only
/// it needed goes (that request has upstream steps of its own). When more than `max` upstream
/// partitions are left to request, none of them is: only the targets that need none of them,
/// and what was left out.
fn tick_steps(
    targets: &[(AssetId, Vec<String>)],
    plan: plan::Plan,
    pending: &[bool],
    max: usize,
) -> (plan::Plan, Option<LeftOut>) {
    let wanted: std::collections::HashSet<(AssetId, &str)> =
        targets.iter().flat_map(|(id, keys)| keys.iter().map(move |k| (*id, k.as_str()))).collect();
    let is_target: Vec<bool> =
        plan.steps.iter().map(|s| wanted.contains(&(s.asset, s.partition_key.as_str()))).collect();
    // Steps come after their deps: walking back from `roots`, the steps a new step needs.
    let needed = |roots: &[bool]| {
        let mut needed = roots.to_vec();
        for i in (0..plan.steps.len()).rev() {
            if needed[i] && !pending[i] {
                for d in &plan.steps[i].deps {
                    needed[*d] = true;
                }
            }
        }
        needed
    };
    let mut keep = needed(&is_target);
    let missing = (0..plan.steps.len()).filter(|i| keep[*i] && !is_target[*i] && !pending[*i]).count();
    let mut left_out = None;
    if missing > max {
        // Walking forward: the steps that need an upstream partition nobody has requested.
        let mut needs_fill = vec![false; plan.steps.len()];
        for (i, step) in plan.steps.iter().enumerate() {
            needs_fill[i] = !pending[i] && (!is_target[i] || step.deps.iter().any(|d| needs_fill[*d]));
        }
        let mut out: Vec<(AssetId, Vec<String>)> = Vec::new();
        for (_, step) in plan.steps.iter().enumerate().filter(|(i, _)| is_target[*i] && needs_fill[*i]) {
            match out.last_mut() {
                Some((id, keys)) if *id == step.asset => keys.push(step.partition_key.clone()),
                _ => out.push((step.asset, vec![step.partition_key.clone()])),
            }
        }
        let roots: Vec<bool> = (0..plan.steps.len()).map(|i| is_target[i] && !needs_fill[i]).collect();
        keep = needed(&roots);
        left_out = Some(LeftOut { targets: out, missing });
    }
    let mut new_index = vec![usize::MAX; plan.steps.len()];
    let mut steps = Vec::new();
    for (i, step) in plan.steps.into_iter().enumerate() {
        if !keep[i] {
            continue;
        }
        new_index[i] = steps.len();
        // A pending step's own deps are its request's business (it is not submitted again).
        let deps = if pending[i] { Vec::new() } else { step.deps.iter().map(|d| new_index[*d]).collect() };
        steps.push(plan::Step { deps, ..step });
    }
    (plan::Plan { steps }, left_out)
}

/// What one tick requested (or why not).
#[derive(Debug, Clone)]
pub struct TickReport {
    /// The schedule or sensor.
    pub instigator: String,
    /// The tick time.
    pub tick_time: DateTime<Utc>,
    /// What it came to.
    pub status: TickStatus,
    /// What, or why not.
    pub message: String,
    /// (asset, partition) requested.
    pub requests: Vec<(String, String)>,
    /// What it left out and how to fill it, to log as a warning (also in `message`).
    pub warning: Option<String>,
    /// What committing did (`None` in a simulation).
    pub commit: Option<TickCommit>,
}

/// The requests of one schedule tick, as a tick ready to commit: its targets and their missing
/// upstream partitions, unless those are more than `max_upstream_fill` (see
/// [`Automation::max_upstream_fill`]).
pub async fn schedule_tick(
    exec: &Executor,
    sched: &ScheduleDef,
    tick: DateTime<Utc>,
    max_upstream_fill: usize,
) -> Result<(NewTick, Vec<(String, String)>, Option<String>), lineage::Error> {
    let graph = exec.defs.graph();
    let now = exec.clock.now();
    let base = |status: TickStatus, message: String| NewTick::empty(&sched.name, tick, status, message, now);
    let selected = match crate::selection::resolve(graph, &sched.selection) {
        Ok(s) => s,
        Err(e) => return Ok((base(TickStatus::Failed, e.to_string()), Vec::new(), None)),
    };
    let ctx = exec.partitions_context_at(None, tick).await?;
    // Each selected asset's latest partitions that exist at the tick (the latest window, or
    // `windows` of them, for every key of a multi-dimensional asset's other dimensions).
    let mut targets: Vec<(AssetId, Vec<String>)> = Vec::new();
    for &id in &selected {
        match &graph.asset(id).partitions {
            None => targets.push((id, vec![String::new()])),
            Some(p) => {
                let latest = p.latest(&ctx, sched.windows);
                if !latest.is_empty() {
                    targets.push((id, latest));
                }
            }
        }
    }
    targets.sort_by_key(|(id, _)| graph.rank(*id));
    if targets.is_empty() {
        return Ok((
            base(TickStatus::Skipped, "no partition of the selection exists yet".to_owned()),
            Vec::new(),
            None,
        ));
    }
    // Missing upstream partitions are requested too: a bill whose hours an outage skipped heals.
    let options = PlanOptions { with_upstream: true };
    let snapshot = crate::backfill::CellStates::snapshot_for_plan(&*exec.store, graph, &targets, &ctx, options).await?;
    let plan = match plan::plan(graph, &targets, &snapshot, &ctx, options) {
        Ok(p) => p,
        Err(e) => return Ok((base(TickStatus::Skipped, e.to_string()), Vec::new(), None)),
    };
    // A partition a request still pending covers (of any run: the hourly schedule's tick, a
    // backfill) is not requested again: the steps that read it wait on that request.
    let cells: Vec<(String, String)> =
        plan.steps.iter().map(|s| (graph.asset(s.asset).key.to_string(), s.partition_key.clone())).collect();
    let pending: std::collections::HashMap<(String, String), lineage::PendingRequest> = exec
        .store
        .pending_requests(&cells)
        .await?
        .into_iter()
        .map(|p| ((p.asset_key.clone(), p.partition_key.clone()), p))
        .collect();
    let is_pending: Vec<bool> = cells.iter().map(|c| pending.contains_key(c)).collect();
    // More missing upstream partitions than a tick may fill: none of them is requested (a
    // schedule never pulls in a month of bills, and their ledger debits, by itself), only the
    // targets whose inputs all exist; the tick says which command fills the rest.
    let (plan, left_out) = tick_steps(&targets, plan, &is_pending, max_upstream_fill);
    let warning = left_out.as_ref().map(|l| l.warning(graph, max_upstream_fill));
    if plan.steps.is_empty() {
        return Ok((base(TickStatus::Skipped, warning.clone().unwrap_or_default()), Vec::new(), warning));
    }
    let run_id = RunId::new();
    let key = format!("sched:{}:{}", sched.name, tick.to_rfc3339());
    let (mut requests, edges) = plan_requests(&exec.defs, &plan, run_id, &key, Trigger::Schedule, now);
    // A pending partition's step names the pending request's key: submitting it adds nothing and
    // its edges to this tick's new steps point at that request.
    let mut waits_on: Vec<(String, String)> = Vec::new();
    for r in &mut requests {
        if let Some(p) = pending.get(&(r.asset_key.clone(), r.partition_key.clone())) {
            r.idempotency_key = p.idempotency_key.clone();
            waits_on.push((r.asset_key.clone(), r.partition_key.clone()));
        }
    }
    let listed: Vec<(String, String)> = requests
        .iter()
        .filter(|r| !pending.contains_key(&(r.asset_key.clone(), r.partition_key.clone())))
        .map(|r| (r.asset_key.clone(), r.partition_key.clone()))
        .collect();
    let already = (!waits_on.is_empty()).then(|| format!("already requested, pending: {}", describe(&waits_on)));
    let message = [(!listed.is_empty()).then(|| describe(&listed)), already, warning.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    if listed.is_empty() {
        return Ok((base(TickStatus::Skipped, message), Vec::new(), warning));
    }
    let mut t = base(TickStatus::Requested, message);
    t.run = Some(NewRun {
        id: run_id,
        trigger: Trigger::Schedule,
        selection: sched.selection.clone(),
        n_steps: listed.len() as i64,
        tags: serde_json::json!({ "schedule": sched.name, "tick": tick.to_rfc3339() }),
        created_at: now,
        owner: None,
    });
    t.requests = requests;
    t.edges = edges;
    Ok((t, listed, warning))
}

/// One sensor evaluation (with its timeout), as a tick ready to commit.
pub async fn sensor_tick(
    exec: &Executor,
    sensor: &SensorDef,
    cursor: Option<String>,
    now: DateTime<Utc>,
) -> (NewTick, Vec<(String, String)>) {
    let dynamic_partitions =
        match crate::partition::PartitionsContext::load(&*exec.store, exec.defs.graph(), None, now).await {
            Ok(partitions) => partitions.dynamic,
            Err(e) => {
                let mut tick = empty_sensor_tick(sensor, now);
                tick.status = TickStatus::Failed;
                tick.message = format!("reading dynamic partitions failed: {e}");
                return (tick, Vec::new());
            }
        };
    let (tick, listed, _) = evaluate_sensor(exec, sensor, cursor, now, dynamic_partitions).await;
    (tick, listed)
}

fn empty_sensor_tick(sensor: &SensorDef, now: DateTime<Utc>) -> NewTick {
    NewTick {
        min_interval: chrono::Duration::from_std(sensor.min_interval).ok(),
        ..NewTick::empty(&sensor.name, now, TickStatus::Skipped, "", now)
    }
}

/// One sensor evaluation over the given dynamic partitions: the tick, what it requested, and
/// whether the evaluation read the clock.
async fn evaluate_sensor(
    exec: &Executor,
    sensor: &SensorDef,
    cursor: Option<String>,
    now: DateTime<Utc>,
    dynamic_partitions: std::collections::HashMap<String, Vec<String>>,
) -> (NewTick, Vec<(String, String)>, bool) {
    let mut tick = empty_sensor_tick(sensor, now);
    let clock_read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ctx = SensorContext {
        cursor: cursor.clone(),
        now,
        clock_read: clock_read.clone(),
        resources: exec.resources.clone(),
        dynamic_partitions,
    };
    let outcome = tokio::time::timeout(sensor.timeout, (sensor.evaluate)(ctx)).await;
    let clock_read = clock_read.load(std::sync::atomic::Ordering::Relaxed);
    let result = match outcome {
        Err(_) => {
            tick.status = TickStatus::Failed;
            tick.message = format!("evaluation timed out after {:?}", sensor.timeout);
            return (tick, Vec::new(), clock_read);
        }
        Ok(Err(e)) => {
            tick.status = TickStatus::Failed;
            tick.message = format!("evaluation failed: {e}");
            return (tick, Vec::new(), clock_read);
        }
        Ok(Ok(r)) => r,
    };
    tick.cursor = Some((cursor, result.cursor.clone()));
    tick.dynamic_partitions = result.dynamic_partitions.clone();
    let graph = exec.defs.graph();
    let run_id = RunId::new();
    let mut listed = Vec::new();
    for r in &result.requests {
        let Ok(id) = graph.lookup(&r.asset) else {
            tick.status = TickStatus::Failed;
            tick.message = format!("requested unknown asset {:?}", r.asset);
            return (tick, Vec::new(), clock_read);
        };
        let def = graph.asset(id);
        tick.requests.push(lineage::NewRequest {
            id: lineage::RequestId::new(),
            idempotency_key: r.key.clone(),
            run_id,
            asset_key: def.key.to_string(),
            partition_key: r.partition_key.clone(),
            trigger: Trigger::Sensor,
            pool: def.request_pool(&r.partition_key),
            priority: graph.rank(id) as i64,
            max_attempts: def.retry.max_attempts as i64,
            run_at: Utc::now(),
            created_at: now,
        });
        listed.push((def.key.to_string(), r.partition_key.clone()));
    }
    if listed.is_empty() {
        tick.message = result.skip_reason.clone().unwrap_or_else(|| "nothing to request".to_owned());
    } else {
        tick.status = TickStatus::Requested;
        tick.message = describe(&listed);
        tick.run = Some(NewRun {
            id: run_id,
            trigger: Trigger::Sensor,
            selection: sensor.name.clone(),
            n_steps: listed.len() as i64,
            tags: serde_json::json!({ "sensor": sensor.name }),
            created_at: now,
            owner: None,
        });
    }
    (tick, listed, clock_read)
}

/// What a tick requested, downstream first: `storage_bill 2025-12-15; usage_snapshot: 24
/// partitions (2025-12-15T00:00 .. 2025-12-15T23:00)`.
fn describe(requests: &[(String, String)]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (asset, key) in requests {
        match groups.iter_mut().find(|(a, _)| a == asset) {
            Some((_, keys)) => keys.push(key),
            None => groups.push((asset, vec![key])),
        }
    }
    groups
        .iter()
        .rev()
        .map(|(asset, keys)| match keys.as_slice() {
            [""] => (*asset).to_owned(),
            [one] => format!("{asset} {one}"),
            many => format!("{asset}: {} partitions ({} .. {})", many.len(), many[0], many[many.len() - 1]),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One pass of the daemon at `now`: every running schedule's due ticks (its latest one when it
/// never ticked; else those since its last tick, caught up within `catch_up`) and every running sensor whose interval has
/// passed, each committed with its requests.
pub async fn run_once(
    exec: &Executor,
    automation: &Automation,
    now: DateTime<Utc>,
) -> Result<Vec<TickReport>, lineage::Error> {
    let known: Vec<(String, InstigatorKind)> = automation
        .schedules
        .iter()
        .map(|s| (s.name.clone(), InstigatorKind::Schedule))
        .chain(automation.sensors.iter().map(|s| (s.name.clone(), InstigatorKind::Sensor)))
        .chain((!automation.conditions.is_empty()).then(|| (CONDITIONS.to_owned(), InstigatorKind::Sensor)))
        .collect();
    exec.store.ensure_instigators(&known, now).await?;
    let states = exec.store.instigators().await?;
    let state_of = |name: &str| states.iter().find(|s| s.name == name);
    let mut reports = Vec::new();
    for sched in &automation.schedules {
        if !state_of(&sched.name).is_some_and(|s| s.status == InstigatorStatus::Running) {
            continue;
        }
        let last = exec.store.ticks(&sched.name, None, 1).await?.first().map(|t| t.tick_time);
        let due = match last {
            // Never evaluated: its latest tick at or before now, once (what is due, not its
            // history: a schedule started today does not catch up the months before it).
            None => sched.latest_tick(now).into_iter().collect(),
            // Evaluated before: every tick since, within the catch-up window.
            Some(last) => {
                let floor = now - chrono::Duration::from_std(automation.catch_up).unwrap_or_default();
                sched.ticks_between(last.max(floor), now, 10_000)
            }
        };
        for tick in due {
            let lag = (now - tick).to_std().unwrap_or_default();
            let labels = crate::metrics::InstigatorLabel { instigator: sched.name.clone() };
            crate::metrics::global().tick_lag.get_or_create(&labels).observe(lag.as_secs_f64());
            let (new_tick, listed, warning) = schedule_tick(exec, sched, tick, automation.max_upstream_fill).await?;
            let commit = exec.store.commit_tick(&new_tick).await?;
            crate::failpoint::hit("automation.schedule_tick_committed");
            reports.push(TickReport {
                instigator: sched.name.clone(),
                tick_time: tick,
                status: new_tick.status,
                message: new_tick.message,
                requests: listed,
                warning,
                commit: Some(commit),
            });
        }
    }
    for sensor in &automation.sensors {
        let Some(state) = state_of(&sensor.name).filter(|s| s.status == InstigatorStatus::Running) else { continue };
        let last = exec.store.ticks(&sensor.name, None, 1).await?.first().map(|t| t.tick_time);
        if last.is_some_and(|l| now - l < chrono::Duration::from_std(sensor.min_interval).unwrap_or_default()) {
            continue;
        }
        let evaluating = std::time::Instant::now();
        let (new_tick, listed) = sensor_tick(exec, sensor, state.cursor.clone(), now).await;
        let labels = crate::metrics::InstigatorLabel { instigator: sensor.name.clone() };
        crate::metrics::global().sensor_evaluation.get_or_create(&labels).observe(evaluating.elapsed().as_secs_f64());
        crate::failpoint::hit("automation.sensor_evaluated");
        let commit = exec.store.commit_tick(&new_tick).await?;
        reports.push(TickReport {
            instigator: sensor.name.clone(),
            tick_time: now,
            status: new_tick.status,
            message: new_tick.message,
            requests: listed,
            warning: None,
            commit: Some(commit),
        });
    }
    if let Some(state) = state_of(CONDITIONS).filter(|s| s.status == InstigatorStatus::Running)
        && !automation.conditions.is_empty()
    {
        // on_cron ticks since the last evaluation, or since the conditions were first seen.
        let last =
            exec.store.ticks(CONDITIONS, None, 1).await?.first().map(|t| t.tick_time).unwrap_or(state.created_at);
        if let Some(tick) = conditions_tick(exec, automation, state.cursor.clone(), Some(last), now).await? {
            let requests = tick.requests.iter().map(|r| (r.asset_key.clone(), r.partition_key.clone())).collect();
            let commit = exec.store.commit_tick(&tick).await?;
            reports.push(TickReport {
                instigator: CONDITIONS.to_owned(),
                tick_time: now,
                status: tick.status,
                message: tick.message,
                requests,
                warning: None,
                commit: Some(commit),
            });
        }
    }
    Ok(reports)
}

/// Evaluates the declarative conditions at `now`: `eager` and `on_missing` for the downstream
/// partitions of every materialization recorded since the cursor (so the cost follows what
/// changed, not the size of the graph), `on_cron` at its ticks since `last`. `None` when there
/// was nothing to evaluate.
pub async fn conditions_tick(
    exec: &Executor,
    automation: &Automation,
    cursor: Option<String>,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<NewTick>, lineage::Error> {
    let graph = exec.defs.graph();
    let ctx = exec.partitions_context_at(None, now).await?;
    let seen: i64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
    let new = exec.store.materializations_after(seen, 10_000).await?;
    let after = new.last().map_or(seen, |m| m.0);
    let condition_of = |id: AssetId| {
        let key = graph.asset(id).key.as_str();
        automation.conditions.iter().find(|(a, _)| a == key).map(|(_, c)| c)
    };
    // Candidates, in a stable order: (asset, partition) → (condition, cron tick).
    let mut candidates: std::collections::BTreeMap<(usize, String), Candidate<'_>> = Default::default();
    for (_, asset, key) in &new {
        let Ok(up) = graph.lookup(asset) else { continue };
        for edge in graph.downstream(up) {
            let Some(condition) =
                condition_of(edge.asset).filter(|c| matches!(c, Condition::Eager | Condition::OnMissing))
            else {
                continue;
            };
            let down = graph.asset(edge.asset);
            let Ok(keys) =
                edge.mapping.downstream_keys(graph.asset(up).partitions.as_ref(), down.partitions.as_ref(), key, &ctx)
            else {
                continue;
            };
            for k in keys.into_iter().filter(|k| down.partitions.as_ref().is_none_or(|p| p.resolve(k, &ctx).is_ok())) {
                candidates.insert((graph.rank(edge.asset), k), (edge.asset, condition, None));
            }
        }
    }
    for (asset, condition) in &automation.conditions {
        let Condition::OnCron(cron) = condition else { continue };
        let Ok(id) = graph.lookup(asset) else { continue };
        for tick in cron.ticks_between(last.unwrap_or(now), now, 1_000) {
            let tick_ctx = PartitionsContext { now: tick, dynamic: ctx.dynamic.clone() };
            // The latest partition, as a schedule's tick: the latest window for every key of a
            // multi-dimensional asset's other dimensions.
            let keys = graph.asset(id).partitions.as_ref().map_or(vec![String::new()], |p| p.latest(&tick_ctx, 1));
            for key in keys {
                candidates.insert((graph.rank(id), key), (id, condition, Some(tick)));
            }
        }
    }
    if candidates.is_empty() && after == seen {
        return Ok(None);
    }
    let run_id = RunId::new();
    let mut evaluations = Vec::new();
    let mut requests = Vec::new();
    for ((_, key), (id, condition, tick)) in &candidates {
        let def = graph.asset(*id);
        let (request_key, reason) = evaluate_condition(exec, &ctx, *id, key, condition, *tick).await?;
        evaluations.push(lineage::NewConditionEvaluation {
            asset_key: def.key.to_string(),
            partition_key: key.clone(),
            condition: condition.name().to_owned(),
            evaluated_at: now,
            requested: request_key.is_some(),
            reason,
            request_key: request_key.clone(),
        });
        if let Some(k) = request_key {
            requests.push(lineage::NewRequest {
                id: lineage::RequestId::new(),
                idempotency_key: k,
                run_id,
                asset_key: def.key.to_string(),
                partition_key: key.clone(),
                trigger: Trigger::Condition,
                pool: def.request_pool(key),
                priority: graph.rank(*id) as i64,
                max_attempts: def.retry.max_attempts as i64,
                run_at: Utc::now(),
                created_at: now,
            });
        }
    }
    let listed: Vec<(String, String)> =
        requests.iter().map(|r| (r.asset_key.clone(), r.partition_key.clone())).collect();
    let requested = !requests.is_empty();
    Ok(Some(NewTick {
        instigator: CONDITIONS.to_owned(),
        tick_time: now,
        status: if requested { TickStatus::Requested } else { TickStatus::Skipped },
        message: if requested {
            describe(&listed)
        } else {
            format!(
                "{} evaluation{}, nothing to request",
                evaluations.len(),
                if evaluations.len() == 1 { "" } else { "s" }
            )
        },
        cursor: Some((cursor, Some(after.to_string()))),
        dynamic_partitions: Vec::new(),
        run: requested.then(|| NewRun {
            id: run_id,
            trigger: Trigger::Condition,
            selection: "automation conditions".to_owned(),
            n_steps: requests.len() as i64,
            tags: serde_json::json!({}),
            created_at: now,
            owner: None,
        }),
        requests,
        edges: Vec::new(),
        evaluations,
        min_interval: None,
        created_at: now,
    }))
}

/// A partition to evaluate: its asset, the condition, and the cron tick for `on_cron`.
type Candidate<'a> = (AssetId, &'a Condition, Option<DateTime<Utc>>);

/// Whether `condition` requests (asset, key) now: the request's key, or `None`; and why.
async fn evaluate_condition(
    exec: &Executor,
    ctx: &PartitionsContext,
    asset: AssetId,
    key: &str,
    condition: &Condition,
    tick: Option<DateTime<Utc>>,
) -> Result<(Option<String>, String), lineage::Error> {
    let graph = exec.defs.graph();
    let def = graph.asset(asset);
    let Ok(upstream) = crate::plan::upstream_partitions(graph, asset, key, ctx) else {
        return Ok((None, format!("its upstream partitions of {key:?} cannot be mapped")));
    };
    let wanted: Vec<(String, String)> = upstream
        .into_iter()
        .flat_map(|(up, keys)| keys.into_iter().map(move |k| (graph.asset(up).key.to_string(), k)))
        .collect();
    let mut all = wanted.clone();
    all.push((def.key.to_string(), key.to_owned()));
    let states = exec.store.partition_states_of(&all).await?;
    let (up_states, own) = states.split_at(wanted.len());
    let own = own[0].as_ref();
    let missing: Vec<String> = wanted
        .iter()
        .zip(up_states)
        .filter(|(_, s)| s.as_ref().is_none_or(|s| s.current_materialization_id.is_none()))
        .map(|((a, k), _)| format!("{a} {k}"))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(3).map(String::as_str).collect();
        return Ok((
            None,
            format!(
                "waiting: {} of {} upstream partitions missing ({}{})",
                missing.len(),
                wanted.len(),
                shown.join(", "),
                if missing.len() > 3 { ", …" } else { "" }
            ),
        ));
    }
    if let Some(((a, k), _)) = wanted
        .iter()
        .zip(up_states)
        .find(|(_, s)| s.as_ref().is_some_and(|s| s.last_attempt_status == lineage::AttemptStatus::Running))
    {
        return Ok((None, format!("waiting: upstream {a} {k} is being materialized")));
    }
    let inputs: Vec<lineage::InputVersion> = wanted
        .iter()
        .zip(up_states)
        .map(|((a, k), s)| {
            let s = s.as_ref().expect("checked above");
            lineage::InputVersion {
                asset_key: a.clone(),
                partition_key: k.clone(),
                materialization_id: s.current_materialization_id,
                data_version: s.data_version.clone().unwrap_or_default(),
            }
        })
        .collect();
    let newest_input = inputs.iter().filter_map(|i| i.materialization_id).max().unwrap_or(0);
    let expected = crate::exec::logical_version(&def.code_version, &crate::exec::inputs_hash(&inputs));
    let materialized = own.and_then(|s| s.current_materialization_id).is_some();
    let fresh = own.is_some_and(|s| s.logical_version.as_deref() == Some(expected.as_str()));
    let base = format!("auto:{}:{}", def.key, key);
    Ok(match condition {
        Condition::OnMissing if materialized => (None, "already materialized".to_owned()),
        Condition::OnMissing => {
            (Some(format!("{base}:missing")), "missing, and every upstream partition exists".to_owned())
        }
        _ if fresh => (None, "fresh: its code version and the data versions it read are current".to_owned()),
        Condition::Eager if !materialized => (
            Some(format!("{base}:{newest_input}")),
            format!("missing, and all {} upstream partitions exist", wanted.len()),
        ),
        Condition::Eager => {
            (Some(format!("{base}:{newest_input}")), "stale: an upstream partition has a new data version".to_owned())
        }
        Condition::OnCron(_) => {
            let tick = tick.map(|t| t.to_rfc3339()).unwrap_or_default();
            (
                Some(format!("{base}:cron:{tick}")),
                format!("cron tick {tick}: {}", if materialized { "stale" } else { "missing" }),
            )
        }
    })
}

/// Replays schedules, sensors and conditions over `(from, to]` on a virtual clock against the
/// current store, writing nothing: what would be requested, in order, and why. Every schedule
/// tick in the range is evaluated (no cap: the CLI bounds the range). Sensors are evaluated once
/// per `min_interval`, their cursor and the dynamic partitions they add carried in memory, until
/// an evaluation settles (read no clock, moved no cursor, requested and added nothing: every
/// later one would be the same, as nothing is written and sources are read as they are now);
/// conditions once, at `to`,
/// over the materializations they have not seen and their on_cron ticks in the range.
pub async fn simulate(
    exec: &Executor,
    automation: &Automation,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TickReport>, lineage::Error> {
    let states = exec.store.instigators().await?;
    let mut reports = Vec::new();
    for sched in &automation.schedules {
        if states.iter().any(|s| s.name == sched.name && s.status == InstigatorStatus::Stopped) {
            continue;
        }
        for tick in sched.ticks_between(from, to, usize::MAX) {
            let (t, listed, warning) = schedule_tick(exec, sched, tick, automation.max_upstream_fill).await?;
            reports.push(TickReport {
                instigator: sched.name.clone(),
                tick_time: tick,
                status: t.status,
                message: t.message,
                requests: listed,
                warning,
                commit: None,
            });
        }
    }
    // Dynamic partitions as the store holds them; what a simulated sensor adds is carried in
    // memory for its own later evaluations.
    let dynamic = if automation.sensors.is_empty() {
        Default::default()
    } else {
        crate::partition::PartitionsContext::load(&*exec.store, exec.defs.graph(), None, to).await?.dynamic
    };
    for sensor in &automation.sensors {
        let state = states.iter().find(|s| s.name == sensor.name);
        if state.is_some_and(|s| s.status == InstigatorStatus::Stopped) {
            continue;
        }
        let mut cursor = state.and_then(|s| s.cursor.clone());
        let mut dynamic = dynamic.clone();
        let step = chrono::Duration::from_std(sensor.min_interval.max(Duration::from_secs(1))).unwrap_or_default();
        let mut at = from + step;
        while at <= to {
            let (t, listed, clock_read) = evaluate_sensor(exec, sensor, cursor.clone(), at, dynamic.clone()).await;
            let moved = t.cursor.as_ref().is_some_and(|(before, after)| before != after);
            if let Some((_, after)) = &t.cursor {
                cursor = after.clone();
            }
            for (name, keys) in &t.dynamic_partitions {
                let known = dynamic.entry(name.clone()).or_default();
                for key in keys {
                    if !known.contains(key) {
                        known.push(key.clone());
                    }
                }
            }
            // Nothing is written during a simulation and sources are read as they are now, so an
            // evaluation that read no clock, moved no cursor, added no partitions and requested
            // nothing comes out the same at every later evaluation: it stands for them all.
            let settled = !clock_read && !moved && t.dynamic_partitions.is_empty() && listed.is_empty();
            let later = if settled { (to - at).num_seconds() / step.num_seconds().max(1) } else { 0 };
            if !listed.is_empty() || t.status == TickStatus::Failed {
                let mut message = t.message;
                if later > 0 {
                    message.push_str(&format!(" (and at each of the {later} later evaluations)"));
                }
                reports.push(TickReport {
                    instigator: sensor.name.clone(),
                    tick_time: at,
                    status: t.status,
                    message,
                    requests: listed,
                    warning: None,
                    commit: None,
                });
            }
            if settled {
                break;
            }
            at += step;
        }
    }
    // Conditions: what the materializations not yet seen and the on_cron ticks in the range
    // would request, evaluated once at the end of the range.
    if !automation.conditions.is_empty()
        && !states.iter().any(|s| s.name == CONDITIONS && s.status == InstigatorStatus::Stopped)
    {
        let cursor = states.iter().find(|s| s.name == CONDITIONS).and_then(|s| s.cursor.clone());
        if let Some(t) = conditions_tick(exec, automation, cursor, Some(from), to).await?
            && !t.evaluations.is_empty()
        {
            reports.push(TickReport {
                instigator: CONDITIONS.to_owned(),
                tick_time: to,
                status: t.status,
                message: t.message,
                requests: t.requests.iter().map(|r| (r.asset_key.clone(), r.partition_key.clone())).collect(),
                warning: None,
                commit: None,
            });
        }
    }
    reports.sort_by(|a, b| (a.tick_time, &a.instigator).cmp(&(b.tick_time, &b.instigator)));
    Ok(reports)
}

#[cfg(test)]
mod tests;
