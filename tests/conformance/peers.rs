//! One real peer per destination type, behind the `Peer` trait the
//! conformance scenarios drive. A peer says what it receives (in arrival
//! order) and, where its protocol allows, how to take it down and bring it
//! back, and how to make it refuse events for good.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::Sluice;
use crate::common::receiver::{Behavior, Receiver};
use crate::common::tcp_receiver::{Mode, TcpReceiver};
use tokio::runtime::Runtime;

pub trait Peer {
    /// The `type:` and the peer-specific keys of the destination, as YAML
    /// lines indented for a destination's body (the scenario adds its own).
    fn destination(&self) -> String;
    /// Every event line received, in arrival order.
    fn received(&self) -> Vec<String>;
    /// Take the peer away (its port refuses, its pipe stops being read).
    fn down(&mut self, rt: &Runtime) {
        let _ = rt;
        unreachable!("this peer has no outage scenario")
    }
    /// Bring it back where it was.
    fn up(&mut self, rt: &Runtime) {
        let _ = rt;
        unreachable!("this peer has no outage scenario")
    }
    /// Refuse every event from now on, permanently; returns what the dead
    /// letter must say (`status`, `response`).
    fn reject(&self) -> (u16, String) {
        unreachable!("this peer has no rejection scenario")
    }
    /// Most events one request may carry (the scenarios' batches are
    /// capped to it).
    fn max_batch(&self) -> u64 {
        100
    }
    /// How many times fewer, and bigger, events the outage scenarios send:
    /// a slow peer (moto serves a few hundred requests a second) gets the
    /// same bytes in fewer requests.
    fn scale(&self) -> u64 {
        1
    }
    /// How long the outage scenarios wait for every event once the peer is
    /// back: longer for a peer that takes a few hundred requests a second.
    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }
    /// More `request:` keys the peer needs (a call timeout, say), joined to
    /// the scenario's own.
    fn request(&self) -> &'static str {
        ""
    }
    /// A new sluice process started (a console peer reads its stdout).
    fn attach(&mut self, sluice: &mut Sluice) {
        let _ = sluice;
    }
}

/// `type: http` to an HTTP server in the test.
pub struct HttpPeer(Receiver);

impl HttpPeer {
    pub fn start(rt: &Runtime) -> Self {
        HttpPeer(rt.block_on(Receiver::start()))
    }
}

impl Peer for HttpPeer {
    fn destination(&self) -> String {
        format!("    type: http\n    url: \"{}\"\n", self.0.url("/ingest"))
    }
    fn received(&self) -> Vec<String> {
        self.0.accepted()
    }
    fn down(&mut self, rt: &Runtime) {
        rt.block_on(self.0.kill());
    }
    fn up(&mut self, rt: &Runtime) {
        rt.block_on(self.0.restart());
    }
    fn reject(&self) -> (u16, String) {
        let body = "schema mismatch: field `seq` is not allowed".to_string();
        self.0.set(Behavior::Status {
            code: 400,
            retry_after: None,
            body: body.clone(),
        });
        (400, body)
    }
}

/// `type: tcp` to a TCP server in the test reading lines.
pub struct TcpPeer(TcpReceiver);

impl TcpPeer {
    pub fn start(rt: &Runtime) -> Self {
        TcpPeer(rt.block_on(TcpReceiver::start(Mode::Lines)))
    }
}

impl Peer for TcpPeer {
    fn destination(&self) -> String {
        format!("    type: tcp\n    address: \"{}\"\n", self.0.address())
    }
    fn received(&self) -> Vec<String> {
        self.0.events()
    }
    fn down(&mut self, rt: &Runtime) {
        rt.block_on(self.0.kill());
    }
    fn up(&mut self, rt: &Runtime) {
        rt.block_on(self.0.restart());
    }
}

