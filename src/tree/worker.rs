//! The tree thread: hashes the Merkle tree's leaves, combines its interior
//! nodes and stores the segments' tree files, off the ingest path
//! (docs/proofs.md, "Who hashes what"). The writer hands it, in order,
//! where each block it wrote lies in its segment (the thread reads the
//! events back from the file: no copy, no hash on the ingest path) and
//! the segment events (created, discarded, sealed); it works through them
//! at background priority, like the indexers, and may fall behind during a
//! burst by up to [`LAG_EVENTS`] events, catching up after it. Whatever needs the tree as it
//! stands (signing a checkpoint, a retention cut, a seal) is done by the
//! writer itself: it takes the tree, applies what the thread has not yet
//! (at the writer's own priority: a starved background thread never holds
//! the ingest up), then acts; so a checkpoint still covers exactly the
//! leaves before it and is signed at every seal, at close and at the
//! interval. What is not combined yet is only in memory: after a crash,
//! the tree is rebuilt from the segments at open (`TreeKeeper::open`),
//! as before.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use crate::error::{Error, Result};
use crate::event::system::TreeCheckpoint;
use crate::layout::SegmentMeta;
use crate::tlog::merkle::TreeHash;

use super::keeper::{CheckpointConfig, TreeKeeper};

/// Events the tree may be behind the writer before the writer applies
/// the oldest queued blocks itself (each block it then writes beyond the
/// bound, about as many events as it adds). Bounds what a burst defers:
/// 2^21 events is ~300 MiB of the load run's events (a default segment and
/// a bit), ~0.8 s of SHA-256 on a 2.1 GHz Xeon to catch up after the burst
/// (or at a checkpoint, a seal that signs, a retention cut, close), and
/// only a block's place in its segment is queued per block (the events are
/// read back from the file), so the queue's memory stays small.
pub(crate) const LAG_EVENTS: u64 = 1 << 21;

/// The lag bound of a log that signs: every checkpoint (each seal, the
/// interval, close) makes the writer catch the whole lag up before it
/// signs, so the lag is kept short enough for that stall to stay a few
/// ms (2^16 events of interior nodes, the leaves coming hashed), as many
/// short catch-ups instead of one long one.
pub(crate) const SIGNING_LAG_EVENTS: u64 = 1 << 16;

/// The tree thread's nice value: below the ingest threads, like the
/// sealed-segment indexer, so that under saturation it takes the CPU the
/// ingest leaves (past `LAG_EVENTS` behind, the writer applies the
/// oldest blocks itself).
const TREE_NICE: i32 = 10;

