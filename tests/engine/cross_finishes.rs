//! Runs whose finish lies in a later segment than their start: the engine
//! finds those finishes in the later images' FINS sections (on disk, no
//! map in memory), and every answer equals the plain fold of the events:
//! with finishes one or many segments later, never, twice, before a
//! duplicate start, orphaned, dry_run, from index files, from in-memory
//! chunks of the active segment, and after retention drops the start.

use std::fs;
use std::path::Path;

use crate::support::idx_files;
use auditlog::event::{Event, RunFinished, RunStarted};
use auditlog::internals::index::{ImageError, HEADER_LEN, S_FINS};
use auditlog::query::{Engine, Filter, Page};
use auditlog::view::Fold;
use auditlog::{Config, Durability, Log, Micros};

const DAY: Micros = 86_400_000_000;
/// 2026-11-20T00:00:00Z.
const D0: Micros = 1_795_132_800_000_000;
const STATUSES: [&str; 5] = ["ok", "error", "timeout", "dry_run", "running"];

fn start(id: &str, t: Micros, skill: &str, dry: bool) -> Event {
    let s = RunStarted {
        skill_id: skill.into(),
        caller_id: "u".into(),
        channel_id: "c".into(),
        dry_run: dry,
        ..RunStarted::default()
    };
    Event::run_started(id, t, s)
}

fn finish(id: &str, t: Micros, status: &str) -> Event {
    let f = RunFinished {
        status: status.into(),
        ..RunFinished::default()
    };
    Event::run_finished(id, t, f)
}

/// `days` segments (one per UTC day) of events drawn with `seed`: each
/// run starts on some day and finishes the same day, a later one, twice,
/// or never; some start twice, some finishes have no start.
fn events(seed: u64, days: i64) -> Vec<Vec<Event>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut per_day: Vec<Vec<(Micros, Event)>> = (0..days).map(|_| Vec::new()).collect();
    let mut put = |day: i64, t: Micros, ev: Event| {
        if day < days {
            per_day[day as usize].push((t, ev));
        }
    };
    for i in 0..600 {
        let id = format!("r-{i:04}");
        let day = rng.i64(0..days);
        let t = D0 + day * DAY + rng.i64(0..DAY / 2);
        let skill = ["a", "b"][rng.usize(0..2)];
        put(day, t, start(&id, t, skill, rng.u8(0..30) == 0));
        let status = STATUSES[rng.usize(0..4)];
        match rng.u8(0..10) {
            0 => {} // never finished
            1..=4 => put(day, t + 1, finish(&id, t + 1, status)),
            5..=7 => {
                let later = day + rng.i64(1..4);
                put(
                    later,
                    D0 + later * DAY + 5,
                    finish(&id, D0 + later * DAY + 5, status),
                );
            }
            8 => {
                // Finished twice: only the first counts.
                let later = day + 1;
                put(
                    later,
                    D0 + later * DAY + 5,
                    finish(&id, D0 + later * DAY + 5, status),
                );
                put(
                    later + 1,
                    D0 + (later + 1) * DAY + 5,
                    finish(&id, D0 + (later + 1) * DAY + 5, "ok"),
                );
            }
            _ => {
                // Started again later (a duplicate), finished after that.
                let later = day + rng.i64(1..3);
                put(
                    later,
                    D0 + later * DAY + 1,
                    start(&id, D0 + later * DAY + 1, "z", false),
                );
                put(
                    later,
                    D0 + later * DAY + 2,
                    finish(&id, D0 + later * DAY + 2, status),
                );
            }
        }
        if i % 50 == 0 {
            let d = rng.i64(0..days);
            put(d, D0 + d * DAY, finish(&format!("orphan-{i}"), D0, "error"));
        }
    }
    per_day
        .into_iter()
        .map(|mut v| {
            v.sort_by_key(|(t, _)| *t);
            v.into_iter().map(|(_, e)| e).collect()
        })
        .collect()
}

