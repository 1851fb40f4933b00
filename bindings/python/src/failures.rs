//! Fire-and-forget bookkeeping: in that mode an append never raises; what
//! it could not store is counted per reason and reported through Python's
//! `logging` (logger `auditlog`, WARNING) at the 1st, 10th, 100th, ...
//! failure of each reason, so a broken log is visible without flooding.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Why an append stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Bad input (not JSON, or against the contract).
    Invalid,
    /// The queue was full and the policy is to fail.
    QueueFull,
    /// The store was closed.
    Closed,
    /// The writer stopped after an I/O failure.
    WriterFailed,
    /// `finish_run` of a run never started.
    NotFound,
    /// The handle was inherited through fork().
    Forked,
    /// Anything else the engine reported.
    Other,
}

const REASONS: [(Reason, &str); 7] = [
    (Reason::Invalid, "invalid"),
    (Reason::QueueFull, "queue_full"),
    (Reason::Closed, "closed"),
    (Reason::WriterFailed, "writer_failed"),
    (Reason::NotFound, "not_found"),
    (Reason::Forked, "forked"),
    (Reason::Other, "other"),
];

impl Reason {
    pub fn of(e: &auditlog::Error) -> Reason {
        use auditlog::Error as E;
        match e {
            E::InvalidEvent { .. }
            | E::EventTooLarge { .. }
            | E::BatchTooLarge { .. }
            | E::InvalidArgument(_) => Reason::Invalid,
            E::QueueFull { .. } => Reason::QueueFull,
            E::Closed => Reason::Closed,
            E::WriterFailed(_) | E::WriteRolledBack(_) => Reason::WriterFailed,
            E::NotFound(_) => Reason::NotFound,
            _ => Reason::Other,
        }
    }

    fn slot(self) -> usize {
        REASONS
            .iter()
            .position(|(r, _)| *r == self)
            .unwrap_or(REASONS.len() - 1)
    }

    fn name(self) -> &'static str {
        REASONS[self.slot()].1
    }
}

/// A failed append: why, how many events it lost, and the exception a
/// caller outside fire-and-forget mode gets.
pub struct Failure {
    pub reason: Reason,
    pub events: u64,
    pub err: PyErr,
}

impl Failure {
    pub fn new(reason: Reason, events: u64, err: PyErr) -> Failure {
        Failure {
            reason,
            events,
            err,
        }
    }
}

/// Counts of events lost per reason.
#[derive(Default)]
pub struct Failures {
    counts: [AtomicU64; REASONS.len()],
}

impl Failures {
    /// Count `f` and log it when its count crosses a power of ten.
    pub fn record(&self, py: Python<'_>, f: &Failure) {
        let n = f.events.max(1);
        let before = self.counts[f.reason.slot()].fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if crosses_power_of_ten(before, after) {
            let msg = f
                .err
                .value(py)
                .str()
                .map(|s| s.to_string())
                .unwrap_or_else(|_| "?".into());
            let text = format!(
                "auditlog fire-and-forget: {after} event(s) not stored so far for reason {:?}; latest: {msg}",
                f.reason.name()
            );
            let logged = py
                .import("logging")
                .and_then(|m| m.call_method1("getLogger", ("auditlog",)))
                .and_then(|l| l.call_method1("warning", (text,)));
            // Logging must never raise into the caller either.
            drop(logged);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `{"invalid": n, "queue_full": n, ...}`.
    pub fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (i, (_, name)) in REASONS.iter().enumerate() {
            d.set_item(*name, self.counts[i].load(Ordering::Relaxed))?;
        }
        Ok(d)
    }
}

fn crosses_power_of_ten(before: u64, after: u64) -> bool {
    let mut p = 1u64;
    while p <= after {
        if before < p {
            return true;
        }
        match p.checked_mul(10) {
            Some(next) => p = next,
            None => break,
        }
    }
    false
}
