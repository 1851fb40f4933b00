//! Reading the log back: replay in LSN order over memory-mapped segments,
//! seeing sealed segments whole and the committed prefix of the active one.
//! A reader is either live (inside the writer's process, told of every
//! commit) or read-only from disk (beside a writer in another process, or
//! an auditor's copy), which re-reads the folder when asked to refresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::blocks::{self, Scan};
use crate::checked::Checked;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout::{self, map_file, Head, Mode, SegmentMeta};
use crate::manifest::Manifest;
pub use crate::replay::{Lent, LentItem, Replay, ReplayRange, ReplayThreads};
use crate::segment::{self, Header, HEADER_SIZE};
use crate::shared::Shared;

#[derive(Clone)]
enum Source {
    Live(Arc<Shared>),
    Disk {
        dir: PathBuf,
        /// Boxed: a manifest is large beside the live variant's pointer.
        manifest: Box<Manifest>,
        segments: Vec<SegmentMeta>,
    },
}

/// Reads a log. Cheap to create (and to clone); snapshots the segment list
/// per call.
#[derive(Clone)]
pub struct LogReader {
    source: Source,
    /// What this reader has checked against the chain (docs/integrity.md):
    /// per segment, a range of blocks that ends at a trusted digest.
    checked: Arc<Checked>,
}

impl LogReader {
    pub(crate) fn live(shared: Arc<Shared>) -> LogReader {
        LogReader {
            source: Source::Live(shared),
            checked: Arc::default(),
        }
    }

    /// Open `dir` read-only. Changes nothing on disk; works beside a writer.
    /// Damage in the active segment with committed blocks after it is an
    /// error, as for the writer (docs/integrity.md).
    pub fn open(dir: &Path) -> Result<LogReader> {
        let lay = Self::look(dir)?;
        let checked = Arc::new(Checked::default());
        // The open scanned the active segment from its header, checking
        // every block up to its committed end.
        if let Some(active) = lay.segments.last().filter(|s| !s.sealed) {
            checked.note(active, HEADER_SIZE as u64);
        }
        Ok(LogReader {
            source: Source::Disk {
                dir: dir.to_path_buf(),
                manifest: Box::new(lay.manifest),
                segments: lay.segments,
            },
            checked,
        })
    }

    /// The layout of `dir` as a reader beside a writer sees it. The MANIFEST
    /// is read before the folder is listed: a roll the writer finished in
    /// between (the sealed segment listed, the next one created) makes the
    /// two disagree. When the MANIFEST changed meanwhile, the look is taken
    /// again (a few times at most); damage is reported as found.
    fn look(dir: &Path) -> Result<layout::Layout> {
        const LOOKS: usize = 8;
        let (mut manifest, _) = layout::load_or_create_manifest(dir, false)?;
        for _ in 1..LOOKS {
            match layout::discover(dir, manifest.clone(), Mode::ReadOnly) {
                Ok(lay) => return Ok(lay),
                Err(e) => {
                    let (now, _) = layout::load_or_create_manifest(dir, false)?;
                    if now == manifest {
                        return Err(e);
                    }
                    manifest = now;
                }
            }
        }
        layout::discover(dir, manifest, Mode::ReadOnly)
    }

    /// Re-read the folder (read-only readers; live ones are always current).
    /// When only the active segment grew, only its new bytes are read, so
    /// `tail -f` can poll cheaply.
    pub fn refresh(&mut self) -> Result<()> {
        let Source::Disk { dir, segments, .. } = &mut self.source else {
            return Ok(());
        };
        if let Some(grown) = grown_active(dir, segments)? {
            if let Some(last) = segments.last_mut() {
                // The rescan checked the new blocks from the old end on.
                if let Some(r) = self.checked.get(last.seq).filter(|r| r.to == last.data_len) {
                    self.checked.note(&grown, r.from);
                }
                *last = grown;
            }
            return Ok(());
        }
        let fresh = LogReader::open(&dir.clone())?;
        self.source = fresh.source;
        self.checked = fresh.checked;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        match &self.source {
            Source::Live(s) => &s.dir,
            Source::Disk { dir, .. } => dir,
        }
    }

