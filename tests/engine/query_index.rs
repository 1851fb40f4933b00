//! Index files: rebuilt when deleted, truncated, corrupt or stale (answers
//! stay right), reused untouched on reopen; retention keeps queries and
//! index files in step; the gateway store API.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::idx_files;
use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted};
use auditlog::internals::index::{key, HEADER_LEN, K_STATUS, S_KEYS, S_RFILT, S_RUNS, S_STR};
use auditlog::query::{Engine, Filter, Page};
use auditlog::Error;
use auditlog::{AuditStore, StoreConfig};
use auditlog::{Config, Durability, Log, Micros};

const DAY: Micros = 86_400_000_000;
/// 2026-11-20T00:00:00Z.
const D0: Micros = 1_795_132_800_000_000;

fn start(skill: &str, parent: &str) -> RunStarted {
    RunStarted {
        skill_id: skill.into(),
        caller_id: "u-1".into(),
        channel_id: "c-1".into(),
        parent_run_id: parent.into(),
        ..RunStarted::default()
    }
}

fn failing_log(seq: u64) -> RunLog {
    RunLog {
        seq,
        event_type: "tool_call".into(),
        payload: Json::parse(
            r#"{"tool":"sh","status":"error","error_type":"exit","duration_ms":7}"#,
        )
        .unwrap(),
    }
}

/// Four days of runs, two sealed segments per day; returns the folder.
fn build_log(dir: &Path) -> PathBuf {
    let path = dir.join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    for day in 0..4 {
        for half in 0..2 {
            let mut evs = Vec::new();
            for i in 0..200 {
                let id = format!("d{day}-h{half}-{i:03}");
                let t = D0 + day * DAY + half * DAY / 2 + i * 1_000_000;
                let parent = if i % 3 == 0 {
                    String::new()
                } else {
                    format!("d{day}-h{half}-{:03}", i - 1)
                };
                evs.push(Event::run_started(
                    id.clone(),
                    t,
                    start(["a", "b"][i as usize % 2], &parent),
                ));
                evs.push(Event::run_log(id.clone(), t + 1, failing_log(0)));
                if i % 5 != 0 {
                    // Some errors, so that a count by status takes the
                    // status lists (and their KEYS summaries).
                    let status = if i % 7 == 3 { "error" } else { "ok" };
                    let f = RunFinished {
                        status: status.into(),
                        ..RunFinished::default()
                    };
                    evs.push(Event::run_finished(id, t + 2, f));
                }
            }
            log.append_batch(&evs).unwrap().wait().unwrap();
            log.seal().unwrap();
        }
    }
    log.close().unwrap();
    path
}

fn answers(eng: &mut Engine) -> String {
    let all = Filter::default();
    let mut s = String::new();
    for r in eng.list(&all, Page::all()).unwrap() {
        s.push_str(&r.to_json());
    }
    for status in ["running", "ok", "error"] {
        s.push_str(
            &eng.count(&Filter {
                status: Some(status.into()),
                ..all.clone()
            })
            .unwrap()
            .to_string(),
        );
    }
    for g in eng.errors(None, None, false).unwrap() {
        s.push_str(&g.to_json());
    }
    for id in ["d1-h0-007", "d3-h1-199", "d0-h0-000"] {
        let (r, logs) = eng.run_with_logs(id).unwrap().unwrap();
        s.push_str(&r.to_json_with_logs(&logs));
    }
    s
}

