//! The tool-call benchmark (`auditlog bench --calls`): a gateway's
//! tool-call log (`tool_call` events outside any run, by session, engine,
//! tool, agent and workspace, some failing) written to auditlog and to
//! SQLite with the gateways' own table and indexes (`tool_calls`:
//! (session, ts), (engine, tool, ts), (tool, ts), (agent, ts),
//! (workspace, ts), (status, ts)); then the questions those gateways ask,
//! timed on both with the same parameters, their answers compared.
//!
//! SQLite runs each question as the gateway's own SQL against its table
//! (no join: these calls have no run); auditlog answers through `calls`
//! with the contract's full rules (a call's scope resolved, dry runs and
//! orphans left out), materializing every field of every call.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use auditlog::query::{CallFilter, CallKey, CallPage, Engine, IndexOnSeal};
use auditlog::{Config, Durability, Event, Json, Log, Micros, ToolCall};

use crate::queries::{time_kind, KindTiming};
use crate::sqlite_baseline as sq;
use crate::{num, Lat};

const HOUR: Micros = 3_600_000_000;
const DAY: Micros = 86_400_000_000;
const TOOLS: &[&str] = &[
    "fs.read",
    "fs.write",
    "http.get",
    "http.post",
    "shell.exec",
    "sql.query",
    "browser.open",
    "vector.search",
    "mail.send",
    "kv.get",
];
const ENGINES: &[&str] = &["openai", "anthropic", "ollama"];
const ERRORS: &[&str] = &["timeout", "http_5xx", "denied", "not_found", "exit_nonzero"];

/// The workload and the measurement.
#[derive(Debug, Clone)]
pub struct CallsSpec {
    pub events: u64,
    pub days: u32,
    pub start_ts: Micros,
    pub sessions: u32,
    pub agents: u32,
    pub workspaces: u32,
    pub fail_rate: f64,
    pub seed: u64,
    /// Events per append (auditlog) and per transaction (SQLite).
    pub batch: usize,
    /// Time budget per question and system.
    pub query_ms: u64,
    /// Also load SQLite and time it (the comparison).
    pub sqlite: bool,
    /// Use the data an earlier run with the same workload left in the
    /// folder (`auditlog/`, `calls.sqlite`) instead of loading it again;
    /// what is missing is loaded. Ingest figures only for what was loaded.
    pub reuse: bool,
    /// Only these questions (by name); empty: all of them.
    pub only: Vec<String>,
}

impl Default for CallsSpec {
    fn default() -> Self {
        CallsSpec {
            events: 1_000_000,
            days: 30,
            // 2026-10-24T00:00:00Z: 30 days ending on 2026-11-23.
            start_ts: 1_792_828_800_000_000,
            sessions: 50_000,
            agents: 2_000,
            workspaces: 50,
            fail_rate: 0.05,
            seed: 42,
            batch: 1000,
            query_ms: 3000,
            sqlite: true,
            reuse: false,
            only: Vec::new(),
        }
    }
}

impl CallsSpec {
    /// Tool call number `i` (deterministic), in time order.
    pub fn event(&self, i: u64) -> Event {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let span = self.days.max(1) as i64 * DAY;
        let step = (span / self.events.max(1) as i64).max(1);
        let ts = self.start_ts + i as i64 * step + rng.i64(0..step);
        let fails = rng.f64() < self.fail_rate;
        let tool = TOOLS[rng.usize(..TOOLS.len())];
        let c = ToolCall {
            call_id: format!("c-{i}"),
            channel_id: format!("sess-{}", rng.u32(..self.sessions.max(1))),
            caller_id: format!("agent-{}", rng.u32(..self.agents.max(1))),
            workspace_id: format!("ws-{}", rng.u32(..self.workspaces.max(1))),
            request_id: format!("req-{:x}", rng.u64(..)),
            tool: tool.into(),
            engine: ENGINES[rng.usize(..ENGINES.len())].into(),
            status: if fails { "error" } else { "ok" }.into(),
            error_type: if fails {
                ERRORS[rng.usize(..ERRORS.len())].into()
            } else {
                String::new()
            },
            error: if fails {
                "upstream failed".into()
            } else {
                String::new()
            },
            duration_ms: Some(f64::from(rng.u32(1..5_000))),
            input_bytes: Some(rng.u64(10..4_000)),
            result_bytes: Some(if fails { 0 } else { rng.u64(0..100_000) }),
            exit_code: None,
            http_status: Some(if fails { 502 } else { 200 }),
            input_hash: format!("sha256:{:016x}", rng.u64(..)),
            args_summary: format!("{tool} /items/{}", rng.u32(..100_000)),
            payload: Json::null(),
        };
        Event::tool_call("", ts, c)
    }
}

