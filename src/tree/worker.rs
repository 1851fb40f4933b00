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
//! writer never waits for either on its hot path. Whatever needs the tree
//! as it stands (signing a checkpoint, a retention cut, an explicit seal,
//! close) is done by the writer itself: it takes the tree, applies what
//! the threads have not yet, then acts; so a checkpoint still covers
//! exactly the leaves before it and is signed at every seal, at close and
//! at the interval. What is not combined yet is only in memory: after a
//! crash, the tree is rebuilt from the segments at open
//! (`TreeKeeper::open`), as before.

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

use super::keeper::{CheckpointConfig, TreeKeeper};

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

/// The marks of a log that signs (its producers always hash the leaves):
/// every checkpoint (each seal, the interval, close) makes the writer
/// catch the whole lag up before it signs, so the lag is kept short
/// enough for that to stay a few ms of interior nodes.
const SIGNING_CATCH_UP_PAST: u64 = 1 << 16;
const SIGNING_CATCH_UP_TO: u64 = 1 << 15;

/// Whether `Log::append*` hashes a batch's leaves on the appending
/// thread: always for a log that signs, else only while the tree is more
/// than `PRODUCERS_HASH_PAST` events behind.
pub(crate) fn producers_hash_leaves(signing: bool, behind: u64) -> bool {
    signing || behind > PRODUCERS_HASH_PAST
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
    marks: Marks,
    /// Set when the writer is done: the catch-up thread ends.
    stop: AtomicBool,
    /// Events applied by the catch-up thread (tests, diagnostics).
    helped: AtomicU64,
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
    fn of(signing: bool) -> Marks {
        match signing {
            true => Marks {
                catch_up_past: SIGNING_CATCH_UP_PAST,
                catch_up_to: SIGNING_CATCH_UP_TO,
            },
            false => Marks {
                catch_up_past: CATCH_UP_PAST,
                catch_up_to: PRODUCERS_HASH_PAST,
            },
        }
    }
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

    /// The catch-up thread's loop: asleep until the writer finds the tree
    /// more than `catch_up_past` events behind, then the oldest jobs, one
    /// at a time (the tree held only for each, as the tree thread does:
    /// whoever holds it takes the next job, so the order is kept), until
    /// it is back at `catch_up_to`.
    fn catch_up(&self) {
        let mut scratch = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(IDLE_WAKE);
            if self.behind.load(Ordering::Relaxed) <= self.marks.catch_up_past {
                continue;
            }
            while self.behind.load(Ordering::Relaxed) > self.marks.catch_up_to {
                let mut keeper = self.lock();
                let Ok(job) = self.jobs.try_recv() else {
                    break;
                };
                let n = match &job {
                    Job::Block { count, .. } => *count,
                    Job::Run(_) => 0,
                };
                run_job(&mut keeper, job, &self.behind, &mut scratch);
                self.helped.fetch_add(n, Ordering::Relaxed);
            }
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
    /// The catch-up thread (`CATCH_UP_PAST`).
    helper: Option<JoinHandle<()>>,
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
}

impl TreeWorker {
    /// Start the tree thread on `keeper` (the tree as found at open).
    /// `behind` counts the events handed over and not yet combined.
    pub(crate) fn start(keeper: TreeKeeper, behind: Arc<AtomicU64>) -> Result<TreeWorker> {
        let marks = Marks::of(keeper.signing().is_some());
        TreeWorker::start_with(keeper, behind, marks, true)
    }

    /// `start` with the given marks, and (tests) without the tree thread,
    /// so that only the catch-up thread and the writer apply jobs.
    fn start_with(
        keeper: TreeKeeper,
        behind: Arc<AtomicU64>,
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
            keeper: Mutex::new(keeper),
            jobs,
            behind,
            marks,
            stop: AtomicBool::new(false),
            helped: AtomicU64::new(0),
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
            reader: None,
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
            let mut keeper = self.inner.lock();
            self.inner.drain(&mut keeper);
            let behind = &self.inner.behind;
            run_job(&mut keeper, e.into_inner(), behind, &mut Vec::new());
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

    /// Many blocks handed over as fast as the writer can, with marks
    /// small enough that the catch-up thread helps the tree thread:
    /// whichever applies each, they go in order, and a call sees all of
    /// them; the count of events behind returns to 0.
    #[test]
    fn blocks_are_applied_in_order_by_either_thread() {
        let dir = tempfile::tempdir().unwrap();
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir.path(), &[], Frontier::new(), None).unwrap();
        let marks = Marks {
            catch_up_past: 16,
            catch_up_to: 4,
        };
        let mut w = TreeWorker::start_with(keeper, behind.clone(), marks, true).unwrap();
        let want = hand_over(&mut w, dir.path(), 4096);
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
        drop(w);
    }

    /// Past `catch_up_past` events behind, the catch-up thread applies
    /// the oldest jobs (here alone: no tree thread) until the tree is back
    /// at `catch_up_to`, and no further; the writer applied none of them
    /// (it queued every block and returned).
    #[test]
    fn past_the_mark_the_catch_up_thread_brings_the_lag_back() {
        let dir = tempfile::tempdir().unwrap();
        let behind = Arc::new(AtomicU64::new(0));
        let keeper = TreeKeeper::open(dir.path(), &[], Frontier::new(), None).unwrap();
        let marks = Marks {
            catch_up_past: 400,
            catch_up_to: 100,
        };
        let mut w = TreeWorker::start_with(keeper, behind.clone(), marks, false).unwrap();
        // The tree held meanwhile: the catch-up thread finds the whole lag.
        let inner = w.inner.clone();
        let held = inner.lock();
        let want = hand_over(&mut w, dir.path(), 1000);
        drop(held);
        let t = Instant::now();
        while behind.load(Ordering::Relaxed) > 100 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let left = behind.load(Ordering::Relaxed);
        assert!((96..=100).contains(&left), "{left} events behind");
        // One more pass of the thread's loop finds nothing to do.
        std::thread::sleep(IDLE_WAKE * 2);
        assert_eq!(behind.load(Ordering::Relaxed), left, "it stops at the mark");
        assert_eq!(w.inner.helped.load(Ordering::Relaxed), want.size() - left);
        assert_eq!(w.call(|k| (k.size(), k.root())), (want.size(), want.root()));
        assert_eq!(behind.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn producers_hash_the_leaves_when_signing_or_past_the_mark() {
        assert!(!producers_hash_leaves(false, 0));
        assert!(!producers_hash_leaves(false, PRODUCERS_HASH_PAST));
        assert!(producers_hash_leaves(false, PRODUCERS_HASH_PAST + 1));
        assert!(producers_hash_leaves(true, 0));
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
