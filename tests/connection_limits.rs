//! What a client may cost in connections and time: slowloris, a lying
//! `Content-Length`, idle TCP connections and an idle flood are closed and
//! counted, and honest clients and the API stay served meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Sluice, http_request, read_lines, wait_until};

fn http_source(settings: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  web: {{ type: http, address: 127.0.0.1:0{settings} }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#
    ))
}

/// Reads until the server closes the connection (or `limit` passes):
/// how long that took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn a_slowloris_is_closed_within_seconds_and_counted() {
    let s = http_source("");
    let addr = s.source("web");
    let mut slow = TcpStream::connect(addr).expect("connect");
    let start = Instant::now();
    let head = b"POST / HTTP/1.1\r\nHost: sluice\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in head {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    if !closed {
        closed = closed_within(&mut slow, Duration::from_secs(5)).is_some();
    }
    assert!(closed, "a client trickling its headers was never closed");
    assert!(
        start.elapsed() < Duration::from_secs(16),
        "closed only after {:?}",
        start.elapsed()
    );
    // Meanwhile an honest client is served, and the slowloris is counted.
    let (code, _) = http_request(addr, "POST", "/", &[], r#"{"honest":true}"#);
    assert_eq!(code, 200);
    wait_until("the slowloris counted", Duration::from_secs(10), || {
        s.metrics().rejected("web", "timeout") == 1
    });
}

#[test]
fn a_body_that_never_arrives_is_answered_408_and_counted() {
    let s = http_source(", body_timeout: 1s");
    let mut c = TcpStream::connect(s.source("web")).expect("connect");
    // Promises 100 bytes, sends 10, then nothing.
    c.write_all(b"POST / HTTP/1.1\r\nHost: sluice\r\nContent-Length: 100\r\n\r\n{\"a\":1}\n  ")
        .expect("write");
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(s.metrics().rejected("web", "timeout"), 1);
    assert!(!s.dir.join("out.ndjson").exists() || read_lines(&s.dir.join("out.ndjson")).is_empty());
}

#[test]
fn an_idle_tcp_connection_is_closed_and_a_busy_one_is_not() {
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  tcp: { type: tcp, address: 127.0.0.1:0, idle_timeout: 1s }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    let addr = s.source("tcp");
    // Idle, holding a partial line.
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.write_all(b"{\"partial\":").expect("write");
    // Busy: a line every 300 ms for 3 s, longer than the idle timeout.
    let mut busy = TcpStream::connect(addr).expect("connect");
    for i in 0..10 {
        writeln!(busy, r#"{{"i":{i}}}"#).expect("the busy connection stays open");
        std::thread::sleep(Duration::from_millis(300));
    }
    let took = closed_within(&mut idle, Duration::from_secs(10));
    assert!(took.is_some(), "the idle connection was never closed");
    wait_until(
        "the busy connection's lines",
        Duration::from_secs(10),
        || s.dir.join("out.ndjson").exists() && read_lines(&s.dir.join("out.ndjson")).len() == 10,
    );
    assert_eq!(s.metrics().rejected("tcp", "timeout"), 1);
}

/// 100 connections that never send a byte against a source that takes 50:
/// the API answers at once throughout, the idle ones are closed by the
/// header timeout (10 s), an honest client queued behind them is served
/// once places free (two rounds), and memory does not move.
#[test]
fn an_idle_flood_leaves_the_api_and_honest_clients_served() {
    let s = http_source(", max_connections: 50");
    assert!(s.has_log("open-file limit"));
    let addr = s.source("web");
    let rss_before = s.rss_bytes();
    let flood: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).expect("connect (the kernel's backlog takes them)"))
        .collect();
    let start = Instant::now();
    let health = common::http_get(s.api, "/health");
    assert!(!health.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the API waited {:?}",
        start.elapsed()
    );
    // An honest client behind the flood.
    let (code, _) = http_request(addr, "POST", "/", &[], r#"{"honest":true}"#);
    assert_eq!(code, 200);
    wait_until("the honest event", Duration::from_secs(10), || {
        s.dir.join("out.ndjson").exists() && read_lines(&s.dir.join("out.ndjson")).len() == 1
    });
    assert!(s.metrics().rejected("web", "timeout") >= 50);
    let grown = s.rss_bytes().saturating_sub(rss_before);
    assert!(grown < 32 << 20, "RSS grew {} MiB", grown >> 20);
    drop(flood);
}

/// A UDP source held still by a full `block` destination (a console whose
/// reader stalls): the kernel drops what its receive buffer cannot hold,
/// and sluice counts exactly those: every datagram sent is either delivered
/// or counted `kernel`.
#[test]
fn datagrams_the_kernel_dropped_are_counted() {
    let mut s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  udp: { type: udp, address: 127.0.0.1:0, receive_buffer_bytes: 64KiB }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: console, queue: { max_events: 100 } }
"#,
    );
    let log = s.log_records("udp source listening");
    assert!(
        log[0]["receive_buffer_bytes"].as_u64().unwrap_or(0) >= 64 << 10,
        "the effective buffer is logged: {log:?}"
    );
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sent = 20_000u64;
    for i in 0..sent {
        sender
            .send_to(format!(r#"{{"i":{i}}}"#).as_bytes(), s.source("udp"))
            .expect("send");
    }
    wait_until("kernel drops counted", Duration::from_secs(20), || {
        s.metrics().rejected("udp", "kernel") > 0
    });
    // Let the console go: what the buffer held is delivered.
    let delivered = common::count_stdout_lines(&mut s);
    wait_until(
        "every datagram delivered or counted",
        Duration::from_secs(30),
        || {
            let m = s.metrics();
            delivered.load(std::sync::atomic::Ordering::Relaxed) + m.rejected("udp", "kernel")
                == sent
        },
    );
    assert_eq!(
        s.metrics().source_events("udp"),
        sent - s.metrics().rejected("udp", "kernel")
    );
}
