//! Log records grouped again by resource and scope, in arrival order: how
//! the OTLP destination rebuilds an export from a batch of events.
//!
//! The records of an event from the OTLP source carry their resource as
//! JSON text, the same bytes in every event of that resource. It is
//! compared as text and parsed only when it starts a group: parsing and
//! comparing it as attributes, per record, was the largest cost of
//! OTLP-to-OTLP delivery.

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use super::event::{Origin, RawOrigin};

#[derive(Default)]
pub struct LogGroups<'a> {
    groups: Vec<ResourceLogs>,
    /// Each group's resource as the events wrote it; `None` for a group
    /// started by a parsed origin (an event mapped to a record).
    keys: Vec<Option<RawOrigin<'a>>>,
}

impl<'a> LogGroups<'a> {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn into_resource_logs(self) -> Vec<ResourceLogs> {
        self.groups
    }

    /// A record whose origin is parsed.
    pub fn push(&mut self, origin: Origin, record: LogRecord) {
        let i = match self.groups.iter().rposition(|g| {
            g.resource == origin.resource && g.schema_url == origin.resource_schema_url
        }) {
            Some(i) => i,
            None => {
                self.groups.push(ResourceLogs {
                    resource: origin.resource,
                    scope_logs: Vec::new(),
                    schema_url: origin.resource_schema_url,
                });
                self.keys.push(None);
                self.groups.len() - 1
            }
        };
        self.push_scoped(i, origin.scope, origin.scope_schema_url, record);
    }

    /// A record whose resource is still JSON text: an error when a new
    /// resource does not parse.
    pub fn push_raw(
        &mut self,
        mut origin: RawOrigin<'a>,
        record: LogRecord,
    ) -> Result<(), serde_json::Error> {
        let (scope, scope_schema_url) = origin.take_scope();
        let found = self
            .keys
            .iter()
            .rposition(|k| k.as_ref().is_some_and(|k| k.same_resource(&origin)));
        let i = match found {
            Some(i) => i,
            None => {
                self.groups.push(ResourceLogs {
                    resource: origin.resource()?,
                    scope_logs: Vec::new(),
                    schema_url: origin.resource_schema_url.clone(),
                });
                self.keys.push(Some(origin));
                self.groups.len() - 1
            }
        };
        self.push_scoped(i, scope, scope_schema_url, record);
        Ok(())
    }

    fn push_scoped(
        &mut self,
        i: usize,
        scope: Option<InstrumentationScope>,
        schema_url: String,
        record: LogRecord,
    ) {
        let scopes = &mut self.groups[i].scope_logs;
        match scopes
            .iter_mut()
            .rfind(|s| s.scope == scope && s.schema_url == schema_url)
        {
            Some(s) => s.log_records.push(record),
            None => scopes.push(ScopeLogs {
                scope,
                log_records: vec![record],
                schema_url,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::otlp::event::{LogEvent, RawResource, log_events};
    use crate::otlp::value::key_value;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn attr(k: &str, v: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
        key_value(
            k.into(),
            Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
        )
    }

    fn record(n: u64) -> LogRecord {
        LogRecord {
            time_unix_nano: n,
            attributes: vec![attr("n", &n.to_string())],
            ..Default::default()
        }
    }

    fn resource_logs(service: &str, dropped: u32, scopes: &[&str], n: u64) -> ResourceLogs {
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attr("service.name", service), attr("host", "a")],
                dropped_attributes_count: dropped,
                ..Default::default()
            }),
            scope_logs: scopes
                .iter()
                .map(|s| ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: (*s).into(),
                        ..Default::default()
                    }),
                    log_records: (0..n).map(record).collect(),
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: "https://example.com/schema".into(),
        }
    }

    #[test]
    fn resources_compared_as_text_group_as_parsed_ones_do() {
        // Interleaved resources, one differing only in its dropped count, a
        // resource-less export, and scopes repeated across exports.
        let exports = [
            vec![resource_logs("api", 0, &["a", "b"], 2)],
            vec![resource_logs("db", 0, &["a"], 1)],
            vec![resource_logs("api", 0, &["b"], 1)],
            vec![resource_logs("api", 3, &["a"], 1)],
            vec![ResourceLogs {
                resource: None,
                scope_logs: resource_logs("x", 0, &["a"], 1).scope_logs,
                schema_url: String::new(),
            }],
        ];
        let mut events: Vec<Event> = Vec::new();
        for e in &exports {
            log_events(e, &mut events);
        }
        let (mut raw, mut parsed) = (LogGroups::default(), LogGroups::default());
        for e in &events {
            let l: LogEvent<RawResource> = serde_json::from_slice(&e.raw).unwrap();
            let (origin, record) = l.into_raw_parts();
            raw.push_raw(origin, record).unwrap();
            let l: LogEvent = serde_json::from_slice(&e.raw).unwrap();
            let (origin, record) = l.into_parts();
            parsed.push(origin, record);
        }
        let raw = raw.into_resource_logs();
        assert_eq!(raw, parsed.into_resource_logs());
        // api (dropped 0), db, api (dropped 3), none.
        assert_eq!(raw.len(), 4);
        assert_eq!(raw[0].scope_logs.len(), 2);
        assert_eq!(raw[0].scope_logs[1].log_records.len(), 3);
    }

    #[test]
    fn a_resource_that_does_not_parse_is_an_error_not_a_group() {
        let mut groups = LogGroups::default();
        let json = br#"{"_otlp":"log","resource":5,"time_unix_nano":1}"#;
        let l: LogEvent<RawResource> = serde_json::from_slice(json).unwrap();
        let (origin, record) = l.into_raw_parts();
        assert!(groups.push_raw(origin, record).is_err());
        assert!(groups.is_empty());
    }
}
