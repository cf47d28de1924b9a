//! The delivery driver: the one piece of code that moves events from a
//! destination's lane to its peer. Every destination uses it unchanged.
//!
//! What the driver does, so that destinations don't:
//!
//! - **Batching** (`batcher.rs`): by `batch.max_events`, `batch.max_bytes`
//!   (measured before encoding; one larger event goes alone) and
//!   `batch.timeout` from the first event; events over
//!   `batch.max_event_bytes` are dropped with reason `oversize`.
//! - **Concurrency** (`concurrency.rs`): at most `request.concurrency`
//!   requests in flight, or an adaptive (AIMD on RTT) limit. A job holds its
//!   slot through all its retries, so a failing peer fills the slots, the
//!   driver stops taking from the lane, the lane fills, and the lane's policy
//!   (block or drop) acts upstream. That is how backpressure travels.
//! - **Endpoints** (`endpoints.rs`): weighted selection across a
//!   destination's endpoints, passive health (a failing endpoint is marked
//!   down, its request moves to the next healthy one, and it is probed in the
//!   background from 2 s doubling to 60 s), and pauses when a peer asks for
//!   them (`Retry-After`).
//! - **Retry** (`backoff.rs`): exponential backoff with full jitter from
//!   `retry.initial_backoff` to `retry.max_backoff`; a peer's hint
//!   (`Retry-After`) wins when `retry.honor_retry_after`, capped by
//!   `max_backoff`. Without `retry.max_attempts` retries never stop; with it,
//!   exhausted events are dropped with reason `retries_exhausted`.
//!   `request.timeout` bounds each attempt (a timeout fails the endpoint).
//! - **Dead letters** (`dead_letter.rs`): with `dead_letter: <destination>`,
//!   rejected and exhausted events go there, wrapped with the reason, the
//!   peer's status and the start of its answer, instead of being dropped.
//! - **Accounting**: per batch, `sent_events`, `sent_bytes`, `dropped{reason}`,
//!   `retries`, the request-duration histogram, in-flight requests, the
//!   concurrency limit, per-endpoint health and sent counts, and the
//!   acknowledgements sources wait on.
//! - **Shutdown**: when the lane closes the driver flushes what is left and
//!   waits for in-flight jobs; when the hard stop fires (the shutdown timeout)
//!   everything still held is counted as dropped with reason `shutdown`.
//!   A `persistent_queue` lane instead takes back what is held (and, as
//!   soon as it closes, jobs waiting for an endpoint or a retry): events
//!   from memory are written to its disk queue, events read from disk stay
//!   there.
//!
//! # Writing a destination
//!
//! Implement [`Destination`]: *encode* a slice of events into a request,
//! *send* it to one endpoint, and *classify* what the peer said as an
//! [`Outcome`]. The HTTP destination encodes with [`Encoder`] into a
//! compressed body, POSTs it, and maps 2xx to `Delivered`, connection errors
//! and 5xx to `EndpointFailed`, 429 to `Throttled { after }` (the
//! `Retry-After` header), 408 to `Retry`, and other 4xx to `Rejected` with
//! the status and the start of the response. A Kafka, SQS or Kinesis
//! destination encodes one record per event and returns `Partial` with one
//! [`RecordOutcome`] per record when the peer reports per-record results: the
//! driver counts what was delivered or rejected and retries only the rest. An
//! event the destination cannot represent at all is listed in
//! [`Encoded::skipped`] with its [`DropReason`] and left out of the request.
//! A destination with several endpoints returns them from `endpoints()` and
//! may implement `probe()` (a TCP connect, say) for the health checks.
//!
//! A destination never sleeps, retries, counts events or touches the lane:
//! anything two destinations would both need belongs here.

mod backoff;
mod batcher;
mod compression;
mod concurrency;
mod dead_letter;
mod encoding;
mod endpoints;
mod job;
mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::Backoff;
pub use compression::Compression;
pub use concurrency::Concurrency;
pub use dead_letter::{DeadLetter, RESPONSE_EXCERPT, Rejection};
pub use encoding::{Body, EncodeScratch, Encoder, Encoding, MetricConfig, StatsdKind};
pub use endpoints::{EndpointSpec, Endpoints, PROBE_INITIAL, PROBE_MAX};
pub use job::Job;
pub use settings::{
    BatchConfig, DEFAULT_RETRY_ON, DeliveryDefaults, DeliverySettings, RequestConfig, RetryConfig,
    StatusRule, retried,
};

