//! The index build, the larger half of `auditlog ingest`'s CPU before
//! issue 17's second round (docs/benchmarks.md, "Index build"):
//!
//! - `index_build/builder_events`: one segment's events, decoded once
//!   beforehand, through `Builder::add` and `finish` (string interning,
//!   the run fold, call entries, sorting and writing the sections): the
//!   per-event cost with no decode and no chain check.
//! - `index_build/refresh_1_thread` and `refresh_per_core`: every sealed
//!   segment's image built from its segment by a fresh engine, the scans
//!   one after another or on one thread per core (`Engine::scan_threads`).
//!   The bench log's last segment stays active, so `refresh_per_core`
//!   also covers its chunk scanned beside the sealed scans (issue 17,
//!   round four).
//!
//! `AUDITLOG_READ_BENCH_EVENTS` sets the log size (default 1,000,000
//! events of the load run's workload, 8 daily segments and more).

use std::time::Duration;

use auditlog::internals::index::{Builder, NoOlder, KIND_SEALED};
use auditlog::internals::{chain::Digest, codec::decode_event, layout::map_file, segment};
use auditlog::{Event, LogReader, QueryEngine};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "shared/bench_log.rs"]
mod bench_log;
use bench_log::{events_wanted, make_log};

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
    let dir = tmp.path().join("log");
    let n = make_log(&dir, events_wanted());
    let reader = LogReader::open(&dir).expect("reader");
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
    g.throughput(Throughput::Elements(n));
    g.measurement_time(Duration::from_secs(20));
    for (name, threads) in [("refresh_1_thread", 1), ("refresh_per_core", 0)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut e = QueryEngine::open(&dir).expect("engine");
                e.persist = false;
                if threads > 0 {
                    e.scan_threads = threads;
                }
                e.refresh().expect("indexes");
                assert!(e.stats.rebuilt > 0);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, index_build);
criterion_main!(benches);
