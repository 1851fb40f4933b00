//! The SQLite side: the executus-style audit schema (a `runs` table and a
//! `run_logs` table with indexes on skill, caller, channel, parent,
//! started_at and status), the gateways' tool-call table (`tool_calls`,
//! indexed as their own tables were: session, engine and tool, tool,
//! agent, workspace, status, each with time), a loader that applies events
//! in log order with the contract's rules, and every query of the
//! audit-store surface in SQL. Used by the differential test and by the
//! benchmarks, which compare auditlog's indexes with SQLite answering the
//! same questions.

use std::collections::HashSet;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use auditlog::query::{
    CallFilter, CallKey, CallOrder, CallPage, ErrorGroup, Filter, Page, ERROR_GROUP_IDS,
};
use auditlog::view::fold::{Effect, RunStates};
use auditlog::view::{is_dry, Run, RunLogEntry};
use auditlog::{Event, EventData, Json, Micros};

/// The schema, with the indexes the queries use.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    skill_id TEXT NOT NULL,
    caller_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    parent_run_id TEXT NOT NULL,
    inputs TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT NOT NULL,
    tool_calls INTEGER NOT NULL,
    runtime_seconds REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    thinking_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_logs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_skill ON runs(skill_id, started_at);
CREATE INDEX IF NOT EXISTS runs_caller ON runs(caller_id, started_at);
CREATE INDEX IF NOT EXISTS runs_channel ON runs(channel_id, started_at);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id, started_at);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, started_at);
CREATE INDEX IF NOT EXISTS run_logs_run ON run_logs(run_id, seq);
CREATE INDEX IF NOT EXISTS run_logs_type_ts ON run_logs(event_type, ts);
CREATE TABLE IF NOT EXISTS tool_calls (
    lsn INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    caller_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    engine TEXT NOT NULL,
    status TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error TEXT NOT NULL,
    duration_ms REAL,
    input_bytes INTEGER,
    result_bytes INTEGER,
    exit_code INTEGER,
    http_status INTEGER,
    input_hash TEXT NOT NULL,
    args_summary TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_session ON tool_calls(channel_id, ts);
CREATE INDEX IF NOT EXISTS calls_engine_tool ON tool_calls(engine, tool, ts);
CREATE INDEX IF NOT EXISTS calls_tool ON tool_calls(tool, ts);
CREATE INDEX IF NOT EXISTS calls_agent ON tool_calls(caller_id, ts);
CREATE INDEX IF NOT EXISTS calls_workspace ON tool_calls(workspace_id, ts);
CREATE INDEX IF NOT EXISTS calls_status ON tool_calls(status, ts);
CREATE INDEX IF NOT EXISTS calls_run ON tool_calls(run_id, ts);
";

const RUN_COLS: &str = "id, skill_id, caller_id, channel_id, parent_run_id, inputs, dry_run, started_at, finished_at, status, output, error, tool_calls, runtime_seconds, input_tokens, output_tokens, thinking_tokens";

/// Open (or create) a database at `path` (`None`: in memory) with the
/// schema, tuned as the gateways run it (WAL, synchronous=NORMAL).
pub fn open(path: Option<&std::path::Path>) -> rusqlite::Result<Connection> {
    let conn = match path {
        Some(p) => Connection::open(p)?,
        None => Connection::open_in_memory()?,
    };
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;",
    )?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Applies events in log order as the one run fold says
/// (`auditlog::view::fold`): the fold decides what each event does, and
/// only events that change the run view become SQL (the run's defining
/// start inserts it, its counting finish updates it, every `run_log` is
/// stored). Keeps the fold's state of every id seen, so one loader must
/// see a log's events from its first on, in order.
#[derive(Debug)]
pub struct Loader {
    fold: RunStates,
    next_lsn: u64,
    /// Fill the `tool_calls` table too.
    calls: bool,
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            fold: RunStates::default(),
            next_lsn: 0,
            calls: true,
        }
    }
}

impl Loader {
    pub fn new() -> Loader {
        Loader::default()
    }

