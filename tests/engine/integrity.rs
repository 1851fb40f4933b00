//! Issue 11 from inside the engine (the attack table's rows run through the
//! binary in cli/tests/cli/attacks.rs): the strict decoder, a crash at
//! every step of a cut and of a retention, readers in the writer's process,
//! recorded gaps, and `repair`'s edge cases.

use std::fs;
use std::path::Path;

use auditlog::internals::codec::{decode_event, decode_stored, encode_event};
use auditlog::internals::layout::{self, Mode};
use auditlog::internals::manifest::Manifest;
use auditlog::internals::recovery;
use auditlog::internals::segment::{Header, HEADER_SIZE};
use auditlog::system::SystemRecord;
use auditlog::{verify, Config, Error, Event, Json, Log, LogReader, ReplayRange, RunStarted};

use crate::support::forge;
use crate::support::{ev, scratch, walk_files, Injector, Kind, On, DAY0, DAY_US};

fn open(dir: &Path) -> Log {
    Log::open(Config::new(dir)).expect("open")
}

fn events(dir: &Path) -> Vec<(u64, Event)> {
    LogReader::open(dir)
        .expect("reader")
        .replay(ReplayRange::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("replay")
}

fn system_records(dir: &Path) -> Vec<(u64, SystemRecord)> {
    events(dir)
        .into_iter()
        .filter_map(|(l, e)| e.data.system().cloned().map(|r| (l, r)))
        .collect()
}

/// The strict decoder refuses what the writer would never have written;
/// the plain bincode decoder lets some of it through (which is why every
/// reader uses the strict one).
#[test]
fn the_strict_decoder_refuses_what_the_writer_never_writes() {
    let good = Event::run_started(
        "r-1",
        DAY0,
        RunStarted {
            inputs: Json::parse(r#"{"q":"x"}"#).unwrap(),
            ..RunStarted::default()
        },
    );
    let mut b = Vec::new();
    encode_event(&good, &mut b).unwrap();
    assert!(decode_stored(&b).is_ok());
    let enc = |e: &Event| {
        let mut v = Vec::new();
        encode_event(e, &mut v).unwrap();
        v
    };
    let mut cases: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    let mut trailing = b.clone();
    trailing.push(0);
    cases.push(("trailing bytes", trailing, false));
    let mut variant = b.clone();
    variant[1 + 3 + 9] = 9; // after "r-1" and a 9-byte ts: the variant index
    cases.push(("unknown variant", variant, false));
    let mut boolean = b.clone();
    let n = boolean.len();
    boolean[n - 2] = 2; // dry_run, before the empty extra list
    cases.push(("bool byte 2", boolean, false));
    let mut json = good.clone();
    if let auditlog::EventData::RunStarted(s) = &mut json.data {
        s.inputs = Json::trusted("{\"q\":".into());
    }
    cases.push(("invalid JSON text", enc(&json), true));
    cases.push((
        "ts -1",
        enc(&Event {
            ts: -1,
            ..good.clone()
        }),
        true,
    ));
    cases.push((
        "ts 2^62",
        enc(&Event {
            ts: 1 << 62,
            ..good.clone()
        }),
        true,
    ));
    let mut sys = Event::run_started("", DAY0, RunStarted::default());
    sys.run_id = String::new();
    cases.push(("empty run id", enc(&sys), true));
    for (what, bytes, bincode_accepts) in cases {
        assert_eq!(decode_event(&bytes).is_ok(), bincode_accepts, "{what}");
        let e = decode_stored(&bytes).expect_err(what);
        assert!(!e.to_string().is_empty(), "{what}");
    }
}

/// A log whose active segment ends in a torn write: two committed blocks,
/// then an event frame and a few bytes of the next.
fn torn_log() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Vec<u8>,
) {
    let (t, dir) = scratch();
    let log = open(&dir);
    log.append_batch(&[ev(1, DAY0), ev(2, DAY0 + 1)])
        .unwrap()
        .wait()
        .unwrap();
    log.append(&ev(3, DAY0 + 2)).unwrap().wait().unwrap();
    log.close().unwrap();
    let seg = forge::segment_files(&dir).pop().unwrap();
    let mut frame = Vec::new();
    let mut body = Vec::new();
    encode_event(&ev(4, DAY0 + 3), &mut body).unwrap();
    auditlog::internals::frame::write_frame(
        &mut frame,
        auditlog::internals::frame::REC_EVENT,
        &body,
    );
    let mut bytes = fs::read(&seg).unwrap();
    let good = bytes.len();
    bytes.extend_from_slice(&frame);
    bytes.extend_from_slice(&frame[..7]);
    fs::write(&seg, &bytes).unwrap();
    (t, dir, seg, bytes[good..].to_vec())
}

/// What every finished cut of `torn_log()` looks like.
fn check_cut_finished(dir: &Path, tail: &[u8]) {
    let m = Manifest::load(dir).unwrap().unwrap();
    assert!(m.pending.is_none(), "pending cleared");
    let recs = system_records(dir);
    assert_eq!(recs.len(), 1, "recorded once: {recs:?}");
    let SystemRecord::TornTailCut(c) = &recs[0].1 else {
        panic!("{recs:?}");
    };
    assert_eq!(fs::read(dir.join(&c.quarantine)).unwrap(), tail);
    // Two event frames (one whole, one cut short): LSNs 3 and 4 skipped.
    assert_eq!((c.skip_from_lsn, c.skip_to_lsn), (3, 5));
    assert_eq!(recs[0].0, 5, "the record comes after the gap");
    let ids: Vec<String> = events(dir)
        .into_iter()
        .filter(|(_, e)| !e.is_system())
        .map(|(_, e)| e.run_id)
        .collect();
    assert_eq!(ids, ["ev-1", "ev-2", "ev-3"]);
    verify(dir, None, |_, _| {}).expect("verifies");
}

/// The cut, crashed after each of its steps; the next writer open finishes
/// it, and a reader meanwhile sees the committed events.
#[test]
fn a_crash_at_every_step_of_a_cut_is_finished_by_the_next_open() {
    for crash_after in ["pending", "files"] {
        let (_t, dir, _seg, tail) = torn_log();
        let mut m = Manifest::load(&dir).unwrap().unwrap();
        let lay = layout::discover(&dir, m.clone(), Mode::Write).unwrap();
        let damage = lay.tail.expect("a torn tail");
        let bytes = fs::read(&damage.path).unwrap();
        let cut = recovery::plan_torn_tail_cut(&dir, &damage, &bytes);
        recovery::set_pending(&dir, &mut m, SystemRecord::TornTailCut(cut.clone())).unwrap();
        if crash_after == "files" {
            recovery::apply_cut_files(&dir, &cut).unwrap();
        }
        // A reader beside the crashed log: the committed events.
        let ids = events(&dir).len();
        assert_eq!(ids, 3, "{crash_after}");
        let log = open(&dir);
        assert_eq!(
            log.recovery().finished_pending.as_deref(),
            Some("torn_tail_cut"),
            "{crash_after}"
        );
        log.close().unwrap();
        check_cut_finished(&dir, &tail);
    }
    // And the plain case: the open does it all.
    let (_t, dir, _seg, tail) = torn_log();
    let log = open(&dir);
    assert!(log.recovery().cut.is_some());
    log.close().unwrap();
    check_cut_finished(&dir, &tail);
}

/// A retention whose record reached the log but whose MANIFEST update
/// failed is finished by the next open; one whose record did not reach
/// the log is forgotten (nothing was dropped).
#[test]
fn a_crash_inside_a_retention_is_finished_or_forgotten() {
    for (fault, finished) in [(On::Rename, true), (On::BlockWrite, false)] {
        let (_t, dir) = scratch();
        let inj = Injector::new();
        let mut cfg = Config::new(&dir);
        cfg.io.faults = Some(inj.clone());
        let log = Log::open(cfg).unwrap();
        for d in 0..3 {
            log.append(&ev(d, DAY0 + d as i64 * DAY_US))
                .unwrap()
                .wait()
                .unwrap();
        }
        inj.arm(fault, 0, 1, Kind::Eio);
        assert!(log.retain(DAY0 + DAY_US).is_err(), "{fault:?}");
        drop(log);
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert!(m.pending.is_some(), "{fault:?}: the intent is stored");
        let files_before = forge::segment_files(&dir).len();
        let log = open(&dir);
        assert_eq!(
            log.recovery().finished_pending.as_deref(),
            Some("retention"),
            "{fault:?}"
        );
        log.close().unwrap();
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert!(m.pending.is_none(), "{fault:?}");
        let recs = system_records(&dir);
        if finished {
            assert_eq!(recs.len(), 1, "{fault:?}");
            assert_eq!(m.anchor.first_seq, 2, "{fault:?}");
            assert!(m.retention.is_some());
            assert_eq!(forge::segment_files(&dir).len(), files_before - 1);
        } else {
            assert!(recs.is_empty(), "{fault:?}");
            assert!(m.anchor_is_genesis(), "{fault:?}");
            assert_eq!(forge::segment_files(&dir).len(), files_before);
        }
        verify(&dir, None, |_, _| {}).expect("verifies");
    }
}

/// A retention pass removes the dropped files only after the MANIFEST no
/// longer names them, off the writer (src/writer/retire.rs): a removal
/// that fails is reported to the caller, the pass stays recorded, appends
/// go on, and the next open removes the leftovers.
#[test]
fn a_removal_that_fails_after_a_retention_leaves_leftovers_the_next_open_removes() {
    let (_t, dir) = scratch();
    let inj = Injector::new();
    let mut cfg = Config::new(&dir);
    cfg.io.faults = Some(inj.clone());
    let log = Log::open(cfg).unwrap();
    for d in 0..3 {
        log.append(&ev(d, DAY0 + d as i64 * DAY_US))
            .unwrap()
            .wait()
            .unwrap();
    }
    let files_before = forge::segment_files(&dir).len();
    inj.arm(On::Remove, 0, 1, Kind::Eio);
    assert!(log.retain(DAY0 + DAY_US).is_err());
    let m = Manifest::load(&dir).unwrap().unwrap();
    assert!(m.pending.is_none(), "the pass is recorded");
    assert_eq!(m.anchor.first_seq, 2);
    assert!(m.retention.is_some());
    assert_eq!(forge::segment_files(&dir).len(), files_before, "left over");
    log.append(&ev(9, DAY0 + 2 * DAY_US + 5))
        .unwrap()
        .wait()
        .unwrap();
    drop(log);
    let log = open(&dir);
    assert!(!log.recovery().removed_leftovers.is_empty());
    log.close().unwrap();
    assert_eq!(forge::segment_files(&dir).len(), files_before - 1);
    assert_eq!(system_records(&dir).len(), 1);
    verify(&dir, None, |_, _| {}).expect("verifies");
}

/// Retention passes asked for at once, from several threads, while
/// appends go on, are each answered (one at a time, in turn): every
/// expired segment is dropped exactly once and the log verifies.
#[test]
fn retention_passes_asked_at_once_are_each_answered_in_turn() {
    let (_t, dir) = scratch();
    let log = open(&dir);
    for d in 0..6 {
        log.append(&ev(d, DAY0 + d as i64 * DAY_US))
            .unwrap()
            .wait()
            .unwrap();
    }
    let dropped: u64 = std::thread::scope(|s| {
        let passes: Vec<_> = (1..=4)
            .map(|k| {
                let log = &log;
                s.spawn(move || log.retain(DAY0 + k * DAY_US))
            })
            .collect();
        for i in 0..50 {
            log.append(&ev(100 + i, DAY0 + 5 * DAY_US + i as i64))
                .unwrap()
                .wait()
                .unwrap();
        }
        passes
            .into_iter()
            .map(|h| h.join().unwrap().unwrap().dropped.len() as u64)
            .sum()
    });
    assert_eq!(dropped, 4);
    log.close().unwrap();
    let m = Manifest::load(&dir).unwrap().unwrap();
    assert_eq!(m.dropped_segments, 4);
    assert_eq!(forge::segment_files(&dir).len(), 2);
    let kept = events(&dir);
    assert_eq!(
        kept.iter()
            .filter(|(_, e)| e.data.system().is_none())
            .count(),
        52
    );
    verify(&dir, None, |_, _| {}).expect("verifies");
}

/// A reader in the writer's own process checks what it reads on disk
/// against the chain the writer holds: an edit made under a running log
/// (its CRC fixed) is an error naming the segment, sealed or active.
#[test]
fn a_reader_in_the_writers_process_checks_the_disk() {
    for sealed in [true, false] {
        let (_t, dir) = scratch();
        let log = open(&dir);
        log.append_batch(&[ev(1, DAY0), ev(2, DAY0 + 1)])
            .unwrap()
            .wait()
            .unwrap();
        if sealed {
            log.seal().unwrap();
        }
        log.append(&ev(3, DAY0 + 2)).unwrap().wait().unwrap();
        let seg = forge::segment_files(&dir)[0].clone();
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        forge::rewrite_frames(&seg, |fr| {
            let f = fr.iter_mut().find(|f| f.rec_type == 1).unwrap();
            let at = f.payload.windows(4).position(|w| w == b"ev-1").unwrap();
            f.payload[at + 3] = b'9';
        });
        let got = log
            .reader()
            .replay(ReplayRange::default())
            .collect::<Result<Vec<_>, _>>();
        match got {
            Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, name),
            other => panic!("sealed={sealed}: an edited segment was read: {other:?}"),
        }
        drop(log);
    }
}

