//! `type: syslog` — RFC 5424 and RFC 3164 messages, parsed into Vector's
//! field names (`crate::syslog` reads them):
//!
//! - `mode: tcp` (default): frames are told apart one by one, so a
//!   connection may mix newline-terminated messages and RFC 6587
//!   octet-counted ones (`LENGTH SP MESSAGE`, what rsyslog and syslog-ng send
//!   and RFC 5425 requires over TLS). With `tls`, RFC 5425. Backpressure as
//!   the tcp source: a connection waiting for room is not read.
//! - `mode: udp`: one message per datagram (RFC 5426). UDP cannot push back;
//!   see the udp source for what is counted when the kernel drops.
//!
//! A line that is not syslog is kept whole as `message` (with the time it
//! came and the sender's address) and counted in
//! `sluice_source_unparsed_events_total`: never lost, never guessed at.

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use chrono::{SecondsFormat, Utc};
use syslog_loose::{Message, ProcId, Protocol};
use tokio::net::UdpSocket;

use super::decoding::Decoding;
use super::framing::{Framing, pump_shaped};
use super::writer::EventWriter;
use super::{MAX_BATCH, SourceContext, SourceError, SourceType, Started};
use crate::config::units::{ByteSize, Dur};
use crate::config::{Listen, Validate};
use crate::event::Event;
use crate::listener::Conn;
use crate::tls::ServerTlsConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Tcp,
    Udp,
}

crate::source_config! {
    pub struct SyslogConfig {
        pub address: SocketAddr,
        /// `tcp` (default; newline and octet-counted frames) or `udp`.
        #[serde(default)]
        pub mode: Mode,
        /// Longer messages are skipped and counted (`reason="oversize"`).
        /// Default 100 KiB (Vector's `max_length`).
        #[serde(default = "default_max_line")]
        pub max_line_bytes: ByteSize,
        /// TCP: stop accepting beyond this many open connections. Default 1000.
        #[serde(default = "super::default_max_connections")]
        pub max_connections: usize,
        /// TCP: close a connection that sent nothing for this long (`0s`:
        /// never). Default 10m.
        #[serde(default = "default_idle_timeout")]
        pub idle_timeout: Dur,
        /// UDP: ask the kernel for this much receive buffer (SO_RCVBUF).
        #[serde(default)]
        pub receive_buffer_bytes: Option<ByteSize>,
        /// TCP: serve TLS (RFC 5425); with `client_ca_file`, require client
        /// certificates.
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
    }
}

fn default_max_line() -> ByteSize {
    ByteSize::kib(100)
}

fn default_idle_timeout() -> Dur {
    Dur::secs(600)
}

impl Validate for SyslogConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        match self.mode {
            Mode::Udp if self.tls.is_some() => {
                Err("`tls` needs `mode: tcp` (syslog over UDP has no TLS)".into())
            }
            Mode::Tcp if self.receive_buffer_bytes.is_some() => {
                Err("`receive_buffer_bytes` applies to `mode: udp` only".into())
            }
            _ => self.tls.as_ref().map_or(Ok(()), |t| t.validate()),
        }
    }
}

pub struct SyslogSource;

impl SourceType for SyslogSource {
    const NAME: &'static str = "syslog";
    const KEEPS_CONNECTIONS: bool = true;
    type Config = SyslogConfig;

    fn listen(c: &SyslogConfig) -> Vec<Listen> {
        vec![match c.mode {
            Mode::Tcp => Listen::Tcp(c.address),
            Mode::Udp => Listen::Udp(c.address),
        }]
    }

    async fn start(c: &SyslogConfig, ctx: SourceContext) -> Result<Started, SourceError> {
        match c.mode {
            Mode::Tcp => start_tcp(c, ctx).await,
            Mode::Udp => {
                let id = ctx.id.to_string();
                start_udp(c, ctx).await.map_err(|source| SourceError::Bind {
                    id,
                    address: c.address,
                    source,
                })
            }
        }
    }
}

async fn start_tcp(cfg: &SyslogConfig, ctx: SourceContext) -> Result<Started, SourceError> {
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
    tracing::info!(source = %ctx.id, address = %local, mode = "tcp", tls = cfg.tls.is_some(), "syslog source listening");
    let max_line = cfg.max_line_bytes.as_usize();
    let spawner = ctx.spawner();
    Ok(Started::task(
        Some(local),
        spawner.spawn(super::serve_connections(incoming, move |conn, peer| {
            let ctx = ctx.for_sender(peer);
            async move { connection(conn, peer, max_line, &ctx).await }
        })),
    ))
}

