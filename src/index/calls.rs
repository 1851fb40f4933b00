//! The tool-call part of an index image: every tool call of the image
//! (`tool_call` events, and `run_log`s whose `event_type` is `tool_call`)
//! as a fixed-size record in time order (CALLS), and posting lists per
//! key (CKEYS → CPOST) for the filters the gateways' own tables indexed:
//! session/channel, engine and tool, tool, agent/caller, workspace, status
//! (errors), error type and run. A list holds CALLS positions ascending,
//! which is time order, so a time range is two binary searches.
//! Byte layout in docs/index-format.md.

use foldhash::{HashMap, HashMapExt};

use serde_json::value::RawValue;
use std::borrow::Cow;

use super::image::{le_u32, le_u64, Image, StrRef, S_CALLS, S_CKEYS, S_CPOST};
use super::log_call::{self, LogCall};
use super::pool::{cap_of, cleared};
use crate::event::borrowed::DataRef;
use crate::event::{Event, Micros};

/// Keys between two fence entries (see `Image::call_posting`).
const FENCE_STEP: usize = 32;

/// Every `FENCE_STEP`th CKEYS key, in memory and contiguous: a lookup
/// finds its stretch here (in cache) and reads only that stretch of the
/// section.
#[derive(Debug, Default)]
pub struct Fence {
    kinds: Vec<u32>,
    /// Key `i` is `bytes[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    bytes: Vec<u8>,
}

impl Fence {
    fn key(&self, i: usize) -> &[u8] {
        &self.bytes[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// How many fence keys are at or before `(kind, key)`.
    fn after(&self, kind: u32, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0usize, self.kinds.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let le = match self.kinds[mid].cmp(&kind) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => self.key(mid) <= key,
            };
            if le {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Call posting-list key kinds.
pub const CK_TOOL: u32 = 1;
/// Engine and tool together: the key is [`engine_tool_key`].
pub const CK_ENGINE_TOOL: u32 = 2;
pub const CK_CHANNEL: u32 = 3;
pub const CK_CALLER: u32 = 4;
pub const CK_WORKSPACE: u32 = 5;
pub const CK_STATUS: u32 = 6;
pub const CK_ERROR_TYPE: u32 = 7;
pub const CK_RUN: u32 = 8;
pub const CK_ENGINE: u32 = 9;

/// Call record flags.
/// The call is a `run_log` (its fields read from its payload).
pub const CF_RUN_LOG: u64 = 1;
/// `duration_ms` holds a number.
pub const CF_DURATION: u64 = 2;

/// The (engine, tool) posting key: engine's length, `:`, engine, tool.
/// Unambiguous whatever bytes the names hold.
pub fn engine_tool_key(engine: &[u8], tool: &[u8]) -> Vec<u8> {
    let mut k = format!("{}:", engine.len()).into_bytes();
    k.extend_from_slice(engine);
    k.extend_from_slice(tool);
    k
}

/// What the index keeps of a tool call (borrowed from the event where it
/// can be: the builder only interns these, so copies were waste).
#[derive(Debug, Clone, PartialEq)]
pub struct CallEntry<'a> {
    pub from_log: bool,
    pub channel: Cow<'a, str>,
    pub caller: Cow<'a, str>,
    pub workspace: Cow<'a, str>,
    pub tool: Cow<'a, str>,
    pub engine: Cow<'a, str>,
    pub status: Cow<'a, str>,
    pub error_type: Cow<'a, str>,
    pub duration_ms: Option<f64>,
}

/// A payload value as text: a string's contents, `""` for null or absent,
/// anything else its JSON text (so `"tool":5` groups as `5`).
pub fn raw_text(v: Option<&RawValue>) -> String {
    raw_text_cow(v.map(RawValue::get)).into_owned()
}

/// [`raw_text`] of a value's JSON text, borrowed from the payload unless
/// the string has escapes.
fn raw_text_cow(v: Option<&str>) -> Cow<'_, str> {
    let Some(t) = v else {
        return Cow::Borrowed("");
    };
    match t.as_bytes().first() {
        // A JSON string with no escape: its contents are the bytes between
        // the quotes (the payload was validated when it was stored).
        Some(b'"') if t.len() >= 2 && !t.contains('\\') => Cow::Borrowed(&t[1..t.len() - 1]),
        Some(b'"') => Cow::Owned(serde_json::from_str::<String>(t).unwrap_or_default()),
        Some(b'n') if t == "null" => Cow::Borrowed(""),
        _ => Cow::Borrowed(t),
    }
}

/// The `event_type` of a `run_log` that the index reads as a tool call
/// (its payload's JSON text parsed, so an index build checks that text).
pub const LOG_CALL_EVENT_TYPE: &str = "tool_call";

/// The call an event is, if it is one. A `run_log` tool call's fields are
/// read from its payload under the `tool_call` event's names (its status
/// is the payload's, `ok` when absent), except its channel and caller,
/// which are always its run's.
pub fn call_entry(ev: &Event) -> Option<CallEntry<'_>> {
    call_entry_of(&DataRef::of(&ev.data))
}

/// [`call_entry`] of an event's data read in place (borrowed from where
/// the data lies, as the index build reads stored events).
pub(crate) fn call_entry_of<'a>(data: &DataRef<'a>) -> Option<CallEntry<'a>> {
    match data {
        DataRef::ToolCall(c) => Some(CallEntry {
            from_log: false,
            channel: Cow::Borrowed(c.channel_id),
            caller: Cow::Borrowed(c.caller_id),
            workspace: Cow::Borrowed(c.workspace_id),
            tool: Cow::Borrowed(c.tool),
            engine: Cow::Borrowed(c.engine),
            status: Cow::Borrowed(c.status),
            error_type: Cow::Borrowed(c.error_type),
            duration_ms: c.duration_ms,
        }),
        DataRef::RunLog(l) if l.event_type == LOG_CALL_EVENT_TYPE => {
            Some(log_call_entry(log_call::read(l.payload)))
        }
        _ => None,
    }
}

