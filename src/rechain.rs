//! Recomputing chain digests from decoded events, for copies of a log's
//! events that must be checked without the log (the Parquet export's
//! `verify-export`).

use crate::chain::{block_digest, Digest};
use crate::codec;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::frame::{write_frame, REC_EVENT};

/// Recomputes chain digests from decoded events, as the writer computed
/// them from the frames it wrote: each event encoded with the log's codec
/// and framed with its CRC (docs/format.md), each block hashed onto the
/// digest before it. A copy of a log's events that re-encodes to the log's
/// digests holds exactly the log's bytes; `verify-export` relies on this
/// once the segments themselves are gone.
#[derive(Debug, Clone)]
pub struct Rechain {
    digest: Digest,
    next_lsn: Option<u64>,
    frames: Vec<u8>,
    body: Vec<u8>,
}

impl Rechain {
    /// Start from the digest before the first block to be given.
    pub fn new(prev: Digest) -> Rechain {
        Rechain {
            digest: prev,
            next_lsn: None,
            frames: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Hash the next block, whose first event has LSN `first_lsn`; the
    /// digest after it. Blocks must follow each other without a gap.
    pub fn block(&mut self, first_lsn: u64, events: &[Event]) -> Result<Digest> {
        let count = u32::try_from(events.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "block at LSN {first_lsn} holds {} events (1..=u32::MAX)",
                    events.len()
                ))
            })?;
        if let Some(want) = self.next_lsn.filter(|&n| n != first_lsn) {
            return Err(Error::InvalidArgument(format!(
                "block starts at LSN {first_lsn}, but the previous one ended before {want}"
            )));
        }
        self.frames.clear();
        for (i, ev) in events.iter().enumerate() {
            self.body.clear();
            codec::encode_event(ev, &mut self.body).map_err(|reason| {
                Error::InvalidArgument(format!(
                    "event at LSN {} does not encode: {reason}",
                    first_lsn + i as u64
                ))
            })?;
            write_frame(&mut self.frames, REC_EVENT, &self.body);
        }
        self.digest = block_digest(&self.digest, first_lsn, count, &self.frames);
        self.next_lsn = Some(first_lsn + u64::from(count));
        Ok(self.digest)
    }

    /// The digest after the last block given (the starting one before any).
    pub fn digest(&self) -> Digest {
        self.digest
    }
}
