//! `type: otlp` — logs, metrics and traces to an OpenTelemetry collector,
//! over gRPC (`protocol: grpc`, the default, port 4317) or HTTP
//! (`protocol: http`, 4318, protobuf or `http_encoding: json`).
//!
//! Events the OTLP source made go back out as exactly what arrived,
//! grouped again by resource and scope (`crate::otlp::event`); metric
//! events (`aggregate`, `log_to_metric`) become metrics
//! (`crate::otlp::metric`); any other event becomes a log record by
//! `mapping` (`crate::otlp::mapping`). A
//! request carries each signal present in the batch as its own export
//! call.
//!
//! Answers, as the OTLP specification classifies them: `partial_success`
//! counts that many events rejected (OTLP does not say which, so none is
//! guessed into a dead letter); gRPC CANCELLED, DEADLINE_EXCEEDED, ABORTED,
//! OUT_OF_RANGE, DATA_LOSS and HTTP 502/503/504 are retried, UNAVAILABLE
//! marks the endpoint down, RESOURCE_EXHAUSTED and HTTP 429 are throttling;
//! a gRPC `RetryInfo` or an HTTP `Retry-After` says how long to wait. As for
//! Pub/Sub, refused credentials (UNAUTHENTICATED, PERMISSION_DENIED, 401,
//! 403) are backpressure with the cause logged: the fix is a setting and
//! every event is still good. The rest (INVALID_ARGUMENT, UNIMPLEMENTED, a
//! 400, a 404) is rejected with its code.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

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
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::Validate;
use crate::destination_config;
use crate::destinations::http::retry_after;
use crate::destinations::{BuildContext, Capabilities, DestinationType};
use crate::driver::error_chain;
use crate::driver::{
    CauseLog, Compression, DeliveryDefaults, Destination, Encoded, Outcome, RESPONSE_EXCERPT,
    RecordOutcome, Rejection, as_record, per_record,
};
use crate::event::Event;
use crate::grpc::{code_name, retry_delay};
use crate::metric_event::MetricEvent;
use crate::metrics::DropReason;
use crate::otlp::borrowed::WireLogs;
use crate::otlp::event::{
    LogEvent, MetricsEvent, Origin, RawResource, Signal, TracesEvent, signal_of,
};
use crate::otlp::exports::Finder;
use crate::otlp::groups::LogGroups;
use crate::otlp::mapping::{self, MappingConfig};
use crate::tls::TlsConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    #[default]
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    #[default]
    Protobuf,
    Json,
}

destination_config! {
    pub struct OtlpConfig {
        #[serde(default)]
        pub protocol: OtlpProtocol,
        /// The collector: `http://localhost:4317` (gRPC) or
        /// `http://localhost:4318` (HTTP) by default, as OTel SDKs. Over
        /// HTTP, `/v1/logs`, `/v1/metrics` and `/v1/traces` are appended.
        #[serde(default)]
        pub endpoint: Option<String>,
        #[serde(default)]
        pub http_encoding: HttpEncoding,
        /// Sent with every request (gRPC metadata or HTTP headers); values
        /// may name `${ENV}` variables.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// For an `https://` endpoint: `ca_file` to trust a private CA.
        #[serde(default)]
        pub tls: Option<TlsConfig>,
        /// How events that did not arrive over OTLP become log records.
        #[serde(default)]
        pub mapping: MappingConfig,
    }
}

/// Servers refuse larger messages by default (gRPC's 4 MiB).
const MAX_MESSAGE_BYTES: u64 = 4 << 20;

impl OtlpConfig {
    fn url(&self) -> String {
        let default = match self.protocol {
            OtlpProtocol::Grpc => "http://localhost:4317",
            OtlpProtocol::Http => "http://localhost:4318",
        };
        self.endpoint
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string()
    }
}

