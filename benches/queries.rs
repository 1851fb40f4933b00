//! One query of each kind over a modest log, auditlog's indexes against
//! SQLite with the same indexes on the same data (src/query/bench.rs).
//! The 10M-event figures come from `auditlog bench` (docs/benchmarks.md).

use criterion::{criterion_group, criterion_main, Criterion};

use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted};
use auditlog::query::bench::{engine_queries, sqlite_queries, BenchParams};
use auditlog::query::Engine;
use auditlog::{sqlite_baseline as sql, Config, Durability, Log};

const RUNS: usize = 20_000;

fn build(dir: &std::path::Path) {
    let mut cfg = Config::new(dir);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).expect("open log");
    let mut rng = fastrand::Rng::with_seed(1);
    let t0: i64 = 1_795_132_800_000_000;
    let mut batch = Vec::new();
    for i in 0..RUNS {
        let id = format!("run-{i:07}");
        let t = t0 + i as i64 * 20_000_000;
        let parent = if i % 4 == 0 || i < 10 {
            String::new()
        } else {
            format!("run-{:07}", i - rng.usize(1..10))
        };
        let st = RunStarted {
            skill_id: format!("skill.{}", rng.usize(..20)),
            caller_id: format!("u-{}", rng.usize(..200)),
            channel_id: format!("c-{}", rng.usize(..50)),
            parent_run_id: parent,
            inputs: Json::parse("{\"q\":\"hello\"}").unwrap(),
            dry_run: i % 50 == 0,
        };
        batch.push(Event::run_started(id.clone(), t, st));
        for s in 0..4u64 {
            let failing = rng.usize(..10) == 0;
            let payload = format!(
                "{{\"tool\":\"t{}\",\"status\":\"{}\",\"error_type\":\"e{}\",\"duration_ms\":{}}}",
                rng.usize(..5),
                if failing { "error" } else { "ok" },
                rng.usize(..3),
                rng.usize(..1000)
            );
            let l = RunLog {
                seq: s,
                event_type: "tool_call".into(),
                payload: Json::parse(payload).unwrap(),
            };
            batch.push(Event::run_log(id.clone(), t + 1 + s as i64, l));
        }
        let f = RunFinished {
            status: ["ok", "ok", "error", "timeout"][rng.usize(..4)].into(),
            ..RunFinished::default()
        };
        batch.push(Event::run_finished(id, t + 10_000_000, f));
        if batch.len() > 5000 {
            let _ = log.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    let _ = log.append_batch(&batch).expect("append");
    log.close().expect("close");
}

fn queries(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    build(&dir);
    let mut eng = Engine::open(&dir).expect("engine");
    let params = BenchParams::pick(&mut eng).expect("params");
    let mut db = sql::open(Some(&tmp.path().join("baseline.sqlite"))).expect("sqlite");
    sql::load_log(&mut db, eng.reader(), 50_000).expect("load sqlite");
    let ours = engine_queries(&params);
    let theirs = sqlite_queries(&params);
    for ((name, q), (_, s)) in ours.iter().zip(theirs.iter()) {
        assert_eq!(
            q(&mut eng).expect(name),
            s(&db).expect(name),
            "{name}: same answer size"
        );
        let mut g = c.benchmark_group(format!("query/{name}"));
        g.sample_size(20);
        g.warm_up_time(std::time::Duration::from_millis(300));
        g.measurement_time(std::time::Duration::from_secs(1));
        g.bench_function("auditlog", |b| b.iter(|| q(&mut eng).expect("query")));
        g.bench_function("sqlite", |b| b.iter(|| s(&db).expect("query")));
        g.finish();
    }
}

criterion_group!(benches, queries);
criterion_main!(benches);
