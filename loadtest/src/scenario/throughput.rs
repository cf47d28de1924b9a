//! Throughput at the maximum rate: the raw relay (the physical baseline),
//! sluice tcp→tcp and http→http with one filter route (and tcp→tcp with the
//! filter as an output router's rule), tcp→kafka and kafka→tcp through a
//! Tansu broker (the Kafka source reads what tcp→kafka wrote), tcp→sqs and
//! tcp→kinesis into moto (bound by moto, a Python server: labelled so),
//! OTLP/gRPC in and out (log records, the filter on an attribute),
//! sluice → sluice (an edge forwarding to an aggregator, two processes),
//! the representative pipeline (`representative.rs`) through sluice's
//! Cribl-style functions, through VRL, through rsyslog and through
//! syslog-ng, and the same workloads through Vector when its binary is given. Each target runs with
//! the same generator and receiver, one after another; the relay runs first
//! and last, and the ratio is to the mean of both runs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::peer_configs::{self, Router, Work};
use super::reduction::Reduction;
use super::representative;
use super::{Ctx, Report, bar};
use crate::generator::{Generator, Load, Protocol};
use crate::process::{Process, Usage, wait_listening};
use crate::receiver::aws::{self, Moto};
use crate::receiver::kafka::{Broker, TOPIC as KAFKA_TOPIC};
use crate::receiver::{self, Sink, free_port};
use crate::seq::Tracker;
use crate::sluice;

pub const NAME: &str = "throughput";

/// The one filter every router applies; every generated event passes it,
/// so every router delivers every event.
const FILTER: &str = "status >= 200";
/// The paths the comparison rows share with rsyslog and syslog-ng.
/// The target name of rows run by `--baseline`.
const BASELINE: &str = "sluice (baseline)";
const PASS_THROUGH: &str = "tcp → tcp, pass-through";
const JSON_FILTER: &str = "tcp → JSON parsed, filter → tcp";
const VRL_FILTER: &str = "(to_int(.status) ?? 0) >= 200";
/// The same filter on an OTLP log record, whose fields are attributes.
const OTLP_FILTER: &str = "attributes.status >= 200";

#[derive(Debug, Clone, Serialize, Default)]
pub struct Row {
    pub target: String,
    pub path: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub mb_per_s: f64,
    /// CPU cores the router process used on average.
    pub cpu_cores: f64,
    pub peak_rss_mb: f64,
    pub ratio_to_relay: f64,
    pub lost: u64,
}

