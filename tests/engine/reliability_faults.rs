//! Fault injection through the writer's I/O seam (`Config.io.faults`):
//! short writes, EIO and ENOSPC on write and on fdatasync, failing create
//! and rename. The documented behaviour (docs/reliability.md):
//! - a failed block write is cut back: nothing is stored half-way, only the
//!   receipts waiting on it fail (`WriteRolledBack`, retryable), and the
//!   log works again once the cause is gone (a full disk freed);
//! - a failed segment create or footer write is undone the same way;
//! - a failed fdatasync is never retried as if the data were safe: the
//!   writer stops with `WriterFailed`, pending receipts fail, and a reopen
//!   recovers exactly what is on disk, which verifies.

use crate::support;

use std::sync::Arc;

use auditlog::{verify, Error, Log};
use support::*;

fn open_with(dir: &std::path::Path, inj: &Arc<Injector>) -> Log {
    let mut c = config(dir);
    c.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    Log::open(c).expect("log opens")
}

fn append_ok(log: &Log, n: u64, ts: i64) {
    log.append(&ev(n, ts))
        .expect("append queued")
        .wait()
        .unwrap_or_else(|e| panic!("event {n} should be durable: {e}"));
}

fn append_fails(log: &Log, n: u64, ts: i64) -> Error {
    match log.append(&ev(n, ts)) {
        Err(e) => e,
        Ok(r) => r.wait().expect_err("receipt must fail, not lie"),
    }
}

/// Reopen for writing (recovery), close, then check the folder verifies
/// and holds exactly `want` (by run id, in order).
fn reopen_and_check(dir: &std::path::Path, want: &[&str]) {
    let log = Log::open(config(dir)).expect("reopens after the fault");
    log.close().expect("closes");
    verify(dir, None, |_, _| {}).expect("verifies after the fault");
    assert_eq!(run_ids(dir), want);
}

fn report(inj: &Injector, test: &str) {
    for (k, v) in inj.injected() {
        record_figure(&format!("faults {test} {k} {v}"));
    }
}

#[test]
fn enospc_and_eio_on_write_fail_the_receipt_and_the_log_carries_on() {
    for kind in [Kind::Enospc, Kind::Eio] {
        let (_t, dir) = scratch();
        let inj = Injector::new();
        let log = open_with(&dir, &inj);
        append_ok(&log, 1, DAY0 + 1);
        inj.arm(On::BlockWrite, 0, 3, kind);
        for n in 2..5 {
            let e = append_fails(&log, n, DAY0 + n as i64);
            let msg = e.to_string();
            // Cut back cleanly: retryable, and not a stopped writer.
            assert!(matches!(e, Error::WriteRolledBack(_)), "{e:?}");
            assert!(e.is_retryable(), "{e:?}");
            let want = if kind == Kind::Enospc {
                "No space left on device"
            } else {
                "Input/output error"
            };
            assert!(msg.contains(want), "clear error, got: {msg}");
        }
        assert!(
            log.failed().is_none(),
            "a cut-back write does not stop the writer"
        );
        inj.clear(); // space freed
        append_ok(&log, 5, DAY0 + 5);
        log.close().unwrap();
        reopen_and_check(&dir, &["ev-1", "ev-5"]);
        report(&inj, "write");
    }
}

#[test]
fn short_writes_are_cut_back_at_every_length() {
    // The first block of a segment this writer created (a file not opened
    // in append mode) and a block of a reopened segment (append mode).
    for reopened in [false, true] {
        for n in [0usize, 1, 7, 8, 9, 40, 100, 150] {
            let (_t, dir) = scratch();
            let inj = Injector::new();
            if reopened {
                let log = open_with(&dir, &inj);
                append_ok(&log, 1, DAY0 + 1);
                log.close().unwrap();
            }
            let log = open_with(&dir, &inj);
            if !reopened {
                append_ok(&log, 1, DAY0 + 1);
            }
            inj.arm(On::BlockWrite, 0, 1, Kind::ShortEnospc(n));
            append_fails(&log, 2, DAY0 + 2);
            append_ok(&log, 3, DAY0 + 3);
            append_ok(&log, 4, DAY0 + 4);
            log.close().unwrap();
            verify(&dir, None, |_, _| {})
                .unwrap_or_else(|e| panic!("short write of {n} (reopened {reopened}): {e}"));
            reopen_and_check(&dir, &["ev-1", "ev-3", "ev-4"]);
            report(&inj, "short-write");
        }
    }
}

