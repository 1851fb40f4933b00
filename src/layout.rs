//! What is on disk: finding the segments of a log folder, checking sealed
//! ones through their footers (never re-reading them: that is `verify`'s
//! job), and recovering the active one by scanning it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::blocks::{self, Scan};
use crate::chain::Digest;
use crate::codec;
use crate::error::{Error, IoContext, Result};
use crate::event::Micros;
use crate::fsutil;
use crate::manifest::{Manifest, SealedEntry, MANIFEST_FILE};
use crate::segment::{self, Damage, Footer, Header, HeaderError, HEADER_SIZE};

/// One segment as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub seq: u64,
    pub day: u32,
    pub name: String,
    pub path: PathBuf,
    pub first_lsn: u64,
    pub count: u64,
    pub min_ts: Option<Micros>,
    pub max_ts: Option<Micros>,
    /// Bytes from offset 0 that hold whole, committed blocks.
    pub data_len: u64,
    pub prev_digest: Digest,
    /// Chain digest after the last committed block.
    pub digest: Digest,
    pub sealed: bool,
}

impl SegmentMeta {
    /// An empty, unsealed, unnamed segment at LSN 0 after the genesis
    /// digest: a stand-in where code needs a meta and no segment exists
    /// (never stored), and the base of tests' metas.
    pub(crate) fn placeholder() -> SegmentMeta {
        SegmentMeta {
            seq: 0,
            day: 0,
            name: String::new(),
            path: PathBuf::new(),
            first_lsn: 0,
            count: 0,
            min_ts: None,
            max_ts: None,
            data_len: 0,
            prev_digest: Digest::GENESIS,
            digest: Digest::GENESIS,
            sealed: false,
        }
    }

    /// LSN one past the last event (== first_lsn when empty).
    pub fn end_lsn(&self) -> u64 {
        self.first_lsn + self.count
    }

    pub fn from_footer(seq: u64, day: u32, path: PathBuf, h: &Header, f: &Footer) -> SegmentMeta {
        SegmentMeta {
            seq,
            day,
            name: segment::file_name(day, seq),
            path,
            first_lsn: h.first_lsn,
            count: f.count,
            min_ts: Some(f.min_ts),
            max_ts: Some(f.max_ts),
            data_len: f.data_end,
            prev_digest: h.prev_digest,
            digest: f.digest,
            sealed: true,
        }
    }

    pub fn manifest_entry(&self) -> SealedEntry {
        SealedEntry {
            seq: self.seq,
            day: self.day,
            first_lsn: self.first_lsn,
            count: self.count,
            min_ts: self.min_ts.unwrap_or(0),
            max_ts: self.max_ts.unwrap_or(0),
            digest: self.digest.to_hex(),
        }
    }
}

/// The newest committed position and its chain digest: anchor it outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// LSN one past the last committed event (after a recorded gap it is
    /// not the number of events).
    pub next_lsn: u64,
    pub digest: Digest,
}

impl Head {
    /// The head of a log: where its newest segment ends, or, with no
    /// segment, its manifest's anchor (a new log, or retention dropped
    /// every segment). The one place the head is computed from disk.
    pub fn of(manifest: &Manifest, segments: &[SegmentMeta]) -> Head {
        match segments.last() {
            Some(s) => Head {
                next_lsn: s.end_lsn(),
                digest: s.digest,
            },
            None => Head {
                next_lsn: manifest.anchor.first_lsn,
                digest: manifest.anchor_digest(),
            },
        }
    }
}

/// What opening did besides reading: a cut or repair recorded, a pending
/// one finished, leftovers of an interrupted retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn tail cut at this open (its record is now in the log).
    pub cut: Option<crate::event::system::Cut>,
    /// A cut, repair or retention that a crash interrupted, finished now.
    pub finished_pending: Option<String>,
    /// Leftover files of an interrupted retention that were removed.
    pub removed_leftovers: Vec<String>,
    /// The newest segment, sealed just before a crash and not yet in the
    /// MANIFEST, added to it.
    pub adopted: Option<String>,
}

