//! Destinations: one file per type, each only "encode, send, classify" on top
//! of the shared driver (`crate::driver`).
//!
//! Every destination accepts the same delivery settings (`encoding`,
//! `compression`, `batch`, `request`, `retry`, `backpressure`, `queue`). They
//! are written into each type's config struct by `destination_config!` rather
//! than with `#[serde(flatten)]`, because flattening buffers the map and loses
//! the line and column of every error inside it.
//!
//! Each type declares itself once (`kind::DestinationType`: name, defaults,
//! capabilities, async build) and is listed once, in `registry!` below;
//! everything that dispatches on the type is generated from that list.

pub mod blackhole;
pub mod console;
pub mod file;
pub mod filesystem;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kind;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod output_router;
#[cfg(feature = "pubsub")]
pub mod pubsub;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sluice")]
pub mod sluice;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod tcp;
pub mod udp;

use serde::Deserializer;
use serde::de::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use crate::config::{ComponentKind, Validate};
use crate::driver::{
    BatchConfig, Compression, DeadLetter, DeliveryDefaults, DeliverySettings, Driver, Encoder,
    Encoding, MetricConfig, RequestConfig, RetryConfig,
};
use crate::lane::{Consumer, LanePolicy, Policy, QueueConfig};
use crate::metrics::Metrics;
pub use kind::{BuildContext, Capabilities, DestinationType, Problem};

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
        #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
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
            /// The pipeline events go through before this destination's lane.
            #[serde(default)]
            pub pipeline: Option<String>,
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
                    pipeline: self.pipeline.as_deref(),
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
    pub pipeline: Option<&'a str>,
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
        self.queue.lane_policy(self.backpressure)
    }

    pub fn lane_capacity(&self) -> usize {
        self.queue.capacity()
    }

    fn validate(&self) -> Result<(), String> {
        if self.batch.max_events.as_ref().is_some_and(|n| n.value == 0) {
            return Err("batch.max_events must be at least 1".into());
        }
        if self
            .batch
            .max_bytes
            .as_ref()
            .is_some_and(|b| b.value.0 == 0)
        {
            return Err("batch.max_bytes must be at least 1".into());
        }
        crate::driver::PartitionKeys::new(self.batch)?;
        if self.request.max_concurrency == Some(0) {
            return Err("request.max_concurrency must be at least 1".into());
        }
        if self
            .batch
            .max_event_bytes
            .as_ref()
            .is_some_and(|b| b.value.0 == 0)
        {
            return Err("batch.max_event_bytes must be at least 1".into());
        }
        self.queue.validate(self.backpressure)?;
        self.encoder()?;
        if let (Some(i), Some(m)) = (self.retry.initial_backoff, self.retry.max_backoff)
            && i > m
        {
            return Err("retry.initial_backoff is larger than retry.max_backoff".into());
        }
        Ok(())
    }
}

