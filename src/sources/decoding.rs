//! How a line of input becomes an event (`decoding:` of tcp, udp and stdin).

use bytes::Bytes;
use serde::Deserialize;

use crate::codec::json_syntax::{self, Syntax};
use crate::event::Event;
use crate::metrics::RejectReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// A line that starts with `{` or `[` is JSON (passed through as is);
    /// anything else is text. Nothing is rejected and nothing is parsed.
    #[default]
    Auto,
    /// Every line must be valid JSON; others are rejected (`reason="malformed"`).
    Json,
    /// Every line is text, even if it looks like JSON.
    Text,
}

impl Decoding {
    #[inline]
    pub fn decode(self, line: Bytes) -> Result<Event, RejectReason> {
        match self {
            Decoding::Auto => {
                let first = line.iter().find(|c| !c.is_ascii_whitespace());
                Ok(match first {
                    Some(b'{') | Some(b'[') => Event::json(line),
                    _ => Event::text(line),
                })
            }
            Decoding::Json => {
                if is_json(&line) {
                    Ok(Event::json(line))
                } else {
                    Err(RejectReason::Malformed)
                }
            }
            Decoding::Text => Ok(Event::text(line)),
        }
    }
}

/// What the HTTP source does with a body that is not valid UTF-8 (JSON must
/// be, RFC 8259 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvalidUtf8 {
    /// The lines holding invalid bytes are malformed (`reason="malformed"`);
    /// a JSON array body with any is refused whole.
    #[default]
    Reject,
    /// Invalid bytes become U+FFFD and the events are accepted.
    Replace,
}

/// True when `bytes` is exactly one valid JSON value, in valid UTF-8,
/// checked in one pass (`json_syntax::check_utf8`).
pub fn is_json(bytes: &[u8]) -> bool {
    match json_syntax::check_utf8(bytes) {
        Syntax::Valid => true,
        Syntax::Invalid => false,
        Syntax::Deeper => std::str::from_utf8(bytes).is_ok() && deep_json(bytes),
    }
}

/// `is_json` for bytes already known to be UTF-8 (a line of a body that was
/// checked whole), without checking that again.
pub fn is_json_utf8(bytes: &[u8]) -> bool {
    match json_syntax::check(bytes) {
        Syntax::Valid => true,
        Syntax::Invalid => false,
        Syntax::Deeper => deep_json(bytes),
    }
}

/// A value nested past the syntax check's stack: serde's answer (UTF-8
/// already known).
fn deep_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Format;

    #[test]
    fn decodes() {
        let j = Bytes::from_static(br#" {"a":1}"#);
        let t = Bytes::from_static(b"<13>Nov 22 host app: hi");
        let bad = Bytes::from_static(b"{oops");
        assert_eq!(
            Decoding::Auto.decode(j.clone()).unwrap().format,
            Format::Json
        );
        assert_eq!(
            Decoding::Auto.decode(t.clone()).unwrap().format,
            Format::Text
        );
        assert_eq!(
            Decoding::Auto.decode(bad.clone()).unwrap().format,
            Format::Json
        );
        assert_eq!(
            Decoding::Json.decode(bad).err(),
            Some(RejectReason::Malformed)
        );
        assert_eq!(
            Decoding::Json.decode(t.clone()).err(),
            Some(RejectReason::Malformed)
        );
        assert_eq!(Decoding::Text.decode(j).unwrap().format, Format::Text);
        assert_eq!(
            Decoding::Json
                .decode(Bytes::from_static(b"{\"c\":\"\xff\xfe\"}"))
                .err(),
            Some(RejectReason::Malformed),
            "JSON is UTF-8"
        );
    }
}
