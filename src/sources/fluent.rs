//! `type: fluent` — the Fluent forward protocol v1, as Fluentd, Fluent Bit
//! and the fluent-logger libraries send it over TCP (TLS optional): Message,
//! Forward, PackedForward and CompressedPackedForward modes
//! (`fluent/forward.rs`), EventTime, the `chunk` option answered with
//! `{"ack": chunk}` only once the message's events were delivered or
//! durably queued, and the `shared_key` handshake (HELO, PING, PONG).
//!
//! Backpressure: one connection's messages are read one after another, and
//! the next is not read while the last waits for room (or, with `chunk`,
//! for delivery), so the sender's writes stall. A message that is not
//! MessagePack cannot be resynchronised: counted malformed, the connection
//! closed. A message over `max_message_bytes` or `max_events`: counted
//! oversize, not acknowledged, the connection closed (the sender retries
//! after its ack timeout, or must split).

mod forward;
mod handshake;
mod msgpack;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::forward::{Limits, Refusal};
use self::msgpack::Scanner;
use super::writer::EventWriter;
use super::{SourceContext, SourceError, SourceType, Started};
use crate::config::units::{ByteSize, Dur};
use crate::config::{Listen, Validate};
use crate::event::{Ack, AckStatus, Batch};
use crate::listener::Conn;
use crate::metrics::RejectReason;
use crate::tls::ServerTlsConfig;

/// Nesting a message may have: the message, its entries, a record, and
/// 28 levels inside the record.
const MAX_DEPTH: usize = 32;

crate::source_config! {
    pub struct FluentConfig {
        pub address: SocketAddr,
        /// With it, clients must pass the handshake (`shared_key` in
        /// Fluentd's `<security>`, Fluent Bit's `Shared_Key`).
        #[serde(default)]
        pub shared_key: Option<String>,
        /// The name the handshake answers with. Default `sluice`.
        #[serde(default = "default_hostname")]
        pub self_hostname: String,
        /// Largest message accepted (a chunk). Default 16 MiB.
        #[serde(default = "default_max_message")]
        pub max_message_bytes: ByteSize,
        /// Most events one message may carry. Default 100,000.
        #[serde(default = "super::default_max_request_events")]
        pub max_events: usize,
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        /// Close a connection that sent nothing for this long (`0s`: never).
        /// Default 10m.
        #[serde(default = "default_idle_timeout")]
        pub idle_timeout: Dur,
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
    }
}

fn default_hostname() -> String {
    "sluice".into()
}

fn default_max_message() -> ByteSize {
    ByteSize::mib(16)
}

fn default_idle_timeout() -> Dur {
    Dur::secs(600)
}

impl Validate for FluentConfig {
    fn validate(&self) -> Result<(), String> {
        if self.shared_key.as_deref().is_some_and(str::is_empty) {
            return Err("shared_key must not be empty".into());
        }
        if self.max_message_bytes.0 == 0 || self.max_events == 0 || self.max_connections == 0 {
            return Err(
                "max_message_bytes, max_events and max_connections must be at least 1".into(),
            );
        }
        self.tls.as_ref().map_or(Ok(()), |t| t.validate())
    }
}

pub struct FluentSource;

impl SourceType for FluentSource {
    const NAME: &'static str = "fluent";
    const KEEPS_CONNECTIONS: bool = true;
    type Config = FluentConfig;

    fn listen(c: &FluentConfig) -> Vec<Listen> {
        vec![Listen::Tcp(c.address)]
    }

    async fn start(cfg: &FluentConfig, ctx: SourceContext) -> Result<Started, SourceError> {
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
        tracing::info!(source = %ctx.id, address = %local, tls = cfg.tls.is_some(), handshake = cfg.shared_key.is_some(), "fluent source listening");
        let spawner = ctx.spawner();
        Ok(Started::task(
            Some(local),
            spawner.spawn(super::serve_connections(incoming, {
                let cfg = cfg.clone();
                move |conn, peer| {
                    let (ctx, cfg) = (ctx.for_sender(peer), cfg.clone());
                    async move {
                        if let Err(why) = connection(conn, &cfg, &ctx).await {
                            tracing::debug!(source = %ctx.id, %peer, why, "closing the connection");
                        }
                    }
                }
            })),
        ))
    }
}

