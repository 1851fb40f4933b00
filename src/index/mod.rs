//! Secondary indexes: one image per sealed segment, persisted beside it as
//! `STEM.idx` (so retention's `STEM.*` removal drops it with the segment),
//! and in-memory images over the committed prefix of the active segment.
//! Byte layout and rules in docs/index-format.md.
//!
//! An index is derived data: a missing, stale (header names another seq,
//! LSN range or chain digest), foreign or corrupt file is rebuilt from its
//! segment and never trusted over the log.

mod build;
pub mod calls;
mod image;
mod intern;
mod log_call;
mod parts;
pub mod pool;
mod run_filter;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use build::Builder;
pub use calls::{call_entry, CallEntry, CallList, CallRec};
pub use image::*;
pub use parts::ImageParts;

use crate::codec;
use crate::error::{Error, Result};
use crate::event::borrowed::EventRef;
use crate::event::Event;
use crate::layout::{map_file, SegmentMeta};

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
    crate::blocks::stored_digest_at(seg, end)
}

/// Open the stored prefix index of the active segment, if it still matches:
/// it starts at the segment's header with the segment's previous digest,
/// and ends at a commit record holding its end digest (which the caller
/// then checks: it is where the next chunk's chain check starts, or the
/// segment's trusted head).
pub fn load_active(meta: &SegmentMeta, seg: &[u8]) -> Option<Image> {
    let map = map_file(&active_index_path(meta)).ok()??;
    let img = Image::open(Backing::Map(map)).ok()?;
    let h = &img.header;
    let ok = h.kind == KIND_CHUNK
        && h.seq == meta.seq
        && h.first_lsn == meta.first_lsn
        && h.start_off == crate::segment::HEADER_SIZE as u64
        && h.end_off <= meta.data_len
        && commit_at(seg, h.end_off) == Some((h.digest, h.end_lsn))
        && chain_bound(&img, meta.prev_digest).is_ok()
        && (h.end_off < meta.data_len || h.digest == meta.digest);
    ok.then_some(img)
}

/// The image's CHAIN section starts at its start offset with `prev` and
/// ends at its end offset with its header's digest.
fn chain_bound(img: &Image, prev: crate::chain::Digest) -> std::result::Result<(), Unusable> {
    let h = &img.header;
    let n = img.n_chain_points();
    let first = img.chain_point(0);
    let last = img.chain_point(n - 1);
    if first != (h.start_off, prev) || last != (h.end_off, h.digest) || img.poisoned() {
        return Err(Unusable::ChainMismatch {
            from: first.0,
            to: last.0,
        });
    }
    Ok(())
}

/// Why a stored index file is not used (it is rebuilt from its segment).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Its CHAIN section does not run from the segment's digest before it
    /// to the segment's end digest (or a block of it fails its CRC).
    #[error("its chain digests run from offset {from} to {to} and do not match the segment's")]
    ChainMismatch { from: u64, to: u64 },
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
    chain_bound(&img, meta.prev_digest)?;
    Ok(img)
}

/// Where an image build starts and what it must end at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Segment offset of the first block (a block boundary).
    pub from: u64,
    /// LSN of its first event.
    pub first_lsn: u64,
    /// Chain digest at `from`.
    pub digest_at_from: crate::chain::Digest,
    /// End offset (a block boundary) and the trusted digest there.
    pub to: u64,
    pub trusted_end: crate::chain::Digest,
}

