//! `type: http` — POST NDJSON or a JSON array.
//!
//! Answers:
//! - `200 {"accepted": N, "rejected": M}` — malformed lines are counted
//!   (`reason="malformed"`) and the rest are accepted;
//! - `400` when nothing in the body is valid, or the body cannot be decoded;
//! - `401` with `WWW-Authenticate` when `auth` is set and not met;
//! - `413` when the body, compressed or decompressed, exceeds `max_body_bytes`;
//! - `415` for a `Content-Encoding` other than gzip, zstd or identity;
//! - `429` with `Retry-After` when a `block` destination stayed full for
//!   `max_wait`. Nothing from that request was delivered, so retrying it
//!   cannot duplicate events;
//! - `503` while sluice shuts down.
//!
//! JSON must be UTF-8: a line with invalid bytes is malformed (a JSON array
//! body with any is refused), unless `invalid_utf8: replace` turns them into
//! U+FFFD.
//!
//! With `acknowledgements: true` the answer waits until every destination has
//! delivered the request's events or written them to its persistent queue
//! (`200`). If a destination refused some for good (rejected by its peer,
//! too large) the answer is `500`; if one dropped some for lack of room
//! (`backpressure: drop`, a full persistent queue with `on_full: drop`) or
//! at shutdown, it is `503` with `Retry-After`: nothing acknowledged was
//! dropped, and the client sends the request again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

use super::backstop::{self, BackstopConfig, Metric, Refusal};
use super::decoding::{InvalidUtf8, is_json, is_json_utf8};
use super::{Refused, SourceContext};
use crate::auth::{AuthConfig, Authenticator};
use crate::codec::{Compression, Inflate, buffer_pool};
use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};
use crate::event::Event;
use crate::metrics::RejectReason;
use crate::tls::ServerTlsConfig;

crate::source_config! {
    pub struct HttpConfig {
        pub address: SocketAddr,
        /// The path events are POSTed to. Default `/`.
        #[serde(default = "default_path")]
        pub path: String,
        /// Largest body accepted, before and after decompression. Default 10 MiB.
        #[serde(default = "default_max_body")]
        pub max_body_bytes: ByteSize,
        #[serde(default)]
        pub auth: Option<AuthConfig>,
        /// How long a request may wait for a full `block` destination before
        /// the source answers 429. Default 1 s.
        #[serde(default = "default_max_wait")]
        pub max_wait: Dur,
        /// Answer only once the events are delivered.
        #[serde(default)]
        pub acknowledgements: bool,
        /// `reject` (default: counted malformed) or `replace` (with U+FFFD).
        #[serde(default)]
        pub invalid_utf8: InvalidUtf8,
        /// Backstop's endpoints too: `/publish/<prefix>`, `/collectd`,
        /// `/github`, `/pagerduty`, `/health` (see `backstop.rs`).
        #[serde(default)]
        pub backstop: Option<BackstopConfig>,
        /// Serve HTTPS (and with `client_ca_file`, require client certificates).
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
        /// Stop accepting beyond this many open connections. Default 1000.
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        /// Most events one request may carry; more is refused whole (413,
        /// counted `oversize`). Default 100,000.
        #[serde(default = "super::default_max_request_events")]
        pub max_events: usize,
        /// How long a request's body may take to arrive once its headers
        /// have. Default 30s.
        #[serde(default = "super::default_body_timeout")]
        pub body_timeout: Dur,
    }
}

fn default_path() -> String {
    "/".into()
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(10)
}

fn default_max_wait() -> Dur {
    Dur::secs(1)
}

impl Validate for HttpConfig {
    fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') {
            return Err(format!("path `{}` must start with `/`", self.path));
        }
        if self.max_body_bytes.0 == 0 {
            return Err("max_body_bytes must be at least 1".into());
        }
        if let Some(a) = &self.auth {
            a.validate()?;
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
        if let Some(b) = &self.backstop {
            b.validate()?;
            if BACKSTOP_PATHS
                .iter()
                .any(|p| self.path == *p || self.path.starts_with("/publish/"))
            {
                return Err(format!(
                    "path `{}` is one of Backstop's endpoints; choose another with `backstop:`",
                    self.path
                ));
            }
        }
        Ok(())
    }
}

