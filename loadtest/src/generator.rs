//! The load generator: TCP, HTTP, UDP and OTLP/gRPC senders.
//!
//! Every event carries a unique `seq`. What counts as *sent*: for TCP and UDP,
//! bytes the kernel accepted; for HTTP, a request answered 2xx (a 429 or 503
//! is retried after its `Retry-After`, a connection error after a short
//! pause, so the generator behaves like a well-written client). Throughput
//! runs send a prepared block of events over and over and only count them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::seq::{Tracker, write_event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Http,
    Udp,
    /// OTLP/gRPC log exports, one log record per event.
    Otlp,
    /// TCP, each event an octet-counted RFC 5424 syslog message whose
    /// text is the JSON event (and whose structured data holds its `seq`).
    Syslog,
    /// TCP, each event a DogStatsD counter line tagged with its `seq`.
    Statsd,
    /// HTTP to Splunk's HEC endpoint, each event a `{"event": …}` envelope.
    Hec,
    /// Lines appended to a file (`Load::file`), which sluice's file source
    /// follows: one writer.
    File,
    /// TCP, each batch one Fluent forward message in Forward mode
    /// (`[tag, [[time, record], …]]`, MessagePack), records with the JSON
    /// events' fields.
    Fluent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub protocol: Protocol,
    pub target: SocketAddr,
    /// Events per second over all connections; 0 = as fast as possible.
    pub rate: u64,
    pub event_bytes: usize,
    pub connections: usize,
    pub duration: Duration,
    /// Events per write (TCP), per request (HTTP) or per datagram (UDP).
    pub batch: usize,
    /// Record every id (chaos runs) or only count (throughput runs).
    pub track_ids: bool,
    /// TCP over TLS, trusting this CA (DER).
    #[serde(skip)]
    pub tls_ca: Option<Arc<Vec<u8>>>,
    /// `Protocol::File`: the file lines are appended to.
    pub file: Option<std::path::PathBuf>,
}

/// A TCP connection, over TLS when the load asks for it.
type Stream = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn connect(load: &Load) -> std::io::Result<Stream> {
    if let Some(path) = load
        .file
        .as_ref()
        .filter(|_| load.protocol == Protocol::File)
    {
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        return Ok(Box::new(f));
    }
    let tcp = TcpStream::connect(load.target).await?;
    let _ = tcp.set_nodelay(true);
    let Some(ca) = &load.tls_ca else {
        return Ok(Box::new(tcp));
    };
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types};
    let mut roots = RootCertStore::empty();
    roots
        .add(pki_types::CertificateDer::from(ca.as_slice().to_vec()))
        .map_err(std::io::Error::other)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = pki_types::ServerName::IpAddress(load.target.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok(Box::new(tls))
}

/// What a running generator has done so far.
#[derive(Default)]
pub struct Progress {
    pub attempts: AtomicU64,
    pub refused: AtomicU64,
    pub errors: AtomicU64,
    /// HTTP answers by class: 2xx, 429, 5xx, other.
    pub ok: AtomicU64,
    pub throttled: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub sent: u64,
    pub attempts: u64,
    /// Connections refused (the router not listening: killed, restarting).
    pub connect_failures: u64,
    pub write_errors: u64,
    pub http_2xx: u64,
    pub http_429: u64,
    pub http_other: u64,
    pub seconds: f64,
}

pub struct Generator {
    progress: Arc<Progress>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
    tracker: Arc<Tracker>,
}

