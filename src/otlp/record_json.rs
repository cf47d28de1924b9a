//! A log record's own fields as its event's JSON, written straight from
//! the record's protobuf: no `LogRecord`, no string or vector allocated per
//! field. Decoding each record into prost's types and dropping them again
//! was the OTLP source's largest cost (malloc and free, a fifth of its CPU).
//!
//! It writes exactly what serializing the decoded record writes (the
//! `Record` serializer in `event`, with `value`'s plain-JSON rules), and
//! only for what prost decodes the obvious way: a field that appears twice
//! where prost would merge or replace, a group, a wrong wire type, a value
//! nested deeper than `MAX_DEPTH` or bytes prost refuses make it answer
//! `None`, and the caller decodes that record with prost instead (which
//! also says whether the export is malformed). A proptest and the
//! `otlp_protobuf` fuzz target hold it to prost plus the serializer.

use base64::Engine as _;
use prost::encoding::decode_varint;

/// How deep values nest before prost's decoder takes over (it allows 100).
const MAX_DEPTH: u32 = 32;

/// One field of a message, read off its front.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Delimited(&'a [u8]),
}

/// The next field of `buf` and its number; `None` at a group or bytes that
/// are not protobuf.
fn next<'a>(buf: &mut &'a [u8]) -> Option<(u32, Wire<'a>)> {
    let key = decode_varint(buf).ok()?;
    let field = u32::try_from(key >> 3).ok().filter(|&f| f > 0)?;
    let wire = match key & 7 {
        0 => Wire::Varint(decode_varint(buf).ok()?),
        1 => {
            let (v, rest) = buf.split_first_chunk::<8>()?;
            *buf = rest;
            Wire::Fixed64(u64::from_le_bytes(*v))
        }
        5 => {
            let (v, rest) = buf.split_first_chunk::<4>()?;
            *buf = rest;
            Wire::Fixed32(u32::from_le_bytes(*v))
        }
        2 => {
            let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
            let v = buf.get(..len)?;
            *buf = &buf[len..];
            Wire::Delimited(v)
        }
        _ => return None,
    };
    Some((field, wire))
}

/// Set `slot` once; a second value is prost's to merge or replace.
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(v);
            Some(())
        }
    }
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

/// The fields of a record, located.
#[derive(Default)]
struct Located<'a> {
    time: Option<u64>,
    observed: Option<u64>,
    severity_number: Option<i32>,
    severity_text: Option<&'a str>,
    body: Option<&'a [u8]>,
    attributes: bool,
    dropped: Option<u32>,
    flags: Option<u32>,
    trace_id: Option<&'a [u8]>,
    span_id: Option<&'a [u8]>,
    event_name: Option<&'a str>,
}

fn locate(mut buf: &[u8]) -> Option<Located<'_>> {
    let mut l = Located::default();
    while !buf.is_empty() {
        match next(&mut buf)? {
            (1, Wire::Fixed64(v)) => once(&mut l.time, v)?,
            // Both truncate as prost does.
            (2, Wire::Varint(v)) => once(&mut l.severity_number, v as i32)?,
            (3, Wire::Delimited(v)) => once(&mut l.severity_text, text(v)?)?,
            (5, Wire::Delimited(v)) => once(&mut l.body, v)?,
            (6, Wire::Delimited(_)) => l.attributes = true,
            (7, Wire::Varint(v)) => once(&mut l.dropped, v as u32)?,
            (8, Wire::Fixed32(v)) => once(&mut l.flags, v)?,
            (9, Wire::Delimited(v)) => once(&mut l.trace_id, v)?,
            (10, Wire::Delimited(v)) => once(&mut l.span_id, v)?,
            (11, Wire::Fixed64(v)) => once(&mut l.observed, v)?,
            (12, Wire::Delimited(v)) => once(&mut l.event_name, text(v)?)?,
            (1..=12, _) => return None,
            _ => {}
        }
    }
    Some(l)
}

