//! The writer's hand-over of fdatasync jobs to the syncer thread, and the
//! syncer's count of finished jobs back: a list under a mutex and a
//! counter, each side woken with `unpark`.
//!
//! Why not a channel: a blocking `recv` of crossbeam-channel spins, then
//! calls `sched_yield` four times (and four more inside its wait) before
//! it parks. Paced at 680,000 appends/s on 2 busy cores the writer made
//! ~9,800 `sched_yield` calls a second waiting for the syncer's "done"
//! (docs/benchmarks.md, "Append-to-durable p99, pace40 round"). Here the
//! owner (the writer) parks at once when nothing finished (one futex
//! wait), and waking either side costs the other one atomic swap, plus a
//! futex wake only when it is asleep (what std's `Thread::unpark` does).
//!
//! The worker (the syncer) still looks for a job a few times, yielding,
//! before it parks: parking at once made its hand-over wait for the
//! scheduler to wake it, and with the writer and the syncer sharing a
//! core (`AUDITLOG_INGEST_CPUS`) that wait was the p99 (the same round).
//!
//! One owner thread sends jobs and waits for them to finish; one worker
//! thread takes them. A spurious or stale wake-up (the owner's thread is
//! also parked by other waits) only makes a waiter look again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Times the worker looks for a job again, yielding its core in between,
/// before it parks.
const WORKER_SPINS: u32 = 4;

/// Jobs from one owner thread to one worker thread (module docs).
#[derive(Debug)]
pub struct Handoff<T> {
    jobs: Mutex<Jobs<T>>,
    /// Jobs the worker finished that the owner has not counted yet.
    done: AtomicUsize,
    /// The worker has ended: nothing sent from now on is taken.
    gone: AtomicBool,
    owner: Thread,
    worker: OnceLock<Thread>,
}

#[derive(Debug)]
struct Jobs<T> {
    queue: Vec<T>,
    /// The owner sends nothing more: the worker ends once it took all.
    closed: bool,
}

impl<T> Handoff<T> {
    /// A hand-off whose owner (the only thread that sends and waits for
    /// finished jobs) is the calling thread.
    pub fn new() -> Handoff<T> {
        Handoff {
            jobs: Mutex::new(Jobs {
                queue: Vec::new(),
                closed: false,
            }),
            done: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
            owner: std::thread::current(),
            worker: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs<T>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- the owner's side ----

    /// Name the worker thread (to wake it), before the first `send`.
    pub fn set_worker(&self, worker: Thread) {
        let _ = self.worker.set(worker);
    }

    /// Queue a job for the worker; the job back if the worker has ended
    /// (or the hand-off is closed).
    pub fn send(&self, job: T) -> Result<(), T> {
        {
            let mut jobs = self.lock();
            if jobs.closed || self.gone.load(Ordering::Acquire) {
                return Err(job);
            }
            jobs.queue.push(job);
        }
        if let Some(w) = self.worker.get() {
            w.unpark();
        }
        Ok(())
    }

    /// Send nothing more: the worker takes what is queued, then ends.
    pub fn close(&self) {
        self.lock().closed = true;
        if let Some(w) = self.worker.get() {
            w.unpark();
        }
    }

    /// Wait until the worker finished a job (or ended) or `timeout`
    /// passed; the jobs finished since the last look (0: none, the
    /// worker ended or the time passed).
    pub fn wait_done(&self, timeout: Option<Duration>) -> usize {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let n = self.done.swap(0, Ordering::AcqRel);
            if n > 0 {
                return n;
            }
            if self.is_gone() {
                // Whatever it finished before it ended.
                return self.done.swap(0, Ordering::AcqRel);
            }
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return 0;
                    }
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }

    /// True once the worker has ended.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    // ---- the worker's side ----

    /// Wait for jobs and move every queued one into `into` (in the order
    /// sent); false once the hand-off is closed and nothing is left.
    pub fn take_jobs(&self, into: &mut Vec<T>) -> bool {
        let mut step = 0u32;
        loop {
            {
                let mut jobs = self.lock();
                if !jobs.queue.is_empty() {
                    into.append(&mut jobs.queue);
                    return true;
                }
                if jobs.closed {
                    return false;
                }
            }
            step += 1;
            if step <= WORKER_SPINS {
                // Look again a few times before sleeping, yielding the
                // core meanwhile (module docs: a sleeping worker's wake-up
                // was the p99 when it shares a core with the owner).
                std::thread::yield_now();
                continue;
            }
            // A `send` between the unlock and here left its wake-up token:
            // this park returns at once.
            std::thread::park();
        }
    }

    /// The worker finished `n` jobs: count them and wake the owner.
    pub fn finished(&self, n: usize) {
        self.done.fetch_add(n, Ordering::AcqRel);
        self.owner.unpark();
    }

    /// The worker has ended (called on its way out, by [`WorkerGone`]).
    fn worker_ended(&self) {
        self.gone.store(true, Ordering::Release);
        self.owner.unpark();
    }
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff::new()
    }
}

