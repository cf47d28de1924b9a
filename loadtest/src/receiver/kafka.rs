//! A Kafka receiver: a real broker (Tansu, started by `scripts/peers`)
//! behind a small proxy, and a consumer that hands every record of the
//! topic to the sink.
//!
//! A `Down` window is a lost broker: the proxy first refuses produce
//! requests, then waits until the consumer has read each partition to its
//! high watermark (so the broker holds nothing the consumer has not read —
//! its memory storage is gone when it dies), then the consumer is stopped
//! and the broker killed with SIGKILL. When the window ends a new broker
//! starts on the same port, empty, the topic is created again and a new
//! consumer reads it. Clients talk to the proxy (the broker advertises its
//! port), so the restart is invisible to them but for the outage.
//!
//! A `Hang` window stops the broker's process (SIGSTOP) and continues it
//! (SIGCONT) when the window ends: a hung broker, its connections open.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Handle, Sink};
use crate::fault::Schedule;
use crate::process::Process;

/// The topic every Kafka scenario writes and reads.
pub const TOPIC: &str = "loadtest";
pub const PARTITIONS: i32 = 3;

/// Kafka's Produce request.
const PRODUCE: i16 = 0;
/// How long after produce requests are refused the consumer must still
/// find itself at every partition's high watermark: its fetches since then
/// have seen everything the broker took.
const SETTLE: Duration = Duration::from_millis(500);
/// At most this long (then the loss shows in the report as it is).
const CATCH_UP: Duration = Duration::from_secs(60);

/// The consumer's last look at the topic: when, and whether it had read
/// every partition to the high watermark its fetches reported.
#[derive(Clone, Copy)]
pub struct Position {
    pub at: Instant,
    pub caught_up: bool,
}

pub type Shared = Arc<Mutex<Position>>;

/// A position nobody has looked at yet.
pub fn position() -> Shared {
    Arc::new(Mutex::new(Position {
        at: Instant::now(),
        caught_up: false,
    }))
}

/// A broker in `dir`, listening on `port`, advertising `advertised`.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    advertised: u16,
    runs: u32,
    process: Option<Process>,
}

impl Broker {
    pub fn new(dir: &Path, port: u16, advertised: u16) -> Self {
        Broker {
            dir: dir.to_path_buf(),
            port,
            advertised,
            runs: 0,
            process: None,
        }
    }

