//! `auditlog_query`: one JSON request in, one JSON answer out. Each `op`
//! maps to one `AuditStore` query (see the header for the list), asked of
//! the log in this process or of `auditlog serve` (served handles).

use auditlog::{Filter, Micros, Page, Run, RunLogEntry};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::status::{AuditlogStatus, CallResult, Failure};
use crate::target::Target;

/// Largest request accepted, in bytes (a list of skills is the only big one).
pub(crate) const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Most skills in one `last_run` request.
pub(crate) const MAX_SKILLS: usize = 10_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterJson {
    skill: Option<String>,
    caller: Option<String>,
    channel: Option<String>,
    status: Option<String>,
    parent: Option<String>,
    #[serde(default)]
    top_level: bool,
    since: Option<Micros>,
    until: Option<Micros>,
    #[serde(default)]
    include_dry_run: bool,
}

impl From<FilterJson> for Filter {
    fn from(f: FilterJson) -> Filter {
        Filter {
            skill: f.skill,
            caller: f.caller,
            channel: f.channel,
            status: f.status,
            parent: f.parent,
            top_level: f.top_level,
            since: f.since,
            until: f.until,
            include_dry_run: f.include_dry_run,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    GetRun {
        id: String,
    },
    Logs {
        id: String,
    },
    List {
        #[serde(default)]
        filter: FilterJson,
        limit: Option<usize>,
        #[serde(default)]
        offset: usize,
    },
    Count {
        #[serde(default)]
        filter: FilterJson,
    },
    Children {
        id: String,
        #[serde(default)]
        include_dry_run: bool,
    },
    Chain {
        id: String,
    },
    LastRun {
        skills: Vec<String>,
        #[serde(default)]
        include_failed: bool,
    },
    FinishedBefore {
        before: Micros,
        limit: Option<usize>,
    },
    Errors {
        since: Option<Micros>,
        until: Option<Micros>,
    },
}

/// How an answer made of runs is encoded.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Encoding {
    /// JSON text (contract run objects).
    #[default]
    Json,
    /// Length-prefixed rows (see the header's `auditlog_query`): what the
    /// Go binding reads, several times cheaper to decode than JSON.
    Rows,
}

/// An answer: JSON text or binary rows.
pub(crate) enum Answer {
    Text(String),
    Bytes(Vec<u8>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings are bounded far below 4 GiB (events are at most 1 MiB).
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Rows: u32 count, then per run its strings (u32 length + UTF-8) id,
/// skill_id, caller_id, channel_id, parent_run_id, inputs (JSON text),
/// status, output, error; i64 started_at, i64 finished_at (µs; i64::MIN
/// while running); u8 dry_run; u64 tool_calls, input_tokens,
/// output_tokens, thinking_tokens; f64 runtime_seconds. Little-endian.
fn runs_rows(runs: &[Run]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + runs.len() * 200);
    out.extend_from_slice(&u32::try_from(runs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for r in runs {
        for s in [
            r.id.as_str(),
            &r.skill_id,
            &r.caller_id,
            &r.channel_id,
            &r.parent_run_id,
            r.inputs.as_str(),
            &r.status,
            &r.output,
            &r.error,
        ] {
            put_str(&mut out, s);
        }
        out.extend_from_slice(&r.started_at.to_le_bytes());
        out.extend_from_slice(&r.finished_at.unwrap_or(i64::MIN).to_le_bytes());
        out.push(u8::from(r.dry_run));
        for v in [
            r.tool_calls,
            r.input_tokens,
            r.output_tokens,
            r.thinking_tokens,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&r.runtime_seconds.to_le_bytes());
    }
    out
}

fn runs_answer(runs: &[Run], enc: Encoding) -> Answer {
    match enc {
        Encoding::Json => Answer::Text(runs_json(runs)),
        Encoding::Rows => Answer::Bytes(runs_rows(runs)),
    }
}

fn runs_json(runs: &[Run]) -> String {
    let mut s = String::with_capacity(2 + runs.len() * 320);
    s.push('[');
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&r.to_json());
    }
    s.push(']');
    s
}

fn instant(ts: Micros) -> String {
    let mut s = String::with_capacity(27);
    auditlog::event::time::format_rfc3339(ts, &mut s);
    s
}

#[derive(serde::Serialize)]
struct LogJson<'a> {
    seq: u64,
    ts: String,
    event_type: &'a str,
    payload: &'a RawValue,
}

fn logs_json(logs: &[RunLogEntry]) -> CallResult<String> {
    let mut out = Vec::with_capacity(logs.len());
    for l in logs {
        let payload: &RawValue = serde_json::from_str(l.payload.as_str())
            .map_err(|e| Failure::new(AuditlogStatus::Internal, format!("stored payload: {e}")))?;
        out.push(LogJson {
            seq: l.seq,
            ts: instant(l.ts),
            event_type: &l.event_type,
            payload,
        });
    }
    serde_json::to_string(&out).map_err(|e| Failure::new(AuditlogStatus::Internal, e.to_string()))
}

fn not_found(id: &str) -> Failure {
    Failure::new(AuditlogStatus::NotFound, format!("not found: run {id:?}"))
}

/// Answer one request. `enc` applies to answers made of runs (`get_run`
/// answers one row).
pub(crate) fn answer(store: &Target, req: Request, enc: Encoding) -> CallResult<Answer> {
    let text = |s: String| Ok(Answer::Text(s));
    match req {
        Request::GetRun { id } => {
            let run = store.get_run(&id)?.ok_or_else(|| not_found(&id))?;
            match enc {
                Encoding::Json => text(run.to_json()),
                Encoding::Rows => Ok(Answer::Bytes(runs_rows(std::slice::from_ref(&run)))),
            }
        }
        Request::Logs { id } => text(logs_json(&store.list_logs(&id)?)?),
        Request::List {
            filter,
            limit,
            offset,
        } => Ok(runs_answer(
            &store.list_runs(&filter.into(), Page { limit, offset })?,
            enc,
        )),
        Request::Count { filter } => text(format!(
            "{{\"count\":{}}}",
            store.count_runs(&filter.into())?
        )),
        Request::Children {
            id,
            include_dry_run,
        } => Ok(runs_answer(&store.children(&id, include_dry_run)?, enc)),
        Request::Chain { id } => Ok(runs_answer(&store.parent_chain(&id)?, enc)),
        Request::LastRun {
            skills,
            include_failed,
        } => {
            if skills.len() > MAX_SKILLS {
                return Err(Failure::invalid(format!(
                    "last_run: {} skills; the limit is {MAX_SKILLS}",
                    skills.len()
                )));
            }
            let map: serde_json::Map<String, serde_json::Value> = store
                .last_run_per_skill(&skills, include_failed)?
                .into_iter()
                .map(|(k, v)| (k, v.map_or(serde_json::Value::Null, |t| instant(t).into())))
                .collect();
            text(serde_json::Value::Object(map).to_string())
        }
        Request::FinishedBefore { before, limit } => Ok(runs_answer(
            &store.finished_runs_before(before, limit)?,
            enc,
        )),
        Request::Errors { since, until } => {
            let groups = store.tool_errors(since, until)?;
            let parts: Vec<String> = groups.iter().map(|g| g.to_json()).collect();
            text(format!("[{}]", parts.join(",")))
        }
    }
}

/// Parse a request: `{"op": ..., keys..., "encoding": "json" | "rows"}`.
pub(crate) fn parse_request(bytes: &[u8]) -> CallResult<(Request, Encoding)> {
    let bad = |e: serde_json::Error| Failure::invalid(format!("request: {e}"));
    let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(bad)?;
    let enc = match v.as_object_mut().and_then(|o| o.remove("encoding")) {
        None => Encoding::default(),
        Some(e) => serde_json::from_value(e).map_err(bad)?,
    };
    Ok((serde_json::from_value(v).map_err(bad)?, enc))
}
