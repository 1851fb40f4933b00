//! What an insider with write access to the log folder can do with
//! docs/format.md alone: walk frames, re-frame bodies with valid CRCs, and
//! rewrite every commit record, footer, header link and MANIFEST entry so
//! that the chain agrees again. The attack tests use it to build forgeries
//! that are as good as the format allows.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use auditlog::internals::chain::{block_digest, Digest};
use auditlog::internals::frame::{
    peek_frame, read_frame, write_frame, REC_COMMIT, REC_EVENT, REC_FOOTER,
};
use auditlog::internals::manifest::Manifest;
use auditlog::internals::segment::{Commit, Footer, Header, HEADER_SIZE, TRAILER_SIZE};

/// One frame of a segment as found on disk.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub offset: usize,
    pub rec_type: u8,
    /// The body after the type byte.
    pub payload: Vec<u8>,
    pub size: usize,
}

/// Every CRC-valid frame after the header, up to (not including) the
/// footer, and whether the segment was sealed.
pub fn frames(bytes: &[u8]) -> (Vec<RawFrame>, bool) {
    let (fr, sealed) = frames_with_crcs(bytes, false);
    (fr.into_iter().map(|(f, _)| f).collect(), sealed)
}

/// [`frames`] with each frame's stored CRC; with `keep_bad_crcs`, a frame
/// whose CRC alone is wrong (its length is plausible) is kept too.
fn frames_with_crcs(bytes: &[u8], keep_bad_crcs: bool) -> (Vec<(RawFrame, u32)>, bool) {
    let mut out = Vec::new();
    let mut pos = HEADER_SIZE;
    while pos < bytes.len() {
        let (rec_type, payload, size) = match read_frame(&bytes[pos..]) {
            Ok(f) => (f.rec_type, f.payload, f.size),
            Err(_) if keep_bad_crcs => match peek_frame(&bytes[pos..]) {
                Some((t, size)) => (t, &bytes[pos + 9..pos + size], size),
                None => break,
            },
            Err(_) => break,
        };
        if rec_type == REC_FOOTER {
            return (out, true);
        }
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        let frame = RawFrame {
            offset: pos,
            rec_type,
            payload: payload.to_vec(),
            size,
        };
        out.push((frame, crc));
        pos += size;
    }
    (out, false)
}

/// The segment files of `dir`, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// A segment's frames turned back into bytes: `edit` may change, drop or
/// add event frames (given as payloads); commit records are recomputed
/// later by [`rechain`], so only their positions matter here.
pub fn rewrite_frames(path: &Path, edit: impl FnOnce(&mut Vec<RawFrame>)) {
    let bytes = std::fs::read(path).unwrap();
    let (mut fr, sealed) = frames(&bytes);
    edit(&mut fr);
    let mut out = bytes[..HEADER_SIZE].to_vec();
    for f in &fr {
        write_frame(&mut out, f.rec_type, &f.payload);
    }
    if sealed {
        // A placeholder footer: rechain() writes the real one.
        let footer = Footer {
            count: 1,
            first_lsn: 0,
            min_ts: 0,
            max_ts: 0,
            digest: Digest::GENESIS,
            data_end: out.len() as u64,
        };
        let at = out.len() as u64;
        out.extend_from_slice(&footer.encode_with_trailer(at));
    }
    std::fs::write(path, out).unwrap();
}

/// Recompute, from the MANIFEST's anchor on, every commit record, footer,
/// header link and MANIFEST entry of the log in `dir`, so that the chain is
/// consistent again whatever frames were edited. Event payloads are not
/// decoded (an undecodable forgery stays undecodable); timestamps for the
/// footers are read with the codec's peek where possible.
pub fn rechain(dir: &Path) {
    rechain_impl(dir, false)
}

/// [`rechain`], but an event frame whose CRC alone is wrong keeps its
/// wrong CRC (and is hashed with it, as the writer would hash what it
/// wrote): a block with a bad frame CRC and a right chain digest.
pub fn rechain_keeping_bad_crcs(dir: &Path) {
    rechain_impl(dir, true)
}

fn rechain_impl(dir: &Path, keep_bad_crcs: bool) {
    let mut manifest = Manifest::load(dir).unwrap().unwrap();
    let mut digest = manifest.anchor_digest();
    let mut lsn = manifest.anchor.first_lsn;
    let mut entries = Vec::new();
    for path in segment_files(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let mut header = Header::decode(&bytes).unwrap();
        header.first_lsn = lsn;
        header.prev_digest = digest;
        let (fr, sealed) = frames_with_crcs(&bytes, keep_bad_crcs);
        let mut out = header.encode().to_vec();
        let mut block: Vec<u8> = Vec::new();
        let (mut count, mut block_count, mut block_first) = (0u64, 0u32, lsn);
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        for (f, crc) in &fr {
            match f.rec_type {
                REC_EVENT => {
                    let at = block.len();
                    write_frame(&mut block, REC_EVENT, &f.payload);
                    // The stored CRC: the right one, unless kept wrong.
                    block[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
                    if let Ok(ts) = auditlog::internals::codec::peek_ts(&f.payload) {
                        min_ts = min_ts.min(ts);
                        max_ts = max_ts.max(ts);
                    }
                    block_count += 1;
                }
                REC_COMMIT => {
                    digest = block_digest(&digest, block_first, block_count, &block);
                    out.extend_from_slice(&block);
                    Commit {
                        first_lsn: block_first,
                        count: block_count,
                        digest,
                    }
                    .write(&mut out);
                    count += block_count as u64;
                    lsn += block_count as u64;
                    block_first = lsn;
                    block.clear();
                    block_count = 0;
                }
                _ => write_frame(&mut out, f.rec_type, &f.payload),
            }
        }
        if sealed {
            let footer = Footer {
                count,
                first_lsn: header.first_lsn,
                min_ts,
                max_ts,
                digest,
                data_end: out.len() as u64,
            };
            let at = out.len() as u64;
            out.extend_from_slice(&footer.encode_with_trailer(at));
            entries.push((header.seq, header.day, header.first_lsn, footer));
        }
        std::fs::write(&path, out).unwrap();
    }
    for e in manifest.sealed.iter_mut() {
        if let Some((_, day, first, f)) = entries.iter().find(|x| x.0 == e.seq) {
            e.day = *day;
            e.first_lsn = *first;
            e.count = f.count;
            e.min_ts = f.min_ts;
            e.max_ts = f.max_ts;
            e.digest = f.digest.to_hex();
        }
    }
    manifest.store(dir).unwrap();
}

/// The footer of a sealed segment file, if it has one.
pub fn footer_of(bytes: &[u8]) -> Option<Footer> {
    auditlog::internals::segment::read_footer(bytes)
        .ok()
        .flatten()
}

/// Bytes of a commit record's frame.
pub const COMMIT_FRAME: usize = auditlog::internals::segment::COMMIT_FRAME_SIZE;
/// Bytes of a footer frame plus trailer.
pub const FOOTER_AND_TRAILER: usize =
    8 + 1 + auditlog::internals::segment::FOOTER_PAYLOAD + TRAILER_SIZE;
