//! `log_to_metric`: each log event becomes a metric event per entry of
//! `metrics` whose `field` it has, as Vector's transform of that name: a
//! `counter` of 1 (or of the field's number, `increment_by_value`), or a
//! `gauge`, `timer`, `histogram` or `distribution` of the field's number.
//! `name` and each tag may be templates over the event (`{{ status }}`); a
//! tag whose template names a missing field is left out. The point's time
//! is the event's `time_field` (default `timestamp`) when readable.
//!
//! The log event is consumed (counted `aggregated`) unless `passthrough`;
//! the metrics are counted emitted. A field that is not a number makes no
//! metric for that entry, counted as an error.

use std::collections::BTreeMap;

use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::aggregate::{number_of, time_ms_of};
use super::{DropReason, Function, Tally, Work};
use crate::metric_event::{MetricEvent, MetricKind, float, rfc3339_ms};

fn default_time_field() -> String {
    "timestamp".into()
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogToMetricConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    pub metrics: Vec<LogMetric>,
    /// The event's time (`timestamp`); unreadable or missing: none (the
    /// destination writes the time it sends).
    #[serde(default = "default_time_field")]
    pub time_field: String,
    /// Send the log events on as well.
    #[serde(default)]
    pub passthrough: bool,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogMetric {
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// The field that must be present; its number is the value (but for a
    /// counter without `increment_by_value`).
    pub field: String,
    /// The metric's name, or a template (default: `field`).
    #[serde(default)]
    pub name: Option<String>,
    /// Tags by name: text, or a template over the event.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A counter adds the field's number instead of 1.
    #[serde(default)]
    pub increment_by_value: bool,
}

/// Text with `{{ path }}` parts.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field(OwnedValuePath),
}

fn template(t: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`{t}`: a `{{{{` without its `}}}}`"))?;
        out.push(Piece::Field(super::path::parse(after[..end].trim())?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

/// The template rendered; `None` when a field it names is missing.
fn render(pieces: &[Piece], v: &Value) -> Option<String> {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Field(path) => match v.get(path)? {
                Value::Null => return None,
                found => match super::work::text(found) {
                    Some(t) => s.push_str(&String::from_utf8_lossy(t)),
                    None => s.push_str(&serde_json::to_string(found).ok()?),
                },
            },
        }
    }
    Some(s)
}

struct Compiled {
    kind: MetricKind,
    field: OwnedValuePath,
    name: Vec<Piece>,
    tags: Vec<(String, Vec<Piece>)>,
    by_value: bool,
}

impl LogToMetricConfig {
    fn check(&self) -> Result<(Vec<Compiled>, OwnedValuePath), String> {
        if self.metrics.is_empty() {
            return Err("metrics: at least one".into());
        }
        let time = super::path::parse(&self.time_field).map_err(|e| format!("time_field: {e}"))?;
        let metrics = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let at = |e: String| format!("metrics[{i}]: {e}");
                if m.kind == MetricKind::Set {
                    return Err(at(
                        "type set is not a number: count distinct values with aggregate's distinct_count".into(),
                    ));
                }
                if m.increment_by_value && m.kind != MetricKind::Counter {
                    return Err(at("increment_by_value applies to counters".into()));
                }
                let name = template(m.name.as_deref().unwrap_or(&m.field)).map_err(at)?;
                if name.is_empty() {
                    return Err(at("name: empty".into()));
                }
                Ok(Compiled {
                    kind: m.kind,
                    field: super::path::parse(&m.field).map_err(|e| at(format!("field: {e}")))?,
                    name,
                    tags: m
                        .tags
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), template(t)?)))
                        .collect::<Result<_, String>>()
                        .map_err(at)?,
                    by_value: m.increment_by_value,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((metrics, time))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    pub fn build(&self, _slot: &super::state::Slot) -> Result<Box<dyn Function>, String> {
        let (metrics, time) = self.check()?;
        Ok(Box::new(LogToMetric {
            metrics,
            time,
            passthrough: self.passthrough,
        }))
    }
}

struct LogToMetric {
    metrics: Vec<Compiled>,
    time: OwnedValuePath,
    passthrough: bool,
}