/// LSNs skipped by a cut are read across (replay, tail), and a jump no
/// record explains (a header edited to skip) is refused.
#[test]
fn a_recorded_gap_is_read_across_and_an_unrecorded_one_is_refused() {
    let (_t, dir, _seg, _tail) = torn_log();
    let log = open(&dir);
    let r = log.append(&ev(9, DAY0 + 9)).unwrap().wait().unwrap();
    assert_eq!(r.first, 6, "after the skipped 3..5 and the record at 5");
    log.close().unwrap();
    let lsns: Vec<u64> = events(&dir).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lsns, [0, 1, 2, 5, 6]);
    let reader = LogReader::open(&dir).unwrap();
    let tail: Vec<u64> = reader
        .replay(ReplayRange {
            from_lsn: Some(4),
            ..ReplayRange::default()
        })
        .map(|x| x.unwrap().0)
        .collect();
    assert_eq!(tail, [5, 6]);

    // An unrecorded jump: the newest segment's header edited to start
    // further on (its CRC fixed).
    let seg = forge::segment_files(&dir).pop().unwrap();
    let mut b = fs::read(&seg).unwrap();
    let mut h = Header::decode(&b).unwrap();
    h.first_lsn += 100;
    b[..HEADER_SIZE].copy_from_slice(&h.encode());
    fs::write(&seg, &b).unwrap();
    match LogReader::open(&dir) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("gap"), "{reason}"),
        other => panic!("an unrecorded jump was accepted: {:?}", other.map(|_| ())),
    }
}

