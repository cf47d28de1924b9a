//! sluice's own telemetry over OTLP (`telemetry: {otlp: {...}}`, off by
//! default): every `interval`, the metrics `/metrics` serves, and with
//! `logs: true` its own log lines, to an OpenTelemetry collector.
//!
//! The export runs beside the pipeline, not through it: it never takes a
//! lane's room or waits on a destination, and a collector that is down
//! costs one failed export per interval, logged once. Metrics are
//! cumulative, so the next export after an outage carries the totals:
//! nothing is lost by skipping one. Log records wait in a bounded buffer
//! and are dropped, counted, when it is full.
//!
//! The messages are opentelemetry-proto's, sent with the OTLP destination's
//! client (`crate::destinations::otlp`), rather than through the
//! opentelemetry SDK: the SDK's metric data cannot be built from the
//! Prometheus registry (its types have no public constructors), and its
//! observable instruments have no histogram, so it could not export the
//! same set `/metrics` does.

#[cfg(feature = "otlp")]
pub mod logs;
#[cfg(feature = "otlp")]
pub mod metrics;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units::Dur;
use crate::tls::TlsConfig;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub otlp: Option<OtlpTelemetry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TelemetryProtocol {
    #[default]
    Grpc,
    Http,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpTelemetry {
    /// The collector: `http://localhost:4317` (gRPC) or
    /// `http://localhost:4318` (HTTP) by default, as OTel SDKs.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub protocol: TelemetryProtocol,
    /// How often the metrics are sent. Default 60 s, the OTel SDKs'
    /// (`OTEL_METRIC_EXPORT_INTERVAL`).
    #[serde(default)]
    pub interval: Option<Dur>,
    /// Also send sluice's own log lines (those its log filter lets through).
    #[serde(default)]
    pub logs: bool,
    /// Sent with every export (gRPC metadata or HTTP headers).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `service.name` on the resource. Default `sluice`.
    #[serde(default)]
    pub service_name: Option<String>,
}

impl OtlpTelemetry {
    pub fn interval(&self) -> Duration {
        self.interval.map_or(Duration::from_secs(60), Dur::get)
    }

    pub fn url(&self) -> String {
        let default = match self.protocol {
            TelemetryProtocol::Grpc => "http://localhost:4317",
            TelemetryProtocol::Http => "http://localhost:4318",
        };
        self.endpoint
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !cfg!(feature = "otlp") {
            return Err("telemetry.otlp: this sluice was built without the `otlp` feature".into());
        }
        let url = self.url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "telemetry.otlp.endpoint `{url}` must be http:// or https://"
            ));
        }
        if self.interval().is_zero() {
            return Err("telemetry.otlp.interval must be more than 0".into());
        }
        if let Some(t) = &self.tls {
            crate::config::Validate::validate(t).map_err(|e| format!("telemetry.otlp.{e}"))?;
        }
        Ok(())
    }
}

/// Start exporting, if configured; the task ends when `stop` fires, after
/// one last export.
#[cfg(feature = "otlp")]
pub fn start(
    cfg: &OtlpTelemetry,
    registry: &crate::metrics::Metrics,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    use crate::destinations::otlp::{HttpEncoding, OtlpClient, OtlpDestination, OtlpProtocol};
    let client = OtlpDestination::connect(
        "telemetry",
        &OtlpClient {
            protocol: match cfg.protocol {
                TelemetryProtocol::Grpc => OtlpProtocol::Grpc,
                TelemetryProtocol::Http => OtlpProtocol::Http,
            },
            url: cfg.url(),
            http_encoding: HttpEncoding::Protobuf,
            headers: &cfg.headers,
            tls: cfg.tls.as_ref(),
            gzip: true,
            mapping: Default::default(),
        },
    )?;
    let service = cfg.service_name.clone().unwrap_or_else(|| "sluice".into());
    let resource = metrics::resource(&service);
    let logs = cfg.logs.then(|| logs::enable(resource.clone()));
    let interval = cfg.interval();
    let registry = registry.clone();
    let started = std::time::SystemTime::now();
    tracing::info!(endpoint = %cfg.url(), ?interval, logs = cfg.logs, "sending sluice's own telemetry over OTLP");
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Log records go out more often than metrics: every second, or
        // as soon as a batch is full.
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        loop {
            let last = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tick.tick() => false,
                _ = flush.tick() => {
                    if let Some(l) = &logs {
                        l.export(&client).await;
                    }
                    continue;
                }
            };
            let request = metrics::export(&registry.families(), &resource, started);
            if let crate::driver::Outcome::Delivered = client.export_metrics(request).await {
                tracing::debug!("telemetry exported");
            }
            if let Some(l) = &logs {
                l.export(&client).await;
            }
            if last {
                return;
            }
        }
    }))
}
