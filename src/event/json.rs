//! Events as JSON lines: parsing (with every contract rule), validation of
//! events built in Rust, and the one output form.
//!
//! Parsing drives serde_json directly with a hand-written visitor: ingest
//! parses every line of every batch, and going through `serde_json::Value`
//! or `#[serde(flatten)]` would cost several times as much. `inputs`,
//! `payload` and unknown fields are captured as raw text so they come back
//! byte for byte (key order, number spelling) on output.
//!
//! A plain line (no backslash, no control byte: nearly every line a gateway
//! writes) is first read without serde_json's walk: `json_scan` marks its
//! quotes 64 bytes at a time and splits it into members, strings are taken
//! as they stand and every other scalar goes through the same visitors
//! (serde_json reading that one value's text). Whatever that read is not
//! sure of, and every line it would refuse, is read again by serde_json,
//! so what is accepted and every error text stay serde_json's
//! (`with_parsed_event_by_serde` is the reference the tests hold it to).

use super::borrowed::{CallRef, DataRef, EventRef, FinishedRef, LogRef, StartedRef};
use super::json_scan;
use super::time::{check_range, format_rfc3339, parse_rfc3339};
use super::{
    Event, EventData, Micros, RunFinished, RunLog, RunStarted, ToolCall, MAX_EVENT_BYTES,
    MAX_JSON_DEPTH, MAX_NAME_BYTES, MAX_RUN_ID_BYTES,
};
use crate::error::EventError;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::fmt::Write as _;

const KINDS: &str = "run_started, run_log, run_finished, tool_call";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Started,
    Log,
    Finished,
    Call,
}

/// Every top-level key the contract names, for any kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    Kind,
    RunId,
    Ts,
    Lsn,
    SkillId,
    CallerId,
    ChannelId,
    ParentRunId,
    Inputs,
    DryRun,
    Seq,
    EventType,
    Payload,
    Status,
    Output,
    Error,
    ToolCalls,
    RuntimeSeconds,
    InputTokens,
    OutputTokens,
    ThinkingTokens,
    CallId,
    WorkspaceId,
    RequestId,
    Tool,
    Engine,
    ErrorType,
    DurationMs,
    InputBytes,
    ResultBytes,
    ExitCode,
    HttpStatus,
    InputHash,
    ArgsSummary,
}

impl Key {
    fn lookup(s: &str) -> Option<Key> {
        Some(match s {
            "kind" => Key::Kind,
            "run_id" => Key::RunId,
            "ts" => Key::Ts,
            "lsn" => Key::Lsn,
            "skill_id" => Key::SkillId,
            "caller_id" => Key::CallerId,
            "channel_id" => Key::ChannelId,
            "parent_run_id" => Key::ParentRunId,
            "inputs" => Key::Inputs,
            "dry_run" => Key::DryRun,
            "seq" => Key::Seq,
            "event_type" => Key::EventType,
            "payload" => Key::Payload,
            "status" => Key::Status,
            "output" => Key::Output,
            "error" => Key::Error,
            "tool_calls" => Key::ToolCalls,
            "runtime_seconds" => Key::RuntimeSeconds,
            "input_tokens" => Key::InputTokens,
            "output_tokens" => Key::OutputTokens,
            "thinking_tokens" => Key::ThinkingTokens,
            "call_id" => Key::CallId,
            "workspace_id" => Key::WorkspaceId,
            "request_id" => Key::RequestId,
            "tool" => Key::Tool,
            "engine" => Key::Engine,
            "error_type" => Key::ErrorType,
            "duration_ms" => Key::DurationMs,
            "input_bytes" => Key::InputBytes,
            "result_bytes" => Key::ResultBytes,
            "exit_code" => Key::ExitCode,
            "http_status" => Key::HttpStatus,
            "input_hash" => Key::InputHash,
            "args_summary" => Key::ArgsSummary,
            _ => return None,
        })
    }

    /// A key every event has (and the engine-assigned `lsn`).
    fn common(self) -> bool {
        matches!(self, Key::Kind | Key::RunId | Key::Ts | Key::Lsn)
    }