    /// The executus-style tables only (the load run's baseline: what those
    /// gateways store), no `tool_calls` rows.
    pub fn without_calls() -> Loader {
        Loader {
            calls: false,
            ..Loader::default()
        }
    }

    /// Apply `events` (the next ones of the log) in one transaction.
    pub fn load<'a>(
        &mut self,
        conn: &mut Connection,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> rusqlite::Result<u64> {
        let tx = conn.transaction()?;
        let mut n = 0u64;
        {
            let mut start = tx.prepare_cached(
                "INSERT INTO runs (id, skill_id, caller_id, channel_id, parent_run_id, inputs, dry_run, started_at, finished_at, status, output, error, tool_calls, runtime_seconds, input_tokens, output_tokens, thinking_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, 'running', '', '', 0, 0.0, 0, 0, 0)",
            )?;
            let mut finish = tx.prepare_cached(
                "UPDATE runs SET finished_at = ?2, status = ?3, output = ?4, error = ?5, tool_calls = ?6, runtime_seconds = ?7, input_tokens = ?8, output_tokens = ?9, thinking_tokens = ?10 WHERE id = ?1",
            )?;
            let mut log = tx.prepare_cached(
                "INSERT INTO run_logs (run_id, seq, ts, event_type, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut amend_start = tx.prepare_cached(
                "UPDATE runs SET skill_id = ?2, caller_id = ?3, channel_id = ?4, parent_run_id = ?5, inputs = ?6, dry_run = ?7, started_at = ?8 WHERE id = ?1",
            )?;
            let mut unlog =
                tx.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1 AND seq = ?2")?;
            let mut call = tx.prepare_cached(CALL_INSERT)?;
            for ev in events {
                let lsn = self.next_lsn;
                let effect = self.fold.apply(lsn, ev);
                self.next_lsn += 1;
                n += 1;
                // Every tool call is stored; which ones views show (and
                // their scope) the queries decide, as the engine does.
                if let Some(row) = self.calls.then(|| CallRow::of(ev)).flatten() {
                    row.insert(&mut call, lsn, ev)?;
                }
                match (&ev.data, effect) {
                    (EventData::RunStarted(s), Effect::Start) => {
                        start.execute(params![
                            ev.run_id,
                            s.skill_id,
                            s.caller_id,
                            s.channel_id,
                            s.parent_run_id,
                            s.inputs.as_str(),
                            s.dry_run,
                            ev.ts
                        ])?;
                    }
                    (EventData::RunStarted(s), Effect::AmendStart) => {
                        amend_start.execute(params![
                            ev.run_id,
                            s.skill_id,
                            s.caller_id,
                            s.channel_id,
                            s.parent_run_id,
                            s.inputs.as_str(),
                            s.dry_run,
                            ev.ts
                        ])?;
                    }
                    (EventData::RunFinished(f), Effect::Finish | Effect::AmendFinish) => {
                        finish.execute(params![
                            ev.run_id,
                            ev.ts,
                            f.status,
                            f.output,
                            f.error,
                            f.tool_calls as i64,
                            f.runtime_seconds,
                            f.input_tokens as i64,
                            f.output_tokens as i64,
                            f.thinking_tokens as i64
                        ])?;
                    }
                    (EventData::RunLog(l), Effect::Log | Effect::ReplaceLog) => {
                        if effect == Effect::ReplaceLog {
                            unlog.execute(params![ev.run_id, l.seq as i64])?;
                        }
                        log.execute(params![
                            ev.run_id,
                            l.seq as i64,
                            ev.ts,
                            l.event_type,
                            l.payload.as_str()
                        ])?;
                    }
                    // Ignored by the run view (kept only in the log).
                    _ => {}
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

/// Apply a whole log's events (from its first, in order) in one
/// transaction; see [`Loader`].
pub fn load_events<'a>(
    conn: &mut Connection,
    events: impl IntoIterator<Item = &'a Event>,
) -> rusqlite::Result<u64> {
    Loader::new().load(conn, events)
}

const CALL_INSERT: &str = "INSERT INTO tool_calls (lsn, ts, source, run_id, call_id, channel_id, caller_id, workspace_id, request_id, tool, engine, status, error_type, error, duration_ms, input_bytes, result_bytes, exit_code, http_status, input_hash, args_summary, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)";

/// A tool call as a row: a `tool_call` event's fields, or a `run_log`
/// tool call's read from its payload (docs/tool-calls.md), written here
/// independently of the engine's reading.
struct CallRow {
    source: &'static str,
    call: auditlog::ToolCall,
}

impl CallRow {
    fn of(ev: &Event) -> Option<CallRow> {
        match &ev.data {
            EventData::ToolCall(c) => Some(CallRow {
                source: "tool_call",
                call: (**c).clone(),
            }),
            EventData::RunLog(l) if l.event_type == "tool_call" => {
                let v: serde_json::Value =
                    serde_json::from_str(l.payload.as_str()).unwrap_or_default();
                let get = |k: &str| v.as_object().and_then(|o| o.get(k));
                let text = |k: &str| match get(k) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                let status = match text("status") {
                    s if s.is_empty() => "ok".to_string(),
                    s => s,
                };
                Some(CallRow {
                    source: "run_log",
                    call: auditlog::ToolCall {
                        call_id: text("call_id"),
                        workspace_id: text("workspace_id"),
                        request_id: text("request_id"),
                        tool: text("tool"),
                        engine: text("engine"),
                        status,
                        error_type: text("error_type"),
                        error: text("error"),
                        duration_ms: get("duration_ms").and_then(|d| d.as_f64()),
                        input_bytes: get("input_bytes").and_then(|d| d.as_u64()),
                        result_bytes: get("result_bytes").and_then(|d| d.as_u64()),
                        exit_code: get("exit_code").and_then(|d| d.as_i64()),
                        http_status: get("http_status")
                            .and_then(|d| d.as_u64())
                            .and_then(|d| u16::try_from(d).ok())
                            .filter(|d| *d <= 999),
                        input_hash: text("input_hash"),
                        args_summary: text("args_summary"),
                        payload: l.payload.clone(),
                        ..auditlog::ToolCall::default()
                    },
                })
            }
            _ => None,
        }
    }

    fn insert(
        &self,
        st: &mut rusqlite::CachedStatement<'_>,
        lsn: u64,
        ev: &Event,
    ) -> rusqlite::Result<()> {
        let c = &self.call;
        st.execute(params![
            lsn as i64,
            ev.ts,
            self.source,
            ev.run_id,
            c.call_id,
            c.channel_id,
            c.caller_id,
            c.workspace_id,
            c.request_id,
            c.tool,
            c.engine,
            c.status,
            c.error_type,
            c.error,
            c.duration_ms,
            c.input_bytes.map(|v| v as i64),
            c.result_bytes.map(|v| v as i64),
            c.exit_code,
            c.http_status,
            c.input_hash,
            c.args_summary,
            c.payload.as_str()
        ])?;
        Ok(())
    }
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    let finished_at: Option<i64> = row.get(8)?;
    let status: String = row.get(9)?;
    Ok(Run {
        id: row.get(0)?,
        skill_id: row.get(1)?,
        caller_id: row.get(2)?,
        channel_id: row.get(3)?,
        parent_run_id: row.get(4)?,
        inputs: Json::trusted(row.get(5)?),
        dry_run: is_dry(row.get(6)?, &status),
        started_at: row.get(7)?,
        finished_at,
        status,
        output: row.get(10)?,
        error: row.get(11)?,
        tool_calls: row.get::<_, i64>(12)? as u64,
        runtime_seconds: row.get(13)?,
        input_tokens: row.get::<_, i64>(14)? as u64,
        output_tokens: row.get::<_, i64>(15)? as u64,
        thinking_tokens: row.get::<_, i64>(16)? as u64,
    })
}

pub fn get_run(conn: &Connection, id: &str) -> rusqlite::Result<Option<Run>> {
    conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))?
        .query_row([id], run_from_row)
        .optional()
}

/// The logs of a stored run in seq order (ties in log order).
pub fn list_logs(conn: &Connection, id: &str) -> rusqlite::Result<Vec<RunLogEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT seq, ts, event_type, payload FROM run_logs WHERE run_id = ?1 AND EXISTS (SELECT 1 FROM runs WHERE id = ?1) ORDER BY seq, id",
    )?;
    let rows = st.query_map([id], |r| {
        Ok(RunLogEntry {
            seq: r.get::<_, i64>(0)? as u64,
            ts: r.get(1)?,
            event_type: r.get(2)?,
            payload: Json::trusted(r.get(3)?),
        })
    })?;
    rows.collect()
}

