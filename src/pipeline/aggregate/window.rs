//! Panes and windows: where an event's statistics go, and when a window
//! closes.
//!
//! Time is cut into `hop`-long panes aligned to the epoch; window `k` is
//! panes `k - panes + 1 ..= k` and ends where pane `k` ends. Each pane keeps
//! its groups (bounded by `max_groups`), so a sliding window is the merge
//! of its panes and a pane is let go once the last window holding it is
//! out. `emitted_through` is the last window out: an event whose every
//! window is out is late.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::stats::{Acc, Sample, Stat, Value as StatValue};
use super::{Field, number_of, time_ms_of};
use crate::metric_event::{MetricEvent, MetricKind, float, rfc3339_ms};
use crate::pipeline::keyed::Keyed;
use crate::pipeline::{DropReason, Work};

/// The tag value of the group the groups past `max_groups` share.
const OTHER: &str = "_other";

/// How far ahead of this machine's clock an event's time may be. Further
/// is a broken (or hostile) clock: taken at its word, one such event would
/// close every open window early and make every honest event after it late.
const MAX_AHEAD_MS: i64 = 3_600_000;

/// An aggregate's settings, compiled.
pub struct Windows {
    pub hop: u64,
    /// Panes per window (1: tumbling).
    pub panes: u64,
    pub lateness: u64,
    /// The window's length, as metric events state it.
    pub interval: u64,
    pub time: Option<OwnedValuePath>,
    pub group_by: Vec<Field>,
    /// Each metric's statistic and field, in `metrics` order.
    pub reads: Vec<(Stat, Option<OwnedValuePath>)>,
    pub outputs: Vec<Output>,
    pub max_groups: usize,
    pub sketch: sketches_ddsketch::Config,
}

/// One metric event per group and window: its name, kind, and which read
/// (and quantile) it reports.
pub struct Output {
    pub name: String,
    pub kind: MetricKind,
    pub read: usize,
    pub quantile: Option<f64>,
}

#[derive(Clone)]
struct Group {
    tags: Vec<(String, String)>,
    accs: Vec<Acc>,
}

impl Group {
    fn merge(&mut self, other: &Group) {
        for (a, b) in self.accs.iter_mut().zip(&other.accs) {
            a.merge(b);
        }
    }
}

pub struct Inner {
    panes: BTreeMap<i64, Keyed<Group>>,
    /// The newest event time seen, and when it was seen.
    newest: Option<(i64, Instant)>,
    emitted_through: Option<i64>,
}

/// An aggregate's open windows, kept across reloads that keep it.
pub struct State {
    inner: Mutex<Inner>,
    /// The wall clock read once, then advanced by the monotonic one (a
    /// paused test clock moves it too).
    base: (Instant, i64),
}

/// The time now, both ways.
pub struct Clock {
    now: Instant,
    wall_ms: i64,
}

impl State {
    pub fn new() -> State {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        State::starting_at(wall)
    }

