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
use crate::lane::{Lane, Reservation};

pub struct Route {
    pub name: String,
    pub program: Program,
    pub destination: usize,
    pub is_final: bool,
    pub events: Counter,
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
    fields: FieldSet,
    lanes: Vec<Arc<Lane>>,
    unmatched: Option<usize>,
    unmatched_events: Counter,
}

impl Router {
    /// `routes[i].destination` and `unmatched` index into `lanes`; `fields`
    /// is the set the routes' programs were compiled against.
    pub fn new(
        routes: Vec<Route>,
        fields: FieldSet,
        lanes: Vec<Arc<Lane>>,
        unmatched: Option<usize>,
        unmatched_events: Counter,
    ) -> Self {
        Router {
            routes,
            fields,
            lanes,
            unmatched,
            unmatched_events,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn lanes(&self) -> &[Arc<Lane>] {
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
        let (out, route_hits, unmatched) = self.split(batch);

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
            lane.metrics().events.inc_by(b.events.len() as u64);
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
        Ok(())
    }

    /// Evaluate the routes: one batch per destination, hits per route, unmatched count.
    fn split(&self, batch: Batch) -> (Vec<Option<Batch>>, Vec<u64>, u64) {
        let mut out: Vec<Option<Batch>> = (0..self.lanes.len()).map(|_| None).collect();
        let mut hits = vec![0u64; self.routes.len()];
        let mut unmatched = 0u64;
        let mut scratch = Scratch::new(self.fields.len());
        let ack = batch.ack;
        let mut push = |dest: usize, e: Event| {
            out[dest]
                .get_or_insert_with(|| Batch::with_ack(Vec::new(), ack.clone()))
                .events
                .push(e);
        };
        for event in batch.events {
            prepare(&self.fields, &event, &mut scratch);
            let env = Env {
                raw: &event.raw,
                fields: &self.fields,
                scratch: &scratch,
            };
            let mut taken_by = None;
            for (i, route) in self.routes.iter().enumerate() {
                if route.program.eval(&env) {
                    hits[i] += 1;
                    if route.is_final {
                        taken_by = Some(route.destination);
                        break;
                    }
                    push(route.destination, event.clone());
                }
            }
            match taken_by {
                Some(dest) => push(dest, event),
                None => {
                    unmatched += 1;
                    if let Some(dest) = self.unmatched {
                        push(dest, event);
                    }
                }
            }
        }
        (out, hits, unmatched)
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
