//! Logs made for the export tests: runs over several UTC days (one sealed
//! segment per day), tool calls (some failing), runs that finish a day
//! later, never, or before they start.

use std::path::Path;

use auditlog::{Config, Durability, Event, Json, Log, RunFinished, RunLog, RunStarted};
use auditlog_export::{Destination, DestinationSpec};

pub const DAY: i64 = 86_400_000_000;
/// 2026-11-20T00:00:00Z.
pub const T0: i64 = 1_795_132_800_000_000;

/// The events of `days` days, `runs_per_day` runs each, deterministic for
/// `seed`. Ids carry `tag` so two workloads can share a log.
pub fn workload(seed: u64, days: i64, runs_per_day: usize, tag: &str) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for d in 0..days {
        for i in 0..runs_per_day {
            let id = format!("{tag}-{d}-{i}");
            let t = T0 + d * DAY + (i as i64) * 1_000_000;
            let mut ev = Event::run_started(
                id.clone(),
                t,
                RunStarted {
                    skill_id: format!("skill-{}", rng.usize(0..3)),
                    caller_id: format!("u-{}", rng.usize(0..5)),
                    channel_id: format!("ch-{}", rng.usize(0..4)),
                    parent_run_id: if i > 0 && rng.bool() {
                        format!("{tag}-{d}-{}", i - 1)
                    } else {
                        String::new()
                    },
                    inputs: Json::parse(format!("{{\"i\":{i},\"f\":1.50}}")).unwrap(),
                    dry_run: i % 17 == 3,
                },
            );
            if i % 7 == 0 {
                ev.extra
                    .push(("x_gw".into(), Json::parse("{\"z\":1, \"a\":[2]}").unwrap()));
            }
            out.push(ev);
            for seq in 0..rng.u64(0..3) {
                let failed = rng.u8(0..4) == 0;
                let payload = format!(
                    "{{\"tool\":\"t{}\",\"status\":\"{}\",\"error_type\":\"e{}\",\"duration_ms\":{}}}",
                    rng.u8(0..3),
                    if failed { "error" } else { "ok" },
                    rng.u8(0..2),
                    rng.u32(1..900)
                );
                out.push(Event::run_log(
                    id.clone(),
                    t + 100 + seq as i64,
                    RunLog {
                        seq,
                        event_type: "tool_call".into(),
                        payload: Json::parse(payload).unwrap(),
                    },
                ));
            }
            let finish_at = match i % 10 {
                0 => None,          // never finishes
                1 => Some(t + DAY), // finishes on the next day
                _ => Some(t + 500),
            };
            if let Some(f) = finish_at {
                if f < T0 + days * DAY {
                    out.push(Event::run_finished(
                        id,
                        f,
                        RunFinished {
                            status: if i % 5 == 2 {
                                "error".into()
                            } else {
                                "ok".into()
                            },
                            runtime_seconds: (f - t) as f64 / 1e6,
                            ..RunFinished::default()
                        },
                    ));
                }
            }
        }
    }
    out.sort_by_key(|e| e.ts);
    out
}

/// Append `events` to the log in `dir` (created if missing), one segment
/// per UTC day; seal the last one when `seal`.
pub fn append(dir: &Path, events: &[Event], seal: bool) {
    let mut cfg = Config::new(dir);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    for chunk in events.chunks(50) {
        log.append_batch(chunk).unwrap().wait().unwrap();
    }
    if seal {
        log.seal().unwrap();
    }
    log.close().unwrap();
}

pub fn local(path: &Path) -> Destination {
    Destination::open(&DestinationSpec::Local(path.to_path_buf())).unwrap()
}

/// Every Parquet file under a local destination, relative, sorted.
pub fn parquet_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".parquet") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}
