//! An export that stops at any write (a crash, a failed upload), then runs
//! again, leaves every row in the destination exactly once.

use std::collections::BTreeSet;

use auditlog_export::manifest::{self, ExportManifest};
use auditlog_export::{export, verify_export, ExportOptions, VerifyOptions};

use crate::support::{append, local, parquet_files, workload, DAY, T0};

fn manifest_files(out: &std::path::Path, dir: &std::path::Path) -> BTreeSet<String> {
    let id = auditlog::LogReader::open(dir)
        .unwrap()
        .manifest()
        .unwrap()
        .log_id;
    let key = manifest::key(&id);
    let m = ExportManifest::parse(&key, &std::fs::read(out.join(&key)).unwrap(), None).unwrap();
    m.segments
        .iter()
        .flat_map(|s| s.files.iter().map(|f| f.path.clone()))
        .collect()
}

#[test]
fn a_failure_at_every_write_then_a_rerun_holds_each_row_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let events = workload(5, 3, 25, "e");
    let (first, rest): (Vec<_>, Vec<_>) = events.iter().cloned().partition(|e| e.ts < T0 + DAY);
    append(&dir, &first, true);
    append(&dir, &rest, true);
    let mut k = 0;
    loop {
        let out = t.path().join(format!("out{k}"));
        // A first export of one segment, so the failures also hit the
        // rewrite of its runs and an existing manifest.
        export(
            &dir,
            &local(&out),
            &ExportOptions {
                max_segments: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        let dest = local(&out);
        dest.fail_puts_after(k);
        let failed = export(&dir, &dest, &ExportOptions::default()).is_err();
        let r = export(&dir, &local(&out), &ExportOptions::default()).unwrap();
        let v = verify_export(
            &local(&out),
            &VerifyOptions {
                log_dir: Some(dir.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            v.logs[0].events,
            events.len() as u64,
            "after a failure at write {k}"
        );
        assert_eq!(v.logs[0].segments, 3);
        let on_disk: BTreeSet<String> = parquet_files(&out).into_iter().collect();
        assert_eq!(
            on_disk,
            manifest_files(&out, &dir),
            "stray files after a failure at write {k}"
        );
        if !failed {
            assert!(r.segments.is_empty(), "a whole export needed {k} writes");
            break;
        }
        k += 1;
        assert!(
            k < 100,
            "an export of 3 segments should not take 100 writes"
        );
    }
    assert!(
        k > 6,
        "only {k} writes: the test did not fail enough of them"
    );
}
