//! `daemon`, `schedules`, `sensors`, `ticks` and `simulate`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::automation::TickReport;
use engine::{Until, WorkerConfig};
use lineage::{InstigatorKind, InstigatorStatus, TickCommit};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::{DaemonArgs, InstigatorArgs, InstigatorCommand, SimulateArgs, TicksArgs};
use crate::commands::materialize::cancel_on_signal;
use crate::{ExitStatus, user_error};

fn print_report(r: &TickReport) {
    let committed = match r.commit {
        Some(TickCommit::AlreadyTicked) => " (already recorded by another daemon)",
        Some(TickCommit::CursorMoved) => " (cursor moved: discarded)",
        _ => "",
    };
    println!(
        "{}  {:<28} {:<9} {}{committed}",
        r.tick_time.format("%Y-%m-%d %H:%M:%S %Z"),
        r.instigator,
        r.status,
        r.message
    );
}

pub async fn daemon(app: &App, args: &DaemonArgs) -> anyhow::Result<ExitStatus> {
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    daemon_until(app, args, cancel).await
}

/// `robo-assets dev`: the daemon with its in-process worker, and the web view, until Ctrl-C.
pub async fn dev(app: App, args: &crate::cli::DevArgs) -> anyhow::Result<ExitStatus> {
    let app = Arc::new(app);
    let listener = crate::view::server::bind(args.ui.bind).await?;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let ui = tokio::spawn(crate::view::server::serve(app.clone(), listener, cancel.clone()));
    let daemon = DaemonArgs {
        once: false,
        interval_secs: args.interval_secs,
        no_worker: false,
        concurrency: args.concurrency,
        // The web view serves /metrics.
        metrics_bind: None,
    };
    let outcome = daemon_until(&app, &daemon, cancel.clone()).await;
    // The daemon ended (Ctrl-C, or an error): the web view goes with it.
    cancel.cancel();
    ui.await??;
    outcome
}

