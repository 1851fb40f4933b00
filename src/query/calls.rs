//! Tool-call queries: `calls` (filtered, newest or oldest first, a page
//! at a time), their counts (whole, or grouped by a key) and the failing
//! tool-call aggregation `errors`, all from the per-image CALLS records
//! and their posting lists (docs/tool-calls.md).
//!
//! A call's channel and caller: a `tool_call` event's own, or, where they
//! are empty and its run is stored, its run's; a `run_log` tool call's are
//! always its run's. A `run_log` tool call whose run is not stored is an
//! orphan and no view shows it (as contract section 2 says of every
//! orphan log); a `tool_call` event needs no run. Calls of dry runs are
//! left out unless asked for.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use super::engine::View;
use super::{Engine, ErrorGroup, Filter, ERROR_GROUP_IDS};
use crate::error::{Error, Result};
use crate::event::json::{json_string, json_u64, write_call};
use crate::event::time::{format_rfc3339, parse_instant};
use crate::event::{EventData, Json, Micros, ToolCall};
use crate::index::calls::{
    engine_tool_key, CallList, FieldRef, LazyCall, AT_CALLER, AT_CHANNEL, AT_ENGINE, AT_ERROR_TYPE,
    AT_RUN, AT_STATUS, AT_TOOL, AT_WORKSPACE, CK_CALLER, CK_CHANNEL, CK_ENGINE, CK_ENGINE_TOOL,
    CK_ERROR_TYPE, CK_RUN, CK_STATUS, CK_TOOL, CK_WORKSPACE,
};
use crate::index::RunHash;

/// Filters of `calls` (exact matches, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub tool: Option<String>,
    pub engine: Option<String>,
    /// The session or channel (the call's own, else its run's).
    pub channel: Option<String>,
    /// The caller or agent (the call's own, else its run's).
    pub caller: Option<String>,
    pub workspace: Option<String>,
    /// `ok`, `error`, or a gateway's own word.
    pub status: Option<String>,
    pub error_type: Option<String>,
    pub run_id: Option<String>,
    /// ts >= since.
    pub since: Option<Micros>,
    /// ts <= until.
    pub until: Option<Micros>,
    /// Calls of dry runs too.
    pub include_dry_run: bool,
}

/// The order of a `calls` answer: by (ts, LSN).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// Where a page ended: the (ts, LSN) of its last call. The next page
/// starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCursor {
    pub ts: Micros,
    pub lsn: u64,
}

impl CallCursor {
    /// `TS,LSN`: TS as integer µs or RFC 3339, LSN an integer (what a
    /// call's `ts` and `lsn` say).
    pub fn parse(s: &str) -> Result<CallCursor> {
        let bad = |why: &str| Error::InvalidArgument(format!("cursor {s:?}: {why} (want TS,LSN)"));
        let (ts, lsn) = s.rsplit_once(',').ok_or_else(|| bad("no comma"))?;
        let ts = parse_instant(ts.trim()).map_err(|e| bad(&e.to_string()))?;
        let lsn = lsn
            .trim()
            .parse::<u64>()
            .map_err(|_| bad("the LSN is not an integer"))?;
        Ok(CallCursor { ts, lsn })
    }
}

impl std::fmt::Display for CallCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.ts, self.lsn)
    }
}

/// One page of `calls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallPage {
    pub limit: Option<usize>,
    /// Start after this call (from the previous page's last one).
    pub cursor: Option<CallCursor>,
    pub order: CallOrder,
}

/// Where a call was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSource {
    /// A `tool_call` event.
    ToolCall,
    /// A `run_log` whose `event_type` is `tool_call`.
    RunLog,
}

impl CallSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CallSource::ToolCall => "tool_call",
            CallSource::RunLog => "run_log",
        }
    }
}

/// A tool call as `calls` answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub lsn: u64,
    pub ts: Micros,
    pub source: CallSource,
    /// "" for a call outside any run.
    pub run_id: String,
    /// Its fields; `channel_id` and `caller_id` as resolved (its own, else
    /// its run's). For a `run_log` call, read from its payload, and
    /// `payload` is the whole payload.
    pub call: ToolCall,
    /// Unknown top-level fields of the event.
    pub extra: Vec<(String, Json)>,
}

impl Call {
    /// The cursor that continues after this call.
    pub fn cursor(&self) -> CallCursor {
        CallCursor {
            ts: self.ts,
            lsn: self.lsn,
        }
    }

