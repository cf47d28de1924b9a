//! The delivery loop of one job: pick an endpoint, send, classify the
//! outcome, and either end the job (delivered, rejected, exhausted) or wait
//! and send again. Every event of the job ends in exactly one counter.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::concurrency::Signal;
use super::contract::{Destination, Outcome, RecordOutcome};
use super::dead_letter::{Rejection, Why};
use super::endpoints::{Endpoints, OUTAGE_PROBE};
use super::order::{Turn, single_shard};
use super::{Driver, Job};
use crate::lane::Consumer;
use crate::metrics::DropReason;

/// A retiring driver's job goes back to the front of the lane once every
/// later job has, so the lane keeps its order (the hard stop ends the
/// wait: then it is dropped as `shutdown`).
async fn give_back<D: Destination>(ctx: &Driver<D>, job: Job, turn: &Turn) {
    tokio::select! {
        biased;
        _ = ctx.stop.cancelled() => job.resolve(&ctx.lane, DropReason::Shutdown),
        _ = turn.after_later() => job.requeue(&ctx.lane),
    }
}

/// What to do after an attempt that did not end the job.
struct Again {
    /// Wait this long before the next attempt (beyond waiting for a usable
    /// endpoint); `None`: only the endpoint wait.
    wait: Option<Duration>,
    /// The destination as a whole is failing (not just some records).
    failing: bool,
}

