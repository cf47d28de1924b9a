//! The Kafka destination and source against a real broker (Tansu, from
//! `scripts/peers`) and librdkafka's mock cluster: what arrives in the topic,
//! what is committed, and what the counters say.

#![cfg(feature = "kafka")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::kafka::{
    FAST_GROUP, Record, Tansu, create_topic, produce, produce_seqs, read_seqs, read_topic, seqs,
};
use common::{Sluice, send_lines, sent, wait_until};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn records_arrive_with_keys_headers_and_templated_topics() {
    let k = Tansu::start();
    for t in ["logs-web", "logs-db", "logs-misc"] {
        create_topic(&k.brokers(), t, 3);
    }
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - {{ name: all, filter: 'true', destination: k }}
destinations:
  k:
    type: kafka
    brokers: [{}]
    topic: 'logs-{{{{ service ?? "misc" }}}}'
    key_field: host
    headers: {{ x-level: level, x-seq: seq }}
    compression: zstd
    # Small batches, several in flight: each host's records must still
    # land in the order sent (requests holding one key never overlap).
    batch: {{ max_events: 7 }}
    request: {{ concurrency: 8 }}
"#,
        k.brokers()
    ));
    let services = ["web", "db", ""];
    send_lines(
        &s,
        "in",
        (0..300).map(|i| {
            let svc = services[i % 3];
            let svc = if svc.is_empty() {
                String::new()
            } else {
                format!(r#""service":"{svc}","#)
            };
            format!(r#"{{{svc}"seq":{i},"host":"h{}","level":"info"}}"#, i % 7)
        }),
    );
    wait_until("300 records sent", WAIT, || sent(&s, "k") == 300);
    for (topic, svc) in [("logs-web", 0), ("logs-db", 1), ("logs-misc", 2)] {
        let records = read_topic(&k.brokers(), topic, 100, WAIT);
        let mut seqs = BTreeSet::new();
        for r in &records {
            let v = r.json();
            let seq = v["seq"].as_u64().unwrap();
            assert_eq!(seq % 3, svc, "{topic}: {v}");
            assert_eq!(r.key.as_deref(), Some(format!("h{}", seq % 7).as_str()));
            assert_eq!(r.headers["x-level"], "info");
            assert_eq!(r.headers["x-seq"], seq.to_string());
            seqs.insert(seq);
        }
        assert_eq!(seqs.len(), 100, "{topic}: every record once");
        assert_eq!(keys_out_of_order(&records), Vec::<String>::new(), "{topic}");
    }
}

/// The keys whose records, read in each partition's offset order, are not
/// in the order their `seq`s were sent.
fn keys_out_of_order(records: &[Record]) -> Vec<String> {
    let mut sorted: Vec<(i32, i64, String, u64)> = records
        .iter()
        .map(|r| {
            let seq = r.json()["seq"].as_u64().unwrap_or(0);
            (
                r.partition,
                r.offset,
                r.key.clone().unwrap_or_default(),
                seq,
            )
        })
        .collect();
    sorted.sort();
    common::keys_out_of_order(sorted.iter().map(|(_, _, key, seq)| (key.as_str(), *seq)))
}

#[test]
fn every_compression_codec_and_acks_setting_delivers() {
    let k = Tansu::start();
    let cases = [
        ("none", "all"),
        ("gzip", "1"),
        ("snappy", "all"),
        ("lz4", "0"),
        ("zstd", "all"),
    ];
    let mut dests = String::new();
    let mut routes = String::new();
    for (codec, acks) in cases {
        create_topic(&k.brokers(), &format!("c-{codec}"), 1);
        dests.push_str(&format!(
            "  {codec}: {{ type: kafka, brokers: [{}], topic: c-{codec}, compression: {codec}, acks: {acks} }}\n",
            k.brokers()
        ));
        routes.push_str(&format!(
            "  - {{ name: {codec}, filter: 'true', destination: {codec}, final: false }}\n"
        ));
    }
    let s = Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n{routes}unmatched: drop\ndestinations:\n{dests}"
    ));
    send_lines(&s, "in", (0..500).map(|i| format!(r#"{{"seq":{i}}}"#)));
    for (codec, _) in cases {
        wait_until(&format!("{codec}: 500 sent"), WAIT, || {
            sent(&s, codec) == 500
        });
        let records = read_topic(&k.brokers(), &format!("c-{codec}"), 500, WAIT);
        assert_eq!(seqs(&records).len(), 500, "{codec}");
    }
}

#[test]
fn the_source_reads_a_topic_with_metadata_and_commits_what_was_delivered() {
    let k = Tansu::start();
    create_topic(&k.brokers(), "in", 3);
    let records: Vec<(String, Vec<u8>)> = (0..600)
        .map(|i| {
            (
                format!("k{}", i % 5),
                format!(r#"{{"seq":{i}}}"#).into_bytes(),
            )
        })
        .collect();
    let mut batch: Vec<(Option<&str>, &[u8])> = records
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_slice()))
        .collect();
    batch.push((None, b"not json"));
    batch.push((None, b"{broken"));
    produce(&k.brokers(), "in", &batch);
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  kin: {{ type: kafka, brokers: [{}], topics: [in], group_id: g1, decoding: json, {FAST_GROUP} }}
routes:
  - {{ name: all, filter: '_kafka.key != "k4"', destination: out }}
unmatched: drop
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#,
        k.brokers()
    ));
    let out = s.dir.join("out.ndjson");
    wait_until("480 events written", WAIT, || {
        common::read_lines(&out).len() >= 480
    });
    wait_until("both malformed messages counted", WAIT, || {
        s.metrics().rejected("kin", "malformed") == 2
    });
    let lines = common::read_lines(&out);
    assert_eq!(lines.len(), 480, "k4 filtered out, the rest once");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let m = &v["_kafka"];
        assert_eq!(m["topic"], "in");
        assert!(
            m["partition"].as_i64().is_some_and(|p| (0..3).contains(&p)),
            "{v}"
        );
        assert!(m["offset"].as_i64().is_some(), "{v}");
        assert!(m["timestamp"].as_i64().is_some(), "{v}");
        let seq = v["seq"].as_u64().unwrap();
        assert_eq!(m["key"], format!("k{}", seq % 5));
    }
    // Everything (the malformed too) is committed: each partition's
    // committed offset is one past its last record.
    let all = read_topic(&k.brokers(), "in", 602, WAIT);
    let mut end = [0i64; 3];
    for r in &all {
        end[r.partition as usize] = end[r.partition as usize].max(r.offset + 1);
    }
    wait_until("every partition committed to its end", WAIT, || {
        let m = s.metrics();

        (0..3).all(|p| {
            m.get(&format!(
                "sluice_kafka_consumer_committed_offset{{source=\"kin\",topic=\"in\",partition=\"{p}\"}}"
            )) as i64
                == end[p]
        })
    });
    let status = s.status();
    let parts = status["sources"][0]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(parts.len(), 3, "{status}");
}

