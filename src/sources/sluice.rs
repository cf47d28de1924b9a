//! `type: sluice` — the aggregator's end of sluice forwarding
//! (`crate::forward`): other sluice instances' `sluice` destinations send
//! batches here over gRPC, optionally over TLS and with a bearer token.
//!
//! A batch is routed as one batch, all or nothing, and answered only once
//! every destination it went to delivered it or wrote it to a persistent
//! queue, so the edge's acknowledgement is this tier's delivery:
//! - OK: so. Also when a destination here refused some of its events for
//!   good: they were counted (or dead-lettered) here, where they were
//!   refused, and sending them again would not change the answer;
//! - RESOURCE_EXHAUSTED with a RetryInfo: a `block` destination stayed full
//!   for `max_wait` (counted `shed`); nothing of the batch was routed, so
//!   the edge's retry duplicates nothing;
//! - RESOURCE_EXHAUSTED with a RetryInfo, after routing: a destination
//!   here dropped some of the batch for lack of room (`backpressure: drop`,
//!   a full persistent queue): the edge sends it again (at least once);
//! - UNAVAILABLE: shutting down, or shut down before the batch was
//!   delivered: the edge sends it again, here or elsewhere (at least once);
//! - UNAUTHENTICATED: no or the wrong bearer token (`unauthorized`);
//! - FAILED_PRECONDITION: a protocol version this build does not speak
//!   (`bad_request`), so an edge newer than its aggregator waits;
//! - INVALID_ARGUMENT: a batch that does not read (`malformed`) or is over
//!   `max_batch_bytes` (`oversize`).

use std::net::SocketAddr;
use std::time::Duration;

use tonic::{Code, Status};

use super::{Refused, SourceContext, SourceError};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};
use crate::forward::pb::SendResponse;
use crate::forward::pb::forward_server::{Forward, ForwardServer};
use crate::forward::{self, Malformed, SendRequest};
use crate::metrics::RejectReason;
use crate::tls::ServerTlsConfig;

crate::source_config! {
    pub struct SluiceSourceConfig {
        pub address: SocketAddr,
        /// `bearer: TOKEN` the edges must send.
        #[serde(default)]
        pub auth: Option<AuthConfig>,
        /// Serve TLS (and with `client_ca_file`, require client certificates).
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
        /// How long a batch may wait for a full `block` destination before it
        /// is refused as RESOURCE_EXHAUSTED. Default 1 s.
        #[serde(default = "default_max_wait")]
        pub max_wait: Dur,
        /// Largest batch taken, once decompressed. Default 16 MiB, the largest
        /// the `sluice` destination sends.
        #[serde(default = "default_max_batch")]
        pub max_batch_bytes: ByteSize,
        /// Most events taken in one batch. Default 100,000 (the `sluice`
        /// destination sends 5,000 unless told otherwise).
        #[serde(default = "super::default_max_request_events")]
        pub max_batch_events: usize,
        /// Stop accepting beyond this many open connections. Default 1000.
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        /// Close a connection idle this long (`0s`: never). Default 10m.
        #[serde(default = "super::default_grpc_idle_timeout")]
        pub idle_timeout: Dur,
    }
}

fn default_max_wait() -> Dur {
    Dur::secs(1)
}

fn default_max_batch() -> ByteSize {
    ByteSize::mib(16)
}

impl Validate for SluiceSourceConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.auth {
            a.validate()?;
        }
        if self.max_batch_bytes.0 == 0 {
            return Err("max_batch_bytes must be at least 1".into());
        }
        if self.max_batch_events == 0 {
            return Err("max_batch_events must be at least 1".into());
        }
        if let Some(t) = &self.tls {
            t.validate()?;
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }
}

struct Receiver {
    ctx: SourceContext,
    auth: Option<Authenticator>,
    max_wait: Duration,
    max_bytes: usize,
    max_events: usize,
}

impl Receiver {
    fn refuse(&self, reason: RejectReason, code: Code, message: String) -> Status {
        self.ctx.metrics.reject(reason, 1);
        Status::new(code, message)
    }
}

