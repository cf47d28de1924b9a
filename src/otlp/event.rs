//! Events that arrived over OTLP: their shape, and the way back.
//!
//! The OTLP source makes each log record one event, and each resource's
//! metrics or spans one event (they are routed as a unit). The event is
//! JSON whose first key is `_otlp` (`"log"`, `"metrics"` or `"traces"`): the
//! OTLP destination recognises it by that prefix without parsing, and
//! rebuilds exactly what arrived, grouped again by resource and scope.
//!
//! A log event is flat, with names as the OTLP data model spells them, so
//! filters read it directly: `severity_text`, `severity_number`, `body`,
//! `attributes.*`, `resource.*` (the resource's attributes), `scope.name`,
//! `time_unix_nano`, `trace_id` and `span_id` (hex). Metric and trace
//! events carry `resource` the same way and their `scope_metrics` /
//! `scope_spans` in OTLP/JSON. Values are plain JSON (see `value`).

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::borrowed::{Borrowed, ResourceWire, ScopeWire};
use super::record_json;
use super::shallow::ShallowExport;
use super::value::{Attributes, Plain, PlainAttributes, PlainValue};
use crate::event::Event;

/// Which OTLP signal an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    #[serde(rename = "log")]
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }
}

/// The signal of an event the OTLP source made, from its first key; `None`
/// for every other event.
pub fn signal_of(raw: &[u8]) -> Option<Signal> {
    let rest = raw.strip_prefix(b"{\"_otlp\":\"")?;
    if rest.starts_with(b"log\"") {
        Some(Signal::Logs)
    } else if rest.starts_with(b"metrics\"") {
        Some(Signal::Metrics)
    } else if rest.starts_with(b"traces\"") {
        Some(Signal::Traces)
    } else {
        None
    }
}

/// Where a record came from: its resource and scope, with their schema URLs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Origin {
    pub resource: Option<Resource>,
    pub resource_schema_url: String,
    pub scope: Option<InstrumentationScope>,
    pub scope_schema_url: String,
}

/// Declares an event struct: `_otlp` first (the wire order is the field
/// order), then the resource's fields, then its own. The resource's fields
/// are written into each struct rather than `#[serde(flatten)]`ed: flatten
/// buffers the whole event before reading it, on every event. `R` is how
/// the resource's attributes are read: parsed, or left as their JSON text
/// (`RawResource`).
macro_rules! otlp_event {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Serialize, Deserialize)]
        pub struct $name<R = PlainAttributes> {
            #[serde(rename = "_otlp")]
            signal: Signal,
            /// `None`: it came without a resource; `{}`: with an empty one.
            #[serde(default = "none", skip_serializing_if = "Option::is_none")]
            resource: Option<R>,
            #[serde(default, skip_serializing_if = "is_zero")]
            resource_dropped_attributes_count: u32,
            #[serde(default, skip_serializing_if = "String::is_empty")]
            resource_schema_url: String,
            $($(#[$fm])* $field: $ty,)*
        }

        impl $name {
            /// The resource and its schema URL, taken out.
            fn take_resource(&mut self) -> (Option<Resource>, String) {
                let attributes = self.resource.take().map(|a| a.0);
                let resource = resource_of(attributes, self.resource_dropped_attributes_count);
                (resource, std::mem::take(&mut self.resource_schema_url))
            }
        }
    };
}

otlp_event! {
    /// One log record as an event.
    pub struct LogEvent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<ScopeFields>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        scope_schema_url: String,
        #[serde(default, skip_serializing_if = "is_zero")]
        time_unix_nano: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        observed_time_unix_nano: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        severity_number: i32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        severity_text: String,
        #[serde(default, skip_serializing_if = "PlainValue::is_none")]
        body: PlainValue,
        #[serde(default, skip_serializing_if = "PlainAttributes::is_empty")]
        attributes: PlainAttributes,
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped_attributes_count: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        flags: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex")]
        trace_id: Vec<u8>,
        #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex")]
        span_id: Vec<u8>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        event_name: String,
    }
}

otlp_event! {
    /// A resource's metrics as one event.
    pub struct MetricsEvent {
        #[serde(default)]
        scope_metrics: Vec<ScopeMetrics>,
    }
}

