//! `type: splunk_hec` — Splunk's HTTP Event Collector, as its clients
//! (Splunk's logging libraries, the OpenTelemetry Collector's and Fluent
//! Bit's Splunk exporters) send to it:
//!
//! - `POST /services/collector/event` (also `/services/collector` and
//!   `/event/1.0`): concatenated JSON envelopes (`envelope.rs`);
//! - `POST /services/collector/raw` (and `/raw/1.0`): lines, with a
//!   channel, metadata in the query;
//! - `GET /services/collector/health` (and `/health/1.0`);
//! - `POST /services/collector/ack`: indexer acknowledgements (`acks.rs`),
//!   `true` only once the request's events were delivered or durably queued.
//!
//! Answers are Splunk's (`{"text":…,"code":…}`) with its status codes, so a
//! client's own error handling and retries work unchanged. A request is
//! taken whole or refused whole. Backpressure: a request waits at most
//! `max_wait` for room, then is answered `503` "Server is busy" (code 9)
//! with `Retry-After`, which the clients retry.

mod acks;
pub mod envelope;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{SecondsFormat, Utc};

use self::acks::Acks;
use self::envelope::{Defaults, Invalid};
use super::{Refused, SourceContext, SourceError, SourceType, Started};
use crate::auth::Authenticator;
use crate::config::units::{ByteSize, Dur};
use crate::config::{Listen, Validate};
use crate::event::{Ack, AckStatus, Batch};
use crate::metrics::RejectReason;
use crate::router::RouteError;
use crate::tls::ServerTlsConfig;

crate::source_config! {
    pub struct SplunkHecConfig {
        pub address: SocketAddr,
        /// Tokens clients present (`Authorization: Splunk <token>`). Empty:
        /// no token is asked for.
        #[serde(default)]
        pub tokens: Vec<String>,
        /// Largest body accepted, before and after decompression. Default 10 MiB.
        #[serde(default = "default_max_body")]
        pub max_body_bytes: ByteSize,
        /// Most events one request may carry. Default 100,000.
        #[serde(default = "super::default_max_request_events")]
        pub max_events: usize,
        /// How long a request waits for room before `503` (code 9). Default 1s.
        #[serde(default = "default_max_wait")]
        pub max_wait: Dur,
        /// Indexer acknowledgements: every request needs a channel, and its
        /// `ackId` reads `true` once its events were delivered.
        #[serde(default)]
        pub acknowledgements: bool,
        /// Most acknowledgement channels at once. Default 10,000.
        #[serde(default = "default_max_channels")]
        pub max_ack_channels: usize,
        /// Most ack ids held over all channels (on their way, or delivered
        /// and not yet asked about). Default 1,000,000.
        #[serde(default = "default_max_pending")]
        pub max_pending_acks: usize,
        /// A channel idle this long with nothing on its way is forgotten.
        /// Default 5m.
        #[serde(default = "default_ack_idle")]
        pub ack_idle_timeout: Dur,
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        #[serde(default = "super::default_body_timeout")]
        pub body_timeout: Dur,
    }
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(10)
}

fn default_max_wait() -> Dur {
    Dur::secs(1)
}

fn default_max_channels() -> usize {
    10_000
}

fn default_max_pending() -> usize {
    1_000_000
}

fn default_ack_idle() -> Dur {
    Dur::secs(300)
}

impl Validate for SplunkHecConfig {
    fn validate(&self) -> Result<(), String> {
        if self.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err("tokens must not be empty strings".into());
        }
        if self.max_body_bytes.0 == 0 || self.max_events == 0 {
            return Err("max_body_bytes and max_events must be at least 1".into());
        }
        if self.max_ack_channels == 0 || self.max_pending_acks == 0 {
            return Err("max_ack_channels and max_pending_acks must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        self.tls.as_ref().map_or(Ok(()), |t| t.validate())
    }
}

pub struct SplunkHecSource;

impl SourceType for SplunkHecSource {
    const NAME: &'static str = "splunk_hec";
    type Config = SplunkHecConfig;

