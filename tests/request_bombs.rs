//! What one request may cost: a few kilobytes that decompress into millions
//! of events are refused quickly, with memory flat, while honest requests
//! keep flowing. RSS is sampled every 10 ms while the bombs land.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Sluice, http_request, runtime, wait_until};

/// The highest RSS seen while `work` runs, less the RSS before it.
fn peak_growth(s: &Sluice, work: impl FnOnce()) -> u64 {
    let pid = s.pid();
    let before = common::rss_bytes(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(common::rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    work();
    std::thread::sleep(Duration::from_millis(100));
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    peak.load(Ordering::Relaxed).saturating_sub(before)
}

/// POST a binary body; the status code.
fn post_gzip(addr: SocketAddr, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: sluice\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn gzip_bombs_of_empty_events_are_refused_with_memory_flat() {
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  web: { type: http, address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    let addr = s.source("web");
    // 10 MiB of `{}` lines (3.5 million events) in about 10 KB of gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let line = b"{}\n";
    for _ in 0..(10 << 20) / line.len() {
        gz.write_all(line).expect("gzip");
    }
    let bomb = Arc::new(gz.finish().expect("gzip"));
    assert!(bomb.len() < 64 << 10, "the bomb is {} bytes", bomb.len());
    let start = std::time::Instant::now();
    let grown = peak_growth(&s, || {
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let bomb = bomb.clone();
                std::thread::spawn(move || post_gzip(addr, &bomb))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("bomber"), 413);
        }
    });
    let took = start.elapsed();
    assert!(
        grown < 200 << 20,
        "ten bombs at once grew RSS by {} MiB",
        grown >> 20
    );
    assert_eq!(s.metrics().rejected("web", "oversize"), 10);
    // Honest traffic is untouched.
    let (code, _) = http_request(addr, "POST", "/", &[], "{\"honest\":1}\n{\"honest\":2}");
    assert_eq!(code, 200);
    wait_until("the honest events", Duration::from_secs(10), || {
        s.metrics().source_events("web") == 2
    });
    eprintln!(
        "ten {} KB gzip bombs: refused in {took:?}, peak RSS growth {} MiB",
        bomb.len() >> 10,
        grown >> 20
    );
}

#[test]
fn a_forwarded_batch_of_millions_of_empty_events_is_refused_with_memory_flat() {
    use sluice::forward::pb::forward_client::ForwardClient;
    use sluice::forward::{SendRequest, VERSION};
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  edge: { type: sluice, address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    let url = format!("http://{}", s.source("edge"));
    let rt = runtime();
    let send = |req: SendRequest| {
        rt.block_on(async {
            let mut c = ForwardClient::connect(url.clone())
                .await
                .expect("connect")
                .send_compressed(tonic::codec::CompressionEncoding::Gzip);
            c.send(req)
                .await
                .map(|r| r.into_inner().accepted)
                .map_err(|e| e.code())
        })
    };
    let grown = peak_growth(&s, || {
        let bomb = SendRequest {
            version: VERSION,
            lengths: vec![0; 5_000_000],
            ..Default::default()
        };
        assert_eq!(send(bomb), Err(tonic::Code::InvalidArgument));
    });
    assert!(
        grown < 200 << 20,
        "the bomb grew RSS by {} MiB",
        grown >> 20
    );
    assert_eq!(s.metrics().rejected("edge", "oversize"), 1);
    let honest = SendRequest {
        version: VERSION,
        data: bytes::Bytes::from_static(br#"{"seq":0}"#),
        lengths: vec![9],
        ..Default::default()
    };
    assert_eq!(send(honest), Ok(1));
    eprintln!(
        "a 5M-event forwarding bomb: peak RSS growth {} MiB",
        grown >> 20
    );
}

/// An OTLP export of a million and a half empty log records (3 MB of
/// protobuf, under `max_body_bytes`) is refused before it is decoded, with
/// memory flat, over gRPC and over HTTP, and honest exports go on.
#[test]
fn an_otlp_export_of_millions_of_empty_records_is_refused() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  grpc: { type: otlp, grpc_address: 127.0.0.1:0 }
  web: { type: otlp, http_address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    let export = |n: usize| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let rt = runtime();
    let url = format!("http://{}", s.source("grpc"));
    let send = |req: ExportLogsServiceRequest| {
        rt.block_on(async {
            LogsServiceClient::connect(url.clone())
                .await
                .expect("connect")
                .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_encoding_message_size(8 << 20)
                .export(req)
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        })
    };
    let grown = peak_growth(&s, || {
        assert_eq!(send(export(1_500_000)), Err(tonic::Code::InvalidArgument));
    });
    // Decoded, these records would take ~300 MB; counted on the wire, the
    // export costs its own bytes (3 MB, a copy or two in tonic's buffers).
    eprintln!(
        "a 1.5M-record OTLP/gRPC export: peak RSS growth {} MiB",
        grown >> 20
    );
    assert!(grown < 48 << 20, "grew {} MiB", grown >> 20);
    assert_eq!(s.metrics().rejected("grpc", "oversize"), 1);
    assert_eq!(send(export(3)), Ok(()));

    // Spans, over gRPC, are counted the same way.
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); 200_000],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let refused = rt.block_on(async {
        TraceServiceClient::connect(url.clone())
            .await
            .expect("connect")
            .max_encoding_message_size(8 << 20)
            .export(spans)
            .await
            .map(|_| ())
            .map_err(|e| e.code())
    });
    assert_eq!(refused, Err(tonic::Code::InvalidArgument));
    assert_eq!(s.metrics().rejected("grpc", "oversize"), 2);

    let body = export(1_500_000).encode_to_vec();
    let grown = peak_growth(&s, || {
        let mut c = TcpStream::connect(s.source("web")).expect("connect");
        let head = format!(
            "POST /v1/logs HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).expect("write");
        c.write_all(&body).expect("write");
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{}",
            &answer[..answer.len().min(200)]
        );
    });
    eprintln!(
        "a 1.5M-record OTLP/HTTP export: peak RSS growth {} MiB",
        grown >> 20
    );
    assert!(grown < 48 << 20, "grew {} MiB", grown >> 20);

    // OTLP/JSON: 1.2 M `{}` records in 3.6 MB.
    let mut json = String::from(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":["#);
    json.push_str(&vec!["{}"; 1_200_000].join(","));
    json.push_str("]}]}]}");
    let grown = peak_growth(&s, || {
        let (status, _) = http_request(
            s.source("web"),
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/json")],
            &json,
        );
        assert_eq!(status, 413);
    });
    eprintln!(
        "a 1.2M-record OTLP/JSON export: peak RSS growth {} MiB",
        grown >> 20
    );
    assert!(grown < 48 << 20, "grew {} MiB", grown >> 20);
    assert_eq!(s.metrics().rejected("web", "oversize"), 2);
    wait_until(
        "only the honest records routed",
        Duration::from_secs(10),
        || s.metrics().source_events("grpc") == 3,
    );
    assert_eq!(s.metrics().source_events("web"), 0);
}
