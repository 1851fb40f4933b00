//! Self-healing writes for [`super::AuditStore`].
//!
//! A failed fdatasync stops a [`Log`]'s writer for good (the kernel may
//! have dropped the dirty pages, so nothing written since the last good
//! sync may be called durable). The store does not stop with it: every
//! append it accepts is kept in memory until its receipt says durable (the
//! *keeper* thread watches the receipts in order). When one fails the
//! keeper
//!
//! 1. takes the failed log out of service (appends from then on wait in a
//!    bounded backlog) and closes it;
//! 2. reopens the log with backoff, first rewriting and syncing every
//!    segment that held events not yet durable, so that recovery finds
//!    exactly what is on disk (`Config::resync_from_seq`);
//! 3. compares the events whose receipts failed with what the reopened log
//!    holds past the last durable LSN: those found are durable now, the
//!    others are appended again (at least once, never silently dropped);
//! 4. appends the backlog, in order, and is healthy again.
//!
//! Every change of [`Health`] is logged (`tracing`) and given to the
//! store's callback. Counters say what was appended, made durable,
//! retried and dropped (per reason). See docs/reliability.md.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::codec;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::json::validate_event;
use crate::event::time::now_micros;
use crate::event::{Event, Micros};
#[cfg(feature = "search")]
use crate::fulltext::{FullText, FullTextOptions, Indexer};
use crate::log::Log;
use crate::query::{BackgroundIndexer, Engine, IndexOnSeal};
use crate::reader::{LogReader, ReplayRange};
use crate::receipt::Receipt;

/// The store's write health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Appends go to the log and become durable.
    Ok,
    /// A write or sync failed at `since`; the store is reopening the log.
    /// Appends are kept in the backlog meanwhile.
    Degraded { since: Micros, reason: String },
    /// Reopening failed too, `attempts` times so far; it goes on with
    /// backoff. `last_error` is the latest reason.
    Failing {
        since: Micros,
        last_error: String,
        attempts: u64,
    },
}

impl Health {
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok)
    }

    /// `ok`, `degraded` or `failing`.
    pub fn state(&self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded { .. } => "degraded",
            Health::Failing { .. } => "failing",
        }
    }
}

/// Called on every change of [`Health`] (from the keeper thread).
pub type HealthHook = Arc<dyn Fn(&Health) + Send + Sync>;

/// How the store heals (see the module docs).
#[derive(Clone, Debug)]
pub struct HealingConfig {
    /// Off: a failed write stops the store's writes, as it stops a `Log`.
    pub enabled: bool,
    /// First wait before reopening; doubled after each failed attempt.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Appends kept while degraded; past this they are refused (and, in
    /// fire-and-forget mode, counted as dropped: `backlog_full`).
    pub backlog_events: usize,
    /// How long a `wait_durable` append waits for an event that has to be
    /// retried before it returns an error (the store keeps retrying it).
    pub durable_wait: Duration,
}

impl Default for HealingConfig {
    fn default() -> Self {
        HealingConfig {
            enabled: true,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            backlog_events: 100_000,
            durable_wait: Duration::from_secs(60),
        }
    }
}

/// Events the store could not store, by reason (never silent: also
/// logged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// The log's queue was full and its policy is drop-and-count.
    pub queue_full: u64,
    /// Degraded, and the backlog was full.
    pub backlog_full: u64,
    /// Still not stored when the store was closed while failing.
    pub closed_unhealed: u64,
    /// Refused by the reopened log when retried (cannot happen for an
    /// event accepted before; counted should it ever).
    pub invalid_on_retry: u64,
}

impl DropCounts {
    pub fn total(&self) -> u64 {
        self.queue_full + self.backlog_full + self.closed_unhealed + self.invalid_on_retry
    }
}

/// What the write path has done (all since the store opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounters {
    /// Events the store accepted (to the log or the backlog).
    pub appended: u64,
    /// Of those, known durable.
    pub durable: u64,
    /// Appended again after a failure (not found on disk on reopen).
    pub retried: u64,
    /// Times the log was reopened after a failure.
    pub recoveries: u64,
    /// Events waiting in the backlog now.
    pub backlog: u64,
    pub dropped: DropCounts,
}

