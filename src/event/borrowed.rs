//! An event seen in place: every text field borrowed from where it lies
//! (an encoded body, or an [`Event`]). The contract's rules run on this
//! view ([`super::json::validate_event`] builds one from an `Event`), so
//! the server can check event frames a client encoded without copying
//! their strings into an owned `Event` and dropping it again
//! ([`crate::codec::decode_event_ref`]).
//!
//! The structs mirror [`Event`] field for field, in the same order and
//! with the same types but `&str` for `String` and [`super::Json`]: bincode
//! encodes no names, so the same bytes decode into either, and the tests
//! hold the two decodes side by side. A system event is the exception:
//! its record is never read here ([`SystemRef`] refuses to decode), since
//! no client may append one; the owned path gives the answer for those.

use super::{Event, EventData, Json, Micros, RunFinished, RunLog, RunStarted, ToolCall};
use serde::{Deserialize, Deserializer};

/// An event borrowed from its encoding (or from an [`Event`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventRef<'a> {
    pub run_id: &'a str,
    pub ts: Micros,
    #[serde(borrow)]
    pub data: DataRef<'a>,
    /// Unknown top-level fields: key and JSON text.
    #[serde(borrow)]
    pub extra: Vec<(&'a str, &'a str)>,
}

/// [`EventData`], borrowed. Variants in the same order (bincode encodes
/// the variant's index).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum DataRef<'a> {
    RunStarted(#[serde(borrow)] StartedRef<'a>),
    RunLog(#[serde(borrow)] LogRef<'a>),
    RunFinished(#[serde(borrow)] FinishedRef<'a>),
    System(SystemRef),
    ToolCall(#[serde(borrow)] CallRef<'a>),
}

/// [`super::RunStarted`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StartedRef<'a> {
    pub skill_id: &'a str,
    pub caller_id: &'a str,
    pub channel_id: &'a str,
    pub parent_run_id: &'a str,
    pub inputs: &'a str,
    pub dry_run: bool,
}

/// [`super::RunLog`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogRef<'a> {
    pub seq: u64,
    pub event_type: &'a str,
    pub payload: &'a str,
}

/// [`super::RunFinished`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FinishedRef<'a> {
    pub status: &'a str,
    pub output: &'a str,
    pub error: &'a str,
    pub tool_calls: u64,
    pub runtime_seconds: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
}

/// [`super::ToolCall`], borrowed (unboxed: a view is never stored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallRef<'a> {
    pub call_id: &'a str,
    pub channel_id: &'a str,
    pub caller_id: &'a str,
    pub workspace_id: &'a str,
    pub request_id: &'a str,
    pub tool: &'a str,
    pub engine: &'a str,
    pub status: &'a str,
    pub error_type: &'a str,
    pub error: &'a str,
    pub duration_ms: Option<f64>,
    pub input_bytes: Option<u64>,
    pub result_bytes: Option<u64>,
    pub exit_code: Option<i64>,
    pub http_status: Option<u16>,
    pub input_hash: &'a str,
    pub args_summary: &'a str,
    pub payload: &'a str,
}

/// Stands for a system event's record. It never decodes: a view of
/// encoded bytes that hold a system event fails, and the caller falls
/// back to the owned decode, which reads the record and names the rule.
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct SystemRef;

impl<'de> Deserialize<'de> for SystemRef {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a system event is not read in place",
        ))
    }
}

impl DataRef<'_> {
    /// The kind's name, as [`EventData::kind`] gives it.
    pub fn kind(&self) -> &'static str {
        match self {
            DataRef::RunStarted(_) => "run_started",
            DataRef::RunLog(_) => "run_log",
            DataRef::RunFinished(_) => "run_finished",
            DataRef::System(_) => "system",
            DataRef::ToolCall(_) => "tool_call",
        }
    }
}

