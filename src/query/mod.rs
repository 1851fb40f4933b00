//! The query set (contract sections 2 and 3) answered from the indexes.
//!
//! Resolution rules (docs/queries.md):
//! - a run is defined by the first `run_started` of its id in log order
//!   among stored segments: an image's start is valid unless an older,
//!   still stored segment (or an older chunk of the active one) also
//!   started the id (`shadow_seq`);
//! - its finish is the first `run_finished` after that start in log order:
//!   the local finish of the start's image, or else the first "foreign"
//!   finish (kept in a small in-memory map) with a higher LSN;
//! - lists merge the images' posting lists newest first (started_at desc,
//!   id desc) and skip images by their time range.

mod amend;
mod asof;
mod background;
mod engine;

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

pub use crate::index::ProgressFn;
use amend::{drop_replaced_logs, Item};
pub use asof::RunAsOf;
pub use background::{BackgroundIndexer, IndexOnSeal};
pub(crate) use engine::shadow_in;
use engine::FinRef;
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
use crate::view::{Run, RunLogEntry};

/// Filters of `runs` and `count` (contract section 3), combined with AND.
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
    pub(crate) fn finish_of(&self, src: usize, r: &RunRec<'a>) -> Option<Fin> {
        // Images cover disjoint LSN ranges in order, so a finish in
        // another image comes after every event of this one: a local
        // finish is always the first, and the foreign map (a hash of the
        // id per candidate, the costliest step of a count) is only asked
        // for runs without one.
        if r.has_local_finish() {
            return Some(Fin {
                seq: self.srcs[src].seq,
                off: r.finish_off,
                ts: r.finished_at,
            });
        }
        self.foreign_after(r.id, r.start_lsn).map(|f| Fin {
            seq: f.seq,
            off: f.off,
            ts: f.ts,
        })
    }

    /// The first finish of `id` in another image after LSN `start_lsn`.
    pub(crate) fn foreign_after(&self, id: &[u8], start_lsn: u64) -> Option<&'a FinRef> {
        self.foreign
            .fins
            .get(id)
            .and_then(|v| v.iter().find(|f| finish_follows(start_lsn, f.lsn)))
    }

    /// A run's status: its local finish's, else the first foreign
    /// finish's after its start (see `finish_of`), else running.
    fn status_of(&self, r: &LazyRun<'a>) -> &'a [u8] {
        if r.has_local_finish() {
            return r.status();
        }
        self.foreign_after(r.id(), r.start_lsn())
            .map_or(RUNNING, |f| &f.status[..])
    }

    fn lazy(&self, h: Handle) -> LazyRun<'a> {
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
        if self.amended(r.id()) || (!f.include_dry_run && self.dry_by_status(r)) {
            return false;
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
                    (running, Implied::Nothing),
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
    pub fn count(&self, f: &Filter) -> Result<u64> {
        let mut n = self.overlay(f)?.len() as u64;
        for src in 0..self.srcs.len() {
            let img = self.srcs[src].img;
            for (list, implied) in self.candidate_lists(src, f) {
                for i in 0..list.len() {
                    if self.matches_given(&img.run_lazy(img.at(&list, i)), f, implied) {
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Runs matching `f`, newest first, one page.
    pub fn list(&self, f: &Filter, page: Page) -> Result<Vec<Run>> {
        let over = self.overlay(f)?;
        let it = self.with_overlay(self.matching(f), &over).skip(page.offset);
        let items: Vec<Item<'_>> = match page.limit {
            Some(l) => it.take(l).collect(),
            None => it.collect(),
        };
        items.into_iter().map(|i| self.item_run(i)).collect()
    }

    /// The image of segment `seq` that covers segment offset `off`.
    fn src_of(&self, seq: u64, off: u64) -> Option<&engine::Src<'a>> {
        self.srcs
            .iter()
            .find(|s| s.seq == seq && s.img.header.start_off <= off && off < s.img.header.end_off)
    }

    /// Decode the event whose frame starts at `off` of segment `seq`, once
    /// its block was checked against the chain (docs/integrity.md).
    pub(crate) fn event_at(&self, seq: u64, off: u64) -> Result<Event> {
        let src = self.src_of(seq, off);
        let name = src.map_or_else(|| format!("segment {seq}"), |s| s.name.to_string());
        let bad = |reason: String| Error::Corrupt {
            segment: name.clone(),
            offset: off,
            reason,
        };
        let src = src.ok_or_else(|| bad("no index covers this offset".into()))?;
        src.img.check_block(src.seg, off).map_err(bad)?;
        let b = src
            .seg
            .get(off as usize..)
            .ok_or_else(|| bad("index points past the segment".into()))?;
        let frame = read_frame(b).map_err(|e| bad(e.to_string()))?;
        codec::decode_stored(frame.payload).map_err(bad)
    }

    /// The run view of a start.
    pub(crate) fn materialize(&self, h: Handle) -> Result<Run> {
        self.materialize_through(h, u64::MAX)
    }

    /// The run view of a start, seeing finishes only in segments up to
    /// `through_seq` (a later first finish leaves the run running).
    pub(crate) fn materialize_through(&self, h: Handle, through_seq: u64) -> Result<Run> {
        let r = self.run(h);
        let start = self.event_at(self.srcs[h.src].seq, r.start_off)?;
        let fin = match self.finish_of(h.src, &r).filter(|f| f.seq <= through_seq) {
            Some(f) => Some(self.event_at(f.seq, f.off)?),
            None => None,
        };
        Run::fold(&start, fin.as_ref()).ok_or_else(|| Error::Corrupt {
            segment: self.srcs[h.src].name.to_string(),
            offset: r.start_off,
            reason: "index points at an event that is not a run_started".into(),
        })
    }

    /// The defining start of `id`: in the oldest image that has one.
    pub(crate) fn find(&self, id: &[u8]) -> Option<Handle> {
        let h = RunHash::of(id);
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
        if self.find(id.as_bytes()).is_none() {
            return Ok(Vec::new());
        }
        let mut all: Vec<(u64, u64, u64, u64)> = Vec::new();
        for s in &self.srcs {
            for l in s.img.logs_of(id.as_bytes()) {
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
                let over = self.overlay(&f)?;
                let t = self
                    .with_overlay(self.matching(&f), &over)
                    .find(|i| include_failed || !is_failed(self.item_status(i)))
                    .map(|i| self.item_key(&i).0);
                Ok((skill.clone(), t))
            })
            .collect()
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
        let mut streams = Vec::new();
        for (src, s) in self.srcs.iter().enumerate() {
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
                let r = self.run(*h);
                self.finish_of(h.src, &r).is_some_and(|fin| fin.ts < before)
            });
        let items = self
            .with_overlay(hs, &over)
            .take(limit.unwrap_or(usize::MAX));
        items.map(|i| self.item_run(i)).collect()
    }

    /// Failing tool calls of stored runs with ts in `since..=until`,
    /// grouped by (run's channel_id, tool, error_type).
    pub fn errors(
        &self,
        since: Option<Micros>,
        until: Option<Micros>,
        include_dry_run: bool,
    ) -> Result<Vec<ErrorGroup>> {
        struct Acc {
            count: u64,
            first: Micros,
            last: Micros,
            dur_sum: f64,
            dur_n: u64,
            callers: BTreeSet<Vec<u8>>,
            runs: BTreeSet<Vec<u8>>,
        }
        fn keep(set: &mut BTreeSet<Vec<u8>>, v: &[u8]) {
            if set.len() < ERROR_GROUP_IDS || set.last().is_some_and(|l| l.as_slice() > v) {
                set.insert(v.to_vec());
                if set.len() > ERROR_GROUP_IDS {
                    set.pop_last();
                }
            }
        }
        type Bytes<'b> = &'b [u8];
        // Amended runs: their channel and caller as amended.
        let mut amended: Vec<Run> = Vec::new();
        for id in self.foreign.amends.keys() {
            if let Some(h) = self.find(id) {
                amended.push(self.amended_run(h)?);
            }
        }
        let mut runs: HashMap<Bytes<'_>, Option<(Bytes<'_>, Bytes<'_>)>> = HashMap::new();
        for r in &amended {
            let keep = include_dry_run || !r.dry_run;
            runs.insert(
                r.id.as_bytes(),
                keep.then_some((r.channel_id.as_bytes(), r.caller_id.as_bytes())),
            );
        }
        let mut groups: HashMap<(Bytes<'_>, Bytes<'_>, Bytes<'_>), Acc> = HashMap::new();
        for s in &self.srcs {
            let h = &s.img.header;
            if since.is_some_and(|t| h.max_ts < t) || until.is_some_and(|t| h.min_ts > t) {
                continue;
            }
            let (lo, hi) = s.img.errs_between(since, until);
            for i in lo..hi {
                let e = s.img.err(i);
                let run = *runs.entry(e.id).or_insert_with(|| {
                    self.find(e.id).and_then(|h| {
                        let r = self.run(h);
                        let dry = r.dry_run() || self.dry_by_status(&self.lazy(h));
                        (include_dry_run || !dry).then_some((r.channel, r.caller))
                    })
                });
                let Some((channel, caller)) = run else {
                    continue;
                };
                let acc = groups
                    .entry((channel, e.tool, e.error_type))
                    .or_insert_with(|| Acc {
                        count: 0,
                        first: e.ts,
                        last: e.ts,
                        dur_sum: 0.0,
                        dur_n: 0,
                        callers: BTreeSet::new(),
                        runs: BTreeSet::new(),
                    });
                acc.count += 1;
                acc.first = acc.first.min(e.ts);
                acc.last = acc.last.max(e.ts);
                if !e.duration_ms.is_nan() {
                    acc.dur_sum += e.duration_ms;
                    acc.dur_n += 1;
                }
                keep(&mut acc.callers, caller);
                keep(&mut acc.runs, e.id);
            }
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut out: Vec<ErrorGroup> = groups
            .into_iter()
            .map(|((ch, tool, et), a)| ErrorGroup {
                channel_id: text(ch),
                tool: text(tool),
                error_type: text(et),
                count: a.count,
                first_ts: a.first,
                last_ts: a.last,
                avg_duration_ms: (a.dur_n > 0).then(|| a.dur_sum / a.dur_n as f64),
                caller_ids: a.callers.iter().map(|v| text(v)).collect(),
                run_ids: a.runs.iter().map(|v| text(v)).collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.channel_id.cmp(&b.channel_id))
                .then_with(|| a.tool.cmp(&b.tool))
                .then_with(|| a.error_type.cmp(&b.error_type))
        });
        Ok(out)
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
