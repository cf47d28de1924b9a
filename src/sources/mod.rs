//! Sources: where events come in. One file per type; what they share
//! (decoding, line framing, handing batches to the router) lives here.

pub mod backstop;
pub mod decoding;
pub mod file;
pub mod fluent;
pub mod framing;
pub mod generator;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
mod kernel_drops;
pub mod kind;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "sluice")]
pub mod sluice;
pub mod splunk_hec;
pub mod statsd;
pub mod stdin;
pub mod syslog;
pub mod tcp;
pub mod udp;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserializer;
use serde::de::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ComponentKind, Listen, Validate};
use crate::event::Batch;
use crate::metrics::{RejectReason, SourceMetrics};
use crate::router::{RouteError, RouterHandle};
pub use kind::{HasPipeline, SourceType, Started};

/// Largest batch a source hands the router at once.
pub const MAX_BATCH: usize = 1000;

/// The source types this binary has: one line each. Everything below the
/// list is generated from the types' `SourceType` declarations.
macro_rules! registry {
    ($( $(#[$attr:meta])* $variant:ident => $ty:ty ),* $(,)?) => {
        #[derive(Debug, Clone)]
        pub enum SourceConfig {
            $( $(#[$attr])* $variant(<$ty as SourceType>::Config), )*
        }

        /// Every source `type` this binary was built with.
        pub const TYPES: &[&str] = &[ $( $(#[$attr])* <$ty as SourceType>::NAME, )* ];

        impl ComponentKind for SourceConfig {
            const SECTION: &'static str = "sources";
            const NOUN: &'static str = "source";
            const KINDS: &'static [&'static str] = TYPES;

            fn deserialize_kind<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
                $( $(#[$attr])*
                if kind == <$ty as SourceType>::NAME {
                    return Ok(SourceConfig::$variant(Deserialize::deserialize(d)?));
                } )*
                Err(serde::de::Error::custom(format!("unknown source type `{kind}`")))
            }

            fn kind_schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                use crate::config::schema::tagged;
                vec![ $( $(#[$attr])* (
                    <$ty as SourceType>::NAME,
                    tagged::<<$ty as SourceType>::Config>(g, <$ty as SourceType>::NAME),
                ), )* ]
            }
        }

        impl Validate for SourceConfig {
            fn validate(&self) -> Result<(), String> {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(c) => c.validate(), )*
                }
            }
        }

        impl SourceConfig {
            /// Its `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(_) => <$ty as SourceType>::NAME, )*
                }
            }

            /// The source's pre-processing pipeline.
            pub fn pipeline(&self) -> Option<&str> {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(c) => c.pipeline(), )*
                }
            }

            /// The addresses it binds.
            pub fn listen(&self) -> Vec<Listen> {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(c) => <$ty as SourceType>::listen(c), )*
                }
            }

            /// Whether it ends by itself (see `SourceType::is_finite`).
            pub fn is_finite(&self) -> bool {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(c) => <$ty as SourceType>::is_finite(c), )*
                }
            }

            /// See `SourceType::KEEPS_CONNECTIONS`.
            pub fn keeps_connections(&self) -> bool {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(_) => <$ty as SourceType>::KEEPS_CONNECTIONS, )*
                }
            }

            async fn start_typed(&self, ctx: SourceContext) -> Result<Started, SourceError> {
                match self {
                    $( $(#[$attr])* SourceConfig::$variant(c) => <$ty as SourceType>::start(c, ctx).await, )*
                }
            }
        }
    };
}

registry! {
    Tcp => tcp::TcpSource,
    Udp => udp::UdpSource,
    Http => http::HttpSource,
    Generator => generator::GeneratorSource,
    Stdin => stdin::StdinSource,
    #[cfg(feature = "kafka")]
    Kafka => kafka::KafkaSource,
    #[cfg(feature = "otlp")]
    Otlp => otlp::OtlpSource,
    #[cfg(feature = "sluice")]
    Sluice => sluice::SluiceSource,
    Syslog => syslog::SyslogSource,
    Statsd => statsd::StatsdSource,
    SplunkHec => splunk_hec::SplunkHecSource,
    Fluent => fluent::FluentSource,
    File => file::FileSource,
}

/// Why a source that answers requests did not take one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A `block` destination stayed full past `max_wait` (counted `shed`):
    /// the client is told to retry after `retry_after_secs`.
    Shed,
    /// sluice is shutting down.
    Shutdown,
    /// Taken, but a destination refused some of it for good (rejected by
    /// its peer, too large, ...; acknowledgements only): sending it again
    /// changes nothing.
    Failed,
    /// Taken, but some of it was dropped for lack of room (a `drop` lane,
    /// a full persistent queue) or at shutdown (acknowledgements only):
    /// the client must send it again, after `retry_after_secs`.
    Dropped,
}

/// How long a shed client should wait: `max_wait` rounded up, at least 1 s.
pub fn retry_after_secs(max_wait: std::time::Duration) -> u64 {
    max_wait.as_secs_f64().ceil().max(1.0) as u64
}

