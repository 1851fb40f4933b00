//! `auditlog serve`: the server crate behind the command line's flags
//! (docs/serve.md).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use auditlog::RedactionPolicy;
use auditlog_server::{ServeConfig, SpanFilter};
use clap::{Args, ValueEnum};

use super::{CliError, CliResult, Ctx};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SpansArg {
    All,
    Genai,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The Unix socket [default: DIR/auditlog.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// HTTP on this loopback address (OTLP/HTTP's port by default).
    #[arg(long, value_name = "ADDR", default_value = auditlog_server::config::DEFAULT_HTTP)]
    pub http: SocketAddr,
    /// No HTTP at all (the socket only).
    #[arg(long, conflicts_with = "http")]
    pub no_http: bool,
    /// HTTP on another address too (any interface); needs --token-file.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token HTTP requests must carry (owner-only).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = auditlog_client::proto::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Open connections at once (socket and HTTP).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Events per second per client (a socket peer process or an HTTP
    /// peer address); no limit when absent.
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    pub client_rate: Option<f64>,
    /// Events a client may send at once above its rate [default: one
    /// second's worth].
    #[arg(long, default_value_t = 0.0)]
    pub client_burst: f64,
    /// Request bytes held at once, from read until answered.
    #[arg(long, default_value_t = 512 << 20)]
    pub max_inflight_bytes: usize,
    /// Appends waiting in the log's queue.
    #[arg(long, default_value_t = 4096)]
    pub queue_capacity: usize,
    /// How long a request waits for room before it is answered busy.
    #[arg(long, default_value = "1s")]
    pub queue_wait: String,
    /// Idempotency keys are remembered for the newest this many events.
    #[arg(long, default_value_t = 2_000_000)]
    pub dedup_window: u64,
    /// Do not run the full-text indexer (no `search`).
    #[arg(long)]
    pub no_search: bool,
    /// A redaction policy file applied to every event (docs/reliability.md).
    #[arg(long, value_name = "POLICY")]
    pub redact: Option<PathBuf>,
    /// How long SIGTERM waits for requests in flight.
    #[arg(long, default_value = "30s")]
    pub drain_timeout: String,
    /// Which OTLP spans to store.
    #[arg(long, value_enum, default_value_t = SpansArg::All)]
    pub otlp_spans: SpansArg,
    /// Log lines on stderr as JSON objects or text.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

fn duration(flag: &str, s: &str) -> Result<std::time::Duration, CliError> {
    humantime::parse_duration(s).map_err(|e| CliError::usage(format!("--{flag} {s:?}: {e}")))
}

fn read_token(path: &PathBuf) -> Result<String, CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::failed(format!("--token-file {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CliError::usage(format!(
            "--token-file {} is readable by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| CliError::failed(format!("--token-file {}: {e}", path.display())))?
        .trim()
        .to_string();
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::usage(format!(
            "--token-file {}: the token must be at least 16 characters, one line, no spaces",
            path.display()
        )));
    }
    Ok(token)
}

pub fn serve(ctx: &Ctx, a: ServeArgs) -> CliResult {
    let dir = ctx.dir()?;
    // The server is this process's whole job: no fresh huge pages to zero
    // for its request buffers (docs/operations.md).
    crate::memory::no_huge_pages();
    let mut cfg = ServeConfig::new(&dir);
    cfg.socket = a.socket;
    cfg.http = (!a.no_http).then_some(a.http);
    cfg.listen = a.listen;
    cfg.token = a.token_file.as_ref().map(read_token).transpose()?;
    cfg.max_request_bytes = a.max_request_bytes;
    cfg.max_connections = a.max_connections;
    cfg.client_rate = a.client_rate;
    cfg.client_burst = a.client_burst;
    cfg.max_inflight_bytes = a.max_inflight_bytes;
    cfg.queue_capacity = a.queue_capacity;
    cfg.queue_wait = duration("queue-wait", &a.queue_wait)?;
    cfg.dedup_window = a.dedup_window;
    cfg.search = !a.no_search;
    cfg.drain_timeout = duration("drain-timeout", &a.drain_timeout)?;
    cfg.otlp_spans = match a.otlp_spans {
        SpansArg::All => SpanFilter::All,
        SpansArg::Genai => SpanFilter::GenAi,
    };
    cfg.json_logs = a.log_format == LogFormat::Json;
    if let Some(path) = &a.redact {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::failed(format!("cannot read --redact {}: {e}", path.display()))
        })?;
        let policy = RedactionPolicy::parse(&text)
            .map_err(|e| CliError::usage(format!("--redact {}: {e}", path.display())))?;
        cfg.redaction = Some(Arc::new(policy));
    }
    cfg.check().map_err(CliError::usage)?;
    auditlog_server::init_logging(cfg.json_logs);
    auditlog_server::serve(cfg).map_err(CliError::failed)
}
