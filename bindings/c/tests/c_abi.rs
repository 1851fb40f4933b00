//! The C ABI from Rust: the header is what cbindgen generates, and every
//! export keeps its promises (status codes, error messages, ownership).

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr;

use auditlog_c::*;

#[test]
fn header_matches_cbindgen() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("config");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let path = crate_dir.join("include/auditlog.h");
    if std::env::var_os("AUDITLOG_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/auditlog.h is stale: regenerate it with \
         `AUDITLOG_BLESS_HEADER=1 cargo test -p auditlog-c --test c_abi header` and commit it"
    );
}

fn last_error() -> String {
    let p = auditlog_last_error();
    assert!(!p.is_null(), "a failing call leaves a message");
    // SAFETY: the library's NUL-terminated message, valid until our next call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn open(dir: &Path) -> *mut AuditlogStore {
    let d = CString::new(dir.to_str().unwrap()).unwrap();
    let mut s = ptr::null_mut();
    assert_eq!(
        auditlog_open(d.as_ptr(), ptr::null(), &mut s),
        AuditlogStatus::Ok
    );
    assert!(auditlog_last_error().is_null());
    s
}

fn query(s: *const AuditlogStore, req: &str) -> Result<String, (AuditlogStatus, String)> {
    let mut out: *mut c_char = ptr::null_mut();
    let mut len = 0usize;
    let st = auditlog_query(s, req.as_ptr(), req.len(), &mut out, &mut len);
    if st != AuditlogStatus::Ok {
        return Err((st, last_error()));
    }
    // SAFETY: a NUL-terminated buffer of `len` bytes we now own.
    let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    assert_eq!(text.len(), len);
    auditlog_free(out);
    Ok(text)
}

fn append(s: *const AuditlogStore, jsonl: &str, flags: u32) -> AuditlogStatus {
    let mut r = ptr::null_mut();
    let st = auditlog_append(s, jsonl.as_ptr(), jsonl.len(), flags, &mut r);
    if st == AuditlogStatus::Ok {
        let (mut first, mut last) = (0u64, 0u64);
        assert_eq!(
            auditlog_receipt_wait(r, -1, &mut first, &mut last),
            AuditlogStatus::Ok
        );
        assert!(last >= first);
        auditlog_receipt_free(r);
    }
    st
}

