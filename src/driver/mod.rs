//! The delivery driver: the one piece of code that moves events from a
//! destination's lane to its peer. Every destination uses it unchanged.
//!
//! What the driver does, so that destinations don't:
//!
//! - **Batching** (`batcher.rs`): by `batch.max_events`, `batch.max_bytes`
//!   (measured before encoding) and `batch.timeout` from the first event.
//! - **Concurrency**: at most `request.concurrency` requests in flight. A job
//!   holds its slot through all its retries, so a failing peer fills the slots,
//!   the driver stops taking from the lane, the lane fills, and the lane's
//!   policy (block or drop) acts upstream. That is how backpressure travels.
//! - **Retry** (`backoff.rs`): exponential backoff with full jitter from
//!   `retry.initial_backoff` to `retry.max_backoff`; a peer's hint
//!   (`Retry-After`) wins when `retry.honor_retry_after`. Without
//!   `retry.max_attempts` retries never stop; with it, exhausted events are
//!   dropped with reason `retries_exhausted`. `request.timeout` bounds each attempt.
//! - **Accounting**: per batch, `sent_events`, `sent_bytes`, `dropped{reason}`,
//!   `retries`, the request-duration histogram, in-flight requests, and the
//!   acknowledgements sources wait on.
//! - **Shutdown**: when the lane closes the driver flushes what is left and
//!   waits for in-flight jobs; when the hard stop fires (the shutdown timeout)
//!   everything still held is counted as dropped with reason `shutdown`.
//!
//! # Writing a destination
//!
//! Implement [`Destination`]: *encode* a slice of events into a request, *send*
//! it, and *classify* what the peer said as an [`Outcome`]. For example an HTTP
//! destination encodes with [`Encoder`] into a compressed body, POSTs it, and
//! maps 2xx to `Delivered`, 429/5xx/timeouts to `Retry { after }` (with the
//! `Retry-After` header as the hint), and other 4xx to `Rejected`. A Kafka,
//! SQS or Kinesis destination encodes one record per event and returns
//! `Partial` with one [`RecordOutcome`] per record when the peer reports
//! per-record results: the driver counts what was delivered or rejected and
//! retries only the rest. An event the destination cannot represent at all
//! (too large, missing a required field) is listed in [`Encoded::skipped`]
//! with its [`DropReason`] and left out of the request.
//!
//! A destination never sleeps, retries, counts events or touches the lane:
//! anything two destinations would both need belongs here.

mod backoff;
mod batcher;
mod compression;
mod encoding;
mod job;
mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::Backoff;
pub use compression::Compression;
pub use encoding::Encoding;
pub use job::Job;
pub use settings::{BatchConfig, DeliveryDefaults, DeliverySettings, RequestConfig, RetryConfig};

use crate::event::Event;
use crate::lane::Lane;
use crate::metrics::DropReason;
use batcher::Batcher;

/// A destination: encode, send, classify. See the module documentation.
pub trait Destination: Send + Sync + 'static {
    /// The encoded form of a batch. Built once per job and re-sent unchanged
    /// on every retry (unless a partial failure narrows the job).
    type Request: Send + Sync + 'static;

    /// Encode `events`. Must not block for long: it runs on the job's task.
    fn encode(&self, events: &[Event]) -> Encoded<Self::Request>;

    /// Send one request and say how it went. Cancel-safe: the driver may drop
    /// the future on `request.timeout` or at the shutdown deadline.
    fn send(&self, request: &Self::Request) -> impl Future<Output = Outcome> + Send;
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
    /// Transient failure: send it again after the backoff, or after `after`
    /// when the peer said how long to wait.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// Permanent failure: the events are dropped with reason `rejected`.
    Rejected { error: String },
    /// Per-record results, one per event included in the request, in order.
    Partial(Vec<RecordOutcome>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Delivered,
    Retry,
    Rejected,
}

/// The encoding and compression settings of a destination, applied together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoder {
    pub encoding: Encoding,
    pub compression: Compression,
}

/// A compressed, encoded request body.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
}

impl Encoder {
    pub fn body(&self, events: &[Event]) -> std::io::Result<Body> {
        let mut out = Vec::new();
        self.encoding.encode(events, &mut out);
        let out = self.compression.compress(out)?;
        Ok(Body {
            bytes: out.into(),
            content_type: self.encoding.content_type(),
            content_encoding: self.compression.content_encoding(),
        })
    }
}

/// Runs one destination: takes jobs from its lane and delivers them.
pub struct Driver<D: Destination> {
    dest: Arc<D>,
    lane: Arc<Lane>,
    settings: DeliverySettings,
    stop: CancellationToken,
}

