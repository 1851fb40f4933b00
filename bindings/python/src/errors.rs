//! Engine errors as Python exceptions. The classes live in Python
//! (python/auditlog/_errors.py) so that they can derive from both
//! `auditlog.Error` and the builtin a caller expects (`ValueError` for bad
//! input, `LookupError` for unknown ids, `OSError` for I/O); this module
//! looks them up once and raises them with their attributes set.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};
use pyo3::IntoPyObjectExt;

use auditlog::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS
        .get_or_try_init(py, || Ok(py.import("auditlog._errors")?.unbind()))
        .map(|m| m.bind(py))
}

/// An exception of class `name` (from `auditlog._errors`) with `message`
/// and keyword attributes.
pub fn raise(py: Python<'_>, name: &str, message: String, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = errors_module(py)?.getattr(name)?;
        let kwargs = PyDict::new(py);
        for (k, v) in attrs {
            kwargs.set_item(*k, v)?;
        }
        let exc = cls.call((message.clone(),), Some(&kwargs))?;
        Ok(PyErr::from_value(exc))
    })();
    // If the error classes cannot be reached (a broken install), say so
    // rather than hide the engine's message.
    made.unwrap_or_else(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!(
            "{message} (and auditlog._errors could not raise it: {e})"
        ))
    })
}

fn obj<'py, T>(py: Python<'py>, v: T) -> Py<PyAny>
where
    T: IntoPyObject<'py>,
{
    v.into_py_any(py).unwrap_or_else(|_| py.None())
}

/// The Python exception for an engine error.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { source, .. } => {
            let errno = source.raw_os_error();
            raise(py, "StorageError", msg, &[("errno", obj(py, errno))])
        }
        Error::NoLog(dir) => raise(py, "NoLogError", msg, &[("path", obj(py, dir))]),
        Error::NotALog(dir) => raise(py, "NotALogError", msg, &[("path", obj(py, dir))]),
        Error::Locked { dir, holder } => raise(
            py,
            "LockedError",
            msg,
            &[("path", obj(py, dir)), ("holder", obj(py, holder))],
        ),
        Error::Corrupt {
            segment,
            offset,
            reason,
        } => raise(
            py,
            "CorruptError",
            msg,
            &[
                ("segment", obj(py, segment)),
                ("offset", obj(py, offset)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::Manifest { path, reason } => raise(
            py,
            "CorruptError",
            msg,
            &[("segment", obj(py, path)), ("reason", obj(py, reason))],
        ),
        Error::InvalidEvent { index, source } => {
            invalid_event(py, Some(index), &source.field, &source.reason)
        }
        Error::EventTooLarge { index, .. } => raise(
            py,
            "InvalidEventError",
            msg,
            &[("index", obj(py, index)), ("field", obj(py, "event"))],
        ),
        Error::QueueFull { capacity, .. } => raise(
            py,
            "QueueFullError",
            msg,
            &[
                ("capacity", obj(py, capacity)),
                ("retryable", obj(py, true)),
            ],
        ),
        Error::BatchTooLarge { .. } => raise(py, "InvalidArgumentError", msg, &[]),
        Error::WriteRolledBack(_) => raise(
            py,
            "WriteRolledBackError",
            msg,
            &[("retryable", obj(py, true))],
        ),
        Error::Dropped => raise(py, "DroppedError", msg, &[]),
        Error::Closed => raise(py, "ClosedError", msg, &[]),
        Error::WriterFailed(_) => raise(py, "WriterFailedError", msg, &[]),
        Error::NotFound(_) => raise(py, "NotFoundError", msg, &[]),
        Error::InvalidArgument(_) => raise(py, "InvalidArgumentError", msg, &[]),
        Error::UnsupportedVersion { .. } => raise(py, "UnsupportedVersionError", msg, &[]),
        // Variants added by later engine versions: the base class, with
        // whether a retry may succeed.
        other => {
            let retryable = other.is_retryable();
            raise(py, "Error", msg, &[("retryable", obj(py, retryable))])
        }
    }
}

/// `ValueError` (as `InvalidEventError`) naming the field at fault, and
/// the event's place in a batch when there is one.
pub fn invalid_event(py: Python<'_>, index: Option<usize>, field: &str, reason: &str) -> PyErr {
    let msg = match index {
        Some(i) => format!("event {i}: field `{field}`: {reason}"),
        None => format!("field `{field}`: {reason}"),
    };
    raise(
        py,
        "InvalidEventError",
        msg,
        &[
            ("index", obj(py, index)),
            ("field", obj(py, field)),
            ("reason", obj(py, reason)),
        ],
    )
}

/// `ValueError` (as `InvalidArgumentError`) for a bad argument.
pub fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    raise(py, "InvalidArgumentError", message, &[])
}

/// The handle was opened before a `fork()`: refuse, never touch its locks.
pub fn forked(py: Python<'_>, dir: &std::path::Path) -> PyErr {
    raise(
        py,
        "ForkedError",
        format!(
            "this auditlog handle on {} was opened in the parent process before fork(); \
             it cannot be used in the child (its writer thread does not exist here). \
             Open a handle of the child's own with auditlog.open(...)",
            dir.display()
        ),
        &[],
    )
}

/// The store was closed.
pub fn closed(py: Python<'_>) -> PyErr {
    raise(
        py,
        "ClosedError",
        "the auditlog store is closed".into(),
        &[],
    )
}

/// A feature this build lacks.
pub fn unsupported(py: Python<'_>, message: &str) -> PyErr {
    raise(py, "UnsupportedError", message.into(), &[])
}

/// Map an engine result to a Python one.
pub trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