    /// Whether the key is a field of `kind` (common keys are of every kind).
    fn belongs_to(self, kind: Kind) -> bool {
        if self.common() {
            return true;
        }
        match self {
            // Fields a tool call shares with another kind.
            Key::CallerId | Key::ChannelId => matches!(kind, Kind::Started | Kind::Call),
            Key::Payload => matches!(kind, Kind::Log | Kind::Call),
            Key::Status | Key::Error => matches!(kind, Kind::Finished | Kind::Call),
            Key::SkillId | Key::ParentRunId | Key::Inputs | Key::DryRun => kind == Kind::Started,
            Key::Seq | Key::EventType => kind == Kind::Log,
            Key::Output
            | Key::ToolCalls
            | Key::RuntimeSeconds
            | Key::InputTokens
            | Key::OutputTokens
            | Key::ThinkingTokens => kind == Kind::Finished,
            _ => kind == Kind::Call,
        }
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Parses one JSONL line into an [`Event`], applying every rule of the
/// contract. Errors name the field at fault, or `line` for problems of the
/// whole line (size, UTF-8, JSON syntax).
pub fn parse_event(line: &[u8]) -> Result<Event, EventError> {
    with_parsed_event(line, |ev| ev.to_event())?.ok_or_else(|| {
        // Not reached: the parser refuses the kind `system` first.
        EventError::new("kind", "a system event cannot be ingested")
    })
}

/// Parses one JSONL line as [`parse_event`] does (the same rules, checks
/// and errors) and hands `f` the event viewed in place: its strings
/// borrowed from the line (or, where the line escaped them, from the
/// parser's own buffers), none copied into an owned [`Event`]. The command
/// line's ingest encodes each event straight from this view
/// ([`crate::codec::encode_event_ref`]).
pub fn with_parsed_event<R>(
    line: &[u8],
    f: impl FnOnce(&EventRef<'_>) -> R,
) -> Result<R, EventError> {
    if line.len() > MAX_EVENT_BYTES {
        return Err(EventError::new(
            "line",
            format!(
                "is {} bytes; an event may be at most {MAX_EVENT_BYTES} bytes",
                line.len()
            ),
        ));
    }
    // Validating UTF-8 once up front lets serde_json skip it per string.
    let text = line_utf8(line)?;

    // Filled in place: moving this wide struct around costs measurably.
    let mut fields = Fields::default();
    // A plain line (no escapes, no control bytes: nearly every line) is
    // read by the SIMD-marked scan, its fields through the same visitors;
    // anything it is not sure of, or an event that breaks a rule, is read
    // again below by serde_json, which decides and words the error
    // (docs/benchmarks.md, "Ingest, cli41 round"). A line the scan takes
    // nests at most `MAX_JSON_DEPTH` deep, so the depth check passes.
    if fields.fill_plain(text).is_some() {
        if let Ok(view) = fields.build() {
            return Ok(f(&view));
        }
    }
    with_serde(text, f)
}

/// [`with_parsed_event`] by serde_json alone, its UTF-8 and size checked:
/// the reference the plain scan must agree with (tests compare the two).
#[doc(hidden)]
pub fn with_parsed_event_by_serde<R>(
    line: &[u8],
    f: impl FnOnce(&EventRef<'_>) -> R,
) -> Result<R, EventError> {
    if line.len() > MAX_EVENT_BYTES {
        return with_parsed_event(line, f);
    }
    with_serde(line_utf8(line)?, f)
}

fn with_serde<R>(text: &str, f: impl FnOnce(&EventRef<'_>) -> R) -> Result<R, EventError> {
    check_line_depth(text)?;
    let mut fields = Fields::default();
    let mut fault = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let visitor = EventVisitor {
        fields: &mut fields,
        fault: &mut fault,
    };
    de.deserialize_map(visitor)
        .and_then(|()| de.end())
        .map_err(|e| from_serde(&e, fault))?;
    let view = fields.build()?;
    Ok(f(&view))
}

/// The line as text. simdutf8 checks a line of 64 bytes or more a SIMD
/// register at a time (std's check, which it falls back to below 64 bytes,
/// was ~4% of the command-line ingest's parse workers on 250-byte lines:
/// docs/benchmarks.md, "Ingest, cli35 round"); its error carries no
/// position, so a bad line is checked again by std for the message.
fn line_utf8(line: &[u8]) -> Result<&str, EventError> {
    if let Ok(text) = simdutf8::basic::from_utf8(line) {
        return Ok(text);
    }
    std::str::from_utf8(line).map_err(|e| {
        EventError::new(
            "line",
            format!(
                "is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Turns a serde_json error into an EventError. `fault` is the key whose
/// value was being read, if any.
fn from_serde(e: &serde_json::Error, fault: Option<String>) -> EventError {
    match (fault, e.classify()) {
        (Some(field), Category::Data) => EventError::new(field, without_position(e)),
        // Broken JSON inside a value (a number out of range, a string cut
        // short): the key being read is the most useful place to name.
        (Some(field), _) => EventError::new(field, format!("invalid JSON: {e}")),
        (None, Category::Data) => EventError::new("line", e.to_string()),
        (None, _) => EventError::new("line", format!("invalid JSON: {e}")),
    }
}

/// A field's reason reads better without serde_json's position suffix,
/// which for re-parsed values would also be relative to the value.
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&suffix) {
        Some(m) => m.to_string(),
        None => msg,
    }
}

struct EventVisitor<'a, 'de> {
    fields: &'a mut Fields<'de>,
    fault: &'a mut Option<String>,
}

impl<'de> Visitor<'de> for EventVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one event per line)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Err(e) = self.fields.take(&key, &mut map) {
                *self.fault = Some(key.into_owned());
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Keys borrowed from the line when they have no escapes, so known keys
/// cost no allocation.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Beyond this many unknown fields, duplicate detection switches from a
/// linear scan to a hash set so a hostile line cannot make it quadratic.
const LINEAR_DUP_SCAN: usize = 16;

/// An unknown (or not-this-kind) field: key, raw value, and the known key it
/// is when the kind was not yet known (resolved once the whole object is read).
type ExtraField<'de> = (Cow<'de, str>, &'de str, Option<Key>);

/// Everything read from one line, before defaults and limits are applied.
#[derive(Default)]
struct Fields<'de> {
    seen: u64,
    kind: Option<Kind>,
    run_id: Option<Cow<'de, str>>,
    ts: Option<Micros>,
    skill_id: Option<Cow<'de, str>>,
    caller_id: Option<Cow<'de, str>>,
    channel_id: Option<Cow<'de, str>>,
    parent_run_id: Option<Cow<'de, str>>,
    inputs: Option<&'de str>,
    dry_run: Option<bool>,
    seq: Option<u64>,
    event_type: Option<Cow<'de, str>>,
    payload: Option<&'de str>,
    status: Option<Cow<'de, str>>,
    output: Option<Cow<'de, str>>,
    error: Option<Cow<'de, str>>,
    tool_calls: Option<u64>,
    runtime_seconds: Option<f64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    thinking_tokens: Option<u64>,
    call_id: Option<Cow<'de, str>>,
    workspace_id: Option<Cow<'de, str>>,
    request_id: Option<Cow<'de, str>>,
    tool: Option<Cow<'de, str>>,
    engine: Option<Cow<'de, str>>,
    error_type: Option<Cow<'de, str>>,
    duration_ms: Option<f64>,
    input_bytes: Option<u64>,
    result_bytes: Option<u64>,
    exit_code: Option<i64>,
    http_status: Option<u64>,
    input_hash: Option<Cow<'de, str>>,
    args_summary: Option<Cow<'de, str>>,
    extra: Vec<ExtraField<'de>>,
    extra_keys: Option<HashSet<Cow<'de, str>>>,
    /// The unknown fields once the kind is known ([`Fields::build`]): key
    /// and JSON text.
    unknown: Vec<(Cow<'de, str>, &'de str)>,
}

impl<'de> Fields<'de> {
    /// Reads the value of `key` from `map` into its place.
    fn take<A: MapAccess<'de>>(
        &mut self,
        key: &Cow<'de, str>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let Some(known) = Key::lookup(key) else {
            if !self.first_unknown(key) {
                return Err(duplicate());
            }
            let raw: &'de RawValue = map.next_value()?;
            self.extra.push((key.clone(), raw.get(), None));
            return Ok(());
        };
        if self.seen & known.bit() != 0 {
            return Err(duplicate());
        }
        self.seen |= known.bit();
        match self.kind {
            _ if known.common() => map.next_value_seed(Slot {
                fields: self,
                key: known,
            }),
            Some(kind) if known.belongs_to(kind) => map.next_value_seed(Slot {
                fields: self,
                key: known,
            }),
            // Another kind's field is just an unknown one here; it stays raw.
            Some(_) => {
                let raw: &'de RawValue = map.next_value()?;
                self.extra.push((key.clone(), raw.get(), None));
                Ok(())
            }
            // Kind not seen yet: keep it raw in its place, decide in build().
            None => {
                let raw: &'de RawValue = map.next_value()?;
                self.extra.push((key.clone(), raw.get(), Some(known)));
                Ok(())
            }
        }
    }

    /// Reads a plain line ([`json_scan::plain_object_members`]: no escapes,
    /// no control bytes) into its fields, as the serde_json walk would
    /// ([`Fields::take`]). `None` at anything that walk would refuse or
    /// that is not certain to read the same (a duplicate key, a value of
    /// the wrong type, a number out of range, deep nesting, anything the
    /// scan does not take): the caller then reads the line with serde_json
    /// from the start, which gives the error and its text.
    fn fill_plain(&mut self, text: &'de str) -> Option<()> {
        json_scan::plain_object_members(text.as_bytes(), |key, value| {
            self.take_plain(text.get(key)?, text.get(value)?)
        })
    }

    /// [`Fields::take`] for one member of a plain line: `raw` is the
    /// value's exact text, checked JSON.
    fn take_plain(&mut self, key: &'de str, raw: &'de str) -> Option<()> {
        let Some(known) = Key::lookup(key) else {
            let key = Cow::Borrowed(key);
            if !self.first_unknown(&key) {
                return None;
            }
            self.extra.push((key, raw, None));
            return Some(());
        };
        if self.seen & known.bit() != 0 {
            return None;
        }
        self.seen |= known.bit();
        match self.kind {
            _ if known.common() => self.read_plain(known, raw),
            Some(kind) if known.belongs_to(kind) => self.read_plain(known, raw),
            Some(_) => {
                self.extra.push((Cow::Borrowed(key), raw, None));
                Some(())
            }
            None => {
                self.extra.push((Cow::Borrowed(key), raw, Some(known)));
                Some(())
            }
        }
    }

    /// A known key's value from its text, through the same visitors
    /// ([`Fields::read`]): a string (no escapes on a plain line) handed
    /// over borrowed, as serde_json hands it; any other scalar read by
    /// serde_json itself from its text, which must be all of it.
    fn read_plain(&mut self, key: Key, raw: &'de str) -> Option<()> {
        match key {
            // As `raw_json` keeps them.
            Key::Inputs => self.inputs = (raw != "null").then_some(raw),
            Key::Payload => self.payload = (raw != "null").then_some(raw),
            _ => match raw.strip_prefix('"') {
                Some(quoted) => {
                    let s = quoted.strip_suffix('"')?;
                    let d = BorrowedStrDeserializer::<de::value::Error>::new(s);
                    self.read(key, d).ok()?;
                }
                None => {
                    let mut d = serde_json::Deserializer::from_str(raw);
                    self.read(key, &mut d).ok()?;
                    d.end().ok()?;
                }
            },
        }
        Some(())
    }

    // A `&str` would not do: the set keeps the key for the line's lifetime.
    #[allow(clippy::ptr_arg)]
    fn first_unknown(&mut self, key: &Cow<'de, str>) -> bool {
        if let Some(set) = &mut self.extra_keys {
            return set.insert(key.clone());
        }
        if self.extra.iter().any(|(k, _, _)| k == key) {
            return false;
        }
        if self.extra.len() >= LINEAR_DUP_SCAN {
            let keys = self.extra.iter().map(|(k, _, _)| k.clone());
            self.extra_keys = Some(keys.chain(std::iter::once(key.clone())).collect());
        }
        true
    }

    /// Parses a known key's value; JSON `null` leaves the field absent.
    fn read<D: Deserializer<'de>>(&mut self, key: Key, d: D) -> Result<(), D::Error> {
        match key {
            Key::Kind => self.kind = d.deserialize_any(KindV)?,
            Key::RunId => self.run_id = d.deserialize_any(StrV)?,
            Key::Ts => self.ts = d.deserialize_any(TsV)?,
            Key::Lsn => {
                IgnoredAny::deserialize(d)?;
            }
            Key::SkillId => self.skill_id = d.deserialize_any(StrV)?,
            Key::CallerId => self.caller_id = d.deserialize_any(StrV)?,
            Key::ChannelId => self.channel_id = d.deserialize_any(StrV)?,
            Key::ParentRunId => self.parent_run_id = d.deserialize_any(StrV)?,
            Key::Inputs => self.inputs = raw_json(d)?,
            Key::DryRun => self.dry_run = d.deserialize_any(BoolV)?,
            Key::Seq => self.seq = d.deserialize_any(U64V)?,
            Key::EventType => self.event_type = d.deserialize_any(StrV)?,
            Key::Payload => self.payload = raw_json(d)?,
            Key::Status => self.status = d.deserialize_any(StrV)?,
            Key::Output => self.output = d.deserialize_any(StrV)?,
            Key::Error => self.error = d.deserialize_any(StrV)?,
            Key::ToolCalls => self.tool_calls = d.deserialize_any(U64V)?,
            Key::RuntimeSeconds => self.runtime_seconds = raw_number(d, "seconds (like 1.5)")?,
            Key::InputTokens => self.input_tokens = d.deserialize_any(U64V)?,
            Key::OutputTokens => self.output_tokens = d.deserialize_any(U64V)?,
            Key::ThinkingTokens => self.thinking_tokens = d.deserialize_any(U64V)?,
            Key::CallId => self.call_id = d.deserialize_any(StrV)?,
            Key::WorkspaceId => self.workspace_id = d.deserialize_any(StrV)?,
            Key::RequestId => self.request_id = d.deserialize_any(StrV)?,
            Key::Tool => self.tool = d.deserialize_any(StrV)?,
            Key::Engine => self.engine = d.deserialize_any(StrV)?,
            Key::ErrorType => self.error_type = d.deserialize_any(StrV)?,
            Key::DurationMs => self.duration_ms = raw_number(d, "milliseconds (like 12.5)")?,
            Key::InputBytes => self.input_bytes = d.deserialize_any(U64V)?,
            Key::ResultBytes => self.result_bytes = d.deserialize_any(U64V)?,
            Key::ExitCode => self.exit_code = d.deserialize_any(I64V)?,
            Key::HttpStatus => self.http_status = d.deserialize_any(U64V)?,
            Key::InputHash => self.input_hash = d.deserialize_any(StrV)?,
            Key::ArgsSummary => self.args_summary = d.deserialize_any(StrV)?,
        }
        Ok(())
    }

    /// Applies required fields, defaults and limits: the event, viewed in
    /// place (its strings borrowed from the line, or from these fields
    /// where the line escaped them).
    fn build(&mut self) -> Result<EventRef<'_>, EventError> {
        let kind = self.kind.ok_or_else(|| {
            EventError::new("kind", format!("is missing; it must be one of {KINDS}"))
        })?;
        if self.run_id.is_none() && kind != Kind::Call {
            // A tool call may stand alone: no run.
            return Err(EventError::new(
                "run_id",
                "is missing; every event but a tool_call needs a non-empty run_id string",
            ));
        }
        check_run_id_of(kind, self.run_id.as_deref().unwrap_or_default())?;
        let ts = self.ts.ok_or_else(|| {
            EventError::new(
                "ts",
                "is missing; give integer microseconds since the Unix epoch or an RFC 3339 string",
            )
        })?;
        self.resolve_extra(kind)?;
        // From here on the fields are only read: the view borrows them.
        let this: &Fields<'de> = self;
        let extra: Vec<(&str, &str)> = this.unknown.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        // The unknown fields' own rule (the `replace` marker must be a
        // boolean), which the strict decoder applies to every stored event:
        // without it here a line could be stored that no reader accepts.
        check_extra(kind, &extra)?;
        let data = this.data(kind)?;
        Ok(EventRef {
            run_id: this.run_id.as_deref().unwrap_or_default(),
            ts,
            data,
            extra,
        })
    }

    /// Parses the fields that came before `kind` and turned out to be this
    /// kind's; everything else becomes an unknown field, in its original
    /// order.
    fn resolve_extra(&mut self, kind: Kind) -> Result<(), EventError> {
        let pending = std::mem::take(&mut self.extra);
        self.unknown.reserve(pending.len());
        for (key, raw, known) in pending {
            match known {
                Some(k) if k.belongs_to(kind) => {
                    let mut de = serde_json::Deserializer::from_str(raw);
                    self.read(k, &mut de)
                        .map_err(|e| EventError::new(key.as_ref(), without_position(&e)))?;
                }
                _ => self.unknown.push((key, raw)),
            }
        }
        Ok(())
    }

    fn data(&self, kind: Kind) -> Result<DataRef<'_>, EventError> {
        Ok(match kind {
            Kind::Started => DataRef::RunStarted(StartedRef {
                skill_id: name("skill_id", &self.skill_id)?,
                caller_id: name("caller_id", &self.caller_id)?,
                channel_id: name("channel_id", &self.channel_id)?,
                parent_run_id: name("parent_run_id", &self.parent_run_id)?,
                inputs: self.inputs.unwrap_or(EMPTY_OBJECT),
                dry_run: self.dry_run.unwrap_or(false),
            }),
            Kind::Log => DataRef::RunLog(LogRef {
                seq: self.seq.unwrap_or(0),
                event_type: name("event_type", &self.event_type)?,
                payload: self.payload.unwrap_or(NULL),
            }),
            Kind::Finished => DataRef::RunFinished(FinishedRef {
                status: match self.status.as_deref() {
                    Some(s) => check_status(s).map(|()| s)?,
                    None => "ok",
                },
                output: self.output.as_deref().unwrap_or_default(),
                error: self.error.as_deref().unwrap_or_default(),
                tool_calls: self.tool_calls.unwrap_or(0),
                runtime_seconds: self.runtime_seconds.unwrap_or(0.0),
                input_tokens: self.input_tokens.unwrap_or(0),
                output_tokens: self.output_tokens.unwrap_or(0),
                thinking_tokens: self.thinking_tokens.unwrap_or(0),
            }),
            Kind::Call => DataRef::ToolCall(self.call()?),
        })
    }

    /// The checks run in the order the owned parser ran them, so a line
    /// with several faults is refused naming the same field.
    fn call(&self) -> Result<CallRef<'_>, EventError> {
        let error = self.error.as_deref().unwrap_or_default();
        let error_type = name("error_type", &self.error_type)?;
        let status = match self.status.as_deref() {
            Some(s) => s,
            None => default_call_status(error, error_type),
        };
        check_name("status", status)?;
        let http_status = match self.http_status {
            None => None,
            Some(v) => Some(u16::try_from(v).ok().filter(|v| *v <= 999).ok_or_else(|| {
                EventError::new("http_status", format!("must be within 0..=999, got {v}"))
            })?),
        };
        Ok(CallRef {
            call_id: name("call_id", &self.call_id)?,
            channel_id: name("channel_id", &self.channel_id)?,
            caller_id: name("caller_id", &self.caller_id)?,
            workspace_id: name("workspace_id", &self.workspace_id)?,
            request_id: name("request_id", &self.request_id)?,
            tool: name("tool", &self.tool)?,
            engine: name("engine", &self.engine)?,
            status,
            error_type,
            error,
            duration_ms: self.duration_ms,
            input_bytes: self.input_bytes,
            result_bytes: self.result_bytes,
            exit_code: self.exit_code,
            http_status,
            input_hash: name("input_hash", &self.input_hash)?,
            args_summary: self.args_summary.as_deref().unwrap_or_default(),
            payload: self.payload.unwrap_or(NULL),
        })
    }
}

/// The JSON texts of absent `inputs` and `payload` ([`super::Json::empty_object`],
/// [`super::Json::null`]).
const EMPTY_OBJECT: &str = "{}";
const NULL: &str = "null";

/// A tool call's status when none is given: "error" if it names an error,
/// else "ok".
pub fn default_call_status(error: &str, error_type: &str) -> &'static str {
    if error.is_empty() && error_type.is_empty() {
        "ok"
    } else {
        "error"
    }
}

