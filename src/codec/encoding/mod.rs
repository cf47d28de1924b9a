//! How events become bytes.
//!
//! - `ndjson`: one JSON document per line. JSON events are written as they
//!   arrived (pass-through, no re-serialisation); text events become
//!   `{"message": "<text>"}`, so the output is always valid JSON.
//! - `json_array`: one JSON array per batch (HTTP only).
//! - `raw`: each event's bytes as they arrived.
//! - `graphite`, `statsd`, `influx`: one metric line per event, built from
//!   the event fields `metric:` names (see `metric.rs`); events without a
//!   usable name or value are dropped with reason `unencodable`.
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
use std::time::SystemTime;

use serde::Deserialize;

pub use metric::{MetricConfig, StatsdKind};

use super::compression::Compression;
use crate::codec::fields::FieldScratch;
use crate::event::{Event, Format};
use metric::MetricFields;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
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
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::JsonArray => "application/json",
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
    fields: Option<FieldScratch>,
    now: SystemTime,
}

impl Encoder {
    pub fn new(
        encoding: Encoding,
        compression: Compression,
        metric: Option<&MetricConfig>,
    ) -> Result<Encoder, String> {
        let metric = match (encoding.is_metric(), metric) {
            (true, Some(m)) => Some(Arc::new(MetricFields::new(m)?)),
            (true, None) => {
                return Err(format!(
                    "encoding `{}` needs `metric: {{name, value}}` naming the event fields to use",
                    encoding.as_str()
                ));
            }
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
        EncodeScratch {
            fields: self.metric.as_ref().map(|m| m.scratch()),
            now: SystemTime::now(),
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
                let (Some(m), Some(fields)) = (&self.metric, scratch.fields.as_mut()) else {
                    return false;
                };
                let Some(metric) = m.extract(e, fields, scratch.now) else {
                    return false;
                };
                match self.encoding {
                    Encoding::Graphite => graphite::write(&metric, &m.prefix, out),
                    Encoding::Statsd => statsd::write(&metric, &m.prefix, m.kind, out),
                    _ => influx::write(&metric, &m.prefix, &m.field, out),
                }
                true
            }
        }
    }

    /// Encode a batch as one body: newline-terminated lines, or a JSON
    /// array. Returns the indices of events that could not be encoded.
    pub fn encode_batch(&self, events: &[Event], out: &mut Vec<u8>) -> Vec<usize> {
        let total: usize = events.iter().map(|e| e.raw.len() + 1).sum();
        out.reserve(total + 2);
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
        let mut out = Vec::new();
        let skipped = self.encode_batch(events, &mut out);
        let out = self.compression.compress(out)?;
        Ok((
            Body {
                bytes: out.into(),
                content_type: self.encoding.content_type(),
                content_encoding: self.compression.content_encoding(),
            },
            skipped,
        ))
    }
}

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
            value: "value".into(),
            timestamp: Some("ts".into()),
            tags: vec!["host".into(), "region".into()],
            kind: StatsdKind::Counter,
            field: None,
            prefix: Some("app.".into()),
        };
        Encoder::new(encoding, Compression::None, Some(&cfg)).unwrap()
    }

    #[test]
    fn metric_lines_and_unencodable_events() {
        let evs = vec![
            Event::json(Bytes::from_static(
                br#"{"metric":"req count","value":3,"ts":1700000000,"host":"web,1","region":"eu west"}"#,
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
                "app.req\\ count,host=web\\,1,region=eu\\ west value=3 1700000000000000000\napp.lat value=2.5 1700000001000000000\n",
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
        assert!(Encoder::new(Encoding::Graphite, Compression::None, None).is_err());
        let cfg = MetricConfig {
            name: "a".into(),
            value: "b".into(),
            timestamp: None,
            tags: vec![],
            kind: StatsdKind::Gauge,
            field: None,
            prefix: None,
        };
        assert!(Encoder::new(Encoding::Ndjson, Compression::None, Some(&cfg)).is_err());
        let bad = MetricConfig {
            name: "a b".into(),
            ..cfg
        };
        assert!(Encoder::new(Encoding::Statsd, Compression::None, Some(&bad)).is_err());
    }
}
