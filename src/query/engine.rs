//! The query engine: the index images of every segment (mmapped files for
//! sealed segments, in-memory chunks for the active one), kept in step with
//! the log, and a [`View`] over them that the queries read.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::event::Micros;
use crate::index::{
    self, Backing, Image, ProgressFn, Unusable, AMEND_LOG, KIND_CHUNK, KIND_SEALED,
};
use crate::layout::{map_file, SegmentMeta};
use crate::reader::LogReader;
use crate::segment::HEADER_SIZE;

/// A finish that lives in another image than its run's start (read from
/// that image's FINS section).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinRef<'a> {
    pub seq: u64,
    pub lsn: u64,
    pub off: u64,
    pub ts: Micros,
    pub status: &'a [u8],
}

/// An amending start or finish (AMND) of some image.
#[derive(Debug, Clone)]
pub(crate) struct AmendRef {
    pub seq: u64,
    pub lsn: u64,
    pub off: u64,
    pub kind: u32,
}

/// What queries need across images, kept in memory: amending events, by
/// run id (rare by design: a gateway upserting a start or finishing
/// twice). Finishes whose start is in another image are not here: they
/// stay on disk, in each image's FINS section, searched per image (a map
/// of them grew with the log: 213 MiB at 31.6M events).
#[derive(Debug, Default)]
pub(crate) struct CrossRefs {
    pub amends: HashMap<Box<[u8]>, Vec<AmendRef>>,
    /// The LSNs of replacing logs, by run id: the tool calls of the logs
    /// they hide are left out of tool-call views (`calls.rs`).
    pub relogs: HashMap<Box<[u8]>, Vec<u64>>,
}

struct Sealed {
    meta: SegmentMeta,
    /// Shared with an indexer that builds newer images outside the lock.
    img: Arc<Image>,
    seg: memmap2::Mmap,
}

/// A sealed segment's image being built outside the engine's lock (see
/// [`Engine::index_sealed`]): `None` until done, then `Some(None)` if the
/// build failed (whoever needs it builds it again under the lock).
type Slot = Arc<(Mutex<Option<Option<Arc<Image>>>>, Condvar)>;

/// Completes its slot when dropped, so that no waiter waits forever even
/// if the build fails or panics.
struct SlotFill {
    slot: Slot,
    img: Option<Arc<Image>>,
}

impl Drop for SlotFill {
    fn drop(&mut self) {
        let (m, cv) = &*self.slot;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(self.img.take());
        }
        cv.notify_all();
    }
}

fn wait_slot(slot: &Slot) -> Option<Arc<Image>> {
    let (m, cv) = &**slot;
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(done) = g.as_ref() {
            return done.clone();
        }
        g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
    }
}

/// A sealed segment's bytes, mapped.
fn map_segment(meta: &SegmentMeta) -> Result<memmap2::Mmap> {
    map_file(&meta.path)?.ok_or_else(|| Error::Corrupt {
        segment: meta.name.clone(),
        offset: 0,
        reason: "segment file is empty".into(),
    })
}

/// How a sealed segment's image came to be.
#[derive(Clone, Copy)]
enum Made {
    Loaded,
    Built { written: bool },
}

/// A sealed segment's image made ready without the engine (so possibly on
/// a scan thread, see `scan_ahead`): its stored file, or its events
/// scanned for a build.
enum Prepared {
    Loaded(Image),
    Scanned(index::Scanned),
}

/// What [`Engine::refresh`] scans on its scan threads: a sealed segment
/// (with the slot of an indexer building it: its image is waited for
/// instead, and the segment scanned only if the indexer gives up), or the
/// active segment's new events.
enum ScanJob<'a> {
    Sealed(&'a SegmentMeta, Option<Slot>),
    Active(&'a SegmentMeta, index::Span),
}

/// A [`ScanJob`] done: `None` for an active scan that failed (its chunk
/// is then built, and its error reported, by `catch_up`).
enum JobScan {
    Sealed(Option<(memmap2::Mmap, Prepared)>),
    Active(Option<ScannedAhead>),
}

/// The active segment's new events, scanned alongside the sealed ones.
struct ScannedAhead {
    span: index::Span,
    scanned: index::Scanned,
}

/// Scan the active segment's `span` ahead of `catch_up`; `None` if that
/// fails (`catch_up` then builds the chunk itself and reports the error).
fn scan_active(meta: &SegmentMeta, span: index::Span, trust: Trust) -> Option<ScannedAhead> {
    let seg = map_file(&meta.path).ok()??;
    let scanned =
        index::scan_image_with(meta, &seg, KIND_CHUNK, span, None, trust.check(&span)).ok()?;
    Some(ScannedAhead { span, scanned })
}

/// The span of the active segment `meta` from `from` (LSN `first_lsn`,
/// chain digest `digest_at_from` there) to its committed end, checked
/// against its trusted head.
fn chunk_span(
    meta: &SegmentMeta,
    from: u64,
    first_lsn: u64,
    digest_at_from: crate::chain::Digest,
) -> index::Span {
    index::Span {
        from,
        first_lsn,
        digest_at_from,
        to: meta.data_len,
        trusted_end: meta.digest,
    }
}

/// The span of a whole sealed segment.
fn sealed_span(meta: &SegmentMeta) -> index::Span {
    index::Span {
        from: HEADER_SIZE as u64,
        first_lsn: meta.first_lsn,
        digest_at_from: meta.prev_digest,
        to: meta.data_len,
        trusted_end: meta.digest,
    }
}

/// From which LSN on the events of the log were appended by this process,
/// each checked against every rule before it was stored (see
/// [`Engine::trust_appends_from`]); `u64::MAX`: none.
#[derive(Debug, Clone, Copy)]
struct Trust(u64);

impl Trust {
    /// How a build of `span` reads its events: without the rules run
    /// again only if every event of the span is such an event.
    fn check(self, span: &index::Span) -> index::Check {
        if span.first_lsn >= self.0 {
            index::Check::CheckedOnAppend
        } else {
            index::Check::Strict
        }
    }
}

/// Open the stored index of a sealed segment (unless `force`), or else
/// scan the segment for a build.
fn prepare(
    meta: &SegmentMeta,
    seg: &[u8],
    force: bool,
    progress: Option<&ProgressFn>,
    trust: Trust,
) -> Result<Prepared> {
    if !force {
        match index::load_sealed(meta) {
            Ok(img) => return Ok(Prepared::Loaded(img)),
            Err(Unusable::Missing) => {}
            Err(reason) => {
                tracing::warn!(segment = %meta.name, %reason, "rebuilding index")
            }
        }
    }
    let span = sealed_span(meta);
    let check = trust.check(&span);
    let scanned = index::scan_image_with(meta, seg, KIND_SEALED, span, progress, check)?;
    Ok(Prepared::Scanned(scanned))
}

/// Map a sealed segment and [`prepare`] its image: the part of
/// [`make_sealed`] a scan thread does.
fn map_and_prepare(
    meta: &SegmentMeta,
    progress: Option<&ProgressFn>,
    trust: Trust,
) -> Result<(memmap2::Mmap, Prepared)> {
    let seg = map_segment(meta)?;
    let prepared = prepare(meta, &seg, false, progress, trust)?;
    Ok((seg, prepared))
}

/// Load the stored index of a sealed segment, or build it from the segment
/// (`older`: the images of every older sealed segment, for the lookups
/// that tell a run's first start from a duplicate) and store it.
fn make_sealed(
    meta: &SegmentMeta,
    prepared: Prepared,
    older: &[(u64, &Image)],
    persist: bool,
) -> Result<(Image, Made)> {
    let scanned = match prepared {
        Prepared::Loaded(img) => return Ok((img, Made::Loaded)),
        Prepared::Scanned(scanned) => scanned,
    };
    let shadow = shadow_in(older.iter().copied());
    // In its pieces: a stored image is read back from its file, so the
    // pieces are put into one buffer only if it stays in memory.
    let parts = scanned.finish_parts(&shadow);
    drop(shadow);
    let mut written = false;
    if persist {
        match index::store_parts(&index::index_path(meta), &parts) {
            Ok(()) => written = true,
            Err(e) => {
                tracing::warn!(segment = %meta.name, error = %e, "index kept in memory only")
            }
        }
    }
    // Once stored, the image is served from its file: the page cache holds
    // it, not the heap, so resident memory does not grow with the log.
    // Built here from blocks whose chain was just checked.
    if written {
        if let Ok(img) = index::load_sealed(meta) {
            img.mark_chain_checked();
            return Ok((img, Made::Built { written }));
        }
    }
    let img = Image::open(Backing::Vec(parts.into_bytes())).map_err(|r| Error::Corrupt {
        segment: meta.name.clone(),
        offset: 0,
        reason: format!("freshly built index does not read back: {r}"),
    })?;
    img.mark_chain_checked();
    Ok((img, Made::Built { written }))
}

struct Chunk {
    img: Image,
}

impl Chunk {
    fn events(&self) -> u64 {
        self.img.header.end_lsn - self.img.header.first_lsn
    }
}

struct Active {
    meta: SegmentMeta,
    seg: Option<memmap2::Mmap>,
    chunks: Vec<Chunk>,
    /// Segment offset, LSN and chain digest up to which chunks cover.
    off: u64,
    lsn: u64,
    digest: crate::chain::Digest,
    /// End offset of the prefix stored as `STEM.aidx`.
    stored_end: u64,
}

/// Store the active segment's first chunk once it covers this much more.
pub const ACTIVE_INDEX_STEP: u64 = 1 << 20;

/// What the engine did to its indexes (for tests and operators).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Index files opened and used as stored.
    pub loaded: u64,
    /// Index images built from their segment (missing, stale or corrupt).
    pub rebuilt: u64,
    /// Index files written.
    pub written: u64,
    /// In-memory chunks built over the active segment.
    pub chunks_built: u64,
    /// Of those, the chunks whose events were scanned on a scan thread
    /// beside the sealed segments' scans (see `Engine::refresh`).
    pub chunks_scanned_ahead: u64,
    /// Sealed segments an indexer left unbuilt (or whose stored image it
    /// removed again) because retention dropped them while it worked.
    pub skipped_dropped: u64,
}

