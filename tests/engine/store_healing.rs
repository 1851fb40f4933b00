//! Self-healing writes (`store::health`): after a failed fdatasync (or
//! write) the store reopens the log with backoff, settles every event that
//! was in flight against what the reopened log holds, retries the rest and
//! its backlog, and reports every change of health. Tested through the
//! fault-injection seam: syncs fail for a while, then succeed.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog::{verify, Error, RunStarted};
use auditlog::{AuditStore, HealingConfig, Health, StoreConfig};
use support::*;

/// A store over `dir` with the injector, quick backoff, and a record of
/// every health state it reported.
fn store_with(
    dir: &std::path::Path,
    inj: &Arc<Injector>,
    fire_and_forget: bool,
    wait_durable: bool,
) -> (AuditStore, Arc<Mutex<Vec<Health>>>) {
    let mut cfg = StoreConfig::new(dir);
    cfg.log.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    cfg.fire_and_forget = fire_and_forget;
    cfg.wait_durable = wait_durable;
    cfg.healing = HealingConfig {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(80),
        durable_wait: Duration::from_secs(20),
        ..HealingConfig::default()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    cfg.on_health = Some(Arc::new(move |h: &Health| {
        s.lock().unwrap().push(h.clone())
    }));
    (AuditStore::open(cfg).unwrap(), seen)
}

fn start(store: &AuditStore, n: u64) -> auditlog::Result<()> {
    store.start_run(
        &format!("ev-{n}"),
        DAY0 + n as i64,
        RunStarted {
            skill_id: "skill.test".into(),
            ..RunStarted::default()
        },
    )
}

fn wait_healthy(store: &AuditStore) {
    let until = Instant::now() + Duration::from_secs(30);
    while !store.health().is_ok() {
        assert!(Instant::now() < until, "never healed: {:?}", store.health());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Each of `0..n` stored exactly once (by run id), and the log verifies.
fn assert_each_once(dir: &std::path::Path, n: u64) {
    verify(dir, None, |_, _| {}).expect("verifies");
    let mut count: HashMap<String, u32> = HashMap::new();
    for id in run_ids(dir) {
        *count.entry(id).or_default() += 1;
    }
    for i in 0..n {
        let c = count.get(&format!("ev-{i}")).copied().unwrap_or(0);
        assert_eq!(c, 1, "ev-{i} stored {c} times");
    }
    assert_eq!(count.len() as u64, n, "nothing else stored");
}

fn states(seen: &Mutex<Vec<Health>>) -> Vec<&'static str> {
    seen.lock().unwrap().iter().map(|h| h.state()).collect()
}

#[test]
fn syncs_fail_for_a_while_then_the_store_heals_by_itself_and_loses_nothing() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let (store, seen) = store_with(&dir, &inj, true, false);
    let n = 3_000u64;
    let mut failing_from = None;
    for i in 0..n {
        if i == 500 {
            // The disk starts failing every sync (the reopens' too).
            inj.arm(On::Sync, 0, u64::MAX, Kind::Eio);
            failing_from = Some(Instant::now());
        }
        if i == 2_000 {
            // Some time later it works again.
            let since = failing_from.unwrap();
            while since.elapsed() < Duration::from_millis(300) {
                std::thread::sleep(Duration::from_millis(10));
            }
            inj.clear();
        }
        start(&store, i).expect("fire-and-forget never fails");
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    wait_healthy(&store);
    store.flush().unwrap();
    let c = store.counters();
    assert_eq!(c.appended, n);
    assert_eq!(c.dropped, 0, "{c:?}");
    assert!(c.recoveries >= 1, "{c:?}");
    assert_eq!(c.backlog, 0);
    assert_eq!(c.failures, 0, "nothing was refused: {c:?}");
    let seen_states = states(&seen);
    assert_eq!(seen_states.first(), Some(&"degraded"), "{seen_states:?}");
    assert!(seen_states.contains(&"failing"), "{seen_states:?}");
    assert_eq!(seen_states.last(), Some(&"ok"), "{seen_states:?}");
    // Queries answer from the reopened log.
    assert!(store.get_run("ev-2999").unwrap().is_some());
    store.close().unwrap();
    assert_each_once(&dir, n);
    record_figure(&format!(
        "healing syncs_failing_300ms events={n} recoveries={} retried={} faults={}",
        c.recoveries,
        c.retried,
        inj.total()
    ));
}

#[test]
fn a_waiting_append_returns_once_its_event_is_durable_after_healing() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let (store, _seen) = store_with(&dir, &inj, false, true);
    start(&store, 0).unwrap();
    // The next three syncs fail: the append's own, then the first reopens.
    inj.arm(On::Sync, 0, 3, Kind::Eio);
    let began = Instant::now();
    start(&store, 1).expect("durable once healed");
    assert!(store.health().is_ok() || began.elapsed() < Duration::from_secs(30));
    start(&store, 2).unwrap();
    // The keeper counts a receipt after its waiter may have returned.
    let until = Instant::now() + Duration::from_secs(30);
    while store.counters().durable < 3 {
        assert!(Instant::now() < until, "{:?}", store.counters());
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = store.counters();
    assert!(c.recoveries >= 1, "{c:?}");
    // Its write reached the disk; only the sync failed: found on reopen,
    // not appended again.
    assert_eq!((c.durable, c.retried), (3, 0), "{c:?}");
    store.close().unwrap();
    assert_each_once(&dir, 3);
}

#[test]
fn a_failed_write_cut_back_is_retried_as_well() {
    for kind in [Kind::Enospc, Kind::ShortEio(100)] {
        let (_t, dir) = scratch();
        let inj = Injector::new();
        let (store, _seen) = store_with(&dir, &inj, true, false);
        for i in 0..50 {
            start(&store, i).unwrap();
        }
        store.flush().unwrap();
        inj.arm(On::BlockWrite, 0, 2, kind);
        for i in 50..100 {
            start(&store, i).unwrap();
        }
        wait_healthy(&store);
        // The failure may be noticed only now: wait until all is durable.
        let until = Instant::now() + Duration::from_secs(30);
        while store.counters().durable < 100 {
            assert!(Instant::now() < until, "{:?}", store.counters());
            std::thread::sleep(Duration::from_millis(5));
            wait_healthy(&store);
        }
        let c = store.counters();
        assert!(c.retried >= 1 && c.recoveries >= 1, "{kind:?}: {c:?}");
        store.close().unwrap();
        assert_each_once(&dir, 100);
    }
}

#[test]
fn closing_while_the_disk_still_fails_reports_what_was_not_stored() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let (store, seen) = store_with(&dir, &inj, true, false);
    for i in 0..10 {
        start(&store, i).unwrap();
    }
    store.flush().unwrap();
    inj.arm(On::Sync, 0, u64::MAX, Kind::Eio);
    for i in 10..20 {
        start(&store, i).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(30);
    while store.health().is_ok() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    // While degraded, appends wait in the backlog and are counted.
    for i in 20..25 {
        start(&store, i).unwrap();
    }
    assert!(store.flush().is_err(), "no durability while degraded");
    let c = store.counters();
    assert_eq!(c.appended, 25, "{c:?}");
    let w = store.stats().unwrap().writes.expect("a store's stats");
    assert!(w.health == "degraded" || w.health == "failing", "{w:?}");
    assert!(w.since.is_some() && w.last_error.is_some(), "{w:?}");
    assert!(w.backlog >= 5, "{w:?}");
    let e = store
        .close()
        .expect_err("events were lost and close says so");
    assert!(matches!(e, Error::WriterFailed(_)), "{e:?}");
    assert!(e.to_string().contains("could not be stored"), "{e}");
    assert!(states(&seen).contains(&"failing"));
    // What was acknowledged durable before the failure is all there.
    inj.clear();
    let ids = run_ids(&dir);
    for i in 0..10 {
        assert!(ids.contains(&format!("ev-{i}")), "ev-{i} lost");
    }
}

#[test]
fn closing_a_healthy_store_does_not_reopen_its_log() {
    // Close takes the log out of service itself; the keeper took that for
    // a degraded store and reopened the log (a recovery scan, a Merkle
    // rebuild of every event) only to close it again, telling the hook
    // "degraded" then "ok" on every close.
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let (store, seen) = store_with(&dir, &inj, false, false);
    for i in 0..50 {
        start(&store, i).unwrap();
    }
    store.flush().unwrap();
    // Past the keeper's idle wake-up (100 ms), so it sees the close idle.
    std::thread::sleep(Duration::from_millis(150));
    store.close().unwrap();
    assert_eq!(
        states(&seen),
        Vec::<&str>::new(),
        "no health change on a clean close"
    );
    assert_each_once(&dir, 50);
}

#[test]
fn with_healing_off_a_failed_sync_stops_the_writes_as_before() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let mut cfg = StoreConfig::new(&dir);
    cfg.log.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    cfg.wait_durable = true;
    cfg.healing.enabled = false;
    let store = AuditStore::open(cfg).unwrap();
    start(&store, 0).unwrap();
    inj.arm(On::Sync, 0, 1, Kind::Eio);
    assert!(matches!(start(&store, 1), Err(Error::WriterFailed(_))));
    assert!(matches!(start(&store, 2), Err(Error::WriterFailed(_))));
    assert!(store.health().is_ok(), "no healing, no state change");
    assert!(store.close().is_err());
}

#[test]
fn a_full_backlog_refuses_and_counts_every_drop_by_reason() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let mut cfg = StoreConfig::new(&dir);
    cfg.log.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    cfg.fire_and_forget = true;
    cfg.healing = HealingConfig {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        backlog_events: 3,
        ..HealingConfig::default()
    };
    let store = AuditStore::open(cfg).unwrap();
    start(&store, 0).unwrap();
    store.flush().unwrap();
    inj.arm(On::Sync, 0, u64::MAX, Kind::Eio);
    start(&store, 1).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while store.health().is_ok() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 2..10 {
        start(&store, i).expect("fire-and-forget: counted, not returned");
    }
    let c = store.counters();
    assert_eq!(c.backlog, 3, "{c:?}");
    assert_eq!(c.dropped_by.backlog_full, 5, "{c:?}");
    assert_eq!(
        c.failures, 5,
        "each refusal counted as a failure too: {c:?}"
    );
    let w = store.stats().unwrap().writes.unwrap();
    assert_eq!(w.dropped_backlog_full, 5);
    // The disk recovers: the backlog is stored, the refused ones are not.
    inj.clear();
    wait_healthy(&store);
    store.flush().unwrap();
    store.close().unwrap();
    let ids = run_ids(&dir);
    assert_eq!(ids.len(), 5, "0, 1 and the three in the backlog: {ids:?}");
    for i in [0, 1, 2, 3, 4] {
        assert!(ids.contains(&format!("ev-{i}")), "ev-{i}");
    }
}

