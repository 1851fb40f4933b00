//! Instants: parsing RFC 3339 and integer microseconds, and writing the one
//! output form (RFC 3339 UTC, six fraction digits, `Z`).

use super::Micros;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const MICROS_PER_SEC: i64 = 1_000_000;
pub(crate) const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// Earliest accepted instant: the Unix epoch. A gateway's audit time is never
/// before 1970, so anything earlier is a unit mix-up (seconds, negative
/// values) worth rejecting rather than storing.
pub const MIN_TS: Micros = 0;
/// Latest accepted instant, 9999-12-31T23:59:59.999999Z: every stored instant
/// must be writable as RFC 3339, whose year has exactly four digits.
pub const MAX_TS: Micros = 253_402_300_800 * MICROS_PER_SEC - 1;

const MAX_DAY: i64 = MAX_TS / MICROS_PER_DAY;

/// The current instant in µs since the epoch, UTC (0 if the clock is
/// before 1970).
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

/// Why text is not an instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstantError {
    /// Outside [`MIN_TS`]..=[`MAX_TS`].
    #[error(
        "{ts} is out of range: instants must lie between 1970-01-01T00:00:00Z (0) \
         and 9999-12-31T23:59:59.999999Z ({MAX_TS}) in microseconds since the Unix epoch"
    )]
    OutOfRange { ts: i128 },
    /// Not an instant in an accepted form; `message` says what was
    /// expected.
    #[error("{message}")]
    Malformed { input: String, message: String },
}

fn malformed(input: &str, message: String) -> InstantError {
    InstantError::Malformed {
        input: input.to_string(),
        message,
    }
}

/// Accepts `ts` if it lies in `MIN_TS..=MAX_TS`.
pub(crate) fn check_range(ts: Micros) -> Result<Micros, InstantError> {
    if (MIN_TS..=MAX_TS).contains(&ts) {
        Ok(ts)
    } else {
        Err(InstantError::OutOfRange { ts: ts.into() })
    }
}

/// Parses RFC 3339 with any offset (`2026-11-23T09:00:00.5+01:00`) into
/// microseconds since the epoch, UTC. Digits below the microsecond are
/// truncated; the result must lie in `MIN_TS..=MAX_TS`.
pub fn parse_rfc3339(s: &str) -> Result<Micros, InstantError> {
    // The common UTC form, read without the general parser (same answers:
    // see `utc_fast`).
    if let Some(ts) = super::utc_fast::parse_utc(s) {
        return Ok(ts);
    }
    parse_rfc3339_general(s)
}

/// [`parse_rfc3339`] without its fast path: every form, every error.
pub(crate) fn parse_rfc3339_general(s: &str) -> Result<Micros, InstantError> {
    check_shape(s)?;
    let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        malformed(
            s,
            format!(
                "`{s}` is not a valid RFC 3339 timestamp ({e}); expected e.g. \
                 2026-11-23T08:00:00.123456Z or 2026-11-23T09:00:00+01:00"
            ),
        )
    })?;
    let micros = dt.unix_timestamp_nanos().div_euclid(1000);
    let micros = i64::try_from(micros).map_err(|_| InstantError::OutOfRange { ts: micros })?;
    check_range(micros)
}

/// The `time` crate accepts any byte between date and time and any number of
/// fraction digits; RFC 3339 allows only `T` (or, by its note, a space) and
/// we promise at most nanoseconds, so those two are checked here.
fn check_shape(s: &str) -> Result<(), InstantError> {
    let b = s.as_bytes();
    if let Some(&sep) = b.get(10) {
        if !matches!(sep, b'T' | b't' | b' ') {
            return Err(malformed(
                s,
                format!(
                    "`{s}` is not a valid RFC 3339 timestamp: date and time must be separated \
                     by `T` (like 2026-11-23T08:00:00Z)"
                ),
            ));
        }
    }
    if let Some(dot) = b.iter().position(|&c| c == b'.') {
        let digits = b[dot + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits > 9 {
            return Err(malformed(
                s,
                format!(
                    "`{s}` is not a valid RFC 3339 timestamp: at most 9 fraction digits are accepted"
                ),
            ));
        }
    }
    Ok(())
}

/// Parses a command-line instant: integer microseconds since the Unix epoch
/// or an RFC 3339 string with any offset.
pub fn parse_instant(s: &str) -> Result<Micros, InstantError> {
    let t = s.trim();
    let looks_integer = !t.is_empty()
        && t.strip_prefix('-')
            .unwrap_or(t)
            .bytes()
            .all(|c| c.is_ascii_digit());
    if looks_integer {
        let v: i64 = t.parse().map_err(|_| {
            malformed(
                t,
                format!("`{t}` is not a usable instant: the integer does not fit in 64 bits"),
            )
        })?;
        return check_range(v);
    }
    parse_rfc3339(t).map_err(|e| match e {
        InstantError::Malformed { message, .. } => malformed(
            t,
            format!("{message}, or integer microseconds since the Unix epoch"),
        ),
        other => other,
    })
}

/// Days since the epoch, rounding towards the past.
pub(crate) fn utc_day(ts: Micros) -> i64 {
    ts.div_euclid(MICROS_PER_DAY)
}

/// The civil UTC date of `day` (days since the epoch) as `YYYYMMDD`.
/// Days outside the accepted instant range are clamped into it, so the answer
/// always has eight digits.
pub(crate) fn day_to_yyyymmdd(day: i64) -> u32 {
    let (y, m, d) = civil_from_days(day.clamp(0, MAX_DAY));
    // Clamped above: y is within 1970..=9999, so this cannot overflow.
    (y as u32) * 10_000 + m * 100 + d
}

/// Gregorian date from days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`): a handful of integer operations, no tables, which is
/// what the replay hot path wants. Valid for non-negative days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends `ts` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Instants outside
/// `MIN_TS..=MAX_TS` never pass validation; if one reaches here anyway it is
/// clamped, so the output is still valid RFC 3339.
pub fn format_rfc3339(ts: Micros, out: &mut String) {
    let ts = ts.clamp(MIN_TS, MAX_TS);
    let day = ts / MICROS_PER_DAY;
    let in_day = ts % MICROS_PER_DAY;
    let (y, mo, d) = civil_from_days(day);
    let secs = in_day / MICROS_PER_SEC;
    let frac = in_day % MICROS_PER_SEC;

    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut buf[0..4], y);
    put_digits(&mut buf[5..7], i64::from(mo));
    put_digits(&mut buf[8..10], i64::from(d));
    put_digits(&mut buf[11..13], secs / 3600);
    put_digits(&mut buf[14..16], secs / 60 % 60);
    put_digits(&mut buf[17..19], secs % 60);
    put_digits(&mut buf[20..26], frac);
    // Only ASCII digits and punctuation went in, so this always succeeds.
    if let Ok(text) = std::str::from_utf8(&buf) {
        out.push_str(text);
    }
}

