//! OpenTelemetry GenAI spans and log records as audit events: the one
//! place that knows the mapping (docs/otlp.md has the table).
//!
//! - An `invoke_agent` span is a run: `run_started` at its start and
//!   `run_finished` at its end (status, error, runtime, token usage).
//! - An `execute_tool` span is a tool call: a `run_log` of `event_type`
//!   `tool_call` with the contract's payload fields, in the run of its
//!   nearest `invoke_agent` ancestor (found in the same request), else
//!   of its parent span, else its own span id (a call with no run).
//! - Every other span is a `run_log` of `event_type` `span`, placed the
//!   same way (unless only GenAI spans are kept).
//! - A log record is a `run_log` of its event name (or `log`), in the
//!   run named by its span id, else its trace id, else `otel-logs`.
//!
//! Nothing is dropped: every attribute (span, resource, scope, span
//! events) is kept under `attributes` / `resource` / `scope` / `events`
//! exactly as it arrived, so a renamed convention loses nothing.

use std::collections::HashMap;

use auditlog::event::json::validate_event;
use auditlog::event::MAX_EVENT_BYTES;
use auditlog::{Event, Json, Micros, RunFinished, RunLog, RunStarted};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Map, Value};

use crate::config::SpanFilter;

/// Attribute names of the GenAI semantic conventions that are mapped.
pub mod attr {
    pub const OPERATION: &str = "gen_ai.operation.name";
    pub const AGENT_ID: &str = "gen_ai.agent.id";
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const TOOL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// Not yet a settled name: the first of these present is used.
    pub const THINKING_TOKENS: [&str; 3] = [
        "gen_ai.usage.reasoning_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.thinking_tokens",
    ];
    pub const ERROR_TYPE: &str = "error.type";
    pub const USER_ID: [&str; 2] = ["enduser.id", "user.id"];
    pub const EVENT_NAME: &str = "event.name";
}

/// Run id of log records without trace context.
pub const NO_TRACE_RUN: &str = "otel-logs";
/// `args_summary` keeps this many characters of the tool's arguments.
const ARGS_SUMMARY_CHARS: usize = 256;
/// Deepest ancestor walk (cycles in bad input stop it too).
const MAX_ANCESTORS: usize = 64;

/// The events of a request, and what could not be stored.
#[derive(Default)]
pub struct Mapped {
    pub events: Vec<Event>,
    /// Spans or log records refused (each with its reason).
    pub rejected: u64,
    pub first_error: Option<String>,
}

impl Mapped {
    fn reject(&mut self, what: String) {
        self.rejected += 1;
        self.first_error.get_or_insert(what);
    }

    /// Keep `events` (of one span or record) if all are valid and each
    /// fits the event size limit.
    fn keep(&mut self, what: &str, events: Vec<Event>) {
        for ev in &events {
            if let Err(e) = validate_event(ev) {
                self.reject(format!("{what}: field `{}`: {}", e.field, e.reason));
                return;
            }
            if rough_size(ev) > MAX_EVENT_BYTES - 4096 {
                if let Err(e) = auditlog::EncodedBatch::encode(std::slice::from_ref(ev)) {
                    self.reject(format!("{what}: {e}"));
                    return;
                }
            }
        }
        self.events.extend(events);
    }
}

/// At least the encoded size of an event (its strings and JSON texts).
fn rough_size(ev: &Event) -> usize {
    use auditlog::EventData;
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
        // The log's own records: ingest refuses them, no mapping makes one.
        EventData::System(_) => 0,
    };
    ev.run_id.len()
        + data
        + ev.extra
            .iter()
            .map(|(k, v)| k.len() + v.as_str().len())
            .sum::<usize>()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// An attribute value as JSON, as it arrived (bytes in base64; a double
/// that JSON cannot hold as a string).
pub fn any_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_json).collect())
        }
        Some(any_value::Value::KvlistValue(l)) => Value::Object(attrs_json(&l.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(base64(b)),
        #[allow(unreachable_patterns)]
        Some(_) => Value::Null,
    }
}

