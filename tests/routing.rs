//! Routing semantics through the real topology, over a real TCP socket, into
//! real files: ordered routes, `final` versus clone-and-continue, `unmatched`
//! to a destination or dropped, and every path counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{read_lines, wait_until_async};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

fn ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            match &v["id"] {
                Value::Null => v["message"].as_str().unwrap_or("?").to_string(),
                id => id.to_string(),
            }
        })
        .collect()
}

async fn send_tcp(addr: std::net::SocketAddr, lines: &[&str]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for l in lines {
        s.write_all(l.as_bytes()).await.unwrap();
        s.write_all(b"\n").await.unwrap();
    }
    s.shutdown().await.unwrap();
}

/// The topology of `yaml` with `EVENTS` sent to its `in` source over TCP,
/// shut down once `routed` holds on its status: the status and the
/// destinations' reports.
async fn route_events(
    yaml: &str,
    routed: impl Fn(&Value) -> bool,
) -> (
    std::sync::Arc<sluice::api::Status>,
    Vec<sluice::topology::DestinationReport>,
) {
    let running = common::topology(yaml).await;
    send_tcp(running.source_addr("in").unwrap(), EVENTS).await;
    let status = running.status().clone();
    wait_until_async("all 7 events routed", Duration::from_secs(20), || {
        routed(&status.to_json())
    })
    .await;
    (status, running.shutdown().await)
}

const EVENTS: &[&str] = &[
    r#"{"id":1,"level":"error","status":503}"#,
    r#"{"id":2,"level":"error","status":200,"kube":{"namespace":"prod"}}"#,
    r#"{"id":3,"level":"error"}"#,
    r#"{"id":4,"level":"info","status":500}"#,
    r#"{"id":5,"level":"info","status":503,"kube":{"namespace":"prod"}}"#,
    r#"{"id":6,"level":"info"}"#,
    "hello, plain text",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_clone_and_unmatched_are_routed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: errors
    filter: 'level == "error"'
    destination: errors
    final: false
  - name: server
    filter: 'status >= 500'
    destination: server
  - name: prod
    filter: 'kube.namespace == "prod"'
    destination: prod
unmatched: rest
destinations:
  errors: {{ type: file, path: "{d}/errors.ndjson" }}
  server: {{ type: file, path: "{d}/server.ndjson" }}
  prod:   {{ type: file, path: "{d}/prod.ndjson" }}
  rest:   {{ type: file, path: "{d}/rest.ndjson" }}
"#
    );
    let (status, reports) = route_events(&yaml, |s| s["sources"][0]["events"] == 7).await;

    let file = |name: &str| ids(&read_lines(&dir.path().join(format!("{name}.ndjson"))));
    assert_eq!(
        file("errors"),
        vec!["1", "2", "3"],
        "non-final route gets copies"
    );
    assert_eq!(
        file("server"),
        vec!["1", "4", "5"],
        "final route stops evaluation"
    );
    assert_eq!(
        file("prod"),
        vec!["2"],
        "event 5 was taken by `server` first"
    );
    assert_eq!(
        file("rest"),
        vec!["3", "6", "hello, plain text"],
        "matched only a non-final route, or nothing: unmatched"
    );

    let json = status.to_json();
    let routes: BTreeMap<String, u64> = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(routes["errors"], 3);
    assert_eq!(routes["server"], 3);
    assert_eq!(routes["prod"], 1);
    assert_eq!(json["unmatched"]["events"], 3);
    assert_eq!(json["unmatched"]["destination"], "rest");
    for r in &reports {
        assert!(r.balanced(), "{r:?}");
        assert_eq!(r.events, r.sent, "{r:?}");
    }
    let metrics = running_metrics_text(&status);
    assert!(metrics.contains("sluice_route_events_total{route=\"errors\"} 3"));
    assert!(metrics.contains("sluice_unmatched_events_total 3"));
}

fn running_metrics_text(status: &sluice::api::Status) -> String {
    status.metrics.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_drop_is_counted_and_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: only-errors
    filter: 'level == "error"'
    destination: out
unmatched: drop
destinations:
  out: {{ type: file, path: "{d}/out.ndjson" }}
"#
    );
    let (status, reports) = route_events(&yaml, |s| s["sources"][0]["events"] == 7).await;
    assert_eq!(
        ids(&read_lines(&dir.path().join("out.ndjson"))),
        vec!["1", "2", "3"]
    );
    let json = status.to_json();
    assert_eq!(json["unmatched"]["events"], 4);
    assert_eq!(json["unmatched"]["destination"], "drop");
    assert_eq!(reports[0].events, 3);
    assert!(reports[0].balanced());
}

/// A first route without a filter takes every batch whole (the router's
/// shortcut): everything arrives in order at its destination, nothing at the
/// routes after it or at `unmatched`, and it is counted as routed there.
/// A pipeline on a later route still sees nothing and holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_a_filter_takes_everything_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
pipelines:
  tag:
    - {{ type: remap, source: '.seen = "yes"' }}
routes:
  - name: all
    destination: all
  - name: later
    filter: 'true'
    pipeline: tag
    destination: later
unmatched: rest
destinations:
  all:   {{ type: file, path: "{d}/all.ndjson" }}
  later: {{ type: file, path: "{d}/later.ndjson" }}
  rest:  {{ type: file, path: "{d}/rest.ndjson" }}
"#
    );
    let (status, reports) = route_events(&yaml, |s| s["routes"][0]["events"] == 7).await;
    let file = |name: &str| read_lines(&dir.path().join(format!("{name}.ndjson")));
    assert_eq!(
        ids(&file("all")),
        ["1", "2", "3", "4", "5", "6", "hello, plain text"],
        "every event, in order, untouched"
    );
    assert!(file("later").is_empty() && file("rest").is_empty());
    let json = status.to_json();
    assert_eq!(json["routes"][1]["events"], 0);
    assert_eq!(json["unmatched"]["events"], 0);
    for r in &reports {
        assert!(r.balanced(), "{r:?}");
    }
}