fn where_clause(f: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    for (col, v) in [
        ("skill_id = ?", &f.skill),
        ("caller_id = ?", &f.caller),
        ("channel_id = ?", &f.channel),
        ("status = ?", &f.status),
        ("parent_run_id = ?", &f.parent),
    ] {
        if let Some(v) = v {
            conds.push(col);
            args.push(Value::Text(v.clone()));
        }
    }
    if f.top_level {
        conds.push("parent_run_id = ''");
    }
    if let Some(s) = f.since {
        conds.push("started_at >= ?");
        args.push(Value::Integer(s));
    }
    if let Some(u) = f.until {
        conds.push("started_at <= ?");
        args.push(Value::Integer(u));
    }
    if !f.include_dry_run {
        // A dry run: its start says so, or its status is dry_run.
        conds.push("dry_run = 0 AND status != 'dry_run'");
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (w, args)
}

/// Runs matching the filter, newest first (started_at desc, id desc).
pub fn list_runs(conn: &Connection, f: &Filter, page: Page) -> rusqlite::Result<Vec<Run>> {
    let (w, mut args) = where_clause(f);
    let sql = format!(
        "SELECT {RUN_COLS} FROM runs{w} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?"
    );
    args.push(rusqlite::types::Value::Integer(
        page.limit.map_or(-1, |l| l as i64),
    ));
    args.push(rusqlite::types::Value::Integer(page.offset as i64));
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), run_from_row)?;
    rows.collect()
}

