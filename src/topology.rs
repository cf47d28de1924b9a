//! Builds the graph from a validated config, runs it, and shuts it down.
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, DestinationStatus, Phase, RouteStatus, SourceStatus, Status};
use crate::config::Config;
use crate::destinations::{self, Wiring};
use crate::driver::DeadLetter;
use crate::expr::{FieldSet, Program};
use crate::lane::Spill;
use crate::lane::{Lane, LanePolicy};
use crate::metrics::{DestinationMetrics, DropReason, Metrics};
use crate::queue::QueueSettings;
use crate::router::{Group, Route, Router, Target};
use crate::sources::{self, SourceContext};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Destination(#[from] destinations::DestinationError),
    #[error("route `{route}`: {message}")]
    Route { route: String, message: String },
    #[error("destination `{destination}`: persistent queue: {message}")]
    Queue {
        destination: String,
        message: String,
    },
    #[error("API: cannot listen on {address}: {source}")]
    Api {
        address: SocketAddr,
        source: std::io::Error,
    },
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

    /// `events = sent + dropped + queued`.
    pub fn balanced(&self) -> bool {
        self.events == self.sent + self.dropped_total() + self.queued
    }
}

/// How long a source may take to finish after the drain (a commit).
const FINISH_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Running {
    status: Arc<Status>,
    api_addr: Option<SocketAddr>,
    source_addrs: HashMap<String, SocketAddr>,
    source_tasks: Vec<JoinHandle<()>>,
    /// Sources' work after the drain (see `RunningSource::finishing`).
    finishing: Vec<JoinHandle<()>>,
    finite: Option<Vec<JoinHandle<()>>>,
    drivers: Vec<JoinHandle<()>>,
    lanes: Vec<Arc<Lane>>,
    /// Output routers' own accounting (they have no lane).
    groups: Vec<(String, DestinationMetrics)>,
    /// Lane indices grouped by when they may close: a dead-letter
    /// destination closes only after every destination that feeds it.
    close_order: Vec<Vec<usize>>,
    api_task: Option<JoinHandle<()>>,
    /// sluice's own telemetry over OTLP, and what ends it (after the drain,
    /// with one last export of the final counts).
    telemetry: Option<(JoinHandle<()>, CancellationToken)>,
    /// Sources stop taking input.
    shutdown: CancellationToken,
    /// Drivers give up (the shutdown deadline).
    stop: CancellationToken,
    api_stop: CancellationToken,
    shutdown_timeout: std::time::Duration,
}

