//! Counting an export's records on the wire, before it is decoded. An
//! empty log record is two bytes of protobuf (three of JSON, `{},`) and a
//! few hundred in memory, so a 4 MiB export of empty records would cost
//! ~400 MB decoded; counted first, it is refused (`max_events`) having cost
//! nothing. The walks follow only the fields on a record's path and
//! allocate nothing.

use prost::encoding::{WireType, decode_varint};

/// Where one signal's records sit: at each level, the field numbers
/// (embedded messages) to descend into; the last level's are counted.
pub type RecordPath = &'static [&'static [u32]];

/// `ExportLogsServiceRequest` → `ResourceLogs.scope_logs` →
/// `ScopeLogs.log_records`.
pub const LOG_RECORDS: RecordPath = &[&[1], &[2], &[2]];
/// `ExportTraceServiceRequest` → `ResourceSpans.scope_spans` →
/// `ScopeSpans.spans`.
pub const SPANS: RecordPath = &[&[1], &[2], &[2]];
/// `ExportMetricsServiceRequest` → `ResourceMetrics.scope_metrics` →
/// `ScopeMetrics.metrics` → the metric's gauge, sum, histogram,
/// exponential histogram or summary → its `data_points`.
pub const DATA_POINTS: RecordPath = &[&[1], &[2], &[2], &[5, 7, 9, 10, 11], &[1]];

/// Why bytes are not a protobuf message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated or malformed protobuf ({0})")]
    Malformed(&'static str),
}

/// The records at `path` in `buf`, counting stops past `limit` (the answer
/// is then `limit + 1`), so a refused export costs no more than needed.
pub fn count(buf: &[u8], path: RecordPath, limit: usize) -> Result<usize, WireError> {
    walk(buf, path, limit).map(|n| n.min(limit.saturating_add(1)))
}

/// The records at `path` in `buf`; it may stop early once past `budget`.
fn walk(mut buf: &[u8], path: RecordPath, budget: usize) -> Result<usize, WireError> {
    let Some((fields, rest)) = path.split_first() else {
        return Ok(0);
    };
    // Several fields at one level are a oneof (a metric's data): prost
    // keeps the last variant seen, merging repeats of the same one.
    let oneof = fields.len() > 1;
    let mut variant = None;
    let mut n = 0usize;
    while !buf.is_empty() {
        let (field, value) = match next_field(&mut buf, 0)? {
            Field::Delimited(field, value) => (field, value),
            Field::Skipped => continue,
            Field::EndGroup(_) => return Err(WireError::Malformed("end of a group not begun")),
        };
        if !fields.contains(&field) {
            continue;
        }
        if oneof && variant != Some(field) {
            variant = Some(field);
            n = 0;
        }
        n = n.saturating_add(if rest.is_empty() {
            1
        } else {
            walk(value, rest, budget.saturating_sub(n))?
        });
        // A oneof's count may yet be replaced by a later variant's.
        if n > budget && !oneof {
            return Ok(n);
        }
    }
    Ok(n)
}

/// One field, read off the front of a message.
enum Field<'a> {
    /// Length-delimited (an embedded message, bytes, a string): its bytes.
    Delimited(u32, &'a [u8]),
    /// A scalar, or a whole group: passed over.
    Skipped,
    /// The end tag of group `.0`.
    EndGroup(u32),
}

/// The field at the front of `buf`, which moves past it; `depth`: how many
/// groups enclose it.
fn next_field<'a>(buf: &mut &'a [u8], depth: u32) -> Result<Field<'a>, WireError> {
    let key = decode_varint(buf).map_err(|_| WireError::Malformed("field key"))?;
    let field = u32::try_from(key >> 3).map_err(|_| WireError::Malformed("field number"))?;
    let wire = WireType::try_from(key & 7).map_err(|_| WireError::Malformed("wire type"))?;
    let len = match wire {
        WireType::Varint => {
            decode_varint(buf).map_err(|_| WireError::Malformed("varint"))?;
            return Ok(Field::Skipped);
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => {
            let len = decode_varint(buf).map_err(|_| WireError::Malformed("length"))?;
            usize::try_from(len).map_err(|_| WireError::Malformed("length"))?
        }
        // No OTLP field is a group, but prost skips unknown ones.
        WireType::StartGroup => {
            skip_group(buf, field, depth)?;
            return Ok(Field::Skipped);
        }
        WireType::EndGroup => return Ok(Field::EndGroup(field)),
    };
    if len > buf.len() {
        return Err(WireError::Malformed("field past the end"));
    }
    let (value, after) = buf.split_at(len);
    *buf = after;
    Ok(match wire {
        WireType::LengthDelimited => Field::Delimited(field, value),
        _ => Field::Skipped,
    })
}

