//! The C ABI of auditlog: opaque handles, UTF-8 JSON across the boundary,
//! a status code from every call with a thread-local error message, and
//! one free function for every buffer handed out. The header
//! (`include/auditlog.h`) is generated from this file by cbindgen.
//!
//! A store handle is a log opened in this process (`auditlog_open`) or a
//! connection to `auditlog serve` (`auditlog_connect`): the same type and
//! the same functions, so a program switches modes in one line.
//!
//! Threads: every function may be called from any thread at once on the
//! same store, except `auditlog_close`, which must be the last call on a
//! store (the caller makes sure no other call on it is in flight or comes
//! later). The handle holds no lock during a call: a call clones a shared
//! reference to the store and works on that, so a slow query never keeps
//! an append (or another query's start) waiting on this layer. (The
//! engine serialises queries among themselves on its index lock; appends
//! never take it.)

// The exports take raw pointers from C. Each documents what it needs of
// them (valid, NUL-terminated, made by this library, released once) and
// checks what can be checked (NULL); marking them `unsafe fn` would change
// nothing for a C caller.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod options;
mod query;
mod status;
mod target;

use std::ffi::{c_char, CStr};
use std::sync::Arc;
use std::time::Duration;

use auditlog::{AuditStore, Event, Filter, LsnRange, Receipt};
use auditlog_client::Client;

use crate::options::OpenOptions;
use crate::query::{Answer, MAX_REQUEST_BYTES};
pub use crate::status::AuditlogStatus;
use crate::status::{guard, last_error_ptr, CallResult, Failure};
use crate::target::{Appended, ConnectOptions, Target};

/// `auditlog_append` flag: a `run_log` or `run_finished` whose run was
/// never started fails with `AUDITLOG_STATUS_NOT_FOUND` and nothing is written.
pub const AUDITLOG_APPEND_REQUIRE_RUN: u32 = 1;

/// Largest JSONL batch accepted by `auditlog_append`, in bytes.
pub const AUDITLOG_MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Most events in one `auditlog_append` call.
pub const AUDITLOG_MAX_BATCH_EVENTS: usize = 65_536;

/// An open log with its indexes, or a connection to `auditlog serve`
/// (opaque). Made by `auditlog_open` or `auditlog_connect`, ended by
/// `auditlog_close`.
pub struct AuditlogStore {
    target: Arc<Target>,
}

/// The promise of one `auditlog_append` (opaque): wait on it for
/// durability. Released by `auditlog_receipt_free`.
pub struct AuditlogReceipt {
    state: ReceiptState,
}

enum ReceiptState {
    /// Queued in this process: durable once the log syncs it.
    Pending(Receipt),
    /// Already durable: the server acknowledged it.
    Durable(LsnRange),
}

fn text<'a>(p: *const c_char, what: &str) -> CallResult<&'a str> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that lives for the
    // whole call (documented on every function that takes one).
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|e| Failure::invalid(format!("{what} is not UTF-8: {e}")))
}

fn bytes<'a>(p: *const u8, len: usize, what: &str) -> CallResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes `len` readable bytes at `p` that live for
    // the whole call (documented on every function that takes a buffer).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

fn store_ref<'a>(s: *const AuditlogStore) -> CallResult<&'a AuditlogStore> {
    // SAFETY: a non-NULL store is a pointer made by auditlog_open and not
    // yet closed (the caller's contract on every function).
    unsafe { s.as_ref() }.ok_or_else(|| Failure::invalid("store is NULL"))
}

/// Write `out` through `slot` if the caller gave one.
fn put<T>(slot: *mut T, out: T) {
    if !slot.is_null() {
        // SAFETY: a non-NULL out pointer is writable (the caller's contract).
        unsafe { slot.write(out) };
    }
}

/// Bytes in front of every buffer handed out: its whole allocation size,
/// so that `auditlog_free` can release it without being told.
const BUF_HEAD: usize = 8;

