//! `auditlog._native`: the PyO3 extension under the Python package
//! `auditlog` (python/auditlog/). The Python layer adds the idiomatic
//! surface (context managers, keyword defaults, asyncio, the adapters);
//! this crate does everything that touches the engine, with the GIL
//! released whenever the disk is touched or a query runs.
//!
//! No panic crosses into Python: PyO3 turns a panic inside a method into
//! a `PanicException`, and the code here returns errors instead of
//! panicking on input.

mod batch;
mod calls;
mod convert;
mod direct;
mod errors;
mod exact;
mod failures;
mod faults;
mod fork;
mod inner;
mod iter;
mod options;
mod pending;
#[cfg(feature = "search")]
mod search;
mod served;
mod stage;
mod stats;
mod store;
mod time;
mod views;

use pyo3::prelude::*;

// A single append allocates a dozen small strings on the Python thread that
// the stage's flusher thread frees after encoding them: glibc's malloc and
// free were a seventh of the calling thread's time on that cross-thread
// pattern (docs/benchmarks.md, "Python binding"). mimalloc serves the
// extension's Rust code only, not Python's objects.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whether this build has full-text search (the `search` cargo feature).
const HAS_SEARCH: bool = cfg!(feature = "search");

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    fork::install_child_hook();
    m.add("HAS_SEARCH", HAS_SEARCH)?;
    m.add("MAX_EVENT_BYTES", auditlog::event::MAX_EVENT_BYTES)?;
    m.add("MAX_BATCH_EVENTS", store::MAX_BATCH_EVENTS)?;
    m.add("ENGINE_VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<store::Store>()?;
    m.add_class::<served::Served>()?;
    // Test-only, not a stable API (faults.rs).
    m.add_class::<faults::Faults>()?;
    m.add_class::<views::Run>()?;
    m.add_class::<views::LogEntry>()?;
    m.add_class::<views::ErrorGroup>()?;
    m.add_class::<views::Hit>()?;
    m.add_class::<iter::ReplayIter>()?;
    m.add_class::<iter::TailIter>()?;
    m.add_function(wrap_pyfunction!(store::verify_dir, m)?)?;
    // Test-only, not a stable API (tests/test_direct.py).
    m.add_function(wrap_pyfunction!(store::event_bytes_py, m)?)?;
    m.add_function(wrap_pyfunction!(iter::replay_dir, m)?)?;
    m.add_function(wrap_pyfunction!(time::to_micros_py, m)?)?;
    m.add_function(wrap_pyfunction!(time::from_micros_py, m)?)?;
    m.add_function(wrap_pyfunction!(fork::fork_generation, m)?)?;
    Ok(())
}
