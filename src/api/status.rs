//! What `/api/v1/status` reports: the process's phase, the configuration in
//! force (its version and load time), and every source, route and
//! destination with its state and counters. A reload swaps the view whole.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};

use crate::lane::{Books, Lane};
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

#[derive(Clone)]
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

/// An output router: its own accounting and its rules.
#[derive(Clone)]
pub struct OutputRouterStatus {
    pub id: String,
    pub books: Arc<Books>,
    pub rules: Vec<RouteStatus>,
    /// Where events no final rule took go (`None`: dropped).
    pub default: Option<String>,
}

/// The configuration in force.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    /// 1 at start, one more for each reload that changed anything.
    pub version: u64,
    pub loaded_at: SystemTime,
    /// The file, or `(built-in default)` (`config::DEFAULT_CONFIG_NAME`).
    pub file: String,
}

/// The topology as one configuration built it.
pub struct View {
    pub config: ConfigInfo,
    pub sources: Vec<SourceStatus>,
    pub routes: Vec<RouteStatus>,
    pub unmatched: Option<String>,
    pub unmatched_events: Counter,
    pub destinations: Vec<DestinationStatus>,
    /// Output routers: no lane, only their own accounting.
    pub output_routers: Vec<OutputRouterStatus>,
    pub pipelines: Vec<crate::pipeline::PipelineStatus>,
}

/// How the last reload went, for the status page and `sluice top`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    /// `success`, `rejected` (nothing changed) or `failed` (see `errors`).
    pub result: &'static str,
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub errors: Vec<String>,
}

/// Everything the API reports, shared with the topology.
pub struct Status {
    pub metrics: Metrics,
    /// Every tap point, for `GET /api/v1/tap`.
    pub taps: crate::tap::Taps,
    pub phase: AtomicU8,
    pub started: Instant,
    pub view: ArcSwap<View>,
    pub last_reload: Mutex<Option<LastReload>>,
}

pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn dropped_json(b: &Books) -> serde_json::Map<String, Value> {
    DropReason::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), json!(b.dropped(*r))))
        .collect()
}

fn route_json(r: &RouteStatus) -> Value {
    json!({
        "name": r.name,
        "filter": r.filter,
        "destination": r.destination,
        "final": r.is_final,
        "events": r.events.get(),
    })
}

impl Status {
    pub fn new(metrics: Metrics, taps: crate::tap::Taps, view: View) -> Status {
        Status {
            metrics,
            taps,
            phase: AtomicU8::new(Phase::Starting as u8),
            started: Instant::now(),
            view: ArcSwap::from_pointee(view),
            last_reload: Mutex::new(None),
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    pub fn set_last_reload(&self, r: LastReload) {
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    /// The configuration in force and how the last reload went.
    pub fn config_json(&self, config: &ConfigInfo) -> Value {
        let last_reload = self
            .last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        json!({
            "version": config.version,
            "loaded_at": unix_seconds(config.loaded_at),
            "file": config.file,
            "last_reload": last_reload,
        })
    }

    pub fn to_json(&self) -> Value {
        let view = self.view.load();
        let sources: Vec<Value> = view
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
        let routes: Vec<Value> = view.routes.iter().map(route_json).collect();
        // The lane locks first (the disk status), then every book at one
        // instant, so `events = sent + dropped + queued + in_flight_events
        // + persistent_queue.events` holds in each answer.
        let disks: Vec<_> = view
            .destinations
            .iter()
            .map(|d| d.lane.disk_status())
            .collect();
        let (books, group_books) = self.metrics.books_lock().read_all(|| {
            let d: Vec<_> = view
                .destinations
                .iter()
                .map(|d| (d.lane.books().counts(), dropped_json(d.lane.books())))
                .collect();
            let g: Vec<_> = view
                .output_routers
                .iter()
                .map(|g| (g.books.counts(), dropped_json(&g.books)))
                .collect();
            (d, g)
        });
        let destinations: Vec<Value> = view
            .destinations
            .iter()
            .zip(books)
            .zip(disks)
            .map(|((d, (c, dropped)), mut disk)| {
                let m = d.lane.metrics();
                let state = if d.lane.peer_failing() {
                    "failing"
                } else if d.lane.is_full() {
                    "backpressure"
                } else if d.lane.is_closed() {
                    "draining"
                } else {
                    "ok"
                };
                if let Some(disk) = disk.as_mut() {
                    disk.events = c.on_disk.max(0) as u64;
                }
                json!({
                    "id": d.id,
                    "type": d.kind,
                    "policy": d.lane.policy().as_str(),
                    "state": state,
                    "capacity": d.lane.capacity(),
                    "events": c.events,
                    "sent": c.sent,
                    "sent_bytes": c.sent_bytes,
                    "dropped": dropped,
                    "queued": c.queued,
                    "in_flight_events": c.in_flight,
                    "persistent_queue": disk,
                    "retries": m.retries.get(),
                    "blocked_seconds": m.blocked_seconds.get(),
                    "endpoints": self.metrics.endpoints_of(&d.id),
                })
            })
            .collect();
        json!({
            "state": self.phase().as_str(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "config": self.config_json(&view.config),
            "sources": sources,
            "routes": routes,
            "unmatched": {
                "destination": view.unmatched.clone().unwrap_or_else(|| "drop".into()),
                "events": view.unmatched_events.get(),
            },
            "destinations": destinations,
            "pipelines": view.pipelines.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
            "output_routers": view.output_routers.iter().zip(group_books).map(|(g, (c, dropped))| {
                json!({
                    "id": g.id,
                    "events": c.events,
                    "sent": c.sent,
                    "dropped": dropped,
                    "rules": g.rules.iter().map(route_json).collect::<Vec<_>>(),
                    "default": g.default.clone().unwrap_or_else(|| "drop".into()),
                })
            }).collect::<Vec<_>>(),
        })
    }
}