impl RecoveryReport {
    /// Bytes taken out of the log (into `quarantine/`) at this open.
    pub fn truncated_bytes(&self) -> u64 {
        self.cut.as_ref().map_or(0, |c| c.quarantine_bytes)
    }
}

/// How an open treats the newest segment's damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The writer: leftovers of an interrupted retention are removed; a
    /// torn tail is reported (the caller cuts it, docs/integrity.md).
    Write,
    /// A reader beside the writer (or an auditor): changes nothing.
    ReadOnly,
    /// `auditlog repair`: damage in the newest segment is reported instead
    /// of refused.
    Repair,
}

/// The newest segment's tail that does not verify: a torn tail (nothing
/// committed after it) or, in repair mode, damage with committed blocks
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailDamage {
    pub name: String,
    pub seq: u64,
    pub day: u32,
    pub path: PathBuf,
    /// The segment's header, `None` when not even that reached the disk.
    pub header: Option<Header>,
    /// Offset just past the last whole, valid block (72 with a header).
    pub valid_end: u64,
    pub kept_events: u64,
    /// Chain digest at `valid_end`.
    pub kept_digest: Digest,
    /// LSN of the first event after the kept ones.
    pub next_lsn: u64,
    /// Where and why the scan stopped.
    pub stop: crate::blocks::Stop,
    pub file_len: u64,
    /// Whether a whole, CRC-valid commit record follows the damage.
    pub committed_after: bool,
    /// LSN one past the highest LSN any such commit record names.
    pub max_committed_lsn: u64,
    /// Event frames found after `valid_end` (whole ones, plus one cut short).
    pub events_after: u64,
}

/// What an open found on disk.
#[derive(Debug)]
pub struct Layout {
    pub manifest: Manifest,
    pub segments: Vec<SegmentMeta>,
    pub recovery: RecoveryReport,
    /// True when the manifest was brought up to date (writer only).
    pub manifest_changed: bool,
    /// The newest segment's tail that does not verify (a torn tail; in
    /// repair mode, any damage), if any. Readers stop before it; the writer
    /// cuts a torn tail into quarantine/ (crate::recovery).
    pub tail: Option<TailDamage>,
    /// The newest segment, sealed but not yet listed in the MANIFEST (a
    /// crash between the two; the next writer open adds it).
    pub unlisted_newest: Option<u64>,
}

/// Map a whole file read-only. `None` for an empty file (which cannot be
/// mapped).
pub fn map_file(path: &Path) -> Result<Option<memmap2::Mmap>> {
    let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .ctx(|| format!("reading metadata of {}", path.display()))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: segment files are only appended to by the single writer, which
    // never rewrites committed bytes; readers only look at committed prefixes.
    // The one exception, cutting a torn tail on open, happens before any
    // reader of this process exists (see docs/design.md on readers).
    let map = unsafe { memmap2::Mmap::map(&file) }.ctx(|| format!("mapping {}", path.display()))?;
    Ok(Some(map))
}

