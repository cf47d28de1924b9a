//! The OTLP source: fed by the real OpenTelemetry SDK (Python, with its
//! gRPC and HTTP exporters: `scripts/peers start otel-sdk`) and by
//! opentelemetry-proto's own client; OTLP in → OTLP out unchanged; a
//! blocked destination makes the SDK back off and retry without loss;
//! malformed exports refused and counted.
#![cfg(feature = "otlp")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::otlp::{Collector, sdk, telemetry};
use common::receiver::{Behavior, Receiver};
use common::{Metrics, wait_until_async};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde_json::Value;
use sluice::topology::Running;

const WAIT: Duration = Duration::from_secs(60);

fn metrics(r: &Running) -> Metrics {
    Metrics(r.metrics().encode())
}

async fn start(source: &str, dest: &str) -> Running {
    start_filtered(source, "true", dest).await
}

async fn start_filtered(source: &str, filter: &str, dest: &str) -> Running {
    common::topology(&format!(
        "api: {{ enabled: false }}\nsources:\n  otel: {source}\nroutes:\n  - {{ name: all, filter: '{filter}', destination: out }}\ndestinations:\n  out: {dest}\n"
    ))
    .await
}

/// What one SDK run sent, as the HTTP destination wrote it: log events by
/// `seq`, span names, metric names.
fn sdk_events(events: &[String]) -> (BTreeSet<i64>, BTreeSet<String>, BTreeSet<String>) {
    let (mut logs, mut spans, mut metrics) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for e in events {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["resource"]["service.name"], "sdk-test", "{v}");
        match v["_otlp"].as_str() {
            Some("log") => {
                let seq = v["attributes"]["seq"].as_i64().expect("seq attribute");
                assert_eq!(v["body"], format!("sdk log {seq}"), "{v}");
                assert_eq!(v["severity_text"], "WARN", "{v}");
                assert_eq!(v["severity_number"], 13, "{v}");
                assert_eq!(v["scope"]["name"], "sdk-test", "{v}");
                assert!(v["time_unix_nano"].as_u64().unwrap_or(0) > 0, "{v}");
                logs.insert(seq);
            }
            Some("traces") => {
                for ss in v["scope_spans"].as_array().unwrap() {
                    for s in ss["spans"].as_array().unwrap() {
                        assert_eq!(s["traceId"].as_str().map(str::len), Some(32), "{s}");
                        spans.insert(s["name"].as_str().unwrap().to_string());
                    }
                }
            }
            Some("metrics") => {
                for sm in v["scope_metrics"].as_array().unwrap() {
                    for m in sm["metrics"].as_array().unwrap() {
                        metrics.insert(m["name"].as_str().unwrap().to_string());
                    }
                }
            }
            other => panic!("not an OTLP event ({other:?}): {v}"),
        }
    }
    (logs, spans, metrics)
}

/// The SDK's logs, spans and metrics, over gRPC and over HTTP/protobuf,
/// reach an HTTP destination intact, as events filters can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_over_grpc_and_http_reaches_an_http_destination_intact() {
    for protocol in ["grpc", "http"] {
        let rx = Receiver::start().await;
        let key = if protocol == "grpc" {
            "grpc_address"
        } else {
            "http_address"
        };
        // Log events are read as filters see them: the resource's
        // attributes by their dotted names, the severity as a number.
        let r = start_filtered(
            &format!("{{ type: otlp, {key}: 127.0.0.1:0 }}"),
            r#"_otlp != "log" || (resource["service.name"] == "sdk-test" && severity_number == 13)"#,
            &format!(
                "{{ type: http, url: \"{}\", batch: {{ timeout: 50ms }} }}",
                rx.url("/in")
            ),
        )
        .await;
        let addr = r.source_addr("otel").unwrap();
        let n = 150;
        let out = sdk(&[protocol, &format!("http://{addr}"), &n.to_string()]).await;
        assert_eq!(
            out,
            serde_json::json!({"logs": true, "traces": true, "metrics": true})
        );
        // The three signals are exported separately and may reach the
        // receiver in any order: wait for all of them.
        wait_until_async("every log record, span and metric delivered", WAIT, || {
            let (logs, spans, metrics) = sdk_events(&rx.accepted());
            logs.len() == n && spans.len() == n && metrics.contains("requests")
        })
        .await;
        let (logs, spans, metric_names) = sdk_events(&rx.accepted());
        assert_eq!(
            logs,
            (0..n as i64).collect(),
            "{protocol}: each log record once"
        );
        assert!(spans.contains("span 0") && spans.contains(&format!("span {}", n - 1)));
        assert!(metric_names.contains("requests"), "{metric_names:?}");
        r.shutdown().await;
    }
}

