//! The search_query fuzz target's fixture, shared with its regression test
//! (tests/engine/reliability_fuzz_regressions.rs) so a replayed crash runs
//! against exactly what the fuzzer searched.

use auditlog::fulltext::{FullText, FullTextOptions};
use auditlog::{Config, Event, Json, Log, LogReader, RunFinished, RunStarted};

/// search_query: a 50-run log in `dir` and its caught-up full-text index.
pub fn search_fixture(dir: &std::path::Path) -> FullText {
    let log = Log::open(Config::new(dir)).unwrap();
    let t0 = 1_795_392_000_000_000i64;
    for i in 0..50i64 {
        let id = format!("r-{i}");
        let failed = i % 4 == 0;
        let started = Event::run_started(
            id.as_str(),
            t0 + i,
            RunStarted {
                skill_id: format!("skill.{}", i % 5),
                caller_id: format!("u-{}", i % 3),
                inputs: Json::parse(format!(r#"{{"q":"find the weather in city {i}"}}"#)).unwrap(),
                ..RunStarted::default()
            },
        );
        let fin = Event::run_finished(
            id.as_str(),
            t0 + i + 1,
            RunFinished {
                status: if failed { "error" } else { "ok" }.into(),
                output: format!("sunny and {i} degrees"),
                error: if failed { "upstream timeout" } else { "" }.into(),
                ..RunFinished::default()
            },
        );
        log.append_batch(&[started, fin]).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let reader = LogReader::open(dir).unwrap();
    let ft = FullText::open_for(&reader, &FullTextOptions::default()).unwrap();
    ft.catch_up(&reader, |_| {}).unwrap();
    ft
}
