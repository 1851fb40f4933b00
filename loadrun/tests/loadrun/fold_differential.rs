//! Differential test of the one run fold: the same adversarial event
//! orders go into the query engine (index images over many segments, live
//! and read-only), the full-text index (committed in small batches, so
//! documents are read back and folded further), the SQLite baseline and
//! the plain in-memory fold; every run view, log list, child list and
//! status count must be identical.
//!
//! The orders: a finish before its start (two producer threads racing),
//! duplicate starts and duplicate finishes, logs before the start, orphan
//! logs and finishes of ids never started, sub-runs whose parent starts
//! later in the log, and amending events (`"replace":true`: an upserted
//! start, an overriding finish, a replaced log; a run made dry by its
//! status and made ordinary again).

use std::collections::BTreeSet;
use std::time::Duration;

use auditlog::fulltext::{Filters, FullText, FullTextOptions};
use auditlog::query::{Engine, Filter, Page};
use auditlog::view::{Fold, Run};
use auditlog::{Config, Durability, Event, Json, Log, LogReader, Micros, RunFinished, RunLog};
use auditlog::{ReplayRange, RunStarted};
use auditlog_loadrun::sqlite_baseline as sql;

/// 2026-11-23T23:00:00Z: the log crosses midnight UTC.
const BASE: Micros = 1_795_474_800_000_000;
const STATUSES: &[&str] = &["ok", "error", "timeout", "cancelled"];
/// Every status a run of the workload can show.
const SHOWN: &[&str] = &["ok", "error", "timeout", "cancelled", "dry_run", "running"];

fn start(id: &str, skill: &str, parent: &str, n: usize) -> Event {
    let s = RunStarted {
        skill_id: skill.into(),
        caller_id: format!("u{}", n % 3),
        channel_id: format!("c{}", n % 2),
        parent_run_id: parent.into(),
        inputs: Json::parse(format!("{{\"q\":\"needle{n}\"}}")).unwrap(),
        dry_run: false,
    };
    Event::run_started(id, 0, s)
}

fn finish(id: &str, status: &str, n: usize) -> Event {
    let f = RunFinished {
        status: status.into(),
        output: format!("out{n}"),
        error: if status == "ok" { "" } else { "went wrong" }.into(),
        tool_calls: n as u64 % 4,
        runtime_seconds: n as f64 / 8.0,
        ..RunFinished::default()
    };
    Event::run_finished(id, 0, f)
}

fn log(id: &str, seq: u64) -> Event {
    let l = RunLog {
        seq,
        event_type: "tool_call".into(),
        payload: Json::parse(format!("{{\"tool\":\"sh\",\"status\":\"ok\",\"n\":{seq}}}")).unwrap(),
    };
    Event::run_log(id, 0, l)
}

fn amending(ev: Event) -> Event {
    ev.with_replace()
}

/// The events of one run in an adversarial order chosen by `kind`.
fn run_events(rng: &mut fastrand::Rng, kind: u32, id: &str, parent: &str, n: usize) -> Vec<Event> {
    let st = |rng: &mut fastrand::Rng| STATUSES[rng.usize(..STATUSES.len())];
    let mut s = start(id, ["a", "b", "c"][n % 3], parent, n);
    match kind {
        // In order.
        0 => vec![s, log(id, 0), log(id, 1), finish(id, st(rng), n)],
        // The finish raced ahead of the start; sometimes a second finish
        // comes after the start (that one counts).
        1 => {
            let mut v = vec![finish(id, "error", n), log(id, 0), s];
            if rng.bool() {
                v.push(finish(id, st(rng), n + 1));
            }
            v
        }
        // Duplicate starts (another skill) and duplicate finishes.
        2 => {
            let mut dup = s.clone();
            if let auditlog::EventData::RunStarted(d) = &mut dup.data {
                d.skill_id = "dup".into();
                d.parent_run_id = String::new();
            }
            vec![
                s,
                dup.clone(),
                finish(id, st(rng), n),
                log(id, 0),
                finish(id, "error", n + 1),
                dup,
            ]
        }
        // Logs before the start, seqs out of order; never finished.
        3 => vec![log(id, 2), log(id, 0), s, log(id, 1)],
        // Amended: the start upserted (another skill, caller, parent), the
        // finish overridden (a plain one after it still ignored), a log
        // replaced, an amending finish before the start ignored.
        5 => {
            let mut again = start(id, "amended", "", n + 1);
            if let auditlog::EventData::RunStarted(d) = &mut again.data {
                d.caller_id = "u-amended".into();
            }
            vec![
                amending(finish(id, "error", n)),
                s,
                log(id, 0),
                log(id, 1),
                finish(id, st(rng), n),
                amending(again),
                amending(log(id, 0)),
                amending(finish(id, st(rng), n + 2)),
                finish(id, "error", n + 3),
            ]
        }
        // Dry by status, then (sometimes) made ordinary again; an amending
        // start of a run not yet started is a plain start.
        6 => {
            let mut v = vec![amending(s), log(id, 0), finish(id, "dry_run", n)];
            if rng.bool() {
                v.push(amending(finish(id, "ok", n + 1)));
            }
            v
        }
        // A dry-run flag flip is not adversarial; keep it plain but
        // with the start's ts far in the past (late arrival).
        _ => {
            s.ts = -1;
            vec![s, finish(id, st(rng), n)]
        }
    }
}

