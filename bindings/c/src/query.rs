//! `auditlog_query`: one JSON request in, one JSON answer out. Each `op`
//! maps to one `AuditStore` query (see the header for the list).

use auditlog::{AuditStore, Filter, Micros, Page, Run, RunLogEntry};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::status::{AuditlogStatus, CallResult, Failure};

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

/// Answer one request.
pub(crate) fn answer(store: &AuditStore, req: Request) -> CallResult<String> {
    Ok(match req {
        Request::GetRun { id } => store.get_run(&id)?.ok_or_else(|| not_found(&id))?.to_json(),
        Request::Logs { id } => logs_json(&store.list_logs(&id)?)?,
        Request::List {
            filter,
            limit,
            offset,
        } => runs_json(&store.list_runs(&filter.into(), Page { limit, offset })?),
        Request::Count { filter } => format!("{{\"count\":{}}}", store.count_runs(&filter.into())?),
        Request::Children {
            id,
            include_dry_run,
        } => runs_json(&store.children(&id, include_dry_run)?),
        Request::Chain { id } => runs_json(&store.parent_chain(&id)?),
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
            serde_json::Value::Object(map).to_string()
        }
        Request::FinishedBefore { before, limit } => {
            runs_json(&store.finished_runs_before(before, limit)?)
        }
        Request::Errors { since, until } => {
            let groups = store.tool_errors(since, until)?;
            let parts: Vec<String> = groups.iter().map(|g| g.to_json()).collect();
            format!("[{}]", parts.join(","))
        }
    })
}
