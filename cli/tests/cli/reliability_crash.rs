//! Crash torture: a child process (this test binary, re-run with
//! AUDITLOG_CRASH_CHILD set) appends batches from several threads with
//! `Durability::EveryBatch` and prints every durably acknowledged range;
//! the parent kills it with SIGKILL at a random moment, reopens the log and
//! checks that every acknowledged event is there exactly once, at the LSNs
//! its receipt gave, that the chain verifies, and that nothing was invented.
//! Dozens of kills in the normal suite; hundreds with AUDITLOG_LONG=1.
//!
//! Every fifth kill the derived indexes are checked against the log too:
//! the command line's `count` (per-segment indexes, built or reused after
//! the crash) must agree with a replay.

use crate::support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog::{verify, Config, Durability, Log};
use support::*;

const CHILD_ENV: &str = "AUDITLOG_CRASH_CHILD";
const THREADS: u64 = 3;
const PER_THREAD: u64 = 1_000_000;

/// The child: runs only when the parent re-executes this binary.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let base: u64 = std::env::var("AUDITLOG_CRASH_BASE")
        .unwrap()
        .parse()
        .unwrap();
    let day: i64 = std::env::var("AUDITLOG_CRASH_DAY")
        .unwrap()
        .parse()
        .unwrap();
    let mut cfg = Config::new(&dir);
    cfg.durability = Durability::EveryBatch;
    cfg.segment_max_bytes = 64 * 1024; // rolls and seals while being killed
    cfg.max_batch_bytes = 8 * 1024;
    let log = Arc::new(Log::open(cfg).expect("child opens the log"));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(base + t);
                let mut n = base + t * PER_THREAD;
                let end = n + PER_THREAD;
                while n + 32 < end {
                    let k = rng.u64(1..24);
                    let d = day + rng.i64(0..2);
                    let batch: Vec<_> = (n..n + k)
                        .map(|i| ev(i, DAY0 + d * DAY_US + (i % 1_000_000) as i64))
                        .collect();
                    let r = log.append_batch(&batch).expect("append");
                    let lsns = r.wait().expect("durable");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {} {} {} {}", n, n + k - 1, lsns.first, lsns.last).unwrap();
                    out.flush().unwrap();
                    n += k;
                    if t == 0 && rng.u8(..) < 8 {
                        log.seal().expect("seal");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

struct Ack {
    first_n: u64,
    last_n: u64,
    first_lsn: u64,
    last_lsn: u64,
}

/// Run one child for `ms` milliseconds, SIGKILL it, and return what it
/// acknowledged (whole lines only: a line cut by the kill never counted).
fn run_and_kill(dir: &Path, base: u64, day: i64, ms: u64) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reliability_crash::crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .env("AUDITLOG_CRASH_BASE", base.to_string())
        .env("AUDITLOG_CRASH_DAY", day.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') && line.starts_with("ACK ") {
                let v: Vec<u64> = line[4..]
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect();
                acks.push(Ack {
                    first_n: v[0],
                    last_n: v[1],
                    first_lsn: v[2],
                    last_lsn: v[3],
                });
            }
            line.clear();
        }
        acks
    });
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().unwrap()
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = support::cli(dir, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// The index-backed queries agree with a replay of the recovered log.
fn check_indexes(dir: &Path, stored: &[(u64, auditlog::Event)], rng: &mut fastrand::Rng) {
    let count = cli(dir, &["count"]);
    assert_eq!(count.trim(), format!("{{\"count\":{}}}", stored.len()));
    let c = rng.u64(0..7);
    let want = stored
        .iter()
        .filter(|(_, e)| e.run_id[3..].parse::<u64>().unwrap() % 7 == c)
        .count();
    let got = cli(dir, &["count", "--caller", &format!("caller-{c}")]);
    assert_eq!(got.trim(), format!("{{\"count\":{want}}}"));
    if !stored.is_empty() {
        let (_, e) = &stored[rng.usize(..stored.len())];
        let run = cli(dir, &["run", &e.run_id]);
        assert!(run.contains(&format!("\"id\":\"{}\"", e.run_id)), "{run}");
    }
}

/// A recovery cut took only a torn tail: the bytes it moved into
/// quarantine/ hold no whole, CRC-valid commit record (nothing committed
/// was after the cut), they start where the last valid block ends, and
/// they are byte for byte what the segment held there.
fn cut_only_a_torn_tail(dir: &Path, c: &auditlog::system::Cut, it: u64) {
    let q = std::fs::read(dir.join(&c.quarantine)).unwrap();
    assert_eq!(q.len() as u64, c.quarantine_bytes, "iteration {it}");
    let body = &q[(c.valid_end - c.quarantine_from) as usize..];
    assert!(
        !auditlog::internals::segment::has_commit_record(body),
        "iteration {it}: a cut took a committed block: {c:?}"
    );
    assert!(c.damage_offset >= c.valid_end, "iteration {it}: {c:?}");
    assert!(c.reason.starts_with("torn"), "iteration {it}: {c:?}");
}

fn torture(iterations: u64) {
    let start = Instant::now();
    let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
    let mut survived = 0u64;
    let mut acked_total = 0u64;
    let mut cut_tails = 0u64;
    let mut early_kills = 0u64;
    // Cuts recorded in the current log (each is a system event in it).
    let mut recorded_cuts = 0u64;
    let mut t = None;
    let mut dir = std::path::PathBuf::new();
    // Everything acknowledged in this log: run id -> LSN.
    let mut want: HashMap<String, u64> = HashMap::new();
    for it in 0..iterations {
        if it % 10 == 0 {
            // A fresh log every ten kills keeps each check cheap.
            let (tt, d) = scratch();
            t = Some(tt);
            dir = d;
            want.clear();
            recorded_cuts = 0;
        }
        let base = (it + 1) * THREADS * PER_THREAD;
        let ms = rng.u64(15..250);
        let acks = run_and_kill(&dir, base, (it % 10) as i64, ms);
        for a in &acks {
            assert_eq!(a.last_n - a.first_n, a.last_lsn - a.first_lsn);
            for (i, n) in (a.first_n..=a.last_n).enumerate() {
                want.insert(format!("ev-{n}"), a.first_lsn + i as u64);
            }
            acked_total += a.last_n - a.first_n + 1;
        }
        // What a crashed folder looks like to an auditor: it verifies
        // (a torn tail is reported, not an error).
        match verify(&dir, None, |_, _| {}) {
            Ok(rep) => {
                if rep.uncommitted_tail_bytes > 0 {
                    cut_tails += 1;
                }
            }
            // Killed while creating the log, before its MANIFEST existed:
            // nothing can have been acknowledged.
            Err(auditlog::Error::NoLog(_)) if want.is_empty() => early_kills += 1,
            Err(e) => panic!("iteration {it}: crashed log does not verify: {e}"),
        }
        // Reopen for writing: recovery cuts the torn tail, and only that.
        let log = Log::open(Config::new(&dir))
            .unwrap_or_else(|e| panic!("iteration {it}: reopen failed: {e}"));
        if let Some(c) = log.recovery().cut.clone() {
            cut_tails += 1;
            recorded_cuts += 1;
            cut_only_a_torn_tail(&dir, &c, it);
        }
        log.close().unwrap();
        verify(&dir, None, |_, _| {})
            .unwrap_or_else(|e| panic!("iteration {it}: recovered log does not verify: {e}"));
        let all = replay_all(&dir);
        // Every cut is recorded in the log, and nothing else is a system event.
        let recorded = all.iter().filter(|(_, e)| e.is_system()).count() as u64;
        assert_eq!(recorded, recorded_cuts, "iteration {it}: cuts recorded");
        let stored: Vec<_> = all.into_iter().filter(|(_, e)| !e.is_system()).collect();
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for (lsn, e) in &stored {
            assert!(e.run_id.starts_with("ev-"), "invented event {:?}", e.run_id);
            assert!(
                seen.insert(e.run_id.as_str(), *lsn).is_none(),
                "iteration {it}: {} stored twice",
                e.run_id
            );
        }
        for (id, lsn) in &want {
            assert_eq!(
                seen.get(id.as_str()),
                Some(lsn),
                "iteration {it}: acknowledged {id} (LSN {lsn}) lost or moved after SIGKILL at {ms} ms"
            );
        }
        if it % 5 == 4 {
            check_indexes(&dir, &stored, &mut rng);
        }
        survived += 1;
    }
    drop(t);
    let line = format!(
        "crash iterations={survived} acked_events={acked_total} torn_tails_seen={cut_tails} killed_before_create={early_kills} lost=0 secs={:.1}",
        start.elapsed().as_secs_f64()
    );
    println!("{line}");
    record_figure(&line);
}

#[test]
fn sigkill_never_loses_an_acknowledged_event() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let long = std::env::var_os("AUDITLOG_LONG").is_some();
    torture(if long { 300 } else { 60 });
}
