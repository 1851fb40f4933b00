//! The three exported tables as Arrow schemas, and the builders that turn
//! events, tool calls and runs into their rows. docs/export.md documents
//! every column; this file is the one place that defines them.

use std::borrow::Cow;
use std::sync::Arc;

use crate::members::Value;
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, PrimitiveBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::types::ArrowPrimitiveType;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use auditlog::event::borrowed::{CallRef, DataRef, EventRef};
use auditlog::event::json::json_string;
use auditlog::system::SystemRecord;
use auditlog::{Event, Run};
use serde_json::value::RawValue;

/// The table names, as in `table=NAME/` of the destination's paths.
pub const EVENTS: &str = "events";
pub const RUNS: &str = "runs";
pub const TOOL_CALLS: &str = "tool_calls";
pub const TABLES: [&str; 3] = [EVENTS, RUNS, TOOL_CALLS];

/// What every row of a file shares: which log and segment it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub log_id: String,
    pub host: String,
    pub segment: u64,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn field(name: &str, t: DataType, nullable: bool) -> Field {
    Field::new(name, t, nullable)
}

fn scope_fields() -> Vec<Field> {
    vec![
        field("log_id", DataType::Utf8, false),
        field("host", DataType::Utf8, false),
        field("segment", DataType::UInt64, false),
    ]
}

