//! `type: statsd` — StatsD and DogStatsD lines (`statsd/line.rs`), one
//! metric event per value, over UDP (default; several lines per datagram)
//! or TCP (newline-terminated lines; TLS optional). A line that is not a
//! metric is counted as malformed, except DogStatsD events and service
//! checks, which are kept whole as `message` and counted as unparsed.
//!
//! Gauges written with a sign change the series' last value, as a StatsD
//! server applies them: the source remembers the last value of up to
//! `MAX_GAUGES` series (name and tags), shared by every connection, and
//! writes the new value. A change to a series it does not remember starts
//! from 0, as StatsD does.

mod line;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use chrono::{SecondsFormat, Utc};
use tokio::net::UdpSocket;

use self::line::{Line, Refusal, Value};
use super::decoding::Decoding;
use super::framing::{Framing, Rejects, pump_shaped, split_lines};
use super::writer::EventWriter;
use super::{MAX_BATCH, SourceContext, SourceError, SourceType, Started};
use crate::config::units::{ByteSize, Dur};
use crate::config::{Listen, Validate};
use crate::event::Event;
use crate::listener::Conn;
use crate::metric_event::MetricKind;
use crate::tls::ServerTlsConfig;

/// Gauge series whose last value is remembered for signed changes.
pub const MAX_GAUGES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Udp,
    Tcp,
}

crate::source_config! {
    pub struct StatsdConfig {
        pub address: SocketAddr,
        /// `udp` (default, as StatsD) or `tcp`.
        #[serde(default)]
        pub mode: Mode,
        /// Longer lines are skipped and counted (`reason="oversize"`). Default 64 KiB.
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
        /// TCP: serve TLS; with `client_ca_file`, require client certificates.
        #[serde(default)]
        pub tls: Option<ServerTlsConfig>,
    }
}

fn default_max_line() -> ByteSize {
    ByteSize::kib(64)
}

fn default_idle_timeout() -> Dur {
    Dur::secs(600)
}

impl Validate for StatsdConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        match self.mode {
            Mode::Udp if self.tls.is_some() => Err("`tls` needs `mode: tcp`".into()),
            Mode::Tcp if self.receive_buffer_bytes.is_some() => {
                Err("`receive_buffer_bytes` applies to `mode: udp` only".into())
            }
            _ => self.tls.as_ref().map_or(Ok(()), |t| t.validate()),
        }
    }
}

pub struct StatsdSource;

impl SourceType for StatsdSource {
    const NAME: &'static str = "statsd";
    const KEEPS_CONNECTIONS: bool = true;
    type Config = StatsdConfig;

    fn listen(c: &StatsdConfig) -> Vec<Listen> {
        vec![match c.mode {
            Mode::Tcp => Listen::Tcp(c.address),
            Mode::Udp => Listen::Udp(c.address),
        }]
    }

    async fn start(c: &StatsdConfig, ctx: SourceContext) -> Result<Started, SourceError> {
        let gauges = Gauges::default();
        match c.mode {
            Mode::Tcp => start_tcp(c, ctx, gauges).await,
            Mode::Udp => {
                let id = ctx.id.to_string();
                start_udp(c, ctx, gauges)
                    .await
                    .map_err(|source| SourceError::Bind {
                        id,
                        address: c.address,
                        source,
                    })
            }
        }
    }
}

async fn start_tcp(
    cfg: &StatsdConfig,
    ctx: SourceContext,
    gauges: Gauges,
) -> Result<Started, SourceError> {
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
    tracing::info!(source = %ctx.id, address = %local, mode = "tcp", tls = cfg.tls.is_some(), "statsd source listening");
    let max_line = cfg.max_line_bytes.as_usize();
    let spawner = ctx.spawner();
    Ok(Started::task(
        Some(local),
        spawner.spawn(super::serve_connections(incoming, move |conn, peer| {
            let (ctx, gauges) = (ctx.for_sender(peer), gauges.clone());
            async move { connection(conn, peer, max_line, &ctx, gauges).await }
        })),
    ))
}

