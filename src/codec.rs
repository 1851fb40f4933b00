//! The only user of bincode. Event bodies are encoded with bincode 2's
//! `standard()` configuration (little-endian, variable-length integers),
//! described byte by byte in docs/format.md. The codec id written in every
//! segment header names this encoding so it can change without touching the
//! rest of the engine.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use crate::event::borrowed::EventRef;
use crate::event::{Event, MAX_EVENT_BYTES};

/// Codec id stored in segment headers: 1 = bincode 2.0 `standard()` of
/// [`Event`].
pub const CODEC_BINCODE2_STANDARD: u8 = 1;

/// Largest encoded event body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = MAX_EVENT_BYTES;

/// An event body that does not encode or decode (bincode's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_BODY_BYTES>()
}

/// Append the encoded event to `out`. The four kinds a gateway appends are
/// written by hand (`put`: the bytes bincode writes, without its serde
/// machinery, which was a seventh of a single Python append, py29); system
/// events by bincode itself.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if put::event(ev, out) {
        return Ok(());
    }
    encode_event_bincode(ev, out)
}

/// Append an event seen in place ([`EventRef`], e.g. a line parsed by
/// [`crate::event::json::with_parsed_event`]): the bytes
/// [`encode_event`] writes for the owned event it views. A system event
/// is refused (it is never read in place).
pub fn encode_event_ref(ev: &EventRef<'_>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if put::event_ref(ev, out) {
        return Ok(());
    }
    Err(CodecError(
        "a system event is not encoded from a view".to_string(),
    ))
}

/// [`encode_event`] through bincode's serde writer alone (system events,
/// and the reference the hand-written writer is held to in the tests).
fn encode_event_bincode(ev: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(ev, out, config())
        .map(|_| ())
        .map_err(|e| CodecError(e.to_string()))
}

/// A hand-written writer of the encoding (bincode 2 `standard()`,
/// docs/format.md "Event body") for every kind but system events: the
/// fields in their declaration order, integers as bincode's varints
/// (signed ones zigzagged), `f64` as 8 little-endian bytes, `bool` and an
/// `Option`'s tag as one byte, strings and lists after their length, an
/// enum variant after its index. bincode's byte limit is a decoding limit
/// (it never refuses to encode), so neither does this. The tests hold its
/// bytes to bincode's over events of every kind and every varint width.
///
/// Why by hand, not bincode's own derived `Encode` (no serde; measured in
/// enc30, docs/benchmarks.md, py30's section): the derived encoder wrote
/// the same bytes but cost 525 instructions per event on the Python append
/// workload against this writer's 355 (callgrind, calling thread only),
/// +3.9% of the whole append (the library's code would have replaced this
/// one within about 1%): every field goes through an out-of-line `encode`
/// returning a `Result`, and each varint through an out-of-line
/// `varint_encode_u64` writing one-byte slices. Branch
/// `enc30-derived-experiment` holds the derived version as measured.
mod put {
    use crate::event::borrowed::{CallRef, DataRef, EventRef, FinishedRef, LogRef, StartedRef};
    use crate::event::{Event, EventData, Micros};

    /// Write `ev`; `false` (nothing written) for a system event.
    pub(super) fn event(ev: &Event, out: &mut Vec<u8>) -> bool {
        if matches!(ev.data, EventData::System(_)) {
            return false;
        }
        head_and_data(out, &ev.run_id, ev.ts, &DataRef::of(&ev.data));
        len(out, ev.extra.len());
        for (key, value) in &ev.extra {
            str(out, key);
            str(out, value.as_str());
        }
        true
    }

    /// Write an event seen in place: the bytes [`event`] writes for the
    /// owned event it views (the same code past the unknown fields'
    /// list); `false` (nothing written) for a system event.
    pub(super) fn event_ref(ev: &EventRef<'_>, out: &mut Vec<u8>) -> bool {
        if ev.is_system() {
            return false;
        }
        head_and_data(out, ev.run_id, ev.ts, &ev.data);
        len(out, ev.extra.len());
        for (key, value) in &ev.extra {
            str(out, key);
            str(out, value);
        }
        true
    }

