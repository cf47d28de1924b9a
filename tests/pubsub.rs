//! The Pub/Sub destination against Google's emulator (from `scripts/peers`):
//! what a subscriber pulls, and what the counters say.

#![cfg(feature = "pubsub")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::pubsub::{Emulator, PROJECT, Pulled};
use common::{Sluice, send_lines, sent, validate_refuses, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn pipeline(dest: &str) -> String {
    format!(
        "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{{dir}}/data\"\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: all, filter: 'true', destination: out }}\ndestinations:\n  out: {dest}\n"
    )
}

fn field(m: &Pulled, name: &str) -> Value {
    let v: Value = serde_json::from_slice(&m.data).expect("a JSON message");
    v[name].clone()
}

fn seq(m: &Pulled) -> u64 {
    field(m, "seq").as_u64().expect("seq")
}

/// Pull from `subscription` until `n` distinct events arrived (or fail).
fn pull_distinct(emulator: &Emulator, subscription: &str, n: u64, within: Duration) -> Vec<Pulled> {
    let mut got = Vec::new();
    let mut seqs = BTreeSet::new();
    wait_until(&format!("{n} distinct events pulled"), within, || {
        for m in emulator.pull(subscription) {
            seqs.insert(seq(&m));
            got.push(m);
        }
        seqs.len() as u64 >= n
    });
    got
}

/// Events of three hosts, numbered.
fn hosted(n: u64) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!(r#"{{"seq":{i},"host":"h{}","level":"info"}}"#, i % 3))
}

/// N events published in batches arrive as N messages with their
/// attributes, each host's ordering key and, per key, in the order sent.
#[test]
fn events_arrive_with_attributes_and_ordering_keys_in_order() {
    let emulator = Emulator::start();
    emulator.topic("logs", true);
    let s = Sluice::start(&pipeline(&format!(
        "{{ type: pubsub, project: {PROJECT}, topic: logs, endpoint: \"{}\", attributes: {{ host: host, seq: seq }}, ordering_key_field: host, batch: {{ max_events: 50, timeout: 20ms }} }}",
        emulator.endpoint()
    )));
    let n = 600u64;
    send_lines(&s, "in", hosted(n));
    let got = pull_distinct(&emulator, "logs", n, WAIT);
    assert_eq!(got.len() as u64, n, "each event exactly once");
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in &got {
        let host = field(m, "host").as_str().unwrap().to_string();
        assert_eq!(m.attributes.get("host"), Some(&host), "{m:?}");
        assert_eq!(m.attributes.get("seq"), Some(&seq(m).to_string()), "{m:?}");
        assert_eq!(m.ordering_key, host, "{m:?}");
        per_key.entry(host).or_default().push(seq(m));
    }
    assert_eq!(per_key.len(), 3);
    for (key, seqs) in &per_key {
        assert!(seqs.is_sorted(), "key {key} out of order: {seqs:?}");
    }
    wait_until("sent counts every event", WAIT, || sent(&s, "out") == n);
    assert_eq!(s.metrics().dropped_any("out"), 0);
}

/// A topic that does not exist (yet) is backpressure, logged with its
/// cause: nothing is dropped, and everything is published once it exists.
#[test]
fn a_missing_topic_is_backpressure_not_loss() {
    let emulator = Emulator::start();
    let s = Sluice::start(&pipeline(&format!(
        "{{ type: pubsub, project: {PROJECT}, topic: late, endpoint: \"{}\", batch: {{ timeout: 20ms }}, retry: {{ initial_backoff: 100ms, max_backoff: 500ms }} }}",
        emulator.endpoint()
    )));
    let n = 200u64;
    send_lines(&s, "in", hosted(n));
    wait_until("the missing topic logged as the cause", WAIT, || {
        s.log_records("requests fail; retrying (backpressure) until this is fixed")
            .iter()
            .any(|l| {
                l["cause"]
                    .as_str()
                    .is_some_and(|c| c.contains("projects/sluice-test/topics/late not found"))
            })
    });
    wait_until("a few retries", WAIT, || {
        s.metrics().dest("sluice_destination_retries_total", "out") >= 3
    });
    let m = s.metrics();
    assert_eq!(
        m.dropped_any("out"),
        0,
        "nothing dropped while the topic is missing"
    );
    assert_eq!(sent(&s, "out"), 0);
    // The topic and the subscription the test reads are two calls: a retry
    // between them would publish to no subscription, so sluice is held
    // still while both are made.
    s.pause();
    emulator.topic("late", false);
    s.resume();
    let got = pull_distinct(&emulator, "late", n, WAIT);
    assert_eq!(got.len() as u64, n, "each event exactly once");
    wait_until("sent counts every event", WAIT, || sent(&s, "out") == n);
    assert!(
        s.has_log("requests succeed again"),
        "the recovery is logged"
    );
}

/// The emulator hangs for 20 s while events keep coming to a destination
/// on `persistent_queue`: the disk queue engages, and once the emulator is
/// back every event is published (at least once), none dropped.
#[test]
fn an_emulator_outage_with_a_persistent_queue_loses_nothing() {
    let emulator = Emulator::start();
    emulator.topic("spill", false);
    let s = Sluice::start(&pipeline(&format!(
        "{{ type: pubsub, project: {PROJECT}, topic: spill, endpoint: \"{}\", backpressure: persistent_queue, queue: {{ max_events: 100, mode: error }}, request: {{ timeout: 2s }}, batch: {{ max_events: 20, timeout: 20ms }} }}",
        emulator.endpoint()
    )));
    emulator.pause();
    let outage = Instant::now();
    let n = 2_000u64;
    send_lines(&s, "in", hosted(n));
    wait_until("the persistent queue engages", WAIT, || {
        s.has_log("persistent queue engaged: new events go to disk")
    });
    wait_until("the source takes every event", WAIT, || {
        s.metrics().source_events("in") == n
    });
    // The outage the issue names.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(outage.elapsed()));
    emulator.resume();
    // At least once: a publish the emulator took while hung may be sent
    // again after its timeout.
    let got = pull_distinct(&emulator, "spill", n, Duration::from_secs(120));
    let seqs: BTreeSet<u64> = got.iter().map(seq).collect();
    assert_eq!(seqs, (0..n).collect(), "nothing lost");
    wait_until("sent counts every event", WAIT, || sent(&s, "out") >= n);
    assert_eq!(s.metrics().dropped_any("out"), 0, "nothing dropped");
}

/// A token server in the test, speaking OAuth 2's JWT-bearer grant as
/// Google's does: it refuses the first `refuse` requests, then grants.
struct TokenServer {
    _rt: tokio::runtime::Runtime,
    port: u16,
    requests: Arc<AtomicU64>,
    grants: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(refuse: u64) -> TokenServer {
        use axum::routing::post;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let grants = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, g) = (requests.clone(), grants.clone());
        let app = axum::Router::new().route(
            "/token",
            post(move |body: String| {
                let (r, g) = (r.clone(), g.clone());
                async move {
                    let i = r.fetch_add(1, Ordering::SeqCst);
                    g.lock().unwrap().push(body);
                    if i < refuse {
                        (
                            axum::http::StatusCode::BAD_REQUEST,
                            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                        )
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            r#"{"access_token":"ya29.sluice-test","expires_in":3600,"token_type":"Bearer"}"#,
                        )
                    }
                }
            }),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move { axum::serve(listener, app).await });
        TokenServer {
            _rt: rt,
            port,
            requests,
            grants,
        }
    }
}