    fn listen(c: &SplunkHecConfig) -> Vec<Listen> {
        vec![Listen::Tcp(c.address)]
    }

    async fn start(cfg: &SplunkHecConfig, ctx: SourceContext) -> Result<Started, SourceError> {
        let (local, listener) = super::listen(
            &ctx,
            cfg.address,
            cfg.tls.as_ref(),
            &[b"http/1.1"],
            super::Limits {
                max_connections: cfg.max_connections,
                idle_timeout: Duration::ZERO,
            },
        )
        .await?;
        tracing::info!(source = %ctx.id, address = %local, tls = cfg.tls.is_some(), acknowledgements = cfg.acknowledgements, "splunk_hec source listening");
        let shutdown = ctx.shutdown.clone();
        let state = Arc::new(Hec {
            tokens: cfg
                .tokens
                .iter()
                .map(|t| Authenticator::header(&format!("Splunk {t}")))
                .collect(),
            max_body: cfg.max_body_bytes.as_usize(),
            max_events: cfg.max_events,
            max_wait: cfg.max_wait.get(),
            body_timeout: cfg.body_timeout.get(),
            acks: cfg.acknowledgements.then(|| {
                Arc::new(Acks::new(
                    cfg.max_ack_channels,
                    cfg.max_pending_acks,
                    cfg.ack_idle_timeout.get(),
                ))
            }),
            ctx,
        });
        let c = "/services/collector";
        let app = Router::new()
            .route(c, post(event))
            .route(&format!("{c}/event"), post(event))
            .route(&format!("{c}/event/1.0"), post(event))
            .route(&format!("{c}/raw"), post(raw))
            .route(&format!("{c}/raw/1.0"), post(raw))
            .route(&format!("{c}/health"), get(health))
            .route(&format!("{c}/health/1.0"), get(health))
            .route(&format!("{c}/ack"), post(ack))
            .route(&format!("{c}/ack/1.0"), post(ack))
            .layer(axum::middleware::from_fn(crate::supervise::http_panics))
            .with_state(state.clone());
        let rejects = Some(state.ctx.metrics.clone());
        let spawner = state.ctx.spawner();
        let task = spawner.spawn(crate::http_server::serve(
            listener,
            app,
            shutdown.clone(),
            rejects,
        ));
        let mut started = Started::task(Some(local), task);
        if let Some(acks) = &state.acks {
            // Idle channels are let go even when no new channel asks for room.
            let (a, every) = (
                acks.clone(),
                cfg.ack_idle_timeout.get().max(Duration::from_secs(1)),
            );
            spawner.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tick.tick() => a.sweep(std::time::Instant::now()),
                    }
                }
            });
            let a = acks.clone();
            started.detail = Some(Arc::new(move || {
                vec![("pending_acks", serde_json::json!(a.pending()))]
            }));
        }
        Ok(started)
    }
}

struct Hec {
    tokens: Vec<Authenticator>,
    max_body: usize,
    max_events: usize,
    max_wait: Duration,
    body_timeout: Duration,
    acks: Option<Arc<Acks>>,
    ctx: SourceContext,
}

/// Splunk's answer: `{"text": …, "code": …}`.
fn answer(status: StatusCode, text: &str, code: u32) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "text": text, "code": code }).to_string(),
    )
        .into_response()
}

/// A request refused before its events were read: Splunk's status, text
/// and code (small, so the checks can return it; turned into the answer at
/// the edge).
struct Refusal {
    status: StatusCode,
    text: std::borrow::Cow<'static, str>,
    code: u32,
}

impl Refusal {
    fn new(status: StatusCode, text: impl Into<std::borrow::Cow<'static, str>>, code: u32) -> Self {
        Refusal {
            status,
            text: text.into(),
            code,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = answer(self.status, &self.text, self.code);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Splunk"));
        }
        r
    }
}

