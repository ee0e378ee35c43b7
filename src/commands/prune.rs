//! `prune`: deletes finished history older than an age and prints what it removed per table
//! (`engine::retention`, `lineage::RetentionStore`); lineage is never deleted.

use chrono::{DateTime, Utc};

use super::print_json;
use crate::ExitStatus;
use crate::app::App;
use crate::cli::PruneArgs;

/// The body of `prune --json`.
#[derive(serde::Serialize)]
struct PruneOutput {
    /// Rows that finished before this time were pruned (or, dry, would be).
    cutoff: DateTime<Utc>,
    dry_run: bool,
    /// Rows per table.
    removed: lineage::PruneReport,
    total: u64,
}

pub async fn prune(app: &App, args: &PruneArgs) -> anyhow::Result<ExitStatus> {
    // "Now" is the injected clock's: `ROBO_ASSETS_NOW` pins it, as for every command.
    let now = app.clock.now();
    let cutoff = now - args.older_than;
    let report = engine::retention::prune_older_than(&*app.store, args.older_than, now, args.dry_run).await?;
    if args.json {
        print_json(&PruneOutput { cutoff, dry_run: args.dry_run, removed: report, total: report.total() })?;
        return Ok(ExitStatus::Success);
    }
    let (verb, column) = if args.dry_run { ("Would remove", "WOULD REMOVE") } else { ("Removed", "REMOVED") };
    println!("{verb} history that finished before {}:", cutoff.to_rfc3339());
    println!("{:<26} {:>12}", "TABLE", column);
    for (table, n) in report.tables() {
        println!("{table:<26} {n:>12}");
    }
    println!("{:<26} {:>12}", "total", report.total());
    eprintln!(
        "Kept: materializations and their inputs, runs, partition state, check results, backfills and their \
         requests, queued and running work, each schedule's latest tick, undelivered events and alerts."
    );
    if args.dry_run {
        eprintln!("Dry run: nothing was deleted.");
    }
    Ok(ExitStatus::Success)
}
