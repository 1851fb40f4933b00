//! A log whose every run finishes in a later segment than it started (the
//! worst case for cross-segment finishes), to measure what an open engine
//! holds for them (docs/benchmarks.md, "Memory and count_by_status").
//!
//! `cargo run --release --example cross_finish_log -- DIR RUNS DAYS`

use auditlog::{Config, Durability, Event, Log, RunFinished, RunStarted};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cross_finish_log DIR RUNS DAYS";
    let dir = args.next().ok_or(usage)?;
    let runs: u64 = args.next().ok_or(usage)?.parse()?;
    let days: u64 = args.next().ok_or(usage)?.parse()?;
    let mut cfg = Config::new(&dir);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg)?;
    let per_day = runs / days.max(1);
    // 2026-11-20T00:00:00Z.
    let d0: i64 = 1_795_132_800_000_000;
    let day_us: i64 = 86_400_000_000;
    for day in 0..=days {
        let t0 = d0 + day as i64 * day_us;
        let mut evs = Vec::new();
        for i in 0..per_day {
            if day > 0 {
                let id = format!("run-{}-{i:08}", day - 1);
                let status = if i % 10 == 0 { "error" } else { "ok" };
                let f = RunFinished {
                    status: status.into(),
                    ..RunFinished::default()
                };
                evs.push(Event::run_finished(id, t0 + i as i64, f));
            }
            if day < days {
                let id = format!("run-{day}-{i:08}");
                let s = RunStarted {
                    skill_id: format!("skill-{}", i % 50),
                    caller_id: format!("u-{}", i % 1000),
                    channel_id: "c".into(),
                    ..RunStarted::default()
                };
                evs.push(Event::run_started(id, t0 + day_us / 2 + i as i64, s));
            }
        }
        for chunk in evs.chunks(10_000) {
            log.append_batch(chunk)?.wait()?;
        }
        log.seal()?;
    }
    log.close()?;
    Ok(())
}
