//! The full-text document: one per run. Which fields it has, how a run's
//! events fold into it, and how it goes to and comes back from tantivy.
//!
//! A run's document holds its searchable text (inputs, output, error and
//! the text of its log payloads), its filter fields, and, stored, the
//! contract run view JSON so a hit needs no join with the log.

use std::borrow::Cow;

use serde::Deserialize;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, NumericOptions, Schema, TextOptions, Value, FAST,
    INDEXED, STORED, STRING, TEXT,
};
use tantivy::{DateTime, TantivyDocument, Term};

use crate::event::time::parse_rfc3339;
use crate::event::{Event, EventData, Json, Micros, RunStarted};
use crate::view::fold::{Effect, RunState};
use crate::view::{is_dry, Run, DRY_RUN_STATUS};

use super::FullTextError;

/// Most bytes of log-payload text kept per run. Beyond it a run's further
/// log text is not indexed (its tools and error types still are, up to
/// [`MAX_TERMS_PER_RUN`]); this bounds both memory and the cost of the
/// re-index a late event of a long run causes.
pub const MAX_LOG_TEXT_PER_RUN: usize = 256 * 1024;
/// Most distinct `tool`, `error_type` and `event_type` values kept per run.
pub const MAX_TERMS_PER_RUN: usize = 256;

/// Document kinds: a run (has its `run_started`), or a pending one whose
/// events came before any start (orphans; never returned by searches).
pub const KIND_RUN: &str = "run";
pub const KIND_PENDING: &str = "pending";

/// The schema's fields.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    pub id: Field,
    pub kind: Field,
    pub start_lsn: Field,
    pub skill_id: Field,
    pub caller_id: Field,
    pub channel_id: Field,
    pub parent_run_id: Field,
    pub status: Field,
    pub started_at: Field,
    pub started_us: Field,
    pub inputs: Field,
    pub output: Field,
    pub error: Field,
    pub logs: Field,
    pub tool: Field,
    pub error_type: Field,
    pub event_type: Field,
    pub run: Field,
}

/// The text fields a query searches when it names no field.
pub const DEFAULT_FIELDS: [&str; 4] = ["inputs", "output", "error", "logs"];

pub fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let stored_only = TextOptions::default().set_stored();
    let f = Fields {
        id: b.add_text_field("id", STRING),
        kind: b.add_text_field("kind", STRING | STORED),
        start_lsn: b.add_u64_field("start_lsn", INDEXED | FAST | STORED),
        skill_id: b.add_text_field("skill_id", STRING),
        caller_id: b.add_text_field("caller_id", STRING),
        channel_id: b.add_text_field("channel_id", STRING),
        parent_run_id: b.add_text_field("parent_run_id", STRING),
        status: b.add_text_field("status", STRING),
        started_at: b.add_date_field(
            "started_at",
            DateOptions::default()
                .set_indexed()
                .set_fast()
                .set_precision(DateTimePrecision::Microseconds),
        ),
        started_us: b.add_i64_field(
            "started_us",
            NumericOptions::default().set_indexed().set_fast(),
        ),
        inputs: b.add_text_field("inputs", TEXT),
        output: b.add_text_field("output", TEXT),
        error: b.add_text_field("error", TEXT),
        logs: b.add_text_field("logs", TEXT | STORED),
        tool: b.add_text_field("tool", STRING | STORED),
        error_type: b.add_text_field("error_type", STRING | STORED),
        event_type: b.add_text_field("event_type", STRING | STORED),
        run: b.add_text_field("run", stored_only),
    };
    (b.build(), f)
}

/// A run's document while it is being folded.
#[derive(Debug, Clone)]
pub struct RunDoc {
    /// LSN of the run's `run_started` (of its first event while pending).
    pub start_lsn: u64,
    /// The run fold's state of this id.
    pub state: RunState,
    /// The run view (for a pending run: a placeholder).
    pub run: Run,
    pub logs: String,
    pub tools: Vec<String>,
    pub error_types: Vec<String>,
    pub event_types: Vec<String>,
    /// A document for this id is committed in the index (replace it).
    pub existed: bool,
    /// The dry_run flag of the run's counting start (read back from a
    /// document: its dry_run unless that came from a dry_run status).
    pub start_dry: bool,
}

impl RunDoc {
    /// A document for a run first seen at `lsn`, with no events applied.
    pub fn empty(run_id: &str, lsn: u64, ts: Micros) -> RunDoc {
        RunDoc {
            start_lsn: lsn,
            state: RunState::default(),
            run: Run::started(run_id, ts, &RunStarted::default()),
            logs: String::new(),
            tools: Vec::new(),
            error_types: Vec::new(),
            event_types: Vec::new(),
            existed: false,
            start_dry: false,
        }
    }

