//! The one writer: the log (through the embedded `AuditStore`), its
//! full-text indexer, the idempotency keys, and the path from a request's
//! events to an acknowledgement after fdatasync. Every front end (socket,
//! HTTP, OTLP) appends and queries through here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog::fulltext::{Filters, FullTextError, FullTextOptions, Hit};
use auditlog::{
    AuditStore, Config, Durability, EncodedBatch, Event, FullPolicy, LogReader, Receipt,
    ReplayRange, StoreConfig,
};
use tokio::sync::Semaphore;

use crate::acker::Acker;
use crate::api::{ApiError, ApiResult, Kind};
use crate::config::ServeConfig;
use crate::dedup::{Claim, Dedup, Done, Owner, Seen};
use crate::metrics::{self, Metrics};
use crate::pool::BufferPool;
use crate::prepare::{self, Marker};

/// What a request asks to append.
pub enum Body {
    /// Parsed events (JSON, OTLP).
    Events(Vec<Event>),
    /// Encoded event frames, not yet checked (socket APPEND_FRAMES), and
    /// their number by the length fields (`prepare::count_frames`, counted
    /// once: `None` if they do not tile the body).
    Frames(Vec<u8>, Option<usize>),
}

impl Body {
    fn len(&self) -> ApiResult<u64> {
        match self {
            Body::Events(e) => Ok(e.len() as u64),
            Body::Frames(_, n) => n.map(|n| n as u64).ok_or_else(|| {
                ApiError::record(
                    0,
                    None,
                    "frame",
                    "the frames' length fields do not tile the body (truncated or corrupt)",
                )
            }),
        }
    }

    fn encode(
        &self,
        start: usize,
        marker: Option<&Marker>,
        redaction: Option<&Arc<auditlog::RedactionPolicy>>,
    ) -> ApiResult<EncodedBatch> {
        match self {
            Body::Events(e) => prepare::encode_events(e.clone(), start, marker, redaction),
            Body::Frames(b, _) => prepare::encode_frames(b.clone(), start, marker, redaction),
        }
    }

    /// `encode` for the last use of the body: frames are not copied.
    fn into_batch(
        self,
        start: usize,
        marker: Option<&Marker>,
        redaction: Option<&Arc<auditlog::RedactionPolicy>>,
    ) -> ApiResult<EncodedBatch> {
        match self {
            Body::Events(e) => prepare::encode_events(e, start, marker, redaction),
            Body::Frames(b, _) => prepare::encode_frames(b, start, marker, redaction),
        }
    }
}

/// An append's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub events: u64,
    pub duplicate: bool,
}

impl Appended {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"first_lsn\":{},\"last_lsn\":{},\"events\":{},\"duplicate\":{}}}",
            self.first_lsn, self.last_lsn, self.events, self.duplicate
        )
    }
}

pub struct Backend {
    store: AuditStore,
    dedup: Dedup,
    acker: Acker,
    pub metrics: Metrics,
    pub cfg: ServeConfig,
    /// Request bytes held at once (KiB permits).
    budget: Arc<Semaphore>,
    /// Set when the server stops taking writes.
    pub stopping: std::sync::atomic::AtomicBool,
    pub started: Instant,
    /// Socket request buffers, given back by the writer after each append.
    pub pool: Arc<BufferPool>,
    /// `pool`'s hook, made once and attached to every submitted batch.
    recycler: auditlog::FrameRecycler,
}

/// Request buffers kept for reuse at most (bytes of capacity; also never
/// more than `--max-inflight-bytes`).
const POOL_MAX_BYTES: usize = 64 << 20;

fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as usize) as u32
}

