//! Where the metric encodings (graphite, statsd, influx) find a metric in an
//! event: `metric: {name, value, timestamp, tags}` name event fields, read
//! through the shared `codec::FieldReader`.
//!
//! An event without a usable name or value is not encodable and is dropped
//! with reason `unencodable`. The timestamp is optional (now, if absent); a
//! number is read as seconds, milliseconds, microseconds or nanoseconds by its
//! magnitude, a string as RFC 3339.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::codec::fields::{Field, FieldReader, FieldScratch};
use crate::event::{Event, Format};
use crate::expr::{number, parse_path, scalar_text};

/// StatsD metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum StatsdKind {
    #[serde(rename = "c")]
    Counter,
    #[default]
    #[serde(rename = "g")]
    Gauge,
    #[serde(rename = "ms")]
    Timer,
    #[serde(rename = "h")]
    Histogram,
    #[serde(rename = "s")]
    Set,
    #[serde(rename = "d")]
    Distribution,
}

impl StatsdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatsdKind::Counter => "c",
            StatsdKind::Gauge => "g",
            StatsdKind::Timer => "ms",
            StatsdKind::Histogram => "h",
            StatsdKind::Set => "s",
            StatsdKind::Distribution => "d",
        }
    }
}

/// `metric:` settings of a destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// Field holding the metric name.
    pub name: String,
    /// Field holding the value: a number, a numeric string, or a boolean.
    pub value: String,
    /// Field holding the time. Default: the time the batch is encoded.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Fields written as tags, each keyed by its path.
    #[serde(default)]
    pub tags: Vec<String>,
    /// StatsD type: `c`, `g` (default), `ms`, `h`, `s`, `d`.
    #[serde(default, rename = "type")]
    pub kind: StatsdKind,
    /// Influx field key. Default `value`.
    #[serde(default)]
    pub field: Option<String>,
    /// Prepended to every metric name (`app.`).
    #[serde(default)]
    pub prefix: Option<String>,
}

impl MetricConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (what, path) in [("metric.name", &self.name), ("metric.value", &self.value)]
            .into_iter()
            .chain(self.timestamp.iter().map(|t| ("metric.timestamp", t)))
            .chain(self.tags.iter().map(|t| ("metric.tags", t)))
        {
            parse_path(path).map_err(|e| format!("{what}: `{path}`: {}", e.message))?;
        }
        Ok(())
    }
}

/// A compiled `MetricConfig`.
#[derive(Debug)]
pub struct MetricFields {
    fields: FieldReader,
    name: Field,
    value: Field,
    timestamp: Option<Field>,
    tags: Vec<(String, Field)>,
    pub kind: StatsdKind,
    pub field: String,
    pub prefix: String,
}

/// One event's metric, borrowing from the event.
pub struct Metric<'a> {
    pub name: Cow<'a, [u8]>,
    /// The value as written in the event when it is a plain JSON number,
    /// otherwise formatted.
    pub value: Cow<'a, str>,
    pub time: SystemTime,
    /// Whether the event carried its own time.
    pub explicit_time: bool,
    pub tags: Vec<(&'a str, Cow<'a, [u8]>)>,
}