pub(super) async fn deliver<D: Destination>(
    ctx: Arc<Driver<D>>,
    mut job: Job,
    _permit: tokio::sync::OwnedSemaphorePermit,
    turn: Turn,
) {
    let lane = &ctx.lane;
    let m = lane.metrics();
    let tracked = ctx.endpoints.is_tracked();
    let mut encoded = ctx.encode(&mut job);
    // Encoded in parallel; sent in lane order within each order shard.
    let mask = ctx.settings.kept.mask(encoded.keys, job.senders);
    // One connection per sender only while senders go in parallel: with
    // one slot, one connection keeps every sender's order among the others.
    let stream = if ctx.settings.by_sender() {
        single_shard(mask)
    } else {
        None
    };
    // The turn first, then the slot: held through every retry, so a
    // failing peer fills the slots, and the jobs behind them
    // (`Driver::jobs`) stop the driver taking from the lane, so the lane's
    // policy acts upstream.
    let free = turn.set(mask);
    let ready = async {
        if !free {
            turn.wait(mask).await;
        }
        ctx.limiter.acquire().await
    };
    let slot = tokio::select! {
        biased;
        _ = ctx.stop.cancelled() => None,
        _ = ctx.retire.cancelled() => {
            give_back(&ctx, job, &turn).await;
            return;
        }
        _ = lane.handing_back() => None,
        s = ready => s,
    };
    let Some(slot) = slot else {
        job.resolve(lane, DropReason::Shutdown);
        return;
    };
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
            // A reload replaces this driver: its successor sends the job.
            _ = ctx.retire.cancelled() => {
                give_back(&ctx, job, &turn).await;
                return;
            }
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
        let send = ctx.dest.send_on(&encoded.request, endpoint, stream);
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
        ctx.limiter
            .feedback(rtt, signal_of(&outcome), slot.at_limit);
        let backoff = &ctx.settings.backoff;
        let outcome = match outcome {
            Outcome::PartialCount { rejected, why } => named_refusals(&ctx, &job, rejected, why),
            o => o,
        };
        let again = match outcome {
            Outcome::Delivered => {
                ctx.endpoints.succeeded(endpoint, job.len() as u64);
                recovered(lane);
                job.delivered(encoded.bytes);
                return;
            }
            Outcome::Rejected(why) => {
                tracing::warn!(
                    endpoint = %ctx.endpoints.name(endpoint),
                    events = job.len(),
                    status = ?why.status,
                    code = ?why.code,
                    error = %why.error,
                    "peer rejected events"
                );
                ctx.fail(job, DropReason::Rejected, Why::One(Some(&why)))
                    .await;
                return;
            }
            Outcome::PartialCount { rejected, why } => {
                let rejected = rejected.min(job.len());
                if rejected > 0 {
                    tracing::warn!(
                        endpoint = %ctx.endpoints.name(endpoint),
                        events = job.len(),
                        rejected,
                        error = %why.error,
                        "peer refused some records without naming them"
                    );
                }
                ctx.endpoints
                    .succeeded(endpoint, (job.len() - rejected) as u64);
                recovered(lane);
                let sent_bytes = encoded.share_of(job.len() - rejected, job.len());
                job.partially_rejected(rejected, sent_bytes);
                return;
            }
            Outcome::EndpointFailed { error } => {
                log_failure(lane, &ctx.endpoints, endpoint, attempt, &error);
                let wait = match ctx.endpoints.failed(endpoint) {
                    Some(first_probe) => {
                        ctx.start_probe(endpoint, first_probe);
                        None
                    }
                    // Untracked: one implicit endpoint; retry soon enough to
                    // see its return within seconds whatever the backoff.
                    None if !tracked => Some(backoff.delay(attempt, None).min(OUTAGE_PROBE)),
                    None => None,
                };
                Again {
                    wait,
                    failing: true,
                }
            }
            Outcome::Throttled { after, error } => {
                log_failure(lane, &ctx.endpoints, endpoint, attempt, &error);
                m.throttled.inc();
                Again {
                    wait: throttle(&ctx, endpoint, backoff.delay(attempt, after)),
                    failing: true,
                }
            }
            Outcome::Retry { after, error } => {
                log_failure(lane, &ctx.endpoints, endpoint, attempt, &error);
                Again {
                    wait: Some(backoff.delay(attempt, after)),
                    failing: true,
                }
            }
            Outcome::Partial(records) => {
                if records.len() != job.len() {
                    // A destination bug, not the peer's: never guess which
                    // events got through. Retrying everything may duplicate,
                    // but loses nothing.
                    tracing::error!(
                        records = records.len(),
                        events = job.len(),
                        "per-record outcome count does not match the request; retrying all"
                    );
                    Again {
                        wait: Some(backoff.delay(attempt, None)),
                        failing: true,
                    }
                } else {
                    let split = split_partial(&mut job, records, &encoded);
                    ctx.endpoints.succeeded(endpoint, split.delivered);
                    if !split.rejected.is_empty() {
                        tracing::warn!(
                            endpoint = %ctx.endpoints.name(endpoint),
                            rejected = split.rejected.len(),
                            first = %split.whys[0].error,
                            "peer rejected records"
                        );
                        ctx.fail(split.rejected, DropReason::Rejected, Why::Each(&split.whys))
                            .await;
                    }
                    if job.is_empty() {
                        recovered(lane);
                        return;
                    }
                    encoded = ctx.encode(&mut job);
                    // Progress restarts the count: the backoff and
                    // `max_attempts` measure attempts that got nothing
                    // through. Otherwise a job whose records go through a
                    // few per attempt (Kinesis `ordering: per_key` under
                    // throttling) climbs to `max_backoff` while moving.
                    if split.delivered > 0 {
                        attempt = 1;
                    }
                    let delay = backoff.delay(attempt, split.after);
                    let wait = if split.throttled {
                        m.throttled.inc();
                        throttle(&ctx, endpoint, delay)
                    } else if split.delivered == 0 && split.after.is_none() && !tracked {
                        // Nothing got through and the peer gave no hint
                        // (every record timed out: a hung or lost peer).
                        // Like an endpoint failure, retry soon enough to
                        // see its return within seconds, whatever the
                        // backoff has grown to.
                        Some(delay.min(OUTAGE_PROBE))
                    } else {
                        Some(delay)
                    };
                    // Some records failing is not the peer failing: only a
                    // round where nothing got through is.
                    Again {
                        wait,
                        failing: split.delivered == 0,
                    }
                }
            }
        };
        m.retries.inc();
        m.retried_events.inc_by(job.len() as u64);
        if !tracked && again.failing {
            lane.set_peer_failing(true);
        }
        if ctx.settings.max_attempts.is_some_and(|max| attempt >= max) {
            tracing::warn!(events = job.len(), attempts = attempt, "retries exhausted");
            ctx.fail(job, DropReason::RetriesExhausted, Why::One(None))
                .await;
            return;
        }
        if let Some(d) = again.wait {
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
                _ = ctx.retire.cancelled() => {
                    job.requeue(lane);
                    return;
                }
                _ = tokio::time::sleep(d) => {}
            }
        }
    }
}