impl Row {
    /// A row from what the receiver counted over `secs` of `cpu` seconds,
    /// out of `sent`, of which `expected` should arrive. A pipeline row's
    /// rate counts every event it processed: those that arrived and those
    /// its pipeline dropped on purpose.
    fn measured(
        (target, path): (&str, &str),
        tracker: &Tracker,
        secs: f64,
        cpu: f64,
        peak_rss: u64,
        (sent, expected): (u64, u64),
    ) -> Row {
        let events = tracker.received_events();
        let processed = events + (sent - expected);
        Row {
            target: target.into(),
            path: path.into(),
            events,
            seconds: secs,
            events_per_s: processed as f64 / secs,
            mb_per_s: tracker.received_bytes() as f64 / secs / 1e6,
            cpu_cores: cpu / secs,
            peak_rss_mb: peak_rss as f64 / 1e6,
            ratio_to_relay: 0.0,
            lost: expected.saturating_sub(events),
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Relay,
    /// tcp → tcp, no filter: what routing itself costs.
    SluicePass,
    SluiceTcp,
    /// The filter row with every line validated as JSON (`decoding: json`).
    SluiceJson,
    SluiceHttp,
    /// The same filter as an output router's rule instead of a route.
    SluiceRouter,
    VectorTcp,
    VectorHttp,
    /// tcp → filter → kafka (a Tansu broker), read back by a consumer.
    SluiceKafkaOut,
    /// tcp → filter → sqs / kinesis (moto), read back by a consumer.
    SluiceSqsOut,
    SluiceKinesisOut,
    /// OTLP/gRPC in, OTLP/gRPC out (log records; the filter on an attribute).
    SluiceOtlp,
    /// tcp → filter → an edge's `sluice` destination → an aggregator's
    /// `sluice` source → tcp: two processes, their CPU and memory added.
    SluiceForward,
    /// tcp → filter → tcp with the source serving TLS (a certificate made
    /// for the run): what TLS costs beside the plaintext row.
    SluiceTcpTls,
    /// tcp → filter → the representative pipeline → tcp, as Cribl-style
    /// functions and as VRL; and the same pipeline through rsyslog and
    /// syslog-ng (`representative.rs`).
    SluicePipeline,
    SluiceRemap,
    /// rsyslog or syslog-ng doing one of the rows' work, configured from
    /// `loadtest/peers/` (`peer_configs.rs`).
    Peer(Router, Work),
    /// tcp → filter → one volume-reduction function → tcp.
    SluiceReduce(Reduction),
    /// The syslog source (octet-counted RFC 5424 over TCP, parsed) and the
    /// statsd source (DogStatsD counters over TCP) → filter → tcp.
    SluiceSyslog,
    SluiceStatsd,
    /// Splunk HEC envelopes over HTTP → filter → tcp.
    SluiceHec,
    /// Fluent forward messages (Forward mode, 512 records each) → filter → tcp.
    SluiceFluent,
    /// Lines appended to a file, followed by the file source → filter → tcp.
    SluiceFile,
}

impl Target {
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Target::Relay => ("relay", "tcp → tcp, tokio copy loop"),
            Target::SluicePass => ("sluice", PASS_THROUGH),
            Target::SluiceTcp => ("sluice", "tcp → filter → tcp"),
            Target::SluiceJson => ("sluice", JSON_FILTER),
            Target::SluiceTcpTls => ("sluice", "tcp+tls → filter → tcp"),
            Target::SluiceHttp => ("sluice", "http → filter → http"),
            Target::SluiceRouter => ("sluice", "tcp → output router → tcp"),
            Target::VectorTcp => ("vector", "tcp → filter → tcp"),
            Target::VectorHttp => ("vector", "http → filter → http"),
            Target::SluiceKafkaOut => ("sluice", "tcp → filter → kafka"),
            Target::SluiceSqsOut => (
                "sluice",
                "tcp → filter → sqs (moto-bound: offered 300/s, 1 request at a time)",
            ),
            Target::SluiceKinesisOut => (
                "sluice",
                "tcp → filter → kinesis (moto-bound: offered 3000/s, 1 request at a time)",
            ),
            Target::SluiceOtlp => ("sluice", "otlp grpc → filter → otlp grpc"),
            Target::SluiceForward => ("sluice", "tcp → filter → sluice → sluice → tcp"),
            Target::SluicePipeline => (
                "sluice",
                "tcp → filter → pipeline (eval, mask, drop 10 %) → tcp",
            ),
            Target::SluiceRemap => ("sluice", "tcp → filter → pipeline (remap, VRL) → tcp"),
            Target::Peer(r, Work::PassThrough) => (r.name(), PASS_THROUGH),
            Target::Peer(r, Work::JsonFilter) => (r.name(), JSON_FILTER),
            Target::Peer(Router::Rsyslog, Work::Representative) => (
                "rsyslog",
                "tcp → mmjsonparse, set/unset, drop 10 % → JSON template → tcp",
            ),
            Target::Peer(Router::SyslogNg, Work::Representative) => (
                "syslog-ng",
                "tcp → json-parser, rewrite, drop 10 % → format-json → tcp",
            ),
            Target::SluiceReduce(r) => ("sluice", r.path()),
            Target::SluiceSyslog => (
                "sluice",
                "syslog (tcp, RFC 5424 octet-counted) → parse → filter → tcp",
            ),
            Target::SluiceStatsd => (
                "sluice",
                "statsd (tcp, ~80-byte DogStatsD lines) → metric events → filter → tcp",
            ),
            Target::SluiceHec => (
                "sluice",
                "splunk_hec (http, /event envelopes) → filter → tcp",
            ),
            Target::SluiceFluent => (
                "sluice",
                "fluent (tcp, Forward mode, MessagePack) → filter → tcp",
            ),
            Target::SluiceFile => (
                "sluice",
                "file (lines appended at up to 500k/s, followed, checkpointed) → filter → tcp",
            ),
        }
    }

    /// The route's filter: every generated event passes it.
    fn filter(self) -> &'static str {
        match self {
            Target::SluiceSyslog => r#"severity == "info""#,
            // The line is the event's `message`, as text.
            Target::SluiceFile => "exists(message)",
            Target::SluiceStatsd => r#"type == "counter""#,
            _ => FILTER,
        }
    }

    /// How many of `sent` (in blocks of `batch`) should arrive: a pipeline
    /// drops 10 %.
    fn expected(self, sent: u64, batch: u64) -> u64 {
        match self {
            Target::SluicePipeline
            | Target::SluiceRemap
            | Target::Peer(_, Work::Representative) => representative::kept(sent, batch),
            Target::SluiceReduce(r) => r.expected(sent, batch),
            _ => sent,
        }
    }

    /// Bound by a slow peer: what is queued in sluice when the load stops
    /// takes longer to drain.
    fn drain(self) -> Duration {
        match self {
            Target::SluiceSqsOut | Target::SluiceKinesisOut => Duration::from_secs(120),
            _ => Duration::from_secs(30),
        }
    }

    /// Events per second the generator offers (0: as fast as it can). A
    /// peer far slower than sluice gets a rate near what it takes: at full
    /// speed the sockets alone buffer minutes of its work, and moto's SQS
    /// slows with the square of its queue's depth.
    fn offered(self) -> u64 {
        match self {
            // Appending to a file never pushes back: unpaced, the writer
            // would fill the disk faster than any reader drains it.
            Target::SluiceFile => 500_000,
            Target::SluiceSqsOut => 300,
            Target::SluiceKinesisOut => 3000,
            _ => 0,
        }
    }

    /// Rows a `--baseline` binary runs too.
    fn compared(self) -> bool {
        matches!(
            self,
            Target::SluicePass
                | Target::SluiceTcp
                | Target::SluiceJson
                | Target::SluiceHttp
                | Target::SluiceOtlp
                | Target::SluiceForward
        )
    }

    /// Rows whose output must be the input, byte for byte and in each
    /// connection's order: checked before they are timed (`verify`).
    /// Rows whose ceiling is a peer on the same cores (Kafka, moto).
    fn peer_bound(self) -> bool {
        matches!(
            self,
            Target::SluiceKafkaOut | Target::SluiceSqsOut | Target::SluiceKinesisOut
        )
    }

    fn verified(self) -> bool {
        matches!(
            self,
            Target::Relay
                | Target::SluicePass
                | Target::SluiceTcp
                | Target::SluiceJson
                | Target::Peer(_, Work::PassThrough | Work::JsonFilter)
        )
    }

    /// How many times the usual length it runs: the distinct-keys row runs
    /// long enough to offer its dedupe ten million new keys.
    fn length(self) -> f64 {
        match self {
            Target::SluiceReduce(Reduction::DedupeDistinct) => 3.0,
            _ => 1.0,
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Target::SluiceHttp | Target::VectorHttp => Protocol::Http,
            Target::SluiceOtlp => Protocol::Otlp,
            Target::SluiceSyslog => Protocol::Syslog,
            Target::SluiceStatsd => Protocol::Statsd,
            Target::SluiceHec => Protocol::Hec,
            Target::SluiceFluent => Protocol::Fluent,
            Target::SluiceFile => Protocol::File,
            _ => Protocol::Tcp,
        }
    }
}