/// `events`: every event of the log, in LSN order, with the typed fields of
/// its kind (null for the other kinds) and its JSON parts as JSON text.
pub fn events_schema() -> SchemaRef {
    let mut f = scope_fields();
    f.extend([
        field("lsn", DataType::UInt64, false),
        field("block_lsn", DataType::UInt64, false),
        field("ts", ts(), false),
        field("kind", DataType::Utf8, false),
        field("run_id", DataType::Utf8, false),
        field("skill_id", DataType::Utf8, true),
        field("caller_id", DataType::Utf8, true),
        field("channel_id", DataType::Utf8, true),
        field("parent_run_id", DataType::Utf8, true),
        field("inputs", DataType::Utf8, true),
        field("dry_run", DataType::Boolean, true),
        field("seq", DataType::UInt64, true),
        field("event_type", DataType::Utf8, true),
        field("payload", DataType::Utf8, true),
        field("status", DataType::Utf8, true),
        field("output", DataType::Utf8, true),
        field("error", DataType::Utf8, true),
        field("tool_calls", DataType::UInt64, true),
        field("runtime_seconds", DataType::Float64, true),
        field("input_tokens", DataType::UInt64, true),
        field("output_tokens", DataType::UInt64, true),
        field("thinking_tokens", DataType::UInt64, true),
        field("extra", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(f))
}

/// `runs`: the run view, one row per run, in the segment of its start.
pub fn runs_schema() -> SchemaRef {
    let mut f = scope_fields();
    f.extend([
        field("start_lsn", DataType::UInt64, false),
        field("id", DataType::Utf8, false),
        field("skill_id", DataType::Utf8, false),
        field("caller_id", DataType::Utf8, false),
        field("channel_id", DataType::Utf8, false),
        field("parent_run_id", DataType::Utf8, false),
        field("inputs", DataType::Utf8, false),
        field("dry_run", DataType::Boolean, false),
        field("started_at", ts(), false),
        field("finished_at", ts(), true),
        field("status", DataType::Utf8, false),
        field("output", DataType::Utf8, false),
        field("error", DataType::Utf8, false),
        field("tool_calls", DataType::UInt64, false),
        field("runtime_seconds", DataType::Float64, false),
        field("input_tokens", DataType::UInt64, false),
        field("output_tokens", DataType::UInt64, false),
        field("thinking_tokens", DataType::UInt64, false),
    ]);
    Arc::new(Schema::new(f))
}

/// `tool_calls`: every tool call event with its payload's known fields
/// typed. The scope columns after `input_hash` are for tool calls that
/// stand alone, without a run (the gateway-semantics issue); a call inside
/// a run leaves them null and takes its scope from its run.
pub fn tool_calls_schema() -> SchemaRef {
    tool_calls_schema_of(crate::manifest::VERSION)
}

/// The `tool_calls` schema of export layout `version`: from version 2 the
/// last column is `extra`, what no typed column holds (the whole payload
/// is in the call's `events` row); version 1 repeated the whole payload
/// there, as `payload` (docs/export.md, "Layout versions").
pub fn tool_calls_schema_of(version: u32) -> SchemaRef {
    let mut f = scope_fields();
    f.extend([
        field("lsn", DataType::UInt64, false),
        field("ts", ts(), false),
        field("run_id", DataType::Utf8, true),
        field("seq", DataType::UInt64, true),
        field("replace", DataType::Boolean, false),
        field("tool", DataType::Utf8, true),
        field("status", DataType::Utf8, true),
        field("error_type", DataType::Utf8, true),
        field("duration_ms", DataType::Float64, true),
        field("args_summary", DataType::Utf8, true),
        field("result_bytes", DataType::Int64, true),
        field("exit_code", DataType::Int64, true),
        field("http_status", DataType::Int64, true),
        field("input_hash", DataType::Utf8, true),
        field("channel_id", DataType::Utf8, true),
        field("caller_id", DataType::Utf8, true),
        field("workspace_id", DataType::Utf8, true),
        field("request_id", DataType::Utf8, true),
        field("engine", DataType::Utf8, true),
        if version < crate::manifest::EXTRA_SINCE {
            field("payload", DataType::Utf8, false)
        } else {
            field("extra", DataType::Utf8, true)
        },
    ]);
    Arc::new(Schema::new(f))
}

/// The scope columns of one table's rows. Every row of a file has the
/// same scope, so the rows are counted as they come and the columns
/// filled at the end, one value repeated (no three appends per row).
#[derive(Default)]
struct ScopeCols {
    log_id: StringBuilder,
    host: StringBuilder,
    segment: UInt64Builder,
    /// The scope of the rows not yet in the builders, and how many.
    pending: Option<(Scope, usize)>,
}

impl ScopeCols {
    fn push(&mut self, s: &Scope) {
        match &mut self.pending {
            Some((p, n)) if p == s => *n += 1,
            _ => {
                self.fill();
                self.pending = Some((s.clone(), 1));
            }
        }
    }

    /// Put the pending rows into the builders.
    fn fill(&mut self) {
        if let Some((s, n)) = self.pending.take() {
            self.log_id.append_value_n(&s.log_id, n);
            self.host.append_value_n(&s.host, n);
            self.segment.append_value_n(s.segment, n);
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.fill();
        vec![self.log_id.take(), self.host.take(), self.segment.take()]
    }
}

/// A column builder that hands over what it holds as an array and starts
/// again with room for as much: every batch of a file is about the size of
/// the one before, and builders that began empty each batch grew by
/// doubling (reallocations, copies and fresh pages: the largest item of an
/// export's profile, docs/benchmarks.md).
trait Column {
    fn take(&mut self) -> ArrayRef;
}

impl Column for StringBuilder {
    fn take(&mut self) -> ArrayRef {
        let a = self.finish();
        *self = StringBuilder::with_capacity(a.len(), a.value_data().len());
        Arc::new(a)
    }
}

impl<T: ArrowPrimitiveType> Column for PrimitiveBuilder<T> {
    fn take(&mut self) -> ArrayRef {
        let a = self.finish();
        *self = PrimitiveBuilder::<T>::with_capacity(a.len()).with_data_type(a.data_type().clone());
        Arc::new(a)
    }
}

impl Column for BooleanBuilder {
    fn take(&mut self) -> ArrayRef {
        let a = self.finish();
        *self = BooleanBuilder::with_capacity(a.len());
        Arc::new(a)
    }
}

/// A nullable column whose nulls are appended in runs: most columns of
/// `events` and `tool_calls` are null in most rows (a start's fields in
/// every other kind's rows, a record's fields in every `run_log` call),
/// and appending them one at a time, a bit and an offset or a value each,
/// was ~5% of an export's CPU (docs/benchmarks.md, "exp32"). Counting
/// them and appending each run at once gives the same array.
#[derive(Default)]
struct Sparse<B> {
    b: B,
    nulls: usize,
}

/// A builder that appends `n` nulls at once.
trait Nulls {
    fn append_nulls(&mut self, n: usize);
}

impl Nulls for StringBuilder {
    fn append_nulls(&mut self, n: usize) {
        StringBuilder::append_nulls(self, n);
    }
}

impl<T: ArrowPrimitiveType> Nulls for PrimitiveBuilder<T> {
    fn append_nulls(&mut self, n: usize) {
        PrimitiveBuilder::append_nulls(self, n);
    }
}

impl Nulls for BooleanBuilder {
    fn append_nulls(&mut self, n: usize) {
        BooleanBuilder::append_nulls(self, n);
    }
}

impl<B: Nulls> Sparse<B> {
    fn append_null(&mut self) {
        self.nulls += 1;
    }

    /// The builder, with the nulls counted so far appended.
    fn values(&mut self) -> &mut B {
        if self.nulls > 0 {
            self.b.append_nulls(self.nulls);
            self.nulls = 0;
        }
        &mut self.b
    }
}

impl<B: Nulls + Column> Column for Sparse<B> {
    fn take(&mut self) -> ArrayRef {
        self.values().take()
    }
}

impl Sparse<StringBuilder> {
    fn append_value(&mut self, v: impl AsRef<str>) {
        self.values().append_value(v);
    }

    fn append_option(&mut self, v: Option<impl AsRef<str>>) {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
    }
}

impl<T: ArrowPrimitiveType> Sparse<PrimitiveBuilder<T>> {
    fn append_value(&mut self, v: T::Native) {
        self.values().append_value(v);
    }

    fn append_option(&mut self, v: Option<T::Native>) {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
    }
}

impl Sparse<BooleanBuilder> {
    fn append_option(&mut self, v: Option<bool>) {
        match v {
            Some(v) => self.values().append_value(v),
            None => self.append_null(),
        }
    }
}

fn utc(b: TimestampMicrosecondBuilder) -> TimestampMicrosecondBuilder {
    b.with_timezone("UTC")
}

/// Rows of the `events` table being built.
pub struct EventRows {
    scope: ScopeCols,
    lsn: UInt64Builder,
    block_lsn: UInt64Builder,
    ts: TimestampMicrosecondBuilder,
    kind: StringBuilder,
    run_id: StringBuilder,
    skill_id: Sparse<StringBuilder>,
    caller_id: Sparse<StringBuilder>,
    channel_id: Sparse<StringBuilder>,
    parent_run_id: Sparse<StringBuilder>,
    inputs: Sparse<StringBuilder>,
    dry_run: Sparse<BooleanBuilder>,
    seq: Sparse<UInt64Builder>,
    event_type: Sparse<StringBuilder>,
    payload: Sparse<StringBuilder>,
    status: Sparse<StringBuilder>,
    output: Sparse<StringBuilder>,
    error: Sparse<StringBuilder>,
    tool_calls: Sparse<UInt64Builder>,
    runtime_seconds: Sparse<Float64Builder>,
    input_tokens: Sparse<UInt64Builder>,
    output_tokens: Sparse<UInt64Builder>,
    thinking_tokens: Sparse<UInt64Builder>,
    extra: Sparse<StringBuilder>,
    rows: usize,
    scratch: String,
}

impl Default for EventRows {
    fn default() -> Self {
        EventRows {
            scope: ScopeCols::default(),
            lsn: UInt64Builder::new(),
            block_lsn: UInt64Builder::new(),
            ts: utc(TimestampMicrosecondBuilder::new()),
            kind: StringBuilder::new(),
            run_id: StringBuilder::new(),
            skill_id: Sparse::default(),
            caller_id: Sparse::default(),
            channel_id: Sparse::default(),
            parent_run_id: Sparse::default(),
            inputs: Sparse::default(),
            dry_run: Sparse::default(),
            seq: Sparse::default(),
            event_type: Sparse::default(),
            payload: Sparse::default(),
            status: Sparse::default(),
            output: Sparse::default(),
            error: Sparse::default(),
            tool_calls: Sparse::default(),
            runtime_seconds: Sparse::default(),
            input_tokens: Sparse::default(),
            output_tokens: Sparse::default(),
            thinking_tokens: Sparse::default(),
            extra: Sparse::default(),
            rows: 0,
            scratch: String::new(),
        }
    }
}

/// A system event's record (a cut, a repair, a retention pass, a signed
/// checkpoint of the Merkle tree) as the JSON object of its fields, in
/// their declared order: the `payload` of its `events` row, from which `verify-export` rebuilds the record exactly.
pub fn system_json(r: &SystemRecord, out: &mut String) {
    out.clear();
    let text = match r {
        SystemRecord::TornTailCut(c) | SystemRecord::Repair(c) => serde_json::to_string(c),
        SystemRecord::Retention(x) => serde_json::to_string(x),
        SystemRecord::Checkpoint(x) => serde_json::to_string(x),
    };
    // Plain strings and integers: serializing cannot fail.
    out.push_str(&text.unwrap_or_default());
}

/// Unknown top-level fields as one JSON object text, in their stored
/// order, each value exactly as stored; `None` when there are none.
pub fn extra_json<K: AsRef<str>>(extra: &[(K, &str)], out: &mut String) -> bool {
    out.clear();
    if extra.is_empty() {
        return false;
    }
    out.push('{');
    for (i, (k, v)) in extra.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(k.as_ref(), out);
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    true
}

impl EventRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, scope: &Scope, lsn: u64, block_lsn: u64, ev: &Event) {
        self.push_view(scope, lsn, block_lsn, &EventRef::of(ev), Some(ev));
    }

    /// Add the event seen as `ev` (borrowed from its stored bytes, as the
    /// replay lends it: its strings are copied once, into the columns).
    /// `owned` is the owned event when there is one: a system event's
    /// record is only read from it.
    pub fn push_view(
        &mut self,
        scope: &Scope,
        lsn: u64,
        block_lsn: u64,
        ev: &EventRef<'_>,
        owned: Option<&Event>,
    ) {
        self.scope.push(scope);
        self.lsn.append_value(lsn);
        self.block_lsn.append_value(block_lsn);
        self.ts.append_value(ev.ts);
        self.kind.append_value(ev.data.kind());
        self.run_id.append_value(ev.run_id);
        let s = match &ev.data {
            DataRef::RunStarted(s) => Some(s),
            _ => None,
        };
        self.skill_id.append_option(s.map(|s| s.skill_id));
        self.caller_id.append_option(s.map(|s| s.caller_id));
        self.channel_id.append_option(s.map(|s| s.channel_id));
        self.parent_run_id.append_option(s.map(|s| s.parent_run_id));
        self.inputs.append_option(s.map(|s| s.inputs));
        self.dry_run.append_option(s.map(|s| s.dry_run));
        match (&ev.data, owned.and_then(|e| e.data.system())) {
            (DataRef::RunLog(l), _) => {
                self.seq.append_value(l.seq);
                self.event_type.append_value(l.event_type);
                self.payload.append_value(l.payload);
            }
            (DataRef::System(_), Some(r)) => {
                self.seq.append_null();
                self.event_type.append_value(r.name());
                system_json(r, &mut self.scratch);
                self.payload.append_value(&self.scratch);
            }
            (DataRef::ToolCall(_), _) => {
                // The call as its event JSON (without `extra`, which has
                // its own column): the engine's own writer, read back
                // exactly by its parser (verify-export re-encodes it).
                self.seq.append_null();
                self.event_type.append_value("tool_call");
                self.scratch.clear();
                if let Some(mut bare) = ev.to_event() {
                    bare.extra.clear();
                    auditlog::event::json::write_event(&bare, None, &mut self.scratch);
                }
                self.payload.append_value(&self.scratch);
            }
            // Starts, finishes (and a system event without its record,
            // which the replay never lends).
            _ => {
                self.seq.append_null();
                self.event_type.append_null();
                self.payload.append_null();
            }
        }
        let f = match &ev.data {
            DataRef::RunFinished(f) => Some(f),
            _ => None,
        };
        self.status.append_option(f.map(|f| f.status));
        self.output.append_option(f.map(|f| f.output));
        self.error.append_option(f.map(|f| f.error));
        self.tool_calls.append_option(f.map(|f| f.tool_calls));
        self.runtime_seconds
            .append_option(f.map(|f| f.runtime_seconds));
        self.input_tokens.append_option(f.map(|f| f.input_tokens));
        self.output_tokens.append_option(f.map(|f| f.output_tokens));
        self.thinking_tokens
            .append_option(f.map(|f| f.thinking_tokens));
        if extra_json(&ev.extra, &mut self.scratch) {
            self.extra.append_value(&self.scratch);
        } else {
            self.extra.append_null();
        }
        self.rows += 1;
    }

    /// The rows so far as one batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols = self.scope.finish();
        let rest: Vec<ArrayRef> = vec![
            self.lsn.take(),
            self.block_lsn.take(),
            self.ts.take(),
            self.kind.take(),
            self.run_id.take(),
            self.skill_id.take(),
            self.caller_id.take(),
            self.channel_id.take(),
            self.parent_run_id.take(),
            self.inputs.take(),
            self.dry_run.take(),
            self.seq.take(),
            self.event_type.take(),
            self.payload.take(),
            self.status.take(),
            self.output.take(),
            self.error.take(),
            self.tool_calls.take(),
            self.runtime_seconds.take(),
            self.input_tokens.take(),
            self.output_tokens.take(),
            self.thinking_tokens.take(),
            self.extra.take(),
        ];
        cols.extend(rest);
        self.rows = 0;
        RecordBatch::try_new(events_schema(), cols)
    }
}

