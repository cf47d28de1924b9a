//! The destination contract: what a destination implements ("encode, send,
//! classify") and the outcomes it may report. The delivery loop
//! (`deliver.rs`) is the only reader of these outcomes.

use std::future::Future;
use std::time::Duration;

use super::dead_letter::Rejection;
use super::endpoints::EndpointSpec;
use crate::event::Event;
use crate::metrics::DropReason;

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

    /// `send`, for a job whose events all belong to one order `stream`
    /// (a shard of senders or keys): a destination whose peer sees order
    /// only within a connection keeps each stream on its own connection.
    /// The driver never has two requests of one stream in flight.
    fn send_on(
        &self,
        request: &Self::Request,
        endpoint: usize,
        stream: Option<u32>,
    ) -> impl Future<Output = Outcome> + Send {
        let _ = stream;
        self.send(request, endpoint)
    }

    /// Whether a down endpoint is reachable again, checked in the background
    /// on the probe schedule (a TCP connect, say). Default: assume so once
    /// the backoff has passed, and let the next request tell.
    fn probe(&self, endpoint: usize) -> impl Future<Output = bool> + Send {
        let _ = endpoint;
        async { true }
    }

    /// After `Outcome::PartialCount`: which of the request's events (those
    /// included, in order) the peer refused, when its reason names them
    /// (InfluxDB's field type conflicts do). `None`, the default: not
    /// known, and never guessed.
    fn refused(&self, events: &[Event], rejected: usize, why: &Rejection) -> Option<Vec<bool>> {
        let _ = (events, rejected, why);
        None
    }

    /// Called once when the driver ends, after its last job: a destination
    /// that holds what it was sent (staged files) closes and finishes it,
    /// or leaves it where the next start finds it.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
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
    /// Wire bytes of each included record, for destinations that report
    /// per-record outcomes: a partial result then counts exactly the bytes
    /// of what was delivered. Empty: a share of `bytes` by record count.
    pub record_bytes: Vec<u32>,
    /// The order shards (`driver::key_bit`) of the keys the peer orders
    /// by (an SQS message group, a Kinesis partition key, ...), for a
    /// destination that has them configured: with `ordering: auto` the
    /// driver keeps each key's requests in order instead of each sender's.
    pub keys: Option<u64>,
}

impl<R> Encoded<R> {
    pub fn all(request: R, bytes: usize) -> Self {
        Encoded {
            keys: None,
            request,
            bytes,
            skipped: Vec::new(),
            record_bytes: Vec::new(),
        }
    }

    /// Bytes of the records for which `pick(i)` is true, out of `total`.
    pub(crate) fn bytes_of(
        &self,
        total: usize,
        picked: usize,
        pick: impl Fn(usize) -> bool,
    ) -> u64 {
        if self.record_bytes.len() == total {
            (0..total)
                .filter(|&i| pick(i))
                .map(|i| u64::from(self.record_bytes[i]))
                .sum()
        } else {
            self.share_of(picked, total)
        }
    }

    /// `picked` of `total` records' share of the request's bytes, for when
    /// which records is not known (or their sizes are not).
    pub(crate) fn share_of(&self, picked: usize, total: usize) -> u64 {
        if total == 0 {
            0
        } else {
            (self.bytes as u128 * picked as u128 / total as u128) as u64
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
    /// Per-record results, one per event included in the request, in order
    /// (SQS, Kinesis, Kafka delivery reports). The driver counts what was
    /// delivered, dead-letters or drops each rejected record with its own
    /// reason, and retries only the rest.
    Partial(Vec<RecordOutcome>),
    /// The peer took the request but refused `rejected` of its records
    /// without saying which (OTLP's `partial_success`, InfluxDB's
    /// `dropped=N`): that many are counted as rejected, the rest as sent.
    /// Which ones failed is never guessed, so none is dead-lettered, unless
    /// `Destination::refused` can tell from the reason: then it is a
    /// `Partial` with those records rejected.
    PartialCount { rejected: usize, why: Rejection },
}

/// What happened to one record of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    Delivered,
    /// Send it again. `throttled`: the peer is shedding load (Kinesis's
    /// `ProvisionedThroughputExceededException`, a Kafka quota): the
    /// destination backs off and adaptive concurrency counts it as
    /// pushback. `after`: the peer's hint for how long to wait.
    Retry {
        throttled: bool,
        after: Option<Duration>,
    },
    /// Refused for good, and why (its own status, gRPC code or protocol
    /// error name, carried into the dead letter).
    Rejected(Box<Rejection>),
}

impl RecordOutcome {
    /// A plain retry: not throttled, no hint.
    pub const RETRY: RecordOutcome = RecordOutcome::Retry {
        throttled: false,
        after: None,
    };

    pub fn rejected(why: Rejection) -> Self {
        RecordOutcome::Rejected(Box::new(why))
    }
}