/// How far above the plain row's peak RSS the distinct-keys dedupe row may
/// go: its 5,000 fingerprints are half a megabyte; the rest is allocator
/// noise.
const DEDUPE_RSS_MARGIN_MB: f64 = 32.0;

const TLS_CERT: &str = "tls.pem";
const TLS_KEY: &str = "tls.key";

/// A CA and a certificate for 127.0.0.1 signed by it, written to `dir` for
/// the TLS row's source; the CA (DER) for the generator to trust.
fn tls_files(dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "loadtest CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &ca)?;
    std::fs::write(dir.join(TLS_CERT), cert.pem())?;
    std::fs::write(dir.join(TLS_KEY), key.serialize_pem())?;
    Ok(ca.der().to_vec())
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let dir = ctx.dir(NAME)?;
    let seconds = ctx.secs(15.0, 2.0);
    let mut targets = vec![
        Target::Relay,
        // The rows side by side with rsyslog and syslog-ng.
        Target::SluicePass,
        Target::Peer(Router::Rsyslog, Work::PassThrough),
        Target::Peer(Router::SyslogNg, Work::PassThrough),
        Target::SluiceJson,
        Target::Peer(Router::Rsyslog, Work::JsonFilter),
        Target::Peer(Router::SyslogNg, Work::JsonFilter),
        Target::SluiceTcp,
        Target::SluiceTcpTls,
        Target::SluiceHttp,
        Target::SluiceRouter,
        Target::SluiceOtlp,
        Target::SluiceForward,
        Target::SluiceSyslog,
        Target::SluiceStatsd,
        Target::SluiceHec,
        Target::SluiceFluent,
        Target::SluiceFile,
        Target::SluicePipeline,
        Target::SluiceRemap,
        Target::Peer(Router::Rsyslog, Work::Representative),
        Target::Peer(Router::SyslogNg, Work::Representative),
        Target::SluiceReduce(Reduction::Sample),
        Target::SluiceReduce(Reduction::Throttle),
        Target::SluiceReduce(Reduction::Dedupe),
        Target::SluiceReduce(Reduction::DedupeDistinct),
        Target::SluiceReduce(Reduction::Aggregate),
        Target::SluiceReduce(Reduction::LogToMetric),
    ];
    if ctx.vector.is_some() {
        targets.extend([Target::VectorTcp, Target::VectorHttp]);
    }
    targets.extend([
        Target::SluiceKafkaOut,
        Target::SluiceSqsOut,
        Target::SluiceKinesisOut,
    ]);
    targets.push(Target::Relay);
    // Each target with the binary it runs: the baseline runs the rows
    // performance work changes, right after the current binary's.
    let mut runs: Vec<(Target, bool)> = Vec::new();
    for t in targets {
        let (_, path) = t.label();
        if !matches!(t, Target::Relay)
            && !ctx.rows.is_empty()
            && !ctx.rows.iter().any(|r| path.contains(r.as_str()))
        {
            continue;
        }
        runs.push((t, false));
        if ctx.baseline.is_some() && t.compared() {
            runs.push((t, true));
        }
    }
    let base_ctx = Ctx {
        sluice: ctx.baseline.clone().unwrap_or_else(|| ctx.sluice.clone()),
        ..ctx.clone()
    };
    let started = Instant::now();
    let mut verified = Vec::new();
    // One broker for both Kafka rows: kafka → tcp reads what tcp → kafka wrote.
    let kafka_port = free_port()?.port();
    let mut broker = Broker::new(&dir.join("kafka"), kafka_port, kafka_port);
    let brokers = format!("127.0.0.1:{kafka_port}");
    // One moto for the SQS and Kinesis rows, started before the first.
    let mut moto = None;
    let mut rounds: Vec<Vec<Row>> = Vec::new();
    for round in 0..ctx.rounds.max(1) {
        let mut rows = Vec::new();
        for (i, (t, base)) in runs.iter().enumerate() {
            // A peer's ceiling is the peer's, and kafka → tcp reads what
            // the first round wrote: those rows run once.
            if round > 0 && t.peer_bound() {
                continue;
            }
            let ctx = if *base { &base_ctx } else { ctx };
            let sub = match round {
                0 => dir.join(format!("{i}")),
                r => dir.join(format!("round{r}-{i}")),
            };
            std::fs::create_dir_all(&sub)?;
            let peers = Peers {
                brokers: &brokers,
                moto: None,
            };
            if matches!(t, Target::SluiceSqsOut | Target::SluiceKinesisOut) {
                if moto.is_none() {
                    moto = Some(Moto::start(&dir.join("moto"), free_port()?.port()).await?);
                }
                let peers = Peers {
                    moto: moto.as_ref(),
                    ..peers
                };
                rows.push(one(ctx, *t, &sub, seconds, &peers).await?);
            } else if matches!(t, Target::SluiceKafkaOut) {
                broker.start().await?;
                let out = one(ctx, *t, &sub, seconds, &peers).await?;
                let written = out.events;
                rows.push(out);
                let sub = dir.join(format!("{i}-in"));
                std::fs::create_dir_all(&sub)?;
                rows.push(kafka_in(ctx, &sub, &brokers, written).await?);
                broker.kill();
            } else {
                if round == 0 && t.verified() {
                    let mut v = verify(ctx, *t, &sub, &peers).await?;
                    if *base {
                        v.target = BASELINE.into();
                    }
                    verified.push(v);
                }
                rows.push(one(ctx, *t, &sub, seconds, &peers).await?);
            }
            if *base && let Some(r) = rows.last_mut() {
                r.target = BASELINE.into();
            }
        }
        to_relay(&mut rows);
        rounds.push(rows);
    }
    let rows = medians(&rounds);
    let mut report = Report {
        name: NAME.into(),
        description: format!(
            "Maximum rate, 200-byte JSON events, {seconds} s per target; routers apply `{FILTER}`. Ratios are to the raw relay, measured first and last in the same run."
        ),
        seconds: started.elapsed().as_secs_f64(),
        ..Report::default()
    };
    if rounds.len() > 1 {
        report.description.push_str(&format!(
            " Each row is the median of {} rounds, its ratio taken against its own round's relay (the peer-bound Kafka, SQS and Kinesis rows run once); peak RSS and loss are the worst round's.",
            rounds.len()
        ));
    }
    for r in rounds.iter().flatten() {
        if r.lost > 0 {
            report
                .failures
                .push(format!("{} {}: {} events lost", r.target, r.path, r.lost));
        }
        if r.events == 0 {
            report
                .failures
                .push(format!("{} {}: nothing arrived", r.target, r.path));
        }
    }
    // A bounded dedupe offered a new key per event keeps its memory: its
    // row's peak RSS stays near the row without a pipeline.
    let rss = |path: &str| {
        rows.iter()
            .find(|r| r.target == "sluice" && r.path == path)
            .map(|r| (r.events, r.peak_rss_mb))
    };
    if let (Some((_, plain)), Some((keys, deduped))) = (
        rss(Target::SluiceTcp.label().1),
        rss(Reduction::DedupeDistinct.path()),
    ) {
        report.notes.push(format!(
            "dedupe offered {keys} distinct keys: peak RSS {deduped:.0} MB, {plain:.0} MB without a pipeline"
        ));
        if deduped > plain + DEDUPE_RSS_MARGIN_MB {
            report.failures.push(format!(
                "a dedupe bounded at 5,000 grew to {deduped:.0} MB with {keys} distinct keys ({plain:.0} MB without it)"
            ));
        }
    }
    for (i, round) in rounds.iter().enumerate() {
        let relays = relay_rates(round);
        if relays.len() == 2 && relays[0] > 0.0 {
            let which = if rounds.len() > 1 {
                format!("round {}: ", i + 1)
            } else {
                String::new()
            };
            report.notes.push(format!(
                "{which}relay first {:.0} events/s, last {:.0} events/s (drift {:+.0} %)",
                relays[0],
                relays[1],
                (relays[1] / relays[0] - 1.0) * 100.0
            ));
        }
    }
    for v in &verified {
        // rsyslog with two workers reorders a connection's lines, and so
        // does a baseline from before sluice kept order: what they do is
        // reported (the table), not a failure of the run.
        let ours = v.target == "sluice" || v.target == "relay";
        if !v.passed(ours) {
            report.failures.push(format!(
                "{} {}: of {} events checked, {} lost, {} duplicated, {} altered, {} out of their connection's order",
                v.target, v.path, v.events, v.lost, v.duplicates, v.altered, v.out_of_order
            ));
        }
    }
    report.throughput = rows;
    report.verified = verified;
    report.passed = report.failures.is_empty();
    Ok(report)
}