/// The newest file's header damaged, committed blocks after it: refused;
/// `repair` moves the whole file aside and skips its number and LSNs. A
/// damaged sealed segment is not repaired (and nothing is changed).
#[test]
fn repair_of_a_damaged_header_and_not_of_a_sealed_segment() {
    let (_t, dir) = scratch();
    let log = open(&dir);
    log.append(&ev(1, DAY0)).unwrap().wait().unwrap();
    log.seal().unwrap();
    for i in 2..6 {
        log.append(&ev(i, DAY0 + i as i64)).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let files = forge::segment_files(&dir);
    let newest = files[1].clone();
    let mut b = fs::read(&newest).unwrap();
    b[20] ^= 1; // inside the header (its seq)
    fs::write(&newest, &b).unwrap();
    assert!(Log::open(Config::new(&dir)).is_err());
    match auditlog::repair(&dir).unwrap() {
        auditlog::RepairReport::Repaired(c) => {
            assert_eq!(c.quarantine_from, 0);
            assert_eq!(fs::read(dir.join(&c.quarantine)).unwrap(), b);
            assert_eq!((c.skip_from_seq, c.skip_to_seq), (2, 3));
            assert!(c.skip_to_lsn >= 5, "{c:?}");
        }
        other => panic!("{other:?}"),
    }
    verify(&dir, None, |_, _| {}).expect("verifies after the repair");
    let log = open(&dir);
    log.append(&ev(9, DAY0 + 9)).unwrap().wait().unwrap();
    log.close().unwrap();
    verify(&dir, None, |_, _| {}).unwrap();

    // Damage in a sealed segment.
    let sealed = forge::segment_files(&dir)[0].clone();
    let mut b = fs::read(&sealed).unwrap();
    b[HEADER_SIZE + 12] ^= 1;
    fs::write(&sealed, &b).unwrap();
    let before: Vec<_> = walk_files(&dir)
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    // A writer open trusts a sealed segment's footer: nothing to repair
    // there; reads and verify name it.
    assert!(matches!(
        auditlog::repair(&dir),
        Ok(auditlog::RepairReport::Clean)
    ));
    assert!(verify(&dir, None, |_, _| {}).is_err());
    for (p, bytes) in before {
        if p.extension().is_some_and(|x| x == "seg") {
            assert_eq!(fs::read(&p).unwrap(), bytes, "{p:?} unchanged");
        }
    }
}

/// Tool calls (format version 3) go through every integrity check: the
/// strict decoder applies their rules, verify and the chain-checked reads
/// find an edited call, and the calls query refuses to answer from it.
#[test]
fn tool_calls_pass_through_every_integrity_check() {
    use auditlog::query::{CallFilter, CallPage, Engine};
    use auditlog::ToolCall;
    let call = |tool: &str| ToolCall {
        channel_id: "sess-1".into(),
        tool: tool.into(),
        http_status: Some(200),
        payload: Json::parse(r#"{"k":1}"#).unwrap(),
        ..ToolCall::default()
    };
    let enc = |e: &Event| {
        let mut v = Vec::new();
        encode_event(e, &mut v).unwrap();
        v
    };
    // The strict decoder: a standalone call (empty run id) is a good
    // record; values the writer refuses are refused on the way out too.
    let good = Event::tool_call("", DAY0, call("fs.read"));
    assert_eq!(decode_stored(&enc(&good)).unwrap(), good);
    type Edit = Box<dyn Fn(&mut ToolCall)>;
    let bad: [(&str, Edit); 4] = [
        ("http_status", Box::new(|c| c.http_status = Some(1000))),
        ("duration_ms", Box::new(|c| c.duration_ms = Some(f64::NAN))),
        (
            "payload",
            Box::new(|c| c.payload = Json::trusted("{\"k\":".into())),
        ),
        ("tool", Box::new(|c| c.tool = "t".repeat(2000))),
    ];
    for (field, edit) in bad {
        let mut c = call("x");
        edit(&mut c);
        let e = decode_stored(&enc(&Event::tool_call("", DAY0, c))).expect_err(field);
        assert!(e.to_string().contains(field), "{field}: {e}");
    }

    // A sealed segment of calls, then an active one.
    let (_t, dir) = scratch();
    let log = open(&dir);
    log.append_batch(&[
        Event::tool_call("", DAY0, call("fs.read")),
        Event::tool_call("", DAY0 + 1, call("http.get")),
    ])
    .unwrap()
    .wait()
    .unwrap();
    log.seal().unwrap();
    log.append(&Event::tool_call("", DAY0 + 2, call("sh")))
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();
    verify(&dir, None, |_, _| {}).expect("a log of calls verifies");
    let log = open(&dir);
    let calls =
        |log: &Log| Engine::new(log.reader()).calls(&CallFilter::default(), CallPage::default());
    assert_eq!(calls(&log).unwrap().len(), 3);

    // The first call's tool edited in place (its frame CRC made right
    // again): only the chain can tell, and every read path checks it.
    let seg = forge::segment_files(&dir)[0].clone();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    forge::rewrite_frames(&seg, |fr| {
        let f = fr.iter_mut().find(|f| f.rec_type == 1).unwrap();
        let at = f.payload.windows(7).position(|w| w == b"fs.read").unwrap();
        f.payload[at] = b'F';
    });
    match log
        .reader()
        .replay(ReplayRange::default())
        .collect::<Result<Vec<_>, _>>()
    {
        Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, name),
        other => panic!("an edited call was replayed: {other:?}"),
    }
    match calls(&log) {
        Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, name),
        other => panic!("calls answered from an edited segment: {other:?}"),
    }
    drop(log);
    assert!(
        verify(&dir, None, |_, _| {}).is_err(),
        "verify finds the edit"
    );
}