#[tonic::async_trait]
impl Forward for Receiver {
    async fn send(
        &self,
        req: tonic::Request<SendRequest>,
    ) -> Result<tonic::Response<SendResponse>, Status> {
        if let Some(auth) = &self.auth {
            let header = req.metadata().get("authorization").map(|v| v.as_bytes());
            if !auth.check(header) {
                return Err(self.refuse(
                    RejectReason::Unauthorized,
                    Code::Unauthenticated,
                    "missing or wrong bearer token".into(),
                ));
            }
        }
        let sender = self.ctx.sender_for(req.remote_addr());
        let mut request = req.into_inner();
        let origin = std::mem::take(&mut request.origin);
        let events = forward::events(request, self.max_bytes, self.max_events).map_err(|e| {
            let (reason, code) = match e {
                Malformed::Version(_) => (RejectReason::BadRequest, Code::FailedPrecondition),
                Malformed::TooLarge(_) | Malformed::TooMany(..) => {
                    (RejectReason::Oversize, Code::InvalidArgument)
                }
                _ => (RejectReason::Malformed, Code::InvalidArgument),
            };
            tracing::warn!(source = %self.ctx.id, %origin, error = %e, "refused a batch");
            self.refuse(reason, code, e.to_string())
        })?;
        let accepted = events.len() as u64;
        let answer = tonic::Response::new(SendResponse {
            version: forward::VERSION,
            accepted,
        });
        if events.is_empty() {
            return Ok(answer);
        }
        match self
            .ctx
            .send_request(events, self.max_wait, true, sender)
            .await
        {
            Ok(()) => Ok(answer),
            Err(Refused::Shed) => {
                use tonic_types::{ErrorDetails, StatusExt as _};
                let wait = Duration::from_secs(super::retry_after_secs(self.max_wait));
                Err(Status::with_error_details(
                    Code::ResourceExhausted,
                    "a destination is applying backpressure; retry later",
                    ErrorDetails::with_retry_info(Some(wait)),
                ))
            }
            Err(Refused::Shutdown) => Err(Status::unavailable("shutting down")),
            Err(Refused::Dropped) if self.ctx.shutdown.is_cancelled() => Err(Status::unavailable(
                "shut down before the batch was delivered; send it again",
            )),
            // A destination here had no room for some of it: the edge backs
            // off and sends it again (its queue keeps it meanwhile).
            Err(Refused::Dropped) => {
                use tonic_types::{ErrorDetails, StatusExt as _};
                let wait = Duration::from_secs(super::retry_after_secs(self.max_wait));
                Err(Status::with_error_details(
                    Code::ResourceExhausted,
                    "accepted, but a destination had no room to keep it; send it again",
                    ErrorDetails::with_retry_info(Some(wait)),
                ))
            }
            // Refused for good by a destination here, and counted there.
            Err(Refused::Failed) => Ok(answer),
        }
    }
}

/// Bind, then serve until shutdown.
pub struct SluiceSource;

impl super::SourceType for SluiceSource {
    const NAME: &'static str = "sluice";
    type Config = SluiceSourceConfig;

    fn listen(c: &SluiceSourceConfig) -> Vec<crate::config::Listen> {
        vec![crate::config::Listen::Tcp(c.address)]
    }

    async fn start(
        c: &SluiceSourceConfig,
        ctx: SourceContext,
    ) -> Result<super::Started, SourceError> {
        start(c, ctx).await
    }
}

async fn start(
    cfg: &SluiceSourceConfig,
    ctx: SourceContext,
) -> Result<super::Started, SourceError> {
    let (local, incoming) = super::listen(
        &ctx,
        cfg.address,
        cfg.tls.as_ref(),
        &[b"h2"],
        super::Limits {
            max_connections: cfg.max_connections,
            idle_timeout: cfg.idle_timeout.get(),
        },
    )
    .await?;
    tracing::info!(source = %ctx.id, address = %local, tls = cfg.tls.is_some(), "sluice source listening");
    let max_bytes = cfg.max_batch_bytes.as_usize();
    let receiver = Receiver {
        auth: cfg.auth.as_ref().map(Authenticator::new),
        max_wait: cfg.max_wait.get(),
        max_bytes,
        max_events: cfg.max_batch_events,
        ctx: ctx.clone(),
    };
    let server = crate::grpc::server();
    // Room for the lengths beside the data: at most 5 bytes an event.
    let max_message = max_bytes
        .saturating_add(cfg.max_batch_events.saturating_mul(5))
        .saturating_add(64 << 10);
    let router = server
        .layer(tower::util::MapResponseLayer::new(
            crate::grpc::refusals_are_invalid_argument(&ctx),
        ))
        .add_service(
            ForwardServer::new(receiver)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(max_message),
        );
    let shutdown = ctx.shutdown.clone().cancelled_owned();
    let id = ctx.id.clone();
    let task = ctx.spawner().spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming.into_stream(), shutdown)
            .await
        {
            tracing::error!(source = %id, error = %e, "sluice source stopped");
        }
    });
    Ok(super::Started::task(Some(local), task))
}