/// Hand the pages of the file at `path`, mapped as `map`, back to the
/// kernel: clean pages that no other process maps leave the page cache at
/// once. For a bulk load whose segments nobody reads next (`auditlog
/// ingest`): the pages freed are the ones the next segment's writes take,
/// instead of pages the machine has not touched in a while, which in a VM
/// that returns free memory to its host cost a host fault each (docs/
/// benchmarks.md, "Round seventeen"). Two steps, because the kernel drops
/// a page only where it is not mapped: `MADV_PAGEOUT` over `map` reclaims
/// the pages this map touched, then `POSIX_FADV_DONTNEED` on the file the
/// cached pages no map holds (a map that never touched them, or none).
/// The mapping stays valid: a later read faults its page in from the file
/// again. Best effort: the first error is returned, after both steps were
/// tried (a kernel before 5.4 does not know `MADV_PAGEOUT`).
#[cfg(target_os = "linux")]
pub fn page_out(map: &memmap2::Mmap, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut first_error = None;
    if !map.is_empty() {
        // SAFETY: the range is exactly `map`'s, mapped for as long as
        // `map` lives; MADV_PAGEOUT is advice only: it reads and writes no
        // memory of ours and leaves the mapping's contents as they are (a
        // page it drops is read back from the file on the next touch).
        let r = unsafe {
            libc::madvise(
                map.as_ptr().cast_mut().cast::<libc::c_void>(),
                map.len(),
                libc::MADV_PAGEOUT,
            )
        };
        if r != 0 {
            first_error = Some(std::io::Error::last_os_error());
        }
    }
    let file = File::open(path)?;
    // SAFETY: posix_fadvise takes a descriptor this function holds open,
    // an offset and a length of 0 (the whole file) and an advice; it
    // reads and writes no memory of ours.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 && first_error.is_none() {
        first_error = Some(std::io::Error::from_raw_os_error(r));
    }
    first_error.map_or(Ok(()), Err)
}

/// [`page_out`] elsewhere: nothing to do.
#[cfg(not(target_os = "linux"))]
pub fn page_out(_map: &memmap2::Mmap, _path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn corrupt(name: &str, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        segment: name.to_string(),
        offset,
        reason: reason.into(),
    }
}

/// The `(day, seq, name)` of every segment file in `dir`, by seq.
pub fn list_segment_files(dir: &Path) -> Result<Vec<(u32, u64, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            if let Some((day, seq)) = segment::parse_file_name(name) {
                out.push((day, seq, name.to_string()));
            }
        }
    }
    out.sort_by_key(|&(_, seq, _)| seq);
    Ok(out)
}

/// Check that `dir` holds a log (or, for a writer, may become one), and load
/// its manifest. Creates a new log when allowed.
pub fn load_or_create_manifest(dir: &Path, may_create: bool) -> Result<(Manifest, bool)> {
    if !dir.exists() {
        if !may_create {
            return Err(Error::NoLog(dir.to_path_buf()));
        }
        fsutil::create_private_dir(dir)?;
    }
    if !dir.is_dir() {
        return Err(Error::NotALog(dir.to_path_buf()));
    }
    if let Some(m) = Manifest::load(dir)? {
        return Ok((m, false));
    }
    let has_files = fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name() != "LOCK" && e.file_name() != "MANIFEST.tmp");
    if has_files {
        return Err(Error::NotALog(dir.to_path_buf()));
    }
    if !may_create {
        return Err(Error::NoLog(dir.to_path_buf()));
    }
    Ok((Manifest::new(), true))
}

/// The timestamp of an event payload, for scans.
pub fn ts_of(payload: &[u8]) -> std::result::Result<Micros, codec::CodecError> {
    codec::peek_ts(payload)
}

