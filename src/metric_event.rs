//! Metric events: one series' point as one JSON event, what `aggregate` and
//! `log_to_metric` make and what the graphite, statsd and influx encodings
//! (with no `metric:` settings) and the OTLP destination write as metrics.
//!
//! `{"name":"requests","type":"counter","value":42,"timestamp":"2026-12-06T08:00:10.000Z","interval_ms":10000,"tags":{"host":"a"}}`
//!
//! One point per event, as Vector's metric events and StatsD lines are: every
//! encoding then writes one line per event, and OTLP one data point. `type`
//! is a StatsD type by name (`counter` is a delta over `interval_ms`; the rest
//! are gauges of the moment). Tags are text. Recognised only by this exact
//! shape (no other keys), so a log event that happens to have a `name` is
//! never mistaken for a metric.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The kinds of point, named as StatsD's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A count over the interval (a delta).
    Counter,
    /// A value at the moment.
    Gauge,
    Timer,
    Histogram,
    Set,
    Distribution,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Timer => "timer",
            MetricKind::Histogram => "histogram",
            MetricKind::Set => "set",
            MetricKind::Distribution => "distribution",
        }
    }

    /// By name (`counter`) or StatsD symbol (`c`).
    pub fn parse(s: &[u8]) -> Option<MetricKind> {
        Some(match s {
            b"counter" | b"c" => MetricKind::Counter,
            b"gauge" | b"g" => MetricKind::Gauge,
            b"timer" | b"ms" => MetricKind::Timer,
            b"histogram" | b"h" => MetricKind::Histogram,
            b"set" | b"s" => MetricKind::Set,
            b"distribution" | b"d" => MetricKind::Distribution,
            _ => return None,
        })
    }
}

/// One point. `value` keeps the number as written: a count is an integer,
/// a sum or an average a float, so InfluxDB sees one type per field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricEvent {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricKind,
    pub value: serde_json::Number,
    /// RFC 3339; absent: the time it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The span a counter counts over (aggregate's window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The fraction of points the sender sent (StatsD's `@0.1`) of a timer,
    /// histogram or distribution: each stands for `1 / sample_rate` points.
    /// (A counter's value is already scaled up by it.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
}

impl MetricEvent {
    /// The event, if `raw` is one (cheaply refused when it does not even
    /// start as one).
    pub fn parse(raw: &[u8]) -> Option<MetricEvent> {
        if !raw.starts_with(br#"{"name":"#) {
            return None;
        }
        serde_json::from_slice(raw).ok()
    }

    pub fn to_event(&self) -> Event {
        // A struct of strings, numbers and a string map always serialises.
        let raw = serde_json::to_vec(self).unwrap_or_default();
        Event::json(Bytes::from(raw))
    }

    /// The value as a float (OTLP's double points).
    pub fn value_f64(&self) -> Option<f64> {
        self.value.as_f64().filter(|v| v.is_finite())
    }
}

/// A float as a JSON number, always written with a fraction or exponent
/// (`42.0`), so its type never changes between windows; `None` for NaN and
/// infinities, which JSON cannot hold.
pub fn float(v: f64) -> Option<serde_json::Number> {
    serde_json::Number::from_f64(v)
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_event_goes_out_and_comes_back() {
        let m = MetricEvent {
            name: "requests".into(),
            kind: MetricKind::Counter,
            value: 42.into(),
            timestamp: Some(rfc3339_ms(1_765_000_010_000)),
            interval_ms: Some(10_000),
            tags: [("host".to_string(), "a".to_string())].into(),
            sample_rate: None,
        };
        let e = m.to_event();
        assert_eq!(
            std::str::from_utf8(&e.raw).unwrap(),
            r#"{"name":"requests","type":"counter","value":42,"timestamp":"2025-12-06T05:46:50.000Z","interval_ms":10000,"tags":{"host":"a"}}"#
        );
        assert_eq!(MetricEvent::parse(&e.raw), Some(m));
        let avg = float(3.0).unwrap();
        assert_eq!(avg.to_string(), "3.0", "a float stays a float");
        // Not a metric: another key, another order, another type.
        for not in [
            r#"{"name":"bob","type":"counter","value":1,"message":"hi"}"#,
            r#"{"type":"counter","name":"a","value":1}"#,
            r#"{"name":"a","type":"meter","value":1}"#,
            r#"{"name":"a","type":"gauge","value":"1"}"#,
        ] {
            assert_eq!(MetricEvent::parse(not.as_bytes()), None, "{not}");
        }
    }
}