impl Backend {
    /// Open the log (creating it), start search, rebuild the keys.
    pub fn open(cfg: ServeConfig) -> Result<Backend, String> {
        let mut log = Config::new(&cfg.dir);
        log.durability = Durability::EveryBatch;
        log.on_full = FullPolicy::Block;
        log.queue_capacity = cfg.queue_capacity;
        log.redaction = cfg.redaction.clone();
        // One request is one append: let the request limit be the bound.
        // (Within the engine's own caps: 1 GiB and 2^24 events per append.)
        log.max_append_bytes = log
            .max_append_bytes
            .max(cfg.max_request_bytes + (1 << 20))
            .min(1 << 30);
        log.max_append_events = log
            .max_append_events
            .max(cfg.max_request_bytes / 16)
            .min(1 << 24);
        // The request budget (--max-inflight-bytes) is the bound that
        // answers busy; the queue's own byte bound must not block first.
        log.queue_max_bytes = log
            .queue_max_bytes
            .max(cfg.max_inflight_bytes + cfg.max_request_bytes);
        let mut store_cfg = StoreConfig::new(&cfg.dir);
        store_cfg.log = log;
        store_cfg.search = cfg.search.then(FullTextOptions::default);
        let store = AuditStore::open(store_cfg).map_err(|e| e.to_string())?;
        let r = store.log().recovery().clone();
        if let Some(cut) = &r.cut {
            tracing::warn!(
                segment = %cut.segment,
                bytes = cut.quarantine_bytes,
                quarantine = %cut.quarantine,
                "recovered: cut a torn tail into quarantine (events never acknowledged)"
            );
        }
        if let Some(e) = store.search_error() {
            tracing::warn!(error = %e, "full-text search is not running");
        }
        let acker = Acker::start().map_err(|e| format!("starting the acker thread: {e}"))?;
        let pool = BufferPool::new(cfg.max_inflight_bytes.min(POOL_MAX_BYTES));
        let b = Backend {
            recycler: pool.recycler(),
            pool,
            budget: Arc::new(Semaphore::new(kib(cfg.max_inflight_bytes) as usize)),
            dedup: Dedup::new(cfg.dedup_window, cfg.dedup_max_keys),
            store,
            acker,
            metrics: Metrics::default(),
            cfg,
            stopping: std::sync::atomic::AtomicBool::new(false),
            started: Instant::now(),
        };
        b.rebuild_keys()
            .map_err(|e| format!("reading idempotency keys from the log: {e}"))?;
        Ok(b)
    }

    pub fn store(&self) -> &AuditStore {
        &self.store
    }

    pub fn reader(&self) -> LogReader {
        self.store.log().reader()
    }

    /// Scan the newest `dedup_window` events for keys (docs/protocol.md).
    fn rebuild_keys(&self) -> auditlog::Result<()> {
        let t = Instant::now();
        let reader = self.reader();
        let head = reader.head().next_lsn;
        let from = head
            .saturating_sub(self.dedup.window())
            .max(reader.first_lsn());
        let mut found = 0u64;
        let range = ReplayRange {
            from_lsn: Some(from),
            ..ReplayRange::default()
        };
        for item in reader.replay(range) {
            let (lsn, ev) = item?;
            if let Some(m) = Marker::of(&ev) {
                self.dedup.seen(&m.key, lsn, m.at, m.n);
                found += 1;
            }
        }
        tracing::info!(
            events = head - from,
            keys = found,
            ms = t.elapsed().as_millis() as u64,
            "idempotency keys read from the log"
        );
        Ok(())
    }

