//! Limits (docs/operations.md, "Limits"): one append is capped by events
//! and by encoded bytes, and the ingest queue is bounded by bytes as well
//! as by entries; past the queue's bounds the full-queue policy decides.
//! Nothing over a limit is stored, and the log carries on.

use crate::support::{self, config, ev, replay_all, scratch};

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use auditlog::internals::io::{Fault, FaultInjector, IoOp};
use auditlog::internals::limits::{MAX_EVENT_BYTES, MIN_QUEUE_MAX_BYTES};
use auditlog::{Config, Error, Event, FullPolicy, Json, Log, RunLog};

/// An event of about `bytes` bytes (its payload).
fn big(n: u64, bytes: usize) -> Event {
    let payload = format!("{{\"blob\":\"{}\"}}", "x".repeat(bytes));
    Event::run_log(
        format!("big-{n}"),
        support::DAY0 + n as i64,
        RunLog {
            seq: n,
            event_type: "blob".into(),
            payload: Json::parse(payload).unwrap(),
        },
    )
}

#[test]
fn an_append_over_the_event_count_is_refused_whole() {
    let (_t, dir) = scratch();
    let mut c = config(&dir);
    c.max_append_events = 10;
    let log = Log::open(c).unwrap();
    let ten: Vec<Event> = (0..10).map(|n| ev(n, support::DAY0 + n as i64)).collect();
    log.append_batch(&ten).unwrap().wait().unwrap();
    let eleven: Vec<Event> = (10..21).map(|n| ev(n, support::DAY0 + n as i64)).collect();
    let e = log.append_batch(&eleven).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BatchTooLarge {
                events: 11,
                max_events: 10,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("split it"), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(log.counters().rejected, 11);
    log.close().unwrap();
    assert_eq!(replay_all(&dir).len(), 10, "nothing of the refused call");
}

#[test]
fn an_append_over_the_byte_limit_is_refused_whole_also_when_pre_encoded() {
    let (_t, dir) = scratch();
    let mut c = config(&dir);
    c.max_append_bytes = MAX_EVENT_BYTES; // the smallest accepted: 1 MiB
    let log = Log::open(c).unwrap();
    let fits: Vec<Event> = (0..3).map(|n| big(n, 200_000)).collect();
    log.append_batch(&fits).unwrap().wait().unwrap();
    let over: Vec<Event> = (3..9).map(|n| big(n, 200_000)).collect();
    let e = log.append_batch(&over).unwrap_err();
    assert!(
        matches!(e, Error::BatchTooLarge { events: 6, bytes, max_bytes, .. } if bytes > max_bytes),
        "{e:?}"
    );
    let pre = auditlog::EncodedBatch::encode(&over).unwrap();
    let e = log.append_encoded(pre).unwrap_err();
    assert!(matches!(e, Error::BatchTooLarge { .. }), "{e:?}");
    log.append(&ev(100, support::DAY0)).unwrap().wait().unwrap();
    log.close().unwrap();
    assert_eq!(replay_all(&dir).len(), 4);
}

#[test]
fn limits_outside_their_bounds_are_refused_at_open() {
    let (_t, dir) = scratch();
    type Set = fn(&mut Config);
    let cases: [(&str, Set); 6] = [
        ("segment_max_bytes", |c| c.segment_max_bytes = 5 << 30),
        ("segment_max_bytes", |c| c.segment_max_bytes = 1024),
        ("max_append_events", |c| c.max_append_events = 0),
        ("max_append_bytes", |c| c.max_append_bytes = 1024),
        ("queue_max_bytes", |c| c.queue_max_bytes = 4096),
        ("queue_capacity", |c| c.queue_capacity = 0),
    ];
    for (name, set) in cases {
        let mut c = config(&dir);
        set(&mut c);
        let e = Log::open(c).err().expect("refused");
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains(name)),
            "{name}: {e:?}"
        );
    }
    assert!(!dir.exists(), "a refused open creates nothing");
}