impl<'a> DataRef<'a> {
    /// The view of an event's data.
    pub fn of(data: &'a EventData) -> DataRef<'a> {
        match data {
            EventData::RunStarted(s) => DataRef::RunStarted(StartedRef {
                skill_id: &s.skill_id,
                caller_id: &s.caller_id,
                channel_id: &s.channel_id,
                parent_run_id: &s.parent_run_id,
                inputs: s.inputs.as_str(),
                dry_run: s.dry_run,
            }),
            EventData::RunLog(l) => DataRef::RunLog(LogRef {
                seq: l.seq,
                event_type: &l.event_type,
                payload: l.payload.as_str(),
            }),
            EventData::RunFinished(f) => DataRef::RunFinished(FinishedRef {
                status: &f.status,
                output: &f.output,
                error: &f.error,
                tool_calls: f.tool_calls,
                runtime_seconds: f.runtime_seconds,
                input_tokens: f.input_tokens,
                output_tokens: f.output_tokens,
                thinking_tokens: f.thinking_tokens,
            }),
            EventData::System(_) => DataRef::System(SystemRef),
            EventData::ToolCall(c) => DataRef::ToolCall(CallRef {
                call_id: &c.call_id,
                channel_id: &c.channel_id,
                caller_id: &c.caller_id,
                workspace_id: &c.workspace_id,
                request_id: &c.request_id,
                tool: &c.tool,
                engine: &c.engine,
                status: &c.status,
                error_type: &c.error_type,
                error: &c.error,
                duration_ms: c.duration_ms,
                input_bytes: c.input_bytes,
                result_bytes: c.result_bytes,
                exit_code: c.exit_code,
                http_status: c.http_status,
                input_hash: &c.input_hash,
                args_summary: &c.args_summary,
                payload: c.payload.as_str(),
            }),
        }
    }

    /// The JSON texts the event carries in its own fields, by field name.
    pub fn json_texts(&self) -> Option<(&'static str, &'a str)> {
        match self {
            DataRef::RunStarted(s) => Some(("inputs", s.inputs)),
            DataRef::RunLog(l) => Some(("payload", l.payload)),
            DataRef::ToolCall(c) => Some(("payload", c.payload)),
            DataRef::RunFinished(_) | DataRef::System(_) => None,
        }
    }
}

impl<'a> EventRef<'a> {
    /// The view of an [`Event`] (allocates only for unknown fields).
    pub fn of(ev: &'a Event) -> EventRef<'a> {
        EventRef {
            run_id: &ev.run_id,
            ts: ev.ts,
            data: DataRef::of(&ev.data),
            extra: ev
                .extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

impl EventRef<'_> {
    /// [`Event::is_replace`] of the view: an unknown field `replace` whose
    /// JSON text is `true` marks an amending event.
    pub fn is_replace(&self) -> bool {
        self.extra
            .iter()
            .any(|(k, v)| *k == Event::REPLACE && *v == "true")
    }

    /// A system event (only ever a view of an [`Event`]: stored system
    /// events are not read in place).
    pub fn is_system(&self) -> bool {
        matches!(self.data, DataRef::System(_))
    }

    /// The owned event these bytes hold: the same [`Event`] the owned
    /// decoder ([`crate::codec::decode_event`]) builds from them, its
    /// strings copied from the view. Cheaper than that decode: each string
    /// is copied once, with no zeroed buffer first and no second UTF-8
    /// check (the view's strings were checked when it was read). `None`
    /// for a system event (never read in place).
    ///
    /// JSON texts are taken as they are ([`Json::trusted`]), exactly as
    /// the owned decoder takes them: whoever needs them checked runs the
    /// strict rules (`json::check_incoming_ref`) on this view first.
    pub fn to_event(&self) -> Option<Event> {
        Some(Event {
            run_id: self.run_id.to_owned(),
            ts: self.ts,
            data: self.data.to_data()?,
            extra: self
                .extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json(v)))
                .collect(),
        })
    }
}

/// A JSON text of a view, owned as the owned decoder keeps it (unchecked).
fn json(text: &str) -> Json {
    Json::trusted(text.to_owned())
}

impl DataRef<'_> {
    /// The owned [`EventData`]; `None` for a system event.
    fn to_data(&self) -> Option<EventData> {
        Some(match self {
            DataRef::RunStarted(s) => EventData::RunStarted(RunStarted {
                skill_id: s.skill_id.to_owned(),
                caller_id: s.caller_id.to_owned(),
                channel_id: s.channel_id.to_owned(),
                parent_run_id: s.parent_run_id.to_owned(),
                inputs: json(s.inputs),
                dry_run: s.dry_run,
            }),
            DataRef::RunLog(l) => EventData::RunLog(RunLog {
                seq: l.seq,
                event_type: l.event_type.to_owned(),
                payload: json(l.payload),
            }),
            DataRef::RunFinished(f) => EventData::RunFinished(RunFinished {
                status: f.status.to_owned(),
                output: f.output.to_owned(),
                error: f.error.to_owned(),
                tool_calls: f.tool_calls,
                runtime_seconds: f.runtime_seconds,
                input_tokens: f.input_tokens,
                output_tokens: f.output_tokens,
                thinking_tokens: f.thinking_tokens,
            }),
            DataRef::System(_) => return None,
            DataRef::ToolCall(c) => EventData::ToolCall(Box::new(c.to_call())),
        })
    }
}

impl CallRef<'_> {
    fn to_call(&self) -> ToolCall {
        ToolCall {
            call_id: self.call_id.to_owned(),
            channel_id: self.channel_id.to_owned(),
            caller_id: self.caller_id.to_owned(),
            workspace_id: self.workspace_id.to_owned(),
            request_id: self.request_id.to_owned(),
            tool: self.tool.to_owned(),
            engine: self.engine.to_owned(),
            status: self.status.to_owned(),
            error_type: self.error_type.to_owned(),
            error: self.error.to_owned(),
            duration_ms: self.duration_ms,
            input_bytes: self.input_bytes,
            result_bytes: self.result_bytes,
            exit_code: self.exit_code,
            http_status: self.http_status,
            input_hash: self.input_hash.to_owned(),
            args_summary: self.args_summary.to_owned(),
            payload: json(self.payload),
        }
    }
}
