//! Index builds over a live log trust what that `Log` appended since it
//! opened (every append path checks every rule of the contract before it
//! encodes: docs/integrity.md, "Builds of what this process appended"),
//! and only that: segments from before the open, a log reopened later, a
//! folder read from disk and the frames a retention carries forward (the
//! caller's, unchecked) are read strictly.
//!
//! To see which way a build read an event, one event breaks a rule
//! (a `skill_id` over the name limit) and goes in through the one path
//! that does not check (`BatchBuilder`, hidden: its callers check): a
//! trusting build indexes it, a strict one refuses it, naming the field.

use std::fs;
use std::path::Path;

use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted};
use auditlog::internals::limits::MAX_NAME_BYTES;
use auditlog::query::Engine;
use auditlog::{BatchBuilder, Carry, Config, Durability, Log, Micros, RetainOptions};

use crate::support::idx_files;

const DAY: Micros = 86_400_000_000;
/// 2026-11-20T00:00:00Z.
const D0: Micros = 1_795_132_800_000_000;

fn open(path: &Path) -> Log {
    let mut cfg = Config::new(path);
    cfg.durability = Durability::Never;
    Log::open(cfg).unwrap()
}

/// A few good runs at `t` (through the checked `append_batch`).
fn good_runs(log: &Log, t: Micros, tag: &str) {
    let mut evs = Vec::new();
    for i in 0..20i64 {
        let id = format!("{tag}-{i}");
        let started = RunStarted {
            skill_id: "web.search".into(),
            ..RunStarted::default()
        };
        evs.push(Event::run_started(id.clone(), t + i, started));
        let payload = format!(r#"{{"tool":"sh","status":"ok","duration_ms":{i}}}"#);
        let l = RunLog {
            seq: 0,
            event_type: "tool_call".into(),
            payload: Json::parse(payload).unwrap(),
        };
        evs.push(Event::run_log(id.clone(), t + i, l));
        let fin = RunFinished {
            status: "ok".into(),
            ..RunFinished::default()
        };
        evs.push(Event::run_finished(id, t + i + 1, fin));
    }
    log.append_batch(&evs).unwrap().wait().unwrap();
}

/// A start whose `skill_id` breaks the name limit: every checked append
/// path refuses it; encoded unchecked, its frame.
fn bad_start(t: Micros) -> Event {
    let started = RunStarted {
        skill_id: "x".repeat(MAX_NAME_BYTES + 1),
        ..RunStarted::default()
    };
    Event::run_started("bad-1", t, started)
}

fn bad_frame(t: Micros) -> Vec<u8> {
    let mut b = BatchBuilder::default();
    b.push_checked(&bad_start(t)).unwrap();
    b.finish().frames().to_vec()
}

fn append_unchecked(log: &Log, t: Micros) {
    let mut b = BatchBuilder::default();
    b.push_checked(&bad_start(t)).unwrap();
    log.append_encoded(b.finish()).unwrap().wait().unwrap();
}

fn refuses_the_bad_start(r: auditlog::Result<()>, what: &str) {
    let err = r.expect_err(what).to_string();
    assert!(err.contains("skill_id"), "{what}: {err}");
}

#[test]
fn the_checked_paths_refuse_the_bad_start() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(&tmp.path().join("log"));
    assert!(log.append(&bad_start(D0)).is_err());
    assert!(auditlog::EncodedBatch::encode(&[bad_start(D0)]).is_err());
    log.close().unwrap();
}

/// Appended since the open: trusted (the live engine builds the image of
/// the segment holding the unchecked event). The same segment read from
/// disk, or through the log reopened, is read strictly and refused.
#[test]
fn a_live_log_trusts_what_it_appended_since_it_opened_and_only_that() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let log = open(&path);
    good_runs(&log, D0, "a");
    append_unchecked(&log, D0 + 100);
    log.seal().unwrap();
    good_runs(&log, D0 + DAY, "b");

    let mut live = Engine::new(log.reader());
    live.scan_threads = 1;
    live.refresh().unwrap();
    assert_eq!(live.stats.rebuilt, 1, "{:?}", live.stats);
    log.close().unwrap();

    for threads in [1, 2] {
        for f in idx_files(&path) {
            fs::remove_file(f).unwrap();
        }
        let mut disk = Engine::open(&path).unwrap();
        disk.scan_threads = threads;
        refuses_the_bad_start(disk.refresh(), "read from disk");

        let log = open(&path);
        let mut reopened = Engine::new(log.reader());
        reopened.scan_threads = threads;
        refuses_the_bad_start(reopened.refresh(), "reopened");
        // Appends after the reopen are trusted again; the old segment not.
        append_unchecked(&log, D0 + DAY + 500);
        log.close().unwrap();
    }
    // `verify` reads strictly, whoever appended.
    assert!(auditlog::verify(&path, None, |_, _| {}).is_err());
}

/// The frames a retention carries forward are the caller's, not checked on
/// the way in: the live engine's builds read them (and everything before
/// them) strictly, and refuse one that breaks a rule.
#[test]
fn frames_a_retention_carries_forward_are_read_strictly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let log = open(&path);
    good_runs(&log, D0, "a");
    log.seal().unwrap();
    good_runs(&log, D0 + 5 * DAY, "b");
    let mut live = Engine::new(log.reader());
    live.refresh().unwrap();

    let carried = bad_frame(D0 + 5 * DAY + 1_000);
    log.retain_carrying(
        D0 + 2 * DAY,
        RetainOptions::default(),
        Box::new(move |_| {
            Ok(Carry {
                frames: vec![(D0 + 5 * DAY + 1_000, carried)],
                runs: 1,
                dropped_runs: 0,
            })
        }),
    )
    .unwrap();
    good_runs(&log, D0 + 5 * DAY + 2_000, "c");
    refuses_the_bad_start(live.refresh(), "the active segment's chunk");
    let mut fresh = Engine::new(log.reader());
    refuses_the_bad_start(fresh.refresh(), "a new engine");
    log.seal().unwrap();
    refuses_the_bad_start(fresh.refresh(), "the sealed image");
    log.close().unwrap();
}
