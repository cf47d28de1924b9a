//! Destinations: one file per type, each only "encode, send, classify" on top
//! of the shared driver (`crate::driver`).
//!
//! Every destination accepts the same delivery settings (`encoding`,
//! `compression`, `batch`, `request`, `retry`, `backpressure`, `queue`). They
//! are written into each type's config struct by `destination_config!` rather
//! than with `#[serde(flatten)]`, because flattening buffers the map and loses
//! the line and column of every error inside it.

pub mod blackhole;
pub mod console;
pub mod file;
pub mod http;
pub mod tcp;
pub mod udp;

use std::sync::Arc;

use serde::Deserializer;
use serde::de::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ComponentKind, Validate};
use crate::driver::{
    BatchConfig, Compression, DeadLetter, DeliveryDefaults, DeliverySettings, Destination, Driver,
    Encoder, Encoding, MetricConfig, RequestConfig, RetryConfig,
};
use crate::lane::{DEFAULT_MAX_EVENTS, Lane, LanePolicy, Policy, QueueConfig};
use crate::metrics::Metrics;

/// Declares a destination's config struct with the common delivery settings
/// followed by its own fields.
#[macro_export]
macro_rules! destination_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(rename = "type")]
            pub kind: String,
            #[serde(default)]
            pub encoding: Option<$crate::driver::Encoding>,
            #[serde(default)]
            pub compression: Option<$crate::driver::Compression>,
            #[serde(default)]
            pub batch: $crate::driver::BatchConfig,
            #[serde(default)]
            pub request: $crate::driver::RequestConfig,
            #[serde(default)]
            pub retry: $crate::driver::RetryConfig,
            #[serde(default)]
            pub backpressure: $crate::lane::Policy,
            #[serde(default)]
            pub queue: $crate::lane::QueueConfig,
            /// Where rejected (and retry-exhausted) events go instead of
            /// being dropped: another destination's id.
            #[serde(default)]
            pub dead_letter: Option<String>,
            /// Which event fields the metric encodings read.
            #[serde(default)]
            pub metric: Option<$crate::driver::MetricConfig>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::destinations::HasCommon for $name {
            fn common(&self) -> $crate::destinations::Common<'_> {
                $crate::destinations::Common {
                    encoding: self.encoding,
                    compression: self.compression,
                    batch: &self.batch,
                    request: &self.request,
                    retry: &self.retry,
                    backpressure: self.backpressure,
                    queue: &self.queue,
                    dead_letter: self.dead_letter.as_deref(),
                    metric: self.metric.as_ref(),
                }
            }
        }
    };
}

/// Indices of events an encoder could not encode, as skips for the driver.
pub fn unencodable(indices: Vec<usize>) -> Vec<(usize, crate::metrics::DropReason)> {
    indices
        .into_iter()
        .map(|i| (i, crate::metrics::DropReason::Unencodable))
        .collect()
}

/// The delivery settings every destination has.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub encoding: Option<Encoding>,
    pub compression: Option<Compression>,
    pub batch: &'a BatchConfig,
    pub request: &'a RequestConfig,
    pub retry: &'a RetryConfig,
    pub backpressure: Policy,
    pub queue: &'a QueueConfig,
    pub dead_letter: Option<&'a str>,
    pub metric: Option<&'a MetricConfig>,
}

pub trait HasCommon {
    fn common(&self) -> Common<'_>;
}

impl Common<'_> {
    /// The destination's encoder (its encoding, compression and metric fields).
    pub fn encoder(&self) -> Result<Encoder, String> {
        Encoder::new(
            self.encoding.unwrap_or_default(),
            self.compression.unwrap_or_default(),
            self.metric,
        )
    }

    pub fn lane_policy(&self) -> LanePolicy {
        LanePolicy::new(self.backpressure, self.queue.drop.unwrap_or_default())
    }

    pub fn lane_capacity(&self) -> usize {
        self.queue.max_events.unwrap_or(DEFAULT_MAX_EVENTS)
    }

    fn validate(&self) -> Result<(), String> {
        if self.batch.max_events == Some(0) {
            return Err("batch.max_events must be at least 1".into());
        }
        if self.batch.max_bytes.is_some_and(|b| b.0 == 0) {
            return Err("batch.max_bytes must be at least 1".into());
        }
        if self.request.max_concurrency == Some(0) {
            return Err("request.max_concurrency must be at least 1".into());
        }
        if self.batch.max_event_bytes.is_some_and(|b| b.0 == 0) {
            return Err("batch.max_event_bytes must be at least 1".into());
        }
        if self.queue.max_events == Some(0) {
            return Err("queue.max_events must be at least 1".into());
        }
        if self.queue.drop.is_some() && self.backpressure != Policy::Drop {
            return Err("queue.drop applies only with `backpressure: drop`".into());
        }
        if let Some(key) = self.queue.disk_setting()
            && self.backpressure != Policy::PersistentQueue
        {
            return Err(format!(
                "queue.{key} applies only with `backpressure: persistent_queue`"
            ));
        }
        if self.queue.drain_rate.is_some()
            && self.queue.ordering != Some(crate::queue::Ordering::LiveFirst)
        {
            return Err("queue.drain_rate applies only with `ordering: live_first`".into());
        }
        if self.queue.drain_rate == Some(0) {
            return Err("queue.drain_rate must be at least 1".into());
        }
        if self.queue.max_bytes.is_some_and(|b| b.0 == 0) {
            return Err("queue.max_bytes must be at least 1".into());
        }
        if self.queue.segment_bytes.is_some_and(|b| b.0 < 4096) {
            return Err("queue.segment_bytes must be at least 4KiB".into());
        }
        if self.queue.fsync_interval.is_some()
            && self
                .queue
                .fsync
                .is_some_and(|f| f != crate::queue::Fsync::Interval)
        {
            return Err("queue.fsync_interval applies only with `fsync: interval`".into());
        }
        self.encoder()?;
        if let (Some(i), Some(m)) = (self.retry.initial_backoff, self.retry.max_backoff)
            && i > m
        {
            return Err("retry.initial_backoff is larger than retry.max_backoff".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub enum DestinationConfig {
    Console(console::ConsoleConfig),
    Blackhole(blackhole::BlackholeConfig),
    File(file::FileConfig),
    Http(http::HttpConfig),
    Tcp(tcp::TcpConfig),
    Udp(udp::UdpConfig),
}

impl ComponentKind for DestinationConfig {
    const SECTION: &'static str = "destinations";
    const NOUN: &'static str = "destination";
    const KINDS: &'static [&'static str] = &["http", "tcp", "udp", "console", "blackhole", "file"];

    fn deserialize_kind<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            "console" => DestinationConfig::Console(Deserialize::deserialize(d)?),
            "blackhole" => DestinationConfig::Blackhole(Deserialize::deserialize(d)?),
            "file" => DestinationConfig::File(Deserialize::deserialize(d)?),
            "http" => DestinationConfig::Http(Deserialize::deserialize(d)?),
            "tcp" => DestinationConfig::Tcp(Deserialize::deserialize(d)?),
            "udp" => DestinationConfig::Udp(Deserialize::deserialize(d)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown destination type `{other}`"
                )));
            }
        })
    }
}