/// Read the layout of `dir` (whose manifest is `manifest`): every segment,
/// checked through its header and footer against the MANIFEST (both ways),
/// the chain links between segments, the recorded gaps and the retention
/// record; the active segment scanned block by block.
pub fn discover(dir: &Path, mut manifest: Manifest, mode: Mode) -> Result<Layout> {
    let mut files = list_segment_files(dir)?;
    let mut recovery = RecoveryReport::default();
    let mut manifest_changed = false;
    // Files older than the retention anchor: retention crashed between
    // writing the manifest and deleting them. Finish its work.
    let first_seq = manifest.anchor.first_seq;
    let (old, kept): (Vec<_>, Vec<_>) = files.drain(..).partition(|(_, seq, _)| *seq < first_seq);
    if let Mode::Write | Mode::Repair = mode {
        for (_, _, name) in &old {
            remove_segment_files(dir, name)?;
            recovery.removed_leftovers.push(name.clone());
        }
    }
    let files = kept;
    for entry in &manifest.sealed {
        if !files.iter().any(|(_, seq, _)| *seq == entry.seq) {
            return Err(corrupt(
                &segment::file_name(entry.day, entry.seq),
                0,
                "segment listed in the MANIFEST is missing from the folder",
            ));
        }
    }
    let pending_cut = manifest.pending.as_ref().and_then(|p| p.cut()).cloned();
    let mut at = Cursor {
        next_lsn: manifest.anchor.first_lsn,
        digest: manifest.anchor_digest(),
        expect_seq: first_seq,
    };
    let mut segments: Vec<SegmentMeta> = Vec::with_capacity(files.len());
    let mut tail = None;
    let mut unlisted_newest = None;
    for (i, (day, seq, name)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let path = dir.join(name);
        let map = map_file(&path)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let header = match Header::decode(bytes) {
            Ok(h) => h,
            // Another build's file: never mistaken for damage, never cut.
            Err(e @ HeaderError::UnsupportedVersion { .. }) => return Err(e.into_error(name)),
            Err(e) if is_last && (bytes.len() <= HEADER_SIZE || mode == Mode::Repair) => {
                // The newest file with no whole header: a crash while
                // creating it (then it holds nothing), or damage.
                tail = Some(headerless(
                    name,
                    *seq,
                    *day,
                    &path,
                    bytes,
                    &at,
                    e.to_string(),
                ));
                continue;
            }
            Err(e) => return Err(e.into_error(name)),
        };
        check_header(
            name,
            *seq,
            *day,
            &header,
            bytes,
            &at,
            pending_cut.as_ref(),
            is_last,
        )?;
        let footer = segment::read_footer(bytes).map_err(|d| d.into_error(name))?;
        let meta = match footer {
            Some(f) => {
                let meta = sealed_meta(name, *seq, *day, &path, &header, &f)?;
                match manifest.sealed.iter().find(|e| e.seq == *seq) {
                    Some(e) if *e != meta.manifest_entry() => {
                        return Err(corrupt(name, f.data_end, format!(
                            "footer (LSN {}..{}, digest {}) disagrees with the MANIFEST (LSN {}.., {} events, digest {})",
                            f.first_lsn, f.last_lsn(), f.digest, e.first_lsn, e.count, e.digest
                        )));
                    }
                    Some(_) => {}
                    None if is_last => {
                        // Sealed just before a crash, before the manifest
                        // recorded it: the footer is checksummed, adopt it.
                        unlisted_newest = Some(*seq);
                        if mode != Mode::ReadOnly {
                            manifest.sealed.push(meta.manifest_entry());
                            manifest_changed = true;
                            recovery.adopted = Some(name.clone());
                        }
                    }
                    None => {
                        return Err(corrupt(name, f.data_end,
                            "sealed segment is not listed in the MANIFEST, and newer segments follow it (was its entry removed?); the MANIFEST is not silently repaired"));
                    }
                }
                meta
            }
            None if !is_last => {
                return Err(corrupt(name, bytes.len() as u64,
                    "sealed segment has no footer (was it truncated?); only the newest segment may be open"));
            }
            None => {
                if manifest.sealed.iter().any(|e| e.seq == *seq) {
                    return Err(corrupt(name, bytes.len() as u64,
                        "the MANIFEST lists this segment as sealed but its footer is gone (truncated?)"));
                }
                let (meta, damage) = scan_active(&path, name, *seq, *day, &header, bytes, mode)?;
                tail = damage;
                meta
            }
        };
        at = Cursor {
            next_lsn: meta.end_lsn(),
            digest: meta.digest,
            expect_seq: seq + 1,
        };
        segments.push(meta);
    }
    manifest.sealed.sort_by_key(|e| e.seq);
    check_retention(&manifest, &segments)?;
    Ok(Layout {
        manifest,
        segments,
        recovery,
        manifest_changed,
        tail,
        unlisted_newest,
    })
}

