//! The server's operations: graceful SIGTERM, owner-only files, loopback
//! by default, tokens, back-pressure and rate answers, the client's API,
//! requests resumed after a crash cut them.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use auditlog::{Event, Filter, Json, Page, RunFinished, RunLog, RunStarted};
use auditlog_client::{Client, ClientConfig};

use crate::serve_support::*;
use crate::support::*;

fn quick_client(server: &Server) -> Client {
    let mut cfg = ClientConfig::new(&server.socket);
    cfg.retry_for = Duration::from_secs(2);
    Client::with_config(cfg).unwrap()
}

#[test]
fn sigterm_drains_syncs_and_releases_everything() {
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--no-http", "--no-search"]);
    let sock = server.socket.clone();
    let client = quick_client(&server);
    let pusher = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for b in 0..10_000u64 {
            let evs: Vec<Event> = (0..20).map(|i| ev(b * 20 + i, DAY0)).collect();
            match client.append_batch(&evs) {
                Ok(_) => acked.extend(evs.into_iter().map(|e| e.run_id)),
                Err(_) => break,
            }
        }
        acked
    });
    eventually("appends", || {
        LogReader::open(&dir).is_ok_and(|r| r.head().next_lsn > 200)
    });
    let (code, log) = server.stop();
    let acked = pusher.join().unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("everything acknowledged is durable"), "{log}");
    assert!(!sock.exists(), "the socket file is removed");
    // The lock is released: a writer opens the log at once.
    let log = auditlog::Log::open(config(&dir)).expect("the lock was released");
    drop(log);
    let stored = run_ids(&dir);
    assert!(acked.len() >= 200 && acked.len() < 200_000);
    assert!(stored.len() >= acked.len());
    assert_eq!(
        &stored[..acked.len()],
        &acked[..],
        "every acknowledged event, in order"
    );
}

use auditlog::LogReader;

