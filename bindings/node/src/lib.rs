//! The native half of `@auditlog/node`: a napi-rs addon over the engine's
//! gateway API ([`auditlog::AuditStore`]). The TypeScript half (ts/) is
//! what users import; it turns instants into `Date`s, errors into `Error`
//! subclasses, and batches of the cursors below into async iterators.
//!
//! Rules this crate keeps (README.md, "How it works"):
//! - Nothing here calls back into JavaScript from another thread: there is
//!   no threadsafe function, so nothing keeps the process alive after
//!   `close()`. Slow work (flush, verify, retain, stats, replay and tail
//!   batches) runs as napi async work on libuv's thread pool and resolves
//!   a promise.
//! - Results cross as JSON text that JavaScript parses in one call (cheaper
//!   than building objects property by property through napi).
//! - Every error carries a code (see the `errors` module); no panic crosses into
//!   Node (napi-rs catches unwinds at every entry point).

#![deny(clippy::unwrap_used, clippy::expect_used)]
// napi-derive registers exported functions only outside `cfg(test)`, so the
// unit-test build sees them as unused.
#![cfg_attr(test, allow(dead_code))]

mod calls;
mod cursor;
mod errors;
mod json_out;
mod options;
#[cfg(feature = "search")]
mod search;
mod served;
mod store;
mod tasks;
pub mod toolcall;

use napi_derive::napi;

// The engine allocates per event on the JavaScript thread (encoding, query
// answers) and frees on its writer and indexer threads; mimalloc handles
// that pattern far better than glibc's malloc (a query's allocations were
// a third of its time). It serves the addon's Rust code only, not Node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whether this build has full-text search (the `search` cargo feature).
#[napi]
pub fn has_search() -> bool {
    cfg!(feature = "search")
}

/// `"release"` or `"debug"`: how this addon was compiled (benchmarks
/// refuse a debug build).
#[napi]
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Parse an instant as the engine does (integer µs since the epoch, or
/// RFC 3339 with any offset) into µs; for instants given as strings.
#[napi]
pub fn parse_instant(text: String) -> napi::Result<f64> {
    auditlog::event::time::parse_instant(&text)
        .map(|us| us as f64)
        .map_err(|reason| {
            errors::coded(
                errors::Code::InvalidArgument,
                format!("instant {text:?}: {reason}"),
            )
        })
}
