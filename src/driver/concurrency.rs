//! How many requests a destination keeps in flight: a fixed number, or
//! `adaptive`.
//!
//! Adaptive concurrency is AIMD on round-trip time, after Vector's ARC and
//! TCP congestion control. The limit starts at 1. After each response:
//!
//! - **Back off** (multiply by 0.9, at least 1) when the peer pushed back — a
//!   retryable error, a timeout, a throttle — or the RTT jumped above its
//!   moving mean by more than 2.5 mean deviations (the queue is building).
//! - **Grow** (add 1, up to `request.max_concurrency`) when the limit was
//!   actually reached (requests were waiting for a slot, so more could be
//!   used) and the RTT stayed within one deviation of its mean (the peer is
//!   not slowing down under the extra load).
//! - Otherwise hold.
//!
//! The mean and deviation are exponentially weighted (α = 0.4). Each change
//! is made at most once per mean RTT, so one burst of slow responses counts
//! as one signal, and growth is one step per round trip, not per response.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// `request.concurrency`: a number, or `adaptive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Fixed(usize),
    Adaptive,
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Concurrency;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of requests, or `adaptive`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Concurrency, E> {
                if v == 0 {
                    return Err(E::custom("concurrency must be at least 1"));
                }
                Ok(Concurrency::Fixed(usize::try_from(v).unwrap_or(usize::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Concurrency, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("concurrency must be at least 1"))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Concurrency, E> {
                match v {
                    "adaptive" => Ok(Concurrency::Adaptive),
                    other => other
                        .parse::<u64>()
                        .map_err(|_| {
                            E::custom(format!("`{other}`: expected a number or `adaptive`"))
                        })
                        .and_then(|n| self.visit_u64(n)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What a response says about congestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The peer handled it normally (delivered or permanently rejected).
    Ok,
    /// The peer pushed back: retryable error, timeout, throttle.
    Backoff,
}

pub struct Limiter {
    slots: Arc<Semaphore>,
    limit: AtomicUsize,
    /// Permits to withhold as they come back, after a decrease found too
    /// few free to forget at once.
    debt: AtomicUsize,
    held: AtomicUsize,
    max: usize,
    aimd: Option<Mutex<Aimd>>,
    gauge: Gauge,
}

struct Aimd {
    mean: f64,
    deviation: f64,
    samples: u64,
    last_change: Instant,
}

const ALPHA: f64 = 0.4;
const DECREASE: f64 = 0.9;
const SPIKE: f64 = 2.5;

/// A slot to send one job in; returned (or withheld, after a decrease) on drop.
pub struct Slot {
    limiter: Arc<Limiter>,
    permit: Option<OwnedSemaphorePermit>,
    /// Whether every slot was taken when this one was granted.
    pub at_limit: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.held.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = self.permit.take() {
            let mut debt = self.limiter.debt.load(Ordering::Relaxed);
            while debt > 0 {
                match self.limiter.debt.compare_exchange(
                    debt,
                    debt - 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        p.forget();
                        return;
                    }
                    Err(now) => debt = now,
                }
            }
        }
    }
}

impl Limiter {
    pub fn new(concurrency: Concurrency, max: usize, gauge: Gauge) -> Arc<Self> {
        let (start, aimd) = match concurrency {
            Concurrency::Fixed(n) => (n.max(1), None),
            Concurrency::Adaptive => (
                1,
                Some(Mutex::new(Aimd {
                    mean: 0.0,
                    deviation: 0.0,
                    samples: 0,
                    last_change: Instant::now(),
                })),
            ),
        };
        gauge.set(start as i64);
        Arc::new(Limiter {
            slots: Arc::new(Semaphore::new(start)),
            limit: AtomicUsize::new(start),
            debt: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            max: max.max(start),
            aimd,
            gauge,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let at_limit = self.slots.available_permits() == 0;
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        self.held.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            limiter: self.clone(),
            permit: Some(permit),
            at_limit,
        })
    }

    /// Feed back one response (adaptive only).
    pub fn feedback(&self, rtt: Duration, signal: Signal, at_limit: bool) {
        let Some(aimd) = &self.aimd else { return };
        let mut a = aimd.lock().unwrap_or_else(|e| e.into_inner());
        let rtt = rtt.as_secs_f64();
        let now = Instant::now();
        let spike = a.samples >= 5 && rtt > a.mean + SPIKE * a.deviation.max(a.mean * 0.05);
        let calm = a.samples >= 5 && rtt <= a.mean + a.deviation;
        // Update the moving statistics after judging this sample against them.
        if a.samples == 0 {
            a.mean = rtt;
            a.deviation = rtt / 2.0;
        } else {
            a.deviation = (1.0 - ALPHA) * a.deviation + ALPHA * (rtt - a.mean).abs();
            a.mean = (1.0 - ALPHA) * a.mean + ALPHA * rtt;
        }
        a.samples += 1;
        let settled = now.duration_since(a.last_change).as_secs_f64() >= a.mean;
        if !settled {
            return;
        }
        let limit = self.limit();
        if signal == Signal::Backoff || spike {
            let target = ((limit as f64 * DECREASE).floor() as usize).max(1);
            if target < limit {
                self.shrink(limit - target);
                a.last_change = now;
            }
        } else if at_limit && calm && limit < self.max {
            self.limit.fetch_add(1, Ordering::Relaxed);
            self.slots.add_permits(1);
            self.gauge.set(self.limit() as i64);
            a.last_change = now;
        }
    }

    fn shrink(&self, by: usize) {
        self.limit.fetch_sub(by, Ordering::Relaxed);
        let forgotten = self.slots.forget_permits(by);
        self.debt.fetch_add(by - forgotten, Ordering::Relaxed);
        self.gauge.set(self.limit() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fixed_limit_holds() {
        let l = Limiter::new(Concurrency::Fixed(2), 10, Gauge::default());
        let a = l.acquire().await.unwrap();
        let b = l.acquire().await.unwrap();
        assert!(b.at_limit || !a.at_limit);
        let third = tokio::time::timeout(Duration::from_millis(20), l.acquire()).await;
        assert!(third.is_err(), "a third slot must wait");
        drop(a);
        assert!(l.acquire().await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_grows_under_calm_load_and_backs_off_on_pushback() {
        let l = Limiter::new(Concurrency::Adaptive, 50, Gauge::default());
        assert_eq!(l.limit(), 1);
        for _ in 0..200 {
            tokio::time::advance(Duration::from_millis(10)).await;
            l.feedback(Duration::from_millis(10), Signal::Ok, true);
        }
        let grown = l.limit();
        assert!(grown >= 20, "grew to {grown}");
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(10)).await;
            l.feedback(Duration::from_millis(10), Signal::Backoff, true);
        }
        assert!(l.limit() < grown / 2, "backed off to {}", l.limit());
        // Not at the limit: no growth however calm.
        let before = l.limit();
        for _ in 0..50 {
            tokio::time::advance(Duration::from_millis(10)).await;
            l.feedback(Duration::from_millis(10), Signal::Ok, false);
        }
        assert_eq!(l.limit(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn shrinking_below_held_slots_withholds_them_as_they_return() {
        let l = Limiter::new(Concurrency::Fixed(4), 4, Gauge::default());
        let slots: Vec<Slot> = futures::future::join_all((0..4).map(|_| l.acquire()))
            .await
            .into_iter()
            .map(Option::unwrap)
            .collect();
        l.shrink(3);
        assert_eq!(l.limit(), 1);
        drop(slots);
        assert_eq!(l.slots.available_permits(), 1);
    }
}
