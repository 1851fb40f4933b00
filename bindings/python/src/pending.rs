//! Receipts of appends nobody waits on (`append` and `append_batch`
//! without `wait=True`, the stage's batches): a write that fails after the
//! append returned (a block cut back after ENOSPC, a failed fdatasync) must
//! still reach the caller, or a later `flush()` would return as if those
//! events were stored.
//!
//! Receipts resolve in log order, so the done ones are taken off the front
//! without blocking whenever one is added; a failure is kept (with how many
//! events it lost) and reported once: by the next append, or by `flush()`,
//! which first waits for every receipt still pending. The queue holds at
//! most what the log's bounded queue holds, plus what waits for a sync.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use auditlog::{Error, Receipt};

use crate::stage::Lost;

#[derive(Default)]
pub struct Pending {
    receipts: Mutex<VecDeque<(Receipt, u64)>>,
    failed: Mutex<Option<Lost>>,
    /// `failed` is set (checked on every append without a lock).
    any_failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pending {
    /// Watch the receipt of `events` appended events. A receipt of events
    /// the queue dropped (`on_full="drop"`) is not watched: the drop is
    /// the policy asked for, and the store counts it.
    pub fn track(&self, receipt: Receipt, events: u64) {
        if receipt.is_dropped() {
            return;
        }
        let mut q = lock(&self.receipts);
        q.push_back((receipt, events));
        self.reap(&mut q, false);
    }

    /// Take the receipts off the front that are resolved (all of them when
    /// `wait`), keeping the failures.
    fn reap(&self, q: &mut VecDeque<(Receipt, u64)>, wait: bool) {
        while let Some((r, _)) = q.front() {
            if !wait && !r.is_done() {
                break;
            }
            let Some((r, n)) = q.pop_front() else { break };
            let outcome = if wait {
                Some(r.wait())
            } else {
                r.wait_timeout(Duration::ZERO)
            };
            if let Some(Err(e)) = outcome {
                self.note(e, n);
            }
        }
    }

    fn note(&self, e: Error, n: u64) {
        let mut f = lock(&self.failed);
        match f.as_mut() {
            Some((_, lost)) => *lost += n,
            None => *f = Some((e, n)),
        }
        self.any_failed.store(true, Ordering::Release);
    }

    /// A failure not reported yet, with the events it lost (cheap when
    /// there is none).
    pub fn take_failure(&self) -> Option<Lost> {
        if !self.any_failed.load(Ordering::Acquire) {
            return None;
        }
        let mut f = lock(&self.failed);
        self.any_failed.store(false, Ordering::Release);
        f.take().map(|(e, n)| (explain(e, n), n))
    }

    /// Wait for every receipt (after a flush they are all resolved), then
    /// take the failure, if any. May block: call it without the GIL.
    pub fn settle(&self) -> Option<Lost> {
        // Taken out first: waiting must not hold the lock other appends
        // need to add theirs.
        let mut q = std::mem::take(&mut *lock(&self.receipts));
        self.reap(&mut q, true);
        self.take_failure()
    }
}

/// Say in the error how many events were lost, and that they were appended
/// before the call that reports it.
fn explain(e: Error, n: u64) -> Error {
    let what = format!("{n} event(s) appended earlier were not stored");
    match e {
        Error::WriteRolledBack(m) => {
            Error::WriteRolledBack(format!("{what} (append them again): {m}"))
        }
        Error::WriterFailed(m) => Error::WriterFailed(format!("{what}: {m}")),
        other => Error::WriterFailed(format!("{what}: {other}")),
    }
}
