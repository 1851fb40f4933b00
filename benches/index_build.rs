//! The index build, the larger half of `auditlog ingest`'s CPU before
//! issue 17's second round (docs/benchmarks.md, "Index build"):
//!
//! - `index_build/builder_events`: one segment's events, decoded once
//!   beforehand, through `Builder::add` and `finish` (string interning,
//!   the run fold, call entries, sorting and writing the sections): the
//!   per-event cost with no decode and no chain check.
//! - `index_build/builder_finish`: `finish` alone on that segment's
//!   builder (the sorts, by the interned strings' ranks since the cli32
//!   round, and the sections written): what `auditlog ingest`'s main
//!   thread does per image after the last append.
//! - `index_build/refresh_1_thread` and `refresh_per_core`: every sealed
//!   segment's image built from its segment by a fresh engine, the scans
//!   one after another or on one thread per core (`Engine::scan_threads`).
//!   The bench log's last segment stays active, so `refresh_per_core`
//!   also covers its chunk scanned beside the sealed scans (issue 17,
//!   round four).
//! - `index_build/refresh_per_core_checked_on_append`: the same, reading
//!   the events as `auditlog ingest`'s builds read what it has just
//!   checked and appended (`Engine::trust_appends_from`, ingest29 round):
//!   no rules run again, the strings no index reads stepped over.
//!
//! - `index_build/refresh_600_daily_segments`: the same on one thread
//!   for a log of 60,000 events over 600 daily segments, where the
//!   look-ups of each run's start in every older image dominate.
//!
//! - `AUDITLOG_READ_BENCH_ABBA=ROUNDS`: instead of criterion, the image of
//!   every sealed segment built on one thread with the read-path checks
//!   (`index::build_image`, the engine's own path: every block's chain
//!   digest, the end against the trusted digest, the strict decoder) and
//!   without them (each frame's CRC and the plain decode, as builds were
//!   before issue 11; only here, as the baseline), in ABBA order, with
//!   the median wall and CPU time of each (docs/benchmarks.md, "Integrity
//!   checks on the read path"). Beside them, round 4's checked build
//!   (every frame CRC and every JSON text), round 4's with the CRCs
//!   left to the digests, and round 5's (the tool-call payload checked by
//!   a scan, then parsed again for its fields), for before/after in the
//!   same run. All must build the same bytes.
//!
//! Built with `--features mimalloc`, the benches run on the command
//! line's allocator instead of the system's (glibc's malloc on Linux).
//!
//! `AUDITLOG_READ_BENCH_ONLY='unchecked;checked, round 5'` runs only the
//! variants named, `;` between them (for a profile of one).
//!
//! `AUDITLOG_READ_BENCH_EVENTS` sets the log size (default 1,000,000
//! events of the load run's workload, 8 daily segments and more);
//! `AUDITLOG_READ_BENCH_DIR` keeps the log in a folder between runs.

use std::time::Duration;

use auditlog::internals::codec::{decode_event, decode_event_viewed, decode_stored, CodecError};
use auditlog::internals::frame::FRAME_HEADER;
use auditlog::internals::index::{self, Builder, NoOlder, KIND_SEALED};
use auditlog::internals::layout::{map_file, SegmentMeta};
use auditlog::internals::{blocks, chain::Digest, segment};
use auditlog::{Event, LogReader, QueryEngine};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// With `--features mimalloc`: the command line's allocator (set
/// `MIMALLOC_PURGE_DELAY=-1` for `auditlog ingest`'s setting), so the
/// builds can be timed under both allocators a library user may have.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "shared/bench_log.rs"]
mod bench_log;
use bench_log::{bench_log, cpu_seconds};

/// The events of the first sealed segment, with their (lsn, off, end).
fn first_segment_events(r: &LogReader) -> (u64, Vec<(u64, u64, u64, Event)>) {
    let meta = r
        .segments()
        .into_iter()
        .find(|m| m.sealed)
        .expect("a sealed segment");
    let map = map_file(&meta.path).expect("map").expect("not empty");
    let mut out = Vec::new();
    let mut walk =
        segment::EventWalk::new(segment::HEADER_SIZE as u64, meta.data_len, meta.first_lsn);
    while let Some(rec) = walk.next(&map) {
        let rec = rec.expect("frame");
        let ev = decode_event(rec.payload).expect("decodes");
        out.push((rec.lsn, rec.offset, rec.end, ev));
    }
    (meta.seq, out)
}