fn relay_rates(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.target == "relay")
        .map(|r| r.events_per_s)
        .collect()
}

/// Each row's ratio to the mean of its round's relay rows.
fn to_relay(rows: &mut [Row]) {
    let relays = relay_rates(rows);
    let relay = relays.iter().sum::<f64>() / relays.len().max(1) as f64;
    for r in rows {
        r.ratio_to_relay = if relay > 0.0 {
            r.events_per_s / relay
        } else {
            0.0
        };
    }
}

/// The first round's rows, each with its median over the rounds that ran
/// it (a row is the same target and path at the same occurrence: the relay
/// runs first and last); peak RSS and loss are the worst round's.
fn medians(rounds: &[Vec<Row>]) -> Vec<Row> {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    let nth = |rows: &[Row], like: &Row, n: usize| {
        rows.iter()
            .filter(|r| r.target == like.target && r.path == like.path)
            .nth(n)
            .cloned()
    };
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(k, row)| {
            let n = first[..k]
                .iter()
                .filter(|r| r.target == row.target && r.path == row.path)
                .count();
            let same: Vec<Row> = rounds.iter().filter_map(|r| nth(r, row, n)).collect();
            let of = |f: fn(&Row) -> f64| median(same.iter().map(f).collect());
            Row {
                events: of(|r| r.events as f64) as u64,
                seconds: of(|r| r.seconds),
                events_per_s: of(|r| r.events_per_s),
                mb_per_s: of(|r| r.mb_per_s),
                cpu_cores: of(|r| r.cpu_cores),
                ratio_to_relay: of(|r| r.ratio_to_relay),
                peak_rss_mb: same.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max),
                lost: same.iter().map(|r| r.lost).max().unwrap_or(0),
                ..row.clone()
            }
        })
        .collect()
}