/// A log of three daily segments whose indexes the query engine stored
/// (`STEM.idx` for the two sealed ones, `STEM.aidx` for the active one).
/// Run ids repeat across days, so later images point at earlier ones
/// (their shadows), which a check must rebuild exactly.
fn indexed_log() -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = scratch();
    let log = open(&dir);
    for day in 0..3i64 {
        // Ids 0..19 start again every day; the other 20 are the day's own.
        let batch: Vec<Event> = (0..40u64)
            .map(|n| {
                let id = if n < 20 {
                    n
                } else {
                    100 * (day as u64 + 1) + n
                };
                ev(id, DAY0 + day * DAY_US + n as i64)
            })
            .collect();
        log.append_batch(&batch)
            .expect("append")
            .wait()
            .expect("commit");
    }
    // Over a MiB more in the active segment, so its prefix index is stored.
    let inputs = Json::parse(format!("{{\"blob\":\"{}\"}}", "x".repeat(2000))).expect("json");
    for b in 0..6i64 {
        let batch: Vec<Event> = (0..100i64)
            .map(|n| {
                Event::run_started(
                    format!("big-{b}-{n}"),
                    DAY0 + 2 * DAY_US + 1000 + b * 100 + n,
                    RunStarted {
                        caller_id: "caller-9".into(),
                        inputs: inputs.clone(),
                        ..RunStarted::default()
                    },
                )
            })
            .collect();
        log.append_batch(&batch)
            .expect("append")
            .wait()
            .expect("commit");
    }
    log.close().expect("close");
    let mut eng = auditlog::QueryEngine::open(&dir).expect("engine");
    eng.refresh().expect("indexes");
    (t, dir)
}

