//! The tree thread: hashes the Merkle tree's leaves, combines its interior
//! nodes and stores the segments' tree files, off the ingest path
//! (docs/proofs.md, "Who hashes what"). The writer hands it, in order,
//! where each block it wrote lies in its segment (the thread reads the
//! events back from the file: no copy, no hash on the ingest path) and
//! the segment events (created, discarded, sealed); it works through them
//! at background priority, like the indexers, and may fall behind during a
//! burst, catching up after it. How far it may fall behind is bounded
//! without ever putting the tree's work on the writer, the serial path:
//! past [`PRODUCERS_HASH_PAST`] events behind, the producers hash the
//! leaves again (in parallel, on their own threads), so the tree thread
//! has only the interior nodes left to do; past [`CATCH_UP_PAST`], a
//! second thread at the ingest's own priority (`auditlog-treeup`) takes
//! the oldest jobs until the tree is back at `PRODUCERS_HASH_PAST`. The
//! writer never waits for either on its hot path. A checkpoint due at a
//! roll or at the interval is asked of the threads (format 6, deferred
//! signing: `TreeWorker::request_checkpoint`): whichever applies the jobs
//! queued before the request signs the tree at exactly that size and
//! hands the record back for the writer to append. What needs the tree as
//! it stands (a checkpoint signed in place at `Log::seal`, close or an
//! open after a crash, a retention cut) is done by the writer itself: it
//! takes the tree, applies what the threads have not yet, then acts. What
//! is not combined (or signed) yet is only in memory: after a crash, the
//! tree is rebuilt from the segments at open (`TreeKeeper::open`), and the
//! writer signs what no checkpoint covers.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use crate::error::{Error, Result};
use crate::event::system::TreeCheckpoint;
use crate::layout::SegmentMeta;
use crate::tlog::merkle::TreeHash;

use super::keeper::{share_not_stored, BlockRef, CheckpointConfig, Growth, TreeKeeper};
use super::lists::{LeafList, ListPool};

/// Events the tree may be behind the writer before the producers hash
/// the leaves again (`Log::append*`, on their own threads, as they do for
/// a log that signs): a burst up to here costs the ingest no SHA-256 at
/// all (the tree thread reads the events back from the segment and hashes
/// them after the burst, ~0.4 s of work on a 2.1 GHz Xeon); past it the
/// leaves are hashed in parallel, and the tree thread has only the
/// interior nodes (~40% of the tree's work) left to catch up on.
pub(crate) const PRODUCERS_HASH_PAST: u64 = 1 << 20;

/// Events behind past which the catch-up thread, at the ingest's own
/// priority, applies the oldest jobs until the tree is back at
/// `PRODUCERS_HASH_PAST`: with the cores full, the nice-10 tree thread
/// can't keep up even with the nodes alone, and this bounds the lag (the
/// close's catch-up, and the leaf hashes queued: about (3 - 1) x 2^20 x
/// 32 bytes, 64 MiB, like main's 256-block queue's 57 MB; a soft bound,
/// overshot by up to ~20% with the cores saturated) without the
/// writer doing the work or waiting for it. It then shares the cores
/// fairly with the producers and the writer instead.
pub(crate) const CATCH_UP_PAST: u64 = 3 << 20;

/// Whether `Log::append*` hashes a batch's leaves on the appending
/// thread: only while the tree is more than `PRODUCERS_HASH_PAST` events
/// behind, whether the log signs or not. Since format 6 a checkpoint is
/// signed by whichever thread brings the tree to the size the writer
/// asked for (deferred signing, docs/proofs.md, "Who signs, and when"),
/// so a log that signs no longer needs its tree current at every
/// checkpoint, nor its leaves hashed on the producers to keep the
/// writer's catch-up short (sign33-35 did both; docs/benchmarks.md,
/// sign36 round).
pub(crate) fn producers_hash_leaves(behind: u64) -> bool {
    behind > PRODUCERS_HASH_PAST
}

/// The tree thread's nice value: below the ingest threads, like the
/// sealed-segment indexer, so that under saturation it takes the CPU the
/// ingest leaves (past `CATCH_UP_PAST` behind, the catch-up thread at the
/// ingest's priority helps).
const TREE_NICE: i32 = 10;

/// Longest the idle thread sleeps without looking at its queue (it is
/// woken at every job; this is only a safety net).
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// The events of one block, for the tree.
enum Leaves {
    /// Hashed where the batch was encoded (`EncodedBatch::hash_leaves`);
    /// the list goes back to the writer once the block is applied.
    Hashed(LeafList),
    /// The event frames, copied (only when the segment could not be
    /// opened for reading): hashed on the tree thread.
    Frames(Vec<u8>),
    /// The event frames are `len` bytes at `offset` of the segment `file`
    /// (written before the job was queued): read back and hashed on the
    /// tree thread. The handle keeps the file readable even if it is
    /// removed meanwhile.
    InFile {
        file: Arc<File>,
        offset: u64,
        len: usize,
    },
}

/// A written block, for the tree.
struct Block {
    block_start: u64,
    first_lsn: u64,
    leaves: Leaves,
    count: u64,
    is_checkpoint: bool,
}

enum Job {
    Block(Block),
    /// Store the active segment's share as a tree file (after a
    /// checkpoint, at a seal).
    Store(SegmentMeta),
    Run(Box<dyn FnOnce(&mut TreeKeeper) + Send>),
}

/// The block a thread is combining outside the lock, and the ticket it
/// took it with: its install goes through only if the flight still holds
/// that ticket (nobody took the block from flight meanwhile).
struct Flight {
    block: Arc<Block>,
    ticket: u64,
}

/// The tree and what is being done to it, under one lock.
struct Tree {
    keeper: TreeKeeper,
    /// The next block to apply, which the tree thread or the catch-up
    /// thread is combining outside the lock (on a private copy of the
    /// tree's edge). Whoever takes the tree applies it first if it is
    /// still here, and that thread then drops its work; else it installs
    /// it. The catch-up thread may also take over a flight of the tree
    /// thread (`Inner::work`).
    in_flight: Option<Flight>,
    /// The last ticket handed out (`Flight`).
    tickets: u64,
    /// The tree file the tree thread is writing outside the lock (then
    /// renaming into place under it). Likewise, whoever takes the tree
    /// stores it again itself first (a seal returns with its file
    /// stored), and the thread then drops its copy instead of renaming.
    store_in_flight: Option<SegmentMeta>,
}

/// How long the writer waited to take the tree (at checkpoints, seals,
/// retention cuts and close): `Log::tree_waits`, for benchmarks.
#[derive(Default)]
pub(crate) struct TreeWaits {
    /// Times the writer took the tree.
    pub calls: AtomicU64,
    /// Total and longest wait for its lock, ns.
    pub wait_ns: AtomicU64,
    pub max_wait_ns: AtomicU64,
    /// Total time spent applying what the threads had not, ns.
    pub catch_up_ns: AtomicU64,
}