#[test]
fn round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let start =
        r#"{"kind":"run_started","run_id":"r-1","ts":1000,"skill_id":"web","inputs":{"q":"x"}}"#;
    let log = r#"{"kind":"run_log","run_id":"r-1","ts":1001,"seq":0,"event_type":"note","payload":{"a":1}}"#;
    assert_eq!(
        append(s, &format!("{start}\n{log}\n"), 0),
        AuditlogStatus::Ok
    );

    // A finish of an unknown run with REQUIRE_RUN: NotFound, nothing written.
    let orphan = r#"{"kind":"run_finished","run_id":"nope","ts":5,"status":"ok"}"#;
    assert_eq!(
        append(s, orphan, AUDITLOG_APPEND_REQUIRE_RUN),
        AuditlogStatus::NotFound
    );
    assert!(last_error().contains("nope"), "{}", last_error());
    let fin = r#"{"kind":"run_finished","run_id":"r-1","ts":2000,"status":"ok","input_tokens":7}"#;
    assert_eq!(
        append(s, fin, AUDITLOG_APPEND_REQUIRE_RUN),
        AuditlogStatus::Ok
    );

    let run = query(s, r#"{"op":"get_run","id":"r-1"}"#).unwrap();
    assert!(
        run.contains(r#""status":"ok""#) && run.contains(r#""inputs":{"q":"x"}"#),
        "{run}"
    );
    let logs = query(s, r#"{"op":"logs","id":"r-1"}"#).unwrap();
    assert!(logs.contains(r#""payload":{"a":1}"#), "{logs}");
    assert_eq!(
        query(s, r#"{"op":"count","filter":{"skill":"web"}}"#).unwrap(),
        r#"{"count":1}"#
    );
    let last = query(s, r#"{"op":"last_run","skills":["web","other"]}"#).unwrap();
    assert!(last.contains(r#""other":null"#), "{last}");
    assert_eq!(
        query(s, r#"{"op":"get_run","id":"zz"}"#).unwrap_err().0,
        AuditlogStatus::NotFound
    );
    assert_eq!(
        query(s, r#"{"op":"chain","id":"zz"}"#).unwrap_err().0,
        AuditlogStatus::NotFound
    );

    // Bad input names what is wrong and where; nothing is written.
    let (st, msg) = query(s, r#"{"op":"nonsense"}"#).unwrap_err();
    assert_eq!(st, AuditlogStatus::InvalidArgument);
    assert!(msg.contains("nonsense"), "{msg}");
    let bad = format!("{start}\n{{\"kind\":\"run_started\",\"run_id\":\"\",\"ts\":1}}\n");
    assert_eq!(append(s, &bad, 0), AuditlogStatus::InvalidArgument);
    assert!(last_error().contains("line 2"), "{}", last_error());
    assert_eq!(append(s, "\n\n", 0), AuditlogStatus::InvalidArgument);
    let not_utf8 = [0xffu8, 0xfe];
    let st = auditlog_append(s, not_utf8.as_ptr(), 2, 0, ptr::null_mut());
    assert_eq!(st, AuditlogStatus::InvalidArgument);
    assert_eq!(query(s, r#"{"op":"count"}"#).unwrap(), r#"{"count":1}"#);

    // NULLs are errors, never crashes.
    assert_eq!(
        auditlog_append(ptr::null(), ptr::null(), 1, 0, ptr::null_mut()),
        AuditlogStatus::InvalidArgument
    );
    assert_eq!(
        auditlog_append(s, ptr::null(), 3, 0, ptr::null_mut()),
        AuditlogStatus::InvalidArgument
    );
    assert_eq!(
        auditlog_query(s, b"{}".as_ptr(), 2, ptr::null_mut(), ptr::null_mut()),
        AuditlogStatus::InvalidArgument
    );
    assert_eq!(
        auditlog_receipt_wait(ptr::null(), 0, ptr::null_mut(), ptr::null_mut()),
        AuditlogStatus::InvalidArgument
    );
    auditlog_free(ptr::null_mut());
    auditlog_receipt_free(ptr::null_mut());
    assert_eq!(auditlog_close(ptr::null_mut()), AuditlogStatus::Ok);

    let mut next = 0;
    assert_eq!(auditlog_flush(s, &mut next), AuditlogStatus::Ok);
    assert!(next >= 3);
    assert_eq!(auditlog_close(s), AuditlogStatus::Ok);

    // Reopened: everything acknowledged is there.
    let s = open(dir.path());
    assert!(query(s, r#"{"op":"get_run","id":"r-1"}"#)
        .unwrap()
        .contains("\"input_tokens\":7"));
    assert_eq!(auditlog_close(s), AuditlogStatus::Ok);
}

#[test]
fn open_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = CString::new(dir.path().to_str().unwrap()).unwrap();
    let mut s = ptr::null_mut();
    let opts = CString::new(r#"{"durablity":"never"}"#).unwrap();
    assert_eq!(
        auditlog_open(d.as_ptr(), opts.as_ptr(), &mut s),
        AuditlogStatus::InvalidArgument
    );
    assert!(last_error().contains("durablity"));
    let opts = CString::new(r#"{"durability":"interval:0"}"#).unwrap();
    assert_eq!(
        auditlog_open(d.as_ptr(), opts.as_ptr(), &mut s),
        AuditlogStatus::InvalidArgument
    );
    assert!(s.is_null());

    let held = open(dir.path());
    assert_eq!(
        auditlog_open(d.as_ptr(), ptr::null(), &mut s),
        AuditlogStatus::Locked
    );
    assert!(last_error().contains("already open"), "{}", last_error());
    assert_eq!(auditlog_close(held), AuditlogStatus::Ok);

    let missing = CString::new(dir.path().join("missing").to_str().unwrap()).unwrap();
    let no_create = CString::new(r#"{"create":false}"#).unwrap();
    assert_eq!(
        auditlog_open(missing.as_ptr(), no_create.as_ptr(), &mut s),
        AuditlogStatus::NotFound
    );
    // SAFETY: a static NUL-terminated string.
    assert!(!unsafe { CStr::from_ptr(auditlog_version()) }
        .to_bytes()
        .is_empty());
}

#[test]
fn receipt_timeout_is_not_a_failure_of_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ev = r#"{"kind":"run_started","run_id":"r","ts":1}"#;
    let mut r = ptr::null_mut();
    assert_eq!(
        auditlog_append(s, ev.as_ptr(), ev.len(), 0, &mut r),
        AuditlogStatus::Ok
    );
    let st = auditlog_receipt_wait(r, 0, ptr::null_mut(), ptr::null_mut());
    assert!(matches!(st, AuditlogStatus::Ok | AuditlogStatus::Timeout));
    assert_eq!(
        auditlog_receipt_wait(r, 10_000, ptr::null_mut(), ptr::null_mut()),
        AuditlogStatus::Ok
    );
    auditlog_receipt_free(r);
    assert_eq!(auditlog_close(s), AuditlogStatus::Ok);
}

#[test]
fn calls_from_many_threads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()) as usize;
    std::thread::scope(|sc| {
        for t in 0..4 {
            sc.spawn(move || {
                let s = s as *const AuditlogStore;
                for i in 0..50 {
                    let ev = format!(
                        r#"{{"kind":"run_started","run_id":"t{t}-{i}","ts":{i},"skill_id":"k"}}"#
                    );
                    assert_eq!(append(s, &ev, 0), AuditlogStatus::Ok);
                    query(s, r#"{"op":"count","filter":{"skill":"k"}}"#).unwrap();
                }
            });
        }
    });
    let s = s as *mut AuditlogStore;
    assert_eq!(
        query(s, r#"{"op":"count","filter":{"skill":"k"}}"#).unwrap(),
        r#"{"count":200}"#
    );
    assert_eq!(auditlog_close(s), AuditlogStatus::Ok);
}

#[test]
fn rows_answers_are_length_prefixed_bytes_freed_by_auditlog_free() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ev = r#"{"kind":"run_started","run_id":"r\u0000x","ts":7,"skill_id":"k"}"#;
    assert_eq!(append(s, ev, 0), AuditlogStatus::Ok);
    let req = r#"{"op":"list","filter":{"skill":"k"},"encoding":"rows"}"#;
    let mut out: *mut c_char = ptr::null_mut();
    let mut len = 0usize;
    let st = auditlog_query(s, req.as_ptr(), req.len(), &mut out, &mut len);
    assert_eq!(st, AuditlogStatus::Ok);
    // SAFETY: `len` bytes the library handed out (they hold a NUL).
    let b = unsafe { std::slice::from_raw_parts(out.cast::<u8>(), len) }.to_vec();
    auditlog_free(out);
    assert_eq!(
        u32::from_le_bytes(b[0..4].try_into().unwrap()),
        1,
        "one run"
    );
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 3);
    assert_eq!(&b[8..11], b"r\0x");
    let bad = r#"{"op":"list","encoding":"xml"}"#;
    let st = auditlog_query(s, bad.as_ptr(), bad.len(), &mut out, &mut len);
    assert_eq!(st, AuditlogStatus::InvalidArgument);
    assert!(last_error().contains("xml"), "{}", last_error());
    assert_eq!(auditlog_close(s), AuditlogStatus::Ok);
}

// ----- served handles (auditlog_connect) -----

/// `auditlog serve` on `dir` in a thread of this process (socket only,
/// no search); its socket once it accepts connections. It runs until the
/// test process ends.
fn serve(dir: &Path) -> std::path::PathBuf {
    let mut cfg = auditlog_server::ServeConfig::new(dir);
    cfg.http = None;
    cfg.search = false;
    let socket = cfg.socket_path();
    std::thread::spawn(move || auditlog_server::serve(cfg));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    socket
}

fn connect(
    socket: &Path,
    options: Option<&str>,
) -> Result<*mut AuditlogStore, (AuditlogStatus, String)> {
    let p = CString::new(socket.to_str().unwrap()).unwrap();
    let o = options.map(|o| CString::new(o).unwrap());
    let mut s = ptr::null_mut();
    let st = auditlog_connect(
        p.as_ptr(),
        o.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
        &mut s,
    );
    if st != AuditlogStatus::Ok {
        assert!(s.is_null(), "no handle on failure");
        return Err((st, last_error()));
    }
    Ok(s)
}

fn purge(s: *const AuditlogStore, cutoff: i64) -> String {
    let mut out: *mut c_char = ptr::null_mut();
    let mut len = 0usize;
    assert_eq!(
        auditlog_purge_older_than(s, cutoff, &mut out, &mut len),
        AuditlogStatus::Ok
    );
    // SAFETY: a NUL-terminated buffer we now own.
    let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    auditlog_free(out);
    text
}

/// The same calls on a log opened here and on a served one: the same
/// statuses, and byte for byte the same answers (JSON and rows).
#[test]
fn a_served_handle_answers_like_an_embedded_one() {
    let t = tempfile::tempdir().unwrap();
    let socket = serve(&t.path().join("served"));
    let embedded = open(&t.path().join("embedded"));
    let served = connect(&socket, Some(r#"{"retry_for_ms":5000}"#)).unwrap();
    let day = 86_400_000_000i64;
    let workload: Vec<(String, u32)> = vec![
        (
            format!(
                r#"{{"kind":"run_started","run_id":"p-1","ts":{day},"skill_id":"web.search","caller_id":"u-1","channel_id":"s-1","inputs":{{"q":"needle"}}}}"#
            ),
            0,
        ),
        (
            format!(
                concat!(
                    r#"{{"kind":"run_started","run_id":"c-1","ts":{},"skill_id":"web.fetch","caller_id":"u-1","parent_run_id":"p-1"}}"#,
                    "\n",
                    r#"{{"kind":"run_log","run_id":"c-1","ts":{},"seq":0,"event_type":"tool_call","payload":{{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000}}}}"#
                ),
                day + 10,
                day + 20
            ),
            AUDITLOG_APPEND_REQUIRE_RUN,
        ),
        (
            format!(
                r#"{{"kind":"run_finished","run_id":"c-1","ts":{},"status":"error","error":"upstream timeout","input_tokens":7}}"#,
                day + 30
            ),
            AUDITLOG_APPEND_REQUIRE_RUN,
        ),
        (
            format!(
                r#"{{"kind":"run_started","run_id":"d-1","ts":{},"skill_id":"web.search","dry_run":true}}"#,
                day + 40
            ),
            0,
        ),
        (
            format!(
                r#"{{"kind":"run_log","run_id":"p-1","ts":{},"seq":0,"event_type":"note","payload":[1]}}"#,
                day + 50
            ),
            AUDITLOG_APPEND_REQUIRE_RUN,
        ),
        // Refused, nothing written: an unknown run, a bad line, no event.
        (
            format!(r#"{{"kind":"run_finished","run_id":"ghost","ts":{day},"status":"ok"}}"#),
            AUDITLOG_APPEND_REQUIRE_RUN,
        ),
        (
            format!(
                r#"{{"kind":"run_log","run_id":"p-1","ts":{day},"seq":1,"event_type":"x"}}{}"#,
                "\n{\"kind\":\"run_started\",\"run_id\":\"\",\"ts\":1}"
            ),
            0,
        ),
        ("\n".to_string(), 0),
    ];
    for (jsonl, flags) in &workload {
        let a = append(embedded, jsonl, *flags);
        let msg_a = (a != AuditlogStatus::Ok).then(last_error);
        let b = append(served, jsonl, *flags);
        let msg_b = (b != AuditlogStatus::Ok).then(last_error);
        assert_eq!(a, b, "{jsonl}: {msg_a:?} / {msg_b:?}");
        if let (Some(a), Some(b)) = (&msg_a, &msg_b) {
            if a.contains("line ") {
                assert_eq!(a, b, "the same message for a bad line");
            }
        }
    }
    let mut requests = vec![
        r#"{"op":"get_run","id":"c-1"}"#.to_string(),
        r#"{"op":"get_run","id":"nope"}"#.into(),
        r#"{"op":"logs","id":"c-1"}"#.into(),
        r#"{"op":"logs","id":"nope"}"#.into(),
        r#"{"op":"list","filter":{}}"#.into(),
        r#"{"op":"list","filter":{"include_dry_run":true},"limit":2,"offset":1}"#.into(),
        r#"{"op":"list","filter":{"caller":""}}"#.into(),
        r#"{"op":"list","filter":{"parent":"p-1","status":"error"}}"#.into(),
        r#"{"op":"count","filter":{"skill":"web.search","include_dry_run":true}}"#.into(),
        r#"{"op":"count","filter":{"top_level":true}}"#.into(),
        r#"{"op":"children","id":"p-1"}"#.into(),
        r#"{"op":"chain","id":"c-1"}"#.into(),
        r#"{"op":"chain","id":"nope"}"#.into(),
        r#"{"op":"last_run","skills":["web.search","web.fetch","none"],"include_failed":true}"#
            .into(),
        r#"{"op":"last_run","skills":["web.fetch"]}"#.into(),
        format!(r#"{{"op":"finished_before","before":{}}}"#, day + 31),
        format!(
            r#"{{"op":"finished_before","before":{},"limit":1}}"#,
            day + 31
        ),
        r#"{"op":"errors"}"#.into(),
        format!(
            r#"{{"op":"errors","since":{},"until":{}}}"#,
            day + 21,
            day + 99
        ),
        r#"{"op":"nonsense"}"#.into(),
    ];
    let rows: Vec<String> = requests
        .iter()
        .filter(|r| {
            !r.contains("logs")
                && !r.contains("count")
                && !r.contains("last_run")
                && !r.contains("errors")
        })
        .map(|r| format!(r#"{},"encoding":"rows"}}"#, r.trim_end_matches('}')))
        .collect();
    requests.extend(rows);
    for req in &requests {
        let a = query_bytes(embedded, req);
        let b = query_bytes(served, req);
        match (&a, &b) {
            (Ok(a), Ok(b)) => assert!(
                a == b,
                "{req}:\n embedded {}\n served   {}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            ),
            (Err(a), Err(b)) => assert_eq!(a.0, b.0, "{req}: {} / {}", a.1, b.1),
            _ => panic!("{req}: {a:?} / {b:?}"),
        }
    }
    // Both keep every event acknowledged (the served one durable at once).
    let (mut next_a, mut next_b) = (0, 0);
    assert_eq!(auditlog_flush(embedded, &mut next_a), AuditlogStatus::Ok);
    assert_eq!(auditlog_flush(served, &mut next_b), AuditlogStatus::Ok);
    assert_eq!((next_a, next_b), (6, 6));
    // Retention: the same answer (nothing is old enough to drop).
    assert_eq!(purge(embedded, day), purge(served, day));
    assert_eq!(auditlog_close(embedded), AuditlogStatus::Ok);
    assert_eq!(auditlog_close(served), AuditlogStatus::Ok);
    // Closing a served handle leaves the server running.
    let again = connect(&socket, None).unwrap();
    assert_eq!(
        query(again, r#"{"op":"count","filter":{"include_dry_run":true}}"#).unwrap(),
        r#"{"count":3}"#
    );
    assert_eq!(auditlog_close(again), AuditlogStatus::Ok);
}

fn query_bytes(s: *const AuditlogStore, req: &str) -> Result<Vec<u8>, (AuditlogStatus, String)> {
    let mut out: *mut c_char = ptr::null_mut();
    let mut len = 0usize;
    let st = auditlog_query(s, req.as_ptr(), req.len(), &mut out, &mut len);
    if st != AuditlogStatus::Ok {
        return Err((st, last_error()));
    }
    // SAFETY: `len` bytes the library handed out.
    let b = unsafe { std::slice::from_raw_parts(out.cast::<u8>(), len) }.to_vec();
    auditlog_free(out);
    Ok(b)
}

#[test]
fn served_receipts_are_complete_and_threads_share_a_handle() {
    let t = tempfile::tempdir().unwrap();
    let socket = serve(&t.path().join("log"));
    let s = connect(&socket, None).unwrap();
    let ev = r#"{"kind":"run_started","run_id":"r","ts":1}"#;
    let mut r = ptr::null_mut();
    assert_eq!(
        auditlog_append(s, ev.as_ptr(), ev.len(), 0, &mut r),
        AuditlogStatus::Ok
    );
    let (mut first, mut last) = (9, 9);
    assert_eq!(
        auditlog_receipt_wait(r, 0, &mut first, &mut last),
        AuditlogStatus::Ok,
        "durable on return: a zero timeout is enough"
    );
    assert_eq!((first, last), (0, 0));
    auditlog_receipt_free(r);
    let s = s as usize;
    std::thread::scope(|sc| {
        for t in 0..4 {
            sc.spawn(move || {
                let s = s as *const AuditlogStore;
                for i in 0..25 {
                    let ev = format!(
                        r#"{{"kind":"run_started","run_id":"t{t}-{i}","ts":{i},"skill_id":"k"}}"#
                    );
                    assert_eq!(append(s, &ev, 0), AuditlogStatus::Ok);
                    query(s, r#"{"op":"count","filter":{"skill":"k"}}"#).unwrap();
                }
            });
        }
    });
    let s = s as *mut AuditlogStore;
    assert_eq!(
        query(s, r#"{"op":"count","filter":{"skill":"k"}}"#).unwrap(),
        r#"{"count":100}"#
    );
    assert_eq!(auditlog_close(s), AuditlogStatus::Ok);
}

#[test]
fn connect_errors_name_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nobody.sock");
    let (st, msg) = connect(&missing, Some(r#"{"retry_for":1}"#)).unwrap_err();
    assert_eq!(st, AuditlogStatus::InvalidArgument);
    assert!(msg.contains("retry_for"), "{msg}");
    let (st, msg) = connect(&missing, Some(r#"{"retry_for_ms":99999999}"#)).unwrap_err();
    assert_eq!(st, AuditlogStatus::InvalidArgument, "{msg}");
    // No server: an I/O error naming the socket once the retries ran out.
    let started = std::time::Instant::now();
    let (st, msg) = connect(&missing, Some(r#"{"retry_for_ms":300}"#)).unwrap_err();
    assert_eq!(st, AuditlogStatus::Io);
    assert!(msg.contains("nobody.sock"), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let mut s = ptr::null_mut();
    assert_eq!(
        auditlog_connect(ptr::null(), ptr::null(), &mut s),
        AuditlogStatus::InvalidArgument
    );
    let p = CString::new(missing.to_str().unwrap()).unwrap();
    assert_eq!(
        auditlog_connect(p.as_ptr(), ptr::null(), ptr::null_mut()),
        AuditlogStatus::InvalidArgument
    );
}