/// What a running source needs from the topology.
#[derive(Clone)]
pub struct SourceContext {
    pub id: Arc<str>,
    /// Swapped by a reload; each batch is routed by one configuration.
    pub router: RouterHandle,
    pub metrics: SourceMetrics,
    /// Fires when sluice starts shutting down, or a reload removes or
    /// replaces this source: stop taking input.
    pub shutdown: CancellationToken,
    /// Fires when a reload rebinds this source's address with new settings:
    /// a listener stops accepting, but the connections it has go on until
    /// their clients close them (the TCP source).
    pub stop_accepting: CancellationToken,
    /// The process-wide metrics, for reporting a task that panicked.
    pub registry: crate::metrics::Metrics,
    /// `sluice tap --source`: the events this source takes.
    pub tap: Arc<crate::tap::TapPoint>,
    /// The config's `data_dir`, for state a source keeps (file checkpoints).
    pub data_dir: Arc<std::path::Path>,
    /// Whose batches these are (a connection's context names its peer):
    /// destinations keep each sender's order.
    pub sender: crate::event::Sender,
}

/// Spawns a source's tasks inside its tracing span (every log line names
/// the source) and reports one that panics instead of letting it vanish.
pub struct Spawner {
    id: Arc<str>,
    registry: crate::metrics::Metrics,
}

impl Spawner {
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        use tracing::Instrument;
        let span = tracing::info_span!("source", id = %self.id);
        crate::supervise::spawn(task.instrument(span), "source", &self.id, &self.registry)
    }
}

impl SourceContext {
    pub fn spawner(&self) -> Spawner {
        Spawner {
            id: self.id.clone(),
            registry: self.registry.clone(),
        }
    }

    /// This context for the batches of one sender: a connection's peer, a
    /// partition, a file.
    pub fn for_sender(&self, key: impl std::hash::Hash) -> SourceContext {
        SourceContext {
            sender: crate::event::Sender::of(&self.id, key),
            ..self.clone()
        }
    }

    /// The sender of a request from `peer` (one client connection), or
    /// the source's own when it is not known.
    pub fn sender_for(&self, peer: Option<SocketAddr>) -> crate::event::Sender {
        peer.map_or(self.sender, |p| crate::event::Sender::of(&self.id, p))
    }

    /// The sender of an HTTP request (`http_server::Peer`).
    pub fn sender_of_request(&self, ext: &axum::http::Extensions) -> crate::event::Sender {
        self.sender_for(ext.get::<crate::http_server::Peer>().map(|p| p.0))
    }

    /// Route a batch, waiting as long as `block` destinations need. Counts the
    /// events as accepted, or as rejected when sluice is shutting down.
    pub async fn send(&self, batch: Batch) -> Result<(), RouteError> {
        self.send_until(batch, None).await
    }

    /// Like `send`, but give up at `deadline` (counted as `shed`).
    pub async fn send_until(
        &self,
        mut batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<(), RouteError> {
        if !batch.sender.is_known() {
            batch.sender = self.sender;
        }
        let n = batch.events.len() as u64;
        if self.tap.is_active() {
            self.tap.offer(batch.events.iter());
        }
        let router = self.router.current();
        // Decoded and held while it waits for room: visible, not lost.
        let _waiting = Waiting::new(&self.metrics.waiting, n as i64);
        match router
            .route_from(&self.id, batch, deadline, &self.shutdown)
            .await
        {
            Ok(()) => {
                self.metrics.events.inc_by(n);
                Ok(())
            }
            Err(e) => {
                let reason = match e {
                    RouteError::Shed => RejectReason::Shed,
                    RouteError::Shutdown => RejectReason::Shutdown,
                };
                self.metrics.reject(reason, n);
                Err(e)
            }
        }
    }

    /// Route one request's events as one batch (all or nothing), waiting at
    /// most `max_wait` for room; with `acknowledgements`, return only once
    /// every destination delivered them or queued them durably. Shared by
    /// the sources that answer a request (HTTP, OTLP), so each answers a
    /// refusal the same way in its own protocol.
    pub async fn send_request(
        &self,
        events: Vec<crate::event::Event>,
        max_wait: std::time::Duration,
        acknowledgements: bool,
        sender: crate::event::Sender,
    ) -> Result<(), Refused> {
        use crate::event::{Ack, AckStatus};
        let (ack, rx) = if acknowledgements {
            let (a, rx) = Ack::new();
            (Some(a), Some(rx))
        } else {
            (None, None)
        };
        let deadline = Instant::now() + max_wait;
        match self
            .send_until(Batch::with_ack(events, ack).from(sender), Some(deadline))
            .await
        {
            Ok(()) => {}
            Err(RouteError::Shed) => return Err(Refused::Shed),
            Err(RouteError::Shutdown) => return Err(Refused::Shutdown),
        }
        match rx {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(AckStatus::Delivered) => Ok(()),
                Ok(AckStatus::Failed) => Err(Refused::Failed),
                // Shed, abandoned at shutdown, or the handle lost: send again.
                _ => Err(Refused::Dropped),
            },
        }
    }

