//! One segment file: a fixed header, then frames (event records, each
//! group-commit block closed by a commit record), and once sealed a footer
//! frame plus a 16-byte trailer pointing at it. Byte layout in
//! docs/format.md.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use crate::chain::Digest;
use crate::event::Micros;
use crate::frame::{
    peek_frame, read_frame, write_frame, FRAME_HEADER, REC_COMMIT, REC_EVENT, REC_FOOTER,
};
use crate::num::{u64_of, usize_of};

pub const SEGMENT_MAGIC: &[u8; 8] = b"AUDLOGSG";
pub const TRAILER_MAGIC: &[u8; 8] = b"AUDLSEAL";
/// On-disk format version written; bump with every change to
/// docs/format.md. Version 3 added the Merkle tree's records (checkpoints,
/// the tree fields of retention records); version 4 the `tool_call` event
/// kind (codec variant 4) and the MANIFEST's redaction record; version 5
/// the tile hashes a retention record keeps (`SystemRecord` variant 4);
/// version 6 deferred checkpoints (a `Checkpoint` record may cover a
/// prefix of the events before it).
pub const FORMAT_VERSION: u16 = 6;
/// The oldest version read (version 3 and 4 logs read unchanged).
pub const MIN_FORMAT_VERSION: u16 = 3;
pub const HEADER_SIZE: usize = 72;
pub const TRAILER_SIZE: usize = 16;
/// Commit record payload: first LSN (u64), count (u32), chain digest.
pub const COMMIT_PAYLOAD: usize = 8 + 4 + 32;
/// A whole commit frame: frame header, record type, payload.
pub const COMMIT_FRAME_SIZE: usize = FRAME_HEADER + 1 + COMMIT_PAYLOAD;
/// Footer payload: count, first LSN, min ts, max ts, digest, data end.
pub const FOOTER_PAYLOAD: usize = 8 + 8 + 8 + 8 + 32 + 8;

// The byte layout of docs/format.md, checked when compiling.
const _: () = assert!(HEADER_SIZE == 8 + 2 + 1 + 1 + 4 + 8 + 8 + 32 + 4 + 4);
const _: () = assert!(COMMIT_FRAME_SIZE == 53);
const _: () = assert!(FOOTER_PAYLOAD == 72 && TRAILER_SIZE == 8 + 8);
const _: () = assert!(std::mem::size_of::<Digest>() == 32);

/// Why the bytes at the start of a segment are not a usable header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than [`HEADER_SIZE`] bytes.
    #[error("header cut short: {len} of {HEADER_SIZE} bytes")]
    Short { len: usize },
    /// Not a segment file at all.
    #[error("not a segment file (bad magic)")]
    BadMagic,
    /// The header's CRC does not match its bytes.
    #[error("header CRC mismatch")]
    BadCrc,
    /// Written by a build with another format version.
    #[error("format version {found} is not supported (this build reads {MIN_FORMAT_VERSION} to {FORMAT_VERSION})")]
    UnsupportedVersion { found: u16 },
}

impl HeaderError {
    /// The crate error for the segment `name` whose header this is.
    pub fn into_error(self, name: &str) -> crate::error::Error {
        match self {
            HeaderError::UnsupportedVersion { found } => crate::error::Error::UnsupportedVersion {
                what: format!("segment {name}"),
                found: found.into(),
                supported: FORMAT_VERSION.into(),
            },
            other => crate::error::Error::Corrupt {
                segment: name.to_string(),
                offset: 0,
                reason: other.to_string(),
            },
        }
    }
}

/// Where and why a segment's bytes are damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at offset {offset}: {reason}")]
pub struct Damage {
    pub offset: u64,
    pub reason: String,
}

impl Damage {
    pub(crate) fn at(offset: u64, reason: impl Into<String>) -> Damage {
        Damage {
            offset,
            reason: reason.into(),
        }
    }

    /// The crate error for segment `name`.
    pub fn into_error(self, name: &str) -> crate::error::Error {
        crate::error::Error::Corrupt {
            segment: name.to_string(),
            offset: self.offset,
            reason: self.reason,
        }
    }
}

