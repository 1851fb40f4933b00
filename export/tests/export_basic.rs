//! Export and verify-export on whole logs: every row once, reruns change
//! nothing, runs rows follow finishes that come in later segments.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use auditlog::QueryEngine as Engine;
use auditlog::{Filter, Page};
use auditlog_export::{export, pq, verify_export, ExportOptions, VerifyOptions};

use crate::support::{append, local, parquet_files, workload, DAY, T0};

fn file_hashes(root: &std::path::Path) -> BTreeMap<String, String> {
    parquet_files(root)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(root.join(&f)).unwrap();
            (f, blake3::hash(&b).to_hex().to_string())
        })
        .collect()
}

#[test]
fn exports_every_sealed_segment_and_proves_it_with_and_without_the_log() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    let events = workload(1, 3, 40, "a");
    append(&dir, &events, true);
    let dest = local(&out);
    let r = export(&dir, &dest, &ExportOptions::default()).unwrap();
    assert_eq!(r.segments, vec![1, 2, 3]);
    assert_eq!(r.events, events.len() as u64);
    assert_eq!(r.through_seq, Some(3));
    assert!(r.parquet_bytes > 0 && r.files as usize == parquet_files(&out).len());

    let with_log = VerifyOptions {
        log_dir: Some(dir.clone()),
        ..VerifyOptions::default()
    };
    let v = verify_export(&dest, &with_log).unwrap();
    assert_eq!(v.logs.len(), 1);
    let c = &v.logs[0];
    assert_eq!(
        (c.segments, c.events, c.against_log, c.runs_refolded),
        (3, events.len() as u64, 3, 3)
    );
    assert_eq!(c.runs, r.runs);
    assert_eq!(c.tool_calls, r.tool_calls);
    let head = auditlog::verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(
        c.head_digest.as_deref(),
        Some(head.head_digest.to_hex().as_str())
    );

    let v = verify_export(&dest, &VerifyOptions::default()).unwrap();
    assert_eq!(v.logs[0].against_log, 0);
    assert_eq!(v.logs[0].events, events.len() as u64);
}

#[test]
fn a_rerun_writes_nothing_and_changes_no_byte() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    append(&dir, &workload(2, 2, 30, "b"), true);
    let dest = local(&out);
    export(&dir, &dest, &ExportOptions::default()).unwrap();
    let before = file_hashes(&out);
    let r = export(&dir, &dest, &ExportOptions::default()).unwrap();
    assert!(r.segments.is_empty() && r.files == 0, "{r:?}");
    assert_eq!(file_hashes(&out), before);
}

#[test]
fn files_uploaded_in_parts_are_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    append(&dir, &workload(3, 2, 60, "m"), true);
    let whole = t.path().join("whole");
    export(&dir, &local(&whole), &ExportOptions::default()).unwrap();
    // Parts of 1 KiB: every file of 4 KiB or more goes up as a multipart
    // upload (object_store stages the parts in a local file, then renames).
    let parts = t.path().join("parts");
    let mut dest = local(&parts);
    dest.set_part_bytes(1024).unwrap();
    export(&dir, &dest, &ExportOptions::default()).unwrap();
    let hashes = file_hashes(&parts);
    let big = hashes
        .keys()
        .filter(|f| std::fs::metadata(parts.join(f)).unwrap().len() >= 4096)
        .count();
    assert!(big >= 2, "only {big} files took the multipart path");
    assert_eq!(hashes, file_hashes(&whole));
    assert!(
        verify_export(&dest, &VerifyOptions::default())
            .unwrap()
            .logs[0]
            .segments
            > 0
    );
    // Part sizes outside what object stores take are refused, by name.
    for bad in [0, 1023, (5usize << 30) + 1] {
        let e = dest.set_part_bytes(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad} bytes")), "{e}");
    }
}

/// (id, status) of every run in the export's runs files.
fn exported_runs(out: &std::path::Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for f in parquet_files(out)
        .iter()
        .filter(|f| f.starts_with("table=runs/"))
    {
        let file = pq::read(f, std::fs::read(out.join(f)).unwrap()).unwrap();
        for b in &file.batches {
            let ids = b.column_by_name("id").unwrap().as_string::<i32>();
            let st = b.column_by_name("status").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                let dup = m.insert(ids.value(i).to_string(), st.value(i).to_string());
                assert!(dup.is_none(), "run {} exported twice", ids.value(i));
            }
        }
    }
    m
}

