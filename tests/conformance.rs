//! The destination conformance suite: one set of user scenarios, run against
//! every destination type with its real peer (`conformance/peers.rs`),
//! through the real binary.
//!
//! - `ordered`: N events delivered exactly once, in order, at concurrency 1.
//! - `block`: the peer is down and the policy is `block`: the source is
//!   throttled (sources wait, the TCP sender cannot finish) and, once the
//!   peer is back, nothing is lost.
//! - `drop`: the peer is down and the policy is `drop`: what the peer never
//!   got is exactly what `dropped_events_total{reason="backpressure"}` says.
//! - `persistent_queue`: the peer is down; events spill to disk; sluice is
//!   restarted while it is still down; once it is back, nothing is lost.
//! - `dead_letter`: the peer refuses every event for good; each one reaches
//!   the dead-letter destination carrying the peer's reason.
//!
//! After each, sluice is stopped and its final accounting must balance for
//! every destination: `events = sent + dropped + queued`. A destination type
//! runs the scenarios its protocol can express (UDP has no outage a sender
//! can see; a local file has no peer to take down or to refuse): the list
//! per type is at the bottom, and a new destination adds its line there.

mod common;
mod conformance {
    pub mod peers;
}

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Sluice, event_line, runtime, seq_of, wait_until};
#[cfg(feature = "kafka")]
use conformance::peers::KafkaPeer;
#[cfg(feature = "otlp")]
use conformance::peers::OtlpPeer;
#[cfg(feature = "pubsub")]
use conformance::peers::PubsubPeer;
#[cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]
use conformance::peers::S3Peer;
#[cfg(feature = "sluice")]
use conformance::peers::SluicePeer;
use conformance::peers::{ConsolePeer, FilePeer, FilesystemPeer, HttpPeer, Peer, TcpPeer, UdpPeer};
#[cfg(all(feature = "sqs", feature = "kinesis"))]
use conformance::peers::{KinesisPeer, SqsPeer};
use serde_json::Value;
use tokio::runtime::Runtime;

const LONG: Duration = Duration::from_secs(60);

/// A config with a TCP source routed to `out` (the peer's destination plus
/// `extra`), optionally a file dead-letter destination `dlq`.
fn config(peer: &dyn Peer, extra: &str, data_dir: &str, dlq: Option<&str>) -> String {
    let data_dir = if data_dir.is_empty() {
        // Queues are not used: any private place will do.
        let d = std::env::temp_dir().join(format!("sluice-conformance-{}", std::process::id()));
        d.display().to_string()
    } else {
        data_dir.to_string()
    };
    let mut y = format!(
        "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{data_dir}\"\nshutdown_timeout: 3s\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n{}{extra}",
        peer.destination()
    );
    if let Some(path) = dlq {
        y.push_str("    dead_letter: dlq\n");
        y.push_str(&format!("  dlq: {{ type: file, path: \"{path}\" }}\n"));
    }
    y
}

/// A scenario's batch setting, capped to what the peer's protocol takes.
fn batch(peer: &dyn Peer, max_events: u64) -> String {
    format!(
        "    batch: {{ max_events: {}, timeout: 20ms }}\n",
        max_events.min(peer.max_batch())
    )
}

/// One request at a time, with the peer's own request keys.
fn request(peer: &dyn Peer) -> String {
    match peer.request() {
        "" => "    request: { concurrency: 1 }\n".to_string(),
        more => format!("    request: {{ concurrency: 1, {more} }}\n"),
    }
}

fn start(peer: &mut dyn Peer, yaml: &str) -> Sluice {
    let mut s = Sluice::start(yaml);
    peer.attach(&mut s);
    s
}

/// Write `n` numbered events to the TCP source on a thread.
struct Sender {
    done: Arc<AtomicBool>,
}

fn send(addr: std::net::SocketAddr, seqs: std::ops::Range<u64>, size: usize) -> Sender {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let mut payload = Vec::new();
    for i in seqs {
        payload.extend_from_slice(event_line(i, size).as_bytes());
    }
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the source");
        for chunk in payload.chunks(16 * 1024) {
            // The test may stop sluice while this is still blocked.
            if s.write_all(chunk).is_err() {
                return;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        d.store(true, Ordering::SeqCst);
    });
    Sender { done }
}

fn seqs(lines: &[String]) -> Vec<u64> {
    lines.iter().map(|l| seq_of(l)).collect()
}

