//! The core log: round trips, rotation, recovery, corruption, concurrency,
//! the writer lock, queue policies, retention.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auditlog::event::json::{event_to_json, parse_event};
use auditlog::internals::layout::list_segment_files;
use auditlog::internals::segment::HEADER_SIZE;
use auditlog::{
    verify, Config, Durability, Error, Event, FullPolicy, Json, Log, LogReader, ReplayRange,
    RunFinished, RunLog, RunStarted,
};

const DAY: i64 = 86_400_000_000;
/// 2026-11-23T00:00:00Z
const T0: i64 = 1_795_392_000_000_000;

fn started(id: &str, ts: i64) -> Event {
    Event::run_started(
        id,
        ts,
        RunStarted {
            skill_id: "web.search".into(),
            caller_id: "u-1".into(),
            channel_id: "c-1".into(),
            inputs: Json::parse(r#"{"q":"x","nested":{"deep":[1,2,{"z":null}]}}"#).unwrap(),
            ..RunStarted::default()
        },
    )
}

fn logline(id: &str, ts: i64, seq: u64) -> Event {
    Event::run_log(
        id,
        ts,
        RunLog {
            seq,
            event_type: "tool_call".into(),
            payload: Json::parse(r#"{"tool":"http.get","status":"error","error_type":"timeout"}"#)
                .unwrap(),
        },
    )
}

fn finished(id: &str, ts: i64) -> Event {
    Event::run_finished(
        id,
        ts,
        RunFinished {
            status: "error".into(),
            error: "upstream timeout".into(),
            tool_calls: 1,
            runtime_seconds: 1.5,
            ..RunFinished::default()
        },
    )
}

fn all(dir: &Path) -> Vec<(u64, Event)> {
    LogReader::open(dir)
        .expect("reader opens")
        .replay(ReplayRange::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("replay succeeds")
}

fn open(dir: &Path) -> Log {
    Log::open(Config::new(dir)).expect("log opens")
}

fn segment_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    list_segment_files(dir)
        .expect("list")
        .into_iter()
        .map(|(_, _, n)| dir.join(n))
        .collect()
}

#[test]
fn every_kind_round_trips_json_to_log_to_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let lines = [
        r#"{"kind":"run_started","run_id":"r-1","ts":1763884800000000,"skill_id":"web.search","caller_id":"u-42","channel_id":"sess-7","parent_run_id":"","inputs":{"q":"x","z":{"k":[1,2.50,"a"]}},"dry_run":false,"vendor":{"x":1}}"#,
        r#"{"kind":"run_log","run_id":"r-1","ts":"2025-11-23T09:00:00.0001+01:00","seq":0,"event_type":"tool_call","payload":{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000,"args_summary":"GET example.org","result_bytes":0}}"#,
        r#"{"kind":"run_finished","run_id":"r-1","ts":1763884801500000,"status":"error","output":"","error":"upstream timeout","tool_calls":1,"runtime_seconds":1.5,"input_tokens":120,"output_tokens":0,"thinking_tokens":0}"#,
    ];
    let events: Vec<Event> = lines
        .iter()
        .map(|l| parse_event(l.as_bytes()).unwrap())
        .collect();
    {
        let log = open(&dir);
        for ev in &events {
            let _ = log.append(ev).unwrap().wait().unwrap();
        }
        log.close().unwrap();
    }
    let back = all(&dir);
    assert_eq!(back.len(), 3);
    for (i, (lsn, ev)) in back.iter().enumerate() {
        assert_eq!(*lsn, i as u64);
        assert_eq!(ev, &events[i]);
    }
    let out = event_to_json(&back[0].1, Some(0));
    assert!(
        out.contains(r#""ts":"2025-11-23T08:00:00.000000Z""#),
        "{out}"
    );
    assert!(
        out.contains(r#""inputs":{"q":"x","z":{"k":[1,2.50,"a"]}}"#),
        "{out}"
    );
    assert!(out.contains(r#""vendor":{"x":1}"#), "{out}");
    let out = event_to_json(&back[1].1, Some(1));
    assert!(
        out.contains(r#""ts":"2025-11-23T08:00:00.000100Z""#),
        "{out}"
    );
}

#[test]
fn rolls_at_a_utc_day_boundary_and_at_the_size_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut cfg = Config::new(&dir);
    cfg.segment_max_bytes = 64 * 1024;
    let log = Log::open(cfg).unwrap();
    // Day 1: enough events to pass the 64 KiB cap more than once.
    let mut n = 0;
    for i in 0..1500 {
        let _ = log
            .append(&started(&format!("a{i}"), T0 + i * 1000))
            .unwrap();
        n += 1;
    }
    // Day 2 (one µs past midnight) and a late event from day 1.
    let _ = log.append(&started("b0", T0 + DAY)).unwrap();
    let _ = log.append(&started("late", T0 + 5)).unwrap();
    let _ = log
        .append(&started("b1", T0 + DAY + 1))
        .unwrap()
        .wait()
        .unwrap();
    n += 3;
    log.close().unwrap();
    let files = list_segment_files(&dir).unwrap();
    let days: Vec<u32> = files.iter().map(|f| f.0).collect();
    assert!(
        files.len() >= 4,
        "size cap rolled day 1 more than once: {files:?}"
    );
    assert_eq!(*days.last().unwrap(), 20261124);
    assert_eq!(days.iter().filter(|&&d| d == 20261124).count(), 1);
    for p in segment_paths(&dir) {
        assert!(
            fs::metadata(&p).unwrap().len() <= 64 * 1024 + 1024,
            "{p:?} over the cap"
        );
    }
    let back = all(&dir);
    assert_eq!(back.len(), n);
    assert_eq!(
        back.iter().map(|x| x.0).collect::<Vec<_>>(),
        (0..n as u64).collect::<Vec<_>>()
    );
    // The late day-1 event went into the day-2 segment, after b0.
    assert_eq!(back[n - 2].1.run_id, "late");
    verify(&dir, None, |_, _| {}).expect("verifies");
}

#[test]
fn a_torn_tail_recovers_to_the_previous_record_at_every_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    {
        let log = open(&base);
        let _ = log.append(&started("keep-1", T0)).unwrap().wait().unwrap();
        let _ = log
            .append(&started("keep-2", T0 + 1))
            .unwrap()
            .wait()
            .unwrap();
        log.close().unwrap();
    }
    let seg = segment_paths(&base).pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();
    {
        let log = open(&base);
        let _ = log
            .append(&logline("lost", T0 + 2, 0))
            .unwrap()
            .wait()
            .unwrap();
        log.close().unwrap();
    }
    let full = fs::read(&seg).unwrap();
    assert!(full.len() as u64 > good_len);
    for cut in good_len..full.len() as u64 {
        let dir = tmp.path().join(format!("cut{cut}"));
        fs::create_dir(&dir).unwrap();
        fs::copy(base.join("MANIFEST"), dir.join("MANIFEST")).unwrap();
        let name = seg.file_name().unwrap();
        fs::write(dir.join(name), &full[..cut as usize]).unwrap();
        let log = open(&dir);
        let r = log.recovery().clone();
        assert_eq!(r.truncated_bytes(), cut - good_len, "cut at {cut}");
        if let Some(c) = &r.cut {
            // Cut only at the torn tail, into quarantine, byte for byte.
            assert_eq!(c.valid_end, good_len, "cut at {cut}");
            let q = fs::read(dir.join(&c.quarantine)).unwrap();
            assert_eq!(q, &full[good_len as usize..cut as usize], "cut at {cut}");
            // The lost event's LSN (2) is never given out again (nor a
            // second one, when a few bytes of a frame after it survived).
            assert_eq!(c.skip_from_lsn, 2, "cut at {cut}");
            assert!(
                c.skip_to_lsn == 3 || c.skip_to_lsn == 4,
                "cut at {cut}: {c:?}"
            );
        }
        let record_lsn = r.cut.as_ref().map(|c| c.skip_to_lsn);
        // The log takes new events after recovery.
        let lsns = log
            .append(&started("after", T0 + 3))
            .unwrap()
            .wait()
            .unwrap();
        if let Some(at) = record_lsn {
            assert_eq!(lsns.first, at + 1, "after the skipped LSNs and the record");
        }
        log.close().unwrap();
        let all = all(&dir);
        let ids: Vec<String> = all
            .iter()
            .filter(|(_, e)| !e.is_system())
            .map(|(_, e)| e.run_id.clone())
            .collect();
        assert_eq!(ids, ["keep-1", "keep-2", "after"], "cut at {cut}");
        let cuts = all.iter().filter(|(_, e)| e.is_system()).count();
        assert_eq!(cuts, usize::from(cut > good_len), "the cut is recorded");
        verify(&dir, None, |_, _| {}).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}

fn two_sealed_segments(dir: &Path) {
    let log = open(dir);
    for i in 0..50 {
        let _ = log.append(&started(&format!("s{i}"), T0 + i)).unwrap();
    }
    log.seal().unwrap();
    for i in 0..50 {
        let _ = log
            .append(&started(&format!("t{i}"), T0 + 100 + i))
            .unwrap();
    }
    log.seal().unwrap();
    let _ = log
        .append(&started("active", T0 + 1000))
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_reported_with_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    two_sealed_segments(&dir);
    let first = segment_paths(&dir)[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    let at = HEADER_SIZE + 300;
    bytes[at] ^= 0x10;
    fs::write(&first, &bytes).unwrap();
    match verify(&dir, None, |_, _| {}) {
        Err(Error::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            assert_eq!(segment, first.file_name().unwrap().to_str().unwrap());
            assert!(
                offset as usize <= at && at < offset as usize + 400,
                "offset {offset} near {at}"
            );
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Open trusts footers (no full re-read), but reading the damaged part
    // reports it instead of skipping it.
    let err = LogReader::open(&dir)
        .unwrap()
        .replay(ReplayRange::default())
        .find_map(|r| r.err())
        .expect("replay reports the damage");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn edited_removed_and_reordered_records_fail_verify_through_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    {
        let log = open(&src);
        for i in 0..3 {
            let _ = log
                .append_batch(&[
                    started(&format!("a{i}"), T0 + i),
                    started(&format!("b{i}"), T0 + i),
                ])
                .unwrap();
        }
        log.seal().unwrap();
        log.close().unwrap();
    }
    let seg = segment_paths(&src)[0].clone();
    let bytes = fs::read(&seg).unwrap();
    // Frame boundaries of the first block: two events then a commit.
    let frames = frame_spans(&bytes);
    let (e0, e1) = (frames[0].clone(), frames[1].clone());
    let rebuild = |body: Vec<u8>| {
        let dir = tmp.path().join(format!("t{}", fastrand::u64(..)));
        fs::create_dir(&dir).unwrap();
        fs::copy(src.join("MANIFEST"), dir.join("MANIFEST")).unwrap();
        fs::write(dir.join(seg.file_name().unwrap()), body).unwrap();
        verify(&dir, None, |_, _| {})
    };
    // Reordered: swap the first two event frames (each keeps a valid CRC).
    let mut swapped = bytes[..e0.start].to_vec();
    swapped.extend_from_slice(&bytes[e1.clone()]);
    swapped.extend_from_slice(&bytes[e0.clone()]);
    swapped.extend_from_slice(&bytes[e1.end..]);
    let err = rebuild(swapped).unwrap_err();
    assert!(err.to_string().contains("chain digest mismatch"), "{err}");
    // Removed: drop the first event frame.
    let mut removed = bytes[..e0.start].to_vec();
    removed.extend_from_slice(&bytes[e1.start..]);
    // (The segment is sealed: the shorter file also moves its trailer, so
    // the footer check may be the first to notice.)
    let err = rebuild(removed).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // Edited with a recomputed CRC: re-frame a changed event body.
    let mut edited = bytes[..e0.start].to_vec();
    let body = &bytes[e0.start + 9..e0.end];
    let mut ev = auditlog::internals::codec::decode_event(body).unwrap();
    ev.run_id = "z0".into(); // same length: the footer stays in place
    let mut payload = Vec::new();
    auditlog::internals::codec::encode_event(&ev, &mut payload).unwrap();
    auditlog::internals::frame::write_frame(
        &mut edited,
        auditlog::internals::frame::REC_EVENT,
        &payload,
    );
    edited.extend_from_slice(&bytes[e0.end..]);
    let err = rebuild(edited).unwrap_err();
    assert!(err.to_string().contains("chain digest mismatch"), "{err}");
}

fn frame_spans(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut pos = HEADER_SIZE;
    while let Ok(f) = auditlog::internals::frame::read_frame(&bytes[pos..]) {
        out.push(pos..pos + f.size);
        pos += f.size;
    }
    out
}

#[test]
fn sixteen_producers_lose_and_duplicate_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Arc::new(open(&dir));
    let per = 500;
    std::thread::scope(|s| {
        for p in 0..16 {
            let log = log.clone();
            s.spawn(move || {
                let mut receipts = Vec::new();
                for i in 0..per {
                    let ev = logline(&format!("p{p}-{i}"), T0 + i as i64, i);
                    receipts.push(log.append(&ev).unwrap());
                }
                let mut last = None;
                for r in receipts {
                    let lsns = r.wait().unwrap();
                    // One producer's appends keep their order.
                    assert!(last.is_none_or(|l| lsns.first > l));
                    last = Some(lsns.last);
                }
            });
        }
    });
    Arc::try_unwrap(log).ok().unwrap().close().unwrap();
    let back = all(&dir);
    assert_eq!(back.len(), 16 * per as usize);
    let ids: HashSet<String> = back.iter().map(|(_, e)| e.run_id.clone()).collect();
    assert_eq!(ids.len(), 16 * per as usize, "no duplicates");
    let lsns: Vec<u64> = back.iter().map(|x| x.0).collect();
    assert_eq!(lsns, (0..16 * per).collect::<Vec<_>>(), "dense LSNs");
}

#[test]
fn a_second_writer_is_refused_and_readers_work_beside_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open(&dir);
    let _ = log.append(&started("r", T0)).unwrap().wait().unwrap();
    match Log::open(Config::new(&dir)) {
        Err(Error::Locked { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()), "{holder}")
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("second writer was let in"),
    }
    assert_eq!(
        all(&dir).len(),
        1,
        "a read-only reader sees the committed prefix"
    );
    log.close().unwrap();
    open(&dir).close().unwrap();
}

/// The writer's lock and the export lock are released when their holders
/// go, even while a child forked elsewhere in the process still shares
/// their files (see `support::with_a_child_sharing_our_files`).
#[test]
fn a_forked_child_does_not_keep_the_log_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open(&dir);
    let _ = log.append(&started("r", T0)).unwrap().wait().unwrap();
    let export = auditlog::exported::try_lock(&dir).unwrap().expect("free");
    let (reopened, export_again) = crate::support::with_a_child_sharing_our_files(|| {
        log.close().unwrap();
        drop(export);
        (
            Log::open(Config::new(&dir)),
            auditlog::exported::try_lock(&dir),
        )
    });
    let reopened = reopened.expect("reopened beside a forked child");
    assert!(
        export_again.unwrap().is_some(),
        "export lock taken again beside a forked child"
    );
    assert_eq!(all(&dir).len(), 1);
    reopened.close().unwrap();
}

#[test]
fn full_queue_policies_behave_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    for policy in [
        FullPolicy::FailFast,
        FullPolicy::DropAndCount,
        FullPolicy::Block,
    ] {
        let dir = tmp.path().join(format!("{policy:?}"));
        let mut cfg = Config::new(&dir);
        cfg.queue_capacity = 1;
        cfg.on_full = policy;
        let log = Log::open(cfg).unwrap();
        let mut full = 0;
        let mut dropped = 0;
        let mut receipts = Vec::new();
        for i in 0..2000 {
            match log.append(&started(&format!("q{i}"), T0)) {
                Ok(r) if r.is_dropped() => {
                    dropped += 1;
                    assert!(matches!(r.wait(), Err(Error::Dropped)));
                }
                Ok(r) => receipts.push(r),
                Err(Error::QueueFull { capacity: 1, .. }) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        let stored = receipts.len();
        for r in receipts {
            r.wait().unwrap();
        }
        let c = log.counters();
        log.close().unwrap();
        assert_eq!(all(&dir).len(), stored);
        match policy {
            FullPolicy::FailFast => {
                assert!(full > 0 && dropped == 0, "fail-fast saw a full queue");
                assert_eq!(c.rejected, full);
            }
            FullPolicy::DropAndCount => {
                assert!(dropped > 0 && full == 0);
                assert_eq!(c.dropped, dropped);
            }
            FullPolicy::Block => assert_eq!((stored, full, dropped), (2000, 0, 0)),
        }
        assert_eq!(c.appended as usize, stored);
    }
}

#[test]
fn retention_drops_exactly_the_expired_sealed_segments_and_verify_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open(&dir);
    for d in 0..5 {
        for i in 0..20 {
            let _ = log
                .append(&started(&format!("d{d}-{i}"), T0 + d * DAY + i))
                .unwrap();
        }
    }
    log.flush().unwrap();
    let head = log.head();
    // Days 0-4 each got a segment; day 4's is the active one. Cut at day 2
    // + 10 µs: days 0 and 1 expire; day 2 holds newer events and stays.
    let r = log.retain(T0 + 2 * DAY + 10).unwrap();
    assert_eq!(r.dropped.len(), 2, "{r:?}");
    assert_eq!(r.events(), 40);
    assert_eq!(r.first_kept_lsn, 40);
    // Retention never drops the active segment, even when all is old.
    let r2 = log.retain(T0 + 100 * DAY).unwrap();
    assert_eq!(r2.dropped.len(), 2);
    let _ = log
        .append(&started("new", T0 + 5 * DAY))
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();
    let back = all(&dir);
    assert_eq!(back.first().unwrap().0, 80);
    // The 20 kept events, the new one, and a retention record per pass,
    // chained in the log with what each dropped.
    assert_eq!(back.len(), 23);
    let records: Vec<_> = back
        .iter()
        .filter_map(|(_, e)| match e.data.system() {
            Some(auditlog::system::SystemRecord::Retention(r)) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].dropped.len(), 2);
    assert_eq!(records[0].anchor_first_lsn, 40);
    assert_eq!(records[1].anchor_first_lsn, 80);
    assert_eq!(records[1].total_dropped_events, 80);
    let rep = verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(rep.first_lsn, 80);
    assert_eq!(rep.head_lsn, head.next_lsn + 3);
    assert_eq!(rep.retentions, 2);
    assert_eq!(list_segment_files(&dir).unwrap().len(), 2);
}

#[test]
fn durability_policies_complete_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, d) in [
        Durability::EveryBatch,
        Durability::Never,
        Durability::Interval(Duration::from_millis(5)),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("d{i}"));
        let mut cfg = Config::new(&dir);
        cfg.durability = d;
        let log = Log::open(cfg).unwrap();
        let r = log.append(&finished("x", T0)).unwrap();
        let lsns = r
            .wait_timeout(Duration::from_secs(10))
            .expect("completes")
            .unwrap();
        assert_eq!((lsns.first, lsns.last), (0, 0));
        assert_eq!(log.flush().unwrap(), 1);
        log.close().unwrap();
    }
}

/// Every receipt of many small group commits completes once, with its own
/// LSN: hundreds of blocks, each fdatasynced, filled by three threads at
/// once. A receipt completed twice, with another's LSN, or never, shows
/// here; so would a reuse of the writer's receipt lists that kept or lost
/// one (tried in the dur37 round, docs/benchmarks.md; not merged).
#[test]
fn receipts_of_many_synced_blocks_each_complete_with_their_own_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(tmp.path().join("log"));
    cfg.durability = Durability::EveryBatch;
    // A few events per block: hundreds of fdatasyncs, lists reused often.
    cfg.max_batch_bytes = 4096;
    let log = Log::open(cfg).unwrap();
    let per_thread = 1500u64;
    let mut lsns: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3u64)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let receipts: Vec<_> = (0..per_thread)
                        .map(|i| {
                            let id = format!("r{t}-{i}");
                            log.append(&started(&id, T0 + i as i64)).unwrap()
                        })
                        .collect();
                    receipts
                        .iter()
                        .map(|r| {
                            let got = r
                                .wait_timeout(Duration::from_secs(30))
                                .expect("completes")
                                .unwrap();
                            assert_eq!(got.first, got.last);
                            got.first
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    lsns.sort_unstable();
    let want: Vec<u64> = (0..3 * per_thread).collect();
    assert_eq!(lsns, want);
    assert_eq!(log.flush().unwrap(), 3 * per_thread);
    log.close().unwrap();
}

#[test]
fn corruption_in_the_middle_of_the_active_segment_is_not_cut_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut cfg = Config::new(&dir);
    cfg.max_batch_bytes = 4096;
    {
        let log = Log::open(cfg.clone()).unwrap();
        // Over 1 MiB of whole blocks after the damage.
        for i in 0..20_000 {
            let _ = log.append(&started(&format!("m{i}"), T0 + i)).unwrap();
        }
        log.flush().unwrap();
        log.close().unwrap();
    }
    let seg = segment_paths(&dir).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[HEADER_SIZE + 100] ^= 0xff;
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all(&bytes).unwrap();
    drop(f);
    match Log::open(cfg) {
        Err(Error::Corrupt {
            segment, offset, ..
        }) => {
            assert_eq!(segment, seg.file_name().unwrap().to_str().unwrap());
            assert!(offset < 400);
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(l) => panic!(
            "a damaged active segment was silently cut: {:?}",
            l.recovery()
        ),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "nothing was changed on disk"
    );
}

/// docs/format.md's worked example of the event encoding.
#[test]
fn the_documented_encoding_example_holds() {
    let ev = Event::run_started("r-1", 1_763_884_800_000_000, RunStarted::default());
    let mut out = Vec::new();
    auditlog::internals::codec::encode_event(&ev, &mut out).unwrap();
    assert_eq!(
        &out[..13],
        &[0x03, 0x72, 0x2d, 0x31, 0xfd, 0x00, 0x80, 0xdb, 0xdd, 0x7c, 0x88, 0x0c, 0x00]
    );
    // Then the variant index (0 = RunStarted) and its fields.
    assert_eq!(out[13], 0);
}

#[test]
fn a_read_only_reader_follows_a_writer_across_commits_and_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open(&dir);
    log.append(&started("first", T0)).unwrap().wait().unwrap();
    let mut reader = LogReader::open(&dir).unwrap();
    assert_eq!(reader.head().next_lsn, 1);
    // Growth of the active segment: read incrementally.
    log.append(&started("second", T0 + 1))
        .unwrap()
        .wait()
        .unwrap();
    let head = reader.wait_beyond(1, Duration::from_secs(5)).unwrap();
    assert_eq!(head.next_lsn, 2);
    // A roll to a new day's segment: read by a full refresh.
    log.append(&started("third", T0 + DAY))
        .unwrap()
        .wait()
        .unwrap();
    let head = reader.wait_beyond(2, Duration::from_secs(5)).unwrap();
    assert_eq!(head.next_lsn, 3);
    assert_eq!(head, log.head());
    let ids: Vec<String> = reader
        .replay(ReplayRange {
            from_lsn: Some(1),
            ..ReplayRange::default()
        })
        .map(|r| r.unwrap().1.run_id)
        .collect();
    assert_eq!(ids, ["second", "third"]);
    log.close().unwrap();
}

#[test]
fn an_empty_active_segment_left_by_a_crash_is_replaced_not_stranded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    {
        let log = open(&dir);
        log.append(&started("a", T0)).unwrap().wait().unwrap();
        log.seal().unwrap();
        log.close().unwrap();
    }
    // A crash right after the next segment was created: header only.
    let first = segment_paths(&dir)[0].clone();
    let header = fs::read(&first).unwrap()[..HEADER_SIZE].to_vec();
    let mut h = auditlog::internals::segment::Header::decode(&header).unwrap();
    let sealed = LogReader::open(&dir).unwrap().segments()[0].clone();
    h.seq = 2;
    h.first_lsn = 1;
    h.prev_digest = sealed.digest;
    fs::write(
        dir.join(auditlog::internals::segment::file_name(h.day, 2)),
        h.encode(),
    )
    .unwrap();
    {
        let log = open(&dir);
        // The next event belongs to a later day than that empty segment.
        log.append(&started("b", T0 + DAY)).unwrap().wait().unwrap();
        log.close().unwrap();
    }
    let files: Vec<(u32, u64)> = list_segment_files(&dir)
        .unwrap()
        .into_iter()
        .map(|f| (f.0, f.1))
        .collect();
    assert_eq!(files, [(20261123, 1), (20261124, 2)]);
    verify(&dir, None, |_, _| {}).unwrap();
    let ids: Vec<String> = all(&dir).into_iter().map(|(_, e)| e.run_id).collect();
    assert_eq!(ids, ["a", "b"]);
}

