//! The read-only query engine: the query set of the command line and the
//! gateway API (docs/contract.md, "The run view" and "The command line"),
//! answered from the index images.
//!
//! Resolution rules (docs/queries.md):
//! - a run is defined by the first `run_started` of its id in log order
//!   among stored segments: an image's start is valid unless an older,
//!   still stored segment (or an older chunk of the active one) also
//!   started the id (`shadow_seq`);
//! - its finish is the first `run_finished` after that start in log order:
//!   the local finish of the start's image, or else the first "foreign"
//!   finish with a higher LSN (searched in the FINS sections of the start's
//!   image and the later ones, on disk: nothing per run is kept in memory);
//! - lists merge the images' posting lists newest first (started_at desc,
//!   id desc) and skip images by their time range.

mod amend;
mod asof;
mod background;
mod calls;
mod check_ahead;
mod engine;
mod scan_ahead;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

pub use crate::index::ProgressFn;
use amend::{drop_replaced_logs, Item};
pub use asof::RunAsOf;
pub use background::{BackgroundIndexer, IndexOnSeal};
pub use calls::{Call, CallCursor, CallFilter, CallKey, CallOrder, CallPage, CallSource};
use check_ahead::CheckAhead;
use engine::FinRef;
pub(crate) use engine::{shadow_in, Shadows};
pub use engine::{Engine, EngineStats, View};

use crate::codec;
use crate::error::{Error, Result};
use crate::event::json::{json_f64, json_string};
use crate::event::time::format_rfc3339;
use crate::event::{Event, EventData, Micros};
use crate::frame::read_frame;
use crate::index::{
    Image, LazyRun, List, RunHash, RunRec, K_CALLER, K_CHANNEL, K_PARENT, K_SKILL, K_STATUS, NONE,
    RUNNING,
};
use crate::view::fold::finish_follows;
pub use crate::view::Anomalies;
use crate::view::{Run, RunLogEntry, DRY_RUN_STATUS};

/// [`Run::fold_ref`] of a start's and a finish's bodies read in place,
/// when both decode in place and pass the stored-event rules
/// (`codec::decode_stored` would then return them as they are) and they
/// are a start and a finish; `None` otherwise (the caller decodes them
/// the owned way, for its answer or its error).
fn fold_in_place(start: &[u8], fin: Option<&[u8]>) -> Option<Run> {
    let checked = |body| {
        let ev = codec::decode_event_ref(body).ok()?;
        crate::event::json::check_incoming_ref(&ev).ok()?;
        Some(ev)
    };
    let start = checked(start)?;
    let fin = match fin {
        Some(b) => Some(checked(b)?),
        None => None,
    };
    if fin
        .as_ref()
        .is_some_and(|f| !matches!(f.data, crate::event::borrowed::DataRef::RunFinished(_)))
    {
        return None;
    }
    Run::fold_ref(&start, fin.as_ref())
}

/// Runs of a list whose frames are touched together (`View::touch_frames`).
const TOUCH_AHEAD: usize = 16;
/// Cache lines touched per frame (an event frame is a few hundred bytes).
const TOUCH_LINES: usize = 4;

/// Filters of `runs` and `count` (docs/contract.md, "The command line"),
/// combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub skill: Option<String>,
    pub caller: Option<String>,
    pub channel: Option<String>,
    /// "running" finds unfinished runs.
    pub status: Option<String>,
    pub parent: Option<String>,
    pub top_level: bool,
    /// started_at >= since.
    pub since: Option<Micros>,
    /// started_at <= until.
    pub until: Option<Micros>,
    pub include_dry_run: bool,
}

/// A page of a list: skip `offset` matches, return at most `limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<usize>,
    pub offset: usize,
}

impl Page {
    pub fn all() -> Page {
        Page::default()
    }
    pub fn new(limit: usize, offset: usize) -> Page {
        Page {
            limit: Some(limit),
            offset,
        }
    }
}

/// One group of the tool-error aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorGroup {
    pub channel_id: String,
    pub tool: String,
    pub error_type: String,
    pub count: u64,
    pub first_ts: Micros,
    pub last_ts: Micros,
    pub avg_duration_ms: Option<f64>,
    /// The 10 smallest distinct caller ids, sorted.
    pub caller_ids: Vec<String>,
    /// The 10 smallest distinct run ids, sorted.
    pub run_ids: Vec<String>,
}

/// Distinct values kept per error group.
pub const ERROR_GROUP_IDS: usize = 10;