/// The call a `run_log` tool call is, from its payload's fields (read by
/// [`log_call::read`], or checked and read in one parse by an index
/// build, `index::decode_indexed`).
pub(crate) fn log_call_entry(p: LogCall<'_>) -> CallEntry<'_> {
    // A payload that is not an object is a call with no known field.
    let status = match raw_text_cow(p.status) {
        s if s.is_empty() => Cow::Borrowed("ok"),
        s => s,
    };
    // Its channel and caller are its run's (resolved by queries).
    CallEntry {
        from_log: true,
        channel: Cow::Borrowed(""),
        caller: Cow::Borrowed(""),
        workspace: raw_text_cow(p.workspace_id),
        tool: raw_text_cow(p.tool),
        engine: raw_text_cow(p.engine),
        status,
        error_type: raw_text_cow(p.error_type),
        duration_ms: p
            .duration_ms
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite()),
    }
}

/// One call as the builder holds it: interned string handles.
pub(crate) struct BCall {
    pub ts: Micros,
    pub lsn: u64,
    pub off: u64,
    pub flags: u64,
    pub duration_ms: f64,
    /// run, channel, caller, workspace, tool, engine, status, error_type.
    pub strs: [u32; 8],
}

const RUN: usize = 0;
const CHANNEL: usize = 1;
const CALLER: usize = 2;
const WORKSPACE: usize = 3;
const TOOL: usize = 4;
const ENGINE: usize = 5;
const STATUS: usize = 6;
const ERROR_TYPE: usize = 7;

