//! Full-text search (the `search` feature): the engine's tantivy index of
//! runs, kept up to date by its indexer thread following the store's log.
//! A search first waits (bounded) until the index has caught up with what
//! the log had committed when it was asked, so it sees what queries see.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use auditlog::fulltext::{Filters, FullText, FullTextError, FullTextOptions, Indexer};
use auditlog::{AuditStore, StoreConfig};

use crate::errors;
use crate::store::Inner;
use crate::views::{Hit, Run};

/// Where the retention hook finds the index once it is open (the hook must
/// be in the config before the log opens; the index opens after).
pub type HookSlot = Arc<Mutex<Option<auditlog::log::RetainHook>>>;

/// Register a retention hook that forwards to the index's, once set.
pub fn retain_forwarder(cfg: &mut StoreConfig) -> HookSlot {
    let slot: HookSlot = Arc::new(Mutex::new(None));
    let fwd = slot.clone();
    cfg.log.retain_hooks.push(Arc::new(move |r| {
        let hook = fwd.lock().ok().and_then(|g| g.clone());
        if let Some(h) = hook {
            h(r);
        }
    }));
    slot
}

pub struct Search {
    ft: FullText,
    indexer: Mutex<Option<Indexer>>,
}

impl Search {
    pub fn start(store: &AuditStore, hook: HookSlot) -> auditlog::Result<Search> {
        let log = store.log();
        let opened =
            FullText::open_for(&log.reader(), &FullTextOptions::default()).and_then(|ft| {
                if let Ok(mut g) = hook.lock() {
                    *g = Some(ft.retain_hook());
                }
                let ix = ft.spawn_indexer(log.reader())?;
                Ok((ft, ix))
            });
        match opened {
            Ok((ft, ix)) => Ok(Search {
                ft,
                indexer: Mutex::new(Some(ix)),
            }),
            Err(FullTextError::Log(e)) => Err(e),
            Err(e) => Err(auditlog::Error::InvalidArgument(format!(
                "full-text search could not start: {e}"
            ))),
        }
    }

    /// Commit what is indexed and stop the indexer thread.
    pub fn stop(self) {
        if let Some(ix) = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            ix.stop();
        }
    }

    fn error(&self) -> Option<String> {
        self.indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|ix| ix.error())
    }
}

fn search_error(py: Python<'_>, e: FullTextError) -> PyErr {
    match e {
        FullTextError::Query { query, message } => errors::raise(
            py,
            "QuerySyntaxError",
            format!("invalid search query {query:?}: {message}"),
            &[],
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
    let Some(s) = inner.search.as_ref() else {
        return Err(errors::unsupported(
            py,
            "full-text search is off for this store; open it with search=True",
        ));
    };
    let timeout = Duration::from_secs_f64(if timeout.is_finite() {
        timeout.clamp(0.0, 3600.0)
    } else {
        0.0
    });
    let head = inner.store.log().head().next_lsn;
    let found = py.detach(|| {
        let deadline = Instant::now() + timeout;
        while s.ft.indexed_lsn() < head && Instant::now() < deadline {
            if s.error().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        s.ft.search(query, filters, limit)
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