fn index_build(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, n) = bench_log(tmp.path());
    let reader = LogReader::open(&dir).expect("reader");
    if let Some(rounds) = std::env::var("AUDITLOG_READ_BENCH_ABBA")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        abba(&reader, n, rounds);
        return;
    }
    let (seq, events) = first_segment_events(&reader);
    eprintln!(
        "index_build: {n} events; first segment {} events",
        events.len()
    );

    let mut g = c.benchmark_group("index_build");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("builder_events", |b| {
        b.iter(|| {
            let first = events.first().map_or(0, |e| e.0);
            let mut builder = Builder::new(KIND_SEALED, seq, first, segment::HEADER_SIZE as u64);
            for (lsn, off, end, ev) in &events {
                builder.add(*lsn, *off, *end, ev);
            }
            builder.finish(Digest([0; 32]), &NoOlder).len()
        })
    });
    g.bench_function("builder_finish", |b| {
        b.iter_batched(
            || {
                let first = events.first().map_or(0, |e| e.0);
                let mut builder =
                    Builder::new(KIND_SEALED, seq, first, segment::HEADER_SIZE as u64);
                for (lsn, off, end, ev) in &events {
                    builder.add(*lsn, *off, *end, ev);
                }
                builder
            },
            |builder| builder.finish(Digest([0; 32]), &NoOlder).len(),
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(n));
    g.measurement_time(Duration::from_secs(20));
    for (name, threads, trusting) in [
        ("refresh_1_thread", 1, false),
        ("refresh_per_core", 0, false),
        ("refresh_per_core_checked_on_append", 0, true),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut e = QueryEngine::open(&dir).expect("engine");
                e.persist = false;
                if threads > 0 {
                    e.scan_threads = threads;
                }
                if trusting {
                    e.trust_appends_from(0);
                }
                e.refresh().expect("indexes");
                assert!(e.stats.rebuilt > 0);
            })
        });
    }
    g.finish();
    many_segments(c);
}

/// Every image of a log of many small daily segments built by a fresh
/// engine: each image asks every older one whether it holds a start of
/// each of its runs, so this grows with the square of the segment count
/// (docs/benchmarks.md, "Round ten": the run-id filters asked first).
fn many_segments(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("days");
    let (events, days) = (60_000, 600);
    let n = bench_log::make_log_of_days(&dir, events, days);
    let mut g = c.benchmark_group("index_build");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    g.bench_function("refresh_600_daily_segments", |b| {
        b.iter(|| {
            let mut e = QueryEngine::open(&dir).expect("engine");
            e.persist = false;
            e.scan_threads = 1;
            e.refresh().expect("indexes");
            assert!(e.stats.rebuilt > 500, "{} images", e.stats.rebuilt);
        })
    });
    g.finish();
}

/// A sealed segment, read into memory (the same bytes for every variant,
/// no page faults in the timings).
struct Sealed {
    meta: SegmentMeta,
    map: Vec<u8>,
}

fn sealed_segments(r: &LogReader) -> Vec<Sealed> {
    r.segments()
        .into_iter()
        .filter(|m| m.sealed)
        .map(|meta| Sealed {
            map: std::fs::read(&meta.path).expect("read"),
            meta,
        })
        .collect()
}

/// The image of `s`, built as the engine builds it: checked.
fn build_checked(s: &Sealed) -> Vec<u8> {
    let meta = &s.meta;
    let span = index::Span {
        from: segment::HEADER_SIZE as u64,
        first_lsn: meta.first_lsn,
        digest_at_from: meta.prev_digest,
        to: meta.data_len,
        trusted_end: meta.digest,
    };
    index::build_image(meta, &s.map, KIND_SEALED, span, &NoOlder, None).expect("builds")
}

/// The same image without the read-path checks: every frame's CRC and the
/// block structure (the blocks' stored digests taken as they are, never
/// recomputed), each event through `decode` without the strict rules.
fn build_unchecked(s: &Sealed, decode: Decode) -> Vec<u8> {
    build_walking(s, WalkMode::Unchecked, |p| {
        decode(p).map_err(|e| e.to_string())
    })
}

/// [`build_checked`] as it was in round 4 (docs/benchmarks.md): every
/// frame's CRC beside every block's digest, and the full strict decoder
/// (every JSON text parsed), for a before/after in the same run.
fn build_checked_round4(s: &Sealed) -> Vec<u8> {
    build_walking(s, WalkMode::EveryCrc, |p| {
        decode_stored(p).map_err(|e| e.to_string())
    })
}

/// Round 4's build with only the frame CRCs left to the digest: the two
/// changes of round 5 apart.
fn build_checked_crcs_by_digest(s: &Sealed) -> Vec<u8> {
    build_walking(s, WalkMode::CrcsByDigest, |p| {
        decode_stored(p).map_err(|e| e.to_string())
    })
}