/// Longest the idle thread sleeps without looking at its queue (it is
/// woken at every job; this is only a safety net).
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// The events of one block, for the tree.
enum Leaves {
    /// Hashed where the batch was encoded (`EncodedBatch::hash_leaves`).
    Hashed(Vec<TreeHash>),
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
        let mut scratch = Vec::new();
        while let Ok(job) = self.jobs.try_recv() {
            run_job(keeper, job, &self.behind, &mut scratch);
        }
    }

    /// Apply the oldest queued jobs until the tree is at most `bound`
    /// events behind (the caller holds the tree).
    fn drain_to(&self, keeper: &mut TreeKeeper, bound: u64) {
        let mut scratch = Vec::new();
        while self.behind.load(Ordering::Relaxed) > bound {
            let Ok(job) = self.jobs.try_recv() else {
                return;
            };
            run_job(keeper, job, &self.behind, &mut scratch);
        }
    }

    /// The thread's loop: one job at a time, the tree held only for it.
    fn run(&self) {
        crate::priority::background_thread(TREE_NICE);
        // The frames read back from the segment, reused block to block.
        let mut scratch = Vec::new();
        loop {
            let next = {
                let mut keeper = self.lock();
                match self.jobs.try_recv() {
                    Ok(job) => {
                        run_job(&mut keeper, job, &self.behind, &mut scratch);
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
    /// The active segment, open for reading: (its sequence number, the
    /// handle), or `None` if it could not be opened (its blocks' frames
    /// are then copied into the jobs).
    reader: Option<(u64, Option<Arc<File>>)>,
    /// `LAG_EVENTS`, or `SIGNING_LAG_EVENTS` when signing (smaller in
    /// tests).
    lag_events: u64,
}

impl TreeWorker {
    /// Start the tree thread on `keeper` (the tree as found at open).
    /// `behind` counts the events handed over and not yet combined.
    pub(crate) fn start(keeper: TreeKeeper, behind: Arc<AtomicU64>) -> Result<TreeWorker> {
        // Unbounded: the lag is bounded in events (`LAG_EVENTS`), and a
        // job is a block's place in its segment, not its events.
        let (tx, jobs) = unbounded::<Job>();
        let size = keeper.size();
        let covered = keeper.covered();
        let signing = keeper.signing().cloned();
        let signing_is_on = signing.is_some();
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
            reader: None,
            lag_events: match signing_is_on {
                true => SIGNING_LAG_EVENTS,
                false => LAG_EVENTS,
            },
        })
    }

    /// Queue a job for the thread. Past the lag bound the writer applies
    /// the oldest jobs itself, until the tree is back within it (the
    /// thread runs at a lower priority and must not let the lag grow
    /// without end).
    fn send(&self, job: Job) {
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        if let Err(e) = tx.send(job) {
            // The thread is gone (it never drops its end while running):
            // apply the job here.
            let mut keeper = self.inner.lock();
            self.inner.drain(&mut keeper);
            let behind = &self.inner.behind;
            run_job(&mut keeper, e.into_inner(), behind, &mut Vec::new());
            return;
        }
        if self.inner.behind.load(Ordering::Relaxed) > self.lag_events {
            let mut keeper = self.inner.lock();
            self.inner.drain_to(&mut keeper, self.lag_events);
        } else if let Some(t) = &self.thread {
            t.thread().unpark();
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
            let room = Vec::with_capacity(hashed.capacity());
            Leaves::Hashed(std::mem::replace(hashed, room))
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

fn run_job(keeper: &mut TreeKeeper, job: Job, behind: &AtomicU64, scratch: &mut Vec<u8>) {
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
                Leaves::InFile { file, offset, len } => {
                    scratch.resize(*len, 0);
                    if let Err(e) = file.read_exact_at(scratch, *offset) {
                        // The tree stays short of this block: it signs
                        // nothing and stores no tree file from now on, and
                        // the next open rebuilds it from the segments.
                        tracing::error!(error = %e, offset, "the Merkle tree thread could not read a block back from its segment; no checkpoint is signed until the log is reopened");
                        keeper.block_lost();
                        behind.fetch_sub(count, Ordering::Relaxed);
                        return;
                    }
                    (None, &scratch[..])
                }
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
    use crate::frame::{write_frame, REC_EVENT};
    use crate::tlog::merkle::{leaf_hash, Frontier};

    fn worker(dir: &Path) -> (TreeWorker, Arc<AtomicU64>) {
        signing_worker(dir, None)
    }

    fn signing_worker(
        dir: &Path,
        signing: Option<CheckpointConfig>,
    ) -> (TreeWorker, Arc<AtomicU64>) {
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir, &[], Frontier::new(), signing).unwrap();
        (TreeWorker::start(keeper, behind.clone()).unwrap(), behind)
    }

    /// Many blocks handed over as fast as the writer can, with a lag bound
    /// small enough that the writer applies some of them itself: whichever
    /// side applies each, they go in order, and a call sees all of them;
    /// the count of events behind returns to 0.
    #[test]
    fn blocks_are_applied_in_order_by_either_side() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, behind) = worker(dir.path());
        w.lag_events = 16;
        let mut want = Frontier::new();
        let mut n = 0u64;
        let path = dir.path().join("none");
        for block in 0..1024u64 {
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
            assert!(
                behind.load(Ordering::Relaxed) <= 16 + 5,
                "past the lag bound"
            );
        }
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        drop(w);
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
        let key = crate::tlog::SignerKey::from_seed("test.example/log", [7; 32]).unwrap();
        let signing = CheckpointConfig {
            key,
            interval: Duration::from_secs(10),
            state: None,
        };
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
