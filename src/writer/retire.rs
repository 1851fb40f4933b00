//! Retention passes that never stall the writer on the tree or on file
//! removal (docs/benchmarks.md, pace41 round). A pass used to run whole
//! on the writer thread while appends waited: the tree's lag applied
//! there first (SHA-256 of up to 2^20 events: 20-52% of the writer's
//! samples in a sustained run with a pass every second), then the record,
//! the MANIFEST, and the unlinks of the dropped segments (the kernel
//! freeing their page cache). Now a pass goes in three steps:
//!
//! 1. **Begin** (writer, at `Msg::Retain`): decide what to drop, append
//!    what a carry asks for (as before), plan the record, and *ask* the
//!    tree's threads for its tree fields (`TreeWorker::ask`: computed on
//!    the tree as it stands after every block written before, exactly
//!    what the writer's own catch-up gave; without the tree, on the retire
//!    thread). Nothing is stored; appends go on.
//! 2. **Record** (writer, at the end of a later cycle, once the answer is
//!    in): the MANIFEST's `pending`, the record appended and synced, the
//!    MANIFEST's new anchor, the segments forgotten: the same steps in the
//!    same order as before, with no event in between (a crash between
//!    them is finished or forgotten by the next open, docs/integrity.md).
//! 3. **Remove** (the retire thread, at background priority): the dropped
//!    files, the folder synced, the retain hooks, then the caller's
//!    answer. The MANIFEST no longer names these files: a crash before or
//!    during this leaves leftovers the next open removes.
//!
//! So nothing is deleted before the tree covers it and the record
//! naming it is durable. Passes run one at a time, in the order asked.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::error::{Error, Result};
use crate::event::system::{Retention, SystemRecord};
use crate::event::Micros;
use crate::layout::SegmentMeta;
use crate::retention::{self, Carry, CarryFn, RetainOptions, RetentionReport};
use crate::shared::Shared;
use crate::tree::keeper::{retention_tree, RetentionTree};

use super::Writer;

/// How long a pass's tree fields may be out before the tree's catch-up
/// thread is asked to hurry to them (the nice-10 tree thread may lag
/// behind a saturated machine for a long time: this bounds how long
/// expired segments stay).
const HURRY_AFTER: Duration = Duration::from_secs(1);

/// The retire thread's nice value (background work, like the indexers).
const RETIRE_NICE: i32 = 10;