/// A tool call's payload fields, read as the engine's `errors` query reads
/// them: a string is itself, any other JSON value its compact JSON text,
/// absent or null is null (the engine's `""`). Texts borrow from the event
/// where they can (a string without escapes, a record's field): a call is
/// read once per exported event, so no copy is made that the column
/// builders would only copy again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall<'e> {
    pub tool: Option<Cow<'e, str>>,
    pub status: Option<Cow<'e, str>>,
    pub error_type: Option<Cow<'e, str>>,
    /// Numeric `duration_ms` only.
    pub duration_ms: Option<f64>,
    pub args_summary: Option<Cow<'e, str>>,
    /// Integer JSON numbers only (the payload keeps anything else).
    pub result_bytes: Option<i64>,
    pub exit_code: Option<i64>,
    pub http_status: Option<i64>,
    pub input_hash: Option<Cow<'e, str>>,
    pub channel_id: Option<Cow<'e, str>>,
    pub caller_id: Option<Cow<'e, str>>,
    pub workspace_id: Option<Cow<'e, str>>,
    pub request_id: Option<Cow<'e, str>>,
    pub engine: Option<Cow<'e, str>>,
    /// What of the call no typed column holds, as (key, raw JSON value)
    /// members of the `extra` column's object, in payload order: a
    /// payload's unknown keys, a known key whose value its column does not
    /// take (a non-string `tool`, a fractional `exit_code`), the earlier
    /// copies of a repeated key; a payload that is not an object, and a
    /// record's own payload, as the one member `payload`. Empty: null.
    pub extra: Vec<(Cow<'e, str>, &'e str)>,
}

