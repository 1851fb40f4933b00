//! Amending events (docs/queries.md, "Amending events"): a
//! `"replace":true` start upserts the start fields, a finish overrides the
//! earlier finish, a log replaces the logs with the same seq; a run whose
//! status is dry_run is a dry run. Checked within one segment, across
//! segments, from index files reopened, and against bad input.

use auditlog::event::json::{event_to_json, parse_event};
use auditlog::query::{Engine, Filter, Page};
use auditlog::{AuditStore, StoreConfig};
use auditlog::{Durability, Error, Event};

const DAY: i64 = 86_400_000_000;
/// 2026-11-20T00:00:00Z.
const D0: i64 = 1_795_132_800_000_000;

fn ev(line: &str) -> Event {
    parse_event(line.as_bytes()).unwrap()
}

fn put(store: &AuditStore, lines: &[String]) {
    let evs: Vec<Event> = lines.iter().map(|l| ev(l)).collect();
    store.append_batch(&evs).unwrap().unwrap().wait().unwrap();
}

fn start(id: &str, ts: i64, skill: &str, replace: bool) -> String {
    format!(
        r#"{{"kind":"run_started","run_id":"{id}","ts":{ts},"skill_id":"{skill}","replace":{replace}}}"#
    )
}
fn finish(id: &str, ts: i64, status: &str, replace: bool) -> String {
    format!(
        r#"{{"kind":"run_finished","run_id":"{id}","ts":{ts},"status":"{status}","replace":{replace}}}"#
    )
}
fn log(id: &str, ts: i64, seq: u64, kind: &str, replace: bool) -> String {
    format!(
        r#"{{"kind":"run_log","run_id":"{id}","ts":{ts},"seq":{seq},"event_type":"{kind}","replace":{replace}}}"#
    )
}

fn open(path: &std::path::Path) -> AuditStore {
    let mut cfg = StoreConfig::new(path);
    cfg.log.durability = Durability::Never;
    AuditStore::open(cfg).unwrap()
}

fn ids(store: &AuditStore, f: &Filter) -> Vec<String> {
    store
        .list_runs(f, Page::all())
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn skill(s: &str) -> Filter {
    Filter {
        skill: Some(s.into()),
        ..Filter::default()
    }
}

fn status(s: &str) -> Filter {
    Filter {
        status: Some(s.into()),
        include_dry_run: true,
        ..Filter::default()
    }
}

/// The answers every amendment below must produce, asked of a store.
fn check_amended(store: &AuditStore) {
    // a: upserted to skill "new" and started_at D0+5; its finish kept.
    let a = store.get_run("a").unwrap().unwrap();
    assert_eq!((a.skill_id.as_str(), a.started_at), ("new", D0 + 5));
    assert_eq!(a.status, "ok");
    assert_eq!(ids(store, &skill("old")), Vec::<String>::new());
    assert_eq!(ids(store, &skill("new")), ["a"]);
    assert_eq!(store.count_runs(&skill("new")).unwrap(), 1);
    // b: the last amending finish wins; a plain finish after it does not.
    let b = store.get_run("b").unwrap().unwrap();
    assert_eq!(
        (b.status.as_str(), b.finished_at),
        ("timeout", Some(D0 + 30))
    );
    assert_eq!(ids(store, &status("error")), Vec::<String>::new());
    assert_eq!(ids(store, &status("timeout")), ["b"]);
    assert_eq!(store.count_runs(&status("timeout")).unwrap(), 1);
    // c: a plain second start is still ignored.
    assert_eq!(store.get_run("c").unwrap().unwrap().skill_id, "k");
    // Logs: seq 1 replaced, seq 0 kept twice (no marker), seq 2 once.
    let logs: Vec<(u64, String)> = store
        .list_logs("a")
        .unwrap()
        .into_iter()
        .map(|l| (l.seq, l.event_type))
        .collect();
    let want = [(0, "x"), (0, "y"), (1, "retry"), (2, "z")];
    let want: Vec<(u64, String)> = want.iter().map(|(s, e)| (*s, e.to_string())).collect();
    assert_eq!(logs, want);
    // d: dry by status, hidden unless asked; e: its dry status overridden.
    assert_eq!(ids(store, &Filter::default()), ["e", "a", "c", "b"]);
    let all = Filter {
        include_dry_run: true,
        ..Filter::default()
    };
    assert_eq!(ids(store, &all), ["e", "d", "a", "c", "b"]);
    assert!(store.get_run("d").unwrap().unwrap().dry_run);
    assert!(!store.get_run("e").unwrap().unwrap().dry_run);
    let last = store.last_run_per_skill(&["k".to_string()], true).unwrap();
    assert_eq!(
        last,
        [("k".to_string(), Some(D0 + 60))],
        "e is no longer dry; d is"
    );
    let before = store.finished_runs_before_limit(D0 + 31, Some(1)).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].id, "a", "newest start first");
}

