//! `sample`: keep 1 in `rate` events, each key (the value of `key`) counted
//! on its own, so a quiet host is sampled as evenly as a loud one; kept
//! events carry the rate they stand for (`sample_rate`) so counts
//! downstream can be scaled back. Systematic, not random: of every `rate`
//! events of a key the first is kept, so the kept count is exact
//! (`ceil(n / rate)` of `n`), as Vector's sample is without a key.
//!
//! `dynamic` (Cribl's dynamic sampling): each key's rate for a `period` is
//! set by its volume in the period before — `log` (the natural log) or
//! `sqrt` of it, at most `max_rate` — and a key with fewer than
//! `min_events` in that period is kept whole, so rare keys survive while
//! floods are thinned. The first period keeps everything.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::keyed::{DEFAULT_MAX_KEYS, Keyed, key_of};
use super::{DropReason, Function, Tally, Work};
use crate::config::units::Dur;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dynamic {
    Log,
    Sqrt,
}

fn default_rate_field() -> String {
    "sample_rate".into()
}
fn default_period() -> Dur {
    Dur::secs(30)
}
fn default_min_events() -> u64 {
    30
}
fn default_max_rate() -> u64 {
    100
}
fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// Keep 1 in `rate` (static sampling; not with `dynamic`).
    #[serde(default)]
    pub rate: Option<u64>,
    /// A field whose every value is sampled on its own (default: one key).
    #[serde(default)]
    pub key: Option<String>,
    /// Rates from each key's volume: `log` or `sqrt`.
    #[serde(default)]
    pub dynamic: Option<Dynamic>,
    /// Dynamic: how long a rate holds before the next is worked out (30s).
    #[serde(default = "default_period")]
    pub period: Dur,
    /// Dynamic: below this many events in a period, a key is kept whole (30).
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// Dynamic: the highest rate (100).
    #[serde(default = "default_max_rate")]
    pub max_rate: u64,
    /// The field kept events carry their rate in (`sample_rate`).
    #[serde(default = "default_rate_field")]
    pub rate_field: String,
    /// Distinct keys remembered; the rest share one count (100000).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// One key's counts.
#[derive(Default)]
struct Count {
    /// Events seen in this period (dynamic) or ever (static).
    seen: u64,
    /// The rate this key is sampled at now.
    rate: u64,
}

/// What is kept across batches (and reloads that keep the function).
pub struct State {
    inner: Mutex<Periods>,
}

struct Periods {
    current: Keyed<Count>,
    /// Each key's volume in the period before (dynamic).
    previous: Keyed<Count>,
    started: Instant,
}