    /// Fold one event in, as the run fold says (docs/contract.md, "The
    /// run view"): a finish before the start, and later starts and
    /// finishes, change nothing. Returns text bytes added.
    pub fn apply(&mut self, lsn: u64, ev: &Event) -> usize {
        let effect = self.state.apply(lsn, ev);
        match &ev.data {
            // The log's own records belong to no run.
            EventData::System(_) => 0,
            EventData::RunStarted(s) => {
                let added = match effect {
                    Effect::Start => {
                        self.run = Run::started(&ev.run_id, ev.ts, s);
                        self.start_lsn = lsn;
                        s.inputs.as_str().len()
                    }
                    Effect::AmendStart => {
                        self.run.amend_start(ev.ts, s);
                        s.inputs.as_str().len()
                    }
                    _ => return 0,
                };
                self.start_dry = s.dry_run;
                self.run.dry_run = is_dry(self.start_dry, &self.run.status);
                added
            }
            EventData::RunFinished(f) => {
                if !matches!(effect, Effect::Finish | Effect::AmendFinish) {
                    return 0;
                }
                self.run.finish(ev.ts, f);
                self.run.dry_run = is_dry(self.start_dry, &self.run.status);
                f.output.len() + f.error.len()
            }
            EventData::RunLog(l) => {
                let before = self.logs.len();
                if !l.event_type.is_empty() {
                    push_term(&mut self.event_types, &l.event_type);
                }
                let mut tool = None;
                let mut error_type = None;
                let cap = before < MAX_LOG_TEXT_PER_RUN;
                let logs = &mut self.logs;
                scan_json(l.payload.as_str(), |depth, key, value, is_str| {
                    if depth == 1 && is_str {
                        match key {
                            "tool" => tool = Some(value.to_string()),
                            "error_type" => error_type = Some(value.to_string()),
                            _ => {}
                        }
                    }
                    // Numbers are mostly measurements (durations, sizes):
                    // only status and code numbers are worth a term.
                    let wanted = is_str || key.ends_with("status") || key.ends_with("code");
                    if cap && wanted && logs.len() < MAX_LOG_TEXT_PER_RUN {
                        logs.push_str(value);
                        logs.push('\n');
                    }
                });
                if let Some(t) = tool {
                    push_term(&mut self.tools, &t);
                }
                if let Some(e) = error_type {
                    push_term(&mut self.error_types, &e);
                }
                self.logs.len() - before
            }
            // A tool call of the run: searchable like a log of it.
            EventData::ToolCall(c) => {
                let before = self.logs.len();
                push_term(&mut self.event_types, "tool_call");
                if !c.tool.is_empty() {
                    push_term(&mut self.tools, &c.tool);
                }
                if !c.error_type.is_empty() {
                    push_term(&mut self.error_types, &c.error_type);
                }
                let cap = before < MAX_LOG_TEXT_PER_RUN;
                let logs = &mut self.logs;
                let mut add = |v: &str| {
                    if cap && !v.is_empty() && logs.len() < MAX_LOG_TEXT_PER_RUN {
                        logs.push_str(v);
                        logs.push('\n');
                    }
                };
                add(&c.tool);
                add(&c.status);
                add(&c.error_type);
                add(&c.error);
                add(&c.args_summary);
                scan_json(c.payload.as_str(), |_, key, value, is_str| {
                    if is_str || key.ends_with("status") || key.ends_with("code") {
                        add(value);
                    }
                });
                self.logs.len() - before
            }
        }
    }

    /// The tantivy document.
    pub fn to_document(&self, f: &Fields) -> TantivyDocument {
        let r = &self.run;
        let mut d = TantivyDocument::new();
        d.add_text(f.id, &r.id);
        let kind = if self.state.is_started() {
            KIND_RUN
        } else {
            KIND_PENDING
        };
        d.add_text(f.kind, kind);
        d.add_u64(f.start_lsn, self.start_lsn);
        d.add_text(f.skill_id, &r.skill_id);
        d.add_text(f.caller_id, &r.caller_id);
        d.add_text(f.channel_id, &r.channel_id);
        d.add_text(f.parent_run_id, &r.parent_run_id);
        d.add_text(f.status, &r.status);
        d.add_date(f.started_at, DateTime::from_timestamp_micros(r.started_at));
        d.add_i64(f.started_us, r.started_at);
        d.add_text(f.inputs, inputs_text(&r.inputs));
        d.add_text(f.output, &r.output);
        d.add_text(f.error, &r.error);
        d.add_text(f.logs, &self.logs);
        for t in &self.tools {
            d.add_text(f.tool, t);
        }
        for e in &self.error_types {
            d.add_text(f.error_type, e);
        }
        for e in &self.event_types {
            d.add_text(f.event_type, e);
        }
        d.add_text(f.run, r.to_json());
        d
    }