/// The destination types this binary has: one line each. Everything below
/// the list is generated from the types' `DestinationType` declarations.
macro_rules! registry {
    ($( $(#[$attr:meta])* $variant:ident => $ty:ty ),* $(,)?) => {
        // Built once per config load and never moved on a hot path: a
        // variant's size costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum DestinationConfig {
            $( $(#[$attr])* $variant(<$ty as DestinationType>::Config), )*
            /// Not a protocol: the router expands it in place.
            OutputRouter(output_router::OutputRouterConfig),
        }

        /// Every destination `type` this binary was built with.
        pub const TYPES: &[&str] = &[
            $( $(#[$attr])* <$ty as DestinationType>::NAME, )*
            output_router::NAME,
        ];

        /// Each type's name, capabilities and defaults (`sluice destinations`).
        pub fn describe() -> Vec<TypeInfo> {
            vec![ $( $(#[$attr])* TypeInfo {
                name: <$ty as DestinationType>::NAME,
                capabilities: <$ty as DestinationType>::CAPABILITIES,
                defaults: defaults_of::<$ty>(),
            }, )* ]
        }

        impl ComponentKind for DestinationConfig {
            const SECTION: &'static str = "destinations";
            const NOUN: &'static str = "destination";
            const KINDS: &'static [&'static str] = TYPES;

            fn deserialize_kind<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
                $( $(#[$attr])*
                if kind == <$ty as DestinationType>::NAME {
                    return Ok(DestinationConfig::$variant(Deserialize::deserialize(d)?));
                } )*
                if kind == output_router::NAME {
                    return Ok(DestinationConfig::OutputRouter(Deserialize::deserialize(d)?));
                }
                Err(serde::de::Error::custom(format!("unknown destination type `{kind}`")))
            }

            fn kind_schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                use crate::config::schema::tagged;
                vec![
                    $( $(#[$attr])* (
                        <$ty as DestinationType>::NAME,
                        tagged::<<$ty as DestinationType>::Config>(g, <$ty as DestinationType>::NAME),
                    ), )*
                    (output_router::NAME, tagged::<output_router::OutputRouterConfig>(g, output_router::NAME)),
                ]
            }
        }

        impl DestinationConfig {
            /// The delivery settings; `None` for an output router, which
            /// delivers nothing itself.
            pub fn common(&self) -> Option<Common<'_>> {
                match self {
                    $( $(#[$attr])* DestinationConfig::$variant(c) => Some(c.common()), )*
                    DestinationConfig::OutputRouter(_) => None,
                }
            }

            fn capabilities(&self) -> Option<(&'static str, Capabilities)> {
                match self {
                    $( $(#[$attr])* DestinationConfig::$variant(_) => Some((
                        <$ty as DestinationType>::NAME,
                        <$ty as DestinationType>::CAPABILITIES,
                    )), )*
                    DestinationConfig::OutputRouter(_) => None,
                }
            }

            fn validate_own(&self) -> Result<(), String> {
                match self {
                    $( $(#[$attr])* DestinationConfig::$variant(c) => c.validate(), )*
                    DestinationConfig::OutputRouter(c) => c.validate(),
                }
            }

            /// `None` for an output router: it has no driver.
            async fn prepare(&self, id: &str, wiring: Wiring<'_>) -> Result<Option<Prepared>, DestinationError> {
                match self {
                    $( $(#[$attr])* DestinationConfig::$variant(c) => prepare_type::<$ty>(id, c, wiring).await.map(Some), )*
                    DestinationConfig::OutputRouter(_) => Ok(None),
                }
            }
        }
    };
}

registry! {
    Console => console::Console,
    Blackhole => blackhole::Blackhole,
    File => file::FileDestination,
    Filesystem => filesystem::FilesystemDestination,
    #[cfg(feature = "http")]
    Http => http::HttpDestination,
    Tcp => tcp::TcpDestination,
    Udp => udp::UdpDestination,
    #[cfg(feature = "kafka")]
    Kafka => kafka::KafkaDestination,
    #[cfg(feature = "sqs")]
    Sqs => sqs::SqsDestination,
    #[cfg(feature = "kinesis")]
    Kinesis => kinesis::KinesisDestination,
    #[cfg(feature = "s3")]
    S3 => s3::S3Destination,
    #[cfg(feature = "pubsub")]
    Pubsub => pubsub::PubsubDestination,
    #[cfg(feature = "otlp")]
    Otlp => otlp::OtlpDestination,
    #[cfg(feature = "sluice")]
    Sluice => sluice::SluiceDestination,
}

/// One destination type as `sluice destinations` shows it.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub name: &'static str,
    pub capabilities: Capabilities,
    pub defaults: DeliveryDefaults,
}

/// A type's defaults, narrowed to its protocol's limits.
fn defaults_of<T: DestinationType>() -> DeliveryDefaults {
    kind::effective_defaults(T::DEFAULTS, &T::CAPABILITIES)
}

impl DestinationConfig {
    /// Every check of one destination's settings: the common ones, the
    /// type's capabilities and limits, then its own.
    pub fn check(&self) -> Result<(), Problem> {
        if let (Some(common), Some((name, caps))) = (self.common(), self.capabilities()) {
            common.validate()?;
            kind::check_capabilities(name, &caps, &common)?;
        }
        self.validate_own()?;
        Ok(())
    }

    /// Where this destination's dead letters go.
    /// The destination's post-processing pipeline (an output router has
    /// none: its destinations have their own).
    pub fn pipeline(&self) -> Option<&str> {
        self.common().and_then(|c| c.pipeline)
    }

    pub fn dead_letter(&self) -> Option<&str> {
        self.common().and_then(|c| c.dead_letter)
    }

    /// Its `type:` as written in the configuration.
    pub fn type_name(&self) -> &'static str {
        self.capabilities()
            .map_or(output_router::NAME, |(name, _)| name)
    }

    pub fn output_router(&self) -> Option<&output_router::OutputRouterConfig> {
        match self {
            DestinationConfig::OutputRouter(r) => Some(r),
            _ => None,
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
    pub lane: Consumer,
    /// The hard stop (the shutdown deadline).
    pub stop: CancellationToken,
    /// A reload replaces the driver (see `Driver::new`).
    pub retire: CancellationToken,
    pub metrics: &'a Metrics,
    pub dead_letter: Option<DeadLetter>,
    pub data_dir: &'a std::path::Path,
}

/// Start the driver for a destination. Fails only for settings that cannot
/// work at all (an unreadable TLS CA file, say); a peer or a path that is not
/// reachable yet is retried instead.
pub async fn start(
    id: &str,
    config: &DestinationConfig,
    wiring: Wiring<'_>,
) -> Result<Option<JoinHandle<()>>, DestinationError> {
    let metrics = wiring.metrics.clone();
    Ok(prepare(id, config, wiring)
        .await?
        .map(|p| p.spawn(&metrics)))
}

/// A destination's driver, built (so its settings are known to work) but
/// not yet running: a reload builds every new driver before it changes
/// anything, and starts one only once the driver it replaces has ended.
pub struct Prepared {
    id: String,
    run: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Prepared {
    pub fn spawn(self, metrics: &Metrics) -> JoinHandle<()> {
        let span = tracing::info_span!("destination", id = %self.id);
        crate::supervise::spawn(self.run.instrument(span), "destination", &self.id, metrics)
    }
}

/// Build a destination's driver without starting it; `None` for an output
/// router, which has none.
pub async fn prepare(
    id: &str,
    config: &DestinationConfig,
    wiring: Wiring<'_>,
) -> Result<Option<Prepared>, DestinationError> {
    tracing::debug!(destination = id, "starting destination");
    config.prepare(id, wiring).await
}

async fn prepare_type<T: DestinationType>(
    id: &str,
    config: &T::Config,
    w: Wiring<'_>,
) -> Result<Prepared, DestinationError> {
    let ctx = BuildContext {
        id,
        metrics: w.metrics,
        data_dir: w.data_dir,
    };
    let dest = T::build(config, &ctx)
        .await
        .map_err(|message| DestinationError {
            id: id.to_string(),
            message,
        })?;
    let common = config.common();
    let settings = DeliverySettings::resolve(
        common.batch,
        common.request,
        common.retry,
        defaults_of::<T>(),
    );
    let driver = Driver::new(
        dest,
        w.lane,
        settings,
        w.stop,
        w.retire,
        w.metrics,
        w.dead_letter,
    );
    Ok(Prepared {
        id: id.to_string(),
        run: Box::pin(driver.run()),
    })
}
