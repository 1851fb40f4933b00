//! Reading the log back: replay in LSN order over memory-mapped segments,
//! seeing sealed segments whole and the committed prefix of the active one.
//! A reader is either live (inside the writer's process, told of every
//! commit) or read-only from disk (beside a writer in another process, or
//! an auditor's copy), which re-reads the folder when asked to refresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Event, Micros};
use crate::layout::{self, map_file, Head, Mode, SegmentMeta};
use crate::manifest::Manifest;
use crate::segment::{self, EventWalk, Header, Scan, HEADER_SIZE};
use crate::shared::Shared;

enum Source {
    Live(Arc<Shared>),
    Disk {
        dir: PathBuf,
        manifest: Manifest,
        segments: Vec<SegmentMeta>,
    },
}

/// Reads a log. Cheap to create; snapshots the segment list per call.
pub struct LogReader {
    source: Source,
}

/// Which events a replay yields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayRange {
    /// First LSN (inclusive).
    pub from_lsn: Option<u64>,
    /// Only events with `ts >= since`.
    pub since: Option<Micros>,
    /// Only events with `ts <= until`.
    pub until: Option<Micros>,
}

impl LogReader {
    pub(crate) fn live(shared: Arc<Shared>) -> LogReader {
        LogReader {
            source: Source::Live(shared),
        }
    }

    /// Open `dir` read-only. Changes nothing on disk; works beside a writer.
    pub fn open(dir: &Path) -> Result<LogReader> {
        let (manifest, _) = layout::load_or_create_manifest(dir, false)?;
        let lay = layout::discover(dir, manifest, Mode::ReadOnly)?;
        Ok(LogReader {
            source: Source::Disk {
                dir: dir.to_path_buf(),
                manifest: lay.manifest,
                segments: lay.segments,
            },
        })
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
                *last = grown;
            }
            return Ok(());
        }
        let fresh = LogReader::open(&dir.clone())?;
        self.source = fresh.source;
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

    /// The manifest as read from disk.
    pub fn manifest(&self) -> Result<Manifest> {
        match &self.source {
            Source::Disk { manifest, .. } => Ok(manifest.clone()),
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

    /// Events in LSN order within `range`.
    pub fn replay(&self, range: ReplayRange) -> Replay {
        Replay::new(self.segments(), range)
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
    let scan = segment::scan(&map, from, layout::ts_of, |_| {});
    Ok(Some(SegmentMeta {
        count: scan.count,
        min_ts: scan.min_ts,
        max_ts: scan.max_ts,
        data_len: scan.valid_end,
        digest: scan.digest,
        ..last.clone()
    }))
}

/// Iterator over `(lsn, event)`; stops after the first error.
pub struct Replay {
    segments: std::vec::IntoIter<SegmentMeta>,
    range: ReplayRange,
    current: Option<Cursor>,
    done: bool,
}

struct Cursor {
    meta: SegmentMeta,
    map: memmap2::Mmap,
    walk: EventWalk,
}

impl Replay {
    fn new(segments: Vec<SegmentMeta>, range: ReplayRange) -> Replay {
        let from = range.from_lsn.unwrap_or(0);
        let keep: Vec<SegmentMeta> = segments
            .into_iter()
            .filter(|s| s.count > 0 && s.end_lsn() > from)
            .filter(|s| match (range.since, s.max_ts) {
                (Some(since), Some(max)) => max >= since,
                _ => true,
            })
            .filter(|s| match (range.until, s.min_ts) {
                (Some(until), Some(min)) => min <= until,
                _ => true,
            })
            .collect();
        Replay {
            segments: keep.into_iter(),
            range,
            current: None,
            done: false,
        }
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(meta) = self.segments.next() else {
            return Ok(false);
        };
        let map = map_file(&meta.path)?.ok_or_else(|| Error::Corrupt {
            segment: meta.name.clone(),
            offset: 0,
            reason: "segment file is empty".into(),
        })?;
        if (map.len() as u64) < meta.data_len {
            return Err(Error::Corrupt {
                segment: meta.name.clone(),
                offset: map.len() as u64,
                reason: format!(
                    "file is shorter than its committed length {}",
                    meta.data_len
                ),
            });
        }
        self.current = Some(Cursor {
            walk: EventWalk::new(HEADER_SIZE as u64, meta.data_len, meta.first_lsn),
            meta,
            map,
        });
        Ok(true)
    }

    fn step(&mut self) -> Result<Option<(u64, Event)>> {
        let from = self.range.from_lsn.unwrap_or(0);
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some(c) = self.current.as_mut() else {
                return Ok(None);
            };
            c.walk.skip_to(&c.map, from);
            let rec = match c.walk.next(&c.map) {
                None => {
                    self.current = None;
                    continue;
                }
                Some(r) => r.map_err(|d| d.into_error(&c.meta.name))?,
            };
            if rec.lsn < from {
                continue;
            }
            let ev = codec::decode_event(rec.payload).map_err(|reason| Error::Corrupt {
                segment: c.meta.name.clone(),
                offset: rec.offset,
                reason: format!("event record does not decode: {reason}"),
            })?;
            let in_range = self.range.since.is_none_or(|s| ev.ts >= s)
                && self.range.until.is_none_or(|u| ev.ts <= u);
            if in_range {
                return Ok(Some((rec.lsn, ev)));
            }
        }
    }
}

impl Iterator for Replay {
    type Item = Result<(u64, Event)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(x)) => Some(Ok(x)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
