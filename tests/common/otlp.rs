//! A real OTLP collector for destination tests: the gRPC services
//! opentelemetry-proto generates (served by tonic, gzip accepted) and an
//! OTLP/HTTP receiver (hyper: `/v1/logs|metrics|traces`, protobuf or JSON,
//! gzip), both recording what arrives and the headers it came with, and
//! both answering with the fault a test injects for its next requests.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};

/// What the collector answers to the next requests.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A gRPC error, with a `RetryInfo` delay if set.
    Grpc(Code, Option<Duration>),
    /// An HTTP status, with `Retry-After` seconds if set.
    Http(u16, Option<u64>),
    /// Accept, but report this many log records refused.
    Partial(i64),
    /// The same, the count written as a JSON string (`"5"`), as proto3 JSON
    /// writes an int64 (OTLP/HTTP JSON only).
    PartialText(i64),
}

#[derive(Default)]
struct State {
    logs: Vec<ResourceLogs>,
    metrics: Vec<ResourceMetrics>,
    traces: Vec<ResourceSpans>,
    /// Each request's headers (gRPC metadata or HTTP), lowercased names.
    headers: Vec<HashMap<String, String>>,
    /// Faults for the next requests, first first.
    faults: Vec<Fault>,
    failed: u64,
    /// The body of every OTLP/HTTP JSON logs request, as sent.
    json_logs: Vec<serde_json::Value>,
}

#[derive(Clone, Default)]
pub struct Collector {
    state: Arc<Mutex<State>>,
}

/// A running collector. `kill_grpc` takes its gRPC side away (the port
/// refuses, open connections are closed) until `restart_grpc`.
pub struct Running {
    pub collector: Collector,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    grpc_server: Option<GrpcServer>,
    /// The gRPC port, leased so that `restart_grpc` finds it free (an
    /// ephemeral port could meanwhile be any connection's).
    _lease: super::real_peer::Ports<1>,
}

type GrpcServer = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

impl Running {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub async fn kill_grpc(&mut self) {
        if let Some((stop, server)) = self.grpc_server.take() {
            let _ = stop.send(());
            // A graceful stop ends each connection (GOAWAY) once its
            // requests are answered.
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }

