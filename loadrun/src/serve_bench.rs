//! `auditlog bench-serve`: events/s and append-to-acknowledged latency
//! through `auditlog serve` (its Unix socket and its HTTP), with 1, 4 and
//! 16 client processes, beside the embedded library in the same run
//! (docs/benchmarks.md, "Many processes, one log").
//!
//! Each configuration gets a fresh log. Clients are this binary run again
//! (`bench-serve-client`): each generates its share of the workload,
//! reports ready, waits for the go (a line on stdin), then appends its
//! batches keeping `--depth` requests in flight, and writes its figures
//! (start, end, one latency per batch) to a file. The embedded line runs
//! the same batches from as many threads of this process, through
//! `EncodedBatch::encode` + `append_encoded`, waiting for each receipt.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auditlog::{AuditStore, EncodedBatch, Event, StoreConfig};
use auditlog_terminal::{CliError, CliResult};
use clap::Args;

use crate::threads::{cpu_of, process_cpu_ns, Snapshot};
use crate::workload::WorkloadSpec;

/// The sealed-segment indexer's thread name (as the kernel cuts it).
const INDEXER: &str = "auditlog-index";
use crate::{hist, record, Lat};

#[derive(Args, Debug, Clone)]
pub struct ServeBenchArgs {
    /// Events per configuration (about; whole runs).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Events per request (per append call for the embedded line).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// Which lines: embedded, socket, http.
    #[arg(long, value_delimiter = ',', default_value = "embedded,socket,http")]
    pub modes: Vec<String>,
    /// Run the server's full-text indexer too (off by default: the
    /// embedded line has none).
    #[arg(long)]
    pub search: bool,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeClientArgs {
    #[arg(long)]
    pub mode: String,
    /// The server's socket, or its HTTP address.
    #[arg(long)]
    pub target: String,
    #[arg(long)]
    pub part: u64,
    #[arg(long)]
    pub parts: u64,
    #[arg(long)]
    pub runs: u64,
    #[arg(long)]
    pub batch: usize,
    #[arg(long)]
    pub depth: usize,
    #[arg(long)]
    pub out: PathBuf,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::failed(e.to_string())
}

/// Runs `part, part + parts, ...` of the workload.
fn share(spec: &WorkloadSpec, part: u64, parts: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut i = part;
    while i < spec.runs {
        out.extend(spec.events(i, i + 1));
        i += parts.max(1);
    }
    out
}

/// One configuration's figures.
#[derive(Debug, Clone)]
pub struct Line {
    pub mode: String,
    pub clients: usize,
    pub events: u64,
    pub seconds: f64,
    pub lat: Option<Lat>,
    /// CPU time of the timed part, all processes of the line (clients and
    /// server, or the one embedded process) but the sealed-segment
    /// indexer, µs per event.
    pub cpu_us_per_event: Option<f64>,
    /// Of which the client processes' (socket, HTTP).
    pub client_us_per_event: Option<f64>,
    /// The sealed-segment indexer's, apart: it runs at idle priority, so
    /// how much of its work falls inside the timed part depends on how
    /// much idle CPU the line leaves (the rest is done after).
    pub indexer_us_per_event: Option<f64>,
}

impl Line {
    fn eps(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

pub fn serve_bench(a: ServeBenchArgs) -> CliResult {
    let spec = WorkloadSpec {
        runs: crate::cmd::runs_for_events(&WorkloadSpec::default(), a.events),
        ..WorkloadSpec::default()
    };
    let mut lines = Vec::new();
    for &clients in &a.clients {
        for mode in &a.modes {
            let line = match mode.as_str() {
                "embedded" => embedded(&spec, clients, &a)?,
                "socket" | "http" => served(&spec, mode, clients, &a)?,
                other => return Err(CliError::usage(format!("--modes: unknown mode {other:?}"))),
            };
            eprintln!(
                "{:>8} {:>2} clients: {:>10.0} events/s, p50 {:.2} ms, p99 {:.2} ms",
                line.mode,
                line.clients,
                line.eps(),
                line.lat.map_or(0.0, |l| l.p50),
                line.lat.map_or(0.0, |l| l.p99)
            );
            lines.push(line);
        }
    }
    print_table(&lines, &a);
    if let Some(path) = &a.json_out {
        let v: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mode": l.mode, "clients": l.clients, "events": l.events,
                    "seconds": l.seconds, "events_per_sec": l.eps(),
                    "ack_p50_ms": l.lat.map(|x| x.p50), "ack_p99_ms": l.lat.map(|x| x.p99),
                    "ack_max_ms": l.lat.map(|x| x.max), "batch": a.batch, "depth": a.depth,
                    "cpu_us_per_event": l.cpu_us_per_event,
                    "client_us_per_event": l.client_us_per_event,
                    "indexer_us_per_event": l.indexer_us_per_event,
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default())
            .map_err(failed)?;
    }
    Ok(())
}

fn print_table(lines: &[Line], a: &ServeBenchArgs) {
    println!(
        "| path | clients | events | events/s | of embedded | ack p50 ms | ack p99 ms | CPU µs/event | of which clients | indexer µs/event |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for l in lines {
        let base = lines
            .iter()
            .find(|b| b.mode == "embedded" && b.clients == l.clients)
            .map(|b| b.eps());
        println!(
            "| {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} |",
            l.mode,
            l.clients,
            l.events,
            l.eps(),
            base.map_or("-".into(), |b| format!("{:.0}%", 100.0 * l.eps() / b)),
            l.lat.map_or(0.0, |x| x.p50),
            l.lat.map_or(0.0, |x| x.p99),
            l.cpu_us_per_event.map_or("-".into(), |c| format!("{c:.2}")),
            l.client_us_per_event
                .map_or("-".into(), |c| format!("{c:.2}")),
            l.indexer_us_per_event
                .map_or("-".into(), |c| format!("{c:.2}")),
        );
    }
    println!(
        "(batch {} events per request, {} requests in flight per client)",
        a.batch, a.depth
    );
}

/// The embedded library: `clients` threads of this process.
fn embedded(spec: &WorkloadSpec, clients: usize, a: &ServeBenchArgs) -> Result<Line, CliError> {
    let tmp = tempfile::tempdir().map_err(failed)?;
    let dir = tmp.path().join("log");
    let shares: Vec<Vec<Event>> = (0..clients as u64)
        .map(|p| share(spec, p, clients as u64))
        .collect();
    let store = AuditStore::open(StoreConfig::new(&dir)).map_err(failed)?;
    // Held for the whole run: the store does not swap its log under us.
    let guard = store.log();
    let log: &auditlog::Log = &guard;
    let (cpu0, snap0) = (process_cpu_ns("self"), Snapshot::take());
    let t0 = Instant::now();
    let hists = std::thread::scope(|s| {
        let hs: Vec<_> = shares
            .iter()
            .map(|evs| {
                s.spawn(move || {
                    let (tx, rx) = crossbeam_channel::bounded::<(Instant, auditlog::Receipt)>(
                        a.depth.max(1) - 1,
                    );
                    let waiter = std::thread::spawn(move || {
                        let mut h = hist();
                        for (t, r) in rx {
                            r.wait().expect("durable");
                            record(&mut h, t.elapsed());
                        }
                        h
                    });
                    for chunk in evs.chunks(a.batch.max(1)) {
                        let t = Instant::now();
                        let b = EncodedBatch::encode(chunk).expect("valid events");
                        let r = log.append_encoded(b).expect("appended");
                        tx.send((t, r)).expect("waiter alive");
                    }
                    drop(tx);
                    waiter.join().expect("waiter")
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("producer"))
            .collect::<Vec<_>>()
    });
    let seconds = t0.elapsed().as_secs_f64();
    let (cpu1, snap1) = (process_cpu_ns("self"), Snapshot::take());
    drop(guard);
    let mut h = hist();
    for x in &hists {
        let _ = h.add(x);
    }
    store.close().map_err(failed)?;
    let events: u64 = shares.iter().map(|s| s.len() as u64).sum();
    let per_event = |ns: u64| ns as f64 / 1e3 / events.max(1) as f64;
    let indexer = cpu_of(&snap1, &snap0, INDEXER);
    Ok(Line {
        mode: "embedded".into(),
        clients,
        events,
        seconds,
        lat: Lat::of(&h),
        cpu_us_per_event: cpu0
            .zip(cpu1)
            .map(|(a, b)| per_event(b.saturating_sub(a).saturating_sub(indexer))),
        client_us_per_event: None,
        indexer_us_per_event: Some(per_event(indexer)),
    })
}

struct ServerProc {
    child: Child,
    target: String,
}

fn start_server(dir: &Path, mode: &str, search: bool) -> Result<ServerProc, CliError> {
    let exe = std::env::current_exe().map_err(failed)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--dir")
        .arg(dir)
        .arg("serve")
        .args(["--log-format", "text"]);
    if mode == "socket" {
        cmd.arg("--no-http");
    } else {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
    if !search {
        cmd.arg("--no-search");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(failed)?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or_else(|| failed("no stdout"))?)
        .read_line(&mut line)
        .map_err(failed)?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| failed(format!("server: {e}: {line:?}")))?;
    let target = if mode == "socket" {
        v["socket"].as_str()
    } else {
        v["http"].as_str()
    }
    .ok_or_else(|| failed(format!("server ready line: {line}")))?
    .to_string();
    Ok(ServerProc { child, target })
}

/// Through the server: `clients` processes.
fn served(
    spec: &WorkloadSpec,
    mode: &str,
    clients: usize,
    a: &ServeBenchArgs,
) -> Result<Line, CliError> {
    let tmp = tempfile::tempdir().map_err(failed)?;
    let dir = tmp.path().join("log");
    let mut server = start_server(&dir, mode, a.search)?;
    let exe = std::env::current_exe().map_err(failed)?;
    let mut kids = Vec::new();
    for p in 0..clients {
        let out = tmp.path().join(format!("client-{p}.json"));
        let child = Command::new(&exe)
            .arg("bench-serve-client")
            .args(["--mode", mode, "--target", &server.target])
            .args(["--part", &p.to_string(), "--parts", &clients.to_string()])
            .args([
                "--runs",
                &spec.runs.to_string(),
                "--batch",
                &a.batch.to_string(),
            ])
            .args(["--depth", &a.depth.to_string()])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(failed)?;
        kids.push((child, out));
    }
    // Every client has generated its events: go.
    for (c, _) in kids.iter_mut() {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().ok_or_else(|| failed("no stdout"))?)
            .read_line(&mut line)
            .map_err(failed)?;
    }
    let pid = server.child.id().to_string();
    let (cpu0, snap0) = (process_cpu_ns(&pid), Snapshot::take_of(&pid));
    for (c, _) in kids.iter_mut() {
        c.stdin
            .as_mut()
            .ok_or_else(|| failed("no stdin"))?
            .write_all(b"go\n")
            .map_err(failed)?;
    }
    let mut h = hist();
    let (mut first, mut last, mut events) = (u64::MAX, 0u64, 0u64);
    let mut client_cpu_ns = Some(0u64);
    for (mut c, out) in kids {
        let st = c.wait().map_err(failed)?;
        if !st.success() {
            return Err(failed(format!("a {mode} client failed ({st})")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).map_err(failed)?).map_err(failed)?;
        first = first.min(v["start_us"].as_u64().unwrap_or(0));
        last = last.max(v["end_us"].as_u64().unwrap_or(0));
        events += v["events"].as_u64().unwrap_or(0);
        client_cpu_ns = client_cpu_ns.zip(v["cpu_ns"].as_u64()).map(|(a, b)| a + b);
        for l in v["lat_us"].as_array().into_iter().flatten() {
            record(&mut h, Duration::from_micros(l.as_u64().unwrap_or(0)));
        }
    }
    // The clients are done: the server's CPU up to now (its indexer may
    // still be catching up, as the embedded line's may).
    let (cpu1, snap1) = (process_cpu_ns(&pid), Snapshot::take_of(&pid));
    let per_event = |ns: u64| ns as f64 / 1e3 / events.max(1) as f64;
    let indexer = cpu_of(&snap1, &snap0, INDEXER);
    let cpu = cpu0
        .zip(cpu1)
        .zip(client_cpu_ns)
        .map(|((a, b), c)| per_event(b.saturating_sub(a).saturating_sub(indexer) + c));
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    Ok(Line {
        mode: mode.into(),
        clients,
        events,
        seconds: (last.saturating_sub(first)) as f64 / 1e6,
        lat: Lat::of(&h),
        cpu_us_per_event: cpu,
        client_us_per_event: client_cpu_ns.map(per_event),
        indexer_us_per_event: Some(per_event(indexer)),
    })
}

/// A client process of the bench.
pub fn serve_bench_client(a: ServeClientArgs) -> CliResult {
    let spec = WorkloadSpec {
        runs: a.runs,
        ..WorkloadSpec::default()
    };
    let evs = share(&spec, a.part, a.parts);
    let batches: Vec<&[Event]> = evs.chunks(a.batch.max(1)).collect();
    // Ready; wait for the go.
    println!("ready");
    std::io::stdout().flush().map_err(failed)?;
    let mut go = [0u8; 3];
    let _ = std::io::stdin().read(&mut go);
    let cpu0 = process_cpu_ns("self");
    let start = now_us();
    let lat = match a.mode.as_str() {
        "socket" => socket_client(&a, &batches)?,
        _ => http_client(&a, &batches)?,
    };
    let end = now_us();
    let cpu_ns = cpu0
        .zip(process_cpu_ns("self"))
        .map(|(a, b)| b.saturating_sub(a));
    let v = serde_json::json!({
        "start_us": start, "end_us": end, "events": evs.len(), "lat_us": lat, "cpu_ns": cpu_ns,
    });
    std::fs::write(&a.out, v.to_string()).map_err(failed)
}

fn socket_client(a: &ServeClientArgs, batches: &[&[Event]]) -> Result<Vec<u64>, CliError> {
    let client = auditlog_client::Client::connect(&a.target).map_err(failed)?;
    let mut pipe = client.pipeline().map_err(failed)?;
    let mut sent: std::collections::VecDeque<Instant> = Default::default();
    let mut lat = Vec::with_capacity(batches.len());
    let mut recv_one = |pipe: &mut auditlog_client::Pipeline,
                        sent: &mut std::collections::VecDeque<Instant>|
     -> CliResult {
        let (_, r) = pipe.recv().map_err(failed)?;
        r.map_err(failed)?;
        let t = sent
            .pop_front()
            .ok_or_else(|| failed("an answer to nothing"))?;
        lat.push(t.elapsed().as_micros() as u64);
        Ok(())
    };
    for (i, b) in batches.iter().enumerate() {
        // Encoding is the client's work, inside the timed part.
        let t = Instant::now();
        let enc = EncodedBatch::encode(b).map_err(failed)?;
        pipe.send(&enc, &format!("{}-{}-{i}", a.part, std::process::id()))
            .map_err(failed)?;
        pipe.flush().map_err(failed)?;
        sent.push_back(t);
        while sent.len() >= a.depth.max(1) {
            recv_one(&mut pipe, &mut sent)?;
        }
    }
    while !sent.is_empty() {
        recv_one(&mut pipe, &mut sent)?;
    }
    Ok(lat)
}

fn http_client(a: &ServeClientArgs, batches: &[&[Event]]) -> Result<Vec<u64>, CliError> {
    // `depth` connections, each one request at a time (HTTP/1.1 keep-alive).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::thread::scope(|s| {
        let hs: Vec<_> = (0..a.depth.max(1))
            .map(|_| {
                s.spawn(|| -> Result<Vec<u64>, String> {
                    let mut conn = std::net::TcpStream::connect(&a.target).map_err(|e| e.to_string())?;
                    conn.set_nodelay(true).map_err(|e| e.to_string())?;
                    let mut rd = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(b) = batches.get(i) else { break };
                        let t = Instant::now();
                        let mut body = String::with_capacity(b.len() * 300);
                        for e in b.iter() {
                            auditlog::event::json::write_event(e, None, &mut body);
                            body.push('\n');
                        }
                        let head = format!(
                            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\nidempotency-key: {}-{}-{i}\r\ncontent-length: {}\r\n\r\n",
                            a.part, std::process::id(), body.len()
                        );
                        conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(body.as_bytes())).map_err(|e| e.to_string())?;
                        let status = read_http(&mut rd).map_err(|e| e.to_string())?;
                        if status != 200 {
                            return Err(format!("HTTP {status}"));
                        }
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(lat)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().map_err(|_| "panicked".to_string()).and_then(|r| r))
            .collect::<Vec<_>>()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r.map_err(failed)?);
    }
    Ok(all)
}

/// Read one HTTP answer (status line, headers, Content-Length body).
fn read_http(r: &mut impl BufRead) -> std::io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(status)
}
