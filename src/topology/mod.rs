//! Builds the graph from a validated config, runs it, reloads it, and shuts
//! it down.
//!
//! Start order: metrics, one lane and driver per destination, the router,
//! the API (so `/health` answers while starting), then the sources, which
//! bind their sockets before sluice reports ready.
//!
//! Shutdown (SIGTERM, SIGINT, or every finite source finished):
//! 1. `/ready` turns 503 and sources stop taking input;
//! 2. lanes close; drivers flush and deliver what is queued;
//! 3. at `shutdown_timeout` whatever is still undelivered is counted as
//!    dropped with reason `shutdown`, so `events = sent + dropped` holds at
//!    exit — except on `persistent_queue` destinations, whose undelivered
//!    events are written to (or stay in) the disk queue and count as queued.
//!
//! Reloads are in `reload.rs`.

mod build;
mod reload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ConfigInfo, Phase, ReloadRequest, Status};
use crate::config::Config;
use crate::destinations;
use crate::lane::{Books, Lane, Spill};
use crate::metrics::{DropReason, Metrics};
use crate::pipeline::Flush;
use crate::pipeline::state::States;
use crate::router::RouterHandle;
use crate::sources;
use crate::tap::Taps;
use build::{LiveDestination, LiveSource};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Destination(#[from] destinations::DestinationError),
    #[error("route `{route}`: {message}")]
    Route { route: String, message: String },
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::BuildError),
    #[error("destination `{destination}`: persistent queue: {message}")]
    Queue {
        destination: String,
        message: String,
    },
    #[error("API: {0}")]
    Api(String),
    #[error("telemetry: {0}")]
    Telemetry(String),
}

/// Per-destination accounting at exit.
#[derive(Debug, Clone)]
pub struct DestinationReport {
    pub id: String,
    pub events: u64,
    pub sent: u64,
    pub dropped: Vec<(&'static str, u64)>,
    pub queued: u64,
}

impl DestinationReport {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    /// `backpressure=12 shutdown=3`, or `none`.
    pub fn dropped_by_reason(&self) -> String {
        if self.dropped.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self
            .dropped
            .iter()
            .map(|(why, n)| format!("{why}={n}"))
            .collect();
        parts.join(" ")
    }