impl Running {
    pub async fn start(config: Config) -> Result<Running, TopologyError> {
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let stop = CancellationToken::new();
        let api_stop = CancellationToken::new();
        // Whatever fails below, drivers already started must end.
        let cancel = |e: TopologyError| {
            shutdown.cancel();
            stop.cancel();
            e
        };
        let graph = open_lanes(&config, &metrics).await.map_err(cancel)?;
        let drivers = start_drivers(&config, &graph, &metrics, &stop)
            .await
            .map_err(cancel)?;
        let close_order = close_order(&config, &graph.index);
        let (router, route_status, groups) =
            build_router(&config, &graph, &metrics).map_err(cancel)?;
        let unmatched_events = router.unmatched_counter();
        let router = Arc::new(router);
        let lanes = graph.lanes;
        let dest_status = graph.status;

        let api_listener = if config.api.enabled {
            let l = api::bind(config.api.address).await.map_err(|source| {
                stop.cancel();
                TopologyError::Api {
                    address: config.api.address,
                    source,
                }
            })?;
            Some(l)
        } else {
            None
        };
        let api_addr = api_listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = api_addr {
            tracing::info!(address = %a, "API listening");
        }

        let mut source_tasks = Vec::new();
        let mut source_status = Vec::new();
        let mut source_addrs = HashMap::new();
        let mut finite = Vec::new();
        let mut finishing = Vec::new();
        let all_finite = config.sources.iter().all(|s| s.config.is_finite());
        for s in &config.sources {
            let ctx = SourceContext {
                id: s.id.as_str().into(),
                router: router.clone(),
                metrics: metrics.source(&s.id),
                shutdown: shutdown.clone(),
                registry: metrics.clone(),
            };
            let source_metrics = ctx.metrics.clone();
            let running = match sources::start(&s.config, ctx).await {
                Ok(r) => r,
                Err(e) => {
                    shutdown.cancel();
                    stop.cancel();
                    return Err(e.into());
                }
            };
            if let Some(a) = running.local_addr {
                source_addrs.insert(s.id.clone(), a);
            }
            source_status.push(SourceStatus {
                id: s.id.clone(),
                kind: running.kind,
                address: running.local_addr,
                metrics: source_metrics,
                task: Some(running.task.abort_handle()),
                detail: running.detail,
            });
            finishing.extend(running.finishing);
            if all_finite {
                finite.push(running.task);
            } else {
                source_tasks.push(running.task);
            }
        }

        let status = Arc::new(Status {
            metrics,
            phase: AtomicU8::new(Phase::Starting as u8),
            started: Instant::now(),
            sources: source_status,
            routes: route_status,
            unmatched: config.unmatched.clone(),
            unmatched_events,
            destinations: dest_status,
            output_routers: groups.clone(),
        });
        let api_task = api_listener.map(|l| api::serve(l, status.clone(), api_stop.clone()));
        let telemetry = match start_telemetry(&config, &status.metrics) {
            Ok(t) => t,
            Err(e) => {
                shutdown.cancel();
                stop.cancel();
                api_stop.cancel();
                return Err(e);
            }
        };
        // Last, so that an error above leaves no task holding a queue's lock.
        for lane in &lanes {
            Spill::start(lane, stop.clone());
        }
        status.set_phase(Phase::Running);
        tracing::info!(
            sources = config.sources.len(),
            routes = config.routes.len(),
            destinations = config.destinations.len(),
            api = ?api_addr,
            "sluice is running"
        );
        Ok(Running {
            status,
            api_addr,
            source_addrs,
            source_tasks,
            finishing,
            finite: all_finite.then_some(finite),
            drivers,
            lanes,
            groups,
            close_order,
            api_task,
            telemetry,
            shutdown,
            stop,
            api_stop,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.status.metrics
    }

    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// The bound address of a listening source (port 0 resolved).
    pub fn source_addr(&self, id: &str) -> Option<SocketAddr> {
        self.source_addrs.get(id).copied()
    }

    /// Resolves once every source has ended by itself. Never resolves if any
    /// source is a listener (those run until shutdown).
    pub async fn sources_finished(&mut self) {
        match self.finite.as_mut() {
            Some(tasks) => {
                // Remove each handle as it completes: a finished JoinHandle
                // must not be polled again by `shutdown`.
                while let Some(t) = tasks.last_mut() {
                    let _ = t.await;
                    tasks.pop();
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Stop sources, drain lanes until `shutdown_timeout`, count the rest as
    /// dropped, and report each destination's accounting.
    pub async fn shutdown(self) -> Vec<DestinationReport> {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        self.status.set_phase(Phase::Draining);
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down: stopping sources");
        self.shutdown.cancel();
        let mut sources = self.source_tasks;
        sources.extend(self.finite.unwrap_or_default());
        for mut t in sources {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
        tracing::info!("draining destinations");
        let mut drivers: Vec<Option<JoinHandle<()>>> = self.drivers.into_iter().map(Some).collect();
        let mut timed_out = false;
        for group in &self.close_order {
            for &i in group {
                self.lanes[i].close();
            }
            for &i in group {
                let Some(mut t) = drivers[i].take() else {
                    continue;
                };
                if !timed_out && tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                    timed_out = true;
                    tracing::warn!(
                        "shutdown timeout reached: counting undelivered events as dropped"
                    );
                    self.stop.cancel();
                }
                if timed_out {
                    let _ = t.await;
                }
            }
            // The drivers are done: persistent queues write what they were
            // handed back, record their position and sync.
            for &i in group {
                let finish = self.lanes[i].finish();
                tokio::pin!(finish);
                if !timed_out
                    && tokio::time::timeout_at(deadline, &mut finish)
                        .await
                        .is_err()
                {
                    timed_out = true;
                    tracing::warn!("shutdown timeout reached while writing persistent queues");
                    self.stop.cancel();
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
        let mut reports: Vec<DestinationReport> = self.lanes.iter().map(|l| report(l)).collect();
        reports.extend(self.groups.iter().map(|(id, m)| report_metrics(id, m, 0)));
        for r in &reports {
            if r.balanced() {
                tracing::info!(
                    destination = %r.id,
                    events = r.events,
                    sent = r.sent,
                    dropped = r.dropped_total(),
                    queued = r.queued,
                    "final accounting"
                );
            } else {
                tracing::error!(
                    destination = %r.id,
                    events = r.events,
                    sent = r.sent,
                    dropped = r.dropped_total(),
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

/// How long the last telemetry export may take at shutdown.
const TELEMETRY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// sluice's own telemetry, when `telemetry.otlp` is set.
fn start_telemetry(
    config: &Config,
    metrics: &Metrics,
) -> Result<Option<(JoinHandle<()>, CancellationToken)>, TopologyError> {
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

/// Open (and recover) a destination's disk queue and build its lane. What
/// a previous run left is counted as received, so that accounting balances
/// when it is delivered; corrupt records found now are counted as dropped.
async fn open_persistent(
    id: &str,
    settings: QueueSettings,
    capacity: usize,
    metrics: &Metrics,
) -> Result<Lane, TopologyError> {
    let dir = settings.dir.clone();
    let gauges = metrics.persistent_queue(id);
    let opened = tokio::task::spawn_blocking(move || Spill::open(settings, capacity, gauges))
        .await
        .map_err(|e| TopologyError::Queue {
            destination: id.to_string(),
            message: e.to_string(),
        })?;
    let (opened, report) = opened.map_err(|e| TopologyError::Queue {
        destination: id.to_string(),
        message: e.to_string(),
    })?;
    let m = metrics.destination(id);
    m.events.inc_by(report.events + report.corrupt_events);
    m.drop_events(DropReason::Corrupt, report.corrupt_events);
    if report.events > 0 {
        tracing::info!(
            destination = id,
            dir = %dir.display(),
            events = report.events,
            bytes = report.bytes,
            "persistent queue: delivering events queued by a previous run"
        );
    }
    if report.torn_bytes > 0 {
        tracing::warn!(
            destination = id,
            bytes = report.torn_bytes,
            "persistent queue: truncated a write cut short by a crash (never acknowledged)"
        );
    }
    if report.corrupt_events > 0 || report.unreadable_bytes > 0 || !report.quarantined.is_empty() {
        tracing::error!(
            destination = id,
            corrupt_events = report.corrupt_events,
            unreadable_bytes = report.unreadable_bytes,
            quarantined = ?report.quarantined,
            "persistent queue: damaged records skipped and counted (reason=corrupt); damaged segments moved to quarantine/"
        );
    }
    Ok(Lane::persistent(id, capacity, m, opened))
}

/// Destinations grouped by dead-letter depth: those nobody dead-letters into
/// first, then the ones only they feed, and so on. (Validation rejects cycles.)
fn close_order(config: &Config, index: &HashMap<String, usize>) -> Vec<Vec<usize>> {
    // Lane order: the destinations that have lanes (not output routers).
    let target: Vec<Option<usize>> = config
        .destinations
        .iter()
        .filter(|d| index.contains_key(&d.id))
        .map(|d| d.config.dead_letter().and_then(|t| index.get(t).copied()))
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

fn report(lane: &Lane) -> DestinationReport {
    report_metrics(lane.id(), lane.metrics(), lane.pending() as u64)
}

fn report_metrics(id: &str, m: &DestinationMetrics, queued: u64) -> DestinationReport {
    DestinationReport {
        id: id.to_string(),
        events: m.events.get(),
        sent: m.sent_events.get(),
        dropped: DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), m.dropped(*r)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        queued,
    }
}

/// The destinations' lanes (output routers have none) and where each
/// destination id leads.
struct Graph {
    lanes: Vec<Arc<Lane>>,
    /// Destination id → its lane index (not output routers).
    index: HashMap<String, usize>,
    /// Destination id → where routes to it send events.
    targets: HashMap<String, Target>,
    status: Vec<DestinationStatus>,
}

/// Every lane first: a driver may dead-letter into another's lane.
async fn open_lanes(config: &Config, metrics: &Metrics) -> Result<Graph, TopologyError> {
    let mut g = Graph {
        lanes: Vec::new(),
        index: HashMap::new(),
        targets: HashMap::new(),
        status: Vec::new(),
    };
    for d in &config.destinations {
        let Some(common) = d.config.common() else {
            // Output routers are numbered in config order, like the groups
            // `build_router` makes.
            let group = g.targets.len() - g.lanes.len();
            g.targets.insert(d.id.clone(), Target::Group(group));
            continue;
        };
        let lane = match common.lane_policy() {
            LanePolicy::Persistent => {
                let settings = common.queue.disk_settings(&config.data_dir, &d.id);
                Arc::new(open_persistent(&d.id, settings, common.lane_capacity(), metrics).await?)
            }
            policy => Arc::new(Lane::new(
                &d.id,
                policy,
                common.lane_capacity(),
                metrics.destination(&d.id),
            )),
        };
        g.index.insert(d.id.clone(), g.lanes.len());
        g.targets.insert(d.id.clone(), Target::Lane(g.lanes.len()));
        g.status.push(DestinationStatus {
            id: d.id.clone(),
            kind: d.kind.clone(),
            lane: lane.clone(),
        });
        g.lanes.push(lane);
    }
    Ok(g)
}

/// One driver per lane, in lane order.
async fn start_drivers(
    config: &Config,
    g: &Graph,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, TopologyError> {
    let mut drivers = Vec::new();
    for d in &config.destinations {
        let Some(&i) = g.index.get(&d.id) else {
            continue;
        };
        let dead_letter = d
            .config
            .dead_letter()
            .and_then(|target| g.index.get(target))
            .map(|&j| DeadLetter {
                origin: d.id.clone(),
                lane: g.lanes[j].clone(),
            });
        let wiring = Wiring {
            lane: g.lanes[i].clone(),
            stop: stop.clone(),
            metrics,
            dead_letter,
        };
        if let Some(task) = destinations::start(&d.id, &d.config, wiring).await? {
            drivers.push(task);
        }
    }
    Ok(drivers)
}

type Built = (Router, Vec<RouteStatus>, Vec<(String, DestinationMetrics)>);

/// Compile the routes and the output routers' rules against one field set.
fn build_router(config: &Config, g: &Graph, metrics: &Metrics) -> Result<Built, TopologyError> {
    let mut fields = FieldSet::new();
    let target = |route: &str, id: &str| {
        g.targets
            .get(id)
            .copied()
            .ok_or_else(|| TopologyError::Route {
                route: route.to_string(),
                message: format!("unknown destination `{id}`"),
            })
    };
    let mut routes = Vec::new();
    let mut route_status = Vec::new();
    for r in &config.routes {
        let program =
            Program::compile(&r.filter, &mut fields).map_err(|e| TopologyError::Route {
                route: r.name.clone(),
                message: e.to_string(),
            })?;
        let events = metrics.route(&r.name);
        route_status.push(RouteStatus {
            name: r.name.clone(),
            filter: r.filter.clone(),
            destination: r.destination.clone(),
            is_final: r.is_final,
            events: events.clone(),
        });
        routes.push(Route {
            name: r.name.clone(),
            program,
            destination: target(&r.name, &r.destination)?,
            is_final: r.is_final,
            events,
        });
    }
    let mut groups = Vec::new();
    let mut group_metrics = Vec::new();
    for d in &config.destinations {
        let Some(rc) = d.config.output_router() else {
            continue;
        };
        let mut rules = Vec::new();
        for (rule, name) in rc.rules.iter().zip(rc.rule_names()) {
            let label = format!("{}.{name}", d.id);
            let filter = rule.filter.as_ref().map_or("true", |f| f.value.as_str());
            let program =
                Program::compile(filter, &mut fields).map_err(|e| TopologyError::Route {
                    route: label.clone(),
                    message: e.to_string(),
                })?;
            rules.push(Route {
                destination: target(&label, &rule.destination.value)?,
                events: metrics.rule(&d.id, &name),
                name,
                program,
                is_final: rule.is_final,
            });
        }
        let default = match rc.default_target() {
            Some(t) => Some(target(&d.id, &t.value)?),
            None => None,
        };
        let m = metrics.destination(&d.id);
        group_metrics.push((d.id.clone(), m.clone()));
        groups.push(Group {
            rules,
            default,
            metrics: m,
        });
    }
    let unmatched = match &config.unmatched {
        Some(u) => Some(target("unmatched", u)?),
        None => None,
    };
    let router = Router::new(
        routes,
        groups,
        fields,
        g.lanes.clone(),
        unmatched,
        metrics.unmatched(),
    );
    Ok((router, route_status, group_metrics))
}