/// The real peers a row may write to.
#[derive(Clone, Copy)]
struct Peers<'a> {
    brokers: &'a str,
    moto: Option<&'a Moto>,
}

impl Peers<'_> {
    fn moto(&self) -> anyhow::Result<&Moto> {
        self.moto
            .context("no moto started for an SQS or Kinesis row")
    }
}

/// Bytes per generated event.
const EVENT_BYTES: usize = 200;
/// Events per write of a TCP connection.
const TCP_BLOCK: usize = 512;

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    pub target: String,
    pub path: String,
    pub events: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub altered: u64,
    pub out_of_order: u64,
}

impl Verified {
    /// Everything arrived once, unaltered, and (when `ordered`) in order.
    fn passed(&self, ordered: bool) -> bool {
        self.events > 0
            && self.lost == 0
            && self.duplicates == 0
            && self.altered == 0
            && (!ordered || self.out_of_order == 0)
    }
}

/// Before a row is timed: half a second of its load at full speed over two
/// connections, every line numbered, each checked at the receiver against
/// the bytes sent and its connection's order.
async fn verify(
    ctx: &Ctx,
    target: Target,
    dir: &Path,
    peers: &Peers<'_>,
) -> anyhow::Result<Verified> {
    let dir = dir.join("verify");
    std::fs::create_dir_all(&dir)?;
    let tracker = Arc::new(Tracker::new());
    tracker.check(EVENT_BYTES, TCP_BLOCK as u64);
    let rx_addr = free_port()?;
    let _receiver = receiver::tcp::spawn(
        rx_addr,
        crate::fault::Schedule::none(Instant::now()),
        Sink::new(tracker.clone(), true),
    )
    .await?;
    let input = free_port()?;
    let mut process = start(ctx, target, &dir, input, rx_addr, peers).await?;
    let load = Load {
        protocol: Protocol::Tcp,
        target: input,
        rate: 0,
        event_bytes: EVENT_BYTES,
        connections: 2,
        duration: Duration::from_millis(500),
        batch: TCP_BLOCK,
        track_ids: true,
        tls_ca: None,
        file: None,
    };
    let summary = Generator::start(load, tracker.clone()).wait().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while tracker.received_events() < summary.sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.terminate();
    let c = tracker.compare();
    let (name, path) = target.label();
    Ok(Verified {
        target: name.into(),
        path: path.into(),
        events: c.sent,
        lost: c.lost,
        duplicates: c.duplicates + c.unexpected,
        altered: c.altered + c.unreadable,
        out_of_order: c.out_of_order,
    })
}

