//! An HTTP receiver with faults: takes NDJSON (or a JSON array) bodies,
//! optionally gzip- or zstd-encoded, and answers as its schedule says.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::{Handle, Sink};
use crate::fault::{Fault, Schedule};

const TICK: Duration = Duration::from_millis(50);

pub async fn spawn(addr: SocketAddr, schedule: Schedule, sink: Sink) -> anyhow::Result<Handle> {
    super::listen("http", addr, schedule, sink, connection).await
}

async fn connection(
    stream: tokio::net::TcpStream,
    schedule: Schedule,
    sink: Sink,
    mut down: watch::Receiver<bool>,
) {
    let born_after = schedule.closes_started();
    let sched = schedule.clone();
    let service = service_fn(move |req| {
        let schedule = sched.clone();
        let sink = sink.clone();
        async move { answer(req, schedule, sink, born_after).await }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut closes = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = down.changed() => return,
            _ = closes.tick() => {
                // Dropping the connection future closes the socket at once,
                // requests in flight included: what a crash looks like.
                if schedule.closes_started() > born_after || *down.borrow() {
                    return;
                }
            }
        }
    }
}

/// An error answer makes hyper close the connection without a response.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by fault")
    }
}

impl std::error::Error for Closed {}

async fn answer(
    req: Request<Incoming>,
    schedule: Schedule,
    sink: Sink,
    born_after: usize,
) -> Result<Response<Full<Bytes>>, Closed> {
    let stats = sink.stats.clone();
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    stats.in_flight_peak.fetch_max(now, Ordering::Relaxed);
    let out = handle(req, &schedule, &sink, born_after).await;
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    if let Ok(r) = &out {
        stats.answered(r.status().as_u16());
    }
    out
}

async fn handle(
    req: Request<Incoming>,
    schedule: &Schedule,
    sink: &Sink,
    born_after: usize,
) -> Result<Response<Full<Bytes>>, Closed> {
    match schedule.active() {
        Some(Fault::Stall) => {
            // Never answer; the connection ends when the client gives up.
            std::future::pending::<()>().await;
        }
        Some(Fault::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(Fault::Close) if schedule.closes_started() > born_after => return Err(Closed),
        _ => {}
    }
    let encoding = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Closed),
    };
    if let Some(Fault::Status {
        code,
        rate,
        retry_after,
    }) = schedule.active()
        && fastrand::f64() < *rate
    {
        let mut r = Response::builder().status(*code);
        if let Some(s) = retry_after {
            r = r.header(hyper::header::RETRY_AFTER, s.to_string());
        }
        return Ok(r
            .body(Full::new(Bytes::from_static(b"fault injected")))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad fault")));
    }
    let body = match decode(&encoding, &body) {
        Ok(b) => b,
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, &e)),
    };
    sink.take(&ndjson(&body));
    Ok(plain(StatusCode::OK, "ok"))
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(text.as_bytes())));
    *r.status_mut() = status;
    r
}

fn decode(encoding: &str, body: &Bytes) -> Result<Bytes, String> {
    match encoding {
        "" | "identity" => Ok(body.clone()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("bad gzip body: {e}"))?;
            Ok(out.into())
        }
        "zstd" => zstd::decode_all(&body[..])
            .map(Into::into)
            .map_err(|e| format!("bad zstd body: {e}")),
        other => Err(format!("unknown content-encoding {other}")),
    }
}

/// NDJSON as it is; a JSON array split into one event per line.
fn ndjson(body: &Bytes) -> std::borrow::Cow<'_, [u8]> {
    let trimmed = body.trim_ascii_start();
    if trimmed.first() != Some(&b'[') {
        return std::borrow::Cow::Borrowed(&body[..]);
    }
    let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(trimmed) else {
        return std::borrow::Cow::Borrowed(&body[..]);
    };
    let mut out = Vec::with_capacity(body.len());
    for v in values {
        if serde_json::to_writer(&mut out, &v).is_ok() {
            out.push(b'\n');
        }
    }
    std::borrow::Cow::Owned(out)
}
