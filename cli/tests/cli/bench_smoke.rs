//! The load run (`auditlog bench`, the project's main job) end to end at a
//! tiny size, through the binary, with every baseline: its JSON report is
//! well formed (keys present, figures positive). Not its speed.

use std::process::Command;

use serde_json::Value;

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for k in path {
        cur = cur
            .get(*k)
            .unwrap_or_else(|| panic!("missing key {path:?} in {v}"));
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {cur}"))
}

/// `auditlog bench ARGS`, which must succeed, and its JSON report.
fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("bench")
        .args(args)
        .env_remove("AUDITLOG_DIR")
        .output()
        .expect("run auditlog bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn load_run_tiny_with_baselines_reports_well_formed_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plot = tmp.path().join("plot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args([
            "bench",
            "--json",
            "--events",
            "1500",
            "--query-ms",
            "5",
            "--mixed-secs",
            "0.3",
            "--paced-secs",
            "0.3",
            "--stages",
            "1",
            "--plot",
        ])
        .arg(&plot)
        .env_remove("AUDITLOG_DIR")
        .output()
        .expect("run auditlog bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    let v: Value = serde_json::from_str(text.trim()).expect("the report is JSON");

    assert!(num(&v, &["workload", "events"]) > 1000.0);
    assert!(num(&v, &["machine", "nproc"]) >= 1.0);
    let ingest = v["ingest"].as_array().expect("ingest lines");
    let systems: Vec<(&str, bool)> = ingest
        .iter()
        .map(|l| {
            (
                l["system"].as_str().expect("system"),
                l["durable"].as_bool().expect("durable"),
            )
        })
        .collect();
    for want in [
        ("auditlog", true),
        ("auditlog", false),
        ("sqlite", true),
        ("sqlite", false),
        ("jsonl", true),
        ("jsonl", false),
    ] {
        assert!(systems.contains(&want), "line {want:?} in {systems:?}");
    }
    for l in ingest {
        for k in [
            "events",
            "seconds",
            "events_per_sec",
            "mb_per_sec",
            "bytes_per_event",
        ] {
            assert!(num(l, &[k]) > 0.0, "{k} > 0 in {l}");
        }
        assert!(num(l, &["append_ms", "p50"]) > 0.0, "{l}");
        assert!(
            num(l, &["append_ms", "max"]) >= num(l, &["append_ms", "p99"]),
            "{l}"
        );
        assert!(!l["durability"].as_str().expect("durability").is_empty());
        if l["durable"].as_bool() == Some(true) {
            assert!(num(l, &["to_durable_ms", "p99"]) > 0.0, "{l}");
        }
        if l["system"] != "auditlog" {
            assert!(num(l, &["auditlog_speedup"]) > 0.0, "{l}");
        }
    }
    let queries = v["queries"].as_array().expect("queries");
    assert!(queries.len() >= 10, "every query kind");
    for q in queries {
        assert!(num(q, &["auditlog_after_ms", "p50"]) > 0.0, "{q}");
        assert!(num(q, &["sqlite_after_ms", "p50"]) > 0.0, "{q}");
        assert_eq!(q["answers_match"], Value::Bool(true), "same answers: {q}");
    }
    assert!(num(&v, &["paced", "to_durable_ms", "p99"]) > 0.0);
    // `--stages`: every stage reported, the sampled appends counted.
    let stages = v["paced"]["stages"]["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 8, "{stages:?}");
    assert!(stages
        .iter()
        .any(|s| s["stage"] == "total" && s["n"].as_u64() > Some(0)));
    assert!(num(&v, &["cli_ingest", "events_per_sec"]) > 0.0);
    // The child's CPU (getrusage of ended children, Linux only).
    if cfg!(target_os = "linux") {
        assert!(v["cli_ingest"]["cpu_seconds"]
            .as_f64()
            .is_some_and(|c| c >= 0.0));
        // User and system time apart, adding up to it.
        let part = |k: &str| num(&v, &["cli_ingest", k]);
        assert!(part("cpu_user_seconds") >= 0.0 && part("cpu_sys_seconds") >= 0.0);
        let sum = part("cpu_user_seconds") + part("cpu_sys_seconds");
        assert!(
            (sum - part("cpu_seconds")).abs() < 1e-3,
            "{}",
            v["cli_ingest"]
        );
        // Free memory as the child started.
        assert!(part("mem_free_bytes_at_start") > 0.0, "{}", v["cli_ingest"]);
        // The whole machine's CPU under the peak and the paced phase: its
        // shares add up to the machine's time, busy is what is not idle.
        // The peak of 1,500 events may end within one clock tick (`null`:
        // nothing counted); the paced phase lasts 0.3 s.
        assert!(v["paced"]["machine_cpu"].is_object(), "{}", v["paced"]);
        for m in [&v["peak_machine_cpu"], &v["paced"]["machine_cpu"]] {
            if m.is_null() {
                continue;
            }
            let share = |k: &str| num(m, &[k]);
            let kinds = [
                "user", "nice", "system", "irq", "softirq", "steal", "iowait", "idle",
            ];
            assert!(kinds.iter().all(|k| (0.0..=1.0).contains(&share(k))), "{m}");
            let sum: f64 = kinds.iter().map(|k| share(k)).sum();
            assert!((sum - 1.0).abs() < 1e-5, "{m}"); // six decimals each
            let busy = 1.0 - share("idle") - share("iowait");
            assert!((share("busy") - busy).abs() < 1e-5, "{m}");
            // The busy time in CPU seconds (USER_HZ ticks): at most the
            // whole machine's time, which the phase's shares divide.
            assert!(share("busy_cpu_seconds") >= 0.0, "{m}");
        }
    }
    assert_eq!(
        num(&v, &["cli_ingest", "events"]),
        num(&v, &["workload", "events"])
    );
    // Opening the kept log in new processes: time and their own peak RSS.
    assert!(num(&v, &["open", "ms"]) > 0.0);
    assert!(num(&v, &["open", "peak_rss_bytes"]) > 0.0);
    assert!(num(&v, &["open", "segments"]) >= 1.0);
    assert!(num(&v, &["open", "events"]) >= num(&v, &["workload", "events"]));
    let opens = v["open"]["queries"].as_array().expect("open queries");
    assert_eq!(opens.len(), 2, "{opens:?}");
    for q in opens {
        assert!(num(q, &["ms"]) > 0.0, "{q}");
        assert!(num(q, &["peak_rss_bytes"]) > 0.0, "{q}");
        assert!(q["command"].as_str().is_some_and(|c| !c.is_empty()));
    }
    assert!(num(&v, &["jsonl_scan_errors_1d", "ms", "p50"]) > 0.0);
    assert!(num(&v, &["disk_mb_per_sec"]) > 0.0);
    assert!(v["mixed_ingest"]["auditlog_events_per_sec"]
        .as_f64()
        .is_some());
    assert!(v["timeline"].is_array());
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
}

#[test]
fn sustained_mode_reports_memory_and_retention() {
    let v = bench_json(&[
        "--json",
        "--duration",
        "2s",
        "--events",
        "3000",
        "--days",
        "6",
        "--retain-days",
        "2",
    ]);
    assert!(num(&v, &["sustained", "events"]) > 0.0);
    assert!(num(&v, &["sustained", "passes"]) >= 1.0);
    assert!(num(&v, &["sustained", "rss_max_second_half"]) > 0.0);
    assert!(v["timeline"].as_array().is_some_and(|t| !t.is_empty()));
}

/// `--rate` paces the sustained run (the producers never exceed it; a
/// loaded machine can only make them slower) and the report says how far
/// the indexes lagged, sample by sample.
#[test]
fn sustained_mode_paces_and_reports_index_lag() {
    let v = bench_json(&[
        "--json",
        "--duration",
        "2s",
        "--rate",
        "5000",
        "--events",
        "3000",
        "--days",
        "6",
        "--retain-days",
        "2",
    ]);
    assert_eq!(num(&v, &["sustained", "rate"]), 5000.0);
    let events = num(&v, &["sustained", "events"]);
    let seconds = num(&v, &["sustained", "seconds"]);
    assert!(events > 0.0);
    assert!(
        events <= 5000.0 * seconds * 1.2 + 100.0,
        "{events} events in {seconds} s at 5000/s"
    );
    let samples = num(&v, &["sustained", "samples"]);
    assert!(samples >= 1.0);
    assert!(num(&v, &["sustained", "samples_within_one_roll"]) <= samples);
    assert!(
        num(&v, &["sustained", "index_lag_median_segments"])
            <= num(&v, &["sustained", "index_lag_max_segments"])
    );
    // Seal to index per sealed segment (lag39): counts that add up.
    let s2i = |k: &str| num(&v, &["sustained", "seal_to_index", k]);
    assert!(s2i("within_one_roll") <= s2i("indexed"));
    assert!(s2i("dropped_unindexed") >= 0.0 && s2i("waiting_at_end") >= 0.0);
    let per = v["sustained"]["seal_to_index"]["seal_t_ms"]
        .as_array()
        .unwrap();
    assert_eq!(per.len() as f64, s2i("indexed"));
}

#[test]
fn rate_without_duration_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["bench", "--quick", "--events", "100", "--rate", "1000"])
        .env_remove("AUDITLOG_DIR")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}

#[test]
fn refuses_a_folder_that_holds_something() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("keep.txt"), "x").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["bench", "--quick", "--events", "100", "--dir"])
        .arg(tmp.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty or missing folder"));
}
