//! `type: tcp` — events over TCP (optionally TLS) to one or more receivers,
//! load-balanced by weight: syslog collectors, Graphite carbon, Splunk-style
//! raw TCP inputs.
//!
//! This file holds connection handling and framing only; load balancing,
//! endpoint health, backoff and accounting are the driver's.
//!
//! - Framing: `newline` (one event per line) or `octet_counting` (RFC 6587:
//!   `LENGTH SP EVENT`, so events may contain newlines).
//! - Connections are pooled per endpoint. A pooled connection is checked
//!   without blocking before each write, so a receiver that has closed it is
//!   noticed before data goes into a dead socket. A new connection must stay
//!   open for a moment after connecting: a load balancer with no backends
//!   accepts and closes at once, and that is a failing endpoint, not a
//!   delivery.
//! - A connection failure, a closed connection or a write that does not
//!   finish within `write_timeout` fails the endpoint: it is marked down, the
//!   batch moves to the next healthy endpoint, and the driver probes it by
//!   connecting again (2 s doubling to 60 s).
//! - Host names are resolved again every `dns_refresh`; each address is its
//!   own endpoint.
//!
//! TCP has no application-level acknowledgement: "delivered" means the
//! kernel accepted the bytes. What a receiver had not read when it died is
//! lost with it (docs/destinations.md, "TCP destinations").

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::codec::buffer_pool::ENCODED;
use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};
use crate::destination_config;
use crate::destinations::kind::STREAM_ENCODINGS;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon, unencodable};
use crate::driver::{
    DeliveryDefaults, Destination, EncodeScratch, Encoded, Encoder, EndpointSpec, Outcome,
};
use crate::event::Event;
use crate::tls::TlsConfig;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpEndpoint {
    /// `host:port`; a host name may resolve to several addresses.
    pub address: String,
    /// Share of batches; 0 disables. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    #[default]
    Newline,
    /// RFC 6587 octet counting.
    OctetCounting,
}

destination_config! {
    pub struct TcpConfig {
        /// One receiver...
        #[serde(default)]
        pub address: Option<String>,
        /// ...or several, load-balanced by weight.
        #[serde(default)]
        pub endpoints: Option<Vec<TcpEndpoint>>,
        #[serde(default)]
        pub framing: Framing,
        /// Default 10 s.
        #[serde(default)]
        pub connect_timeout: Option<Dur>,
        /// A write that takes longer fails the endpoint. Default 60 s.
        #[serde(default)]
        pub write_timeout: Option<Dur>,
        #[serde(default)]
        pub tls: Option<TlsConfig>,
        /// Re-resolve host names this often. Default 60 s.
        #[serde(default)]
        pub dns_refresh: Option<Dur>,
        /// Kernel send buffer per connection (SO_SNDBUF): caps how much sits
        /// unacknowledged on this side. Default: the operating system's.
        #[serde(default)]
        pub send_buffer_bytes: Option<ByteSize>,
    }
}

/// Split `host:port` (`[v6]:port` for IPv6 literals).
pub fn split_address(a: &str) -> Result<(String, u16), String> {
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("`{a}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{a}`: `{port}` is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(format!("`{a}` needs a host and a port other than 0"));
    }
    Ok((host.to_string(), port))
}

/// `address: host:port` or `endpoints: [{address, weight}]` as one list,
/// for the destinations that balance over receivers (`tcp`, `sluice`).
pub fn hosts(address: &Option<String>, endpoints: &Option<Vec<TcpEndpoint>>) -> Vec<TcpEndpoint> {
    match (address, endpoints) {
        (Some(a), _) => vec![TcpEndpoint {
            address: a.clone(),
            weight: 1,
        }],
        (None, Some(e)) => e.clone(),
        (None, None) => Vec::new(),
    }
}

/// The checks of `hosts`' two keys: exactly one set, something to send
/// to, every address `host:port`.
pub fn validate_hosts(
    address: &Option<String>,
    endpoints: &Option<Vec<TcpEndpoint>>,
) -> Result<(), String> {
    match (address, endpoints) {
        (Some(_), Some(_)) => {
            return Err("set either `address` or `endpoints`, not both".into());
        }
        (None, None) => {
            return Err("`address` (or `endpoints: [{address, weight}]`) is required".into());
        }
        (None, Some(e)) if e.is_empty() => return Err("`endpoints` is empty".into()),
        _ => {}
    }
    let hosts = hosts(address, endpoints);
    if hosts.iter().all(|h| h.weight == 0) {
        return Err("every endpoint has weight 0: nothing could be sent".into());
    }
    for h in &hosts {
        split_address(&h.address)?;
    }
    Ok(())
}

impl Validate for TcpConfig {
    fn validate(&self) -> Result<(), String> {
        validate_hosts(&self.address, &self.endpoints)?;
        self.tls
            .as_ref()
            .map_or(Ok(()), crate::config::Validate::validate)
    }
}

