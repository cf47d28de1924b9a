//! A newline-framed TCP receiver with faults.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Handle, Sink};
use crate::fault::{Fault, Schedule};

const TICK: Duration = Duration::from_millis(50);

pub async fn spawn(addr: SocketAddr, schedule: Schedule, sink: Sink) -> anyhow::Result<Handle> {
    super::listen("tcp", addr, schedule, sink, connection).await
}

async fn connection(
    mut stream: TcpStream,
    schedule: Schedule,
    sink: Sink,
    mut down: watch::Receiver<bool>,
) {
    let born_after = schedule.closes_started();
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    loop {
        if *down.borrow() || schedule.closes_started() > born_after {
            return;
        }
        match schedule.active() {
            Some(Fault::Stall) => {
                tokio::time::sleep(TICK).await;
                continue;
            }
            Some(Fault::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            _ => {}
        }
        if filled == buf.len() {
            // A line longer than the buffer: grow rather than cut it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = tokio::select! {
            r = stream.read(&mut buf[filled..]) => match r {
                // The peer closed. A line without its newline was cut off
                // mid-write (the sender gave up on this connection and
                // sent the batch elsewhere): it is not an event.
                Ok(0) | Err(_) => {
                    if filled > 0 {
                        sink.stats.torn.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Ok(n) => n,
            },
            _ = down.changed() => return,
            _ = tokio::time::sleep(TICK) => continue,
        };
        filled += n;
        let Some(end) = memchr::memrchr(b'\n', &buf[..filled]) else {
            continue;
        };
        sink.take(&buf[..=end]);
        buf.copy_within(end + 1..filled, 0);
        filled -= end + 1;
    }
}
