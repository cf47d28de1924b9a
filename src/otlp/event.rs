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
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use serde::{Deserialize, Serialize};

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

/// One log record as an event. Field order is the wire order: `_otlp` first.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogEvent {
    #[serde(rename = "_otlp")]
    signal: Signal,
    #[serde(flatten)]
    resource: ResourceFields,
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

/// A resource's fields as every event carries them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ResourceFields {
    /// `None`: the record came without a resource; `{}`: with an empty one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<PlainAttributes>,
    #[serde(default, skip_serializing_if = "is_zero")]
    resource_dropped_attributes_count: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    resource_schema_url: String,
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

/// A resource's metrics as one event.
#[derive(Debug, Serialize, Deserialize)]
pub struct MetricsEvent {
    #[serde(rename = "_otlp")]
    signal: Signal,
    #[serde(flatten)]
    resource: ResourceFields,
    #[serde(default)]
    scope_metrics: Vec<ScopeMetrics>,
}

/// A resource's spans as one event.
#[derive(Debug, Serialize, Deserialize)]
pub struct TracesEvent {
    #[serde(rename = "_otlp")]
    signal: Signal,
    #[serde(flatten)]
    resource: ResourceFields,
    #[serde(default)]
    scope_spans: Vec<ScopeSpans>,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl PlainValue {
    fn is_none(&self) -> bool {
        self.0.as_ref().and_then(|v| v.value.as_ref()).is_none()
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

impl ResourceFields {
    fn new(resource: Option<&Resource>, schema_url: &str) -> Self {
        ResourceFields {
            resource: resource.map(|r| PlainAttributes(r.attributes.clone())),
            resource_dropped_attributes_count: resource.map_or(0, |r| r.dropped_attributes_count),
            resource_schema_url: schema_url.to_string(),
        }
    }

    fn into_resource(self) -> (Option<Resource>, String) {
        let resource = match self.resource {
            Some(a) => Some(Resource {
                attributes: a.0,
                dropped_attributes_count: self.resource_dropped_attributes_count,
                ..Default::default()
            }),
            None if self.resource_dropped_attributes_count > 0 => Some(Resource {
                dropped_attributes_count: self.resource_dropped_attributes_count,
                ..Default::default()
            }),
            None => None,
        };
        (resource, self.resource_schema_url)
    }
}

impl LogEvent {
    /// The event for `record`, which came from `origin`.
    pub fn new(origin: &Origin, record: &LogRecord) -> Self {
        LogEvent {
            signal: Signal::Logs,
            resource: ResourceFields::new(origin.resource.as_ref(), &origin.resource_schema_url),
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
    pub fn into_parts(self) -> (Origin, LogRecord) {
        let (resource, resource_schema_url) = self.resource.into_resource();
        let origin = Origin {
            resource,
            resource_schema_url,
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
        (origin, record)
    }
}

impl MetricsEvent {
    pub fn new(rm: &ResourceMetrics) -> Self {
        MetricsEvent {
            signal: Signal::Metrics,
            resource: ResourceFields::new(rm.resource.as_ref(), &rm.schema_url),
            scope_metrics: rm.scope_metrics.clone(),
        }
    }

    pub fn into_resource_metrics(self) -> ResourceMetrics {
        let (resource, schema_url) = self.resource.into_resource();
        ResourceMetrics {
            resource,
            scope_metrics: self.scope_metrics,
            schema_url,
        }
    }
}

impl TracesEvent {
    pub fn new(rs: &ResourceSpans) -> Self {
        TracesEvent {
            signal: Signal::Traces,
            resource: ResourceFields::new(rs.resource.as_ref(), &rs.schema_url),
            scope_spans: rs.scope_spans.clone(),
        }
    }

    pub fn into_resource_spans(self) -> ResourceSpans {
        let (resource, schema_url) = self.resource.into_resource();
        ResourceSpans {
            resource,
            scope_spans: self.scope_spans,
            schema_url,
        }
    }
}

/// Each log record of `resource_logs` as an event.
pub fn log_events(resource_logs: &[ResourceLogs], out: &mut Vec<Event>) {
    for rl in resource_logs {
        for sl in &rl.scope_logs {
            let origin = Origin {
                resource: rl.resource.clone(),
                resource_schema_url: rl.schema_url.clone(),
                scope: sl.scope.clone(),
                scope_schema_url: sl.schema_url.clone(),
            };
            for r in &sl.log_records {
                out.push(json_event(&LogEvent::new(&origin, r)));
            }
        }
    }
}

/// Each resource's metrics as an event.
pub fn metrics_events(resource_metrics: &[ResourceMetrics], out: &mut Vec<Event>) {
    out.extend(
        resource_metrics
            .iter()
            .map(|rm| json_event(&MetricsEvent::new(rm))),
    );
}

/// Each resource's spans as an event.
pub fn traces_events(resource_spans: &[ResourceSpans], out: &mut Vec<Event>) {
    out.extend(
        resource_spans
            .iter()
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
