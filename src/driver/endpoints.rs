//! Load balancing and passive health across a destination's endpoints (URLs,
//! addresses), shared by every destination that has more than one place to
//! send to.
//!
//! - **Selection**: smooth weighted round-robin (as nginx does) among the
//!   endpoints that are up and not paused. Over any window the split follows
//!   the weights exactly, with no randomness to average out; weight 0 never
//!   receives anything.
//! - **Passive health**: when a request fails at the endpoint level
//!   (connection refused, timeout, 5xx), the endpoint is marked down, the
//!   request moves to the next healthy endpoint, and the driver probes the
//!   down endpoint in the background after 2 s, doubling to 60 s, with
//!   jitter (Cribl's reconnect schedule). A probe that succeeds brings it
//!   back; its backoff resets only after a request succeeds on it, so an
//!   endpoint that accepts connections but keeps failing requests is tried
//!   less and less often.
//! - **Pauses**: a peer that says "slow down" (429 or 503 with
//!   `Retry-After`) pauses its endpoint: no request goes there until the
//!   pause ends.
//! - **Backpressure**: only when no endpoint is usable do requests wait here,
//!   and only then is the destination reported as failing.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lane::Consumer;
use crate::metrics::Metrics;

/// First probe delay after an endpoint goes down, and the ceiling.
pub const PROBE_INITIAL: Duration = Duration::from_secs(2);
pub const PROBE_MAX: Duration = Duration::from_secs(60);
/// The longest wait between probes while no endpoint is up: the backoff
/// spares a healthy pool one bad member, but when the whole destination is
/// down, its return must be seen within seconds.
pub const OUTAGE_PROBE: Duration = Duration::from_secs(2);

/// One endpoint as a destination declares it.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// How it is shown in metrics and logs (`sluice_endpoint_up{endpoint=...}`).
    pub name: String,
    pub weight: u32,
}

struct Endpoint {
    name: String,
    weight: i64,
    /// Smooth weighted round-robin state.
    current: i64,
    up: bool,
    /// Times it went down since the last successful request.
    failures: u32,
    paused_until: Option<Instant>,
    up_gauge: Gauge,
    sent: Counter,
}

pub struct Endpoints {
    list: Mutex<Vec<Endpoint>>,
    changed: Notify,
    /// False for destinations without declared endpoints: one implicit
    /// endpoint, always usable, no health tracking, no metrics.
    tracked: bool,
    destination: String,
    metrics: Metrics,
}

fn tracked_endpoint(spec: EndpointSpec, destination: &str, metrics: &Metrics) -> Endpoint {
    let (up_gauge, sent) = metrics.endpoint(destination, &spec.name);
    up_gauge.set(i64::from(spec.weight > 0));
    Endpoint {
        name: spec.name,
        weight: i64::from(spec.weight),
        current: 0,
        up: true,
        failures: 0,
        paused_until: None,
        up_gauge,
        sent,
    }
}

impl Endpoints {
    /// `tracked` with no specs yet: endpoints will come from `update` (a
    /// destination whose names have not resolved yet).
    pub fn new(
        specs: Vec<EndpointSpec>,
        tracked: bool,
        destination: &str,
        metrics: &Metrics,
    ) -> Self {
        let tracked = tracked || !specs.is_empty();
        let list = if tracked {
            specs
                .into_iter()
                .map(|s| tracked_endpoint(s, destination, metrics))
                .collect()
        } else {
            vec![Endpoint {
                name: String::new(),
                weight: 1,
                current: 0,
                up: true,
                failures: 0,
                paused_until: None,
                up_gauge: Gauge::default(),
                sent: Counter::default(),
            }]
        };
        Endpoints {
            list: Mutex::new(list),
            changed: Notify::new(),
            tracked,
            destination: destination.to_string(),
            metrics: metrics.clone(),
        }
    }