/// Write CALLS, CKEYS and CPOST. `names[h]` is interned string `h`,
/// `rank(h)` its place in the byte order of all of them
/// ([`super::intern::Interner::ranks`]); `put(h)` its heap place;
/// `put_key(h)` the heap place of its bytes as a key and `put_text(s)` that
/// of any other key (the composite engine-and-tool keys): keys share their
/// places among themselves, not with the records' strings.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sections(
    calls: &[BCall],
    names: &super::intern::Interner,
    rank: &dyn Fn(u32) -> u32,
    put: &mut dyn FnMut(u32) -> StrRef,
    put_key: &mut dyn FnMut(u32) -> StrRef,
    put_text: &mut dyn FnMut(&[u8]) -> StrRef,
    kept: &mut CallBufs,
    [mut s_calls, mut s_keys, mut s_post]: [Vec<u8>; 3],
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    const NO: u32 = u32::MAX;
    // The (ts, lsn) order, sorted as small keys: sorting the 72-byte
    // records themselves was most of this function's sort.
    let mut by_ts = cleared(&mut kept.by_ts, calls.len());
    by_ts.extend(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| (c.ts, c.lsn, i as u32)),
    );
    by_ts.sort_unstable();
    s_calls.clear();
    s_calls.reserve(calls.len() * CALL_SIZE);
    let empty = |h: u32| names.name(h).is_empty();
    // Every key found by (kind, handle) in a table indexed by both (the
    // engine-and-tool pairs in a map): the map of (kind, handle, handle)
    // it replaces hashed 7-9 keys a call. The lists are flat: each call's
    // keys noted in a row, each key's count summed, then every position
    // written once into CPOST at its key's place (a `Vec` per key, grown
    // a push at a time, was ~8% of this function in its regrowth and a
    // cache miss per push: docs/benchmarks.md, "Index lag, idx41 round").
    let n = names.len();
    // Holds a list's place plus one (0: none yet).
    let mut list_of = cleared(&mut kept.list_of, 0);
    list_of.resize((CK_ENGINE as usize + 1) * n, 0);
    let mut pair_list: HashMap<(u32, u32), u32> = HashMap::new();
    // Per key: (kind, handle, second handle of a composite key, count).
    let mut lists = cleared(&mut kept.lists, 0);
    // Per CALLS position: the keys its position goes to (`NO`: none).
    let mut rows = cleared(&mut kept.rows, calls.len());
    for &(_, _, i) in &by_ts {
        let c = &calls[i as usize];
        let mut rec = [0u8; CALL_SIZE];
        for (j, v) in [c.ts as u64, c.lsn, c.off, c.duration_ms.to_bits(), c.flags]
            .into_iter()
            .enumerate()
        {
            rec[8 * j..8 * j + 8].copy_from_slice(&v.to_le_bytes());
        }
        for (j, &h) in c.strs.iter().enumerate() {
            let r = put(h);
            rec[40 + 8 * j..44 + 8 * j].copy_from_slice(&r.0.to_le_bytes());
            rec[44 + 8 * j..48 + 8 * j].copy_from_slice(&r.1.to_le_bytes());
        }
        s_calls.extend_from_slice(&rec);
        let mut row = [NO; KEYS_PER_CALL];
        for (j, (kind, field)) in [
            (CK_TOOL, TOOL),
            (CK_ENGINE, ENGINE),
            (CK_CHANNEL, CHANNEL),
            (CK_CALLER, CALLER),
            (CK_WORKSPACE, WORKSPACE),
            (CK_STATUS, STATUS),
            (CK_ERROR_TYPE, ERROR_TYPE),
            (CK_RUN, RUN),
        ]
        .into_iter()
        .enumerate()
        {
            let h = c.strs[field];
            if !empty(h) {
                let slot = &mut list_of[kind as usize * n + h as usize];
                if *slot == 0 {
                    lists.push((kind, h, NO, 0));
                    *slot = lists.len() as u32;
                }
                let at = *slot - 1;
                lists[at as usize].3 += 1;
                row[j] = at;
            }
        }
        if !empty(c.strs[ENGINE]) || !empty(c.strs[TOOL]) {
            let (e, t) = (c.strs[ENGINE], c.strs[TOOL]);
            let at = *pair_list.entry((e, t)).or_insert_with(|| {
                lists.push((CK_ENGINE_TOOL, e, t, 0));
                lists.len() as u32 - 1
            });
            lists[at as usize].3 += 1;
            row[KEYS_PER_CALL - 1] = at;
        }
        rows.push(row);
    }
    kept.list_of = list_of;
    // Sorted by (kind, key bytes): the ranks order a kind's single keys;
    // the composite keys are built and compared as bytes (few of them).
    let name = |h: u32| names.name(h).as_bytes();
    let mut keys: Vec<CallKey> = lists
        .iter()
        .enumerate()
        .map(|(at, &(kind, a, b, _))| CallKey {
            kind,
            handle: a,
            composite: (kind == CK_ENGINE_TOOL).then(|| engine_tool_key(name(a), name(b))),
            list: at as u32,
        })
        .collect();
    keys.sort_unstable_by(|x, y| {
        x.kind
            .cmp(&y.kind)
            .then_with(|| match (&x.composite, &y.composite) {
                (Some(kx), Some(ky)) => kx.cmp(ky),
                _ => rank(x.handle).cmp(&rank(y.handle)),
            })
    });
    // Each key's first CPOST place, in key order; then every position
    // written at its keys' next places (ascending within a key, as the
    // rows are in CALLS order).
    let mut next = cleared(&mut kept.next, lists.len());
    next.resize(lists.len(), 0);
    s_keys.clear();
    s_keys.reserve(keys.len() * 24);
    let mut n_post = 0u64;
    for CallKey {
        kind,
        handle,
        composite,
        list,
    } in &keys
    {
        let r = match composite {
            Some(key) => put_text(key),
            None => put_key(*handle),
        };
        let len = lists[*list as usize].3;
        s_keys.extend_from_slice(&kind.to_le_bytes());
        s_keys.extend_from_slice(&len.to_le_bytes());
        s_keys.extend_from_slice(&r.0.to_le_bytes());
        s_keys.extend_from_slice(&r.1.to_le_bytes());
        s_keys.extend_from_slice(&n_post.to_le_bytes());
        next[*list as usize] = n_post as u32;
        n_post += u64::from(len);
    }
    s_post.clear();
    s_post.resize(n_post as usize * 4, 0);
    for (pos, row) in rows.iter().enumerate() {
        for &slot in row {
            if slot != NO {
                let at = &mut next[slot as usize];
                let b = *at as usize * 4;
                s_post[b..b + 4].copy_from_slice(&(pos as u32).to_le_bytes());
                *at += 1;
            }
        }
    }
    kept.by_ts = by_ts;
    kept.lists = lists;
    kept.rows = rows;
    kept.next = next;
    (s_calls, s_keys, s_post)
}