/// Hand `data` to the caller (freed with `auditlog_free`), NUL-terminated
/// so that a JSON answer is also a C string.
fn give(data: &[u8], out: *mut *mut c_char, out_len: *mut usize) -> CallResult {
    if out.is_null() {
        return Err(Failure::invalid("out is NULL"));
    }
    let total = BUF_HEAD + data.len() + 1;
    let mut v = Vec::with_capacity(total);
    v.extend_from_slice(&(total as u64).to_le_bytes());
    v.extend_from_slice(data);
    v.push(0);
    debug_assert_eq!(v.len(), total);
    let base = Box::into_raw(v.into_boxed_slice()).cast::<u8>();
    // SAFETY: `base` points at `total` > BUF_HEAD bytes just allocated.
    put(out, unsafe { base.add(BUF_HEAD) }.cast::<c_char>());
    put(out_len, data.len());
    Ok(())
}

/// Open (or create) the log in folder `dir` and start its indexer.
///
/// - `dir`: NUL-terminated UTF-8 path.
/// - `options_json`: NUL-terminated JSON object, or NULL for defaults.
///   Keys (all optional): `durability` (`"every_batch"` default: a
///   receipt completes after fdatasync; `"never"`; `"interval:MS"`),
///   `queue_capacity`, `on_full` (`"block"` default, `"fail_fast"`,
///   `"drop"`), `segment_max_bytes`, `max_batch_bytes`, `create` (default
///   true). Unknown keys are an error.
/// - `out`: receives the store handle on success (untouched on failure).
///
/// `AUDITLOG_STATUS_LOCKED` when another process writes the folder.
#[no_mangle]
pub extern "C" fn auditlog_open(
    dir: *const c_char,
    options_json: *const c_char,
    out: *mut *mut AuditlogStore,
) -> AuditlogStatus {
    guard(|| {
        let dir = text(dir, "dir")?;
        let opts = if options_json.is_null() {
            None
        } else {
            Some(text(options_json, "options_json")?)
        };
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        let cfg = OpenOptions::parse(opts)?.store_config(dir)?;
        let store = AuditStore::open(cfg)?;
        give_store(Target::Embedded(Box::new(store)), out);
        Ok(())
    })
}

fn give_store(target: Target, out: *mut *mut AuditlogStore) {
    let handle = Box::new(AuditlogStore {
        target: Arc::new(target),
    });
    put(out, Box::into_raw(handle));
}

/// Connect to `auditlog serve` listening on the Unix socket `path`
/// (`DIR/auditlog.sock` unless the server was given `--socket`). The
/// handle is an `AuditlogStore` like `auditlog_open`'s: every function
/// takes it and answers as on a log opened here, so a program switches
/// between embedded and served mode in one line. Many processes may be
/// connected to one server at once.
///
/// - `path`: NUL-terminated UTF-8 path of the socket.
/// - `options_json`: NUL-terminated JSON object, or NULL for defaults.
///   Keys (all optional): `retry_for_ms` (default 30000, at most 3600000:
///   how long one call keeps retrying, with the same idempotency key,
///   while the server is busy, restarting or unreachable),
///   `max_idle_connections` (default 8). Unknown keys are an error.
/// - `out`: receives the handle on success (untouched on failure).
///
/// Checks the server's protocol version once, retrying as above while
/// no server answers; `AUDITLOG_STATUS_IO` when none did in time.
///
/// Served mode differs in what a server implies: `auditlog_append`
/// returns once the server has made the events durable (the receipt is
/// complete already), and a write is stored exactly once however often it
/// was retried. A call still failing after `retry_for_ms` returns
/// `AUDITLOG_STATUS_IO` (server unreachable) or
/// `AUDITLOG_STATUS_QUEUE_FULL` (server busy); the handle stays usable and
/// reconnects on the next call (to a restarted server, say).
/// `auditlog_close` lets go of the connections; the server keeps running.
#[no_mangle]
pub extern "C" fn auditlog_connect(
    path: *const c_char,
    options_json: *const c_char,
    out: *mut *mut AuditlogStore,
) -> AuditlogStatus {
    guard(|| {
        let path = text(path, "path")?;
        let opts = if options_json.is_null() {
            None
        } else {
            Some(text(options_json, "options_json")?)
        };
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        let cfg = ConnectOptions::parse(opts)?.client_config(path)?;
        let client = Client::with_config(cfg)?;
        give_store(Target::Served(client), out);
        Ok(())
    })
}

