//! Differential test: a generated gateway workload goes into auditlog and
//! into SQLite (executus-style schema); every query kind, with many random
//! filters and pages, must give the same answer from both.

use std::collections::HashSet;

use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted, ToolCall};
use auditlog::query::{CallFilter, CallKey, CallOrder, CallPage, Engine, Filter, Page};
use auditlog::{Config, Durability, Log, Micros};
use auditlog_loadrun::sqlite_baseline as sql;

/// 2026-11-23T23:30:00Z: the workload crosses midnight UTC.
const BASE: Micros = 1_795_476_600_000_000;
const SPAN: Micros = 40 * 60 * 1_000_000;

const SKILLS: &[&str] = &[
    "web.search",
    "code.run",
    "mail.send",
    "db.query",
    "img.gen",
    "",
];
const STATUSES: &[&str] = &["ok", "ok", "ok", "error", "timeout", "cancelled"];
const TOOLS: &[&str] = &["http.get", "sh", "py.exec"];
const ETYPES: &[&str] = &["timeout", "http_500", "denied"];
const ENGINES: &[&str] = &["openai", "ollama", ""];
const WORKSPACES: &[&str] = &["ws-1", "ws-2", ""];

pub struct Workload {
    pub events: Vec<Event>,
    pub ids: Vec<String>,
    pub callers: Vec<String>,
    pub channels: Vec<String>,
}

