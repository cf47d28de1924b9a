//! The `batch:`, `request:` and `retry:` settings every destination accepts,
//! and their resolution against a destination type's defaults.

use std::time::Duration;

use serde::Deserialize;

use super::backoff::Backoff;
use crate::config::units::{ByteSize, Dur};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Flush when this many events are batched.
    pub max_events: Option<usize>,
    /// Flush before the batch (before compression) would exceed this size.
    pub max_bytes: Option<ByteSize>,
    /// Flush this long after the first event entered the batch.
    pub timeout: Option<Dur>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight at once.
    pub concurrency: Option<usize>,
    /// Give up on one attempt after this long and retry it.
    pub timeout: Option<Dur>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub initial_backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
    /// Wait as long as the peer's `Retry-After` asks (capped by `max_backoff`).
    pub honor_retry_after: Option<bool>,
    /// Stop after this many attempts and drop with reason `retries_exhausted`.
    /// Unset: retry for ever, and let the lane's policy act upstream.
    pub max_attempts: Option<u32>,
}

/// A destination type's defaults for the settings above.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryDefaults {
    pub max_events: usize,
    pub max_bytes: u64,
    pub batch_timeout: Duration,
    pub concurrency: usize,
    pub request_timeout: Option<Duration>,
}

impl DeliveryDefaults {
    /// Defaults for network destinations (Cribl's webhook and Vector's sinks agree
    /// on roughly these).
    pub const NETWORK: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 4 << 20,
        batch_timeout: Duration::from_secs(1),
        concurrency: 5,
        request_timeout: Some(Duration::from_secs(30)),
    };

    /// Defaults for local writes: flush quickly, one writer, and no request
    /// timeout (abandoning a half-written batch to a slow pipe would tear lines).
    pub const LOCAL: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 1 << 20,
        batch_timeout: Duration::from_millis(100),
        concurrency: 1,
        request_timeout: None,
    };
}

/// Resolved settings the driver runs with.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub batch_timeout: Duration,
    pub concurrency: usize,
    pub request_timeout: Option<Duration>,
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
}

impl DeliverySettings {
    pub fn resolve(
        batch: &BatchConfig,
        request: &RequestConfig,
        retry: &RetryConfig,
        d: DeliveryDefaults,
    ) -> Self {
        DeliverySettings {
            max_events: batch.max_events.unwrap_or(d.max_events).max(1),
            max_bytes: batch
                .max_bytes
                .map_or(d.max_bytes, |b| b.0)
                .clamp(1, usize::MAX as u64) as usize,
            batch_timeout: batch.timeout.map_or(d.batch_timeout, Dur::get),
            concurrency: request.concurrency.unwrap_or(d.concurrency).clamp(1, 1024),
            request_timeout: request.timeout.map(Dur::get).or(d.request_timeout),
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
