//! Retention: drop whole sealed segments whose newest event is older than a
//! cutoff, oldest first, never rewriting a file. A retention record (what is
//! dropped, the LSN ranges, the final digests, why) is appended to the log
//! first; then the manifest takes the new anchor and names the record; then
//! the files are removed, so a crash in between leaves a pending record
//! the next writer open finishes, or leftovers it removes
//! (docs/integrity.md).

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::event::system::Retention;
use crate::event::Micros;
use crate::fsutil;
use crate::io::{IoOp, WriterIo};
use crate::layout::{remove_segment_files, SegmentMeta};
use crate::manifest::{Manifest, RecordRef};

/// One dropped segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedSegment {
    pub name: String,
    pub first_lsn: u64,
    pub count: u64,
    pub min_ts: Micros,
    pub max_ts: Micros,
    pub bytes: u64,
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub cutoff: Micros,
    pub dropped: Vec<DroppedSegment>,
    /// The oldest LSN kept afterwards.
    pub first_kept_lsn: u64,
    /// Runs still running whose events were carried forward out of the
    /// dropped segments (see `store::carry`), and how many events that was.
    pub carried_runs: u64,
    pub carried_events: u64,
    /// Runs whose defining start went with the dropped segments (`None`
    /// when the pass did not look: plain `Log::retain`).
    pub dropped_runs: Option<u64>,
    /// Expired segments kept because [`RetainOptions::exported_first`]
    /// was asked and not every recorded export destination holds them.
    pub held_for_export: Vec<String>,
}

/// How a retention pass decides, beyond the cutoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetainOptions {
    /// Drop only segments that every destination recorded in the log's
    /// `EXPORTED` marker holds ([`crate::exported`], docs/export.md); with
    /// no destination recorded, drop nothing.
    pub exported_first: bool,
    /// Drop no segment newer than this one (by seq). [`crate::AuditStore`]
    /// needs none: it decides what to drop and carries runs forward in one
    /// step on the writer thread (`store::carry`).
    pub up_to_seq: Option<u64>,
}

/// What to carry forward before segments are dropped: event frames as
/// stored (with their ts, for routing), appended to the active segment
/// and synced first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carry {
    pub frames: Vec<(Micros, Vec<u8>)>,
    /// Runs these frames keep alive.
    pub runs: u64,
    /// Runs defined in the dropped segments that are not kept alive.
    pub dropped_runs: u64,
}

/// Asked by the writer thread, with the segments about to be dropped,
/// what to carry forward (no append can come in between).
pub type CarryFn = Box<dyn FnOnce(&[SegmentMeta]) -> crate::error::Result<Carry> + Send>;

impl RetentionReport {
    pub fn events(&self) -> u64 {
        self.dropped.iter().map(|d| d.count).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.dropped.iter().map(|d| d.bytes).sum()
    }
}

/// The longest prefix of sealed segments that are all expired. Stops at the
/// first one holding an event at or after `cutoff`, so the kept LSNs stay
/// one unbroken range and the chain verifies from the new anchor.
pub fn expired_prefix(segments: &[SegmentMeta], cutoff: Micros) -> usize {
    segments
        .iter()
        .take_while(|s| s.sealed && s.max_ts.is_some_and(|m| m < cutoff))
        .count()
}

/// Where retention runs: the writer hands it the log folder, its
/// file-operation seam and its current segments, and is told, once the
/// manifest no longer names the dropped segments, to forget them.
pub(crate) struct Pass<'a> {
    pub dir: &'a Path,
    pub io: &'a WriterIo,
    pub segments: &'a [SegmentMeta],
}

/// How many of the oldest sealed segments a pass at `cutoff` drops, and
/// the names of the expired ones it keeps because `exported_first` was
/// asked and not every recorded export destination holds them yet.
pub(crate) fn droppable(
    dir: &Path,
    segments: &[SegmentMeta],
    cutoff: Micros,
    opts: RetainOptions,
) -> Result<(usize, Vec<String>)> {
    let expired = expired_prefix(segments, cutoff);
    let exported = if opts.exported_first {
        let through = crate::exported::exported_through(dir)?;
        segments[..expired]
            .iter()
            .take_while(|s| through.is_some_and(|t| s.seq <= t))
            .count()
    } else {
        expired
    };
    let held = segments[exported..expired]
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let n = opts.up_to_seq.map_or(exported, |t| {
        segments[..exported]
            .iter()
            .take_while(|s| s.seq <= t)
            .count()
    });
    Ok((n, held))
}

