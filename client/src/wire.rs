//! JSON answers of the server turned back into the engine's types, so a
//! served log answers with the same values as an embedded one.

use serde::Deserialize;
use serde_json::value::RawValue;

use auditlog::event::json::parse_event;
use auditlog::event::time::parse_instant;
use auditlog::{Error, ErrorGroup, Event, Filter, Json, Micros, Page, Result, Run, RunLogEntry};

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!(
        "the server's answer ({what}) could not be read: {e}"
    ))
}

fn instant(what: &str, s: &str) -> Result<Micros> {
    parse_instant(s).map_err(|e| bad(what, e))
}

fn json(what: &str, raw: &RawValue) -> Result<Json> {
    Json::parse(raw.get()).map_err(|e| bad(what, e.reason))
}

#[derive(Deserialize)]
struct LogWire<'a> {
    seq: u64,
    ts: &'a str,
    event_type: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Deserialize)]
struct RunWire<'a> {
    id: String,
    skill_id: String,
    caller_id: String,
    channel_id: String,
    parent_run_id: String,
    #[serde(borrow)]
    inputs: &'a RawValue,
    dry_run: bool,
    started_at: &'a str,
    finished_at: Option<&'a str>,
    status: String,
    output: String,
    error: String,
    tool_calls: u64,
    runtime_seconds: f64,
    input_tokens: u64,
    output_tokens: u64,
    thinking_tokens: u64,
    #[serde(default, borrow)]
    logs: Option<Vec<LogWire<'a>>>,
    #[serde(default)]
    score: Option<f32>,
    #[serde(default)]
    snippet: Option<String>,
}

impl RunWire<'_> {
    fn run(&self) -> Result<Run> {
        Ok(Run {
            id: self.id.clone(),
            skill_id: self.skill_id.clone(),
            caller_id: self.caller_id.clone(),
            channel_id: self.channel_id.clone(),
            parent_run_id: self.parent_run_id.clone(),
            inputs: json("inputs", self.inputs)?,
            dry_run: self.dry_run,
            started_at: instant("started_at", self.started_at)?,
            finished_at: self
                .finished_at
                .map(|t| instant("finished_at", t))
                .transpose()?,
            status: self.status.clone(),
            output: self.output.clone(),
            error: self.error.clone(),
            tool_calls: self.tool_calls,
            runtime_seconds: self.runtime_seconds,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            thinking_tokens: self.thinking_tokens,
        })
    }
}

fn log_entry(l: &LogWire<'_>) -> Result<RunLogEntry> {
    Ok(RunLogEntry {
        seq: l.seq,
        ts: instant("ts", l.ts)?,
        event_type: l.event_type.clone(),
        payload: json("payload", l.payload)?,
    })
}

pub(crate) fn runs(body: &[u8]) -> Result<Vec<Run>> {
    let list: Vec<RunWire<'_>> = serde_json::from_slice(body).map_err(|e| bad("runs", e))?;
    list.iter().map(RunWire::run).collect()
}

pub(crate) fn opt_run(body: &[u8]) -> Result<Option<Run>> {
    let r: Option<RunWire<'_>> = serde_json::from_slice(body).map_err(|e| bad("run", e))?;
    r.map(|r| r.run()).transpose()
}

pub(crate) fn run_with_logs(body: &[u8]) -> Result<Option<(Run, Vec<RunLogEntry>)>> {
    let r: Option<RunWire<'_>> = serde_json::from_slice(body).map_err(|e| bad("run", e))?;
    let Some(r) = r else { return Ok(None) };
    let logs = r
        .logs
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(log_entry)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((r.run()?, logs)))
}

pub(crate) fn logs(body: &[u8]) -> Result<Vec<RunLogEntry>> {
    let list: Vec<LogWire<'_>> = serde_json::from_slice(body).map_err(|e| bad("logs", e))?;
    list.iter().map(log_entry).collect()
}

/// One run that matched a full-text search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub run: Run,
    pub score: f32,
    /// A short piece of the best matching text, matches marked `**so**`.
    pub snippet: String,
}

pub(crate) fn hits(body: &[u8]) -> Result<Vec<SearchHit>> {
    let list: Vec<RunWire<'_>> = serde_json::from_slice(body).map_err(|e| bad("search", e))?;
    list.iter()
        .map(|w| {
            Ok(SearchHit {
                run: w.run()?,
                score: w.score.unwrap_or(0.0),
                snippet: w.snippet.clone().unwrap_or_default(),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct GroupWire {
    channel_id: String,
    tool: String,
    error_type: String,
    count: u64,
    first_ts: String,
    last_ts: String,
    avg_duration_ms: Option<f64>,
    caller_ids: Vec<String>,
    run_ids: Vec<String>,
}

pub(crate) fn error_groups(body: &[u8]) -> Result<Vec<ErrorGroup>> {
    let list: Vec<GroupWire> = serde_json::from_slice(body).map_err(|e| bad("errors", e))?;
    list.into_iter()
        .map(|g| {
            Ok(ErrorGroup {
                first_ts: instant("first_ts", &g.first_ts)?,
                last_ts: instant("last_ts", &g.last_ts)?,
                channel_id: g.channel_id,
                tool: g.tool,
                error_type: g.error_type,
                count: g.count,
                avg_duration_ms: g.avg_duration_ms,
                caller_ids: g.caller_ids,
                run_ids: g.run_ids,
            })
        })
        .collect()
}

/// Skills in the order asked, each with its latest start (if any).
pub(crate) fn last_runs(body: &[u8], skills: &[String]) -> Result<Vec<(String, Option<Micros>)>> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| bad("last_run", e))?;
    skills
        .iter()
        .map(|s| {
            let t = match map.get(s) {
                Some(serde_json::Value::String(t)) => Some(instant("last_run", t)?),
                _ => None,
            };
            Ok((s.clone(), t))
        })
        .collect()
}

#[derive(Deserialize)]
struct ReplayWire<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    next_lsn: u64,
}

#[derive(Deserialize)]
struct LsnOnly {
    lsn: u64,
}

/// Events with their LSNs, and the LSN to ask from next.
pub(crate) fn replay(body: &[u8]) -> Result<(Vec<(u64, Event)>, u64)> {
    let r: ReplayWire<'_> = serde_json::from_slice(body).map_err(|e| bad("replay", e))?;
    let mut out = Vec::with_capacity(r.events.len());
    for raw in r.events {
        let LsnOnly { lsn } = serde_json::from_str(raw.get()).map_err(|e| bad("replay", e))?;
        // The parser drops `lsn` (a log assigns its own) and keeps the rest.
        let ev = parse_event(raw.get().as_bytes()).map_err(|e| bad("replay", e))?;
        out.push((lsn, ev));
    }
    Ok((out, r.next_lsn))
}

pub(crate) fn u64_field(body: &[u8], key: &str) -> Result<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(key, e))?;
    v.get(key)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad(key, format!("no integer `{key}`")))
}

pub(crate) fn filter(f: &Filter) -> serde_json::Value {
    serde_json::json!({
        "skill": f.skill, "caller": f.caller, "channel": f.channel,
        "status": f.status, "parent": f.parent, "top_level": f.top_level,
        "since": f.since, "until": f.until, "include_dry_run": f.include_dry_run,
    })
}

pub(crate) fn page(p: Page) -> serde_json::Value {
    serde_json::json!({"limit": p.limit, "offset": p.offset})
}
