//! `type: otlp` — an OpenTelemetry receiver: OTLP/gRPC on `grpc_address`
//! (the generated services of opentelemetry-proto on tonic) and OTLP/HTTP
//! on `http_address` (`/v1/logs`, `/v1/metrics`, `/v1/traces`, protobuf or
//! JSON, gzip or zstd). Each log record becomes an event, each resource's
//! metrics or spans one event (`crate::otlp::event` has the shape), and one
//! export is routed as one batch, all or nothing.
//!
//! Answers, so OTel SDKs and collectors do the right thing:
//! - success: an empty `Export*ServiceResponse`;
//! - a `block` destination full for `max_wait`: gRPC RESOURCE_EXHAUSTED with
//!   a `RetryInfo`, HTTP 429 with `Retry-After` (counted `shed`); nothing
//!   of the export was routed, so the client's retry duplicates nothing;
//! - a payload that does not decode: INVALID_ARGUMENT / 400, counted
//!   `malformed`; one over `max_body_bytes`: INVALID_ARGUMENT / 413, counted
//!   `oversize`;
//! - shutting down: UNAVAILABLE / 503;
//! - with `acknowledgements: true`, only once every destination delivered
//!   the export; if one failed it, UNAVAILABLE / 503, so the client sends
//!   it again (at least once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Sender;
use crate::listener::Incoming;
use crate::tls::ServerTlsConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tonic::Code;

use super::{Detail, Refused, SourceContext};
use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};
use crate::event::Event;
use crate::metrics::RejectReason;
use crate::otlp::event::{log_events, log_events_wire, metrics_events, traces_events};
use crate::otlp::shallow::ShallowExport;
use crate::otlp::wire::{self, JsonPath, RecordPath};

mod grpc;

crate::source_config! {
    pub struct OtlpSourceConfig {
        /// OTLP/gRPC (OTel's port 4317).
        #[serde(default)]
        pub grpc_address: Option<SocketAddr>,
        /// OTLP/HTTP (OTel's port 4318).
        #[serde(default)]
        pub http_address: Option<SocketAddr>,
        /// How long an export may wait for a full `block` destination before
        /// it is refused as RESOURCE_EXHAUSTED / 429. Default 1 s.
        #[serde(default = "default_max_wait")]
        pub max_wait: Dur,
        /// Largest export accepted (gRPC message, HTTP body before and after
        /// decompression). Default 4 MiB, the collector's.
        #[serde(default = "default_max_body")]
        pub max_body_bytes: ByteSize,
        /// Answer only once the events are delivered.
        #[serde(default)]
        pub acknowledgements: bool,
        /// Serve both listeners over TLS (and with `client_ca_file`, require
        /// client certificates).
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
        /// Stop accepting beyond this many open connections, on each listener.
        /// Default 1000.
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        /// Close a gRPC connection idle this long (`0s`: never). Default 10m
        /// (SDKs keep their channel open between exports). HTTP connections
        /// idle 10 s between requests are closed.
        #[serde(default = "super::default_grpc_idle_timeout")]
        pub idle_timeout: Dur,
        /// Most records one export may carry (log records, spans or metric
        /// data points, counted on the wire before decoding); more is refused
        /// whole (INVALID_ARGUMENT / 413, counted `oversize`). Default 100,000.
        #[serde(default = "super::default_max_request_events")]
        pub max_events: usize,
        /// How long an OTLP/HTTP body may take to arrive once its headers
        /// have. Default 30s.
        #[serde(default = "super::default_body_timeout")]
        pub body_timeout: Dur,
    }
}

fn default_max_wait() -> Dur {
    Dur::secs(1)
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(4)
}

impl Validate for OtlpSourceConfig {
    fn validate(&self) -> Result<(), String> {
        if self.grpc_address.is_none() && self.http_address.is_none() {
            return Err(
                "set grpc_address (OTLP/gRPC, usually :4317), http_address (OTLP/HTTP, :4318) or both"
                    .into(),
            );
        }
        if self.grpc_address.is_some() && self.grpc_address == self.http_address {
            return Err("grpc_address and http_address must differ".into());
        }
        if self.max_body_bytes.0 == 0 {
            return Err("max_body_bytes must be at least 1".into());
        }
        if let Some(t) = &self.tls {
            t.validate()?;
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_events == 0 {
            return Err("max_events must be at least 1".into());
        }
        Ok(())
    }
}

struct OtlpState {
    ctx: SourceContext,
    max_events: usize,
    body_timeout: Duration,
    max_wait: Duration,
    max_body: usize,
    acknowledgements: bool,
}

impl OtlpState {
    /// Route one export's events as one batch and wait for what the answer
    /// needs.
    async fn ingest(&self, events: Vec<Event>, sender: Sender) -> Result<(), Refused> {
        if self.ctx.shutdown.is_cancelled() {
            return Err(Refused::Shutdown);
        }
        if events.is_empty() {
            return Ok(());
        }
        self.ctx
            .send_request(events, self.max_wait, self.acknowledgements, sender)
            .await
    }

