//! The open store that a handle's calls share (`Arc<Inner>`), how it is
//! opened and closed, and the helpers every write path uses to turn
//! Python values and engine errors into events and failures.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

use auditlog::{AuditStore, FullPolicy, Json, StoreConfig};

use crate::convert::{self, Fault};
use crate::errors;
use crate::failures::{Failure, Reason};
use crate::pending::Pending;
use crate::stage::{HasStager, Lost, Stager};
use crate::time;

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub(crate) struct Inner {
    pub store: AuditStore,
    pub queue_capacity: usize,
    /// Single appends staged for the flusher thread (see stage.rs).
    pub stager: Option<Stager>,
    /// Batches being parsed and encoded now (batch.rs splits a batch over
    /// two threads only when it is alone).
    pub batches_in_flight: std::sync::atomic::AtomicUsize,
    /// Receipts of appends nobody waits on (see pending.rs).
    pub pending: Arc<Pending>,
}

impl Inner {
    /// Whether an append may have to wait for room in the queue (then it
    /// waits without the GIL).
    fn queue_nearly_full(&self) -> bool {
        self.store.log().counters().queue_depth as usize + 2 >= self.queue_capacity
    }

    /// Run a direct write after everything staged before it, with the GIL
    /// only when it cannot wait (nothing staged, room in the queue).
    pub fn ordered<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&AuditStore) -> auditlog::Result<T> + Send,
    ) -> Result<T, Lost> {
        match &self.stager {
            Some(st) if !st.is_settled() => py
                .detach(|| st.ordered(&self.store, || f(&self.store)))?
                .map_err(|e| (e, 1)),
            _ if self.queue_nearly_full() => py.detach(|| f(&self.store)).map_err(|e| (e, 1)),
            _ => f(&self.store).map_err(|e| (e, 1)),
        }
    }
}

impl HasStager for Inner {
    fn stager(&self) -> Option<&Stager> {
        self.stager.as_ref()
    }
    fn audit_store(&self) -> &AuditStore {
        &self.store
    }
}

pub fn lost_failure(py: Python<'_>, (e, n): Lost) -> Failure {
    engine_failure(py, e, n)
}

pub fn engine_failure(py: Python<'_>, e: auditlog::Error, events: u64) -> Failure {
    Failure::new(Reason::of(&e), events, errors::to_py(py, e))
}

pub fn fault_failure(py: Python<'_>, f: Fault, index: Option<usize>) -> Failure {
    match f {
        Fault::Bad { path, reason } => Failure::new(
            Reason::Invalid,
            1,
            errors::invalid_event(py, index, &Fault::path_text(&path), &reason),
        ),
        Fault::Py(e) => Failure::new(Reason::Invalid, 1, e),
    }
}

/// The JSON text of a Python value (inputs, payloads).
pub fn json_of(
    py: Python<'_>,
    v: Option<&Bound<'_, PyAny>>,
    field: &str,
    absent: Json,
) -> Result<Json, Failure> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(absent);
    };
    let mut out = Vec::with_capacity(128);
    convert::write_value(py, v, &mut out, 1).map_err(|f| match f {
        Fault::Bad { mut path, reason } => {
            path.insert(0, convert::Seg::Key(field.to_string()));
            fault_failure(py, Fault::Bad { path, reason }, None)
        }
        other => fault_failure(py, other, None),
    })?;
    let text = String::from_utf8(out).unwrap_or_default();
    Json::parse(text).map_err(|e| {
        Failure::new(
            Reason::Invalid,
            1,
            errors::invalid_event(py, None, field, &e.reason),
        )
    })
}

pub fn ts_of(py: Python<'_>, ts: Option<&Bound<'_, PyAny>>) -> Result<i64, Failure> {
    match ts.filter(|t| !t.is_none()) {
        None => Ok(now_micros()),
        Some(t) => time::to_micros(py, t, "ts").map_err(|e| Failure::new(Reason::Invalid, 1, e)),
    }
}

pub fn open_inner(mut cfg: StoreConfig, search: bool) -> Result<Inner, auditlog::Error> {
    #[cfg(feature = "search")]
    if search {
        cfg.search = Some(auditlog::fulltext::FullTextOptions::default());
    }
    #[cfg(not(feature = "search"))]
    let _ = (search, &mut cfg);
    let queue_capacity = cfg.log.queue_capacity;
    // Staging keeps per-event errors at the append that caused them only
    // when encoding cannot fail after the check (no redaction) and a full
    // queue waits or drops rather than fails. The stage stores events as
    // encoded, unredacted (`BatchBuilder`), so a log that keeps a policy
    // an earlier writer recorded (in force when none is given) is not
    // staged either.
    let stage = cfg.log.redaction.is_none() && cfg.log.on_full != FullPolicy::FailFast;
    let store = AuditStore::open(cfg)?;
    let stage = stage && store.log().redaction().is_none();
    let pending = Arc::new(Pending::default());
    Ok(Inner {
        store,
        queue_capacity,
        stager: stage.then(|| Stager::new(pending.clone())),
        batches_in_flight: Default::default(),
        pending,
    })
}

/// Append what is staged, wait until no call holds the inner store any
/// more, then close it.
/// `Err`: the first failure and how many events are known lost.
pub fn close_inner(mut arc: Arc<Inner>) -> Result<(), Lost> {
    let staged = match &arc.stager {
        Some(st) => st.stop(&arc.store),
        None => Ok(()),
    };
    let inner = loop {
        match Arc::try_unwrap(arc) {
            Ok(inner) => break inner,
            Err(back) => {
                arc = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let pending = inner.pending.clone();
    let closed = inner.store.close().map_err(|e| (e, 0));
    // Closing resolved every receipt: a write that failed and was not
    // reported yet is reported now.
    let late = pending.settle().map_or(Ok(()), Err);
    let lost = [&staged, &late]
        .iter()
        .filter_map(|r| r.as_ref().err().map(|(_, n)| n))
        .sum::<u64>();
    staged.and(late).and(closed).map_err(|(e, _)| (e, lost))
}