impl<'e> ToolCall<'e> {
    /// The tool call an event records, if it is one: a `tool_call`
    /// record (its typed fields; "" as null), or a `run_log` whose
    /// `event_type` is `tool_call` (its payload's fields; its run-less
    /// scope fields stay null: it belongs to its run). docs/export.md.
    pub fn of(ev: &'e Event) -> Option<ToolCall<'e>> {
        ToolCall::of_data(&DataRef::of(&ev.data))
    }

    /// [`ToolCall::of`] an event seen in place.
    pub fn of_view(ev: &EventRef<'e>) -> Option<ToolCall<'e>> {
        ToolCall::of_data(&ev.data)
    }

    fn of_data(data: &DataRef<'e>) -> Option<ToolCall<'e>> {
        match data {
            DataRef::ToolCall(c) => Some(ToolCall::of_record(c)),
            DataRef::RunLog(l) if l.event_type == "tool_call" => Some(ToolCall::parse(l.payload)),
            _ => None,
        }
    }

    fn of_record(c: &CallRef<'e>) -> ToolCall<'e> {
        let s = |v: &'e str| (!v.is_empty()).then_some(Cow::Borrowed(v));
        ToolCall {
            tool: s(c.tool),
            status: s(c.status),
            error_type: s(c.error_type),
            duration_ms: c.duration_ms,
            args_summary: s(c.args_summary),
            result_bytes: c.result_bytes.and_then(|b| i64::try_from(b).ok()),
            exit_code: c.exit_code,
            http_status: c.http_status.map(i64::from),
            input_hash: s(c.input_hash),
            channel_id: s(c.channel_id),
            caller_id: s(c.caller_id),
            workspace_id: s(c.workspace_id),
            request_id: s(c.request_id),
            engine: s(c.engine),
            // The record's own payload (its call_id, error and
            // input_bytes are in its `events` row).
            extra: match c.payload {
                "null" => Vec::new(),
                p => vec![(Cow::Borrowed("payload"), p)],
            },
        }
    }

    /// The known fields of a tool call's payload, and what they do not
    /// hold ([`ToolCall::extra`]). The payload is walked once, borrowed:
    /// each member's value is looked at as raw JSON text, and nothing else
    /// is built. A repeated key counts with its last value, as
    /// `serde_json::Value` (the engine's reader) has it. A payload that is
    /// not an object has no known fields.
    ///
    /// The walk follows the text's structure alone (the `members` module);
    /// where that reader does not take the payload whole, serde_json's
    /// walk gives the answer ([`ToolCall::parse_full`], which the tests
    /// hold it to).
    pub fn parse(payload: &'e str) -> ToolCall<'e> {
        let mut w = Walk::default();
        match crate::members::members(payload, |key, raw| w.set(Cow::Borrowed(key), raw)) {
            Some(()) => w.call,
            None => ToolCall::parse_full(payload),
        }
    }

    /// [`ToolCall::parse`] through serde_json's walk of the payload.
    pub fn parse_full(payload: &'e str) -> ToolCall<'e> {
        let mut w = Walk::default();
        let mut de = serde_json::Deserializer::from_str(payload);
        if serde::Deserializer::deserialize_map(&mut de, Fields(&mut w)).is_err() {
            // Not an object (the engine stored valid JSON): nothing typed.
            return ToolCall {
                extra: vec![(Cow::Borrowed("payload"), payload)],
                ..ToolCall::default()
            };
        }
        w.call
    }
}

/// The known keys of a tool call's payload, in [`Walk::last`]'s order.
const KNOWN_KEYS: [&str; 9] = [
    "tool",
    "status",
    "error_type",
    "args_summary",
    "input_hash",
    "duration_ms",
    "result_bytes",
    "exit_code",
    "http_status",
];

/// Where `key` is in [`KNOWN_KEYS`] (a `match`: one length and byte
/// compare, not nine).
fn known_key(key: &str) -> Option<usize> {
    Some(match key {
        "tool" => 0,
        "status" => 1,
        "error_type" => 2,
        "args_summary" => 3,
        "input_hash" => 4,
        "duration_ms" => 5,
        "result_bytes" => 6,
        "exit_code" => 7,
        "http_status" => 8,
        _ => return None,
    })
}

/// A payload being read member by member into a [`ToolCall`].
#[derive(Default)]
struct Walk<'e> {
    call: ToolCall<'e>,
    /// The raw value each known key held last, when its column took it:
    /// if the key comes again, that earlier value goes to `extra`.
    last: [Option<&'e str>; KNOWN_KEYS.len()],
}

impl<'e> Walk<'e> {
    /// Take member `key` with value `v`: into its typed column if it is a
    /// known key whose column takes the value, else into `extra`.
    fn set(&mut self, key: Cow<'e, str>, v: Value<'e>) {
        let Some(k) = known_key(&key) else {
            self.call.extra.push((key, v.raw));
            return;
        };
        let text = || match v.plain {
            Some(plain) => Some(Cow::Borrowed(plain)),
            None => text(v.raw),
        };
        // A text column holds a string (or null: absent); a number column
        // a number of its kind. Any other value is only readable from
        // `extra` (the text column holds its JSON text, without its type).
        let is_text = matches!(v.raw.as_bytes().first(), Some(b'"')) || v.raw == "null";
        let c = &mut self.call;
        let held = match k {
            0 => {
                c.tool = text();
                is_text
            }
            1 => {
                c.status = text();
                is_text
            }
            2 => {
                c.error_type = text();
                is_text
            }
            3 => {
                c.args_summary = text();
                is_text
            }
            4 => {
                c.input_hash = text();
                is_text
            }
            5 => {
                c.duration_ms = float(v.raw);
                c.duration_ms.is_some() || v.raw == "null"
            }
            6 => {
                c.result_bytes = int(v.raw);
                c.result_bytes.is_some() || v.raw == "null"
            }
            7 => {
                c.exit_code = int(v.raw);
                c.exit_code.is_some() || v.raw == "null"
            }
            _ => {
                c.http_status = int(v.raw);
                c.http_status.is_some() || v.raw == "null"
            }
        };
        if let Some(earlier) = self.last[k].take() {
            c.extra.push((Cow::Borrowed(KNOWN_KEYS[k]), earlier));
        }
        if held {
            self.last[k] = Some(v.raw);
        } else {
            c.extra.push((key, v.raw));
        }
    }
}

/// A member as a number, as `serde_json::from_str::<f64>` reads it.
fn float(raw: &str) -> Option<f64> {
    match crate::members::small_unsigned(raw) {
        // At most 15 digits: exact either way.
        Some(n) => Some(n as f64),
        None => serde_json::from_str::<f64>(raw).ok(),
    }
}

/// A member as an integer, as `serde_json::from_str::<i64>` reads it.
fn int(raw: &str) -> Option<i64> {
    crate::members::small_unsigned(raw).or_else(|| serde_json::from_str::<i64>(raw).ok())
}

/// Fills a [`ToolCall`] from the members of a JSON object.
struct Fields<'c, 'e>(&'c mut Walk<'e>);

impl<'e> serde::de::Visitor<'e> for Fields<'_, 'e> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'e>>(self, mut m: A) -> Result<(), A::Error> {
        let c = self.0;
        while let Some(Text(key)) = m.next_key::<Text<'e>>()? {
            let raw: &'e RawValue = m.next_value()?;
            let raw = raw.get();
            c.set(key, Value { raw, plain: None });
        }
        Ok(())
    }
}

/// A JSON string, borrowed from the input unless it has escapes. (serde's
/// own `Cow<str>` always copies.)
struct Text<'e>(Cow<'e, str>);

impl<'e> serde::Deserialize<'e> for Text<'e> {
    fn deserialize<D: serde::Deserializer<'e>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'e> serde::de::Visitor<'e> for TextVisitor {
    type Value = Text<'e>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'e str) -> Result<Text<'e>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'e>, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'e>, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

/// A member as text, as the engine's `errors` query reads it: a string is
/// itself (borrowed unless it has escapes), null is absent, any other
/// value its compact JSON text.
fn text(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Text<'_>>(raw).ok().map(|t| t.0),
        _ if raw == "null" => None,
        _ => serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .map(|v| Cow::Owned(v.to_string())),
    }
}

