//! `auditlog serve`: one writer process owning a log, for many local
//! clients: a Unix socket (docs/protocol.md), HTTP on loopback, OTLP/HTTP
//! (docs/otlp.md). Every write is answered once it is durable; retries
//! with the same idempotency key are stored once; a full queue answers
//! "busy, retry after" instead of dropping anything. See docs/serve.md.

pub mod acker;
pub mod api;
pub mod backend;
pub mod config;
pub mod dedup;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod otlp;
pub mod params;
pub mod pool;
pub mod prepare;
pub mod queries;
pub mod socket;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use config::{ServeConfig, SpanFilter};

use api::{ApiError, ApiResult, Kind};
use backend::Backend;
use limits::{ConnGate, RateLimiter};

/// What every connection shares.
pub struct Ctx {
    pub backend: Arc<Backend>,
    pub limiter: RateLimiter,
    pub gate: ConnGate,
}

impl Ctx {
    /// Take `n` events from `client`'s rate.
    pub fn rate(&self, client: &str, n: u64) -> ApiResult<()> {
        self.limiter.take(client, n).map_err(|ms| {
            metrics::inc(&self.backend.metrics.rate_limited);
            ApiError {
                retry_after_ms: Some(ms),
                ..ApiError::new(
                    Kind::RateLimited,
                    format!("over this client's rate of events per second (--client-rate); retry in {ms} ms"),
                )
            }
        })
    }
}

/// Log lines on stderr: JSON objects (or text), `RUST_LOG`-free: info
/// and up.
pub fn init_logging(json: bool) {
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false);
    let _ = if json {
        b.json().flatten_event(true).try_init()
    } else {
        b.with_ansi(false).try_init()
    };
}

/// The log folder must be the owner's alone (created 0700 if missing).
fn check_folder(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the log folder {} is open to other users (mode {mode:o}); the server keeps it owner-only: run `chmod 700 {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Bind the socket owner-only. A socket file left by a server that is
/// gone is replaced; one that answers is another server's: refused.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, String> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use by a running server; stop it first or give --socket another path",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("binding the socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("making {} owner-only: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("socket {}: {e}", path.display()))?;
    tokio::net::UnixListener::from_std(listener)
        .map_err(|e| format!("socket {}: {e}", path.display()))
}

async fn bind_tcp(
    addr: std::net::SocketAddr,
    flag: &str,
) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{flag} {addr}: {e}"))
}

/// Wait for SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// Run the server until SIGTERM/SIGINT, then drain and close. Prints one
/// JSON line on stdout once it accepts requests:
/// `{"ready":true,"pid":N,"socket":"...","http":"127.0.0.1:4318",...}`.
pub fn serve(cfg: ServeConfig) -> Result<(), String> {
    cfg.check()?;
    check_folder(&cfg.dir)?;
    let t = Instant::now();
    let backend = Arc::new(Backend::open(cfg.clone())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("auditlog-serve")
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let result = rt.block_on(run(backend.clone(), cfg, t));
    drop(rt);
    let closed = match Arc::try_unwrap(backend) {
        Ok(b) => b.close(),
        Err(b) => {
            // A task still holds it (cannot happen once the runtime is
            // gone): flush what is there; the lock goes with the process.
            b.store().flush().map(|_| ()).map_err(|e| e.to_string())
        }
    };
    result.and(closed)
}

async fn run(backend: Arc<Backend>, cfg: ServeConfig, t: Instant) -> Result<(), String> {
    let ctx = Arc::new(Ctx {
        backend: backend.clone(),
        limiter: RateLimiter::new(cfg.client_rate, cfg.client_burst),
        gate: ConnGate::new(cfg.max_connections),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let socket_path = cfg.socket_path();
    let unix = bind_socket(&socket_path)?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(socket::serve(
        unix,
        ctx.clone(),
        stop_rx.clone(),
    )));
    let mut http_addr = None;
    if let Some(addr) = cfg.http {
        let l = bind_tcp(addr, "--http").await?;
        http_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(http::serve(
            l,
            ctx.clone(),
            stop_rx.clone(),
            cfg.token.is_some(),
        )));
    }
    let mut listen_addr = None;
    if let Some(addr) = cfg.listen {
        let l = bind_tcp(addr, "--listen").await?;
        listen_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(http::serve(
            l,
            ctx.clone(),
            stop_rx.clone(),
            true,
        )));
    }
    let q = |a: Option<std::net::SocketAddr>| a.map_or("null".to_string(), |a| format!("\"{a}\""));
    let mut sock = String::new();
    auditlog::event::json::json_string(&socket_path.to_string_lossy(), &mut sock);
    println!(
        "{{\"ready\":true,\"pid\":{},\"socket\":{sock},\"http\":{},\"listen\":{},\"head_lsn\":{}}}",
        std::process::id(),
        q(http_addr),
        q(listen_addr),
        backend.store().log().head().next_lsn
    );
    tracing::info!(
        socket = %socket_path.display(),
        http = ?http_addr,
        listen = ?listen_addr,
        ms = t.elapsed().as_millis() as u64,
        "auditlog serve is ready"
    );
    let writer_failed = tokio::select! {
        _ = stop_signal() => None,
        why = writer_failure(&backend) => Some(why),
    };
    match &writer_failed {
        None => tracing::info!("stopping: no new requests; draining those in flight"),
        Some(why) => {
            tracing::error!(error = %why, "the log's writer failed: stopping so a supervisor restarts the server (recovery runs on open)")
        }
    }
    backend
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Connections finish the requests they have begun.
    let deadline = Instant::now() + cfg.drain_timeout;
    while ctx.gate.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if ctx.gate.open() > 0 {
        tracing::warn!(
            open = ctx.gate.open(),
            "drain timeout: closing connections with requests in flight"
        );
    }
    let _ = std::fs::remove_file(&socket_path);
    if let Some(why) = writer_failed {
        return Err(format!(
            "the log's writer failed; restart the server: {why}"
        ));
    }
    let head = backend.store().flush().map_err(|e| e.to_string())?;
    tracing::info!(
        head_lsn = head,
        "stopped: everything acknowledged is durable"
    );
    Ok(())
}

/// Resolves once the log's writer has failed (checked every 200 ms).
async fn writer_failure(backend: &Backend) -> String {
    loop {
        if let Some(why) = backend.store().log().failed() {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