/// Feed the events of the blocks of `seg` in `span` to
/// `f(lsn, off, end, ev)`, checking every block's chain digest as it goes
/// and the end against the trusted digest (a block whose digest matches
/// is taken without its event frames' CRCs, `Walk::crcs_by_digest`), and
/// every event with the strict decoder as an index needs it
/// ([`decode_indexed`]); `on_block(end, digest)` after each block.
pub fn scan_checked(
    meta: &SegmentMeta,
    seg: &[u8],
    span: Span,
    check: Check,
    mut on_block: impl FnMut(u64, crate::chain::Digest),
    mut f: impl FnMut(u64, u64, u64, &EventRef<'_>, Option<CallEntry<'_>>),
) -> Result<u64> {
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        segment: meta.name.clone(),
        offset,
        reason,
    };
    let mut walk =
        crate::blocks::Walk::new(seg, span.from, span.to, span.digest_at_from, span.first_lsn)
            .crcs_by_digest();
    loop {
        let block = match walk.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(s) => return Err(corrupt(s.offset, s.reason)),
        };
        for (lsn, (at, payload)) in (block.commit.first_lsn..).zip(block.events()) {
            let indexed = match check {
                Check::Strict => decode_indexed(payload),
                Check::CheckedOnAppend => decode_indexed_checked_on_append(payload),
            }
            .map_err(|reason| corrupt(at, format!("event record does not decode: {reason}")))?;
            let end = at + (crate::frame::FRAME_HEADER + 1 + payload.len()) as u64;
            indexed.with_view(|ev| f(lsn, at, end, ev, indexed.call()));
        }
        on_block(block.end, block.commit.digest);
    }
    if walk.pos() != span.to || walk.digest() != span.trusted_end {
        return Err(corrupt(
            walk.pos(),
            format!(
                "the chain ends at digest {} but {} was expected here (the segment was changed after it was written)",
                walk.digest(),
                span.trusted_end
            ),
        ));
    }
    Ok(walk.next_lsn())
}

/// An event as an index build decodes it: read in place (nothing copied
/// out of the segment: the builder only interns some of its strings), or
/// owned where the in-place read refuses (a system event); and for a
/// `run_log` tool call its payload's call fields, read by the parse that
/// checked the payload (`None` otherwise: [`call_entry`] reads them).
pub struct Indexed<'a> {
    seen: Seen<'a>,
    log_call: Option<log_call::LogCall<'a>>,
}

enum Seen<'a> {
    InPlace(EventRef<'a>),
    Owned(Event),
}

impl Indexed<'_> {
    /// `f` of the event, borrowed (from the bytes, or from the owned event).
    pub fn with_view<R>(&self, f: impl FnOnce(&EventRef<'_>) -> R) -> R {
        match &self.seen {
            Seen::InPlace(v) => f(v),
            Seen::Owned(ev) => f(&EventRef::of(ev)),
        }
    }

    /// The event, owned: what the strict decoder gives for these bytes
    /// (`None` never: a view read in place holds no system event).
    pub fn to_event(&self) -> Option<Event> {
        match &self.seen {
            Seen::InPlace(v) => v.to_event(),
            Seen::Owned(ev) => Some(ev.clone()),
        }
    }

    /// The event's call, as [`call_entry`] reads it (the payload's fields
    /// already read where [`decode_indexed`] checked the payload).
    pub fn call(&self) -> Option<CallEntry<'_>> {
        match (self.log_call, &self.seen) {
            (Some(p), _) => Some(calls::log_call_entry(p)),
            (None, Seen::InPlace(v)) => calls::call_entry_of(&v.data),
            (None, Seen::Owned(ev)) => call_entry(ev),
        }
    }
}

/// The strict decoder as an index build needs it (docs/integrity.md,
/// "What an index build checks"): the encoding consumed whole and every
/// rule of [`codec::decode_stored`] (variant, bool bytes, timestamp range,
/// lengths, names, unknown-field keys and the `replace` marker), but of
/// the JSON texts only the one the index parses: a `run_log` tool call's
/// `payload`, checked by the parse that reads its call fields
/// (`log_call::read_checked`). The others (`inputs`, other payloads,
/// unknown-field values) the index never reads; every read that hands
/// them out checks them (replay, run view, export, search), and so does
/// `verify`. Errors are [`codec::decode_stored`]'s, word for word.
pub fn decode_indexed(bytes: &[u8]) -> std::result::Result<Indexed<'_>, codec::StoredEventError> {
    use crate::event::borrowed::DataRef;
    use crate::event::json;
    let owned = || {
        codec::decode_stored_owned(bytes).map(|event| Indexed {
            seen: Seen::Owned(event),
            log_call: None,
        })
    };
    let Ok(view) = codec::decode_event_ref(bytes) else {
        // A system event, or bytes that do not decode: the owned path.
        return owned();
    };
    json::validate_ref(&view)?;
    let mut log_call = None;
    if let DataRef::RunLog(l) = &view.data {
        if l.event_type == calls::LOG_CALL_EVENT_TYPE {
            log_call = Some(log_call::read_checked(l.payload)?);
        }
    }
    if view.is_system() {
        return owned();
    }
    Ok(Indexed {
        seen: Seen::InPlace(view),
        log_call,
    })
}

