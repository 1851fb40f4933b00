//! The Unix socket: length-prefixed frames (docs/protocol.md), many
//! requests in flight per connection, answers in request order.

use std::sync::Arc;
use std::time::Duration;

use auditlog_client::proto::{self, op, status, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{ApiError, ApiResult, Kind};
use crate::backend::Body;
use crate::metrics;
use crate::params::Params;
use crate::{queries, Ctx};

/// Requests of one connection answered out of order at most this deep.
const PIPELINE_DEPTH: usize = 256;
/// The connection's read buffer (see `connection`).
const READ_BUFFER: usize = 16 << 10;
/// Once a frame has begun, the rest must arrive within this.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

type Answer = (u64, u8, Vec<u8>);

pub async fn serve(listener: UnixListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some(slot) = ctx.gate.enter() else {
                        metrics::inc(&ctx.backend.metrics.connections_refused);
                        tokio::spawn(refuse(stream));
                        continue;
                    };
                    let ctx = ctx.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        metrics::inc(&ctx.backend.metrics.connections_open);
                        connection(stream, &ctx, stop).await;
                        ctx.backend.metrics.connections_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on the socket failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

/// Over the connection cap: one UNAVAILABLE answer, then close.
async fn refuse(mut s: UnixStream) {
    let e = ApiError {
        retry_after_ms: Some(100),
        ..ApiError::new(
            Kind::Unavailable,
            "too many connections (--max-connections); retry",
        )
    };
    let mut out = Vec::new();
    let body = e.to_json();
    proto::write_header(&mut out, e.socket_status(), 0, b"", body.len());
    out.extend_from_slice(body.as_bytes());
    let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(&out)).await;
}

fn answer(id: u64, r: ApiResult<String>) -> Answer {
    match r {
        Ok(body) => (id, status::OK, body.into_bytes()),
        Err(e) => (id, e.socket_status(), e.to_json().into_bytes()),
    }
}

async fn connection(stream: UnixStream, ctx: &Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let client = match stream.peer_cred() {
        Ok(c) => format!("pid:{}", c.pid().unwrap_or(0)),
        Err(_) => "pid:?".to_string(),
    };
    let (rd, wr) = stream.into_split();
    // Small on purpose: a read at least this large into an empty buffer
    // bypasses it (tokio's BufReader), so a batch's body goes from the
    // socket straight into its own buffer instead of being copied through
    // this one; headers and small requests are still read a few at once.
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let (tx, mut rx) = mpsc::channel::<JoinHandle<Answer>>(PIPELINE_DEPTH);
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 << 10, wr);
        while let Some(h) = rx.recv().await {
            let (id, st, body) = h.await.unwrap_or_else(|e| {
                (
                    0,
                    status::FAILED,
                    ApiError::failed(e.to_string()).to_json().into_bytes(),
                )
            });
            let mut head = Vec::with_capacity(proto::HEADER);
            proto::write_header(&mut head, st, id, b"", body.len());
            if w.write_all(&head).await.is_err() || w.write_all(&body).await.is_err() {
                break;
            }
            if rx.is_empty() && w.flush().await.is_err() {
                break;
            }
            if st == status::TOO_LARGE {
                break;
            }
        }
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    });
    let max_body = ctx.backend.cfg.max_request_bytes;
    loop {
        let mut h = [0u8; proto::HEADER];
        // Between requests a stop ends the connection; a request begun is
        // read whole and answered.
        let first = tokio::select! {
            r = rd.read(&mut h[..1]) => r,
            _ = stop.changed() => break,
        };
        match first {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let rest = tokio::time::timeout(FRAME_TIMEOUT, rd.read_exact(&mut h[1..])).await;
        if !matches!(rest, Ok(Ok(_))) {
            let _ = tx.send(ready(answer(0, Err(cut_short("header"))))).await;
            break;
        }
        let head = match Header::parse(&h, max_body) {
            Ok(head) => head,
            Err(e) => {
                let id = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
                let too_large = matches!(e, proto::HeaderError::BadLength { len, .. } if len as usize > proto::LEN_FIXED);
                let err = if too_large {
                    metrics::inc(&ctx.backend.metrics.too_large);
                    ApiError::new(
                        Kind::TooLarge,
                        format!(
                            "{e}: the request is over --max-request-bytes ({max_body}); split it"
                        ),
                    )
                } else {
                    ApiError::bad(format!("bad frame header: {e}; closing the connection"))
                };
                let _ = tx.send(ready(answer(id, Err(err)))).await;
                break;
            }
        };
        let permit = match ctx.backend.reserve(head.body_len()).await {
            Ok(p) => Some(p),
            Err(e) => {
                // Read and drop the body, answer busy, go on.
                let mut sink = tokio::io::sink();
                let mut take = (&mut rd).take((head.len - proto::LEN_FIXED) as u64);
                if tokio::io::copy(&mut take, &mut sink).await.is_err() {
                    break;
                }
                let _ = tx.send(ready(answer(head.id, Err(e)))).await;
                continue;
            }
        };
        let mut key = vec![0u8; head.key_len];
        // Not zeroed first: read straight into the spare capacity (a few
        // bytes spare for the marker the server may add in place).
        // A buffer used before (see pool.rs): its pages are mapped already.
        let mut body = ctx.backend.pool.take(head.body_len() + 256);
        let read = tokio::time::timeout(FRAME_TIMEOUT, async {
            rd.read_exact(&mut key).await?;
            (&mut rd)
                .take(head.body_len() as u64)
                .read_to_end(&mut body)
                .await
        })
        .await;
        if !matches!(read, Ok(Ok(n)) if n == head.body_len()) {
            let _ = tx
                .send(ready(answer(head.id, Err(cut_short("body")))))
                .await;
            break;
        }
        metrics::inc(&ctx.backend.metrics.requests_socket);
        metrics::add(&ctx.backend.metrics.bytes_in, (head.len + 4) as u64);
        let ctx2 = ctx.clone();
        let client = client.clone();
        let handle = tokio::spawn(async move {
            let r = request(&ctx2, head.kind, key, body, &client).await;
            if let Err(e) = &r {
                metrics::add(&ctx2.backend.metrics.rejected_records, e.bad_records);
            }
            drop(permit);
            answer(head.id, r)
        });
        if tx.send(handle).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn ready(a: Answer) -> JoinHandle<Answer> {
    tokio::spawn(async move { a })
}

fn cut_short(what: &str) -> ApiError {
    ApiError::bad(format!(
        "the request's {what} was cut short (connection closed or {} s without the rest); nothing of it was stored",
        FRAME_TIMEOUT.as_secs()
    ))
}

fn key_of(key: Vec<u8>) -> ApiResult<Option<String>> {
    if key.is_empty() {
        return Ok(None);
    }
    proto::check_key(&key).map_err(ApiError::bad)?;
    Ok(Some(String::from_utf8(key).unwrap_or_default()))
}

async fn request(
    ctx: &Arc<Ctx>,
    kind: u8,
    key: Vec<u8>,
    body: Vec<u8>,
    client: &str,
) -> ApiResult<String> {
    let b = &ctx.backend;
    let key = key_of(key)?;
    match kind {
        op::HELLO => Ok(format!(
            "{{\"protocol\":{},\"server\":\"auditlog-serve {}\",\"max_request_bytes\":{}}}",
            proto::PROTOCOL_VERSION,
            env!("CARGO_PKG_VERSION"),
            b.cfg.max_request_bytes
        )),
        op::APPEND_JSONL => {
            let events = crate::prepare::parse_jsonl(&body)?;
            // The events own their text now: the buffer can serve again.
            ctx.backend.pool.give(body);
            ctx.rate(client, events.len() as u64)?;
            b.append(Body::Events(events), key)
                .await
                .map(|a| a.to_json())
        }
        op::APPEND_FRAMES => {
            let count = crate::prepare::count_frames(&body);
            ctx.rate(client, count.unwrap_or(1) as u64)?;
            b.append(Body::Frames(body, count), key)
                .await
                .map(|a| a.to_json())
        }
        op::CALL => {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad(format!("the call is not JSON: {e}")))?;
            let p = Params::from_json(v)?;
            let method = p.str("method")?;
            if method == "finish_run" || method == "append_require_run" {
                let events = call_events(&p, &method)?;
                ctx.rate(client, events.len() as u64)?;
                return b.append_require_run(events, key).await.map(|a| a.to_json());
            }
            let b2 = b.clone();
            tokio::task::spawn_blocking(move || queries::call(&b2, &method, &p))
                .await
                .unwrap_or_else(|e| Err(ApiError::failed(e.to_string())))
        }
        other => Err(ApiError::bad(format!(
            "unknown op 0x{other:02x} (1 APPEND_JSONL, 2 APPEND_FRAMES, 3 CALL, 4 HELLO)"
        ))),
    }
}

/// The events of a write call, each checked like any ingested event:
/// `finish_run` takes one `run_finished` as `event`; `append_require_run`
/// an array `events` (all or nothing, like any append request).
fn call_events(p: &Params, method: &str) -> ApiResult<Vec<auditlog::Event>> {
    let values: Vec<&serde_json::Value> = if method == "finish_run" {
        vec![p
            .0
            .get("event")
            .ok_or_else(|| ApiError::bad("parameter `event` is required"))?]
    } else {
        match p.0.get("events") {
            Some(serde_json::Value::Array(a)) if !a.is_empty() => a.iter().collect(),
            _ => {
                return Err(ApiError::bad(
                    "parameter `events` (a non-empty array of events) is required",
                ))
            }
        }
    };
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let text = v.to_string();
        let mut ev = auditlog::event::json::parse_event(text.as_bytes())
            .map_err(|e| ApiError::record(i as u64, None, &e.field, &e.reason))?;
        crate::prepare::strip_marker(&mut ev);
        if method == "finish_run" && !matches!(ev.data, auditlog::EventData::RunFinished(_)) {
            return Err(ApiError::record(
                0,
                None,
                "kind",
                "finish_run takes a run_finished event",
            ));
        }
        out.push(ev);
    }
    Ok(out)
}
