//! Reloading the configuration while events flow.
//!
//! A reload never loses or duplicates an event on a path it does not change:
//!
//! - **Invalid** configurations are refused before anything changes (with
//!   their `file:line:column` errors); so are changes to `api` or
//!   `data_dir`, which need a restart.
//! - **Prepare** (nothing visible yet): lanes for new destinations and for
//!   those whose lane itself changes, every new driver built, the new
//!   router compiled. Any failure here leaves the old configuration as it
//!   was.
//! - **Swap**: the router is replaced whole. A batch is routed entirely by
//!   the router it started with (`RouterHandle`), so no batch is split
//!   between configurations.
//! - **Destinations**: an unchanged one keeps its lane and driver. A changed
//!   one keeps its lane (and its persistent queue) and its driver is
//!   replaced: the old driver stops taking, finishes the attempts it has in
//!   flight and gives back the rest (`Job::requeue`), and only then does the
//!   new one start, so order holds. If the lane itself changes (policy or
//!   size), the new lane takes the old one's events once no batch can reach
//!   the old lane any more. A removed destination stops taking events and
//!   drains; a persistent queue stays on disk for a later configuration
//!   that names it again. (Changing a persistent queue's own settings keeps
//!   the open queue until the next restart: it cannot be reopened while in
//!   use.)
//! - **Sources**: an unchanged source keeps running. A changed one stops and
//!   starts with the new settings; a TCP source whose address stays keeps
//!   its connections (the old listener only stops accepting).
//!
//! Counters are per component id, so an unchanged or changed component's
//! counters continue across reloads.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::build::{self, LiveDestination, LiveSource};
use super::{Retired, Running, TopologyError};
use crate::api::{ConfigInfo, LastReload, unix_seconds};
use crate::config::{Config, ConfigError};
use crate::destinations::Prepared;
use crate::lane::{Lane, LanePolicy, Spill};
use crate::pipeline::Flush;
use crate::router::Router;

/// What a reload does with a destination that has a lane.
enum Plan {
    /// Unchanged: lane and driver stay.
    Keep,
    /// Its settings changed, not its lane: a new driver on the same lane.
    Rewire,
    /// New, or its lane changed: a new lane (`Some`: the old one to take
    /// events from, a memory lane) and a new driver.
    Open { take_from: Option<usize> },
}

/// A destination of the new configuration, ready to swap in.
struct Staged {
    index: usize,
    plan: Plan,
    lane: Arc<Lane>,
    lane_key: String,
    driver: Option<(Prepared, CancellationToken)>,
}

impl Running {
    /// Reload from `path`. `None` (sluice runs on its built-in
    /// configuration) is refused, saying why: reloading the same built-in
    /// text would "succeed" at changing nothing, which is how an operator
    /// who edited a file sluice never read learns nothing.
    pub async fn reload_from(&mut self, path: Option<&Path>) -> LastReload {
        let Some(path) = path else {
            let why = "there is no configuration file to reload: sluice runs on its built-in configuration (start it with --config FILE)";
            tracing::warn!("reload refused: {why}");
            return self.outcome("rejected", vec![why.to_string()]);
        };
        match Config::load_file(path) {
            Ok(config) => self.reload(config).await,
            Err(e) => self.refused(&e),
        }
    }

    fn refused(&self, e: &ConfigError) -> LastReload {
        let errors: Vec<String> = match e {
            ConfigError::Invalid(d) => d.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        };
        for e in &errors {
            tracing::error!(error = %e, "reload refused: the configuration is invalid; the running one stays");
        }
        self.outcome("rejected", errors)
    }

    fn outcome(&self, result: &'static str, errors: Vec<String>) -> LastReload {
        self.metrics.config_reload(result);
        let r = LastReload {
            result,
            at: unix_seconds(SystemTime::now()),
            errors,
        };
        self.status.set_last_reload(r.clone());
        r
    }