/// Where the log stands before the next segment: what it must continue.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    next_lsn: u64,
    digest: Digest,
    expect_seq: u64,
}

fn sealed_meta(
    name: &str,
    seq: u64,
    day: u32,
    path: &Path,
    header: &Header,
    f: &Footer,
) -> Result<SegmentMeta> {
    if f.first_lsn != header.first_lsn || f.count == 0 {
        return Err(corrupt(
            name,
            f.data_end,
            "footer disagrees with the header",
        ));
    }
    Ok(SegmentMeta::from_footer(
        seq,
        day,
        path.to_path_buf(),
        header,
        f,
    ))
}

/// A segment's header must match its name, continue the chain, and either
/// continue the numbering or start with the record of a gap.
#[allow(clippy::too_many_arguments)]
fn check_header(
    name: &str,
    seq: u64,
    day: u32,
    header: &Header,
    bytes: &[u8],
    at: &Cursor,
    pending: Option<&crate::event::system::Cut>,
    is_last: bool,
) -> Result<()> {
    if header.seq != seq || header.day != day {
        return Err(corrupt(
            name,
            0,
            format!(
                "header says day {} segment {}, but the file name says otherwise",
                header.day, header.seq
            ),
        ));
    }
    if header.prev_digest != at.digest {
        return Err(corrupt(
            name,
            0,
            format!(
                "does not continue the chain: starts from digest {} (expected {})",
                header.prev_digest, at.digest
            ),
        ));
    }
    if header.codec != codec::CODEC_BINCODE2_STANDARD {
        return Err(corrupt(
            name,
            10,
            format!("unknown codec id {}", header.codec),
        ));
    }
    if header.seq == at.expect_seq && header.first_lsn == at.next_lsn {
        return Ok(());
    }
    check_gap(name, header, bytes, at, pending, is_last)
}

/// A segment that jumps (sequence number or first LSN) must begin with a
/// block holding only the cut or repair record that names the jump
/// exactly; while that record is pending (MANIFEST), the newest segment may
/// hold only its header.
fn check_gap(
    name: &str,
    header: &Header,
    bytes: &[u8],
    at: &Cursor,
    pending: Option<&crate::event::system::Cut>,
    is_last: bool,
) -> Result<()> {
    let names_it = |c: &crate::event::system::Cut| {
        c.skip_from_seq == at.expect_seq
            && c.skip_to_seq == header.seq
            && c.skip_from_lsn == at.next_lsn
            && c.skip_to_lsn == header.first_lsn
            && c.kept_digest() == at.digest
    };
    let jump = format!(
        "does not continue the log: expected segment {} from LSN {}, found segment {} from LSN {}, and no recorded gap explains it (was a segment deleted?)",
        at.expect_seq, at.next_lsn, header.seq, header.first_lsn
    );
    let end = bytes.len() as u64;
    let mut walk = crate::blocks::Walk::new(
        bytes,
        HEADER_SIZE as u64,
        end,
        header.prev_digest,
        header.first_lsn,
    );
    match walk.next_block() {
        Ok(Some(block)) => {
            let mut evs = block.events();
            let record = match (evs.next(), evs.next()) {
                (Some((_, payload)), None) => codec::decode_stored(payload).ok(),
                _ => None,
            };
            match record
                .as_ref()
                .and_then(|e| e.data.system())
                .and_then(|r| r.cut())
            {
                Some(c) if names_it(c) => Ok(()),
                _ => Err(corrupt(name, 0, jump)),
            }
        }
        // Header only: the record is still to be written.
        Ok(None) | Err(_) if is_last && pending.is_some_and(names_it) => Ok(()),
        _ => Err(corrupt(name, 0, jump)),
    }
}

