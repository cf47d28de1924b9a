//! The `splunk_hec` source with Splunk's own clients (`splunk-logging`,
//! npm; `splunk-handler`, PyPI), the raw endpoint, Splunk's answers and
//! codes, gzip bodies, and indexer acknowledgements that turn `true` only
//! once the events reached a peer that was down when they came.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::real_peer::run_client;
use common::tcp_receiver::{Mode, TcpReceiver};
use common::{Sluice, http_request, read_lines, runtime, wait_until};
use serde_json::Value;

const TOKEN: &str = "0f1e2d3c-aaaa-bbbb-cccc-000000000001";
const CHANNEL: &str = "6f1c8c5e-0a8a-4a55-9f0c-3f6f0d6b2c11";

fn to_file(extra: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  hec: {{ type: splunk_hec, address: 127.0.0.1:0, tokens: ["{TOKEN}"]{extra} }}
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

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let (status, body) = http_request(addr, "POST", path, headers, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn auth() -> String {
    format!("Splunk {TOKEN}")
}

/// A binary body (gzip), as `http_request` sends only text.
fn post_bytes(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Splunk's clients, as applications run them: every event arrives with
/// its fields and the envelope's metadata under Vector's names.
#[test]
fn splunk_logging_and_splunk_handler_deliver_their_events() {
    let s = to_file("");
    let addr = s.source("hec");
    let out = run_client(
        "js-clients",
        "hec_client.js",
        &[format!("http://{addr}"), TOKEN.to_string()],
    );
    assert!(out.contains("Success"), "splunk-logging was answered {out}");
    run_client(
        "py-clients",
        "hec_client.py",
        &["127.0.0.1".into(), addr.port().to_string(), TOKEN.into()],
    );
    wait_until("six events", Duration::from_secs(20), || {
        events(&s).len() == 6
    });
    let got = events(&s);
    let node: Vec<&Value> = got.iter().filter(|e| e["host"] == "node-1").collect();
    assert_eq!(node.len(), 3, "{got:#?}");
    for e in &node {
        assert_eq!(e["splunk_source"], "shop");
        assert_eq!(e["splunk_sourcetype"], "_json");
        assert_eq!(e["splunk_index"], "main");
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
    }
    // splunk-logging wraps the message with its severity.
    assert!(
        node.iter()
            .all(|e| e["message"]["event"] == "checkout" && e["severity"] == "info"),
        "{node:#?}"
    );
    let py: Vec<&Value> = got.iter().filter(|e| e["host"] == "py-1").collect();
    assert_eq!(py.len(), 3, "{got:#?}");
    for e in &py {
        assert_eq!(
            (&e["splunk_source"], &e["splunk_sourcetype"]),
            (&"billing".into(), &"pylog".into())
        );
    }
    for i in 0..3 {
        let text = format!("invoice {i} failed");
        assert!(
            py.iter().any(|e| e["message"] == text.as_str()),
            "{text}: {py:#?}"
        );
    }
    let m = s.metrics();
    assert_eq!(m.source_events("hec"), 6);
    m.books_balance("out").expect("books");
}

/// What Splunk answers, and the raw endpoint with its channel and query
/// metadata, and a gzip body.
#[test]
fn answers_codes_raw_and_gzip() {
    let s = to_file("");
    let addr = s.source("hec");
    let a = auth();
    let (st, body) = http_request(addr, "GET", "/services/collector/health", &[], "");
    assert_eq!(
        (st, serde_json::from_str::<Value>(&body).ok()),
        (
            200,
            Some(serde_json::json!({"text": "HEC is healthy", "code": 17}))
        )
    );
    let event = r#"{"event":"hello"}"#;
    assert_eq!(
        post(addr, "/services/collector/event", &[], event),
        (
            401,
            serde_json::json!({"text": "Token is required", "code": 2})
        )
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/event",
            &[("Authorization", "Bearer x")],
            event
        )
        .1["code"],
        3
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/event",
            &[("Authorization", "Splunk wrong")],
            event
        ),
        (403, serde_json::json!({"text": "Invalid token", "code": 4}))
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/event",
            &[("Authorization", &a)],
            ""
        ),
        (400, serde_json::json!({"text": "No data", "code": 5}))
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/event",
            &[("Authorization", &a)],
            r#"{"event":"ok"}{"event":"#
        ),
        (
            400,
            serde_json::json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 1})
        )
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/event",
            &[("Authorization", &a)],
            r#"{"host":"x"}"#
        )
        .1["code"],
        12
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/raw",
            &[("Authorization", &a)],
            "line"
        )
        .1,
        serde_json::json!({"text": "Data channel is missing", "code": 10})
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/raw",
            &[("Authorization", &a), ("X-Splunk-Request-Channel", "nope")],
            "line"
        )
        .1["code"],
        11
    );
    assert_eq!(
        post(
            addr,
            "/services/collector/ack",
            &[("Authorization", &a), ("X-Splunk-Request-Channel", CHANNEL)],
            r#"{"acks":[0]}"#
        )
        .1["code"],
        14
    );
    // Accepted: envelopes, raw lines, gzip.
    assert_eq!(
        post(
            addr,
            "/services/collector/event/1.0",
            &[("Authorization", &a)],
            r#"{"event":{"a":1},"fields":{"dc":"x"}} {"event":"two"}"#
        ),
        (200, serde_json::json!({"text": "Success", "code": 0}))
    );
    let raw_path =
        format!("/services/collector/raw?channel={CHANNEL}&host=rawhost&sourcetype=access");
    assert_eq!(
        post(
            addr,
            &raw_path,
            &[("Authorization", &a)],
            "GET /a 200\nGET /b 404\n"
        )
        .0,
        200
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"event":"zipped"}"#).expect("gzip");
    let gz = gz.finish().expect("gzip");
    assert_eq!(
        post_bytes(
            addr,
            "/services/collector/event",
            &[("Authorization", &a), ("Content-Encoding", "gzip")],
            &gz
        ),
        200
    );
    wait_until("five events", Duration::from_secs(20), || {
        events(&s).len() == 5
    });
    let got = events(&s);
    let find = |k: &str, v: Value| {
        got.iter()
            .find(|e| e[k] == v)
            .unwrap_or_else(|| panic!("no {k}={v}: {got:#?}"))
            .clone()
    };
    assert_eq!(find("a", 1.into())["dc"], "x");
    find("message", "two".into());
    let r = find("message", "GET /b 404".into());
    assert_eq!(
        (&r["host"], &r["splunk_sourcetype"], &r["splunk_channel"]),
        (&"rawhost".into(), &"access".into(), &CHANNEL.into())
    );
    find("message", "zipped".into());
    let m = s.metrics();
    assert_eq!(m.rejected("hec", "unauthorized"), 3);
    assert_eq!(m.rejected("hec", "malformed"), 3);
    assert_eq!(m.rejected("hec", "bad_request"), 2);
}

