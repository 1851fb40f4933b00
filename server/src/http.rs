//! HTTP/1.1 on loopback (or on `--listen` with a bearer token):
//! `POST /v1/events` (JSONL or a JSON array), OTLP/HTTP `POST /v1/traces`
//! and `/v1/logs`, the queries as `GET /v1/...`, `/healthz`, `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{ApiError, ApiResult, Kind};
use crate::backend::Body;
use crate::metrics;
use crate::otlp::{self, Encoding, Signal};
use crate::params::{decode_segment, Params};
use crate::{queries, Ctx};

type Resp = Response<Full<Bytes>>;

/// Longest a connection may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
    auth: bool,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move { connection(stream, peer, ctx, stop, auth).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting HTTP failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
    auth: bool,
) {
    let Some(slot) = ctx.gate.enter() else {
        metrics::inc(&ctx.backend.metrics.connections_refused);
        let msg = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let mut s = stream;
        let _ = tokio::io::AsyncWriteExt::write_all(&mut s, msg).await;
        return;
    };
    let _ = stream.set_nodelay(true);
    metrics::inc(&ctx.backend.metrics.connections_open);
    let client = format!("ip:{}", peer.ip());
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| {
        let ctx = svc_ctx.clone();
        let client = client.clone();
        async move { Ok::<_, Infallible>(handle(req, &ctx, &client, auth).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(1 << 20);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
    ctx.backend
        .metrics
        .connections_open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    drop(slot);
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn json_ok(body: String) -> Resp {
    respond(200, "application/json", body)
}

fn error(e: &ApiError) -> Resp {
    let mut r = respond(e.http_status(), "application/json", e.to_json());
    add_retry_after(&mut r, e);
    r
}

fn add_retry_after(r: &mut Resp, e: &ApiError) {
    if let Some(s) = e.retry_after_secs() {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
}

fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(h) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = h.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    // Constant time over the token's length.
    let want = token.as_bytes();
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

async fn handle(req: Request<Incoming>, ctx: &Arc<Ctx>, client: &str, auth: bool) -> Resp {
    let path = req.uri().path().to_string();
    if auth && path != "/healthz" {
        if let Some(token) = &ctx.backend.cfg.token {
            if !authorized(&req, token) {
                let mut r = error(&ApiError::new(
                    Kind::Unauthorized,
                    "this address needs `Authorization: Bearer TOKEN` (the --token-file's token)",
                ));
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
                return r;
            }
        }
    }
    metrics::inc(&ctx.backend.metrics.requests_http);
    let method = req.method().clone();
    let r = match (method.clone(), path.as_str()) {
        (Method::POST, "/v1/events") => post_events(req, ctx, client).await,
        (Method::POST, "/v1/traces") => return post_otlp(req, ctx, client, Signal::Traces).await,
        (Method::POST, "/v1/logs") => return post_otlp(req, ctx, client, Signal::Logs).await,
        (Method::POST, "/v1/flush") => query(ctx, "flush", Params(Default::default())).await,
        (Method::POST, "/v1/retain") => match Params::from_query(req.uri().query()) {
            Ok(p) => query(ctx, "retain", p).await,
            Err(e) => Err(e),
        },
        (Method::GET, "/healthz") => return healthz(ctx),
        (Method::GET, "/metrics") => return metrics_text(ctx),
        (Method::GET, p) if p.starts_with("/v1/") => get_query(&req, ctx).await,
        (
            _,
            "/v1/events" | "/v1/traces" | "/v1/logs" | "/v1/flush" | "/v1/retain" | "/healthz"
            | "/metrics",
        ) => Err(ApiError::new(
            Kind::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(
            Kind::NotFound,
            format!("no endpoint {path} (docs/serve.md lists them)"),
        )),
    };
    match r {
        Ok(body) => json_ok(body),
        Err(e) => {
            metrics::add(&ctx.backend.metrics.rejected_records, e.bad_records);
            error(&e)
        }
    }
}

/// Read the body whole within the size limit, holding its bytes in the
/// server's in-flight budget.
async fn read_body(
    req: Request<Incoming>,
    ctx: &Ctx,
) -> ApiResult<(Bytes, tokio::sync::OwnedSemaphorePermit)> {
    let max = ctx.backend.cfg.max_request_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        metrics::inc(&ctx.backend.metrics.too_large);
        return Err(ApiError::new(
            Kind::TooLarge,
            format!(
                "the body is {} bytes; the limit is {max} (--max-request-bytes)",
                declared.unwrap_or(0)
            ),
        ));
    }
    if let Some(enc) = req.headers().get(hyper::header::CONTENT_ENCODING) {
        if enc.as_bytes() != b"identity" {
            return Err(ApiError::new(
                Kind::UnsupportedMediaType,
                format!("Content-Encoding {enc:?} is not supported; send the body uncompressed"),
            ));
        }
    }
    let permit = ctx
        .backend
        .reserve(declared.map_or(max, |n| n as usize))
        .await?;
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => {
            let b = c.to_bytes();
            metrics::add(&ctx.backend.metrics.bytes_in, b.len() as u64);
            Ok((b, permit))
        }
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            metrics::inc(&ctx.backend.metrics.too_large);
            Err(ApiError::new(
                Kind::TooLarge,
                format!("the body is over the limit of {max} bytes (--max-request-bytes)"),
            ))
        }
        Err(e) => Err(ApiError::bad(format!(
            "the body was cut short or could not be read ({e}); nothing of it was stored"
        ))),
    }
}

fn idempotency_key(req: &Request<Incoming>) -> ApiResult<Option<String>> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            auditlog_client::proto::check_key(v.as_bytes()).map_err(ApiError::bad)?;
            Ok(Some(String::from_utf8_lossy(v.as_bytes()).into_owned()))
        }
    }
}

