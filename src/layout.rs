//! What is on disk: finding the segments of a log folder, checking sealed
//! ones through their footers (never re-reading them: that is `verify`'s
//! job), and recovering the active one by scanning it.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::chain::Digest;
use crate::codec;
use crate::error::{Error, IoContext, Result};
use crate::event::Micros;
use crate::fsutil;
use crate::manifest::{Manifest, SealedEntry, MANIFEST_FILE};
use crate::segment::{self, Footer, Header, HeaderError, Scan, HEADER_SIZE};

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
    /// LSN one past the last committed event (the event count ever).
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

/// What opening did to the active segment's tail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segment: Option<String>,
    /// Bytes cut off the end of the active segment.
    pub truncated_bytes: u64,
    /// Event records in the cut tail (never acknowledged as committed).
    pub dropped_events: u64,
    /// Why the tail was cut.
    pub reason: Option<String>,
    /// Leftover files of an interrupted retention that were removed.
    pub removed_leftovers: Vec<String>,
    /// An empty segment whose header never made it to disk, removed.
    pub removed_empty: Option<String>,
}

/// How an open treats damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The writer: cuts a torn tail and finishes interrupted retention.
    Write {
        /// Largest damaged tail treated as a torn final write.
        torn_tail_limit: u64,
    },
    /// A reader beside the writer (or an auditor): changes nothing.
    ReadOnly,
}

#[derive(Debug)]
pub struct Layout {
    pub manifest: Manifest,
    pub segments: Vec<SegmentMeta>,
    pub recovery: RecoveryReport,
    /// True when the manifest was brought up to date (writer only).
    pub manifest_changed: bool,
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

/// Read the layout of `dir` (whose manifest is `manifest`).
pub fn discover(dir: &Path, mut manifest: Manifest, mode: Mode) -> Result<Layout> {
    let mut files = list_segment_files(dir)?;
    let mut recovery = RecoveryReport::default();
    let mut manifest_changed = false;
    // Files older than the retention anchor: retention crashed between
    // writing the manifest and deleting them. Finish its work.
    let first_seq = manifest.anchor.first_seq;
    let (old, kept): (Vec<_>, Vec<_>) = files.drain(..).partition(|(_, seq, _)| *seq < first_seq);
    if let Mode::Write { .. } = mode {
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
    let mut segments: Vec<SegmentMeta> = Vec::with_capacity(files.len());
    let mut next_lsn = manifest.anchor.first_lsn;
    let mut digest = manifest.anchor_digest();
    let mut expect_seq = files.first().map(|f| f.1).unwrap_or(first_seq);
    for (i, (day, seq, name)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        if *seq != expect_seq {
            return Err(corrupt(
                &segment::file_name(*day, expect_seq),
                0,
                format!("segment {expect_seq} is missing (found {seq} next)"),
            ));
        }
        expect_seq = seq + 1;
        let path = dir.join(name);
        let map = map_file(&path)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let header = match Header::decode(bytes) {
            Ok(h) => h,
            // Another build's file: never mistaken for damage, never cut.
            Err(e @ HeaderError::UnsupportedVersion { .. }) => return Err(e.into_error(name)),
            Err(e) => {
                // A crash while creating the newest segment can leave it
                // with a partial header and, necessarily, no events.
                if is_last && bytes.len() <= HEADER_SIZE {
                    if let Mode::Write { .. } = mode {
                        drop(map);
                        fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
                        fsutil::sync_dir(dir)?;
                        recovery.removed_empty = Some(name.clone());
                    }
                    continue;
                }
                return Err(e.into_error(name));
            }
        };
        if header.seq != *seq || header.day != *day {
            return Err(corrupt(
                name,
                0,
                format!(
                    "header says day {} segment {}, but the file name says otherwise",
                    header.day, header.seq
                ),
            ));
        }
        if header.first_lsn != next_lsn || header.prev_digest != digest {
            return Err(corrupt(name, 0, format!(
                "does not continue the chain: starts at LSN {} (expected {next_lsn}) from digest {} (expected {digest})",
                header.first_lsn, header.prev_digest
            )));
        }
        if header.codec != codec::CODEC_BINCODE2_STANDARD {
            return Err(corrupt(
                name,
                10,
                format!("unknown codec id {}", header.codec),
            ));
        }
        let footer = segment::read_footer(bytes).map_err(|d| d.into_error(name))?;
        let meta = match footer {
            Some(f) => {
                if f.first_lsn != header.first_lsn || f.count == 0 {
                    return Err(corrupt(
                        name,
                        f.data_end,
                        "footer disagrees with the header",
                    ));
                }
                let meta = SegmentMeta::from_footer(*seq, *day, path.clone(), &header, &f);
                match manifest.sealed.iter().find(|e| e.seq == *seq) {
                    Some(e) if *e != meta.manifest_entry() => {
                        return Err(corrupt(name, f.data_end, format!(
                            "footer (LSN {}..{}, digest {}) disagrees with the MANIFEST (LSN {}.., {} events, digest {})",
                            f.first_lsn, f.last_lsn(), f.digest, e.first_lsn, e.count, e.digest
                        )));
                    }
                    Some(_) => {}
                    None => {
                        // Sealed just before a crash, before the manifest
                        // recorded it: the footer is checksummed, adopt it.
                        manifest.sealed.push(meta.manifest_entry());
                        manifest_changed = true;
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
                let (meta, report) = recover_active(&path, name, *seq, *day, &header, bytes, mode)?;
                if report.truncated_bytes > 0 {
                    recovery = RecoveryReport {
                        removed_leftovers: recovery.removed_leftovers,
                        removed_empty: recovery.removed_empty,
                        ..report
                    };
                }
                meta
            }
        };
        next_lsn = meta.end_lsn();
        digest = meta.digest;
        segments.push(meta);
    }
    manifest.sealed.sort_by_key(|e| e.seq);
    Ok(Layout {
        manifest,
        segments,
        recovery,
        manifest_changed,
    })
}

/// Scan the active segment; cut a torn tail (writer) or stop before it
/// (reader). Damage that cannot be a torn final write is an error.
fn recover_active(
    path: &Path,
    name: &str,
    seq: u64,
    day: u32,
    header: &Header,
    bytes: &[u8],
    mode: Mode,
) -> Result<(SegmentMeta, RecoveryReport)> {
    let scan = segment::scan(bytes, Scan::at_start(header), ts_of, |_| {});
    let mut report = RecoveryReport::default();
    if let Some(stop) = &scan.stop {
        let damaged = bytes.len() as u64 - scan.valid_end;
        if let Mode::Write { torn_tail_limit } = mode {
            let later_blocks = segment::has_commit_record(&bytes[stop.offset as usize..]);
            if later_blocks && damaged > torn_tail_limit {
                return Err(corrupt(name, stop.offset, format!(
                    "{}; whole blocks follow the damage, so this is not a torn final write and is not cut off automatically (run `auditlog verify`)",
                    stop.reason
                )));
            }
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .ctx(|| format!("opening {} to cut its torn tail", path.display()))?;
            file.set_len(scan.valid_end)
                .and_then(|_| file.sync_all())
                .ctx(|| format!("cutting the torn tail of {}", path.display()))?;
            report = RecoveryReport {
                segment: Some(name.to_string()),
                truncated_bytes: damaged,
                dropped_events: scan.uncommitted_events,
                reason: Some(format!("at offset {}: {}", stop.offset, stop.reason)),
                ..RecoveryReport::default()
            };
        }
    }
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
    Ok((meta, report))
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
