//! Retention through the store: a run still running (or finishing after
//! the cutoff) never loses its start (its events are carried forward as
//! amending events on the writer thread before the segments go), and
//! scheduled retention runs by itself and stops with the store.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog::{AuditStore, RetentionSchedule, StoreConfig};
use auditlog::{Event, EventData, Json, RunFinished, RunLog, RunStarted};
use support::*;

fn started() -> RunStarted {
    RunStarted {
        skill_id: "agent.loop".into(),
        caller_id: "u-1".into(),
        channel_id: "sess-1".into(),
        inputs: Json::parse(r#"{"goal":"keep going"}"#).unwrap(),
        ..RunStarted::default()
    }
}

fn log_line(seq: u64, what: &str) -> RunLog {
    RunLog {
        seq,
        event_type: "step".into(),
        payload: Json::parse(format!(r#"{{"what":"{what}"}}"#)).unwrap(),
    }
}

fn fin(status: &str) -> RunFinished {
    RunFinished {
        status: status.into(),
        ..RunFinished::default()
    }
}

/// Day 0: runs A (never finishes), B (finishes the same day), C (finishes
/// on day 1). Day 1: D starts and finishes. Day 2: E (active segment).
fn three_days(store: &AuditStore, base: i64) {
    let d = |day: i64, us: i64| base + day * DAY_US + us;
    store.start_run("A", d(0, 1), started()).unwrap();
    store
        .append_log("A", d(0, 2), log_line(0, "first"))
        .unwrap();
    store.start_run("B", d(0, 3), started()).unwrap();
    store.finish_run("B", d(0, 4), fin("ok")).unwrap();
    store.start_run("C", d(0, 5), started()).unwrap();
    store
        .append_log("A", d(0, 6), log_line(1, "second"))
        .unwrap();
    store.flush().unwrap();
    store.finish_run("C", d(1, 1), fin("error")).unwrap();
    store.start_run("D", d(1, 2), started()).unwrap();
    store.finish_run("D", d(1, 3), fin("ok")).unwrap();
    store
        .append_log("A", d(1, 4), log_line(2, "third"))
        .unwrap();
    store.start_run("E", d(2, 1), started()).unwrap();
    store.flush().unwrap();
}

fn run_status(store: &AuditStore, id: &str) -> Option<String> {
    store.get_run(id).unwrap().map(|r| r.status)
}

#[test]
fn purge_carries_a_running_run_forward_and_drops_the_rest() {
    let (_t, dir) = scratch();
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    three_days(&store, DAY0);
    let before = store.get_run("A").unwrap().unwrap();
    // Drops day 0's segment only.
    let rep = store.purge_older_than(DAY0 + DAY_US).unwrap();
    assert_eq!(rep.dropped.len(), 1, "{rep:?}");
    assert_eq!(
        rep.carried_runs, 2,
        "A (running) and C (finished after the cutoff): {rep:?}"
    );
    assert_eq!(
        rep.carried_events, 6,
        "A's start and three logs, C's start and finish"
    );
    assert_eq!(rep.dropped_runs, Some(1), "B went: {rep:?}");
    let after = store.get_run("A").unwrap().expect("A survives");
    assert_eq!(after, before, "the same run, field for field");
    let logs: Vec<u64> = store
        .list_logs("A")
        .unwrap()
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(logs, vec![0, 1, 2]);
    assert_eq!(run_status(&store, "B"), None);
    assert_eq!(run_status(&store, "C").as_deref(), Some("error"));
    assert_eq!(run_status(&store, "D").as_deref(), Some("ok"));
    // A later finish finishes it.
    store
        .finish_run("A", DAY0 + 2 * DAY_US + 9, fin("ok"))
        .unwrap();
    store.flush().unwrap();
    assert_eq!(run_status(&store, "A").as_deref(), Some("ok"));
    // Nothing more to carry: the next pass drops day 1 and carries nothing.
    let rep = store.purge_older_than(DAY0 + 2 * DAY_US).unwrap();
    assert_eq!(rep.dropped.len(), 1, "{rep:?}");
    assert_eq!((rep.carried_runs, rep.carried_events), (0, 0));
    assert_eq!(
        run_status(&store, "A").as_deref(),
        Some("ok"),
        "the copy stays"
    );
    store.close().unwrap();
    auditlog::verify(&dir, None, |_, _| {}).unwrap();
    // The copy is in the log as an event of its own (same id and ts).
    let starts: Vec<(u64, Event)> = replay_all(&dir)
        .into_iter()
        .filter(|(_, e)| e.run_id == "A" && matches!(e.data, EventData::RunStarted(_)))
        .collect();
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].1.ts, DAY0 + 1);
}

#[test]
fn a_pass_that_fails_after_carrying_changes_nothing_a_reader_sees() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let mut cfg = StoreConfig::new(&dir);
    cfg.log.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    let store = AuditStore::open(cfg).unwrap();
    three_days(&store, DAY0);
    let before: Vec<_> = ["A", "B", "C", "D", "E"]
        .iter()
        .map(|id| store.get_run(id).unwrap())
        .collect();
    // The MANIFEST cannot be replaced: the copies are written, the drop
    // fails, nothing is dropped, and every run reads as before.
    inj.arm(On::Rename, 0, 1, Kind::Eio);
    assert!(store.purge_older_than(DAY0 + DAY_US).is_err());
    let now: Vec<_> = ["A", "B", "C", "D", "E"]
        .iter()
        .map(|id| store.get_run(id).unwrap())
        .collect();
    assert_eq!(now, before);
    // The next pass carries again (the copies are amending events) and
    // drops.
    let rep = store.purge_older_than(DAY0 + DAY_US).unwrap();
    assert_eq!(rep.dropped.len(), 1);
    assert_eq!(rep.carried_runs, 2, "{rep:?}");
    assert_eq!(run_status(&store, "A").as_deref(), Some("running"));
    let logs: Vec<u64> = store
        .list_logs("A")
        .unwrap()
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(logs, vec![0, 1, 2], "each log once");
    store.close().unwrap();
    auditlog::verify(&dir, None, |_, _| {}).unwrap();
}

