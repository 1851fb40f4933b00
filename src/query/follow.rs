//! The indexer's scan of the active segment, fed as its blocks commit, so
//! that when the segment seals only its last blocks are left to scan
//! before the image is finished and stored (docs/benchmarks.md, "Index
//! lag, lag34 round": a whole scan after the seal kept the images several
//! rolls behind a fast log).
//!
//! The scan is the first half of a sealed segment's build
//! ([`index::Scanned`]); fed in steps it makes the same image bytes as
//! one scan of the sealed segment. It lives on the indexer thread only:
//! queries index the active segment their own way (the engine's
//! in-memory chunks). Anything unexpected (the segment is not the one
//! followed, a check fails, the file cannot be mapped) drops the scan,
//! and the sealed segment is built from its file as before, which reports
//! what is wrong.

use crate::chain::Digest;
use crate::error::Result;
use crate::index::{self, Check, Scanned, KIND_SEALED};
use crate::layout::{map_file, SegmentMeta};
use crate::reader::LogReader;
use crate::segment::HEADER_SIZE;

/// The active segment's events scanned so far, as a sealed image's scan.
pub(crate) struct Follow {
    /// Which segment: its seq, first LSN and the chain digest before it.
    seq: u64,
    first_lsn: u64,
    prev_digest: Digest,
    check: Check,
    scanned: Scanned,
    /// The segment file, mapped as long as the scan has needed it.
    seg: Option<memmap2::Mmap>,
    /// Seen sealed once and kept for its build (see [`follow_active`]).
    kept: bool,
}

