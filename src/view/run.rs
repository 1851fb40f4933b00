//! One run as the contract shows it, and the fold that builds it.

use crate::event::borrowed::{DataRef, EventRef};
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
            dry_run: s.dry_run,
            started_at: ts,
            ..Run::unfinished(s.inputs.clone())
        }
    }

    /// A run with `inputs` and no finish yet (status `running`): the base
    /// that [`Run::started`] and [`Run::fold_ref`] set the start's other
    /// fields on.
    fn unfinished(inputs: Json) -> Run {
        Run {
            id: String::new(),
            skill_id: String::new(),
            caller_id: String::new(),
            channel_id: String::new(),
            parent_run_id: String::new(),
            inputs,
            dry_run: false,
            started_at: 0,
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

    /// [`Run::fold`] of events read in place (`codec::decode_event_ref`),
    /// each string copied once, straight into the run, instead of into an
    /// owned event first and then again into the run. Same answer as
    /// [`Run::fold`] of the owned events.
    pub(crate) fn fold_ref(start: &EventRef<'_>, finish: Option<&EventRef<'_>>) -> Option<Run> {
        let DataRef::RunStarted(s) = &start.data else {
            return None;
        };
        let mut run = Run {
            id: start.run_id.to_owned(),
            skill_id: s.skill_id.to_owned(),
            caller_id: s.caller_id.to_owned(),
            channel_id: s.channel_id.to_owned(),
            parent_run_id: s.parent_run_id.to_owned(),
            dry_run: s.dry_run,
            started_at: start.ts,
            ..Run::unfinished(Json::trusted(s.inputs.to_owned()))
        };
        if let Some(EventRef {
            data: DataRef::RunFinished(f),
            ts,
            ..
        }) = finish
        {
            run.finished_at = Some(*ts);
            run.status = f.status.to_owned();
            run.output = f.output.to_owned();
            run.error = f.error.to_owned();
            run.tool_calls = f.tool_calls;
            run.runtime_seconds = f.runtime_seconds;
            run.input_tokens = f.input_tokens;
            run.output_tokens = f.output_tokens;
            run.thinking_tokens = f.thinking_tokens;
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

#[cfg(test)]
mod fold_ref_tests {
    use super::*;
    use crate::event::{RunLog, RunStarted};

    fn started(dry_run: bool) -> Event {
        Event::run_started(
            "r1",
            10,
            RunStarted {
                skill_id: "s".into(),
                caller_id: "c".into(),
                channel_id: "ch".into(),
                parent_run_id: "p".into(),
                inputs: Json::parse(r#"{"a":[1,"x"]}"#).unwrap(),
                dry_run,
            },
        )
    }

    fn finished(status: &str) -> Event {
        Event::run_finished(
            "r1",
            20,
            RunFinished {
                status: status.into(),
                output: "out".into(),
                error: "err".into(),
                tool_calls: 3,
                runtime_seconds: 1.5,
                input_tokens: 4,
                output_tokens: 5,
                thinking_tokens: 6,
            },
        )
    }

    /// The in-place fold gives the owned fold's run, field by field, for
    /// a running run, finished ones (dry-run by status or by start), an
    /// event that is no finish, and a start that is no start.
    #[test]
    fn fold_ref_is_fold() {
        let log = Event::run_log(
            "r1",
            15,
            RunLog {
                seq: 1,
                event_type: "t".into(),
                payload: Json::null(),
            },
        );
        let cases: Vec<(Event, Option<Event>)> = vec![
            (started(false), None),
            (started(true), None),
            (started(false), Some(finished("ok"))),
            (started(false), Some(finished(DRY_RUN_STATUS))),
            (started(true), Some(finished("error"))),
            (started(false), Some(log.clone())),
            (log, None),
        ];
        for (s, f) in &cases {
            let owned = Run::fold(s, f.as_ref());
            let f_ref = f.as_ref().map(EventRef::of);
            assert_eq!(Run::fold_ref(&EventRef::of(s), f_ref.as_ref()), owned);
        }
    }
}
