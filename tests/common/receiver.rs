//! A real HTTP receiver for destination tests, with fault injection.
//!
//! It speaks HTTP/1.1 through hyper, decodes gzip and zstd request bodies,
//! records every event it accepted (one per NDJSON line or array element),
//! counts requests and the peak number in flight, and answers according to a
//! `Behavior` the test can change at any time. `kill` closes the listener and
//! every open connection, so the port refuses connections until `restart`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Decides the answer to one request from its events.
pub type Decide = Arc<dyn Fn(&[String]) -> Reply + Send + Sync>;

/// How the receiver answers.
#[derive(Clone)]
pub enum Behavior {
    /// 200 for everything.
    Ok,
    /// This status (with an optional `Retry-After`) and body for everything.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Wait, then 200.
    Delay(Duration),
    /// Decide per request from the decoded events.
    Custom(Decide),
    /// An overloaded server: beyond `capacity` requests in flight, 429 at
    /// once; otherwise answer 200 after `delay`.
    Overload { capacity: usize, delay: Duration },
    /// Hold every request until the gate opens (`true`), then 200: a peer
    /// that has stopped answering, for as long as the test wants.
    Held(tokio::sync::watch::Receiver<bool>),
}

/// A custom answer.
pub struct Reply {
    pub code: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::code(200)
    }

    pub fn code(code: u16) -> Reply {
        Reply {
            code,
            retry_after: None,
            body: String::new(),
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The request's path (`/ingest`).
    pub path: String,
    pub status: u16,
    pub content_encoding: Option<String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    /// The body after decompression.
    pub body: Bytes,
    pub events: Vec<String>,
}

pub struct State {
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<Received>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    count: AtomicU64,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    tasks: Option<JoinSet<()>>,
    /// The port of `start`, leased for the receiver's lifetime: a restart
    /// after `kill` finds it free (an ephemeral port could meanwhile be any
    /// connection's).
    _lease: Option<super::real_peer::Ports<1>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let lease = super::real_peer::free_ports::<1>();
        let mut r = Self::start_on(([127, 0, 0, 1], lease.ports[0]).into()).await;
        r._lease = Some(lease);
        r
    }

    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let state = Arc::new(State {
            behavior: Mutex::new(Behavior::Ok),
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            count: AtomicU64::new(0),
        });
        let mut r = Receiver {
            addr,
            state,
            tasks: None,
            _lease: None,
        };
        r.listen(addr).await;
        r
    }

    async fn listen(&mut self, addr: SocketAddr) {
        let listener = TcpListener::bind(addr).await.expect("receiver binds");
        self.addr = listener.local_addr().unwrap();
        let state = self.state.clone();
        let mut tasks = JoinSet::new();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let conns2 = conns.clone();
        tasks.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                conns2.lock().unwrap().spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        // Keep the connection set alive with the accept loop; aborting the
        // set aborts every connection.
        tasks.spawn(async move {
            let _keep = conns;
            std::future::pending::<()>().await;
        });
        self.tasks = Some(tasks);
    }

    /// Close the listener and every connection: the port refuses from now on.
    pub async fn kill(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
            while t.join_next().await.is_some() {}
        }
    }

    /// Listen again on the same port.
    pub async fn restart(&mut self) {
        let addr = self.addr;
        self.listen(addr).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, b: Behavior) {
        *self.state.behavior.lock().unwrap() = b;
    }

    pub fn status(&self, code: u16) {
        self.set(Behavior::Status {
            code,
            retry_after: None,
            body: format!("status {code} from the test receiver"),
        });
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every event of every request answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| r.events)
            .collect()
    }

    pub fn request_count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    pub fn peak_in_flight(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.tasks.as_mut() {
            t.abort_all();
        }
    }
}

fn decode(encoding: Option<&str>, body: Bytes) -> Bytes {
    match encoding {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("valid gzip from sluice");
            out.into()
        }
        Some("zstd") => zstd::stream::decode_all(&body[..])
            .expect("valid zstd from sluice")
            .into(),
        _ => body,
    }
}

fn split_events(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let v: Vec<serde_json::Value> = serde_json::from_str(trimmed).expect("a JSON array");
        return v.iter().map(|e| e.to_string()).collect();
    }
    trimmed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.peak.fetch_max(now, Ordering::SeqCst);
    state.count.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_encoding = header("content-encoding");
    let content_type = header("content-type");
    let authorization = header("authorization");
    let path = req.uri().path().to_string();
    let raw = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = decode(content_encoding.as_deref(), raw);
    let events = split_events(&body);
    let behavior = state.behavior.lock().unwrap().clone();
    let (code, retry_after, text) = match behavior {
        Behavior::Ok => (200, None, String::new()),
        Behavior::Status {
            code,
            retry_after,
            body,
        } => (code, retry_after, body),
        Behavior::Delay(d) => {
            tokio::time::sleep(d).await;
            (200, None, String::new())
        }
        Behavior::Custom(f) => {
            let r = f(&events);
            (r.code, r.retry_after, r.body)
        }
        Behavior::Held(mut gate) => {
            let _ = gate.wait_for(|open| *open).await;
            (200, None, String::new())
        }
        Behavior::Overload { capacity, delay } => {
            if now > capacity {
                (429, None, "overloaded".to_string())
            } else {
                tokio::time::sleep(delay).await;
                (200, None, String::new())
            }
        }
    };
    state.requests.lock().unwrap().push(Received {
        at: Instant::now(),
        path,
        status: code,
        content_encoding,
        content_type,
        authorization,
        body,
        events,
    });
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ra) = retry_after {
        resp.headers_mut()
            .insert("retry-after", ra.parse().expect("valid header"));
    }
    Ok(resp)
}
