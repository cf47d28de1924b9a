//! Any other event as an OTLP log record (`mapping:` on the OTLP
//! destination). The defaults are the fields log shippers write:
//! `message` or `msg` is the body, `level` (or `severity`) the severity,
//! `timestamp` (or `time`, `@timestamp`) the time, `service` and `host` the
//! resource's `service.name` and `host.name`; every other top-level field
//! becomes an attribute. An event without a body field is its own body (an
//! object of the fields left), with no attributes. A text event is a body
//! string.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::value::{PlainValue, key_value};
use crate::codec::time::{EventTime, read};
use crate::event::{Event, Format};

/// Which top-level fields become which parts of a log record. Each list
/// is tried in order; the first field present wins.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    pub body: Vec<String>,
    pub severity: Vec<String>,
    pub timestamp: Vec<String>,
    /// Resource attribute name → field.
    pub resource: BTreeMap<String, String>,
    /// The fields that become attributes. Default: all the others.
    pub attributes: Option<Vec<String>>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect();
        MappingConfig {
            body: names(&["message", "msg"]),
            severity: names(&["level", "severity"]),
            timestamp: names(&["timestamp", "time", "@timestamp"]),
            resource: [("service.name", "service"), ("host.name", "host")]
                .into_iter()
                .map(|(a, f)| (a.to_string(), f.to_string()))
                .collect(),
            attributes: None,
        }
    }
}

impl MappingConfig {
    pub fn validate(&self) -> Result<(), String> {
        let all = self
            .body
            .iter()
            .chain(&self.severity)
            .chain(&self.timestamp)
            .chain(self.resource.values())
            .chain(self.attributes.iter().flatten());
        for f in all {
            if f.is_empty() {
                return Err("mapping: a field name must not be empty".into());
            }
        }
        Ok(())
    }
}

/// A top-level JSON object as its entries, in order, values unparsed.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn plain(raw: &RawValue) -> Option<AnyValue> {
    serde_json::from_str::<PlainValue>(raw.get()).ok()?.0
}

fn string(v: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(v)),
    })
}

/// OTel's severity numbers for the level names logs use.
fn severity_number(level: &str) -> i32 {
    match level.trim().to_ascii_lowercase().as_str() {
        "trace" | "finest" => 1,
        "debug" | "fine" | "finer" => 5,
        "info" | "information" | "informational" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "err" | "severe" => 17,
        "fatal" | "critical" | "crit" | "alert" | "emerg" | "emergency" | "panic" => 21,
        _ => 0,
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The deepest JSON an event may nest to be mapped. Each level becomes
/// about three protobuf messages (AnyValue, KeyValueList, KeyValue), and
/// protobuf decoders limit nesting (prost: 100 messages): deeper, one
/// event would make a receiver refuse its whole export. Deeper events are
/// counted unencodable instead.
pub const MAX_NESTING: usize = 30;

impl MappingConfig {
    /// `event` as a record and its resource's attributes; `None` when it
    /// is not JSON it can read, or nests deeper than `MAX_NESTING`
    /// (counted unencodable by the caller).
    pub fn record(&self, event: &Event) -> Option<(Vec<KeyValue>, LogRecord)> {
        let observed = now_nanos();
        let mut record = LogRecord {
            observed_time_unix_nano: observed,
            ..Default::default()
        };
        if event.format == Format::Text {
            record.body = string(String::from_utf8_lossy(&event.raw).into_owned());
            return Some((Vec::new(), record));
        }
        if crate::codec::nesting::exceeds(&event.raw, MAX_NESTING) {
            return None;
        }
        let Ok(Entries(mut fields)) = serde_json::from_slice::<Entries>(&event.raw) else {
            // A JSON value that is not an object is the body itself.
            let raw: &RawValue = serde_json::from_slice(&event.raw).ok()?;
            record.body = plain(raw);
            return Some((Vec::new(), record));
        };
        let mut take = |names: &[String]| -> Option<&RawValue> {
            let i = names
                .iter()
                .find_map(|n| fields.iter().position(|(k, _)| k == n))?;
            Some(fields.remove(i).1)
        };
        let body = take(&self.body);
        if let Some(level) = take(&self.severity) {
            match plain(level).and_then(|v| v.value) {
                Some(Value::StringValue(t)) => {
                    record.severity_number = severity_number(&t);
                    record.severity_text = t;
                }
                Some(Value::IntValue(n)) if (1..=24).contains(&n) => {
                    record.severity_number = n as i32;
                }
                _ => {}
            }
        }
        if let Some(t) = take(&self.timestamp)
            && let EventTime::At(ns) = read(Some(t.get().as_bytes()))
        {
            record.time_unix_nano = ns.max(0) as u64;
        }
        let mut resource = Vec::with_capacity(self.resource.len());
        for (name, field) in &self.resource {
            if let Some(v) = take(std::slice::from_ref(field)) {
                resource.push(key_value(name.clone(), plain(v)));
            }
        }
        let rest = |fields: Vec<(String, &RawValue)>| {
            fields
                .into_iter()
                .map(|(key, v)| key_value(key, plain(v)))
                .collect::<Vec<_>>()
        };
        match body {
            Some(b) => {
                record.body = plain(b);
                record.attributes = match &self.attributes {
                    None => rest(fields),
                    Some(names) => rest(
                        fields
                            .into_iter()
                            .filter(|(k, _)| names.contains(k))
                            .collect(),
                    ),
                };
            }
            None => {
                record.body = Some(AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: rest(fields),
                    })),
                });
            }
        }
        Some((resource, record))
    }
}

