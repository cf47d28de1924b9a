//! The `statsd` source with the clients applications use: `statsd` (PyPI)
//! and `hot-shots` (npm, DogStatsD tags), over UDP and TCP; lines that are
//! not metrics counted; TLS with and without a client certificate.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::real_peer::run_client;
use common::tls::Pki;
use common::{Sluice, read_lines, wait_until};
use serde_json::Value;

fn to_file(sources: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
{sources}
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

/// `(name, value)` of every event named `name`, in arrival order.
fn values(got: &[Value], name: &str) -> Vec<Value> {
    got.iter()
        .filter(|e| e["name"] == name)
        .map(|e| e["value"].clone())
        .collect()
}

fn of<'a>(got: &'a [Value], name: &str) -> &'a Value {
    got.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name}: {got:#?}"))
}

/// Both clients, over one transport: every metric arrives as one metric
/// event with its type, value and tags.
fn both_clients(mode: &str) {
    let s = to_file(&format!(
        "  st: {{ type: statsd, mode: {mode}, address: 127.0.0.1:0 }}"
    ));
    let port = s.source("st").port().to_string();
    let args = ["127.0.0.1".to_string(), port, mode.to_string()];
    run_client("py-clients", "statsd_client.py", &args);
    run_client("js-clients", "statsd_client.js", &args);
    wait_until("18 metric events", Duration::from_secs(20), || {
        events(&s).len() == 18
    });
    let got = events(&s);
    // statsd (PyPI)
    assert_eq!(
        values(&got, "py.hits"),
        vec![Value::from(3.0), (-1.0).into()]
    );
    assert_eq!(of(&got, "py.hits")["type"], "counter");
    assert_eq!(
        values(&got, "py.temp"),
        vec![Value::from(20.0), 25.0.into()],
        "a change is applied"
    );
    assert_eq!(of(&got, "py.lat")["type"], "timer");
    assert_eq!(values(&got, "py.lat"), vec![Value::from(12.5)]);
    assert_eq!(
        (
            &of(&got, "py.users")["type"],
            &of(&got, "py.users")["value"]
        ),
        (&"set".into(), &"alice".into())
    );
    assert_eq!(values(&got, "py.batched").len(), 5, "a pipeline's packet");
    // hot-shots: DogStatsD tags, global and per metric.
    let hits = of(&got, "js.hits");
    assert_eq!(
        (&hits["value"], &hits["tags"]),
        (
            &2.0.into(),
            &serde_json::json!({"env": "test", "route": "/a"})
        )
    );
    assert_eq!(
        values(&got, "js.temp"),
        vec![Value::from(20.0), 17.0.into()]
    );
    let size = of(&got, "js.size");
    assert_eq!(
        (&size["type"], &size["tags"]["shard"]),
        (&"histogram".into(), &"1".into())
    );
    assert_eq!(of(&got, "js.dur")["type"], "distribution");
    assert_eq!(of(&got, "js.lat")["value"], 42.0);
    assert_eq!(of(&got, "js.users")["value"], "bob");
    for e in &got {
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
    }
    let m = s.metrics();
    assert_eq!(m.source_events("st"), 18);
    assert_eq!(m.rejected("st", "malformed"), 0);
    m.books_balance("out").expect("books");
}

#[test]
fn statsd_and_hot_shots_over_udp() {
    both_clients("udp");
}

#[test]
fn statsd_and_hot_shots_over_tcp() {
    both_clients("tcp");
}

/// A packet mixing good lines, broken ones and a DogStatsD service check:
/// the good ones arrive (a sampled counter scaled up), the broken ones are
/// counted, the check is kept whole.
#[test]
fn bad_lines_are_counted_and_the_rest_arrive() {
    let s = to_file("  st: { type: statsd, address: 127.0.0.1:0 }");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(
        b"ok:1|c|@0.1\nbroken\nx:1|q\n_sc|redis.up|0|#env:prod\nlat:1:2:3|h|@0.5\nbad:NaN|g\n",
        s.source("st"),
    )
    .expect("send");
    wait_until("five events", Duration::from_secs(20), || {
        events(&s).len() == 5
    });
    let got = events(&s);
    assert_eq!(of(&got, "ok")["value"], 10.0);
    assert_eq!(
        values(&got, "lat"),
        vec![Value::from(1.0), 2.0.into(), 3.0.into()]
    );
    assert_eq!(of(&got, "lat")["sample_rate"], 0.5);
    assert!(
        got.iter()
            .any(|e| e["message"] == "_sc|redis.up|0|#env:prod"),
        "{got:#?}"
    );
    wait_until("three malformed", Duration::from_secs(10), || {
        s.metrics().rejected("st", "malformed") == 3
    });
    assert_eq!(
        s.metrics()
            .get(r#"sluice_source_unparsed_events_total{source="st"}"#),
        1.0
    );
}

/// StatsD over TLS: a client with a certificate from the CA is taken, one
/// without is refused and counted.
#[test]
fn tls_with_and_without_a_client_certificate() {
    let pki = Pki::new();
    let s = to_file(&format!(
        r#"  st: {{ type: statsd, mode: tcp, address: 127.0.0.1:0, tls: {{ cert_file: "{}", key_file: "{}", client_ca_file: "{}" }} }}"#,
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    ));
    let connect = format!("127.0.0.1:{}", s.source("st").port());
    let send = |with_cert: bool, line: &str| {
        let mut args = vec![
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-CAfile",
            &pki.path("ca.pem"),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if with_cert {
            args.extend([
                "-cert".into(),
                pki.path("client.pem"),
                "-key".into(),
                pki.path("client.key"),
            ]);
        }
        args.extend(["-connect".into(), connect.clone()]);
        let mut c = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        if let Some(mut i) = c.stdin.take() {
            let _ = i.write_all(line.as_bytes());
        }
        let _ = c.wait();
    };
    send(true, "secure:1|c\n");
    wait_until(
        "the certified client's metric",
        Duration::from_secs(20),
        || events(&s).len() == 1,
    );
    send(false, "insecure:1|c\n");
    wait_until(
        "the refused handshake counted",
        Duration::from_secs(20),
        || s.metrics().rejected("st", "tls") >= 1,
    );
    let got = events(&s);
    assert_eq!((got.len(), &got[0]["name"]), (1, &"secure".into()));
}
