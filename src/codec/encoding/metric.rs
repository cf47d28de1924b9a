//! Where the metric encodings (graphite, statsd, influx) find a metric in an
//! event, and how one event becomes one or more metric lines.
//!
//! `metric:` names event fields, read through the shared `FieldReader`:
//! - `name`: a field, or a template over fields (`{{ host }}.{{ plugin }}`),
//!   rendered compactly (an empty part is left out with its separator);
//! - `value`: a number, numeric string or boolean; an array (collectd's
//!   `values`) becomes one metric per element, named by the matching entry
//!   of `value_names` (default `dsnames`) or its index; `null` elements are
//!   skipped (collectd's first derive reading);
//! - `timestamp` (read exactly by `codec::time`), `tags`, and for influx
//!   typed `fields`.
//!
//! An event with no usable name or value, a value that cannot have the type
//! asked for, or (with `timestamp_policy: drop`, the default) a time that
//! cannot be read is not encodable: nothing is written and the destination
//! counts it `unencodable`. Nothing is guessed or silently replaced.
//!
//! Per event, the name and the tag section are encoded once into reusable
//! buffers and copied into each line; nothing is allocated per event unless
//! a string needs unescaping.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Encoding, graphite, influx, statsd};
use crate::codec::fields::{Field, FieldReader, FieldScratch};
use crate::codec::template::Template;
use crate::codec::time::{self, EventTime};
use crate::event::{Event, Format};
use crate::expr::{number, scalar_text};
use crate::metric_event::MetricKind;

/// StatsD metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
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
    /// A metric event's type.
    pub fn of(kind: crate::metric_event::MetricKind) -> StatsdKind {
        use crate::metric_event::MetricKind as K;
        match kind {
            K::Counter => StatsdKind::Counter,
            K::Gauge => StatsdKind::Gauge,
            K::Timer => StatsdKind::Timer,
            K::Histogram => StatsdKind::Histogram,
            K::Set => StatsdKind::Set,
            K::Distribution => StatsdKind::Distribution,
        }
    }

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

/// What to do with an event whose time field holds something that is not a
/// readable time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampPolicy {
    /// Drop it, counted `unencodable`.
    #[default]
    Drop,
    /// Write it at the time it is encoded.
    Now,
}

/// An InfluxDB field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl FieldType {
    /// The name InfluxDB uses in its messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }
}

/// One entry of `metric.fields` (influx).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The event field holding the value.
    pub field: String,
    /// Default: inferred from the JSON value (an integer literal is an
    /// integer, other numbers floats, booleans booleans, a numeric string
    /// its number, other strings strings).
    #[serde(default, rename = "type")]
    pub kind: Option<FieldType>,
}

/// `metric:` settings of a destination.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// Field holding the metric name, or a template over fields.
    pub name: String,
    /// Field holding the value (a number, numeric string, boolean, or an
    /// array of them). Required unless influx `fields` are given.
    #[serde(default)]
    pub value: Option<String>,
    /// Field naming the elements of an array value. Default `dsnames`.
    #[serde(default)]
    pub value_names: Option<String>,
    /// Field holding the time. Default: now (influx: the server's clock).
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub timestamp_policy: TimestampPolicy,
    /// Fields written as tags, each keyed by its path; a field holding an
    /// object gives each of its keys as a tag.
    #[serde(default)]
    pub tags: Vec<String>,
    /// StatsD type: `c`, `g` (default), `ms`, `h`, `s`, `d`.
    #[serde(default, rename = "type")]
    pub kind: StatsdKind,
    /// StatsD: a field holding each event's type, by name (`counter`) or
    /// symbol (`c`); `type` when it is missing.
    #[serde(default)]
    pub type_field: Option<String>,
    /// Influx field key for `value`. Default `value`.
    #[serde(default)]
    pub field: Option<String>,
    /// Influx fields, by key, instead of `value`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// Prepended to every metric name (`app.`).
    #[serde(default)]
    pub prefix: Option<String>,
}

impl MetricConfig {
    /// What an encoding reads when no `metric:` is given: metric events
    /// (`crate::metric_event`), as `aggregate` and `log_to_metric` make.
    pub fn metric_events(encoding: Encoding) -> MetricConfig {
        MetricConfig {
            name: "name".into(),
            value: Some("value".into()),
            // StatsD lines carry no time.
            timestamp: (encoding != Encoding::Statsd).then(|| "timestamp".into()),
            tags: vec!["tags".into()],
            type_field: Some("type".into()),
            ..MetricConfig::default()
        }
    }
}