/// Holds the writer inside its next segment write until released, so
/// appends pile up in the queue.
#[derive(Debug, Default)]
struct Stall {
    on: Mutex<bool>,
    cv: Condvar,
}

impl Stall {
    fn set(&self, on: bool) {
        *self.on.lock().unwrap() = on;
        self.cv.notify_all();
    }
}

impl FaultInjector for Stall {
    fn check(&self, op: IoOp, _path: &Path) -> Option<Fault> {
        if let IoOp::Write(_) = op {
            let mut on = self.on.lock().unwrap();
            while *on {
                on = self.cv.wait(on).unwrap();
            }
        }
        None
    }
}

/// A log whose queue holds at most `MIN_QUEUE_MAX_BYTES` (2 MiB) but
/// many entries, and a stalled writer.
fn stalled_log(dir: &Path, policy: FullPolicy) -> (Log, Arc<Stall>) {
    let stall = Arc::new(Stall::default());
    let mut c = config(dir);
    c.queue_max_bytes = MIN_QUEUE_MAX_BYTES;
    c.queue_capacity = 10_000;
    c.on_full = policy;
    c.io.faults = Some(stall.clone() as Arc<dyn FaultInjector>);
    let log = Log::open(c).unwrap();
    // The writer takes this one off the queue and stalls writing it.
    stall.set(true);
    let first = log.append(&big(0, 1000)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!first.is_done());
    (log, stall)
}

#[test]
fn the_queue_is_bounded_by_bytes_fail_fast() {
    let (_t, dir) = scratch();
    let (log, stall) = stalled_log(&dir, FullPolicy::FailFast);
    let mut receipts = Vec::new();
    let mut refused = None;
    for n in 1..20 {
        match log.append(&big(n, 300_000)) {
            Ok(r) => receipts.push(r),
            Err(e) => {
                refused = Some((n, e));
                break;
            }
        }
        let c = log.counters();
        assert!(c.queue_bytes <= MIN_QUEUE_MAX_BYTES as u64, "{c:?}");
    }
    let (n, e) = refused.expect("the byte bound is reached");
    // 300 KB events: six fit in 2 MiB, the seventh does not; far below the
    // entry bound of 10 000.
    assert_eq!(n, 7, "{e:?}");
    assert!(
        matches!(e, Error::QueueFull { entries: 6, max_bytes, capacity: 10_000, bytes } if max_bytes == MIN_QUEUE_MAX_BYTES && bytes > 1_800_000),
        "{e:?}"
    );
    assert!(e.is_retryable());
    assert_eq!(log.counters().rejected, 1);
    stall.set(false);
    for r in &receipts {
        r.wait().unwrap();
    }
    assert_eq!(log.counters().queue_bytes, 0);
    // Room again: the refused event goes in now.
    log.append(&big(7, 300_000)).unwrap().wait().unwrap();
    log.close().unwrap();
    assert_eq!(replay_all(&dir).len(), 8);
}

#[test]
fn the_queue_is_bounded_by_bytes_drop_and_count() {
    let (_t, dir) = scratch();
    let (log, stall) = stalled_log(&dir, FullPolicy::DropAndCount);
    let mut kept = 0;
    let mut dropped = 0;
    for n in 1..12 {
        let r = log.append(&big(n, 300_000)).unwrap();
        if r.is_dropped() {
            assert!(matches!(r.wait(), Err(Error::Dropped)));
            dropped += 1;
        } else {
            kept += 1;
        }
    }
    assert_eq!((kept, dropped), (6, 5));
    assert_eq!(log.counters().dropped, 5);
    stall.set(false);
    log.flush().unwrap();
    log.close().unwrap();
    assert_eq!(replay_all(&dir).len(), 1 + 6);
}

