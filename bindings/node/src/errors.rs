//! Error codes across the boundary.
//!
//! napi-rs rejects a promise of async work with a plain `Error` whose
//! status it picks itself, so the code travels in the message instead:
//! every error this addon raises reads `AUDITLOG_<CODE>: <message>`. The
//! TypeScript layer (ts/errors.ts) turns that prefix into an `Error`
//! subclass with a `code` property, and keeps the message after it.

use auditlog::Error;

/// What went wrong, as JavaScript sees it (`err.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A file operation failed (disk full, permissions, ...).
    Io,
    /// The folder holds no log and creation was not asked for.
    NoLog,
    /// The folder has files but is not an auditlog folder.
    NotALog,
    /// Another writer holds the folder.
    Locked,
    /// Stored data fails its checks (CRC, chain, manifest).
    Corrupt,
    /// A stored file has a format version this build does not read (never
    /// mistaken for damage: nothing of it is cut or changed).
    UnsupportedVersion,
    /// A bad event or row: the message names the field.
    InvalidEvent,
    /// A bad option or argument.
    InvalidArgument,
    /// The ingest queue is full (fail-fast policy) or dropped the events.
    QueueFull,
    /// The store (or log) is closed.
    Closed,
    /// A block write failed and was cut back: those events are not
    /// stored, the log carries on; append them again.
    WriteRolledBack,
    /// The writer stopped after an I/O failure; reopen the store.
    WriterFailed,
    /// A named run does not exist.
    NotFound,
    /// A full-text query does not parse, or search is unavailable.
    Search,
    /// Anything else (a bug: please report it).
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "AUDITLOG_IO",
            Code::NoLog => "AUDITLOG_NO_LOG",
            Code::NotALog => "AUDITLOG_NOT_A_LOG",
            Code::Locked => "AUDITLOG_LOCKED",
            Code::Corrupt => "AUDITLOG_CORRUPT",
            Code::UnsupportedVersion => "AUDITLOG_UNSUPPORTED_VERSION",
            Code::InvalidEvent => "AUDITLOG_INVALID_EVENT",
            Code::InvalidArgument => "AUDITLOG_INVALID_ARGUMENT",
            Code::QueueFull => "AUDITLOG_QUEUE_FULL",
            Code::Closed => "AUDITLOG_CLOSED",
            Code::WriteRolledBack => "AUDITLOG_WRITE_ROLLED_BACK",
            Code::WriterFailed => "AUDITLOG_WRITER_FAILED",
            Code::NotFound => "AUDITLOG_NOT_FOUND",
            Code::Search => "AUDITLOG_SEARCH",
            Code::Internal => "AUDITLOG_INTERNAL",
        }
    }
}

/// An error for JavaScript with `code` and a message.
pub fn coded(code: Code, message: impl AsRef<str>) -> napi::Error {
    napi::Error::from_reason(format!("{}: {}", code.as_str(), message.as_ref()))
}

/// The code of an engine error.
pub fn code_of(e: &Error) -> Code {
    // The engine's error enum is non-exhaustive: a variant added later is
    // reported as internal until it is mapped here.
    match e {
        Error::Io { .. } => Code::Io,
        Error::NoLog(_) => Code::NoLog,
        Error::NotALog(_) => Code::NotALog,
        Error::Locked { .. } => Code::Locked,
        Error::Corrupt { .. } | Error::Manifest { .. } => Code::Corrupt,
        Error::UnsupportedVersion { .. } => Code::UnsupportedVersion,
        Error::InvalidEvent { .. } | Error::EventTooLarge { .. } => Code::InvalidEvent,
        Error::QueueFull { .. } | Error::Dropped => Code::QueueFull,
        Error::Closed => Code::Closed,
        Error::WriterFailed(_) => Code::WriterFailed,
        Error::NotFound(_) => Code::NotFound,
        Error::InvalidArgument(_) | Error::BatchTooLarge { .. } => Code::InvalidArgument,
        Error::WriteRolledBack(_) => Code::WriteRolledBack,
        _ => Code::Internal,
    }
}

/// An engine error for JavaScript.
pub fn engine(e: Error) -> napi::Error {
    coded(code_of(&e), e.to_string())
}

/// The error every call on a closed store gets.
pub fn closed() -> napi::Error {
    coded(Code::Closed, "the store is closed")
}

/// A bad argument, naming it.
pub fn invalid(message: impl AsRef<str>) -> napi::Error {
    coded(Code::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_prefix_the_message() {
        let e = engine(Error::NotFound("run \"x\"".into()));
        assert_eq!(e.reason, "AUDITLOG_NOT_FOUND: not found: run \"x\"");
        let e = engine(Error::Closed);
        assert!(e.reason.starts_with("AUDITLOG_CLOSED: "));
    }

    #[test]
    fn another_format_version_is_not_corruption() {
        let e = Error::UnsupportedVersion {
            what: "segment".into(),
            found: 9,
            supported: 2,
        };
        assert_eq!(code_of(&e), Code::UnsupportedVersion);
        let e = Error::Manifest {
            path: "MANIFEST".into(),
            reason: "bad".into(),
        };
        assert_eq!(code_of(&e), Code::Corrupt);
    }
}
