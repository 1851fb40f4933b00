//! Reading an index image: the bytes of one `STEM.idx` file (memory-mapped)
//! or of an in-memory index over part of the active segment. Byte layout in
//! docs/index-format.md.
//!
//! Verification is lazy: the header, section table and block-CRC table are
//! checked when the image is opened; each 64 KiB block of the body is
//! checked the first time a query touches it. A bad block does not panic
//! or return an error in the hot path: the image is marked *poisoned*,
//! reads return empty values, and the query engine throws the answer away,
//! rebuilds the index from its segment and asks again.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::chain::Digest;
use crate::event::Micros;
use crate::num::{u32_of, usize_of};
use crate::segment::{Commit, Damage, COMMIT_FRAME_SIZE};

pub const MAGIC: &[u8; 8] = b"AUDLOGIX";
/// 2: the AMND section (amending events, docs/contract.md); 3: the CHAIN
/// section (the chain digest at every block boundary, docs/integrity.md).
/// 4: the failing-tool-call table (TERR) replaced by the tool-call sections
/// CALLS, CKEYS and CPOST (docs/tool-calls.md).
/// 5: FINS records carry the id's hash and the position of the nearest
/// older start, sorted by (hash, id), so queries search them on disk per
/// image instead of a map in memory; header flag "some FINS is dry_run";
/// AMND also lists replacing logs that may hide another (`AMEND_LOG`).
/// 6: KEYS records carry how many of the listed runs are plain (not a dry
/// run, not shadowed by an older start) and how many are shadowed, so a
/// count by status adds one number per image instead of visiting each run.
/// 7: the run-id filter (RFILT, section 12) stored in sealed images, so a
/// reopened engine or a one-shot query skips the images that do not hold
/// an id from its first lookup (it was built in memory before).
/// 8: RFILT also holds every id of LOGS, so a run's logs are searched only
/// in the images that may hold some (before, every image's LOGS was
/// binary-searched for every `run_with_logs`).
pub const VERSION: u32 = 8;
pub const HEADER_LEN: usize = 128;
pub const N_SECT: usize = 13;
pub const SECT_TABLE_LEN: usize = N_SECT * 16;
pub const BODY_START: usize = HEADER_LEN + SECT_TABLE_LEN;
pub const BLOCK: usize = 64 * 1024;
/// "No value" for u64 fields (LSN, offset, seq).
pub const NONE: u64 = u64::MAX;

/// Image kinds (header field `kind`).
pub const KIND_SEALED: u32 = 0;
pub const KIND_CHUNK: u32 = 1;

/// Sections, in file order.
pub const S_STR: usize = 0;
pub const S_RUNS: usize = 1;
pub const S_ORDER: usize = 2;
pub const S_KEYS: usize = 3;
pub const S_POST: usize = 4;
pub const S_FINS: usize = 5;
pub const S_LOGS: usize = 6;
/// Tool calls (both kinds), ordered by (ts, LSN).
pub const S_CALLS: usize = 7;
/// Amending events that override an earlier start or finish.
pub const S_AMND: usize = 8;
/// The chain digest at every block boundary the image covers.
pub const S_CHAIN: usize = 9;
/// Tool-call posting-list keys, and their lists (CALLS positions).
pub const S_CKEYS: usize = 10;
pub const S_CPOST: usize = 11;
/// The run-id filter of a sealed image (64-byte lines; empty in a chunk).
pub const S_RFILT: usize = 12;

/// Record sizes per section (0 = raw bytes).
pub const REC_SIZE: [usize; N_SECT] = [
    0,
    run::SIZE,
    4,
    key::SIZE,
    4,
    fin::SIZE,
    log::SIZE,
    // CALLS, then (after AMND and CHAIN) CKEYS and CPOST: their field
    // offsets are in src/index/calls.rs.
    104,
    amnd::SIZE,
    point::SIZE,
    24,
    4,
    super::run_filter::LINE,
];

/// AMND record kinds.
pub const AMEND_START: u32 = 1;
pub const AMEND_FINISH: u32 = 2;
/// A replacing log (since version 5): it hides the earlier logs of its
/// run with the same seq, in any image.
pub const AMEND_LOG: u32 = 3;

/// Field offsets of a RUNS record (docs/index-format.md): the builder
/// writes and the reader reads through these names only. A string field
/// is a heap reference (u32 offset, u32 length); the others are u64 LE.
pub mod run {
    pub const ID: usize = 0;
    pub const SKILL: usize = 8;
    pub const CALLER: usize = 16;
    pub const CHANNEL: usize = 24;
    pub const PARENT: usize = 32;
    /// The local finish's status (empty without one).
    pub const STATUS: usize = 40;
    pub const START_LSN: usize = 48;
    pub const START_OFF: usize = 56;
    pub const STARTED_AT: usize = 64;
    pub const FINISH_LSN: usize = 72;
    pub const FINISH_OFF: usize = 80;
    pub const FINISHED_AT: usize = 88;
    pub const SHADOW_SEQ: usize = 96;
    pub const FLAGS: usize = 104;
    pub const SIZE: usize = 112;
    const _: () = assert!(STATUS + 8 == START_LSN && FLAGS + 8 == SIZE);
}