/// The resource of mapped records.
pub fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    if attributes.is_empty() {
        None
    } else {
        Some(Resource {
            attributes,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn text_of(v: &Option<AnyValue>) -> Option<&str> {
        match v.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn shipper_fields_map_to_body_severity_time_and_resource() {
        let m = MappingConfig::default();
        let e = Event::json(Bytes::from_static(
            br#"{"timestamp":"2026-12-04T10:00:00.5Z","level":"warn","msg":"disk full","host":"web-1","service":"api","path":"/x","code":507}"#,
        ));
        let (resource, r) = m.record(&e).unwrap();
        assert_eq!(text_of(&r.body), Some("disk full"));
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "warn"));
        assert_eq!(r.time_unix_nano, 1_796_378_400_500_000_000);
        let keys: Vec<_> = resource.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["host.name", "service.name"]);
        let attrs: Vec<_> = r.attributes.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(attrs, ["path", "code"]);
        assert!(matches!(
            r.attributes[1]
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref()),
            Some(Value::IntValue(507))
        ));
    }

    #[test]
    fn an_event_without_a_body_field_is_its_own_body_and_text_is_a_string() {
        let m = MappingConfig::default();
        let (_, r) = m
            .record(&Event::json(Bytes::from_static(br#"{"a":1,"level":30}"#)))
            .unwrap();
        assert!(r.attributes.is_empty());
        assert!(matches!(
            r.body.and_then(|v| v.value),
            Some(Value::KvlistValue(kv)) if kv.values.len() == 1 && kv.values[0].key == "a"
        ));
        let (_, r) = m
            .record(&Event::text(Bytes::from_static(b"plain line")))
            .unwrap();
        assert_eq!(text_of(&r.body), Some("plain line"));
        assert!(
            m.record(&Event::json(Bytes::from_static(b"{not json")))
                .is_none()
        );
    }

    #[test]
    fn an_event_nested_too_deep_is_not_mapped() {
        let m = MappingConfig::default();
        let ok = format!(
            r#"{{"msg":{}1{}}}"#,
            "[".repeat(MAX_NESTING - 1),
            "]".repeat(MAX_NESTING - 1)
        );
        assert!(m.record(&Event::json(Bytes::from(ok))).is_some());
        let deep = format!(
            r#"{{"msg":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(m.record(&Event::json(Bytes::from(deep))).is_none());
    }
}
