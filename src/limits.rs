//! Every limit of the engine, in one place (docs/operations.md, "Limits").
//! An input over a limit is refused with an error naming the limit; a
//! limit a [`crate::Config`] can change is checked when the log opens.

/// Largest `run_id`, in bytes.
pub const MAX_RUN_ID_BYTES: usize = 256;
/// Largest short string field (skill_id, caller_id, channel_id, status,
/// event_type, parent_run_id), in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Largest whole event (its JSON line, or its encoded body), in bytes.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Deepest nesting accepted inside `inputs`, `payload` or unknown fields.
pub const MAX_JSON_DEPTH: usize = 64;

/// Events one `append_batch` may carry, by default.
pub const DEFAULT_MAX_APPEND_EVENTS: usize = 256 * 1024;
/// Encoded bytes one `append_batch` may carry, by default.
pub const DEFAULT_MAX_APPEND_BYTES: usize = 64 << 20;
/// Ceiling of either append limit a configuration may set.
pub const MAX_APPEND_EVENTS: usize = 1 << 24;
pub const MAX_APPEND_BYTES: usize = 1 << 30;

/// Appends (each a batch) that may wait in the ingest queue, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;
/// Ceiling of the queue's entry limit.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 24;
/// Encoded bytes that may wait in the ingest queue, by default: bounds the
/// memory a burst of large batches can pin, whatever their number.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 256 << 20;
/// Floor of the queue's byte limit: one largest event always fits.
pub const MIN_QUEUE_MAX_BYTES: usize = 2 * MAX_EVENT_BYTES;

/// A segment is rolled when it would grow past this, by default.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Smallest segment cap accepted (an event bigger than the cap gets a
/// segment of its own).
pub const MIN_SEGMENT_MAX_BYTES: u64 = 64 * 1024;
/// Largest segment cap accepted: below 4 GiB, so that every offset and
/// count inside one segment's index fits the u32 fields of its format.
pub const MAX_SEGMENT_MAX_BYTES: u64 = (4 << 30) - 2 * MAX_EVENT_BYTES as u64;

/// The writer closes a group-commit block at this many bytes, by default.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Bounds of the block size a configuration may set.
pub const MIN_MAX_BATCH_BYTES: usize = 4096;
pub const MAX_MAX_BATCH_BYTES: usize = 64 << 20;

const _: () = assert!(DEFAULT_MAX_APPEND_BYTES <= MAX_APPEND_BYTES);
const _: () = assert!(DEFAULT_MAX_APPEND_EVENTS <= MAX_APPEND_EVENTS);
const _: () = assert!(DEFAULT_QUEUE_MAX_BYTES >= MIN_QUEUE_MAX_BYTES);
const _: () = assert!(DEFAULT_QUEUE_CAPACITY <= MAX_QUEUE_CAPACITY);
const _: () = assert!(DEFAULT_SEGMENT_MAX_BYTES <= MAX_SEGMENT_MAX_BYTES);
