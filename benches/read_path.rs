//! The read paths that check the chain before they use a block
//! (docs/integrity.md): replay of a whole log (beside the same replay
//! without any check, as readers did it before issue 11), and building the
//! index of every sealed segment. Only public API, so the same file builds against
//! an engine from before the checks, for a before/after comparison in one
//! session (docs/benchmarks.md, "Integrity checks on the read path").
//!
//! `AUDITLOG_READ_BENCH_EVENTS` sets the log size (default 1,000,000
//! events of the load run's workload, 8 daily segments and more).

use std::time::Duration;

use auditlog::{LogReader, QueryEngine, ReplayRange, ReplayThreads};
use auditlog_loadrun::workload::WorkloadSpec;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "shared/bench_log.rs"]
mod bench_log;
use bench_log::{bench_log, cpu_seconds};

fn read_path(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, n) = bench_log(tmp.path());
    let bytes: u64 = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!("read_path: {n} events, {bytes} bytes of segments");
    if let Some(rounds) = std::env::var("AUDITLOG_READ_BENCH_ABBA")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        abba(&dir, n, rounds);
        return;
    }

    let mut g = c.benchmark_group("read_path");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    // A new reader each time: nothing is remembered between iterations.
    g.bench_function("replay_all", |b| {
        b.iter(|| {
            let r = LogReader::open(&dir).expect("reader");
            let mut k = 0u64;
            for item in r.replay(ReplayRange::default()) {
                item.expect("event");
                k += 1;
            }
            assert_eq!(k, n);
        })
    });
    // The same checks, all on the caller's thread.
    g.bench_function("replay_all_one_thread", |b| {
        b.iter(|| {
            let r = LogReader::open(&dir).expect("reader");
            let k = replay_counted(&r, ReplayThreads::None);
            assert_eq!(k, n);
        })
    });
    // The same replay as readers did it before issue 11, for the overhead
    // of the checks in the same process and window: every frame's CRC and
    // the plain bincode decode, no chain check, no strict rules.
    g.bench_function("replay_all_unchecked", |b| {
        b.iter(|| {
            let r = LogReader::open(&dir).expect("reader");
            let k = replay_unchecked(&r);
            assert_eq!(k, n);
        })
    });
    // Every sealed segment's index built from its segment, in memory.
    g.bench_function("index_build_all", |b| {
        b.iter(|| {
            let mut e = QueryEngine::open(&dir).expect("engine");
            e.persist = false;
            e.refresh().expect("indexes");
            assert!(e.stats.rebuilt > 0);
        })
    });
    g.finish();
}

/// Every event of a checked replay of `r`, counted.
fn replay_counted(r: &LogReader, threads: ReplayThreads) -> u64 {
    let mut k = 0u64;
    for item in r.replay_with(ReplayRange::default(), threads) {
        std::hint::black_box(item.expect("event"));
        k += 1;
    }
    k
}

