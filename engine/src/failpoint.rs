//! Crash points: named places at a commit boundary where a test can abort the process, as
//! `kill -9` would, to prove that what was committed before is enough to resume.
//!
//! `ROBO_ASSETS_FAILPOINT=name[:n]` aborts the process (`std::process::abort`) the `n`-th time
//! (default: the first) the point `name` is hit. The variable is read once; unset, every point
//! is one atomic load and a branch. This module does not delay, return errors or inject
//! anything but an abort: a crash is what the store must survive.
//!
//! The points, in the order a step meets them:
//!
//! | name | where |
//! |------|-------|
//! | `backfill.submit` | a backfill's row and run committed, its cells not yet requested |
//! | `worker.output_written` | a step's output file written, its completion not yet committed |
//! | `worker.before_complete` | a batch of completions about to be committed |
//! | `worker.after_complete` | a batch of completions committed, before anything else |
//! | `appdb.ledger_written` | a ledger transaction committed, the step not yet completed |
//! | `automation.sensor_evaluated` | a sensor evaluated, its tick not yet committed |
//! | `automation.schedule_tick_committed` | a schedule tick committed, later catch-up ticks not yet |
//! | `openlineage.sent` | an OpenLineage event accepted by its receiver, not yet marked delivered |
//! | `alert.sent` | a failure alert accepted by its webhook, not yet marked sent |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the point to abort at: `name` or `name:n`.
pub const ENV: &str = "ROBO_ASSETS_FAILPOINT";

/// Every point's name (the table above), so a test can check it names a real one.
pub const POINTS: [&str; 9] = [
    "backfill.submit",
    "worker.output_written",
    "worker.before_complete",
    "worker.after_complete",
    "appdb.ledger_written",
    "automation.sensor_evaluated",
    "automation.schedule_tick_committed",
    "openlineage.sent",
    "alert.sent",
];

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

/// Checks `ROBO_ASSETS_FAILPOINT` as a start-up check would: unset, or a known point with an
/// optional hit count of at least 1. A typo would otherwise arm nothing and the crash test
/// would pass without crashing.
pub fn check_env() -> Result<(), String> {
    let Ok(spec) = std::env::var(ENV) else { return Ok(()) };
    let (name, nth) = spec.split_once(':').map_or((spec.as_str(), Some("1")), |(n, c)| (n, Some(c)));
    if !POINTS.contains(&name) {
        return Err(format!("{ENV}={spec:?} names no crash point: the points are {}", POINTS.join(", ")));
    }
    if nth.and_then(|n| n.parse::<u64>().ok()).is_none_or(|n| n == 0) {
        return Err(format!("{ENV}={spec:?}: give NAME or NAME:N with N a hit count of at least 1"));
    }
    Ok(())
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, nth) = match spec.split_once(':') {
                Some((name, n)) => (name, n.parse().unwrap_or(1)),
                None => (spec.as_str(), 1),
            };
            Some(Armed { name: name.to_owned(), nth: nth.max(1), hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Marks the point `name`: aborts the process if `ROBO_ASSETS_FAILPOINT` names it and this is
/// its `n`-th hit; otherwise does nothing.
#[inline]
pub fn hit(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
