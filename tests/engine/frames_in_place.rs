//! Frames from another process (`EncodedBatch::from_frames`, the server's
//! check of a socket client's batch): the in-place check (strings borrowed
//! from the frame) accepts exactly what the owned decode and its checks
//! accept, over events of every kind and every small mutation of their
//! bytes; and the JSON texts are checked, as the strict decoder checks them.

use auditlog::event::borrowed::EventRef;
use auditlog::event::json::{check_incoming, check_incoming_ref, validate_event, validate_ref};
use auditlog::internals::codec::{
    check_stored_in_place, decode_event, decode_event_ref, decode_event_viewed, decode_stored,
    decode_stored_owned, encode_event,
};
use auditlog::internals::frame::{write_frame, REC_EVENT};
use auditlog::{
    EncodedBatch, Error, Event, EventError, Json, RunFinished, RunLog, RunStarted, ToolCall,
};

use crate::support::DAY0;

fn enc(e: &Event) -> Vec<u8> {
    let mut v = Vec::new();
    encode_event(e, &mut v).unwrap();
    v
}

fn json(t: &str) -> Json {
    Json::parse(t).unwrap()
}

/// Good events of every kind, with and without unknown fields.
fn good_events() -> Vec<Event> {
    let started = Event::run_started(
        "r-1",
        DAY0,
        RunStarted {
            skill_id: "s".into(),
            caller_id: "c".into(),
            channel_id: "ch".into(),
            parent_run_id: "p".into(),
            inputs: json(r#"{"q":"ünï","n":[1,2,{"a":null}]}"#),
            dry_run: true,
        },
    );
    let log = Event::run_log(
        "r-1",
        DAY0 + 1,
        RunLog {
            seq: 300,
            event_type: "step".into(),
            payload: json(r#"["a",1.5,true]"#),
        },
    );
    let finished = Event::run_finished(
        "r-1",
        DAY0 + 2,
        RunFinished {
            status: "error".into(),
            output: "out".into(),
            error: "boom".into(),
            tool_calls: 3,
            runtime_seconds: 1.25,
            input_tokens: 10,
            output_tokens: 1 << 40,
            thinking_tokens: 0,
        },
    );
    let call = Event::tool_call(
        "",
        DAY0 + 3,
        ToolCall {
            call_id: "c-1".into(),
            channel_id: "sess".into(),
            tool: "fs.read".into(),
            duration_ms: Some(12.5),
            input_bytes: Some(7),
            result_bytes: None,
            exit_code: Some(-1),
            http_status: Some(200),
            payload: json(r#"{"k":"v"}"#),
            ..ToolCall::default()
        },
    );
    let mut with_extra = log.clone().with_replace();
    with_extra
        .extra
        .push(("gen_ai.agent.id".into(), json(r#""agent-7""#)));
    with_extra
        .extra
        .push(("_ingest".into(), json(r#"{"k":1}"#)));
    let mut many_extra = call.clone();
    for i in 0..12 {
        many_extra
            .extra
            .push((format!("x{i}"), json(&i.to_string())));
    }
    vec![started, log, finished, call, with_extra, many_extra]
}

/// Events the codec encodes but the rules refuse, one per rule.
fn bad_events() -> Vec<Event> {
    let g = good_events();
    let mut out = Vec::new();
    let mut e = g[0].clone();
    e.run_id = String::new();
    out.push(e);
    let mut e = g[0].clone();
    e.run_id = "r".repeat(5000);
    out.push(e);
    out.push(Event {
        ts: -1,
        ..g[1].clone()
    });
    let mut e = g[0].clone();
    if let auditlog::EventData::RunStarted(s) = &mut e.data {
        s.inputs = Json::trusted("null".into());
    }
    out.push(e);
    let mut e = g[0].clone();
    if let auditlog::EventData::RunStarted(s) = &mut e.data {
        s.inputs = Json::trusted("{\"q\":".into());
    }
    out.push(e);
    let mut e = g[1].clone();
    if let auditlog::EventData::RunLog(l) = &mut e.data {
        l.payload = Json::trusted(" 1".into());
    }
    out.push(e);
    let mut e = g[2].clone();
    if let auditlog::EventData::RunFinished(f) = &mut e.data {
        f.status = "running".into();
    }
    out.push(e);
    let mut e = g[2].clone();
    if let auditlog::EventData::RunFinished(f) = &mut e.data {
        f.runtime_seconds = f64::INFINITY;
    }
    out.push(e);
    for edit in [
        (|c: &mut ToolCall| c.http_status = Some(1000)) as fn(&mut ToolCall),
        |c| c.duration_ms = Some(f64::NAN),
        |c| c.payload = Json::trusted(String::new()),
        |c| c.payload = Json::trusted("[".repeat(200)),
        |c| c.tool = "t".repeat(2000),
    ] {
        let mut e = g[3].clone();
        if let auditlog::EventData::ToolCall(c) = &mut e.data {
            edit(c);
        }
        out.push(e);
    }
    for (k, v) in [
        ("run_id", "1"),
        ("x", "1"),
        ("replace", "\"yes\""),
        ("y", "{bad"),
    ] {
        let mut e = g[1].clone();
        e.extra.push(("x".into(), Json::trusted("2".into())));
        e.extra.push((k.into(), Json::trusted(v.into())));
        out.push(e);
    }
    let mut e = g[5].clone();
    e.extra.push(("x3".into(), json("0")));
    out.push(e);
    out
}

/// The owned path's answer and the in-place one agree for `body`:
/// both accept (and read the same event) or both refuse; where both
/// decode, the rules give the same error.
fn same_answer(body: &[u8]) {
    let owned = decode_event(body);
    let borrowed = decode_event_ref(body);
    if let (Ok(o), Ok(b)) = (&owned, &borrowed) {
        // Compared by their Debug text: NaN is not equal to itself.
        assert_eq!(
            format!("{:?}", EventRef::of(o)),
            format!("{b:?}"),
            "the two decodes differ: {body:?}"
        );
        assert_eq!(validate_event(o), validate_ref(b), "{body:?}");
        assert_eq!(check_incoming(o), check_incoming_ref(b), "{body:?}");
    }
    if borrowed.is_ok() {
        assert!(owned.is_ok(), "only the in-place decode accepts {body:?}");
    }
    if let Ok(o) = &owned {
        // The in-place decode refuses system events only.
        assert_eq!(borrowed.is_ok(), !o.is_system(), "{body:?}");
    }
    let owned_ok = owned.is_ok_and(|o| check_incoming(&o).is_ok());
    let borrowed_ok = borrowed.is_ok_and(|b| check_incoming_ref(&b).is_ok());
    assert_eq!(owned_ok, borrowed_ok, "{body:?}");
    if owned_ok {
        // What is accepted from a client, every reader accepts.
        assert!(decode_stored(body).is_ok(), "{body:?}");
    }
}

/// Good and bad bodies of every kind, a system event among them.
fn base_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = good_events().iter().chain(&bad_events()).map(enc).collect();
    // A system event: the owned decode reads it, the rules refuse it
    // ("kind"); the in-place decode refuses it and leaves the answer to
    // the owned path.
    let checkpoint = auditlog::system::SystemRecord::Checkpoint(auditlog::system::TreeCheckpoint {
        tree_size: 3,
        root: "ab".into(),
        signed_at: DAY0,
        note: "n".into(),
    });
    bodies.push(enc(&Event {
        run_id: String::new(),
        ts: DAY0,
        data: auditlog::EventData::System(Box::new(checkpoint)),
        extra: Vec::new(),
    }));
    bodies
}

/// Call `f` on every base body and every small mutation of it (cut short,
/// one byte longer, each byte replaced); how many bodies that was.
fn each_mutated_body(mut f: impl FnMut(&[u8])) -> usize {
    let mut count = 0usize;
    for base in base_bodies() {
        f(&base);
        count += 1;
        for cut in 0..base.len() {
            f(&base[..cut]);
            count += 1;
        }
        let mut longer = base.clone();
        longer.push(0);
        f(&longer);
        for i in 0..base.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xfb, 0xff, base[i].wrapping_add(1)] {
                let mut m = base.clone();
                m[i] = v;
                f(&m);
                count += 1;
            }
        }
    }
    count
}

#[test]
fn the_in_place_check_accepts_exactly_what_the_owned_one_does() {
    let count = each_mutated_body(same_answer);
    assert!(count > 10_000, "{count} bodies");
}

/// Replay's check-ahead thread checks each stored event in place and the
/// caller then decodes it without the checks: that check must give the
/// strict decoder's answer for every body, error text included.
#[test]
fn the_in_place_stored_check_gives_the_strict_decoders_answer() {
    let (mut accepted, mut refused) = (0usize, 0usize);
    let count = each_mutated_body(|body| {
        let strict = decode_stored_owned(body).map(|_| ());
        let in_place = check_stored_in_place(body);
        assert_eq!(in_place, strict, "{body:?}");
        match strict {
            Ok(()) => {
                accepted += 1;
                // What the caller then does: the plain decode reads it.
                assert!(decode_event(body).is_ok(), "{body:?}");
            }
            Err(_) => refused += 1,
        }
    });
    assert!(count > 10_000, "{count} bodies");
    assert!(accepted > 100 && refused > 1_000, "{accepted} {refused}");
}

/// Every strict read goes through `decode_stored`, which now reads the
/// body in place and copies the event out of the view: for every body it
/// must give what the owned decode and its rules give (`decode_stored_owned`),
/// the same event or the same error.
#[test]
fn the_strict_decoder_in_place_gives_the_owned_strict_decoders_answer() {
    let (mut accepted, mut refused) = (0usize, 0usize);
    let count = each_mutated_body(|body| {
        let in_place = decode_stored(body);
        assert_eq!(in_place, decode_stored_owned(body), "{body:?}");
        match in_place {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    });
    assert!(count > 10_000, "{count} bodies");
    assert!(accepted > 100 && refused > 1_000, "{accepted} {refused}");
}

/// Replay's check-ahead caller builds events out of the in-place view
/// (`decode_event_viewed`): the very event the owned decode builds, or its
/// error, for every body.
#[test]
fn the_event_copied_from_the_view_is_the_owned_decoders_event() {
    // Compared by their encodings: bit for bit, NaN included.
    let same = |a: &Event, b: &Event| enc(a) == enc(b);
    let mut decoded = 0usize;
    let count = each_mutated_body(
        |body| match (decode_event_viewed(body), decode_event(body)) {
            (Ok(viewed), Ok(owned)) => {
                decoded += 1;
                assert!(same(&viewed, &owned), "{body:?}");
                // A view copied out is the event the view was read from.
                if let Ok(view) = decode_event_ref(body) {
                    assert!(view.to_event().is_some_and(|e| same(&e, &owned)));
                }
            }
            (viewed, owned) => assert_eq!(viewed.err(), owned.err(), "{body:?}"),
        },
    );
    assert!(count > 10_000, "{count} bodies");
    assert!(decoded > 1_000, "{decoded}");
}

/// One batch of frames, as a client encodes it.
fn frames_of(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        write_frame(&mut out, REC_EVENT, &enc(e));
    }
    out
}

fn refusal(r: auditlog::Result<EncodedBatch>) -> (usize, EventError) {
    match r {
        Err(Error::InvalidEvent { index, source }) => (index, source),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn frames_with_bad_json_texts_are_refused_naming_the_field() {
    let g = good_events();
    for (bad, field) in [(4, "inputs"), (5, "payload"), (16, "y")] {
        let b = &bad_events()[bad];
        let frames = frames_of(&[g[0].clone(), b.clone()]);
        let (index, e) = refusal(EncodedBatch::from_frames(
            frames,
            None,
            |_, _| false,
            |_, _| Ok(false),
        ));
        assert_eq!((index, e.field.as_str()), (1, field), "{e}");
        assert!(e.reason.contains("JSON"), "{e}");
    }
}

#[test]
fn from_frames_gives_the_same_batch_and_errors_in_place_or_owned() {
    let g = good_events();
    let marker = ("_ingest".to_string(), json(r#"{"key":"k","n":9,"at":0}"#));
    let edit = |i: usize, ev: &mut Event| {
        let before = ev.extra.len();
        ev.extra.retain(|(k, _)| k != "_ingest");
        let mut changed = ev.extra.len() != before;
        if i == 0 {
            ev.extra.push(marker.clone());
            changed = true;
        }
        Ok(changed)
    };
    let mut events = g.clone();
    events.extend(g.iter().cloned());
    let frames = frames_of(&events);
    let fast = EncodedBatch::from_frames(
        frames.clone(),
        None,
        |i, extra| i == 0 || extra.iter().any(|(k, _)| *k == "_ingest"),
        edit,
    )
    .unwrap();
    let all_owned = EncodedBatch::from_frames(frames, None, |_, _| true, edit).unwrap();
    assert_eq!(fast.frames(), all_owned.frames());
    assert_eq!(fast.len(), events.len());
    // Every bad event, at every place in a batch: the same index and error.
    for b in bad_events() {
        for at in [0, 3] {
            let mut evs = g.clone();
            evs.insert(at, b.clone());
            let frames = frames_of(&evs);
            let fast = refusal(EncodedBatch::from_frames(
                frames.clone(),
                None,
                |i, _| i == 0,
                edit,
            ));
            let owned = refusal(EncodedBatch::from_frames(frames, None, |_, _| true, edit));
            assert_eq!(fast, owned);
            assert_eq!(fast.0, at);
        }
    }
}

/// `auditlog serve` reads requests into buffers the writer hands back
/// (`recycle_frames_to`): the buffer comes back once the events are in,
/// whole (so nothing of it was cut or changed in the log's hands), and
/// the events read back are the ones sent.
#[test]
fn the_writer_hands_a_batchs_frame_buffer_back_after_the_append() {
    use auditlog::{Config, Log, ReplayRange};
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(Config::new(tmp.path().join("log"))).unwrap();
    let events = good_events();
    let frames = frames_of(&events);
    let back: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut batch =
        EncodedBatch::from_frames(frames.clone(), None, |_, _| false, |_, _| Ok(false)).unwrap();
    let sink = back.clone();
    batch.recycle_frames_to(Arc::new(move |buf| sink.lock().unwrap().push(buf)));
    let r = log.append_encoded(batch).unwrap().wait().unwrap();
    assert_eq!(r.last + 1 - r.first, events.len() as u64);
    let given = back.lock().unwrap().clone();
    assert_eq!(given, vec![frames], "the same bytes come back, once");
    let stored: Vec<Event> = log
        .reader()
        .replay(ReplayRange::default())
        .map(|x| x.unwrap().1)
        .collect();
    assert_eq!(stored, events);
    log.close().unwrap();
}

/// `run_log` tool calls (the events whose payload an index build parses):
/// payloads that are valid, invalid, not objects, with repeated or null
/// call keys, whitespace around, or nested too deeply.
fn log_call_bodies() -> Vec<Vec<u8>> {
    let payloads = [
        r#"{"tool":"fs.write","engine":"mcp","status":"error","error_type":"Timeout","workspace_id":"w","duration_ms":12.5,"args":{"p":"/x","n":[1,{"k":null}]}}"#,
        r#"{"tool":null,"tool":"b"}"#,
        r#"{"tool":"a","x":"\ud800"}"#,
        r#"["fs.read","e"]"#,
        r#""tool""#,
        "{\"a\":1,}",
        " {}",
        "{}\n",
        "{} {}",
    ];
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
    let mut bodies = Vec::new();
    for (i, p) in payloads.iter().copied().chain([deep.as_str()]).enumerate() {
        let mut ev = Event::run_log(
            "r-1",
            DAY0 + 1,
            RunLog {
                seq: i as u64,
                event_type: "tool_call".into(),
                payload: Json::trusted(p.into()),
            },
        );
        if i % 3 == 0 {
            ev.extra.push(("x".into(), Json::trusted("{bad".into())));
        }
        bodies.push(enc(&ev));
    }
    bodies
}

/// An index build decodes with `index::decode_indexed`, which checks a
/// `run_log` tool call's payload in the parse that reads its call fields
/// (issue 11, round 6). For every body (and every one-byte change of the
/// tool-call bodies) it gives what round 5's decoder gave (the payload's
/// own check, then `call_entry`'s parse): the same event and call, or the
/// same error, word for word; and where the strict decoder refuses a body
/// for something the index checks, the same error as the strict decoder.
#[test]
fn the_index_builds_one_parse_gives_the_two_pass_answer() {
    use auditlog::internals::index::{call_entry, decode_indexed, decode_indexed_two_pass};
    let (mut calls, mut refused) = (0usize, 0usize);
    let mut check = |body: &[u8]| {
        let one = decode_indexed(body);
        let two = decode_indexed_two_pass(body);
        match (&one, &two) {
            (Ok(i), Ok(e)) => {
                let ev = i.to_event().expect("an indexed event reads back owned");
                assert_eq!(enc(&ev), enc(e), "{body:?}");
                assert_eq!(i.call(), call_entry(e), "{body:?}");
                calls += usize::from(i.call().is_some_and(|c| c.from_log));
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "{body:?}");
                // Whatever it refuses, the strict decoder refuses the same way.
                assert_eq!(Err(a.clone()), decode_stored_owned(body).map(|_| ()));
                refused += 1;
            }
            _ => panic!("{body:?}: {:?} vs {:?}", one.map(|i| i.to_event()), two),
        }
    };
    each_mutated_body(&mut check);
    for base in log_call_bodies() {
        check(&base);
        for i in 0..base.len() {
            for v in [
                b' ',
                b'"',
                b'{',
                b'}',
                b'[',
                b',',
                b'\\',
                0x01,
                base[i].wrapping_add(1),
            ] {
                let mut m = base.clone();
                m[i] = v;
                check(&m);
            }
        }
    }
    assert!(calls > 100 && refused > 1_000, "{calls} {refused}");
}

/// The Python binding's stage encodes single appends one at a time
/// (`BatchBuilder`) instead of keeping owned events for `encode_parsed`:
/// the stored bytes must be the same, over every kind and every valid
/// event a one-byte edit of their encodings yields, in batches of one, a
/// few and many, and built from parts joined with `append`.
#[test]
fn a_batch_built_one_event_at_a_time_is_the_parsed_batchs_bytes() {
    let mut valid: Vec<Event> = Vec::new();
    each_mutated_body(|body| {
        if let Ok(ev) = decode_event(body) {
            if validate_event(&ev).is_ok() {
                valid.push(ev);
            }
        }
    });
    assert!(valid.len() > 100, "{} valid edited events", valid.len());
    for size in [1usize, 3, 64, valid.len()] {
        for chunk in valid.chunks(size) {
            let want = EncodedBatch::encode_parsed(chunk, None).unwrap();
            let mut whole = auditlog::BatchBuilder::default();
            let mut parts = auditlog::BatchBuilder::with_capacity(4, 1024);
            let (head, tail) = chunk.split_at(chunk.len() / 2);
            for ev in chunk {
                whole.push_checked(ev).unwrap();
            }
            for ev in head {
                parts.push_checked(ev).unwrap();
            }
            let mut rest = auditlog::BatchBuilder::default();
            for ev in tail {
                rest.push_checked(ev).unwrap();
            }
            parts.append(&mut rest);
            assert!(rest.is_empty());
            assert_eq!((whole.len(), whole.bytes()), (chunk.len(), want.bytes()));
            let (whole, parts) = (whole.finish(), parts.finish());
            assert_eq!(whole.frames(), want.frames());
            assert_eq!(parts.frames(), want.frames());
            assert_eq!(whole.len(), want.len());
        }
    }
}

/// An event over the size limit is refused as `encode_parsed` refuses it,
/// and leaves what was pushed before as it was.
#[test]
fn a_batch_builder_refuses_an_oversized_event_and_keeps_the_rest() {
    let good = good_events();
    let mut b = auditlog::BatchBuilder::default();
    b.push_checked(&good[0]).unwrap();
    let before = b.bytes();
    let mut big = good[1].clone();
    big.run_id = "r".repeat(auditlog::event::MAX_EVENT_BYTES + 1);
    let parsed = EncodedBatch::encode_parsed(std::slice::from_ref(&big), None);
    assert!(matches!(parsed, Err(Error::EventTooLarge { .. })));
    assert!(matches!(
        b.push_checked(&big),
        Err(Error::EventTooLarge { index: 1, .. })
    ));
    assert_eq!((b.len(), b.bytes()), (1, before));
    b.push_checked(&good[2]).unwrap();
    let want = EncodedBatch::encode_parsed(&[good[0].clone(), good[2].clone()], None).unwrap();
    assert_eq!(b.finish().frames(), want.frames());
}
