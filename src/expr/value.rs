//! Values seen by a filter, read straight from the event's bytes, and the
//! JavaScript comparison rules Cribl users expect (`"500" == 500` is true,
//! strings compare lexicographically). One rule differs on purpose: any
//! comparison with a missing field is false, `!=` included, so a filter never
//! matches by accident on events that lack the field. `!exists(f)` tests absence.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::parser::{CmpOp, Lit};

#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Missing,
    Null,
    Bool(bool),
    Num(f64),
    /// A JSON number as written in the event, parsed only when compared.
    NumText(&'a [u8]),
    /// The body of a JSON string (between the quotes), possibly with escapes.
    JsonStr {
        body: &'a [u8],
        escaped: bool,
    },
    /// Text that needs no unescaping: literals and `_raw`.
    Bytes(&'a [u8]),
    Array(&'a [u8]),
    Object(&'a [u8]),
}

impl<'a> Val<'a> {
    /// Interpret the raw JSON text of a value located by the scanner.
    pub fn from_json(raw: &'a [u8]) -> Val<'a> {
        match raw.first() {
            None => Val::Missing,
            Some(b'"') => {
                let body = &raw[1..raw.len().saturating_sub(1).max(1)];
                Val::JsonStr {
                    body,
                    escaped: memchr::memchr(b'\\', body).is_some(),
                }
            }
            Some(b'{') => Val::Object(raw),
            Some(b'[') => Val::Array(raw),
            Some(b't') => Val::Bool(true),
            Some(b'f') => Val::Bool(false),
            Some(b'n') => Val::Null,
            Some(_) => Val::NumText(raw),
        }
    }

    pub fn from_lit(lit: &'a Lit) -> Val<'a> {
        match lit {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Num(n) => Val::Num(*n),
            Lit::Str(s) => Val::Bytes(s.as_bytes()),
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Val::Missing)
    }

    fn is_string(&self) -> bool {
        matches!(self, Val::JsonStr { .. } | Val::Bytes(_))
    }

    /// String content, unescaped (allocates only when the JSON had escapes).
    pub fn text(&self) -> Option<Cow<'a, [u8]>> {
        match *self {
            Val::Bytes(b) => Some(Cow::Borrowed(b)),
            Val::JsonStr {
                body,
                escaped: false,
            } => Some(Cow::Borrowed(body)),
            Val::JsonStr {
                body,
                escaped: true,
            } => Some(Cow::Owned(unescape(body))),
            _ => None,
        }
    }

    /// What a regex or a string method sees: strings unescaped, numbers and
    /// booleans as written, containers not at all.
    pub fn as_match_text(&self) -> Option<Cow<'a, [u8]>> {
        match *self {
            Val::NumText(t) => Some(Cow::Borrowed(t)),
            Val::Bool(true) => Some(Cow::Borrowed(b"true")),
            Val::Bool(false) => Some(Cow::Borrowed(b"false")),
            // Whole numbers (the usual case: a status, a count) as integers,
            // without the float formatter.
            Val::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(Cow::Owned(
                itoa::Buffer::new().format(n as i64).as_bytes().to_vec(),
            )),
            Val::Num(n) => Some(Cow::Owned(n.to_string().into_bytes())),
            _ => self.text(),
        }
    }

    /// JavaScript `ToNumber`.
    pub fn to_number(self) -> f64 {
        match self {
            Val::Missing => f64::NAN,
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(b)),
            Val::Num(n) => n,
            Val::NumText(t) => parse_number(t),
            Val::JsonStr { .. } | Val::Bytes(_) => match self.text() {
                Some(t) => {
                    let trimmed = t.trim_ascii();
                    if trimmed.is_empty() {
                        0.0
                    } else {
                        parse_number(trimmed)
                    }
                }
                None => f64::NAN,
            },
            Val::Array(_) | Val::Object(_) => f64::NAN,
        }
    }

    /// JavaScript truthiness; missing is false.
    pub fn truthy(&self) -> bool {
        match *self {
            Val::Missing | Val::Null => false,
            Val::Bool(b) => b,
            Val::Num(_) | Val::NumText(_) => {
                let n = self.to_number();
                n != 0.0 && !n.is_nan()
            }
            Val::JsonStr { body, .. } => !body.is_empty(),
            Val::Bytes(b) => !b.is_empty(),
            Val::Array(_) | Val::Object(_) => true,
        }
    }
}

/// A located JSON value as text, the way a tag or a metric name uses it:
/// strings unescaped, numbers and booleans as written; `None` for null,
/// objects and arrays.
pub fn scalar_text(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    match Val::from_json(raw) {
        Val::Null | Val::Missing | Val::Array(_) | Val::Object(_) => None,
        v => v.as_match_text(),
    }
}

/// A located JSON value as a finite number: numbers, numeric strings, and
/// booleans as 1 and 0.
pub fn number(raw: &[u8]) -> Option<f64> {
    let v = Val::from_json(raw);
    let n = match v {
        Val::NumText(_) | Val::JsonStr { .. } | Val::Bool(_) => v.to_number(),
        _ => return None,
    };
    if let Val::JsonStr { body, .. } = v
        && body.trim_ascii().is_empty()
    {
        return None;
    }
    n.is_finite().then_some(n)
}

fn parse_number(t: &[u8]) -> f64 {
    // Most numbers in logs are short integers (status codes, counts): read
    // those directly; anything else goes to the full float parser.
    let (neg, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if !digits.is_empty() && digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let n = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')) as f64;
        return if neg { -n } else { n };
    }
    std::str::from_utf8(t)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

fn unescape(body: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(body.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(body);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(s) => s.into_bytes(),
        // Invalid escapes: compare the text as written rather than fail.
        Err(_) => body.to_vec(),
    }
}

/// JavaScript `==` (abstract equality), with missing never equal to anything.
pub fn loose_eq(a: &Val, b: &Val) -> bool {
    use Val::*;
    match (a, b) {
        (Missing, _) | (_, Missing) => false,
        (Null, Null) => true,
        (Null, _) | (_, Null) => false,
        (Array(x), Array(y)) | (Object(x), Object(y)) => x == y,
        (Array(_) | Object(_), _) | (_, Array(_) | Object(_)) => false,
        _ if a.is_string() && b.is_string() => text_eq(a, b),
        _ => {
            let (x, y) = (a.to_number(), b.to_number());
            x == y
        }
    }
}

/// JavaScript `===`: same type and equal.
pub fn strict_eq(a: &Val, b: &Val) -> bool {
    use Val::*;
    match (a, b) {
        (Missing, _) | (_, Missing) => false,
        (Null, Null) => true,
        (Bool(x), Bool(y)) => x == y,
        (Num(_) | NumText(_), Num(_) | NumText(_)) => a.to_number() == b.to_number(),
        _ if a.is_string() && b.is_string() => text_eq(a, b),
        (Array(x), Array(y)) | (Object(x), Object(y)) => x == y,
        _ => false,
    }
}

fn text_eq(a: &Val, b: &Val) -> bool {
    // Fast path: neither side has escapes, compare bytes directly.
    match (a.text(), b.text()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// JavaScript relational comparison; `None` when incomparable (false for every operator).
fn relational(a: &Val, b: &Val) -> Option<Ordering> {
    if a.is_missing() || b.is_missing() {
        return None;
    }
    if a.is_string() && b.is_string() {
        return Some(a.text()?.cmp(&b.text()?));
    }
    a.to_number().partial_cmp(&b.to_number())
}

pub fn compare(op: CmpOp, a: &Val, b: &Val) -> bool {
    if a.is_missing() || b.is_missing() {
        return false;
    }
    match op {
        CmpOp::Eq => loose_eq(a, b),
        CmpOp::Ne => !loose_eq(a, b),
        CmpOp::StrictEq => strict_eq(a, b),
        CmpOp::StrictNe => !strict_eq(a, b),
        CmpOp::Lt => relational(a, b) == Some(Ordering::Less),
        CmpOp::Le => matches!(relational(a, b), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => relational(a, b) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(relational(a, b), Some(Ordering::Greater | Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Val<'_> {
        Val::from_json(s.as_bytes())
    }

    #[test]
    fn javascript_equality() {
        assert!(loose_eq(&j("500"), &Val::Num(500.0)));
        assert!(loose_eq(&j("\"500\""), &Val::Num(500.0)));
        assert!(!strict_eq(&j("\"500\""), &Val::Num(500.0)));
        assert!(loose_eq(&j("\"a\\\"b\""), &Val::Bytes(b"a\"b")));
        assert!(loose_eq(&j("true"), &Val::Num(1.0)));
        assert!(!loose_eq(&j("null"), &Val::Num(0.0)));
        assert!(loose_eq(&j("null"), &Val::Null));
        assert!(!loose_eq(&j("{}"), &Val::Bytes(b"{}")));
        assert!(!compare(CmpOp::Ne, &Val::Missing, &Val::Num(1.0)));
    }

    #[test]
    fn javascript_ordering() {
        assert!(compare(CmpOp::Ge, &j("503"), &Val::Num(500.0)));
        assert!(compare(CmpOp::Ge, &j("\"503\""), &Val::Num(500.0)));
        assert!(!compare(CmpOp::Ge, &j("\"abc\""), &Val::Num(500.0)));
        assert!(compare(CmpOp::Lt, &j("\"abc\""), &Val::Bytes(b"abd")));
        assert!(compare(CmpOp::Lt, &j("\"10\""), &Val::Bytes(b"9")));
        assert!(compare(CmpOp::Le, &j("-1.5e2"), &Val::Num(-150.0)));
        assert!(!compare(CmpOp::Gt, &Val::Missing, &Val::Num(0.0)));
    }

    #[test]
    fn numbers() {
        for (text, n) in [
            ("503", 503.0),
            ("-7", -7.0),
            ("0", 0.0),
            ("1.5e3", 1500.0),
            ("-0.25", -0.25),
        ] {
            assert_eq!(j(text).to_number(), n, "{text}");
        }
        assert!(j("1e400").to_number().is_infinite());
        assert!(Val::Bytes(b"12x").to_number().is_nan());
        assert_eq!(j("123456789012345678").to_number(), 123456789012345678.0);
    }

    #[test]
    fn truthiness() {
        for (s, t) in [
            ("0", false),
            ("1", true),
            ("\"\"", false),
            ("\"0\"", true),
            ("null", false),
            ("[]", true),
            ("false", false),
        ] {
            assert_eq!(j(s).truthy(), t, "{s}");
        }
    }
}
