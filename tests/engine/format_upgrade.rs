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
    assert_eq!(manifest_version(&dir), 5);
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
        .replace(r#""version":5"#, r#""version":6"#);
    let manifest = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
    std::fs::write(dir.join("MANIFEST"), manifest).unwrap();
    let e = LogReader::open(&dir).err().expect("refused");
    assert!(e.to_string().contains("version 6"), "{e}");
}
