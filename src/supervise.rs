//! Component tasks that cannot vanish: a source or driver task that panics
//! is logged with its component, counted in `sluice_component_errors_total`
//! and turns `/ready` to 503, instead of leaving a silent hole in the graph.
//! An HTTP request whose handler panics is answered 500 and logged
//! ([`http_panics`]): one request never takes more than itself down.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use std::sync::Arc;

use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Axum middleware for every HTTP server (the API and the sources): a
/// handler that panics is answered `500` and logged, and the connection,
/// the server and the process go on.
pub async fn http_panics(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path().to_string();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            tracing::error!(%path, panic = %panic_message(&*panic), "a request handler panicked (a bug); answered 500");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (logged)",
            )
                .into_response()
        }
    }
}

/// Spawn `task` for component `id` of `kind` (`source` or `destination`).
pub fn spawn<F>(task: F, kind: &'static str, id: &str, metrics: &Metrics) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(Watcher::new(kind, id, metrics).watch(task))
}

/// Reports the panics of one component's tasks; made once, used per task
/// (a driver's delivery jobs), so watching costs no lookup.
#[derive(Clone)]
pub struct Watcher {
    kind: &'static str,
    id: Arc<str>,
    errors: Counter,
    metrics: Metrics,
}

impl Watcher {
    pub fn new(kind: &'static str, id: &str, metrics: &Metrics) -> Self {
        Watcher {
            kind,
            id: id.into(),
            errors: metrics.component_errors(kind, id),
            metrics: metrics.clone(),
        }
    }

    /// `task`, with a panic reported instead of unwinding out of it.
    pub fn watch<F>(&self, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let w = self.clone();
        async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                let message = panic_message(&*panic);
                tracing::error!(
                    component = %w.id,
                    kind = w.kind,
                    panic = %message,
                    "component task panicked; its events stop flowing (sluice is no longer ready)"
                );
                w.errors.inc();
                w.metrics.component_failed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_fails_readiness() {
        let m = Metrics::new();
        spawn(async {}, "source", "fine", &m).await.unwrap();
        assert_eq!(m.failed_components(), 0);
        spawn(
            async {
                let v: Vec<u8> = Vec::new();
                let _ = v[1];
            },
            "destination",
            "broken",
            &m,
        )
        .await
        .unwrap();
        assert_eq!(m.failed_components(), 1);
        assert_eq!(m.component_errors("destination", "broken").get(), 1);
        assert!(m.encode().contains(
            "sluice_component_errors_total{kind=\"destination\",component=\"broken\"} 1"
        ));
    }
}

#[cfg(test)]
mod http_tests {
    use axum::Router;
    use axum::routing::get;

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_and_the_server_goes_on() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(super::http_panics));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let r = client
                .get(format!("http://{addr}/boom"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 500);
        }
        let r = client
            .get(format!("http://{addr}/fine"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "fine");
    }
}