pub fn count_runs(conn: &Connection, f: &Filter) -> rusqlite::Result<u64> {
    let (w, args) = where_clause(f);
    let mut st = conn.prepare_cached(&format!("SELECT COUNT(*) FROM runs{w}"))?;
    st.query_row(params_from_iter(args), |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

pub fn children(conn: &Connection, id: &str, include_dry_run: bool) -> rusqlite::Result<Vec<Run>> {
    let f = Filter {
        parent: Some(id.to_string()),
        include_dry_run,
        ..Filter::default()
    };
    list_runs(conn, &f, Page::all())
}

/// The run and its ancestors (cycle-safe); `None` for an unknown run.
pub fn chain(conn: &Connection, id: &str) -> rusqlite::Result<Option<Vec<Run>>> {
    let Some(first) = get_run(conn, id)? else {
        return Ok(None);
    };
    let mut seen = HashSet::new();
    seen.insert(first.id.clone());
    let mut parent = first.parent_run_id.clone();
    let mut out = vec![first];
    while !parent.is_empty() && seen.insert(parent.clone()) {
        match get_run(conn, &parent)? {
            Some(r) => {
                parent = r.parent_run_id.clone();
                out.push(r);
            }
            None => break,
        }
    }
    Ok(Some(out))
}

/// Latest started_at per skill, in the order given.
pub fn last_run(
    conn: &Connection,
    skills: &[String],
    include_failed: bool,
    include_dry_run: bool,
) -> rusqlite::Result<Vec<(String, Option<Micros>)>> {
    let mut sql = "SELECT MAX(started_at) FROM runs WHERE skill_id = ?1".to_string();
    if !include_failed {
        sql.push_str(" AND status NOT IN ('error', 'timeout')");
    }
    if !include_dry_run {
        sql.push_str(" AND dry_run = 0 AND status != 'dry_run'");
    }
    let mut st = conn.prepare_cached(&sql)?;
    skills
        .iter()
        .map(|s| Ok((s.clone(), st.query_row([s], |r| r.get(0))?)))
        .collect()
}

/// Finished runs with finished_at before `before`, newest first.
pub fn finished_before(
    conn: &Connection,
    before: Micros,
    include_dry_run: bool,
) -> rusqlite::Result<Vec<Run>> {
    let dry = if include_dry_run {
        ""
    } else {
        " AND dry_run = 0 AND status != 'dry_run'"
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1{dry} ORDER BY started_at DESC, id DESC"
    ))?;
    let rows = st.query_map([before], run_from_row)?;
    rows.collect()
}

/// The calls views show (orphan `run_log` calls and, unless asked, calls
/// of dry runs left out), with each call's resolved scope: `ch` and `ca`.
fn calls_from(include_dry_run: bool) -> String {
    format!(
        "FROM tool_calls c LEFT JOIN runs r ON c.run_id <> '' AND r.id = c.run_id \
         WHERE (c.source = 'tool_call' OR r.id IS NOT NULL){}",
        if include_dry_run {
            ""
        } else {
            " AND (r.id IS NULL OR (r.dry_run = 0 AND r.status != 'dry_run'))"
        }
    )
}

/// A call's channel and caller: a `run_log` call's are its run's; a
/// `tool_call`'s are its own, or its stored run's where empty.
const EFF_CHANNEL: &str = "(CASE WHEN c.source = 'run_log' THEN r.channel_id WHEN c.channel_id = '' AND r.id IS NOT NULL THEN r.channel_id ELSE c.channel_id END)";
const EFF_CALLER: &str = "(CASE WHEN c.source = 'run_log' THEN r.caller_id WHEN c.caller_id = '' AND r.id IS NOT NULL THEN r.caller_id ELSE c.caller_id END)";

/// Failing tool calls (status error), with or without a run, grouped by
/// (resolved channel, tool, error type).
pub fn errors(
    conn: &Connection,
    since: Option<Micros>,
    until: Option<Micros>,
    include_dry_run: bool,
) -> rusqlite::Result<Vec<ErrorGroup>> {
    let base = format!(
        "{} AND c.status = 'error' AND c.ts >= ?1 AND c.ts <= ?2",
        calls_from(include_dry_run)
    );
    let lo = since.unwrap_or(i64::MIN);
    let hi = until.unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(&format!(
        "SELECT {EFF_CHANNEL} AS ch, c.tool, c.error_type, COUNT(*), MIN(c.ts), MAX(c.ts), AVG(c.duration_ms) {base} GROUP BY ch, c.tool, c.error_type"
    ))?;
    let mut groups: Vec<ErrorGroup> = st
        .query_map(params![lo, hi], |r| {
            Ok(ErrorGroup {
                channel_id: r.get(0)?,
                tool: r.get(1)?,
                error_type: r.get(2)?,
                count: r.get::<_, i64>(3)? as u64,
                first_ts: r.get(4)?,
                last_ts: r.get(5)?,
                avg_duration_ms: r.get(6)?,
                caller_ids: Vec::new(),
                run_ids: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // The 10 smallest distinct callers and run ids per group, in one
    // ordered pass each.
    for (col, pick) in [(EFF_CALLER, 0), ("c.run_id", 1)] {
        let skip_empty = if pick == 1 { " AND c.run_id <> ''" } else { "" };
        let mut st = conn.prepare_cached(&format!(
            "SELECT DISTINCT {EFF_CHANNEL} AS ch, c.tool, c.error_type, {col} AS v {base}{skip_empty} ORDER BY 1, 2, 3, 4"
        ))?;
        let mut rows = st.query(params![lo, hi])?;
        let at: std::collections::HashMap<(String, String, String), usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    (g.channel_id.clone(), g.tool.clone(), g.error_type.clone()),
                    i,
                )
            })
            .collect();
        while let Some(r) = rows.next()? {
            let key: (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let Some(&i) = at.get(&key) else {
                continue;
            };
            let list = if pick == 0 {
                &mut groups[i].caller_ids
            } else {
                &mut groups[i].run_ids
            };
            if list.len() < ERROR_GROUP_IDS {
                list.push(r.get(3)?);
            }
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.channel_id.cmp(&b.channel_id))
            .then_with(|| a.tool.cmp(&b.tool))
            .then_with(|| a.error_type.cmp(&b.error_type))
    });
    Ok(groups)
}

/// Load every event of a log (in log order) into `conn`, in transactions
/// of `batch` events. Returns the number of events loaded.
pub fn load_log(
    conn: &mut Connection,
    reader: &auditlog::LogReader,
    batch: usize,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let mut n = 0u64;
    let mut loader = Loader::new();
    let mut buf: Vec<Event> = Vec::with_capacity(batch.max(1));
    for item in reader.replay(auditlog::ReplayRange::default()) {
        buf.push(item?.1);
        if buf.len() >= batch.max(1) {
            n += loader.load(conn, &buf)?;
            buf.clear();
        }
    }
    n += loader.load(conn, &buf)?;
    Ok(n)
}

/// Failing `run_log` tool calls grouped by (run's channel, tool, error
/// type), from the executus-style `run_logs` table alone: what the load
/// run's SQLite line answers (its loader fills no `tool_calls` table; its
/// workload has no `tool_call` events, for which both agree).
pub fn errors_of_run_logs(
    conn: &Connection,
    since: Option<Micros>,
    until: Option<Micros>,
    include_dry_run: bool,
) -> rusqlite::Result<Vec<ErrorGroup>> {
    let base = format!(
        "FROM run_logs l JOIN runs r ON r.id = l.run_id \
         WHERE l.event_type = 'tool_call' AND l.ts >= ?1 AND l.ts <= ?2 \
         AND json_valid(l.payload) AND json_type(l.payload) = 'object' \
         AND json_extract(l.payload, '$.status') = 'error'{}",
        if include_dry_run {
            ""
        } else {
            " AND r.dry_run = 0 AND r.status != 'dry_run'"
        }
    );
    let tool = "COALESCE(json_extract(l.payload, '$.tool'), '')";
    let etype = "COALESCE(json_extract(l.payload, '$.error_type'), '')";
    let dur = "CASE WHEN json_type(l.payload, '$.duration_ms') IN ('integer', 'real') THEN json_extract(l.payload, '$.duration_ms') END";
    let lo = since.unwrap_or(i64::MIN);
    let hi = until.unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(&format!(
        "SELECT r.channel_id, {tool} AS t, {etype} AS e, COUNT(*), MIN(l.ts), MAX(l.ts), AVG({dur}) {base} GROUP BY r.channel_id, t, e"
    ))?;
    let mut groups: Vec<ErrorGroup> = st
        .query_map(params![lo, hi], |r| {
            Ok(ErrorGroup {
                channel_id: r.get(0)?,
                tool: r.get(1)?,
                error_type: r.get(2)?,
                count: r.get::<_, i64>(3)? as u64,
                first_ts: r.get(4)?,
                last_ts: r.get(5)?,
                avg_duration_ms: r.get(6)?,
                caller_ids: Vec::new(),
                run_ids: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // The 10 smallest distinct callers and run ids per group, in one
    // ordered pass each.
    for (col, pick) in [("r.caller_id", 0), ("r.id", 1)] {
        let mut st = conn.prepare_cached(&format!(
            "SELECT DISTINCT r.channel_id, {tool} AS t, {etype} AS e, {col} AS v {base} ORDER BY 1, 2, 3, 4"
        ))?;
        let mut rows = st.query(params![lo, hi])?;
        let at: std::collections::HashMap<(String, String, String), usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    (g.channel_id.clone(), g.tool.clone(), g.error_type.clone()),
                    i,
                )
            })
            .collect();
        while let Some(r) = rows.next()? {
            let key: (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let Some(&i) = at.get(&key) else {
                continue;
            };
            let list = if pick == 0 {
                &mut groups[i].caller_ids
            } else {
                &mut groups[i].run_ids
            };
            if list.len() < ERROR_GROUP_IDS {
                list.push(r.get(3)?);
            }
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.channel_id.cmp(&b.channel_id))
            .then_with(|| a.tool.cmp(&b.tool))
            .then_with(|| a.error_type.cmp(&b.error_type))
    });
    Ok(groups)
}

/// A call as SQLite answers it (what the differential test compares).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCall {
    pub lsn: u64,
    pub ts: Micros,
    pub source: String,
    pub run_id: String,
    pub channel_id: String,
    pub caller_id: String,
    pub workspace_id: String,
    pub tool: String,
    pub engine: String,
    pub status: String,
    pub error_type: String,
    pub duration_ms: Option<f64>,
}

fn call_where(f: &CallFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds = vec![calls_from(f.include_dry_run)];
    let mut args: Vec<Value> = Vec::new();
    let ch = format!("{EFF_CHANNEL} = ?");
    let ca = format!("{EFF_CALLER} = ?");
    for (col, v) in [
        ("c.tool = ?", &f.tool),
        ("c.engine = ?", &f.engine),
        (ch.as_str(), &f.channel),
        (ca.as_str(), &f.caller),
        ("c.workspace_id = ?", &f.workspace),
        ("c.status = ?", &f.status),
        ("c.error_type = ?", &f.error_type),
        ("c.run_id = ?", &f.run_id),
    ] {
        if let Some(v) = v {
            conds.push(format!("AND {col}"));
            args.push(Value::Text(v.clone()));
        }
    }
    if let Some(s) = f.since {
        conds.push("AND c.ts >= ?".into());
        args.push(Value::Integer(s));
    }
    if let Some(u) = f.until {
        conds.push("AND c.ts <= ?".into());
        args.push(Value::Integer(u));
    }
    (conds.join(" "), args)
}

/// Tool calls matching `f`, one page: the same rules as `calls`.
pub fn calls(conn: &Connection, f: &CallFilter, page: CallPage) -> rusqlite::Result<Vec<SqlCall>> {
    use rusqlite::types::Value;
    let (mut w, mut args) = call_where(f);
    let newest = page.order == CallOrder::NewestFirst;
    if let Some(c) = page.cursor {
        w.push_str(if newest {
            " AND (c.ts < ? OR (c.ts = ? AND c.lsn < ?))"
        } else {
            " AND (c.ts > ? OR (c.ts = ? AND c.lsn > ?))"
        });
        args.extend([
            Value::Integer(c.ts),
            Value::Integer(c.ts),
            Value::Integer(c.lsn as i64),
        ]);
    }
    let dir = if newest { "DESC" } else { "ASC" };
    args.push(Value::Integer(page.limit.map_or(-1, |l| l as i64)));
    let sql = format!(
        "SELECT c.lsn, c.ts, c.source, c.run_id, {EFF_CHANNEL}, {EFF_CALLER}, c.workspace_id, c.tool, c.engine, c.status, c.error_type, c.duration_ms {w} ORDER BY c.ts {dir}, c.lsn {dir} LIMIT ?"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok(SqlCall {
            lsn: r.get::<_, i64>(0)? as u64,
            ts: r.get(1)?,
            source: r.get(2)?,
            run_id: r.get(3)?,
            channel_id: r.get(4)?,
            caller_id: r.get(5)?,
            workspace_id: r.get(6)?,
            tool: r.get(7)?,
            engine: r.get(8)?,
            status: r.get(9)?,
            error_type: r.get(10)?,
            duration_ms: r.get(11)?,
        })
    })?;
    rows.collect()
}

pub fn count_calls(conn: &Connection, f: &CallFilter) -> rusqlite::Result<u64> {
    let (w, args) = call_where(f);
    let mut st = conn.prepare_cached(&format!("SELECT COUNT(*) {w}"))?;
    st.query_row(params_from_iter(args), |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// Counts per value of `by`, most first, then by value.
pub fn count_calls_by(
    conn: &Connection,
    f: &CallFilter,
    by: CallKey,
) -> rusqlite::Result<Vec<(String, u64)>> {
    let (w, args) = call_where(f);
    let col = match by {
        CallKey::Tool => "c.tool",
        CallKey::Engine => "c.engine",
        CallKey::Channel => EFF_CHANNEL,
        CallKey::Caller => EFF_CALLER,
        CallKey::Workspace => "c.workspace_id",
        CallKey::Status => "c.status",
        CallKey::ErrorType => "c.error_type",
        CallKey::RunId => "c.run_id",
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT {col} AS k, COUNT(*) AS n {w} GROUP BY k ORDER BY n DESC, k ASC"
    ))?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}