impl Validate for OtlpConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.tls {
            crate::config::Validate::validate(t)?;
        }
        let url = self.url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "endpoint: `{url}` is not an http:// or https:// URL"
            ));
        }
        if self.protocol == OtlpProtocol::Grpc && self.http_encoding != HttpEncoding::Protobuf {
            return Err("http_encoding applies only with `protocol: http`".into());
        }
        if let Some(tls) = &self.tls
            && self.protocol == OtlpProtocol::Grpc
            && !tls.verify()
        {
            return Err(
                "tls.verify_certificate: false is not available over gRPC (tonic always verifies); trust the server's CA with tls.ca_file"
                    .into(),
            );
        }
        crate::destinations::http::headers(&self.headers)?;
        // gRPC metadata keys are narrower than HTTP header names.
        for k in self.headers.keys() {
            let key = k.to_ascii_lowercase();
            if MetadataKey::<tonic::metadata::Ascii>::from_bytes(key.as_bytes()).is_err() {
                return Err(format!("headers: `{k}` is not a valid header name"));
            }
        }
        self.mapping.validate()
    }
}

impl DestinationType for OtlpDestination {
    const NAME: &'static str = "otlp";
    /// Cribl's OpenTelemetry destination: concurrency 5, 30 s timeout;
    /// batches kept to half the 4 MiB a server takes per message.
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults {
        max_bytes: 2 << 20,
        ..DeliveryDefaults::NETWORK
    };
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: &[],
        compressions: &[Compression::Gzip],
        max_events: None,
        max_bytes: Some(MAX_MESSAGE_BYTES),
        max_record_bytes: Some(MAX_MESSAGE_BYTES),
        retry_on: false,
    };
    type Config = OtlpConfig;

    async fn build(cfg: &OtlpConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        OtlpDestination::connect(ctx.id, &OtlpClient::of(cfg))
    }
}

/// Where and how an OTLP client sends: the destination's settings, or
/// sluice's own telemetry's (`crate::telemetry`).
pub struct OtlpClient<'a> {
    pub protocol: OtlpProtocol,
    pub url: String,
    pub http_encoding: HttpEncoding,
    pub headers: &'a BTreeMap<String, String>,
    pub tls: Option<&'a TlsConfig>,
    pub gzip: bool,
    pub mapping: MappingConfig,
}

impl<'a> OtlpClient<'a> {
    fn of(cfg: &'a OtlpConfig) -> Self {
        OtlpClient {
            protocol: cfg.protocol,
            url: cfg.url(),
            http_encoding: cfg.http_encoding,
            headers: &cfg.headers,
            tls: cfg.tls.as_ref(),
            // gzip unless set otherwise: Cribl's default, and OTLP's only codec.
            gzip: cfg.compression.unwrap_or(Compression::Gzip) == Compression::Gzip,
            mapping: cfg.mapping.clone(),
        }
    }
}

impl OtlpDestination {
    pub fn connect(id: &str, c: &OtlpClient<'_>) -> Result<Self, String> {
        let transport = match c.protocol {
            OtlpProtocol::Grpc => {
                let mut metadata = MetadataMap::new();
                for (k, v) in c.headers {
                    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| format!("headers: `{k}` is not a valid header name"))?;
                    let value = MetadataValue::try_from(v.as_str())
                        .map_err(|_| format!("headers.{k}: not a valid header value"))?;
                    metadata.insert(key, value);
                }
                Transport::Grpc {
                    channel: crate::grpc::channel(&c.url, c.tls)?,
                    metadata,
                }
            }
            OtlpProtocol::Http => Transport::Http(Box::new(HttpTransport::new(c)?)),
        };
        Ok(OtlpDestination {
            id: id.to_string(),
            transport,
            gzip: c.gzip,
            json: c.http_encoding == HttpEncoding::Json,
            mapping: c.mapping.clone(),
            log: CauseLog::default(),
        })
    }

    /// One export of sluice's own metrics, outside any lane.
    pub async fn export_metrics(&self, message: ExportMetricsServiceRequest) -> Outcome {
        let call = self.call(message);
        self.export(&call, 1).await
    }

    /// One export of sluice's own log records, outside any lane.
    pub async fn export_logs(&self, message: ExportLogsServiceRequest) -> Outcome {
        let n = message
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        let call = self.call(message);
        self.export(&call, n).await
    }
}