/// The tables [`sections`] fills, kept across builds (`super::pool`).
#[derive(Default)]
pub(crate) struct CallBufs {
    by_ts: Vec<(Micros, u64, u32)>,
    list_of: Vec<u32>,
    lists: Vec<(u32, u32, u32, u32)>,
    rows: Vec<[u32; KEYS_PER_CALL]>,
    next: Vec<u32>,
}

impl CallBufs {
    pub(crate) fn kept_bytes(&self) -> usize {
        cap_of(&self.by_ts)
            + cap_of(&self.list_of)
            + cap_of(&self.lists)
            + cap_of(&self.rows)
            + cap_of(&self.next)
    }
}

/// A call's keys: its eight single keys and the engine-and-tool pair.
const KEYS_PER_CALL: usize = 9;

/// Bytes of a CALLS record (docs/index-format.md).
const CALL_SIZE: usize = super::image::REC_SIZE[S_CALLS];

/// A CKEYS key being written: its kind, the interned string it is (the
/// engine's, for a composite key), the composite key's bytes, its list's
/// place in the lists found.
struct CallKey {
    kind: u32,
    handle: u32,
    composite: Option<Vec<u8>>,
    list: u32,
}

/// One call record of an image.
#[derive(Debug, Clone, Copy)]
pub struct CallRec<'a> {
    pub ts: Micros,
    pub lsn: u64,
    /// Offset of the event's frame in its segment.
    pub off: u64,
    /// `None` when the call had no numeric duration.
    pub duration_ms: Option<f64>,
    pub flags: u64,
    pub run_id: &'a [u8],
    pub channel: &'a [u8],
    pub caller: &'a [u8],
    pub workspace: &'a [u8],
    pub tool: &'a [u8],
    pub engine: &'a [u8],
    pub status: &'a [u8],
    pub error_type: &'a [u8],
}

impl CallRec<'_> {
    pub fn from_log(&self) -> bool {
        self.flags & CF_RUN_LOG != 0
    }
}

/// A call record read field by field, only the fields asked for (what the
/// queries' inner loops use: a filter on one key reads that key only).
#[derive(Clone, Copy)]
pub struct LazyCall<'a> {
    img: &'a Image,
    rec: &'a [u8],
}

/// Where a string field of a call record is (its heap reference, for
/// grouping within one image without reading the bytes).
pub type FieldRef = (u32, u32);

