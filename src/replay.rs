//! Replay: the events of a log in LSN order, each segment's blocks checked
//! against the chain up to the segment's trusted end before any of its
//! events is returned, every event decoded with the strict decoder
//! (docs/integrity.md). Each frame's CRC is computed once, by the chain
//! check; the decode then follows the checked frames by their lengths.
//!
//! Three ways to spread the work ([`ReplayThreads`]), the same events in
//! the same order and the same checks in each:
//! - all on the caller's thread;
//! - check-ahead (the default for a large replay): a thread
//!   ("auditlog-check-ahead") maps each segment and checks its chain, hands
//!   it on, then runs the strict decoder's checks on each of its events in
//!   place (no event built), reporting its progress every
//!   [`CHECK_CHUNK_EVENTS`] events; the caller follows behind, decoding
//!   (without the checks) only events already checked, and returns the
//!   first refused event's error;
//! - pipelined: the checking thread cuts each checked segment into chunks
//!   and deals them in turn to decoding threads ("auditlog-decode"); the
//!   caller takes the decoded chunks back in the same turn, so nothing can
//!   overtake. Memory is bounded: at most [`OUT_DEPTH`] + 1 decoded chunks
//!   per decoding thread, each at most [`CHUNK_EVENTS`] events or
//!   [`CHUNK_BYTES`] of frames. It costs more CPU than it saves wall time
//!   on a busy machine (events made on one thread and freed on another;
//!   docs/benchmarks.md), so it is only used when asked for.
//!
//! A chunk or segment is only handed on after the whole segment's chain
//! was checked, and an event is only decoded without the strict checks
//! after the checking thread passed it, so threads never weaken the
//! guarantee.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::checked::Checked;
use crate::codec::StoredEventError;
use crate::error::{Error, Result};
use crate::event::borrowed::EventRef;
use crate::event::Event;
use crate::event::Micros;
use crate::frame::{peek_frame, REC_COMMIT, REC_EVENT};
use crate::layout::{map_file, SegmentMeta};
use crate::segment::{EventRecord, EventWalk, HEADER_SIZE};

/// Which events a replay yields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayRange {
    /// First LSN (inclusive).
    pub from_lsn: Option<u64>,
    /// Only events with `ts >= since`.
    pub since: Option<Micros>,
    /// Only events with `ts <= until`.
    pub until: Option<Micros>,
}

/// Events per decoded chunk (at most).
pub const CHUNK_EVENTS: usize = 1024;
/// Frame bytes per decoded chunk (at most, unless one frame is larger).
pub const CHUNK_BYTES: u64 = 1 << 20;
/// Decoded chunks each decoding thread may have waiting for the caller.
pub const OUT_DEPTH: usize = 2;
/// Chunks (positions only, no decoded data) queued for each decoding
/// thread: enough for a whole 64 MiB segment, so the checking thread can
/// check the next segment while this one is decoded.
const JOB_DEPTH: usize = 512;
/// Decoding threads at most.
pub const MAX_DECODE_THREADS: usize = 4;
/// Below this much segment data to read, [`ReplayThreads::Auto`] does all
/// the work on the caller's thread (`tail`, followers' polls).
pub const PIPELINE_MIN_BYTES: u64 = 4 << 20;

/// How a replay spreads its work over threads. Either way every event is
/// returned in LSN order and only after its segment's chain was checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplayThreads {
    /// [`ReplayThreads::CheckAhead`] when the replay reads at least
    /// 4 MiB of segment data (`PIPELINE_MIN_BYTES`) and the machine has more than one core;
    /// otherwise none. (Decoding threads cost more CPU than they save on a
    /// busy machine: docs/benchmarks.md.)
    #[default]
    Auto,
    /// Everything on the caller's thread.
    None,
    /// A checking thread that maps the next segment and checks its chain
    /// and its events' strict rules (in place) while the caller decodes
    /// this one (the events are decoded, owned and freed on the caller's
    /// thread, without checking them again).
    CheckAhead,
    /// A checking thread and this many decoding threads (clamped to
    /// 1..=4, `MAX_DECODE_THREADS`).
    Decoders(usize),
}

/// One event, with the first LSN of its group-commit block.
struct Item {
    lsn: u64,
    block_lsn: u64,
    ev: Event,
}

