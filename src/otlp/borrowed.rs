//! Log records' protobuf bytes, borrowed from the export that carried them.
//!
//! The OTLP source makes each log record a JSON event (what filters and
//! every other destination read) and remembers where the record sits in
//! the export's body (`exports`). The OTLP destination writes those bytes
//! back as they came, regrouped by resource and scope: no JSON parsed, no
//! record decoded or encoded again, and nothing of the record lost to the
//! JSON form. They are the bytes the event's JSON was written from, so a
//! collector reads the record the filter read. An event whose JSON is
//! rewritten (a pipeline's output, a queue's read-back) is new bytes that
//! stand for no record.
//!
//! The resource and scope are encoded again once per scope (prost merges a
//! repeated `resource` field, so the decoded value is what counts), not per
//! record.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// A resource as it goes back on the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceWire {
    /// The encoded `Resource`; `None`: the export had none.
    resource: Option<Vec<u8>>,
    schema_url: String,
}

/// A scope of one export, holding that export's body.
#[derive(Debug)]
pub struct ScopeWire {
    body: Bytes,
    resource: Arc<ResourceWire>,
    scope: Option<Vec<u8>>,
    schema_url: String,
}

impl ScopeWire {
    fn same_scope(&self, other: &ScopeWire) -> bool {
        self.scope == other.scope && self.schema_url == other.schema_url
    }
}

/// One record's bytes in its export's body.
#[derive(Debug, Clone)]
pub struct Borrowed {
    scope: Arc<ScopeWire>,
    start: u32,
    end: u32,
}