    /// `events = sent + dropped + queued`.
    pub fn balanced(&self) -> bool {
        self.events == self.sent + self.dropped_total() + self.queued
    }
}

/// How long a source may take to finish after the drain (a commit).
const FINISH_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A lane a reload took out of the graph (its destination was removed, or
/// its lane replaced), finishing in the background: it closes once no
/// route call can reach it, its driver delivers what it holds (a
/// persistent queue keeps the rest on disk), then it is finished.
struct Retired {
    id: String,
    lane: Arc<Lane>,
    done: JoinHandle<()>,
}

pub struct Running {
    status: Arc<Status>,
    metrics: Metrics,
    taps: Taps,
    /// Stateful pipeline functions' state, kept across reloads.
    states: States,
    api_addr: Option<SocketAddr>,
    router: RouterHandle,
    /// The pipelines' clock (`RouterHandle::run_clock`).
    clock: JoinHandle<()>,
    config: Config,
    sources: Vec<LiveSource>,
    /// Sources a reload replaced that still serve connections they had
    /// (a TCP listener rebound with new settings), by id.
    draining_sources: Vec<(String, CancellationToken, JoinHandle<()>)>,
    /// Sources' work after the drain (see `RunningSource::finishing`).
    finishing: Vec<JoinHandle<()>>,
    /// Destinations with a lane, in config order.
    dests: Vec<LiveDestination>,
    retired: Vec<Retired>,
    /// Output routers' own accounting (they have no lane).
    groups: Vec<api::OutputRouterStatus>,
    api_task: Option<JoinHandle<()>>,
    reload_requests: Option<mpsc::Receiver<ReloadRequest>>,
    /// sluice's own telemetry over OTLP, and what ends it (after the drain,
    /// with one last export of the final counts).
    telemetry: Option<(JoinHandle<()>, CancellationToken)>,
    /// Sources stop taking input.
    shutdown: CancellationToken,
    /// Drivers give up (the shutdown deadline).
    stop: CancellationToken,
    api_stop: CancellationToken,
}

impl Running {
    pub async fn start(config: Config) -> Result<Running, TopologyError> {
        config.log_warnings();
        let metrics = Metrics::new();
        let taps = Taps::default();
        let states = States::default();
        let shutdown = CancellationToken::new();
        let stop = CancellationToken::new();
        let api_stop = CancellationToken::new();
        // Whatever fails below, drivers already started must end.
        let cancel = |e: TopologyError| {
            shutdown.cancel();
            stop.cancel();
            e
        };
        // Every lane first: a driver may dead-letter into another's lane.
        let mut lanes = HashMap::new();
        for d in &config.destinations {
            if d.config.common().is_some() {
                let lane = build::open_lane(&config, d, &metrics, false)
                    .await
                    .map_err(cancel)?;
                lanes.insert(d.id.clone(), lane);
            }
        }
        let mut dests = Vec::new();
        for d in &config.destinations {
            let (Some(lane), Some(key)) = (lanes.get(&d.id), build::lane_key(&config, d)) else {
                continue;
            };
            let dead_letter = d.config.dead_letter().and_then(|t| lanes.get(t));
            let (prepared, retire) =
                build::prepare_driver(d, lane, dead_letter, &stop, &metrics, &config.data_dir)
                    .await
                    .map_err(cancel)?;
            dests.push(LiveDestination {
                id: d.id.clone(),
                kind: d.kind.clone(),
                fingerprint: d.fingerprint.clone(),
                lane_key: key,
                dead_letter: d.config.dead_letter().map(str::to_string),
                lane: lane.clone(),
                driver: prepared.spawn(&metrics),
                retire,
            });
        }
        let graph = build::Graph::new(&config, &lanes);
        let (router, route_status, groups) =
            build::build_router(&config, &graph, &metrics, &taps, &states).map_err(cancel)?;
        let router = RouterHandle::new(router);
        let clock = router.run_clock(shutdown.clone());

        let api_listener = if config.api.enabled {
            let tls = config.api.tls.as_ref().map(|t| &t.value);
            let (address, l) = api::bind(config.api.address, tls, api_stop.clone())
                .await
                .map_err(|e| {
                    stop.cancel();
                    TopologyError::Api(e)
                })?;
            tracing::info!(%address, tls = tls.is_some(), "API listening");
            Some((address, l))
        } else {
            None
        };
        let api_addr = api_listener.as_ref().map(|l| l.0);

        let mut sources = Vec::new();
        let mut finishing = Vec::new();
        for s in &config.sources {
            let (live, finish) = match build::start_source(
                s,
                &router,
                &metrics,
                &taps,
                &shutdown,
                false,
                &config.data_dir,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => return Err(cancel(e)),
            };
            finishing.extend(finish);
            sources.push(live);
        }

        let info = ConfigInfo {
            version: 1,
            loaded_at: SystemTime::now(),
            file: config.source_name.clone(),
        };
        let view = build::view(
            &config,
            info,
            &sources,
            &dests,
            route_status,
            groups.clone(),
            &metrics,
        );
        let status = Arc::new(Status::new(metrics.clone(), taps.clone(), view));
        let (reload_tx, reload_rx) = mpsc::channel(8);
        let api_task = api_listener.map(|(_, l)| {
            api::serve(
                l,
                status.clone(),
                reload_tx,
                config.api.auth.as_ref().map(|a| &a.value),
                api_stop.clone(),
            )
        });
        let telemetry = match start_telemetry(&config, &metrics) {
            Ok(t) => t,
            Err(e) => {
                api_stop.cancel();
                return Err(cancel(e));
            }
        };
        // Last, so that an error above leaves no task holding a queue's lock.
        for d in &dests {
            Spill::start(&d.lane, stop.clone());
        }
        status.set_phase(Phase::Running);
        tracing::info!(
            sources = config.sources.len(),
            routes = config.routes.len(),
            destinations = config.destinations.len(),
            api = %api_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            "sluice is running"
        );
        Ok(Running {
            status,
            metrics,
            taps,
            states,
            api_addr,
            router,
            clock,
            config,
            sources,
            draining_sources: Vec::new(),
            finishing,
            dests,
            retired: Vec::new(),
            groups,
            api_task,
            reload_requests: Some(reload_rx),
            telemetry,
            shutdown,
            stop,
            api_stop,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Reloads asked for over the API (`POST /api/v1/reload`); taken once,
    /// by whoever runs the reload loop.
    pub fn take_reload_requests(&mut self) -> Option<mpsc::Receiver<ReloadRequest>> {
        self.reload_requests.take()
    }

    /// The bound address of a listening source (port 0 resolved).
    pub fn source_addr(&self, id: &str) -> Option<SocketAddr> {
        self.sources
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.address)
    }

    /// Resolves once every source has ended by itself. Never resolves if any
    /// source is a listener (those run until shutdown).
    pub async fn sources_finished(&mut self) {
        if !self.sources.iter().all(|s| s.finite) {
            return std::future::pending().await;
        }
        // Take each handle as it completes: a finished JoinHandle must not
        // be polled again by `shutdown`.
        for s in &mut self.sources {
            if let Some(t) = s.task.as_mut() {
                let _ = t.await;
                s.task = None;
            }
        }
    }

    /// Stop sources, drain lanes until `shutdown_timeout`, count the rest as
    /// dropped, and report each destination's accounting.
    pub async fn shutdown(self) -> Vec<DestinationReport> {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_timeout;
        self.status.set_phase(Phase::Draining);
        tracing::info!(timeout = ?self.config.shutdown_timeout, "shutting down: stopping sources");
        self.shutdown.cancel();
        let mut tasks: Vec<JoinHandle<()>> =
            self.sources.into_iter().filter_map(|s| s.task).collect();
        tasks.extend(self.draining_sources.into_iter().map(|(_, _, t)| t));
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
        // Nothing more comes in: what pipelines hold (open aggregate
        // windows) goes out now, before the lanes close.
        let _ = self.clock.await;
        let router = self.router.current();
        if router.holds() {
            let flushed =
                tokio::time::timeout_at(deadline, router.flush(Flush::All, None, &self.stop)).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::warn!(
                    "shutdown timeout reached before open aggregate windows found room in their destinations"
                );
            }
        }
        router.save_pipelines();
        drop(router);
        tracing::info!("draining destinations");
        let mut timed_out = false;
        let hard_stop = |timed_out: &mut bool, what: &str| {
            if !*timed_out {
                *timed_out = true;
                tracing::warn!(
                    "shutdown timeout reached {what}: counting undelivered events as dropped"
                );
                self.stop.cancel();
            }
        };
        // Lanes a reload retired are closed already: their drivers first.
        for r in &self.retired {
            r.lane.close();
        }
        let retired: Vec<(String, Arc<Lane>)> = self
            .retired
            .iter()
            .map(|r| (r.id.clone(), r.lane.clone()))
            .collect();
        for r in self.retired {
            let mut t = r.done;
            if !timed_out && tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                hard_stop(&mut timed_out, "while retired destinations drained");
            }
            if timed_out {
                let _ = t.await;
            }
        }
        let index: HashMap<String, usize> = self
            .dests
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        let order = close_order(&self.dests, &index);
        type Driver = Option<JoinHandle<()>>;
        let (lanes, mut drivers): (Vec<(String, Arc<Lane>)>, Vec<Driver>) = self
            .dests
            .into_iter()
            .map(|d| ((d.id, d.lane), Some(d.driver)))
            .unzip();
        for group in &order {
            for &i in group {
                lanes[i].1.close();
            }
            for &i in group {
                let Some(mut t) = drivers[i].take() else {
                    continue;
                };
                if !timed_out && tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                    hard_stop(&mut timed_out, "");
                }
                if timed_out {
                    let _ = t.await;
                }
            }
            // The drivers are done: persistent queues write what they were
            // handed back, record their position and sync.
            for &i in group {
                let finish = lanes[i].1.finish();
                tokio::pin!(finish);
                if !timed_out
                    && tokio::time::timeout_at(deadline, &mut finish)
                        .await
                        .is_err()
                {
                    hard_stop(&mut timed_out, "while writing persistent queues");
                }
                if timed_out {
                    finish.await;
                }
            }
        }
        // Every acknowledgement has resolved now that the drivers are done:
        // sources finish what depends on them (a Kafka source's last commit).
        for mut t in self.finishing {
            let grace = tokio::time::Instant::now() + FINISH_GRACE;
            if tokio::time::timeout_at(grace.max(deadline), &mut t)
                .await
                .is_err()
            {
                tracing::warn!("a source did not finish in time");
                t.abort();
            }
        }
        self.status.set_phase(Phase::Stopped);
        let reports = reports(&lanes, &retired, &self.groups);
        for r in &reports {
            let by_reason = r.dropped_by_reason();
            if r.balanced() {
                tracing::info!(
                    destination = %r.id,
                    events = r.events,
                    sent = r.sent,
                    dropped = r.dropped_total(),
                    dropped_by_reason = %by_reason,
                    queued = r.queued,
                    "final accounting"
                );
            } else {
                tracing::error!(
                    destination = %r.id,
                    events = r.events,
                    sent = r.sent,
                    dropped = r.dropped_total(),
                    dropped_by_reason = %by_reason,
                    queued = r.queued,
                    "accounting does not balance: events != sent + dropped + queued"
                );
            }
        }
        if let Some((task, stop)) = self.telemetry {
            stop.cancel();
            let last = tokio::time::Instant::now() + TELEMETRY_GRACE;
            if tokio::time::timeout_at(last, task).await.is_err() {
                tracing::warn!("telemetry: the last export did not finish in time");
            }
        }
        self.api_stop.cancel();
        if let Some(t) = self.api_task {
            let _ = t.await;
        }
        reports
    }
}

/// One report per destination id: the counters are the id's (they carry
/// on across reloads), and what is still queued is summed over its current
/// lane and any a reload retired (a persistent queue left on disk).
fn reports(
    lanes: &[(String, Arc<Lane>)],
    retired: &[(String, Arc<Lane>)],
    groups: &[api::OutputRouterStatus],
) -> Vec<DestinationReport> {
    let mut out: Vec<DestinationReport> = Vec::new();
    for (id, lane) in lanes.iter().chain(retired) {
        match out.iter_mut().find(|r| &r.id == id) {
            Some(r) => r.queued += lane.pending() as u64,
            None => out.push(report_books(id, lane.books(), lane.pending() as u64)),
        }
    }
    out.extend(groups.iter().map(|g| report_books(&g.id, &g.books, 0)));
    out
}

/// How long the last telemetry export may take at shutdown.
const TELEMETRY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// sluice's own telemetry, when `telemetry.otlp` is set.
fn start_telemetry(
    config: &Config,
    metrics: &Metrics,
) -> Result<Option<(JoinHandle<()>, CancellationToken)>, TopologyError> {
    #[cfg(feature = "otlp")]
    crate::telemetry::logs::set_active(false);
    let Some(otlp) = &config.telemetry.otlp else {
        return Ok(None);
    };
    #[cfg(feature = "otlp")]
    {
        let stop = CancellationToken::new();
        let task = crate::telemetry::start(otlp, metrics, stop.clone())
            .map_err(TopologyError::Telemetry)?;
        Ok(Some((task, stop)))
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (otlp, metrics);
        Err(TopologyError::Telemetry(
            "this sluice was built without the `otlp` feature".into(),
        ))
    }
}

/// Destinations grouped by dead-letter depth: those nobody dead-letters into
/// first, then the ones only they feed, and so on. (Validation rejects cycles.)
fn close_order(dests: &[LiveDestination], index: &HashMap<String, usize>) -> Vec<Vec<usize>> {
    let target: Vec<Option<usize>> = dests
        .iter()
        .map(|d| d.dead_letter.as_ref().and_then(|t| index.get(t).copied()))
        .collect();
    let n = target.len();
    let mut depth = vec![0usize; n];
    // Longest chain into each destination; chains are at most n long.
    for _ in 0..n {
        for (i, t) in target.iter().enumerate() {
            if let Some(t) = *t
                && t != i
            {
                depth[t] = depth[t].max(depth[i] + 1).min(n);
            }
        }
    }
    let levels = depth.iter().copied().max().unwrap_or(0) + 1;
    let mut groups = vec![Vec::new(); levels];
    for (i, d) in depth.iter().enumerate() {
        groups[*d].push(i);
    }
    groups
}

fn report_books(id: &str, b: &Books, queued: u64) -> DestinationReport {
    DestinationReport {
        id: id.to_string(),
        events: b.events(),
        sent: b.sent(),
        dropped: DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), b.dropped(*r)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        queued,
    }
}