/// How an index build reads the events of its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every rule an index needs ([`decode_indexed`]): for stored data
    /// whose history this process does not know.
    Strict,
    /// Events this process appended after checking every rule of the
    /// contract on them (every `Log` append path checks them before it
    /// encodes: docs/integrity.md, "Builds of what this process
    /// appended"), read back from blocks whose chain the build checks
    /// against the digest this process keeps: the rules are not run
    /// again, and the strings no index reads are not UTF-8-checked again
    /// ([`decode_indexed_checked_on_append`]). The image is the same bytes
    /// as a [`Check::Strict`] build's (the builder reads only what both
    /// read alike); `verify` rebuilds it strictly and compares.
    CheckedOnAppend,
}

/// [`decode_indexed`] for [`Check::CheckedOnAppend`]: the body read in
/// place with the strings no index reads stepped over
/// (`codec::decode_event_for_index`), the contract's rules not run again;
/// a `run_log` tool call's payload is still parsed (its call fields are
/// read from it) by the same one-parse read. A body the in-place reader
/// does not take, or a system event, takes the strict path.
pub fn decode_indexed_checked_on_append(
    bytes: &[u8],
) -> std::result::Result<Indexed<'_>, codec::StoredEventError> {
    use crate::event::borrowed::DataRef;
    let Some(view) = codec::decode_event_for_index(bytes, calls::LOG_CALL_EVENT_TYPE) else {
        return decode_indexed(bytes);
    };
    let mut log_call = None;
    if let DataRef::RunLog(l) = &view.data {
        if l.event_type == calls::LOG_CALL_EVENT_TYPE {
            log_call = Some(log_call::read_checked(l.payload)?);
        }
    }
    Ok(Indexed {
        seen: Seen::InPlace(view),
        log_call,
    })
}

/// Round 5's [`decode_indexed`] (docs/benchmarks.md, issue 11): the tool
/// call's payload checked by the strict decoder's own check, its fields
/// then read by a second parse ([`call_entry`]). Kept as the reference the
/// one parse is tested against (tests/engine/frames_in_place.rs) and
/// measured beside (benches/index_build.rs); no build uses it.
#[doc(hidden)]
pub fn decode_indexed_two_pass(
    bytes: &[u8],
) -> std::result::Result<Event, codec::StoredEventError> {
    use crate::event::borrowed::DataRef;
    use crate::event::json;
    let Ok(view) = codec::decode_event_ref(bytes) else {
        return codec::decode_stored_owned(bytes);
    };
    json::validate_ref(&view)?;
    if let DataRef::RunLog(l) = &view.data {
        if l.event_type == calls::LOG_CALL_EVENT_TYPE {
            json::check_json_text("payload", l.payload)?;
        }
    }
    match view.to_event() {
        Some(ev) => Ok(ev),
        None => codec::decode_stored_owned(bytes),
    }
}

/// What building an image asks of the older images of the log: look-ups,
/// never a scan (asked in ascending key order, they can go on from where
/// the last one ended).
pub trait Older {
    /// The nearest older image holding a start of `id`: its segment seq
    /// and the start's position in its RUNS.
    fn start(&self, id: &str) -> Option<(u64, u32)>;
    /// Does an older image hold a log of `id` with this `seq`?
    fn has_log(&self, id: &str, seq: u64) -> bool;
}

/// A first image: nothing older.
pub struct NoOlder;

impl Older for NoOlder {
    fn start(&self, _: &str) -> Option<(u64, u32)> {
        None
    }
    fn has_log(&self, _: &str, _: u64) -> bool {
        false
    }
}

/// Build an image over the blocks of `seg` in `span`, checking the chain
/// as it goes (docs/integrity.md): the image is returned only if every
/// block and the end digest hold.
pub fn build_image(
    meta: &SegmentMeta,
    seg: &[u8],
    kind: u32,
    span: Span,
    older: &dyn Older,
    progress: Option<&ProgressFn>,
) -> Result<Vec<u8>> {
    Ok(scan_image(meta, seg, kind, span, progress)?.finish(older))
}

/// The events of a span, checked and indexed: the part of a build that
/// needs nothing but the segment, so the scans of several segments can
/// run at once (`query::engine`); [`Scanned::finish`] then needs the
/// older images, and so runs in log order.
pub struct Scanned {
    builder: Builder,
    trusted_end: crate::chain::Digest,
}

