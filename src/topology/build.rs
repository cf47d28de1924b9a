//! The pieces a configuration is built from, shared by the first start and
//! by reloads: a destination's lane, its driver, the router over a set of
//! lanes, a started source, and the status view of it all.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::TopologyError;
use crate::api::{
    ConfigInfo, DestinationStatus, OutputRouterStatus, RouteStatus, SourceStatus, View,
};
use crate::config::{Component, Config, Listen};
use crate::destinations::{self, DestinationConfig, Prepared, Wiring};
use crate::driver::DeadLetter;
use crate::expr::{FieldSet, Program};
use crate::lane::{Books, Lane, LanePolicy, Spill};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::pipeline::state::States;
use crate::queue::QueueSettings;
use crate::router::{Group, Route, Router, RouterHandle, Target};
use crate::sources::{self, SourceConfig, SourceContext};
use crate::tap::{PointKind, Taps};

/// A destination that has a lane (not an output router), as running.
pub(super) struct LiveDestination {
    pub id: String,
    pub kind: String,
    pub fingerprint: String,
    /// What its lane is made of; a reload keeps the lane while it is equal.
    pub lane_key: String,
    pub dead_letter: Option<String>,
    pub lane: Arc<Lane>,
    /// Its driver; after a reload, the retiring driver and then the one
    /// that replaced it, as one task.
    pub driver: JoinHandle<()>,
    /// Ends the current driver without loss (`Driver::new`).
    pub retire: CancellationToken,
}

/// A running source.
pub(super) struct LiveSource {
    pub id: String,
    pub kind: &'static str,
    pub fingerprint: String,
    pub listen: Vec<Listen>,
    pub finite: bool,
    pub address: Option<std::net::SocketAddr>,
    pub metrics: crate::metrics::SourceMetrics,
    pub detail: Option<sources::Detail>,
    /// Stops this source (a child of the process's shutdown token).
    pub shutdown: CancellationToken,
    /// Stops only its accepting: a TCP listener a reload rebinds keeps the
    /// connections it has.
    pub stop_accepting: CancellationToken,
    /// `None` once it has ended and been awaited.
    pub task: Option<JoinHandle<()>>,
    pub abort: tokio::task::AbortHandle,
}

/// What a destination's lane is made of: its policy, size and, for a
/// persistent queue, every disk setting.
pub(super) fn lane_key(config: &Config, d: &Component<DestinationConfig>) -> Option<String> {
    let common = d.config.common()?;
    let policy = common.lane_policy();
    let disk = (policy == LanePolicy::Persistent)
        .then(|| common.queue.disk_settings(&config.data_dir, &d.id));
    Some(format!("{policy:?}/{}/{disk:?}", common.lane_capacity()))
}

/// A destination's lane. A persistent queue is opened (and recovered):
/// what a previous run left is counted as received, so that accounting
/// balances when it is delivered, unless this process counted it already
/// (`recovered_counted`: a reload reopening a queue it had closed).
pub(super) async fn open_lane(
    config: &Config,
    d: &Component<DestinationConfig>,
    metrics: &Metrics,
    recovered_counted: bool,
) -> Result<Arc<Lane>, TopologyError> {
    let Some(common) = d.config.common() else {
        return Err(TopologyError::Route {
            route: d.id.clone(),
            message: "an output router has no lane".into(),
        });
    };
    let lane = match common.lane_policy() {
        LanePolicy::Persistent => {
            let settings = common.queue.disk_settings(&config.data_dir, &d.id);
            open_persistent(
                &d.id,
                settings,
                common.lane_capacity(),
                metrics,
                recovered_counted,
            )
            .await?
        }
        policy => Lane::new(&d.id, policy, common.lane_capacity(), metrics),
    };
    Ok(Arc::new(lane))
}

async fn open_persistent(
    id: &str,
    settings: QueueSettings,
    capacity: usize,
    metrics: &Metrics,
    recovered_counted: bool,
) -> Result<Lane, TopologyError> {
    let dir = settings.dir.clone();
    let bytes = metrics.persistent_queue_bytes(id);
    let queue_err = |message: String| TopologyError::Queue {
        destination: id.to_string(),
        message,
    };
    let opened = tokio::task::spawn_blocking(move || Spill::open(settings, capacity, bytes))
        .await
        .map_err(|e| queue_err(e.to_string()))?;
    let (opened, report) = opened.map_err(|e| queue_err(e.to_string()))?;
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
    Ok(Lane::persistent(
        id,
        capacity,
        metrics,
        opened,
        recovered_counted,
    ))
}

