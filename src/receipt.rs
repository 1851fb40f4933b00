//! Receipts: what `append` returns, to be awaited for durability.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;
/// Set (with the state above) once a thread waits on the slot: only then
/// does the writer take the waiter list and wake it. A receipt already
/// done when it is waited on costs the writer nothing.
const WAITING: u8 = 0x80;
const OUTCOME: u8 = !WAITING;

/// Why a slot failed: the two outcomes a caller must tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The write was cut back cleanly; the log carries on (retryable).
    RolledBack(String),
    /// The writer stopped; the log must be reopened.
    Stopped(String),
}

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Failure::RolledBack(why) => Error::WriteRolledBack(why.clone()),
            Failure::Stopped(why) => Error::WriterFailed(why.clone()),
        }
    }
}

/// Completion state of one append, shared by the receipt and the writer.
///
/// Each slot wakes its own waiters: completing a group commit used to wake
/// every receipt waiter through one condition variable (and every receipt
/// held a clone of its `Arc`, a reference count all producers contended
/// on per append); now the writer only wakes threads that actually sleep
/// on a receipt it completes.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    state: AtomicU8,
    first_lsn: AtomicU64,
    last_lsn: AtomicU64,
    error: OnceLock<Failure>,
    /// Threads parked in `wait` (normally none or one).
    waiters: Mutex<Vec<Thread>>,
    /// When the outcome was set (src/stages.rs clock; 0 unless stage
    /// timing is on), to time a parked waiter's wake-up.
    done_us: AtomicU64,
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
        self.finish(DONE);
    }

    pub(crate) fn fail(&self, why: Failure) {
        let _ = self.error.set(why);
        self.finish(FAILED);
    }

    fn finish(&self, outcome: u8) {
        self.set_outcome(outcome);
        self.wake_waiters();
    }

    /// Publish the outcome; the `WAITING` flag is kept, so that
    /// [`Slot::wake_waiters`] can be called later (see [`complete_all`]).
    fn set_outcome(&self, outcome: u8) {
        // Only a waiter already asleep has a wake-up to time.
        if crate::stages::on() && self.state.load(Ordering::Relaxed) & WAITING != 0 {
            self.done_us
                .store(crate::stages::now_us(), Ordering::Relaxed);
        }
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & WAITING) | outcome)
            });
    }

    /// Wake the threads parked on this slot, once it has its outcome. A
    /// waiter flags `WAITING` after registering and looks at the outcome
    /// after flagging, so it is either found here or sees the outcome
    /// itself; both are read-modify-writes of `state`, so one of them sees
    /// the other's.
    fn wake_waiters(&self) {
        if self.state.load(Ordering::Acquire) & WAITING != 0 {
            let waiters =
                std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
            for t in waiters {
                t.unpark();
            }
        }
    }

    fn outcome(&self) -> Option<Result<LsnRange>> {
        match self.state.load(Ordering::Acquire) & OUTCOME {
            PENDING => None,
            DONE => Some(Ok(LsnRange {
                first: self.first_lsn.load(Ordering::Relaxed),
                last: self.last_lsn.load(Ordering::Relaxed),
            })),
            _ => Some(Err(match self.error.get() {
                Some(f) => f.to_error(),
                None => Error::WriterFailed("failed without a reason".into()),
            })),
        }
    }

    /// Park until the slot has an outcome or `deadline` passes.
    fn wait(&self, deadline: Option<Instant>) -> Option<Result<LsnRange>> {
        if let Some(o) = self.outcome() {
            return Some(o);
        }
        {
            let me = std::thread::current();
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if !w.iter().any(|t| t.id() == me.id()) {
                w.push(me);
            }
        }
        // Registered first, flagged second: a writer that sees the flag
        // finds us in the list; one that finished before it is seen below.
        self.state.fetch_or(WAITING, Ordering::AcqRel);
        loop {
            if let Some(o) = self.outcome() {
                let done = self.done_us.load(Ordering::Relaxed);
                if done != 0 && crate::stages::on() {
                    crate::stages::record_wake(crate::stages::now_us().saturating_sub(done));
                }
                return Some(o);
            }
            // Bounded parks: a safety net should a wake-up ever be missed
            // (spurious wake-ups are simply checked again).
            let step = bounded_step(deadline)?;
            std::thread::park_timeout(step);
        }
    }
}

/// Complete every slot, then wake the threads sleeping on them. One pass
/// that woke each waiter as its slot completed let a woken waiter (on a
/// busy core, often in place of the completing thread) find the next
/// receipt of the same block not yet done, sleep again and be woken again:
/// a hand-off per receipt instead of one per block.
pub(crate) fn complete_all<'a>(slots: impl Iterator<Item = &'a Arc<Slot>> + Clone) {
    for s in slots.clone() {
        s.set_outcome(DONE);
    }
    for s in slots {
        s.wake_waiters();
    }
}

/// How long to wait before looking again: at most 50 ms, and not past
/// `deadline`; `None` once the deadline has passed.
fn bounded_step(deadline: Option<Instant>) -> Option<Duration> {
    let step = Duration::from_millis(50);
    match deadline {
        None => Some(step),
        Some(d) => {
            let now = Instant::now();
            (now < d).then(|| step.min(d - now))
        }
    }
}

/// Wakes live readers waiting for the head to move (after each block).
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
            let Some(step) = bounded_step(deadline) else {
                return false;
            };
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
}

impl Receipt {
    /// A receipt for events the queue policy dropped.
    pub(crate) fn dropped() -> Receipt {
        Receipt { slot: None }
    }

    /// A receipt that has already failed (`why`).
    pub(crate) fn failed(why: &str) -> Receipt {
        let slot = Slot::new();
        slot.fail(Failure::Stopped(why.to_string()));
        Receipt { slot: Some(slot) }
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
        slot.wait(deadline)
    }
}
