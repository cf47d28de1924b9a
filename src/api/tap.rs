//! `GET /api/v1/tap`: a live sample of the events passing one source, route,
//! pipeline (its output) or destination, streamed as NDJSON (see `crate::tap`).
//!
//! Query: exactly one of `source`, `route`, `pipeline`, `destination`; `filter` (the
//! route filter language), `rate` (samples per second, default 100), `limit`
//! (end after that many). Each line is `{"event": EVENT}` (a JSON event as
//! itself, a text event as a string) or, when samples were skipped because
//! this client read too slowly, `{"missed": N}` with the running total.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Api, authorized, json_response};
use crate::event::{Event, Format};
use crate::expr::Filter;
use crate::tap::{PointKind, Watch};

/// `sluice tap`'s default sampling rate, events per second.
pub const DEFAULT_RATE: u64 = 100;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TapQuery {
    source: Option<String>,
    route: Option<String>,
    pipeline: Option<String>,
    destination: Option<String>,
    filter: Option<String>,
    rate: Option<u64>,
    limit: Option<u64>,
}

pub(super) async fn tap(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<TapQuery>,
) -> Response {
    if !authorized(&api, &headers) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "the credentials of `api.auth` are required"}),
        );
    }
    let bad =
        |m: String| json_response(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": m }));
    let point = match (&q.source, &q.route, &q.pipeline, &q.destination) {
        (Some(s), None, None, None) => (PointKind::Source, s),
        (None, Some(r), None, None) => (PointKind::Route, r),
        (None, None, Some(p), None) => (PointKind::Pipeline, p),
        (None, None, None, Some(d)) => (PointKind::Destination, d),
        _ => {
            return bad(
                "name exactly one of `source`, `route`, `pipeline` or `destination`".into(),
            );
        }
    };
    let filter = match q.filter.as_deref().map(Filter::new).transpose() {
        Ok(f) => f,
        Err(e) => return bad(format!("filter: {e}")),
    };
    let rate = q.rate.unwrap_or(DEFAULT_RATE);
    let Some(watch) = api.status.taps.watch(point.0, point.1, filter, rate) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({
                "error": format!("no {} `{}` in the running configuration", point.0.as_str(), point.1)
            }),
        );
    };
    tracing::info!(point = point.0.as_str(), name = %point.1, rate, "tap attached");
    let stream = futures::stream::unfold(
        Stream {
            watch,
            left: q.limit,
            missed: 0,
        },
        next_line,
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

struct Stream {
    watch: Watch,
    /// Events still to send (`None`: no limit).
    left: Option<u64>,
    /// Missed samples already reported.
    missed: u64,
}

/// The next line: a missed-count update if it grew, else the next sample.
/// Ends at the limit or when the pipeline stops. (A client that hangs up
/// drops the stream, which detaches the watcher.)
async fn next_line(mut s: Stream) -> Option<(Result<Bytes, std::io::Error>, Stream)> {
    if s.left == Some(0) {
        return None;
    }
    loop {
        let missed = s
            .watch
            .subscriber
            .missed
            .load(std::sync::atomic::Ordering::Relaxed);
        if missed > s.missed {
            s.missed = missed;
            let line = format!("{{\"missed\":{missed}}}\n");
            return Some((Ok(Bytes::from(line)), s));
        }
        match tokio::time::timeout(Duration::from_secs(1), s.watch.rx.recv()).await {
            Ok(Some(e)) => {
                if let Some(n) = s.left.as_mut() {
                    *n -= 1;
                }
                return Some((Ok(line_of(&e)), s));
            }
            Ok(None) => return None,
            Err(_) => continue,
        }
    }
}

fn line_of(e: &Event) -> Bytes {
    let mut out = Vec::with_capacity(e.raw.len() + 12);
    out.extend_from_slice(b"{\"event\":");
    match e.format {
        Format::Json => out.extend_from_slice(&e.raw),
        Format::Text => {
            let text = String::from_utf8_lossy(&e.raw);
            out.extend_from_slice(
                serde_json::Value::from(text.as_ref())
                    .to_string()
                    .as_bytes(),
            );
        }
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}