/// Writes a JSON object's members, a comma before all but the first.
struct Members<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Members<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Members { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// `record`'s own fields as JSON (`{...}`), appended to `out`; `None` (with
/// `out` partly written) for what prost should decode instead.
pub fn write(record: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let l = locate(record)?;
    let mut m = Members::open(out);
    if let Some(v) = l.time.filter(|&v| v != 0) {
        number(m.key("time_unix_nano"), v);
    }
    if let Some(v) = l.observed.filter(|&v| v != 0) {
        number(m.key("observed_time_unix_nano"), v);
    }
    if let Some(v) = l.severity_number.filter(|&v| v != 0) {
        number(m.key("severity_number"), v);
    }
    if let Some(v) = l.severity_text.filter(|v| !v.is_empty()) {
        string(m.key("severity_text"), v)?;
    }
    if let Some(v) = l.body {
        any_value(v, m.key("body"), 0)?;
    }
    if l.attributes {
        let out = m.key("attributes");
        let mut attributes = Members::open(out);
        let mut buf = record;
        while !buf.is_empty() {
            if let (6, Wire::Delimited(kv)) = next(&mut buf)? {
                key_value(kv, &mut attributes, 0)?;
            }
        }
        attributes.close();
    }
    if let Some(v) = l.dropped.filter(|&v| v != 0) {
        number(m.key("dropped_attributes_count"), v);
    }
    if let Some(v) = l.flags.filter(|&v| v != 0) {
        number(m.key("flags"), v);
    }
    if let Some(v) = l.trace_id.filter(|v| !v.is_empty()) {
        hex(m.key("trace_id"), v);
    }
    if let Some(v) = l.span_id.filter(|v| !v.is_empty()) {
        hex(m.key("span_id"), v);
    }
    if let Some(v) = l.event_name.filter(|v| !v.is_empty()) {
        string(m.key("event_name"), v)?;
    }
    m.close();
    Some(())
}

fn number(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A string as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) -> Option<()> {
    serde_json::to_writer(out, s).ok()
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    out.push(b'"');
}

/// A `KeyValue` as a member of `m`.
fn key_value(buf: &[u8], m: &mut Members<'_>, depth: u32) -> Option<()> {
    let (key, value) = key_value_parts(buf)?;
    let out = m.key_escaped(key)?;
    match value {
        Some(v) => any_value(v, out, depth + 1),
        None => {
            out.extend_from_slice(b"null");
            Some(())
        }
    }
}

/// A `KeyValue`'s key and value (`None`: absent).
fn key_value_parts(mut buf: &[u8]) -> Option<(&str, Option<&[u8]>)> {
    let (mut key, mut value) = (None, None);
    while !buf.is_empty() {
        match next(&mut buf)? {
            (1, Wire::Delimited(v)) => once(&mut key, text(v)?)?,
            (2, Wire::Delimited(v)) => once(&mut value, v)?,
            (3, Wire::Varint(_)) => {}
            (1..=3, _) => return None,
            _ => {}
        }
    }
    Some((key.unwrap_or(""), value))
}

impl Members<'_> {
    /// Like `key`, for a key that may need escaping.
    fn key_escaped(&mut self, key: &str) -> Option<&mut Vec<u8>> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, key)?;
        self.out.push(b':');
        Some(self.out)
    }
}

