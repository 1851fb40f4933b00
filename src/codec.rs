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

/// Append the encoded event to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(ev, out, config())
        .map(|_| ())
        .map_err(|e| CodecError(e.to_string()))
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