    pub async fn restart_grpc(&mut self) {
        let listener = TcpListener::bind(self.grpc).await.expect("rebind grpc");
        self.grpc_server = Some(self.collector.serve_grpc(listener));
    }
}

impl Collector {
    /// Start both receivers on loopback ports.
    pub async fn start() -> Running {
        let collector = Collector::default();
        let lease = super::real_peer::free_ports::<1>();
        let grpc = TcpListener::bind(("127.0.0.1", lease.ports[0]))
            .await
            .expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let grpc_server = Some(collector.serve_grpc(grpc));
        let c = collector.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = http.accept().await else {
                    return;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let c = c.clone();
                        async move { Ok::<_, std::convert::Infallible>(c.http(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        Running {
            collector,
            grpc: grpc_addr,
            http: http_addr,
            grpc_server,
            _lease: lease,
        }
    }

    fn serve_grpc(&self, listener: TcpListener) -> GrpcServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = self.clone();
        let server = tokio::spawn(async move {
            let router = tonic::transport::Server::builder()
                .add_service(
                    LogsServiceServer::new(c.clone()).accept_compressed(CompressionEncoding::Gzip),
                )
                .add_service(
                    MetricsServiceServer::new(c.clone())
                        .accept_compressed(CompressionEncoding::Gzip),
                )
                .add_service(
                    TraceServiceServer::new(c).accept_compressed(CompressionEncoding::Gzip),
                );
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                panic!("the OTLP gRPC receiver failed: {e}");
            }
        });
        (stop, server)
    }

    /// Answer the next requests with these faults, in order, then normally.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Requests answered with a fault so far.
    pub fn failed(&self) -> u64 {
        self.state.lock().unwrap().failed
    }

    pub fn logs(&self) -> Vec<ResourceLogs> {
        self.state.lock().unwrap().logs.clone()
    }

    /// Every OTLP/HTTP JSON logs request body, as sent.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().json_logs.clone()
    }

    pub fn metrics(&self) -> Vec<ResourceMetrics> {
        self.state.lock().unwrap().metrics.clone()
    }

    pub fn traces(&self) -> Vec<ResourceSpans> {
        self.state.lock().unwrap().traces.clone()
    }

    /// Every log record received, in arrival order.
    pub fn records(&self) -> Vec<LogRecord> {
        self.logs()
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .collect()
    }

    pub fn headers(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().headers.clone()
    }

    /// The fault for this request, if any, with its headers recorded.
    fn next_fault(&self, headers: HashMap<String, String>) -> Option<Fault> {
        let mut s = self.state.lock().unwrap();
        s.headers.push(headers);
        if s.faults.is_empty() {
            return None;
        }
        s.failed += 1;
        Some(s.faults.remove(0))
    }

    fn grpc_headers<T>(req: &tonic::Request<T>) -> HashMap<String, String> {
        req.metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect()
    }

    /// The gRPC answer for a fault: an error, or how many were refused.
    fn grpc_fault(fault: Option<Fault>) -> Result<i64, Status> {
        match fault {
            None => Ok(0),
            Some(Fault::Partial(n) | Fault::PartialText(n)) => Ok(n),
            Some(Fault::Grpc(code, delay)) => Err(match delay {
                Some(d) => {
                    use tonic_types::{ErrorDetails, StatusExt};
                    Status::with_error_details(
                        code,
                        "injected",
                        ErrorDetails::with_retry_info(Some(d)),
                    )
                }
                None => Status::new(code, "injected"),
            }),
            Some(Fault::Http(..)) => Err(Status::internal("an HTTP fault sent over gRPC")),
        }
    }

    async fn http(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let headers: HashMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let path = req.uri().path().to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(400, "text/plain", b"unreadable body".to_vec(), None),
        };
        let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                return reply(400, "text/plain", b"bad gzip".to_vec(), None);
            }
            out
        } else {
            body.to_vec()
        };
        let json = headers.get("content-type").map(String::as_str) == Some("application/json");
        let fault = self.next_fault(headers);
        if json && path == "/v1/logs" {
            let raw = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            self.state.lock().unwrap().json_logs.push(raw);
        }
        let refused = match fault {
            Some(Fault::Http(code, after)) => {
                return reply(code, "text/plain", b"injected".to_vec(), after);
            }
            Some(Fault::PartialText(n)) if json => {
                let answer = format!(
                    r#"{{"partialSuccess":{{"rejectedLogRecords":"{n}","errorMessage":"injected refusal"}}}}"#
                );
                return reply(200, "application/json", answer.into_bytes(), None);
            }
            Some(Fault::Partial(n) | Fault::PartialText(n)) => n,
            _ => 0,
        };
        let content_type = if json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        macro_rules! take {
            ($req:ty, $field:ident, $store:ident, $resp:expr) => {{
                let parsed: Result<$req, String> = if json {
                    serde_json::from_slice(&body).map_err(|e| e.to_string())
                } else {
                    <$req>::decode(&body[..]).map_err(|e| e.to_string())
                };
                // proto3 JSON the generated serde cannot read ("NaN", an
                // int64 count as a string) is still OTLP/JSON: a Go
                // collector takes it. Kept raw (`json_logs`), answered 200.
                let parsed = match parsed {
                    Err(_) if json && path == "/v1/logs" => Ok(<$req>::default()),
                    p => p,
                };
                match parsed {
                    Ok(r) => {
                        self.state.lock().unwrap().$store.extend(r.$field);
                        let resp = $resp;
                        let bytes = if json {
                            serde_json::to_vec(&resp).unwrap()
                        } else {
                            resp.encode_to_vec()
                        };
                        reply(200, content_type, bytes, None)
                    }
                    Err(e) => reply(400, "text/plain", e.into_bytes(), None),
                }
            }};
        }
        match path.as_str() {
            "/v1/logs" => take!(
                ExportLogsServiceRequest,
                resource_logs,
                logs,
                logs_response(refused)
            ),
            "/v1/metrics" => take!(
                ExportMetricsServiceRequest,
                resource_metrics,
                metrics,
                ExportMetricsServiceResponse::default()
            ),
            "/v1/traces" => take!(
                ExportTraceServiceRequest,
                resource_spans,
                traces,
                ExportTraceServiceResponse::default()
            ),
            _ => reply(404, "text/plain", b"no such path".to_vec(), None),
        }
    }
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", Value::StringValue(service.into())),
            kv("replica", Value::IntValue(2)),
        ],
        ..Default::default()
    })
}

