//! Pipelines: named, ordered lists of functions that change events between
//! source and destination, attached where Cribl attaches them: a source's
//! `pipeline` (before routing), a route's (route → pipeline → destination)
//! and a destination's (before its lane).
//!
//! An event enters as its bytes and stays so while functions only read it
//! (a `drop` filter reads lazily, as routes do); the first function that
//! needs its fields parses it once into VRL's value (what a `remap` program
//! sees as `.`), and it is serialised once, when it leaves. A pipeline runs
//! a batch at a time, so each function sets up once per batch and the books
//! are counted once per batch: per pipeline, `received + emitted = sent +
//! dropped`, each drop by function and reason.

mod aggregate;
mod condition;
pub mod config;
mod dedupe;
mod drop;
mod eval;
mod flatten;
mod keyed;
mod log_to_metric;
mod lookup;
mod mask;
mod parse;
mod path;
#[cfg(feature = "remap")]
mod remap;
mod rename;
mod sample;
pub mod state;
mod throttle;
mod unroll;
mod work;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::event::Event;
use crate::metrics::Metrics;
use crate::tap::TapPoint;
pub use config::{FunctionConfig, PipelineConfig};
pub use work::Work;

/// Why a function removed an event (`sluice_pipeline_dropped_events_total`'s
/// `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// On purpose: a `drop` filter, a remap `abort`.
    Filter,
    /// It could not be processed (a remap error with `drop_on_error`, an
    /// event whose value cannot be written back).
    Error,
    /// Not among the 1 in `rate` a `sample` keeps.
    Sample,
    /// Over a `throttle`'s limit.
    Throttle,
    /// Seen before by a `dedupe`.
    Dedupe,
    /// Folded into a metric by `aggregate` or `log_to_metric`.
    Aggregated,
    /// Too late for every window of an `aggregate` it belongs to.
    Late,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::Filter,
        DropReason::Error,
        DropReason::Sample,
        DropReason::Throttle,
        DropReason::Dedupe,
        DropReason::Aggregated,
        DropReason::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Filter => "filter",
            DropReason::Error => "error",
            DropReason::Sample => "sample",
            DropReason::Throttle => "throttle",
            DropReason::Dedupe => "dedupe",
            DropReason::Aggregated => "aggregated",
            DropReason::Late => "late",
        }
    }
}

/// What one function did to one batch, counted once per batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub dropped: [u64; DropReason::ALL.len()],
    pub emitted: u64,
    /// Events it could not change as asked and passed on as they were
    /// (a remap error without `drop_on_error`, a parse that did not match).
    pub errors: u64,
}

impl Tally {
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }
}

/// One step of a pipeline. `run` takes the batch and puts what goes on into
/// `out`, in order; a removed event is counted in `tally`, an event made from
/// another (unroll) counted as emitted.
pub trait Function: Send + Sync {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally);

    /// Whether it holds events back to release them later (`flush`).
    fn holds(&self) -> bool {
        false
    }

    /// Release what it holds whose time has come (or all of it), counted
    /// as emitted. Called after each batch and by the router's clock.
    fn flush(&self, _mode: Flush, _out: &mut Vec<Work>, _tally: &mut Tally) {}

    /// sluice is stopping: write what it keeps across restarts, if it does.
    fn save(&self) {}
}

/// What a function holding events (`aggregate`) releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// What is due: windows that have closed.
    Due,
    /// Everything: sluice is shutting down.
    All,
    /// Everything, if a reload let this function's state go (it was
    /// changed or removed): the configuration it leaves says it last.
    Orphaned,
}

/// A function's counters, created once at build.
#[derive(Clone)]
struct FunctionBooks {
    dropped: [Counter; DropReason::ALL.len()],
    emitted: Counter,
    errors: Counter,
}

impl FunctionBooks {
    fn new(metrics: &Metrics, pipeline: &str, label: &str) -> Self {
        FunctionBooks {
            dropped: DropReason::ALL.map(|r| metrics.pipeline_dropped(pipeline, label, r.as_str())),
            emitted: metrics.pipeline_emitted(pipeline, label),
            errors: metrics.pipeline_errors(pipeline, label),
        }
    }
}

/// A pipeline's books for the status API: the series `/metrics` shows.
#[derive(Clone)]
pub struct PipelineStatus {
    name: String,
    received: Counter,
    sent: Counter,
    functions: Vec<(String, &'static str, FunctionBooks)>,
}

impl PipelineStatus {
    pub fn new(name: &str, config: &PipelineConfig, metrics: &Metrics) -> Self {
        let (received, sent) = metrics.pipeline(name);
        let functions = config
            .iter()
            .zip(config::labels(config))
            .map(|(f, label)| {
                let books = FunctionBooks::new(metrics, name, &label);
                (label, f.kind(), books)
            })
            .collect();
        PipelineStatus {
            name: name.to_string(),
            received,
            sent,
            functions,
        }
    }

