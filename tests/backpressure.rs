//! Backpressure through the real binary. The stalled destination is a real
//! one: `console` writing into a pipe the test does not read, exactly what a
//! stuck downstream process does.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Sluice, event_line, seq_of, wait_until};

/// Read the child's stdout on a thread, collecting lines.
fn collect_stdout(s: &mut Sluice) -> Arc<Mutex<Vec<String>>> {
    let out = s.stdout.take().expect("stdout not taken yet");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            sink.lock().unwrap().push(l);
        }
    });
    lines
}

/// Write `n` numbered events over one TCP connection on a thread, publishing
/// how many bytes the kernel has accepted so far.
struct Sender {
    written: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    total: u64,
}

fn send_events(addr: std::net::SocketAddr, n: u64, size: usize) -> Sender {
    send_range(addr, 0..n, size)
}

/// `send_events` for the events numbered `range`.
fn send_range(addr: std::net::SocketAddr, range: std::ops::Range<u64>, size: usize) -> Sender {
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    let mut payload = Vec::new();
    for i in range {
        payload.extend_from_slice(event_line(i, size).as_bytes());
    }
    let total = payload.len() as u64;
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        for chunk in payload.chunks(16 * 1024) {
            // The test may end (and kill sluice) while this is still blocked.
            if s.write_all(chunk).is_err() {
                return;
            }
            w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        s.shutdown(std::net::Shutdown::Write).ok();
        d.store(true, Ordering::SeqCst);
    });
    Sender {
        written,
        done,
        total,
    }
}