otlp_event! {
    /// A resource's spans as one event.
    pub struct TracesEvent {
        #[serde(default)]
        scope_spans: Vec<ScopeSpans>,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ScopeFields {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(default, skip_serializing_if = "PlainAttributes::is_empty")]
    attributes: PlainAttributes,
    #[serde(default, skip_serializing_if = "is_zero")]
    dropped_attributes_count: u32,
}

/// A resource as the events carry it: attributes, dropped count, schema URL.
fn resource_fields(
    resource: Option<&Resource>,
    schema_url: &str,
) -> (Option<PlainAttributes>, u32, String) {
    (
        resource.map(|r| PlainAttributes(r.attributes.clone())),
        resource.map_or(0, |r| r.dropped_attributes_count),
        schema_url.to_string(),
    )
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl PlainValue {
    /// No value at all (an empty one is `null`).
    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl PlainAttributes {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for PlainValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Plain(self.0.as_ref().and_then(|v| v.value.as_ref())).serialize(s)
    }
}

impl Serialize for PlainAttributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Attributes(&self.0).serialize(s)
    }
}

impl LogEvent {
    /// The event for `record`, which came from `origin`.
    pub fn new(origin: &Origin, record: &LogRecord) -> Self {
        let (resource, resource_dropped_attributes_count, resource_schema_url) =
            resource_fields(origin.resource.as_ref(), &origin.resource_schema_url);
        LogEvent {
            signal: Signal::Logs,
            resource,
            resource_dropped_attributes_count,
            resource_schema_url,
            scope: origin.scope.as_ref().map(|s| ScopeFields {
                name: s.name.clone(),
                version: s.version.clone(),
                attributes: PlainAttributes(s.attributes.clone()),
                dropped_attributes_count: s.dropped_attributes_count,
            }),
            scope_schema_url: origin.scope_schema_url.clone(),
            time_unix_nano: record.time_unix_nano,
            observed_time_unix_nano: record.observed_time_unix_nano,
            severity_number: record.severity_number,
            severity_text: record.severity_text.clone(),
            body: PlainValue(record.body.clone()),
            attributes: PlainAttributes(record.attributes.clone()),
            dropped_attributes_count: record.dropped_attributes_count,
            flags: record.flags,
            trace_id: record.trace_id.clone(),
            span_id: record.span_id.clone(),
            event_name: record.event_name.clone(),
        }
    }

    /// The record and where it came from.
    pub fn into_parts(mut self) -> (Origin, LogRecord) {
        let (resource, resource_schema_url) = self.take_resource();
        let (_, origin, record) = self.split();
        let origin = Origin {
            resource,
            resource_schema_url,
            scope: origin.scope,
            scope_schema_url: origin.scope_schema_url,
        };
        (origin, record)
    }
}

impl<'a> LogEvent<RawResource<'a>> {
    /// The record and where it came from, the resource still JSON text.
    pub fn into_raw_parts(self) -> (RawOrigin<'a>, LogRecord) {
        let (resource, mut origin, record) = self.split();
        origin.resource = resource.map(|r| r.get());
        (origin, record)
    }
}

impl<R> LogEvent<R> {
    /// The resource as read, the rest of the origin, and the record.
    fn split(self) -> (Option<R>, RawOrigin<'static>, LogRecord) {
        let origin = RawOrigin {
            resource: None,
            resource_dropped_attributes_count: self.resource_dropped_attributes_count,
            resource_schema_url: self.resource_schema_url,
            scope: self.scope.map(|s| InstrumentationScope {
                name: s.name,
                version: s.version,
                attributes: s.attributes.0,
                dropped_attributes_count: s.dropped_attributes_count,
            }),
            scope_schema_url: self.scope_schema_url,
        };
        let record = LogRecord {
            time_unix_nano: self.time_unix_nano,
            observed_time_unix_nano: self.observed_time_unix_nano,
            severity_number: self.severity_number,
            severity_text: self.severity_text,
            body: self.body.0,
            attributes: self.attributes.0,
            dropped_attributes_count: self.dropped_attributes_count,
            flags: self.flags,
            trace_id: self.trace_id,
            span_id: self.span_id,
            event_name: self.event_name,
        };
        (self.resource, origin, record)
    }
}

/// A resource's attributes as their JSON text, unparsed: a batch's records
/// mostly share one resource, so the OTLP destination compares it as bytes
/// and parses it once per group instead of once per record.
pub type RawResource<'a> = &'a serde_json::value::RawValue;