/// The fixed header at offset 0 of every segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub codec: u8,
    /// UTC day of the segment as YYYYMMDD.
    pub day: u32,
    /// Position of this segment in the log (1, 2, ...), never reused.
    pub seq: u64,
    /// LSN of the first event stored in it.
    pub first_lsn: u64,
    /// Chain digest before its first block (the previous segment's last).
    pub prev_digest: Digest,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10] = self.codec;
        b[12..16].copy_from_slice(&self.day.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..64].copy_from_slice(&self.prev_digest.0);
        let crc = crc32fast::hash(&b[0..64]);
        b[64..68].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < HEADER_SIZE {
            return Err(HeaderError::Short { len: b.len() });
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let crc = u32::from_le_bytes(le4(&b[64..68]));
        if crc != crc32fast::hash(&b[0..64]) {
            return Err(HeaderError::BadCrc);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(HeaderError::UnsupportedVersion { found: version });
        }
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&b[32..64]);
        Ok(Header {
            version,
            codec: b[10],
            day: u32::from_le_bytes(le4(&b[12..16])),
            seq: u64::from_le_bytes(le8(&b[16..24])),
            first_lsn: u64::from_le_bytes(le8(&b[24..32])),
            prev_digest: Digest(prev),
        })
    }
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// The record that closes a group-commit block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub first_lsn: u64,
    pub count: u32,
    pub digest: Digest,
}

impl Commit {
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut p = [0u8; COMMIT_PAYLOAD];
        p[0..8].copy_from_slice(&self.first_lsn.to_le_bytes());
        p[8..12].copy_from_slice(&self.count.to_le_bytes());
        p[12..44].copy_from_slice(&self.digest.0);
        write_frame(out, REC_COMMIT, &p);
    }

    pub fn decode(p: &[u8]) -> Option<Commit> {
        if p.len() != COMMIT_PAYLOAD {
            return None;
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(&p[12..44]);
        Some(Commit {
            first_lsn: u64::from_le_bytes(le8(&p[0..8])),
            count: u32::from_le_bytes(le4(&p[8..12])),
            digest: Digest(d),
        })
    }
}

/// What a sealed segment holds, written at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub count: u64,
    pub first_lsn: u64,
    pub min_ts: Micros,
    pub max_ts: Micros,
    /// Chain digest after the segment's last block.
    pub digest: Digest,
    /// Offset where the data (frames before the footer) ends.
    pub data_end: u64,
}

impl Footer {
    pub fn last_lsn(&self) -> u64 {
        self.first_lsn + self.count.saturating_sub(1)
    }

    /// The footer frame followed by the trailer; `at` is the file offset
    /// where these bytes will start.
    pub fn encode_with_trailer(&self, at: u64) -> Vec<u8> {
        let mut p = [0u8; FOOTER_PAYLOAD];
        p[0..8].copy_from_slice(&self.count.to_le_bytes());
        p[8..16].copy_from_slice(&self.first_lsn.to_le_bytes());
        p[16..24].copy_from_slice(&self.min_ts.to_le_bytes());
        p[24..32].copy_from_slice(&self.max_ts.to_le_bytes());
        p[32..64].copy_from_slice(&self.digest.0);
        p[64..72].copy_from_slice(&self.data_end.to_le_bytes());
        let mut out = Vec::with_capacity(FOOTER_PAYLOAD + 32);
        write_frame(&mut out, REC_FOOTER, &p);
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(TRAILER_MAGIC);
        out
    }