#[derive(Debug)]
enum Name {
    Field(Field),
    Template(Template),
}

/// A compiled `MetricConfig` for one encoding.
#[derive(Debug)]
pub struct MetricFields {
    encoding: Encoding,
    reader: FieldReader,
    name: Name,
    value: Option<Field>,
    value_names: Field,
    timestamp: Option<Field>,
    policy: TimestampPolicy,
    /// (key, field), sorted by key as InfluxDB recommends.
    tags: Vec<(String, Field)>,
    /// Influx: (key, field, type). With `value`, its one field.
    fields: Vec<(String, Field, Option<FieldType>)>,
    kind: StatsdKind,
    kind_field: Option<Field>,
    /// `prefix`, already encoded for the encoding.
    prefix: Vec<u8>,
}

/// Per-task working memory.
#[derive(Debug)]
pub struct MetricScratch {
    fields: FieldScratch,
    name: String,
    head: Vec<u8>,
    tags: Vec<u8>,
    elems: Vec<(u32, u32)>,
    names: Vec<(u32, u32)>,
    now_ns: i64,
    /// When set, every influx field written is noted (measurement, key,
    /// type): how a refused point is found again (see `Encoder::influx_refused`).
    pub(super) record: Option<Vec<(String, String, FieldType)>>,
}

/// A scalar JSON value, as the encodings see it.
#[derive(Debug, Clone)]
pub(super) enum Scalar<'a> {
    /// A number as written, and whether it is an integer literal.
    Num(&'a str, bool),
    Bool(bool),
    Str(Cow<'a, [u8]>),
}

impl Scalar<'_> {
    /// The value as a number is written (Graphite, StatsD, an Influx
    /// float): the number as written, a numeric string's number, a boolean
    /// as 1 or 0.
    pub(super) fn number_text(&self) -> Option<&str> {
        match self {
            Scalar::Num(t, _) => Some(t),
            Scalar::Bool(b) => Some(if *b { "1" } else { "0" }),
            Scalar::Str(s) => numeric_text(s),
        }
    }
}

impl MetricFields {
    pub fn new(cfg: &MetricConfig, encoding: Encoding) -> Result<MetricFields, String> {
        let mut reader = FieldReader::new();
        fn at(what: &'static str) -> impl Fn(String) -> String {
            move |e| format!("{what}: {e}")
        }
        let name = if cfg.name.contains("{{") {
            Name::Template(Template::parse(&cfg.name, &mut reader).map_err(at("metric.name"))?)
        } else {
            Name::Field(reader.add(&cfg.name).map_err(at("metric.name"))?)
        };
        if encoding == Encoding::Statsd && cfg.timestamp.is_some() {
            return Err("metric.timestamp: StatsD lines carry no time; remove it".into());
        }
        if encoding != Encoding::Influx && !cfg.fields.is_empty() {
            return Err(
                "metric.fields applies only to the influx encoding; use metric.value".into(),
            );
        }
        let value = cfg
            .value
            .as_deref()
            .map(|v| reader.add(v).map_err(at("metric.value")))
            .transpose()?;
        let mut fields = Vec::new();
        match (value, cfg.fields.is_empty()) {
            (None, true) => {
                return Err("metric.value is required (the field holding the value)".into());
            }
            (Some(_), false) => {
                return Err("set metric.value or metric.fields, not both".into());
            }
            (Some(v), true) => {
                let key = cfg.field.clone().unwrap_or_else(|| "value".into());
                if key.is_empty() {
                    return Err("metric.field: an Influx field key cannot be empty".into());
                }
                fields.push((key, v, None));
            }
            (None, false) => {
                if cfg.field.is_some() {
                    return Err("metric.field names the key of metric.value; with metric.fields the keys are the map's".into());
                }
                for (key, spec) in &cfg.fields {
                    if key.is_empty() {
                        return Err("metric.fields: an Influx field key cannot be empty".into());
                    }
                    let f = reader
                        .add(&spec.field)
                        .map_err(|e| format!("metric.fields.{key}: {e}"))?;
                    fields.push((key.clone(), f, spec.kind));
                }
            }
        }
        let value_names = reader
            .add(cfg.value_names.as_deref().unwrap_or("dsnames"))
            .map_err(at("metric.value_names"))?;
        let timestamp = cfg
            .timestamp
            .as_deref()
            .map(|t| reader.add(t).map_err(at("metric.timestamp")))
            .transpose()?;
        let mut tags = cfg
            .tags
            .iter()
            .map(|t| Ok((t.clone(), reader.add(t).map_err(at("metric.tags"))?)))
            .collect::<Result<Vec<_>, String>>()?;
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        let kind_field = cfg
            .type_field
            .as_deref()
            .map(|t| reader.add(t).map_err(at("metric.type_field")))
            .transpose()?;
        Ok(MetricFields {
            encoding,
            reader,
            name,
            value,
            value_names,
            timestamp,
            policy: cfg.timestamp_policy,
            tags,
            fields,
            kind: cfg.kind,
            kind_field,
            prefix: {
                let mut p = Vec::new();
                encode_name(
                    encoding,
                    cfg.prefix.as_deref().unwrap_or("").as_bytes(),
                    &mut p,
                );
                p
            },
        })
    }

