//! `type: kafka` — a consumer in a group: the group's members share the
//! topics' partitions, so several sluice instances with one `group_id`
//! scale out on Kafka.
//!
//! At least once: each batch carries an acknowledgement, and a message's
//! offset is stored for commit only after every destination it was routed
//! to has delivered it or written it to its persistent queue, in read order
//! (`offsets.rs`). librdkafka commits stored offsets every `commit_interval`
//! and when partitions are revoked, so a rebalance hands the next owner
//! exactly what is not yet acknowledged.
//!
//! Backpressure: while a batch waits for room in a `block` destination the
//! assigned partitions are paused and the consumer keeps polling (the group
//! keeps it as a member); nothing more is fetched, so memory stays bounded.

mod offsets;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::FutureExt;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::decoding::{Decoding, is_json};
use super::writer::json_string;
use super::{Detail, MAX_BATCH, SourceContext};
use crate::config::Validate;
use crate::config::units::Dur;
use crate::event::{Ack, Batch, Event};
use crate::kafka::{Connection, KafkaTls, OptionValue, Sasl};
use crate::metrics::{Metrics, RejectReason};
use offsets::{Offsets, Pending};

crate::source_config! {
    pub struct KafkaConfig {
        pub brokers: Vec<String>,
        pub topics: Vec<String>,
        pub group_id: String,
        /// Where a group with no committed offset starts: `earliest` (default)
        /// or `latest`.
        #[serde(default)]
        pub start: Start,
        /// How often stored offsets are committed. Default 1 s.
        #[serde(default)]
        pub commit_interval: Option<Dur>,
        /// `auto` (default), `json` (other values are malformed) or `text`.
        #[serde(default)]
        pub decoding: Decoding,
        /// Add the record's topic, partition, offset, timestamp, key and headers
        /// to each event as `_kafka`. Default true.
        #[serde(default = "yes")]
        pub metadata: bool,
        #[serde(default)]
        pub tls: Option<KafkaTls>,
        #[serde(default)]
        pub sasl: Option<Sasl>,
        /// Any other librdkafka consumer setting.
        #[serde(default)]
        pub librdkafka_options: BTreeMap<String, OptionValue>,
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

/// Consumer settings sluice derives from its own keys.
const OWNED: &[(&str, &str)] = &[
    ("group.id", "group_id"),
    ("auto.offset.reset", "start"),
    ("enable.auto.commit", "sluice (commits after delivery)"),
    (
        "enable.auto.offset.store",
        "sluice (commits after delivery)",
    ),
    ("auto.commit.interval.ms", "commit_interval"),
];

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), String> {
        self.connection().validate(OWNED)?;
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics: at least one topic name is needed".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id must not be empty".into());
        }
        if self
            .commit_interval
            .is_some_and(|d| d.get() < Duration::from_millis(10))
        {
            return Err("commit_interval must be at least 10ms".into());
        }
        Ok(())
    }
}

impl KafkaConfig {
    fn connection(&self) -> Connection<'_> {
        Connection {
            brokers: &self.brokers,
            tls: self.tls.as_ref(),
            sasl: self.sasl.as_ref(),
            options: &self.librdkafka_options,
        }
    }
}

/// How long a batch may wait for room before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_millis(200);

/// What librdkafka's threads (rebalances, statistics) share with the tasks.
struct Shared {
    id: Arc<str>,
    metrics: Metrics,
    /// Bumped by every rebalance: acknowledgements of batches read before
    /// it store nothing (their partitions may belong to another member now).
    generation: AtomicU64,
    /// The source is waiting for room: newly assigned partitions start paused.
    paused: AtomicBool,
    assignment: Mutex<Vec<(String, i32)>>,
    /// Every partition this source has read: its gauges.
    partitions: Mutex<BTreeMap<(String, i32), PartitionGauges>>,
    /// Client and consumer errors, logged once per cause: librdkafka
    /// reports a missing broker through both, many times a second.
    errors: crate::repeats::Repeats,
    commit_errors: crate::repeats::Repeats,
}

struct PartitionGauges {
    lag: Gauge,
    committed_gauge: Gauge,
    /// The last committed offset (-1: none yet).
    committed: i64,
}