impl<'a> LazyCall<'a> {
    pub fn ts(&self) -> Micros {
        le_u64(self.rec, 0) as i64
    }
    pub fn lsn(&self) -> u64 {
        le_u64(self.rec, 8)
    }
    pub fn off(&self) -> u64 {
        le_u64(self.rec, 16)
    }
    pub fn flags(&self) -> u64 {
        le_u64(self.rec, 32)
    }
    pub fn from_log(&self) -> bool {
        self.flags() & CF_RUN_LOG != 0
    }
    pub fn duration_ms(&self) -> Option<f64> {
        (self.flags() & CF_DURATION != 0).then(|| f64::from_bits(le_u64(self.rec, 24)))
    }
    fn s(&self, at: usize) -> &'a [u8] {
        self.img.str_at(self.rec, at)
    }
    fn empty(&self, at: usize) -> bool {
        le_u32(self.rec, at + 4) == 0
    }
    /// The heap reference of the string at `at` (equal strings of one
    /// image share it).
    pub fn field_ref(&self, at: usize) -> FieldRef {
        (le_u32(self.rec, at), le_u32(self.rec, at + 4))
    }
    pub fn run_id(&self) -> &'a [u8] {
        self.s(40)
    }
    pub fn has_run(&self) -> bool {
        !self.empty(40)
    }
    pub fn channel(&self) -> &'a [u8] {
        self.s(48)
    }
    pub fn channel_is_empty(&self) -> bool {
        self.empty(48)
    }
    pub fn caller(&self) -> &'a [u8] {
        self.s(56)
    }
    pub fn caller_is_empty(&self) -> bool {
        self.empty(56)
    }
    pub fn workspace(&self) -> &'a [u8] {
        self.s(64)
    }
    pub fn tool(&self) -> &'a [u8] {
        self.s(72)
    }
    pub fn engine(&self) -> &'a [u8] {
        self.s(80)
    }
    pub fn status(&self) -> &'a [u8] {
        self.s(88)
    }
    pub fn error_type(&self) -> &'a [u8] {
        self.s(96)
    }
    /// The string of a field by its record offset (see `field_ref`).
    pub fn field(&self, at: usize) -> &'a [u8] {
        self.s(at)
    }
}

/// Record offsets of a call's string fields (for [`LazyCall::field_ref`]).
pub const AT_RUN: usize = 40;
pub const AT_CHANNEL: usize = 48;
pub const AT_CALLER: usize = 56;
pub const AT_WORKSPACE: usize = 64;
pub const AT_TOOL: usize = 72;
pub const AT_ENGINE: usize = 80;
pub const AT_STATUS: usize = 88;
pub const AT_ERROR_TYPE: usize = 96;

/// CALLS positions of a posting list, little-endian u32s.
#[derive(Debug, Clone, Copy)]
pub struct PostSlice<'a>(&'a [u8]);

impl PostSlice<'_> {
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, i: usize) -> u32 {
        le_u32(self.0, i * 4)
    }
    /// How many positions are below `p` (the list is ascending).
    pub fn rank(&self, p: u32) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid) < p {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// A list of CALLS positions: all of them from `start`, or a run of CPOST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallList {
    All { start: u32, len: u32 },
    Post { start: u32, len: u32 },
}

impl CallList {
    pub fn len(&self) -> u32 {
        match *self {
            CallList::All { len, .. } | CallList::Post { len, .. } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn start(&self) -> u32 {
        match *self {
            CallList::All { start, .. } | CallList::Post { start, .. } => start,
        }
    }

    fn with(&self, start: u32, len: u32) -> CallList {
        match self {
            CallList::All { .. } => CallList::All { start, len },
            CallList::Post { .. } => CallList::Post { start, len },
        }
    }
}

impl Image {
    pub fn n_calls(&self) -> u32 {
        self.count(S_CALLS) as u32
    }

    /// The call record at CALLS position `i`.
    pub fn call(&self, i: u32) -> CallRec<'_> {
        let r = self.rec(S_CALLS, i as usize);
        let flags = le_u64(r, 32);
        CallRec {
            ts: le_u64(r, 0) as i64,
            lsn: le_u64(r, 8),
            off: le_u64(r, 16),
            duration_ms: (flags & CF_DURATION != 0).then(|| f64::from_bits(le_u64(r, 24))),
            flags,
            run_id: self.str_at(r, 40),
            channel: self.str_at(r, 48),
            caller: self.str_at(r, 56),
            workspace: self.str_at(r, 64),
            tool: self.str_at(r, 72),
            engine: self.str_at(r, 80),
            status: self.str_at(r, 88),
            error_type: self.str_at(r, 96),
        }
    }

    /// A string of the heap by its reference (see `LazyCall::field_ref`).
    pub fn heap_str(&self, off: u32, len: u32) -> &[u8] {
        let mut rec = [0u8; 8];
        rec[..4].copy_from_slice(&off.to_le_bytes());
        rec[4..].copy_from_slice(&len.to_le_bytes());
        // `str_at` checks the bounds and the block CRC; the bytes it
        // returns live in the image, not in `rec`.
        self.str_at(&rec, 0)
    }

    /// The call record at CALLS position `i`, read lazily.
    pub fn call_lazy(&self, i: u32) -> LazyCall<'_> {
        LazyCall {
            img: self,
            rec: self.rec(S_CALLS, i as usize),
        }
    }