    /// Hold `bytes` of the in-flight budget while a request is worked on;
    /// busy if it stays taken for `queue_wait`.
    pub async fn reserve(&self, bytes: usize) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        let n = kib(bytes).max(1);
        let got = tokio::time::timeout(
            self.cfg.queue_wait,
            self.budget.clone().acquire_many_owned(n),
        )
        .await;
        match got {
            Ok(Ok(p)) => Ok(p),
            _ => {
                metrics::inc(&self.metrics.busy);
                Err(ApiError::busy(
                    "the server holds as many request bytes as it may (--max-inflight-bytes); retry",
                    100,
                ))
            }
        }
    }

    pub fn check_open(&self) -> ApiResult<()> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(ApiError {
                retry_after_ms: Some(1000),
                ..ApiError::new(
                    Kind::Unavailable,
                    "the server is stopping; retry against its successor",
                )
            });
        }
        if let Some(why) = self.store.log().failed() {
            return Err(ApiError {
                retry_after_ms: Some(1000),
                ..ApiError::new(
                    Kind::Unavailable,
                    format!("the log's writer failed and the server must be restarted: {why}"),
                )
            });
        }
        Ok(())
    }

    /// Append a request's events and wait until they are durable. Runs in
    /// a task of its own: a client that goes away mid-request does not
    /// stop it half-way (its key still ends up recorded).
    pub async fn append(self: &Arc<Self>, body: Body, key: Option<String>) -> ApiResult<Appended> {
        self.check_open()?;
        let me = self.clone();
        let task = tokio::spawn(async move {
            let r = Backend::append_inner(&me, body, key).await;
            match &r {
                Ok(a) if a.duplicate => metrics::inc(&me.metrics.duplicates),
                Ok(a) => metrics::add(&me.metrics.events_stored, a.events),
                Err(_) => {}
            }
            r
        });
        task.await
            .unwrap_or_else(|e| Err(ApiError::failed(format!("append task failed: {e}"))))
    }

    async fn append_inner(
        self: &Arc<Self>,
        body: Body,
        key: Option<String>,
    ) -> ApiResult<Appended> {
        let n = body.len()?;
        if n == 0 {
            let head = self.store.log().head().next_lsn;
            return Ok(Appended {
                first_lsn: head,
                last_lsn: head.saturating_sub(1),
                events: 0,
                duplicate: false,
            });
        }
        let Some(key) = key else {
            let batch = body.into_batch(0, None, self.cfg.redaction.as_ref())?;
            let receipt = self.submit(batch).await?;
            let r = self.acker.wait(receipt).await.map_err(ApiError::from)?;
            return Ok(Appended {
                first_lsn: r.first,
                last_lsn: r.last,
                events: n,
                duplicate: false,
            });
        };
        loop {
            let (owner, before) = match self.dedup.claim(&key, n) {
                Claim::Done(d) => return Ok(dup(d)),
                Claim::Mismatch { stored_n } => {
                    return Err(ApiError::bad(format!(
                        "idempotency key {key:?} was used for a request of {stored_n} events; this one has {n}"
                    )))
                }
                Claim::Wait(mut rx) => {
                    let _ = rx.changed().await;
                    continue;
                }
                Claim::New(owner) => (owner, None),
                Claim::Check(owner, seen) => (owner, Some(seen)),
            };
            return self.append_owned(body, &key, n, owner, before).await;
        }
    }

    async fn append_owned(
        self: &Arc<Self>,
        body: Body,
        key: &str,
        n: u64,
        owner: Owner,
        before: Option<Seen>,
    ) -> ApiResult<Appended> {
        // What of the request is stored already (after a restart or a
        // failed write): compare, then append the rest.
        // That reads the log (disk): on the blocking pool, which keeps its
        // threads between calls, never `block_in_place` (see `submit`).
        let (body, start, prior) = match &before {
            None => (body, 0, None),
            Some(seen) => match self.stored_prefix_blocking(body, key, seen).await {
                Ok((body, (start, prior))) => (body, start, prior),
                Err(e) => {
                    self.dedup.release(key, before, owner);
                    return Err(e);
                }
            },
        };
        if start == n {
            let (first, last) = prior.unwrap_or((0, 0));
            let d = Done {
                first_lsn: first,
                last_lsn: last,
                events: n,
            };
            self.dedup.complete(key, d, owner);
            return Ok(dup(d));
        }
        let marker = Marker {
            key: key.to_string(),
            n,
            at: start,
        };
        let batch =
            match body.into_batch(start as usize, Some(&marker), self.cfg.redaction.as_ref()) {
                Ok(b) => b,
                Err(e) => {
                    self.dedup.release(key, before, owner);
                    return Err(e);
                }
            };
        let from_lsn = self.store.log().head().next_lsn;
        let receipt = match self.submit(batch).await {
            Ok(r) => r,
            Err(e) => {
                self.dedup.release(key, before, owner);
                return Err(e);
            }
        };
        match self.acker.wait(receipt).await {
            Ok(r) => {
                let d = Done {
                    first_lsn: prior.map_or(r.first, |p| p.0),
                    last_lsn: r.last,
                    events: n,
                };
                self.dedup.complete(key, d, owner);
                self.dedup.evict(r.last + 1);
                Ok(Appended {
                    first_lsn: d.first_lsn,
                    last_lsn: d.last_lsn,
                    events: n,
                    duplicate: false,
                })
            }
            Err(e) => {
                metrics::inc(&self.metrics.append_failures);
                tracing::error!(error = %e, key, "an append failed after reaching the log");
                self.dedup
                    .failed(key, before.unwrap_or_default(), n, from_lsn, owner);
                let mut err = ApiError::from(e);
                if err.kind == Kind::Failed || err.kind == Kind::Unavailable {
                    err.retry_after_ms = Some(1000);
                }
                Err(err)
            }
        }
    }

    /// `stored_prefix` on the blocking pool; the body comes back with
    /// the answer (a task that died is a failed request, not a panic).
    async fn stored_prefix_blocking(
        self: &Arc<Self>,
        body: Body,
        key: &str,
        seen: &Seen,
    ) -> ApiResult<(Body, (u64, Option<(u64, u64)>))> {
        let (me, key, seen) = (self.clone(), key.to_string(), seen.clone());
        tokio::task::spawn_blocking(move || {
            let r = me.stored_prefix(&body, &key, &seen)?;
            Ok((body, r))
        })
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::failed(format!(
                "reading the log for a retried key failed: {e}"
            )))
        })
    }

    /// How many of the request's events are stored (a prefix), and the
    /// LSNs of its first and last stored event.
    fn stored_prefix(
        &self,
        body: &Body,
        key: &str,
        seen: &Seen,
    ) -> ApiResult<(u64, Option<(u64, u64)>)> {
        let reader = self.reader();
        let head = reader.head().next_lsn;
        let mut markers = seen.markers.clone();
        if let Some(from) = seen.scan_from {
            let range = ReplayRange {
                from_lsn: Some(from),
                ..ReplayRange::default()
            };
            for item in reader.replay(range) {
                let (lsn, ev) = item.map_err(ApiError::from)?;
                if lsn >= head {
                    break;
                }
                if Marker::of(&ev).is_some_and(|m| m.key == key) {
                    markers.push((lsn, Marker::of(&ev).map_or(0, |m| m.at)));
                }
            }
        }
        // The request's own frames (redacted as stored), one per event.
        let own = body.encode(0, None, self.cfg.redaction.as_ref())?;
        let frames = split_frames(own.frames());
        let n = frames.len() as u64;
        // Stored spans [at, at+m) with the LSN of their first event.
        let mut spans: Vec<(u64, u64, u64)> = Vec::new();
        for (lsn, at) in markers {
            let range = ReplayRange {
                from_lsn: Some(lsn),
                ..ReplayRange::default()
            };
            let mut m = 0u64;
            for item in reader.replay(range).take((n.saturating_sub(at)) as usize) {
                let (_, mut ev) = item.map_err(ApiError::from)?;
                prepare::strip_marker(&mut ev);
                let again =
                    EncodedBatch::encode(std::slice::from_ref(&ev)).map_err(ApiError::from)?;
                if frames.get((at + m) as usize) != Some(&again.frames()) {
                    break;
                }
                m += 1;
            }
            if m > 0 {
                spans.push((at, at + m, lsn));
            }
        }
        spans.sort();
        let mut end = 0u64;
        let mut first = None;
        let mut last = None;
        for (a, b, lsn) in spans {
            if a > end {
                break;
            }
            if a == 0 && first.is_none() {
                first = Some(lsn);
            }
            if b > end {
                last = Some(lsn + (b - a) - 1);
                end = b;
            }
        }
        Ok((end, first.zip(last)))
    }

    /// Hand a batch to the log, waiting (asynchronously) up to
    /// `queue_wait` for room in its queue; busy after that.
    ///
    /// Never blocks the async thread: a full queue hands the batch back
    /// (`try_append_encoded`) and the task sleeps before the next try.
    /// (Not `block_in_place`: each call handed the runtime's worker to a
    /// fresh thread, the runtime grew to a dozen threads, and every
    /// thread's allocator took fresh pages that the kernel had to zero:
    /// docs/benchmarks.md, "serve26".)
    async fn submit(&self, mut batch: EncodedBatch) -> ApiResult<Receipt> {
        // Once the writer has copied the frames (or refused the batch) the
        // buffer goes back to the pool; a batch refused before the queue
        // is simply freed.
        batch.recycle_frames_to(self.recycler.clone());
        let cap = self.cfg.queue_capacity;
        let deadline = Instant::now() + self.cfg.queue_wait;
        let mut pause = Duration::from_micros(200);
        loop {
            match self.store.log().try_append_encoded(batch) {
                Ok(Ok(receipt)) => return Ok(receipt),
                Ok(Err(back)) => batch = back,
                Err(e) => return Err(ApiError::from(e)),
            }
            if Instant::now() >= deadline {
                metrics::inc(&self.metrics.busy);
                return Err(ApiError::busy(
                    format!("the ingest queue is full ({cap} appends waiting); retry"),
                    200,
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Append events whose runs must exist: every event but a start
    /// names a run that is stored, or started earlier in the same request
    /// (the embedded store's `require_started`). Otherwise `NOT_FOUND`
    /// naming the first such run, and nothing is written.
    pub async fn append_require_run(
        self: &Arc<Self>,
        events: Vec<Event>,
        key: Option<String>,
    ) -> ApiResult<Appended> {
        let needed = runs_needed(&events);
        if !needed.is_empty() {
            let me = self.clone();
            let missing = tokio::task::spawn_blocking(move || me.first_unknown_run(needed))
                .await
                .unwrap_or_else(|e| Err(ApiError::failed(e.to_string())))?;
            if let Some(id) = missing {
                return Err(ApiError::new(
                    Kind::NotFound,
                    format!("no run {id:?} is stored: its events need its start first"),
                ));
            }
        }
        self.append(Body::Events(events), key).await
    }

    /// The first of `ids` that names no stored run. A run's start may
    /// still be on its way into the log (acknowledged to another client a
    /// moment ago): ask again after a flush before calling it unknown.
    fn first_unknown_run(&self, ids: Vec<String>) -> ApiResult<Option<String>> {
        let mut unknown = Vec::new();
        for id in ids {
            if self.store.get_run(&id)?.is_none() {
                unknown.push(id);
            }
        }
        if unknown.is_empty() {
            return Ok(None);
        }
        self.store.flush()?;
        for id in unknown {
            if self.store.get_run(&id)?.is_none() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Full-text search (the store's indexer), after waiting up to
    /// `catch_up` for it to reach what is stored now.
    pub fn search(
        &self,
        query: &str,
        filters: &Filters,
        limit: usize,
        catch_up: Duration,
    ) -> Result<Vec<Hit>, FullTextError> {
        self.store.wait_searchable(catch_up)?;
        self.store.search(query, filters, limit)
    }

    /// How far search is behind the log: (events, seconds).
    pub fn search_lag(&self) -> Option<(u64, f64)> {
        self.store.search_lag().ok().map(|l| (l.events, l.seconds))
    }

    /// Events in sealed segments whose index file is not built yet.
    pub fn index_lag(&self) -> u64 {
        self.reader()
            .segments()
            .iter()
            .filter(|s| s.sealed)
            .filter(|s| {
                let stem = s.name.trim_end_matches(".seg");
                !s.path.with_file_name(format!("{stem}.idx")).exists()
            })
            .map(|s| s.count)
            .sum()
    }

    /// Stop taking writes, make everything durable, close the log.
    pub fn close(self) -> Result<(), String> {
        drop(self.acker);
        self.store.flush().map_err(|e| e.to_string())?;
        self.store.close().map_err(|e| e.to_string())
    }
}

/// The runs a checked append needs stored: those of its events other
/// than starts, unless started earlier in the request (each id once).
fn runs_needed(events: &[Event]) -> Vec<String> {
    let mut started = std::collections::HashSet::new();
    let mut needed = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ev in events {
        let id = ev.run_id.as_str();
        if matches!(ev.data, auditlog::EventData::RunStarted(_)) {
            started.insert(id);
        } else if matches!(ev.data, auditlog::EventData::ToolCall(_)) {
            // A tool call needs no run (docs/tool-calls.md).
        } else if !started.contains(id) && seen.insert(id) {
            needed.push(id.to_string());
        }
    }
    needed
}

fn dup(d: Done) -> Appended {
    Appended {
        first_lsn: d.first_lsn,
        last_lsn: d.last_lsn,
        events: d.events,
        duplicate: true,
    }
}

/// Frames by their length fields.
fn split_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
            as usize;
        let end = (off + 8 + len).min(bytes.len());
        out.push(&bytes[off..end]);
        off = end;
    }
    out
}

impl Backend {
    /// Idempotency keys remembered now.
    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }
}
