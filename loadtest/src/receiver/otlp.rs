//! An OTLP/gRPC receiver of log exports. Each log record is one event and
//! its encoded size its bytes; with ids tracked, a record's `seq` attribute
//! is its id. Counting only, it reads records off the wire without decoding
//! them (`grpc_bytes`): prost's decode allocated per record and capped the
//! harness below what sluice could deliver.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};

use super::{Handle, Sink};
use crate::grpc_bytes::{Raw, fields};

/// HTTP/2 flow-control windows: h2's default 64 KiB made an export of a
/// few hundred KB wait on window updates several times over.
pub const WINDOW: u32 = 4 << 20;

#[derive(Clone)]
struct Logs(Arc<Sink>);

impl NamedService for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

impl<B> Service<http::Request<B>> for Logs
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
        let sink = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Raw)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(16 << 20);
            Ok(grpc.unary(Export(sink), req).await)
        })
    }
}

struct Export(Arc<Sink>);

impl UnaryService<Bytes> for Export {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, tonic::Status>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let sink = self.0.clone();
        Box::pin(async move {
            take(&sink, &req.into_inner())?;
            // An empty `ExportLogsServiceResponse`: everything accepted.
            Ok(tonic::Response::new(Bytes::new()))
        })
    }
}

fn take(sink: &Sink, body: &[u8]) -> Result<(), tonic::Status> {
    let malformed = || tonic::Status::invalid_argument("not an ExportLogsServiceRequest");
    if sink.track_ids {
        let req = ExportLogsServiceRequest::decode(body).map_err(|_| malformed())?;
        let records = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records);
        // The ids as the lines the tracker reads.
        let mut lines = Vec::new();
        for r in records {
            let seq = r.attributes.iter().find(|a| a.key == "seq").and_then(|a| {
                match a.value.as_ref()?.value.as_ref()? {
                    Value::IntValue(i) => Some(*i),
                    _ => None,
                }
            });
            if let Some(s) = seq {
                lines.extend_from_slice(format!("{{\"seq\":{s}}}\n").as_bytes());
            }
        }
        sink.take(&lines);
        return Ok(());
    }
    // resource_logs (1) → scope_logs (2) → log_records (2).
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut ok = true;
    fields(body, 1, |rl| {
        ok &= fields(rl, 2, |sl| {
            ok &= fields(sl, 2, |r| {
                n += 1;
                bytes += r.len() as u64;
            })
            .is_some();
        })
        .is_some();
    })
    .filter(|_| ok)
    .ok_or_else(malformed)?;
    sink.count(n, bytes);
    Ok(())
}

pub async fn spawn(addr: SocketAddr, sink: Sink) -> anyhow::Result<Handle> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("otlp receiver: bind {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let stats = sink.stats.clone();
    let service = Logs(Arc::new(sink));
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW * 4)
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await;
        if let Err(e) = served {
            eprintln!("otlp receiver: {e}");
        }
    });
    Ok(Handle { addr, stats, stop })
}