#[test]
fn rebuild_after_delete_truncate_corrupt_and_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build_log(tmp.path());
    let mut eng = Engine::open(&path).unwrap();
    let expected = answers(&mut eng);
    assert_eq!(eng.stats.rebuilt, 8, "{:?}", eng.stats);
    let files = idx_files(&path);
    assert_eq!(files.len(), 8);
    let original: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    let mtimes: Vec<_> = files
        .iter()
        .map(|f| fs::metadata(f).unwrap().modified().unwrap())
        .collect();

    // Reopen: nothing rebuilt, files untouched.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut eng = Engine::open(&path).unwrap();
    assert_eq!(answers(&mut eng), expected);
    assert_eq!(
        (eng.stats.rebuilt, eng.stats.loaded),
        (0, 8),
        "{:?}",
        eng.stats
    );
    for (i, f) in files.iter().enumerate() {
        assert_eq!(fs::read(f).unwrap(), original[i]);
        assert_eq!(fs::metadata(f).unwrap().modified().unwrap(), mtimes[i]);
    }

    let check = |what: &str, damage: &dyn Fn(&Path)| {
        damage(&files[2]);
        let mut eng = Engine::open(&path).unwrap();
        assert_eq!(answers(&mut eng), expected, "answers after {what}");
        assert_eq!(eng.stats.rebuilt, 1, "{what}: {:?}", eng.stats);
        assert_eq!(
            fs::read(&files[2]).unwrap(),
            original[2],
            "{what}: file rebuilt"
        );
    };
    check("delete", &|f| fs::remove_file(f).unwrap());
    check("truncate", &|f| {
        let len = fs::metadata(f).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
    check("empty file", &|f| {
        fs::write(f, b"").unwrap();
    });
    check("corrupt header", &|f| {
        let mut b = fs::read(f).unwrap();
        b[20] ^= 0x40;
        fs::write(f, b).unwrap();
    });
    // A flipped byte inside the RUNS section is found lazily (block CRC)
    // while answering; the answer is thrown away and asked again.
    check("corrupt body", &|f| {
        let mut b = fs::read(f).unwrap();
        let at = HEADER_LEN + 16 * S_RUNS;
        let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
        b[off + 70] ^= 0x01;
        fs::write(f, b).unwrap();
    });
    // A damaged run filter reads as "maybe present" (never "absent"):
    // every lookup still finds its run, and the image is rebuilt.
    check("corrupt run filter", &|f| {
        let mut b = fs::read(f).unwrap();
        let at = HEADER_LEN + 16 * S_RFILT;
        let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap()) as usize;
        b[off..off + len].fill(0);
        fs::write(f, b).unwrap();
    });
    check("stale (another segment's index)", &|f| {
        fs::copy(&files[3], f).unwrap();
    });
    check("foreign file", &|f| {
        fs::write(f, vec![7u8; 4096]).unwrap();
    });
    // Checksums resealed over the damage: only the version or the
    // KEYS summary's own bound can tell.
    // Version 7 (a stored run filter without the ids of LOGS) is refused
    // by number and rebuilt.
    check("previous format version", &|f| {
        let mut b = fs::read(f).unwrap();
        b[8..12].copy_from_slice(&7u32.to_le_bytes());
        crate::fuzz_shared::fix_up_index(&mut b);
        fs::write(f, b).unwrap();
    });
    check("KEYS summary larger than its list", &|f| {
        let mut b = fs::read(f).unwrap();
        let rec = status_key_record(&b, b"error");
        let len = u32::from_le_bytes(b[rec + key::LEN..rec + key::LEN + 4].try_into().unwrap());
        b[rec + key::PLAIN..rec + key::PLAIN + 4].copy_from_slice(&(len + 1).to_le_bytes());
        crate::fuzz_shared::fix_up_index(&mut b);
        fs::write(f, b).unwrap();
    });
}

/// The byte offset of the KEYS record of status `value` in an index file.
fn status_key_record(b: &[u8], value: &[u8]) -> usize {
    let entry = |s: usize| {
        let at = HEADER_LEN + 16 * s;
        let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap()) as usize;
        (off, len)
    };
    let (keys, keys_len) = entry(S_KEYS);
    let (strs, _) = entry(S_STR);
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    (0..keys_len / key::SIZE)
        .map(|i| keys + i * key::SIZE)
        .find(|&r| {
            let (o, l) = (u32_at(r + key::VALUE), u32_at(r + key::VALUE + 4));
            u32_at(r + key::KIND) == K_STATUS as usize && &b[strs + o..strs + o + l] == value
        })
        .expect("the status key is in the image")
}

/// A count by status alone (from the images' KEYS summaries where no
/// listed start is shadowed) equals the listing's runs of that status.
fn counts_by_status_agree_with_the_listing(store: &AuditStore) {
    for status in ["ok", "running", "error"] {
        for include_dry_run in [false, true] {
            let f = Filter {
                status: Some(status.into()),
                include_dry_run,
                ..Filter::default()
            };
            let listed = store.list_runs(&f, Page::all()).unwrap().len() as u64;
            assert_eq!(store.count_runs(&f).unwrap(), listed, "{f:?}");
        }
    }
}

