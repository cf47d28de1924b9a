//! `type: sluice` — batches to other sluice instances over sluice's own
//! gRPC protocol (`crate::forward`): the edge → aggregator tier. Batches
//! are balanced by weight over `endpoints` with the driver's endpoint
//! health; a batch in flight to an aggregator that dies goes to another.
//!
//! An aggregator answers only once its own destinations delivered the
//! batch or wrote it to a persistent queue, so "delivered" here means that:
//! acknowledgements run end to end across tiers. Its answers:
//! - OK: delivered;
//! - UNAVAILABLE, a refused or reset connection, or no answer within
//!   `request.timeout`: the endpoint is down, the batch goes to another one
//!   and this one is probed (a TCP connect) until it is back;
//! - RESOURCE_EXHAUSTED (a full `block` destination there): throttled, for
//!   as long as its RetryInfo says;
//! - UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION (a protocol
//!   version it does not speak): backpressure with the cause logged once,
//!   as for Pub/Sub and OTLP: the fix is a token or an upgrade, and every
//!   event is still good;
//! - INVALID_ARGUMENT: rejected (a batch it cannot read is not made better
//!   by sending it again);
//! - anything else is retried.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::auth::AuthConfig;
use crate::config::Validate;
use crate::destination_config;
use crate::destinations::tcp::{TcpEndpoint, hosts, validate_hosts};
use crate::destinations::{BuildContext, Capabilities, DestinationType};
use crate::driver::{
    CauseLog, Compression, DeliveryDefaults, Destination, Encoded, EndpointSpec, Outcome, Rejection,
};
use crate::event::Event;
use crate::forward::{self, SendRequest, pb::forward_client::ForwardClient};
use crate::grpc::{code_name, retry_delay};
use crate::tls::TlsConfig;

destination_config! {
    pub struct SluiceDestinationConfig {
        /// One aggregator, `host:port`...
        #[serde(default)]
        pub address: Option<String>,
        /// ...or several, balanced by weight.
        #[serde(default)]
        pub endpoints: Option<Vec<TcpEndpoint>>,
        /// `bearer: TOKEN`, sent with every batch (the aggregator's
        /// `auth.bearer`).
        #[serde(default)]
        pub auth: Option<AuthConfig>,
        /// TLS to the aggregators; `ca_file` trusts a private CA.
        #[serde(default)]
        pub tls: Option<TlsConfig>,
    }
}

/// The largest batch, before compression: the source's default
/// `max_batch_bytes`.
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

impl Validate for SluiceDestinationConfig {
    fn validate(&self) -> Result<(), String> {
        validate_hosts(&self.address, &self.endpoints)?;
        if let Some(a) = &self.auth {
            a.validate()?;
        }
        if let Some(t) = &self.tls {
            t.validate()?;
        }
        if self.tls.as_ref().is_some_and(|t| !t.verify()) {
            return Err(
                "tls.verify_certificate: false is not available (tonic always verifies); trust the aggregator's CA with tls.ca_file"
                    .into(),
            );
        }
        Ok(())
    }
}

