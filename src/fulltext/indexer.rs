//! The indexer: follows the log, folds events into run documents in
//! memory, and commits them to tantivy in batches, recording in every
//! commit's payload the LSN it has indexed up to. It runs on its own
//! thread (or in the foreground for the command line); it only reads the
//! log, so nothing it does can slow, block or harm the writer.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::collector::TopDocs;
use tantivy::query::{Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument, Term};

use super::schema::{id_term, Fields, RunDoc};
use super::{now_micros, CommitPayload, FullTextError, FullTextOptions, Shared};
use crate::event::Event;
use crate::reader::{LogReader, ReplayRange};
use crate::replay::Replay;

/// The writing side of the index. Owned by one thread at a time.
pub(crate) struct Core {
    /// The tantivy folder (its files are made owner-only after commits).
    dir: std::path::PathBuf,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    /// Made on first use, on the thread that indexes.
    writer: Option<IndexWriter>,
    pub(crate) f: Fields,
    pub(crate) opts: FullTextOptions,
    pub(crate) log_id: String,
    /// Everything before this LSN is committed in the index.
    pub(crate) next_lsn: u64,
    /// Documents of runs started before this LSN have been deleted.
    pub(crate) first_lsn: u64,
    /// Retention moved `first_lsn`; the deletion is not committed yet.
    retention_dirty: bool,
    pending: HashMap<String, RunDoc>,
    /// Everything before this LSN is folded into `pending` (or committed).
    pending_next: u64,
    pending_events: u64,
    pending_bytes: usize,
    pending_since: Option<Instant>,
    /// The replay the last round stopped in (a full batch, or the head it
    /// was given), continued by the next round when it starts where this
    /// one stopped. A new replay per round threw away what its
    /// check-ahead thread had checked beyond the batch, and checked it
    /// again next round (docs/benchmarks.md, "Search lag, srch33 round").
    follow: Option<Follow>,
    /// Replays opened so far (a test checks rounds continue one).
    replays_opened: u64,
    shared: Arc<Shared>,
}

/// An open replay and the event it yielded but the round did not take.
struct Follow {
    replay: Replay,
    /// The replay's next event is this LSN's (or `held`'s, if any).
    next_lsn: u64,
    held: Option<(u64, Event)>,
}

/// What one [`Core::step`] did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Step {
    pub folded: u64,
    pub committed: bool,
}

impl Core {
    pub(crate) fn new(
        dir: std::path::PathBuf,
        index: Index,
        reader: IndexReader,
        f: Fields,
        opts: FullTextOptions,
        payload: CommitPayload,
        shared: Arc<Shared>,
    ) -> Core {
        Core {
            dir,
            index,
            reader,
            writer: None,
            f,
            opts,
            log_id: payload.log_id,
            next_lsn: payload.next_lsn,
            first_lsn: payload.first_lsn,
            retention_dirty: false,
            pending: HashMap::new(),
            pending_next: payload.next_lsn,
            pending_events: 0,
            pending_bytes: 0,
            pending_since: None,
            follow: None,
            replays_opened: 0,
            shared,
        }
    }

    fn writer(&mut self) -> Result<&mut IndexWriter, FullTextError> {
        if self.writer.is_none() {
            let threads = self.opts.indexing_threads.max(1);
            let budget = self.opts.memory_budget_bytes.max(threads * 16_000_000);
            let w = self
                .index
                .writer_with_num_threads(threads, budget)
                .map_err(FullTextError::index("opening the writer"))?;
            let mut policy = tantivy::indexer::LogMergePolicy::default();
            policy.set_min_num_segments(self.opts.merge_min_segments.max(2));
            w.set_merge_policy(Box::new(policy));
            self.writer = Some(w);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| FullTextError::Corrupt("no index writer".into()))
    }

    pub(crate) fn batch_full(&self) -> bool {
        self.pending_events >= self.opts.max_batch_events as u64
            || self.pending_bytes >= self.opts.max_batch_bytes
            || self.pending.len() >= self.opts.max_batch_runs
    }

