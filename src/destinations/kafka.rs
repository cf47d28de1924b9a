//! `type: kafka` — each event one Kafka record, produced with librdkafka
//! (rdkafka's bundled build). librdkafka does the batching (`linger`,
//! `batch_bytes`), compression and per-partition ordering; the driver's job
//! is a set of records whose delivery reports are awaited, so each record's
//! own outcome (delivered, retried, rejected with its error code) is what
//! the driver counts and retries.
//!
//! librdkafka's message timeout never becomes a drop (Vector loses events
//! there, vector#14259): a timed-out record is a retry, and the lane's
//! policy decides what waits. When every broker is down the destination
//! says so at once (librdkafka's `AllBrokersDown`), purging what was still
//! queued, so a `persistent_queue` lane spills within a second instead of
//! after the message timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::statistics::Statistics;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::codec::fields::{Field, FieldReader};
use crate::codec::template::Template;
use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};
use crate::destination_config;
use crate::destinations::kind::STREAM_ENCODINGS;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon};
use crate::driver::{
    Compression, Concurrency, DeliveryDefaults, Destination, Encoded, Encoder, Outcome,
    RecordOutcome, Rejection, key_bit,
};
use crate::event::Event;
use crate::kafka::{Connection, KafkaTls, OptionValue, Sasl};
use crate::metrics::DropReason;

destination_config! {
    pub struct KafkaConfig {
        /// Bootstrap brokers, `host:port`.
        pub brokers: Vec<String>,
        /// The topic, or a template: `logs-{{ service ?? "misc" }}`.
        pub topic: String,
        /// The event field whose text is the record key (partitioning).
        #[serde(default)]
        pub key_field: Option<String>,
        /// Record headers: header name → event field.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// `0`, `1` or `all` (default; with idempotence on).
        #[serde(default)]
        pub acks: Acks,
        /// How long librdkafka waits to fill a batch. Default 5 ms.
        #[serde(default)]
        pub linger: Option<Dur>,
        /// Largest batch librdkafka sends to one partition. Default 1 MiB.
        #[serde(default)]
        pub batch_bytes: Option<ByteSize>,
        #[serde(default)]
        pub tls: Option<KafkaTls>,
        #[serde(default)]
        pub sasl: Option<Sasl>,
        /// Any other librdkafka producer setting.
        #[serde(default)]
        pub librdkafka_options: BTreeMap<String, OptionValue>,
    }
}