use crate::event::Event;
use crate::lane::Lane;
use crate::metrics::{DropReason, Metrics};
use batcher::Batcher;
use concurrency::{Limiter, Signal, Slot};

/// A destination: encode, send, classify. See the module documentation.
pub trait Destination: Send + Sync + 'static {
    /// The encoded form of a batch. Built once per job and re-sent unchanged
    /// on every retry (unless a partial failure narrows the job).
    type Request: Send + Sync + 'static;

    /// The endpoints this destination balances across, with weights. Empty
    /// (the default): one implicit endpoint, no health tracking.
    fn endpoints(&self) -> Vec<EndpointSpec> {
        Vec::new()
    }

    /// Encode `events`. Must not block for long: it runs on the job's task.
    fn encode(&self, events: &[Event]) -> Encoded<Self::Request>;

    /// Send one request to endpoint number `endpoint` (an index into
    /// `endpoints()`, or 0) and say how it went. Cancel-safe: the driver may
    /// drop the future on `request.timeout` or at the shutdown deadline.
    fn send(
        &self,
        request: &Self::Request,
        endpoint: usize,
    ) -> impl Future<Output = Outcome> + Send;

    /// Whether a down endpoint is reachable again, checked in the background
    /// on the probe schedule (a TCP connect, say). Default: assume so once
    /// the backoff has passed, and let the next request tell.
    fn probe(&self, endpoint: usize) -> impl Future<Output = bool> + Send {
        let _ = endpoint;
        async { true }
    }

    /// How often to call `refresh` (re-resolving host names, say). `None`,
    /// the default: the endpoints never change.
    fn refresh_interval(&self) -> Option<Duration> {
        None
    }

    /// The endpoints now: existing ones in their places (weight 0 for one
    /// that went away), new ones appended. `None`: no change.
    fn refresh(&self) -> impl Future<Output = Option<Vec<EndpointSpec>>> + Send {
        async { None }
    }
}

/// The result of [`Destination::encode`].
pub struct Encoded<R> {
    pub request: R,
    /// Bytes the request puts on the wire, for `sent_bytes`.
    pub bytes: usize,
    /// Indices (ascending) of events left out of the request, and why.
    /// `Outcome::Partial` then describes only the events that were included,
    /// in order.
    pub skipped: Vec<(usize, DropReason)>,
}

impl<R> Encoded<R> {
    pub fn all(request: R, bytes: usize) -> Self {
        Encoded {
            request,
            bytes,
            skipped: Vec::new(),
        }
    }
}

/// What the peer said about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every event was accepted.
    Delivered,
    /// The endpoint itself is failing (connection refused or reset, timeout,
    /// 5xx): it is marked down and the request goes to the next healthy
    /// endpoint. With a single endpoint this is a retry after the probe.
    EndpointFailed { error: String },
    /// The endpoint asks senders to slow down (429, or 503 with
    /// `Retry-After`): it is paused for `after` (when honoured) or the
    /// backoff, and the request waits or goes to another endpoint.
    Throttled {
        after: Option<Duration>,
        error: String,
    },
    /// This request failed transiently: retried after the backoff, or after
    /// `after` when the peer said how long to wait.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// Permanent failure: dead-lettered if a `dead_letter` destination is
    /// set, otherwise dropped with reason `rejected`.
    Rejected(Rejection),
    /// Per-record results, one per event included in the request, in order.
    Partial(Vec<RecordOutcome>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Delivered,
    Retry,
    Rejected,
}

/// Runs one destination: takes jobs from its lane and delivers them.
pub struct Driver<D: Destination> {
    dest: Arc<D>,
    lane: Arc<Lane>,
    settings: DeliverySettings,
    stop: CancellationToken,
    endpoints: Endpoints,
    limiter: Arc<Limiter>,
    dead_letter: Option<DeadLetter>,
    /// Probes and refreshes; cancelled when the driver ends.
    background: CancellationToken,
    probes: TaskTracker,
}

