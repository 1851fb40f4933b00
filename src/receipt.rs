//! Receipts: what `append` returns, to be awaited for durability.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

/// Completion state of one append, shared by the receipt and the writer.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    state: AtomicU8,
    first_lsn: AtomicU64,
    last_lsn: AtomicU64,
    error: OnceLock<String>,
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot::default())
    }

    pub(crate) fn set_lsns(&self, first: u64, last: u64) {
        self.first_lsn.store(first, Ordering::Relaxed);
        self.last_lsn.store(last, Ordering::Relaxed);
    }

    pub(crate) fn complete(&self) {
        self.state.store(DONE, Ordering::Release);
    }

    pub(crate) fn fail(&self, why: &str) {
        let _ = self.error.set(why.to_string());
        self.state.store(FAILED, Ordering::Release);
    }

    fn outcome(&self) -> Option<Result<LsnRange>> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            DONE => Some(Ok(LsnRange {
                first: self.first_lsn.load(Ordering::Relaxed),
                last: self.last_lsn.load(Ordering::Relaxed),
            })),
            _ => Some(Err(Error::WriterFailed(
                self.error.get().cloned().unwrap_or_default(),
            ))),
        }
    }
}

/// Wakes receipt waiters after each group commit.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    lock: Mutex<u64>,
    cond: Condvar,
}

impl Notifier {
    pub(crate) fn notify_all(&self) {
        let mut gen = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        *gen = gen.wrapping_add(1);
        self.cond.notify_all();
    }

    /// Wait until `done()` holds or `deadline` passes; true if it holds.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if done() {
                return true;
            }
            // Bounded waits guard against a wake-up lost to a writer that
            // finished between our check and our wait.
            let mut step = Duration::from_millis(50);
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return false;
                }
                step = step.min(d - now);
            }
            guard = match self.cond.wait_timeout(guard, step) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// The LSNs an append was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsnRange {
    pub first: u64,
    pub last: u64,
}

/// Returned by `append`; `wait` blocks until the events are durable per the
/// log's durability policy.
#[derive(Debug, Clone)]
#[must_use = "a receipt does nothing unless waited on; drop it explicitly for fire-and-forget"]
pub struct Receipt {
    pub(crate) slot: Option<Arc<Slot>>,
    pub(crate) notifier: Arc<Notifier>,
}

impl Receipt {
    /// A receipt for events the queue policy dropped.
    pub(crate) fn dropped(notifier: Arc<Notifier>) -> Receipt {
        Receipt {
            slot: None,
            notifier,
        }
    }

    /// True when the events were dropped because the queue was full.
    pub fn is_dropped(&self) -> bool {
        self.slot.is_none()
    }

    /// True once the events are durable (per policy); never blocks.
    pub fn is_done(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.outcome().is_some())
    }

    /// Block until the events are durable per policy; their LSNs.
    pub fn wait(&self) -> Result<LsnRange> {
        self.wait_deadline(None)
            .unwrap_or_else(|| Err(Error::WriterFailed("wait ended without an outcome".into())))
    }

    /// Like [`Receipt::wait`], giving up after `timeout` (`None` then).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<LsnRange>> {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Option<Result<LsnRange>> {
        let Some(slot) = &self.slot else {
            return Some(Err(Error::Dropped));
        };
        if let Some(o) = slot.outcome() {
            return Some(o);
        }
        self.notifier
            .wait_until(deadline, || slot.outcome().is_some());
        slot.outcome()
    }
}