/// Where a log event came from, its resource's attributes still JSON text.
#[derive(Debug, PartialEq)]
pub struct RawOrigin<'a> {
    resource: Option<&'a str>,
    resource_dropped_attributes_count: u32,
    pub resource_schema_url: String,
    scope: Option<InstrumentationScope>,
    scope_schema_url: String,
}

impl RawOrigin<'_> {
    /// The same resource: attributes as written, dropped count, schema URL.
    pub fn same_resource(&self, other: &RawOrigin<'_>) -> bool {
        self.resource == other.resource
            && self.resource_dropped_attributes_count == other.resource_dropped_attributes_count
            && self.resource_schema_url == other.resource_schema_url
    }

    /// The scope and its schema URL, taken out.
    pub fn take_scope(&mut self) -> (Option<InstrumentationScope>, String) {
        (
            self.scope.take(),
            std::mem::take(&mut self.scope_schema_url),
        )
    }

    /// The resource, parsed.
    pub fn resource(&self) -> Result<Option<Resource>, serde_json::Error> {
        let attributes = self
            .resource
            .map(serde_json::from_str::<PlainAttributes>)
            .transpose()?;
        Ok(resource_of(
            attributes.map(|a| a.0),
            self.resource_dropped_attributes_count,
        ))
    }
}

/// A resource from its attributes (`None`: it had none, as distinct from
/// `{}`) and dropped count.
fn resource_of(attributes: Option<Vec<KeyValue>>, dropped: u32) -> Option<Resource> {
    match attributes {
        Some(attributes) => Some(Resource {
            attributes,
            dropped_attributes_count: dropped,
            ..Default::default()
        }),
        None if dropped > 0 => Some(Resource {
            dropped_attributes_count: dropped,
            ..Default::default()
        }),
        None => None,
    }
}

fn none<T>() -> Option<T> {
    None
}

impl MetricsEvent {
    pub fn new(rm: ResourceMetrics) -> Self {
        let (resource, resource_dropped_attributes_count, resource_schema_url) =
            resource_fields(rm.resource.as_ref(), &rm.schema_url);
        MetricsEvent {
            signal: Signal::Metrics,
            resource,
            resource_dropped_attributes_count,
            resource_schema_url,
            scope_metrics: rm.scope_metrics,
        }
    }

    pub fn into_resource_metrics(mut self) -> ResourceMetrics {
        let (resource, schema_url) = self.take_resource();
        ResourceMetrics {
            resource,
            scope_metrics: self.scope_metrics,
            schema_url,
        }
    }
}

impl TracesEvent {
    pub fn new(rs: ResourceSpans) -> Self {
        let (resource, resource_dropped_attributes_count, resource_schema_url) =
            resource_fields(rs.resource.as_ref(), &rs.schema_url);
        TracesEvent {
            signal: Signal::Traces,
            resource,
            resource_dropped_attributes_count,
            resource_schema_url,
            scope_spans: rs.scope_spans,
        }
    }

    pub fn into_resource_spans(mut self) -> ResourceSpans {
        let (resource, schema_url) = self.take_resource();
        ResourceSpans {
            resource,
            scope_spans: self.scope_spans,
            schema_url,
        }
    }
}

/// Each log record of `resource_logs` as an event. The resource and scope
/// are written once per scope and each record's own fields spliced after
/// them: the same bytes as serializing a `LogEvent` per record, without
/// copying the resource into every one.
pub fn log_events(resource_logs: &[ResourceLogs], out: &mut Vec<Event>) {
    let mut made = Made::default();
    for rl in resource_logs {
        for sl in &rl.scope_logs {
            let Some(head) = Made::head(&rl.resource, &rl.schema_url, &sl.scope, &sl.schema_url)
            else {
                continue;
            };
            for r in &sl.log_records {
                made.push(&head, None, |buf| {
                    serde_json::to_writer(buf, &Record(r)).map_err(|_| ())
                });
            }
        }
    }
    made.finish(out);
}