impl Generator {
    pub fn start(load: Load, tracker: Arc<Tracker>) -> Generator {
        let progress = Arc::new(Progress::default());
        let started = Instant::now();
        let per_conn_rate = if load.rate == 0 {
            0
        } else {
            load.rate.div_ceil(load.connections.max(1) as u64)
        };
        let tasks = (0..load.connections.max(1))
            .map(|conn| {
                let load = load.clone();
                let tracker = tracker.clone();
                let progress = progress.clone();
                tokio::spawn(async move {
                    let deadline = started + load.duration;
                    match load.protocol {
                        Protocol::Tcp
                        | Protocol::Syslog
                        | Protocol::Statsd
                        | Protocol::Fluent
                        | Protocol::File => {
                            let at = (conn, per_conn_rate, deadline);
                            tcp(&load, at, &tracker, &progress).await
                        }
                        Protocol::Http | Protocol::Hec => {
                            http(&load, per_conn_rate, deadline, &tracker, &progress).await
                        }
                        Protocol::Udp => {
                            udp(&load, per_conn_rate, deadline, &tracker, &progress).await
                        }
                        Protocol::Otlp => {
                            otlp(&load, per_conn_rate, deadline, &tracker, &progress).await
                        }
                    }
                })
            })
            .collect();
        Generator {
            progress,
            tasks,
            started,
            tracker,
        }
    }