/// Index-backed queries over one log (see the module docs of `query`).
pub struct Engine {
    reader: LogReader,
    sealed: BTreeMap<u64, Sealed>,
    active: Option<Active>,
    first_seq: u64,
    foreign: CrossRefs,
    foreign_dirty: bool,
    /// A stored active-prefix index turned out corrupt: do not load it.
    skip_stored_active: bool,
    /// Sealed segments whose images an indexer is building outside the lock.
    pending: HashMap<u64, (SegmentMeta, Slot)>,
    /// Called with the progress of building a big segment's index.
    pub progress: Option<ProgressFn>,
    /// Write rebuilt index files beside their segments.
    pub persist: bool,
    /// Sealed segments scanned at once when several images are to be
    /// built (one per core by default; 1 builds one after another). The
    /// images are the same bytes either way.
    pub scan_threads: usize,
    pub stats: EngineStats,
    /// Set by [`Engine::trust_appends_from`].
    trusted_from: Option<u64>,
    /// Set by [`Engine::page_out_indexed_segments`].
    page_out_indexed: bool,
    /// The segment list's generation (`LogReader::segments_generation`)
    /// as of the last refresh that completed, while nothing else has
    /// changed the images since: a refresh at the same generation has
    /// nothing to do (a point query then pays no copy of the list).
    refreshed_at: Option<u64>,
}

/// One image as queries see it.
pub(crate) struct Src<'a> {
    pub seq: u64,
    /// The segment's file name (for errors).
    pub name: &'a str,
    pub img: &'a Image,
    pub seg: &'a [u8],
}

/// A consistent view of every image, oldest first.
pub struct View<'a> {
    pub(crate) srcs: Vec<Src<'a>>,
    pub(crate) first_seq: u64,
    pub(crate) foreign: &'a CrossRefs,
    /// Some image's FINS holds a `dry_run` finish (dry-run checks then
    /// need the foreign status of unfinished runs; otherwise they skip it).
    pub(crate) dry_fins: bool,
    /// What the engine's reader has checked against the chain: a block of
    /// a span a replay through that reader already chained to its trusted
    /// end is not hashed again (see `View::body_at`).
    pub(crate) checked: &'a crate::checked::Checked,
}

pub(crate) fn shadow_in<'a>(imgs: impl Iterator<Item = (u64, &'a Image)>) -> Shadows<'a> {
    Shadows::new(imgs)
}

/// "The nearest older image holding a start of this id" (asked once per
/// run of an image being built) and "does an older image hold a log of
/// this id and seq" (asked of a few replacing logs). Searching every older
/// image whole for every run made indexing cost grow with the number of
/// segments (a log of daily segments spent most of its indexing time
/// here); the builder asks in ascending order, so each image keeps a
/// cursor and a lookup goes on from it. Asked out of order, it starts
/// over (still correct).
pub(crate) struct Shadows<'a> {
    /// Newest first, each with its cursors into RUNS and LOGS.
    list: Vec<(u64, &'a Image, Cell<u32>, Cell<u32>)>,
    last: RefCell<Vec<u8>>,
    last_log: RefCell<(Vec<u8>, u64)>,
}

impl<'a> Shadows<'a> {
    fn new(imgs: impl Iterator<Item = (u64, &'a Image)>) -> Shadows<'a> {
        let mut list: Vec<_> = imgs
            .map(|(seq, img)| (seq, img, Cell::new(0), Cell::new(0)))
            .collect();
        list.reverse();
        Shadows {
            list,
            last: RefCell::new(Vec::new()),
            last_log: RefCell::new((Vec::new(), 0)),
        }
    }
}

impl index::Older for Shadows<'_> {
    fn start(&self, id: &str) -> Option<(u64, u32)> {
        let id = id.as_bytes();
        let mut last = self.last.borrow_mut();
        if id < last.as_slice() {
            for (_, _, cur, _) in &self.list {
                cur.set(0);
            }
        }
        last.clear();
        last.extend_from_slice(id);
        // Newest first, each image's stored run-id filter before its RUNS:
        // most ids are in no older image, and a filter probe is one cache
        // line where a search compares strings. This is asked of every
        // older image for every run built, so it is what a rebuild of a
        // log of many segments spends its time on (docs/benchmarks.md,
        // "Round ten"). A cursor that a filter skips stays behind, which
        // is still correct (ids come in ascending order): the next search
        // in that image goes on from there.
        let h = index::RunHash::of(id);
        for (seq, img, cur, _) in &self.list {
            if !img.may_hold_run(h) {
                continue;
            }
            let at = img.seek_run(id, cur.get());
            cur.set(at);
            if at < img.n_runs() && img.run_id(at) == id {
                return Some((*seq, at));
            }
        }
        None
    }

    fn has_log(&self, id: &str, seq: u64) -> bool {
        let id = id.as_bytes();
        let mut last = self.last_log.borrow_mut();
        if (id, seq) < (last.0.as_slice(), last.1) {
            for (_, _, _, cur) in &self.list {
                cur.set(0);
            }
        }
        last.0.clear();
        last.0.extend_from_slice(id);
        last.1 = seq;
        let mut found = false;
        for (_, img, _, cur) in &self.list {
            let at = img.seek_log(id, seq, cur.get());
            cur.set(at);
            if (at as usize) < img.n_logs() {
                let l = img.log_at(at);
                found |= l.id == id && l.seq == seq;
            }
        }
        found
    }
}

impl Engine {
    /// An engine over a log folder opened read-only.
    pub fn open(dir: &Path) -> Result<Engine> {
        Ok(Engine::new(LogReader::open(dir)?))
    }