/// The events of a protobuf logs export (`body`, decoded as `export`), as
/// `log_events` makes them, each standing for its record's bytes (see
/// `exports` and `borrowed`). A record `record_json` declines is decoded
/// by prost; one that does not decode fails the export, as decoding it
/// whole would.
pub fn log_events_wire(
    export: &ShallowExport,
    body: &Bytes,
    out: &mut Vec<Event>,
) -> Result<(), prost::DecodeError> {
    let mut made = Made::default();
    for rl in &export.resource_logs {
        let resource = ResourceWire::new(rl.resource.as_ref(), &rl.schema_url);
        for sl in &rl.scope_logs {
            let Some(head) = Made::head(&rl.resource, &rl.schema_url, &sl.scope, &sl.schema_url)
            else {
                continue;
            };
            let scope = ScopeWire::new(body, &resource, sl.scope.as_ref(), &sl.schema_url);
            for r in &sl.log_records {
                let mut failed = None;
                made.push(&head, scope.borrow(r), |buf| {
                    let at = buf.len();
                    if record_json::write(r, buf).is_some() {
                        return Ok(());
                    }
                    buf.truncate(at);
                    let record = LogRecord::decode(r.as_ref()).map_err(|e| failed = Some(e))?;
                    serde_json::to_writer(buf, &Record(&record)).map_err(|_| ())
                });
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
    }
    made.finish(out);
    Ok(())
}

/// An export's events as they are made: their JSON in one buffer, which
/// each event slices.
#[derive(Default)]
struct Made {
    buf: Vec<u8>,
    events: Vec<(std::ops::Range<usize>, Option<Borrowed>)>,
}

impl Made {
    /// A scope's events' common start: `LogEvent`'s JSON for its origin,
    /// without the closing brace.
    fn head(
        resource: &Option<Resource>,
        resource_schema_url: &str,
        scope: &Option<InstrumentationScope>,
        scope_schema_url: &str,
    ) -> Option<Vec<u8>> {
        let origin = Origin {
            resource: resource.clone(),
            resource_schema_url: resource_schema_url.to_string(),
            scope: scope.clone(),
            scope_schema_url: scope_schema_url.to_string(),
        };
        let mut head = serde_json::to_vec(&LogEvent::new(&origin, &LogRecord::default())).ok()?;
        head.pop()?;
        Some(head)
    }

    /// One event: `head`, then the record's own fields as `write` appends
    /// them (`{...}`); nothing when `write` fails.
    fn push(
        &mut self,
        head: &[u8],
        borrowed: Option<Borrowed>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), ()>,
    ) {
        let start = self.buf.len();
        self.buf.extend_from_slice(head);
        let at = self.buf.len();
        if write(&mut self.buf).is_err() {
            self.buf.truncate(start);
            return;
        }
        if self.buf.len() - at == 2 {
            // `{}`: no field of its own.
            self.buf.truncate(at);
            self.buf.push(b'}');
        } else {
            self.buf[at] = b',';
        }
        self.events.push((start..self.buf.len(), borrowed));
    }

    fn finish(self, out: &mut Vec<Event>) {
        let mut borrowed = Vec::new();
        let mut ranges = Vec::with_capacity(self.events.len());
        for (at, b) in self.events {
            if let Some(b) = b {
                borrowed.push((at.clone(), b));
            }
            ranges.push(at);
        }
        // Registered so the OTLP destination finds each event's record.
        let all = super::exports::register(self.buf, borrowed);
        out.extend(ranges.into_iter().map(|at| Event::json(all.slice(at))));
    }
}

/// A log record's own fields, in `LogEvent`'s order and with its rules for
/// what is left out.
struct Record<'a>(&'a LogRecord);

impl Serialize for Record<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        if r.time_unix_nano != 0 {
            m.serialize_entry("time_unix_nano", &r.time_unix_nano)?;
        }
        if r.observed_time_unix_nano != 0 {
            m.serialize_entry("observed_time_unix_nano", &r.observed_time_unix_nano)?;
        }
        if r.severity_number != 0 {
            m.serialize_entry("severity_number", &r.severity_number)?;
        }
        if !r.severity_text.is_empty() {
            m.serialize_entry("severity_text", &r.severity_text)?;
        }
        if let Some(b) = r.body.as_ref() {
            m.serialize_entry("body", &Plain(b.value.as_ref()))?;
        }
        if !r.attributes.is_empty() {
            m.serialize_entry("attributes", &Attributes(&r.attributes))?;
        }
        if r.dropped_attributes_count != 0 {
            m.serialize_entry("dropped_attributes_count", &r.dropped_attributes_count)?;
        }
        if r.flags != 0 {
            m.serialize_entry("flags", &r.flags)?;
        }
        if !r.trace_id.is_empty() {
            m.serialize_entry("trace_id", &Hex(&r.trace_id))?;
        }
        if !r.span_id.is_empty() {
            m.serialize_entry("span_id", &Hex(&r.span_id))?;
        }
        if !r.event_name.is_empty() {
            m.serialize_entry("event_name", &r.event_name)?;
        }
        m.end()
    }
}

