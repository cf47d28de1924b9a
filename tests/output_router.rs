//! The Output Router (`type: output_router`) through the real topology:
//! ordered rules with final versus copy, a default destination or a counted
//! drop, per-rule counts, the accounting invariant across the router and its
//! children, and children that keep their own lanes and policies.

mod common;

use std::time::Duration;

use common::receiver::{Behavior, Receiver};
use common::{read_lines, wait_until_async};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

async fn send_tcp(addr: std::net::SocketAddr, lines: &[String]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for l in lines {
        s.write_all(l.as_bytes()).await.unwrap();
        s.write_all(b"\n").await.unwrap();
    }
    s.shutdown().await.unwrap();
}

fn ids(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_copy_take_and_default_each_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let yaml = format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: all
    destination: fanout
destinations:
  fanout:
    type: output_router
    rules:
      - {{ name: errors, filter: 'level == "error"', destination: pager, final: false }}
      - {{ name: kube, filter: 'exists(kube)', destination: nested }}
    default: archive
  nested:
    type: output_router
    rules:
      - {{ filter: 'kube.namespace == "prod"', destination: prod }}
    default: drop
  pager:   {{ type: file, path: "{d}/pager.ndjson" }}
  prod:    {{ type: file, path: "{d}/prod.ndjson" }}
  archive: {{ type: file, path: "{d}/archive.ndjson" }}
"#
    );
    let events: Vec<String> = [
        r#"{"id":1,"level":"error"}"#,
        r#"{"id":2,"level":"error","kube":{"namespace":"prod"}}"#,
        r#"{"id":3,"level":"info","kube":{"namespace":"dev"}}"#,
        r#"{"id":4,"level":"info"}"#,
        r#"{"id":5,"kube":{"namespace":"prod"}}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let running = common::topology(&yaml).await;
    send_tcp(running.source_addr("in").unwrap(), &events).await;
    let metrics = running.metrics().clone();
    wait_until_async("every event delivered", Duration::from_secs(20), || {
        let m = metrics.encode();
        m.contains("sluice_destination_sent_events_total{destination=\"archive\"} 2")
            && m.contains("sluice_destination_sent_events_total{destination=\"prod\"} 2")
            && m.contains("sluice_destination_sent_events_total{destination=\"pager\"} 2")
    })
    .await;
    let reports = running.shutdown().await;
    let file = |n: &str| ids(&read_lines(&dir.path().join(format!("{n}.ndjson"))));
    assert_eq!(file("pager"), vec![1, 2], "a non-final rule sends copies");
    assert_eq!(file("prod"), vec![2, 5], "a router inside a router");
    assert_eq!(
        file("archive"),
        vec![1, 4],
        "the default takes what no final rule took"
    );
    let text = metrics.encode();
    for (rule, n) in [
        ("destination=\"fanout\",rule=\"errors\"", 2),
        ("destination=\"fanout\",rule=\"kube\"", 3),
        ("destination=\"nested\",rule=\"0\"", 2),
    ] {
        assert!(
            text.contains(&format!(
                "sluice_output_router_rule_events_total{{{rule}}} {n}"
            )),
            "{rule} {n} in\n{text}"
        );
    }
    // Event 3 (dev) took the `kube` rule into `nested`, which dropped it.
    assert!(text.contains(
        "sluice_destination_dropped_events_total{destination=\"nested\",reason=\"unmatched\"} 1"
    ));
    for r in &reports {
        assert!(r.balanced(), "{r:?}");
    }
    let fanout = reports.iter().find(|r| r.id == "fanout").unwrap();
    assert_eq!((fanout.events, fanout.sent), (5, 5));
    let nested = reports.iter().find(|r| r.id == "nested").unwrap();
    assert_eq!(
        (nested.events, nested.sent, nested.dropped_total()),
        (3, 2, 1)
    );
}

/// A router copying everything to `remote` (HTTP at `url`, with `policy`)
/// and sending it on to `local` (a file in `dir`).
fn remote_and_local(url: &str, policy: &str, dir: &str) -> String {
    format!(
        r#"
api: {{ enabled: false }}
shutdown_timeout: 1s
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: all
    destination: fanout
destinations:
  fanout:
    type: output_router
    rules:
      - {{ filter: 'true', destination: remote, final: false }}
      - {{ filter: 'true', destination: local }}
  remote:
    type: http
    url: "{url}"
    backpressure: {policy}
    queue: {{ max_events: 100 }}
    batch: {{ max_events: 10, timeout: 10ms }}
    request: {{ concurrency: 1 }}
  local: {{ type: file, path: "{dir}/local.ndjson" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_drop_child_never_slows_its_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let down = Receiver::start().await;
    down.set(Behavior::Status {
        code: 503,
        retry_after: None,
        body: "down".into(),
    });
    let yaml = remote_and_local(&down.url("/"), "drop", &d.to_string());
    let n = 20_000u64;
    let events: Vec<String> = (0..n).map(|i| format!("{{\"id\":{i}}}")).collect();
    let running = common::topology(&yaml).await;
    send_tcp(running.source_addr("in").unwrap(), &events).await;
    let metrics = running.metrics().clone();
    wait_until_async(
        "the local child has everything",
        Duration::from_secs(30),
        || {
            metrics.encode().contains(&format!(
                "sluice_destination_sent_events_total{{destination=\"local\"}} {n}"
            ))
        },
    )
    .await;
    let reports = running.shutdown().await;
    assert_eq!(
        ids(&read_lines(&dir.path().join("local.ndjson"))).len() as u64,
        n
    );
    let remote = reports.iter().find(|r| r.id == "remote").unwrap();
    assert_eq!(remote.events, n);
    assert!(remote.dropped_total() > n / 2, "{remote:?}");
    for r in &reports {
        assert!(r.balanced(), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_block_child_pushes_back_on_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut down = Receiver::start().await;
    let url = down.url("/");
    down.kill().await;
    let yaml = remote_and_local(&url, "block", &d.to_string());
    let n = 200_000u64;
    let running = common::topology(&yaml).await;
    let addr = running.source_addr("in").unwrap();
    let sender = tokio::spawn(async move {
        // 40 MB: far more than the socket buffers on the way can hide.
        let pad = "x".repeat(180);
        let lines: Vec<String> = (0..n)
            .map(|i| format!("{{\"id\":{i},\"pad\":\"{pad}\"}}"))
            .collect();
        send_tcp(addr, &lines).await;
    });
    let metrics = running.metrics().clone();
    wait_until_async(
        "the source to wait on the block child",
        Duration::from_secs(30),
        || {
            common::Metrics(metrics.encode())
                .get("sluice_destination_blocked_seconds_total{destination=\"remote\"}")
                > 0.5
        },
    )
    .await;
    // Held back: the sibling got only what the block child had room for.
    let local_events = std::fs::read_to_string(dir.path().join("local.ndjson"))
        .unwrap_or_default()
        .lines()
        .count() as u64;
    assert!(local_events < n / 2, "local got {local_events} of {n}");
    assert!(!sender.is_finished(), "the TCP sender was not held back");
    down.restart().await;
    wait_until_async(
        "everything delivered to both",
        Duration::from_secs(60),
        || {
            let m = metrics.encode();
            m.contains(&format!(
                "sluice_destination_sent_events_total{{destination=\"local\"}} {n}"
            )) && m.contains(&format!(
                "sluice_destination_sent_events_total{{destination=\"remote\"}} {n}"
            ))
        },
    )
    .await;
    let reports = running.shutdown().await;
    for r in &reports {
        assert!(r.balanced(), "{r:?}");
        assert_eq!(r.dropped_total(), 0, "{r:?}");
    }
}