    /// Everything before the unknown fields. A system event (never given:
    /// the callers refuse it first) writes its head only.
    fn head_and_data(out: &mut Vec<u8>, run_id: &str, ts: Micros, data: &DataRef<'_>) {
        str(out, run_id);
        i64(out, ts);
        // The variant's index, as `EventData` orders them.
        match data {
            DataRef::RunStarted(s) => {
                u64(out, 0);
                started(out, s);
            }
            DataRef::RunLog(l) => {
                u64(out, 1);
                log(out, l);
            }
            DataRef::RunFinished(f) => {
                u64(out, 2);
                finished(out, f);
            }
            DataRef::System(_) => {}
            DataRef::ToolCall(c) => {
                u64(out, 4);
                call(out, c);
            }
        }
    }

    fn started(out: &mut Vec<u8>, s: &StartedRef<'_>) {
        let StartedRef {
            skill_id,
            caller_id,
            channel_id,
            parent_run_id,
            inputs,
            dry_run,
        } = s;
        for t in [skill_id, caller_id, channel_id, parent_run_id, inputs] {
            str(out, t);
        }
        out.push(u8::from(*dry_run));
    }

    fn log(out: &mut Vec<u8>, l: &LogRef<'_>) {
        let LogRef {
            seq,
            event_type,
            payload,
        } = l;
        u64(out, *seq);
        str(out, event_type);
        str(out, payload);
    }

    fn finished(out: &mut Vec<u8>, f: &FinishedRef<'_>) {
        let FinishedRef {
            status,
            output,
            error,
            tool_calls,
            runtime_seconds,
            input_tokens,
            output_tokens,
            thinking_tokens,
        } = f;
        for t in [status, output, error] {
            str(out, t);
        }
        u64(out, *tool_calls);
        f64(out, *runtime_seconds);
        for n in [input_tokens, output_tokens, thinking_tokens] {
            u64(out, *n);
        }
    }

    fn call(out: &mut Vec<u8>, c: &CallRef<'_>) {
        // Every field named: a field added to `CallRef` fails to compile
        // here until it is written too.
        let CallRef {
            call_id,
            channel_id,
            caller_id,
            workspace_id,
            request_id,
            tool,
            engine,
            status,
            error_type,
            error,
            duration_ms,
            input_bytes,
            result_bytes,
            exit_code,
            http_status,
            input_hash,
            args_summary,
            payload,
        } = c;
        for t in [
            call_id,
            channel_id,
            caller_id,
            workspace_id,
            request_id,
            tool,
            engine,
            status,
            error_type,
            error,
        ] {
            str(out, t);
        }
        option(out, *duration_ms, f64);
        option(out, *input_bytes, u64);
        option(out, *result_bytes, u64);
        option(out, *exit_code, i64);
        option(out, http_status.map(u64::from), u64);
        str(out, input_hash);
        str(out, args_summary);
        str(out, payload);
    }