/// Search follows the reopened log: runs written after healing are
/// searchable like those before.
#[cfg(feature = "search")]
#[test]
fn search_follows_the_log_across_a_heal() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let mut cfg = StoreConfig::new(&dir);
    cfg.log.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    cfg.fire_and_forget = true;
    cfg.healing.backoff_initial = Duration::from_millis(10);
    cfg.search = Some(auditlog::fulltext::FullTextOptions::default());
    let store = AuditStore::open(cfg).unwrap();
    let run = |id: &str, word: &str, ts: i64| {
        store.start_run(id, ts, RunStarted::default()).unwrap();
        let fin = auditlog::RunFinished {
            output: format!("found {word}"),
            ..auditlog::RunFinished::default()
        };
        store.finish_run(id, ts + 1, fin).unwrap();
    };
    run("before", "zebra", DAY0);
    store.flush().unwrap();
    inj.arm(On::Sync, 0, 2, Kind::Eio);
    run("during", "quokka", DAY0 + 10);
    wait_healthy(&store);
    run("after", "narwhal", DAY0 + 20);
    let until = Instant::now() + Duration::from_secs(30);
    while store.counters().durable < 6 {
        assert!(Instant::now() < until, "{:?}", store.counters());
        std::thread::sleep(Duration::from_millis(5));
        wait_healthy(&store);
    }
    assert!(store.wait_searchable(Duration::from_secs(120)).unwrap());
    let f = auditlog::fulltext::Filters::default();
    for (word, id) in [
        ("zebra", "before"),
        ("quokka", "during"),
        ("narwhal", "after"),
    ] {
        let hits = store.search(word, &f, 5).unwrap();
        assert_eq!(hits.len(), 1, "{word}: {hits:?}");
        assert_eq!(hits[0].run.id, id);
    }
    store.close().unwrap();
}
