//! The event JSON contract (sections 1 and 2): parsing, defaults, every
//! rejection, and write → parse round trips.

use auditlog::event::borrowed::EventRef;
use auditlog::event::json::{
    event_to_json, parse_event, validate_event, with_parsed_event, with_parsed_event_by_serde,
    write_event,
};
use auditlog::event::time::{parse_rfc3339, to_rfc3339, MAX_TS};
use auditlog::event::{
    Event, EventData, Json, RunFinished, RunLog, RunStarted, ToolCall, MAX_EVENT_BYTES,
    MAX_JSON_DEPTH, MAX_NAME_BYTES, MAX_RUN_ID_BYTES,
};
use auditlog::internals::codec::{encode_event, encode_event_ref};
use auditlog::{EncodedBatch, ViewBatch};
use proptest::prelude::*;

const STARTED: &str = r#"{"kind":"run_started","run_id":"r-1","ts":1763884800000000,"skill_id":"web.search","caller_id":"u-42","channel_id":"sess-7","parent_run_id":"","inputs":{"q":"x"},"dry_run":false}"#;
const LOG: &str = r#"{"kind":"run_log","run_id":"r-1","ts":1763884800000100,"seq":0,"event_type":"tool_call","payload":{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000,"args_summary":"GET example.org","result_bytes":0}}"#;
const FINISHED: &str = r#"{"kind":"run_finished","run_id":"r-1","ts":1763884801500000,"status":"error","output":"","error":"upstream timeout","tool_calls":1,"runtime_seconds":1.5,"input_tokens":120,"output_tokens":0,"thinking_tokens":0}"#;

fn parse(line: &str) -> Event {
    match parse_event(line.as_bytes()) {
        Ok(ev) => ev,
        Err(e) => panic!("{line}: {e}"),
    }
}

/// Parses, writes, parses again; both parses must agree. Returns the output.
fn round_trip(line: &str) -> (Event, String) {
    let ev = parse(line);
    let out = event_to_json(&ev, None);
    assert_eq!(parse(&out), ev, "output: {out}");
    assert_eq!(validate_event(&ev), Ok(()));
    (ev, out)
}

/// The field named by the error for `line`.
fn err_field(line: &[u8]) -> String {
    match parse_event(line) {
        Ok(ev) => panic!("accepted {:?}: {ev:?}", String::from_utf8_lossy(line)),
        Err(e) => {
            assert!(!e.reason.is_empty());
            e.field
        }
    }
}

fn started(ev: &Event) -> &RunStarted {
    match &ev.data {
        EventData::RunStarted(s) => s,
        other => panic!("not run_started: {other:?}"),
    }
}

fn log(ev: &Event) -> &RunLog {
    match &ev.data {
        EventData::RunLog(l) => l,
        other => panic!("not run_log: {other:?}"),
    }
}

fn finished(ev: &Event) -> &RunFinished {
    match &ev.data {
        EventData::RunFinished(f) => f,
        other => panic!("not run_finished: {other:?}"),
    }
}

