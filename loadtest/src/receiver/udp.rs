//! A UDP receiver: one or more newline-separated events per datagram.
//! `Down` closes the socket (the sender's kernel gets ICMP port unreachable).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{Handle, Sink};
use crate::fault::{Fault, Schedule};

const TICK: Duration = Duration::from_millis(50);

pub async fn spawn(addr: SocketAddr, schedule: Schedule, sink: Sink) -> anyhow::Result<Handle> {
    let socket = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("udp receiver: bind {addr}"))?;
    let addr = socket.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let stats = sink.stats.clone();
    tokio::spawn(run(socket, addr, schedule, sink, stop_rx));
    Ok(Handle { addr, stats, stop })
}

async fn run(
    first: UdpSocket,
    addr: SocketAddr,
    schedule: Schedule,
    sink: Sink,
    stop: watch::Receiver<bool>,
) {
    let mut socket = Some(first);
    let mut buf = vec![0u8; 65_536];
    while !*stop.borrow() {
        match schedule.active() {
            Some(Fault::Down) => {
                socket = None;
                tokio::time::sleep(TICK).await;
                continue;
            }
            Some(Fault::Stall) => {
                tokio::time::sleep(TICK).await;
                continue;
            }
            Some(Fault::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            _ => {}
        }
        if socket.is_none() {
            socket = UdpSocket::bind(addr).await.ok();
        }
        let Some(s) = &socket else {
            tokio::time::sleep(TICK).await;
            continue;
        };
        tokio::select! {
            r = s.recv(&mut buf) => {
                if let Ok(n) = r {
                    sink.take(&buf[..n]);
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}