    /// Take a new list of endpoints from the destination (after a DNS
    /// refresh, say). Indices are stable: entries that already exist keep
    /// their place and only change weight (0 retires one); new ones are
    /// appended.
    pub fn update(&self, specs: Vec<EndpointSpec>) {
        {
            let mut list = self.lock();
            for (i, spec) in specs.into_iter().enumerate() {
                match list.get_mut(i) {
                    Some(e) => {
                        if e.weight != i64::from(spec.weight) {
                            tracing::info!(endpoint = %e.name, weight = spec.weight, "endpoint weight changed");
                            e.weight = i64::from(spec.weight);
                            e.current = 0;
                            e.up_gauge.set(i64::from(e.up && e.weight > 0));
                        }
                    }
                    None => {
                        tracing::info!(endpoint = %spec.name, "endpoint added");
                        list.push(tracked_endpoint(spec, &self.destination, &self.metrics));
                    }
                }
            }
        }
        self.changed.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        // Every critical section leaves the list consistent.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn name(&self, i: usize) -> String {
        self.lock()
            .get(i)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    /// Pick an endpoint, waiting while none is usable. `None` if `stop`
    /// fires first. While it waits, the lane reports the peer as failing.
    pub async fn acquire(&self, lane: &Consumer, stop: &CancellationToken) -> Option<usize> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = match self.pick() {
                Ok(i) => return Some(i),
                Err(wake) => wake,
            };
            lane.set_peer_failing(true);
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = &mut notified => {}
                _ = sleep_until_opt(wake) => {}
            }
        }
    }

    /// Smooth weighted round-robin over usable endpoints; otherwise when the
    /// earliest pause ends (if any endpoint is merely paused).
    fn pick(&self) -> Result<usize, Option<Instant>> {
        let now = Instant::now();
        let mut list = self.lock();
        let mut total = 0;
        let mut best: Option<(usize, i64)> = None;
        let mut wake: Option<Instant> = None;
        for (i, e) in list.iter_mut().enumerate() {
            if !e.up || e.weight == 0 {
                continue;
            }
            if let Some(until) = e.paused_until {
                if until > now {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                    continue;
                }
                e.paused_until = None;
            }
            e.current += e.weight;
            total += e.weight;
            if best.is_none_or(|(_, c)| e.current > c) {
                best = Some((i, e.current));
            }
        }
        match best {
            Some((b, _)) => {
                list[b].current -= total;
                Ok(b)
            }
            None => Err(wake),
        }
    }

    /// A request succeeded on `i` carrying `events`.
    pub fn succeeded(&self, i: usize, events: u64) {
        let mut list = self.lock();
        if let Some(e) = list.get_mut(i) {
            e.failures = 0;
            e.sent.inc_by(events);
            if !e.up {
                e.up = true;
                e.up_gauge.set(1);
            }
        }
    }

    /// A request failed at the endpoint level. Returns the delay before the
    /// first probe if the endpoint just went down (the caller starts the
    /// probe), `None` if it was already down or health is not tracked.
    pub fn failed(&self, i: usize) -> Option<Duration> {
        if !self.tracked {
            return None;
        }
        let mut list = self.lock();
        let e = list.get_mut(i)?;
        if !e.up {
            // A request sent before the endpoint went down: the same outage,
            // not another one (five requests in flight must not count five
            // times towards the probe backoff).
            return None;
        }
        e.failures = e.failures.saturating_add(1);
        e.up = false;
        e.up_gauge.set(0);
        tracing::warn!(endpoint = %e.name, failures = e.failures, "endpoint marked down");
        let delay = probe_delay(e.failures);
        drop(list);
        // Sleeping probes re-check whether the whole destination is down.
        self.changed.notify_waiters();
        Some(delay)
    }

    /// Resolves at the next change of endpoint state (one going down or
    /// coming back, a new list).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Whether some endpoint is up (paused or not).
    pub fn any_up(&self) -> bool {
        self.lock().iter().any(|e| e.up && e.weight > 0)
    }

    /// A probe found `i` reachable again.
    pub fn probe_succeeded(&self, i: usize) {
        {
            let mut list = self.lock();
            let Some(e) = list.get_mut(i) else { return };
            e.up = true;
            e.up_gauge.set(1);
            e.current = 0;
            tracing::info!(endpoint = %e.name, "endpoint back up");
        }
        self.changed.notify_waiters();
    }

    /// Send nothing to `i` before `until`.
    pub fn pause(&self, i: usize, until: Instant) {
        let mut list = self.lock();
        if let Some(e) = list.get_mut(i) {
            e.paused_until = Some(e.paused_until.map_or(until, |u| u.max(until)));
        }
    }

    /// Whether some endpoint can take a request right now.
    pub fn any_usable(&self) -> bool {
        let now = Instant::now();
        self.lock()
            .iter()
            .any(|e| e.up && e.weight > 0 && e.paused_until.is_none_or(|u| u <= now))
    }
}

