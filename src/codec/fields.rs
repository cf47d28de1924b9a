//! Event fields a destination reads for protocol metadata: a Kafka key or
//! headers, an SQS message group id, a Kinesis partition key, Pub/Sub
//! attributes and ordering keys, the metric encodings' name and value, the
//! fields of a name template.
//!
//! Paths are the filter language's (`host`, `kube.namespace`, `tags[0]`),
//! located with the same lazy scanner: one pass per event, stopping as soon
//! as every field asked for is found, and no map is built. A destination
//! declares its fields once at build time (`add`) and reads them per event
//! with a reusable `FieldScratch`, so the hot path does not allocate unless a
//! string needs unescaping.

use std::borrow::Cow;

use crate::event::{Event, Format};
use crate::expr::{FieldSet, Scratch, parse_path, scalar_text};

/// The fields one destination reads.
#[derive(Debug, Default)]
pub struct FieldReader {
    fields: FieldSet,
}

/// A field added to a `FieldReader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field(u32);

/// Per-task state for reading one event at a time.
#[derive(Debug)]
pub struct FieldScratch {
    scratch: Scratch,
}

impl FieldReader {
    pub fn new() -> Self {
        FieldReader::default()
    }

    /// Read `path` from events; an error names what is wrong with the path.
    pub fn add(&mut self, path: &str) -> Result<Field, String> {
        let p = parse_path(path.trim()).map_err(|e| format!("`{path}`: {}", e.message))?;
        Ok(Field(self.fields.slot(&p)))
    }

    pub fn scratch(&self) -> FieldScratch {
        FieldScratch {
            scratch: Scratch::new(self.fields.len()),
        }
    }

    /// Start reading `event`; call once per event, before `raw` or `text`.
    /// Fields are then located lazily: the scan goes only as far as the
    /// fields asked for. Text events have no fields.
    pub fn locate(&self, event: &Event, s: &mut FieldScratch) {
        let json = (event.format == Format::Json).then_some(&event.raw[..]);
        s.scratch.reset(&self.fields, json);
    }

    /// The field's JSON text as it appears in the event (`"web"`, `42`,
    /// `{"a":1}`), or `None` when it is missing.
    pub fn raw<'a>(&self, event: &'a Event, s: &FieldScratch, f: Field) -> Option<&'a [u8]> {
        if event.format != Format::Json {
            return None;
        }
        let span = self.fields.get(&event.raw, &s.scratch, f.0);
        (!span.is_missing()).then(|| &event.raw[span.start as usize..span.end as usize])
    }

    /// The field as text: a string unescaped, a number or boolean as
    /// written. `None` when it is missing, `null`, an array or an object.
    pub fn text<'a>(&self, event: &'a Event, s: &FieldScratch, f: Field) -> Option<Cow<'a, [u8]>> {
        scalar_text(self.raw(event, s, f)?)
    }

    /// `text` as a string (invalid UTF-8 replaced).
    pub fn string<'a>(&self, event: &'a Event, s: &FieldScratch, f: Field) -> Option<Cow<'a, str>> {
        Some(match self.text(event, s, f)? {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn reads_strings_numbers_and_nested_paths() {
        let mut r = FieldReader::new();
        let host = r.add("host").unwrap();
        let ns = r.add("kube.namespace").unwrap();
        let first = r.add("tags[0]").unwrap();
        let n = r.add("n").unwrap();
        let obj = r.add("kube").unwrap();
        let absent = r.add("nope").unwrap();
        let mut s = r.scratch();
        let e = Event::json(Bytes::from_static(
            br#"{"n":42,"host":"web\"1","kube":{"namespace":"prod"},"tags":["a","b"]}"#,
        ));
        r.locate(&e, &mut s);
        assert_eq!(r.string(&e, &s, host).as_deref(), Some("web\"1"));
        assert_eq!(r.string(&e, &s, ns).as_deref(), Some("prod"));
        assert_eq!(r.string(&e, &s, first).as_deref(), Some("a"));
        assert_eq!(r.string(&e, &s, n).as_deref(), Some("42"));
        assert_eq!(r.text(&e, &s, obj), None, "an object is not text");
        assert_eq!(r.raw(&e, &s, obj), Some(&br#"{"namespace":"prod"}"#[..]));
        assert_eq!(r.text(&e, &s, absent), None);
        // The same scratch serves the next event.
        let e2 = Event::json(Bytes::from_static(br#"{"host":"db"}"#));
        r.locate(&e2, &mut s);
        assert_eq!(r.string(&e2, &s, host).as_deref(), Some("db"));
        assert_eq!(r.text(&e2, &s, ns), None);
        let t = Event::text(Bytes::from_static(b"host=web"));
        r.locate(&t, &mut s);
        assert_eq!(r.text(&t, &s, host), None, "text events have no fields");
    }

    #[test]
    fn a_bad_path_is_an_error() {
        assert!(FieldReader::new().add("a b").unwrap_err().contains("`a b`"));
    }
}
