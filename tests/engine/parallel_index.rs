//! Sealed segments' images built several at once (their scans on worker
//! threads, their finishes in log order): the same bytes as built one
//! after another, through `refresh` and through the indexer's
//! `index_sealed`, and `verify`'s own rebuild agrees; a segment whose
//! build fails is reported by name, not skipped.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::idx_files;
use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted, ToolCall};
use auditlog::query::Engine;
use auditlog::{Config, Durability, Log, Micros};

const DAY: Micros = 86_400_000_000;
/// 2026-11-20T00:00:00Z.
const D0: Micros = 1_795_132_800_000_000;
const SEGMENTS: i64 = 7;

fn start(skill: &str) -> RunStarted {
    RunStarted {
        skill_id: skill.into(),
        caller_id: "u-1".into(),
        channel_id: "c-1".into(),
        ..RunStarted::default()
    }
}

fn finish(status: &str) -> RunFinished {
    RunFinished {
        status: status.into(),
        ..RunFinished::default()
    }
}

/// Seven sealed segments whose images depend on each other: runs that
/// finish a segment later, ids started again in later segments (shadowed
/// starts), tool calls and `run_log` tool calls (some with escapes).
fn build_log(dir: &Path) -> PathBuf {
    let path = dir.join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    for seg in 0..SEGMENTS {
        let mut evs = Vec::new();
        for i in 0..300i64 {
            let t = D0 + seg * DAY + i * 1_000_000;
            // Every 11th id comes back in every segment.
            let id = if i % 11 == 0 {
                format!("again-{i}")
            } else {
                format!("s{seg}-{i:03}")
            };
            evs.push(Event::run_started(
                id.clone(),
                t,
                start(["a", "b", "c"][i as usize % 3]),
            ));
            let tool = if i % 4 == 0 { r#"s\"h"# } else { "sh" };
            let payload = format!(r#"{{"tool":"{tool}","status":"error","duration_ms":{i}}}"#);
            evs.push(Event::run_log(
                id.clone(),
                t + 1,
                RunLog {
                    seq: 0,
                    event_type: "tool_call".into(),
                    payload: Json::parse(&payload).unwrap(),
                },
            ));
            let call = ToolCall {
                tool: format!("tool-{}", i % 5),
                status: ["ok", "error"][i as usize % 2].into(),
                duration_ms: Some(i as f64),
                ..ToolCall::default()
            };
            evs.push(Event::tool_call(id.clone(), t + 2, call));
            if i % 7 != 0 {
                evs.push(Event::run_finished(
                    id,
                    t + 3,
                    finish(["ok", "error"][i as usize % 2]),
                ));
            }
        }
        // The runs left open in the previous segment finish here.
        if seg > 0 {
            for i in (0..300i64).filter(|i| i % 7 == 0 && i % 11 != 0) {
                let t = D0 + seg * DAY + 400_000_000 + i;
                evs.push(Event::run_finished(
                    format!("s{}-{i:03}", seg - 1),
                    t,
                    finish("late"),
                ));
            }
        }
        log.append_batch(&evs).unwrap().wait().unwrap();
        log.seal().unwrap();
    }
    log.close().unwrap();
    path
}

/// Every index file's bytes, by name.
fn index_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    idx_files(dir)
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn remove_indexes(dir: &Path) {
    for f in idx_files(dir) {
        fs::remove_file(f).unwrap();
    }
}

fn refresh_with(dir: &Path, threads: usize) -> Engine {
    let mut eng = Engine::open(dir).unwrap();
    eng.scan_threads = threads;
    eng.refresh().unwrap();
    eng
}

#[test]
fn parallel_builds_write_the_same_bytes_as_one_after_another() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build_log(tmp.path());
    let sequential = {
        let eng = refresh_with(&path, 1);
        assert_eq!(eng.stats.rebuilt, SEGMENTS as u64, "{:?}", eng.stats);
        index_bytes(&path)
    };
    assert_eq!(sequential.len(), SEGMENTS as usize);
    for threads in [2, 3, 16] {
        remove_indexes(&path);
        let eng = refresh_with(&path, threads);
        assert_eq!(
            eng.stats.rebuilt, SEGMENTS as u64,
            "{threads}: {:?}",
            eng.stats
        );
        assert!(
            index_bytes(&path) == sequential,
            "refresh, {threads} threads"
        );

        remove_indexes(&path);
        let mut eng = Engine::open(&path).unwrap();
        eng.scan_threads = threads;
        let eng = std::sync::Mutex::new(eng);
        Engine::index_sealed(&eng).unwrap();
        assert!(
            index_bytes(&path) == sequential,
            "index_sealed, {threads} threads"
        );
    }
    // `verify` rebuilds every image from the events it decodes, one by one,
    // and compares it with the stored file byte for byte.
    let report = auditlog::verify(&path, None, |_, _| {}).unwrap();
    assert_eq!(report.indexes_checked, SEGMENTS as u64);
}

#[test]
fn a_failed_build_among_parallel_ones_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build_log(tmp.path());
    // Damage an event in the middle of the third segment.
    let bad_name = damage_segment(&path, 2);
    for threads in [1, 2, 4] {
        remove_indexes(&path);
        let mut eng = Engine::open(&path).unwrap();
        eng.scan_threads = threads;
        let err = eng
            .refresh()
            .expect_err("a damaged segment fails its build");
        assert!(err.to_string().contains(&bad_name), "{threads}: {err}");

        remove_indexes(&path);
        let mut eng = Engine::open(&path).unwrap();
        eng.scan_threads = threads;
        let eng = std::sync::Mutex::new(eng);
        let err = Engine::index_sealed(&eng).expect_err("the indexer reports it too");
        assert!(err.to_string().contains(&bad_name), "{threads}: {err}");
        // The segments before it were built and stored.
        assert!(idx_files(&path).len() >= 2, "{threads}");
    }
}

