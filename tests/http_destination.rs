//! The HTTP destination against real HTTP servers (tests/common/receiver.rs)
//! with fault injection: outages, throttling, rejections, weighted
//! endpoints, dead endpoints coming back, concurrency and compression.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::receiver::{Behavior, Receiver, Reply};
use common::{Metrics, read_lines, wait_until_async};
use serde_json::Value;
use sluice::topology::Running;
use tokio::io::AsyncWriteExt;

fn metrics(r: &Running) -> Metrics {
    Metrics(r.metrics().encode())
}

fn seqs(events: &[String]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no seq: {e}"))
        })
        .collect()
}

async fn send_lines(addr: std::net::SocketAddr, lines: impl Iterator<Item = String>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    s.write_all(buf.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
}

fn seq_lines(range: std::ops::Range<u64>) -> impl Iterator<Item = String> {
    range.map(|i| format!("{{\"seq\":{i},\"msg\":\"event {i}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_storm_then_recovery_delivers_every_event_and_counts_retries() {
    let rx = Receiver::start().await;
    rx.status(503);
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  gen: {{ type: generator, rate: 0, count: 2000, event_bytes: 120 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 100, timeout: 50ms }}
"#,
        rx.url("/ingest")
    ))
    .await;
    wait_until_async("the storm to hit", Duration::from_secs(20), || {
        rx.request_count() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rx.set(Behavior::Ok);
    wait_until_async("every event delivered", Duration::from_secs(60), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == 2000
    })
    .await;
    let m = metrics(&running);
    assert!(m.dest("sluice_destination_retries_total", "out") >= 1);
    assert_eq!(m.dropped("out", "rejected"), 0);
    let got: BTreeSet<u64> = seqs(&rx.accepted()).into_iter().collect();
    assert_eq!(got, (0..2000).collect::<BTreeSet<_>>());
    assert_eq!(
        rx.accepted().len(),
        2000,
        "503 answers are never counted as delivered"
    );
    let endpoint_up =
        m.0.lines()
            .find(|l| l.starts_with("sluice_endpoint_up{destination=\"out\""))
            .expect("endpoint_up series")
            .to_string();
    assert!(endpoint_up.ends_with(" 1"), "{endpoint_up}");
    let reports = running.shutdown().await;
    assert!(reports[0].balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_pauses_the_endpoint_for_as_long_as_asked() {
    let rx = Receiver::start().await;
    let first = Arc::new(AtomicBool::new(true));
    let f = first.clone();
    rx.set(Behavior::Custom(Arc::new(move |_| {
        if f.swap(false, Ordering::SeqCst) {
            Reply {
                code: 429,
                retry_after: Some("2".into()),
                body: "slow down".into(),
            }
        } else {
            Reply::ok()
        }
    })));
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  gen: {{ type: generator, rate: 0, count: 50 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 100, timeout: 50ms }}
    retry: {{ initial_backoff: 10ms }}
"#,
        rx.url("/")
    ))
    .await;
    wait_until_async("delivery after the pause", Duration::from_secs(30), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == 50
    })
    .await;
    let reqs = rx.requests();
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[1].status, 200);
    let waited = reqs[1].at - reqs[0].at;
    assert!(
        waited >= Duration::from_secs(2),
        "the next request came after {waited:?}, before Retry-After"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    running.shutdown().await;
}

fn rejecting_receiver(rx: &Receiver) {
    rx.set(Behavior::Custom(Arc::new(|events| {
        if events.iter().any(|e| e.contains("\"bad\":true")) {
            Reply {
                code: 400,
                retry_after: None,
                body: "field `bad` must be false".into(),
            }
        } else {
            Reply::ok()
        }
    })));
}

fn mixed_lines() -> Vec<String> {
    (0..10)
        .map(|i| format!("{{\"seq\":{i},\"bad\":{}}}", i % 3 == 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_rejected_and_counted_while_other_events_keep_flowing() {
    let rx = Receiver::start().await;
    rejecting_receiver(&rx);
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 1 }}
"#,
        rx.url("/")
    ))
    .await;
    send_lines(
        running.source_addr("in").unwrap(),
        mixed_lines().into_iter(),
    )
    .await;
    wait_until_async("all ten resolved", Duration::from_secs(20), || {
        let m = metrics(&running);
        m.dest("sluice_destination_sent_events_total", "out") + m.dropped("out", "rejected") == 10
    })
    .await;
    let m = metrics(&running);
    assert_eq!(m.dropped("out", "rejected"), 3);
    assert_eq!(
        m.dest("sluice_destination_retries_total", "out"),
        0,
        "4xx is not retried"
    );
    let mut got = seqs(&rx.accepted());
    got.sort_unstable();
    assert_eq!(got, vec![0, 2, 3, 5, 6, 8, 9]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_goes_to_the_dead_letter_destination_with_its_status() {
    let rx = Receiver::start().await;
    rejecting_receiver(&rx);
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dead.ndjson");
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 1 }}
    dead_letter: dlq
  dlq:
    type: file
    path: "{}"
"#,
        rx.url("/"),
        dlq.display()
    ))
    .await;
    send_lines(
        running.source_addr("in").unwrap(),
        mixed_lines().into_iter(),
    )
    .await;
    wait_until_async("all ten resolved", Duration::from_secs(20), || {
        let m = metrics(&running);
        m.dest("sluice_destination_sent_events_total", "out") == 7
            && m.dropped("out", "dead_letter") == 3
    })
    .await;
    let reports = running.shutdown().await;
    assert!(reports.iter().all(|r| r.balanced()), "{reports:?}");
    let dead = read_lines(&dlq);
    assert_eq!(dead.len(), 3);
    let mut bad_seqs = Vec::new();
    for line in dead {
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["dead_letter"]["status"], 400);
        assert_eq!(v["dead_letter"]["destination"], "out");
        assert_eq!(v["dead_letter"]["reason"], "rejected");
        assert_eq!(v["dead_letter"]["response"], "field `bad` must be false");
        assert_eq!(v["event"]["bad"], true);
        bad_seqs.push(v["event"]["seq"].as_u64().unwrap());
    }
    bad_seqs.sort_unstable();
    assert_eq!(bad_seqs, vec![1, 4, 7]);
}

