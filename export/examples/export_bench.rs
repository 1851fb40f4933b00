//! Export throughput and size, beside ingest of the same events in the
//! same run (docs/benchmarks.md, "Parquet export").
//!
//! ```sh
//! cargo run --release -p auditlog-export --example export_bench -- 10000000 /tmp/exp10m
//! ```
//!
//! Generates the load run's workload (loadrun's generator, 30 days),
//! ingests it through the library (2 producers' worth of batches of 1,000,
//! fdatasync per block), builds the indexes as a gateway's indexer would
//! have at each seal, then exports every sealed segment to DIR/parquet and
//! prints one JSON line of figures. DIR/log and DIR/parquet are kept for
//! the DuckDB query benchmark (export/bench/query_bench.py).

use std::path::{Path, PathBuf};
use std::time::Instant;

use auditlog::QueryEngine as Engine;
use auditlog::{Config, Durability, Event, Log};
use auditlog_export::{
    export, verify_export, Destination, DestinationSpec, ExportOptions, VerifyOptions,
};
use auditlog_loadrun::workload::WorkloadSpec;

fn dir_bytes(root: &Path, prefix: &str) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .strip_prefix(root)
                .is_ok_and(|r| r.to_string_lossy().starts_with(prefix))
            {
                n += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    n
}

/// CPU seconds this process has used so far, all threads (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime), counted after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let root = PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "/tmp/export-bench".into()),
    );
    let (log_dir, out) = (root.join("log"), root.join("parquet"));
    let _ = std::fs::remove_dir_all(&root);

    let mut spec = WorkloadSpec::default();
    let per_run = spec.events(0, 2_000).count() as u64;
    spec.runs = (events * 2_000 / per_run.max(1)).max(1);
    let t = Instant::now();
    let all: Vec<Event> = spec.events(0, spec.runs).collect();
    eprintln!(
        "generated {} events in {:.1} s",
        all.len(),
        t.elapsed().as_secs_f64()
    );

    let mut cfg = Config::new(&log_dir);
    cfg.durability = Durability::EveryBatch;
    let log = Log::open(cfg).expect("open log");
    let t = Instant::now();
    let c0 = cpu_seconds();
    let mut last = None;
    for chunk in all.chunks(1_000) {
        last = Some(log.append_batch(chunk).expect("append"));
    }
    if let Some(r) = last {
        r.wait().expect("durable");
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let ingest_cpu = cpu_seconds() - c0;
    log.seal().expect("seal");
    log.close().expect("close");
    let n = all.len() as u64;
    drop(all);

    let t = Instant::now();
    let mut engine = Engine::open(&log_dir).expect("engine");
    engine.refresh().expect("index");
    drop(engine);
    let index_s = t.elapsed().as_secs_f64();

    let dest = Destination::open(&DestinationSpec::Local(out.clone())).expect("dest");
    let c0 = cpu_seconds();
    let r = export(&log_dir, &dest, &ExportOptions::default()).expect("export");
    let export_cpu = cpu_seconds() - c0;
    let t = Instant::now();
    verify_export(
        &dest,
        &VerifyOptions {
            log_dir: Some(log_dir.clone()),
            ..Default::default()
        },
    )
    .expect("verify-export");
    let verify_s = t.elapsed().as_secs_f64();

    let segs: u64 = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let (ev_b, runs_b, tc_b) = (
        dir_bytes(&out, "table=events"),
        dir_bytes(&out, "table=runs"),
        dir_bytes(&out, "table=tool_calls"),
    );
    println!(
        "{{\"events\":{n},\"segments\":{},\"segment_bytes\":{segs},\"ingest_seconds\":{ingest_s:.2},\"ingest_cpu_seconds\":{ingest_cpu:.2},\"ingest_events_per_sec\":{:.0},\"index_seconds\":{index_s:.2},\"export_seconds\":{:.2},\"export_cpu_seconds\":{export_cpu:.2},\"export_events_per_sec\":{:.0},\"export_segment_mb_per_sec\":{:.1},\"parquet_bytes\":{{\"events\":{ev_b},\"runs\":{runs_b},\"tool_calls\":{tc_b}}},\"events_over_segments\":{:.3},\"all_tables_over_segments\":{:.3},\"runs\":{},\"tool_calls\":{},\"files\":{},\"verify_export_seconds\":{verify_s:.2}}}",
        r.segments.len(),
        n as f64 / ingest_s,
        r.seconds,
        r.events as f64 / r.seconds,
        segs as f64 / 1e6 / r.seconds,
        ev_b as f64 / segs as f64,
        (ev_b + runs_b + tc_b) as f64 / segs as f64,
        r.runs,
        r.tool_calls,
        r.files,
    );
}