    fn retry_secs(&self) -> u64 {
        super::retry_after_secs(self.max_wait)
    }
}

/// What differs between the three OTLP signals, for both listeners.
pub(crate) trait Signal: Send + Sync + 'static {
    /// The gRPC service's full name.
    const SERVICE: &'static str;
    /// Where `max_events` counts on the wire: log records, spans or metric
    /// data points, in protobuf and in OTLP/JSON.
    const RECORDS: RecordPath;
    const JSON_RECORDS: JsonPath;
    type Request: prost::Message + Default + for<'de> Deserialize<'de> + Send + 'static;
    type Response: prost::Message + Default + serde::Serialize + Send + 'static;
    /// OTLP/JSON, by the generated types' serde (logs have their own reader).
    fn from_json(body: &[u8]) -> Result<Self::Request, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
    fn events(request: Self::Request, out: &mut Vec<Event>);
    /// The events of a protobuf export, or why it does not decode.
    fn protobuf_events(body: Bytes, out: &mut Vec<Event>) -> Result<(), prost::DecodeError> {
        Self::events(Self::Request::decode(body)?, out);
        Ok(())
    }
}

pub(crate) struct Logs;
pub(crate) struct Metrics;
pub(crate) struct Traces;

impl Signal for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const RECORDS: RecordPath = wire::LOG_RECORDS;
    const JSON_RECORDS: JsonPath = wire::JSON_LOG_RECORDS;
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    fn from_json(body: &[u8]) -> Result<Self::Request, String> {
        crate::otlp::json::decode_logs(body)
    }
    fn events(r: Self::Request, out: &mut Vec<Event>) {
        log_events(&r.resource_logs, out)
    }
    /// Decoded down to the records' bytes, which the events borrow.
    fn protobuf_events(body: Bytes, out: &mut Vec<Event>) -> Result<(), prost::DecodeError> {
        let export = ShallowExport::decode(body.clone())?;
        log_events_wire(&export, &body, out)
    }
}

impl Signal for Metrics {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const RECORDS: RecordPath = wire::DATA_POINTS;
    const JSON_RECORDS: JsonPath = wire::JSON_DATA_POINTS;
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    fn events(r: Self::Request, out: &mut Vec<Event>) {
        metrics_events(r.resource_metrics, out)
    }
}

impl Signal for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const RECORDS: RecordPath = wire::SPANS;
    const JSON_RECORDS: JsonPath = wire::JSON_SPANS;
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    fn events(r: Self::Request, out: &mut Vec<Event>) {
        traces_events(r.resource_spans, out)
    }
}

pub struct OtlpSource;

impl super::SourceType for OtlpSource {
    const NAME: &'static str = "otlp";
    type Config = OtlpSourceConfig;

    fn listen(c: &OtlpSourceConfig) -> Vec<crate::config::Listen> {
        [c.grpc_address, c.http_address]
            .into_iter()
            .flatten()
            .map(crate::config::Listen::Tcp)
            .collect()
    }

    async fn start(
        c: &OtlpSourceConfig,
        ctx: SourceContext,
    ) -> Result<super::Started, super::SourceError> {
        start(c, ctx).await
    }
}

async fn start(
    cfg: &OtlpSourceConfig,
    ctx: SourceContext,
) -> Result<super::Started, super::SourceError> {
    let tls = cfg.tls.as_ref();
    let limits = |idle_timeout| super::Limits {
        max_connections: cfg.max_connections,
        idle_timeout,
    };
    let grpc = match cfg.grpc_address {
        Some(a) => {
            Some(super::listen(&ctx, a, tls, &[b"h2"], limits(cfg.idle_timeout.get())).await?)
        }
        None => None,
    };
    let http = match cfg.http_address {
        Some(a) => Some(super::listen(&ctx, a, tls, &[b"http/1.1"], limits(Duration::ZERO)).await?),
        None => None,
    };
    let (grpc_addr, http_addr) = (grpc.as_ref().map(|l| l.0), http.as_ref().map(|l| l.0));
    let state = Arc::new(OtlpState {
        max_events: cfg.max_events,
        body_timeout: cfg.body_timeout.get(),
        max_wait: cfg.max_wait.get(),
        max_body: cfg.max_body_bytes.as_usize(),
        acknowledgements: cfg.acknowledgements,
        ctx,
    });
    let mut tasks = Vec::new();
    if let Some((address, incoming)) = grpc {
        tasks.push(grpc::serve(state.clone(), address, incoming));
    }
    if let Some((address, incoming)) = http {
        tasks.push(serve_http(state.clone(), address, incoming));
    }
    let task = state.ctx.spawner().spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    });
    let detail: Detail = Arc::new(move || {
        let text =
            |a: Option<SocketAddr>| a.map_or(serde_json::Value::Null, |a| a.to_string().into());
        vec![
            ("grpc_address", text(grpc_addr)),
            ("http_address", text(http_addr)),
        ]
    });
    Ok(super::Started {
        local_addr: grpc_addr.or(http_addr),
        task,
        finishing: None,
        detail: Some(detail),
    })
}