/// Held by the worker thread: when it ends (returning or unwinding) the
/// owner learns it, instead of waiting for jobs nobody will finish.
pub struct WorkerGone<'a, T>(pub &'a Handoff<T>);

impl<T> Drop for WorkerGone<'_, T> {
    fn drop(&mut self) {
        self.0.worker_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn start(h: &Arc<Handoff<u32>>, seen: Arc<Mutex<Vec<u32>>>) -> std::thread::JoinHandle<()> {
        let hw = h.clone();
        let t = std::thread::spawn(move || {
            let _gone = WorkerGone(&*hw);
            let mut batch = Vec::new();
            while hw.take_jobs(&mut batch) {
                let n = batch.len();
                seen.lock().unwrap().append(&mut batch);
                hw.finished(n);
            }
        });
        h.set_worker(t.thread().clone());
        t
    }

    #[test]
    fn every_job_is_taken_in_order_and_counted_done() {
        let h = Arc::new(Handoff::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let t = start(&h, seen.clone());
        let mut in_flight = 0usize;
        for i in 0..10_000u32 {
            h.send(i).unwrap();
            in_flight += 1;
            while in_flight >= 2 {
                in_flight -= h.wait_done(None);
            }
        }
        while in_flight > 0 {
            in_flight -= h.wait_done(None);
        }
        h.close();
        t.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), (0..10_000).collect::<Vec<_>>());
        assert!(h.is_gone());
    }

    #[test]
    fn a_closed_handoff_gives_jobs_back_and_its_worker_ends() {
        let h = Arc::new(Handoff::new());
        let t = start(&h, Arc::new(Mutex::new(Vec::new())));
        h.close();
        t.join().unwrap();
        assert_eq!(h.send(7), Err(7));
        // The owner is not left waiting for a worker that ended.
        assert_eq!(h.wait_done(None), 0);
        assert_eq!(h.wait_done(Some(Duration::from_millis(1))), 0);
    }

    #[test]
    fn a_worker_that_dies_is_noticed_by_a_waiting_owner() {
        let h = Arc::new(Handoff::<u32>::new());
        let hw = h.clone();
        let t = std::thread::spawn(move || {
            let _gone = WorkerGone(&*hw);
            let mut batch = Vec::new();
            if hw.take_jobs(&mut batch) {
                panic!("the worker dies on its first job (on purpose)");
            }
        });
        h.set_worker(t.thread().clone());
        h.send(1).unwrap();
        // Returns (0 finished) once the worker is gone; never hangs.
        assert_eq!(h.wait_done(None), 0);
        assert!(t.join().is_err());
        assert_eq!(h.send(2), Err(2));
    }

    #[test]
    fn a_timed_wait_returns_when_nothing_finishes() {
        let h = Handoff::<u32>::new();
        let t0 = Instant::now();
        assert_eq!(h.wait_done(Some(Duration::from_millis(5))), 0);
        assert!(t0.elapsed() >= Duration::from_millis(5));
    }
}
