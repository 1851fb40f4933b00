//! What the Merkle tree and signed checkpoints cost, and what proofs cost
//! (issue 19, docs/benchmarks.md "Proofs"):
//!
//! 1. ingest throughput with the tree off, the tree on, and the tree on
//!    with checkpoints signed (every seal, close, and every 10 s), in the
//!    same run, rounds interleaved so that the machine's drift hits every
//!    variant alike: the load run's durable-peak phase (its workload, its
//!    producers, 1 event per append, `EveryBatch`, run by
//!    `auditlog_loadrun::ingest::run_phase`) on a fresh log per variant;
//! 2. at a log of `--proof-events` events (10M for the figures in the
//!    docs): inclusion and consistency proof generation (median, p99) and
//!    checking time, proof sizes, and `verify` with and without the key.
//!
//! `cargo bench -p auditlog-benches --bench tree -- --events 2000000
//! --rounds 3 --proof-events 10000000`. Besides the table of medians it
//! prints, per variant, the spread of its same-round ratio to tree off
//! (events/s, and CPU per event during the burst): quartiles, range and a
//! bootstrap 95% interval of the median, to tell how many rounds a
//! difference of a few points needs on a shared machine. Run by `cargo test` (without
//! `--bench`) it does a tiny pass of each, as a smoke test.

use std::time::{Duration, Instant};

use auditlog::tlog::SignerKey;
use auditlog::tree::CheckpointConfig;
use auditlog::{Config, Durability, Event, Log, LogReader, VerifyOptions};
use auditlog_loadrun::ingest::{run_phase, Phase};
use auditlog_loadrun::workload::WorkloadSpec;

struct Args {
    events: u64,
    rounds: usize,
    proof_events: u64,
    proofs: usize,
    /// `--only off|on|checkpoints`: run one variant (to profile it alone).
    only: Option<String>,
    /// `--interval-ms N`: how often the checkpoints variant signs (besides
    /// every seal and close); 10 s by default, so that a 2M-event round
    /// signs only at its seal and close. Shorter, it prices each checkpoint.
    interval: Duration,
    /// `--days N`: the simulated days the workload spans (a segment per
    /// day): 30 by default, so a 2M-event round seals ~31 segments, each
    /// with its checkpoint (a seal every ~65,000 events, many per second);
    /// `--days 1` rolls only at the segment size limit, as a gateway that
    /// rolls daily does within a burst.
    days: u32,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let bench = argv.iter().any(|a| a == "--bench");
    let get = |name: &str, default: u64| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if !bench {
        return Args {
            events: 20_000,
            rounds: 1,
            proof_events: 20_000,
            proofs: 20,
            only: None,
            interval: Duration::from_secs(10),
            days: 30,
        };
    }
    Args {
        events: get("--events", 2_000_000),
        rounds: get("--rounds", 3) as usize,
        proof_events: get("--proof-events", 10_000_000),
        proofs: get("--proofs", 200) as usize,
        only: argv
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| argv.get(i + 1))
            .cloned(),
        interval: Duration::from_millis(get("--interval-ms", 10_000)),
        days: get("--days", 30) as u32,
    }
}

/// The workload split over 2 producers run by run, as the load run does.
fn shares(events: u64, days: u32) -> Vec<Vec<Event>> {
    let spec = WorkloadSpec {
        runs: events / 8,
        days: days.max(1),
        ..WorkloadSpec::default()
    };
    let mut out = vec![Vec::new(), Vec::new()];
    for run in 0..spec.runs {
        out[(run % 2) as usize].extend(spec.events(run, run + 1));
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    TreeOff,
    Tree,
    TreeAndCheckpoints,
}

impl Variant {
    fn flag(self) -> &'static str {
        match self {
            Variant::TreeOff => "off",
            Variant::Tree => "on",
            Variant::TreeAndCheckpoints => "checkpoints",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::TreeOff => "tree off",
            Variant::Tree => "tree on",
            Variant::TreeAndCheckpoints => "tree + checkpoints",
        }
    }
}