struct Hex<'a>(&'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hex::serialize(self.0, s)
    }
}

/// Each resource's metrics as an event. Takes the export's data: its
/// metrics move into the events instead of being copied.
pub fn metrics_events(resource_metrics: Vec<ResourceMetrics>, out: &mut Vec<Event>) {
    out.extend(
        resource_metrics
            .into_iter()
            .map(|rm| json_event(&MetricsEvent::new(rm))),
    );
}

/// Each resource's spans as an event, moving them as `metrics_events` does.
pub fn traces_events(resource_spans: Vec<ResourceSpans>, out: &mut Vec<Event>) {
    out.extend(
        resource_spans
            .into_iter()
            .map(|rs| json_event(&TracesEvent::new(rs))),
    );
}

fn json_event(v: &impl Serialize) -> Event {
    // Serializing these types into memory cannot fail: every map key is a
    // string and no value is refused.
    Event::json(Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
}

/// Trace and span ids as lowercase hex, as OTLP/JSON writes them.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digit = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        if text.len() % 2 != 0 {
            return Err(de::Error::custom(
                "an id in hex has an even number of digits",
            ));
        }
        text.as_bytes()
            .chunks(2)
            .map(|p| match (digit(p[0]), digit(p[1])) {
                (Some(h), Some(l)) => Ok(h << 4 | l),
                _ => Err(de::Error::custom(format!("`{text}` is not hex"))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::value::key_value;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        })
    }

    #[test]
    fn a_log_record_round_trips_through_its_event() {
        let origin = Origin {
            resource: Some(Resource {
                attributes: vec![key_value("service.name".into(), s("checkout"))],
                ..Default::default()
            }),
            resource_schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            scope: Some(InstrumentationScope {
                name: "app".into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            scope_schema_url: String::new(),
        };
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: s("payment failed"),
            attributes: vec![key_value(
                "http.status".into(),
                Some(AnyValue {
                    value: Some(Value::IntValue(502)),
                }),
            )],
            trace_id: (0..16).collect(),
            span_id: (0..8).collect(),
            flags: 1,
            ..Default::default()
        };
        let json = serde_json::to_vec(&LogEvent::new(&origin, &record)).unwrap();
        assert_eq!(signal_of(&json), Some(Signal::Logs));
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"_otlp":"log","resource":{"service.name":"checkout"},"#),
            "{text}"
        );
        assert!(
            text.contains(r#""trace_id":"000102030405060708090a0b0c0d0e0f""#),
            "{text}"
        );
        let back: LogEvent = serde_json::from_slice(&json).unwrap();
        // What the source makes (the resource spliced in) is the same bytes.
        let mut events = Vec::new();
        let resource_logs = ResourceLogs {
            resource: origin.resource.clone(),
            scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                scope: origin.scope.clone(),
                log_records: vec![record.clone(), LogRecord::default()],
                schema_url: origin.scope_schema_url.clone(),
            }],
            schema_url: origin.resource_schema_url.clone(),
        };
        log_events(&[resource_logs], &mut events);
        assert_eq!(&events[0].raw[..], &json[..]);
        let empty = serde_json::to_vec(&LogEvent::new(&origin, &LogRecord::default())).unwrap();
        assert_eq!(&events[1].raw[..], &empty[..]);
        assert_eq!(back.into_parts(), (origin, record));
    }

    #[test]
    fn other_events_are_not_otlp() {
        assert_eq!(signal_of(br#"{"msg":"hi"}"#), None);
        assert_eq!(signal_of(br#"{"_otlp":"profiles"}"#), None);
        assert_eq!(
            signal_of(br#"{"_otlp":"metrics","scope_metrics":[]}"#),
            Some(Signal::Metrics)
        );
    }
}