/// The record of a retention pass at `cutoff` that drops the oldest `n`
/// of `segments` (all expired, see [`droppable`]), or `None` when `n` is
/// 0. Nothing is changed yet: the writer appends the record first, then
/// [`anchor`] and [`remove`] act on it (docs/integrity.md).
pub(crate) fn plan(
    segments: &[SegmentMeta],
    manifest: &Manifest,
    cutoff: Micros,
    n: usize,
) -> Option<Retention> {
    let gone = &segments[..n.min(segments.len())];
    let last_gone = gone.last()?;
    let events: u64 = gone.iter().map(|s| s.count).sum();
    let mut when = String::new();
    crate::event::time::format_rfc3339(cutoff, &mut when);
    Some(Retention {
        cutoff,
        reason: format!("every event of these segments is older than {when}"),
        dropped: gone
            .iter()
            .map(|s| crate::event::system::DroppedSegment {
                seq: s.seq,
                day: s.day,
                first_lsn: s.first_lsn,
                count: s.count,
                min_ts: s.min_ts.unwrap_or(0),
                max_ts: s.max_ts.unwrap_or(0),
                digest: s.digest.to_hex(),
            })
            .collect(),
        anchor_first_seq: last_gone.seq + 1,
        anchor_first_lsn: last_gone.end_lsn(),
        anchor_digest: last_gone.digest.to_hex(),
        total_dropped_segments: manifest.dropped_segments + gone.len() as u64,
        // Filled in by the writer, which holds the tree.
        tree_size: 0,
        tree_frontier: Vec::new(),
        tree_note: String::new(),
        tree_tiles: Vec::new(),
        total_dropped_events: manifest.dropped_events + events,
    })
}

/// The first half of acting on a retention record that is in the log at
/// `at`: the MANIFEST takes the new anchor, the totals and where the
/// record is (its pending record cleared). `forget(seq)` is called once
/// the manifest is stored without the dropped segments (every segment up
/// to `seq`): from then on they are leftovers a crash lets the next open
/// remove, so [`remove`] may run anywhere, later (the writer hands it to
/// its retire thread: src/writer/retire.rs). The report, and the dropped
/// segments to remove.
pub(crate) fn anchor(
    pass: Pass<'_>,
    manifest: &mut Manifest,
    rec: &Retention,
    at: RecordRef,
    forget: impl FnOnce(u64),
) -> Result<(RetentionReport, Vec<SegmentMeta>)> {
    let last_seq = rec.anchor_first_seq.saturating_sub(1);
    let gone: Vec<SegmentMeta> = pass
        .segments
        .iter()
        .filter(|s| s.seq <= last_seq)
        .cloned()
        .collect();
    let mut report = RetentionReport {
        cutoff: rec.cutoff,
        dropped: Vec::new(),
        first_kept_lsn: rec.anchor_first_lsn,
        carried_runs: 0,
        carried_events: 0,
        dropped_runs: None,
        held_for_export: Vec::new(),
    };
    for s in &gone {
        let bytes = fs::metadata(&s.path).map(|m| m.len()).unwrap_or(s.data_len);
        report.dropped.push(DroppedSegment {
            name: s.name.clone(),
            first_lsn: s.first_lsn,
            count: s.count,
            min_ts: s.min_ts.unwrap_or(0),
            max_ts: s.max_ts.unwrap_or(0),
            bytes,
        });
    }
    // Changed in memory only once it is on disk: a failed store leaves the
    // writer's MANIFEST as the file is (the record pending in it).
    let mut m = manifest.clone();
    m.anchor.first_lsn = rec.anchor_first_lsn;
    m.anchor.digest = rec.anchor_digest.clone();
    m.anchor.first_seq = rec.anchor_first_seq;
    m.sealed.retain(|e| e.seq > last_seq);
    m.dropped_segments = rec.total_dropped_segments;
    m.dropped_events = rec.total_dropped_events;
    m.retention = Some(at);
    m.pending = None;
    pass.io
        .gate(IoOp::Rename, &Manifest::path(pass.dir))
        .ctx(|| "replacing MANIFEST".to_string())?;
    m.store(pass.dir)?;
    *manifest = m;
    // The manifest no longer names them: from here on they are leftovers.
    forget(last_seq);
    Ok((report, gone))
}