impl DestinationConfig {
    pub fn common(&self) -> Common<'_> {
        match self {
            DestinationConfig::Console(c) => c.common(),
            DestinationConfig::Blackhole(c) => c.common(),
            DestinationConfig::File(c) => c.common(),
            DestinationConfig::Http(c) => c.common(),
            DestinationConfig::Tcp(c) => c.common(),
            DestinationConfig::Udp(c) => c.common(),
        }
    }

    /// Whether `retry.retry_on` (status codes) means anything here.
    fn has_statuses(&self) -> bool {
        matches!(self, DestinationConfig::Http(_))
    }
}

impl Validate for DestinationConfig {
    fn validate(&self) -> Result<(), String> {
        self.common().validate()?;
        if self.common().retry.retry_on.is_some() && !self.has_statuses() {
            return Err(
                "retry.retry_on lists status codes, which only http destinations have".into(),
            );
        }
        match self {
            DestinationConfig::Console(c) => c.validate(),
            DestinationConfig::Blackhole(c) => c.validate(),
            DestinationConfig::File(c) => c.validate(),
            DestinationConfig::Http(c) => c.validate(),
            DestinationConfig::Tcp(c) => c.validate(),
            DestinationConfig::Udp(c) => c.validate(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("destination `{id}`: {message}")]
pub struct DestinationError {
    pub id: String,
    pub message: String,
}

/// What a destination's driver needs from the rest of the topology.
pub struct Wiring<'a> {
    pub lane: Arc<Lane>,
    /// The hard stop (the shutdown deadline).
    pub stop: CancellationToken,
    pub metrics: &'a Metrics,
    pub dead_letter: Option<DeadLetter>,
}

/// Start the driver for a destination. Fails only for settings that cannot
/// work at all (an unreadable TLS CA file, say); a peer or a path that is not
/// reachable yet is retried instead.
pub fn start(
    id: &str,
    config: &DestinationConfig,
    wiring: Wiring<'_>,
) -> Result<JoinHandle<()>, DestinationError> {
    tracing::debug!(
        destination = id,
        policy = config.common().lane_policy().as_str(),
        "starting destination"
    );
    let err = |message: String| DestinationError {
        id: id.to_string(),
        message,
    };
    Ok(match config {
        DestinationConfig::Console(c) => spawn(
            console::Console::new(c).map_err(err)?,
            c.common(),
            DeliveryDefaults::LOCAL,
            wiring,
        ),
        DestinationConfig::Blackhole(c) => spawn(
            blackhole::Blackhole::new(c),
            c.common(),
            DeliveryDefaults::LOCAL,
            wiring,
        ),
        DestinationConfig::File(c) => spawn(
            file::FileDestination::new(c).map_err(err)?,
            c.common(),
            DeliveryDefaults::LOCAL,
            wiring,
        ),
        DestinationConfig::Http(c) => spawn(
            http::HttpDestination::new(c).map_err(err)?,
            c.common(),
            DeliveryDefaults::NETWORK,
            wiring,
        ),
        DestinationConfig::Tcp(c) => spawn(
            tcp::TcpDestination::new(c).map_err(err)?,
            c.common(),
            DeliveryDefaults::STREAM,
            wiring,
        ),
        DestinationConfig::Udp(c) => spawn(
            udp::UdpDestination::new(c).map_err(err)?,
            c.common(),
            DeliveryDefaults::DATAGRAM,
            wiring,
        ),
    })
}

fn spawn<D: Destination>(
    dest: D,
    common: Common<'_>,
    defaults: DeliveryDefaults,
    w: Wiring<'_>,
) -> JoinHandle<()> {
    let settings = DeliverySettings::resolve(common.batch, common.request, common.retry, defaults);
    let driver = Driver::new(dest, w.lane, settings, w.stop, w.metrics, w.dead_letter);
    tokio::spawn(driver.run())
}