/// Why events a `wait_durable` caller waits on will never be durable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
enum TicketError {
    #[error("dropped: the queue was full")]
    QueueFull,
    /// The reopened log refused them (invalid, or too large).
    #[error("{0}")]
    Refused(Arc<Error>),
    /// The store closed first; why the log could not be reopened.
    #[error("the store closed before the log could be reopened: {0}")]
    Closed(String),
}

/// A `wait_durable` caller's handle on events being retried.
#[derive(Default)]
struct Ticket {
    outcome: Mutex<Option<std::result::Result<(), TicketError>>>,
    cv: Condvar,
}

impl Ticket {
    fn settle(&self, r: std::result::Result<(), TicketError>) {
        let mut g = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(r);
        }
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut g = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = g.as_ref() {
                return r.clone().map_err(|e| Error::WriterFailed(e.to_string()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WriterFailed(format!(
                    "not durable within {timeout:?}: the log is being reopened; the store keeps the events and retries them"
                )));
            }
            g = match self.cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// The events of one accepted append: most appends carry one (kept
/// inline, no list to allocate per event; moved once, never copied).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Evs {
    One(Event),
    Many(Vec<Event>),
}

impl Evs {
    fn as_slice(&self) -> &[Event] {
        match self {
            Evs::One(e) => std::slice::from_ref(e),
            Evs::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn into_vec(self) -> Vec<Event> {
        match self {
            Evs::One(e) => vec![e],
            Evs::Many(v) => v,
        }
    }
}

/// Accepted events not yet known durable.
struct Kept {
    evs: Evs,
    ticket: Option<Arc<Ticket>>,
}

/// Events in the log's queue, with their receipt.
struct InFlight {
    kept: Kept,
    receipt: Receipt,
}

#[derive(Default)]
struct Counts {
    appended: AtomicU64,
    durable: AtomicU64,
    retried: AtomicU64,
    recoveries: AtomicU64,
    queue_full: AtomicU64,
    backlog_full: AtomicU64,
    closed_unhealed: AtomicU64,
    invalid_on_retry: AtomicU64,
}

/// How the store's log is (re)opened.
#[derive(Clone)]
pub(crate) struct Setup {
    pub log: Config,
    #[cfg(feature = "search")]
    pub search: Option<FullTextOptions>,
}

/// The full-text side: searched through the clone, followed by the
/// indexer thread (whose lag and catch-up waits need it exclusively).
#[cfg(feature = "search")]
pub(crate) struct SearchSide {
    pub ft: FullText,
    pub ix: Mutex<Indexer>,
}

/// A log as opened: the log, the indexer that follows it, and search.
struct Opened {
    log: Log,
    indexer: BackgroundIndexer,
    #[cfg(feature = "search")]
    search: Option<Indexer>,
    #[cfg(feature = "search")]
    search_error: Option<String>,
}

/// The store's write side: the log (replaced when healed), what follows
/// it (indexer, search), the backlog, the health state. Shared with the
/// keeper and retention threads.
pub(crate) struct Writes {
    /// The log: while degraded, the failed one, shut down in place (its
    /// appends fail, its reader reads what it committed), until the
    /// reopened one takes its place.
    log: RwLock<Log>,
    /// False from a failure until the reopened log is in service.
    in_service: AtomicBool,
    indexer: Mutex<Option<BackgroundIndexer>>,
    #[cfg(feature = "search")]
    search: RwLock<Option<SearchSide>>,
    #[cfg(feature = "search")]
    search_error: Mutex<Option<String>>,
    pub(crate) engine: Arc<Mutex<Engine>>,
    setup: Setup,
    cfg: HealingConfig,
    backlog: Mutex<VecDeque<Kept>>,
    tx: Sender<InFlight>,
    health: Mutex<Health>,
    on_change: Option<HealthHook>,
    counts: Counts,
    closing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The log, with the indexer (and search) that follow it, opened from
/// `setup`; the indexer's engine is `engine` (its contents replaced) or a
/// new one.
fn open_log(
    setup: &Setup,
    engine: Option<&Arc<Mutex<Engine>>>,
    resync_from_seq: Option<u64>,
) -> Result<Opened> {
    let mut cfg = setup.log.clone();
    cfg.resync_from_seq = resync_from_seq;
    let on_seal = IndexOnSeal::hook(&mut cfg);
    #[cfg(feature = "search")]
    let (log, search, search_error) = match &setup.search {
        Some(opts) => {
            let o = crate::fulltext::open_log(cfg, opts)?;
            (o.log, o.search, o.search_error.map(|e| e.to_string()))
        }
        None => (Log::open(cfg)?, None, None),
    };
    #[cfg(not(feature = "search"))]
    let log = Log::open(cfg)?;
    let indexer = match engine {
        Some(e) => on_seal.start_on(&log, e.clone())?,
        None => on_seal.start(&log)?,
    };
    Ok(Opened {
        log,
        indexer,
        #[cfg(feature = "search")]
        search,
        #[cfg(feature = "search")]
        search_error,
    })
}

impl Writes {
    /// Open the log and start the keeper (if healing is on).
    pub(crate) fn open(
        setup: Setup,
        cfg: HealingConfig,
        on_change: Option<HealthHook>,
    ) -> Result<(Arc<Writes>, Option<std::thread::JoinHandle<()>>)> {
        let o = open_log(&setup, None, None)?;
        let engine = o.indexer.engine().clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        let w = Arc::new(Writes {
            log: RwLock::new(o.log),
            in_service: AtomicBool::new(true),
            indexer: Mutex::new(Some(o.indexer)),
            #[cfg(feature = "search")]
            search: RwLock::new(o.search.map(|ix| SearchSide {
                ft: (*ix).clone(),
                ix: Mutex::new(ix),
            })),
            #[cfg(feature = "search")]
            search_error: Mutex::new(o.search_error),
            engine,
            setup,
            cfg,
            backlog: Mutex::new(VecDeque::new()),
            tx,
            health: Mutex::new(Health::Ok),
            on_change,
            counts: Counts::default(),
            closing: AtomicBool::new(false),
        });
        if !w.cfg.enabled {
            return Ok((w, None));
        }
        let keeper = w.clone();
        let handle = std::thread::Builder::new()
            .name("auditlog-keeper".into())
            .spawn(move || keeper.keep(rx))
            .map_err(|e| Error::io("starting the keeper thread", e))?;
        Ok((w, Some(handle)))
    }

    /// Run `f` on the log in service; an error while it is being reopened.
    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&Log) -> Result<T>) -> Result<T> {
        let g = self.log();
        if !self.is_healthy() {
            return Err(self.unavailable());
        }
        f(&g)
    }

    /// The log (while degraded: the failed one, shut down).
    pub(crate) fn log(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A reader of what the log in service has committed (while degraded,
    /// of what the failed log had).
    pub(crate) fn reader(&self) -> LogReader {
        self.log().reader()
    }

    /// Run `f` on the search side, if search runs.
    #[cfg(feature = "search")]
    pub(crate) fn with_search<T>(&self, f: impl FnOnce(Option<&SearchSide>) -> T) -> T {
        let g = self.search.read().unwrap_or_else(|p| p.into_inner());
        f(g.as_ref())
    }

    /// Why search is not running although it was asked for.
    #[cfg(feature = "search")]
    pub(crate) fn search_error(&self) -> Option<String> {
        lock(&self.search_error).clone()
    }

    fn unavailable(&self) -> Error {
        if self.closing.load(Ordering::Acquire) {
            return Error::Closed;
        }
        let h = self.health();
        Error::WriterFailed(format!(
            "the store's log is being reopened after a failure ({}): {}",
            h.state(),
            match &h {
                Health::Degraded { reason, .. } => reason.as_str(),
                Health::Failing { last_error, .. } => last_error.as_str(),
                Health::Ok => "",
            }
        ))
    }

    pub(crate) fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.in_service.load(Ordering::Acquire)
    }

    pub(crate) fn counters(&self) -> WriteCounters {
        let c = &self.counts;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriteCounters {
            appended: r(&c.appended),
            durable: r(&c.durable),
            retried: r(&c.retried),
            recoveries: r(&c.recoveries),
            backlog: lock(&self.backlog).iter().map(|k| k.evs.len() as u64).sum(),
            dropped: DropCounts {
                queue_full: r(&c.queue_full),
                backlog_full: r(&c.backlog_full),
                closed_unhealed: r(&c.closed_unhealed),
                invalid_on_retry: r(&c.invalid_on_retry),
            },
        }
    }

    /// Accept events (one append: consecutive LSNs): to the log, or
    /// (degraded) to the backlog. With `wait`, return once durable. The
    /// log's receipt, when they went to the log.
    pub(crate) fn submit(&self, mut evs: Evs, wait: bool) -> Result<Option<Receipt>> {
        // A loop, not a call to itself: the log can refuse while the store
        // still looks healthy (the keeper has not seen the failure yet), and
        // that may last many rounds (a recursion here overflowed the stack).
        loop {
            match self.submit_once(evs, wait)? {
                Ok(done) => return Ok(done),
                Err(again) => {
                    evs = again;
                    std::thread::yield_now();
                }
            }
        }
    }

    /// One try of [`Self::submit`]; `Err(evs)` when the store was healed
    /// meanwhile and the events should go to the log again.
    fn submit_once(
        &self,
        evs: Evs,
        wait: bool,
    ) -> Result<std::result::Result<Option<Receipt>, Evs>> {
        let evs = match self.try_log(evs, wait)? {
            Submitted::Done(receipt, ticket) => {
                if wait {
                    self.await_durable(&receipt, ticket)?;
                }
                return Ok(Ok(Some(receipt)));
            }
            Submitted::Degraded(evs) => *evs,
        };
        // Refused now, not when retried.
        for (index, ev) in evs.as_slice().iter().enumerate() {
            validate_event(ev).map_err(|source| Error::InvalidEvent { index, source })?;
        }
        let n = evs.len();
        let ticket = wait.then(|| Arc::new(Ticket::default()));
        {
            let mut backlog = lock(&self.backlog);
            // Healed meanwhile (the keeper drains the backlog under this
            // lock before it puts the log back): append in order.
            if self.is_healthy() {
                drop(backlog);
                return Ok(Err(evs));
            }
            if self.closing.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let held: usize = backlog.iter().map(|k| k.evs.len()).sum();
            if held + n > self.cfg.backlog_events {
                self.counts
                    .backlog_full
                    .fetch_add(n as u64, Ordering::Relaxed);
                return Err(Error::WriterFailed(format!(
                    "degraded and the backlog is full ({} events); the events were not stored",
                    self.cfg.backlog_events
                )));
            }
            backlog.push_back(Kept {
                evs,
                ticket: ticket.clone(),
            });
            self.counts.appended.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(t) = ticket {
            t.wait(self.cfg.durable_wait)?;
        }
        Ok(Ok(None))
    }

    /// Append a batch encoded by the caller to the log in service,
    /// counted like the store's own appends (appended, or dropped when the
    /// queue is full and its policy drops). Not kept for retry: while the
    /// store heals this fails with [`Error::WriterFailed`], and the caller
    /// still holds the batch's events.
    pub(crate) fn append_encoded(&self, batch: crate::log::EncodedBatch) -> Result<Receipt> {
        let n = batch.len() as u64;
        let receipt = self.with_log(|log| log.append_encoded(batch))?;
        let counter = if receipt.is_dropped() {
            &self.counts.queue_full
        } else {
            &self.counts.appended
        };
        counter.fetch_add(n, Ordering::Relaxed);
        Ok(receipt)
    }

    /// Append to the log in service, handing the receipt to the keeper.
    fn try_log(&self, evs: Evs, wait: bool) -> Result<Submitted> {
        let log = self.log();
        if !self.is_healthy() {
            if !self.cfg.enabled || self.closing.load(Ordering::Acquire) {
                return Err(self.unavailable());
            }
            return Ok(Submitted::Degraded(Box::new(evs)));
        }
        let appended = match &evs {
            Evs::One(ev) => log.append(ev),
            Evs::Many(v) => log.append_batch(v),
        };
        let receipt = match appended {
            Ok(r) => r,
            Err(Error::WriterFailed(_)) if self.cfg.enabled => {
                return Ok(Submitted::Degraded(Box::new(evs)));
            }
            Err(e) => return Err(e),
        };
        let n = evs.len() as u64;
        if receipt.is_dropped() {
            // Drop-and-count, as the caller's policy asked: the append
            // succeeds, the drop is counted, and waiting on the receipt
            // says `Dropped` (the log's own behaviour).
            self.counts.queue_full.fetch_add(n, Ordering::Relaxed);
            return Ok(Submitted::Done(receipt, None));
        }
        self.counts.appended.fetch_add(n, Ordering::Relaxed);
        if !self.cfg.enabled {
            return Ok(Submitted::Done(receipt, None));
        }
        let ticket = wait.then(|| Arc::new(Ticket::default()));
        // Sent while the log is held: a keeper that takes the log out
        // finds every receipt of it in the channel.
        let _ = self.tx.send(InFlight {
            kept: Kept {
                evs,
                ticket: ticket.clone(),
            },
            receipt: receipt.clone(),
        });
        Ok(Submitted::Done(receipt, ticket))
    }

    fn await_durable(&self, receipt: &Receipt, ticket: Option<Arc<Ticket>>) -> Result<()> {
        match (receipt.wait(), ticket) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(t)) => t.wait(self.cfg.durable_wait),
            (Err(e), None) => Err(e),
        }
    }

    /// The keeper thread: watch receipts in order; heal on a failure.
    fn keep(self: Arc<Self>, rx: Receiver<InFlight>) {
        loop {
            let item = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(i) => i,
                Err(RecvTimeoutError::Timeout) => {
                    // `close` takes the log out of service itself, so out
                    // of service alone does not mean degraded: only a
                    // failure reported before (health not Ok) does. A
                    // healthy store's close used to reopen the log here
                    // (a recovery scan and a Merkle rebuild of the whole
                    // log, and a spurious "degraded" to the health hook).
                    if self.closing.load(Ordering::Acquire)
                        && !self.is_healthy()
                        && !self.health().is_ok()
                    {
                        // Closed while degraded with nothing in flight:
                        // one last attempt for the backlog.
                        self.heal(Vec::new(), "closing while degraded", &rx);
                    }
                    if self.closing.load(Ordering::Acquire) && rx.is_empty() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match item.receipt.wait() {
                Ok(_) => self.durable(item.kept),
                Err(e) => self.heal(vec![item.kept], &e.to_string(), &rx),
            }
        }
    }

    fn durable(&self, k: Kept) {
        self.counts
            .durable
            .fetch_add(k.evs.len() as u64, Ordering::Relaxed);
        if let Some(t) = k.ticket {
            t.settle(Ok(()));
        }
    }

    fn set_health(&self, h: Health) {
        {
            let mut g = lock(&self.health);
            if *g == h {
                return;
            }
            *g = h.clone();
        }
        match &h {
            Health::Ok => tracing::info!("auditlog store healthy again"),
            Health::Degraded { reason, .. } => {
                tracing::warn!(%reason, "auditlog store degraded: reopening the log")
            }
            Health::Failing {
                last_error,
                attempts,
                ..
            } => tracing::error!(%last_error, attempts, "auditlog store failing: reopening failed"),
        }
        if let Some(hook) = &self.on_change {
            hook(&h);
        }
    }

    /// Stop what follows the log (search first: it commits what it has).
    fn stop_followers(&self) {
        #[cfg(feature = "search")]
        if let Some(side) = self
            .search
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            side.ix
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .stop();
        }
        if let Some(mut ix) = lock(&self.indexer).take() {
            ix.stop();
        }
    }

    /// Take the failed log out, reopen it, settle every event that was in
    /// flight, put the backlog in (see the module docs).
    fn heal(&self, mut failed: Vec<Kept>, why: &str, rx: &Receiver<InFlight>) {
        let since = now_micros();
        // 1. Out of service: appends go to the backlog from here on (and
        // from the moment `health()` says degraded).
        let was_in_service = {
            let mut g = self.log.write().unwrap_or_else(|p| p.into_inner());
            let was = self.in_service.swap(false, Ordering::AcqRel);
            if was {
                // Shut down in place: every receipt it gave out resolves,
                // the folder's lock is released for the reopen.
                let _ = g.shut_down();
            }
            was
        };
        self.set_health(Health::Degraded {
            since,
            reason: why.to_string(),
        });
        self.stop_followers();
        let (durable_lsn, resync_from) = if was_in_service || !failed.is_empty() {
            let log = self.log();
            let durable = log.counters().durable_lsn;
            let segs = log.reader().segments();
            // Every segment holding an event past the durable LSN.
            let from = segs
                .iter()
                .find(|s| s.end_lsn() > durable)
                .or(segs.last())
                .map(|s| s.seq);
            (durable, from)
        } else {
            (u64::MAX, None)
        };
        for item in rx.try_iter() {
            match item.receipt.wait() {
                Ok(_) => self.durable(item.kept),
                Err(_) => failed.push(item.kept),
            }
        }
        // 2. Reopen with backoff.
        let mut delay = self.cfg.backoff_initial;
        let mut attempts = 0u64;
        let opened = loop {
            match open_log(&self.setup, Some(&self.engine), resync_from) {
                Ok(o) => break o,
                Err(e) => {
                    attempts += 1;
                    self.set_health(Health::Failing {
                        since,
                        last_error: e.to_string(),
                        attempts,
                    });
                    if self.closing.load(Ordering::Acquire) {
                        self.give_up(failed, &e.to_string());
                        return;
                    }
                    self.sleep(delay);
                    delay = (delay * 2).min(self.cfg.backoff_max);
                }
            }
        };
        self.counts.recoveries.fetch_add(1, Ordering::Relaxed);
        let log = opened.log;
        // 3. What reached the disk is durable now; the rest goes again.
        let retry = match self.settle_on_disk(&log, durable_lsn, failed) {
            Ok(r) => r,
            Err((e, kept)) => {
                tracing::warn!(error = %e, "reading the reopened log failed; retrying every failed event");
                kept
            }
        };
        // 4. Back in service: the retried events first, then the backlog.
        let mut backlog = lock(&self.backlog);
        let mut g = self.log.write().unwrap_or_else(|p| p.into_inner());
        let n_retry: u64 = retry.iter().map(|k| k.evs.len() as u64).sum();
        for k in retry.into_iter().chain(backlog.drain(..)) {
            self.resend(&log, k);
        }
        self.counts.retried.fetch_add(n_retry, Ordering::Relaxed);
        *g = log;
        self.in_service.store(true, Ordering::Release);
        *lock(&self.indexer) = Some(opened.indexer);
        #[cfg(feature = "search")]
        {
            *self.search.write().unwrap_or_else(|p| p.into_inner()) =
                opened.search.map(|ix| SearchSide {
                    ft: (*ix).clone(),
                    ix: Mutex::new(ix),
                });
            *lock(&self.search_error) = opened.search_error;
        }
        drop(g);
        drop(backlog);
        self.set_health(Health::Ok);
    }

    /// Append kept events to the reopened log (the keeper watches them
    /// again like any other).
    fn resend(&self, log: &Log, k: Kept) {
        let appended = match &k.evs {
            Evs::One(ev) => log.append(ev),
            Evs::Many(v) => log.append_batch(v),
        };
        let n = k.evs.len() as u64;
        let first = k.evs.as_slice().first().map(|e| e.run_id.clone());
        match appended {
            Ok(receipt) if !receipt.is_dropped() => {
                let _ = self.tx.send(InFlight { kept: k, receipt });
            }
            Ok(_) => {
                self.counts.queue_full.fetch_add(n, Ordering::Relaxed);
                tracing::error!(events = n, run_id = ?first, "retried events dropped: the queue is full");
                if let Some(t) = k.ticket {
                    t.settle(Err(TicketError::QueueFull));
                }
            }
            Err(e @ (Error::InvalidEvent { .. } | Error::EventTooLarge { .. })) => {
                self.counts.invalid_on_retry.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, run_id = ?first, "retried events refused");
                if let Some(t) = k.ticket {
                    t.settle(Err(TicketError::Refused(Arc::new(e))));
                }
            }
            // The new log failed already: the keeper will see this
            // receipt fail and heal again.
            Err(_) => {
                let receipt = Receipt::failed("the reopened log failed at once");
                let _ = self.tx.send(InFlight { kept: k, receipt });
            }
        }
    }

