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
//!   slot through all its retries, so a failing peer fills the slots; the
//!   jobs waiting for one fill the driver's bound on jobs, the driver stops
//!   taking from the lane, the lane fills, and the lane's policy (block or
//!   drop) acts upstream. That is how backpressure travels.
//! - **Order** (`order.rs`): one sender's (or key's) requests never
//!   overlap, while different senders' spread across the slots.
//! - **Endpoints** (`endpoints.rs`): weighted selection across a
//!   destination's endpoints, passive health (a failing endpoint is marked
//!   down, its request moves to the next healthy one, and it is probed in the
//!   background from 2 s doubling to 60 s), and pauses when a peer asks for
//!   them (`Retry-After`). While *no* endpoint is up, probes come at least
//!   every `OUTAGE_PROBE` (2 s) however far the backoff has grown, so a
//!   peer's return is seen within seconds.
//! - **Retry** (`backoff.rs`): exponential backoff with full jitter from
//!   `retry.initial_backoff` to `retry.max_backoff`; a peer's hint
//!   (`Retry-After`) wins when `retry.honor_retry_after`, capped by
//!   `max_backoff`. Without `retry.max_attempts` retries never stop; with it,
//!   exhausted events are dropped with reason `retries_exhausted`. Both
//!   count attempts without progress: a partial success starts them over.
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
//! [`RecordOutcome`] per record when the peer reports per-record results:
//! delivered, retry (optionally *throttled*, with a delay hint: the endpoint
//! backs off and adaptive concurrency counts it as pushback) or rejected with
//! that record's own [`Rejection`] (an HTTP status, a gRPC code or a named
//! protocol error, carried into its dead letter). The driver counts what was
//! delivered (events, their bytes from [`Encoded::record_bytes`], per
//! endpoint), retries only the rest (`retried_events` counts only those), and
//! does not call the destination failing while some records get through. A
//! peer that reports only *how many* records it refused returns
//! `PartialCount`: counted as rejected, never guessed per record. An
//! event the destination cannot represent at all is listed in
//! [`Encoded::skipped`] with its [`DropReason`] and left out of the request.
//! A destination with several endpoints returns them from `endpoints()` and
//! may implement `probe()` (a TCP connect, say) for the health checks.
//!
//! A destination never sleeps, retries, counts events or touches the lane:
//! anything two destinations would both need belongs here. The contract
//! lives in `contract.rs`, the per-job loop in `deliver.rs`.

mod backoff;
mod batcher;
mod calls;
mod cause_log;
mod concurrency;
mod contract;
mod dead_letter;
mod deliver;
mod endpoints;
mod job;
mod order;
mod partitions;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use backoff::Backoff;
pub use calls::{as_record, chunks, per_record, send_in_calls, send_in_order};
pub use cause_log::{CauseLog, error_chain};
// Encodings and compression live in `crate::codec`; re-exported here because
// every destination uses them with the driver.
pub use crate::codec::{
    Body, Compression, EncodeScratch, Encoder, Encoding, MetricConfig, StatsdKind,
    influx_partial_write,
};
pub use concurrency::Concurrency;
pub use contract::{Destination, Encoded, Outcome, RecordOutcome};
pub use dead_letter::{DeadLetter, RESPONSE_EXCERPT, Rejection, Why};
pub use endpoints::{EndpointSpec, Endpoints, OUTAGE_PROBE, PROBE_INITIAL, PROBE_MAX};
pub use job::Job;
pub use order::key_bit;
pub use settings::{
    BatchConfig, DEFAULT_RETRY_ON, DeliveryDefaults, DeliverySettings, Flush, Ordering,
    PartitionKeys, RequestConfig, RetryConfig, StatusRule, retried,
};

use crate::lane::Consumer;
use crate::metrics::{DropReason, Metrics};
use batcher::Batching;
use concurrency::Limiter;
use deliver::deliver;

/// Runs one destination: takes jobs from its lane and delivers them.
pub struct Driver<D: Destination> {
    dest: Arc<D>,
    lane: Consumer,
    settings: DeliverySettings,
    stop: CancellationToken,
    /// A reload replaces this driver: stop taking from the lane and give
    /// back what is not delivered (see `Job::requeue`).
    retire: CancellationToken,
    endpoints: Endpoints,
    limiter: Arc<Limiter>,
    dead_letter: Option<DeadLetter>,
    /// Probes and refreshes; cancelled when the driver ends.
    background: CancellationToken,
    probes: TaskTracker,
    /// Reports a delivery job that panicked.
    watcher: crate::supervise::Watcher,
    /// Keeps each sender's (or key's) jobs in lane order.
    order: Arc<order::Sequencer>,
    /// Jobs taken from the lane and not yet ended: as many as may be in
    /// flight, and with sender order as many again waiting for their turn
    /// (holding their events like in-flight ones).
    jobs: Arc<tokio::sync::Semaphore>,
}

