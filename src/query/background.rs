//! Indexing sealed segments as they seal, off the ingest path: the log's
//! seal hook only sends a wake-up; a thread of its own builds the new
//! index files without holding the query engine's lock, then installs
//! them, so queries are answered while it works.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::engine::Engine;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::Log;

enum Wake {
    Sealed,
    Stop,
}

/// Nice value of indexer threads. Indexes are derived data that can always
/// catch up, so on a busy machine the writer and the producers come first:
/// at equal priority, indexing each sealed segment took as much CPU as the
/// whole ingest path and cut durable ingest throughput and latency alike.
/// Not the lowest (19, the full-text indexer's): a query that needs an
/// image this thread is building waits for it.
pub(crate) const INDEXER_NICE: i32 = 10;

/// Give the calling (indexer) thread [`INDEXER_NICE`].
pub(crate) fn lower_priority() {
    crate::priority::background_thread(INDEXER_NICE);
}

/// How long the indexer waits for a seal before it frees the buffers the
/// builds keep (`index::pool`): a log being written seals a segment every
/// fraction of a second to a few seconds, and keeps them; an idle one
/// gives them back.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(2);

/// The next wake-up, or `None` once every sender is gone. When none
/// comes within `idle`, `on_idle` runs once, then the wait goes on with
/// no limit (an idle log is not woken again until something happens).
fn next_wake(
    rx: &Receiver<Wake>,
    idle: std::time::Duration,
    on_idle: impl FnOnce(),
) -> Option<Wake> {
    match rx.recv_timeout(idle) {
        Ok(w) => Some(w),
        Err(RecvTimeoutError::Disconnected) => None,
        Err(RecvTimeoutError::Timeout) => {
            on_idle();
            rx.recv().ok()
        }
    }
}

/// An engine over `log` that trusts every append from its head on
/// ([`Engine::trust_appends_from`]).
fn trusting_engine(log: &Log) -> Engine {
    let mut engine = Engine::new(log.reader());
    engine.trust_appends_from(log.head().next_lsn);
    engine
}

/// Registered on a [`Config`] before the log opens; started after.
pub struct IndexOnSeal {
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
}

impl IndexOnSeal {
    /// Add the seal hook to `cfg`.
    pub fn hook(cfg: &mut Config) -> IndexOnSeal {
        let (tx, rx) = crossbeam_channel::unbounded();
        let hook_tx = tx.clone();
        cfg.seal_hooks.push(Arc::new(move |_meta| {
            let _ = hook_tx.send(Wake::Sealed);
        }));
        IndexOnSeal { tx, rx }
    }

    /// Start the indexing thread over `log`'s committed data. Its builds
    /// of what `log` appended since it opened read the events as checked
    /// on append (docs/integrity.md, "Builds of what this process
    /// appended"); older events are read strictly.
    pub fn start(self, log: &Log) -> Result<BackgroundIndexer> {
        let engine = Arc::new(Mutex::new(Engine::new(log.reader())));
        self.spawn(engine)
    }

    /// [`IndexOnSeal::start`], vouching that every append from now on is
    /// checked against every rule of the contract before it is stored
    /// ([`Engine::trust_appends_from`] at the head). Every `Log` append
    /// path checks them, so `start` trusts them as well ([`Engine`]'s
    /// builds over a live log); kept for callers that say so explicitly
    /// (`auditlog ingest`).
    pub fn start_trusting_appends(self, log: &Log) -> Result<BackgroundIndexer> {
        self.spawn(Arc::new(Mutex::new(trusting_engine(log))))
    }

    /// [`IndexOnSeal::start_trusting_appends`] for a bulk load: each
    /// sealed segment's pages go back to the kernel once its image is
    /// stored ([`Engine::page_out_indexed_segments`]), so the load's page
    /// cache holds the segments still to be indexed, not all it wrote.
    pub fn start_bulk_load(self, log: &Log) -> Result<BackgroundIndexer> {
        let mut engine = trusting_engine(log);
        engine.page_out_indexed_segments();
        self.spawn(Arc::new(Mutex::new(engine)))
    }

