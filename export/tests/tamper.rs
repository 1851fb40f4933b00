//! verify-export against an export that was changed after it was written.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use auditlog_export::manifest::{self, ExportManifest};
use auditlog_export::{export, pq, verify_export, ExportError, ExportOptions, VerifyOptions};

use crate::support::{append, local, workload};

struct Setup {
    _t: tempfile::TempDir,
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    man: ExportManifest,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let (dir, out) = (t.path().join("log"), t.path().join("out"));
    append(&dir, &workload(4, 3, 30, "d"), true);
    export(&dir, &local(&out), &ExportOptions::default()).unwrap();
    let key = manifest::key(
        &auditlog::LogReader::open(&dir)
            .unwrap()
            .manifest()
            .unwrap()
            .log_id,
    );
    let man = ExportManifest::parse(&key, &std::fs::read(out.join(&key)).unwrap(), None).unwrap();
    Setup {
        _t: t,
        dir,
        out,
        man,
    }
}

fn store_manifest(s: &Setup, man: &ExportManifest) {
    std::fs::write(
        s.out.join(manifest::key(&man.log_id)),
        man.to_bytes().unwrap(),
    )
    .unwrap();
}

fn check(s: &Setup, with_log: bool) -> Result<(), ExportError> {
    let opts = VerifyOptions {
        log_dir: with_log.then(|| s.dir.clone()),
        ..VerifyOptions::default()
    };
    verify_export(&local(&s.out), &opts).map(|_| ())
}

fn mismatch(r: Result<(), ExportError>) -> String {
    match r {
        Err(ExportError::Mismatch { place, reason }) => format!("{place}: {reason}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

/// Rewrite segment entry `seg`'s `table` file with one text column of its
/// first batch changed by `edit` (the file's metadata kept), and record the
/// new file's size and hash in the manifest: a forgery only the checks of
/// the content itself can catch.
fn forge_first_batch(
    s: &Setup,
    seg: usize,
    table: &str,
    column: &str,
    edit: impl FnOnce(&mut Vec<Option<String>>),
) {
    use arrow_array::Array;
    let mut man = s.man.clone();
    let f = man.segments[seg]
        .files
        .iter_mut()
        .find(|f| f.table == table)
        .unwrap();
    let file = pq::read(&f.path, std::fs::read(s.out.join(&f.path)).unwrap()).unwrap();
    let b = &file.batches[0];
    let i = b.schema().index_of(column).unwrap();
    let c = arrow_array::cast::AsArray::as_string::<i32>(b.column(i));
    let mut values: Vec<Option<String>> = (0..b.num_rows())
        .map(|r| c.is_valid(r).then(|| c.value(r).to_string()))
        .collect();
    edit(&mut values);
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    cols[i] = Arc::new(StringArray::from(values));
    let forged = RecordBatch::try_new(b.schema(), cols).unwrap();
    let mut w = pq::FileWriter::new(&f.path, b.schema(), &file.meta).unwrap();
    w.write(&forged).unwrap();
    for rest in &file.batches[1..] {
        w.write(rest).unwrap();
    }
    let bytes = w.finish().unwrap();
    f.bytes = bytes.len() as u64;
    f.blake3 = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(s.out.join(&f.path), bytes).unwrap();
    store_manifest(s, &man);
}

#[test]
fn an_edited_row_is_caught_by_the_chain_even_with_a_consistent_manifest() {
    let s = setup();
    // Rewrite one run id, keeping the file's metadata: only the chain can tell.
    forge_first_batch(&s, 1, "events", "run_id", |ids| {
        ids[3] = Some("forged".into())
    });
    for with_log in [false, true] {
        let m = mismatch(check(&s, with_log));
        assert!(m.contains("segment 2") && m.contains("chain digest"), "{m}");
    }
}

#[test]
fn a_changed_byte_without_a_new_manifest_is_caught_by_the_file_hash() {
    let s = setup();
    let f = &s.man.segments[0].files[0];
    let p = s.out.join(&f.path);
    let mut b = std::fs::read(&p).unwrap();
    let at = b.len() / 2;
    b[at] ^= 1;
    std::fs::write(&p, b).unwrap();
    let m = mismatch(check(&s, false));
    assert!(m.contains(&f.path) && m.contains("BLAKE3"), "{m}");
}

#[test]
fn a_missing_file_or_segment_is_caught() {
    let s = setup();
    let f = s.man.segments[2]
        .files
        .iter()
        .find(|f| f.table == "tool_calls")
        .unwrap();
    std::fs::remove_file(s.out.join(&f.path)).unwrap();
    let m = mismatch(check(&s, false));
    assert!(m.contains("missing"), "{m}");

    let s = setup();
    let mut man = s.man.clone();
    man.segments.remove(1);
    store_manifest(&s, &man);
    let m = mismatch(check(&s, false));
    assert!(
        m.contains("segment 3") && m.contains("starts from digest"),
        "{m}"
    );
}

#[test]
fn an_anchored_digest_must_be_in_the_exported_chain() {
    let s = setup();
    let head = auditlog::verify(&s.dir, None, |_, _| {})
        .unwrap()
        .head_digest;
    let opts = VerifyOptions {
        expect: Some(head),
        ..VerifyOptions::default()
    };
    let r = verify_export(&local(&s.out), &opts).unwrap();
    assert_eq!(
        r.expect_found_at,
        Some(s.man.segments[2].first_lsn + s.man.segments[2].count)
    );
    let opts = VerifyOptions {
        expect: Some(auditlog::Digest([7; 32])),
        ..VerifyOptions::default()
    };
    let m = mismatch(verify_export(&local(&s.out), &opts).map(|_| ()));
    assert!(m.contains("expected digest"), "{m}");
}

#[test]
fn a_log_that_does_not_continue_its_export_is_refused() {
    let s = setup();
    // The export claims a different digest for a segment the log still has.
    let mut man = s.man.clone();
    man.segments[0].digest = "00".repeat(32);
    store_manifest(&s, &man);
    let e = export(&s.dir, &local(&s.out), &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, ExportError::Diverged { .. }), "{e}");
}

/// `tool_calls.extra` is derived from the verified events: a value put
/// there (file and manifest rewritten to match) is caught.
#[test]
fn an_edited_tool_call_extra_is_caught() {
    let s = setup();
    forge_first_batch(&s, 0, "tool_calls", "extra", |extra| {
        extra[0] = Some(r#"{"forged":true}"#.into())
    });
    for with_log in [false, true] {
        let m = mismatch(check(&s, with_log));
        assert!(m.contains("tool_calls") && m.contains("`extra`"), "{m}");
    }
}
