//! InfluxDB line protocol: `measurement[,tag=value...] field=value[,...] [ns]`.
//!
//! Commas and spaces in the measurement, and commas, equals signs and spaces
//! in tag and field keys and tag values, are escaped with a backslash as the
//! protocol requires; a line break would end the record, so it is written as
//! a space. Empty tag values are left out. Times are integer nanoseconds
//! (write with `precision=ns`, the API's default); without a time the point
//! is written without one and the server assigns it.
//!
//! Field values carry their type: `1.5` float, `1i` integer, `1u` unsigned,
//! `"text"` string, `true` boolean. A value that cannot have the type asked
//! for makes the event unencodable rather than changing it.
//!
//! A `400` (2.x: `422`) answer saying `partial write: ... dropped=N` means
//! the other points were stored: see `partial_write` and
//! `Encoder::influx_refused`.

use super::metric::{FieldType, Scalar, is_integer_literal, numeric_text};

/// Append a measurement (or a part of one).
pub fn measurement(s: &[u8], out: &mut Vec<u8>) {
    escape(s, out, b", ");
}

/// Append `,key=value`.
pub fn tag(key: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(b',');
    escape(key.as_bytes(), out, b",= ");
    out.push(b'=');
    escape(value, out, b",= ");
}

/// Append the measurement (and an element's name after `_`, as InfluxDB's
/// and Telegraf's collectd inputs name split value lists), the tags and the
/// space before the fields.
pub fn point_head(head: &[u8], suffix: Option<&[u8]>, tags: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(head);
    if let Some(s) = suffix {
        out.push(b'_');
        measurement(s, out);
    }
    out.extend_from_slice(tags);
    out.push(b' ');
}

/// Append ` ns` when there is a time.
pub fn time(ns: Option<i64>, out: &mut Vec<u8>) {
    if let Some(ns) = ns {
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
    }
}

/// Append `key=value` with the value written as `kind` (inferred when
/// `None`); the type written, or `None` when the value cannot have it.
pub fn field(
    key: &str,
    v: &Scalar<'_>,
    kind: Option<FieldType>,
    out: &mut Vec<u8>,
) -> Option<FieldType> {
    let kind = kind.unwrap_or_else(|| infer(v));
    let start = out.len();
    escape(key.as_bytes(), out, b",= ");
    out.push(b'=');
    let ok = match kind {
        FieldType::Float => v.number_text().map(|t| out.extend_from_slice(t.as_bytes())),
        FieldType::Integer => integer(v).map(|n| {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.push(b'i');
        }),
        FieldType::Unsigned => integer(v).and_then(|n| u64::try_from(n).ok()).map(|n| {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.push(b'u');
        }),
        FieldType::String => {
            out.push(b'"');
            match v {
                Scalar::Num(t, _) => out.extend_from_slice(t.as_bytes()),
                Scalar::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Scalar::Str(s) => escape(s, out, b"\"\\"),
            }
            out.push(b'"');
            Some(())
        }
        FieldType::Boolean => {
            boolean(v).map(|b| out.extend_from_slice(if b { b"true" } else { b"false" }))
        }
    };
    if ok.is_none() {
        out.truncate(start);
    }
    ok.map(|_| kind)
}

fn infer(v: &Scalar<'_>) -> FieldType {
    let number = |t: &str, int: bool| {
        if int && t.parse::<i64>().is_ok() {
            FieldType::Integer
        } else {
            FieldType::Float
        }
    };
    match v {
        Scalar::Num(t, int) => number(t, *int),
        Scalar::Bool(_) => FieldType::Boolean,
        Scalar::Str(s) => match numeric_text(s) {
            Some(t) => number(t, is_integer_literal(t.as_bytes())),
            None => FieldType::String,
        },
    }
}

/// An integer value exactly: an integer literal, or a number with no
/// fraction that a float holds exactly (`1e3`, `2.0`).
fn integer(v: &Scalar<'_>) -> Option<i64> {
    let text = match v {
        Scalar::Bool(b) => return Some(i64::from(*b)),
        Scalar::Num(t, _) => *t,
        Scalar::Str(s) => numeric_text(s)?,
    };
    if is_integer_literal(text.as_bytes()) {
        return text.parse().ok();
    }
    let f: f64 = text.parse().ok()?;
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

fn boolean(v: &Scalar<'_>) -> Option<bool> {
    match v {
        Scalar::Bool(b) => Some(*b),
        Scalar::Str(s) => match s.trim_ascii().to_ascii_lowercase().as_slice() {
            b"true" | b"t" => Some(true),
            b"false" | b"f" => Some(false),
            _ => None,
        },
        Scalar::Num(..) => None,
    }
}

/// The measurement of an encoded line, unescaped (as InfluxDB names it in
/// its messages).
pub fn measurement_of(line: &[u8]) -> String {
    let mut name = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' if matches!(line.get(i + 1), Some(b',' | b' ')) => {
                name.push(line[i + 1]);
                i += 2;
                continue;
            }
            b',' | b' ' => break,
            c => name.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&name).into_owned()
}