fn duplicate<E: de::Error>() -> E {
    E::custom("appears more than once in the event; each field may appear only once")
}

fn name<'f>(field: &str, v: &'f Option<Cow<'_, str>>) -> Result<&'f str, EventError> {
    let s = v.as_deref().unwrap_or_default();
    check_name(field, s)?;
    Ok(s)
}

/// Routes a known key's value into [`Fields::read`].
struct Slot<'a, 'de> {
    fields: &'a mut Fields<'de>,
    key: Key,
}

impl<'de> DeserializeSeed<'de> for Slot<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.fields.read(self.key, d)
    }
}

fn raw_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    let raw = <&RawValue>::deserialize(d)?.get();
    Ok((raw != "null").then_some(raw))
}

/// Reads a number from its raw text: Rust's float parsing is exact, where
/// serde_json's default one may be off by one unit in the last place, and
/// `runtime_seconds` must survive write → parse unchanged.
fn raw_number<'de, D: Deserializer<'de>>(d: D, unit: &str) -> Result<Option<f64>, D::Error> {
    let raw = <&RawValue>::deserialize(d)?.get();
    let what = match raw.as_bytes().first() {
        Some(b'n') => return Ok(None),
        Some(b'-' | b'0'..=b'9') => None,
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'[') => Some("an array"),
        Some(b'{') => Some("an object"),
        _ => Some("something else"),
    };
    if let Some(what) = what {
        return Err(de::Error::custom(format!(
            "must be a number of {unit}, got {what}"
        )));
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(de::Error::custom(format!(
            "{raw} does not fit in a 64-bit float"
        ))),
    }
}

