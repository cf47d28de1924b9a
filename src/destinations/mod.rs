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

use std::sync::Arc;

use serde::Deserializer;
use serde::de::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ComponentKind, Validate};
use crate::driver::{
    BatchConfig, Compression, DeliveryDefaults, DeliverySettings, Destination, Driver, Encoding,
    RequestConfig, RetryConfig,
};
use crate::lane::{DEFAULT_MAX_EVENTS, Lane, LanePolicy, Policy, QueueConfig};

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
                }
            }
        }
    };
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
}

pub trait HasCommon {
    fn common(&self) -> Common<'_>;
}

impl Common<'_> {
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
        if self.request.concurrency == Some(0) {
            return Err("request.concurrency must be at least 1".into());
        }
        if self.queue.max_events == Some(0) {
            return Err("queue.max_events must be at least 1".into());
        }
        if self.queue.drop.is_some() && self.backpressure != Policy::Drop {
            return Err("queue.drop applies only with `backpressure: drop`".into());
        }
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
}

impl ComponentKind for DestinationConfig {
    const SECTION: &'static str = "destinations";
    const NOUN: &'static str = "destination";
    const KINDS: &'static [&'static str] = &["console", "blackhole", "file"];

    fn deserialize_kind<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            "console" => DestinationConfig::Console(Deserialize::deserialize(d)?),
            "blackhole" => DestinationConfig::Blackhole(Deserialize::deserialize(d)?),
            "file" => DestinationConfig::File(Deserialize::deserialize(d)?),
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
        }
    }
}

impl Validate for DestinationConfig {
    fn validate(&self) -> Result<(), String> {
        self.common().validate()?;
        match self {
            DestinationConfig::Console(c) => c.validate(),
            DestinationConfig::Blackhole(c) => c.validate(),
            DestinationConfig::File(c) => c.validate(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("destination `{id}`: {message}")]
pub struct DestinationError {
    pub id: String,
    pub message: String,
}

/// Start the driver for a destination on `lane`. `stop` is the hard stop.
/// Fails only for settings that cannot work at all (none so far: a file path
/// that cannot be written yet is retried, not refused).
pub fn start(
    id: &str,
    config: &DestinationConfig,
    lane: Arc<Lane>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, DestinationError> {
    tracing::debug!(
        destination = id,
        policy = config.common().lane_policy().as_str(),
        "starting destination"
    );
    Ok(match config {
        DestinationConfig::Console(c) => spawn(
            console::Console::new(c),
            c.common(),
            DeliveryDefaults::LOCAL,
            lane,
            stop,
        ),
        DestinationConfig::Blackhole(c) => spawn(
            blackhole::Blackhole::new(c),
            c.common(),
            DeliveryDefaults::LOCAL,
            lane,
            stop,
        ),
        DestinationConfig::File(c) => spawn(
            file::FileDestination::new(c),
            c.common(),
            DeliveryDefaults::LOCAL,
            lane,
            stop,
        ),
    })
}

fn spawn<D: Destination>(
    dest: D,
    common: Common<'_>,
    defaults: DeliveryDefaults,
    lane: Arc<Lane>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let settings = DeliverySettings::resolve(common.batch, common.request, common.retry, defaults);
    tokio::spawn(Driver::new(dest, lane, settings, stop).run())
}
