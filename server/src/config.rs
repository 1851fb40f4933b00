//! How `auditlog serve` is set up (the command line's flags map onto it;
//! docs/serve.md lists them with their defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auditlog::RedactionPolicy;

/// Which OTLP spans are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanFilter {
    /// Every span (GenAI ones mapped, others kept as `span` logs).
    All,
    /// Only spans with a `gen_ai.*` attribute or a GenAI operation name.
    GenAi,
}

#[derive(Clone)]
pub struct ServeConfig {
    pub dir: PathBuf,
    /// The Unix socket (default: `DIR/auditlog.sock`).
    pub socket: Option<PathBuf>,
    /// HTTP on a loopback address (default 127.0.0.1:4318, OTLP/HTTP's
    /// port); `None` switches HTTP off.
    pub http: Option<SocketAddr>,
    /// HTTP on any other address: needs `token`.
    pub listen: Option<SocketAddr>,
    /// The bearer token every HTTP request must carry (read from a file).
    pub token: Option<String>,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Open connections at once (socket and HTTP together).
    pub max_connections: usize,
    /// Events per second per client (`None`: no limit) and the burst.
    pub client_rate: Option<f64>,
    pub client_burst: f64,
    /// Request bytes held at once, from read until answered.
    pub max_inflight_bytes: usize,
    /// Appends waiting in the log's queue.
    pub queue_capacity: usize,
    /// How long a request waits for room before it is answered busy.
    pub queue_wait: Duration,
    /// Idempotency keys are remembered for the newest this many events.
    pub dedup_window: u64,
    pub dedup_max_keys: usize,
    /// Run the full-text indexer (for `search`).
    pub search: bool,
    pub redaction: Option<Arc<RedactionPolicy>>,
    /// How long SIGTERM waits for requests in flight.
    pub drain_timeout: Duration,
    pub otlp_spans: SpanFilter,
    /// Log lines as JSON (default) or text.
    pub json_logs: bool,
}

pub const DEFAULT_HTTP: &str = "127.0.0.1:4318";

impl ServeConfig {
    pub fn new(dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            dir: dir.into(),
            socket: None,
            http: DEFAULT_HTTP.parse().ok(),
            listen: None,
            token: None,
            max_request_bytes: auditlog_client::proto::DEFAULT_MAX_REQUEST_BYTES,
            max_connections: 1024,
            client_rate: None,
            client_burst: 0.0,
            max_inflight_bytes: 512 << 20,
            queue_capacity: 4096,
            queue_wait: Duration::from_secs(1),
            dedup_window: 2_000_000,
            dedup_max_keys: 1_000_000,
            search: true,
            redaction: None,
            drain_timeout: Duration::from_secs(30),
            otlp_spans: SpanFilter::All,
            json_logs: true,
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.dir.join("auditlog.sock"))
    }

    /// The settings that must hold before anything starts.
    pub fn check(&self) -> Result<(), String> {
        if let Some(a) = self.http {
            if !a.ip().is_loopback() {
                return Err(format!(
                    "--http {a} is not a loopback address; use --listen {a} with --token-file to serve other hosts"
                ));
            }
        }
        if let Some(a) = self.listen {
            if self.token.is_none() {
                return Err(format!(
                    "--listen {a} needs --token-file FILE: every request to it must carry that bearer token"
                ));
            }
        }
        if !(1024..=1 << 30).contains(&self.max_request_bytes) {
            return Err("--max-request-bytes must be within 1 KiB..=1 GiB".into());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.max_inflight_bytes < self.max_request_bytes {
            return Err("--max-inflight-bytes must be at least --max-request-bytes".into());
        }
        if let Some(r) = self.client_rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err("--client-rate must be a positive number of events per second".into());
            }
        }
        Ok(())
    }
}