impl ErrorGroup {
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push_str("{\"channel_id\":");
        json_string(&self.channel_id, &mut s);
        s.push_str(",\"tool\":");
        json_string(&self.tool, &mut s);
        s.push_str(",\"error_type\":");
        json_string(&self.error_type, &mut s);
        s.push_str(&format!(",\"count\":{},\"first_ts\":\"", self.count));
        format_rfc3339(self.first_ts, &mut s);
        s.push_str("\",\"last_ts\":\"");
        format_rfc3339(self.last_ts, &mut s);
        s.push_str("\",\"avg_duration_ms\":");
        match self.avg_duration_ms {
            Some(v) => json_f64(v, &mut s),
            None => s.push_str("null"),
        }
        for (key, list) in [("caller_ids", &self.caller_ids), ("run_ids", &self.run_ids)] {
            s.push_str(&format!(",\"{key}\":["));
            for (i, v) in list.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json_string(v, &mut s);
            }
            s.push(']');
        }
        s.push('}');
        s
    }
}

/// Which filter key a candidate list's membership already proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implied {
    Nothing,
    Skill,
    Caller,
    Channel,
    Parent,
    Status,
    /// Nothing, but every run of the list lacks a local finish (the
    /// "running" list): a count by a finished status takes those runs
    /// from the finishes' side instead (see `count_foreign_finishes`).
    Unfinished,
}

/// A finish as resolved for a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fin {
    pub seq: u64,
    pub off: u64,
    pub ts: Micros,
}

/// A run start in the view: image index and RUNS position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handle {
    pub src: usize,
    pub pos: u32,
}

fn is_failed(status: &[u8]) -> bool {
    status == b"error" || status == b"timeout"
}

struct Stream {
    src: usize,
    list: List,
    i: u32,
}

#[derive(PartialEq, Eq)]
struct Head<'a> {
    ts: Micros,
    id: &'a [u8],
    stream: usize,
}