    pub fn scratch(&self, now_ns: i64) -> MetricScratch {
        MetricScratch {
            fields: self.reader.scratch(),
            name: String::new(),
            head: Vec::new(),
            tags: Vec::new(),
            elems: Vec::new(),
            names: Vec::new(),
            now_ns,
            record: None,
        }
    }

    /// Append the event's metric lines (newline-separated, no trailing
    /// newline). False, with nothing appended, when it is not encodable.
    pub fn encode(&self, e: &Event, s: &mut MetricScratch, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let ok = self.encode_lines(e, s, out).is_some();
        if !ok {
            out.truncate(start);
        }
        ok
    }

    fn encode_lines(&self, e: &Event, s: &mut MetricScratch, out: &mut Vec<u8>) -> Option<()> {
        if e.format != Format::Json {
            return None;
        }
        let r = &self.reader;
        r.locate(e, &mut s.fields);
        let time = match time::read(self.timestamp.and_then(|t| r.raw(e, &s.fields, t))) {
            EventTime::At(ns) => Some(ns),
            EventTime::Absent => None,
            EventTime::Unreadable => match self.policy {
                TimestampPolicy::Drop => return None,
                TimestampPolicy::Now => Some(s.now_ns),
            },
        };
        self.head(e, s)?;
        s.tags.clear();
        for (key, f) in &self.tags {
            if let Some(object) = r.raw(e, &s.fields, *f).filter(|v| v.first() == Some(&b'{')) {
                self.object_tags(object, &mut s.tags)?;
                continue;
            }
            let Some(v) = r.text(e, &s.fields, *f) else {
                continue;
            };
            self.tag(key.as_bytes(), &v, &mut s.tags);
        }
        let kind = match self.kind_field.and_then(|f| r.text(e, &s.fields, f)) {
            Some(k) => StatsdKind::of(MetricKind::parse(&k)?),
            None => self.kind,
        };
        let value = match self.value {
            Some(v) => r.raw(e, &s.fields, v)?,
            None => return self.influx_fields(e, s, time, out),
        };
        if value.first() != Some(&b'[') {
            let v = scalar(value)?;
            return self.line(s, None, v, kind, time, out);
        }
        elements(value, &mut s.elems)?;
        let names = r.raw(e, &s.fields, self.value_names);
        if names.and_then(|n| elements(n, &mut s.names)).is_none() {
            s.names.clear();
        }
        let mut written = false;
        for i in 0..s.elems.len() {
            let (a, b) = s.elems[i];
            let raw = &value[a as usize..b as usize];
            if raw == b"null" {
                continue;
            }
            let v = scalar(raw)?;
            let label = s
                .names
                .get(i)
                .zip(names)
                .and_then(|(&(a, b), names)| scalar_text(&names[a as usize..b as usize]))
                .filter(|n| !n.is_empty());
            let mut index = itoa::Buffer::new();
            let suffix: &[u8] = match &label {
                Some(l) => l,
                None => index.format(i).as_bytes(),
            };
            if written {
                out.push(b'\n');
            }
            self.line(s, Some(suffix), v, kind, time, out)?;
            written = true;
        }
        written.then_some(())
    }

