//! Counting an export's records on the protobuf wire, before prost builds
//! it. An empty log record is two bytes on the wire and a few hundred in
//! memory, so a 4 MiB export of empty records would cost ~400 MB decoded;
//! counted first, it is refused (`max_events`) having cost nothing. The
//! walk follows only the fields on a record's path and allocates nothing.

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
    let mut n = 0;
    walk(buf, path, limit, &mut n)?;
    Ok(n)
}

fn walk(mut buf: &[u8], path: RecordPath, limit: usize, n: &mut usize) -> Result<(), WireError> {
    let Some((fields, rest)) = path.split_first() else {
        return Ok(());
    };
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).map_err(|_| WireError::Malformed("field key"))?;
        let field = u32::try_from(key >> 3).map_err(|_| WireError::Malformed("field number"))?;
        let wire = WireType::try_from(key & 7).map_err(|_| WireError::Malformed("wire type"))?;
        let len = match wire {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(|_| WireError::Malformed("varint"))?;
                continue;
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|_| WireError::Malformed("length"))?;
                usize::try_from(len).map_err(|_| WireError::Malformed("length"))?
            }
            // Groups are not in any OTLP message.
            WireType::StartGroup | WireType::EndGroup => {
                return Err(WireError::Malformed("group"));
            }
        };
        if len > buf.len() {
            return Err(WireError::Malformed("field past the end"));
        }
        let (value, after) = buf.split_at(len);
        buf = after;
        if wire == WireType::LengthDelimited && fields.contains(&field) {
            if rest.is_empty() {
                *n += 1;
                if *n > limit {
                    return Ok(());
                }
            } else {
                walk(value, rest, limit, n)?;
                if *n > limit {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
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
    fn truncated_is_an_error() {
        assert!(count(&[0x0a, 0x05, 0x12], LOG_RECORDS, 10).is_err());
        assert!(count(&[0x0b], LOG_RECORDS, 10).is_err());
    }
}
