//! OTLP/gRPC, served here rather than by opentelemetry-proto's generated
//! servers: their codec decodes an export before any handler runs, and a
//! 4 MiB export of empty records decodes into ~400 MB. This codec counts
//! the export's records on the wire first (`crate::otlp::wire`) and
//! refuses one over `max_events` (INVALID_ARGUMENT, counted `oversize`)
//! before prost allocates anything. The routes, compression and size
//! limit are the generated servers'.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf as _;
use tokio::task::JoinHandle;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

use super::{OtlpState, Signal, too_many};
use crate::event::Event;
use crate::listener::Incoming;
use crate::metrics::{RejectReason, SourceMetrics};
use crate::sources::Refused;

/// One signal's `Export` service.
struct Export<S> {
    state: Arc<OtlpState>,
    _signal: PhantomData<S>,
}

impl<S> Export<S> {
    fn new(state: &Arc<OtlpState>) -> Self {
        Export {
            state: state.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S> Clone for Export<S> {
    fn clone(&self) -> Self {
        Export::new(&self.state)
    }
}

impl<S: Signal> NamedService for Export<S> {
    const NAME: &'static str = S::SERVICE;
}

impl<S: Signal, B> tower::Service<http::Request<B>> for Export<S>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.state.clone();
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(S::SERVICE))
            == Some("/Export");
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let codec = Counting::<S> {
                max_events: state.max_events,
                metrics: state.ctx.metrics.clone(),
                _signal: PhantomData,
            };
            let mut grpc = tonic::server::Grpc::new(codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(state.max_body);
            Ok(grpc.unary(Method::<S>(state, PhantomData), req).await)
        })
    }
}

struct Method<S>(Arc<OtlpState>, PhantomData<S>);

impl<S: Signal> UnaryService<Vec<Event>> for Method<S> {
    type Response = S::Response;
    type Future = BoxFuture<tonic::Response<S::Response>, Status>;

    fn call(&mut self, req: tonic::Request<Vec<Event>>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let sender = state.ctx.sender_for(req.remote_addr());
            let events = req.into_inner();
            state
                .ingest(events, sender)
                .await
                .map_err(|r| status(&state, r))?;
            Ok(tonic::Response::new(S::Response::default()))
        })
    }
}

fn status(state: &OtlpState, r: Refused) -> Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    let retry = || ErrorDetails::with_retry_info(Some(Duration::from_secs(state.retry_secs())));
    match r {
        Refused::Shed => Status::with_error_details(
            Code::ResourceExhausted,
            "a destination is applying backpressure; retry later",
            retry(),
        ),
        Refused::Shutdown => Status::unavailable("shutting down"),
        Refused::Failed => {
            Status::unavailable("accepted, but a destination failed to deliver it; send again")
        }
        Refused::Dropped => Status::with_error_details(
            Code::Unavailable,
            "accepted, but a destination had no room to keep it; send again",
            retry(),
        ),
    }
}

/// prost's encoding both ways, with the records counted before decoding;
/// an export decodes straight to its events.
struct Counting<S> {
    max_events: usize,
    metrics: SourceMetrics,
    _signal: PhantomData<S>,
}

impl<S: Signal> Codec for Counting<S> {
    type Encode = S::Response;
    type Decode = Vec<Event>;
    type Encoder = tonic_prost::ProstEncoder<S::Response>;
    type Decoder = Counting<S>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        Counting {
            max_events: self.max_events,
            metrics: self.metrics.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: Signal> Decoder for Counting<S> {
    type Item = Vec<Event>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // One message, whole and decompressed (tonic frames it).
        let bytes = src.copy_to_bytes(src.remaining());
        let malformed = |e: &dyn std::fmt::Display| {
            self.metrics.reject(RejectReason::Malformed, 1);
            Status::invalid_argument(format!("not an OTLP export: {e}"))
        };
        let n = crate::otlp::wire::count(&bytes, S::RECORDS, self.max_events)
            .map_err(|e| malformed(&e))?;
        if n > self.max_events {
            self.metrics.reject(RejectReason::Oversize, 1);
            return Err(Status::invalid_argument(too_many(n, self.max_events)));
        }
        let mut events = Vec::new();
        S::protobuf_events(bytes, &mut events).map_err(|e| malformed(&e))?;
        Ok(Some(events))
    }
}

pub(super) fn serve(
    state: Arc<OtlpState>,
    address: SocketAddr,
    incoming: Incoming,
) -> JoinHandle<()> {
    let ctx = &state.ctx;
    tracing::info!(source = %ctx.id, %address, listener = "grpc", "otlp source listening");
    let router = crate::grpc::server()
        .layer(tower::util::MapResponseLayer::new(
            crate::grpc::refusals_are_invalid_argument(ctx),
        ))
        .add_service(Export::<super::Logs>::new(&state))
        .add_service(Export::<super::Metrics>::new(&state))
        .add_service(Export::<super::Traces>::new(&state));
    let shutdown = ctx.shutdown.clone().cancelled_owned();
    let id = ctx.id.clone();
    ctx.spawner().spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming.into_stream(), shutdown)
            .await
        {
            tracing::error!(source = %id, error = %e, "otlp gRPC receiver stopped");
        }
    })
}