    /// Back from a stored document (a committed run that gets new events).
    pub fn from_document(doc: &TantivyDocument, f: &Fields) -> Result<RunDoc, FullTextError> {
        let text = |field: Field| -> Option<&str> { doc.get_first(field).and_then(|v| v.as_str()) };
        let damaged = |what: &str| FullTextError::Corrupt(what.to_string());
        let run_json = text(f.run).ok_or_else(|| damaged("stored document has no run"))?;
        let run = run_from_json(run_json)?;
        let start_lsn = doc
            .get_first(f.start_lsn)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| damaged("stored document has no start_lsn"))?;
        let strings = |field: Field| -> Vec<String> {
            doc.get_all(field)
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let started = text(f.kind) == Some(KIND_RUN);
        let state = RunState {
            start_lsn: started.then_some(start_lsn),
            finished: run.finished_at.is_some(),
        };
        // Which of dry_run's two causes holds is not stored: a dry_run
        // status is taken as the cause (a run started dry, finished
        // dry_run, then amended to another status, reads as not dry here).
        let start_dry = run.dry_run && run.status != DRY_RUN_STATUS;
        Ok(RunDoc {
            start_lsn,
            state,
            start_dry,
            logs: text(f.logs).unwrap_or("").to_string(),
            tools: strings(f.tool),
            error_types: strings(f.error_type),
            event_types: strings(f.event_type),
            run,
            existed: true,
        })
    }
}

fn push_term(list: &mut Vec<String>, v: &str) {
    if list.len() < MAX_TERMS_PER_RUN && !list.iter().any(|t| t == v) {
        list.push(v.to_string());
    }
}

/// The term naming a run's document.
pub fn id_term(f: &Fields, id: &str) -> Term {
    Term::from_field_text(f.id, id)
}

/// The searchable text of a run's inputs: its string and number values,
/// one a line (keys and JSON punctuation left out).
pub fn inputs_text(inputs: &Json) -> String {
    let mut out = String::with_capacity(inputs.as_str().len());
    scan_json(inputs.as_str(), |_, _, v, _| {
        out.push_str(v);
        out.push('\n');
    });
    out
}

/// Walk the scalar values of a JSON text (assumed valid: the log validated
/// it on ingest): calls `f(depth, key, value, is_string)` for every string
/// and number value, where `key` is the member name it belongs to ("" in an
/// array or at the top). Strings are unescaped. Keys, booleans and nulls are
/// skipped. Invalid input ends the walk early; it never panics.
pub fn scan_json(text: &str, mut f: impl FnMut(usize, &str, &str, bool)) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    // Per open container: is it an object, and the current key. Keys and
    // values without escapes are borrowed from `text` (most are): the
    // indexer scans every payload, and copying each string cost a fifth
    // of its thread (docs/benchmarks.md, "Search lag, srch36 round").
    let mut stack: Vec<(bool, Cow<'_, str>)> = Vec::new();
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => {
                stack.push((b[i] == b'{', Cow::Borrowed("")));
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => {
                let Some((end, value)) = read_string(text, i + 1) else {
                    return;
                };
                i = end;
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let is_key = j < b.len() && b[j] == b':';
                if is_key {
                    if let Some(top) = stack.last_mut() {
                        top.1 = value;
                    }
                    i = j + 1;
                } else {
                    let key = match stack.last() {
                        Some((true, k)) => k.as_ref(),
                        _ => "",
                    };
                    f(depth, key, &value, true);
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let key = match stack.last() {
                    Some((true, k)) => k.as_ref(),
                    _ => "",
                };
                f(depth, key, &text[start..i], false);
            }
            _ => i += 1,
        }
    }
}

/// Read a JSON string body starting after its opening quote: the index
/// after the closing quote, and the unescaped text (borrowed from `text`
/// when it has no escapes).
fn read_string(text: &str, start: usize) -> Option<(usize, Cow<'_, str>)> {
    let b = text.as_bytes();
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((i + 1, Cow::Borrowed(text.get(start..i)?))),
            b'\\' => {
                let mut out = String::with_capacity(i - start + 16);
                let end = read_escaped(text, start, i, &mut out)?;
                return Some((end, Cow::Owned(out)));
            }
            _ => i += 1,
        }
    }
    None
}