fn busy(max_wait: Duration) -> Response {
    let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, "Server is busy", 9);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(super::retry_after_secs(max_wait)),
    );
    r
}

impl Hec {
    /// The token check, as Splunk answers it (401 code 2 or 3, 403 code 4).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let refuse = |status, text: &'static str, code| {
            self.ctx.metrics.reject(RejectReason::Unauthorized, 1);
            Err(Refusal::new(status, text, code))
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
        else {
            return refuse(StatusCode::UNAUTHORIZED, "Token is required", 2);
        };
        if !given.starts_with(b"Splunk ") {
            return refuse(StatusCode::UNAUTHORIZED, "Invalid authorization", 3);
        }
        if self.tokens.iter().any(|t| t.check(Some(given))) {
            Ok(())
        } else {
            refuse(StatusCode::FORBIDDEN, "Invalid token", 4)
        }
    }

    /// The channel (header or `channel` query parameter), which must be a
    /// GUID; `required`: answer code 10 without one.
    fn channel(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        required: bool,
    ) -> Result<Option<String>, Refusal> {
        let given = headers
            .get("x-splunk-request-channel")
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .or_else(|| query.get("channel").cloned());
        match given {
            None if required => {
                self.ctx.metrics.reject(RejectReason::BadRequest, 1);
                Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "Data channel is missing",
                    10,
                ))
            }
            None => Ok(None),
            Some(c) if uuid_like(&c) => Ok(Some(c)),
            Some(_) => {
                self.ctx.metrics.reject(RejectReason::BadRequest, 1);
                Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "Invalid data channel",
                    11,
                ))
            }
        }
    }

    async fn body(
        &self,
        headers: &HeaderMap,
        body: axum::body::Body,
    ) -> Result<bytes::Bytes, Refusal> {
        super::http::read_body(headers, body, self.max_body, self.body_timeout)
            .await
            .map_err(|(status, reason, msg)| {
                self.ctx.metrics.reject(reason, 1);
                Refusal::new(status, msg, 6)
            })
    }

    /// Route the events; with acknowledgements, answer with the request's
    /// `ackId` once routed and mark it when they are delivered.
    async fn take(
        &self,
        events: Vec<crate::event::Event>,
        channel: Option<String>,
        sender: crate::event::Sender,
    ) -> Response {
        let Some(acks) = &self.acks else {
            return match self
                .ctx
                .send_request(events, self.max_wait, false, sender)
                .await
            {
                Ok(()) => answer(StatusCode::OK, "Success", 0),
                Err(Refused::Shed | Refused::Shutdown | Refused::Dropped | Refused::Failed) => {
                    busy(self.max_wait)
                }
            };
        };
        // `channel` is required when acknowledging (checked by the caller).
        let channel = channel.unwrap_or_default();
        let now = std::time::Instant::now();
        let id = match acks.register(&channel, now) {
            Ok(id) => id,
            Err(_) => {
                self.ctx
                    .metrics
                    .reject(RejectReason::Shed, events.len() as u64);
                return busy(self.max_wait);
            }
        };
        let (ack, rx) = Ack::new();
        let deadline = tokio::time::Instant::now() + self.max_wait;
        match self
            .ctx
            .send_until(
                Batch::with_ack(events, Some(ack)).from(sender),
                Some(deadline),
            )
            .await
        {
            Ok(()) => {
                let acks = acks.clone();
                self.ctx.spawner().spawn(async move {
                    // Written to a persistent queue counts: delivered by the
                    // next run if not this one.
                    let delivered =
                        matches!(rx.await, Ok(AckStatus::Delivered | AckStatus::Abandoned));
                    acks.complete(&channel, id, delivered);
                });
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::json!({ "text": "Success", "code": 0, "ackId": id }).to_string(),
                )
                    .into_response()
            }
            Err(RouteError::Shed | RouteError::Shutdown) => {
                acks.complete(&channel, id, false);
                busy(self.max_wait)
            }
        }
    }

    fn invalid(&self, why: Invalid) -> Response {
        let m = &self.ctx.metrics;
        match why {
            Invalid::NoData => {
                m.reject(RejectReason::Malformed, 1);
                answer(StatusCode::BAD_REQUEST, "No data", 5)
            }
            Invalid::TooMany => {
                m.reject(RejectReason::Oversize, 1);
                answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "more than max_events ({}) events in one request",
                        self.max_events
                    ),
                    6,
                )
            }
            Invalid::Format(i) | Invalid::EventRequired(i) | Invalid::EventBlank(i) => {
                m.reject(RejectReason::Malformed, 1);
                let (text, code) = match why {
                    Invalid::Format(_) => ("Invalid data format", 6),
                    Invalid::EventRequired(_) => ("Event field is required", 12),
                    _ => ("Event field cannot be blank", 13),
                };
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::json!({ "text": text, "code": code, "invalid-event-number": i })
                        .to_string(),
                )
                    .into_response()
            }
        }
    }
}

