//! The query commands of the binary: output shapes and error cases
//! (docs/contract.md, "The command line").

use std::path::Path;
use std::process::{Command, Output};

use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted};
use auditlog::{Config, Durability, Log};

const T0: i64 = 1_763_884_800_000_000; // 2025-11-23T08:00:00Z

fn make_log(path: &Path) {
    let mut cfg = Config::new(path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    let st = |skill: &str, parent: &str, dry: bool| RunStarted {
        skill_id: skill.into(),
        caller_id: "u-42".into(),
        channel_id: "sess-7".into(),
        parent_run_id: parent.into(),
        inputs: Json::parse(r#"{"q":"x","nested":{"k":[1,2]}}"#).unwrap(),
        dry_run: dry,
    };
    let fin = |status: &str| RunFinished {
        status: status.into(),
        runtime_seconds: 1.5,
        ..RunFinished::default()
    };
    let evs = vec![
        Event::run_started("r-1", T0, st("web.search", "", false)),
        Event::run_log(
            "r-1",
            T0 + 100,
            RunLog {
                seq: 1,
                event_type: "tool_call".into(),
                payload: Json::parse(r#"{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000}"#).unwrap(),
            },
        ),
        Event::run_log(
            "r-1",
            T0 + 50,
            RunLog {
                seq: 0,
                event_type: "message".into(),
                payload: Json::parse("null").unwrap(),
            },
        ),
        Event::run_finished("r-1", T0 + 1_500_000, fin("error")),
        Event::run_started("r-2", T0 + 2_000_000, st("web.search", "r-1", false)),
        Event::run_started("r-3", T0 + 3_000_000, st("code.run", "r-2", true)),
        Event::run_finished("r-3", T0 + 3_500_000, fin("ok")),
        // A cycle: c-1 -> c-2 -> c-1.
        Event::run_started("c-1", T0 + 10, st("x", "c-2", false)),
        Event::run_started("c-2", T0 + 20, st("x", "c-1", false)),
    ];
    let _ = log.append_batch(&evs[..4]).unwrap();
    log.seal().unwrap();
    let _ = log.append_batch(&evs[4..]).unwrap();
    log.close().unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("AUDITLOG_DIR")
        .output()
        .unwrap()
}

fn ok_lines(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {l}: {e}")))
        .collect()
}

fn ids(v: &[serde_json::Value]) -> Vec<&str> {
    v.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

const RUN_KEYS: &[&str] = &[
    "id",
    "skill_id",
    "caller_id",
    "channel_id",
    "parent_run_id",
    "inputs",
    "dry_run",
    "started_at",
    "finished_at",
    "status",
    "output",
    "error",
    "tool_calls",
    "runtime_seconds",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
];

#[test]
fn query_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    make_log(&dir);

    // runs: every non-dry run, newest first, keys in contract order.
    let runs = ok_lines(&dir, &["runs"]);
    assert_eq!(ids(&runs), ["r-2", "c-2", "c-1", "r-1"]);
    let keys: Vec<&String> = runs[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, RUN_KEYS);
    assert_eq!(runs[0]["finished_at"], serde_json::Value::Null);
    assert_eq!(runs[0]["status"], "running");
    assert_eq!(runs[3]["started_at"], "2025-11-23T08:00:00.000000Z");
    assert_eq!(runs[3]["inputs"]["nested"]["k"][1], 2);
    let raw =
        String::from_utf8(run(&dir, &["runs", "--limit", "1", "--offset", "3"]).stdout).unwrap();
    assert!(raw.contains("\"runtime_seconds\":1.5,"), "{raw}");
    assert_eq!(
        ids(&ok_lines(
            &dir,
            &["runs", "--include-dry-run", "--limit", "2"]
        )),
        ["r-3", "r-2"]
    );
    assert_eq!(
        ids(&ok_lines(&dir, &["runs", "--status", "error"])),
        ["r-1"]
    );
    assert_eq!(ids(&ok_lines(&dir, &["runs", "--top-level"])), ["r-1"]);
    assert_eq!(
        ids(&ok_lines(
            &dir,
            &[
                "runs",
                "--since",
                "2025-11-23T09:00:00+01:00",
                "--skill",
                "web.search"
            ]
        )),
        ["r-2", "r-1"]
    );
    assert_eq!(
        ids(&ok_lines(
            &dir,
            &["runs", "--until", &(T0 + 15).to_string()]
        )),
        ["c-1", "r-1"]
    );

    // count
    assert_eq!(
        ok_lines(&dir, &["count"]),
        [serde_json::json!({"count": 4})]
    );
    assert_eq!(
        ok_lines(
            &dir,
            &[
                "count",
                "--include-dry-run",
                "--caller",
                "u-42",
                "--status",
                "running"
            ]
        ),
        [serde_json::json!({"count": 3})]
    );

    // run ID: with logs in seq order, dry runs shown.
    let r = ok_lines(&dir, &["run", "r-1"]);
    assert_eq!(r.len(), 1);
    let logs = r[0]["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0]["seq"], 0);
    assert_eq!(logs[0]["payload"], serde_json::Value::Null);
    assert_eq!(logs[1]["payload"]["tool"], "http.get");
    let lk: Vec<&String> = logs[0].as_object().unwrap().keys().collect();
    assert_eq!(lk, ["seq", "ts", "event_type", "payload"]);
    assert_eq!(ok_lines(&dir, &["run", "r-3"])[0]["dry_run"], true);

    // children
    assert_eq!(ids(&ok_lines(&dir, &["children", "r-1"])), ["r-2"]);
    assert!(
        ok_lines(&dir, &["children", "r-2"]).is_empty(),
        "dry child hidden"
    );
    assert_eq!(
        ids(&ok_lines(&dir, &["children", "r-2", "--include-dry-run"])),
        ["r-3"]
    );
    assert!(ok_lines(&dir, &["children", "unknown"]).is_empty());

    // chain, cycle-safe
    assert_eq!(
        ids(&ok_lines(&dir, &["chain", "r-3"])),
        ["r-3", "r-2", "r-1"]
    );
    assert_eq!(ids(&ok_lines(&dir, &["chain", "c-1"])), ["c-1", "c-2"]);

    // last-run
    assert_eq!(
        ok_lines(&dir, &["last-run", "--skills", "web.search,code.run,none"]),
        [
            serde_json::json!({"web.search": "2025-11-23T08:00:02.000000Z", "code.run": null, "none": null})
        ]
    );
    let raw =
        String::from_utf8(run(&dir, &["last-run", "--skills", "x,web.search"]).stdout).unwrap();
    assert!(
        raw.starts_with("{\"x\":"),
        "skills in argument order: {raw}"
    );

    // errors
    let e = ok_lines(&dir, &["errors"]);
    assert_eq!(
        e,
        [
            serde_json::json!({"channel_id":"sess-7","tool":"http.get","error_type":"timeout","count":1,
            "first_ts":"2025-11-23T08:00:00.000100Z","last_ts":"2025-11-23T08:00:00.000100Z",
            "avg_duration_ms":5000.0,"caller_ids":["u-42"],"run_ids":["r-1"]})
        ]
    );
    let ek: Vec<&String> = e[0].as_object().unwrap().keys().collect();
    assert_eq!(
        ek,
        [
            "channel_id",
            "tool",
            "error_type",
            "count",
            "first_ts",
            "last_ts",
            "avg_duration_ms",
            "caller_ids",
            "run_ids"
        ]
    );
    assert!(ok_lines(&dir, &["errors", "--since", &(T0 + 101).to_string()]).is_empty());

    // tables
    for args in [
        &["runs"][..],
        &["errors"],
        &["last-run", "--skills", "x"],
        &["count"],
        &["run", "r-1"],
        &["chain", "r-2"],
    ] {
        let mut a = vec!["--format", "table"];
        a.extend_from_slice(args);
        let out = run(&dir, &a);
        assert!(out.status.success(), "{a:?}");
        assert!(!out.stdout.is_empty());
    }

    // stats anomalies
    let s = ok_lines(&dir, &["stats"]);
    assert!(s[0]["anomalies"].is_object(), "{}", s[0]);
}

#[test]
fn query_command_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    make_log(&dir);
    for args in [&["run", "nope"][..], &["chain", "nope"]] {
        let out = run(&dir, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    }
    let out = run(&dir, &["runs", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
    let out = run(&dir, &["last-run"]);
    assert!(!out.status.success(), "--skills is required");
    // A missing or foreign folder is an error, not an empty answer.
    let out = run(&tmp.path().join("missing"), &["runs"]);
    assert!(!out.status.success());
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "hi").unwrap();
    for cmd in ["runs", "count", "errors"] {
        let out = run(&foreign, &[cmd]);
        assert!(!out.status.success(), "{cmd}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}