/// Reopen the log of [`build_log`] and append an active segment of `runs`
/// runs (ids from `from`) on the day after the last sealed one: some of
/// its runs finish runs left open in the last sealed segment, and some
/// ids started there start again here (lookups into the sealed images).
fn append_active(log: &Log, from: i64, runs: i64) {
    let day = D0 + SEGMENTS * DAY;
    let mut evs = Vec::new();
    for i in from..from + runs {
        let t = day + i * 1_000;
        let id = if i % 11 == 0 {
            format!("again-{}", i % 300)
        } else {
            format!("act-{i:05}")
        };
        evs.push(Event::run_started(id.clone(), t, start("b")));
        evs.push(Event::tool_call(
            id.clone(),
            t + 1,
            ToolCall {
                tool: format!("tool-{}", i % 5),
                status: "error".into(),
                ..ToolCall::default()
            },
        ));
        evs.push(Event::run_finished(id, t + 2, finish("ok")));
    }
    if from == 0 {
        for i in (0..300i64).filter(|i| i % 7 == 0 && i % 11 != 0) {
            evs.push(Event::run_finished(
                format!("s{}-{i:03}", SEGMENTS - 1),
                day + 500,
                finish("late"),
            ));
        }
    }
    log.append_batch(&evs).unwrap().wait().unwrap();
}

fn open_more(path: &Path) -> Log {
    let mut cfg = Config::new(path);
    cfg.durability = Durability::Never;
    Log::open(cfg).unwrap()
}

/// What the engine answers about every run, and a few counts.
fn answers(eng: &mut Engine) -> String {
    use auditlog::query::{Filter, Page};
    let mut s = String::new();
    for r in eng.list(&Filter::default(), Page::all()).unwrap() {
        s.push_str(&r.to_json());
    }
    for st in ["running", "ok", "late", "error"] {
        let f = Filter {
            status: Some(st.into()),
            ..Filter::default()
        };
        s.push_str(&format!(" {st}={}", eng.count(&f).unwrap()));
    }
    s
}

/// `refresh` scans the active segment's new events on a scan thread
/// beside the sealed segments' scans, and finishes its chunk after the
/// sealed images it looks runs up in: the same answers with 1, 2 and 4
/// scan threads, on a first refresh and on one that only adds new events,
/// and a stored prefix index that `verify` (which rebuilds it on its own)
/// finds byte for byte equal.
#[test]
fn the_active_segment_scanned_beside_the_sealed_ones_answers_the_same() {
    let mut truth: Option<(String, String)> = None;
    for threads in [1, 2, 4] {
        let tmp = tempfile::tempdir().unwrap();
        let path = build_log(tmp.path());
        let log = open_more(&path);
        // Enough for the prefix index to be stored (ACTIVE_INDEX_STEP).
        append_active(&log, 0, 20_000);
        assert!(log.reader().segments().last().is_some_and(|s| !s.sealed));
        let mut eng = Engine::new(log.reader());
        eng.scan_threads = threads;
        eng.refresh().unwrap();
        assert_eq!(
            (
                eng.stats.rebuilt,
                eng.stats.chunks_built,
                eng.stats.chunks_scanned_ahead
            ),
            (SEGMENTS as u64, 1, 1),
            "{threads}: {:?}",
            eng.stats
        );
        assert_eq!(active_indexes(&path).len(), 1, "{threads}: {:?}", eng.stats);
        let first = answers(&mut eng);
        // More events: the next refresh scans from where the last ended.
        append_active(&log, 20_000, 50);
        eng.refresh().unwrap();
        assert_eq!(
            (eng.stats.chunks_built, eng.stats.chunks_scanned_ahead),
            (2, 2),
            "{threads}: {:?}",
            eng.stats
        );
        let second = answers(&mut eng);
        drop(eng);
        log.close().unwrap();
        let report = auditlog::verify(&path, None, |_, _| {}).unwrap();
        assert_eq!(report.indexes_checked, SEGMENTS as u64 + 1, "{threads}");
        // An engine that builds the active segment's chunk on its own,
        // after the sealed images are loaded.
        for f in active_indexes(&path) {
            fs::remove_file(f).unwrap();
        }
        let mut alone = Engine::open(&path).unwrap();
        alone.persist = false;
        alone.refresh().unwrap();
        assert_eq!(
            (alone.stats.loaded, alone.stats.chunks_built),
            (SEGMENTS as u64, 1),
            "{threads}: {:?}",
            alone.stats
        );
        assert_eq!(answers(&mut alone), second, "{threads}");
        match &truth {
            None => truth = Some((first, second)),
            Some(t) => assert!(*t == (first, second), "{threads} threads"),
        }
    }
}