impl<D: Destination> Driver<D> {
    /// `stop` is the hard stop: when it fires, everything not yet delivered is
    /// counted as dropped with reason `shutdown` and the driver returns.
    pub fn new(
        dest: D,
        lane: Arc<Lane>,
        settings: DeliverySettings,
        stop: CancellationToken,
        metrics: &Metrics,
        dead_letter: Option<DeadLetter>,
    ) -> Self {
        let endpoints = Endpoints::new(
            dest.endpoints(),
            dest.refresh_interval().is_some(),
            lane.id(),
            metrics,
        );
        let limiter = Limiter::new(
            settings.concurrency,
            settings.max_concurrency,
            lane.metrics().concurrency_limit.clone(),
        );
        Driver {
            dest: Arc::new(dest),
            lane,
            settings,
            stop: stop.clone(),
            endpoints,
            limiter,
            dead_letter,
            background: stop.child_token(),
            probes: TaskTracker::new(),
        }
    }

    /// Run until the lane is closed and drained (or the hard stop fires).
    pub async fn run(self) {
        let tracker = TaskTracker::new();
        let mut batcher = Batcher::new(
            self.lane.clone(),
            self.settings.max_events,
            self.settings.max_bytes,
            self.settings.batch_timeout,
        );
        let ctx = Arc::new(self);
        if ctx.dest.refresh_interval().is_some() {
            ctx.start_refresh();
        }
        loop {
            let slot = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                s = ctx.limiter.acquire() => match s {
                    Some(s) => s,
                    None => break,
                },
            };
            let job = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                j = batcher.next() => j,
            };
            let Some(job) = job else { break };
            tracker.spawn(deliver(ctx.clone(), job, slot));
        }
        tracker.close();
        // Jobs end themselves, on delivery, rejection or the hard stop.
        tracker.wait().await;
        if ctx.stop.is_cancelled() {
            batcher.abandon(DropReason::Shutdown);
        }
        ctx.background.cancel();
        ctx.probes.close();
        ctx.probes.wait().await;
    }

    /// Drop (and count) events over `batch.max_event_bytes`, then encode,
    /// dropping (and counting) what the destination skipped.
    fn encode(&self, job: &mut Job) -> Encoded<D::Request> {
        if let Some(max) = self.settings.max_event_bytes {
            let over: Vec<usize> = job
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.raw.len() > max)
                .map(|(i, _)| i)
                .collect();
            if !over.is_empty() {
                self.drop_indices(job, &over, DropReason::Oversize);
            }
        }
        let mut enc = self.dest.encode(&job.events);
        if !enc.skipped.is_empty() {
            let m = self.lane.metrics();
            let skipped = std::mem::take(&mut enc.skipped);
            for &(i, reason) in &skipped {
                m.drop_events(reason, 1);
                job.fail_event(i);
            }
            let indices: Vec<usize> = skipped.iter().map(|(i, _)| *i).collect();
            remove_indices(job, &indices);
            self.lane.settle(indices.len());
        }
        enc
    }

    fn drop_indices(&self, job: &mut Job, indices: &[usize], reason: DropReason) {
        for &i in indices {
            job.fail_event(i);
        }
        self.lane
            .metrics()
            .drop_events(reason, indices.len() as u64);
        remove_indices(job, indices);
        self.lane.settle(indices.len());
    }

    /// End `job` as failed for `reason`: dead-letter it if configured
    /// (rejections and exhausted retries), otherwise drop and count it.
    async fn fail(&self, job: Job, reason: DropReason, why: Option<&Rejection>) {
        if let Some(dl) = &self.dead_letter
            && matches!(reason, DropReason::Rejected | DropReason::RetriesExhausted)
            && dl.send(&job.events, reason, why, &self.stop).await
        {
            job.resolve(&self.lane, DropReason::DeadLetter);
            return;
        }
        job.resolve(&self.lane, reason);
    }

    /// Ask the destination for its current endpoints every
    /// `refresh_interval`, until the hard stop.
    fn start_refresh(self: &Arc<Self>) {
        let ctx = self.clone();
        self.probes.spawn(async move {
            loop {
                let Some(every) = ctx.dest.refresh_interval() else {
                    return;
                };
                tokio::select! {
                    _ = ctx.background.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let fresh = tokio::select! {
                    _ = ctx.background.cancelled() => return,
                    f = ctx.dest.refresh() => f,
                };
                if let Some(specs) = fresh {
                    ctx.endpoints.update(specs);
                }
            }
        });
    }

    fn start_probe(self: &Arc<Self>, endpoint: usize, first: Duration) {
        let ctx = self.clone();
        self.probes.spawn(async move {
            let mut delay = first;
            loop {
                tokio::select! {
                    _ = ctx.background.cancelled() => return,
                    _ = tokio::time::sleep(endpoints::jittered(delay)) => {}
                }
                let reachable = tokio::select! {
                    _ = ctx.background.cancelled() => return,
                    ok = ctx.dest.probe(endpoint) => ok,
                };
                if reachable {
                    ctx.endpoints.probe_succeeded(endpoint);
                    return;
                }
                delay = (delay * 2).min(PROBE_MAX);
            }
        });
    }
}

