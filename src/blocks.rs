//! Walking a segment block by block, checking as it goes: every frame's
//! CRC, the block's shape (event frames closed by one commit record whose
//! first LSN and count match), and the block's chain digest recomputed
//! from the digest before it. Every reader goes through here before it
//! uses a block (docs/integrity.md); so do recovery and `verify`.
//!
//! Checking a range of blocks against a *trusted* digest at its end is
//! what makes a read trustworthy: a block whose commit record was rewritten
//! to match an edit breaks the next block's link, and so on up to the end.
//! [`check_range`] does that.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use crate::chain::{block_digest, Digest};
use crate::event::Micros;
use crate::frame::{peek_frame, read_frame, FrameError, FRAME_HEADER, REC_COMMIT, REC_EVENT};
use crate::num::{u64_of, usize_of};
use crate::segment::{Commit, Header, COMMIT_FRAME_SIZE, COMMIT_PAYLOAD, HEADER_SIZE};

/// One whole block whose frames and digest were checked.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// Offset of the block's first frame.
    pub start: u64,
    /// Offset just past its commit record.
    pub end: u64,
    pub commit: Commit,
    /// The event frames, back to back, exactly as hashed.
    pub frames: &'a [u8],
}

impl<'a> Block<'a> {
    /// `(offset, payload)` of each event of the block, in order. The frames
    /// were CRC-checked by the walk, so this only hops by their lengths.
    pub fn events(&self) -> EventFrames<'a> {
        EventFrames {
            frames: self.frames,
            pos: 0,
            base: self.start,
        }
    }

    /// LSN one past the block's last event.
    pub fn end_lsn(&self) -> u64 {
        self.commit.first_lsn + self.commit.count as u64
    }
}

/// The event frames of a checked block.
pub struct EventFrames<'a> {
    frames: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Iterator for EventFrames<'a> {
    /// (segment offset of the frame, event payload after the type byte).
    type Item = (u64, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (_, size) = peek_frame(&self.frames[self.pos..])?;
        let at = self.pos;
        self.pos += size;
        let payload = &self.frames[at + FRAME_HEADER + 1..at + size];
        Some((self.base + u64_of(at), payload))
    }
}

/// Where and why a walk could not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub offset: u64,
    pub reason: String,
    /// True when the bytes simply ran out (a write in flight, or torn),
    /// false when what is there is wrong.
    pub truncated: bool,
}

/// A walk over the blocks of `data[from..end]`.
pub struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    digest: Digest,
    next_lsn: u64,
    check_digests: bool,
    /// Skip the event frames' CRCs of a block whose chain digest matches
    /// (see [`Walk::crcs_by_digest`]).
    crcs_by_digest: bool,
}

impl<'a> Walk<'a> {
    /// Walk from `from` (a block boundary) whose chain digest is `digest`
    /// and whose next event has LSN `lsn`, up to `end`.
    pub fn new(data: &'a [u8], from: u64, end: u64, digest: Digest, lsn: u64) -> Walk<'a> {
        let end = usize_of(end).min(data.len());
        Walk {
            data,
            pos: usize_of(from).min(end),
            end,
            digest,
            next_lsn: lsn,
            check_digests: true,
            crcs_by_digest: false,
        }
    }

    /// For read paths (docs/integrity.md, "Frame CRCs on read paths"): a
    /// block whose recomputed chain digest matches its commit record is
    /// taken without computing its event frames' CRCs, since the digest
    /// covers the same bytes (CRC fields included) and is the stronger
    /// check. The commit record's own CRC is still checked. A block that
    /// does not pass that way is walked again frame by frame with every
    /// CRC, so every error (offset, reason, `truncated`) is exactly the
    /// full walk's. `verify` and recovery never use this: they also refuse
    /// a frame whose CRC alone is wrong.
    pub fn crcs_by_digest(mut self) -> Walk<'a> {
        self.crcs_by_digest = true;
        self
    }