/// `type: udp` to a UDP socket in the test.
pub struct UdpPeer {
    address: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl UdpPeer {
    pub fn start() -> Self {
        // A receive buffer large enough for the whole test: on a busy
        // machine the reader thread may fall behind, and a datagram that
        // finds the buffer full is gone (that is UDP, not sluice).
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("UDP socket");
        s.set_recv_buffer_size(4 << 20).expect("SO_RCVBUF");
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        s.bind(&addr.into()).expect("bind UDP");
        let socket: UdpSocket = s.into();
        let address = socket.local_addr().unwrap().to_string();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let mut l = sink.lock().unwrap();
                l.extend(text.lines().filter(|s| !s.is_empty()).map(str::to_string));
            }
        });
        UdpPeer { address, lines }
    }
}

impl Peer for UdpPeer {
    fn destination(&self) -> String {
        format!("    type: udp\n    address: \"{}\"\n", self.address)
    }
    fn received(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// `type: file`: the file on disk is the peer.
pub struct FilePeer {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl FilePeer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        FilePeer {
            path: dir.path().join("events.ndjson"),
            _dir: dir,
        }
    }
}

impl Peer for FilePeer {
    fn destination(&self) -> String {
        format!("    type: file\n    path: \"{}\"\n", self.path.display())
    }
    fn received(&self) -> Vec<String> {
        crate::common::read_lines(&self.path)
    }
}

/// `type: filesystem`: finished files in an output directory, read in name
/// order (the order they were written). Down: the output directory is
/// moved away and a file put in its place, so every move fails.
pub struct FilesystemPeer {
    out: PathBuf,
    away: PathBuf,
    _dir: tempfile::TempDir,
}

impl FilesystemPeer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        FilesystemPeer {
            out: dir.path().join("out"),
            away: dir.path().join("out.away"),
            _dir: dir,
        }
    }
}

impl Peer for FilesystemPeer {
    fn destination(&self) -> String {
        format!(
            "    type: filesystem\n    output_dir: \"{}\"\n    partition: \"\"\n    max_file_bytes: 64KiB\n    max_file_idle: 100ms\n",
            self.out.display()
        )
    }
    fn received(&self) -> Vec<String> {
        crate::common::staged::all_lines(&self.out)
    }
    fn down(&mut self, _: &Runtime) {
        std::fs::create_dir_all(&self.out).unwrap();
        std::fs::rename(&self.out, &self.away).unwrap();
        std::fs::write(&self.out, b"not a directory").unwrap();
    }
    fn up(&mut self, _: &Runtime) {
        std::fs::remove_file(&self.out).unwrap();
        std::fs::rename(&self.away, &self.out).unwrap();
    }
}

/// `type: console`: sluice's standard output, read by the test. Down: the
/// reader stops reading, so the pipe fills and writes block, exactly what a
/// stuck downstream process does.
pub struct ConsolePeer {
    lines: Arc<Mutex<Vec<String>>>,
    paused: Arc<AtomicBool>,
}