async fn connection(
    stream: Conn,
    peer: SocketAddr,
    max_line: usize,
    ctx: &SourceContext,
    gauges: Gauges,
) {
    let mut shaper = Shaper::new(gauges);
    let error = pump_shaped(
        stream,
        Framing::Newline,
        max_line,
        Decoding::Text,
        ctx,
        |events| shaper.shape(events, &ctx.metrics),
    )
    .await;
    if let Some(e) = error {
        tracing::debug!(source = %ctx.id, %peer, error = %e, "closing the connection");
    }
}

async fn start_udp(
    cfg: &StatsdConfig,
    ctx: SourceContext,
    gauges: Gauges,
) -> std::io::Result<Started> {
    let (socket, local) =
        super::udp::listen(cfg.address, cfg.receive_buffer_bytes, &ctx, "statsd")?;
    let spawner = ctx.spawner();
    let max_line = cfg.max_line_bytes.as_usize();
    Ok(Started::task(
        Some(local),
        spawner.spawn(run_udp(socket, max_line, ctx, gauges)),
    ))
}

async fn run_udp(socket: UdpSocket, max_line: usize, ctx: SourceContext, gauges: Gauges) {
    let mut buf = BytesMut::with_capacity(super::udp::CHUNK);
    let mut shaper = Shaper::new(gauges);
    let mut lines = Vec::new();
    let mut rejects = Rejects::default();
    loop {
        super::udp::room(&mut buf);
        let first = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = socket.recv_buf_from(&mut buf) => r,
        };
        if let Err(e) = first {
            tracing::debug!(source = %ctx.id, error = %e, "receive failed");
            continue;
        }
        let d = buf.split().freeze();
        split_lines(&d, max_line, Decoding::Text, &mut lines, &mut rejects);
        while lines.len() < MAX_BATCH {
            super::udp::room(&mut buf);
            match socket.try_recv_buf_from(&mut buf) {
                Ok(_) => {
                    let d = buf.split().freeze();
                    split_lines(&d, max_line, Decoding::Text, &mut lines, &mut rejects);
                }
                Err(_) => break,
            }
        }
        rejects.report(&ctx.metrics);
        shaper.shape(&mut lines, &ctx.metrics);
        if ctx.send_all(&mut lines).await.is_err() {
            break;
        }
    }
}

/// One line's events, and how many lines were counted malformed and kept
/// whole (for the fuzzer: `crate::fuzz::statsd`).
pub fn events_of(line: &[u8]) -> (Vec<Event>, u64, u64) {
    let mut s = Shaper::new(Gauges::default());
    let mut out = Vec::new();
    s.line(line, &mut out);
    (out, s.malformed, s.unparsed)
}

/// The last value of each gauge series, for signed changes.
#[derive(Clone)]
struct Gauges(Arc<Mutex<lru::LruCache<Box<str>, f64>>>);

impl Default for Gauges {
    fn default() -> Self {
        let cap = std::num::NonZeroUsize::new(MAX_GAUGES).unwrap_or(std::num::NonZeroUsize::MIN);
        Gauges(Arc::new(Mutex::new(lru::LruCache::new(cap))))
    }
}

impl Gauges {
    /// Apply `change` (`None`: set to `set`) and return the new value.
    fn apply(&self, key: &str, set: Option<f64>, change: f64) -> f64 {
        // A panic elsewhere while holding the lock leaves a map of plain
        // numbers: still consistent.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = match set {
            Some(v) => v,
            None => map.get(key).copied().unwrap_or(0.0) + change,
        };
        match map.get_mut(key) {
            Some(v) => *v = next,
            None => {
                map.put(key.into(), next);
            }
        }
        next
    }
}

/// A tag of the line being written, as byte ranges of it (no allocation
/// per tag).
#[derive(Debug, Clone, Copy)]
struct Tag {
    key: (usize, usize),
    /// `None`: a bare tag, written `"true"`.
    value: Option<(usize, usize)>,
}

impl Tag {
    fn key_in<'a>(&self, text: &'a str) -> &'a str {
        &text[self.key.0..self.key.1]
    }

    fn value_in<'a>(&self, text: &'a str) -> &'a str {
        self.value.map_or("true", |(a, b)| &text[a..b])
    }
}

