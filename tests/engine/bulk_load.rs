//! A bulk load's index builds hand each indexed segment's pages back to
//! the kernel (`Engine::page_out_indexed_segments`, what `auditlog ingest`
//! asks for): the segment files leave the page cache, their images are
//! stored, and every query still answers from the files.

use std::fs::File;
use std::path::Path;

use auditlog::query::{Engine, Filter};
use auditlog::{Log, LogReader, SegmentMeta};

use crate::support::{config, ev, finished, scratch, DAY0, DAY_US};

const RUNS_PER_DAY: u64 = 400;
const DAYS: u64 = 3;

/// `DAYS` days of finished runs: the segments roll daily, so all but the
/// last are sealed (and synced, so their pages are clean).
fn write_days(dir: &Path) {
    let log = Log::open(config(dir)).unwrap();
    for day in 0..DAYS {
        let t0 = DAY0 + day as i64 * DAY_US;
        let mut evs = Vec::new();
        for i in 0..RUNS_PER_DAY {
            let n = day * RUNS_PER_DAY + i;
            let start = ev(n, t0 + i as i64);
            let fin = finished(&start.run_id, t0 + i as i64 + 1, &"x".repeat(200));
            evs.push(start);
            evs.push(fin);
        }
        log.append_batch(&evs).unwrap().wait().unwrap();
    }
    log.close().unwrap();
}

/// (pages of `path` in the page cache, pages in all).
fn resident_pages(path: &Path) -> (usize, usize) {
    let file = File::open(path).unwrap();
    // SAFETY: a read-only map of a sealed segment, which nothing writes
    // while this test runs; only its page-cache residency is asked.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    // SAFETY: sysconf reads no memory of ours.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
    let pages = map.len().div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is mapped for `map.len()` bytes while it lives, and
    // `vec` has one byte per page of that range, as mincore writes.
    let r = unsafe {
        libc::mincore(
            map.as_ptr().cast_mut().cast::<libc::c_void>(),
            map.len(),
            vec.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    (vec.iter().filter(|b| **b & 1 == 1).count(), pages)
}

/// Whether this kernel takes the advice (5.4 and later); a test on an
/// older one has nothing to check.
fn page_out_supported(path: &Path) -> bool {
    let map = auditlog::internals::layout::map_file(path)
        .unwrap()
        .unwrap();
    auditlog::internals::layout::page_out(&map, path).is_ok()
}

/// Read `m` whole, so that every page of it is cached (and mapped by no
/// one).
fn cache_whole(m: &SegmentMeta) {
    std::fs::read(&m.path).unwrap();
    let (cached, all) = resident_pages(&m.path);
    assert_eq!(cached, all, "{} read whole is cached", m.name);
}

/// Every page of each of `sealed` left the page cache; a stray page (one
/// the kernel had not yet put on its lists) may stay.
fn assert_paged_out(sealed: &[SegmentMeta]) {
    for m in sealed {
        let (cached, all) = resident_pages(&m.path);
        assert!(
            cached * 10 <= all,
            "{}: {cached} of {all} pages still cached",
            m.name
        );
    }
}

/// With every one of `sealed` cached whole, an engine over `dir` that
/// pages out what it indexes, refreshed; `None` on a kernel that refuses
/// the advice (nothing to check there).
fn refresh_paging_out(dir: &Path, sealed: &[SegmentMeta]) -> Option<Engine> {
    if !page_out_supported(&sealed[0].path) {
        eprintln!("MADV_PAGEOUT refused by this kernel: nothing to check");
        return None;
    }
    sealed.iter().for_each(cache_whole);
    let mut engine = Engine::open(dir).unwrap();
    engine.page_out_indexed_segments();
    engine.refresh().unwrap();
    Some(engine)
}

/// Every sealed segment of the log at `dir`.
fn sealed_segments(dir: &Path) -> Vec<SegmentMeta> {
    LogReader::open(dir)
        .unwrap()
        .segments()
        .into_iter()
        .filter(|m| m.sealed)
        .collect()
}

#[test]
fn indexed_segments_leave_the_page_cache_and_still_answer() {
    let (_t, dir) = scratch();
    write_days(&dir);
    let sealed = sealed_segments(&dir);
    assert_eq!(sealed.len(), DAYS as usize - 1, "one sealed segment a day");
    let Some(engine) = refresh_paging_out(&dir, &sealed) else {
        return;
    };

    for m in &sealed {
        assert!(
            m.path.with_extension("idx").exists(),
            "{}: image stored",
            m.name
        );
    }
    assert_paged_out(&sealed);
    // The queries read the segments from their files again.
    let total = engine.view().count(&Filter::default()).unwrap();
    assert_eq!(total, DAYS * RUNS_PER_DAY);
    let run = engine.view().get_run("ev-5").unwrap().expect("run ev-5");
    assert_eq!(run.output, "x".repeat(200));
}

#[test]
fn without_the_call_indexed_segments_stay_cached() {
    let (_t, dir) = scratch();
    write_days(&dir);
    let first = &sealed_segments(&dir)[0];
    cache_whole(first);
    let mut engine = Engine::open(&dir).unwrap();
    engine.refresh().unwrap();
    let (cached, all) = resident_pages(&first.path);
    assert_eq!(
        cached, all,
        "{}: an engine's own builds keep it",
        first.name
    );
}

#[test]
fn segments_cached_but_not_mapped_leave_too_when_their_images_are_loaded() {
    let (_t, dir) = scratch();
    write_days(&dir);
    // A first engine stores every image, paging nothing out.
    Engine::open(&dir).unwrap().refresh().unwrap();
    let sealed = sealed_segments(&dir);
    // A second one loads the stored images: its maps of the segments
    // touch nothing, yet their cached pages go.
    let Some(engine) = refresh_paging_out(&dir, &sealed) else {
        return;
    };
    assert_paged_out(&sealed);
    assert_eq!(
        engine.view().count(&Filter::default()).unwrap(),
        DAYS * RUNS_PER_DAY
    );
}

#[test]
fn a_page_out_of_a_file_gone_fails_and_leaves_its_map_readable() {
    let (_t, dir) = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gone.seg");
    let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let map = auditlog::internals::layout::map_file(&path)
        .unwrap()
        .unwrap();
    assert_eq!(&map[..], &bytes[..]);
    std::fs::remove_file(&path).unwrap();
    // The advice over the map is taken; the file cannot be opened for
    // the second step: an error naming why, and nothing else changes.
    let e = auditlog::internals::layout::page_out(&map, &path).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert_eq!(&map[..], &bytes[..], "the map reads the same bytes");
}
