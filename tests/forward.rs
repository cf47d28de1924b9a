//! sluice → sluice forwarding (`type: sluice` destination and source)
//! between real sluice processes: an edge takes events over TCP and
//! forwards them to one or two aggregators, which deliver to an HTTP
//! receiver in the test.

#![cfg(feature = "sluice")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::aggregator::Aggregator;
use common::receiver::Receiver;
use common::tls::Pki;
use common::{Sluice, runtime, send_lines, sent, seq_of, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// An aggregator's routes: everything to the HTTP receiver at `url`, with
/// `extra` keys on that destination.
fn to_http(url: &str, extra: &str) -> String {
    format!(
        "routes: [{{ name: all, destination: out }}]\ndestinations:\n  out: {{ type: http, url: \"{url}\", batch: {{ timeout: 20ms }}{extra} }}\n"
    )
}

/// How many times each seq arrived.
fn counts(lines: &[String]) -> BTreeMap<u64, usize> {
    let mut c = BTreeMap::new();
    for l in lines {
        *c.entry(seq_of(l)).or_default() += 1;
    }
    c
}

/// The edge over TLS with a bearer token: every event arrives once, JSON
/// and text alike; an edge with the wrong token sends nothing and drops
/// nothing (backpressure, the cause logged), and the aggregator counts
/// the refusals as `unauthorized`.
#[test]
fn edge_to_aggregator_over_tls_with_a_token_delivers_each_event_once() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let pki = Pki::new();
    let agg = Aggregator::start(
        &format!(
            r#", auth: {{ bearer: "${{FORWARD_TOKEN}}" }}, tls: {{ cert_file: "{}", key_file: "{}" }}"#,
            pki.path("server.pem"),
            pki.path("server.key")
        ),
        &to_http(&rx.url("/ingest"), ""),
        &[("FORWARD_TOKEN", "s3cret")],
    );
    let edge = Sluice::start_with(
        &format!(
            r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - {{ name: good, filter: 'true', destination: agg, final: false }}
  - {{ name: stranger, filter: 'true', destination: stranger }}
destinations:
  agg: {{ type: sluice, address: "{a}", auth: {{ bearer: "${{FORWARD_TOKEN}}" }}, tls: {{ ca_file: "{ca}" }}, batch: {{ timeout: 20ms }} }}
  stranger: {{ type: sluice, address: "{a}", auth: {{ bearer: not-the-token }}, tls: {{ ca_file: "{ca}" }}, batch: {{ timeout: 20ms }} }}
"#,
            a = agg.address(),
            ca = pki.path("ca.pem"),
        ),
        |c| {
            c.env("FORWARD_TOKEN", "s3cret");
        },
    );
    let n = 1000u64;
    let lines = (0..n)
        .map(|i| format!(r#"{{"seq":{i},"msg":"hello"}}"#))
        .chain(std::iter::once("a plain text line".to_string()));
    send_lines(&edge, "in", lines);
    wait_until("every event at the receiver", WAIT, || {
        rx.accepted().len() as u64 > n
    });
    let got = rx.accepted();
    let (text, json): (Vec<_>, Vec<_>) = got.iter().cloned().partition(|l| l.contains("plain"));
    assert_eq!(text, vec![r#"{"message":"a plain text line"}"#.to_string()]);
    let c = counts(&json);
    assert_eq!(c.len() as u64, n);
    assert!(c.values().all(|&k| k == 1), "each event once");
    // The aggregator answers once its destination delivered: just after.
    wait_until("the edge counts every event sent", WAIT, || {
        sent(&edge, "agg") == n + 1
    });
    assert_eq!(
        agg.sluice().metrics().source_events("edge"),
        n + 1,
        "the aggregator took each event once"
    );

    wait_until("the wrong token is retried", WAIT, || {
        edge.metrics()
            .dest("sluice_destination_retries_total", "stranger")
            > 0
    });
    assert_eq!(sent(&edge, "stranger"), 0);
    assert_eq!(edge.metrics().dropped_any("stranger"), 0);
    assert!(agg.sluice().metrics().rejected("edge", "unauthorized") > 0);
    assert!(
        edge.logs()
            .iter()
            .any(|l| l["cause"] == "UNAUTHENTICATED" && l["destination"] == "stranger"),
        "the cause is logged: {:#?}",
        edge.logs()
    );
    assert_eq!(rx.accepted().len() as u64, n + 1, "nothing more arrived");
}

/// Under mTLS the aggregator takes only edges presenting a certificate its
/// CA signed: the edge's `tls.cert_file`/`key_file` get its batches in; a
/// destination without them is refused at the handshake (counted `tls`
/// there), retried, and delivers nothing.
#[test]
fn an_aggregator_under_mtls_takes_only_edges_with_a_certificate() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let pki = Pki::new();
    let agg = Aggregator::start(
        &format!(
            r#", tls: {{ cert_file: "{}", key_file: "{}", client_ca_file: "{}" }}"#,
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem")
        ),
        &to_http(&rx.url("/ingest"), ""),
        &[],
    );
    let edge = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - {{ name: good, filter: 'true', destination: agg, final: false }}
  - {{ name: nocert, filter: 'true', destination: nocert }}
destinations:
  agg: {{ type: sluice, address: "{a}", tls: {{ ca_file: "{ca}", cert_file: "{cert}", key_file: "{key}" }}, batch: {{ timeout: 20ms }} }}
  nocert: {{ type: sluice, address: "{a}", tls: {{ ca_file: "{ca}" }}, batch: {{ timeout: 20ms }} }}
"#,
        a = agg.address(),
        ca = pki.path("ca.pem"),
        cert = pki.path("client.pem"),
        key = pki.path("client.key"),
    ));
    let n = 200u64;
    send_lines(&edge, "in", (0..n).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("every event at the receiver", WAIT, || {
        rx.accepted().len() as u64 == n
    });
    wait_until("the certificate-less destination retried", WAIT, || {
        edge.metrics()
            .dest("sluice_destination_retries_total", "nocert")
            > 0
    });
    assert!(agg.sluice().metrics().rejected("edge", "tls") > 0);
    assert_eq!(sent(&edge, "nocert"), 0);
    assert_eq!(edge.metrics().dropped_any("nocert"), 0);
    assert_eq!(rx.accepted().len() as u64, n, "nothing more arrived");
}

/// The issue's crash test: the aggregator is killed with SIGKILL mid-stream
/// and started again. Its destination is on a persistent queue with
/// `fsync: always`, and so is the edge's: every event arrives at least
/// once, nothing is dropped.
#[test]
fn a_killed_aggregator_loses_nothing_with_persistent_queues() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let mut agg = Aggregator::start(
        "",
        &to_http(
            &rx.url("/ingest"),
            ", backpressure: persistent_queue, queue: { fsync: always }",
        ),
        &[],
    );
    let n = 20_000u64;
    let edge = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: "{{dir}}/data"
sources:
  gen: {{ type: generator, rate: 4000, count: {n} }}
  keep: {{ type: http, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: agg }}]
destinations:
  agg:
    type: sluice
    address: "{a}"
    batch: {{ max_events: 200, timeout: 20ms }}
    retry: {{ initial_backoff: 100ms, max_backoff: 1s }}
    backpressure: persistent_queue
    queue: {{ fsync: always }}
"#,
        a = agg.address()
    ));
    wait_until("a quarter through", WAIT, || {
        rx.accepted().len() as u64 > n / 4
    });
    let address = agg.address();
    let up = || edge.metrics().endpoint_up("agg", &address);
    assert_eq!(up(), Some(1.0), "the endpoint is up, by that name");
    agg.kill();
    wait_until("the edge sees the aggregator gone", WAIT, || {
        up() == Some(0.0)
    });
    agg.restart();
    wait_until(
        "every event at the receiver",
        Duration::from_secs(120),
        || counts(&rx.accepted()).len() as u64 == n,
    );
    let c = counts(&rx.accepted());
    assert_eq!(
        c.keys().copied().collect::<BTreeSet<_>>(),
        (0..n).collect(),
        "every event at least once"
    );
    assert_eq!(edge.metrics().dropped_any("agg"), 0);
    assert_eq!(agg.sluice().metrics().dropped_any("out"), 0);
}

