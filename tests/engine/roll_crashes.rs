//! What a crash during a segment roll can leave, now that a roll leaves
//! the new segment's header fdatasync and the folder's fsync to the first
//! sync of its events (docs/format.md, "Recovery"; docs/benchmarks.md,
//! pace42 round): the new file missing (its name never reached the disk),
//! empty, with part of its header, or with its header and blocks whose
//! receipts never completed. The sealed segment before it is listed in the
//! MANIFEST before the new file is created, as before. Each state reopens
//! for writing, verifies, keeps every acknowledged event, and takes new
//! ones.

use crate::support;

use std::fs::{self, OpenOptions};

use auditlog::internals::layout::list_segment_files;
use auditlog::internals::segment::HEADER_SIZE;
use auditlog::{verify, Log};
use support::*;

/// A log whose first day's segment is sealed and listed, and whose
/// second day's segment (the one a roll made) holds `ev-2`; its path.
fn rolled_log(dir: &std::path::Path) -> std::path::PathBuf {
    let log = Log::open(config(dir)).expect("log opens");
    for (n, ts) in [(1, DAY0 + 1), (2, DAY0 + DAY_US)] {
        log.append(&ev(n, ts)).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let files = list_segment_files(dir).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    dir.join(&files[1].2)
}

/// Reopen for writing, append `ev-3` on the second day, close; the ids
/// of the events stored, once the folder verified (a torn tail's cut is
/// recorded as a system event, which has none: left out).
fn reopen_append_verify(dir: &std::path::Path) -> Vec<String> {
    let log = Log::open(config(dir)).expect("reopens after the crash");
    log.append(&ev(3, DAY0 + DAY_US + 1))
        .unwrap()
        .wait()
        .expect("takes new events");
    log.close().unwrap();
    verify(dir, None, |_, _| {}).expect("verifies after the crash");
    let mut ids = run_ids(dir);
    ids.retain(|id| !id.is_empty());
    ids
}

#[test]
fn the_rolled_to_segment_missing_reopens_with_the_sealed_one() {
    let (_t, dir) = scratch();
    let newest = rolled_log(&dir);
    // Its name never reached the disk (the folder not yet fsynced).
    fs::remove_file(&newest).unwrap();
    assert_eq!(reopen_append_verify(&dir), ["ev-1", "ev-3"]);
}

#[test]
fn the_rolled_to_segment_empty_or_with_part_of_its_header_reopens() {
    for keep in [0u64, 30, HEADER_SIZE as u64] {
        let (_t, dir) = scratch();
        let newest = rolled_log(&dir);
        // Created, its header (and block) not yet on disk, or part of it.
        OpenOptions::new()
            .write(true)
            .open(&newest)
            .unwrap()
            .set_len(keep)
            .unwrap();
        assert_eq!(
            reopen_append_verify(&dir),
            ["ev-1", "ev-3"],
            "kept {keep} bytes"
        );
    }
}

#[test]
fn the_rolled_to_segment_with_its_unsynced_block_cut_short_reopens() {
    let (_t, dir) = scratch();
    let newest = rolled_log(&dir);
    // Its header and part of the block whose sync never ran (the receipt
    // of ev-2 never completed: its LSN may be skipped, never reused).
    let len = fs::metadata(&newest).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let ids = reopen_append_verify(&dir);
    assert_eq!(ids, ["ev-1", "ev-3"]);
}

#[test]
fn the_rolled_to_segment_whole_keeps_its_events() {
    let (_t, dir) = scratch();
    rolled_log(&dir);
    // The writer killed after the block's write, before its sync: the
    // page cache still holds every byte.
    assert_eq!(reopen_append_verify(&dir), ["ev-1", "ev-2", "ev-3"]);
}

/// A power loss before the rolled-to segment's first sync may keep later
/// pages of the file and lose its first (docs/reliability.md, "Known
/// limits"): the header's page reads as zeros, blocks after it. Open
/// refuses the folder naming the file; `auditlog repair` moves the file
/// into quarantine/ byte for byte (nothing deleted), and the log then
/// reopens, verifies and takes new events. In a real power loss no
/// receipt of such a file's events completed (its first sync comes
/// before them); here they were waited for only to build the fixture.
#[test]
fn the_rolled_to_segment_with_its_header_page_lost_is_refused_then_repaired() {
    const PAGE: usize = 4096;
    let (_t, dir) = scratch();
    let log = Log::open(config(&dir)).expect("log opens");
    log.append(&ev(1, DAY0 + 1)).unwrap().wait().unwrap();
    for n in 100..300 {
        log.append(&ev(n, DAY0 + DAY_US + n as i64))
            .unwrap()
            .wait()
            .unwrap();
    }
    log.close().unwrap();
    let files = list_segment_files(&dir).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let newest = dir.join(&files[1].2);
    let mut bytes = fs::read(&newest).unwrap();
    assert!(bytes.len() > 2 * PAGE, "pages of blocks after the first");
    bytes[..PAGE].fill(0);
    fs::write(&newest, &bytes).unwrap();
    let name = files[1].2.clone();

    match Log::open(config(&dir)) {
        Err(e) => assert!(e.to_string().contains(&name), "names {name}: {e}"),
        Ok(_) => panic!("a segment without its header was opened"),
    }
    match auditlog::repair(&dir).expect("repair runs") {
        auditlog::RepairReport::Repaired(c) => {
            assert_eq!(fs::read(dir.join(&c.quarantine)).unwrap(), bytes);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reopen_append_verify(&dir), ["ev-1", "ev-3"]);
}