/// What the writer and the thread share: the tree, and the jobs not yet
/// applied to it. Whoever holds the tree takes the next job (the block in
/// flight first), so jobs are applied in the order they were queued, by
/// either side.
struct Inner {
    tree: Mutex<Tree>,
    jobs: Receiver<Job>,
    /// Events handed over and not yet combined (`Log::tree_behind`).
    behind: Arc<AtomicU64>,
    marks: Marks,
    /// Set when the writer is done: the catch-up thread ends.
    stop: AtomicBool,
    /// Set by the writer when a checkpoint it asked for is late (out
    /// longer than the checkpoint interval: `TreeWorker::hurry_if_late`):
    /// the catch-up thread then applies every job up to the request,
    /// whatever the lag, and the request's job clears it once signed.
    /// (Its own `Arc`: the request's job holds it, and a job holding
    /// `Inner` would keep the queue that holds the job alive.)
    rush: Arc<AtomicBool>,
    /// Likewise for a job the writer asked for without waiting
    /// (`TreeWorker::ask`: a retention cut's tree) and found late
    /// (`TreeWorker::hurry_asked`); that job clears it when it runs, the
    /// writer when it takes the answer.
    rush_asked: Arc<AtomicBool>,
    /// Set while the catch-up thread works: the tree thread then takes
    /// no job (only one block can be in flight; the catch-up thread, at
    /// the ingest's priority, must not wait behind a preempted nice-10
    /// one), and is woken when it is done.
    helping: AtomicBool,
    /// The tree thread, to wake it after a catch-up.
    tree_thread: std::sync::OnceLock<std::thread::Thread>,
    /// Events applied by the catch-up thread (tests, diagnostics).
    helped: AtomicU64,
    /// Blocks the tree thread combined and installed, and those it
    /// combined but found applied by another thread (tests).
    installed: AtomicU64,
    raced: AtomicU64,
    waits: Arc<TreeWaits>,
    /// Tests: the tree thread waits here between combining a block and
    /// installing it (to make the writer's catch-up race the install).
    #[cfg(test)]
    before_install: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// When the catch-up thread helps (`CATCH_UP_PAST`).
#[derive(Clone, Copy)]
struct Marks {
    /// The writer wakes the catch-up thread past this many events behind.
    catch_up_past: u64,
    /// It then applies jobs until the tree is at most this far behind.
    catch_up_to: u64,
}

impl Marks {
    /// The same with or without a key: since deferred signing the
    /// writer's checkpoints no longer catch the tree up.
    fn standard() -> Marks {
        Marks {
            catch_up_past: CATCH_UP_PAST,
            catch_up_to: PRODUCERS_HASH_PAST,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply the next job here (the caller holds the tree): the block in
    /// flight if there is one, else the next queued. The events it
    /// applied, or `None` if there was nothing to do.
    fn apply_next(&self, tree: &mut Tree, scratch: &mut Vec<u8>) -> Option<u64> {
        if let Some(meta) = tree.store_in_flight.take() {
            tree.keeper.store_share(&meta);
            return Some(0);
        }
        if let Some(Flight { block, .. }) = tree.in_flight.take() {
            apply_block(&mut tree.keeper, &block, &self.behind, scratch);
            return Some(block.count);
        }
        let job = self.jobs.try_recv().ok()?;
        Some(match job {
            Job::Block(block) => {
                apply_block(&mut tree.keeper, &block, &self.behind, scratch);
                block.count
            }
            Job::Store(meta) => {
                tree.keeper.store_share(&meta);
                0
            }
            Job::Run(f) => {
                f(&mut tree.keeper);
                0
            }
        })
    }

    /// Apply every job not applied yet (the caller holds the tree).
    fn drain(&self, tree: &mut Tree) {
        let mut scratch = Vec::new();
        while self.apply_next(tree, &mut scratch).is_some() {}
    }

    /// The catch-up thread's loop: asleep until the writer finds the tree
    /// more than `catch_up_past` events behind, then the oldest jobs, one
    /// at a time, until it is back at `catch_up_to` (or, hurried by the
    /// writer for a late checkpoint, until that checkpoint is signed). It combines each
    /// block outside the lock, as the tree thread does (`work`), so the
    /// writer, taking the tree at a checkpoint, never waits behind it
    /// either: it takes the block from flight and applies it itself. A
    /// block the nice-10 tree thread has in flight when it starts is
    /// taken over (that thread may be preempted for tens of ms); the tree
    /// thread takes no job meanwhile, and is woken at the end.
    fn catch_up(&self) {
        // Normal priority (it stands in for the writer), but background
        // work as far as CPUs go: it never runs on a core kept for ingest.
        crate::priority::background_cpus();
        let mut scratch = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(IDLE_WAKE);
            let rushed =
                || self.rush.load(Ordering::Acquire) || self.rush_asked.load(Ordering::Acquire);
            if self.behind.load(Ordering::Relaxed) <= self.marks.catch_up_past && !rushed() {
                continue;
            }
            self.helping.store(true, Ordering::Release);
            while self.behind.load(Ordering::Relaxed) > self.marks.catch_up_to || rushed() {
                match self.work(&mut scratch, true) {
                    Worked::Events(n) => {
                        self.helped.fetch_add(n, Ordering::Relaxed);
                    }
                    Worked::Idle | Worked::Closed => break,
                }
            }
            self.helping.store(false, Ordering::Release);
            if let Some(t) = self.tree_thread.get() {
                t.unpark();
            }
        }
    }

    /// The tree thread's loop, at background priority. It holds the tree
    /// only for moments (O(log n) work, no hashing, no file written): to
    /// take the next job, and to install a block it combined outside the
    /// lock, or rename a tree file it wrote outside it. Preempted, it thus
    /// never keeps the writer (nor the catch-up thread) waiting for the
    /// tree (a nice-10 thread can wait tens of ms for its next slice on a
    /// busy machine).
    fn run(&self) {
        crate::priority::background_thread(TREE_NICE);
        let _ = self.tree_thread.set(std::thread::current());
        // The frames read back from the segment, reused block to block.
        let mut scratch = Vec::new();
        loop {
            if self.helping.load(Ordering::Acquire) {
                std::thread::park_timeout(IDLE_WAKE);
                continue;
            }
            match self.work(&mut scratch, false) {
                Worked::Closed => return,
                Worked::Idle => std::thread::park_timeout(IDLE_WAKE),
                Worked::Events(_) => {}
            }
        }
    }

    /// Take the next job and do it, the tree held only for moments: a
    /// block is combined outside the lock on a copy of the tree's edge
    /// and installed (`install`), a tree file written outside it and
    /// renamed (`store_outside`). `take_over`: the catch-up thread's
    /// call, which first takes over a block or a tree file the tree
    /// thread has in flight (that thread's install or rename then finds
    /// it gone and drops its work), rather than wait for it.
    fn work(&self, scratch: &mut Vec<u8>, take_over: bool) -> Worked {
        let mut tree = self.lock();
        if tree.store_in_flight.is_some() || (tree.in_flight.is_some() && !take_over) {
            if !take_over {
                // The catch-up thread's (it just started or ended).
                return Worked::Idle;
            }
            if let Some(meta) = tree.store_in_flight.take() {
                tree.keeper.store_share(&meta);
                return Worked::Events(0);
            }
        }
        let block = match tree.in_flight.take() {
            Some(flight) => flight.block,
            None => match self.jobs.try_recv() {
                Ok(Job::Block(block)) => Arc::new(block),
                Ok(Job::Store(meta)) => {
                    let Some((path, bytes)) = tree.keeper.share_file(&meta) else {
                        return Worked::Events(0);
                    };
                    tree.store_in_flight = Some(meta.clone());
                    drop(tree);
                    self.store_outside(&meta, &path, &bytes);
                    return Worked::Events(0);
                }
                Ok(Job::Run(f)) => {
                    f(&mut tree.keeper);
                    return Worked::Events(0);
                }
                Err(TryRecvError::Empty) => return Worked::Idle,
                Err(TryRecvError::Disconnected) => return Worked::Closed,
            },
        };
        tree.tickets += 1;
        let ticket = tree.tickets;
        tree.in_flight = Some(Flight {
            block: block.clone(),
            ticket,
        });
        let mut growth = tree.keeper.growth();
        drop(tree);
        let lost = combine(&mut growth, &block, scratch);
        match self.install(ticket, &block, growth, lost) {
            true => Worked::Events(block.count),
            false => Worked::Events(0),
        }
    }

    /// Install what a thread combined of `block` (in flight with
    /// `ticket`), unless another thread took it from flight meanwhile;
    /// whether it did.
    fn install(&self, ticket: u64, block: &Block, growth: Growth, lost: bool) -> bool {
        self.test_pause();
        let mut tree = self.lock();
        let ours = tree.in_flight.as_ref().is_some_and(|f| f.ticket == ticket);
        if !ours {
            self.raced.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        tree.in_flight = None;
        if lost {
            tree.keeper.block_lost();
        } else if !tree.keeper.install(growth) {
            // Not reached: nothing changes the tree while a block is in
            // flight but applying that block. Apply it here rather than
            // lose it.
            tracing::error!("the Merkle tree changed under a block in flight; applied again");
            apply_block(&mut tree.keeper, block, &self.behind, &mut Vec::new());
            return true;
        }
        self.behind.fetch_sub(block.count, Ordering::Relaxed);
        self.installed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Write segment `meta`'s tree file outside the lock, and rename it
    /// into place under it unless another thread took the store from
    /// flight and stored the file itself meanwhile.
    fn store_outside(&self, meta: &SegmentMeta, path: &Path, bytes: &[u8]) {
        let written = super::segtree::write_tmp(path, bytes);
        self.test_pause();
        let mut tree = self.lock();
        if tree.store_in_flight.take().is_none() {
            drop(tree);
            if let Ok(tmp) = written {
                let _ = std::fs::remove_file(tmp);
            }
            // Counted once the copy is gone, so that whoever sees the
            // count (a test) also sees no temporary file left.
            self.raced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let stored = written.and_then(|tmp| {
            std::fs::rename(&tmp, path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        });
        drop(tree);
        if let Err(e) = stored {
            share_not_stored(&e, meta);
        }
    }

    /// Tests: the tree thread waits, before an install or a rename, until
    /// released (the catch-up thread never does).
    fn test_pause(&self) {
        #[cfg(test)]
        if std::thread::current().name() != Some("auditlog-tree") {
            return;
        }
        #[cfg(test)]
        if let Some(rx) = self
            .before_install
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = rx.recv();
        }
    }
}

/// The writer's handle on the tree thread. It also keeps what deciding
/// whether a checkpoint is due needs (the tree's size, what the last
/// checkpoint covered, when it was signed), so that the writer asks the
/// thread nothing on its hot path.
pub(crate) struct TreeWorker {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The catch-up thread (`CATCH_UP_PAST`).
    helper: Option<JoinHandle<()>>,
    inner: Arc<Inner>,
    signing: Option<CheckpointConfig>,
    /// Leaves handed to the tree (the tree's size once it has caught up).
    size: u64,
    /// Leaves already covered by a checkpoint in the log.
    covered: u64,
    last_signed: Instant,
    /// The tree size of the checkpoint asked of the threads and not yet
    /// handed back (`request_checkpoint`): at most one at a time.
    requested: Option<u64>,
    /// The request out was hurried (`hurry_if_late`).
    hurried: bool,
    /// Where the threads hand the signed checkpoints back.
    signed_tx: Sender<Result<TreeCheckpoint>>,
    signed_rx: Receiver<Result<TreeCheckpoint>>,
    /// The tree size of the checkpoint record the writer appends next
    /// (what its block then covers: `block_written`).
    record_covers: u64,
    /// The active segment, open for reading: (its sequence number, the
    /// handle), or `None` if it could not be opened (its blocks' frames
    /// are then copied into the jobs).
    reader: Option<(u64, Option<Arc<File>>)>,
    /// The leaf-hash lists lent to the tree with hashed blocks, back once
    /// applied (src/tree/lists.rs).
    lists: ListPool,
}

impl TreeWorker {
    /// Start the tree thread on `keeper` (the tree as found at open).
    /// `behind` counts the events handed over and not yet combined,
    /// `waits` the writer's waits for the tree.
    pub(crate) fn start(
        keeper: TreeKeeper,
        behind: Arc<AtomicU64>,
        waits: Arc<TreeWaits>,
    ) -> Result<TreeWorker> {
        let marks = Marks::standard();
        TreeWorker::start_with(keeper, behind, waits, marks, true)
    }

    /// `start` with the given marks, and (tests) without the tree thread,
    /// so that only the catch-up thread and the writer apply jobs.
    fn start_with(
        keeper: TreeKeeper,
        behind: Arc<AtomicU64>,
        waits: Arc<TreeWaits>,
        marks: Marks,
        tree_thread: bool,
    ) -> Result<TreeWorker> {
        // Unbounded: the lag is bounded in events (the marks), and a job
        // is a block's place in its segment or its leaf hashes, not its
        // events.
        let (tx, jobs) = unbounded::<Job>();
        let size = keeper.size();
        let covered = keeper.covered();
        let signing = keeper.signing().cloned();
        let inner = Arc::new(Inner {
            tree: Mutex::new(Tree {
                keeper,
                in_flight: None,
                tickets: 0,
                store_in_flight: None,
            }),
            jobs,
            behind,
            marks,
            stop: AtomicBool::new(false),
            rush: Arc::new(AtomicBool::new(false)),
            rush_asked: Arc::new(AtomicBool::new(false)),
            helping: AtomicBool::new(false),
            tree_thread: std::sync::OnceLock::new(),
            helped: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            raced: AtomicU64::new(0),
            waits,
            #[cfg(test)]
            before_install: Mutex::new(None),
        });
        let theirs = inner.clone();
        let thread = match tree_thread {
            true => Some(
                std::thread::Builder::new()
                    .name("auditlog-tree".into())
                    .spawn(move || theirs.run())
                    .map_err(|e| Error::io("starting the Merkle tree thread", e))?,
            ),
            false => None,
        };
        let (signed_tx, signed_rx) = unbounded();
        let theirs = inner.clone();
        let helper = std::thread::Builder::new()
            .name("auditlog-treeup".into())
            .spawn(move || theirs.catch_up());
        let mut worker = TreeWorker {
            tx: Some(tx),
            thread,
            helper: None,
            inner,
            signing,
            size,
            covered,
            last_signed: Instant::now(),
            requested: None,
            hurried: false,
            signed_tx,
            signed_rx,
            record_covers: 0,
            reader: None,
            lists: ListPool::new(),
        };
        // Dropping the worker stops the tree thread.
        worker.helper =
            Some(helper.map_err(|e| Error::io("starting the Merkle tree's catch-up thread", e))?);
        Ok(worker)
    }

    /// Queue a job for the thread. Past `catch_up_past` events behind,
    /// wake the catch-up thread too; the writer itself never applies a
    /// job here nor waits for the tree (the tree thread runs at a lower
    /// priority, and a writer waiting for its lock behind it, or hashing
    /// leaves alone, stalls the whole ingest).
    fn send(&self, job: Job) {
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        if let Err(e) = tx.send(job) {
            // Not reached: the receiver lives in `inner`, beside this
            // sender. Apply the job here rather than lose it.
            let mut tree = self.inner.lock();
            self.inner.drain(&mut tree);
            match e.into_inner() {
                Job::Block(b) => {
                    apply_block(&mut tree.keeper, &b, &self.inner.behind, &mut Vec::new())
                }
                Job::Store(meta) => tree.keeper.store_share(&meta),
                Job::Run(f) => f(&mut tree.keeper),
            }
            return;
        }
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        if self.inner.behind.load(Ordering::Relaxed) > self.inner.marks.catch_up_past {
            if let Some(h) = &self.helper {
                h.thread().unpark();
            }
        }
    }

    /// Queue `f` for the tree thread (after everything queued before).
    fn post(&self, f: impl FnOnce(&mut TreeKeeper) + Send + 'static) {
        self.send(Job::Run(Box::new(f)));
    }

    /// Run `f` on the tree as it stands after everything queued before,
    /// here (on the writer): the jobs the thread has not applied yet are
    /// applied first, the block it may be combining included (its work
    /// is then dropped). The tree thread holds the lock only for moments,
    /// so the wait for it is short even when that thread is preempted.
    pub(crate) fn call<R>(&self, f: impl FnOnce(&mut TreeKeeper) -> R) -> R {
        let asked = Instant::now();
        let mut tree = self.inner.lock();
        let took = Instant::now();
        self.inner.drain(&mut tree);
        let w = &self.inner.waits;
        let waited = took.duration_since(asked).as_nanos() as u64;
        w.calls.fetch_add(1, Ordering::Relaxed);
        w.wait_ns.fetch_add(waited, Ordering::Relaxed);
        w.max_wait_ns.fetch_max(waited, Ordering::Relaxed);
        let applied = took.elapsed().as_nanos() as u64;
        w.catch_up_ns.fetch_add(applied, Ordering::Relaxed);
        f(&mut tree.keeper)
    }

    /// Run `f` on the tree as it stands after everything queued before,
    /// on whichever of the tree's threads gets there (or on the writer, if
    /// a `call` drains it first), without waiting for it: its answer comes
    /// on the channel returned. What a retention cut needs of the tree
    /// (src/writer/retire.rs), so that the writer never applies the
    /// tree's lag itself for it.
    pub(crate) fn ask<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut TreeKeeper) -> R + Send + 'static,
    ) -> Receiver<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let rush = self.inner.rush_asked.clone();
        self.post(move |k| {
            let _ = tx.send(f(k));
            rush.store(false, Ordering::Release);
        });
        rx
    }

    /// A job `ask`ed for is late: the catch-up thread, at the ingest's
    /// priority (on the background CPUs, never the writer's), applies
    /// every job up to it, like a late checkpoint's (`hurry_if_late`).
    pub(crate) fn hurry_asked(&self) {
        self.inner.rush_asked.store(true, Ordering::Release);
        if let Some(h) = &self.helper {
            h.thread().unpark();
        }
    }

    /// The answer of a hurried `ask` was taken: nothing is late any more
    /// (the job may have run before the hurry was seen).
    pub(crate) fn asked_answered(&self) {
        self.inner.rush_asked.store(false, Ordering::Release);
    }

    /// Apply everything queued (a seal returns with the segment's tree
    /// file stored).
    pub(crate) fn caught_up(&self) {
        self.call(|_| ());
    }

    pub(crate) fn segment_created(&self, meta: &SegmentMeta) {
        let meta = meta.clone();
        self.post(move |k| k.segment_created(&meta));
    }

    pub(crate) fn segment_discarded(&self) {
        self.post(TreeKeeper::segment_discarded);
    }

    /// The active segment sealed: store its share.
    pub(crate) fn segment_sealed(&self, meta: &SegmentMeta) {
        self.store_share(meta);
    }

    pub(crate) fn store_share(&self, meta: &SegmentMeta) {
        self.send(Job::Store(meta.clone()));
    }

    /// A block of `count` events was written at `block_start` of the
    /// segment `seq` at `path`: its leaf hashes if they were all computed
    /// where the batches were encoded (taken), else where its `frames`
    /// lie in the file, for the tree thread to read back and hash (copied
    /// only if the file can't be opened for reading).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_written(
        &mut self,
        (seq, path): (u64, &Path),
        block_start: u64,
        first_lsn: u64,
        count: u64,
        hashed: &mut Vec<TreeHash>,
        frames: &[u8],
        is_checkpoint: bool,
    ) {
        let leaves = if hashed.len() as u64 == count {
            // The writer fills a list that came back from an applied block
            // rather than a new one (no fresh pages per block).
            let room = self.lists.take(hashed.capacity());
            Leaves::Hashed(self.lists.lend(std::mem::replace(hashed, room)))
        } else {
            match self.reader_of(seq, path) {
                Some(file) => Leaves::InFile {
                    file,
                    offset: block_start,
                    len: frames.len(),
                },
                None => Leaves::Frames(frames.to_vec()),
            }
        };
        if is_checkpoint {
            // The record covers the leaves before it (signed in place),
            // or a prefix of them (deferred): then the leaves between its
            // size and itself are for the next checkpoint.
            self.covered = match self.record_covers == self.size {
                true => self.size + 1,
                false => self.record_covers,
            };
        }
        self.size += count;
        self.inner.behind.fetch_add(count, Ordering::Relaxed);
        self.send(Job::Block(Block {
            block_start,
            first_lsn,
            leaves,
            count,
            is_checkpoint,
        }));
    }

