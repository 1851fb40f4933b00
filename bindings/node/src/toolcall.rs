//! The `tool_call_log` row of the TypeScript gateways, stored as one run.
//!
//! Until tool calls are records of their own (issue 15), each row becomes
//! a run whose keys are chosen so that the run indexes answer the three
//! questions the gateways' SQL indexes answered (docs in README.md, "How
//! a row is stored"):
//!
//! | row                      | run                                          |
//! |--------------------------|----------------------------------------------|
//! | `id`                     | run id                                       |
//! | `created_at`             | `started_at` (and the finish's ts)           |
//! | `session_id`             | `channel_id`  → calls of a session           |
//! | `engine`, `tool_name`    | `skill_id` = `engine/tool_name`, `caller_id` = `engine` → calls of an engine and tool |
//! | `error` present          | status `error` (else `ok`) → calls with an error |
//! | `error` text             | the finish's `error`                         |
//! | `duration_ms`            | `runtime_seconds` (÷1000) and `inputs.duration_ms` (exact) |
//! | the other fields         | `inputs`, with `"table":"tool_call_log"`     |
//!
//! A row is two events (`run_started`, `run_finished`) appended as one
//! batch: one queue entry, consecutive LSNs, one segment, so the run's
//! status is in the same index image as its start.
//!
//! Only the row's known fields can reach this module: the row type has no
//! other field, and the TypeScript layer copies only these names (the
//! keep-only guarantee: no `content`, `stdout`, `stderr` or `body`).

use auditlog::{AuditStore, Event, Filter, Json, Micros, Page, Run, RunFinished, RunStarted};
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use auditlog::event::json::{json_f64, json_string};

/// `inputs.table` of every row's run: tells rows from other runs.
pub const TABLE: &str = "tool_call_log";
/// Longest `id` (the engine's run-id limit).
pub const MAX_ID_BYTES: usize = auditlog::event::MAX_RUN_ID_BYTES;
/// Longest `session_id`, and longest `engine/tool_name` together (the
/// engine's limit on a channel and a skill id).
pub const MAX_KEY_BYTES: usize = auditlog::event::MAX_NAME_BYTES;
/// Longest `args_summary` and longest `error`.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// One row, as the gateway hands it over (absent fields `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCallRow {
    pub id: Option<String>,
    pub session_id: Option<String>,
    pub engine: Option<String>,
    pub tool_name: Option<String>,
    pub args_summary: Option<String>,
    pub duration_ms: Option<f64>,
    pub exit_code: Option<f64>,
    pub http_status: Option<f64>,
    pub error: Option<String>,
    pub result_truncated: Option<bool>,
    pub result_bytes: Option<f64>,
    /// µs since the epoch.
    pub created_at_us: Option<Micros>,
}

/// Why a row was refused: the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tool_call_log row: field `{}`: {}",
            self.field, self.reason
        )
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> RowError {
    RowError {
        field,
        reason: reason.into(),
    }
}

/// The value of a key field, `"unknown"` when absent.
fn or_unknown(v: Option<String>) -> String {
    v.unwrap_or_else(|| "unknown".to_string())
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), RowError> {
    if s.len() > max {
        return Err(bad(
            field,
            format!("is {} bytes; at most {max} are allowed", s.len()),
        ));
    }
    Ok(())
}

fn check_integer(field: &'static str, v: f64, min: f64, max: f64) -> Result<(), RowError> {
    if !v.is_finite() || v.fract() != 0.0 || v < min || v > max {
        return Err(bad(
            field,
            format!("is {v}; it must be an integer within {min}..={max}"),
        ));
    }
    Ok(())
}

/// Write a number as JSON: integers without a fraction.
fn json_number(v: f64, out: &mut String) {
    if v.fract() == 0.0 && v.abs() <= MAX_SAFE_INTEGER {
        out.push_str(&(v as i64).to_string());
    } else {
        json_f64(v, out);
    }
}