pub fn attrs_json(kvs: &[KeyValue]) -> Map<String, Value> {
    let mut m = Map::new();
    for kv in kvs {
        m.insert(
            kv.key.clone(),
            kv.value.as_ref().map_or(Value::Null, any_json),
        );
    }
    m
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    kvs.iter()
        .rev()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str(kvs: &[KeyValue], key: &str) -> Option<String> {
    match attr(kvs, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attr_u64(kvs: &[KeyValue], key: &str) -> Option<u64> {
    match attr(kvs, key)? {
        any_value::Value::IntValue(i) => u64::try_from(*i).ok(),
        any_value::Value::DoubleValue(d) if *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn micros(nanos: u64) -> Micros {
    (nanos / 1000) as Micros
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn json(v: Value) -> Json {
    // Values built here from parsed input are valid JSON; the depth limit
    // is checked with the event (validate_event).
    Json::trusted(v.to_string())
}

fn resource_json(r: Option<&Resource>) -> Value {
    Value::Object(r.map(|r| attrs_json(&r.attributes)).unwrap_or_default())
}

fn scope_json(s: Option<&InstrumentationScope>) -> Value {
    match s {
        None => json!({}),
        Some(s) => {
            let mut m = Map::new();
            m.insert("name".into(), s.name.clone().into());
            m.insert("version".into(), s.version.clone().into());
            if !s.attributes.is_empty() {
                m.insert(
                    "attributes".into(),
                    Value::Object(attrs_json(&s.attributes)),
                );
            }
            Value::Object(m)
        }
    }
}

/// What a span is, by its GenAI operation (attribute, else its name's
/// first word, as the conventions name spans `{operation} {target}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanRole {
    Agent,
    Tool,
    Other,
}

pub fn operation(s: &Span) -> String {
    attr_str(&s.attributes, attr::OPERATION)
        .unwrap_or_else(|| s.name.split(' ').next().unwrap_or("").to_string())
}

pub fn role(s: &Span) -> SpanRole {
    match operation(s).as_str() {
        "invoke_agent" => SpanRole::Agent,
        "execute_tool" => SpanRole::Tool,
        _ => SpanRole::Other,
    }
}

fn is_genai(s: &Span) -> bool {
    role(s) != SpanRole::Other || s.attributes.iter().any(|kv| kv.key.starts_with("gen_ai."))
}

/// One span with where it came from.
struct Item<'a> {
    span: &'a Span,
    resource: Value,
    scope: Value,
    id: String,
    parent: String,
    role: SpanRole,
}

fn status_of(s: &Span) -> (&'static str, String) {
    match &s.status {
        Some(st) if st.code == 2 => ("error", st.message.clone()),
        _ => ("ok", String::new()),
    }
}

/// The span's error type: `error.type`, else the type of an exception
/// event, else "" (contract: absent values group as "").
fn error_type(s: &Span) -> String {
    attr_str(&s.attributes, attr::ERROR_TYPE)
        .or_else(|| {
            s.events
                .iter()
                .find(|e| e.name == "exception")
                .and_then(|e| attr_str(&e.attributes, "exception.type"))
        })
        .unwrap_or_default()
}

fn span_events_json(s: &Span) -> Value {
    Value::Array(
        s.events
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "time_unix_nano": e.time_unix_nano,
                    "attributes": Value::Object(attrs_json(&e.attributes)),
                })
            })
            .collect(),
    )
}

/// The ids and everything that arrived with a span.
fn otel_fields(it: &Item<'_>, m: &mut Map<String, Value>) {
    let s = it.span;
    m.insert("trace_id".into(), hex(&s.trace_id).into());
    m.insert("span_id".into(), it.id.clone().into());
    m.insert("parent_span_id".into(), it.parent.clone().into());
    m.insert("span_name".into(), s.name.clone().into());
    m.insert("span_kind".into(), s.kind.into());
    m.insert(
        "attributes".into(),
        Value::Object(attrs_json(&s.attributes)),
    );
    if !s.events.is_empty() {
        m.insert("events".into(), span_events_json(s));
    }
    m.insert("resource".into(), it.resource.clone());
    m.insert("scope".into(), it.scope.clone());
}

fn start_end(s: &Span) -> (u64, u64) {
    let start = if s.start_time_unix_nano > 0 {
        s.start_time_unix_nano
    } else if s.end_time_unix_nano > 0 {
        s.end_time_unix_nano
    } else {
        now_nanos()
    };
    (start, s.end_time_unix_nano.max(start))
}