impl PartitionGauges {
    fn commit(&mut self, offset: i64) {
        self.committed = offset;
        self.committed_gauge.set(offset);
    }
}

impl Shared {
    /// A client or consumer error, logged once a minute per cause with how
    /// often it happened in between.
    fn failed(&self, error: &rdkafka::error::KafkaError, reason: &str) {
        if let Some(repeated) = self.errors.occurred(&crate::kafka::cause(error)) {
            tracing::warn!(%error, %reason, repeated, "kafka source error (logged once a minute per cause)");
        }
    }

    fn gauges(&self, topic: &str, partition: i32) -> PartitionGauges {
        let (lag, committed_gauge) = self.metrics.kafka_partition(&self.id, topic, partition);
        PartitionGauges {
            lag,
            committed_gauge,
            committed: -1,
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // Every critical section leaves the data consistent.
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Context(Arc<Shared>);

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.0.failed(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let s = &self.0;
        let mut partitions = Shared::lock(&s.partitions);
        for ((topic, partition), p) in partitions.iter_mut() {
            let Some(stats) = statistics
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
            else {
                continue;
            };
            // Lag against what sluice committed (librdkafka's own figure is
            // -1 until it has fetched a committed offset itself).
            if stats.hi_offset >= 0 && p.committed >= 0 {
                p.lag.set((stats.hi_offset - p.committed).max(0));
            } else if stats.consumer_lag >= 0 {
                p.lag.set(stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = %names(tpl), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let list: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(partitions = %names(tpl), "partitions assigned");
                let mut partitions = Shared::lock(&self.0.partitions);
                for (t, p) in &list {
                    partitions
                        .entry((t.clone(), *p))
                        .or_insert_with(|| self.0.gauges(t, *p));
                }
                drop(partitions);
                *Shared::lock(&self.0.assignment) = list;
                if self.0.paused.load(Ordering::Acquire)
                    && let Err(e) = consumer.pause(tpl)
                {
                    tracing::warn!(error = %e, "cannot pause newly assigned partitions");
                }
            }
            Rebalance::Revoke(_) => Shared::lock(&self.0.assignment).clear(),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            if let Some(repeated) = self.0.commit_errors.occurred(&crate::kafka::cause(&e)) {
                tracing::warn!(error = %e, repeated, "offset commit failed (logged once a minute per cause)");
            }
            return;
        }
        self.0.commit_errors.cleared();
        let mut partitions = Shared::lock(&self.0.partitions);
        for e in offsets.elements() {
            if let Offset::Offset(o) = e.offset() {
                partitions
                    .entry((e.topic().to_string(), e.partition()))
                    .or_insert_with(|| self.0.gauges(e.topic(), e.partition()))
                    .commit(o);
            }
        }
    }
}

fn names(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

type Client = StreamConsumer<Context>;

pub struct KafkaSource;

impl super::SourceType for KafkaSource {
    const NAME: &'static str = "kafka";
    type Config = KafkaConfig;

    async fn start(
        c: &KafkaConfig,
        ctx: SourceContext,
    ) -> Result<super::Started, super::SourceError> {
        let id = ctx.id.to_string();
        start(c, ctx).map_err(|message| super::SourceError::Setup { id, message })
    }
}

/// The reader, the committer (finishing), and the status detail.
fn start(cfg: &KafkaConfig, ctx: SourceContext) -> Result<super::Started, String> {
    let shared = Arc::new(Shared {
        id: ctx.id.clone(),
        metrics: ctx.registry.clone(),
        generation: AtomicU64::new(0),
        paused: AtomicBool::new(false),
        assignment: Mutex::new(Vec::new()),
        partitions: Mutex::new(BTreeMap::new()),
        errors: Default::default(),
        commit_errors: Default::default(),
    });
    let mut c = cfg.connection().client_config();
    c.set("group.id", &cfg.group_id)
        .set(
            "auto.offset.reset",
            match cfg.start {
                Start::Earliest => "earliest",
                Start::Latest => "latest",
            },
        )
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            cfg.commit_interval
                .map_or(1000, |d| d.get().as_millis())
                .to_string(),
        );
    // Defaults a user may change: a smaller prefetch than librdkafka's
    // 64 MiB per partition queue, and statistics for the lag gauges.
    for (k, v) in [
        ("queued.max.messages.kbytes", "16384"),
        ("statistics.interval.ms", "5000"),
    ] {
        if !cfg.librdkafka_options.contains_key(k) {
            c.set(k, v);
        }
    }
    let consumer: Client = c
        .create_with_context(Context(shared.clone()))
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe to {}: {e}", cfg.topics.join(",")))?;
    tracing::info!(source = %ctx.id, brokers = %cfg.brokers.join(","), topics = %cfg.topics.join(","),
        group = %cfg.group_id, "kafka source subscribed");
    let consumer = Arc::new(consumer);
    let (tx, rx) = mpsc::channel(4096);
    let spawner = ctx.spawner();
    let committer = Offsets::new(consumer.clone(), shared.clone(), ctx.shutdown.clone());
    let finishing = spawner.spawn(committer.run(rx));
    let reader = Reader {
        consumer,
        shared: shared.clone(),
        decoding: cfg.decoding,
        metadata: cfg.metadata,
        ctx,
        tx,
    };
    let task = spawner.spawn(reader.run());
    let detail: Detail = Arc::new(move || {
        let parts: Vec<String> = Shared::lock(&shared.assignment)
            .iter()
            .map(|(t, p)| format!("{t}/{p}"))
            .collect();
        vec![("partitions", serde_json::json!(parts))]
    });
    Ok(super::Started {
        local_addr: None,
        task,
        finishing: Some(finishing),
        detail: Some(detail),
    })
}

struct Reader {
    consumer: Arc<Client>,
    shared: Arc<Shared>,
    decoding: Decoding,
    metadata: bool,
    ctx: SourceContext,
    tx: mpsc::Sender<Pending>,
}

/// A batch being read: events' bytes in one buffer, their offsets.
struct Building {
    buf: BytesMut,
    events: Vec<(usize, usize, bool)>,
    pending: Pending,
    malformed: u64,
}

impl Building {
    fn new(generation: u64) -> Self {
        Building {
            buf: BytesMut::new(),
            events: Vec::new(),
            pending: Pending::new(generation),
            malformed: 0,
        }
    }

    fn messages(&self) -> usize {
        self.events.len() + self.malformed as usize
    }
}

impl Reader {
    async fn run(self) {
        let mut next: Option<Building> = None;
        loop {
            let mut b = match next.take() {
                Some(b) if b.messages() > 0 => b,
                _ => {
                    let first = tokio::select! {
                        _ = self.ctx.shutdown.cancelled() => break,
                        m = self.consumer.recv() => m,
                    };
                    // Stamped after the wait: a rebalance runs inside it.
                    let mut b = Building::new(self.generation());
                    self.take(&mut b, first);
                    b
                }
            };
            // Then whatever is already fetched, up to a full batch.
            while b.messages() < MAX_BATCH && b.pending.generation == self.generation() {
                match self.consumer.recv().now_or_never() {
                    Some(m) => self.take(&mut b, m),
                    None => break,
                }
            }
            match self.send(b).await {
                Ok(rest) => next = rest,
                Err(()) => break,
            }
        }
        tracing::debug!("kafka source stopped reading");
    }

    fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    fn take(&self, b: &mut Building, m: KafkaResult<BorrowedMessage<'_>>) {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                self.shared.failed(&e, "");
                return;
            }
        };
        if let Some(unlogged) = self.shared.errors.cleared() {
            tracing::info!(unlogged, "kafka source reads again");
        }
        b.pending.read(m.topic(), m.partition(), m.offset());
        let Some(value) = m.payload() else {
            // A tombstone (no value): nothing to route.
            b.malformed += 1;
            return;
        };
        let json = match self.decoding {
            Decoding::Text => false,
            Decoding::Json => {
                if !is_json(value) {
                    b.malformed += 1;
                    return;
                }
                true
            }
            // With metadata the value is parsed into a new object, so it
            // must really be JSON; otherwise its first byte says.
            Decoding::Auto => {
                let first = value.iter().find(|c| !c.is_ascii_whitespace());
                matches!(first, Some(b'{') | Some(b'[')) && (!self.metadata || is_json(value))
            }
        };
        let start = b.buf.len();
        if self.metadata {
            write_with_metadata(&mut b.buf, &m, value, json);
            b.events.push((start, b.buf.len(), true));
        } else {
            b.buf.put_slice(value);
            b.events.push((start, b.buf.len(), json));
        }
    }

    /// Route a batch; while it waits for room, pause the partitions and
    /// keep polling, keeping what arrives for the next batch. `Err`: stop.
    async fn send(&self, b: Building) -> Result<Option<Building>, ()> {
        let Building {
            buf,
            events,
            pending,
            malformed,
        } = b;
        if malformed > 0 {
            self.ctx.metrics.reject(RejectReason::Malformed, malformed);
        }
        let bytes = buf.freeze();
        let events: Vec<Event> = events
            .into_iter()
            .map(|(s, e, json)| {
                let raw = bytes.slice(s..e);
                if json {
                    Event::json(raw)
                } else {
                    Event::text(raw)
                }
            })
            .collect();
        if events.is_empty() {
            // Only malformed messages: their offsets are done with.
            return self.tx.send(pending).await.map(|_| None).map_err(|_| ());
        }
        let (ack, done) = Ack::new();
        let keep = ack.clone();
        if self.tx.send(pending.waiting(done)).await.is_err() {
            return Err(());
        }
        let send = self.ctx.send(Batch::with_ack(events, Some(ack)));
        tokio::pin!(send);
        let mut paused = false;
        let mut next: Option<Building> = None;
        let result = loop {
            tokio::select! {
                biased;
                r = &mut send => break r,
                _ = tokio::time::sleep(PAUSE_AFTER), if !paused => {
                    paused = true;
                    self.pause(true);
                }
                m = self.consumer.recv(), if paused => {
                    let n = next.get_or_insert_with(|| Building::new(self.generation()));
                    self.take(n, m);
                }
            }
        };
        if paused {
            self.pause(false);
        }
        match result {
            Ok(()) => Ok(next),
            Err(_) => {
                // Not routed (shutting down): these offsets must not be
                // committed.
                keep.fail();
                Err(())
            }
        }
    }

    fn pause(&self, pause: bool) {
        self.shared.paused.store(pause, Ordering::Release);
        let tpl = match self.consumer.assignment() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the assignment");
                return;
            }
        };
        let r = if pause {
            tracing::debug!("a destination is full: pausing partitions");
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, pause, "cannot pause or resume partitions");
        }
    }
}

