//! Seal to index, per sealed segment, for the sustained mode. The
//! once-a-second samples of "sealed segments without an index" count only
//! the segments still in the log, and retention drops this run's segments
//! 0.3-1.3 s after they seal (3 simulated days kept, 30 days a minute), so
//! they cannot see a lag longer than that (docs/benchmarks.md, "Index lag,
//! lag39 round"). Here the bench's own seal hook notes when each segment
//! sealed; the sampler looks every 20 ms for its `STEM.idx` and takes the
//! time the image was renamed into place from the file's status-change
//! time (a rename sets it; the kernel's coarse clock, within a tick of
//! 1-10 ms), so the figure does not depend on the polling.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use auditlog::SealHook;

/// Seals noted by the hook, taken by the sampler.
#[derive(Default)]
pub struct SealClock {
    sealed: Mutex<Vec<(PathBuf, SystemTime)>>,
}

impl SealClock {
    /// The seal hook to register on the log's `Config`.
    pub fn hook(self: &Arc<Self>) -> SealHook {
        let me = self.clone();
        Arc::new(move |meta| {
            let mut g = me.sealed.lock().unwrap_or_else(|p| p.into_inner());
            g.push((meta.path.clone(), SystemTime::now()));
        })
    }
}

/// What the sampler found.
#[derive(Debug, Clone, Default)]
pub struct SealToIndex {
    /// Per segment whose image was stored: seconds from the phase's start
    /// to its seal, and milliseconds from its seal to its image stored.
    pub indexed: Vec<(f64, f64)>,
    /// Of those, stored before the next segment sealed (at most one roll
    /// behind).
    pub within_one_roll: u64,
    /// Sealed segments retention dropped before their image was stored.
    pub dropped_unindexed: u64,
    /// Sealed segments still without an image when the phase ended.
    pub waiting_at_end: u64,
}

impl SealToIndex {
    /// Seal to index at quantile `q` of the segments indexed, ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let mut v: Vec<f64> = self.indexed.iter().map(|x| x.1).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let i = ((v.len() as f64 * q) as usize).min(v.len() - 1);
        Some(v[i])
    }
}

/// A sealed segment waiting for its image.
struct Waiting {
    seg: PathBuf,
    sealed: SystemTime,
    /// When the next segment sealed, once it has.
    next: Option<SystemTime>,
}

/// The sampler's side: call [`Tracker::poll`] often, [`Tracker::end`] once.
pub struct Tracker {
    clock: Arc<SealClock>,
    start: SystemTime,
    waiting: Vec<Waiting>,
    out: SealToIndex,
}

impl Tracker {
    pub fn new(clock: Arc<SealClock>) -> Tracker {
        Tracker {
            clock,
            start: SystemTime::now(),
            waiting: Vec::new(),
            out: SealToIndex::default(),
        }
    }

    pub fn poll(&mut self) {
        let new = std::mem::take(&mut *self.clock.sealed.lock().unwrap_or_else(|p| p.into_inner()));
        for (seg, sealed) in new {
            if let Some(prev) = self.waiting.last_mut().filter(|w| w.next.is_none()) {
                prev.next = Some(sealed);
            }
            self.waiting.push(Waiting {
                seg,
                sealed,
                next: None,
            });
        }
        let mut kept = Vec::with_capacity(self.waiting.len());
        for w in std::mem::take(&mut self.waiting) {
            match stored_at(&w.seg) {
                Some(at) => {
                    let ms = at
                        .duration_since(w.sealed)
                        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
                    let t = w
                        .sealed
                        .duration_since(self.start)
                        .map_or(0.0, |d| d.as_secs_f64());
                    self.out.indexed.push((t, ms));
                    if w.next.is_none_or(|n| at <= n) {
                        self.out.within_one_roll += 1;
                    }
                }
                None if !w.seg.exists() => self.out.dropped_unindexed += 1,
                None => kept.push(w),
            }
        }
        self.waiting = kept;
    }

    pub fn end(mut self) -> SealToIndex {
        self.poll();
        self.out.waiting_at_end = self.waiting.len() as u64;
        self.out.indexed.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.out
    }
}

/// When `seg`'s image was renamed into place (its status-change time), if
/// it has one.
fn stored_at(seg: &std::path::Path) -> Option<SystemTime> {
    let md = std::fs::metadata(seg.with_extension("idx")).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let d = std::time::Duration::new(md.ctime().max(0) as u64, md.ctime_nsec().max(0) as u32);
        Some(SystemTime::UNIX_EPOCH + d)
    }
    #[cfg(not(unix))]
    {
        md.modified().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images stored before and after the next seal, one segment dropped
    /// unindexed, one still waiting: each counted where it belongs.
    #[test]
    fn seals_and_images_are_matched_per_segment() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(SealClock::default());
        let mut tr = Tracker::new(clock.clone());
        let seal = |n: u64| {
            let path = dir.path().join(format!("{n:04}.seg"));
            std::fs::write(&path, b"x").unwrap();
            let g = &mut *clock.sealed.lock().unwrap();
            g.push((path.clone(), SystemTime::now()));
            path
        };
        let idx = |p: &PathBuf| std::fs::write(p.with_extension("idx"), b"i").unwrap();
        let s1 = seal(1);
        idx(&s1); // before segment 2 seals
        std::thread::sleep(std::time::Duration::from_millis(50));
        let s2 = seal(2);
        tr.poll();
        let s3 = seal(3);
        std::thread::sleep(std::time::Duration::from_millis(50));
        idx(&s2); // after segment 3 sealed
        std::fs::remove_file(&s3).unwrap(); // dropped, never indexed
        seal(4);
        let out = tr.end();
        assert_eq!(out.indexed.len(), 2, "{out:?}");
        assert_eq!(out.within_one_roll, 1, "{out:?}");
        assert_eq!(out.dropped_unindexed, 1, "{out:?}");
        assert_eq!(out.waiting_at_end, 1, "{out:?}");
        // File times are the kernel's coarse clock (a tick, 1-10 ms).
        assert!(out.indexed[1].1 >= 30.0, "{out:?}");
    }
}
