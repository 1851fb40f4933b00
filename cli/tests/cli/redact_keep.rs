//! Keep-only redaction: the policy lists the content to keep and every
//! other key (the ones nobody thought of naming included) is dropped or
//! replaced by its hash and size before it reaches the disk. The log
//! records the policy in force, `verify` reports it, and a writer that
//! names no policy goes on with the recorded one.

use crate::support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use auditlog::{Action, RedactionPolicy};
use auditlog::{Event, Json, Log, RunLog, RunStarted};
use support::*;

fn sentinel() -> String {
    format!("K33P0NLY-{:016x}", fastrand::u64(..))
}

/// Events with the sentinel only in keys no policy names: unknown payload
/// and input keys, nested ones, an unknown top-level field, the run's
/// output. The metadata keys around them are kept.
fn events_with_unnamed_secrets(s: &str) -> Vec<Event> {
    let mut started = Event::run_started(
        "run-k",
        DAY0,
        RunStarted {
            skill_id: "fs.read".into(),
            channel_id: "sess-1".into(),
            inputs: Json::parse(format!(
                r#"{{"path":"/etc/{s}","file_body":"{s}","opts":{{"deep":["{s}"]}}}}"#
            ))
            .unwrap(),
            ..RunStarted::default()
        },
    );
    started.extra.push((
        "debug_dump".into(),
        Json::parse(format!(r#"{{"x":"{s}"}}"#)).unwrap(),
    ));
    let call = Event::run_log(
        "run-k",
        DAY0 + 1,
        RunLog {
            seq: 0,
            event_type: "tool_call".into(),
            payload: Json::parse(format!(
                r#"{{"tool":"fs.read","status":"error","error_type":"denied","duration_ms":12,"result_bytes":7,"response_body":"{s}","stdout":"{s}","stderr":"{s}","content":[{{"text":"{s}"}}]}}"#
            ))
            .unwrap(),
        },
    );
    let message = Event::run_log(
        "run-k",
        DAY0 + 2,
        RunLog {
            seq: 1,
            event_type: "message".into(),
            payload: Json::parse(format!(r#""raw {s}""#)).unwrap(),
        },
    );
    let fin = finished("run-k", DAY0 + 3, &format!("the file says {s}"));
    vec![started, call, message, fin]
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

fn write_with(dir: &Path, policy: Option<RedactionPolicy>, events: &[Event]) {
    let mut c = config(dir);
    c.redaction = policy.map(Arc::new);
    let log = Log::open(c).unwrap();
    log.append_batch(events).unwrap().wait().unwrap();
    log.seal().unwrap();
    log.close().unwrap();
}

/// Every file of the folder (segments, indexes, the full-text index built
/// by `search`, the MANIFEST with its policy record) is free of the
/// sentinel, `search` does not find it, `replay` does not show it.
fn assert_sentinel_nowhere(dir: &Path, s: &str) {
    let (code, out, err) = cli(dir, &["search", s]);
    assert!(
        !out.contains(s),
        "search found it: {out} {err} (exit {code})"
    );
    let (code, out, err) = cli(dir, &["runs"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("run-k") && !out.contains(s), "{out}");
    let found = files_containing(dir, s);
    assert!(found.is_empty(), "sentinel found in {found:?}");
    let (code, out, err) = cli(dir, &["replay"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(s), "{out}");
}

#[test]
fn each_keep_only_mode_keeps_the_sentinel_of_unnamed_keys_off_the_disk() {
    // (policy, whether it keeps what `errors` groups by)
    let policies = [
        (RedactionPolicy::preset("metadata-only").unwrap(), true),
        (RedactionPolicy::preset("hash-and-sizes").unwrap(), true),
        (RedactionPolicy::new().keep("payload.tool").unwrap(), false),
        (
            RedactionPolicy::new()
                .keep("payload.tool")
                .unwrap()
                .keep("inputs.path")
                .unwrap()
                .rule("inputs.path", Action::Hash)
                .unwrap()
                .others(Action::Hash),
            false,
        ),
    ];
    for (p, keeps_status) in policies {
        let s = sentinel();
        let (_t, dir) = scratch();
        let name = p.name();
        write_with(&dir, Some(p), &events_with_unnamed_secrets(&s));
        assert_sentinel_nowhere(&dir, &s);
        // The metadata survives for the queries.
        let (_, errors, _) = cli(&dir, &["errors"]);
        assert_eq!(
            errors.contains(r#""tool":"fs.read","error_type":"denied""#),
            keeps_status,
            "{name}: {errors}"
        );
        let (_, run, _) = cli(&dir, &["run", "run-k"]);
        assert!(run.contains(r#""skill_id":"fs.read""#), "{name}: {run}");
    }
    // The control: without a policy the same check does find it.
    let s = sentinel();
    let (_t, plain) = scratch();
    write_with(&plain, None, &events_with_unnamed_secrets(&s));
    assert!(!files_containing(&plain, &s).is_empty());
}

#[test]
fn hash_and_sizes_leaves_the_auditor_a_hash_and_a_size() {
    let s = sentinel();
    let (_t, dir) = scratch();
    let p = RedactionPolicy::preset("hash-and-sizes").unwrap();
    write_with(&dir, Some(p), &events_with_unnamed_secrets(&s));
    let events = replay_all(&dir);
    let auditlog::EventData::RunLog(l) = &events[1].1.data else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(l.payload.as_str()).unwrap();
    assert_eq!(v["tool"], "fs.read");
    assert_eq!(v["duration_ms"], 12);
    let want = format!("blake3:{}", blake3::hash(s.as_bytes()).to_hex());
    assert_eq!(v["stdout"]["redacted"], want.as_str());
    assert_eq!(v["stdout"]["bytes"], s.len());
    let auditlog::EventData::RunFinished(f) = &events[3].1.data else {
        panic!()
    };
    let out: serde_json::Value = serde_json::from_str(&f.output).unwrap();
    assert_eq!(out["bytes"], format!("the file says {s}").len());
}

fn ingest(dir: &Path, text: &str, extra: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("--dir")
        .arg(dir)
        .arg("ingest")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn jsonl(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| auditlog::event::json::event_to_json(e, None) + "\n")
        .collect()
}

fn verify_line(dir: &Path) -> serde_json::Value {
    let (code, out, err) = cli(dir, &["verify"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn the_log_records_its_policy_verify_reports_it_and_later_writers_keep_it() {
    let (_t, dir) = scratch();
    let s1 = sentinel();
    let out = ingest(
        &dir,
        &jsonl(&events_with_unnamed_secrets(&s1)),
        &["--redact-preset", "metadata-only"],
    );
    assert!(out.status.success(), "{out:?}");
    let v = verify_line(&dir);
    assert_eq!(v["redaction"]["in_force"], "metadata-only");
    let recs = v["redaction"]["policies"].as_array().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["since_lsn"], 0);
    let fp = RedactionPolicy::preset("metadata-only")
        .unwrap()
        .fingerprint();
    assert_eq!(recs[0]["fingerprint"], fp.as_str());
    let lib = auditlog::verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(lib.redaction_in_force().unwrap().name, "metadata-only");

    // A later ingest that names no policy goes on with the recorded one.
    let s2 = sentinel();
    let out = ingest(&dir, &jsonl(&events_with_unnamed_secrets(&s2)), &[]);
    assert!(out.status.success(), "{out:?}");
    // And so does a library writer that names none.
    let s3 = sentinel();
    write_with(&dir, None, &events_with_unnamed_secrets(&s3));
    for s in [&s1, &s2, &s3] {
        assert!(files_containing(&dir, s).is_empty(), "{s} stored");
    }
    assert_eq!(
        verify_line(&dir)["redaction"]["policies"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Changing it is recorded, from the LSN where it starts.
    let out = ingest(
        &dir,
        &jsonl(&events_with_unnamed_secrets(&sentinel())),
        &["--redact-preset", "hash-and-sizes"],
    );
    assert!(out.status.success(), "{out:?}");
    let v = verify_line(&dir);
    assert_eq!(v["redaction"]["in_force"], "hash-and-sizes");
    let recs = v["redaction"]["policies"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["since_lsn"], 12, "{v}");
    // Turning it off is a change too, and says so.
    let out = ingest(&dir, "", &["--redact-preset", "none"]);
    assert!(out.status.success(), "{out:?}");
    let v = verify_line(&dir);
    assert!(v["redaction"]["in_force"].is_null(), "{v}");
    assert_eq!(v["redaction"]["policies"][2]["name"], "none");
}

#[test]
fn a_keyed_policy_is_never_applied_without_its_key() {
    let (_t, dir) = scratch();
    let keyed = RedactionPolicy::preset("hash-and-sizes")
        .unwrap()
        .with_key([9; 32]);
    write_with(&dir, Some(keyed.clone()), &events_with_unnamed_secrets("x"));
    let e = Log::open(config(&dir))
        .err()
        .expect("refused without the key");
    assert!(e.to_string().contains("keyed hash"), "{e}");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    assert!(manifest.contains(r#""keyed":true"#));
    // With the policy (and its key) it opens, and nothing new is recorded.
    write_with(&dir, Some(keyed), &events_with_unnamed_secrets("y"));
    let v = verify_line(&dir);
    assert_eq!(v["redaction"]["policies"].as_array().unwrap().len(), 1);
    // The command line cannot bring a key: it is refused with that message.
    let out = ingest(&dir, "", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("keyed hash"));
}

#[test]
fn bad_presets_and_keep_paths_are_refused_before_anything_is_read() {
    let (_t, dir) = scratch();
    let out = ingest(&dir, "{}", &["--redact-preset", "everything"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown preset `everything`") && err.contains("metadata-only"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing was created");
    for bad in [
        "keep run_id",
        "keep ts",
        "keep tool_calls",
        "keep output.x",
        "keep",
    ] {
        assert!(RedactionPolicy::parse(bad).is_err(), "{bad}");
    }
}
