//! `aggregate`: events folded into metrics per window and group. Each event
//! counts toward its window (by its own time in `time_field`, else by when
//! it arrived) and its group (the values of `group_by`); when a window
//! closes, each group's statistics leave as metric events
//! (`crate::metric_event`), one per statistic, stamped with the window's
//! end. The events folded in are counted dropped `aggregated` (or, with
//! `passthrough`, go on unchanged); the metric events are counted emitted.
//!
//! Windows are tumbling (`window`), or sliding with `hop` (a `window`-long
//! window every `hop`, built from `hop`-long panes), aligned to the epoch.
//! With event time, a window closes once the newest time seen, less
//! `lateness`, has passed its end; the event clock also runs on with the
//! wall clock while nothing newer arrives, so a quiet source's last window
//! still closes. An event too late for every window it belongs to is
//! counted `late`. Open windows are emitted at shutdown, and by the old
//! configuration when a reload changes the function (`Flush`).

mod stats;
mod window;

use std::sync::Arc;

use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::keyed::DEFAULT_MAX_KEYS;
use super::{DropReason, Flush, Function, Tally, Work};
use crate::config::units::Dur;
use crate::metric_event::MetricKind;
pub use stats::Stat;
use window::{Output, State, Windows};

fn default_window() -> Dur {
    Dur::secs(10)
}
fn default_max_groups() -> usize {
    DEFAULT_MAX_KEYS
}
fn default_accuracy() -> f64 {
    0.01
}

/// Panes per sliding window at most (each group keeps one per pane).
const MAX_PANES_PER_WINDOW: u64 = 1_000;
/// Panes open at once at most (lateness and window over hop).
const MAX_OPEN_PANES: u64 = 100_000;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The window's length (10s).
    #[serde(default = "default_window")]
    pub window: Dur,
    /// Sliding windows: a new window every `hop` (it divides `window`).
    /// Default: tumbling (`hop` = `window`).
    #[serde(default)]
    pub hop: Option<Dur>,
    /// Fields whose values make a group; each becomes a tag.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// What to compute.
    pub metrics: Vec<MetricSpec>,
    /// The event's own time (epoch number or RFC 3339). Default: arrival.
    #[serde(default)]
    pub time_field: Option<String>,
    /// With `time_field`: how long after a window's end its events may
    /// still arrive (5s).
    #[serde(default)]
    pub lateness: Option<Dur>,
    /// Send the events on as well as the metrics.
    #[serde(default)]
    pub passthrough: bool,
    /// Distinct groups per pane; the rest fold into one group tagged
    /// `_other` (100000).
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// Percentiles' relative error (0.01).
    #[serde(default = "default_accuracy")]
    pub relative_accuracy: f64,
}

/// One statistic to compute.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// The metric's name (a percentile's gets `_p99` and so on).
    pub name: String,
    #[serde(rename = "type")]
    pub stat: Stat,
    /// The field read (required but for `count`).
    #[serde(default)]
    pub field: Option<String>,
    /// For `percentile`: which, in percent (50, 90, 99).
    #[serde(default)]
    pub percentiles: Option<Vec<f64>>,
}

