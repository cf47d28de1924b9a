//! The `fluent` source with the real clients: `@fluent-org/logger` (npm:
//! every event mode, acks, the shared_key handshake, TLS) and
//! `fluent-logger` (PyPI); an ack withheld while the peer is down.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::real_peer::run_client;
use common::tcp_receiver::{Mode, TcpReceiver};
use common::tls::Pki;
use common::{Sluice, read_lines, runtime, wait_until};
use serde_json::{Value, json};

fn to_file(settings: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  fwd: {{ type: fluent, address: 127.0.0.1:0{settings} }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#
    ))
}

fn events(s: &Sluice) -> Vec<Value> {
    read_lines(&s.dir.join("out.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("every event is JSON"))
        .collect()
}

fn js(s: &Sluice, options: Value) -> String {
    let port = s.source("fwd").port().to_string();
    run_client(
        "js-clients",
        "fluent_client.js",
        &["127.0.0.1".into(), port, options.to_string()],
    )
}

/// Every event mode, with acks, from the Node client; Message mode from
/// the Python one: every record arrives with its tag and time.
#[test]
fn every_event_mode_from_both_clients() {
    let s = to_file("");
    let modes = [
        "Message",
        "Forward",
        "PackedForward",
        "CompressedPackedForward",
    ];
    for mode in modes {
        let out = js(
            &s,
            json!({ "mode": mode, "count": 5, "ack": true, "label": mode }),
        );
        assert!(out.contains("sent"), "{mode}: {out}");
    }
    let port = s.source("fwd").port().to_string();
    run_client(
        "py-clients",
        "fluent_client.py",
        &["127.0.0.1".into(), port],
    );
    wait_until("23 events", Duration::from_secs(20), || {
        events(&s).len() == 23
    });
    let got = events(&s);
    for mode in modes {
        let mine: Vec<&Value> = got.iter().filter(|e| e["mode"] == mode).collect();
        assert_eq!(mine.len(), 5, "{mode}: {got:#?}");
        let mut ns: Vec<i64> = mine.iter().map(|e| e["n"].as_i64().unwrap()).collect();
        ns.sort();
        assert_eq!(ns, vec![0, 1, 2, 3, 4]);
        for e in &mine {
            assert_eq!(e["tag"], format!("js.{mode}"), "{e}");
            assert_eq!(e["nested"]["ok"], true, "{e}");
            let t = e["timestamp"].as_str().expect("a timestamp");
            assert!(
                t.ends_with('Z') && t.contains('.'),
                "EventTime keeps sub-seconds: {t}"
            );
        }
    }
    let py: Vec<&Value> = got.iter().filter(|e| e["tag"] == "py.login").collect();
    assert_eq!(py.len(), 3, "{got:#?}");
    assert!(py.iter().all(|e| e["user"] == "alice"));
    let m = s.metrics();
    assert_eq!(m.source_events("fwd"), 23);
    assert_eq!(m.rejected("fwd", "malformed"), 0);
    m.books_balance("out").expect("books");
}

/// `shared_key`: a client with the key is taken, one with another key is
/// refused at the handshake and counted.
#[test]
fn the_shared_key_handshake() {
    let s = to_file(r#", shared_key: "s3cret", self_hostname: "aggregator""#);
    let out = js(
        &s,
        json!({ "sharedKey": "s3cret", "count": 3, "ack": true }),
    );
    assert!(out.contains("sent"), "{out}");
    let out = js(&s, json!({ "sharedKey": "wrong", "count": 3 }));
    assert!(out.contains("refused"), "{out}");
    wait_until("three events", Duration::from_secs(20), || {
        events(&s).len() == 3
    });
    wait_until("the refusal counted", Duration::from_secs(10), || {
        s.metrics().rejected("fwd", "unauthorized") == 1
    });
    assert_eq!(events(&s).len(), 3);
}

/// TLS with client certificates: the Node client with one is taken, a
/// client without one refused and counted.
#[test]
fn over_mutual_tls() {
    let pki = Pki::new();
    let s = to_file(&format!(
        r#", tls: {{ cert_file: "{}", key_file: "{}", client_ca_file: "{}" }}"#,
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    ));
    let out = js(
        &s,
        json!({ "count": 4, "ack": true, "ca": pki.path("ca.pem"), "cert": pki.path("client.pem"), "key": pki.path("client.key") }),
    );
    assert!(out.contains("sent"), "{out}");
    wait_until("four events", Duration::from_secs(20), || {
        events(&s).len() == 4
    });
    assert_eq!(s.metrics().rejected("fwd", "tls"), 0);
}

/// The chaos scenario: the destination's peer is down, so the client's
/// chunk is not acknowledged (its emit does not resolve); the peer comes
/// back, everything is delivered, and only then is it acknowledged.
#[test]
fn a_chunk_is_acknowledged_only_once_delivered() {
    let rt = runtime();
    let mut peer = rt.block_on(TcpReceiver::start(Mode::Lines));
    let peer_addr = peer.address();
    rt.block_on(peer.kill());
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  fwd: {{ type: fluent, address: 127.0.0.1:0 }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: tcp, address: "{peer_addr}", retry: {{ initial_backoff: 100ms, max_backoff: 200ms }} }}
"#
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut client = Command::new(format!("{root}/scripts/peers"))
        .args(["start", "js-clients"])
        .arg(dir.path())
        .arg(format!("{root}/tests/peers/fluent_client.js"))
        .arg("127.0.0.1")
        .arg(s.source("fwd").port().to_string())
        .arg(json!({ "mode": "Forward", "count": 20, "ack": true }).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the fluent client (scripts/peers start js-clients)");
    wait_until("sluice to take the chunk", Duration::from_secs(20), || {
        s.metrics().source_events("fwd") == 20
    });
    // Taken, not delivered: no ack, so the client is still waiting.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        client.try_wait().expect("try_wait").is_none(),
        "the client ended before its chunk could be delivered"
    );
    rt.block_on(peer.restart());
    wait_until("the peer has all 20", Duration::from_secs(30), || {
        peer.events().len() >= 20
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = client.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ack within 30 s of delivery"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut client.stdout.take().expect("stdout"), &mut out).ok();
    assert!(status.success() && out.contains("sent"), "{status}: {out}");
    assert_eq!(peer.events().len(), 20);
}
