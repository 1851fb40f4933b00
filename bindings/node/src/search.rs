//! Full-text search (the `search` cargo feature): the store's tantivy index
//! of runs, kept by the engine's indexer thread (`StoreConfig::search`).

use std::time::Duration;

use auditlog::fulltext::{Filters, FullTextError};
use auditlog::AuditStore;
use serde::Deserialize;

use crate::errors::{self, Code};
use crate::options::micros;

/// How long a `fresh` search waits for the index to catch up.
pub const FRESH_WAIT: Duration = Duration::from_secs(10);

/// A full-text failure for JavaScript: the log's own errors keep their code.
fn search_error(e: FullTextError) -> napi::Error {
    match e {
        FullTextError::Log(e) => errors::engine(e),
        other => errors::coded(Code::Search, other.to_string()),
    }
}

/// Search filters, instants in µs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchFilter {
    skill: Option<String>,
    caller: Option<String>,
    channel: Option<String>,
    status: Option<String>,
    since: Option<f64>,
    until: Option<f64>,
}

/// Hits (run view plus `score` and `snippet`) as a JSON array.
pub fn run(
    store: &AuditStore,
    query: &str,
    filter_json: &str,
    limit: usize,
    fresh: bool,
) -> napi::Result<String> {
    let f: SearchFilter = serde_json::from_str(filter_json)
        .map_err(|e| errors::invalid(format!("search options: {e}")))?;
    let filters = Filters {
        skill: f.skill,
        caller: f.caller,
        channel: f.channel,
        status: f.status,
        since: micros("since", f.since)?,
        until: micros("until", f.until)?,
    };
    if fresh {
        // Best effort: past the wait, answer from what is indexed.
        store.wait_searchable(FRESH_WAIT).map_err(search_error)?;
    }
    let hits = store.search(query, &filters, limit).map_err(search_error)?;
    Ok(crate::json_out::array(&hits, |h, out| {
        out.push_str(&h.to_json())
    }))
}