    /// The encoded name (prefix included) into `s.head`.
    fn head(&self, e: &Event, s: &mut MetricScratch) -> Option<()> {
        let r = &self.reader;
        let name: Cow<'_, [u8]> = match &self.name {
            Name::Field(f) => r.text(e, &s.fields, *f)?,
            Name::Template(t) => {
                t.render_compact(r, e, &s.fields, &mut s.name).ok()?;
                Cow::Borrowed(s.name.as_bytes())
            }
        };
        if name.is_empty() {
            return None;
        }
        s.head.clear();
        s.head.extend_from_slice(&self.prefix);
        encode_name(self.encoding, &name, &mut s.head);
        Some(())
    }

    /// One line for one value: graphite and statsd metrics, or an influx
    /// point with the one field of `value`.
    fn line(
        &self,
        s: &mut MetricScratch,
        suffix: Option<&[u8]>,
        v: Scalar<'_>,
        kind: StatsdKind,
        time: Option<i64>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        match self.encoding {
            Encoding::Graphite => {
                let v = v.number_text()?;
                // Graphite lines always carry a time: without one, now.
                graphite::line(&s.head, suffix, &s.tags, v, time.unwrap_or(s.now_ns), out);
            }
            Encoding::Statsd => {
                let v = v.number_text()?;
                statsd::line(&s.head, suffix, v, kind, &s.tags, out);
            }
            _ => {
                let (key, _, kind) = self.fields.first()?;
                let start = out.len();
                influx::point_head(&s.head, suffix, &s.tags, out);
                let ty = influx::field(key, &v, *kind, out)?;
                influx::time(time, out);
                if let Some(rec) = s.record.as_mut() {
                    rec.push((influx::measurement_of(&out[start..]), key.clone(), ty));
                }
            }
        }
        Some(())
    }

    /// One tag; an empty value is left out (Graphite and InfluxDB refuse
    /// empty tag values).
    fn tag(&self, key: &[u8], v: &[u8], out: &mut Vec<u8>) {
        if v.is_empty() {
            return;
        }
        let key = String::from_utf8_lossy(key);
        match self.encoding {
            Encoding::Graphite => graphite::tag(&key, v, out),
            Encoding::Statsd => statsd::tag(&key, v, out.is_empty(), out),
            _ => influx::tag(&key, v, out),
        }
    }

    /// Each key of a JSON object as a tag, in key order (nested values
    /// and nulls make none). `None` when it is not a readable object.
    fn object_tags(&self, raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let map: BTreeMap<Cow<'_, str>, &serde_json::value::RawValue> =
            serde_json::from_slice(raw).ok()?;
        for (k, v) in map {
            if let Some(t) = scalar_text(v.get().as_bytes()) {
                self.tag(k.as_bytes(), &t, out);
            } else if scalar(v.get().as_bytes()).is_some() {
                self.tag(k.as_bytes(), v.get().as_bytes(), out);
            }
        }
        Some(())
    }

    /// An influx point with the fields of `metric.fields`; missing and null
    /// fields are left out, a point with none is not encodable.
    fn influx_fields(
        &self,
        e: &Event,
        s: &mut MetricScratch,
        time: Option<i64>,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        let start = out.len();
        influx::point_head(&s.head, None, &s.tags, out);
        let mut any = false;
        for (key, f, kind) in &self.fields {
            let Some(raw) = self.reader.raw(e, &s.fields, *f).filter(|r| *r != b"null") else {
                continue;
            };
            if any {
                out.push(b',');
            }
            let ty = influx::field(key, &scalar(raw)?, *kind, out)?;
            if let Some(rec) = s.record.as_mut() {
                rec.push((influx::measurement_of(&out[start..]), key.clone(), ty));
            }
            any = true;
        }
        influx::time(time, out);
        any.then_some(())
    }
}

/// A name (or part of one) escaped as `encoding` requires.
fn encode_name(encoding: Encoding, name: &[u8], out: &mut Vec<u8>) {
    match encoding {
        Encoding::Graphite => graphite::name(name, out),
        Encoding::Statsd => statsd::name(name, out),
        _ => influx::measurement(name, out),
    }
}

