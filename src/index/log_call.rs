//! The payload of a `run_log` tool call, as an index reads it: the call
//! fields it is grouped by, taken raw (unparsed) from the JSON object.
//!
//! An index build must also check that payload as the strict decoder does
//! (`json::check_json_text`: exactly one JSON value, nothing around it,
//! nested at most `MAX_JSON_DEPTH`), because the index reads it. Checking
//! it with a scan and then parsing it for its fields went over the same
//! text twice; [`read_checked`] does both in serde_json's one parse where
//! it can (docs/integrity.md, "What an index build checks";
//! docs/benchmarks.md, issue 11 round 6). Its answers are exactly those of
//! the check followed by [`read`]: where the one parse is not sure, it
//! asks them.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::EventError;
use crate::event::json;

/// The payload keys a `run_log` tool call is read by: each value's JSON
/// text, raw (unparsed; `None` for an absent key or `null`).
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LogCall<'a> {
    pub tool: Option<&'a str>,
    pub engine: Option<&'a str>,
    pub status: Option<&'a str>,
    pub error_type: Option<&'a str>,
    pub workspace_id: Option<&'a str>,
    pub duration_ms: Option<&'a str>,
}

/// [`LogCall`] as serde reads it (the reference the scans are held to).
#[derive(serde::Deserialize, Default)]
struct Derived<'a> {
    #[serde(borrow, default)]
    tool: Option<&'a RawValue>,
    #[serde(borrow, default)]
    engine: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    workspace_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    duration_ms: Option<&'a RawValue>,
}

impl<'a> From<Derived<'a>> for LogCall<'a> {
    fn from(d: Derived<'a>) -> LogCall<'a> {
        let get = |v: Option<&'a RawValue>| v.map(RawValue::get);
        LogCall {
            tool: get(d.tool),
            engine: get(d.engine),
            status: get(d.status),
            error_type: get(d.error_type),
            workspace_id: get(d.workspace_id),
            duration_ms: get(d.duration_ms),
        }
    }
}

/// The fields of a payload already known to be valid JSON: a payload that
/// is not an object (or that serde's struct rules refuse, such as a known
/// key given twice) is a call with no known field.
pub(crate) fn read(payload: &str) -> LogCall<'_> {
    serde_json::from_str::<Derived<'_>>(payload)
        .map(LogCall::from)
        .unwrap_or_default()
}

/// The payload checked as `json::check_json_text("payload", ..)` checks it
/// (the same verdict and error text), then read as [`read`] reads it.
///
/// The usual payload, an object with no whitespace around it and no deep
/// nesting, is checked by the parse that reads its fields: serde_json
/// parses every byte of it (the values it does not keep are skipped by its
/// validating `ignore_value`, the same code a `RawValue` check runs), and a
/// parse that succeeds on a text with no whitespace at either end is
/// exactly a text the check accepts. Anything else (a parse error, a
/// non-object, a repeated known key, whitespace around, many brackets)
/// takes the check and then [`read`], as before.
pub(crate) fn read_checked(payload: &str) -> Result<LogCall<'_>, EventError> {
    if let Some(call) = read_in_one_scan(payload).or_else(|| read_in_one_parse(payload)) {
        debug_assert!(
            json::check_json_text("payload", payload).is_ok() && call == read(payload),
            "one-parse read differs from check + read: {payload:?}"
        );
        return Ok(call);
    }
    json::check_json_text("payload", payload)?;
    Ok(read(payload))
}

/// `Some` only where the check accepts `payload` and [`read`] gives these
/// fields; `None` means "not sure". The check's own scan
/// (`json_scan::object_members`, which says yes only where serde_json
/// does) walks the object once and hands over each member's key and
/// value text: serde's parse of the same text (serde_json's string
/// scanning, its visitor calls) was most of a `run_log` tool call's cost
/// in an index build (docs/benchmarks.md, "Ingest, cli36 round"). Not
/// sure: any key with an escape (serde matches the decoded key).
fn read_in_one_scan(payload: &str) -> Option<LogCall<'_>> {
    let mut call = LogCall::default();
    let mut seen = 0u8;
    let mut unsure = false;
    let mut twice = false;
    let b = payload.as_bytes();
    crate::event::json_scan::object_members(b, |key, value| {
        let key = &b[key];
        let (bit, slot) = match key {
            b"tool" => (0, &mut call.tool),
            b"engine" => (1, &mut call.engine),
            b"status" => (2, &mut call.status),
            b"error_type" => (3, &mut call.error_type),
            b"workspace_id" => (4, &mut call.workspace_id),
            b"duration_ms" => (5, &mut call.duration_ms),
            _ => {
                unsure |= key.contains(&b'\\');
                return;
            }
        };
        // Serde's struct rule: a known key given twice (even after a
        // `null`) refuses the object, which `read` turns into defaults.
        twice |= seen & (1 << bit) != 0;
        seen |= 1 << bit;
        // `null` is `None`, as for the derived struct. (The value's ends
        // are ASCII bytes of the text, so `get` always finds it.)
        match payload.get(value) {
            Some("null") => *slot = None,
            Some(v) => *slot = Some(v),
            None => unsure = true,
        }
    })?;
    if unsure {
        return None;
    }
    Some(if twice { LogCall::default() } else { call })
}

