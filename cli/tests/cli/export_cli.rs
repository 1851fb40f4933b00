//! `export`, `verify-export` and `retain --exported-first` on the command
//! line: their outputs, and the errors a person meets.

use auditlog::{Config, Log};

use crate::support::{cli, ev, scratch, DAY_US};

const T0: i64 = 1_795_132_800_000_000;

/// A log of three days, the last one still open.
fn three_days(dir: &std::path::Path) {
    let log = Log::open(Config::new(dir)).unwrap();
    for d in 0..3 {
        for i in 0..20u64 {
            let _ = log
                .append(&ev(d as u64 * 100 + i, T0 + d * DAY_US + i as i64))
                .unwrap();
        }
    }
    log.flush().unwrap();
    log.close().unwrap();
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.lines().next().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {s:?}"))
}

#[test]
fn export_then_retain_exported_first_then_verify_without_the_log() {
    let (t, dir) = scratch();
    three_days(&dir);
    let out = t.path().join("out");
    let out_s = out.to_str().unwrap();
    let (code, stdout, _) = cli(
        &dir,
        &[
            "retain",
            "--before",
            "2030-01-01T00:00:00Z",
            "--exported-first",
        ],
    );
    assert_eq!(code, 0);
    let r = json(&stdout);
    assert_eq!(r["dropped_segments"].as_array().unwrap().len(), 0);
    assert_eq!(r["held_for_export"].as_array().unwrap().len(), 2, "{r}");

    let (code, stdout, stderr) = cli(&dir, &["export", "--to", out_s]);
    assert_eq!(code, 0, "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["segments"], serde_json::json!([1, 2]));
    assert_eq!(r["events"], 40);
    let mut exported = 40;

    let (code, stdout, _) = cli(
        &dir,
        &[
            "retain",
            "--before",
            "2030-01-01T00:00:00Z",
            "--exported-first",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        json(&stdout)["dropped_segments"].as_array().unwrap().len(),
        2
    );

    // Retention carried the runs still running forward (re-appended as
    // amending events) before it dropped their segments: they are events
    // of the log like any other, and the export holds them too.
    let (code, stdout, stderr) = cli(&dir, &["export", "--to", out_s, "--seal"]);
    assert_eq!(code, 0, "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["segments"], serde_json::json!([3]));
    exported += r["events"].as_u64().unwrap();
    assert!(exported >= 60, "{r}");

    std::fs::remove_dir_all(&dir).unwrap();
    let out_cli = std::process::Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(["verify-export", out_s])
        .output()
        .unwrap();
    assert!(
        out_cli.status.success(),
        "{}",
        String::from_utf8_lossy(&out_cli.stderr)
    );
    let v = json(&String::from_utf8_lossy(&out_cli.stdout));
    assert_eq!(v["ok"], true);
    assert_eq!(v["logs"][0]["events"], exported);
    assert_eq!(v["logs"][0]["segments_checked_against_log"], 0);
}

#[test]
fn verify_export_names_a_broken_file_and_exits_1() {
    let (t, dir) = scratch();
    three_days(&dir);
    let out = t.path().join("out");
    let out_s = out.to_str().unwrap();
    assert_eq!(cli(&dir, &["export", "--to", out_s]).0, 0);
    let victim = walk(&out)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("table=events"))
        .unwrap();
    let mut b = std::fs::read(&victim).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x40;
    std::fs::write(&victim, b).unwrap();
    let (code, stdout, stderr) = cli(&dir, &["verify-export", out_s]);
    assert_eq!(code, 1, "{stdout} {stderr}");
    let v = json(&stdout);
    assert_eq!(v["ok"], false);
    assert!(v["place"].as_str().unwrap().contains("table=events"), "{v}");
    assert!(stderr.contains("BLAKE3"), "{stderr}");
}

#[test]
fn export_errors_say_what_to_do() {
    let (t, dir) = scratch();
    let out = t.path().join("out");
    let (code, _, stderr) = cli(&dir, &["export", "--to", out.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no auditlog"), "{stderr}");
    three_days(&dir);
    let (code, _, stderr) = cli(&dir, &["export", "--to", "ftp://host/x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown scheme"), "{stderr}");
    let (code, _, stderr) = cli(&dir, &["verify-export", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no export"), "{stderr}");
    // A writer holds the log: --seal cannot take it.
    let log = Log::open(Config::new(&dir)).unwrap();
    let (code, _, stderr) = cli(&dir, &["export", "--to", out.to_str().unwrap(), "--seal"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("open for writing"), "{stderr}");
    // Without --seal, exporting beside a running writer is fine.
    let (code, _, stderr) = cli(&dir, &["export", "--to", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    log.close().unwrap();
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