/// What an OTel SDK sends: two services' logs, metrics and spans.
pub fn telemetry() -> (Vec<ResourceLogs>, Vec<ResourceMetrics>, Vec<ResourceSpans>) {
    let scope = Some(InstrumentationScope {
        name: "io.opentelemetry.app".into(),
        version: "1.0".into(),
        ..Default::default()
    });
    let logs = ["cart", "pay"]
        .iter()
        .map(|svc| ResourceLogs {
            resource: resource(svc),
            scope_logs: vec![ScopeLogs {
                scope: scope.clone(),
                log_records: (0..5)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i,
                        observed_time_unix_nano: 1_700_000_000_000_000_500 + i,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(format!("{svc} {i}"))),
                        }),
                        attributes: vec![
                            kv("ratio", Value::DoubleValue(0.5 + i as f64)),
                            kv("ok", Value::BoolValue(i % 2 == 0)),
                        ],
                        trace_id: vec![7; 16],
                        span_id: vec![i as u8; 8],
                        flags: 1,
                        ..Default::default()
                    })
                    .collect(),
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        })
        .collect();
    let metrics = ["cart", "pay"]
        .iter()
        .map(|svc| ResourceMetrics {
            resource: resource(svc),
            scope_metrics: vec![ScopeMetrics {
                scope: scope.clone(),
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    unit: "{items}".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            value: Some(number_data_point::Value::AsInt(42)),
                            attributes: vec![kv("queue", Value::StringValue("q1".into()))],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    let traces = ["cart", "pay"]
        .iter()
        .map(|svc| ResourceSpans {
            resource: resource(svc),
            scope_spans: vec![ScopeSpans {
                scope: scope.clone(),
                spans: vec![Span {
                    trace_id: vec![9; 16],
                    span_id: vec![1; 8],
                    name: format!("{svc} checkout"),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_250_000_000,
                    attributes: vec![kv("http.route", Value::StringValue("/pay".into()))],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    (logs, metrics, traces)
}

/// Run the OpenTelemetry SDK client (tests/peers/otel_sdk.py) with `args`;
/// its one line of JSON output.
pub async fn sdk(args: &[&str]) -> serde_json::Value {
    sdk_with_env(args, &[]).await
}

/// `sdk` with environment variables (the SDK's `OTEL_*` settings).
pub async fn sdk_with_env(args: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new(format!("{root}/scripts/peers"))
        .args(["start", "otel-sdk"])
        .arg(dir.path())
        .arg(format!("{root}/tests/peers/otel_sdk.py"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // `requests` prefers these to the exporter's own CA file: a
        // machine that sets them (to the system's roots) would hide ours.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .await
        .expect("run scripts/peers start otel-sdk");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the OpenTelemetry SDK client failed ({}); is it installed? run `scripts/peers install`:\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("SDK client said `{stdout}` ({e}); stderr:\n{stderr}"))
}

fn logs_response(refused: i64) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (refused > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: refused,
            error_message: "injected refusal".into(),
        }),
    }
}

fn reply(
    code: u16,
    content_type: &str,
    body: Vec<u8>,
    after: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(code)
        .header("content-type", content_type);
    if let Some(a) = after {
        r = r.header("retry-after", a.to_string());
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, Status> {
        let refused = Self::grpc_fault(self.next_fault(Self::grpc_headers(&req)))?;
        self.state
            .lock()
            .unwrap()
            .logs
            .extend(req.into_inner().resource_logs);
        Ok(tonic::Response::new(logs_response(refused)))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, Status> {
        Self::grpc_fault(self.next_fault(Self::grpc_headers(&req)))?;
        self.state
            .lock()
            .unwrap()
            .metrics
            .extend(req.into_inner().resource_metrics);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        Self::grpc_fault(self.next_fault(Self::grpc_headers(&req)))?;
        self.state
            .lock()
            .unwrap()
            .traces
            .extend(req.into_inner().resource_spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
