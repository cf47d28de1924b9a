//! A newline-framed TCP receiver with faults.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Handle, Sink, bind_tcp};
use crate::fault::{Fault, Schedule};

const TICK: Duration = Duration::from_millis(50);

pub async fn spawn(addr: SocketAddr, schedule: Schedule, sink: Sink) -> anyhow::Result<Handle> {
    let listener = bind_tcp(addr)
        .await
        .with_context(|| format!("tcp receiver: bind {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let stats = sink.stats.clone();
    tokio::spawn(supervise(listener, addr, schedule, sink, stop_rx));
    Ok(Handle { addr, stats, stop })
}

/// Accept while up; while a `Down` window is in force, hold no listener and
/// no connection.
async fn supervise(
    first: tokio::net::TcpListener,
    addr: SocketAddr,
    schedule: Schedule,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
) {
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
                    eprintln!("tcp receiver {addr}: cannot listen again: {e}");
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
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(stream, schedule.clone(), sink.clone(), down_rx.clone()));
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

async fn connection(
    mut stream: TcpStream,
    schedule: Schedule,
    sink: Sink,
    mut down: watch::Receiver<bool>,
) {
    let born_after = schedule.closes_started();
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