/// Check a row's fields; the first broken rule is the error.
fn check(row: &ToolCallRow) -> Result<(), RowError> {
    if let Some(id) = &row.id {
        if id.is_empty() {
            return Err(bad("id", "is empty; leave it out to have one generated"));
        }
        check_len("id", id, MAX_ID_BYTES)?;
    }
    match &row.tool_name {
        None => {
            return Err(bad(
                "tool_name",
                "is missing; every tool call names its tool",
            ))
        }
        Some(t) if t.is_empty() => return Err(bad("tool_name", "is empty")),
        Some(_) => {}
    }
    let engine_len = row.engine.as_deref().map_or("unknown".len(), str::len);
    let tool_len = row.tool_name.as_deref().map_or(0, str::len);
    if engine_len + 1 + tool_len > MAX_KEY_BYTES {
        let field = if engine_len > tool_len {
            "engine"
        } else {
            "tool_name"
        };
        return Err(bad(
            field,
            format!(
                "engine and tool_name are {} bytes together; at most {} are allowed",
                engine_len + tool_len,
                MAX_KEY_BYTES - 1
            ),
        ));
    }
    if let Some(s) = &row.session_id {
        check_len("session_id", s, MAX_KEY_BYTES)?;
    }
    if let Some(s) = &row.args_summary {
        check_len("args_summary", s, MAX_TEXT_BYTES)?;
    }
    if let Some(s) = &row.error {
        check_len("error", s, MAX_TEXT_BYTES)?;
    }
    if let Some(d) = row.duration_ms {
        if !d.is_finite() || d < 0.0 {
            return Err(bad(
                "duration_ms",
                format!("is {d}; it must be a finite number of milliseconds, at least 0"),
            ));
        }
    }
    if let Some(v) = row.exit_code {
        check_integer("exit_code", v, -2_147_483_648.0, 4_294_967_295.0)?;
    }
    if let Some(v) = row.http_status {
        check_integer("http_status", v, 0.0, 999.0)?;
    }
    if let Some(v) = row.result_bytes {
        check_integer("result_bytes", v, 0.0, MAX_SAFE_INTEGER)?;
    }
    Ok(())
}

/// The run's `inputs`: the row fields no run field holds, exactly.
fn inputs(row: &ToolCallRow, tool: &str) -> String {
    let mut s = String::with_capacity(96 + row.args_summary.as_ref().map_or(0, String::len));
    s.push_str("{\"table\":\"");
    s.push_str(TABLE);
    s.push_str("\",\"tool_name\":");
    json_string(tool, &mut s);
    if let Some(a) = &row.args_summary {
        s.push_str(",\"args_summary\":");
        json_string(a, &mut s);
    }
    for (key, v) in [
        ("duration_ms", row.duration_ms),
        ("exit_code", row.exit_code),
        ("http_status", row.http_status),
    ] {
        if let Some(v) = v {
            s.push_str(",\"");
            s.push_str(key);
            s.push_str("\":");
            json_number(v, &mut s);
        }
    }
    if let Some(t) = row.result_truncated {
        s.push_str(if t {
            ",\"result_truncated\":true"
        } else {
            ",\"result_truncated\":false"
        });
    }
    if let Some(v) = row.result_bytes {
        s.push_str(",\"result_bytes\":");
        json_number(v, &mut s);
    }
    s.push('}');
    s
}

/// The two events that store `row` (start, finish) and its id. `now` is
/// used when `created_at` is absent, `new_id` when `id` is.
pub fn to_events(
    row: ToolCallRow,
    now: Micros,
    new_id: impl FnOnce() -> String,
) -> Result<(String, [Event; 2]), RowError> {
    check(&row)?;
    let inputs = Json::parse(inputs(&row, row.tool_name.as_deref().unwrap_or_default()))
        .map_err(|e| bad("args_summary", e.reason))?;
    let id = row.id.unwrap_or_else(new_id);
    let ts = row.created_at_us.unwrap_or(now);
    let engine = or_unknown(row.engine);
    let tool = row.tool_name.unwrap_or_default();
    let start = RunStarted {
        skill_id: format!("{engine}/{tool}"),
        caller_id: engine,
        channel_id: or_unknown(row.session_id),
        parent_run_id: String::new(),
        inputs,
        dry_run: false,
    };
    let finish = RunFinished {
        // A present error, even "", is an error: SQL's `error IS NOT NULL`.
        status: if row.error.is_some() { "error" } else { "ok" }.to_string(),
        error: row.error.unwrap_or_default(),
        tool_calls: 1,
        runtime_seconds: row.duration_ms.map_or(0.0, |d| d / 1000.0),
        ..RunFinished::default()
    };
    let events = [
        Event::run_started(id.clone(), ts, start),
        Event::run_finished(id.clone(), ts, finish),
    ];
    Ok((id, events))
}