    /// Forget what is folded but not committed (after a read error).
    pub(crate) fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_next = self.next_lsn;
        self.pending_events = 0;
        self.pending_bytes = 0;
        self.pending_since = None;
        self.follow = None;
    }

    /// Note the log's oldest LSN; retention may have moved it.
    fn observe_first_lsn(&mut self, log_first: u64) {
        if log_first > self.first_lsn {
            self.first_lsn = log_first;
            self.retention_dirty = true;
            if self.pending_next < log_first {
                // Events we had not reached are gone: skip to what is kept.
                self.pending_next = log_first;
            }
        }
    }

    /// Fold events from the log until the batch is full or the head is
    /// reached.
    fn fold(&mut self, log: &LogReader, head: u64) -> Result<u64, FullTextError> {
        if self.pending_next >= head || self.batch_full() {
            return Ok(0);
        }
        let ids = IdLookup::new(self.reader.searcher(), &self.f)?;
        // Go on with the last round's replay if it stopped right here;
        // else (first round, retention skipped ahead, a read error) open one.
        let mut follow = match self.follow.take() {
            Some(f) if f.next_lsn == self.pending_next => f,
            _ => Follow {
                replay: {
                    self.replays_opened += 1;
                    log.replay(ReplayRange {
                        from_lsn: Some(self.pending_next),
                        ..ReplayRange::default()
                    })
                },
                next_lsn: self.pending_next,
                held: None,
            },
        };
        let mut n = 0;
        let mut exhausted = false;
        loop {
            let (lsn, ev) = match follow.held.take() {
                Some(item) => item,
                None => match follow.replay.next() {
                    Some(item) => item.map_err(FullTextError::Log)?,
                    None => {
                        exhausted = true;
                        break;
                    }
                },
            };
            if lsn >= head {
                // Beyond this round's head: the next round starts with it.
                follow.held = Some((lsn, ev));
                break;
            }
            follow.next_lsn = lsn + 1;
            if ev.is_system() || ev.run_id.is_empty() {
                // The log's own record (a cut, a retention), or a tool call
                // outside any run: no run document holds it.
                self.pending_next = lsn + 1;
                continue;
            }
            if !self.pending.contains_key(&ev.run_id) {
                let doc = match ids.lookup(&self.f, &ev.run_id)? {
                    Some(d) => d,
                    None => RunDoc::empty(&ev.run_id, lsn, ev.ts),
                };
                self.pending.insert(ev.run_id.clone(), doc);
            }
            if let Some(doc) = self.pending.get_mut(&ev.run_id) {
                self.pending_bytes += doc.apply(lsn, &ev) + 64;
            }
            self.pending_next = lsn + 1;
            self.pending_events += 1;
            n += 1;
            if self.pending_since.is_none() {
                self.pending_since = Some(Instant::now());
            }
            if self.batch_full() {
                break;
            }
        }
        // A replay reads the log as it was when it opened: once it has
        // given everything, the next round opens a new one.
        if !exhausted {
            self.follow = Some(follow);
        }
        Ok(n)
    }

    fn commit_due(&self, force: bool) -> bool {
        let has_work = self.pending_next > self.next_lsn || self.retention_dirty;
        if !has_work {
            return false;
        }
        force
            || self.batch_full()
            || self.retention_dirty
            || self
                .pending_since
                .is_none_or(|t| t.elapsed() >= self.opts.commit_interval)
    }

    /// Write the folded documents and the retention deletion, and commit
    /// them with the LSN reached as payload.
    pub(crate) fn commit(&mut self) -> Result<(), FullTextError> {
        let r = self.commit_inner();
        if r.is_err() {
            // Drop the writer with whatever it was given: uncommitted adds
            // must not reach a later commit (the events are read again).
            self.writer = None;
            self.discard_pending();
        }
        r
    }

    fn commit_inner(&mut self) -> Result<(), FullTextError> {
        let f = self.f;
        let first_lsn = self.first_lsn;
        let retention_dirty = self.retention_dirty;
        let next_lsn = self.pending_next;
        let lag_seconds = self.shared.lag_seconds_at(next_lsn);
        let log_id = self.log_id.clone();
        let pending = std::mem::take(&mut self.pending);
        let writer = self.writer()?;
        let (mut written, mut replaced) = (0u64, 0u64);
        for (id, d) in pending {
            if d.existed {
                writer.delete_term(id_term(&f, &id));
                replaced += 1;
            }
            if d.start_lsn >= first_lsn {
                writer
                    .add_document(d.to_document(&f))
                    .map_err(FullTextError::index("adding a document"))?;
                written += 1;
            }
        }
        if first_lsn > 0 {
            // Runs started in dropped segments (applied after the adds, so
            // it also removes any of those re-added above).
            let q = RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_u64(f.start_lsn, first_lsn)),
            );
            if retention_dirty {
                writer
                    .delete_query(Box::new(q))
                    .map_err(FullTextError::index("deleting retained runs"))?;
            }
        }

        let payload = CommitPayload {
            log_id,
            next_lsn,
            first_lsn,
            committed_at_us: now_micros(),
            lag_seconds,
        };
        let mut prepared = writer
            .prepare_commit()
            .map_err(FullTextError::index("preparing a commit"))?;
        prepared.set_payload(&payload.to_json());
        prepared
            .commit()
            .map_err(FullTextError::index("committing"))?;
        // tantivy creates its files with the process umask; the log's
        // files are owner-only, so these are made so too.
        if let Err(e) = crate::fsutil::restrict_files(&self.dir) {
            tracing::warn!(error = %e, "making full-text files owner-only failed");
        }
        self.reader
            .reload()
            .map_err(FullTextError::index("reloading the index reader"))?;
        self.next_lsn = self.pending_next;
        self.retention_dirty = false;
        self.pending_events = 0;
        self.pending_bytes = 0;
        self.pending_since = None;
        self.shared
            .committed(self.next_lsn, self.first_lsn, (written, replaced));
        Ok(())
    }

    /// One round: follow retention, fold what the log has, commit when due
    /// (`force`: commit whatever is folded now).
    pub(crate) fn step(&mut self, log: &LogReader, force: bool) -> Result<Step, FullTextError> {
        self.observe_first_lsn(log.first_lsn());
        let head = log.head().next_lsn;
        self.shared.observe_head(head);
        let folded = match self.fold(log, head) {
            Ok(n) => n,
            Err(e) => {
                self.discard_pending();
                return Err(e);
            }
        };
        let caught_up = self.pending_next >= head;
        let mut committed = false;
        if self.commit_due(force || (caught_up && self.shared.flush_wanted())) {
            self.commit()?;
            committed = true;
        }
        Ok(Step { folded, committed })
    }

    /// Index everything up to the log's head as of the call (at least) and
    /// commit (foreground catch-up). `tick` is told the LSN reached after every round.
    pub(crate) fn catch_up(
        &mut self,
        log: &LogReader,
        mut tick: impl FnMut(u64),
    ) -> Result<(), FullTextError> {
        // The head as of now: under ingest faster than indexing a moving
        // target would never be reached.
        let head = log.head().next_lsn;
        loop {
            let s = self.step(log, false)?;
            tick(self.pending_next);
            if self.pending_next >= head || s.folded == 0 {
                break;
            }
        }
        if self.pending_next > self.next_lsn || self.retention_dirty {
            self.commit()?;
        }
        Ok(())
    }

    pub(crate) fn pending_lsn(&self) -> u64 {
        self.pending_next
    }
}

