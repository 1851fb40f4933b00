//! The event model: the four kinds of audit event a gateway records (a
//! run's start, logs and finish, and tool calls, which may stand alone),
//! and the engine's own system events, with their limits. JSON in and out lives in [`json`]; time handling in [`time`].

pub mod borrowed;
pub mod json;
pub(crate) mod json_scan;
pub mod system;
pub mod time;
mod utc_fast;

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub use crate::limits::{MAX_EVENT_BYTES, MAX_JSON_DEPTH, MAX_NAME_BYTES, MAX_RUN_ID_BYTES};

/// JSON text, kept exactly as it was ingested. It is checked once, when it
/// is made ([`Json::parse`], [`Json::from_value`], or the JSONL parser):
/// one valid JSON value, no surrounding whitespace, nesting at most
/// [`MAX_JSON_DEPTH`]. So appending an event never parses its JSON again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Json(String);

impl Json {
    pub fn null() -> Json {
        Json("null".to_string())
    }

    pub fn empty_object() -> Json {
        Json("{}".to_string())
    }

    /// Check `text` and keep it as it is.
    pub fn parse(text: impl Into<String>) -> Result<Json, crate::error::EventError> {
        let text = text.into();
        json::check_json_text("json", &text)?;
        Ok(Json(text))
    }

    /// The compact JSON text of `v` (object keys in their stored order).
    pub fn from_value(v: &serde_json::Value) -> Result<Json, crate::error::EventError> {
        Json::parse(v.to_string())
    }

    /// Text the caller has already checked (the JSONL parser, the codec
    /// reading what was checked before it was written, the redactor).
    ///
    /// Not for gateways: only for text that came out of a `Json` before
    /// (a store reading back what it stored).
    #[doc(hidden)]
    pub fn trusted(text: String) -> Json {
        Json(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Json {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One audit event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run_id: String,
    pub ts: Micros,
    pub data: EventData,
    /// Unknown top-level fields, in the order they came, kept for output.
    pub extra: Vec<(String, Json)>,
}

// A tool call is the widest variant by far (18 fields): boxed, so that an
// `Event` stays small wherever it is held or moved (one allocation per
// call, beside the strings it owns anyway).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventData {
    RunStarted(RunStarted),
    RunLog(RunLog),
    RunFinished(RunFinished),
    /// What the engine did to the log itself (a cut, a repair, a retention
    /// pass); written by the engine only, ignored by every run fold.
    System(Box<system::SystemRecord>),
    /// A tool call as a record of its own: inside a run (`run_id` names
    /// it) or standing alone (`run_id` empty), with its own scope.
    ToolCall(Box<ToolCall>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub skill_id: String,
    pub caller_id: String,
    pub channel_id: String,
    /// "" means a top-level run.
    pub parent_run_id: String,
    pub inputs: Json,
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLog {
    pub seq: u64,
    pub event_type: String,
    pub payload: Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    pub status: String,
    pub output: String,
    pub error: String,
    pub tool_calls: u64,
    pub runtime_seconds: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
}

/// A tool call (kind `tool_call`; docs/tool-calls.md). Its scope is its
/// own: the session or channel, the caller or agent, and optionally a
/// workspace and a request; a call inside a stored run takes the run's
/// channel and caller where its own are empty. Known fields are typed;
/// anything else goes in `payload` or stays an unknown top-level field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The gateway's id of the call ("" if none).
    pub call_id: String,
    /// The session or channel.
    pub channel_id: String,
    /// The caller or agent.
    pub caller_id: String,
    pub workspace_id: String,
    pub request_id: String,
    pub tool: String,
    /// The model engine or provider that asked for the call.
    pub engine: String,
    /// "ok", "error", or the gateway's own word. When absent on ingest:
    /// "error" if `error` or `error_type` is set, else "ok".
    pub status: String,
    pub error_type: String,
    /// The error message (free text).
    pub error: String,
    pub duration_ms: Option<f64>,
    pub input_bytes: Option<u64>,
    pub result_bytes: Option<u64>,
    pub exit_code: Option<i64>,
    pub http_status: Option<u16>,
    /// A hash of the call's input, as the gateway computed it.
    pub input_hash: String,
    /// A short, already redacted, summary of the arguments (free text).
    pub args_summary: String,
    /// Anything else (any JSON; `null` when absent).
    pub payload: Json,
}

impl Default for ToolCall {
    fn default() -> Self {
        ToolCall {
            call_id: String::new(),
            channel_id: String::new(),
            caller_id: String::new(),
            workspace_id: String::new(),
            request_id: String::new(),
            tool: String::new(),
            engine: String::new(),
            status: "ok".to_string(),
            error_type: String::new(),
            error: String::new(),
            duration_ms: None,
            input_bytes: None,
            result_bytes: None,
            exit_code: None,
            http_status: None,
            input_hash: String::new(),
            args_summary: String::new(),
            payload: Json::null(),
        }
    }
}

impl EventData {
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::RunStarted(_) => "run_started",
            EventData::RunLog(_) => "run_log",
            EventData::RunFinished(_) => "run_finished",
            EventData::System(_) => "system",
            EventData::ToolCall(_) => "tool_call",
        }
    }

    /// The record of a system event.
    pub fn system(&self) -> Option<&system::SystemRecord> {
        match self {
            EventData::System(r) => Some(r),
            _ => None,
        }
    }
}

impl Default for RunStarted {
    fn default() -> Self {
        RunStarted {
            skill_id: String::new(),
            caller_id: String::new(),
            channel_id: String::new(),
            parent_run_id: String::new(),
            inputs: Json::empty_object(),
            dry_run: false,
        }
    }
}

impl Default for RunLog {
    fn default() -> Self {
        RunLog {
            seq: 0,
            event_type: String::new(),
            payload: Json::null(),
        }
    }
}

impl Default for RunFinished {
    fn default() -> Self {
        RunFinished {
            status: "ok".to_string(),
            output: String::new(),
            error: String::new(),
            tool_calls: 0,
            runtime_seconds: 0.0,
            input_tokens: 0,
            output_tokens: 0,
            thinking_tokens: 0,
        }
    }
}

impl Event {
    /// A `run_started` event with no unknown fields.
    pub fn run_started(run_id: impl Into<String>, ts: Micros, data: RunStarted) -> Event {
        Event::with_data(run_id.into(), ts, EventData::RunStarted(data))
    }