pub fn generate(seed: u64, runs: usize) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let callers: Vec<String> = (0..25).map(|i| format!("u-{i}")).collect();
    let channels: Vec<String> = (0..7).map(|i| format!("sess-{i}")).collect();
    let mut ids: Vec<String> = Vec::new();
    let mut evs: Vec<(Micros, u32, Event)> = Vec::new();
    let mut order = 0u32;
    let mut push = |evs: &mut Vec<(Micros, u32, Event)>, ev: Event| {
        order += 1;
        evs.push((ev.ts, order, ev));
    };
    for i in 0..runs {
        // Ids with random prefixes so id order differs from time order;
        // start times in whole milliseconds so ties happen.
        let id = format!("{}-{i}", ["a", "b", "c", "d"][rng.usize(..4)]);
        let t0 = BASE + (rng.i64(0..SPAN) / 1000) * 1000;
        let parent = match rng.u32(..100) {
            0..=29 if !ids.is_empty() => ids[rng.usize(..ids.len())].clone(),
            30..=32 => format!("ghost-{}", rng.u32(..5)),
            _ => String::new(),
        };
        let skill = SKILLS[rng.usize(..SKILLS.len())];
        let caller = &callers[rng.usize(..callers.len())];
        let channel = &channels[rng.usize(..channels.len())];
        let dry = rng.u32(..10) == 0;
        let start = RunStarted {
            skill_id: skill.into(),
            caller_id: caller.clone(),
            channel_id: channel.clone(),
            parent_run_id: parent.clone(),
            inputs: Json::parse(format!("{{\"q\":\"{}\",\"n\":{i}}}", rng.u32(..1000))).unwrap(),
            dry_run: dry,
        };
        push(&mut evs, Event::run_started(id.clone(), t0, start.clone()));
        let nlogs = rng.usize(..5);
        let mut t = t0;
        for s in 0..nlogs {
            t += rng.i64(1..3_000_000);
            let (et, payload) = if rng.bool() {
                let failing = rng.u32(..3) == 0;
                let mut p = format!(
                    "{{\"tool\":\"{}\",\"status\":\"{}\"",
                    TOOLS[rng.usize(..TOOLS.len())],
                    if failing { "error" } else { "ok" }
                );
                if rng.u32(..5) != 0 {
                    p.push_str(&format!(",\"error_type\":\"{}\"", ETYPES[rng.usize(..3)]));
                }
                if rng.u32(..4) != 0 {
                    p.push_str(&format!(",\"duration_ms\":{}", rng.u32(..10_000)));
                }
                p.push('}');
                ("tool_call", p)
            } else {
                ("message", format!("{{\"text\":\"step {s}\"}}"))
            };
            // Sometimes out of seq order in the log.
            let seq = if rng.u32(..8) == 0 {
                (nlogs - s) as u64
            } else {
                s as u64
            };
            let log = RunLog {
                seq,
                event_type: et.into(),
                payload: Json::parse(payload).unwrap(),
            };
            push(&mut evs, Event::run_log(id.clone(), t, log));
        }
        let finish = |rng: &mut fastrand::Rng, t: Micros| RunFinished {
            status: STATUSES[rng.usize(..STATUSES.len())].into(),
            output: format!("out {}", rng.u32(..100)),
            error: String::new(),
            tool_calls: rng.u64(..5),
            runtime_seconds: rng.u32(..100_000) as f64 / 1000.0,
            input_tokens: rng.u64(..1000),
            output_tokens: rng.u64(..1000),
            thinking_tokens: (t % 7) as u64,
        };
        if rng.u32(..10) != 0 {
            // Most runs finish; some take long (across a segment roll).
            let max = if rng.u32(..10) == 0 {
                900_000_000
            } else {
                5_000_000
            };
            let tf = t + rng.i64(1..max);
            push(
                &mut evs,
                Event::run_finished(id.clone(), tf, finish(&mut rng, tf)),
            );
            if rng.u32(..40) == 0 {
                let t2 = tf + rng.i64(1..60_000_000);
                push(
                    &mut evs,
                    Event::run_finished(id.clone(), t2, finish(&mut rng, t2)),
                );
            }
        }
        // Tool calls as records of their own: inside this run (taking its
        // scope where they name none), standing alone, or naming a run
        // that is never stored.
        for c in 0..rng.usize(..3) {
            let run_id = match rng.u32(..4) {
                0 | 1 => id.clone(),
                2 => String::new(),
                _ => format!("never-{i}-{c}"),
            };
            let pick = |rng: &mut fastrand::Rng, v: &[String]| {
                if rng.u32(..3) == 0 {
                    String::new()
                } else {
                    v[rng.usize(..v.len())].clone()
                }
            };
            let status = ["ok", "error", "error", "retried"][rng.usize(..4)];
            let call = ToolCall {
                call_id: format!("c-{i}-{c}"),
                channel_id: pick(&mut rng, &channels),
                caller_id: pick(&mut rng, &callers),
                workspace_id: WORKSPACES[rng.usize(..3)].into(),
                tool: TOOLS[rng.usize(..TOOLS.len())].into(),
                engine: ENGINES[rng.usize(..3)].into(),
                status: status.into(),
                error_type: if status == "ok" {
                    String::new()
                } else {
                    ETYPES[rng.usize(..3)].into()
                },
                duration_ms: (rng.u32(..4) != 0).then(|| f64::from(rng.u32(..10_000))),
                ..ToolCall::default()
            };
            let tc = t0 + rng.i64(1..6_000_000);
            push(&mut evs, Event::tool_call(run_id, tc, call));
        }
        if rng.u32(..50) == 0 {
            // A duplicate start, later, with other fields.
            let mut s2 = start.clone();
            s2.skill_id = "dup.skill".into();
            let t2 = t0 + rng.i64(1..600_000_000);
            push(&mut evs, Event::run_started(id.clone(), t2, s2));
        }
        if rng.u32(..60) == 0 {
            // Orphan log and a finish without start.
            let ghost = format!("orphan-{i}");
            let log = RunLog {
                seq: 0,
                event_type: "tool_call".into(),
                payload: Json::parse("{\"tool\":\"sh\",\"status\":\"error\"}").unwrap(),
            };
            push(&mut evs, Event::run_log(ghost.clone(), t0 + 5, log));
            push(
                &mut evs,
                Event::run_finished(ghost, t0 + 9, RunFinished::default()),
            );
        }
        if rng.u32(..80) == 0 {
            // A finish logged before its (late) start: ignored by both.
            let late = format!("late-{i}");
            push(
                &mut evs,
                Event::run_finished(late.clone(), t0, RunFinished::default()),
            );
            let s = RunStarted {
                skill_id: skill.into(),
                ..RunStarted::default()
            };
            push(&mut evs, Event::run_started(late.clone(), t0 + 1000, s));
            ids.push(late);
        }
        ids.push(id);
    }
    // Mostly time order, with some late arrivals.
    evs.sort_by_key(|(ts, o, _)| (*ts, *o));
    for _ in 0..evs.len() / 50 {
        let i = rng.usize(1..evs.len());
        let j = i.saturating_sub(rng.usize(1..20));
        evs.swap(i, j);
    }
    Workload {
        events: evs.into_iter().map(|(_, _, e)| e).collect(),
        ids,
        callers,
        channels,
    }
}