/// Build a destination's driver over `lane` without starting it; its
/// dead letters go to `dead_letter`'s lane.
pub(super) async fn prepare_driver(
    d: &Component<DestinationConfig>,
    lane: &Arc<Lane>,
    dead_letter: Option<&Arc<Lane>>,
    stop: &CancellationToken,
    metrics: &Metrics,
    data_dir: &std::path::Path,
) -> Result<(Prepared, CancellationToken), TopologyError> {
    let retire = CancellationToken::new();
    let wiring = Wiring {
        lane: lane.consumer(),
        stop: stop.clone(),
        retire: retire.clone(),
        metrics,
        dead_letter: dead_letter.map(|l| DeadLetter {
            origin: d.id.clone(),
            lane: l.producer(),
        }),
        data_dir,
    };
    match destinations::prepare(&d.id, &d.config, wiring).await? {
        Some(p) => Ok((p, retire)),
        None => Err(TopologyError::Route {
            route: d.id.clone(),
            message: "an output router has no driver".into(),
        }),
    }
}

/// Where each destination id leads, for the router: lanes in config order,
/// output routers numbered in config order.
pub(super) struct Graph {
    pub lanes: Vec<Arc<Lane>>,
    /// The destination id of each lane.
    pub ids: Vec<String>,
    pub targets: HashMap<String, Target>,
}

impl Graph {
    pub fn new(config: &Config, lanes: &HashMap<String, Arc<Lane>>) -> Graph {
        let mut g = Graph {
            lanes: Vec::new(),
            ids: Vec::new(),
            targets: HashMap::new(),
        };
        let mut groups = 0;
        for d in &config.destinations {
            match lanes.get(&d.id) {
                Some(lane) => {
                    g.targets.insert(d.id.clone(), Target::Lane(g.lanes.len()));
                    g.lanes.push(lane.clone());
                    g.ids.push(d.id.clone());
                }
                None => {
                    g.targets.insert(d.id.clone(), Target::Group(groups));
                    groups += 1;
                }
            }
        }
        g
    }
}

pub(super) type Built = (Router, Vec<RouteStatus>, Vec<OutputRouterStatus>);