    pub fn starting_at(wall_ms: i64) -> State {
        State {
            inner: Mutex::new(Inner {
                panes: BTreeMap::new(),
                newest: None,
                emitted_through: None,
            }),
            base: (Instant::now(), wall_ms),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn clock(&self) -> Clock {
        let now = Instant::now();
        let since = now.saturating_duration_since(self.base.0).as_millis();
        Clock {
            now,
            wall_ms: self
                .base
                .1
                .saturating_add(i64::try_from(since).unwrap_or(i64::MAX)),
        }
    }
}

impl Windows {
    /// Fold one event in. `Err`: why it was not (no readable time, late).
    pub fn add(&self, inner: &mut Inner, clock: &Clock, v: &Value) -> Result<(), DropReason> {
        let t = match &self.time {
            Some(p) => v
                .get(p)
                .and_then(time_ms_of)
                .filter(|t| *t <= clock.wall_ms.saturating_add(MAX_AHEAD_MS))
                .ok_or(DropReason::Error)?,
            None => clock.wall_ms,
        };
        let hop = self.hop as i64;
        let panes = self.panes as i64;
        let pane = t.div_euclid(hop);
        if inner
            .emitted_through
            .is_some_and(|e| pane.saturating_add(panes - 1) <= e)
        {
            return Err(DropReason::Late);
        }
        let mut key = Vec::new();
        for (_, path) in &self.group_by {
            match v.get(path).and_then(tag_text) {
                Some(t) => {
                    key.push(1);
                    key.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    key.extend_from_slice(t.as_bytes());
                }
                None => key.push(0),
            }
        }
        let max = self.max_groups;
        let groups = inner
            .panes
            .entry(pane)
            .or_insert_with(|| Keyed::new(max, "aggregate"));
        let g = groups.get_marked(&key, |overflow| Group {
            tags: self
                .group_by
                .iter()
                .filter_map(|(name, path)| {
                    let t = if overflow {
                        OTHER.to_string()
                    } else {
                        v.get(path).and_then(tag_text)?
                    };
                    Some((name.clone(), t))
                })
                .collect(),
            accs: self
                .reads
                .iter()
                .map(|(stat, _)| Acc::new(*stat, self.sketch))
                .collect(),
        });
        for ((stat, field), acc) in self.reads.iter().zip(&mut g.accs) {
            let sample = match field {
                None => Sample::Present,
                Some(p) => match v.get(p) {
                    None | Some(Value::Null) => continue,
                    Some(found) if *stat == Stat::DistinctCount => Sample::Hash(hash(found)),
                    Some(found) if stat.numeric() => match number_of(found) {
                        Some(n) => Sample::Number(n),
                        None => continue,
                    },
                    Some(_) => Sample::Present,
                },
            };
            acc.add(&sample);
        }
        if inner.newest.is_none_or(|(n, _)| t > n) {
            inner.newest = Some((t, clock.now));
        }
        Ok(())
    }

    /// The last window that may close now: the event clock (the newest
    /// time, run on by the wall clock since) less `lateness`.
    fn closable(&self, inner: &Inner, clock: &Clock) -> Option<i64> {
        let (t, at) = inner.newest?;
        let since = clock.now.saturating_duration_since(at).as_millis();
        let watermark = t
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
            .saturating_sub(self.lateness as i64);
        Some(watermark.div_euclid(self.hop as i64) - 1)
    }

    /// Emit the windows that have closed (`all`: every open one) into `out`.
    pub fn emit(&self, inner: &mut Inner, clock: &Clock, all: bool, out: &mut Vec<Work>) {
        if inner.panes.is_empty() {
            return;
        }
        let upto = if all {
            None
        } else {
            match self.closable(inner, clock) {
                Some(k) => Some(k),
                None => return,
            }
        };
        let panes = self.panes as i64;
        let after = inner.emitted_through;
        // Only windows holding data: a gap in time costs nothing.
        let windows: BTreeSet<i64> = inner
            .panes
            .keys()
            .flat_map(|&p| p..p.saturating_add(panes))
            .filter(|&k| after.is_none_or(|e| k > e) && upto.is_none_or(|u| k <= u))
            .collect();
        for &k in &windows {
            let end = k.saturating_add(1).saturating_mul(self.hop as i64);
            if panes == 1 {
                if let Some(mut groups) = inner.panes.remove(&k) {
                    let mut sorted: Vec<_> = groups.drain().collect();
                    sorted.sort_by(|a, b| a.0.cmp(&b.0));
                    for (_, mut g) in sorted {
                        self.write(&mut g, end, out);
                    }
                }
                continue;
            }
            let mut merged: BTreeMap<Option<&[u8]>, Group> = BTreeMap::new();
            for (_, groups) in inner.panes.range(k - panes + 1..=k) {
                for (key, g) in groups.iter() {
                    match merged.get_mut(&key) {
                        Some(m) => m.merge(g),
                        None => {
                            merged.insert(key, g.clone());
                        }
                    }
                }
            }
            for (_, mut g) in merged {
                self.write(&mut g, end, out);
            }
        }
        let through = match upto {
            Some(u) => Some(u),
            None => windows.last().copied(),
        };
        if let Some(t) = through {
            let t = after.map_or(t, |a| a.max(t));
            inner.emitted_through = Some(t);
            inner.panes.retain(|&p, _| p.saturating_add(panes - 1) > t);
        }
    }

    /// A group's metric events for the window ending at `end_ms`.
    fn write(&self, g: &mut Group, end_ms: i64, out: &mut Vec<Work>) {
        let tags: BTreeMap<String, String> = g.tags.iter().cloned().collect();
        let timestamp = rfc3339_ms(end_ms);
        for o in &self.outputs {
            let acc = &mut g.accs[o.read];
            let value = match o.quantile {
                Some(q) => acc.quantile(q).and_then(float),
                None => match acc.value() {
                    Some(StatValue::Int(i)) => Some(i.into()),
                    Some(StatValue::Float(f)) => float(f),
                    None => None,
                },
            };
            let Some(value) = value else { continue };
            let m = MetricEvent {
                name: o.name.clone(),
                kind: o.kind,
                value,
                timestamp: Some(timestamp.clone()),
                interval_ms: Some(self.interval),
                tags: tags.clone(),
                sample_rate: None,
            };
            out.push(Work::Raw(m.to_event()));
        }
    }
}

/// A group value as a tag: text as is, numbers and booleans as written;
/// objects, arrays and null make no tag.
fn tag_text(v: &Value) -> Option<String> {
    match v {
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => serde_json::to_string(v).ok(),
        _ => crate::pipeline::work::text(v).map(|t| String::from_utf8_lossy(t).into_owned()),
    }
}

fn hash(v: &Value) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    match crate::pipeline::work::text(v) {
        Some(t) => t.hash(&mut h),
        None => serde_json::to_vec(v).unwrap_or_default().hash(&mut h),
    }
    h.finish()
}