#[test]
fn runs_rows_are_rewritten_when_their_finish_comes_in_a_later_segment() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    let events = workload(3, 3, 30, "c");
    let (first, rest): (Vec<_>, Vec<_>) = events.iter().cloned().partition(|e| e.ts < T0 + 2 * DAY);
    // Days 0 and 1 stored, day 1 still the open segment: only day 0 goes.
    append(&dir, &first, false);
    let dest = local(&out);
    let r = export(&dir, &dest, &ExportOptions::default()).unwrap();
    assert_eq!(r.segments, vec![1]);
    let early = exported_runs(&out);
    let running_then = early.values().filter(|s| *s == "running").count();

    append(&dir, &rest, true);
    let r = export(&dir, &dest, &ExportOptions::default()).unwrap();
    assert_eq!(r.segments, vec![2, 3]);
    assert_eq!(
        r.runs_rewritten,
        vec![1],
        "day 0's runs that finished on day 1"
    );
    let all = exported_runs(&out);
    let still = all
        .iter()
        .filter(|(id, s)| early.contains_key(*id) && *s == "running")
        .count();
    assert!(
        still < running_then,
        "{still} of {running_then} still running"
    );

    // The export's runs are the engine's run view, run for run.
    let mut engine = Engine::open(&dir).unwrap();
    let f = Filter {
        include_dry_run: true,
        ..Filter::default()
    };
    let view: BTreeMap<String, String> = engine
        .list(&f, Page::all())
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect();
    assert_eq!(all, view);
    let with_log = VerifyOptions {
        log_dir: Some(dir.clone()),
        ..VerifyOptions::default()
    };
    verify_export(&dest, &with_log).unwrap();
}

#[test]
fn two_logs_share_one_destination() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let dest = local(&out);
    for (k, tag) in ["h1", "h2"].iter().enumerate() {
        let dir = t.path().join(tag);
        append(&dir, &workload(10 + k as u64, 2, 20, tag), true);
        let opts = ExportOptions {
            host: Some(tag.to_string()),
            ..ExportOptions::default()
        };
        export(&dir, &dest, &opts).unwrap();
    }
    let v = verify_export(&dest, &VerifyOptions::default()).unwrap();
    let mut hosts: Vec<&str> = v.logs.iter().map(|l| l.host.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, vec!["h1", "h2"]);
}

#[test]
fn a_destination_that_is_not_a_folder_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let e = auditlog_export::Destination::open(&auditlog_export::DestinationSpec::Local(file))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a folder") || e.contains("folder"), "{e}");
    let e = auditlog_export::DestinationSpec::parse("ftp://x/y", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown scheme"), "{e}");
    let e = auditlog_export::DestinationSpec::parse("s3:///p", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bucket"), "{e}");
}

/// A log that signs Merkle-tree checkpoints (docs/proofs.md) holds
/// `checkpoint` system events and a retention record with the tree's
/// frontier: both are exported and rebuilt byte for byte, so the chain
/// still proves the files, with and without the log.
#[test]
fn a_signed_log_with_checkpoints_and_a_retention_exports_and_proves() {
    let t = tempfile::tempdir().unwrap();
    let (dir, out, keys) = (
        t.path().join("log"),
        t.path().join("out"),
        t.path().join("keys"),
    );
    std::fs::create_dir(&keys).unwrap();
    let mut cfg = auditlog::Config::new(&dir);
    cfg.checkpoints = Some(auditlog::tree::CheckpointConfig {
        key: auditlog::tlog::SignerKey::generate("auditlog.test/export").unwrap(),
        interval: std::time::Duration::from_secs(3600),
        state: Some(keys.join("key.state")),
    });
    let events = workload(3, 3, 30, "s");
    let log = auditlog::Log::open(cfg).unwrap();
    for chunk in events.chunks(50) {
        log.append_batch(chunk).unwrap().wait().unwrap();
    }
    log.seal().unwrap();
    let dropped = log.retain(T0 + DAY).unwrap();
    assert_eq!(dropped.dropped.len(), 1, "{dropped:?}");
    // Seal the segment holding the retention record, so it is exported.
    log.seal().unwrap();
    log.close().unwrap();

    let stored = auditlog::LogReader::open(&dir).unwrap();
    let checkpoints = stored.checkpoints().unwrap().len();
    assert!(checkpoints >= 2, "{checkpoints} checkpoints");

    let dest = local(&out);
    let r = export(&dir, &dest, &ExportOptions::default()).unwrap();
    assert!(!r.segments.is_empty(), "{r:?}");
    for opts in [
        VerifyOptions {
            log_dir: Some(dir.clone()),
            ..VerifyOptions::default()
        },
        VerifyOptions::default(),
    ] {
        let v = verify_export(&dest, &opts).unwrap();
        assert_eq!(v.logs[0].events, r.events);
    }
}

/// Segments encoded on several threads give the same destination, byte for
/// byte, as one thread: uploads and the manifest go in segment order.
#[test]
fn threads_do_not_change_a_byte() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    append(&dir, &workload(21, 5, 30, "par"), true);
    let mut held = Vec::new();
    for threads in [1, 3] {
        let out = t.path().join(format!("out{threads}"));
        let opts = ExportOptions {
            host: Some("h".into()),
            threads: Some(threads),
            ..ExportOptions::default()
        };
        let r = export(&dir, &local(&out), &opts).unwrap();
        assert!(r.segments.len() >= 5, "{:?}", r.segments);
        let files: Vec<(String, Vec<u8>)> = parquet_files(&out)
            .into_iter()
            .map(|f| {
                let bytes = std::fs::read(out.join(&f)).unwrap();
                (f, bytes)
            })
            .collect();
        held.push(files);
    }
    assert!(!held[0].is_empty());
    assert_eq!(held[0], held[1]);
}

