//! The router: ordered routes, each a filter and a destination.
//!
//! For each event, routes are evaluated in order. A matching route sends the
//! event to its destination; a `final` route (the default) ends evaluation,
//! a non-final one sends a copy and evaluation continues. An event no final
//! route took is "unmatched": counted, then dropped or sent to the
//! `unmatched` destination.
//!
//! Filters locate the fields they name lazily, sharing one scan per event
//! (`FieldSet::get`): an event is read only as far as the routes evaluated
//! on it need. Copies share the event's
//! bytes (`Bytes` is reference counted); nothing is re-serialised.
//!
//! An output router (`type: output_router`) is a group of routes evaluated
//! in place when a route, `unmatched` or another router sends to it: its
//! rules send copies straight into the children's lanes, so each child keeps
//! its own lane and policy, and the group itself counts what it received,
//! what it handed on and what its `default: drop` dropped.
//!
//! Pipelines run where they are attached, a batch at a time: a source's on
//! the batch before any route sees it (`route_from`), a route's on the
//! events it matched (each copy processed on its own), a destination's on
//! what is bound for its lane. Events a pipeline removes are handled, not
//! lost: they are counted by the pipeline and resolve acknowledgements.
//!
//! Delivery into lanes is all-or-nothing per source batch: room is first
//! reserved in every `block` lane the batch touches (in a fixed order, so two
//! sources cannot deadlock), then everything is committed at once. If the
//! caller's deadline passes first (the HTTP source's `max_wait`), nothing was
//! delivered and the caller can refuse the whole request with a 429 that the
//! client may safely retry.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::{Batch, Event};
use crate::expr::{Env, FieldSet, Program, Scratch, prepare};
use crate::lane::{Books, Producer, Reservation};
use crate::pipeline::{Flush, Pipeline};
use crate::tap::TapPoint;

/// Where a route sends events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A destination's lane (an index into the router's lanes).
    Lane(usize),
    /// An output router (an index into the router's groups).
    Group(usize),
}

pub struct Route {
    pub name: String,
    pub program: Program,
    pub destination: Target,
    pub is_final: bool,
    pub events: Counter,
    /// `sluice tap --route`: the events this route matches.
    pub tap: Arc<TapPoint>,
    /// What its events go through before `destination`.
    pub pipeline: Option<Arc<Pipeline>>,
}

/// An output router: rules evaluated in order, then `default`.
pub struct Group {
    pub rules: Vec<Route>,
    /// `None`: events no final rule took are dropped (reason `unmatched`).
    pub default: Option<Target>,
    /// Its own accounting: events in = sent (handed on) + dropped.
    pub books: Arc<Books>,
}

/// Per-batch tallies of one group, counted once the batch is committed.
#[derive(Default, Clone)]
struct GroupTally {
    events: u64,
    sent: u64,
    dropped: u64,
    rules: Vec<u64>,
}

/// Why a batch was not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// A `block` destination stayed full past the caller's deadline. Nothing
    /// was delivered.
    Shed,
    /// sluice is shutting down. Nothing was delivered.
    Shutdown,
}

pub struct Router {
    routes: Vec<Route>,
    groups: Vec<Group>,
    fields: FieldSet,
    lanes: Vec<Producer>,
    /// `sluice tap --destination`, one per lane.
    lane_taps: Vec<Arc<TapPoint>>,
    unmatched: Option<Target>,
    unmatched_events: Counter,
    /// Each source's pre-processing pipeline, by source id.
    source_pipelines: std::collections::HashMap<String, Arc<Pipeline>>,
    /// Each lane's post-processing pipeline.
    lane_pipelines: Vec<Option<Arc<Pipeline>>>,
}

impl Router {
    /// Targets index into `lanes` and `groups`; `fields` is the set every
    /// program (routes' and groups' rules) was compiled against. Groups must
    /// not send to each other in a circle (validated with the config).
    pub fn new(
        routes: Vec<Route>,
        groups: Vec<Group>,
        fields: FieldSet,
        lanes: Vec<Producer>,
        lane_taps: Vec<Arc<TapPoint>>,
        unmatched: Option<Target>,
        unmatched_events: Counter,
    ) -> Self {
        let lane_pipelines = lanes.iter().map(|_| None).collect();
        Router {
            routes,
            groups,
            fields,
            lanes,
            lane_taps,
            unmatched,
            unmatched_events,
            source_pipelines: std::collections::HashMap::new(),
            lane_pipelines,
        }
    }