/// One question's figures on both systems.
#[derive(Debug, Clone)]
pub struct Question {
    pub name: &'static str,
    pub about: &'static str,
    pub auditlog: Option<Lat>,
    pub sqlite: Option<Lat>,
    /// Rows (or groups) per answer, averaged over auditlog's runs.
    pub avg_rows: f64,
    pub answers_match: Option<bool>,
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub struct CallsReport {
    pub events: u64,
    pub auditlog_ingest_eps: f64,
    pub auditlog_index_s: f64,
    pub auditlog_bytes: u64,
    pub sqlite_ingest_eps: Option<f64>,
    pub sqlite_bytes: Option<u64>,
    pub questions: Vec<Question>,
}

/// The questions, in report order.
pub const QUESTIONS: &[(&str, &str)] = &[
    ("session", "every call of one session, newest first"),
    ("tool_1h", "calls of one tool in one hour, newest first"),
    ("errors_1d", "calls with an error in one day, newest first"),
    (
        "errors_by_tool",
        "count of calls with an error, by tool (whole log)",
    ),
    ("agent_100", "newest 100 calls of one agent"),
    (
        "engine_tool_1d",
        "count of one engine's calls of one tool in one day",
    ),
];

/// Parameters drawn from the workload.
struct Params {
    sessions: Vec<String>,
    agents: Vec<String>,
    tools: Vec<String>,
    hours: Vec<Micros>,
    days: Vec<Micros>,
}

impl Params {
    fn new(spec: &CallsSpec, n: usize) -> Params {
        let mut rng = fastrand::Rng::with_seed(7);
        let span = spec.days.max(1) as i64 * DAY;
        Params {
            sessions: (0..n)
                .map(|_| format!("sess-{}", rng.u32(..spec.sessions.max(1))))
                .collect(),
            agents: (0..n)
                .map(|_| format!("agent-{}", rng.u32(..spec.agents.max(1))))
                .collect(),
            tools: (0..n)
                .map(|_| TOOLS[rng.usize(..TOOLS.len())].to_string())
                .collect(),
            hours: (0..n)
                .map(|_| spec.start_ts + rng.i64(0..(span - HOUR).max(1)))
                .collect(),
            days: (0..n)
                .map(|_| spec.start_ts + rng.i64(0..spec.days.max(1) as i64) * DAY)
                .collect(),
        }
    }
}

/// auditlog's answer to question `q` with parameter set `i`: the LSNs of
/// the calls (or the counts, flattened) in answer order.
fn ask_auditlog(e: &mut Engine, p: &Params, q: &str, i: usize) -> auditlog::Result<Vec<u64>> {
    let at = |v: &[String]| v[i % v.len()].clone();
    let lsns = |calls: Vec<auditlog::Call>| calls.iter().map(|c| c.lsn).collect();
    Ok(match q {
        "session" => lsns(e.calls(
            &CallFilter {
                channel: Some(at(&p.sessions)),
                ..CallFilter::default()
            },
            CallPage::default(),
        )?),
        "tool_1h" => {
            let t = p.hours[i % p.hours.len()];
            lsns(e.calls(
                &CallFilter {
                    tool: Some(at(&p.tools)),
                    since: Some(t),
                    until: Some(t + HOUR - 1),
                    ..CallFilter::default()
                },
                CallPage::default(),
            )?)
        }
        "errors_1d" => {
            let d = p.days[i % p.days.len()];
            lsns(e.calls(
                &CallFilter {
                    status: Some("error".into()),
                    since: Some(d),
                    until: Some(d + DAY - 1),
                    ..CallFilter::default()
                },
                CallPage::default(),
            )?)
        }
        "errors_by_tool" => {
            let f = CallFilter {
                status: Some("error".into()),
                ..CallFilter::default()
            };
            e.count_calls_by(&f, CallKey::Tool)?
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        }
        "agent_100" => lsns(e.calls(
            &CallFilter {
                caller: Some(at(&p.agents)),
                ..CallFilter::default()
            },
            CallPage {
                limit: Some(100),
                ..CallPage::default()
            },
        )?),
        "engine_tool_1d" => {
            let d = p.days[i % p.days.len()];
            vec![e.count_calls(&CallFilter {
                engine: Some(ENGINES[i % ENGINES.len()].into()),
                tool: Some(at(&p.tools)),
                since: Some(d),
                until: Some(d + DAY - 1),
                ..CallFilter::default()
            })?]
        }
        _ => Vec::new(),
    })
}

/// A row as the gateway reads it (every column, as its `SELECT *` does).
fn row_lsn(r: &rusqlite::Row<'_>) -> rusqlite::Result<u64> {
    // Read every column, as materializing the row costs.
    for c in 1..22 {
        let _: rusqlite::types::Value = r.get(c)?;
    }
    Ok(r.get::<_, i64>(0)? as u64)
}

const ALL_COLS: &str = "lsn, ts, source, run_id, call_id, channel_id, caller_id, workspace_id, request_id, tool, engine, status, error_type, error, duration_ms, input_bytes, result_bytes, exit_code, http_status, input_hash, args_summary, payload";

/// SQLite's answer: the gateway's own SQL on its table.
fn ask_sqlite(c: &Connection, p: &Params, q: &str, i: usize) -> rusqlite::Result<Vec<u64>> {
    let at = |v: &[String]| v[i % v.len()].clone();
    let rows = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<Vec<u64>> {
        let mut st = c.prepare_cached(sql)?;
        let r = st.query_map(args, row_lsn)?;
        r.collect()
    };
    Ok(match q {
        "session" => rows(
            &format!("SELECT {ALL_COLS} FROM tool_calls WHERE channel_id = ?1 ORDER BY ts DESC, lsn DESC"),
            params![at(&p.sessions)],
        )?,
        "tool_1h" => {
            let t = p.hours[i % p.hours.len()];
            rows(
                &format!("SELECT {ALL_COLS} FROM tool_calls WHERE tool = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts DESC, lsn DESC"),
                params![at(&p.tools), t, t + HOUR - 1],
            )?
        }
        "errors_1d" => {
            let d = p.days[i % p.days.len()];
            rows(
                &format!("SELECT {ALL_COLS} FROM tool_calls WHERE status = 'error' AND ts >= ?1 AND ts <= ?2 ORDER BY ts DESC, lsn DESC"),
                params![d, d + DAY - 1],
            )?
        }
        "errors_by_tool" => {
            let mut st = c.prepare_cached(
                "SELECT tool, COUNT(*) AS n FROM tool_calls WHERE status = 'error' GROUP BY tool ORDER BY n DESC, tool ASC",
            )?;
            let r = st.query_map([], |r| Ok(r.get::<_, i64>(1)? as u64))?;
            r.collect::<rusqlite::Result<_>>()?
        }
        "agent_100" => rows(
            &format!("SELECT {ALL_COLS} FROM tool_calls WHERE caller_id = ?1 ORDER BY ts DESC, lsn DESC LIMIT 100"),
            params![at(&p.agents)],
        )?,
        "engine_tool_1d" => {
            let d = p.days[i % p.days.len()];
            let mut st = c.prepare_cached(
                "SELECT COUNT(*) FROM tool_calls WHERE engine = ?1 AND tool = ?2 AND ts >= ?3 AND ts <= ?4",
            )?;
            vec![st.query_row(
                params![ENGINES[i % ENGINES.len()], at(&p.tools), d, d + DAY - 1],
                |r| r.get::<_, i64>(0),
            )? as u64]
        }
        _ => Vec::new(),
    })
}

/// Append the workload to a new log at `log_dir` (durable group commit,
/// indexes built as segments seal) and note the ingest figures.
fn load_auditlog(
    log_dir: &Path,
    spec: &CallsSpec,
    rep: &mut CallsReport,
    note: &dyn Fn(&str),
) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: auditlog::Error| format!("{what}: {err}")
    };
    // auditlog: durable group commit, indexes built as segments seal.
    note(&format!(
        "auditlog: appending {} tool calls ...",
        spec.events
    ));
    let mut cfg = Config::new(log_dir);
    cfg.durability = Durability::EveryBatch;
    let on_seal = IndexOnSeal::hook(&mut cfg);
    let log = Log::open(cfg).map_err(e("opening the log"))?;
    let indexer = on_seal.start(&log).map_err(e("starting the indexer"))?;
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(spec.batch);
    let mut receipts = std::collections::VecDeque::new();
    for i in 0..spec.events {
        batch.push(spec.event(i));
        if batch.len() >= spec.batch || i + 1 == spec.events {
            receipts.push_back(log.append_batch(&batch).map_err(e("appending"))?);
            batch.clear();
            while receipts.len() > 64 {
                if let Some(r) = receipts.pop_front() {
                    r.wait().map_err(e("durable"))?;
                }
            }
        }
    }
    for r in receipts {
        r.wait().map_err(e("durable"))?;
    }
    log.flush().map_err(e("flushing"))?;
    rep.auditlog_ingest_eps = spec.events as f64 / t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let engine = indexer.engine().clone();
    indexer.finish().map_err(e("indexing"))?;
    rep.auditlog_index_s = t1.elapsed().as_secs_f64();
    log.close().map_err(e("closing"))?;
    drop(engine);
    Ok(())
}

