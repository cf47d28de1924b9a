//! Accepting connections, for every server sluice runs (the TCP, HTTP, OTLP
//! and sluice sources, the API), with or without TLS.
//!
//! One task accepts; each TLS handshake runs in a task of its own under a
//! deadline, so a client that connects and never finishes its handshake
//! holds only its own socket, never the accept loop. Connections that are
//! ready (plain, or handshaken) reach the server through `Incoming`, which
//! both axum (`serve::Listener`) and tonic (a stream) take.
//!
//! A failed handshake is counted `sluice_source_rejected_total{reason="tls"}`
//! and logged at `warn` the first time each cause is seen (a plaintext
//! client, no client certificate, an unknown issuer, ...), at `debug`
//! after: one misconfigured client must not flood the log.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::{RejectReason, SourceMetrics};
use crate::tls::Acceptor;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct handshake failure causes remembered for "log once".
const CAUSES_KEPT: usize = 64;

/// An accepted connection. It holds its place under `max_connections`
/// until it is dropped, and fails with `TimedOut` once it has waited on its
/// peer for `idle_timeout` without a byte either way.
pub struct Conn {
    io: Io,
    idle: Option<Idle>,
    activity: Arc<Activity>,
    _place: Option<OwnedSemaphorePermit>,
}

/// What a connection has read, for telling a slow request from an idle
/// keep-alive connection when a server's timeout closes it.
#[derive(Default)]
pub struct Activity {
    read: AtomicU64,
    read_at_last_write: AtomicU64,
}

impl Activity {
    /// Whether the client is mid-request (sent bytes since sluice last
    /// answered) or never sent anything at all: a timeout then is the
    /// client's doing, not a keep-alive connection ending normally.
    pub fn was_sending(&self) -> bool {
        let read = self.read.load(Ordering::Relaxed);
        read == 0 || read > self.read_at_last_write.load(Ordering::Relaxed)
    }
}

impl Conn {
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r
            && *n > 0
        {
            let read = self.activity.read.load(Ordering::Relaxed);
            self.activity
                .read_at_last_write
                .store(read, Ordering::Relaxed);
        }
    }
}

/// The idle deadline. It runs only while a read or a write waits on the
/// peer: time sluice spends elsewhere (routing under backpressure) never
/// counts against the client.
struct Idle {
    after: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
    rejects: Option<SourceMetrics>,
}

impl Idle {
    fn new(after: Duration, rejects: Option<SourceMetrics>) -> Idle {
        Idle {
            after,
            deadline: Box::pin(tokio::time::sleep(after)),
            waiting: false,
            rejects,
        }
    }

    /// After an I/O call: progress clears the wait; a wait starts (or goes
    /// on) the deadline, and past it the connection fails.
    fn after_poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.waiting = false;
            return r;
        }
        if !self.waiting {
            self.waiting = true;
            let at = tokio::time::Instant::now() + self.after;
            self.deadline.as_mut().reset(at);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                if let Some(m) = &self.rejects {
                    m.reject(RejectReason::Timeout, 1);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {:?}", self.after),
                )))
            }
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What a listener does besides accepting.
pub struct Accepting {
    /// Handshake first, with this configuration.
    pub tls: Option<Acceptor>,
    /// Where failed handshakes are counted (none for the API).
    pub rejects: Option<SourceMetrics>,
    /// Accept no more while this many are open.
    pub max_connections: Option<usize>,
    /// Close a connection idle this long (`Conn`).
    pub idle_timeout: Option<Duration>,
    /// Stop accepting and let go of the address.
    pub stop: CancellationToken,
    /// Names the server in logs.
    pub name: Arc<str>,
}

