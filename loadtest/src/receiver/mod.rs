//! Receivers that stand in for destinations: HTTP, TCP, UDP and OTLP servers that
//! record every event they take (by sequence id, or only counted in
//! throughput runs) and inject the faults of their [`Schedule`].

pub mod aws;
pub mod http;
pub mod kafka;
pub mod otlp;
pub mod tcp;
pub mod udp;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::fault::Schedule;
use crate::seq::Tracker;

const TICK: std::time::Duration = std::time::Duration::from_millis(50);

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

impl Sink {
    /// Count `n` events of `bytes` taken without lines to read (OTLP).
    pub fn count(&self, n: u64, bytes: u64) {
        if n == 0 {
            return;
        }
        self.tracker.count_received(n, bytes);
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

/// Listen on `addr` and hand every connection to `serve` (with a signal
/// that fires when a `Down` window begins). While one is in force there is
/// no listener and no connection; afterwards the same port listens again.
async fn listen<F, Fut>(
    kind: &'static str,
    addr: SocketAddr,
    schedule: Schedule,
    sink: Sink,
    serve: F,
) -> anyhow::Result<Handle>
where
    F: Fn(TcpStream, Schedule, Sink, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = bind_tcp(addr)
        .await
        .with_context(|| format!("{kind} receiver: bind {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let stats = sink.stats.clone();
    tokio::spawn(supervise(
        kind, listener, addr, schedule, sink, stop_rx, serve,
    ));
    Ok(Handle { addr, stats, stop })
}

async fn supervise<F, Fut>(
    kind: &'static str,
    first: TcpListener,
    addr: SocketAddr,
    schedule: Schedule,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, Schedule, Sink, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut listener = Some(first);
    loop {
        if *stop.borrow() {
            return;
        }
        if schedule.is_down() {
            listener = None;
            tokio::time::sleep(TICK).await;
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind_tcp(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{kind} receiver {addr}: cannot listen again: {e}");
                    return;
                }
            },
        };
        // One generation per listener: `Down` ends every connection of it.
        let (down, down_rx) = watch::channel(false);
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        sink.stats.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve(stream, schedule.clone(), sink.clone(), down_rx.clone()));
                    }
                }
                _ = tokio::time::sleep(TICK) => {
                    if schedule.is_down() { break; }
                }
                _ = stop.changed() => { break; }
            }
        }
        let _ = down.send(true);
        drop(l);
    }
}

/// Bind a listener on `addr`, retrying briefly: a port just released by a
/// `Down` window can take a moment to be free again.
async fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
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
/// `scripts/peers start NAME DIR PORT ARGS...` (output in `DIR/NAME.log`),
/// once it listens on PORT: a real peer for a receiver (moto, Tansu).
pub async fn peer(
    name: &str,
    dir: &std::path::Path,
    port: u16,
    args: &[String],
) -> anyhow::Result<crate::process::Process> {
    const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/peers");
    std::fs::create_dir_all(dir)?;
    let mut argv = vec![
        "start".to_string(),
        name.to_string(),
        dir.display().to_string(),
        port.to_string(),
    ];
    argv.extend_from_slice(args);
    let mut p = crate::process::Process::spawn(
        name,
        std::path::Path::new(PEERS),
        &argv,
        &dir.join(format!("{name}.log")),
    )?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    crate::process::wait_listening(addr, &mut p, std::time::Duration::from_secs(60))
        .await
        .with_context(|| format!("{name} (is it installed? scripts/peers install)"))?;
    Ok(p)
}

pub fn free_port() -> std::io::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}