/// The rest of a string body that has an escape at `i` (`run_start..i`
/// is plain text before it), unescaped into `out`; returns the index after
/// the closing quote.
fn read_escaped(text: &str, mut run_start: usize, mut i: usize, out: &mut String) -> Option<usize> {
    let b = text.as_bytes();
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(text.get(run_start..i)?);
                return Some(i + 1);
            }
            b'\\' => {
                out.push_str(text.get(run_start..i)?);
                let c = *b.get(i + 1)?;
                i += 2;
                match c {
                    b'n' | b't' | b'r' | b'b' | b'f' => out.push(' '),
                    b'u' => {
                        let hex = text.get(i..i + 4)?;
                        let mut cp = u32::from_str_radix(hex, 16).ok()?;
                        i += 4;
                        if (0xD800..0xDC00).contains(&cp) && text.get(i..i + 2) == Some("\\u") {
                            let lo = u32::from_str_radix(text.get(i + 2..i + 6)?, 16).ok()?;
                            if (0xDC00..0xE000).contains(&lo) {
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                i += 6;
                            }
                        }
                        out.push(char::from_u32(cp).unwrap_or(' '));
                    }
                    other => out.push(other as char),
                }
                run_start = i;
            }
            _ => i += 1,
        }
    }
    None
}

#[derive(Deserialize)]
struct RunJson<'a> {
    id: String,
    skill_id: String,
    caller_id: String,
    channel_id: String,
    parent_run_id: String,
    #[serde(borrow)]
    inputs: &'a serde_json::value::RawValue,
    dry_run: bool,
    started_at: String,
    finished_at: Option<String>,
    status: String,
    output: String,
    error: String,
    tool_calls: u64,
    runtime_seconds: Option<f64>,
    input_tokens: u64,
    output_tokens: u64,
    thinking_tokens: u64,
}

/// Parse the stored run view JSON (as [`Run::to_json`] wrote it) back.
pub fn run_from_json(s: &str) -> Result<Run, FullTextError> {
    let damaged =
        |e: &dyn std::fmt::Display| FullTextError::Corrupt(format!("stored run view: {e}"));
    let j: RunJson = serde_json::from_str(s).map_err(|e| damaged(&e))?;
    Ok(Run {
        id: j.id,
        skill_id: j.skill_id,
        caller_id: j.caller_id,
        channel_id: j.channel_id,
        parent_run_id: j.parent_run_id,
        inputs: Json::trusted(j.inputs.get().to_string()),
        dry_run: j.dry_run,
        started_at: parse_rfc3339(&j.started_at).map_err(|e| damaged(&e))?,
        finished_at: j
            .finished_at
            .as_deref()
            .map(parse_rfc3339)
            .transpose()
            .map_err(|e| damaged(&e))?,
        status: j.status,
        output: j.output,
        error: j.error,
        tool_calls: j.tool_calls,
        runtime_seconds: j.runtime_seconds.unwrap_or(f64::NAN),
        input_tokens: j.input_tokens,
        output_tokens: j.output_tokens,
        thinking_tokens: j.thinking_tokens,
    })
}

/// A stored field's text (for hits).
pub fn stored_text(doc: &TantivyDocument, field: Field) -> Option<&str> {
    doc.get_first(field).and_then(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_values_and_keys() {
        let mut seen = Vec::new();
        scan_json(
            r#"{"tool":"http.get","n":-1.5e3,"a":[1,"x\ny",{"b":"\u00e9\ud83d\ude00"}],"ok":true,"z":null}"#,
            |d, k, v, s| seen.push((d, k.to_string(), v.to_string(), s)),
        );
        assert_eq!(
            seen,
            vec![
                (1, "tool".into(), "http.get".into(), true),
                (1, "n".into(), "-1.5e3".into(), false),
                (2, "".into(), "1".into(), false),
                (2, "".into(), "x y".into(), true),
                (3, "b".into(), "é😀".into(), true),
            ]
        );
        // An escaped key is unescaped before it is compared.
        let mut keys = Vec::new();
        scan_json(r#"{"st\u0061tus":"x","a\"b":1}"#, |_, k, v, _| {
            keys.push((k.to_string(), v.to_string()))
        });
        assert_eq!(
            keys,
            vec![("status".into(), "x".into()), ("a\"b".into(), "1".into())]
        );
        scan_json("\"unterminated", |_, _, _, _| panic!("no value"));
        scan_json("{\"a\":\"\\u12", |_, _, _, _| panic!("no value"));
    }

    #[test]
    fn run_json_round_trips() {
        let start = Event::run_started(
            "r\"1",
            1_763_884_800_000_000,
            RunStarted {
                skill_id: "web.search".into(),
                inputs: Json::parse(r#"{"q": [1, "x"]}"#).unwrap(),
                ..RunStarted::default()
            },
        );
        let mut run = Run::fold(&start, None).expect("a start");
        assert_eq!(run_from_json(&run.to_json()).unwrap(), run);
        run.finish(
            1_763_884_801_000_000,
            &crate::event::RunFinished {
                status: "error".into(),
                error: "bad \u{1} cert".into(),
                runtime_seconds: 1.25,
                ..Default::default()
            },
        );
        assert_eq!(run_from_json(&run.to_json()).unwrap(), run);
    }
}
