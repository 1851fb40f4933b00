//! Fork safety. gunicorn and Celery fork worker processes; a child
//! inherits the parent's memory, so its copy of an open store still looks
//! open, but the store's writer and indexer threads do not exist in the
//! child, and any lock one of the parent's threads held at the fork stays
//! locked forever. So:
//!
//! - a `pthread_atfork` child handler bumps a generation counter (one
//!   atomic store, safe in a forked child); every store remembers the
//!   generation it was opened in and refuses to work in another one, before
//!   it touches any lock (`ForkedError`, never a deadlock);
//! - a handle dropped in a child is leaked, not closed: closing would join
//!   threads that are not there and close descriptors twice;
//! - the Python package's `os.register_at_fork(after_in_child=...)` hook
//!   calls [`close_inherited_fds`] for each open store, so that the child
//!   does not keep the parent's writer lock (an flock, shared by the
//!   inherited descriptor) alive after the parent closes its handle: the
//!   child, or a new parent handle, can then open the log.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use pyo3::prelude::*;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn on_fork_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Register the child handler (once per process).
pub fn install_child_hook() {
    INSTALL.call_once(|| {
        // SAFETY: pthread_atfork only records the three function pointers;
        // the child handler is an `extern "C"` function with no captured
        // state that performs one atomic add, which is async-signal-safe
        // and so allowed in the child of a multithreaded fork.
        unsafe {
            libc::pthread_atfork(None, None, Some(on_fork_child));
        }
    });
}

/// The number of forks this process descends through since the module
/// loaded (0 in the process that loaded it).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// `_native.fork_generation()` (for tests).
#[pyfunction]
pub fn fork_generation() -> u64 {
    generation()
}

/// Close this process's descriptors of files inside `dir` (the log folder
/// of a handle inherited through fork). Only called in a forked child, for
/// handles that are leaked there and so never use or close them again.
/// Linux: read from /proc/self/fd; elsewhere nothing is closed.
pub fn close_inherited_fds(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut fds = Vec::new();
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            if target.starts_with(dir) {
                fds.push(fd);
            }
        }
    }
    // The directory listing's own descriptor is closed by now (`entries`
    // is consumed), so every fd collected is one the store inherited.
    for fd in &fds {
        // SAFETY: `fd` was open in this process when listed and belongs to
        // a store that was leaked in this child (see the module docs):
        // nothing else holds it, so closing it cannot pull a descriptor out
        // from under live code.
        unsafe {
            libc::close(*fd);
        }
    }
    fds.len()
}