/// `rounds` rounds of the replays (unchecked, checked on one thread,
/// with a checking thread ahead (the default), pipelined with one and with
/// two decoding threads), in ABBA order (the order turned around every
/// round), a new reader each: the median wall and CPU time of each and
/// their ratios to the unchecked replay. `AUDITLOG_READ_BENCH_ABBA=ROUNDS`.
fn abba(dir: &std::path::Path, n: u64, rounds: usize) {
    type Variant = (&'static str, fn(&LogReader) -> u64);
    let variants: [Variant; 6] = [
        ("unchecked", replay_unchecked),
        ("unchecked, new decode", replay_unchecked_viewed),
        ("checked, one thread", |r| {
            replay_counted(r, ReplayThreads::None)
        }),
        ("checked, check-ahead", |r| {
            replay_counted(r, ReplayThreads::CheckAhead)
        }),
        ("checked, 1 decoder", |r| {
            replay_counted(r, ReplayThreads::Decoders(1))
        }),
        ("checked, 2 decoders", |r| {
            replay_counted(r, ReplayThreads::Decoders(2))
        }),
    ];
    let mut wall = vec![Vec::new(); variants.len()];
    let mut cpu = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        // `AUDITLOG_READ_BENCH_ONLY=I`: variant I alone (for a profile).
        let only: Option<usize> = std::env::var("AUDITLOG_READ_BENCH_ONLY")
            .ok()
            .and_then(|v| v.parse().ok());
        for i in order.into_iter().filter(|i| only.is_none_or(|o| o == *i)) {
            let r = LogReader::open(dir).expect("reader");
            let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
            assert_eq!((variants[i].1)(&r), n);
            wall[i].push(t0.elapsed().as_secs_f64());
            cpu[i].push(cpu_seconds() - c0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    if wall.iter().any(|w| w.is_empty()) {
        return;
    }
    let (w0, c0) = (median(&mut wall[0].clone()), median(&mut cpu[0].clone()));
    eprintln!("{rounds} rounds ABBA, {n} events; median wall, median CPU, ratios to unchecked:");
    for (i, (name, _)) in variants.iter().enumerate() {
        let (w, c) = (median(&mut wall[i]), median(&mut cpu[i]));
        eprintln!(
            "  {name:<22} wall {:>7.1} ms ({:.2}x)  cpu {:>7.1} ms ({:.2}x)",
            w * 1e3,
            w / w0,
            c * 1e3,
            c / c0
        );
    }
}

/// Every event of `r`'s segments, as the replay before issue 11 read them.
fn replay_unchecked(r: &LogReader) -> u64 {
    replay_unchecked_with(r, auditlog::internals::codec::decode_event)
}

/// [`replay_unchecked`] with the decode the checked replays now use (the
/// body read in place, then copied out): the checks' own cost, apart from
/// what the faster decode saves.
fn replay_unchecked_viewed(r: &LogReader) -> u64 {
    replay_unchecked_with(r, auditlog::internals::codec::decode_event_viewed)
}

/// Every event of `r`'s segments: each frame's CRC, then `decode`, no
/// chain check, no strict rules.
fn replay_unchecked_with(
    r: &LogReader,
    decode: fn(&[u8]) -> Result<auditlog::Event, auditlog::internals::codec::CodecError>,
) -> u64 {
    use auditlog::internals::{layout::map_file, segment};
    let mut k = 0u64;
    for meta in r.segments() {
        let Some(map) = map_file(&meta.path).expect("map") else {
            continue;
        };
        let mut walk =
            segment::EventWalk::new(segment::HEADER_SIZE as u64, meta.data_len, meta.first_lsn);
        while let Some(rec) = walk.next(&map) {
            let rec = rec.expect("frame");
            std::hint::black_box(decode(rec.payload).expect("decodes"));
            k += 1;
        }
    }
    k
}

/// The parts of a checked read, per event of the workload: the plain
/// bincode decode (what readers did before), the same event built through
/// the in-place view, the strict decode (every rule of the writer, JSON
/// texts included) as it is and as it was (owned decode, then the rules),
/// and BLAKE3 over the same bytes.
fn decode_parts(c: &mut Criterion) {
    use auditlog::internals::codec::{
        decode_event, decode_event_viewed, decode_stored, decode_stored_owned, encode_event,
    };
    let spec = WorkloadSpec {
        runs: 20_000,
        ..WorkloadSpec::default()
    };
    let bodies: Vec<Vec<u8>> = spec
        .events(0, spec.runs)
        .map(|e| {
            let mut b = Vec::new();
            encode_event(&e, &mut b).expect("encode");
            b
        })
        .collect();
    let bytes: Vec<u8> = bodies.concat();
    let mut g = c.benchmark_group("decode");
    g.sample_size(20);
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function("bincode_only", |b| {
        b.iter(|| {
            for body in &bodies {
                std::hint::black_box(decode_event(body).expect("decodes"));
            }
        })
    });
    // The owned decode through the in-place view (check-ahead's caller).
    g.bench_function("viewed", |b| {
        b.iter(|| {
            for body in &bodies {
                std::hint::black_box(decode_event_viewed(body).expect("decodes"));
            }
        })
    });
    g.bench_function("strict", |b| {
        b.iter(|| {
            for body in &bodies {
                std::hint::black_box(decode_stored(body).expect("decodes"));
            }
        })
    });
    // The strict decoder before it read in place: owned decode, then rules.
    g.bench_function("strict_owned", |b| {
        b.iter(|| {
            for body in &bodies {
                std::hint::black_box(decode_stored_owned(body).expect("decodes"));
            }
        })
    });
    g.bench_function("blake3_same_bytes", |b| {
        b.iter(|| std::hint::black_box(blake3::hash(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, decode_parts, read_path);
criterion_main!(benches);
