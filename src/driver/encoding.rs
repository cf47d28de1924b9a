//! How a batch of events becomes bytes: `ndjson`, `json_array` or `raw`.
//!
//! JSON events are written as they arrived (pass-through, no re-serialisation).
//! Text events become `{"message": "<text>"}` in the JSON encodings, so the
//! output is always valid JSON; `raw` writes every event's bytes verbatim.

use serde::Deserialize;

use crate::event::{Event, Format};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON document per line.
    #[default]
    Ndjson,
    /// One JSON array per batch.
    JsonArray,
    /// Each event's bytes followed by a newline.
    Raw,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Ndjson => "ndjson",
            Encoding::JsonArray => "json_array",
            Encoding::Raw => "raw",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::JsonArray => "application/json",
            Encoding::Raw => "text/plain; charset=utf-8",
        }
    }

    /// Bytes this event adds to a batch, for `batch.max_bytes`.
    #[inline]
    pub fn event_size(self, event: &Event) -> usize {
        match event.format {
            Format::Json => event.raw.len() + 1,
            // `{"message":"..."}` plus escapes, roughly.
            Format::Text => event.raw.len() + 16,
        }
    }

    /// Append the encoding of `events` to `out`.
    pub fn encode(self, events: &[Event], out: &mut Vec<u8>) {
        let total: usize = events.iter().map(|e| e.raw.len() + 1).sum();
        out.reserve(total + 2);
        match self {
            Encoding::Ndjson => {
                for e in events {
                    write_json(e, out);
                    out.push(b'\n');
                }
            }
            Encoding::JsonArray => {
                out.push(b'[');
                for (i, e) in events.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json(e, out);
                }
                out.push(b']');
            }
            Encoding::Raw => {
                for e in events {
                    out.extend_from_slice(&e.raw);
                    out.push(b'\n');
                }
            }
        }
    }
}

#[inline]
fn write_json(e: &Event, out: &mut Vec<u8>) {
    match e.format {
        Format::Json => out.extend_from_slice(&e.raw),
        Format::Text => {
            out.extend_from_slice(b"{\"message\":");
            let text = String::from_utf8_lossy(&e.raw);
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, text.as_ref());
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn encodings() {
        let evs = vec![
            Event::json(Bytes::from_static(br#"{"a":1}"#)),
            Event::text(Bytes::from_static(b"plain \"text\"\t")),
        ];
        let mut out = Vec::new();
        Encoding::Ndjson.encode(&evs, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":1}\n{\"message\":\"plain \\\"text\\\"\\t\"}\n"
        );
        let mut out = Vec::new();
        Encoding::JsonArray.encode(&evs, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[1]["message"], "plain \"text\"\t");
        let mut out = Vec::new();
        Encoding::Raw.encode(&evs, &mut out);
        assert_eq!(out, b"{\"a\":1}\nplain \"text\"\t\n");
    }
}
