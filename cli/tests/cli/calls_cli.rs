//! `auditlog calls` and `errors` over tool calls with or without a run:
//! every filter, both orders, paging with a cursor, counts, the table,
//! bad arguments, and a keep-only preset on ingested tool calls.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const T0: i64 = 1_795_392_000_000_000; // 2026-11-23T00:00:00Z
const HOUR: i64 = 3_600_000_000;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_auditlog"))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin().arg("--dir").arg(dir).args(args).output().unwrap()
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
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn call_ids(v: &[serde_json::Value]) -> Vec<&str> {
    v.iter().map(|c| c["call_id"].as_str().unwrap()).collect()
}

/// A gateway's day: standalone calls by session (the TypeScript gateway's
/// rows), calls by request (the tool-governance layer's), and a run with
/// a `run_log` tool call and a `tool_call` that takes the run's scope.
fn gateway_day() -> String {
    let call = |id: &str, h: i64, extra: &str| {
        format!(
            r#"{{"kind":"tool_call","ts":{},"call_id":"{id}"{extra}}}"#,
            T0 + h * HOUR
        )
    };
    [
        call("c1", 1, r#","channel_id":"sess-1","engine":"openai","tool":"fs.read","duration_ms":5,"result_bytes":10"#),
        call("c2", 2, r#","channel_id":"sess-1","engine":"openai","tool":"http.get","status":"error","error_type":"timeout","error":"upstream","http_status":504,"duration_ms":3000"#),
        call("c3", 3, r#","channel_id":"sess-2","engine":"ollama","tool":"http.get","error_type":"dns","duration_ms":10"#),
        call("c4", 4, r#","request_id":"req-9","workspace_id":"ws-1","caller_id":"agent-3","tool":"fs.write","input_hash":"sha256:aa","input_bytes":120,"result_bytes":7"#),
        call("c5", 5, r#","workspace_id":"ws-1","caller_id":"agent-4","tool":"fs.read","status":"error","error_type":"denied","exit_code":13"#),
        format!(r#"{{"kind":"run_started","run_id":"r-1","ts":{},"skill_id":"agent","caller_id":"agent-3","channel_id":"sess-2"}}"#, T0 + 6 * HOUR),
        format!(r#"{{"kind":"run_log","run_id":"r-1","ts":{},"seq":0,"event_type":"tool_call","payload":{{"tool":"sh","status":"error","error_type":"exit","call_id":"c6","duration_ms":4}}}}"#, T0 + 7 * HOUR),
        format!(r#"{{"kind":"tool_call","run_id":"r-1","ts":{},"call_id":"c7","tool":"sh","engine":"openai"}}"#, T0 + 8 * HOUR),
        format!(r#"{{"kind":"run_log","run_id":"orphan","ts":{},"seq":0,"event_type":"tool_call","payload":{{"tool":"sh","status":"error","call_id":"c8"}}}}"#, T0 + 9 * HOUR),
    ]
    .join("\n")
}

#[test]
fn calls_filters_orders_pages_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    assert!(ingest(&dir, &gateway_day(), &[]).status.success());

    let all = lines(&run(&dir, &["calls"]));
    assert_eq!(
        call_ids(&all),
        ["c7", "c6", "c5", "c4", "c3", "c2", "c1"],
        "newest first; the orphan run log is not shown"
    );
    // Output shape: lsn, ts, source, run_id, then the tool_call fields.
    let c2 = &all[5];
    let keys: Vec<&str> = c2.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lsn",
            "ts",
            "source",
            "run_id",
            "call_id",
            "channel_id",
            "caller_id",
            "workspace_id",
            "request_id",
            "tool",
            "engine",
            "status",
            "error_type",
            "error",
            "duration_ms",
            "input_bytes",
            "result_bytes",
            "exit_code",
            "http_status",
            "input_hash",
            "args_summary",
            "payload"
        ]
    );
    assert_eq!(c2["ts"], "2026-11-23T02:00:00.000000Z");
    assert_eq!(
        (c2["status"].as_str(), c2["http_status"].as_u64()),
        (Some("error"), Some(504))
    );
    assert_eq!(
        all[4]["status"], "error",
        "an error type without a status is an error"
    );
    // Calls inside a run take its scope.
    assert_eq!(
        (all[0]["channel_id"].as_str(), all[0]["caller_id"].as_str()),
        (Some("sess-2"), Some("agent-3"))
    );
    assert_eq!(
        (all[1]["source"].as_str(), all[1]["channel_id"].as_str()),
        (Some("run_log"), Some("sess-2"))
    );

    let q = |args: &[&str]| {
        call_ids(&lines(&run(&dir, &[&["calls"], args].concat())))
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(q(&["--session", "sess-1"]), ["c2", "c1"]);
    assert_eq!(q(&["--channel", "sess-2"]), ["c7", "c6", "c3"]);
    assert_eq!(q(&["--agent", "agent-3"]), ["c7", "c6", "c4"]);
    assert_eq!(q(&["--workspace", "ws-1"]), ["c5", "c4"]);
    assert_eq!(q(&["--engine", "openai", "--tool", "http.get"]), ["c2"]);
    assert_eq!(q(&["--engine", "openai"]), ["c7", "c2", "c1"]);
    assert_eq!(q(&["--tool", "fs.read"]), ["c5", "c1"]);
    assert_eq!(q(&["--status", "error"]), ["c6", "c5", "c3", "c2"]);
    assert_eq!(q(&["--status", "ok", "--oldest-first"]), ["c1", "c4", "c7"]);
    assert_eq!(q(&["--error-type", "timeout"]), ["c2"]);
    assert_eq!(q(&["--run", "r-1"]), ["c7", "c6"]);
    assert_eq!(
        q(&[
            "--tool",
            "http.get",
            "--since",
            "2026-11-23T01:30:00Z",
            "--until",
            "2026-11-23T02:30:00Z"
        ]),
        ["c2"]
    );
    assert_eq!(
        q(&["--since", &(T0 + 5 * HOUR).to_string(), "--limit", "2"]),
        ["c7", "c6"]
    );

    // Paging: each page continues after the last call of the one before.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["calls", "--limit", "3"];
        let c;
        if let Some(cur) = &cursor {
            c = cur.clone();
            args.extend(["--cursor", &c]);
        }
        let page = lines(&run(&dir, &args));
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        cursor = Some(format!("{},{}", last["ts"].as_str().unwrap(), last["lsn"]));
        seen.extend(call_ids(&page).into_iter().map(String::from));
    }
    assert_eq!(seen, ["c7", "c6", "c5", "c4", "c3", "c2", "c1"]);

    // Counts: calls with or without a run.
    assert_eq!(lines(&run(&dir, &["calls", "--count"]))[0]["count"], 7);
    assert_eq!(
        lines(&run(&dir, &["calls", "--status", "error", "--count"]))[0]["count"],
        4
    );
    let by = lines(&run(
        &dir,
        &["calls", "--status", "error", "--count", "--by", "tool"],
    ));
    assert_eq!(by[0], serde_json::json!({"tool":"http.get","count":2}));
    assert_eq!(by[1], serde_json::json!({"tool":"fs.read","count":1}));
    assert_eq!(by.len(), 3);
    assert_eq!(
        by.iter().map(|v| v["count"].as_u64().unwrap()).sum::<u64>(),
        4
    );
    let by = lines(&run(&dir, &["calls", "--count", "--by", "session"]));
    assert_eq!(by[0], serde_json::json!({"channel_id":"sess-2","count":3}));

    // errors covers standalone calls too, grouped by their own session.
    let groups = lines(&run(&dir, &["errors"]));
    assert_eq!(groups.len(), 4);
    let c2g = groups
        .iter()
        .find(|g| g["error_type"] == "timeout")
        .unwrap();
    assert_eq!(
        (c2g["channel_id"].as_str(), c2g["count"].as_u64()),
        (Some("sess-1"), Some(1))
    );
    assert_eq!(c2g["run_ids"], serde_json::json!([]));
    let run_g = groups.iter().find(|g| g["tool"] == "sh").unwrap();
    assert_eq!(run_g["run_ids"], serde_json::json!(["r-1"]));
    assert_eq!(run_g["caller_ids"], serde_json::json!(["agent-3"]));

    // A table for people.
    let t = run(&dir, &["--format", "table", "calls", "--status", "error"]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(
        text.contains("http.get") && text.contains("timeout"),
        "{text}"
    );
}

#[test]
fn calls_argument_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    assert!(ingest(&dir, &gateway_day(), &[]).status.success());
    for (args, want) in [
        (&["calls", "--cursor", "yesterday"][..], "cursor"),
        (&["calls", "--cursor", "5,x"][..], "LSN"),
        (
            &["calls", "--count", "--by", "color"][..],
            "cannot count calls by",
        ),
        (&["calls", "--since", "noon"][..], "since"),
        (&["calls", "--by", "tool"][..], "--count"),
    ] {
        let out = run(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = run(&tmp.path().join("nope"), &["calls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no auditlog at"));
}

#[test]
fn a_metadata_preset_keeps_tool_call_content_off_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let s = format!("C4LLSENT-{:016x}", fastrand::u64(..));
    let text = format!(
        r#"{{"kind":"tool_call","ts":{T0},"channel_id":"sess-1","tool":"fs.read","status":"error","error_type":"denied","args_summary":"read /etc/hosts","payload":{{"stdout":"{s}","body":"{s}","file":{{"content":"{s}"}},"tool_version":"2"}},"response_body":"{s}"}}"#
    );
    let out = ingest(&dir, &text, &["--redact-preset", "metadata-only"]);
    assert!(out.status.success(), "{out:?}");
    let c = &lines(&run(&dir, &["calls"]))[0];
    assert_eq!(
        c["args_summary"], "read /etc/hosts",
        "a redacted summary survives"
    );
    assert_eq!(
        c["payload"],
        serde_json::json!({}),
        "unnamed payload keys dropped"
    );
    assert!(c.get("response_body").is_none());
    let found = run(&dir, &["search", &s]);
    assert!(!String::from_utf8_lossy(&found.stdout).contains(&s));
    for f in walk(&dir) {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(s.len()).any(|w| w == s.as_bytes()),
            "{} holds it",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