/// Flush, stop the indexer, close the log and free the handle (served:
/// close the connections; the server keeps running). The handle is
/// invalid afterwards, whatever the status. Waits for calls still in
/// flight on other threads (the caller should not make any: see the
/// file comment). NULL is a no-op.
#[no_mangle]
pub extern "C" fn auditlog_close(store: *mut AuditlogStore) -> AuditlogStatus {
    guard(|| {
        if store.is_null() {
            return Ok(());
        }
        // SAFETY: made by Box::into_raw in auditlog_open; ownership comes
        // back here exactly once (the caller's contract).
        let handle = unsafe { Box::from_raw(store) };
        let mut arc = handle.target;
        loop {
            match Arc::try_unwrap(arc) {
                Ok(t) => return Ok(t.close()?),
                Err(shared) => {
                    arc = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    })
}

/// Append events: `json` holds `len` bytes of UTF-8, one event (contract
/// JSON) per line (JSONL; one line is one event; empty lines are
/// skipped). All or nothing: any bad line fails the call with
/// `AUDITLOG_STATUS_INVALID_ARGUMENT` naming the line and field, and nothing is
/// written. The events get consecutive LSNs in line order.
///
/// - `flags`: 0, or `AUDITLOG_APPEND_REQUIRE_RUN`.
/// - `out_receipt`: NULL (fire and forget), or receives a receipt to wait
///   on and release with `auditlog_receipt_free`.
///
/// Returns once the events are queued (never waits for the disk, except
/// under the `block` queue policy when the queue is full). On a served
/// handle (`auditlog_connect`) it returns once the server has made them
/// durable, and the receipt is already complete; a call larger than the
/// server's request limit is sent as several requests (each stored once,
/// all or nothing), whose LSNs may then not be consecutive.
#[no_mangle]
pub extern "C" fn auditlog_append(
    store: *const AuditlogStore,
    json: *const u8,
    len: usize,
    flags: u32,
    out_receipt: *mut *mut AuditlogReceipt,
) -> AuditlogStatus {
    guard(|| {
        let s = store_ref(store)?;
        if len > AUDITLOG_MAX_BATCH_BYTES {
            return Err(Failure::invalid(format!(
                "batch of {len} bytes; the limit is {AUDITLOG_MAX_BATCH_BYTES}"
            )));
        }
        let events = parse_lines(bytes(json, len, "json")?)?;
        let require_run = flags & AUDITLOG_APPEND_REQUIRE_RUN != 0;
        let state = match s.target.append(&events, require_run)? {
            // Nothing was queued (no allowlist is set here, so only if
            // every event was skipped); the caller then gets no receipt.
            Appended::Nothing => None,
            Appended::Pending(r) => Some(ReceiptState::Pending(r)),
            Appended::Durable(lsns) => Some(ReceiptState::Durable(lsns)),
        };
        if !out_receipt.is_null() {
            let r = state.map_or(std::ptr::null_mut(), |state| {
                Box::into_raw(Box::new(AuditlogReceipt { state }))
            });
            put(out_receipt, r);
        }
        Ok(())
    })
}

fn parse_lines(all: &[u8]) -> CallResult<Vec<Event>> {
    let mut events = Vec::new();
    for (i, line) in all.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if events.len() == AUDITLOG_MAX_BATCH_EVENTS {
            return Err(Failure::invalid(format!(
                "more than {AUDITLOG_MAX_BATCH_EVENTS} events in one call"
            )));
        }
        let ev = auditlog::event::json::parse_event(line)
            .map_err(|e| Failure::invalid(format!("line {}: {e}", i + 1)))?;
        events.push(ev);
    }
    if events.is_empty() {
        return Err(Failure::invalid("no event in json"));
    }
    Ok(events)
}

/// Wait until the receipt's events are durable (per the log's durability
/// policy), at most `timeout_ms` milliseconds (negative: no limit).
/// `AUDITLOG_STATUS_TIMEOUT` if time ran out first (wait again). On success the
/// events' first and last LSN go to `out_first_lsn` / `out_last_lsn`
/// (each may be NULL). The receipt stays valid either way.
#[no_mangle]
pub extern "C" fn auditlog_receipt_wait(
    receipt: *const AuditlogReceipt,
    timeout_ms: i64,
    out_first_lsn: *mut u64,
    out_last_lsn: *mut u64,
) -> AuditlogStatus {
    guard(|| {
        // SAFETY: a non-NULL receipt was made by auditlog_append and not
        // yet freed (the caller's contract).
        let r = unsafe { receipt.as_ref() }.ok_or_else(|| Failure::invalid("receipt is NULL"))?;
        let receipt = match &r.state {
            ReceiptState::Durable(lsns) => {
                put(out_first_lsn, lsns.first);
                put(out_last_lsn, lsns.last);
                return Ok(());
            }
            ReceiptState::Pending(receipt) => receipt,
        };
        let outcome = match u64::try_from(timeout_ms) {
            Err(_) => receipt.wait(),
            Ok(ms) => match receipt.wait_timeout(Duration::from_millis(ms)) {
                Some(o) => o,
                None => {
                    return Err(Failure::new(
                        AuditlogStatus::Timeout,
                        format!("receipt not durable after {ms} ms"),
                    ))
                }
            },
        };
        let lsns = outcome?;
        put(out_first_lsn, lsns.first);
        put(out_last_lsn, lsns.last);
        Ok(())
    })
}

/// Release a receipt (NULL is a no-op). Does not wait.
#[no_mangle]
pub extern "C" fn auditlog_receipt_free(receipt: *mut AuditlogReceipt) {
    if receipt.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in auditlog_append; released once.
    let _ = std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(receipt) }));
}