fn config(dir: &std::path::Path, v: Variant, keys: &std::path::Path, interval: Duration) -> Config {
    let mut cfg = Config::new(dir);
    cfg.durability = Durability::EveryBatch;
    cfg.merkle_tree = v != Variant::TreeOff;
    if v == Variant::TreeAndCheckpoints {
        cfg.checkpoints = Some(CheckpointConfig {
            key: SignerKey::from_seed("bench.example/log", [7; 32]).expect("key"),
            interval,
            state: Some(keys.join("key.state")),
        });
    }
    cfg
}

/// CPU seconds this process has used (user + system), from /proc: on a
/// machine shared with other work, CPU per event measures the cost of the
/// tree more steadily than wall-clock throughput does.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line (11 and 12 here).
    (ticks(11) + ticks(12)) / 100.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ingest(a: &Args) {
    let mut sh = shares(a.events, a.days);
    let total: usize = sh.iter().map(Vec::len).sum();
    let variants = [Variant::TreeOff, Variant::Tree, Variant::TreeAndCheckpoints];
    let mut eps: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut behind: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut closes: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut catch_up: Vec<Vec<f64>> = vec![Vec::new(); 3];
    // CPU per event during the burst alone (not the catch-up after it):
    // what each variant costs the ingest, apart from the machine's swings
    // in wall-clock throughput.
    let mut burst_cpu: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..a.rounds {
        for k in 0..3 {
            let i = (round + k) % 3;
            if a.only.as_deref().is_some_and(|o| o != variants[i].flag()) {
                continue;
            }
            let tmp = tempfile::tempdir().expect("tempdir");
            let keys = tmp.path().join("keys");
            std::fs::create_dir(&keys).expect("keys");
            let log = Log::open(config(
                &tmp.path().join("log"),
                variants[i],
                &keys,
                a.interval,
            ))
            .expect("open");
            let c0 = cpu_seconds();
            let wall0 = wall_micros();
            // How far the tree thread falls behind the writer: sampled
            // every 2 ms during the phase, and at its end.
            let running = std::sync::atomic::AtomicBool::new(true);
            let (mut phase_cpu, mut wall_end) = (0.0, 0);
            let (res, max_behind, end_behind) = std::thread::scope(|s| {
                let watch = s.spawn(|| {
                    let mut max = 0u64;
                    while running.load(std::sync::atomic::Ordering::Relaxed) {
                        max = max.max(log.tree_behind());
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    max
                });
                let res = run_phase(&log, &mut sh, &Phase::new(1)).expect("phase");
                let end = log.tree_behind();
                phase_cpu = cpu_seconds() - c0;
                wall_end = wall_micros();
                running.store(false, std::sync::atomic::Ordering::Relaxed);
                (res, watch.join().expect("watch").max(end), end)
            });
            // How long after the burst the tree thread needs to combine
            // what it was behind (polled every 0.5 ms, at most 10 s).
            let t_catch = Instant::now();
            while log.tree_behind() > 0 && t_catch.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_micros(500));
            }
            let catch_ms = ms(t_catch.elapsed());
            // How the writer waited for the tree during the burst (each
            // checkpoint and seal takes it).
            let waits = log.tree_waits();
            let t_close = Instant::now();
            log.close().expect("close");
            let close_ms = ms(t_close.elapsed());
            let us = (cpu_seconds() - c0) * 1e6 / res.events as f64;
            // Counted after the CPU figure: reading them is not ingest.
            let cps = LogReader::open(&tmp.path().join("log"))
                .and_then(|r| r.checkpoints())
                .unwrap_or_default();
            let signed = cps.len();
            let sizes: Vec<(u64, i64)> = cps
                .iter()
                .map(|c| (c.record.tree_size, c.record.signed_at))
                .collect();
            let r = res.events as f64 / res.seconds;
            let d = res.to_durable.value_at_quantile(0.99) as f64 / 1e6;
            println!(
                "round {round} {:<20} {:>12.0} events/s  durable p99 {d:.1} ms  CPU {us:.2} µs/event  tree behind max {max_behind} end {end_behind} events  caught up after {catch_ms:.1} ms  close {close_ms:.0} ms  {signed} checkpoints",
                variants[i].name(),
                r
            );
            // Where the CPU went, per thread (µs per event; run-queue
            // wait per event beside it): tells total CPU from one thread's
            // serial path as the bound.
            let per_thread: Vec<String> = res
                .threads
                .iter()
                .map(|(name, t)| {
                    let per = |ns: u64| ns as f64 / 1e3 / res.events as f64;
                    // Slices: times the thread was put on a core (each
                    // wake-up is one), per 1,000 events.
                    let slices = t.slices as f64 * 1e3 / res.events as f64;
                    format!(
                        "{name} {:.3}/{:.3}/{slices:.1}",
                        per(t.cpu_ns),
                        per(t.wait_ns)
                    )
                })
                .collect();
            if variants[i] == Variant::TreeAndCheckpoints {
                println!(
                    "    {}",
                    unsigned_window(&sizes, (wall0, wall_end), res.events)
                );
            }
            println!(
                "    CPU during the burst {:.2} µs/event, after it (the tree's catch-up, close) {:.2}",
                phase_cpu * 1e6 / res.events as f64,
                us - phase_cpu * 1e6 / res.events as f64
            );
            if waits.calls > 0 {
                println!(
                    "    writer took the tree {} times: lock wait {:.1} ms total, {:.2} ms longest; its catch-up {:.1} ms total",
                    waits.calls,
                    ms(waits.lock_wait),
                    ms(waits.longest_lock_wait),
                    ms(waits.catch_up)
                );
            }
            println!(
                "    threads, CPU/run-queue wait µs per event/slices per 1k events: {}",
                per_thread.join(", ")
            );
            behind[i].push(max_behind as f64);
            closes[i].push(close_ms);
            catch_up[i].push(catch_ms);
            eps[i].push(r);
            p99[i].push(d);
            cpu[i].push(us);
            burst_cpu[i].push(phase_cpu * 1e6 / res.events as f64);
        }
    }
    println!(
        "\n{total} events, 2 producers, 1 event per append, EveryBatch, {} rounds (medians)",
        a.rounds
    );
    println!("| variant | events/s | of tree off | same round, of tree off | durable p99 ms | CPU µs/event | of tree off | same round, of tree off | tree behind max (events) | caught up after, max ms | close ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Each round runs the variants back to back, so a variant's ratio to
    // tree off within one round is steadier on a shared machine than the
    // ratio of the medians; its median is printed beside.
    let same_round = |v: &[f64], base: &[f64]| {
        let mut r: Vec<f64> = v.iter().zip(base).map(|(a, b)| a / b).collect();
        match v.len() == base.len() {
            true => 100.0 * median(&mut r),
            false => f64::NAN,
        }
    };
    let eps_ratio: Vec<f64> = (0..3).map(|i| same_round(&eps[i], &eps[0])).collect();
    let cpu_ratio: Vec<f64> = (0..3).map(|i| same_round(&cpu[i], &cpu[0])).collect();
    let base = median(&mut eps[0].clone());
    let base_cpu = median(&mut cpu[0].clone());
    for (i, v) in variants.iter().enumerate() {
        if eps[i].is_empty() {
            continue;
        }
        let m = median(&mut eps[i]);
        let c = median(&mut cpu[i]);
        let caught = catch_up[i].iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.0} | {:.1}% | {:.1}% | {:.1} | {:.2} | {:.1}% | {:.1}% | {:.0} | {caught:.1} | {:.0} |",
            v.name(),
            m,
            100.0 * m / base,
            eps_ratio[i],
            median(&mut p99[i]),
            c,
            100.0 * c / base_cpu,
            cpu_ratio[i],
            median(&mut behind[i]),
            median(&mut closes[i])
        );
    }
    spread(&eps, "events/s");
    spread(&burst_cpu, "CPU µs/event during the burst");
}

