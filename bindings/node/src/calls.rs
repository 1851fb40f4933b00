//! Tool calls as records of their own (docs/tool-calls.md): the filter of
//! `calls`, `countCalls` and `countCallsBy` (JSON from TypeScript,
//! camelCase, unknown keys an error), and their answers as JSON text, the
//! same from an open store and from a served one.
//!
//! A page is `{"calls":[...],"cursor":"TS,LSN"|null}`: each call as
//! `auditlog calls --json` prints it (docs/tool-calls.md); the cursor, set
//! when the page is full (`limit` calls), continues after its last call.
//! Counts by a key are `[{"value":...,"count":N},...]`, most first.

use auditlog::event::json::json_string;
use auditlog::event::time::parse_instant;
use auditlog::query::{Call, CallCursor, CallFilter, CallKey, CallOrder, CallPage};
use serde::Deserialize;
use serde_json::Value;

use crate::errors::{self, Code};
use crate::options::micros;

/// `calls(filter)` and `countCalls(filter)` options, instants in µs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallOptions {
    tool: Option<String>,
    engine: Option<String>,
    /// The session or channel (the call's own, else its run's).
    #[serde(alias = "session")]
    channel: Option<String>,
    /// The caller or agent (the call's own, else its run's).
    #[serde(alias = "agent")]
    caller: Option<String>,
    workspace: Option<String>,
    status: Option<String>,
    error_type: Option<String>,
    run_id: Option<String>,
    since: Option<f64>,
    until: Option<f64>,
    #[serde(default)]
    include_dry_run: bool,
    // The page (`calls` only).
    #[serde(default)]
    oldest_first: bool,
    limit: Option<f64>,
    cursor: Option<String>,
}

impl CallOptions {
    fn parse(what: &str, json: &str) -> napi::Result<CallOptions> {
        serde_json::from_str(json).map_err(|e| errors::invalid(format!("{what}: {e}")))
    }

    fn filter(self) -> napi::Result<(CallFilter, CallPage)> {
        let limit = match self.limit {
            None => None,
            Some(l) if l.is_finite() && l >= 0.0 && l.fract() == 0.0 && l <= 4_294_967_295.0 => {
                Some(l as usize)
            }
            Some(l) => {
                return Err(errors::invalid(format!(
                    "limit: {l} is not a whole number within 0..4294967295"
                )))
            }
        };
        let cursor = match &self.cursor {
            None => None,
            Some(c) => {
                Some(CallCursor::parse(c).map_err(|e| errors::invalid(format!("cursor: {e}")))?)
            }
        };
        let page = CallPage {
            limit,
            cursor,
            order: if self.oldest_first {
                CallOrder::OldestFirst
            } else {
                CallOrder::NewestFirst
            },
        };
        let f = CallFilter {
            tool: self.tool,
            engine: self.engine,
            channel: self.channel,
            caller: self.caller,
            workspace: self.workspace,
            status: self.status,
            error_type: self.error_type,
            run_id: self.run_id,
            since: micros("since", self.since)?,
            until: micros("until", self.until)?,
            include_dry_run: self.include_dry_run,
        };
        Ok((f, page))
    }
}

/// The filter and page of `calls(filter)`.
pub fn page_query(json: &str) -> napi::Result<(CallFilter, CallPage)> {
    CallOptions::parse("calls", json)?.filter()
}

/// The filter of `countCalls` and `countCallsBy` (no page options).
pub fn count_filter(json: &str) -> napi::Result<CallFilter> {
    let o = CallOptions::parse("countCalls", json)?;
    if o.oldest_first || o.limit.is_some() || o.cursor.is_some() {
        return Err(errors::invalid(
            "countCalls: limit, cursor and oldestFirst belong to calls() only",
        ));
    }
    Ok(o.filter()?.0)
}

/// The key of `countCallsBy` (`tool`, `engine`, `session`/`channel`,
/// `agent`/`caller`, `workspace`, `status`, `errorType`, `runId`, or the
/// output names `channel_id`, ...).
pub fn key(by: &str) -> napi::Result<CallKey> {
    let by = match by {
        "errorType" => "error_type",
        "runId" => "run_id",
        other => other,
    };
    CallKey::parse(by).map_err(|e| errors::invalid(format!("countCallsBy: {e}")))
}

fn page_json(calls: impl Iterator<Item = String>, cursor: Option<CallCursor>) -> String {
    let mut out = String::from("{\"calls\":[");
    for (i, c) in calls.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&c);
    }
    out.push_str("],\"cursor\":");
    match cursor {
        Some(c) => json_string(&c.to_string(), &mut out),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// Whether a page of `n` calls may have more after it.
fn full(page: &CallPage, n: usize) -> bool {
    n > 0 && page.limit == Some(n)
}

/// An open store's page as JSON.
pub fn page(calls: &[Call], page: &CallPage) -> String {
    let cursor = if full(page, calls.len()) {
        calls.last().map(Call::cursor)
    } else {
        None
    };
    page_json(calls.iter().map(Call::to_json), cursor)
}

/// A served store's page (the server's JSON array of calls) as JSON.
pub fn served_page(v: &Value, page: &CallPage) -> napi::Result<String> {
    let bad =
        |why: &str| errors::coded(Code::Internal, format!("calls: the server's answer {why}"));
    let calls = v.as_array().ok_or_else(|| bad("is not an array"))?;
    let cursor = match calls.last() {
        Some(last) if full(page, calls.len()) => {
            let ts = last
                .get("ts")
                .and_then(Value::as_str)
                .and_then(|t| parse_instant(t).ok())
                .ok_or_else(|| bad("has a call without a ts"))?;
            let lsn = last
                .get("lsn")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("has a call without an lsn"))?;
            Some(CallCursor { ts, lsn })
        }
        _ => None,
    };
    Ok(page_json(calls.iter().map(Value::to_string), cursor))
}

/// Counts by a key as `[{"value":...,"count":N},...]`.
pub fn counts(groups: &[(String, u64)]) -> String {
    crate::json_out::array(groups, |(v, n), out| {
        out.push_str("{\"value\":");
        json_string(v, out);
        out.push_str(&format!(",\"count\":{n}}}"));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_aliases_and_refuse_unknown_keys() {
        let (f, p) = page_query(
            r#"{"session":"s","agent":"a","errorType":"t","runId":"r","limit":2,"cursor":"5,7","oldestFirst":true}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.channel.as_deref(), Some("s"));
        assert_eq!(f.caller.as_deref(), Some("a"));
        assert_eq!(f.error_type.as_deref(), Some("t"));
        assert_eq!(f.run_id.as_deref(), Some("r"));
        assert_eq!(p.limit, Some(2));
        assert_eq!(p.cursor, Some(CallCursor { ts: 5, lsn: 7 }));
        assert_eq!(p.order, CallOrder::OldestFirst);
        assert!(page_query(r#"{"colour":"red"}"#).is_err());
        assert!(page_query(r#"{"session":"a","channel":"b"}"#).is_err());
        assert!(page_query(r#"{"limit":1.5}"#).is_err());
        assert!(page_query(r#"{"cursor":"nope"}"#).is_err());
        assert!(count_filter(r#"{"limit":1}"#).is_err());
        assert!(key("errorType").is_ok() && key("session").is_ok() && key("colour").is_err());
    }
}
