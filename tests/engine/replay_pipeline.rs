//! The pipelined replay (a checking thread, decoding threads, the caller
//! taking chunks back in turn): the same events in the same order as a
//! replay on one thread, no event of a damaged block, every event before
//! the damage, and an early drop that stops its threads.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use auditlog::internals::frame::write_frame;
use auditlog::{Error, Event, Log, LogReader, ReplayRange, ReplayThreads};

use crate::support::forge;
use crate::support::{ev, scratch, DAY0};

/// Events per segment: several decoded chunks each (a chunk is at most
/// 1,024 events).
const PER_SEGMENT: u64 = 2_600;
const SEGMENTS: u64 = 5;

/// A closed log of `SEGMENTS` sealed segments of `PER_SEGMENT` events, in
/// blocks of 100.
fn log_of_segments() -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = scratch();
    let log = Log::open(auditlog::Config::new(&dir)).expect("open");
    let mut n = 0u64;
    for _ in 0..SEGMENTS {
        for _ in 0..PER_SEGMENT / 100 {
            let batch: Vec<Event> = (n..n + 100).map(|i| ev(i, DAY0 + i as i64)).collect();
            log.append_batch(&batch).unwrap().wait().unwrap();
            n += 100;
        }
        log.seal().unwrap();
    }
    log.close().unwrap();
    (t, dir)
}

/// What a replay gave: each event with its block, and its error if it
/// failed.
type Replayed = (Vec<(u64, Option<(u64, u64)>, Event)>, Option<Error>);

/// Everything a replay gives, with each event's block, until it ends or
/// fails; the same as the events it lends (`Replay::next_lent`, read in
/// place on one thread) give, with the same error.
fn replay(dir: &Path, range: ReplayRange, threads: ReplayThreads) -> Replayed {
    let given = replay_given(dir, range, threads);
    let lent = replay_lent(dir, range, threads);
    assert!(
        lent.0 == given.0,
        "{threads:?} {range:?}: next_lent gave other events"
    );
    assert_eq!(
        lent.1.as_ref().map(|e| e.to_string()),
        given.1.as_ref().map(|e| e.to_string()),
        "{threads:?} {range:?}: next_lent failed otherwise"
    );
    given
}

/// [`replay`] through `Replay::next_lent`, each lent event copied out.
fn replay_lent(dir: &Path, range: ReplayRange, threads: ReplayThreads) -> Replayed {
    let reader = LogReader::open(dir).expect("reader");
    let mut r = reader.replay_with(range, threads);
    let mut got = Vec::new();
    while let Some(item) = r.next_lent() {
        match item {
            Ok(item) => {
                let ev = item.event.view().to_event();
                let ev = ev
                    .or_else(|| item.event.owned().cloned())
                    .expect("an event");
                got.push((item.lsn, Some((item.segment, item.block_lsn)), ev));
            }
            Err(e) => {
                assert!(r.next_lent().is_none(), "a replay ends at its first error");
                return (got, Some(e));
            }
        }
    }
    (got, None)
}

fn replay_given(dir: &Path, range: ReplayRange, threads: ReplayThreads) -> Replayed {
    let reader = LogReader::open(dir).expect("reader");
    let mut r = reader.replay_with(range, threads);
    let mut got = Vec::new();
    while let Some(item) = r.next() {
        match item {
            Ok((lsn, e)) => got.push((lsn, r.block_of_last(), e)),
            Err(e) => {
                assert!(r.next().is_none(), "a replay ends at its first error");
                return (got, Some(e));
            }
        }
    }
    (got, None)
}

const PIPED: [ReplayThreads; 4] = [
    ReplayThreads::CheckAhead,
    ReplayThreads::Decoders(1),
    ReplayThreads::Decoders(2),
    ReplayThreads::Decoders(4),
];

