//! `throttle`: at most `limit` events per `window` for each key (the value
//! of `key`), the rest removed (counted `throttle`) or, with `drop: false`,
//! passed on marked `throttled: true`. A token bucket per key, full at
//! first, refilled continuously at `limit` per `window`: a burst of `limit`
//! passes at once, then `limit` more per window. The arithmetic is in whole
//! units (nanoseconds times `limit`), so "exactly `limit` per window" is
//! exact, not nearly.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::time::Instant;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::keyed::{DEFAULT_MAX_KEYS, Keyed, key_of};
use super::{DropReason, Function, Tally, Work};
use crate::config::units::Dur;

fn default_window() -> Dur {
    Dur::secs(1)
}
fn yes() -> bool {
    true
}
fn default_tag_field() -> String {
    "throttled".into()
}
fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// Events let through per window, per key.
    pub limit: u64,
    /// The window (1s).
    #[serde(default = "default_window")]
    pub window: Dur,
    /// A field whose every value has its own bucket (default: one bucket).
    #[serde(default)]
    pub key: Option<String>,
    /// Remove what is over the limit (true), or pass it on marked.
    #[serde(default = "yes")]
    pub drop: bool,
    /// With `drop: false`, the field set to `true` on events over the limit.
    #[serde(default = "default_tag_field")]
    pub tag_field: String,
    /// Distinct keys remembered; the rest share one bucket (100000).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// One key's bucket: credit in units of a nanosecond times `limit`; an
/// event costs `window` nanoseconds' worth of them.
struct Bucket {
    credit: u128,
    at: Instant,
}

pub struct State {
    buckets: Mutex<Keyed<Bucket>>,
}

impl ThrottleConfig {
    fn check(&self) -> Result<(Option<OwnedValuePath>, OwnedValuePath), String> {
        if self.limit == 0 {
            return Err("limit: at least 1".into());
        }
        if self.window.get().is_zero() {
            return Err("window: more than zero".into());
        }
        let key = super::path::parse_opt(self.key.as_deref(), "key")?;
        let tag = super::path::parse(&self.tag_field).map_err(|e| format!("tag_field: {e}"))?;
        Ok((key, tag))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    pub fn build(&self, slot: &super::state::Slot) -> Result<Box<dyn Function>, String> {
        let (key, tag) = self.check()?;
        let max_keys = self.max_keys;
        let state = slot.get(|| State {
            buckets: Mutex::new(Keyed::new(max_keys, "throttle")),
        });
        let window = self.window.get().as_nanos();
        Ok(Box::new(Throttle {
            key,
            tag: (!self.drop).then_some(tag),
            limit: u128::from(self.limit),
            cost: window,
            capacity: window * u128::from(self.limit),
            state,
        }))
    }
}

struct Throttle {
    key: Option<OwnedValuePath>,
    /// Where to mark events over the limit instead of removing them.
    tag: Option<OwnedValuePath>,
    limit: u128,
    cost: u128,
    capacity: u128,
    state: Arc<State>,
}

impl Function for Throttle {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut buckets = self.state.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let capacity = self.capacity;
        for mut w in batch {
            let key = match &self.key {
                Some(_) => key_of(w.value_mut(), self.key.as_ref()),
                None => Vec::new(),
            };
            let b = buckets.get(&key, || Bucket {
                credit: capacity,
                at: now,
            });
            let elapsed = now.saturating_duration_since(b.at).as_nanos();
            b.credit = (b.credit + elapsed * self.limit).min(self.capacity);
            b.at = now;
            if b.credit >= self.cost {
                b.credit -= self.cost;
                out.push(w);
            } else if let Some(tag) = &self.tag {
                w.value_mut().insert(tag, Value::Boolean(true));
                out.push(w);
            } else {
                tally.drop(DropReason::Throttle);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pipeline::state::Slot;

    fn run(f: &dyn Function, events: &[String]) -> (Vec<serde_json::Value>, u64) {
        let (out, tally) = crate::pipeline::tests::run_json(f, events);
        (out, tally.dropped[DropReason::Throttle as usize])
    }

    fn events(keys: &[&str], each: usize) -> Vec<String> {
        (0..each)
            .flat_map(|i| {
                keys.iter()
                    .map(move |k| format!(r#"{{"host":"{k}","i":{i}}}"#))
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn exactly_limit_per_window_per_key_on_the_paused_clock() {
        let c: ThrottleConfig =
            serde_saphyr::from_str("{type: throttle, limit: 100, window: 10s, key: host}")
                .expect("config");
        let f = c.build(&Slot::detached()).expect("builds");
        for window in 0..5 {
            let (out, dropped) = run(f.as_ref(), &events(&["a", "b", "c"], 337));
            for k in ["a", "b", "c"] {
                let n = out.iter().filter(|e| e["host"] == k).count();
                assert_eq!(n, 100, "window {window}, key {k}");
            }
            assert_eq!(dropped, 3 * 237);
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        // Half a window refills half the bucket, exactly.
        run(f.as_ref(), &events(&["a"], 1000));
        tokio::time::advance(Duration::from_secs(5)).await;
        let (out, _) = run(f.as_ref(), &events(&["a"], 1000));
        assert_eq!(out.len(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn marks_instead_of_dropping() {
        let c: ThrottleConfig =
            serde_saphyr::from_str("{type: throttle, limit: 2, drop: false}").expect("config");
        let f = c.build(&Slot::detached()).expect("builds");
        let (out, dropped) = run(f.as_ref(), &events(&["a"], 5));
        assert_eq!(dropped, 0);
        assert_eq!(out.len(), 5);
        assert_eq!(out.iter().filter(|e| e["throttled"] == true).count(), 3);
    }
}
