//! Many client processes appending at once through the socket and through
//! HTTP, with retries; a SIGKILL of the server mid-load; every
//! acknowledged event stored exactly once.
//!
//! Client processes are this test binary run again with
//! `AUDITLOG_SERVE_CLIENT` set (see `client_process`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auditlog::{EncodedBatch, Event, RunStarted};
use auditlog_client::{Client, ClientConfig};
use serde_json::json;

use crate::serve_support::*;
use crate::support::*;

const CLIENT_ENV: &str = "AUDITLOG_SERVE_CLIENT";

fn events(prefix: &str, b: u64, size: u64) -> Vec<Event> {
    (0..size)
        .map(|i| {
            Event::run_started(
                format!("{prefix}-{b}-{i}"),
                DAY0 + (b * size + i) as i64,
                RunStarted {
                    skill_id: "load".into(),
                    caller_id: prefix.into(),
                    ..RunStarted::default()
                },
            )
        })
        .collect()
}

fn jsonl(evs: &[Event]) -> Vec<u8> {
    let mut s = String::new();
    for e in evs {
        auditlog::event::json::write_event(e, None, &mut s);
        s.push('\n');
    }
    s.into_bytes()
}

/// POST with the key until an answer that is not "retry" (or 60 s).
fn http_append(addr: &str, body: &[u8], key: &str) -> serde_json::Value {
    let addr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http(
            addr,
            "POST",
            "/v1/events",
            &[
                ("content-type", "application/x-ndjson"),
                ("idempotency-key", key),
            ],
            body,
        );
        match r {
            Ok(a) if a.status == 200 => return a.json(),
            Ok(a) if a.status == 503 || a.status == 429 => {
                let secs: u64 = a
                    .header("retry-after")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1);
                assert!(secs >= 1, "Retry-After is whole seconds");
            }
            Ok(a) => panic!("HTTP {}: {}", a.status, a.text()),
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "no answer for 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The body of a client process: append `batches` batches of `size`
/// events, each with its own key, re-sending every `dup_every`th one after
/// its answer (a retry that must store nothing); write every acknowledged
/// run id to the acks file.
#[test]
fn client_process() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let prefix = spec["prefix"].as_str().unwrap();
    let size = spec["size"].as_u64().unwrap();
    let dup_every = spec["dup_every"].as_u64().unwrap();
    let pause = Duration::from_millis(spec["pause_ms"].as_u64().unwrap_or(0));
    let mut acks = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec["acks"].as_str().unwrap())
        .unwrap();
    let socket = spec["mode"] == "socket";
    let client = socket.then(|| {
        let mut cfg = ClientConfig::new(spec["socket"].as_str().unwrap());
        cfg.retry_for = Duration::from_secs(60);
        // The server may be down when this starts (SIGKILL test).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Client::with_config(cfg.clone()) {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    for b in 0..spec["batches"].as_u64().unwrap() {
        let evs = events(prefix, b, size);
        let key = format!("{prefix}-key-{b}");
        let (first, last, dup) = match &client {
            Some(c) => {
                let batch = EncodedBatch::encode(&evs).unwrap();
                let a = c.append_encoded(&batch, &key).unwrap();
                assert_eq!(a.events, size);
                let again = (b % dup_every == 0).then(|| c.append_encoded(&batch, &key).unwrap());
                (
                    a.lsns.first,
                    a.lsns.last,
                    again.map(|x| (x.duplicate, x.lsns.first, x.lsns.last)),
                )
            }
            None => {
                let addr = spec["http"].as_str().unwrap();
                let body = jsonl(&evs);
                let a = http_append(addr, &body, &key);
                let again = (b % dup_every == 0).then(|| http_append(addr, &body, &key));
                let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
                (
                    n(&a, "first_lsn"),
                    n(&a, "last_lsn"),
                    again.map(|x| {
                        (
                            x["duplicate"] == true,
                            n(&x, "first_lsn"),
                            n(&x, "last_lsn"),
                        )
                    }),
                )
            }
        };
        if let Some((is_dup, f2, l2)) = dup {
            assert!(
                is_dup,
                "a retry with the same key must be answered as a duplicate"
            );
            assert_eq!(
                (f2, l2),
                (first, last),
                "a duplicate answers the first LSNs"
            );
        }
        let mut ids = String::new();
        for e in &evs {
            ids.push_str(&e.run_id);
            ids.push('\n');
        }
        acks.write_all(ids.as_bytes()).unwrap();
        std::thread::sleep(pause);
    }
}

