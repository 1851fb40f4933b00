//! One run as the contract shows it, and the fold that builds it.

use crate::event::json::{json_f64, json_string};
use crate::event::time::format_rfc3339;
use crate::event::{Event, EventData, Json, Micros, RunFinished, RunStarted};

/// A run: its `run_started` and, once stored, its first `run_finished`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub skill_id: String,
    pub caller_id: String,
    pub channel_id: String,
    pub parent_run_id: String,
    pub inputs: Json,
    pub dry_run: bool,
    pub started_at: Micros,
    /// None while running.
    pub finished_at: Option<Micros>,
    /// "running" until finished.
    pub status: String,
    pub output: String,
    pub error: String,
    pub tool_calls: u64,
    pub runtime_seconds: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
}

/// One log line of a run, as `run ID` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLogEntry {
    pub seq: u64,
    pub ts: Micros,
    pub event_type: String,
    pub payload: Json,
}

/// The status that makes a run a dry run (docs/queries.md).
pub const DRY_RUN_STATUS: &str = "dry_run";

/// A run is a dry run if its (counting) start says `dry_run` or its
/// status is [`DRY_RUN_STATUS`].
pub fn is_dry(start_dry: bool, status: &str) -> bool {
    start_dry || status == DRY_RUN_STATUS
}

impl Run {
    /// A running run from its start event.
    pub fn started(run_id: &str, ts: Micros, s: &RunStarted) -> Run {
        Run {
            id: run_id.to_string(),
            skill_id: s.skill_id.clone(),
            caller_id: s.caller_id.clone(),
            channel_id: s.channel_id.clone(),
            parent_run_id: s.parent_run_id.clone(),
            inputs: s.inputs.clone(),
            dry_run: s.dry_run,
            started_at: ts,
            finished_at: None,
            status: "running".to_string(),
            output: String::new(),
            error: String::new(),
            tool_calls: 0,
            runtime_seconds: 0.0,
            input_tokens: 0,
            output_tokens: 0,
            thinking_tokens: 0,
        }
    }

    /// Apply an amending start: its fields replace the start's (the
    /// finish, if any, stays). The caller settles `dry_run` ([`is_dry`]).
    pub fn amend_start(&mut self, ts: Micros, s: &RunStarted) {
        self.skill_id.clone_from(&s.skill_id);
        self.caller_id.clone_from(&s.caller_id);
        self.channel_id.clone_from(&s.channel_id);
        self.parent_run_id.clone_from(&s.parent_run_id);
        self.inputs = s.inputs.clone();
        self.started_at = ts;
    }

    /// Apply the run's (first) finish event.
    pub fn finish(&mut self, ts: Micros, f: &RunFinished) {
        self.finished_at = Some(ts);
        self.status = f.status.clone();
        self.output = f.output.clone();
        self.error = f.error.clone();
        self.tool_calls = f.tool_calls;
        self.runtime_seconds = f.runtime_seconds;
        self.input_tokens = f.input_tokens;
        self.output_tokens = f.output_tokens;
        self.thinking_tokens = f.thinking_tokens;
    }

    /// Fold a start event and an optional finish event into a run.
    pub fn fold(start: &Event, finish: Option<&Event>) -> Option<Run> {
        let EventData::RunStarted(s) = &start.data else {
            return None;
        };
        let mut run = Run::started(&start.run_id, start.ts, s);
        if let Some(Event {
            data: EventData::RunFinished(f),
            ts,
            ..
        }) = finish
        {
            run.finish(*ts, f);
        }
        run.dry_run = is_dry(s.dry_run, &run.status);
        Some(run)
    }

    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Write the run's JSON object (keys in contract order), without a
    /// closing brace when `open` is true so callers can add `"logs"`.
    pub fn write_json_fields(&self, out: &mut String) {
        out.push_str("{\"id\":");
        json_string(&self.id, out);
        out.push_str(",\"skill_id\":");
        json_string(&self.skill_id, out);
        out.push_str(",\"caller_id\":");
        json_string(&self.caller_id, out);
        out.push_str(",\"channel_id\":");
        json_string(&self.channel_id, out);
        out.push_str(",\"parent_run_id\":");
        json_string(&self.parent_run_id, out);
        out.push_str(",\"inputs\":");
        out.push_str(self.inputs.as_str());
        out.push_str(",\"dry_run\":");
        out.push_str(if self.dry_run { "true" } else { "false" });
        out.push_str(",\"started_at\":\"");
        format_rfc3339(self.started_at, out);
        out.push_str("\",\"finished_at\":");
        match self.finished_at {
            Some(t) => {
                out.push('"');
                format_rfc3339(t, out);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"status\":");
        json_string(&self.status, out);
        out.push_str(",\"output\":");
        json_string(&self.output, out);
        out.push_str(",\"error\":");
        json_string(&self.error, out);
        out.push_str(&format!(",\"tool_calls\":{}", self.tool_calls));
        out.push_str(",\"runtime_seconds\":");
        json_f64(self.runtime_seconds, out);
        out.push_str(&format!(
            ",\"input_tokens\":{},\"output_tokens\":{},\"thinking_tokens\":{}",
            self.input_tokens, self.output_tokens, self.thinking_tokens
        ));
    }

    /// The run as one JSON object.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(256);
        self.write_json_fields(&mut s);
        s.push('}');
        s
    }

    /// The run with `"logs":[...]` (for `run ID`).
    pub fn to_json_with_logs(&self, logs: &[RunLogEntry]) -> String {
        let mut s = String::with_capacity(256 + logs.len() * 128);
        self.write_json_fields(&mut s);
        s.push_str(",\"logs\":[");
        for (i, l) in logs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("{{\"seq\":{},\"ts\":\"", l.seq));
            format_rfc3339(l.ts, &mut s);
            s.push_str("\",\"event_type\":");
            json_string(&l.event_type, &mut s);
            s.push_str(",\"payload\":");
            s.push_str(l.payload.as_str());
            s.push('}');
        }
        s.push_str("]}");
        s
    }
}