fn endpoint_series(m: &Metrics, metric: &str, dest: &str, rx: &Receiver) -> f64 {
    m.get(&format!(
        "{metric}{{destination=\"{dest}\",endpoint=\"http://{}/\"}}",
        rx.addr
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_endpoints_split_by_weight_survive_a_dead_one_and_take_it_back() {
    let (a, mut b, c) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    endpoints:
      - {{ url: "{}", weight: 1 }}
      - {{ url: "{}", weight: 2 }}
      - {{ url: "{}", weight: 3 }}
    batch: {{ max_events: 10, timeout: 20ms }}
    request: {{ concurrency: 3 }}
"#,
        a.url("/"),
        b.url("/"),
        c.url("/")
    ))
    .await;
    let src = running.source_addr("in").unwrap();
    let sent = |r: &Running| metrics(r).dest("sluice_destination_sent_events_total", "out");

    // Split by weight.
    send_lines(src, seq_lines(0..6000)).await;
    wait_until_async("6000 delivered", Duration::from_secs(60), || {
        sent(&running) == 6000
    })
    .await;
    let counts = [a.accepted().len(), b.accepted().len(), c.accepted().len()];
    for (got, want) in counts.iter().zip([1000.0, 2000.0, 3000.0]) {
        let off = (*got as f64 - want).abs() / want;
        assert!(off <= 0.10, "split {counts:?} is more than 10% off 1:2:3");
    }

    // Kill b mid-stream: nothing is lost, it is marked down.
    let feeder = tokio::spawn(async move {
        for chunk in 0..30u64 {
            send_lines(src, seq_lines(6000 + chunk * 100..6100 + chunk * 100)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    wait_until_async("traffic under way", Duration::from_secs(20), || {
        sent(&running) >= 6500
    })
    .await;
    b.kill().await;
    feeder.await.unwrap();
    wait_until_async("9000 delivered", Duration::from_secs(60), || {
        sent(&running) == 9000
    })
    .await;
    assert_eq!(
        endpoint_series(&metrics(&running), "sluice_endpoint_up", "out", &b),
        0.0
    );
    let mut all: BTreeSet<u64> = BTreeSet::new();
    for rx in [&a, &b, &c] {
        all.extend(seqs(&rx.accepted()));
    }
    assert_eq!(
        all,
        (0..9000).collect::<BTreeSet<_>>(),
        "events lost with an endpoint down"
    );

    // b comes back: the background probe finds it and it takes traffic again.
    let before = b.accepted().len();
    b.restart().await;
    wait_until_async("b probed back up", Duration::from_secs(30), || {
        endpoint_series(&metrics(&running), "sluice_endpoint_up", "out", &b) == 1.0
    })
    .await;
    send_lines(src, seq_lines(9000..10_200)).await;
    wait_until_async("10200 delivered", Duration::from_secs(60), || {
        sent(&running) == 10_200
    })
    .await;
    let rejoined = b.accepted().len() - before;
    assert!(
        rejoined >= 300,
        "b took only {rejoined} events after coming back"
    );
    let m = metrics(&running);
    let per_endpoint: f64 = [&a, &b, &c]
        .iter()
        .map(|rx| endpoint_series(&m, "sluice_endpoint_sent_events_total", "out", rx))
        .sum();
    assert_eq!(per_endpoint as u64, 10_200);
    running.shutdown().await;
}

/// Writes `n` events on a thread, reporting progress, for throttling checks.
fn blocking_sender(addr: std::net::SocketAddr, n: u64) -> (Arc<AtomicU64>, Arc<AtomicBool>) {
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for i in 0..n {
            let line = format!("{{\"seq\":{i},\"pad\":\"{}\"}}\n", "x".repeat(200));
            if s.write_all(line.as_bytes()).is_err() {
                return;
            }
            w.store(i + 1, Ordering::SeqCst);
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        d.store(true, Ordering::SeqCst);
    });
    (written, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_down_with_block_throttles_the_source_without_loss() {
    let mut rx = Receiver::start().await;
    rx.kill().await;
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    queue: {{ max_events: 1000 }}
"#,
        rx.url("/")
    ))
    .await;
    let n = 200_000;
    let (written, done) = blocking_sender(running.source_addr("in").unwrap(), n);
    // Wait until the sender stops making progress: throttled.
    let mut last = 0;
    let mut still = 0;
    wait_until_async(
        "the sender to be throttled",
        Duration::from_secs(60),
        || {
            let now = written.load(Ordering::SeqCst);
            if now == last {
                still += 1
            } else {
                still = 0;
                last = now
            }
            still >= 50
        },
    )
    .await;
    assert!(!done.load(Ordering::SeqCst));
    assert!(written.load(Ordering::SeqCst) < n / 2);
    let m = metrics(&running);
    assert_eq!(m.dest("sluice_destination_backpressure", "out"), 1);
    // Back up: everything arrives.
    rx.restart().await;
    wait_until_async("everything delivered", Duration::from_secs(120), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == n
    })
    .await;
    let got: BTreeSet<u64> = seqs(&rx.accepted()).into_iter().collect();
    assert_eq!(got.len() as u64, n);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_down_with_drop_sheds_and_counts_without_slowing_the_source() {
    let mut rx = Receiver::start().await;
    rx.kill().await;
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    backpressure: drop
    queue: {{ max_events: 500 }}
"#,
        rx.url("/")
    ))
    .await;
    let n = 50_000;
    let (_, done) = blocking_sender(running.source_addr("in").unwrap(), n);
    wait_until_async(
        "the sender to finish unhindered",
        Duration::from_secs(60),
        || done.load(Ordering::SeqCst),
    )
    .await;
    wait_until_async("all events routed", Duration::from_secs(30), || {
        metrics(&running).source_events("in") == n
    })
    .await;
    rx.restart().await;
    wait_until_async("the lane to drain", Duration::from_secs(60), || {
        let m = metrics(&running);
        m.dest("sluice_destination_sent_events_total", "out") + m.dropped("out", "backpressure")
            == n
    })
    .await;
    let m = metrics(&running);
    let dropped = m.dropped("out", "backpressure");
    assert!(dropped > n / 2, "dropped {dropped}");
    assert_eq!(rx.accepted().len() as u64 + dropped, n);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_is_never_exceeded() {
    let rx = Receiver::start().await;
    rx.set(Behavior::Delay(Duration::from_millis(30)));
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  gen: {{ type: generator, rate: 0, count: 3000 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 10, timeout: 10ms }}
    request: {{ concurrency: 4 }}
"#,
        rx.url("/")
    ))
    .await;
    wait_until_async("everything delivered", Duration::from_secs(60), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == 3000
    })
    .await;
    assert_eq!(
        rx.peak_in_flight(),
        4,
        "the limit is reached but never exceeded"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_concurrency_backs_off_when_the_receiver_struggles_and_grows_back() {
    let rx = Receiver::start().await;
    rx.set(Behavior::Overload {
        capacity: 100,
        delay: Duration::from_millis(10),
    });
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
shutdown_timeout: 1s
sources:
  gen: {{ type: generator, rate: 0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 20, timeout: 10ms }}
    request: {{ concurrency: adaptive, max_concurrency: 40 }}
    retry: {{ initial_backoff: 20ms, max_backoff: 200ms }}
"#,
        rx.url("/")
    ))
    .await;
    let limit = |r: &Running| metrics(r).dest("sluice_destination_concurrency_limit", "out");
    wait_until_async(
        "the limit to grow under load",
        Duration::from_secs(60),
        || limit(&running) >= 10,
    )
    .await;
    let grown = limit(&running);
    // The receiver slows and sheds load beyond 3 requests.
    rx.set(Behavior::Overload {
        capacity: 3,
        delay: Duration::from_millis(100),
    });
    wait_until_async("the limit to come down", Duration::from_secs(60), || {
        limit(&running) <= 4
    })
    .await;
    // And recovers.
    rx.set(Behavior::Overload {
        capacity: 100,
        delay: Duration::from_millis(10),
    });
    wait_until_async("the limit to grow again", Duration::from_secs(60), || {
        limit(&running) >= 10
    })
    .await;
    eprintln!(
        "adaptive limit: grew to {grown}, fell to <= 4, grew back to {}",
        limit(&running)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_zstd_and_json_array_bodies_decode_to_exactly_what_was_sent() {
    for (compression, encoding) in [
        ("gzip", "ndjson"),
        ("zstd", "ndjson"),
        ("gzip", "json_array"),
    ] {
        let rx = Receiver::start().await;
        let running = common::topology(&format!(
            r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    compression: {compression}
    encoding: {encoding}
    batch: {{ max_events: 50, timeout: 20ms }}
    request: {{ concurrency: 1 }}
"#,
            rx.url("/")
        ))
        .await;
        let lines: Vec<String> = (0..500)
            .map(|i| format!("{{\"seq\":{i},\"text\":\"é \\\" {}\"}}", "z".repeat(i % 40)))
            .collect();
        send_lines(
            running.source_addr("in").unwrap(),
            lines.clone().into_iter(),
        )
        .await;
        wait_until_async("delivered", Duration::from_secs(30), || {
            metrics(&running).dest("sluice_destination_sent_events_total", "out") == 500
        })
        .await;
        let reqs = rx.requests();
        assert!(
            reqs.iter()
                .all(|r| r.content_encoding.as_deref() == Some(compression))
        );
        let want_type = if encoding == "ndjson" {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        assert!(
            reqs.iter()
                .all(|r| r.content_type.as_deref() == Some(want_type))
        );
        if encoding == "ndjson" {
            let body: Vec<u8> = reqs.iter().flat_map(|r| r.body.to_vec()).collect();
            let want: String = lines.iter().map(|l| format!("{l}\n")).collect();
            assert_eq!(String::from_utf8(body).unwrap(), want, "{compression}");
        } else {
            let got: Vec<Value> = rx
                .accepted()
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            let want: Vec<Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(got, want);
        }
        running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_credentials_from_the_environment_are_sent() {
    let rx = Receiver::start().await;
    // SAFETY: this test binary sets this variable once, before any thread reads it.
    unsafe { std::env::set_var("SLUICE_TEST_HTTP_TOKEN", "t0ken") };
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  gen: {{ type: generator, rate: 0, count: 10 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    auth: {{ bearer: "${{SLUICE_TEST_HTTP_TOKEN}}" }}
    headers: {{ X-Team: logs }}
"#,
        rx.url("/")
    ))
    .await;
    wait_until_async("delivered", Duration::from_secs(20), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == 10
    })
    .await;
    let r = &rx.requests()[0];
    assert_eq!(r.authorization.as_deref(), Some("Bearer t0ken"));
    running.shutdown().await;
}

#[test]
fn failed_requests_are_logged_with_status_and_body_but_never_credentials() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(Receiver::start());
    rx.set(Behavior::Status {
        code: 500,
        retry_after: None,
        body: "database exploded".into(),
    });
    let mut s = common::Sluice::start_with(
        &format!(
            r#"
api: {{ address: 127.0.0.1:0 }}
shutdown_timeout: 1s
sources:
  gen: {{ type: generator, rate: 100 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    auth: {{ basic: {{ username: svc, password: "${{SLUICE_TEST_SECRET}}" }} }}
    batch: {{ timeout: 50ms }}
"#,
            rx.url("/")
        ),
        |cmd| {
            cmd.env("SLUICE_TEST_SECRET", "hunter2-very-secret");
            cmd.env("SLUICE_LOG", "debug");
        },
    );
    common::wait_until("a failed request", Duration::from_secs(30), || {
        s.logs().iter().any(|l| l["status"] == 500)
    });
    s.terminate();
    s.wait_exit(Duration::from_secs(30));
    let logs: String = s
        .logs()
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        logs.contains("database exploded"),
        "the body excerpt is logged"
    );
    assert!(!logs.contains("hunter2"), "a secret leaked into the logs");
    assert!(
        !logs.contains("c3ZjOmh1bnRlcjI"),
        "the encoded credentials leaked into the logs"
    );
    drop(rt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let tls = common::tls::TlsReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let config = |with_ca: bool| {
        format!(
            r#"
api: {{ enabled: false }}
shutdown_timeout: 1s
sources:
  gen: {{ type: generator, rate: 0, count: 20 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    {}
    retry: {{ initial_backoff: 50ms, max_backoff: 100ms }}
"#,
            tls.url(),
            if with_ca {
                format!("tls: {{ ca_file: \"{}\" }}", ca.display())
            } else {
                String::new()
            }
        )
    };
    let running = common::topology(&config(true)).await;
    wait_until_async("delivered over TLS", Duration::from_secs(30), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == 20
    })
    .await;
    assert_eq!(tls.accepted(), 20);
    running.shutdown().await;

    // Without the CA the certificate is refused: nothing is delivered.
    let running = common::topology(&config(false)).await;
    let started = Instant::now();
    wait_until_async("a refused handshake", Duration::from_secs(30), || {
        metrics(&running).dest("sluice_destination_retries_total", "out") >= 1
    })
    .await;
    assert_eq!(
        metrics(&running).dest("sluice_destination_sent_events_total", "out"),
        0
    );
    assert_eq!(tls.accepted(), 20);
    assert!(started.elapsed() < Duration::from_secs(30));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_times_out_and_its_batches_move_to_a_healthy_one() {
    // Accepts connections, never reads or answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = hole.accept().await {
            h.lock().unwrap().push(s);
        }
    });
    let good = Receiver::start().await;
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  gen: {{ type: generator, rate: 0, count: 3000 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    endpoints:
      - {{ url: "http://{hole_addr}/" }}
      - {{ url: "{}" }}
    batch: {{ max_events: 100, timeout: 20ms }}
    request: {{ timeout: 500ms }}
"#,
        good.url("/")
    ))
    .await;
    wait_until_async("everything delivered", Duration::from_secs(60), || {
        metrics(&running).dest("sluice_destination_sent_events_total", "out") == 3000
    })
    .await;
    let m = metrics(&running);
    assert_eq!(
        m.get(&format!(
            "sluice_endpoint_up{{destination=\"out\",endpoint=\"http://{hole_addr}/\"}}"
        )),
        0.0
    );
    assert!(m.dest("sluice_destination_retries_total", "out") >= 1);
    let got: BTreeSet<u64> = seqs(&good.accepted()).into_iter().collect();
    assert_eq!(got, (0..3000).collect::<BTreeSet<_>>());
    assert!(!held.lock().unwrap().is_empty(), "the black hole was tried");
    running.shutdown().await;
    accept.abort();
}

/// Three HTTP clients, each posting its requests one after another on its
/// connection, through an HTTP destination with five requests in flight and
/// `ordering: sender`: a fifth of the requests fail once and are retried,
/// yet each client's events reach the peer in the order it sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_http_clients_requests_arrive_in_order_through_retries() {
    let rx = Receiver::start().await;
    let failed = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    rx.set(Behavior::Custom(Arc::new(move |events| {
        let first = events.first().cloned().unwrap_or_default();
        let v: Value = serde_json::from_str(&first).unwrap_or_default();
        let unlucky = v["seq"].as_u64().is_some_and(|s| s % 50 == 0);
        if unlucky && failed.lock().unwrap().insert(first) {
            Reply::code(503)
        } else {
            Reply::ok()
        }
    })));
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: http, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{}"
    batch: {{ max_events: 10, timeout: 10ms }}
    request: {{ ordering: sender }}
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
"#,
        rx.url("/")
    ))
    .await;
    let url = format!("http://{}/", running.source_addr("in").unwrap());
    let (clients, requests, per) = (3u64, 40u64, 10u64);
    let posting: Vec<_> = (0..clients)
        .map(|c| {
            let url = url.clone();
            tokio::spawn(async move {
                // One connection per client: its requests, one at a time.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                for r in 0..requests {
                    let body: String = (r * per..(r + 1) * per)
                        .map(|i| format!("{{\"c\":{c},\"seq\":{i}}}\n"))
                        .collect();
                    let answer = http.post(&url).body(body).send().await.unwrap();
                    assert!(answer.status().is_success(), "{}", answer.status());
                }
            })
        })
        .collect();
    for p in posting {
        p.await.unwrap();
    }
    let total = (clients * requests * per) as usize;
    wait_until_async("every event accepted", Duration::from_secs(60), || {
        rx.accepted().len() == total
    })
    .await;
    let mut by_client: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for e in rx.accepted() {
        let v: Value = serde_json::from_str(&e).unwrap();
        by_client
            .entry(v["c"].as_u64().unwrap())
            .or_default()
            .push(v["seq"].as_u64().unwrap());
    }
    for (c, got) in &by_client {
        let want: Vec<u64> = (0..requests * per).collect();
        assert_eq!(got, &want, "client {c} out of order");
    }
    assert!(
        rx.requests().iter().any(|r| r.status == 503),
        "no request failed: the retries were not exercised"
    );
    running.shutdown().await;
}