/// The row fields a run's `inputs` holds, borrowed from its JSON text
/// (no allocation per value; unknown keys skipped).
#[derive(Deserialize)]
struct StoredInputs<'a> {
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_name: Option<&'a RawValue>,
    #[serde(borrow)]
    args_summary: Option<&'a RawValue>,
    #[serde(borrow)]
    duration_ms: Option<&'a RawValue>,
    #[serde(borrow)]
    exit_code: Option<&'a RawValue>,
    #[serde(borrow)]
    http_status: Option<&'a RawValue>,
    #[serde(borrow)]
    result_truncated: Option<&'a RawValue>,
    #[serde(borrow)]
    result_bytes: Option<&'a RawValue>,
}

/// The row a run stores, as JSON (`created_at` in µs since the epoch), or
/// `false` (nothing written) for a run that is not a row.
pub fn row_json(run: &Run, out: &mut String) -> bool {
    let Ok(inputs) = serde_json::from_str::<StoredInputs<'_>>(run.inputs.as_str()) else {
        return false;
    };
    if inputs.table.as_deref() != Some(TABLE) {
        return false;
    }
    let raw = |out: &mut String, key: &str, v: Option<&RawValue>| {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        out.push_str(v.map_or("null", RawValue::get));
    };
    out.push_str("{\"id\":");
    json_string(&run.id, out);
    out.push_str(",\"session_id\":");
    json_string(&run.channel_id, out);
    out.push_str(",\"engine\":");
    json_string(&run.caller_id, out);
    raw(out, "tool_name", inputs.tool_name);
    raw(out, "args_summary", inputs.args_summary);
    raw(out, "duration_ms", inputs.duration_ms);
    raw(out, "exit_code", inputs.exit_code);
    raw(out, "http_status", inputs.http_status);
    out.push_str(",\"error\":");
    if run.status == "error" {
        json_string(&run.error, out);
    } else {
        out.push_str("null");
    }
    raw(out, "result_truncated", inputs.result_truncated);
    raw(out, "result_bytes", inputs.result_bytes);
    out.push_str(",\"created_at\":");
    out.push_str(&run.started_at.to_string());
    out.push('}');
    true
}

/// Which calls a query asks for (each served by one run index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Calls of a session: the channel index.
    Session(String),
    /// Calls of one engine and tool: the skill index.
    Tool { engine: String, tool: String },
    /// Calls with an error: the status index.
    Errors,
    /// One call by id: the run-id lookup.
    Id(String),
}

/// A query over rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallQuery {
    pub shape: Shape,
    /// `created_at >= since` (µs).
    pub since: Option<Micros>,
    /// `created_at <= until` (µs).
    pub until: Option<Micros>,
    pub limit: Option<usize>,
    /// Oldest first (time order); else newest first.
    pub oldest_first: bool,
}

/// The run filter that answers a shape from its index.
impl Shape {
    /// The shape named by TypeScript with its arguments.
    pub fn parse(shape: &str, a: Option<String>, b: Option<String>) -> napi::Result<Shape> {
        Ok(match (shape, a, b) {
            ("session", Some(s), None) => Shape::Session(s),
            ("tool", Some(engine), Some(tool)) => Shape::Tool { engine, tool },
            ("errors", None, None) => Shape::Errors,
            ("id", Some(id), None) => Shape::Id(id),
            (other, _, _) => return Err(crate::errors::invalid(format!("query shape {other:?}"))),
        })
    }
}

pub fn filter(q: &CallQuery) -> Filter {
    let mut f = Filter {
        since: q.since,
        until: q.until,
        ..Filter::default()
    };
    match &q.shape {
        Shape::Session(s) => f.channel = Some(s.clone()),
        Shape::Tool { engine, tool } => {
            // `engine/tool` alone could be another split of the same text
            // ("a/b" + "c" vs "a" + "b/c"): the caller (engine) settles it.
            f.skill = Some(format!("{engine}/{tool}"));
            f.caller = Some(engine.clone());
        }
        Shape::Errors => f.status = Some("error".to_string()),
        Shape::Id(_) => {}
    }
    f
}

/// Where rows are read from: a store opened here, or `auditlog serve`
/// through the client (the same queries, the same answers).
pub trait RunSource {
    fn get_run(&self, id: &str) -> auditlog::Result<Option<Run>>;
    fn list_runs(&self, f: &Filter, page: Page) -> auditlog::Result<Vec<Run>>;
    fn count_runs(&self, f: &Filter) -> auditlog::Result<u64>;
}

impl RunSource for AuditStore {
    fn get_run(&self, id: &str) -> auditlog::Result<Option<Run>> {
        AuditStore::get_run(self, id)
    }
    fn list_runs(&self, f: &Filter, page: Page) -> auditlog::Result<Vec<Run>> {
        AuditStore::list_runs(self, f, page)
    }
    fn count_runs(&self, f: &Filter) -> auditlog::Result<u64> {
        AuditStore::count_runs(self, f)
    }
}

