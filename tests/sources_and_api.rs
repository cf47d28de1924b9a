//! Sources under realistic use, the management API, and the file destination
//! recovering from a real filesystem failure.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{read_lines, wait_until_async};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_tcp_connections_each_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: all
    destination: out
destinations:
  out: {{ type: file, path: "{}/out.ndjson", queue: {{ max_events: 500 }} }}
"#,
        dir.path().display()
    );
    let running = common::topology(&yaml).await;
    let addr = running.source_addr("in").unwrap();
    let (conns, per) = (50u64, 2_000u64);
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut buf = String::new();
            for i in 0..per {
                buf.push_str(&format!("{{\"conn\":{c},\"i\":{i}}}\n"));
            }
            // Uneven writes, so lines straddle reads.
            for piece in buf.as_bytes().chunks(777) {
                s.write_all(piece).await.unwrap();
            }
            s.shutdown().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = running.status().clone();
    wait_until_async("every event routed", Duration::from_secs(60), || {
        status.to_json()["sources"][0]["events"].as_u64() == Some(conns * per)
    })
    .await;
    let reports = running.shutdown().await;
    assert!(reports[0].balanced() && reports[0].sent == conns * per);
    let mut next: HashMap<u64, u64> = HashMap::new();
    for line in read_lines(&dir.path().join("out.ndjson")) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let (c, i) = (v["conn"].as_u64().unwrap(), v["i"].as_u64().unwrap());
        let want = next.entry(c).or_insert(0);
        assert_eq!(i, *want, "connection {c} out of order");
        *want += 1;
    }
    assert_eq!(next.len() as u64, conns);
    assert!(next.values().all(|&n| n == per));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_auth_and_acknowledged_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  web:
    type: http
    address: 127.0.0.1:0
    acknowledgements: true
    auth: {{ basic: {{ username: alice, password: "p:ss w0rd" }} }}
routes:
  - name: all
    destination: out
destinations:
  out: {{ type: file, path: "{}", batch: {{ timeout: 2s }} }}