impl SampleConfig {
    fn check(&self) -> Result<(Option<OwnedValuePath>, OwnedValuePath), String> {
        match (self.rate, self.dynamic) {
            (Some(0), _) => return Err("rate: at least 1".into()),
            (None, None) => {
                return Err("set `rate` (keep 1 in rate) or `dynamic` (log or sqrt)".into());
            }
            (Some(_), Some(_)) => return Err("set `rate` or `dynamic`, not both".into()),
            _ => {}
        }
        if self.dynamic.is_some() && (self.max_rate == 0 || self.period.get().is_zero()) {
            return Err("max_rate and period: more than zero".into());
        }
        let key = super::path::parse_opt(self.key.as_deref(), "key")?;
        let field = super::path::parse(&self.rate_field).map_err(|e| format!("rate_field: {e}"))?;
        Ok((key, field))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    pub fn build(&self, slot: &super::state::Slot) -> Result<Box<dyn Function>, String> {
        let (key, rate_field) = self.check()?;
        let max_keys = self.max_keys;
        let state = slot.get(|| State {
            inner: Mutex::new(Periods {
                current: Keyed::new(max_keys, "sample"),
                previous: Keyed::new(max_keys, "sample"),
                started: Instant::now(),
            }),
        });
        Ok(Box::new(Sample {
            key,
            rate_field,
            rate: self.rate,
            dynamic: self.dynamic,
            period: self.period.get(),
            min_events: self.min_events,
            max_rate: self.max_rate,
            state,
        }))
    }
}

struct Sample {
    key: Option<OwnedValuePath>,
    rate_field: OwnedValuePath,
    rate: Option<u64>,
    dynamic: Option<Dynamic>,
    period: Duration,
    min_events: u64,
    max_rate: u64,
    state: std::sync::Arc<State>,
}

impl Sample {
    /// A key's rate for a period, from its volume in the one before.
    fn dynamic_rate(&self, mode: Dynamic, before: u64) -> u64 {
        if before < self.min_events.max(1) {
            return 1;
        }
        let n = before as f64;
        let r = match mode {
            Dynamic::Log => n.ln(),
            Dynamic::Sqrt => n.sqrt(),
        };
        (r.floor() as u64).clamp(1, self.max_rate)
    }
}

impl Function for Sample {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut p = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        if self.dynamic.is_some() && p.started.elapsed() >= self.period {
            let p = &mut *p;
            std::mem::swap(&mut p.previous, &mut p.current);
            p.current.clear();
            p.started = Instant::now();
        }
        for mut w in batch {
            let v = w.value_mut();
            let key = key_of(v, self.key.as_ref());
            let Periods {
                current, previous, ..
            } = &mut *p;
            let c = current.get(&key, Count::default);
            // A key's rate is set when it is first seen in a period.
            if c.seen == 0 {
                c.rate = match (self.rate, self.dynamic) {
                    (Some(r), _) => r,
                    (None, Some(mode)) => {
                        self.dynamic_rate(mode, previous.peek(&key).map_or(0, |b| b.seen))
                    }
                    (None, None) => 1,
                }
                .max(1);
            }
            let rate = c.rate;
            let keep = c.seen.is_multiple_of(rate);
            c.seen += 1;
            if keep {
                v.insert(&self.rate_field, Value::Integer(rate as i64));
                out.push(w);
            } else {
                tally.drop(DropReason::Sample);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::state::Slot;

    fn build(yaml: &str) -> Box<dyn Function> {
        let c: SampleConfig = serde_saphyr::from_str(yaml).expect("config");
        c.build(&Slot::detached()).expect("builds")
    }

    fn run(f: &dyn Function, events: Vec<String>) -> (Vec<serde_json::Value>, Tally) {
        crate::pipeline::tests::run_json(f, &events)
    }

    #[test]
    fn per_key_counts_are_exact() {
        // 100,000 events over 37 keys, in batches: each key keeps
        // ceil(n / 10) of its n, however the batches fall.
        let f = build("{type: sample, rate: 10, key: host}");
        let mut per_key = [0u64; 37];
        let mut kept = [0u64; 37];
        let mut dropped = 0;
        for chunk in (0..100_000u64).collect::<Vec<_>>().chunks(777) {
            let events = chunk
                .iter()
                .map(|i| {
                    // Uneven volumes: key k gets about (k + 1) shares.
                    let k = ((i * 7919) % 703) as usize;
                    let k = (0..37).find(|j| k < (j + 1) * (j + 2) / 2).unwrap_or(36);
                    per_key[k] += 1;
                    format!(r#"{{"host":"h{k}","i":{i}}}"#)
                })
                .collect();
            let (out, tally) = run(f.as_ref(), events);
            dropped += tally.dropped[DropReason::Sample as usize];
            for e in out {
                assert_eq!(e["sample_rate"], 10);
                let k: usize = e["host"]
                    .as_str()
                    .and_then(|h| h[1..].parse().ok())
                    .expect("key");
                kept[k] += 1;
            }
        }
        for k in 0..37 {
            assert_eq!(kept[k], per_key[k].div_ceil(10), "key h{k}");
        }
        assert_eq!(kept.iter().sum::<u64>() + dropped, 100_000);
    }

    #[test]
    fn dynamic_keeps_rare_keys_and_thins_floods() {
        let f = build("{type: sample, dynamic: log, key: host, period: 1h, min_events: 30}");
        // First period: everything kept at rate 1.
        let flood = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| {
                    let host = if i % 1000 == 0 { "rare" } else { "loud" };
                    format!(r#"{{"host":"{host}"}}"#)
                })
                .collect()
        };
        let (out, _) = run(f.as_ref(), flood(10_000));
        assert_eq!(out.len(), 10_000);
        // The next period, forced by hand: loud had 9,990 (ln: rate 9), rare 10 (kept whole).
        let c: SampleConfig =
            serde_saphyr::from_str("{type: sample, dynamic: log, key: host, period: 1h}")
                .expect("config");
        let s = Sample {
            key: Some(super::super::path::parse("host").expect("path")),
            rate_field: super::super::path::parse("sample_rate").expect("path"),
            rate: None,
            dynamic: c.dynamic,
            period: Duration::ZERO,
            min_events: 30,
            max_rate: 100,
            state: std::sync::Arc::new(State {
                inner: Mutex::new(Periods {
                    current: Keyed::new(100, "sample"),
                    previous: Keyed::new(100, "sample"),
                    started: Instant::now(),
                }),
            }),
        };
        run(&s, flood(10_000));
        let (out, tally) = run(&s, flood(10_000));
        let loud = out.iter().filter(|e| e["host"] == "loud").count();
        let rare = out.iter().filter(|e| e["host"] == "rare").count();
        assert_eq!(rare, 10, "a rare key is kept whole");
        assert_eq!(loud, 9_990usize.div_ceil(9));
        assert!(
            out.iter()
                .filter(|e| e["host"] == "loud")
                .all(|e| e["sample_rate"] == 9)
        );
        assert_eq!(
            out.len() as u64 + tally.dropped[DropReason::Sample as usize],
            10_000
        );
    }

    #[test]
    fn refusals() {
        for yaml in [
            "{type: sample}",
            "{type: sample, rate: 0}",
            "{type: sample, rate: 2, dynamic: log}",
            "{type: sample, rate: 2, key: ''}",
        ] {
            let c: SampleConfig = serde_saphyr::from_str(yaml).expect("config");
            assert!(c.validate().is_err(), "{yaml}");
        }
    }
}