pub struct OtlpDestination {
    id: String,
    transport: Transport,
    gzip: bool,
    json: bool,
    mapping: MappingConfig,
    log: CauseLog,
}

enum Transport {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
    },
    Http(Box<HttpTransport>),
}

struct HttpTransport {
    client: reqwest::Client,
    base: String,
    headers: HeaderMap,
}

impl HttpTransport {
    fn new(c: &OtlpClient<'_>) -> Result<Self, String> {
        let mut headers = crate::destinations::http::headers(c.headers)?;
        let content_type = if c.http_encoding == HttpEncoding::Json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if c.gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpTransport {
            client: crate::destinations::http::client(Duration::from_secs(10), c.tls)?,
            base: c.url.clone(),
            headers,
        })
    }
}

/// One batch: an export request per signal present, and which signal each
/// included event went into (in event order).
pub struct OtlpRequest {
    logs: Option<Call<ExportLogsServiceRequest>>,
    metrics: Option<Call<ExportMetricsServiceRequest>>,
    traces: Option<Call<ExportTraceServiceRequest>>,
    signals: Vec<Signal>,
}

/// An export request, encoded once and re-sent unchanged on retries: the
/// protobuf message for gRPC (tonic compresses each send), the body for HTTP
/// (protobuf or JSON, compressed).
struct Call<R> {
    body: Bytes,
    _signal: PhantomData<R>,
}

/// What differs between the three export services.
trait Export: prost::Message + serde::Serialize + Default + 'static {
    type Response: prost::Message + Default + for<'de> Deserialize<'de>;
    const SIGNAL: Signal;
    /// The gRPC method.
    const PATH: &'static str;
    /// `partial_success`: how many were refused, and why.
    fn rejected(response: &Self::Response) -> (i64, &str);
    /// The count's OTLP/JSON names, to read it from a JSON answer.
    const REJECTED: (&'static str, &'static str);
    /// The request as OTLP/JSON.
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

macro_rules! export {
    ($req:ty, $resp:ty, $path:literal, $signal:ident, $field:ident, $camel:literal $(, $to_json:path)?) => {
        impl Export for $req {
            type Response = $resp;
            const SIGNAL: Signal = Signal::$signal;
            const PATH: &'static str = $path;
            const REJECTED: (&'static str, &'static str) = ($camel, stringify!($field));
            $(fn to_json(&self) -> Vec<u8> {
                $to_json(self)
            })?
            fn rejected(r: &$resp) -> (i64, &str) {
                r.partial_success
                    .as_ref()
                    .map_or((0, ""), |p| (p.$field, p.error_message.as_str()))
            }
        }
    };
}

export!(
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Logs,
    rejected_log_records,
    "rejectedLogRecords",
    crate::otlp::json::encode_logs
);
export!(
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    Metrics,
    rejected_data_points,
    "rejectedDataPoints"
);
export!(
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Traces,
    rejected_spans,
    "rejectedSpans"
);

impl OtlpDestination {
    fn call<R: Export>(&self, message: R) -> Call<R> {
        self.call_with(message, &WireLogs::default())
    }

    /// A call of `message` and `borrowed`'s records (protobuf only: the
    /// JSON encoding borrows nothing).
    fn call_with<R: Export>(&self, message: R, borrowed: &WireLogs) -> Call<R> {
        let protobuf = || {
            let mut body = message.encode_to_vec();
            borrowed.encode(&mut body);
            body
        };
        let body = match &self.transport {
            Transport::Grpc { .. } => protobuf(),
            Transport::Http(_) => {
                let raw = if self.json {
                    message.to_json()
                } else {
                    protobuf()
                };
                let compression = if self.gzip {
                    Compression::Gzip
                } else {
                    Compression::None
                };
                // Compressing into a Vec cannot fail but for memory.
                compression.compress(raw).unwrap_or_default()
            }
        };
        Call {
            body: Bytes::from(body),
            _signal: PhantomData,
        }
    }