/// Field offsets of a KEYS record.
pub mod key {
    /// u32: the key kind (`K_*`).
    pub const KIND: usize = 0;
    /// u32: the posting list's length.
    pub const LEN: usize = 4;
    /// Heap reference: the key's value.
    pub const VALUE: usize = 8;
    /// u64: the posting list's first position in POST.
    pub const POST_START: usize = 16;
    /// u32: listed runs whose start is not a dry run and is not shadowed
    /// (`run::SHADOW_SEQ` is NONE). Since version 6.
    pub const PLAIN: usize = 24;
    /// u32: listed runs whose start is shadowed by an older image's.
    pub const SHADOWED: usize = 28;
    pub const SIZE: usize = 32;
    const _: () = assert!(POST_START + 8 == PLAIN && SHADOWED + 4 == SIZE);
}

/// Field offsets of a FINS record.
pub mod fin {
    pub const ID: usize = 0;
    pub const STATUS: usize = 8;
    pub const LSN: usize = 16;
    pub const OFF: usize = 24;
    pub const TS: usize = 32;
    /// u64: the [`super::RunHash`] of the id (records sort by it first).
    pub const HASH: usize = 40;
    /// u64: seq of the nearest older image holding a start of the id
    /// (NONE if none did when the image was built).
    pub const START_SEQ: usize = 48;
    /// u32: that start's RUNS position there; 4 bytes of padding follow.
    pub const START_POS: usize = 56;
    pub const SIZE: usize = 64;
    const _: () = assert!(START_POS + 8 == SIZE);
}

/// Field offsets of a LOGS record.
pub mod log {
    pub const ID: usize = 0;
    pub const SEQ: usize = 8;
    pub const LSN: usize = 16;
    pub const OFF: usize = 24;
    pub const SIZE: usize = 32;
    const _: () = assert!(OFF + 8 == SIZE);
}

/// Field offsets of an AMND (amending event) record.
pub mod amnd {
    pub const ID: usize = 0;
    /// u32: `AMEND_START`, `AMEND_FINISH` or `AMEND_LOG`; 4 bytes of padding follow.
    pub const KIND: usize = 8;
    pub const LSN: usize = 16;
    pub const OFF: usize = 24;
    pub const SIZE: usize = 32;
    const _: () = assert!(OFF + 8 == SIZE);
}

/// Field offsets of a CHAIN record (a chain point): the segment offset of
/// a block boundary and the chain digest there.
pub mod point {
    /// u64: the segment offset.
    pub const OFF: usize = 0;
    /// 32 bytes: the chain digest at that offset.
    pub const DIGEST: usize = 8;
    pub const SIZE: usize = 40;
    const _: () = assert!(DIGEST + 32 == SIZE);
}

/// Byte offsets of the index file header (128 bytes; docs/index-format.md).
pub mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const KIND: usize = 12;
    pub const SEQ: usize = 16;
    pub const FIRST_LSN: usize = 24;
    pub const END_LSN: usize = 32;
    pub const START_OFF: usize = 40;
    pub const END_OFF: usize = 48;
    pub const DIGEST: usize = 56;
    pub const MIN_TS: usize = 88;
    pub const MAX_TS: usize = 96;
    pub const CRC_TABLE_OFF: usize = 104;
    pub const N_BLOCKS: usize = 112;
    pub const DUP_STARTS: usize = 116;
    /// u32: header flags (`HF_*`).
    pub const FLAGS: usize = 120;
    /// u32: CRC of the header (bytes before it), section and block tables.
    pub const CRC: usize = 124;
    const _: () = assert!(DIGEST + 32 == MIN_TS && CRC + 4 == super::HEADER_LEN);
}

/// Posting-list key kinds.
pub const K_SKILL: u32 = 1;
pub const K_CALLER: u32 = 2;
pub const K_CHANNEL: u32 = 3;
pub const K_PARENT: u32 = 4;
pub const K_STATUS: u32 = 5;

/// The local status of a run with no finish in its own image.
pub const RUNNING: &[u8] = b"running";

/// Header flags: some FINS record's status is `dry_run` (queries then
/// need the foreign status of unfinished runs to tell dry runs).
pub const HF_DRY_FINS: u32 = 1;

/// Run flags.
pub const F_DRY: u64 = 1;
pub const F_FINISHED: u64 = 2;

static ZEROS: [u8; 128] = [0u8; 128];

/// Why bytes are not an index image this build can use (the image is
/// then rebuilt from its segment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("file is {len} bytes, shorter than its header")]
    Short { len: usize },
    #[error("not an index file (bad magic)")]
    BadMagic,
    #[error("index format version {found}, this build reads {VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("block table does not fit the file (truncated?)")]
    Truncated,
    #[error("header checksum mismatch")]
    BadChecksum,
    #[error("section {section} {problem}")]
    BadSection {
        section: usize,
        problem: &'static str,
    },
}

/// The first LSN of the block of `seg` ending at `end`, from the commit
/// record that ends there (the digest check that follows covers it).
fn block_first_lsn(seg: &[u8], end: u64) -> Option<u64> {
    let end = usize_of(end);
    let start = end.checked_sub(COMMIT_FRAME_SIZE)?;
    let f = crate::frame::read_frame(seg.get(start..end)?).ok()?;
    Commit::decode(f.payload).map(|c| c.first_lsn)
}

