//! The three exported tables as Arrow schemas, and the builders that turn
//! events, tool calls and runs into their rows. docs/export.md documents
//! every column; this file is the one place that defines them.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, PrimitiveBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::types::ArrowPrimitiveType;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use auditlog::event::json::json_string;
use auditlog::system::SystemRecord;
use auditlog::{Event, EventData, Run};
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
        field("payload", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(f))
}

/// The scope columns of one table's rows.
#[derive(Default)]
struct ScopeCols {
    log_id: StringBuilder,
    host: StringBuilder,
    segment: UInt64Builder,
}

impl ScopeCols {
    fn push(&mut self, s: &Scope) {
        self.log_id.append_value(&s.log_id);
        self.host.append_value(&s.host);
        self.segment.append_value(s.segment);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
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
    skill_id: StringBuilder,
    caller_id: StringBuilder,
    channel_id: StringBuilder,
    parent_run_id: StringBuilder,
    inputs: StringBuilder,
    dry_run: BooleanBuilder,
    seq: UInt64Builder,
    event_type: StringBuilder,
    payload: StringBuilder,
    status: StringBuilder,
    output: StringBuilder,
    error: StringBuilder,
    tool_calls: UInt64Builder,
    runtime_seconds: Float64Builder,
    input_tokens: UInt64Builder,
    output_tokens: UInt64Builder,
    thinking_tokens: UInt64Builder,
    extra: StringBuilder,
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
            skill_id: StringBuilder::new(),
            caller_id: StringBuilder::new(),
            channel_id: StringBuilder::new(),
            parent_run_id: StringBuilder::new(),
            inputs: StringBuilder::new(),
            dry_run: BooleanBuilder::new(),
            seq: UInt64Builder::new(),
            event_type: StringBuilder::new(),
            payload: StringBuilder::new(),
            status: StringBuilder::new(),
            output: StringBuilder::new(),
            error: StringBuilder::new(),
            tool_calls: UInt64Builder::new(),
            runtime_seconds: Float64Builder::new(),
            input_tokens: UInt64Builder::new(),
            output_tokens: UInt64Builder::new(),
            thinking_tokens: UInt64Builder::new(),
            extra: StringBuilder::new(),
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
pub fn extra_json(ev: &Event, out: &mut String) -> bool {
    out.clear();
    if ev.extra.is_empty() {
        return false;
    }
    out.push('{');
    for (i, (k, v)) in ev.extra.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(k, out);
        out.push(':');
        out.push_str(v.as_str());
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
        self.scope.push(scope);
        self.lsn.append_value(lsn);
        self.block_lsn.append_value(block_lsn);
        self.ts.append_value(ev.ts);
        self.kind.append_value(ev.data.kind());
        self.run_id.append_value(&ev.run_id);
        let s = match &ev.data {
            EventData::RunStarted(s) => Some(s),
            _ => None,
        };
        self.skill_id.append_option(s.map(|s| &s.skill_id));
        self.caller_id.append_option(s.map(|s| &s.caller_id));
        self.channel_id.append_option(s.map(|s| &s.channel_id));
        self.parent_run_id
            .append_option(s.map(|s| &s.parent_run_id));
        self.inputs.append_option(s.map(|s| s.inputs.as_str()));
        self.dry_run.append_option(s.map(|s| s.dry_run));
        match &ev.data {
            EventData::RunLog(l) => {
                self.seq.append_value(l.seq);
                self.event_type.append_value(&l.event_type);
                self.payload.append_value(l.payload.as_str());
            }
            EventData::System(r) => {
                self.seq.append_null();
                self.event_type.append_value(r.name());
                system_json(r, &mut self.scratch);
                self.payload.append_value(&self.scratch);
            }
            EventData::ToolCall(_) => {
                // The call as its event JSON (without `extra`, which has
                // its own column): the engine's own writer, read back
                // exactly by its parser (verify-export re-encodes it).
                self.seq.append_null();
                self.event_type.append_value("tool_call");
                self.scratch.clear();
                let bare = Event {
                    extra: Vec::new(),
                    ..ev.clone()
                };
                auditlog::event::json::write_event(&bare, None, &mut self.scratch);
                self.payload.append_value(&self.scratch);
            }
            _ => {
                self.seq.append_null();
                self.event_type.append_null();
                self.payload.append_null();
            }
        }
        let f = match &ev.data {
            EventData::RunFinished(f) => Some(f),
            _ => None,
        };
        self.status.append_option(f.map(|f| &f.status));
        self.output.append_option(f.map(|f| &f.output));
        self.error.append_option(f.map(|f| &f.error));
        self.tool_calls.append_option(f.map(|f| f.tool_calls));
        self.runtime_seconds
            .append_option(f.map(|f| f.runtime_seconds));
        self.input_tokens.append_option(f.map(|f| f.input_tokens));
        self.output_tokens.append_option(f.map(|f| f.output_tokens));
        self.thinking_tokens
            .append_option(f.map(|f| f.thinking_tokens));
        if extra_json(ev, &mut self.scratch) {
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
}

impl<'e> ToolCall<'e> {
    /// The tool call an event records, if it is one: a `tool_call`
    /// record (its typed fields; "" as null), or a `run_log` whose
    /// `event_type` is `tool_call` (its payload's fields; its run-less
    /// scope fields stay null: it belongs to its run). docs/export.md.
    pub fn of(ev: &'e Event) -> Option<ToolCall<'e>> {
        match &ev.data {
            EventData::ToolCall(c) => Some(ToolCall::of_record(c)),
            EventData::RunLog(l) if l.event_type == "tool_call" => {
                Some(ToolCall::parse(l.payload.as_str()))
            }
            _ => None,
        }
    }

    fn of_record(c: &'e auditlog::ToolCall) -> ToolCall<'e> {
        let s = |v: &'e str| (!v.is_empty()).then_some(Cow::Borrowed(v));
        ToolCall {
            tool: s(&c.tool),
            status: s(&c.status),
            error_type: s(&c.error_type),
            duration_ms: c.duration_ms,
            args_summary: s(&c.args_summary),
            result_bytes: c.result_bytes.and_then(|b| i64::try_from(b).ok()),
            exit_code: c.exit_code,
            http_status: c.http_status.map(i64::from),
            input_hash: s(&c.input_hash),
            channel_id: s(&c.channel_id),
            caller_id: s(&c.caller_id),
            workspace_id: s(&c.workspace_id),
            request_id: s(&c.request_id),
            engine: s(&c.engine),
        }
    }

    /// The known fields of a tool call's payload. The payload is walked
    /// once, borrowed: each known key's value is looked at as raw JSON
    /// text, and nothing else is built. A repeated key counts with its
    /// last value, as `serde_json::Value` (the engine's reader) has it. A
    /// payload that is not an object has no known fields.
    pub fn parse(payload: &'e str) -> ToolCall<'e> {
        let mut c = ToolCall::default();
        let mut de = serde_json::Deserializer::from_str(payload);
        if serde::Deserializer::deserialize_map(&mut de, Fields(&mut c)).is_err() {
            return ToolCall::default();
        }
        c
    }
}

/// Fills a [`ToolCall`] from the members of a JSON object.
struct Fields<'c, 'e>(&'c mut ToolCall<'e>);

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
            match key.as_ref() {
                "tool" => c.tool = text(raw),
                "status" => c.status = text(raw),
                "error_type" => c.error_type = text(raw),
                "args_summary" => c.args_summary = text(raw),
                "input_hash" => c.input_hash = text(raw),
                "duration_ms" => c.duration_ms = serde_json::from_str::<f64>(raw).ok(),
                "result_bytes" => c.result_bytes = serde_json::from_str::<i64>(raw).ok(),
                "exit_code" => c.exit_code = serde_json::from_str::<i64>(raw).ok(),
                "http_status" => c.http_status = serde_json::from_str::<i64>(raw).ok(),
                _ => {}
            }
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
    seq: UInt64Builder,
    replace: BooleanBuilder,
    tool: StringBuilder,
    status: StringBuilder,
    error_type: StringBuilder,
    duration_ms: Float64Builder,
    args_summary: StringBuilder,
    result_bytes: Int64Builder,
    exit_code: Int64Builder,
    http_status: Int64Builder,
    input_hash: StringBuilder,
    channel_id: StringBuilder,
    caller_id: StringBuilder,
    workspace_id: StringBuilder,
    request_id: StringBuilder,
    engine: StringBuilder,
    payload: StringBuilder,
    rows: usize,
}

impl Default for ToolCallRows {
    fn default() -> Self {
        ToolCallRows {
            scope: ScopeCols::default(),
            lsn: UInt64Builder::new(),
            ts: utc(TimestampMicrosecondBuilder::new()),
            run_id: StringBuilder::new(),
            seq: UInt64Builder::new(),
            replace: BooleanBuilder::new(),
            tool: StringBuilder::new(),
            status: StringBuilder::new(),
            error_type: StringBuilder::new(),
            duration_ms: Float64Builder::new(),
            args_summary: StringBuilder::new(),
            result_bytes: Int64Builder::new(),
            exit_code: Int64Builder::new(),
            http_status: Int64Builder::new(),
            input_hash: StringBuilder::new(),
            channel_id: StringBuilder::new(),
            caller_id: StringBuilder::new(),
            workspace_id: StringBuilder::new(),
            request_id: StringBuilder::new(),
            engine: StringBuilder::new(),
            payload: StringBuilder::new(),
            rows: 0,
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
        let (seq, payload) = match &ev.data {
            EventData::RunLog(l) => (Some(l.seq), l.payload.as_str()),
            EventData::ToolCall(t) => (None, t.payload.as_str()),
            _ => return false,
        };
        self.scope.push(scope);
        self.lsn.append_value(lsn);
        self.ts.append_value(ev.ts);
        self.run_id.append_value(&ev.run_id);
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
        self.payload.append_value(payload);
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
            self.payload.take(),
        ];
        cols.extend(rest);
        self.rows = 0;
        RecordBatch::try_new(tool_calls_schema(), cols)
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
