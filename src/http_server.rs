//! Serving an axum `Router` on a `listener::Incoming` (the HTTP and
//! OTLP/HTTP sources, the API).
//!
//! hyper's HTTP/1 connection is run directly rather than through
//! `axum::serve`, which exposes no timeouts: a client gets
//! `HEADER_TIMEOUT` to send a request's headers (a slowloris trickling a
//! byte a second is closed within seconds), and the connection's own idle
//! timeout (`listener::Conn`) closes one that neither sends nor reads. Both
//! are counted `sluice_source_rejected_total{reason="timeout"}`. Bodies have their own deadline where they are read (`body_timeout`).
//!
//! Shutdown is graceful: on `stop`, each connection finishes the request it
//! is serving (an acknowledged request is answered) and closes; `serve`
//! returns once all have.

use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::listener::Incoming;
use crate::metrics::{RejectReason, SourceMetrics};

/// The client's address, in every request's extensions: sources key the
/// order they keep on it (`SourceContext::sender_for`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` until `stop`, then wait for the open connections to finish.
/// `rejects`: where timed-out connections are counted (none for the API).
pub async fn serve(
    mut incoming: Incoming,
    app: axum::Router,
    stop: CancellationToken,
    rejects: Option<SourceMetrics>,
) {
    let connections = TaskTracker::new();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            c = incoming.next() => c,
        };
        let Some((conn, peer)) = next else { break };
        let activity = conn.activity();
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(Peer(peer))));
        let stop = stop.clone();
        let rejects = rejects.clone();
        connections.spawn(
            async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(conn), service);
                tokio::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.as_mut().await
                    }
                };
                if let Err(e) = result {
                    // The header timeout, on a client that was sending (a
                    // slowloris) or never sent a byte (an idle flood); an
                    // idle keep-alive connection closing is no rejection.
                    // Idle timeouts count themselves (`listener::Conn`).
                    if e.is_timeout() && activity.was_sending() {
                        if let Some(m) = &rejects {
                            m.reject(RejectReason::Timeout, 1);
                        }
                        tracing::debug!(error = %e, "closed a slow or idle HTTP connection");
                    } else {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                }
            }
            .in_current_span(),
        );
    }
    connections.close();
    connections.wait().await;
}
