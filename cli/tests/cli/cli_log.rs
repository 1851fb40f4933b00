//! The log commands through the binary: ingest, replay, tail, verify,
//! retain, stats, and the folder errors.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_auditlog"))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("runs")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const DAY: i64 = 86_400_000_000;
const T0: i64 = 1_795_392_000_000_000;

fn line(kind: &str, id: &str, ts: i64) -> String {
    format!(r#"{{"kind":"{kind}","run_id":"{id}","ts":{ts}}}"#)
}

fn ingest(dir: &Path, text: &str, extra: &[&str]) -> Output {
    let mut child = bin()
        .arg("--dir")
        .arg(dir)
        .arg("ingest")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(text.as_bytes());
    // A command that fails before reading its input (a bad argument)
    // closes the pipe: that is its answer, checked by the caller.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn ingest_reports_bad_lines_and_stores_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let text = format!(
        "{}\n{{broken\n\n{}\r\n{}",
        line("run_started", "a", T0),
        line("run_log", "a", T0 + 1),
        r#"{"kind":"run_finished","run_id":"a","ts":"2026-11-23T00:00:01Z","tool_calls":-1}"#
    );
    let out = ingest(&dir, &text, &[]);
    assert!(out.status.success(), "{out:?}");
    let summary = &json_lines(&out)[0];
    assert_eq!(summary["accepted"], 2);
    assert_eq!(summary["rejected"], 2);
    assert_eq!(summary["first_lsn"], 0);
    assert_eq!(summary["last_lsn"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2:"), "{err}");
    assert!(err.contains("line 5: field `tool_calls`"), "{err}");
    let events = json_lines(&run(&dir, &["replay"]));
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["lsn"], 1);
    assert_eq!(events[1]["ts"], "2026-11-23T00:00:00.000001Z");
    assert_eq!(events[1]["payload"], serde_json::Value::Null);
}

#[test]
fn strict_ingest_stores_nothing_on_a_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let text = format!("{}\nnot json\n", line("run_started", "a", T0));
    let out = ingest(&dir, &text, &["--strict"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was stored"));
    // No log was even created.
    assert!(!dir.join("MANIFEST").exists());
    let out = ingest(
        &dir,
        &format!("{}\n", line("run_started", "a", T0)),
        &["--strict"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_lines(&run(&dir, &["replay"])).len(), 1);
}

#[test]
fn replay_filters_tail_and_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let text: String = (0..30)
        .map(|i| line("run_started", &format!("r{i}"), T0 + i * 1000) + "\n")
        .collect();
    assert!(ingest(&dir, &text, &[]).status.success());
    let since = (T0 + 10_000).to_string();
    let until = "2026-11-23T01:00:00.019+01:00"; // = T0 + 19,000 µs
    let got = json_lines(&run(&dir, &["replay", "--since", &since, "--until", until]));
    assert_eq!(got.len(), 10);
    assert_eq!(got[0]["run_id"], "r10");
    // The same lines whatever threads check and decode.
    let all = run(&dir, &["replay"]).stdout;
    for threads in ["0", "1", "2"] {
        let same = run(&dir, &["replay", "--threads", threads]);
        assert!(same.status.success(), "{same:?}");
        assert_eq!(same.stdout, all, "--threads {threads}");
    }
    let got = json_lines(&run(&dir, &["tail", "-n", "3"]));
    let ids: Vec<&str> = got.iter().map(|v| v["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r27", "r28", "r29"]);
    let table = run(&dir, &["--format", "table", "tail", "-n", "1"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("lsn"), "{text}");
    assert!(text.contains("r29"));
    let bad = run(&dir, &["replay", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}

#[test]
fn tail_follow_prints_new_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    assert!(ingest(&dir, &(line("run_started", "old", T0) + "\n"), &[])
        .status
        .success());
    let mut child = bin()
        .arg("--dir")
        .arg(&dir)
        .args(["tail", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"old\""));
    assert!(
        ingest(&dir, &(line("run_started", "new", T0 + 1) + "\n"), &[])
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = lines.next().unwrap().unwrap();
    assert!(Instant::now() < deadline);
    assert!(next.contains("\"new\""), "{next}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn verify_retain_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let text: String = (0..4)
        .map(|d| line("run_started", &format!("d{d}"), T0 + d * DAY) + "\n")
        .collect();
    assert!(ingest(&dir, &text, &[]).status.success());
    let v = &json_lines(&run(&dir, &["verify"]))[0];
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], 4);
    let digest = v["head_digest"].as_str().unwrap().to_string();
    let ok = run(&dir, &["verify", "--expect", &digest]);
    assert!(ok.status.success());
    let r = run(&dir, &["retain", "--before", &(T0 + 2 * DAY).to_string()]);
    assert!(r.status.success(), "{r:?}");
    let r = &json_lines(&r)[0];
    assert_eq!(r["dropped_events"], 2);
    assert_eq!(r["first_kept_lsn"], 2);
    assert_eq!(r["dropped_segments"].as_array().unwrap().len(), 2);
    // d0 and d1 were still running: carried forward (appended again, with
    // their own times) before their segments went.
    let s = &json_lines(&run(&dir, &["stats"]))[0];
    // The kept events, the carried-forward ones and the retention record,
    // chained in the log.
    assert_eq!(s["events"], 5);
    assert_eq!(s["first_lsn"], 2);
    assert_eq!(s["head_lsn"], 7);
    assert_eq!(s["dropped_events"], 2);
    assert_eq!(s["system_events"]["retentions"], 1);
    assert_eq!(s["oldest_ts"], "2026-11-23T00:00:00.000000Z");
    let runs = json_lines(&run(&dir, &["runs"]));
    assert_eq!(runs.len(), 4, "no running run lost: {runs:?}");
    // The old head digest is still in the chain (the record came after).
    assert!(run(&dir, &["verify", "--expect", &digest]).status.success());
    let gone = run(&dir, &["verify", "--expect", &"0".repeat(63)]);
    assert_eq!(gone.status.code(), Some(2));
    let missing = run(&dir, &["verify", "--expect", &"ab".repeat(32)]);
    assert_eq!(missing.status.code(), Some(1));
    let r = run(&dir, &["retain", "--older-than", "ten days"]);
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn retain_reports_what_it_carried_and_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let text = [
        line("run_started", "long", T0),
        line("run_started", "short", T0 + 1),
        line("run_finished", "short", T0 + 2),
        line("run_started", "next-day", T0 + DAY),
    ]
    .join("\n");
    assert!(ingest(&dir, &text, &[]).status.success());
    let r = run(&dir, &["retain", "--before", &(T0 + DAY).to_string()]);
    assert!(r.status.success(), "{r:?}");
    let r = &json_lines(&r)[0];
    assert_eq!(r["dropped_events"], 3);
    assert_eq!(r["carried_runs"], 1);
    assert_eq!(r["carried_events"], 1);
    assert_eq!(r["dropped_runs"], 1);
    let long = &json_lines(&run(&dir, &["run", "long"]))[0];
    assert_eq!(long["status"], "running");
    assert_eq!(long["started_at"], "2026-11-23T00:00:00.000000Z");
    assert!(!run(&dir, &["run", "short"]).status.success());
    assert_eq!(json_lines(&run(&dir, &["count"]))[0]["count"], 2);
    assert!(run(&dir, &["verify"]).status.success());
}

#[test]
fn a_missing_or_foreign_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in [&["replay"][..], &["stats"], &["verify"], &["tail"]] {
        let out = run(&tmp.path().join("nope"), cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no auditlog at"),
            "{cmd:?}"
        );
    }
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    for cmd in [
        &["replay"][..],
        &["ingest", "/dev/null"],
        &["retain", "--older-than", "1d"],
    ] {
        let out = run(tmp.path(), cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not an auditlog folder"),
            "{cmd:?}"
        );
    }
    let out = bin()
        .arg("replay")
        .env_remove("AUDITLOG_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "hello"
    );
}

#[test]
fn a_line_longer_than_a_read_chunk_keeps_line_numbers_right() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let huge = format!(
        r#"{{"kind":"run_started","run_id":"big","ts":{T0},"inputs":{{"blob":"{}"}}}}"#,
        "x".repeat(9 << 20)
    );
    let text = format!(
        "{}\n{huge}\n{}\n",
        line("run_started", "a", T0),
        line("run_started", "b", T0)
    );
    let out = ingest(&dir, &text, &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2:"), "{err}");
    assert!(!err.contains("line 3:"), "{err}");
    assert_eq!(json_lines(&out)[0]["accepted"], 2);
}

#[test]
fn bad_lines_keep_their_numbers_across_many_read_chunks() {
    // About 12 MiB: several of ingest's read chunks, parsed on several
    // threads, with bad lines (and a blank and a CRLF one) far into it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let pad = "p".repeat(200);
    let bad_at = [1usize, 16_411, 16_412, 30_000, 49_999, 50_000];
    let mut text = String::new();
    for n in 1..=50_000usize {
        if bad_at.contains(&n) {
            text.push_str("{broken\n");
        } else if n == 20_000 {
            text.push('\n');
        } else {
            let l = format!(
                r#"{{"kind":"run_started","run_id":"r{n}","ts":{T0},"inputs":{{"p":"{pad}"}}}}"#
            );
            text.push_str(&l);
            text.push_str(if n % 7 == 0 { "\r\n" } else { "\n" });
        }
    }
    let out = ingest(&dir, &text, &[]);
    assert!(out.status.success(), "{out:?}");
    let summary = &json_lines(&out)[0];
    assert_eq!(summary["accepted"], 50_000 - bad_at.len() - 1);
    assert_eq!(summary["rejected"], bad_at.len());
    let err = String::from_utf8_lossy(&out.stderr);
    let reported: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split("line ").nth(1)?.split(':').next())
        .collect();
    let want: Vec<String> = bad_at.iter().map(|n| n.to_string()).collect();
    assert_eq!(reported, want, "{err}");
}

#[test]
fn ingest_applies_a_redaction_policy_before_anything_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let policy = tmp.path().join("policy");
    std::fs::write(&policy, "inputs.password drop\ninputs.card hash\n").unwrap();
    let text = format!(
        r#"{{"kind":"run_started","run_id":"a","ts":{T0},"inputs":{{"q":"ok","password":"SENTINEL-pw-81","card":"SENTINEL-card-82"}}}}"#
    ) + "\n";
    let out = ingest(&dir, &text, &["--redact", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let ev = &json_lines(&run(&dir, &["replay"]))[0];
    assert_eq!(ev["inputs"]["q"], "ok");
    assert!(ev["inputs"].get("password").is_none());
    assert_eq!(ev["inputs"]["card"]["bytes"], 16);
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"SENTINEL-"),
            "{} holds the secret",
            entry.display()
        );
    }
    std::fs::write(&policy, "run_id drop\n").unwrap();
    let out = ingest(&dir, &text, &["--redact", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redact"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
