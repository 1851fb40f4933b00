//! `NativeServed`: the methods of `NativeStore` (same names, arguments and
//! JSON answers) on a log that `auditlog serve` holds, reached through the
//! Rust client `auditlog-client` over the server's Unix socket. The
//! TypeScript `connect()` wraps it in the same `AuditStore` class that
//! `open()` returns.
//!
//! Differences from an open store, by the nature of a served log:
//! - a write returns once the server has made it durable (`flush()` has
//!   nothing left to wait for); it is retried with the same idempotency
//!   key while the server is busy or unreachable, for `retryForMs`, and
//!   stored exactly once;
//! - the synchronous calls (appends, queries) wait for the server on the
//!   JavaScript thread, as an open store's queries wait for its disk; the
//!   slow ones (flush, stats, verify, retain, search, replay and tail
//!   batches) run on libuv's thread pool;
//! - `counters()` are the server's (every client's appends).
//!
//! Failures keep the codes of an open store (errors.rs): a server that is
//! not running, or stopped answering for `retryForMs`, is `AUDITLOG_IO`
//! naming the socket.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use auditlog::event::json::{json_string, parse_event};
use auditlog::event::time::parse_instant;
use auditlog::{EncodedBatch, Event, Page, ReplayRange};
use auditlog_client::{Client, ClientConfig};
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::{self, Code};
use crate::json_out;
use crate::options::{micros, FilterOptions};
use crate::tasks::guarded;
use crate::toolcall::{self, CallQuery, Shape, ToolCallRow};

/// Options of `connect()` (JSON from TypeScript). Unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConnectOptions {
    /// How long one call keeps retrying (ms); default [`DEFAULT_RETRY_FOR`].
    retry_for_ms: Option<f64>,
    /// Connections kept open for reuse (default 8).
    max_idle_connections: Option<u32>,
}

/// Default of `retryForMs`: shorter than the Rust client's 30 s, because a
/// synchronous call holds the JavaScript thread while it retries.
const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(5);
/// Longest `retryForMs` accepted (an hour): a typo must not mean a call
/// that never returns.
const MAX_RETRY_FOR_MS: f64 = 3_600_000.0;

impl ConnectOptions {
    fn client_config(json: &str, socket: &str) -> napi::Result<ClientConfig> {
        let o: ConnectOptions = serde_json::from_str(json)
            .map_err(|e| errors::invalid(format!("connect options: {e}")))?;
        let mut cfg = ClientConfig::new(socket);
        cfg.retry_for = DEFAULT_RETRY_FOR;
        if let Some(ms) = o.retry_for_ms {
            if !(ms.is_finite() && (0.0..=MAX_RETRY_FOR_MS).contains(&ms)) {
                return Err(errors::invalid(format!(
                    "connect options: retryForMs {ms} must be within 0..={MAX_RETRY_FOR_MS}"
                )));
            }
            cfg.retry_for = Duration::from_millis(ms as u64);
        }
        if let Some(n) = o.max_idle_connections {
            cfg.max_idle_connections = n as usize;
        }
        Ok(cfg)
    }
}

/// The client, shared with the async work it starts; `None` once closed.
pub struct ServedShared {
    client: RwLock<Option<Arc<Client>>>,
    socket: String,
}

impl ServedShared {
    fn client(&self) -> napi::Result<Arc<Client>> {
        let slot = self.client.read().unwrap_or_else(|p| p.into_inner());
        slot.clone().ok_or_else(errors::closed)
    }