/// The spread of each variant's same-round ratio to tree off over the
/// rounds (`per[variant][round]`): median, quartiles, range and a
/// bootstrap 95% interval of the median. Single rounds on a shared
/// machine swing by tens of points, so a difference of a few points
/// needs many rounds, and this says how far the median can be trusted.
fn spread(per: &[Vec<f64>], what: &str) {
    let variants = ["tree on", "tree + checkpoints"];
    for (name, v) in variants.iter().zip(&per[1..]) {
        if v.is_empty() || v.len() != per[0].len() {
            continue;
        }
        let mut r: Vec<f64> = v.iter().zip(&per[0]).map(|(a, b)| 100.0 * a / b).collect();
        let (lo, hi) = bootstrap_median(&r, 4000);
        println!(
            "{name}, {what}, same round of tree off over {} rounds: median {:.1}% (quartiles {:.1}-{:.1}; range {:.1}-{:.1}; bootstrap 95% interval of the median {lo:.1}-{hi:.1})",
            r.len(),
            pct(&mut r, 0.5),
            pct(&mut r, 0.25),
            pct(&mut r, 0.75),
            pct(&mut r, 0.0),
            pct(&mut r, 1.0),
        );
    }
}

/// The 2.5% and 97.5% quantiles of the median of `v` resampled with
/// replacement `n` times (a fixed seed: the same rounds print the same
/// interval).
fn bootstrap_median(v: &[f64], n: usize) -> (f64, f64) {
    let mut rng = fastrand::Rng::with_seed(38);
    let mut meds: Vec<f64> = (0..n)
        .map(|_| {
            let mut s: Vec<f64> = (0..v.len()).map(|_| v[rng.usize(0..v.len())]).collect();
            median(&mut s)
        })
        .collect();
    (pct(&mut meds, 0.025), pct(&mut meds, 0.975))
}