    /// Each function's `in` and `out` follow from the books: what enters a
    /// function is what left the one before (the pipeline's received for
    /// the first), and `out = in - dropped + emitted`. `reduction` is the
    /// share of what came in that did not go out (negative when a function
    /// makes more than it takes, as unroll does).
    pub fn to_json(&self) -> serde_json::Value {
        let received = self.received.get();
        let mut entering = received;
        let functions: Vec<serde_json::Value> = self
            .functions
            .iter()
            .map(|(label, kind, b)| {
                let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
                    .iter()
                    .zip(&b.dropped)
                    .map(|(r, c)| (r.as_str().to_string(), c.get().into()))
                    .collect();
                let removed: u64 = b.dropped.iter().map(Counter::get).sum();
                let emitted = b.emitted.get();
                let leaving = (entering + emitted).saturating_sub(removed);
                let f = serde_json::json!({
                    "name": label,
                    "type": kind,
                    "dropped": dropped,
                    "emitted": emitted,
                    "errors": b.errors.get(),
                    "in": entering,
                    "out": leaving,
                    "reduction": reduction(entering, leaving),
                });
                entering = leaving;
                f
            })
            .collect();
        let dropped: u64 = self
            .functions
            .iter()
            .flat_map(|(_, _, b)| b.dropped.iter().map(Counter::get))
            .sum();
        let emitted: u64 = self.functions.iter().map(|(_, _, b)| b.emitted.get()).sum();
        let sent = self.sent.get();
        serde_json::json!({
            "name": self.name,
            "received": received,
            "emitted": emitted,
            "sent": sent,
            "dropped": dropped,
            "reduction": reduction(received, sent),
            "functions": functions,
        })
    }
}

/// `1 - out / in`, rounded to 4 places; `null` before anything came in.
fn reduction(entering: u64, leaving: u64) -> serde_json::Value {
    if entering == 0 {
        return serde_json::Value::Null;
    }
    let r = 1.0 - leaving as f64 / entering as f64;
    serde_json::json!((r * 10_000.0).round() / 10_000.0)
}

/// A built pipeline, shared by every place it is attached (its books are
/// the pipeline's, wherever the events came from).
pub struct Pipeline {
    pub name: String,
    steps: Vec<(Box<dyn Function>, FunctionBooks)>,
    received: Counter,
    sent: Counter,
    /// Some function holds events back (`Function::holds`).
    holds: bool,
    /// `sluice tap --pipeline`: what it sends on.
    tap: Arc<TapPoint>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipeline({}, {} functions)", self.name, self.steps.len())
    }
}

/// Why a pipeline could not be built (its config was validated: a file
/// that went away since, say).
#[derive(Debug, thiserror::Error)]
#[error("pipeline `{pipeline}`, function {index} ({kind}): {message}")]
pub struct BuildError {
    pub pipeline: String,
    pub index: usize,
    pub kind: String,
    pub message: String,
}

impl Pipeline {
    pub fn build(
        name: &str,
        config: &PipelineConfig,
        metrics: &Metrics,
        tap: Arc<TapPoint>,
        states: &state::States,
    ) -> Result<Arc<Pipeline>, BuildError> {
        let labels = config::labels(config);
        let mut steps = Vec::with_capacity(config.len());
        for (i, (f, label)) in config.iter().zip(labels).enumerate() {
            let slot = state::Slot {
                states: states.clone(),
                key: format!("{name}/{label}/{f:?}"),
                names: (name.to_string(), label.clone()),
            };
            let function = f.build(&slot).map_err(|message| BuildError {
                pipeline: name.to_string(),
                index: i + 1,
                kind: f.kind().to_string(),
                message,
            })?;
            steps.push((function, FunctionBooks::new(metrics, name, &label)));
        }
        let (received, sent) = metrics.pipeline(name);
        Ok(Arc::new(Pipeline {
            name: name.to_string(),
            holds: steps.iter().any(|(f, _)| f.holds()),
            steps,
            received,
            sent,
            tap,
        }))
    }

    /// Run `events` through every function; what comes out, in order.
    pub fn process(&self, events: Vec<Event>) -> Vec<Event> {
        self.pass(events, Flush::Due)
    }

    /// Release what its functions hold (`mode`), through the functions
    /// after them; what comes out, in order.
    pub fn flush(&self, mode: Flush) -> Vec<Event> {
        if !self.holds {
            return Vec::new();
        }
        self.pass(Vec::new(), mode)
    }

    /// Write the state its functions keep across restarts (at shutdown).
    pub fn save(&self) {
        for (f, _) in &self.steps {
            f.save();
        }
    }

    /// Whether a function of it holds events back (the router then runs
    /// its clock).
    pub fn holds(&self) -> bool {
        self.holds
    }

    fn pass(&self, events: Vec<Event>, mode: Flush) -> Vec<Event> {
        let received = events.len() as u64;
        let mut work: Vec<Work> = events.into_iter().map(Work::Raw).collect();
        let mut next = Vec::with_capacity(work.len());
        // Counted together once the batch is through, so the books are
        // (nearly) never seen half-way: received + emitted = sent + dropped.
        let mut tallies = vec![Tally::default(); self.steps.len()];
        for ((function, _), tally) in self.steps.iter().zip(tallies.iter_mut()) {
            if !work.is_empty() {
                function.run(std::mem::take(&mut work), &mut next, tally);
            }
            if function.holds() {
                function.flush(mode, &mut next, tally);
            }
            std::mem::swap(&mut work, &mut next);
            next.clear();
        }
        let mut out = Vec::with_capacity(work.len());
        let mut unwritable = 0u64;
        for w in work {
            match w.into_event() {
                Some(e) => out.push(e),
                None => unwritable += 1,
            }
        }
        if let Some(last) = tallies.last_mut() {
            last.dropped[DropReason::Error as usize] += unwritable;
        }
        for ((_, books), tally) in self.steps.iter().zip(&tallies) {
            books.count(tally);
        }
        self.received.inc_by(received);
        self.sent.inc_by(out.len() as u64);
        if self.tap.is_active() {
            self.tap.offer(out.iter());
        }
        out
    }
}

impl FunctionBooks {
    fn count(&self, t: &Tally) {
        for (c, n) in self.dropped.iter().zip(t.dropped) {
            if n > 0 {
                c.inc_by(n);
            }
        }
        if t.emitted > 0 {
            self.emitted.inc_by(t.emitted);
        }
        if t.errors > 0 {
            self.errors.inc_by(t.errors);
        }
    }
}

#[cfg(test)]
mod tests;