    /// Apply a validated configuration.
    pub async fn reload(&mut self, new: Config) -> LastReload {
        new.log_warnings();
        let mut fixed = Vec::new();
        let old = &self.config;
        if new.api.address != old.api.address
            || new.api.enabled != old.api.enabled
            || new.api.auth.as_ref().map(|a| a.value.header_value())
                != old.api.auth.as_ref().map(|a| a.value.header_value())
            || new.api.tls.as_ref().map(|t| &t.value) != old.api.tls.as_ref().map(|t| &t.value)
        {
            fixed.push(format!(
                "{}: `api` settings apply at start: restart sluice to change them",
                new.source_name
            ));
        }
        if new.data_dir != old.data_dir {
            fixed.push(format!(
                "{}: `data_dir` applies at start: restart sluice to change it",
                new.source_name
            ));
        }
        if !fixed.is_empty() {
            for e in &fixed {
                tracing::error!(error = %e, "reload refused; the running configuration stays");
            }
            return self.outcome("rejected", fixed);
        }
        match self.apply(new).await {
            Ok(failures) if failures.is_empty() => self.outcome("success", Vec::new()),
            Ok(failures) => self.outcome("failed", failures),
            Err(e) => {
                let e = format!("{e}; nothing was changed");
                tracing::error!(error = %e, "reload failed");
                self.outcome("failed", vec![e])
            }
        }
    }

    /// Prepare, swap, then move the sources. `Err`: nothing changed.
    /// `Ok(failures)`: applied, except sources that could not start.
    async fn apply(&mut self, new: Config) -> Result<Vec<String>, TopologyError> {
        let staged = self.stage(&new).await?;
        let lanes: HashMap<String, Arc<Lane>> = staged
            .iter()
            .map(|s| (new.destinations[s.index].id.clone(), s.lane.clone()))
            .collect();
        let graph = build::Graph::new(&new, &lanes);
        let (router, route_status, groups) =
            build::build_router(&new, &graph, &self.metrics, &self.taps, &self.states)?;
        let telemetry_changed =
            format!("{:?}", new.telemetry) != format!("{:?}", self.config.telemetry);
        let telemetry = if telemetry_changed {
            Some(super::start_telemetry(&new, &self.metrics)?)
        } else {
            None
        };

        // Swap. Nothing below can fail but a source's start.
        let changed_routes = format!("{:?}{:?}", new.routes, new.unmatched)
            != format!("{:?}{:?}", self.config.routes, self.config.unmatched);
        // The router is always rebuilt; a pipeline-only change is still a
        // change of the configuration, and its version says so.
        let pipelines = |c: &Config| {
            c.pipelines
                .iter()
                .map(|p| format!("{}{:?}", p.name, p.functions))
                .collect::<Vec<_>>()
        };
        let changed_pipelines = pipelines(&new) != pipelines(&self.config);
        let released = self.swap_router(router);
        let mut summary = Summary::default();
        let dests = self.move_destinations(&new, staged, &released, &mut summary);
        self.dests = dests;
        self.groups = groups.clone();
        if let Some(t) = telemetry {
            if let Some((_, stop)) = std::mem::replace(&mut self.telemetry, t) {
                stop.cancel();
            }
            summary.other.push("telemetry".into());
        }
        if changed_routes {
            summary.other.push("routes".into());
        }
        if changed_pipelines {
            summary.other.push("pipelines".into());
        }
        let failures = self.move_sources(&new, &mut summary).await;

        let view = self.status.view.load();
        let version = view.config.version + u64::from(!summary.is_empty());
        let info = ConfigInfo {
            version,
            loaded_at: SystemTime::now(),
            file: new.source_name.clone(),
        };
        drop(view);
        self.config = new;
        self.status.view.store(Arc::new(build::view(
            &self.config,
            info,
            &self.sources,
            &self.dests,
            route_status,
            groups,
            &self.metrics,
        )));
        tracing::info!(
            version,
            added = ?summary.added,
            changed = ?summary.changed,
            removed = ?summary.removed,
            other = ?summary.other,
            "configuration reloaded"
        );
        Ok(failures)
    }