thread_local! {
    /// Set on the retire thread: its removals pause between segments.
    static ON_RETIRE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A retention pass asked for (`Msg::Retain`).
pub(crate) struct RetainAsk {
    pub cutoff: Micros,
    pub opts: RetainOptions,
    pub reply: Sender<Result<RetentionReport>>,
    pub carry: Option<CarryFn>,
}

/// A pass begun: its record planned, its tree fields asked for.
pub(super) struct InFlight {
    rec: Retention,
    held_for_export: Vec<String>,
    carried: Option<Carry>,
    reply: Sender<Result<RetentionReport>>,
    kept: Receiver<Result<RetentionTree>>,
    since: Instant,
    hurried: bool,
}

/// The passes of one writer: the one in flight and those waiting.
#[derive(Default)]
pub(super) struct Passes {
    flying: Option<InFlight>,
    waiting: VecDeque<RetainAsk>,
    retirer: Option<Retirer>,
}

impl Passes {
    /// Whether a pass waits for its tree fields (the idle writer then
    /// looks for them now and then).
    pub(super) fn busy(&self) -> bool {
        self.flying.is_some()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The retire thread: runs jobs in order (file removal, a tree-less
/// log's tree fields); ends, after the jobs queued, when dropped.
pub(super) struct Retirer {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Retirer {
    fn start() -> std::io::Result<Retirer> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let handle = std::thread::Builder::new()
            .name("auditlog-retire".into())
            .spawn(move || {
                crate::priority::background_thread(RETIRE_NICE);
                ON_RETIRE_THREAD.with(|on| on.set(true));
                for job in rx {
                    job();
                }
            })?;
        Ok(Retirer {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queue `job`; it back if the thread is gone.
    fn run(&self, job: Job) -> std::result::Result<(), Job> {
        match self.tx.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.into_inner()),
            None => Err(job),
        }
    }
}

impl Drop for Retirer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Writer {
    /// Start the retire thread (without it, its jobs run on the writer).
    pub(super) fn start_retirer(&mut self) {
        match Retirer::start() {
            Ok(r) => self.passes.retirer = Some(r),
            Err(e) => tracing::warn!(error = %e, "no retire thread; retention runs on the writer"),
        }
    }

    /// Run `job` on the retire thread, or here if there is none.
    fn on_retirer(&self, job: Job) {
        let job = match self.passes.retirer.as_ref() {
            Some(r) => match r.run(job) {
                Ok(()) => return,
                Err(job) => job,
            },
            None => job,
        };
        job();
    }

    /// Stop the retire thread once its jobs are done (close).
    pub(super) fn stop_retirer(&mut self) {
        self.passes.retirer = None;
    }

    /// `Msg::Retain`: queue the pass, and begin it unless one is out.
    pub(super) fn ask_retention(&mut self, ask: RetainAsk) {
        self.passes.waiting.push_back(ask);
        self.begin_next_retention();
    }

    /// Begin the next pass asked for, unless one is out. A pass that has
    /// nothing to drop, or fails at once, is answered here.
    fn begin_next_retention(&mut self) {
        while self.passes.flying.is_none() {
            let Some(ask) = self.passes.waiting.pop_front() else {
                return;
            };
            self.passes.flying = self.begin_retention(ask);
        }
    }

    /// Step 1 (module doc): what is dropped and carried decided, the
    /// record planned, its tree fields asked for. `None` once answered.
    fn begin_retention(&mut self, ask: RetainAsk) -> Option<InFlight> {
        let RetainAsk {
            cutoff,
            opts,
            reply,
            carry,
        } = ask;
        if let Some(why) = &self.failed {
            let _ = reply.send(Err(Error::WriterFailed(why.clone())));
            return None;
        }
        let before = self.shared.segments();
        let planned =
            retention::droppable(&self.shared.dir, &before, cutoff, opts).and_then(|(n, held)| {
                self.carry_and_plan(&before, cutoff, n, carry)
                    .map(|p| (p, held))
            });
        let (planned, held_for_export) = match planned {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return None;
            }
        };
        let (rec, carried, segments) = match planned {
            Planned::Nothing(report) => {
                let _ = reply.send(Ok(RetentionReport {
                    held_for_export,
                    ..report
                }));
                return None;
            }
            Planned::Cut {
                rec,
                carried,
                segments,
            } => (rec, carried, segments),
        };
        let kept = self.ask_tree_fields(&rec, segments);
        Some(InFlight {
            rec,
            held_for_export,
            carried,
            reply,
            kept,
            since: Instant::now(),
            hurried: false,
        })
    }

    /// Carry forward what `carry` asks for out of the oldest `n` of
    /// `before` (appended and synced, as before this module: no append
    /// comes in between), then plan the record.
    fn carry_and_plan(
        &mut self,
        before: &[SegmentMeta],
        cutoff: Micros,
        n: usize,
        carry: Option<CarryFn>,
    ) -> Result<Planned> {
        let mut carried = None;
        if let (Some(ask), true) = (carry, n > 0) {
            self.sync_barrier();
            self.end_batch(true);
            let c = ask(&before[..n])?;
            if !c.frames.is_empty() {
                // `carry` is the caller's: its frames are not checked on
                // the way in, so index builds stop trusting appends up to
                // their end, before any of them can be read.
                let end = self.next_lsn.saturating_add(c.frames.len() as u64);
                self.shared.appends_unchecked_until(end);
                if let Err(e) = self.append_frames(&c.frames) {
                    let failure = self.on_error(&e.to_string());
                    return Err(failure.to_error());
                }
                if let Some(f) = self.end_batch(true) {
                    return Err(f.to_error());
                }
                if let Some(why) = &self.failed {
                    return Err(Error::WriterFailed(why.clone()));
                }
            }
            carried = Some(c);
        }
        let segments = self.shared.segments();
        let Some(rec) = retention::plan(&segments, &self.manifest, cutoff, n) else {
            return Ok(Planned::Nothing(RetentionReport {
                cutoff,
                dropped: Vec::new(),
                first_kept_lsn: segments
                    .first()
                    .map_or(self.manifest.anchor.first_lsn, |s| s.first_lsn),
                ..RetentionReport::default()
            }));
        };
        Ok(Planned::Cut {
            rec,
            carried,
            segments,
        })
    }

    /// Ask for the record's tree fields: the tree before the first kept
    /// event, checked against the whole tree (`retention_tree`). With the
    /// tree on, its threads work them out once they have applied every
    /// block written before (the writer goes on meanwhile); without it,
    /// the retire thread.
    fn ask_tree_fields(
        &self,
        rec: &Retention,
        segments: Vec<SegmentMeta>,
    ) -> Receiver<Result<RetentionTree>> {
        let base = self.tree_base.clone();
        let base_cut = self.base_cut_tiles(&segments);
        let (last_gone, first_kept) = (rec.dropped.len() - 1, rec.anchor_first_lsn);
        let anchor = rec.anchor_digest.clone();
        let work = move |k: Option<&mut crate::tree::keeper::TreeKeeper>| {
            let k = k.map(|k| &*k);
            retention_tree(k, &segments, base, base_cut, last_gone, first_kept, &anchor)
        };
        match self.tree.as_ref() {
            Some(t) => t.ask(move |k| work(Some(k))),
            None => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.on_retirer(Box::new(move || {
                    let _ = tx.send(work(None));
                }));
                rx
            }
        }
    }

    /// Finish the pass out if its tree fields are in (`wait`: wait for
    /// them, applying the tree's lag here: close), then begin the next.
    /// Called at the end of every cycle and by the idle writer.
    pub(super) fn poll_retention(&mut self, wait: bool) {
        loop {
            let Some(f) = self.passes.flying.as_mut() else {
                return;
            };
            let got = match f.kept.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) if !wait => {
                    if !f.hurried && f.since.elapsed() >= HURRY_AFTER {
                        f.hurried = true;
                        if let Some(t) = self.tree.as_ref() {
                            t.hurry_asked();
                        }
                    }
                    return;
                }
                Err(TryRecvError::Empty) => {
                    if let Some(t) = self.tree.as_ref() {
                        t.caught_up();
                    }
                    f.kept.recv().unwrap_or_else(|_| Err(lost()))
                }
                Err(TryRecvError::Disconnected) => Err(lost()),
            };
            if let Some(f) = self.passes.flying.take() {
                self.finish_retention(f, got);
            }
            self.begin_next_retention();
        }
    }

    /// Steps 2 and 3 (module doc).
    fn finish_retention(&mut self, f: InFlight, kept: Result<RetentionTree>) {
        if let Some(t) = self.tree.as_ref() {
            t.asked_answered();
        }
        let InFlight {
            mut rec,
            held_for_export,
            carried,
            reply,
            ..
        } = f;
        let (mut report, gone) = match self.record_retention(&mut rec, kept) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        report.held_for_export = held_for_export;
        if let Some(c) = carried {
            report.carried_runs = c.runs;
            report.carried_events = c.frames.len() as u64;
            report.dropped_runs = Some(c.dropped_runs);
        }
        let shared = self.shared.clone();
        self.on_retirer(Box::new(move || {
            let _ = reply.send(remove_dropped(&shared, report, &gone));
        }));
    }

    /// Step 2: the record, between the MANIFEST's `pending` and its new
    /// anchor, all on the writer between two cycles. The report and the
    /// segments to remove.
    fn record_retention(
        &mut self,
        rec: &mut Retention,
        kept: Result<RetentionTree>,
    ) -> Result<(RetentionReport, Vec<SegmentMeta>)> {
        if let Some(why) = &self.failed {
            return Err(Error::WriterFailed(why.clone()));
        }
        // A checkpoint the tree's threads signed before the cut is in the
        // log before it (docs/proofs.md, "Deferred signing"): asked before
        // the tree fields, it was signed before them. One asked later
        // covers more than the cut and may follow the record.
        if let Err(e) = self.append_signed(false) {
            let _ = self.on_error(&e.to_string());
        }
        if let Some(why) = &self.failed {
            return Err(Error::WriterFailed(why.clone()));
        }
        let kept = kept?;
        rec.tree_size = kept.size;
        rec.tree_frontier = kept.frontier;
        rec.tree_note = kept.note;
        if !self.cfg().retention_as_format_4 {
            rec.tree_tiles = kept.tiles;
        }
        let record = SystemRecord::Retention(rec.clone());
        self.manifest.pending = Some(record.clone());
        self.manifest.store(&self.shared.dir)?;
        let at = self.append_system(record)?;
        let done = self.anchor_retention(rec, at)?;
        if let Ok(f) = rec.frontier() {
            self.tree_base = f;
        }
        Ok(done)
    }
}

/// What a pass plans.
enum Planned {
    /// Nothing to drop: the answer.
    Nothing(RetentionReport),
    Cut {
        rec: Retention,
        carried: Option<Carry>,
        /// The segments as planned (the dropped ones first).
        segments: Vec<SegmentMeta>,
    },
}

/// Step 3, on the retire thread (or at open, on the writer): the files,
/// then the hooks of derived data that follow a pass (only once every
/// file is gone). On the retire thread, with a pause after each segment's
/// files (`retention::remove_paced`); never on the writer.
pub(super) fn remove_dropped(
    shared: &Arc<Shared>,
    report: RetentionReport,
    gone: &[SegmentMeta],
) -> Result<RetentionReport> {
    let paced = ON_RETIRE_THREAD.with(|on| on.get());
    retention::remove_paced(&shared.dir, &shared.config.io, gone, paced)?;
    if !report.dropped.is_empty() {
        for hook in &shared.config.retain_hooks {
            hook(&report);
        }
    }
    Ok(report)
}

/// The tree's answer never came (its threads are gone).
fn lost() -> Error {
    Error::WriterFailed("the Merkle tree's threads ended before a retention pass's tree fields were worked out; nothing was dropped".into())
}