#[test]
fn contract_examples_round_trip() {
    let (ev, out) = round_trip(STARTED);
    assert_eq!(
        out,
        r#"{"kind":"run_started","run_id":"r-1","ts":"2025-11-23T08:00:00.000000Z","skill_id":"web.search","caller_id":"u-42","channel_id":"sess-7","parent_run_id":"","inputs":{"q":"x"},"dry_run":false}"#
    );
    assert_eq!(started(&ev).inputs.as_str(), r#"{"q":"x"}"#);

    let (ev, out) = round_trip(LOG);
    assert_eq!(
        out,
        r#"{"kind":"run_log","run_id":"r-1","ts":"2025-11-23T08:00:00.000100Z","seq":0,"event_type":"tool_call","payload":{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000,"args_summary":"GET example.org","result_bytes":0}}"#
    );
    assert_eq!(log(&ev).event_type, "tool_call");

    let (ev, out) = round_trip(FINISHED);
    assert_eq!(
        out,
        r#"{"kind":"run_finished","run_id":"r-1","ts":"2025-11-23T08:00:01.500000Z","status":"error","output":"","error":"upstream timeout","tool_calls":1,"runtime_seconds":1.5,"input_tokens":120,"output_tokens":0,"thinking_tokens":0}"#
    );
    assert_eq!(finished(&ev).runtime_seconds, 1.5);
}

const CALL: &str = r#"{"kind":"tool_call","run_id":"","ts":"2025-11-23T08:00:00.000200Z","call_id":"c-1","channel_id":"sess-7","caller_id":"agent-3","workspace_id":"ws-1","request_id":"req-9","tool":"http.get","engine":"openai","status":"error","error_type":"timeout","error":"upstream timeout","duration_ms":5000.0,"input_bytes":120,"result_bytes":0,"exit_code":null,"http_status":504,"input_hash":"sha256:ab","args_summary":"GET example.org","payload":{"retry":1}}"#;

fn call(ev: &Event) -> &ToolCall {
    match &ev.data {
        EventData::ToolCall(c) => c,
        other => panic!("not tool_call: {other:?}"),
    }
}

#[test]
fn tool_calls_round_trip_with_every_field_typed() {
    let (ev, out) = round_trip(CALL);
    assert_eq!(out, CALL, "the output form is the contract's order");
    assert_eq!(ev.run_id, "", "a call may stand alone");
    let c = call(&ev);
    assert_eq!((c.tool.as_str(), c.engine.as_str()), ("http.get", "openai"));
    assert_eq!(
        (c.duration_ms, c.input_bytes, c.result_bytes),
        (Some(5000.0), Some(120), Some(0))
    );
    assert_eq!((c.exit_code, c.http_status), (None, Some(504)));
    assert_eq!(c.payload.as_str(), r#"{"retry":1}"#);
    // Inside a run; unknown keys kept; another kind's key is unknown here.
    let (ev, out) = round_trip(
        r#"{"kind":"tool_call","run_id":"r-1","ts":5,"tool":"sh","exit_code":-2,"seq":7,"trace":{"a":1}}"#,
    );
    assert_eq!(ev.run_id, "r-1");
    assert_eq!(call(&ev).exit_code, Some(-2));
    assert_eq!(ev.extra.len(), 2);
    assert!(
        out.ends_with(r#""payload":null,"seq":7,"trace":{"a":1}}"#),
        "{out}"
    );
    // A tool call's key is an unknown field of other kinds.
    let ev = parse(r#"{"tool":"x","kind":"run_started","run_id":"r","ts":1}"#);
    assert_eq!(ev.extra[0].0, "tool");
}

#[test]
fn a_tool_call_without_status_is_an_error_when_it_names_one() {
    let base = r#"{"kind":"tool_call","ts":1"#;
    for (rest, want) in [
        ("}", "ok"),
        (r#","error":"boom"}"#, "error"),
        (r#","error_type":"timeout"}"#, "error"),
        (r#","error_type":"timeout","status":"retried"}"#, "retried"),
    ] {
        let ev = parse(&format!("{base}{rest}"));
        assert_eq!(call(&ev).status, want, "{rest}");
        assert_eq!(ev.run_id, "", "run_id may be absent");
    }
}

#[test]
fn bad_tool_call_fields_are_named() {
    for (field, value) in [
        ("http_status", "1000"),
        ("http_status", "-1"),
        ("exit_code", "1.5"),
        ("exit_code", "\"1\""),
        ("duration_ms", "\"fast\""),
        ("duration_ms", "1e999"),
        ("input_bytes", "-3"),
        ("result_bytes", "2.5"),
        ("tool", "5"),
        ("engine", "{}"),
        ("run_id", "7"),
    ] {
        let line = format!(r#"{{"kind":"tool_call","ts":1,"{field}":{value}}}"#);
        assert_eq!(err_field(line.as_bytes()), field, "{line}");
    }
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    let line = format!(r#"{{"kind":"tool_call","ts":1,"workspace_id":"{long}"}}"#);
    assert_eq!(err_field(line.as_bytes()), "workspace_id");
    // Other kinds still need a run id.
    assert_eq!(err_field(br#"{"kind":"run_log","ts":1}"#), "run_id");
    assert_eq!(
        err_field(br#"{"kind":"run_log","run_id":"","ts":1}"#),
        "run_id"
    );
    let mut bad = Event::tool_call("", 1, ToolCall::default());
    assert_eq!(validate_event(&bad), Ok(()));
    if let EventData::ToolCall(c) = &mut bad.data {
        c.duration_ms = Some(f64::NAN);
    }
    assert_eq!(validate_event(&bad).unwrap_err().field, "duration_ms");
}

#[test]
fn lsn_comes_first_when_given() {
    let ev = parse(LOG);
    let mut out = String::from("x");
    write_event(&ev, Some(42), &mut out);
    assert!(out.starts_with(r#"x{"lsn":42,"kind":"run_log","#), "{out}");
    // Re-ingesting replay output: the old lsn is the old log's, not data.
    assert_eq!(parse(&out[1..]), ev);
}

#[test]
fn raw_json_is_kept_exactly() {
    let line = r#"{"kind":"run_log","run_id":"r","ts":1,"payload": {"z":1.50,"a":[1e3,-0.0, {"n":null}],"big":123456789012345678901234567890,"s":"\u00e9\n"} }"#;
    let (ev, out) = round_trip(line);
    let text = r#"{"z":1.50,"a":[1e3,-0.0, {"n":null}],"big":123456789012345678901234567890,"s":"\u00e9\n"}"#;
    assert_eq!(log(&ev).payload.as_str(), text);
    assert!(out.contains(text));
}

#[test]
fn unknown_fields_are_kept_in_order() {
    let line = r#"{"zeta":{"nested":{"deep":[1,{"x":"y"}]}},"kind":"run_started","run_id":"r","ts":5,"inputs":{"q":{"unknown_nested":true}},"alpha":null,"seq":3,"mid":"m"}"#;
    let (ev, out) = round_trip(line);
    let keys: Vec<&str> = ev.extra.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["zeta", "alpha", "seq", "mid"]);
    assert_eq!(
        ev.extra[0].1.as_str(),
        r#"{"nested":{"deep":[1,{"x":"y"}]}}"#
    );
    assert_eq!(ev.extra[1].1.as_str(), "null");
    assert_eq!(ev.extra[2].1.as_str(), "3");
    assert!(out.ends_with(
        r#""dry_run":false,"zeta":{"nested":{"deep":[1,{"x":"y"}]}},"alpha":null,"seq":3,"mid":"m"}"#
    ));
}

#[test]
fn kind_may_come_last() {
    let line = r#"{"seq":7,"run_id":"r","payload":[1],"skill_id":"s","ts":1,"kind":"run_log"}"#;
    let (ev, _) = round_trip(line);
    assert_eq!(log(&ev).seq, 7);
    assert_eq!(log(&ev).payload.as_str(), "[1]");
    assert_eq!(
        ev.extra,
        vec![("skill_id".to_string(), Json::parse("\"s\"").unwrap())]
    );
    // A field of the right kind read late is still checked.
    let bad = r#"{"seq":-1,"run_id":"r","ts":1,"kind":"run_log"}"#;
    assert_eq!(err_field(bad.as_bytes()), "seq");
    // ... while another kind's field is not.
    let fine = r#"{"seq":"x","run_id":"r","ts":1,"kind":"run_started"}"#;
    assert_eq!(parse(fine).extra[0].1.as_str(), "\"x\"");
}

#[test]
fn rfc3339_with_offsets() {
    let base = 1_795_420_800_000_000; // 2026-11-23T08:00:00Z
    for (ts, want) in [
        ("2026-11-23T08:00:00Z", base),
        ("2026-11-23T08:00:00.123456Z", base + 123_456),
        ("2026-11-23T08:00:00.1234569Z", base + 123_456),
        ("2026-11-23T09:00:00+01:00", base),
        ("2026-11-23T02:30:00-05:30", base),
        ("2026-11-23T02:30:00.000001-05:30", base + 1),
    ] {
        let line = format!(r#"{{"kind":"run_log","run_id":"r","ts":"{ts}"}}"#);
        let (ev, out) = round_trip(&line);
        assert_eq!(ev.ts, want, "{ts}");
        assert!(out.contains(&format!("\"ts\":\"{}\"", to_rfc3339(want))));
    }
    assert_eq!(to_rfc3339(base), "2026-11-23T08:00:00.000000Z");
}

#[test]
fn defaults_when_absent_or_null() {
    let absent = [
        r#"{"kind":"run_started","run_id":"r","ts":1}"#,
        r#"{"kind":"run_log","run_id":"r","ts":1}"#,
        r#"{"kind":"run_finished","run_id":"r","ts":1}"#,
    ];
    let null = [
        r#"{"kind":"run_started","run_id":"r","ts":1,"skill_id":null,"caller_id":null,"channel_id":null,"parent_run_id":null,"inputs":null,"dry_run":null}"#,
        r#"{"kind":"run_log","run_id":"r","ts":1,"seq":null,"event_type":null,"payload":null}"#,
        r#"{"kind":"run_finished","run_id":"r","ts":1,"status":null,"output":null,"error":null,"tool_calls":null,"runtime_seconds":null,"input_tokens":null,"output_tokens":null,"thinking_tokens":null}"#,
    ];
    let want = [
        Event::run_started("r", 1, RunStarted::default()),
        Event::run_log("r", 1, RunLog::default()),
        Event::run_finished("r", 1, RunFinished::default()),
    ];
    for ((a, n), w) in absent.iter().zip(null).zip(&want) {
        assert_eq!(&round_trip(a).0, w);
        assert_eq!(&round_trip(n).0, w);
    }
    assert_eq!(started(&want[0]).inputs.as_str(), "{}");
    assert_eq!(log(&want[1]).payload.as_str(), "null");
    let out = event_to_json(&want[2], None);
    assert!(out.contains(r#""status":"ok""#) && out.contains(r#""runtime_seconds":0.0,"#));
}

#[test]
fn runtime_seconds_is_always_a_float() {
    let line = r#"{"kind":"run_finished","run_id":"r","ts":1,"runtime_seconds":3}"#;
    let (ev, out) = round_trip(line);
    assert_eq!(finished(&ev).runtime_seconds, 3.0);
    assert!(out.contains(r#""runtime_seconds":3.0,"#), "{out}");
}

fn line_with(kind: &str, field: &str, value: &str) -> String {
    format!(r#"{{"kind":"{kind}","run_id":"r","ts":1,"{field}":{value}}}"#)
}

#[test]
fn bad_input_names_the_field() {
    let long_run_id = format!(
        r#"{{"kind":"run_log","run_id":"{}","ts":1}}"#,
        "a".repeat(MAX_RUN_ID_BYTES + 1)
    );
    let long_skill = line_with(
        "run_started",
        "skill_id",
        &format!("\"{}\"", "s".repeat(MAX_NAME_BYTES + 1)),
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let cases: Vec<(String, &str)> = vec![
        (r#"{"kind":"run_log","run_id":"r","ts":1"#.into(), "line"),
        (r#"{"kind":"run_log",,}"#.into(), "line"),
        ("".into(), "line"),
        ("[1,2]".into(), "line"),
        ("\"run_log\"".into(), "line"),
        (r#"{"kind":"run_log","ts":1}"#.into(), "run_id"),
        (
            r#"{"kind":"run_log","run_id":null,"ts":1}"#.into(),
            "run_id",
        ),
        (r#"{"kind":"run_log","run_id":"","ts":1}"#.into(), "run_id"),
        (r#"{"kind":"run_log","run_id":7,"ts":1}"#.into(), "run_id"),
        (long_run_id, "run_id"),
        (r#"{"kind":"run_log","run_id":"r"}"#.into(), "ts"),
        (r#"{"kind":"run_log","run_id":"r","ts":true}"#.into(), "ts"),
        (r#"{"kind":"run_log","run_id":"r","ts":-1}"#.into(), "ts"),
        (r#"{"kind":"run_log","run_id":"r","ts":1.5}"#.into(), "ts"),
        (
            format!(r#"{{"kind":"run_log","run_id":"r","ts":{}}}"#, MAX_TS + 1),
            "ts",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":18446744073709551615}"#.into(),
            "ts",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":"1969-12-31T23:59:59Z"}"#.into(),
            "ts",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":"2026-11-23 08:00"}"#.into(),
            "ts",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":"2026-13-01T00:00:00Z"}"#.into(),
            "ts",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":"yesterday"}"#.into(),
            "ts",
        ),
        (
            r#"{"kind":"run_paused","run_id":"r","ts":1}"#.into(),
            "kind",
        ),
        (r#"{"kind":3,"run_id":"r","ts":1}"#.into(), "kind"),
        (r#"{"run_id":"r","ts":1}"#.into(), "kind"),
        (line_with("run_log", "seq", "-1"), "seq"),
        (line_with("run_log", "seq", "1.5"), "seq"),
        (line_with("run_log", "seq", "1e30"), "seq"),
        (line_with("run_log", "seq", "\"3\""), "seq"),
        (
            line_with("run_finished", "tool_calls", "18446744073709551616"),
            "tool_calls",
        ),
        (
            line_with("run_finished", "input_tokens", "true"),
            "input_tokens",
        ),
        (
            line_with("run_finished", "runtime_seconds", "\"1.5\""),
            "runtime_seconds",
        ),
        (
            line_with("run_finished", "runtime_seconds", "[]"),
            "runtime_seconds",
        ),
        (line_with("run_started", "dry_run", "\"false\""), "dry_run"),
        (line_with("run_started", "dry_run", "0"), "dry_run"),
        (line_with("run_finished", "status", "\"running\""), "status"),
        (line_with("run_finished", "output", "{}"), "output"),
        (long_skill, "skill_id"),
        (line_with("run_log", "payload", &deep), "payload"),
        (line_with("run_log", "x\\u0079z", &deep), "xyz"),
        (deep.clone(), "line"),
        (
            r#"{"kind":"run_log","run_id":"r","ts":1,"run_id":"s"}"#.into(),
            "run_id",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":1,"seq":1,"seq":null}"#.into(),
            "seq",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":1,"x":1,"x":2}"#.into(),
            "x",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":1,"skill_id":1,"skill_id":2}"#.into(),
            "skill_id",
        ),
        (
            r#"{"kind":"run_log","k\u0069nd":"run_log","run_id":"r","ts":1}"#.into(),
            "kind",
        ),
        (
            r#"{"kind":"run_log","run_id":"r","ts":1} {}"#.into(),
            "line",
        ),
    ];
    for (line, field) in &cases {
        assert_eq!(&err_field(line.as_bytes()), field, "{line}");
    }
}

#[test]
fn many_unknown_fields_with_a_late_duplicate() {
    let mut line = String::from(r#"{"kind":"run_log","run_id":"r","ts":1"#);
    for i in 0..100 {
        line.push_str(&format!(r#","f{i}":{i}"#));
    }
    assert_eq!(parse(&format!("{line}}}")).extra.len(), 100);
    assert_eq!(err_field(format!(r#"{line},"f3":0}}"#).as_bytes()), "f3");
}

#[test]
fn depth_limit_is_exact() {
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let ok = line_with("run_log", "payload", &nest(MAX_JSON_DEPTH));
    round_trip(&ok);
    let bad = line_with("run_log", "payload", &nest(MAX_JSON_DEPTH + 1));
    assert_eq!(err_field(bad.as_bytes()), "payload");
    // Far beyond serde_json's own recursion limit: still our message.
    let e = parse_event(line_with("run_log", "payload", &nest(5000)).as_bytes()).unwrap_err();
    assert_eq!(e.field, "payload");
    assert!(e.reason.contains("nested"), "{}", e.reason);
}

#[test]
fn reasons_are_actionable() {
    let reason = |line: &str| parse_event(line.as_bytes()).unwrap_err().reason;
    let r = reason(r#"{"kind":"run_paused","run_id":"r","ts":1}"#);
    assert!(
        r.contains("run_started") && r.contains("run_finished"),
        "{r}"
    );
    let r = reason(r#"{"kind":"run_log","run_id":"r","ts":1,,}"#);
    assert!(r.contains("column"), "{r}");
    let r = reason(&line_with("run_log", "seq", "\"3\""));
    assert!(r.contains("integer"), "{r}");
    let r = reason(&line_with("run_log", "seq", "1e30"));
    assert!(r.contains("too large"), "{r}");
}

#[test]
fn size_and_encoding_problems() {
    let pad = "x".repeat(MAX_EVENT_BYTES);
    let big = line_with("run_log", "payload", &format!("\"{pad}\""));
    assert_eq!(err_field(big.as_bytes()), "line");

    let mut bad_utf8 = br#"{"kind":"run_log","run_id":"r"#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(br#"","ts":1}"#);
    assert_eq!(err_field(&bad_utf8), "line");

    for ctl in [0u8, b'\n', 0x1b, 0x1f] {
        let mut line = br#"{"kind":"run_log","run_id":"a"#.to_vec();
        line.push(ctl);
        line.extend_from_slice(br#"b","ts":1}"#);
        assert!(parse_event(&line).is_err());
        let mut in_payload = br#"{"kind":"run_log","run_id":"a","ts":1,"payload":{"k":"a"#.to_vec();
        in_payload.push(ctl);
        in_payload.extend_from_slice(br#""}}"#);
        assert!(parse_event(&in_payload).is_err());
    }
}

#[test]
fn hostile_but_valid_values_round_trip() {
    let line = r#"{"kind":"run_started","run_id":"../../etc/passwd","ts":1,"skill_id":"\u001b[31m$(rm -rf /)\"'; DROP TABLE runs;--","caller_id":"\u0000\\\t","inputs":{"$(rm -rf /)":"\u001b[0m"}}"#;
    let (ev, out) = round_trip(line);
    assert_eq!(ev.run_id, "../../etc/passwd");
    assert_eq!(
        started(&ev).skill_id,
        "\u{1b}[31m$(rm -rf /)\"'; DROP TABLE runs;--"
    );
    assert_eq!(started(&ev).caller_id, "\u{0}\\\t");
    assert_eq!(
        started(&ev).inputs.as_str(),
        r#"{"$(rm -rf /)":"\u001b[0m"}"#
    );
    assert!(
        !out.bytes().any(|b| b < 0x20),
        "raw control byte in {out:?}"
    );
}

#[test]
fn validate_event_applies_the_same_limits() {
    let ok = Event::run_log("r", 1, RunLog::default());
    assert_eq!(validate_event(&ok), Ok(()));
    let field = |ev: Event| validate_event(&ev).unwrap_err().field;

    assert_eq!(field(Event::run_log("", 1, RunLog::default())), "run_id");
    assert_eq!(field(Event::run_log("r", -1, RunLog::default())), "ts");
    assert_eq!(
        field(Event::run_log("r", MAX_TS + 1, RunLog::default())),
        "ts"
    );
    // Bad JSON cannot reach an event: Json is checked when it is made.
    for bad in ["{", " 1", ""] {
        assert_eq!(Json::parse(bad).unwrap_err().field, "json", "{bad:?}");
    }
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert!(Json::parse(deep).is_err());
    let deepest = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(Json::parse(deepest).is_ok());
    let status = RunFinished {
        status: "running".into(),
        ..RunFinished::default()
    };
    assert_eq!(field(Event::run_finished("r", 1, status)), "status");
    let nan = RunFinished {
        runtime_seconds: f64::NAN,
        ..RunFinished::default()
    };
    assert_eq!(field(Event::run_finished("r", 1, nan)), "runtime_seconds");
    let long = RunStarted {
        channel_id: "c".repeat(MAX_NAME_BYTES + 1),
        ..RunStarted::default()
    };
    assert_eq!(field(Event::run_started("r", 1, long)), "channel_id");
    let null_inputs = RunStarted {
        inputs: Json::null(),
        ..RunStarted::default()
    };
    assert_eq!(field(Event::run_started("r", 1, null_inputs)), "inputs");

    let with_extra = |extra: Vec<(&str, &str)>| Event {
        extra: extra
            .into_iter()
            .map(|(k, v)| (k.to_string(), Json::parse(v.to_string()).unwrap()))
            .collect(),
        ..ok.clone()
    };
    assert_eq!(validate_event(&with_extra(vec![("skill_id", "1")])), Ok(()));
    assert_eq!(field(with_extra(vec![("seq", "1")])), "seq");
    assert_eq!(field(with_extra(vec![("lsn", "1")])), "lsn");
    assert_eq!(field(with_extra(vec![("a", "1"), ("a", "2")])), "a");
    assert!(Json::parse("nope").is_err());
}

#[test]
fn json_from_value() {
    let v = serde_json::json!({"b": [1, 2.5, null], "a": "x"});
    assert_eq!(
        Json::from_value(&v).unwrap().as_str(),
        r#"{"b":[1,2.5,null],"a":"x"}"#
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json() -> impl Strategy<Value = Json> {
    json_value().prop_map(|v| Json::from_value(&v).unwrap())
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z._-]{0,12}", Just(String::new())]
}

fn run_started() -> impl Strategy<Value = EventData> {
    let inputs = json().prop_filter("null inputs means {}", |j| j.as_str() != "null");
    (name(), name(), name(), name(), inputs, any::<bool>()).prop_map(
        |(skill_id, caller_id, channel_id, parent_run_id, inputs, dry_run)| {
            EventData::RunStarted(RunStarted {
                skill_id,
                caller_id,
                channel_id,
                parent_run_id,
                inputs,
                dry_run,
            })
        },
    )
}

fn run_log() -> impl Strategy<Value = EventData> {
    (any::<u64>(), name(), json()).prop_map(|(seq, event_type, payload)| {
        EventData::RunLog(RunLog {
            seq,
            event_type,
            payload,
        })
    })
}

fn run_finished() -> impl Strategy<Value = EventData> {
    let status = name().prop_filter("not running", |s| s != "running");
    let counts = (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>());
    let seconds = prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (0u32..100_000).prop_map(|ms| f64::from(ms) / 1000.0),
    ];
    (status, any::<String>(), any::<String>(), counts, seconds).prop_map(
        |(
            status,
            output,
            error,
            (tool_calls, input_tokens, output_tokens, thinking_tokens),
            runtime_seconds,
        )| {
            EventData::RunFinished(RunFinished {
                status,
                output,
                error,
                tool_calls,
                runtime_seconds,
                input_tokens,
                output_tokens,
                thinking_tokens,
            })
        },
    )
}

/// Unknown keys must differ from each other and from the event's own keys.
fn extra() -> impl Strategy<Value = Vec<(String, Json)>> {
    prop::collection::vec(("[a-z]{1,8}|\\PC{1,8}", json()), 0..4).prop_map(|kv| {
        let mut seen = std::collections::HashSet::new();
        kv.into_iter()
            .map(|(k, v)| (format!("x_{k}"), v))
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect()
    })
}

fn tool_call() -> impl Strategy<Value = EventData> {
    let names = (
        name(),
        name(),
        name(),
        name(),
        name(),
        name(),
        name(),
        name(),
    );
    let more = (name(), name(), any::<String>(), any::<String>(), json());
    let numbers = (
        proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(0u16..=999),
    );
    (names, more, numbers).prop_map(
        |(
            (call_id, channel_id, caller_id, workspace_id, request_id, tool, engine, status),
            (error_type, input_hash, error, args_summary, payload),
            (duration_ms, input_bytes, result_bytes, exit_code, http_status),
        )| {
            EventData::ToolCall(Box::new(ToolCall {
                call_id,
                channel_id,
                caller_id,
                workspace_id,
                request_id,
                tool,
                engine,
                status,
                error_type,
                error,
                duration_ms,
                input_bytes,
                result_bytes,
                exit_code,
                http_status,
                input_hash,
                args_summary,
                payload,
            }))
        },
    )
}

fn event() -> impl Strategy<Value = Event> {
    let run_id = prop_oneof![
        "[a-zA-Z0-9._/-]{1,40}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty())
    ]
    .prop_filter("short", |s| s.len() <= MAX_RUN_ID_BYTES);
    let data = prop_oneof![run_started(), run_log(), run_finished(), tool_call()];
    (run_id, 0..=MAX_TS, data, extra()).prop_map(|(run_id, ts, data, extra)| Event {
        run_id,
        ts,
        data,
        extra,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_then_parse_is_identity(ev in event(), lsn in proptest::option::of(any::<u64>())) {
        prop_assert_eq!(validate_event(&ev), Ok(()));
        let out = event_to_json(&ev, lsn);
        prop_assert!(!out.contains('\n'));
        let back = parse_event(out.as_bytes());
        prop_assert_eq!(back, Ok(ev.clone()), "{}", out);
        // The output is plain JSON any reader accepts, ts as RFC 3339.
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let ts = v["ts"].as_str().unwrap();
        prop_assert_eq!(parse_rfc3339(ts), Ok(ev.ts));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event(&bytes);
    }

    #[test]
    fn mangled_events_never_panic(ev in event(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut out = event_to_json(&ev, None).into_bytes();
        let i = cut.index(out.len());
        out[i] = byte;
        let _ = parse_event(&out);
        out.truncate(i);
        let _ = parse_event(&out);
    }
}

// ---------------------------------------------------------------------------
// A line read in place (`with_parsed_event`) and encoded from the view, as
// the command line's ingest does, against the owned event `parse_event`
// gives and its encoding (docs/benchmarks.md, "Ingest, cli40 round")
// ---------------------------------------------------------------------------

/// The view of `line` and the owned event give the same answer: the same
/// event (the view copied out), the same frame bytes (encoded from the
/// view, and by `EncodedBatch::encode_parsed` from the owned event), or
/// the same error.
fn same_answer(line: &[u8]) -> Result<(), TestCaseError> {
    same_as_serde(line)?;
    let owned = parse_event(line);
    let viewed = with_parsed_event(line, |v| {
        let mut body = Vec::new();
        encode_event_ref(v, &mut body)
            .map(|()| body)
            .ok()
            .map(|body| {
                (v.to_event(), body, {
                    let mut b = ViewBatch::with_capacity(1, 0);
                    b.push(v)
                        .map(|()| b.finish(None).map(|b| b.frames().to_vec()))
                })
            })
    });
    let shown = String::from_utf8_lossy(line);
    match (&owned, viewed) {
        (Ok(ev), Ok(Some((copied, body, frames)))) => {
            prop_assert_eq!(copied.as_ref(), Some(ev), "{}", shown);
            let mut reference = Vec::new();
            encode_event(ev, &mut reference).unwrap();
            prop_assert!(body == reference, "{}", shown);
            let batch = EncodedBatch::encode_parsed(std::slice::from_ref(ev), None).unwrap();
            prop_assert!(
                frames.ok().and_then(Result::ok).as_deref() == Some(batch.frames()),
                "{}",
                shown
            );
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, &b, "{}", shown),
        (a, b) => prop_assert!(
            false,
            "{}: owned {:?}, viewed {:?}",
            shown,
            a,
            b.map(|v| v.is_some())
        ),
    }
    Ok(())
}

/// Values a field may be given in place of its own: every JSON type, the
/// numbers serde_json reads in special ways, escapes, out-of-range values.
const ODD_VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "-1",
    "1.0",
    "1e3",
    "-1.5E-3",
    "0.1",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "253402300799999999",
    "253402300800000000",
    "1e400",
    "1000",
    r#""""#,
    r#""x""#,
    r#""run_started""#,
    r#""run_\u006cog""#,
    r#""tool_call""#,
    r#""system""#,
    r#""running""#,
    r#""ok""#,
    r#""a\"b\\c\n\u00e9\ud83d\ude00""#,
    r#""\ud800""#,
    r#""2026-11-22T10:00:00Z""#,
    r#""2026-11-22T10:00:00.123456789Z""#,
    r#""2026-11-22T10:00:00+01:00""#,
    r#""2026-02-30T10:00:00Z""#,
    r#""2026-11-22T10:00:00\u005a""#,
    "[]",
    "{}",
    r#"{"a":[1,{"b":null}]}"#,
    "[1, 2 ]",
    // Numbers and texts a plain line may carry (cli41: read by the
    // quote-marking scan, each scalar by serde_json from its text).
    "-0.0",
    "0e0",
    "1E+2",
    "1.5e-7",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "01",
    "1.",
    "-",
    "+1",
    "tru",
    "nul",
    r#""a\tb""#,
    "\"a\tb\"",
    "\"\u{7f}é✓😀\"",
    "\"\u{1}\"",
    r#"{"":""}"#,
    r#"[[[[[[[[]]]]]]]]"#,
    "[1,]",
    "{\"a\":1,}",
];

/// `line` (a JSON object) with its members split out: (key text with
/// quotes, value text), by serde_json.
fn members(line: &str) -> Vec<(String, String)> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
    map.iter()
        .map(|(k, v)| (serde_json::to_string(k).unwrap(), v.to_string()))
        .collect()
}

fn object(members: &[(String, String)]) -> String {
    let body: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

const FULL_CALL: &str = r#"{"kind":"tool_call","run_id":"r-1","ts":1763884800000200,"call_id":"c-1","channel_id":"sess-7","caller_id":"u-42","workspace_id":"w","request_id":"q","tool":"http.get","engine":"m","status":"error","error_type":"timeout","error":"slow","duration_ms":5000.5,"input_bytes":12,"result_bytes":0,"exit_code":-1,"http_status":504,"input_hash":"h","args_summary":"GET","payload":{"a":1}}"#;

#[test]
fn a_view_agrees_with_the_owned_event_on_the_contract_examples() {
    for line in [STARTED, LOG, FINISHED, FULL_CALL] {
        same_answer(line.as_bytes()).unwrap();
        let m = members(line);
        for i in 0..m.len() {
            for v in ODD_VALUES {
                let mut m = m.clone();
                m[i].1 = (*v).to_string();
                same_answer(object(&m).as_bytes()).unwrap();
            }
            // Each member first, last, and given twice.
            let mut moved = m.clone();
            let one = moved.remove(i);
            moved.insert(0, one.clone());
            same_answer(object(&moved).as_bytes()).unwrap();
            moved.remove(0);
            moved.push(one.clone());
            same_answer(object(&moved).as_bytes()).unwrap();
            moved.push(one);
            same_answer(object(&moved).as_bytes()).unwrap();
            // Without it.
            moved.truncate(moved.len() - 2);
            same_answer(object(&moved).as_bytes()).unwrap();
        }
    }
    for line in [
        "{}",
        "[]",
        " {\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1}",
        "{\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1} ",
        "{\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1}{}",
        "{\"kind\":\"run_log\" ,\"run_id\" : \"r\",\"ts\":1}",
        "{\"ki\\u006ed\":\"run_log\",\"run_id\":\"r\",\"ts\":1}",
        "{\"kind\":\"run_log\",\"run_id\":\"r\\u002d1\",\"ts\":1,\"event_type\":\"t\\n\"}",
        "{\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1,\"x\":1,\"x\":2}",
        "{\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1,\"x\\u0031\":1,\"x1\":2}",
        "{\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1,\"replace\":1}",
        "{\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1,\"replace\":true}",
        "{\"seq\":7,\"event_type\":\"e\\\"\",\"payload\":[1],\"kind\":\"run_log\",\"run_id\":\"r\",\"ts\":1}",
        "{\"status\":\"running\",\"kind\":\"run_finished\",\"run_id\":\"r\",\"ts\":1}",
        "{\"tool\":5,\"kind\":\"tool_call\",\"ts\":1}",
        "{\"kind\":\"tool_call\",\"ts\":1,\"seq\":1,\"inputs\":null}",
        "{\"kind\":\"tool_call\",\"ts\":1,\"http_status\":1000}",
        "{\"kind\":\"tool_call\",\"ts\":1,\"error\":\"e\"}",
        "{\"kind\":\"tool_call\",\"ts\":1,\"error_type\":\"\",\"status\":\"\"}",
        "{\"kind\":\"run_started\",\"ts\":1}",
        "{\"kind\":\"run_started\",\"run_id\":\"\",\"ts\":1}",
        "{\"kind\":\"run_started\",\"run_id\":\"r\"}",
    ] {
        same_answer(line.as_bytes()).unwrap();
    }
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    for field in ["skill_id", "caller_id", "channel_id", "parent_run_id"] {
        same_answer(line_with("run_started", field, &format!("\"{long}\"")).as_bytes()).unwrap();
    }
    for field in [
        "call_id",
        "tool",
        "engine",
        "status",
        "error_type",
        "input_hash",
    ] {
        same_answer(line_with("tool_call", field, &format!("\"{long}\"")).as_bytes()).unwrap();
    }
}

fn edit_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"\"\\{}[],:- 0159.eE+ntfu\t\n\x01".to_vec()),
        any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn a_view_agrees_on_written_events(ev in event(), lsn in proptest::option::of(any::<u64>())) {
        same_answer(event_to_json(&ev, lsn).as_bytes())?;
    }

    #[test]
    fn a_view_agrees_on_edited_lines(
        ev in event(),
        at in any::<prop::sample::Index>(),
        byte in edit_byte(),
        how in 0u8..4,
    ) {
        let mut line = event_to_json(&ev, None).into_bytes();
        let i = at.index(line.len());
        match how {
            0 => line[i] = byte,
            1 => line.insert(i, byte),
            2 => { line.remove(i); }
            _ => line.truncate(i),
        }
        same_answer(&line)?;
    }

    #[test]
    fn a_view_agrees_on_reordered_and_odd_members(
        ev in event(),
        rotate in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        value in prop::sample::select(ODD_VALUES),
        dup in any::<bool>(),
    ) {
        let mut m = members(&event_to_json(&ev, None));
        let r = rotate.index(m.len());
        m.rotate_left(r);
        let i = at.index(m.len());
        if dup {
            let again = (m[i].0.clone(), value.to_string());
            m.push(again);
        } else {
            m[i].1 = value.to_string();
        }
        same_answer(object(&m).as_bytes())?;
    }
}

// ---------------------------------------------------------------------------
// The plain scan (quotes marked 64 bytes at a time) against serde_json alone
// ---------------------------------------------------------------------------

/// What a caller of `with_parsed_event` sees: the event copied out and its
/// encoded body (or why it does not encode).
fn seen(v: &EventRef<'_>) -> (Option<Event>, Result<Vec<u8>, String>) {
    let mut body = Vec::new();
    let encoded = encode_event_ref(v, &mut body).map_err(|e| e.to_string());
    (v.to_event(), encoded.map(|()| body))
}

/// `with_parsed_event` (a plain line read by the quote-marking scan, with
/// serde_json for anything it is not sure of) gives serde_json's own answer
/// for `line`: the same event and body bytes, or the same error.
fn same_as_serde(line: &[u8]) -> Result<(), TestCaseError> {
    let fast = with_parsed_event(line, seen);
    let slow = with_parsed_event_by_serde(line, seen);
    prop_assert_eq!(fast, slow, "{}", String::from_utf8_lossy(line));
    Ok(())
}

/// Lines whose shape the scan decides: where the quotes fall against its
/// 64-byte blocks, lines past its stack's 1 KiB, nesting at the depth limit,
/// whitespace, bytes before and after the object, duplicates among many
/// unknown keys.
#[test]
fn the_plain_scan_agrees_with_serde_json_on_the_shape_of_lines() {
    let mut lines: Vec<String> = Vec::new();
    for base in [STARTED, LOG, FINISHED, FULL_CALL] {
        let body = &base[1..];
        // Pad with an unknown field so every quote moves across the
        // 64-byte boundaries; and past 1 KiB (the scan's marks on the heap).
        for n in (0..140).chain([900, 1000, 1100, 5000]) {
            lines.push(format!("{{\"pad\":\"{}\",{body}", "x".repeat(n)));
            lines.push(format!("{{\"pad\":{},{body}", "1".repeat(n.max(1))));
            lines.push(format!("{}{{{body}", " ".repeat(n % 3)));
            lines.push(format!("{{{body}{}", " ".repeat(n % 3)));
        }
        for extra in ["", " ", "\t", "\n", "\r", "{}", "x", "\u{feff}", "\0"] {
            lines.push(format!("{extra}{base}"));
            lines.push(format!("{base}{extra}"));
            lines.push(format!("{{{extra}{body}"));
        }
        lines.push(base.replace(':', " : ").replace(',', " , "));
        lines.push(base.replace(':', "\t:\t"));
        lines.push(base.replace("\"k", "\"\u{e9}k"));
        let mut many = String::from("{");
        for i in 0..40 {
            many.push_str(&format!("\"u{}\":{i},", i % 37));
        }
        lines.push(format!("{many}{body}"));
        lines.push(format!("{{\"\":1,\"\":2,{body}"));
        lines.push(format!("{{\"\":1,{body}"));
        for depth in [62, 63, 64, 65, 66] {
            let nest = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            lines.push(format!("{{\"deep\":{nest},{body}"));
            let nest = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            lines.push(format!("{{\"deep\":{nest},{body}"));
        }
    }
    for line in &lines {
        same_as_serde(line.as_bytes()).unwrap();
    }
    // Lines over the size limit, and not UTF-8.
    let big = format!(
        "{{\"pad\":\"{}\",{}",
        "x".repeat(MAX_EVENT_BYTES),
        &STARTED[1..]
    );
    same_as_serde(big.as_bytes()).unwrap();
    let mut bad = STARTED.as_bytes().to_vec();
    bad[30] = 0xff;
    same_as_serde(&bad).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Random lines from JSON's own bytes inside a known event: the scan
    /// and serde_json agree on every one.
    #[test]
    fn the_plain_scan_agrees_with_serde_json_on_random_values(
        ev in event(),
        at in any::<prop::sample::Index>(),
        value in prop::collection::vec(prop::sample::select(
            b"{}[]\",:\\/ \t-+.eE0123456789truefalsnlbu\x01\x7fxA".to_vec()), 0..24),
    ) {
        let mut m = members(&event_to_json(&ev, None));
        let i = at.index(m.len());
        m[i].1 = String::from_utf8(value).unwrap();
        same_as_serde(object(&m).as_bytes())?;
    }
}
