//! Receivers that stand in for destinations: HTTP, TCP and UDP servers that
//! record every event they take (by sequence id, or only counted in
//! throughput runs) and inject the faults of their [`Schedule`].

pub mod http;
pub mod tcp;
pub mod udp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::seq::Tracker;

/// Where a receiver puts what it takes.
#[derive(Clone)]
pub struct Sink {
    pub tracker: Arc<Tracker>,
    /// Read every event's id (chaos runs) or only count lines (throughput).
    pub track_ids: bool,
    pub stats: Arc<Stats>,
}

/// What one receiver saw.
#[derive(Default)]
pub struct Stats {
    pub events: AtomicU64,
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub in_flight_peak: AtomicU64,
    /// Partial lines left when a TCP connection ended.
    pub torn: AtomicU64,
    /// Answers by HTTP status.
    pub answers: Mutex<BTreeMap<u16, u64>>,
    /// When the last event arrived, for throughput.
    pub last_event: Mutex<Option<Instant>>,
}

impl Stats {
    pub fn answered(&self, status: u16) {
        if let Ok(mut a) = self.answers.lock() {
            *a.entry(status).or_default() += 1;
        }
    }

    pub fn answers(&self) -> BTreeMap<u16, u64> {
        self.answers.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    pub fn last_event(&self) -> Option<Instant> {
        self.last_event.lock().ok().and_then(|l| *l)
    }
}

impl Sink {
    pub fn new(tracker: Arc<Tracker>, track_ids: bool) -> Self {
        Sink {
            tracker,
            track_ids,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Take a run of complete, newline-separated events.
    pub fn take(&self, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        let n = if self.track_ids {
            self.tracker.record_lines(lines)
        } else {
            let mut n = memchr::memchr_iter(b'\n', lines).count() as u64;
            if lines.last() != Some(&b'\n') {
                n += 1;
            }
            self.tracker.count_received(n, lines.len() as u64);
            n
        };
        self.stats.events.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut l) = self.stats.last_event.lock() {
            *l = Some(Instant::now());
        }
    }
}

/// A running receiver; dropping it stops it.
pub struct Handle {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    stop: watch::Sender<bool>,
}

impl Handle {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bind a listener on `addr`, retrying briefly: a port just released by a
/// `Down` window can take a moment to be free again.
async fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A free loopback port (bound then released; good enough on a test box).
pub fn free_port() -> std::io::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}