/// A segment mapped, and its blocks from `pos` (LSN `lsn`) to its
/// committed end checked against its trusted final digest.
struct CheckedSegment {
    meta: SegmentMeta,
    map: memmap2::Mmap,
    pos: u64,
    lsn: u64,
}

impl CheckedSegment {
    /// Map `meta`, find the block holding LSN `from`, and check the chain
    /// from there to the segment's trusted end.
    fn open(meta: SegmentMeta, from: u64, checked: &Checked) -> Result<CheckedSegment> {
        let map = map_file(&meta.path)?.ok_or_else(|| Error::Corrupt {
            segment: meta.name.clone(),
            offset: 0,
            reason: "segment file is empty".into(),
        })?;
        if (map.len() as u64) < meta.data_len {
            return Err(Error::Corrupt {
                segment: meta.name.clone(),
                offset: map.len() as u64,
                reason: format!(
                    "file is shorter than its committed length {}",
                    meta.data_len
                ),
            });
        }
        let (pos, lsn) = block_holding(&map[..crate::num::usize_of(meta.data_len)], &meta, from);
        let pos = crate::num::u64_of(pos);
        checked.ensure(&meta, &map, pos, lsn)?;
        Ok(CheckedSegment {
            meta,
            map,
            pos,
            lsn,
        })
    }

    /// A walk over all its checked events.
    fn walk(&self) -> EventWalk {
        EventWalk::new(self.pos, self.meta.data_len, self.lsn)
    }

    /// The event of `rec`, strictly decoded.
    fn decode_strict(&self, rec: &EventRecord<'_>) -> Result<Event> {
        crate::codec::decode_stored(rec.payload).map_err(|reason| self.refused(rec, reason))
    }

    /// The error for the event of `rec`, refused for `reason`.
    fn refused(&self, rec: &EventRecord<'_>, reason: StoredEventError) -> Error {
        Error::Corrupt {
            segment: self.meta.name.clone(),
            offset: rec.offset,
            reason: format!("event record does not decode: {reason}"),
        }
    }

    /// The next event of `walk` within `range` (skipping those before
    /// `range.from_lsn` or outside its times), strictly decoded.
    fn next_event(&self, walk: &mut EventWalk, range: &ReplayRange) -> Result<Option<Item>> {
        self.next_event_with(walk, range, |rec| self.decode_strict(rec))
    }