/// Writes the low `dst.len()` decimal digits of non-negative `v`, zero-padded.
fn put_digits(dst: &mut [u8], mut v: i64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `ts` as RFC 3339 UTC with microseconds and `Z`.
pub fn to_rfc3339(ts: Micros) -> String {
    let mut s = String::with_capacity(27);
    format_rfc3339(ts, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_format_as_expected() {
        assert_eq!(to_rfc3339(MIN_TS), "1970-01-01T00:00:00.000000Z");
        assert_eq!(to_rfc3339(MAX_TS), "9999-12-31T23:59:59.999999Z");
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999999Z"), Ok(MAX_TS));
        assert!(parse_rfc3339("9999-12-31T23:59:59.999999-01:00").is_err());
        assert!(parse_rfc3339("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            to_rfc3339(1_763_884_800_000_000),
            "2025-11-23T08:00:00.000000Z"
        );
        assert_eq!(
            to_rfc3339(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(to_rfc3339(-5), to_rfc3339(0));
        assert_eq!(to_rfc3339(i64::MAX), to_rfc3339(MAX_TS));
    }

    #[test]
    fn matches_time_crate_across_range() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ts = (x % (MAX_TS as u64 + 1)) as i64;
            let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1000).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.microsecond()
            );
            let got = to_rfc3339(ts);
            assert_eq!(got, expected);
            assert_eq!(parse_rfc3339(&got), Ok(ts));
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let base = 1_795_420_800_000_000; // 2026-11-23T08:00:00Z
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00Z"), Ok(base));
        assert_eq!(parse_rfc3339("2026-11-23T09:00:00+01:00"), Ok(base));
        assert_eq!(parse_rfc3339("2026-11-23T02:30:00-05:30"), Ok(base));
        assert_eq!(
            parse_rfc3339("2026-11-23T08:00:00.123456789Z"),
            Ok(base + 123_456)
        );
        assert_eq!(parse_rfc3339("2026-11-23t08:00:00.5z"), Ok(base + 500_000));
        assert!(parse_rfc3339("2026-11-23T08:00:00.1234567891Z").is_err());
        assert!(parse_rfc3339("2026-11-23X08:00:00Z").is_err());
        assert!(parse_rfc3339("2026-11-23T08:00:00").is_err());
        assert!(parse_rfc3339("").is_err());
        assert!(parse_rfc3339("2026-11-23T08:00:00Zjunk").is_err());
    }

    #[test]
    fn parses_command_line_instants() {
        assert_eq!(parse_instant("1795420800000000"), Ok(1_795_420_800_000_000));
        assert_eq!(
            parse_instant(" 2026-11-23T09:00:00+01:00 "),
            Ok(1_795_420_800_000_000)
        );
        assert!(parse_instant("-1").is_err());
        assert!(parse_instant("99999999999999999999").is_err());
        let msg = parse_instant("yesterday").unwrap_err().to_string();
        assert!(msg.contains("RFC 3339"), "{msg}");
        assert!(parse_instant("").is_err());
        assert!(parse_instant("-").is_err());
    }

    #[test]
    fn days() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(MICROS_PER_DAY - 1), 0);
        assert_eq!(utc_day(-1), -1);
        assert_eq!(day_to_yyyymmdd(0), 19_700_101);
        assert_eq!(day_to_yyyymmdd(utc_day(1_795_420_800_000_000)), 20_261_123);
        assert_eq!(day_to_yyyymmdd(utc_day(MAX_TS)), 99_991_231);
        assert_eq!(day_to_yyyymmdd(i64::MAX), 99_991_231);
        assert_eq!(day_to_yyyymmdd(i64::MIN), 19_700_101);
    }
}
