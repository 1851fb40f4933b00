//! Full-text search (the `search` feature): the engine's tantivy index of
//! runs, which the store keeps up to date on its indexer thread
//! (`StoreConfig::search`). A search first waits (bounded) until the index
//! holds everything appended before it, so it sees what queries see after
//! a flush.

use std::time::Duration;

use pyo3::prelude::*;

use auditlog::fulltext::{Filters, FullTextError};

use crate::errors;
use crate::inner::Inner;
use crate::views::{Hit, Run};

fn search_error(py: Python<'_>, e: FullTextError) -> PyErr {
    match e {
        FullTextError::Query { query, message } => errors::raise(
            py,
            "QuerySyntaxError",
            format!("invalid search query {query:?}: {message}"),
            &[],
        ),
        FullTextError::NotRunning(why) => errors::unsupported(
            py,
            &format!("full-text search is not running for this store: {why}; open it with search=True in a build with the search feature"),
        ),
        FullTextError::Log(e) => errors::to_py(py, e),
        other => errors::raise(py, "SearchError", other.to_string(), &[]),
    }
}

pub fn search(
    py: Python<'_>,
    inner: &Inner,
    query: &str,
    filters: &Filters,
    limit: usize,
    timeout: f64,
) -> PyResult<Vec<Hit>> {
    let timeout = Duration::from_secs_f64(if timeout.is_finite() {
        timeout.clamp(0.0, 3600.0)
    } else {
        0.0
    });
    let found = py.detach(|| {
        if let Some(st) = &inner.stager {
            st.drain(&inner.store)
                .map_err(|(e, _)| FullTextError::Log(e))?;
        }
        inner.store.wait_searchable(timeout)?;
        inner.store.search(query, filters, limit)
    });
    let hits = found.map_err(|e| search_error(py, e))?;
    hits.into_iter()
        .map(|h| {
            Ok(Hit {
                run: Py::new(py, Run::from(h.run))?,
                score: h.score,
                snippet: h.snippet,
            })
        })
        .collect()
}