/// The paths `backstop:` serves.
const BACKSTOP_PATHS: [&str; 4] = ["/collectd", "/github", "/pagerduty", "/health"];

struct HttpState {
    ctx: SourceContext,
    auth: Option<(Authenticator, &'static str)>,
    backstop: Option<BackstopState>,
    max_body: usize,
    max_events: usize,
    body_timeout: Duration,
    max_wait: Duration,
    acknowledgements: bool,
    invalid_utf8: InvalidUtf8,
}

pub struct HttpSource;

impl super::SourceType for HttpSource {
    const NAME: &'static str = "http";
    type Config = HttpConfig;

    fn listen(c: &HttpConfig) -> Vec<crate::config::Listen> {
        vec![crate::config::Listen::Tcp(c.address)]
    }

    async fn start(
        c: &HttpConfig,
        ctx: SourceContext,
    ) -> Result<super::Started, super::SourceError> {
        start(c, ctx).await
    }
}

async fn start(cfg: &HttpConfig, ctx: SourceContext) -> Result<super::Started, super::SourceError> {
    let (local, listener) = super::listen(
        &ctx,
        cfg.address,
        cfg.tls.as_ref(),
        &[b"http/1.1"],
        super::Limits {
            max_connections: cfg.max_connections,
            // hyper's header timeout closes idle keep-alive connections.
            idle_timeout: std::time::Duration::ZERO,
        },
    )
    .await?;
    tracing::info!(source = %ctx.id, address = %local, path = %cfg.path, tls = cfg.tls.is_some(), "http source listening");
    let shutdown = ctx.shutdown.clone();
    let state = Arc::new(HttpState {
        backstop: cfg.backstop.as_ref().map(BackstopState::new),
        auth: cfg
            .auth
            .as_ref()
            .map(|a| (Authenticator::new(a), a.challenge())),
        max_body: cfg.max_body_bytes.as_usize(),
        max_events: cfg.max_events,
        body_timeout: cfg.body_timeout.get(),
        max_wait: cfg.max_wait.get(),
        acknowledgements: cfg.acknowledgements,
        invalid_utf8: cfg.invalid_utf8,
        ctx,
    });
    let mut app = Router::new().route(&cfg.path, post(ingest));
    if cfg.backstop.is_some() {
        app = app
            .route("/publish/{prefix}", post(backstop_publish))
            .route("/collectd", post(|s, r| backstop(s, Endpoint::Collectd, r)))
            .route("/github", post(|s, r| backstop(s, Endpoint::Github, r)))
            .route(
                "/pagerduty",
                post(|s, r| backstop(s, Endpoint::Pagerduty, r)),
            )
            .route("/health", get(|| async { r#"{"health":"ok"}"# }));
    }
    let app = app
        .layer(axum::middleware::from_fn(crate::supervise::http_panics))
        .with_state(state.clone());
    let rejects = Some(state.ctx.metrics.clone());
    let task = state
        .ctx
        .spawner()
        .spawn(crate::http_server::serve(listener, app, shutdown, rejects));
    Ok(super::Started::task(Some(local), task))
}

fn reply(status: StatusCode, accepted: usize, rejected: u64) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"accepted\":{accepted},\"rejected\":{rejected}}}"),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response()
}

async fn ingest(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    let m = &st.ctx.metrics;
    if st.ctx.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (parts, body) = req.into_parts();
    let sender = st.ctx.sender_of_request(&parts.extensions);
    if let Some((auth, challenge)) = &st.auth {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !auth.check(given) {
            let r = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
            return refuse_credentials(&st, r, challenge);
        }
    }
    let body = match body_or_refusal(&st, &parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut events = Vec::new();
    let malformed = match parse_body(&body, st.invalid_utf8, st.max_events, &mut events) {
        Ok(n) => n,
        Err(Unparsed::Malformed(msg)) => {
            m.reject(RejectReason::Malformed, 1);
            return error(StatusCode::BAD_REQUEST, &msg);
        }
        Err(Unparsed::TooMany(max)) => {
            m.reject(RejectReason::Oversize, 1);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "more than max_events ({max}) events in one request; send smaller requests"
                ),
            );
        }
    };
    m.reject(RejectReason::Malformed, malformed);
    if events.is_empty() {
        let status = if malformed > 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return reply(status, 0, malformed);
    }
    let accepted = events.len();
    // The whole request is one batch, so it is routed all-or-nothing.
    match st
        .ctx
        .send_request(events, st.max_wait, st.acknowledgements, sender)
        .await
    {
        Ok(()) => reply(StatusCode::OK, accepted, malformed),
        Err(Refused::Shed) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "a destination is applying backpressure; retry later",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(super::retry_after_secs(st.max_wait)),
            );
            r
        }
        Err(Refused::Shutdown) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        Err(Refused::Failed) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "events were accepted but a destination refused them",
        ),
        Err(Refused::Dropped) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "events were accepted but a destination had no room to keep them; send them again",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(super::retry_after_secs(st.max_wait)),
            );
            r
        }
    }
}