/// `Some` only where the check accepts `payload` and [`read`] gives these
/// fields; `None` means "not sure".
fn read_in_one_parse(payload: &str) -> Option<LogCall<'_>> {
    let b = payload.as_bytes();
    let (&first, &last) = (b.first()?, b.last()?);
    // serde_json skips whitespace around the value; the check refuses it.
    if is_json_ws(first) || is_json_ws(last) {
        return None;
    }
    // The depth the check enforces (a cheap count first, as the check's).
    if !json::within_depth(b) {
        return None;
    }
    serde_json::from_str::<OneParse<'_>>(payload)
        .ok()
        .map(|p| p.0)
}

/// JSON's whitespace (RFC 8259), the bytes serde_json skips.
fn is_json_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// A [`LogCall`] parsed from a JSON object only: any other value, and a
/// known key given twice, is an error (for which [`read`] would have
/// given the defaults; the caller then asks it).
struct OneParse<'a>(LogCall<'a>);

impl<'de> Deserialize<'de> for OneParse<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = OneParse<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut call = LogCall::default();
        let mut seen = 0u8;
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Tool => &mut call.tool,
                Key::Engine => &mut call.engine,
                Key::Status => &mut call.status,
                Key::ErrorType => &mut call.error_type,
                Key::WorkspaceId => &mut call.workspace_id,
                Key::DurationMs => &mut call.duration_ms,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // Serde's struct rule: a field given twice (even after a
            // `null`) refuses the whole object, which `read` turns into
            // the defaults.
            let bit = 1u8 << (key as u8);
            if seen & bit != 0 {
                return Err(de::Error::custom("a known key given twice"));
            }
            seen |= bit;
            // `null` is `None`, as for the derived struct.
            *slot = map
                .next_value::<Option<&'de RawValue>>()?
                .map(RawValue::get);
        }
        Ok(OneParse(call))
    }
}