/// Make everything appended so far durable and visible to queries; the
/// next LSN goes to `out_next_lsn` (may be NULL). Served: everything
/// acknowledged is durable already; the server syncs anyway and reports
/// its log's next LSN.
#[no_mangle]
pub extern "C" fn auditlog_flush(
    store: *const AuditlogStore,
    out_next_lsn: *mut u64,
) -> AuditlogStatus {
    guard(|| {
        let s = store_ref(store)?;
        put(out_next_lsn, s.target.flush()?);
        Ok(())
    })
}

/// Answer one query. `request` holds `len` bytes of a JSON object whose
/// `op` names the query; on success `*out` receives a NUL-terminated JSON
/// answer (its length, without the NUL, in `*out_len` unless NULL) that
/// the caller releases with `auditlog_free`.
///
/// Runs are contract run objects (`id`, `skill_id`, ..., instants as RFC
/// 3339 UTC with microseconds). Instants in requests are integer
/// microseconds since the Unix epoch. A filter is an object with the
/// optional keys `skill`, `caller`, `channel`, `status`, `parent`,
/// `top_level`, `since`, `until` (started_at, inclusive),
/// `include_dry_run`.
///
/// | op | keys | answer |
/// |---|---|---|
/// | `get_run` | `id` | the run; `AUDITLOG_STATUS_NOT_FOUND` if unknown |
/// | `logs` | `id` | `[{"seq","ts","event_type","payload"}]` in seq order |
/// | `list` | `filter`, `limit`, `offset` | `[run]`, started_at desc, id desc |
/// | `count` | `filter` | `{"count":N}` |
/// | `children` | `id`, `include_dry_run` | `[run]` |
/// | `chain` | `id` | `[run, parent, ...]`; `AUDITLOG_STATUS_NOT_FOUND` if unknown |
/// | `last_run` | `skills`, `include_failed` | `{"skill":"<started_at>" or null}` |
/// | `finished_before` | `before`, `limit` | `[run]` finished before, newest start first |
/// | `errors` | `since`, `until` | `[error group]` |
///
/// With `"encoding":"rows"`, answers made of runs (`get_run`, `list`,
/// `children`, `chain`, `finished_before`) come as binary rows instead of
/// JSON (`*out_len` bytes; a NUL follows but the rows may hold NULs too):
/// a u32 count, then per run the strings id, skill_id, caller_id,
/// channel_id, parent_run_id, inputs (JSON text), status, output, error
/// (each a u32 byte length and UTF-8 bytes), i64 started_at and i64
/// finished_at (µs since the epoch; i64 minimum while running), u8
/// dry_run, u64 tool_calls, input_tokens, output_tokens, thinking_tokens,
/// f64 runtime_seconds; all little-endian.
#[no_mangle]
pub extern "C" fn auditlog_query(
    store: *const AuditlogStore,
    request: *const u8,
    len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
) -> AuditlogStatus {
    guard(|| {
        let s = store_ref(store)?;
        if len > MAX_REQUEST_BYTES {
            return Err(Failure::invalid(format!(
                "request of {len} bytes; the limit is {MAX_REQUEST_BYTES}"
            )));
        }
        let (req, enc) = query::parse_request(bytes(request, len, "request")?)?;
        match query::answer(&s.target, req, enc)? {
            Answer::Text(t) => give(t.as_bytes(), out, out_len),
            Answer::Bytes(b) => give(&b, out, out_len),
        }
    })
}