    /// Export one signal's request of `n` events: the outcome for them.
    async fn export<R: Export>(&self, call: &Call<R>, n: usize) -> Outcome {
        let answer = match &self.transport {
            Transport::Grpc { channel, metadata } => {
                let mut req = tonic::Request::new(call.body.clone());
                *req.metadata_mut() = metadata.clone();
                let answer = crate::grpc::unary_encoded::<R::Response>(
                    channel.clone(),
                    R::PATH,
                    self.gzip,
                    req,
                );
                match answer.await {
                    Ok(r) => {
                        let (n, why) = R::rejected(r.get_ref());
                        Ok((n, why.to_string()))
                    }
                    Err(status) => Err(self.grpc_failed(&status)),
                }
            }
            Transport::Http(http) => self.post::<R>(http, call.body.clone()).await,
        };
        match answer {
            Ok((rejected, why)) => {
                self.log.ok(&self.id);
                let why = why.as_str();
                if rejected <= 0 {
                    if !why.is_empty() {
                        tracing::warn!(destination = %self.id, signal = R::SIGNAL.as_str(), warning = why, "the collector accepted everything, with a warning");
                    }
                    return Outcome::Delivered;
                }
                // Metrics and spans are refused by data point and span; an
                // event holds several, so at most every event is counted.
                let rejected = (rejected as u64).min(n as u64) as usize;
                let mut r = Rejection::named("partial_success", why.to_string());
                r.response = Some(why.to_string());
                Outcome::PartialCount { rejected, why: r }
            }
            Err(o) => o,
        }
    }

    /// POST one export; the answer's partial success (refused, why).
    async fn post<R: Export>(
        &self,
        http: &HttpTransport,
        body: Bytes,
    ) -> Result<(i64, String), Outcome> {
        let url = format!("{}/v1/{}", http.base, R::SIGNAL.as_str());
        let resp = http
            .client
            .post(&url)
            .headers(http.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let text = error_chain(&e);
                self.log.failing(&self.id, "unreachable", &text);
                Outcome::EndpointFailed { error: text }
            })?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = resp.bytes().await.map_err(|e| Outcome::Retry {
            after: None,
            error: format!("reading the answer: {}", error_chain(&e)),
        })?;
        if (200..300).contains(&status) {
            // An empty or unreadable success is still a success: the
            // collector took the data. A JSON count may be a string
            // (proto3 JSON writes int64 so).
            if json {
                let (camel, snake) = R::REJECTED;
                return Ok(crate::otlp::json::partial_success(&bytes, camel, snake));
            }
            let decoded = R::Response::decode(bytes.as_ref()).unwrap_or_default();
            let (n, why) = R::rejected(&decoded);
            return Ok((n, why.to_string()));
        }
        let message = status_message(&bytes, json);
        let error = format!("HTTP {status}: {message}");
        Err(match status {
            429 => Outcome::Throttled { after, error },
            503 if after.is_some() => Outcome::Throttled { after, error },
            502..=504 => {
                self.log.failing(&self.id, "unavailable", &error);
                Outcome::EndpointFailed { error }
            }
            401 | 403 => {
                self.log.failing(&self.id, "credentials refused", &error);
                Outcome::Retry { after, error }
            }
            _ => Outcome::Rejected(Rejection {
                error,
                status: Some(status),
                code: None,
                response: Some(message),
            }),
        })
    }

    fn grpc_failed(&self, status: &Status) -> Outcome {
        let code = status.code();
        let error = format!("{}: {}", code_name(code), status.message());
        let after = retry_delay(status);
        match code {
            Code::ResourceExhausted => Outcome::Throttled { after, error },
            Code::Unavailable if after.is_some() => Outcome::Throttled { after, error },
            Code::Unavailable => {
                self.log.failing(&self.id, "unavailable", &error);
                Outcome::EndpointFailed { error }
            }
            Code::Unauthenticated | Code::PermissionDenied => {
                self.log.failing(&self.id, code_name(code), &error);
                Outcome::Retry { after, error }
            }
            Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss => Outcome::Retry { after, error },
            _ => {
                let mut r = Rejection::named(code_name(code), error);
                r.response = Some(status.message().to_string());
                Outcome::Rejected(r)
            }
        }
    }
}

