//! Event times for the metric encodings, read exactly.
//!
//! A time is kept as integer nanoseconds since the Unix epoch from the event
//! to the wire, never through a float: a float has 53 bits, so nanosecond
//! epochs (61 bits) would be rounded to multiples of 256 ns and millisecond
//! ones would gain stray nanoseconds.
//!
//! - A JSON number (or a string holding one) is epoch seconds, milliseconds,
//!   microseconds or nanoseconds by the magnitude of its integer part (below
//!   1e11, 1e14, 1e17, else ns); fractions and exponents are read as decimal
//!   digits (`1700000000.25`, `1.7e9`).
//! - Any other string is RFC 3339 / ISO 8601, parsed by jiff: offsets
//!   (`+02:00`, `+0200`, `+02`, `Z`, `z`), `T`/`t`/space, fractions with `.`
//!   or `,` to nanoseconds, an optional `[zone]` annotation. A date and time
//!   without an offset is read as UTC.
//!
//! Times before 1970 and after 2262 (the i64 nanosecond range InfluxDB also
//! has) are not readable: the encoder counts them rather than guessing.

use std::str::FromStr;

use crate::expr::scalar_text;

/// What an event's time field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// No time field, or `null`: the encoding uses its default (now, or the
    /// server's clock).
    Absent,
    /// Nanoseconds since the Unix epoch.
    At(i64),
    /// A value that is not a time this module can read exactly.
    Unreadable,
}

/// The time in a located JSON value (`None`: the field is missing).
pub fn read(raw: Option<&[u8]>) -> EventTime {
    let Some(raw) = raw else {
        return EventTime::Absent;
    };
    let at = match raw.first() {
        Some(b'n') if raw == b"null" => return EventTime::Absent,
        Some(b'"') => scalar_text(raw).and_then(|t| {
            let t = std::str::from_utf8(&t).ok()?.trim();
            epoch_text(t.as_bytes()).or_else(|| datetime(t))
        }),
        _ => epoch_text(raw),
    };
    at.map_or(EventTime::Unreadable, EventTime::At)
}

/// A time written as text (what a string field holds, unquoted): an epoch
/// number or RFC 3339, as `read` reads them; nanoseconds.
pub fn read_text(t: &str) -> Option<i64> {
    let t = t.trim();
    epoch_text(t.as_bytes()).or_else(|| datetime(t))
}

/// An epoch number written in decimal (`1700000000`, `1700000000.123`,
/// `1.7e9`), scaled to nanoseconds by its magnitude.
fn epoch_text(t: &[u8]) -> Option<i64> {
    let (mantissa, frac_digits, exp) = decimal(t)?;
    // Power of ten the mantissa's last digit stands for.
    let scale = exp - frac_digits;
    let whole = shift(mantissa, scale)?;
    let unit_exp = if whole < 100_000_000_000 {
        9 // seconds
    } else if whole < 100_000_000_000_000 {
        6 // milliseconds
    } else if whole < 100_000_000_000_000_000 {
        3 // microseconds
    } else {
        0
    };
    let ns = shift(mantissa, scale + unit_exp)?;
    i64::try_from(ns).ok()
}

/// `mantissa · 10^exp`, truncated toward zero; `None` on overflow.
fn shift(mantissa: u128, exp: i32) -> Option<u128> {
    if exp >= 0 {
        mantissa.checked_mul(10u128.checked_pow(exp as u32)?)
    } else {
        Some(
            10u128
                .checked_pow(exp.unsigned_abs())
                .map_or(0, |d| mantissa / d),
        )
    }
}