    /// The segments, oldest first, as of now.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        match &self.source {
            Source::Live(s) => s.segments(),
            Source::Disk { segments, .. } => segments.clone(),
        }
    }

    /// Whether the log still holds segment `seq`: retention may drop a
    /// segment (and every file named after it) while an index of it is
    /// being built. A fixed list on disk holds what it listed.
    pub(crate) fn holds_segment(&self, seq: u64) -> bool {
        match &self.source {
            Source::Live(s) => s.holds_segment(seq),
            Source::Disk { segments, .. } => segments.iter().any(|s| s.seq == seq),
        }
    }

    /// A number that changes whenever the segment list may have changed
    /// (a fixed list on disk never does): read it before
    /// [`LogReader::segments`], and an equal number later means the same
    /// list.
    /// From which LSN on every event of the log was appended by this
    /// process after the check of every rule (a live reader: see
    /// `Shared`); `None` for a reader of a folder, which knows nothing of
    /// how its events were appended.
    pub(crate) fn appends_checked_from(&self) -> Option<u64> {
        match &self.source {
            Source::Live(s) => Some(s.appends_checked_from()),
            Source::Disk { .. } => None,
        }
    }

    pub(crate) fn segments_generation(&self) -> u64 {
        match &self.source {
            Source::Live(s) => s.segments_gen(),
            Source::Disk { .. } => 0,
        }
    }

    /// The manifest as read from disk.
    pub fn manifest(&self) -> Result<Manifest> {
        match &self.source {
            Source::Disk { manifest, .. } => Ok((**manifest).clone()),
            Source::Live(s) => Manifest::load(&s.dir)?.ok_or_else(|| Error::NoLog(s.dir.clone())),
        }
    }

    /// The newest committed LSN (exclusive) and chain digest.
    pub fn head(&self) -> Head {
        match &self.source {
            Source::Live(s) => s.head(),
            Source::Disk {
                manifest, segments, ..
            } => Head::of(manifest, segments),
        }
    }

    /// The oldest LSN still stored.
    pub fn first_lsn(&self) -> u64 {
        match self.segments().first() {
            Some(s) => s.first_lsn,
            None => self.head().next_lsn,
        }
    }

    /// The inclusion proof of the event at `lsn` in the checkpoint of
    /// `tree_size` leaves (default: the newest checkpoint); docs/proofs.md.
    pub fn prove_inclusion(
        &self,
        lsn: u64,
        tree_size: Option<u64>,
    ) -> Result<crate::tlog::InclusionProof> {
        crate::tree::prove::prove_inclusion(&self.manifest()?, &self.segments(), lsn, tree_size)
    }

    /// The consistency proof from the checkpoint of `old` leaves to that of
    /// `new` leaves (default: the newest checkpoint).
    pub fn prove_consistency(
        &self,
        old: u64,
        new: Option<u64>,
    ) -> Result<crate::tlog::ConsistencyProof> {
        crate::tree::prove::prove_consistency(&self.manifest()?, &self.segments(), old, new)
    }

    /// Write the tree of the checkpoint `opts.tree_size` (default: the
    /// newest) as C2SP `tlog-tiles` static files into `dest`
    /// (docs/proofs.md, "Tiles"); incremental.
    pub fn write_tiles(
        &self,
        dest: &std::path::Path,
        opts: &crate::tree::TilesOptions,
    ) -> Result<crate::tree::TilesReport> {
        crate::tree::tiles::write_tiles(&self.manifest()?, &self.segments(), dest, opts)
    }

    /// Every signed checkpoint in the kept log, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<crate::tree::StoredCheckpoint>> {
        crate::tree::prove::checkpoints(&self.manifest()?, &self.segments())
    }

    /// Events in LSN order within `range`. Each segment's blocks are
    /// checked against the chain (from the first block used to the
    /// segment's trusted end) before any of its events is returned, and
    /// every event is decoded with the strict decoder; a check that fails
    /// ends the replay with an error naming the segment and offset.
    ///
    /// A large replay checks and decodes on other threads while the caller
    /// consumes ([`ReplayThreads::Auto`]; see [`LogReader::replay_with`]).
    pub fn replay(&self, range: ReplayRange) -> Replay {
        self.replay_with(range, ReplayThreads::Auto)
    }

    /// What this reader has checked against the chain (its replays record
    /// it; the query engine over this reader reads it, so that a segment
    /// a replay just checked is not hashed a second time).
    pub(crate) fn checked(&self) -> &Checked {
        &self.checked
    }

    /// [`LogReader::replay`] with the threads chosen by the caller: the
    /// same events in the same order, with the same checks, either way.
    pub fn replay_with(&self, range: ReplayRange, threads: ReplayThreads) -> Replay {
        Replay::new(self.segments(), range, self.checked.clone(), threads)
    }

    /// Wait until the head passes `lsn` or `timeout` ends; the new head.
    /// Read-only readers poll the folder.
    pub fn wait_beyond(&mut self, lsn: u64, timeout: Duration) -> Result<Head> {
        let deadline = Instant::now() + timeout;
        match &self.source {
            Source::Live(s) => {
                s.notifier
                    .wait_until(Some(deadline), || s.head().next_lsn > lsn);
                Ok(s.head())
            }
            Source::Disk { .. } => loop {
                self.refresh()?;
                let head = self.head();
                if head.next_lsn > lsn || Instant::now() >= deadline {
                    return Ok(head);
                }
                std::thread::sleep(Duration::from_millis(100).min(timeout));
            },
        }
    }
}