/// The most a paced removal waits after one segment's files.
pub(crate) const MAX_REMOVE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The second half: remove the dropped segments' files and their derived
/// files, then sync the folder. Only after [`anchor`] stored a MANIFEST
/// without them (a crash before or during this leaves leftovers, which
/// the next open removes).
///
/// With `paced`, after each segment's files a pause as long
/// as their removal took (at most [`MAX_REMOVE_PAUSE`]). On a file system
/// mounted with online discard (ext4 `discard`), an unlink of a 32 MiB
/// segment issues its discard synchronously and the device serves the
/// log's fdatasyncs behind it: back to back, five of them stalled the
/// syncer up to ~200 ms (docs/benchmarks.md, pace42 round). The pause gives
/// the device an idle stretch as long as each discard between them. Where
/// an unlink is cheap the pause is too.
pub(crate) fn remove_paced(
    dir: &Path,
    io: &WriterIo,
    gone: &[SegmentMeta],
    paced: bool,
) -> Result<()> {
    for (i, s) in gone.iter().enumerate() {
        let t0 = std::time::Instant::now();
        io.gate(IoOp::Remove, &s.path)
            .ctx(|| format!("removing {}", s.path.display()))?;
        remove_segment_files(dir, &s.name)?;
        if paced && i + 1 < gone.len() {
            std::thread::sleep(pause_after(t0.elapsed()));
        }
    }
    fsutil::sync_dir(dir)
}

/// The pause after one segment's removal took `removal`: as long, capped
/// at [`MAX_REMOVE_PAUSE`].
fn pause_after(removal: std::time::Duration) -> std::time::Duration {
    removal.min(MAX_REMOVE_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dir: &Path, seq: u64) -> SegmentMeta {
        let name = crate::segment::file_name(20261123, seq);
        SegmentMeta {
            seq,
            day: 20261123,
            path: dir.join(&name),
            name,
            sealed: true,
            ..SegmentMeta::placeholder()
        }
    }

    #[test]
    fn a_paced_removal_removes_every_file_and_its_derived_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let gone: Vec<SegmentMeta> = (1..=3).map(|s| meta(dir, s)).collect();
        for m in &gone {
            std::fs::write(&m.path, b"seg").unwrap();
            std::fs::write(m.path.with_extension("idx"), b"idx").unwrap();
        }
        let kept = meta(dir, 4);
        std::fs::write(&kept.path, b"seg").unwrap();
        remove_paced(dir, &WriterIo::default(), &gone, true).unwrap();
        let left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [kept.name]);
    }

    #[test]
    fn the_pause_after_a_removal_is_as_long_as_it_and_capped() {
        use std::time::Duration;
        assert_eq!(pause_after(Duration::ZERO), Duration::ZERO);
        let short = Duration::from_micros(350);
        assert_eq!(pause_after(short), short);
        assert_eq!(pause_after(MAX_REMOVE_PAUSE), MAX_REMOVE_PAUSE);
        assert_eq!(pause_after(Duration::from_secs(3)), MAX_REMOVE_PAUSE);
    }

    #[test]
    fn a_paced_removal_stops_at_a_failing_remove() {
        #[derive(Debug)]
        struct NoRemove;
        impl crate::io::FaultInjector for NoRemove {
            fn check(&self, op: IoOp, _: &Path) -> Option<crate::io::Fault> {
                (op == IoOp::Remove)
                    .then(|| crate::io::Fault::Fail(std::io::Error::from_raw_os_error(5)))
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let gone = [meta(dir, 1)];
        std::fs::write(&gone[0].path, b"seg").unwrap();
        let io = WriterIo {
            faults: Some(std::sync::Arc::new(NoRemove)),
        };
        let e = remove_paced(dir, &io, &gone, true).unwrap_err();
        assert!(e.to_string().contains("removing"), "{e}");
        assert!(gone[0].path.exists());
    }
}
