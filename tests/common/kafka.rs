//! Kafka test peers: a real broker (Tansu, started by `scripts/peers`) and
//! librdkafka's in-process mock cluster, with the client side a user would
//! use to check them: create a topic, produce, and read a topic back
//! (assigned partitions, no consumer group, so no group join to wait for).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::real_peer::{PeerProcess, Ports, free_ports};

/// A Tansu broker on its own port, memory storage; killed when dropped.
pub struct Tansu {
    pub peer: PeerProcess,
    pub port: u16,
}

impl Tansu {
    pub fn start() -> Tansu {
        let ports: Ports<1> = free_ports();
        let port = ports.ports[0];
        let peer = PeerProcess::start("tansu", Box::new(ports), &[port.to_string()], Some(port));
        Tansu { peer, port }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A hung broker: it keeps its connections and data but answers nothing.
    pub fn pause(&self) {
        self.peer.pause();
    }

    pub fn resume(&self) {
        self.peer.resume();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Create `topic` with `partitions`, retrying while the broker settles.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    create_topic_with(brokers, &[], topic, partitions)
}

/// `create_topic` with extra client settings (TLS, say).
pub fn create_topic_with(brokers: &str, settings: &[(&str, &str)], topic: &str, partitions: i32) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let deadline = Instant::now() + Duration::from_secs(30);
    runtime().block_on(async {
        loop {
            let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
            let r = admin
                .create_topics(
                    &[t],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
                )
                .await;
            match r {
                Ok(results) if results.iter().all(|r| r.is_ok()) => return,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot create topic {topic}: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

/// Produce records (key, value) and wait until the broker has them all.
pub fn produce(brokers: &str, topic: &str, records: &[(Option<&str>, &[u8])]) {
    produce_with(brokers, &[], topic, records)
}

/// `produce` with extra client settings (TLS or SASL, say).
pub fn produce_with(
    brokers: &str,
    settings: &[(&str, &str)],
    topic: &str,
    records: &[(Option<&str>, &[u8])],
) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let p: BaseProducer = config.create().expect("producer");
    for (k, v) in records {
        let mut r = BaseRecord::<str, [u8]>::to(topic).payload(v);
        if let Some(k) = k {
            r = r.key(k);
        }
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value).unwrap_or_else(|e| panic!("{}: {e}", self.value))
    }
}

/// Read `topic` from the beginning until `n` records are there (or fail at
/// `timeout`, showing what arrived). Returns every record read.
pub fn read_topic(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Record> {
    read_topic_until(brokers, topic, timeout, |r| r.len() >= n)
}

/// Read `topic` from the beginning until `done` holds for what was read.
pub fn read_topic_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    read_topic_with(brokers, &[], topic, timeout, done)
}

/// `read_topic_until` with extra client settings (TLS, say).
pub fn read_topic_with(
    brokers: &str,
    settings: &[(&str, &str)],
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let c: BaseConsumer = config.create().expect("consumer");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        match c.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(m)
                if m.topics()
                    .first()
                    .is_some_and(|t| !t.partitions().is_empty()) =>
            {
                break m.topics()[0].partitions().len() as i32;
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no metadata for {topic}: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    // `done` is asked when the reader is idle or has read another 1000.
    let mut ask = true;
    while !(ask && done(&out)) {
        ask = out.len() % 1000 == 999;
        assert!(
            Instant::now() < deadline,
            "{topic}: {} records within {timeout:?}, not yet all that were expected",
            out.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => eprintln!("read_topic {topic}: {e}"),
            None => ask = true,
        }
    }
    out
}

/// Headers for `produce_with_headers`.
pub fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    })
}

/// Consumer settings for sluice sources against Tansu, which answers a
/// JoinGroup only after about half the session timeout.
pub const FAST_GROUP: &str = "librdkafka_options: { session.timeout.ms: 6000, heartbeat.interval.ms: 500, statistics.interval.ms: 500 }";

/// Read `topic` from the beginning on a thread, appending each value to
/// `lines`, until `stop` is set.
pub fn follow_topic(
    brokers: &str,
    topic: &str,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-follower")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                lines.lock().unwrap().push(v);
            }
        }
    });
}

/// Produce `{"seq":N}` for every N in `seqs`, without keys.
pub fn produce_seqs(brokers: &str, topic: &str, seqs: std::ops::Range<u64>) {
    let values: Vec<Vec<u8>> = seqs
        .map(|i| format!(r#"{{"seq":{i}}}"#).into_bytes())
        .collect();
    let batch: Vec<(Option<&str>, &[u8])> = values.iter().map(|v| (None, v.as_slice())).collect();
    produce(brokers, topic, &batch);
}

/// The distinct `seq`s of records.
pub fn seqs(records: &[Record]) -> std::collections::BTreeSet<u64> {
    records
        .iter()
        .filter_map(|r| r.json()["seq"].as_u64())
        .collect()
}

/// Read `topic` until `n` distinct `seq`s are there; every record read
/// (duplicates included).
pub fn read_seqs(brokers: &str, topic: &str, n: u64, timeout: Duration) -> Vec<Record> {
    read_topic_until(brokers, topic, timeout, |r| seqs(r).len() as u64 == n)
}

/// A Tansu broker reachable only over mutual TLS: `scripts/peers start
/// tls-front` (socat) on the advertised port, forwarding to the broker.
use super::tls::Pki;

pub struct TlsTansu {
    pub broker: Tansu,
    pub front: PeerProcess,
    pub port: u16,
}

impl TlsTansu {
    pub fn start(pki: &Pki) -> TlsTansu {
        let ports: Ports<2> = free_ports();
        let [broker_port, front_port] = ports.ports;
        let peer = PeerProcess::start(
            "tansu",
            Box::new(()),
            &[broker_port.to_string(), front_port.to_string()],
            Some(broker_port),
        );
        let front = PeerProcess::start(
            "tls-front",
            Box::new(ports),
            &[
                front_port.to_string(),
                broker_port.to_string(),
                pki.path("server.pem"),
                pki.path("server.key"),
                pki.path("ca.pem"),
            ],
            Some(front_port),
        );
        TlsTansu {
            broker: Tansu {
                peer,
                port: broker_port,
            },
            front,
            port: front_port,
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