/// The bytes behind an image.
pub enum Backing {
    Map(memmap2::Mmap),
    Vec(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Vec(v) => v,
        }
    }
}

/// The fixed header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexHeader {
    pub kind: u32,
    pub seq: u64,
    pub first_lsn: u64,
    pub end_lsn: u64,
    pub start_off: u64,
    pub end_off: u64,
    pub digest: Digest,
    pub min_ts: Micros,
    pub max_ts: Micros,
    pub crc_table_off: u64,
    pub n_blocks: u32,
    /// Extra `run_started` of a run id already started in this image.
    pub dup_starts: u32,
    /// `HF_*` bits.
    pub flags: u32,
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}
pub(crate) fn le_i64(b: &[u8], at: usize) -> i64 {
    le_u64(b, at).cast_signed()
}
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}

impl IndexHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(hdr::MAGIC, MAGIC);
        put(hdr::VERSION, &VERSION.to_le_bytes());
        put(hdr::KIND, &self.kind.to_le_bytes());
        put(hdr::SEQ, &self.seq.to_le_bytes());
        put(hdr::FIRST_LSN, &self.first_lsn.to_le_bytes());
        put(hdr::END_LSN, &self.end_lsn.to_le_bytes());
        put(hdr::START_OFF, &self.start_off.to_le_bytes());
        put(hdr::END_OFF, &self.end_off.to_le_bytes());
        put(hdr::DIGEST, &self.digest.0);
        put(hdr::MIN_TS, &self.min_ts.to_le_bytes());
        put(hdr::MAX_TS, &self.max_ts.to_le_bytes());
        put(hdr::CRC_TABLE_OFF, &self.crc_table_off.to_le_bytes());
        put(hdr::N_BLOCKS, &self.n_blocks.to_le_bytes());
        put(hdr::DUP_STARTS, &self.dup_starts.to_le_bytes());
        put(hdr::FLAGS, &self.flags.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<IndexHeader, ImageError> {
        if b.len() < BODY_START {
            return Err(ImageError::Short { len: b.len() });
        }
        if &b[hdr::MAGIC..hdr::MAGIC + 8] != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let version = le_u32(b, hdr::VERSION);
        if version != VERSION {
            return Err(ImageError::UnsupportedVersion { found: version });
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[hdr::DIGEST..hdr::DIGEST + 32]);
        Ok(IndexHeader {
            kind: le_u32(b, hdr::KIND),
            seq: le_u64(b, hdr::SEQ),
            first_lsn: le_u64(b, hdr::FIRST_LSN),
            end_lsn: le_u64(b, hdr::END_LSN),
            start_off: le_u64(b, hdr::START_OFF),
            end_off: le_u64(b, hdr::END_OFF),
            digest: Digest(digest),
            min_ts: le_i64(b, hdr::MIN_TS),
            max_ts: le_i64(b, hdr::MAX_TS),
            crc_table_off: le_u64(b, hdr::CRC_TABLE_OFF),
            n_blocks: le_u32(b, hdr::N_BLOCKS),
            dup_starts: le_u32(b, hdr::DUP_STARTS),
            flags: le_u32(b, hdr::FLAGS),
        })
    }
}

/// CRC of the header (bytes 0..124), the section table and the block table.
pub(crate) fn header_crc(b: &[u8], crc_table_off: usize, n_blocks: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..hdr::CRC]);
    h.update(&b[HEADER_LEN..BODY_START]);
    h.update(&b[crc_table_off..crc_table_off + 4 * n_blocks]);
    h.finalize()
}

/// A string reference inside the string heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrRef(pub u32, pub u32);

/// One run start in an image (the first `run_started` of its id there).
#[derive(Debug, Clone, Copy)]
pub struct RunRec<'a> {
    pub id: &'a [u8],
    pub skill: &'a [u8],
    pub caller: &'a [u8],
    pub channel: &'a [u8],
    pub parent: &'a [u8],
    /// Local status ("running" without a local finish).
    pub status: &'a [u8],
    pub start_lsn: u64,
    pub start_off: u64,
    pub started_at: Micros,
    pub finish_lsn: u64,
    pub finish_off: u64,
    pub finished_at: Micros,
    /// Seq of the nearest older segment that also started this id (NONE).
    pub shadow_seq: u64,
    pub flags: u64,
}

/// See [`Image::run_lazy`]; field offsets as in [`Image::run`].
#[derive(Clone, Copy)]
pub struct LazyRun<'a> {
    img: &'a Image,
    rec: &'a [u8],
}