async fn post_events(req: Request<Incoming>, ctx: &Arc<Ctx>, client: &str) -> ApiResult<String> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let array = match base.as_str() {
        "application/json" => true,
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "text/plain" => false,
        _ => {
            return Err(ApiError::new(
                Kind::UnsupportedMediaType,
                format!("POST /v1/events takes application/x-ndjson (JSONL) or application/json (an array), not {ct:?}"),
            ))
        }
    };
    let key = idempotency_key(&req)?;
    ctx.backend.check_open()?;
    let (body, _permit) = read_body(req, ctx).await?;
    let events = if array {
        crate::prepare::parse_json(&body)?
    } else {
        crate::prepare::parse_jsonl(&body)?
    };
    ctx.rate(client, events.len() as u64)?;
    let a = ctx.backend.append(Body::Events(events), key).await?;
    Ok(format!(
        "{{\"accepted\":{},\"first_lsn\":{},\"last_lsn\":{},\"duplicate\":{}}}",
        a.events, a.first_lsn, a.last_lsn, a.duplicate
    ))
}

async fn post_otlp(req: Request<Incoming>, ctx: &Arc<Ctx>, client: &str, signal: Signal) -> Resp {
    metrics::inc(&ctx.backend.metrics.requests_otlp);
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let enc = match Encoding::from_content_type(ct.as_deref()) {
        Ok(e) => e,
        // The failure body's encoding is unknown: JSON.
        Err(e) => return error(&e),
    };
    let fail = |e: ApiError| {
        let mut r = respond(e.http_status(), enc.content_type(), otlp::failure(enc, &e));
        add_retry_after(&mut r, &e);
        r
    };
    let key = match idempotency_key(&req) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    if let Err(e) = ctx.backend.check_open() {
        return fail(e);
    }
    let (body, _permit) = match read_body(req, ctx).await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let filter = ctx.backend.cfg.otlp_spans;
    // Mapped here, on the async thread, like a JSONL body is parsed and a
    // socket batch is checked: CPU work bounded by --max-request-bytes.
    // (Not `block_in_place`: each call hands the runtime's worker to a
    // fresh thread, the runtime grows, and every new thread's allocator
    // faults in fresh pages: docs/benchmarks.md, "serve26" and "serve27".)
    let mapped = match otlp::map_request(signal, &body, enc, filter) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    if let Err(e) = ctx.rate(client, mapped.events.len() as u64) {
        return fail(e);
    }
    // An exporter retries the same bytes: their hash is the key.
    let key = key.unwrap_or_else(|| {
        let sig = match signal {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
        };
        format!("otlp-{sig}-{}", &blake3::hash(&body).to_hex()[..32])
    });
    metrics::add(&ctx.backend.metrics.rejected_records, mapped.rejected);
    let message = mapped.first_error.clone().unwrap_or_default();
    match ctx
        .backend
        .append(Body::Events(mapped.events), Some(key))
        .await
    {
        Ok(_) => respond(
            200,
            enc.content_type(),
            otlp::success(signal, enc, mapped.rejected, &message),
        ),
        Err(e) => fail(e),
    }
}

async fn query(ctx: &Arc<Ctx>, method: &'static str, p: Params) -> ApiResult<String> {
    let b = ctx.backend.clone();
    tokio::task::spawn_blocking(move || queries::call(&b, method, &p))
        .await
        .unwrap_or_else(|e| Err(ApiError::failed(e.to_string())))
}

/// `GET /v1/runs`, `/v1/runs/ID`, `/v1/runs/ID/children`, ...
async fn get_query(req: &Request<Incoming>, ctx: &Arc<Ctx>) -> ApiResult<String> {
    let mut p = Params::from_query(req.uri().query())?;
    let segs: Vec<&str> = req
        .uri()
        .path()
        .trim_start_matches("/v1/")
        .split('/')
        .collect();
    let method: &'static str = match segs.as_slice() {
        ["runs"] => "runs",
        ["runs", id] => {
            p.insert("id", decode_segment(id)?);
            "run"
        }
        ["runs", id, "children"] => {
            p.insert("id", decode_segment(id)?);
            "children"
        }
        ["runs", id, "chain"] => {
            p.insert("id", decode_segment(id)?);
            "chain"
        }
        ["runs", id, "logs"] => {
            p.insert("id", decode_segment(id)?);
            "list_logs"
        }
        ["count"] => "count",
        ["last-run"] => "last_run",
        ["errors"] => "errors",
        ["calls"] => "calls",
        ["runs", id, "calls"] => {
            p.insert("run_id", decode_segment(id)?);
            "calls"
        }
        ["replay"] => "replay",
        ["tail"] => "tail",
        ["search"] => "search",
        ["stats"] => "stats",
        ["verify"] => "verify",
        ["counters"] => "counters",
        ["finished-before"] => "finished_before",
        _ => {
            return Err(ApiError::new(
                Kind::NotFound,
                format!(
                    "no endpoint {} (docs/serve.md lists them)",
                    req.uri().path()
                ),
            ))
        }
    };
    query(ctx, method, p).await
}