fn serve_http(state: Arc<OtlpState>, address: SocketAddr, listener: Incoming) -> JoinHandle<()> {
    let ctx = state.ctx.clone();
    tracing::info!(source = %ctx.id, %address, listener = "http", "otlp source listening");
    let app = Router::new()
        .route("/v1/logs", post(http_logs))
        .route("/v1/metrics", post(http_metrics))
        .route("/v1/traces", post(http_traces))
        .layer(axum::middleware::from_fn(crate::supervise::http_panics))
        .with_state(state);
    let rejects = Some(ctx.metrics.clone());
    ctx.spawner().spawn(crate::http_server::serve(
        listener,
        app,
        ctx.shutdown.clone(),
        rejects,
    ))
}

/// An OTLP/HTTP answer: the response message, or a `google.rpc.Status`, in
/// the request's encoding.
fn http_reply(status: StatusCode, json: bool, body: Vec<u8>) -> Response {
    let content_type = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn http_error(status: StatusCode, json: bool, code: Code, message: &str) -> Response {
    let body = if json {
        serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes()
    } else {
        tonic_types::pb::Status {
            code: code as i32,
            message: message.to_string(),
            details: Vec::new(),
        }
        .encode_to_vec()
    };
    http_reply(status, json, body)
}

fn too_many(n: usize, max: usize) -> String {
    format!("{n} events in one export, more than max_events ({max}); export smaller batches")
}

/// Read, decode and route one OTLP/HTTP export of type `R`; `count`: the
/// events it would become, checked against `max_events` first.
async fn http_export<S: Signal>(st: &OtlpState, req: Request) -> Response {
    let (parts, body): (_, Body) = req.into_parts();
    let sender = st.ctx.sender_of_request(&parts.extensions);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json = content_type.starts_with("application/json");
    if !json && !content_type.starts_with("application/x-protobuf") {
        st.ctx.metrics.reject(RejectReason::BadRequest, 1);
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json,
            Code::InvalidArgument,
            "Content-Type must be application/x-protobuf or application/json",
        );
    }
    let body =
        match super::http::read_body(&parts.headers, body, st.max_body, st.body_timeout).await {
            Ok(b) => b,
            Err((status, reason, msg)) => {
                st.ctx.metrics.reject(reason, 1);
                return http_error(status, json, Code::InvalidArgument, &msg);
            }
        };
    let malformed = |e: String| {
        st.ctx.metrics.reject(RejectReason::Malformed, 1);
        http_error(
            StatusCode::BAD_REQUEST,
            json,
            Code::InvalidArgument,
            &format!("not an OTLP export: {e}"),
        )
    };
    let too_large = |n| {
        st.ctx.metrics.reject(RejectReason::Oversize, 1);
        http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            json,
            Code::InvalidArgument,
            &too_many(n, st.max_events),
        )
    };
    // Counted on the wire before it is decoded (see `crate::otlp::wire`).
    let counted = if json {
        wire::count_json(&body, S::JSON_RECORDS, st.max_events)
    } else {
        wire::count(&body, S::RECORDS, st.max_events).map_err(|e| e.to_string())
    };
    match counted {
        Ok(n) if n > st.max_events => return too_large(n),
        Ok(_) => {}
        Err(e) => return malformed(e),
    }
    let mut events = Vec::new();
    let decoded = if json {
        S::from_json(&body).map(|r| S::events(r, &mut events))
    } else {
        S::protobuf_events(body, &mut events).map_err(|e| e.to_string())
    };
    if let Err(e) = decoded {
        return malformed(e);
    }
    match st.ingest(events, sender).await {
        Ok(()) => {
            let answer = S::Response::default();
            let body = if json {
                serde_json::to_vec(&answer).unwrap_or_default()
            } else {
                answer.encode_to_vec()
            };
            http_reply(StatusCode::OK, json, body)
        }
        Err(Refused::Shed) => {
            let mut r = http_error(
                StatusCode::TOO_MANY_REQUESTS,
                json,
                Code::ResourceExhausted,
                "a destination is applying backpressure; retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(st.retry_secs()));
            r
        }
        Err(Refused::Shutdown) => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            Code::Unavailable,
            "shutting down",
        ),
        Err(Refused::Failed) => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            Code::Unavailable,
            "accepted, but a destination failed to deliver it; send again",
        ),
        Err(Refused::Dropped) => {
            let mut r = http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                json,
                Code::Unavailable,
                "accepted, but a destination had no room to keep it; send again",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(st.retry_secs()));
            r
        }
    }
}

async fn http_logs(State(st): State<Arc<OtlpState>>, req: Request) -> Response {
    http_export::<Logs>(&st, req).await
}

async fn http_metrics(State(st): State<Arc<OtlpState>>, req: Request) -> Response {
    http_export::<Metrics>(&st, req).await
}

async fn http_traces(State(st): State<Arc<OtlpState>>, req: Request) -> Response {
    http_export::<Traces>(&st, req).await
}
