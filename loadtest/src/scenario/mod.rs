//! Scenarios: a generated sluice config, a generator, receivers with faults,
//! sampling while it runs, and the accounting check at the end.

pub mod catalogue;
mod peer_configs;
mod reduction;
mod representative;
pub mod throughput;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::fault::{Schedule, Window};
use crate::generator::{Generator, Load, Protocol, Summary};
use crate::metrics::Scrape;
use crate::receiver::{self, Handle, Sink, free_port};
use crate::seq::{Comparison, Tracker};
use crate::sluice::{self, Sluice};

/// What the run must show about loss.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Every sent event arrives.
    NoLoss,
    /// Lost events are exactly the ones sluice counted as dropped.
    ExactlyCounted,
}

/// Everything a run needs from the command line.
#[derive(Clone)]
pub struct Ctx {
    pub sluice: PathBuf,
    pub vector: Option<PathBuf>,
    /// Another sluice binary (an earlier commit): the throughput rows
    /// most changed by performance work run through it too, in the same
    /// run, for before/after ratios.
    pub baseline: Option<PathBuf>,
    /// Throughput rows to run (their path contains one of these); empty:
    /// all. The relay rows always run.
    pub rows: Vec<String>,
    /// How many times the throughput rows run (their medians reported).
    pub rounds: usize,
    pub smoke: bool,
    pub work: PathBuf,
}

impl Ctx {
    /// Full-run seconds, or the smoke-run seconds.
    pub fn secs(&self, full: f64, smoke: f64) -> f64 {
        if self.smoke { smoke } else { full }
    }

    pub fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.work.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("clean {}", d.display()))?;
        }
        std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        Ok(d)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Http,
    Tcp,
    Udp,
    /// A Kafka broker (Tansu) and a consumer of its topic.
    Kafka,
    /// An OTLP/gRPC logs receiver (each record's `seq` attribute its id).
    Otlp,
}

/// One receiver of a scenario.
pub struct ReceiverSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub faults: Vec<Window>,
}