    fn is_closed(&self) -> bool {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// A log served by `auditlog serve`.
#[napi]
pub struct NativeServed {
    shared: Arc<ServedShared>,
}

/// Connect to the server listening on `socket` (checks the protocol once).
#[napi(catch_unwind)]
pub fn connect(socket: String, options_json: String) -> napi::Result<NativeServed> {
    let cfg = ConnectOptions::client_config(&options_json, &socket)?;
    let client = Client::with_config(cfg).map_err(errors::engine)?;
    Ok(NativeServed {
        shared: Arc::new(ServedShared {
            client: RwLock::new(Some(Arc::new(client))),
            socket,
        }),
    })
}

/// Append as few requests as the server's size limit allows (each stored
/// once, all or nothing per request).
fn append_split(c: &Client, events: &[Event]) -> auditlog::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let batch = EncodedBatch::encode(events)?;
    if batch.bytes() <= c.max_request_bytes() || events.len() == 1 {
        return c.append_encoded(&batch, &c.new_key()).map(|_| ());
    }
    let (a, b) = events.split_at(events.len() / 2);
    append_split(c, a)?;
    append_split(c, b)
}

fn parse_events(jsonl: &str) -> napi::Result<Vec<Event>> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_event(l.as_bytes())
                .map_err(|e| errors::coded(Code::InvalidEvent, format!("event {i}: {e}")))
        })
        .collect()
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// An RFC 3339 instant of the server's answers as µs (JSON `null` if absent).
fn us_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|t| parse_instant(t).ok())
        .map_or("null".to_string(), |us| us.to_string())
}

fn digest_of(v: &Value) -> &str {
    v.get("head_digest").and_then(Value::as_str).unwrap_or("")
}

/// The server's counters in the shape of an open store's `counters()`.
fn counters_json(v: &Value) -> String {
    format!(
        "{{\"appended\":{},\"dropped\":0,\"rejected\":{},\"durableLsn\":{},\"queueDepth\":{},\"queueBytes\":0,\"skipped\":0,\"failures\":{}}}",
        u64_of(v, "appended"),
        u64_of(v, "rejected_records"),
        u64_of(v, "durable_lsn"),
        u64_of(v, "queue_depth"),
        u64_of(v, "append_failures"),
    )
}

/// `auditlog stats` as the server answers it, in the shape of an open
/// store's stats JSON.
fn stats_json(v: &Value, anomalies: bool) -> String {
    let mut out = format!(
        "{{\"segments\":{},\"sealedSegments\":{},\"events\":{},\"bytes\":{},\"firstLsn\":{},\"headLsn\":{},\"headDigest\":\"{}\",\"oldestUs\":{},\"newestUs\":{},\"droppedSegments\":{},\"droppedEvents\":{}",
        u64_of(v, "segments"),
        u64_of(v, "sealed_segments"),
        u64_of(v, "events"),
        u64_of(v, "bytes"),
        u64_of(v, "first_lsn"),
        u64_of(v, "head_lsn"),
        digest_of(v),
        us_of(v, "oldest_ts"),
        us_of(v, "newest_ts"),
        u64_of(v, "dropped_segments"),
        u64_of(v, "dropped_events"),
    );
    if anomalies {
        let a = v.get("anomalies").cloned().unwrap_or_default();
        out.push_str(&format!(
            ",\"anomalies\":{{\"duplicateRunStarted\":{},\"duplicateRunFinished\":{},\"orphanLogs\":{},\"finishesWithoutStart\":{}}}",
            u64_of(&a, "duplicate_run_started"),
            u64_of(&a, "duplicate_run_finished"),
            u64_of(&a, "orphan_logs"),
            u64_of(&a, "finishes_without_start"),
        ));
    }
    out.push('}');
    out
}

/// The server's verify answer as an open store's report, or the same
/// `AUDITLOG_CORRUPT` error naming the place.
fn verify_json(v: &Value) -> napi::Result<String> {
    if let Some(segment) = v.get("segment").and_then(Value::as_str) {
        return Err(errors::coded(
            Code::Corrupt,
            format!(
                "corrupt log: segment {segment} at offset {}: {}",
                u64_of(v, "offset"),
                v.get("reason").and_then(Value::as_str).unwrap_or("")
            ),
        ));
    }
    let found = v
        .get("expect_found_at_lsn")
        .and_then(Value::as_u64)
        .map_or("null".to_string(), |l| l.to_string());
    Ok(format!(
        "{{\"ok\":true,\"segments\":{},\"events\":{},\"bytes\":{},\"firstLsn\":{},\"headLsn\":{},\"headDigest\":\"{}\",\"expectFoundAt\":{found},\"uncommittedTailBytes\":{}}}",
        u64_of(v, "segments"),
        u64_of(v, "events"),
        u64_of(v, "bytes"),
        u64_of(v, "first_lsn"),
        u64_of(v, "head_lsn"),
        digest_of(v),
        u64_of(v, "uncommitted_tail_bytes"),
    ))
}