fn healthz(ctx: &Ctx) -> Resp {
    match ctx.backend.check_open() {
        Ok(()) => json_ok(format!(
            "{{\"ok\":true,\"head_lsn\":{},\"durable_lsn\":{}}}",
            ctx.backend.store().log().head().next_lsn,
            ctx.backend.store().log().counters().durable_lsn
        )),
        Err(e) => error(&e),
    }
}

fn metrics_text(ctx: &Ctx) -> Resp {
    let b = &ctx.backend;
    let c = b.store().log().counters();
    let m = &b.metrics;
    let mut t = metrics::Text(String::with_capacity(4096));
    t.metric(
        "auditlog_appended_events_total",
        "counter",
        "Events handed to the log's queue.",
        c.appended,
    );
    t.metric(
        "auditlog_stored_events_total",
        "counter",
        "Events acknowledged as durable to clients.",
        metrics::get(&m.events_stored),
    );
    t.metric(
        "auditlog_durable_lsn",
        "gauge",
        "LSN one past the last durable event.",
        c.durable_lsn,
    );
    t.metric(
        "auditlog_head_lsn",
        "gauge",
        "LSN one past the last committed event.",
        b.store().log().head().next_lsn,
    );
    t.metric(
        "auditlog_rejected_records_total",
        "counter",
        "Records refused as bad input.",
        metrics::get(&m.rejected_records),
    );
    t.metric(
        "auditlog_duplicate_requests_total",
        "counter",
        "Retried requests answered without storing again.",
        metrics::get(&m.duplicates),
    );
    t.metric(
        "auditlog_busy_total",
        "counter",
        "Requests refused for back-pressure (queue full or byte budget).",
        metrics::get(&m.busy),
    );
    t.metric(
        "auditlog_rate_limited_total",
        "counter",
        "Requests refused for a client's rate.",
        metrics::get(&m.rate_limited),
    );
    t.metric(
        "auditlog_too_large_total",
        "counter",
        "Requests refused as over the size limit.",
        metrics::get(&m.too_large),
    );
    t.metric(
        "auditlog_append_failures_total",
        "counter",
        "Appends that failed after reaching the log.",
        metrics::get(&m.append_failures),
    );
    t.metric(
        "auditlog_queue_depth",
        "gauge",
        "Appends waiting in the log's queue.",
        c.queue_depth,
    );
    t.metric(
        "auditlog_queue_capacity",
        "gauge",
        "Appends the log's queue holds.",
        b.cfg.queue_capacity,
    );
    t.metric(
        "auditlog_connections_open",
        "gauge",
        "Open connections (socket and HTTP).",
        ctx.gate.open(),
    );
    t.metric(
        "auditlog_connections_refused_total",
        "counter",
        "Connections refused over --max-connections.",
        metrics::get(&m.connections_refused),
    );
    t.metric(
        "auditlog_requests_socket_total",
        "counter",
        "Requests on the Unix socket.",
        metrics::get(&m.requests_socket),
    );
    t.metric(
        "auditlog_requests_http_total",
        "counter",
        "HTTP requests.",
        metrics::get(&m.requests_http),
    );
    t.metric(
        "auditlog_requests_otlp_total",
        "counter",
        "OTLP/HTTP export requests.",
        metrics::get(&m.requests_otlp),
    );
    t.metric(
        "auditlog_request_bytes_total",
        "counter",
        "Request bytes read.",
        metrics::get(&m.bytes_in),
    );
    t.metric(
        "auditlog_index_lag_events",
        "gauge",
        "Events in sealed segments not yet indexed.",
        b.index_lag(),
    );
    let (lag, secs) = b.search_lag().unwrap_or((0, 0.0));
    t.metric(
        "auditlog_search_lag_events",
        "gauge",
        "Events not yet searchable.",
        lag,
    );
    t.metric(
        "auditlog_search_lag_seconds",
        "gauge",
        "Age of the oldest event not yet searchable.",
        format!("{secs:.3}"),
    );
    t.metric(
        "auditlog_idempotency_keys",
        "gauge",
        "Idempotency keys remembered.",
        b.dedup_len(),
    );
    t.metric(
        "auditlog_up",
        "gauge",
        "1 while the log's writer works.",
        u8::from(b.check_open().is_ok()),
    );
    respond(200, "text/plain; version=0.0.4", t.0)
}