#[test]
fn the_queue_is_bounded_by_bytes_block_waits_for_room() {
    let (_t, dir) = scratch();
    let (log, stall) = stalled_log(&dir, FullPolicy::Block);
    let log = Arc::new(log);
    for n in 1..7 {
        let _ = log.append(&big(n, 300_000)).unwrap();
    }
    let producer = {
        let log = log.clone();
        std::thread::spawn(move || log.append(&big(7, 300_000)).map(|r| r.wait()))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!producer.is_finished(), "the append waits for room");
    assert!(log.counters().queue_bytes <= MIN_QUEUE_MAX_BYTES as u64);
    stall.set(false);
    producer.join().unwrap().unwrap().unwrap();
    let log = Arc::into_inner(log).expect("one owner");
    log.close().unwrap();
    assert_eq!(replay_all(&dir).len(), 8);
}

/// `try_append_encoded` (what `auditlog serve` uses so that its async
/// threads never block): on a full queue the batch comes back untouched
/// even under the Block policy, nothing is counted as rejected, and the
/// same batch goes in once there is room.
#[test]
fn a_full_queue_hands_a_tried_batch_back_whatever_the_policy() {
    use auditlog::EncodedBatch;
    let (_t, dir) = scratch();
    let (log, stall) = stalled_log(&dir, FullPolicy::Block);
    let mut receipts = Vec::new();
    let mut back = None;
    for n in 1..20 {
        let batch = EncodedBatch::encode(&[big(n, 300_000)]).unwrap();
        match log.try_append_encoded(batch).unwrap() {
            Ok(r) => receipts.push(r),
            Err(b) => {
                back = Some((n, b));
                break;
            }
        }
    }
    // As with FailFast: six 300 KB events fit in 2 MiB, the seventh not.
    let (n, batch) = back.expect("the byte bound is reached without blocking");
    assert_eq!(n, 7);
    assert_eq!(batch.len(), 1, "the batch comes back whole");
    let c = log.counters();
    assert_eq!(c.rejected, 0, "a batch handed back is not a refusal");
    assert!(c.queue_bytes <= MIN_QUEUE_MAX_BYTES as u64, "{c:?}");
    stall.set(false);
    for r in &receipts {
        r.wait().unwrap();
    }
    let r = log
        .try_append_encoded(batch)
        .unwrap()
        .unwrap_or_else(|_| panic!("room again"));
    r.wait().unwrap();
    log.close().unwrap();
    let stored = replay_all(&dir);
    assert_eq!(stored.len(), 8);
    assert_eq!(stored[7].1.run_id, "big-7");
}

/// By entries too: a queue of two stalled entries hands the third back.
#[test]
fn a_tried_batch_comes_back_when_the_queue_is_full_by_entries() {
    use auditlog::EncodedBatch;
    let (_t, dir) = scratch();
    let stall = Arc::new(Stall::default());
    let mut c = config(&dir);
    c.queue_capacity = 2;
    c.on_full = FullPolicy::Block;
    c.io.faults = Some(stall.clone() as Arc<dyn FaultInjector>);
    let log = Log::open(c).unwrap();
    stall.set(true);
    let first = log.append(&ev(0, support::DAY0)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut receipts = vec![first];
    let mut back = None;
    for n in 1..10 {
        let batch = EncodedBatch::encode(&[ev(n, support::DAY0 + n as i64)]).unwrap();
        match log.try_append_encoded(batch).unwrap() {
            Ok(r) => receipts.push(r),
            Err(b) => {
                back = Some(b);
                break;
            }
        }
    }
    let batch = back.expect("the entry bound is reached without blocking");
    assert_eq!(log.counters().rejected, 0);
    stall.set(false);
    for r in &receipts {
        r.wait().unwrap();
    }
    let n = receipts.len();
    let r = log
        .try_append_encoded(batch)
        .unwrap()
        .unwrap_or_else(|_| panic!("room again"));
    r.wait().unwrap();
    log.close().unwrap();
    assert_eq!(replay_all(&dir).len(), n + 1);
}