/// `acks:` — how many replicas confirm a record before it counts as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    None,
    Leader,
    #[default]
    All,
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Acks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("0, 1 or all")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Acks, E> {
                match v {
                    0 => Ok(Acks::None),
                    1 => Ok(Acks::Leader),
                    -1 => Ok(Acks::All),
                    _ => Err(E::custom(format!("acks: {v} is not 0, 1 or all"))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Acks, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Acks, E> {
                match v {
                    "all" | "-1" => Ok(Acks::All),
                    "0" | "none" => Ok(Acks::None),
                    "1" | "leader" => Ok(Acks::Leader),
                    _ => Err(E::custom(format!("acks: `{v}` is not 0, 1 or all"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Producer settings sluice derives from its own keys.
const OWNED: &[(&str, &str)] = &[
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("enable.idempotence", "acks"),
    ("compression.codec", "compression"),
    ("compression.type", "compression"),
    ("linger.ms", "linger"),
    ("queue.buffering.max.ms", "linger"),
    ("batch.size", "batch_bytes"),
    ("message.timeout.ms", "request.timeout"),
    ("delivery.timeout.ms", "request.timeout"),
    ("request.timeout.ms", "request.timeout"),
    ("topic.metadata.propagation.max.ms", "request.timeout"),
    (
        "queue.buffering.max.messages",
        "batch.max_events and request.concurrency",
    ),
    (
        "queue.buffering.max.kbytes",
        "batch.max_bytes and request.concurrency",
    ),
];

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), String> {
        self.connection().validate(OWNED)?;
        let mut reader = FieldReader::new();
        Template::parse(&self.topic, &mut reader).map_err(|e| format!("topic: {e}"))?;
        if self.topic.trim().is_empty() {
            return Err("topic: a topic name is needed".into());
        }
        if let Some(k) = &self.key_field {
            reader.add(k).map_err(|e| format!("key_field: {e}"))?;
        }
        for (name, field) in &self.headers {
            reader
                .add(field)
                .map_err(|e| format!("headers.{name}: {e}"))?;
        }
        if self
            .batch_bytes
            .is_some_and(|b| b.0 == 0 || b.0 > i32::MAX as u64)
        {
            return Err("batch_bytes must be between 1 byte and 2GiB".into());
        }
        if self
            .common()
            .request
            .timeout
            .is_some_and(|t| t.get() < Duration::from_secs(2))
        {
            return Err(
                "request.timeout (each record's delivery deadline) must be at least 2s".into(),
            );
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

impl DestinationType for KafkaDestination {
    const NAME: &'static str = "kafka";
    /// Records go to librdkafka as soon as the driver has them (it batches
    /// per partition by `linger` itself); each record must be delivered
    /// within `request.timeout`, retried after that.
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults {
        max_events: 1000,
        max_bytes: 4 << 20,
        batch_timeout: Duration::from_millis(100),
        concurrency: 5,
        request_timeout: Some(DEFAULT_TIMEOUT),
        max_event_bytes: None,
        sender_order: false,
    };
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: STREAM_ENCODINGS,
        compressions: &[
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ],
        max_events: None,
        max_bytes: None,
        // librdkafka's own `message.max.bytes` default: larger records are
        // refused before they are sent.
        max_record_bytes: Some(1_000_000),
        retry_on: false,
    };
    type Config = KafkaConfig;

    async fn build(cfg: &KafkaConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        KafkaDestination::new(cfg, ctx)
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the message timeout a request's reports may take.
const REPORT_GRACE: Duration = Duration::from_millis(500);
/// Rounds in a row in which every record timed out, with the brokers
/// reachable, after which the producer is replaced: a broker that lost its
/// state can refuse an idempotent producer's id for ever (Tansu restarted
/// empty answers `UnknownProducerId` to every retry). Right after an
/// all-brokers-down outage one round is enough.
const STUCK_ROUNDS: u32 = 3;

/// One record of a request: ranges into the request's buffer.
struct Record {
    topic: u32,
    key: Option<(u32, u32)>,
    value: (u32, u32),
    headers: Option<OwnedHeaders>,
}

pub struct KafkaRequest {
    buf: Vec<u8>,
    topics: Vec<String>,
    records: Vec<Record>,
}

/// What the producer's context learns from librdkafka's own threads.
struct Health {
    /// Every broker is unreachable (cleared when one accepts a connection).
    down: AtomicBool,
    went_down: Notify,
    in_flight: Gauge,
    /// Other client errors, logged once per cause (`crate::repeats`).
    errors: crate::repeats::Repeats,
}

struct ProducerContext(Arc<Health>);

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if !self.0.down.swap(true, Ordering::AcqRel) {
                tracing::warn!(%reason, "every Kafka broker is down");
            }
            self.0.went_down.notify_waiters();
        } else if let Some(repeated) = self.0.errors.occurred(&crate::kafka::cause(&error)) {
            tracing::warn!(%error, %reason, repeated, "kafka destination error (logged once a minute per cause)");
        }
    }

    fn stats(&self, statistics: Statistics) {
        self.0.in_flight.set(statistics.msg_cnt as i64);
    }
}

type Client = FutureProducer<ProducerContext>;

pub struct KafkaDestination {
    config: rdkafka::ClientConfig,
    brokers: Vec<String>,
    producer: RwLock<Arc<Client>>,
    health: Arc<Health>,
    stuck: AtomicU32,
    message_timeout: Duration,
    encoder: Encoder,
    reader: FieldReader,
    topic: Template,
    key: Option<Field>,
    headers: Vec<(String, Field)>,
}

impl KafkaDestination {
    pub fn new(cfg: &KafkaConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let common = cfg.common();
        let mut reader = FieldReader::new();
        let topic = Template::parse(&cfg.topic, &mut reader)?;
        let key = cfg
            .key_field
            .as_deref()
            .map(|k| reader.add(k))
            .transpose()?;
        let headers = cfg
            .headers
            .iter()
            .map(|(n, f)| Ok((n.clone(), reader.add(f)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let encoding = common.encoding.unwrap_or_default();
        let encoder = Encoder::new(encoding, Compression::None, common.metric)?;

        let timeout = common.request.timeout.map_or(DEFAULT_TIMEOUT, Dur::get);
        // A second inside the driver's own deadline, so librdkafka reports a
        // timeout (and `send` judges an unanswered request) before the
        // driver gives up on the request.
        let message_timeout = timeout
            .saturating_sub(Duration::from_secs(1))
            .max(timeout / 2);
        let max_events = common.batch.max_events.as_ref().map_or(1000, |m| m.value) as u64;
        let max_bytes = common
            .batch
            .max_bytes
            .as_ref()
            .map_or(4 << 20, |m| m.value.0);
        let concurrency = match common.request.concurrency {
            Some(Concurrency::Fixed(n)) => n,
            Some(Concurrency::Adaptive) => common.request.max_concurrency.unwrap_or(200),
            None => 5,
        } as u64;
        let mut c = cfg.connection().client_config();
        let acks = match cfg.acks {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        };
        c.set("acks", acks)
            .set("enable.idempotence", (cfg.acks == Acks::All).to_string())
            .set(
                "compression.codec",
                match common.compression.unwrap_or_default() {
                    Compression::None => "none",
                    Compression::Gzip => "gzip",
                    Compression::Snappy => "snappy",
                    Compression::Lz4 => "lz4",
                    Compression::Zstd => "zstd",
                },
            )
            .set(
                "linger.ms",
                cfg.linger.map_or(5, |l| l.get().as_millis()).to_string(),
            )
            .set(
                "batch.size",
                cfg.batch_bytes.map_or(1 << 20, |b| b.0).to_string(),
            )
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().to_string(),
            )
            // An unknown topic is reported within the deadline (rejected),
            // not retried until the message times out.
            .set(
                "topic.metadata.propagation.max.ms",
                (message_timeout / 2).as_millis().to_string(),
            )
            // librdkafka's queue holds what the driver has in flight, twice
            // over (records of a request abandoned in an outage stay until
            // purged): memory stays bounded while the brokers are down.
            .set(
                "queue.buffering.max.messages",
                (2 * concurrency * max_events)
                    .clamp(1000, 10_000_000)
                    .to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (2 * concurrency * max_bytes / 1024)
                    .clamp(16 << 10, i32::MAX as u64)
                    .to_string(),
            );
        if !cfg
            .librdkafka_options
            .contains_key("statistics.interval.ms")
        {
            c.set("statistics.interval.ms", "5000");
        }
        let health = Arc::new(Health {
            down: AtomicBool::new(false),
            went_down: Notify::new(),
            errors: Default::default(),
            in_flight: ctx.metrics.kafka_producer_in_flight(ctx.id),
        });
        let producer = create(&c, &health)?;
        Ok(KafkaDestination {
            config: c,
            brokers: cfg.brokers.clone(),
            producer: RwLock::new(Arc::new(producer)),
            health,
            stuck: AtomicU32::new(0),
            message_timeout,
            encoder,
            reader,
            topic,
            key,
            headers,
        })
    }

    fn producer(&self) -> Arc<Client> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replace the producer (its records still queued are purged and come
    /// back to their requests as retries).
    fn renew(&self, why: &str) {
        match create(&self.config, &self.health) {
            Ok(p) => {
                tracing::warn!(%why, "the Kafka producer is stuck; starting a new one");
                let old = std::mem::replace(
                    &mut *self.producer.write().unwrap_or_else(|e| e.into_inner()),
                    Arc::new(p),
                );
                old.purge(PurgeConfig::default().queue().inflight().non_blocking());
            }
            Err(e) => tracing::error!(error = %e, "cannot start a new Kafka producer"),
        }
        self.stuck.store(0, Ordering::Relaxed);
    }

    /// Whether any broker accepts a TCP connection (while librdkafka says
    /// all are down, before sending again).
    async fn reachable(&self) -> bool {
        for b in &self.brokers {
            let Ok(addrs) = tokio::net::lookup_host(b.as_str()).await else {
                continue;
            };
            for a in addrs {
                let connect = tokio::net::TcpStream::connect(a);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                    return true;
                }
            }
        }
        false
    }
}

fn create(c: &rdkafka::ClientConfig, health: &Arc<Health>) -> Result<Client, String> {
    c.create_with_context(ProducerContext(health.clone()))
        .map_err(|e| format!("cannot create the Kafka producer: {e}"))
}

fn range(start: usize, end: usize) -> (u32, u32) {
    (start as u32, end as u32)
}

impl Destination for KafkaDestination {
    type Request = KafkaRequest;

    fn encode(&self, events: &[Event]) -> Encoded<KafkaRequest> {
        let total: usize = events.iter().map(|e| e.raw.len()).sum();
        let mut buf = Vec::with_capacity(total + events.len() * 16);
        let mut topics: Vec<String> = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        let mut record_bytes = Vec::with_capacity(events.len());
        let mut skipped = Vec::new();
        let mut scratch = self.reader.scratch();
        let mut enc = self.encoder.scratch();
        let mut name = String::new();
        let fixed = self.topic.as_static();
        if let Some(t) = fixed {
            topics.push(t.to_string());
        }
        let mut keys = 0u64;
        for (i, e) in events.iter().enumerate() {
            self.reader.locate(e, &mut scratch);
            let topic = match fixed {
                Some(_) => 0,
                None => {
                    if self
                        .topic
                        .render(&self.reader, e, &scratch, &mut name)
                        .is_err()
                        || name.is_empty()
                    {
                        skipped.push((i, DropReason::Unencodable));
                        continue;
                    }
                    // Batches usually hold runs of one topic: compare with
                    // the last before searching.
                    match topics.iter().rposition(|t| *t == name) {
                        Some(p) => p,
                        None => {
                            topics.push(name.clone());
                            topics.len() - 1
                        }
                    }
                }
            };
            let start = buf.len();
            let key = self.key.and_then(|k| {
                let text = self.reader.text(e, &scratch, k)?;
                keys |= key_bit(&text);
                let s = buf.len();
                buf.extend_from_slice(&text);
                Some(range(s, buf.len()))
            });
            let value_start = buf.len();
            if !self.encoder.encode_one(e, &mut enc, &mut buf) {
                buf.truncate(start);
                skipped.push((i, DropReason::Unencodable));
                continue;
            }
            let value = range(value_start, buf.len());
            let headers = (!self.headers.is_empty()).then(|| {
                let mut h = OwnedHeaders::new_with_capacity(self.headers.len());
                for (n, f) in &self.headers {
                    if let Some(v) = self.reader.text(e, &scratch, *f) {
                        h = h.insert(Header {
                            key: n,
                            value: Some(&v[..]),
                        });
                    }
                }
                h
            });
            record_bytes.push((buf.len() - start) as u32);
            records.push(Record {
                topic: topic as u32,
                key,
                value,
                headers,
            });
        }
        Encoded {
            // A key's records go to one partition, which keeps their order.
            keys: self.key.is_some().then_some(keys),
            bytes: buf.len(),
            request: KafkaRequest {
                buf,
                topics,
                records,
            },
            skipped,
            record_bytes,
        }
    }

    async fn send(&self, req: &KafkaRequest, _endpoint: usize) -> Outcome {
        if self.health.down.load(Ordering::Acquire) {
            if !self.reachable().await {
                return Outcome::EndpointFailed {
                    error: format!("no Kafka broker is reachable ({})", self.brokers.join(",")),
                };
            }
            self.health.down.store(false, Ordering::Release);
            self.health.errors.cleared();
            // A broker back from an outage may have lost its state: one
            // round of timed-out records is then enough to start afresh.
            self.stuck.store(STUCK_ROUNDS - 1, Ordering::Relaxed);
        }
        let producer = self.producer();
        let went_down = self.health.went_down.notified();
        tokio::pin!(went_down);
        went_down.as_mut().enable();
        let mut outcomes: Vec<Option<RecordOutcome>> = Vec::with_capacity(req.records.len());
        let mut pending = Vec::with_capacity(req.records.len());
        for r in &req.records {
            let slice = |(s, e): (u32, u32)| &req.buf[s as usize..e as usize];
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&req.topics[r.topic as usize]).payload(slice(r.value));
            if let Some(k) = r.key {
                record = record.key(slice(k));
            }
            if let Some(h) = &r.headers {
                record = record.headers(h.clone());
            }
            match producer.send_result(record) {
                Ok(f) => {
                    outcomes.push(None);
                    pending.push(f);
                }
                Err((e, _)) => outcomes.push(Some(classify(&e))),
            }
        }
        self.health
            .in_flight
            .set(i64::from(producer.in_flight_count()));
        // librdkafka fails a record that is in flight only when its request
        // times out, which may be long after the message timeout: a
        // producer that gets no answer is judged here, before the driver's
        // own deadline, so it can be replaced.
        let reports = tokio::select! {
            r = tokio::time::timeout(self.message_timeout + REPORT_GRACE, join_all(pending)) => r.ok(),
            _ = &mut went_down => {
                // What is still queued was never sent: take it back now, so
                // the lane's policy decides (a disk queue engages) instead
                // of it waiting out the message timeout. What was in flight
                // may still arrive: at least once, never lost.
                producer.purge(PurgeConfig::default().queue().non_blocking());
                return Outcome::EndpointFailed {
                    error: "every Kafka broker is down".into(),
                };
            }
        };
        let (reports, unanswered) = match reports {
            Some(r) => (r, false),
            None => {
                producer.purge(PurgeConfig::default().queue().non_blocking());
                (Vec::new(), true)
            }
        };
        let mut reports = reports.into_iter();
        let mut delivered = 0;
        let mut timed_out = usize::from(unanswered);
        let mut renew: Option<String> = None;
        for o in outcomes.iter_mut().filter(|o| o.is_none()) {
            let outcome = match reports.next() {
                Some(Ok(Ok(_))) => {
                    delivered += 1;
                    RecordOutcome::Delivered
                }
                Some(Ok(Err((e, _)))) => {
                    let code = e.rdkafka_error_code();
                    if code == Some(RDKafkaErrorCode::MessageTimedOut) {
                        timed_out += 1;
                    }
                    if code.is_some_and(needs_new_producer) {
                        renew = Some(e.to_string());
                    }
                    classify(&e)
                }
                // The producer went away (replaced) with the record queued.
                Some(Err(_)) | None => RecordOutcome::RETRY,
            };
            *o = Some(outcome);
        }
        self.health
            .in_flight
            .set(i64::from(producer.in_flight_count()));
        if delivered > 0 {
            self.stuck.store(0, Ordering::Relaxed);
        }
        if let Some((code, why)) = producer.client().fatal_error() {
            renew = Some(format!("{code:?}: {why}"));
        }
        if renew.is_none()
            && timed_out > 0
            && delivered == 0
            && self.stuck.fetch_add(1, Ordering::Relaxed) + 1 >= STUCK_ROUNDS
            && self.reachable().await
        {
            renew = Some(format!("{STUCK_ROUNDS} rounds of timed-out records"));
        }
        if let Some(why) = renew {
            self.renew(&why);
        }
        if delivered == outcomes.len() {
            return Outcome::Delivered;
        }
        Outcome::Partial(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or(RecordOutcome::RETRY))
                .collect(),
        )
    }
}

/// Errors after which this producer cannot go on: its idempotence state
/// no longer matches the broker's.
fn needs_new_producer(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::Fatal
            | C::UnknownProducerId
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerEpoch
            | C::InvalidProducerIdMapping
    )
}

/// A record's delivery error: permanent ones are rejected with their
/// librdkafka name, a full local queue is throttling, the rest is retried.
fn classify(e: &KafkaError) -> RecordOutcome {
    use RDKafkaErrorCode as C;
    let Some(code) = e.rdkafka_error_code() else {
        return RecordOutcome::RETRY;
    };
    match code {
        C::QueueFull => RecordOutcome::Retry {
            throttled: true,
            after: None,
        },
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::MessageBatchTooLarge
        | C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::UnknownTopic
        | C::UnknownTopicOrPartition
        | C::InvalidTopic
        | C::UnsupportedForMessageFormat
        | C::PolicyViolation
        | C::InvalidArgument
        | C::BadMessage => RecordOutcome::rejected(Rejection::named(
            format!("{code:?}"),
            format!("Kafka refused the record: {e}"),
        )),
        _ => RecordOutcome::RETRY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_read_as_kafka_writes_them() {
        for (yaml, want) in [
            ("all", Acks::All),
            ("-1", Acks::All),
            ("1", Acks::Leader),
            ("0", Acks::None),
            ("\"1\"", Acks::Leader),
        ] {
            let got: Acks = serde_saphyr::from_str(yaml).unwrap();
            assert_eq!(got, want, "{yaml}");
        }
        assert!(serde_saphyr::from_str::<Acks>("2").is_err());
    }

    #[test]
    fn permanent_errors_are_rejected_and_the_rest_retried() {
        let e = |c| KafkaError::MessageProduction(c);
        assert!(matches!(
            classify(&e(RDKafkaErrorCode::MessageSizeTooLarge)),
            RecordOutcome::Rejected(r) if r.code.as_deref() == Some("MessageSizeTooLarge")
        ));
        assert_eq!(
            classify(&e(RDKafkaErrorCode::MessageTimedOut)),
            RecordOutcome::RETRY
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::NotLeaderForPartition)),
            RecordOutcome::RETRY
        );
        assert!(matches!(
            classify(&e(RDKafkaErrorCode::QueueFull)),
            RecordOutcome::Retry {
                throttled: true,
                ..
            }
        ));
    }
}