/// An active segment damaged under a live log fails the refresh with an
/// error naming it, however many scan threads there are (its scan ahead
/// failing is not the error: the chunk is then built where it always
/// was, and that build reports the damage).
#[test]
fn a_damaged_active_segment_is_reported_beside_parallel_scans() {
    for threads in [1, 2, 4] {
        let tmp = tempfile::tempdir().unwrap();
        let path = build_log(tmp.path());
        let log = open_more(&path);
        append_active(&log, 0, 2000);
        let active = log.reader().segments().last().unwrap().clone();
        let mut b = fs::read(&active.path).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        fs::write(&active.path, b).unwrap();
        let mut eng = Engine::new(log.reader());
        eng.scan_threads = threads;
        let err = eng.refresh().expect_err("a damaged active segment");
        assert!(err.to_string().contains(&active.name), "{threads}: {err}");
        // The sealed images were built and stored before the failure.
        assert_eq!(idx_files(&path).len(), SEGMENTS as usize, "{threads}");
        drop(eng);
        drop(log);
    }
}

fn active_indexes(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "aidx"))
        .collect();
    v.sort();
    v
}

/// Builds that trust the events as checked on append (`auditlog ingest`:
/// `Engine::trust_appends_from`) step over what no index reads and run no
/// rule again: the images are the same bytes as a strict build's, and
/// `verify`, which rebuilds strictly, agrees. Spans with events older than
/// the trusted LSN are still read strictly (the same bytes either way).
#[test]
fn builds_of_events_checked_on_append_write_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build_log(tmp.path());
    let strict = {
        refresh_with(&path, 1);
        index_bytes(&path)
    };
    assert_eq!(strict.len(), SEGMENTS as usize);
    for (threads, from_lsn) in [(1, 0), (2, 0), (2, 3_000), (2, u64::MAX)] {
        remove_indexes(&path);
        let mut eng = Engine::open(&path).unwrap();
        eng.scan_threads = threads;
        eng.trust_appends_from(from_lsn);
        eng.refresh().unwrap();
        assert_eq!(eng.stats.rebuilt, SEGMENTS as u64, "{:?}", eng.stats);
        assert!(
            index_bytes(&path) == strict,
            "{threads} threads, trusted from LSN {from_lsn}"
        );
    }
    let report = auditlog::verify(&path, None, |_, _| {}).unwrap();
    assert_eq!(report.indexes_checked, SEGMENTS as u64);
}

/// A trusting build still checks every block's chain: a segment changed
/// after it was written fails its build, named, as a strict build does.
#[test]
fn a_damaged_segment_fails_a_build_that_trusts_its_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build_log(tmp.path());
    let bad_name = damage_segment(&path, 3);
    for threads in [1, 2] {
        remove_indexes(&path);
        let mut eng = Engine::open(&path).unwrap();
        eng.scan_threads = threads;
        eng.trust_appends_from(0);
        let err = eng
            .refresh()
            .expect_err("a damaged segment fails its build");
        assert!(err.to_string().contains(&bad_name), "{threads}: {err}");
    }
}

/// Flips a byte in the middle of the `nth` sealed segment (in name order)
/// and returns that segment's file name, which a failed build must name.
fn damage_segment(log: &Path, nth: usize) -> String {
    let mut segs: Vec<PathBuf> = fs::read_dir(log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let bad = &segs[nth];
    let mut b = fs::read(bad).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    fs::write(bad, b).unwrap();
    bad.file_name().unwrap().to_str().unwrap().to_string()
}
