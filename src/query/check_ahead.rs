//! A long list's chain checks shared with a second thread.
//!
//! Every block a run view reads from is checked against the chain first,
//! once per process (docs/integrity.md): the first list over a stretch of
//! the log (a one-hour window: ~4 MB of a day's segment) hashes every
//! block it touches, about a third of that list's time ("Queries, win40
//! round" in docs/benchmarks.md). Here, when a list has many runs and its
//! blocks are not checked yet, a second thread checks them too, in the
//! list's order, a little ahead of the caller, while the caller makes the
//! run views from the first run on, checking as it always does: it then
//! finds most blocks checked when it gets to them.
//!
//! Nothing is answered from a block the caller did not see checked: the
//! second thread only marks blocks whose check passed (the same
//! [`crate::index::Image::check_block_unless`], so the same bit any check
//! sets) and drops its errors; a block it could not pass is checked again
//! by the caller when a run needs it, which gives the error exactly as
//! before, for the same run. So answers and errors are those of the
//! caller alone; only who hashes a block changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::amend::Item;
use super::View;
use crate::error::Result;

/// Runs a list needs before a second thread is worth starting (a thread
/// costs tens of microseconds; a run's view about one).
const MIN_RUNS: usize = 512;
/// Every how many runs the list is sampled for blocks not checked yet.
const SAMPLE: usize = 32;

/// How far the caller got; the second thread stops where it begins.
pub(super) struct CheckAhead {
    caller_at: AtomicUsize,
}

impl CheckAhead {
    /// The caller is about to make the view of run `i` of the list
    /// (`usize::MAX`: it is done, or stopped at an error).
    pub(super) fn reached(&self, i: usize) {
        self.caller_at.store(i, Ordering::Relaxed);
    }
}

/// Whether this process may run on more than one core (asked once: the
/// standard library reads the cgroup limits each time).
fn cores_to_share() -> bool {
    static MANY: OnceLock<bool> = OnceLock::new();
    *MANY.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

impl View<'_> {
    /// Run `make` (which makes the list's run views in order, telling
    /// `CheckAhead` where it is), with a second thread checking the blocks
    /// of `items` in the list's order, a little ahead of the caller, when
    /// the list is long and some of its blocks are not checked yet.
    pub(super) fn with_check_ahead(
        &self,
        items: &[Item<'_>],
        make: impl FnOnce(&CheckAhead) -> Result<()>,
    ) -> Result<()> {
        let at = CheckAhead {
            caller_at: AtomicUsize::new(0),
        };
        if items.len() < MIN_RUNS || !cores_to_share() || !self.some_unchecked(items) {
            return make(&at);
        }
        std::thread::scope(|s| {
            let at = &at;
            // No thread (the system refused one): the caller checks all,
            // as it would anyway.
            let _ = std::thread::Builder::new()
                .name("auditlog-check".into())
                .spawn_scoped(s, move || self.check_ahead_of_caller(items, at));
            make(at)
        })
    }

    /// Whether a sample of the runs' start frames lies in blocks not
    /// checked yet.
    fn some_unchecked(&self, items: &[Item<'_>]) -> bool {
        items.iter().step_by(SAMPLE).any(|i| match i {
            Item::Indexed(h) => {
                let src = &self.srcs[h.src];
                !src.img.block_checked(self.lazy(*h).start_off())
            }
            Item::Amended(_) => false,
        })
    }

    /// Check the blocks of the runs' start and local finish frames in the
    /// caller's order, a little ahead of it: from the runs after the
    /// first few it touches (whose blocks it checks itself, at once) on,
    /// jumping ahead of the caller should it catch up. Errors are
    /// dropped: the caller meets them itself.
    fn check_ahead_of_caller(&self, items: &[Item<'_>], at: &CheckAhead) {
        // The block last checked here, by image: the frames of a list lie
        // in runs of the same block, found without a search.
        let mut last: Option<(usize, u64, u64)> = None;
        let mut check = |src_i: usize, off: u64| {
            if last.is_some_and(|(s, a, b)| s == src_i && a <= off && off < b) {
                return;
            }
            let src = &self.srcs[src_i];
            if self.check_block_of(src, off).is_ok() {
                last = src.img.block_span(off).map(|(a, b)| (src_i, a, b));
            }
        };
        let mut i = 2 * super::TOUCH_AHEAD;
        while let Some(item) = items.get(i) {
            let caller = at.caller_at.load(Ordering::Relaxed);
            if caller == usize::MAX {
                return;
            }
            if caller.saturating_add(super::TOUCH_AHEAD) > i {
                // The caller caught up: go on ahead of it.
                i = caller.saturating_add(2 * super::TOUCH_AHEAD);
                continue;
            }
            if let Item::Indexed(h) = item {
                let r = self.lazy(*h);
                check(h.src, r.start_off());
                if r.has_local_finish() {
                    check(h.src, r.finish_off());
                }
            }
            i += 1;
        }
    }
}
