//! Format version 4 (the `tool_call` kind, the MANIFEST's redaction
//! record) and 5 (retention's tile hashes): a version 3 log still reads,
//! and its first new writer upgrades its MANIFEST so that a reader too old
//! refuses it rather than misreading a tool call. (A version 4 log with a
//! retention record: tiles_retention.rs.)

use crate::support;

use auditlog::query::{Engine, Filter};
use auditlog::{Event, Log, LogReader, ReplayRange, ToolCall};
use support::*;

fn manifest_version(dir: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    v["version"].as_u64().unwrap()
}

#[test]
fn a_version_3_log_reads_and_its_next_writer_upgrades_it() {
    let (_t, dir) = scratch();
    let log = Log::open(config(&dir)).unwrap();
    for i in 0..20 {
        let _ = log.append(&ev(i, DAY0 + i as i64)).unwrap();
    }
    log.seal().unwrap();
    log.append(&ev(20, DAY0 + 20)).unwrap().wait().unwrap();
    log.close().unwrap();
    downgrade_log(&dir, 3, "redaction");
    assert_eq!(manifest_version(&dir), 3);

    // Reads as it is: replay, queries (indexes rebuilt), verify.
    let r = LogReader::open(&dir).unwrap();
    let n = r.replay(ReplayRange::default()).count();
    assert_eq!(n, 21);
    let mut e = Engine::open(&dir).unwrap();
    assert_eq!(e.count(&Filter::default()).unwrap(), 21);
    auditlog::verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(manifest_version(&dir), 3, "readers change nothing");

    // A writer upgrades it, and may then add a tool call.
    let log = Log::open(config(&dir)).unwrap();
    assert_eq!(manifest_version(&dir), u64::from(auditlog::FORMAT_VERSION));
    let c = ToolCall {
        tool: "fs.read".into(),
        ..ToolCall::default()
    };
    log.append(&Event::tool_call("", DAY0 + 30, c))
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();
    auditlog::verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(run_ids(&dir).len(), 22);
}

#[test]
fn a_future_version_is_refused_with_a_clear_error() {
    let (_t, dir) = scratch();
    Log::open(config(&dir)).unwrap().close().unwrap();
    let text = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let body = text
        .lines()
        .next()
        .unwrap()
        .replace(r#""version":6"#, r#""version":7"#);
    let manifest = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
    std::fs::write(dir.join("MANIFEST"), manifest).unwrap();
    let e = LogReader::open(&dir).err().expect("refused");
    assert!(e.to_string().contains("version 7"), "{e}");
}

/// A version 5 signed log (every checkpoint in place) opens, verifies
/// with the key and proves; its next writer upgrades the MANIFEST to 6,
/// goes on signing in place in the version 5 active segment, and defers
/// only in the version 6 segments after it (docs/proofs.md, "Deferred
/// signing").
#[test]
fn a_version_5_signed_log_verifies_proves_and_goes_on() {
    let k = SignedLog::new("auditlog.test/v5");
    let log = Log::open(k.config()).unwrap();
    for i in 0..30 {
        let _ = log.append(&ev(i, DAY0 + i as i64)).unwrap();
    }
    log.seal().unwrap();
    for i in 30..40 {
        let _ = log.append(&ev(i, DAY0 + i as i64)).unwrap();
    }
    log.close().unwrap();
    downgrade_log(&k.dir, 5, "no-such-field");
    assert_eq!(manifest_version(&k.dir), 5);
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!((t.checkpoints_verified, t.unsigned_events), (2, 0));
    let v = k.key.verifier();
    let r = LogReader::open(&k.dir).unwrap();
    r.prove_inclusion(5, None).unwrap().check(&v, None).unwrap();
    r.prove_consistency(30, None)
        .unwrap()
        .check(&v, None, None)
        .unwrap();

    let mut cfg = k.config();
    cfg.segment_max_bytes = 64 * 1024;
    let log = Log::open(cfg).unwrap();
    assert_eq!(manifest_version(&k.dir), 6);
    for i in 40..1500 {
        let _ = log.append(&ev(i, DAY0 + i as i64)).unwrap();
    }
    log.close().unwrap();
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!(t.unsigned_events, 0);
    let r = LogReader::open(&k.dir).unwrap();
    let cps = r.checkpoints().unwrap();
    assert!(cps.len() >= 3, "{}", cps.len());
    for w in cps.windows(2) {
        let (a, b) = (w[0].record.tree_size, w[1].record.tree_size);
        r.prove_consistency(a, Some(b))
            .unwrap()
            .check(&v, None, None)
            .unwrap();
    }
    r.prove_inclusion(1000, None)
        .unwrap()
        .check(&v, None)
        .unwrap();
}