    /// Split the failed events into those the reopened log holds (from
    /// `durable_lsn` on: settled as durable) and those to append again.
    /// Compared as stored, i.e. after the log's redaction policy; a batch
    /// partly stored goes again with the rest only.
    #[allow(clippy::result_large_err)]
    fn settle_on_disk(
        &self,
        log: &Log,
        durable_lsn: u64,
        failed: Vec<Kept>,
    ) -> std::result::Result<Vec<Kept>, (Error, Vec<Kept>)> {
        if failed.is_empty() {
            return Ok(failed);
        }
        let mut on_disk: HashMap<Vec<u8>, u64> = HashMap::new();
        let range = ReplayRange {
            from_lsn: Some(durable_lsn),
            ..ReplayRange::default()
        };
        for item in log.reader().replay(range) {
            let ev = match item {
                Ok((_, ev)) => ev,
                Err(e) => return Err((e, failed)),
            };
            *on_disk.entry(encoded(&ev)).or_default() += 1;
        }
        let policy = log.redaction().cloned();
        let mut retry = Vec::new();
        for k in failed {
            let ticket = k.ticket;
            let mut missing = Vec::new();
            let mut found = 0u64;
            for ev in k.evs.into_vec() {
                let stored = match &policy {
                    Some(p) => p.apply(&ev),
                    None => ev.clone(),
                };
                match on_disk.get_mut(&encoded(&stored)) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        found += 1;
                    }
                    _ => missing.push(ev),
                }
            }
            self.counts.durable.fetch_add(found, Ordering::Relaxed);
            if missing.is_empty() {
                if let Some(t) = ticket {
                    t.settle(Ok(()));
                }
                continue;
            }
            let evs = if missing.len() == 1 {
                Evs::One(missing.remove(0))
            } else {
                Evs::Many(missing)
            };
            retry.push(Kept { evs, ticket });
        }
        Ok(retry)
    }

    /// Reopening failed while the store closes: what is left is lost.
    /// Counted and logged, never silent.
    fn give_up(&self, failed: Vec<Kept>, why: &str) {
        let mut backlog = lock(&self.backlog);
        let mut n = 0u64;
        for k in failed.into_iter().chain(backlog.drain(..)) {
            n += k.evs.len() as u64;
            if let Some(t) = k.ticket {
                t.settle(Err(TicketError::Closed(why.to_string())));
            }
        }
        self.counts.closed_unhealed.fetch_add(n, Ordering::Relaxed);
        tracing::error!(
            events = n,
            error = why,
            "auditlog store closed while failing: events not stored"
        );
    }

    /// Sleep, waking early when the store closes.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.closing.load(Ordering::Acquire) {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
    }

    /// Shut down the log if it is in service (once).
    fn shut_down_in_service(&self) -> Result<()> {
        let mut g = self.log.write().unwrap_or_else(|p| p.into_inner());
        if self.in_service.swap(false, Ordering::AcqRel) {
            g.shut_down()
        } else {
            Ok(())
        }
    }

    /// Stop accepting; close the log (its receipts resolve, the keeper
    /// drains them), then wait for the keeper. The error, if the log's
    /// close failed or events could not be stored.
    pub(crate) fn close(&self, keeper: Option<std::thread::JoinHandle<()>>) -> Result<()> {
        self.closing.store(true, Ordering::Release);
        self.stop_followers();
        let closed = self.shut_down_in_service();
        if let Some(k) = keeper {
            let _ = k.join();
        }
        // A log the keeper reopened while we closed.
        self.stop_followers();
        let closed = closed.and(self.shut_down_in_service());
        let lost = self.counts.closed_unhealed.load(Ordering::Relaxed);
        match closed {
            Err(e) => Err(e),
            Ok(()) if lost > 0 => Err(Error::WriterFailed(format!(
                "{lost} events could not be stored: the log failed and could not be reopened before close"
            ))),
            Ok(()) => Ok(()),
        }
    }
}

enum Submitted {
    /// In the log's queue: its receipt (and ticket, with `wait`).
    Done(Receipt, Option<Arc<Ticket>>),
    /// The log is out of service: the events go to the backlog.
    Degraded(Box<Evs>),
}

/// An event's encoded bytes: equal bytes, equal event.
fn encoded(ev: &Event) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    let _ = codec::encode_event(ev, &mut b);
    b
}
