//! The gateway API, used as a binding uses it: only `AuditStore` and the
//! crate root. Any event or batch appended with a receipt, the allowlists,
//! replay, tail and follow, head, stats and anomalies, verify, retention,
//! and (with the `search` feature) full-text search.

use crate::support::{ev, finished, scratch, DAY0, DAY_US};

use std::time::Duration;

use auditlog::{
    AuditStore, Durability, Error, Event, Json, ReplayRange, RunFinished, RunLog, RunStarted,
    StoreConfig,
};

fn start(id: &str, ts: i64, skill: &str) -> Event {
    let s = RunStarted {
        skill_id: skill.into(),
        inputs: Json::parse(r#"{"q":"quokka habitat"}"#).unwrap(),
        ..RunStarted::default()
    };
    Event::run_started(id, ts, s)
}

fn tool(id: &str, ts: i64, seq: u64) -> Event {
    let l = RunLog {
        seq,
        event_type: "tool_call".into(),
        payload: Json::parse(r#"{"tool":"http.get","status":"ok"}"#).unwrap(),
    };
    Event::run_log(id, ts, l)
}

#[test]
fn any_events_in_batches_with_receipts_and_every_read() {
    let (_t, dir) = scratch();
    let store =
        AuditStore::open(StoreConfig::new(&dir).durability(Durability::EveryBatch)).unwrap();
    let batch = [
        start("r-1", DAY0, "web.search"),
        tool("r-1", DAY0 + 1, 0),
        finished("r-1", DAY0 + 2, "found"),
        start("r-1", DAY0 + 3, "dup"), // ignored by the view, kept in the log
    ];
    let receipt = store.append_batch(&batch).unwrap().expect("queued");
    let lsns = receipt.wait().unwrap();
    assert_eq!((lsns.first, lsns.last), (0, 3));
    store
        .append(&ev(9, DAY0 + 4))
        .unwrap()
        .expect("queued")
        .wait()
        .unwrap();
    store.flush().unwrap();

    let (run, logs) = store.run_with_logs("r-1").unwrap().expect("stored");
    assert_eq!(
        (run.skill_id.as_str(), run.output.as_str()),
        ("web.search", "found")
    );
    assert_eq!(logs.len(), 1);

    let all: Vec<(u64, Event)> = store
        .replay(ReplayRange::default())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[3].1, batch[3]);
    let newest: Vec<u64> = store.tail(2).unwrap().iter().map(|(l, _)| *l).collect();
    assert_eq!(newest, [3, 4]);

    let head = store.head();
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.events, stats.head_lsn, stats.head_digest),
        (5, 5, head.digest)
    );
    assert_eq!(
        (stats.oldest_ts, stats.newest_ts),
        (Some(DAY0), Some(DAY0 + 4))
    );
    assert_eq!(store.anomalies().unwrap().duplicate_starts, 1);
    let report = store.verify().unwrap();
    assert_eq!((report.events, report.head_digest), (5, head.digest));
    let c = store.counters();
    assert_eq!((c.appended, c.durable_lsn, c.queue_bytes), (5, 5, 0));
    store.close().unwrap();
}

#[test]
fn follow_returns_what_is_committed_after_it() {
    let (_t, dir) = scratch();
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    store
        .append(&ev(1, DAY0))
        .unwrap()
        .expect("queued")
        .wait()
        .unwrap();
    let mut from_head = store.follow(None);
    let mut from_start = store.follow(Some(0));
    assert!(from_head
        .poll(Duration::from_millis(20), 10)
        .unwrap()
        .is_empty());
    let got = from_start.poll(Duration::from_millis(20), 10).unwrap();
    assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [0]);
    let producer = std::thread::scope(|s| {
        let h = s.spawn(|| from_head.poll(Duration::from_secs(10), 10));
        std::thread::sleep(Duration::from_millis(20));
        store
            .append(&ev(2, DAY0 + 1))
            .unwrap()
            .expect("queued")
            .wait()
            .unwrap();
        h.join().unwrap()
    });
    let got = producer.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.run_id, "ev-2");
    assert_eq!(from_head.next_lsn(), 2);
    store.close().unwrap();
}