struct Workload {
    events: Vec<Event>,
    ids: Vec<String>,
}

fn workload(seed: u64, runs: usize) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lists: Vec<Vec<Event>> = Vec::new();
    let mut late_parents: Vec<Vec<Event>> = Vec::new();
    let mut ids = Vec::new();
    for n in 0..runs {
        let id = format!("r{n}");
        // A sub-run of a parent that starts later (at the end of the log),
        // of an earlier run, or top level.
        let parent = match rng.u32(..10) {
            0 => {
                let p = format!("late{n}");
                let kind = rng.u32(..7);
                late_parents.push(run_events(&mut rng, kind, &p, "", n + runs));
                ids.push(p.clone());
                p
            }
            1 | 2 if n > 0 => format!("r{}", rng.usize(..n)),
            _ => String::new(),
        };
        let kind = rng.u32(..7);
        lists.push(run_events(&mut rng, kind, &id, &parent, n));
        ids.push(id);
        if rng.u32(..8) == 0 {
            // Orphans: an id that never starts.
            let o = format!("orphan{n}");
            lists.push(vec![log(&o, 0), finish(&o, "ok", n), log(&o, 1)]);
            ids.push(o);
        }
    }
    // Interleave the runs at random, keeping each run's own order.
    let mut events = Vec::new();
    let mut next: Vec<usize> = vec![0; lists.len()];
    let mut open: Vec<usize> = (0..lists.len()).collect();
    while !open.is_empty() {
        let k = rng.usize(..open.len());
        let r = open[k];
        events.push(lists[r][next[r]].clone());
        next[r] += 1;
        if next[r] == lists[r].len() {
            open.swap_remove(k);
        }
    }
    events.extend(late_parents.into_iter().flatten());
    // Timestamps over about two hours across midnight, mostly rising,
    // whole milliseconds so that started_at ties happen.
    let step = 7_200_000_000 / events.len() as i64;
    for (i, ev) in events.iter_mut().enumerate() {
        let late = ev.ts == -1;
        let t = BASE + (i as i64 * step + rng.i64(0..step * 4)) / 1000 * 1000;
        ev.ts = if late { t - 3_000_000_000 } else { t };
    }
    Workload { events, ids }
}

/// The children of `id` as the fold sees them, in list order.
fn fold_children(fold: &Fold, id: &str) -> Vec<Run> {
    let mut v: Vec<Run> = fold
        .runs()
        .filter(|r| r.parent_run_id == id)
        .cloned()
        .collect();
    v.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    v
}

