//! The fast path of `append(dict)`: a dict straight to the engine's
//! [`Event`], without writing the whole event as a JSON line and parsing it
//! again (docs/benchmarks.md, "Python binding": that round trip was 80% of
//! a single append's cost).
//!
//! The known fields are read with typed extraction; the free-form ones
//! (`inputs`, `payload`, unknown fields) are written once as JSON text, by
//! the very writer the line path uses ([`convert::write_value`]), so their
//! stored text is byte for byte what the engine's parser would have kept.
//! The event is then checked by the engine's own rules
//! ([`validate_event`]).
//!
//! The fast path never raises and never refuses: whenever a dict is not
//! plainly valid (a missing or unknown `kind`, a value of an unexpected
//! type, a check that fails, a non-str key, an event near the size or depth
//! limits, an `lsn`, a datetime `ts`) it answers
//! `None`, and the caller takes the line path (dict → JSON line → the
//! engine's JSONL parser), which stores it or raises the ValueError naming
//! the field, exactly as before. So what this module accepts is a subset
//! of what the parser accepts, and for that subset it builds the same
//! event (tests/test_direct.py compares the stored bytes of both paths).

use auditlog::event::json::{default_call_status, validate_event};
use auditlog::event::time::parse_rfc3339;
use auditlog::event::{MAX_EVENT_BYTES, MAX_JSON_DEPTH};
use auditlog::{Event, EventData, Json, Micros, RunFinished, RunLog, RunStarted, ToolCall};
use std::cell::Cell;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyInt, PyString};

use crate::convert;
use crate::exact;

/// Bytes a scalar (number, bool, null) takes at most in the line path's
/// JSON, with its separators.
const SCALAR_BOUND: usize = 40;

/// The depth the writer starts a free-form value at. It refuses anything
/// it meets deeper than [`convert::MAX_DEPTH`]: a value whose innermost
/// container is nested `d` levels is met there at `DEPTH_START + d - 1` or,
/// holding something, at `DEPTH_START + d`. So every value nested more
/// than [`MAX_JSON_DEPTH`] levels (which the parser refuses, the event
/// itself being one level more) is refused, and so is one at exactly the
/// limit that holds a value: declined early, never accepted wrongly.
const DEPTH_START: usize = convert::MAX_DEPTH - MAX_JSON_DEPTH + 1;

/// First allocation for a free-form value's JSON text.
const JSON_CAPACITY: usize = 256;

/// A placeholder for [`event_into`] to fill.
pub fn blank() -> Event {
    Event {
        run_id: String::new(),
        ts: 0,
        data: EventData::RunLog(RunLog {
            seq: 0,
            event_type: String::new(),
            payload: Json::null(),
        }),
        extra: Vec::new(),
    }
}

/// The dict as an event, built in the scratch event of its kind (the one
/// this thread built last of that kind, [`with_scratch`], whose strings
/// keep their buffers); building in place also spares moving the `Event`
/// from frame to frame (most of the 7-9% of a single append once spent in
/// `memmove`, docs/benchmarks.md, "Python binding"). `Some`: where it is
/// ([`Scratch::event`]) and its size; `None`: take the line path (the
/// scratch event is then unspecified).
pub fn event_into(
    obj: &Bound<'_, PyAny>,
    now: impl FnOnce() -> Micros,
    scratch: &mut Scratch,
) -> Option<Built> {
    let py = obj.py();
    let d = exact::dict_of(obj)?;
    let names = Names::get(py);
    // `kind` is usually the first key (the contract's order): read from
    // there, else looked up.
    let kind = match convert::first_item(d) {
        Some((k, v)) if k.is(names.key(py, Key::Kind)) => v,
        _ => d.get_item(names.key(py, Key::Kind)).ok()??,
    };
    let at = match names.kind_of(&kind) {
        Some(at) => at,
        None => {
            let text = exact::str_of(&kind)?.to_str().ok()?;
            KINDS.iter().position(|k| *k == text)?
        }
    };
    let out = scratch.events.get_mut(at)?;
    let mut draft = Draft::new(KINDS[at], out)?;
    let mut hint = 0usize;
    // Items borrowed (no reference counts): `take` runs Python code only
    // where it writes free-form JSON, from references of its own.
    convert::for_each_item(
        d,
        || (),
        |k, v| {
            let key = match names.lookup(draft.keys, &mut hint, k) {
                Some(known) => Name::Known(known),
                None => {
                    let text = exact::str_of(k).ok_or(())?.to_str().map_err(drop)?;
                    match Key::of(text) {
                        Some(known) => Name::Known(known),
                        None => Name::Other(text),
                    }
                }
            };
            draft.acc.bytes += 6 * key.text().len() + 4;
            draft.take(py, key, v).ok_or(())
        },
    )
    .ok()?;
    let bytes = draft.acc.bytes;
    if bytes > MAX_EVENT_BYTES {
        return None;
    }
    draft.finish(now);
    validate_event(out).ok()?;
    Some(Built { at, bytes })
}