#[test]
fn retention_drops_runs_and_index_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let mut cfg = StoreConfig::new(&path);
    cfg.log.durability = Durability::Never;
    let store = AuditStore::open(cfg).unwrap();
    // Day 0: runs x (finished on day 1), y (started again on day 1), z.
    store.start_run("x", D0 + 10, start("a", "")).unwrap();
    store.start_run("y", D0 + 20, start("a", "")).unwrap();
    store.start_run("z", D0 + 30, start("a", "x")).unwrap();
    store.append_log("x", D0 + 40, failing_log(0)).unwrap();
    // Day 1 (a new segment by UTC day).
    store
        .finish_run("x", D0 + DAY + 1, RunFinished::default())
        .unwrap();
    store
        .start_run("y", D0 + DAY + 2, start("dup", ""))
        .unwrap();
    store.start_run("w", D0 + DAY + 3, start("a", "z")).unwrap();
    store.append_log("w", D0 + DAY + 4, failing_log(0)).unwrap();
    store.flush().unwrap();
    store.log().seal().unwrap();
    // Day 2, active.
    store.start_run("v", D0 + 2 * DAY, start("a", "")).unwrap();
    store.flush().unwrap();

    let y = store.get_run("y").unwrap().unwrap();
    assert_eq!((y.skill_id.as_str(), y.started_at), ("a", D0 + 20));
    assert_eq!(store.count_runs(&Filter::default()).unwrap(), 5);
    counts_by_status_agree_with_the_listing(&store);
    assert_eq!(store.get_run("x").unwrap().unwrap().status, "ok");
    assert_eq!(store.parent_chain("w").unwrap().len(), 3);
    // Wait for the indexer thread to write the sealed indexes.
    for _ in 0..200 {
        if idx_files(&path).len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        idx_files(&path).len(),
        2,
        "seal hook indexed both sealed segments"
    );

    let rep = store.purge_older_than(D0 + DAY).unwrap();
    assert_eq!(rep.dropped.len(), 1);
    assert_eq!(
        idx_files(&path).len(),
        1,
        "the dropped segment's index is gone"
    );
    // x (finished after the cutoff), y and z (still running) started in
    // the dropped segment: carried forward, each exactly as it was, its
    // logs too (docs/queries.md, "Retention").
    let x = store.get_run("x").unwrap().unwrap();
    assert_eq!(
        (x.status.as_str(), x.finished_at),
        ("ok", Some(D0 + DAY + 1))
    );
    assert_eq!(store.list_logs("x").unwrap().len(), 1);
    let z = store.get_run("z").unwrap().unwrap();
    assert_eq!((z.status.as_str(), z.started_at), ("running", D0 + 30));
    let y = store.get_run("y").unwrap().unwrap();
    assert_eq!((y.skill_id.as_str(), y.started_at), ("a", D0 + 20));
    let ids: Vec<String> = store
        .list_runs(&Filter::default(), Page::all())
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["v", "w", "z", "y", "x"]);
    let chain: Vec<String> = store
        .parent_chain("w")
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(chain, ["w", "z", "x"]);
    let errs = store.tool_errors(None, None).unwrap();
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].count, errs[0].run_ids.clone()),
        (2, vec!["w".to_string(), "x".to_string()])
    );
    counts_by_status_agree_with_the_listing(&store);
    // A second purge at the same cutoff drops nothing more.
    assert!(store.purge_older_than(D0 + DAY).unwrap().dropped.is_empty());
    store.close().unwrap();

    // The read-only engine agrees, from the files.
    let mut eng = Engine::open(&path).unwrap();
    assert_eq!(eng.count(&Filter::default()).unwrap(), 5);
    assert_eq!(eng.stats.rebuilt, 0, "{:?}", eng.stats);
}