/// Read every file under `p` once (into the page cache).
fn warm(p: &Path) {
    let mut buf = vec![0u8; 1 << 20];
    let mut read = |f: &Path| {
        if let Ok(mut h) = std::fs::File::open(f) {
            use std::io::Read;
            while h.read(&mut buf).is_ok_and(|n| n > 0) {}
        }
    };
    match std::fs::read_dir(p) {
        Ok(rd) => {
            for d in rd.flatten() {
                let f = d.path();
                if f.is_dir() {
                    warm(&f);
                } else {
                    read(&f);
                }
            }
        }
        Err(_) => read(p),
    }
}

fn dir_size(p: &Path) -> u64 {
    crate::dir_bytes(p, None)
}

/// Write the workload to auditlog (and SQLite) under `dir`, then time every
/// question on both. `note` is told what is happening.
pub fn measure(dir: &Path, spec: &CallsSpec, note: &dyn Fn(&str)) -> Result<CallsReport, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: auditlog::Error| format!("{what}: {err}")
    };
    let mut rep = CallsReport {
        events: spec.events,
        ..CallsReport::default()
    };
    let log_dir = dir.join("auditlog");
    if !(spec.reuse && log_dir.join("MANIFEST").exists()) {
        load_auditlog(&log_dir, spec, &mut rep, note)?;
    } else {
        note("auditlog: using the log an earlier run left");
    }
    rep.auditlog_bytes = dir_size(&log_dir);
    // Queries from a read-only engine over the closed log: the command
    // line's path (index files mapped, nothing rebuilt).
    let mut eng = Engine::open(&log_dir).map_err(e("opening read-only"))?;
    eng.count_calls(&CallFilter::default())
        .map_err(e("warming"))?;

    let db_path = dir.join("calls.sqlite");
    let reuse_db = spec.sqlite && spec.reuse && db_path.exists();
    let db = if reuse_db {
        note("sqlite: using the database an earlier run left");
        let conn = sq::open(Some(&db_path)).map_err(|x| format!("sqlite: {x}"))?;
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM tool_calls", [], |r| r.get(0))
            .map_err(|x| format!("sqlite: {x}"))?;
        if n as u64 != spec.events {
            return Err(format!(
                "{} holds {n} calls, the workload {}: not the same run",
                db_path.display(),
                spec.events
            ));
        }
        rep.sqlite_bytes = Some(std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0));
        Some(conn)
    } else if spec.sqlite {
        note("sqlite: inserting the same calls (tool_calls with the gateways' indexes) ...");
        let mut conn = sq::open(Some(&db_path)).map_err(|x| format!("sqlite: {x}"))?;
        let mut loader = sq::Loader::new();
        let t = Instant::now();
        let mut buf = Vec::with_capacity(spec.batch * 10);
        for i in 0..spec.events {
            buf.push(spec.event(i));
            if buf.len() >= spec.batch * 10 || i + 1 == spec.events {
                loader
                    .load(&mut conn, &buf)
                    .map_err(|x| format!("sqlite insert: {x}"))?;
                buf.clear();
            }
        }
        rep.sqlite_ingest_eps = Some(spec.events as f64 / t.elapsed().as_secs_f64());
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
            .map_err(|x| format!("sqlite: {x}"))?;
        rep.sqlite_bytes = Some(
            std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0)
                + std::fs::metadata(db_path.with_extension("sqlite-wal"))
                    .map(|m| m.len())
                    .unwrap_or(0),
        );
        Some(conn)
    } else {
        None
    };

    // Both stores' files read once, so that neither answers from disk
    // what the other answers from the page cache (the figures are warm).
    note("reading both stores' files once (warm page cache) ...");
    warm(&log_dir);
    if db.is_some() {
        warm(&db_path);
    }

    let p = Params::new(spec, 200);
    let budget = Duration::from_millis(spec.query_ms);
    for (name, about) in QUESTIONS {
        if !spec.only.is_empty() && !spec.only.iter().any(|o| o == name) {
            continue;
        }
        note(&format!("question {name} ..."));
        let mut ours_answers = Vec::new();
        let ours: KindTiming = time_kind(budget, 5, 200, |i| {
            let a = ask_auditlog(&mut eng, &p, name, i)?;
            let n = a.len() as u64;
            ours_answers.push(a);
            Ok::<u64, auditlog::Error>(n)
        })
        .map_err(e(name))?;
        let mut theirs = None;
        let mut matches = None;
        if let Some(db) = &db {
            let mut their_answers = Vec::new();
            let t = time_kind(budget, 5, 200, |i| {
                let a = ask_sqlite(db, &p, name, i)?;
                let n = a.len() as u64;
                their_answers.push(a);
                Ok::<u64, rusqlite::Error>(n)
            })
            .map_err(|x| format!("sqlite {name}: {x}"))?;
            matches = Some(ours_answers.iter().zip(&their_answers).all(|(a, b)| a == b));
            theirs = t.lat();
        }
        let avg_rows = if ours.sizes.is_empty() {
            0.0
        } else {
            ours.sizes.iter().sum::<u64>() as f64 / ours.sizes.len() as f64
        };
        rep.questions.push(Question {
            name,
            about,
            auditlog: ours.lat(),
            sqlite: theirs,
            avg_rows,
            answers_match: matches,
        });
    }
    Ok(rep)
}