    /// [`CheckedSegment::next_event`], each event decoded by `decode`.
    fn next_event_with(
        &self,
        walk: &mut EventWalk,
        range: &ReplayRange,
        mut decode: impl FnMut(&EventRecord<'_>) -> Result<Event>,
    ) -> Result<Option<Item>> {
        let from = range.from_lsn.unwrap_or(0);
        loop {
            walk.skip_to(&self.map, from);
            let rec = match walk.next_checked(&self.map) {
                None => return Ok(None),
                Some(r) => r.map_err(|d| d.into_error(&self.meta.name))?,
            };
            if rec.lsn < from {
                continue;
            }
            let ev = decode(&rec)?;
            let in_range =
                range.since.is_none_or(|s| ev.ts >= s) && range.until.is_none_or(|u| ev.ts <= u);
            if in_range {
                return Ok(Some(Item {
                    lsn: rec.lsn,
                    block_lsn: rec.block_lsn,
                    ev,
                }));
            }
        }
    }

    /// The walk over the next chunk of `rest` (at most [`CHUNK_EVENTS`]
    /// events or [`CHUNK_BYTES`]), moving `rest` past it; `None` at the end.
    /// Frames are followed by their lengths: they were checked.
    fn next_chunk(&self, rest: &mut EventWalk) -> Option<EventWalk> {
        let end = self.meta.data_len.min(self.map.len() as u64);
        let start = *rest;
        let from = rest.pos();
        if from >= end {
            return None;
        }
        let (mut pos, mut lsn, mut block_lsn) = (from, rest.lsn(), start.block_lsn());
        let mut events = 0;
        while pos < end && events < CHUNK_EVENTS && pos - from < CHUNK_BYTES {
            let at = crate::num::usize_of(pos);
            match peek_frame(&self.map[at..crate::num::usize_of(end)]) {
                Some((REC_EVENT, size)) => {
                    events += 1;
                    lsn += 1;
                    pos += crate::num::u64_of(size);
                }
                Some((REC_COMMIT, size)) => {
                    block_lsn = lsn;
                    pos += crate::num::u64_of(size);
                }
                // Cannot happen after the check; the decode of this chunk
                // reports what is there.
                _ => pos = end,
            }
        }
        *rest = EventWalk::within_block(pos, end, lsn, block_lsn);
        Some(start.until(pos))
    }
}

/// The start of the block holding LSN `want` (or the segment's first
/// block), and the LSN of its first event: frames before it are hopped by
/// their lengths alone (`tail` and followers start near the end of a large
/// active segment). Where the hop cannot go on, it stops: the check that
/// follows reports what is wrong there.
fn block_holding(seg: &[u8], meta: &SegmentMeta, want: u64) -> (usize, u64) {
    let mut pos = HEADER_SIZE;
    let mut lsn = meta.first_lsn;
    let (mut block, mut block_lsn) = (pos, lsn);
    while lsn <= want && pos < seg.len() {
        let Some((rec_type, size)) = peek_frame(&seg[pos..]) else {
            break;
        };
        pos += size;
        match rec_type {
            REC_EVENT => lsn += 1,
            REC_COMMIT if lsn <= want => (block, block_lsn) = (pos, lsn),
            REC_COMMIT => break,
            _ => break,
        }
    }
    (block, block_lsn)
}

/// Iterator over `(lsn, event)`; stops after the first error. Dropping it
/// early stops and joins its threads.
pub struct Replay {
    mode: Mode,
    /// (segment seq, block LSN) of the event returned last.
    last_block: Option<(u64, u64)>,
    done: bool,
}

enum Mode {
    Inline(Inline),
    Ahead(Ahead),
    Piped(Piped),
}

/// Which segments a replay of `range` needs.
fn segments_for(segments: Vec<SegmentMeta>, range: &ReplayRange) -> Vec<SegmentMeta> {
    let from = range.from_lsn.unwrap_or(0);
    segments
        .into_iter()
        .filter(|s| s.count > 0 && s.end_lsn() > from)
        .filter(|s| match (range.since, s.max_ts) {
            (Some(since), Some(max)) => max >= since,
            _ => true,
        })
        .filter(|s| match (range.until, s.min_ts) {
            (Some(until), Some(min)) => min <= until,
            _ => true,
        })
        .collect()
}

/// About how many bytes of segment data a replay from `from` reads.
fn bytes_to_read(segments: &[SegmentMeta], from: u64) -> u64 {
    segments
        .iter()
        .map(|s| {
            let data = s.data_len.saturating_sub(HEADER_SIZE as u64);
            let skipped = from.saturating_sub(s.first_lsn).min(s.count);
            // Events are about the same size within a segment.
            let share = (s.count - skipped) as f64 / s.count.max(1) as f64;
            (data as f64 * share) as u64
        })
        .sum()
}

/// What [`ReplayThreads::Auto`] means for this replay on this machine.
fn resolve(threads: ReplayThreads, segments: &[SegmentMeta], from: u64) -> ReplayThreads {
    match threads {
        ReplayThreads::Auto => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cores < 2 || bytes_to_read(segments, from) < PIPELINE_MIN_BYTES {
                ReplayThreads::None
            } else {
                ReplayThreads::CheckAhead
            }
        }
        ReplayThreads::Decoders(n) => ReplayThreads::Decoders(n.clamp(1, MAX_DECODE_THREADS)),
        other => other,
    }
}

impl Replay {
    pub(crate) fn new(
        segments: Vec<SegmentMeta>,
        range: ReplayRange,
        checked: Arc<Checked>,
        threads: ReplayThreads,
    ) -> Replay {
        let keep = segments_for(segments, &range);
        let mode = match resolve(threads, &keep, range.from_lsn.unwrap_or(0)) {
            ReplayThreads::Decoders(n) => {
                Piped::start(keep.clone(), range, checked.clone(), n).map(Mode::Piped)
            }
            ReplayThreads::CheckAhead => {
                Ahead::start(keep.clone(), range, checked.clone()).map(Mode::Ahead)
            }
            _ => None,
        }
        .unwrap_or_else(|| {
            Mode::Inline(Inline {
                segments: keep.into_iter(),
                current: None,
                range,
                checked,
            })
        });
        Replay {
            mode,
            last_block: None,
            done: false,
        }
    }