/// A destination begun by a build of export layout 1 (`tool_calls`
/// repeating each call's whole payload) goes on in layout 1, and both
/// layouts verify; a layout this build does not know fails naming it.
#[test]
fn a_layout_one_destination_goes_on_in_layout_one_and_verifies() {
    use auditlog_export::manifest::{self, ExportManifest};
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    append(&dir, &workload(9, 3, 30, "v"), true);
    let log_id = auditlog::LogReader::open(&dir)
        .unwrap()
        .manifest()
        .unwrap()
        .log_id;
    let key = manifest::key(&log_id);
    let mut man = ExportManifest::new(&log_id, "old-host");
    man.version = 1;
    std::fs::create_dir_all(out.join(&key).parent().unwrap()).unwrap();
    std::fs::write(out.join(&key), man.to_bytes().unwrap()).unwrap();
    let dest = local(&out);
    let opts = ExportOptions {
        max_segments: Some(2),
        ..ExportOptions::default()
    };
    export(&dir, &dest, &opts).unwrap();
    export(&dir, &dest, &ExportOptions::default()).unwrap();
    let stored =
        ExportManifest::parse(&key, &std::fs::read(out.join(&key)).unwrap(), None).unwrap();
    assert_eq!((stored.version, stored.segments.len()), (1, 3));
    let mut calls = 0;
    for f in parquet_files(&out) {
        let file = pq::read(&f, std::fs::read(out.join(&f)).unwrap()).unwrap();
        assert_eq!(
            file.meta.get(pq::keys::FORMAT).map(String::as_str),
            Some("1")
        );
        if f.starts_with("table=tool_calls/") {
            let s = file.schema;
            assert!(s.index_of("payload").is_ok() && s.index_of("extra").is_err());
            calls += 1;
        }
    }
    assert!(calls > 0);
    for log_dir in [None, Some(dir.clone())] {
        let v = verify_export(
            &dest,
            &VerifyOptions {
                log_dir,
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert_eq!(v.logs[0].segments, 3);
    }

    // A layout from a newer build: refused, naming its version.
    let mut man = stored;
    man.version = manifest::VERSION + 1;
    std::fs::write(out.join(&key), man.to_bytes().unwrap()).unwrap();
    for e in [
        export(&dir, &dest, &ExportOptions::default()).unwrap_err(),
        verify_export(&dest, &VerifyOptions::default()).unwrap_err(),
    ] {
        let m = e.to_string();
        let v = format!("version {}", manifest::VERSION + 1);
        assert!(m.contains(&v) && m.contains("newer"), "{m}");
    }
}

/// A new export writes the current layout: `tool_calls.extra` (null when
/// every payload member is typed), no second copy of the payload.
#[test]
fn a_new_destination_gets_the_current_layout() {
    use arrow_array::Array;
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    append(&dir, &workload(3, 1, 30, "n"), true);
    export(&dir, &local(&out), &ExportOptions::default()).unwrap();
    let version = auditlog_export::manifest::VERSION.to_string();
    let mut calls = 0;
    for f in parquet_files(&out) {
        let file = pq::read(&f, std::fs::read(out.join(&f)).unwrap()).unwrap();
        assert_eq!(file.meta.get(pq::keys::FORMAT), Some(&version));
        if f.starts_with("table=tool_calls/") {
            assert!(file.schema.index_of("payload").is_err());
            for b in &file.batches {
                let extra = b.column_by_name("extra").unwrap();
                assert_eq!(
                    extra.null_count(),
                    b.num_rows(),
                    "the workload's payloads are all typed"
                );
                calls += b.num_rows();
            }
        }
    }
    assert!(calls > 0);
}
