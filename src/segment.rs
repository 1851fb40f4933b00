//! One segment file: a fixed header, then frames (event records, each
//! group-commit block closed by a commit record), and once sealed a footer
//! frame plus a 16-byte trailer pointing at it. Byte layout in
//! docs/format.md.

use crate::chain::Digest;
use crate::event::Micros;
use crate::frame::{read_frame, write_frame, REC_COMMIT, REC_FOOTER};

pub const SEGMENT_MAGIC: &[u8; 8] = b"AUDLOGSG";
pub const TRAILER_MAGIC: &[u8; 8] = b"AUDLSEAL";
/// On-disk format version; bump with every change to docs/format.md.
pub const FORMAT_VERSION: u16 = 3;
pub const HEADER_SIZE: usize = 72;
pub const TRAILER_SIZE: usize = 16;
pub const COMMIT_PAYLOAD: usize = 8 + 4 + 32;
pub const FOOTER_PAYLOAD: usize = 8 + 8 + 8 + 8 + 32 + 8;

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

    pub fn decode(b: &[u8]) -> Result<Header, String> {
        if b.len() < HEADER_SIZE {
            return Err(format!(
                "header cut short: {} of {HEADER_SIZE} bytes",
                b.len()
            ));
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err("not a segment file (bad magic)".into());
        }
        let crc = u32::from_le_bytes(le4(&b[64..68]));
        if crc != crc32fast::hash(&b[0..64]) {
            return Err("header CRC mismatch".into());
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            ));
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
pub fn read_footer(file: &[u8]) -> Result<Option<Footer>, (u64, String)> {
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
        return Err((
            trailer_at,
            format!("trailer points at offset {at}, outside the file"),
        ));
    }
    let frame = read_frame(&file[at as usize..file.len() - TRAILER_SIZE])
        .map_err(|e| (at, format!("footer frame: {e}")))?;
    if frame.rec_type != REC_FOOTER || at as usize + frame.size != file.len() - TRAILER_SIZE {
        return Err((at, "trailer does not point at a footer frame".into()));
    }
    let footer =
        Footer::decode(frame.payload).ok_or((at, "footer has the wrong size".to_string()))?;
    if footer.data_end != at {
        return Err((
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
    let want = ((COMMIT_PAYLOAD + 1) as u32).to_le_bytes();
    let frame_len = crate::frame::FRAME_HEADER + COMMIT_PAYLOAD + 1;
    if data.len() < frame_len {
        return;
    }
    for i in 0..=data.len() - frame_len {
        if data[i..i + 4] == want && data[i + 8] == REC_COMMIT {
            if let Ok(fr) = read_frame(&data[i..i + frame_len]) {
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
        assert_eq!(Header::decode(&b), Ok(h));
        let mut bad = b;
        bad[20] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("CRC"));
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
