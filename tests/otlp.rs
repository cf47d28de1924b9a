//! The OTLP destination against a real OTLP collector (tests/common/otlp.rs:
//! opentelemetry-proto's generated gRPC services and an OTLP/HTTP receiver)
//! with fault injection: mapped log records over gRPC and HTTP (protobuf and
//! JSON), outages and throttling without loss, partial success counted, and
//! OTLP events passed through exactly.
#![cfg(feature = "otlp")]

mod common;

use std::time::Duration;

use common::otlp::{Collector, Fault, telemetry};
use common::{Metrics, validate_refuses, wait_until_async};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use sluice::otlp::event::{log_events, metrics_events, traces_events};
use sluice::topology::Running;
use tokio::io::AsyncWriteExt;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

fn metrics(r: &Running) -> Metrics {
    Metrics(r.metrics().encode())
}

async fn start(dest: &str) -> Running {
    common::topology(&format!(
        "api: {{ enabled: false }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - {{ name: all, destination: out }}\ndestinations:\n  out: {dest}\n"
    ))
    .await
}

async fn send(r: &Running, lines: impl IntoIterator<Item = String>) {
    let mut s = tokio::net::TcpStream::connect(r.source_addr("in").unwrap())
        .await
        .unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    s.write_all(buf.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
}

/// Log lines as a shipper writes them, numbered by `seq`.
fn shipper_lines(n: u64) -> impl Iterator<Item = String> {
    (0..n).map(|i| {
        format!(
            r#"{{"timestamp":"2026-12-04T10:00:00Z","level":"{}","msg":"request {i}","host":"web-{}","service":"checkout","seq":{i}}}"#,
            if i % 2 == 0 { "info" } else { "error" },
            i % 2
        )
    })
}

fn text(v: &Option<AnyValue>) -> Option<&str> {
    match v.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn seq(r: &LogRecord) -> i64 {
    match attr(&r.attributes, "seq") {
        Some(Value::IntValue(i)) => *i,
        other => panic!("no integer seq attribute: {other:?}"),
    }
}

/// Every record arrived once, mapped: body, severity, time, attributes,
/// and `host`/`service` on the resource.
fn assert_mapped(logs: &[ResourceLogs], n: u64) {
    let mut seqs = Vec::new();
    for rl in logs {
        let resource = &rl.resource.as_ref().expect("a resource").attributes;
        let host = match attr(resource, "host.name") {
            Some(Value::StringValue(h)) => h.clone(),
            other => panic!("no host.name: {other:?}"),
        };
        assert!(
            matches!(attr(resource, "service.name"), Some(Value::StringValue(s)) if s == "checkout")
        );
        for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let i = seq(r);
            assert_eq!(text(&r.body), Some(format!("request {i}").as_str()));
            assert_eq!(host, format!("web-{}", i % 2), "grouped by resource");
            let (num, sev) = if i % 2 == 0 {
                (9, "info")
            } else {
                (17, "error")
            };
            assert_eq!((r.severity_number, r.severity_text.as_str()), (num, sev));
            assert_eq!(r.time_unix_nano, 1_796_378_400_000_000_000);
            assert!(r.observed_time_unix_nano > 0);
            assert_eq!(r.attributes.len(), 1, "only seq is left as an attribute");
            seqs.push(i);
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..n as i64).collect::<Vec<_>>(),
        "each record exactly once"
    );
}

fn records(logs: &[ResourceLogs]) -> usize {
    logs.iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Send `n` shipper lines and check that each arrived once, mapped, and
/// that sluice counts them all sent.
async fn delivers_mapped(c: &Collector, r: &Running, n: u64) {
    send(r, shipper_lines(n)).await;
    wait_until_async("every record at the collector", WAIT, || {
        records(&c.logs()) as u64 >= n
    })
    .await;
    assert_mapped(&c.logs(), n);
    wait_until_async("sent counts every event", WAIT, || {
        metrics(r).dest("sluice_destination_sent_events_total", "out") == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_log_records_arrive_over_grpc_with_headers_and_gzip() {
    let c = Collector::start().await;
    let r = start(&format!(
        r#"{{ type: otlp, endpoint: "{}", headers: {{ x-tenant: team-a }}, batch: {{ timeout: 50ms }} }}"#,
        c.grpc_url()
    ))
    .await;
    delivers_mapped(&c.collector, &r, 200).await;
    let h = &c.collector.headers()[0];
    assert_eq!(h.get("x-tenant").map(String::as_str), Some("team-a"));
    assert_eq!(
        h.get("grpc-encoding").map(String::as_str),
        Some("gzip"),
        "{h:?}"
    );
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_log_records_arrive_over_http_as_protobuf_and_as_json() {
    for (encoding, content_type) in [
        ("protobuf", "application/x-protobuf"),
        ("json", "application/json"),
    ] {
        let c = Collector::start().await;
        let r = start(&format!(
            r#"{{ type: otlp, protocol: http, http_encoding: {encoding}, endpoint: "{}", compression: none, headers: {{ Authorization: "Bearer t0k" }}, batch: {{ timeout: 50ms }} }}"#,
            c.http_url()
        ))
        .await;
        delivers_mapped(&c.collector, &r, 150).await;
        let h = &c.collector.headers()[0];
        assert_eq!(
            h.get("content-type").map(String::as_str),
            Some(content_type)
        );
        assert_eq!(
            h.get("authorization").map(String::as_str),
            Some("Bearer t0k")
        );
        assert_eq!(h.get("content-encoding"), None, "compression: none");
        r.shutdown().await;
    }
}

/// UNAVAILABLE, then RESOURCE_EXHAUSTED with a RetryInfo, then OK over
/// gRPC; 503, 429 with Retry-After, then OK over HTTP: every event
/// arrives once, nothing is dropped, the retries are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_throttled_collectors_lose_nothing() {
    for protocol in ["grpc", "http"] {
        let c = Collector::start().await;
        let (url, faults) = if protocol == "grpc" {
            (
                c.grpc_url(),
                vec![
                    Fault::Grpc(Code::Unavailable, None),
                    Fault::Grpc(Code::Unavailable, None),
                    Fault::Grpc(Code::ResourceExhausted, Some(Duration::from_millis(300))),
                    Fault::Grpc(Code::DeadlineExceeded, None),
                ],
            )
        } else {
            (
                c.http_url(),
                vec![
                    Fault::Http(503, None),
                    Fault::Http(502, None),
                    Fault::Http(429, Some(1)),
                    Fault::Http(504, None),
                ],
            )
        };
        c.collector.fail_next(faults);
        let r = start(&format!(
            r#"{{ type: otlp, protocol: {protocol}, endpoint: "{url}", request: {{ concurrency: 1 }}, batch: {{ max_events: 50, timeout: 20ms }}, retry: {{ initial_backoff: 50ms, max_backoff: 200ms }} }}"#
        ))
        .await;
        delivers_mapped(&c.collector, &r, 300).await;
        assert_eq!(c.collector.failed(), 4, "{protocol}: every fault was met");
        let m = metrics(&r);
        assert_eq!(m.dropped_any("out"), 0, "{protocol}: nothing dropped");
        assert!(
            m.dest("sluice_destination_retries_total", "out") >= 4,
            "{protocol}: retries counted"
        );
        r.shutdown().await;
    }
}

/// A partial success counts its refused records as rejected, the rest as
/// sent; INVALID_ARGUMENT rejects the request with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_and_invalid_argument_are_counted_rejected() {
    let c = Collector::start().await;
    c.collector
        .fail_next([Fault::Partial(3), Fault::Grpc(Code::InvalidArgument, None)]);
    let r = start(&format!(
        r#"{{ type: otlp, endpoint: "{}", request: {{ concurrency: 1 }}, batch: {{ max_events: 10, timeout: 20ms }} }}"#,
        c.grpc_url()
    ))
    .await;
    let n = 100;
    send(&r, shipper_lines(n)).await;
    wait_until_async("every event accounted for", WAIT, || {
        let m = metrics(&r);
        m.dest("sluice_destination_sent_events_total", "out") + m.dropped("out", "rejected") == n
    })
    .await;
    let m = metrics(&r);
    assert_eq!(
        m.dropped("out", "rejected"),
        3 + 10,
        "3 refused, one batch of 10 invalid"
    );
    assert_eq!(
        m.dest("sluice_destination_sent_events_total", "out"),
        n - 13
    );
    // The collector kept the partly refused batch (it said it refused 3).
    assert_eq!(records(&c.collector.logs()) as u64, n - 10);
    r.shutdown().await;
}

/// Events in the shape the OTLP source gives them (one per log record, one
/// per resource's metrics or spans) come out as exactly what went in,
/// regrouped by resource and scope, over gRPC and over HTTP/JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_events_pass_through_exactly() {
    let (logs, metrics_in, traces) = telemetry();
    let mut events = Vec::new();
    log_events(&logs, &mut events);
    metrics_events(metrics_in.clone(), &mut events);
    traces_events(traces.clone(), &mut events);
    let lines: Vec<String> = events
        .iter()
        .map(|e| String::from_utf8(e.raw.to_vec()).unwrap())
        .collect();
    for (protocol, extra) in [("grpc", ""), ("http", ", http_encoding: json")] {
        let c = Collector::start().await;
        let url = if protocol == "grpc" {
            c.grpc_url()
        } else {
            c.http_url()
        };
        // One batch: every signal in one request, regrouped.
        let r = start(&format!(
            r#"{{ type: otlp, protocol: {protocol}, endpoint: "{url}"{extra}, batch: {{ timeout: 300ms }} }}"#
        ))
        .await;
        send(&r, lines.clone()).await;
        wait_until_async("logs, metrics and traces at the collector", WAIT, || {
            c.collector.logs().len() == 2
                && c.collector.metrics().len() == 2
                && c.collector.traces().len() == 2
        })
        .await;
        assert_eq!(c.collector.logs(), logs, "{protocol}: logs unchanged");
        assert_eq!(
            c.collector.metrics(),
            metrics_in,
            "{protocol}: metrics unchanged"
        );
        assert_eq!(c.collector.traces(), traces, "{protocol}: traces unchanged");
        wait_until_async("sent counts every event", WAIT, || {
            metrics(&r).dest("sluice_destination_sent_events_total", "out") == lines.len() as u64
        })
        .await;
        r.shutdown().await;
    }
}

#[test]
fn bad_otlp_settings_are_refused_at_their_line() {
    let config = |dest: &str| {
        format!(
            "sources:\n  in: {{ type: stdin }}\nroutes:\n  - {{ name: all, destination: out }}\ndestinations:\n  out:\n    {dest}\n"
        )
    };
    for (dest, want) in [
        (
            "{ type: otlp, http_encoding: json }",
            "http_encoding applies only with `protocol: http`",
        ),
        (
            "{ type: otlp, endpoint: \"localhost:4317\" }",
            "is not an http:// or https:// URL",
        ),
        (
            "{ type: otlp, headers: { \"bad header\": x } }",
            "is not a valid header name",
        ),
        ("{ type: otlp, compression: zstd }", "zstd"),
        ("{ type: otlp, encoding: ndjson }", "encoding"),
        (
            "{ type: otlp, tls: { verify_certificate: false } }",
            "not available over gRPC",
        ),
        ("{ type: otlp, mapping: { bodyy: [m] } }", "bodyy"),
    ] {
        let e = validate_refuses("otlp.yaml", &config(dest));
        assert!(
            e.contains("otlp.yaml:7:") && e.contains(want),
            "{dest}: {e}"
        );
    }
}

/// sluice's own telemetry (`telemetry.otlp`), through the real binary, over
/// gRPC and over HTTP: the collector receives the metrics `/metrics` shows,
/// under the same names and labels (the sent counter equals what the
/// destination sent), and with `logs: true` sluice's own log lines, all
/// under the configured `service.name`.
#[test]
fn sluice_sends_its_own_metrics_and_logs_over_otlp() {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(Collector::start());
    let service_of = |attrs: &[KeyValue]| {
        attrs
            .iter()
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    };
    for (protocol, url) in [("grpc", c.grpc_url()), ("http", c.http_url())] {
        let service = format!("edge-{protocol}");
        let s = common::Sluice::start(&format!(
            "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes: [{{ name: all, destination: out }}]\ndestinations:\n  out: {{ type: blackhole }}\ntelemetry:\n  otlp: {{ protocol: {protocol}, endpoint: \"{url}\", interval: 200ms, logs: true, service_name: {service} }}\n"
        ));
        common::send_lines(&s, "in", (0..100).map(|i| format!(r#"{{"seq":{i}}}"#)));
        // The last value the collector has of `out`'s sent counter.
        let sent = || {
            c.collector
                .metrics()
                .iter()
                .filter(|rm| {
                    service_of(&rm.resource.as_ref().unwrap().attributes).as_deref()
                        == Some(service.as_str())
                })
                .flat_map(|rm| rm.scope_metrics.iter().flat_map(|s| s.metrics.clone()))
                .filter(|m| m.name == "sluice_destination_sent_events_total")
                .filter_map(|m| match m.data {
                    Some(Data::Sum(sum)) if sum.is_monotonic => sum
                        .data_points
                        .into_iter()
                        .find(|p| {
                            p.attributes.iter().any(|a| {
                                a.key == "destination"
                                    && a.value
                                        == Some(AnyValue {
                                            value: Some(Value::StringValue("out".into())),
                                        })
                            })
                        })
                        .and_then(|p| p.value),
                    _ => None,
                })
                .next_back()
        };
        common::wait_until("the sent counter arrives over OTLP", WAIT, || {
            sent() == Some(number_data_point::Value::AsDouble(100.0))
        });
        assert_eq!(common::sent(&s, "out"), 100, "the same as /metrics");
        common::wait_until("sluice's own log lines arrive", WAIT, || {
            c.collector.logs().iter().any(|rl| {
                service_of(&rl.resource.as_ref().unwrap().attributes).as_deref()
                    == Some(service.as_str())
                    && rl.scope_logs.iter().flat_map(|s| &s.log_records).any(|r| {
                        r.severity_text == "INFO"
                            && r.body
                                == Some(AnyValue {
                                    value: Some(Value::StringValue("sluice is running".into())),
                                })
                    })
            })
        });
    }
    let refused = validate_refuses(
        "telemetry.yaml",
        "sources:\n  in: { type: tcp, address: 127.0.0.1:0 }\nroutes: [{ name: all, destination: c }]\ndestinations:\n  c: { type: console }\ntelemetry:\n  otlp: { endpoint: \"localhost:4317\" }\n",
    );
    assert!(
        refused.contains("telemetry.yaml:7:") && refused.contains("http://"),
        "{refused}"
    );
}

/// OTLP/JSON in, OTLP out over gRPC and over HTTP/JSON, with what the
/// generated types' serde loses: an empty value (`{}`) keeps its key and
/// stays empty, bytes stay bytes, NaN and ±Infinity survive, empty arrays
/// and lists (`{"arrayValue":{}}`) are read, int64 may be a string and a
/// severity its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_keep_empty_values_bytes_and_non_finite_doubles_end_to_end() {
    let c = Collector::start().await;
    let r = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  otel: {{ type: otlp, http_address: 127.0.0.1:0 }}
routes:
  - {{ name: grpc, destination: grpc_out, final: false }}
  - {{ name: json, destination: json_out }}
destinations:
  grpc_out: {{ type: otlp, endpoint: "{}", batch: {{ timeout: 20ms }} }}
  json_out: {{ type: otlp, protocol: http, http_encoding: json, endpoint: "{}", batch: {{ timeout: 20ms }} }}
"#,
        c.grpc_url(),
        c.http_url()
    ))
    .await;
    let export = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeLogs":[{"scope":{"name":"vectors"},"logRecords":[
      {"timeUnixNano":"1764842400000000001","severityNumber":"SEVERITY_NUMBER_WARN","body":{"kvlistValue":{"values":[{"key":"empty","value":{}},{"key":"nan","value":{"doubleValue":"NaN"}}]}},
       "attributes":[{"key":"e","value":{}},{"key":"bytes","value":{"bytesValue":"AJ+Slg=="}},{"key":"inf","value":{"doubleValue":"Infinity"}},{"key":"-inf","value":{"doubleValue":"-Infinity"}},{"key":"arr","value":{"arrayValue":{}}},{"key":"kv","value":{"kvlistValue":{}}},{"key":"big","value":{"intValue":"9007199254740993"}}]},
      {"body":{"doubleValue":"NaN"}}
    ]}]}]}"#;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/logs", r.source_addr("otel").unwrap()))
        .header("content-type", "application/json")
        .body(export)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    wait_until_async("both records over gRPC and over JSON", WAIT, || {
        records(&c.collector.logs()) == 2 && !c.collector.json_logs().is_empty()
    })
    .await;

    // Over gRPC (protobuf): every value as it was.
    let logs = c.collector.logs();
    let recs: Vec<&LogRecord> = logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect();
    let first = recs
        .iter()
        .find(|r| !r.attributes.is_empty())
        .expect("the first record");
    assert_eq!(first.severity_number, 13);
    assert_eq!(first.time_unix_nano, 1_764_842_400_000_000_001);
    let attr = |k: &str| {
        first
            .attributes
            .iter()
            .find(|a| a.key == k)
            .unwrap_or_else(|| panic!("attribute {k} kept"))
            .value
            .clone()
    };
    assert_eq!(
        attr("e"),
        Some(AnyValue { value: None }),
        "empty stays empty"
    );
    assert_eq!(
        attr("bytes").and_then(|v| v.value),
        Some(Value::BytesValue(vec![0, 159, 146, 150]))
    );
    assert!(
        matches!(attr("inf").and_then(|v| v.value), Some(Value::DoubleValue(d)) if d == f64::INFINITY)
    );
    assert!(
        matches!(attr("-inf").and_then(|v| v.value), Some(Value::DoubleValue(d)) if d == f64::NEG_INFINITY)
    );
    assert!(
        matches!(attr("arr").and_then(|v| v.value), Some(Value::ArrayValue(a)) if a.values.is_empty())
    );
    assert!(
        matches!(attr("kv").and_then(|v| v.value), Some(Value::KvlistValue(kv)) if kv.values.is_empty())
    );
    assert_eq!(
        attr("big").and_then(|v| v.value),
        Some(Value::IntValue(9_007_199_254_740_993))
    );
    match first.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::KvlistValue(kv)) => {
            assert_eq!(kv.values[0].key, "empty");
            assert_eq!(kv.values[0].value, Some(AnyValue { value: None }));
            assert!(matches!(
                kv.values[1].value.as_ref().and_then(|v| v.value.as_ref()),
                Some(Value::DoubleValue(d)) if d.is_nan()
            ));
        }
        other => panic!("body: {other:?}"),
    }
    let second = recs
        .iter()
        .find(|r| r.attributes.is_empty())
        .expect("the second record");
    assert!(
        matches!(second.body.as_ref().and_then(|b| b.value.as_ref()), Some(Value::DoubleValue(d)) if d.is_nan()),
        "a NaN body is kept over protobuf"
    );

    // Over HTTP/JSON: written as proto3 JSON writes them.
    let text: String = c
        .collector
        .json_logs()
        .iter()
        .map(|v| v.to_string())
        .collect();
    for want in [
        r#"{"key":"e","value":{}}"#,
        r#"{"bytesValue":"AJ+Slg=="}"#,
        r#"{"doubleValue":"Infinity"}"#,
        r#"{"doubleValue":"-Infinity"}"#,
        r#""body":{"doubleValue":"NaN"}"#,
        r#"{"arrayValue":{"values":[]}}"#,
        r#"{"intValue":"9007199254740993"}"#,
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert_eq!(metrics(&r).dropped_any("grpc_out"), 0);
    assert_eq!(metrics(&r).dropped_any("json_out"), 0);
    r.shutdown().await;
}

