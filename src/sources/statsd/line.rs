//! One StatsD or DogStatsD line into metric events (`crate::metric_event`'s
//! shape), one per value:
//!
//! `name:value[:value…]|type[|@rate][|#tag:v,bare][|T<unix seconds>][|c:…][|e:…]`
//!
//! Types `c`, `g`, `ms`, `h`, `s`, `d`. A counter's value is scaled up by its
//! sample rate (`3|c|@0.1` counts 30), as StatsD and Vector do; a timer's,
//! histogram's or distribution's keeps its value and carries `sample_rate`.
//! A gauge written with a sign is a change (`+5`, `-5`), applied to the
//! series' last value by the caller (`Gauges`). A bare tag's value is
//! `"true"` (Vector's convention). Values are written as floats, so a
//! field's type never changes between lines; a set's member as text.

use std::fmt;

use crate::metric_event::MetricKind;

/// Why a line is not a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A DogStatsD event (`_e{…}`) or service check (`_sc|…`): not a metric,
    /// kept whole as a log event by the source.
    NotAMetric,
    /// Broken: counted as malformed.
    Malformed(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAMetric => f.write_str("a DogStatsD event or service check"),
            Refusal::Malformed(why) => f.write_str(why),
        }
    }
}

/// One line's parts, borrowed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    /// The values, `:`-separated (DogStatsD packs several into one line).
    pub values: &'a str,
    pub kind: MetricKind,
    pub sample_rate: Option<f64>,
    /// The tags' text after `#`, `,`-separated.
    pub tags: Option<&'a str>,
    /// Seconds since the epoch (DogStatsD `|T`).
    pub timestamp: Option<i64>,
}

pub fn parse(line: &str) -> Result<Line<'_>, Refusal> {
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(Refusal::NotAMetric);
    }
    let mut sections = line.split('|');
    let head = sections.next().unwrap_or_default();
    let (name, values) = head
        .split_once(':')
        .ok_or(Refusal::Malformed("no `:` between the name and the value"))?;
    if name.is_empty() {
        return Err(Refusal::Malformed("an empty metric name"));
    }
    if values.is_empty() {
        return Err(Refusal::Malformed("no value"));
    }
    let kind = sections
        .next()
        .ok_or(Refusal::Malformed("no `|type`"))
        .and_then(|t| match t.as_bytes() {
            b"c" | b"g" | b"ms" | b"h" | b"s" | b"d" => {
                MetricKind::parse(t.as_bytes()).ok_or(Refusal::Malformed("an unknown type"))
            }
            _ => Err(Refusal::Malformed("an unknown type")),
        })?;
    let mut parsed = Line {
        name,
        values,
        kind,
        sample_rate: None,
        tags: None,
        timestamp: None,
    };
    for section in sections {
        if let Some(rate) = section.strip_prefix('@') {
            let r: f64 = rate
                .parse()
                .map_err(|_| Refusal::Malformed("a sample rate that is not a number"))?;
            if !(r > 0.0 && r <= 1.0) {
                return Err(Refusal::Malformed("a sample rate outside (0, 1]"));
            }
            parsed.sample_rate = (r < 1.0).then_some(r);
        } else if let Some(tags) = section.strip_prefix('#') {
            parsed.tags = Some(tags);
        } else if let Some(t) = section.strip_prefix('T') {
            parsed.timestamp = Some(
                t.parse()
                    .map_err(|_| Refusal::Malformed("a timestamp that is not a number"))?,
            );
        } else if section.starts_with("c:") || section.starts_with("e:") || section.is_empty() {
            // Container id and external data (DogStatsD 1.2+): not part of
            // the series.
        } else {
            return Err(Refusal::Malformed("an unknown `|` section"));
        }
    }
    // Every value is checked before any is written: a line is taken whole
    // or refused whole.
    for v in parsed.values() {
        value(parsed.kind, v)?;
    }
    Ok(parsed)
}

impl<'a> Line<'a> {
    pub fn values(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.values.split(':')
    }

    /// `key:value` pairs in order, a bare tag with no value (written
    /// `"true"`); empty ones skipped.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + use<'a> {
        self.tags
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| match t.split_once(':') {
                Some((k, v)) => (k, Some(v)),
                None => (t, None),
            })
    }
}

/// One value as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    /// A signed gauge: a change to the last value.
    Delta(f64),
    /// A set's member.
    Member(&'a str),
}

pub fn value(kind: MetricKind, v: &str) -> Result<Value<'_>, Refusal> {
    if kind == MetricKind::Set {
        return if v.is_empty() {
            Err(Refusal::Malformed("an empty set member"))
        } else {
            Ok(Value::Member(v))
        };
    }
    let n: f64 = v
        .parse()
        .map_err(|_| Refusal::Malformed("a value that is not a number"))?;
    if !n.is_finite() {
        return Err(Refusal::Malformed("a value that is not finite"));
    }
    if kind == MetricKind::Gauge && (v.starts_with('+') || v.starts_with('-')) {
        return Ok(Value::Delta(n));
    }
    Ok(Value::Number(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statsd_and_dogstatsd_lines() {
        let l = parse("page.views:3|c|@0.1|#env:prod,canary|T1700000000").expect("line");
        assert_eq!(
            (l.name, l.kind, l.sample_rate, l.timestamp),
            (
                "page.views",
                MetricKind::Counter,
                Some(0.1),
                Some(1_700_000_000)
            )
        );
        assert_eq!(
            l.tags().collect::<Vec<_>>(),
            vec![("env", Some("prod")), ("canary", None)]
        );
        let l = parse("lat:1:2.5:3|h|c:abc").expect("packed");
        assert_eq!(l.values().collect::<Vec<_>>(), vec!["1", "2.5", "3"]);
        assert_eq!(value(MetricKind::Gauge, "+4"), Ok(Value::Delta(4.0)));
        assert_eq!(value(MetricKind::Gauge, "-4"), Ok(Value::Delta(-4.0)));
        assert_eq!(value(MetricKind::Gauge, "4"), Ok(Value::Number(4.0)));
        assert_eq!(value(MetricKind::Set, "alice"), Ok(Value::Member("alice")));
        assert_eq!(parse("_e{5,4}:title|text"), Err(Refusal::NotAMetric));
        for bad in [
            "novalue",
            ":1|c",
            "x:|c",
            "x:1",
            "x:1|q",
            "x:a|c",
            "x:1|c|@2",
            "x:1|c|@0",
            "x:1|c|@x",
            "x:1|c|Tsoon",
            "x:1|c|?",
            "x:NaN|g",
            "x:inf|ms",
            "x:1:|c",
        ] {
            assert!(matches!(parse(bad), Err(Refusal::Malformed(_))), "{bad}");
        }
    }
}
