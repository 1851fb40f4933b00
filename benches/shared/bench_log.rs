//! The log the read-path benches measure (read_path.rs, index_build.rs):
//! the load run's workload, written once in batches, unsynced, 64 MiB
//! segments, so that every bench reads the same shape of log.

use auditlog::{Config, Durability, Log};
use auditlog_loadrun::workload::WorkloadSpec;

/// `AUDITLOG_READ_BENCH_EVENTS`, or a million.
pub fn events_wanted() -> u64 {
    std::env::var("AUDITLOG_READ_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A log of the load run's workload, written once, batched, unsynced.
pub fn make_log(dir: &std::path::Path, n: u64) -> u64 {
    // About 5.5 events per top-level run in this workload.
    let spec = WorkloadSpec {
        runs: (n * 2 / 11).max(1),
        days: 8,
        ..WorkloadSpec::default()
    };
    let mut cfg = Config::new(dir);
    cfg.durability = Durability::Never;
    cfg.segment_max_bytes = 64 << 20;
    let log = Log::open(cfg).expect("open");
    let mut batch = Vec::with_capacity(1000);
    let mut stored = 0u64;
    for ev in spec.events(0, spec.runs) {
        batch.push(ev);
        if batch.len() == 1000 {
            let _receipt = log.append_batch(&batch).expect("append");
            stored += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        stored += batch.len() as u64;
        let _receipt = log.append_batch(&batch).expect("append");
    }
    log.flush().expect("flush");
    log.close().expect("close");
    stored
}