/// Write the days, sealing all but the last when `seal_last` is false.
fn write(path: &Path, days: &[Vec<Event>], seal_last: bool) -> Log {
    let mut cfg = Config::new(path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    for (k, evs) in days.iter().enumerate() {
        if !evs.is_empty() {
            log.append_batch(evs).unwrap().wait().unwrap();
        }
        if seal_last || k + 1 < days.len() {
            log.seal().unwrap();
        }
    }
    log
}

/// Counts by every status (dry runs in and out), each run's status and
/// finish, and the runs of one status: the engine against the fold.
fn check(eng: &mut Engine, fold: &Fold, ids: &[String], what: &str) {
    for status in STATUSES {
        for dry in [false, true] {
            for skill in [None, Some("a")] {
                let f = Filter {
                    status: Some(status.into()),
                    skill: skill.map(Into::into),
                    include_dry_run: dry,
                    ..Filter::default()
                };
                let want = fold
                    .runs()
                    .filter(|r| r.status == status && (dry || !r.dry_run))
                    .filter(|r| skill.is_none_or(|s| r.skill_id == s))
                    .count() as u64;
                assert_eq!(eng.count(&f).unwrap(), want, "{what}: count {f:?}");
                let listed = eng.list(&f, Page::all()).unwrap().len() as u64;
                assert_eq!(listed, want, "{what}: list {f:?}");
            }
        }
    }
    for t in [
        D0,
        D0 + DAY / 3,
        D0 + 2 * DAY + 7,
        D0 + 4 * DAY,
        D0 + 9 * DAY,
    ] {
        for dry in [false, true] {
            let mut want: Vec<&str> = fold
                .runs()
                .filter(|r| r.finished_at.is_some_and(|f| f < t) && (dry || !r.dry_run))
                .map(|r| r.id.as_str())
                .collect();
            let got = eng.finished_before(t, dry, None).unwrap();
            let mut got: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{what}: finished before {t} (dry {dry})");
        }
    }
    for id in ids {
        let got = eng.get_run(id).unwrap();
        let want = fold.run(id);
        assert_eq!(
            got.as_ref().map(|r| (&r.status, r.finished_at, r.dry_run)),
            want.map(|r| (&r.status, r.finished_at, r.dry_run)),
            "{what}: run {id}"
        );
    }
}

fn ids() -> Vec<String> {
    (0..600).map(|i| format!("r-{i:04}")).collect()
}

#[test]
fn later_finishes_fold_right_from_files_and_from_the_active_segment() {
    for seed in [1, 2, 3] {
        let days = events(seed, 6);
        let fold = Fold::of(days.iter().flatten());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        // The last day active: its finishes come from in-memory chunks.
        let log = write(&path, &days, false);
        let mut eng = Engine::open(&path).unwrap();
        check(&mut eng, &fold, &ids(), &format!("seed {seed}, active"));
        log.close().unwrap();
        // Every segment sealed, images built, then loaded from files.
        let mut eng = Engine::open(&path).unwrap();
        check(&mut eng, &fold, &ids(), &format!("seed {seed}, built"));
        let mut eng = Engine::open(&path).unwrap();
        check(&mut eng, &fold, &ids(), &format!("seed {seed}, loaded"));
        assert_eq!(eng.stats.rebuilt, 0, "{:?}", eng.stats);
    }
}

#[test]
fn a_finish_whose_start_was_dropped_is_an_orphan() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let days = vec![
        vec![
            start("gone", D0, "a", false),
            start("kept", D0 + 1, "a", false),
        ],
        vec![finish("gone", D0 + DAY, "error")],
        vec![start("kept", D0 + 2 * DAY, "b", false)],
        vec![finish("kept", D0 + 3 * DAY, "error")],
    ];
    let log = write(&path, &days, true);
    let mut eng = Engine::open(&path).unwrap();
    let errors = Filter {
        status: Some("error".into()),
        ..Filter::default()
    };
    assert_eq!(eng.count(&errors).unwrap(), 2);
    // Drop day 0: "gone" has no start left, "kept" is defined by its
    // day-2 start (skill b) and finished on day 3.
    let rep = log.retain(D0 + DAY).unwrap();
    assert_eq!(rep.dropped.len(), 1, "{rep:?}");
    let mut eng = Engine::open(&path).unwrap();
    let fold = Fold::of(days[1..].iter().flatten());
    assert_eq!(eng.count(&errors).unwrap(), 1);
    let kept = eng.get_run("kept").unwrap().unwrap();
    assert_eq!(
        (kept.skill_id.as_str(), kept.status.as_str()),
        ("b", "error")
    );
    assert!(eng.get_run("gone").unwrap().is_none());
    check(&mut eng, &fold, &["gone".into(), "kept".into()], "dropped");
    log.close().unwrap();
}

#[test]
fn old_version_and_damaged_fins_index_files_are_rebuilt_and_answer_right() {
    let days = events(9, 5);
    let fold = Fold::of(days.iter().flatten());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    write(&path, &days, true).close().unwrap();
    let mut eng = Engine::open(&path).unwrap();
    check(&mut eng, &fold, &ids(), "fresh");
    let fins_len = |f: &std::path::PathBuf| {
        let b = fs::read(f).unwrap();
        let at = HEADER_LEN + 16 * S_FINS + 8;
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    };
    // Images that hold foreign finishes.
    let files: Vec<_> = idx_files(&path)
        .into_iter()
        .filter(|f| fins_len(f) > 0)
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    // An index of format version 4 (FINS without hashes): rebuilt.
    let mut b = fs::read(&files[1]).unwrap();
    b[8..12].copy_from_slice(&4u32.to_le_bytes());
    fs::write(&files[1], b).unwrap();
    // A FINS section cut short (not whole records; header CRC now wrong
    // too) and one whose bytes are damaged (its block's CRC fails when a
    // query reads it).
    let mut b = fs::read(&files[2]).unwrap();
    let at = HEADER_LEN + 16 * S_FINS + 8;
    let len = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    b[at..at + 8].copy_from_slice(&(len - 3).to_le_bytes());
    fs::write(&files[2], b).unwrap();
    let mut b = fs::read(&files[3]).unwrap();
    let off = u64::from_le_bytes(b[HEADER_LEN + 16 * S_FINS..][..8].try_into().unwrap()) as usize;
    for k in 0..64 {
        b[off + 40 + k] ^= 0xa5;
    }
    fs::write(&files[3], b).unwrap();
    let mut eng = Engine::open(&path).unwrap();
    check(&mut eng, &fold, &ids(), "after damage");
    assert!(eng.stats.rebuilt >= 2, "{:?}", eng.stats);
    // The rebuilt files are current again.
    let mut eng = Engine::open(&path).unwrap();
    check(&mut eng, &fold, &ids(), "reloaded");
    assert_eq!(eng.stats.rebuilt, 0, "{:?}", eng.stats);
    // The typed reason the loader gives for such a file.
    let mut b = fs::read(&files[1]).unwrap();
    b[8..12].copy_from_slice(&4u32.to_le_bytes());
    let r = auditlog::internals::index::Image::open(auditlog::internals::index::Backing::Vec(b));
    assert_eq!(r.unwrap_err(), ImageError::UnsupportedVersion { found: 4 });
}