/// Two aggregators share the edge's batches by weight; one is killed
/// mid-stream and the batches in flight to it go to the other: every
/// event arrives (a batch the dead one delivered but had not answered for
/// arrives twice), and the edge shows the dead endpoint down.
#[test]
fn the_edge_balances_over_two_aggregators_and_moves_batches_off_a_dead_one() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let mut a = Aggregator::start("", &to_http(&rx.url("/a"), ""), &[]);
    let b = Aggregator::start("", &to_http(&rx.url("/b"), ""), &[]);
    let n = 20_000u64;
    let edge = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  gen: {{ type: generator, rate: 4000, count: {n} }}
  keep: {{ type: http, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: agg }}]
destinations:
  agg:
    type: sluice
    endpoints: [{{ address: "{a}" }}, {{ address: "{b}" }}]
    batch: {{ max_events: 100, timeout: 20ms }}
    retry: {{ initial_backoff: 100ms, max_backoff: 1s }}
"#,
        a = a.address(),
        b = b.address(),
    ));
    wait_until("both aggregators take batches", WAIT, || {
        a.sluice().metrics().source_events("edge") > 1000
            && b.sluice().metrics().source_events("edge") > 1000
    });
    let address = a.address();
    let up = || edge.metrics().endpoint_up("agg", &address);
    assert_eq!(up(), Some(1.0), "the endpoint is up, by that name");
    a.kill();
    wait_until("every event at the receiver", WAIT, || {
        counts(&rx.accepted()).len() as u64 == n
    });
    assert_eq!(
        counts(&rx.accepted())
            .keys()
            .copied()
            .collect::<BTreeSet<_>>(),
        (0..n).collect()
    );
    let m = edge.metrics();
    assert_eq!(m.dropped_any("agg"), 0);
    assert_eq!(up(), Some(0.0), "the dead aggregator is down");
    let by_path = |p: &str| {
        rx.requests()
            .iter()
            .filter(|r| r.path == p)
            .map(|r| r.events.len())
            .sum::<usize>()
    };
    assert!(by_path("/b") as u64 > n / 2, "the survivor took the rest");
}