"#,
        out.display()
    );
    let running = common::topology(&yaml).await;
    let url = format!("http://{}/", running.source_addr("web").unwrap());
    let c = reqwest::Client::new();
    let r = c
        .post(&url)
        .basic_auth("alice", Some("wrong"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let r = c
        .post(&url)
        .basic_auth("alice", Some("p:ss w0rd"))
        .body("{\"a\":1}\n{\"a\":2}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Acknowledged: the events are already in the file when the answer comes,
    // even though the batch timeout alone would have held them for 2 s.
    assert_eq!(read_lines(&out), vec!["{\"a\":1}", "{\"a\":2}"]);
    running.shutdown().await;
}

#[test]
fn health_ready_metrics_and_status_answer() {
    let s = common::Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  gen: { type: generator, rate: 100 }
routes:
  - name: all
    destination: sink
destinations:
  sink: { type: blackhole }
"#,
    );
    assert_eq!(common::http_get(s.api, "/health").trim(), "ok");
    assert_eq!(common::http_get(s.api, "/ready").trim(), "running");
    // The start line names the API's address as an operator would type it.
    let running = s.log_records("sluice is running");
    assert_eq!(running[0]["api"], s.api.to_string(), "{running:?}");
    common::wait_until("events flowing", Duration::from_secs(20), || {
        s.metrics()
            .dest("sluice_destination_sent_events_total", "sink")
            > 0
    });
    let m = s.metrics();
    for series in [
        "sluice_source_events_total{source=\"gen\"}",
        "sluice_route_events_total{route=\"all\"}",
        "sluice_unmatched_events_total",
        "sluice_destination_events_total{destination=\"sink\"}",
        "sluice_destination_sent_bytes_total{destination=\"sink\"}",
        "sluice_destination_dropped_events_total{destination=\"sink\",reason=\"backpressure\"}",
        "sluice_destination_retries_total{destination=\"sink\"}",
        "sluice_destination_queue_events{destination=\"sink\"}",
        "sluice_destination_backpressure{destination=\"sink\"}",
        "sluice_destination_blocked_seconds_total{destination=\"sink\"}",
        "sluice_request_duration_seconds_count{destination=\"sink\"}",
    ] {
        assert!(
            m.0.lines().any(|l| l.starts_with(series)),
            "{series} missing from /metrics"
        );
    }
    let st = s.status();
    assert_eq!(st["state"], "running");
    assert_eq!(st["sources"][0]["id"], "gen");
    assert_eq!(st["routes"][0]["destination"], "sink");
    assert_eq!(st["destinations"][0]["policy"], "block");
    assert_eq!(st["destinations"][0]["state"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_destination_retries_a_failing_write_then_delivers_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the output directory should be: creating the
    // destination's directory fails until it is removed.
    let blocker = dir.path().join("logs");
    std::fs::write(&blocker, b"in the way").unwrap();
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: all
    destination: out
destinations:
  out:
    type: file
    path: "{}/out.ndjson"
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
"#,
        blocker.display()
    );
    let running = common::topology(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(running.source_addr("in").unwrap())
        .await
        .unwrap();
    for i in 0..100 {
        s.write_all(format!("{{\"i\":{i}}}\n").as_bytes())
            .await
            .unwrap();
    }
    s.shutdown().await.unwrap();
    let metrics = running.metrics().clone();
    let read = |series: &str| common::Metrics(metrics.encode()).get(series) as u64;
    wait_until_async("several failed attempts", Duration::from_secs(20), || {
        read("sluice_destination_retries_total{destination=\"out\"}") >= 3
    })
    .await;
    assert_eq!(
        read("sluice_destination_backpressure{destination=\"out\"}"),
        1
    );
    std::fs::remove_file(&blocker).unwrap();
    wait_until_async("delivery after recovery", Duration::from_secs(20), || {
        read("sluice_destination_sent_events_total{destination=\"out\"}") == 100
    })
    .await;
    let reports = running.shutdown().await;
    assert!(reports[0].balanced());
    let lines = read_lines(&blocker.join("out.ndjson"));
    let want: Vec<String> = (0..100).map(|i| format!("{{\"i\":{i}}}")).collect();
    assert_eq!(lines, want);
}

/// `/metrics` as Prometheus tooling reads it: `promtool check metrics`
/// (Debian's `prometheus`) passes the default text format of a topology with
/// every kind of family in it — pipelines, an output router, a persistent
/// queue, load-balanced endpoints, staging — with HELP on each, and a scraper
/// asking for OpenMetrics gets OpenMetrics.
#[test]
fn metrics_pass_promtool_and_negotiate_openmetrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let s = common::Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: {d}/data
sources:
  gen: {{ type: generator, rate: 200 }}
  tcp_in: {{ type: tcp, address: 127.0.0.1:0 }}
  logs: {{ type: syslog, address: 127.0.0.1:0 }}
pipelines:
  tag:
    - {{ type: eval, set: {{ team: "'core'" }} }}
routes:
  - {{ name: all, pipeline: tag, destination: fanout, final: false }}
  - {{ name: down, destination: collectors }}
destinations:
  fanout:
    type: output_router
    rules:
      - {{ name: errors, filter: 'level == "error"', destination: archive }}
    default: sink
  sink: {{ type: blackhole }}
  archive: {{ type: file, path: "{d}/archive.ndjson" }}
  collectors:
    type: http
    endpoints:
      - {{ url: "http://127.0.0.1:9/a" }}
      - {{ url: "http://127.0.0.1:9/b" }}
    backpressure: persistent_queue
"#
    ));
    common::wait_until("events flowing", Duration::from_secs(20), || {
        s.metrics()
            .dest("sluice_destination_sent_events_total", "sink")
            > 0
    });
    let text = common::http_get(s.api, "/metrics");
    for family in [
        "# TYPE sluice_source_events_total counter",
        "# TYPE sluice_build_info gauge",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
        "# TYPE sluice_config_last_reload_success_timestamp_seconds gauge",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(!text.contains("# EOF"), "0.0.4 text has no EOF marker");
    assert!(
        text.contains(&format!(
            "sluice_build_info{{version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let out = common::run_with_stdin(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    )
    .expect("promtool (Debian prometheus; scripts/peers install) runs");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, open_metrics) = common::http_request(
        s.api,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        )],
        "",
    );
    assert_eq!(code, 200);
    assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
    assert!(open_metrics.contains("# TYPE sluice_source_events counter"));
}
