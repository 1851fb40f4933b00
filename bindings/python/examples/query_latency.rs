//! The Python benchmark's queries asked natively (bench/bench.py compares
//! them with the same calls through the binding, on the same log):
//!
//!     query_latency DIR RUN_ID SKILL SINCE_US UNTIL_US SKILL,SKILL,... SECONDS
//!
//! Prints one JSON object: the median of each query kind in microseconds,
//! each asked for SECONDS (at least 5 times) after one warm-up call.

use std::time::Instant;

use auditlog::{AuditStore, Filter, Page, StoreConfig};

fn median_us(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let end = Instant::now() + std::time::Duration::from_secs_f64(budget);
    while Instant::now() < end || samples.len() < 5 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, run_id, skill, since, until, skills, budget] = args.as_slice() else {
        return Err(
            "usage: query_latency DIR RUN_ID SKILL SINCE_US UNTIL_US SKILLS SECONDS".into(),
        );
    };
    let (since, until): (i64, i64) = (since.parse()?, until.parse()?);
    let skills: Vec<String> = skills.split(',').map(str::to_string).collect();
    let budget: f64 = budget.parse()?;
    let store = AuditStore::open(StoreConfig::new(dir))?;
    let by_skill = Filter {
        skill: Some(skill.clone()),
        ..Filter::default()
    };
    let by_status = Filter {
        status: Some("error".into()),
        ..Filter::default()
    };
    let results = [
        ("get_run", median_us(budget, || drop(store.get_run(run_id)))),
        (
            "list_logs",
            median_us(budget, || drop(store.list_logs(run_id))),
        ),
        (
            "runs_by_skill_50",
            median_us(budget, || {
                drop(store.list_runs(&by_skill, Page::new(50, 0)))
            }),
        ),
        (
            "count_by_status",
            median_us(budget, || drop(store.count_runs(&by_status))),
        ),
        (
            "tool_errors_1d",
            median_us(budget, || drop(store.tool_errors(Some(since), Some(until)))),
        ),
        (
            "last_run_3",
            median_us(budget, || drop(store.last_run_per_skill(&skills, false))),
        ),
    ];
    let body: Vec<String> = results
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v:.3}"))
        .collect();
    println!("{{{}}}", body.join(","));
    store.close()?;
    Ok(())
}