async fn daemon_until(app: &App, args: &DaemonArgs, cancel: CancellationToken) -> anyhow::Result<ExitStatus> {
    let automation = &app.automation;
    let exec = app.executor().await?;
    if args.once {
        let reports = engine::automation::run_once(&exec, automation, app.clock.now()).await?;
        for r in &reports {
            print_report(r);
        }
        if !args.no_worker {
            // Run what this pass requested, and what earlier passes requested and nobody ran (a
            // pass that crashed after committing its ticks): every unfinished run of a
            // schedule, sensor or condition, oldest first, each to its end, in this process.
            engine::release_dead_local_workers(&*exec.store).await?;
            let runs = waiting_automation_runs(&*exec.store).await?;
            for run in with_what_they_wait_on(&*exec.store, runs).await? {
                let config = WorkerConfig::new(args.concurrency as usize);
                engine::run_worker(&exec, &config, Until::RunEnded(run), Arc::new(engine::NoObserver), cancel.clone())
                    .await?;
                let status = exec.store.run(run).await?.map(|r| r.status.to_string()).unwrap_or_default();
                println!("run {run} {status}");
            }
        }
        // One delivery pass of the lineage events written so far.
        if let Some(transport) = app.openlineage_transport()? {
            let config = app.openlineage_config();
            let renderer = engine::openlineage::Renderer { defs: &app.defs, store: &*app.store, config: &config };
            let owner = engine::openlineage::deliverer_name();
            let report = engine::openlineage::ship_pending(&renderer, &*transport, &owner).await?;
            let backlog = app.store.outbox_backlog().await?;
            match report.stopped {
                _ if report.busy => println!(
                    "openlineage: {} delivered; another process is delivering ({backlog} pending)",
                    report.delivered
                ),
                Some(why) => println!(
                    "openlineage: {} delivered, {} rejected; stopped: {why} ({backlog} pending)",
                    report.delivered, report.rejected
                ),
                None => println!("openlineage: {} delivered, {} rejected", report.delivered, report.rejected),
            }
        }
        // One pass of the failure alerts written so far.
        if let Some(transport) = app.alert_transport()? {
            let owner = engine::delivery::deliverer_name();
            let report = engine::alert::send_pending(&*app.store, &*transport, &app.alert_config(), &owner).await?;
            let refused = match report.refused {
                0 => String::new(),
                n => format!(", {n} refused"),
            };
            match report.stopped {
                _ if report.busy => {
                    let backlog = app.store.alert_backlog().await?;
                    println!("alerts: {} sent{refused}; another process is sending ({backlog} pending)", report.sent);
                }
                Some(why) => {
                    let backlog = app.store.alert_backlog().await?;
                    println!("alerts: {} sent{refused}; stopped: {why} ({backlog} pending)", report.sent);
                }
                None => println!("alerts: {} sent{refused}", report.sent),
            }
        }
        // One retention pass, if due (at most one an hour across daemons).
        if let Some(age) = app.config.retention {
            let owner = engine::delivery::deliverer_name();
            match engine::retention::pass(&*app.store, age, &owner, app.clock.now()).await? {
                Some(report) => println!("retention: {} rows of finished history removed", report.total()),
                None => println!("retention: not due (a pass ran less than an hour ago)"),
            }
        }
        return Ok(ExitStatus::Success);
    }
    tracing::info!(
        message = "Daemon started.",
        schedules = automation.schedules.len(),
        sensors = automation.sensors.len(),
        store = %app.store.describe(),
        worker = !args.no_worker,
    );
    let metrics = match args.metrics_bind {
        Some(addr) => Some(crate::metrics::serve(app.store.clone(), addr, cancel.clone()).await?),
        None => None,
    };
    // Lineage events, delivered as they are written (by one daemon at a time: a lease).
    let shipper = app.openlineage_transport()?.map(|transport| {
        tracing::info!(message = "Delivering OpenLineage events.", namespace = %app.config.openlineage_namespace);
        tokio::spawn(engine::openlineage::run_shipper(
            app.defs.clone(),
            app.store.clone(),
            app.openlineage_config(),
            transport,
            Duration::from_secs(1),
            cancel.clone(),
        ))
    });
    // Failure alerts, sent as runs fail (by one daemon at a time: a lease).
    let alerter = app.alert_transport()?.map(|transport| {
        let url = app.config.alert_webhook.as_ref().map(resources::Secret::expose).unwrap_or_default();
        tracing::info!(message = "Sending failure alerts.", webhook = %resources::webhook::redact_webhook(url));
        tokio::spawn(engine::alert::run_alerter(
            app.store.clone(),
            transport,
            app.alert_config(),
            Duration::from_secs(1),
            cancel.clone(),
        ))
    });
    // Finished history pruned hourly (by one daemon at a time: a lease), when configured.
    let retention = app.config.retention.map(|age| {
        tracing::info!(message = "Pruning finished history.", older_than_hours = age.num_hours());
        tokio::spawn(engine::retention::run_retention(app.store.clone(), age, app.clock.clone(), cancel.clone()))
    });
    let worker = (!args.no_worker).then(|| {
        let exec = exec.clone();
        let cancel = cancel.clone();
        // Stopping hands what it holds to the other workers.
        let config = WorkerConfig { release_on_shutdown: true, ..WorkerConfig::new(args.concurrency as usize) };
        tokio::spawn(async move {
            engine::run_worker(&exec, &config, Until::Canceled, Arc::new(engine::NoObserver), cancel).await
        })
    });
    while !cancel.is_cancelled() {
        match engine::automation::run_once(&exec, automation, app.clock.now()).await {
            Ok(reports) => {
                for r in &reports {
                    // Only the daemon whose commit created the tick reports what it requested.
                    if matches!(r.commit, Some(TickCommit::Committed { .. }) | None) {
                        if let Some(warning) = &r.warning {
                            tracing::warn!(
                                message = "Tick left out partitions whose missing upstream is more than a tick fills.",
                                instigator = %r.instigator,
                                tick = %r.tick_time.to_rfc3339(),
                                detail = %warning,
                            );
                        }
                        tracing::info!(
                            message = "Tick.",
                            instigator = %r.instigator,
                            tick = %r.tick_time.to_rfc3339(),
                            status = %r.status,
                            detail = %r.message,
                        );
                    } else {
                        tracing::info!(
                            message = "Tick not recorded: another daemon recorded it, or moved the cursor.",
                            instigator = %r.instigator,
                            tick = %r.tick_time.to_rfc3339(),
                        );
                    }
                }
            }
            // A store hiccup does not stop the daemon: the next pass catches up.
            Err(e) => {
                engine::metrics::global().store_error("daemon");
                tracing::warn!(message = "Evaluation failed; retrying next interval.", error = %e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval_secs)) => {}
            _ = cancel.cancelled() => {}
        }
    }
    if let Some(worker) = worker {
        worker.await??;
    }
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    if let Some(shipper) = shipper {
        shipper.await?;
    }
    if let Some(alerter) = alerter {
        alerter.await?;
    }
    if let Some(retention) = retention {
        retention.await?;
    }
    eprintln!("Daemon stopped.");
    Ok(ExitStatus::Success)
}

