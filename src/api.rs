//! The management API: `GET /metrics` (Prometheus), `GET /health` (200 while
//! the process runs), `GET /ready` (200 only while running, 503 while
//! starting or draining) and `GET /api/v1/status` (JSON: every source, route
//! and destination with its state and counters).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lane::Lane;
use crate::metrics::{DropReason, Metrics, RejectReason, SourceMetrics};

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Running = 1,
    Draining = 2,
    Stopped = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Starting,
            1 => Phase::Running,
            2 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopped => "stopped",
        }
    }
}

pub struct SourceStatus {
    pub id: String,
    pub kind: &'static str,
    pub address: Option<SocketAddr>,
    pub metrics: SourceMetrics,
    pub task: Option<tokio::task::AbortHandle>,
    /// What the source itself reports (a Kafka source's partitions).
    pub detail: Option<crate::sources::Detail>,
}

pub struct RouteStatus {
    pub name: String,
    pub filter: String,
    pub destination: String,
    pub is_final: bool,
    pub events: Counter,
}

pub struct DestinationStatus {
    pub id: String,
    pub kind: String,
    pub lane: Arc<Lane>,
}

/// Everything the API reports, shared with the topology.
pub struct Status {
    pub metrics: Metrics,
    pub phase: AtomicU8,
    pub started: Instant,
    pub sources: Vec<SourceStatus>,
    pub routes: Vec<RouteStatus>,
    pub unmatched: Option<String>,
    pub unmatched_events: Counter,
    pub destinations: Vec<DestinationStatus>,
    /// Output routers: no lane, only their own accounting.
    pub output_routers: Vec<(String, crate::metrics::DestinationMetrics)>,
}

impl Status {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    pub fn to_json(&self) -> Value {
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|s| {
                let finished = s.task.as_ref().is_some_and(|t| t.is_finished());
                let rejected: serde_json::Map<String, Value> = RejectReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(s.metrics.rejected(*r))))
                    .collect();
                let mut v = json!({
                    "id": s.id,
                    "type": s.kind,
                    "address": s.address.map(|a| a.to_string()),
                    "state": if finished { "finished" } else { self.phase().as_str() },
                    "events": s.metrics.events.get(),
                    "rejected": rejected,
                });
                if let (Some(d), Some(o)) = (&s.detail, v.as_object_mut()) {
                    for (k, val) in d() {
                        o.insert(k.to_string(), val);
                    }
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "filter": r.filter,
                    "destination": r.destination,
                    "final": r.is_final,
                    "events": r.events.get(),
                })
            })
            .collect();
        let destinations: Vec<Value> = self
            .destinations
            .iter()
            .map(|d| {
                let m = d.lane.metrics();
                let dropped: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(m.dropped(*r))))
                    .collect();
                let state = if d.lane.peer_failing() {
                    "failing"
                } else if d.lane.is_full() {
                    "backpressure"
                } else if d.lane.is_closed() {
                    "draining"
                } else {
                    "ok"
                };
                json!({
                    "id": d.id,
                    "type": d.kind,
                    "policy": d.lane.policy().as_str(),
                    "state": state,
                    "capacity": d.lane.capacity(),
                    "events": m.events.get(),
                    "sent": m.sent_events.get(),
                    "sent_bytes": m.sent_bytes.get(),
                    "dropped": dropped,
                    "queued": d.lane.depth(),
                    "in_flight_events": d.lane.outstanding(),
                    "persistent_queue": d.lane.disk_status(),
                    "retries": m.retries.get(),
                    "blocked_seconds": m.blocked_seconds.get(),
                })
            })
            .collect();
        json!({
            "state": self.phase().as_str(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "sources": sources,
            "routes": routes,
            "unmatched": {
                "destination": self.unmatched.clone().unwrap_or_else(|| "drop".into()),
                "events": self.unmatched_events.get(),
            },
            "destinations": destinations,
            "output_routers": self.output_routers.iter().map(|(id, m)| {
                let dropped: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(m.dropped(*r))))
                    .collect();
                json!({ "id": id, "events": m.events.get(), "sent": m.sent_events.get(), "dropped": dropped })
            }).collect::<Vec<_>>(),
        })
    }
}

pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

pub fn serve(
    listener: TcpListener,
    status: Arc<Status>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/status", get(status_json))
        .with_state(status);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "API server stopped");
        }
    })
}

async fn metrics(State(s): State<Arc<Status>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn ready(State(s): State<Arc<Status>>) -> Response {
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

async fn status_json(State(s): State<Arc<Status>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.to_json().to_string(),
    )
        .into_response()
}