async fn connection(stream: Conn, peer: SocketAddr, max_line: usize, ctx: &SourceContext) {
    let mut shaper = Shaper::default();
    let error = pump_shaped(
        stream,
        Framing::Auto,
        max_line,
        Decoding::Text,
        ctx,
        |events| shaper.shape(events, Some(peer.ip()), &ctx.metrics),
    )
    .await;
    if let Some(e) = error {
        tracing::debug!(source = %ctx.id, %peer, error = %e, "closing the connection");
    }
}

async fn start_udp(cfg: &SyslogConfig, ctx: SourceContext) -> std::io::Result<Started> {
    let (socket, local) =
        super::udp::listen(cfg.address, cfg.receive_buffer_bytes, &ctx, "syslog")?;
    let spawner = ctx.spawner();
    let max_line = cfg.max_line_bytes.as_usize();
    Ok(Started::task(
        Some(local),
        spawner.spawn(run_udp(socket, max_line, ctx)),
    ))
}

async fn run_udp(socket: UdpSocket, max_line: usize, ctx: SourceContext) {
    let mut buf = BytesMut::with_capacity(super::udp::CHUNK);
    let mut shaper = Shaper::default();
    let mut events = Vec::new();
    let mut oversize = 0;
    loop {
        super::udp::room(&mut buf);
        let first = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = socket.recv_buf_from(&mut buf) => r,
        };
        let mut take = |buf: &mut BytesMut, peer: SocketAddr, events: &mut Vec<Event>| {
            let mut d = buf.split().freeze();
            while matches!(d.last(), Some(b'\n' | b'\r' | 0)) {
                d.truncate(d.len() - 1);
            }
            if d.len() > max_line {
                oversize += 1;
            } else if !d.is_empty() {
                shaper.one(&d, Some(peer.ip()), events);
            }
        };
        match first {
            Ok((_, peer)) => take(&mut buf, peer, &mut events),
            Err(e) => {
                tracing::debug!(source = %ctx.id, error = %e, "receive failed");
                continue;
            }
        }
        while events.len() < MAX_BATCH {
            super::udp::room(&mut buf);
            match socket.try_recv_buf_from(&mut buf) {
                Ok((_, peer)) => take(&mut buf, peer, &mut events),
                Err(_) => break,
            }
        }
        ctx.metrics.reject(
            crate::metrics::RejectReason::Oversize,
            std::mem::take(&mut oversize),
        );
        shaper.report(&ctx.metrics);
        if ctx.send_all(&mut events).await.is_err() {
            break;
        }
    }
}

/// One message's event (for the fuzzer: `crate::fuzz::syslog`).
pub fn event_of(raw: &[u8]) -> Event {
    let mut out = Vec::with_capacity(1);
    Shaper::default().one(raw, None, &mut out);
    out.pop()
        .unwrap_or_else(|| Event::json(bytes::Bytes::from_static(b"{}")))
}

/// Turns framed messages into events, counting those that are not syslog.
#[derive(Default)]
struct Shaper {
    out: EventWriter,
    unparsed: u64,
    /// The time written for messages that carry none, once per batch.
    now: String,
}

impl Shaper {
    /// Replace each framed (text) event by its parsed one.
    fn shape(
        &mut self,
        events: &mut Vec<Event>,
        peer: Option<IpAddr>,
        metrics: &crate::metrics::SourceMetrics,
    ) {
        if events.is_empty() {
            return;
        }
        let framed = std::mem::take(events);
        self.now.clear();
        for e in &framed {
            self.one(&e.raw, peer, events);
        }
        self.report(metrics);
    }

    fn report(&mut self, metrics: &crate::metrics::SourceMetrics) {
        metrics.unparsed.inc_by(std::mem::take(&mut self.unparsed));
        self.now.clear();
    }

    fn one(&mut self, raw: &[u8], peer: Option<IpAddr>, out: &mut Vec<Event>) {
        let text = String::from_utf8_lossy(raw);
        self.out.begin(raw.len() * 2);
        match crate::syslog::message(&text) {
            Some(m) => self.fields(&m),
            None => {
                self.unparsed += 1;
                self.out.str("message", &text);
                self.now_field();
            }
        }
        if let Some(ip) = peer {
            self.out.display("source_ip", ip);
        }
        out.push(self.out.finish());
    }

    fn now_field(&mut self) {
        if self.now.is_empty() {
            self.now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        }
        self.out.str("timestamp", &self.now);
    }

