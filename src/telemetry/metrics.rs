//! The Prometheus registry's metrics as one OTLP metrics export: the same
//! names `/metrics` shows (unit and `_total` suffixes included, so a
//! dashboard can use either), counters as cumulative monotonic sums,
//! gauges as gauges, histograms with their buckets, labels as attributes.

use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pm;

/// sluice's resource: `service.name`, its version and the host.
pub fn resource(service: &str) -> Resource {
    let mut attributes = vec![
        text("service.name", service),
        text("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        attributes.push(text("host.name", host.trim()));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The instrumentation scope of everything sluice reports about itself.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "sluice".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

pub(crate) fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One export of every family, stamped now; cumulative since `started`.
pub fn export(
    families: &[pm::MetricFamily],
    resource: &Resource,
    started: SystemTime,
) -> ExportMetricsServiceRequest {
    let (start, now) = (nanos(started), nanos(SystemTime::now()));
    let metrics = families
        .iter()
        .filter_map(|f| metric(f, start, now))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(f: &pm::MetricFamily, start: u64, now: u64) -> Option<Metric> {
    let kind = pm::MetricType::try_from(f.r#type).ok()?;
    let data = match kind {
        pm::MetricType::Counter => Data::Sum(Sum {
            data_points: f
                .metric
                .iter()
                .filter_map(|m| Some(number(m, start, now, m.counter.as_ref()?.value)))
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        pm::MetricType::Gauge => Data::Gauge(Gauge {
            data_points: f
                .metric
                .iter()
                .filter_map(|m| Some(number(m, start, now, m.gauge.as_ref()?.value)))
                .collect(),
        }),
        pm::MetricType::Histogram => Data::Histogram(Histogram {
            data_points: f
                .metric
                .iter()
                .filter_map(|m| Some(histogram(m, start, now, m.histogram.as_ref()?)))
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        // sluice registers none of the other kinds.
        _ => return None,
    };
    Some(Metric {
        // The full name, as `/metrics` shows it (unit, `_total`).
        name: f.name.clone(),
        description: f.help.clone(),
        unit: f.unit.clone(),
        data: Some(data),
        ..Default::default()
    })
}

fn attributes(labels: &[pm::LabelPair]) -> Vec<KeyValue> {
    labels.iter().map(|l| text(&l.name, &l.value)).collect()
}

fn number(m: &pm::Metric, start: u64, now: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes(&m.label),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// Prometheus buckets count cumulatively up to +Inf; OTLP's count each
/// bucket on its own, with the finite bounds as `explicit_bounds`.
fn histogram(m: &pm::Metric, start: u64, now: u64, h: &pm::Histogram) -> HistogramDataPoint {
    let mut below = 0;
    let mut bucket_counts: Vec<u64> = h
        .bucket
        .iter()
        .map(|b| {
            let own = b.cumulative_count.saturating_sub(below);
            below = b.cumulative_count;
            own
        })
        .collect();
    let explicit_bounds: Vec<f64> = h
        .bucket
        .iter()
        .map(|b| b.upper_bound)
        .filter(|b| b.is_finite())
        .collect();
    // The +Inf bucket is optional in Prometheus and required in OTLP.
    if bucket_counts.len() == explicit_bounds.len() {
        bucket_counts.push(h.sample_count.saturating_sub(below));
    }
    HistogramDataPoint {
        attributes: attributes(&m.label),
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.sample_count,
        sum: Some(h.sample_sum),
        bucket_counts,
        explicit_bounds,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge as PGauge;
    use prometheus_client::metrics::histogram::Histogram as PHistogram;
    use prometheus_client::registry::{Registry, Unit};

    #[test]
    fn counters_gauges_and_histograms_keep_their_names_values_and_labels() {
        let mut r = Registry::default();
        let sent = Family::<Vec<(String, String)>, Counter>::default();
        r.register("sluice_destination_sent_events", "sent", sent.clone());
        let depth = PGauge::<i64>::default();
        r.register("sluice_destination_queue_events", "depth", depth.clone());
        let took = PHistogram::new([0.1, 1.0]);
        r.register_with_unit(
            "sluice_request_duration",
            "took",
            Unit::Seconds,
            took.clone(),
        );
        sent.get_or_create(&vec![("destination".into(), "out".into())])
            .inc_by(7);
        depth.set(3);
        for v in [0.05, 0.5, 0.7, 5.0] {
            took.observe(v);
        }
        let families = prometheus_client::encoding::prometheus_protobuf::encode(&r).unwrap();
        let started = SystemTime::now();
        let req = export(&families, &resource("sluice"), started);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let by_name = |n: &str| {
            metrics
                .iter()
                .find(|m| m.name == n)
                .unwrap_or_else(|| panic!("no {n} in {metrics:#?}"))
        };
        let Some(Data::Sum(s)) = &by_name("sluice_destination_sent_events_total").data else {
            panic!("not a sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(7.0))
        );
        assert_eq!(
            s.data_points[0].attributes,
            vec![text("destination", "out")]
        );
        let Some(Data::Gauge(g)) = &by_name("sluice_destination_queue_events").data else {
            panic!("not a gauge")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
        let Some(Data::Histogram(h)) = &by_name("sluice_request_duration_seconds").data else {
            panic!("not a histogram")
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 4);
        assert_eq!(p.explicit_bounds, vec![0.1, 1.0]);
        assert_eq!(p.bucket_counts, vec![1, 2, 1]);
        assert_eq!(p.sum, Some(6.25));
        let text = {
            let mut t = String::new();
            prometheus_client::encoding::text::encode(&mut t, &r).unwrap();
            t
        };
        for m in metrics {
            assert!(text.contains(&m.name), "{} is not a /metrics name", m.name);
        }
    }
}