impl Follow {
    /// A scan of the active segment `meta` from its first block, reading
    /// its events as `check` says (the check of the whole segment's
    /// build, so the image matches one built after the seal).
    pub(crate) fn begin(meta: &SegmentMeta, check: Check) -> Follow {
        Follow {
            seq: meta.seq,
            first_lsn: meta.first_lsn,
            prev_digest: meta.prev_digest,
            check,
            scanned: Scanned::begin(
                KIND_SEALED,
                meta.seq,
                HEADER_SIZE as u64,
                meta.first_lsn,
                meta.prev_digest,
            ),
            seg: None,
            kept: false,
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Is `meta` the segment this scan follows (the same seq, first LSN
    /// and chain start), with nothing cut from what it has read?
    pub(crate) fn is_of(&self, meta: &SegmentMeta) -> bool {
        meta.seq == self.seq
            && meta.first_lsn == self.first_lsn
            && meta.prev_digest == self.prev_digest
            && meta.data_len >= self.scanned.end().0
    }

    /// Scan what was committed to `meta` (the followed segment) since the
    /// last step. `Ok(false)`: nothing new. On an error, drop the scan.
    pub(crate) fn step(&mut self, meta: &SegmentMeta) -> Result<bool> {
        let (at, _, _) = self.scanned.end();
        if meta.data_len <= at || meta.count == 0 {
            return Ok(false);
        }
        if self
            .seg
            .as_ref()
            .is_none_or(|m| (m.len() as u64) < meta.data_len)
        {
            self.seg = map_file(&meta.path)?;
        }
        let seg = self.seg.as_deref().unwrap_or(&[]);
        if (seg.len() as u64) < meta.data_len {
            return Err(crate::error::Error::Corrupt {
                segment: meta.name.clone(),
                offset: seg.len() as u64,
                reason: "active segment is shorter than its committed length".into(),
            });
        }
        self.scanned
            .extend(meta, seg, meta.data_len, meta.digest, self.check)?;
        Ok(true)
    }

    /// The followed segment, now sealed as `meta`: its last blocks
    /// scanned, ready to finish like any sealed segment's scan. `None` if
    /// `meta` is not the segment followed or the scan fails (the caller
    /// then builds it from its file, which reports what is wrong).
    pub(crate) fn seal(mut self, meta: &SegmentMeta) -> Option<(memmap2::Mmap, index::Scanned)> {
        if !meta.sealed || !self.is_of(meta) {
            return None;
        }
        // The sealed file, mapped whole (with its footer): the engine
        // keeps this map for the queries' reads.
        let seg = map_file(&meta.path).ok()??;
        self.scanned
            .extend(meta, &seg, meta.data_len, meta.digest, self.check)
            .ok()?;
        Some((seg, self.scanned))
    }
}

/// One step of following `reader`'s active segment: begin a scan of it if
/// `follow` holds none (or that of an older segment, which sealed without
/// being asked for), then scan what it committed since. Returns whether
/// it read anything. A failed step drops the scan; the sealed segment is
/// then built from its file.
pub(crate) fn follow_active(
    reader: &LogReader,
    follow: &mut Option<Follow>,
    check_of: impl Fn(&SegmentMeta) -> Check,
) -> bool {
    let segs = reader.segments();
    let Some(active) = segs.last().filter(|s| !s.sealed) else {
        return false;
    };
    // A scan of a segment that sealed is kept for its build (the caller's
    // next `index_sealed`) unless a newer one is active and it is gone.
    // Kept once: the seal's wake-up is then on its way to the indexer,
    // whose next `index_sealed` uses it; a scan still here after that
    // (someone else built the image) is dropped.
    if let Some(f) = follow.as_mut() {
        if f.seq != active.seq {
            let sealed_now = segs.iter().any(|s| s.sealed && f.is_of(s));
            if sealed_now && !f.kept {
                f.kept = true;
                return false;
            }
            *follow = None;
        }
    }
    let f = follow.get_or_insert_with(|| Follow::begin(active, check_of(active)));
    if !f.is_of(active) {
        *follow = None;
        return false;
    }
    match f.step(active) {
        Ok(grew) => grew,
        Err(err) => {
            tracing::debug!(segment = %active.name, error = %err, "following the active segment failed");
            *follow = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;
    use crate::event::{Event, Micros, RunFinished, RunLog, RunStarted, ToolCall};
    use crate::query::engine::Engine;
    use crate::{Config, Durability, Log};

    const DAY: Micros = 86_400_000_000;
    const D0: Micros = 1_795_132_800_000_000;

    fn open(dir: &Path) -> Log {
        let mut cfg = Config::new(dir);
        cfg.durability = Durability::Never;
        Log::open(cfg).unwrap()
    }

    /// One batch of day `day`'s events: starts, tool calls, logs and
    /// finishes of runs of this batch, finishes of runs started the
    /// batch before (some of them in the day before: a finish whose
    /// start is in an older image), a duplicate start.
    fn batch(day: i64, b: i64) -> Vec<Event> {
        let t = |i: i64| D0 + day * DAY + b * 1_000_000 + i * 1_000;
        let mut evs = Vec::new();
        for i in 0..20 {
            let id = format!("r{day}-{b}-{i}");
            evs.push(Event::run_started(id.clone(), t(i), RunStarted::default()));
            let call = ToolCall {
                tool: format!("tool{}", i % 3),
                status: if i % 5 == 0 { "error" } else { "ok" }.into(),
                ..ToolCall::default()
            };
            evs.push(Event::tool_call(id.clone(), t(i) + 1, call));
            let log = RunLog {
                seq: 1,
                ..RunLog::default()
            };
            evs.push(Event::run_log(id.clone(), t(i) + 2, log));
            if i % 2 == 0 {
                let fin = RunFinished {
                    status: "completed".into(),
                    ..RunFinished::default()
                };
                evs.push(Event::run_finished(id, t(i) + 3, fin));
            }
        }
        let (pday, pb) = if b == 0 { (day - 1, 3) } else { (day, b - 1) };
        for i in (1..20).step_by(2) {
            let fin = RunFinished {
                status: "failed".into(),
                ..RunFinished::default()
            };
            evs.push(Event::run_finished(
                format!("r{pday}-{pb}-{i}"),
                t(30 + i),
                fin,
            ));
        }
        evs.push(Event::run_started(
            format!("r{day}-{b}-0"),
            t(60),
            RunStarted::default(),
        ));
        evs
    }

    fn active(log: &Log) -> SegmentMeta {
        log.reader().segments().pop().filter(|s| !s.sealed).unwrap()
    }

    fn idx_bytes(meta: &SegmentMeta) -> Vec<u8> {
        std::fs::read(index::index_path(meta)).unwrap()
    }

    /// The images of every sealed segment of the log in `dir`, built
    /// afresh from the segments alone (their stored images removed).
    fn rebuilt(log: &Log) -> Vec<(SegmentMeta, Vec<u8>)> {
        let sealed: Vec<SegmentMeta> = log
            .reader()
            .segments()
            .into_iter()
            .filter(|s| s.sealed)
            .collect();
        for s in &sealed {
            let _ = std::fs::remove_file(index::index_path(s));
        }
        let mut e = Engine::new(log.reader());
        e.refresh().unwrap();
        sealed
            .into_iter()
            .map(|s| {
                let b = idx_bytes(&s);
                (s, b)
            })
            .collect()
    }

    /// Follow `days` daily segments batch by batch (each sealed by the
    /// next day's first event), building each sealed one from its scan.
    fn follow_days(log: &Log, engine: &Mutex<Engine>, days: i64) -> Vec<Vec<u8>> {
        let (reader, check_of) = engine.lock().unwrap().follow_source();
        let mut follow = None;
        let mut images = Vec::new();
        for day in 0..days {
            for b in 0..4 {
                log.append_batch(&batch(day, b)).unwrap().wait().unwrap();
                assert!(follow_active(&reader, &mut follow, &check_of));
                assert!(
                    !follow_active(&reader, &mut follow, &check_of),
                    "nothing new"
                );
            }
            let followed = active(log);
            log.seal().unwrap();
            let f = follow.as_ref().unwrap();
            assert_eq!(f.seq(), followed.seq);
            Engine::index_sealed_until(engine, &AtomicBool::new(false), &mut follow).unwrap();
            assert!(follow.is_none(), "the scan went into the build");
            let sealed = log
                .reader()
                .segments()
                .into_iter()
                .find(|s| s.seq == followed.seq)
                .unwrap();
            images.push(idx_bytes(&sealed));
        }
        images
    }

    /// An image built by following the active segment in steps is byte
    /// for byte the one built from the sealed segment, and the log
    /// verifies.
    #[test]
    fn a_followed_segment_is_stored_as_its_sealed_build() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path());
        let engine = Mutex::new(Engine::new(log.reader()));
        let followed = follow_days(&log, &engine, 3);
        let fresh = rebuilt(&log);
        assert_eq!(fresh.len(), 3);
        for (i, (meta, bytes)) in fresh.iter().enumerate() {
            assert!(followed[i] == *bytes, "image of {} differs", meta.name);
        }
        let report = crate::verify::verify(tmp.path(), None, |_, _| {}).unwrap();
        assert_eq!(report.segments, 3);
        assert_eq!(engine.lock().unwrap().stats.followed, 3);
    }

    /// The scan lives in memory only: an indexer that stops (or a process
    /// killed) mid-follow leaves no file behind, and the sealed segment
    /// is built from its file as before.
    #[test]
    fn a_follow_dropped_midway_leaves_the_build_to_the_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path());
        let engine = Mutex::new(Engine::new(log.reader()));
        let (reader, check_of) = engine.lock().unwrap().follow_source();
        let mut follow = None;
        log.append_batch(&batch(0, 0)).unwrap().wait().unwrap();
        assert!(follow_active(&reader, &mut follow, &check_of));
        drop(follow);
        log.append_batch(&batch(0, 1)).unwrap().wait().unwrap();
        let meta = active(&log);
        let files = |dir: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let before = files(tmp.path());
        assert!(before.iter().all(|n| !n.contains(".idx")), "{before:?}");
        log.seal().unwrap();
        Engine::index_sealed_until(&engine, &AtomicBool::new(false), &mut None).unwrap();
        let sealed = log
            .reader()
            .segments()
            .into_iter()
            .find(|s| s.seq == meta.seq)
            .unwrap();
        let built = idx_bytes(&sealed);
        assert!(files(tmp.path()).iter().all(|n| !n.contains(".tmp")));
        assert!(rebuilt(&log)[0].1 == built);
        crate::verify::verify(tmp.path(), None, |_, _| {}).unwrap();
    }

    /// A scan is used only for the segment it followed: not for another
    /// one with the same seq (a log reopened elsewhere, a changed chain
    /// start), nor one cut shorter than what it read, nor an active one.
    #[test]
    fn a_scan_is_used_only_for_the_segment_it_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path());
        let engine = Mutex::new(Engine::new(log.reader()));
        let (reader, check_of) = engine.lock().unwrap().follow_source();
        let mut follow = None;
        log.append_batch(&batch(0, 0)).unwrap().wait().unwrap();
        assert!(follow_active(&reader, &mut follow, &check_of));
        let at = active(&log);
        log.seal().unwrap();
        let sealed = log
            .reader()
            .segments()
            .into_iter()
            .find(|s| s.seq == at.seq)
            .unwrap();
        let f = follow.take().unwrap();
        assert!(f.is_of(&sealed));
        let mut other = sealed.clone();
        other.prev_digest = sealed.digest;
        assert!(!f.is_of(&other));
        let mut shorter = sealed.clone();
        shorter.data_len = HEADER_SIZE as u64;
        assert!(!f.is_of(&shorter));
        let mut unsealed = sealed.clone();
        unsealed.sealed = false;
        let keep = Follow::begin(&at, check_of(&at));
        assert!(keep.seal(&unsealed).is_none());
        // A scan told of a digest its blocks do not end at fails, and the
        // segment's own build is used (and stands).
        let mut lying = sealed.clone();
        lying.digest = sealed.prev_digest;
        assert!(f.seal(&lying).is_none());
        Engine::index_sealed_until(&engine, &AtomicBool::new(false), &mut None).unwrap();
        assert!(index::index_path(&sealed).exists());
    }

    /// The background indexer follows and stores each sealed segment's
    /// image; the images are those of a build from the segments.
    #[test]
    fn the_background_indexer_stores_what_it_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(tmp.path());
        cfg.durability = Durability::Never;
        let hook = crate::query::IndexOnSeal::hook(&mut cfg);
        let log = Log::open(cfg).unwrap();
        let mut ix = hook.start(&log).unwrap();
        for day in 0..3 {
            for b in 0..4 {
                log.append_batch(&batch(day, b)).unwrap().wait().unwrap();
                // Give the indexer a chance to follow (not required).
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
        }
        log.seal().unwrap();
        let sealed: Vec<SegmentMeta> = log
            .reader()
            .segments()
            .into_iter()
            .filter(|s| s.sealed)
            .collect();
        assert_eq!(sealed.len(), 3);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !sealed.iter().all(|s| index::index_path(s).exists()) {
            assert!(std::time::Instant::now() < deadline, "images not stored");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let followed = ix.engine().lock().unwrap().stats.followed;
        ix.stop();
        assert!(followed <= 3, "{followed}");
        let stored: Vec<Vec<u8>> = sealed.iter().map(idx_bytes).collect();
        let fresh = rebuilt(&log);
        for (i, (meta, bytes)) in fresh.iter().enumerate() {
            assert!(stored[i] == *bytes, "image of {} differs", meta.name);
        }
        crate::verify::verify(tmp.path(), None, |_, _| {}).unwrap();
    }
}