/// The receivers' addresses, by name, for building the destinations.
pub struct Addrs(pub BTreeMap<&'static str, SocketAddr>);

impl Addrs {
    pub fn http(&self, name: &str) -> String {
        format!(
            "http://{}/",
            self.0
                .get(name)
                .copied()
                .unwrap_or(([127, 0, 0, 1], 9).into())
        )
    }

    pub fn addr(&self, name: &str) -> String {
        self.0.get(name).map(|a| a.to_string()).unwrap_or_default()
    }
}

/// Builds `(routes, destinations)` once the receivers' addresses are known.
pub type Pipeline = Box<dyn Fn(&Addrs) -> (Value, Value)>;
/// A scenario's own checks on its finished report: the failures found.
pub type Check = Box<dyn Fn(&Report) -> Vec<String>>;

/// A chaos scenario.
pub struct Chaos {
    pub name: &'static str,
    pub description: &'static str,
    pub source: Protocol,
    /// HTTP source answers only once events are delivered or queued.
    pub acknowledgements: bool,
    pub receivers: Vec<ReceiverSpec>,
    pub pipeline: Pipeline,
    pub rate: u64,
    pub seconds: f64,
    pub event_bytes: usize,
    pub connections: usize,
    pub batch: usize,
    pub expect: Expect,
    /// SIGKILL sluice at this second, and start it again `restart_after` later.
    pub kill_at: Option<(f64, f64)>,
    /// Ignore the first seconds when judging memory (start-up growth).
    pub rss_after: f64,
    /// Scenario-specific checks on the finished report.
    pub check: Option<Check>,
    /// Reload the configuration every `every` seconds while the load runs,
    /// alternating the scenario's pipeline with this one.
    pub reload: Option<Reload>,
    /// Settings merged into the source's configuration.
    pub source_settings: Value,
    /// Hostile clients attacking the source beside the generator.
    pub hostile: Option<crate::hostile::Attackers>,
}

/// Reloads during a run (see `Chaos::reload`).
pub struct Reload {
    pub every: f64,
    pub alternate: Pipeline,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Sample {
    pub t: f64,
    pub sent: u64,
    pub received: u64,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    /// Events in in-memory lanes.
    pub lane: f64,
    /// Events in persistent queues.
    pub disk: f64,
    pub dropped: f64,
    pub rss_mb: f64,
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    pub receiver: String,
    #[serde(flatten)]
    pub window: Window,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SluiceAccount {
    pub events: f64,
    pub sent: f64,
    pub dropped: BTreeMap<String, f64>,
    pub source_rejected: BTreeMap<String, f64>,
    pub unmatched: f64,
    pub retries: f64,
    pub queued_at_end: f64,
    pub exit: String,
    pub restarts: u32,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ReceiverReport {
    pub name: String,
    pub events: u64,
    pub connections: u64,
    pub requests: u64,
    pub in_flight_peak: u64,
    pub answers: BTreeMap<u16, u64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub name: String,
    pub description: String,
    pub passed: bool,
    pub failures: Vec<String>,
    pub expect: Option<Expect>,
    pub seconds: f64,
    pub generator: Summary,
    pub comparison: Comparison,
    /// Losses sluice's counters account for (drops, rejections, queued).
    pub explained: u64,
    /// Losses nothing accounts for: any is a failure.
    pub unexplained: u64,
    pub sluice: SluiceAccount,
    pub receivers: Vec<ReceiverReport>,
    pub rss_min_mb: f64,
    pub rss_max_mb: f64,
    pub rss_max_over_min: f64,
    pub cpu_seconds: f64,
    pub faults: Vec<Marker>,
    pub timeline: Vec<Sample>,
    pub throughput: Vec<throughput::Row>,
    /// The throughput rows checked byte for byte and in order first.
    pub verified: Vec<throughput::Verified>,
    pub notes: Vec<String>,
    /// Reloads done during the run, by result.
    pub reloads: BTreeMap<String, u64>,
    /// What the hostile clients saw, if the scenario had them.
    pub hostile: Option<crate::hostile::Summary>,
}

const SAMPLE: Duration = Duration::from_millis(500);

/// The drop reasons that do not explain a missing event at the receivers:
/// dead letters arrive at their own receiver.
const NOT_LOSS: &[&str] = &["dead_letter"];
/// Source rejections whose events the generator never counted as sent.
const NOT_SENT: &[&str] = &["shed", "shutdown", "unauthorized", "bad_request"];

fn bar(name: &str, seconds: f64) -> ProgressBar {
    let pb = ProgressBar::new((seconds * 10.0) as u64);
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(name.to_string());
    pb
}

pub async fn run_chaos(ctx: &Ctx, spec: &Chaos) -> anyhow::Result<Report> {
    let dir = ctx.dir(spec.name)?;
    let tracker = Arc::new(Tracker::new());
    let start = Instant::now();
    let mut receivers: Vec<(&str, Handle)> = Vec::new();
    let mut addrs = BTreeMap::new();
    let mut markers = Vec::new();
    let mut proxies = Vec::new();
    for r in &spec.receivers {
        let schedule = Schedule::new(start, r.faults.clone());
        let sink = Sink::new(tracker.clone(), true);
        let addr = free_port()?;
        let h = match r.kind {
            Kind::Http => receiver::http::spawn(addr, schedule, sink).await?,
            Kind::Tcp => receiver::tcp::spawn(addr, schedule, sink).await?,
            Kind::Udp => receiver::udp::spawn(addr, schedule, sink).await?,
            Kind::Kafka => receiver::kafka::spawn(addr, schedule, sink, &dir.join(r.name)).await?,
            Kind::Otlp => receiver::otlp::spawn(addr, sink).await?,
        };
        // A receiver that hangs is reached through a proxy process, the
        // process that is stopped (a Kafka broker is stopped itself).
        let peer = if r.kind != Kind::Kafka && Schedule::hangs(&r.faults) {
            let (p, at) = hang_proxy(&dir, r, h.addr, start).await?;
            proxies.push(p);
            at
        } else {
            h.addr
        };
        addrs.insert(r.name, peer);
        for w in &r.faults {
            markers.push(Marker {
                receiver: r.name.to_string(),
                window: w.clone(),
            });
        }
        receivers.push((r.name, h));
    }
    let addrs = Addrs(addrs);
    let (routes, destinations) = (spec.pipeline)(&addrs);
    let source_addr = free_port()?;
    let mut source = match spec.source {
        Protocol::Tcp => serde_json::json!({ "type": "tcp", "address": source_addr.to_string() }),
        Protocol::Udp => serde_json::json!({ "type": "udp", "address": source_addr.to_string() }),
        Protocol::Syslog => {
            serde_json::json!({ "type": "syslog", "address": source_addr.to_string() })
        }
        Protocol::Fluent => {
            serde_json::json!({ "type": "fluent", "address": source_addr.to_string() })
        }
        Protocol::File => serde_json::json!({
            "type": "file",
            "include": [dir.join("in.log").display().to_string()],
        }),
        Protocol::Hec => serde_json::json!({
            "type": "splunk_hec",
            "address": source_addr.to_string(),
            "tokens": ["loadtest"],
            "acknowledgements": spec.acknowledgements,
        }),
        Protocol::Statsd => {
            serde_json::json!({ "type": "statsd", "mode": "tcp", "address": source_addr.to_string() })
        }
        Protocol::Http => serde_json::json!({
            "type": "http",
            "address": source_addr.to_string(),
            "acknowledgements": spec.acknowledgements,
        }),
        Protocol::Otlp => serde_json::json!({
            "type": "otlp",
            "grpc_address": source_addr.to_string(),
            "acknowledgements": spec.acknowledgements,
        }),
    };
    if let (Some(into), Some(extra)) = (source.as_object_mut(), spec.source_settings.as_object()) {
        into.extend(extra.clone());
    }
    let api = free_port()?;
    let config = sluice::config(
        api,
        &dir,
        serde_json::json!({ "in": source }),
        routes,
        destinations,
    );
    let mut sluice = Sluice::start(&ctx.sluice, &dir, api, &config).await?;
    let client = reqwest::Client::new();
    // The two configurations a reload scenario alternates between.
    let configs = spec.reload.as_ref().map(|r| {
        let (routes, destinations) = (r.alternate)(&addrs);
        let alternate = sluice::config(
            api,
            &dir,
            serde_json::json!({ "in": source.clone() }),
            routes,
            destinations,
        );
        (r.every, [config.clone(), alternate])
    });
    let mut reloads: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_reload = configs.as_ref().map(|(every, _)| *every);

    let generator = Generator::start(
        Load {
            protocol: spec.source,
            target: source_addr,
            rate: spec.rate,
            event_bytes: spec.event_bytes,
            connections: spec.connections,
            duration: Duration::from_secs_f64(spec.seconds),
            batch: spec.batch,
            track_ids: true,
            tls_ca: None,
            file: None,
        },
        tracker.clone(),
    );

    let attack = spec
        .hostile
        .map(|a| crate::hostile::start(source_addr, Duration::from_secs_f64(spec.seconds), a));

    let pb = bar(spec.name, spec.seconds);
    let mut timeline: Vec<Sample> = Vec::new();
    let mut last = (Instant::now(), 0u64, 0u64, 0f64);
    let mut killed = false;
    let mut last_scrape = Scrape::default();
    let drain_deadline = |t: Instant| t + Duration::from_secs_f64(ctx.secs(120.0, 60.0));
    let mut drain_until: Option<Instant> = None;
    let faults_end = spec
        .receivers
        .iter()
        .flat_map(|r| r.faults.iter().map(|w| w.to_s.min(spec.seconds)))
        .fold(0.0, f64::max);
    loop {
        tokio::time::sleep(SAMPLE).await;
        let t = start.elapsed().as_secs_f64();
        if let Some((at, after)) = spec.kill_at
            && !killed
            && t >= at
        {
            killed = true;
            sluice.process.kill()?;
            markers.push(Marker {
                receiver: "sluice".into(),
                window: Window::new(at, at + after, crate::fault::Fault::Down),
            });
            pb.set_message("kill -9 sluice");
            tokio::time::sleep(Duration::from_secs_f64(after)).await;
            sluice.restart().await?;
        }
        if let (Some(at), Some((every, both))) = (next_reload, configs.as_ref())
            && t >= at
            && !generator.finished()
        {
            let n: u64 = reloads.values().sum();
            let result = sluice.reload(&client, &both[(n as usize + 1) % 2]).await?;
            *reloads.entry(result).or_default() += 1;
            next_reload = Some(at + every);
        }
        if let Some(s) = sluice.process.exited() {
            anyhow::bail!(
                "sluice exited during the run ({s}):\n{}",
                sluice.process.log_tail(30)
            );
        }
        let scrape = sluice.scrape(&client).await.unwrap_or_default();
        let usage = sluice.process.usage();
        let (sent, received) = (tracker.sent_events(), tracker.received_events());
        let dt = last.0.elapsed().as_secs_f64().max(1e-3);
        let sample = Sample {
            t,
            sent,
            received,
            sent_per_s: (sent - last.1.min(sent)) as f64 / dt,
            received_per_s: (received - last.2.min(received)) as f64 / dt,
            lane: scrape.sum("sluice_destination_queue_events", &[]),
            disk: scrape.sum("sluice_persistent_queue_events", &[]),
            dropped: scrape.sum("sluice_destination_dropped_events_total", &[]),
            rss_mb: usage.rss_bytes as f64 / 1e6,
            cpu_percent: ((usage.cpu_seconds - last.3).max(0.0) / dt) * 100.0,
        };
        last = (Instant::now(), sent, received, usage.cpu_seconds);
        pb.set_position((t * 10.0) as u64);
        pb.set_message(format!(
            "sent {sent} recv {received} lane {:.0} disk {:.0} rss {:.0} MB",
            sample.lane, sample.disk, sample.rss_mb
        ));
        timeline.push(sample);
        if !scrape.is_empty() {
            last_scrape = scrape;
        }
        if !generator.finished() || t < faults_end {
            continue;
        }
        let until = *drain_until.get_or_insert_with(|| drain_deadline(Instant::now()));
        if settled(&last_scrape) || Instant::now() > until {
            break;
        }
    }
    pb.finish_and_clear();
    let summary = generator.wait().await;
    let hostile = match attack {
        Some(a) => Some(a.await.context("the hostile clients")?),
        None => None,
    };
    // Receivers may still be reading what was just delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let final_scrape = sluice.scrape(&client).await.unwrap_or(last_scrape);
    let cpu_seconds = sluice.process.usage().cpu_seconds;
    let exit = match sluice.process.terminate(Duration::from_secs(45)) {
        Ok(s) => s.to_string(),
        Err(e) => format!("{e:#}"),
    };
    let exit_ok = sluice
        .process
        .exited()
        .map(|s| s.success())
        .unwrap_or(false);
    let comparison = tracker.compare();
    // The receivers' proxies served until the end.
    drop(proxies);

    let account = account(&final_scrape, exit, sluice.restarts);
    let explained = explained(&account);
    let mut report = Report {
        name: spec.name.to_string(),
        description: spec.description.to_string(),
        expect: Some(spec.expect),
        seconds: start.elapsed().as_secs_f64(),
        generator: summary,
        explained,
        unexplained: comparison.lost.saturating_sub(explained),
        comparison,
        sluice: account,
        receivers: receivers
            .iter()
            .map(|(name, h)| receiver_report(name, h))
            .collect(),
        faults: markers,
        hostile,
        ..Report::default()
    };
    rss_stats(
        &mut report,
        &timeline,
        spec.rss_after.min(spec.seconds / 2.0),
    );
    report.cpu_seconds = cpu_seconds;
    report.timeline = timeline;
    if spec.reload.is_some() {
        let ok = reloads.get("success").copied().unwrap_or(0);
        let total: u64 = reloads.values().sum();
        if ok == 0 || ok != total {
            report.failures.push(format!(
                "reloads: {reloads:?}, expected every one to succeed"
            ));
        }
        report.notes.push(format!("{total} reloads, {ok} applied"));
    }
    report.reloads = reloads;
    if let Some(h) = &report.hostile {
        report.notes.push(format!(
            "hostile clients: {} gzip bombs ({} refused with 413, slowest answer {:.2} s); {} slowloris connections ({} closed, longest open {:.1} s); {} lying bodies ({} answered 408, longest {:.1} s); {} idle connections ({} closed, longest open {:.1} s)",
            h.bombs_sent,
            h.bombs_refused,
            h.bomb_slowest_s,
            h.slowloris_opened,
            h.slowloris_closed,
            h.slowloris_longest_s,
            h.lying_sent,
            h.lying_timed_out,
            h.lying_longest_s,
            h.idle_opened,
            h.idle_closed,
            h.idle_longest_s
        ));
    }
    judge(&mut report, spec.expect, exit_ok);
    if let Some(check) = &spec.check {
        report.failures.extend(check(&report));
    }
    report.passed = report.failures.is_empty();
    write_config_copy(&dir, &config);
    Ok(report)
}

/// A two-way proxy process in front of receiver `r` at `to`, stopped
/// (SIGSTOP) and continued (SIGCONT) on `r`'s `Hang` windows.
async fn hang_proxy(
    dir: &Path,
    r: &ReceiverSpec,
    to: SocketAddr,
    start: Instant,
) -> anyhow::Result<(crate::process::Process, SocketAddr)> {
    let at = free_port()?;
    let exe = std::env::current_exe().context("the loadtest binary's path")?;
    let mut p = crate::process::Process::spawn(
        &format!("proxy-{}", r.name),
        &exe,
        &[
            "proxy".into(),
            "--listen".into(),
            at.to_string(),
            "--to".into(),
            to.to_string(),
        ],
        &dir.join(format!("proxy-{}.log", r.name)),
    )?;
    crate::process::wait_listening(at, &mut p, Duration::from_secs(10)).await?;
    let pid = p.pid();
    for w in r
        .faults
        .iter()
        .filter(|w| matches!(w.fault, crate::fault::Fault::Hang))
    {
        let (from, to) = (
            start + Duration::from_secs_f64(w.from_s),
            start + Duration::from_secs_f64(w.to_s.min(86_400.0)),
        );
        tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            crate::proxy::freeze(pid, true);
            tokio::time::sleep_until(to.into()).await;
            crate::proxy::freeze(pid, false);
        });
    }
    Ok((p, at))
}

/// Every destination has delivered or dropped what it was given, and the
/// disk queues are empty.
fn settled(s: &Scrape) -> bool {
    if s.is_empty() {
        return false;
    }
    let events = s.sum("sluice_destination_events_total", &[]);
    let sent = s.sum("sluice_destination_sent_events_total", &[]);
    let dropped = s.sum("sluice_destination_dropped_events_total", &[]);
    let disk = s.sum("sluice_persistent_queue_events", &[]);
    events > 0.0 && events <= sent + dropped && disk == 0.0
}

fn account(s: &Scrape, exit: String, restarts: u32) -> SluiceAccount {
    let dropped: BTreeMap<String, f64> = s
        .by("sluice_destination_dropped_events_total", "reason")
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let source_rejected: BTreeMap<String, f64> = s
        .by("sluice_source_rejected_total", "reason")
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect();
    SluiceAccount {
        events: s.sum("sluice_destination_events_total", &[]),
        sent: s.sum("sluice_destination_sent_events_total", &[]),
        dropped,
        source_rejected,
        unmatched: s.sum("sluice_unmatched_events_total", &[]),
        retries: s.sum("sluice_destination_retries_total", &[]),
        queued_at_end: s.sum("sluice_destination_queue_events", &[])
            + s.sum("sluice_destination_in_flight_events", &[])
            + s.sum("sluice_persistent_queue_events", &[]),
        exit,
        restarts,
    }
}

fn explained(a: &SluiceAccount) -> u64 {
    let dropped: f64 = a
        .dropped
        .iter()
        .filter(|(r, _)| !NOT_LOSS.contains(&r.as_str()))
        .map(|(_, v)| v)
        .sum();
    let rejected: f64 = a
        .source_rejected
        .iter()
        .filter(|(r, _)| !NOT_SENT.contains(&r.as_str()))
        .map(|(_, v)| v)
        .sum();
    (dropped + rejected + a.unmatched + a.queued_at_end) as u64
}

fn judge(r: &mut Report, expect: Expect, exit_ok: bool) {
    let c = &r.comparison;
    if c.sent == 0 {
        r.failures.push("the generator sent nothing".into());
    }
    if r.unexplained > 0 {
        r.failures.push(format!(
            "{} events lost that no counter explains (lost {}, counted {}); first: {:?}",
            r.unexplained, c.lost, r.explained, c.lost_ids
        ));
    }
    match expect {
        Expect::NoLoss if c.lost > 0 => r.failures.push(format!(
            "{} events lost, expected none; first: {:?}",
            c.lost, c.lost_ids
        )),
        Expect::ExactlyCounted if c.lost != r.explained => r.failures.push(format!(
            "lost {} but sluice counted {} dropped: they must match",
            c.lost, r.explained
        )),
        _ => {}
    }
    if c.unreadable > 0 {
        r.failures.push(format!(
            "{} received lines had no readable id",
            c.unreadable
        ));
    }
    if !exit_ok {
        r.failures.push(format!(
            "sluice did not exit cleanly after SIGTERM: {}",
            r.sluice.exit
        ));
    }
}

fn rss_stats(r: &mut Report, timeline: &[Sample], after: f64) {
    let rss: Vec<f64> = timeline
        .iter()
        .filter(|s| s.t >= after && s.rss_mb > 0.0)
        .map(|s| s.rss_mb)
        .collect();
    r.rss_min_mb = rss.iter().copied().fold(f64::INFINITY, f64::min);
    r.rss_max_mb = rss.iter().copied().fold(0.0, f64::max);
    if !r.rss_min_mb.is_finite() {
        r.rss_min_mb = 0.0;
    }
    r.rss_max_over_min = if r.rss_min_mb > 0.0 {
        r.rss_max_mb / r.rss_min_mb
    } else {
        0.0
    };
}

fn receiver_report(name: &str, h: &Handle) -> ReceiverReport {
    use std::sync::atomic::Ordering::Relaxed;
    ReceiverReport {
        name: name.to_string(),
        events: h.stats.events(),
        connections: h.stats.connections.load(Relaxed),
        requests: h.stats.requests.load(Relaxed),
        in_flight_peak: h.stats.in_flight_peak.load(Relaxed),
        answers: h.stats.answers(),
    }
}

fn write_config_copy(dir: &Path, config: &Value) {
    let _ = std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sent: u64, lost: u64, dropped: f64) -> Report {
        let mut r = Report {
            comparison: Comparison {
                sent,
                lost,
                lost_ids: (0..lost.min(3)).collect(),
                ..Comparison::default()
            },
            ..Report::default()
        };
        if dropped > 0.0 {
            r.sluice.dropped.insert("backpressure".into(), dropped);
        }
        // Dead letters reach their own receiver: never an explanation.
        r.sluice.dropped.insert("dead_letter".into(), 1_000.0);
        r.explained = explained(&r.sluice);
        r.unexplained = lost.saturating_sub(r.explained);
        r
    }

    #[test]
    fn loss_no_counter_explains_fails() {
        let mut r = report(100, 5, 2.0);
        judge(&mut r, Expect::ExactlyCounted, true);
        assert!(
            r.failures.iter().any(|f| f.contains("no counter explains")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn counted_drops_pass_only_when_they_match_exactly() {
        let mut r = report(100, 5, 5.0);
        judge(&mut r, Expect::ExactlyCounted, true);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        let mut r = report(100, 3, 5.0);
        judge(&mut r, Expect::ExactlyCounted, true);
        assert!(!r.failures.is_empty());
    }

    #[test]
    fn any_loss_fails_where_none_is_allowed_and_so_does_an_unclean_exit() {
        let mut r = report(100, 1, 1.0);
        judge(&mut r, Expect::NoLoss, true);
        assert!(r.failures.iter().any(|f| f.contains("expected none")));
        let mut r = report(100, 0, 0.0);
        judge(&mut r, Expect::NoLoss, false);
        assert!(r.failures.iter().any(|f| f.contains("exit")));
        let mut r = report(0, 0, 0.0);
        judge(&mut r, Expect::NoLoss, true);
        assert!(r.failures.iter().any(|f| f.contains("sent nothing")));
    }

    #[test]
    fn settled_needs_every_routed_event_accounted_and_empty_disk_queues() {
        let s = Scrape::parse(
            "sluice_destination_events_total{destination=\"a\"} 10\n\
             sluice_destination_sent_events_total{destination=\"a\"} 8\n\
             sluice_destination_dropped_events_total{destination=\"a\",reason=\"backpressure\"} 1\n\
             sluice_persistent_queue_events{destination=\"a\"} 0\n",
        );
        assert!(!settled(&s));
        let s = Scrape::parse(
            "sluice_destination_events_total{destination=\"a\"} 10\n\
             sluice_destination_sent_events_total{destination=\"a\"} 9\n\
             sluice_destination_dropped_events_total{destination=\"a\",reason=\"backpressure\"} 1\n\
             sluice_persistent_queue_events{destination=\"a\"} 0\n",
        );
        assert!(settled(&s));
        assert!(!settled(&Scrape::default()));
    }
}
