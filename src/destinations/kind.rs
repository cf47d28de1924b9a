//! What a destination type declares about itself, in one place: its name,
//! its delivery defaults, what its protocol can carry, and how to build it.
//!
//! The registry in `mod.rs` lists one line per type; everything generic
//! (deserializing by `type`, validating encodings, compressions and protocol
//! limits, resolving settings, starting the driver) is written once from these
//! declarations, so a new protocol is one file that implements this trait.

use std::future::Future;

use serde::de::DeserializeOwned;

use super::{Common, HasCommon};
use crate::config::Loc;
use crate::config::Validate;
use crate::driver::{Compression, DeliveryDefaults, Destination, Encoding};
use crate::metrics::Metrics;

/// What a destination's protocol accepts, and its hard limits.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// The `encoding:` values it accepts; the first is its default. Empty:
    /// the destination frames records itself and `encoding` is refused.
    pub encodings: &'static [Encoding],
    /// The `compression:` values it accepts (`none` is always accepted).
    pub compressions: &'static [Compression],
    /// Most events one request may carry (SQS: 10).
    pub max_events: Option<usize>,
    /// Most bytes one request may carry, before compression.
    pub max_bytes: Option<u64>,
    /// Most bytes one record may have; larger events are dropped with
    /// reason `oversize` before encoding.
    pub max_record_bytes: Option<u64>,
    /// Whether `retry.retry_on` (HTTP status codes) means anything.
    pub retry_on: bool,
}

/// Every encoding the shared encoder writes.
pub const ALL_ENCODINGS: &[Encoding] = &[
    Encoding::Ndjson,
    Encoding::JsonArray,
    Encoding::Raw,
    Encoding::Graphite,
    Encoding::Statsd,
    Encoding::Influx,
];

/// Every encoding, and one message per batch: what an HTTP body can be.
pub const BODY_ENCODINGS: &[Encoding] = &[
    Encoding::Ndjson,
    Encoding::JsonArray,
    Encoding::Raw,
    Encoding::Graphite,
    Encoding::Statsd,
    Encoding::Influx,
    Encoding::Capnp,
];

/// Encodings that frame a stream or a datagram record by record.
pub const STREAM_ENCODINGS: &[Encoding] = &[
    Encoding::Ndjson,
    Encoding::Raw,
    Encoding::Graphite,
    Encoding::Statsd,
    Encoding::Influx,
];

pub const ALL_COMPRESSIONS: &[Compression] = &[Compression::Gzip, Compression::Zstd];

impl Capabilities {
    /// A destination with no protocol limits that takes every encoding and
    /// no compression.
    pub const LOCAL: Capabilities = Capabilities {
        encodings: ALL_ENCODINGS,
        compressions: &[],
        max_events: None,
        max_bytes: None,
        max_record_bytes: None,
        retry_on: false,
    };
}

/// A destination type. See the module documentation.
pub trait DestinationType: Destination + Sized {
    /// The `type:` that selects it.
    const NAME: &'static str;
    /// Defaults for `batch`, `request` and `retry`.
    const DEFAULTS: DeliveryDefaults;
    const CAPABILITIES: Capabilities;

    /// Its config struct, declared with `destination_config!`.
    type Config: DeserializeOwned
        + HasCommon
        + Validate
        + std::fmt::Debug
        + Clone
        + Send
        + Sync
        + 'static;

    /// Build the destination. Fails only for settings that cannot work at
    /// all (an unreadable CA file, say); a peer that is not reachable yet is
    /// the driver's to retry.
    fn build(
        config: &Self::Config,
        ctx: &BuildContext<'_>,
    ) -> impl Future<Output = Result<Self, String>> + Send;
}

/// What `build` may use from the rest of sluice.
pub struct BuildContext<'a> {
    pub id: &'a str,
    pub metrics: &'a Metrics,
    /// The config's `data_dir`, for state a destination keeps on disk.
    pub data_dir: &'a std::path::Path,
}

/// A config problem, at the key it is about when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub at: Option<Loc>,
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Problem { message, at: None }
    }
}

