//! Typed errors. [`Error`] is what every call of the crate fails with;
//! [`EventError`] says what is wrong with one event. Full-text search has
//! its own, `fulltext::FullTextError`.

use std::path::PathBuf;

/// A bad event: which field, and what is wrong with it. The caller adds the
/// place (line number, batch index) it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct EventError {
    /// The field at fault (`kind`, `ts`, `inputs.q`, ... or `json` for the
    /// text as a whole).
    pub field: String,
    /// What is wrong with it, for a person.
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

/// Everything the crate can fail with. Matching code must allow for
/// variants added later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed; `context` names the file and what
    /// was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The log folder does not exist and the open may not create it.
    #[error("no auditlog at {0} (it does not exist; `auditlog ingest --dir` creates one)")]
    NoLog(PathBuf),
    /// The folder holds files but no MANIFEST: it is not a log, and nothing
    /// in it is touched.
    #[error("{0} is not an auditlog folder (it has files but no MANIFEST); refusing to touch it")]
    NotALog(PathBuf),
    /// Another writer holds the folder's lock.
    #[error("{dir} is already open for writing by {holder}; only one writer at a time (readers may open it read-only)")]
    Locked { dir: PathBuf, holder: String },
    /// Stored data fails a check: the segment, the byte offset and why.
    /// Nothing is skipped or repaired silently (`auditlog verify` names
    /// the first bad place).
    #[error("corrupt log: segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: String,
        offset: u64,
        reason: String,
    },
    /// The MANIFEST cannot be read or does not fit the folder.
    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    /// A stored file has a format version this build does not read. There
    /// is no in-place upgrade (docs/format.md, "Version history"): the
    /// message says which build can read the folder.
    #[error(
        "format version {found} in {what} is not supported (this build reads version {supported}); {}",
        version_advice(*found, *supported)
    )]
    UnsupportedVersion {
        what: String,
        found: u32,
        supported: u32,
    },
    /// Event `index` of an append is invalid; nothing of that append is
    /// stored.
    #[error("event {index}: {source}")]
    InvalidEvent {
        index: usize,
        #[source]
        source: EventError,
    },
    /// Event `index` of an append encodes bigger than the record limit.
    #[error("event {index} encodes to {bytes} bytes; the limit is {max}")]
    EventTooLarge {
        index: usize,
        bytes: usize,
        max: usize,
    },
    /// One append carries more events or bytes than the log accepts in one
    /// call (`Config::max_append_events`, `Config::max_append_bytes`):
    /// split it.
    #[error("an append of {events} events ({bytes} bytes) is over the limit of {max_events} events and {max_bytes} bytes per call; split it")]
    BatchTooLarge {
        events: usize,
        bytes: usize,
        max_events: usize,
        max_bytes: usize,
    },
    /// The ingest queue is full (policy `FullPolicy::FailFast`): nothing
    /// was queued; retry later.
    #[error("ingest queue is full ({entries} appends, {bytes} bytes waiting; limits {capacity} appends, {max_bytes} bytes)")]
    QueueFull {
        entries: usize,
        bytes: usize,
        capacity: usize,
        max_bytes: usize,
    },
    /// The events were dropped and counted (policy
    /// `FullPolicy::DropAndCount`); a receipt's `wait` says so.
    #[error("event was dropped: the ingest queue was full and the policy is drop-and-count")]
    Dropped,
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A block write failed and was cut back cleanly: the events of this
    /// receipt are not stored, nothing stored was harmed, and the log
    /// carries on. Retry them (once the cause, say a full disk, is gone).
    #[error("the write failed and was cut back; the log carries on and the events may be appended again: {0}")]
    WriteRolledBack(String),
    /// The writer stopped after a failure it cannot undo (a failed
    /// fdatasync, a write it could not cut back): no append succeeds until
    /// the log is reopened, which recovers from what is on disk.
    #[error("the writer stopped after an I/O failure and must be reopened: {0}")]
    WriterFailed(String),
    /// A run (or other named thing) is not stored.
    #[error("not found: {0}")]
    NotFound(String),
    /// An argument is outside what the call accepts (a limit, a policy).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the same call may succeed if made again later, unchanged: a
    /// full queue, dropped events, or a write that was cut back cleanly.
    /// Bad input, a stopped writer, a closed log or damaged data are not
    /// (the last two need a reopen or an operator).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::QueueFull { .. } | Error::Dropped | Error::WriteRolledBack(_)
        )
    }
}

/// Attach a context sentence to an I/O result.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}

/// What a user can do about a folder of another format version.
fn version_advice(found: u32, supported: u32) -> &'static str {
    if found < supported {
        "it was written by an older auditlog: read it with that release (e.g. `auditlog replay` to export its events); this build does not upgrade a folder in place (docs/format.md, \"Version history\")"
    } else {
        "it was written by a newer auditlog: read it with that release or a later one"
    }
}