#[test]
fn scheduled_retention_runs_by_itself_and_stops_with_the_store() {
    let (_t, dir) = scratch();
    let now = auditlog::event::time::now_micros();
    // Three days ending today: day 0 is 9 days ago.
    let base = (now / DAY_US - 9) * DAY_US;
    {
        let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
        three_days(&store, base);
        store.start_run("T", now, started()).unwrap();
        store.close().unwrap();
    }
    let passes = Arc::new(Mutex::new(Vec::new()));
    let p = passes.clone();
    let mut cfg = StoreConfig::new(&dir);
    let mut plan =
        RetentionSchedule::new(Duration::from_secs(9 * 86_400), Duration::from_millis(30));
    plan.on_pass = Some(Arc::new(move |pass| p.lock().unwrap().push(pass.clone())));
    cfg.retention = Some(plan);
    let store = AuditStore::open(cfg).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while passes.lock().unwrap().len() < 3 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = passes.lock().unwrap()[0].clone();
    let rep = first.outcome.expect("the first pass works");
    assert_eq!(rep.dropped.len(), 1, "day 0 is older than 9 days: {rep:?}");
    assert!(rep.carried_runs >= 1, "A at least: {rep:?}");
    assert_eq!(run_status(&store, "A").as_deref(), Some("running"));
    assert_eq!(run_status(&store, "B"), None);
    let last = store.last_retention().expect("reported");
    assert!(
        last.outcome.unwrap().dropped.is_empty(),
        "later passes find nothing"
    );
    store.close().unwrap();
    let n = passes.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        passes.lock().unwrap().len(),
        n,
        "the thread stopped with the store"
    );
}

#[test]
fn a_schedule_too_tight_is_refused() {
    let (_t, dir) = scratch();
    let mut cfg = StoreConfig::new(&dir);
    cfg.retention = Some(RetentionSchedule::new(
        Duration::from_secs(1),
        Duration::ZERO,
    ));
    assert!(AuditStore::open(cfg).is_err());
}

/// A failing tool call logged as a run's log line.
fn failing_call(seq: u64) -> RunLog {
    RunLog {
        seq,
        event_type: "tool_call".into(),
        payload: Json::parse(r#"{"tool":"sh","status":"error","error_type":"exit"}"#).unwrap(),
    }
}

#[test]
fn a_carried_run_keeps_every_log_and_its_failing_call_counts_once() {
    let (_t, dir) = scratch();
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    let d = |day: i64, us: i64| DAY0 + day * DAY_US + us;
    store.start_run("A", d(0, 1), started()).unwrap();
    store.append_log("A", d(0, 2), failing_call(0)).unwrap();
    // Two plain lines with one seq: the view keeps both.
    store.append_log("A", d(0, 3), log_line(1, "x")).unwrap();
    store.append_log("A", d(0, 4), log_line(1, "y")).unwrap();
    store.flush().unwrap();
    store.append_log("A", d(1, 1), failing_call(2)).unwrap();
    store.start_run("E", d(2, 1), started()).unwrap();
    store.flush().unwrap();
    let logs_before = store.list_logs("A").unwrap();
    assert_eq!(logs_before.len(), 4);
    let errors = |s: &AuditStore| -> u64 {
        s.tool_errors(None, None)
            .unwrap()
            .iter()
            .map(|g| g.count)
            .sum()
    };
    assert_eq!(errors(&store), 2);

    let rep = store.purge_older_than(DAY0 + DAY_US).unwrap();
    assert_eq!((rep.dropped.len(), rep.carried_runs), (1, 1), "{rep:?}");
    // The day-1 call now has a carried copy beside its original in a
    // kept segment: the copy replaces it, so each call counts once.
    assert_eq!(store.list_logs("A").unwrap(), logs_before);
    assert_eq!(errors(&store), 2);
    let calls = store
        .count_calls(&auditlog::query::CallFilter::default())
        .unwrap();
    assert_eq!(calls, 2);
    store.close().unwrap();
    // A fresh open (indexes read from disk) answers the same.
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    assert_eq!(store.list_logs("A").unwrap(), logs_before);
    assert_eq!(errors(&store), 2);
    store.close().unwrap();
    // Every stored index is the one its segment gives today.
    let deep = auditlog::VerifyOptions {
        deep: true,
        read_only: true,
        ..auditlog::VerifyOptions::default()
    };
    auditlog::verify_with(&dir, &deep, |_, _| {}).unwrap();
}
