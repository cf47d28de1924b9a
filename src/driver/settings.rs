//! The `batch:`, `request:` and `retry:` settings every destination accepts,
//! and their resolution against a destination type's defaults.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use std::sync::Arc;

use super::backoff::Backoff;
use super::concurrency::Concurrency;
pub use super::order::{Kept, Ordering};
pub use super::partitions::PartitionKeys;
use crate::config::units::{ByteSize, Dur};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    // Spanned: a value above the protocol's limit is reported at its line.
    /// Flush when this many events are batched.
    #[schemars(with = "Option<usize>")]
    pub max_events: Option<Spanned<usize>>,
    /// Flush before the batch (before compression) would exceed this size.
    #[schemars(with = "Option<ByteSize>")]
    pub max_bytes: Option<Spanned<ByteSize>>,
    /// Flush this long after the first event entered the batch.
    pub timeout: Option<Dur>,
    /// Drop (`reason="oversize"`) any single event larger than this.
    #[schemars(with = "Option<ByteSize>")]
    pub max_event_bytes: Option<Spanned<ByteSize>>,
    /// Events with the same values of these fields share a batch (and
    /// only they): Fluentd's chunk keys.
    pub partition_by: Option<Vec<String>>,
    /// The field with each event's time: events of one `time_window` share
    /// a batch (Fluentd's `timekey`). Events without it: the time they
    /// are batched.
    pub time_key: Option<String>,
    /// With `time_key`: the window's length (default 1h).
    pub time_window: Option<Dur>,
    /// When a batch goes: `interval` (default: `timeout` after its first
    /// event), `lazy` (only when full, or once its time window is over) or
    /// `immediate` (at once).
    pub flush: Option<Flush>,
    /// With `partition_by` or `time_key`: most batches open at once; the
    /// oldest goes to open another, so memory stays flat. Default 1000.
    pub max_partitions: Option<usize>,
}

/// `batch.flush`: Fluentd's flush modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flush {
    /// Only at `max_events` / `max_bytes`, or when a time window is over
    /// (and at shutdown or reload).
    Lazy,
    /// `timeout` after a batch's first event, or when full.
    #[default]
    Interval,
    /// Whatever has arrived goes at once: under light load, each event.
    Immediate,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight at once: a number, or `adaptive`.
    pub concurrency: Option<Concurrency>,
    /// The ceiling for `adaptive` (default 200).
    pub max_concurrency: Option<usize>,
    /// Give up on one attempt after this long and retry it.
    pub timeout: Option<Dur>,
    /// What stays in order with requests in flight at once: `auto`
    /// (default: per key where the destination has one; else per sender —
    /// a connection, a file, a UDP or Kafka source — on stream
    /// destinations), `sender`, or `none` (every request independent).
    pub ordering: Option<Ordering>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub initial_backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
    /// Wait as long as the peer's `Retry-After` asks (capped by `max_backoff`).
    pub honor_retry_after: Option<bool>,
    /// Stop after this many attempts and drop with reason `retries_exhausted`.
    /// Unset: retry for ever, and let the lane's policy act upstream.
    pub max_attempts: Option<u32>,
    /// Status codes to retry (HTTP destinations): numbers, classes such as
    /// `5xx`, and exclusions such as `!501`. Replaces the default list.
    pub retry_on: Option<Vec<StatusRule>>,
}

/// One entry of `retry.retry_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRule {
    Code(u16),
    /// `4xx` / `5xx`: every code whose first digit is this.
    Class(u16),
    /// `!503`: never retried even if a class includes it.
    Not(u16),
}