    /// Start it (empty) and create the topic.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.runs += 1;
        let dir = self.dir.join(format!("tansu-{}", self.runs));
        let p = super::peer("tansu", &dir, self.port, &[self.advertised.to_string()]).await?;
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        self.process = Some(p);
        create_topic(&addr.to_string()).await
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            crate::proxy::freeze(p.pid(), false);
            let _ = p.kill();
        }
    }

    /// Stop (SIGSTOP) or continue (SIGCONT) the broker's process.
    fn freeze(&self, stop: bool) {
        if let Some(p) = &self.process {
            crate::proxy::freeze(p.pid(), stop);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Create the topic, retrying while a new broker settles. The admin client
/// lives only for this: a client that outlives a broker restart reads the
/// new broker's metadata against its old cache.
async fn create_topic(brokers: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("kafka admin client")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        match admin.create_topics(&[topic], &opts).await {
            // Already there: an earlier attempt that timed out on our side
            // created it (each broker run starts from an empty directory,
            // so nothing else could have).
            Ok(r)
                if r.iter().all(|r| {
                    matches!(r, Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)))
                }) =>
            {
                return Ok(());
            }
            other if Instant::now() > deadline => {
                anyhow::bail!("cannot create topic {TOPIC}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Read the topic from the beginning into `sink` on a thread, until
/// `running` is cleared; returns the thread to join. After each poll it
/// records in `position` whether it has read every partition to the high
/// watermark of its last fetch (librdkafka's cached one: Tansu's
/// ListOffsets answers a wrong high watermark, its fetches the right one).
pub fn consume(
    brokers: &str,
    sink: Sink,
    running: Arc<AtomicBool>,
    position: Shared,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-loadtest-receiver")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .context("kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let topic = std::ffi::CString::new(TOPIC)?;
    Ok(std::thread::spawn(move || {
        let mut lines = Vec::with_capacity(1 << 20);
        // The next offset to read, per partition.
        let mut next = [0i64; PARTITIONS as usize];
        while running.load(Ordering::Acquire) {
            let mut wait = Duration::from_millis(100);
            while lines.len() < 1 << 20 {
                match c.poll(wait) {
                    Some(Ok(m)) => {
                        lines.extend_from_slice(m.payload().unwrap_or_default());
                        lines.push(b'\n');
                        if let Some(n) = next.get_mut(m.partition() as usize) {
                            *n = (*n).max(m.offset() + 1);
                        }
                        wait = Duration::ZERO;
                    }
                    Some(Err(e)) => {
                        eprintln!("kafka receiver: {e}");
                        break;
                    }
                    None => break,
                }
            }
            sink.take(&lines);
            lines.clear();
            let caught_up = (0..PARTITIONS).all(|p| {
                let (mut low, mut high) = (0i64, 0i64);
                // SAFETY: the consumer's handle and the topic's C string
                // live for the call; librdkafka only reads its cache here.
                let r = unsafe {
                    rdkafka::bindings::rd_kafka_get_watermark_offsets(
                        c.client().native_ptr(),
                        topic.as_ptr(),
                        p,
                        &mut low,
                        &mut high,
                    )
                };
                r == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                    && next[p as usize] >= high
            });
            if let Ok(mut pos) = position.lock() {
                *pos = Position {
                    at: Instant::now(),
                    caught_up,
                };
            }
        }
    }))
}

/// Wait until the consumer, looking after `since` (plus `SETTLE`), found
/// itself at every partition's high watermark.
async fn caught_up(position: &Shared, since: Instant) {
    let deadline = Instant::now() + CATCH_UP;
    while Instant::now() < deadline {
        let p = position.lock().map(|p| *p).ok();
        if p.is_some_and(|p| p.caught_up && p.at >= since + SETTLE) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("kafka receiver: the consumer did not catch up within {CATCH_UP:?}");
}

/// The receiver for chaos scenarios: see the module documentation.
pub async fn spawn(
    addr: SocketAddr,
    schedule: Schedule,
    sink: Sink,
    dir: &Path,
) -> anyhow::Result<Handle> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("kafka receiver: bind {addr}"))?;
    let port = super::free_port()?.port();
    let accepting = Arc::new(AtomicBool::new(true));
    let (stop, stop_rx) = watch::channel(false);
    let stats = sink.stats.clone();
    // First: the broker advertises the proxy, so even creating the topic
    // goes through it.
    tokio::spawn(proxy(listener, port, accepting.clone(), stop_rx.clone()));
    let mut broker = Broker::new(dir, port, addr.port());
    broker.start().await?;
    tokio::spawn(supervise(broker, addr, schedule, sink, accepting, stop_rx));
    Ok(Handle { addr, stats, stop })
}

async fn supervise(
    mut broker: Broker,
    addr: SocketAddr,
    schedule: Schedule,
    sink: Sink,
    accepting: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut position = position();
    let mut running = Arc::new(AtomicBool::new(true));
    let mut reader = consume(
        &addr.to_string(),
        sink.clone(),
        running.clone(),
        position.clone(),
    )
    .ok();
    let mut hung = false;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if schedule.is_hung() != hung {
            hung = !hung;
            broker.freeze(hung);
        }
        if schedule.is_down() && broker.process.is_some() {
            // Refuse produce requests, let the consumer read what the
            // broker took, then lose the broker.
            accepting.store(false, Ordering::Release);
            caught_up(&position, Instant::now()).await;
            running.store(false, Ordering::Release);
            if let Some(r) = reader.take() {
                let _ = tokio::task::spawn_blocking(move || r.join()).await;
            }
            broker.kill();
        } else if !schedule.is_down() && broker.process.is_none() {
            if let Err(e) = broker.start().await {
                eprintln!("kafka receiver: cannot restart the broker: {e:#}");
                continue;
            }
            running = Arc::new(AtomicBool::new(true));
            position = self::position();
            reader = consume(
                &addr.to_string(),
                sink.clone(),
                running.clone(),
                position.clone(),
            )
            .ok();
            accepting.store(true, Ordering::Release);
        }
    }
    if hung {
        broker.freeze(false);
    }
    running.store(false, Ordering::Release);
    if let Some(r) = reader.take() {
        let _ = tokio::task::spawn_blocking(move || r.join()).await;
    }
}

/// Forward connections to the broker; while not `accepting`, a connection
/// that sends a produce request is closed instead.
async fn proxy(
    listener: TcpListener,
    port: u16,
    accepting: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => {
                let Ok((client, _)) = r else { continue };
                let accepting = accepting.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = forward(client, server, accepting).await;
                    }
                });
            }
        }
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    accepting: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
    let mut frame = Vec::new();
    let result = loop {
        let mut len = [0u8; 4];
        if let Err(e) = cr.read_exact(&mut len).await {
            break Err(e);
        }
        let n = i32::from_be_bytes(len).max(0) as usize;
        frame.resize(n, 0);
        if let Err(e) = cr.read_exact(&mut frame).await {
            break Err(e);
        }
        let api_key = if n >= 2 {
            i16::from_be_bytes([frame[0], frame[1]])
        } else {
            -1
        };
        if api_key == PRODUCE && !accepting.load(Ordering::Acquire) {
            break Ok(());
        }
        if let Err(e) = sw.write_all(&len).await {
            break Err(e);
        }
        if let Err(e) = sw.write_all(&frame).await {
            break Err(e);
        }
    };
    back.abort();
    result
}