async fn one(
    ctx: &Ctx,
    target: Target,
    dir: &Path,
    seconds: f64,
    peers: &Peers<'_>,
) -> anyhow::Result<Row> {
    let tracker = Arc::new(Tracker::new());
    let sink = Sink::new(tracker.clone(), false);
    let stats = sink.stats.clone();
    let rx_addr = free_port()?;
    let http = target.protocol() == Protocol::Http;
    let kafka = matches!(target, Target::SluiceKafkaOut);
    let reading = Arc::new(AtomicBool::new(true));
    let _reading = Stop(reading.clone());
    let _receiver = if kafka {
        receiver::kafka::consume(
            peers.brokers,
            sink,
            reading.clone(),
            receiver::kafka::position(),
        )?;
        None
    } else if matches!(target, Target::SluiceSqsOut) {
        aws::consume_sqs(peers.moto()?, sink, reading.clone());
        None
    } else if matches!(target, Target::SluiceKinesisOut) {
        aws::consume_kinesis(peers.moto()?, sink, reading.clone());
        None
    } else if matches!(target, Target::SluiceOtlp) {
        Some(receiver::otlp::spawn(rx_addr, sink).await?)
    } else if http {
        Some(
            receiver::http::spawn(rx_addr, crate::fault::Schedule::none(Instant::now()), sink)
                .await?,
        )
    } else {
        Some(
            receiver::tcp::spawn(rx_addr, crate::fault::Schedule::none(Instant::now()), sink)
                .await?,
        )
    };
    let input = free_port()?;
    let tls_ca = match target {
        Target::SluiceTcpTls => Some(Arc::new(tls_files(dir)?)),
        _ => None,
    };
    let mut process = start(ctx, target, dir, input, rx_addr, peers).await?;
    let (name, path) = target.label();
    let before = process.usage();
    // HEC is HTTP from the client's side: requests of the HTTP row's size.
    let requests = http || target.protocol() == Protocol::Hec;
    let batch = if requests { 1000 } else { TCP_BLOCK };
    let load = Load {
        protocol: target.protocol(),
        target: input,
        rate: target.offered(),
        event_bytes: EVENT_BYTES,
        // One writer appends to a file; sockets get two connections.
        connections: match target.protocol() {
            Protocol::File => 1,
            _ if requests => 4,
            _ => 2,
        },
        duration: Duration::from_secs_f64(seconds * target.length()),
        batch,
        track_ids: matches!(target, Target::SluiceReduce(r) if r.distinct()),
        tls_ca,
        file: Some(dir.join("in.log")),
    };
    let pb = bar(&format!("{name} {path}"), seconds * target.length());
    let started = Instant::now();
    let generator = Generator::start(load, tracker.clone());
    let mut peak_rss = 0u64;
    while !generator.finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let u = process.usage();
        peak_rss = peak_rss.max(u.rss_bytes);
        pb.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
        pb.set_message(format!("{} events", tracker.received_events()));
    }
    let summary = generator.wait().await;
    let sending_ended = Instant::now();
    // Drain: everything sent must arrive (what a pipeline keeps of it).
    let expected = target.expected(summary.sent, batch as u64);
    let deadline = Instant::now() + target.drain();
    while tracker.received_events() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak_rss = peak_rss.max(process.usage().rss_bytes);
    }
    pb.finish_and_clear();
    // Until the last arrival, or the end of sending for a row whose
    // pipeline removed the rest (a dedupe's repeats: nothing arrives after
    // the first block, yet every event sent was processed).
    let end = stats
        .last_event()
        .map_or(sending_ended, |last| last.max(sending_ended));
    let secs = end
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-3);
    let after = process.usage();
    process.terminate();
    Ok(Row::measured(
        (name, path),
        &tracker,
        secs,
        after.cpu_seconds - before.cpu_seconds,
        peak_rss,
        (summary.sent, expected),
    ))
}

/// The processes of one row (two for sluice → sluice, the one taking the
/// load first): their CPU and memory added up.
struct Processes(Vec<Process>);

impl Processes {
    fn usage(&self) -> Usage {
        self.0
            .iter()
            .map(Process::usage)
            .fold(Usage::default(), |a, u| Usage {
                cpu_seconds: a.cpu_seconds + u.cpu_seconds,
                rss_bytes: a.rss_bytes + u.rss_bytes,
            })
    }

    /// In order, so the first drains into the next.
    fn terminate(&mut self) {
        for p in &mut self.0 {
            let _ = p.terminate(Duration::from_secs(30));
        }
    }
}