impl<D: Destination> Driver<D> {
    /// `stop` is the hard stop: when it fires, everything not yet delivered is
    /// counted as dropped with reason `shutdown` and the driver returns.
    pub fn new(
        dest: D,
        lane: Arc<Lane>,
        settings: DeliverySettings,
        stop: CancellationToken,
    ) -> Self {
        Driver {
            dest: Arc::new(dest),
            lane,
            settings,
            stop,
        }
    }

    /// Run until the lane is closed and drained (or the hard stop fires).
    pub async fn run(self) {
        let m = self.lane.metrics().clone();
        m.concurrency_limit.set(self.settings.concurrency as i64);
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let tracker = TaskTracker::new();
        let mut batcher = Batcher::new(
            self.lane.clone(),
            self.settings.max_events,
            self.settings.max_bytes,
            self.settings.batch_timeout,
        );
        let ctx = Arc::new(self);
        loop {
            let slot = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
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
    }

    /// Encode `job`, dropping (and counting) what the destination skipped.
    fn encode(&self, job: &mut Job) -> Encoded<D::Request> {
        let mut enc = self.dest.encode(&job.events);
        if !enc.skipped.is_empty() {
            let m = self.lane.metrics();
            for &(i, reason) in &enc.skipped {
                m.drop_events(reason, 1);
                job.fail_event(i);
            }
            let skipped = std::mem::take(&mut enc.skipped);
            let mut next = skipped.iter().map(|(i, _)| *i).peekable();
            job.retain(|i| {
                if next.peek() == Some(&i) {
                    next.next();
                    false
                } else {
                    true
                }
            });
            self.lane.settle(skipped.len());
        }
        enc
    }
}

async fn deliver<D: Destination>(ctx: Arc<Driver<D>>, mut job: Job, _slot: OwnedSemaphorePermit) {
    let lane = &ctx.lane;
    let m = lane.metrics();
    let mut encoded = ctx.encode(&mut job);
    let mut attempt: u32 = 0;
    loop {
        if job.is_empty() {
            return;
        }
        attempt += 1;
        m.in_flight.inc();
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                m.in_flight.dec();
                job.resolve(lane, DropReason::Shutdown);
                return;
            }
            o = attempt_with_timeout(ctx.settings.request_timeout, ctx.dest.send(&encoded.request)) => o,
        };
        m.in_flight.dec();
        m.request_duration.observe(started.elapsed().as_secs_f64());
        let hint = match outcome {
            Outcome::Delivered => {
                recovered(lane);
                job.delivered(lane, encoded.bytes);
                return;
            }
            Outcome::Rejected { error } => {
                tracing::warn!(destination = lane.id(), events = job.len(), %error, "peer rejected events; dropping them");
                job.resolve(lane, DropReason::Rejected);
                return;
            }
            Outcome::Retry { after, error } => {
                if !lane.peer_failing() {
                    tracing::warn!(destination = lane.id(), %error, "delivery failing; retrying with backoff");
                } else {
                    tracing::debug!(destination = lane.id(), %error, attempt, "retrying");
                }
                after
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
                    None
                } else {
                    let done = split_partial(&mut job, &records, lane, encoded.bytes);
                    if done {
                        recovered(lane);
                        return;
                    }
                    encoded = ctx.encode(&mut job);
                    None
                }
            }
        };
        m.retries.inc();
        lane.set_peer_failing(true);
        if ctx.settings.max_attempts.is_some_and(|max| attempt >= max) {
            tracing::warn!(
                destination = lane.id(),
                events = job.len(),
                attempts = attempt,
                "retries exhausted; dropping events"
            );
            job.resolve(lane, DropReason::RetriesExhausted);
            return;
        }
        let delay = ctx.settings.backoff.delay(attempt, hint);
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                job.resolve(lane, DropReason::Shutdown);
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
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
        Some(t) => tokio::time::timeout(t, send)
            .await
            .unwrap_or_else(|_| Outcome::Retry {
                after: None,
                error: format!("request timed out after {t:?}"),
            }),
    }
}

/// Count the delivered and rejected records of a partial outcome and narrow
/// the job to the ones to retry. True when nothing is left to retry.
fn split_partial(job: &mut Job, records: &[RecordOutcome], lane: &Lane, bytes: usize) -> bool {
    let mut delivered = 0u64;
    let mut rejected = 0u64;
    for (i, r) in records.iter().enumerate() {
        match r {
            RecordOutcome::Delivered => delivered += 1,
            RecordOutcome::Rejected => {
                rejected += 1;
                job.fail_event(i);
            }
            RecordOutcome::Retry => {}
        }
    }
    let m = lane.metrics();
    m.sent_events.inc_by(delivered);
    if delivered > 0 {
        m.sent_bytes.inc_by(bytes as u64);
    }
    m.drop_events(DropReason::Rejected, rejected);
    lane.settle((delivered + rejected) as usize);
    job.retain(|i| records[i] == RecordOutcome::Retry);
    job.is_empty()
}

#[cfg(test)]
mod tests;
