//! A quick yes for the JSON texts an event carries: one scan over the
//! bytes that builds nothing and allocates nothing, for the check every
//! strict read makes of every stored `inputs` and `payload`
//! (`json::check_json_text`). It only ever says yes to a text serde_json
//! accepts as one value with nothing around it, nested at most
//! [`MAX_SCAN_DEPTH`]; for anything else it says "not sure", and the
//! caller asks serde_json, which gives the answer and the error text. So
//! what is accepted and the errors given stay serde_json's: this only
//! makes the usual yes cheaper (docs/benchmarks.md, "Integrity checks on
//! the read path"). The grammar is RFC 8259's, which is the one serde_json
//! follows when it skips a value (`Deserializer::ignore_value`).

use std::ops::Range;

/// Deepest nesting the scan follows (one bit of its stack per level);
/// deeper texts are left to serde_json (and refused before that by the
/// depth limit, `MAX_JSON_DEPTH`, which is not larger).
pub(crate) const MAX_SCAN_DEPTH: u32 = 64;

// Equal: deeper texts are refused by the depth limit before the scan could
// be asked, and a yes from the scan means the depth limit holds too
// (`json::check_json_text` skips the depth check on a yes).
const _: () = assert!(crate::limits::MAX_JSON_DEPTH == MAX_SCAN_DEPTH as usize);

/// True only if `text` is exactly one JSON value: no whitespace before or
/// after it, valid by RFC 8259, nested at most [`MAX_SCAN_DEPTH`]. False
/// means "ask serde_json", not "invalid".
pub(crate) fn is_one_value(text: &[u8]) -> bool {
    Scan {
        b: text,
        i: 0,
        objects: 0,
        depth: 0,
        quotes: None,
    }
    .run()
    .is_some()
}

/// The scan's position and its open containers: bit `k` of `objects` is
/// set when the container at depth `k + 1` (counting from the innermost)
/// is an object.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    objects: u64,
    depth: u32,
    /// Set for a plain text ([`plain_quotes`]): where its quotes are, so
    /// that a string ends at the next one.
    quotes: Option<&'a [u64]>,
}

/// The members of a JSON object, for a reader that wants a few of its
/// keys: `Some(())` only if `text` is exactly one object by the rules of
/// [`is_one_value`] (so where that says yes, and nowhere else it does
/// not), after `member(key, value)` was called for each member in order,
/// with `key` the range of the bytes between the key's quotes (escapes
/// not decoded) and `value` the range of the value's exact text (no
/// whitespace around it). `None`
/// means "not sure" (not an object, or not one the scan takes); members
/// may have been reported before it.
pub(crate) fn object_members(
    text: &[u8],
    mut member: impl FnMut(Range<usize>, Range<usize>),
) -> Option<()> {
    let s = Scan {
        b: text,
        i: 0,
        objects: 0,
        depth: 0,
        quotes: None,
    };
    s.members(|k, v| {
        member(k, v);
        Some(())
    })
}

/// [`object_members`] for a text with no backslash and no control byte
/// (the usual JSON line: strings without escapes), faster: one pass over
/// the text first marks its quotes, and each string then ends at the next
/// quote instead of being read byte by byte. `member` may stop the scan
/// by returning `None`. `None` also when the text is not plain (it may
/// hold escapes: ask [`object_members`] or serde_json), or for anything
/// [`object_members`] would not say yes to; `Some(())` only where it does,
/// after the same calls.
pub(crate) fn plain_object_members(
    text: &[u8],
    member: impl FnMut(Range<usize>, Range<usize>) -> Option<()>,
) -> Option<()> {
    let words = text.len().div_ceil(64);
    // Lines of up to 1 KiB (nearly all) mark their quotes on the stack.
    let mut stack = [0u64; 16];
    let mut heap = Vec::new();
    let quotes: &mut [u64] = match stack.get_mut(..words) {
        Some(q) => q,
        None => {
            heap.resize(words, 0);
            &mut heap
        }
    };
    plain_quotes(text, quotes)?;
    Scan {
        b: text,
        i: 0,
        objects: 0,
        depth: 0,
        quotes: Some(quotes),
    }
    .members(member)
}