impl ConsolePeer {
    pub fn start() -> Self {
        ConsolePeer {
            lines: Arc::new(Mutex::new(Vec::new())),
            paused: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Peer for ConsolePeer {
    fn destination(&self) -> String {
        "    type: console\n".into()
    }
    fn received(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
    fn down(&mut self, _: &Runtime) {
        self.paused.store(true, Ordering::SeqCst);
    }
    fn up(&mut self, _: &Runtime) {
        self.paused.store(false, Ordering::SeqCst);
    }
    fn attach(&mut self, sluice: &mut Sluice) {
        let out = sluice.stdout.take().expect("stdout not taken yet");
        let (sink, paused) = (self.lines.clone(), self.paused.clone());
        std::thread::spawn(move || {
            // Small reads, so a pause stops consumption almost at once.
            let mut r = BufReader::with_capacity(4096, out);
            let mut line = String::new();
            loop {
                while paused.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => sink
                        .lock()
                        .unwrap()
                        .push(line.trim_end_matches('\n').to_string()),
                }
            }
        });
    }
}

/// `type: kafka` to a Tansu broker; one partition, so arrival order is the
/// produce order. Down is a hung broker (SIGSTOP): connections stay open
/// and nothing is answered, the outage librdkafka is slowest to see.
/// What a peer read on a thread has received: all of it once a second
/// passes with nothing new.
fn settled(lines: &Mutex<Vec<String>>) -> Vec<String> {
    let mut seen = usize::MAX;
    loop {
        let n = lines.lock().unwrap().len();
        if n == seen {
            return lines.lock().unwrap().clone();
        }
        seen = n;
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(feature = "kafka")]
pub struct KafkaPeer {
    broker: crate::common::kafka::Tansu,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

#[cfg(feature = "kafka")]
impl KafkaPeer {
    pub fn start() -> Self {
        use crate::common::kafka::{Tansu, create_topic, follow_topic};
        let broker = Tansu::start();
        create_topic(&broker.brokers(), "conformance", 1);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        follow_topic(
            &broker.brokers(),
            "conformance",
            lines.clone(),
            stop.clone(),
        );
        KafkaPeer {
            broker,
            lines,
            stop,
        }
    }
}

#[cfg(feature = "kafka")]
impl Drop for KafkaPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.broker.resume();
    }
}

#[cfg(feature = "kafka")]
impl Peer for KafkaPeer {
    fn destination(&self) -> String {
        format!(
            "    type: kafka\n    brokers: [\"{}\"]\n    topic: conformance\n",
            self.broker.brokers()
        )
    }
    fn received(&self) -> Vec<String> {
        // The topic is read on a thread (loopback, one partition).
        settled(&self.lines)
    }
    fn down(&mut self, _: &Runtime) {
        self.broker.pause();
    }
    fn up(&mut self, _: &Runtime) {
        self.broker.resume();
    }
}

/// Follows a queue, stream or subscription on a thread, recording every
/// event line; resumes the peer when dropped (a test that fails while it
/// is paused must not leave it hung).
pub struct Follower<P> {
    pub peer: P,
    resume: fn(&P),
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl<P> Follower<P> {
    fn follow<F, Fut>(peer: P, resume: fn(&P), mut poll: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Vec<String>>,
    {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            while !s.load(Ordering::SeqCst) {
                let got = rt.block_on(poll());
                if got.is_empty() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                l.lock().unwrap().extend(got);
            }
        });
        Follower {
            peer,
            resume,
            lines,
            stop,
        }
    }

    fn settled(&self) -> Vec<String> {
        settled(&self.lines)
    }
}

impl<P> Drop for Follower<P> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        (self.resume)(&self.peer);
    }
}

#[cfg(all(feature = "sqs", feature = "kinesis"))]
type AwsFollower = Follower<crate::common::aws::AwsPeer>;

/// `type: sqs` to a FIFO queue in moto (one message group, so the queue
/// keeps the order the scenarios check).
#[cfg(all(feature = "sqs", feature = "kinesis"))]
pub struct SqsPeer {
    f: AwsFollower,
    url: String,
}

#[cfg(all(feature = "sqs", feature = "kinesis"))]
impl SqsPeer {
    pub fn start() -> Self {
        use crate::common::aws::{AwsPeer, create_queue, receive_once};
        let peer = AwsPeer::moto();
        let url = create_queue(&peer, "conformance.fifo");
        let (client, u) = (peer.sqs(), url.clone());
        let f = AwsFollower::follow(
            peer,
            |p| p.resume(),
            move || {
                let (c, u) = (client.clone(), u.clone());
                async move {
                    receive_once(&c, &u)
                        .await
                        .into_iter()
                        .map(|m| m.body)
                        .collect()
                }
            },
        );
        SqsPeer { f, url }
    }
}

#[cfg(all(feature = "sqs", feature = "kinesis"))]
impl Peer for SqsPeer {
    fn destination(&self) -> String {
        format!(
            "    type: sqs\n    queue_url: \"{}\"\n    message_group_id: all\n{}",
            self.url,
            self.f.peer.key_lines("    ")
        )
    }
    fn received(&self) -> Vec<String> {
        self.f.settled()
    }
    fn max_batch(&self) -> u64 {
        10
    }
    fn scale(&self) -> u64 {
        20
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(180)
    }
    fn down(&mut self, _: &Runtime) {
        self.f.peer.pause();
    }
    fn up(&mut self, _: &Runtime) {
        self.f.peer.resume();
    }
}

/// `type: s3` to a bucket in moto; objects read in key order (the order
/// their files were written), each fetched once. Down: moto hangs.
#[cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]
pub struct S3Peer {
    moto: crate::common::aws::AwsPeer,
    seen: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
}

#[cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]
impl S3Peer {
    pub fn start() -> Self {
        let moto = crate::common::aws::AwsPeer::moto();
        crate::common::s3::create_bucket(&moto, "conformance");
        S3Peer {
            moto,
            seen: Mutex::new(Default::default()),
        }
    }
}

#[cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]
impl Peer for S3Peer {
    // Two closed files may wait for their upload: with the peer hung,
    // writes are refused (backpressure) from the third on, so what happens
    // next is the policy's, not a race with the upload timeout.
    fn destination(&self) -> String {
        format!(
            "    type: s3\n    bucket: conformance\n{}    partition: \"\"\n    max_file_bytes: 64KiB\n    max_file_idle: 100ms\n    max_pending_files: 2\n",
            self.moto.key_lines("    ")
        )
    }
    fn received(&self) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap();
        for o in crate::common::s3::new_objects(&self.moto, "conformance", &seen) {
            seen.insert(o.key, o.lines);
        }
        seen.values().flatten().cloned().collect()
    }
    fn request(&self) -> &'static str {
        // A hung moto is seen as failing within seconds, not a minute.
        "timeout: 2s"
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(120)
    }
    fn down(&mut self, _: &Runtime) {
        self.moto.pause();
    }
    fn up(&mut self, _: &Runtime) {
        self.moto.resume();
    }
}