/// Compile the routes and the output routers' rules against one field set.
pub(super) fn build_router(
    config: &Config,
    g: &Graph,
    metrics: &Metrics,
    taps: &Taps,
    states: &States,
) -> Result<Built, TopologyError> {
    let mut fields = FieldSet::new();
    // Each pipeline built once, shared wherever it is attached; a function
    // this build keeps unchanged keeps its state, the others' is let go.
    let mut pipelines: HashMap<String, Arc<Pipeline>> = HashMap::new();
    states.begin(Some(&config.data_dir));
    for p in &config.pipelines {
        pipelines.insert(
            p.name.clone(),
            Pipeline::build(
                &p.name,
                &p.functions,
                metrics,
                taps.point(PointKind::Pipeline, &p.name),
                states,
            )?,
        );
    }
    states.finish();
    let pipeline = |name: Option<&str>| name.and_then(|n| pipelines.get(n).cloned());
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
            tap: taps.point(PointKind::Route, &r.name),
            pipeline: pipeline(r.pipeline.as_deref()),
        });
    }
    let mut groups = Vec::new();
    let mut group_metrics = Vec::new();
    for d in &config.destinations {
        let Some(rc) = d.config.output_router() else {
            continue;
        };
        let mut rules = Vec::new();
        let mut rule_status = Vec::new();
        for (rule, name) in rc.rules.iter().zip(rc.rule_names()) {
            let label = format!("{}.{name}", d.id);
            let filter = rule.filter.as_ref().map_or("true", |f| f.value.as_str());
            let program =
                Program::compile(filter, &mut fields).map_err(|e| TopologyError::Route {
                    route: label.clone(),
                    message: e.to_string(),
                })?;
            let events = metrics.rule(&d.id, &name);
            rule_status.push(RouteStatus {
                name: name.clone(),
                filter: filter.to_string(),
                destination: rule.destination.value.clone(),
                is_final: rule.is_final,
                events: events.clone(),
            });
            rules.push(Route {
                destination: target(&label, &rule.destination.value)?,
                events,
                tap: taps.point(PointKind::Route, &label),
                name,
                program,
                is_final: rule.is_final,
                pipeline: None,
            });
        }
        let default = match rc.default_target() {
            Some(t) => Some(target(&d.id, &t.value)?),
            None => None,
        };
        let books = Arc::new(Books::new(
            metrics.books_lock(),
            metrics.book_series(&d.id, false),
        ));
        group_metrics.push(OutputRouterStatus {
            id: d.id.clone(),
            books: books.clone(),
            rules: rule_status,
            default: rc.default_target().map(|t| t.value.clone()),
        });
        groups.push(Group {
            rules,
            default,
            books,
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
        g.lanes.iter().map(Lane::producer).collect(),
        g.ids
            .iter()
            .map(|id| taps.point(PointKind::Destination, id))
            .collect(),
        unmatched,
        metrics.unmatched(),
    )
    .with_pipelines(
        config
            .sources
            .iter()
            .filter_map(|s| Some((s.id.clone(), pipeline(s.config.pipeline())?)))
            .collect(),
        g.ids
            .iter()
            .map(|id| {
                let d = config.destinations.iter().find(|d| &d.id == id);
                pipeline(d.and_then(|d| d.config.pipeline()))
            })
            .collect(),
    );
    Ok((router, route_status, group_metrics))
}

/// Bind and start one source. `bind_retry`: a TCP listener a reload is
/// taking over from the source it replaces, which lets go of the address
/// moments later.
pub(super) async fn start_source(
    s: &Component<SourceConfig>,
    router: &RouterHandle,
    metrics: &Metrics,
    taps: &Taps,
    shutdown: &CancellationToken,
    bind_retry: bool,
    data_dir: &std::path::Path,
) -> Result<(LiveSource, Option<JoinHandle<()>>), TopologyError> {
    let own = shutdown.child_token();
    // A child: shutting the source down also stops its listeners.
    let stop_accepting = own.child_token();
    let ctx = SourceContext {
        id: s.id.as_str().into(),
        router: router.clone(),
        metrics: metrics.source(&s.id),
        shutdown: own.clone(),
        stop_accepting: stop_accepting.clone(),
        registry: metrics.clone(),
        tap: taps.point(PointKind::Source, &s.id),
        data_dir: data_dir.into(),
        // A source with no finer sender (a generator, stdin, a UDP socket)
        // is one: its order is kept as a whole.
        sender: crate::event::Sender::of(&s.id, ()),
    };
    let source_metrics = ctx.metrics.clone();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let running = loop {
        match sources::start(&s.config, ctx.clone()).await {
            Ok(r) => break r,
            Err(sources::SourceError::Bind { source, .. })
                if bind_retry
                    && source.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let live = LiveSource {
        id: s.id.clone(),
        kind: running.kind,
        fingerprint: s.fingerprint.clone(),
        listen: s.config.listen(),
        finite: s.config.is_finite(),
        address: running.local_addr,
        metrics: source_metrics,
        detail: running.detail,
        shutdown: own,
        stop_accepting,
        abort: running.task.abort_handle(),
        task: Some(running.task),
    };
    Ok((live, running.finishing))
}

/// The status view of a running configuration.
pub(super) fn view(
    config: &Config,
    info: ConfigInfo,
    sources: &[LiveSource],
    dests: &[LiveDestination],
    route_status: Vec<RouteStatus>,
    groups: Vec<OutputRouterStatus>,
    metrics: &Metrics,
) -> View {
    View {
        config: info,
        sources: sources
            .iter()
            .map(|s| SourceStatus {
                id: s.id.clone(),
                kind: s.kind,
                address: s.address,
                metrics: s.metrics.clone(),
                task: Some(s.abort.clone()),
                detail: s.detail.clone(),
            })
            .collect(),
        routes: route_status,
        unmatched: config.unmatched.clone(),
        unmatched_events: metrics.unmatched(),
        destinations: dests
            .iter()
            .map(|d| DestinationStatus {
                id: d.id.clone(),
                kind: d.kind.clone(),
                lane: d.lane.clone(),
            })
            .collect(),
        output_routers: groups,
        pipelines: config
            .pipelines
            .iter()
            .map(|p| crate::pipeline::PipelineStatus::new(&p.name, &p.functions, metrics))
            .collect(),
    }
}
