//! The query engine: the index images of every segment (mmapped files for
//! sealed segments, in-memory chunks for the active one), kept in step with
//! the log, and a [`View`] over them that the queries read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};
use crate::event::Micros;
use crate::index::{self, Backing, Image, RunHash, Unusable, KIND_CHUNK, KIND_SEALED};
use crate::layout::{map_file, SegmentMeta};
use crate::reader::LogReader;
use crate::segment::HEADER_SIZE;

/// A finish that lives in another image than its run's start.
#[derive(Debug, Clone)]
pub(crate) struct FinRef {
    pub seq: u64,
    pub lsn: u64,
    pub off: u64,
    pub ts: Micros,
    pub status: Box<[u8]>,
}

struct Sealed {
    meta: SegmentMeta,
    img: Image,
    seg: memmap2::Mmap,
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
    /// Segment offset and LSN up to which chunks cover.
    off: u64,
    lsn: u64,
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
}

/// Index-backed queries over one log (see the module docs of `query`).
pub struct Engine {
    reader: LogReader,
    sealed: BTreeMap<u64, Sealed>,
    active: Option<Active>,
    first_seq: u64,
    foreign: HashMap<Box<[u8]>, Vec<FinRef>>,
    foreign_dirty: bool,
    /// A stored active-prefix index turned out corrupt: do not load it.
    skip_stored_active: bool,
    /// Show a progress bar on stderr (if a terminal) while indexing a big
    /// segment.
    pub progress: bool,
    /// Write rebuilt index files beside their segments.
    pub persist: bool,
    pub stats: EngineStats,
}

/// One image as queries see it.
pub(crate) struct Src<'a> {
    pub seq: u64,
    pub img: &'a Image,
    pub seg: &'a [u8],
}

/// A consistent view of every image, oldest first.
pub struct View<'a> {
    pub(crate) srcs: Vec<Src<'a>>,
    pub(crate) first_seq: u64,
    pub(crate) foreign: &'a HashMap<Box<[u8]>, Vec<FinRef>>,
}