/// Move `buf` past the end tag of group `field`, which began just before.
/// Nested groups count against prost's recursion limit, as in prost.
fn skip_group(buf: &mut &[u8], field: u32, depth: u32) -> Result<(), WireError> {
    if depth >= 100 {
        return Err(WireError::Malformed("groups nested too deep"));
    }
    loop {
        match next_field(buf, depth + 1)? {
            Field::EndGroup(f) if f == field => return Ok(()),
            Field::EndGroup(_) => return Err(WireError::Malformed("mismatched end of a group")),
            Field::Delimited(..) | Field::Skipped => {}
        }
    }
}

/// The same paths in OTLP/JSON: at each level, the keys to descend into
/// (lowerCamelCase and the .proto's names); an object or an array of them.
pub type JsonPath = &'static [&'static [&'static str]];

pub const JSON_LOG_RECORDS: JsonPath = &[
    &["resourceLogs", "resource_logs"],
    &["scopeLogs", "scope_logs"],
    &["logRecords", "log_records"],
];
pub const JSON_SPANS: JsonPath = &[
    &["resourceSpans", "resource_spans"],
    &["scopeSpans", "scope_spans"],
    &["spans"],
];
pub const JSON_DATA_POINTS: JsonPath = &[
    &["resourceMetrics", "resource_metrics"],
    &["scopeMetrics", "scope_metrics"],
    &["metrics"],
    &[
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "exponential_histogram",
        "summary",
    ],
    &["dataPoints", "data_points"],
];

/// The records at `path` in a JSON body (serde walks it, keeping nothing);
/// past `limit`, `limit + 1`. Not JSON: an error.
pub fn count_json(body: &[u8], path: JsonPath, limit: usize) -> Result<usize, String> {
    use serde::de::DeserializeSeed as _;
    let mut n = 0;
    let mut de = serde_json::Deserializer::from_slice(body);
    Level {
        path,
        limit,
        n: &mut n,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    Ok(n.min(limit.saturating_add(1)))
}

/// One value on the path: an object holding the next keys, or an array of
/// such objects; with no keys left, the value is a record.
struct Level<'a> {
    path: JsonPath,
    limit: usize,
    n: &'a mut usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            *self.n += 1;
            return <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d).map(|_| ());
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an OTLP/JSON object or array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (keys, rest): (&[&str], JsonPath) =
            self.path.split_first().map_or((&[], &[]), |(k, r)| (*k, r));
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if keys.contains(&key.as_ref()) && *self.n <= self.limit {
                map.next_value_seed(Items {
                    path: rest,
                    limit: self.limit,
                    n: &mut *self.n,
                })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Level {
                path: self.path,
                limit: self.limit,
                n: &mut *self.n,
            })?
            .is_some()
        {}
        Ok(())
    }

    // Anything else where an object belongs is the decoder's to refuse.
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// The value under a key on the path: one item (an object, as a metric's
/// `gauge`) or an array of items, each a [`Level`] below.
struct Items<'a> {
    path: JsonPath,
    limit: usize,
    n: &'a mut usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Items<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            // The records' own array (or a lone record).
            return d.deserialize_any(Records { n: self.n });
        }
        Level {
            path: self.path,
            limit: self.limit,
            n: self.n,
        }
        .deserialize(d)
    }
}

/// The array of records: each element counted, none kept.
struct Records<'a> {
    n: &'a mut usize,
}