#[test]
fn a_pipelined_replay_gives_what_one_thread_gives() {
    let (_t, dir) = log_of_segments();
    let total = SEGMENTS * PER_SEGMENT;
    let ranges = [
        ReplayRange::default(),
        ReplayRange {
            from_lsn: Some(PER_SEGMENT + 777),
            ..ReplayRange::default()
        },
        ReplayRange {
            since: Some(DAY0 + 3_000),
            until: Some(DAY0 + 9_999),
            ..ReplayRange::default()
        },
    ];
    for range in ranges {
        let (one, err) = replay(&dir, range, ReplayThreads::None);
        assert!(err.is_none(), "{err:?}");
        for threads in PIPED.into_iter().chain([ReplayThreads::Auto]) {
            let (piped, err) = replay(&dir, range, threads);
            assert!(err.is_none(), "{threads:?}: {err:?}");
            assert_eq!(piped.len(), one.len(), "{threads:?} {range:?}");
            assert!(piped == one, "{threads:?} {range:?}: other events or order");
        }
    }
    let (all, _) = replay(&dir, ReplayRange::default(), ReplayThreads::Decoders(2));
    assert_eq!(all.len() as u64, total);
    assert!(all
        .iter()
        .zip(0..)
        .all(|((lsn, _, e), i)| *lsn == i && e.run_id == format!("ev-{i}")));
}

/// The frame of the event at `lsn` of segment file `seg` rewritten in
/// place with its run id changed and its CRC made valid again: only the
/// chain can tell.
fn edit_in_place(seg: &Path, run_id: &str) -> usize {
    let mut bytes = std::fs::read(seg).unwrap();
    let (frames, _) = forge::frames(&bytes);
    let f = frames
        .iter()
        .find(|f| {
            f.rec_type == 1
                && f.payload
                    .windows(run_id.len())
                    .any(|w| w == run_id.as_bytes())
        })
        .expect("the event is in this segment");
    let mut payload = f.payload.clone();
    let at = payload
        .windows(run_id.len())
        .position(|w| w == run_id.as_bytes())
        .unwrap();
    payload[at] = b'E';
    let mut frame = Vec::new();
    write_frame(&mut frame, 1, &payload);
    assert_eq!(frame.len(), f.size);
    bytes[f.offset..f.offset + f.size].copy_from_slice(&frame);
    std::fs::write(seg, bytes).unwrap();
    f.offset
}

#[test]
fn a_damaged_block_mid_replay_yields_none_of_its_segment_and_all_before() {
    let (_t, dir) = log_of_segments();
    let (clean, _) = replay(&dir, ReplayRange::default(), ReplayThreads::None);
    // An event in the middle of the third segment.
    let bad_lsn = 2 * PER_SEGMENT + PER_SEGMENT / 2;
    let seg = forge::segment_files(&dir)[2].clone();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let frame_at = edit_in_place(&seg, &format!("ev-{bad_lsn}"));
    let seg_len = std::fs::metadata(&seg).unwrap().len();
    for threads in PIPED.into_iter().chain([ReplayThreads::None]) {
        let (got, err) = replay(&dir, ReplayRange::default(), threads);
        // Every event before the damaged segment, in order, and nothing of it.
        assert_eq!(got.len() as u64, 2 * PER_SEGMENT, "{threads:?}");
        assert!(
            got == clean[..got.len()],
            "{threads:?}: other events or order"
        );
        match err {
            Some(Error::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, name, "{threads:?}");
                assert!(
                    offset > frame_at as u64 && offset < seg_len,
                    "{threads:?}: offset {offset} is not the damaged block's commit record"
                );
            }
            other => panic!("{threads:?}: an edited segment was replayed: {other:?}"),
        }
    }
}