/// The server's retention report as an open store's.
fn retain_json(v: &Value, cutoff: i64) -> String {
    let none = Vec::new();
    let dropped = v
        .get("dropped_segments")
        .and_then(Value::as_array)
        .unwrap_or(&none);
    let dropped = json_out::array(dropped, |d, out| {
        out.push_str("{\"name\":");
        json_string(d.get("segment").and_then(Value::as_str).unwrap_or(""), out);
        out.push_str(&format!(
            ",\"firstLsn\":{},\"count\":{},\"oldestUs\":{},\"newestUs\":{},\"bytes\":{}}}",
            u64_of(d, "first_lsn"),
            u64_of(d, "events"),
            us_of(d, "oldest"),
            us_of(d, "newest"),
            u64_of(d, "bytes"),
        ));
    });
    format!(
        "{{\"cutoffUs\":{cutoff},\"dropped\":{dropped},\"events\":{},\"bytes\":{},\"firstKeptLsn\":{}}}",
        u64_of(v, "dropped_events"),
        u64_of(v, "dropped_bytes"),
        u64_of(v, "first_kept_lsn"),
    )
}

/// Search filters, instants in µs (as the open store's).
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

/// How long a `fresh` search lets the server's indexer catch up.
const FRESH_WAIT: Duration = Duration::from_secs(10);

type Work<T> = Box<dyn FnOnce(&Client) -> napi::Result<T> + Send>;

/// Work on the client on libuv's thread pool, resolving to text.
pub struct TextJob {
    shared: Arc<ServedShared>,
    what: &'static str,
    work: Option<Work<String>>,
}

/// Work on the client on libuv's thread pool, resolving to a number.
pub struct NumberJob {
    shared: Arc<ServedShared>,
    work: Option<Work<f64>>,
}

fn run_work<T>(shared: &ServedShared, what: &str, work: Option<Work<T>>) -> napi::Result<T> {
    guarded(what, || {
        let c = shared.client()?;
        match work {
            Some(w) => w(&c),
            None => Err(errors::coded(Code::Internal, format!("{what} ran twice"))),
        }
    })
}

impl Task for TextJob {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        run_work(&self.shared, self.what, self.work.take())
    }

    fn resolve(&mut self, _env: Env, out: String) -> napi::Result<String> {
        Ok(out)
    }
}

impl Task for NumberJob {
    type Output = f64;
    type JsValue = f64;

    fn compute(&mut self) -> napi::Result<f64> {
        run_work(&self.shared, "flush", self.work.take())
    }

    fn resolve(&mut self, _env: Env, out: f64) -> napi::Result<f64> {
        Ok(out)
    }
}

impl NativeServed {
    fn text(
        &self,
        what: &'static str,
        f: impl FnOnce(&Client) -> napi::Result<String> + Send + 'static,
    ) -> AsyncTask<TextJob> {
        AsyncTask::new(TextJob {
            shared: self.shared.clone(),
            what,
            work: Some(Box::new(f)),
        })
    }

    /// Run `f` on the client now (on the JavaScript thread).
    fn now<T>(&self, f: impl FnOnce(&Client) -> auditlog::Result<T>) -> napi::Result<T> {
        let c = self.shared.client()?;
        f(&c).map_err(errors::engine)
    }
}