impl<'de> serde::de::Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            *self.n += 1;
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, metric::Data,
    };
    use proptest::prelude::*;
    use prost::Message as _;

    fn logs(shape: &[Vec<usize>]) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: shape
                .iter()
                .map(|scopes| ResourceLogs {
                    scope_logs: scopes
                        .iter()
                        .map(|&records| ScopeLogs {
                            log_records: (0..records)
                                .map(|i| LogRecord {
                                    time_unix_nano: i as u64,
                                    severity_text: "INFO".into(),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    proptest! {
        /// The wire count equals the decoded count, for any shape.
        #[test]
        fn log_records_match_decoded(shape in prop::collection::vec(prop::collection::vec(0usize..20, 0..4), 0..4)) {
            let export = logs(&shape);
            let want: usize = shape.iter().flatten().sum();
            let bytes = export.encode_to_vec();
            prop_assert_eq!(count(&bytes, LOG_RECORDS, usize::MAX), Ok(want));
            prop_assert_eq!(count(&bytes, LOG_RECORDS, 3), Ok(want.min(4)));
        }

        /// The same in OTLP/JSON, camelCase as sluice writes it.
        #[test]
        fn json_log_records_match_decoded(shape in prop::collection::vec(prop::collection::vec(0usize..20, 0..4), 0..4)) {
            let body = crate::otlp::json::encode_logs(&logs(&shape));
            let want: usize = shape.iter().flatten().sum();
            prop_assert_eq!(count_json(&body, JSON_LOG_RECORDS, usize::MAX), Ok(want));
            prop_assert_eq!(count_json(&body, JSON_LOG_RECORDS, 3), Ok(want.min(4)));
        }

        /// Any bytes: an answer or an error, never a panic; and whatever
        /// prost decodes, the wire count agrees with.
        #[test]
        fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let counted = count(&bytes, LOG_RECORDS, usize::MAX);
            if let Ok(export) = ExportLogsServiceRequest::decode(bytes.as_slice()) {
                let decoded: usize = export.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
                prop_assert_eq!(counted, Ok(decoded));
            }
        }
    }

    #[test]
    fn data_points_of_every_metric_kind() {
        let gauge = Metric {
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); 3],
            })),
            ..Default::default()
        };
        let histogram = Metric {
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint::default(); 2],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        };
        let export = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge, histogram],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(
            count(&export.encode_to_vec(), DATA_POINTS, usize::MAX),
            Ok(5)
        );
    }

    #[test]
    fn two_million_empty_records_stop_at_the_limit() {
        // ResourceLogs { ScopeLogs { 2 M × empty LogRecord } }: `12 00`.
        let records = 2_000_000usize;
        let mut scope = Vec::with_capacity(records * 2);
        for _ in 0..records {
            scope.extend_from_slice(&[0x12, 0x00]);
        }
        let wrap = |field: u8, inner: Vec<u8>| {
            let mut out = vec![(field << 3) | 2];
            prost::encoding::encode_varint(inner.len() as u64, &mut out);
            out.extend_from_slice(&inner);
            out
        };
        let resource = wrap(2, scope);
        let export = wrap(1, resource);
        assert_eq!(count(&export, LOG_RECORDS, 100_000), Ok(100_001));
        assert_eq!(count(&export, LOG_RECORDS, usize::MAX), Ok(records));
    }

    #[test]
    fn json_data_points_and_spans_in_either_spelling() {
        let metrics = br#"{"resource_metrics":[{"scopeMetrics":[{"metrics":[
            {"name":"a","gauge":{"dataPoints":[{},{"asInt":"1"}]}},
            {"name":"b","sum":{"data_points":[{}],"isMonotonic":true}},
            {"name":"c","summary":{"dataPoints":[]}}]}]}]}"#;
        assert_eq!(count_json(metrics, JSON_DATA_POINTS, 100), Ok(3));
        let spans =
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{},{}]}]},{"scopeSpans":[]}]}"#;
        assert_eq!(count_json(spans, JSON_SPANS, 100), Ok(3));
        assert_eq!(count_json(b"{}", JSON_SPANS, 100), Ok(0));
        assert!(count_json(b"{\"resourceSpans\":[", JSON_SPANS, 100).is_err());
        // The wrong shape is left for the decoder to refuse.
        assert_eq!(count_json(b"{\"resourceSpans\":7}", JSON_SPANS, 100), Ok(0));
    }

    /// A metric with two kinds of data keeps the last (prost's oneof), and
    /// two of the same kind merge.
    #[test]
    fn a_metric_counts_its_last_kind_of_data() {
        // Metric { gauge { 2 points }, sum { 1 point } }: the sum's 1.
        let gauge = [0x2a, 0x04, 0x0a, 0x00, 0x0a, 0x00];
        let sum = [0x3a, 0x02, 0x0a, 0x00];
        let metric = |data: &[u8]| {
            let mut m = vec![0x12, data.len() as u8];
            m.extend_from_slice(data);
            let mut scope = vec![0x12, m.len() as u8];
            scope.extend_from_slice(&m);
            let mut resource = vec![0x0a, scope.len() as u8];
            resource.extend_from_slice(&scope);
            resource
        };
        let both = metric(&[&gauge[..], &sum[..]].concat());
        let decoded = ExportMetricsServiceRequest::decode(both.as_slice()).expect("decodes");
        assert!(matches!(
            decoded.resource_metrics[0].scope_metrics[0].metrics[0].data,
            Some(Data::Sum(_))
        ));
        assert_eq!(count(&both, DATA_POINTS, usize::MAX), Ok(1));
        let twice = metric(&[&gauge[..], &gauge[..]].concat());
        assert_eq!(count(&twice, DATA_POINTS, usize::MAX), Ok(4));
    }

    #[test]
    fn truncated_is_an_error() {
        assert!(count(&[0x0a, 0x05, 0x12], LOG_RECORDS, 10).is_err());
        assert!(count(&[0x0c], LOG_RECORDS, 10).is_err());
        // An unknown group is skipped, as prost skips it.
        assert_eq!(count(&[0x33, 0x34], LOG_RECORDS, 10), Ok(0));
        assert!(count(&[0x0b], LOG_RECORDS, 10).is_err());
    }
}