/// Round 5's checked build (docs/benchmarks.md): the tool-call payload
/// checked by its own scan in the decoder and parsed again for its fields
/// by `Builder::add`, for a before/after of round 6 in the same run.
fn build_checked_round5(s: &Sealed) -> Vec<u8> {
    build_walking(s, WalkMode::CrcsByDigest, |p| {
        index::decode_indexed_two_pass(p).map_err(|e| e.to_string())
    })
}

/// How [`build_walking`] walks the blocks.
#[derive(Clone, Copy)]
enum WalkMode {
    /// Every frame's CRC; stored digests taken as they are.
    Unchecked,
    /// Every frame's CRC and every digest recomputed.
    EveryCrc,
    /// Every digest recomputed, event frame CRCs only where one fails.
    CrcsByDigest,
}

/// The image of `s`, its blocks walked as `mode` says, each event read by
/// `decode`.
fn build_walking(
    s: &Sealed,
    mode: WalkMode,
    decode: impl Fn(&[u8]) -> Result<Event, String>,
) -> Vec<u8> {
    let meta = &s.meta;
    let from = segment::HEADER_SIZE as u64;
    let mut b = Builder::new(KIND_SEALED, meta.seq, meta.first_lsn, from);
    b.chain_point(from, meta.prev_digest);
    let mut walk = blocks::Walk::new(
        &s.map,
        from,
        meta.data_len,
        meta.prev_digest,
        meta.first_lsn,
    );
    match mode {
        WalkMode::Unchecked => walk = walk.trusted(),
        WalkMode::EveryCrc => {}
        WalkMode::CrcsByDigest => walk = walk.crcs_by_digest(),
    }
    while let Some(block) = walk.next_block().expect("block") {
        for (lsn, (at, payload)) in (block.commit.first_lsn..).zip(block.events()) {
            let ev = decode(payload).expect("decodes");
            let end = at + (FRAME_HEADER + 1 + payload.len()) as u64;
            b.add(lsn, at, end, &ev);
        }
        b.chain_point(block.end, block.commit.digest);
    }
    assert_eq!(walk.digest(), meta.digest, "trusted end");
    b.set_end_off(meta.data_len);
    b.finish(meta.digest, &NoOlder)
}

type Decode = fn(&[u8]) -> Result<Event, CodecError>;

/// `rounds` rounds, ABBA: every sealed segment's image built unchecked
/// (the decode before issue 11, and the decode the checked build now uses)
/// and checked, one thread; medians and ratios to the unchecked build.
fn abba(r: &LogReader, n: u64, rounds: usize) {
    let sealed = sealed_segments(r);
    let events: u64 = sealed.iter().map(|s| s.meta.count).sum();
    type Variant = (&'static str, fn(&Sealed) -> Vec<u8>);
    let variants: [Variant; 6] = [
        ("unchecked", |s| build_unchecked(s, decode_event)),
        ("unchecked, new decode", |s| {
            build_unchecked(s, decode_event_viewed)
        }),
        ("checked, round 4", build_checked_round4),
        ("checked, CRCs by digest", build_checked_crcs_by_digest),
        ("checked, round 5", build_checked_round5),
        ("checked", build_checked),
    ];
    // `AUDITLOG_READ_BENCH_ONLY=NAME;NAME`: only these variants (for a
    // profile of one of them); the first one kept is the baseline.
    let only = std::env::var("AUDITLOG_READ_BENCH_ONLY").ok();
    let variants: Vec<Variant> = variants
        .into_iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(';').any(|n| n == *name))
        })
        .collect();
    assert!(
        !variants.is_empty(),
        "AUDITLOG_READ_BENCH_ONLY names no variant"
    );
    // The baseline builds the very image the checked build does.
    for s in &sealed {
        let want = build_checked(s);
        assert!(variants.iter().all(|(_, f)| f(s) == want), "same image");
    }
    let mut wall = vec![Vec::new(); variants.len()];
    let mut cpu = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
            for s in &sealed {
                std::hint::black_box((variants[i].1)(s));
            }
            wall[i].push(t0.elapsed().as_secs_f64());
            cpu[i].push(cpu_seconds() - c0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w0, c0) = (median(&mut wall[0].clone()), median(&mut cpu[0].clone()));
    eprintln!(
        "{rounds} rounds ABBA, {} sealed segments, {events} of {n} events, one thread; median wall, median CPU, ratios to {}:",
        sealed.len(),
        variants[0].0
    );
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

criterion_group!(benches, index_build);
criterion_main!(benches);
