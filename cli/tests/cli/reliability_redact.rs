//! Redaction: a policy in the config drops or hashes named fields before
//! encoding, so a sentinel secret appears in no file of the log folder
//! (segments, MANIFEST, indexes, the full-text index), while the hash and
//! size come back for an auditor to check.

use crate::support;

use std::path::Path;
use std::sync::Arc;

use auditlog::{Action, RedactionPolicy};
use auditlog::{EncodedBatch, Event, Json, Log, RunLog, RunStarted};
use support::*;

const POLICY: &str = "
# secrets in inputs: every key hashed, the password dropped outright
inputs.password drop
inputs.*        hash
payload.body    hash
payload.headers.authorization drop
output          hash
error           drop
secret_note     drop
";

fn sentinel() -> String {
    format!("S3NT1NEL-{:016x}", fastrand::u64(..))
}

/// Events carrying the sentinel in every redacted place (and an unknown
/// top-level field).
fn secret_events(s: &str) -> Vec<Event> {
    let mut started = Event::run_started(
        "run-1",
        DAY0,
        RunStarted {
            skill_id: "web.search".into(),
            inputs: Json::parse(format!(
                r#"{{"q":"{s}","password":"{s}","nested":{{"deep":["{s}"]}}}}"#
            ))
            .unwrap(),
            ..RunStarted::default()
        },
    );
    started.extra.push((
        "secret_note".into(),
        Json::parse(format!(r#""{s}""#)).unwrap(),
    ));
    let log = Event::run_log(
        "run-1",
        DAY0 + 1,
        RunLog {
            seq: 0,
            event_type: "tool_call".into(),
            payload: Json::parse(format!(
                r#"{{"tool":"http.get","body":"{s}","headers":{{"authorization":"Bearer {s}"}}}}"#
            ))
            .unwrap(),
        },
    );
    let mut fin = finished("run-1", DAY0 + 2, &format!("the answer is {s}"));
    if let auditlog::EventData::RunFinished(f) = &mut fin.data {
        f.error = format!("failed near {s}");
        f.status = "error".into();
    }
    vec![started, log, fin]
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    walk_files(dir)
        .into_iter()
        .filter(|f| {
            let b = std::fs::read(f).unwrap_or_default();
            b.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(|f| f.display().to_string())
        .collect()
}

/// Build the derived data too: the full-text index (via `search`) and
/// sealed segments (with their indexes).
fn derive_everything(dir: &Path, s: &str) -> String {
    let (code, out, err) = cli(dir, &["search", s]);
    eprintln!("search exit {code}: {out} {err}");
    out
}

fn write_log(dir: &Path, policy: Option<RedactionPolicy>, s: &str) {
    let mut c = config(dir);
    c.redaction = policy.map(Arc::new);
    let log = Log::open(c).unwrap();
    let events = secret_events(s);
    log.append_batch(&events).unwrap().wait().unwrap();
    // Also through the encode-elsewhere path.
    let enc = EncodedBatch::encode_redacted(&events, log.redaction()).unwrap();
    log.append_encoded(enc).unwrap().wait().unwrap();
    log.seal().unwrap();
    log.append(&events[2]).unwrap().wait().unwrap();
    log.close().unwrap();
}

#[test]
fn the_sentinel_reaches_no_file_of_the_log_folder() {
    let s = sentinel();
    let (_t, dir) = scratch();
    write_log(&dir, Some(RedactionPolicy::parse(POLICY).unwrap()), &s);
    let search_out = derive_everything(&dir, &s);
    assert!(!search_out.contains(&s));
    let found = files_containing(&dir, &s);
    assert!(found.is_empty(), "sentinel found in {found:?}");
    // Nor anywhere in what comes back.
    let (code, out, err) = cli(&dir, &["replay"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&s));
    auditlog::verify(&dir, None, |_, _| {}).unwrap();
    let n = walk_files(&dir).len();
    record_figure(&format!("redact files_checked={n} sentinel_hits=0"));

    // The control: without the policy the same grep finds it, so the
    // check above can see it when it is there.
    let (_t2, plain) = scratch();
    write_log(&plain, None, &s);
    assert!(!files_containing(&plain, &s).is_empty());
}

#[test]
fn hashes_and_sizes_come_back_for_the_auditor() {
    let s = sentinel();
    let (_t, dir) = scratch();
    write_log(&dir, Some(RedactionPolicy::parse(POLICY).unwrap()), &s);
    let events = replay_all(&dir);
    let hash = |x: &str| format!("blake3:{}", blake3::hash(x.as_bytes()).to_hex());
    let marker = |x: &str| format!(r#"{{"redacted":"{}","bytes":{}}}"#, hash(x), x.len());
    let (_, started) = &events[0];
    let auditlog::EventData::RunStarted(d) = &started.data else {
        panic!()
    };
    let deep = format!(r#"["{s}"]"#);
    // `nested` is hashed whole (inputs.* names it): its compact JSON text.
    let nested = format!(r#"{{"deep":{deep}}}"#);
    let want = format!(r#"{{"q":{},"nested":{}}}"#, marker(&s), marker(&nested));
    assert_eq!(d.inputs.as_str(), want);
    assert!(started.extra.is_empty(), "secret_note dropped");
    assert_eq!(d.skill_id, "web.search", "unnamed fields untouched");
    let (_, log) = &events[1];
    let auditlog::EventData::RunLog(l) = &log.data else {
        panic!()
    };
    assert_eq!(
        l.payload.as_str(),
        format!(
            r#"{{"tool":"http.get","body":{},"headers":{{}}}}"#,
            marker(&s)
        )
    );
    let (_, fin) = &events[2];
    let auditlog::EventData::RunFinished(f) = &fin.data else {
        panic!()
    };
    assert_eq!(f.output, marker(&format!("the answer is {s}")));
    assert_eq!(f.error, "");
    assert_eq!(f.status, "error");
}

#[test]
fn a_log_with_a_policy_refuses_unredacted_batches() {
    let (_t, dir) = scratch();
    let mut c = config(&dir);
    c.redaction = Some(Arc::new(RedactionPolicy::parse(POLICY).unwrap()));
    let log = Log::open(c).unwrap();
    let enc = EncodedBatch::encode(&secret_events("x")).unwrap();
    assert!(log.append_encoded(enc).is_err());
    let other = Arc::new(RedactionPolicy::parse("output hash").unwrap());
    let enc = EncodedBatch::encode_redacted(&secret_events("x"), Some(&other)).unwrap();
    assert!(log.append_encoded(enc).is_err());
    log.close().unwrap();
    assert!(run_ids(&dir).is_empty());
}

#[test]
fn policy_format_is_checked_and_keyed_hashes_differ() {
    for bad in [
        "run_id drop",
        "ts hash",
        "status drop",
        "event_type hash",
        "inputs.* erase",
        "output.sub drop",
        "inputs..x drop",
        "drop",
        r#"{"rules":[{"path":"inputs.*","action":"shred"}]}"#,
    ] {
        assert!(RedactionPolicy::parse(bad).is_err(), "{bad}");
    }
    let json = RedactionPolicy::parse(
        r#"{"rules":[{"path":"inputs.*","action":"hash"},{"path":"error","action":"drop"}]}"#,
    )
    .unwrap();
    let lines = RedactionPolicy::parse("inputs.* hash\nerror drop").unwrap();
    assert_eq!(json, lines);
    let built = RedactionPolicy::new()
        .rule("inputs.*", Action::Hash)
        .unwrap()
        .rule("error", Action::Drop)
        .unwrap();
    assert_eq!(built, lines);
    // A keyed hash: a guessed secret cannot be confirmed without the key.
    let e = &secret_events("hunter2")[0];
    let plain = lines.apply(e);
    let keyed = lines.clone().with_key([7; 32]).apply(e);
    let (auditlog::EventData::RunStarted(a), auditlog::EventData::RunStarted(b)) =
        (&plain.data, &keyed.data)
    else {
        panic!()
    };
    assert!(a.inputs.as_str().contains("blake3:") && b.inputs.as_str().contains("blake3-keyed:"));
    assert!(!b
        .inputs
        .as_str()
        .contains(&blake3::hash(b"hunter2").to_hex().to_string()));
}