/// Adaptive concurrency's reading of an outcome: anything the peer refused
/// to process now (an outage, a throttle, records sent back as throttled)
/// is pushback; per-record rejections and plain record retries are not.
fn signal_of(outcome: &Outcome) -> Signal {
    match outcome {
        Outcome::Delivered | Outcome::Rejected(_) | Outcome::PartialCount { .. } => Signal::Ok,
        Outcome::Partial(records) => {
            if records.iter().any(|r| {
                matches!(
                    r,
                    RecordOutcome::Retry {
                        throttled: true,
                        ..
                    }
                )
            }) {
                Signal::Backoff
            } else {
                Signal::Ok
            }
        }
        _ => Signal::Backoff,
    }
}

/// Back off a throttling peer: its endpoint is paused, so no job sends there
/// until the delay is over (with several endpoints, the others keep going;
/// with one, the whole destination waits).
/// A count-only partial result whose refused records the destination can
/// name becomes a per-record one, so they are dead-lettered with the peer's
/// reason; otherwise it stays a count.
fn named_refusals<D: Destination>(
    ctx: &Driver<D>,
    job: &Job,
    rejected: usize,
    why: Rejection,
) -> Outcome {
    match ctx.dest.refused(&job.events, rejected, &why) {
        Some(flags) if flags.len() == job.len() => Outcome::Partial(
            flags
                .into_iter()
                .map(|refused| {
                    if refused {
                        RecordOutcome::rejected(why.clone())
                    } else {
                        RecordOutcome::Delivered
                    }
                })
                .collect(),
        ),
        _ => Outcome::PartialCount { rejected, why },
    }
}

fn throttle<D: Destination>(ctx: &Driver<D>, endpoint: usize, d: Duration) -> Option<Duration> {
    ctx.endpoints
        .pause(endpoint, tokio::time::Instant::now() + d);
    None
}

/// The first failure while healthy is a warning; repeats are debug.
fn log_failure(lane: &Consumer, endpoints: &Endpoints, endpoint: usize, attempt: u32, error: &str) {
    if attempt == 1 && !lane.peer_failing() {
        tracing::warn!(endpoint = %endpoints.name(endpoint), %error, "delivery failed; retrying");
    } else {
        tracing::debug!(endpoint = %endpoints.name(endpoint), %error, attempt, "retrying");
    }
}

fn recovered(lane: &Consumer) {
    if lane.peer_failing() {
        tracing::info!("delivery recovered");
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

/// A partial outcome taken apart.
struct Split {
    delivered: u64,
    /// The rejected records (not yet counted: dead-lettered or dropped by
    /// the caller) and, in the same order, why each was refused.
    rejected: Job,
    whys: Vec<Rejection>,
    /// Some record to retry was throttled, and the longest hint given.
    throttled: bool,
    after: Option<Duration>,
}

/// Count the delivered records of a partial outcome (events and their wire
/// bytes), narrow the job to the records to retry, and hand back the
/// rejected ones with their reasons.
fn split_partial(
    job: &mut Job,
    records: Vec<RecordOutcome>,
    encoded: &super::Encoded<impl Sized>,
) -> Split {
    let mut delivered = 0u64;
    let mut throttled = false;
    let mut after: Option<Duration> = None;
    for r in &records {
        match r {
            RecordOutcome::Delivered => delivered += 1,
            RecordOutcome::Rejected(_) => {}
            RecordOutcome::Retry {
                throttled: t,
                after: a,
            } => {
                throttled |= t;
                if let Some(a) = a {
                    after = Some(after.map_or(*a, |b| b.max(*a)));
                }
            }
        }
    }
    let is_delivered = |i: usize| records[i] == RecordOutcome::Delivered;
    let bytes = encoded.bytes_of(records.len(), delivered as usize, is_delivered);
    job.split_off_where(is_delivered).delivered(bytes as usize);
    // Indices now count in the job without the delivered records.
    let left: Vec<&RecordOutcome> = records
        .iter()
        .filter(|r| **r != RecordOutcome::Delivered)
        .collect();
    let rejected = job.split_off_where(|i| matches!(left[i], RecordOutcome::Rejected(_)));
    let whys = records
        .into_iter()
        .filter_map(|r| match r {
            RecordOutcome::Rejected(why) => Some(*why),
            _ => None,
        })
        .collect();
    Split {
        delivered,
        rejected,
        whys,
        throttled,
        after,
    }
}