/// `backstop:` resolved: its prefixes, key and credentials.
struct BackstopState {
    prefixes: Vec<String>,
    api_key: Option<String>,
    /// One per `user:password` pair; empty: no authentication.
    users: Vec<Authenticator>,
}

impl BackstopState {
    fn new(c: &BackstopConfig) -> Self {
        let users = c
            .users
            .iter()
            .filter_map(|u| u.split_once(':'))
            .map(|(username, password)| {
                Authenticator::new(&AuthConfig {
                    bearer: None,
                    basic: Some(crate::auth::BasicAuth {
                        username: username.into(),
                        password: password.into(),
                    }),
                })
            })
            .collect();
        BackstopState {
            prefixes: c.prefixes.clone(),
            api_key: c.api_key.clone(),
            users,
        }
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Collectd,
    Github,
    Pagerduty,
}

async fn backstop_publish(
    State(st): State<Arc<HttpState>>,
    Path(prefix): Path<String>,
    req: Request,
) -> Response {
    backstop_answer(&st, req, |b, body| {
        backstop::publish(&b.prefixes, &prefix, body)
    })
    .await
}

async fn backstop(State(st): State<Arc<HttpState>>, which: Endpoint, req: Request) -> Response {
    backstop_answer(&st, req, |_, body| match which {
        Endpoint::Collectd => backstop::collectd(body),
        Endpoint::Github => backstop::github(body),
        Endpoint::Pagerduty => backstop::pagerduty(body),
    })
    .await
}

/// A Backstop endpoint: its credentials, the body, the metrics it names,
/// routed as one batch; answered as Backstop answers.
async fn backstop_answer(
    st: &HttpState,
    req: Request,
    parse: impl FnOnce(&BackstopState, &[u8]) -> Result<Vec<Metric>, Refusal>,
) -> Response {
    let m = &st.ctx.metrics;
    let Some(b) = &st.backstop else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let text = |status: u16, body: &'static str| {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
            body,
        )
            .into_response()
    };
    if st.ctx.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (parts, body) = req.into_parts();
    let sender = st.ctx.sender_of_request(&parts.extensions);
    // `backstop.users`, Backstop's own setting, is the narrower one; without
    // it the source's `auth` guards these endpoints as it guards `path`.
    let given = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if !b.users.is_empty() {
        if !b.users.iter().any(|a| a.check(given)) {
            let r = text(401, "Not authorized\n");
            return refuse_credentials(st, r, "Basic realm=\"Restricted Area\"");
        }
    } else if let Some((auth, challenge)) = &st.auth
        && !auth.check(given)
    {
        let r = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
        return refuse_credentials(st, r, challenge);
    }
    let body = match body_or_refusal(st, &parts.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let metrics = match parse(b, &body) {
        Ok(metrics) => metrics,
        Err(refusal) => {
            let reason = match refusal {
                Refusal::JsonRequired => RejectReason::Malformed,
                _ => RejectReason::BadRequest,
            };
            m.reject(reason, 1);
            return text(refusal.status(), refusal.body());
        }
    };
    let events = metrics
        .iter()
        .map(|x| x.event(b.api_key.as_deref()))
        .collect();
    match st
        .ctx
        .send_request(events, st.max_wait, st.acknowledgements, sender)
        .await
    {
        Ok(()) => text(200, "ok"),
        Err(Refused::Shed) => {
            let mut r = text(429, "a destination is applying backpressure; retry later");
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(super::retry_after_secs(st.max_wait)),
            );
            r
        }
        Err(Refused::Shutdown) => text(503, "shutting down"),
        Err(Refused::Failed) => text(500, "a destination refused the metrics"),
        Err(Refused::Dropped) => {
            let mut r = text(
                503,
                "a destination had no room to keep the metrics; send them again",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(super::retry_after_secs(st.max_wait)),
            );
            r
        }
    }
}