    /// Just the call's ts (for binary searches).
    fn call_ts(&self, i: u32) -> Micros {
        le_u64(self.rec(S_CALLS, i as usize), 0) as i64
    }

    /// Every call of the image.
    pub fn all_calls(&self) -> CallList {
        CallList::All {
            start: 0,
            len: self.n_calls(),
        }
    }

    /// The calls with `key` for `kind` (empty if none).
    pub fn call_posting(&self, kind: u32, key: &[u8]) -> CallList {
        let n = self.count(S_CKEYS);
        // The stretch of CKEYS that may hold the key, from the fence.
        let fence = self.ckey_fence.get_or_init(|| self.build_ckey_fence());
        let j = fence.after(kind, key);
        let (mut lo, mut hi) = (j.saturating_sub(1) * FENCE_STEP, (j * FENCE_STEP).min(n));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let r = self.rec(S_CKEYS, mid);
            let ord = le_u32(r, 0)
                .cmp(&kind)
                .then_with(|| self.str_at(r, 8).cmp(key));
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return CallList::Post {
                        start: le_u64(r, 16) as u32,
                        len: le_u32(r, 4),
                    }
                }
            }
        }
        CallList::Post { start: 0, len: 0 }
    }

    /// Every key of `kind`, with its list, in key order.
    pub fn call_keys(&self, kind: u32) -> Vec<(&[u8], CallList)> {
        let n = self.count(S_CKEYS);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if le_u32(self.rec(S_CKEYS, mid), 0) < kind {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        for i in lo..n {
            let r = self.rec(S_CKEYS, i);
            if le_u32(r, 0) != kind {
                break;
            }
            out.push((
                self.str_at(r, 8),
                CallList::Post {
                    start: le_u64(r, 16) as u32,
                    len: le_u32(r, 4),
                },
            ));
        }
        out
    }

    /// Does any call of the image name a run (its scope may then come
    /// from the run, and a dry run's calls are left out)?
    pub fn has_run_calls(&self) -> bool {
        let keys = self.call_keys(CK_RUN);
        !keys.is_empty()
    }

    /// The CALLS positions of a posting list (ascending), read as one
    /// slice; `None` for an `All` list, or when the image is damaged (it is
    /// poisoned then, and the query asked again).
    pub fn post_positions(&self, list: &CallList) -> Option<PostSlice<'_>> {
        let CallList::Post { start, len } = *list else {
            return None;
        };
        let (off, n) = (start as usize * 4, len as usize * 4);
        let b = self.read(S_CPOST, off, n);
        (b.len() == n).then_some(PostSlice(b))
    }

    /// Every `FENCE_STEP`th key of CKEYS. A block that fails its CRC reads
    /// as zeros and poisons the image (the engine rebuilds it), so a fence
    /// built from it is not trusted for long.
    fn build_ckey_fence(&self) -> Fence {
        let mut f = Fence::default();
        for i in (0..self.count(S_CKEYS)).step_by(FENCE_STEP) {
            let r = self.rec(S_CKEYS, i);
            f.kinds.push(le_u32(r, 0));
            f.starts.push(f.bytes.len() as u32);
            f.bytes.extend_from_slice(self.str_at(r, 8));
        }
        f.starts.push(f.bytes.len() as u32);
        f
    }

    /// The CALLS position at position `i` of a list.
    pub fn call_at(&self, list: &CallList, i: u32) -> u32 {
        let pos = list.start().saturating_add(i);
        let v = match list {
            CallList::All { .. } => pos,
            CallList::Post { .. } => le_u32(self.rec(S_CPOST, pos as usize), 0),
        };
        if v >= self.n_calls() {
            self.poison();
            return 0;
        }
        v
    }

    /// Narrow a list (time order) to calls with ts in `since..=until`.
    pub fn narrow_calls(
        &self,
        list: CallList,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> CallList {
        let n = list.len();
        let first = |pred: &dyn Fn(Micros) -> bool| {
            let (mut lo, mut hi) = (0u32, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if pred(self.call_ts(self.call_at(&list, mid))) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        let lo = since.map_or(0, |s| first(&|t| t < s));
        let hi = until.map_or(n, |u| first(&|t| t <= u)).max(lo);
        list.with(list.start().saturating_add(lo), hi - lo)
    }
}
