//! Parameters of a query, from a socket CALL's JSON object or an HTTP
//! query string, read the same way: numbers may come as JSON numbers or as
//! strings, flags as `true`, `"true"`, `"1"` or an empty value.

use auditlog::event::time::parse_instant;
use auditlog::{Filter, Micros, Page};
use serde_json::{Map, Value};

use crate::api::{ApiError, ApiResult};

/// Longest page a query answers when none is asked (and the cap on any).
pub const MAX_PAGE: usize = 100_000;

pub struct Params(pub Map<String, Value>);

fn percent_decode(s: &str) -> ApiResult<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad(format!("bad percent escape in {s:?}")))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad(format!("{s:?} is not UTF-8 once decoded")))
}

/// Decode one percent-encoded path segment.
pub fn decode_segment(s: &str) -> ApiResult<String> {
    percent_decode(&s.replace('+', "%2B"))
}

impl Params {
    pub fn from_query(q: Option<&str>) -> ApiResult<Params> {
        let mut m = Map::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(percent_decode(k)?, Value::String(percent_decode(v)?));
        }
        Ok(Params(m))
    }

    pub fn from_json(v: Value) -> ApiResult<Params> {
        match v {
            Value::Object(m) => Ok(Params(m)),
            _ => Err(ApiError::bad("the call's body must be a JSON object")),
        }
    }

    pub fn insert(&mut self, k: &str, v: impl Into<Value>) {
        self.0.insert(k.to_string(), v.into());
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, k: &str) -> ApiResult<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad(format!(
                "parameter `{k}` must be a string, not {other}"
            ))),
        }
    }

    pub fn str(&self, k: &str) -> ApiResult<String> {
        self.opt_str(k)?
            .ok_or_else(|| ApiError::bad(format!("parameter `{k}` is required")))
    }

    pub fn flag(&self, k: &str) -> ApiResult<bool> {
        match self.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.as_str() {
                "" | "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(ApiError::bad(format!(
                    "parameter `{k}` must be true or false, not {s:?}"
                ))),
            },
            Some(other) => Err(ApiError::bad(format!(
                "parameter `{k}` must be true or false, not {other}"
            ))),
        }
    }

    pub fn opt_u64(&self, k: &str) -> ApiResult<Option<u64>> {
        let bad = || ApiError::bad(format!("parameter `{k}` must be a non-negative integer"));
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// An instant: integer µs, or RFC 3339 with any offset.
    pub fn instant(&self, k: &str) -> ApiResult<Option<Micros>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("parameter `{k}` must be integer µs"))),
            Some(Value::String(s)) => parse_instant(s)
                .map(Some)
                .map_err(|e| ApiError::bad(format!("parameter `{k}` {s:?}: {e}"))),
            Some(other) => Err(ApiError::bad(format!(
                "parameter `{k}` must be µs or RFC 3339, not {other}"
            ))),
        }
    }

    /// A nested object (a CALL's `filter` or `page`), or these params
    /// themselves (a query string is flat).
    fn nested(&self, k: &str) -> ApiResult<Params> {
        match self.get(k) {
            Some(Value::Object(m)) => Ok(Params(m.clone())),
            Some(_) => Err(ApiError::bad(format!("parameter `{k}` must be an object"))),
            None => Ok(Params(self.0.clone())),
        }
    }

    pub fn filter(&self) -> ApiResult<Filter> {
        let p = self.nested("filter")?;
        Ok(Filter {
            skill: p.opt_str("skill")?,
            caller: p.opt_str("caller")?,
            channel: p.opt_str("channel")?,
            status: p.opt_str("status")?,
            parent: p.opt_str("parent")?,
            top_level: p.flag("top_level")?,
            since: p.instant("since")?,
            until: p.instant("until")?,
            include_dry_run: p.flag("include_dry_run")?,
        })
    }

    pub fn page(&self) -> ApiResult<Page> {
        let p = self.nested("page")?;
        Ok(Page {
            limit: p.opt_u64("limit")?.map(|l| l as usize),
            offset: p.opt_u64("offset")?.unwrap_or(0) as usize,
        })
    }
}
