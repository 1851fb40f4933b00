//! Scheduled retention: the store runs retention itself (say, keep 90
//! days, checked hourly) on a thread of its own that stops with the store.
//! Each pass is reported (a `tracing` line, the optional hook, and
//! [`super::AuditStore::last_retention`]); a pass that fails (the log
//! degraded, a removal refused) is reported the same way and the next
//! tick tries again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::health::Writes;
use crate::error::{Error, Result};
use crate::event::time::now_micros;
use crate::event::Micros;
use crate::retention::RetentionReport;

/// Told of every pass: what it dropped, or why it failed.
pub type RetentionHook = Arc<dyn Fn(&Pass) + Send + Sync>;

/// When the store runs retention.
#[derive(Clone)]
pub struct RetentionSchedule {
    /// Keep events this young: each pass drops whole segments whose
    /// newest event is older than now − keep.
    pub keep: Duration,
    /// Time between passes (the first runs when the store opens).
    pub every: Duration,
    pub on_pass: Option<RetentionHook>,
}

impl RetentionSchedule {
    /// Keep `keep`, checked every `every`.
    pub fn new(keep: Duration, every: Duration) -> RetentionSchedule {
        RetentionSchedule {
            keep,
            every,
            on_pass: None,
        }
    }

    /// Keep `days` days, checked hourly.
    pub fn days(days: u64) -> RetentionSchedule {
        RetentionSchedule::new(
            Duration::from_secs(days * 86_400),
            Duration::from_secs(3_600),
        )
    }
}

impl std::fmt::Debug for RetentionSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionSchedule")
            .field("keep", &self.keep)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// One scheduled pass.
#[derive(Debug, Clone)]
pub struct Pass {
    /// When it ran (µs).
    pub at: Micros,
    pub cutoff: Micros,
    /// What it dropped and carried, or why it failed (shared: a pass is
    /// handed to the hook and kept as the last pass).
    pub outcome: std::result::Result<RetentionReport, Arc<Error>>,
}

/// The running schedule; stopping it (or dropping it) ends the thread.
pub(crate) struct Scheduler {
    stop: Option<Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
    last: Arc<Mutex<Option<Pass>>>,
}

/// Shortest time between passes accepted.
pub const MIN_RETENTION_EVERY: Duration = Duration::from_millis(10);

impl Scheduler {
    pub(crate) fn start(writes: Arc<Writes>, plan: RetentionSchedule) -> Result<Scheduler> {
        if plan.every < MIN_RETENTION_EVERY {
            return Err(Error::InvalidArgument(format!(
                "retention every {:?} is below the minimum {MIN_RETENTION_EVERY:?}",
                plan.every
            )));
        }
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let last = Arc::new(Mutex::new(None));
        let keep_last = last.clone();
        let handle = std::thread::Builder::new()
            .name("auditlog-retention".into())
            .spawn(move || loop {
                let pass = run_pass(&writes, plan.keep);
                report(&pass);
                if let Some(hook) = &plan.on_pass {
                    hook(&pass);
                }
                *keep_last.lock().unwrap_or_else(|p| p.into_inner()) = Some(pass);
                match rx.recv_timeout(plan.every) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .map_err(|e| Error::io("starting the retention thread", e))?;
        Ok(Scheduler {
            stop: Some(tx),
            handle: Some(handle),
            last,
        })
    }

    pub(crate) fn last(&self) -> Option<Pass> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// End the thread (a pass under way finishes first).
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run_pass(writes: &Writes, keep: Duration) -> Pass {
    let at = now_micros();
    let keep_us = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    let cutoff = at.saturating_sub(keep_us);
    let outcome = super::carry::purge(writes, cutoff, crate::retention::RetainOptions::default())
        .map_err(Arc::new);
    Pass {
        at,
        cutoff,
        outcome,
    }
}

fn report(p: &Pass) {
    match &p.outcome {
        Ok(r) if r.dropped.is_empty() => {
            tracing::debug!(cutoff = p.cutoff, "scheduled retention: nothing to drop")
        }
        Ok(r) => tracing::info!(
            cutoff = p.cutoff,
            segments = r.dropped.len(),
            events = r.events(),
            bytes = r.bytes(),
            carried_runs = r.carried_runs,
            "scheduled retention dropped segments"
        ),
        Err(e) => tracing::warn!(cutoff = p.cutoff, error = %e, "scheduled retention failed"),
    }
}
