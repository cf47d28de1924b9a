//! `type: udp` — one or more newline-separated events per datagram.
//!
//! UDP cannot push back on a sender. While a `block` destination is full this
//! source stops reading and the kernel drops datagrams once its receive buffer
//! is full; sluice reads the kernel's count (`kernel_drops.rs`) into
//! `sluice_source_rejected_total{reason="kernel"}`. Raise
//! `receive_buffer_bytes` or give UDP-fed destinations `backpressure: drop`
//! (counted per event) or a queue.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::net::UdpSocket;

use super::decoding::Decoding;
use super::framing::{Rejects, split_lines};
use super::{MAX_BATCH, SourceContext, SourceError, SourceType, Started};
use crate::config::units::ByteSize;
use crate::config::{Listen, Validate};

crate::source_config! {
    pub struct UdpConfig {
        pub address: SocketAddr,
        /// Longer lines are skipped and counted (`reason="oversize"`). Default 64 KiB.
        #[serde(default = "default_max_line")]
        pub max_line_bytes: ByteSize,
        /// Ask the kernel for this much receive buffer (SO_RCVBUF).
        #[serde(default)]
        pub receive_buffer_bytes: Option<ByteSize>,
        #[serde(default)]
        pub decoding: Decoding,
    }
}

fn default_max_line() -> ByteSize {
    ByteSize::kib(64)
}

impl Validate for UdpConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        Ok(())
    }
}

pub struct UdpSource;

impl SourceType for UdpSource {
    const NAME: &'static str = "udp";
    type Config = UdpConfig;

    fn listen(c: &UdpConfig) -> Vec<Listen> {
        vec![Listen::Udp(c.address)]
    }

    async fn start(c: &UdpConfig, ctx: SourceContext) -> Result<Started, SourceError> {
        let id = ctx.id.to_string();
        start(c, ctx).await.map_err(|source| SourceError::Bind {
            id,
            address: c.address,
            source,
        })
    }
}

async fn start(cfg: &UdpConfig, ctx: SourceContext) -> std::io::Result<Started> {
    let (socket, local) = listen(cfg.address, cfg.receive_buffer_bytes, &ctx, "udp")?;
    let cfg = cfg.clone();
    Ok(Started::task(
        Some(local),
        ctx.spawner().spawn(run(socket, cfg, ctx.clone())),
    ))
}

/// Bind a datagram source (`kind` names it in the log), and count what the
/// kernel drops for it (shared with the syslog and statsd sources).
pub(crate) fn listen(
    address: SocketAddr,
    receive_buffer: Option<ByteSize>,
    ctx: &SourceContext,
    kind: &str,
) -> std::io::Result<(UdpSocket, SocketAddr)> {
    let (socket, granted) = bind(address, receive_buffer)?;
    let local = socket.local_addr()?;
    tracing::info!(source = %ctx.id, address = %local, mode = "udp", receive_buffer_bytes = granted, "{kind} source listening");
    if let Some(inode) = super::kernel_drops::inode(&socket) {
        ctx.spawner()
            .spawn(super::kernel_drops::watch(inode, ctx.clone()));
    }
    Ok((socket, local))
}

/// Bind a UDP socket with the receive buffer asked for; also returns the
/// receive buffer the kernel granted.
fn bind(
    address: SocketAddr,
    receive_buffer: Option<ByteSize>,
) -> std::io::Result<(UdpSocket, usize)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size.as_usize())?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    // The kernel doubles what was asked (its bookkeeping), capped by
    // net.core.rmem_max: log what the socket really has.
    let granted = socket.recv_buffer_size().unwrap_or(0);
    Ok((UdpSocket::from_std(socket.into())?, granted))
}

/// Datagrams are read into one shared buffer and sliced out, so there is one
/// allocation per `CHUNK` bytes, not one per datagram.
pub(crate) const CHUNK: usize = 1 << 20;

/// Keep room for the largest possible datagram, so none is ever truncated.
pub(crate) fn room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 65_536 {
        buf.reserve(CHUNK);
    }
}

async fn run(socket: UdpSocket, cfg: UdpConfig, ctx: SourceContext) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut events = Vec::new();
    let mut rejects = Rejects::default();
    let max_line = cfg.max_line_bytes.as_usize();
    loop {
        room(&mut buf);
        let first = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = socket.recv_buf_from(&mut buf) => r,
        };
        match first {
            Ok(_) => {
                let d = buf.split().freeze();
                split_lines(&d, max_line, cfg.decoding, &mut events, &mut rejects);
            }
            Err(e) => {
                tracing::debug!(source = %ctx.id, error = %e, "receive failed");
                continue;
            }
        }
        // Take whatever else is already waiting, up to one batch.
        while events.len() < MAX_BATCH {
            room(&mut buf);
            match socket.try_recv_buf_from(&mut buf) {
                Ok(_) => {
                    let d = buf.split().freeze();
                    split_lines(&d, max_line, cfg.decoding, &mut events, &mut rejects);
                }
                Err(_) => break,
            }
        }
        rejects.report(&ctx.metrics);
        if ctx.send_all(&mut events).await.is_err() {
            break;
        }
    }
}