/// Rows of the `tool_calls` table being built.
pub struct ToolCallRows {
    scope: ScopeCols,
    lsn: UInt64Builder,
    ts: TimestampMicrosecondBuilder,
    run_id: StringBuilder,
    seq: Sparse<UInt64Builder>,
    replace: BooleanBuilder,
    tool: Sparse<StringBuilder>,
    status: Sparse<StringBuilder>,
    error_type: Sparse<StringBuilder>,
    duration_ms: Sparse<Float64Builder>,
    args_summary: Sparse<StringBuilder>,
    result_bytes: Sparse<Int64Builder>,
    exit_code: Sparse<Int64Builder>,
    http_status: Sparse<Int64Builder>,
    input_hash: Sparse<StringBuilder>,
    channel_id: Sparse<StringBuilder>,
    caller_id: Sparse<StringBuilder>,
    workspace_id: Sparse<StringBuilder>,
    request_id: Sparse<StringBuilder>,
    engine: Sparse<StringBuilder>,
    /// `extra` (layout 2 on), or the whole `payload` (layout 1).
    last: Sparse<StringBuilder>,
    rows: usize,
    /// The export layout version the rows are built for.
    version: u32,
    scratch: String,
}

impl Default for ToolCallRows {
    fn default() -> Self {
        ToolCallRows::of_version(crate::manifest::VERSION)
    }
}

