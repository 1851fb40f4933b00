//! Status codes, the thread-local error message, and the guard every
//! export runs in (no panic crosses the boundary).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use auditlog::Error;

/// What a call did. `AUDITLOG_STATUS_OK` is 0; every other value is a failure
/// whose message `auditlog_last_error()` returns on the same thread.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditlogStatus {
    /// Success.
    Ok = 0,
    /// A bad argument: a NULL pointer, text that is not UTF-8, JSON that
    /// does not parse, an event that breaks the contract, a bad option.
    InvalidArgument = 1,
    /// The run (or other named thing) does not exist.
    NotFound = 2,
    /// An I/O error (the message names the file and the operation).
    Io = 3,
    /// The log folder is open for writing by another process.
    Locked = 4,
    /// Stored data failed a check (the message names segment and offset).
    Corrupt = 5,
    /// The ingest queue was full and the policy is fail-fast.
    QueueFull = 6,
    /// The events were dropped (queue full, policy drop-and-count).
    Dropped = 7,
    /// The store (or its writer) was closed.
    Closed = 8,
    /// The writer stopped after an I/O failure; reopen the log.
    WriterFailed = 9,
    /// A wait ran out of time before the receipt completed (not an error
    /// of the events: wait again).
    Timeout = 10,
    /// A format version this build cannot read.
    Unsupported = 11,
    /// A bug: a panic inside the library was caught at the boundary.
    Panic = 12,
    /// Anything else (the message says what).
    Internal = 13,
    /// A write failed and was cut back; the log carries on: the events of
    /// that call were not stored, and retrying the call is safe.
    WriteRolledBack = 14,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// A failure on its way out: the status and its message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: AuditlogStatus,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            status: AuditlogStatus::InvalidArgument,
            message: message.into(),
        }
    }
    pub fn new(status: AuditlogStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match &e {
            Error::Io { .. } => AuditlogStatus::Io,
            Error::NoLog(_) | Error::NotFound(_) => AuditlogStatus::NotFound,
            Error::NotALog(_)
            | Error::InvalidArgument(_)
            | Error::InvalidEvent { .. }
            | Error::EventTooLarge { .. }
            | Error::BatchTooLarge { .. } => AuditlogStatus::InvalidArgument,
            Error::Locked { .. } => AuditlogStatus::Locked,
            Error::Corrupt { .. } | Error::Manifest { .. } => AuditlogStatus::Corrupt,
            Error::QueueFull { .. } => AuditlogStatus::QueueFull,
            Error::Dropped => AuditlogStatus::Dropped,
            Error::Closed => AuditlogStatus::Closed,
            Error::WriterFailed(_) => AuditlogStatus::WriterFailed,
            Error::WriteRolledBack(_) => AuditlogStatus::WriteRolledBack,
            Error::UnsupportedVersion { .. } => AuditlogStatus::Unsupported,
            #[allow(unreachable_patterns)]
            _ => AuditlogStatus::Internal,
        };
        Failure::new(status, e.to_string())
    }
}

pub(crate) type CallResult<T = ()> = Result<T, Failure>;

fn set_last_error(message: Option<&str>) {
    let c = message.map(|m| {
        // An interior NUL cannot cross as C text: show it escaped.
        CString::new(m.replace('\0', "\\0")).unwrap_or_default()
    });
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

/// Run an export's body: clear the thread's error, catch panics, turn a
/// failure into its status and message.
pub(crate) fn guard(body: impl FnOnce() -> CallResult) -> AuditlogStatus {
    set_last_error(None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => AuditlogStatus::Ok,
        Ok(Err(f)) => {
            set_last_error(Some(&f.message));
            f.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(Some(&format!(
                "internal error (a bug; please report): {what}"
            )));
            AuditlogStatus::Panic
        }
    }
}

/// The calling thread's last error message, or NULL when its last call
/// succeeded.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| match &*slot.borrow() {
        Some(c) => c.as_ptr(),
        None => std::ptr::null(),
    })
}
