//! Secondary indexes: one image per sealed segment, persisted beside it as
//! `STEM.idx` (so retention's `STEM.*` removal drops it with the segment),
//! and in-memory images over the committed prefix of the active segment.
//! Byte layout and rules in docs/index-format.md.
//!
//! An index is derived data: a missing, stale (header names another seq,
//! LSN range or chain digest), foreign or corrupt file is rebuilt from its
//! segment and never trusted over the log.

mod build;
mod image;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use build::{tool_failure, Builder, ToolFailure};
pub use image::*;

use crate::codec;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::frame::{read_frame, REC_COMMIT};
use crate::layout::{map_file, SegmentMeta};
use crate::segment::EventWalk;

/// Progress of an index build, for whoever shows it: `(segment name, bytes
/// indexed, bytes to index)`. The engine only reports.
pub type ProgressFn = std::sync::Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// Segments at least this big report their build progress (to a caller
/// that asked for it).
pub const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// `DIR/STEM.idx` for a segment `DIR/STEM.seg`.
pub fn index_path(meta: &SegmentMeta) -> PathBuf {
    meta.path.with_extension("idx")
}

/// `DIR/STEM.aidx`: the index of a prefix of the active segment, so a
/// fresh reader only indexes the tail. Valid while the segment still holds
/// that prefix (checked through the commit record's chain digest).
pub fn active_index_path(meta: &SegmentMeta) -> PathBuf {
    meta.path.with_extension("aidx")
}

/// The chain digest and end LSN of the commit record ending exactly at
/// `end` of `seg`, if one does.
pub fn commit_at(seg: &[u8], end: u64) -> Option<(crate::chain::Digest, u64)> {
    let len = crate::segment::COMMIT_FRAME_SIZE;
    let end = usize::try_from(end).ok()?;
    let start = end.checked_sub(len)?;
    let f = read_frame(seg.get(start..end)?).ok()?;
    if f.rec_type != REC_COMMIT || f.size != len {
        return None;
    }
    let c = crate::segment::Commit::decode(f.payload)?;
    Some((c.digest, c.first_lsn + c.count as u64))
}

/// Open the stored prefix index of the active segment, if it still matches.
pub fn load_active(meta: &SegmentMeta, seg: &[u8]) -> Option<Image> {
    let map = map_file(&active_index_path(meta)).ok()??;
    let img = Image::open(Backing::Map(map)).ok()?;
    let h = &img.header;
    let ok = h.kind == KIND_CHUNK
        && h.seq == meta.seq
        && h.first_lsn == meta.first_lsn
        && h.start_off == crate::segment::HEADER_SIZE as u64
        && h.end_off <= meta.data_len
        && commit_at(seg, h.end_off) == Some((h.digest, h.end_lsn));
    ok.then_some(img)
}

/// Why a stored index file is not used (it is rebuilt from its segment).
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("missing")]
    Missing,
    #[error("empty file")]
    Empty,
    #[error("{0}")]
    Unreadable(Error),
    #[error("{0}")]
    Damaged(ImageError),
    #[error("stale: built for segment {seq} LSN {first_lsn}..{end_lsn} digest {digest}")]
    Stale {
        seq: u64,
        first_lsn: u64,
        end_lsn: u64,
        digest: crate::chain::Digest,
    },
}

/// Open the stored index of a sealed segment, if it is there and matches
/// the segment (seq, LSN range, byte range, chain digest).
pub fn load_sealed(meta: &SegmentMeta) -> std::result::Result<Image, Unusable> {
    let path = index_path(meta);
    let map = match map_file(&path) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(Unusable::Empty),
        Err(_) if !path.exists() => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Unreadable(e)),
    };
    let img = Image::open(Backing::Map(map)).map_err(Unusable::Damaged)?;
    let h = &img.header;
    if h.kind != KIND_SEALED
        || h.seq != meta.seq
        || h.first_lsn != meta.first_lsn
        || h.end_lsn != meta.end_lsn()
        || h.end_off != meta.data_len
        || h.digest != meta.digest
    {
        return Err(Unusable::Stale {
            seq: h.seq,
            first_lsn: h.first_lsn,
            end_lsn: h.end_lsn,
            digest: h.digest,
        });
    }
    Ok(img)
}

/// Feed the events of `seg[from..to]` (whole frames) to `f(lsn, off, end, ev)`.
pub fn scan_events(
    meta: &SegmentMeta,
    seg: &[u8],
    from: u64,
    first_lsn: u64,
    to: u64,
    mut f: impl FnMut(u64, u64, u64, &Event),
) -> Result<u64> {
    let mut walk = EventWalk::new(from, to, first_lsn);
    while let Some(rec) = walk.next(seg) {
        let rec = rec.map_err(|d| d.into_error(&meta.name))?;
        let ev = codec::decode_event(rec.payload).map_err(|reason| Error::Corrupt {
            segment: meta.name.clone(),
            offset: rec.offset,
            reason: format!("event record does not decode: {reason}"),
        })?;
        f(rec.lsn, rec.offset, rec.end, &ev);
    }
    Ok(walk.lsn())
}

/// Build an image over `seg[from..to]` (events from `first_lsn`).
#[allow(clippy::too_many_arguments)]
pub fn build_image(
    meta: &SegmentMeta,
    seg: &[u8],
    kind: u32,
    from: u64,
    first_lsn: u64,
    to: u64,
    shadow: &dyn Fn(&str) -> Option<u64>,
    progress: Option<&ProgressFn>,
) -> Result<Vec<u8>> {
    let mut b = Builder::new(kind, meta.seq, first_lsn, from);
    let total = to - from;
    let report = progress.filter(|_| total >= PROGRESS_MIN_BYTES);
    let mut n = 0u64;
    scan_events(meta, seg, from, first_lsn, to, |lsn, off, end, ev| {
        b.add(lsn, off, end, ev);
        n += 1;
        if n.is_multiple_of(4096) {
            if let Some(report) = report {
                report(&meta.name, end - from, total);
            }
        }
    })?;
    b.set_end_off(to);
    if let Some(report) = report {
        report(&meta.name, total, total);
    }
    let digest = if kind == KIND_SEALED {
        meta.digest
    } else {
        commit_at(seg, to).map_or(crate::chain::Digest([0; 32]), |c| c.0)
    };
    Ok(b.finish(digest, shadow))
}

/// Write an index file atomically (temporary file, then rename). Best
/// effort: a read-only folder keeps the image in memory only.
pub fn store_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("index.idx");
    let tmp = path.with_file_name(format!(
        "{name}.tmp-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let res = (|| {
        let mut f = crate::fsutil::create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