impl<D: Destination> Driver<D> {
    /// `stop` is the hard stop: when it fires, everything not yet delivered is
    /// counted as dropped with reason `shutdown` and the driver returns.
    /// `retire` ends the driver without loss for a replacement on the same
    /// lane: in-flight attempts finish, everything else goes back to the lane.
    pub fn new(
        dest: D,
        lane: Consumer,
        settings: DeliverySettings,
        stop: CancellationToken,
        retire: CancellationToken,
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
        let watcher = crate::supervise::Watcher::new("destination", lane.id(), metrics);
        // Keeping senders in order in parallel, as many jobs again as
        // slots may wait for their turn, encoded: enough to keep every slot
        // busy behind a sender's request in flight, few enough that waking
        // the waiters stays cheap. Otherwise one job per slot, as many
        // events held out of the lane as before ordering existed (what a
        // drop lane sheds depends on it).
        let slots = settings.slots();
        let jobs = if settings.by_sender() {
            slots * 2
        } else {
            slots
        };
        Driver {
            dest: Arc::new(dest),
            lane,
            settings,
            stop: stop.clone(),
            retire,
            endpoints,
            limiter,
            dead_letter,
            background: stop.child_token(),
            probes: TaskTracker::new(),
            watcher,
            order: Arc::default(),
            jobs: Arc::new(tokio::sync::Semaphore::new(jobs)),
        }
    }

    /// Run until the lane is closed and drained (or the hard stop fires).
    pub async fn run(self) {
        let tracker = TaskTracker::new();
        let mut batcher = Batching::new(self.lane.clone(), &self.settings);
        let ctx = Arc::new(self);
        if ctx.dest.refresh_interval().is_some() {
            ctx.start_refresh();
        }
        loop {
            // A job takes its concurrency slot once its turn comes
            // (`deliver`); the loop only bounds how many jobs exist, so a
            // job waiting on its sender never holds a slot another
            // sender's job could use.
            let permit = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = ctx.retire.cancelled() => break,
                p = ctx.jobs.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let job = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = ctx.retire.cancelled() => break,
                j = batcher.next() => j,
            };
            let Some(job) = job else { break };
            // Taken in lane order, before the job runs on its own.
            let turn = ctx.order.enter();
            // A job that panicked is reported like a failed component (and
            // /ready says so); its lease counts its events as
            // `internal_error` and its senders are told to send again.
            tracker.spawn(
                ctx.watcher
                    .watch(deliver(ctx.clone(), job, permit, turn))
                    .instrument(tracing::Span::current()),
            );
        }
        tracker.close();
        // Retiring: what the batcher holds goes back first, so that the
        // jobs' older events, given back as they end, land in front of it.
        if ctx.retire.is_cancelled() && !ctx.stop.is_cancelled() {
            batcher.requeue();
        }
        // Jobs end themselves, on delivery, rejection, retirement or the
        // hard stop.
        tracker.wait().await;
        if ctx.stop.is_cancelled() {
            batcher.abandon(DropReason::Shutdown);
        }
        ctx.dest.close().await;
        ctx.background.cancel();
        ctx.probes.close();
        ctx.probes.wait().await;
    }

    /// Drop (and count) events over `batch.max_event_bytes`, then encode,
    /// dropping (and counting) what the destination skipped.
    fn encode(&self, job: &mut Job) -> Encoded<D::Request> {
        if let Some(max) = self.settings.max_event_bytes {
            let over: Vec<(usize, DropReason)> = job
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.raw.len() > max)
                .map(|(i, _)| (i, DropReason::Oversize))
                .collect();
            job.drop_each(&over);
        }
        let mut enc = self.dest.encode(&job.events);
        if !enc.skipped.is_empty() {
            let skipped = std::mem::take(&mut enc.skipped);
            job.drop_each(&skipped);
        }
        enc
    }

    /// End `job` as failed for `reason`: dead-letter it if configured
    /// (rejections and exhausted retries), otherwise drop and count it.
    async fn fail(&self, job: Job, reason: DropReason, why: Why<'_>) {
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
                let wait = endpoints::jittered(delay);
                let started = tokio::time::Instant::now();
                // While no endpoint is up, probe at least every
                // OUTAGE_PROBE: the peer's return must be seen within
                // seconds however far the backoff has grown. Re-checked
                // whenever an endpoint changes state.
                loop {
                    let changed = ctx.endpoints.changed();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    let due = if ctx.endpoints.any_up() {
                        wait
                    } else {
                        wait.min(OUTAGE_PROBE)
                    };
                    let left = due.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    tokio::select! {
                        _ = ctx.background.cancelled() => return,
                        _ = tokio::time::sleep(left) => {}
                        _ = &mut changed => {}
                    }
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

#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod tests;