/// A string field: borrowed from the line when it has no escapes (the
/// usual case), so a line read into a view copies none of its strings.
struct StrV;

impl<'de> Visitor<'de> for StrV {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct BoolV;

impl<'de> Visitor<'de> for BoolV {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct U64V;

impl<'de> Visitor<'de> for U64V {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("must be a non-negative integer, got {v}")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json hands integers beyond u64 over as floats too.
        let reason = if v.fract() != 0.0 {
            "must be a whole number"
        } else if v < 0.0 {
            "must be a non-negative integer"
        } else if v >= 18_446_744_073_709_551_616.0 {
            "is too large; at most 18446744073709551615"
        } else {
            "must be written as an integer, without fraction or exponent"
        };
        Err(E::custom(format!("{reason}, got {v:?}")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct I64V;

impl<'de> Visitor<'de> for I64V {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("is too large; at most {}", i64::MAX)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "must be written as an integer, without fraction or exponent, got {v:?}"
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct TsV;

impl<'de> Visitor<'de> for TsV {
    type Value = Option<Micros>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("integer microseconds since the Unix epoch or an RFC 3339 string")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => check_range(v).map(Some).map_err(E::custom),
            Err(_) => Err(E::custom(format!(
                "{v} is out of range for microseconds since the Unix epoch"
            ))),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        check_range(v).map(Some).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "must be integer microseconds since the Unix epoch or an RFC 3339 string, got {v:?}"
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_rfc3339(v).map(Some).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct KindV;

impl<'de> Visitor<'de> for KindV {
    type Value = Option<Kind>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "one of the strings {KINDS}")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v {
            "run_started" => Ok(Some(Kind::Started)),
            "run_log" => Ok(Some(Kind::Log)),
            "run_finished" => Ok(Some(Kind::Finished)),
            "system" => Err(E::custom(
                "\"system\" events are written by the log itself (cuts, repairs, retention) and cannot be ingested",
            )),
            "tool_call" => Ok(Some(Kind::Call)),
            _ => Err(E::custom(format!(
                "{} is not a known kind; it must be one of {KINDS}",
                quoted(v)
            ))),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `s` as a JSON string, cut short so a hostile value cannot flood a message.
fn quoted(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::new();
    json_string(&s[..end], &mut out);
    if end < s.len() {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------
// Depth
// ---------------------------------------------------------------------------

/// Rejects lines nested deeper than the limit (the event object itself is one
/// level), naming the top-level key under which it happens. Runs before
/// serde_json so its own recursion limit (128) is never what the user sees.
fn check_line_depth(text: &str) -> Result<(), EventError> {
    let Some(key) = too_deep(text.as_bytes(), MAX_JSON_DEPTH + 1) else {
        return Ok(());
    };
    let field = key
        .and_then(|(start, end)| text.get(start.saturating_sub(1)..end + 1))
        .map(|quoted| serde_json::from_str::<String>(quoted).unwrap_or_else(|_| quoted.to_owned()))
        .unwrap_or_else(|| "line".to_owned());
    Err(EventError::new(field, depth_reason()))
}

fn depth_reason() -> String {
    format!("is nested too deeply; at most {MAX_JSON_DEPTH} levels of arrays and objects")
}

/// Cheap pre-check run on every line: with few opening brackets at all there
/// is no deep nesting. Byte-sized counters per 128-byte chunk let the
/// compiler vectorise it; `'[' | 0x20 == '{'` folds both into one compare.
fn bracket_count_at_most(text: &[u8], limit: usize) -> bool {
    let mut total = 0usize;
    for chunk in text.chunks(128) {
        let n: u8 = chunk.iter().map(|&c| u8::from(c | 0x20 == b'{')).sum();
        total += usize::from(n);
        if total > limit {
            return false;
        }
    }
    true
}

/// Whether `text` nests brackets (outside strings) deeper than `limit`. If so,
/// gives the byte span (between the quotes) of the last key seen at depth
/// one, if any.
#[allow(clippy::option_option)]
fn too_deep(text: &[u8], limit: usize) -> Option<Option<(usize, usize)>> {
    if bracket_count_at_most(text, limit) {
        return None;
    }
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    let (mut str_start, mut last_str, mut last_key) = (0, None, None);
    for (i, &c) in text.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
                if depth == 1 {
                    last_str = Some((str_start, i));
                }
            }
            continue;
        }
        match c {
            b'"' => {
                in_str = true;
                str_start = i + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Some(last_key);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 => last_key = last_str,
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Validation of events built in Rust
// ---------------------------------------------------------------------------

/// Checks an event built through the library against the same limits
/// parsing enforces (the encoded-size limit is checked where it is encoded).
pub fn validate_event(ev: &Event) -> Result<(), EventError> {
    check_rules(&ev.run_id, ev.ts, &DataRef::of(&ev.data), &ev.extra)
}

/// [`validate_event`]'s rules, on an event read in place (the same code:
/// both build a [`DataRef`]).
pub fn validate_ref(ev: &EventRef<'_>) -> Result<(), EventError> {
    check_rules(ev.run_id, ev.ts, &ev.data, &ev.extra)
}

/// What an event made in another process must pass before it is stored
/// (the server's check of a client's frames): every rule of
/// [`validate_event`], and its JSON texts checked again, as the strict
/// decoder does ([`check_stored`]): the codec reads them as plain strings.
pub fn check_incoming(ev: &Event) -> Result<(), EventError> {
    let data = DataRef::of(&ev.data);
    check_rules(&ev.run_id, ev.ts, &data, &ev.extra)?;
    check_json_texts(&data, &ev.extra)
}

/// [`check_incoming`] on an event read in place.
pub fn check_incoming_ref(ev: &EventRef<'_>) -> Result<(), EventError> {
    validate_ref(ev)?;
    check_json_texts(&ev.data, &ev.extra)
}

fn check_rules<K: AsRef<str>, V: AsRef<str>>(
    run_id: &str,
    ts: Micros,
    data: &DataRef<'_>,
    extra: &[(K, V)],
) -> Result<(), EventError> {
    if matches!(data, DataRef::System(_)) {
        return Err(EventError::new(
            "kind",
            "system events are written by the log itself (cuts, repairs, retention) and cannot be appended",
        ));
    }
    let kind = kind_of(data);
    check_run_id_of(kind, run_id)?;
    check_range(ts).map_err(|r| EventError::new("ts", r.to_string()))?;
    match data {
        DataRef::RunStarted(s) => {
            check_name("skill_id", s.skill_id)?;
            check_name("caller_id", s.caller_id)?;
            check_name("channel_id", s.channel_id)?;
            check_name("parent_run_id", s.parent_run_id)?;
            if s.inputs == "null" {
                // On ingest a null `inputs` means absent, i.e. `{}`; storing
                // null would make the same run read back differently.
                return Err(EventError::new(
                    "inputs",
                    "is null, which the contract reads as absent ({}); use Json::empty_object()",
                ));
            }
        }
        DataRef::RunLog(l) => {
            check_name("event_type", l.event_type)?;
        }
        DataRef::RunFinished(f) => {
            check_status(f.status)?;
            if !f.runtime_seconds.is_finite() {
                return Err(EventError::new(
                    "runtime_seconds",
                    "must be a finite number",
                ));
            }
        }
        DataRef::System(_) => {}
        DataRef::ToolCall(c) => {
            for (field, v) in [
                ("call_id", c.call_id),
                ("channel_id", c.channel_id),
                ("caller_id", c.caller_id),
                ("workspace_id", c.workspace_id),
                ("request_id", c.request_id),
                ("tool", c.tool),
                ("engine", c.engine),
                ("status", c.status),
                ("error_type", c.error_type),
                ("input_hash", c.input_hash),
            ] {
                check_name(field, v)?;
            }
            if c.duration_ms.is_some_and(|d| !d.is_finite()) {
                return Err(EventError::new("duration_ms", "must be a finite number"));
            }
            if c.http_status.is_some_and(|h| h > 999) {
                return Err(EventError::new("http_status", "must be within 0..=999"));
            }
            if c.payload.is_empty() {
                return Err(EventError::new(
                    "payload",
                    "must be JSON (null when absent)",
                ));
            }
        }
    }
    check_extra(kind, extra)
}

/// What a reader requires of a stored event (the strict decoder's rules,
/// docs/format.md "What a reader accepts"): every rule `validate_event`
/// applies on the way in, the JSON texts checked again (the codec reads
/// them as plain strings), and a system event's own shape.
pub fn check_stored(ev: &Event) -> Result<(), EventError> {
    if let EventData::System(r) = &ev.data {
        check_range(ev.ts).map_err(|r| EventError::new("ts", r.to_string()))?;
        if !ev.run_id.is_empty() || !ev.extra.is_empty() {
            return Err(EventError::new(
                "run_id",
                "a system event has an empty run_id and no unknown fields",
            ));
        }
        return r.check();
    }
    check_incoming(ev)
}

/// The event's JSON texts (`inputs` or `payload`, then each unknown
/// field's value) checked as [`super::Json::parse`] checks them.
fn check_json_texts<K: AsRef<str>, V: AsRef<str>>(
    data: &DataRef<'_>,
    extra: &[(K, V)],
) -> Result<(), EventError> {
    if let Some((field, text)) = data.json_texts() {
        check_json_text(field, text)?;
    }
    for (k, v) in extra {
        check_json_text(k.as_ref(), v.as_ref())?;
    }
    Ok(())
}

/// `run_id` rules: non-empty except for a tool call (which may stand
/// alone), and within the length limit.
fn check_run_id_of(kind: Kind, run_id: &str) -> Result<(), EventError> {
    if kind == Kind::Call && run_id.is_empty() {
        return Ok(());
    }
    check_run_id(run_id)
}

fn check_run_id(run_id: &str) -> Result<(), EventError> {
    if run_id.is_empty() {
        return Err(EventError::new(
            "run_id",
            "is empty; it must be a non-empty string",
        ));
    }
    if run_id.len() > MAX_RUN_ID_BYTES {
        return Err(EventError::new(
            "run_id",
            format!(
                "is {} bytes; at most {MAX_RUN_ID_BYTES} bytes are allowed",
                run_id.len()
            ),
        ));
    }
    Ok(())
}

fn check_name(field: &str, s: &str) -> Result<(), EventError> {
    if s.len() > MAX_NAME_BYTES {
        return Err(EventError::new(
            field,
            format!(
                "is {} bytes; at most {MAX_NAME_BYTES} bytes are allowed",
                s.len()
            ),
        ));
    }
    Ok(())
}

fn check_status(status: &str) -> Result<(), EventError> {
    check_name("status", status)?;
    if status == "running" {
        return Err(EventError::new(
            "status",
            "a finished run cannot have status \"running\"; use e.g. ok, error, timeout or cancelled",
        ));
    }
    Ok(())
}

/// Whether `text` nests within [`MAX_JSON_DEPTH`], as
/// [`check_json_text`] counts it (its first step).
pub(crate) fn within_depth(text: &[u8]) -> bool {
    too_deep(text, MAX_JSON_DEPTH).is_none()
}

/// The check behind [`super::Json::parse`]: a `Json` holds exactly one JSON
/// value, as parsing would keep it (nothing around it), nested within
/// [`MAX_JSON_DEPTH`]. The error names `field`.
pub(crate) fn check_json_text(field: &str, text: &str) -> Result<(), EventError> {
    // The usual case, cheaply: a yes from the scan is one serde_json gives
    // too, and the scan follows no deeper than the depth limit (so a yes
    // passes `within_depth` as well); anything else gets the depth check,
    // then serde_json's answer and error text.
    if super::json_scan::is_one_value(text.as_bytes()) {
        return Ok(());
    }
    if !within_depth(text.as_bytes()) {
        return Err(EventError::new(field, depth_reason()));
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) if raw.get().len() == text.len() => Ok(()),
        Ok(_) => Err(EventError::new(
            field,
            "has whitespace around the JSON value; store the value alone",
        )),
        Err(e) => Err(EventError::new(field, format!("is not valid JSON: {e}"))),
    }
}

/// Unknown fields must not shadow the event's own fields (the output would
/// carry the key twice) nor repeat each other.
fn check_extra<K: AsRef<str>, V: AsRef<str>>(
    kind: Kind,
    extra: &[(K, V)],
) -> Result<(), EventError> {
    // A few unknown fields (the usual case) are compared pairwise: no set
    // to allocate. Either way the first key seen before is the one named.
    let mut keys = HashSet::new();
    for (i, (k, v)) in extra.iter().enumerate() {
        let (k, v) = (k.as_ref(), v.as_ref());
        if let Some(known) = Key::lookup(k) {
            if known.belongs_to(kind) {
                return Err(EventError::new(
                    k,
                    "is a field of the event itself (or the engine's lsn), not an unknown field",
                ));
            }
        }
        let repeated = if extra.len() <= FEW_EXTRA {
            extra[..i].iter().any(|(seen, _)| seen.as_ref() == k)
        } else {
            !keys.insert(k)
        };
        if repeated {
            return Err(EventError::new(
                k,
                "appears more than once among the unknown fields",
            ));
        }
        if k == Event::REPLACE && !matches!(v, "true" | "false" | "null") {
            return Err(EventError::new(
                k,
                "must be true or false (the amending marker, docs/contract.md)",
            ));
        }
    }
    Ok(())
}

/// Up to this many unknown fields, duplicates are found without a set.
const FEW_EXTRA: usize = 8;

fn kind_of(data: &DataRef<'_>) -> Kind {
    match data {
        DataRef::RunStarted(_) => Kind::Started,
        DataRef::RunLog(_) => Kind::Log,
        // System: never reached, the rules refuse system events first.
        DataRef::RunFinished(_) | DataRef::System(_) => Kind::Finished,
        DataRef::ToolCall(_) => Kind::Call,
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Appends `ev` as one JSON object (no newline): `lsn` first when given, then
/// kind, run_id, ts (RFC 3339), the kind's fields in contract order with
/// defaults, then unknown fields as they came.
pub fn write_event(ev: &Event, lsn: Option<u64>, out: &mut String) {
    out.reserve(estimate_len(ev));
    out.push('{');
    if let Some(lsn) = lsn {
        out.push_str("\"lsn\":");
        json_u64(lsn, out);
        out.push(',');
    }
    out.push_str("\"kind\":\"");
    out.push_str(ev.data.kind());
    out.push_str("\",\"run_id\":");
    json_string(&ev.run_id, out);
    out.push_str(",\"ts\":\"");
    format_rfc3339(ev.ts, out);
    out.push('"');
    match &ev.data {
        EventData::RunStarted(s) => write_started(s, out),
        EventData::RunLog(l) => write_log(l, out),
        EventData::RunFinished(f) => write_finished(f, out),
        EventData::System(r) => super::system::write_fields(r, out),
        EventData::ToolCall(c) => write_call(c, out),
    }
    for (k, v) in &ev.extra {
        out.push(',');
        json_string(k, out);
        out.push(':');
        out.push_str(v.as_str());
    }
    out.push('}');
}

/// `ev` as its output JSON line (without newline).
pub fn event_to_json(ev: &Event, lsn: Option<u64>) -> String {
    let mut s = String::new();
    write_event(ev, lsn, &mut s);
    s
}

fn estimate_len(ev: &Event) -> usize {
    let data = match &ev.data {
        EventData::RunStarted(s) => {
            s.skill_id.len()
                + s.caller_id.len()
                + s.channel_id.len()
                + s.parent_run_id.len()
                + s.inputs.as_str().len()
        }
        EventData::RunLog(l) => l.event_type.len() + l.payload.as_str().len(),
        EventData::RunFinished(f) => f.status.len() + f.output.len() + f.error.len(),
        EventData::System(_) => 1024,
        EventData::ToolCall(c) => {
            200 + c.tool.len()
                + c.error.len()
                + c.args_summary.len()
                + c.payload.as_str().len()
                + c.channel_id.len()
                + c.caller_id.len()
        }
    };
    let extra: usize = ev
        .extra
        .iter()
        .map(|(k, v)| k.len() + v.as_str().len() + 4)
        .sum();
    200 + ev.run_id.len() + data + extra
}

fn key(name: &str, out: &mut String) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

fn str_field(name: &str, v: &str, out: &mut String) {
    key(name, out);
    json_string(v, out);
}

fn u64_field(name: &str, v: u64, out: &mut String) {
    key(name, out);
    json_u64(v, out);
}

fn write_started(s: &RunStarted, out: &mut String) {
    str_field("skill_id", &s.skill_id, out);
    str_field("caller_id", &s.caller_id, out);
    str_field("channel_id", &s.channel_id, out);
    str_field("parent_run_id", &s.parent_run_id, out);
    key("inputs", out);
    out.push_str(s.inputs.as_str());
    key("dry_run", out);
    out.push_str(if s.dry_run { "true" } else { "false" });
}

fn write_log(l: &RunLog, out: &mut String) {
    u64_field("seq", l.seq, out);
    str_field("event_type", &l.event_type, out);
    key("payload", out);
    out.push_str(l.payload.as_str());
}

fn write_finished(f: &RunFinished, out: &mut String) {
    str_field("status", &f.status, out);
    str_field("output", &f.output, out);
    str_field("error", &f.error, out);
    u64_field("tool_calls", f.tool_calls, out);
    key("runtime_seconds", out);
    json_f64(f.runtime_seconds, out);
    u64_field("input_tokens", f.input_tokens, out);
    u64_field("output_tokens", f.output_tokens, out);
    u64_field("thinking_tokens", f.thinking_tokens, out);
}

/// A tool call's fields after kind, run_id and ts, in contract order.
pub(crate) fn write_call(c: &ToolCall, out: &mut String) {
    str_field("call_id", &c.call_id, out);
    str_field("channel_id", &c.channel_id, out);
    str_field("caller_id", &c.caller_id, out);
    str_field("workspace_id", &c.workspace_id, out);
    str_field("request_id", &c.request_id, out);
    str_field("tool", &c.tool, out);
    str_field("engine", &c.engine, out);
    str_field("status", &c.status, out);
    str_field("error_type", &c.error_type, out);
    str_field("error", &c.error, out);
    key("duration_ms", out);
    match c.duration_ms {
        Some(d) => json_f64(d, out),
        None => out.push_str("null"),
    }
    let opt_u64 = |name: &str, v: Option<u64>, out: &mut String| {
        key(name, out);
        match v {
            Some(v) => json_u64(v, out),
            None => out.push_str("null"),
        }
    };
    opt_u64("input_bytes", c.input_bytes, out);
    opt_u64("result_bytes", c.result_bytes, out);
    key("exit_code", out);
    match c.exit_code {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
    opt_u64("http_status", c.http_status.map(u64::from), out);
    str_field("input_hash", &c.input_hash, out);
    str_field("args_summary", &c.args_summary, out);
    key("payload", out);
    out.push_str(c.payload.as_str());
}

pub(crate) fn json_u64(mut v: u64, out: &mut String) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits went in, so this always succeeds.
    if let Ok(digits) = std::str::from_utf8(&buf[i..]) {
        out.push_str(digits);
    }
}

/// Appends `v` as a JSON float: shortest text that reads back to the same
/// value, always with a fraction or exponent (`0.0`, `1.5`, `1e30`) so
/// readers see a float. Non-finite values have no JSON form and become `null`.
pub fn json_f64(v: f64, out: &mut String) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    let start = out.len();
    // Rust's Debug for f64 is the shortest round-trip form and keeps ".0".
    let _ = write!(out, "{v:?}");
    if !out[start..]
        .bytes()
        .any(|c| matches!(c, b'.' | b'e' | b'E'))
    {
        out.push_str(".0");
    }
}

/// What each byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`,
/// anything else = that letter after a backslash. Same escapes as serde_json.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string literal (quotes included). Non-ASCII text is
/// kept as UTF-8; quotes, backslashes and control characters are escaped.
pub fn json_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        // Escaped bytes are ASCII, hence always char boundaries.
        out.push_str(&s[start..i]);
        out.push('\\');
        if esc == b'u' {
            out.push_str("u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push(char::from(esc));
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan reads the usual lines itself (the differential tests in
    /// tests/engine/event_json.rs would pass as well if it never did), and
    /// leaves to serde_json the lines it must.
    #[test]
    fn the_plain_scan_reads_plain_lines_and_leaves_the_rest() {
        let read = |line: &str| {
            let mut fields = Fields::default();
            fields.fill_plain(line).is_some() && fields.build().is_ok()
        };
        for line in [
            r#"{"kind":"run_started","run_id":"r-0","ts":"2026-10-24T08:00:06.148248Z","skill_id":"web.fetch.1","caller_id":"u-640","channel_id":"sess-364","parent_run_id":"","inputs":{"query":"find fs.write for u-640","max_results":32,"locale":"en-US"},"dry_run":false}"#,
            r#"{"kind":"run_finished","run_id":"r-0","ts":"2026-10-24T08:00:06.651523Z","status":"ok","output":"found 40 results","error":"","tool_calls":0,"runtime_seconds":0.503275,"input_tokens":3312,"output_tokens":1082,"thinking_tokens":908}"#,
            r#"{"kind":"run_log","run_id":"r-2","ts":1,"seq":0,"event_type":"tool_call","payload":{"tool":"fs.read","duration_ms":311},"x":[1,{"y":null}],"lsn":7}"#,
            r#"{"ts":1,"tool":"t","kind":"tool_call","duration_ms":1.5,"exit_code":-1,"http_status":200}"#,
        ] {
            assert!(read(line), "{line}");
        }
        for line in [
            r#"{"kind":"run_log","run_id":"r\u002d2","ts":1}"#,
            "{\"kind\":\"run_log\",\"run_id\":\"r\t2\",\"ts\":1}",
            r#"{"kind":"run_log","run_id":"r","ts":1,"x":1,"x":2}"#,
            r#"{"kind":"run_log","run_id":"r","ts":1,"seq":-1}"#,
            r#"{"kind":"run_log","run_id":"r","ts":1,"seq":1.0}"#,
            r#"{"kind":"run_log","run_id":"r","ts":1} "#,
            r#"{"kind":"run_log","ts":1}"#,
        ] {
            assert!(!read(line), "{line}");
        }
    }

    fn s(v: &str) -> String {
        let mut out = String::new();
        json_string(v, &mut out);
        out
    }

    fn f(v: f64) -> String {
        let mut out = String::new();
        json_f64(v, &mut out);
        out
    }

    /// Lines shorter than 64 bytes take std's check inside simdutf8,
    /// longer ones its SIMD check: both refuse a bad byte and report its
    /// offset (std's check runs again for it), and both take good
    /// multi-byte text.
    #[test]
    fn a_line_that_is_not_utf8_is_refused_with_the_bad_bytes_offset() {
        for pad in [0usize, 10, 70, 300] {
            let good = format!(r#"{{"type":"run_start","note":"{}é✓😀","#, "x".repeat(pad));
            let mut line = good.clone().into_bytes();
            let at = line.len();
            line.extend_from_slice(b"\xff\"}");
            let e = parse_event(&line).unwrap_err();
            assert_eq!(e.field, "line");
            assert_eq!(
                e.reason,
                format!("is not valid UTF-8 (bad byte at offset {at})")
            );
            assert_eq!(line_utf8(good.as_bytes()).ok(), Some(good.as_str()));
        }
    }

    #[test]
    fn escapes_like_serde_json() {
        for v in [
            "",
            "plain",
            "q\"b\\",
            "\u{0}\u{1f}\n\r\t\u{8}\u{c}",
            "é✓😀",
            "\u{7f}",
        ] {
            assert_eq!(s(v), serde_json::to_string(v).unwrap());
        }
    }

    #[test]
    fn floats_always_look_like_floats() {
        assert_eq!(f(0.0), "0.0");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(100.0), "100.0");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(1e30), "1e30");
        assert_eq!(f(f64::NAN), "null");
        for v in [0.1, 1e-7, 123_456.789, f64::MAX, f64::MIN_POSITIVE, 5e-324] {
            assert_eq!(f(v).parse::<f64>().unwrap(), v);
            let back: f64 = serde_json::from_str(&f(v)).unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-15);
        }
    }

    #[test]
    fn integers() {
        for v in [0, 7, 10, 1_234_567, u64::MAX] {
            let mut out = String::new();
            json_u64(v, &mut out);
            assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn a_replace_marker_that_is_not_a_boolean_is_refused_on_parse() {
        let e =
            parse_event(br#"{"kind":"run_started","run_id":"r","ts":1,"replace":5}"#).unwrap_err();
        assert_eq!(e.field, "replace");
        for ok in ["true", "false", "null"] {
            let line = format!(r#"{{"kind":"run_started","run_id":"r","ts":1,"replace":{ok}}}"#);
            let ev = parse_event(line.as_bytes()).unwrap();
            assert!(check_stored(&ev).is_ok(), "{ok}");
        }
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        let deep_in_string = format!("{{\"a\":\"{}\"}}", "[".repeat(200));
        assert!(too_deep(deep_in_string.as_bytes(), 65).is_none());
        let deep = format!("{{\"a\":1,\"b\\\"\":{}{}}}", "[".repeat(70), "]".repeat(70));
        let key = too_deep(deep.as_bytes(), 65).unwrap().unwrap();
        assert_eq!(&deep[key.0..key.1], "b\\\"");
    }
}