/// Check the common settings against a type's capabilities and limits.
pub fn check_capabilities(
    name: &str,
    caps: &Capabilities,
    common: &Common<'_>,
) -> Result<(), Problem> {
    if let Some(e) = common.encoding {
        if caps.encodings.is_empty() {
            return Err(format!(
                "`encoding` does not apply to {name} destinations: they write each record themselves"
            )
            .into());
        }
        if !caps.encodings.contains(&e) {
            return Err(format!(
                "encoding `{}` is not supported by {name} destinations (use one of: {})",
                e.as_str(),
                caps.encodings
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into());
        }
    }
    if let Some(c) = common.compression
        && c != Compression::None
        && !caps.compressions.contains(&c)
    {
        let hint = if caps.compressions.is_empty() {
            "none".to_string()
        } else {
            caps.compressions
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "compression `{}` is not supported by {name} destinations (supported: {hint})",
            c.as_str()
        )
        .into());
    }
    if common.retry.retry_on.is_some() && !caps.retry_on {
        return Err(format!(
            "retry.retry_on lists HTTP status codes, which {name} destinations do not have"
        )
        .into());
    }
    let over = |key: &str, value: u64, limit: Option<u64>, at: Option<Loc>| match limit {
        Some(limit) if value > limit => Err(Problem {
            message: format!("{key}: {value} exceeds {name}'s limit of {limit}"),
            at,
        }),
        _ => Ok(()),
    };
    let b = common.batch;
    if let Some(v) = &b.max_events {
        over(
            "batch.max_events",
            v.value as u64,
            caps.max_events.map(|n| n as u64),
            Some(v.referenced.into()),
        )?;
    }
    if let Some(v) = &b.max_bytes {
        over(
            "batch.max_bytes",
            v.value.0,
            caps.max_bytes,
            Some(v.referenced.into()),
        )?;
    }
    if let Some(v) = &b.max_event_bytes {
        over(
            "batch.max_event_bytes",
            v.value.0,
            caps.max_record_bytes,
            Some(v.referenced.into()),
        )?;
    }
    Ok(())
}

/// A type's defaults narrowed to its limits, so a default can never exceed
/// what the protocol takes; its record limit is the default oversize limit.
pub const fn effective_defaults(d: DeliveryDefaults, caps: &Capabilities) -> DeliveryDefaults {
    let mut d = d;
    if d.max_event_bytes.is_none() {
        d.max_event_bytes = caps.max_record_bytes;
    }
    if let Some(m) = caps.max_events
        && m < d.max_events
    {
        d.max_events = m;
    }
    if let Some(m) = caps.max_bytes
        && m < d.max_bytes
    {
        d.max_bytes = m;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{BatchConfig, RequestConfig, RetryConfig};
    use crate::lane::{Policy, QueueConfig};

    const SQS_LIKE: Capabilities = Capabilities {
        encodings: &[],
        compressions: &[],
        max_events: Some(10),
        max_bytes: Some(256 << 10),
        max_record_bytes: Some(256 << 10),
        retry_on: false,
    };

    fn check(yaml: &str, caps: &Capabilities) -> Result<(), Problem> {
        let batch: BatchConfig = serde_saphyr::from_str(yaml).unwrap();
        let (request, retry, queue) = (
            RequestConfig::default(),
            RetryConfig::default(),
            QueueConfig::default(),
        );
        let common = Common {
            encoding: None,
            compression: None,
            batch: &batch,
            request: &request,
            retry: &retry,
            backpressure: Policy::default(),
            queue: &queue,
            dead_letter: None,
            metric: None,
            pipeline: None,
        };
        check_capabilities("sqs", caps, &common)
    }

    #[test]
    fn a_value_above_a_protocol_limit_names_the_limit_and_its_position() {
        let p = check("timeout: 1s\nmax_events: 20\n", &SQS_LIKE).unwrap_err();
        assert_eq!(p.message, "batch.max_events: 20 exceeds sqs's limit of 10");
        assert_eq!(
            p.at,
            Some(Loc {
                line: 2,
                column: 13
            })
        );
        let p = check("max_bytes: 1MiB\n", &SQS_LIKE).unwrap_err();
        assert_eq!(
            p.message,
            "batch.max_bytes: 1048576 exceeds sqs's limit of 262144"
        );
        assert!(check("max_events: 10\nmax_bytes: 256KiB\n", &SQS_LIKE).is_ok());
        assert!(check("max_events: 5000\n", &Capabilities::LOCAL).is_ok());
    }

    #[test]
    fn defaults_never_exceed_the_limits() {
        let d = effective_defaults(DeliveryDefaults::NETWORK, &SQS_LIKE);
        assert_eq!(d.max_events, 10);
        assert_eq!(d.max_bytes, 256 << 10);
        for t in super::super::describe() {
            let c = t.capabilities;
            assert!(
                c.max_events.is_none_or(|m| t.defaults.max_events <= m),
                "{}",
                t.name
            );
            assert!(
                c.max_bytes.is_none_or(|m| t.defaults.max_bytes <= m),
                "{}",
                t.name
            );
            assert_eq!(t.defaults.max_event_bytes, c.max_record_bytes, "{}", t.name);
            assert!(
                c.encodings.is_empty() || c.encodings[0] == Encoding::Ndjson,
                "{}: the default encoding (ndjson) must be accepted",
                t.name
            );
        }
    }
}