/// `type: kinesis` to a one-shard stream in kinesalite.
#[cfg(all(feature = "sqs", feature = "kinesis"))]
pub struct KinesisPeer {
    f: AwsFollower,
}

#[cfg(all(feature = "sqs", feature = "kinesis"))]
impl KinesisPeer {
    pub fn start() -> Self {
        use crate::common::aws::{AwsPeer, StreamReader, create_stream};
        let peer = AwsPeer::kinesalite();
        create_stream(&peer, "conformance", 1);
        let client = peer.kinesis();
        let reader = Arc::new(tokio::sync::Mutex::new(None::<StreamReader>));
        let f = AwsFollower::follow(
            peer,
            |p| p.resume(),
            move || {
                let (c, r) = (client.clone(), reader.clone());
                async move {
                    let mut r = r.lock().await;
                    if r.is_none() {
                        *r = Some(StreamReader::new(c, "conformance").await);
                    }
                    let Some(reader) = r.as_mut() else {
                        return Vec::new();
                    };
                    reader
                        .poll()
                        .await
                        .into_iter()
                        .map(|rec| String::from_utf8_lossy(&rec.data).into_owned())
                        .collect()
                }
            },
        );
        KinesisPeer { f }
    }
}

#[cfg(all(feature = "sqs", feature = "kinesis"))]
impl Peer for KinesisPeer {
    fn destination(&self) -> String {
        format!(
            "    type: kinesis\n    stream: conformance\n{}",
            self.f.peer.key_lines("    ")
        )
    }
    fn received(&self) -> Vec<String> {
        self.f.settled()
    }
    /// The emulator's ordered subscription hands a reader about a
    /// thousand messages a second (`block`'s 60,000 took 77 s): fewer,
    /// bigger events.
    fn scale(&self) -> u64 {
        10
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(120)
    }
    fn down(&mut self, _: &Runtime) {
        self.f.peer.pause();
    }
    fn up(&mut self, _: &Runtime) {
        self.f.peer.resume();
    }
}

/// `type: pubsub` to Google's emulator, read through a subscription with
/// message ordering on (every event has the same ordering key, `level`, so
/// the subscription keeps the order the scenarios check).
#[cfg(feature = "pubsub")]
pub struct PubsubPeer {
    f: Follower<crate::common::pubsub::Emulator>,
}