    /// Walk the blocks of a range already checked (CRCs and structure are
    /// still checked; digests are not recomputed).
    pub fn trusted(mut self) -> Walk<'a> {
        self.check_digests = false;
        self
    }

    /// The chain digest after the last block walked.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Offset just past the last block walked.
    pub fn pos(&self) -> u64 {
        u64_of(self.pos)
    }

    /// LSN of the next event.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The next whole block, `Ok(None)` at the end.
    pub fn next_block(&mut self) -> Result<Option<Block<'a>>, Stop> {
        if self.pos >= self.end {
            return Ok(None);
        }
        if self.crcs_by_digest && self.check_digests {
            if let Some(block) = self.block_by_digest() {
                return Ok(Some(block));
            }
        }
        self.block_with_crcs()
    }

    /// The next block if it is whole, shaped right and its chain digest
    /// matches, its event frames followed by their lengths alone; `None`
    /// for anything else (nothing changed: the caller walks it again with
    /// every CRC, which says what is wrong and where).
    fn block_by_digest(&mut self) -> Option<Block<'a>> {
        let start = self.pos;
        let mut pos = start;
        let mut events: u32 = 0;
        loop {
            let (rec_type, size) = peek_frame(&self.data[pos..self.end])?;
            match rec_type {
                REC_EVENT => {
                    events = events.checked_add(1)?;
                    pos += size;
                }
                REC_COMMIT => {
                    let frame = read_frame(&self.data[pos..self.end]).ok()?;
                    let c = Commit::decode(frame.payload)?;
                    if c.first_lsn != self.next_lsn || c.count != events || c.count == 0 {
                        return None;
                    }
                    let frames = &self.data[start..pos];
                    if block_digest(&self.digest, c.first_lsn, c.count, frames) != c.digest {
                        return None;
                    }
                    self.accept(pos + frame.size, &c);
                    return Some(Block {
                        start: u64_of(start),
                        end: u64_of(self.pos),
                        commit: c,
                        frames,
                    });
                }
                _ => return None,
            }
        }
    }

    /// Move past a block that passed, ending at `end`.
    fn accept(&mut self, end: usize, c: &Commit) {
        self.digest = c.digest;
        self.next_lsn += c.count as u64;
        self.pos = end;
    }

    /// The next block, every frame's CRC checked.
    fn block_with_crcs(&mut self) -> Result<Option<Block<'a>>, Stop> {
        let start = self.pos;
        let mut pos = start;
        let mut events: u32 = 0;
        let stop = |offset: usize, reason: String, truncated: bool| Stop {
            offset: u64_of(offset),
            reason,
            truncated,
        };
        loop {
            if pos >= self.end {
                return Err(stop(
                    start,
                    format!("{events} events without a commit record"),
                    true,
                ));
            }
            let frame = read_frame(&self.data[pos..self.end]).map_err(|e| {
                let truncated = matches!(e, FrameError::Truncated { .. });
                stop(pos, e.to_string(), truncated)
            })?;
            match frame.rec_type {
                REC_EVENT => {
                    events += 1;
                    pos += frame.size;
                }
                REC_COMMIT => {
                    let c = Commit::decode(frame.payload).ok_or_else(|| {
                        stop(pos, "commit record has the wrong size".into(), false)
                    })?;
                    if c.first_lsn != self.next_lsn || c.count != events || c.count == 0 {
                        return Err(stop(
                            pos,
                            format!(
                                "commit record says LSN {} x{} but the block holds LSN {} x{}",
                                c.first_lsn, c.count, self.next_lsn, events
                            ),
                            false,
                        ));
                    }
                    let frames = &self.data[start..pos];
                    if self.check_digests {
                        let want = block_digest(&self.digest, c.first_lsn, c.count, frames);
                        if want != c.digest {
                            return Err(stop(
                                pos,
                                format!(
                                    "chain digest mismatch for LSN {}..{} (a record was edited, removed, inserted or reordered)",
                                    c.first_lsn,
                                    c.first_lsn + c.count as u64 - 1
                                ),
                                false,
                            ));
                        }
                    }
                    self.accept(pos + frame.size, &c);
                    return Ok(Some(Block {
                        start: u64_of(start),
                        end: u64_of(self.pos),
                        commit: c,
                        frames,
                    }));
                }
                other => {
                    return Err(stop(
                        pos,
                        format!("unexpected record type 0x{other:02x}"),
                        false,
                    ))
                }
            }
        }
    }
}