    /// The segment `seq`, open for reading (opened once per segment, on
    /// its first block).
    fn reader_of(&mut self, seq: u64, path: &Path) -> Option<Arc<File>> {
        match &self.reader {
            Some((s, file)) if *s == seq => file.clone(),
            _ => {
                let file = match File::open(path) {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "could not open the segment for the Merkle tree thread; its blocks are copied to it instead");
                        None
                    }
                };
                self.reader = Some((seq, file.clone()));
                file
            }
        }
    }

    /// Whether a checkpoint is due: signing, the tree grew since the last
    /// one, and the interval passed (or `forced`: a seal, a close).
    pub(crate) fn checkpoint_due(&self, forced: bool) -> bool {
        let Some(cfg) = &self.signing else {
            return false;
        };
        self.size > self.covered && (forced || self.last_signed.elapsed() >= cfg.interval)
    }

    /// Sign the tree of every leaf handed over so far, here (what the
    /// threads have not combined yet is combined here first): a signing
    /// in place, for `Log::seal`, close and an active segment older than
    /// format 6. A checkpoint asked of the threads before is handed back
    /// first (`wait_requested`).
    pub(crate) fn sign_checkpoint(&mut self) -> Result<TreeCheckpoint> {
        let size = self.size;
        let record = self.call(TreeKeeper::sign_checkpoint)?;
        self.last_signed = Instant::now();
        self.next_record(record, size, "written")
    }

    /// A signed `record` the writer appends next, if it covers the `size`
    /// leaves it was signed for (`which`: how that size was fixed).
    fn next_record(
        &mut self,
        record: TreeCheckpoint,
        size: u64,
        which: &str,
    ) -> Result<TreeCheckpoint> {
        if record.tree_size != size {
            return Err(Error::InvalidArgument(format!(
                "the tree thread signed {} leaves, not the {size} {which}",
                record.tree_size
            )));
        }
        self.record_covers = size;
        Ok(record)
    }

    /// Ask the threads for a checkpoint of every leaf handed over so far
    /// (deferred signing, format 6): whichever thread applies the jobs
    /// queued before signs the tree at exactly that size and hands the
    /// record back (`take_signed`); the writer goes on meanwhile. Nothing
    /// is asked while an earlier request is out (the next one covers
    /// more) or when nothing is left to sign. Whether one was asked.
    pub(crate) fn request_checkpoint(&mut self) -> bool {
        if self.signing.is_none() || self.requested.is_some() || self.size <= self.covered {
            return false;
        }
        let tx = self.signed_tx.clone();
        let rush = self.inner.rush.clone();
        self.post(move |k| {
            let _ = tx.send(k.sign_checkpoint());
            rush.store(false, Ordering::Release);
        });
        self.requested = Some(self.size);
        self.last_signed = Instant::now();
        true
    }

    /// Whether a checkpoint asked of the threads is not handed back yet.
    pub(crate) fn requested(&self) -> bool {
        self.requested.is_some()
    }

    /// The checkpoint the threads signed, if they have (`None` if none
    /// was asked or it is not signed yet). The writer appends it next.
    pub(crate) fn take_signed(&mut self) -> Option<Result<TreeCheckpoint>> {
        let asked = self.requested?;
        let got = match self.signed_rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(Error::InvalidArgument(
                "the Merkle tree's threads are gone".into(),
            )),
        };
        self.requested = None;
        if std::mem::take(&mut self.hurried) {
            // Signed before the rush was seen (or by the other thread):
            // nothing is late any more.
            self.inner.rush.store(false, Ordering::Release);
        }
        Some(got.and_then(|record| self.next_record(record, asked, "asked for")))
    }

    /// Bound how long events stay unsigned while the tree lags (the
    /// nice-10 tree thread starved by a saturated machine): a checkpoint
    /// asked for more than the checkpoint interval ago and not yet signed
    /// is hurried: the catch-up thread, at the ingest's priority, applies
    /// every job up to it (the tree's deferred work, done sooner), and
    /// whichever thread reaches it signs it. The writer calls this every
    /// cycle; it does nothing on the ingest path but an elapsed-time
    /// check, once a request is out.
    pub(crate) fn hurry_if_late(&mut self) {
        let Some(cfg) = &self.signing else {
            return;
        };
        if self.requested.is_none() || self.hurried || self.last_signed.elapsed() < cfg.interval {
            return;
        }
        self.hurried = true;
        self.inner.rush.store(true, Ordering::Release);
        if let Some(h) = &self.helper {
            h.thread().unpark();
        }
    }

    /// The checkpoint asked of the threads, signed here if they have not
    /// yet (the jobs before it are applied on the writer): before a
    /// signing in place, a retention cut or close.
    pub(crate) fn wait_requested(&mut self) -> Option<Result<TreeCheckpoint>> {
        self.requested?;
        if let Some(r) = self.take_signed() {
            return Some(r);
        }
        self.caught_up();
        self.take_signed()
    }
}

