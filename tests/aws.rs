//! The SQS and Kinesis destinations against real peers (moto, kinesalite,
//! from `scripts/peers`): what a consumer receives, and what the counters
//! say.

#![cfg(all(feature = "sqs", feature = "kinesis"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use common::aws::{AwsPeer, create_queue, create_stream, read_stream, receive};
use common::{Metrics, Sluice, send_lines, sent, validate_refuses, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn seq(body: &[u8]) -> u64 {
    let v: Value = serde_json::from_slice(body).expect("a JSON record");
    v["seq"].as_u64().expect("seq")
}

fn pipeline(dest: &str) -> String {
    format!(
        "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: all, filter: 'true', destination: out }}\ndestinations:\n  out: {dest}\n"
    )
}

/// `sluice validate`'s complaint about a config whose one destination is
/// `dest` (written to a file named `name`, line 7).
fn refused(name: &str, dest: &str) -> String {
    validate_refuses(name, &pipeline(dest))
}

/// N events arrive as N messages, sent in batches of at most 10, with
/// their attributes (numbers as `Number`); an event over 256 KiB is
/// dropped alone as `oversize`.
#[test]
fn sqs_messages_arrive_in_batches_with_attributes_and_an_oversize_event_alone_is_dropped() {
    let moto = AwsPeer::moto();
    let url = create_queue(&moto, "events");
    let s = Sluice::start(&pipeline(&format!(
        r#"{{ type: sqs, queue_url: "{url}", {}, message_attributes: {{ host: host, seq: seq }}, batch: {{ timeout: 50ms }} }}"#,
        moto.keys()
    )));
    let n = 95u64;
    let big = "x".repeat(300 << 10);
    send_lines(
        &s,
        "in",
        (0..n).flat_map(|i| {
            let mut v = vec![format!(r#"{{"seq":{i},"host":"web-{}"}}"#, i % 3)];
            if i == 40 {
                v.push(format!(r#"{{"seq":9999,"big":"{big}"}}"#));
            }
            v
        }),
    );
    let got = receive(&moto, &url, WAIT, |m| m.len() as u64 >= n);
    let seqs: BTreeSet<u64> = got.iter().map(|m| seq(m.body.as_bytes())).collect();
    assert_eq!(seqs, (0..n).collect(), "every event once, the big one not");
    for m in &got {
        let i = seq(m.body.as_bytes());
        assert_eq!(
            m.attributes.get("host"),
            Some(&("String".into(), format!("web-{}", i % 3))),
            "{m:?}"
        );
        assert_eq!(
            m.attributes.get("seq"),
            Some(&("Number".into(), i.to_string())),
            "{m:?}"
        );
    }
    wait_until("the counters", WAIT, || {
        sent(&s, "out") == n && s.metrics().dropped("out", "oversize") == 1
    });
    let requests = s
        .metrics()
        .get("sluice_request_duration_seconds_count{destination=\"out\"}");
    assert!(
        requests >= (n as f64 / 10.0).ceil(),
        "{requests} requests for {n} messages: more than 10 per call?"
    );
}

/// A FIFO queue keeps each group's order with the default settings (ten
/// requests in flight, small batches holding several groups): a group's
/// requests never overlap. The group comes from a field, and the
/// deduplication id is the body's hash unless a field gives it.
#[test]
fn sqs_fifo_keeps_the_order_of_each_group() {
    let moto = AwsPeer::moto();
    let url = create_queue(&moto, "ordered.fifo");
    let s = Sluice::start(&pipeline(&format!(
        r#"{{ type: sqs, queue_url: "{url}", {}, message_group_id: '{{{{ host }}}}', deduplication_id_field: id, batch: {{ max_events: 4, timeout: 20ms }} }}"#,
        moto.keys()
    )));
    let n = 300u64;
    send_lines(
        &s,
        "in",
        (0..n).map(|i| format!(r#"{{"seq":{i},"host":"h{}","id":"m{i}"}}"#, i % 5)),
    );
    let got = receive(&moto, &url, WAIT, |m| m.len() as u64 >= n);
    let mut by_group: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in &got {
        by_group
            .entry(m.group.clone().expect("a message group"))
            .or_default()
            .push(seq(m.body.as_bytes()));
    }
    assert_eq!(by_group.len(), 5, "{by_group:?}");
    for (g, seqs) in &by_group {
        let want: Vec<u64> = (0..n).filter(|i| format!("h{}", i % 5) == *g).collect();
        assert_eq!(seqs, &want, "group {g} out of order");
    }
}

/// The same configuration against a queue named instead of addressed
/// (resolved with GetQueueUrl), and a FIFO queue without a group is
/// refused at its line.
#[test]
fn sqs_queue_name_is_resolved_and_a_fifo_queue_without_a_group_is_refused() {
    let moto = AwsPeer::moto();
    let url = create_queue(&moto, "by-name");
    let s = Sluice::start(&pipeline(&format!(
        r#"{{ type: sqs, queue_name: by-name, {}, batch: {{ timeout: 20ms }} }}"#,
        moto.keys()
    )));
    send_lines(&s, "in", (0..25).map(|i| format!(r#"{{"seq":{i}}}"#)));
    let got = receive(&moto, &url, WAIT, |m| m.len() >= 25);
    assert_eq!(got.len(), 25);

    let err = refused(
        "fifo.yaml",
        r#"{ type: sqs, queue_url: "http://127.0.0.1:1/1/q.fifo", region: us-east-1 }"#,
    );
    assert!(
        err.contains("fifo.yaml:7:") && err.contains("needs message_group_id"),
        "{err}"
    );
}

/// N events arrive as N records across the shards, keyed by the field (a
/// random key for events without it), against both Kinesis peers; gzip
/// records decode to the event.
#[test]
fn kinesis_records_arrive_across_shards_with_their_keys_on_moto_and_kinesalite() {
    for peer in [AwsPeer::moto(), AwsPeer::kinesalite()] {
        create_stream(&peer, "events", 4);
        create_stream(&peer, "zipped", 1);
        let s = Sluice::start(&format!(
            "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: all, filter: 'true', destination: plain, final: false }}\n  - {{ name: z, filter: 'true', destination: zipped }}\ndestinations:\n  plain: {{ type: kinesis, stream: events, {k}, partition_key_field: host, batch: {{ timeout: 50ms }} }}\n  zipped: {{ type: kinesis, stream: zipped, {k}, compression: gzip, batch: {{ timeout: 50ms }} }}\n",
            k = peer.kinesis_keys("")
        ));
        let n = 1200u64;
        send_lines(
            &s,
            "in",
            (0..n).map(|i| {
                if i % 10 == 0 {
                    format!(r#"{{"seq":{i}}}"#)
                } else {
                    format!(r#"{{"seq":{i},"host":"web-{}"}}"#, i % 7)
                }
            }),
        );
        // Read once sluice counts everything sent: moto numbers records
        // of concurrent PutRecords calls out of order, so a reader that
        // follows the stream while it is written can step past one.
        wait_until("the counters", WAIT, || {
            sent(&s, "plain") == n && sent(&s, "zipped") == n
        });
        let got = read_stream(&peer, "events", WAIT, |r| r.len() as u64 >= n);
        let seqs: BTreeSet<u64> = got.iter().map(|r| seq(&r.data)).collect();
        assert_eq!(seqs.len() as u64, n, "every event once");
        let shards: BTreeSet<&str> = got.iter().map(|r| r.shard.as_str()).collect();
        assert!(shards.len() > 1, "all records in one shard: {shards:?}");
        let mut random = BTreeSet::new();
        for r in &got {
            let i = seq(&r.data);
            if i.is_multiple_of(10) {
                assert_eq!(r.key.len(), 32, "a random key: {}", r.key);
                random.insert(r.key.clone());
            } else {
                assert_eq!(r.key, format!("web-{}", i % 7));
            }
        }
        assert_eq!(random.len() as u64, n / 10, "random keys repeat");
        let zipped = read_stream(&peer, "zipped", WAIT, |r| r.len() as u64 >= n);
        let mut unzipped = BTreeSet::new();
        for r in &zipped {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(&r.data[..])
                .read_to_end(&mut text)
                .expect("gzip data");
            unzipped.insert(seq(&text));
        }
        assert_eq!(unzipped.len() as u64, n);
    }
}

/// A fault proxy in front of moto fails some entries of each call: an
/// entry failed on SQS's side is retried alone, a sender fault is
/// dead-lettered with its code; nothing else is sent twice or lost.
#[test]
fn sqs_partial_failures_retry_only_the_failed_entries_and_dead_letter_sender_faults() {
    use common::aws_fault::{Fault, FaultProxy};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let moto = AwsPeer::moto();
    let url = create_queue(&moto, "partial");
    let rt = common::aws::runtime_multi();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let proxy = rt.block_on(FaultProxy::start(
        moto.endpoint(),
        Arc::new(move |body: &str| {
            if body.contains(r#""reject":true"#) {
                Some(Fault {
                    sender_fault: true,
                    code: "InvalidMessageContents",
                })
            } else if body.contains(r#""flaky":true"#)
                && seen.lock().unwrap().insert(body.to_string())
            {
                Some(Fault {
                    sender_fault: false,
                    code: "InternalError",
                })
            } else {
                None
            }
        }),
    ));
    let s = Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: all, filter: 'true', destination: out }}\ndestinations:\n  out: {{ type: sqs, queue_url: \"{url}\", region: us-east-1, endpoint: \"{}\", auth: {{ access_key_id: test, secret_access_key: test }}, dead_letter: dlq, batch: {{ timeout: 20ms }}, retry: {{ initial_backoff: 50ms }} }}\n  dlq: {{ type: file, path: \"{{dir}}/dead.ndjson\", batch: {{ timeout: 10ms }} }}\n",
        proxy.endpoint()
    ));
    let n = 300u64;
    send_lines(
        &s,
        "in",
        (0..n).map(|i| match i % 10 {
            3 => format!(r#"{{"seq":{i},"reject":true}}"#),
            5 | 6 => format!(r#"{{"seq":{i},"flaky":true}}"#),
            _ => format!(r#"{{"seq":{i}}}"#),
        }),
    );
    let good = n - n / 10;
    let got = receive(&moto, &url, WAIT, |m| m.len() as u64 >= good);
    let mut seqs: Vec<u64> = got.iter().map(|m| seq(m.body.as_bytes())).collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (0..n).filter(|i| i % 10 != 3).collect();
    assert_eq!(seqs, want, "each accepted event exactly once");
    let dead = s.dir.join("dead.ndjson");
    wait_until("the sender faults dead-lettered", WAIT, || {
        common::read_lines(&dead).len() as u64 == n / 10
    });
    for l in common::read_lines(&dead) {
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["dead_letter"]["code"], "InvalidMessageContents", "{l}");
        assert_eq!(v["event"]["reject"], true, "{l}");
    }
    let m = s.metrics();
    assert!(
        m.dest("sluice_destination_retried_events_total", "out") >= n / 10 * 2,
        "each failed entry is retried"
    );
    wait_until("sent counts what SQS took", WAIT, || {
        sent(&s, "out") == good
    });
    drop(rt);
}

/// Kinesis answers some records with `ProvisionedThroughputExceeded`
/// (twice each, through the fault proxy in front of kinesalite): only
/// those are sent again, counted as throttled, and every record arrives
/// exactly once.
/// A fault that throttles each record marked `"hot":true` the first two
/// times the proxy sees it.
fn hot_twice() -> common::aws_fault::Rule {
    use common::aws_fault::Fault;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let tries = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    Arc::new(move |data: &str| {
        if !data.contains(r#""hot":true"#) {
            return None;
        }
        let mut t = tries.lock().unwrap();
        let n = t.entry(data.to_string()).or_default();
        *n += 1;
        (*n <= 2).then_some(Fault {
            sender_fault: false,
            code: "ProvisionedThroughputExceededException",
        })
    })
}

/// Events 0..n over four keys, every ninth one hot.
fn keyed_events(n: u64) -> impl Iterator<Item = String> {
    (0..n).map(|i| {
        let hot = if i % 9 == 4 { r#","hot":true"# } else { "" };
        format!(r#"{{"seq":{i},"k":"key-{}"{hot}}}"#, i % 4)
    })
}

/// The keys whose records the stream holds out of `seq` order.
fn keys_out_of_order(got: &[common::aws::Record]) -> Vec<String> {
    common::keys_out_of_order(got.iter().map(|r| (r.key.as_str(), seq(&r.data))))
}

/// The peer hangs for 20 s with `persistent_queue`: events spill to disk
/// and all arrive once it is back.
#[test]
fn sqs_and_kinesis_outage_with_a_persistent_queue_loses_nothing() {
    let moto = AwsPeer::moto();
    let url = create_queue(&moto, "spill");
    create_stream(&moto, "spill", 2);
    let s = Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{{dir}}/data\"\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: q, filter: 'true', destination: q, final: false }}\n  - {{ name: k, filter: 'true', destination: k }}\ndestinations:\n  q: {{ type: sqs, queue_url: \"{url}\", {k}, backpressure: persistent_queue, queue: {{ max_events: 100, mode: error }}, request: {{ timeout: 2s, concurrency: 2 }}, batch: {{ timeout: 20ms }} }}\n  k: {{ type: kinesis, stream: spill, {kk}, backpressure: persistent_queue, queue: {{ max_events: 100, mode: error }}, batch: {{ max_events: 10, timeout: 20ms }} }}\n",
        k = moto.keys(),
        kk = moto.kinesis_keys("timeout: 2s")
    ));
    moto.pause();
    // moto's SQS scans the whole queue for every message it takes (its
    // queue attributes), so its cost grows with the square of the depth:
    // a few hundred events keep it responsive after the outage.
    let n = 300u64;
    send_lines(&s, "in", (0..n).map(|i| format!(r#"{{"seq":{i}}}"#)));
    // Whether events reach the disk or wait in retrying requests depends
    // on timing; what is certain is that both queues engage.
    wait_until("both persistent queues engage", WAIT, || {
        let engaged = s.log_records("persistent queue engaged: new events go to disk");
        ["q", "k"]
            .iter()
            .all(|d| engaged.iter().any(|l| l["destination"] == *d))
    });
    std::thread::sleep(Duration::from_secs(20)); // the outage the issue names
    moto.resume();
    let distinct = |seqs: Vec<u64>| seqs.into_iter().collect::<BTreeSet<_>>();
    let all: BTreeSet<u64> = (0..n).collect();
    // At least once: requests moto took while hung may arrive twice.
    let got = receive(&moto, &url, Duration::from_secs(120), |m| {
        distinct(m.iter().map(|m| seq(m.body.as_bytes())).collect()).len() as u64 >= n
    });
    assert_eq!(
        distinct(got.iter().map(|m| seq(m.body.as_bytes())).collect()),
        all,
        "sqs"
    );
    let recs = read_stream(&moto, "spill", Duration::from_secs(120), |r| {
        distinct(r.iter().map(|r| seq(&r.data)).collect()).len() as u64 >= n
    });
    assert_eq!(
        distinct(recs.iter().map(|r| seq(&r.data)).collect()),
        all,
        "kinesis"
    );
    wait_until("everything counted as sent", WAIT, || {
        sent(&s, "q") == n && sent(&s, "k") == n
    });
    let m = s.metrics();
    for d in ["q", "k"] {
        assert_eq!(
            m.dest("sluice_destination_dropped_events_total", d),
            0,
            "{d} dropped"
        );
    }
}

/// Events 0..n over four keys through a `kinesis` destination named
/// `name` (with `extra` keys) into kinesalite behind the fault proxy, every
/// ninth record throttled twice (`hot_twice`). Checks that each record
/// arrived exactly once and hands back the records, in stream order, and
/// the metrics; plus how many records were hot.
fn throttled_kinesis(name: &str, extra: &str, n: u64) -> (Vec<common::aws::Record>, Metrics, u64) {
    use common::aws_fault::FaultProxy;
    let peer = AwsPeer::kinesalite();
    create_stream(&peer, name, 2);
    let rt = common::aws::runtime_multi();
    let proxy = rt.block_on(FaultProxy::start(peer.endpoint(), hot_twice()));
    let s = Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: a, filter: 'true', destination: {name} }}\ndestinations:\n  {name}: {{ type: kinesis, stream: {name}, region: us-east-1, endpoint: \"{}\", auth: {{ access_key_id: test, secret_access_key: test }}, partition_key_field: k{extra}, batch: {{ timeout: 20ms }}, retry: {{ initial_backoff: 50ms }} }}\n",
        proxy.endpoint()
    ));
    send_lines(&s, "in", keyed_events(n));
    wait_until("sent counts every record", WAIT, || sent(&s, name) == n);
    let got = read_stream(&peer, name, WAIT, |r| r.len() as u64 >= n);
    let mut seqs: Vec<u64> = got.iter().map(|r| seq(&r.data)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "each record exactly once");
    let hot = (0..n).filter(|i| i % 9 == 4).count() as u64;
    let m = s.metrics();
    drop(rt);
    (got, m, hot)
}

/// Kinesis answers some records of a call with a throughput error (the
/// fault proxy in front of kinesalite): those alone are sent again, as
/// throttled, and every record arrives exactly once.
#[test]
fn kinesis_throttled_records_are_retried_alone() {
    let (got, m, hot) = throttled_kinesis("plain", "", 400);
    assert_eq!(
        m.dest("sluice_destination_retried_events_total", "plain"),
        hot * 2,
        "only the throttled records are sent again, twice each"
    );
    assert!(
        m.dest("sluice_destination_throttled_total", "plain") > 0,
        "throttling counted"
    );
    // What `ordering: per_key` is for: a retried record lands after the
    // later records of its key.
    assert!(
        !keys_out_of_order(&got).is_empty(),
        "retries reorder a key's records without per_key"
    );
}

/// `ordering: per_key` under the same throttling, with the default
/// requests in flight: every record once, each key's records in the order
/// they were sent.
#[test]
fn kinesis_per_key_ordering_holds_through_throttling() {
    let (got, m, hot) = throttled_kinesis("ordered", ", ordering: per_key", 200);
    assert_eq!(
        keys_out_of_order(&got),
        Vec::<String>::new(),
        "keys out of order"
    );
    // Each hot record twice, and the later records of its key held back
    // with it.
    assert!(m.dest("sluice_destination_retried_events_total", "ordered") > hot * 2);
    assert!(m.dest("sluice_destination_throttled_total", "ordered") > 0);
}

/// `ordering: per_key` without keys, or with the driver's ordering off,
/// is refused at its line.
#[test]
fn kinesis_per_key_ordering_needs_keys_and_the_drivers_ordering() {
    let err = refused(
        "perkey.yaml",
        "{ type: kinesis, stream: s, region: us-east-1, ordering: per_key }",
    );
    assert!(
        err.contains("perkey.yaml:7:") && err.contains("needs partition_key_field"),
        "{err}"
    );
    let err = refused(
        "perkey.yaml",
        "{ type: kinesis, stream: s, region: us-east-1, partition_key_field: k, ordering: per_key, request: { ordering: none } }",
    );
    assert!(
        err.contains("perkey.yaml:7:") && err.contains("request.ordering"),
        "{err}"
    );
}

/// Wrong keys in the environment (the credential chain, no `auth:`) are
/// backpressure: nothing is sent or dropped, the cause is logged once per
/// destination, not per request, and the events wait in the persistent
/// queue. Restarted with the right keys, sluice delivers every one.
#[test]
fn wrong_credentials_are_backpressure_and_recover_when_fixed_on_restart() {
    let moto = AwsPeer::moto_checking_keys();
    let url = create_queue(&moto, "creds");
    create_stream(&moto, "creds", 1);
    let data = tempfile::tempdir().unwrap();
    let common = format!(
        r#"region: us-east-1, endpoint: "{}", backpressure: persistent_queue, queue: {{ max_events: 100, mode: error }}, batch: {{ timeout: 20ms }}, retry: {{ initial_backoff: 50ms, max_backoff: 500ms }}"#,
        moto.endpoint()
    );
    let yaml = format!(
        "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{}\"\nshutdown_timeout: 2s\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: q, filter: 'true', destination: q, final: false }}\n  - {{ name: k, filter: 'true', destination: k }}\ndestinations:\n  q: {{ type: sqs, queue_url: \"{url}\", {common} }}\n  k: {{ type: kinesis, stream: creds, request: {{ concurrency: 1 }}, {common} }}\n",
        data.path().display()
    );
    let keys = |id: String, secret: String| {
        move |c: &mut std::process::Command| {
            c.env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret)
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
                .env("AWS_CONFIG_FILE", "/nonexistent/config")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
    };
    let mut first = Sluice::start_with(&yaml, keys("AKIAWRONGWRONGWRONG".into(), "wrong".into()));
    let n = 500u64;
    send_lines(&first, "in", (0..n).map(|i| format!(r#"{{"seq":{i}}}"#)));
    let warning = "requests fail; retrying (backpressure) until this is fixed";
    // Many requests fail (a hundred entries retried, several rounds of
    // backoff) before anything is checked.
    wait_until("both destinations retry", WAIT, || {
        let m = first.metrics();
        m.dest("sluice_destination_retried_events_total", "q") >= 100
            && m.dest("sluice_destination_retried_events_total", "k") >= 100
    });
    for d in ["q", "k"] {
        assert_eq!(sent(&first, d), 0, "{d}: nothing gets through wrong keys");
        let warned: Vec<Value> = first
            .log_records(warning)
            .into_iter()
            .filter(|l| l["destination"] == d)
            .collect();
        assert_eq!(
            warned.len(),
            1,
            "{d}: logged once, not per request: {warned:#?}"
        );
        // moto answers SQS's JSON protocol with an XML error the SDK
        // cannot read a code from: then the cause is the status.
        let cause = warned[0]["cause"].as_str().unwrap_or_default();
        assert!(
            ["InvalidClientTokenId", "HTTP 403"].contains(&cause),
            "{warned:#?}"
        );
    }
    first.terminate();
    first.wait_exit(Duration::from_secs(30));
    for d in ["q", "k"] {
        let acc = first.final_accounting(d);
        assert_eq!(acc["events"].as_u64(), Some(n), "{d}: {acc}");
        assert_eq!(
            acc["dropped"].as_u64(),
            Some(0),
            "{d}: nothing dropped: {acc}"
        );
        assert_eq!(acc["queued"].as_u64(), Some(n), "{d}: all on disk: {acc}");
    }

    let second = Sluice::start_with(
        &yaml,
        keys(moto.access_key_id.clone(), moto.secret_access_key.clone()),
    );
    let got = receive(&moto, &url, WAIT, |m| m.len() as u64 >= n);
    let seqs: BTreeSet<u64> = got.iter().map(|m| seq(m.body.as_bytes())).collect();
    assert_eq!(seqs, (0..n).collect(), "every queued message");
    let recs = read_stream(&moto, "creds", WAIT, |r| r.len() as u64 >= n);
    let seqs: BTreeSet<u64> = recs.iter().map(|r| seq(&r.data)).collect();
    assert_eq!(seqs, (0..n).collect(), "every queued record");
    wait_until("the second run counts them sent", WAIT, || {
        sent(&second, "q") == n && sent(&second, "k") == n
    });
}