impl CallsReport {
    /// A table for people.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "tool calls: {} events; auditlog ingest {:.0} ev/s (durable, group commit), index catch-up {:.1} s, {} MB on disk",
            self.events,
            self.auditlog_ingest_eps,
            self.auditlog_index_s,
            self.auditlog_bytes / 1_000_000
        );
        if let (Some(eps), Some(b)) = (self.sqlite_ingest_eps, self.sqlite_bytes) {
            s.push_str(&format!(
                "; SQLite (WAL, synchronous=NORMAL, 7 indexes) {eps:.0} ev/s, {} MB",
                b / 1_000_000
            ));
        }
        s.push_str("\n\nquestion         rows    auditlog p50 / p99 ms    SQLite p50 / p99 ms    SQLite/auditlog (p50)  same answers\n");
        for q in &self.questions {
            let lat = |l: &Option<Lat>| {
                l.map_or("-".to_string(), |l| format!("{:.3} / {:.3}", l.p50, l.p99))
            };
            let ratio = match (q.auditlog, q.sqlite) {
                (Some(a), Some(b)) if a.p50 > 0.0 => format!("{:.1}x", b.p50 / a.p50),
                _ => "-".into(),
            };
            s.push_str(&format!(
                "{:<16} {:>7.0}  {:>22}  {:>22}  {:>10}  {}\n",
                q.name,
                q.avg_rows,
                lat(&q.auditlog),
                lat(&q.sqlite),
                ratio,
                q.answers_match
                    .map_or("-", |m| if m { "yes" } else { "NO" })
            ));
        }
        s
    }

    pub fn to_json(&self) -> String {
        let lat = |l: &Option<Lat>| l.map_or("null".to_string(), |l| l.to_json());
        let qs: Vec<String> = self
            .questions
            .iter()
            .map(|q| {
                format!(
                    "{{\"name\":\"{}\",\"about\":\"{}\",\"rows\":{},\"auditlog\":{},\"sqlite\":{},\"answers_match\":{}}}",
                    q.name,
                    q.about,
                    num(q.avg_rows),
                    lat(&q.auditlog),
                    lat(&q.sqlite),
                    q.answers_match.map_or("null".to_string(), |m| m.to_string())
                )
            })
            .collect();
        format!(
            "{{\"events\":{},\"auditlog_ingest_eps\":{},\"auditlog_index_s\":{},\"auditlog_bytes\":{},\"sqlite_ingest_eps\":{},\"sqlite_bytes\":{},\"questions\":[{}]}}",
            self.events,
            num(self.auditlog_ingest_eps),
            num(self.auditlog_index_s),
            self.auditlog_bytes,
            self.sqlite_ingest_eps.map_or("null".into(), num),
            self.sqlite_bytes.map_or("null".into(), |b| b.to_string()),
            qs.join(",")
        )
    }
}