impl<'a> LazyRun<'a> {
    pub fn id(&self) -> &'a [u8] {
        self.img.str_at(self.rec, run::ID)
    }
    pub fn skill(&self) -> &'a [u8] {
        self.img.str_at(self.rec, run::SKILL)
    }
    pub fn caller(&self) -> &'a [u8] {
        self.img.str_at(self.rec, run::CALLER)
    }
    pub fn channel(&self) -> &'a [u8] {
        self.img.str_at(self.rec, run::CHANNEL)
    }
    pub fn parent(&self) -> &'a [u8] {
        self.img.str_at(self.rec, run::PARENT)
    }
    /// Top-level: the parent string is empty (no heap read needed).
    pub fn parent_is_empty(&self) -> bool {
        le_u32(self.rec, run::PARENT + 4) == 0
    }
    pub fn flags(&self) -> u64 {
        le_u64(self.rec, run::FLAGS)
    }
    pub fn has_local_finish(&self) -> bool {
        self.flags() & F_FINISHED != 0
    }
    pub fn dry_run(&self) -> bool {
        self.flags() & F_DRY != 0
    }
    /// Local status ("running" without a local finish).
    pub fn status(&self) -> &'a [u8] {
        if self.has_local_finish() {
            self.img.str_at(self.rec, run::STATUS)
        } else {
            RUNNING
        }
    }
    pub fn start_lsn(&self) -> u64 {
        le_u64(self.rec, run::START_LSN)
    }
    pub fn started_at(&self) -> Micros {
        le_i64(self.rec, run::STARTED_AT)
    }
    pub fn shadow_seq(&self) -> u64 {
        le_u64(self.rec, run::SHADOW_SEQ)
    }
    pub fn start_off(&self) -> u64 {
        le_u64(self.rec, run::START_OFF)
    }
    pub fn finish_off(&self) -> u64 {
        le_u64(self.rec, run::FINISH_OFF)
    }
    pub fn finished_at(&self) -> Micros {
        le_i64(self.rec, run::FINISHED_AT)
    }
}

impl RunRec<'_> {
    pub fn dry_run(&self) -> bool {
        self.flags & F_DRY != 0
    }
    pub fn has_local_finish(&self) -> bool {
        self.flags & F_FINISHED != 0
    }
}

/// A finish in an image that is not attached to a (non-shadowed) start of
/// the same image.
#[derive(Debug, Clone, Copy)]
pub struct FinRec<'a> {
    pub id: &'a [u8],
    pub status: &'a [u8],
    pub lsn: u64,
    pub off: u64,
    pub ts: Micros,
    /// The nearest older start of the id when the image was built:
    /// (image seq, RUNS position there), seq NONE if there was none.
    pub start_seq: u64,
    pub start_pos: u32,
}

/// An amending (`"replace":true`) start or finish that may override an
/// earlier one of its run.
#[derive(Debug, Clone, Copy)]
pub struct AmendRec<'a> {
    pub id: &'a [u8],
    pub kind: u32,
    pub lsn: u64,
    pub off: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct LogRec<'a> {
    pub id: &'a [u8],
    pub seq: u64,
    pub lsn: u64,
    pub off: u64,
}

/// What a KEYS record says of its posting list besides where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySummary {
    /// Runs listed.
    pub len: u32,
    /// Of them, runs whose start is not a dry run and not shadowed.
    pub plain: u32,
    /// Of them, runs whose start is shadowed by an older image's.
    pub shadowed: u32,
}

/// A posting list: positions into RUNS, ordered started_at desc, id desc.
#[derive(Debug, Clone, Copy)]
pub enum List {
    /// Every run (the ORDER section) from `start`, `len` entries.
    Order { start: u32, len: u32 },
    /// A key's posting list in POST.
    Post { start: u32, len: u32 },
}