/// An object key: one of the call fields, or any other.
#[derive(Clone, Copy)]
enum Key {
    Tool,
    Engine,
    Status,
    ErrorType,
    WorkspaceId,
    DurationMs,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(match k {
            "tool" => Key::Tool,
            "engine" => Key::Engine,
            "status" => Key::Status,
            "error_type" => Key::ErrorType,
            "workspace_id" => Key::WorkspaceId,
            "duration_ms" => Key::DurationMs,
            _ => Key::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the strict decoder's check, then [`read`].
    fn two_pass(t: &str) -> Result<LogCall<'_>, EventError> {
        json::check_json_text("payload", t)?;
        Ok(read(t))
    }

    /// `read_checked` answers as the check and the read do, and so does
    /// each of its quick reads where it is sure: (is the scan sure, is
    /// the one parse sure).
    fn agrees(t: &str) -> (bool, bool) {
        let want = two_pass(t);
        assert_eq!(read_checked(t), want, "{t:?}");
        let scan = read_in_one_scan(t);
        let parse = read_in_one_parse(t);
        for quick in [scan, parse].into_iter().flatten() {
            assert_eq!(Ok(quick), want, "{t:?}");
        }
        (scan.is_some(), parse.is_some())
    }

    #[test]
    fn the_usual_payload_is_read_in_one_parse() {
        for t in [
            r#"{"tool":"fs.write","engine":"mcp","status":"error","error_type":"Timeout","workspace_id":"w-1","duration_ms":12.5}"#,
            r#"{"tool":"a\"b","args":{"path":"/x","n":[1,2,{"k":null}]},"duration_ms":3}"#,
            r#"{"tool":5,"engine":true,"status":{"a":1},"duration_ms":"7"}"#,
            r#"{"t\u006fol":"escaped key","other":"\ud800 lone surrogate in a value"}"#,
            r#"{"tool":null,"error_type":null,"x":null}"#,
            "{}",
            "{ }",
            "{\n\"tool\" : \"x\"\n}",
        ] {
            let (scan, parse) = agrees(t);
            assert!(parse, "{t:?}");
            // Serde matches a key by its decoded text: the scan leaves an
            // escaped key to it.
            assert_eq!(scan, !t.contains("t\\u006fol"), "{t:?}");
        }
        // A known key given twice: both quick reads used to leave it to
        // the check and the read (the defaults); the scan answers it.
        for t in [
            "{\"tool\":\"a\",\"tool\":\"b\"}",
            "{\"tool\":null,\"tool\":\"b\"}",
            "{\"tool\":null,\"tool\":null}",
        ] {
            assert_eq!(agrees(t), (true, false), "{t:?}");
            assert_eq!(read_checked(t), Ok(LogCall::default()));
        }
    }

    #[test]
    fn everything_else_gets_the_check_and_its_error() {
        for t in [
            "",
            " {}",
            "{} ",
            "\n{}",
            "{}{}",
            "{}x",
            "{\"tool\":1,}",
            "{\"tool\"}",
            "{\"tool\":01}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"a\u{1}b\"}",
            "{\"a\":[1 2]}",
            "[\"x\",\"y\"]",
            "[]",
            "\"tool\"",
            "1e400",
            "null",
            "{\"\\ud800\":1}",
        ] {
            assert_eq!(agrees(t), (false, false), "{t:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
        assert!(read_checked(&deep).is_err());
        assert_eq!(agrees(&deep), (false, false));
        let at_limit = format!("{{\"a\":{}{}}}", "[".repeat(63), "]".repeat(63));
        assert_eq!(agrees(&at_limit), (true, true));
        // Many brackets, all in strings: within depth, one parse.
        let in_strings = format!("{{\"a\":\"{}\"}}", "[".repeat(200));
        assert_eq!(agrees(&in_strings), (true, true));
    }

    /// Random texts from JSON's own bytes, and every one-byte change of
    /// payload-like texts: the one parse never answers differently from
    /// the check and the read.
    #[test]
    fn agrees_with_check_and_read_on_random_and_mutated_texts() {
        use crate::event::json_scan::test_texts::{one_byte_edits, ALPHABET as alphabet};
        let mut rng = fastrand::Rng::with_seed(26);
        for _ in 0..100_000 {
            let len = rng.usize(0..24);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            if rng.bool() {
                bytes.insert(0, b'{');
                bytes.push(b'}');
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agrees(text);
            }
        }
        let seeds = [
            r#"{"tool":"fs.read","engine":"e","status":"ok","duration_ms":-2.5e3,"x":[true,null,{"c":"d\n"}]}"#,
            r#"{"workspace_id":"w","error_type":null,"args":{"k":"v\u00e9"},"tool":"\\"}"#,
        ];
        let (mut scans, mut parses) = (0usize, 0usize);
        for seed in seeds {
            for m in one_byte_edits(seed) {
                if let Ok(text) = std::str::from_utf8(&m) {
                    let (scan, parse) = agrees(text);
                    scans += usize::from(scan);
                    parses += usize::from(parse);
                }
            }
        }
        assert!(scans > 1_000 && parses > 1_000, "{scans} {parses}");
    }

    /// Random objects of the known keys and others, with values of every
    /// kind (nested, escaped, `null`), whitespace between the tokens and
    /// keys given twice: the scan is sure of nearly all and answers as
    /// the check and the read do.
    #[test]
    fn the_scan_agrees_on_random_objects_of_the_known_keys() {
        let keys = [
            "tool",
            "engine",
            "status",
            "error_type",
            "workspace_id",
            "duration_ms",
            "args",
            "tools",
            "",
            "t\\u006fol",
            "é",
        ];
        let values = [
            "null",
            "\"fs.read\"",
            "\"a\\\"b\\\\c\\u00e9\"",
            "\"\"",
            "12.5",
            "-0",
            "1e9",
            "true",
            "false",
            "[]",
            "{}",
            "[1,{\"tool\":\"inner\"},[null]]",
            "{\"tool\":\"x\",\"n\":{\"k\":[\"]\",\"}\"]}}",
            "\"ü✓\"",
        ];
        let ws = ["", "", "", " ", "\n", " \t "];
        let mut rng = fastrand::Rng::with_seed(36);
        let mut sure = 0usize;
        for _ in 0..20_000 {
            let n = rng.usize(0..8);
            let mut t = String::from("{");
            for i in 0..n {
                if i > 0 {
                    t.push_str(ws[rng.usize(..ws.len())]);
                    t.push(',');
                }
                t.push_str(ws[rng.usize(..ws.len())]);
                t.push('"');
                t.push_str(keys[rng.usize(..keys.len())]);
                t.push('"');
                t.push_str(ws[rng.usize(..ws.len())]);
                t.push(':');
                t.push_str(ws[rng.usize(..ws.len())]);
                t.push_str(values[rng.usize(..values.len())]);
            }
            t.push_str(ws[rng.usize(..ws.len())]);
            t.push('}');
            let (scan, _) = agrees(&t);
            sure += usize::from(scan);
            assert_eq!(scan, !t.contains("t\\u006fol"), "{t:?}");
        }
        assert!(sure > 10_000, "{sure}");
    }
}