    /// [`IndexOnSeal::start`] with an engine others already share: its
    /// contents become an engine over `log` (a store that reopened its
    /// log keeps answering queries through the same handle).
    pub fn start_on(self, log: &Log, engine: Arc<Mutex<Engine>>) -> Result<BackgroundIndexer> {
        *engine.lock().unwrap_or_else(|p| p.into_inner()) = Engine::new(log.reader());
        self.spawn(engine)
    }

    fn spawn(self, engine: Arc<Mutex<Engine>>) -> Result<BackgroundIndexer> {
        let bg = engine.clone();
        let rx = self.rx;
        let hurry = Arc::new(AtomicBool::new(false));
        let stop = hurry.clone();
        let handle = std::thread::Builder::new()
            .name("auditlog-indexer".into())
            .spawn(move || {
                lower_priority();
                // No seal for a while: the buffers the builds keep (up to
                // `index::pool::KEEP_BYTES`) are freed, so an idle log
                // holds none of them. A stop, or every sender gone, ends.
                while let Some(Wake::Sealed) =
                    next_wake(&rx, IDLE_RELEASE, crate::index::pool::release)
                {
                    // Several seals queued up are one refresh.
                    if rx.try_iter().any(|w| matches!(w, Wake::Stop)) {
                        break;
                    }
                    // Built outside the engine's lock: queries go on.
                    if let Err(err) = Engine::index_sealed_until(&bg, &stop) {
                        tracing::warn!(error = %err, "indexing a sealed segment failed");
                    }
                }
            })
            .map_err(|e| Error::io("starting the indexer thread", e))?;
        Ok(BackgroundIndexer {
            engine,
            tx: self.tx,
            hurry,
            handle: Some(handle),
        })
    }
}

/// The running indexer; its engine answers queries too.
pub struct BackgroundIndexer {
    engine: Arc<Mutex<Engine>>,
    tx: Sender<Wake>,
    /// Set by [`BackgroundIndexer::finish`]: the thread stops after the
    /// image it is finishing, and the caller builds the rest.
    hurry: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl BackgroundIndexer {
    pub fn engine(&self) -> &Arc<Mutex<Engine>> {
        &self.engine
    }

    /// Stop the thread (it finishes the refresh it is in).
    pub fn stop(&mut self) {
        let _ = self.tx.send(Wake::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    /// Stop, and bring every index up to date, the active segment's
    /// stored prefix included, on this thread and at its priority. The
    /// indexer thread runs at the lowest priority, so it is not waited
    /// for: it stops after the image it is finishing (which the refresh
    /// waits for rather than build twice), and the refresh builds the
    /// rest at once, its scans beside that last image.
    pub fn finish(mut self) -> Result<()> {
        self.hurry.store(true, Ordering::Release);
        let _ = self.tx.send(Wake::Stop);
        let refreshed = {
            let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            e.refresh()
        };
        self.stop();
        refreshed
    }
}

impl Drop for BackgroundIndexer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{next_wake, Wake};
    use std::cell::Cell;
    use std::time::Duration;

    /// The indexer frees the builds' kept buffers when no seal comes for
    /// a while, once, and not while seals keep coming.
    #[test]
    fn an_idle_wait_releases_once_and_a_busy_one_never() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let released = Cell::new(0);
        let release = || released.set(released.get() + 1);

        // Seals already queued: taken at once, nothing released.
        tx.send(Wake::Sealed).unwrap();
        assert!(matches!(
            next_wake(&rx, Duration::from_secs(3600), release),
            Some(Wake::Sealed)
        ));
        assert_eq!(released.get(), 0);

        // Nothing within the idle time: released once, then a seal that
        // comes later (here sent by the release itself, so that none can
        // be queued before the wait times out) is still delivered.
        let idle_then_seal = || {
            release();
            tx.send(Wake::Sealed).unwrap();
        };
        assert!(matches!(
            next_wake(&rx, Duration::from_millis(1), idle_then_seal),
            Some(Wake::Sealed)
        ));
        assert_eq!(released.get(), 1);

        // A stop is delivered as such; every sender gone ends the wait,
        // idle or not.
        tx.send(Wake::Stop).unwrap();
        assert!(matches!(
            next_wake(&rx, Duration::from_secs(3600), release),
            Some(Wake::Stop)
        ));
        drop(tx);
        assert!(next_wake(&rx, Duration::from_millis(1), release).is_none());
        assert_eq!(released.get(), 1);
    }
}