impl List {
    pub fn len(&self) -> u32 {
        match *self {
            List::Order { len, .. } | List::Post { len, .. } => len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn start(&self) -> u32 {
        match *self {
            List::Order { start, .. } | List::Post { start, .. } => start,
        }
    }
    fn with(&self, start: u32, len: u32) -> List {
        match self {
            List::Order { .. } => List::Order { start, len },
            List::Post { .. } => List::Post { start, len },
        }
    }
}

/// An opened index image.
pub struct Image {
    bytes: Backing,
    pub header: IndexHeader,
    sect: [(usize, usize); N_SECT],
    verified: Vec<AtomicU64>,
    /// One bit per segment block the image covers: its chain digest was
    /// checked (in this process) against the CHAIN section.
    chain_checked: Vec<AtomicU64>,
    poisoned: AtomicBool,
    /// Every 32nd tool-call key (in memory only), so a lookup searches a
    /// small sorted sample in cache, then one short stretch of CKEYS,
    /// instead of the whole section page by page (see `calls.rs`).
    pub(super) ckey_fence: OnceLock<super::calls::Fence>,
}

/// The hash of a run id that [`Image::find_run_if_filtered`] probes filters
/// with: computed once per id, however many images are asked.
#[derive(Debug, Clone, Copy)]
pub struct RunHash(pub(crate) u64);

impl RunHash {
    pub fn of(id: &[u8]) -> RunHash {
        // FNV-1a, then a splitmix64 finaliser so every bit of the result
        // depends on every byte (the probes use both halves).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in id {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        RunHash(h)
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("header", &self.header)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Image {
    /// Open an image, checking its header, section table and block table.
    pub fn open(bytes: Backing) -> Result<Image, ImageError> {
        let b: &[u8] = &bytes;
        let header = IndexHeader::decode(b)?;
        let n_blocks = header.n_blocks as usize;
        let table = usize_of(header.crc_table_off);
        if table < BODY_START
            || table.checked_add(4 * n_blocks) != Some(b.len())
            || n_blocks != (table - BODY_START).div_ceil(BLOCK)
        {
            return Err(ImageError::Truncated);
        }
        let stored = le_u32(b, hdr::CRC);
        if stored != header_crc(b, table, n_blocks) {
            return Err(ImageError::BadChecksum);
        }
        let mut sect = [(0usize, 0usize); N_SECT];
        let mut prev_end = BODY_START;
        for (i, s) in sect.iter_mut().enumerate() {
            let off = usize_of(le_u64(b, HEADER_LEN + 16 * i));
            let len = usize_of(le_u64(b, HEADER_LEN + 16 * i + 8));
            let bad = |problem| ImageError::BadSection {
                section: i,
                problem,
            };
            let end = off.checked_add(len).ok_or(bad("overflows"))?;
            if off < prev_end || end > table {
                return Err(bad("lies outside the body"));
            }
            if REC_SIZE[i] != 0 && !len.is_multiple_of(REC_SIZE[i]) {
                return Err(bad("is not whole records"));
            }
            *s = (off, len);
            prev_end = end;
        }
        let verified = (0..n_blocks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        let n_chain = sect[S_CHAIN].1 / REC_SIZE[S_CHAIN];
        if n_chain == 0 {
            return Err(ImageError::BadSection {
                section: S_CHAIN,
                problem: "is empty",
            });
        }
        let chain_checked = (0..(n_chain - 1).div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Image {
            bytes,
            header,
            sect,
            verified,
            chain_checked,
            ckey_fence: OnceLock::new(),
            poisoned: AtomicBool::new(false),
        })
    }

    /// Whether a read found a block whose CRC does not match.
    pub fn poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// The image's bytes (to store an in-memory image as a file).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// Check every block now (used by tests and `verify`-like callers).
    pub fn verify_all(&self) -> bool {
        let end = usize_of(self.header.crc_table_off);
        if end > BODY_START {
            self.check(BODY_START, end - BODY_START);
        }
        !self.poisoned()
    }

    /// Chain point `i`: (segment offset, chain digest there). Point 0 is
    /// the image's start; point `i > 0` is the end of its block `i - 1`.
    pub fn chain_point(&self, i: usize) -> (u64, Digest) {
        let r = self.rec(S_CHAIN, i);
        let mut d = [0u8; 32];
        d.copy_from_slice(&r[point::DIGEST..point::SIZE]);
        (le_u64(r, point::OFF), Digest(d))
    }

    /// The segment offset of chain point `i` (`i < n_chain_points()`).
    fn chain_point_off(&self, i: usize) -> u64 {
        le_u64(self.read(S_CHAIN, i * point::SIZE, 8), 0)
    }

    /// Number of chain points (blocks covered + 1).
    pub fn n_chain_points(&self) -> usize {
        self.count(S_CHAIN)
    }

    /// Every block's chain digest was checked when this image was built
    /// from its segment (in this process).
    pub fn mark_chain_checked(&self) {
        for w in &self.chain_checked {
            w.store(u64::MAX, Ordering::Relaxed);
        }
    }

    /// The first chain point past segment offset `off` (the one that ends
    /// the block holding it), or `n_chain_points()` if none. The search
    /// reads the points' offsets only (a point's 32-byte digest is copied
    /// by the caller, for the block found).
    fn point_past(&self, off: u64) -> usize {
        let (mut lo, mut hi) = (1usize, self.n_chain_points());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.chain_point_off(mid) <= off {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether the block holding segment offset `off` was checked against
    /// the chain already in this process (false for an offset outside the
    /// blocks this image covers). A hint: nothing is checked here.
    pub fn block_checked(&self, off: u64) -> bool {
        let lo = self.point_past(off);
        let Some(k) = lo.checked_sub(1).filter(|_| lo < self.n_chain_points()) else {
            return false;
        };
        self.chain_checked
            .get(k / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (k % 64)) != 0)
    }

    /// The segment offsets `[start, end)` of the block holding segment
    /// offset `off`, if this image covers it.
    pub fn block_span(&self, off: u64) -> Option<(u64, u64)> {
        let lo = self.point_past(off);
        if lo >= self.n_chain_points() {
            return None;
        }
        let start = self.chain_point_off(lo - 1);
        (start <= off).then(|| (start, self.chain_point_off(lo)))
    }

    /// Check the block of `seg` that holds the frame at `off` against the
    /// CHAIN section, once: `BLAKE3(digest before ‖ first LSN ‖ count ‖
    /// event frames)` must equal the digest at its end (docs/integrity.md).
    pub fn check_block(&self, seg: &[u8], off: u64) -> Result<(), Damage> {
        self.check_block_unless(seg, off, |_| false)
    }

    /// [`Image::check_block`], unless `covered` (asked only when the block
    /// was not checked through this image yet) says that this process
    /// already checked the chain over every block the image covers, from
    /// its start offset to its end offset and end digest (its header's):
    /// then every block is marked checked, none hashed again.
    pub fn check_block_unless(
        &self,
        seg: &[u8],
        off: u64,
        covered: impl FnOnce(&IndexHeader) -> bool,
    ) -> Result<(), Damage> {
        let bad = |reason: String| Damage::at(off, reason);
        let lo = self.point_past(off);
        let (start, prev) = self.chain_point(lo.saturating_sub(1));
        if lo >= self.n_chain_points() || off < start {
            return Err(bad(format!(
                "offset {off} is outside the blocks this index covers"
            )));
        }
        let k = lo - 1;
        let word = &self.chain_checked[k / 64];
        let bit = 1u64 << (k % 64);
        if word.load(Ordering::Relaxed) & bit != 0 {
            return Ok(());
        }
        if covered(&self.header) {
            self.mark_chain_checked();
            return Ok(());
        }
        let (end, want) = self.chain_point(lo);
        // The usual case: the block holds on its digest, taken without
        // following its frames one by one (each a dependent read of cold
        // memory). Anything else is walked frame by frame below, which
        // names the damage.
        if crate::blocks::block_holds_by_digest(seg, start, end, prev, want) {
            word.fetch_or(bit, Ordering::Relaxed);
            return Ok(());
        }
        let first_lsn = block_first_lsn(seg, end)
            .ok_or_else(|| bad(format!("no whole commit record ends at offset {end}")))?;
        crate::blocks::check_range(seg, start, end, prev, first_lsn, want)
            .map_err(|s| bad(format!("at offset {}: {}", s.offset, s.reason)))?;
        word.fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    fn check(&self, off: usize, len: usize) -> bool {
        if len == 0 {
            return !self.poisoned();
        }
        let first = (off - BODY_START) / BLOCK;
        let last = (off + len - 1 - BODY_START) / BLOCK;
        for blk in first..=last {
            let word = &self.verified[blk / 64];
            let bit = 1u64 << (blk % 64);
            if word.load(Ordering::Relaxed) & bit != 0 {
                continue;
            }
            let table = usize_of(self.header.crc_table_off);
            let s = BODY_START + blk * BLOCK;
            let e = (s + BLOCK).min(table);
            let stored = le_u32(&self.bytes, table + 4 * blk);
            if crc32fast::hash(&self.bytes[s..e]) != stored {
                self.poisoned.store(true, Ordering::Relaxed);
                return false;
            }
            word.fetch_or(bit, Ordering::Relaxed);
        }
        true
    }

    /// `len` bytes at `off` of section `s` (checked), or zeros if bad.
    pub(super) fn read(&self, s: usize, off: usize, len: usize) -> &[u8] {
        let (so, sl) = self.sect[s];
        if off + len > sl {
            self.poisoned.store(true, Ordering::Relaxed);
            return &ZEROS[..len.min(ZEROS.len())];
        }
        if !self.check(so + off, len) {
            return &ZEROS[..len.min(ZEROS.len())];
        }
        &self.bytes[so + off..so + off + len]
    }

    pub(super) fn rec(&self, s: usize, i: usize) -> &[u8] {
        self.read(s, i * REC_SIZE[s], REC_SIZE[s])
    }

    pub fn count(&self, s: usize) -> usize {
        self.sect[s].1 / REC_SIZE[s].max(1)
    }

    pub(super) fn str_at(&self, rec: &[u8], at: usize) -> &[u8] {
        let off = le_u32(rec, at) as usize;
        let len = le_u32(rec, at + 4) as usize;
        if len == 0 {
            return b"";
        }
        let (_, sl) = self.sect[S_STR];
        if off + len > sl {
            self.poisoned.store(true, Ordering::Relaxed);
            return b"";
        }
        let b = self.read(S_STR, off, len);
        if b.len() == len {
            b
        } else {
            b""
        }
    }

    pub fn n_runs(&self) -> u32 {
        u32_of(self.count(S_RUNS))
    }

    /// The run record at position `i` of RUNS.
    pub fn run(&self, i: u32) -> RunRec<'_> {
        let l = self.run_lazy(i);
        RunRec {
            id: l.id(),
            skill: l.skill(),
            caller: l.caller(),
            channel: l.channel(),
            parent: l.parent(),
            status: l.status(),
            start_lsn: l.start_lsn(),
            start_off: le_u64(l.rec, run::START_OFF),
            started_at: l.started_at(),
            finish_lsn: le_u64(l.rec, run::FINISH_LSN),
            finish_off: le_u64(l.rec, run::FINISH_OFF),
            finished_at: le_i64(l.rec, run::FINISHED_AT),
            shadow_seq: l.shadow_seq(),
            flags: l.flags(),
        }
    }

    /// A run's record with its strings read only when asked: filters
    /// that look at one or two fields touch one or two string-heap pages
    /// per candidate instead of six.
    pub fn run_lazy(&self, i: u32) -> LazyRun<'_> {
        LazyRun {
            img: self,
            rec: self.rec(S_RUNS, i as usize),
        }
    }

    /// Only what ordering needs: (started_at, id).
    pub fn run_key(&self, i: u32) -> (Micros, &[u8]) {
        let r = self.rec(S_RUNS, i as usize);
        (le_i64(r, run::STARTED_AT), self.str_at(r, run::ID))
    }

    /// The first position at or after `from` in RUNS whose id is not less
    /// than `id` (`n_runs()` if none), searching outward from `from`
    /// (galloping): for ids asked in ascending order, each lookup costs the
    /// log of the distance from the previous answer rather than of the
    /// whole table, and reads records near each other.
    pub fn seek_run(&self, id: &[u8], from: u32) -> u32 {
        let less = |i: usize| self.str_at(self.rec(S_RUNS, i), run::ID) < id;
        u32_of(gallop(self.count(S_RUNS), from as usize, less))
    }

    /// Like [`Image::seek_run`], in LOGS by (id, seq): the first position
    /// at or after `from` whose (id, seq) is not less than the one asked.
    pub fn seek_log(&self, id: &[u8], seq: u64, from: u32) -> u32 {
        let less = |i: usize| {
            let l = self.log(i);
            (l.id, l.seq) < (id, seq)
        };
        u32_of(gallop(self.count(S_LOGS), from as usize, less))
    }

    /// The log record at position `i` of LOGS (`i < n_logs()`).
    pub fn log_at(&self, i: u32) -> LogRec<'_> {
        self.log(i as usize)
    }

    /// The id of the run at position `i` of RUNS.
    pub fn run_id(&self, i: u32) -> &[u8] {
        self.str_at(self.rec(S_RUNS, i as usize), run::ID)
    }

    /// Position in RUNS of the start of `id` (`h` its [`RunHash`]), asking
    /// the image's stored run-id filter first: a lookup must not
    /// binary-search every image of the log to find one run.
    pub fn find_run_if_filtered(&self, id: &[u8], h: RunHash) -> Option<u32> {
        if !self.may_hold_run(h) {
            return None;
        }
        self.find_run(id)
    }

    /// What the RFILT section says of `h`: false only if the image surely
    /// holds no start and no log of that id. A chunk (no filter: it is replaced as
    /// the segment grows) and a line in a block that fails its CRC say
    /// "maybe": the search decides, and the poisoned image is rebuilt
    /// (a damaged filter must never hide a run).
    pub(crate) fn may_hold_run(&self, h: RunHash) -> bool {
        let (at, len) = self.sect[S_RFILT];
        let lines = len / super::run_filter::LINE;
        if self.header.kind != KIND_SEALED || lines == 0 {
            return true;
        }
        let start = at + super::run_filter::line_of(h, lines) * super::run_filter::LINE;
        if !self.check(start, super::run_filter::LINE) {
            return true;
        }
        super::run_filter::line_has(&self.bytes[start..start + super::run_filter::LINE], h)
    }

    /// Whether the image has a stored run-id filter (tests).
    #[cfg(test)]
    pub(crate) fn has_run_filter(&self) -> bool {
        self.header.kind == KIND_SEALED && self.sect[S_RFILT].1 > 0
    }

    /// Position in RUNS of the start of `id`.
    pub fn find_run(&self, id: &[u8]) -> Option<u32> {
        let n = self.count(S_RUNS);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let r = self.rec(S_RUNS, mid);
            match self.str_at(r, run::ID).cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(u32_of(mid)),
            }
        }
        None
    }

    /// The list of every run, newest first.
    pub fn all(&self) -> List {
        List::Order {
            start: 0,
            len: u32_of(self.count(S_ORDER)),
        }
    }

    /// The posting list of `key` for `kind` (empty if absent).
    pub fn posting(&self, kind: u32, key: &[u8]) -> List {
        match self.key_index(kind, key) {
            Some(i) => {
                let r = self.rec(S_KEYS, i);
                List::Post {
                    start: u32::try_from(le_u64(r, key::POST_START)).unwrap_or(u32::MAX),
                    len: le_u32(r, key::LEN),
                }
            }
            None => List::Post { start: 0, len: 0 },
        }
    }

    /// The KEYS record of `key` for `kind` (binary search).
    fn key_index(&self, kind: u32, key: &[u8]) -> Option<usize> {
        let n = self.count(S_KEYS);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let r = self.rec(S_KEYS, mid);
            let ord = le_u32(r, key::KIND)
                .cmp(&kind)
                .then_with(|| self.str_at(r, key::VALUE).cmp(key));
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The summary of `key`'s posting list for `kind` (None if absent, or
    /// if its counts cannot be those of the list: the image is then
    /// poisoned).
    pub fn posting_summary(&self, kind: u32, key: &[u8]) -> Option<KeySummary> {
        let i = self.key_index(kind, key)?;
        let r = self.rec(S_KEYS, i);
        let sum = KeySummary {
            len: le_u32(r, key::LEN),
            plain: le_u32(r, key::PLAIN),
            shadowed: le_u32(r, key::SHADOWED),
        };
        if u64::from(sum.plain) + u64::from(sum.shadowed) > u64::from(sum.len) {
            self.poison();
            return None;
        }
        Some(sum)
    }

    /// The distinct keys of a kind, with their list lengths.
    pub fn keys(&self, kind: u32) -> Vec<(&[u8], u32)> {
        (0..self.count(S_KEYS))
            .map(|i| self.rec(S_KEYS, i))
            .filter(|r| le_u32(r, key::KIND) == kind)
            .map(|r| (self.str_at(r, key::VALUE), le_u32(r, key::LEN)))
            .collect()
    }

    /// The RUNS position at position `i` of a list.
    pub fn at(&self, list: &List, i: u32) -> u32 {
        let pos = list.start() as usize + i as usize;
        let s = match list {
            List::Order { .. } => S_ORDER,
            List::Post { .. } => S_POST,
        };
        let v = le_u32(self.rec(s, pos), 0);
        if v >= self.n_runs() {
            self.poisoned.store(true, Ordering::Relaxed);
            return 0;
        }
        v
    }

    /// Mark the image corrupt (a record points outside its section).
    pub(super) fn poison(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
    }

    /// Narrow a list (ordered by started_at desc) to `since..=until`.
    pub fn narrow(&self, list: List, since: Option<Micros>, until: Option<Micros>) -> List {
        let n = list.len();
        // First position whose started_at <= until.
        let lo = match until {
            None => 0,
            Some(u) => self.partition(&list, n, |t| t > u),
        };
        // First position whose started_at < since.
        let hi = match since {
            None => n,
            Some(s) => self.partition(&list, n, |t| t >= s),
        };
        let hi = hi.max(lo);
        list.with(list.start().saturating_add(lo), hi - lo)
    }

    fn partition(&self, list: &List, n: u32, pred: impl Fn(Micros) -> bool) -> u32 {
        let (mut lo, mut hi) = (0u32, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.run_key(self.at(list, mid)).0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub fn n_fins(&self) -> usize {
        self.count(S_FINS)
    }

    pub fn fin(&self, i: usize) -> FinRec<'_> {
        let r = self.rec(S_FINS, i);
        FinRec {
            id: self.str_at(r, fin::ID),
            status: self.str_at(r, fin::STATUS),
            lsn: le_u64(r, fin::LSN),
            off: le_u64(r, fin::OFF),
            ts: le_i64(r, fin::TS),
            start_seq: le_u64(r, fin::START_SEQ),
            start_pos: le_u32(r, fin::START_POS),
        }
    }

    /// The status of FINS record `i` (one heap read, nothing else).
    pub fn fin_status(&self, i: usize) -> &[u8] {
        self.str_at(self.rec(S_FINS, i), fin::STATUS)
    }

    /// The FINS record of `id` (`h` its [`RunHash`]): a binary search on
    /// the hashes in the mapped section, comparing id bytes only on equal
    /// hashes, so a miss reads no string.
    pub fn find_fin(&self, id: &[u8], h: RunHash) -> Option<FinRec<'_>> {
        let n = self.count(S_FINS);
        let key = |i: usize| le_u64(self.rec(S_FINS, i), fin::HASH);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(mid) < h.0 {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        while lo < n && key(lo) == h.0 {
            let f = self.fin(lo);
            if f.id == id {
                return Some(f);
            }
            lo += 1;
        }
        None
    }

    /// Some FINS record has status `dry_run` (header flag).
    pub fn has_dry_fins(&self) -> bool {
        self.header.flags & HF_DRY_FINS != 0
    }

    pub fn n_amends(&self) -> usize {
        self.count(S_AMND)
    }

    pub fn amend(&self, i: usize) -> AmendRec<'_> {
        let r = self.rec(S_AMND, i);
        AmendRec {
            id: self.str_at(r, amnd::ID),
            kind: le_u32(r, amnd::KIND),
            lsn: le_u64(r, amnd::LSN),
            off: le_u64(r, amnd::OFF),
        }
    }

    fn log(&self, i: usize) -> LogRec<'_> {
        let r = self.rec(S_LOGS, i);
        LogRec {
            id: self.str_at(r, log::ID),
            seq: le_u64(r, log::SEQ),
            lsn: le_u64(r, log::LSN),
            off: le_u64(r, log::OFF),
        }
    }

    /// [`Image::logs_of`], asking the stored run-id filter first (`h` is
    /// the id's [`RunHash`]): since version 8 it holds the ids of LOGS
    /// beside those of RUNS, so a run's logs are searched for only in the
    /// images that may hold some, not by a binary search of every image's
    /// LOGS (string compares on pages spread over the whole log).
    pub fn logs_of_if_filtered(&self, id: &[u8], h: RunHash) -> Vec<LogRec<'_>> {
        if !self.may_hold_run(h) {
            return Vec::new();
        }
        self.logs_of(id)
    }

    /// Every `run_log` of `id` in this image, ordered by seq then LSN.
    pub fn logs_of(&self, id: &[u8]) -> Vec<LogRec<'_>> {
        let n = self.count(S_LOGS);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.log(mid).id < id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        let mut i = lo;
        while i < n {
            let l = self.log(i);
            if l.id != id {
                break;
            }
            out.push(l);
            i += 1;
        }
        out
    }

    pub fn n_logs(&self) -> usize {
        self.count(S_LOGS)
    }
}

/// The first position in `from..n` where `less` turns false (`n` if it
/// never does), for a `less` that is true then false: searching outward
/// from `from` (galloping), then halving. For keys asked in ascending
/// order each lookup costs the log of the distance from the previous
/// answer rather than of the whole table, and reads records near each
/// other.
fn gallop(n: usize, from: usize, less: impl Fn(usize) -> bool) -> usize {
    let mut lo = from.min(n);
    let mut step = 1usize;
    let mut hi = lo;
    // Find a bound past the answer: [lo, hi) holds it.
    loop {
        if hi >= n {
            hi = n;
            break;
        }
        if !less(hi) {
            break;
        }
        lo = hi + 1;
        hi = hi.saturating_add(step);
        step = step.saturating_mul(2);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if less(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}
