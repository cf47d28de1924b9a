//! An OTLP/gRPC receiver: opentelemetry-proto's logs service on tonic.
//! Each log record is one event and its encoded size its bytes; with ids
//! tracked, a record's `seq` attribute is its id.

use std::net::SocketAddr;

use anyhow::Context;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;

use super::{Handle, Sink};

struct Logs(Sink);

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let req = req.into_inner();
        let records = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records);
        if self.0.track_ids {
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
            self.0.take(&lines);
        } else {
            let (n, bytes) = records.fold((0u64, 0u64), |(n, b), r| {
                (n + 1, b + r.encoded_len() as u64)
            });
            self.0.count(n, bytes);
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

pub async fn spawn(addr: SocketAddr, sink: Sink) -> anyhow::Result<Handle> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("otlp receiver: bind {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let stats = sink.stats.clone();
    let service = LogsServiceServer::new(Logs(sink))
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(16 << 20);
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
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
