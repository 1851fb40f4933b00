//! Retention "exported first", and segments that left the log before
//! they were exported.

use auditlog::exported;
use auditlog::{Config, Log, RetainOptions};
use auditlog_export::{export, verify_export, ExportOptions, VerifyOptions};

use crate::support::{append, local, workload};

fn retain(dir: &std::path::Path, exported_first: bool) -> (Vec<String>, Vec<String>) {
    let log = Log::open(Config::new(dir)).unwrap();
    let r = log
        .retain_with(
            i64::MAX / 2,
            RetainOptions {
                exported_first,
                ..RetainOptions::default()
            },
        )
        .unwrap();
    log.close().unwrap();
    (
        r.dropped.iter().map(|d| d.name.clone()).collect(),
        r.held_for_export,
    )
}

#[test]
fn exported_first_drops_only_what_every_destination_holds() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out, out2) = (
        t.path().join("log"),
        t.path().join("out"),
        t.path().join("out2"),
    );
    append(&dir, &workload(6, 3, 20, "f"), true);
    let (dropped, held) = retain(&dir, true);
    assert!(
        dropped.is_empty() && held.len() == 3,
        "no destination yet: {dropped:?} {held:?}"
    );

    export(
        &dir,
        &local(&out),
        &ExportOptions {
            max_segments: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    export(
        &dir,
        &local(&out2),
        &ExportOptions {
            max_segments: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(exported::exported_through(&dir).unwrap(), Some(1));
    let (dropped, held) = retain(&dir, true);
    assert_eq!((dropped.len(), held.len()), (1, 2), "{dropped:?} {held:?}");

    // Forgetting the lagging destination lets the other one decide.
    let lock = exported::try_lock(&dir).unwrap().unwrap();
    assert!(exported::forget(&lock, local(&out2).url()).unwrap());
    drop(lock);
    let (dropped, held) = retain(&dir, true);
    assert_eq!((dropped.len(), held.len()), (1, 1), "{dropped:?} {held:?}");

    export(&dir, &local(&out), &ExportOptions::default()).unwrap();
    let (dropped, held) = retain(&dir, true);
    assert_eq!((dropped.len(), held.len()), (1, 0));
    // The export outlives the log's segments.
    let v = verify_export(&local(&out), &VerifyOptions::default()).unwrap();
    assert_eq!(v.logs[0].segments, 3);
}

#[test]
fn a_segment_dropped_before_its_export_is_recorded_as_a_gap() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    append(&dir, &workload(7, 3, 20, "g"), true);
    export(
        &dir,
        &local(&out),
        &ExportOptions {
            max_segments: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let log = Log::open(Config::new(&dir)).unwrap();
    // Drops segments 1 and 2 (3 is the newest; keep it by its time).
    let cutoff = auditlog::LogReader::open(&dir).unwrap().segments()[2]
        .min_ts
        .unwrap();
    let r = log.retain(cutoff).unwrap();
    log.close().unwrap();
    assert_eq!(r.dropped.len(), 2);
    let r = export(&dir, &local(&out), &ExportOptions::default()).unwrap();
    assert_eq!(r.segments, vec![3]);
    assert_eq!((r.new_gaps[0].from_seq, r.new_gaps[0].to_seq), (2, 2));
    let v = verify_export(
        &local(&out),
        &VerifyOptions {
            log_dir: Some(dir.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((v.logs[0].segments, v.logs[0].gaps.len()), (2, 1));
}

#[test]
fn the_marker_is_checked_and_never_moves_back() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    append(&dir, &workload(8, 1, 5, "h"), true);
    let lock = exported::try_lock(&dir).unwrap().unwrap();
    assert!(
        exported::try_lock(&dir).unwrap().is_none(),
        "a second export must wait"
    );
    exported::record(&lock, "file:///a", 5).unwrap();
    exported::record(&lock, "file:///a", 3).unwrap();
    assert_eq!(exported::exported_through(&dir).unwrap(), Some(5));
    drop(lock);
    let p = dir.join(exported::EXPORTED_FILE);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"through_seq\":5", "\"through_seq\":9");
    std::fs::write(&p, text).unwrap();
    let e = exported::exported_through(&dir).unwrap_err().to_string();
    assert!(e.contains("CRC mismatch"), "{e}");
    // A damaged marker stops retention "exported first" rather than guessing.
    let log = Log::open(Config::new(&dir)).unwrap();
    assert!(log
        .retain_with(
            i64::MAX / 2,
            RetainOptions {
                exported_first: true,
                ..RetainOptions::default()
            }
        )
        .is_err());
    log.close().unwrap();
}