impl MetricFields {
    pub fn new(cfg: &MetricConfig) -> Result<MetricFields, String> {
        cfg.validate()?;
        let mut fields = FieldReader::new();
        let mut slot = |p: &str| fields.add(p);
        let name = slot(&cfg.name)?;
        let value = slot(&cfg.value)?;
        let timestamp = cfg.timestamp.as_deref().map(&mut slot).transpose()?;
        let tags = cfg
            .tags
            .iter()
            .map(|t| Ok((t.clone(), slot(t)?)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(MetricFields {
            fields,
            name,
            value,
            timestamp,
            tags,
            kind: cfg.kind,
            field: cfg.field.clone().unwrap_or_else(|| "value".into()),
            prefix: cfg.prefix.clone().unwrap_or_default(),
        })
    }

    pub fn scratch(&self) -> FieldScratch {
        self.fields.scratch()
    }

    /// The metric in `event`, or `None` when it has no usable name or value.
    pub fn extract<'a>(
        &'a self,
        event: &'a Event,
        scratch: &mut FieldScratch,
        now: SystemTime,
    ) -> Option<Metric<'a>> {
        if event.format != Format::Json {
            return None;
        }
        self.fields.locate(event, scratch);
        let get = |f: Field| self.fields.raw(event, scratch, f);
        let name = scalar_text(get(self.name)?).filter(|n| !n.is_empty())?;
        let value_raw = get(self.value)?;
        let value: Cow<'a, str> = match value_raw.first() {
            Some(b'-' | b'0'..=b'9') if number(value_raw).is_some() => {
                Cow::Borrowed(std::str::from_utf8(value_raw).ok()?)
            }
            _ => Cow::Owned(format_number(number(value_raw)?)),
        };
        let (time, explicit_time) = match self.timestamp.and_then(get).and_then(parse_time) {
            Some(t) => (t, true),
            None => (now, false),
        };
        let tags = self
            .tags
            .iter()
            .filter_map(|(key, slot)| Some((key.as_str(), scalar_text(get(*slot)?)?)))
            .collect();
        Some(Metric {
            name,
            value,
            time,
            explicit_time,
            tags,
        })
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// A JSON timestamp: epoch seconds, ms, µs or ns by magnitude, or RFC 3339.
fn parse_time(raw: &[u8]) -> Option<SystemTime> {
    if raw.first() == Some(&b'"') {
        let text = scalar_text(raw)?;
        let text = std::str::from_utf8(&text).ok()?;
        if let Ok(t) = humantime::parse_rfc3339_weak(text.trim()) {
            return Some(t);
        }
        return epoch(text.trim().parse().ok()?);
    }
    epoch(number(raw)?)
}

fn epoch(n: f64) -> Option<SystemTime> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = if n < 1e11 {
        n
    } else if n < 1e14 {
        n / 1e3
    } else if n < 1e17 {
        n / 1e6
    } else {
        n / 1e9
    };
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fields(tags: &[&str]) -> MetricFields {
        MetricFields::new(&MetricConfig {
            name: "name".into(),
            value: "v".into(),
            timestamp: Some("ts".into()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            kind: StatsdKind::Gauge,
            field: None,
            prefix: None,
        })
        .unwrap()
    }

    #[test]
    fn extracts_name_value_time_and_tags() {
        let f = fields(&["host", "k.region"]);
        let mut s = f.scratch();
        let e = Event::json(Bytes::from_static(
            br#"{"name":"cpu.load","v":1.5,"ts":1700000000,"host":"web 1","k":{"region":"eu"}}"#,
        ));
        let m = f.extract(&e, &mut s, UNIX_EPOCH).unwrap();
        assert_eq!(&*m.name, b"cpu.load");
        assert_eq!(m.value, "1.5");
        assert_eq!(m.time, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(m.tags.len(), 2);
        assert_eq!((m.tags[1].0, &*m.tags[1].1), ("k.region", &b"eu"[..]));
    }

    #[test]
    fn values_times_and_what_is_unencodable() {
        let f = fields(&[]);
        let mut s = f.scratch();
        let now = UNIX_EPOCH + Duration::from_secs(5);
        let cases: &[(&str, Option<(&str, u64)>)] = &[
            (
                r#"{"name":"a","v":"42","ts":1700000000123}"#,
                Some(("42", 1_700_000_000)),
            ),
            (
                r#"{"name":"a","v":true,"ts":"2023-11-14T22:13:20Z"}"#,
                Some(("1", 1_700_000_000)),
            ),
            (r#"{"name":"a","v":3}"#, Some(("3", 5))),
            (r#"{"name":"a","v":"x"}"#, None),
            (r#"{"v":1}"#, None),
            (r#"{"name":"","v":1}"#, None),
            (r#"{"name":"a","v":null}"#, None),
        ];
        for (json, want) in cases {
            let e = Event::json(Bytes::copy_from_slice(json.as_bytes()));
            let got = f.extract(&e, &mut s, now).map(|m| {
                (
                    m.value.to_string(),
                    m.time.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                )
            });
            assert_eq!(got, want.map(|(v, t)| (v.to_string(), t)), "{json}");
        }
        assert!(
            f.extract(&Event::text(Bytes::from_static(b"a 1")), &mut s, now)
                .is_none()
        );
    }
}