/// What one `Inner::work` did.
enum Worked {
    /// A job done; the events it added to the tree (0: not a block, or a
    /// block another thread took from flight and applied).
    Events(u64),
    /// No job queued (or, for the tree thread, the catch-up thread's
    /// block in flight).
    Idle,
    /// The writer is gone and every job is done.
    Closed,
}

/// A block's leaves: the hashes, or the frames to hash (read back from
/// the segment into `scratch`), or `None` if they could not be read.
fn leaves_of<'a>(block: &'a Block, scratch: &'a mut Vec<u8>) -> Option<BlockRef<'a>> {
    let (leaves, frames) = match &block.leaves {
        Leaves::Hashed(v) => (Some(&v[..]), &[][..]),
        Leaves::Frames(f) => (None, &f[..]),
        Leaves::InFile { file, offset, len } => {
            scratch.resize(*len, 0);
            if let Err(e) = file.read_exact_at(scratch, *offset) {
                // The tree stays short of this block: it signs nothing and
                // stores no tree file from now on, and the next open
                // rebuilds it from the segments.
                tracing::error!(error = %e, offset, "the Merkle tree thread could not read a block back from its segment; no checkpoint is signed until the log is reopened");
                return None;
            }
            (None, &scratch[..])
        }
    };
    Some(BlockRef {
        block_start: block.block_start,
        first_lsn: block.first_lsn,
        frames,
        leaves,
        is_checkpoint: block.is_checkpoint,
    })
}

