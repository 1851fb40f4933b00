//! The proof commands (docs/proofs.md): `keygen`, `--signing-key` on
//! `ingest` and `retain`, `checkpoints`, `prove`, `check-proof` (with a
//! trusted checkpoint and the auditor's copy of the event), `verify --key`;
//! and their refusals: a key inside the log folder, an existing key file,
//! malformed proof files, a proof against the wrong checkpoint.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::*;

fn bin(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A JSONL file of `n` runs (start + finish) on day `day`.
fn jsonl(dir: &Path, name: &str, day: i64, n: u64) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let ts = DAY0 + day * DAY_US + i as i64 * 1_000_000;
        text.push_str(&format!(
            "{{\"kind\":\"run_started\",\"run_id\":\"d{day}-{i}\",\"ts\":{ts},\"skill_id\":\"s\",\"inputs\":{{\"q\": \"x {i}\"}}}}\n"
        ));
        text.push_str(&format!(
            "{{\"kind\":\"run_finished\",\"run_id\":\"d{day}-{i}\",\"ts\":{},\"status\":\"ok\"}}\n",
            ts + 500
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

struct Setup {
    _t: tempfile::TempDir,
    root: PathBuf,
    log: PathBuf,
    key: PathBuf,
    pubkey: PathBuf,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let key = root.join("key");
    let (code, out, err) = bin(&["keygen", "--name", "test.example/log", "--out", s(&key)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"verifier_key\":\"test.example/log+"),
        "{out}"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is owner-only");
    let log = root.join("log");
    for day in 0..2 {
        let f = jsonl(&root, &format!("d{day}.jsonl"), day, 50);
        let (code, _, err) = cli(&log, &["--signing-key", s(&key), "ingest", s(&f)]);
        assert_eq!(code, 0, "{err}");
    }
    Setup {
        _t: t,
        pubkey: root.join("key.pub"),
        root,
        log,
        key,
    }
}

#[test]
fn keygen_refuses_to_overwrite_or_to_put_the_key_in_the_log() {
    let st = setup();
    let (code, _, err) = bin(&["keygen", "--name", "x", "--out", s(&st.key)]);
    assert_ne!(code, 0);
    assert!(err.contains("creating"), "{err}");
    let inside = st.log.join("key");
    let (code, _, err) = cli(&st.log, &["keygen", "--name", "x", "--out", s(&inside)]);
    assert_eq!(code, 2, "{err}");
    assert!(!inside.exists());
    let (code, _, err) = bin(&[
        "keygen",
        "--name",
        "has space",
        "--out",
        s(&st.root.join("k2")),
    ]);
    assert_eq!(code, 2, "{err}");
    // A signing key inside the log folder is refused too.
    std::fs::copy(&st.key, st.log.join("copied-key")).unwrap();
    let f = jsonl(&st.root, "more.jsonl", 1, 1);
    let inside = st.log.join("copied-key");
    let (code, _, err) = cli(&st.log, &["--signing-key", s(&inside), "ingest", s(&f)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the log folder"), "{err}");
}

#[test]
fn prove_and_check_proof_round_trip_with_a_trusted_checkpoint_and_the_event() {
    let st = setup();
    let (code, out, _) = cli(&st.log, &["checkpoints"]);
    assert_eq!(code, 0);
    let n = out.lines().count();
    assert!(
        n >= 2,
        "one per close (the seal at the day roll had nothing new): {out}"
    );
    let proof = st.root.join("p.json");
    let (code, _, err) = cli(&st.log, &["prove", "7", "--out", s(&proof)]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = bin(&["check-proof", s(&proof), "--key", s(&st.pubkey)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"ok\":true") && out.contains("\"run_id\":\"d0-3\""),
        "{out}"
    );
    // The public key given as text works as well as the file.
    let text = std::fs::read_to_string(&st.pubkey).unwrap();
    assert_eq!(bin(&["check-proof", s(&proof), "--key", text.trim()]).0, 0);

    // The newest checkpoint, saved by the auditor, is trusted instead of
    // the file's (same size).
    let trusted = st.root.join("trusted");
    let (_, note, _) = cli(&st.log, &["checkpoints", "--note"]);
    std::fs::write(&trusted, &note).unwrap();
    let args = [
        "check-proof",
        s(&proof),
        "--key",
        s(&st.pubkey),
        "--checkpoint",
        s(&trusted),
    ];
    assert_eq!(bin(&args).0, 0);
    // An older trusted checkpoint needs a proof against it.
    let (_, list, _) = cli(&st.log, &["checkpoints"]);
    let first_size: u64 = list
        .lines()
        .next()
        .unwrap()
        .split("\"tree_size\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let old = st.root.join("old");
    let size = first_size.to_string();
    let (_, old_note, _) = cli(&st.log, &["checkpoints", "--note", "--tree-size", &size]);
    std::fs::write(&old, &old_note).unwrap();
    let (code, out, _) = bin(&[
        "check-proof",
        s(&proof),
        "--key",
        s(&st.pubkey),
        "--checkpoint",
        s(&old),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("\"ok\":false") && out.contains("--tree-size"),
        "{out}"
    );
    let p_old = st.root.join("p-old.json");
    let (code, _, err) = cli(
        &st.log,
        &["prove", "7", "--tree-size", &size, "--out", s(&p_old)],
    );
    assert_eq!(code, 0, "{err}");
    let args = [
        "check-proof",
        s(&p_old),
        "--key",
        s(&st.pubkey),
        "--checkpoint",
        s(&old),
    ];
    assert_eq!(bin(&args).0, 0);

    // The auditor's copy of the event: as replay printed it, it matches;
    // any other event does not.
    let (_, replay, _) = cli(&st.log, &["replay", "--from-lsn", "7"]);
    let line7 = replay.lines().next().unwrap();
    let line8 = replay.lines().nth(1).unwrap();
    let ev = st.root.join("ev.json");
    std::fs::write(&ev, line7).unwrap();
    let args = [
        "check-proof",
        s(&proof),
        "--key",
        s(&st.pubkey),
        "--event",
        s(&ev),
    ];
    assert_eq!(bin(&args).0, 0, "the replayed event is the proven one");
    std::fs::write(&ev, line8).unwrap();
    let (code, out, _) = bin(&args);
    assert_eq!(code, 1);
    assert!(out.contains("not the one the proof proves"), "{out}");

    // Consistency, from the first checkpoint to the newest.
    let c = st.root.join("c.json");
    assert_eq!(
        cli(&st.log, &["prove", "--consistency", &size, "--out", s(&c)]).0,
        0
    );
    let (code, out, _) = bin(&["check-proof", s(&c), "--key", s(&st.pubkey)]);
    assert_eq!(code, 0);
    assert!(out.contains("\"kind\":\"consistency\""), "{out}");
    let args = [
        "check-proof",
        s(&c),
        "--key",
        s(&st.pubkey),
        "--old-checkpoint",
        s(&old),
    ];
    assert_eq!(bin(&args).0, 0);
    let args = [
        "check-proof",
        s(&c),
        "--key",
        s(&st.pubkey),
        "--event",
        s(&ev),
    ];
    assert_eq!(bin(&args).0, 1, "--event is for inclusion proofs");
}

#[test]
fn malformed_proofs_keys_and_requests_are_refused_clearly() {
    let st = setup();
    let proof = st.root.join("p.json");
    assert_eq!(cli(&st.log, &["prove", "3", "--out", s(&proof)]).0, 0);
    let good = std::fs::read_to_string(&proof).unwrap();
    let cases = [
        ("not json", "not a proof file"),
        ("{\"format\":\"something-else\"}", "unknown format"),
        (
            &good.replacen("\"version\": 1", "\"version\": 9", 1)[..],
            "version 9",
        ),
        (
            &good.replacen('{', "{\"extra\":1,", 1)[..],
            "not a proof file",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&proof, text).unwrap();
        let (code, out, _) = bin(&["check-proof", s(&proof), "--key", s(&st.pubkey)]);
        assert_eq!(code, 1, "{text}");
        assert!(out.contains(want), "{text}: {out}");
    }
    std::fs::write(&proof, &good).unwrap();
    let (code, _, err) = bin(&["check-proof", s(&proof), "--key", "no-such-key"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = bin(&[
        "check-proof",
        s(&st.root.join("missing.json")),
        "--key",
        s(&st.pubkey),
    ]);
    assert_eq!(code, 2, "{err}");
    // The private key is not a public key.
    let (code, _, err) = bin(&["check-proof", s(&proof), "--key", s(&st.key)]);
    assert_eq!(code, 2);
    assert!(err.contains("private"), "{err}");
    let (code, _, err) = cli(&st.log, &["prove", "999999"]);
    assert_ne!(code, 0);
    assert!(err.contains("not in the log"), "{err}");
    let (code, _, err) = cli(&st.log, &["prove", "3", "--tree-size", "5"]);
    assert_ne!(code, 0);
    assert!(err.contains("no checkpoint of tree size 5"), "{err}");
}

#[test]
fn verify_key_reports_the_tree_and_retention_signs_its_frontier() {
    let st = setup();
    let (code, out, err) = cli(&st.log, &["verify", "--key", s(&st.pubkey)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"tree\":{\"size\":") && out.contains("\"unsigned_events\":0"),
        "{out}"
    );
    let (code, out, err) = cli(
        &st.log,
        &[
            "--signing-key",
            s(&st.key),
            "retain",
            "--before",
            "2026-11-24T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"first_kept_lsn\":"), "{out}");
    let (code, out, err) = cli(&st.log, &["verify", "--key", s(&st.pubkey)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"retentions_verified\":1"), "{out}");
    // Another key verifies nothing.
    let other = st.root.join("other");
    assert_eq!(
        bin(&["keygen", "--name", "test.example/log", "--out", s(&other)]).0,
        0
    );
    let other_pub = st.root.join("other.pub");
    let (code, out, _) = cli(&st.log, &["verify", "--key", s(&other_pub)]);
    assert_eq!(code, 1);
    assert!(
        out.contains("not vouched for") || out.contains("not signed"),
        "{out}"
    );
    // A retention without the key leaves an unsigned note: verify --key
    // says so.
    let f = jsonl(&st.root, "d2.jsonl", 2, 10);
    assert_eq!(
        cli(&st.log, &["--signing-key", s(&st.key), "ingest", s(&f)]).0,
        0
    );
    let (code, _, err) = cli(&st.log, &["retain", "--before", "2099-01-01T00:00:00Z"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cli(&st.log, &["verify", "--key", s(&st.pubkey)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("carries no signed note"), "{out}");
}

#[test]
fn tiles_writes_the_checkpoint_and_tiles_and_refuses_the_log_folder() {
    let st = setup();
    let dest = st.root.join("tiles");
    let (code, out, err) = cli(&st.log, &["tiles", "--to", s(&dest)]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["checkpoint_written"], true, "{out}");
    let size = report["tree_size"].as_u64().unwrap();
    let note = std::fs::read_to_string(dest.join("checkpoint")).unwrap();
    assert!(
        note.starts_with(&format!("test.example/log\n{size}\n")),
        "{note}"
    );
    assert!(dest.join("tile/entries").is_dir());
    // The same as `checkpoints --note` prints.
    let (_, newest, _) = cli(&st.log, &["checkpoints", "--note"]);
    assert_eq!(newest, note);
    // A rerun checks what is there.
    let (code, out, _) = cli(&st.log, &["tiles", "--to", s(&dest), "--no-entries"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"full_tiles_written\":0"), "{out}");
    // Not inside the log folder; not a checkpoint the log lacks.
    let (code, _, err) = cli(&st.log, &["tiles", "--to", s(&st.log.join("t"))]);
    assert_ne!(code, 0);
    assert!(err.contains("inside the log folder"), "{err}");
    let (code, _, err) = cli(&st.log, &["tiles", "--to", s(&dest), "--tree-size", "3"]);
    assert_ne!(code, 0);
    assert!(err.contains("tree size 3"), "{err}");
}
