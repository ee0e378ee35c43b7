//! Wake-ups for idle workers: a store announces that work may have become claimable (requests
//! submitted, unblocked or released). Within a process the store's own writes announce it; on
//! PostgreSQL the transactions that make work available also `NOTIFY robo_assets_work`, which a
//! listener in every worker process turns into the same wake-up. A wake-up is a hint: a worker
//! still polls, less often, for what no notification announces.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The PostgreSQL channel the queue notifies on.
pub(crate) const CHANNEL: &str = "robo_assets_work";

/// What an idle worker waits on.
#[derive(Debug)]
pub struct WorkSignal {
    rx: watch::Receiver<u64>,
    across_processes: bool,
}

impl WorkSignal {
    /// Resolves when work may have become claimable since this signal last resolved (or since it
    /// was taken): none is missed between two waits.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether other processes' writes wake this one too (PostgreSQL), so polling can be rare.
    pub fn across_processes(&self) -> bool {
        self.across_processes
    }
}

/// A store's side of the wake-ups.
#[derive(Debug)]
pub(crate) struct Work {
    tx: watch::Sender<u64>,
    /// Whether a listener task runs (PostgreSQL).
    listening: AtomicBool,
}

impl Work {
    pub(crate) fn new() -> Arc<Work> {
        Arc::new(Work { tx: watch::Sender::new(0), listening: AtomicBool::new(false) })
    }

    /// Wakes this process's waiting workers.
    pub(crate) fn wake(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A signal; `across_processes` says whether a listener feeds it.
    pub(crate) fn subscribe(&self, across_processes: bool) -> WorkSignal {
        let mut rx = self.tx.subscribe();
        rx.mark_unchanged();
        WorkSignal { rx, across_processes }
    }

    /// Claims the right to run the listener; false when one already runs.
    pub(crate) fn start_listening(&self) -> bool {
        !self.listening.swap(true, Ordering::AcqRel)
    }

    /// Resolves when nobody waits any more (every signal dropped): the listener stops then. It
    /// keeps going when a signal was taken meanwhile.
    pub(crate) async fn unwatched(&self) {
        loop {
            self.tx.closed().await;
            self.listening.store(false, Ordering::Release);
            // A signal taken after `closed` resolved but before the flag fell saw a listener
            // running and started none: keep this one.
            if self.tx.receiver_count() == 0 || !self.start_listening() {
                return;
            }
        }
    }
}