/// Marks the quotes of `text`: bit `i % 64` of `quotes[i / 64]` is set
/// where byte `i` is `"` (`quotes` holds `text.len().div_ceil(64)`
/// words). `None` if the text has a backslash or a byte below 0x20: only
/// without them is every quote a string's end (no `\"`), and no string
/// holds a byte JSON refuses there. The bytes are compared 64 at a time
/// into a byte per comparison, which the compiler turns into SIMD compares
/// on any x86-64 (SSE2); eight such bytes at a time are then gathered into
/// bits by one multiplication (each byte 0 or 1: the product's top byte
/// holds the eight bits). ~40 ns for a 250-byte line, where reading its
/// strings byte by byte cost serde_json ~150 ns (docs/benchmarks.md,
/// "Ingest, cli41 round").
fn plain_quotes(text: &[u8], quotes: &mut [u64]) -> Option<()> {
    let mut bad = 0u8;
    let mut mark = |block: &[u8; 64]| -> u64 {
        let mut is_quote = [0u8; 64];
        for (q, &c) in is_quote.iter_mut().zip(block) {
            *q = u8::from(c == b'"');
            bad |= u8::from(c == b'\\') | u8::from(c < 0x20);
        }
        let mut bits = 0u64;
        for (k, eight) in is_quote.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(eight);
            let gathered = u64::from_le_bytes(w).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            bits |= gathered << (k * 8);
        }
        bits
    };
    let mut blocks = text.chunks_exact(64);
    let mut words = quotes.iter_mut();
    for block in &mut blocks {
        let mut b = [0u8; 64];
        b.copy_from_slice(block);
        *words.next()? = mark(&b);
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        // Padded with spaces: neither a quote nor refused.
        let mut b = [b' '; 64];
        b[..rest.len()].copy_from_slice(rest);
        *words.next()? = mark(&b);
    }
    (bad == 0).then_some(())
}

impl Scan<'_> {
    /// The members of the object that is the whole text ([`object_members`]).
    fn members(
        mut self,
        mut member: impl FnMut(Range<usize>, Range<usize>) -> Option<()>,
    ) -> Option<()> {
        let text = self.b;
        let s = &mut self;
        (s.next()? == b'{').then_some(())?;
        s.skip_ws();
        if s.b.get(s.i) == Some(&b'}') {
            s.i += 1;
            return (s.i == text.len()).then_some(());
        }
        // Inside the object: its members' values nest from depth 1.
        s.depth = 1;
        s.objects = 1;
        loop {
            (s.next()? == b'"').then_some(())?;
            let key_from = s.i;
            s.string()?;
            let key = key_from..s.i - 1;
            s.skip_ws();
            (s.next()? == b':').then_some(())?;
            s.skip_ws();
            let value_from = s.i;
            s.through_value(1)?;
            member(key, value_from..s.i)?;
            s.skip_ws();
            match s.next()? {
                b',' => s.skip_ws(),
                b'}' => return (s.i == text.len()).then_some(()),
                _ => return None,
            }
        }
    }
}

/// The position of the first quote at or after `from` ([`plain_quotes`]'s
/// marks).
#[inline]
fn next_quote(quotes: &[u64], from: usize) -> Option<usize> {
    let mut word = from / 64;
    let mut bits = *quotes.get(word)? & (!0u64 << (from % 64));
    while bits == 0 {
        word += 1;
        bits = *quotes.get(word)?;
    }
    Some(word * 64 + bits.trailing_zeros() as usize)
}