impl DestinationType for TcpDestination {
    const NAME: &'static str = "tcp";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::STREAM;
    /// A stream has no request to compress and no array to close.
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: STREAM_ENCODINGS,
        ..Capabilities::LOCAL
    };
    type Config = TcpConfig;

    async fn build(cfg: &TcpConfig, _: &BuildContext<'_>) -> Result<Self, String> {
        TcpDestination::new(cfg)
    }
}

/// One receiver address and its idle connections.
struct Target {
    host: String,
    addr: SocketAddr,
    name: String,
    weight: u32,
    idle: Mutex<Vec<Conn>>,
    /// The connection each order stream (`Destination::send_on`) last
    /// wrote on: a receiver sees order only within a connection, so a
    /// sender's next batch goes on the same one. At most one per stream.
    streams: Mutex<HashMap<u32, Conn>>,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }

    /// Without waiting: false if the peer has closed the connection.
    fn is_open(&self) -> bool {
        let mut buf = [0u8; 1];
        let mut rb = ReadBuf::new(&mut buf);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.tcp().poll_peek(&mut cx, &mut rb) {
            Poll::Pending => true,
            Poll::Ready(Ok(n)) => n > 0,
            Poll::Ready(Err(_)) => false,
        }
    }

    /// Resolves to true if the peer closes the connection.
    async fn closed(&self) -> bool {
        let mut buf = [0u8; 1];
        !matches!(self.tcp().peek(&mut buf).await, Ok(n) if n > 0)
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }
}

/// How long a new connection must stay open to count as accepted.
const SETTLE: Duration = Duration::from_millis(100);
/// Retry resolution this often while a host name resolves to nothing.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(2);

pub struct TcpDestination {
    hosts: Vec<TcpEndpoint>,
    targets: Mutex<Vec<Arc<Target>>>,
    encoder: Encoder,
    framing: Framing,
    connect_timeout: Duration,
    write_timeout: Duration,
    dns_refresh: Duration,
    tls: Option<TlsConnector>,
    max_idle: usize,
    send_buffer: Option<u32>,
}

