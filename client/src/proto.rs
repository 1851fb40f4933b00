//! The Unix-socket protocol of `auditlog serve`, byte by byte in
//! docs/protocol.md. Shared by the client (this crate) and the server.
//!
//! Every message, in both directions, is one frame:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`, u32 LE: bytes after this field (12 + key + body) |
//! | 4 | 1 | `kind`: a request's op, or a response's status |
//! | 5 | 1 | `flags`: 0 |
//! | 6 | 2 | `key_len`, u16 LE: the idempotency key's length (0..=128; 0 in responses) |
//! | 8 | 8 | `id`, u64 LE: chosen by the client, echoed by the response |
//! | 16 | key_len | the idempotency key (ASCII `!`..=`~`) |
//! | 16 + key_len | len - 12 - key_len | the body |

use std::io::{self, Read, Write};

/// Protocol version (HELLO answers it).
pub const PROTOCOL_VERSION: u32 = 1;
/// Bytes of a frame before its key: len, kind, flags, key_len, id.
pub const HEADER: usize = 16;
/// Bytes counted in `len` besides key and body.
pub const LEN_FIXED: usize = HEADER - 4;
/// Longest idempotency key.
pub const MAX_KEY_BYTES: usize = 128;
/// Default largest request body the server takes (`--max-request-bytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest response body a client accepts (a page of replay or runs).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Request ops.
pub mod op {
    /// Body: JSON events, one per line (JSONL).
    pub const APPEND_JSONL: u8 = 0x01;
    /// Body: event frames back to back (docs/format.md, "Frames").
    pub const APPEND_FRAMES: u8 = 0x02;
    /// Body: a JSON object `{"method": ..., params...}` (docs/protocol.md).
    pub const CALL: u8 = 0x03;
    /// Body: `{"protocol":1}`; answers the server's version and limits.
    pub const HELLO: u8 = 0x04;
}

/// Response statuses.
pub mod status {
    /// Body: the JSON answer.
    pub const OK: u8 = 0x00;
    /// The request is wrong; nothing of it was stored. Do not retry.
    pub const BAD_REQUEST: u8 = 0x01;
    /// Back-pressure: nothing stored; retry the same request (same key)
    /// after `retry_after_ms`.
    pub const BUSY: u8 = 0x02;
    /// The run (or other named thing) does not exist.
    pub const NOT_FOUND: u8 = 0x03;
    /// The server is stopping or its writer failed: retry the same request
    /// later, possibly on a new connection.
    pub const UNAVAILABLE: u8 = 0x04;
    /// The frame is over the server's limit; the server closes the
    /// connection after this answer.
    pub const TOO_LARGE: u8 = 0x05;
    /// The server failed (I/O); whether the request was stored is not
    /// known: retry it with the same key.
    pub const FAILED: u8 = 0x06;
}

/// One frame, read or to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub id: u64,
    pub key: Vec<u8>,
    pub body: Vec<u8>,
}

/// Why a frame header is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// `len` is below the fixed part or above the limit.
    BadLength { len: u64, max: u64 },
    /// `key_len` is over 128 or over what `len` leaves.
    BadKey { key_len: usize },
    /// `flags` is not 0.
    BadFlags(u8),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::BadLength { len, max } => {
                write!(f, "frame length {len} is outside {LEN_FIXED}..={max}")
            }
            HeaderError::BadKey { key_len } => write!(
                f,
                "idempotency key length {key_len} is over {MAX_KEY_BYTES} or over the frame"
            ),
            HeaderError::BadFlags(b) => write!(f, "flags byte {b} must be 0"),
        }
    }
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes after the length field.
    pub len: usize,
    pub kind: u8,
    pub key_len: usize,
    pub id: u64,
}

impl Header {
    /// Decode and check the 16 header bytes; `max_body` bounds the body.
    pub fn parse(b: &[u8; HEADER], max_body: usize) -> Result<Header, HeaderError> {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let max = LEN_FIXED + MAX_KEY_BYTES + max_body;
        if !(LEN_FIXED..=max).contains(&len) {
            return Err(HeaderError::BadLength {
                len: len as u64,
                max: max as u64,
            });
        }
        if b[5] != 0 {
            return Err(HeaderError::BadFlags(b[5]));
        }
        let key_len = u16::from_le_bytes([b[6], b[7]]) as usize;
        if key_len > MAX_KEY_BYTES || key_len > len - LEN_FIXED {
            return Err(HeaderError::BadKey { key_len });
        }
        let id = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        Ok(Header {
            len,
            kind: b[4],
            key_len,
            id,
        })
    }

    /// Bytes of the body.
    pub fn body_len(&self) -> usize {
        self.len - LEN_FIXED - self.key_len
    }
}

/// A key is 1..=128 printable ASCII bytes without spaces.
pub fn check_key(key: &[u8]) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "idempotency key is {} bytes; it must be 1..={MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(b) = key.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Err(format!(
            "idempotency key holds byte 0x{b:02x}; only printable ASCII without spaces (0x21..=0x7e) is allowed"
        ));
    }
    Ok(())
}

/// Append the header of a frame to `out`; key and body follow.
pub fn write_header(out: &mut Vec<u8>, kind: u8, id: u64, key: &[u8], body_len: usize) {
    let len = (LEN_FIXED + key.len() + body_len) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(key);
}

/// Write a whole frame (one `write_all` of header and key, one of body).
pub fn write_frame(
    w: &mut impl Write,
    kind: u8,
    id: u64,
    key: &[u8],
    body: &[u8],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(HEADER + key.len());
    write_header(&mut head, kind, id, key, body.len());
    if body.len() <= 4096 {
        head.extend_from_slice(body);
        return w.write_all(&head);
    }
    w.write_all(&head)?;
    w.write_all(body)
}

/// Read one frame (blocking); `max_body` bounds the body.
pub fn read_frame(r: &mut impl Read, max_body: usize) -> io::Result<Frame> {
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h)?;
    let head = Header::parse(&h, max_body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut key = vec![0u8; head.key_len];
    r.read_exact(&mut key)?;
    let mut body = vec![0u8; head.body_len()];
    r.read_exact(&mut body)?;
    Ok(Frame {
        kind: head.kind,
        id: head.id,
        key,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, op::CALL, 7, b"k-1", b"{\"method\":\"ping\"}").unwrap();
        let f = read_frame(&mut &buf[..], 1024).unwrap();
        assert_eq!(
            f,
            Frame {
                kind: op::CALL,
                id: 7,
                key: b"k-1".to_vec(),
                body: b"{\"method\":\"ping\"}".to_vec()
            }
        );
    }

    #[test]
    fn bad_headers_are_named() {
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(
            Header::parse(&h, 10),
            Err(HeaderError::BadLength { .. })
        ));
        h[0..4].copy_from_slice(&(LEN_FIXED as u32 + 2).to_le_bytes());
        h[6..8].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            Header::parse(&h, 10),
            Err(HeaderError::BadKey { key_len: 3 })
        ));
        h[5] = 1;
        assert!(matches!(
            Header::parse(&h, 10),
            Err(HeaderError::BadFlags(1))
        ));
        assert!(check_key(b"a b").is_err());
        assert!(check_key(b"").is_err());
        assert!(check_key(b"ok-123").is_ok());
    }
}