/// A segment written by a build with another format version is reported
/// as such (not as corruption) by every way in, and never touched: not
/// even an events-less one, which a crash could also have left.
#[test]
fn a_segment_of_another_format_version_is_unsupported_and_left_alone() {
    use auditlog::internals::segment::{Header, FORMAT_VERSION};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    {
        let log = open(&dir);
        log.append(&started("a", T0)).unwrap().wait().unwrap();
        log.seal().unwrap();
        log.close().unwrap();
    }
    let first = segment_paths(&dir)[0].clone();
    let bytes = fs::read(&first).unwrap();
    let mut h = Header::decode(&bytes[..HEADER_SIZE]).unwrap();
    let sealed = LogReader::open(&dir).unwrap().segments()[0].clone();
    // A newer build's segment, header only (it holds no event yet).
    h.version = FORMAT_VERSION + 1;
    h.seq = 2;
    h.first_lsn = 1;
    h.prev_digest = sealed.digest;
    let newer = dir.join(auditlog::internals::segment::file_name(h.day, 2));
    fs::write(&newer, h.encode()).unwrap();
    let is_unsupported = |e: Error| match e {
        Error::UnsupportedVersion {
            what,
            found,
            supported,
        } => {
            assert!(what.contains("0000000002"), "{what}");
            assert_eq!(
                (found, supported),
                (u32::from(FORMAT_VERSION) + 1, u32::from(FORMAT_VERSION))
            );
        }
        other => panic!("not UnsupportedVersion: {other:?}"),
    };
    is_unsupported(Log::open(Config::new(&dir)).err().expect("refused"));
    is_unsupported(LogReader::open(&dir).err().expect("refused"));
    is_unsupported(verify(&dir, None, |_, _| {}).expect_err("refused"));
    assert_eq!(fs::read(&newer).unwrap(), h.encode(), "left as it was");
}