/// The chaos scenario for acknowledgements: the peer is down, so the
/// request's ack stays `false`; the peer comes back, everything is
/// delivered, and only then is it `true` (once: then it is forgotten).
#[test]
fn an_ack_turns_true_only_once_the_peer_has_the_events() {
    let rt = runtime();
    let mut peer = rt.block_on(TcpReceiver::start(Mode::Lines));
    let peer_addr = peer.address();
    rt.block_on(peer.kill());
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  hec: {{ type: splunk_hec, address: 127.0.0.1:0, tokens: ["{TOKEN}"], acknowledgements: true }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: tcp, address: "{peer_addr}", retry: {{ initial_backoff: 100ms, max_backoff: 200ms }} }}
"#
    ));
    let addr = s.source("hec");
    let a = auth();
    let h = [
        ("Authorization", a.as_str()),
        ("X-Splunk-Request-Channel", CHANNEL),
    ];
    let body: String = (0..50)
        .map(|i| format!(r#"{{"event":{{"n":{i}}}}}"#))
        .collect();
    let (st, answer) = post(addr, "/services/collector/event", &h, &body);
    assert_eq!((st, &answer["code"]), (200, &0.into()), "{answer}");
    let id = answer["ackId"].as_u64().expect("an ackId");
    let (_, second) = post(addr, "/services/collector/event", &h, r#"{"event":"more"}"#);
    assert_eq!(second["ackId"].as_u64(), Some(id + 1));
    let query = format!(r#"{{"acks":[{id},{}]}}"#, id + 1);
    let acks = |q: &str| post(addr, "/services/collector/ack", &h, q).1;
    // The peer is down: nothing is acknowledged, however long we ask.
    for _ in 0..5 {
        let got = acks(&query);
        assert_eq!(got["acks"][id.to_string()], false, "{got}");
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(peer.restart());
    wait_until(
        "the peer has all 51 events",
        Duration::from_secs(30),
        || peer.events().len() >= 51,
    );
    let mut seen = serde_json::Map::new();
    wait_until("both acks true", Duration::from_secs(20), || {
        let got = acks(&query);
        for (k, v) in got["acks"].as_object().cloned().unwrap_or_default() {
            if v == true {
                seen.insert(k, v);
            }
        }
        seen.len() == 2
    });
    // Reported once, then forgotten, as Splunk does.
    assert_eq!(acks(&query)["acks"][id.to_string()], false);
    assert_eq!(peer.events().len(), 51);
    // A request that is not acknowledged needs no channel answer change:
    // without a channel, acknowledging HEC refuses it (code 10).
    assert_eq!(
        post(
            addr,
            "/services/collector/event",
            &[("Authorization", &a)],
            r#"{"event":1}"#
        )
        .1["code"],
        10
    );
}

/// HEC over HTTPS with client certificates (as the OpenTelemetry
/// Collector's exporter can present one): curl with a certificate is
/// answered, without one refused at the handshake and counted.
#[test]
fn https_with_and_without_a_client_certificate() {
    let pki = common::tls::Pki::new();
    let s = to_file(&format!(
        r#", tls: {{ cert_file: "{}", key_file: "{}", client_ca_file: "{}" }}"#,
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    ));
    let url = format!(
        "https://127.0.0.1:{}/services/collector/event",
        s.source("hec").port()
    );
    let curl = |cert: bool| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert", &pki.path("ca.pem")]);
        if cert {
            c.args([
                "--cert",
                &pki.path("client.pem"),
                "--key",
                &pki.path("client.key"),
            ]);
        }
        c.args([
            "-H",
            &format!("Authorization: Splunk {TOKEN}"),
            "-d",
            r#"{"event":"over tls"}"#,
            &url,
        ])
        .output()
        .expect("run curl")
    };
    let ok = curl(true);
    let answer: Value = serde_json::from_slice(&ok.stdout).unwrap_or(Value::Null);
    assert_eq!(
        answer,
        serde_json::json!({"text": "Success", "code": 0}),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = curl(false);
    assert!(
        !refused.status.success(),
        "a client without a certificate must be refused"
    );
    wait_until("the refusal counted", Duration::from_secs(20), || {
        s.metrics().rejected("hec", "tls") == 1
    });
    wait_until("one event", Duration::from_secs(20), || {
        events(&s).len() == 1
    });
    assert_eq!(events(&s)[0]["message"], "over tls");
}