impl Scan<'_> {
    /// `Some(())` when the whole text is one value.
    fn run(&mut self) -> Option<()> {
        self.through_value(0)?;
        (self.i == self.b.len()).then_some(())
    }

    /// One whole value from the current byte, with `base` containers open
    /// around it: returns just past its end (the containers it opens all
    /// closed again).
    fn through_value(&mut self, base: u32) -> Option<()> {
        loop {
            self.value()?;
            // After a value: close what ends here, then a comma or the end.
            loop {
                if self.depth == base {
                    return Some(());
                }
                self.skip_ws();
                let in_object = self.objects & 1 == 1;
                match (self.next()?, in_object) {
                    (b',', true) => {
                        self.skip_ws();
                        self.key()?;
                        break;
                    }
                    (b',', false) => {
                        self.skip_ws();
                        break;
                    }
                    (b'}', true) | (b']', false) => self.close(),
                    _ => return None,
                }
            }
        }
    }

    /// The value at the current byte (a container only opened: its first
    /// member is then next, or it was empty and is closed again).
    fn value(&mut self) -> Option<()> {
        loop {
            match self.next()? {
                c @ (b'{' | b'[') => {
                    if self.depth == MAX_SCAN_DEPTH {
                        return None;
                    }
                    self.depth += 1;
                    self.objects = (self.objects << 1) | u64::from(c == b'{');
                    self.skip_ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.b.get(self.i) == Some(&close) {
                        self.i += 1;
                        self.close();
                        return Some(());
                    }
                    if c == b'{' {
                        self.key()?;
                    }
                    // The container's first member.
                    continue;
                }
                b'"' => return self.string(),
                b't' => return self.literal(b"rue"),
                b'f' => return self.literal(b"alse"),
                b'n' => return self.literal(b"ull"),
                b'-' => return self.number(),
                b'0'..=b'9' => {
                    self.i -= 1;
                    return self.number();
                }
                _ => return None,
            }
        }
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.objects >>= 1;
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// An object key, the colon and the whitespace before its value.
    fn key(&mut self) -> Option<()> {
        (self.next()? == b'"').then_some(())?;
        self.string()?;
        self.skip_ws();
        (self.next()? == b':').then_some(())?;
        self.skip_ws();
        Some(())
    }

    /// The rest of a string after its opening quote: no control
    /// characters, only the escapes JSON has (the text is UTF-8 already).
    #[inline]
    fn string(&mut self) -> Option<()> {
        if let Some(quotes) = self.quotes {
            // A plain text: the string ends at the next quote.
            let end = next_quote(quotes, self.i)?;
            self.i = end + 1;
            return Some(());
        }
        self.escaped_string()
    }

    /// [`Scan::string`] read byte by byte (a text that is not plain).
    fn escaped_string(&mut self) -> Option<()> {
        loop {
            self.skip_plain();
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 4;
                    }
                    _ => return None,
                },
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// Step over string bytes that need no look (not a quote, a backslash
    /// or a control character), eight at a time while eight remain (the
    /// usual bit trick: a byte's high bit is set in `x - 0x01..` and not in
    /// `x` only where the byte is below the subtrahend, and the lowest such
    /// byte is exact). The bytes left are looked at one by one.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
        let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            let stop = below(x, 0x20)
                | below(x ^ (ONES * u64::from(b'"')), 1)
                | below(x ^ (ONES * u64::from(b'\\')), 1);
            if stop != 0 {
                self.i += (stop.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.i + rest.len();
        (self.b.get(self.i..end)? == rest).then_some(())?;
        self.i = end;
        Some(())
    }

    /// A number from its first digit (after any minus sign):
    /// `0 | [1-9][0-9]*`, then `.[0-9]+` and `[eE][+-]?[0-9]+`, each
    /// optional.
    fn number(&mut self) -> Option<()> {
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json says of `text` as a stored JSON text: one value,
    /// nothing around it.
    fn serde_says(text: &str) -> bool {
        matches!(
            serde_json::from_str::<&serde_json::value::RawValue>(text),
            Ok(raw) if raw.get().len() == text.len()
        )
    }

    #[test]
    fn says_yes_to_plain_json() {
        for t in [
            "0",
            "-0",
            "12.5e-3",
            "1E+9",
            "true",
            "false",
            "null",
            r#""""#,
            r#""a\"b\\c\/\b\f\n\r\t\u00e9\uD83D""#,
            "[]",
            "{}",
            "[ ]",
            "{ }",
            r#"{"a":1,"b":[true,null,{"c":"d"}],"e":{}}"#,
            "[1, 2 ,3\n,\t{\"k\" : \"ü\"} ]",
            r#"{"query":"find fs.write for u-640","max_results":32,"locale":"en-US"}"#,
        ] {
            assert!(is_one_value(t.as_bytes()), "{t}");
            assert!(serde_says(t), "{t}");
        }
    }

    #[test]
    fn leaves_everything_else_to_serde_json() {
        for t in [
            "",
            " 1",
            "1 ",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "truex",
            "nul",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "{\"a\" 1}",
            "[1 2]",
            "\"a",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"\\u12\"",
            "\"a\u{1}b\"",
            "[",
            "]",
            "{",
            "}",
            "[1]]",
            "[1]x",
            "{}{}",
            "NaN",
            "Infinity",
            "'a'",
            "[01]",
        ] {
            assert!(!is_one_value(t.as_bytes()), "{t:?}");
        }
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert!(!is_one_value(deep.as_bytes()));
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert!(is_one_value(ok.as_bytes()));
    }

    /// The eight-at-a-time step stops at every quote, backslash and
    /// control character, wherever it falls in a word.
    #[test]
    fn long_strings_agree_with_serde_json_wherever_the_stop_falls() {
        for n in 0..40 {
            for k in 0..=n {
                for stop in ['"', '\\', '\u{1}', '\u{1f}', 'é', ' ', '\u{7f}'] {
                    let body: String = (0..n).map(|i| if i == k { stop } else { 'a' }).collect();
                    let text = format!("\"{body}\"");
                    assert_eq!(is_one_value(text.as_bytes()), serde_says(&text), "{text:?}");
                }
            }
        }
    }

    /// Never a yes that serde_json does not give: random texts from JSON's
    /// own bytes, and every one-byte change of valid texts.
    #[test]
    fn never_says_yes_where_serde_json_says_no() {
        let alphabet = test_texts::ALPHABET;
        let mut rng = fastrand::Rng::with_seed(11);
        let mut yes = 0usize;
        for _ in 0..300_000 {
            let len = rng.usize(0..24);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if is_one_value(text.as_bytes()) {
                yes += 1;
                assert!(serde_says(text), "{text:?}");
            }
        }
        assert!(yes > 1_000, "{yes}");
        let seeds = [
            r#"{"a":[1,-2.5e3,true,false,null,"x\ny"],"b":{"c":{}},"d":[]}"#,
            r#"[{"k":"v\u00e9"},0,-0.1,1E-2,"\\"]"#,
        ];
        for seed in seeds {
            for m in test_texts::one_byte_edits(seed) {
                let Ok(text) = std::str::from_utf8(&m) else {
                    continue;
                };
                if is_one_value(text.as_bytes()) {
                    assert!(serde_says(text), "{text:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod member_tests {
    use super::*;

    fn members(t: &str) -> Option<Vec<(&str, &str)>> {
        let mut got = Vec::new();
        object_members(t.as_bytes(), |k, v| got.push((&t[k], &t[v])))?;
        Some(got)
    }

    #[test]
    fn an_objects_members_come_with_their_exact_texts() {
        assert_eq!(members("{}"), Some(vec![]));
        assert_eq!(members("{ \n}"), Some(vec![]));
        assert_eq!(
            members(r#"{"a":1, "b\"c" : [1,{"d":[]}] ,"":"x\"}y","n":null}"#),
            Some(vec![
                ("a", "1"),
                ("b\\\"c", "[1,{\"d\":[]}]"),
                ("", "\"x\\\"}y\""),
                ("n", "null"),
            ])
        );
        for t in [
            "[]",
            " {}",
            "{} ",
            "{\"a\":1,}",
            "{\"a\"}",
            "\"{}\"",
            "{\"a\":1}}",
        ] {
            assert_eq!(members(t), None, "{t:?}");
        }
    }

    /// The member scan says yes exactly where the whole scan does, for a
    /// text that opens an object: random texts and one-byte edits.
    #[test]
    fn says_yes_exactly_where_the_whole_scan_does() {
        let alphabet = test_texts::ALPHABET;
        let mut rng = fastrand::Rng::with_seed(36);
        let mut yes = 0usize;
        let mut check = |text: &str| {
            let whole = is_one_value(text.as_bytes()) && text.starts_with('{');
            let m = object_members(text.as_bytes(), |_, _| {}).is_some();
            assert_eq!(m, whole, "{text:?}");
            yes += usize::from(m);
        };
        for _ in 0..200_000 {
            let len = rng.usize(0..24);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            bytes.insert(0, b'{');
            if rng.bool() {
                bytes.push(b'}');
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                check(text);
            }
        }
        let seed = r#"{"a":[1,-2.5e3,true,false,null,"x\ny"],"b":{"c":{}},"d":[], "e" : "f" }"#;
        for m in test_texts::one_byte_edits(seed) {
            if let Ok(text) = std::str::from_utf8(&m) {
                check(text);
            }
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(63), "]".repeat(63));
        check(&deep);
        let too_deep = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
        check(&too_deep);
        assert!(yes > 300, "{yes}");
    }
}

#[cfg(test)]
mod plain_tests {
    use super::*;

    type Members = Vec<(Range<usize>, Range<usize>)>;

    fn both(text: &[u8]) -> (Option<Members>, Option<Members>) {
        let mut all = Vec::new();
        let whole = object_members(text, |k, v| all.push((k, v))).map(|()| all);
        let mut plain = Vec::new();
        let quick = plain_object_members(text, |k, v| {
            plain.push((k, v));
            Some(())
        })
        .map(|()| plain);
        (whole, quick)
    }

    /// Where the plain scan says yes, the full scan says yes with the same
    /// members; it says no to every text with a backslash or a control
    /// byte, and yes to every other text the full scan takes.
    fn check(text: &[u8]) -> bool {
        let (whole, quick) = both(text);
        let plain = !text.iter().any(|&c| c == b'\\' || c < 0x20);
        if plain {
            assert_eq!(quick, whole, "{:?}", String::from_utf8_lossy(text));
        } else {
            assert_eq!(quick, None, "{:?}", String::from_utf8_lossy(text));
        }
        quick.is_some()
    }

    #[test]
    fn agrees_with_the_full_scan_on_random_and_edited_texts() {
        let alphabet = test_texts::ALPHABET;
        let mut rng = fastrand::Rng::with_seed(41);
        let mut yes = 0usize;
        for _ in 0..200_000 {
            let len = rng.usize(0..40);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            bytes.insert(0, b'{');
            if rng.bool() {
                bytes.push(b'}');
            }
            yes += usize::from(check(&bytes));
        }
        assert!(yes > 100, "{yes}");
        let seed = r#"{"a":[1,-2.5e3,true,false,null,"x y"],"b":{"c":{}},"d":[], "e" : "f" }"#;
        for m in test_texts::one_byte_edits(seed) {
            check(&m);
        }
    }

    /// Quotes on every side of the 64-byte blocks, texts past the stack's
    /// 1 KiB, strings that span whole blocks.
    #[test]
    fn quotes_are_found_across_blocks() {
        for pad in 0..200 {
            for long in [0, 63, 64, 65, 130, 1100] {
                let text = format!(
                    "{{\"{}\":\"{}\",\"b\":[\"\",\"c\"],\"d\":\"{}\"}}",
                    "k".repeat(pad % 70),
                    "v".repeat(pad),
                    "w".repeat(long)
                );
                assert!(check(text.as_bytes()), "{text}");
            }
        }
        // A quote as the very last byte, and a string never closed.
        assert!(check(br#"{"a":""}"#));
        assert!(!check(format!("{{\"a\":\"{}", "x".repeat(200)).as_bytes()));
        assert!(!check(
            format!("{{\"a\":\"{}\\\"\"}}", "x".repeat(70)).as_bytes()
        ));
    }

    #[test]
    fn a_member_may_stop_the_scan() {
        let mut n = 0;
        let r = plain_object_members(br#"{"a":1,"b":2,"c":3}"#, |_, _| {
            n += 1;
            (n < 2).then_some(())
        });
        assert_eq!((r, n), (None, 2));
    }
}

/// Inputs shared by the differential tests of JSON checks (here and in
/// `index::log_call`).
#[cfg(test)]
pub(crate) mod test_texts {
    /// The bytes JSON texts are made of, plus a control byte, a letter and
    /// a two-byte UTF-8 character.
    pub(crate) const ALPHABET: &[u8] =
        b"{}[]\",:\\/ \t\n\r-+.eE0123456789truefalsnlbu\x01xA\xc3\xa9";

    /// Every byte string one edit away from `seed`: each byte replaced by,
    /// and each position given before it, each byte of [`ALPHABET`], and
    /// each byte removed.
    pub(crate) fn one_byte_edits(seed: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
        let b = seed.as_bytes();
        (0..b.len()).flat_map(move |at| {
            let removed = {
                let mut m = b.to_vec();
                m.remove(at);
                m
            };
            ALPHABET
                .iter()
                .flat_map(move |&c| {
                    let mut replaced = b.to_vec();
                    replaced[at] = c;
                    let mut inserted = b.to_vec();
                    inserted.insert(at, c);
                    [replaced, inserted]
                })
                .chain(std::iter::once(removed))
        })
    }
}