impl ToolCallRows {
    /// Rows of the `tool_calls` table of export layout `version` (an
    /// export goes on in the layout its destination began with).
    pub fn of_version(version: u32) -> Self {
        ToolCallRows {
            scope: ScopeCols::default(),
            lsn: UInt64Builder::new(),
            ts: utc(TimestampMicrosecondBuilder::new()),
            run_id: StringBuilder::new(),
            seq: Sparse::default(),
            replace: BooleanBuilder::new(),
            tool: Sparse::default(),
            status: Sparse::default(),
            error_type: Sparse::default(),
            duration_ms: Sparse::default(),
            args_summary: Sparse::default(),
            result_bytes: Sparse::default(),
            exit_code: Sparse::default(),
            http_status: Sparse::default(),
            input_hash: Sparse::default(),
            channel_id: Sparse::default(),
            caller_id: Sparse::default(),
            workspace_id: Sparse::default(),
            request_id: Sparse::default(),
            engine: Sparse::default(),
            last: Sparse::default(),
            rows: 0,
            version,
            scratch: String::new(),
        }
    }
}

impl ToolCallRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Add `ev` (at `lsn`) if it is a tool call; whether it was one.
    pub fn push_if_call(&mut self, scope: &Scope, lsn: u64, ev: &Event) -> bool {
        match ToolCall::of(ev) {
            Some(c) => self.push_call(scope, lsn, ev, c),
            None => false,
        }
    }

    /// Add tool call `c`, read from `ev` (at `lsn`); false if `ev` is
    /// neither a run log nor a tool call record.
    pub fn push_call(&mut self, scope: &Scope, lsn: u64, ev: &Event, c: ToolCall<'_>) -> bool {
        self.push_call_view(scope, lsn, &EventRef::of(ev), c)
    }

    /// [`ToolCallRows::push_call`] of an event seen in place.
    pub fn push_call_view(
        &mut self,
        scope: &Scope,
        lsn: u64,
        ev: &EventRef<'_>,
        c: ToolCall<'_>,
    ) -> bool {
        let (seq, payload) = match &ev.data {
            DataRef::RunLog(l) => (Some(l.seq), l.payload),
            DataRef::ToolCall(t) => (None, t.payload),
            _ => return false,
        };
        self.scope.push(scope);
        self.lsn.append_value(lsn);
        self.ts.append_value(ev.ts);
        self.run_id.append_value(ev.run_id);
        self.seq.append_option(seq);
        self.replace.append_value(ev.is_replace());
        self.tool.append_option(c.tool);
        self.status.append_option(c.status);
        self.error_type.append_option(c.error_type);
        self.duration_ms.append_option(c.duration_ms);
        self.args_summary.append_option(c.args_summary);
        self.result_bytes.append_option(c.result_bytes);
        self.exit_code.append_option(c.exit_code);
        self.http_status.append_option(c.http_status);
        self.input_hash.append_option(c.input_hash);
        self.channel_id.append_option(c.channel_id);
        self.caller_id.append_option(c.caller_id);
        self.workspace_id.append_option(c.workspace_id);
        self.request_id.append_option(c.request_id);
        self.engine.append_option(c.engine);
        if self.version < crate::manifest::EXTRA_SINCE {
            self.last.append_value(payload);
        } else if extra_json(&c.extra, &mut self.scratch) {
            self.last.append_value(&self.scratch);
        } else {
            self.last.append_null();
        }
        self.rows += 1;
        true
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols = self.scope.finish();
        let rest: Vec<ArrayRef> = vec![
            self.lsn.take(),
            self.ts.take(),
            self.run_id.take(),
            self.seq.take(),
            self.replace.take(),
            self.tool.take(),
            self.status.take(),
            self.error_type.take(),
            self.duration_ms.take(),
            self.args_summary.take(),
            self.result_bytes.take(),
            self.exit_code.take(),
            self.http_status.take(),
            self.input_hash.take(),
            self.channel_id.take(),
            self.caller_id.take(),
            self.workspace_id.take(),
            self.request_id.take(),
            self.engine.take(),
            self.last.take(),
        ];
        cols.extend(rest);
        self.rows = 0;
        RecordBatch::try_new(tool_calls_schema_of(self.version), cols)
    }
}