#[test]
fn a_failed_block_does_not_leak_its_timestamps_into_the_footer() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    append_ok(&log, 1, DAY0 + 5_000);
    inj.arm(On::BlockWrite, 0, 1, Kind::Enospc);
    // Earliest and latest timestamps of the day, never stored.
    let batch = [ev(2, DAY0), ev(3, DAY0 + DAY_US - 1)];
    let r = log.append_batch(&batch).unwrap();
    assert!(r.wait().is_err());
    append_ok(&log, 4, DAY0 + 6_000);
    log.seal().expect("seals");
    log.close().unwrap();
    let rep = verify(&dir, None, |_, _| {}).expect("footer matches what is stored");
    assert_eq!(rep.events, 2);
    reopen_and_check(&dir, &["ev-1", "ev-4"]);
    report(&inj, "ts-leak");
}

#[test]
fn failed_fdatasync_stops_the_writer_and_reopen_recovers_what_is_on_disk() {
    for kind in [Kind::Eio, Kind::Enospc] {
        let (_t, dir) = scratch();
        let inj = Injector::new();
        let log = open_with(&dir, &inj);
        append_ok(&log, 1, DAY0 + 1);
        inj.arm(On::Sync, 0, 1, kind);
        let e = append_fails(&log, 2, DAY0 + 2);
        assert!(matches!(e, Error::WriterFailed(_)), "{e:?}");
        assert!(!e.is_retryable(), "a stopped writer is not retried: {e:?}");
        assert!(e.to_string().contains("fdatasync"), "{e}");
        assert!(log.failed().is_some(), "the writer stopped");
        inj.clear();
        // Not retried as if safe: everything after fails until reopened.
        let later = append_fails(&log, 3, DAY0 + 3);
        assert!(matches!(later, Error::WriterFailed(_)), "{later:?}");
        assert!(log.flush().is_err(), "flush must not claim durability");
        assert!(matches!(log.close(), Err(Error::WriterFailed(_))));
        // ev-2 was written before its sync failed: it may be on disk (the
        // receipt failed, which never lies); ev-3 never was.
        let log = Log::open(config(&dir)).expect("reopens");
        append_ok(&log, 4, DAY0 + 4);
        log.close().unwrap();
        verify(&dir, None, |_, _| {}).expect("verifies");
        let ids = run_ids(&dir);
        assert!(
            ids == ["ev-1", "ev-2", "ev-4"] || ids == ["ev-1", "ev-4"],
            "{ids:?}"
        );
        report(&inj, "fdatasync");
    }
}

#[test]
fn failing_create_leaves_nothing_behind_and_the_log_carries_on() {
    // Fail the gate (no file made), the header write (partial file), the
    // header sync: each time the next day's segment is retried cleanly.
    let cases = [
        (On::Create, Kind::Enospc),
        (On::WriteOf(72), Kind::ShortEnospc(30)),
        (On::WriteOf(72), Kind::Eio),
    ];
    for (on, kind) in cases {
        let (_t, dir) = scratch();
        let inj = Injector::new();
        let log = open_with(&dir, &inj);
        append_ok(&log, 1, DAY0 + 1);
        inj.arm(on, 0, 1, kind);
        append_fails(&log, 2, DAY0 + DAY_US + 2); // next day: a new segment
        assert!(log.failed().is_none(), "{on:?} {kind:?} stopped the writer");
        append_ok(&log, 3, DAY0 + DAY_US + 3);
        log.close().unwrap();
        reopen_and_check(&dir, &["ev-1", "ev-3"]);
        report(&inj, "create");
    }
    // The very first segment of a new log.
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    inj.arm(On::Create, 0, 1, Kind::Eio);
    append_fails(&log, 1, DAY0);
    append_ok(&log, 2, DAY0 + 1);
    log.close().unwrap();
    reopen_and_check(&dir, &["ev-2"]);
    report(&inj, "create");
}