/// Every unfinished run that a tick requested (schedule, sensor or condition) and no process
/// owns, oldest first.
async fn waiting_automation_runs(store: &dyn lineage::LineageStore) -> anyhow::Result<Vec<lineage::RunId>> {
    let mut runs = Vec::new();
    for trigger in [lineage::Trigger::Schedule, lineage::Trigger::Sensor, lineage::Trigger::Condition] {
        for status in [lineage::RunStatus::Queued, lineage::RunStatus::Running] {
            let filter = lineage::RunFilter {
                status: Some(status),
                trigger: Some(trigger),
                limit: 100_000,
                ..Default::default()
            };
            runs.extend(store.runs(&filter).await?.into_iter().filter(|r| r.owner.is_none()).map(|r| r.id));
        }
    }
    // Ids are UUIDv7: their order is creation order.
    runs.sort();
    Ok(runs)
}

/// `runs`, each preceded by the unowned unfinished runs it waits on (a tick's step waiting on a
/// request another run had pending: a backfill's, a submitted run's), transitively and each once,
/// so draining them one after another in this order never waits on a run nobody drains. A run
/// some process owns is left to it (it ends, or ends canceled with what waited on it).
async fn with_what_they_wait_on(
    store: &dyn lineage::LineageStore,
    runs: Vec<lineage::RunId>,
) -> anyhow::Result<Vec<lineage::RunId>> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for root in runs {
        // Depth first, each run after the runs it waits on.
        let mut stack = vec![(root, false)];
        while let Some((run, expanded)) = stack.pop() {
            if expanded {
                order.push(run);
                continue;
            }
            if !seen.insert(run) {
                continue;
            }
            stack.push((run, true));
            for up in store.runs_waited_on(run).await? {
                if store.run(up).await?.is_some_and(|r| r.owner.is_none() && !r.status.is_terminal()) {
                    stack.push((up, false));
                }
            }
        }
    }
    Ok(order)
}

/// The most bytes a sensor cursor set from the command line may have.
const MAX_CURSOR_BYTES: usize = 64 * 1024;