/// Wait until the sender has made no progress for `quiet` (it is blocked).
fn wait_for_stall(sender: &Sender, quiet: Duration, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = sender.written.load(Ordering::SeqCst);
    let mut since = Instant::now();
    loop {
        assert!(
            !sender.done.load(Ordering::SeqCst),
            "the sender finished all {} bytes: it was never throttled",
            sender.total
        );
        assert!(Instant::now() < deadline, "no stall within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
        let now = sender.written.load(Ordering::SeqCst);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

#[test]
fn tcp_sender_is_throttled_by_a_stalled_block_destination_and_resumes_without_loss() {
    let mut s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
routes:
  - name: all
    destination: console
destinations:
  console:
    type: console
    queue: { max_events: 2000 }
"#,
    );
    // 90 MB: far more than sluice may buffer if backpressure works.
    let n = 300_000;
    let sender = send_events(s.source("in"), n, 300);
    wait_for_stall(&sender, Duration::from_secs(2), Duration::from_secs(120));

    let m = s.metrics();
    assert_eq!(m.dest("sluice_destination_backpressure", "console"), 1);
    assert!(m.get("sluice_destination_blocked_seconds_total{destination=\"console\"}") > 0.0);
    let written = sender.written.load(Ordering::SeqCst);
    assert!(
        written < sender.total / 2,
        "{written} of {} bytes got through while stalled",
        sender.total
    );
    let rss = s.rss_bytes();
    eprintln!(
        "stalled: sender wrote {written} of {} bytes; sluice RSS {} MiB",
        sender.total,
        rss >> 20
    );
    assert!(
        rss < 100 << 20,
        "memory grew while blocked: RSS {} MiB",
        rss >> 20
    );

    // Recovery: read the pipe; every event arrives, once, in order.
    let lines = collect_stdout(&mut s);
    wait_until("all events delivered", Duration::from_secs(180), || {
        lines.lock().unwrap().len() as u64 >= n
    });
    wait_until("the sender to finish", Duration::from_secs(10), || {
        sender.done.load(Ordering::SeqCst)
    });
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len() as u64, n);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(seq_of(l), i as u64, "out of order or lost at line {i}");
    }
    let m = s.metrics();
    assert_eq!(m.source_events("in"), n);
    assert_eq!(m.dest("sluice_destination_sent_events_total", "console"), n);
    assert_eq!(m.dest("sluice_destination_backpressure", "console"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sender_gets_429_with_retry_after_and_nothing_of_a_shed_request_is_delivered() {
    let mut s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  web: { type: http, address: 127.0.0.1:0, max_wait: 200ms }
routes:
  - name: all
    destination: console
destinations:
  console:
    type: console
    queue: { max_events: 50 }
"#,
    );
    let url = format!("http://{}/", s.source("web"));
    let client = reqwest::Client::new();
    let mut accepted = HashSet::new();
    let mut shed_requests = 0u64;
    let mut seq = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while shed_requests < 3 {
        assert!(Instant::now() < deadline, "never got a 429");
        let body: String = (seq..seq + 100).map(|i| event_line(i, 200)).collect();
        let r = client.post(&url).body(body).send().await.expect("POST");
        match r.status().as_u16() {
            200 => accepted.extend(seq..seq + 100),
            429 => {
                shed_requests += 1;
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .expect("429 carries Retry-After")
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .expect("Retry-After in seconds");
                assert!(retry_after >= 1);
            }
            other => panic!("unexpected status {other}"),
        }
        seq += 100;
    }
    let m = s.metrics();
    assert_eq!(m.rejected("web", "shed"), shed_requests * 100);
    assert_eq!(m.source_events("web"), accepted.len() as u64);

    // Unblock: exactly the accepted events arrive; nothing from a 429'd request.
    let lines = collect_stdout(&mut s);
    wait_until("accepted events delivered", Duration::from_secs(60), || {
        s.metrics()
            .dest("sluice_destination_sent_events_total", "console")
            == accepted.len() as u64
    });
    s.terminate();
    s.wait_exit(Duration::from_secs(30));
    let got: Vec<u64> = lines.lock().unwrap().iter().map(|l| seq_of(l)).collect();
    let unique: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(got.len(), unique.len(), "duplicates delivered");
    assert_eq!(
        unique, accepted,
        "delivered events differ from the accepted ones"
    );
}

fn drop_policy_loses_exactly_what_it_counts(which: &str) {
    let rt = common::runtime();
    let rx = rt.block_on(common::receiver::Receiver::start());
    let (open, gate) = tokio::sync::watch::channel(false);
    rx.set(common::receiver::Behavior::Held(gate));
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
routes:
  - name: copy
    destination: held
    final: false
  - name: all
    destination: archive
destinations:
  held:
    type: http
    url: "{}"
    batch: {{ max_events: 50, timeout: 10ms }}
    request: {{ concurrency: 1, timeout: 300s }}
    backpressure: drop
    queue: {{ max_events: 100, drop: {which} }}
  archive:
    type: file
    path: "{{dir}}/archive.ndjson"
"#,
        rx.url("/")
    ));
    let n = 20_000u64;
    // First, 50 events at a time (each routed before the next is sent),
    // until the peer holds a request and the lane is full: nothing leaves
    // the lane until the test opens the gate. Then the rest at once: what
    // each policy sheds is decided by the policy alone, not by how this
    // machine happened to batch the reads.
    let mut conn = std::net::TcpStream::connect(s.source("in")).unwrap();
    let mut first = 0u64;
    loop {
        assert!(first < 5_000, "the lane never filled");
        let chunk: String = (first..first + 50).map(|i| event_line(i, 300)).collect();
        conn.write_all(chunk.as_bytes()).unwrap();
        first += 50;
        wait_until("the chunk routed", Duration::from_secs(30), || {
            s.metrics().dest("sluice_destination_events_total", "held") == first
        });
        let m = s.metrics();
        if rx.request_count() > 0 && m.dest("sluice_destination_queue_events", "held") == 100 {
            break;
        }
    }
    drop(conn);
    let sender = send_range(s.source("in"), first..n, 300);
    // The sibling keeps flowing while `held` is stalled and shedding.
    wait_until(
        "the file destination received everything",
        Duration::from_secs(120),
        || {
            s.metrics()
                .dest("sluice_destination_sent_events_total", "archive")
                == n
        },
    );
    // Everything arrived, so the source was not slowed; the sender thread
    // may just not have run again yet to say so.
    wait_until("the sender to finish", Duration::from_secs(10), || {
        sender.done.load(Ordering::SeqCst)
    });
    let m = s.metrics();
    let dropped = m.dropped("held", "backpressure");
    assert_eq!(m.dest("sluice_destination_events_total", "held"), n);
    assert!(dropped > n / 2, "expected most events shed, got {dropped}");

    let _ = open.send(true);
    wait_until("held drained", Duration::from_secs(60), || {
        let m = s.metrics();
        m.dest("sluice_destination_sent_events_total", "held") + dropped == n
            && m.dest("sluice_destination_queue_events", "held") == 0
    });
    let got: Vec<u64> = rx.accepted().iter().map(|l| seq_of(l)).collect();
    assert_eq!(
        got.len() as u64 + dropped,
        n,
        "received + dropped must equal sent"
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "duplicates or reordering"
    );
    let archive = common::read_lines(&s.dir.join("archive.ndjson"));
    assert_eq!(archive.len() as u64, n);
    match which {
        // Once the lane was full and stalled, every later arrival was shed.
        "newest" => assert!(
            *got.last().unwrap() < first,
            "late events survived drop-newest: last delivered {}",
            got.last().unwrap()
        ),
        // The newest events survive: the last 100 (the lane) are the last sent.
        "oldest" => assert_eq!(got[got.len() - 100..], (n - 100..n).collect::<Vec<_>>()[..]),
        _ => unreachable!(),
    }
}

#[test]
fn drop_newest_loses_exactly_what_it_counts_and_siblings_keep_flowing() {
    drop_policy_loses_exactly_what_it_counts("newest");
}

#[test]
fn drop_oldest_loses_exactly_what_it_counts_and_siblings_keep_flowing() {
    drop_policy_loses_exactly_what_it_counts("oldest");
}

#[test]
fn sigterm_drains_then_counts_the_undeliverable_as_shutdown() {
    let mut s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
shutdown_timeout: 1s
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
routes:
  - name: all
    destination: console
destinations:
  console:
    type: console
    queue: { max_events: 500 }
"#,
    );
    let sender = send_events(s.source("in"), 100_000, 300);
    wait_for_stall(&sender, Duration::from_secs(1), Duration::from_secs(120));
    let t = Instant::now();
    s.terminate();
    let status = s.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
    let acc = s.final_accounting("console");
    let events = acc["events"].as_u64().unwrap();
    let sent = acc["sent"].as_u64().unwrap();
    let dropped = acc["dropped"].as_u64().unwrap();
    assert!(events > 0);
    assert_eq!(events, sent + dropped, "{acc}");
    assert!(
        dropped > 0,
        "the stalled console could not have delivered everything: {acc}"
    );
}