/// Apply `block` to the tree (the caller holds it).
fn apply_block(keeper: &mut TreeKeeper, block: &Block, behind: &AtomicU64, scratch: &mut Vec<u8>) {
    match leaves_of(block, scratch) {
        None => keeper.block_lost(),
        Some(b) => {
            if let Err(e) = keeper.block_written(&b) {
                // Only a tree of 2^64 leaves fails here; the block is stored.
                tracing::error!(error = %e, "the Merkle tree could not take a block");
            }
        }
    }
    behind.fetch_sub(block.count, Ordering::Relaxed);
}

/// Combine `block` onto `growth` (no lock held); whether its leaves
/// could not be read (the block is then lost to the tree).
fn combine(growth: &mut Growth, block: &Block, scratch: &mut Vec<u8>) -> bool {
    let Some(b) = leaves_of(block, scratch) else {
        return true;
    };
    if let Err(e) = growth.block_written(&b) {
        tracing::error!(error = %e, "the Merkle tree could not take a block");
    }
    false
}

impl Drop for TreeWorker {
    /// Apply what the threads were handed, then stop them.
    fn drop(&mut self) {
        self.caught_up();
        self.tx = None;
        self.inner.stop.store(true, Ordering::Release);
        for t in [self.thread.take(), self.helper.take()]
            .into_iter()
            .flatten()
        {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{write_frame, REC_EVENT};
    use crate::tlog::merkle::{leaf_hash, Frontier};
    use crate::tree::segtree::SegmentTree;
    use std::path::PathBuf;

    /// Signing with a fixed test key, every `interval`, no state file.
    fn test_signing(interval: Duration) -> CheckpointConfig {
        let key = crate::tlog::SignerKey::from_seed("test.example/log", [7; 32]).unwrap();
        CheckpointConfig {
            key,
            interval,
            state: None,
        }
    }

    fn worker(dir: &Path) -> (TreeWorker, Arc<AtomicU64>) {
        signing_worker(dir, None)
    }

    fn signing_worker(
        dir: &Path,
        signing: Option<CheckpointConfig>,
    ) -> (TreeWorker, Arc<AtomicU64>) {
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir, &[], Frontier::new(), signing).unwrap();
        let waits = Arc::default();
        (
            TreeWorker::start(keeper, behind.clone(), waits).unwrap(),
            behind,
        )
    }

    /// Hand over `blocks` blocks of 1-5 hashed leaves as fast as the
    /// writer can; the tree they make.
    fn hand_over(w: &mut TreeWorker, dir: &Path, blocks: u64) -> Frontier {
        let mut want = Frontier::new();
        let mut n = 0u64;
        let path = dir.join("none");
        for block in 0..blocks {
            let mut leaves: Vec<TreeHash> = (0..1 + block % 5)
                .map(|_| {
                    n += 1;
                    leaf_hash(&n.to_le_bytes())
                })
                .collect();
            for l in &leaves {
                want.push(*l).unwrap();
            }
            let count = leaves.len() as u64;
            let at = (0, path.as_path());
            w.block_written(at, block * 100, n - count, count, &mut leaves, &[], false);
            assert!(leaves.is_empty(), "the hashes are taken, not copied");
        }
        want
    }

    /// Blocks `from..to` of 1-5 hashed leaves each (leaf `n` hashes `n`):
    /// (block start, first LSN, leaves).
    fn some_blocks(from: u64, to: u64) -> Vec<(u64, u64, Vec<TreeHash>)> {
        let mut n: u64 = (0..from).map(|b| 1 + b % 5).sum();
        (from..to)
            .map(|block| {
                let first = n;
                let leaves = (0..1 + block % 5)
                    .map(|_| {
                        n += 1;
                        leaf_hash(&n.to_le_bytes())
                    })
                    .collect();
                (block * 100, first, leaves)
            })
            .collect()
    }

    /// The share a tree that applied `blocks` itself, one by one, holds.
    fn recomputed(dir: &Path, blocks: &[(u64, u64, Vec<TreeHash>)]) -> SegmentTree {
        let mut k = TreeKeeper::open(dir, &[], Frontier::new(), None).unwrap();
        for (start, lsn, leaves) in blocks {
            let b = BlockRef {
                block_start: *start,
                first_lsn: *lsn,
                frames: &[],
                leaves: Some(leaves),
                is_checkpoint: false,
            };
            k.block_written(&b).unwrap();
        }
        k.share().clone()
    }

    /// A worker on an empty tree in `dir` with test marks (`tree_thread`:
    /// whether the nice-10 tree thread runs beside the catch-up thread),
    /// and its count of events behind.
    fn worker_with_marks(
        dir: &Path,
        catch_up_past: u64,
        catch_up_to: u64,
        tree_thread: bool,
    ) -> (TreeWorker, Arc<AtomicU64>) {
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir, &[], Frontier::new(), None).unwrap();
        let marks = Marks {
            catch_up_past,
            catch_up_to,
        };
        let w = TreeWorker::start_with(keeper, behind.clone(), Arc::default(), marks, tree_thread)
            .unwrap();
        (w, behind)
    }