async fn start(
    ctx: &Ctx,
    target: Target,
    dir: &Path,
    input: SocketAddr,
    output: SocketAddr,
    peers: &Peers<'_>,
) -> anyhow::Result<Processes> {
    let log = dir.join("process.log");
    // Started before the one taking the load, which sends to them.
    let mut behind = Vec::new();
    let mut p = match target {
        Target::Relay => {
            let exe = std::env::current_exe().context("find the loadtest binary")?;
            Process::spawn(
                "relay",
                &exe,
                &[
                    "relay".into(),
                    "--listen".into(),
                    input.to_string(),
                    "--to".into(),
                    output.to_string(),
                ],
                &log,
            )?
        }
        Target::SluicePass
        | Target::SluiceTcp
        | Target::SluiceJson
        | Target::SluiceTcpTls
        | Target::SluiceSyslog
        | Target::SluiceStatsd
        | Target::SluiceHec
        | Target::SluiceFluent
        | Target::SluiceFile
        | Target::SluiceHttp
        | Target::SluiceKafkaOut
        | Target::SluiceSqsOut
        | Target::SluiceKinesisOut => {
            let http = matches!(target, Target::SluiceHttp);
            let out = match target {
                Target::SluiceHttp => json!({ "type": "http", "url": format!("http://{output}/") }),
                Target::SluiceKafkaOut => {
                    json!({ "type": "kafka", "brokers": [peers.brokers], "topic": KAFKA_TOPIC })
                }
                Target::SluiceSqsOut => {
                    let moto = peers.moto()?;
                    let mut d = moto.destination();
                    d["type"] = "sqs".into();
                    d["queue_url"] = moto.queue_url.clone().into();
                    d["request"] = json!({ "concurrency": 1 });
                    d
                }
                Target::SluiceKinesisOut => {
                    let mut d = peers.moto()?.destination();
                    d["type"] = "kinesis".into();
                    d["stream"] = aws::STREAM.into();
                    // moto numbers concurrent PutRecords with one unlocked
                    // counter (duplicate sequence numbers lose records).
                    d["request"] = json!({ "concurrency": 1 });
                    d
                }
                _ => json!({ "type": "tcp", "address": output.to_string() }),
            };
            // A peer-bound row holds a small lane, so what is queued when
            // the load stops drains in seconds at the peer's pace.
            let mut out = out;
            if target.drain() > Duration::from_secs(30) {
                out["queue"] = json!({ "max_events": 1000 });
            }
            let api = free_port()?;
            let mut source = match target {
                Target::SluiceSyslog => json!({ "type": "syslog", "address": input.to_string() }),
                Target::SluiceStatsd => {
                    json!({ "type": "statsd", "mode": "tcp", "address": input.to_string() })
                }
                Target::SluiceFluent => json!({ "type": "fluent", "address": input.to_string() }),
                Target::SluiceFile => json!({
                    "type": "file",
                    "include": [dir.join("in.log").display().to_string()],
                }),
                Target::SluiceHec => json!({
                    "type": "splunk_hec",
                    "address": input.to_string(),
                    "tokens": ["loadtest"],
                }),
                Target::SluiceJson => {
                    json!({ "type": "tcp", "address": input.to_string(), "decoding": "json" })
                }
                _ => {
                    json!({ "type": if http { "http" } else { "tcp" }, "address": input.to_string() })
                }
            };
            let route = match target {
                Target::SluicePass => json!({ "name": "all", "destination": "out" }),
                _ => json!({ "name": "filtered", "filter": target.filter(), "destination": "out" }),
            };
            if matches!(target, Target::SluiceTcpTls) {
                source["tls"] = json!({
                    "cert_file": dir.join(TLS_CERT).display().to_string(),
                    "key_file": dir.join(TLS_KEY).display().to_string(),
                });
            }
            let config = sluice::config(
                api,
                dir,
                json!({ "in": source }),
                json!([route]),
                json!({ "out": out }),
            );
            let s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
            s.process
        }
        Target::SluiceReduce(r) => {
            let api = free_port()?;
            let mut config = sluice::config(
                api,
                dir,
                json!({ "in": { "type": "tcp", "address": input.to_string() } }),
                json!([{ "name": "filtered", "filter": FILTER, "destination": "out", "pipeline": "reduce" }]),
                json!({ "out": { "type": "tcp", "address": output.to_string() } }),
            );
            config["pipelines"] = json!({ "reduce": r.pipeline() });
            let s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
            s.process
        }
        Target::SluicePipeline | Target::SluiceRemap => {
            let api = free_port()?;
            let mut config = sluice::config(
                api,
                dir,
                json!({ "in": { "type": "tcp", "address": input.to_string() } }),
                json!([{ "name": "filtered", "filter": FILTER, "destination": "out", "pipeline": "representative" }]),
                json!({ "out": { "type": "tcp", "address": output.to_string() } }),
            );
            config["pipelines"] = json!({
                "representative": if matches!(target, Target::SluiceRemap) {
                    representative::remap()
                } else {
                    representative::cribl()
                },
            });
            let s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
            s.process
        }
        Target::Peer(router, work) => {
            let name = router.name();
            let text = peer_configs::config(router, work, dir, input, output);
            let path = dir.join(format!("{name}.conf"));
            std::fs::write(&path, text)?;
            crate::receiver::peer(name, dir, input.port(), &[path.display().to_string()]).await?
        }
        Target::SluiceOtlp => {
            let api = free_port()?;
            let config = sluice::config(
                api,
                dir,
                json!({ "in": { "type": "otlp", "grpc_address": input.to_string() } }),
                json!([{ "name": "filtered", "filter": OTLP_FILTER, "destination": "out" }]),
                json!({ "out": { "type": "otlp", "endpoint": format!("http://{output}") } }),
            );
            let s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
            s.process
        }
        Target::SluiceForward => {
            let (api, forward) = (free_port()?, free_port()?);
            let agg_dir = dir.join("aggregator");
            std::fs::create_dir_all(&agg_dir)?;
            let config = sluice::config(
                api,
                &agg_dir,
                json!({ "edge": { "type": "sluice", "address": forward.to_string() } }),
                json!([{ "name": "all", "destination": "out" }]),
                json!({ "out": { "type": "tcp", "address": output.to_string() } }),
            );
            let aggregator = sluice::Sluice::start(&ctx.sluice, &agg_dir, api, &config).await?;
            behind.push(aggregator.process);
            let api = free_port()?;
            let config = sluice::config(
                api,
                dir,
                json!({ "in": { "type": "tcp", "address": input.to_string() } }),
                json!([{ "name": "filtered", "filter": FILTER, "destination": "out" }]),
                json!({ "out": { "type": "sluice", "address": forward.to_string() } }),
            );
            let s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
            s.process
        }
        Target::SluiceRouter => {
            let api = free_port()?;
            let config = sluice::config(
                api,
                dir,
                json!({ "in": { "type": "tcp", "address": input.to_string() } }),
                json!([{ "name": "all", "destination": "fanout" }]),
                json!({
                    "fanout": {
                        "type": "output_router",
                        "rules": [{ "filter": FILTER, "destination": "out" }],
                    },
                    "out": { "type": "tcp", "address": output.to_string() },
                }),
            );
            let s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
            s.process
        }
        Target::VectorTcp | Target::VectorHttp => {
            let bin = ctx.vector.as_ref().context("no Vector binary")?;
            let config = vector_config(matches!(target, Target::VectorHttp), dir, input, output);
            let path = dir.join("vector.json");
            std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
            Process::spawn(
                "vector",
                bin,
                &[
                    "--config-json".into(),
                    path.display().to_string(),
                    "--quiet".into(),
                ],
                &log,
            )?
        }
    };
    // A file source listens on nothing: sluice reported ready (its API) is enough.
    if target.protocol() != Protocol::File {
        wait_listening(input, &mut p, Duration::from_secs(30)).await?;
    }
    let mut all = vec![p];
    all.extend(behind);
    Ok(Processes(all))
}