fn index_files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn callers(dir: &Path, caller: &str) -> u64 {
    let mut eng = auditlog::QueryEngine::open(dir).expect("engine");
    eng.count(&auditlog::Filter {
        caller: Some(caller.into()),
        ..auditlog::Filter::default()
    })
    .expect("count")
}

/// Forge `file` consistently: the first `caller-1` in its string heap
/// becomes `caller-2`, every checksum recomputed; its header (segment,
/// LSN range, byte range, final digest) and its chain digests still match
/// the segment.
fn forge_index(file: &Path) {
    let mut b = fs::read(file).expect("read index");
    crate::fuzz_shared::forge_index_caller(&mut b);
    fs::write(file, &b).expect("write index");
}

/// Issue 11, "forge an index file", done consistently: plain `verify`
/// (not only `--deep`) compares every stored index with the image built
/// from the events it decodes anyway, names the file, moves it into
/// quarantine/ and rebuilds it; the answers are right again afterwards.
#[test]
fn plain_verify_catches_a_consistently_forged_index() {
    let (_t, dir) = indexed_log();
    let truth = callers(&dir, "caller-1");
    assert!(truth > 0);
    let sealed = index_files(&dir, "idx");
    let active = index_files(&dir, "aidx");
    assert_eq!(
        (sealed.len(), active.len()),
        (2, 1),
        "the engine stored them"
    );
    let plain = VerifyOptionsFor::Plain.opts();
    assert_eq!(
        auditlog::verify_with(&dir, &plain, |_, _| {})
            .expect("clean")
            .indexes_checked,
        3
    );

    for file in [&sealed[1], &active[0]] {
        let untouched = fs::read(file).expect("read");
        forge_index(file);
        assert_ne!(fs::read(file).expect("read"), untouched);
        // The forgery is believed by index answers until it is checked.
        assert!(callers(&dir, "caller-1") < truth, "{}", file.display());
        // Read-only: named, left in place.
        let err = auditlog::verify_with(&dir, &VerifyOptionsFor::ReadOnly.opts(), |_, _| {})
            .expect_err("a forged index fails plain verify");
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            matches!(&err, Error::Corrupt { segment, .. } if segment == name),
            "{err}"
        );
        assert!(err.to_string().contains("differs from the file"), "{err}");
        // Otherwise: moved aside byte for byte, rebuilt.
        let forged = fs::read(file).expect("read");
        let err = auditlog::verify_with(&dir, &plain, |_, _| {}).expect_err("still forged");
        assert!(err.to_string().contains("quarantine"), "{err}");
        let kept = walk_files(&dir.join("quarantine"));
        assert!(
            kept.iter().any(|p| fs::read(p).is_ok_and(|b| b == forged)),
            "the forged file is kept as evidence: {kept:?}"
        );
        assert_eq!(callers(&dir, "caller-1"), truth);
        auditlog::verify_with(&dir, &plain, |_, _| {}).expect("rebuilt");
    }
}

