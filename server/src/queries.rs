//! The query calls, answered as JSON text: the socket's CALL methods and
//! the HTTP `GET /v1/...` endpoints both land here. Each runs on a
//! blocking thread (it may read index files).

use std::time::Duration;

use auditlog::event::json::{json_string, write_event};
use auditlog::event::time::to_rfc3339;
use auditlog::fulltext::{Filters, FullTextError};
use auditlog::{Digest, ReplayRange, Run, RunLogEntry};

use crate::api::{ApiError, ApiResult, Kind};
use crate::backend::Backend;
use crate::metrics::get;
use crate::params::{Params, MAX_PAGE};

/// Most events one replay answer holds.
pub const MAX_REPLAY: usize = 100_000;
/// Longest a replay waits for new events.
pub const MAX_WAIT_MS: u64 = 60_000;
/// How long a search waits for the indexer to reach the head, unless
/// asked (`timeout_ms`), and the most it may be asked to.
const SEARCH_CATCH_UP: Duration = Duration::from_secs(10);
const MAX_SEARCH_CATCH_UP_MS: u64 = 600_000;

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let mut s = String::with_capacity(items.len() * 256 + 2);
    s.push('[');
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&f(it));
    }
    s.push(']');
    s
}

fn logs_json(logs: &[RunLogEntry]) -> String {
    list(logs, |l| {
        let mut s = format!(
            "{{\"seq\":{},\"ts\":\"{}\",\"event_type\":",
            l.seq,
            to_rfc3339(l.ts)
        );
        json_string(&l.event_type, &mut s);
        s.push_str(",\"payload\":");
        s.push_str(l.payload.as_str());
        s.push('}');
        s
    })
}

fn runs_json(runs: &[Run]) -> String {
    list(runs, Run::to_json)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(Kind::NotFound, format!("no run {id:?} is stored"))
}

/// Answer one query call.
pub fn call(b: &Backend, method: &str, p: &Params) -> ApiResult<String> {
    let st = b.store();
    Ok(match method {
        "ping" => "{\"ok\":true}".to_string(),
        "get_run" => match st.get_run(&p.str("id")?)? {
            Some(r) => r.to_json(),
            None => "null".to_string(),
        },
        "run_with_logs" | "run" => {
            let id = p.str("id")?;
            match st.get_run(&id)? {
                Some(r) => r.to_json_with_logs(&st.list_logs(&id)?),
                None if method == "run" => return Err(not_found(&id)),
                None => "null".to_string(),
            }
        }
        "list_logs" => logs_json(&st.list_logs(&p.str("id")?)?),
        "list_runs" | "runs" => {
            let mut page = p.page()?;
            page.limit = page.limit.map(|l| l.min(MAX_PAGE));
            runs_json(&st.list_runs(&p.filter()?, page)?)
        }
        "count_runs" | "count" => format!("{{\"count\":{}}}", st.count_runs(&p.filter()?)?),
        "children" => runs_json(&st.children(&p.str("id")?, p.flag("include_dry_run")?)?),
        "chain" => runs_json(&st.parent_chain(&p.str("id")?)?),
        "finished_before" => {
            let before = p
                .instant("before")?
                .ok_or_else(|| ApiError::bad("parameter `before` is required"))?;
            let limit = p.opt_u64("limit")?.map(|l| l as usize);
            runs_json(&st.finished_runs_before_limit(before, limit)?)
        }
        "last_run" => last_run(b, p)?,
        "errors" => list(
            &st.tool_errors(p.instant("since")?, p.instant("until")?)?,
            auditlog::ErrorGroup::to_json,
        ),
        "replay" => replay(b, p, None)?,
        "tail" => {
            let n = p.opt_u64("n")?.unwrap_or(10).min(MAX_REPLAY as u64);
            let r = b.reader();
            let from = r.head().next_lsn.saturating_sub(n).max(r.first_lsn());
            replay(b, p, Some(from))?
        }
        "search" => search(b, p)?,
        "stats" => stats(b)?,
        "verify" => verify(b, p)?,
        "counters" => counters(b),
        "flush" => format!("{{\"durable_lsn\":{}}}", st.flush()?),
        "purge_older_than" | "retain" => retain(b, p)?,
        other => {
            return Err(ApiError::bad(format!(
                "unknown method {other:?} (docs/protocol.md lists them)"
            )))
        }
    })
}