/// A JSON answer's `partialSuccess` count written as a string (`"5"`, as
/// proto3 JSON writes an int64) is honoured, not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_written_as_a_string_is_counted() {
    let c = Collector::start().await;
    c.collector.fail_next([Fault::PartialText(5)]);
    let r = start(&format!(
        r#"{{ type: otlp, protocol: http, http_encoding: json, endpoint: "{}", request: {{ concurrency: 1 }}, batch: {{ max_events: 10, timeout: 20ms }} }}"#,
        c.http_url()
    ))
    .await;
    let n = 30;
    send(&r, shipper_lines(n)).await;
    wait_until_async("every event accounted for", WAIT, || {
        let m = metrics(&r);
        m.dest("sluice_destination_sent_events_total", "out") + m.dropped("out", "rejected") == n
    })
    .await;
    assert_eq!(metrics(&r).dropped("out", "rejected"), 5);
    r.shutdown().await;
}

/// Metric events need no mapping: `log_to_metric`'s gauges and an
/// `aggregate`'s counter arrive as OTLP metrics (a Gauge per reading; a
/// delta, monotonic Sum over the window), the aggregate's open window
/// released at shutdown rather than lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_events_arrive_as_otlp_metrics_and_open_windows_at_shutdown() {
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, metric, number_data_point,
    };
    let c = Collector::start().await;
    let r = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
