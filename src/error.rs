//! Typed errors of the library. The binary turns them into messages.

use std::path::PathBuf;

/// A bad event: which field, and what is wrong with it. The caller adds the
/// place (line number, batch index) it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct EventError {
    pub field: String,
    pub reason: String,
}

impl EventError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no auditlog at {0} (it does not exist; `auditlog ingest --dir` creates one)")]
    NoLog(PathBuf),
    #[error("{0} is not an auditlog folder (it has files but no MANIFEST); refusing to touch it")]
    NotALog(PathBuf),
    #[error("{dir} is already open for writing by {holder}; only one writer at a time (readers may open it read-only)")]
    Locked { dir: PathBuf, holder: String },
    #[error("corrupt log: segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: String,
        offset: u64,
        reason: String,
    },
    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("event {index}: {source}")]
    InvalidEvent {
        index: usize,
        #[source]
        source: EventError,
    },
    #[error("event {index} encodes to {bytes} bytes; the limit is {max}")]
    EventTooLarge {
        index: usize,
        bytes: usize,
        max: usize,
    },
    #[error("ingest queue is full ({capacity} batches waiting)")]
    QueueFull { capacity: usize },
    #[error("event was dropped: the ingest queue was full and the policy is drop-and-count")]
    Dropped,
    #[error("the log is closed")]
    Closed,
    #[error("the writer stopped after an I/O failure and must be reopened: {0}")]
    WriterFailed(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(
        "format version {found} in {what} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        what: String,
        found: u32,
        supported: u32,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attach a context sentence to an I/O result.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}