/// An edge (TCP in) forwarding everything to an aggregator whose one
/// destination `out` has room for 30 events (a batch of 10 in flight, 20
/// in the lane) and whose peer is down. `agg_source` is added to the
/// aggregator's source, `out_extra` to `out`.
fn edge_to_a_full_aggregator(
    rt: &tokio::runtime::Runtime,
    agg_source: &str,
    out_extra: &str,
) -> (Receiver, Aggregator, Sluice) {
    let mut rx = rt.block_on(Receiver::start());
    rt.block_on(rx.kill());
    let agg = Aggregator::start(
        agg_source,
        &format!(
            "routes: [{{ name: all, destination: out }}]\ndestinations:\n  out: {{ type: http, url: \"{}\", batch: {{ max_events: 10, timeout: 20ms }}, request: {{ concurrency: 1 }}, queue: {{ max_events: 20 }}, retry: {{ initial_backoff: 100ms, max_backoff: 500ms }}{out_extra} }}\n",
            rx.url("/ingest")
        ),
        &[],
    );
    let edge = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: agg }}]
destinations:
  agg: {{ type: sluice, address: "{}", batch: {{ max_events: 50, timeout: 20ms }}, retry: {{ initial_backoff: 100ms, max_backoff: 500ms }} }}
"#,
        agg.address()
    ));
    (rx, agg, edge)
}

/// Once the edge is told to send again, the aggregator's peer comes back:
/// each of the `n` events arrives and the edge counted it sent, dropping
/// nothing.
fn the_edge_sends_again_until_all_arrive(
    rt: &tokio::runtime::Runtime,
    rx: &mut Receiver,
    edge: &Sluice,
    n: u64,
) {
    wait_until("the edge is told to send again", WAIT, || {
        edge.metrics()
            .dest("sluice_destination_retries_total", "agg")
            > 0
    });
    rt.block_on(rx.restart());
    wait_until("every event at the receiver, and answered", WAIT, || {
        counts(&rx.accepted()).len() as u64 == n && sent(edge, "agg") == n
    });
    assert_eq!(edge.metrics().dropped_any("agg"), 0);
}

