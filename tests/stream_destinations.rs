//! TCP and UDP destinations against real receivers (tests/common/tcp_receiver.rs
//! and plain UDP sockets): load balancing, failover and rejoining, the
//! reconnect schedule, stalled receivers, framings, metric encodings, TLS.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::receiver::Receiver;
use common::tcp_receiver::{Mode, TcpReceiver};
use common::{Metrics, wait_until_async};
use serde_json::Value;
use sluice::topology::Running;
use tokio::io::AsyncWriteExt;

fn metrics(r: &Running) -> Metrics {
    Metrics(r.metrics().encode())
}

fn sent(r: &Running, dest: &str) -> u64 {
    metrics(r).dest("sluice_destination_sent_events_total", dest)
}

fn endpoint(r: &Running, metric: &str, dest: &str, name: &str) -> f64 {
    metrics(r).get(&format!(
        "{metric}{{destination=\"{dest}\",endpoint=\"{name}\"}}"
    ))
}

async fn send_tcp(addr: std::net::SocketAddr, data: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
}

fn seq_lines(range: std::ops::Range<u64>) -> Vec<u8> {
    range
        .map(|i| format!("{{\"seq\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn seqs(events: &[String]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn tcp_config(endpoints: &str, extra: &str) -> String {
    let batch = if extra.contains("batch:") {
        ""
    } else {
        "    batch: { max_events: 10, timeout: 10ms }"
    };
    format!(
        r#"
api: {{ enabled: false }}
shutdown_timeout: 2s
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: tcp
    endpoints: {endpoints}
{batch}
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_1_to_3_and_weight_0_gets_nothing() {
    let (a, b, c) = (
        TcpReceiver::start(Mode::Lines).await,
        TcpReceiver::start(Mode::Lines).await,
        TcpReceiver::start(Mode::Lines).await,
    );
    let running = common::topology(&tcp_config(
        &format!(
            "[{{address: \"{}\", weight: 1}}, {{address: \"{}\", weight: 3}}, {{address: \"{}\", weight: 0}}]",
            a.address(),
            b.address(),
            c.address()
        ),
        "",
    ))
    .await;
    send_tcp(running.source_addr("in").unwrap(), &seq_lines(0..8000)).await;
    wait_until_async(
        "8000 read by the receivers",
        Duration::from_secs(60),
        || a.events().len() + b.events().len() == 8000,
    )
    .await;
    let (na, nb) = (a.events().len() as f64, b.events().len() as f64);
    assert!((na - 2000.0).abs() / 2000.0 <= 0.10, "a got {na}");
    assert!((nb - 6000.0).abs() / 6000.0 <= 0.10, "b got {nb}");
    assert!(
        c.events().is_empty() && c.accepts().is_empty(),
        "weight 0 was used"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_receiver_fails_over_loses_only_its_unread_buffer_and_rejoins() {
    let (a, mut b) = (
        TcpReceiver::start(Mode::Lines).await,
        TcpReceiver::start(Mode::Lines).await,
    );
    let running = common::topology(&tcp_config(
        &format!(
            "[{{address: \"{}\"}}, {{address: \"{}\"}}]",
            a.address(),
            b.address()
        ),
        "",
    ))
    .await;
    let src = running.source_addr("in").unwrap();
    let n = 20_000u64;
    let feeder = tokio::spawn(async move {
        for chunk in 0..40u64 {
            send_tcp(src, &seq_lines(chunk * 500..(chunk + 1) * 500)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    wait_until_async("traffic to both", Duration::from_secs(30), || {
        a.events().len() > 1000 && b.events().len() > 1000
    })
    .await;
    b.kill().await;
    feeder.await.unwrap();
    wait_until_async("every event sent", Duration::from_secs(60), || {
        sent(&running, "out") == n
    })
    .await;
    wait_until_async("a read all it was sent", Duration::from_secs(30), || {
        a.events().len() as f64
            == endpoint(
                &running,
                "sluice_endpoint_sent_events_total",
                "out",
                &a.address(),
            ) + duplicates(&a, &b) as f64
    })
    .await;
    assert_eq!(
        endpoint(&running, "sluice_endpoint_up", "out", &b.address()),
        0.0
    );

    // Exactly what TCP can lose: events sluice handed to b's connection
    // that b had not read when it died. Batches cut off mid-write were
    // re-sent to a in full (so b's part of them are duplicates).
    let got_a: BTreeSet<u64> = seqs(&a.events()).into_iter().collect();
    let got_b: BTreeSet<u64> = seqs(&b.events()).into_iter().collect();
    let union = got_a.union(&got_b).count() as u64;
    let dups = got_a.intersection(&got_b).count() as u64;
    let sent_b = endpoint(
        &running,
        "sluice_endpoint_sent_events_total",
        "out",
        &b.address(),
    ) as u64;
    let lost = n - union;
    assert_eq!(
        lost,
        sent_b - got_b.len() as u64 + dups,
        "losses beyond b's unread buffer"
    );
    assert!(lost < n / 4, "lost {lost}");
    eprintln!("killed receiver: {lost} of {n} events were in its unread buffer, {dups} duplicated");

    // b returns: the probe finds it and it takes traffic again.
    b.restart().await;
    wait_until_async("b probed back up", Duration::from_secs(30), || {
        endpoint(&running, "sluice_endpoint_up", "out", &b.address()) == 1.0
    })
    .await;
    let before = b.events().len();
    send_tcp(src, &seq_lines(n..n + 2000)).await;
    wait_until_async("b takes traffic", Duration::from_secs(30), || {
        b.events().len() >= before + 500
    })
    .await;
    running.shutdown().await;
}

fn duplicates(a: &TcpReceiver, b: &TcpReceiver) -> usize {
    let sa: BTreeSet<u64> = seqs(&a.events()).into_iter().collect();
    let sb: BTreeSet<u64> = seqs(&b.events()).into_iter().collect();
    sa.intersection(&sb).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_member_of_a_healthy_pool_is_retried_on_the_2s_doubling_backoff() {
    // Accepts and closes at once, like a load balancer without backends.
    let rx = TcpReceiver::start(Mode::AcceptClose).await;
    let good = TcpReceiver::start(Mode::Lines).await;
    let running = common::topology(&tcp_config(
        &format!(
            "[{{address: \"{}\"}}, {{address: \"{}\"}}]",
            rx.address(),
            good.address()
        ),
        "    request: { concurrency: 1 }",
    ))
    .await;
    send_tcp(running.source_addr("in").unwrap(), &seq_lines(0..5)).await;
    wait_until_async("four connection attempts", Duration::from_secs(40), || {
        rx.accepts().len() >= 4
    })
    .await;
    let t = rx.accepts();
    let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    eprintln!("gaps between attempts: {gaps:.2?}");
    // Probe k waits between half and all of 2 s × 2^(k-1) (jittered), plus
    // the 100 ms a new connection must stay open.
    for (k, gap) in gaps.iter().take(3).enumerate() {
        let full = 2.0 * 2f64.powi(k as i32);
        assert!(
            *gap >= full / 2.0 - 0.05 && *gap <= full + 0.5,
            "attempt {} came {gap:.2}s after the previous one, outside [{:.1}, {:.1}]",
            k + 2,
            full / 2.0,
            full
        );
    }
    wait_until_async(
        "the good receiver has everything",
        Duration::from_secs(10),
        || good.events().len() >= 5,
    )
    .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_endpoint_down_reconnects_come_every_two_seconds_at_most() {
    let rx = TcpReceiver::start(Mode::AcceptClose).await;
    let running = common::topology(&tcp_config(
        &format!("[{{address: \"{}\"}}]", rx.address()),
        "    request: { concurrency: 1 }",
    ))
    .await;
    send_tcp(running.source_addr("in").unwrap(), &seq_lines(0..5)).await;
    wait_until_async("six connection attempts", Duration::from_secs(40), || {
        rx.accepts().len() >= 6
    })
    .await;
    let t = rx.accepts();
    let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    eprintln!("gaps between attempts: {gaps:.2?}");
    // The backoff would have reached 16 s by the fifth gap; while the whole
    // destination is down it is capped at 2 s (jittered: 1–2 s, plus the
    // 100 ms settle check), so its return is seen within seconds.
    for (k, gap) in gaps.iter().enumerate() {
        assert!(
            *gap >= 0.95 && *gap <= 2.5,
            "attempt {} came {gap:.2}s after the previous one, outside [1.0, 2.5]",
            k + 2
        );
    }
    assert_eq!(
        sent(&running, "out"),
        0,
        "nothing counts as delivered to a closing peer"
    );
    assert_eq!(
        metrics(&running).dest("sluice_destination_backpressure", "out"),
        1
    );
    running.shutdown().await;
}

/// Events counted as sent to a receiver that never reads, before its write
/// timed out, with or without a send buffer limit.
async fn absorbed_by_a_stuck_receiver(send_buffer: &str) -> u64 {
    let stuck = TcpReceiver::start(Mode::NeverRead).await;
    let good = TcpReceiver::start(Mode::Lines).await;
    let running = common::topology(&tcp_config(
        &format!("[{{address: \"{}\"}}, {{address: \"{}\"}}]", stuck.address(), good.address()),
        &format!(
            "    write_timeout: 300ms\n{send_buffer}    request: {{ concurrency: 1 }}\n    batch: {{ max_events: 50, timeout: 10ms }}"
        ),
    ))
    .await;
    let n = 30_000u64;
    let pad = "x".repeat(250);
    let data: Vec<u8> = (0..n)
        .map(|i| format!("{{\"seq\":{i},\"pad\":\"{pad}\"}}\n"))
        .collect::<String>()
        .into_bytes();
    send_tcp(running.source_addr("in").unwrap(), &data).await;
    wait_until_async("everything sent", Duration::from_secs(120), || {
        sent(&running, "out") == n
    })
    .await;
    let absorbed = endpoint(
        &running,
        "sluice_endpoint_sent_events_total",
        "out",
        &stuck.address(),
    ) as u64;
    running.shutdown().await;
    absorbed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_send_buffer_bounds_what_a_stuck_receiver_can_absorb() {
    let default = absorbed_by_a_stuck_receiver("").await;
    let small = absorbed_by_a_stuck_receiver("    send_buffer_bytes: 16KiB\n").await;
    eprintln!(
        "absorbed by a stuck receiver: {default} events with the default send buffer, {small} with 16 KiB"
    );
    assert!(small * 4 < default, "default {default}, 16 KiB {small}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_reads_hits_the_write_timeout_and_is_marked_down() {
    let stuck = TcpReceiver::start(Mode::NeverRead).await;
    let good = TcpReceiver::start(Mode::Lines).await;
    let running = common::topology(&tcp_config(
        &format!(
            "[{{address: \"{}\"}}, {{address: \"{}\"}}]",
            stuck.address(),
            good.address()
        ),
        "    write_timeout: 300ms\n    batch: { max_events: 500, timeout: 10ms }",
    ))
    .await;
    let n = 60_000u64;
    let pad = "x".repeat(250);
    let data: Vec<u8> = (0..n)
        .map(|i| format!("{{\"seq\":{i},\"pad\":\"{pad}\"}}\n"))
        .collect::<String>()
        .into_bytes();
    send_tcp(running.source_addr("in").unwrap(), &data).await;
    wait_until_async("everything sent", Duration::from_secs(120), || {
        sent(&running, "out") == n
    })
    .await;
    let stuck_sent = endpoint(
        &running,
        "sluice_endpoint_sent_events_total",
        "out",
        &stuck.address(),
    ) as u64;
    wait_until_async(
        "the good receiver read the rest",
        Duration::from_secs(30),
        || good.events().len() as u64 == n - stuck_sent,
    )
    .await;
    assert!(
        metrics(&running).dest("sluice_destination_retries_total", "out") >= 1,
        "the write timeout never fired"
    );
    let got: BTreeSet<u64> = seqs(&good.events()).into_iter().collect();
    assert_eq!(
        got.len() as u64,
        n - stuck_sent,
        "no duplicates at the good receiver"
    );
    eprintln!("{stuck_sent} events sit unread in the stuck receiver's buffers");
    running.shutdown().await;
}

/// Writes `n` events on a thread, reporting progress.
fn blocking_sender(addr: std::net::SocketAddr, n: u64) -> (Arc<AtomicU64>, Arc<AtomicBool>) {
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let pad = "x".repeat(200);
        for i in 0..n {
            if s.write_all(format!("{{\"seq\":{i},\"p\":\"{pad}\"}}\n").as_bytes())
                .is_err()
            {
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
async fn all_receivers_down_throttles_with_block_and_counts_with_drop() {
    // block
    let mut rx = TcpReceiver::start(Mode::Lines).await;
    rx.kill().await;
    let running = common::topology(&tcp_config(
        &format!("[{{address: \"{}\"}}]", rx.address()),
        "    queue: { max_events: 1000 }",
    ))
    .await;
    let n = 200_000;
    let (written, done) = blocking_sender(running.source_addr("in").unwrap(), n);
    let (mut last, mut still) = (0, 0);
    wait_until_async(
        "the sender to be throttled",
        Duration::from_secs(60),
        || {
            let now = written.load(Ordering::SeqCst);
            if now == last {
                still += 1
            } else {
                (still, last) = (0, now)
            }
            still >= 50
        },
    )
    .await;
    assert!(!done.load(Ordering::SeqCst));
    assert_eq!(
        metrics(&running).dest("sluice_destination_backpressure", "out"),
        1
    );
    rx.restart().await;
    wait_until_async(
        "everything delivered after recovery",
        Duration::from_secs(120),
        || sent(&running, "out") == n && rx.events().len() as u64 == n,
    )
    .await;
    running.shutdown().await;

    // drop
    let mut rx = TcpReceiver::start(Mode::Lines).await;
    rx.kill().await;
    let running = common::topology(&tcp_config(
        &format!("[{{address: \"{}\"}}]", rx.address()),
        "    backpressure: drop\n    queue: { max_events: 500 }",
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
    wait_until_async("all routed", Duration::from_secs(30), || {
        metrics(&running).source_events("in") == n
    })
    .await;
    rx.restart().await;
    wait_until_async("the lane to drain", Duration::from_secs(60), || {
        sent(&running, "out") + metrics(&running).dropped("out", "backpressure") == n
    })
    .await;
    let dropped = metrics(&running).dropped("out", "backpressure");
    assert!(dropped > n / 2, "dropped {dropped}");
    wait_until_async(
        "the receiver to read what was sent",
        Duration::from_secs(30),
        || rx.events().len() as u64 == n - dropped,
    )
    .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octet_counting_round_trips_events_with_newlines() {
    let rx = TcpReceiver::start(Mode::Octets).await;
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0, framing: octet_counting, decoding: text }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: tcp
    address: "{}"
    framing: octet_counting
    encoding: raw
    batch: {{ timeout: 10ms }}
"#,
        rx.address()
    ))
    .await;
    let events = [
        "<13>Nov 22 10:00:00 host app: first line\n  second line of a stack trace\n  third",
        "single line",
        "windows\r\nline endings\r\n",
        "ümlauts and ✓ unicode",
    ];
    let mut wire = Vec::new();
    for e in events {
        write!(wire, "{} {e}", e.len()).unwrap();
    }
    send_tcp(running.source_addr("in").unwrap(), &wire).await;
    wait_until_async("all four read", Duration::from_secs(20), || {
        rx.events().len() == 4
    })
    .await;
    assert_eq!(rx.events(), events);
    running.shutdown().await;
}

const METRIC_EVENTS: &[&str] = &[
    r#"{"name":"cpu.load","value":0.5,"ts":1700000000,"host":"web-1","region":"eu"}"#,
    r#"{"name":"requests","value":"42","ts":1700000001000,"host":"web-2","region":"us"}"#,
    r#"{"name":"no.value","ts":1700000002,"host":"web-3"}"#,
];

fn metric_config(kind: &str, dest: &str) -> String {
    // StatsD lines carry no time, so it takes no `timestamp`.
    let ts = if kind == "statsd" {
        ""
    } else {
        "timestamp: ts, "
    };
    format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    {dest}
    encoding: {kind}
    metric: {{ name: name, value: value, {ts}tags: [host, region], type: g }}
    batch: {{ timeout: 10ms }}
"#
    )
}

/// A metric as parsed back from a line: name, value, seconds, tags.
type Parsed = (String, f64, u64, Vec<(String, String)>);

/// What the encodings must carry, parsed from `METRIC_EVENTS`.
fn expected_metrics() -> Vec<Parsed> {
    METRIC_EVENTS[..2]
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            let value = match &v["value"] {
                Value::String(s) => s.parse().unwrap(),
                n => n.as_f64().unwrap(),
            };
            let ts = v["ts"].as_u64().unwrap();
            let ts = if ts > 100_000_000_000 { ts / 1000 } else { ts };
            let tags = ["host", "region"]
                .iter()
                .map(|k| (k.to_string(), v[k].as_str().unwrap().to_string()))
                .collect();
            (v["name"].as_str().unwrap().to_string(), value, ts, tags)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_over_tcp_parses_back_to_the_events() {
    let rx = TcpReceiver::start(Mode::Lines).await;
    let running = common::topology(&metric_config(
        "graphite",
        &format!("type: tcp\n    address: \"{}\"", rx.address()),
    ))
    .await;
    send_tcp(
        running.source_addr("in").unwrap(),
        METRIC_EVENTS.join("\n").as_bytes(),
    )
    .await;
    wait_until_async("two metrics read", Duration::from_secs(20), || {
        rx.events().len() == 2
    })
    .await;
    let got: Vec<_> = rx
        .events()
        .iter()
        .map(|line| {
            // path;tag=value;tag=value value timestamp
            let mut parts = line.split(' ');
            let mut path = parts.next().unwrap().split(';');
            let name = path.next().unwrap().to_string();
            let tags = path
                .map(|t| {
                    let (k, v) = t.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let value: f64 = parts.next().unwrap().parse().unwrap();
            let ts: u64 = parts.next().unwrap().parse().unwrap();
            (name, value, ts, tags)
        })
        .collect();
    assert_eq!(got, expected_metrics());
    assert_eq!(metrics(&running).dropped("out", "unencodable"), 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_over_udp_parses_back_to_the_events() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let running = common::topology(&metric_config(
        "statsd",
        &format!("type: udp\n    address: \"{}\"", sock.local_addr().unwrap()),
    ))
    .await;
    send_tcp(
        running.source_addr("in").unwrap(),
        METRIC_EVENTS.join("\n").as_bytes(),
    )
    .await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(20), sock.recv(&mut buf))
            .await
            .expect("a datagram")
            .unwrap();
        let line = String::from_utf8(buf[..n].to_vec()).unwrap();
        // name:value|g|#tag:value,tag:value
        let (name, rest) = line.split_once(':').unwrap();
        let mut fields = rest.split('|');
        let value: f64 = fields.next().unwrap().parse().unwrap();
        assert_eq!(fields.next(), Some("g"));
        let tags: Vec<(String, String)> = fields
            .next()
            .unwrap()
            .trim_start_matches('#')
            .split(',')
            .map(|t| {
                let (k, v) = t.split_once(':').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        got.push((name.to_string(), value, tags));
    }
    let want: Vec<_> = expected_metrics()
        .into_iter()
        .map(|(n, v, _, t)| (n, v, t))
        .collect();
    assert_eq!(got, want);
    wait_until_async(
        "the unencodable event counted",
        Duration::from_secs(10),
        || metrics(&running).dropped("out", "unencodable") == 1,
    )
    .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_over_http_parses_back_to_the_events() {
    let rx = Receiver::start().await;
    let running = common::topology(&metric_config(
        "influx",
        &format!("type: http\n    url: \"{}\"", rx.url("/write")),
    ))
    .await;
    send_tcp(
        running.source_addr("in").unwrap(),
        METRIC_EVENTS.join("\n").as_bytes(),
    )
    .await;
    wait_until_async("two metrics delivered", Duration::from_secs(20), || {
        rx.accepted().len() == 2
    })
    .await;
    let got: Vec<_> = rx
        .accepted()
        .iter()
        .map(|line| {
            // measurement,tag=value,tag=value value=V ns
            let mut parts = line.split(' ');
            let mut head = parts.next().unwrap().split(',');
            let name = head.next().unwrap().to_string();
            let tags = head
                .map(|t| {
                    let (k, v) = t.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let value: f64 = parts
                .next()
                .unwrap()
                .strip_prefix("value=")
                .unwrap()
                .trim_end_matches('i') // "42" is inferred an integer
                .parse()
                .unwrap();
            let ns: u64 = parts.next().unwrap().parse().unwrap();
            (name, value, ns / 1_000_000_000, tags)
        })
        .collect();
    assert_eq!(got, expected_metrics());
    assert_eq!(
        rx.requests()[0].content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_match_the_events_packed_or_not_and_oversize_is_counted() {
    for pack in [false, true] {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let running = common::topology(&format!(
            r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: udp
    address: "{}"
    max_datagram_bytes: 200
    pack: {pack}
    batch: {{ timeout: 10ms }}
"#,
            sock.local_addr().unwrap()
        ))
        .await;
        let mut lines: Vec<String> = (0..50)
            .map(|i| format!("{{\"seq\":{i},\"msg\":\"m{i}\"}}"))
            .collect();
        lines.insert(
            25,
            format!("{{\"seq\":999,\"pad\":\"{}\"}}", "x".repeat(300)),
        );
        send_tcp(
            running.source_addr("in").unwrap(),
            lines.join("\n").as_bytes(),
        )
        .await;
        let mut got = Vec::new();
        let mut datagrams = 0;
        let mut buf = vec![0u8; 65_536];
        while got.len() < 50 {
            let n = tokio::time::timeout(Duration::from_secs(20), sock.recv(&mut buf))
                .await
                .expect("datagrams")
                .unwrap();
            assert!(n <= 200, "a {n}-byte datagram");
            datagrams += 1;
            got.extend(
                String::from_utf8(buf[..n].to_vec())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
        let want: Vec<String> = lines
            .iter()
            .filter(|l| !l.contains("999"))
            .cloned()
            .collect();
        assert_eq!(got, want, "pack: {pack}");
        if pack {
            assert!(datagrams < 50, "packing sent {datagrams} datagrams");
        } else {
            assert_eq!(datagrams, 50);
        }
        wait_until_async("oversize counted", Duration::from_secs(10), || {
            metrics(&running).dropped("out", "oversize") == 1
        })
        .await;
        running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_receiver_with_a_private_ca() {
    let (acceptor, ca_pem) = common::tls::acceptor();
    let rx = TcpReceiver::start_with(Mode::Lines, Some(acceptor)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let running = common::topology(&tcp_config(
        &format!("[{{address: \"{}\"}}]", rx.address()),
        &format!("    tls: {{ ca_file: \"{}\" }}", ca.display()),
    ))
    .await;
    send_tcp(running.source_addr("in").unwrap(), &seq_lines(0..500)).await;
    wait_until_async("500 read over TLS", Duration::from_secs(30), || {
        rx.events().len() == 500
    })
    .await;
    // Two connections carry batches in parallel: order holds per connection.
    let mut got = seqs(&rx.events());
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    running.shutdown().await;
}

/// Several clients at once through a TCP destination with its default
/// settings, and with eight connections: each client's lines reach the
/// receiver in the order it sent them (one sender's batches stay on one
/// connection, one at a time), and every line arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_clients_lines_arrive_in_order() {
    for extra in ["", "    request: { concurrency: 8 }"] {
        let rx = TcpReceiver::start(Mode::Lines).await;
        let running = common::topology(&tcp_config(
            &format!("[{{address: \"{}\"}}]", rx.address()),
            extra,
        ))
        .await;
        let src = running.source_addr("in").unwrap();
        let (clients, per) = (4u64, 5_000u64);
        let feeders: Vec<_> = (0..clients)
            .map(|c| {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(src).await.unwrap();
                    for chunk in (0..per).step_by(250) {
                        let lines: String = (chunk..chunk + 250)
                            .map(|i| format!("{{\"c\":{c},\"seq\":{i}}}\n"))
                            .collect();
                        s.write_all(lines.as_bytes()).await.unwrap();
                    }
                    s.shutdown().await.unwrap();
                })
            })
            .collect();
        for f in feeders {
            f.await.unwrap();
        }
        wait_until_async("every line read", Duration::from_secs(60), || {
            rx.events().len() as u64 == clients * per
        })
        .await;
        let mut by_client: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for e in rx.events() {
            let v: Value = serde_json::from_str(&e).unwrap();
            by_client
                .entry(v["c"].as_u64().unwrap())
                .or_default()
                .push(v["seq"].as_u64().unwrap());
        }
        for (c, got) in &by_client {
            let first_gap = got.iter().enumerate().find(|(i, q)| **q != *i as u64);
            assert_eq!(first_gap, None, "client {c} out of order ({extra:?})");
        }
        running.shutdown().await;
    }
}