/// Remove the events at `indices` (ascending) from `job`, uncounted.
fn remove_indices(job: &mut Job, indices: &[usize]) {
    let mut next = indices.iter().copied().peekable();
    job.retain(|i| {
        if next.peek() == Some(&i) {
            next.next();
            false
        } else {
            true
        }
    });
}

async fn deliver<D: Destination>(ctx: Arc<Driver<D>>, mut job: Job, slot: Slot) {
    let lane = &ctx.lane;
    let m = lane.metrics();
    let tracked = ctx.endpoints.is_tracked();
    let mut encoded = ctx.encode(&mut job);
    let mut attempt: u32 = 0;
    loop {
        if job.is_empty() {
            return;
        }
        // A persistent-queue lane that is closing takes back jobs that are
        // waiting (for an endpoint or a retry) rather than let them run into
        // the hard stop: they go to disk for the next run.
        let endpoint = tokio::select! {
            biased;
            e = ctx.endpoints.acquire(lane, &ctx.stop) => e,
            _ = lane.handing_back() => None,
        };
        let Some(endpoint) = endpoint else {
            job.resolve(lane, DropReason::Shutdown);
            return;
        };
        if tracked && lane.peer_failing() && ctx.endpoints.any_usable() {
            lane.set_peer_failing(false);
        }
        attempt += 1;
        m.in_flight.inc();
        let started = Instant::now();
        let send = ctx.dest.send(&encoded.request, endpoint);
        let outcome = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                m.in_flight.dec();
                job.resolve(lane, DropReason::Shutdown);
                return;
            }
            o = attempt_with_timeout(ctx.settings.request_timeout, send) => o,
        };
        m.in_flight.dec();
        let rtt = started.elapsed();
        m.request_duration.observe(rtt.as_secs_f64());
        let signal = match outcome {
            Outcome::Delivered | Outcome::Rejected(_) | Outcome::Partial(_) => Signal::Ok,
            _ => Signal::Backoff,
        };
        ctx.limiter.feedback(rtt, signal, slot.at_limit);
        let backoff = &ctx.settings.backoff;
        // How long this job waits before its next attempt (beyond waiting
        // for a usable endpoint).
        let wait = match outcome {
            Outcome::Delivered => {
                ctx.endpoints.succeeded(endpoint, job.len() as u64);
                recovered(lane);
                job.delivered(lane, encoded.bytes);
                return;
            }
            Outcome::Rejected(why) => {
                tracing::warn!(
                    destination = lane.id(),
                    endpoint = %ctx.endpoints.name(endpoint),
                    events = job.len(),
                    status = ?why.status,
                    error = %why.error,
                    "peer rejected events"
                );
                ctx.fail(job, DropReason::Rejected, Some(&why)).await;
                return;
            }
            Outcome::EndpointFailed { error } => {
                log_failure(lane, &ctx.endpoints, endpoint, attempt, &error);
                match ctx.endpoints.failed(endpoint) {
                    Some(first_probe) => {
                        ctx.start_probe(endpoint, first_probe);
                        None
                    }
                    // Untracked: a plain retry after the backoff.
                    None if !tracked => Some(backoff.delay(attempt, None)),
                    None => None,
                }
            }
            Outcome::Throttled { after, error } => {
                log_failure(lane, &ctx.endpoints, endpoint, attempt, &error);
                let d = backoff.delay(attempt, after);
                if tracked {
                    ctx.endpoints
                        .pause(endpoint, tokio::time::Instant::now() + d);
                    None
                } else {
                    Some(d)
                }
            }
            Outcome::Retry { after, error } => {
                log_failure(lane, &ctx.endpoints, endpoint, attempt, &error);
                Some(backoff.delay(attempt, after))
            }
            Outcome::Partial(records) => {
                if records.len() != job.len() {
                    // A destination bug, not the peer's: never guess which
                    // events got through. Retrying everything may duplicate,
                    // but loses nothing.
                    tracing::error!(
                        destination = lane.id(),
                        records = records.len(),
                        events = job.len(),
                        "per-record outcome count does not match the request; retrying all"
                    );
                } else {
                    ctx.endpoints.succeeded(endpoint, 0);
                    let rejected = split_partial(&mut job, &records, lane, encoded.bytes);
                    if !rejected.is_empty() {
                        ctx.fail(rejected, DropReason::Rejected, None).await;
                    }
                    if job.is_empty() {
                        recovered(lane);
                        return;
                    }
                    encoded = ctx.encode(&mut job);
                }
                Some(backoff.delay(attempt, None))
            }
        };
        m.retries.inc();
        if !tracked {
            lane.set_peer_failing(true);
        }
        if ctx.settings.max_attempts.is_some_and(|max| attempt >= max) {
            tracing::warn!(
                destination = lane.id(),
                events = job.len(),
                attempts = attempt,
                "retries exhausted"
            );
            ctx.fail(job, DropReason::RetriesExhausted, None).await;
            return;
        }
        if let Some(d) = wait {
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => {
                    job.resolve(lane, DropReason::Shutdown);
                    return;
                }
                _ = lane.handing_back() => {
                    job.resolve(lane, DropReason::Shutdown);
                    return;
                }
                _ = tokio::time::sleep(d) => {}
            }
        }
    }
}

