//! The management API: `GET /` (the status page), `GET /metrics`
//! (Prometheus), `GET /health` (200 while
//! the process runs), `GET /ready` (200 only while running, 503 while
//! starting or draining), `GET /api/v1/status` (JSON: the configuration in
//! force and every source, route and destination with its state and
//! counters), `POST /api/v1/reload` (reload the configuration file) and
//! `GET /api/v1/tap` (a live sample of events; see `tap.rs`).
//!
//! With `api.auth` set (`{bearer: TOKEN}` or `{basic: {username, password}}`,
//! as on the HTTP source), reloading and tapping need those credentials;
//! the read-only endpoints stay open for scrapers and probes.

mod status;
mod tap;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::listener::{Accepting, Incoming};

pub use tap::DEFAULT_RATE as TAP_DEFAULT_RATE;

pub use status::{
    ConfigInfo, DestinationStatus, LastReload, OutputRouterStatus, Phase, RouteStatus,
    SourceStatus, Status, View, unix_seconds,
};

/// A reload asked for over the API; the answer comes back on `reply`.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<LastReload>,
}

/// What the handlers share.
#[derive(Clone)]
struct Api {
    status: Arc<Status>,
    reload: mpsc::Sender<ReloadRequest>,
    auth: Option<crate::auth::Authenticator>,
}

/// The API's listener: its own accept loop and connection limit, so that a
/// flooded source never makes `/health` and `/metrics` unreachable.
pub async fn bind(
    address: SocketAddr,
    tls: Option<&crate::tls::ServerTlsConfig>,
    stop: CancellationToken,
) -> Result<(SocketAddr, Incoming), String> {
    let tls = tls
        .map(|t| crate::tls::Acceptor::new(t, &[b"http/1.1"]).map_err(|e| format!("api.{e}")))
        .transpose()?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let local = listener.local_addr().unwrap_or(address);
    let incoming = Incoming::start(
        listener,
        Accepting {
            tls,
            rejects: None,
            max_connections: Some(MAX_CONNECTIONS),
            // hyper's header timeout closes idle keep-alive connections;
            // a tap stream may rightly be quiet for long.
            idle_timeout: None,
            stop,
            name: "api".into(),
        },
    );
    Ok((local, incoming))
}

/// Enough for scrapers, probes, a few status pages and taps.
const MAX_CONNECTIONS: usize = 256;

pub fn serve(
    listener: Incoming,
    status: Arc<Status>,
    reload: mpsc::Sender<ReloadRequest>,
    auth: Option<&crate::auth::AuthConfig>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let api = Api {
        status,
        reload,
        auth: auth.map(crate::auth::Authenticator::new),
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/reload", post(reload_handler))
        .route("/api/v1/tap", get(tap::tap))
        .layer(axum::middleware::from_fn(crate::supervise::http_panics))
        .with_state(api);
    tokio::spawn(crate::http_server::serve(listener, app, stop, None))
}

/// With `api.auth`, whether the request carries those credentials.
fn authorized(api: &Api, headers: &HeaderMap) -> bool {
    match &api.auth {
        None => true,
        Some(a) => a.check(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())),
    }
}

fn json_response(code: StatusCode, body: &serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `POST /api/v1/reload`: 200 with the result once applied; 422 with the
/// configuration's `file:line:column` errors if it was refused (the old one
/// keeps running); 500 if parts of it could not start.
async fn reload_handler(State(api): State<Api>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "the credentials of `api.auth` are required"}),
        );
    }
    let (reply, answer) = oneshot::channel();
    if api.reload.send(ReloadRequest { reply }).await.is_err() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "sluice is shutting down"}),
        );
    }
    match answer.await {
        Ok(r) => {
            let code = match r.result {
                "success" => StatusCode::OK,
                "rejected" => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut body = serde_json::to_value(&r).unwrap_or_default();
            body["config"] = api.status.config_json(&api.status.view.load().config);
            json_response(code, &body)
        }
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "sluice is shutting down"}),
        ),
    }
}

async fn metrics(State(api): State<Api>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        api.status.metrics.encode_as(format),
    )
        .into_response()
}

/// The status page: one self-contained HTML file (no CDN, no build step)
/// drawing the topology from `/api/v1/status`, refreshed every second.
const PAGE: &str = include_str!("page.html");

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn ready(State(api): State<Api>) -> Response {
    let s = &api.status;
    let phase = s.phase();
    let failed = s.metrics.failed_components();
    if failed > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed: {failed} component task(s) ended unexpectedly; see the log\n"),
        )
            .into_response();
    }
    let code = if phase == Phase::Running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", phase.as_str())).into_response()
}

async fn status_json(State(api): State<Api>) -> Response {
    let mut json = api.status.to_json();
    crate::config::redact::in_force().redact_json(&mut json);
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}