/// Drop whole sealed segments whose newest event is older than
/// `cutoff_micros` (and their index files); the active segment is always
/// kept (served: the server drops them, as it holds the log). `*out`
/// receives `{"purged_runs":N,"dropped_segments":N,"dropped_events":N,
/// "dropped_bytes":N,"first_kept_lsn":N}` (release with `auditlog_free`).
/// `purged_runs` counts the runs no longer shown.
#[no_mangle]
pub extern "C" fn auditlog_purge_older_than(
    store: *const AuditlogStore,
    cutoff_micros: i64,
    out: *mut *mut c_char,
    out_len: *mut usize,
) -> AuditlogStatus {
    guard(|| {
        let s = store_ref(store)?;
        let before = Filter {
            until: Some(cutoff_micros.saturating_sub(1)),
            include_dry_run: true,
            ..Filter::default()
        };
        let n0 = s.target.count_runs(&before)?;
        let rep = s.target.purge_older_than(cutoff_micros)?;
        let n1 = s.target.count_runs(&before)?;
        let answer = format!(
            "{{\"purged_runs\":{},\"dropped_segments\":{},\"dropped_events\":{},\"dropped_bytes\":{},\"first_kept_lsn\":{}}}",
            n0.saturating_sub(n1),
            rep.segments,
            rep.events,
            rep.bytes,
            rep.first_kept_lsn
        );
        give(answer.as_bytes(), out, out_len)
    })
}

/// Release a buffer this library handed out (`auditlog_query`,
/// `auditlog_purge_older_than`). NULL is a no-op. Every buffer must be
/// released exactly once, and only with this function.
#[no_mangle]
pub extern "C" fn auditlog_free(buf: *mut c_char) {
    if buf.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `buf` was made by `give`: BUF_HEAD bytes before it hold
        // the size of the whole boxed slice starting there; released once.
        unsafe {
            let base = buf.cast::<u8>().sub(BUF_HEAD);
            let total = base.cast::<[u8; BUF_HEAD]>().read_unaligned();
            let total = u64::from_le_bytes(total) as usize;
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                base, total,
            )));
        }
    });
}

/// The calling thread's last error message (NUL-terminated UTF-8), or
/// NULL if its last call succeeded. Owned by the library: valid until the
/// thread's next `auditlog_*` call; do not free it.
#[no_mangle]
pub extern "C" fn auditlog_last_error() -> *const c_char {
    std::panic::catch_unwind(last_error_ptr).unwrap_or(std::ptr::null())
}

/// The library's version (static NUL-terminated text; do not free).
#[no_mangle]
pub extern "C" fn auditlog_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}
