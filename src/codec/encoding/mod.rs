//! How events become bytes.
//!
//! - `ndjson`: one JSON document per line. JSON events are written as they
//!   arrived (pass-through, no re-serialisation); text events become
//!   `{"message": "<text>"}`, so the output is always valid JSON.
//! - `json_array`: one JSON array per batch (HTTP only).
//! - `capnp`: one Cap'n Proto message per batch (HTTP only; `codec::capnp`).
//! - `raw`: each event's bytes as they arrived.
//! - `graphite`, `statsd`, `influx`: metric lines built from the event
//!   fields `metric:` names (see `metric.rs`): one per event, or one per
//!   element of an array value, newline-separated; events without a usable
//!   name or value are dropped with reason `unencodable`.
//!
//! Line encodings are framed by the destination: a newline between events
//! for HTTP bodies, files and TCP `framing: newline`, a length prefix for TCP
//! `octet_counting`, a datagram (or newline-separated datagram contents) for
//! UDP.

mod graphite;
mod influx;
mod metric;
mod statsd;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub use metric::{FieldSpec, FieldType, MetricConfig, StatsdKind, TimestampPolicy};

use super::buffer_pool::ENCODED;
use super::compression::Compression;
use crate::event::{Event, Format};
use metric::{MetricFields, MetricScratch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON document per line.
    #[default]
    Ndjson,
    /// One JSON array per batch.
    JsonArray,
    /// Each event's bytes as they arrived.
    Raw,
    /// Graphite plaintext protocol.
    Graphite,
    /// StatsD (with DogStatsD tags).
    Statsd,
    /// InfluxDB line protocol.
    Influx,
    /// One Cap'n Proto message per batch (`proto/sluice/v1/events.capnp`).
    Capnp,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Ndjson => "ndjson",
            Encoding::JsonArray => "json_array",
            Encoding::Raw => "raw",
            Encoding::Graphite => "graphite",
            Encoding::Statsd => "statsd",
            Encoding::Influx => "influx",
            Encoding::Capnp => "capnp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::JsonArray => "application/json",
            Encoding::Capnp => crate::codec::capnp::CONTENT_TYPE,
            _ => "text/plain; charset=utf-8",
        }
    }

    /// Whether it needs `metric:` settings.
    pub fn is_metric(self) -> bool {
        matches!(
            self,
            Encoding::Graphite | Encoding::Statsd | Encoding::Influx
        )
    }
}

/// A destination's encoding, metric fields and compression, ready to use.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    pub encoding: Encoding,
    pub compression: Compression,
    metric: Option<Arc<MetricFields>>,
}

/// A compressed, encoded request body.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
}

/// Per-batch working memory for `Encoder::encode_one`.
pub struct EncodeScratch {
    metric: Option<MetricScratch>,
}

impl Encoder {
    pub fn new(
        encoding: Encoding,
        compression: Compression,
        metric: Option<&MetricConfig>,
    ) -> Result<Encoder, String> {
        let metric = match (encoding.is_metric(), metric) {
            (true, Some(m)) => Some(Arc::new(MetricFields::new(m, encoding)?)),
            // Metric events, as aggregate and log_to_metric make them.
            (true, None) => Some(Arc::new(MetricFields::new(
                &MetricConfig::metric_events(encoding),
                encoding,
            )?)),
            (false, Some(_)) => {
                return Err(
                    "`metric` applies only to the graphite, statsd and influx encodings".into(),
                );
            }
            (false, None) => None,
        };
        Ok(Encoder {
            encoding,
            compression,
            metric,
        })
    }

    pub fn scratch(&self) -> EncodeScratch {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        EncodeScratch {
            metric: self.metric.as_ref().map(|m| m.scratch(now)),
        }
    }

    /// Append one event's encoding, without any separator. False when the
    /// event cannot be encoded (nothing is appended then).
    pub fn encode_one(&self, e: &Event, scratch: &mut EncodeScratch, out: &mut Vec<u8>) -> bool {
        match self.encoding {
            Encoding::Ndjson | Encoding::JsonArray => {
                write_json(e, out);
                true
            }
            Encoding::Raw => {
                out.extend_from_slice(&e.raw);
                true
            }
            Encoding::Graphite | Encoding::Statsd | Encoding::Influx => {
                match (&self.metric, scratch.metric.as_mut()) {
                    (Some(m), Some(s)) => m.encode(e, s, out),
                    _ => false,
                }
            }
            // A whole-batch encoding: no destination that frames events
            // one by one accepts it.
            Encoding::Capnp => false,
        }
    }

    /// Encode a batch as one body: newline-terminated lines, or a JSON
    /// array. Returns the indices of events that could not be encoded.
    pub fn encode_batch(&self, events: &[Event], out: &mut Vec<u8>) -> Vec<usize> {
        let total: usize = events.iter().map(|e| e.raw.len() + 1).sum();
        out.reserve(total + 2);
        if self.encoding == Encoding::Capnp {
            return crate::codec::capnp::encode(events, out);
        }
        let mut skipped = Vec::new();
        if self.encoding == Encoding::JsonArray {
            out.push(b'[');
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(e, out);
            }
            out.extend_from_slice(b"]\n");
            return skipped;
        }
        let mut scratch = self.scratch();
        for (i, e) in events.iter().enumerate() {
            if self.encode_one(e, &mut scratch, out) {
                out.push(b'\n');
            } else {
                skipped.push(i);
            }
        }
        skipped
    }

    /// A compressed request body, and the events that could not be encoded.
    pub fn body(&self, events: &[Event]) -> std::io::Result<(Body, Vec<usize>)> {
        let mut out = ENCODED.take(events.iter().map(|e| e.raw.len() + 1).sum());
        let skipped = self.encode_batch(events, &mut out);
        let bytes = self.compression.pack(out, &ENCODED)?;
        Ok((
            Body {
                bytes,
                content_type: self.encoding.content_type(),
                content_encoding: self.compression.content_encoding(),
            },
            skipped,
        ))
    }
}