impl TcpDestination {
    pub fn new(cfg: &TcpConfig) -> Result<Self, String> {
        let tls = match &cfg.tls {
            Some(t) => Some(TlsConnector::from(t.client_config()?)),
            None => None,
        };
        let d = TcpDestination {
            hosts: hosts(&cfg.address, &cfg.endpoints),
            targets: Mutex::new(Vec::new()),
            encoder: cfg.common().encoder()?,
            framing: cfg.framing,
            connect_timeout: cfg
                .connect_timeout
                .map_or(Duration::from_secs(10), Dur::get),
            write_timeout: cfg.write_timeout.map_or(Duration::from_secs(60), Dur::get),
            dns_refresh: cfg.dns_refresh.map_or(Duration::from_secs(60), Dur::get),
            tls,
            max_idle: match cfg.request.concurrency {
                Some(crate::driver::Concurrency::Fixed(n)) => n.max(1),
                _ => 8,
            },
            send_buffer: cfg
                .send_buffer_bytes
                .map(|b| u32::try_from(b.0).unwrap_or(u32::MAX)),
        };
        // Resolve once now (blocking is fine at startup); names that do not
        // resolve yet are retried by `refresh`.
        let resolved = d
            .hosts
            .iter()
            .map(|h| resolve_blocking(&h.address))
            .collect::<Vec<_>>();
        d.reconcile(&resolved);
        Ok(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Target>>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target(&self, i: usize) -> Option<Arc<Target>> {
        self.lock().get(i).cloned()
    }

    /// Bring the targets in line with fresh resolutions (one list of
    /// addresses per configured host): existing targets keep their index,
    /// new addresses are appended, vanished ones get weight 0.
    fn reconcile(&self, resolved: &[Vec<SocketAddr>]) -> Vec<EndpointSpec> {
        let mut targets = self.lock();
        let mut present = vec![false; targets.len()];
        for (h, addrs) in self.hosts.iter().zip(resolved) {
            let (host, _) = split_address(&h.address).unwrap_or_default();
            for addr in addrs {
                match targets
                    .iter()
                    .position(|t| t.host == host && t.addr == *addr)
                {
                    Some(i) => {
                        present[i] = true;
                        if targets[i].weight != h.weight {
                            targets[i] = Arc::new(Target {
                                host: targets[i].host.clone(),
                                addr: *addr,
                                name: targets[i].name.clone(),
                                weight: h.weight,
                                idle: Mutex::new(Vec::new()),
                                streams: Mutex::default(),
                            });
                        }
                    }
                    None => {
                        let literal = host.parse::<IpAddr>().is_ok();
                        targets.push(Arc::new(Target {
                            name: if literal {
                                addr.to_string()
                            } else {
                                format!("{}:{} ({})", host, addr.port(), addr.ip())
                            },
                            host: host.clone(),
                            addr: *addr,
                            weight: h.weight,
                            idle: Mutex::new(Vec::new()),
                            streams: Mutex::default(),
                        }));
                        present.push(true);
                    }
                }
            }
        }
        targets
            .iter()
            .zip(present)
            .map(|(t, here)| EndpointSpec {
                name: t.name.clone(),
                weight: if here { t.weight } else { 0 },
            })
            .collect()
    }

    async fn connect(&self, t: &Target) -> Result<Conn, String> {
        let socket = if t.addr.is_ipv6() {
            TcpSocket::new_v6()
        } else {
            TcpSocket::new_v4()
        }
        .map_err(|e| format!("opening a socket for {}: {e}", t.name))?;
        if let Some(size) = self.send_buffer {
            socket
                .set_send_buffer_size(size)
                .map_err(|e| format!("send_buffer_bytes: {e}"))?;
        }
        let stream = tokio::time::timeout(self.connect_timeout, socket.connect(t.addr))
            .await
            .map_err(|_| format!("connect to {} timed out", t.name))?
            .map_err(|e| format!("connect to {}: {e}", t.name))?;
        let _ = stream.set_nodelay(true);
        let conn = match &self.tls {
            None => Conn::Plain(stream),
            Some(tls) => {
                let server = match t.host.parse::<IpAddr>() {
                    Ok(ip) => ServerName::IpAddress(ip.into()),
                    Err(_) => ServerName::try_from(t.host.clone())
                        .map_err(|e| format!("{}: not a valid TLS server name: {e}", t.host))?,
                };
                let s = tokio::time::timeout(self.connect_timeout, tls.connect(server, stream))
                    .await
                    .map_err(|_| format!("TLS handshake with {} timed out", t.name))?
                    .map_err(|e| format!("TLS handshake with {}: {e}", t.name))?;
                Conn::Tls(Box::new(s))
            }
        };
        if let Ok(true) = tokio::time::timeout(SETTLE, conn.closed()).await {
            return Err(format!(
                "{} closed the connection right after accepting it",
                t.name
            ));
        }
        Ok(conn)
    }

    /// `stream`'s connection to `t` if it is still open, else an open idle
    /// connection, or a new one.
    async fn checkout(&self, t: &Target, stream: Option<u32>) -> Result<Conn, String> {
        if let Some(s) = stream {
            let held = t
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&s);
            if let Some(c) = held.filter(Conn::is_open) {
                return Ok(c);
            }
        }
        loop {
            let idle = t.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(c) if c.is_open() => return Ok(c),
                Some(_) => continue, // closed by the peer while idle
                None => return self.connect(t).await,
            }
        }
    }

    fn checkin(&self, t: &Target, c: Conn, stream: Option<u32>) {
        if let Some(s) = stream {
            t.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(s, c);
            return;
        }
        let mut idle = t.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }

    fn frame(&self, events: &[Event]) -> (Vec<u8>, Vec<usize>) {
        let mut out = ENCODED.take(events.iter().map(|e| e.raw.len() + 8).sum());
        let mut scratch: EncodeScratch = self.encoder.scratch();
        let mut skipped = Vec::new();
        let mut one = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match self.framing {
                Framing::Newline => {
                    if self.encoder.encode_one(e, &mut scratch, &mut out) {
                        out.push(b'\n');
                    } else {
                        skipped.push(i);
                    }
                }
                Framing::OctetCounting => {
                    one.clear();
                    if self.encoder.encode_one(e, &mut scratch, &mut one) {
                        out.extend_from_slice(itoa::Buffer::new().format(one.len()).as_bytes());
                        out.push(b' ');
                        out.extend_from_slice(&one);
                    } else {
                        skipped.push(i);
                    }
                }
            }
        }
        (out, skipped)
    }
}

fn resolve_blocking(address: &str) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    match address.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            tracing::warn!(%address, error = %e, "cannot resolve yet; will retry");
            Vec::new()
        }
    }
}

impl Destination for TcpDestination {
    type Request = Bytes;

    fn endpoints(&self) -> Vec<EndpointSpec> {
        self.lock()
            .iter()
            .map(|t| EndpointSpec {
                name: t.name.clone(),
                weight: t.weight,
            })
            .collect()
    }