/// A located JSON scalar; `None` for null, arrays and objects.
pub(super) fn scalar(raw: &[u8]) -> Option<Scalar<'_>> {
    match raw.first()? {
        b'-' | b'0'..=b'9' => {
            number(raw)?;
            let text = std::str::from_utf8(raw).ok()?;
            Some(Scalar::Num(text, is_integer_literal(raw)))
        }
        b't' if raw == b"true" => Some(Scalar::Bool(true)),
        b'f' if raw == b"false" => Some(Scalar::Bool(false)),
        b'"' => Some(Scalar::Str(scalar_text(raw)?)),
        _ => None,
    }
}

pub(super) fn is_integer_literal(t: &[u8]) -> bool {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A string that is a number (`" 42 "`), as its trimmed text.
pub(super) fn numeric_text(s: &[u8]) -> Option<&str> {
    let t = std::str::from_utf8(s.trim_ascii()).ok()?;
    let ok = t.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && t.bytes()
            .all(|c| c.is_ascii_digit() || b"-+.eE".contains(&c))
        && t.parse::<f64>().is_ok_and(f64::is_finite);
    ok.then_some(t)
}

/// The spans of a JSON array's elements, into `out` (cleared first).
fn elements(raw: &[u8], out: &mut Vec<(u32, u32)>) -> Option<()> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct Spans<'o> {
        base: usize,
        out: &'o mut Vec<(u32, u32)>,
    }
    impl<'de> Visitor<'de> for Spans<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element::<&'de serde_json::value::RawValue>()? {
                let start = v.get().as_ptr() as usize - self.base;
                self.out
                    .push((start as u32, (start + v.get().len()) as u32));
            }
            Ok(())
        }
    }
    out.clear();
    let mut de = serde_json::Deserializer::from_slice(raw);
    de.deserialize_seq(Spans {
        base: raw.as_ptr() as usize,
        out,
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn cfg(name: &str) -> MetricConfig {
        MetricConfig {
            name: name.into(),
            value: Some("v".into()),
            timestamp: Some("ts".into()),
            ..MetricConfig::default()
        }
    }

    fn lines(cfg: &MetricConfig, encoding: Encoding, json: &str) -> Option<String> {
        let m = MetricFields::new(cfg, encoding).unwrap();
        let mut s = m.scratch(5_000_000_000);
        let mut out = b"x".to_vec();
        let e = Event::json(Bytes::from(json.to_string()));
        if m.encode(&e, &mut s, &mut out) {
            Some(String::from_utf8(out[1..].to_vec()).unwrap())
        } else {
            assert_eq!(out, b"x", "nothing appended for an unencodable event");
            None
        }
    }

    #[test]
    fn values_times_and_what_is_unencodable() {
        let c = cfg("name");
        let g = |j: &str| lines(&c, Encoding::Graphite, j);
        assert_eq!(
            g(r#"{"name":"a","v":"42","ts":1700000000123}"#).unwrap(),
            "a 42 1700000000"
        );
        assert_eq!(
            g(r#"{"name":"a","v":true,"ts":"2023-11-14T22:13:20Z"}"#).unwrap(),
            "a 1 1700000000"
        );
        assert_eq!(g(r#"{"name":"a","v":3}"#).unwrap(), "a 3 5", "no time: now");
        assert_eq!(g(r#"{"name":"a","v":3,"ts":null}"#).unwrap(), "a 3 5");
        for bad in [
            r#"{"name":"a","v":"x"}"#,
            r#"{"v":1}"#,
            r#"{"name":"","v":1}"#,
            r#"{"name":"a","v":null}"#,
            r#"{"name":"a","v":1,"ts":"soon"}"#,
            r#"{"name":"a","v":1,"ts":-1}"#,
        ] {
            assert_eq!(g(bad), None, "{bad}");
        }
        let now = MetricConfig {
            timestamp_policy: TimestampPolicy::Now,
            ..cfg("name")
        };
        assert_eq!(
            lines(
                &now,
                Encoding::Graphite,
                r#"{"name":"a","v":1,"ts":"soon"}"#
            )
            .unwrap(),
            "a 1 5"
        );
    }

    #[test]
    fn value_lists_expand_with_their_names() {
        let c = MetricConfig {
            name: "{{ host }}.{{ plugin }}-{{ plugin_instance }}.{{ type }}-{{ type_instance }}"
                .into(),
            value: Some("values".into()),
            timestamp: Some("time".into()),
            ..MetricConfig::default()
        };
        let load = r#"{"values":[0.05,0.1,0.15],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],"time":1700000000.123,"interval":10.000,"host":"web","plugin":"load","plugin_instance":"","type":"load","type_instance":""}"#;
        assert_eq!(
            lines(&c, Encoding::Graphite, load).unwrap(),
            "web.load.load.shortterm 0.05 1700000000\nweb.load.load.midterm 0.1 1700000000\nweb.load.load.longterm 0.15 1700000000"
        );
        assert_eq!(
            lines(&c, Encoding::Influx, load).unwrap(),
            "web.load.load_shortterm value=0.05 1700000000123000000\nweb.load.load_midterm value=0.1 1700000000123000000\nweb.load.load_longterm value=0.15 1700000000123000000"
        );
        let unnamed = r#"{"values":[1,null,3],"host":"h","plugin":"p","plugin_instance":"","type":"t","type_instance":""}"#;
        assert_eq!(
            lines(&c, Encoding::Graphite, unnamed).unwrap(),
            "h.p.t.0 1 5\nh.p.t.2 3 5",
            "null elements are skipped, names default to the index"
        );
        let all_null = r#"{"values":[null,null],"host":"h","plugin":"p","plugin_instance":"","type":"t","type_instance":""}"#;
        assert_eq!(lines(&c, Encoding::Graphite, all_null), None);
        let bad = r#"{"values":[1,"x"],"host":"h","plugin":"p","plugin_instance":"","type":"t","type_instance":""}"#;
        assert_eq!(lines(&c, Encoding::Graphite, bad), None);
    }

    #[test]
    fn settings_that_do_not_fit_the_encoding() {
        let statsd_time = MetricFields::new(&cfg("n"), Encoding::Statsd).unwrap_err();
        assert!(statsd_time.contains("StatsD"), "{statsd_time}");
        let no_value = MetricConfig {
            value: None,
            ..cfg("n")
        };
        assert!(MetricFields::new(&no_value, Encoding::Graphite).is_err());
        let mut fields = BTreeMap::new();
        fields.insert(
            "v".to_string(),
            FieldSpec {
                field: "v".into(),
                kind: None,
            },
        );
        let both = MetricConfig {
            fields: fields.clone(),
            ..cfg("n")
        };
        assert!(MetricFields::new(&both, Encoding::Influx).is_err());
        let graphite_fields = MetricConfig {
            value: None,
            fields,
            ..cfg("n")
        };
        assert!(MetricFields::new(&graphite_fields, Encoding::Graphite).is_err());
        assert!(MetricFields::new(&graphite_fields, Encoding::Influx).is_ok());
        assert!(MetricFields::new(&cfg("a b"), Encoding::Graphite).is_err());
        assert!(MetricFields::new(&cfg("{{ a"), Encoding::Graphite).is_err());
    }

    #[test]
    fn metric_events_need_no_mapping() {
        let e = r#"{"name":"requests","type":"counter","value":42,"timestamp":"2023-11-14T22:13:20.000Z","interval_ms":10000,"tags":{"host":"a b","app":"web","n":3,"empty":""}}"#;
        let with = |enc| lines(&MetricConfig::metric_events(enc), enc, e);
        assert_eq!(
            with(Encoding::Graphite).unwrap(),
            "requests;app=web;host=a_b;n=3 42 1700000000"
        );
        assert_eq!(
            with(Encoding::Statsd).unwrap(),
            "requests:42|c|#app:web,host:a_b,n:3"
        );
        assert_eq!(
            with(Encoding::Influx).unwrap(),
            "requests,app=web,host=a\\ b,n=3 value=42i 1700000000000000000"
        );
        let gauge = r#"{"name":"mean","type":"gauge","value":2.5}"#;
        let statsd = MetricConfig::metric_events(Encoding::Statsd);
        assert_eq!(
            lines(&statsd, Encoding::Statsd, gauge).unwrap(),
            "mean:2.5|g"
        );
        let unknown = r#"{"name":"m","type":"meter","value":1}"#;
        assert_eq!(lines(&statsd, Encoding::Statsd, unknown), None);
    }
}
