//! An event on its way through a pipeline: its bytes until a function needs
//! its fields, then its value, parsed once and written back once.
//!
//! A JSON object is the value itself; any other JSON value, and a text
//! event, become `{"message": value}` (as Vector's remap sees a line). The
//! value is written back as JSON: timestamps as RFC 3339, integers exact.

use bytes::Bytes;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::{Event, Format};

#[derive(Debug, Clone)]
pub enum Work {
    /// Untouched: written out as it came in.
    Raw(Event),
    /// Parsed (and perhaps changed).
    Value(Value),
}

impl Work {
    /// The event's value, parsing it the first time.
    pub fn value_mut(&mut self) -> &mut Value {
        if let Work::Raw(e) = self {
            *self = Work::Value(value_of(e));
        }
        match self {
            Work::Value(v) => v,
            // Replaced just above.
            Work::Raw(_) => unreachable!("a raw event was just parsed"),
        }
    }

    /// The event's value, parsed if it was not.
    pub fn into_value(mut self) -> Value {
        self.value_mut();
        match self {
            Work::Value(v) => v,
            Work::Raw(e) => value_of(&e),
        }
    }

    /// The event as it leaves; `None` when its value cannot be written as
    /// JSON (never for what JSON and VRL can hold).
    pub fn into_event(self) -> Option<Event> {
        match self {
            Work::Raw(e) => Some(e),
            Work::Value(v) => written(&v),
        }
    }
}

fn written(v: &Value) -> Option<Event> {
    serde_json::to_vec(v)
        .ok()
        .map(|b| Event::json(Bytes::from(b)))
}

/// An event's value: its JSON object, or `{"message": ...}`.
pub fn value_of(e: &Event) -> Value {
    let parsed = match e.format {
        Format::Json => serde_json::from_slice::<Value>(&e.raw).ok(),
        Format::Text => None,
    };
    match parsed {
        Some(v @ Value::Object(_)) => v,
        Some(other) => message(other),
        None => message(Value::Bytes(e.raw.clone())),
    }
}

/// A text value's bytes (VRL keeps strings as bytes, or as checked UTF-8).
pub fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bytes(b) => Some(b),
        Value::String(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// `{"message": v}`.
pub fn message(v: Value) -> Value {
    let mut m = ObjectMap::new();
    m.insert(KeyString::from("message"), v);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_stay_and_everything_else_becomes_a_message() {
        let mut w = Work::Raw(Event::json(Bytes::from_static(
            br#"{"a":1,"b":[true,null]}"#,
        )));
        assert_eq!(
            w.value_mut()
                .get(&crate::pipeline::path::parse("a").expect("path")),
            Some(&Value::Integer(1))
        );
        let text = value_of(&Event::text(Bytes::from_static(b"plain line")));
        assert_eq!(
            text.get(&crate::pipeline::path::parse("message").expect("path")),
            Some(&Value::from("plain line"))
        );
        let number = value_of(&Event::json(Bytes::from_static(b"42")));
        assert_eq!(
            number.get(&crate::pipeline::path::parse("message").expect("path")),
            Some(&Value::Integer(42))
        );
        // Not JSON after all: the bytes are the message.
        let broken = value_of(&Event::json(Bytes::from_static(b"{oops")));
        assert_eq!(
            broken.get(&crate::pipeline::path::parse("message").expect("path")),
            Some(&Value::from("{oops"))
        );
    }

    #[test]
    fn written_back_exactly() {
        let raw = br#"{"big":9007199254740993,"f":1.5,"s":"x\u00e9","n":null}"#;
        let mut w = Work::Raw(Event::json(Bytes::from_static(raw)));
        w.value_mut();
        let out = w.into_event().expect("writable");
        let back: serde_json::Value = serde_json::from_slice(&out.raw).expect("json");
        assert_eq!(back["big"], serde_json::json!(9007199254740993u64));
        assert_eq!(back["f"], serde_json::json!(1.5));
        assert_eq!(back["s"], serde_json::json!("xé"));
    }
}
