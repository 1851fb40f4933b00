//! Counters of the server, shown by `/metrics` (Prometheus text format)
//! and the `counters` call.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// Events acknowledged as durable (duplicates not counted).
    pub events_stored: AtomicU64,
    /// Requests answered from an earlier identical one (same key).
    pub duplicates: AtomicU64,
    /// Records refused as bad (400s), counted per record.
    pub rejected_records: AtomicU64,
    /// Requests refused for back-pressure (queue full, byte budget).
    pub busy: AtomicU64,
    /// Requests refused for a client's rate.
    pub rate_limited: AtomicU64,
    /// Requests refused as too large.
    pub too_large: AtomicU64,
    pub requests_socket: AtomicU64,
    pub requests_http: AtomicU64,
    pub requests_otlp: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Request body bytes read.
    pub bytes_in: AtomicU64,
    /// Appends that failed after reaching the log.
    pub append_failures: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Prometheus text: `# HELP`, `# TYPE`, then the value.
pub struct Text(pub String);

impl Text {
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        use std::fmt::Write;
        let _ = write!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
}