#[test]
fn failing_header_sync_at_create_is_undone() {
    // Without a syncer thread (the interval policy) a roll syncs the new
    // header itself: a failure there removes the file and carries on.
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let mut c = config(&dir);
    c.durability = auditlog::Durability::Interval(std::time::Duration::from_millis(1));
    c.io.faults = Some(inj.clone() as Arc<dyn auditlog::internals::io::FaultInjector>);
    let log = Log::open(c).expect("log opens");
    append_ok(&log, 1, DAY0 + 1);
    // Syncs: seal of day 0 (footer), then the new header.
    inj.arm(On::Sync, 1, 1, Kind::Eio);
    append_fails(&log, 2, DAY0 + DAY_US);
    assert!(log.failed().is_none());
    append_ok(&log, 3, DAY0 + DAY_US + 1);
    log.close().unwrap();
    reopen_and_check(&dir, &["ev-1", "ev-3"]);
    report(&inj, "create-sync");
}

#[test]
fn failing_first_sync_of_a_rolled_segment_stops_the_writer_and_reopen_recovers() {
    // With the syncer thread (every-batch) a roll leaves the new header's
    // fdatasync and the folder's fsync to the first sync of the segment's
    // events (pace42 round): that sync failing is a failed fdatasync like
    // any other, never retried as if safe.
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    append_ok(&log, 1, DAY0 + 1);
    // Syncs: the seal of day 0 (footer, on the syncer), then the new
    // segment's first block with its header.
    inj.arm(On::Sync, 1, 1, Kind::Eio);
    let e = append_fails(&log, 2, DAY0 + DAY_US);
    assert!(log.failed().is_some(), "{e:?}");
    assert!(matches!(log.close(), Err(Error::WriterFailed(_))));
    // ev-2 was written before its sync failed: it may be on disk (its
    // receipt failed, which never lies).
    let log = Log::open(config(&dir)).expect("reopens");
    append_ok(&log, 3, DAY0 + DAY_US + 1);
    log.close().unwrap();
    verify(&dir, None, |_, _| {}).expect("verifies");
    let ids = run_ids(&dir);
    assert!(
        ids == ["ev-1", "ev-2", "ev-3"] || ids == ["ev-1", "ev-3"],
        "{ids:?}"
    );
    report(&inj, "first-sync");
}

#[test]
fn failing_footer_write_keeps_the_segment_active_and_seal_reports_it() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    append_ok(&log, 1, DAY0 + 1);
    inj.arm(On::BlockWrite, 0, 1, Kind::ShortEnospc(20));
    assert!(log.seal().is_err(), "a failed seal must say so");
    assert!(log.failed().is_none());
    append_ok(&log, 2, DAY0 + 2);
    log.seal().expect("seals once space is back");
    append_ok(&log, 3, DAY0 + 3);
    log.close().unwrap();
    let rep = verify(&dir, None, |_, _| {}).expect("verifies");
    assert_eq!(rep.segments, 2);
    reopen_and_check(&dir, &["ev-1", "ev-2", "ev-3"]);
    report(&inj, "footer");
}