/// The newest file, without a whole header.
fn headerless(
    name: &str,
    seq: u64,
    day: u32,
    path: &Path,
    bytes: &[u8],
    at: &Cursor,
    reason: String,
) -> TailDamage {
    let (max_lsn, committed_after) = commit_records_after(bytes, 0);
    let (events, partial) = blocks::count_event_frames(bytes, HEADER_SIZE as u64);
    TailDamage {
        name: name.to_string(),
        seq,
        day,
        path: path.to_path_buf(),
        header: None,
        valid_end: 0,
        kept_events: 0,
        kept_digest: at.digest,
        next_lsn: at.next_lsn,
        stop: crate::blocks::Stop {
            offset: 0,
            reason,
            truncated: bytes.len() < HEADER_SIZE,
        },
        file_len: bytes.len() as u64,
        committed_after,
        max_committed_lsn: max_lsn.max(at.next_lsn),
        events_after: events + u64::from(partial),
    }
}

/// Whether a whole, CRC-valid commit record starts at any byte offset of
/// `bytes[from..]`, and one past the highest LSN those records name.
fn commit_records_after(bytes: &[u8], from: u64) -> (u64, bool) {
    let rest = bytes.get(from as usize..).unwrap_or(&[]);
    let mut found = false;
    let mut max = 0;
    segment::each_commit_record(rest, |c| {
        found = true;
        max = max.max(c.first_lsn.saturating_add(c.count as u64));
    });
    (max, found)
}

/// The MANIFEST's anchor must be the genesis, or name the retention record
/// that moved it (docs/format.md): decoded strictly, its block's digest
/// recomputed from the block before, its anchor and totals the MANIFEST's.
fn check_retention(manifest: &Manifest, segments: &[SegmentMeta]) -> Result<()> {
    let Some(r) = manifest.retention else {
        if manifest.anchor_is_genesis() {
            return Ok(());
        }
        return Err(corrupt("MANIFEST", 0, format!(
            "the log starts at segment {} (LSN {}), so older segments were dropped, but the MANIFEST names no retention record: retention always leaves one in the log; without it this is a deletion",
            manifest.anchor.first_seq, manifest.anchor.first_lsn
        )));
    };
    let Some(meta) = segments.iter().find(|s| s.seq == r.seq) else {
        return Err(corrupt(
            "MANIFEST",
            0,
            format!(
                "the retention record it names is in segment {}, which the log does not hold",
                r.seq
            ),
        ));
    };
    let map = map_file(&meta.path)?;
    let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
    let bad = |reason: String| corrupt(&meta.name, r.offset, reason);
    let record =
        read_lone_record(bytes, meta, r.offset, r.lsn).map_err(|d| d.into_error(&meta.name))?;
    let Some(crate::event::system::SystemRecord::Retention(x)) = record.data.system() else {
        return Err(bad(
            "the MANIFEST's retention record is not a retention record".into(),
        ));
    };
    let matches = x.anchor_first_seq == manifest.anchor.first_seq
        && x.anchor_first_lsn == manifest.anchor.first_lsn
        && x.anchor_digest() == manifest.anchor_digest()
        && x.total_dropped_segments == manifest.dropped_segments
        && x.total_dropped_events == manifest.dropped_events;
    if !matches {
        return Err(bad(format!(
            "the retention record says the log starts at segment {} (LSN {}, digest {}) after {} dropped segments, but the MANIFEST says segment {} (LSN {}, digest {}) after {}",
            x.anchor_first_seq, x.anchor_first_lsn, x.anchor_digest, x.total_dropped_segments,
            manifest.anchor.first_seq, manifest.anchor.first_lsn, manifest.anchor.digest, manifest.dropped_segments
        )));
    }
    Ok(())
}

