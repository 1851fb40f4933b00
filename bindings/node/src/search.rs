//! Full-text search (the `search` cargo feature): the engine's tantivy
//! index of runs, kept by an indexer thread that follows the store's log
//! and stops with the store.

use std::time::Duration;

use auditlog::fulltext::{FullText, FullTextOptions, Indexer};
use auditlog::AuditStore;
use serde::Deserialize;

use crate::errors::{self, Code};
use crate::options::micros;
use crate::store::Shared;

/// How long a `fresh` search waits for the index to catch up.
pub const FRESH_WAIT: Duration = Duration::from_secs(10);

fn search_error(e: impl std::fmt::Display) -> napi::Error {
    errors::coded(Code::Search, e.to_string())
}

/// Open (or rebuild) the index of the store's log and start its indexer.
pub fn start(store: &AuditStore) -> napi::Result<Indexer> {
    let opts = FullTextOptions::default();
    let ft = FullText::open_for(&store.log().reader(), &opts).map_err(search_error)?;
    ft.spawn_indexer(store.log().reader()).map_err(search_error)
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
    shared: &Shared,
    query: &str,
    filter_json: &str,
    limit: usize,
    fresh: bool,
) -> napi::Result<String> {
    let f: SearchFilter = serde_json::from_str(filter_json)
        .map_err(|e| errors::invalid(format!("search options: {e}")))?;
    let filters = auditlog::fulltext::Filters {
        skill: f.skill,
        caller: f.caller,
        channel: f.channel,
        status: f.status,
        since: micros("since", f.since)?,
        until: micros("until", f.until)?,
    };
    let mut guard = shared.search.lock().unwrap_or_else(|p| p.into_inner());
    let Some(ix) = guard.as_mut() else {
        return Err(errors::coded(
            Code::Search,
            "search is not running: open the store with { search: true }",
        ));
    };
    if fresh {
        // Best effort: past the wait, answer from what is indexed.
        ix.wait_caught_up(FRESH_WAIT);
    }
    let hits = ix.search(query, &filters, limit).map_err(search_error)?;
    Ok(crate::json_out::array(&hits, |h, out| {
        out.push_str(&h.to_json())
    }))
}
