//! Work that may take a while (a sync, reading the whole log, dropping
//! segments, searching), run on libuv's thread pool as napi async work:
//! each resolves a promise on the JavaScript thread and keeps nothing
//! alive once done. A panic in the pool thread would abort the process, so
//! every `compute` runs under [`guarded`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use auditlog::Digest;
use napi::{Env, Task};

use crate::errors::{self, Code};
use crate::json_out;
use crate::options::micros;
use crate::store::Shared;
use auditlog::event::json::json_string;

/// Run `f`, turning a panic into an `AUDITLOG_INTERNAL` error.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(errors::coded(
                Code::Internal,
                format!("{what} failed unexpectedly: {why}"),
            ))
        }
    }
}

/// `flush()`: resolves to the head LSN once everything appended is durable.
pub struct FlushTask(pub Arc<Shared>);

impl Task for FlushTask {
    type Output = u64;
    type JsValue = f64;

    fn compute(&mut self) -> napi::Result<u64> {
        guarded("flush", || {
            self.0.with(|s| s.flush().map_err(errors::engine))
        })
    }

    fn resolve(&mut self, _env: Env, lsn: u64) -> napi::Result<f64> {
        Ok(lsn as f64)
    }
}

/// `stats()`: the figures as JSON, plus the store's counters.
pub struct StatsTask {
    pub shared: Arc<Shared>,
    pub anomalies: bool,
}

impl Task for StatsTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        guarded("stats", || {
            // A reader is a snapshot handle: the store's lock is not held
            // while the log is replayed, so close() need not wait for it.
            let reader = self.shared.query(|s| Ok(s.reader()))?;
            let st = reader.stats().map_err(errors::engine)?;
            let instant = |t: Option<i64>| t.map_or("null".to_string(), |t| t.to_string());
            let mut out = format!(
                "{{\"segments\":{},\"sealedSegments\":{},\"events\":{},\"bytes\":{},\"firstLsn\":{},\"headLsn\":{},\"headDigest\":\"{}\",\"oldestUs\":{},\"newestUs\":{},\"droppedSegments\":{},\"droppedEvents\":{}",
                st.segments,
                st.sealed_segments,
                st.events,
                st.bytes,
                st.first_lsn,
                st.head_lsn,
                st.head_digest,
                instant(st.oldest_ts),
                instant(st.newest_ts),
                st.dropped_segments,
                st.dropped_events,
            );
            if self.anomalies {
                let a = reader.anomalies(|_| {}).map_err(errors::engine)?;
                out.push_str(&format!(
                    ",\"anomalies\":{{\"duplicateRunStarted\":{},\"duplicateRunFinished\":{},\"orphanLogs\":{},\"finishesWithoutStart\":{}}}",
                    a.duplicate_starts, a.duplicate_finishes, a.orphan_logs, a.finishes_without_start
                ));
            }
            out.push('}');
            Ok(out)
        })
    }

    fn resolve(&mut self, _env: Env, json: String) -> napi::Result<String> {
        Ok(json)
    }
}

/// `verify()`: the report as JSON, or a corruption error naming the place.
pub struct VerifyTask {
    pub shared: Arc<Shared>,
    /// A digest anchored earlier that must appear in the chain.
    pub expect: Option<String>,
}

impl Task for VerifyTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        guarded("verify", || {
            // What this store appended is on disk (committed) first.
            self.shared.query(|_| Ok(()))?;
            let expect = match &self.expect {
                Some(hex) => Some(Digest::from_hex(hex).ok_or_else(|| {
                    errors::invalid(format!("expect: {hex:?} is not a 64-digit hex digest"))
                })?),
                None => None,
            };
            let r =
                auditlog::verify(&self.shared.dir, expect, |_, _| {}).map_err(errors::engine)?;
            let found = r
                .expect_found_at
                .map_or("null".to_string(), |l| l.to_string());
            Ok(format!(
                "{{\"ok\":true,\"segments\":{},\"events\":{},\"bytes\":{},\"firstLsn\":{},\"headLsn\":{},\"headDigest\":\"{}\",\"expectFoundAt\":{found},\"uncommittedTailBytes\":{}}}",
                r.segments, r.events, r.bytes, r.first_lsn, r.head_lsn, r.head_digest, r.uncommitted_tail_bytes
            ))
        })
    }

    fn resolve(&mut self, _env: Env, json: String) -> napi::Result<String> {
        Ok(json)
    }
}

/// `retain()`: what was dropped, as JSON.
pub struct RetainTask {
    pub shared: Arc<Shared>,
    /// µs.
    pub cutoff: f64,
}

impl Task for RetainTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        guarded("retain", || {
            let cutoff = micros("cutoff", Some(self.cutoff))?.unwrap_or_default();
            let r = self
                .shared
                .with(|s| s.purge_older_than(cutoff).map_err(errors::engine))?;
            let dropped = json_out::array(&r.dropped, |d, out| {
                out.push_str("{\"name\":");
                json_string(&d.name, out);
                out.push_str(&format!(
                    ",\"firstLsn\":{},\"count\":{},\"oldestUs\":{},\"newestUs\":{},\"bytes\":{}}}",
                    d.first_lsn, d.count, d.min_ts, d.max_ts, d.bytes
                ));
            });
            Ok(format!(
                "{{\"cutoffUs\":{},\"dropped\":{dropped},\"events\":{},\"bytes\":{},\"firstKeptLsn\":{}}}",
                r.cutoff,
                r.events(),
                r.bytes(),
                r.first_kept_lsn
            ))
        })
    }

    fn resolve(&mut self, _env: Env, json: String) -> napi::Result<String> {
        Ok(json)
    }
}

/// `search()`: hits as JSON (or an error when the build has no search).
pub struct SearchTask {
    pub shared: Arc<Shared>,
    pub query: String,
    pub filter_json: String,
    pub limit: usize,
    /// Wait (up to 10 s) until everything appended so far is searchable.
    pub fresh: bool,
}

impl Task for SearchTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        guarded("search", || {
            #[cfg(feature = "search")]
            {
                self.shared.query(|s| {
                    crate::search::run(s, &self.query, &self.filter_json, self.limit, self.fresh)
                })
            }
            #[cfg(not(feature = "search"))]
            {
                self.shared.with(|_| Ok(()))?;
                let _ = (&self.query, &self.filter_json, self.limit, self.fresh);
                Err(errors::coded(
                    Code::Search,
                    "this build of @auditlog/node has no full-text search (build it with `npm run build:search`)",
                ))
            }
        })
    }

    fn resolve(&mut self, _env: Env, json: String) -> napi::Result<String> {
        Ok(json)
    }
}
