//! `type: tcp` — newline-delimited events over TCP, many connections at once.
//!
//! Backpressure: each connection reads, frames and routes in one task. While
//! the router waits for room in a `block` destination, the connection simply
//! does not read; the kernel's receive buffer fills, the TCP window closes and
//! the sender's writes stall. Memory stays bounded by one read buffer per
//! connection.

use std::net::SocketAddr;

use super::decoding::Decoding;
use super::framing::{Framing, pump};
use super::{SourceContext, SourceError, SourceType, Started};
use crate::config::units::{ByteSize, Dur};
use crate::config::{Listen, Validate};
use crate::listener::Conn;
use crate::tls::ServerTlsConfig;

crate::source_config! {
    pub struct TcpConfig {
        pub address: SocketAddr,
        /// `newline` (default) or `octet_counting` (RFC 6587).
        #[serde(default)]
        pub framing: Framing,
        /// Longer events are skipped and counted (`reason="oversize"`). Default 1 MiB.
        #[serde(default = "default_max_line")]
        pub max_line_bytes: ByteSize,
        /// Stop accepting beyond this many open connections. Default 1000.
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        /// Close a connection that sent nothing for this long (`0s`: never).
        /// Default 10m.
        #[serde(default = "default_idle_timeout")]
        pub idle_timeout: Dur,
        #[serde(default)]
        pub decoding: Decoding,
        /// Serve TLS (and with `client_ca_file`, require client certificates).
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
    }
}

fn default_idle_timeout() -> Dur {
    Dur::secs(600)
}

pub(crate) fn default_max_line() -> ByteSize {
    ByteSize::mib(1)
}

impl Validate for TcpConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if let Some(t) = &self.tls {
            t.validate()?;
        }
        Ok(())
    }
}

pub struct TcpSource;

impl SourceType for TcpSource {
    const NAME: &'static str = "tcp";
    const KEEPS_CONNECTIONS: bool = true;
    type Config = TcpConfig;

    fn listen(c: &TcpConfig) -> Vec<Listen> {
        vec![Listen::Tcp(c.address)]
    }

    async fn start(c: &TcpConfig, ctx: SourceContext) -> Result<Started, SourceError> {
        start(c, ctx).await
    }
}

async fn start(cfg: &TcpConfig, ctx: SourceContext) -> Result<Started, SourceError> {
    let (local, incoming) = super::listen(
        &ctx,
        cfg.address,
        cfg.tls.as_ref(),
        &[],
        super::Limits {
            max_connections: cfg.max_connections,
            idle_timeout: cfg.idle_timeout.get(),
        },
    )
    .await?;
    tracing::info!(source = %ctx.id, address = %local, tls = cfg.tls.is_some(), "tcp source listening");
    let cfg = cfg.clone();
    let spawner = ctx.spawner();
    Ok(Started::task(
        Some(local),
        spawner.spawn(super::serve_connections(incoming, move |conn, peer| {
            let (cfg, ctx) = (cfg.clone(), ctx.for_sender(peer));
            async move { connection(conn, peer, &cfg, &ctx).await }
        })),
    ))
}

async fn connection(stream: Conn, peer: SocketAddr, cfg: &TcpConfig, ctx: &SourceContext) {
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