    /// An engine over a reader (a live one from `Log::reader`, or read-only).
    pub fn new(reader: LogReader) -> Engine {
        Engine {
            reader,
            sealed: BTreeMap::new(),
            active: None,
            first_seq: 0,
            foreign: CrossRefs::default(),
            foreign_dirty: false,
            skip_stored_active: false,
            pending: HashMap::new(),
            progress: None,
            persist: true,
            scan_threads: super::scan_ahead::scan_threads(),
            stats: EngineStats::default(),
            trusted_from: None,
            page_out_indexed: false,
            refreshed_at: None,
        }
    }

    /// From now on, once a sealed segment's image is built or loaded, the
    /// segment's pages go back to the kernel ([`crate::layout::page_out`]):
    /// for a bulk load (`auditlog ingest`), whose segments are written once
    /// and not read again while it runs. Queries still read them (from
    /// the file, as after a restart); the images stay cached.
    pub fn page_out_indexed_segments(&mut self) {
        self.page_out_indexed = true;
    }

    /// The events from `lsn` on are appended by this process, each checked
    /// against every rule of the contract before it is stored (as
    /// `auditlog ingest` checks every line it appends): index builds of
    /// spans that hold only such events read them without running the
    /// rules again ([`index::Check::CheckedOnAppend`]; the images are the
    /// same bytes). Spans with older events are read strictly. Only for an
    /// engine over a live log whose every append from `lsn` on is checked.
    ///
    /// An engine over a live log ([`crate::Log::reader`]) needs no call:
    /// every `Log` append checks every rule, so its builds trust the
    /// events appended since that `Log` opened (docs/integrity.md,
    /// "Builds of what this process appended").
    pub fn trust_appends_from(&mut self, lsn: u64) {
        self.trusted_from = Some(lsn);
    }

    /// From which LSN on builds read events as checked on append: those a
    /// live log's appends checked since it opened (every `Log::append*`
    /// path runs every rule of the contract before it encodes, and the
    /// frames a retention carries forward move the mark past them), and
    /// those the caller vouched for ([`Engine::trust_appends_from`]); the
    /// later of the two when both are known. An engine over a folder read
    /// from disk trusts nothing by itself. docs/integrity.md, "Builds of
    /// what this process appended".
    fn trust(&self) -> Trust {
        match (self.trusted_from, self.reader.appends_checked_from()) {
            (Some(a), Some(b)) => Trust(a.max(b)),
            (Some(a), None) | (None, Some(a)) => Trust(a),
            (None, None) => Trust(u64::MAX),
        }
    }

    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Re-read the folder (read-only readers; live ones follow by themselves).
    pub fn reload(&mut self) -> Result<()> {
        self.reader.refresh()?;
        self.refresh()
    }

    /// Bring the images in step with the log: drop those of removed
    /// segments, load or build those of sealed ones, index what was
    /// committed to the active segment since the last call.
    pub fn refresh(&mut self) -> Result<()> {
        let gen = self.reader.segments_generation();
        if self.refreshed_at == Some(gen) && !self.foreign_dirty {
            return Ok(());
        }
        self.refreshed_at = None;
        let segs = self.reader.segments();
        self.forget_dropped(&segs);
        let todo: Vec<SegmentMeta> = segs
            .iter()
            .filter(|s| s.sealed && s.count > 0)
            .filter(|s| self.sealed.get(&s.seq).is_none_or(|have| have.meta != **s))
            .cloned()
            .collect();
        let active = segs.last().filter(|s| !s.sealed);
        let ahead = active.and_then(|m| self.active_span(m).map(|span| (m, span)));
        let scanned_ahead = self.load_many_sealed(&todo, ahead)?;
        match active {
            None => {
                if self.active.take().is_some() {
                    self.foreign_dirty = true;
                }
            }
            Some(s) => self.catch_up(s, scanned_ahead)?,
        }
        if self.foreign_dirty {
            self.rebuild_foreign();
        }
        self.refreshed_at = Some(gen);
        Ok(())
    }

    /// Forget the images of segments no longer in `segs` (the log's list,
    /// as of now): retention dropped them.
    fn forget_dropped(&mut self, segs: &[SegmentMeta]) {
        self.first_seq = segs.first().map_or(u64::MAX, |s| s.seq);
        let before = self.sealed.len();
        self.sealed
            .retain(|seq, _| segs.iter().any(|s| s.seq == *seq && s.sealed));
        if self.sealed.len() != before {
            self.foreign_dirty = true;
            self.refreshed_at = None;
        }
    }

    /// [`Engine::load_sealed`] of every segment of `todo` (ascending seq),
    /// their stored files opened or their events scanned on up to one
    /// thread per core ahead of this one, which finishes each build in
    /// order (a build looks runs up in the older images). `active`: the
    /// active segment's new events, scanned last alongside them (a scan
    /// needs no other image; its finish is left to `catch_up`, after the
    /// sealed images it looks runs up in). Without it the active segment's
    /// scan ran alone on this thread once every sealed image was done:
    /// the one-core end of `auditlog ingest`.
    fn load_many_sealed(
        &mut self,
        todo: &[SegmentMeta],
        active: Option<(&SegmentMeta, index::Span)>,
    ) -> Result<Option<ScannedAhead>> {
        // Those an indexer is building are waited for, and scanned only
        // if it gives up on them.
        let mut jobs: Vec<ScanJob<'_>> = todo
            .iter()
            .map(|m| ScanJob::Sealed(m, self.pending.get(&m.seq).map(|(_, slot)| slot.clone())))
            .collect();
        if let Some((meta, span)) = active {
            jobs.push(ScanJob::Active(meta, span));
        }
        let progress = self.progress.clone();
        let trust = self.trust();
        let mut ahead = None;
        super::scan_ahead::scan_ahead(
            &jobs,
            self.scan_threads,
            |job| match job {
                ScanJob::Sealed(_, Some(slot)) if wait_slot(slot).is_some() => {
                    Ok(JobScan::Sealed(None))
                }
                ScanJob::Sealed(meta, _) => map_and_prepare(meta, progress.as_ref(), trust)
                    .map(|p| JobScan::Sealed(Some(p))),
                // A failed scan is not an error here: `catch_up` builds
                // the chunk itself and reports what it finds.
                ScanJob::Active(meta, span) => Ok(JobScan::Active(scan_active(meta, *span, trust))),
            },
            |i, scan| match (&jobs[i], scan) {
                // Retention dropped it (files and all) while this worked.
                (ScanJob::Sealed(meta, _), Err(_)) if !self.reader.holds_segment(meta.seq) => {
                    Ok(())
                }
                (_, Err(e)) => Err(e),
                (ScanJob::Sealed(meta, _), Ok(JobScan::Sealed(prepared))) => {
                    self.load_prepared(meta, false, prepared)
                }
                (_, Ok(JobScan::Active(scanned))) => {
                    ahead = scanned;
                    Ok(())
                }
                (ScanJob::Active(..), Ok(JobScan::Sealed(_))) => Ok(()),
            },
        )?;
        Ok(ahead)
    }