impl Borrowed {
    /// The encoded `LogRecord`.
    pub fn record(&self) -> &[u8] {
        self.scope
            .body
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

impl ResourceWire {
    pub fn new(resource: Option<&Resource>, schema_url: &str) -> Arc<Self> {
        Arc::new(ResourceWire {
            resource: resource.map(Message::encode_to_vec),
            schema_url: schema_url.to_string(),
        })
    }
}

impl ScopeWire {
    /// A scope of the export `body`.
    pub fn new(
        body: &Bytes,
        resource: &Arc<ResourceWire>,
        scope: Option<&InstrumentationScope>,
        schema_url: &str,
    ) -> Arc<Self> {
        Arc::new(ScopeWire {
            body: body.clone(),
            resource: resource.clone(),
            scope: scope.map(Message::encode_to_vec),
            schema_url: schema_url.to_string(),
        })
    }

    /// `record`, borrowed; `None` unless it is a slice of this scope's body.
    pub fn borrow(self: &Arc<Self>, record: &Bytes) -> Option<Borrowed> {
        let base = self.body.as_ptr() as usize;
        let start = (record.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(record.len())?;
        // The same bytes, not merely equal ones.
        let slice = self.body.get(start..end)?;
        if slice.as_ptr() != record.as_ptr() {
            return None;
        }
        Some(Borrowed {
            scope: self.clone(),
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }
}

/// Borrowed records regrouped by resource and scope (equal ones merged, as
/// the JSON path merges them), in arrival order within each.
#[derive(Default)]
pub struct WireLogs {
    resources: Vec<(Arc<ResourceWire>, Vec<ScopeGroup>)>,
}

struct ScopeGroup {
    scope: Arc<ScopeWire>,
    records: Vec<Borrowed>,
}

impl WireLogs {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn push(&mut self, record: &Borrowed) {
        let s = &record.scope;
        // A batch is mostly runs of one export's scope: try the last first.
        if let Some((_, scopes)) = self.resources.last_mut()
            && let Some(g) = scopes.last_mut()
            && Arc::ptr_eq(&g.scope, s)
        {
            g.records.push(record.clone());
            return;
        }
        let r = match self
            .resources
            .iter()
            .rposition(|(r, _)| Arc::ptr_eq(r, &s.resource) || **r == *s.resource)
        {
            Some(r) => r,
            None => {
                self.resources.push((s.resource.clone(), Vec::new()));
                self.resources.len() - 1
            }
        };
        let scopes = &mut self.resources[r].1;
        match scopes
            .iter_mut()
            .rfind(|g| Arc::ptr_eq(&g.scope, s) || g.scope.same_scope(s))
        {
            Some(g) => g.records.push(record.clone()),
            None => scopes.push(ScopeGroup {
                scope: s.clone(),
                records: vec![record.clone()],
            }),
        }
    }

    /// Append the groups to `out` as `ExportLogsServiceRequest.resource_logs`
    /// fields: after a prost-encoded request, the two read as one.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (resource, scopes) in &self.resources {
            let scope_lens: Vec<usize> = scopes.iter().map(ScopeGroup::encoded_len).collect();
            let len = resource
                .resource
                .as_ref()
                .map_or(0, |r| field_len(1, r.len()))
                + scope_lens.iter().map(|&n| field_len(2, n)).sum::<usize>()
                + string_len(3, &resource.schema_url);
            head(1, len, out);
            if let Some(r) = &resource.resource {
                field(1, r, out);
            }
            for (g, &n) in scopes.iter().zip(&scope_lens) {
                head(2, n, out);
                if let Some(s) = &g.scope.scope {
                    field(1, s, out);
                }
                for r in &g.records {
                    field(2, r.record(), out);
                }
                if !g.scope.schema_url.is_empty() {
                    field(3, g.scope.schema_url.as_bytes(), out);
                }
            }
            if !resource.schema_url.is_empty() {
                field(3, resource.schema_url.as_bytes(), out);
            }
        }
    }
}

impl ScopeGroup {
    fn encoded_len(&self) -> usize {
        self.scope
            .scope
            .as_ref()
            .map_or(0, |s| field_len(1, s.len()))
            + self
                .records
                .iter()
                .map(|r| field_len(2, r.record().len()))
                .sum::<usize>()
            + string_len(3, &self.scope.schema_url)
    }
}

/// A length-delimited field of `len` bytes, encoded.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A string field as prost writes it: left out when empty.
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(tag, s.len())
    }
}

fn head(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    head(tag, bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// `export` as the OTLP destination sends its records on: resources merged
/// where their encodings (and schema URLs) are equal, and scopes within them
/// likewise, in order; a scope without records is not sent (it made no
/// event). What borrowing must produce.
pub fn regrouped(
    export: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) -> Vec<ResourceLogs> {
    // A resource or scope as compared: its encoding and schema URL.
    type Key = (Option<Vec<u8>>, String);
    let key = |m: &Option<Vec<u8>>, url: &str| -> Key { (m.clone(), url.to_string()) };
    let mut out: Vec<(ResourceLogs, Key)> = Vec::new();
    for rl in &export.resource_logs {
        if rl.scope_logs.iter().all(|s| s.log_records.is_empty()) {
            continue;
        }
        let rk = key(
            &rl.resource.as_ref().map(|r| r.encode_to_vec()),
            &rl.schema_url,
        );
        let i = match out.iter().rposition(|(_, k)| *k == rk) {
            Some(i) => i,
            None => {
                out.push((
                    ResourceLogs {
                        scope_logs: Vec::new(),
                        ..rl.clone()
                    },
                    rk,
                ));
                out.len() - 1
            }
        };
        let scopes = &mut out[i].0.scope_logs;
        for sl in rl.scope_logs.iter().filter(|s| !s.log_records.is_empty()) {
            let sk = key(
                &sl.scope.as_ref().map(|s| s.encode_to_vec()),
                &sl.schema_url,
            );
            let same = |s: &ScopeLogs| {
                key(&s.scope.as_ref().map(|s| s.encode_to_vec()), &s.schema_url) == sk
            };
            match scopes.iter_mut().rfind(|s| same(s)) {
                Some(s) => s.log_records.extend(sl.log_records.iter().cloned()),
                None => scopes.push(sl.clone()),
            }
        }
    }
    out.into_iter().map(|(rl, _)| rl).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::event::log_events_wire;
    use crate::otlp::exports::Finder;
    use crate::otlp::shallow::ShallowExport;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;

    fn kv(key: &str, v: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(v)),
            }),
            ..Default::default()
        }
    }

    /// An export of `shape`. Few names, so equal resources and scopes recur
    /// and are merged.
    /// Per resource (its name, or none), per scope (its name, or none),
    /// the records' ids.
    type Shape = Vec<(Option<u8>, Vec<(Option<u8>, Vec<u8>)>)>;

    fn export(shape: &Shape) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: shape
                .iter()
                .map(|(resource, scopes)| ResourceLogs {
                    resource: resource.map(|r| Resource {
                        attributes: vec![kv("r", r.into())],
                        ..Default::default()
                    }),
                    scope_logs: scopes
                        .iter()
                        .map(|(scope, ids)| ScopeLogs {
                            scope: scope.map(|s| InstrumentationScope {
                                name: format!("s{s}"),
                                ..Default::default()
                            }),
                            log_records: ids
                                .iter()
                                .map(|&id| LogRecord {
                                    severity_text: "INFO".into(),
                                    attributes: vec![kv("id", id.into())],
                                    ..Default::default()
                                })
                                .collect(),
                            schema_url: if scope == &Some(0) {
                                "u".into()
                            } else {
                                String::new()
                            },
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    /// The OTLP source's events of the export `body`.
    fn wire_events(body: &Bytes) -> Vec<crate::event::Event> {
        let export = ShallowExport::decode(body.clone()).unwrap();
        let mut events = Vec::new();
        log_events_wire(&export, body, &mut events).unwrap();
        events
    }

    /// What the destination sends for events made from `body`.
    fn sent(body: &Bytes) -> ExportLogsServiceRequest {
        let events = wire_events(body);
        let mut logs = WireLogs::default();
        let mut finder = Finder::default();
        for e in &events {
            logs.push(&finder.find(&e.raw).expect("every record borrowed"));
        }
        let mut out = Vec::new();
        logs.encode(&mut out);
        ExportLogsServiceRequest::decode(out.as_slice()).unwrap()
    }

    fn shape() -> impl Strategy<Value = Shape> {
        let scope = (
            prop::option::of(0u8..3),
            prop::collection::vec(any::<u8>(), 0..5),
        );
        let resource = (prop::option::of(0u8..3), prop::collection::vec(scope, 0..4));
        prop::collection::vec(resource, 0..5)
    }

    proptest! {
        /// Any export's records come back regrouped, each exactly as sent.
        #[test]
        fn records_go_back_as_they_came(shape in shape()) {
            let export = export(&shape);
            let body = Bytes::from(export.encode_to_vec());
            prop_assert_eq!(sent(&body).resource_logs, regrouped(&export));
        }

        /// Split across two exports (two bodies), records of an equal
        /// resource and scope still share one group.
        #[test]
        fn exports_merge_into_one_request(a in shape(), b in shape()) {
            let (a, b) = (export(&a), export(&b));
            let (ba, bb) = (Bytes::from(a.encode_to_vec()), Bytes::from(b.encode_to_vec()));
            let mut events = wire_events(&ba);
            events.extend(wire_events(&bb));
            let mut logs = WireLogs::default();
            let mut finder = Finder::default();
            for e in &events {
                logs.push(&finder.find(&e.raw).unwrap());
            }
            let mut out = Vec::new();
            logs.encode(&mut out);
            let both = ExportLogsServiceRequest {
                resource_logs: a.resource_logs.into_iter().chain(b.resource_logs).collect(),
            };
            prop_assert_eq!(
                ExportLogsServiceRequest::decode(out.as_slice()).unwrap().resource_logs,
                regrouped(&both)
            );
        }
    }

    /// Bytes prost accepts but would not write: a repeated `resource`
    /// (merged), unknown fields in a record (kept: a collector skips them
    /// as prost did). What goes out decodes to what came in.
    #[test]
    fn encodings_prost_would_not_write_go_back_as_decoded() {
        let one = export(&vec![(Some(1), vec![(Some(1), vec![1, 2])])]);
        let rl = &one.resource_logs[0];
        let scope = &rl.scope_logs[0];
        // An unknown field (99, a varint) inside the first record.
        let mut odd = scope.log_records[0].encode_to_vec();
        encode_key(99, WireType::Varint, &mut odd);
        encode_varint(7, &mut odd);
        let mut sl = Vec::new();
        field(1, &scope.scope.as_ref().unwrap().encode_to_vec(), &mut sl);
        field(2, &odd, &mut sl);
        field(2, &scope.log_records[1].encode_to_vec(), &mut sl);
        // A second `resource` field after the scope: prost merges it in.
        let extra = Resource {
            attributes: vec![kv("more", 1)],
            ..Default::default()
        };
        let mut rlb = Vec::new();
        field(1, &rl.resource.as_ref().unwrap().encode_to_vec(), &mut rlb);
        field(2, &sl, &mut rlb);
        field(1, &extra.encode_to_vec(), &mut rlb);
        let mut body = Vec::new();
        field(1, &rlb, &mut body);
        let body = Bytes::from(body);

        let decoded = ExportLogsServiceRequest::decode(body.as_ref()).unwrap();
        let attributes = &decoded.resource_logs[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes;
        assert_eq!(attributes.len(), 2, "prost merged the second resource");
        assert_eq!(sent(&body).resource_logs, regrouped(&decoded));
        // The unknown field went on with the record.
        let events = wire_events(&body);
        assert_eq!(
            Finder::default().find(&events[0].raw).unwrap().record(),
            odd.as_slice()
        );
    }
}