    /// Lanes and drivers for every destination of `new`, nothing started.
    async fn stage(&mut self, new: &Config) -> Result<Vec<Staged>, TopologyError> {
        let by_id: HashMap<String, usize> = self
            .dests
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        let mut plans = Vec::new();
        for (index, d) in new.destinations.iter().enumerate() {
            let Some(key) = build::lane_key(new, d) else {
                continue;
            };
            let plan = match by_id.get(&d.id).map(|&i| (i, &self.dests[i])) {
                None => Plan::Open { take_from: None },
                Some((_, o)) if o.fingerprint == d.fingerprint => Plan::Keep,
                Some((_, o)) if o.lane_key == key => Plan::Rewire,
                Some((_, o))
                    if o.lane.policy() == LanePolicy::Persistent
                        && d.config.common().map(|c| c.lane_policy())
                            == Some(LanePolicy::Persistent) =>
                {
                    tracing::warn!(
                        destination = %d.id,
                        "reload: the persistent queue's own settings take effect at the next restart (the open queue stays in use)"
                    );
                    Plan::Rewire
                }
                Some((i, o)) => Plan::Open {
                    take_from: (o.lane.policy() != LanePolicy::Persistent).then_some(i),
                },
            };
            plans.push((index, key, plan));
        }
        // A driver whose dead-letter destination gets a new lane is rewired
        // to it.
        let new_lanes: HashSet<&str> = plans
            .iter()
            .filter(|(_, _, p)| matches!(p, Plan::Open { .. }))
            .map(|(i, _, _)| new.destinations[*i].id.as_str())
            .collect();
        for (index, _, plan) in &mut plans {
            if matches!(plan, Plan::Keep)
                && new.destinations[*index]
                    .config
                    .dead_letter()
                    .is_some_and(|t| new_lanes.contains(t))
            {
                *plan = Plan::Rewire;
            }
        }

        let mut staged = Vec::new();
        for (index, key, plan) in plans {
            let d = &new.destinations[index];
            let (lane, lane_key) = match (&plan, by_id.get(&d.id).copied()) {
                (Plan::Open { .. }, _) => {
                    let counted = self.reopening(d.id.as_str()).await?;
                    (build::open_lane(new, d, &self.metrics, counted).await?, key)
                }
                (_, Some(i)) => (self.dests[i].lane.clone(), self.dests[i].lane_key.clone()),
                // Keep and Rewire come only from an existing destination.
                (_, None) => continue,
            };
            staged.push(Staged {
                index,
                plan,
                lane,
                lane_key,
                driver: None,
            });
        }
        let lanes: HashMap<&str, Arc<Lane>> = staged
            .iter()
            .map(|s| (new.destinations[s.index].id.as_str(), s.lane.clone()))
            .collect();
        for s in &mut staged {
            if matches!(s.plan, Plan::Keep) {
                continue;
            }
            let d = &new.destinations[s.index];
            let dead_letter = d.config.dead_letter().and_then(|t| lanes.get(t));
            s.driver = Some(
                build::prepare_driver(
                    d,
                    &s.lane,
                    dead_letter,
                    &self.stop,
                    &self.metrics,
                    &new.data_dir,
                )
                .await?,
            );
        }
        Ok(staged)
    }

