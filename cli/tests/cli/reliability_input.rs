//! Bad input: a corpus of malformed events through the CLI and the
//! library. Each is rejected with an error naming the line (and field), is
//! not stored, harms nothing already stored, and never panics. Hostile but
//! valid values are stored and returned exactly, never used as a path, and
//! shown escaped in `--format table`.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};

use auditlog::event::json::parse_event;
use auditlog::{Error, Event, Json, Log, RunStarted};
use support::*;

/// (line, field the error must name, or "" when any message will do).
fn bad_corpus() -> Vec<(Vec<u8>, &'static str)> {
    let deep = |n: usize| {
        format!(
            r#"{{"kind":"run_started","run_id":"r","ts":1,"inputs":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
        .into_bytes()
    };
    let mut v: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), ""),
        (b"[1,2,3]".to_vec(), ""),
        (b"null".to_vec(), ""),
        (b"{}".to_vec(), ""),
        (b"\"just a string\"".to_vec(), ""),
        (
            br#"{"kind":"run_started","run_id":"r","ts":1} trailing"#.to_vec(),
            "",
        ),
        (br#"{"kind":"run_started","ts":1}"#.to_vec(), "run_id"),
        (
            br#"{"kind":"run_started","run_id":"","ts":1}"#.to_vec(),
            "run_id",
        ),
        (
            br#"{"kind":"run_started","run_id":123,"ts":1}"#.to_vec(),
            "run_id",
        ),
        (
            br#"{"kind":"run_started","run_id":["a"],"ts":1}"#.to_vec(),
            "run_id",
        ),
        (br#"{"kind":"run_started","run_id":"r"}"#.to_vec(), "ts"),
        (
            br#"{"kind":"run_started","run_id":"r","ts":"yesterday"}"#.to_vec(),
            "ts",
        ),
        (
            br#"{"kind":"run_started","run_id":"r","ts":1e400}"#.to_vec(),
            "ts",
        ),
        (
            br#"{"kind":"run_started","run_id":"r","ts":99999999999999999999999}"#.to_vec(),
            "ts",
        ),
        (
            br#"{"kind":"run_started","run_id":"r","ts":1.5}"#.to_vec(),
            "ts",
        ),
        (
            br#"{"kind":"run_started","run_id":"r","ts":true}"#.to_vec(),
            "ts",
        ),
        (br#"{"kind":"bogus","run_id":"r","ts":1}"#.to_vec(), "kind"),
        (br#"{"run_id":"r","ts":1}"#.to_vec(), "kind"),
        (br#"{"kind":7,"run_id":"r","ts":1}"#.to_vec(), "kind"),
        (
            br#"{"kind":"run_started","run_id":"r","ts":1,"dry_run":"yes"}"#.to_vec(),
            "dry_run",
        ),
        (
            br#"{"kind":"run_started","run_id":"r","ts":1,"skill_id":5}"#.to_vec(),
            "skill_id",
        ),
        (
            br#"{"kind":"run_log","run_id":"r","ts":1,"seq":-1}"#.to_vec(),
            "seq",
        ),
        (
            br#"{"kind":"run_log","run_id":"r","ts":1,"seq":1e30}"#.to_vec(),
            "seq",
        ),
        (
            br#"{"kind":"run_log","run_id":"r","ts":1,"seq":18446744073709551616}"#.to_vec(),
            "seq",
        ),
        (
            br#"{"kind":"run_finished","run_id":"r","ts":1,"tool_calls":1.5}"#.to_vec(),
            "tool_calls",
        ),
        (
            br#"{"kind":"run_finished","run_id":"r","ts":1,"runtime_seconds":1e999}"#.to_vec(),
            "runtime_seconds",
        ),
        (
            br#"{"kind":"run_finished","run_id":"r","ts":1,"runtime_seconds":"fast"}"#.to_vec(),
            "runtime_seconds",
        ),
        (
            br#"{"kind":"run_finished","run_id":"r","ts":1,"status":"running"}"#.to_vec(),
            "status",
        ),
        (
            br#"{"kind":"run_finished","run_id":"r","ts":1,"input_tokens":-5}"#.to_vec(),
            "input_tokens",
        ),
        (
            b"{\"kind\":\"run_started\",\"run_id\":\"r\xff\xfe\",\"ts\":1}".to_vec(),
            "",
        ),
        (
            b"{\"kind\":\"run_started\",\"run_id\":\"r\",\"ts\":1,\"skill_id\":\"\xc3\x28\"}"
                .to_vec(),
            "",
        ),
        (
            b"{\"kind\":\"run_started\",\"run_id\":\"a\x01b\",\"ts\":1}".to_vec(),
            "",
        ),
        (
            b"{\"kind\":\"run_started\",\"run_id\":\"a\x1b[31mb\",\"ts\":1}".to_vec(),
            "",
        ),
        (
            b"{\"kind\":\"run_started\",\"run_id\":\"r\",\"ts\":1}\x00".to_vec(),
            "",
        ),
        (b"\x00\x00\x00\x00".to_vec(), ""),
        (deep(100), "inputs"),
        (deep(100_000), "inputs"),
        (
            format!(
                r#"{{"kind":"run_log","run_id":"r","ts":1,"payload":{}1{}}}"#,
                r#"{"a":"#.repeat(5000),
                "}".repeat(5000)
            )
            .into_bytes(),
            "payload",
        ),
        (
            format!(
                r#"{{"kind":"run_started","run_id":"{}","ts":1}}"#,
                "x".repeat(257)
            )
            .into_bytes(),
            "run_id",
        ),
        (
            format!(
                r#"{{"kind":"run_started","run_id":"r","ts":1,"skill_id":"{}"}}"#,
                "s".repeat(1025)
            )
            .into_bytes(),
            "skill_id",
        ),
        (
            format!(
                r#"{{"kind":"run_finished","run_id":"r","ts":1,"output":"{}"}}"#,
                "o".repeat(2 << 20)
            )
            .into_bytes(),
            "",
        ),
    ];
    // Every prefix of a good line that is not itself a whole value.
    let good = br#"{"kind":"run_log","run_id":"r","ts":1,"payload":{"a":[1,2.5,"x"]}}"#;
    for cut in [1, 5, 20, 40, good.len() - 1] {
        v.push((good[..cut].to_vec(), ""));
    }
    v
}

#[test]
fn invalid_json_cannot_be_built_into_an_event() {
    // Json is checked when it is made, so an event cannot carry bad JSON.
    let e = Json::parse("{not json").unwrap_err();
    assert_eq!(e.field, "json");
    assert!(e.reason.contains("not valid JSON"), "{e}");
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let e = Json::parse(deep).unwrap_err();
    assert!(e.reason.contains("nested too deeply"), "{e}");
    assert!(Json::parse(" {} ").is_err());
    let deep_value: serde_json::Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(100), "]".repeat(100))).unwrap();
    assert!(Json::from_value(&deep_value).is_err());
}

#[test]
fn library_parser_rejects_each_bad_line_with_a_typed_error() {
    let corpus = bad_corpus();
    for (line, field) in &corpus {
        let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        let e = parse_event(line).expect_err(&format!("accepted: {shown}"));
        assert!(!e.reason.is_empty(), "{shown}");
        if !field.is_empty() {
            assert!(
                e.field.contains(field),
                "{shown}: error names field {:?}, want {field:?} ({})",
                e.field,
                e.reason
            );
        }
    }
    record_figure(&format!("input library_bad_lines={}", corpus.len()));
}

#[test]
fn library_append_rejects_invalid_events_and_stores_nothing() {
    let (_t, dir) = scratch();
    let log = Log::open(config(&dir)).unwrap();
    log.append(&ev(1, DAY0)).unwrap().wait().unwrap();
    let bad: Vec<Event> = vec![
        Event::run_started("", DAY0, RunStarted::default()),
        Event::run_started("x".repeat(257), DAY0, RunStarted::default()),
        Event::run_started(
            "r",
            DAY0,
            RunStarted {
                skill_id: "s".repeat(5000),
                ..RunStarted::default()
            },
        ),
        Event::run_started(
            "r",
            DAY0,
            RunStarted {
                inputs: Json::parse(format!(r#"{{"big":"{}"}}"#, "b".repeat(2 << 20))).unwrap(),
                ..RunStarted::default()
            },
        ),
        finished("r", DAY0, &"o".repeat(2 << 20)),
    ];
    for (i, b) in bad.iter().enumerate() {
        // Alone, and as the last of a batch whose other events are good.
        let e = log.append(b).expect_err(&format!("bad event {i} accepted"));
        assert!(
            matches!(e, Error::InvalidEvent { .. } | Error::EventTooLarge { .. }),
            "{i}: {e:?}"
        );
        let batch = vec![ev(100 + i as u64, DAY0), b.clone()];
        match log.append_batch(&batch) {
            Err(Error::InvalidEvent { index, .. }) | Err(Error::EventTooLarge { index, .. }) => {
                assert_eq!(index, 1, "names the bad event of the batch")
            }
            other => panic!("{i}: {other:?}"),
        }
    }
    log.append(&ev(2, DAY0 + 1)).unwrap().wait().unwrap();
    assert_eq!(log.counters().rejected as usize, bad.len() * 3);
    log.close().unwrap();
    assert_eq!(run_ids(&dir), ["ev-1", "ev-2"]);
    auditlog::verify(&dir, None, |_, _| {}).unwrap();
}

fn cli_in(cwd: &Path, dir: &Path, args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .current_dir(cwd)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn good_line(n: u64) -> Vec<u8> {
    format!(
        r#"{{"kind":"run_started","run_id":"ev-{n}","ts":{}}}"#,
        DAY0 + n as i64
    )
    .into_bytes()
}

#[test]
fn cli_ingest_reports_each_bad_line_and_stores_the_good_ones() {
    let corpus = bad_corpus();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    // good, bad, good, bad, ... so line numbers are checkable.
    let mut input = Vec::new();
    let mut bad_lines = Vec::new();
    for (i, (line, field)) in corpus.iter().enumerate() {
        input.extend(good_line(i as u64));
        input.push(b'\n');
        // A NUL-free bad line must stay on one line.
        assert!(!line.contains(&b'\n'));
        input.extend(line);
        input.push(b'\n');
        bad_lines.push((2 * i + 2, *field));
    }
    let (code, out, err) = cli_in(t.path(), &dir, &["ingest", "-"], &input);
    assert_ne!(code, 101, "panicked: {err}");
    let summary = String::from_utf8_lossy(&out);
    assert!(
        summary.contains(&format!("\"accepted\":{}", corpus.len()))
            && summary.contains(&format!("\"rejected\":{}", corpus.len())),
        "{summary} / {err}"
    );
    for (line, field) in &bad_lines {
        let prefix = format!("line {line}: ");
        let msg = err
            .lines()
            .find(|l| l.contains(&prefix))
            .unwrap_or_else(|| panic!("no error for line {line}: {err}"));
        if !field.is_empty() {
            assert!(msg.contains(field), "line {line} must name {field}: {msg}");
        }
    }
    let want: Vec<String> = (0..corpus.len()).map(|i| format!("ev-{i}")).collect();
    assert_eq!(run_ids(&dir), want);
    auditlog::verify(&dir, None, |_, _| {}).unwrap();

    // --strict: nothing of the input is stored, exit non-zero, and what was
    // stored before is unharmed.
    let (code, _, err) = cli_in(t.path(), &dir, &["ingest", "--strict", "-"], &input);
    assert_ne!(code, 0);
    assert_ne!(code, 101, "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    assert_eq!(run_ids(&dir), want);
    record_figure(&format!("input cli_bad_lines={}", corpus.len()));
}

/// A line within the size limit whose event encodes past it (a stand-alone
/// tool call's defaults add a few bytes to a 1 MiB unknown field). The
/// ingest encodes each line from its parsed view; when one fails to encode
/// the chunk is done again with owned events, so the answer is the one the
/// command gave before views (cli40): the encode error, for every line of
/// that chunk (a batch is encoded whole there), and nothing stored.
#[test]
fn cli_ingest_refuses_only_the_line_whose_event_encodes_past_the_limit() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    // A stand-alone tool call within the line limit whose encoding (with
    // its defaults) is 3 bytes past it.
    let head = br#"{"kind":"tool_call","ts":1,"x":""#;
    let mut big = head.to_vec();
    big.resize(auditlog::event::MAX_EVENT_BYTES - 2, b'a');
    big.extend_from_slice(b"\"}");
    assert_eq!(big.len(), auditlog::event::MAX_EVENT_BYTES);
    let mut input = good_line(1);
    input.push(b'\n');
    input.extend(&big);
    input.push(b'\n');
    input.extend(good_line(2));
    input.push(b'\n');
    // Plain (each line parsed into a view), and with a redaction policy
    // (owned events, which the policy rewrites before they are encoded).
    let policy = t.path().join("policy.txt");
    std::fs::write(&policy, "inputs.password drop\n").unwrap();
    let policy = policy.to_str().unwrap();
    for (k, extra) in [&[][..], &["--redact", policy][..]].iter().enumerate() {
        let log = dir.join(format!("{k}"));
        let mut args = vec!["ingest", "-"];
        args.extend_from_slice(extra);
        let (code, out, err) = cli_in(t.path(), &log, &args, &input);
        assert_ne!(code, 101, "panicked: {err}");
        let summary = String::from_utf8_lossy(&out);
        assert!(
            summary.contains("\"accepted\":2") && summary.contains("\"rejected\":1"),
            "{args:?}: {summary} / {err}"
        );
        let want = format!(
            "line 2: could not be encoded: the event encodes to {} bytes; the limit is {}",
            auditlog::event::MAX_EVENT_BYTES + 3,
            auditlog::event::MAX_EVENT_BYTES
        );
        assert!(err.contains(&want), "{args:?}: {want}: {err}");
        assert!(
            !err.contains("line 1:") && !err.contains("line 3:"),
            "{args:?}: {err}"
        );
        assert_eq!(run_ids(&log), ["ev-1", "ev-2"], "{args:?}");
    }
}

#[test]
fn hostile_values_are_stored_exactly_never_used_as_paths_and_escaped_in_tables() {
    let t = tempfile::tempdir().unwrap();
    let cwd = t.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let dir = t.path().join("log");
    let hostile = [
        "../../etc/passwd",
        "/tmp/../../pwned-abs",
        "$(touch pwned)",
        "`touch pwned2`; rm -rf ~ | cat > pwned3 &",
        "\u{1b}[31mRED\u{1b}[0m\u{1b}]0;title\u{7}",
        "line\nbreak\r\ttab",
        "nul\u{0}byte",
        "\u{202e}reversed\u{200b}",
        "C:\\Windows\\system32",
        "%s%n%x {} {{}}",
    ];
    let mut input = String::new();
    for (i, h) in hostile.iter().enumerate() {
        let line = serde_json::json!({
            "kind": "run_started",
            "run_id": h,
            "ts": DAY0 + i as i64,
            "skill_id": h,
            "caller_id": format!("c{i}"),
            "inputs": {"path": h},
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let (code, _, err) = cli_in(&cwd, &dir, &["ingest", "-"], input.as_bytes());
    assert_eq!(code, 0, "{err}");
    // Returned exactly (JSON replay).
    let (code, out, err) = cli_in(&cwd, &dir, &["replay"], b"");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), hostile.len());
    for (v, h) in lines.iter().zip(hostile) {
        assert_eq!(v["run_id"], *h);
        assert_eq!(v["skill_id"], *h);
        assert_eq!(v["inputs"]["path"], *h);
    }
    // Never used as a path: nothing appeared outside the log's own files.
    let files: Vec<_> = walk_files(t.path());
    for f in &files {
        let rel = f
            .strip_prefix(t.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(rel.starts_with("log/"), "unexpected file {rel}");
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.contains("pwned") && !name.contains("passwd"),
            "a value became a file: {rel}"
        );
    }
    assert!(!Path::new("/tmp/pwned-abs").exists());
    // Escaped in tables: no raw control character reaches the terminal.
    for args in [
        &["--format", "table", "replay"][..],
        &["--format", "table", "tail", "-n", "100"][..],
        &["--format", "table", "runs"][..],
    ] {
        let (code, out, err) = cli_in(&cwd, &dir, args, b"");
        if args[2] == "runs" && code != 0 {
            continue; // the run views may not be wired yet
        }
        assert_eq!(code, 0, "{args:?}: {err}");
        let text = String::from_utf8(out).unwrap();
        for (i, l) in text.lines().enumerate() {
            assert!(
                !l.chars().any(|c| c.is_control() && c != '\t'),
                "{args:?} line {i}: raw control character in {l:?}"
            );
        }
        assert!(text.contains("../../etc/passwd"), "{args:?}: {text}");
        assert!(
            text.contains("\\u{1b}[31mRED"),
            "{args:?}: ANSI escape shown escaped: {text}"
        );
        assert_eq!(text.lines().filter(|l| l.contains("RED")).count(), 1);
    }
    record_figure(&format!("input hostile_values={}", hostile.len()));
}