/// A destination that refuses everything on `block` with a small queue:
/// the source answers RESOURCE_EXHAUSTED (with RetryInfo) / 429, the SDK
/// backs off and retries, and once the destination recovers every record
/// arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_destination_makes_the_sdk_back_off_and_nothing_is_lost() {
    for protocol in ["grpc", "http"] {
        let rx = Receiver::start().await;
        rx.status(503);
        let key = if protocol == "grpc" {
            "grpc_address"
        } else {
            "http_address"
        };
        let r = start(
            &format!("{{ type: otlp, {key}: 127.0.0.1:0, max_wait: 200ms }}"),
            &format!(
                "{{ type: http, url: \"{}\", queue: {{ max_events: 20 }}, batch: {{ max_events: 20, timeout: 20ms }}, request: {{ concurrency: 1 }}, retry: {{ initial_backoff: 100ms, max_backoff: 200ms }} }}",
                rx.url("/in")
            ),
        )
        .await;
        let addr = r.source_addr("otel").unwrap();
        let n = 300;
        let client = tokio::spawn(async move {
            sdk(&[protocol, &format!("http://{addr}"), &n.to_string()]).await
        });
        wait_until_async("the source sheds exports", WAIT, || {
            metrics(&r).rejected("otel", "shed") > 0
        })
        .await;
        rx.set(Behavior::Ok);
        let out = client.await.unwrap();
        assert_eq!(
            out["logs"], true,
            "{protocol}: the SDK's retries got through: {out}"
        );
        wait_until_async("every log record delivered", WAIT, || {
            sdk_events(&rx.accepted()).0.len() == n
        })
        .await;
        assert_eq!(metrics(&r).dropped_any("out"), 0);
        r.shutdown().await;
    }
}

/// `telemetry()` reached the collector, exactly.
async fn arrived_unchanged(
    c: &Collector,
    logs: &[ResourceLogs],
    metrics: &[ResourceMetrics],
    traces: &[ResourceSpans],
) {
    wait_until_async("everything at the collector", WAIT, || {
        c.records().len() == 10 && c.metrics().len() == 2 && c.traces().len() == 2
    })
    .await;
    assert_eq!(c.logs(), logs);
    assert_eq!(c.metrics(), metrics);
    assert_eq!(c.traces(), traces);
}

/// What an OTel SDK sends, through sluice and out over OTLP, decodes to
/// exactly what went in: gRPC in → gRPC out, and HTTP/JSON in → HTTP out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_in_to_otlp_out_keeps_logs_metrics_and_traces_unchanged() {
    let (logs, metrics_in, traces) = telemetry();
    // gRPC in, gRPC out.
    let c = Collector::start().await;
    let r = start(
        "{ type: otlp, grpc_address: 127.0.0.1:0 }",
        &format!(
            "{{ type: otlp, endpoint: \"{}\", batch: {{ timeout: 200ms }} }}",
            c.grpc_url()
        ),
    )
    .await;
    let url = format!("http://{}", r.source_addr("otel").unwrap());
    LogsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .export(ExportLogsServiceRequest {
            resource_logs: logs.clone(),
        })
        .await
        .unwrap();
    MetricsServiceClient::connect(url.clone())
        .await
        .unwrap()
        .export(ExportMetricsServiceRequest {
            resource_metrics: metrics_in.clone(),
        })
        .await
        .unwrap();
    TraceServiceClient::connect(url)
        .await
        .unwrap()
        .export(ExportTraceServiceRequest {
            resource_spans: traces.clone(),
        })
        .await
        .unwrap();
    arrived_unchanged(&c.collector, &logs, &metrics_in, &traces).await;
    r.shutdown().await;

    // OTLP/JSON in over HTTP, protobuf out over HTTP.
    let c = Collector::start().await;
    let r = start(
        "{ type: otlp, http_address: 127.0.0.1:0 }",
        &format!(
            "{{ type: otlp, protocol: http, endpoint: \"{}\", batch: {{ timeout: 200ms }} }}",
            c.http_url()
        ),
    )
    .await;
    let base = format!("http://{}", r.source_addr("otel").unwrap());
    let http = reqwest::Client::new();
    for (path, body) in [
        (
            "/v1/logs",
            serde_json::to_vec(&ExportLogsServiceRequest {
                resource_logs: logs.clone(),
            })
            .unwrap(),
        ),
        (
            "/v1/metrics",
            serde_json::to_vec(&ExportMetricsServiceRequest {
                resource_metrics: metrics_in.clone(),
            })
            .unwrap(),
        ),
        (
            "/v1/traces",
            serde_json::to_vec(&ExportTraceServiceRequest {
                resource_spans: traces.clone(),
            })
            .unwrap(),
        ),
    ] {
        let resp = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    arrived_unchanged(&c.collector, &logs, &metrics_in, &traces).await;
    r.shutdown().await;
}