/// `value` as a JSON object with `_kafka` added: an object gets the field
/// first; another JSON value or text becomes `{"message": value, ...}`.
fn write_with_metadata(out: &mut BytesMut, m: &BorrowedMessage<'_>, value: &[u8], json: bool) {
    let object = json && value.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{');
    out.put_slice(b"{\"_kafka\":{\"topic\":");
    json_string(out, m.topic().as_bytes());
    out.put_slice(b",\"partition\":");
    out.put_slice(itoa::Buffer::new().format(m.partition()).as_bytes());
    out.put_slice(b",\"offset\":");
    out.put_slice(itoa::Buffer::new().format(m.offset()).as_bytes());
    if let Some(ts) = m.timestamp().to_millis() {
        out.put_slice(b",\"timestamp\":");
        out.put_slice(itoa::Buffer::new().format(ts).as_bytes());
    }
    out.put_slice(b",\"key\":");
    match m.key() {
        Some(k) => json_string(out, k),
        None => out.put_slice(b"null"),
    }
    if let Some(h) = m.headers() {
        out.put_slice(b",\"headers\":{");
        for (i, header) in h.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            json_string(out, header.key.as_bytes());
            out.put_u8(b':');
            match header.value {
                Some(v) => json_string(out, v),
                None => out.put_slice(b"null"),
            }
        }
        out.put_u8(b'}');
    }
    out.put_u8(b'}');
    if object {
        let open = value.iter().position(|&c| c == b'{').unwrap_or(0);
        let rest = &value[open + 1..];
        if rest.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'}') {
            out.put_u8(b',');
        }
        out.put_slice(rest);
    } else {
        out.put_slice(b",\"message\":");
        if json {
            out.put_slice(value);
        } else {
            json_string(out, value);
        }
        out.put_u8(b'}');
    }
}