/// Spans of a trace export as events.
pub fn map_traces(req: &ExportTraceServiceRequest, filter: SpanFilter) -> Mapped {
    let mut out = Mapped::default();
    let mut items = Vec::new();
    for rs in &req.resource_spans {
        let resource = resource_json(rs.resource.as_ref());
        for ss in &rs.scope_spans {
            let scope = scope_json(ss.scope.as_ref());
            for span in &ss.spans {
                if span.span_id.len() != 8 {
                    out.reject(format!(
                        "span {:?}: span_id must be 8 bytes, not {}",
                        span.name,
                        span.span_id.len()
                    ));
                    continue;
                }
                if filter == SpanFilter::GenAi && !is_genai(span) {
                    continue;
                }
                items.push(Item {
                    span,
                    resource: resource.clone(),
                    scope: scope.clone(),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    role: role(span),
                });
            }
        }
    }
    let by_id: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    // The run a span belongs to, and an agent run's parent.
    let run_of = |it: &Item<'_>| -> String {
        let mut cur = it.parent.as_str();
        for _ in 0..MAX_ANCESTORS {
            if cur.is_empty() {
                break;
            }
            match by_id.get(cur) {
                None => return cur.to_string(),
                Some(&i) if items[i].role == SpanRole::Agent => return cur.to_string(),
                Some(&i) => cur = items[i].parent.as_str(),
            }
        }
        String::new()
    };
    // Tool calls and token usage below each agent run, in this request.
    let mut tools: HashMap<String, u64> = HashMap::new();
    let mut usage: HashMap<String, (u64, u64)> = HashMap::new();
    for it in &items {
        let run = run_of(it);
        if it.role == SpanRole::Tool {
            *tools.entry(run.clone()).or_default() += 1;
        }
        if it.role != SpanRole::Agent {
            let u = usage.entry(run).or_default();
            u.0 += attr_u64(&it.span.attributes, attr::INPUT_TOKENS).unwrap_or(0);
            u.1 += attr_u64(&it.span.attributes, attr::OUTPUT_TOKENS).unwrap_or(0);
        }
    }
    for it in &items {
        let run = run_of(it);
        let what = format!("span {} ({:?})", it.id, it.span.name);
        let events = match it.role {
            SpanRole::Agent => agent_run(
                it,
                &run,
                tools.get(&it.id).copied().unwrap_or(0),
                usage.get(&it.id).copied(),
            ),
            SpanRole::Tool => vec![span_log(it, &run, "tool_call", tool_payload(it))],
            SpanRole::Other => vec![span_log(it, &run, "span", other_payload(it))],
        };
        out.keep(&what, events);
    }
    out
}

/// The run id of a span with no run around it: its own id.
fn run_id_or_own(run: &str, it: &Item<'_>) -> String {
    if run.is_empty() {
        it.id.clone()
    } else {
        run.to_string()
    }
}

fn agent_run(
    it: &Item<'_>,
    parent_run: &str,
    tool_calls: u64,
    below: Option<(u64, u64)>,
) -> Vec<Event> {
    let s = it.span;
    let a = &s.attributes;
    let (start, end) = start_end(s);
    let mut inputs = Map::new();
    otel_fields(it, &mut inputs);
    let started = RunStarted {
        skill_id: attr_str(a, attr::AGENT_NAME)
            .or_else(|| attr_str(a, attr::AGENT_ID))
            .unwrap_or_else(|| s.name.clone()),
        caller_id: attr::USER_ID
            .iter()
            .find_map(|k| attr_str(a, k))
            .unwrap_or_default(),
        channel_id: attr_str(a, attr::CONVERSATION_ID).unwrap_or_default(),
        parent_run_id: parent_run.to_string(),
        inputs: json(Value::Object(inputs)),
        dry_run: false,
    };
    let (status, message) = status_of(s);
    let et = error_type(s);
    let (below_in, below_out) = below.unwrap_or((0, 0));
    let finished = RunFinished {
        status: status.to_string(),
        output: String::new(),
        error: match (message.is_empty(), et.is_empty()) {
            (false, _) => message,
            (true, false) => et,
            (true, true) => String::new(),
        },
        tool_calls,
        runtime_seconds: (end - start) as f64 / 1e9,
        input_tokens: attr_u64(a, attr::INPUT_TOKENS).unwrap_or(below_in),
        output_tokens: attr_u64(a, attr::OUTPUT_TOKENS).unwrap_or(below_out),
        thinking_tokens: attr::THINKING_TOKENS
            .iter()
            .find_map(|k| attr_u64(a, k))
            .unwrap_or(0),
    };
    vec![
        Event::run_started(it.id.clone(), micros(start), started),
        Event::run_finished(it.id.clone(), micros(end), finished),
    ]
}

fn span_log(it: &Item<'_>, run: &str, event_type: &str, payload: Value) -> Event {
    let (start, _) = start_end(it.span);
    Event::run_log(
        run_id_or_own(run, it),
        micros(start),
        RunLog {
            // Start time in ns: logs of a run sort by it across requests.
            seq: start,
            event_type: event_type.to_string(),
            payload: json(payload),
        },
    )
}