/// Reads messages until the client closes; `Err`: why it was closed here.
async fn connection(conn: Conn, cfg: &FluentConfig, ctx: &SourceContext) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let max_message = cfg.max_message_bytes.as_usize();
    if let Some(key) = &cfg.shared_key {
        let ok = handshake::serve(
            &mut rd,
            &mut wr,
            &mut buf,
            key,
            &cfg.self_hostname,
            &ctx.shutdown,
        )
        .await?;
        if !ok {
            ctx.metrics.reject(RejectReason::Unauthorized, 1);
            return Err("the handshake failed (wrong shared_key)".into());
        }
    }
    let limits = Limits {
        max_events: cfg.max_events,
        max_bytes: max_message.saturating_mul(8),
        max_depth: MAX_DEPTH,
    };
    let mut scanner = Scanner::default();
    let mut writer = EventWriter::new();
    loop {
        // Every complete message in the buffer, in order.
        loop {
            let n = match scanner.scan(&buf, MAX_DEPTH) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(b) => {
                    ctx.metrics.reject(RejectReason::Malformed, 1);
                    return Err(format!("not a forward-protocol message: {}", b.0));
                }
            };
            let msg = buf.split_to(n).freeze();
            let mut events = Vec::new();
            match forward::events(&msg, &limits, &mut events, &mut writer) {
                Ok(options) => deliver(events, options.chunk, &mut wr, ctx).await?,
                Err(Refusal::Malformed(why)) => {
                    ctx.metrics.reject(RejectReason::Malformed, 1);
                    tracing::debug!(source = %ctx.id, why, "a message refused");
                }
                Err(Refusal::TooLarge) => {
                    ctx.metrics.reject(RejectReason::Oversize, 1);
                    return Err("a message with more than max_events events".into());
                }
            }
        }
        if scanner.seen() > max_message || buf.len() > max_message {
            ctx.metrics.reject(RejectReason::Oversize, 1);
            return Err(format!("a message over max_message_bytes ({max_message})"));
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = rd.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) if buf.is_empty() => return Ok(()),
            Ok(0) => {
                ctx.metrics.reject(RejectReason::Malformed, 1);
                return Err("the connection closed inside a message".into());
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Route a message's events; with a `chunk`, wait for their delivery and
/// answer `{"ack": chunk}` — only then.
async fn deliver(
    mut events: Vec<crate::event::Event>,
    chunk: Option<Vec<u8>>,
    wr: &mut (impl AsyncWriteExt + Unpin),
    ctx: &SourceContext,
) -> Result<(), String> {
    let Some(chunk) = chunk else {
        return ctx
            .send_all(&mut events)
            .await
            .map_err(|_| "shutting down".to_string());
    };
    let (ack, rx) = Ack::new();
    ctx.send(Batch::with_ack(events, Some(ack)))
        .await
        .map_err(|_| "shutting down".to_string())?;
    match rx.await {
        // Written to a persistent queue counts: delivered by the next run.
        Ok(AckStatus::Delivered | AckStatus::Abandoned) => {
            wr.write_all(&handshake::ack_message(&chunk))
                .await
                .map_err(|e| format!("writing the ack failed: {e}"))?;
            wr.flush()
                .await
                .map_err(|e| format!("writing the ack failed: {e}"))
        }
        // No ack: the client sends the chunk again after its timeout.
        _ => Ok(()),
    }
}

/// `crate::fuzz::fluent`: see there.
pub fn fuzz(data: &[u8]) {
    let limits = Limits {
        max_events: 1000,
        max_bytes: 1 << 20,
        max_depth: MAX_DEPTH,
    };
    let objects = |step: usize| {
        let (mut scanner, mut at, mut end, mut found) = (Scanner::default(), 0, 0, Vec::new());
        while end < data.len() {
            end = (end + step.max(1)).min(data.len());
            loop {
                match scanner.scan(&data[at..end], MAX_DEPTH) {
                    Ok(Some(n)) => {
                        found.push(at..at + n);
                        at += n;
                    }
                    Ok(None) => break,
                    Err(_) => return found,
                }
            }
        }
        found
    };
    let whole = objects(data.len());
    assert_eq!(whole, objects(7), "objects depend on how reads were split");
    let mut w = EventWriter::new();
    for range in whole {
        let mut events = Vec::new();
        if forward::events(&data[range], &limits, &mut events, &mut w).is_ok() {
            for e in events {
                let v: serde_json::Value =
                    serde_json::from_slice(&e.raw).expect("a fluent event is JSON");
                assert!(
                    v.is_object() && v.get("tag").is_some() && v.get("timestamp").is_some(),
                    "{v}"
                );
            }
        }
    }
}

/// How long a client has to answer HELO.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