#[test]
fn injected_errors_are_retried_and_a_permanent_one_is_dead_lettered_with_its_reason() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("m", 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - {{ name: all, filter: 'true', destination: k }}
destinations:
  k:
    type: kafka
    brokers: [{brokers}]
    topic: m
    batch: {{ max_events: 10, timeout: 10ms }}
    request: {{ concurrency: 1 }}
    retry: {{ initial_backoff: 100ms }}
    dead_letter: dlq
  dlq: {{ type: file, path: "{{dir}}/dlq.ndjson" }}
"#
    ));
    // Transient: the leader moved, three times over; librdkafka retries.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
    );
    send_lines(&s, "in", (0..50).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("50 sent through the retries", WAIT, || sent(&s, "k") == 50);
    // Permanent: the broker refuses one produce request (not authorised).
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    send_lines(&s, "in", (50..100).map(|i| format!(r#"{{"seq":{i}}}"#)));
    let dlq = s.dir.join("dlq.ndjson");
    wait_until("every event sent or dead-lettered", WAIT, || {
        let m = s.metrics();
        sent(&s, "k") + m.dropped("k", "dead_letter") == 100
    });
    let dead_lettered = s.metrics().dropped("k", "dead_letter");
    assert!(
        dead_lettered > 0,
        "the refused request's records are dead-lettered"
    );
    wait_until("the dead letters written", WAIT, || {
        common::read_lines(&dlq).len() as u64 == dead_lettered
    });
    let dead = common::read_lines(&dlq);
    for d in &dead {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert!(
            d.contains("TopicAuthorizationFailed"),
            "the reason is carried: {v}"
        );
    }
    let got = read_topic(&brokers, "m", 100 - dead.len(), WAIT);
    assert_eq!(
        seqs(&got).len(),
        100 - dead.len(),
        "the rest flowed, each once"
    );
}

/// An input broker whose topic `in` (2 partitions) holds `n` seqs, and an
/// output broker with an empty topic `out`.
fn pipeline_brokers(n: u64) -> (Tansu, Tansu) {
    let input = Tansu::start();
    let output = Tansu::start();
    create_topic(&input.brokers(), "in", 2);
    create_topic(&output.brokers(), "out", 1);
    produce_seqs(&input.brokers(), "in", 0..n);
    (input, output)
}

/// A Kafka → Kafka pipeline whose output broker hangs mid-run, then sluice
/// is killed with SIGKILL and started again: every message of the input is
/// in the output (at least once, no gap), because nothing undelivered was
/// committed.
#[test]
fn kill_9_with_the_destination_down_loses_nothing_the_source_had_read() {
    let n = 3000u64;
    let (input, output) = pipeline_brokers(n);
    let yaml = format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  kin: {{ type: kafka, brokers: [{}], topics: [in], group_id: crash, metadata: false, {FAST_GROUP} }}
routes:
  - {{ name: all, filter: 'true', destination: k }}
destinations:
  k:
    type: kafka
    brokers: [{}]
    topic: out
    batch: {{ max_events: 100, timeout: 10ms }}
    request: {{ concurrency: 1, timeout: 3s }}
"#,
        input.brokers(),
        output.brokers()
    );
    let mut first = Sluice::start(&yaml);
    wait_until("some delivered", WAIT, || sent(&first, "k") >= 500);
    output.pause();
    let before = sent(&first, "k");
    wait_until("delivery stalled and retrying", WAIT, || {
        first
            .metrics()
            .dest("sluice_destination_retries_total", "k")
            > 0
    });
    let _ = first.child.kill();
    let _ = first.child.wait();
    output.resume();
    let second = Sluice::start(&yaml);
    let got = read_seqs(&output.brokers(), "out", n, Duration::from_secs(120));
    assert_eq!(
        seqs(&got).len() as u64,
        n,
        "every message delivered at least once, no gap"
    );
    // Re-read are at most what the first run had read and not committed.
    let duplicates = got.len() as u64 - n;
    assert!(duplicates < n, "{duplicates} duplicates");
    eprintln!("first run delivered {before} before the outage; {duplicates} duplicates");
    drop(second);
}

fn partitions(s: &Sluice) -> usize {
    s.status()["sources"][0]["partitions"]
        .as_array()
        .map_or(0, Vec::len)
}

fn file_seqs(s: &Sluice) -> Vec<u64> {
    common::read_lines(&s.dir.join("out.ndjson"))
        .iter()
        .map(|l| common::seq_of(l))
        .collect()
}

/// Two instances in one consumer group split the partitions; when one is
/// killed, the other takes them over and the union of what both delivered
/// has no gap.
#[test]
fn two_instances_share_a_topic_and_the_survivor_takes_over_a_killed_one() {
    let k = Tansu::start();
    create_topic(&k.brokers(), "shared", 4);
    let yaml = format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  kin: {{ type: kafka, brokers: [{}], topics: [shared], group_id: scale, metadata: false, commit_interval: 200ms, {FAST_GROUP} }}
routes:
  - {{ name: all, filter: 'true', destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson", batch: {{ timeout: 10ms }} }}
"#,
        k.brokers()
    );
    let a = Sluice::start(&yaml);
    wait_until("the first instance owns every partition", WAIT, || {
        partitions(&a) == 4
    });
    let mut b = Sluice::start(&yaml);
    wait_until("both instances own partitions", WAIT, || {
        partitions(&a) > 0 && partitions(&b) > 0 && partitions(&a) + partitions(&b) == 4
    });
    produce_seqs(&k.brokers(), "shared", 0..2000);
    wait_until("both deliver their share", WAIT, || {
        let (x, y) = (file_seqs(&a), file_seqs(&b));
        !x.is_empty() && !y.is_empty() && x.len() + y.len() >= 2000
    });
    let _ = b.child.kill();
    let _ = b.child.wait();
    produce_seqs(&k.brokers(), "shared", 2000..4000);
    wait_until("the survivor owns every partition", WAIT, || {
        partitions(&a) == 4
    });
    wait_until("every message delivered by one of them", WAIT, || {
        let union: BTreeSet<u64> = file_seqs(&a).into_iter().chain(file_seqs(&b)).collect();
        union.len() == 4000
    });
    let (x, y) = (file_seqs(&a), file_seqs(&b));
    let duplicates = x.len() + y.len() - 4000;
    eprintln!(
        "a delivered {}, b {}, {duplicates} duplicates",
        x.len(),
        y.len()
    );
    assert!(
        duplicates <= y.len(),
        "only what the killed one had delivered can come again"
    );
}

/// A `block` destination that cannot deliver pauses the source's
/// partitions: it stops taking messages (memory bounded by the lane, not
/// the topic) and, once the destination recovers, delivers everything.
#[test]
fn a_blocked_destination_pauses_consumption_and_everything_follows_once_it_recovers() {
    let n = 20_000u64;
    let (input, output) = pipeline_brokers(n);
    output.pause();
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  kin: {{ type: kafka, brokers: [{}], topics: [in], group_id: paused, metadata: false, {FAST_GROUP} }}
routes:
  - {{ name: all, filter: 'true', destination: k }}
destinations:
  k:
    type: kafka
    brokers: [{}]
    topic: out
    backpressure: block
    queue: {{ max_events: 500 }}
    batch: {{ max_events: 100 }}
    request: {{ concurrency: 1, timeout: 3s }}
"#,
        input.brokers(),
        output.brokers()
    ));
    wait_until("the source blocked for 3 s", WAIT, || {
        s.metrics()
            .get(r#"sluice_destination_blocked_seconds_total{destination="k"}"#)
            >= 3.0
    });
    let taken = s.metrics().source_events("kin");
    // The lane, one request in flight, and the batches in hand: not the topic.
    assert!(
        taken <= 3_000,
        "the source kept taking messages while blocked: {taken}"
    );
    output.resume();
    let got = read_seqs(&output.brokers(), "out", n, Duration::from_secs(120));
    assert!(got.len() as u64 >= n);
    eprintln!("taken while blocked: {taken} of {n}");
}

/// An event larger than the producer's `message.max.bytes` is refused by
/// librdkafka as `MessageSizeTooLarge` and dead-lettered with that reason;
/// the others flow.
#[test]
fn a_message_too_large_is_dead_lettered_with_its_reason_while_the_rest_flow() {
    let k = Tansu::start();
    create_topic(&k.brokers(), "sized", 1);
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - {{ name: all, filter: 'true', destination: k }}
destinations:
  k:
    type: kafka
    brokers: [{}]
    topic: sized
    librdkafka_options: {{ message.max.bytes: 2000 }}
    dead_letter: dlq
  dlq: {{ type: file, path: "{{dir}}/dlq.ndjson" }}
"#,
        k.brokers()
    ));
    let big = "x".repeat(3000);
    send_lines(
        &s,
        "in",
        (0..20).map(|i| {
            if i == 7 {
                format!(r#"{{"seq":{i},"pad":"{big}"}}"#)
            } else {
                format!(r#"{{"seq":{i}}}"#)
            }
        }),
    );
    let dlq = s.dir.join("dlq.ndjson");
    wait_until("19 sent and the big one dead-lettered", WAIT, || {
        sent(&s, "k") == 19 && common::read_lines(&dlq).len() == 1
    });
    let dead = common::read_lines(&dlq);
    assert!(
        dead[0].contains("MessageSizeTooLarge"),
        "{}",
        &dead[0][..200.min(dead[0].len())]
    );
    assert!(dead[0].contains(r#""seq":7"#) || dead[0].contains(r#"\"seq\":7"#));
    let got = read_topic(&k.brokers(), "sized", 19, WAIT);
    assert!(!seqs(&got).contains(&7));
    assert_eq!(seqs(&got).len(), 19);
}

/// `start: latest` for a group with no committed offset skips what the
/// topic already held (against the mock cluster: Tansu's ListOffsets for
/// `latest` is off by a batch).
#[test]
fn start_latest_skips_what_the_topic_held_before_the_group_existed() {
    use rdkafka::mocking::MockCluster;
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("late", 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    produce_seqs(&brokers, "late", 0..100);
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  kin: {{ type: kafka, brokers: [{brokers}], topics: [late], group_id: fresh, start: latest, metadata: false }}
routes:
  - {{ name: all, filter: 'true', destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson", batch: {{ timeout: 10ms }} }}
"#
    ));
    wait_until("the partition assigned", WAIT, || partitions(&s) == 1);
    // Assigned is not yet positioned: produce until the first new one
    // arrives, then check nothing older did.
    let mut next = 100;
    wait_until("new messages arrive", WAIT, || {
        produce_seqs(&brokers, "late", next..next + 10);
        next += 10;
        !file_seqs(&s).is_empty()
    });
    let got = file_seqs(&s);
    assert!(
        got.iter().all(|&q| q >= 100),
        "old messages were read: {got:?}"
    );
}

/// `tls`: the destination produces and the source consumes over mutual TLS
/// (the broker's certificate checked against `ca_file`, sluice's own
/// presented from `cert_file`/`key_file`); a destination given another CA
/// sends nothing and retries. Tansu 0.6 cannot serve TLS from its command
/// line (`--cert` and `--key` are declared mutually exclusive), so the
/// broker sits behind an OpenSSL front (`scripts/peers start tls-front`).
#[test]
fn mutual_tls_to_the_brokers_for_the_destination_and_the_source() {
    use common::kafka::{TlsTansu, create_topic_with, read_topic_with};
    use common::tls::Pki;
    let pki = Pki::new();
    let other = Pki::new();
    let k = TlsTansu::start(&pki);
    let client_tls = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", &*pki.path("ca.pem")),
        ("ssl.certificate.location", &*pki.path("client.pem")),
        ("ssl.key.location", &*pki.path("client.key")),
    ];
    create_topic_with(&k.brokers(), &client_tls, "secure-out", 1);
    create_topic_with(&k.brokers(), &client_tls, "secure-in", 1);
    let tls = |p: &Pki| {
        format!(
            r#"{{ ca_file: "{}", cert_file: "{}", key_file: "{}" }}"#,
            p.path("ca.pem"),
            pki.path("client.pem"),
            pki.path("client.key")
        )
    };
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
  kin: {{ type: kafka, brokers: [{b}], topics: [secure-in], group_id: tls, metadata: false, tls: {good}, {FAST_GROUP} }}
routes:
  - {{ name: from-kafka, filter: 'exists(from)', destination: file }}
  - {{ name: good, filter: 'true', destination: good, final: false }}
  - {{ name: bad, filter: 'true', destination: bad }}
destinations:
  good: {{ type: kafka, brokers: [{b}], topic: secure-out, tls: {good} }}
  bad: {{ type: kafka, brokers: [{b}], topic: secure-out, tls: {bad}, backpressure: drop }}
  file: {{ type: file, path: "{{dir}}/in.ndjson", batch: {{ timeout: 10ms }} }}
"#,
        b = k.brokers(),
        good = tls(&pki),
        bad = tls(&other),
    ));
    send_lines(&s, "in", (0..100).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("100 produced over TLS", WAIT, || sent(&s, "good") == 100);
    let got = read_topic_with(&k.brokers(), &client_tls, "secure-out", WAIT, |r| {
        r.len() >= 100
    });
    assert_eq!(seqs(&got).len(), 100);
    wait_until("the untrusted broker is retried", WAIT, || {
        s.metrics().dest("sluice_destination_retries_total", "bad") > 0
    });
    assert_eq!(
        sent(&s, "bad"),
        0,
        "nothing goes to a broker whose certificate is not trusted"
    );
    // The source over TLS: what the test produces arrives in the file.
    let values: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"from":"kafka","seq":{i}}}"#))
        .collect();
    let records: Vec<_> = values.iter().map(|v| (None, v.as_bytes())).collect();
    common::kafka::produce_with(&k.brokers(), &client_tls, "secure-in", &records);
    let path = s.dir.join("in.ndjson");
    wait_until("50 consumed over TLS", WAIT, || {
        common::read_lines(&path).len() == 50
    });
}

/// `sasl`: the destination produces after logging in with PLAIN and with
/// SCRAM-SHA-256, and the source consumes after a SCRAM-SHA-512 login, the
/// password read from the environment (`${KAFKA_PASSWORD}`); a destination
/// with the wrong password sends nothing and drops nothing: it is retried,
/// and librdkafka's cause is logged. Tansu 0.6 cannot be given a user while
/// it authenticates, so the broker sits behind a SASL front that speaks
/// Kafka's SASL exchange (`tests/common/kafka_sasl.rs`).
#[test]
fn sasl_logins_with_each_mechanism_and_a_wrong_password_is_backpressure() {
    use common::kafka::{create_topic_with, produce_with, read_topic_with};
    use common::kafka_sasl::SaslTansu;
    let k = SaslTansu::start("sluice", "s3cret,pass=word");
    let client = k.client("SCRAM-SHA-256");
    create_topic_with(&k.brokers(), &client, "sasl-out", 1);
    create_topic_with(&k.brokers(), &client, "sasl-in", 1);
    let sasl = |mechanism: &str, password: &str| {
        format!(r#"{{ mechanism: {mechanism}, username: sluice, password: "{password}" }}"#)
    };
    let s = Sluice::start_with(
        &format!(
            r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
  kin: {{ type: kafka, brokers: [{b}], topics: [sasl-in], group_id: sasl, metadata: false, sasl: {scram512}, {FAST_GROUP} }}
routes:
  - {{ name: from-kafka, filter: 'exists(from)', destination: file }}
  - {{ name: plain, filter: 'true', destination: plain, final: false }}
  - {{ name: scram, filter: 'true', destination: scram, final: false }}
  - {{ name: wrong, filter: 'true', destination: wrong }}
destinations:
  plain: {{ type: kafka, brokers: [{b}], topic: sasl-out, sasl: {plain} }}
  scram: {{ type: kafka, brokers: [{b}], topic: sasl-out, sasl: {scram256} }}
  wrong: {{ type: kafka, brokers: [{b}], topic: sasl-out, sasl: {wrong} }}
  file: {{ type: file, path: "{{dir}}/in.ndjson", batch: {{ timeout: 10ms }} }}
"#,
            b = k.brokers(),
            plain = sasl("plain", "${KAFKA_PASSWORD}"),
            scram256 = sasl("scram-sha-256", "${KAFKA_PASSWORD}"),
            scram512 = sasl("scram-sha-512", "${KAFKA_PASSWORD}"),
            wrong = sasl("scram-sha-512", "not-the-password"),
        ),
        |c| {
            c.env("KAFKA_PASSWORD", "s3cret,pass=word");
        },
    );
    send_lines(&s, "in", (0..100).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("100 produced by each logged-in destination", WAIT, || {
        sent(&s, "plain") == 100 && sent(&s, "scram") == 100
    });
    let got = read_topic_with(&k.brokers(), &client, "sasl-out", WAIT, |r| r.len() >= 200);
    let mut twice: Vec<u64> = got
        .iter()
        .map(|r| r.json()["seq"].as_u64().unwrap())
        .collect();
    twice.sort_unstable();
    let expected: Vec<u64> = (0..100).flat_map(|i| [i, i]).collect();
    assert_eq!(twice, expected, "each event once from each destination");

    wait_until("the refused login is retried", WAIT, || {
        s.metrics()
            .dest("sluice_destination_retries_total", "wrong")
            > 0
    });
    assert_eq!(sent(&s, "wrong"), 0, "nothing is sent without a login");
    assert_eq!(
        s.metrics().dropped_any("wrong"),
        0,
        "a refused login drops nothing"
    );
    assert!(
        k.front.refused() > 0,
        "the front refused the wrong password"
    );
    assert!(
        s.logs().iter().any(|l| l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Authentication failed"))),
        "librdkafka's cause is logged: {:?}",
        s.logs()
    );

    // The source after its SCRAM-SHA-512 login.
    let values: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"from":"kafka","seq":{i}}}"#))
        .collect();
    let records: Vec<_> = values.iter().map(|v| (None, v.as_bytes())).collect();
    produce_with(&k.brokers(), &k.client("PLAIN"), "sasl-in", &records);
    let path = s.dir.join("in.ndjson");
    wait_until("50 consumed after a SCRAM-SHA-512 login", WAIT, || {
        common::read_lines(&path).len() == 50
    });
    assert!(k.front.logins() >= 3, "every client logged in");
}

/// A Kafka source feeding a `backpressure: drop` destination whose peer is
/// down: what the lane sheds is not committed. The partition is read
/// again, so once the peer is back every record arrives (at least once),
/// and only then does the committed offset reach the end of the topic.
#[test]
fn records_a_drop_destination_shed_are_not_committed_and_are_read_again() {
    let rt = common::runtime();
    let n = 3000u64;
    let k = Tansu::start();
    create_topic(&k.brokers(), "in", 1);
    produce_seqs(&k.brokers(), "in", 0..n);
    let mut rx = rt.block_on(async {
        let mut rx = common::receiver::Receiver::start().await;
        rx.kill().await;
        rx
    });
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  kin: {{ type: kafka, brokers: [{}], topics: [in], group_id: shed, metadata: false, commit_interval: 100ms, {FAST_GROUP} }}
routes:
  - {{ name: all, filter: 'true', destination: out }}
destinations:
  out:
    type: http
    url: "{}"
    backpressure: drop
    queue: {{ max_events: 200 }}
    batch: {{ max_events: 100, timeout: 10ms }}
    request: {{ concurrency: 1 }}
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
"#,
        k.brokers(),
        rx.url("/")
    ));
    let committed = |s: &Sluice| {
        s.metrics()
            .get(r#"sluice_kafka_consumer_committed_offset{source="kin",topic="in",partition="0"}"#)
            as u64
    };
    // A drop lane never blocks the source: it reads the whole topic, and
    // the lane sheds all but what it holds.
    wait_until("the whole topic read and shed", WAIT, || {
        s.metrics().source_events("kin") >= n
            && s.metrics().dropped("out", "backpressure") >= n - 1000
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        committed(&s),
        0,
        "nothing is committed while the peer is down"
    );
    rt.block_on(rx.restart());
    wait_until("every record delivered", Duration::from_secs(120), || {
        let got: BTreeSet<u64> = rx.accepted().iter().map(|l| common::seq_of(l)).collect();
        got.len() as u64 == n
    });
    wait_until("the offset committed to the end", WAIT, || {
        committed(&s) == n
    });
    assert!(
        s.metrics().source_events("kin") > n,
        "the shed records were read again"
    );
    eprintln!(
        "read {} times for {n} records; dropped {}",
        s.metrics().source_events("kin"),
        s.metrics().dropped("out", "backpressure")
    );
}

/// No broker at all: librdkafka reports "all brokers down" through the
/// client and the consumer many times a second. Each cause is logged once
/// (then once a minute with a count), not per report — while librdkafka's
/// own reconnect attempts, which it spaces out itself, go on.
#[test]
fn a_missing_broker_is_logged_once_per_cause_not_per_report() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  k: {{ type: kafka, brokers: ["127.0.0.1:{port}"], topics: [t], group_id: g }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: kafka, brokers: ["127.0.0.1:{port}"], topic: out }}
"#
    ));
    let records = |m: &str| -> Vec<serde_json::Value> {
        s.logs()
            .into_iter()
            .filter(|l| l["message"].as_str().is_some_and(|x| x.starts_with(m)))
            .collect()
    };
    // librdkafka's own connection failures, spaced by its reconnect
    // backoff: several of them mean several rounds of reports went by.
    wait_until("librdkafka retried several times", WAIT, || {
        records("[thrd:").len() >= 4
    });
    let source_errors = records("kafka source error");
    let causes: BTreeSet<String> = source_errors
        .iter()
        .map(|l| l["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        causes.iter().any(|c| c.contains("AllBrokersDown")),
        "{source_errors:#?}"
    );
    assert_eq!(
        source_errors.len(),
        causes.len(),
        "a cause logged more than once: {source_errors:#?}"
    );
    assert_eq!(records("every Kafka broker is down").len(), 1);
    assert!(records("kafka destination error").len() <= 2);
}