/// Turns lines into metric events.
struct Shaper {
    out: EventWriter,
    gauges: Gauges,
    /// Tags of the line being written, sorted, the last of a key kept.
    tags: Vec<Tag>,
    key: String,
    now: String,
    malformed: u64,
    unparsed: u64,
}

impl Shaper {
    fn new(gauges: Gauges) -> Self {
        Shaper {
            out: EventWriter::new(),
            gauges,
            tags: Vec::new(),
            key: String::new(),
            now: String::new(),
            malformed: 0,
            unparsed: 0,
        }
    }

    /// Replace each framed line by its metric events.
    fn shape(&mut self, events: &mut Vec<Event>, metrics: &crate::metrics::SourceMetrics) {
        if events.is_empty() {
            return;
        }
        let lines = std::mem::take(events);
        self.now.clear();
        for l in &lines {
            self.line(&l.raw, events);
        }
        metrics.reject(
            crate::metrics::RejectReason::Malformed,
            std::mem::take(&mut self.malformed),
        );
        metrics.unparsed.inc_by(std::mem::take(&mut self.unparsed));
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Event>) {
        let Ok(text) = std::str::from_utf8(raw) else {
            self.malformed += 1;
            return;
        };
        let text = text.trim();
        match line::parse(text) {
            Ok(l) => self.metrics(text, &l, out),
            Err(Refusal::NotAMetric) => {
                self.unparsed += 1;
                self.out.begin(text.len() + 16);
                self.out.str("message", text);
                out.push(self.out.finish());
            }
            Err(Refusal::Malformed(why)) => {
                tracing::trace!(line = %text, why, "not a statsd line");
                self.malformed += 1;
            }
        }
    }