fn random_filter(rng: &mut fastrand::Rng, w: &Workload) -> Filter {
    let pick = |rng: &mut fastrand::Rng, p: u32| rng.u32(..100) < p;
    let mut f = Filter::default();
    if pick(rng, 40) {
        f.skill = Some(if rng.u32(..10) == 0 {
            "dup.skill".into()
        } else {
            SKILLS[rng.usize(..SKILLS.len())].into()
        });
    }
    if pick(rng, 25) {
        f.caller = Some(w.callers[rng.usize(..w.callers.len())].clone());
    }
    if pick(rng, 20) {
        f.channel = Some(w.channels[rng.usize(..w.channels.len())].clone());
    }
    if pick(rng, 30) {
        f.status =
            Some(["ok", "error", "timeout", "cancelled", "running", "nope"][rng.usize(..6)].into());
    }
    if pick(rng, 10) {
        f.parent = Some(if rng.bool() {
            w.ids[rng.usize(..w.ids.len())].clone()
        } else {
            String::new()
        });
    }
    f.top_level = pick(rng, 15);
    if pick(rng, 35) {
        f.since = Some(BASE + rng.i64(0..SPAN));
    }
    if pick(rng, 35) {
        f.until = Some(BASE + rng.i64(0..SPAN));
    }
    f.include_dry_run = pick(rng, 30);
    f
}