/// Retention while serving (the writer lock is the server's): drop whole
/// sealed segments older than `before` (µs or RFC 3339).
fn retain(b: &Backend, p: &Params) -> ApiResult<String> {
    let cutoff = p
        .instant("before")?
        .ok_or_else(|| ApiError::bad("parameter `before` (an instant) is required"))?;
    let r = b.store().purge_older_than(cutoff)?;
    let mut s = format!(
        "{{\"cutoff\":\"{}\",\"dropped_segments\":[",
        to_rfc3339(cutoff)
    );
    for (i, d) in r.dropped.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"segment\":\"{}\",\"first_lsn\":{},\"events\":{},\"bytes\":{},\"oldest\":\"{}\",\"newest\":\"{}\"}}",
            d.name,
            d.first_lsn,
            d.count,
            d.bytes,
            to_rfc3339(d.min_ts),
            to_rfc3339(d.max_ts)
        ));
    }
    s.push_str(&format!(
        "],\"dropped_events\":{},\"dropped_bytes\":{},\"first_kept_lsn\":{}}}",
        r.events(),
        r.bytes(),
        r.first_kept_lsn
    ));
    Ok(s)
}

fn last_run(b: &Backend, p: &Params) -> ApiResult<String> {
    let skills: Vec<String> = match p.0.get("skills") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad("parameter `skills` must hold strings"))?,
        Some(serde_json::Value::String(s)) => s.split(',').map(str::to_string).collect(),
        _ => return Err(ApiError::bad("parameter `skills` is required (A,B,C)")),
    };
    let found = b
        .store()
        .last_run_per_skill(&skills, p.flag("include_failed")?)?;
    let mut s = String::from("{");
    for (i, (skill, t)) in found.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(skill, &mut s);
        s.push(':');
        match t {
            Some(t) => s.push_str(&format!("\"{}\"", to_rfc3339(*t))),
            None => s.push_str("null"),
        }
    }
    s.push('}');
    Ok(s)
}

/// `{"events":[...],"next_lsn":N}`: events as `replay` prints them.
fn replay(b: &Backend, p: &Params, from: Option<u64>) -> ApiResult<String> {
    let mut reader = b.reader();
    let from_lsn = from.or(p.opt_u64("from_lsn")?);
    let limit = p
        .opt_u64("limit")?
        .map_or(MAX_REPLAY, |l| (l as usize).min(MAX_REPLAY));
    let start = from_lsn.unwrap_or_else(|| reader.first_lsn());
    if let Some(ms) = p.opt_u64("wait_ms")? {
        if reader.head().next_lsn <= start {
            reader.wait_beyond(start, Duration::from_millis(ms.min(MAX_WAIT_MS)))?;
        }
    }
    let range = ReplayRange {
        from_lsn,
        since: p.instant("since")?,
        until: p.instant("until")?,
    };
    let mut s = String::from("{\"events\":[");
    let mut next = start.max(reader.first_lsn());
    for (i, item) in reader.replay(range).take(limit).enumerate() {
        let (lsn, ev) = item?;
        if i > 0 {
            s.push(',');
        }
        write_event(&ev, Some(lsn), &mut s);
        next = lsn + 1;
    }
    s.push_str(&format!("],\"next_lsn\":{next}}}"));
    Ok(s)
}

fn search(b: &Backend, p: &Params) -> ApiResult<String> {
    let query = p
        .opt_str("query")?
        .or(p.opt_str("q")?)
        .ok_or_else(|| ApiError::bad("parameter `q` (the search query) is required"))?;
    let limit = p.opt_u64("limit")?.unwrap_or(10) as usize;
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad("parameter `limit` must be within 1..=10000"));
    }
    let catch_up = p.opt_u64("timeout_ms")?.map_or(SEARCH_CATCH_UP, |ms| {
        Duration::from_millis(ms.min(MAX_SEARCH_CATCH_UP_MS))
    });
    let filters = Filters {
        skill: p.opt_str("skill")?,
        caller: p.opt_str("caller")?,
        channel: p.opt_str("channel")?,
        status: p.opt_str("status")?,
        since: p.instant("since")?,
        until: p.instant("until")?,
    };
    let hits = b
        .search(&query, &filters, limit, catch_up)
        .map_err(|e| match e {
            FullTextError::Query { .. } => ApiError::bad(e.to_string()),
            FullTextError::NotRunning(_) => ApiError::new(
                Kind::Unavailable,
                format!("{e} (the server runs it unless --no-search)"),
            ),
            other => ApiError::failed(other.to_string()),
        })?;
    Ok(list(&hits, |h| h.to_json()))
}