/// A service-account key file whose tokens come from `token_uri`.
fn key_file(dir: &std::path::Path, token_uri: &str) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    let file = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "test-key",
        "private_key": key.serialize_pem(),
        "client_email": "sluice@sluice-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    });
    let path = dir.join("key.json");
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

/// With `credentials_file`, tokens come from the key file's token server:
/// while it refuses the key, publishing is backpressure with the cause
/// logged (nothing dropped); once it grants, everything is published.
#[test]
fn refused_credentials_are_backpressure_then_tokens_are_used() {
    let emulator = Emulator::start();
    emulator.topic("auth", false);
    // gcp_auth tries a token request 5 times: 10 refusals are two failed
    // publishes.
    let tokens = TokenServer::start(10);
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(
        dir.path(),
        &format!("http://127.0.0.1:{}/token", tokens.port),
    );
    let s = Sluice::start(&pipeline(&format!(
        "{{ type: pubsub, project: {PROJECT}, topic: auth, endpoint: \"{}\", credentials_file: \"{}\", request: {{ concurrency: 1 }}, batch: {{ timeout: 20ms }}, retry: {{ initial_backoff: 100ms, max_backoff: 500ms }} }}",
        emulator.endpoint(),
        key.display()
    )));
    let n = 100u64;
    send_lines(&s, "in", hosted(n));
    wait_until("the credentials logged as the cause", WAIT, || {
        s.log_records("requests fail; retrying (backpressure) until this is fixed")
            .iter()
            .any(|l| l["cause"] == "no Google credentials")
    });
    let got = pull_distinct(&emulator, "auth", n, WAIT);
    assert_eq!(got.len() as u64, n, "each event exactly once");
    wait_until("sent counts every event", WAIT, || sent(&s, "out") == n);
    let m = s.metrics();
    assert_eq!(
        m.dropped_any("out"),
        0,
        "refused credentials dropped nothing"
    );
    assert!(m.dest("sluice_destination_retries_total", "out") > 0);
    let requests = tokens.requests.load(Ordering::SeqCst);
    // One request at a time: two token fetches of five tries refused,
    // then one token, cached for every later publish.
    assert_eq!(requests, 11, "token requests");
    let grant = tokens.grants.lock().unwrap()[0].clone();
    assert!(
        grant.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
            && grant.contains("assertion="),
        "a JWT-bearer grant: {grant}"
    );
}

/// `sluice validate`'s complaint about a config whose one destination is
/// `dest` (written to a file named `name`, line 7).
fn refused(name: &str, dest: &str) -> String {
    validate_refuses(name, &pipeline(dest).replace("{dir}", "/tmp"))
}

#[test]
fn bad_pubsub_settings_are_refused_at_their_line() {
    let e = refused(
        "order.yaml",
        "{ type: pubsub, project: p, topic: logs, ordering_key_field: host, request: { ordering: none } }",
    );
    assert!(
        e.contains("order.yaml:8:") && e.contains("ordering_key_field needs the driver's ordering"),
        "{e}"
    );
    let e = refused("topic.yaml", "{ type: pubsub, project: p, topic: goog-x }");
    assert!(
        e.contains("topic.yaml:8:") && e.contains("not a valid Pub/Sub topic name"),
        "{e}"
    );
    let e = refused(
        "batch.yaml",
        "{ type: pubsub, project: p, topic: logs, batch: { max_events: 5000 } }",
    );
    assert!(e.contains("exceeds pubsub's limit of 1000"), "{e}");
}