    /// The segment and the first LSN of the group-commit block that holds
    /// the event returned last (`None` before the first one): what a copy
    /// of the events needs to recompute the chain's block digests later
    /// (the Parquet export's `block_lsn` column).
    pub fn block_of_last(&self) -> Option<(u64, u64)> {
        self.last_block
    }

    fn step(&mut self) -> Result<Option<(u64, Event)>> {
        let got = match &mut self.mode {
            Mode::Inline(m) => m.step()?,
            Mode::Ahead(m) => m.step()?,
            Mode::Piped(m) => m.step()?,
        };
        Ok(got.map(|(seq, item)| {
            self.last_block = Some((seq, item.block_lsn));
            (item.lsn, item.ev)
        }))
    }
}

impl Iterator for Replay {
    type Item = Result<(u64, Event)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(x)) => Some(Ok(x)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One replayed event, lent by [`Replay::next_lent`]: borrowed from the
/// segment's mapping (its strings not copied out) where the in-place read
/// takes it, else owned (a system event, or a replay whose events are
/// decoded on other threads).
#[derive(Debug)]
pub enum Lent<'a> {
    /// Read in place; the same rules checked as for an owned event.
    View(EventRef<'a>),
    Owned(Event),
}

impl Lent<'_> {
    /// The event as a view: the lent view itself, not a copy (an
    /// `EventRef` is hundreds of bytes; copied per event it was ~1% of an
    /// export's CPU, docs/benchmarks.md, "exp39"), or one made over the
    /// owned event.
    pub fn view(&self) -> std::borrow::Cow<'_, EventRef<'_>> {
        match self {
            Lent::View(v) => std::borrow::Cow::Borrowed(v),
            Lent::Owned(ev) => std::borrow::Cow::Owned(EventRef::of(ev)),
        }
    }

    /// The owned event, if the replay made one.
    pub fn owned(&self) -> Option<&Event> {
        match self {
            Lent::View(_) => None,
            Lent::Owned(ev) => Some(ev),
        }
    }
}

/// One event from [`Replay::next_lent`], with where it lies.
#[derive(Debug)]
pub struct LentItem<'a> {
    pub lsn: u64,
    /// The segment, and the first LSN of the group-commit block, holding
    /// it (as [`Replay::block_of_last`] gives them).
    pub segment: u64,
    pub block_lsn: u64,
    pub event: Lent<'a>,
}

