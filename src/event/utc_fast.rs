//! A fast path for the one instant form gateways send nearly always:
//! `YYYY-MM-DDTHH:MM:SS[.f…]Z` (UTC, `T`, upper-case `Z`, 1 to 9
//! fraction digits or none).
//!
//! Why: `time`'s general RFC 3339 parser (any offset, leap seconds,
//! lower-case letters) was 4% of the parse workers' CPU samples in
//! `auditlog ingest` of the load run's workload (docs/benchmarks.md,
//! "Ingest, ingest30 round"); every event has a `ts`. This path only
//! ever answers `Some` for text the general parser accepts with the
//! same value (property-tested against it below); anything else, valid
//! or not, goes to the general parser, so errors and their messages are
//! unchanged.

use super::Micros;

const MICROS_PER_SEC: i64 = 1_000_000;

/// The instant `s` names, if `s` has exactly the fast form, names a real
/// date and time (no leap second) and lies in 1970..=9999; else `None`
/// (the caller then parses `s` the general way).
pub(crate) fn parse_utc(s: &str) -> Option<Micros> {
    let b = s.as_bytes();
    let (head, rest) = b.split_at_checked(19)?;
    let punct = |i: usize, c: u8| head[i] == c;
    if !(punct(4, b'-') && punct(7, b'-') && punct(10, b'T') && punct(13, b':') && punct(16, b':'))
    {
        return None;
    }
    let micros_in_sec = match rest {
        [b'Z'] => 0,
        [b'.', digits @ .., b'Z'] if (1..=9).contains(&digits.len()) => fraction_micros(digits)?,
        _ => return None,
    };
    let year = number(&head[0..4])?;
    if year < 1970 {
        return None;
    }
    let field = |at: std::ops::Range<usize>| u8::try_from(number(&head[at])?).ok();
    // The calendar (month lengths, leap years) and the seconds since the
    // epoch are `time`'s; only the digits are read here.
    let month = time::Month::try_from(field(5..7)?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, field(8..10)?).ok()?;
    let clock = time::Time::from_hms(field(11..13)?, field(14..16)?, field(17..19)?).ok()?;
    let secs = date.with_time(clock).assume_utc().unix_timestamp();
    Some(secs * MICROS_PER_SEC + micros_in_sec)
}

/// ASCII digits as a number; `None` if any byte is not a digit.
fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// A fraction's digits (1 to 9) as whole microseconds: digits below the
/// microsecond are truncated, as the general parser's result is.
fn fraction_micros(digits: &[u8]) -> Option<i64> {
    let kept = &digits[..digits.len().min(6)];
    let n = number(kept)?;
    // The digits past the sixth must still be digits.
    number(&digits[kept.len()..])?;
    Some(n * 10i64.pow(6 - kept.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::parse_utc;
    use crate::event::time::parse_rfc3339_general;
    use proptest::prelude::*;

    /// Whatever the fast path answers, the general parser answers the same.
    fn agrees(s: &str) -> Result<(), TestCaseError> {
        if let Some(fast) = parse_utc(s) {
            prop_assert_eq!(parse_rfc3339_general(s), Ok(fast), "{}", s);
        }
        Ok(())
    }

    #[test]
    fn the_edges_read_as_the_general_parser_reads_them() {
        for s in [
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:59:59.999999999Z",
            "2024-02-29T12:00:00.5Z",
            "2000-02-29T00:00:00.1234567Z",
            "2026-10-24T08:00:06.148248Z",
        ] {
            assert!(parse_utc(s).is_some(), "{s}");
            agrees(s).unwrap();
        }
        // Left to the general parser (valid or not).
        for s in [
            "1969-12-31T23:59:59.999999Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-11-23T09:00:00+01:00",
            "2026-11-23t09:00:00Z",
            "2026-11-23 09:00:00Z",
            "2026-11-23T09:00:00z",
            "2026-12-31T23:59:60Z",
            "2026-11-23T24:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-23T09:00:00.Z",
            "2026-11-23T09:00:00.1234567890Z",
            "2026-11-23T09:00:0x.1Z",
            "2026-11-23T09:00:00.12a4567Z",
            "+2026-11-23T09:00:00Z",
            "2026-11-23T09:00:00",
        ] {
            assert_eq!(parse_utc(s), None, "{s}");
        }
    }

    proptest! {
        #[test]
        fn valid_instants_read_as_the_general_parser_reads_them(
            y in 1960i64..=9999, mo in 1i64..=12, d in 1i64..=31,
            h in 0i64..=23, mi in 0i64..=59, s in 0i64..=59,
            frac in proptest::option::of("[0-9]{1,9}"),
        ) {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z");
            agrees(&text)?;
            let general = parse_rfc3339_general(&text);
            // Every valid date the general parser takes from 1970 on is fast.
            prop_assert_eq!(parse_utc(&text).is_some(), general.is_ok(), "{}", text);
        }

        #[test]
        fn any_text_of_the_shape_reads_as_the_general_parser_reads_it(
            s in "[0-9]{4}[-x][0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9a]{0,11})?[Zz+]"
        ) {
            agrees(&s)?;
        }
    }
}