/// Check the blocks of `data[from..to]` (block boundaries) against the
/// chain: starting from `digest_at_from`, every block must match its commit
/// record and the last commit record must equal `trusted_end`. `lsn` is the
/// LSN of the first event at `from`. For readers: a block whose digest
/// matches is taken without its event frames' CRCs
/// ([`Walk::crcs_by_digest`]).
pub fn check_range(
    data: &[u8],
    from: u64,
    to: u64,
    digest_at_from: Digest,
    lsn: u64,
    trusted_end: Digest,
) -> Result<(), Stop> {
    if u64_of(data.len()) < to {
        return Err(Stop {
            offset: u64_of(data.len()),
            reason: format!("file is shorter than its committed length {to}"),
            truncated: false,
        });
    }
    let mut w = Walk::new(data, from, to, digest_at_from, lsn).crcs_by_digest();
    while w.next_block()?.is_some() {}
    if w.digest() != trusted_end {
        return Err(Stop {
            offset: to,
            reason: format!(
                "the chain ends at digest {} but {} was expected here (the segment was changed after it was written)",
                w.digest(),
                trusted_end
            ),
            truncated: false,
        });
    }
    Ok(())
}

/// Whether the one block `data[from..to]` (`from` and `to` block
/// boundaries) holds on its digest alone: the commit record that ends at
/// `to` (a whole frame, its CRC right, a count above zero) holds
/// `trusted_end`, and `BLAKE3(digest_at_from ‖ its first LSN ‖ its count ‖
/// data[from..to - commit record])` equals it. No event frame is followed.
///
/// Why that is enough for a reader (docs/integrity.md, "Frame CRCs on read
/// paths"): a matching digest means the bytes are the ones the writer
/// hashed, event frames and commit record alike, and the writer only ever
/// hashes a block of whole event frames closed by one commit record of the
/// right count; so [`check_range`] over the same block, which follows each
/// frame by its length before it hashes, would pass too. `false` says
/// nothing about where or why: the caller then runs [`check_range`], whose
/// error names the place exactly as before.
pub fn block_holds_by_digest(
    data: &[u8],
    from: u64,
    to: u64,
    digest_at_from: Digest,
    trusted_end: Digest,
) -> bool {
    let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else {
        return false;
    };
    let Some(frames_end) = to.checked_sub(COMMIT_FRAME_SIZE) else {
        return false;
    };
    let (Some(frames), Some(c)) = (
        data.get(from..frames_end),
        commit_ending_at(data, to as u64),
    ) else {
        return false;
    };
    c.count != 0
        && c.digest == trusted_end
        && block_digest(&digest_at_from, c.first_lsn, c.count, frames) == trusted_end
}

/// The chain digest stored at block boundary `at` of a segment: the digest
/// in the commit record that ends exactly there. Only meaningful once the
/// blocks after `at` were checked against a trusted end.
pub fn stored_digest_at(data: &[u8], at: u64) -> Option<(Digest, u64)> {
    let c = commit_ending_at(data, at)?;
    Some((c.digest, c.first_lsn + c.count as u64))
}

/// The commit record that ends exactly at offset `end` of `data`: a whole
/// commit frame with its CRC right; `None` otherwise.
fn commit_ending_at(data: &[u8], end: u64) -> Option<Commit> {
    let end = usize::try_from(end).ok()?;
    let start = end.checked_sub(COMMIT_FRAME_SIZE)?;
    let f = read_frame(data.get(start..end)?).ok()?;
    if f.rec_type != REC_COMMIT || f.size != COMMIT_FRAME_SIZE {
        return None;
    }
    Commit::decode(f.payload)
}

// ---------------------------------------------------------------------------
// Scanning a segment from its header (opens and recovery)
// ---------------------------------------------------------------------------

/// One verified block met while scanning.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpan {
    pub commit: Commit,
    /// Offset just past the commit record.
    pub end: u64,
}

/// Where and why a scan stopped before the end of the data.
pub type ScanStop = Stop;

