//! `type: tcp` — newline-delimited events over TCP, many connections at once.
//!
//! Backpressure: each connection reads, frames and routes in one task. While
//! the router waits for room in a `block` destination, the connection simply
//! does not read; the kernel's receive buffer fills, the TCP window closes and
//! the sender's writes stall. Memory stays bounded by one read buffer per
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::SourceContext;
use super::decoding::Decoding;
use super::framing::{Framing, pump};
use crate::config::Validate;
use crate::config::units::ByteSize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: SocketAddr,
    /// `newline` (default) or `octet_counting` (RFC 6587).
    #[serde(default)]
    pub framing: Framing,
    /// Longer events are skipped and counted (`reason="oversize"`). Default 1 MiB.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Stop accepting beyond this many open connections. Default: no limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub decoding: Decoding,
}

pub(crate) fn default_max_line() -> ByteSize {
    ByteSize::mib(1)
}

impl Validate for TcpConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        if self.max_connections == Some(0) {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }
}

pub async fn start(
    cfg: &TcpConfig,
    ctx: SourceContext,
) -> std::io::Result<(Option<SocketAddr>, JoinHandle<()>)> {
    let listener = TcpListener::bind(cfg.address).await?;
    let local = listener.local_addr()?;
    tracing::info!(source = %ctx.id, address = %local, "tcp source listening");
    let cfg = cfg.clone();
    let spawner = ctx.spawner();
    Ok((Some(local), spawner.spawn(accept_loop(listener, cfg, ctx))))
}

async fn accept_loop(listener: TcpListener, cfg: TcpConfig, ctx: SourceContext) {
    let connections = TaskTracker::new();
    let limit = cfg.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    loop {
        let permit = match &limit {
            Some(l) => tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = ctx.stop_accepting.cancelled() => break,
                p = l.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
            },
            None => None,
        };
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = ctx.stop_accepting.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                let cfg = cfg.clone();
                connections.spawn(
                    async move {
                        connection(stream, peer, &cfg, &ctx).await;
                        drop(permit);
                    }
                    .instrument(tracing::Span::current()),
                );
            }
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::warn!(source = %ctx.id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The address is free for a reload's new listener; the connections
    // carry on until their clients close them or sluice shuts down.
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn connection(stream: TcpStream, peer: SocketAddr, cfg: &TcpConfig, ctx: &SourceContext) {
    tracing::debug!(source = %ctx.id, %peer, "connection opened");
    let error = pump(
        stream,
        cfg.framing,
        cfg.max_line_bytes.as_usize(),
        cfg.decoding,
        ctx,
    )
    .await;
    match error {
        Some(e) => tracing::debug!(source = %ctx.id, %peer, error = %e, "closing the connection"),
        None => tracing::debug!(source = %ctx.id, %peer, "connection closed"),
    }
}
