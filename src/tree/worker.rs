//! The tree thread: combines the Merkle tree's interior nodes, stores the
//! segments' tree files and signs checkpoints, off the ingest path
//! (docs/proofs.md, "Who hashes what"). The writer hands it, in order, the
//! leaf hashes of every block it wrote (hashed by the producers) and the
//! segment events (created, discarded, sealed); it works through them at
//! background priority, like the indexers. Whatever needs the tree as it
//! stands (signing a checkpoint, a retention cut, a seal) is done by the
//! writer itself: it takes the tree, applies what the thread has not yet
//! (at the writer's own priority: a starved background thread never holds
//! the ingest up), then acts; so a checkpoint still covers exactly the
//! leaves before it and is signed at every seal, at close and at the
//! interval. What is not combined yet is only in memory: after a crash,
//! the tree is rebuilt from the segments at open (`TreeKeeper::open`),
//! as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};

use crate::error::{Error, Result};
use crate::event::system::TreeCheckpoint;
use crate::layout::SegmentMeta;
use crate::tlog::merkle::TreeHash;

use super::keeper::{CheckpointConfig, TreeKeeper};

/// Jobs the writer may have queued for the tree thread before it applies
/// them itself: bounds the leaves held in memory behind the tree (a block
/// holds at most `max_batch_bytes` of events, so with the default 1 MiB
/// at most 256 MiB / ~150 bytes per event, about 1.8M leaves, 57 MB of
/// hashes; under the load run's workload far less).
const QUEUE_JOBS: usize = 256;

/// The tree thread's nice value: below the ingest threads, like the
/// sealed-segment indexer, so that under saturation it takes the CPU the
/// ingest leaves (and the bounded queue stops the writer if it falls too
/// far behind, the writer catches up itself).
const TREE_NICE: i32 = 10;

/// Longest the idle thread sleeps without looking at its queue (it is
/// woken at every job; this is only a safety net).
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// The events of one block, for the tree.
enum Leaves {
    /// Hashed by the producers.
    Hashed(Vec<TreeHash>),
    /// The event frames (system events the writer made itself): hashed on
    /// the tree thread.
    Frames(Vec<u8>),
}

enum Job {
    Block {
        block_start: u64,
        first_lsn: u64,
        leaves: Leaves,
        count: u64,
        is_checkpoint: bool,
    },
    Run(Box<dyn FnOnce(&mut TreeKeeper) + Send>),
}