    /// Polls `done` every millisecond for at most 20 s (the caller's
    /// assertion after it says what was awaited).
    fn wait_until(mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn send_blocks(w: &mut TreeWorker, blocks: &[(u64, u64, Vec<TreeHash>)]) {
        let path = PathBuf::from("none");
        for (start, lsn, leaves) in blocks {
            let mut leaves = leaves.clone();
            let count = leaves.len() as u64;
            w.block_written((0, &path), *start, *lsn, count, &mut leaves, &[], false);
        }
    }

    /// The tree thread combines blocks outside the lock and installs
    /// them, while the writer takes the tree now and then and applies
    /// whatever is left (the block in flight included): whoever applies
    /// each, the tree holds exactly the nodes, groups and root of a tree
    /// that applied every block itself, at every call.
    #[test]
    fn installs_and_the_writers_catch_up_make_the_same_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker(dir.path());
        let all = some_blocks(0, 3000);
        for chunk in (0..all.len()).step_by(100) {
            let end = (chunk + 100).min(all.len());
            send_blocks(&mut w, &all[chunk..end]);
            if chunk % 300 == 0 {
                // Let the thread install some.
                std::thread::sleep(Duration::from_millis(2));
            }
            let want = recomputed(dir.path(), &all[..end]);
            let got = w.call(|k| k.share().clone());
            assert_eq!(got, want, "after {end} blocks");
            assert_eq!(behind.load(Ordering::Relaxed), 0);
        }
        assert!(
            w.inner.installed.load(Ordering::Relaxed) > 0,
            "the thread installed blocks it combined"
        );
    }