    /// A `run_log` event with no unknown fields.
    pub fn run_log(run_id: impl Into<String>, ts: Micros, data: RunLog) -> Event {
        Event::with_data(run_id.into(), ts, EventData::RunLog(data))
    }

    /// A `run_finished` event with no unknown fields.
    pub fn run_finished(run_id: impl Into<String>, ts: Micros, data: RunFinished) -> Event {
        Event::with_data(run_id.into(), ts, EventData::RunFinished(data))
    }

    /// Name of the amending marker (docs/contract.md, "Amending events").
    pub const REPLACE: &'static str = "replace";

    /// True for an amending event (`"replace":true`): a start that
    /// replaces the run's start fields, a finish that replaces its finish,
    /// a log that replaces the run's logs with the same seq. The marker is
    /// kept among the event's extra fields (docs/format.md).
    pub fn is_replace(&self) -> bool {
        self.extra
            .iter()
            .any(|(k, v)| k == Self::REPLACE && v.as_str() == "true")
    }

    /// Mark the event as amending (see [`Event::is_replace`]).
    pub fn with_replace(mut self) -> Event {
        if !self.is_replace() {
            self.extra.retain(|(k, _)| k != Self::REPLACE);
            self.extra
                .push((Self::REPLACE.to_string(), Json("true".into())));
        }
        self
    }

    /// Parse one JSON line (docs/contract.md, "Events"): every rule of the
    /// contract is checked; the error names the field at fault.
    pub fn from_json(line: &[u8]) -> Result<Event, crate::error::EventError> {
        json::parse_event(line)
    }

    /// The event as one JSON object, in its output form (`ts` as RFC 3339
    /// UTC with microseconds, every field, unknown fields last).
    pub fn to_json(&self) -> String {
        json::event_to_json(self, None)
    }

    /// Check every limit and rule an append checks (for events built in
    /// code rather than parsed).
    pub fn validate(&self) -> Result<(), crate::error::EventError> {
        json::validate_event(self)
    }

    /// A system event (engine use only: `Log::append` refuses it).
    pub(crate) fn system(ts: Micros, record: system::SystemRecord) -> Event {
        Event::with_data(String::new(), ts, EventData::System(Box::new(record)))
    }

    /// Whether this is a system event (kind `system`).
    pub fn is_system(&self) -> bool {
        matches!(self.data, EventData::System(_))
    }

    /// A `tool_call` event with no unknown fields (`run_id` "" for a call
    /// outside any run).
    pub fn tool_call(run_id: impl Into<String>, ts: Micros, data: ToolCall) -> Event {
        Event::with_data(run_id.into(), ts, EventData::ToolCall(Box::new(data)))
    }

    fn with_data(run_id: String, ts: Micros, data: EventData) -> Event {
        Event {
            run_id,
            ts,
            data,
            extra: Vec::new(),
        }
    }
}