fn check_all(eng: &mut Engine, db: &rusqlite::Connection, w: &Workload, seed: u64, rounds: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Full listing and count, every run.
    let all = Filter {
        include_dry_run: true,
        ..Filter::default()
    };
    let ours = eng.list(&all, Page::all()).unwrap();
    let theirs = sql::list_runs(db, &all, Page::all()).unwrap();
    assert_eq!(ours.len(), theirs.len(), "number of runs");
    assert_eq!(ours, theirs, "all runs");
    // Counts by status alone: answered from the images' KEYS summaries
    // where they can be (index format 6), by visiting runs where not.
    for status in [
        "ok",
        "error",
        "timeout",
        "cancelled",
        "running",
        "dry_run",
        "nope",
    ] {
        for include_dry_run in [false, true] {
            let f = Filter {
                status: Some(status.into()),
                include_dry_run,
                ..Filter::default()
            };
            assert_eq!(
                eng.count(&f).unwrap(),
                sql::count_runs(db, &f).unwrap(),
                "count {f:?}"
            );
        }
    }
    for round in 0..rounds {
        let f = random_filter(&mut rng, w);
        let page = match rng.u32(..3) {
            0 => Page::all(),
            _ => Page::new(rng.usize(1..60), rng.usize(..200)),
        };
        assert_eq!(
            eng.count(&f).unwrap(),
            sql::count_runs(db, &f).unwrap(),
            "round {round}: count {f:?}"
        );
        assert_eq!(
            eng.list(&f, page).unwrap(),
            sql::list_runs(db, &f, page).unwrap(),
            "round {round}: list {f:?} {page:?}"
        );
    }
    // Point queries over known and unknown ids.
    let mut probe: Vec<String> = (0..150)
        .map(|_| w.ids[rng.usize(..w.ids.len())].clone())
        .collect();
    probe.extend(["nope".to_string(), "ghost-1".into(), "orphan-3".into()]);
    for id in &probe {
        assert_eq!(
            eng.get_run(id).unwrap(),
            sql::get_run(db, id).unwrap(),
            "run {id}"
        );
        assert_eq!(
            eng.logs(id).unwrap(),
            sql::list_logs(db, id).unwrap(),
            "logs {id}"
        );
        let dry = rng.bool();
        assert_eq!(
            eng.children(id, dry).unwrap(),
            sql::children(db, id, dry).unwrap(),
            "children {id}"
        );
        assert_eq!(
            eng.chain(id).unwrap(),
            sql::chain(db, id).unwrap(),
            "chain {id}"
        );
    }
    for g in 0..5 {
        assert_eq!(
            eng.children(&format!("ghost-{g}"), true).unwrap(),
            sql::children(db, &format!("ghost-{g}"), true).unwrap()
        );
    }
    let mut skills: Vec<String> = SKILLS.iter().map(|s| s.to_string()).collect();
    skills.push("dup.skill".into());
    skills.push("never.used".into());
    for (failed, dry) in [(false, false), (true, false), (false, true), (true, true)] {
        assert_eq!(
            eng.last_run(&skills, failed, dry).unwrap(),
            sql::last_run(db, &skills, failed, dry).unwrap(),
            "last_run failed={failed} dry={dry}"
        );
    }
    for _ in 0..10 {
        let t = BASE + rng.i64(0..SPAN + 1_000_000_000);
        let dry = rng.bool();
        assert_eq!(
            eng.finished_before(t, dry, None).unwrap(),
            sql::finished_before(db, t, dry).unwrap(),
            "finished_before {t}"
        );
    }
    for _ in 0..15 {
        let since = rng.bool().then(|| BASE + rng.i64(0..SPAN));
        let until = rng.bool().then(|| BASE + rng.i64(0..SPAN));
        let dry = rng.bool();
        assert_eq!(
            eng.errors(since, until, dry).unwrap(),
            sql::errors(db, since, until, dry).unwrap(),
            "errors {since:?} {until:?} {dry}"
        );
    }
}

fn random_call_filter(rng: &mut fastrand::Rng, w: &Workload) -> CallFilter {
    let pick = |rng: &mut fastrand::Rng, p: u32| rng.u32(..100) < p;
    let mut f = CallFilter::default();
    if pick(rng, 30) {
        f.tool = Some(TOOLS[rng.usize(..TOOLS.len())].into());
    }
    if pick(rng, 20) {
        f.engine = Some(ENGINES[rng.usize(..ENGINES.len())].into());
    }
    if pick(rng, 25) {
        f.channel = Some(w.channels[rng.usize(..w.channels.len())].clone());
    }
    if pick(rng, 20) {
        f.caller = Some(w.callers[rng.usize(..w.callers.len())].clone());
    }
    if pick(rng, 15) {
        f.workspace = Some(WORKSPACES[rng.usize(..WORKSPACES.len())].into());
    }
    if pick(rng, 30) {
        f.status = Some(["ok", "error", "retried", "nope"][rng.usize(..4)].into());
    }
    if pick(rng, 15) {
        f.error_type = Some(ETYPES[rng.usize(..ETYPES.len())].into());
    }
    if pick(rng, 8) {
        f.run_id = Some(w.ids[rng.usize(..w.ids.len())].clone());
    }
    if pick(rng, 35) {
        f.since = Some(BASE + rng.i64(0..SPAN));
    }
    if pick(rng, 35) {
        f.until = Some(BASE + rng.i64(0..SPAN));
    }
    f.include_dry_run = pick(rng, 30);
    f
}

/// The engine's calls as SQLite's rows, to compare.
fn as_rows(calls: Vec<auditlog::Call>) -> Vec<sql::SqlCall> {
    calls
        .into_iter()
        .map(|c| sql::SqlCall {
            lsn: c.lsn,
            ts: c.ts,
            source: c.source.as_str().to_string(),
            run_id: c.run_id,
            channel_id: c.call.channel_id,
            caller_id: c.call.caller_id,
            workspace_id: c.call.workspace_id,
            tool: c.call.tool,
            engine: c.call.engine,
            status: c.call.status,
            error_type: c.call.error_type,
            duration_ms: c.call.duration_ms,
        })
        .collect()
}

