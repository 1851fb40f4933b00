//! Typed errors of the export. Each names the place at fault: the log's
//! segment, the destination and object, or the manifest.

/// Everything an export or its check can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The log could not be read, or failed its own checks.
    #[error(transparent)]
    Log(#[from] auditlog::Error),
    /// The destination named on the command line or in options is unusable.
    #[error("destination {dest}: {reason}")]
    Destination { dest: String, reason: String },
    /// Reading, writing, listing or deleting an object failed.
    #[error("destination {dest}: {op} {path}: {source}")]
    Store {
        dest: String,
        op: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A Parquet file could not be written or read back.
    #[error("{path}: {reason}")]
    Parquet { path: String, reason: String },
    /// The export manifest in the destination is damaged or foreign.
    #[error("export manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    /// The log no longer continues what the destination holds (another
    /// log under the same id, or a rewritten one).
    #[error("the log does not continue its export in {dest}: {reason}")]
    Diverged { dest: String, reason: String },
    /// `verify-export` found a file or row that does not hold.
    #[error("export check failed: {place}: {reason}")]
    Mismatch { place: String, reason: String },
    /// Another export of this log is running.
    #[error("another export of the log in {0} is running (EXPORTED.lock is held); try again when it ends")]
    Busy(std::path::PathBuf),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

impl ExportError {
    pub(crate) fn mismatch(place: impl Into<String>, reason: impl Into<String>) -> ExportError {
        ExportError::Mismatch {
            place: place.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn parquet(path: impl Into<String>, reason: impl ToString) -> ExportError {
        ExportError::Parquet {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
