//! The JSONL event parser over arbitrary bytes: never panics; what it
//! accepts validates, survives the codec, and prints to JSON that parses
//! back to the same event.
#![no_main]

use auditlog::internals::codec::{decode_event, encode_event};
use auditlog::event::json::{event_to_json, parse_event, validate_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = parse_event(data) else {
        return;
    };
    validate_event(&ev).expect("a parsed event validates");
    let mut body = Vec::new();
    encode_event(&ev, &mut body).expect("a parsed event encodes");
    let back = decode_event(&body).expect("an encoded event decodes");
    assert_eq!(back, ev, "codec round trip");
    let text = event_to_json(&ev, None);
    let again = parse_event(text.as_bytes()).expect("printed JSON parses again");
    assert_eq!(again, ev, "JSON round trip: {text}");
});