/// The first failure while healthy is a warning; repeats are debug.
fn log_failure(lane: &Lane, endpoints: &Endpoints, endpoint: usize, attempt: u32, error: &str) {
    if attempt == 1 && !lane.peer_failing() {
        tracing::warn!(destination = lane.id(), endpoint = %endpoints.name(endpoint), %error, "delivery failed; retrying");
    } else {
        tracing::debug!(destination = lane.id(), endpoint = %endpoints.name(endpoint), %error, attempt, "retrying");
    }
}

fn recovered(lane: &Lane) {
    if lane.peer_failing() {
        tracing::info!(destination = lane.id(), "delivery recovered");
        lane.set_peer_failing(false);
    }
}

async fn attempt_with_timeout(
    timeout: Option<Duration>,
    send: impl Future<Output = Outcome>,
) -> Outcome {
    match timeout {
        None => send.await,
        Some(t) => {
            tokio::time::timeout(t, send)
                .await
                .unwrap_or_else(|_| Outcome::EndpointFailed {
                    error: format!("no answer within {t:?}"),
                })
        }
    }
}

/// Count the delivered records of a partial outcome, narrow the job to the
/// ones to retry, and return the rejected ones (acks failed, not yet counted).
fn split_partial(job: &mut Job, records: &[RecordOutcome], lane: &Lane, bytes: usize) -> Job {
    let mut delivered = 0u64;
    for (i, r) in records.iter().enumerate() {
        match r {
            RecordOutcome::Delivered => delivered += 1,
            RecordOutcome::Rejected => job.fail_event(i),
            RecordOutcome::Retry => {}
        }
    }
    let m = lane.metrics();
    m.sent_events.inc_by(delivered);
    if delivered > 0 {
        m.sent_bytes.inc_by(bytes as u64);
    }
    lane.settle(delivered as usize);
    let rejected = job.extract(|i| records[i] == RecordOutcome::Rejected);
    job.retain(|i| records[i] == RecordOutcome::Retry);
    rejected
}

#[cfg(test)]
mod tests;