    /// Before a persistent queue is opened again: wait for a retired lane
    /// of the same destination to let go of it. True if this process
    /// counted its events already.
    async fn reopening(&mut self, id: &str) -> Result<bool, TopologyError> {
        let mut counted = false;
        while let Some(pos) = self.retired.iter().position(|r| r.id == id) {
            let r = self.retired.remove(pos);
            let persistent = r.lane.spill().is_some();
            let wait = self.config.shutdown_timeout;
            let mut done = r.done;
            if tokio::time::timeout(wait, &mut done).await.is_err() {
                // Still draining: keep it, and refuse this reload.
                self.retired.push(Retired {
                    id: r.id,
                    lane: r.lane,
                    done,
                });
                return Err(TopologyError::Queue {
                    destination: id.to_string(),
                    message: "the queue a previous reload closed is still draining; try again"
                        .into(),
                });
            }
            counted |= persistent;
        }
        Ok(counted)
    }

    /// Install `router`; the token fires once no batch is being routed by
    /// the one it replaced.
    fn swap_router(&self, router: Router) -> CancellationToken {
        let old = self.router.swap(router);
        let released = CancellationToken::new();
        let done = released.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            crate::router::released(&old).await;
            // Windows of an aggregate this reload changed or removed: the
            // configuration that held them sends them, into lanes it still
            // reaches (they retire only after `done`).
            if old.holds() {
                let _ = old.flush(Flush::Orphaned, None, &stop).await;
            }
            drop(old);
            done.cancel();
        });
        released
    }

    /// Start, rewire, hand over and retire destinations; returns the new
    /// list in config order.
    fn move_destinations(
        &mut self,
        new: &Config,
        staged: Vec<Staged>,
        released: &CancellationToken,
        summary: &mut Summary,
    ) -> Vec<LiveDestination> {
        let mut old: Vec<Option<LiveDestination>> = std::mem::take(&mut self.dests)
            .into_iter()
            .map(Some)
            .collect();
        let mut by_id: HashMap<String, usize> = old
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|d| (d.id.clone(), i)))
            .collect();
        let mut out = Vec::new();
        for s in staged {
            let d = &new.destinations[s.index];
            let previous = by_id.remove(&d.id).and_then(|i| old[i].take());
            Spill::start(&s.lane, self.stop.clone());
            let (driver, retire) = match (s.plan, previous, s.driver) {
                (Plan::Keep, Some(p), _) => (p.driver, p.retire),
                (Plan::Rewire, Some(p), Some((prepared, retire))) => {
                    summary.changed.push(d.id.clone());
                    p.retire.cancel();
                    let metrics = self.metrics.clone();
                    let previous_driver = p.driver;
                    let chain = tokio::spawn(async move {
                        let _ = previous_driver.await;
                        let _ = prepared.spawn(&metrics).await;
                    });
                    (chain, retire)
                }
                (Plan::Open { take_from }, previous, Some((prepared, retire))) => {
                    match previous {
                        None => summary.added.push(d.id.clone()),
                        Some(_) => summary.changed.push(d.id.clone()),
                    }
                    let metrics = self.metrics.clone();
                    match (take_from, previous) {
                        // A memory lane replaced: its events move to the
                        // new lane, ahead of what arrived since, and the
                        // new driver starts once they have.
                        (Some(_), Some(p)) => {
                            let released = released.clone();
                            let lane = s.lane.clone();
                            let chain = tokio::spawn(async move {
                                released.cancelled().await;
                                // Retire first: the driver hands back what
                                // it holds rather than drain the lane.
                                p.retire.cancel();
                                p.lane.close();
                                let _ = p.driver.await;
                                lane.adopt(p.lane.take_memory());
                                let _ = prepared.spawn(&metrics).await;
                            });
                            (chain, retire)
                        }
                        (_, previous) => {
                            if let Some(p) = previous {
                                // A persistent queue replaced by a memory
                                // lane: it drains like a removed one.
                                self.retire(p, released);
                            }
                            (prepared.spawn(&metrics), retire)
                        }
                    }
                }
                // Keep and Rewire always have a previous destination, and
                // every plan but Keep has a driver (see `stage`).
                (_, Some(p), _) => (p.driver, p.retire),
                (_, None, _) => continue,
            };
            out.push(LiveDestination {
                id: d.id.clone(),
                kind: d.kind.clone(),
                fingerprint: d.fingerprint.clone(),
                lane_key: s.lane_key,
                dead_letter: d.config.dead_letter().map(str::to_string),
                lane: s.lane,
                driver,
                retire,
            });
        }
        for p in old.into_iter().flatten() {
            summary.removed.push(p.id.clone());
            self.retire(p, released);
        }
        out
    }

    /// A destination leaves the graph: once no batch can reach its lane,
    /// the lane closes, the driver delivers what is queued (a persistent
    /// queue keeps what it cannot deliver on disk), and the lane finishes.
    fn retire(&mut self, d: LiveDestination, released: &CancellationToken) {
        let released = released.clone();
        let lane = d.lane.clone();
        let driver = d.driver;
        let done = tokio::spawn(async move {
            released.cancelled().await;
            lane.close();
            let _ = driver.await;
            lane.finish().await;
        });
        self.retired.push(Retired {
            id: d.id,
            lane: d.lane,
            done,
        });
    }

    /// Stop removed and changed sources, then start new and changed ones.
    /// Returns the sources that could not start.
    async fn move_sources(&mut self, new: &Config, summary: &mut Summary) -> Vec<String> {
        let mut old: HashMap<String, LiveSource> = std::mem::take(&mut self.sources)
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut kept: HashMap<String, LiveSource> = HashMap::new();
        let mut rebinding = HashSet::new();
        let ids: Vec<String> = old.keys().cloned().collect();
        for id in ids {
            let next = new.sources.iter().find(|s| s.id == id);
            if next.is_some_and(|n| n.fingerprint == old[&id].fingerprint) {
                if let Some(s) = old.remove(&id) {
                    kept.insert(id, s);
                }
                continue;
            }
            let Some(s) = old.remove(&id) else { continue };
            let same_tcp_address = next.is_some_and(|n| {
                s.kind == n.config.kind()
                    && n.config.keeps_connections()
                    && n.config.listen() == s.listen
            });
            match next {
                Some(_) => summary.changed.push(format!("source {id}")),
                None => summary.removed.push(format!("source {id}")),
            }
            if same_tcp_address {
                s.stop_accepting.cancel();
                rebinding.insert(id.clone());
                if let Some(t) = s.task {
                    self.draining_sources.push((id, s.shutdown, t));
                }
                continue;
            }
            s.shutdown.cancel();
            for (d, token, _) in &self.draining_sources {
                if *d == id {
                    token.cancel();
                }
            }
            if let Some(mut t) = s.task
                && tokio::time::timeout(self.config.shutdown_timeout, &mut t)
                    .await
                    .is_err()
            {
                tracing::warn!(source = %id, "reload: the source did not stop in time");
                t.abort();
            }
        }
        let mut failures = Vec::new();
        for s in &new.sources {
            if let Some(k) = kept.remove(&s.id) {
                self.sources.push(k);
                continue;
            }
            if !summary.changed.contains(&format!("source {}", s.id)) {
                summary.added.push(format!("source {}", s.id));
            }
            let bind_retry = rebinding.contains(&s.id);
            match build::start_source(
                s,
                &self.router,
                &self.metrics,
                &self.taps,
                &self.shutdown,
                bind_retry,
                &self.config.data_dir,
            )
            .await
            {
                Ok((live, finishing)) => {
                    self.finishing.extend(finishing);
                    self.sources.push(live);
                }
                Err(e) => {
                    tracing::error!(source = %s.id, error = %e, "reload: the source could not start");
                    failures.push(e.to_string());
                }
            }
        }
        self.draining_sources.retain(|(_, _, t)| !t.is_finished());
        failures
    }
}

/// What a reload changed, for its log line.
#[derive(Default)]
struct Summary {
    added: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    other: Vec<String>,
}

impl Summary {
    fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.other.is_empty()
    }
}