impl LogReader {
    /// The newest `n` events (fewer if the log holds fewer), oldest first.
    pub fn tail(&self, n: u64) -> Result<Vec<(u64, Event)>> {
        let from = self.head().next_lsn.saturating_sub(n).max(self.first_lsn());
        self.replay(ReplayRange {
            from_lsn: Some(from),
            ..ReplayRange::default()
        })
        .collect()
    }

    /// Follow the log from `from_lsn` on (`tail -f`): see [`Follower`].
    pub fn follow(self, from_lsn: u64) -> Follower {
        Follower {
            reader: self,
            next_lsn: from_lsn,
        }
    }
}

/// Follows a log as it grows: each [`Follower::poll`] returns the events
/// committed since the previous one, in log order. A live reader (from
/// [`crate::Log::reader`]) is woken by each commit; a read-only one polls
/// the folder.
pub struct Follower {
    reader: LogReader,
    next_lsn: u64,
}

impl Follower {
    /// The LSN the next event returned will have (at least).
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Up to `max` events from the next LSN on, waiting up to `timeout`
    /// for the first one; empty when none came in time. Events retention
    /// dropped before they were read are skipped.
    pub fn poll(&mut self, timeout: Duration, max: usize) -> Result<Vec<(u64, Event)>> {
        let head = self.reader.head().next_lsn;
        if head <= self.next_lsn {
            let waited = self.reader.wait_beyond(self.next_lsn, timeout)?;
            if waited.next_lsn <= self.next_lsn {
                return Ok(Vec::new());
            }
        }
        let range = ReplayRange {
            from_lsn: Some(self.next_lsn),
            ..ReplayRange::default()
        };
        let events: Vec<(u64, Event)> = self
            .reader
            .replay(range)
            .take(max.max(1))
            .collect::<Result<_>>()?;
        if let Some((lsn, _)) = events.last() {
            self.next_lsn = lsn + 1;
        }
        Ok(events)
    }
}

/// The active segment rescanned from where the last scan stopped, if the
/// folder still holds the same segments and the active one is still open;
/// `None` when a full re-read is needed.
fn grown_active(dir: &Path, segments: &[SegmentMeta]) -> Result<Option<SegmentMeta>> {
    let Some(last) = segments.last().filter(|s| !s.sealed) else {
        return Ok(None);
    };
    let files = layout::list_segment_files(dir)?;
    let same = files.len() == segments.len()
        && files
            .iter()
            .zip(segments)
            .all(|((_, seq, _), s)| *seq == s.seq);
    if !same {
        return Ok(None);
    }
    let Some(map) = map_file(&last.path)? else {
        return Ok(None);
    };
    if (map.len() as u64) < last.data_len || !matches!(segment::read_footer(&map), Ok(None)) {
        return Ok(None);
    }
    // Same file as before? (A replaced one would fail here or at the scan.)
    Header::decode(&map).map_err(|e| e.into_error(&last.name))?;
    let from = Scan {
        valid_end: last.data_len,
        count: last.count,
        next_lsn: last.end_lsn(),
        digest: last.digest,
        min_ts: last.min_ts,
        max_ts: last.max_ts,
        stop: None,
        uncommitted_events: 0,
    };
    let scan = blocks::scan(&map, from, layout::ts_of, |_| {});
    if let Some(stop) = &scan.stop {
        if segment::has_commit_record(&map[stop.offset as usize..]) {
            return Err(Error::Corrupt {
                segment: last.name.clone(),
                offset: stop.offset,
                reason: format!("{}; committed blocks follow the damage", stop.reason),
            });
        }
    }
    Ok(Some(SegmentMeta {
        count: scan.count,
        min_ts: scan.min_ts,
        max_ts: scan.max_ts,
        data_len: scan.valid_end,
        digest: scan.digest,
        ..last.clone()
    }))
}