impl AggregateConfig {
    fn check(&self) -> Result<Windows, String> {
        let window = millis(self.window, "window")?;
        let hop = match self.hop {
            Some(h) => millis(h, "hop")?,
            None => window,
        };
        if hop > window || window % hop != 0 {
            return Err(format!(
                "hop: {hop} ms must divide window ({window} ms) evenly"
            ));
        }
        let panes = window / hop;
        if panes > MAX_PANES_PER_WINDOW {
            return Err(format!(
                "hop: a window of {panes} hops; at most {MAX_PANES_PER_WINDOW}"
            ));
        }
        let time = super::path::parse_opt(self.time_field.as_deref(), "time_field")?;
        let lateness = match (self.lateness, &time) {
            (Some(_), None) => {
                return Err("lateness applies to event time: set time_field too".into());
            }
            (Some(l), Some(_)) if l.get().is_zero() => 0,
            (Some(l), Some(_)) => millis(l, "lateness")?,
            (None, Some(_)) => 5_000,
            (None, None) => 0,
        };
        if (lateness / hop).saturating_add(panes) > MAX_OPEN_PANES {
            return Err(format!(
                "lateness: {lateness} ms over a hop of {hop} ms keeps too many panes open (at most {MAX_OPEN_PANES})"
            ));
        }
        if self.metrics.is_empty() {
            return Err("metrics: at least one".into());
        }
        if !(self.relative_accuracy > 0.0 && self.relative_accuracy < 0.5) {
            return Err("relative_accuracy: between 0 and 0.5 (0.01 is 1 %)".into());
        }
        if self.max_groups == 0 {
            return Err("max_groups: at least 1".into());
        }
        let group_by = self
            .group_by
            .iter()
            .map(|g| {
                let path = super::path::parse(g).map_err(|e| format!("group_by: {e}"))?;
                Ok((g.clone(), path))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let sliding = panes > 1;
        let mut outputs = Vec::new();
        let mut reads = Vec::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let at = |e: String| format!("metrics[{i}] ({}): {e}", m.name);
            if m.name.is_empty() {
                return Err(at("a name is required".into()));
            }
            let field = super::path::parse_opt(m.field.as_deref(), "field").map_err(at)?;
            if field.is_none() && m.stat != Stat::Count {
                return Err(at("field: required for this type".into()));
            }
            if m.percentiles.is_some() && m.stat != Stat::Percentile {
                return Err(at("percentiles apply to type percentile".into()));
            }
            // Overlapping windows count events more than once: not a delta.
            let kind = if matches!(m.stat, Stat::Count | Stat::Sum) && !sliding {
                MetricKind::Counter
            } else {
                MetricKind::Gauge
            };
            if m.stat == Stat::Percentile {
                let ps = m
                    .percentiles
                    .clone()
                    .unwrap_or_else(|| vec![50.0, 90.0, 99.0]);
                if ps.is_empty() {
                    return Err(at("percentiles: at least one".into()));
                }
                for p in ps {
                    if !(p > 0.0 && p < 100.0) {
                        return Err(at(format!("percentiles: {p} is not between 0 and 100")));
                    }
                    let suffix = p.to_string().replace('.', "_");
                    outputs.push(Output {
                        name: format!("{}_p{suffix}", m.name),
                        kind,
                        read: i,
                        quantile: Some(p / 100.0),
                    });
                }
            } else {
                outputs.push(Output {
                    name: m.name.clone(),
                    kind,
                    read: i,
                    quantile: None,
                });
            }
            reads.push((m.stat, field));
        }
        let mut names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("metrics: `{}` is named twice", w[0]));
        }
        Ok(Windows {
            hop,
            panes,
            lateness,
            interval: window,
            time,
            group_by,
            reads,
            outputs,
            max_groups: self.max_groups,
            sketch: sketches_ddsketch::Config::new(self.relative_accuracy, 2048, 1.0e-9),
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    pub fn build(&self, slot: &super::state::Slot) -> Result<Box<dyn Function>, String> {
        let windows = Arc::new(self.check()?);
        let state = slot.get(State::new);
        Ok(Box::new(Aggregate {
            windows,
            state,
            passthrough: self.passthrough,
        }))
    }
}

/// The longest window, hop or lateness: a year keeps every time sum far
/// inside i64 milliseconds.
const MAX_SPAN_MS: u64 = 366 * 86_400_000;

fn millis(d: Dur, what: &str) -> Result<u64, String> {
    match u64::try_from(d.get().as_millis()) {
        Ok(0) => Err(format!("{what}: at least 1ms")),
        Ok(ms) if ms <= MAX_SPAN_MS => Ok(ms),
        _ => Err(format!("{what}: at most 366d")),
    }
}

struct Aggregate {
    windows: Arc<Windows>,
    state: Arc<State>,
    passthrough: bool,
}

impl Function for Aggregate {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut inner = self.state.lock();
        let clock = self.state.clock();
        for mut w in batch {
            match self.windows.add(&mut inner, &clock, w.value_mut()) {
                Ok(()) if self.passthrough => out.push(w),
                Ok(()) => tally.drop(DropReason::Aggregated),
                Err(_) if self.passthrough => out.push(w),
                Err(reason) => tally.drop(reason),
            }
        }
    }

    fn holds(&self) -> bool {
        true
    }

    fn flush(&self, mode: Flush, out: &mut Vec<Work>, tally: &mut Tally) {
        let all = match mode {
            Flush::Due => false,
            Flush::All => true,
            // The state went with the old configuration: nobody else will.
            Flush::Orphaned if Arc::strong_count(&self.state) == 1 => true,
            Flush::Orphaned => return,
        };
        let mut inner = self.state.lock();
        let clock = self.state.clock();
        let before = out.len();
        self.windows.emit(&mut inner, &clock, all, out);
        tally.emitted += (out.len() - before) as u64;
    }
}

/// A field's value as a number: a JSON number, or text holding one.
pub(super) fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => super::work::text(v)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.trim().parse::<f64>().ok()),
    }
    .filter(|f| f.is_finite())
}

/// The time in a field, in milliseconds since the epoch.
pub(super) fn time_ms_of(v: &Value) -> Option<i64> {
    let ns = match v {
        Value::Timestamp(t) => t.timestamp_nanos_opt(),
        Value::Integer(i) => crate::codec::time::read_text(itoa::Buffer::new().format(*i)),
        Value::Float(f) => crate::codec::time::read_text(&f.to_string()),
        _ => super::work::text(v)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(crate::codec::time::read_text),
    }?;
    Some(ns.div_euclid(1_000_000))
}

/// A field's path, for group tags.
type Field = (String, OwnedValuePath);

#[cfg(test)]
mod tests;