    fn decode(p: &[u8]) -> Option<Footer> {
        if p.len() != FOOTER_PAYLOAD {
            return None;
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(&p[32..64]);
        Some(Footer {
            count: u64::from_le_bytes(le8(&p[0..8])),
            first_lsn: u64::from_le_bytes(le8(&p[8..16])),
            min_ts: i64::from_le_bytes(le8(&p[16..24])),
            max_ts: i64::from_le_bytes(le8(&p[24..32])),
            digest: Digest(d),
            data_end: u64::from_le_bytes(le8(&p[64..72])),
        })
    }
}

/// Find the footer through the trailer at the end of `file` (the whole
/// segment). `Ok(None)` when there is no trailer (an unsealed segment);
/// `Err` when a trailer is there but what it points at is not a footer.
pub fn read_footer(file: &[u8]) -> Result<Option<Footer>, Damage> {
    if file.len() < HEADER_SIZE + TRAILER_SIZE {
        return Ok(None);
    }
    let t = &file[file.len() - TRAILER_SIZE..];
    if &t[8..16] != TRAILER_MAGIC {
        return Ok(None);
    }
    let at = u64::from_le_bytes(le8(&t[0..8]));
    let trailer_at = (file.len() - TRAILER_SIZE) as u64;
    if at < HEADER_SIZE as u64 || at >= trailer_at {
        return Err(Damage::at(
            trailer_at,
            format!("trailer points at offset {at}, outside the file"),
        ));
    }
    let frame = read_frame(&file[usize_of(at)..file.len() - TRAILER_SIZE])
        .map_err(|e| Damage::at(at, format!("footer frame: {e}")))?;
    if frame.rec_type != REC_FOOTER || usize_of(at) + frame.size != file.len() - TRAILER_SIZE {
        return Err(Damage::at(at, "trailer does not point at a footer frame"));
    }
    let footer =
        Footer::decode(frame.payload).ok_or_else(|| Damage::at(at, "footer has the wrong size"))?;
    if footer.data_end != at {
        return Err(Damage::at(
            at,
            format!(
                "footer says data ends at {} but sits at {at}",
                footer.data_end
            ),
        ));
    }
    Ok(Some(footer))
}

/// Segment file name: `YYYYMMDD-SSSSSSSSSS.seg` (UTC day, then the segment
/// sequence number), so `ls` shows the days and sorts in log order.
pub fn file_name(day: u32, seq: u64) -> String {
    format!("{day:08}-{seq:010}.seg")
}

/// Parse a segment file name back into (day, seq).
pub fn parse_file_name(name: &str) -> Option<(u32, u64)> {
    let stem = name.strip_suffix(".seg")?;
    let (day, seq) = stem.split_once('-')?;
    if day.len() != 8 || seq.len() != 10 {
        return None;
    }
    Some((day.parse().ok()?, seq.parse().ok()?))
}

/// One event record met by [`EventWalk`].
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    pub lsn: u64,
    /// LSN of the first event of its group-commit block.
    pub block_lsn: u64,
    /// Offset of its frame in the segment, and just past it.
    pub offset: u64,
    pub end: u64,
    /// The encoded event (the codec's business).
    pub payload: &'a [u8],
}

/// Walks the event records of committed segment data in LSN order: the
/// one loop every reader of events uses (replay, index building). Commit
/// records are stepped over (their blocks were checked when the segment
/// was opened or scanned); any other record is damage. The walk keeps no
/// borrow, so it can live beside the mapping it reads.
#[derive(Debug, Clone, Copy)]
pub struct EventWalk {
    pos: usize,
    end: usize,
    lsn: u64,
    /// LSN of the first event of the block the walk is in.
    block_lsn: u64,
}

impl EventWalk {
    /// From offset `from` (a block boundary) up to `end`, the first event
    /// there having LSN `lsn`.
    pub fn new(from: u64, end: u64, lsn: u64) -> EventWalk {
        EventWalk {
            pos: usize_of(from),
            end: usize_of(end),
            lsn,
            block_lsn: lsn,
        }
    }

    /// The LSN of the next event.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Hop over events before `lsn` by their frame lengths alone, without
    /// their CRCs (`tail` and followers start near the end of a large
    /// segment). Stops early at anything implausible; [`EventWalk::next`]
    /// then reads it properly and says what is wrong.
    pub fn skip_to(&mut self, data: &[u8], lsn: u64) {
        let end = self.end.min(data.len());
        while self.lsn < lsn && self.pos < end {
            match peek_frame(&data[self.pos..end]) {
                Some((REC_EVENT, size)) => {
                    self.pos += size;
                    self.lsn += 1;
                }
                Some((REC_COMMIT, size)) => {
                    self.pos += size;
                    self.block_lsn = self.lsn;
                }
                _ => return,
            }
        }
    }