/// Records decoded from protobuf go on as the bytes that came, not encoded
/// again from their JSON: what the JSON form cannot hold (an attribute
/// without a value, a key given as a string-table index) arrives as sent,
/// over gRPC and over HTTP protobuf; the filter still reads the records;
/// and a JSON line from another source, mapped to a record, goes to the
/// same collector beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_records_go_on_as_they_came_beside_mapped_events() {
    let (mut logs, _, _) = telemetry();
    for r in logs
        .iter_mut()
        .flat_map(|rl| &mut rl.scope_logs[0].log_records)
    {
        r.attributes.push(KeyValue {
            key: "bare".into(),
            value: None,
            key_strindex: 3,
        });
    }
    // What the filter keeps: the records with `ok` true, in their groups.
    let mut kept = logs.clone();
    for rl in &mut kept {
        rl.scope_logs[0].log_records.retain(|r| {
            r.attributes.iter().any(|a| {
                a.key == "ok"
                    && a.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&AnyValueKind::BoolValue(true))
            })
        });
    }
    for grpc in [true, false] {
        let c = Collector::start().await;
        let (listen, out) = if grpc {
            ("grpc_address", format!("endpoint: \"{}\"", c.grpc_url()))
        } else {
            (
                "http_address",
                format!("protocol: http, endpoint: \"{}\"", c.http_url()),
            )
        };
        let r = common::topology(&format!(
            "api: {{ enabled: false }}\nsources:\n  otel: {{ type: otlp, {listen}: 127.0.0.1:0 }}\n  lines: {{ type: http, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: kept, filter: 'attributes.ok == true || exists(message)', destination: out }}\ndestinations:\n  out: {{ type: otlp, {out}, batch: {{ timeout: 200ms }} }}\n"
        ))
        .await;
        let export = ExportLogsServiceRequest {
            resource_logs: logs.clone(),
        };
        let otel = r.source_addr("otel").unwrap();
        if grpc {
            LogsServiceClient::connect(format!("http://{otel}"))
                .await
                .unwrap()
                .export(export)
                .await
                .unwrap();
        } else {
            let resp = reqwest::Client::new()
                .post(format!("http://{otel}/v1/logs"))
                .header("content-type", "application/x-protobuf")
                .body(prost::Message::encode_to_vec(&export))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        let lines = r.source_addr("lines").unwrap();
        let resp = reqwest::Client::new()
            .post(format!("http://{lines}/"))
            .body(r#"{"message":"mapped beside"}"#)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        wait_until_async(
            "the kept records and the mapped line at the collector",
            WAIT,
            || c.collector.records().len() == 7,
        )
        .await;
        let arrived = c.collector.logs();
        let (borrowed, mapped): (Vec<_>, Vec<_>) = arrived
            .into_iter()
            .partition(|rl| rl.schema_url == kept[0].schema_url);
        assert_eq!(borrowed, kept, "grpc: {grpc}");
        let mapped: Vec<_> = mapped
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|s| &s.log_records)
            .collect();
        assert_eq!(mapped.len(), 1);
        assert_eq!(
            mapped[0].body.as_ref().and_then(|b| b.value.as_ref()),
            Some(&AnyValueKind::StringValue("mapped beside".into()))
        );
        assert_eq!(metrics(&r).dropped_any("out"), 0);
        r.shutdown().await;
    }
}

/// Garbage is refused as OTLP asks (HTTP 400 with a `google.rpc.Status`,
/// gRPC INVALID_ARGUMENT) and counted malformed, an export over
/// `max_body_bytes` counted oversize; nothing reaches the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_exports_are_refused_and_counted() {
    let rx = Receiver::start().await;
    let r = start(
        "{ type: otlp, http_address: 127.0.0.1:0 }",
        &format!("{{ type: http, url: \"{}\" }}", rx.url("/in")),
    )
    .await;
    let base = format!("http://{}", r.source_addr("otel").unwrap());
    let http = reqwest::Client::new();
    for (content_type, body) in [
        ("application/x-protobuf", &b"\xff\xff\xff\xff"[..]),
        ("application/json", &b"{\"resourceLogs\": 7}"[..]),
    ] {
        let resp = http
            .post(format!("{base}/v1/logs"))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{content_type}");
    }
    assert_eq!(metrics(&r).rejected("otel", "malformed"), 2);
    r.shutdown().await;

    let r = start(
        "{ type: otlp, grpc_address: 127.0.0.1:0, max_body_bytes: 1KiB }",
        &format!("{{ type: http, url: \"{}\" }}", rx.url("/in")),
    )
    .await;
    let addr = r.source_addr("otel").unwrap().to_string();
    let out = sdk(&["malformed-grpc", &addr]).await;
    assert_eq!(out["code"], "INVALID_ARGUMENT");
    assert_eq!(metrics(&r).rejected("otel", "malformed"), 1);
    // Over max_body_bytes: refused for good, not OUT_OF_RANGE (retried).
    let out = sdk(&["malformed-grpc", &addr, "4096"]).await;
    assert_eq!(out["code"], "INVALID_ARGUMENT");
    assert_eq!(metrics(&r).rejected("otel", "oversize"), 1);
    // A gzip body small on the wire that expands past the limit: the same
    // (tonic says RESOURCE_EXHAUSTED, which clients would retry for ever).
    let big = opentelemetry_proto::tonic::logs::v1::LogRecord {
        body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "a".repeat(1 << 20),
                ),
            ),
        }),
        ..Default::default()
    };
    let bomb = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                log_records: vec![big],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let refused = LogsServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_encoding_message_size(8 << 20)
        .export(bomb)
        .await
        .expect_err("over the limit once expanded");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(metrics(&r).rejected("otel", "oversize"), 2);
    assert!(rx.accepted().is_empty());
    r.shutdown().await;
}