impl Ord for Head<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.ts
            .cmp(&o.ts)
            .then_with(|| self.id.cmp(o.id))
            .then_with(|| o.stream.cmp(&self.stream))
    }
}
impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Candidates of several streams merged newest first (started_at desc,
/// id desc).
pub(crate) struct Merge<'v, 'a> {
    view: &'v View<'a>,
    streams: Vec<Stream>,
    heap: BinaryHeap<Head<'a>>,
}

impl<'v, 'a> Merge<'v, 'a> {
    fn new(view: &'v View<'a>, streams: Vec<Stream>) -> Merge<'v, 'a> {
        let mut m = Merge {
            view,
            streams,
            heap: BinaryHeap::new(),
        };
        for s in 0..m.streams.len() {
            m.push(s);
        }
        m
    }

    fn push(&mut self, s: usize) {
        let st = &self.streams[s];
        if st.i >= st.list.len() {
            return;
        }
        let img: &'a Image = self.view.srcs[st.src].img;
        let pos = img.at(&st.list, st.i);
        let (ts, id) = img.run_key(pos);
        self.heap.push(Head { ts, id, stream: s });
    }
}

impl Iterator for Merge<'_, '_> {
    type Item = Handle;
    fn next(&mut self) -> Option<Handle> {
        let h = self.heap.pop()?;
        let st = &mut self.streams[h.stream];
        let img = self.view.srcs[st.src].img;
        let pos = img.at(&st.list, st.i);
        let src = st.src;
        st.i += 1;
        self.push(h.stream);
        Some(Handle { src, pos })
    }
}

impl<'a> View<'a> {
    pub(crate) fn run(&self, h: Handle) -> RunRec<'a> {
        self.srcs[h.src].img.run(h.pos)
    }

    /// The first finish after the start of `r` (in image `src`).
    pub(crate) fn finish_of(&self, src: usize, r: &LazyRun<'a>) -> Option<Fin> {
        // Images cover disjoint LSN ranges in order, so a finish in
        // another image comes after every event of this one: a local
        // finish is always the first, and the FINS sections (a search per
        // later image) are only asked for runs without one.
        if r.has_local_finish() {
            return Some(Fin {
                seq: self.srcs[src].seq,
                off: r.finish_off(),
                ts: r.finished_at(),
            });
        }
        self.foreign_after(r.id(), r.start_lsn()).map(|f| Fin {
            seq: f.seq,
            off: f.off,
            ts: f.ts,
        })
    }

    /// The first finish of `id` after LSN `start_lsn` that some image's
    /// FINS section holds. Images cover ascending LSN ranges, and FINS
    /// holds the first finish of an id per image: the first image from
    /// the one holding `start_lsn` on with a following one has it.
    pub(crate) fn foreign_after(&self, id: &[u8], start_lsn: u64) -> Option<FinRef<'a>> {
        let from = self
            .srcs
            .partition_point(|s| s.img.header.end_lsn <= start_lsn);
        let h = RunHash::of(id);
        self.srcs.get(from..)?.iter().find_map(|s| {
            let img: &'a Image = s.img;
            img.find_fin(id, h)
                .filter(|f| finish_follows(start_lsn, f.lsn))
                .map(|f| FinRef {
                    seq: s.seq,
                    lsn: f.lsn,
                    off: f.off,
                    ts: f.ts,
                    status: f.status,
                })
        })
    }

    /// A run's status: its local finish's, else the first foreign
    /// finish's after its start (see `finish_of`), else running.
    fn status_of(&self, r: &LazyRun<'a>) -> &'a [u8] {
        if r.has_local_finish() {
            return r.status();
        }
        self.foreign_after(r.id(), r.start_lsn())
            .map_or(RUNNING, |f| f.status)
    }

    pub(crate) fn lazy(&self, h: Handle) -> LazyRun<'a> {
        self.srcs[h.src].img.run_lazy(h.pos)
    }

    /// Cheap fields first; strings only for the filter's own keys.
    fn matches(&self, r: &LazyRun<'a>, f: &Filter) -> bool {
        self.matches_given(r, f, Implied::Nothing)
    }

    /// [`View::matches`] for a run whose `implied` key is known to match.
    fn matches_given(&self, r: &LazyRun<'a>, f: &Filter, implied: Implied) -> bool {
        let shadow = r.shadow_seq();
        if !(shadow == NONE || shadow < self.first_seq) || (r.dry_run() && !f.include_dry_run) {
            return false;
        }
        // Neither check reads a string when it need not: the id only if
        // some run is amended, the status only if the list does not
        // already prove it (a count by status reads no string per run).
        if self.any_amended() && self.amended(r.id()) {
            return false;
        }
        if !f.include_dry_run {
            let dry = match (&f.status, implied) {
                (Some(s), Implied::Status) => s == DRY_RUN_STATUS,
                _ => self.dry_by_status(r),
            };
            if dry {
                return false;
            }
        }
        let at = r.started_at();
        if f.since.is_some_and(|s| at < s) || f.until.is_some_and(|u| at > u) {
            return false;
        }
        if f.top_level && !r.parent_is_empty() {
            return false;
        }
        let eq = |key: Implied, want: &Option<String>, have: &dyn Fn() -> &'a [u8]| {
            key == implied || want.as_ref().is_none_or(|w| w.as_bytes() == have())
        };
        if !(eq(Implied::Skill, &f.skill, &|| r.skill())
            && eq(Implied::Caller, &f.caller, &|| r.caller())
            && eq(Implied::Channel, &f.channel, &|| r.channel())
            && eq(Implied::Parent, &f.parent, &|| r.parent()))
        {
            return false;
        }
        match &f.status {
            None => true,
            Some(_) if implied == Implied::Status => true,
            Some(s) => self.status_of(r) == s.as_bytes(),
        }
    }

    /// The candidate lists of image `src` for a filter (the shortest
    /// posting list among the filter's keys), narrowed to its time range.
    fn candidates(&self, src: usize, f: &Filter) -> Vec<List> {
        self.candidate_lists(src, f)
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    }

    /// [`View::candidates`], each list with the filter key its membership
    /// already proves (a posting list holds exactly the runs with that
    /// value), so a count need not read that string again per run.
    fn candidate_lists(&self, src: usize, f: &Filter) -> Vec<(List, Implied)> {
        let img = self.srcs[src].img;
        let h = &img.header;
        if f.since.is_some_and(|s| h.max_ts < s) || f.until.is_some_and(|u| h.min_ts > u) {
            return Vec::new();
        }
        let mut best: Vec<(List, Implied)> = vec![(img.all(), Implied::Nothing)];
        let mut best_len = img.all().len();
        let mut consider = |lists: Vec<(List, Implied)>| {
            let n: u32 = lists.iter().map(|(l, _)| l.len()).sum();
            if n < best_len {
                best_len = n;
                best = lists;
            }
        };
        if let Some(p) = &f.parent {
            consider(vec![(img.posting(K_PARENT, p.as_bytes()), Implied::Parent)]);
        }
        if f.top_level {
            consider(vec![(img.posting(K_PARENT, b""), Implied::Nothing)]);
        }
        for (kind, v, implied) in [
            (K_SKILL, &f.skill, Implied::Skill),
            (K_CALLER, &f.caller, Implied::Caller),
            (K_CHANNEL, &f.channel, Implied::Channel),
        ] {
            if let Some(v) = v {
                consider(vec![(img.posting(kind, v.as_bytes()), implied)]);
            }
        }
        if let Some(s) = &f.status {
            // A run's status is its local one unless it has no local
            // finish (then a later image may hold it): the local-status
            // list proves the status (a local finish always comes first),
            // the running list does not.
            let running = img.posting(K_STATUS, RUNNING);
            if s.as_bytes() == RUNNING {
                consider(vec![(running, Implied::Nothing)]);
            } else {
                consider(vec![
                    (img.posting(K_STATUS, s.as_bytes()), Implied::Status),
                    (running, Implied::Unfinished),
                ]);
            }
        }
        best.into_iter()
            .map(|(l, i)| (img.narrow(l, f.since, f.until), i))
            .filter(|(l, _)| !l.is_empty())
            .collect()
    }

    fn streams(&self, f: &Filter) -> Vec<Stream> {
        let mut out = Vec::new();
        for src in 0..self.srcs.len() {
            for list in self.candidates(src, f) {
                out.push(Stream { src, list, i: 0 });
            }
        }
        out
    }

    /// Runs matching `f`, newest first, as handles.
    pub(crate) fn matching<'v>(&'v self, f: &'v Filter) -> impl Iterator<Item = Handle> + 'v {
        Merge::new(self, self.streams(f)).filter(move |h| self.matches(&self.lazy(*h), f))
    }

    /// How many runs match `f`.
    ///
    /// With a finished status, a run without a local finish matches only
    /// through its first foreign finish: those runs are counted from the
    /// finishes' side (each image's FINS records of that status, see
    /// `View::count_foreign_finishes`) rather than by searching every
    /// later image for each unfinished run.
    pub fn count(&self, f: &Filter) -> Result<u64> {
        let mut n = self.overlay(f)?.len() as u64;
        let finished_status = f
            .status
            .as_deref()
            .map(str::as_bytes)
            .filter(|s| *s != RUNNING);
        for src in 0..self.srcs.len() {
            let img = self.srcs[src].img;
            for (list, implied) in self.candidate_lists(src, f) {
                if finished_status.is_some() && implied == Implied::Unfinished {
                    continue;
                }
                if let Some(k) = self.count_from_summary(src, f, &list, implied) {
                    n += u64::from(k);
                    continue;
                }
                for i in 0..list.len() {
                    let r = img.run_lazy(img.at(&list, i));
                    if finished_status.is_some() && !r.has_local_finish() {
                        continue;
                    }
                    if self.matches_given(&r, f, implied) {
                        n += 1;
                    }
                }
            }
        }
        if let Some(status) = finished_status {
            n += self.count_foreign_finishes(f, status);
        }
        Ok(n)
    }

    /// How many runs of a status posting list match `f`, from the list's
    /// KEYS summary alone, when that is the whole answer: the filter asks
    /// the status and nothing else the summary cannot tell (no other key,
    /// a time range covering the whole list, no amending events), and no
    /// listed start is shadowed (whether a shadowed start defines its run
    /// depends on what retention dropped). None: visit the runs.
    fn count_from_summary(
        &self,
        src: usize,
        f: &Filter,
        list: &List,
        implied: Implied,
    ) -> Option<u32> {
        let status = f.status.as_deref()?;
        if implied != Implied::Status
            || f.skill.is_some()
            || f.caller.is_some()
            || f.channel.is_some()
            || f.parent.is_some()
            || f.top_level
            || self.any_amended()
        {
            return None;
        }
        let sum = self.srcs[src]
            .img
            .posting_summary(K_STATUS, status.as_bytes())?;
        if sum.len != list.len() || sum.shadowed != 0 {
            return None;
        }
        Some(if f.include_dry_run {
            sum.len
        } else if status == DRY_RUN_STATUS {
            0
        } else {
            sum.plain
        })
    }

    /// Runs without a local finish whose first finish after their start
    /// (in a later image) has `status` and that match `f`: found from each
    /// image's FINS records of that status, whose run is located through
    /// the record's start pointer.
    fn count_foreign_finishes(&self, f: &Filter, status: &[u8]) -> u64 {
        let mut n = 0;
        for (b, s) in self.srcs.iter().enumerate() {
            let img: &'a Image = s.img;
            for i in 0..img.n_fins() {
                if img.fin_status(i) != status {
                    continue;
                }
                let fin = img.fin(i);
                let Some(h) = self.start_of_fin(&fin) else {
                    continue;
                };
                let r = self.lazy(h);
                if r.has_local_finish()
                    || !finish_follows(r.start_lsn(), fin.lsn)
                    || !self.first_foreign_is(h, &r, b, fin.id)
                {
                    continue;
                }
                if self.matches_given(&r, f, Implied::Status) {
                    n += 1;
                }
            }
        }
        n
    }

    /// The defining start of a FINS record's run: through the record's
    /// pointer to the nearest older start when that start defines the run
    /// (the common case), else by searching the images.
    fn start_of_fin(&self, fin: &crate::index::FinRec<'_>) -> Option<Handle> {
        if fin.start_seq == NONE || fin.start_seq < self.first_seq {
            // No start before it, or only in segments retention dropped.
            return None;
        }
        let from = self.srcs.partition_point(|s| s.seq < fin.start_seq);
        let pointed = self.srcs[from..]
            .iter()
            .take_while(|s| s.seq == fin.start_seq)
            .position(|s| fin.start_pos < s.img.n_runs() && s.img.run_id(fin.start_pos) == fin.id)
            .map(|k| Handle {
                src: from + k,
                pos: fin.start_pos,
            });
        match pointed {
            Some(h) if self.defines_run(&self.lazy(h)) => Some(h),
            _ => self.find(fin.id),
        }
    }

    fn defines_run(&self, r: &LazyRun<'_>) -> bool {
        let shadow = r.shadow_seq();
        shadow == NONE || shadow < self.first_seq
    }

    /// Whether no image from the start's (`h`, record `r`) up to image `b`
    /// (exclusive) holds a finish of `id` after the start, so that image
    /// `b`'s finish is the first foreign one.
    fn first_foreign_is(&self, h: Handle, r: &LazyRun<'_>, b: usize, id: &[u8]) -> bool {
        if h.src >= b {
            return false;
        }
        // The start's image lists the id in FINS only if that start was
        // shadowed when the image was built.
        let from = if r.shadow_seq() == NONE {
            h.src + 1
        } else {
            h.src
        };
        let hash = RunHash::of(id);
        let start_lsn = r.start_lsn();
        !self.srcs[from..b].iter().any(|s| {
            s.img
                .find_fin(id, hash)
                .is_some_and(|x| finish_follows(start_lsn, x.lsn))
        })
    }

    /// Runs matching `f`, newest first, one page.
    pub fn list(&self, f: &Filter, page: Page) -> Result<Vec<Run>> {
        let over = self.overlay(f)?;
        let it = self.with_overlay(self.matching(f), &over).skip(page.offset);
        let items: Vec<Item<'_>> = match page.limit {
            Some(l) => it.take(l).collect(),
            None => it.collect(),
        };
        // Sized once: collecting `Result`s grows the vector by doubling
        // (no size hint survives the short-circuit), and each growth
        // copies every run view made so far.
        let mut runs = Vec::with_capacity(items.len());
        let make = |runs: &mut Vec<Run>, at: &CheckAhead| {
            for (c, chunk) in items.chunks(TOUCH_AHEAD).enumerate() {
                at.reached(c * TOUCH_AHEAD);
                self.touch_frames(chunk);
                for i in chunk {
                    runs.push(self.item_run(*i)?);
                }
            }
            Ok(())
        };
        self.with_check_ahead(&items, |at| {
            let r = make(&mut runs, at);
            at.reached(usize::MAX);
            r
        })?;
        Ok(runs)
    }

    /// Read the first cache lines of the start and local finish frames of
    /// a few runs at once, before they are materialized one by one: the
    /// frames of a list's runs lie far apart in the segments, and each
    /// run's first read of them waits for memory. Loads issued together
    /// wait together (the processor keeps many misses in flight), where
    /// the materialization, one run at a time, would wait for each in turn.
    /// Reads nothing it does not bound by the segment; answers nothing.
    fn touch_frames(&self, items: &[Item<'_>]) {
        let mut acc = 0u8;
        for i in items {
            let Item::Indexed(h) = i else { continue };
            let r = self.lazy(*h);
            let seg = self.srcs[h.src].seg;
            let mut touch = |off: u64| {
                for line in 0..TOUCH_LINES {
                    let at = usize::try_from(off).unwrap_or(usize::MAX);
                    if let Some(b) = seg.get(at.saturating_add(line * 64)) {
                        acc ^= *b;
                    }
                }
            };
            touch(r.start_off());
            if r.has_local_finish() {
                touch(r.finish_off());
            }
        }
        std::hint::black_box(acc);
    }

    /// The image of segment `seq` that covers segment offset `off`.
    fn src_of(&self, seq: u64, off: u64) -> Option<&engine::Src<'a>> {
        // The images are in (segment, offset) order and cover disjoint
        // spans: the first one not wholly before (seq, off) is the only
        // candidate.
        let i = self
            .srcs
            .partition_point(|s| (s.seq, s.img.header.end_off) <= (seq, off));
        self.srcs
            .get(i)
            .filter(|s| s.seq == seq && s.img.header.start_off <= off && off < s.img.header.end_off)
    }

    /// Decode the event whose frame starts at `off` of segment `seq`, once
    /// its block was checked against the chain (docs/integrity.md).
    pub(crate) fn event_at(&self, seq: u64, off: u64) -> Result<Event> {
        let body = self.body_at(seq, off)?;
        codec::decode_stored(body).map_err(|e| self.corrupt_at(seq, off, e.to_string()))
    }

    /// The error for the stored event at `off` of segment `seq`.
    fn corrupt_at(&self, seq: u64, off: u64, reason: String) -> Error {
        Error::Corrupt {
            segment: self
                .src_of(seq, off)
                .map_or_else(|| format!("segment {seq}"), |s| s.name.to_string()),
            offset: off,
            reason,
        }
    }

    /// Check the block of `src`'s segment that holds offset `off` against
    /// the chain, once per process (docs/integrity.md).
    fn check_block_of(
        &self,
        src: &engine::Src<'a>,
        off: u64,
    ) -> std::result::Result<(), crate::segment::Damage> {
        // A block not checked yet through this image may have been
        // checked by a replay through the same reader (the Parquet
        // export reads each segment so, then its runs here): if the
        // reader's checked range of the segment holds every block the
        // image covers, ending at the image's own end digest, each byte
        // read there is one the chain already proved (docs/integrity.md).
        let covered = |h: &crate::index::IndexHeader| {
            self.checked
                .get(src.seq)
                .is_some_and(|r| r.covers(h.start_off, h.end_off, h.digest))
        };
        src.img.check_block_unless(src.seg, off, covered)
    }

    /// The encoded body of the event whose frame starts at `off` of
    /// segment `seq`, once its block was checked against the chain
    /// (docs/integrity.md); not yet decoded nor checked by the rules.
    fn body_at(&self, seq: u64, off: u64) -> Result<&'a [u8]> {
        // The segment's name goes into an error only: no copy of it on
        // the way to an answer.
        let bad = |reason: String| self.corrupt_at(seq, off, reason);
        let src = self
            .src_of(seq, off)
            .ok_or_else(|| bad("no index covers this offset".into()))?;
        self.check_block_of(src, off).map_err(|d| bad(d.reason))?;
        let seg: &'a [u8] = src.seg;
        let b = seg
            .get(off as usize..)
            .ok_or_else(|| bad("index points past the segment".into()))?;
        let frame = read_frame(b).map_err(|e| bad(e.to_string()))?;
        Ok(frame.payload)
    }

    /// The run view of a start.
    pub(crate) fn materialize(&self, h: Handle) -> Result<Run> {
        self.materialize_through(h, u64::MAX)
    }

    /// The run view of a start, seeing finishes only in segments up to
    /// `through_seq` (a later first finish leaves the run running).
    pub(crate) fn materialize_through(&self, h: Handle, through_seq: u64) -> Result<Run> {
        // The record's strings are not read: the view's strings come from
        // the events, and the finish needs only the record's numbers (and
        // the id, for a finish in a later image).
        let r = self.lazy(h);
        let seq = self.srcs[h.src].seq;
        let fin = self.finish_of(h.src, &r).filter(|f| f.seq <= through_seq);
        // The usual case read in place: both bodies decode and pass the
        // stored-event rules, the start is a start (and the finish a
        // finish). Anything else takes the owned decode below, which
        // gives the same answer or the same error.
        let start_body = self.body_at(seq, r.start_off())?;
        let fin_body = match fin {
            Some(f) => Some(self.body_at(f.seq, f.off)?),
            None => None,
        };
        if let Some(run) = fold_in_place(start_body, fin_body) {
            return Ok(run);
        }
        let start = self.event_at(seq, r.start_off())?;
        let fin = match fin {
            Some(f) => Some(self.event_at(f.seq, f.off)?),
            None => None,
        };
        Run::fold(&start, fin.as_ref()).ok_or_else(|| Error::Corrupt {
            segment: self.srcs[h.src].name.to_string(),
            offset: r.start_off(),
            reason: "index points at an event that is not a run_started".into(),
        })
    }

    /// The defining start of `id`: in the oldest image that has one.
    pub(crate) fn find(&self, id: &[u8]) -> Option<Handle> {
        self.find_hashed(id, RunHash::of(id))
    }

    /// [`View::find`] with the id's [`RunHash`] already at hand.
    fn find_hashed(&self, id: &[u8], h: RunHash) -> Option<Handle> {
        self.srcs.iter().enumerate().find_map(|(src, s)| {
            s.img
                .find_run_if_filtered(id, h)
                .map(|pos| Handle { src, pos })
        })
    }

    pub fn get_run(&self, id: &str) -> Result<Option<Run>> {
        self.find(id.as_bytes())
            .map(|h| self.amended_run(h))
            .transpose()
    }

    /// The logs of a stored run in seq order (ties in log order); empty
    /// for an unknown run (orphan logs are not shown).
    pub fn logs(&self, id: &str) -> Result<Vec<RunLogEntry>> {
        let h = RunHash::of(id.as_bytes());
        if self.find_hashed(id.as_bytes(), h).is_none() {
            return Ok(Vec::new());
        }
        let mut all: Vec<(u64, u64, u64, u64)> = Vec::new();
        for s in &self.srcs {
            for l in s.img.logs_of_if_filtered(id.as_bytes(), h) {
                all.push((l.seq, l.lsn, s.seq, l.off));
            }
        }
        all.sort_unstable();
        all.dedup();
        let decoded = all
            .into_iter()
            .map(|(_, _, seq, off)| {
                let ev = self.event_at(seq, off)?;
                let replace = ev.is_replace();
                match ev.data {
                    EventData::RunLog(l) => Ok((
                        replace,
                        RunLogEntry {
                            seq: l.seq,
                            ts: ev.ts,
                            event_type: l.event_type,
                            payload: l.payload,
                        },
                    )),
                    _ => Err(Error::Corrupt {
                        segment: format!("segment {seq}"),
                        offset: off,
                        reason: "index points at an event that is not a run_log".into(),
                    }),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(drop_replaced_logs(decoded))
    }

    /// Runs whose parent is `id`.
    pub fn children(&self, id: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        let f = Filter {
            parent: Some(id.to_string()),
            include_dry_run,
            ..Filter::default()
        };
        self.list(&f, Page::all())
    }

    /// The run, its parent, its parent's parent... `None` for an unknown
    /// run. Stops at a top-level run, a parent not stored, or a repeat.
    pub fn chain(&self, id: &str) -> Result<Option<Vec<Run>>> {
        let Some(first) = self.get_run(id)? else {
            return Ok(None);
        };
        let mut seen: HashSet<String> = HashSet::new();
        seen.insert(first.id.clone());
        let mut parent = first.parent_run_id.clone();
        let mut out = vec![first];
        while !parent.is_empty() && seen.insert(parent.clone()) {
            match self.get_run(&parent)? {
                Some(r) => {
                    parent = r.parent_run_id.clone();
                    out.push(r);
                }
                None => break,
            }
        }
        Ok(Some(out))
    }

    /// The latest started_at per skill (in the order given). Without
    /// `include_failed`, runs with status error or timeout do not count.
    pub fn last_run(
        &self,
        skills: &[String],
        include_failed: bool,
        include_dry_run: bool,
    ) -> Result<Vec<(String, Option<Micros>)>> {
        skills
            .iter()
            .map(|skill| {
                let f = Filter {
                    skill: Some(skill.clone()),
                    include_dry_run,
                    ..Filter::default()
                };
                let keep = |status: &[u8]| include_failed || !is_failed(status);
                if !self.any_amended() {
                    let t = self.newest_matching(&f, keep).map(|(ts, _)| ts);
                    return Ok((skill.clone(), t));
                }
                let over = self.overlay(&f)?;
                let t = self
                    .with_overlay(self.matching(&f), &over)
                    .find(|i| keep(self.item_status(i)))
                    .map(|i| self.item_key(&i).0);
                Ok((skill.clone(), t))
            })
            .collect()
    }

    /// The newest (started_at, id) of the indexed runs matching `f` whose
    /// status passes `keep`: what the newest-first merge of every image
    /// finds first, without merging. Images are visited by their newest
    /// event, newest first, each list from its newest run; the walk stops
    /// once no image left can hold a newer start. Amending events are not
    /// seen (the caller takes the merge when there are any).
    fn newest_matching(
        &self,
        f: &Filter,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Option<(Micros, &'a [u8])> {
        let mut by_newest: Vec<usize> = (0..self.srcs.len()).collect();
        by_newest.sort_unstable_by_key(|&s| std::cmp::Reverse(self.srcs[s].img.header.max_ts));
        let mut best: Option<(Micros, &'a [u8])> = None;
        for src in by_newest {
            let img: &'a Image = self.srcs[src].img;
            if best.is_some_and(|(ts, _)| ts > img.header.max_ts) {
                break;
            }
            for list in self.candidates(src, f) {
                for i in 0..list.len() {
                    let pos = img.at(&list, i);
                    let key = img.run_key(pos);
                    if best.is_some_and(|b| key <= b) {
                        break;
                    }
                    let r = img.run_lazy(pos);
                    if self.matches(&r, f) && keep(self.status_of(&r)) {
                        best = Some(key);
                        break;
                    }
                }
            }
        }
        best
    }

    /// Finished runs whose finished_at is before `before`, newest start
    /// first, at most `limit`.
    pub fn finished_before(
        &self,
        before: Micros,
        include_dry_run: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Run>> {
        let f = Filter {
            include_dry_run,
            ..Filter::default()
        };
        // Every event of an image, its local finishes included, is at or
        // after the image's min_ts: an image that starts at `before` or
        // later can only contribute runs finished elsewhere (those without
        // a local finish, its "running" list).
        // And a finish in another image is in a later one: an image whose
        // every later image (itself included) starts at `before` or later
        // contributes nothing, and is skipped without asking any FINS.
        let mut later_min = vec![Micros::MAX; self.srcs.len() + 1];
        for (i, s) in self.srcs.iter().enumerate().rev() {
            later_min[i] = later_min[i + 1].min(s.img.header.min_ts);
        }
        let mut streams = Vec::new();
        for (src, s) in self.srcs.iter().enumerate() {
            if later_min[src] >= before {
                continue;
            }
            let list = if s.img.header.min_ts >= before {
                s.img.posting(K_STATUS, RUNNING)
            } else {
                s.img.all()
            };
            if !list.is_empty() {
                streams.push(Stream { src, list, i: 0 });
            }
        }
        let mut over = self.overlay(&f)?;
        over.retain(|r| r.finished_at.is_some_and(|t| t < before));
        let hs = Merge::new(self, streams)
            .filter(|h| self.matches(&self.lazy(*h), &f))
            .filter(|h| {
                let r = self.lazy(*h);
                self.finish_of(h.src, &r).is_some_and(|fin| fin.ts < before)
            });
        let items = self
            .with_overlay(hs, &over)
            .take(limit.unwrap_or(usize::MAX));
        items.map(|i| self.item_run(i)).collect()
    }
}

impl Engine {
    pub fn get_run(&mut self, id: &str) -> Result<Option<Run>> {
        self.query(|v| v.get_run(id))
    }
    /// The run and its logs in seq order.
    pub fn run_with_logs(&mut self, id: &str) -> Result<Option<(Run, Vec<RunLogEntry>)>> {
        self.query(|v| match v.get_run(id)? {
            Some(r) => Ok(Some((r, v.logs(id)?))),
            None => Ok(None),
        })
    }
    pub fn logs(&mut self, id: &str) -> Result<Vec<RunLogEntry>> {
        self.query(|v| v.logs(id))
    }
    pub fn list(&mut self, f: &Filter, page: Page) -> Result<Vec<Run>> {
        self.query(|v| v.list(f, page))
    }
    pub fn count(&mut self, f: &Filter) -> Result<u64> {
        self.query(|v| v.count(f))
    }
    pub fn children(&mut self, id: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        self.query(|v| v.children(id, include_dry_run))
    }
    pub fn chain(&mut self, id: &str) -> Result<Option<Vec<Run>>> {
        self.query(|v| v.chain(id))
    }
    pub fn last_run(
        &mut self,
        skills: &[String],
        include_failed: bool,
        include_dry_run: bool,
    ) -> Result<Vec<(String, Option<Micros>)>> {
        self.query(|v| v.last_run(skills, include_failed, include_dry_run))
    }
    pub fn finished_before(
        &mut self,
        before: Micros,
        include_dry_run: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Run>> {
        self.query(|v| v.finished_before(before, include_dry_run, limit))
    }
    pub fn errors(
        &mut self,
        since: Option<Micros>,
        until: Option<Micros>,
        include_dry_run: bool,
    ) -> Result<Vec<ErrorGroup>> {
        self.query(|v| v.errors(since, until, include_dry_run))
    }
}
