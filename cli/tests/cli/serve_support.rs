//! Running `auditlog serve` in tests: start it, read its ready line, talk
//! HTTP/1.1 to it with nothing but std, stop or kill it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub pid: u32,
    pub socket: PathBuf,
    pub http: Option<SocketAddr>,
    /// What the server wrote on stderr (its log lines), once stopped.
    pub stderr: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    /// Start `auditlog --dir DIR serve ARGS` and wait for its ready line.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::try_start(dir, args).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    pub fn try_start(dir: &Path, args: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
            .arg("--dir")
            .arg(dir)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let _ = out.read_line(&mut line);
        if line.is_empty() {
            let _ = child.wait();
            return Err(stderr.join().unwrap_or_default());
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        Ok(Server {
            pid: v["pid"].as_u64().unwrap() as u32,
            socket: PathBuf::from(v["socket"].as_str().unwrap()),
            http: v["http"].as_str().map(|a| a.parse().unwrap()),
            child,
            stderr: Some(stderr),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.expect("the server runs HTTP")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.pid);
    }

    /// SIGTERM, then wait: (exit code, stderr).
    pub fn stop(mut self) -> (i32, String) {
        self.signal("-TERM");
        let st = self.child.wait().unwrap();
        (
            st.code().unwrap_or(-1),
            self.stderr.take().unwrap().join().unwrap_or_default(),
        )
    }

    /// SIGKILL, then wait.
    pub fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes, read one answer (the server closes after it).
pub fn http_raw(addr: SocketAddr, raw: &[u8]) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(raw)?;
    read_answer(&mut BufReader::new(s))
}

fn read_answer(r: &mut impl BufRead) -> std::io::Result<HttpAnswer> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

/// One request with `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpAnswer> {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    http_raw(addr, &bytes)
}

pub fn get(addr: SocketAddr, path: &str) -> HttpAnswer {
    http(addr, "GET", path, &[], b"").unwrap()
}

/// Wait until `f` holds (or panic after 30 s).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A JSONL line of a run_started event.
pub fn start_line(run_id: &str, ts: i64) -> String {
    format!("{{\"kind\":\"run_started\",\"run_id\":\"{run_id}\",\"ts\":{ts},\"skill_id\":\"s\"}}\n")
}