/// What the writer and the thread share: the tree, and the jobs not yet
/// applied to it. Whoever holds the tree takes the next job, so jobs are
/// applied in the order they were queued, by either side.
struct Inner {
    keeper: Mutex<TreeKeeper>,
    jobs: Receiver<Job>,
    /// Events handed over and not yet combined (`Log::tree_behind`).
    behind: Arc<AtomicU64>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, TreeKeeper> {
        self.keeper.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply every queued job (the caller holds the tree).
    fn drain(&self, keeper: &mut TreeKeeper) {
        while let Ok(job) = self.jobs.try_recv() {
            run_job(keeper, job, &self.behind);
        }
    }

    /// The thread's loop: one job at a time, the tree held only for it.
    fn run(&self) {
        crate::priority::background_thread(TREE_NICE);
        loop {
            let next = {
                let mut keeper = self.lock();
                match self.jobs.try_recv() {
                    Ok(job) => {
                        run_job(&mut keeper, job, &self.behind);
                        continue;
                    }
                    Err(e) => e,
                }
            };
            match next {
                TryRecvError::Disconnected => return,
                TryRecvError::Empty => std::thread::park_timeout(IDLE_WAKE),
            }
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
    inner: Arc<Inner>,
    signing: Option<CheckpointConfig>,
    /// Leaves handed to the tree (the tree's size once it has caught up).
    size: u64,
    /// Leaves already covered by a checkpoint in the log.
    covered: u64,
    last_signed: Instant,
}

impl TreeWorker {
    /// Start the tree thread on `keeper` (the tree as found at open).
    /// `behind` counts the events handed over and not yet combined.
    pub(crate) fn start(keeper: TreeKeeper, behind: Arc<AtomicU64>) -> Result<TreeWorker> {
        let (tx, jobs) = bounded::<Job>(QUEUE_JOBS);
        let size = keeper.size();
        let covered = keeper.covered();
        let signing = keeper.signing().cloned();
        let inner = Arc::new(Inner {
            keeper: Mutex::new(keeper),
            jobs,
            behind,
        });
        let theirs = inner.clone();
        let thread = std::thread::Builder::new()
            .name("auditlog-tree".into())
            .spawn(move || theirs.run())
            .map_err(|e| Error::io("starting the Merkle tree thread", e))?;
        Ok(TreeWorker {
            tx: Some(tx),
            thread: Some(thread),
            inner,
            signing,
            size,
            covered,
            last_signed: Instant::now(),
        })
    }

    /// Queue a job for the thread; with the queue full, the writer applies
    /// the queued jobs itself first (the thread is behind: it runs at a
    /// lower priority and must not hold the ingest up).
    fn send(&self, job: Job) {
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        let job = match tx.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Some(job),
        };
        match job {
            None => {
                if let Some(t) = &self.thread {
                    t.thread().unpark();
                }
            }
            Some(job) => {
                let mut keeper = self.inner.lock();
                self.inner.drain(&mut keeper);
                run_job(&mut keeper, job, &self.inner.behind);
            }
        }
    }

    /// Queue `f` for the tree thread (after everything queued before).
    fn post(&self, f: impl FnOnce(&mut TreeKeeper) + Send + 'static) {
        self.send(Job::Run(Box::new(f)));
    }

    /// Run `f` on the tree as it stands after everything queued before,
    /// here (on the writer): the jobs the thread has not applied yet are
    /// applied first.
    pub(crate) fn call<R>(&self, f: impl FnOnce(&mut TreeKeeper) -> R) -> R {
        let mut keeper = self.inner.lock();
        self.inner.drain(&mut keeper);
        f(&mut keeper)
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

    pub(crate) fn segment_sealed(&self, meta: &SegmentMeta) {
        let meta = meta.clone();
        self.post(move |k| k.segment_sealed(&meta));
    }

    pub(crate) fn store_share(&self, meta: &SegmentMeta) {
        let meta = meta.clone();
        self.post(move |k| k.store_share(&meta));
    }

    /// A block of `count` events was written at `block_start`: its leaf
    /// hashes if the producers computed them all (taken), else its frames
    /// (copied; only the writer's own system events lack them).
    pub(crate) fn block_written(
        &mut self,
        block_start: u64,
        first_lsn: u64,
        count: u64,
        hashed: &mut Vec<TreeHash>,
        frames: &[u8],
        is_checkpoint: bool,
    ) {
        let leaves = match hashed.len() as u64 == count {
            true => {
                let room = Vec::with_capacity(hashed.capacity());
                Leaves::Hashed(std::mem::replace(hashed, room))
            }
            false => Leaves::Frames(frames.to_vec()),
        };
        if is_checkpoint {
            self.covered = self.size + 1;
        }
        self.size += count;
        self.inner.behind.fetch_add(count, Ordering::Relaxed);
        self.send(Job::Block {
            block_start,
            first_lsn,
            leaves,
            count,
            is_checkpoint,
        });
    }

    /// Whether a checkpoint is due: signing, the tree grew since the last
    /// one, and the interval passed (or `forced`: a seal, a close).
    pub(crate) fn checkpoint_due(&self, forced: bool) -> bool {
        let Some(cfg) = &self.signing else {
            return false;
        };
        self.size > self.covered && (forced || self.last_signed.elapsed() >= cfg.interval)
    }

    /// Sign the tree of every leaf handed over so far (what the thread
    /// has not combined yet is combined here first).
    pub(crate) fn sign_checkpoint(&mut self) -> Result<TreeCheckpoint> {
        let size = self.size;
        let record = self.call(TreeKeeper::sign_checkpoint)?;
        self.last_signed = Instant::now();
        if record.tree_size != size {
            return Err(Error::InvalidArgument(format!(
                "the tree thread signed {} leaves, not the {size} written",
                record.tree_size
            )));
        }
        Ok(record)
    }
}

fn run_job(keeper: &mut TreeKeeper, job: Job, behind: &AtomicU64) {
    match job {
        Job::Run(f) => f(keeper),
        Job::Block {
            block_start,
            first_lsn,
            leaves,
            count,
            is_checkpoint,
        } => {
            let (hashed, frames) = match &leaves {
                Leaves::Hashed(v) => (Some(&v[..]), &[][..]),
                Leaves::Frames(f) => (None, &f[..]),
            };
            if let Err(e) =
                keeper.block_written(block_start, first_lsn, frames, hashed, is_checkpoint)
            {
                // Only a tree of 2^64 leaves fails here; the block is stored.
                tracing::error!(error = %e, "the Merkle tree could not take a block");
            }
            behind.fetch_sub(count, Ordering::Relaxed);
        }
    }
}

impl Drop for TreeWorker {
    /// Apply what the thread was handed, then stop it.
    fn drop(&mut self) {
        self.caught_up();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, Frontier};

    /// More blocks than the queue holds, handed over as fast as the
    /// writer can: whichever side applies each (the thread, or the writer
    /// with the queue full), they go in order, and a call sees all of
    /// them; the count of events behind returns to 0.
    #[test]
    fn blocks_are_applied_in_order_by_either_side() {
        let dir = tempfile::tempdir().unwrap();
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir.path(), &[], Frontier::new(), None).unwrap();
        let mut w = TreeWorker::start(keeper, behind.clone()).unwrap();
        let mut want = Frontier::new();
        let mut n = 0u64;
        for block in 0..(QUEUE_JOBS as u64 * 4) {
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
            w.block_written(block * 100, n - count, count, &mut leaves, &[], false);
            assert!(leaves.is_empty(), "the hashes are taken, not copied");
        }
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        drop(w);
    }
}