    /// Attach the sources' and the lanes' pipelines (`lanes`: one per lane).
    pub fn with_pipelines(
        mut self,
        sources: std::collections::HashMap<String, Arc<Pipeline>>,
        lanes: Vec<Option<Arc<Pipeline>>>,
    ) -> Self {
        self.source_pipelines = sources;
        if lanes.len() == self.lanes.len() {
            self.lane_pipelines = lanes;
        }
        self
    }

    /// Route one batch from source `source`, through its pipeline first.
    pub async fn route_from(
        &self,
        source: &str,
        mut batch: Batch,
        deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Result<(), RouteError> {
        if let Some(p) = self.source_pipelines.get(source) {
            batch.events = p.process(std::mem::take(&mut batch.events));
        }
        self.route(batch, deadline, shutdown).await
    }

    /// `sluice_unmatched_events_total`.
    pub fn unmatched_counter(&self) -> Counter {
        self.unmatched_events.clone()
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn lanes(&self) -> &[Producer] {
        &self.lanes
    }

    /// Route one batch. Waits for room in `block` lanes until `deadline`
    /// (none: as long as it takes) or until `shutdown` fires.
    pub async fn route(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Result<(), RouteError> {
        if batch.events.is_empty() {
            return Ok(());
        }
        self.route_flushing(batch, None, deadline, shutdown).await
    }

    /// Every pipeline attached here, each once (one may be attached in
    /// several places).
    fn pipelines(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        let mut seen = std::collections::HashSet::new();
        self.routes
            .iter()
            .chain(self.groups.iter().flat_map(|g| &g.rules))
            .filter_map(|r| r.pipeline.as_ref())
            .chain(self.source_pipelines.values())
            .chain(self.lane_pipelines.iter().flatten())
            .filter(move |p| seen.insert(Arc::as_ptr(p)))
    }

    /// Every pipeline attached here writes what it keeps across restarts.
    pub fn save_pipelines(&self) {
        self.pipelines().for_each(|p| p.save());
    }

    /// Whether a pipeline attached here holds events back (`aggregate`):
    /// then its clock (`flush`) must run.
    pub fn holds(&self) -> bool {
        self.pipelines().any(|p| p.holds())
    }

    /// Release what pipelines hold (`mode`: what is due, or everything),
    /// each through the rest of its pipeline and on to where its events go
    /// (a source's pipeline's through the routes), as a batch is routed.
    pub async fn flush(
        &self,
        mode: Flush,
        deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Result<(), RouteError> {
        let mut events = Vec::new();
        for p in self.source_pipelines.values() {
            events.extend(p.flush(mode));
        }
        self.route_flushing(Batch::new(events), Some(mode), deadline, shutdown)
            .await
    }

    /// `route`, also releasing what every pipeline on the way holds when
    /// `flush` says so.
    async fn route_flushing(
        &self,
        batch: Batch,
        flush: Option<Flush>,
        deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Result<(), RouteError> {
        let (mut out, route_hits, unmatched, tallies) = self.split(batch, flush);
        for (b, p) in out.iter_mut().zip(&self.lane_pipelines) {
            let Some(p) = p else { continue };
            if let Some(batch) = b.as_mut() {
                batch.events = p.process(std::mem::take(&mut batch.events));
            }
            if let Some(mode) = flush {
                let held = p.flush(mode);
                if !held.is_empty() {
                    b.get_or_insert_with(|| Batch::new(Vec::new()))
                        .events
                        .extend(held);
                }
            }
            if b.as_ref().is_some_and(|b| b.events.is_empty()) {
                *b = None;
            }
        }
        for (b, tap) in out.iter().zip(&self.lane_taps) {
            if let Some(b) = b
                && tap.is_active()
            {
                tap.offer(b.events.iter());
            }
        }

        // Reserve room in every blocking lane first, in lane order.
        let mut reservations: Vec<Option<Reservation>> =
            (0..self.lanes.len()).map(|_| None).collect();
        for (i, b) in out.iter().enumerate() {
            let Some(b) = b else { continue };
            let lane = &self.lanes[i];
            if !lane.policy().reserves() {
                continue;
            }
            let wait = lane.reserve(b.events.len());
            let r = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(RouteError::Shutdown),
                r = wait => r.map_err(|_| RouteError::Shutdown)?,
                _ = sleep_until_opt(deadline) => return Err(RouteError::Shed),
            };
            reservations[i] = Some(r);
        }

        // Commit: nothing below waits.
        for (i, b) in out.into_iter().enumerate() {
            let Some(b) = b else { continue };
            let lane = &self.lanes[i];
            match reservations[i].take() {
                Some(r) => lane.commit(b, r),
                None => {
                    lane.push_nowait(b);
                }
            }
        }
        for (route, hits) in self.routes.iter().zip(&route_hits) {
            if *hits > 0 {
                route.events.inc_by(*hits);
            }
        }
        if unmatched > 0 {
            self.unmatched_events.inc_by(unmatched);
        }
        for (g, t) in self.groups.iter().zip(&tallies) {
            if t.events == 0 {
                continue;
            }
            g.books.routed(t.events, t.sent, t.dropped);
            for (rule, hits) in g.rules.iter().zip(&t.rules) {
                if *hits > 0 {
                    rule.events.inc_by(*hits);
                }
            }
        }
        Ok(())
    }

    /// Evaluate the routes: one batch per destination, hits per route,
    /// unmatched count, and each output router's tallies.
    #[allow(clippy::type_complexity)]
    fn split(
        &self,
        batch: Batch,
        flush: Option<Flush>,
    ) -> (Vec<Option<Batch>>, Vec<u64>, u64, Vec<GroupTally>) {
        let mut out: Vec<Option<Batch>> = (0..self.lanes.len()).map(|_| None).collect();
        let mut hits = vec![0u64; self.routes.len()];
        let mut unmatched = 0u64;
        let mut tallies: Vec<GroupTally> = self
            .groups
            .iter()
            .map(|g| GroupTally {
                rules: vec![0; g.rules.len()],
                ..GroupTally::default()
            })
            .collect();
        if let Some(dest) = self.takes_all(flush) {
            // Nothing to evaluate: the batch goes on whole, its events
            // neither looked at nor moved one by one.
            if !batch.events.is_empty() {
                hits[0] = batch.events.len() as u64;
                out[dest] = Some(Batch::with_ack(batch.events, batch.ack).from(batch.sender));
            }
            return (out, hits, unmatched, tallies);
        }
        let mut scratch = Scratch::new(self.fields.len());
        // Samples route taps' watchers can take in this batch (only while
        // someone watches a route).
        let mut budgets: Option<Vec<u32>> =
            self.routes.iter().any(|r| r.tap.is_active()).then(|| {
                self.routes
                    .iter()
                    .map(|r| if r.tap.is_active() { r.tap.budget() } else { 0 })
                    .collect()
            });
        let (ack, sender) = (batch.ack, batch.sender);
        let mut push = |dest: usize, e: Event| {
            out[dest]
                .get_or_insert_with(|| Batch::with_ack(Vec::new(), ack.clone()).from(sender))
                .events
                .push(e);
        };
        // What each route with a pipeline matched, processed after the loop.
        let mut piped: Vec<Vec<Event>> = self.routes.iter().map(|_| Vec::new()).collect();
        for event in batch.events {
            prepare(&self.fields, &event, &mut scratch);
            let env = Env {
                raw: &event.raw,
                fields: &self.fields,
                scratch: &scratch,
            };
            let mut taken_by = None;
            let mut taken_into_pipeline = false;
            for (i, route) in self.routes.iter().enumerate() {
                if route.program.eval(&env) {
                    hits[i] += 1;
                    if let Some(b) = budgets.as_mut()
                        && b[i] > 0
                    {
                        b[i] = route.tap.offer_one(&event);
                    }
                    if route.pipeline.is_some() {
                        if route.is_final {
                            taken_into_pipeline = true;
                            piped[i].push(event.clone());
                            break;
                        }
                        piped[i].push(event.clone());
                        continue;
                    }
                    if route.is_final {
                        taken_by = Some(route.destination);
                        break;
                    }
                    self.send(route.destination, &event, &env, &mut tallies, &mut push);
                }
            }
            if taken_into_pipeline {
                continue;
            }
            let target = match taken_by {
                Some(t) => Some(t),
                None => {
                    unmatched += 1;
                    self.unmatched
                }
            };
            match target {
                Some(Target::Lane(dest)) => push(dest, event),
                Some(group) => self.send(group, &event, &env, &mut tallies, &mut push),
                None => {}
            }
        }
        for (route, events) in self.routes.iter().zip(piped) {
            let Some(p) = route.pipeline.as_ref() else {
                continue;
            };
            let mut processed = if events.is_empty() {
                Vec::new()
            } else {
                p.process(events)
            };
            if let Some(mode) = flush {
                processed.extend(p.flush(mode));
            }
            for e in processed {
                match route.destination {
                    Target::Lane(dest) => push(dest, e),
                    group => {
                        prepare(&self.fields, &e, &mut scratch);
                        let env = Env {
                            raw: &e.raw,
                            fields: &self.fields,
                            scratch: &scratch,
                        };
                        self.send(group, &e, &env, &mut tallies, &mut push);
                    }
                }
            }
        }
        (out, hits, unmatched, tallies)
    }

    /// The lane every event goes to when the first route takes them all
    /// untouched: no filter, final, no pipeline, nobody tapping it, and no
    /// pipeline elsewhere to flush (an aggregator's usual single route).
    fn takes_all(&self, flush: Option<Flush>) -> Option<usize> {
        let first = self.routes.first()?;
        let Target::Lane(dest) = first.destination else {
            return None;
        };
        let untouched = first.program.constant() == Some(true)
            && first.is_final
            && first.pipeline.is_none()
            && !first.tap.is_active()
            && (flush.is_none() || self.routes.iter().all(|r| r.pipeline.is_none()));
        untouched.then_some(dest)
    }

    /// Send a copy of `event` to `target`, evaluating an output router's
    /// rules on the event's already-located fields (`env`).
    fn send(
        &self,
        target: Target,
        event: &Event,
        env: &Env<'_>,
        tallies: &mut [GroupTally],
        push: &mut impl FnMut(usize, Event),
    ) {
        let g = match target {
            Target::Lane(dest) => return push(dest, event.clone()),
            Target::Group(g) => g,
        };
        let group = &self.groups[g];
        tallies[g].events += 1;
        let mut taken_by = None;
        for (i, rule) in group.rules.iter().enumerate() {
            if rule.program.eval(env) {
                tallies[g].rules[i] += 1;
                if rule.is_final {
                    taken_by = Some(rule.destination);
                    break;
                }
                self.send(rule.destination, event, env, tallies, push);
            }
        }
        match taken_by.or(group.default) {
            Some(t) => {
                tallies[g].sent += 1;
                self.send(t, event, env, tallies, push);
            }
            None => tallies[g].dropped += 1,
        }
    }
}

/// How often held events are looked at (a window closes at most this late).
pub const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// The router sources route through, replaced whole by a config reload.
///
/// Each batch takes the current router for the length of its routing
/// (`load_full`: a reference count, not a lock) and routes it entirely with
/// that one, so no batch is split between two configurations. A reload
/// swaps in the new router and then waits until the old one's count falls
/// to its own reference: from then on nothing can reach the lanes only the
/// old configuration knew, and they can close without losing a batch.
#[derive(Clone)]
pub struct RouterHandle(Arc<arc_swap::ArcSwap<Router>>);

impl RouterHandle {
    pub fn new(router: Router) -> Self {
        RouterHandle(Arc::new(arc_swap::ArcSwap::from_pointee(router)))
    }

    pub fn current(&self) -> Arc<Router> {
        self.0.load_full()
    }

    /// The pipelines' clock: every `CLOCK_TICK`, what they hold that is due
    /// (closed aggregate windows) goes on, even when no event arrives. Runs
    /// until `shutdown`; the last release (`Flush::All`) is the shutdown's.
    pub fn run_clock(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLOCK_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let router = handle.current();
                if router.holds() {
                    // Shutdown while waiting for room: the shutdown's
                    // release takes what is left.
                    let _ = router.flush(Flush::Due, None, &shutdown).await;
                }
            }
        })
    }

    /// Install `router`; returns the one it replaces.
    pub fn swap(&self, router: Router) -> Arc<Router> {
        self.0.swap(Arc::new(router))
    }
}

/// Resolves once nobody but the caller holds `router` (see `RouterHandle`).
pub async fn released(router: &Arc<Router>) {
    while Arc::strong_count(router) > 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