/// Stage timing (the load run's `--stages`) accounts for the durable
/// appends it samples (one in eight per thread), including those whose
/// receipts a segment roll completed, and times the rolls themselves.
/// An append is timed before its receipt completes, so the figures read
/// after the last wait hold them all (one CI run, when they were timed
/// after, found 12 of 18).
#[test]
fn stage_timing_accounts_for_the_sampled_appends_and_the_rolls() {
    use auditlog::internals::stages;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open(&dir);
    // Other tests may append while this one runs: counts are lower bounds.
    stages::enable(Duration::ZERO);
    let per_day = 50;
    let mut receipts = Vec::new();
    for d in 0..3i64 {
        for i in 0..per_day {
            let ev = logline(&format!("r{d}-{i}"), T0 + d * DAY + i, i as u64);
            receipts.push(log.append(&ev).unwrap());
        }
    }
    for r in &receipts {
        r.wait().unwrap();
    }
    stages::disable();
    let r = stages::report();
    let n = |name: &str| r.stages.iter().find(|s| s.stage == name).unwrap().n;
    let sampled = receipts.len() as u64 / 8;
    assert!(n("total") >= sampled, "{r:?}");
    assert!(n("fdatasync") >= sampled, "{r:?}");
    assert!(r.slow >= sampled, "a zero threshold counts all: {r:?}");
    assert!(r.rolls >= 2, "two day rolls: {r:?}");
    log.close().unwrap();
    assert_eq!(all(&dir).len(), receipts.len());
}