/// Connections ready to be served.
pub struct Incoming {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

impl Incoming {
    /// Start accepting on `listener`.
    pub fn start(listener: TcpListener, accepting: Accepting) -> Incoming {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, accepting, tx).in_current_span());
        Incoming { rx, local }
    }

    /// The next connection; `None` once the listener stopped.
    pub async fn next(&mut self) -> Option<(Conn, SocketAddr)> {
        self.rx.recv().await
    }

    /// For tonic's `serve_with_incoming*`.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Conn>> + Send + 'static {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|(c, _)| (Ok(c), rx))
        })
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // Stopped: the server's graceful shutdown ends it.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    mut accepting: Accepting,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
) {
    let causes = Arc::new(Mutex::new(HashSet::new()));
    let limit = accepting
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n)));
    let mut backoff = Duration::from_millis(10);
    let accept_errors = crate::repeats::Repeats::default();
    loop {
        let place = match &limit {
            Some(l) => tokio::select! {
                _ = accepting.stop.cancelled() => break,
                p = l.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
            },
            None => None,
        };
        let accepted = tokio::select! {
            _ = accepting.stop.cancelled() => break,
            _ = tx.closed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                if let Some(unlogged) = accept_errors.cleared() {
                    tracing::info!(server = %accepting.name, unlogged, "accepting connections again");
                }
                a
            }
            Err(e) => {
                // Out of file descriptors, usually: wait for some to close
                // rather than spin on the error.
                if let Some(repeated) = accept_errors.occurred(&e.kind().to_string()) {
                    tracing::warn!(server = %accepting.name, error = %e, repeated,
                        "accept failed; backing off (logged once a minute per cause)");
                }
                tokio::select! {
                    _ = accepting.stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = accepting.tls.as_mut() else {
            let conn = Conn {
                io: Io::Plain(stream),
                idle: accepting
                    .idle_timeout
                    .map(|d| Idle::new(d, accepting.rejects.clone())),
                activity: Arc::default(),
                _place: place,
            };
            if tx.send((conn, peer)).await.is_err() {
                break;
            }
            continue;
        };
        let handshake = tokio_rustls::TlsAcceptor::from(tls.config());
        let failed = Failed {
            rejects: accepting.rejects.clone(),
            causes: causes.clone(),
            name: accepting.name.clone(),
            peer,
        };
        let tx = tx.clone();
        let stop = accepting.stop.clone();
        let idle = accepting
            .idle_timeout
            .map(|d| Idle::new(d, accepting.rejects.clone()));
        tokio::spawn(
            async move {
                let done = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake.accept(stream)) => r,
                };
                match done {
                    Ok(Ok(s)) => {
                        let conn = Conn {
                            io: Io::Tls(Box::new(s)),
                            idle,
                            activity: Arc::default(),
                            _place: place,
                        };
                        let _ = tx.send((conn, peer)).await;
                    }
                    Ok(Err(e)) => failed.report(&cause(&e)),
                    Err(_) => failed.report("the handshake timed out"),
                }
            }
            .in_current_span(),
        );
    }
}

/// A failed handshake's report.
struct Failed {
    rejects: Option<SourceMetrics>,
    causes: Arc<Mutex<HashSet<String>>>,
    name: Arc<str>,
    peer: SocketAddr,
}

impl Failed {
    fn report(&self, cause: &str) {
        if let Some(m) = &self.rejects {
            m.reject(RejectReason::Tls, 1);
        }
        let first = self
            .causes
            .lock()
            .map(|mut seen| seen.len() < CAUSES_KEPT && seen.insert(cause.to_string()))
            .unwrap_or(false);
        if first {
            tracing::warn!(server = %self.name, peer = %self.peer, %cause,
                "TLS handshake failed (logged once per cause; counted in sluice_source_rejected_total{{reason=\"tls\"}})");
        } else {
            tracing::debug!(server = %self.name, peer = %self.peer, %cause, "TLS handshake failed");
        }
    }
}

/// A handshake error as a stable cause: rustls's own message (no peer
/// data in it), or the I/O error's kind.
fn cause(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => "the client closed the connection".into(),
            k => k.to_string(),
        },
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let n = buf.filled().len().saturating_sub(before) as u64;
        if n > 0 {
            this.activity.read.fetch_add(n, Ordering::Relaxed);
        }
        match &mut this.idle {
            Some(idle) => idle.after_poll(cx, r),
            None => r,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.wrote(&r);
        match &mut this.idle {
            Some(idle) => idle.after_poll(cx, r),
            None => r,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.wrote(&r);
        match &mut this.idle {
            Some(idle) => idle.after_poll(cx, r),
            None => r,
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(feature = "grpc")]
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        tonic::transport::server::TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: tcp.peer_addr().ok(),
        }
    }
}