/// An OTLP/HTTP error body (a `google.rpc.Status`) as its message; the start
/// of the body when it is not one.
fn status_message(body: &[u8], json: bool) -> String {
    let decoded = if json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
    } else {
        tonic_types::pb::Status::decode(body)
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty())
    };
    decoded.unwrap_or_else(|| {
        let end = body.len().min(RESPONSE_EXCERPT);
        String::from_utf8_lossy(&body[..end]).into_owned()
    })
}

/// A resource's metrics (or spans) merged into the group of the same
/// resource, scope by scope.
macro_rules! merge_resource {
    ($groups:expr, $item:expr, $scopes:ident, $records:ident) => {{
        let item = $item;
        match $groups
            .iter_mut()
            .rfind(|g| g.resource == item.resource && g.schema_url == item.schema_url)
        {
            None => $groups.push(item),
            Some(g) => {
                for s in item.$scopes {
                    match g
                        .$scopes
                        .iter_mut()
                        .rfind(|x| x.scope == s.scope && x.schema_url == s.schema_url)
                    {
                        Some(x) => x.$records.extend(s.$records),
                        None => g.$scopes.push(s),
                    }
                }
            }
        }
    }};
}

impl Destination for OtlpDestination {
    type Request = OtlpRequest;

    fn encode(&self, events: &[Event]) -> Encoded<OtlpRequest> {
        let mut logs = LogGroups::default();
        // Records the OTLP source borrowed go back as they came; OTLP/JSON
        // is written from the events' JSON.
        let mut borrowed = WireLogs::default();
        let mut finder = (!self.json).then(Finder::default);
        let mut metrics: Vec<ResourceMetrics> = Vec::new();
        let mut traces: Vec<ResourceSpans> = Vec::new();
        let mut signals = Vec::with_capacity(events.len());
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut skipped = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let signal = signal_of(&e.raw);
            if signal == Some(Signal::Logs)
                && let Some(b) = finder.as_mut().and_then(|f| f.find(&e.raw))
            {
                borrowed.push(&b);
                signals.push(Signal::Logs);
                continue;
            }
            let ok = match signal {
                Some(Signal::Logs) => serde_json::from_slice::<LogEvent<RawResource>>(&e.raw)
                    .and_then(|l| {
                        let (origin, record) = l.into_raw_parts();
                        logs.push_raw(origin, record)
                    })
                    .is_ok(),
                Some(Signal::Metrics) => serde_json::from_slice::<MetricsEvent>(&e.raw)
                    .map(|m| {
                        merge_resource!(metrics, m.into_resource_metrics(), scope_metrics, metrics)
                    })
                    .is_ok(),
                Some(Signal::Traces) => serde_json::from_slice::<TracesEvent>(&e.raw)
                    .map(|t| merge_resource!(traces, t.into_resource_spans(), scope_spans, spans))
                    .is_ok(),
                None => match MetricEvent::parse(&e.raw) {
                    Some(m) => match crate::otlp::metric::resource_metrics(m, now_ns) {
                        Some(rm) => {
                            merge_resource!(metrics, rm, scope_metrics, metrics);
                            signals.push(Signal::Metrics);
                            continue;
                        }
                        None => false,
                    },
                    None => match self.mapping.record(e) {
                        Some((resource, record)) => {
                            let origin = Origin {
                                resource: mapping::resource(resource),
                                ..Origin::default()
                            };
                            logs.push(origin, record);
                            true
                        }
                        None => false,
                    },
                },
            };
            if ok {
                signals.push(signal.unwrap_or(Signal::Logs));
            } else {
                skipped.push((i, DropReason::Unencodable));
            }
        }
        let logs = (!logs.is_empty() || !borrowed.is_empty()).then(|| {
            let message = ExportLogsServiceRequest {
                resource_logs: logs.into_resource_logs(),
            };
            self.call_with(message, &borrowed)
        });
        let metrics = (!metrics.is_empty()).then(|| {
            self.call(ExportMetricsServiceRequest {
                resource_metrics: metrics,
            })
        });
        let traces = (!traces.is_empty()).then(|| {
            self.call(ExportTraceServiceRequest {
                resource_spans: traces,
            })
        });
        let bytes = [
            logs.as_ref().map(|c| c.body.len()),
            metrics.as_ref().map(|c| c.body.len()),
            traces.as_ref().map(|c| c.body.len()),
        ]
        .into_iter()
        .flatten()
        .sum();
        Encoded {
            keys: None,
            request: OtlpRequest {
                logs,
                metrics,
                traces,
                signals,
            },
            bytes,
            skipped,
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, req: &OtlpRequest, _endpoint: usize) -> Outcome {
        let count = |s: Signal| req.signals.iter().filter(|&&x| x == s).count();
        let (logs, metrics, traces) = futures::join!(
            async {
                match &req.logs {
                    Some(c) => Some(self.export(c, count(Signal::Logs)).await),
                    None => None,
                }
            },
            async {
                match &req.metrics {
                    Some(c) => Some(self.export(c, count(Signal::Metrics)).await),
                    None => None,
                }
            },
            async {
                match &req.traces {
                    Some(c) => Some(self.export(c, count(Signal::Traces)).await),
                    None => None,
                }
            },
        );
        let mut results: Vec<(Signal, Outcome)> = [
            (Signal::Logs, logs),
            (Signal::Metrics, metrics),
            (Signal::Traces, traces),
        ]
        .into_iter()
        .filter_map(|(s, o)| o.map(|o| (s, o)))
        .collect();
        if results.len() <= 1 {
            return results.pop().map_or(Outcome::Delivered, |(_, o)| o);
        }
        combine(&req.signals, &results)
    }
}