#[napi]
impl NativeServed {
    /// The server's socket (an open store's `dir`).
    #[napi(getter)]
    pub fn dir(&self) -> String {
        self.shared.socket.clone()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Append one event; returns once the server made it durable.
    #[napi(catch_unwind)]
    pub fn append(&self, json: String) -> napi::Result<()> {
        let ev = parse_event(json.as_bytes())
            .map_err(|e| errors::coded(Code::InvalidEvent, format!("event: {e}")))?;
        self.now(|c| c.append(&ev).map(drop))
    }

    /// Append events (JSON lines); all are checked first, then sent in as
    /// few requests as the server's size limit allows, each stored once.
    #[napi(catch_unwind)]
    pub fn append_batch(&self, jsonl: String) -> napi::Result<u32> {
        let events = parse_events(&jsonl)?;
        self.now(|c| append_split(c, &events))?;
        Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
    }

    /// Record one tool call row; returns its id (see NativeStore).
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn record_tool_call(
        &self,
        id: Option<String>,
        session_id: Option<String>,
        engine: Option<String>,
        tool_name: Option<String>,
        args_summary: Option<String>,
        duration_ms: Option<f64>,
        exit_code: Option<f64>,
        http_status: Option<f64>,
        error: Option<String>,
        result_truncated: Option<bool>,
        result_bytes: Option<f64>,
        created_at_us: Option<f64>,
    ) -> napi::Result<String> {
        let row = ToolCallRow {
            id,
            session_id,
            engine,
            tool_name,
            args_summary,
            duration_ms,
            exit_code,
            http_status,
            error,
            result_truncated,
            result_bytes,
            created_at_us: micros("created_at", created_at_us)?,
        };
        let (id, events) =
            toolcall::to_events(row, crate::store::now_micros(), crate::store::new_id)
                .map_err(|e| errors::coded(Code::InvalidEvent, e.to_string()))?;
        self.now(|c| c.append_batch(&events))?;
        Ok(id)
    }

    /// Tool-call rows of one query shape, as JSON.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn tool_calls(
        &self,
        shape: String,
        a: Option<String>,
        b: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        limit: Option<u32>,
        oldest_first: bool,
    ) -> napi::Result<String> {
        let q = CallQuery {
            shape: Shape::parse(&shape, a, b)?,
            since: micros("since", since)?,
            until: micros("until", until)?,
            limit: limit.map(|l| l as usize),
            oldest_first,
        };
        self.now(|c| toolcall::rows(c, &q))
    }

    /// Everything acknowledged is durable already; the server syncs anyway
    /// and this resolves to its durable LSN (the head).
    #[napi]
    pub fn flush(&self) -> AsyncTask<NumberJob> {
        AsyncTask::new(NumberJob {
            shared: self.shared.clone(),
            work: Some(Box::new(|c: &Client| {
                c.flush().map(|l| l as f64).map_err(errors::engine)
            })),
        })
    }

    #[napi(catch_unwind)]
    pub fn get_run(&self, id: String) -> napi::Result<String> {
        let r = self.now(|c| c.get_run(&id))?;
        Ok(json_out::maybe_run(r.as_ref()))
    }

    #[napi(catch_unwind)]
    pub fn logs(&self, id: String) -> napi::Result<String> {
        Ok(json_out::logs(&self.now(|c| c.list_logs(&id))?))
    }

    #[napi(catch_unwind)]
    pub fn list_runs(
        &self,
        filter_json: String,
        limit: Option<u32>,
        offset: Option<u32>,
    ) -> napi::Result<String> {
        let f = FilterOptions::parse(&filter_json)?;
        let page = Page {
            limit: limit.map(|l| l as usize),
            offset: offset.unwrap_or(0) as usize,
        };
        Ok(json_out::runs(&self.now(|c| c.list_runs(&f, page))?))
    }

    #[napi(catch_unwind)]
    pub fn count_runs(&self, filter_json: String) -> napi::Result<f64> {
        let f = FilterOptions::parse(&filter_json)?;
        Ok(self.now(|c| c.count_runs(&f))? as f64)
    }

    #[napi(catch_unwind)]
    pub fn children(&self, id: String, include_dry_run: bool) -> napi::Result<String> {
        Ok(json_out::runs(
            &self.now(|c| c.children(&id, include_dry_run))?,
        ))
    }

    #[napi(catch_unwind)]
    pub fn chain(&self, id: String) -> napi::Result<String> {
        Ok(json_out::runs(&self.now(|c| c.parent_chain(&id))?))
    }