impl DestinationType for SluiceDestination {
    const NAME: &'static str = "sluice";
    /// An aggregator answers after its own delivery, so a request may take
    /// as long as that: Vector's `vector` sink waits 60 s too. Batches of
    /// 5000: each costs a gRPC call, a routing and an answer on both tiers,
    /// and at 1000 (Vector's) those were a sixth of forwarding's CPU (the
    /// OTel Collector's batch processor sends 8192).
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults {
        max_events: 5000,
        request_timeout: Some(Duration::from_secs(60)),
        ..DeliveryDefaults::NETWORK
    };
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: &[],
        compressions: &[Compression::Zstd, Compression::Gzip],
        max_events: None,
        max_bytes: Some(MAX_BATCH_BYTES),
        max_record_bytes: Some(MAX_BATCH_BYTES),
        retry_on: false,
    };
    type Config = SluiceDestinationConfig;

    async fn build(cfg: &SluiceDestinationConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let hosts = hosts(&cfg.address, &cfg.endpoints);
        let channels = hosts
            .iter()
            .map(|h| crate::grpc::channel(&format!("{scheme}://{}", h.address), cfg.tls.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let authorization = match &cfg.auth {
            Some(a) => {
                let mut v: AsciiMetadataValue = MetadataValue::try_from(a.header_value())
                    .map_err(|_| "auth: the token has characters a header cannot carry")?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(SluiceDestination {
            id: ctx.id.to_string(),
            hosts,
            channels,
            authorization,
            // zstd unless set otherwise: a fraction of gzip's CPU for a
            // similar ratio, and the edge is where CPU is scarce.
            compression: cfg.compression.unwrap_or(Compression::Zstd),
            log: CauseLog::default(),
        })
    }
}

pub struct SluiceDestination {
    id: String,
    hosts: Vec<TcpEndpoint>,
    /// One lazily connecting channel per endpoint, in `hosts` order.
    channels: Vec<Channel>,
    authorization: Option<AsciiMetadataValue>,
    compression: Compression,
    log: CauseLog,
}

impl SluiceDestination {
    fn failed(&self, status: &Status) -> Outcome {
        let code = status.code();
        let error = format!("{}: {}", code_name(code), status.message());
        let after = retry_delay(status);
        match code {
            Code::ResourceExhausted => Outcome::Throttled { after, error },
            Code::Unavailable => Outcome::EndpointFailed { error },
            Code::Unauthenticated | Code::PermissionDenied | Code::FailedPrecondition => {
                self.log.failing(&self.id, code_name(code), &error);
                Outcome::Retry { after, error }
            }
            Code::InvalidArgument => {
                let mut r = Rejection::named(code_name(code), error);
                r.response = Some(status.message().to_string());
                Outcome::Rejected(r)
            }
            _ => Outcome::Retry { after, error },
        }
    }
}

impl Destination for SluiceDestination {
    type Request = SendRequest;

    fn endpoints(&self) -> Vec<EndpointSpec> {
        self.hosts
            .iter()
            .map(|h| EndpointSpec {
                name: h.address.clone(),
                weight: h.weight,
            })
            .collect()
    }

    fn encode(&self, events: &[Event]) -> Encoded<SendRequest> {
        let request = forward::request(events, self.compression, &self.id);
        let bytes = request.data.len();
        Encoded::all(request, bytes)
    }

    async fn send(&self, request: &SendRequest, endpoint: usize) -> Outcome {
        let Some(channel) = self.channels.get(endpoint) else {
            return Outcome::EndpointFailed {
                error: format!("no endpoint {endpoint}"),
            };
        };
        // The data is `Bytes`: this clone shares it.
        let mut call = tonic::Request::new(request.clone());
        if let Some(a) = &self.authorization {
            call.metadata_mut().insert("authorization", a.clone());
        }
        match ForwardClient::new(channel.clone()).send(call).await {
            Ok(_) => {
                self.log.ok(&self.id);
                Outcome::Delivered
            }
            Err(status) => self.failed(&status),
        }
    }

    /// Back when it accepts a TCP connection; the next batch tells the rest.
    async fn probe(&self, endpoint: usize) -> bool {
        let Some(h) = self.hosts.get(endpoint) else {
            return false;
        };
        let connect = tokio::net::TcpStream::connect(h.address.as_str());
        matches!(
            tokio::time::timeout(Duration::from_secs(5), connect).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SluiceDestination {
        SluiceDestination {
            id: "agg".into(),
            hosts: Vec::new(),
            channels: Vec::new(),
            authorization: None,
            compression: Compression::None,
            log: CauseLog::default(),
        }
    }

    #[test]
    fn answers_are_classified() {
        let d = dest();
        let kind = |code| match d.failed(&Status::new(code, "x")) {
            Outcome::Throttled { .. } => "throttled",
            Outcome::EndpointFailed { .. } => "down",
            Outcome::Retry { .. } => "retry",
            Outcome::Rejected(_) => "rejected",
            _ => "other",
        };
        assert_eq!(kind(Code::ResourceExhausted), "throttled");
        assert_eq!(kind(Code::Unavailable), "down");
        assert_eq!(kind(Code::Unauthenticated), "retry");
        assert_eq!(kind(Code::PermissionDenied), "retry");
        assert_eq!(kind(Code::FailedPrecondition), "retry");
        assert_eq!(kind(Code::DeadlineExceeded), "retry");
        assert_eq!(kind(Code::Internal), "retry");
        assert_eq!(kind(Code::InvalidArgument), "rejected");
    }
}