impl Scanned {
    /// The image bytes, exactly those of [`build_image`].
    pub fn finish(self, older: &dyn Older) -> Vec<u8> {
        self.builder.finish(self.trusted_end, older)
    }

    /// [`Scanned::finish`], the image left in its pieces: for a caller
    /// that stores it ([`store_parts`]) and then reads the file.
    pub fn finish_parts(self, older: &dyn Older) -> ImageParts {
        self.builder.finish_parts(self.trusted_end, older)
    }
}

/// The first half of [`build_image`]: read, check and index the events of
/// `span`.
pub fn scan_image(
    meta: &SegmentMeta,
    seg: &[u8],
    kind: u32,
    span: Span,
    progress: Option<&ProgressFn>,
) -> Result<Scanned> {
    scan_image_with(meta, seg, kind, span, progress, Check::Strict)
}

/// [`scan_image`], reading the events as `check` says.
pub fn scan_image_with(
    meta: &SegmentMeta,
    seg: &[u8],
    kind: u32,
    span: Span,
    progress: Option<&ProgressFn>,
    check: Check,
) -> Result<Scanned> {
    let mut b = Builder::new(kind, meta.seq, span.first_lsn, span.from);
    b.chain_point(span.from, span.digest_at_from);
    let total = span.to - span.from;
    let report = progress.filter(|_| total >= PROGRESS_MIN_BYTES);
    let mut n = 0u64;
    let mut points = Vec::new();
    scan_checked(
        meta,
        seg,
        span,
        check,
        |end, d| points.push((end, d)),
        |lsn, off, end, ev, call| {
            b.add_call(lsn, off, end, ev, call);
            n += 1;
            if n.is_multiple_of(4096) {
                if let Some(report) = report {
                    report(&meta.name, end - span.from, total);
                }
            }
        },
    )?;
    for (end, d) in points {
        b.chain_point(end, d);
    }
    b.set_end_off(span.to);
    if let Some(report) = report {
        report(&meta.name, total, total);
    }
    Ok(Scanned {
        builder: b,
        trusted_end: span.trusted_end,
    })
}

/// Bytes handed to each write(2) when an image is stored. Why not the
/// whole image (~8 MiB) at once: on the 6.18 kernel of the measuring
/// machine the kernel's copy of whole images into the page cache cost
/// 12% of `auditlog ingest`'s CPU (~260 MB of images for 2M events;
/// likely the large folios it takes for large writes); `dd` of 256 MiB
/// took 0.07-0.13 s of system time in writes of 16 KiB to 1 MiB,
/// 0.07-0.76 s in writes of 2 or 8 MiB. In 256 KiB writes the command
/// took 11% less CPU (docs/benchmarks.md, "Ingest, cli37 round").
const STORE_WRITE_BYTES: usize = 256 << 10;

/// Write an index file atomically (temporary file, then rename). Best
/// effort: a read-only folder keeps the image in memory only.
pub fn store_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    store_with(path, |f| {
        for part in bytes.chunks(STORE_WRITE_BYTES) {
            f.write_all(part)?;
        }
        Ok(())
    })
}

/// [`store_file`] of an image in its pieces, written from them (in
/// writes of at most 256 KiB, as [`store_file`]'s): the
/// same file, without the image copied into one buffer first.
pub fn store_parts(path: &Path, parts: &ImageParts) -> std::io::Result<()> {
    store_with(path, |f| parts.write_to(f, STORE_WRITE_BYTES))
}

/// Write a file atomically: `write` fills a temporary file, which is
/// synced and renamed to `path`; on any failure it is removed.
fn store_with(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
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
        write(&mut f)?;
        f.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod fins_tests;
#[cfg(test)]
mod keys_summary_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod posting_tests;
#[cfg(test)]
mod run_filter_tests;

#[cfg(test)]
mod store_tests {
    use super::{store_file, STORE_WRITE_BYTES};

    #[test]
    fn an_image_written_in_pieces_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000001.idx");
        for len in [0, 1, STORE_WRITE_BYTES, 3 * STORE_WRITE_BYTES + 17] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            store_file(&path, &bytes).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{len} bytes");
        }
        // Only the file itself: no temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_store_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a folder: the rename fails after the writes.
        let path = dir.path().join("taken.idx");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"x").unwrap();
        assert!(store_file(&path, &vec![7u8; 2 * STORE_WRITE_BYTES + 1]).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("taken.idx")]);
    }
}
