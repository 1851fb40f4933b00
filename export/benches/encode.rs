//! The export's hot path per event, without the log or the destination:
//! building `events` and `tool_calls` rows from decoded events
//! (`tables`), reading a tool call's payload, and encoding one segment's
//! worth of rows as a Parquet file (zstd, the export's settings). Public
//! API only. docs/benchmarks.md, "Parquet export".
//!
//! ```sh
//! cargo bench -p auditlog-export --bench encode
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use auditlog::Event;
use auditlog_export::pq::{FileWriter, BATCH_ROWS};
use auditlog_export::tables::{self, EventRows, Scope, ToolCall, ToolCallRows};
use auditlog_loadrun::workload::WorkloadSpec;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// About 200,000 events of the load run's workload.
fn events() -> Vec<Event> {
    let spec = WorkloadSpec {
        runs: 36_000,
        days: 2,
        ..WorkloadSpec::default()
    };
    spec.events(0, spec.runs).collect()
}

fn scope() -> Scope {
    Scope {
        log_id: "0123456789abcdef0123456789abcdef".into(),
        host: "gateway-1".into(),
        segment: 7,
    }
}

/// Build every row of `evs`, a batch per `BATCH_ROWS`, as the export does.
fn rows(evs: &[Event], scope: &Scope, mut sink: impl FnMut(arrow_array::RecordBatch)) {
    let (mut ev_rows, mut call_rows) = (EventRows::default(), ToolCallRows::default());
    for (i, ev) in evs.iter().enumerate() {
        let lsn = i as u64;
        ev_rows.push(scope, lsn, lsn, ev);
        if let Some(c) = ToolCall::of(ev) {
            call_rows.push_call(scope, lsn, ev, c);
        }
        if ev_rows.len() >= BATCH_ROWS {
            sink(ev_rows.finish().expect("batch"));
        }
        if call_rows.len() >= BATCH_ROWS {
            call_rows.finish().expect("batch");
        }
    }
    sink(ev_rows.finish().expect("batch"));
    call_rows.finish().expect("batch");
}

fn encode(c: &mut Criterion) {
    let evs = events();
    let scope = scope();
    let mut g = c.benchmark_group("export");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("rows (events + tool_calls)", |b| {
        b.iter(|| rows(&evs, &scope, |_| {}))
    });
    g.bench_function("tool call payloads read", |b| {
        b.iter(|| evs.iter().filter_map(ToolCall::of).count())
    });
    g.bench_function("rows + events file encoded", |b| {
        b.iter(|| {
            let meta = BTreeMap::new();
            let mut w = FileWriter::new("bench", tables::events_schema(), &meta).expect("writer");
            rows(&evs, &scope, |batch| w.write(&batch).expect("write"));
            w.finish().expect("file").len()
        })
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
