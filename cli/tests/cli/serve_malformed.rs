//! Malformed requests of every kind get a clear error and harm nothing:
//! the log holds exactly what was good, and the server goes on.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use auditlog_client::proto::{self, op, status};

use crate::serve_support::*;
use crate::support::*;

/// Send raw bytes on a fresh socket connection, read one answer frame.
fn socket_raw(path: &std::path::Path, bytes: &[u8], shut_write: bool) -> Option<proto::Frame> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    s.write_all(bytes).unwrap();
    if shut_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    proto::read_frame(&mut s, 1 << 20).ok()
}

fn frame(kind: u8, key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    proto::write_header(&mut out, kind, 9, key, body.len());
    out.extend_from_slice(body);
    out
}

fn answer_json(f: &proto::Frame) -> serde_json::Value {
    serde_json::from_slice(&f.body).unwrap()
}

#[test]
fn bad_socket_frames_are_answered_and_store_nothing() {
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--no-http", "--max-request-bytes", "65536"]);
    let sock = server.socket.clone();
    let good = start_line("good-1", DAY0);

    // Over the size limit: TOO_LARGE, then the connection closes.
    let mut big = Vec::new();
    proto::write_header(&mut big, op::APPEND_JSONL, 1, b"", 1 << 20);
    let f = socket_raw(&sock, &big, false).expect("an answer");
    assert_eq!(f.kind, status::TOO_LARGE);
    assert!(answer_json(&f)["error"]
        .as_str()
        .unwrap()
        .contains("--max-request-bytes"));

    // A header cut short, and a body cut short.
    let _ = socket_raw(
        &sock,
        &frame(op::APPEND_JSONL, b"", good.as_bytes())[..10],
        true,
    );
    let whole = frame(op::APPEND_JSONL, b"", good.as_bytes());
    let f = socket_raw(&sock, &whole[..whole.len() - 5], true).expect("an answer");
    assert_eq!(f.kind, status::BAD_REQUEST);
    assert!(answer_json(&f)["error"]
        .as_str()
        .unwrap()
        .contains("cut short"));

    // Flags must be 0; keys are printable ASCII.
    let mut flagged = frame(op::APPEND_JSONL, b"", good.as_bytes());
    flagged[5] = 1;
    assert_eq!(
        socket_raw(&sock, &flagged, false).unwrap().kind,
        status::BAD_REQUEST
    );
    let f = socket_raw(
        &sock,
        &frame(op::APPEND_JSONL, b"a key", good.as_bytes()),
        false,
    )
    .unwrap();
    assert_eq!(f.kind, status::BAD_REQUEST);
    assert!(answer_json(&f)["error"]
        .as_str()
        .unwrap()
        .contains("idempotency key"));

    // Unknown op, then a good request on the same connection.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&frame(0x7f, b"", b"")).unwrap();
    let f = proto::read_frame(&mut s, 1 << 20).unwrap();
    assert_eq!(f.kind, status::BAD_REQUEST);
    assert!(answer_json(&f)["error"]
        .as_str()
        .unwrap()
        .contains("unknown op"));

    // Invalid JSON and an invalid field: the record and field are named,
    // and the good line beside them is not stored either.
    let body = format!(
        "{good}{{\"kind\":\"run_started\",\"run_id\":\"x\"\n{}",
        start_line("", DAY0)
    );
    s.write_all(&frame(op::APPEND_JSONL, b"", body.as_bytes()))
        .unwrap();
    let f = proto::read_frame(&mut s, 1 << 20).unwrap();
    assert_eq!(f.kind, status::BAD_REQUEST);
    let v = answer_json(&f);
    assert_eq!(
        (v["record"].as_u64(), v["line"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["errors"][1]["field"], "run_id", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nothing stored"),
        "{v}"
    );

    // Frames: a flipped CRC, lengths that do not tile, a body that is no event.
    let evs = [ev(1, DAY0), ev(2, DAY0)];
    let batch = auditlog::EncodedBatch::encode(&evs).unwrap();
    let mut flipped = batch.frames().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    s.write_all(&frame(op::APPEND_FRAMES, b"", &flipped))
        .unwrap();
    let v = answer_json(&proto::read_frame(&mut s, 1 << 20).unwrap());
    assert_eq!(
        (v["record"].as_u64(), v["field"].as_str()),
        (Some(1), Some("frame")),
        "{v}"
    );
    s.write_all(&frame(op::APPEND_FRAMES, b"", &batch.frames()[..20]))
        .unwrap();
    let v = answer_json(&proto::read_frame(&mut s, 1 << 20).unwrap());
    assert_eq!(v["field"], "frame", "{v}");
    let mut junk = Vec::new();
    auditlog::internals::frame::write_frame(
        &mut junk,
        auditlog::internals::frame::REC_EVENT,
        &[0xff; 40],
    );
    s.write_all(&frame(op::APPEND_FRAMES, b"", &junk)).unwrap();
    let v = answer_json(&proto::read_frame(&mut s, 1 << 20).unwrap());
    assert_eq!(v["field"], "body", "{v}");
    // A JSON text that is not JSON (bincode reads it as a plain string):
    // refused, naming the record and field; every reader would have
    // refused the stored event as corrupt.
    let mut bad_json = ev(3, DAY0);
    bad_json
        .extra
        .push(("note".into(), auditlog::Json::trusted("{nope".into())));
    let batch = auditlog::EncodedBatch::encode(&[ev(4, DAY0), bad_json]).unwrap();
    s.write_all(&frame(op::APPEND_FRAMES, b"", batch.frames()))
        .unwrap();
    let v = answer_json(&proto::read_frame(&mut s, 1 << 20).unwrap());
    assert_eq!(
        (v["record"].as_u64(), v["field"].as_str()),
        (Some(1), Some("note")),
        "{v}"
    );

    // Calls: not JSON, an unknown method, a missing parameter.
    for (body, says) in [
        (&b"{nope"[..], "not JSON"),
        (br#"{"method":"drop_everything"}"#, "unknown method"),
        (br#"{"method":"get_run"}"#, "`id` is required"),
    ] {
        s.write_all(&frame(op::CALL, b"", body)).unwrap();
        let f = proto::read_frame(&mut s, 1 << 20).unwrap();
        assert_eq!(f.kind, status::BAD_REQUEST);
        assert!(
            answer_json(&f)["error"].as_str().unwrap().contains(says),
            "{says}"
        );
    }

    // Still serving: the good line alone is stored.
    s.write_all(&frame(op::APPEND_JSONL, b"k-good", good.as_bytes()))
        .unwrap();
    let f = proto::read_frame(&mut s, 1 << 20).unwrap();
    assert_eq!(f.kind, status::OK, "{}", String::from_utf8_lossy(&f.body));
    drop(s);
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(run_ids(&dir), ["good-1"]);
    assert!(auditlog::verify(&dir, None, |_, _| {}).is_ok());
}

#[test]
fn bad_http_requests_are_answered_and_store_nothing() {
    let (_t, dir) = scratch();
    let server = Server::start(
        &dir,
        &["--http", "127.0.0.1:0", "--max-request-bytes", "65536"],
    );
    let a = server.addr();
    let jsonl = [("content-type", "application/x-ndjson")];

    let r = http(
        a,
        "POST",
        "/v1/events",
        &[("content-type", "text/html")],
        b"<p>",
    )
    .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    let r = http(a, "POST", "/v1/events", &jsonl, b"{\"kind\":").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        (r.json()["record"].as_u64(), r.json()["field"].as_str()),
        (Some(0), Some("kind")),
        "{}",
        r.text()
    );
    let r = http(
        a,
        "POST",
        "/v1/events",
        &[("content-type", "application/json")],
        b"[1,",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not a JSON array"),
        "{}",
        r.text()
    );
    let r = http(a, "POST", "/v1/events", &jsonl, &vec![b' '; 70_000]).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    // Chunked, over the limit: refused while reading.
    let mut chunked = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 30_000).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 30_000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(http_raw(a, &chunked).unwrap().status, 413);
    // A body cut short: the connection closes before Content-Length bytes.
    let mut s = std::net::TcpStream::connect(a).unwrap();
    let line = start_line("cut-1", DAY0);
    write!(s, "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n{}", line.len() + 100, line).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    let r = http(
        a,
        "POST",
        "/v1/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("idempotency-key", "white space"),
        ],
        line.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let r = http(
        a,
        "POST",
        "/v1/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
        line.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 415);

    // OTLP: invalid protobuf, invalid JSON, a wrong content type.
    let proto_ct = [("content-type", "application/x-protobuf")];
    let r = http(
        a,
        "POST",
        "/v1/traces",
        &proto_ct,
        &[0x0a, 0xff, 0xff, 0xff],
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert!(r.text().contains("invalid protobuf"), "{}", r.text());
    let r = http(
        a,
        "POST",
        "/v1/logs",
        &[("content-type", "application/json")],
        b"{\"resourceLogs\":[{]}",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{}",
        r.text()
    );
    let r = http(
        a,
        "POST",
        "/v1/traces",
        &[("content-type", "text/plain")],
        b"x",
    )
    .unwrap();
    assert_eq!(r.status, 415);

    // Paths and methods.
    assert_eq!(get(a, "/v2/nothing").status, 404);
    assert_eq!(get(a, "/v1/runs/unknown-run").status, 404);
    assert_eq!(
        http(a, "DELETE", "/v1/events", &[], b"").unwrap().status,
        405
    );
    assert_eq!(get(a, "/v1/runs?since=yesterday").status, 400);
    assert_eq!(get(a, "/v1/search?q=a%20AND%20(").status, 400);
    assert_eq!(
        http_raw(a, b"NOT HTTP AT ALL\r\n\r\n")
            .map(|r| r.status)
            .unwrap_or(400),
        400
    );

    // Nothing stored, still healthy; then a good request works.
    let h = get(a, "/healthz").json();
    assert_eq!(
        (h["ok"].as_bool(), h["head_lsn"].as_u64()),
        (Some(true), Some(0)),
        "{h}"
    );
    let r = http(
        a,
        "POST",
        "/v1/events",
        &jsonl,
        start_line("good-1", DAY0).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let m = get(a, "/metrics").text();
    assert!(m.contains("auditlog_too_large_total 2"), "{m}");
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(run_ids(&dir), ["good-1"]);
}
