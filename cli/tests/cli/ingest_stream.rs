//! `tail -f gateway.jsonl | auditlog ingest -`: each line is stored while
//! the pipe stays open, not when 4 MiB have come or the input ends.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Events stored so far (0 while the log has no MANIFEST yet).
fn stored(dir: &std::path::Path) -> usize {
    auditlog::LogReader::open(dir)
        .map(|r| r.replay(auditlog::ReplayRange::default()).count())
        .unwrap_or(0)
}

fn wait_for(dir: &std::path::Path, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if stored(dir) >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_quiet_pipe_stores_each_line_while_it_stays_open() {
    let (_t, dir) = scratch();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("--dir")
        .arg(&dir)
        .args(["ingest", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..3u64 {
        let line = format!(
            "{{\"kind\":\"run_started\",\"run_id\":\"stream-{i}\",\"ts\":{}}}\n",
            DAY0 + i as i64
        );
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
        assert!(
            wait_for(&dir, i as usize + 1),
            "line {i} was not stored while the pipe stayed open"
        );
    }
    // A line without its newline yet is not an event: it waits.
    stdin
        .write_all(b"{\"kind\":\"run_started\",\"run_id\":\"stream-3\"")
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(stored(&dir), 3);
    stdin
        .write_all(format!(",\"ts\":{}}}\n", DAY0 + 3).as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        run_ids(&dir),
        ["stream-0", "stream-1", "stream-2", "stream-3"]
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("\"accepted\":4"), "{summary}");
}

#[test]
fn a_busy_pipe_still_fills_whole_chunks() {
    // 200k lines through a pipe: all stored, in order, with the same
    // summary as from a file (throughput: docs/benchmarks.md).
    let (_t, dir) = scratch();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("--dir")
        .arg(&dir)
        .args(["ingest", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut buf = String::new();
        for i in 0..200_000i64 {
            buf.push_str(&format!(
                "{{\"kind\":\"run_started\",\"run_id\":\"b-{i}\",\"ts\":{}}}\n",
                DAY0 + i
            ));
            if buf.len() > 1 << 16 {
                stdin.write_all(buf.as_bytes()).unwrap();
                buf.clear();
            }
        }
        stdin.write_all(buf.as_bytes()).unwrap();
    });
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = run_ids(&dir);
    assert_eq!(ids.len(), 200_000);
    assert!(ids
        .iter()
        .enumerate()
        .all(|(i, id)| *id == format!("b-{i}")));
}