    /// The next event record, `None` at the end, or where and why the
    /// data is damaged (the walk then stays where it is).
    pub fn next<'a>(&mut self, data: &'a [u8]) -> Option<Result<EventRecord<'a>, Damage>> {
        let end = self.end.min(data.len());
        loop {
            if self.pos >= end {
                return None;
            }
            let at = self.pos;
            let frame = match read_frame(&data[at..end]) {
                Ok(f) => f,
                Err(e) => return Some(Err(Damage::at(u64_of(at), e.to_string()))),
            };
            match frame.rec_type {
                REC_COMMIT => {
                    self.pos += frame.size;
                    self.block_lsn = self.lsn;
                }
                REC_EVENT => {
                    self.pos += frame.size;
                    let lsn = self.lsn;
                    self.lsn += 1;
                    return Some(Ok(EventRecord {
                        lsn,
                        block_lsn: self.block_lsn,
                        offset: u64_of(at),
                        end: u64_of(self.pos),
                        payload: frame.payload,
                    }));
                }
                other => {
                    return Some(Err(Damage::at(
                        u64_of(at),
                        format!("unexpected record type 0x{other:02x}"),
                    )))
                }
            }
        }
    }
}

impl EventWalk {
    /// From offset `from` inside a block whose first event has LSN
    /// `block_lsn`, up to `end`, the next event there having LSN `lsn`.
    pub fn within_block(from: u64, end: u64, lsn: u64, block_lsn: u64) -> EventWalk {
        EventWalk {
            block_lsn,
            ..EventWalk::new(from, end, lsn)
        }
    }

    /// The same walk, ending at `end` instead.
    pub fn until(self, end: u64) -> EventWalk {
        EventWalk {
            end: usize_of(end).min(self.end),
            ..self
        }
    }

    /// LSN of the first event of the block the walk is in.
    pub fn block_lsn(&self) -> u64 {
        self.block_lsn
    }

    /// Offset of the next frame.
    pub fn pos(&self) -> u64 {
        u64_of(self.pos)
    }

    /// Like [`EventWalk::next`] over bytes whose frames were already
    /// CRC-checked (and whose blocks were chain-checked) by
    /// [`crate::blocks::check_range`]: frames are followed by their lengths,
    /// without computing each CRC a second time. A frame that no longer
    /// fits is still damage (the file changed after it was checked).
    pub fn next_checked<'a>(&mut self, data: &'a [u8]) -> Option<Result<EventRecord<'a>, Damage>> {
        let end = self.end.min(data.len());
        loop {
            if self.pos >= end {
                return None;
            }
            let at = self.pos;
            let Some((rec_type, size)) = peek_frame(&data[at..end]) else {
                return Some(Err(Damage::at(
                    u64_of(at),
                    "frame does not fit the checked range (the file changed after it was checked)",
                )));
            };
            self.pos += size;
            match rec_type {
                REC_COMMIT => self.block_lsn = self.lsn,
                REC_EVENT => {
                    let lsn = self.lsn;
                    self.lsn += 1;
                    return Some(Ok(EventRecord {
                        lsn,
                        block_lsn: self.block_lsn,
                        offset: u64_of(at),
                        end: u64_of(self.pos),
                        payload: &data[at + FRAME_HEADER + 1..self.pos],
                    }));
                }
                other => {
                    self.pos = at;
                    return Some(Err(Damage::at(
                        u64_of(at),
                        format!("unexpected record type 0x{other:02x}"),
                    )));
                }
            }
        }
    }
}

/// Whether a whole, CRC-valid commit record starts anywhere in `data`
/// (at any byte offset). A torn final write never has one after the damage;
/// damage earlier in a segment almost always does (the later blocks).
pub fn has_commit_record(data: &[u8]) -> bool {
    let mut found = false;
    each_commit_record(data, |_| found = true);
    found
}