impl Function for LogToMetric {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        for mut w in batch {
            let v = w.value_mut();
            let timestamp = v.get(&self.time).and_then(time_ms_of).map(rfc3339_ms);
            for m in &self.metrics {
                let Some(found) = v.get(&m.field).filter(|f| !matches!(f, Value::Null)) else {
                    continue;
                };
                let value = if m.kind == MetricKind::Counter && !m.by_value {
                    Some(1.into())
                } else {
                    number_of(found).and_then(|n| match found {
                        Value::Integer(i) => Some((*i).into()),
                        _ => float(n),
                    })
                };
                let (Some(value), Some(name)) = (value, render(&m.name, v)) else {
                    tally.errors += 1;
                    continue;
                };
                let tags = m
                    .tags
                    .iter()
                    .filter_map(|(k, t)| Some((k.clone(), render(t, v)?)))
                    .collect();
                let e = MetricEvent {
                    name,
                    kind: m.kind,
                    value,
                    timestamp: timestamp.clone(),
                    interval_ms: None,
                    tags,
                    sample_rate: None,
                };
                out.push(Work::Raw(e.to_event()));
                tally.emitted += 1;
            }
            if self.passthrough {
                out.push(w);
            } else {
                tally.drop(DropReason::Aggregated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::run_json;

    fn json(events: &[&str]) -> Vec<serde_json::Value> {
        events
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect()
    }

    fn build(yaml: &str) -> Box<dyn Function> {
        let c: LogToMetricConfig = serde_saphyr::from_str(yaml).unwrap();
        c.build(&crate::pipeline::state::Slot::detached()).unwrap()
    }

    #[test]
    fn counters_gauges_templates_and_books() {
        let f = build(
            r#"
type: log_to_metric
metrics:
  - { type: counter, field: status, name: "responses_{{ method }}", tags: { status: "{{ status }}", app: web } }
  - { type: gauge, field: mem, name: memory }
  - { type: counter, field: bytes, increment_by_value: true }
"#,
        );
        let (out, tally) = run_json(
            f.as_ref(),
            &[
                r#"{"status":200,"method":"GET","mem":12.5,"bytes":300,"timestamp":"2026-12-06T08:00:00Z"}"#,
                r#"{"status":"500","method":"POST"}"#,
                r#"{"mem":"lots"}"#,
                r#"{"other":1}"#,
            ],
        );
        assert_eq!(
            out,
            json(&[
                r#"{"name":"responses_GET","type":"counter","value":1,"timestamp":"2026-12-06T08:00:00.000Z","tags":{"app":"web","status":"200"}}"#,
                r#"{"name":"memory","type":"gauge","value":12.5,"timestamp":"2026-12-06T08:00:00.000Z"}"#,
                r#"{"name":"bytes","type":"counter","value":300,"timestamp":"2026-12-06T08:00:00.000Z"}"#,
                r#"{"name":"responses_POST","type":"counter","value":1,"tags":{"app":"web","status":"500"}}"#,
            ])
        );
        assert_eq!(tally.emitted, 4);
        assert_eq!(tally.dropped[DropReason::Aggregated as usize], 4);
        assert_eq!(tally.errors, 1, "a gauge of text");
    }

    #[test]
    fn passthrough_keeps_the_log() {
        let f =
            build("{type: log_to_metric, passthrough: true, metrics: [{type: counter, field: a}]}");
        let (out, tally) = run_json(f.as_ref(), &[r#"{"a":1}"#]);
        assert_eq!(
            out,
            json(&[r#"{"name":"a","type":"counter","value":1}"#, r#"{"a":1}"#])
        );
        assert_eq!(tally.dropped, [0; DropReason::ALL.len()]);
    }

    #[test]
    fn settings_refused() {
        for bad in [
            "{type: log_to_metric, metrics: []}",
            "{type: log_to_metric, metrics: [{type: set, field: a}]}",
            "{type: log_to_metric, metrics: [{type: gauge, field: a, increment_by_value: true}]}",
            "{type: log_to_metric, metrics: [{type: gauge, field: a, name: 'x{{ a'}]}",
        ] {
            let c: LogToMetricConfig = serde_saphyr::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }
}
