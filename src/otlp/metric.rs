//! Metric events (`crate::metric_event`, what `aggregate` and
//! `log_to_metric` make) as OTLP metrics: a `counter` is a delta,
//! monotonic Sum over its `interval_ms`; every other type a Gauge. Tags
//! become the point's attributes; the point's time is the event's
//! `timestamp`, or now.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};

use crate::metric_event::{MetricEvent, MetricKind};

/// The metric event as one resource's one metric (no resource attributes:
/// the destination merges every such event into one group).
pub fn resource_metrics(m: MetricEvent, now_ns: u64) -> Option<ResourceMetrics> {
    let time = m
        .timestamp
        .as_deref()
        .and_then(crate::codec::time::read_text)
        .and_then(|ns| u64::try_from(ns).ok())
        .unwrap_or(now_ns);
    let value = match (m.value.as_i64(), m.value_f64()) {
        (Some(i), _) => number_data_point::Value::AsInt(i),
        (None, Some(f)) => number_data_point::Value::AsDouble(f),
        (None, None) => return None,
    };
    let attributes = m
        .tags
        .into_iter()
        .map(|(key, v)| KeyValue {
            key,
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v)),
            }),
            ..Default::default()
        })
        .collect();
    let start = m
        .interval_ms
        .map_or(0, |ms| time.saturating_sub(ms.saturating_mul(1_000_000)));
    let point = NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    };
    let data = match m.kind {
        MetricKind::Counter => metric::Data::Sum(Sum {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        }),
        _ => metric::Data::Gauge(Gauge {
            data_points: vec![point],
        }),
    };
    Some(ResourceMetrics {
        resource: None,
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "sluice".into(),
                ..Default::default()
            }),
            metrics: vec![Metric {
                name: m.name,
                data: Some(data),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    })
}