    fn fields(&mut self, m: &Message<&str>) {
        let w = &mut self.out;
        w.str("message", m.msg);
        if let Some(h) = m.hostname {
            w.str("hostname", h);
        }
        if let Some(a) = m.appname {
            w.str("appname", a);
        }
        match &m.procid {
            Some(ProcId::PID(p)) => w.int("procid", i64::from(*p)),
            Some(ProcId::Name(n)) => w.str("procid", n),
            None => {}
        }
        if let Some(id) = m.msgid {
            w.str("msgid", id);
        }
        if let Some(f) = m.facility {
            w.str("facility", f.as_str());
        }
        if let Some(s) = m.severity {
            w.str("severity", s.as_str());
        }
        match m.timestamp {
            Some(t) => w.display(
                "timestamp",
                t.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%S%.fZ"),
            ),
            None => self.now_field(),
        }
        let w = &mut self.out;
        if let Protocol::RFC5424(v) = m.protocol {
            w.int("version", i64::from(v));
        }
        structured_data(w, m);
    }
}

/// Each structured data element as an object of its parameters, under its
/// ID. IDs and parameter names are the sender's: one that repeats keeps its
/// last value (a JSON object cannot hold a key twice), and an ID that is
/// one of the fields above is written as `sd.<id>`.
fn structured_data(w: &mut EventWriter, m: &Message<&str>) {
    if m.structured_data.is_empty() {
        return;
    }
    let mut elements: std::collections::BTreeMap<&str, std::collections::BTreeMap<&str, &str>> =
        std::collections::BTreeMap::new();
    for e in &m.structured_data {
        let params = elements.entry(e.id).or_default();
        for (k, v) in &e.params {
            params.insert(k, v);
        }
    }
    for (id, params) in elements {
        if RESERVED.contains(&id) {
            w.open(&format!("sd.{id}"));
        } else {
            w.open(id);
        }
        for (k, v) in params {
            w.str(k, v);
        }
        w.close();
    }
}

const RESERVED: [&str; 10] = [
    "message",
    "hostname",
    "appname",
    "procid",
    "msgid",
    "facility",
    "severity",
    "timestamp",
    "version",
    "source_ip",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn shape(line: &str) -> (Value, u64) {
        let mut s = Shaper::default();
        let mut out = Vec::new();
        s.one(
            line.as_bytes(),
            Some("10.0.0.7".parse().expect("ip")),
            &mut out,
        );
        let v = serde_json::from_slice(&out[0].raw).expect("json");
        (v, s.unparsed)
    }

    #[test]
    fn rfc5424_into_vectors_fields() {
        let (v, unparsed) = shape(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application"][message x="1"] An application event"#,
        );
        assert_eq!(unparsed, 0);
        assert_eq!(v["message"], "An application event");
        assert_eq!(v["hostname"], "mymachine.example.com");
        assert_eq!(v["appname"], "evntslog");
        assert_eq!(v["procid"], 1234);
        assert_eq!(v["msgid"], "ID47");
        assert_eq!(v["facility"], "local4");
        assert_eq!(v["severity"], "notice");
        assert_eq!(v["timestamp"], "2003-10-11T22:14:15.003Z");
        assert_eq!(v["version"], 1);
        assert_eq!(v["exampleSDID@32473"]["eventSource"], "Application");
        assert_eq!(v["sd.message"]["x"], "1");
        assert_eq!(v["source_ip"], "10.0.0.7");
    }

    #[test]
    fn rfc3164_variants_and_lines_that_are_not_syslog() {
        let (v, _) = shape("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed");
        assert_eq!(v["appname"], "su");
        assert_eq!(v["procid"], 230);
        assert_eq!(v["facility"], "auth");
        assert_eq!(v["severity"], "crit");
        assert!(
            v["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with("10-11T22:14:15Z")),
            "{v}"
        );
        let (v, unparsed) = shape("<13>only a priority");
        assert_eq!(
            (v["message"].as_str(), unparsed),
            (Some("only a priority"), 0)
        );
        assert_eq!(v["facility"], "user");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        let (v, unparsed) = shape("plain words \"quoted\"");
        assert_eq!(unparsed, 1);
        assert_eq!(v["message"], "plain words \"quoted\"");
        assert!(v.get("facility").is_none());
        assert!(v["timestamp"].is_string());
    }

    proptest::proptest! {
        /// Whatever bytes arrive, each message becomes exactly one valid
        /// JSON event with a message, and nothing panics.
        #[test]
        fn any_bytes_make_one_valid_event(raw in proptest::collection::vec(proptest::num::u8::ANY, 1..300),
                                          prefix in "(<[0-9]{1,3}>(1 )?)?") {
            let mut line = prefix.into_bytes();
            line.extend_from_slice(&raw);
            let mut s = Shaper::default();
            let mut out = Vec::new();
            s.one(&line, None, &mut out);
            proptest::prop_assert_eq!(out.len(), 1);
            let v: Value = serde_json::from_slice(&out[0].raw).expect("valid JSON");
            proptest::prop_assert!(v["message"].is_string());
        }
    }
}