/// With `acknowledgements: true` an export is answered only once the
/// destination has delivered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_answer_only_after_delivery() {
    let rx = Receiver::start().await;
    rx.status(503);
    let r = start(
        "{ type: otlp, grpc_address: 127.0.0.1:0, acknowledgements: true }",
        &format!(
            "{{ type: http, url: \"{}\", batch: {{ timeout: 20ms }}, retry: {{ initial_backoff: 50ms, max_backoff: 100ms }} }}",
            rx.url("/in")
        ),
    )
    .await;
    let url = format!("http://{}", r.source_addr("otel").unwrap());
    let (logs, _, _) = telemetry();
    let export = tokio::spawn(async move {
        LogsServiceClient::connect(url)
            .await
            .unwrap()
            .export(ExportLogsServiceRequest {
                resource_logs: logs,
            })
            .await
    });
    wait_until_async("the destination failing", WAIT, || rx.request_count() >= 3).await;
    assert!(!export.is_finished(), "answered before delivery");
    rx.set(Behavior::Ok);
    assert!(export.await.unwrap().is_ok(), "answered once delivered");
    assert_eq!(rx.accepted().len(), 10);
    r.shutdown().await;
}

/// With `acknowledgements: true` and a `backpressure: drop` destination
/// that is full, an export whose records were shed is answered
/// UNAVAILABLE with a RetryInfo (over HTTP: 503 with `Retry-After`), never
/// OK: the exporter sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_a_drop_destination_shed_is_answered_retryable() {
    let rx = Receiver::start().await;
    rx.status(503);
    let r = start(
        "{ type: otlp, grpc_address: 127.0.0.1:0, acknowledgements: true }",
        &format!(
            "{{ type: http, url: \"{}\", backpressure: drop, queue: {{ max_events: 10 }}, batch: {{ max_events: 5, timeout: 20ms }}, request: {{ concurrency: 1 }}, retry: {{ initial_backoff: 50ms, max_backoff: 100ms }} }}",
            rx.url("/in")
        ),
    )
    .await;
    let grpc = format!("http://{}", r.source_addr("otel").unwrap());
    let (logs, _, _) = telemetry();
    let export = |grpc: String, logs: Vec<ResourceLogs>| async move {
        LogsServiceClient::connect(grpc)
            .await
            .unwrap()
            .export(ExportLogsServiceRequest {
                resource_logs: logs,
            })
            .await
    };
    // The first export (10 records) is in the lane and the driver, waiting
    // for the peer; the second fills the lane.
    let first = tokio::spawn(export(grpc.clone(), logs.clone()));
    wait_until_async("the first export routed", WAIT, || {
        metrics(&r).dest("sluice_destination_events_total", "out") >= 10
    })
    .await;
    let second = tokio::spawn(export(grpc.clone(), logs.clone()));
    wait_until_async("the second export routed", WAIT, || {
        metrics(&r).dest("sluice_destination_events_total", "out") >= 20
    })
    .await;
    let shed = LogsServiceClient::connect(grpc)
        .await
        .unwrap()
        .export(ExportLogsServiceRequest {
            resource_logs: logs,
        })
        .await
        .expect_err("a shed export is not OK");
    assert_eq!(shed.code(), tonic::Code::Unavailable, "{shed:?}");
    use tonic_types::StatusExt as _;
    assert!(
        shed.get_details_retry_info().is_some(),
        "a RetryInfo says when: {shed:?}"
    );
    rx.set(Behavior::Ok);
    assert!(
        first.await.unwrap().is_ok(),
        "the kept export is answered OK"
    );
    // Kept whole, or partly shed (then told to send again): how much of it
    // the lane had room for depends on what the driver had taken.
    if let Err(e) = second.await.unwrap() {
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    }
    assert!(metrics(&r).dropped("out", "backpressure") >= 10);
    r.shutdown().await;
}