pub async fn instigators(app: &App, kind: InstigatorKind, args: &InstigatorArgs) -> anyhow::Result<ExitStatus> {
    let automation = &app.automation;
    let names: Vec<String> = if kind == InstigatorKind::Schedule {
        automation.schedules.iter().map(|s| s.name.clone()).collect()
    } else {
        automation.sensors.iter().map(|s| s.name.clone()).collect()
    };
    let now = app.clock.now();
    // Only a change registers the instigators: listing (and reading a cursor) writes nothing,
    // and an unknown name is refused before anything is written.
    let known = |name: &str| -> anyhow::Result<()> {
        if !names.iter().any(|n| n == name) {
            return Err(user_error(format!(
                "no {kind} named {}; known: {}",
                crate::commands::clip(name),
                names.join(", ")
            )));
        }
        Ok(())
    };
    let check = async |name: &str| -> anyhow::Result<()> {
        known(name)?;
        app.store.ensure_instigators(&names.iter().map(|n| (n.clone(), kind)).collect::<Vec<_>>(), now).await?;
        Ok(())
    };
    match &args.command {
        Some(InstigatorCommand::Start { name }) | Some(InstigatorCommand::Stop { name }) => {
            check(name).await?;
            let status = if matches!(args.command, Some(InstigatorCommand::Start { .. })) {
                InstigatorStatus::Running
            } else {
                InstigatorStatus::Stopped
            };
            app.store.set_instigator(name, Some(status), None, now).await?;
            println!("{kind} {name}: {status}");
            return Ok(ExitStatus::Success);
        }
        Some(InstigatorCommand::Cursor { name, set, clear }) => {
            // A cursor is the sensor's own state; 64 KiB is far more than any needs. Checked
            // before `check` registers anything.
            if let Some(cursor) = set.as_deref().filter(|c| c.len() > MAX_CURSOR_BYTES) {
                return Err(user_error(format!(
                    "a cursor may have at most {MAX_CURSOR_BYTES} bytes; this one has {}",
                    cursor.len()
                )));
            }
            if kind != InstigatorKind::Sensor {
                return Err(user_error("only sensors have a cursor"));
            }
            if *clear || set.is_some() {
                check(name).await?;
                app.store.set_instigator(name, None, Some(set.as_deref()), now).await?;
            } else {
                known(name)?;
            }
            let state = app.store.instigators().await?.into_iter().find(|s| &s.name == name);
            println!("{}", state.and_then(|s| s.cursor).unwrap_or_else(|| "(no cursor)".to_owned()));
            return Ok(ExitStatus::Success);
        }
        Some(InstigatorCommand::List) | None => {}
    }
    let states = app.store.instigators().await?;
    if args.json {
        crate::commands::print_json(&instigator_rows(app, kind).await?)?;
        return Ok(ExitStatus::Success);
    }
    if kind == InstigatorKind::Schedule {
        // The column is as wide as the longest zone name (`America/New_York`), so rows line up.
        let zone = automation.schedules.iter().map(|s| s.tz.name().len()).max().unwrap_or(0).max("TIMEZONE".len());
        println!(
            "{:<28} {:<8} {:<14} {:<zone$} {:<20} {:<20} SELECTION",
            "SCHEDULE", "STATUS", "CRON", "TIMEZONE", "LAST TICK", "NEXT TICK"
        );
        for s in &automation.schedules {
            let state = states.iter().find(|st| st.name == s.name);
            let last = app.store.ticks(&s.name, None, 1).await?.first().map(|t| t.tick_time);
            println!(
                "{:<28} {:<8} {:<14} {:<zone$} {:<20} {:<20} {}",
                s.name,
                state.map_or("running", |st| st.status.as_str()),
                s.cron(),
                s.tz.name(),
                last.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                s.next_tick(now).map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                s.selection
            );
        }
    } else {
        println!("{:<30} {:<8} {:>9} {:<20} CURSOR", "SENSOR", "STATUS", "INTERVAL", "LAST TICK");
        for s in &automation.sensors {
            let state = states.iter().find(|st| st.name == s.name);
            let last = app.store.ticks(&s.name, None, 1).await?.first().map(|t| t.tick_time);
            println!(
                "{:<30} {:<8} {:>8}s {:<20} {}",
                s.name,
                state.map_or("running", |st| st.status.as_str()),
                s.min_interval.as_secs(),
                last.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                state.and_then(|st| st.cursor.clone()).unwrap_or_else(|| "-".to_owned())
            );
        }
    }
    Ok(ExitStatus::Success)
}

/// A schedule or sensor as `schedules --json` / `sensors --json` and `/api/v1/schedules` /
/// `/api/v1/sensors` show
/// it. Reading never writes: one the daemon has not seen yet is `running` (its default).
#[derive(Debug, serde::Serialize)]
pub(crate) struct InstigatorRow {
    pub name: String,
    pub kind: InstigatorKind,
    pub status: InstigatorStatus,
    /// Schedules: the cron expression, its time zone and what it requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    /// Sensors: the least time between evaluations, and the cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub last_tick: Option<DateTime<Utc>>,
    /// Schedules: when it fires next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_tick: Option<DateTime<Utc>>,
}