/// A non-negative decimal number as (digits, digits after the point,
/// exponent). `None` for a sign, anything not a number, or more than 38
/// significant digits.
fn decimal(t: &[u8]) -> Option<(u128, i32, i32)> {
    let mut mantissa: u128 = 0;
    let mut digits = 0;
    let mut frac_digits = 0;
    let mut i = 0;
    let mut seen_point = false;
    while i < t.len() {
        match t[i] {
            c @ b'0'..=b'9' => {
                if mantissa > 0 || c != b'0' {
                    digits += 1;
                }
                if digits > 38 {
                    return None;
                }
                mantissa = mantissa * 10 + u128::from(c - b'0');
                if seen_point {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => break,
            _ => return None,
        }
        i += 1;
    }
    let number_len = i - usize::from(seen_point);
    if number_len == 0 || (seen_point && i == 1) {
        return None;
    }
    let exp = if i < t.len() {
        let e = std::str::from_utf8(&t[i + 1..]).ok()?;
        let e = e.strip_prefix('+').unwrap_or(e);
        if e.is_empty() || e.len() > 4 {
            return None;
        }
        e.parse::<i32>().ok()?
    } else {
        0
    };
    Some((mantissa, frac_digits, exp))
}

/// An RFC 3339 / ISO 8601 date and time.
fn datetime(t: &str) -> Option<i64> {
    let ts = match jiff::Timestamp::from_str(t) {
        Ok(ts) => ts,
        // No offset: read as UTC, as the metric protocols' own clocks are.
        Err(_) => jiff::civil::DateTime::from_str(t)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp(),
    };
    let ns = ts.as_nanosecond();
    if ns < 0 {
        return None;
    }
    i64::try_from(ns).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> EventTime {
        read(Some(raw.as_bytes()))
    }

    const T: i64 = 1_796_155_200; // 2026-12-01T20:00:00Z

    #[test]
    fn numbers_keep_their_precision() {
        assert_eq!(at("1796155200"), EventTime::At(T * 1_000_000_000));
        assert_eq!(
            at("1796155200123"),
            EventTime::At(T * 1_000_000_000 + 123_000_000)
        );
        assert_eq!(
            at("1796155200123456"),
            EventTime::At(T * 1_000_000_000 + 123_456_000)
        );
        assert_eq!(
            at("1796155200123456789"),
            EventTime::At(1_796_155_200_123_456_789)
        );
        assert_eq!(
            at("1796155200.000000001"),
            EventTime::At(T * 1_000_000_000 + 1)
        );
        assert_eq!(
            at("1796155200123.5"),
            EventTime::At(T * 1_000_000_000 + 123_500_000)
        );
        assert_eq!(at("1.7961552e9"), EventTime::At(T * 1_000_000_000));
        assert_eq!(at("\"1796155200\""), EventTime::At(T * 1_000_000_000));
        assert_eq!(at("0"), EventTime::At(0));
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let ns = T * 1_000_000_000;
        for (text, want) in [
            ("2026-12-01T22:00:00+02:00", ns),
            ("2026-12-01T22:00:00.250+02:00", ns + 250_000_000),
            ("2026-12-01T20:00:00Z", ns),
            ("2026-12-01t20:00:00z", ns),
            ("2026-12-01 20:00:00+00:00", ns),
            ("2026-12-01T15:00:00-05:00", ns),
            ("2026-12-01T22:00:00+0200", ns),
            ("2026-12-01T22:00:00+02", ns),
            ("2026-12-01T20:00:00,5Z", ns + 500_000_000),
            ("2026-12-01T20:00:00.123456789Z", ns + 123_456_789),
            ("2026-12-01T20:00:00", ns),
            ("2026-12-01T21:00:00+01:00[Europe/Paris]", ns),
            ("20261201T220000+0200", ns),
            ("2026-12-01T22:00+02:00", ns),
        ] {
            assert_eq!(at(&format!("\"{text}\"")), EventTime::At(want), "{text}");
        }
    }

    #[test]
    fn what_cannot_be_read_is_said_so() {
        for raw in [
            "-1",
            "\"-5\"",
            "\"yesterday\"",
            "\"2026-13-01T00:00:00Z\"",
            "\"1969-12-31T23:59:59Z\"",
            "\"\"",
            "true",
            "[1]",
            "{}",
            "1e400",
            "\"3000-01-01T00:00:00Z\"",
            ".",
            "1.2.3",
        ] {
            assert_eq!(at(raw), EventTime::Unreadable, "{raw}");
        }
        assert_eq!(at("null"), EventTime::Absent);
        assert_eq!(read(None), EventTime::Absent);
    }
}