    /// `{"lsn","ts","source","run_id", the tool_call fields in contract
    /// order, then unknown fields}`.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(320 + self.call.payload.as_str().len());
        s.push_str("{\"lsn\":");
        json_u64(self.lsn, &mut s);
        s.push_str(",\"ts\":\"");
        format_rfc3339(self.ts, &mut s);
        s.push_str("\",\"source\":\"");
        s.push_str(self.source.as_str());
        s.push_str("\",\"run_id\":");
        json_string(&self.run_id, &mut s);
        write_call(&self.call, &mut s);
        for (k, v) in &self.extra {
            s.push(',');
            json_string(k, &mut s);
            s.push(':');
            s.push_str(v.as_str());
        }
        s.push('}');
        s
    }
}

/// What calls can be counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKey {
    Tool,
    Engine,
    Channel,
    Caller,
    Workspace,
    Status,
    ErrorType,
    RunId,
}

impl CallKey {
    pub const ALL: [CallKey; 8] = [
        CallKey::Tool,
        CallKey::Engine,
        CallKey::Channel,
        CallKey::Caller,
        CallKey::Workspace,
        CallKey::Status,
        CallKey::ErrorType,
        CallKey::RunId,
    ];

    /// The output field name (`tool`, `channel_id`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CallKey::Tool => "tool",
            CallKey::Engine => "engine",
            CallKey::Channel => "channel_id",
            CallKey::Caller => "caller_id",
            CallKey::Workspace => "workspace_id",
            CallKey::Status => "status",
            CallKey::ErrorType => "error_type",
            CallKey::RunId => "run_id",
        }
    }

    /// By output name, or the short forms `channel`, `session`, `caller`,
    /// `agent`, `workspace`, `run`.
    pub fn parse(s: &str) -> Result<CallKey> {
        Ok(match s {
            "tool" => CallKey::Tool,
            "engine" => CallKey::Engine,
            "channel" | "channel_id" | "session" => CallKey::Channel,
            "caller" | "caller_id" | "agent" => CallKey::Caller,
            "workspace" | "workspace_id" => CallKey::Workspace,
            "status" => CallKey::Status,
            "error_type" => CallKey::ErrorType,
            "run" | "run_id" => CallKey::RunId,
            other => {
                let names: Vec<&str> = CallKey::ALL.iter().map(|k| k.name()).collect();
                return Err(Error::InvalidArgument(format!(
                    "cannot count calls by {other:?} (one of {})",
                    names.join(", ")
                )));
            }
        })
    }
}

/// A run as its calls see it.
#[derive(Clone, Copy)]
struct RunScope<'a> {
    channel: &'a [u8],
    caller: &'a [u8],
    dry: bool,
}

