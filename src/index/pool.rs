//! Buffers kept across index builds, so that a build does not allocate,
//! fault in and free its tables and sections anew each time.
//!
//! Why: a build of one 64 MiB segment fills ~15-25 MB of tables and
//! sections and frees them all at its end. With glibc's default malloc
//! settings (what a Rust program embedding the library on glibc gets)
//! that free space joins the top of the heap and is handed back to the
//! kernel (`brk` trimming), and the next build faults every page of it in
//! again, zeroed: the flat posting lists of the idx41 round read 50-90%
//! slower under glibc's defaults for that reason alone
//! (docs/benchmarks.md, "Index lag, idx41 round" and "idx42 round").
//! Kept here, the buffers are cleared and refilled instead: no trimming,
//! no fresh-page faults, whatever the allocator.
//!
//! Bounded: at most [`KEEP_BUILDERS`] builders' sets and
//! [`KEEP_FINISHES`] finishes' sets, [`KEEP_BYTES`] of capacity in all; a
//! set larger than [`KEEP_ONE_MAX`] (the build of an unusually large
//! segment) is freed, not kept. Released whole by
//! [`release`] (the background indexer calls it when no seal came for a
//! while, so an idle log keeps nothing).

#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::sync::{Mutex, MutexGuard};

use super::build::{BuilderBufs, FinishBufs};

/// Capacity kept in all, in bytes. A builder's set for a 64 MiB segment
/// of the load run's workload holds ~7-9 MB, a finish's ~11-15 MB.
pub const KEEP_BYTES: usize = 40 << 20;

/// A set holding more than this is freed when its build ends.
pub const KEEP_ONE_MAX: usize = 24 << 20;

/// Builders' sets kept. The indexer scans up to one segment per core
/// while it finishes the oldest: in a steady stream of seals a pass takes
/// one or two sets and gives them back; more cores than that allocate the
/// rest, and free them at the end of their build.
pub const KEEP_BUILDERS: usize = 2;

/// Finishes' sets kept: finishes run one at a time, in log order.
pub const KEEP_FINISHES: usize = 1;

/// Something the pool keeps: knows its capacity in bytes.
pub(crate) trait Kept {
    fn kept_bytes(&self) -> usize;
}

/// The kept sets and their bounds (one global instance; tests make their
/// own with small bounds).
pub(crate) struct Pool {
    builders: Vec<BuilderBufs>,
    finishes: Vec<FinishBufs>,
    bytes: usize,
    keep_bytes: usize,
    keep_one_max: usize,
    keep_builders: usize,
    keep_finishes: usize,
}

impl Pool {
    pub(crate) const fn new(
        keep_bytes: usize,
        keep_one_max: usize,
        keep_builders: usize,
        keep_finishes: usize,
    ) -> Pool {
        Pool {
            builders: Vec::new(),
            finishes: Vec::new(),
            bytes: 0,
            keep_bytes,
            keep_one_max,
            keep_builders,
            keep_finishes,
        }
    }

    /// Keep `set` if it fits the bounds; else hand it back (to be freed
    /// by the caller, outside any lock).
    fn give<T: Kept>(
        &mut self,
        set: T,
        max_sets: usize,
        list: fn(&mut Pool) -> &mut Vec<T>,
    ) -> Option<T> {
        let n = set.kept_bytes();
        if n == 0
            || n > self.keep_one_max
            || self.bytes + n > self.keep_bytes
            || list(self).len() >= max_sets
        {
            return Some(set);
        }
        self.bytes += n;
        list(self).push(set);
        None
    }

    fn take<T: Kept>(&mut self, list: fn(&mut Pool) -> &mut Vec<T>) -> Option<T> {
        // The most recently kept: its pages are the likeliest in cache.
        let set = list(self).pop()?;
        self.bytes -= set.kept_bytes();
        Some(set)
    }

    pub(crate) fn give_builder(&mut self, b: BuilderBufs) -> Option<BuilderBufs> {
        self.give(b, self.keep_builders, |p| &mut p.builders)
    }

    pub(crate) fn take_builder(&mut self) -> Option<BuilderBufs> {
        self.take(|p| &mut p.builders)
    }

    pub(crate) fn give_finish(&mut self, f: FinishBufs) -> Option<FinishBufs> {
        self.give(f, self.keep_finishes, |p| &mut p.finishes)
    }

    pub(crate) fn take_finish(&mut self) -> Option<FinishBufs> {
        self.take(|p| &mut p.finishes)
    }

    /// Bytes of capacity kept.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Everything kept, taken out (to be freed outside the lock).
    pub(crate) fn drain(&mut self) -> (Vec<BuilderBufs>, Vec<FinishBufs>) {
        self.bytes = 0;
        (
            std::mem::take(&mut self.builders),
            std::mem::take(&mut self.finishes),
        )
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new(
    KEEP_BYTES,
    KEEP_ONE_MAX,
    KEEP_BUILDERS,
    KEEP_FINISHES,
));

fn pool() -> MutexGuard<'static, Pool> {
    // A panic while holding the lock left only a list of buffers behind.
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A builder's buffers: kept ones (cleared by their user), or new.
pub(crate) fn take_builder() -> BuilderBufs {
    pool().take_builder().unwrap_or_default()
}

/// Keep a builder's buffers for the next build (or free them).
pub(crate) fn give_builder(b: BuilderBufs) {
    let refused = pool().give_builder(b);
    drop(refused);
}

/// A finish's buffers: kept ones (cleared by their user), or new.
pub(crate) fn take_finish() -> FinishBufs {
    pool().take_finish().unwrap_or_default()
}

/// Keep a finish's buffers for the next build (or free them).
pub(crate) fn give_finish(f: FinishBufs) {
    let refused = pool().give_finish(f);
    drop(refused);
}

/// Bytes of capacity the builds keep now (at most [`KEEP_BYTES`]).
pub fn kept_bytes() -> usize {
    pool().bytes()
}

/// Free every buffer the builds keep. The next build allocates anew.
pub fn release() {
    let drained = pool().drain();
    drop(drained);
}

/// Bytes of capacity of a `Vec`.
pub(crate) fn cap_of<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// `v` emptied, with room for `n` items (its capacity kept).
pub(crate) fn cleared<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut v = std::mem::take(v);
    v.clear();
    v.reserve(n);
    v
}