/// A 401 with its challenge, counted.
fn refuse_credentials(st: &HttpState, mut r: Response, challenge: &'static str) -> Response {
    st.ctx.metrics.reject(RejectReason::Unauthorized, 1);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// The request's body, or the counted answer refusing it.
async fn body_or_refusal(
    st: &HttpState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    read_body(headers, body, st.max_body, st.body_timeout)
        .await
        .map_err(|(status, reason, msg)| {
            st.ctx.metrics.reject(reason, 1);
            error(status, &msg)
        })
}

pub(crate) type BodyError = (StatusCode, RejectReason, String);

/// The body, decompressed (gzip, zstd), at most `max` bytes either way,
/// received within `timeout` (a lying `Content-Length`, a chunked body that
/// never ends: answered 408 and counted `timeout`).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let raw = tokio::time::timeout(timeout, gather(body, max))
        .await
        .map_err(|_| {
            (
                StatusCode::REQUEST_TIMEOUT,
                RejectReason::Timeout,
                format!("the body did not arrive within {timeout:?}"),
            )
        })??;
    let compression = match encoding.as_deref() {
        None | Some("identity") | Some("") => return Ok(raw),
        Some("gzip") | Some("x-gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                RejectReason::BadRequest,
                format!("unsupported Content-Encoding `{other}` (use gzip, zstd or none)"),
            ));
        }
    };
    let name = compression.as_str();
    match compression.decompress(&raw, max) {
        Ok(body) => Ok(body),
        Err(Inflate::Invalid(e)) => Err((
            StatusCode::BAD_REQUEST,
            RejectReason::BadRequest,
            format!("invalid {name} body: {e}"),
        )),
        Err(Inflate::TooLarge) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            RejectReason::Oversize,
            format!("decompressed body larger than max_body_bytes ({max} bytes)"),
        )),
    }
}

/// The body's frames gathered into a reused buffer (`buffer_pool`), at most
/// `max` bytes: a fresh allocation of a few hundred KB per request went back
/// to the kernel once its events were delivered and was faulted in again by
/// the next request.
async fn gather(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;
    let too_big = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            RejectReason::Oversize,
            format!("body larger than max_body_bytes ({max} bytes)"),
        )
    };
    // A declared length over the limit is refused before a byte is read.
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if declared > max {
        return Err(too_big());
    }
    // Room for what is declared, but not more than a MiB before it arrives:
    // a length is a promise the client need not keep.
    let pool = &buffer_pool::BODIES;
    let mut buf = pool.take(declared.min(1 << 20));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                RejectReason::BadRequest,
                format!("could not read the body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if data.len() > max - buf.len() {
                return Err(too_big());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(pool.share(buf))
}