/// An event [`event_into`] built: where in the [`Scratch`], and the size
/// the stage counts (an upper bound of the size of the JSON line the line
/// path would have made).
#[derive(Clone, Copy)]
pub struct Built {
    at: usize,
    pub bytes: usize,
}

/// Declares [`Key`], every key the fast path reads, with its text.
macro_rules! keys {
    ($($key:ident = $text:literal),* $(,)?) => {
        /// A key of the contract's event shape (docs/contract.md, "Events")
        /// that some kind reads; its number is its bit in [`Draft::seen`].
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        enum Key { $($key),* }

        impl Key {
            /// Every key, in declaration order (`ALL[k as usize] == k`).
            const ALL: &'static [Key] = &[$(Key::$key),*];

            fn of(text: &str) -> Option<Key> {
                match text {
                    $($text => Some(Key::$key),)*
                    _ => None,
                }
            }

            fn text(self) -> &'static str {
                match self {
                    $(Key::$key => $text),*
                }
            }
        }
    };
}

keys! {
    Kind = "kind", RunId = "run_id", Ts = "ts", Lsn = "lsn",
    SkillId = "skill_id", CallerId = "caller_id", ChannelId = "channel_id",
    ParentRunId = "parent_run_id", Inputs = "inputs", DryRun = "dry_run",
    Seq = "seq", EventType = "event_type", Payload = "payload",
    Status = "status", Output = "output", Error = "error",
    ToolCalls = "tool_calls", RuntimeSeconds = "runtime_seconds",
    InputTokens = "input_tokens", OutputTokens = "output_tokens",
    ThinkingTokens = "thinking_tokens", CallId = "call_id",
    WorkspaceId = "workspace_id", RequestId = "request_id", Tool = "tool",
    Engine = "engine", ErrorType = "error_type",
    DurationMs = "duration_ms", InputBytes = "input_bytes",
    ResultBytes = "result_bytes", ExitCode = "exit_code",
    HttpStatus = "http_status", InputHash = "input_hash",
    ArgsSummary = "args_summary",
}

/// The keys each kind reads, in the order a dict usually lists them (the
/// contract's), so that [`Names::lookup`] mostly finds a key at its first
/// comparison. `lsn` is in none: the text path finds it (and declines).
const STARTED_KEYS: &[Key] = &[
    Key::Kind,
    Key::RunId,
    Key::Ts,
    Key::SkillId,
    Key::CallerId,
    Key::ChannelId,
    Key::ParentRunId,
    Key::Inputs,
    Key::DryRun,
];
const LOG_KEYS: &[Key] = &[
    Key::Kind,
    Key::RunId,
    Key::Ts,
    Key::Seq,
    Key::EventType,
    Key::Payload,
];
const FINISHED_KEYS: &[Key] = &[
    Key::Kind,
    Key::RunId,
    Key::Ts,
    Key::Status,
    Key::Output,
    Key::Error,
    Key::ToolCalls,
    Key::RuntimeSeconds,
    Key::InputTokens,
    Key::OutputTokens,
    Key::ThinkingTokens,
];
const CALL_KEYS: &[Key] = &[
    Key::Kind,
    Key::RunId,
    Key::Ts,
    Key::CallId,
    Key::ChannelId,
    Key::CallerId,
    Key::WorkspaceId,
    Key::RequestId,
    Key::Tool,
    Key::Engine,
    Key::Status,
    Key::ErrorType,
    Key::Error,
    Key::DurationMs,
    Key::InputBytes,
    Key::ResultBytes,
    Key::ExitCode,
    Key::HttpStatus,
    Key::InputHash,
    Key::ArgsSummary,
    Key::Payload,
];