/// `calls`, its counts and its pages: every shape, random filters.
fn check_calls(
    eng: &mut Engine,
    db: &rusqlite::Connection,
    w: &Workload,
    seed: u64,
    rounds: usize,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let all = CallFilter {
        include_dry_run: true,
        ..CallFilter::default()
    };
    let ours = as_rows(eng.calls(&all, CallPage::default()).unwrap());
    assert!(ours.len() > 100, "calls in the workload: {}", ours.len());
    assert_eq!(
        ours,
        sql::calls(db, &all, CallPage::default()).unwrap(),
        "all calls"
    );
    for round in 0..rounds {
        let f = random_call_filter(&mut rng, w);
        let order = if rng.bool() {
            CallOrder::NewestFirst
        } else {
            CallOrder::OldestFirst
        };
        let whole = CallPage {
            order,
            ..CallPage::default()
        };
        let want = sql::calls(db, &f, whole).unwrap();
        assert_eq!(
            as_rows(eng.calls(&f, whole).unwrap()),
            want,
            "round {round}: calls {f:?} {order:?}"
        );
        // One page from a cursor in the middle.
        if !want.is_empty() {
            let at = &want[rng.usize(..want.len())];
            let page = CallPage {
                limit: Some(rng.usize(1..20)),
                cursor: Some(auditlog::CallCursor {
                    ts: at.ts,
                    lsn: at.lsn,
                }),
                order,
            };
            assert_eq!(
                as_rows(eng.calls(&f, page).unwrap()),
                sql::calls(db, &f, page).unwrap(),
                "round {round}: page {f:?} {page:?}"
            );
        }
        assert_eq!(
            eng.count_calls(&f).unwrap(),
            sql::count_calls(db, &f).unwrap(),
            "round {round}: count {f:?}"
        );
        let by = CallKey::ALL[rng.usize(..CallKey::ALL.len())];
        assert_eq!(
            eng.count_calls_by(&f, by).unwrap(),
            sql::count_calls_by(db, &f, by).unwrap(),
            "round {round}: count by {by:?} {f:?}"
        );
    }
}