/// The one value an `AnyValue` holds.
enum Held<'a> {
    Empty,
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(&'a [u8]),
    Kvlist(&'a [u8]),
    Bytes(&'a [u8]),
}

fn held(mut buf: &[u8]) -> Option<Held<'_>> {
    let mut v = None;
    while !buf.is_empty() {
        match next(&mut buf)? {
            (1, Wire::Delimited(b)) => once(&mut v, Held::String(text(b)?))?,
            (2, Wire::Varint(b)) => once(&mut v, Held::Bool(b != 0))?,
            (3, Wire::Varint(i)) => once(&mut v, Held::Int(i as i64))?,
            (4, Wire::Fixed64(d)) => once(&mut v, Held::Double(f64::from_bits(d)))?,
            (5, Wire::Delimited(b)) => once(&mut v, Held::Array(b))?,
            (6, Wire::Delimited(b)) => once(&mut v, Held::Kvlist(b))?,
            (7, Wire::Delimited(b)) => once(&mut v, Held::Bytes(b))?,
            // A string-table index reads as the empty value.
            (8, Wire::Varint(_)) => once(&mut v, Held::Empty)?,
            (1..=8, _) => return None,
            _ => {}
        }
    }
    Some(v.unwrap_or(Held::Empty))
}

/// An `AnyValue` as plain JSON (see `value`).
fn any_value(buf: &[u8], out: &mut Vec<u8>, depth: u32) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    match held(buf)? {
        Held::Empty => out.extend_from_slice(b"null"),
        Held::String(s) => string(out, s)?,
        Held::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Held::Int(i) => number(out, i),
        Held::Double(d) if d.is_finite() => serde_json::to_writer(&mut *out, &d).ok()?,
        Held::Double(d) => {
            let text = if d.is_nan() {
                "NaN"
            } else if d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            out.extend_from_slice(b"{\"doubleValue\":\"");
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        Held::Bytes(b) => {
            out.extend_from_slice(b"{\"bytesValue\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
        Held::Array(mut a) => {
            out.push(b'[');
            let mut first = true;
            while !a.is_empty() {
                match next(&mut a)? {
                    (1, Wire::Delimited(v)) => {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        any_value(v, out, depth + 1)?;
                    }
                    (1, _) => return None,
                    _ => {}
                }
            }
            out.push(b']');
        }
        Held::Kvlist(list) => {
            let wrap = looks_typed(list)?;
            if wrap {
                out.extend_from_slice(b"{\"kvlistValue\":");
            }
            let mut m = Members::open(out);
            let mut rest = list;
            while !rest.is_empty() {
                match next(&mut rest)? {
                    (1, Wire::Delimited(kv)) => key_value(kv, &mut m, depth + 1)?,
                    (1, _) => return None,
                    _ => {}
                }
            }
            m.close();
            if wrap {
                out.push(b'}');
            }
        }
    }
    Some(())
}

/// Whether a key-value list would read back as a typed form: its only
/// entry's key is one of their names (see `value`).
fn looks_typed(mut list: &[u8]) -> Option<bool> {
    let mut only = None;
    let mut n = 0;
    while !list.is_empty() {
        if let (1, Wire::Delimited(kv)) = next(&mut list)? {
            n += 1;
            if n > 1 {
                return Some(false);
            }
            only = Some(kv);
        }
    }
    match only {
        Some(kv) if n == 1 => {
            let (key, _) = key_value_parts(kv)?;
            Some(matches!(key, "bytesValue" | "doubleValue" | "kvlistValue"))
        }
        _ => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use proptest::prelude::*;
    use prost::Message as _;
    use prost::encoding::{WireType, encode_key, encode_varint};

    use crate::otlp::event::{log_events, log_events_wire};
    use crate::otlp::shallow::ShallowExport;

    fn value() -> impl Strategy<Value = Option<Value>> {
        let key = prop_oneof![
            Just("bytesValue".to_string()),
            Just("doubleValue".to_string()),
            Just("kvlistValue".to_string()),
            "[a-z\"\\\\\u{1}é]{0,6}",
        ];
        let leaf = prop_oneof![
            Just(None),
            "[ -~\u{0}-\u{1f}é😀]{0,12}".prop_map(|s| Some(Value::StringValue(s))),
            any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
            any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-0.0),
                Just(1e300)
            ]
            .prop_map(|d| Some(Value::DoubleValue(d))),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Some(Value::BytesValue(b))),
            any::<i32>().prop_map(|i| Some(Value::StringValueStrindex(i))),
        ];
        leaf.prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|vs| Some(Value::ArrayValue(
                    ArrayValue {
                        values: vs.into_iter().map(|value| AnyValue { value }).collect(),
                    }
                ))),
                prop::collection::vec((key.clone(), prop::option::of(inner)), 0..3).prop_map(
                    |kvs| Some(Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: v.map(|value| AnyValue { value }),
                                key_strindex: 0,
                            })
                            .collect(),
                    }))
                ),
            ]
        })
    }

    fn record() -> impl Strategy<Value = LogRecord> {
        let attributes =
            prop::collection::vec(("[a-z.\"]{0,5}", prop::option::of(value()), 0..3i32), 0..4);
        (
            (
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<i32>()),
                "[A-Z\n]{0,5}",
            ),
            (
                prop::option::of(value()),
                attributes,
                prop::option::of(any::<u32>()),
                prop::option::of(any::<u32>()),
            ),
            (
                prop::collection::vec(any::<u8>(), 0..17),
                prop::collection::vec(any::<u8>(), 0..9),
                "[a-z]{0,4}",
            ),
        )
            .prop_map(
                |((t, o, sn, st), (body, attrs, dropped, flags), (trace, span, name))| {
                    LogRecord {
                        // Each sometimes its default, which is left out.
                        time_unix_nano: t.unwrap_or_default(),
                        observed_time_unix_nano: o.unwrap_or_default(),
                        severity_number: sn.unwrap_or_default(),
                        severity_text: st,
                        body: body.map(|value| AnyValue { value }),
                        attributes: attrs
                            .into_iter()
                            .map(|(key, v, strindex)| KeyValue {
                                key,
                                value: v.map(|value| AnyValue { value }),
                                key_strindex: strindex,
                            })
                            .collect(),
                        dropped_attributes_count: dropped.unwrap_or_default(),
                        flags: flags.unwrap_or_default(),
                        trace_id: trace,
                        span_id: span,
                        event_name: name,
                    }
                },
            )
    }

    /// An export of one resource and scope holding `records` as encoded.
    fn export_of(records: &[Vec<u8>]) -> Bytes {
        let field = |tag: u32, bytes: &[u8], out: &mut Vec<u8>| {
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        };
        let mut scope = Vec::new();
        for r in records {
            field(2, r, &mut scope);
        }
        let mut resource = Vec::new();
        field(2, &scope, &mut resource);
        let mut body = Vec::new();
        field(1, &resource, &mut body);
        Bytes::from(body)
    }

    /// The events of `body` both ways: decoded whole and serialized, and
    /// decoded down to the records and written by `record_json`.
    fn both_ways(body: &Bytes) -> Option<(Vec<Bytes>, Vec<Bytes>)> {
        let whole = ExportLogsServiceRequest::decode(body.clone()).ok()?;
        let mut serde = Vec::new();
        log_events(&whole.resource_logs, &mut serde);
        let shallow = ShallowExport::decode(body.clone()).expect("decodes shallow");
        let mut wire = Vec::new();
        log_events_wire(&shallow, body, &mut wire).expect("each record decodes");
        Some((
            serde.into_iter().map(|e| e.raw).collect(),
            wire.into_iter().map(|e| e.raw).collect(),
        ))
    }

    proptest! {
        /// Any record, with values of every kind nested, is written as
        /// serde writes the decoded record, without prost's help.
        #[test]
        fn writes_what_serde_writes(records in prop::collection::vec(record(), 1..4)) {
            for r in &records {
                let bytes = r.encode_to_vec();
                let mut out = Vec::new();
                prop_assert!(super::write(&bytes, &mut out).is_some(), "declined {r:?}");
            }
            let encoded: Vec<Vec<u8>> = records.iter().map(|r| r.encode_to_vec()).collect();
            let (serde, wire) = both_ways(&export_of(&encoded)).expect("decodes");
            prop_assert_eq!(serde, wire);
        }

        /// Damaged or unusual bytes (a byte changed, a field repeated, an
        /// unknown field): whatever it writes is what prost decodes; what
        /// prost refuses it never writes.
        #[test]
        fn never_writes_what_prost_would_not(
            r in record(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            repeat in prop::option::of(any::<prop::sample::Index>()),
            unknown in prop::option::of((13u32..40, any::<u64>())),
        ) {
            let mut bytes = r.encode_to_vec();
            if let Some(i) = repeat {
                // Append a copy of some field's first bytes: often a whole
                // field again, sometimes a broken one.
                let at = i.index(bytes.len().max(1));
                let tail: Vec<u8> = bytes[at.min(bytes.len())..].iter().take(12).copied().collect();
                bytes.extend_from_slice(&tail);
            }
            if let Some((tag, v)) = unknown {
                encode_key(tag, WireType::Varint, &mut bytes);
                encode_varint(v, &mut bytes);
            }
            for (i, b) in edits {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = b;
                }
            }
            let mut out = Vec::new();
            if super::write(&bytes, &mut out).is_some() {
                prop_assert!(LogRecord::decode(bytes.as_slice()).is_ok(), "wrote what prost refuses");
            }
            if let Some((serde, wire)) = both_ways(&export_of(&[bytes])) {
                prop_assert_eq!(serde, wire);
            }
        }
    }
}