impl Replay {
    /// [`Iterator::next`], the event lent rather than given: on the
    /// caller's thread ([`ReplayThreads::None`], or `Auto` that chose it)
    /// and without `since`/`until`, it is read in place from the
    /// segment's mapping, after the same checks (the segment's chain, the
    /// strict decoder's rules), and no string of it is copied; an event
    /// the in-place read does not take (a system event) and the other
    /// modes give owned events. For copies of every event (the Parquet
    /// export), where the owned event's allocations and copies were a
    /// tenth of the work.
    pub fn next_lent(&mut self) -> Option<Result<LentItem<'_>>> {
        if self.done {
            return None;
        }
        let in_place = matches!(&self.mode, Mode::Inline(m) if m.range.since.is_none() && m.range.until.is_none());
        if !in_place {
            let got = self.next()?;
            let (segment, block_lsn) = self.last_block.unwrap_or_default();
            return Some(got.map(|(lsn, ev)| LentItem {
                lsn,
                segment,
                block_lsn,
                event: Lent::Owned(ev),
            }));
        }
        let Mode::Inline(m) = &mut self.mode else {
            return None;
        };
        let at = match m.advance() {
            Ok(Some(at)) => at,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.last_block = Some((at.seq, at.block_lsn));
        let Mode::Inline(m) = &self.mode else {
            return None;
        };
        match m.lend(&at) {
            Ok(event) => Some(Ok(LentItem {
                lsn: at.lsn,
                segment: at.seq,
                block_lsn: at.block_lsn,
                event,
            })),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Where the next event of an inline replay lies in its current segment.
struct At {
    seq: u64,
    lsn: u64,
    block_lsn: u64,
    /// Its frame's offset, and its body's bytes in the mapping.
    offset: u64,
    body: std::ops::Range<usize>,
}

/// All the work on the caller's thread, one segment after the other.
struct Inline {
    segments: std::vec::IntoIter<SegmentMeta>,
    current: Option<(CheckedSegment, EventWalk)>,
    range: ReplayRange,
    checked: Arc<Checked>,
}

impl Inline {
    fn step(&mut self) -> Result<Option<(u64, Item)>> {
        let from = self.range.from_lsn.unwrap_or(0);
        loop {
            let Some((seg, walk)) =
                Inline::walking(&mut self.current, &mut self.segments, &self.checked, from)?
            else {
                return Ok(None);
            };
            match seg.next_event(walk, &self.range)? {
                Some(item) => return Ok(Some((seg.meta.seq, item))),
                None => self.current = None,
            }
        }
    }

    /// The segment being walked, the next one opened (its chain checked)
    /// if none is; `None` once every segment is done.
    fn walking<'a>(
        current: &'a mut Option<(CheckedSegment, EventWalk)>,
        segments: &mut std::vec::IntoIter<SegmentMeta>,
        checked: &Arc<Checked>,
        from: u64,
    ) -> Result<Option<&'a mut (CheckedSegment, EventWalk)>> {
        if current.is_none() {
            let Some(meta) = segments.next() else {
                return Ok(None);
            };
            let seg = CheckedSegment::open(meta, from, checked)?;
            let walk = seg.walk();
            *current = Some((seg, walk));
        }
        Ok(current.as_mut())
    }

    /// Step to the next event of the replay without decoding it (no
    /// `since`/`until`: [`Replay::next_lent`] leaves those to `step`).
    fn advance(&mut self) -> Result<Option<At>> {
        let from = self.range.from_lsn.unwrap_or(0);
        loop {
            let Some((seg, walk)) =
                Inline::walking(&mut self.current, &mut self.segments, &self.checked, from)?
            else {
                return Ok(None);
            };
            walk.skip_to(&seg.map, from);
            let rec = match walk.next_checked(&seg.map) {
                None => {
                    self.current = None;
                    continue;
                }
                Some(r) => r.map_err(|d| d.into_error(&seg.meta.name))?,
            };
            if rec.lsn < from {
                continue;
            }
            // The body ends its frame.
            let end = crate::num::usize_of(rec.end);
            return Ok(Some(At {
                seq: seg.meta.seq,
                lsn: rec.lsn,
                block_lsn: rec.block_lsn,
                offset: rec.offset,
                body: end - rec.payload.len()..end,
            }));
        }
    }

    /// The event at `at` (found by [`Inline::advance`]), strictly decoded
    /// in place: [`crate::codec::decode_stored`]'s checks and answer,
    /// without copying the event out.
    fn lend(&self, at: &At) -> Result<Lent<'_>> {
        let Some((seg, _)) = self.current.as_ref() else {
            return Err(Error::Corrupt {
                segment: format!("segment {}", at.seq),
                offset: at.offset,
                reason: "the replay lost its segment".into(),
            });
        };
        let body = seg.map.get(at.body.clone()).unwrap_or_default();
        let refused = |reason: StoredEventError| Error::Corrupt {
            segment: seg.meta.name.clone(),
            offset: at.offset,
            reason: format!("event record does not decode: {reason}"),
        };
        match crate::codec::decode_event_ref(body) {
            Ok(view) => {
                crate::event::json::check_incoming_ref(&view)
                    .map_err(|e| refused(StoredEventError::from(e)))?;
                Ok(Lent::View(view))
            }
            Err(_) => crate::codec::decode_stored_owned(body)
                .map(Lent::Owned)
                .map_err(refused),
        }
    }
}

