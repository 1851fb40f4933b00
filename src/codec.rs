//! The only user of bincode. Event bodies are encoded with bincode 2's
//! `standard()` configuration (little-endian, variable-length integers),
//! described byte by byte in docs/format.md. The codec id written in every
//! segment header names this encoding so it can change without touching the
//! rest of the engine.

use crate::event::{Event, MAX_EVENT_BYTES};

/// Codec id stored in segment headers: 1 = bincode 2.0 `standard()` of
/// [`Event`].
pub const CODEC_BINCODE2_STANDARD: u8 = 1;

/// Largest encoded event body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = MAX_EVENT_BYTES;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_BODY_BYTES>()
}

/// Append the encoded event to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(ev, out, config())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decode one event body; the whole slice must be consumed.
pub fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let (ev, used): (Event, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the event body",
            bytes.len() - used
        ));
    }
    Ok(ev)
}

/// The strict decoder every reader and `verify` use (docs/format.md, "What
/// a reader accepts"): the encoding consumed whole, then every rule the
/// writer enforced on the way in.
pub fn decode_stored(bytes: &[u8]) -> Result<Event, String> {
    let ev = decode_event(bytes)?;
    crate::event::json::check_stored(&ev).map_err(|e| e.to_string())?;
    Ok(ev)
}

/// The timestamp of an encoded event, without decoding the rest. Relies on
/// `run_id` and `ts` being the first two fields of [`Event`].
pub fn peek_ts(bytes: &[u8]) -> Result<crate::event::Micros, String> {
    let ((_run_id, ts), _): ((&str, i64), usize) =
        bincode::serde::borrow_decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    Ok(ts)
}