/// Where a call's channel and caller come from.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// Its own (no run, or its run is not stored).
    Own,
    /// Its run's (a `run_log` call).
    Run(RunScope<'a>),
    /// Its own where set, else its run's (a `tool_call` in a stored run).
    Either(RunScope<'a>),
}

impl<'s> Scope<'s> {
    fn channel<'a: 's>(&self, c: &LazyCall<'a>) -> &'s [u8] {
        match self {
            Scope::Own => c.channel(),
            Scope::Run(r) => r.channel,
            Scope::Either(r) if c.channel_is_empty() => r.channel,
            Scope::Either(_) => c.channel(),
        }
    }

    fn caller<'a: 's>(&self, c: &LazyCall<'a>) -> &'s [u8] {
        match self {
            Scope::Own => c.caller(),
            Scope::Run(r) => r.caller,
            Scope::Either(r) if c.caller_is_empty() => r.caller,
            Scope::Either(_) => c.caller(),
        }
    }

    /// Whether the channel (or caller) is the record's own field.
    fn own_channel(&self, c: &LazyCall<'_>) -> bool {
        match self {
            Scope::Own => true,
            Scope::Run(_) => false,
            Scope::Either(_) => !c.channel_is_empty(),
        }
    }

    fn own_caller(&self, c: &LazyCall<'_>) -> bool {
        match self {
            Scope::Own => true,
            Scope::Run(_) => false,
            Scope::Either(_) => !c.caller_is_empty(),
        }
    }
}

/// Amended runs' scopes (their channel and caller as amended, and whether
/// they are dry), computed once per query: amended runs are answered from
/// the overlay, not from the indexes (see `amend.rs`).
#[derive(Default)]
struct Amended {
    runs: HashMap<Vec<u8>, (Vec<u8>, Vec<u8>, bool)>,
    /// The LSNs of `run_log` calls hidden by a later replacing log of
    /// their run with the same seq (queries.md, "Amending events").
    hidden_logs: HashSet<u64>,
}

impl Amended {
    fn of(view: &View<'_>) -> Result<Amended> {
        let mut runs = HashMap::new();
        for id in view.foreign.amends.keys() {
            if let Some(h) = view.find(id) {
                let r = view.amended_run(h)?;
                runs.insert(
                    id.to_vec(),
                    (
                        r.channel_id.into_bytes(),
                        r.caller_id.into_bytes(),
                        r.dry_run,
                    ),
                );
            }
        }
        Ok(Amended {
            runs,
            hidden_logs: hidden_logs(view),
        })
    }
}

/// The LSNs of the logs that a later replacing log of the same run and
/// seq hides, read from the indexes alone (the LOGS records give each
/// log's seq; AMND names the replacing ones). Costs nothing when no log
/// replaces another.
fn hidden_logs(view: &View<'_>) -> HashSet<u64> {
    let mut hidden = HashSet::new();
    for (id, relogs) in &view.foreign.relogs {
        if view.find(id).is_none() {
            continue; // An orphan's logs are not shown anyway.
        }
        let mut logs: Vec<(u64, u64)> = Vec::new();
        let h = RunHash::of(id);
        for s in &view.srcs {
            logs.extend(
                s.img
                    .logs_of_if_filtered(id, h)
                    .iter()
                    .map(|l| (l.seq, l.lsn)),
            );
        }
        // Per seq, newest first: everything older than the newest
        // replacing log of that seq is hidden.
        logs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        logs.dedup();
        let mut replaced_below: Option<(u64, u64)> = None;
        for (seq, lsn) in logs {
            match replaced_below {
                Some((s, below)) if s == seq && lsn < below => {
                    hidden.insert(lsn);
                }
                Some((s, _)) if s == seq => {}
                _ => replaced_below = None,
            }
            if replaced_below.is_none() && relogs.contains(&lsn) {
                replaced_below = Some((seq, lsn));
            }
        }
    }
    hidden
}

/// Resolves calls' runs, once per run id.
struct Scopes<'v, 'a: 's, 's> {
    view: &'v View<'a>,
    amended: &'s Amended,
    runs: HashMap<&'a [u8], Option<RunScope<'s>>>,
}

impl<'v, 'a: 's, 's> Scopes<'v, 'a, 's> {
    fn new(view: &'v View<'a>, amended: &'s Amended) -> Scopes<'v, 'a, 's> {
        Scopes {
            view,
            amended,
            runs: HashMap::new(),
        }
    }

    fn run(&mut self, id: &'a [u8]) -> Option<RunScope<'s>> {
        let (view, amended) = (self.view, self.amended);
        *self.runs.entry(id).or_insert_with(|| {
            if let Some((channel, caller, dry)) = amended.runs.get(id) {
                return Some(RunScope {
                    channel,
                    caller,
                    dry: *dry,
                });
            }
            view.find(id).map(|h| {
                let r = view.lazy(h);
                RunScope {
                    channel: r.channel(),
                    caller: r.caller(),
                    // A dry run by its start's flag, or by its status.
                    dry: r.dry_run() || view.dry_by_status(&r),
                }
            })
        })
    }

    /// Where the call's scope comes from, or `None` when views leave it
    /// out (an orphan `run_log` call, a call of a dry run).
    fn of(&mut self, c: &LazyCall<'a>, include_dry_run: bool) -> Option<Scope<'s>> {
        if !c.has_run() {
            return Some(Scope::Own);
        }
        if c.from_log() && self.amended.hidden_logs.contains(&c.lsn()) {
            return None;
        }
        let run = self.run(c.run_id());
        if run.is_some_and(|r| r.dry && !include_dry_run) {
            return None;
        }
        match (run, c.from_log()) {
            (Some(r), true) => Some(Scope::Run(r)),
            (None, true) => None,
            (None, false) => Some(Scope::Own),
            (Some(r), false) => Some(Scope::Either(r)),
        }
    }
}

/// Filter keys a candidate list's membership already proves.
type Implied = u16;
const I_TOOL: Implied = 1;
const I_ENGINE: Implied = 2;
const I_CHANNEL: Implied = 4;
const I_CALLER: Implied = 8;
const I_WORKSPACE: Implied = 16;
const I_STATUS: Implied = 32;
const I_ERROR_TYPE: Implied = 64;
const I_RUN: Implied = 128;

/// The filter keys `f` sets (a candidate list that implies them all
/// proves every call in it matches, the time range aside).
fn needed(f: &CallFilter) -> Implied {
    let mut n = 0;
    for (bit, v) in [
        (I_TOOL, &f.tool),
        (I_ENGINE, &f.engine),
        (I_CHANNEL, &f.channel),
        (I_CALLER, &f.caller),
        (I_WORKSPACE, &f.workspace),
        (I_STATUS, &f.status),
        (I_ERROR_TYPE, &f.error_type),
        (I_RUN, &f.run_id),
    ] {
        if v.is_some() {
            n |= bit;
        }
    }
    n
}

/// Every field of `f` the list does not prove, but the time range
/// (narrowed by the lists). Strings are read only for the keys asked.
fn matches<'a: 's, 's>(
    c: &LazyCall<'a>,
    scope: &Scope<'s>,
    f: &CallFilter,
    implied: Implied,
) -> bool {
    let want = |bit: Implied, w: &Option<String>, have: &dyn Fn() -> &'s [u8]| {
        implied & bit != 0 || w.as_ref().is_none_or(|w| w.as_bytes() == have())
    };
    want(I_TOOL, &f.tool, &|| c.tool())
        && want(I_ENGINE, &f.engine, &|| c.engine())
        && want(I_WORKSPACE, &f.workspace, &|| c.workspace())
        && want(I_STATUS, &f.status, &|| c.status())
        && want(I_ERROR_TYPE, &f.error_type, &|| c.error_type())
        && want(I_RUN, &f.run_id, &|| c.run_id())
        && want(I_CHANNEL, &f.channel, &|| scope.channel(c))
        && want(I_CALLER, &f.caller, &|| scope.caller(c))
}

/// Candidates of one image: a posting list (or all calls), or positions
/// gathered by run (calls that take their scope from a run), with what
/// the list proves.
#[derive(Debug, Clone)]
enum Cands {
    List(CallList, Implied),
    Positions(Vec<u32>),
}

impl Cands {
    fn len(&self) -> u32 {
        match self {
            Cands::List(l, _) => l.len(),
            Cands::Positions(p) => p.len() as u32,
        }
    }

    fn implied(&self) -> Implied {
        match self {
            Cands::List(_, i) => *i,
            Cands::Positions(_) => 0,
        }
    }
}

/// Runs whose channel (or caller) is the filter's: the calls that take
/// their scope from those runs are candidates too.
struct ByRun<'a> {
    channel: Option<Vec<&'a [u8]>>,
    caller: Option<Vec<&'a [u8]>>,
}

impl<'a> View<'a> {
    fn runs_with(&self, f: Filter) -> Vec<&'a [u8]> {
        self.matching(&f).map(|h| self.run(h).id).collect()
    }

    fn by_run(&self, f: &CallFilter) -> ByRun<'a> {
        let base = Filter {
            include_dry_run: f.include_dry_run,
            ..Filter::default()
        };
        let with = |channel: Option<String>, caller: Option<String>| {
            // Only images that hold calls of runs are worth asking.
            if self.srcs.iter().all(|s| s.img.n_calls() == 0) {
                return Vec::new();
            }
            self.runs_with(Filter {
                channel,
                caller,
                ..base.clone()
            })
        };
        ByRun {
            channel: f.channel.as_ref().map(|c| with(Some(c.clone()), None)),
            caller: f.caller.as_ref().map(|c| with(None, Some(c.clone()))),
        }
    }

    /// The calls of image `src` whose scope may come from one of `runs`
    /// (own value empty), in time order.
    fn run_calls(&self, src: usize, runs: &[&[u8]], channel: bool) -> Vec<u32> {
        let img = self.srcs[src].img;
        let mut out = Vec::new();
        for id in runs {
            let l = img.call_posting(CK_RUN, id);
            for i in 0..l.len() {
                let p = img.call_at(&l, i);
                let c = img.call_lazy(p);
                let own_empty = if channel {
                    c.channel_is_empty()
                } else {
                    c.caller_is_empty()
                };
                if own_empty {
                    out.push(p);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The smallest set of candidate lists of image `src` for `f`, narrowed
    /// to `since..=until`.
    fn call_candidates(
        &self,
        src: usize,
        f: &CallFilter,
        by_run: &ByRun<'a>,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> Vec<Cands> {
        let img = self.srcs[src].img;
        let h = &img.header;
        if img.n_calls() == 0
            || since.is_some_and(|s| h.max_ts < s)
            || until.is_some_and(|u| h.min_ts > u)
        {
            return Vec::new();
        }
        let mut best = vec![Cands::List(img.all_calls(), 0)];
        let mut best_len = img.n_calls();
        let mut consider = |c: Vec<Cands>| {
            let n: u32 = c.iter().map(Cands::len).sum();
            if n < best_len {
                best_len = n;
                best = c;
            }
        };
        let posting = |kind: u32, v: &Option<String>| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| img.call_posting(kind, v.as_bytes()))
        };
        if let (Some(e), Some(t)) = (&f.engine, &f.tool) {
            let key = engine_tool_key(e.as_bytes(), t.as_bytes());
            consider(vec![Cands::List(
                img.call_posting(CK_ENGINE_TOOL, &key),
                I_ENGINE | I_TOOL,
            )]);
        }
        for (kind, v, bit) in [
            (CK_RUN, &f.run_id, I_RUN),
            (CK_TOOL, &f.tool, I_TOOL),
            (CK_ENGINE, &f.engine, I_ENGINE),
            (CK_WORKSPACE, &f.workspace, I_WORKSPACE),
            (CK_STATUS, &f.status, I_STATUS),
            (CK_ERROR_TYPE, &f.error_type, I_ERROR_TYPE),
        ] {
            if let Some(l) = posting(kind, v) {
                consider(vec![Cands::List(l, bit)]);
            }
        }
        for (kind, v, runs, channel, bit) in [
            (CK_CHANNEL, &f.channel, &by_run.channel, true, I_CHANNEL),
            (CK_CALLER, &f.caller, &by_run.caller, false, I_CALLER),
        ] {
            if let (Some(l), Some(runs)) = (posting(kind, v), runs) {
                // A call in the own-value list has that value (its own one
                // is set, so it is its scope's).
                let mut c = vec![Cands::List(l, bit)];
                if !runs.is_empty() {
                    c.push(Cands::Positions(self.run_calls(src, runs, channel)));
                }
                consider(c);
            }
        }
        best.into_iter()
            .map(|c| match c {
                Cands::List(l, i) => Cands::List(img.narrow_calls(l, since, until), i),
                Cands::Positions(p) => Cands::Positions(
                    p.into_iter()
                        .filter(|&p| {
                            let ts = img.call_lazy(p).ts();
                            since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts <= u)
                        })
                        .collect(),
                ),
            })
            .filter(|c| c.len() > 0)
            .collect()
    }

    /// Every candidate list of every image, as (image, list).
    fn call_streams(
        &self,
        f: &CallFilter,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> Vec<(usize, Cands)> {
        let by_run = self.by_run(f);
        let mut out = Vec::new();
        for src in 0..self.srcs.len() {
            for c in self.call_candidates(src, f, &by_run, since, until) {
                out.push((src, c));
            }
        }
        out
    }

    fn cand_pos(&self, src: usize, c: &Cands, i: u32) -> u32 {
        match c {
            Cands::List(l, _) => self.srcs[src].img.call_at(l, i),
            Cands::Positions(p) => p[i as usize],
        }
    }

    /// Calls matching `f`, one page, in the page's order.
    pub fn calls(&self, f: &CallFilter, page: CallPage) -> Result<Vec<Call>> {
        let newest = page.order == CallOrder::NewestFirst;
        let (mut since, mut until) = (f.since, f.until);
        if let Some(c) = page.cursor {
            if newest {
                until = Some(until.map_or(c.ts, |u| u.min(c.ts)));
            } else {
                since = Some(since.map_or(c.ts, |s| s.max(c.ts)));
            }
        }
        let streams = self.call_streams(f, since, until);
        // Keys ordered so that the heap's top is the next call of the
        // page: (ts, lsn) for newest first, its negation for oldest first.
        let key = |s: usize, i: u32| -> (i128, i128) {
            let (src, c) = &streams[s];
            let n = c.len();
            let k = if newest { n - 1 - i } else { i };
            let r = self.srcs[*src].img.call_lazy(self.cand_pos(*src, c, k));
            let (ts, lsn) = (r.ts() as i128, r.lsn() as i128);
            if newest {
                (ts, lsn)
            } else {
                (-ts, -lsn)
            }
        };
        let mut heap: BinaryHeap<((i128, i128), usize)> = BinaryHeap::new();
        let mut next = vec![0u32; streams.len()];
        for (s, (_, c)) in streams.iter().enumerate() {
            if c.len() > 0 {
                heap.push((key(s, 0), s));
            }
        }
        let amended = Amended::of(self)?;
        let mut scopes = Scopes::new(self, &amended);
        let limit = page.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((_, s)) = heap.pop() else { break };
            let i = next[s];
            next[s] += 1;
            let (src, cands) = &streams[s];
            if i + 1 < cands.len() {
                heap.push((key(s, i + 1), s));
            }
            let n = cands.len();
            let k = if newest { n - 1 - i } else { i };
            let rec = self.srcs[*src].img.call_lazy(self.cand_pos(*src, cands, k));
            if let Some(c) = page.cursor {
                let at = (rec.ts(), rec.lsn());
                let after = if newest {
                    at < (c.ts, c.lsn)
                } else {
                    at > (c.ts, c.lsn)
                };
                if !after {
                    continue;
                }
            }
            let Some(scope) = scopes.of(&rec, f.include_dry_run) else {
                continue;
            };
            if matches(&rec, &scope, f, cands.implied()) {
                out.push(self.materialize_call(*src, &rec, &scope)?);
            }
        }
        Ok(out)
    }

    /// How many calls match `f`.
    pub fn count_calls(&self, f: &CallFilter) -> Result<u64> {
        let amended = Amended::of(self)?;
        let mut scopes = Scopes::new(self, &amended);
        let by_run = self.by_run(f);
        let need = needed(f);
        let mut n = 0;
        for src in 0..self.srcs.len() {
            let cands = self.call_candidates(src, f, &by_run, f.since, f.until);
            if let Some(l) = self.proven(src, &cands, need) {
                // Every call of the list matches: its length is the count.
                n += u64::from(l.len());
                continue;
            }
            self.each_call_of(src, &cands, f, &mut scopes, |_, _, _| n += 1);
        }
        Ok(n)
    }

    /// The one candidate list of image `src` when it proves every call in
    /// it matches: no call of the image names a run (so each one's scope
    /// is its own and none is a dry run's), and the list implies every key
    /// the filter sets.
    fn proven(&self, src: usize, cands: &[Cands], need: Implied) -> Option<CallList> {
        match cands {
            [Cands::List(l, implied)] if implied & need == need => {
                (!self.srcs[src].img.has_run_calls()).then_some(*l)
            }
            _ => None,
        }
    }

    /// How many calls match `f`, per value of `by`: most first, then by
    /// value.
    pub fn count_calls_by(&self, f: &CallFilter, by: CallKey) -> Result<Vec<(String, u64)>> {
        let (at, kind) = match by {
            CallKey::Tool => (AT_TOOL, CK_TOOL),
            CallKey::Engine => (AT_ENGINE, CK_ENGINE),
            CallKey::Channel => (AT_CHANNEL, CK_CHANNEL),
            CallKey::Caller => (AT_CALLER, CK_CALLER),
            CallKey::Workspace => (AT_WORKSPACE, CK_WORKSPACE),
            CallKey::Status => (AT_STATUS, CK_STATUS),
            CallKey::ErrorType => (AT_ERROR_TYPE, CK_ERROR_TYPE),
            CallKey::RunId => (AT_RUN, CK_RUN),
        };
        let amended = Amended::of(self)?;
        let mut scopes = Scopes::new(self, &amended);
        let by_run = self.by_run(f);
        let need = needed(f);
        let mut by_ref: HashMap<(usize, FieldRef), u64> = HashMap::new();
        let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
        let add = |counts: &mut HashMap<Vec<u8>, u64>, v: &[u8], n: u64| match counts.get_mut(v) {
            Some(c) => *c += n,
            None => {
                counts.insert(v.to_vec(), n);
            }
        };
        for src in 0..self.srcs.len() {
            let cands = self.call_candidates(src, f, &by_run, f.since, f.until);
            if let Some(l) = self.proven(src, &cands, need) {
                if let Some(per_key) = self.count_by_lists(src, l, kind) {
                    for (v, n) in per_key {
                        add(&mut counts, v, n);
                    }
                    continue;
                }
            }
            self.each_call_of(src, &cands, f, &mut scopes, |src, c, scope| {
                let own = match by {
                    CallKey::Channel => scope.own_channel(c),
                    CallKey::Caller => scope.own_caller(c),
                    _ => true,
                };
                if own {
                    *by_ref.entry((src, c.field_ref(at))).or_default() += 1;
                } else {
                    let v = if by == CallKey::Channel {
                        scope.channel(c)
                    } else {
                        scope.caller(c)
                    };
                    add(&mut counts, v, 1);
                }
            });
        }
        for ((src, (off, len)), n) in by_ref {
            add(&mut counts, self.srcs[src].img.heap_str(off, len), n);
        }
        let mut out: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(k, n)| (String::from_utf8_lossy(&k).into_owned(), n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// The calls of `list` (every one a match) of image `src` counted per
    /// key of `kind` from the posting lists, without reading a call record:
    /// for each key, how many of its positions are in `list` (a range of
    /// positions for an `All` list, a bitmap of them for a posting list);
    /// calls with no value for `kind` count under `""`. `None` when a
    /// record-by-record count is cheaper (a short list beside many keyed
    /// calls) or the image is damaged.
    fn count_by_lists(
        &self,
        src: usize,
        list: CallList,
        kind: u32,
    ) -> Option<Vec<(&'a [u8], u64)>> {
        let img = self.srcs[src].img;
        let total = u64::from(list.len());
        if total == 0 {
            return Some(Vec::new());
        }
        let keys = img.call_keys(kind);
        let mut out = Vec::with_capacity(keys.len() + 1);
        let mut counted = 0u64;
        match img.post_positions(&list) {
            // A range of positions: two binary searches per key.
            None => {
                let (lo, hi) = (img.call_at(&list, 0), img.call_at(&list, list.len() - 1));
                for (v, kl) in keys {
                    let p = img.post_positions(&kl)?;
                    let n = (p.rank(hi.saturating_add(1)) - p.rank(lo)) as u64;
                    if n > 0 {
                        out.push((v, n));
                        counted += n;
                    }
                }
            }
            Some(pos) => {
                let (lo, hi) = (pos.get(0), pos.get(pos.len() - 1));
                // The keyed calls in the list's span, each tested against
                // the bitmap: worth it unless the list is much shorter
                // (then reading its records costs less).
                let spans: Vec<_> = keys
                    .into_iter()
                    .map(|(v, kl)| {
                        let p = img.post_positions(&kl)?;
                        let (a, b) = (p.rank(lo), p.rank(hi.saturating_add(1)));
                        Some((v, p, a, b))
                    })
                    .collect::<Option<_>>()?;
                let work: u64 = spans.iter().map(|&(_, _, a, b)| (b - a) as u64).sum();
                if work > total.saturating_mul(32) {
                    return None;
                }
                let base = lo as usize;
                let mut bits = vec![0u64; (hi - lo) as usize / 64 + 1];
                for p in pos.iter() {
                    let i = p.wrapping_sub(lo) as usize;
                    if let Some(w) = bits.get_mut(i / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
                for (v, p, a, b) in spans {
                    let mut n = 0u64;
                    for i in a..b {
                        let j = p.get(i) as usize - base;
                        n += (bits[j / 64] >> (j % 64)) & 1;
                    }
                    if n > 0 {
                        out.push((v, n));
                        counted += n;
                    }
                }
            }
        }
        if counted < total {
            out.push((&b""[..], total - counted));
        }
        Some(out)
    }

    /// Every matching call (any order), with its image and scope.
    fn each_call<'s>(
        &self,
        f: &CallFilter,
        amended: &'s Amended,
        mut each: impl FnMut(usize, &LazyCall<'a>, &Scope<'s>),
    ) where
        'a: 's,
    {
        let mut scopes = Scopes::new(self, amended);
        for (src, cands) in self.call_streams(f, f.since, f.until) {
            self.each_call_of(src, std::slice::from_ref(&cands), f, &mut scopes, &mut each);
        }
    }

    /// Every matching call of image `src`'s candidates.
    fn each_call_of<'s>(
        &self,
        src: usize,
        cands: &[Cands],
        f: &CallFilter,
        scopes: &mut Scopes<'_, 'a, 's>,
        mut each: impl FnMut(usize, &LazyCall<'a>, &Scope<'s>),
    ) where
        'a: 's,
    {
        let img = self.srcs[src].img;
        for cands in cands {
            let implied = cands.implied();
            for i in 0..cands.len() {
                let rec = img.call_lazy(self.cand_pos(src, cands, i));
                if let Some(scope) = scopes.of(&rec, f.include_dry_run) {
                    if matches(&rec, &scope, f, implied) {
                        each(src, &rec, &scope);
                    }
                }
            }
        }
    }

    /// The call of a record: its event read back, fields resolved.
    fn materialize_call(&self, src: usize, rec: &LazyCall<'a>, scope: &Scope<'_>) -> Result<Call> {
        let seq = self.srcs[src].seq;
        let ev = self.event_at(seq, rec.off())?;
        let (source, mut call) = match ev.data {
            EventData::ToolCall(c) => (CallSource::ToolCall, *c),
            EventData::RunLog(l) => (CallSource::RunLog, call_of_payload(l.payload)),
            _ => {
                return Err(Error::Corrupt {
                    segment: format!("segment {seq}"),
                    offset: rec.off(),
                    reason: "index points at an event that is not a tool call".into(),
                })
            }
        };
        if !scope.own_channel(rec) {
            call.channel_id = String::from_utf8_lossy(scope.channel(rec)).into_owned();
        }
        if !scope.own_caller(rec) {
            call.caller_id = String::from_utf8_lossy(scope.caller(rec)).into_owned();
        }
        Ok(Call {
            lsn: rec.lsn(),
            ts: ev.ts,
            source,
            run_id: ev.run_id,
            call,
            extra: ev.extra,
        })
    }

    /// Failing tool calls (status `error`) with ts in `since..=until`,
    /// grouped by (channel, tool, error type): calls of stored runs and
    /// calls outside any run alike (see the module docs).
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
        let f = CallFilter {
            status: Some("error".into()),
            since,
            until,
            include_dry_run,
            ..CallFilter::default()
        };
        type Bytes<'b> = &'b [u8];
        let amended = Amended::of(self)?;
        let mut groups: HashMap<(Bytes<'_>, Bytes<'_>, Bytes<'_>), Acc> = HashMap::new();
        self.each_call(&f, &amended, |_, c, scope| {
            let ts = c.ts();
            let acc = groups
                .entry((scope.channel(c), c.tool(), c.error_type()))
                .or_insert_with(|| Acc {
                    count: 0,
                    first: ts,
                    last: ts,
                    dur_sum: 0.0,
                    dur_n: 0,
                    callers: BTreeSet::new(),
                    runs: BTreeSet::new(),
                });
            acc.count += 1;
            acc.first = acc.first.min(ts);
            acc.last = acc.last.max(ts);
            if let Some(d) = c.duration_ms() {
                acc.dur_sum += d;
                acc.dur_n += 1;
            }
            keep(&mut acc.callers, scope.caller(c));
            if c.has_run() {
                keep(&mut acc.runs, c.run_id());
            }
        });
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

/// A `run_log` tool call's fields from its payload (the `tool_call`
/// event's names; status `ok` when absent); the payload stays whole.
fn call_of_payload(payload: Json) -> ToolCall {
    let v: serde_json::Value = serde_json::from_str(payload.as_str()).unwrap_or_default();
    let o = v.as_object();
    let raw = |k: &str| -> String {
        match o.and_then(|o| o.get(k)) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let num = |k: &str| o.and_then(|o| o.get(k));
    let status = match raw("status") {
        s if s.is_empty() => "ok".to_string(),
        s => s,
    };
    ToolCall {
        call_id: raw("call_id"),
        channel_id: String::new(),
        caller_id: String::new(),
        workspace_id: raw("workspace_id"),
        request_id: raw("request_id"),
        tool: raw("tool"),
        engine: raw("engine"),
        status,
        error_type: raw("error_type"),
        error: raw("error"),
        duration_ms: num("duration_ms")
            .and_then(|d| d.as_f64())
            .filter(|d| d.is_finite()),
        input_bytes: num("input_bytes").and_then(|d| d.as_u64()),
        result_bytes: num("result_bytes").and_then(|d| d.as_u64()),
        exit_code: num("exit_code").and_then(|d| d.as_i64()),
        http_status: num("http_status")
            .and_then(|d| d.as_u64())
            .and_then(|d| u16::try_from(d).ok())
            .filter(|d| *d <= 999),
        input_hash: raw("input_hash"),
        args_summary: raw("args_summary"),
        payload,
    }
}

impl Engine {
    /// Tool calls matching `f`, one page (see [`View::calls`]).
    pub fn calls(&mut self, f: &CallFilter, page: CallPage) -> Result<Vec<Call>> {
        self.query(|v| v.calls(f, page))
    }
    pub fn count_calls(&mut self, f: &CallFilter) -> Result<u64> {
        self.query(|v| v.count_calls(f))
    }
    pub fn count_calls_by(&mut self, f: &CallFilter, by: CallKey) -> Result<Vec<(String, u64)>> {
        self.query(|v| v.count_calls_by(f, by))
    }
}

impl PartialOrd for CallCursor {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for CallCursor {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.ts, self.lsn).cmp(&(o.ts, o.lsn))
    }
}