#[test]
fn files_are_owner_only_and_http_needs_loopback_or_a_token() {
    let (t, dir) = scratch();
    let server = Server::start(&dir, &["--http", "127.0.0.1:0"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.socket), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // One writer: a second server on the folder is refused.
    let e = Server::try_start(
        &dir,
        &[
            "--no-http",
            "--socket",
            t.path().join("b.sock").to_str().unwrap(),
        ],
    )
    .err()
    .unwrap();
    assert!(e.contains("already open for writing"), "{e}");
    drop(server);

    // A folder open to others is refused, not used.
    let (_t2, open_dir) = scratch();
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = Server::try_start(&open_dir, &["--no-http"]).err().unwrap();
    assert!(e.contains("chmod 700"), "{e}");

    // Other addresses: not with --http; with --listen only with a token.
    let (_t3, d3) = scratch();
    let e = Server::try_start(&d3, &["--http", "0.0.0.0:0"])
        .err()
        .unwrap();
    assert!(e.contains("not a loopback address"), "{e}");
    let e = Server::try_start(&d3, &["--listen", "127.0.0.1:0"])
        .err()
        .unwrap();
    assert!(e.contains("--token-file"), "{e}");
    let token = t.path().join("token");
    std::fs::write(&token, "s3cret-token-of-enough-length\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let e = Server::try_start(
        &d3,
        &[
            "--no-http",
            "--listen",
            &listen,
            "--token-file",
            token.to_str().unwrap(),
        ],
    )
    .err()
    .unwrap();
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = Server::start(
        &d3,
        &[
            "--no-http",
            "--listen",
            &listen,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    let a: std::net::SocketAddr = listen.parse().unwrap();
    let line = start_line("tok-1", DAY0);
    let ct = ("content-type", "application/x-ndjson");
    let r = http(a, "POST", "/v1/events", &[ct], line.as_bytes()).unwrap();
    assert_eq!(r.status, 401);
    let r = http(
        a,
        "POST",
        "/v1/events",
        &[ct, ("authorization", "Bearer wrong-token-of-enough-len")],
        line.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(get(a, "/v1/runs").status, 401);
    assert_eq!(get(a, "/healthz").status, 200);
    let r = http(
        a,
        "POST",
        "/v1/events",
        &[
            ct,
            ("authorization", "Bearer s3cret-token-of-enough-length"),
        ],
        line.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    drop(server);
    assert_eq!(run_ids(&d3), ["tok-1"]);
}

#[test]
fn back_pressure_and_rate_limits_answer_retry_after_and_lose_nothing() {
    let (_t, dir) = scratch();
    let server = Server::start(
        &dir,
        &[
            "--http",
            "127.0.0.1:0",
            "--no-search",
            "--max-request-bytes",
            "65536",
            "--max-inflight-bytes",
            "65536",
            "--queue-wait",
            "1ms",
            "--client-rate",
            "100000",
            "--client-burst",
            "100000",
        ],
    );
    let a = server.addr();
    // 8 threads at once against a budget of one request: some are told
    // to come back; each retries with its key until stored.
    let busy = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let busy = &busy;
            s.spawn(move || {
                for b in 0..5 {
                    let body: String = (0..300)
                        .map(|i| start_line(&format!("bp-{t}-{b}-{i}"), DAY0))
                        .collect();
                    let key = format!("bp-{t}-{b}");
                    loop {
                        let r = http(
                            a,
                            "POST",
                            "/v1/events",
                            &[
                                ("content-type", "application/x-ndjson"),
                                ("idempotency-key", &key),
                            ],
                            body.as_bytes(),
                        )
                        .unwrap();
                        if r.status == 200 {
                            break;
                        }
                        assert_eq!(r.status, 503, "{}", r.text());
                        assert!(r.header("retry-after").is_some());
                        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
        }
    });
    let ids = run_ids(&dir);
    assert_eq!(ids.len(), 8 * 5 * 300);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(
        busy.into_inner() > 0,
        "the budget of one request was never exceeded"
    );
    drop(server);

    // A client over its rate gets 429 with Retry-After.
    let (_t2, d2) = scratch();
    let server = Server::start(
        &d2,
        &[
            "--http",
            "127.0.0.1:0",
            "--no-search",
            "--client-rate",
            "10",
        ],
    );
    let body: String = (0..10)
        .map(|i| start_line(&format!("r-{i}"), DAY0))
        .collect();
    let ct = [("content-type", "application/x-ndjson")];
    assert_eq!(
        http(server.addr(), "POST", "/v1/events", &ct, body.as_bytes())
            .unwrap()
            .status,
        200
    );
    let r = http(server.addr(), "POST", "/v1/events", &ct, body.as_bytes()).unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(get(server.addr(), "/metrics")
        .text()
        .contains("auditlog_rate_limited_total 1"));
}

#[test]
fn the_client_answers_like_the_embedded_store() {
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--no-http"]);
    let c = quick_client(&server);
    let start = |skill: &str, parent: &str| RunStarted {
        skill_id: skill.into(),
        caller_id: "u-1".into(),
        channel_id: "sess-1".into(),
        parent_run_id: parent.into(),
        inputs: Json::parse(r#"{"q":"find the needle"}"#).unwrap(),
        dry_run: false,
    };
    c.start_run("p-1", DAY0, start("web.search", "")).unwrap();
    c.start_run("c-1", DAY0 + 10, start("web.fetch", "p-1"))
        .unwrap();
    c.append_log(
        "c-1",
        DAY0 + 20,
        RunLog {
            seq: 0,
            event_type: "tool_call".into(),
            payload: Json::parse(
                r#"{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000}"#,
            )
            .unwrap(),
        },
    )
    .unwrap();
    c.finish_run(
        "c-1",
        DAY0 + 30,
        RunFinished {
            status: "error".into(),
            error: "upstream timeout".into(),
            ..RunFinished::default()
        },
    )
    .unwrap();
    let e = c
        .finish_run("never-started", DAY0, RunFinished::default())
        .unwrap_err();
    assert!(matches!(e, auditlog::Error::NotFound(_)), "{e}");
    let e = c
        .append(&Event::run_started("", DAY0, RunStarted::default()))
        .unwrap_err();
    assert!(
        matches!(e, auditlog::Error::InvalidEvent { index: 0, .. }),
        "{e}"
    );

    let run = c.get_run("c-1").unwrap().unwrap();
    assert_eq!(
        (
            run.status.as_str(),
            run.error.as_str(),
            run.parent_run_id.as_str()
        ),
        ("error", "upstream timeout", "p-1")
    );
    assert_eq!(run.inputs.as_str(), r#"{"q":"find the needle"}"#);
    assert!(c.get_run("nope").unwrap().is_none());
    let (_, logs) = c.run_with_logs("c-1").unwrap().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(c.list_logs("c-1").unwrap(), logs);
    assert_eq!(
        c.list_runs(&Filter::default(), Page::all()).unwrap().len(),
        2
    );
    assert_eq!(c.count_by_skill("web.fetch", false).unwrap(), 1);
    assert_eq!(
        c.list_runs_by_caller("u-1", Page::new(1, 0)).unwrap()[0].id,
        "c-1"
    );
    assert_eq!(c.children("p-1", false).unwrap()[0].id, "c-1");
    let chain: Vec<String> = c
        .parent_chain("c-1")
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(chain, ["c-1", "p-1"]);
    assert!(matches!(
        c.parent_chain("nope"),
        Err(auditlog::Error::NotFound(_))
    ));
    let last = c
        .last_run_per_skill(&["web.fetch".into(), "web.search".into()], true)
        .unwrap();
    assert_eq!(
        last,
        vec![
            ("web.fetch".into(), Some(DAY0 + 10)),
            ("web.search".into(), Some(DAY0))
        ]
    );
    let groups = c.tool_errors(None, None).unwrap();
    assert_eq!(
        (
            groups[0].tool.as_str(),
            groups[0].count,
            groups[0].channel_id.as_str()
        ),
        ("http.get", 1, "sess-1")
    );
    assert_eq!(c.finished_runs_before(DAY0 + 31).unwrap().len(), 1);
    let (evs, next) = c.replay(Default::default(), 2, None).unwrap();
    assert_eq!((evs.len(), evs[0].0, next), (2, 0, 2));
    // A loaded machine can stall the indexer (nice 19) for long: wait.
    let hits = c
        .search_filtered(
            "needle",
            10,
            &[],
            None,
            None,
            Some(Duration::from_secs(180)),
        )
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(c.stats().unwrap()["events"].as_u64() == Some(4));
    assert!(c.flush().unwrap() >= 4);

    // The same answers from the log itself, read beside the server.
    let mut engine = auditlog::query::Engine::open(&dir).unwrap();
    assert_eq!(engine.get_run("c-1").unwrap().unwrap(), run);
    assert_eq!(engine.errors(None, None, false).unwrap(), groups);
}

/// What the bindings' `connect` needs beyond the store's own calls: an
/// append whose runs must exist (the C ABI's AUDITLOG_APPEND_REQUIRE_RUN,
/// Go's FinishRun and AppendLog) and a limit on finished_before.
#[test]
fn checked_appends_and_limited_finished_before() {
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--no-http", "--no-search"]);
    let c = quick_client(&server);
    let log = |id: &str, seq: u64| {
        Event::run_log(
            id,
            DAY0 + 5,
            RunLog {
                seq,
                event_type: "note".into(),
                payload: Json::null(),
            },
        )
    };
    let finish = |id: &str, ts: i64| Event::run_finished(id, ts, RunFinished::default());
    // A start earlier in the same request counts as started.
    let a = c
        .append_require_run(&[
            Event::run_started("r-1", DAY0, RunStarted::default()),
            log("r-1", 0),
            finish("r-1", DAY0 + 10),
        ])
        .unwrap();
    assert_eq!((a.events, a.lsns.first, a.lsns.last), (3, 0, 2));
    // A stored run counts too; several runs in one request.
    c.start_run("r-2", DAY0 + 1, RunStarted::default()).unwrap();
    c.append_require_run(&[log("r-1", 1), finish("r-2", DAY0 + 20)])
        .unwrap();
    // One unknown run refuses the whole request, naming it.
    let e = c
        .append_require_run(&[log("r-1", 2), log("ghost", 0)])
        .unwrap_err();
    assert!(
        matches!(&e, auditlog::Error::NotFound(m) if m.contains("ghost")),
        "{e}"
    );
    // A bad event is named by its index, as in append_batch.
    let e = c
        .append_require_run(&[
            log("r-1", 3),
            Event::run_started("", DAY0, RunStarted::default()),
        ])
        .unwrap_err();
    assert!(
        matches!(e, auditlog::Error::InvalidEvent { index: 1, .. }),
        "{e}"
    );
    assert!(c.append_require_run(&[]).is_err());
    assert_eq!(
        c.list_logs("r-1").unwrap().len(),
        2,
        "nothing of the refused requests"
    );
    assert_eq!(c.stats().unwrap()["events"].as_u64(), Some(6));

    assert_eq!(c.finished_runs_before(DAY0 + 100).unwrap().len(), 2);
    let one = c.finished_runs_before_limit(DAY0 + 100, Some(1)).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, "r-2", "newest start first");
}

#[test]
fn a_request_cut_by_a_crash_is_completed_by_its_retry_not_doubled() {
    let (_t, dir) = scratch();
    let key = "crash-key-1";
    let evs: Vec<Event> = (0..10).map(|i| ev(i, DAY0 + i as i64)).collect();
    // What a crash between two blocks leaves: the marked first 4 events
    // of a 10-event request, then another client's events.
    {
        let log = auditlog::Log::open(config(&dir)).unwrap();
        let mut part = evs[..4].to_vec();
        let marker = Json::parse(format!(r#"{{"key":"{key}","n":10,"at":0}}"#)).unwrap();
        part[0].extra.push(("_ingest".into(), marker));
        log.append_batch(&part).unwrap().wait().unwrap();
        log.append_batch(&[ev(100, DAY0), ev(101, DAY0)])
            .unwrap()
            .wait()
            .unwrap();
        // And a whole request, stored before the crash.
        let mut whole = vec![ev(200, DAY0)];
        let m2 = Json::parse(r#"{"key":"whole-key","n":1,"at":0}"#).unwrap();
        whole[0].extra.push(("_ingest".into(), m2));
        log.append_batch(&whole).unwrap().wait().unwrap();
        log.close().unwrap();
    }
    let server = Server::start(&dir, &["--no-http", "--no-search"]);
    let c = quick_client(&server);
    let batch = auditlog::EncodedBatch::encode(&evs).unwrap();
    let a = c.append_encoded(&batch, key).unwrap();
    assert_eq!((a.events, a.duplicate, a.lsns.first), (10, false, 0));
    let again = c.append_encoded(&batch, key).unwrap();
    assert!(again.duplicate);
    let w = c
        .append_encoded(
            &auditlog::EncodedBatch::encode(&[ev(200, DAY0)]).unwrap(),
            "whole-key",
        )
        .unwrap();
    assert!(
        w.duplicate,
        "a request stored whole before a restart is not stored again"
    );
    // A key reused for a different request is refused.
    let e = c
        .append_encoded(&auditlog::EncodedBatch::encode(&evs[..3]).unwrap(), key)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("was used for a request of 10 events"),
        "{e}"
    );
    drop(c);
    drop(server);
    let ids = run_ids(&dir);
    let want: Vec<String> = [
        "ev-0", "ev-1", "ev-2", "ev-3", "ev-100", "ev-101", "ev-200", "ev-4", "ev-5", "ev-6",
        "ev-7", "ev-8", "ev-9",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ids, want);
    // The resumed part carries its own marker.
    let all = replay_all(&dir);
    let resumed = all.iter().find(|(_, e)| e.run_id == "ev-4").unwrap();
    let m = &resumed
        .1
        .extra
        .iter()
        .find(|(k, _)| k == "_ingest")
        .unwrap()
        .1;
    assert_eq!(m.as_str(), r#"{"key":"crash-key-1","n":10,"at":4}"#);
}

/// The server turns transparent huge pages off for its own process
/// (cli/src/memory.rs): the kernel reports it in `/proc/PID/status`.
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let ours = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !ours.contains("THP_enabled:") {
        eprintln!("skipped: this kernel does not report THP_enabled");
        return;
    }
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--no-http", "--no-search"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("the server's status");
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("THP_enabled line");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    server.stop();
}