/// The result of walking a segment's frames from the header on.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Offset just past the last whole, valid block.
    pub valid_end: u64,
    pub count: u64,
    pub next_lsn: u64,
    pub digest: Digest,
    pub min_ts: Option<Micros>,
    pub max_ts: Option<Micros>,
    /// Set when the walk stopped before `data_end`.
    pub stop: Option<ScanStop>,
    /// Event records seen after the last valid block (never committed).
    pub uncommitted_events: u64,
}

impl Scan {
    /// The state before the first block of a segment.
    pub fn at_start(header: &Header) -> Scan {
        Scan {
            valid_end: HEADER_SIZE as u64,
            count: 0,
            next_lsn: header.first_lsn,
            digest: header.prev_digest,
            min_ts: None,
            max_ts: None,
            stop: None,
            uncommitted_events: 0,
        }
    }
}

/// Walk `data` from `s.valid_end` on (`s` is [`Scan::at_start`] or the
/// result of an earlier scan of the same, grown, file; `data` is the whole
/// file, or only its data part for a sealed one) and check every frame and
/// every block digest ([`crate::blocks::Walk`]). `ts_of` pulls the
/// timestamp out of an event payload (the codec's business, not this
/// module's); it is called once per event.
pub fn scan(
    data: &[u8],
    mut s: Scan,
    mut ts_of: impl FnMut(&[u8]) -> Result<Micros, crate::codec::CodecError>,
    mut on_block: impl FnMut(&BlockSpan),
) -> Scan {
    s.stop = None;
    s.uncommitted_events = 0;
    let mut walk = Walk::new(data, s.valid_end, u64_of(data.len()), s.digest, s.next_lsn);
    loop {
        let block = match walk.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(stop) => {
                s.uncommitted_events = count_event_frames(data, s.valid_end).0;
                s.stop = Some(stop);
                break;
            }
        };
        let (mut bmin, mut bmax) = (i64::MAX, i64::MIN);
        for (at, payload) in block.events() {
            match ts_of(payload) {
                Ok(ts) => {
                    bmin = bmin.min(ts);
                    bmax = bmax.max(ts);
                }
                Err(e) => {
                    s.stop = Some(ScanStop {
                        offset: at,
                        reason: format!("event record does not decode: {e}"),
                        truncated: false,
                    });
                    s.uncommitted_events = count_event_frames(data, s.valid_end).0;
                    return s;
                }
            }
        }
        let c = block.commit;
        s.digest = c.digest;
        s.count += c.count as u64;
        s.next_lsn += c.count as u64;
        s.min_ts = Some(s.min_ts.map_or(bmin, |m| m.min(bmin)));
        s.max_ts = Some(s.max_ts.map_or(bmax, |m| m.max(bmax)));
        s.valid_end = block.end;
        on_block(&BlockSpan {
            commit: c,
            end: block.end,
        });
    }
    s
}