/// Parse a JSON array or NDJSON body into events; returns how many lines
/// were malformed. `Err` when a JSON array body is itself invalid.
pub fn parse_body(
    body: &Bytes,
    utf8: InvalidUtf8,
    max_events: usize,
    out: &mut Vec<Event>,
) -> Result<u64, Unparsed> {
    let valid = std::str::from_utf8(body).is_ok();
    let replaced;
    let body = match (valid, utf8) {
        (false, InvalidUtf8::Replace) => {
            replaced = Bytes::from(String::from_utf8_lossy(body).into_owned());
            &replaced
        }
        _ => body,
    };
    let first = body.iter().position(|c| !c.is_ascii_whitespace());
    let Some(first) = first else { return Ok(0) };
    if body[first] == b'[' {
        if !valid && utf8 == InvalidUtf8::Reject {
            return Err(Unparsed::Malformed(
                "invalid JSON array: not valid UTF-8".into(),
            ));
        }
        return array(body, max_events, out).map(|()| 0);
    }
    // Lines of a body that is UTF-8 (or made so) are UTF-8: split at
    // newlines and trimmed of ASCII whitespace, so not checked again.
    let line_is_json = if valid || utf8 == InvalidUtf8::Replace {
        is_json_utf8
    } else {
        is_json
    };
    let mut malformed = 0u64;
    let mut lines = 0u64;
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    for end in ends {
        let line = body[start..end].trim_ascii();
        start = end + 1;
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if line_is_json(line) {
            // Only events count: the lines of one pretty-printed document
            // are each malformed, and cost nothing.
            if out.len() >= max_events {
                out.clear();
                return Err(Unparsed::TooMany(max_events));
            }
            out.push(event_from_slice(body, line));
        } else {
            malformed += 1;
        }
    }
    if out.is_empty() && lines > 1 && is_json(body) {
        // One pretty-printed document rather than NDJSON.
        out.push(Event::json(compact_json(body).into()));
        return Ok(0);
    }
    Ok(malformed)
}

/// Why a body gave no events at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Unparsed {
    /// Not JSON where JSON was required: 400, counted `malformed`.
    Malformed(String),
    /// More than `max_events` events: 413, counted `oversize`. Found while
    /// splitting, before they are all built.
    TooMany(usize),
}

/// A JSON array's items as events, refused as soon as it holds more than
/// `max_events` (a visitor, so the items are never all collected first).
fn array(body: &Bytes, max_events: usize, out: &mut Vec<Event>) -> Result<(), Unparsed> {
    use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};
    struct Items<'a> {
        body: &'a Bytes,
        max: usize,
        out: &'a mut Vec<Event>,
        too_many: &'a mut bool,
    }
    impl<'de> Visitor<'de> for Items<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<&'de serde_json::value::RawValue>()? {
                if self.out.len() >= self.max {
                    *self.too_many = true;
                    return Err(A::Error::custom("too many events"));
                }
                self.out
                    .push(event_from_slice(self.body, item.get().as_bytes()));
            }
            Ok(())
        }
    }
    let mut too_many = false;
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = de
        .deserialize_seq(Items {
            body,
            max: max_events,
            out,
            too_many: &mut too_many,
        })
        .and_then(|()| de.end());
    match parsed {
        Ok(()) => Ok(()),
        Err(_) if too_many => {
            out.clear();
            Err(Unparsed::TooMany(max_events))
        }
        Err(e) => {
            out.clear();
            Err(Unparsed::Malformed(format!("invalid JSON array: {e}")))
        }
    }
}

/// An event sharing `body`'s memory; values that span lines are compacted so
/// every event stays one line in NDJSON output.
fn event_from_slice(body: &Bytes, slice: &[u8]) -> Event {
    if memchr::memchr(b'\n', slice).is_some() {
        return Event::json(compact_json(slice).into());
    }
    let offset = slice.as_ptr() as usize - body.as_ptr() as usize;
    Event::json(body.slice(offset..offset + slice.len()))
}