/// Rows of the `runs` table being built.
pub struct RunRows {
    scope: ScopeCols,
    start_lsn: UInt64Builder,
    id: StringBuilder,
    skill_id: StringBuilder,
    caller_id: StringBuilder,
    channel_id: StringBuilder,
    parent_run_id: StringBuilder,
    inputs: StringBuilder,
    dry_run: BooleanBuilder,
    started_at: TimestampMicrosecondBuilder,
    finished_at: TimestampMicrosecondBuilder,
    status: StringBuilder,
    output: StringBuilder,
    error: StringBuilder,
    tool_calls: UInt64Builder,
    runtime_seconds: Float64Builder,
    input_tokens: UInt64Builder,
    output_tokens: UInt64Builder,
    thinking_tokens: UInt64Builder,
    rows: usize,
}

impl Default for RunRows {
    fn default() -> Self {
        RunRows {
            scope: ScopeCols::default(),
            start_lsn: UInt64Builder::new(),
            id: StringBuilder::new(),
            skill_id: StringBuilder::new(),
            caller_id: StringBuilder::new(),
            channel_id: StringBuilder::new(),
            parent_run_id: StringBuilder::new(),
            inputs: StringBuilder::new(),
            dry_run: BooleanBuilder::new(),
            started_at: utc(TimestampMicrosecondBuilder::new()),
            finished_at: utc(TimestampMicrosecondBuilder::new()),
            status: StringBuilder::new(),
            output: StringBuilder::new(),
            error: StringBuilder::new(),
            tool_calls: UInt64Builder::new(),
            runtime_seconds: Float64Builder::new(),
            input_tokens: UInt64Builder::new(),
            output_tokens: UInt64Builder::new(),
            thinking_tokens: UInt64Builder::new(),
            rows: 0,
        }
    }
}