fn stats(b: &Backend) -> ApiResult<String> {
    let st = b.store().stats()?;
    let ts = |t: Option<i64>| t.map_or("null".to_string(), |t| format!("\"{}\"", to_rfc3339(t)));
    let a = b.store().anomalies()?;
    let mut s = format!(
        "{{\"segments\":{},\"sealed_segments\":{},\"events\":{},\"bytes\":{},\"first_lsn\":{},\"head_lsn\":{},\"head_digest\":\"{}\",\"oldest_ts\":{},\"newest_ts\":{},\"dropped_segments\":{},\"dropped_events\":{}",
        st.segments,
        st.sealed_segments,
        st.events,
        st.bytes,
        st.first_lsn,
        st.head_lsn,
        st.head_digest,
        ts(st.oldest_ts),
        ts(st.newest_ts),
        st.dropped_segments,
        st.dropped_events,
    );
    s.push_str(&format!(
        ",\"anomalies\":{{\"duplicate_run_started\":{},\"duplicate_run_finished\":{},\"orphan_logs\":{},\"finishes_without_start\":{}}}",
        a.duplicate_starts, a.duplicate_finishes, a.orphan_logs, a.finishes_without_start
    ));
    for (k, v) in auditlog::fulltext::search_stats(&b.reader()) {
        s.push_str(&format!(",\"{k}\":{v}"));
    }
    s.push('}');
    Ok(s)
}

fn verify(b: &Backend, p: &Params) -> ApiResult<String> {
    let expect = match p.opt_str("expect")? {
        Some(h) => Some(Digest::from_hex(&h).ok_or_else(|| {
            ApiError::bad(format!(
                "parameter `expect` {h:?} is not a 64-digit hex digest"
            ))
        })?),
        None => None,
    };
    b.store().flush()?;
    match auditlog::verify(&b.cfg.dir, expect, |_, _| {}) {
        Ok(r) => {
            let found = match (expect, r.expect_found_at) {
                (Some(_), Some(l)) => format!(",\"expect_found_at_lsn\":{l}"),
                (Some(_), None) => ",\"expect_found_at_lsn\":null".to_string(),
                _ => String::new(),
            };
            Ok(format!(
                "{{\"ok\":{},\"segments\":{},\"events\":{},\"bytes\":{},\"first_lsn\":{},\"head_lsn\":{},\"head_digest\":\"{}\",\"uncommitted_tail_bytes\":{}{found}}}",
                expect.is_none() || r.expect_found_at.is_some(),
                r.segments, r.events, r.bytes, r.first_lsn, r.head_lsn, r.head_digest, r.uncommitted_tail_bytes
            ))
        }
        Err(auditlog::Error::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            let mut s = String::from("{\"ok\":false,\"segment\":");
            json_string(&segment, &mut s);
            s.push_str(&format!(",\"offset\":{offset},\"reason\":"));
            json_string(&reason, &mut s);
            s.push('}');
            Ok(s)
        }
        Err(e) => Err(e.into()),
    }
}

/// The counters as one JSON object (the `counters` call).
pub fn counters(b: &Backend) -> String {
    let c = b.store().log().counters();
    let m = &b.metrics;
    let (search_lag, search_secs) = b.search_lag().unwrap_or((0, 0.0));
    format!(
        "{{\"appended\":{},\"durable_lsn\":{},\"head_lsn\":{},\"queue_depth\":{},\"queue_capacity\":{},\"events_stored\":{},\"duplicates\":{},\"rejected_records\":{},\"busy\":{},\"rate_limited\":{},\"too_large\":{},\"append_failures\":{},\"connections_open\":{},\"index_lag_events\":{},\"search_lag_events\":{search_lag},\"search_lag_seconds\":{search_secs:.3},\"uptime_seconds\":{:.1}}}",
        c.appended,
        c.durable_lsn,
        b.store().log().head().next_lsn,
        c.queue_depth,
        b.cfg.queue_capacity,
        get(&m.events_stored),
        get(&m.duplicates),
        get(&m.rejected_records),
        get(&m.busy),
        get(&m.rate_limited),
        get(&m.too_large),
        get(&m.append_failures),
        get(&m.connections_open),
        b.index_lag(),
        b.started.elapsed().as_secs_f64(),
    )
}