fn write_amendments(store: &AuditStore, seal_between: bool) {
    let seal = || {
        if seal_between {
            store.flush().unwrap();
            store.log().seal().unwrap();
        }
    };
    put(
        store,
        &[
            start("a", D0 + 1, "old", true),
            finish("a", D0 + 2, "ok", false),
        ],
    );
    put(
        store,
        &[
            start("b", D0 + 3, "k", false),
            finish("b", D0 + 10, "error", false),
        ],
    );
    put(
        store,
        &[
            start("c", D0 + 4, "k", false),
            log("a", D0 + 6, 0, "x", false),
        ],
    );
    seal();
    put(
        store,
        &[
            start("a", D0 + 5, "new", true),
            log("a", D0 + 7, 1, "first", false),
        ],
    );
    put(
        store,
        &[
            finish("b", D0 + 20, "ok", true),
            start("c", D0 + 8, "other", false),
        ],
    );
    seal();
    put(
        store,
        &[
            finish("b", D0 + 30, "timeout", true),
            finish("b", D0 + 40, "error", false),
        ],
    );
    put(
        store,
        &[
            log("a", D0 + 9, 1, "retry", true),
            log("a", D0 + 11, 0, "y", false),
        ],
    );
    put(store, &[log("a", D0 + 12, 2, "z", true)]);
    put(
        store,
        &[
            start("d", D0 + 50, "k", false),
            finish("d", D0 + 51, "dry_run", false),
        ],
    );
    put(
        store,
        &[
            start("e", D0 + 60, "k", false),
            finish("e", D0 + 61, "dry_run", false),
        ],
    );
    put(store, &[finish("e", D0 + 62, "ok", true)]);
    store.flush().unwrap();
}

#[test]
fn amendments_in_one_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("log"));
    write_amendments(&store, false);
    check_amended(&store);
    store.close().unwrap();
}

#[test]
fn amendments_across_segments_and_from_index_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let store = open(&path);
    write_amendments(&store, true);
    check_amended(&store);
    store.close().unwrap();
    // Reopened: the sealed images (with their AMND sections) come from
    // their files, and the answers are the same.
    let store = open(&path);
    check_amended(&store);
    store.close().unwrap();
    let mut eng = Engine::open(&path).unwrap();
    assert_eq!(eng.get_run("a").unwrap().unwrap().skill_id, "new");
    assert_eq!(eng.stats.rebuilt, 0, "{:?}", eng.stats);
}