/// The kinds an append may give, as `kind` reads them.
const KINDS: [&str; 4] = ["run_started", "run_log", "run_finished", "tool_call"];

/// A dict key: a known one, or another (an unknown field's name).
#[derive(Clone, Copy)]
enum Name<'a> {
    Known(Key),
    Other(&'a str),
}

impl Name<'_> {
    fn text(&self) -> &str {
        match self {
            Name::Known(k) => k.text(),
            Name::Other(t) => t,
        }
    }
}

/// Every [`Key`] and kind as an interned Python string, made once. Python
/// interns the keys of a dict written as a literal (and identifier-like
/// string literals such as `"run_log"`), so the usual key *is* the object
/// here: found by comparing pointers, without asking for its UTF-8 text (a
/// call into the interpreter) and comparing texts (about a tenth of a
/// single append went to reading keys' and values' texts before py29). A
/// key that is not one of these objects is read as text, as before.
struct Names {
    /// Indexed by `Key as usize`.
    keys: Vec<Py<PyString>>,
    /// In the order of [`KINDS`].
    kinds: Vec<Py<PyString>>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

impl Names {
    fn get(py: Python<'_>) -> &'static Names {
        NAMES.get_or_init(py, || Names {
            keys: Key::ALL
                .iter()
                .map(|k| PyString::intern(py, k.text()).unbind())
                .collect(),
            kinds: KINDS
                .iter()
                .map(|k| PyString::intern(py, k).unbind())
                .collect(),
        })
    }

    fn key<'a, 'py>(&'a self, py: Python<'py>, k: Key) -> &'a Bound<'py, PyString> {
        self.keys[k as usize].bind(py)
    }

    /// The kind `v` names (its place in [`KINDS`]), if it is one of the
    /// interned kind strings.
    fn kind_of(&self, v: &Bound<'_, PyAny>) -> Option<usize> {
        self.kinds.iter().position(|k| k.as_ptr() == v.as_ptr())
    }

    /// The key of `keys` that `k` is (the very interned object), looked
    /// for from just after the last one found (`hint`): the dicts of one
    /// kind usually list their keys in one order.
    fn lookup(&self, keys: &[Key], hint: &mut usize, k: &Bound<'_, PyAny>) -> Option<Key> {
        let ptr = k.as_ptr();
        let mut at = *hint;
        for _ in 0..keys.len() {
            if at >= keys.len() {
                at = 0;
            }
            let key = keys[at];
            at += 1;
            if self.keys[key as usize].as_ptr() == ptr {
                *hint = at;
                return Some(key);
            }
        }
        None
    }
}

/// What the dict gave so far, written into the event being built. `seen`
/// has a bit per known key: a second one (two keys that read the same,
/// from str subclasses) takes the line path, whose parser names the
/// duplicate.
struct Draft<'e> {
    seen: u64,
    ts: Option<Micros>,
    ev: &'e mut Event,
    /// The keys this kind reads (for [`Names::lookup`]).
    keys: &'static [Key],
    acc: Acc,
}

/// What reading values adds up.
struct Acc {
    /// Upper bound of the line path's JSON line.
    bytes: usize,
    /// A tool call's status was given (else it follows from its error).
    call_status: bool,
}

impl<'e> Draft<'e> {
    fn new(kind: &str, ev: &'e mut Event) -> Option<Draft<'e>> {
        if !reset_in_place(kind, &mut ev.data) {
            ev.data = fresh_data(kind)?;
        }
        ev.run_id.clear();
        ev.extra.clear();
        let keys = match &ev.data {
            EventData::RunStarted(_) => STARTED_KEYS,
            EventData::RunLog(_) => LOG_KEYS,
            EventData::RunFinished(_) => FINISHED_KEYS,
            EventData::ToolCall(_) => CALL_KEYS,
            EventData::System(_) => return None,
        };
        Some(Draft {
            seen: 0,
            ts: None,
            ev,
            keys,
            acc: Acc {
                bytes: 2,
                call_status: false,
            },
        })
    }

    /// Take one item of the dict.
    fn take(&mut self, py: Python<'_>, key: Name<'_>, v: &Bound<'_, PyAny>) -> Option<()> {
        let key = match key {
            Name::Known(k) => k,
            Name::Other(text) => return self.extra(py, text, v),
        };
        // The keys every kind has.
        match key {
            Key::Kind => {
                self.acc.bytes += SCALAR_BOUND;
                return once(&mut self.seen, key);
            }
            Key::RunId => {
                once(&mut self.seen, key)?;
                return self.acc.text_into(v, &mut self.ev.run_id);
            }
            Key::Ts => {
                once(&mut self.seen, key)?;
                self.ts = self.acc.instant(v)?;
                return Some(());
            }
            // Ignored by the parser, but only once it is known to be JSON:
            // rare (a replayed event appended again), so left to it.
            Key::Lsn => return None,
            _ => {}
        }
        let taken = match &mut self.ev.data {
            EventData::RunStarted(s) => take_started(s, key),
            EventData::RunLog(l) => take_log(l, key),
            EventData::RunFinished(f) => take_finished(f, key),
            EventData::ToolCall(c) => take_call(c, key),
            EventData::System(_) => return None,
        };
        match taken {
            Some(slot) => {
                once(&mut self.seen, key)?;
                self.acc.fill(py, slot, v)
            }
            // Another kind's key: an unknown field here, as to the parser.
            None => self.extra(py, key.text(), v),
        }
    }

    /// An unknown field, kept as JSON text.
    fn extra(&mut self, py: Python<'_>, key: &str, v: &Bound<'_, PyAny>) -> Option<()> {
        // Copied first: writing the value may run Python code that frees
        // the borrowed key (see `for_each_item`).
        let key = key.to_owned();
        let json = self.acc.json(py, &v.clone())?;
        self.ev.extra.push((key, json));
        Some(())
    }

    fn finish(self, now: impl FnOnce() -> Micros) {
        if let EventData::ToolCall(c) = &mut self.ev.data {
            if !self.acc.call_status {
                let status = default_call_status(&c.error, &c.error_type);
                set_text(&mut c.status, status);
            }
        }
        self.ev.ts = self.ts.unwrap_or_else(now);
    }
}

/// Mark `key` seen; `None` if it was already.
fn once(seen: &mut u64, key: Key) -> Option<()> {
    let bit = 1u64 << (key as u32);
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

impl Acc {
    fn fill(&mut self, py: Python<'_>, slot: Slot<'_>, v: &Bound<'_, PyAny>) -> Option<()> {
        // JSON null leaves a known field absent (its default stays).
        if v.is_none() {
            self.bytes += SCALAR_BOUND;
            return Some(());
        }
        match slot {
            Slot::Str(s) => self.text_into(v, s)?,
            Slot::Status(s) => {
                self.text_into(v, s)?;
                self.call_status = true;
            }
            // Its own reference: writing it may run Python code.
            Slot::Json(j) => self.json_into(py, &v.clone(), j)?,
            Slot::Bool(b) => *b = v.cast::<PyBool>().ok()?.is_true(),
            Slot::U64(n) => *n = self.unsigned(v)?,
            Slot::OptU64(n) => *n = Some(self.unsigned(v)?),
            Slot::OptI64(n) => {
                *n = Some(self.int(v)?.extract::<i64>().ok()?);
            }
            Slot::F64(x) => *x = self.number(v)?,
            Slot::OptF64(x) => *x = Some(self.number(v)?),
            Slot::Http(h) => {
                let n = self.unsigned(v)?;
                *h = Some(u16::try_from(n).ok().filter(|n| *n <= 999)?);
            }
        }
        Some(())
    }

    /// A string field, copied into `dst`'s buffer (JSON null leaves
    /// `dst` as it is: the field's default).
    fn text_into(&mut self, v: &Bound<'_, PyAny>, dst: &mut String) -> Option<()> {
        if v.is_none() {
            self.bytes += SCALAR_BOUND;
            return Some(());
        }
        let s = exact::str_of(v)?.to_str().ok()?;
        // Escaping writes at most 6 bytes per byte (`\u001f`).
        self.bytes += 6 * s.len() + 2;
        set_text(dst, s);
        Some(())
    }

    /// `ts`: integer microseconds or an RFC 3339 string, as the parser
    /// reads them (`None`: absent, the time of the append).
    fn instant(&mut self, v: &Bound<'_, PyAny>) -> Option<Option<Micros>> {
        if v.is_none() {
            return Some(None);
        }
        // The usual `ts`, an exact int, by its type pointer: spares the
        // subclass test of `str_of` (a call into the interpreter).
        if let Ok(i) = v.cast_exact::<PyInt>() {
            self.bytes += SCALAR_BOUND;
            return i.extract::<i64>().ok().map(Some);
        }
        if let Some(s) = exact::str_of(v) {
            let s = s.to_str().ok()?;
            self.bytes += 6 * s.len() + 2;
            return parse_rfc3339(s).ok().map(Some);
        }
        self.bytes += SCALAR_BOUND;
        self.int(v)?.extract::<i64>().ok().map(Some)
    }

    /// An int that is not a bool (which the parser reads as `true`/`false`).
    fn int<'a, 'py>(&mut self, v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyInt>> {
        if v.is_instance_of::<PyBool>() {
            return None;
        }
        self.bytes += SCALAR_BOUND;
        exact::int_of(v)
    }

    fn unsigned(&mut self, v: &Bound<'_, PyAny>) -> Option<u64> {
        self.int(v)?.extract::<u64>().ok()
    }

    /// A number of seconds or milliseconds: a finite float, or an int
    /// within 64 bits (the parser reads its digits as the nearest float,
    /// as `as f64` rounds).
    fn number(&mut self, v: &Bound<'_, PyAny>) -> Option<f64> {
        if let Some(f) = exact::float_of(v) {
            self.bytes += SCALAR_BOUND;
            let x = f.value();
            return x.is_finite().then_some(x);
        }
        let i = self.int(v)?;
        if let Ok(n) = i.extract::<i64>() {
            return Some(n as f64);
        }
        i.extract::<u64>().ok().map(|n| n as f64)
    }

    /// Free-form JSON, written by the line path's own writer, started
    /// [`DEPTH_START`] levels down so that it refuses (and this path
    /// declines) every value nested more than the engine's limit.
    fn json(&mut self, py: Python<'_>, v: &Bound<'_, PyAny>) -> Option<Json> {
        let mut j = Json::trusted(String::new());
        self.json_into(py, v, &mut j)?;
        Some(j)
    }

    /// [`Acc::json`], written into `j`'s own buffer.
    fn json_into(&mut self, py: Python<'_>, v: &Bound<'_, PyAny>, j: &mut Json) -> Option<()> {
        let mut len = 0usize;
        let written = with_json_buf(j, |out| {
            // Sized for the usual payload: growing by doubling from
            // nothing was a tenth of the call (before buffers were reused).
            out.reserve(JSON_CAPACITY);
            let ok = convert::write_value(py, v, out, DEPTH_START).is_ok();
            len = out.len();
            ok
        });
        self.bytes += len;
        written.then_some(())
    }
}

/// Where a known field's value goes, and how it is read.
enum Slot<'a> {
    Str(&'a mut String),
    /// A tool call's status (its default depends on the error fields).
    Status(&'a mut String),
    Json(&'a mut Json),
    Bool(&'a mut bool),
    U64(&'a mut u64),
    OptU64(&'a mut Option<u64>),
    OptI64(&'a mut Option<i64>),
    F64(&'a mut f64),
    OptF64(&'a mut Option<f64>),
    Http(&'a mut Option<u16>),
}

// The kinds' own fields (docs/contract.md, "Events"). A key another kind
// has is an unknown field here, as it is to the parser.

fn take_started(s: &mut RunStarted, key: Key) -> Option<Slot<'_>> {
    Some(match key {
        Key::SkillId => Slot::Str(&mut s.skill_id),
        Key::CallerId => Slot::Str(&mut s.caller_id),
        Key::ChannelId => Slot::Str(&mut s.channel_id),
        Key::ParentRunId => Slot::Str(&mut s.parent_run_id),
        Key::Inputs => Slot::Json(&mut s.inputs),
        Key::DryRun => Slot::Bool(&mut s.dry_run),
        _ => return None,
    })
}

fn take_log(l: &mut RunLog, key: Key) -> Option<Slot<'_>> {
    Some(match key {
        Key::Seq => Slot::U64(&mut l.seq),
        Key::EventType => Slot::Str(&mut l.event_type),
        Key::Payload => Slot::Json(&mut l.payload),
        _ => return None,
    })
}

fn take_finished(f: &mut RunFinished, key: Key) -> Option<Slot<'_>> {
    Some(match key {
        Key::Status => Slot::Str(&mut f.status),
        Key::Output => Slot::Str(&mut f.output),
        Key::Error => Slot::Str(&mut f.error),
        Key::ToolCalls => Slot::U64(&mut f.tool_calls),
        Key::RuntimeSeconds => Slot::F64(&mut f.runtime_seconds),
        Key::InputTokens => Slot::U64(&mut f.input_tokens),
        Key::OutputTokens => Slot::U64(&mut f.output_tokens),
        Key::ThinkingTokens => Slot::U64(&mut f.thinking_tokens),
        _ => return None,
    })
}

fn take_call(c: &mut ToolCall, key: Key) -> Option<Slot<'_>> {
    Some(match key {
        Key::CallId => Slot::Str(&mut c.call_id),
        Key::ChannelId => Slot::Str(&mut c.channel_id),
        Key::CallerId => Slot::Str(&mut c.caller_id),
        Key::WorkspaceId => Slot::Str(&mut c.workspace_id),
        Key::RequestId => Slot::Str(&mut c.request_id),
        Key::Tool => Slot::Str(&mut c.tool),
        Key::Engine => Slot::Str(&mut c.engine),
        Key::Status => Slot::Status(&mut c.status),
        Key::ErrorType => Slot::Str(&mut c.error_type),
        Key::Error => Slot::Str(&mut c.error),
        Key::DurationMs => Slot::OptF64(&mut c.duration_ms),
        Key::InputBytes => Slot::OptU64(&mut c.input_bytes),
        Key::ResultBytes => Slot::OptU64(&mut c.result_bytes),
        Key::ExitCode => Slot::OptI64(&mut c.exit_code),
        Key::HttpStatus => Slot::Http(&mut c.http_status),
        Key::InputHash => Slot::Str(&mut c.input_hash),
        Key::ArgsSummary => Slot::Str(&mut c.args_summary),
        Key::Payload => Slot::Json(&mut c.payload),
        _ => return None,
    })
}

/// A kind's data as the parser starts it (its defaults), or `None`: not a
/// kind an append may give.
fn fresh_data(kind: &str) -> Option<EventData> {
    Some(match kind {
        "run_started" => EventData::RunStarted(RunStarted::default()),
        "run_log" => EventData::RunLog(RunLog::default()),
        "run_finished" => EventData::RunFinished(RunFinished::default()),
        "tool_call" => EventData::ToolCall(Box::default()),
        _ => return None,
    })
}

/// Set `data` to [`fresh_data`]`(kind)` in place, keeping its strings'
/// buffers, when it already is that kind (the event a thread appended
/// before: [`with_scratch`]); false when it is another kind. Every field
/// is named (no `..`), so a field added to the engine's events fails to
/// compile here until it is reset too; tests/test_direct.py compares
/// what a reused event stores with the line path's bytes.
fn reset_in_place(kind: &str, data: &mut EventData) -> bool {
    match (kind, data) {
        ("run_started", EventData::RunStarted(s)) => {
            let RunStarted {
                skill_id,
                caller_id,
                channel_id,
                parent_run_id,
                inputs,
                dry_run,
            } = s;
            for t in [skill_id, caller_id, channel_id, parent_run_id] {
                t.clear();
            }
            set_json(inputs, "{}");
            *dry_run = false;
        }
        ("run_log", EventData::RunLog(l)) => {
            let RunLog {
                seq,
                event_type,
                payload,
            } = l;
            *seq = 0;
            event_type.clear();
            set_json(payload, "null");
        }
        ("run_finished", EventData::RunFinished(f)) => {
            let RunFinished {
                status,
                output,
                error,
                tool_calls,
                runtime_seconds,
                input_tokens,
                output_tokens,
                thinking_tokens,
            } = f;
            set_text(status, "ok");
            output.clear();
            error.clear();
            *tool_calls = 0;
            *runtime_seconds = 0.0;
            *input_tokens = 0;
            *output_tokens = 0;
            *thinking_tokens = 0;
        }
        ("tool_call", EventData::ToolCall(c)) => {
            let ToolCall {
                call_id,
                channel_id,
                caller_id,
                workspace_id,
                request_id,
                tool,
                engine,
                status,
                error_type,
                error,
                duration_ms,
                input_bytes,
                result_bytes,
                exit_code,
                http_status,
                input_hash,
                args_summary,
                payload,
            } = &mut **c;
            for t in [
                call_id,
                channel_id,
                caller_id,
                workspace_id,
                request_id,
                tool,
                engine,
                error_type,
                error,
                input_hash,
                args_summary,
            ] {
                t.clear();
            }
            set_text(status, "ok");
            *duration_ms = None;
            *input_bytes = None;
            *result_bytes = None;
            *exit_code = None;
            *http_status = None;
            set_json(payload, "null");
        }
        _ => return false,
    }
    true
}

fn set_text(t: &mut String, to: &str) {
    t.clear();
    t.push_str(to);
}

/// Give `j` the text `to` (a default: `null`, `{}`), in its own buffer.
fn set_json(j: &mut Json, to: &str) {
    let mut text = std::mem::replace(j, Json::trusted(String::new())).into_string();
    set_text(&mut text, to);
    *j = Json::trusted(text);
}

/// Rewrite `j`'s text with `write` (given its emptied buffer). The text
/// written must be UTF-8 (else `j` is left `null`, and `false`).
fn with_json_buf(j: &mut Json, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
    let mut buf = std::mem::replace(j, Json::trusted(String::new()))
        .into_string()
        .into_bytes();
    buf.clear();
    if !write(&mut buf) {
        *j = Json::null();
        return false;
    }
    match String::from_utf8(buf) {
        Ok(text) => {
            *j = Json::trusted(text);
            true
        }
        Err(_) => {
            *j = Json::null();
            false
        }
    }
}

/// This thread's reusable events: one per kind, so that each append is
/// built in an event of its own kind whose strings keep their buffers (a
/// gateway's appends alternate kinds, a run's start, its logs, its
/// finish: with one event for all, most appends met another kind and
/// built it afresh, allocating its strings and freeing the last ones;
/// py30), and one for the line path's event.
pub struct Scratch {
    /// In the order of [`KINDS`], then the line path's.
    events: [Event; KINDS.len() + 1],
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            events: std::array::from_fn(|_| blank()),
        }
    }

    /// The event [`event_into`] built.
    pub fn event(&mut self, built: Built) -> &mut Event {
        &mut self.events[built.at]
    }

    /// Where the line path's event goes.
    pub fn line(&mut self) -> &mut Event {
        &mut self.events[KINDS.len()]
    }
}

thread_local! {
    /// This thread's [`Scratch`]: its events' strings keep their buffers
    /// for the next append, so a plain append allocates nothing for its
    /// fields (before py27: a dozen small strings per event, allocated
    /// here and freed on the stage's thread). Boxed, so taking and
    /// returning it moves a pointer, not the events.
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// Run `f` with this thread's reusable events (new ones the first time,
/// or when an append is re-entered from Python code the conversion ran:
/// the outer call holds the thread's events then).
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(Scratch::new()));
    let r = f(&mut scratch);
    let _ = SCRATCH.try_with(|c| c.set(Some(scratch)));
    r
}