impl Encoder {
    /// The events InfluxDB refused in a partial write, when its reason
    /// names them: a field type conflict names a measurement, a field and
    /// the type it was sent as; if exactly `dropped` of the request's
    /// points match, those are the refused ones (`true` per event with one).
    /// `None` when the reason does not say, or the count does not match:
    /// then which ones is not guessed.
    pub fn influx_refused(
        &self,
        events: &[Event],
        dropped: usize,
        reason: &str,
    ) -> Option<Vec<bool>> {
        let (field, measurement, given) = influx::conflict(reason)?;
        let m = self
            .metric
            .as_ref()
            .filter(|_| self.encoding == Encoding::Influx)?;
        let mut s = m.scratch(0);
        s.record = Some(Vec::new());
        let mut line = Vec::new();
        let mut points = 0;
        let refused = events
            .iter()
            .map(|e| {
                if let Some(r) = s.record.as_mut() {
                    r.clear();
                }
                line.clear();
                m.encode(e, &mut s, &mut line);
                let hits = s.record.iter().flatten().filter(|(meas, key, ty)| {
                    meas == measurement && key == field && ty.as_str() == given
                });
                let n = hits.count();
                points += n;
                n > 0
            })
            .collect();
        (points == dropped).then_some(refused)
    }
}

/// A partial write in an InfluxDB answer: (points dropped, reason).
pub use influx::partial_write as influx_partial_write;

#[inline]
fn write_json(e: &Event, out: &mut Vec<u8>) {
    match e.format {
        Format::Json => out.extend_from_slice(&e.raw),
        Format::Text => {
            out.extend_from_slice(b"{\"message\":");
            let text = String::from_utf8_lossy(&e.raw);
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, text.as_ref());
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encoder(encoding: Encoding) -> Encoder {
        Encoder::new(encoding, Compression::None, None).unwrap()
    }

    #[test]
    fn json_and_raw() {
        let evs = vec![
            Event::json(Bytes::from_static(br#"{"a":1}"#)),
            Event::text(Bytes::from_static(b"plain \"text\"\t")),
        ];
        let mut out = Vec::new();
        encoder(Encoding::Ndjson).encode_batch(&evs, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":1}\n{\"message\":\"plain \\\"text\\\"\\t\"}\n"
        );
        let mut out = Vec::new();
        encoder(Encoding::JsonArray).encode_batch(&evs, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[1]["message"], "plain \"text\"\t");
        let mut out = Vec::new();
        encoder(Encoding::Raw).encode_batch(&evs, &mut out);
        assert_eq!(out, b"{\"a\":1}\nplain \"text\"\t\n");
    }

    fn metric_encoder(encoding: Encoding) -> Encoder {
        let cfg = MetricConfig {
            name: "metric".into(),
            value: Some("value".into()),
            timestamp: (encoding != Encoding::Statsd).then(|| "ts".into()),
            tags: vec!["region".into(), "host".into(), "empty".into()],
            kind: StatsdKind::Counter,
            prefix: Some("app.".into()),
            ..MetricConfig::default()
        };
        Encoder::new(encoding, Compression::None, Some(&cfg)).unwrap()
    }

    #[test]
    fn metric_lines_and_unencodable_events() {
        let evs = vec![
            Event::json(Bytes::from_static(
                br#"{"metric":"req count","value":3,"ts":1700000000,"host":"web,1","region":"eu west","empty":""}"#,
            )),
            Event::json(Bytes::from_static(br#"{"metric":"no value"}"#)),
            Event::json(Bytes::from_static(br#"{"metric":"lat","value":"2.5","ts":1700000001}"#)),
        ];
        let cases = [
            (
                Encoding::Graphite,
                "app.req_count;host=web,1;region=eu_west 3 1700000000\napp.lat 2.5 1700000001\n",
            ),
            (
                Encoding::Statsd,
                "app.req_count:3|c|#host:web_1,region:eu_west\napp.lat:2.5|c\n",
            ),
            (
                Encoding::Influx,
                "app.req\\ count,host=web\\,1,region=eu\\ west value=3i 1700000000000000000\napp.lat value=2.5 1700000001000000000\n",
            ),
        ];
        for (encoding, want) in cases {
            let mut out = Vec::new();
            let skipped = metric_encoder(encoding).encode_batch(&evs, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{encoding:?}");
            assert_eq!(skipped, vec![1]);
        }
    }

    #[test]
    fn metric_settings_must_match_the_encoding() {
        // No settings: metric events (`MetricConfig::metric_events`).
        assert!(Encoder::new(Encoding::Graphite, Compression::None, None).is_ok());
        let cfg = MetricConfig {
            name: "a".into(),
            value: Some("b".into()),
            ..MetricConfig::default()
        };
        assert!(Encoder::new(Encoding::Ndjson, Compression::None, Some(&cfg)).is_err());
        let bad = MetricConfig {
            name: "a b".into(),
            ..cfg
        };
        assert!(Encoder::new(Encoding::Statsd, Compression::None, Some(&bad)).is_err());
    }
}