/// The run-id filter (RFILT, index format 7) is in the byte comparison
/// too: a filter resealed with every bit clear hides its image's runs from
/// lookups (a forger's edit, checksums and all) until plain `verify`
/// finds it, moves it into quarantine/ and rebuilds it.
#[test]
fn plain_verify_catches_a_forged_run_filter() {
    use auditlog::internals::index::{HEADER_LEN, S_RFILT};
    let (_t, dir) = indexed_log();
    let sealed = index_files(&dir, "idx");
    // ev-220 is started only on day 1 (the second sealed segment).
    let found = |id: &str| {
        let mut eng = auditlog::QueryEngine::open(&dir).expect("engine");
        eng.get_run(id).expect("lookup").is_some()
    };
    assert!(found("ev-220") && found("ev-0"));
    let mut b = fs::read(&sealed[1]).expect("read index");
    let at = HEADER_LEN + 16 * S_RFILT;
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (off, len) = (word(at), word(at + 8));
    assert!(len >= 64, "a sealed image stores its filter");
    b[off..off + len].fill(0);
    crate::fuzz_shared::fix_up_index(&mut b);
    fs::write(&sealed[1], &b).expect("write index");
    assert!(
        !found("ev-220"),
        "the forged filter is believed until checked"
    );
    let plain = VerifyOptionsFor::Plain.opts();
    let err = auditlog::verify_with(&dir, &plain, |_, _| {}).expect_err("a forged filter");
    assert!(err.to_string().contains("quarantine"), "{err}");
    assert!(found("ev-220"));
    auditlog::verify_with(&dir, &plain, |_, _| {}).expect("rebuilt");
}

/// After retention dropped the oldest segment, the newer images still name
/// it as where some of their runs were started before (their shadows): no
/// one can rebuild that part, so the check takes the stored word for those
/// references only, and the log verifies.
#[test]
fn plain_verify_after_retention_accepts_shadows_into_dropped_segments() {
    let (_t, dir) = indexed_log();
    let log = open(&dir);
    let report = log.retain(DAY0 + DAY_US).expect("retain");
    assert_eq!(report.dropped.len(), 1);
    log.close().expect("close");
    let r = auditlog::verify_with(&dir, &VerifyOptionsFor::Plain.opts(), |_, _| {})
        .expect("verifies after retention");
    assert!(r.indexes_checked >= 1);
    let deep = auditlog::VerifyOptions {
        deep: true,
        ..auditlog::VerifyOptions::default()
    };
    auditlog::verify_with(&dir, &deep, |_, _| {}).expect("--deep too");
}

enum VerifyOptionsFor {
    Plain,
    ReadOnly,
}

impl VerifyOptionsFor {
    fn opts(self) -> auditlog::VerifyOptions {
        auditlog::VerifyOptions {
            read_only: matches!(self, VerifyOptionsFor::ReadOnly),
            ..auditlog::VerifyOptions::default()
        }
    }
}