    #[napi(catch_unwind)]
    pub fn last_run(&self, skills: Vec<String>, include_failed: bool) -> napi::Result<String> {
        let got = self.now(|c| c.last_run_per_skill(&skills, include_failed))?;
        Ok(json_out::last_runs(&got))
    }

    #[napi(catch_unwind)]
    pub fn tool_errors(&self, since: Option<f64>, until: Option<f64>) -> napi::Result<String> {
        let (since, until) = (micros("since", since)?, micros("until", until)?);
        Ok(json_out::error_groups(
            &self.now(|c| c.tool_errors(since, until))?,
        ))
    }

    /// Tool calls, with or without a run: a page as JSON (see NativeStore).
    #[napi(catch_unwind)]
    pub fn calls(&self, filter_json: String) -> napi::Result<String> {
        let (f, page) = crate::calls::page_query(&filter_json)?;
        let v = self.now(|c| c.calls(&f, page))?;
        crate::calls::served_page(&v, &page)
    }

    #[napi(catch_unwind)]
    pub fn count_calls(&self, filter_json: String) -> napi::Result<f64> {
        let f = crate::calls::count_filter(&filter_json)?;
        Ok(self.now(|c| c.count_calls(&f))? as f64)
    }

    #[napi(catch_unwind)]
    pub fn count_calls_by(&self, by: String, filter_json: String) -> napi::Result<String> {
        let key = crate::calls::key(&by)?;
        let f = crate::calls::count_filter(&filter_json)?;
        Ok(crate::calls::counts(
            &self.now(|c| c.count_calls_by(&f, key))?,
        ))
    }

    #[napi(catch_unwind)]
    pub fn finished_before(&self, before: f64) -> napi::Result<String> {
        let before = micros("before", Some(before))?.unwrap_or_default();
        Ok(json_out::runs(
            &self.now(|c| c.finished_runs_before(before))?,
        ))
    }

    /// The server's ingest counters, in an open store's shape.
    #[napi(catch_unwind)]
    pub fn counters(&self) -> napi::Result<String> {
        Ok(counters_json(&self.now(|c| c.counters())?))
    }

    #[napi]
    pub fn stats(&self, anomalies: bool) -> AsyncTask<TextJob> {
        self.text("stats", move |c| {
            Ok(stats_json(&c.stats().map_err(errors::engine)?, anomalies))
        })
    }

    #[napi]
    pub fn verify(&self, expect: Option<String>) -> AsyncTask<TextJob> {
        self.text("verify", move |c| {
            verify_json(&c.verify(expect.as_deref()).map_err(errors::engine)?)
        })
    }

    #[napi]
    pub fn retain(&self, cutoff: f64) -> AsyncTask<TextJob> {
        self.text("retain", move |c| {
            let cutoff = micros("cutoff", Some(cutoff))?.unwrap_or_default();
            let v = c.purge_older_than(cutoff).map_err(errors::engine)?;
            Ok(retain_json(&v, cutoff))
        })
    }

    #[napi(catch_unwind)]
    pub fn replay(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        from_lsn: Option<f64>,
    ) -> napi::Result<ServedCursor> {
        let range = ReplayRange {
            from_lsn: from_lsn.map(|l| l.max(0.0) as u64),
            since: micros("since", since)?,
            until: micros("until", until)?,
        };
        self.shared.client()?;
        Ok(ServedCursor::new(self.shared.clone(), range, None, false))
    }

    /// The newest `last` events, then (when `follow`) the ones after them.
    #[napi(catch_unwind)]
    pub fn tail(&self, last: u32, follow: bool) -> napi::Result<ServedCursor> {
        let head = u64_of(&self.now(|c| c.counters())?, "head_lsn");
        let range = ReplayRange {
            from_lsn: Some(head.saturating_sub(u64::from(last))),
            ..ReplayRange::default()
        };
        let stop = (!follow).then_some(head);
        Ok(ServedCursor::new(self.shared.clone(), range, stop, follow))
    }