fn shadow_in<'a>(
    imgs: impl Iterator<Item = (u64, &'a Image)>,
) -> impl Fn(&str) -> Option<u64> + 'a {
    // Newest first: the nearest older image holding a start of the id.
    let list: Vec<(u64, &'a Image)> = imgs.collect();
    move |id: &str| {
        let h = RunHash::of(id.as_bytes());
        list.iter()
            .rev()
            .find(|(_, img)| img.find_run_hashed(id.as_bytes(), h).is_some())
            .map(|(seq, _)| *seq)
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
            foreign: HashMap::new(),
            foreign_dirty: false,
            skip_stored_active: false,
            progress: false,
            persist: true,
            stats: EngineStats::default(),
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
        let segs = self.reader.segments();
        self.first_seq = segs.first().map_or(u64::MAX, |s| s.seq);
        let before = self.sealed.len();
        self.sealed
            .retain(|seq, _| segs.iter().any(|s| s.seq == *seq && s.sealed));
        if self.sealed.len() != before {
            self.foreign_dirty = true;
        }
        for s in segs.iter().filter(|s| s.sealed && s.count > 0) {
            if let Some(have) = self.sealed.get(&s.seq) {
                if have.meta == *s {
                    continue;
                }
            }
            if self.active.as_ref().is_some_and(|a| a.meta.seq == s.seq) {
                self.active = None;
                self.foreign_dirty = true;
            }
            self.load_sealed(s, false)?;
        }
        match segs.last().filter(|s| !s.sealed) {
            None => {
                if self.active.take().is_some() {
                    self.foreign_dirty = true;
                }
            }
            Some(s) => self.catch_up(s)?,
        }
        if self.foreign_dirty {
            self.rebuild_foreign();
        }
        Ok(())
    }

    fn load_sealed(&mut self, meta: &SegmentMeta, force: bool) -> Result<()> {
        let seg = map_file(&meta.path)?.ok_or_else(|| Error::Corrupt {
            segment: meta.name.clone(),
            offset: 0,
            reason: "segment file is empty".into(),
        })?;
        let stored = if force {
            Err(Unusable::Invalid("forced".into()))
        } else {
            index::load_sealed(meta)
        };
        let img = match stored {
            Ok(img) => {
                self.stats.loaded += 1;
                img
            }
            Err(why) => {
                if let Unusable::Invalid(reason) = &why {
                    tracing::warn!(segment = %meta.name, %reason, "rebuilding index");
                }
                let bytes = loop {
                    let shadow =
                        shadow_in(self.sealed.range(..meta.seq).map(|(seq, s)| (*seq, &s.img)));
                    let bytes = index::build_image(
                        meta,
                        &seg,
                        KIND_SEALED,
                        HEADER_SIZE as u64,
                        meta.first_lsn,
                        meta.data_len,
                        &shadow,
                        self.progress,
                    )?;
                    drop(shadow);
                    // The shadow lookups read older images: if one turned
                    // out corrupt, rebuild it and build this one again.
                    let bad: Vec<u64> = self
                        .sealed
                        .range(..meta.seq)
                        .filter(|(_, s)| s.img.poisoned())
                        .map(|(seq, _)| *seq)
                        .collect();
                    if bad.is_empty() {
                        break bytes;
                    }
                    for seq in bad {
                        if let Some(old) = self.sealed.remove(&seq) {
                            self.foreign_dirty = true;
                            self.load_sealed(&old.meta, true)?;
                        }
                    }
                };
                self.stats.rebuilt += 1;
                if self.persist {
                    match index::store_file(&index::index_path(meta), &bytes) {
                        Ok(()) => self.stats.written += 1,
                        Err(e) => {
                            tracing::warn!(segment = %meta.name, error = %e, "index kept in memory only")
                        }
                    }
                }
                Image::open(Backing::Vec(bytes)).map_err(|r| Error::Corrupt {
                    segment: meta.name.clone(),
                    offset: 0,
                    reason: format!("freshly built index does not read back: {r}"),
                })?
            }
        };
        let _ = std::fs::remove_file(index::active_index_path(meta));
        self.add_foreign(meta.seq, &img);
        self.sealed.insert(
            meta.seq,
            Sealed {
                meta: meta.clone(),
                img,
                seg,
            },
        );
        Ok(())
    }

    fn catch_up(&mut self, meta: &SegmentMeta) -> Result<()> {
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
                active.stored_end = img.header.end_off;
                active.chunks.push(Chunk { img });
                self.foreign_dirty = true;
                if meta.data_len <= active.off {
                    return Ok(());
                }
            }
        }
        let mut chunks = std::mem::take(&mut active.chunks);
        let (from, lsn) = (active.off, active.lsn);
        let img = Self::chunk_image(&self.sealed, &chunks, meta, seg, from, lsn, meta.data_len)?;
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
            img = Self::chunk_image(
                &self.sealed,
                &chunks,
                meta,
                seg,
                prev.header.start_off,
                prev.header.first_lsn,
                meta.data_len,
            )?;
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
        }
        if written {
            self.stats.written += 1;
        }
        Ok(())
    }

    fn chunk_image(
        sealed: &BTreeMap<u64, Sealed>,
        chunks: &[Chunk],
        meta: &SegmentMeta,
        seg: &[u8],
        from: u64,
        lsn: u64,
        to: u64,
    ) -> Result<Image> {
        let shadow = shadow_in(
            sealed
                .range(..meta.seq)
                .map(|(seq, s)| (*seq, &s.img))
                .chain(chunks.iter().map(|c| (meta.seq, &c.img))),
        );
        let bytes = index::build_image(meta, seg, KIND_CHUNK, from, lsn, to, &shadow, false)?;
        Image::open(Backing::Vec(bytes)).map_err(|r| Error::Corrupt {
            segment: meta.name.clone(),
            offset: from,
            reason: format!("in-memory index does not read back: {r}"),
        })
    }

    fn add_foreign_to(map: &mut HashMap<Box<[u8]>, Vec<FinRef>>, seq: u64, img: &Image) {
        for i in 0..img.n_fins() {
            let f = img.fin(i);
            let v = map.entry(f.id.into()).or_default();
            v.push(FinRef {
                seq,
                lsn: f.lsn,
                off: f.off,
                ts: f.ts,
                status: f.status.into(),
            });
            v.sort_by_key(|f| f.lsn);
        }
    }

    fn add_foreign(&mut self, seq: u64, img: &Image) {
        if !self.foreign_dirty {
            Self::add_foreign_to(&mut self.foreign, seq, img);
        }
    }

    fn rebuild_foreign(&mut self) {
        let mut map = HashMap::new();
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
                img: &s.img,
                seg: &s.seg[..],
            })
            .collect();
        if let Some(a) = &self.active {
            let seg: &[u8] = a.seg.as_deref().unwrap_or(&[]);
            for c in &a.chunks {
                srcs.push(Src {
                    seq: a.meta.seq,
                    img: &c.img,
                    seg,
                });
            }
        }
        View {
            srcs,
            first_seq: self.first_seq,
            foreign: &self.foreign,
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