/// The outcomes of a request's export calls (one per signal), per event.
/// A partial success's refused count is charged to that signal's last
/// events: OTLP does not say which, and only the count is used.
fn combine(signals: &[Signal], results: &[(Signal, Outcome)]) -> Outcome {
    let mut outcomes = Vec::with_capacity(signals.len());
    for (signal, outcome) in results {
        let n = signals.iter().filter(|s| *s == signal).count();
        let (refused, why) = match outcome {
            Outcome::PartialCount { rejected, why } => (*rejected, Some(why)),
            _ => (0, None),
        };
        let mut seen = 0;
        for (i, s) in signals.iter().enumerate() {
            if s != signal {
                continue;
            }
            seen += 1;
            let o = match why {
                Some(why) if seen > n - refused => RecordOutcome::rejected(why.clone()),
                Some(_) => RecordOutcome::Delivered,
                None => as_record(outcome),
            };
            outcomes.push((i, o));
        }
    }
    outcomes.sort_by_key(|(i, _)| *i);
    per_record(outcomes.into_iter().map(|(_, o)| o).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_request_charges_each_signals_outcome_to_its_events() {
        let signals = [Signal::Logs, Signal::Metrics, Signal::Logs, Signal::Logs];
        let why = Rejection::named("partial_success", "bad");
        let o = combine(
            &signals,
            &[
                (
                    Signal::Logs,
                    Outcome::PartialCount {
                        rejected: 1,
                        why: why.clone(),
                    },
                ),
                (
                    Signal::Metrics,
                    Outcome::Retry {
                        after: None,
                        error: "x".into(),
                    },
                ),
            ],
        );
        assert_eq!(
            o,
            Outcome::Partial(vec![
                RecordOutcome::Delivered,
                RecordOutcome::RETRY,
                RecordOutcome::Delivered,
                RecordOutcome::rejected(why),
            ])
        );
    }

    #[test]
    fn http_error_bodies_are_read_as_google_rpc_status() {
        let body = tonic_types::pb::Status {
            code: 3,
            message: "bad record".into(),
            details: vec![],
        }
        .encode_to_vec();
        assert_eq!(status_message(&body, false), "bad record");
        assert_eq!(
            status_message(br#"{"code":3,"message":"bad json"}"#, true),
            "bad json"
        );
        assert_eq!(status_message(b"not found", true), "not found");
    }
}