#[test]
fn the_marker_is_a_boolean_and_comes_back_on_output() {
    let e = ev(&start("a", D0, "k", true));
    assert!(e.is_replace());
    assert!(event_to_json(&e, None).contains(r#""replace":true"#));
    assert!(!ev(&start("a", D0, "k", false)).is_replace());
    // The parser refuses it (a stored one would not read back) ...
    let bad = r#"{"kind":"run_started","run_id":"a","ts":1,"replace":"yes"}"#;
    assert_eq!(parse_event(bad.as_bytes()).unwrap_err().field, "replace");
    // ... and so does the store, for an event built in Rust.
    let mut built = ev(&start("a", D0, "k", false));
    built.extra.retain(|(k, _)| k != "replace");
    built.extra.push((
        "replace".to_string(),
        auditlog::Json::parse("\"yes\"").unwrap(),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("log"));
    match store.append_batch(&[built]) {
        Err(Error::InvalidEvent { source, .. }) => assert_eq!(source.field, "replace"),
        other => panic!("expected an invalid event, got {other:?}"),
    }
    assert_eq!(
        store.count_runs(&Filter::default()).unwrap(),
        0,
        "nothing stored"
    );
    store.close().unwrap();
}

#[test]
fn purge_carries_running_runs_forward_and_counts_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let store = open(&path);
    // Day 0: done (finished day 0), open (running, with a log), late
    // (finished on day 2, after the cutoff).
    put(
        &store,
        &[
            start("done", D0 + 1, "k", false),
            finish("done", D0 + 2, "ok", false),
        ],
    );
    put(
        &store,
        &[
            start("open", D0 + 3, "k", false),
            log("open", D0 + 4, 0, "x", false),
        ],
    );
    put(&store, &[start("late", D0 + 5, "k", false)]);
    // Day 1 and day 2 (each a segment by UTC day).
    put(
        &store,
        &[
            start("mid", D0 + DAY, "k", false),
            finish("mid", D0 + DAY + 1, "ok", false),
        ],
    );
    put(&store, &[finish("late", D0 + 2 * DAY, "ok", false)]);
    store.flush().unwrap();
    let rep = store.purge_older_than(D0 + 2 * DAY).unwrap();
    assert_eq!(rep.dropped.len(), 2, "days 0 and 1");
    let mut left = ids(&store, &Filter::default());
    left.sort();
    assert_eq!(left, ["late", "open"]);
    let open_run = store.get_run("open").unwrap().unwrap();
    assert_eq!(
        (open_run.status.as_str(), open_run.started_at),
        ("running", D0 + 3)
    );
    assert_eq!(store.list_logs("open").unwrap().len(), 1);
    let late = store.get_run("late").unwrap().unwrap();
    assert_eq!(
        (late.started_at, late.finished_at),
        (D0 + 5, Some(D0 + 2 * DAY))
    );
    // Finishing the carried run later works as for any run.
    store
        .finish_run("open", D0 + 2 * DAY + 9, auditlog::RunFinished::default())
        .unwrap();
    store.flush().unwrap();
    assert_eq!(store.get_run("open").unwrap().unwrap().status, "ok");
    store.close().unwrap();
}

#[test]
fn purge_carries_a_finished_run_that_a_kept_segment_starts_again() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let store = open(&path);
    // Day 0: "upsert" and "dup" start and finish. Day 1 starts both again:
    // an amending start (it moves upsert's start to day 1) and a plain
    // duplicate start (ignored).
    put(
        &store,
        &[
            start("upsert", D0 + 1, "old", false),
            finish("upsert", D0 + 2, "ok", false),
            start("dup", D0 + 3, "first", false),
            finish("dup", D0 + 4, "error", false),
            start("gone", D0 + 5, "k", false),
            finish("gone", D0 + 6, "ok", false),
        ],
    );
    put(
        &store,
        &[
            start("upsert", D0 + DAY, "new", true),
            start("dup", D0 + DAY + 1, "second", false),
        ],
    );
    store.flush().unwrap();
    let before: Vec<_> = ["upsert", "dup"]
        .iter()
        .map(|id| store.get_run(id).unwrap().unwrap())
        .collect();
    assert_eq!(
        (before[0].skill_id.as_str(), before[0].status.as_str()),
        ("new", "ok")
    );
    assert_eq!(
        (before[1].skill_id.as_str(), before[1].status.as_str()),
        ("first", "error")
    );
    // Day 0 goes. Without carrying them, the day-1 starts would define
    // both runs anew, running and without their finishes.
    let rep = store.purge_older_than(D0 + DAY).unwrap();
    assert_eq!(rep.dropped.len(), 1);
    for (id, was) in ["upsert", "dup"].iter().zip(&before) {
        assert_eq!(&store.get_run(id).unwrap().unwrap(), was, "{id}");
    }
    assert!(
        store.get_run("gone").unwrap().is_none(),
        "finished, not started again"
    );
    store.close().unwrap();
}