#[test]
fn store_guard_notfound_allowlist_fire_and_forget() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(tmp.path().join("log"));
    cfg.log.durability = Durability::Never;
    cfg.allow_skills = Some(["web".to_string()].into_iter().collect());
    cfg.allow_event_types = Some(["tool_call".to_string()].into_iter().collect());
    let store = AuditStore::open(cfg.clone()).unwrap();

    let mut g = store.guard("g1", start("web", ""));
    g.add_tokens(10, 5, 1);
    g.add_tokens(1, 1, 0);
    g.log(
        "tool_call",
        Json::parse(r#"{"tool":"t","status":"ok"}"#).unwrap(),
    );
    g.log("message", Json::parse("null").unwrap()); // not in the allowlist
    g.complete("ok", "done", "").unwrap();
    {
        let _g2 = store.guard("g2", start("web", "g1"));
    }
    let skipped = store.guard("s1", start("other", ""));
    drop(skipped);
    store.flush().unwrap();

    let r = store.get_run("g1").unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.output.as_str()), ("ok", "done"));
    assert_eq!(
        (
            r.input_tokens,
            r.output_tokens,
            r.thinking_tokens,
            r.tool_calls
        ),
        (11, 6, 1, 1)
    );
    assert!(r.runtime_seconds >= 0.0 && r.finished_at.is_some());
    assert_eq!(store.list_logs("g1").unwrap().len(), 1);
    assert_eq!(store.get_run("g2").unwrap().unwrap().status, "cancelled");
    assert!(store.get_run("s1").unwrap().is_none(), "skill not allowed");
    assert_eq!(store.counters().skipped, 3, "{:?}", store.counters());
    assert_eq!(store.children("g1", false).unwrap().len(), 1);
    assert_eq!(store.count_by_skill("web", false).unwrap(), 2);
    assert_eq!(store.list_runs_by_skill("web", false).unwrap().len(), 2);
    assert_eq!(
        store
            .list_runs_by_skill_page("web", Page::new(1, 1), false)
            .unwrap()[0]
            .id,
        "g1"
    );
    assert_eq!(
        store.list_runs_by_caller("u-1", Page::all()).unwrap().len(),
        2
    );
    let last = store
        .last_run_per_skill(&["web".into(), "none".into()], false)
        .unwrap();
    assert!(last[0].1.is_some() && last[1].1.is_none());
    assert_eq!(store.finished_runs_before(Micros::MAX).unwrap().len(), 2);

    // Finishing an unknown run is a typed NotFound, and nothing is written.
    let before = store.counters().appended;
    let e = store
        .finish_run("nope", 5, RunFinished::default())
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    assert_eq!(store.counters().appended, before);
    assert!(matches!(
        store.parent_chain("nope"),
        Err(Error::NotFound(_))
    ));
    store.close().unwrap();

    // Fire and forget: the failure is counted, not returned.
    let mut cfg = cfg;
    cfg.fire_and_forget = true;
    let store = AuditStore::open(cfg).unwrap();
    store.finish_run("nope", 5, RunFinished::default()).unwrap();
    assert_eq!(store.counters().failures, 1);
    let c = store.counters();
    assert!(c.durable_lsn <= store.log().head().next_lsn && c.queue_depth <= 1);
}

#[test]
fn active_segment_prefix_index_is_stored_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    let add = |from: i64, n: i64| {
        let mut evs = Vec::new();
        for i in from..from + n {
            let id = format!("a-{i:06}");
            let t = D0 + i * 1_000;
            evs.push(Event::run_started(
                id.clone(),
                t,
                start(["a", "b", "c"][i as usize % 3], ""),
            ));
            evs.push(Event::run_log(id.clone(), t + 1, failing_log(0)));
            if i % 7 != 0 {
                evs.push(Event::run_finished(id, t + 2, RunFinished::default()));
            }
        }
        log.append_batch(&evs).unwrap().wait().unwrap();
    };
    add(0, 8000);
    let seg = log.reader().segments()[0].path.clone();
    let aidx = seg.with_extension("aidx");
    let fresh = |p: &Path| {
        let mut e = Engine::open(p).unwrap();
        e.persist = false;
        let a = answers_active(&mut e);
        (a, e.stats)
    };
    // First engine indexes the whole active segment and stores its prefix.
    let mut e1 = Engine::open(&path).unwrap();
    let a1 = answers_active(&mut e1);
    assert!(aidx.exists(), "prefix index stored: {:?}", e1.stats);
    // A second one loads it and indexes nothing new.
    let mut e2 = Engine::open(&path).unwrap();
    assert_eq!(answers_active(&mut e2), a1);
    assert_eq!(
        (e2.stats.loaded, e2.stats.chunks_built),
        (1, 0),
        "{:?}",
        e2.stats
    );
    // More events: the stored prefix plus the tail answer like a full rebuild.
    add(8000, 500);
    let mut e3 = Engine::open(&path).unwrap();
    let a3 = answers_active(&mut e3);
    assert_eq!(
        (e3.stats.loaded, e3.stats.chunks_built),
        (1, 1),
        "{:?}",
        e3.stats
    );
    fs::rename(&aidx, tmp.path().join("saved.aidx")).unwrap();
    let (full, st) = fresh(&path);
    assert_eq!(st.loaded, 0);
    assert_eq!(a3, full);
    // A corrupt prefix index is dropped and the answer stays right.
    let mut b = fs::read(tmp.path().join("saved.aidx")).unwrap();
    let at = HEADER_LEN + 16 * S_RUNS;
    let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    b[off + 70] ^= 0x01;
    fs::write(&aidx, b).unwrap();
    let mut e4 = Engine::open(&path).unwrap();
    assert_eq!(answers_active(&mut e4), full);
    drop(log);
}

fn answers_active(eng: &mut Engine) -> String {
    let mut s = String::new();
    for r in eng.list(&Filter::default(), Page::all()).unwrap() {
        s.push_str(&r.to_json());
    }
    for st in ["running", "ok"] {
        let f = Filter {
            status: Some(st.into()),
            skill: Some("b".into()),
            ..Filter::default()
        };
        s.push_str(&eng.count(&f).unwrap().to_string());
    }
    for g in eng.errors(None, None, false).unwrap() {
        s.push_str(&g.to_json());
    }
    let (r, logs) = eng.run_with_logs("a-000007").unwrap().unwrap();
    s.push_str(&r.to_json_with_logs(&logs));
    s
}