/// Event frames from `from` on, as far as frames can be followed: (whole
/// CRC-valid event frames, whether the bytes end inside a frame that may be
/// an event). What a cut at `from` may take away.
pub fn count_event_frames(data: &[u8], from: u64) -> (u64, bool) {
    let mut pos = usize_of(from);
    let mut n = 0;
    while pos < data.len() {
        match read_frame(&data[pos..]) {
            Ok(f) => {
                n += u64::from(f.rec_type == REC_EVENT);
                pos += f.size;
            }
            Err(FrameError::Truncated { .. }) => {
                // A frame cut short: an event unless its type byte (or its
                // length) says it is a commit record.
                let rest = &data[pos..];
                let commit_len = u32::try_from(COMMIT_PAYLOAD + 1).unwrap_or(u32::MAX);
                let len = rest
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let is_commit = rest.get(FRAME_HEADER) == Some(&REC_COMMIT)
                    || (rest.len() <= FRAME_HEADER && len == Some(commit_len));
                return (n, !is_commit && !rest.is_empty());
            }
            Err(_) => return (n, false),
        }
    }
    (n, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_frame;

    /// A segment body of `n` blocks of `k` events each, from `prev`.
    fn body(prev: Digest, n: usize, k: u32) -> (Vec<u8>, Digest) {
        let mut out = vec![0u8; 72];
        let mut d = prev;
        let mut lsn = 0;
        for b in 0..n {
            let mut frames = Vec::new();
            for e in 0..k {
                write_frame(&mut frames, REC_EVENT, format!("event {b}/{e}").as_bytes());
            }
            d = block_digest(&d, lsn, k, &frames);
            out.extend_from_slice(&frames);
            Commit {
                first_lsn: lsn,
                count: k,
                digest: d,
            }
            .write(&mut out);
            lsn += k as u64;
        }
        (out, d)
    }

    #[test]
    fn walks_checks_and_finds_every_event() {
        let (b, end) = body(Digest::GENESIS, 4, 3);
        let mut w = Walk::new(&b, 72, b.len() as u64, Digest::GENESIS, 0);
        let mut n = 0;
        while let Some(block) = w.next_block().unwrap() {
            n += block.events().count();
        }
        assert_eq!((n, w.digest(), w.next_lsn()), (12, end, 12));
        check_range(&b, 72, b.len() as u64, Digest::GENESIS, 0, end).unwrap();
        assert!(check_range(&b, 72, b.len() as u64, Digest::GENESIS, 0, Digest([9; 32])).is_err());
    }

    /// Every block and the stop of a walk, in order.
    fn walk_all(w: &mut Walk<'_>) -> (Vec<(u64, u64, Commit)>, Option<Stop>) {
        let mut blocks = Vec::new();
        loop {
            match w.next_block() {
                Ok(Some(b)) => blocks.push((b.start, b.end, b.commit)),
                Ok(None) => return (blocks, None),
                Err(s) => return (blocks, Some(s)),
            }
        }
    }

    /// `clean` with each bit 0 or 7 of each byte past the 72-byte header
    /// flipped, one case per flip, then cut at each of those bytes.
    fn flips_and_cuts(clean: &[u8]) -> Vec<Vec<u8>> {
        let mut cases = Vec::new();
        for at in 72..clean.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = clean.to_vec();
                b[at] ^= bit;
                cases.push(b);
            }
        }
        for cut in 72..clean.len() {
            cases.push(clean[..cut].to_vec());
        }
        cases
    }

    /// A walk that takes blocks on their digests answers exactly as the walk
    /// that checks every CRC, for every single-bit flip and every cut of a
    /// segment: the same blocks, then the same stop (offset, reason,
    /// truncated).
    #[test]
    fn crcs_by_digest_answers_as_the_full_walk_on_every_flip() {
        let (clean, _) = body(Digest::GENESIS, 3, 3);
        let len = clean.len() as u64;
        for b in &flips_and_cuts(&clean) {
            let full = walk_all(&mut Walk::new(b, 72, len, Digest::GENESIS, 0));
            let fast = walk_all(&mut Walk::new(b, 72, len, Digest::GENESIS, 0).crcs_by_digest());
            assert_eq!(full, fast);
        }
    }

    /// A block taken on its digest alone (`block_holds_by_digest`, the
    /// queries' one-block check) is taken exactly when the walk over it
    /// passes, for every block and every single-bit flip and cut of the
    /// segment; bounds outside the data are refused, not a panic.
    #[test]
    fn a_block_holds_by_digest_exactly_when_its_walk_passes() {
        let (clean, _) = body(Digest::GENESIS, 3, 3);
        let mut spans = Vec::new();
        let mut w = Walk::new(&clean, 72, clean.len() as u64, Digest::GENESIS, 0);
        let mut prev = Digest::GENESIS;
        while let Some(b) = w.next_block().unwrap() {
            spans.push((b.start, b.end, prev, b.commit.digest, b.commit.first_lsn));
            prev = b.commit.digest;
        }
        let mut cases = vec![clean.clone()];
        cases.extend(flips_and_cuts(&clean));
        for b in &cases {
            for &(from, to, prev, end, lsn) in &spans {
                let walk = check_range(b, from, to, prev, lsn, end).is_ok();
                assert_eq!(block_holds_by_digest(b, from, to, prev, end), walk);
            }
        }
        let (from, to, prev, end, _) = spans[0];
        assert!(block_holds_by_digest(&clean, from, to, prev, end));
        assert!(!block_holds_by_digest(
            &clean,
            from,
            to,
            prev,
            Digest([9; 32])
        ));
        assert!(!block_holds_by_digest(
            &clean,
            from,
            to,
            Digest([9; 32]),
            end
        ));
        assert!(!block_holds_by_digest(&clean, to, from, prev, end));
        assert!(!block_holds_by_digest(&clean, from, u64::MAX, prev, end));
        assert!(!block_holds_by_digest(&clean, from, 10, prev, end));
    }

    /// The one thing the digest walk gives up: an event frame whose CRC
    /// alone is wrong, in a block whose digest was computed over it.
    #[test]
    fn a_wrong_crc_under_a_right_digest_is_taken_on_the_digest() {
        let mut frames = Vec::new();
        write_frame(&mut frames, REC_EVENT, b"event");
        frames[4] ^= 0xff;
        let d = block_digest(&Digest::GENESIS, 0, 1, &frames);
        let mut b = vec![0u8; 72];
        b.extend_from_slice(&frames);
        Commit {
            first_lsn: 0,
            count: 1,
            digest: d,
        }
        .write(&mut b);
        let len = b.len() as u64;
        let e = Walk::new(&b, 72, len, Digest::GENESIS, 0)
            .next_block()
            .unwrap_err();
        assert_eq!(e.offset, 72);
        assert!(e.reason.contains("CRC mismatch"), "{e:?}");
        let mut w = Walk::new(&b, 72, len, Digest::GENESIS, 0).crcs_by_digest();
        assert_eq!(w.next_block().unwrap().unwrap().end, len);
        check_range(&b, 72, len, Digest::GENESIS, 0, d).expect("readers take it");
    }

    #[test]
    fn a_rewritten_commit_breaks_the_next_link_and_the_end() {
        let (mut b, end) = body(Digest::GENESIS, 3, 2);
        // Edit an event of block 0 and rewrite its commit record to match.
        let first_commit = {
            let mut w = Walk::new(&b, 72, b.len() as u64, Digest::GENESIS, 0);
            usize_of(w.next_block().unwrap().unwrap().end) - COMMIT_FRAME_SIZE
        };
        let mut frames = b[72..first_commit].to_vec();
        frames[12] ^= 1;
        let mut refr = Vec::new();
        for (_, p) in (Block {
            start: 0,
            end: 0,
            commit: Commit {
                first_lsn: 0,
                count: 2,
                digest: Digest::GENESIS,
            },
            frames: &b[72..first_commit],
        })
        .events()
        {
            let mut p = p.to_vec();
            if refr.is_empty() {
                p[3] ^= 1;
            }
            write_frame(&mut refr, REC_EVENT, &p);
        }
        let d = block_digest(&Digest::GENESIS, 0, 2, &refr);
        b.splice(72..first_commit, refr.iter().copied());
        let mut c = Vec::new();
        Commit {
            first_lsn: 0,
            count: 2,
            digest: d,
        }
        .write(&mut c);
        let at = 72 + refr.len();
        b[at..at + COMMIT_FRAME_SIZE].copy_from_slice(&c);
        let len = b.len() as u64;
        // Block 0 alone checks against its own (rewritten) record...
        let mut w = Walk::new(&b, 72, len, Digest::GENESIS, 0);
        assert!(w.next_block().is_ok());
        // ...but not the range up to the trusted end.
        let e = check_range(&b, 72, len, Digest::GENESIS, 0, end).unwrap_err();
        assert!(e.reason.contains("chain digest mismatch"), "{e:?}");
    }

    #[test]
    fn a_block_without_its_commit_is_a_truncated_stop() {
        let (b, _) = body(Digest::GENESIS, 2, 2);
        let cut = &b[..b.len() - 5];
        let mut w = Walk::new(cut, 72, cut.len() as u64, Digest::GENESIS, 0);
        assert!(w.next_block().unwrap().is_some());
        let stop = w.next_block().unwrap_err();
        assert!(stop.truncated, "{stop:?}");
    }
}