fn duration_ms(s: &Span) -> f64 {
    let (start, end) = start_end(s);
    (end - start) as f64 / 1e6
}

fn tool_payload(it: &Item<'_>) -> Value {
    let s = it.span;
    let a = &s.attributes;
    let (status, message) = status_of(s);
    let mut m = Map::new();
    let tool = attr_str(a, attr::TOOL_NAME)
        .unwrap_or_else(|| s.name.split_once(' ').map_or("", |(_, t)| t).to_string());
    m.insert("tool".into(), tool.into());
    m.insert("status".into(), status.into());
    let et = error_type(s);
    if status == "error" || !et.is_empty() {
        m.insert("error_type".into(), et.into());
    }
    m.insert("duration_ms".into(), json!(duration_ms(s)));
    if let Some(args) = attr_str(a, attr::TOOL_ARGUMENTS) {
        let summary: String = args.chars().take(ARGS_SUMMARY_CHARS).collect();
        m.insert("args_summary".into(), summary.into());
    }
    for (key, name) in [
        ("tool_call_id", attr::TOOL_CALL_ID),
        ("agent_id", attr::AGENT_ID),
        ("agent_name", attr::AGENT_NAME),
        ("conversation_id", attr::CONVERSATION_ID),
    ] {
        if let Some(v) = attr_str(a, name) {
            m.insert(key.into(), v.into());
        }
    }
    m.insert("operation".into(), operation(s).into());
    if !message.is_empty() {
        m.insert("error".into(), message.into());
    }
    otel_fields(it, &mut m);
    Value::Object(m)
}

fn other_payload(it: &Item<'_>) -> Value {
    let s = it.span;
    let a = &s.attributes;
    let (status, message) = status_of(s);
    let mut m = Map::new();
    m.insert("name".into(), s.name.clone().into());
    m.insert("operation".into(), operation(s).into());
    m.insert("status".into(), status.into());
    if !message.is_empty() {
        m.insert("error".into(), message.into());
    }
    m.insert("duration_ms".into(), json!(duration_ms(s)));
    for (key, name) in [
        ("input_tokens", attr::INPUT_TOKENS),
        ("output_tokens", attr::OUTPUT_TOKENS),
    ] {
        if let Some(v) = attr_u64(a, name) {
            m.insert(key.into(), v.into());
        }
    }
    otel_fields(it, &mut m);
    Value::Object(m)
}

/// Log records of a logs export as events.
pub fn map_logs(req: &ExportLogsServiceRequest) -> Mapped {
    let mut out = Mapped::default();
    for rl in &req.resource_logs {
        let resource = resource_json(rl.resource.as_ref());
        for sl in &rl.scope_logs {
            let scope = scope_json(sl.scope.as_ref());
            for (i, r) in sl.log_records.iter().enumerate() {
                let nanos = [r.time_unix_nano, r.observed_time_unix_nano]
                    .into_iter()
                    .find(|t| *t > 0)
                    .unwrap_or_else(now_nanos);
                let run_id = if !r.span_id.is_empty() {
                    hex(&r.span_id)
                } else if !r.trace_id.is_empty() {
                    hex(&r.trace_id)
                } else {
                    NO_TRACE_RUN.to_string()
                };
                let event_type = if !r.event_name.is_empty() {
                    r.event_name.clone()
                } else {
                    attr_str(&r.attributes, attr::EVENT_NAME).unwrap_or_else(|| "log".into())
                };
                let mut m = Map::new();
                m.insert("body".into(), r.body.as_ref().map_or(Value::Null, any_json));
                m.insert("severity_text".into(), r.severity_text.clone().into());
                m.insert("severity_number".into(), r.severity_number.into());
                m.insert("trace_id".into(), hex(&r.trace_id).into());
                m.insert("span_id".into(), hex(&r.span_id).into());
                m.insert(
                    "attributes".into(),
                    Value::Object(attrs_json(&r.attributes)),
                );
                m.insert("resource".into(), resource.clone());
                m.insert("scope".into(), scope.clone());
                let ev = Event::run_log(
                    run_id,
                    micros(nanos),
                    RunLog {
                        seq: nanos,
                        event_type,
                        payload: json(Value::Object(m)),
                    },
                );
                out.keep(&format!("log record {i}"), vec![ev]);
            }
        }
    }
    out
}