#[test]
fn auditlog_answers_like_sqlite() {
    let seed = std::env::var("QUERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let w = generate(seed, 4000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    let mut eng = Engine::new(log.reader());
    let mut db = sql::open(None).unwrap();
    let mut loader = sql::Loader::new();

    let n = w.events.len();
    let checkpoints = [n / 3, 2 * n / 3, n];
    let mut done = 0;
    for (k, &upto) in checkpoints.iter().enumerate() {
        for (c, chunk) in w.events[done..upto].chunks(97).enumerate() {
            let _ = log.append_batch(chunk).unwrap();
            // Force rolls now and then (sealed segments mid-stream).
            if c % 9 == 8 {
                log.seal().unwrap();
            }
            if c % 5 == 4 {
                // Incremental catch-up of the active segment.
                log.flush().unwrap();
                eng.count(&Filter::default()).unwrap();
            }
        }
        log.flush().unwrap();
        loader.load(&mut db, &w.events[done..upto]).unwrap();
        done = upto;
        let t = std::time::Instant::now();
        check_all(&mut eng, &db, &w, seed + k as u64, 120);
        check_calls(&mut eng, &db, &w, seed + 50 + k as u64, 40);
        eprintln!("checkpoint {k}: {:?}", t.elapsed());
    }
    let segs = log.reader().segments();
    assert!(segs.len() > 5, "several segments: {}", segs.len());
    assert!(segs.iter().any(|s| s.sealed) && segs.last().is_some_and(|s| !s.sealed));
    assert!(
        segs.iter().map(|s| s.day).collect::<HashSet<_>>().len() >= 2,
        "crosses a UTC day"
    );
    assert!(eng.stats.written > 0 && eng.stats.chunks_built > 0);
    drop(eng);
    log.close().unwrap();

    // The read-only engine on the closed log (the command line's path)
    // uses the stored index files and answers the same.
    let mut ro = Engine::open(&path).unwrap();
    check_all(&mut ro, &db, &w, seed + 100, 60);
    check_calls(&mut ro, &db, &w, seed + 150, 25);
    assert_eq!(ro.stats.rebuilt, 0, "index files reused: {:?}", ro.stats);
}

/// Tool calls outside any run, as a gateway logs them: `count` and
/// `count --by` answer such images from the posting lists alone (no call
/// record read), images that also hold calls of runs record by record.
/// Segments of both kinds, and the active one, must answer like SQLite.
fn standalone_calls(rng: &mut fastrand::Rng, w: &Workload, n: usize, from: usize) -> Vec<Event> {
    (from..from + n)
        .map(|i| {
            let pick = |rng: &mut fastrand::Rng, v: &[String]| {
                if rng.u32(..5) == 0 {
                    String::new()
                } else {
                    v[rng.usize(..v.len())].clone()
                }
            };
            let status = ["ok", "ok", "error", "retried", ""][rng.usize(..5)];
            let call = ToolCall {
                call_id: format!("s-{i}"),
                channel_id: pick(rng, &w.channels),
                caller_id: pick(rng, &w.callers),
                workspace_id: WORKSPACES[rng.usize(..3)].into(),
                tool: TOOLS[rng.usize(..TOOLS.len())].into(),
                engine: ENGINES[rng.usize(..3)].into(),
                status: status.into(),
                error_type: if rng.u32(..3) == 0 {
                    ETYPES[rng.usize(..3)].into()
                } else {
                    String::new()
                },
                duration_ms: (rng.u32(..4) != 0).then(|| f64::from(rng.u32(..10_000))),
                ..ToolCall::default()
            };
            Event::tool_call("", BASE + rng.i64(0..SPAN), call)
        })
        .collect()
}

#[test]
fn standalone_calls_answer_like_sqlite() {
    let w = generate(11, 600);
    let mut rng = fastrand::Rng::with_seed(11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    let mut eng = Engine::new(log.reader());
    let mut db = sql::open(None).unwrap();
    let mut loader = sql::Loader::new();
    // Standalone-only segments, then segments with runs, then a
    // standalone-only active segment.
    let parts = [
        standalone_calls(&mut rng, &w, 3000, 0),
        w.events.clone(),
        standalone_calls(&mut rng, &w, 800, 3000),
    ];
    for (k, part) in parts.iter().enumerate() {
        for (c, chunk) in part.chunks(97).enumerate() {
            let _ = log.append_batch(chunk).unwrap();
            if c % 8 == 7 {
                log.seal().unwrap();
            }
        }
        if k < 2 {
            log.seal().unwrap();
        }
        loader.load(&mut db, part).unwrap();
    }
    log.flush().unwrap();
    check_calls(&mut eng, &db, &w, 31, 150);
    // Counts of every shape, with each key alone and in pairs: the
    // posting-list answers.
    for by in CallKey::ALL {
        let mut filters = vec![CallFilter::default()];
        for round in 0..30 {
            let mut f = random_call_filter(&mut rng, &w);
            f.run_id = None;
            if round % 3 == 0 {
                f.since = Some(BASE + rng.i64(0..SPAN));
            }
            filters.push(f);
        }
        for f in filters {
            assert_eq!(
                eng.count_calls(&f).unwrap(),
                sql::count_calls(&db, &f).unwrap(),
                "count {f:?}"
            );
            assert_eq!(
                eng.count_calls_by(&f, by).unwrap(),
                sql::count_calls_by(&db, &f, by).unwrap(),
                "count by {by:?} {f:?}"
            );
        }
    }
    drop(eng);
    log.close().unwrap();
    let mut ro = Engine::open(&path).unwrap();
    check_calls(&mut ro, &db, &w, 41, 100);
}