/// The caller decodes; a checking thread maps the segments ahead of it
/// and checks their chains (at most [`CHECK_AHEAD_SEGMENTS`] waiting), and
/// hands each on as soon as its chain is checked, then checks its events
/// in place, telling the caller how far it got every [`CHECK_CHUNK_EVENTS`]
/// events: the caller follows right behind and decodes (without the
/// checks) only events already checked.
struct Ahead {
    checked: Option<Receiver<Result<AheadSegment>>>,
    current: Option<AheadSegment>,
    range: ReplayRange,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Chain-checked segments waiting for the caller (mapped, not read into
/// memory).
const CHECK_AHEAD_SEGMENTS: usize = 1;
/// Events checked between two reports of the checking thread's progress.
const CHECK_CHUNK_EVENTS: usize = 1024;

/// How far the checking thread got with a segment's events: every event
/// before offset `upto` passed the strict checks, but `first_bad`'s (the
/// last report of a segment with a refused event, `upto` its offset).
struct Progress {
    upto: u64,
    first_bad: Option<(u64, StoredEventError)>,
}

/// A chain-checked segment on the caller's side, with its walk and how
/// far its events were checked.
struct AheadSegment {
    seg: Arc<CheckedSegment>,
    walk: EventWalk,
    progress: Receiver<Progress>,
    known: Progress,
}

impl Progress {
    /// Read on from `progress` until the event at `offset` was checked (or
    /// the reports end).
    fn wait_for(&mut self, offset: u64, progress: &Receiver<Progress>) {
        while offset >= self.upto && self.first_bad.is_none() {
            match progress.recv() {
                Ok(p) => *self = p,
                Err(_) => return,
            }
        }
    }

    /// The event of `rec`: plainly decoded when its strict checks passed on
    /// the checking thread, refused with their error when they failed, and
    /// strictly decoded here when no report covers it (the checking thread
    /// stopped).
    fn decode(
        &mut self,
        seg: &CheckedSegment,
        rec: &EventRecord<'_>,
        progress: &Receiver<Progress>,
    ) -> Result<Event> {
        self.wait_for(rec.offset, progress);
        match &self.first_bad {
            Some((at, e)) if *at == rec.offset => return Err(seg.refused(rec, e.clone())),
            _ => {}
        }
        if rec.offset < self.upto {
            crate::codec::decode_event_viewed(rec.payload)
                .map_err(|e| seg.refused(rec, StoredEventError::from(e)))
        } else {
            seg.decode_strict(rec)
        }
    }
}

/// On the checking thread: the strict decoder's checks on every event of
/// `seg` from LSN `from`, in place ([`crate::codec::check_stored_in_place`]),
/// reported to `tx` every [`CHECK_CHUNK_EVENTS`] events. False when the
/// checks found a refused event or the caller is gone (the thread then
/// stops). Damage in the walk ends the reports there: the caller's walk
/// stops at the same frame and reports it.
fn check_events(seg: &CheckedSegment, from: u64, tx: &Sender<Progress>) -> bool {
    let mut walk = seg.walk();
    walk.skip_to(&seg.map, from);
    let mut since_report = 0usize;
    loop {
        let rec = match walk.next_checked(&seg.map) {
            Some(Ok(rec)) => rec,
            end => {
                let upto = if end.is_none() { u64::MAX } else { walk.pos() };
                let report = Progress {
                    upto,
                    first_bad: None,
                };
                return tx.send(report).is_ok();
            }
        };
        if rec.lsn < from {
            continue;
        }
        if let Err(e) = crate::codec::check_stored_in_place(rec.payload) {
            let report = Progress {
                upto: rec.offset,
                first_bad: Some((rec.offset, e)),
            };
            let _ = tx.send(report);
            return false;
        }
        since_report += 1;
        if since_report == CHECK_CHUNK_EVENTS {
            since_report = 0;
            let report = Progress {
                upto: rec.end,
                first_bad: None,
            };
            if tx.send(report).is_err() {
                return false;
            }
        }
    }
}

impl Ahead {
    fn start(
        segments: Vec<SegmentMeta>,
        range: ReplayRange,
        checked: Arc<Checked>,
    ) -> Option<Ahead> {
        let (tx, rx) = bounded(CHECK_AHEAD_SEGMENTS);
        let from = range.from_lsn.unwrap_or(0);
        let thread = std::thread::Builder::new()
            .name("auditlog-check-ahead".into())
            .spawn(move || {
                for meta in segments {
                    let seg = match CheckedSegment::open(meta, from, &checked) {
                        Ok(seg) => Arc::new(seg),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    // Reports are small and at most one per chunk of the
                    // segment: unbounded, so the checks never wait.
                    let (progress_tx, progress) = crossbeam_channel::unbounded();
                    let ahead = AheadSegment {
                        walk: seg.walk(),
                        seg: seg.clone(),
                        progress,
                        known: Progress {
                            upto: 0,
                            first_bad: None,
                        },
                    };
                    if tx.send(Ok(ahead)).is_err() || !check_events(&seg, from, &progress_tx) {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Ahead {
            checked: Some(rx),
            current: None,
            range,
            thread: Some(thread),
        })
    }

    fn step(&mut self) -> Result<Option<(u64, Item)>> {
        loop {
            if self.current.is_none() {
                let next = self.checked.as_ref().map(|rx| rx.recv());
                match next {
                    Some(Ok(seg)) => self.current = Some(seg?),
                    // The thread is done (or panicked: a bug that would
                    // have panicked here; go on as if it had).
                    _ => {
                        self.checked = None;
                        if let Some(Err(p)) = self.thread.take().map(|h| h.join()) {
                            std::panic::resume_unwind(p);
                        }
                        return Ok(None);
                    }
                }
            }
            let Some(AheadSegment {
                seg,
                walk,
                progress,
                known,
            }) = self.current.as_mut()
            else {
                return Ok(None);
            };
            let seg: &CheckedSegment = seg;
            match seg.next_event_with(walk, &self.range, |rec| known.decode(seg, rec, progress))? {
                Some(item) => return Ok(Some((seg.meta.seq, item))),
                None => self.current = None,
            }
        }
    }
}

impl Drop for Ahead {
    /// Stop early: the thread stops at its next report or hand-over.
    fn drop(&mut self) {
        self.checked = None;
        self.current = None;
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// What the checking thread deals to a decoding thread.
enum Job {
    Chunk {
        seg: Arc<CheckedSegment>,
        walk: EventWalk,
    },
    Failed(Error),
    End,
}

/// What a decoding thread hands back, in its turn.
enum Done {
    /// A chunk's events, and the error that ended it early, if any.
    Chunk {
        seq: u64,
        items: VecDeque<Item>,
        then: Option<Error>,
    },
    Failed(Error),
    End,
}

/// The pipeline: a checking thread, `outs.len()` decoding threads, and the
/// caller taking decoded chunks back in the order they were dealt.
struct Piped {
    outs: Vec<Receiver<Done>>,
    /// Whose turn it is (chunk `k` went to thread `k % outs.len()`).
    turn: usize,
    chunk: VecDeque<Item>,
    /// Which thread decoded `chunk`.
    chunk_of: usize,
    /// Emptied chunks back to the thread that filled them: a chunk is
    /// large (about 100 bytes an event before the strings), and a fresh one
    /// each time costs page faults and the allocator's locks.
    empties: Vec<Sender<VecDeque<Item>>>,
    seq: u64,
    /// The error after the events of `chunk`.
    then: Option<Error>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Piped {
    /// Start the threads; `None` when they cannot be spawned (the caller
    /// then works alone).
    fn start(
        segments: Vec<SegmentMeta>,
        range: ReplayRange,
        checked: Arc<Checked>,
        decoders: usize,
    ) -> Option<Piped> {
        let mut jobs = Vec::with_capacity(decoders);
        let mut outs = Vec::with_capacity(decoders);
        let mut empties = Vec::with_capacity(decoders);
        let mut threads = Vec::with_capacity(decoders + 1);
        for _ in 0..decoders {
            let (job_tx, job_rx) = bounded::<Job>(JOB_DEPTH);
            let (out_tx, out_rx) = bounded::<Done>(OUT_DEPTH);
            let (empty_tx, empty_rx) = bounded::<VecDeque<Item>>(OUT_DEPTH + 1);
            let spawned = std::thread::Builder::new()
                .name("auditlog-decode".into())
                .spawn(move || decode_chunks(&job_rx, &out_tx, &empty_rx, &range));
            // Dropping `jobs` ends the threads already started.
            threads.push(spawned.ok()?);
            jobs.push(job_tx);
            outs.push(out_rx);
            empties.push(empty_tx);
        }
        let spawned = std::thread::Builder::new()
            .name("auditlog-check-ahead".into())
            .spawn(move || check_and_deal(segments, range, &checked, &jobs));
        threads.push(spawned.ok()?);
        Some(Piped {
            outs,
            turn: 0,
            chunk: VecDeque::new(),
            chunk_of: 0,
            empties,
            seq: 0,
            then: None,
            threads,
        })
    }

    fn step(&mut self) -> Result<Option<(u64, Item)>> {
        loop {
            if let Some(item) = self.chunk.pop_front() {
                return Ok(Some((self.seq, item)));
            }
            if let Some(e) = self.then.take() {
                return Err(e);
            }
            let n = self.outs.len();
            let Some(rx) = self.outs.get(self.turn % n.max(1)) else {
                return Ok(None);
            };
            match rx.recv() {
                Ok(Done::Chunk { seq, items, then }) => {
                    let empty = std::mem::replace(&mut self.chunk, items);
                    if let Some(back) = self.empties.get(self.chunk_of) {
                        // A full queue or a thread gone: drop it here.
                        let _ = back.try_send(empty);
                    }
                    self.chunk_of = self.turn % n;
                    self.turn += 1;
                    self.seq = seq;
                    self.then = then;
                }
                Ok(Done::Failed(e)) => return Err(e),
                Ok(Done::End) => return Ok(None),
                // A thread ended without its turn's answer: it panicked
                // (a bug that would have panicked here: go on as if it had).
                Err(_) => {
                    self.outs.clear();
                    for h in self.threads.drain(..) {
                        if let Err(p) = h.join() {
                            std::panic::resume_unwind(p);
                        }
                    }
                    return Err(Error::Io {
                        context: "replay".into(),
                        source: std::io::Error::other("a replay thread ended early"),
                    });
                }
            }
        }
    }
}

impl Drop for Piped {
    /// Stop early: with the caller's ends of the channels gone, decoding
    /// threads stop at their next hand-back and the checking thread at its
    /// next deal (after the segment it is checking).
    fn drop(&mut self) {
        self.outs.clear();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// The checking thread: check each segment whole, then deal its chunks to
/// the decoding threads in turn; a failed check is dealt in its turn too,
/// so the caller gets every event before it, then the error.
fn check_and_deal(
    segments: Vec<SegmentMeta>,
    range: ReplayRange,
    checked: &Checked,
    jobs: &[Sender<Job>],
) {
    let from = range.from_lsn.unwrap_or(0);
    let mut turn = 0usize;
    let mut deal = |job: Job| {
        let sent = jobs
            .get(turn % jobs.len().max(1))
            .is_some_and(|tx| tx.send(job).is_ok());
        turn += 1;
        sent
    };
    for meta in segments {
        let seg = match CheckedSegment::open(meta, from, checked) {
            Ok(seg) => Arc::new(seg),
            Err(e) => {
                deal(Job::Failed(e));
                return;
            }
        };
        let mut rest = seg.walk();
        while let Some(walk) = seg.next_chunk(&mut rest) {
            if !deal(Job::Chunk {
                seg: seg.clone(),
                walk,
            }) {
                return;
            }
        }
    }
    deal(Job::End);
}

/// A decoding thread: decode each chunk dealt to it, hand it back. A chunk
/// that fails to decode is handed back with the events before the failure,
/// then the error.
fn decode_chunks(
    jobs: &Receiver<Job>,
    out: &Sender<Done>,
    empties: &Receiver<VecDeque<Item>>,
    range: &ReplayRange,
) {
    for job in jobs {
        let done = match job {
            Job::Chunk { seg, mut walk } => {
                let mut items = empties
                    .try_recv()
                    .unwrap_or_else(|_| VecDeque::with_capacity(CHUNK_EVENTS));
                let then = loop {
                    match seg.next_event(&mut walk, range) {
                        Ok(Some(item)) => items.push_back(item),
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                };
                Done::Chunk {
                    seq: seg.meta.seq,
                    items,
                    then,
                }
            }
            Job::Failed(e) => Done::Failed(e),
            Job::End => Done::End,
        };
        let last = !matches!(done, Done::Chunk { then: None, .. });
        if out.send(done).is_err() || last {
            return;
        }
    }
}
