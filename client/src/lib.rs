//! `auditlog-client`: the append and query API of the embedded
//! [`auditlog::AuditStore`], served by `auditlog serve` over its Unix
//! socket (docs/protocol.md). A gateway switches between embedded and
//! served mode in one line: `AuditStore::open(cfg)` or
//! `Client::connect(path)`.
//!
//! Every write is acknowledged only once the server made it durable
//! (fdatasync), so a `Ok` from `append` means what `append(..)?.wait()`
//! means in embedded mode. Every write carries an idempotency key made
//! here: when the connection breaks, or the server restarts, or says it is
//! busy, the client sends the same request again with the same key and the
//! server stores it exactly once (within its window, docs/protocol.md).
//!
//! Blocking, no async runtime, safe to share between threads (it keeps a
//! small pool of connections).

pub mod proto;
mod wire;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auditlog::event::json::write_event;
use auditlog::{
    EncodedBatch, Error, ErrorGroup, Event, EventError, Filter, LsnRange, Micros, Page,
    ReplayRange, Result, Run, RunFinished, RunLog, RunLogEntry, RunStarted,
};
use serde_json::json;

pub use wire::SearchHit;

use proto::{op, status, Frame};

/// How a [`Client`] reaches its server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's Unix socket.
    pub path: PathBuf,
    /// How long one call keeps retrying (server busy, restarting, or the
    /// connection broken) before it gives up.
    pub retry_for: Duration,
    /// Connections kept open for reuse.
    pub max_idle_connections: usize,
}

impl ClientConfig {
    pub fn new(path: impl Into<PathBuf>) -> ClientConfig {
        ClientConfig {
            path: path.into(),
            retry_for: Duration::from_secs(30),
            max_idle_connections: 8,
        }
    }
}

/// What the server answered to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// LSNs of the first and last event stored for the request.
    pub lsns: LsnRange,
    pub events: u64,
    /// The request had been stored before (a retry): nothing new was.
    pub duplicate: bool,
}

/// A connection to `auditlog serve`.
pub struct Client {
    cfg: ClientConfig,
    idle: Mutex<Vec<UnixStream>>,
    next_id: AtomicU64,
    /// Prefix of this client's idempotency keys (random, per client).
    key_prefix: String,
    next_key: AtomicU64,
    max_request_bytes: usize,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("auditlog serve at {}: {what}", path.display()), e)
}

/// A random 64-bit value that differs between processes and clients.
fn entropy() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    fastrand::u64(..) ^ t.rotate_left(17) ^ (u64::from(std::process::id()) << 40)
}

impl Client {
    /// Connect to the server listening on `path` (checks the protocol
    /// version once).
    pub fn connect(path: impl Into<PathBuf>) -> Result<Client> {
        Client::with_config(ClientConfig::new(path))
    }

    pub fn with_config(cfg: ClientConfig) -> Result<Client> {
        let mut c = Client {
            key_prefix: format!("{:016x}{:08x}", entropy(), fastrand::u32(..)),
            cfg,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            next_key: AtomicU64::new(0),
            max_request_bytes: proto::DEFAULT_MAX_REQUEST_BYTES,
        };
        let hello = c.request(op::HELLO, b"", br#"{"protocol":1}"#)?;
        let v: serde_json::Value = serde_json::from_slice(&hello).unwrap_or_default();
        let version = v.get("protocol").and_then(|p| p.as_u64()).unwrap_or(0);
        if version != u64::from(proto::PROTOCOL_VERSION) {
            return Err(Error::InvalidArgument(format!(
                "the server at {} speaks protocol {version}; this client speaks {}",
                c.cfg.path.display(),
                proto::PROTOCOL_VERSION
            )));
        }
        if let Some(m) = v.get("max_request_bytes").and_then(|m| m.as_u64()) {
            c.max_request_bytes = m as usize;
        }
        Ok(c)
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Largest request body the server takes.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// A fresh idempotency key (unique per client and call).
    pub fn new_key(&self) -> String {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.key_prefix)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<UnixStream>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_conn(&self) -> std::io::Result<UnixStream> {
        if let Some(c) = self.lock_idle().pop() {
            return Ok(c);
        }
        UnixStream::connect(&self.cfg.path)
    }

    fn put_conn(&self, c: UnixStream) {
        let mut idle = self.lock_idle();
        if idle.len() < self.cfg.max_idle_connections {
            idle.push(c);
        }
    }

    /// One exchange on one connection.
    fn exchange(&self, kind: u8, key: &[u8], body: &[u8]) -> std::io::Result<Frame> {
        let mut conn = self.take_conn()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        proto::write_frame(&mut conn, kind, id, key, body)?;
        let f = proto::read_frame(&mut conn, proto::MAX_RESPONSE_BYTES)?;
        if f.id != id {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("answer to request {} arrived for request {id}", f.id),
            ));
        }
        if f.kind != status::TOO_LARGE {
            self.put_conn(conn);
        }
        Ok(f)
    }