impl RunSource for auditlog_client::Client {
    fn get_run(&self, id: &str) -> auditlog::Result<Option<Run>> {
        auditlog_client::Client::get_run(self, id)
    }
    fn list_runs(&self, f: &Filter, page: Page) -> auditlog::Result<Vec<Run>> {
        auditlog_client::Client::list_runs(self, f, page)
    }
    fn count_runs(&self, f: &Filter) -> auditlog::Result<u64> {
        auditlog_client::Client::count_runs(self, f)
    }
}

/// The rows a query asks for, as a JSON array.
pub fn rows(store: &impl RunSource, q: &CallQuery) -> auditlog::Result<String> {
    let runs = match &q.shape {
        Shape::Id(id) => store
            .get_run(id)?
            .into_iter()
            .filter(|r| in_range(r, q))
            .collect(),
        _ if q.oldest_first => oldest_rows(store, &filter(q), q.limit)?,
        _ => newest_rows(store, &filter(q), q.limit)?,
    };
    let mut out = String::with_capacity(2 + runs.len() * 320);
    out.push('[');
    let mut first = true;
    for r in &runs {
        let mark = out.len();
        if !first {
            out.push(',');
        }
        if row_json(r, &mut out) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push(']');
    Ok(out)
}

fn in_range(r: &Run, q: &CallQuery) -> bool {
    q.since.is_none_or(|s| r.started_at >= s) && q.until.is_none_or(|u| r.started_at <= u)
}

fn is_row(r: &Run) -> bool {
    r.inputs
        .as_str()
        .starts_with("{\"table\":\"tool_call_log\"")
}

/// Newest first: pages of the filter's list until `limit` rows are found
/// (runs that are not rows are skipped).
fn newest_rows(
    store: &impl RunSource,
    f: &Filter,
    limit: Option<usize>,
) -> auditlog::Result<Vec<Run>> {
    let Some(limit) = limit else {
        let mut all = store.list_runs(f, Page::all())?;
        all.retain(is_row);
        return Ok(all);
    };
    let mut out = Vec::with_capacity(limit);
    let mut offset = 0;
    while out.len() < limit {
        let want = limit - out.len();
        let page = store.list_runs(f, Page::new(want, offset))?;
        let got = page.len();
        offset += got;
        out.extend(page.into_iter().filter(is_row));
        if got < want {
            break;
        }
    }
    Ok(out)
}

/// Oldest first. With a limit, the oldest `limit` rows sit at the end of
/// the newest-first list: count the matches and read from there, widening
/// the window towards newer runs when some of it is not rows. Rows
/// committed between the count and the read only shift the window's end
/// (a read from `offset` runs to the end, so it still holds the oldest),
/// and ids seen twice are kept once.
fn oldest_rows(
    store: &impl RunSource,
    f: &Filter,
    limit: Option<usize>,
) -> auditlog::Result<Vec<Run>> {
    let mut runs = match limit {
        None => {
            let mut all = store.list_runs(f, Page::all())?;
            all.retain(is_row);
            all
        }
        Some(limit) => {
            let total = usize::try_from(store.count_runs(f)?).unwrap_or(usize::MAX);
            let mut offset = total.saturating_sub(limit);
            let mut found: Vec<Run> = store.list_runs(
                f,
                Page {
                    limit: None,
                    offset,
                },
            )?;
            found.retain(is_row);
            while found.len() < limit && offset > 0 {
                let wider = offset.saturating_sub(limit - found.len());
                let mut more = store.list_runs(f, Page::new(offset - wider, wider))?;
                more.retain(|r| is_row(r) && !found.iter().any(|s| s.id == r.id));
                more.append(&mut found);
                found = more;
                offset = wider;
            }
            let extra = found.len().saturating_sub(limit);
            found.drain(..extra);
            found
        }
    };
    runs.reverse();
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog::EventData;

    fn row() -> ToolCallRow {
        ToolCallRow {
            tool_name: Some("web_search".into()),
            ..ToolCallRow::default()
        }
    }

    fn events(r: ToolCallRow) -> (String, [Event; 2]) {
        match to_events(r, 1_000_000, || "gen-1".into()) {
            Ok(x) => x,
            Err(e) => panic!("row refused: {e}"),
        }
    }

    fn started(ev: &Event) -> &RunStarted {
        match &ev.data {
            EventData::RunStarted(s) => s,
            other => panic!("not a start: {other:?}"),
        }
    }

    fn finished(ev: &Event) -> &RunFinished {
        match &ev.data {
            EventData::RunFinished(f) => f,
            other => panic!("not a finish: {other:?}"),
        }
    }

    #[test]
    fn absent_keys_fall_back_and_id_and_time_are_filled_in() {
        let (id, [s, f]) = events(row());
        assert_eq!(id, "gen-1");
        assert_eq!(
            (s.run_id.as_str(), s.ts, f.ts),
            ("gen-1", 1_000_000, 1_000_000)
        );
        let st = started(&s);
        assert_eq!(st.skill_id, "unknown/web_search");
        assert_eq!(st.caller_id, "unknown");
        assert_eq!(st.channel_id, "unknown");
        assert_eq!(
            st.inputs.as_str(),
            r#"{"table":"tool_call_log","tool_name":"web_search"}"#
        );
        assert_eq!(finished(&f).status, "ok");
    }

    #[test]
    fn an_error_even_empty_makes_the_status_error() {
        let (_, [_, f]) = events(ToolCallRow {
            error: Some(String::new()),
            ..row()
        });
        assert_eq!(finished(&f).status, "error");
    }

    #[test]
    fn the_row_comes_back_exactly() {
        let r = ToolCallRow {
            id: Some("c-1".into()),
            session_id: Some("s-1".into()),
            engine: Some("ollama".into()),
            args_summary: Some("GET example.org [redacted]".into()),
            duration_ms: Some(12.5),
            exit_code: Some(-1.0),
            http_status: Some(502.0),
            error: Some("bad gateway".into()),
            result_truncated: Some(true),
            result_bytes: Some(0.0),
            created_at_us: Some(1_763_884_800_000_123),
            ..row()
        };
        let (_, [s, f]) = events(r);
        let Some(mut run) = Run::fold(&s, Some(&f)) else {
            panic!("a start folds");
        };
        let mut out = String::new();
        assert!(row_json(&run, &mut out));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let want = serde_json::json!({
            "id": "c-1", "session_id": "s-1", "engine": "ollama",
            "tool_name": "web_search", "args_summary": "GET example.org [redacted]",
            "duration_ms": 12.5, "exit_code": -1, "http_status": 502,
            "error": "bad gateway", "result_truncated": true, "result_bytes": 0,
            "created_at": 1_763_884_800_000_123i64
        });
        assert_eq!(v, want);
        run.inputs = Json::empty_object();
        assert!(
            !row_json(&run, &mut String::new()),
            "a run without the mark is no row"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(ToolCallRow, &str)> = vec![
            (ToolCallRow::default(), "tool_name"),
            (
                ToolCallRow {
                    id: Some(String::new()),
                    ..row()
                },
                "id",
            ),
            (
                ToolCallRow {
                    id: Some("x".repeat(257)),
                    ..row()
                },
                "id",
            ),
            (
                ToolCallRow {
                    duration_ms: Some(f64::NAN),
                    ..row()
                },
                "duration_ms",
            ),
            (
                ToolCallRow {
                    duration_ms: Some(-1.0),
                    ..row()
                },
                "duration_ms",
            ),
            (
                ToolCallRow {
                    exit_code: Some(1.5),
                    ..row()
                },
                "exit_code",
            ),
            (
                ToolCallRow {
                    http_status: Some(1000.0),
                    ..row()
                },
                "http_status",
            ),
            (
                ToolCallRow {
                    result_bytes: Some(-3.0),
                    ..row()
                },
                "result_bytes",
            ),
            (
                ToolCallRow {
                    engine: Some("e".repeat(1100)),
                    ..row()
                },
                "engine",
            ),
            (
                ToolCallRow {
                    error: Some("e".repeat(MAX_TEXT_BYTES + 1)),
                    ..row()
                },
                "error",
            ),
        ];
        for (r, field) in cases {
            match to_events(r, 0, || "x".into()) {
                Err(e) => assert_eq!(e.field, field, "{e}"),
                Ok(_) => panic!("a bad {field} was accepted"),
            }
        }
    }

    #[test]
    fn the_tool_filter_pins_the_engine() {
        let q = CallQuery {
            shape: Shape::Tool {
                engine: "a".into(),
                tool: "b/c".into(),
            },
            since: Some(1),
            until: None,
            limit: None,
            oldest_first: true,
        };
        let f = filter(&q);
        assert_eq!(f.skill.as_deref(), Some("a/b/c"));
        assert_eq!(f.caller.as_deref(), Some("a"));
        assert_eq!(f.since, Some(1));
    }
}