/// Call `f` with every whole, CRC-valid commit record that starts at any
/// byte offset of `data`.
pub fn each_commit_record(data: &[u8], mut f: impl FnMut(&Commit)) {
    // 45, checked to fit one byte when compiling.
    const _: () = assert!(COMMIT_PAYLOAD + 1 < 256);
    #[allow(clippy::cast_possible_truncation)]
    const BODY_LEN: [u8; 4] = [(COMMIT_PAYLOAD + 1) as u8, 0, 0, 0];
    if data.len() < COMMIT_FRAME_SIZE {
        return;
    }
    for i in 0..=data.len() - COMMIT_FRAME_SIZE {
        if data[i..i + 4] == BODY_LEN && data[i + FRAME_HEADER] == REC_COMMIT {
            if let Ok(fr) = read_frame(&data[i..i + COMMIT_FRAME_SIZE]) {
                if let Some(c) = Commit::decode(fr.payload) {
                    f(&c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_walk_gives_each_event_its_lsn_and_block() {
        // Blocks of 2, 1 and 3 events from LSN 10 (digests do not matter
        // to the walk: the blocks were checked before it runs).
        let mut data = vec![0u8; HEADER_SIZE];
        let mut lsn = 10;
        for n in [2u32, 1, 3] {
            for i in 0..n {
                write_frame(
                    &mut data,
                    REC_EVENT,
                    format!("e{}", lsn + u64::from(i)).as_bytes(),
                );
            }
            Commit {
                first_lsn: lsn,
                count: n,
                digest: Digest([0; 32]),
            }
            .write(&mut data);
            lsn += u64::from(n);
        }
        let end = u64_of(data.len());
        let walk_all = |mut w: EventWalk, skip: u64| {
            w.skip_to(&data, skip);
            let mut got = Vec::new();
            while let Some(r) = w.next(&data) {
                let r = r.unwrap();
                got.push((r.lsn, r.block_lsn, r.payload.to_vec()));
            }
            got
        };
        let all = walk_all(EventWalk::new(HEADER_SIZE as u64, end, 10), 0);
        let want: Vec<(u64, u64)> =
            vec![(10, 10), (11, 10), (12, 12), (13, 13), (14, 13), (15, 13)];
        assert_eq!(
            all.iter().map(|(l, b, _)| (*l, *b)).collect::<Vec<_>>(),
            want
        );
        assert!(all.iter().all(|(l, _, p)| p == format!("e{l}").as_bytes()));
        // Hopping by lengths lands on the same LSNs and blocks.
        let later = walk_all(EventWalk::new(HEADER_SIZE as u64, end, 10), 14);
        assert_eq!(
            later.iter().map(|(l, b, _)| (*l, *b)).collect::<Vec<_>>(),
            want[4..]
        );
        // A record of another type is damage, named by its offset.
        let mut bad = data.clone();
        write_frame(&mut bad, REC_FOOTER, &[0; FOOTER_PAYLOAD]);
        let mut w = EventWalk::new(HEADER_SIZE as u64, u64_of(bad.len()), 10);
        w.skip_to(&bad, 16);
        let e = w.next(&bad).unwrap().unwrap_err();
        assert_eq!(e.offset, end);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = Header {
            version: FORMAT_VERSION,
            codec: 1,
            day: 20261123,
            seq: 42,
            first_lsn: 1000,
            prev_digest: Digest([7; 32]),
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h.clone()));
        let mut bad = b;
        bad[20] ^= 1;
        assert_eq!(Header::decode(&bad), Err(HeaderError::BadCrc));
        let mut newer = h.clone();
        newer.version = FORMAT_VERSION + 1;
        assert_eq!(
            Header::decode(&newer.encode()),
            Err(HeaderError::UnsupportedVersion {
                found: FORMAT_VERSION + 1
            })
        );
        assert!(Header::decode(&b[..10]).is_err());
    }

    #[test]
    fn finds_commit_records_at_any_offset() {
        let mut data = vec![0xAAu8; 7];
        assert!(!has_commit_record(&data));
        Commit {
            first_lsn: 3,
            count: 1,
            digest: Digest([9; 32]),
        }
        .write(&mut data);
        data.extend_from_slice(&[0u8; 5]);
        assert!(has_commit_record(&data));
        data[20] ^= 1;
        assert!(!has_commit_record(&data));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(20261123, 7), "20261123-0000000007.seg");
        assert_eq!(
            parse_file_name("20261123-0000000007.seg"),
            Some((20261123, 7))
        );
        assert_eq!(parse_file_name("20261123-7.seg"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
    }
}