/// Splunk's channels are GUIDs: 8-4-4-4-12 hexadecimal digits.
fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn event(
    State(st): State<Arc<Hec>>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    receive(&st, query, req, false).await
}

async fn raw(
    State(st): State<Arc<Hec>>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    receive(&st, query, req, true).await
}

async fn receive(st: &Hec, query: HashMap<String, String>, req: Request, raw: bool) -> Response {
    if st.ctx.shutdown.is_cancelled() {
        return busy(st.max_wait);
    }
    let (parts, body) = req.into_parts();
    let sender = st.ctx.sender_of_request(&parts.extensions);
    if let Err(r) = st.authorize(&parts.headers) {
        return r.into_response();
    }
    // Splunk asks /raw for a channel always, and every request for one when
    // acknowledging.
    let channel = match st.channel(&parts.headers, &query, raw || st.acks.is_some()) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let body = match st.body(&parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let d = Defaults {
        channel: channel.clone(),
        host: query.get("host").cloned(),
        source: query.get("source").cloned(),
        sourcetype: query.get("sourcetype").cloned(),
        index: query.get("index").cloned(),
        time: query.get("time").and_then(|t| t.parse().ok()),
    };
    let parsed = if raw {
        envelope::raw(&body, &d, &now(), st.max_events)
    } else {
        envelope::events(&body, &d, &now(), st.max_events)
    };
    match parsed {
        Ok(events) => st.take(events, channel, sender).await,
        Err(why) => st.invalid(why),
    }
}

async fn health(State(st): State<Arc<Hec>>) -> Response {
    // A request held for room in a `block` destination: Splunk's "queues
    // are full".
    if st.ctx.shutdown.is_cancelled() || st.ctx.metrics.waiting.get() > 0 {
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "HEC is unhealthy, queues are full",
            18,
        )
    } else {
        answer(StatusCode::OK, "HEC is healthy", 17)
    }
}

#[derive(serde::Deserialize)]
struct AckQuery {
    acks: Vec<u64>,
}

async fn ack(
    State(st): State<Arc<Hec>>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(r) = st.authorize(&parts.headers) {
        return r.into_response();
    }
    let Some(acks) = &st.acks else {
        return answer(StatusCode::BAD_REQUEST, "ACK is disabled", 14);
    };
    let channel = match st.channel(&parts.headers, &query, true) {
        Ok(c) => c.unwrap_or_default(),
        Err(r) => return r.into_response(),
    };
    let body = match st.body(&parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Ok(q) = serde_json::from_slice::<AckQuery>(&body) else {
        st.ctx.metrics.reject(RejectReason::Malformed, 1);
        return answer(StatusCode::BAD_REQUEST, "Invalid data format", 6);
    };
    let answers = acks.query(&channel, &q.acks, std::time::Instant::now());
    let map: serde_json::Map<String, serde_json::Value> = answers
        .into_iter()
        .map(|(id, done)| (id.to_string(), done.into()))
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "acks": map }).to_string(),
    )
        .into_response()
}