    /// The span `catch_up` will index of the active segment `meta`, if it
    /// can be told before the sealed images are up to date: not when a
    /// stored index of its prefix may be loaded instead, nor when nothing
    /// new was committed.
    fn active_span(&self, meta: &SegmentMeta) -> Option<index::Span> {
        let (from, first_lsn, digest_at_from) = match &self.active {
            Some(a) if a.meta.seq == meta.seq && !a.chunks.is_empty() => (a.off, a.lsn, a.digest),
            _ if self.skip_stored_active || !index::active_index_path(meta).exists() => {
                (HEADER_SIZE as u64, meta.first_lsn, meta.prev_digest)
            }
            _ => return None,
        };
        (meta.count > 0 && meta.data_len > from)
            .then(|| chunk_span(meta, from, first_lsn, digest_at_from))
    }

    fn load_sealed(&mut self, meta: &SegmentMeta, force: bool) -> Result<()> {
        self.load_prepared(meta, force, None)
    }

    /// Load or build the image of sealed segment `meta`; `prepared`: its
    /// segment mapped and its image prepared already (on a scan thread).
    fn load_prepared(
        &mut self,
        meta: &SegmentMeta,
        force: bool,
        prepared: Option<(memmap2::Mmap, Prepared)>,
    ) -> Result<()> {
        let (seg, mut prepared) = match prepared {
            Some((seg, p)) => (seg, Some(p)),
            None => match map_segment(meta) {
                Ok(seg) => (seg, None),
                // Retention dropped it (files and all) while this worked.
                Err(_) if !self.reader.holds_segment(meta.seq) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        // An indexer building it outside the lock: wait for its image
        // rather than build the same thing twice.
        if let Some((pmeta, slot)) = self.pending.remove(&meta.seq) {
            if !force && pmeta == *meta {
                if let Some(img) = wait_slot(&slot) {
                    self.install(meta, img, seg);
                    return Ok(());
                }
            }
        }
        let (img, made) = loop {
            let prep = match prepared.take() {
                Some(p) => p,
                None => prepare(meta, &seg, force, self.progress.as_ref(), self.trust())?,
            };
            let older: Vec<(u64, &Image)> = self
                .sealed
                .range(..meta.seq)
                .map(|(seq, s)| (*seq, &*s.img))
                .collect();
            let r = make_sealed(meta, prep, &older, self.persist)?;
            drop(older);
            if matches!(r.1, Made::Loaded) {
                break r;
            }
            // The lookups read older images: if one turned out corrupt,
            // rebuild it and build this one again.
            let bad: Vec<u64> = self
                .sealed
                .range(..meta.seq)
                .filter(|(_, s)| s.img.poisoned())
                .map(|(seq, _)| *seq)
                .collect();
            if bad.is_empty() {
                break r;
            }
            for seq in bad {
                if let Some(old) = self.sealed.remove(&seq) {
                    self.foreign_dirty = true;
                    self.load_sealed(&old.meta, true)?;
                }
            }
        };
        self.tally(made);
        if !self.reader.holds_segment(meta.seq) {
            // Dropped meanwhile: an image stored after retention removed
            // the segment's files would stay behind alone.
            if matches!(made, Made::Built { written: true }) {
                let _ = std::fs::remove_file(index::index_path(meta));
            }
            return Ok(());
        }
        self.install(meta, Arc::new(img), seg);
        Ok(())
    }

    fn tally(&mut self, made: Made) {
        match made {
            Made::Loaded => self.stats.loaded += 1,
            Made::Built { written } => {
                self.stats.rebuilt += 1;
                self.stats.written += u64::from(written);
            }
        }
    }

    fn install(&mut self, meta: &SegmentMeta, img: Arc<Image>, seg: memmap2::Mmap) {
        self.refreshed_at = None;
        let _ = std::fs::remove_file(index::active_index_path(meta));
        if self.active.as_ref().is_some_and(|a| a.meta.seq == meta.seq) {
            self.active = None;
            self.foreign_dirty = true;
        }
        if self.sealed.remove(&meta.seq).is_some() {
            self.foreign_dirty = true;
        }
        self.add_foreign(meta.seq, &img);
        if self.page_out_indexed {
            if let Err(e) = crate::layout::page_out(&seg, &meta.path) {
                tracing::debug!(segment = %meta.name, error = %e, "pages of an indexed segment kept");
            }
        }
        self.sealed.insert(
            meta.seq,
            Sealed {
                meta: meta.clone(),
                img,
                seg,
            },
        );
    }

    /// Bring the images of sealed segments up to date, building missing
    /// ones while `engine` stays unlocked (queries go on meanwhile, and a
    /// query that needs one of them waits for it instead of building it
    /// again). For an indexer thread: the active segment is left to the
    /// next [`Engine::refresh`].
    pub fn index_sealed(engine: &Mutex<Engine>) -> Result<()> {
        Self::index_sealed_until(engine, &AtomicBool::new(false))
    }

    /// [`Engine::index_sealed`], giving up before the next image once
    /// `stop` is set (the images not built are left to whoever refreshes:
    /// a low-priority indexer must not hold up a caller that is waiting
    /// for the indexes at normal priority).
    pub(crate) fn index_sealed_until(engine: &Mutex<Engine>, stop: &AtomicBool) -> Result<()> {
        let reader = engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reader
            .clone();
        Self::index_sealed_while(engine, stop, &|m: &SegmentMeta| reader.holds_segment(m.seq))
    }

    /// [`Engine::index_sealed_until`], asking `live` whether the log still
    /// holds a segment before its scan, before its finish and after its
    /// store. Retention drops the oldest segments while the indexer works
    /// through them oldest first: an index of a dropped segment is work
    /// nobody reads, a segment file gone before its scan failed the whole
    /// pass (its remaining images were then built under the engine's
    /// lock, the active segment's too), and an image stored after
    /// retention removed the segment's files stayed behind as an orphan
    /// `STEM.idx` (docs/benchmarks.md, "Index lag, lag39 round").
    pub(crate) fn index_sealed_while(
        engine: &Mutex<Engine>,
        stop: &AtomicBool,
        live: &(dyn Fn(&SegmentMeta) -> bool + Sync),
    ) -> Result<()> {
        let lock = || engine.lock().unwrap_or_else(|p| p.into_inner());
        let (jobs, mut older, progress, persist, threads, trust) = {
            let mut e = lock();
            let segs = e.reader.segments();
            // Only a refresh forgot the images of dropped segments: an
            // indexer working alone (no queries asked) kept every image it
            // ever built, their segments' deleted files mapped (the disk
            // space held), and each build looked its runs up in all of
            // them, so its cost per event grew with the run's length.
            e.forget_dropped(&segs);
            let mut jobs = Vec::new();
            for s in segs.iter().filter(|s| s.sealed && s.count > 0) {
                let have = e.sealed.get(&s.seq).is_some_and(|h| h.meta == *s);
                if have || e.pending.contains_key(&s.seq) {
                    continue;
                }
                let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
                e.pending.insert(s.seq, (s.clone(), slot.clone()));
                jobs.push((s.clone(), SlotFill { slot, img: None }));
            }
            let older: Vec<(u64, Arc<Image>)> = e
                .sealed
                .iter()
                .map(|(seq, s)| (*seq, s.img.clone()))
                .collect();
            (
                jobs,
                older,
                e.progress.clone(),
                e.persist,
                e.scan_threads,
                e.trust(),
            )
        };
        if jobs.is_empty() {
            let mut e = lock();
            if e.foreign_dirty {
                e.rebuild_foreign();
            }
            return Ok(());
        }
        let mut built = Vec::new();
        let mut dropped = 0u64;
        let (metas, mut fills): (Vec<SegmentMeta>, Vec<Option<SlotFill>>) =
            jobs.into_iter().map(|(m, f)| (m, Some(f))).unzip();
        // Scans on up to one thread per core (at this thread's priority,
        // which they inherit), finishes here in order. A failure stops the
        // rest; their slots complete empty as `fills` drops, and waiters
        // build those images themselves. A segment retention dropped is
        // skipped, no failure: its slot completes empty.
        let mut stopped = false;
        let res = super::scan_ahead::scan_ahead(
            &metas,
            threads,
            |meta| {
                if !live(meta) {
                    return Ok(None);
                }
                match map_and_prepare(meta, progress.as_ref(), trust) {
                    Ok(p) => Ok(Some(p)),
                    // Its file went with it between the two looks.
                    Err(_) if !live(meta) => Ok(None),
                    Err(e) => Err(e),
                }
            },
            |i, prepared| {
                if stop.load(Ordering::Acquire) {
                    stopped = true;
                    // Complete the slots of the images not built now, not
                    // after the scans under way: their waiters build them.
                    fills.iter_mut().for_each(|f| drop(f.take()));
                    return Err(Error::InvalidArgument("indexer stopped".into()));
                }
                let meta = &metas[i];
                let Some((seg, prepared)) = prepared?.filter(|_| live(meta)) else {
                    dropped += 1;
                    drop(fills[i].take());
                    return Ok(());
                };
                let refs: Vec<(u64, &Image)> = older
                    .iter()
                    .filter(|(seq, _)| *seq < meta.seq)
                    .map(|(seq, img)| (*seq, &**img))
                    .collect();
                let (img, made) = make_sealed(meta, prepared, &refs, persist)?;
                if refs.iter().any(|(_, i)| i.poisoned()) {
                    return Err(Error::Corrupt {
                        segment: meta.name.clone(),
                        offset: 0,
                        reason: "an older index turned out corrupt while building".into(),
                    });
                }
                drop(refs);
                if matches!(made, Made::Built { written: true }) && !live(meta) {
                    // Stored after retention removed the segment's files
                    // (it lists the segments it drops before it removes
                    // them, so a store it missed is seen gone here).
                    let _ = std::fs::remove_file(index::index_path(meta));
                    dropped += 1;
                    drop(fills[i].take());
                    return Ok(());
                }
                let img = Arc::new(img);
                if let Some(mut fill) = fills[i].take() {
                    fill.img = Some(img.clone());
                }
                older.push((meta.seq, img.clone()));
                built.push((meta.clone(), img, made, seg));
                Ok(())
            },
        );
        drop(fills);
        // Stopped on request: not a failure to repair here.
        let failed = res.err().filter(|_| !stopped);
        let mut e = lock();
        e.stats.skipped_dropped += dropped;
        let live = e.reader.segments();
        for (meta, img, made, seg) in built {
            e.tally(made);
            // A query may have installed it meanwhile; retention may have
            // dropped the segment.
            let have = e.sealed.get(&meta.seq).is_some_and(|h| h.meta == meta);
            if !have && live.contains(&meta) {
                e.install(&meta, img, seg);
            }
        }
        // Every slot of this call is complete now: forget them.
        e.pending.retain(|_, (_, slot)| {
            let (m, _) = &**slot;
            m.lock().unwrap_or_else(|p| p.into_inner()).is_none()
        });
        if e.foreign_dirty {
            e.rebuild_foreign();
        }
        match failed {
            // Under the lock, with the poisoned-image repair of `refresh`.
            Some(err) => {
                tracing::debug!(error = %err, "building outside the lock failed; refreshing");
                e.refresh()
            }
            None => Ok(()),
        }
    }

    /// Index what was committed to the active segment `meta` since the
    /// last call; `ahead`: that scanned already (used if its span is the
    /// one needed).
    fn catch_up(&mut self, meta: &SegmentMeta, ahead: Option<ScannedAhead>) -> Result<()> {
        let trust = self.trust();
        if self.active.as_ref().is_none_or(|a| a.meta.seq != meta.seq) {
            if self.active.is_some() {
                self.foreign_dirty = true;
            }
            self.active = Some(Active {
                meta: meta.clone(),
                seg: None,
                chunks: Vec::new(),
                off: HEADER_SIZE as u64,
                lsn: meta.first_lsn,
                digest: meta.prev_digest,
                stored_end: 0,
            });
        }
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        active.meta = meta.clone();
        if meta.data_len <= active.off || meta.count == 0 {
            return Ok(());
        }
        if active
            .seg
            .as_ref()
            .is_none_or(|m| (m.len() as u64) < meta.data_len)
        {
            active.seg = map_file(&meta.path)?;
        }
        let Some(seg) = active.seg.as_ref() else {
            return Ok(());
        };
        if (seg.len() as u64) < meta.data_len {
            return Err(Error::Corrupt {
                segment: meta.name.clone(),
                offset: seg.len() as u64,
                reason: "active segment is shorter than its committed length".into(),
            });
        }
        if active.chunks.is_empty() && active.off == HEADER_SIZE as u64 && !self.skip_stored_active
        {
            // A stored index of the prefix saves indexing it again.
            if let Some(img) = index::load_active(meta, seg) {
                self.stats.loaded += 1;
                active.off = img.header.end_off;
                active.lsn = img.header.end_lsn;
                active.digest = img.header.digest;
                active.stored_end = img.header.end_off;
                active.chunks.push(Chunk { img });
                self.foreign_dirty = true;
                if meta.data_len <= active.off {
                    return Ok(());
                }
            }
        }
        let mut chunks = std::mem::take(&mut active.chunks);
        let (from, lsn, digest) = (active.off, active.lsn, active.digest);
        let span = chunk_span(meta, from, lsn, digest);
        let img = match ahead.filter(|a| a.span == span) {
            Some(a) => {
                self.stats.chunks_scanned_ahead += 1;
                Self::finish_chunk(&self.sealed, &chunks, meta, from, a.scanned)?
            }
            None => Self::chunk_image(&self.sealed, &chunks, meta, seg, span, trust)?,
        };
        self.stats.chunks_built += 1;
        let new_seq = meta.seq;
        // Merge the tail while it is as big as the chunk before it, so the
        // active segment has O(log n) chunks and each event is re-indexed
        // O(log n) times.
        let mut img = img;
        while let Some(prev) = chunks.last() {
            let n = img.header.end_lsn - img.header.first_lsn;
            if n * 2 < prev.events() {
                break;
            }
            let prev = chunks.pop().map(|c| c.img);
            let Some(prev) = prev else { break };
            let span = chunk_span(
                meta,
                prev.header.start_off,
                prev.header.first_lsn,
                prev.chain_point(0).1,
            );
            img = Self::chunk_image(&self.sealed, &chunks, meta, seg, span, trust)?;
            self.stats.chunks_built += 1;
            self.foreign_dirty = true;
        }
        let end_lsn = img.header.end_lsn;
        if !self.foreign_dirty {
            Self::add_foreign_to(&mut self.foreign, new_seq, &img);
        }
        chunks.push(Chunk { img });
        let persist = self.persist;
        let mut written = false;
        if let Some(a) = self.active.as_mut() {
            if let Some(first) = chunks.first() {
                let end = first.img.header.end_off;
                if persist
                    && first.img.header.start_off == HEADER_SIZE as u64
                    && end >= a.stored_end + ACTIVE_INDEX_STEP
                {
                    match index::store_file(&index::active_index_path(meta), first.img.bytes()) {
                        Ok(()) => written = true,
                        Err(e) => tracing::debug!(error = %e, "active index kept in memory only"),
                    }
                    a.stored_end = end;
                }
            }
            a.chunks = chunks;
            a.off = meta.data_len;
            a.lsn = end_lsn;
            a.digest = meta.digest;
        }
        if written {
            self.stats.written += 1;
        }
        Ok(())
    }

    /// An in-memory image of the active segment's `span` (to its committed
    /// end), checked against the segment's trusted head as it is built.
    fn chunk_image(
        sealed: &BTreeMap<u64, Sealed>,
        chunks: &[Chunk],
        meta: &SegmentMeta,
        seg: &[u8],
        span: index::Span,
        trust: Trust,
    ) -> Result<Image> {
        let scanned =
            index::scan_image_with(meta, seg, KIND_CHUNK, span, None, trust.check(&span))?;
        Self::finish_chunk(sealed, chunks, meta, span.from, scanned)
    }

    /// The second half of [`Engine::chunk_image`]: runs looked up in the
    /// sealed images and the chunks before this one.
    fn finish_chunk(
        sealed: &BTreeMap<u64, Sealed>,
        chunks: &[Chunk],
        meta: &SegmentMeta,
        from: u64,
        scanned: index::Scanned,
    ) -> Result<Image> {
        let shadow = shadow_in(
            sealed
                .range(..meta.seq)
                .map(|(seq, s)| (*seq, &*s.img))
                .chain(chunks.iter().map(|c| (meta.seq, &c.img))),
        );
        let bytes = scanned.finish(&shadow);
        let img = Image::open(Backing::Vec(bytes)).map_err(|r| Error::Corrupt {
            segment: meta.name.clone(),
            offset: from,
            reason: format!("in-memory index does not read back: {r}"),
        })?;
        img.mark_chain_checked();
        Ok(img)
    }

    fn add_foreign_to(refs: &mut CrossRefs, seq: u64, img: &Image) {
        for i in 0..img.n_amends() {
            let a = img.amend(i);
            if a.kind == AMEND_LOG {
                refs.relogs.entry(a.id.into()).or_default().push(a.lsn);
                continue;
            }
            let v = refs.amends.entry(a.id.into()).or_default();
            v.push(AmendRef {
                seq,
                lsn: a.lsn,
                off: a.off,
                kind: a.kind,
            });
            v.sort_by_key(|a| a.lsn);
        }
    }

    fn add_foreign(&mut self, seq: u64, img: &Image) {
        if !self.foreign_dirty {
            Self::add_foreign_to(&mut self.foreign, seq, img);
        }
    }

    fn rebuild_foreign(&mut self) {
        let mut map = CrossRefs::default();
        for (seq, s) in &self.sealed {
            Self::add_foreign_to(&mut map, *seq, &s.img);
        }
        if let Some(a) = &self.active {
            for c in &a.chunks {
                Self::add_foreign_to(&mut map, a.meta.seq, &c.img);
            }
        }
        self.foreign = map;
        self.foreign_dirty = false;
    }

    /// The images as of the last refresh, oldest first.
    pub fn view(&self) -> View<'_> {
        let mut srcs: Vec<Src<'_>> = self
            .sealed
            .iter()
            .map(|(seq, s)| Src {
                seq: *seq,
                name: &s.meta.name,
                img: &s.img,
                seg: &s.seg[..],
            })
            .collect();
        if let Some(a) = &self.active {
            let seg: &[u8] = a.seg.as_deref().unwrap_or(&[]);
            for c in &a.chunks {
                srcs.push(Src {
                    seq: a.meta.seq,
                    name: &a.meta.name,
                    img: &c.img,
                    seg,
                });
            }
        }
        let dry_fins = srcs.iter().any(|s| s.img.has_dry_fins());
        View {
            srcs,
            first_seq: self.first_seq,
            foreign: &self.foreign,
            dry_fins,
            checked: self.reader.checked(),
        }
    }

    /// Refresh, answer `f` over a view; if an image turned out corrupt
    /// while answering, rebuild it from its segment and answer again.
    pub fn query<T>(&mut self, f: impl Fn(&View<'_>) -> Result<T>) -> Result<T> {
        self.refresh()?;
        for _ in 0..3 {
            let answer = f(&self.view());
            let bad: Vec<u64> = self
                .sealed
                .iter()
                .filter(|(_, s)| s.img.poisoned())
                .map(|(seq, _)| *seq)
                .collect();
            let bad_chunk = self
                .active
                .as_ref()
                .is_some_and(|a| a.chunks.iter().any(|c| c.img.poisoned()));
            if bad.is_empty() && !bad_chunk {
                return answer;
            }
            self.refreshed_at = None;
            for &seq in &bad {
                if let Some(s) = self.sealed.remove(&seq) {
                    tracing::warn!(segment = %s.meta.name, "index is corrupt; rebuilding it");
                    self.foreign_dirty = true;
                    self.load_sealed(&s.meta, true)?;
                }
            }
            if bad_chunk {
                if let Some(a) = &self.active {
                    let _ = std::fs::remove_file(index::active_index_path(&a.meta));
                }
                self.skip_stored_active = true;
            }
            if bad_chunk || !bad.is_empty() {
                // Chunks were built with lookups into the corrupt images.
                self.active = None;
                self.foreign_dirty = true;
            }
            self.refresh()?;
        }
        Err(Error::Corrupt {
            segment: "index".into(),
            offset: 0,
            reason: "index stays corrupt after rebuilding it".into(),
        })
    }

    /// Sealed segments whose index is loaded, with their index file sizes.
    pub fn index_sizes(&self) -> Vec<(String, usize)> {
        self.sealed
            .values()
            .map(|s| (s.meta.name.clone(), s.img.file_len()))
            .collect()
    }
}

#[cfg(test)]
mod stop_tests {
    use super::*;
    use crate::event::{Event, RunStarted};
    use crate::index::RunHash;
    use crate::{Config, Durability, Log};

    const DAY: Micros = 86_400_000_000;
    const D0: Micros = 1_795_132_800_000_000;

    /// A log of `days` sealed daily segments, open for writing.
    fn sealed_log(dir: &Path, days: i64) -> Log {
        let mut cfg = Config::new(dir.join("log"));
        cfg.durability = Durability::Never;
        let log = Log::open(cfg).unwrap();
        for day in 0..days {
            let evs: Vec<Event> = (0..50i64)
                .map(|i| {
                    let t = D0 + day * DAY + i * 1_000;
                    Event::run_started(format!("d{day}-{i}"), t, RunStarted::default())
                })
                .collect();
            log.append_batch(&evs).unwrap().wait().unwrap();
            log.seal().unwrap();
        }
        log
    }

    /// The `.idx` files in the log folder, and whether each one's segment
    /// is still there.
    fn images_and_segments(dir: &Path) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, p.with_extension("seg").exists())
            })
            .collect();
        out.sort();
        out
    }

    /// Retention dropping the oldest segments while an indexer works
    /// through them, oldest first: they are skipped, not a failure (the
    /// pass goes on outside the lock; no refresh builds the rest under
    /// it), and the images of the segments kept are built.
    #[test]
    fn segments_retention_drops_mid_pass_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 5);
        let reader = log.reader();
        let mut e = Engine::new(log.reader());
        // One scan at a time, oldest first: with two, day 1's scan could
        // pass its look before day 0's look drops it (a race of the test,
        // not of the engine: a segment built just before its drop is
        // forgotten by the next pass).
        e.scan_threads = 1;
        let engine = Mutex::new(e);
        let dropped = AtomicBool::new(false);
        // The first look (a scan's, after the pass listed all five)
        // drops days 0 and 1, files and all.
        let live = |m: &SegmentMeta| {
            if !dropped.swap(true, Ordering::SeqCst) {
                assert_eq!(log.retain(D0 + 2 * DAY).unwrap().dropped.len(), 2);
            }
            reader.holds_segment(m.seq)
        };
        Engine::index_sealed_while(&engine, &AtomicBool::new(false), &live).unwrap();
        let mut e = engine.lock().unwrap();
        assert_eq!(e.stats.skipped_dropped, 2, "{:?}", e.stats);
        assert_eq!(e.stats.rebuilt, 3, "{:?}", e.stats);
        assert_eq!(e.sealed.len(), 3);
        assert!(e.pending.is_empty());
        let imgs = images_and_segments(&tmp.path().join("log"));
        assert_eq!(imgs.len(), 3, "{imgs:?}");
        assert!(imgs.iter().all(|(_, seg)| *seg), "{imgs:?}");
        // Nothing left to do: the refresh loads nothing more.
        e.refresh().unwrap();
        assert_eq!(e.stats.rebuilt, 3, "{:?}", e.stats);
        assert_eq!(e.get_run("d0-0").unwrap(), None);
        assert!(e.get_run("d2-0").unwrap().is_some());
    }

    /// An indexer working alone (no query refreshes the engine) forgets
    /// the images of the segments retention dropped: it neither keeps
    /// their deleted files mapped nor looks runs up in them.
    #[test]
    fn an_indexer_alone_forgets_the_images_of_dropped_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 4);
        let engine = Mutex::new(Engine::new(log.reader()));
        Engine::index_sealed(&engine).unwrap();
        assert_eq!(engine.lock().unwrap().sealed.len(), 4);
        assert_eq!(log.retain(D0 + 2 * DAY).unwrap().dropped.len(), 2);
        let ev = Event::run_started("d9-0", D0 + 9 * DAY, RunStarted::default());
        log.append_batch(&[ev]).unwrap().wait().unwrap();
        log.seal().unwrap();
        Engine::index_sealed(&engine).unwrap();
        let mut e = engine.lock().unwrap();
        let kept: Vec<u64> = e.sealed.keys().copied().collect();
        let live: Vec<u64> = log
            .reader()
            .segments()
            .iter()
            .filter(|s| s.sealed)
            .map(|s| s.seq)
            .collect();
        assert_eq!(kept, live);
        assert_eq!(kept.len(), 3);
        assert_eq!(e.get_run("d0-0").unwrap(), None);
        assert!(e.get_run("d9-0").unwrap().is_some());
        assert!(e.get_run("d3-7").unwrap().is_some());
    }

    /// Retention removing a segment's files between the indexer's last
    /// look before the store and the store itself: the image it stored
    /// for the gone segment is removed again, not left behind alone.
    #[test]
    fn an_image_stored_after_its_segment_was_dropped_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 3);
        let reader = log.reader();
        let oldest = reader.segments()[0].seq;
        let mut engine = Engine::new(log.reader());
        engine.scan_threads = 1;
        let engine = Mutex::new(engine);
        let looks = std::sync::atomic::AtomicU32::new(0);
        // Looks at the oldest: before its scan, before its finish (the
        // drop happens right after this look says "held"), after its store.
        let live = |m: &SegmentMeta| {
            if m.seq != oldest {
                return reader.holds_segment(m.seq);
            }
            match looks.fetch_add(1, Ordering::SeqCst) {
                1 => {
                    assert_eq!(log.retain(D0 + DAY).unwrap().dropped.len(), 1);
                    true
                }
                _ => reader.holds_segment(m.seq),
            }
        };
        Engine::index_sealed_while(&engine, &AtomicBool::new(false), &live).unwrap();
        assert_eq!(looks.load(Ordering::SeqCst), 3);
        let e = engine.lock().unwrap();
        assert_eq!(e.stats.skipped_dropped, 1, "{:?}", e.stats);
        assert_eq!(e.sealed.len(), 2);
        let imgs = images_and_segments(&tmp.path().join("log"));
        assert_eq!(imgs.len(), 2, "{imgs:?}");
        assert!(imgs.iter().all(|(_, seg)| *seg), "{imgs:?}");
    }

    /// An indexer told to stop builds nothing more, is no failure, and
    /// leaves no slot behind: the refresh builds every image.
    #[test]
    fn a_stopped_catch_up_leaves_the_images_to_the_refresh() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 4);
        let engine = Mutex::new(Engine::new(log.reader()));
        Engine::index_sealed_until(&engine, &AtomicBool::new(true)).unwrap();
        let mut e = engine.lock().unwrap();
        assert_eq!(e.stats.rebuilt, 0, "{:?}", e.stats);
        assert!(e.pending.is_empty());
        e.refresh().unwrap();
        assert_eq!(e.stats.rebuilt, 4, "{:?}", e.stats);
    }

    /// A reopened engine's sealed images carry their stored run-id
    /// filters (RFILT, version 7) from the first lookup: ids in any image,
    /// and in none, answer as the binary searches do.
    #[test]
    fn point_lookups_use_the_stored_run_filters_from_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 3);
        let mut e = Engine::new(log.reader());
        e.refresh().unwrap();
        assert_eq!(e.sealed.len(), 3);
        assert!(e.sealed.values().all(|s| s.img.has_run_filter()));
        for day in 0..3 {
            for i in [0, 7, 49] {
                let id = format!("d{day}-{i}");
                let r = e.get_run(&id).unwrap().unwrap();
                assert_eq!(r.started_at, D0 + day * DAY + i * 1_000);
                let h = RunHash::of(id.as_bytes());
                let holding: Vec<bool> = e
                    .sealed
                    .values()
                    .map(|s| s.img.find_run_if_filtered(id.as_bytes(), h).is_some())
                    .collect();
                let searched: Vec<bool> = e
                    .sealed
                    .values()
                    .map(|s| s.img.find_run(id.as_bytes()).is_some())
                    .collect();
                assert_eq!(holding, searched, "{id}");
            }
        }
        assert_eq!(e.get_run("d3-0").unwrap(), None);
        assert_eq!(e.get_run("nowhere").unwrap(), None);
    }

    /// A refresh at an unchanged segment list does nothing, and the next
    /// one after an append or a seal sees it.
    #[test]
    fn a_refresh_skips_only_while_the_segment_list_stands() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 2);
        let mut e = Engine::new(log.reader());
        e.refresh().unwrap();
        let loaded = e.stats.loaded + e.stats.rebuilt;
        e.refresh().unwrap();
        assert_eq!(e.stats.loaded + e.stats.rebuilt, loaded);
        assert!(e.get_run("late").unwrap().is_none());
        let late = Event::run_started("late", D0 + 5 * DAY, RunStarted::default());
        log.append_batch(&[late]).unwrap().wait().unwrap();
        assert!(
            e.get_run("late").unwrap().is_some(),
            "the active segment's append"
        );
        log.seal().unwrap();
        assert!(e.get_run("late").unwrap().is_some(), "sealed");
        assert_eq!(e.sealed.len(), 3);
        assert_eq!(e.get_run("d0-1").unwrap().unwrap().id, "d0-1");
    }

    /// A refresh waiting for an image an indexer is building scans the
    /// segment itself when the indexer gives up on it.
    #[test]
    fn a_refresh_builds_what_the_indexer_gave_up() {
        let tmp = tempfile::tempdir().unwrap();
        let log = sealed_log(tmp.path(), 4);
        let mut e = Engine::new(log.reader());
        e.scan_threads = 2;
        let segs = e.reader.segments();
        let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
        e.pending
            .insert(segs[1].seq, (segs[1].clone(), slot.clone()));
        let giver = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(SlotFill { slot, img: None });
        });
        e.refresh().unwrap();
        giver.join().unwrap();
        assert_eq!(e.stats.rebuilt, 4, "{:?}", e.stats);
        assert!(e.pending.is_empty());
        assert_eq!(e.sealed.len(), 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Digest;
    use crate::event::{Event, Json, RunLog, RunStarted};
    use crate::index::{Builder, NoOlder, Older};

    /// An image holding a start of each of `ids`, and a log of each of
    /// them with seq = the id's number mod 7.
    fn image(seq: u64, ids: &[String]) -> Image {
        let mut b = Builder::new(KIND_SEALED, seq, 0, HEADER_SIZE as u64);
        for (i, id) in ids.iter().enumerate() {
            let ev = Event::run_started(id.clone(), 1_000 + i as i64, RunStarted::default());
            let off = HEADER_SIZE as u64 + 20 * i as u64;
            b.add(2 * i as u64, off, off + 10, &ev);
            let log = RunLog {
                seq: log_seq(id),
                event_type: "step".into(),
                payload: Json::from_value(&serde_json::Value::Null).unwrap(),
            };
            let ev = Event::run_log(id.clone(), 1_000 + i as i64, log);
            b.add(2 * i as u64 + 1, off + 10, off + 20, &ev);
        }
        let bytes = b.finish(Digest([0; 32]), &NoOlder);
        Image::open(Backing::Vec(bytes)).unwrap()
    }

    fn log_seq(id: &str) -> u64 {
        id.trim_start_matches("r-").parse::<u64>().unwrap() % 7
    }

    #[test]
    fn cursor_lookups_agree_with_whole_searches_in_any_order() {
        let mut rng = fastrand::Rng::with_seed(7);
        let imgs: Vec<Image> = (0..5)
            .map(|seq| {
                let n = rng.usize(0..300);
                let mut ids: Vec<String> =
                    (0..n).map(|_| format!("r-{}", rng.u32(0..600))).collect();
                ids.sort();
                ids.dedup();
                image(seq, &ids)
            })
            .collect();
        // Sealed images carry run-id filters, which the look-ups ask first
        // (and a skipped image's cursor stays behind): this holds that path
        // to the whole searches too.
        assert!(imgs
            .iter()
            .all(|img| img.n_runs() == 0 || img.has_run_filter()));
        let naive = |id: &str| {
            imgs.iter()
                .enumerate()
                .rev()
                .find(|(_, img)| img.find_run(id.as_bytes()).is_some())
                .map(|(seq, _)| seq as u64)
        };
        let naive_log = |id: &str, seq: u64| {
            imgs.iter()
                .any(|img| img.logs_of(id.as_bytes()).iter().any(|l| l.seq == seq))
        };
        let mut asks: Vec<String> = (0..800).map(|i| format!("r-{i}")).collect();
        asks.sort();
        // Ascending (the builder's order), then shuffled (starts over).
        for round in 0..2 {
            if round == 1 {
                rng.shuffle(&mut asks);
            }
            let s = Shadows::new(imgs.iter().enumerate().map(|(seq, img)| (seq as u64, img)));
            for id in &asks {
                let found = s.start(id);
                assert_eq!(found.map(|(seq, _)| seq), naive(id), "{id} (round {round})");
                if let Some((seq, pos)) = found {
                    assert_eq!(imgs[seq as usize].run_id(pos), id.as_bytes());
                }
            }
            let s = Shadows::new(imgs.iter().enumerate().map(|(seq, img)| (seq as u64, img)));
            for id in &asks {
                for seq in [log_seq(id), log_seq(id) + 1] {
                    assert_eq!(s.has_log(id, seq), naive_log(id, seq), "{id} {seq}");
                }
            }
        }
    }

    /// An image of `events` (LSNs from 0), nothing older.
    fn image_of(events: &[Event]) -> Image {
        let mut b = Builder::new(KIND_SEALED, 0, 0, HEADER_SIZE as u64);
        for (i, ev) in events.iter().enumerate() {
            let off = HEADER_SIZE as u64 + 10 * i as u64;
            b.add(i as u64, off, off + 10, ev);
        }
        Image::open(Backing::Vec(b.finish(Digest([0; 32]), &NoOlder))).unwrap()
    }

    #[test]
    fn only_replacing_logs_that_may_hide_another_are_listed() {
        let log = |seq: u64| {
            let l = RunLog {
                seq,
                event_type: "step".into(),
                payload: Json::from_value(&serde_json::Value::Null).unwrap(),
            };
            Event::run_log("r", 10 + seq as i64, l).with_replace()
        };
        let start = Event::run_started("r", 1, RunStarted::default());
        // An upsert per (run, seq), each seq once after the start: nothing
        // to hide, nothing listed (queries pay nothing for them).
        let img = image_of(&[start.clone(), log(0), log(1), log(2)]);
        assert_eq!(img.n_amends(), 0);
        // A second log of seq 1: listed.
        let img = image_of(&[start.clone(), log(0), log(1), log(1)]);
        assert_eq!(img.n_amends(), 1);
        assert_eq!((img.amend(0).kind, img.amend(0).lsn), (AMEND_LOG, 3));
        // Before the run's start here (its logs may be elsewhere): listed.
        let img = image_of(&[log(0), start]);
        assert_eq!(img.n_amends(), 1);
    }
}