impl<'de> Deserialize<'de> for StatusRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusRule;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status code (503), a class (\"5xx\") or an exclusion (\"!501\")")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusRule, E> {
                match u16::try_from(v) {
                    Ok(c) if (100..600).contains(&c) => Ok(StatusRule::Code(c)),
                    _ => Err(E::custom(format!("{v} is not an HTTP status code"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusRule, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not an HTTP status code")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusRule, E> {
                let t = v.trim();
                if let Some(code) = t.strip_prefix('!') {
                    return match self.visit_str::<E>(code)? {
                        StatusRule::Code(c) => Ok(StatusRule::Not(c)),
                        _ => Err(E::custom(format!(
                            "`{v}`: exclude single codes, like \"!501\""
                        ))),
                    };
                }
                if let Some(d) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                    return match d.parse::<u16>() {
                        Ok(c) if (1..6).contains(&c) => Ok(StatusRule::Class(c)),
                        _ => Err(E::custom(format!("`{v}` is not a status class"))),
                    };
                }
                t.parse::<u64>()
                    .map_err(|_| E::custom(format!("`{v}` is not a status code")))
                    .and_then(|c| self.visit_u64(c))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether `status` is retried under `rules`.
pub fn retried(rules: &[StatusRule], status: u16) -> bool {
    if rules.contains(&StatusRule::Not(status)) {
        return false;
    }
    rules.iter().any(|r| match *r {
        StatusRule::Code(c) => c == status,
        StatusRule::Class(c) => status / 100 == c,
        StatusRule::Not(_) => false,
    })
}

/// HTTP statuses retried by default: 408, 429 and 5xx except 501 (what
/// Vector retries).
pub const DEFAULT_RETRY_ON: &[StatusRule] = &[
    StatusRule::Code(408),
    StatusRule::Code(429),
    StatusRule::Class(5),
    StatusRule::Not(501),
];

/// A destination type's defaults for the settings above.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryDefaults {
    pub max_events: usize,
    pub max_bytes: u64,
    pub batch_timeout: Duration,
    pub concurrency: usize,
    pub request_timeout: Option<Duration>,
    /// Larger events are dropped as `oversize` (the protocol's record limit).
    pub max_event_bytes: Option<u64>,
    /// `ordering: auto` keeps each sender's order (stream destinations,
    /// where receivers expect a sender's lines in order); otherwise only
    /// keys' (a peer's own promise), and requests run independently.
    pub sender_order: bool,
}

/// Default ceiling for adaptive concurrency (Vector's).
pub const DEFAULT_MAX_CONCURRENCY: usize = 200;

impl DeliveryDefaults {
    /// Defaults for network destinations (Cribl's webhook and Vector's sinks agree
    /// on roughly these).
    pub const NETWORK: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 4 << 20,
        batch_timeout: Duration::from_secs(1),
        concurrency: 5,
        request_timeout: Some(Duration::from_secs(30)),
        max_event_bytes: None,
        // Requests in parallel, as Vector's and Cribl's HTTP senders: a
        // single busy sender still uses every slot.
        sender_order: false,
    };

    /// Defaults for TCP streams: small batches flushed quickly (syslog
    /// receivers expect a steady trickle), two connections, and no overall
    /// request timeout (`write_timeout` bounds each write).
    pub const STREAM: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 1 << 20,
        batch_timeout: Duration::from_millis(100),
        concurrency: 2,
        request_timeout: None,
        max_event_bytes: None,
        sender_order: true,
    };

    /// Defaults for UDP: datagrams go out at once, one sender.
    pub const DATAGRAM: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 1 << 20,
        batch_timeout: Duration::from_millis(50),
        concurrency: 1,
        request_timeout: None,
        max_event_bytes: None,
        sender_order: true,
    };

    /// Defaults for local writes: flush quickly, one writer, and no request
    /// timeout (abandoning a half-written batch to a slow pipe would tear lines).
    pub const LOCAL: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 1 << 20,
        batch_timeout: Duration::from_millis(100),
        concurrency: 1,
        request_timeout: None,
        max_event_bytes: None,
        sender_order: true,
    };
}

/// Resolved settings the driver runs with.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub flush: Flush,
    /// `partition_by` / `time_key`, ready to read events with.
    pub partition: Option<Arc<PartitionKeys>>,
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_event_bytes: Option<usize>,
    pub batch_timeout: Duration,
    pub concurrency: Concurrency,
    pub max_concurrency: usize,
    pub request_timeout: Option<Duration>,
    /// What stays in order (`ordering:` resolved).
    pub kept: Kept,
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
}

impl DeliverySettings {
    /// Most requests in flight at once.
    pub fn slots(&self) -> usize {
        match self.concurrency {
            Concurrency::Fixed(n) => n,
            Concurrency::Adaptive => self.max_concurrency,
        }
    }

    /// Each sender's events go in jobs of their own, and on a connection
    /// of their own: senders are kept in order, in parallel. With one
    /// slot, requests go one at a time in lane order: every sender's order
    /// and their order among each other, as before ordering existed.
    pub fn by_sender(&self) -> bool {
        self.kept.senders() && self.slots() > 1
    }

    pub fn resolve(
        batch: &BatchConfig,
        request: &RequestConfig,
        retry: &RetryConfig,
        d: DeliveryDefaults,
    ) -> Self {
        DeliverySettings {
            flush: batch.flush.unwrap_or_default(),
            partition: PartitionKeys::new(batch).ok().flatten().map(Arc::new),
            max_events: batch
                .max_events
                .as_ref()
                .map_or(d.max_events, |s| s.value)
                .max(1),
            max_bytes: batch
                .max_bytes
                .as_ref()
                .map_or(d.max_bytes, |b| b.value.0)
                .clamp(1, usize::MAX as u64) as usize,
            max_event_bytes: batch
                .max_event_bytes
                .as_ref()
                .map(|b| b.value.0)
                .or(d.max_event_bytes)
                .map(|b| b.min(usize::MAX as u64) as usize),
            batch_timeout: batch.timeout.map_or(d.batch_timeout, Dur::get),
            concurrency: match request.concurrency {
                Some(Concurrency::Fixed(n)) => Concurrency::Fixed(n.clamp(1, 1024)),
                Some(Concurrency::Adaptive) => Concurrency::Adaptive,
                None => Concurrency::Fixed(d.concurrency),
            },
            max_concurrency: request
                .max_concurrency
                .unwrap_or(DEFAULT_MAX_CONCURRENCY)
                .clamp(1, 1024),
            request_timeout: request.timeout.map(Dur::get).or(d.request_timeout),
            kept: Kept::resolve(request.ordering.unwrap_or_default(), d.sender_order),
            backoff: Backoff {
                initial: retry
                    .initial_backoff
                    .map_or(Duration::from_secs(1), Dur::get),
                max: retry.max_backoff.map_or(Duration::from_secs(60), Dur::get),
                honor_retry_after: retry.honor_retry_after.unwrap_or(true),
            },
            max_attempts: retry.max_attempts.filter(|&n| n > 0),
        }
    }
}
