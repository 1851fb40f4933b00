//! What writing the tree as C2SP tlog-tiles costs (`auditlog tiles`,
//! docs/proofs.md "Tiles"; docs/benchmarks.md, issue 19): at a signed log
//! of `--events` events (the load run's workload, 256 MiB segments, tree
//! and checkpoints on), the wall and CPU time and the bytes and files of
//! (1) the first write into an empty folder, with entry bundles and
//! without, (2) a rerun with nothing new (every full tile checked against
//! the log's stored subtree hashes), (3) a rerun after `--more` new events
//! (only the new tiles). Each measured `--rounds` times, the variants
//! interleaved (ABBA), medians. Each round adds `--more` events, so
//! later rounds' trees are that much larger.
//!
//! `cargo bench -p auditlog-benches --bench tiles -- --events 1000000`.
//! Run by `cargo test` (without `--bench`) it does a tiny pass.

use std::path::Path;
use std::time::{Duration, Instant};

use auditlog::tlog::SignerKey;
use auditlog::tree::{CheckpointConfig, TilesOptions, TilesReport};
use auditlog::{Config, Log, LogReader};
use auditlog_loadrun::workload::WorkloadSpec;

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    if !argv.iter().any(|a| a == "--bench") {
        return default.min(if name == "--rounds" { 1 } else { 3000 });
    }
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn config(dir: &Path, keys: &Path, key: &SignerKey) -> Config {
    let mut cfg = Config::new(dir);
    cfg.checkpoints = Some(CheckpointConfig {
        key: key.clone(),
        interval: Duration::from_secs(3600),
        state: Some(keys.join("key.state")),
    });
    cfg
}

/// Append events `from..from + n` of the workload.
fn append(log: &Log, spec: &WorkloadSpec, from: u64, n: u64) {
    let mut batch = Vec::with_capacity(1000);
    let mut last = None;
    for ev in spec
        .events(0, spec.runs)
        .skip(from as usize)
        .take(n as usize)
    {
        batch.push(ev);
        if batch.len() == 1000 {
            last = Some(log.append_batch(&batch).expect("append"));
            batch.clear();
        }
    }
    if !batch.is_empty() {
        last = Some(log.append_batch(&batch).expect("append"));
    }
    if let Some(r) = last {
        r.wait().expect("durable");
    }
}

struct Sample {
    wall: f64,
    cpu: f64,
    report: TilesReport,
}

fn timed(reader: &LogReader, dest: &Path, entries: bool) -> Sample {
    let opts = TilesOptions {
        tree_size: None,
        entries,
    };
    let (w, c) = (Instant::now(), cpu_seconds());
    let report = reader.write_tiles(dest, &opts).expect("tiles");
    Sample {
        wall: w.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c,
        report,
    }
}

fn folder_size(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            let (b, f) = folder_size(&e.path());
            bytes += b;
            files += f;
        } else {
            bytes += m.len();
            files += 1;
        }
    }
    (bytes, files)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let events = arg("--events", 1_000_000);
    let more = arg("--more", 10_000);
    let rounds = arg("--rounds", 3) as usize;
    // AUDITLOG_TILES_BENCH_DIR: where the log and folders go (a disk with
    // room: ~2 GB at 10M events); default the system's temp folder.
    let tmp = tempfile::tempdir_in(
        std::env::var_os("AUDITLOG_TILES_BENCH_DIR")
            .map_or_else(std::env::temp_dir, std::path::PathBuf::from),
    )
    .expect("tempdir");
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let key = SignerKey::generate("auditlog.bench/tiles").expect("key");
    let dir = tmp.path().join("log");
    let spec = WorkloadSpec {
        runs: (events + more * rounds as u64) / 2 + 1,
        ..WorkloadSpec::default()
    };
    let t = Instant::now();
    let log = Log::open(config(&dir, &keys, &key)).expect("open");
    append(&log, &spec, 0, events);
    log.close().expect("close");
    println!(
        "log: {events} events written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut first = [Vec::new(), Vec::new()];
    let mut sizes = [(0, 0), (0, 0)];
    let mut unchanged = Vec::new();
    let mut grown = Vec::new();
    let mut at = events;
    for round in 0..rounds {
        let reader = LogReader::open(&dir).expect("reader");
        // ABBA: with and without bundles, in alternating order.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for entries in order {
            let dest = tmp.path().join(format!("tiles-{round}-{entries}"));
            let s = timed(&reader, &dest, entries);
            if round == 0 {
                sizes[usize::from(entries)] = folder_size(&dest);
            }
            if entries {
                let again = timed(&reader, &dest, true);
                assert_eq!(again.report.full_tiles_written, 0);
                unchanged.push(again);
                // More events, then the same folder again.
                let log = Log::open(config(&dir, &keys, &key)).expect("open");
                append(&log, &spec, at, more);
                at += more;
                log.close().expect("close");
                let reader = LogReader::open(&dir).expect("reader");
                grown.push(timed(&reader, &dest, true));
            }
            first[usize::from(entries)].push(s);
            std::fs::remove_dir_all(&dest).expect("cleanup");
        }
    }
    let show = |name: &str, v: &[Sample]| {
        let r = &v[0].report;
        println!(
            "{name:<40} wall {:>8.3} s  cpu {:>8.3} s  (tree size {}, full tiles written {}, checked {}, partial {}, bundles {}, bytes written {})",
            median(v.iter().map(|s| s.wall).collect()),
            median(v.iter().map(|s| s.cpu).collect()),
            r.tree_size,
            r.full_tiles_written,
            r.full_tiles_checked,
            r.partial_tiles_written,
            r.bundles_written,
            r.bytes_written,
        );
    };
    println!("medians of {rounds} rounds:");
    show("first write, tiles + bundles", &first[1]);
    show("first write, tiles only", &first[0]);
    show("rerun, nothing new", &unchanged);
    show(&format!("rerun after {more} more events"), &grown);
    for (entries, (bytes, files)) in [(true, sizes[1]), (false, sizes[0])] {
        println!(
            "first round's folder, bundles {entries}: {bytes} bytes in {files} files ({:.1} bytes/leaf)",
            bytes as f64 / first[1][0].report.tree_size as f64
        );
    }
}