/// The wall clock, µs since the Unix epoch (as a checkpoint's
/// `signed_at`).
fn wall_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// How long events stayed unsigned during the burst `(start, end)` (wall
/// µs) of `events` events, from the checkpoints' sizes and signing times:
/// an event's append time is estimated from its LSN at the burst's mean
/// rate (the workload is steady), so the events a checkpoint newly covers
/// waited from the first of them to its signing. Printed: the longest
/// such wait among checkpoints signed during the burst, and at the burst's
/// end the events no checkpoint signed during it covers and the age of the
/// oldest of them.
fn unsigned_window(cps: &[(u64, i64)], (start, end): (i64, i64), events: u64) -> String {
    let span = (end - start).max(1) as f64;
    let written_at = |lsn: u64| start as f64 + span * lsn as f64 / events.max(1) as f64;
    let mut prev = 0u64;
    let mut longest = 0f64;
    for &(size, at) in cps.iter().filter(|c| c.1 <= end) {
        longest = longest.max(at as f64 - written_at(prev));
        prev = size;
    }
    let tail = events.saturating_sub(prev);
    let tail_age = if tail > 0 {
        end as f64 - written_at(prev)
    } else {
        0.0
    };
    format!(
        "unsigned during the burst: longest wait for a checkpoint {:.0} ms; at its end {tail} events unsigned, the oldest for {:.0} ms",
        longest / 1e3,
        tail_age / 1e3
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn proofs(a: &Args) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let dir = tmp.path().join("log");
    let cfg = config(&dir, Variant::TreeAndCheckpoints, &keys, a.interval);
    let key = cfg.checkpoints.as_ref().expect("key").key.verifier();
    let log = Log::open(cfg).expect("open");
    let spec = WorkloadSpec {
        runs: a.proof_events / 2 + 1,
        ..WorkloadSpec::default()
    };
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    let mut n = 0u64;
    let mut last = None;
    for ev in spec.events(0, spec.runs) {
        batch.push(ev);
        n += 1;
        if batch.len() == 1000 || n == a.proof_events {
            last = Some(log.append_batch(&batch).expect("append"));
            batch.clear();
        }
        if n == a.proof_events {
            break;
        }
    }
    if !batch.is_empty() {
        last = Some(log.append_batch(&batch).expect("append"));
    }
    if let Some(r) = last {
        r.wait().expect("durable");
    }
    log.close().expect("close");
    let reader = LogReader::open(&dir).expect("reader");
    let segments = reader.segments().len();
    println!(
        "\nproof log: {n} events in {segments} segments, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cps = reader.checkpoints().expect("checkpoints");
    // A checkpoint covers `record.tree_size` leaves (less than its own leaf
    // index when it was signed after its record was asked for: format 6).
    let newest = cps.last().expect("a checkpoint").record.tree_size;
    let mut gen = Vec::new();
    let mut check = Vec::new();
    let mut sizes = Vec::new();
    let mut hashes = Vec::new();
    for i in 0..a.proofs {
        let lsn = fastrand::u64(0..newest);
        let t = Instant::now();
        let p = reader.prove_inclusion(lsn, None).expect("prove");
        gen.push(ms(t.elapsed()));
        let json = p.to_json();
        let t = Instant::now();
        p.check(&key, None).expect("check");
        check.push(ms(t.elapsed()));
        sizes.push(json.len() as f64);
        hashes.push(p.proof.len() as f64);
        if i == 0 {
            println!("first proof (LSN {lsn}): {} bytes of JSON", json.len());
        }
    }
    let mut cgen = Vec::new();
    let mut ccheck = Vec::new();
    let mut csizes = Vec::new();
    for i in 0..a.proofs.min(cps.len().saturating_sub(1)).max(1) {
        let old = cps[fastrand::usize(0..cps.len())].record.tree_size.max(1);
        let old = if i == 0 {
            cps[0].record.tree_size.max(1)
        } else {
            old
        };
        let t = Instant::now();
        let p = reader.prove_consistency(old, None).expect("consistency");
        cgen.push(ms(t.elapsed()));
        let t = Instant::now();
        p.check(&key, None, None).expect("check");
        ccheck.push(ms(t.elapsed()));
        csizes.push(p.proof.len() as f64);
    }
    println!(
        "| proof | n | generate p50 ms | p99 | check p50 ms | p99 | hashes p50 | JSON bytes p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| inclusion | {} | {:.2} | {:.2} | {:.3} | {:.3} | {:.0} | {:.0} |",
        gen.len(),
        pct(&mut gen, 0.5),
        pct(&mut gen, 0.99),
        pct(&mut check, 0.5),
        pct(&mut check, 0.99),
        pct(&mut hashes, 0.5),
        pct(&mut sizes, 0.5)
    );
    println!(
        "| consistency | {} | {:.2} | {:.2} | {:.3} | {:.3} | {:.0} | - |",
        cgen.len(),
        pct(&mut cgen, 0.5),
        pct(&mut cgen, 0.99),
        pct(&mut ccheck, 0.5),
        pct(&mut ccheck, 0.99),
        pct(&mut csizes, 0.5)
    );
    let t = Instant::now();
    auditlog::verify(&dir, None, |_, _| {}).expect("verify");
    let plain = t.elapsed();
    let t = Instant::now();
    let opts = VerifyOptions {
        key: Some(key),
        ..VerifyOptions::default()
    };
    let r = auditlog::verify_with(&dir, &opts, |_, _| {}).expect("verify --key");
    let keyed = t.elapsed();
    let tree = r.tree.expect("tree");
    println!(
        "verify: {:.1} s; verify --key: {:.1} s ({} checkpoints checked, tree of {} leaves)",
        plain.as_secs_f64(),
        keyed.as_secs_f64(),
        tree.checkpoints_verified,
        tree.tree_size
    );
    let tree_bytes: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".mtree"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let seg_bytes: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    println!(
        "tree files: {tree_bytes} bytes ({:.2} B/event) beside {seg_bytes} bytes of segments",
        tree_bytes as f64 / n as f64
    );
}

fn main() {
    let a = args();
    ingest(&a);
    if a.proof_events > 0 {
        proofs(&a);
    }
}