/// Remove whitespace outside strings from valid JSON (key order preserved,
/// unlike a round trip through `serde_json::Value`).
fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_str = false;
    let mut escaped = false;
    for &c in json {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Vec<String>, Result<u64, Unparsed>) {
        let body = Bytes::copy_from_slice(s.as_bytes());
        let mut out = Vec::new();
        let r = parse_body(&body, InvalidUtf8::Reject, 1000, &mut out);
        (
            out.iter()
                .map(|e| String::from_utf8(e.raw.to_vec()).unwrap())
                .collect(),
            r,
        )
    }

    #[test]
    fn more_events_than_allowed_are_refused_before_they_are_all_built() {
        let limit = |body: &str, max| {
            let mut out = Vec::new();
            let r = parse_body(
                &Bytes::copy_from_slice(body.as_bytes()),
                InvalidUtf8::Reject,
                max,
                &mut out,
            );
            (r, out.len())
        };
        assert_eq!(limit("{}\n{}\n{}\n", 3), (Ok(0), 3));
        assert_eq!(limit("{}\n{}\n{}\n{}", 3), (Err(Unparsed::TooMany(3)), 0));
        assert_eq!(limit("[{},{},{}]", 3), (Ok(0), 3));
        assert_eq!(limit("[{},{},{},{}]", 3), (Err(Unparsed::TooMany(3)), 0));
        // A pretty-printed document's lines are not events.
        assert_eq!(limit("{\n\"a\": 1,\n\"b\": 2,\n\"c\": 3\n}", 1), (Ok(0), 1));
        assert!(matches!(limit("[{},", 3).0, Err(Unparsed::Malformed(_))));
    }

    #[test]
    fn ndjson_with_bad_lines() {
        let (evs, r) = parse("{\"a\":1}\r\n{bad\n\n  {\"b\": 2}  \n[1]");
        assert_eq!(evs, vec!["{\"a\":1}", "{\"b\": 2}", "[1]"]);
        assert_eq!(r, Ok(1));
    }

    #[test]
    fn arrays_and_pretty_documents() {
        let (evs, r) = parse("[{\"a\":1}, {\n \"b\" : \"x y\"\n}]");
        assert_eq!(evs, vec!["{\"a\":1}", "{\"b\":\"x y\"}"]);
        assert_eq!(r, Ok(0));
        let (evs, r) = parse("{\n  \"z\": 1,\n  \"a\": \"s \\\" t\"\n}\n");
        assert_eq!(evs, vec!["{\"z\":1,\"a\":\"s \\\" t\"}"]);
        assert_eq!(r, Ok(0));
        let (_, r) = parse("[{\"a\":1},");
        assert!(r.is_err());
        let (evs, r) = parse("   ");
        assert!(evs.is_empty());
        assert_eq!(r, Ok(0));
    }

    #[test]
    fn json_must_be_utf8() {
        let body = Bytes::from_static(b"{\"a\":1}\n{\"c\":\"\xff\xfe\"}\n");
        let mut out = Vec::new();
        assert_eq!(
            parse_body(&body, InvalidUtf8::Reject, 1000, &mut out),
            Ok(1)
        );
        assert_eq!(out.len(), 1);
        out.clear();
        assert_eq!(
            parse_body(&body, InvalidUtf8::Replace, 1000, &mut out),
            Ok(0)
        );
        assert_eq!(&out[1].raw[..], "{\"c\":\"\u{fffd}\u{fffd}\"}".as_bytes());
        let array = Bytes::from_static(b"[{\"c\":\"\xff\"}]");
        assert!(parse_body(&array, InvalidUtf8::Reject, 1000, &mut out).is_err());
        out.clear();
        assert_eq!(
            parse_body(&array, InvalidUtf8::Replace, 1000, &mut out),
            Ok(0)
        );
        assert_eq!(out.len(), 1);
    }
}