    /// Full-text search on the server (it indexes unless `--no-search`).
    #[napi]
    pub fn search(
        &self,
        query: String,
        filter_json: String,
        limit: u32,
        fresh: bool,
    ) -> AsyncTask<TextJob> {
        self.text("search", move |c| {
            let f: SearchFilter = serde_json::from_str(&filter_json)
                .map_err(|e| errors::invalid(format!("search options: {e}")))?;
            let filters = [
                ("skill", f.skill),
                ("caller", f.caller),
                ("channel", f.channel),
                ("status", f.status),
            ];
            let (since, until) = (micros("since", f.since)?, micros("until", f.until)?);
            let catch_up = Some(if fresh { FRESH_WAIT } else { Duration::ZERO });
            let hits = c
                .search_filtered(&query, limit as usize, &filters, since, until, catch_up)
                .map_err(|e| match e {
                    auditlog::Error::Io { .. } => errors::engine(e),
                    other => errors::coded(Code::Search, other.to_string()),
                })?;
            Ok(json_out::array(&hits, |h, out| {
                json_out::run(&h.run, out);
                out.pop();
                out.push_str(&format!(",\"score\":{},\"snippet\":", h.score));
                json_string(&h.snippet, out);
                out.push('}');
            }))
        })
    }

    /// Let go of the connections (the server keeps running). Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&self) -> napi::Result<()> {
        self.shared
            .client
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(())
    }
}

/// Where a served replay or tail stands.
struct CursorState {
    range: ReplayRange,
    /// Not following: the LSN where the tail ends.
    stop: Option<u64>,
    follow: bool,
    done: bool,
}

/// Batches of a served replay or tail (`nextBatch` as the open store's
/// cursors: JSON arrays, `[]` while a follower is caught up, `null` at
/// the end).
#[napi]
pub struct ServedCursor {
    shared: Arc<ServedShared>,
    state: Arc<std::sync::Mutex<CursorState>>,
}

impl ServedCursor {
    fn new(
        shared: Arc<ServedShared>,
        range: ReplayRange,
        stop: Option<u64>,
        follow: bool,
    ) -> ServedCursor {
        ServedCursor {
            shared,
            state: Arc::new(std::sync::Mutex::new(CursorState {
                range,
                stop,
                follow,
                done: false,
            })),
        }
    }
}

#[napi]
impl ServedCursor {
    #[napi]
    pub fn next_batch(&self, max: u32) -> AsyncTask<CursorBatch> {
        AsyncTask::new(CursorBatch {
            shared: self.shared.clone(),
            state: self.state.clone(),
            max: (max as usize).clamp(1, crate::cursor::MAX_BATCH_EVENTS),
        })
    }
}

pub struct CursorBatch {
    shared: Arc<ServedShared>,
    state: Arc<std::sync::Mutex<CursorState>>,
    max: usize,
}

impl CursorBatch {
    fn next(&self) -> napi::Result<Option<String>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.done {
            return Ok(None);
        }
        if st.follow && self.shared.is_closed() {
            // A follower ends quietly at close, as an open store's does.
            return Ok(None);
        }
        let c = self.shared.client()?;
        let (mut events, next) = c.replay(st.range, self.max, None).map_err(errors::engine)?;
        if let Some(stop) = st.stop {
            events.retain(|(lsn, _)| *lsn < stop);
        }
        st.range.from_lsn = Some(next);
        let over = st.stop.is_some_and(|stop| next >= stop);
        if events.is_empty() && !st.follow {
            st.done = true;
            return Ok(None);
        }
        if over {
            st.done = true;
        }
        let mut out = String::with_capacity(64 * 1024);
        out.push('[');
        for (i, (lsn, ev)) in events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_out::event(*lsn, ev, &mut out);
        }
        out.push(']');
        Ok(Some(out))
    }
}

impl Task for CursorBatch {
    type Output = Option<String>;
    type JsValue = Option<String>;

    fn compute(&mut self) -> napi::Result<Option<String>> {
        guarded("replay", || self.next())
    }

    fn resolve(&mut self, _env: Env, out: Option<String>) -> napi::Result<Option<String>> {
        Ok(out)
    }
}