/// A `block` destination at the aggregator that stays full answers
/// RESOURCE_EXHAUSTED: the edge is throttled, and everything arrives
/// once the aggregator's peer is back, nothing dropped anywhere.
#[test]
fn a_blocked_aggregator_throttles_the_edge_and_loses_nothing() {
    let rt = runtime();
    let (mut rx, agg, edge) = edge_to_a_full_aggregator(&rt, ", max_wait: 200ms", "");
    // The edge sends 5 batches of 50 at once.
    let n = 2000u64;
    send_lines(&edge, "in", (0..n).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("the aggregator sheds", WAIT, || {
        agg.sluice().metrics().rejected("edge", "shed") > 0
    });
    the_edge_sends_again_until_all_arrive(&rt, &mut rx, &edge, n);
    assert_eq!(agg.sluice().metrics().dropped_any("out"), 0);
    let c = counts(&rx.accepted());
    assert!(c.values().all(|&k| k == 1), "a shed batch was not routed");
}

/// An aggregator whose destination is `backpressure: drop` and full: what
/// it drops of a forwarded batch is answered RESOURCE_EXHAUSTED (never
/// OK), so the edge keeps the batch and sends it again; once the peer is
/// back, every event has arrived (at least once) and the edge dropped
/// nothing.
#[test]
fn an_aggregator_that_drops_for_lack_of_room_makes_the_edge_send_again() {
    let rt = runtime();
    let (mut rx, agg, edge) = edge_to_a_full_aggregator(&rt, "", ", backpressure: drop");
    let n = 1000u64;
    send_lines(&edge, "in", (0..n).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("the aggregator drops", WAIT, || {
        agg.sluice().metrics().dropped("out", "backpressure") > 0
    });
    the_edge_sends_again_until_all_arrive(&rt, &mut rx, &edge, n);
}

/// Bad settings are refused at their line.
#[test]
fn bad_forwarding_settings_are_refused_at_their_line() {
    let dest = |keys: &str| {
        format!(
            "sources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes: [{{ name: all, destination: agg }}]\ndestinations:\n  agg:\n    type: sluice\n{keys}"
        )
    };
    let refused = common::validate_refuses(
        "forward.yaml",
        &dest(
            "    address: \"127.0.0.1:7700\"\n    endpoints: [{ address: \"127.0.0.1:7701\" }]\n",
        ),
    );
    assert!(
        refused.contains("forward.yaml:6:") && refused.contains("not both"),
        "{refused}"
    );
    let refused = common::validate_refuses(
        "forward.yaml",
        &dest("    address: \"127.0.0.1:7700\"\n    compression: snappy\n"),
    );
    assert!(
        refused.contains("forward.yaml:6:") && refused.contains("snappy"),
        "{refused}"
    );
    let refused = common::validate_refuses(
        "forward.yaml",
        &dest("    address: \"127.0.0.1:7700\"\n    tls: { verify_certificate: false }\n"),
    );
    assert!(refused.contains("tls.ca_file"), "{refused}");
    let refused = common::validate_refuses(
        "forward.yaml",
        "sources:\n  agg: { type: sluice, address: 127.0.0.1:7700, max_batch_bytes: 0 }\nroutes: [{ name: all, destination: c }]\ndestinations:\n  c: { type: console }\n",
    );
    assert!(
        refused.contains("forward.yaml:2:") && refused.contains("max_batch_bytes"),
        "{refused}"
    );
}

/// The source's answers to what only a foreign or newer sender would send,
/// through the generated client: a version it does not speak is
/// FAILED_PRECONDITION (`bad_request`), lengths that do not add up and
/// data that does not decompress are INVALID_ARGUMENT (`malformed`), a
/// batch over `max_batch_bytes` is INVALID_ARGUMENT (`oversize`), and a
/// good batch is taken, answered with the receiver's version.
#[test]
fn versions_and_malformed_batches_are_answered_and_counted() {
    use sluice::forward::pb::forward_client::ForwardClient;
    use sluice::forward::{SendRequest, VERSION};
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let agg = Aggregator::start(", max_batch_bytes: 1KiB", &to_http(&rx.url("/in"), ""), &[]);
    let url = format!("http://{}", agg.address());
    let good = || SendRequest {
        version: VERSION,
        data: bytes::Bytes::from_static(br#"{"seq":0}{"seq":1}"#),
        lengths: vec![9, 9],
        ..Default::default()
    };
    let code = |req: SendRequest| {
        rt.block_on(async {
            let mut c = ForwardClient::connect(url.clone()).await.expect("connect");
            match c.send(req).await {
                Ok(r) => Ok(r.into_inner()),
                Err(s) => Err((s.code(), s.message().to_string())),
            }
        })
    };
    let answer = code(good()).expect("a good batch is taken");
    assert_eq!((answer.version, answer.accepted), (VERSION, 2));
    let newer = code(SendRequest {
        version: VERSION + 1,
        ..good()
    });
    assert!(
        matches!(&newer, Err((tonic::Code::FailedPrecondition, m)) if m.contains("speaks 1 to 1")),
        "{newer:?}"
    );
    let short = code(SendRequest {
        lengths: vec![9, 8],
        ..good()
    });
    assert!(
        matches!(short, Err((tonic::Code::InvalidArgument, _))),
        "{short:?}"
    );
    let garbled = code(SendRequest {
        compression: 1,
        ..good()
    });
    assert!(
        matches!(garbled, Err((tonic::Code::InvalidArgument, _))),
        "{garbled:?}"
    );
    let big = code(SendRequest {
        data: bytes::Bytes::from(vec![b'x'; 2048]),
        lengths: vec![2048],
        ..good()
    });
    assert!(
        matches!(big, Err((tonic::Code::InvalidArgument, _))),
        "{big:?}"
    );
    let m = agg.sluice().metrics();
    assert_eq!(m.rejected("edge", "bad_request"), 1);
    assert_eq!(m.rejected("edge", "malformed"), 2);
    assert_eq!(m.rejected("edge", "oversize"), 1);
    assert_eq!(m.source_events("edge"), 2);
    wait_until("the good batch at the receiver", WAIT, || {
        rx.accepted().len() == 2
    });
}
