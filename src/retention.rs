//! Retention: drop whole sealed segments whose newest event is older than a
//! cutoff, oldest first, never rewriting a file. The manifest is updated
//! (new anchor digest) before any file is removed, so a crash in between
//! leaves only leftovers that the next open removes.

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::event::Micros;
use crate::fsutil;
use crate::io::{IoOp, WriterIo};
use crate::layout::{remove_segment_files, SegmentMeta};
use crate::manifest::Manifest;

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
}

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

/// Run retention (inside the writer thread). `forget(seq)` is called once
/// the manifest is stored without the dropped segments (every segment up
/// to `seq`), before their files are removed: from then on they are
/// leftovers a crash lets the next open remove.
pub(crate) fn drop_expired(
    pass: Pass<'_>,
    manifest: &mut Manifest,
    cutoff: Micros,
    forget: impl FnOnce(u64),
) -> Result<RetentionReport> {
    let segments = pass.segments;
    let n = expired_prefix(segments, cutoff);
    let mut report = RetentionReport {
        cutoff,
        dropped: Vec::new(),
        first_kept_lsn: segments
            .first()
            .map_or(manifest.anchor.first_lsn, |s| s.first_lsn),
    };
    let gone = &segments[..n];
    let Some(last_gone) = gone.last() else {
        return Ok(report);
    };
    for s in gone {
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
    report.first_kept_lsn = last_gone.end_lsn();
    manifest.anchor.first_lsn = last_gone.end_lsn();
    manifest.anchor.digest = last_gone.digest.to_hex();
    manifest.anchor.first_seq = last_gone.seq + 1;
    manifest.sealed.retain(|e| e.seq > last_gone.seq);
    manifest.dropped_segments += gone.len() as u64;
    manifest.dropped_events += report.events();
    pass.io
        .gate(IoOp::Rename, &Manifest::path(pass.dir))
        .ctx(|| "replacing MANIFEST".to_string())?;
    manifest.store(pass.dir)?;
    // The manifest no longer names them: from here on they are leftovers.
    forget(last_gone.seq);
    for s in gone {
        pass.io
            .gate(IoOp::Remove, &s.path)
            .ctx(|| format!("removing {}", s.path.display()))?;
        remove_segment_files(pass.dir, &s.name)?;
    }
    fsutil::sync_dir(pass.dir)?;
    Ok(report)
}
