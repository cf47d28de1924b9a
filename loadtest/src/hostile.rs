//! Hostile clients, run beside the honest generator against an HTTP source
//! (the `hostile-clients` scenario): gzip bombs, slowloris senders, bodies
//! that never finish (a lying `Content-Length`) and connections that send
//! nothing. Each records how sluice answered and how long it took to close
//! them, for the scenario's checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How many of each attacker run at once.
#[derive(Debug, Clone, Copy)]
pub struct Attackers {
    /// A gzip bomb every this often.
    pub bomb_every: Duration,
    pub slowloris: usize,
    pub lying: usize,
    pub idle: usize,
}

/// What the attackers saw.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub bombs_sent: u64,
    /// Refused whole: `413`.
    pub bombs_refused: u64,
    /// Bombs answered otherwise, or not at all.
    pub bombs_other: u64,
    /// The slowest answer to a bomb, in seconds.
    pub bomb_slowest_s: f64,
    pub slowloris_opened: u64,
    /// Closed by sluice while still sending its headers.
    pub slowloris_closed: u64,
    /// The longest a slowloris connection stayed open, in seconds.
    pub slowloris_longest_s: f64,
    pub lying_sent: u64,
    /// Answered `408` (body not received in time).
    pub lying_timed_out: u64,
    pub lying_longest_s: f64,
    pub idle_opened: u64,
    pub idle_closed: u64,
    pub idle_longest_s: f64,
}

#[derive(Default)]
struct Tally {
    bombs_sent: AtomicU64,
    bombs_refused: AtomicU64,
    bombs_other: AtomicU64,
    bomb_slowest_ms: AtomicU64,
    slowloris_opened: AtomicU64,
    slowloris_closed: AtomicU64,
    slowloris_longest_ms: AtomicU64,
    lying_sent: AtomicU64,
    lying_timed_out: AtomicU64,
    lying_longest_ms: AtomicU64,
    idle_opened: AtomicU64,
    idle_closed: AtomicU64,
    idle_longest_ms: AtomicU64,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn longest(c: &AtomicU64, since: Instant) {
    c.fetch_max(since.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// Attack `target` until `duration` has passed; the summary once every
/// attacker has stopped.
pub fn start(target: SocketAddr, duration: Duration, a: Attackers) -> JoinHandle<Summary> {
    tokio::spawn(async move {
        let tally = Arc::new(Tally::default());
        let until = Instant::now() + duration;
        let bomb = Arc::new(gzip_bomb());
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(bombs(
            target,
            until,
            a.bomb_every,
            bomb,
            tally.clone(),
        )));
        for _ in 0..a.slowloris {
            tasks.push(tokio::spawn(slowloris(target, until, tally.clone())));
        }
        for _ in 0..a.lying {
            tasks.push(tokio::spawn(lying(target, until, tally.clone())));
        }
        for _ in 0..a.idle {
            tasks.push(tokio::spawn(idle(target, until, tally.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1000.0;
        Summary {
            bombs_sent: g(&tally.bombs_sent),
            bombs_refused: g(&tally.bombs_refused),
            bombs_other: g(&tally.bombs_other),
            bomb_slowest_s: s(&tally.bomb_slowest_ms),
            slowloris_opened: g(&tally.slowloris_opened),
            slowloris_closed: g(&tally.slowloris_closed),
            slowloris_longest_s: s(&tally.slowloris_longest_ms),
            lying_sent: g(&tally.lying_sent),
            lying_timed_out: g(&tally.lying_timed_out),
            lying_longest_s: s(&tally.lying_longest_ms),
            idle_opened: g(&tally.idle_opened),
            idle_closed: g(&tally.idle_closed),
            idle_longest_s: s(&tally.idle_longest_ms),
        }
    })
}

/// 10 MiB of `{}` lines (3.5 million events), gzipped to about 10 KB.
fn gzip_bomb() -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = "{}\n".repeat(64 * 1024);
    for _ in 0..(10 << 20) / chunk.len() {
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(chunk.as_bytes());
    }
    gz.finish().unwrap_or_default()
}

/// The status code of an HTTP answer read to its end (or to `deadline`).
async fn status_of(s: &mut TcpStream, deadline: Duration) -> Option<u16> {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(deadline, s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|c| c.parse().ok())
}

async fn bombs(
    target: SocketAddr,
    until: Instant,
    every: Duration,
    bomb: Arc<Vec<u8>>,
    tally: Arc<Tally>,
) {
    while Instant::now() < until {
        let began = Instant::now();
        add(&tally.bombs_sent);
        let answer = async {
            let mut s = TcpStream::connect(target).await.ok()?;
            let head = format!(
                "POST / HTTP/1.1\r\nHost: sluice\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bomb.len()
            );
            s.write_all(head.as_bytes()).await.ok()?;
            s.write_all(&bomb).await.ok()?;
            status_of(&mut s, Duration::from_secs(60)).await
        }
        .await;
        if answer == Some(413) {
            add(&tally.bombs_refused);
        } else {
            add(&tally.bombs_other);
        }
        longest(&tally.bomb_slowest_ms, began);
        tokio::time::sleep(every.saturating_sub(began.elapsed())).await;
    }
}

/// Whether sluice closed `s` (a read saw the end, or an error) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a `408`) before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Headers, one byte a second, never finished.
async fn slowloris(target: SocketAddr, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let Ok(mut s) = TcpStream::connect(target).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opened = Instant::now();
        add(&tally.slowloris_opened);
        let mut closed = s
            .write_all(b"POST / HTTP/1.1\r\nHost: sluice\r\nX-Slow: ")
            .await
            .is_err();
        while !closed && Instant::now() < until {
            closed = closed_within(&mut s, Duration::from_secs(1)).await
                || s.write_all(b"a").await.is_err();
        }
        if closed {
            add(&tally.slowloris_closed);
            longest(&tally.slowloris_longest_ms, opened);
        }
    }
}

/// `Content-Length: 1000000`, ten bytes of body, then nothing.
async fn lying(target: SocketAddr, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let Ok(mut s) = TcpStream::connect(target).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opened = Instant::now();
        add(&tally.lying_sent);
        let head =
            "POST / HTTP/1.1\r\nHost: sluice\r\nContent-Length: 1000000\r\n\r\n{\"a\":1}\n{\"";
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let left = until.saturating_duration_since(Instant::now());
        if let Some(code) = status_of(&mut s, left).await {
            if code == 408 {
                add(&tally.lying_timed_out);
            }
            longest(&tally.lying_longest_ms, opened);
        }
    }
}

/// A connection that sends nothing at all.
async fn idle(target: SocketAddr, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let Ok(mut s) = TcpStream::connect(target).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opened = Instant::now();
        add(&tally.idle_opened);
        let left = until.saturating_duration_since(Instant::now());
        if closed_within(&mut s, left).await {
            add(&tally.idle_closed);
            longest(&tally.idle_longest_ms, opened);
        }
    }
}