/// Probe backoff after `failures` consecutive failures: 2 s doubling to 60 s.
pub fn probe_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    PROBE_INITIAL
        .checked_mul(1 << exp)
        .unwrap_or(PROBE_MAX)
        .min(PROBE_MAX)
}

/// "Equal jitter": between half the delay and all of it, so probes from many
/// senders spread out but none comes back immediately.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::{Lane, LanePolicy};

    fn set(weights: &[u32]) -> Endpoints {
        let specs = weights
            .iter()
            .enumerate()
            .map(|(i, w)| EndpointSpec {
                name: format!("e{i}"),
                weight: *w,
            })
            .collect();
        Endpoints::new(specs, true, "d", &Metrics::new())
    }

    fn lane() -> Consumer {
        std::sync::Arc::new(Lane::new("d", LanePolicy::Block, 10, &Metrics::new())).consumer()
    }

    #[tokio::test]
    async fn weighted_round_robin_is_exact_and_skips_weight_zero() {
        let eps = set(&[1, 2, 3, 0]);
        let (lane, stop) = (lane(), CancellationToken::new());
        let mut counts = [0; 4];
        for _ in 0..600 {
            counts[eps.acquire(&lane, &stop).await.unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 300, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn down_endpoints_are_skipped_until_a_probe_brings_them_back() {
        let eps = set(&[1, 1]);
        let (lane, stop) = (lane(), CancellationToken::new());
        assert_eq!(eps.failed(0), Some(Duration::from_secs(2)));
        assert_eq!(eps.failed(0), None, "already down");
        assert_eq!(
            eps.failed(0),
            None,
            "in-flight failures are the same outage"
        );
        for _ in 0..10 {
            assert_eq!(eps.acquire(&lane, &stop).await, Some(1));
        }
        assert_eq!(eps.failed(1), Some(Duration::from_secs(2)));
        // Nothing usable: acquire waits, and the lane says the peer is failing.
        let waiting = eps.acquire(&lane, &stop);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), &mut waiting)
                .await
                .is_err()
        );
        assert!(lane.peer_failing());
        eps.probe_succeeded(1);
        assert_eq!(waiting.await, Some(1));
        // The failure count is kept until a request succeeds.
        assert_eq!(eps.failed(1), Some(Duration::from_secs(4)));
        eps.probe_succeeded(1);
        eps.succeeded(1, 5);
        assert_eq!(eps.failed(1), Some(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_requests_until_it_ends() {
        let eps = set(&[1]);
        let (lane, stop) = (lane(), CancellationToken::new());
        let t = Instant::now();
        eps.pause(0, t + Duration::from_secs(2));
        assert!(!eps.any_usable());
        assert_eq!(eps.acquire(&lane, &stop).await, Some(0));
        assert!(t.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn updates_keep_indices_and_retire_with_weight_zero() {
        let eps = set(&[1, 1]);
        let (lane, stop) = (lane(), CancellationToken::new());
        eps.update(vec![
            EndpointSpec {
                name: "e0".into(),
                weight: 0,
            },
            EndpointSpec {
                name: "e1".into(),
                weight: 1,
            },
            EndpointSpec {
                name: "e2".into(),
                weight: 1,
            },
        ]);
        assert_eq!(eps.len(), 3);
        let mut seen = [0; 3];
        for _ in 0..10 {
            seen[eps.acquire(&lane, &stop).await.unwrap()] += 1;
        }
        assert_eq!(seen, [0, 5, 5]);
    }

    #[test]
    fn probe_backoff_doubles_to_a_minute() {
        let d: Vec<u64> = (1..=8).map(|f| probe_delay(f).as_secs()).collect();
        assert_eq!(d, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(5) && j <= Duration::from_secs(10));
        }
    }
}