impl RunRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, scope: &Scope, start_lsn: u64, r: &Run) {
        self.scope.push(scope);
        self.start_lsn.append_value(start_lsn);
        self.id.append_value(&r.id);
        self.skill_id.append_value(&r.skill_id);
        self.caller_id.append_value(&r.caller_id);
        self.channel_id.append_value(&r.channel_id);
        self.parent_run_id.append_value(&r.parent_run_id);
        self.inputs.append_value(r.inputs.as_str());
        self.dry_run.append_value(r.dry_run);
        self.started_at.append_value(r.started_at);
        self.finished_at.append_option(r.finished_at);
        self.status.append_value(&r.status);
        self.output.append_value(&r.output);
        self.error.append_value(&r.error);
        self.tool_calls.append_value(r.tool_calls);
        self.runtime_seconds.append_value(r.runtime_seconds);
        self.input_tokens.append_value(r.input_tokens);
        self.output_tokens.append_value(r.output_tokens);
        self.thinking_tokens.append_value(r.thinking_tokens);
        self.rows += 1;
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols = self.scope.finish();
        let rest: Vec<ArrayRef> = vec![
            self.start_lsn.take(),
            self.id.take(),
            self.skill_id.take(),
            self.caller_id.take(),
            self.channel_id.take(),
            self.parent_run_id.take(),
            self.inputs.take(),
            self.dry_run.take(),
            self.started_at.take(),
            self.finished_at.take(),
            self.status.take(),
            self.output.take(),
            self.error.take(),
            self.tool_calls.take(),
            self.runtime_seconds.take(),
            self.input_tokens.take(),
            self.output_tokens.take(),
            self.thinking_tokens.take(),
        ];
        cols.extend(rest);
        self.rows = 0;
        RecordBatch::try_new(runs_schema(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog::EventData;

    /// The payload walk without the structural reader: serde_json's alone.
    fn by_serde(payload: &str) -> ToolCall<'_> {
        ToolCall::parse_full(payload)
    }

    #[test]
    fn the_structural_walk_reads_payloads_as_serde_json_does() {
        let payloads = [
            r#"{"tool":"fs.read","status":"ok","duration_ms":311,"args_summary":"GET https://x/y?id=1","result_bytes":56855}"#,
            r#" { "tool" : "a\"b" , "status":"caf\u00e9", "error_type": null, "duration_ms": 1.25 } "#,
            r#"{"duration_ms":-0,"result_bytes":-0,"exit_code":-1,"http_status":404.0}"#,
            r#"{"duration_ms":1e3,"result_bytes":12345678901234567890,"exit_code":9223372036854775807}"#,
            r#"{"tool":{"name":"x","v":[1,2,{"k":"}"}]},"status":[],"input_hash":true}"#,
            r#"{"tool":"a","tool":"b","status":"x","status":null}"#,
            r#"{"t\u006fol":"escaped key"}"#,
            r#"{"args_summary":"","duration_ms":"12","exit_code":0}"#,
            r#"[{"tool":"x"}]"#,
            r#""tool""#,
            "{}",
            "null",
            r#"{"duration_ms":0.1,"result_bytes":1.5,"http_status":200}"#,
            r#"{"duration_ms":123456789012345,"result_bytes":1234567890123456}"#,
        ];
        for p in payloads {
            assert_eq!(ToolCall::parse(p), by_serde(p), "{p}");
        }
        let spec = auditlog_loadrun::workload::WorkloadSpec {
            runs: 2_000,
            ..Default::default()
        };
        let mut calls = 0;
        for ev in spec.events(0, spec.runs) {
            if let EventData::RunLog(l) = &ev.data {
                let p = l.payload.as_str();
                assert_eq!(ToolCall::parse(p), by_serde(p), "{p}");
                calls += 1;
            }
        }
        assert!(calls > 1_000);
    }

    /// The `extra` object of a payload's call, as the column holds it.
    fn extra_of(payload: &str) -> Option<String> {
        let mut out = String::new();
        extra_json(&ToolCall::parse(payload).extra, &mut out).then_some(out)
    }

    #[test]
    fn known_keys_are_found_where_they_stand() {
        for (i, k) in KNOWN_KEYS.iter().enumerate() {
            assert_eq!(known_key(k), Some(i));
        }
        assert_eq!(known_key("tools"), None);
    }

    #[test]
    fn extra_holds_what_no_typed_column_does() {
        // Every member held by its column: null.
        let all = r#"{"tool":"t","status":"ok","error_type":null,"duration_ms":1.5,"args_summary":"a","input_hash":"h","result_bytes":3,"exit_code":-1,"http_status":200}"#;
        assert_eq!(extra_of(all), None);
        // Unknown keys, in order, values exactly as stored.
        assert_eq!(
            extra_of(r#"{"tool":"t","retry": [1, 2] ,"note":"caf\u00e9"}"#).as_deref(),
            Some(r#"{"retry":[1, 2],"note":"caf\u00e9"}"#)
        );
        // Known keys whose value the column does not take as its type.
        let c = ToolCall::parse(r#"{"tool":7,"exit_code":1.5,"duration_ms":"fast","status":true}"#);
        assert_eq!(c.tool.as_deref(), Some("7"));
        assert_eq!((c.exit_code, c.duration_ms), (None, None));
        assert_eq!(
            extra_of(r#"{"tool":7,"exit_code":1.5,"duration_ms":"fast","status":true}"#).as_deref(),
            Some(r#"{"tool":7,"exit_code":1.5,"duration_ms":"fast","status":true}"#)
        );
        // A repeated key: the column holds the last, extra the earlier.
        let c = ToolCall::parse(r#"{"tool":"a","x":1,"tool":"b"}"#);
        assert_eq!(c.tool.as_deref(), Some("b"));
        assert_eq!(
            extra_of(r#"{"tool":"a","x":1,"tool":"b"}"#).as_deref(),
            Some(r#"{"x":1,"tool":"a"}"#)
        );
        // Not an object: the whole payload, as `payload`.
        assert_eq!(
            extra_of(r#""free text""#).as_deref(),
            Some(r#"{"payload":"free text"}"#)
        );
        assert_eq!(extra_of("[1,2]").as_deref(), Some(r#"{"payload":[1,2]}"#));
        // An escaped key goes through serde_json's walk: decoded, then
        // written as a JSON string.
        assert_eq!(
            extra_of(r#"{"t\u006fol":"x","n\"k":1}"#).as_deref(),
            Some(r#"{"n\"k":1}"#)
        );
    }

    #[test]
    fn layout_one_repeats_the_payload_and_two_holds_extra() {
        let scope = Scope {
            log_id: "l".into(),
            host: "h".into(),
            segment: 1,
        };
        let ev = Event::run_log(
            "r",
            5,
            auditlog::RunLog {
                seq: 0,
                event_type: "tool_call".into(),
                payload: auditlog::Json::parse(r#"{"tool":"t","k":1}"#).unwrap(),
            },
        );
        for (version, name, want) in [
            (1, "payload", r#"{"tool":"t","k":1}"#),
            (2, "extra", r#"{"k":1}"#),
        ] {
            let mut rows = ToolCallRows::of_version(version);
            assert!(rows.push_if_call(&scope, 7, &ev));
            let b = rows.finish().unwrap();
            let col = b.column_by_name(name).unwrap();
            let col = arrow_array::cast::AsArray::as_string::<i32>(col);
            assert_eq!(col.value(0), want);
            assert_eq!(b.schema(), tool_calls_schema_of(version));
        }
    }
}