/// The indexer builds sealed segments' images outside the engine's lock;
/// queries asked meanwhile get the same answers, and wait for an image
/// being built rather than build it a second time.
#[test]
fn indexing_outside_the_lock_builds_each_segment_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build_log(tmp.path());
    let expected = {
        let mut eng = Engine::open(&path).unwrap();
        eng.persist = false;
        answers(&mut eng)
    };
    assert!(idx_files(&path).is_empty());
    for round in 0..6 {
        for f in idx_files(&path) {
            fs::remove_file(f).unwrap();
        }
        let eng = std::sync::Mutex::new(Engine::open(&path).unwrap());
        std::thread::scope(|s| {
            let h = s.spawn(|| Engine::index_sealed(&eng).unwrap());
            // Vary who comes first: the indexer, the query, or both at once.
            std::thread::sleep(std::time::Duration::from_millis(round * 2));
            assert_eq!(answers(&mut eng.lock().unwrap()), expected, "round {round}");
            h.join().unwrap();
        });
        let mut e = eng.into_inner().unwrap();
        assert_eq!(answers(&mut e), expected, "round {round}");
        assert_eq!(e.stats.rebuilt, 8, "round {round}: {:?}", e.stats);
        assert_eq!(idx_files(&path).len(), 8);
    }
}

/// Logs in later segments than their run's start (a run that spans a
/// roll, a log replaced after a seal), and logs of a run never started:
/// since index format 8 each sealed image's run-id filter holds the ids of
/// its LOGS, and `logs` asks it before searching; every log is still found,
/// by a live engine and by one reopened over the stored images.
#[test]
fn logs_in_later_segments_than_their_start_are_found_through_the_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let mut cfg = Config::new(&path);
    cfg.durability = Durability::Never;
    let log = Log::open(cfg).unwrap();
    let note = |seq: u64, text: &str| RunLog {
        seq,
        event_type: "note".into(),
        payload: Json::parse(format!("{{\"text\":\"{text}\"}}")).unwrap(),
    };
    // Segment 1: the starts, the first log of each.
    let mut evs = Vec::new();
    for i in 0..50 {
        let id = format!("s-{i:02}");
        evs.push(Event::run_started(id.clone(), D0 + i, start("a", "")));
        evs.push(Event::run_log(id, D0 + i, note(0, "first")));
    }
    log.append_batch(&evs).unwrap().wait().unwrap();
    log.seal().unwrap();
    // Segment 2: a second log of the even runs, and an orphan's log.
    let mut evs = Vec::new();
    for i in (0..50).step_by(2) {
        evs.push(Event::run_log(
            format!("s-{i:02}"),
            D0 + 100 + i,
            note(1, "second"),
        ));
    }
    evs.push(Event::run_log("orphan", D0 + 200, note(0, "no start")));
    log.append_batch(&evs).unwrap().wait().unwrap();
    log.seal().unwrap();
    // Segment 3 (sealed) and the active segment: a third log of s-04,
    // then a fourth still in the active segment.
    log.append_batch(&[Event::run_log("s-04", D0 + 300, note(2, "third"))])
        .unwrap()
        .wait()
        .unwrap();
    log.seal().unwrap();
    log.append_batch(&[Event::run_log("s-04", D0 + 400, note(3, "fourth"))])
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();

    let want = |id: &str| -> Vec<u64> {
        let i: u64 = id[2..].parse().unwrap();
        match i {
            4 => vec![0, 1, 2, 3],
            _ if i.is_multiple_of(2) => vec![0, 1],
            _ => vec![0],
        }
    };
    for round in ["fresh build", "stored images"] {
        let mut eng = Engine::open(&path).unwrap();
        for i in 0..50 {
            let id = format!("s-{i:02}");
            let (_, logs) = eng.run_with_logs(&id).unwrap().unwrap();
            let seqs: Vec<u64> = logs.iter().map(|l| l.seq).collect();
            assert_eq!(seqs, want(&id), "{round}: {id}");
        }
        // An orphan's logs are not shown; an unknown id has none.
        assert!(eng.logs("orphan").unwrap().is_empty(), "{round}");
        assert!(eng.run_with_logs("absent").unwrap().is_none(), "{round}");
    }
    assert!(idx_files(&path).len() >= 3, "the sealed images are stored");
}