/// Stops a Kafka reader thread when dropped.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// kafka → filter → tcp: a Kafka source reading the `expected` records the
/// tcp → kafka row wrote, from the beginning, as fast as it can.
async fn kafka_in(ctx: &Ctx, dir: &Path, brokers: &str, expected: u64) -> anyhow::Result<Row> {
    let tracker = Arc::new(Tracker::new());
    let sink = Sink::new(tracker.clone(), false);
    let stats = sink.stats.clone();
    let rx_addr = free_port()?;
    let _receiver =
        receiver::tcp::spawn(rx_addr, crate::fault::Schedule::none(Instant::now()), sink).await?;
    let api = free_port()?;
    let config = sluice::config(
        api,
        dir,
        json!({ "in": {
            "type": "kafka", "brokers": [brokers], "topics": [KAFKA_TOPIC],
            "group_id": "throughput", "start": "earliest",
            // Tansu answers a JoinGroup after half the session timeout.
            "librdkafka_options": { "session.timeout.ms": 6000, "heartbeat.interval.ms": 500 },
        } }),
        json!([{ "name": "filtered", "filter": FILTER, "destination": "out" }]),
        json!({ "out": { "type": "tcp", "address": rx_addr.to_string() } }),
    );
    let mut s = sluice::Sluice::start(&ctx.sluice, dir, api, &config).await?;
    let pb = bar("sluice kafka", 10.0);
    // Timed from the first event: the group join is not throughput.
    let deadline = Instant::now() + Duration::from_secs(120);
    while tracker.received_events() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let before = s.process.usage();
    let mut peak_rss = 0u64;
    while tracker.received_events() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak_rss = peak_rss.max(s.process.usage().rss_bytes);
        pb.set_message(format!("{} events", tracker.received_events()));
    }
    pb.finish_and_clear();
    let end = stats.last_event().unwrap_or_else(Instant::now);
    let secs = end
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-3);
    let after = s.process.usage();
    let _ = s.process.terminate(Duration::from_secs(30));
    Ok(Row::measured(
        ("sluice", "kafka → filter → tcp"),
        &tracker,
        secs,
        after.cpu_seconds - before.cpu_seconds,
        peak_rss,
        (expected, expected),
    ))
}

/// The same pipeline for Vector: decode JSON, the same filter in VRL,
/// encode JSON, newline-delimited.
fn vector_config(
    http: bool,
    dir: &Path,
    input: SocketAddr,
    output: SocketAddr,
) -> serde_json::Value {
    let framing = json!({ "method": "newline_delimited" });
    let source = if http {
        json!({ "type": "http_server", "address": input.to_string(), "decoding": { "codec": "json" }, "framing": framing })
    } else {
        json!({ "type": "socket", "mode": "tcp", "address": input.to_string(), "decoding": { "codec": "json" }, "framing": framing })
    };
    let sink = if http {
        json!({ "type": "http", "inputs": ["filtered"], "uri": format!("http://{output}/"), "encoding": { "codec": "json" }, "framing": framing })
    } else {
        json!({ "type": "socket", "mode": "tcp", "inputs": ["filtered"], "address": output.to_string(), "encoding": { "codec": "json" }, "framing": framing })
    };
    json!({
        "data_dir": dir.display().to_string(),
        "api": { "enabled": false },
        "sources": { "in": source },
        "transforms": { "filtered": { "type": "filter", "inputs": ["in"], "condition": VRL_FILTER } },
        "sinks": { "out": sink },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, path: &str, rate: f64, rss: f64, lost: u64) -> Row {
        Row {
            target: target.into(),
            path: path.into(),
            events_per_s: rate,
            peak_rss_mb: rss,
            lost,
            ..Row::default()
        }
    }

    #[test]
    fn rounds_give_each_row_its_median_against_its_own_relay() {
        // The machine twice as fast in the second round: the row's ratio
        // holds, its rate does not.
        let round = |speed: f64, rss: f64, lost: u64| {
            let mut rows = vec![
                row("relay", "r", 10.0 * speed, 9.0, 0),
                row("sluice", "p", 5.0 * speed, rss, lost),
                row("relay", "r", 10.0 * speed, 9.0, 0),
            ];
            to_relay(&mut rows);
            rows
        };
        let mut third = round(1.5, 40.0, 0);
        third[0].events_per_s = 20.0; // the first relay alone faster
        to_relay(&mut third);
        let rows = medians(&[round(1.0, 41.0, 0), round(2.0, 50.0, 3), third]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].events_per_s, 7.5);
        // Ratios 0.5, 0.5 and 7.5/17.5: the median is 0.5, whatever the
        // machine's speed in each round.
        assert_eq!(rows[1].ratio_to_relay, 0.5);
        assert_eq!(rows[1].peak_rss_mb, 50.0);
        assert_eq!(rows[1].lost, 3);
        // The relay's first and last rows stay apart.
        assert_eq!(rows[0].events_per_s, 20.0);
        assert_eq!(rows[2].events_per_s, 15.0);
        // A row the later rounds skip (peer-bound) keeps its one value.
        let mut once = round(1.0, 41.0, 0);
        once.insert(2, row("sluice", "kafka", 0.3, 50.0, 0));
        let rows = medians(&[once, round(2.0, 41.0, 0)]);
        assert_eq!(rows[2].events_per_s, 0.3);
        assert_eq!(rows[1].events_per_s, 7.5);
    }
}
