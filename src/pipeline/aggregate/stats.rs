//! One statistic of one group in one pane, and how panes merge (a sliding
//! window is the merge of its panes).
//!
//! Counts and sums are exact (a sum of integers is exact while it stays
//! below 2^53). Percentiles come from a DDSketch (`sketches-ddsketch`): the
//! value reported for quantile q is within `relative_accuracy` (1 %) of the
//! value at rank ⌊q·(n−1)⌋, for values whose magnitude lies between 1e-9
//! and the 2,048 bins it keeps (about 1e-9 to 1e8 at 1 %). `distinct_count`
//! is HyperLogLog++ at precision 12 (`hyperloglogplus`): exact-ish while
//! small (its sparse form), standard error 1.6 % beyond. Memory per group
//! and pane: a few words for the exact statistics, up to 3 KiB for a
//! distinct count, up to 32 KiB for a sketch.

use std::hash::{BuildHasherDefault, DefaultHasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::Deserialize;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// What a metric computes over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    /// Events (with `field`: events that have it).
    Count,
    Sum,
    Min,
    Max,
    Avg,
    DistinctCount,
    /// `percentiles` of the field's values (default 50, 90, 99).
    Percentile,
}

impl Stat {
    /// Whether it reads numbers from `field`.
    pub fn numeric(self) -> bool {
        !matches!(self, Stat::Count | Stat::DistinctCount)
    }
}

type Hll = HyperLogLogPlus<u64, BuildHasherDefault<DefaultHasher>>;

const HLL_PRECISION: u8 = 12;

/// A statistic's running state.
#[derive(Clone)]
pub enum Acc {
    Count(u64),
    Sum { sum: f64, n: u64 },
    Min(Option<f64>),
    Max(Option<f64>),
    Avg { sum: f64, n: u64 },
    Distinct(Box<Hll>),
    Sketch(Box<DDSketch>),
}

/// What one event offers a statistic: its field's number, its field's
/// text (for distinct counts, as a hash), or only that it is there.
pub enum Sample {
    Number(f64),
    Hash(u64),
    Present,
}

impl Acc {
    pub fn new(stat: Stat, sketch: SketchConfig) -> Acc {
        match stat {
            Stat::Count => Acc::Count(0),
            Stat::Sum => Acc::Sum { sum: 0.0, n: 0 },
            Stat::Min => Acc::Min(None),
            Stat::Max => Acc::Max(None),
            Stat::Avg => Acc::Avg { sum: 0.0, n: 0 },
            Stat::DistinctCount => Acc::Distinct(Box::new(new_hll())),
            Stat::Percentile => Acc::Sketch(Box::new(DDSketch::new(sketch))),
        }
    }

    pub fn add(&mut self, s: &Sample) {
        match (self, s) {
            (Acc::Count(c), _) => *c += 1,
            (Acc::Sum { sum, n } | Acc::Avg { sum, n }, Sample::Number(v)) => {
                *sum += v;
                *n += 1;
            }
            (Acc::Min(m), Sample::Number(v)) => *m = Some(m.map_or(*v, |m| m.min(*v))),
            (Acc::Max(m), Sample::Number(v)) => *m = Some(m.map_or(*v, |m| m.max(*v))),
            (Acc::Distinct(h), Sample::Hash(x)) => h.insert(x),
            (Acc::Sketch(d), Sample::Number(v)) => d.add(*v),
            _ => {}
        }
    }

    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum { sum, n }, Acc::Sum { sum: s, n: m })
            | (Acc::Avg { sum, n }, Acc::Avg { sum: s, n: m }) => {
                *sum += s;
                *n += m;
            }
            (Acc::Min(a), Acc::Min(b)) => *a = min_opt(*a, *b, f64::min),
            (Acc::Max(a), Acc::Max(b)) => *a = min_opt(*a, *b, f64::max),
            (Acc::Distinct(a), Acc::Distinct(b)) => {
                // Same precision by construction: merge cannot refuse.
                let _ = a.merge(b.as_ref());
            }
            (Acc::Sketch(a), Acc::Sketch(b)) => {
                // Same config by construction: merge cannot refuse.
                let _ = a.merge(b);
            }
            _ => {}
        }
    }

    /// The value for a count-like statistic (an integer), or for the rest a
    /// float; `None` when there was nothing to compute it from (a sum of no
    /// numbers is not zero: the series is left out of that window).
    pub fn value(&mut self) -> Option<Value> {
        match self {
            Acc::Count(c) => Some(Value::Int(*c)),
            Acc::Sum { sum, n } => (*n > 0).then_some(Value::Float(*sum)),
            Acc::Min(m) | Acc::Max(m) => m.map(Value::Float),
            Acc::Avg { sum, n } => (*n > 0).then(|| Value::Float(*sum / *n as f64)),
            Acc::Distinct(h) => Some(Value::Int(h.count().round() as u64)),
            Acc::Sketch(_) => None,
        }
    }

    /// A sketch's quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            Acc::Sketch(d) => d.quantile(q).ok().flatten(),
            _ => None,
        }
    }
}

pub enum Value {
    Int(u64),
    Float(f64),
}

fn min_opt(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

fn new_hll() -> Hll {
    // The precision is a constant inside the allowed 4..=18.
    match HyperLogLogPlus::new(HLL_PRECISION, BuildHasherDefault::default()) {
        Ok(h) => h,
        Err(e) => unreachable!("precision {HLL_PRECISION} is valid: {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_statistics_and_merges() {
        let cfg = SketchConfig::defaults();
        let mut accs: Vec<Acc> = [Stat::Count, Stat::Sum, Stat::Min, Stat::Max, Stat::Avg]
            .into_iter()
            .map(|s| Acc::new(s, cfg))
            .collect();
        let mut other = accs.clone();
        for v in 1..=10 {
            for a in &mut accs {
                a.add(&Sample::Number(f64::from(v)));
            }
        }
        for a in &mut other {
            a.add(&Sample::Number(-5.0));
        }
        let got = |a: &mut Acc| match a.value() {
            Some(Value::Int(i)) => i as f64,
            Some(Value::Float(f)) => f,
            None => f64::NAN,
        };
        let values: Vec<f64> = accs.iter_mut().map(got).collect();
        assert_eq!(values, [10.0, 55.0, 1.0, 10.0, 5.5]);
        for (a, b) in accs.iter_mut().zip(&other) {
            a.merge(b);
        }
        let merged: Vec<f64> = accs.iter_mut().map(got).collect();
        assert_eq!(merged, [11.0, 50.0, -5.0, 10.0, 50.0 / 11.0]);
        assert!(
            Acc::new(Stat::Sum, cfg).value().is_none(),
            "no numbers, no sum"
        );
    }

    #[test]
    fn distinct_counts_are_close() {
        let mut a = Acc::new(Stat::DistinctCount, SketchConfig::defaults());
        for i in 0..100u64 {
            a.add(&Sample::Hash(i));
            a.add(&Sample::Hash(i));
        }
        let Some(Value::Int(n)) = a.value() else {
            panic!("an integer")
        };
        assert_eq!(n, 100, "small sets are counted exactly");
        for i in 0..100_000u64 {
            a.add(&Sample::Hash(i));
        }
        let Some(Value::Int(n)) = a.value() else {
            panic!("an integer")
        };
        let err = (n as f64 - 100_000.0).abs() / 100_000.0;
        assert!(err < 0.05, "{n}: within 3 standard errors");
    }
}