#[test]
fn failing_manifest_rename_stops_the_writer_and_reopen_adopts_the_seal() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    append_ok(&log, 1, DAY0 + 1);
    append_ok(&log, 2, DAY0 + 2);
    inj.arm(On::Rename, 0, 1, Kind::Eio);
    assert!(log.seal().is_err());
    assert!(log.failed().is_some());
    assert!(append_fails(&log, 3, DAY0 + 3)
        .to_string()
        .contains("MANIFEST"));
    drop(log);
    reopen_and_check(&dir, &["ev-1", "ev-2"]);
    let rep = verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(rep.segments, 1);
    report(&inj, "rename");
}

#[test]
fn failing_flush_reports_the_failure() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    append_ok(&log, 1, DAY0 + 1);
    inj.arm(On::Sync, 0, 1, Kind::Eio);
    let r = log.append(&ev(2, DAY0 + 2)).unwrap();
    assert!(log.flush().is_err());
    assert!(r.wait().is_err());
    report(&inj, "flush");
}

#[test]
fn random_faults_never_lose_an_acknowledged_event() {
    // Many appends with random faults of every kind; every acknowledged
    // event must be there exactly once after a reopen, and verify passes.
    let rounds = if std::env::var_os("AUDITLOG_LONG").is_some() {
        60
    } else {
        12
    };
    let mut injected = 0;
    for round in 0..rounds {
        let (_t, dir) = scratch();
        let inj = Injector::new();
        let mut rng = fastrand::Rng::with_seed(round);
        let mut acked = Vec::new();
        let mut n = 0u64;
        let mut log = open_with(&dir, &inj);
        for _ in 0..40 {
            if rng.u8(..) < 40 {
                let on = [
                    On::BlockWrite,
                    On::Sync,
                    On::Create,
                    On::Rename,
                    On::WriteOf(72),
                    On::Remove,
                ][rng.usize(..6)];
                let kind =
                    [Kind::Eio, Kind::Enospc, Kind::ShortEnospc(rng.usize(..200))][rng.usize(..3)];
                inj.arm(on, rng.u64(..3), 1, kind);
            }
            let day = rng.i64(0..3);
            let batch: Vec<_> = (0..rng.u64(1..5))
                .map(|_| {
                    n += 1;
                    ev(n, DAY0 + day * DAY_US + n as i64)
                })
                .collect();
            if rng.u8(..) < 20 {
                let _ = log.seal();
            }
            let ok = log.append_batch(&batch).ok().map(|r| r.wait());
            if let Some(Ok(_)) = ok {
                acked.extend(batch.iter().map(|e| e.run_id.clone()));
            }
            if log.failed().is_some() {
                inj.clear();
                drop(log);
                log = open_with(&dir, &inj);
            }
        }
        inj.clear();
        drop(log);
        let log = Log::open(config(&dir)).unwrap();
        log.close().unwrap();
        verify(&dir, None, |_, _| {}).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let ids = run_ids(&dir);
        for id in &acked {
            let c = ids.iter().filter(|x| *x == id).count();
            assert_eq!(c, 1, "round {round}: {id} stored {c} times");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "round {round}: a duplicate");
        injected += inj.total();
        report(&inj, "random");
    }
    assert!(injected > 0);
}

#[test]
fn failing_removal_of_an_empty_segment_is_retried() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let log = open_with(&dir, &inj);
    append_ok(&log, 1, DAY0 + 1);
    // Day 0 is sealed (its footer write passes), day 1's segment is
    // created and its first block fails: it stays empty.
    inj.arm(On::BlockWrite, 1, 1, Kind::Enospc);
    append_fails(&log, 2, DAY0 + DAY_US);
    // Day 2 discards the empty segment; the removal fails once.
    inj.arm(On::Remove, 0, 1, Kind::Eio);
    append_fails(&log, 3, DAY0 + 2 * DAY_US);
    assert!(log.failed().is_none());
    append_ok(&log, 4, DAY0 + 2 * DAY_US + 1);
    log.close().unwrap();
    reopen_and_check(&dir, &["ev-1", "ev-4"]);
    assert_eq!(verify(&dir, None, |_, _| {}).unwrap().segments, 2);
    report(&inj, "remove");
}