    pub fn finished(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    pub async fn wait(self) -> Summary {
        for t in self.tasks {
            let _ = t.await;
        }
        let p = &self.progress;
        Summary {
            sent: self.tracker.sent_events(),
            attempts: p.attempts.load(Ordering::Relaxed),
            connect_failures: p.refused.load(Ordering::Relaxed),
            write_errors: p.errors.load(Ordering::Relaxed),
            http_2xx: p.ok.load(Ordering::Relaxed),
            http_429: p.throttled.load(Ordering::Relaxed),
            http_other: p.failed.load(Ordering::Relaxed),
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Paces a sender at `rate` events/s: how many may go now.
struct Pacer {
    rate: u64,
    started: Instant,
    done: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
            done: 0,
        }
    }

    /// Wait until `n` more events are due (immediately when unpaced).
    async fn admit(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.done += n;
        let due = Duration::from_secs_f64(self.done as f64 / self.rate as f64);
        let wait = due.saturating_sub(self.started.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

fn running(deadline: Instant) -> bool {
    Instant::now() < deadline
}

/// A batch starting at `first` was taken: record its ids, or only count it.
fn sent(load: &Load, tracker: &Tracker, first: u64) {
    if load.track_ids {
        tracker.mark_sent(first, load.batch as u64);
    } else {
        tracker.count_sent(load.batch as u64);
    }
}

/// Build a batch of `n` events starting at `first` (ids) into `buf`, in the
/// lines `protocol` sends.
fn batch(buf: &mut Vec<u8>, first: u64, n: usize, size: usize, protocol: Protocol) {
    buf.clear();
    if protocol == Protocol::Fluent {
        fluent_batch(buf, first, n, size);
        return;
    }
    let mut event = Vec::with_capacity(size + 64);
    for i in 0..n as u64 {
        let id = first + i;
        match protocol {
            Protocol::Syslog => {
                event.clear();
                event.extend_from_slice(
                    format!(
                        "<134>1 2026-12-06T10:00:00.000Z loadtest app 4242 - [meta seq=\"{id}\"] "
                    )
                    .as_bytes(),
                );
                let head = event.len();
                write_event(&mut event, id, size.saturating_sub(head).max(40));
                buf.extend_from_slice(format!("{} ", event.len()).as_bytes());
                buf.extend_from_slice(&event);
            }
            Protocol::Statsd => {
                buf.extend_from_slice(
                    format!(
                        "loadtest.requests:1|c|#seq:{id},status:{},level:{},host:loadtest\n",
                        crate::seq::status(id),
                        crate::seq::level(id)
                    )
                    .as_bytes(),
                );
            }
            Protocol::Hec => {
                buf.extend_from_slice(b"{\"event\":");
                write_event(buf, id, size);
                buf.extend_from_slice(b"}\n");
            }
            _ => {
                write_event(buf, id, size);
                buf.push(b'\n');
            }
        }
    }
}

/// A MessagePack string.
fn msgpack_str(out: &mut Vec<u8>, s: &[u8]) {
    match s.len() {
        n if n < 32 => out.push(0xa0 | n as u8),
        n if n < 256 => out.extend([0xd9, n as u8]),
        n => {
            out.push(0xda);
            out.extend((n.min(65_535) as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(s);
}

fn msgpack_uint(out: &mut Vec<u8>, v: u64) {
    out.push(0xcf);
    out.extend(v.to_be_bytes());
}

/// `["loadtest", [[time, {seq, level, status, host, msg}], …]]`, each
/// record about `size` bytes once written as JSON by the source.
fn fluent_batch(buf: &mut Vec<u8>, first: u64, n: usize, size: usize) {
    buf.push(0x92);
    msgpack_str(buf, b"loadtest");
    buf.push(0xdd);
    buf.extend((n as u32).to_be_bytes());
    let pad = vec![b'x'; size.saturating_sub(120)];
    for i in 0..n as u64 {
        let id = first + i;
        buf.push(0x92);
        // EventTime: seconds and nanoseconds.
        buf.extend([0xd7, 0x00]);
        buf.extend(1_765_000_000u32.to_be_bytes());
        buf.extend(0u32.to_be_bytes());
        buf.push(0x85);
        msgpack_str(buf, b"seq");
        msgpack_uint(buf, id);
        msgpack_str(buf, b"level");
        msgpack_str(buf, crate::seq::level(id).as_bytes());
        msgpack_str(buf, b"status");
        msgpack_uint(buf, u64::from(crate::seq::status(id)));
        msgpack_str(buf, b"host");
        msgpack_str(buf, b"loadtest");
        msgpack_str(buf, b"msg");
        msgpack_str(buf, &pad);
    }
}

/// `at`: this connection's number, its rate and when the run ends.
async fn tcp(
    load: &Load,
    (conn_no, rate, deadline): (usize, u64, Instant),
    tracker: &Tracker,
    progress: &Progress,
) {
    let mut pacer = Pacer::new(rate);
    let mut buf = Vec::with_capacity(load.batch * (load.event_bytes + 1));
    // Throughput: one prepared block, sent again and again.
    if !load.track_ids {
        batch(&mut buf, 0, load.batch, load.event_bytes, load.protocol);
    }
    let mut conn: Option<Stream> = None;
    while running(deadline) {
        let Some(stream) = conn.as_mut() else {
            match connect(load).await {
                Ok(s) => {
                    conn = Some(s);
                }
                Err(_) => {
                    progress.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        pacer.admit(load.batch as u64).await;
        let first = if load.track_ids {
            let first = tracker.reserve(load.batch as u64);
            tracker.own(first, conn_no);
            batch(&mut buf, first, load.batch, load.event_bytes, load.protocol);
            first
        } else {
            0
        };
        progress.attempts.fetch_add(1, Ordering::Relaxed);
        // A write blocked by backpressure must still end with the run.
        let wrote = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1),
            stream.write_all(&buf),
        )
        .await;
        match wrote {
            Ok(Ok(())) => {
                sent(load, tracker, first);
            }
            // Part of the batch may have gone: those ids show up as
            // "unexpected" if they arrive, never as lost.
            Ok(Err(_)) | Err(_) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
    if let Some(mut s) = conn {
        let _ = s.shutdown().await;
    }
}

async fn http(load: &Load, rate: u64, deadline: Instant, tracker: &Tracker, progress: &Progress) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("generator: http client: {e}");
            return;
        }
    };
    let (url, auth) = match load.protocol {
        Protocol::Hec => (
            format!("http://{}/services/collector/event", load.target),
            "Splunk loadtest",
        ),
        _ => (format!("http://{}/", load.target), ""),
    };
    let mut pacer = Pacer::new(rate);
    let mut buf = Vec::with_capacity(load.batch * (load.event_bytes + 1));
    if !load.track_ids {
        batch(&mut buf, 0, load.batch, load.event_bytes, load.protocol);
    }
    let prepared = bytes::Bytes::from(buf.clone());
    while running(deadline) {
        pacer.admit(load.batch as u64).await;
        let (first, body) = if load.track_ids {
            let first = tracker.reserve(load.batch as u64);
            batch(&mut buf, first, load.batch, load.event_bytes, load.protocol);
            (first, bytes::Bytes::from(buf.clone()))
        } else {
            (0, prepared.clone())
        };
        // The same request until it is taken or the run ends: a client
        // that gives up on 429 would lose what the router pushed back.
        while running(deadline) {
            progress.attempts.fetch_add(1, Ordering::Relaxed);
            let mut request = client.post(&url).body(body.clone());
            if !auth.is_empty() {
                request = request.header(reqwest::header::AUTHORIZATION, auth);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    progress.ok.fetch_add(1, Ordering::Relaxed);
                    sent(load, tracker, first);
                    break;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_millis(200));
                    if status == 429 {
                        progress.throttled.fetch_add(1, Ordering::Relaxed);
                    } else {
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                }
                Err(_) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// An OTLP export of `n` log records with ids from `first`: the fields
/// `write_event` writes, as a record's body and attributes.
fn otlp_batch(
    first: u64,
    n: usize,
    size: usize,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let kv = |key: &str, v: Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let records = (first..first + n as u64)
        .map(|id| LogRecord {
            severity_text: crate::seq::level(id).into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue("x".repeat(size.saturating_sub(100)))),
            }),
            attributes: vec![
                kv("seq", Value::IntValue(id as i64)),
                kv("status", Value::IntValue(crate::seq::status(id).into())),
            ],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", Value::StringValue("loadtest".into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// An OTel SDK's exporter: exports retried on RESOURCE_EXHAUSTED and
/// UNAVAILABLE after a short pause, as SDKs do, until taken or the run ends.
/// A throughput run sends one export encoded once (`grpc_bytes`).
async fn otlp(load: &Load, rate: u64, deadline: Instant, tracker: &Tracker, progress: &Progress) {
    use prost::Message as _;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let url = format!("http://{}", load.target);
    let mut client = loop {
        let endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("generator: otlp endpoint {url}: {e}");
                return;
            }
        };
        let endpoint = endpoint
            .initial_stream_window_size(crate::receiver::otlp::WINDOW)
            .initial_connection_window_size(crate::receiver::otlp::WINDOW * 4);
        match endpoint.connect().await {
            Ok(c) => break tonic::client::Grpc::new(c),
            Err(_) if running(deadline) => {
                progress.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    };
    let mut pacer = Pacer::new(rate);
    let encode =
        |first| bytes::Bytes::from(otlp_batch(first, load.batch, load.event_bytes).encode_to_vec());
    let prepared = encode(0);
    while running(deadline) {
        pacer.admit(load.batch as u64).await;
        let (first, request) = if load.track_ids {
            let first = tracker.reserve(load.batch as u64);
            (first, encode(first))
        } else {
            (0, prepared.clone())
        };
        while running(deadline) {
            progress.attempts.fetch_add(1, Ordering::Relaxed);
            let answer = match client.ready().await {
                Ok(()) => {
                    let req = tonic::Request::new(request.clone());
                    client
                        .unary(req, path.clone(), crate::grpc_bytes::Raw)
                        .await
                }
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            match answer {
                Ok(_) => {
                    progress.ok.fetch_add(1, Ordering::Relaxed);
                    sent(load, tracker, first);
                    break;
                }
                Err(s) => {
                    if s.code() == tonic::Code::ResourceExhausted {
                        progress.throttled.fetch_add(1, Ordering::Relaxed);
                    } else {
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

async fn udp(load: &Load, rate: u64, deadline: Instant, tracker: &Tracker, progress: &Progress) {
    let socket = match UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("generator: udp socket: {e}");
            return;
        }
    };
    if let Err(e) = socket.connect(load.target).await {
        eprintln!("generator: udp connect {}: {e}", load.target);
        return;
    }
    let mut pacer = Pacer::new(rate);
    let mut buf = Vec::with_capacity(load.batch * (load.event_bytes + 1));
    while running(deadline) {
        pacer.admit(load.batch as u64).await;
        let first = tracker.reserve(load.batch as u64);
        batch(&mut buf, first, load.batch, load.event_bytes, load.protocol);
        progress.attempts.fetch_add(1, Ordering::Relaxed);
        match socket.send(&buf).await {
            Ok(_) => {
                sent(load, tracker, first);
            }
            Err(_) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
