//! Micro-benchmarks of the hot paths the load run exercises: the per-event
//! write path (validate + encode + frame + CRC, then the chain hash of the
//! block), index building (what indexing costs per event), and one query
//! of each kind, auditlog's engine beside SQLite (executus-style schema and
//! indexes) on the same data. `cargo bench --bench queries_vs_sqlite`.

use std::time::Duration;

use auditlog::query::Engine;
use auditlog::{Config, Durability, EncodedBatch, Event, Log};
use auditlog_loadrun::queries::{auditlog_query, sqlite_query, QuerySet, KINDS};
use auditlog_loadrun::workload::WorkloadSpec;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const RUNS: u64 = 20_000;

fn workload(runs: u64) -> Vec<Event> {
    let spec = WorkloadSpec {
        runs,
        days: 3,
        ..WorkloadSpec::default()
    };
    spec.events(0, runs).collect()
}

fn write_path(c: &mut Criterion) {
    let evs = workload(200);
    let mut g = c.benchmark_group("write_path_per_event");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("encode_frame_crc", |b| {
        b.iter(|| EncodedBatch::encode(&evs).expect("encode"))
    });
    let block = EncodedBatch::encode(&evs).expect("encode");
    let bytes = vec![7u8; block.bytes()];
    g.bench_function("encode_frame_crc_then_chain", |b| {
        b.iter(|| {
            let enc = EncodedBatch::encode(&evs).expect("encode");
            let d = auditlog::internals::chain::block_digest(
                &auditlog::Digest::GENESIS,
                0,
                evs.len() as u32,
                &bytes[..enc.bytes().min(bytes.len())],
            );
            (enc, d)
        })
    });
    g.finish();
}

/// A log of `RUNS` runs over 3 days (so a few sealed segments), closed.
fn build_log(dir: &std::path::Path, evs: &[Event]) {
    let mut cfg = Config::new(dir);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).expect("open");
    for chunk in evs.chunks(1000) {
        let _ = log.append_batch(chunk).expect("append");
    }
    log.close().expect("close");
}

fn index_build(c: &mut Criterion) {
    let evs = workload(RUNS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    build_log(&dir, &evs);
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("build_all_images_per_event", |b| {
        b.iter(|| {
            let mut e = Engine::open(&dir).expect("engine");
            e.persist = false;
            e.refresh().expect("refresh");
            e
        })
    });
    g.finish();
}

fn queries(c: &mut Criterion) {
    let (_tmp, mut engine, conn, qs) = both_loaded(workload(RUNS));
    let mut g = c.benchmark_group("query");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for k in 0..KINDS.len() {
        bench_both(&mut g, &mut engine, &conn, &qs, k);
    }
    g.finish();
}

/// The same events in an indexed auditlog log (in a temporary folder,
/// kept alive by the returned handle) and in the SQLite baseline, and the
/// query arguments drawn from them.
fn both_loaded(evs: Vec<Event>) -> (tempfile::TempDir, Engine, rusqlite::Connection, QuerySet) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    build_log(&dir, &evs);
    let mut engine = Engine::open(&dir).expect("engine");
    engine.refresh().expect("refresh");
    let mut conn = auditlog_loadrun::sqlite_baseline::open(None).expect("sqlite");
    auditlog_loadrun::sqlite_baseline::load_events(&mut conn, &evs).expect("load");
    let qs = QuerySet::from_events(&[evs], 64);
    (tmp, engine, conn, qs)
}

/// Query kind `k` on auditlog and on SQLite, side by side in group `g`.
fn bench_both(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    engine: &mut Engine,
    conn: &rusqlite::Connection,
    qs: &QuerySet,
    k: usize,
) {
    let kind = KINDS[k].0;
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("auditlog", kind), |b| {
        b.iter(|| {
            i += 1;
            auditlog_query(engine, qs, k, i).expect("query")
        })
    });
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("sqlite", kind), |b| {
        b.iter(|| {
            i += 1;
            sqlite_query(conn, qs, k, i).expect("query")
        })
    });
}

/// The queries that read finishes lying in a later segment than their
/// run's start (index FINS sections, docs/index-format.md), over 30 daily
/// segments so that many runs cross a roll: the count by status (counted
/// from the finishes' side), a run by id and a one-hour window (each run
/// without a local finish searches the later images' FINS). And the point
/// look-ups that ask every image for an id (`run`, `chain`, `children`):
/// each probes 30 images' run-id filters (stored in the images since
/// index format 7, see `Image::find_run_if_filtered`) after a refresh that
/// finds nothing changed (the query30 round). `run_after_reopen`: what a
/// one-shot `auditlog run ID` does, an engine opened over the stored
/// images and one look-up (the filt31 round). `run_with_logs`: the run and
/// its logs, whose LOGS sections are searched only in the images whose
/// filter passes the id (index format 8, the q38 round; before, all 30).
fn across_segments(c: &mut Criterion) {
    let spec = WorkloadSpec {
        runs: RUNS,
        days: 30,
        ..WorkloadSpec::default()
    };
    let (tmp, mut engine, conn, qs) = both_loaded(spec.events(0, RUNS).collect());
    let mut g = c.benchmark_group("query_30_segments");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for kind in [
        "count_by_status",
        "run",
        "run_with_logs",
        "chain",
        "children",
        "window_1h",
        "finished_before",
    ] {
        let Some(k) = KINDS.iter().position(|(n, _)| *n == kind) else {
            continue;
        };
        bench_both(&mut g, &mut engine, &conn, &qs, k);
    }
    let dir = tmp.path().join("log");
    let run = KINDS.iter().position(|(n, _)| *n == "run").expect("run");
    let mut i = 0usize;
    g.bench_function("run_after_reopen", |b| {
        b.iter(|| {
            i += 1;
            let mut e = Engine::open(&dir).expect("engine");
            auditlog_query(&mut e, &qs, run, i).expect("query")
        })
    });
    // `day_after_reopen`: the first list over a stretch of the log in a
    // fresh engine (a day's ~670 runs), whose blocks are all hashed
    // against the chain for the first time: the one-block check on the
    // digest alone, and a second thread checking ahead of the run views
    // (the win40 round, `query::check_ahead`).
    let day = auditlog::Filter {
        since: Some(qs.first_ts + 86_400_000_000),
        until: Some(qs.first_ts + 2 * 86_400_000_000),
        ..auditlog::Filter::default()
    };
    g.bench_function("day_after_reopen", |b| {
        b.iter(|| {
            let mut e = Engine::open(&dir).expect("engine");
            e.list(&day, auditlog::Page::all()).expect("list").len()
        })
    });
    g.finish();
}

criterion_group!(benches, write_path, index_build, queries, across_segments);
criterion_main!(benches);
