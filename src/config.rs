//! How a log is opened: durability, queue, segment and batch limits,
//! redaction, and the hooks derived data hangs on the writer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::frame::MAX_FRAME_BODY;
use crate::io::WriterIo;
use crate::layout::SegmentMeta;
use crate::redact::RedactionPolicy;
use crate::retention::RetentionReport;

/// When the writer makes appended events durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Group commit: fdatasync after every batch, before its receipts
    /// complete.
    EveryBatch,
    /// fdatasync at most this often; receipts complete at that sync.
    Interval(Duration),
    /// Never sync on the hot path (the OS writes back when it likes);
    /// receipts complete once written. Sealing still syncs.
    Never,
}

/// What `append` does when the ingest queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait for room.
    Block,
    /// Return [`Error::QueueFull`] at once.
    FailFast,
    /// Drop the events, count them, and return a dropped receipt.
    DropAndCount,
}

/// Called with each segment just sealed (indexes build on it).
pub type SealHook = Arc<dyn Fn(&SegmentMeta) + Send + Sync>;
/// Called after retention dropped segments (derived data follows it).
pub type RetainHook = Arc<dyn Fn(&RetentionReport) + Send + Sync>;

/// How a log is opened.
#[derive(Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Appends (each a batch) that may wait in the queue.
    pub queue_capacity: usize,
    pub on_full: FullPolicy,
    /// A segment is rolled when it would grow past this.
    pub segment_max_bytes: u64,
    /// The writer closes a group-commit block at this many bytes.
    pub max_batch_bytes: usize,
    /// Create the folder and log if missing.
    pub create: bool,
    /// The file-operation seam (fault injection in tests).
    pub io: WriterIo,
    pub seal_hooks: Vec<SealHook>,
    pub retain_hooks: Vec<RetainHook>,
    /// Fields dropped or hashed before encoding (docs/reliability.md).
    pub redaction: Option<Arc<RedactionPolicy>>,
}

pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;
/// Smallest segment cap accepted: it must hold the largest event.
pub const MIN_SEGMENT_MAX_BYTES: u64 = 64 * 1024;

impl Config {
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            durability: Durability::EveryBatch,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            on_full: FullPolicy::Block,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            create: true,
            io: WriterIo::default(),
            seal_hooks: Vec::new(),
            retain_hooks: Vec::new(),
            redaction: None,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.queue_capacity == 0 || self.queue_capacity > 1 << 24 {
            return Err(Error::InvalidArgument(format!(
                "queue_capacity {} must be within 1..=16777216",
                self.queue_capacity
            )));
        }
        if self.segment_max_bytes < MIN_SEGMENT_MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "segment_max_bytes {} is below the minimum {MIN_SEGMENT_MAX_BYTES}",
                self.segment_max_bytes
            )));
        }
        if self.max_batch_bytes < 4096 || self.max_batch_bytes > 64 << 20 {
            return Err(Error::InvalidArgument(format!(
                "max_batch_bytes {} must be within 4 KiB..=64 MiB",
                self.max_batch_bytes
            )));
        }
        Ok(())
    }

    /// Largest final block the writer can produce: a damaged tail this
    /// small may be a torn write even if a commit record survived in it.
    pub(crate) fn torn_tail_limit(&self) -> u64 {
        (self.max_batch_bytes + MAX_FRAME_BODY + 4096) as u64
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("queue_capacity", &self.queue_capacity)
            .field("on_full", &self.on_full)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .finish_non_exhaustive()
    }
}