/// Finds a run's committed document. Made once per round: it holds each
/// segment's `id` term dictionary, so that a run's look-up is one term
/// look-up per segment (through `Searcher::doc_freq` it also fetched each
/// segment's inverted index from a locked cache: a sixth of the indexer
/// thread's time; docs/benchmarks.md, "Search lag, srch36 round").
struct IdLookup {
    searcher: tantivy::Searcher,
    segments: Vec<Arc<tantivy::InvertedIndexReader>>,
}

impl IdLookup {
    fn new(searcher: tantivy::Searcher, f: &Fields) -> Result<IdLookup, FullTextError> {
        let segments = searcher
            .segment_readers()
            .iter()
            .map(|s| s.inverted_index(f.id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(FullTextError::index("looking up a run"))?;
        Ok(IdLookup { searcher, segments })
    }

    /// The committed document of `run_id`, if any.
    fn lookup(&self, f: &Fields, run_id: &str) -> Result<Option<RunDoc>, FullTextError> {
        let term = id_term(f, run_id);
        // A term's document frequency counts deleted documents too: a
        // cheap first test, most runs are new.
        let mut found = false;
        for seg in &self.segments {
            let n = seg.doc_freq(&term).map_err(|e| FullTextError::Index {
                context: "looking up a run".to_string(),
                message: e.to_string(),
            })?;
            if n > 0 {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(None);
        }
        let q = TermQuery::new(term, IndexRecordOption::Basic);
        let top = self
            .searcher
            .search(&q as &dyn Query, &TopDocs::with_limit(1).order_by_score())
            .map_err(FullTextError::index("looking up a run"))?;
        let Some((_, addr)) = top.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = self
            .searcher
            .doc(*addr)
            .map_err(FullTextError::index("reading a stored run"))?;
        RunDoc::from_document(&doc, f).map(Some)
    }
}

/// Lower the calling thread's CPU priority to the lowest (nice 19), so
/// that on a busy machine ingest wins every contention and the indexer
/// takes what is left. Linux applies nice per thread, and threads inherit
/// it from the thread that creates them.
fn lower_priority() {
    // Nice 19, not SCHED_IDLE: with SCHED_IDLE the cli test
    // `restart_mid_indexing_neither_loses_nor_duplicates` failed in 2 of
    // 3 full-suite runs under load (reopen found the index still locked).
    // A likely cause was found later and fixed (the lock was closed, not
    // unlocked, so a child forked by another test kept it: see
    // `lock::HeldLock`); SCHED_IDLE was not tried again since.
    crate::priority::set_thread_nice(19);
    crate::priority::background_cpus();
}

/// The background thread's loop.
pub(crate) fn run_thread(mut core: Core, mut log: LogReader, shared: Arc<Shared>) {
    if core.opts.background_priority {
        // Before the IndexWriter exists: its threads inherit it.
        lower_priority();
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        if shared.kill.load(Ordering::Acquire) {
            // A crash as far as the index is concerned: nothing pending is
            // committed; the next open resumes at the last commit.
            return;
        }
        if shared.stop.load(Ordering::Acquire) {
            // Commit what is folded (not necessarily up to the head).
            if let Err(e) = core.step(&log, true) {
                shared.set_error(e.to_string());
            }
            return;
        }
        let started = Instant::now();
        match core.step(&log, false) {
            Ok(s) => {
                backoff = Duration::from_millis(50);
                shared.clear_error();
                let flush = shared.flush_wanted();
                if s.folded == 0 && !s.committed {
                    // Nothing new: sleep until the head moves, a while at most.
                    let wait = if flush { 5 } else { 100 };
                    let _ = log.wait_beyond(core.pending_lsn(), Duration::from_millis(wait));
                } else if !core.batch_full() && !flush {
                    // Reached the head with a part batch: let events gather
                    // rather than re-reading the log for every few of them.
                    let pace = core.opts.poll_interval.saturating_sub(started.elapsed());
                    std::thread::sleep(pace);
                }
            }
            Err(e) => {
                shared.set_error(e.to_string());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FullText, FullTextOptions};
    use crate::event::{Event, RunFinished, RunStarted};
    use crate::{Config, Log};

    fn run_events(runs: usize) -> Vec<Event> {
        let mut ev = Vec::new();
        let mut ts = 1_763_884_800_000_000;
        for i in 0..runs {
            let id = format!("r-{i}");
            ev.push(Event::run_started(id.clone(), ts, RunStarted::default()));
            ts += 1;
            // Interleaved: run i finishes after run i+1 starts, so runs
            // cross batches (a committed run is replaced, not doubled).
            if i > 0 {
                let f = RunFinished {
                    status: "ok".into(),
                    output: format!("word{}x", i - 1),
                    ..Default::default()
                };
                ev.push(Event::run_finished(format!("r-{}", i - 1), ts, f));
                ts += 1;
            }
        }
        ev
    }

    #[test]
    fn rounds_cut_by_batches_and_heads_continue_one_replay_and_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(Config::new(dir.path())).expect("log");
        let runs = 60;
        for e in run_events(runs) {
            let _ = log.append(&e).expect("append");
        }
        log.flush().expect("flush");
        let reader = log.reader();
        let opts = FullTextOptions {
            max_batch_events: 7,
            memory_budget_bytes: 16 << 20,
            background_priority: false,
            ..FullTextOptions::default()
        };
        let ft = FullText::open_for(&reader, &opts).expect("open");
        let head = reader.head().next_lsn;
        {
            let mut guard = ft.inner.core.lock().expect("core");
            let core = guard.as_mut().expect("writable");
            // Heads every 5 events and batches of 7: rounds stop at both,
            // and an event read beyond a round's head is held for the next.
            let mut h = 0;
            while core.pending_next < head {
                h = (h + 5).min(head);
                core.fold(&reader, h).expect("fold");
                assert!(core.pending_next <= h, "never beyond the round's head");
                if core.batch_full() {
                    core.commit().expect("commit");
                }
            }
            core.commit().expect("commit");
            assert_eq!(core.next_lsn, head);
            assert_eq!(core.replays_opened, 1, "one replay for all the rounds");
        }
        {
            // Runs cross batches of 7 events: some documents were read
            // back and replaced, and the counters say how many.
            let s = ft.inner.shared.lock();
            assert!(s.docs_replaced > 0, "interleaved runs span commits");
            assert_eq!(
                s.docs_written - s.docs_replaced,
                runs as u64,
                "one new document per run, the rest replacements"
            );
        }
        assert_eq!(ft.num_docs(), runs as u64, "one document per run");
        for i in 0..runs - 1 {
            let hits = ft
                .search(&format!("word{i}x"), &Default::default(), 10)
                .expect("search");
            let ids: Vec<String> = hits.iter().map(|h| h.run.id.clone()).collect();
            assert_eq!(ids, vec![format!("r-{i}")]);
        }
    }
}