/// A partial write: how many points InfluxDB dropped, and its reason. It
/// answers `400 {"error":"partial write: ... dropped=N"}` (1.x) or
/// `422 {"code":"unprocessable entity","message":"... partial write ...
/// dropped=N"}` (2.x).
pub fn partial_write(body: &str) -> Option<(usize, String)> {
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.to_string());
    if !reason.contains("partial write") {
        return None;
    }
    let at = reason.rfind("dropped=")?;
    let digits: String = reason[at + 8..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((digits.parse().ok()?, reason))
}

/// The point a field type conflict names: (field, measurement, the type it
/// was sent as). InfluxDB names the first conflict of a request only.
pub fn conflict(reason: &str) -> Option<(&str, &str, &str)> {
    let rest = &reason[reason.find("input field \"")? + 13..];
    let (field, rest) = rest.split_once("\" on measurement \"")?;
    let (measurement, rest) = rest.split_once("\" is type ")?;
    let (given, _) = rest.split_once(',')?;
    Some((field, measurement, given.trim()))
}

fn escape(s: &[u8], out: &mut Vec<u8>, special: &[u8]) {
    for &c in s {
        let c = if c == b'\n' || c == b'\r' { b' ' } else { c };
        if special.contains(&c) {
            out.push(b'\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn f(v: Scalar<'_>, kind: Option<FieldType>) -> Option<String> {
        let mut out = Vec::new();
        field("v", &v, kind, &mut out).map(|_| String::from_utf8(out).unwrap())
    }

    #[test]
    fn field_values_keep_or_take_their_type() {
        use FieldType::*;
        let s = |t: &'static str| Scalar::Str(Cow::Borrowed(t.as_bytes()));
        let cases: &[(Scalar, Option<FieldType>, Option<&str>)] = &[
            (Scalar::Num("1", true), None, Some("v=1i")),
            (Scalar::Num("1.5", false), None, Some("v=1.5")),
            (
                Scalar::Num("18446744073709551616", true),
                None,
                Some("v=18446744073709551616"),
            ),
            (Scalar::Bool(true), None, Some("v=true")),
            (s("42"), None, Some("v=42i")),
            (s("x \"y\""), None, Some("v=\"x \\\"y\\\"\"")),
            (Scalar::Num("1", true), Some(Float), Some("v=1")),
            (Scalar::Num("2.0", false), Some(Integer), Some("v=2i")),
            (Scalar::Num("1e3", false), Some(Integer), Some("v=1000i")),
            (Scalar::Num("1.5", false), Some(Integer), None),
            (Scalar::Num("7", true), Some(Unsigned), Some("v=7u")),
            (Scalar::Num("-7", true), Some(Unsigned), None),
            (Scalar::Num("7", true), Some(String), Some("v=\"7\"")),
            (s("TRUE"), Some(Boolean), Some("v=true")),
            (Scalar::Num("1", true), Some(Boolean), None),
            (s("x"), Some(Float), None),
        ];
        for (v, kind, want) in cases {
            assert_eq!(f(v.clone(), *kind).as_deref(), *want, "{v:?} as {kind:?}");
        }
    }

    #[test]
    fn partial_writes_and_conflicts_are_read() {
        let body = r#"{"error":"partial write: field type conflict: input field \"value\" on measurement \"cpu load\" is type float, already exists as type integer dropped=1"}"#;
        let (n, reason) = partial_write(body).unwrap();
        assert_eq!(n, 1);
        assert_eq!(conflict(&reason), Some(("value", "cpu load", "float")));
        let v2 = r#"{"code":"invalid","message":"failure writing points to database: partial write: points beyond retention policy dropped=3"}"#;
        assert_eq!(partial_write(v2).unwrap().0, 3);
        assert_eq!(conflict(&partial_write(v2).unwrap().1), None);
        assert_eq!(
            partial_write(r#"{"error":"database not found: \"x\""}"#),
            None
        );
        assert_eq!(measurement_of(b"cpu\\ load\\,x,host=a v=1"), "cpu load,x");
    }
}