fn spawn_client(spec: serde_json::Value) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "serve_clients::client_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT_ENV, spec.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_clients(children: Vec<Child>) {
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every acknowledged id stored exactly once, no id stored twice; the
/// number of acknowledged ids.
fn check_exactly_once(dir: &Path, acks: &[PathBuf]) -> usize {
    let mut stored: HashMap<String, u32> = HashMap::new();
    for (_, e) in replay_all(dir) {
        *stored.entry(e.run_id).or_default() += 1;
    }
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let mut acked = 0;
    for f in acks {
        for id in std::fs::read_to_string(f).unwrap_or_default().lines() {
            assert_eq!(
                stored.get(id),
                Some(&1),
                "acknowledged {id} is not stored once"
            );
            acked += 1;
        }
    }
    acked
}

fn specs(
    server: &Server,
    t: &Path,
    socket_clients: usize,
    http_clients: usize,
    batches: u64,
    size: u64,
    pause_ms: u64,
) -> (Vec<serde_json::Value>, Vec<PathBuf>) {
    let mut specs = Vec::new();
    let mut acks = Vec::new();
    for i in 0..socket_clients + http_clients {
        let mode = if i < socket_clients { "socket" } else { "http" };
        let ack = t.join(format!("acks-{i}"));
        specs.push(json!({
            "mode": mode, "prefix": format!("{mode}{i}"), "batches": batches, "size": size,
            "dup_every": 4, "pause_ms": pause_ms,
            "socket": server.socket, "http": server.http.map(|a| a.to_string()),
            "acks": ack,
        }));
        acks.push(ack);
    }
    (specs, acks)
}

#[test]
fn sixteen_client_processes_socket_and_http_each_event_stored_once() {
    let (t, dir) = scratch();
    let server = Server::start(&dir, &["--http", "127.0.0.1:0"]);
    let (specs, acks) = specs(&server, t.path(), 8, 8, 12, 40, 0);
    let children: Vec<Child> = specs.into_iter().map(spawn_client).collect();
    wait_clients(children);
    let m = get(server.addr(), "/metrics").text();
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    let acked = check_exactly_once(&dir, &acks);
    assert_eq!(acked, 16 * 12 * 40);
    assert_eq!(
        replay_all(&dir).len(),
        acked,
        "nothing but the acknowledged events"
    );
    // 3 of every 12 batches were sent twice: counted as duplicates.
    assert!(m.contains("auditlog_duplicate_requests_total 48"), "{m}");
}

#[test]
fn sigkill_mid_load_loses_nothing_acknowledged() {
    let (t, dir) = scratch();
    let port = free_port().to_string();
    let http_at = format!("127.0.0.1:{port}");
    let args = ["--http", http_at.as_str(), "--no-search"];
    let server = Server::start(&dir, &args);
    // Batches of 3,000 events (~400 KB) cross 1 MiB group-commit blocks,
    // so a kill can land between the blocks of one request.
    let (specs, acks) = specs(&server, t.path(), 4, 4, 30, 3000, 2);
    let children: Vec<Child> = specs.into_iter().map(spawn_client).collect();
    eventually("some acknowledged events", || {
        acks.iter()
            .any(|a| std::fs::metadata(a).is_ok_and(|m| m.len() > 0))
    });
    std::thread::sleep(Duration::from_millis(150));
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    let server = Server::start(&dir, &args);
    wait_clients(children);
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("idempotency keys read from the log"), "{log}");
    eprintln!("{log}");
    let acked = check_exactly_once(&dir, &acks);
    assert_eq!(acked, 8 * 30 * 3000, "every client finished every batch");
}