pipelines:
  gauges:
    - {{ type: log_to_metric, metrics: [{{ type: gauge, field: ms, name: latency, tags: {{ host: "{{{{ host }}}}" }} }}] }}
  counts:
    - {{ type: aggregate, window: 1h, group_by: [host], metrics: [{{ name: requests, type: count }}] }}
routes:
  - {{ name: gauges, destination: out, pipeline: gauges, final: false }}
  - {{ name: counts, destination: out, pipeline: counts }}
destinations:
  out: {{ type: otlp, endpoint: "{}", batch: {{ timeout: 50ms }} }}
"#,
        c.grpc_url()
    ))
    .await;
    send(
        &r,
        (0..30).map(|i| {
            format!(
                r#"{{"host":"web-{}","ms":{i},"timestamp":"2026-12-06T08:00:00Z"}}"#,
                i % 3
            )
        }),
    )
    .await;
    let points = |c: &Collector, name: &str| -> Vec<(metric::Data, Vec<KeyValue>)> {
        c.metrics()
            .into_iter()
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
            .filter(|m| m.name == name)
            .filter_map(|m| {
                let data = m.data?;
                let attrs = match &data {
                    metric::Data::Gauge(g) => g.data_points[0].attributes.clone(),
                    metric::Data::Sum(s) => s.data_points[0].attributes.clone(),
                    _ => Vec::new(),
                };
                Some((data, attrs))
            })
            .collect()
    };
    wait_until_async("30 gauges", WAIT, || {
        points(&c.collector, "latency").len() == 30
    })
    .await;
    for (data, attrs) in points(&c.collector, "latency") {
        let metric::Data::Gauge(g) = data else {
            panic!("a gauge: {data:?}")
        };
        let p = &g.data_points[0];
        assert_eq!(
            p.time_unix_nano, 1_796_544_000_000_000_000,
            "the event's time"
        );
        let Some(number_data_point::Value::AsInt(ms)) = p.value else {
            panic!("an integer reading: {p:?}")
        };
        let host = attrs
            .iter()
            .find(|a| a.key == "host")
            .and_then(|a| text(&a.value));
        assert_eq!(host, Some(format!("web-{}", ms % 3).as_str()));
    }
    assert!(
        points(&c.collector, "requests").is_empty(),
        "the hour is not over"
    );
    r.shutdown().await;
    let mut counts: Vec<(String, i64)> = points(&c.collector, "requests")
        .into_iter()
        .map(|(data, attrs)| {
            let metric::Data::Sum(s) = data else {
                panic!("a sum: {data:?}")
            };
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Delta as i32
            );
            assert!(s.is_monotonic);
            let p = &s.data_points[0];
            assert_eq!(p.time_unix_nano - p.start_time_unix_nano, 3_600_000_000_000);
            let Some(number_data_point::Value::AsInt(n)) = p.value else {
                panic!("a count: {p:?}")
            };
            let host = attrs
                .iter()
                .find(|a| a.key == "host")
                .and_then(|a| text(&a.value));
            (host.unwrap_or_default().to_string(), n)
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("web-0".to_string(), 10),
            ("web-1".to_string(), 10),
            ("web-2".to_string(), 10)
        ],
        "the open window went out at shutdown"
    );
}
