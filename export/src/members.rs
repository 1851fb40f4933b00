//! The top-level members of a JSON object text, each value as its raw JSON
//! text, found by following the text's structure alone: no value is
//! parsed or built. For a tool call's payload (`tables::ToolCall::parse`),
//! read once per exported call: serde_json's walk of it (a deserializer
//! per value read) was ~9% of an export's CPU (docs/benchmarks.md,
//! "exp32").
//!
//! The texts read here passed the engine's strict JSON check in this
//! process (valid by RFC 8259, nested at most `MAX_JSON_DEPTH`), so the
//! reader only has to find where things end. Whatever it does not take
//! whole (a key with an escape, deeper nesting than [`MAX_DEPTH`],
//! anything not shaped like an object) it leaves to the caller's full
//! parser by answering `None`.

/// Containers nested deeper than this are left to the full parser (whose
/// own limit, serde_json's 128, is higher; the engine stores none deeper
/// than 64).
const MAX_DEPTH: usize = 64;

/// A member's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Value<'t> {
    /// Its JSON text (a string with its quotes).
    pub raw: &'t str,
    /// For a string without escapes, its text (between the quotes).
    pub plain: Option<&'t str>,
}

/// Call `member(key, value)` for each member of the JSON object `text`, in
/// text order. `None` where the reader does not take the text whole;
/// `member` may then have been called for some members.
pub(crate) fn members<'t>(text: &'t str, mut member: impl FnMut(&'t str, Value<'t>)) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key_end, escaped) = string_end(b, i)?;
        if escaped {
            return None;
        }
        let key = text.get(i + 1..key_end - 1)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (value_end, escaped) = value_end(b, i)?;
        let raw = text.get(i..value_end)?;
        let plain = match b[i] {
            b'"' if !escaped => text.get(i + 1..value_end - 1),
            _ => None,
        };
        member(key, Value { raw, plain });
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

/// A JSON number `raw` made of digits only (no sign, fraction or
/// exponent), at most 15 of them: exactly an `i64` and an `f64` both.
/// Anything else goes to serde_json, so the values are serde_json's
/// (its `-0` is a float, its float parsing its own).
pub(crate) fn small_unsigned(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 15 || !raw.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (just past the closing quote) of the string starting at `i`,
/// and whether it holds an escape.
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some((j + 1, escaped));
        }
        escaped = true;
        j += 2;
    }
}

/// The end of the value starting at `i`, and whether it is a string with
/// an escape.
fn value_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?.0;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return None;
                        }
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some((j + 1, false));
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some((j, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(text, |k, v| {
            if let Some(p) = v.plain {
                assert_eq!(format!("\"{p}\""), v.raw);
            }
            out.push((k.to_string(), v.raw.to_string()))
        })?;
        Some(out)
    }

    #[test]
    fn reads_members_as_raw_text() {
        let got = all(r#" { "tool" : "fs.read", "n":-1.5e3,"a":[1,{"b":"]}"}],"o":{},"s":"x\"y", "t":true,"z":null } "#)
            .expect("an object");
        let want = [
            ("tool", r#""fs.read""#),
            ("n", "-1.5e3"),
            ("a", r#"[1,{"b":"]}"}]"#),
            ("o", "{}"),
            ("s", r#""x\"y""#),
            ("t", "true"),
            ("z", "null"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(all("{}"), Some(vec![]));
    }

    #[test]
    fn leaves_the_rest_to_a_full_parser() {
        for text in [
            "[1]",
            "\"x\"",
            "",
            r#"{"a":1"#,
            r#"{"t\u006fol":"x"}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
        ] {
            assert_eq!(all(text), None, "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(65), "]".repeat(65));
        assert_eq!(all(&deep), None);
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
        assert!(all(&ok).is_some());
    }

    #[test]
    fn plain_strings_and_small_numbers() {
        let mut plain = Vec::new();
        members(
            r#"{"a":"abc","b":"a\nb","c":12,"d":"","e":"\\"}"#,
            |_, v| plain.push(v.plain),
        )
        .expect("an object");
        assert_eq!(plain, [Some("abc"), None, None, Some(""), None]);
        assert_eq!(small_unsigned("311"), Some(311));
        assert_eq!(small_unsigned("0"), Some(0));
        for raw in ["-1", "-0", "1.0", "1e3", "", "1234567890123456"] {
            assert_eq!(small_unsigned(raw), None, "{raw}");
        }
    }
}
