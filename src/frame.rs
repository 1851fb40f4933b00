//! CRC framing of records. A frame is `len: u32 LE`, `crc: u32 LE`, then
//! `len` body bytes; the CRC (CRC-32/ISO-HDLC, crc32fast) covers the four
//! length bytes and the body, so a torn or flipped length is caught too.
//! The first body byte says what the record is.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use crate::codec::MAX_BODY_BYTES;

pub const FRAME_HEADER: usize = 8;
/// Largest body a frame may carry: an event body plus its type byte.
pub const MAX_FRAME_BODY: usize = MAX_BODY_BYTES + 1;

/// Record types (first body byte).
pub const REC_EVENT: u8 = 0x01;
pub const REC_COMMIT: u8 = 0x02;
pub const REC_FOOTER: u8 = 0x03;

/// Why no frame could be read at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes remain than the frame needs: a torn write, or the end.
    Truncated { needed: usize, available: usize },
    /// The length field is zero or beyond the limit.
    BadLength(u32),
    /// The CRC does not match.
    BadCrc { stored: u32, computed: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => write!(
                f,
                "frame cut short: needs {needed} bytes, {available} remain"
            ),
            FrameError::BadLength(n) => {
                write!(f, "frame length {n} is outside 1..={MAX_FRAME_BODY}")
            }
            FrameError::BadCrc { stored, computed } => write!(
                f,
                "CRC mismatch: stored {stored:08x}, computed {computed:08x}"
            ),
        }
    }
}

fn crc_of(len_bytes: [u8; 4], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(body);
    h.finalize()
}

/// The length field of a body of `body_len` bytes (at most
/// [`MAX_FRAME_BODY`], which fits a u32; a longer one is written as
/// `u32::MAX`, which every reader refuses).
fn body_len_bytes(body_len: usize) -> [u8; 4] {
    u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes()
}

const _: () = assert!(MAX_FRAME_BODY < u32::MAX as usize);

/// Append a frame holding `rec_type` followed by `payload`.
pub fn write_frame(out: &mut Vec<u8>, rec_type: u8, payload: &[u8]) {
    let body_len = payload.len() + 1;
    debug_assert!(body_len <= MAX_FRAME_BODY, "frame body over the limit");
    let len_bytes = body_len_bytes(body_len);
    let start = out.len();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&[0u8; 4]);
    out.push(rec_type);
    out.extend_from_slice(payload);
    let crc = crc_of(len_bytes, &out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Turn `buf[start..]` (a type byte then the payload, written by the caller
/// after 8 reserved bytes) into a frame by filling in length and CRC. Lets
/// encoders write the payload in place without a second copy.
pub fn seal_frame_in_place(buf: &mut [u8], start: usize) {
    let body_len = buf.len() - start - FRAME_HEADER;
    debug_assert!((1..=MAX_FRAME_BODY).contains(&body_len));
    let len_bytes = body_len_bytes(body_len);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    let crc = crc_of(len_bytes, &buf[start + FRAME_HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A frame read from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub rec_type: u8,
    /// The body after the type byte.
    pub payload: &'a [u8],
    /// Total bytes the frame occupies (header + body).
    pub size: usize,
}

/// The type and total size of the frame at the start of `buf`, without
/// checking its CRC: for skipping frames a reader does not return (their
/// bytes were checked when the segment was opened or scanned). `None` when
/// the header is not plausible; `read_frame` then says why.
pub fn peek_frame(buf: &[u8]) -> Option<(u8, usize)> {
    let len =
        u32::from_le_bytes([*buf.first()?, *buf.get(1)?, *buf.get(2)?, *buf.get(3)?]) as usize;
    let size = FRAME_HEADER + len;
    if len == 0 || len > MAX_FRAME_BODY || buf.len() < size {
        return None;
    }
    Some((buf[FRAME_HEADER], size))
}

/// Read the frame at the start of `buf`.
pub fn read_frame(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER,
            available: buf.len(),
        });
    }
    let len_bytes = [buf[0], buf[1], buf[2], buf[3]];
    let len = u32::from_le_bytes(len_bytes);
    if len == 0 || len as usize > MAX_FRAME_BODY {
        return Err(FrameError::BadLength(len));
    }
    let size = FRAME_HEADER + len as usize;
    if buf.len() < size {
        return Err(FrameError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    let stored = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER..size];
    let computed = crc_of(len_bytes, body);
    if stored != computed {
        return Err(FrameError::BadCrc { stored, computed });
    }
    Ok(Frame {
        rec_type: body[0],
        payload: &body[1..],
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation() {
        let mut buf = Vec::new();
        write_frame(&mut buf, REC_EVENT, b"hello world");
        let f = read_frame(&buf).expect("whole frame reads");
        assert_eq!(
            (f.rec_type, f.payload, f.size),
            (REC_EVENT, &b"hello world"[..], buf.len())
        );
        for cut in 0..buf.len() {
            assert!(
                matches!(read_frame(&buf[..cut]), Err(FrameError::Truncated { .. })),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        write_frame(&mut buf, REC_EVENT, b"payload bytes");
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(read_frame(&b).is_err(), "bit {bit} not caught");
        }
    }

    #[test]
    fn in_place_sealing_matches_write_frame() {
        let mut a = Vec::new();
        write_frame(&mut a, REC_COMMIT, b"xyz");
        let mut b = vec![0u8; 8];
        b.push(REC_COMMIT);
        b.extend_from_slice(b"xyz");
        seal_frame_in_place(&mut b, 0);
        assert_eq!(a, b);
    }
}