fn check_engine(eng: &mut Engine, db: &rusqlite::Connection, fold: &Fold, w: &Workload) {
    for id in &w.ids {
        let want = fold.run(id).cloned();
        assert_eq!(eng.get_run(id).unwrap(), want, "engine: run {id}");
        assert_eq!(sql::get_run(db, id).unwrap(), want, "sqlite: run {id}");
        let logs = fold.logs(id);
        assert_eq!(eng.logs(id).unwrap(), logs, "engine: logs {id}");
        assert_eq!(sql::list_logs(db, id).unwrap(), logs, "sqlite: logs {id}");
        let kids = fold_children(fold, id);
        assert_eq!(
            eng.children(id, true).unwrap(),
            kids,
            "engine: children {id}"
        );
        assert_eq!(
            sql::children(db, id, true).unwrap(),
            kids,
            "sqlite: children {id}"
        );
    }
    for status in SHOWN {
        let f = Filter {
            status: Some(status.to_string()),
            include_dry_run: true,
            ..Filter::default()
        };
        let want = fold.runs().filter(|r| r.status == *status).count() as u64;
        assert_eq!(
            eng.count(&f).unwrap(),
            want,
            "engine: count --status {status}"
        );
        assert_eq!(
            sql::count_runs(db, &f).unwrap(),
            want,
            "sqlite: count --status {status}"
        );
    }
    let all = Filter {
        include_dry_run: true,
        ..Filter::default()
    };
    assert_eq!(
        eng.list(&all, Page::all()).unwrap(),
        sql::list_runs(db, &all, Page::all()).unwrap(),
        "every run, in list order"
    );
    // Dry runs (by their start or by their status) left out.
    let plain = Filter::default();
    let listed = eng.list(&plain, Page::all()).unwrap();
    assert_eq!(
        listed.len(),
        fold.runs().filter(|r| !r.dry_run).count(),
        "engine: runs without dry runs"
    );
    assert_eq!(
        listed,
        sql::list_runs(db, &plain, Page::all()).unwrap(),
        "runs without dry runs, in list order"
    );
}

fn check_search(ft: &FullText, fold: &Fold, w: &Workload) {
    for id in &w.ids {
        let hits = ft
            .search(&format!("id:{id}"), &Filters::default(), 10)
            .expect("search");
        let got: Vec<&Run> = hits.iter().map(|h| &h.run).collect();
        let want: Vec<&Run> = fold.run(id).into_iter().collect();
        assert_eq!(got, want, "search: run {id}");
    }
    for status in SHOWN {
        let f = Filters {
            status: Some(status.to_string()),
            ..Filters::default()
        };
        let got: BTreeSet<String> = ft
            .search("", &f, 10_000)
            .expect("search")
            .into_iter()
            .map(|h| h.run.id)
            .collect();
        let want: BTreeSet<String> = fold
            .runs()
            .filter(|r| r.status == *status)
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(got, want, "search --status {status}");
    }
}

#[test]
fn every_consumer_folds_adversarial_orders_alike() {
    let w = workload(11, 500);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    cfg.segment_max_bytes = 64 * 1024;
    let log = Log::open(cfg).unwrap();
    let mut eng = Engine::new(log.reader());
    let mut rng = fastrand::Rng::with_seed(3);
    let mut at = 0;
    while at < w.events.len() {
        let n = rng.usize(1..60).min(w.events.len() - at);
        let _ = log.append_batch(&w.events[at..at + n]).unwrap();
        at += n;
        if rng.u32(..20) == 0 {
            log.seal().unwrap();
        }
        if rng.u32(..4) == 0 {
            // The active segment indexed in several chunks.
            log.flush().unwrap();
            eng.count(&Filter::default()).unwrap();
        }
    }
    log.flush().unwrap();

    // The reference: the plain fold over the log as stored.
    let reader = LogReader::open(&path).unwrap();
    let stored: Vec<Event> = reader
        .replay(ReplayRange::default())
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(stored, w.events);
    let fold = Fold::of(&stored);
    let a = fold.anomalies();
    assert!(a.duplicate_starts > 0 && a.duplicate_finishes > 0);
    assert!(a.finishes_without_start > 0 && a.orphan_logs > 0);
    assert!(
        fold.runs().any(|r| r.skill_id == "amended"),
        "amending starts folded"
    );
    assert!(fold.runs().any(|r| r.status == "dry_run" && r.dry_run));

    let mut db = sql::open(None).unwrap();
    sql::load_events(&mut db, &stored).unwrap();

    check_engine(&mut eng, &db, &fold, &w);
    let segments = log.reader().segments().len();
    assert!(segments >= 6, "spread over several segments: {segments}");
    drop(eng);
    log.close().unwrap();
    let mut ro = Engine::open(&path).unwrap();
    check_engine(&mut ro, &db, &fold, &w);

    // Small batches: a run's document is committed, read back and folded
    // further, a pending (not yet started) one too.
    let opts = FullTextOptions {
        max_batch_events: 150,
        commit_interval: Duration::ZERO,
        memory_budget_bytes: 16 << 20,
        ..FullTextOptions::default()
    };
    let ft = FullText::open(&path, &opts).unwrap();
    ft.catch_up(&reader, |_| {}).unwrap();
    check_search(&ft, &fold, &w);
}
