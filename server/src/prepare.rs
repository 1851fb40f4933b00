//! Request bodies turned into events: JSONL, a JSON array, or encoded
//! event frames. Every record is checked with the contract's rules before
//! anything is stored; a bad one rejects the whole request (nothing of it
//! is stored) with an answer naming the record, its line and the field.

use auditlog::event::json::parse_event;
use auditlog::{EncodedBatch, Event, EventError, Json, RedactionPolicy};
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::api::{ApiError, ApiResult};

/// The top-level field the server adds to the first event of a request
/// that carries an idempotency key (docs/protocol.md, "Retries").
pub const MARKER_FIELD: &str = "_ingest";
/// Bad records listed in one answer.
const MAX_LISTED: usize = 100;

/// Where a request's idempotency marker goes: the key, the request's
/// event count, and the index of the first event of this append in it.
#[derive(Debug, Clone)]
pub struct Marker {
    pub key: String,
    pub n: u64,
    pub at: u64,
}

impl Marker {
    pub fn json(&self) -> Json {
        let v = serde_json::json!({"key": self.key, "n": self.n, "at": self.at});
        Json::from_value(&v).expect("a marker is small, valid JSON")
    }

    /// Read a marker back from an event (restart, reconcile).
    pub fn of(ev: &Event) -> Option<Marker> {
        let (_, v) = ev.extra.iter().find(|(k, _)| k == MARKER_FIELD)?;
        let v: serde_json::Value = serde_json::from_str(v.as_str()).ok()?;
        Some(Marker {
            key: v.get("key")?.as_str()?.to_string(),
            n: v.get("n")?.as_u64()?,
            at: v.get("at")?.as_u64()?,
        })
    }
}

/// Drop a marker that came in from outside (another log's replay): only
/// the server writes them. True if one was dropped.
pub fn strip_marker(ev: &mut Event) -> bool {
    let before = ev.extra.len();
    ev.extra.retain(|(k, _)| k != MARKER_FIELD);
    ev.extra.len() != before
}

/// Collects bad records: the first names the answer, up to 100 are listed.
struct Bad {
    first: Option<ApiError>,
    more: Vec<serde_json::Value>,
    count: u64,
}

impl Bad {
    fn new() -> Bad {
        Bad {
            first: None,
            more: Vec::new(),
            count: 0,
        }
    }

    fn push(&mut self, index: u64, line: Option<u64>, e: &EventError) {
        self.count += 1;
        if self.more.len() < MAX_LISTED {
            let mut v = serde_json::json!({"record": index, "field": e.field, "reason": e.reason});
            if let Some(l) = line {
                v["line"] = l.into();
            }
            self.more.push(v);
        }
        if self.first.is_none() {
            self.first = Some(ApiError::record(index, line, &e.field, &e.reason));
        }
    }

    fn finish(self, events: Vec<Event>) -> ApiResult<Vec<Event>> {
        match self.first {
            None => Ok(events),
            Some(mut e) => {
                if self.count > 1 {
                    e.message = format!(
                        "{} bad records, nothing stored; the first: {}",
                        self.count, e.message
                    );
                } else {
                    e.message = format!("nothing stored: {}", e.message);
                }
                if let Some(b) = e.bad.as_mut() {
                    b.more = self.more;
                }
                e.bad_records = self.count;
                Err(e)
            }
        }
    }
}

/// JSONL: one event per line; blank lines skipped; `\r\n` accepted.
pub fn parse_jsonl(body: &[u8]) -> ApiResult<Vec<Event>> {
    let mut events = Vec::new();
    let mut bad = Bad::new();
    let mut index = 0u64;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match parse_event(line) {
            Ok(mut ev) => {
                strip_marker(&mut ev);
                events.push(ev);
            }
            Err(e) => bad.push(index, Some(i as u64 + 1), &e),
        }
        index += 1;
    }
    bad.finish(events)
}

/// A JSON array of events (or one event object).
pub fn parse_json(body: &[u8]) -> ApiResult<Vec<Event>> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad(format!("the body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        // One object, or JSONL sent as application/json.
        return parse_jsonl(body);
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        ApiError::bad(format!(
            "the body is not a JSON array of events: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let mut events = Vec::with_capacity(items.len());
    let mut bad = Bad::new();
    for (i, raw) in items.iter().enumerate() {
        match parse_event(raw.get().as_bytes()) {
            Ok(mut ev) => {
                strip_marker(&mut ev);
                events.push(ev);
            }
            Err(e) => bad.push(i as u64, None, &e),
        }
    }
    bad.finish(events)
}

/// Encode parsed events from `start` on, the marker (if any) on the first.
pub fn encode_events(
    mut events: Vec<Event>,
    start: usize,
    marker: Option<&Marker>,
    policy: Option<&Arc<RedactionPolicy>>,
) -> ApiResult<EncodedBatch> {
    let mut rest = events.split_off(start.min(events.len()));
    if let (Some(m), Some(first)) = (marker, rest.first_mut()) {
        first.extra.push((MARKER_FIELD.to_string(), m.json()));
    }
    // Every Body::Events was checked when it was made (the JSONL parser,
    // or the OTLP mapping's validate_event); the marker is built here.
    EncodedBatch::encode_parsed(&rest, policy).map_err(|e| shift(e.into(), start))
}

/// Record indexes in errors count from the start of the request.
fn shift(e: ApiError, by: usize) -> ApiError {
    match &e.bad {
        Some(b) => {
            let mut n = ApiError::record(b.record + by as u64, None, &b.field, &b.reason);
            n.message = format!("nothing stored: {}", n.message);
            n
        }
        None => e,
    }
}

/// The number of frames in `bytes` by their length fields alone (`None`
/// if they do not tile it exactly: the full check then says why).
pub fn count_frames(bytes: &[u8]) -> Option<usize> {
    let mut off = 0usize;
    let mut n = 0usize;
    while off < bytes.len() {
        let len = u32::from_le_bytes(bytes.get(off..off + 4)?.try_into().ok()?) as usize;
        off = off.checked_add(8 + len)?;
        n += 1;
    }
    (off == bytes.len()).then_some(n)
}

/// Offset of frame `k` (by length fields).
fn frame_offset(bytes: &[u8], k: usize) -> Option<usize> {
    let mut off = 0usize;
    for _ in 0..k {
        let len = u32::from_le_bytes(bytes.get(off..off + 4)?.try_into().ok()?) as usize;
        off = off.checked_add(8 + len)?;
    }
    (off <= bytes.len()).then_some(off)
}

/// Check encoded frames from `start` on and put the marker on the first.
pub fn encode_frames(
    mut bytes: Vec<u8>,
    start: usize,
    marker: Option<&Marker>,
    policy: Option<&Arc<RedactionPolicy>>,
) -> ApiResult<EncodedBatch> {
    let off = frame_offset(&bytes, start)
        .ok_or_else(|| ApiError::bad("the frames' length fields do not tile the body"))?;
    bytes.drain(..off);
    // Only the first event (the marker) and one that came with a marker
    // of its own change; every other event is checked in place.
    let wants_edit = |i: usize, extra: &[(&str, &str)]| {
        (marker.is_some() && i == 0) || extra.iter().any(|(k, _)| *k == MARKER_FIELD)
    };
    EncodedBatch::from_frames(bytes, policy, wants_edit, |i, ev| {
        let mut changed = strip_marker(ev);
        if let (Some(m), 0) = (marker, i) {
            ev.extra.push((MARKER_FIELD.to_string(), m.json()));
            changed = true;
        }
        Ok(changed)
    })
    .map_err(|e| shift(e.into(), start))
}