/// A record the chain vouches for (the whole log re-chained around it) but
/// the strict decoder refuses: every event before it, in order, then an
/// error naming its segment and frame, from a decoding thread.
#[test]
fn an_undecodable_record_mid_replay_ends_it_at_that_record() {
    let (_t, dir) = log_of_segments();
    let (clean, _) = replay(&dir, ReplayRange::default(), ReplayThreads::None);
    let bad_lsn = 3 * PER_SEGMENT + 1_500;
    let seg = forge::segment_files(&dir)[3].clone();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let mut frame_at = 0;
    forge::rewrite_frames(&seg, |fr| {
        let f = fr
            .iter_mut()
            .filter(|f| f.rec_type == 1)
            .nth(1_500)
            .unwrap();
        f.payload.push(0); // a trailing byte: no writer stores that
        frame_at = f.offset;
    });
    forge::rechain(&dir);
    for threads in PIPED.into_iter().chain([ReplayThreads::None]) {
        let (got, err) = replay(&dir, ReplayRange::default(), threads);
        assert_eq!(got.len() as u64, bad_lsn, "{threads:?} {err:?}");
        assert!(
            got == clean[..got.len()],
            "{threads:?}: other events or order"
        );
        match err {
            Some(Error::Corrupt {
                segment,
                offset,
                reason,
            }) => {
                assert_eq!((segment.as_str(), offset), (name.as_str(), frame_at as u64));
                assert!(reason.contains("does not decode"), "{reason}");
            }
            other => panic!("{threads:?}: an undecodable record was replayed: {other:?}"),
        }
    }
}

/// A record the chain vouches for that decodes but breaks a rule (its
/// JSON text is cut short): check-ahead checks it in place on its own
/// thread, and every way of replaying gives the events before it and the
/// very error the strict decoder gives on one thread.
#[test]
fn a_record_breaking_a_rule_ends_every_replay_with_the_same_error() {
    let (_t, dir) = log_of_segments();
    let (clean, _) = replay(&dir, ReplayRange::default(), ReplayThreads::None);
    let bad_lsn = PER_SEGMENT + 2_000;
    let seg = forge::segment_files(&dir)[1].clone();
    let mut bad = ev(bad_lsn, DAY0 + bad_lsn as i64);
    if let auditlog::EventData::RunStarted(s) = &mut bad.data {
        s.inputs = auditlog::Json::trusted("{\"q\":".into());
    }
    let mut body = Vec::new();
    auditlog::internals::codec::encode_event(&bad, &mut body).unwrap();
    forge::rewrite_frames(&seg, |fr| {
        let f = fr
            .iter_mut()
            .filter(|f| f.rec_type == 1)
            .nth(2_000)
            .unwrap();
        f.payload = body;
    });
    forge::rechain(&dir);
    let (one, one_err) = replay(&dir, ReplayRange::default(), ReplayThreads::None);
    let one_err = one_err
        .map(|e| e.to_string())
        .expect("refused on one thread");
    assert!(
        one_err.contains("inputs") && one_err.contains("JSON"),
        "{one_err}"
    );
    assert_eq!(one.len() as u64, bad_lsn);
    assert!(one == clean[..one.len()]);
    for threads in PIPED.into_iter().chain([ReplayThreads::Auto]) {
        let (got, err) = replay(&dir, ReplayRange::default(), threads);
        assert!(got == one, "{threads:?}: other events before the error");
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(one_err.clone()),
            "{threads:?}"
        );
    }
    // From an LSN past it: never read, so never refused.
    let past = ReplayRange {
        from_lsn: Some(bad_lsn + 1),
        ..ReplayRange::default()
    };
    for threads in PIPED.into_iter().chain([ReplayThreads::None]) {
        let (got, err) = replay(&dir, past, threads);
        assert!(err.is_none(), "{threads:?}: {err:?}");
        assert_eq!(got.len() as u64, SEGMENTS * PER_SEGMENT - bad_lsn - 1);
    }
}

/// Dropping a pipelined replay after a few events returns (its threads are
/// stopped and joined), whether they were ahead or waiting.
#[test]
fn an_early_drop_of_a_pipelined_replay_does_not_hang() {
    let (_t, dir) = log_of_segments();
    let (tx, rx) = mpsc::channel();
    let d = dir.clone();
    std::thread::spawn(move || {
        let reader = LogReader::open(&d).expect("reader");
        for take in [0usize, 1, 10, 3_000, 9_000] {
            for threads in PIPED {
                let mut r = reader.replay_with(ReplayRange::default(), threads);
                for _ in 0..take {
                    r.next().unwrap().unwrap();
                }
                // Give the threads time to fill their queues and block.
                std::thread::sleep(Duration::from_millis(5));
                drop(r);
            }
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("dropping pipelined replays returned");
}
