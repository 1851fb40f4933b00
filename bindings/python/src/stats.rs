//! `stats`, `verify` and retention reports as dicts. Kept in one place:
//! these read the most of the engine's reporting types.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use auditlog::{AuditStore, Digest, RetentionReport};

use crate::errors::{self, IntoPy};
use crate::time::datetime;

fn opt_dt(py: Python<'_>, us: Option<i64>) -> PyResult<Bound<'_, PyAny>> {
    match us {
        Some(t) => datetime(py, t),
        None => Ok(py.None().into_bound(py)),
    }
}

/// The command line's `stats` fields (see docs/operations.md).
pub fn stats<'py>(
    py: Python<'py>,
    store: &AuditStore,
    anomalies: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let (st, found) = py
        .detach(|| -> auditlog::Result<_> {
            let st = store.stats()?;
            let found = if anomalies {
                Some(store.anomalies()?)
            } else {
                None
            };
            Ok((st, found))
        })
        .py_err(py)?;
    let d = PyDict::new(py);
    d.set_item("segments", st.segments)?;
    d.set_item("sealed_segments", st.sealed_segments)?;
    d.set_item("events", st.events)?;
    d.set_item("bytes", st.bytes)?;
    d.set_item("first_lsn", st.first_lsn)?;
    d.set_item("head_lsn", st.head_lsn)?;
    d.set_item("head_digest", st.head_digest.to_hex())?;
    d.set_item("oldest_ts", opt_dt(py, st.oldest_ts)?)?;
    d.set_item("newest_ts", opt_dt(py, st.newest_ts)?)?;
    d.set_item("dropped_segments", st.dropped_segments)?;
    d.set_item("dropped_events", st.dropped_events)?;
    if let Some(a) = found {
        let ad = PyDict::new(py);
        ad.set_item("duplicate_run_started", a.duplicate_starts)?;
        ad.set_item("duplicate_run_finished", a.duplicate_finishes)?;
        ad.set_item("orphan_logs", a.orphan_logs)?;
        ad.set_item("finishes_without_start", a.finishes_without_start)?;
        d.set_item("anomalies", ad)?;
    }
    Ok(d)
}

/// Verify the log in `dir`: `ok` and the counts, or `ok: False` with the
/// first bad place. Errors other than corruption (no log, I/O) raise.
pub fn verify<'py>(
    py: Python<'py>,
    dir: &Path,
    expect: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let expect = match expect {
        Some(h) => Some(Digest::from_hex(h).ok_or_else(|| {
            errors::invalid_argument(py, format!("expect: {h:?} is not a 64-digit hex digest"))
        })?),
        None => None,
    };
    let d = PyDict::new(py);
    match py.detach(|| auditlog::verify(dir, expect, |_, _| {})) {
        Ok(r) => {
            d.set_item("ok", expect.is_none() || r.expect_found_at.is_some())?;
            d.set_item("segments", r.segments)?;
            d.set_item("events", r.events)?;
            d.set_item("bytes", r.bytes)?;
            d.set_item("first_lsn", r.first_lsn)?;
            d.set_item("head_lsn", r.head_lsn)?;
            d.set_item("head_digest", r.head_digest.to_hex())?;
            d.set_item("uncommitted_tail_bytes", r.uncommitted_tail_bytes)?;
            if let Some(e) = expect {
                d.set_item("expect", e.to_hex())?;
                d.set_item("expect_found_at", r.expect_found_at)?;
            }
        }
        Err(auditlog::Error::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            d.set_item("ok", false)?;
            d.set_item("segment", segment)?;
            d.set_item("offset", offset)?;
            d.set_item("reason", reason)?;
        }
        Err(e) => return Err(errors::to_py(py, e)),
    }
    Ok(d)
}

/// What a retention pass dropped.
pub fn retention_dict<'py>(py: Python<'py>, r: &RetentionReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("cutoff", datetime(py, r.cutoff)?)?;
    let segs = PyList::empty(py);
    for s in &r.dropped {
        let sd = PyDict::new(py);
        sd.set_item("segment", &s.name)?;
        sd.set_item("first_lsn", s.first_lsn)?;
        sd.set_item("events", s.count)?;
        sd.set_item("bytes", s.bytes)?;
        sd.set_item("oldest", datetime(py, s.min_ts)?)?;
        sd.set_item("newest", datetime(py, s.max_ts)?)?;
        segs.append(sd)?;
    }
    d.set_item("dropped_segments", segs)?;
    d.set_item("dropped_events", r.events())?;
    d.set_item("dropped_bytes", r.bytes())?;
    d.set_item("first_kept_lsn", r.first_kept_lsn)?;
    Ok(d)
}