    fn encode(&self, events: &[Event]) -> Encoded<Bytes> {
        let (out, skipped) = self.frame(events);
        let n = out.len();
        Encoded {
            keys: None,
            request: ENCODED.share(out),
            bytes: n,
            skipped: unencodable(skipped),
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, data: &Bytes, endpoint: usize) -> Outcome {
        self.send_on(data, endpoint, None).await
    }

    async fn send_on(&self, data: &Bytes, endpoint: usize, stream: Option<u32>) -> Outcome {
        let Some(t) = self.target(endpoint) else {
            return Outcome::EndpointFailed {
                error: format!("no endpoint {endpoint}"),
            };
        };
        let mut conn = match self.checkout(&t, stream).await {
            Ok(c) => c,
            Err(error) => return Outcome::EndpointFailed { error },
        };
        match tokio::time::timeout(self.write_timeout, conn.write(data)).await {
            Ok(Ok(())) => {
                self.checkin(&t, conn, stream);
                Outcome::Delivered
            }
            Ok(Err(e)) => Outcome::EndpointFailed {
                error: format!("writing to {}: {e}", t.name),
            },
            Err(_) => Outcome::EndpointFailed {
                error: format!(
                    "writing to {} took longer than write_timeout ({:?}); the receiver is not reading",
                    t.name, self.write_timeout
                ),
            },
        }
    }

    /// Connect; a connection that holds is kept for the next batch.
    async fn probe(&self, endpoint: usize) -> bool {
        let Some(t) = self.target(endpoint) else {
            return false;
        };
        match self.connect(&t).await {
            Ok(c) => {
                self.checkin(&t, c, None);
                true
            }
            Err(e) => {
                tracing::debug!(endpoint = %t.name, error = %e, "probe failed");
                false
            }
        }
    }

    fn refresh_interval(&self) -> Option<Duration> {
        let unresolved = self.lock().is_empty();
        Some(if unresolved {
            UNRESOLVED_RETRY
        } else {
            self.dns_refresh
        })
    }

    async fn refresh(&self) -> Option<Vec<EndpointSpec>> {
        let mut resolved = Vec::with_capacity(self.hosts.len());
        for h in &self.hosts {
            match tokio::net::lookup_host(h.address.as_str()).await {
                Ok(a) => resolved.push(a.collect()),
                Err(e) => {
                    // Keep what we had rather than retire everything on a
                    // transient DNS failure.
                    tracing::warn!(address = %h.address, error = %e, "re-resolving failed; keeping the known addresses");
                    return None;
                }
            }
        }
        Some(self.reconcile(&resolved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Compression, Encoding};

    fn dest(hosts: &[(&str, u32)]) -> TcpDestination {
        TcpDestination {
            hosts: hosts
                .iter()
                .map(|(a, w)| TcpEndpoint {
                    address: a.to_string(),
                    weight: *w,
                })
                .collect(),
            targets: Mutex::new(Vec::new()),
            encoder: Encoder::default(),
            framing: Framing::Newline,
            connect_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            dns_refresh: Duration::from_secs(60),
            tls: None,
            max_idle: 1,
            send_buffer: None,
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("logs:514").unwrap(), ("logs".into(), 514));
        assert_eq!(split_address("[::1]:6514").unwrap(), ("::1".into(), 6514));
        assert!(split_address("logs").is_err());
        assert!(split_address("logs:x").is_err());
        assert!(split_address(":514").is_err());
    }

    #[test]
    fn reconciling_keeps_indices_appends_and_retires() {
        let d = dest(&[("logs.example:514", 2)]);
        let first = d.reconcile(&[vec![a("10.0.0.1:514"), a("10.0.0.2:514")]]);
        assert_eq!(
            first
                .iter()
                .map(|s| (s.name.as_str(), s.weight))
                .collect::<Vec<_>>(),
            vec![
                ("logs.example:514 (10.0.0.1)", 2),
                ("logs.example:514 (10.0.0.2)", 2)
            ]
        );
        // .1 went away, .3 appeared.
        let second = d.reconcile(&[vec![a("10.0.0.2:514"), a("10.0.0.3:514")]]);
        assert_eq!(
            second
                .iter()
                .map(|s| (s.name.as_str(), s.weight))
                .collect::<Vec<_>>(),
            vec![
                ("logs.example:514 (10.0.0.1)", 0),
                ("logs.example:514 (10.0.0.2)", 2),
                ("logs.example:514 (10.0.0.3)", 2)
            ]
        );
        // A literal keeps its plain name.
        let d = dest(&[("127.0.0.1:9", 1)]);
        assert_eq!(
            d.reconcile(&[vec![a("127.0.0.1:9")]])[0].name,
            "127.0.0.1:9"
        );
    }

    #[test]
    fn octet_counting_frames_events_with_newlines() {
        let mut d = dest(&[("127.0.0.1:9", 1)]);
        d.framing = Framing::OctetCounting;
        d.encoder = Encoder::new(Encoding::Raw, Compression::None, None).unwrap();
        let (out, skipped) = d.frame(&[
            Event::text(Bytes::from_static(b"two\nlines")),
            Event::text(Bytes::from_static(b"x")),
        ]);
        assert_eq!(out, b"9 two\nlines1 x");
        assert!(skipped.is_empty());
    }
}