/// Stop sluice and check every destination's final accounting.
fn stop_and_balance(mut s: Sluice) -> Vec<Value> {
    s.terminate();
    let status = s.wait_exit(LONG);
    let records = s.log_records("final accounting");
    assert!(
        status.success(),
        "sluice exited with {status} (accounting did not balance?): {:#?}",
        s.log_records("accounting does not balance: events != sent + dropped + queued")
    );
    for r in &records {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        assert_eq!(
            n("events"),
            n("sent") + n("dropped") + n("queued"),
            "accounting of {r}"
        );
    }
    records
}

fn ordered(mut peer: Box<dyn Peer>, _: &Runtime) {
    let n = 3_000u64;
    let yaml = config(
        &*peer,
        &format!("{}{}", request(&*peer), batch(&*peer, 100)),
        "",
        None,
    );
    let s = start(&mut *peer, &yaml);
    send(s.source("in"), 0..n, 120);
    wait_until("every event at the peer", LONG, || {
        peer.received().len() as u64 >= n
    });
    let got = seqs(&peer.received());
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "exactly once, in order");
    let m = s.metrics();
    assert_eq!(
        m.dest("sluice_destination_sent_events_total", "out"),
        n,
        "sent counts every delivered event"
    );
    stop_and_balance(s);
    assert_eq!(peer.received().len() as u64, n, "nothing more arrived");
}

fn block(mut peer: Box<dyn Peer>, rt: &Runtime) {
    peer.down(rt);
    // Big enough to outlast every buffer on the way (socket buffers, the
    // source's read buffer, the lane of 100).
    let n = 60_000u64 / peer.scale();
    let yaml = config(
        &*peer,
        &format!(
            "    backpressure: block\n    queue: {{ max_events: 100 }}\n{}{}",
            batch(&*peer, 50),
            request(&*peer)
        ),
        "",
        None,
    );
    let s = start(&mut *peer, &yaml);
    let sender = send(s.source("in"), 0..n, 200 * peer.scale() as usize);
    wait_until("sources to wait on the destination", LONG, || {
        s.metrics()
            .get("sluice_destination_blocked_seconds_total{destination=\"out\"}")
            > 1.0
    });
    assert!(
        !sender.done.load(Ordering::SeqCst),
        "the TCP sender finished although the destination is down"
    );
    assert!(
        s.metrics().source_events("in") < n,
        "the source took everything"
    );
    peer.up(rt);
    wait_until("every event at the peer", peer.patience(), || {
        unique(&peer.received()) as u64 >= n
    });
    assert!(sender.done.load(Ordering::SeqCst));
    let records = stop_and_balance(s);
    let got: HashSet<u64> = seqs(&peer.received()).into_iter().collect();
    assert_eq!(got.len() as u64, n, "nothing lost");
    let out = &records.iter().find(|r| r["destination"] == "out").unwrap();
    assert_eq!(out["dropped"], 0, "{out}");
}

fn unique(lines: &[String]) -> usize {
    seqs(lines).into_iter().collect::<HashSet<_>>().len()
}

fn drop(mut peer: Box<dyn Peer>, rt: &Runtime) {
    peer.down(rt);
    let n = 20_000u64;
    let yaml = config(
        &*peer,
        &format!(
            "    backpressure: drop\n    queue: {{ max_events: 100 }}\n{}{}",
            batch(&*peer, 50),
            request(&*peer)
        ),
        "",
        None,
    );
    let s = start(&mut *peer, &yaml);
    let sender = send(s.source("in"), 0..n, 200);
    wait_until("the source to take every event", LONG, || {
        sender.done.load(Ordering::SeqCst) && s.metrics().source_events("in") == n
    });
    let shed = s.metrics().dropped("out", "backpressure");
    assert!(shed > 0, "nothing was dropped while the peer was down");
    peer.up(rt);
    wait_until("the lane to drain", LONG, || {
        let m = s.metrics();
        m.dest("sluice_destination_sent_events_total", "out") + m.dropped("out", "backpressure")
            == n
    });
    let records = stop_and_balance(s);
    let got = seqs(&peer.received());
    let unique: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "duplicates");
    let out = records.iter().find(|r| r["destination"] == "out").unwrap();
    let dropped = out["dropped"].as_u64().unwrap();
    assert_eq!(
        n - unique.len() as u64,
        dropped,
        "lost events are exactly those counted as dropped"
    );
}