/// Many threads parked on receipts of the same blocks are all woken: the
/// syncer completes a whole sync's receipts before waking anyone.
#[test]
fn every_parked_waiter_of_a_block_is_woken() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Arc::new(open(&dir));
    std::thread::scope(|s| {
        for p in 0..8 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..200u64 {
                    let ev = logline(&format!("w{p}-{i}"), T0 + i as i64, i);
                    let r = log.append(&ev).unwrap();
                    r.wait_timeout(Duration::from_secs(20))
                        .expect("woken before the timeout")
                        .unwrap();
                }
            });
        }
    });
    Arc::try_unwrap(log).ok().unwrap().close().unwrap();
    assert_eq!(all(&dir).len(), 8 * 200);
}

/// A reader opened while the writer rolls segments never refuses the
/// folder: the MANIFEST it read may predate the roll it then sees on disk
/// (`LogReader::open` looks again when the MANIFEST changed meanwhile).
/// Every acknowledged event is there after a reopen.
#[test]
fn readers_open_the_log_at_any_point_of_a_roll() {
    use crate::support::{config, ev, run_ids, scratch, DAY0, DAY_US};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_t, dir) = scratch();
    let log = Log::open(config(&dir)).unwrap();
    log.append(&ev(0, DAY0)).unwrap().wait().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut opened = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = LogReader::open(&dir).unwrap_or_else(|e| panic!("reader refused: {e}"));
                assert!(r.head().next_lsn >= 1);
                opened += 1;
            }
            opened
        })
    };
    let days = 150;
    for d in 1..=days {
        log.append(&ev(d as u64, DAY0 + d * DAY_US))
            .unwrap()
            .wait()
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let opened = reader.join().unwrap();
    assert!(opened > 0);
    log.close().unwrap();
    let log = Log::open(config(&dir)).unwrap();
    log.close().unwrap();
    verify(&dir, None, |_, _| {}).unwrap();
    assert_eq!(run_ids(&dir).len(), days as usize + 1);
}