    /// bincode's varint: one byte below 251, else a marker (251, 252,
    /// 253) and the value in 2, 4 or 8 little-endian bytes.
    #[inline]
    fn u64(out: &mut Vec<u8>, v: u64) {
        if let Ok(b) = u8::try_from(v) {
            if b < 251 {
                out.push(b);
                return;
            }
        }
        if let Ok(w) = u16::try_from(v) {
            out.push(251);
            out.extend_from_slice(&w.to_le_bytes());
        } else if let Ok(w) = u32::try_from(v) {
            out.push(252);
            out.extend_from_slice(&w.to_le_bytes());
        } else {
            out.push(253);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Zigzag (0, -1, 1, -2, ... as 0, 1, 2, 3, ...), then the varint.
    #[inline]
    fn i64(out: &mut Vec<u8>, v: i64) {
        u64(out, ((v << 1) ^ (v >> 63)).cast_unsigned());
    }

    #[inline]
    fn f64(out: &mut Vec<u8>, v: f64) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    #[inline]
    fn len(out: &mut Vec<u8>, n: usize) {
        // A length always fits (usize is at most 64 bits wide).
        u64(out, u64::try_from(n).unwrap_or(u64::MAX));
    }

    #[inline]
    fn str(out: &mut Vec<u8>, s: &str) {
        len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn option<T>(out: &mut Vec<u8>, v: Option<T>, put: fn(&mut Vec<u8>, T)) {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put(out, v);
            }
        }
    }
}

/// Decode one event body; the whole slice must be consumed.
pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let decoded: (Event, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    consumed_whole(decoded, bytes.len())
}

/// The decoded value, if the decode used every one of the body's `len`
/// bytes (trailing bytes are damage, not padding).
fn consumed_whole<T>((value, used): (T, usize), len: usize) -> Result<T, CodecError> {
    if used != len {
        return Err(CodecError(format!(
            "{} trailing bytes after the event body",
            len - used
        )));
    }
    Ok(value)
}

/// Decode one event body in place: its strings borrowed from `bytes`
/// (see [`crate::event::borrowed`]); the whole slice must be consumed.
/// Accepts exactly the bodies [`decode_event`] accepts, but for system
/// events, which it refuses (a caller falls back to [`decode_event`]).
pub fn decode_event_ref(bytes: &[u8]) -> Result<EventRef<'_>, CodecError> {
    // The usual body, read by hand (no serde machinery); anything it does
    // not take whole goes to bincode, which gives the answer.
    match fast::event(bytes) {
        Some(ev) => Ok(ev),
        None => decode_event_ref_bincode(bytes),
    }
}

/// [`decode_event_ref`] for an index build over events this process
/// checked against every rule before it stored them (`auditlog ingest`):
/// the strings no index reads (JSON texts but a `run_log` tool call's
/// payload, outputs, errors, call and request ids, hashes, summaries,
/// unknown fields' values but `replace`'s) are stepped over without their
/// UTF-8 check and read as "" in the view; everything the index reads is
/// read as [`decode_event_ref`] reads it. `None` where the hand-written
/// reader does not take the body whole (the caller then decodes strictly).
///
/// `parsed_payload`: the `event_type` of the `run_log`s whose payload the
/// index parses (its tool calls), read and checked as the others' are not.
pub(crate) fn decode_event_for_index<'a>(
    bytes: &'a [u8],
    parsed_payload: &str,
) -> Option<EventRef<'a>> {
    fast::event_for_index(bytes, parsed_payload)
}

/// [`decode_event_ref`] through bincode's serde reader alone.
fn decode_event_ref_bincode(bytes: &[u8]) -> Result<EventRef<'_>, CodecError> {
    let decoded: (EventRef<'_>, usize) = bincode::serde::borrow_decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    consumed_whole(decoded, bytes.len())
}

/// The strict decoder every reader and `verify` use (docs/format.md, "What
/// a reader accepts"): the encoding consumed whole, then every rule the
/// writer enforced on the way in.
///
/// The body is read once, in place ([`decode_event_ref`]); the rules run on
/// that view, and only an event that passes is copied out of it. Accepts
/// exactly what [`decode_stored_owned`] accepts, with the same errors:
/// where the in-place read refuses (a system event, or bytes that do not
/// decode), that decoder gives the answer.
pub fn decode_stored(bytes: &[u8]) -> Result<Event, StoredEventError> {
    match decode_event_ref(bytes) {
        Ok(view) => {
            crate::event::json::check_incoming_ref(&view)?;
            match view.to_event() {
                Some(ev) => Ok(ev),
                None => decode_stored_owned(bytes),
            }
        }
        Err(_) => decode_stored_owned(bytes),
    }
}

/// [`decode_stored`] the plain way: [`decode_event`], then the rules on the
/// owned event. The reference the in-place reads are held to (tests), and
/// what reads system events.
pub fn decode_stored_owned(bytes: &[u8]) -> Result<Event, StoredEventError> {
    let ev = decode_event(bytes)?;
    crate::event::json::check_stored(&ev)?;
    Ok(ev)
}

/// [`decode_event`]'s event, built by way of the in-place read: each
/// string copied once out of the body (no zeroed buffer, no second UTF-8
/// check), which costs less than bincode's owned decode. For bodies whose
/// strict checks already passed elsewhere (replay's check-ahead caller);
/// falls back to [`decode_event`] where the in-place read refuses.
pub fn decode_event_viewed(bytes: &[u8]) -> Result<Event, CodecError> {
    match decode_event_ref(bytes).map(|view| view.to_event()) {
        Ok(Some(ev)) => Ok(ev),
        _ => decode_event(bytes),
    }
}