pub(crate) async fn instigator_rows(app: &App, kind: InstigatorKind) -> anyhow::Result<Vec<InstigatorRow>> {
    let states = app.store.instigators().await?;
    let now = app.clock.now();
    let status_of = |name: &str| states.iter().find(|s| s.name == name).map_or(InstigatorStatus::Running, |s| s.status);
    let mut rows = Vec::new();
    if kind == InstigatorKind::Schedule {
        for s in &app.automation.schedules {
            rows.push(InstigatorRow {
                name: s.name.clone(),
                kind,
                status: status_of(&s.name),
                cron: Some(s.cron().to_owned()),
                timezone: Some(s.tz.name().to_owned()),
                selection: Some(s.selection.clone()),
                interval_ms: None,
                cursor: None,
                last_tick: app.store.ticks(&s.name, None, 1).await?.first().map(|t| t.tick_time),
                next_tick: s.next_tick(now),
            });
        }
    } else {
        for s in &app.automation.sensors {
            rows.push(InstigatorRow {
                name: s.name.clone(),
                kind,
                status: status_of(&s.name),
                cron: None,
                timezone: None,
                selection: None,
                interval_ms: Some(u64::try_from(s.min_interval.as_millis()).unwrap_or(u64::MAX)),
                cursor: states.iter().find(|st| st.name == s.name).and_then(|st| st.cursor.clone()),
                last_tick: app.store.ticks(&s.name, None, 1).await?.first().map(|t| t.tick_time),
                next_tick: None,
            });
        }
    }
    Ok(rows)
}

pub async fn ticks(app: &App, args: &TicksArgs) -> anyhow::Result<ExitStatus> {
    let automation = &app.automation;
    let known = automation.schedules.iter().any(|s| s.name == args.name)
        || automation.sensors.iter().any(|s| s.name == args.name);
    if !known {
        let names: Vec<&str> = automation
            .schedules
            .iter()
            .map(|s| s.name.as_str())
            .chain(automation.sensors.iter().map(|s| s.name.as_str()))
            .collect();
        return Err(user_error(format!("no schedule or sensor named {:?}; known: {}", args.name, names.join(", "))));
    }
    let mut ticks = app.store.ticks(&args.name, args.before, args.limit + 1).await?;
    let next_cursor = if ticks.len() as i64 > args.limit {
        ticks.truncate(args.limit as usize);
        ticks.last().map(|t| t.id)
    } else {
        None
    };
    let total = app.store.count(lineage::Counted::Ticks { instigator: &args.name }).await?;
    if args.json {
        crate::commands::print_json(
            &serde_json::json!({ "ticks": ticks, "total": total, "next_cursor": next_cursor }),
        )?;
        return Ok(ExitStatus::Success);
    }
    if let Some(next) = next_cursor {
        eprintln!("{} of {total} shown; more: --before {next}", ticks.len());
    }
    if ticks.is_empty() {
        println!("{} has no ticks yet (the daemon records one per evaluation)", args.name);
    }
    for t in ticks {
        println!(
            "{}  {:<9} {:>3} request{}  {}{}",
            t.tick_time.format("%Y-%m-%d %H:%M:%S %Z"),
            t.status,
            t.requests,
            if t.requests == 1 { " " } else { "s" },
            t.message,
            t.run_id
                .map(|r| format!("  (run {})", crate::commands::printed_short_id(lineage::IdKind::Run, &r.0)))
                .unwrap_or_default()
        );
    }
    Ok(ExitStatus::Success)
}

pub async fn simulate(app: &App, args: &SimulateArgs) -> anyhow::Result<ExitStatus> {
    let (from, to) =
        (crate::commands::parse_time("--from", &args.from)?, crate::commands::parse_time("--to", &args.to)?);
    if to <= from {
        return Err(user_error("--to must be after --from"));
    }
    if to - from > chrono::Duration::days(400) {
        return Err(user_error("simulate at most 400 days at a time"));
    }
    let automation = &app.automation;
    let exec = app.executor().await?;
    let reports = engine::automation::simulate(&exec, automation, from, to).await?;
    if args.json {
        let ticks: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "instigator": r.instigator,
                    "tick_time": r.tick_time,
                    "status": r.status,
                    "message": r.message,
                    "requests": r.requests.iter().map(|(a, p)| serde_json::json!({ "asset": a, "partition": p })).collect::<Vec<_>>(),
                })
            })
            .collect();
        crate::commands::print_json(&serde_json::json!({ "from": from, "to": to, "ticks": ticks }))?;
        return Ok(ExitStatus::Success);
    }
    println!(
        "Simulated {} → {}: {} tick{} (nothing was written)",
        from.to_rfc3339(),
        to.to_rfc3339(),
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    );
    for r in &reports {
        print_report(r);
    }
    Ok(ExitStatus::Success)
}