    /// `text` is the line `l` was parsed from: the tags are ranges of it.
    fn metrics(&mut self, text: &str, l: &Line<'_>, out: &mut Vec<Event>) {
        self.sort_tags(text, l);
        let rate = l.sample_rate.unwrap_or(1.0);
        for v in l.values() {
            let Ok(v) = line::value(l.kind, v) else {
                continue; // checked by parse
            };
            self.out
                .begin(l.name.len() + 96 + l.tags.map_or(0, str::len));
            self.out.str("name", l.name);
            self.out.str("type", l.kind.as_str());
            match v {
                Value::Number(n) if l.kind == MetricKind::Counter => {
                    self.out.float("value", n / rate)
                }
                Value::Number(n) if l.kind == MetricKind::Gauge => {
                    let n = self.gauge(text, l, Some(n), 0.0);
                    self.out.float("value", n)
                }
                Value::Number(n) => self.out.float("value", n),
                Value::Delta(d) => {
                    let n = self.gauge(text, l, None, d);
                    self.out.float("value", n)
                }
                Value::Member(m) => self.out.str("value", m),
            }
            match l
                .timestamp
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            {
                Some(t) => self
                    .out
                    .display("timestamp", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
                None => {
                    if self.now.is_empty() {
                        self.now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
                    }
                    self.out.str("timestamp", &self.now);
                }
            }
            if !self.tags.is_empty() {
                self.out.open("tags");
                for t in &self.tags {
                    self.out.str(t.key_in(text), t.value_in(text));
                }
                self.out.close();
            }
            if l.kind != MetricKind::Counter
                && let Some(r) = l.sample_rate
            {
                self.out.float("sample_rate", r);
            }
            out.push(self.out.finish());
        }
    }

    /// The line's tags as offsets into it, sorted by key, each key once
    /// (the last written wins): a JSON object cannot hold a key twice.
    fn sort_tags(&mut self, text: &str, l: &Line<'_>) {
        self.tags.clear();
        let base = text.as_ptr() as usize;
        let span = |s: &str| {
            let a = s.as_ptr() as usize - base;
            (a, a + s.len())
        };
        for (k, v) in l.tags() {
            self.tags.push(Tag {
                key: span(k),
                value: v.map(span),
            });
        }
        let key = |t: &Tag| &text[t.key.0..t.key.1];
        self.tags.sort_by(|x, y| key(x).cmp(key(y)));
        self.tags.reverse();
        self.tags
            .dedup_by(|later, earlier| key(later) == key(earlier));
        self.tags.reverse();
    }

    /// A gauge's value after this line, remembered for later changes.
    fn gauge(&mut self, text: &str, l: &Line<'_>, set: Option<f64>, change: f64) -> f64 {
        self.key.clear();
        self.key.push_str(l.name);
        for t in &self.tags {
            self.key.push('\u{0}');
            self.key.push_str(t.key_in(text));
            self.key.push('=');
            self.key.push_str(t.value_in(text));
        }
        self.gauges.apply(&self.key, set, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn shape(shaper: &mut Shaper, lines: &[&str]) -> Vec<Json> {
        let mut out = Vec::new();
        for l in lines {
            shaper.line(l.as_bytes(), &mut out);
        }
        out.iter()
            .map(|e| serde_json::from_slice(&e.raw).expect("valid JSON"))
            .collect()
    }

    #[test]
    fn metric_events_from_lines() {
        let mut s = Shaper::new(Gauges::default());
        let got = shape(
            &mut s,
            &[
                "hits:3|c|@0.1|#route:/a,env:dev,env:prod,canary",
                "lat:1:2|ms|@0.5",
                "temp:20|g|#room:a",
                "temp:+5|g|#room:a",
                "temp:-2.5|g|#room:a",
                "temp:-1|g|#room:b",
                "users:alice|s|T1700000000",
                "_sc|redis|0",
                "broken",
                "x:1|c|@7",
            ],
        );
        assert_eq!(got[0]["name"], "hits");
        assert_eq!(got[0]["type"], "counter");
        assert_eq!(got[0]["value"], 30.0);
        assert_eq!(
            got[0]["tags"],
            serde_json::json!({"route": "/a", "env": "prod", "canary": "true"})
        );
        assert!(got[0].get("sample_rate").is_none(), "a counter is scaled");
        assert_eq!(
            (&got[1]["value"], &got[2]["value"]),
            (&1.0.into(), &2.0.into())
        );
        assert_eq!(got[1]["sample_rate"], 0.5);
        assert_eq!(got[1]["type"], "timer");
        let temps: Vec<f64> = got[3..7]
            .iter()
            .map(|e| e["value"].as_f64().unwrap())
            .collect();
        assert_eq!(temps, vec![20.0, 25.0, 22.5, -1.0]);
        assert_eq!(got[7]["value"], "alice");
        assert_eq!(got[7]["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(got[8]["message"], "_sc|redis|0");
        assert_eq!(got.len(), 9);
        assert_eq!((s.malformed, s.unparsed), (2, 1));
        // What the encoders and the OTLP destination recognise.
        let m = crate::metric_event::MetricEvent::parse(
            serde_json::to_vec(&got[1]).unwrap().as_slice(),
        );
        assert_eq!(m.map(|m| m.sample_rate), Some(Some(0.5)));
    }

    proptest::proptest! {
        /// Whatever arrives, every event written is valid JSON, a line is
        /// either all its values' events or counted, and nothing panics.
        #[test]
        fn any_line_is_events_or_counted(
            name in "[a-z.]{0,6}",
            values in proptest::collection::vec("[-+]?[0-9]{0,3}(\\.[0-9])?|x", 0..4),
            kind in "c|g|ms|h|s|d|q",
            rest in "(\\|@0?\\.[0-9]|\\|#[a-z:,]{0,12}|\\|T[0-9]{1,3}|\\|c:[a-z]{0,3}|\\|.{0,3}){0,3}",
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let line = format!("{name}:{}|{kind}{rest}", values.join(":"));
            let mut s = Shaper::new(Gauges::default());
            for input in [line.as_bytes(), &junk[..]] {
                let mut out = Vec::new();
                s.malformed = 0;
                s.line(input, &mut out);
                for e in &out {
                    let v: Json = serde_json::from_slice(&e.raw).expect("valid JSON");
                    proptest::prop_assert!(v.is_object());
                }
                // Exactly one of: its events, or one malformed count.
                proptest::prop_assert_eq!(out.is_empty(), s.malformed == 1);
                if let Some(l) = std::str::from_utf8(input).ok().and_then(|t| line::parse(t.trim()).ok()) {
                    proptest::prop_assert_eq!(out.len(), l.values().count());
                }
            }
        }
    }
}