#[test]
fn allowlists_skip_whole_runs_and_event_types() {
    let (_t, dir) = scratch();
    let cfg = StoreConfig::new(&dir)
        .allow_skills(["web.search"])
        .allow_event_types(["tool_call"]);
    let store = AuditStore::open(cfg).unwrap();
    let skipped = [
        start("r-x", DAY0, "other.skill"),
        tool("r-x", DAY0 + 1, 0),
        finished("r-x", DAY0 + 2, ""),
    ];
    assert!(
        store.append_batch(&skipped).unwrap().is_none(),
        "nothing queued"
    );
    let mut chat = tool("r-1", DAY0 + 4, 1);
    if let auditlog::EventData::RunLog(l) = &mut chat.data {
        l.event_type = "chat".into();
    }
    let kept = [
        start("r-1", DAY0 + 3, "web.search"),
        chat,
        tool("r-1", DAY0 + 5, 2),
    ];
    store
        .append_batch(&kept)
        .unwrap()
        .expect("queued")
        .wait()
        .unwrap();
    store.flush().unwrap();
    assert_eq!(store.counters().skipped, 4);
    assert!(store.get_run("r-x").unwrap().is_none());
    assert_eq!(store.list_logs("r-1").unwrap().len(), 1);
    store.close().unwrap();
}

#[test]
fn bad_input_is_refused_and_fire_and_forget_counts_it() {
    let (_t, dir) = scratch();
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    let bad = Event::run_started("", DAY0, RunStarted::default());
    let e = store.append_batch(&[ev(1, DAY0), bad.clone()]).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidEvent { index: 1, source } if source.field == "run_id"),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    store.close().unwrap();

    let store = AuditStore::open(StoreConfig::new(&dir).fire_and_forget(true)).unwrap();
    assert!(store.append(&bad).unwrap().is_none());
    assert_eq!(store.counters().failures, 1);
    store.flush().unwrap();
    assert_eq!(store.stats().unwrap().events, 0);
    store.close().unwrap();
}

#[test]
fn retention_through_the_store() {
    let (_t, dir) = scratch();
    let store = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    for day in 0..3 {
        let id = format!("d{day}");
        let t = DAY0 + day * DAY_US;
        store.start_run(&id, t, RunStarted::default()).unwrap();
        store
            .finish_run(&id, t + 1, RunFinished::default())
            .unwrap();
    }
    store.flush().unwrap();
    let rep = store.retain(DAY0 + DAY_US).unwrap();
    assert_eq!(rep.events(), 2);
    assert!(store.get_run("d0").unwrap().is_none());
    assert!(store.get_run("d1").unwrap().is_some());
    let stats = store.stats().unwrap();
    assert_eq!((stats.dropped_events, stats.first_lsn), (2, 2));
    store.close().unwrap();
}

#[cfg(feature = "search")]
#[test]
fn search_through_the_store() {
    use auditlog::fulltext::{Filters, FullTextError, FullTextOptions};
    let (_t, dir) = scratch();
    let off = AuditStore::open(StoreConfig::new(&dir)).unwrap();
    let e = off.search("quokka", &Filters::default(), 10).unwrap_err();
    assert!(matches!(e, FullTextError::NotRunning(_)), "{e:?}");
    off.close().unwrap();

    let opts = FullTextOptions {
        commit_interval: Duration::from_millis(20),
        poll_interval: Duration::from_millis(5),
        memory_budget_bytes: 16 << 20,
        ..FullTextOptions::default()
    };
    let store = AuditStore::open(StoreConfig::new(&dir).search(Some(opts))).unwrap();
    assert!(store.search_error().is_none());
    store
        .append_batch(&[
            start("r-1", DAY0, "web.search"),
            finished("r-1", DAY0 + 1, "done"),
        ])
        .unwrap();
    assert!(store.wait_searchable(Duration::from_secs(30)).unwrap());
    let hits = store.search("quokka", &Filters::default(), 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].run, store.get_run("r-1").unwrap().unwrap());
    assert_eq!(store.search_lag().unwrap().events, 0);
    store.close().unwrap();
}

#[test]
fn events_to_and_from_json_through_the_root_types() {
    let line = br#"{"kind":"run_started","run_id":"r-1","ts":"2026-11-23T08:00:00.000001Z","skill_id":"web.search","x-extra":{"k":1}}"#;
    let ev = Event::from_json(line).unwrap();
    assert_eq!((ev.run_id.as_str(), ev.ts), ("r-1", 1_795_420_800_000_001));
    ev.validate().unwrap();
    let back = Event::from_json(ev.to_json().as_bytes()).unwrap();
    assert_eq!(back, ev);
    assert!(
        ev.to_json().ends_with(r#""x-extra":{"k":1}}"#),
        "{}",
        ev.to_json()
    );
    let e =
        Event::from_json(br#"{"kind":"run_started","run_id":"r","ts":"yesterday"}"#).unwrap_err();
    assert_eq!(e.field, "ts");
}