    /// Route events in batches of at most `MAX_BATCH`.
    pub async fn send_all(&self, events: &mut Vec<crate::event::Event>) -> Result<(), RouteError> {
        while !events.is_empty() {
            let batch = if events.len() > MAX_BATCH {
                let rest = events.split_off(MAX_BATCH);
                std::mem::replace(events, rest)
            } else {
                std::mem::take(events)
            };
            self.send(Batch::new(batch)).await?;
        }
        Ok(())
    }
}

/// Counts a batch in `sluice_source_waiting_events` while it is routed.
struct Waiting<'a> {
    gauge: &'a prometheus_client::metrics::gauge::Gauge,
    n: i64,
}

impl<'a> Waiting<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge, n: i64) -> Self {
        gauge.inc_by(n);
        Waiting { gauge, n }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gauge.dec_by(self.n);
    }
}

/// Extra fields a source adds to its `/api/v1/status` entry.
pub type Detail = Arc<dyn Fn() -> Vec<(&'static str, serde_json::Value)> + Send + Sync>;

/// A started source.
pub struct RunningSource {
    pub id: String,
    pub kind: &'static str,
    /// The address it listens on, once bound (port 0 resolved).
    pub local_addr: Option<SocketAddr>,
    pub task: JoinHandle<()>,
    /// Work left after the source stops taking input, awaited once the
    /// destinations have drained (a Kafka source commits the offsets of
    /// what they delivered while draining).
    pub finishing: Option<JoinHandle<()>>,
    pub detail: Option<Detail>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{id}`: {message}")]
    Setup { id: String, message: String },
    #[error("source `{id}`: cannot listen on {address}: {source}")]
    Bind {
        id: String,
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Default `max_connections` of every stream source (Cribl's default):
/// with the open-file limit raised at start, a flood of connections meets
/// this before it meets the process's limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

pub(crate) fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// gRPC clients keep their channel open between exports.
#[cfg(any(feature = "otlp", feature = "sluice"))]
pub(crate) fn default_grpc_idle_timeout() -> crate::config::units::Dur {
    crate::config::units::Dur::secs(600)
}

/// An HTTP body's deadline once its headers are in: 10 MiB in 30 s asks
/// for 350 KB/s, which any honest sender exceeds.
pub(crate) fn default_body_timeout() -> crate::config::units::Dur {
    crate::config::units::Dur::secs(30)
}

/// Most events one request may carry (an HTTP body, a forwarded batch):
/// 10 MiB of 100-byte events is 100,000. A few kilobytes of gzip can
/// decompress to millions of `{}` lines; each would cost an event's memory.
pub(crate) fn default_max_request_events() -> usize {
    100_000
}

/// How a listener bounds its connections.
pub(crate) struct Limits {
    pub max_connections: usize,
    /// Zero: never closed for idleness.
    pub idle_timeout: std::time::Duration,
}

/// Bind a source's listener (TLS if configured, counting failed handshakes
/// as this source's `tls` rejections) and start accepting. `alpn`: what
/// the server speaks over TLS.
pub(crate) async fn listen(
    ctx: &SourceContext,
    address: SocketAddr,
    tls: Option<&crate::tls::ServerTlsConfig>,
    alpn: &[&'static [u8]],
    limits: Limits,
) -> Result<(SocketAddr, crate::listener::Incoming), SourceError> {
    let tls = match tls {
        Some(t) => {
            Some(
                crate::tls::Acceptor::new(t, alpn).map_err(|message| SourceError::Setup {
                    id: ctx.id.to_string(),
                    message,
                })?,
            )
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| SourceError::Bind {
            id: ctx.id.to_string(),
            address,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(address);
    // `stop_accepting` also fires at shutdown: the address is let go
    // either way.
    let incoming = crate::listener::Incoming::start(
        listener,
        crate::listener::Accepting {
            tls,
            rejects: Some(ctx.metrics.clone()),
            max_connections: Some(limits.max_connections),
            idle_timeout: (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout),
            stop: ctx.stop_accepting.clone(),
            name: ctx.id.clone(),
        },
    );
    Ok((local, incoming))
}

/// Run `each` on every connection `incoming` accepts, each in its own task
/// (inside the listener's span); return once the listener stopped and every
/// connection ended. A reload rebinding the address stops only the
/// listener: the connections carry on until their clients close them or
/// sluice shuts down.
pub(crate) async fn serve_connections<F, Fut>(mut incoming: crate::listener::Incoming, each: F)
where
    F: Fn(crate::listener::Conn, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    let connections = tokio_util::task::TaskTracker::new();
    while let Some((conn, peer)) = incoming.next().await {
        connections.spawn(each(conn, peer).instrument(tracing::Span::current()));
    }
    connections.close();
    connections.wait().await;
}

/// Bind (so errors surface before sluice reports ready) and start a source.
pub async fn start(
    config: &SourceConfig,
    ctx: SourceContext,
) -> Result<RunningSource, SourceError> {
    let id = ctx.id.to_string();
    let s = config.start_typed(ctx).await?;
    Ok(RunningSource {
        id,
        kind: config.kind(),
        local_addr: s.local_addr,
        task: s.task,
        finishing: s.finishing,
        detail: s.detail,
    })
}