/// [`decode_stored`]'s answer for `bytes` without building the event:
/// the body read in place ([`decode_event_ref`], strings borrowed) and the
/// same rules run on that view. Accepts exactly what [`decode_stored`]
/// accepts and refuses the rest with the same error: where the in-place
/// decode refuses (a system event, or bytes that do not decode), the owned
/// decoder gives the answer and its error text. Replay's check-ahead
/// thread uses it, so the caller only decodes.
pub fn check_stored_in_place(bytes: &[u8]) -> Result<(), StoredEventError> {
    match decode_event_ref(bytes) {
        Ok(ev) => Ok(crate::event::json::check_incoming_ref(&ev)?),
        Err(_) => decode_stored_owned(bytes).map(|_| ()),
    }
}

/// Why a stored event record is refused by [`decode_stored`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoredEventError {
    /// The bytes are not one whole encoded event.
    #[error(transparent)]
    Encoding(#[from] CodecError),
    /// The event decodes but breaks a rule the writer enforces on the way
    /// in (so no writer of this format stored it).
    #[error(transparent)]
    Rule(#[from] crate::error::EventError),
}

/// The timestamp of an encoded event, without decoding the rest. Relies on
/// `run_id` and `ts` being the first two fields of [`Event`].
pub fn peek_ts(bytes: &[u8]) -> Result<crate::event::Micros, CodecError> {
    let ((_run_id, ts), _): ((&str, i64), usize) =
        bincode::serde::borrow_decode_from_slice(bytes, config())
            .map_err(|e| CodecError(e.to_string()))?;
    Ok(ts)
}

/// A hand-written reader of the encoding [`decode_event_ref`] reads
/// (bincode 2 `standard()`: LEB-free varints, docs/format.md "Event body"),
/// for speed: the server reads every frame a client sends through it.
///
/// It never accepts more than bincode does: every value is read as
/// bincode reads it, integers only in their shortest form, the body must
/// be consumed whole, and bincode's byte limit is kept (bincode counts 8
/// bytes against it for every integer, whatever its encoded length; this
/// reader counts at least as much); on anything else it says `None` and the caller
/// asks bincode (the tests hold the two side by side over every truncation
/// and single-byte change of many bodies).
mod fast {
    use crate::event::borrowed::{CallRef, DataRef, EventRef, FinishedRef, LogRef, StartedRef};

    /// The event in `bytes`, if this reader takes the body whole.
    pub(super) fn event(bytes: &[u8]) -> Option<EventRef<'_>> {
        read_event(bytes, None)
    }

    /// [`event`] as an index build of events this process checked before
    /// storing them reads it: the strings the index never reads (see
    /// [`Reader::unread_str`]) are stepped over, not UTF-8-checked, and
    /// left empty in the view. A `run_log` whose `event_type` is
    /// `parsed_payload` keeps its payload (the index parses it).
    pub(super) fn event_for_index<'a>(
        bytes: &'a [u8],
        parsed_payload: &str,
    ) -> Option<EventRef<'a>> {
        read_event(bytes, Some(parsed_payload))
    }

    /// `skip_unread`: step over the strings no index reads, but the
    /// payload of a `run_log` of that `event_type`.
    fn read_event<'a>(bytes: &'a [u8], skip_unread: Option<&str>) -> Option<EventRef<'a>> {
        if bytes.len() > super::MAX_BODY_BYTES {
            return None;
        }
        let mut r = Reader {
            b: bytes,
            claimed: 0,
            skip_unread: skip_unread.is_some(),
        };
        let ev = EventRef {
            run_id: r.str()?,
            ts: r.i64()?,
            data: r.data(skip_unread)?,
            extra: r.extra()?,
        };
        r.b.is_empty().then_some(ev)
    }

    struct Reader<'a> {
        b: &'a [u8],
        /// What bincode's limit would have counted so far (or more).
        claimed: usize,
        /// Step over the strings an index build never reads.
        skip_unread: bool,
    }

    impl<'a> Reader<'a> {
        /// Count `n` bytes against bincode's limit, as it does.
        fn claim(&mut self, n: usize) -> Option<()> {
            self.claimed = self.claimed.checked_add(n)?;
            (self.claimed <= super::MAX_BODY_BYTES).then_some(())
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.b.len() {
                return None;
            }
            let (head, rest) = self.b.split_at(n);
            self.b = rest;
            Some(head)
        }

        fn byte(&mut self) -> Option<u8> {
            self.claim(1)?;
            Some(self.take(1)?[0])
        }

        /// A varint in its shortest form only (a longer one: `None`).
        fn u64(&mut self) -> Option<u64> {
            self.claim(8)?;
            match self.take(1)?[0] {
                b @ 0..=250 => Some(u64::from(b)),
                251 => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
                    (v >= 251).then_some(u64::from(v))
                }
                252 => {
                    let v = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
                    (v > u32::from(u16::MAX)).then_some(u64::from(v))
                }
                253 => {
                    let v = u64::from_le_bytes(self.take(8)?.try_into().ok()?);
                    (v > u64::from(u32::MAX)).then_some(v)
                }
                _ => None,
            }
        }

        fn i64(&mut self) -> Option<i64> {
            let z = self.u64()?;
            // Zigzag: 0, -1, 1, -2, ...
            let half = i64::try_from(z >> 1).ok()?;
            Some(if z & 1 == 0 { half } else { -half - 1 })
        }

        fn u16(&mut self) -> Option<u16> {
            u16::try_from(self.u64()?).ok()
        }

        fn f64(&mut self) -> Option<f64> {
            self.claim(8)?;
            Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }

        fn bool(&mut self) -> Option<bool> {
            match self.byte()? {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            }
        }

        fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
            match self.byte()? {
                0 => Some(None),
                1 => read(self).map(Some),
                _ => None,
            }
        }

        fn str(&mut self) -> Option<&'a str> {
            let n = usize::try_from(self.u64()?).ok()?;
            self.claim(n)?;
            let bytes = self.take(n)?;
            // A long string (a tool call's payload, which an index build
            // reads) a SIMD register at a time; std's check, which wins on
            // short ones, was ~9% of `auditlog ingest`'s index scans
            // (docs/benchmarks.md, "Ingest, cli36 round"). Same verdict.
            if n >= 64 {
                simdutf8::basic::from_utf8(bytes).ok()
            } else {
                std::str::from_utf8(bytes).ok()
            }
        }

        /// A string no index reads (JSON texts, outputs, errors, hashes):
        /// with `skip_unread`, its bytes are stepped over (length and
        /// limit kept as [`Reader::str`] keeps them) and it reads as "".
        fn unread_str(&mut self) -> Option<&'a str> {
            if !self.skip_unread {
                return self.str();
            }
            let n = usize::try_from(self.u64()?).ok()?;
            self.claim(n)?;
            self.take(n)?;
            Some("")
        }

        fn data(&mut self, parsed_payload: Option<&str>) -> Option<DataRef<'a>> {
            // The variant's index, as `EventData` orders them; a system
            // event (3) is never read in place.
            Some(match self.u64()? {
                0 => DataRef::RunStarted(StartedRef {
                    skill_id: self.str()?,
                    caller_id: self.str()?,
                    channel_id: self.str()?,
                    parent_run_id: self.str()?,
                    inputs: self.unread_str()?,
                    dry_run: self.bool()?,
                }),
                1 => {
                    let seq = self.u64()?;
                    let event_type = self.str()?;
                    // A tool call's payload is read for its fields.
                    let payload = if Some(event_type) == parsed_payload {
                        self.str()?
                    } else {
                        self.unread_str()?
                    };
                    DataRef::RunLog(LogRef {
                        seq,
                        event_type,
                        payload,
                    })
                }
                2 => DataRef::RunFinished(FinishedRef {
                    status: self.str()?,
                    output: self.unread_str()?,
                    error: self.unread_str()?,
                    tool_calls: self.u64()?,
                    runtime_seconds: self.f64()?,
                    input_tokens: self.u64()?,
                    output_tokens: self.u64()?,
                    thinking_tokens: self.u64()?,
                }),
                4 => DataRef::ToolCall(CallRef {
                    call_id: self.unread_str()?,
                    channel_id: self.str()?,
                    caller_id: self.str()?,
                    workspace_id: self.str()?,
                    request_id: self.unread_str()?,
                    tool: self.str()?,
                    engine: self.str()?,
                    status: self.str()?,
                    error_type: self.str()?,
                    error: self.unread_str()?,
                    duration_ms: self.option(Self::f64)?,
                    input_bytes: self.option(Self::u64)?,
                    result_bytes: self.option(Self::u64)?,
                    exit_code: self.option(Self::i64)?,
                    http_status: self.option(Self::u16)?,
                    input_hash: self.unread_str()?,
                    args_summary: self.unread_str()?,
                    payload: self.unread_str()?,
                }),
                _ => return None,
            })
        }

        fn extra(&mut self) -> Option<Vec<(&'a str, &'a str)>> {
            let n = usize::try_from(self.u64()?).ok()?;
            // Each pair takes two bytes at least: a count beyond what is
            // left is damage, and no list is sized by it.
            if n > self.b.len() / 2 {
                return None;
            }
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                // Of unknown fields' values, the index reads only the
                // amending marker's.
                let key = self.str()?;
                let value = if key == crate::event::Event::REPLACE {
                    self.str()?
                } else {
                    self.unread_str()?
                };
                out.push((key, value));
            }
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventData, Json, RunFinished, RunLog, RunStarted, ToolCall};

    /// Events of every kind the fast reader takes, with integers of every
    /// varint width and unknown fields.
    fn events() -> Vec<Event> {
        let ts = 1_764_547_200_000_000; // needs the 8-byte varint
        let j = |t: &str| Json::parse(t).expect("json");
        let mut started = Event::run_started(
            "r-1",
            ts,
            RunStarted {
                skill_id: "s".into(),
                caller_id: "c".into(),
                channel_id: "ch".into(),
                parent_run_id: String::new(),
                inputs: j(r#"{"q":"ünï"}"#),
                dry_run: true,
            },
        );
        started.extra.push(("x".into(), j("1")));
        started.extra.push(("y".into(), j(r#"[true,null]"#)));
        let log = Event::run_log(
            "r-1",
            0,
            RunLog {
                seq: 300,
                event_type: "step".into(),
                payload: j(r#""p""#),
            },
        );
        let finished = Event::run_finished(
            "r-1",
            ts + 1,
            RunFinished {
                status: "ok".into(),
                output: "done".into(),
                error: String::new(),
                tool_calls: 70_000,
                runtime_seconds: 1.5,
                input_tokens: 250,
                output_tokens: 251,
                thinking_tokens: u64::MAX,
            },
        );
        let call = |exit: Option<i64>, http: Option<u16>| {
            Event::tool_call(
                "",
                ts,
                ToolCall {
                    call_id: "c1".into(),
                    tool: "grep".into(),
                    status: "error".into(),
                    duration_ms: Some(2.5),
                    input_bytes: Some(65_536),
                    result_bytes: None,
                    exit_code: exit,
                    http_status: http,
                    payload: j(r#"{"a":[1,2]}"#),
                    ..ToolCall::default()
                },
            )
        };
        vec![
            started,
            log,
            finished,
            call(Some(-1), Some(404)),
            call(Some(i64::MIN), Some(u16::MAX)),
            call(None, None),
        ]
    }

    fn same(body: &[u8]) {
        if let Some(fast) = fast::event(body) {
            let slow = decode_event_ref_bincode(body);
            assert!(slow.is_ok(), "only the fast reader accepts {body:?}");
            // By their Debug text: NaN is not equal to itself.
            assert_eq!(
                Ok(format!("{fast:?}")),
                slow.map(|s| format!("{s:?}")),
                "{body:?}"
            );
        }
    }

    #[test]
    fn the_fast_reader_takes_every_usual_body_and_never_more_than_bincode() {
        for ev in events() {
            let mut body = Vec::new();
            encode_event(&ev, &mut body).expect("encodes");
            assert!(fast::event(&body).is_some(), "not taken: {ev:?}");
            same(&body);
            for cut in 0..body.len() {
                same(&body[..cut]);
            }
            let mut extended = body.clone();
            extended.push(0);
            same(&extended);
            for i in 0..body.len() {
                for v in [
                    0u8, 1, 2, 3, 4, 5, 0x7f, 0x80, 0xc0, 250, 251, 252, 253, 254, 255,
                ] {
                    let mut m = body.clone();
                    m[i] = v;
                    same(&m);
                }
                let mut m = body.clone();
                m[i] ^= 0x01;
                same(&m);
            }
        }
    }

    /// The hand-written writer writes bincode's bytes, byte for byte, for
    /// every kind it writes (integers and lengths at every varint width,
    /// every optional field absent and present), and leaves system events
    /// to bincode.
    #[test]
    fn the_hand_written_writer_writes_what_bincode_writes() {
        use crate::event::system::{SystemRecord, TreeCheckpoint};
        let widths = [
            0u64,
            1,
            250,
            251,
            252,
            u64::from(u16::MAX),
            u64::from(u16::MAX) + 1,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        let signed = [0i64, -1, 1, -126, 125, -32_768, 32_767, i64::MIN, i64::MAX];
        let text = |n: usize| "é".repeat(n / 2) + &"x".repeat(n % 2);
        let j = |t: String| Json::parse(t).expect("json");
        let mut evs = events();
        for (i, &n) in widths.iter().enumerate() {
            let short = usize::try_from(n.min(70_000)).expect("small");
            let mut log = Event::run_log(
                text(short),
                signed[i % signed.len()],
                RunLog {
                    seq: n,
                    event_type: text(i),
                    payload: j(format!("\"{}\"", text(short))),
                },
            );
            log.extra = (0..short.min(300))
                .map(|k| (format!("k{k}"), j(k.to_string())))
                .collect();
            evs.push(log);
            evs.push(Event::run_finished(
                "r",
                signed[(i + 3) % signed.len()],
                RunFinished {
                    status: text(i + 1),
                    output: text(short),
                    error: text(i),
                    tool_calls: n,
                    runtime_seconds: [0.0, -0.0, f64::NAN, f64::INFINITY, 1e300][i % 5],
                    input_tokens: widths[(i + 1) % widths.len()],
                    output_tokens: widths[(i + 2) % widths.len()],
                    thinking_tokens: widths[(i + 3) % widths.len()],
                },
            ));
            evs.push(Event::tool_call(
                text(i),
                i64::MAX - i64::try_from(i).expect("small"),
                ToolCall {
                    call_id: text(i),
                    channel_id: text(i + 1),
                    caller_id: text(i + 2),
                    workspace_id: text(i + 3),
                    request_id: text(i + 4),
                    tool: text(i + 5),
                    engine: text(i + 6),
                    status: text(i + 7),
                    error_type: text(i + 8),
                    error: text(short),
                    duration_ms: (i % 2 == 0).then_some(n as f64),
                    input_bytes: (i % 3 != 0).then_some(n),
                    result_bytes: Some(widths[(i + 5) % widths.len()]),
                    exit_code: (i % 4 != 1).then_some(signed[i % signed.len()]),
                    http_status: (i % 2 == 1).then(|| u16::try_from(n.min(65_535)).expect("u16")),
                    input_hash: text(64),
                    args_summary: text(i * 30),
                    payload: j(format!("[{n}]")),
                },
            ));
            evs.push(Event::run_started(
                text(short),
                signed[(i + 5) % signed.len()],
                RunStarted {
                    skill_id: text(i),
                    caller_id: text(i + 1),
                    channel_id: text(short),
                    parent_run_id: text(i + 2),
                    inputs: j(format!("{{\"n\":{n}}}")),
                    dry_run: i % 2 == 0,
                },
            ));
        }
        for ev in &evs {
            let (mut hand, mut reference) = (vec![7u8], vec![7u8]);
            assert!(put::event(ev, &mut hand), "not written by hand: {ev:?}");
            encode_event_bincode(ev, &mut reference).expect("encodes");
            assert!(hand == reference, "bytes differ for {ev:?}");
            // The same event seen in place writes the same bytes.
            let mut viewed = vec![7u8];
            encode_event_ref(&EventRef::of(ev), &mut viewed).expect("encodes");
            assert!(viewed == reference, "view's bytes differ for {ev:?}");
        }
        let system = Event {
            run_id: String::new(),
            ts: 5,
            data: EventData::System(Box::new(SystemRecord::Checkpoint(TreeCheckpoint {
                tree_size: 3,
                root: "ab".into(),
                signed_at: 9,
                note: "n".into(),
            }))),
            extra: Vec::new(),
        };
        let mut out = vec![1u8, 2];
        assert!(!put::event(&system, &mut out));
        assert_eq!(out, [1, 2], "a system event is left to bincode untouched");
        assert!(encode_event_ref(&EventRef::of(&system), &mut out).is_err());
        assert_eq!(out, [1, 2], "nor is it encoded from a view");
        let (mut via, mut reference) = (Vec::new(), Vec::new());
        encode_event(&system, &mut via).expect("encodes");
        encode_event_bincode(&system, &mut reference).expect("encodes");
        assert_eq!(via, reference);
    }

    /// What the index build of events checked on append sees of `ev`: the
    /// strings no index reads left empty.
    fn index_view(mut ev: EventRef<'_>) -> EventRef<'_> {
        use crate::event::borrowed::DataRef;
        match &mut ev.data {
            DataRef::RunStarted(s) => s.inputs = "",
            DataRef::RunLog(l) if l.event_type != crate::index::calls::LOG_CALL_EVENT_TYPE => {
                l.payload = ""
            }
            DataRef::RunFinished(f) => (f.output, f.error) = ("", ""),
            DataRef::ToolCall(c) => {
                (c.call_id, c.request_id, c.error) = ("", "", "");
                (c.input_hash, c.args_summary, c.payload) = ("", "", "");
            }
            _ => {}
        }
        for (k, v) in &mut ev.extra {
            if *k != Event::REPLACE {
                *v = "";
            }
        }
        ev
    }

    /// The reader of an index build over events checked on append reads
    /// every field the index reads exactly as the strict reader does, takes
    /// the same bodies whole, and leaves the strings it steps over empty.
    #[test]
    fn the_index_reader_reads_what_the_index_reads_as_the_strict_one() {
        let j = |t: &str| Json::parse(t).expect("json");
        let mut evs = events();
        evs.push(
            Event::run_log(
                "r-2",
                7,
                RunLog {
                    seq: 3,
                    event_type: crate::index::calls::LOG_CALL_EVENT_TYPE.into(),
                    payload: j(r#"{"tool":"ls","status":"error","duration_ms":4}"#),
                },
            )
            .with_replace(),
        );
        evs.push(evs[2].clone().with_replace());
        for ev in evs {
            let mut body = Vec::new();
            encode_event(&ev, &mut body).expect("encodes");
            let strict = fast::event(&body).map(index_view);
            assert!(strict.is_some(), "not taken: {ev:?}");
            assert_eq!(
                fast::event_for_index(&body, crate::index::calls::LOG_CALL_EVENT_TYPE)
                    .map(|v| format!("{v:?}")),
                strict.map(|v| format!("{v:?}")),
                "{ev:?}"
            );
            for cut in 0..body.len() {
                let cut_body = &body[..cut];
                assert_eq!(
                    fast::event_for_index(cut_body, crate::index::calls::LOG_CALL_EVENT_TYPE)
                        .map(|v| format!("{v:?}")),
                    fast::event(cut_body)
                        .map(index_view)
                        .map(|v| format!("{v:?}")),
                    "{ev:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_longer_varint_than_needed_is_left_to_bincode() {
        // run_id "" written as 251 0 0 (a u16 holding 0): bincode's call.
        let mut body = vec![251, 0, 0];
        let mut rest = Vec::new();
        let ev = &events()[0];
        encode_event(ev, &mut rest).expect("encodes");
        // Skip the original run_id (length 3, "r-1").
        body.extend_from_slice(&rest[4..]);
        assert!(fast::event(&body).is_none());
        // Whatever bincode says of it is the answer.
        let _ = decode_event_ref(&body);
    }
}