fn persistent_queue(mut peer: Box<dyn Peer>, rt: &Runtime) {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    peer.down(rt);
    let n = 20_000u64 / peer.scale();
    let yaml = config(
        &*peer,
        &format!(
            "    backpressure: persistent_queue\n    queue: {{ max_events: 100, fsync: always }}\n{}{}",
            batch(&*peer, 50),
            request(&*peer)
        ),
        &data_dir,
        None,
    );
    let s = start(&mut *peer, &yaml);
    let sender = send(s.source("in"), 0..n, 200 * peer.scale() as usize);
    wait_until("the source to take every event", LONG, || {
        sender.done.load(Ordering::SeqCst) && s.metrics().source_events("in") == n
    });
    assert!(
        s.metrics()
            .get("sluice_persistent_queue_events{destination=\"out\"}")
            > 0.0,
        "nothing went to disk while the peer was down"
    );
    let first = stop_and_balance(s);
    let out = first.iter().find(|r| r["destination"] == "out").unwrap();
    assert!(out["queued"].as_u64().unwrap() > 0, "{out}");
    // Restarted while the peer is still down, then the peer comes back.
    let s = start(&mut *peer, &yaml);
    peer.up(rt);
    wait_until("every event at the peer", peer.patience(), || {
        unique(&peer.received()) as u64 >= n
    });
    stop_and_balance(s);
    let got: HashSet<u64> = seqs(&peer.received()).into_iter().collect();
    assert_eq!(
        got.len() as u64,
        n,
        "nothing lost across the outage and the restart"
    );
}

fn dead_letter(mut peer: Box<dyn Peer>, _: &Runtime) {
    let (status, response) = peer.reject();
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dead.ndjson");
    let n = 500u64;
    let yaml = config(
        &*peer,
        &batch(&*peer, 50),
        "",
        Some(&dlq.display().to_string()),
    );
    let s = start(&mut *peer, &yaml);
    send(s.source("in"), 0..n, 120);
    wait_until("every event dead-lettered", LONG, || {
        common::read_lines(&dlq).len() as u64 >= n
    });
    let records = stop_and_balance(s);
    let letters: Vec<Value> = common::read_lines(&dlq)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut got = HashSet::new();
    for l in &letters {
        let d = &l["dead_letter"];
        assert_eq!(d["reason"], "rejected", "{l}");
        assert_eq!(d["destination"], "out", "{l}");
        assert_eq!(d["status"], status, "{l}");
        assert_eq!(d["response"], response.as_str(), "{l}");
        got.insert(l["event"]["seq"].as_u64().unwrap());
    }
    assert_eq!(got.len() as u64, n);
    assert!(peer.received().is_empty());
    let out = records.iter().find(|r| r["destination"] == "out").unwrap();
    assert_eq!(out["dropped"].as_u64(), Some(n), "{out}");
}

/// One test per (destination type, scenario).
macro_rules! conformance {
    ($( $(#[$attr:meta])* $name:ident => $peer:expr, [$($scenario:ident),* $(,)?]; )*) => {
        $(
            $(#[$attr])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $scenario() {
                        let rt = runtime();
                        let peer: Box<dyn Peer> = Box::new({
                            let _guard = rt.enter();
                            #[allow(clippy::redundant_closure_call)]
                            ($peer)(&rt)
                        });
                        super::$scenario(peer, &rt);
                        // The peer's tasks live on `rt`; keep it until now.
                        std::mem::drop(rt);
                    }
                )*
            }
        )*
    };
}

conformance! {
    http => |rt: &Runtime| HttpPeer::start(rt), [ordered, block, drop, persistent_queue, dead_letter];
    tcp => |rt: &Runtime| TcpPeer::start(rt), [ordered, block, drop, persistent_queue];
    udp => |_: &Runtime| UdpPeer::start(), [ordered];
    file => |_: &Runtime| FilePeer::start(), [ordered];
    filesystem => |_: &Runtime| FilesystemPeer::start(), [ordered, block, drop, persistent_queue];
    console => |_: &Runtime| ConsolePeer::start(), [ordered, block, drop, persistent_queue];
    #[cfg(feature = "kafka")]
    kafka => |_: &Runtime| KafkaPeer::start(), [ordered, block, drop, persistent_queue];
    #[cfg(all(feature = "sqs", feature = "kinesis"))]
    sqs => |_: &Runtime| SqsPeer::start(), [ordered, block, drop, persistent_queue];
    #[cfg(all(feature = "sqs", feature = "kinesis"))]
    kinesis => |_: &Runtime| KinesisPeer::start(), [ordered, block, drop, persistent_queue];
    #[cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]
    s3 => |_: &Runtime| S3Peer::start(), [ordered, block, drop, persistent_queue];
    #[cfg(feature = "pubsub")]
    pubsub => |_: &Runtime| PubsubPeer::start(), [ordered, block, drop, persistent_queue];
    #[cfg(feature = "otlp")]
    otlp => |rt: &Runtime| OtlpPeer::start(rt), [ordered, block, drop, persistent_queue];
    #[cfg(feature = "sluice")]
    sluice => |rt: &Runtime| SluicePeer::start(rt), [ordered, block, drop, persistent_queue];
}