    /// The writer takes the tree while the thread has a block in flight
    /// (combined, held here before its install): the writer applies that
    /// block itself, and the thread's install is then a no-op: the block
    /// is not added twice, and the tree is the one recomputed.
    #[test]
    fn an_install_that_lost_the_race_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker(dir.path());
        let (release, held) = std::sync::mpsc::channel();
        *w.inner.before_install.lock().unwrap() = Some(held);
        let all = some_blocks(0, 500);
        send_blocks(&mut w, &all);
        wait_until(|| w.inner.lock().in_flight.is_some());
        assert!(w.inner.lock().in_flight.is_some(), "a block is in flight");
        let got = w.call(|k| k.share().clone());
        assert_eq!(got, recomputed(dir.path(), &all));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        // Let the thread try its install; then more blocks, installed.
        drop(release);
        wait_until(|| w.inner.raced.load(Ordering::Relaxed) > 0);
        assert_eq!(w.inner.raced.load(Ordering::Relaxed), 1);
        let more = some_blocks(500, 700);
        send_blocks(&mut w, &more);
        let got = w.call(|k| k.share().clone());
        assert_eq!(got, recomputed(dir.path(), &some_blocks(0, 700)));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
    }

    /// The writer takes the tree while the thread is writing a tree file
    /// outside the lock (held here before its rename): the writer stores
    /// the file itself (a seal returns with it stored), and the thread
    /// then drops its copy instead of renaming it over.
    #[test]
    fn a_tree_file_in_flight_is_stored_by_whoever_takes_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = worker(dir.path());
        let mut meta = crate::tree::keeper::tests_meta(dir.path());
        w.segment_created(&meta);
        let all = some_blocks(0, 40);
        send_blocks(&mut w, &all);
        meta.count = all.iter().map(|b| b.2.len() as u64).sum();
        let (release, held) = std::sync::mpsc::channel::<()>();
        w.caught_up();
        *w.inner.before_install.lock().unwrap() = Some(held);
        w.store_share(&meta);
        wait_until(|| w.inner.lock().store_in_flight.is_some());
        let path = crate::tree::segtree::path_of(&meta);
        assert!(!path.exists(), "the thread holds the file back");
        w.caught_up();
        let stored = std::fs::read(&path).expect("stored by the writer");
        let share = w.call(|k| k.share().clone());
        assert_eq!(stored, share.encode());
        drop(release);
        wait_until(|| w.inner.raced.load(Ordering::Relaxed) > 0);
        assert_eq!(w.inner.raced.load(Ordering::Relaxed), 1, "its copy dropped");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    /// Many blocks handed over as fast as the writer can, with marks
    /// small enough that the catch-up thread helps the tree thread:
    /// whichever applies each, they go in order, and a call sees all of
    /// them; the count of events behind returns to 0.
    #[test]
    fn blocks_are_applied_in_order_by_either_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker_with_marks(dir.path(), 16, 4, true);
        let want = hand_over(&mut w, dir.path(), 4096);
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        drop(w);
    }

    /// The writer's way with hashed blocks: one list filled per block, and
    /// after each hand-over the (empty) list it gets back, a spare one once
    /// the threads have applied blocks (src/tree/lists.rs). Lists come back
    /// and are filled again, by either thread and by the writer's catch-up,
    /// and the tree still holds exactly the leaves handed over, in order.
    #[test]
    fn leaf_lists_come_back_and_the_tree_stays_right_across_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker_with_marks(dir.path(), 64, 16, true);
        let all = some_blocks(0, 3000);
        let path = PathBuf::from("none");
        let mut list: Vec<TreeHash> = Vec::new();
        let mut lent = std::collections::HashSet::new();
        let mut reused = 0;
        for (i, (start, lsn, leaves)) in all.iter().enumerate() {
            assert!(list.is_empty(), "a list comes back empty");
            if lent.contains(&(list.as_ptr() as usize)) {
                reused += 1;
            }
            list.extend_from_slice(leaves);
            if list.capacity() > 0 {
                lent.insert(list.as_ptr() as usize);
            }
            let count = leaves.len() as u64;
            w.block_written((0, &path), *start, *lsn, count, &mut list, &[], false);
            if i % 500 == 499 {
                // The writer takes the tree now and then (a checkpoint,
                // a seal): what it applies comes back too.
                let want = recomputed(dir.path(), &all[..=i]);
                assert_eq!(w.call(|k| k.share().clone()), want, "after {i} blocks");
            } else if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let want = recomputed(dir.path(), &all);
        assert_eq!(w.call(|k| k.share().clone()), want);
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        assert!(reused > 0, "spare lists were filled again");
    }

    /// The tree thread is held (as if preempted at nice 10) with a block
    /// in flight: past the mark, the catch-up thread takes that block
    /// over and brings the lag back, combining outside the lock, without
    /// waiting for it; the held thread's install then changes nothing,
    /// and the tree is the one recomputed.
    #[test]
    fn the_catch_up_thread_takes_over_a_held_tree_threads_block() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker_with_marks(dir.path(), 400, 100, true);
        let (release, held) = std::sync::mpsc::channel();
        *w.inner.before_install.lock().unwrap() = Some(held);
        let first = some_blocks(0, 1);
        send_blocks(&mut w, &first);
        wait_until(|| w.inner.lock().in_flight.is_some());
        assert!(
            w.inner.lock().in_flight.is_some(),
            "the tree thread is held"
        );
        let all = some_blocks(0, 1000);
        send_blocks(&mut w, &all[1..]);
        wait_until(|| behind.load(Ordering::Relaxed) <= 100);
        let left = behind.load(Ordering::Relaxed);
        assert!(
            left <= 100,
            "{left} events behind: the catch-up thread waited"
        );
        assert!(w.inner.helped.load(Ordering::Relaxed) > 0);
        drop(release);
        wait_until(|| w.inner.raced.load(Ordering::Relaxed) > 0);
        assert_eq!(w.inner.raced.load(Ordering::Relaxed), 1, "its work dropped");
        let got = w.call(|k| k.share().clone());
        assert_eq!(got, recomputed(dir.path(), &all));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
    }

    /// Past `catch_up_past` events behind, the catch-up thread applies
    /// the oldest jobs (here alone: no tree thread) until the tree is back
    /// at `catch_up_to`, and no further; the writer applied none of them
    /// (it queued every block and returned).
    #[test]
    fn past_the_mark_the_catch_up_thread_brings_the_lag_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker_with_marks(dir.path(), 400, 100, false);
        // The tree held meanwhile: the catch-up thread finds the whole lag.
        let inner = w.inner.clone();
        let held = inner.lock();
        let want = hand_over(&mut w, dir.path(), 1000);
        drop(held);
        wait_until(|| behind.load(Ordering::Relaxed) <= 100);
        let left = behind.load(Ordering::Relaxed);
        assert!((96..=100).contains(&left), "{left} events behind");
        // One more pass of the thread's loop finds nothing to do.
        std::thread::sleep(IDLE_WAKE * 2);
        assert_eq!(behind.load(Ordering::Relaxed), left, "it stops at the mark");
        assert_eq!(w.inner.helped.load(Ordering::Relaxed), want.size() - left);
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
    }

    /// A job `ask`ed for (a retention cut's tree fields) sees the tree
    /// after exactly the blocks queued before it, never waits on the
    /// caller, and, while nothing applies the jobs (no tree thread here,
    /// as if starved at nice 10), is answered once hurried: the catch-up
    /// thread applies the jobs up to it and no further.
    #[test]
    fn an_asked_job_sees_the_blocks_before_it_and_is_hurried_when_late() {
        let dir = tempfile::tempdir().unwrap();
        let far = Marks {
            catch_up_past: u64::MAX / 2,
            catch_up_to: u64::MAX / 2,
        };
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir.path(), &[], Frontier::new(), None).unwrap();
        let mut w =
            TreeWorker::start_with(keeper, behind.clone(), Arc::default(), far, false).unwrap();
        let before = some_blocks(0, 150);
        send_blocks(&mut w, &before);
        let answer = w.ask(|k| (k.size(), k.root()));
        let after = some_blocks(150, 220);
        send_blocks(&mut w, &after);
        std::thread::sleep(IDLE_WAKE * 2);
        assert!(answer.try_recv().is_err(), "nothing applied the jobs yet");
        w.hurry_asked();
        let mut got = None;
        wait_until(|| {
            got = answer.try_recv().ok();
            got.is_some()
        });
        let mut want = Frontier::new();
        for l in before.iter().flat_map(|b| b.2.iter()) {
            want.push(*l).unwrap();
        }
        assert_eq!(got, Some((want.size(), want.root())), "the tree as asked");
        w.asked_answered();
        std::thread::sleep(IDLE_WAKE * 2);
        let left: u64 = after.iter().map(|b| b.2.len() as u64).sum();
        assert_eq!(
            behind.load(Ordering::Relaxed),
            left,
            "the blocks queued after it wait for the tree thread"
        );
        // The writer's own catch-up (close) still applies the rest.
        assert_eq!(w.call(|k| k.size()), want.size() + left);
    }

    /// A checkpoint asked for while nothing applies the jobs (no tree
    /// thread here, as if starved at nice 10, and the lag far below the
    /// catch-up mark) stays unsigned until it is late: past the interval,
    /// `hurry_if_late` has the catch-up thread apply the jobs up to the
    /// request (and no further), and the record comes back signed at the
    /// size asked for.
    #[test]
    fn a_late_checkpoint_is_hurried_by_the_catch_up_thread() {
        let dir = tempfile::tempdir().unwrap();
        let signing = test_signing(Duration::from_millis(50));
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir.path(), &[], Frontier::new(), Some(signing)).unwrap();
        let far = Marks {
            catch_up_past: u64::MAX / 2,
            catch_up_to: u64::MAX / 2,
        };
        let mut w =
            TreeWorker::start_with(keeper, behind.clone(), Arc::default(), far, false).unwrap();
        let asked = some_blocks(0, 200);
        send_blocks(&mut w, &asked);
        let size = w.size;
        assert!(w.request_checkpoint());
        let after = some_blocks(200, 300);
        send_blocks(&mut w, &after);
        w.hurry_if_late();
        std::thread::sleep(Duration::from_millis(120));
        assert!(w.take_signed().is_none(), "nothing applied it yet");
        w.hurry_if_late();
        let mut got = None;
        wait_until(|| {
            got = w.take_signed();
            got.is_some()
        });
        let record = got.expect("signed once hurried").unwrap();
        let mut want = Frontier::new();
        for l in asked.iter().flat_map(|b| b.2.iter()) {
            want.push(*l).unwrap();
        }
        assert_eq!(record.tree_size, size);
        assert_eq!(record.root, want.root().to_hex());
        let left: u64 = after.iter().map(|b| b.2.len() as u64).sum();
        std::thread::sleep(IDLE_WAKE * 2);
        assert_eq!(
            behind.load(Ordering::Relaxed),
            left,
            "it stops at the request"
        );
        assert!(!w.inner.rush.load(Ordering::Relaxed));
        assert_eq!(w.call(|k| k.size()), size + left);
    }

    #[test]
    fn producers_hash_the_leaves_only_past_the_mark() {
        assert!(!producers_hash_leaves(0));
        assert!(!producers_hash_leaves(PRODUCERS_HASH_PAST));
        assert!(producers_hash_leaves(PRODUCERS_HASH_PAST + 1));
    }

    /// Blocks without leaf hashes are read back from the segment file by
    /// the tree thread and hashed there, as their frames in the file are.
    #[test]
    fn unhashed_blocks_are_read_back_from_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker(dir.path());
        let path = dir.path().join("segment");
        let mut file = std::fs::File::create(&path).unwrap();
        let (mut want, mut at, mut lsn) = (Frontier::new(), 64u64, 0u64);
        use std::io::Write;
        file.write_all(&[0; 64]).unwrap();
        for block in 0..50u64 {
            let mut frames = Vec::new();
            for i in 0..1 + block % 7 {
                let body = format!("event {block}.{i}").into_bytes();
                write_frame(&mut frames, REC_EVENT, &body);
                want.push(leaf_hash(&body)).unwrap();
            }
            let count = 1 + block % 7;
            file.write_all(&frames).unwrap();
            w.block_written(
                (3, path.as_path()),
                at,
                lsn,
                count,
                &mut Vec::new(),
                &frames,
                false,
            );
            at += frames.len() as u64;
            lsn += count;
        }
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
    }

    /// A block that can't be read back (here the file is shorter than
    /// the block) is left out of the tree, visibly: the tree is short of
    /// the log, so nothing is signed (and no tree file stored) until the
    /// log is reopened; nothing hangs.
    #[test]
    fn a_block_that_cannot_be_read_back_leaves_the_tree_short() {
        let dir = tempfile::tempdir().unwrap();
        let signing = test_signing(Duration::from_secs(10));
        let (mut w, behind) = signing_worker(dir.path(), Some(signing));
        let path = dir.path().join("segment");
        let mut frames = Vec::new();
        write_frame(&mut frames, REC_EVENT, b"written");
        std::fs::write(&path, &frames[..frames.len() - 1]).unwrap();
        w.block_written(
            (1, path.as_path()),
            0,
            0,
            1,
            &mut Vec::new(),
            &frames,
            false,
        );
        assert_eq!(
            w.call(|k| k.size()),
            0,
            "the unread block is not in the tree"
        );
        assert_eq!(w.size, 1, "the worker knows the log holds it");
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        assert!(w.checkpoint_due(true));
        let refused = w.sign_checkpoint().unwrap_err().to_string();
        assert!(
            refused.contains("never reached the Merkle tree"),
            "{refused}"
        );
    }

    /// A segment that can't be opened for reading: its blocks' frames are
    /// copied to the thread instead.
    #[test]
    fn a_segment_that_cannot_be_opened_has_its_frames_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = worker(dir.path());
        let path = dir.path().join("gone");
        let mut frames = Vec::new();
        write_frame(&mut frames, REC_EVENT, b"only in memory");
        w.block_written(
            (1, path.as_path()),
            0,
            0,
            1,
            &mut Vec::new(),
            &frames,
            false,
        );
        let mut want = Frontier::new();
        want.push(leaf_hash(b"only in memory")).unwrap();
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
    }
}
