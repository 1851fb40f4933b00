//! What read paths check and what they leave to `verify` (docs/integrity.md,
//! "Frame CRCs on read paths" and "What an index build checks"): a block
//! whose chain digest holds is taken without its event frames' CRCs, and
//! index builds skip the JSON texts they never read. Each case also shows
//! that damage is still named by segment and offset exactly as before, and
//! that `verify` still refuses the log.

use std::path::Path;

use auditlog::internals::codec::encode_event;
use auditlog::internals::index::{self, NoOlder, Span, KIND_SEALED};
use auditlog::internals::layout::map_file;
use auditlog::internals::segment::HEADER_SIZE;
use auditlog::query::Engine;
use auditlog::{
    verify, Config, Error, Event, EventData, Json, Log, LogReader, ReplayRange, RunLog, RunStarted,
    SegmentMeta,
};

use crate::support::forge::{self, RawFrame};
use crate::support::{scratch, DAY0};

/// A log with one sealed segment (two runs: a start, a `note` log, a
/// `tool_call` log each, in blocks of their own) and an active one.
fn sealed_log() -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = scratch();
    let log = Log::open(Config::new(&dir)).expect("open");
    for (n, id) in ["r-a", "r-b"].into_iter().enumerate() {
        let ts = DAY0 + 10 * n as i64;
        let started = RunStarted {
            caller_id: "agent-1".into(),
            inputs: Json::parse(r#"{"q":"x"}"#).unwrap(),
            ..RunStarted::default()
        };
        let log_of = |seq: u64, event_type: &str, payload: &str| {
            Event::run_log(
                id,
                ts + 1 + seq as i64,
                RunLog {
                    seq,
                    event_type: event_type.into(),
                    payload: Json::parse(payload).unwrap(),
                },
            )
        };
        log.append_batch(&[
            Event::run_started(id, ts, started),
            log_of(1, "note", r#"{"k":1}"#),
            log_of(2, "tool_call", r#"{"tool":"fs.read"}"#),
        ])
        .unwrap()
        .wait()
        .unwrap();
    }
    log.seal().unwrap();
    log.append(&Event::run_started(
        "r-c",
        DAY0 + 100,
        RunStarted::default(),
    ))
    .unwrap()
    .wait()
    .unwrap();
    log.close().unwrap();
    (t, dir)
}

fn sealed_meta(dir: &Path) -> SegmentMeta {
    let r = LogReader::open(dir).expect("reader");
    r.segments().into_iter().find(|m| m.sealed).expect("sealed")
}

/// The sealed segment's image, built as the query engine builds it.
fn build_sealed(dir: &Path) -> auditlog::Result<Vec<u8>> {
    let meta = sealed_meta(dir);
    let seg = map_file(&meta.path).unwrap().unwrap();
    let span = Span {
        from: HEADER_SIZE as u64,
        first_lsn: meta.first_lsn,
        digest_at_from: meta.prev_digest,
        to: meta.data_len,
        trusted_end: meta.digest,
    };
    index::build_image(&meta, &seg, KIND_SEALED, span, &NoOlder, None)
}

fn replay(dir: &Path) -> auditlog::Result<Vec<(u64, Event)>> {
    LogReader::open(dir)?
        .replay_with(ReplayRange::default(), auditlog::ReplayThreads::None)
        .collect()
}

/// The error's segment and offset, and its text.
fn corrupt_at(r: auditlog::Result<impl std::fmt::Debug>) -> (String, u64, String) {
    match r {
        Err(Error::Corrupt {
            segment,
            offset,
            reason,
        }) => (segment, offset, reason),
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

fn seg_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The `k`th event frame of a segment file.
fn event_frame(path: &Path, k: usize) -> RawFrame {
    let (fr, _) = forge::frames(&std::fs::read(path).unwrap());
    fr.into_iter().filter(|f| f.rec_type == 1).nth(k).unwrap()
}

/// (a) An event frame whose CRC alone is wrong inside a block whose chain
/// digest is right (the chain recomputed over the wrong CRC, up to the
/// footer and the MANIFEST): only `verify` refuses it, naming the frame.
/// Reads that take the block on its digest (replay, index builds) return
/// the writer-shaped bytes the chain vouches for; a query that decodes
/// that very event reads its frame with the CRC and refuses it.
#[test]
fn a_wrong_frame_crc_under_a_right_digest_is_refused_by_verify_only() {
    let (_t, dir) = sealed_log();
    let before = replay(&dir).expect("replays");
    let seg = forge::segment_files(&dir)[0].clone();
    let f = event_frame(&seg, 1); // r-a's `note` log
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[f.offset + 4] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    forge::rechain_keeping_bad_crcs(&dir);
    let after = std::fs::read(&seg).unwrap();
    assert_eq!(
        after[f.offset + 4],
        bytes[f.offset + 4],
        "the wrong CRC was kept"
    );

    let (segment, offset, reason) = corrupt_at(verify(&dir, None, |_, _| {}));
    assert_eq!((segment, offset), (seg_name(&seg), f.offset as u64));
    assert!(reason.contains("CRC mismatch"), "{reason}");

    // Reads: the digest covers the frame (its CRC field too), so replay
    // and the index build take the block; the events are the same.
    assert_eq!(replay(&dir).expect("replay takes the block"), before);
    build_sealed(&dir).expect("the index build takes the block");
    let mut e = Engine::open(&dir).unwrap();
    e.persist = false;
    e.refresh().expect("indexes");
    assert!(e.get_run("r-b").unwrap().is_some());
    // Decoding that very event reads its frame with the CRC.
    let (segment, offset, reason) = corrupt_at(e.logs("r-a"));
    assert_eq!((segment, offset), (seg_name(&seg), f.offset as u64));
    assert!(reason.contains("CRC mismatch"), "{reason}");
}

/// (b) One flipped byte anywhere in a sealed block (no rechain) fails an
/// index build and a replay with the segment and the offset of the frame
/// it is in, as the CRC walk names it.
#[test]
fn a_flipped_byte_in_a_sealed_block_fails_an_index_build_at_its_frame() {
    let (_t, dir) = sealed_log();
    let seg = forge::segment_files(&dir)[0].clone();
    let clean = std::fs::read(&seg).unwrap();
    let (frames, _) = forge::frames(&clean);
    // A byte of an event body, of a frame's CRC field, of a commit
    // record's digest: each is named at the frame holding it.
    let ev = event_frame(&seg, 2);
    let commit = frames.iter().find(|f| f.rec_type == 2).unwrap();
    for (what, at, frame_at) in [
        ("event body", ev.offset + ev.size - 3, ev.offset),
        ("event CRC", ev.offset + 5, ev.offset),
        (
            "commit digest",
            commit.offset + commit.size - 2,
            commit.offset,
        ),
    ] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        let (segment, offset, reason) = corrupt_at(build_sealed(&dir));
        assert_eq!(
            (&segment, offset),
            (&seg_name(&seg), frame_at as u64),
            "{what}"
        );
        assert!(reason.contains("CRC mismatch"), "{what}: {reason}");
        let mut e = Engine::open(&dir).unwrap();
        e.persist = false;
        let (segment, offset, _) = corrupt_at(e.refresh());
        assert_eq!(
            (&segment, offset),
            (&seg_name(&seg), frame_at as u64),
            "{what}"
        );
        let (segment, offset, reason) = corrupt_at(replay(&dir));
        assert_eq!(
            (&segment, offset),
            (&seg_name(&seg), frame_at as u64),
            "{what}"
        );
        assert!(reason.contains("CRC mismatch"), "{what}: {reason}");
    }
    std::fs::write(&seg, &clean).unwrap();
    build_sealed(&dir).expect("the clean segment builds");
}

/// The sealed segment's runs, as the Parquet export asks for them.
fn runs_of_sealed(e: &mut Engine, seq: u64) -> auditlog::Result<Vec<String>> {
    e.query(|v| {
        Ok(v.runs_defined_in(seq, seq)?
            .into_iter()
            .map(|r| r.run.id)
            .collect())
    })
}

/// A replay through the engine's own reader, from `from_lsn` on.
fn replay_through(e: &Engine, from_lsn: u64) -> auditlog::Result<Vec<(u64, Event)>> {
    let range = ReplayRange {
        from_lsn: Some(from_lsn),
        ..ReplayRange::default()
    };
    e.reader()
        .replay_with(range, auditlog::ReplayThreads::None)
        .collect()
}

/// (b) continued: the run view over a stored index takes a block's chain
/// check from a replay through the same reader (the Parquet export
/// replays each segment, then reads its runs) only if that replay chained
/// every block the index covers to the segment's trusted end. After a
/// replay that failed on a flipped byte, or one that began past the
/// damaged block, the view hashes the block itself and refuses it at the
/// frame, as without any replay.
#[test]
fn a_run_view_takes_the_chain_check_only_from_a_replay_that_covered_it() {
    let (_t, dir) = sealed_log();
    let meta = sealed_meta(&dir);
    // Store the index: a build marks its own blocks checked, a load
    // (what every later engine does) does not.
    Engine::open(&dir).unwrap().refresh().expect("indexes");
    let mut e = Engine::open(&dir).unwrap();
    let want = runs_of_sealed(&mut e, meta.seq).expect("runs");
    assert_eq!(want, ["r-a", "r-b"]);
    let mut e = Engine::open(&dir).unwrap();
    e.refresh().unwrap();
    assert_eq!(replay_through(&e, 0).expect("replays").len(), 6 + 1);
    assert_eq!(runs_of_sealed(&mut e, meta.seq).unwrap(), want);

    // A flipped byte in r-a's start, in the first block; no rechain.
    let seg = forge::segment_files(&dir)[0].clone();
    let start = event_frame(&seg, 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[start.offset + start.size - 3] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let refused = |e: &mut Engine| {
        let (segment, offset, reason) = corrupt_at(runs_of_sealed(e, meta.seq));
        assert_eq!((segment, offset), (seg_name(&seg), start.offset as u64));
        assert!(reason.contains("CRC mismatch"), "{reason}");
    };
    // The replay fails there and records nothing.
    let mut e = Engine::open(&dir).unwrap();
    e.refresh().expect("the stored index loads");
    assert_eq!(corrupt_at(replay_through(&e, 0)).1, start.offset as u64);
    refused(&mut e);
    // A replay from r-b's block on passes: the chain from there to the
    // end holds, but it does not cover r-a's block.
    let mut e = Engine::open(&dir).unwrap();
    e.refresh().unwrap();
    assert_eq!(
        replay_through(&e, 3).expect("replays from block 2").len(),
        3 + 1
    );
    refused(&mut e);
}

/// The `k`th event frame of the sealed segment replaced by `edit` of its
/// event, and the chain recomputed (valid CRCs, footer, MANIFEST).
fn forge_event(dir: &Path, k: usize, edit: impl FnOnce(&mut Event)) -> (String, u64) {
    let seg = forge::segment_files(dir)[0].clone();
    let mut at = 0;
    forge::rewrite_frames(&seg, |fr| {
        let f = fr.iter_mut().filter(|f| f.rec_type == 1).nth(k).unwrap();
        let mut ev = auditlog::internals::codec::decode_event(&f.payload).unwrap();
        edit(&mut ev);
        f.payload.clear();
        encode_event(&ev, &mut f.payload).unwrap();
        at = f.offset as u64;
    });
    forge::rechain(dir);
    (seg_name(&seg), at)
}

fn bad_payload(ev: &mut Event) {
    match &mut ev.data {
        EventData::RunLog(l) => l.payload = Json::trusted("{\"k\":".into()),
        other => panic!("not a run_log: {other:?}"),
    }
}

/// (c) Invalid JSON text in a `note` log's payload under a recomputed
/// chain: the index build does not read that text and builds; the run
/// view, replay and `verify` refuse the event, naming segment and offset.
#[test]
fn invalid_json_the_index_never_reads_is_refused_by_every_read_of_it() {
    let (_t, dir) = sealed_log();
    let (name, at) = forge_event(&dir, 1, bad_payload);
    // The rewrite kept every frame's size, so the offset is the frame's.
    assert_eq!(
        event_frame(&forge::segment_files(&dir)[0], 1).offset as u64,
        at
    );

    build_sealed(&dir).expect("the index build does not read that text");
    let mut e = Engine::open(&dir).unwrap();
    e.persist = false;
    e.refresh().expect("indexes");
    // Answers from the index alone stand (the event is not returned).
    let all = auditlog::query::Filter {
        include_dry_run: true,
        ..Default::default()
    };
    assert_eq!(e.count(&all).unwrap(), 3);

    let (segment, offset, reason) = corrupt_at(e.run_with_logs("r-a"));
    assert_eq!((segment, offset), (name.clone(), at));
    assert!(
        reason.contains("payload") && reason.contains("JSON"),
        "{reason}"
    );
    // The other run does not touch that event.
    assert!(e.run_with_logs("r-b").unwrap().is_some());

    let (segment, offset, reason) = corrupt_at(replay(&dir));
    assert_eq!((segment, offset), (name.clone(), at));
    assert!(reason.contains("payload"), "{reason}");
    let ahead = LogReader::open(&dir)
        .unwrap()
        .replay_with(ReplayRange::default(), auditlog::ReplayThreads::CheckAhead)
        .collect::<auditlog::Result<Vec<_>>>();
    assert_eq!(corrupt_at(ahead).1, at);

    let (segment, offset, reason) = corrupt_at(verify(&dir, None, |_, _| {}));
    assert_eq!((segment, offset), (name, at));
    assert!(reason.contains("payload"), "{reason}");
}

/// (c) continued: a `run_log` tool call's payload is read by the index
/// (its call fields), so there the build checks the text and refuses it.
#[test]
fn invalid_json_the_index_reads_fails_the_index_build() {
    let (_t, dir) = sealed_log();
    let (name, at) = forge_event(&dir, 2, bad_payload);
    let (segment, offset, reason) = corrupt_at(build_sealed(&dir));
    assert_eq!((segment, offset), (name.clone(), at));
    assert!(
        reason.contains("payload") && reason.contains("JSON"),
        "{reason}"
    );
    let mut e = Engine::open(&dir).unwrap();
    e.persist = false;
    assert_eq!(corrupt_at(e.refresh()).1, at);
    assert!(verify(&dir, None, |_, _| {}).is_err());
}

/// The build reads that payload in the parse that checks it (issue 11,
/// round 6); for every way a payload can be bad, the build refuses it at
/// the event with the strict decoder's words, the ones replay gives; a
/// payload that is valid but read by the slower path (a repeated call key,
/// not an object) still builds.
#[test]
fn the_index_build_refuses_a_bad_tool_call_payload_as_the_strict_decoder_does() {
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(65), "]".repeat(65));
    for bad in [
        "{\"k\":",
        "{} x",
        " {\"tool\":\"t\"}",
        "{\"tool\":\"t\"}\n",
        "{\"a\":1,}",
        &deep,
    ] {
        let (_t, dir) = sealed_log();
        let (name, at) = forge_event(&dir, 2, |ev| match &mut ev.data {
            EventData::RunLog(l) => l.payload = Json::trusted(bad.into()),
            other => panic!("not a run_log: {other:?}"),
        });
        let (segment, offset, reason) = corrupt_at(build_sealed(&dir));
        assert_eq!((segment, offset), (name.clone(), at), "{bad:?}");
        let (segment, offset, strict) = corrupt_at(replay(&dir));
        assert_eq!((segment, offset), (name, at), "{bad:?}");
        assert_eq!(reason, strict, "{bad:?}");
        assert!(reason.contains("payload"), "{reason}");
    }
    for odd in [r#"{"tool":"a","tool":"b"}"#, r#"["t"]"#, "7"] {
        let (_t, dir) = sealed_log();
        forge_event(&dir, 2, |ev| match &mut ev.data {
            EventData::RunLog(l) => l.payload = Json::trusted(odd.into()),
            other => panic!("not a run_log: {other:?}"),
        });
        build_sealed(&dir).unwrap_or_else(|e| panic!("{odd:?}: {e}"));
        assert!(replay(&dir).is_ok(), "{odd:?}");
    }
}

/// Every rule other than the JSON texts still holds in index builds: an
/// over-long name or a timestamp out of range fails the build at the event.
#[test]
fn index_builds_keep_every_structural_rule() {
    for edit in [
        (|ev: &mut Event| ev.ts = -1) as fn(&mut Event),
        |ev: &mut Event| {
            if let EventData::RunStarted(s) = &mut ev.data {
                s.caller_id = "c".repeat(5000);
            }
        },
        |ev: &mut Event| ev.extra.push(("replace".into(), Json::trusted("1".into()))),
    ] {
        let (_t, dir) = sealed_log();
        let (name, at) = forge_event(&dir, 0, edit);
        let (segment, offset, _) = corrupt_at(build_sealed(&dir));
        assert_eq!((segment, offset), (name, at));
    }
}

/// A sealed segment of 900 runs (a start and a finish each), 30 runs per
/// block: a list of all of them is long enough for a second thread to
/// check its blocks ahead of the run views (`query::check_ahead`).
fn many_runs_log() -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = scratch();
    let log = Log::open(Config::new(&dir)).expect("open");
    for b in 0..30 {
        let mut batch = Vec::new();
        for k in 0..30 {
            let n = b * 30 + k;
            let id = format!("r-{n:04}");
            let ts = DAY0 + 1_000 * n as i64;
            batch.push(Event::run_started(&id, ts, RunStarted::default()));
            batch.push(Event::run_finished(
                &id,
                ts + 1,
                auditlog::RunFinished {
                    status: "ok".into(),
                    ..auditlog::RunFinished::default()
                },
            ));
        }
        log.append_batch(&batch).unwrap().wait().unwrap();
    }
    log.seal().unwrap();
    log.close().unwrap();
    // Store the index: a later engine loads it and hashes each block the
    // first time a read needs it (a build marks its own blocks checked).
    Engine::open(&dir).unwrap().refresh().expect("indexes");
    (t, dir)
}

fn list_all(e: &mut Engine) -> auditlog::Result<Vec<auditlog::Run>> {
    e.list(&auditlog::Filter::default(), auditlog::Page::all())
}

/// A long list whose blocks a second thread checks ahead of the run
/// views answers what the runs' own look-ups answer (which check every
/// block on the caller's thread), in every fresh engine.
#[test]
fn a_long_list_checked_ahead_answers_as_its_runs_one_by_one() {
    let (_t, dir) = many_runs_log();
    let mut one_by_one = Vec::new();
    let mut e = Engine::open(&dir).unwrap();
    for n in (0..900).rev() {
        one_by_one.push(e.get_run(&format!("r-{n:04}")).unwrap().expect("stored"));
    }
    for _ in 0..5 {
        let mut e = Engine::open(&dir).unwrap();
        assert_eq!(list_all(&mut e).expect("lists"), one_by_one);
    }
}

/// A flipped byte in a block in the middle of a long list (no rechain):
/// whichever thread meets the block first, the list fails with the error
/// the caller's own check gives, at the damaged frame, in every fresh
/// engine; the check ahead never passes it.
#[test]
fn a_long_list_refuses_a_damaged_block_whoever_meets_it_first() {
    let (_t, dir) = many_runs_log();
    let seg = forge::segment_files(&dir)[0].clone();
    // The start of r-0450: block 15 of 30.
    let start = event_frame(&seg, 900);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[start.offset + start.size - 3] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let mut e = Engine::open(&dir).unwrap();
    let (segment, offset, reason) = corrupt_at(e.get_run("r-0450"));
    assert_eq!(
        (segment.as_str(), offset),
        (seg_name(&seg).as_str(), start.offset as u64)
    );
    assert!(reason.contains("CRC mismatch"), "{reason}");
    // Newest first, the list meets the block at its newest run, r-0479:
    // the error is that run's own look-up's (its frame's offset, the
    // damaged frame named in the reason).
    let mut e = Engine::open(&dir).unwrap();
    let (segment, offset, reason) = corrupt_at(e.get_run("r-0479"));
    assert!(
        reason.starts_with(&format!("at offset {}: CRC mismatch", start.offset)),
        "{reason}"
    );
    for _ in 0..5 {
        let mut e = Engine::open(&dir).unwrap();
        assert_eq!(
            corrupt_at(list_all(&mut e)),
            (segment.clone(), offset, reason.clone())
        );
        // A run of an undamaged block still reads.
        assert!(e.get_run("r-0010").unwrap().is_some());
    }
}