/// The event stored alone in the block starting at `offset` of a segment,
/// with LSN `lsn`: decoded strictly, the block's digest recomputed from the
/// digest before it (the previous commit record's, or the header's). The
/// damage, if any, is reported at `offset` (the record's place).
pub fn read_lone_record(
    bytes: &[u8],
    meta: &SegmentMeta,
    offset: u64,
    lsn: u64,
) -> std::result::Result<crate::event::Event, Damage> {
    let bad = |reason: String| Damage::at(offset, reason);
    let prev = if offset == HEADER_SIZE as u64 {
        meta.prev_digest
    } else {
        crate::blocks::stored_digest_at(bytes, offset)
            .map(|(d, _)| d)
            .ok_or_else(|| bad("no block ends right before the record".into()))?
    };
    if offset >= meta.data_len {
        return Err(bad(format!(
            "offset {offset} is past the segment's committed end {}",
            meta.data_len
        )));
    }
    let mut walk = crate::blocks::Walk::new(bytes, offset, meta.data_len, prev, lsn);
    let block = walk
        .next_block()
        .map_err(|s| bad(format!("at offset {}: {}", s.offset, s.reason)))?
        .ok_or_else(|| bad("no block at that offset".into()))?;
    let mut evs = block.events();
    match (evs.next(), evs.next()) {
        (Some((_, payload)), None) => codec::decode_stored(payload).map_err(|e| bad(e.to_string())),
        _ => Err(bad("the block there does not hold exactly one event".into())),
    }
}

/// Scan the active segment. Its committed prefix ends where the scan stops
/// only if nothing committed follows (a torn tail, or a write in flight);
/// otherwise the damage is an error (or, in repair mode, reported).
fn scan_active(
    path: &Path,
    name: &str,
    seq: u64,
    day: u32,
    header: &Header,
    bytes: &[u8],
    mode: Mode,
) -> Result<(SegmentMeta, Option<TailDamage>)> {
    let scan = blocks::scan(bytes, Scan::at_start(header), ts_of, |_| {});
    let meta = SegmentMeta {
        seq,
        day,
        name: name.to_string(),
        path: path.to_path_buf(),
        first_lsn: header.first_lsn,
        count: scan.count,
        min_ts: scan.min_ts,
        max_ts: scan.max_ts,
        data_len: scan.valid_end,
        prev_digest: header.prev_digest,
        digest: scan.digest,
        sealed: false,
    };
    let Some(stop) = scan.stop.clone() else {
        return Ok((meta, None));
    };
    let (max_lsn, committed_after) = commit_records_after(bytes, stop.offset);
    let (events, partial) = blocks::count_event_frames(bytes, scan.valid_end);
    let damage = TailDamage {
        name: name.to_string(),
        seq,
        day,
        path: path.to_path_buf(),
        header: Some(header.clone()),
        valid_end: scan.valid_end,
        kept_events: scan.count,
        kept_digest: scan.digest,
        next_lsn: scan.next_lsn,
        stop: stop.clone(),
        file_len: bytes.len() as u64,
        committed_after,
        max_committed_lsn: max_lsn.max(scan.next_lsn),
        events_after: events + u64::from(partial),
    };
    if committed_after && mode != Mode::Repair {
        return Err(corrupt(name, stop.offset, format!(
            "{}; committed blocks follow the damage, so it is not a torn write: nothing was changed (`auditlog repair` moves the damaged file into quarantine/ and starts a new segment)",
            stop.reason
        )));
    }
    Ok((meta, Some(damage)))
}

/// Remove a segment and every derived file named after it (`STEM.*`).
pub fn remove_segment_files(dir: &Path, name: &str) -> Result<()> {
    let stem = name.strip_suffix(".seg").unwrap_or(name);
    for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        let derived = fname
            .strip_prefix(stem)
            .is_some_and(|rest| rest.starts_with('.'));
        if derived {
            let p = entry.path();
            fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Whether `name` in a log folder is a file the engine owns.
pub fn is_log_file(name: &str) -> bool {
    name == MANIFEST_FILE || segment::parse_file_name(name).is_some()
}