    /// Send a request and wait for its answer, retrying (same key) while
    /// the server is busy, restarting or unreachable, for `retry_for`.
    /// Returns the OK body; every other status becomes an [`Error`].
    fn request(&self, kind: u8, key: &[u8], body: &[u8]) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.cfg.retry_for;
        let mut backoff = Duration::from_millis(5);
        loop {
            let wait = match self.exchange(kind, key, body) {
                Ok(f) => match f.kind {
                    status::OK => return Ok(f.body),
                    status::BUSY | status::UNAVAILABLE | status::FAILED => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&f.body).unwrap_or_default();
                        let hint = v.get("retry_after_ms").and_then(|m| m.as_u64());
                        if Instant::now() >= deadline {
                            return Err(self.give_up(f.kind, &v));
                        }
                        hint.map_or(backoff, Duration::from_millis)
                    }
                    other => return Err(answer_error(other, &f.body)),
                },
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(io_err(&self.cfg.path, "no answer", e));
                    }
                    // A broken connection: the next try makes a new one.
                    backoff
                }
            };
            std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn give_up(&self, kind: u8, v: &serde_json::Value) -> Error {
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no reason given")
            .to_string();
        match kind {
            status::BUSY => busy_error(v),
            _ => io_err(
                &self.cfg.path,
                &format!("still failing after {:?}", self.cfg.retry_for),
                std::io::Error::other(msg),
            ),
        }
    }

    fn call(&self, params: serde_json::Value) -> Result<Vec<u8>> {
        let body =
            serde_json::to_vec(&params).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.request(op::CALL, b"", &body)
    }

    // ----- appends -----

    /// Append one event; returns once it is durable.
    pub fn append(&self, ev: &Event) -> Result<Ack> {
        self.append_batch(std::slice::from_ref(ev))
    }

    /// Append events as one request (consecutive LSNs unless the request
    /// had to be resumed after a server crash); returns once all are
    /// durable. Any invalid event rejects the whole call, and nothing of
    /// it is stored.
    pub fn append_batch(&self, events: &[Event]) -> Result<Ack> {
        let batch = EncodedBatch::encode(events)?;
        self.append_encoded(&batch, &self.new_key())
    }

    /// Append a batch encoded beforehand, under the given idempotency key
    /// (the same key on a retry stores it once).
    pub fn append_encoded(&self, batch: &EncodedBatch, key: &str) -> Result<Ack> {
        proto::check_key(key.as_bytes()).map_err(Error::InvalidArgument)?;
        if batch.bytes() > self.max_request_bytes {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} bytes is over the server's limit of {} bytes per request; split it",
                batch.bytes(),
                self.max_request_bytes
            )));
        }
        let body = self.request(op::APPEND_FRAMES, key.as_bytes(), batch.frames())?;
        ack(&body)
    }

    /// Append JSONL text (contract events, one per line) under a key.
    pub fn append_jsonl(&self, jsonl: &[u8], key: &str) -> Result<Ack> {
        proto::check_key(key.as_bytes()).map_err(Error::InvalidArgument)?;
        let body = self.request(op::APPEND_JSONL, key.as_bytes(), jsonl)?;
        ack(&body)
    }

    /// Record a run's start (durable on return).
    pub fn start_run(&self, id: &str, ts: Micros, start: RunStarted) -> Result<()> {
        self.append(&Event::run_started(id, ts, start)).map(|_| ())
    }

    /// Record a run's finish; [`Error::NotFound`] (nothing written) for a
    /// run that was never started, as in embedded mode.
    pub fn finish_run(&self, id: &str, ts: Micros, finish: RunFinished) -> Result<()> {
        let ev = Event::run_finished(id, ts, finish);
        self.append_require_run(std::slice::from_ref(&ev))
            .map(|_| ())
    }

    /// Append events as one request whose runs must exist: every event
    /// but a start names a run that is stored, or started earlier in
    /// `events`. Otherwise [`Error::NotFound`] naming the run, and nothing
    /// is written (the embedded store's `require_started`, checked by the
    /// server). Durable on return, stored once (idempotency key).
    pub fn append_require_run(&self, events: &[Event]) -> Result<Ack> {
        if events.is_empty() {
            return Err(Error::InvalidArgument(
                "append_require_run: no events".into(),
            ));
        }
        // Check each event here first, so a bad one is named as in
        // `append_batch` (the server checks them again).
        EncodedBatch::encode(events)?;
        let mut body = String::with_capacity(64 + events.len() * 320);
        body.push_str(r#"{"method":"append_require_run","events":["#);
        for (i, ev) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            write_event(ev, None, &mut body);
        }
        body.push_str("]}");
        let key = self.new_key();
        ack(&self.request(op::CALL, key.as_bytes(), body.as_bytes())?)
    }

    /// Record a log line of a run (durable on return).
    pub fn append_log(&self, id: &str, ts: Micros, log: RunLog) -> Result<()> {
        self.append(&Event::run_log(id, ts, log)).map(|_| ())
    }

    /// Everything acknowledged is already durable; this asks the server to
    /// sync anyway and returns the LSN one past the last durable event.
    pub fn flush(&self) -> Result<u64> {
        let body = self.call(json!({"method": "flush"}))?;
        wire::u64_field(&body, "durable_lsn")
    }

    // ----- queries (the AuditStore's) -----

    pub fn get_run(&self, id: &str) -> Result<Option<Run>> {
        wire::opt_run(&self.call(json!({"method": "get_run", "id": id}))?)
    }

    /// The run with its logs in seq order (`run ID`).
    pub fn run_with_logs(&self, id: &str) -> Result<Option<(Run, Vec<RunLogEntry>)>> {
        wire::run_with_logs(&self.call(json!({"method": "run_with_logs", "id": id}))?)
    }

    /// The run's logs in seq order.
    pub fn list_logs(&self, id: &str) -> Result<Vec<RunLogEntry>> {
        wire::logs(&self.call(json!({"method": "list_logs", "id": id}))?)
    }

    pub fn list_runs_by_skill(&self, skill: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        self.list_runs_by_skill_page(skill, Page::all(), include_dry_run)
    }

    pub fn list_runs_by_skill_page(
        &self,
        skill: &str,
        page: Page,
        include_dry_run: bool,
    ) -> Result<Vec<Run>> {
        let f = Filter {
            skill: Some(skill.into()),
            include_dry_run,
            ..Filter::default()
        };
        self.list_runs(&f, page)
    }

    pub fn count_by_skill(&self, skill: &str, include_dry_run: bool) -> Result<u64> {
        let f = Filter {
            skill: Some(skill.into()),
            include_dry_run,
            ..Filter::default()
        };
        self.count_runs(&f)
    }

    pub fn list_runs_by_caller(&self, caller: &str, page: Page) -> Result<Vec<Run>> {
        let f = Filter {
            caller: Some(caller.into()),
            ..Filter::default()
        };
        self.list_runs(&f, page)
    }

    pub fn list_runs(&self, f: &Filter, page: Page) -> Result<Vec<Run>> {
        wire::runs(&self.call(json!({
            "method": "list_runs", "filter": wire::filter(f), "page": wire::page(page)
        }))?)
    }

    pub fn count_runs(&self, f: &Filter) -> Result<u64> {
        let body = self.call(json!({"method": "count_runs", "filter": wire::filter(f)}))?;
        wire::u64_field(&body, "count")
    }

    pub fn children(&self, id: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        wire::runs(&self.call(json!({
            "method": "children", "id": id, "include_dry_run": include_dry_run
        }))?)
    }

    /// The run and its ancestors (cycle-safe); NotFound for an unknown run.
    pub fn parent_chain(&self, id: &str) -> Result<Vec<Run>> {
        wire::runs(&self.call(json!({"method": "chain", "id": id}))?)
    }

    pub fn finished_runs_before(&self, before: Micros) -> Result<Vec<Run>> {
        self.finished_runs_before_limit(before, None)
    }

    /// [`Client::finished_runs_before`], at most `limit` runs.
    pub fn finished_runs_before_limit(
        &self,
        before: Micros,
        limit: Option<usize>,
    ) -> Result<Vec<Run>> {
        wire::runs(&self.call(json!({
            "method": "finished_before", "before": before, "limit": limit
        }))?)
    }

    pub fn last_run_per_skill(
        &self,
        skills: &[String],
        include_failed: bool,
    ) -> Result<Vec<(String, Option<Micros>)>> {
        let body = self.call(json!({
            "method": "last_run", "skills": skills, "include_failed": include_failed
        }))?;
        wire::last_runs(&body, skills)
    }

    pub fn tool_errors(
        &self,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> Result<Vec<ErrorGroup>> {
        wire::error_groups(&self.call(json!({
            "method": "errors", "since": since, "until": until
        }))?)
    }

    /// Up to `limit` events of the range in log order, and the LSN to go on
    /// from. With `wait`, waits that long for an event past the head when
    /// there is none yet (tail -f).
    pub fn replay(
        &self,
        range: ReplayRange,
        limit: usize,
        wait: Option<Duration>,
    ) -> Result<(Vec<(u64, Event)>, u64)> {
        wire::replay(&self.call(json!({
            "method": "replay", "from_lsn": range.from_lsn, "since": range.since,
            "until": range.until, "limit": limit,
            "wait_ms": wait.map(|w| w.as_millis() as u64),
        }))?)
    }

    /// Full-text search (the server runs the indexer; docs/search.md).
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        self.search_filtered(query, limit, &[], None, None, None)
    }

    /// Full-text search with exact filters (`skill`, `caller`, `channel`,
    /// `status`) and a started_at range; the server first waits up to
    /// `catch_up` (default 10 s) for its indexer to reach what is stored.
    pub fn search_filtered(
        &self,
        query: &str,
        limit: usize,
        filters: &[(&str, Option<String>)],
        since: Option<Micros>,
        until: Option<Micros>,
        catch_up: Option<Duration>,
    ) -> Result<Vec<SearchHit>> {
        let mut p = json!({
            "method": "search", "query": query, "limit": limit, "since": since, "until": until,
            "timeout_ms": catch_up.map(|d| d.as_millis() as u64),
        });
        for (k, v) in filters {
            if let Some(v) = v {
                p[*k] = json!(v);
            }
        }
        wire::hits(&self.call(p)?)
    }

    /// Tool calls, with or without a run (docs/tool-calls.md), as
    /// `auditlog calls` prints them (a JSON array), one page.
    pub fn calls(
        &self,
        f: &auditlog::query::CallFilter,
        page: auditlog::query::CallPage,
    ) -> Result<serde_json::Value> {
        let mut p = call_filter_params(f);
        p["method"] = json!("calls");
        p["limit"] = json!(page.limit);
        p["cursor"] = json!(page.cursor.map(|c| c.to_string()));
        p["oldest_first"] = json!(page.order == auditlog::query::CallOrder::OldestFirst);
        let body = self.call(p)?;
        serde_json::from_slice(&body).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// How many tool calls match `f`.
    pub fn count_calls(&self, f: &auditlog::query::CallFilter) -> Result<u64> {
        let mut p = call_filter_params(f);
        p["method"] = json!("calls");
        p["count"] = json!(true);
        let v: serde_json::Value = serde_json::from_slice(&self.call(p)?)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        v["count"]
            .as_u64()
            .ok_or_else(|| Error::InvalidArgument(format!("calls count: {v}")))
    }

    /// How many tool calls match `f`, per value of `by` (most first).
    pub fn count_calls_by(
        &self,
        f: &auditlog::query::CallFilter,
        by: auditlog::query::CallKey,
    ) -> Result<Vec<(String, u64)>> {
        let mut p = call_filter_params(f);
        p["method"] = json!("calls");
        p["count"] = json!(true);
        p["by"] = json!(by.name());
        let v: Vec<serde_json::Value> = serde_json::from_slice(&self.call(p)?)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        v.iter()
            .map(|g| match (g[by.name()].as_str(), g["count"].as_u64()) {
                (Some(k), Some(n)) => Ok((k.to_string(), n)),
                _ => Err(Error::InvalidArgument(format!("calls count by: {g}"))),
            })
            .collect()
    }

    /// Drop whole sealed segments whose newest event is older than
    /// `cutoff` (µs), as `AuditStore::purge_older_than`; the report as
    /// `auditlog retain` prints it.
    pub fn purge_older_than(&self, cutoff: Micros) -> Result<serde_json::Value> {
        let body = self.call(json!({"method": "purge_older_than", "before": cutoff}))?;
        serde_json::from_slice(&body).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// `stats` as the command line prints it (a JSON object).
    pub fn stats(&self) -> Result<serde_json::Value> {
        let body = self.call(json!({"method": "stats"}))?;
        serde_json::from_slice(&body).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// Check every frame and the integrity chain (as `auditlog verify`;
    /// `expect`: a digest anchored earlier, in hex).
    pub fn verify(&self, expect: Option<&str>) -> Result<serde_json::Value> {
        let body = self.call(json!({"method": "verify", "expect": expect}))?;
        serde_json::from_slice(&body).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// The server's counters (appended, durable, rejected, queue depth...).
    pub fn counters(&self) -> Result<serde_json::Value> {
        let body = self.call(json!({"method": "counters"}))?;
        serde_json::from_slice(&body).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// A connection of its own for pipelined appends (many requests in
    /// flight, answers in order): the fastest way to stream batches.
    pub fn pipeline(&self) -> Result<Pipeline> {
        let conn = UnixStream::connect(&self.cfg.path)
            .map_err(|e| io_err(&self.cfg.path, "connecting", e))?;
        let reader = conn
            .try_clone()
            .map_err(|e| io_err(&self.cfg.path, "connecting", e))?;
        Ok(Pipeline {
            writer: std::io::BufWriter::with_capacity(256 << 10, conn),
            reader: std::io::BufReader::with_capacity(64 << 10, reader),
            next_id: 1,
            path: self.cfg.path.clone(),
        })
    }
}

/// Pipelined appends on one connection: `send` many, then `recv` their
/// answers in the order sent. No retries here: a caller that wants them
/// keeps its batches and keys and sends again through [`Client`].
pub struct Pipeline {
    writer: std::io::BufWriter<UnixStream>,
    reader: std::io::BufReader<UnixStream>,
    next_id: u64,
    path: PathBuf,
}

impl Pipeline {
    /// Queue a batch (written when the buffer fills or on `flush`); its
    /// request id.
    pub fn send(&mut self, batch: &EncodedBatch, key: &str) -> Result<u64> {
        use std::io::Write;
        proto::check_key(key.as_bytes()).map_err(Error::InvalidArgument)?;
        let id = self.next_id;
        self.next_id += 1;
        let mut head = Vec::with_capacity(proto::HEADER + key.len());
        proto::write_header(
            &mut head,
            op::APPEND_FRAMES,
            id,
            key.as_bytes(),
            batch.bytes(),
        );
        let frames = batch.frames();
        let sent = if frames.len() < DIRECT_WRITE_BYTES {
            self.writer
                .write_all(&head)
                .and_then(|_| self.writer.write_all(frames))
        } else {
            // A large batch goes to the socket as it is: what is buffered
            // first, then header and frames in one vectored write, instead
            // of being copied through the buffer (or written in two calls).
            self.writer
                .flush()
                .and_then(|_| write_all_vectored(self.writer.get_mut(), &head, frames))
        };
        sent.map_err(|e| io_err(&self.path, "sending", e))?;
        Ok(id)
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        use std::io::Write;
        self.writer
            .flush()
            .map_err(|e| io_err(&self.path, "sending", e))
    }

    /// The next answer: the request id and its outcome.
    pub fn recv(&mut self) -> Result<(u64, Result<Ack>)> {
        let f = proto::read_frame(&mut self.reader, proto::MAX_RESPONSE_BYTES)
            .map_err(|e| io_err(&self.path, "no answer", e))?;
        let outcome = match f.kind {
            status::OK => ack(&f.body),
            other => Err(answer_error(other, &f.body)),
        };
        Ok((f.id, outcome))
    }
}

/// Batches at least this large skip the pipeline's write buffer.
const DIRECT_WRITE_BYTES: usize = 16 << 10;

/// `head` then `body`, whole, in as few `writev` calls as the socket takes.
fn write_all_vectored(
    w: &mut impl std::io::Write,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    let mut bufs = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
    let mut bufs = &mut bufs[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn ack(body: &[u8]) -> Result<Ack> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        Error::InvalidArgument(format!("the server's answer could not be read: {e}"))
    })?;
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    Ok(Ack {
        lsns: LsnRange {
            first: n("first_lsn"),
            last: n("last_lsn"),
        },
        events: n("events"),
        duplicate: v
            .get("duplicate")
            .and_then(|d| d.as_bool())
            .unwrap_or(false),
    })
}

/// Back-pressure that outlasted the retries: the embedded store's
/// "queue full" (the server's queue, as far as the answer says).
fn busy_error(v: &serde_json::Value) -> Error {
    let n = |k: &str| v.get(k).and_then(|c| c.as_u64()).unwrap_or(0) as usize;
    Error::QueueFull {
        entries: n("queue_depth"),
        bytes: 0,
        capacity: n("queue_capacity"),
        max_bytes: 0,
    }
}

/// A non-OK answer as the engine's error (the same types as embedded).
fn answer_error(kind: u8, body: &[u8]) -> Error {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let msg = v
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or("no reason given")
        .to_string();
    match kind {
        status::BAD_REQUEST => match (
            v.get("record").and_then(|r| r.as_u64()),
            v.get("field").and_then(|f| f.as_str()),
        ) {
            (Some(index), Some(field)) => Error::InvalidEvent {
                index: index as usize,
                source: EventError::new(
                    field,
                    v.get("reason").and_then(|r| r.as_str()).unwrap_or(&msg),
                ),
            },
            _ => Error::InvalidArgument(msg),
        },
        status::NOT_FOUND => Error::NotFound(msg),
        status::TOO_LARGE => Error::InvalidArgument(msg),
        status::BUSY => busy_error(&v),
        _ => Error::io(
            "auditlog serve",
            std::io::Error::other(format!("status {kind}: {msg}")),
        ),
    }
}

/// A `calls` filter as the server's parameters (docs/protocol.md).
fn call_filter_params(f: &auditlog::query::CallFilter) -> serde_json::Value {
    json!({
        "tool": f.tool, "engine": f.engine, "channel": f.channel, "caller": f.caller,
        "workspace": f.workspace, "status": f.status, "error_type": f.error_type,
        "run_id": f.run_id, "since": f.since, "until": f.until,
        "include_dry_run": f.include_dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::write_all_vectored;

    /// Takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        interrupted: bool,
    }

    impl std::io::Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.write_vectored(&[std::io::IoSlice::new(buf)])
        }

        /// The first call is interrupted (EINTR), as a signal would.
        fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                (n, left) = (n + take, left - take);
            }
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_vectored_write_sends_header_and_body_whole_however_the_socket_splits_it() {
        let head: Vec<u8> = (0..20).collect();
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for step in [1, 3, 19, 20, 21, 500, 4096] {
            let mut w = Trickle {
                out: Vec::new(),
                step,
                interrupted: false,
            };
            write_all_vectored(&mut w, &head, &body).unwrap();
            assert_eq!(w.out.len(), head.len() + body.len());
            assert_eq!(&w.out[..20], &head[..]);
            assert_eq!(&w.out[20..], &body[..]);
        }
    }

    #[test]
    fn a_socket_that_takes_nothing_is_an_error_not_a_loop() {
        let mut w = Trickle {
            out: Vec::new(),
            step: 0,
            interrupted: true,
        };
        let e = write_all_vectored(&mut w, b"h", b"body").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    }
}
