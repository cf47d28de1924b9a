//! Live samples of the events passing a point of the pipeline (`sluice tap`).
//!
//! Every source, route, pipeline (what it sends on) and destination has a
//! tap point. With nobody
//! watching, a point costs one relaxed atomic load per batch. A watcher
//! (`Subscriber`) takes at most `rate` events a second (a token bucket,
//! refilled once per batch, not per event), optionally only those matching
//! its filter, into a bounded channel it drains at its own pace: when the
//! channel is full the sample is skipped and counted as missed. So a slow
//! watcher loses samples, never events, and never holds the pipeline up —
//! offering only ever `try_send`s.
//!
//! Points are kept by name in `Taps`, so a watcher stays attached across
//! reloads for as long as its route or destination exists.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::event::Event;
use crate::expr::{Filter, Scratch};

/// Samples a watcher may have waiting before further ones count as missed.
pub const CHANNEL: usize = 1024;

/// What kind of component a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointKind {
    Source,
    Route,
    Pipeline,
    Destination,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Source => "source",
            PointKind::Route => "route",
            PointKind::Pipeline => "pipeline",
            PointKind::Destination => "destination",
        }
    }
}

/// One watcher of one point.
pub struct Subscriber {
    tx: mpsc::Sender<Event>,
    filter: Option<Filter>,
    rate: u64,
    state: Mutex<Bucket>,
    /// Samples skipped because the watcher's channel was full.
    pub missed: AtomicU64,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    scratch: Option<Scratch>,
}

impl Subscriber {
    /// Refill the bucket for the time since the last refill.
    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        let rate = self.rate as f64;
        b.tokens = (b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate).min(rate);
        b.refilled = now;
    }

    /// Offer events: take up to the tokens available, matching the filter.
    /// Returns the whole tokens left.
    fn offer<'a>(&self, events: impl Iterator<Item = &'a Event>, refill: bool) -> u32 {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if refill {
            self.refill(&mut b);
        }
        let Bucket {
            tokens, scratch, ..
        } = &mut *b;
        for e in events {
            if *tokens < 1.0 {
                break;
            }
            if let (Some(f), Some(s)) = (&self.filter, scratch.as_mut())
                && !f.matches(e, s)
            {
                continue;
            }
            *tokens -= 1.0;
            if self.tx.try_send(e.clone()).is_err() {
                self.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
        *tokens as u32
    }
}

/// One source's, route's or destination's tap.
#[derive(Default)]
pub struct TapPoint {
    /// Watchers attached; read before anything else, per batch.
    active: AtomicUsize,
    subscribers: ArcSwap<Vec<Arc<Subscriber>>>,
}

impl TapPoint {
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Sample a batch's `events` for every watcher. Call only when
    /// `is_active`.
    pub fn offer<'a>(&self, events: impl Iterator<Item = &'a Event> + Clone) {
        for s in self.live() {
            s.offer(events.clone(), true);
        }
    }

    /// How many samples the watchers can take now (the most any one can):
    /// the router asks once per batch, then offers matching events one by
    /// one (`offer_one`) only while this is above zero, so a watched route
    /// costs nothing per event once its watchers are served.
    pub fn budget(&self) -> u32 {
        self.live()
            .map(|s| s.offer(std::iter::empty(), true))
            .max()
            .unwrap_or(0)
    }

    /// Offer one event within the batch `budget` was asked for; the budget
    /// left.
    pub fn offer_one(&self, event: &Event) -> u32 {
        self.live()
            .map(|s| s.offer(std::iter::once(event), false))
            .max()
            .unwrap_or(0)
    }

    fn live(&self) -> impl Iterator<Item = Arc<Subscriber>> {
        let list = self.subscribers.load_full();
        (0..list.len())
            .map(move |i| list[i].clone())
            .filter(|s| !s.tx.is_closed())
    }

    fn attach(&self, s: Arc<Subscriber>) {
        self.subscribers.rcu(|list| {
            let mut l = (**list).clone();
            l.push(s.clone());
            l
        });
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    fn detach(&self, s: &Arc<Subscriber>) {
        self.subscribers.rcu(|list| {
            list.iter()
                .filter(|x| !Arc::ptr_eq(x, s))
                .cloned()
                .collect::<Vec<_>>()
        });
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

type Points = HashMap<(PointKind, String), Arc<TapPoint>>;

/// Every tap point by kind and name.
#[derive(Clone, Default)]
pub struct Taps {
    points: Arc<Mutex<Points>>,
}

/// A watcher's end: samples arrive on `rx`; dropping it detaches.
pub struct Watch {
    pub rx: mpsc::Receiver<Event>,
    pub subscriber: Arc<Subscriber>,
    point: Arc<TapPoint>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.point.detach(&self.subscriber);
    }
}

impl Taps {
    /// The point of a component (made on first use, at build time).
    pub fn point(&self, kind: PointKind, name: &str) -> Arc<TapPoint> {
        self.points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((kind, name.to_string()))
            .or_default()
            .clone()
    }

    /// Attach a watcher to an existing point; `None` if there is no such
    /// component.
    pub fn watch(
        &self,
        kind: PointKind,
        name: &str,
        filter: Option<Filter>,
        rate: u64,
    ) -> Option<Watch> {
        let point = self
            .points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(kind, name.to_string()))?
            .clone();
        let (tx, rx) = mpsc::channel(CHANNEL);
        let rate = rate.max(1);
        let subscriber = Arc::new(Subscriber {
            tx,
            rate,
            state: Mutex::new(Bucket {
                // Start with a full second's worth: the first batch samples.
                tokens: rate as f64,
                refilled: Instant::now(),
                scratch: filter.as_ref().map(Filter::scratch),
            }),
            filter,
            missed: AtomicU64::new(0),
        });
        point.attach(subscriber.clone());
        Some(Watch {
            rx,
            subscriber,
            point,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                Event::json(Bytes::from(format!(
                    "{{\"seq\":{i},\"level\":\"{}\"}}",
                    if i % 2 == 0 { "info" } else { "error" }
                )))
            })
            .collect()
    }

    #[tokio::test]
    async fn samples_at_most_the_rate_and_counts_what_a_full_channel_missed() {
        let taps = Taps::default();
        let p = taps.point(PointKind::Route, "r");
        assert!(!p.is_active());
        let filter = Filter::new("level == \"error\"").unwrap();
        let mut w = taps.watch(PointKind::Route, "r", Some(filter), 10).unwrap();
        assert!(p.is_active());
        let batch = events(100);
        p.offer(batch.iter());
        // Ten tokens, only errors (odd seqs).
        let mut got = Vec::new();
        while let Ok(e) = w.rx.try_recv() {
            got.push(e);
        }
        assert_eq!(got.len(), 10);
        assert!(
            got.iter()
                .all(|e| std::str::from_utf8(&e.raw).unwrap().contains("error"))
        );
        // A watcher that never reads: past the channel, samples are missed.
        let mut slow = taps.watch(PointKind::Route, "r", None, 1_000_000).unwrap();
        let many = events(CHANNEL + 50);
        p.offer(many.iter());
        assert_eq!(slow.subscriber.missed.load(Ordering::Relaxed), 50);
        assert!(slow.rx.try_recv().is_ok());
        drop(w);
        drop(slow);
        assert!(!p.is_active());
        assert!(taps.watch(PointKind::Route, "nope", None, 1).is_none());
    }
}