#[cfg(feature = "pubsub")]
impl PubsubPeer {
    pub fn start() -> Self {
        use crate::common::pubsub::Emulator;
        let emulator = Emulator::start();
        emulator.topic("conformance", true);
        let api = emulator.api();
        let f = Follower::follow(emulator, Emulator::resume, move || {
            let got = api.pull("conformance");
            async move {
                got.into_iter()
                    .map(|m| String::from_utf8_lossy(&m.data).into_owned())
                    .collect()
            }
        });
        PubsubPeer { f }
    }
}

#[cfg(feature = "pubsub")]
impl Peer for PubsubPeer {
    fn destination(&self) -> String {
        format!(
            "    type: pubsub\n    project: {}\n    topic: conformance\n    endpoint: \"{}\"\n    ordering_key_field: level\n",
            crate::common::pubsub::PROJECT,
            self.f.peer.endpoint()
        )
    }
    fn received(&self) -> Vec<String> {
        self.f.settled()
    }
    /// The emulator's ordered subscription hands a reader about a
    /// thousand messages a second (`block`'s 60,000 took 77 s): fewer,
    /// bigger events.
    fn scale(&self) -> u64 {
        10
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(120)
    }
    fn down(&mut self, _: &Runtime) {
        self.f.peer.pause();
    }
    fn up(&mut self, _: &Runtime) {
        self.f.peer.resume();
    }
}

/// `type: otlp` over gRPC to the OTLP collector in the test: each event a
/// mapped log record (`msg` its body, `seq` an attribute), read back as
/// `{"seq":N}`. Down is the collector's gRPC server stopped (port refused).
#[cfg(feature = "otlp")]
pub struct OtlpPeer(crate::common::otlp::Running);

#[cfg(feature = "otlp")]
impl OtlpPeer {
    pub fn start(rt: &Runtime) -> Self {
        OtlpPeer(rt.block_on(crate::common::otlp::Collector::start()))
    }
}

#[cfg(feature = "otlp")]
impl Peer for OtlpPeer {
    fn destination(&self) -> String {
        format!("    type: otlp\n    endpoint: \"{}\"\n", self.0.grpc_url())
    }
    fn received(&self) -> Vec<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        self.0
            .collector
            .records()
            .iter()
            .map(|r| {
                let seq = r.attributes.iter().find(|a| a.key == "seq").and_then(|a| {
                    match a.value.as_ref()?.value.as_ref()? {
                        Value::IntValue(i) => Some(*i),
                        _ => None,
                    }
                });
                match seq {
                    Some(s) => format!("{{\"seq\":{s}}}"),
                    None => panic!("a record without its seq attribute: {r:?}"),
                }
            })
            .collect()
    }
    fn down(&mut self, rt: &Runtime) {
        rt.block_on(self.0.kill_grpc());
    }
    fn up(&mut self, rt: &Runtime) {
        rt.block_on(self.0.restart_grpc());
    }
}

/// `type: sluice` to an aggregator: a second, real sluice process whose
/// `sluice` source delivers to an HTTP server in the test. Down is the
/// aggregator killed with SIGKILL (its port refuses); up starts it again on
/// the same port.
#[cfg(feature = "sluice")]
pub struct SluicePeer {
    rx: Receiver,
    aggregator: crate::common::aggregator::Aggregator,
}

#[cfg(feature = "sluice")]
impl SluicePeer {
    pub fn start(rt: &Runtime) -> Self {
        let rx = rt.block_on(Receiver::start());
        let aggregator = crate::common::aggregator::Aggregator::start(
            "",
            &format!(
                "routes: [{{ name: all, destination: out }}]\ndestinations:\n  out: {{ type: http, url: \"{}\", batch: {{ timeout: 10ms }} }}\n",
                rx.url("/ingest")
            ),
            &[],
        );
        SluicePeer { rx, aggregator }
    }
}

#[cfg(feature = "sluice")]
impl Peer for SluicePeer {
    fn destination(&self) -> String {
        format!(
            "    type: sluice\n    address: \"{}\"\n",
            self.aggregator.address()
        )
    }
    fn received(&self) -> Vec<String> {
        self.rx.accepted()
    }
    fn down(&mut self, _: &Runtime) {
        self.aggregator.kill();
    }
    fn up(&mut self, _: &Runtime) {
        self.aggregator.restart();
    }
}
