//! TEST-ONLY: scripted I/O faults for the writer, so that Python tests can
//! provoke what the engine's own fault tests provoke
//! (tests/engine/reliability_faults.rs): EIO and ENOSPC on write and on
//! fdatasync, short writes, failing create, rename and remove.
//!
//! Python reaches it as `auditlog._testing.Faults`, handed to
//! `auditlog.open(dir, _faults=...)`. It is not a stable API and not part of
//! the public stubs: it exists so that the binding's failure paths are
//! tested, not for production use. It plugs into the engine's I/O seam
//! (`Config.io.faults`, `auditlog::internals::io::FaultInjector`), which
//! production code leaves empty.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};

use auditlog::internals::io::{Fault, FaultInjector, IoOp};

use crate::errors;

/// The file operations a rule can target, by their Python names.
const OPS: [&str; 5] = ["write", "fdatasync", "create", "rename", "remove"];

fn op_name(op: IoOp) -> &'static str {
    match op {
        IoOp::Write(_) => "write",
        IoOp::Sync => "fdatasync",
        IoOp::Create => "create",
        IoOp::Rename => "rename",
        IoOp::Remove => "remove",
    }
}

#[derive(Debug)]
struct Rule {
    on: &'static str,
    errno: i32,
    /// Write this many bytes before failing (writes only).
    short: Option<usize>,
    /// Matching operations let through before the rule fires.
    skip: u64,
    /// Times it still fires (`None`: until cleared).
    times: Option<u64>,
}

#[derive(Debug, Default)]
struct Script {
    rules: Mutex<Vec<Rule>>,
    /// Faults injected, by "operation errno" (e.g. "fdatasync EIO").
    injected: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn errno_name(errno: i32) -> String {
    match errno {
        libc::EIO => "EIO".into(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::EDQUOT => "EDQUOT".into(),
        libc::EROFS => "EROFS".into(),
        libc::EACCES => "EACCES".into(),
        other => format!("errno {other}"),
    }
}

impl FaultInjector for Script {
    fn check(&self, op: IoOp, _path: &Path) -> Option<Fault> {
        let name = op_name(op);
        let mut rules = lock(&self.rules);
        let rule = rules
            .iter_mut()
            .find(|r| r.on == name && r.times != Some(0))?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        if let Some(t) = rule.times.as_mut() {
            *t -= 1;
        }
        let (errno, short) = (rule.errno, rule.short);
        drop(rules);
        *lock(&self.injected)
            .entry(format!("{name} {}", errno_name(errno)))
            .or_default() += 1;
        let err = io::Error::from_raw_os_error(errno);
        Some(match (op, short) {
            (IoOp::Write(_), Some(n)) => Fault::Short(n, err),
            _ => Fault::Fail(err),
        })
    }
}

/// Scripted I/O faults for tests (not a stable API). Pass it to
/// `auditlog.open(dir, _faults=faults)`; arm rules with `fail`, lift them
/// with `clear`.
#[pyclass(frozen, module = "auditlog._native", name = "_Faults")]
pub struct Faults {
    script: Arc<Script>,
}

impl Faults {
    /// The injector for the engine's configuration.
    pub fn injector(&self) -> Arc<dyn FaultInjector> {
        self.script.clone()
    }
}

fn parse_errno(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<i32> {
    if let Ok(s) = v.cast::<PyString>() {
        return match s.to_str()? {
            "EIO" => Ok(libc::EIO),
            "ENOSPC" => Ok(libc::ENOSPC),
            "EDQUOT" => Ok(libc::EDQUOT),
            "EROFS" => Ok(libc::EROFS),
            "EACCES" => Ok(libc::EACCES),
            other => Err(errors::invalid_argument(
                py,
                format!("errno: {other:?}; use \"EIO\", \"ENOSPC\", \"EDQUOT\", \"EROFS\", \"EACCES\" or a number"),
            )),
        };
    }
    if v.is_instance_of::<PyInt>() {
        let n: i32 = v.extract()?;
        if n > 0 {
            return Ok(n);
        }
    }
    Err(errors::invalid_argument(
        py,
        "errno: expected a name such as \"EIO\" or a positive number".into(),
    ))
}

#[pymethods]
impl Faults {
    #[new]
    fn new() -> Faults {
        Faults {
            script: Arc::new(Script::default()),
        }
    }

    /// Make operation `on` ("write", "fdatasync", "create", "rename",
    /// "remove") fail with `errno` ("EIO", "ENOSPC", ... or a number),
    /// after letting `skip` such operations through, `times` times (None:
    /// until `clear`). `short=n` (writes only): write the first n bytes,
    /// then fail. Rules are tried in the order armed.
    #[pyo3(signature = (on, errno, *, times = None, skip = 0, short = None))]
    fn fail(
        &self,
        py: Python<'_>,
        on: &str,
        errno: &Bound<'_, PyAny>,
        times: Option<u64>,
        skip: u64,
        short: Option<usize>,
    ) -> PyResult<()> {
        let Some(on) = OPS.iter().copied().find(|o| *o == on) else {
            return Err(errors::invalid_argument(
                py,
                format!("on: {on:?}; use one of {OPS:?}"),
            ));
        };
        if short.is_some() && on != "write" {
            return Err(errors::invalid_argument(
                py,
                "short: only a write can be short".into(),
            ));
        }
        let errno = parse_errno(py, errno)?;
        lock(&self.script.rules).push(Rule {
            on,
            errno,
            short,
            skip,
            times,
        });
        Ok(())
    }

    /// Lift every rule ("the disk works again").
    fn clear(&self) {
        lock(&self.script.rules).clear();
    }

    /// Faults injected so far, by "operation ERRNO" (e.g. "fdatasync EIO").
    fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.script.injected).clone()
    }
}
