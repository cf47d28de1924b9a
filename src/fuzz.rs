//! One entry point per parser of outside input, shared by the
//! coverage-guided fuzz targets (`fuzz/`, libFuzzer through cargo-fuzz,
//! `scripts/fuzz`) and the corpus replay that CI runs
//! (`tests/fuzz_corpora.rs`). Each takes arbitrary bytes and must never
//! panic; where a parser has a property beyond that (framing does not
//! depend on how the bytes were split into reads, a format reads back what
//! it wrote), the entry point asserts it, so the fuzzer finds its
//! violations too.

use bytes::Bytes;

use crate::event::{Event, Format};

/// Split `data` at its first NUL: a text part and a payload part.
fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(0, data) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn event_of(raw: &[u8]) -> Event {
    let raw = Bytes::copy_from_slice(raw);
    if crate::sources::decoding::is_json(&raw) {
        Event::json(raw)
    } else {
        Event::text(raw)
    }
}

/// Newline and octet-counted framing, fed in reads of varying sizes: the
/// events do not depend on the split, and none exceeds the line limit.
pub fn framing(data: &[u8]) {
    use crate::sources::decoding::Decoding;
    use crate::sources::framing::{Framer, Framing, Rejects};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let d = usize::from(mode >> 3) & 3;
    // The fourth decoding slot is auto framing (as the syslog source reads).
    let framing = match (d, mode & 1) {
        (3, _) => Framing::Auto,
        (_, 0) => Framing::Newline,
        _ => Framing::OctetCounting,
    };
    let max_line = [1usize, 7, 64, 1 << 20][usize::from(mode >> 1) & 3];
    let decoding = [
        Decoding::Auto,
        Decoding::Json,
        Decoding::Text,
        Decoding::Text,
    ][d];
    let step = usize::from(mode >> 5) + 1;
    let run = |chunk: usize| {
        let mut f = Framer::new(framing, max_line, decoding);
        let (mut out, mut rejects) = (Vec::new(), Rejects::default());
        let mut ok = true;
        for piece in rest.chunks(chunk.max(1)) {
            f.read_buf().extend_from_slice(piece);
            ok &= f.drain(&mut out, &mut rejects).is_ok();
            if !ok {
                break;
            }
        }
        if ok {
            ok &= f.finish(&mut out, &mut rejects).is_ok();
        }
        let events: Vec<(Vec<u8>, bool)> = out
            .iter()
            .map(|e| (e.raw.to_vec(), e.format == Format::Json))
            .collect();
        (events, ok, rejects.oversize, rejects.malformed)
    };
    let whole = run(rest.len());
    let pieces = run(step);
    for (raw, _) in &whole.0 {
        assert!(raw.len() <= max_line, "an event over the line limit");
    }
    if whole.1 && pieces.1 {
        assert_eq!(whole.0, pieces.0, "events depend on how reads were split");
    }
}

/// JSON detection and the HTTP source's body splitting (NDJSON or an
/// array), with invalid UTF-8 refused or replaced: every event it calls
/// JSON is JSON, and a replaced body gives UTF-8.
pub fn json_body(data: &[u8]) {
    use crate::sources::decoding::{InvalidUtf8, is_json};
    use crate::sources::http::parse_body;
    let oracle = std::str::from_utf8(data)
        .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok());
    assert_eq!(is_json(data), oracle);
    let body = Bytes::copy_from_slice(data);
    for utf8 in [InvalidUtf8::Reject, InvalidUtf8::Replace] {
        let mut out = Vec::new();
        if parse_body(&body, utf8, 1 << 20, &mut out).is_err() {
            continue;
        }
        for e in &out {
            if e.format == Format::Json {
                assert!(is_json(&e.raw), "an event called JSON that is not");
            }
            if utf8 == InvalidUtf8::Replace {
                assert!(std::str::from_utf8(&e.raw).is_ok());
            }
        }
    }
}

/// The filter language: a filter (before the first NUL) compiled, and
/// evaluated on the rest as an event, twice with the same answer.
pub fn filter(data: &[u8]) {
    let (text, payload) = two_parts(data);
    let Ok(f) = crate::expr::Filter::new(&String::from_utf8_lossy(text)) else {
        return;
    };
    let event = event_of(payload);
    let mut scratch = f.scratch();
    let first = f.matches(&event, &mut scratch);
    assert_eq!(first, f.matches(&event, &mut scratch), "not deterministic");
    let text_event = Event::text(event.raw.clone());
    let _ = f.matches(&text_event, &mut scratch);
}

/// `eval`'s expressions: an expression (before the first NUL) compiled and
/// evaluated on the rest as an event's value; when it is also a filter, the
/// filter reads the event's bytes to the same answer as the expression
/// reads its value (what `drop` relies on before and after a function).
pub fn expression(data: &[u8]) {
    use crate::expr::compute::{Ctx, Expr};
    let (text, payload) = two_parts(data);
    let text = String::from_utf8_lossy(text);
    let Ok(expr) = Expr::compile(&text) else {
        return;
    };
    let value = crate::pipeline::Work::Raw(event_of(payload)).into_value();
    let ctx = Ctx::new(&value, 0.0);
    let _ = expr.eval(&ctx).into_value();
    if let Ok(filter) = crate::expr::Filter::new(&text)
        && let Ok(written) = serde_json::to_vec(&value)
    {
        let mut scratch = filter.scratch();
        let on_bytes = filter.matches(&Event::json(Bytes::from(written)), &mut scratch);
        assert_eq!(
            on_bytes,
            expr.truth(&ctx),
            "bytes and value disagree on {text}"
        );
    }
}

/// The `parse` function's formats, one chosen by the first byte, on the
/// rest as a line: one event out (parsed or passed on, counted), always
/// writable JSON, never a panic.
pub fn parse(data: &[u8]) {
    use std::sync::{Arc, OnceLock};
    static PIPELINES: OnceLock<Vec<Arc<crate::pipeline::Pipeline>>> = OnceLock::new();
    let pipelines = PIPELINES.get_or_init(|| {
        let formats = [
            "{ type: parse, format: json }",
            "{ type: parse, format: kv }",
            "{ type: parse, format: syslog }",
            "{ type: parse, format: clf }",
            "{ type: parse, format: csv, columns: [a, b, c] }",
            r"{ type: parse, format: regex, pattern: '^(?P<word>\w+) (?P<rest>.*)$' }",
            "{ type: flatten }",
        ];
        let yaml: String = formats
            .iter()
            .enumerate()
            .map(|(i, f)| format!("  p{i}: [{f}]\n"))
            .collect();
        let config = crate::config::Config::load_str(
            "fuzz.yaml",
            &format!(
                "sources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\npipelines:\n{yaml}routes:\n  - {{ name: all, destination: out }}\ndestinations:\n  out: {{ type: blackhole }}\n"
            ),
        )
        .unwrap_or_else(|e| panic!("the fuzz config loads: {e}"));
        let metrics = crate::metrics::Metrics::new();
        config
            .pipelines
            .iter()
            .map(|d| {
                crate::pipeline::Pipeline::build(
                    &d.name,
                    &d.functions,
                    &metrics,
                    Arc::default(),
                    &Default::default(),
                )
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    });
    let Some((&which, line)) = data.split_first() else {
        return;
    };
    let p = &pipelines[usize::from(which) % pipelines.len()];
    for event in [Event::text(Bytes::copy_from_slice(line)), event_of(line)] {
        let out = p.process(vec![event]);
        assert_eq!(out.len(), 1, "{}: one event in, one out", p.name);
        if out[0].format == Format::Json {
            assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(&out[0].raw).is_ok(),
                "{}: not JSON",
                p.name
            );
        }
    }
}

/// Name templates, URL templates and partition paths, rendered for the
/// rest of the input as an event: a partition path stays relative, inside
/// its directory, and within the length limits.
pub fn template(data: &[u8]) {
    use crate::codec::fields::FieldReader;
    use crate::codec::template::Template;
    use crate::codec::url_template::UrlTemplate;
    use crate::staging::{Partitioner, name};
    let (text, payload) = two_parts(data);
    let text = String::from_utf8_lossy(text);
    let event = event_of(payload);
    let mut reader = FieldReader::new();
    if let Ok(t) = Template::parse(&text, &mut reader) {
        let mut scratch = reader.scratch();
        reader.locate(&event, &mut scratch);
        let mut out = String::new();
        let _ = t.render(&reader, &event, &scratch, &mut out);
    }
    if let Ok(Some(u)) = UrlTemplate::parse(&format!("http://h/{text}")) {
        let _ = u.render(&event);
    }
    if let Ok(p) = Partitioner::new(&text, "timestamp") {
        let mut s = p.scratch();
        for (path, _) in p.group(std::slice::from_ref(&event), &mut s) {
            assert!(!path.starts_with('/'), "an absolute partition: {path}");
            assert!(
                !path.split('/').any(|c| c == ".."),
                "a partition leaving its directory: {path}"
            );
            assert!(path.len() <= name::MAX_PATH, "a partition too long");
            assert!(
                path.split('/').all(|c| c.len() <= name::MAX_COMPONENT),
                "a partition component too long"
            );
        }
    }
}

/// The configuration loader: any text is a configuration or a clear error.
pub fn config(data: &[u8]) {
    let _ = crate::config::Config::load_str("fuzz.yaml", &String::from_utf8_lossy(data));
}

/// A directory of its own, removed when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> Option<ScratchDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).ok()?;
        Some(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A persistent queue's recovery and reader on a damaged segment: it
/// opens, reads to the end and counts, whatever the bytes.
pub fn queue_segment(data: &[u8]) {
    let Some(dir) = ScratchDir::new() else { return };
    if std::fs::write(crate::queue::segment::path(&dir.0, 1), data).is_err() {
        return;
    }
    let Ok((q, report)) = crate::queue::disk::DiskQueue::open(&dir.0, 4096) else {
        return;
    };
    let mut events = 0u64;
    let mut corrupt = 0u64;
    for _ in 0..10_000 {
        if q.unread() == 0 {
            break;
        }
        match q.read(4) {
            Ok(r) if r.frames.is_empty() && r.corrupt_events == 0 => break,
            Ok(r) => {
                corrupt += r.corrupt_events;
                events += r.frames.iter().map(|f| f.events.len() as u64).sum::<u64>();
            }
            Err(_) => break,
        }
    }
    assert!(events <= report.events + corrupt, "read more than it found");
}

/// OTLP protobuf exports into events and back: a log record comes back
/// exactly (NaN aside, which is compared as NaN), through its JSON and
/// through its borrowed bytes (regrouped as the destination sends them).
#[cfg(feature = "otlp")]
pub fn otlp_protobuf(data: &[u8]) {
    use crate::otlp::event::{LogEvent, log_events, metrics_events, traces_events};
    use crate::otlp::wire::{DATA_POINTS, LOG_RECORDS, SPANS, count};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    // What decodes was counted right on the wire (`max_events` relies on it).
    if let Ok(req) = ExportLogsServiceRequest::decode(data) {
        let records = req.resource_logs.iter().flat_map(|r| &r.scope_logs);
        let n: usize = records.map(|s| s.log_records.len()).sum();
        assert_eq!(
            count(data, LOG_RECORDS, usize::MAX),
            Ok(n),
            "log records miscounted"
        );
        let mut events = Vec::new();
        log_events(&req.resource_logs, &mut events);
        let originals = req
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records);
        for (e, original) in events.iter().zip(originals) {
            let back: LogEvent = serde_json::from_slice(&e.raw).expect("an OTLP event reads back");
            let (_, record) = back.into_parts();
            assert_eq!(
                format!("{:?}", normalize(record.encode_to_vec())),
                format!("{:?}", normalize(original.encode_to_vec())),
                "a log record changed on its way through an event"
            );
        }
        // Decoded down to the records, written by `record_json`: the same
        // events, each borrowing its record.
        let body = Bytes::copy_from_slice(data);
        let shallow = crate::otlp::shallow::ShallowExport::decode(body.clone())
            .expect("what decodes whole decodes shallow");
        let mut wire = Vec::new();
        crate::otlp::event::log_events_wire(&shallow, &body, &mut wire)
            .expect("each record decodes");
        assert_eq!(wire.len(), n, "a log record made no event");
        for (w, e) in wire.iter().zip(&events) {
            assert_eq!(w.raw, e.raw, "record_json wrote other JSON than serde");
        }
        let mut logs = crate::otlp::borrowed::WireLogs::default();
        let mut finder = crate::otlp::exports::Finder::default();
        for e in &wire {
            logs.push(&finder.find(&e.raw).expect("a decoded record is borrowed"));
        }
        let mut sent = Vec::new();
        logs.encode(&mut sent);
        let back = ExportLogsServiceRequest::decode(sent.as_slice())
            .expect("what the destination sends decodes");
        assert_eq!(
            format!("{:?}", back.resource_logs),
            format!("{:?}", crate::otlp::borrowed::regrouped(&req)),
            "borrowed records changed on their way through"
        );
    }
    if let Ok(req) = ExportMetricsServiceRequest::decode(data) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let points = |d: &Data| match d {
            Data::Gauge(g) => g.data_points.len(),
            Data::Sum(s) => s.data_points.len(),
            Data::Histogram(h) => h.data_points.len(),
            Data::ExponentialHistogram(h) => h.data_points.len(),
            Data::Summary(s) => s.data_points.len(),
        };
        let metrics = req.resource_metrics.iter().flat_map(|r| &r.scope_metrics);
        let n: usize = metrics
            .flat_map(|s| &s.metrics)
            .filter_map(|m| m.data.as_ref())
            .map(points)
            .sum();
        assert_eq!(
            count(data, DATA_POINTS, usize::MAX),
            Ok(n),
            "data points miscounted"
        );
        metrics_events(req.resource_metrics, &mut Vec::new());
    }
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        let scopes = req.resource_spans.iter().flat_map(|r| &r.scope_spans);
        let n: usize = scopes.map(|s| s.spans.len()).sum();
        assert_eq!(count(data, SPANS, usize::MAX), Ok(n), "spans miscounted");
        traces_events(req.resource_spans, &mut Vec::new());
    }
}

/// A record re-decoded with the empty value for a key without one (the
/// event form reads `null` as the empty value) and NaN made comparable.
#[cfg(feature = "otlp")]
fn normalize(bytes: Vec<u8>) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use prost::Message;
    fn value(v: &mut AnyValue) {
        match &mut v.value {
            Some(Value::DoubleValue(d)) if d.is_nan() => *d = f64::MAX,
            Some(Value::ArrayValue(a)) => a.values.iter_mut().for_each(value),
            Some(Value::KvlistValue(kv)) => kv.values.iter_mut().for_each(kv_value),
            Some(Value::StringValueStrindex(_)) => v.value = None,
            _ => {}
        }
    }
    fn kv_value(kv: &mut KeyValue) {
        let v = kv.value.get_or_insert_with(AnyValue::default);
        value(v);
        kv.key_strindex = 0;
    }
    let mut r = opentelemetry_proto::tonic::logs::v1::LogRecord::decode(bytes.as_slice())
        .unwrap_or_default();
    if let Some(b) = r.body.as_mut() {
        value(b);
    }
    r.attributes.iter_mut().for_each(kv_value);
    r
}

/// OTLP/JSON logs: what reads, writes and reads back the same; and any
/// JSON as an event mapped to a log record.
#[cfg(feature = "otlp")]
pub fn otlp_json(data: &[u8]) {
    use crate::otlp::json::{decode_logs, encode_logs, partial_success};
    let counted =
        crate::otlp::wire::count_json(data, crate::otlp::wire::JSON_LOG_RECORDS, usize::MAX);
    if let Ok(req) = decode_logs(data) {
        let records = req.resource_logs.iter().flat_map(|r| &r.scope_logs);
        let n: usize = records.map(|s| s.log_records.len()).sum();
        assert_eq!(counted, Ok(n), "OTLP/JSON log records miscounted");
        let once = encode_logs(&req);
        let again = decode_logs(&once).expect("what was written reads back");
        assert_eq!(encode_logs(&again), once, "OTLP/JSON did not round-trip");
    }
    let _ = partial_success(data, "rejectedLogRecords", "rejected_log_records");
    let _ = crate::otlp::mapping::MappingConfig::default().record(&event_of(data));
}

/// The forwarding decoder: a batch that decodes re-encodes to the same
/// events.
#[cfg(feature = "sluice")]
pub fn forward(data: &[u8]) {
    use crate::codec::Compression;
    use prost::Message;
    let Ok(req) = crate::forward::SendRequest::decode(data) else {
        return;
    };
    let Ok(events) = crate::forward::events(req, 1 << 20, 1 << 20) else {
        return;
    };
    let again = crate::forward::request(&events, Compression::None, "fuzz");
    let back =
        crate::forward::events(again, 1 << 20, 1 << 20).expect("what sluice wrote reads back");
    assert_eq!(
        back.iter().map(|e| (&e.raw, e.format)).collect::<Vec<_>>(),
        events
            .iter()
            .map(|e| (&e.raw, e.format))
            .collect::<Vec<_>>(),
        "a forwarded batch changed"
    );
}

/// Backstop's endpoints (publish, collectd, the GitHub and PagerDuty
/// webhooks) and influx's partial-write answers.
pub fn backstop(data: &[u8]) {
    use crate::sources::backstop;
    let prefixes = vec!["app".to_string()];
    if let Ok(metrics) = backstop::publish(&prefixes, "app", data) {
        for m in metrics {
            let _ = m.event(Some("key"));
        }
    }
    let _ = backstop::collectd(data);
    let _ = backstop::github(data);
    let _ = backstop::pagerduty(data);
    let _ = crate::codec::influx_partial_write(&String::from_utf8_lossy(data));
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay and the fuzz crate.
/// The syslog source's reading of one message: exactly one event, valid
/// JSON, with a `message`, whatever the bytes.
pub fn syslog(data: &[u8]) {
    let e = crate::sources::syslog::event_of(data);
    let v: serde_json::Value = serde_json::from_slice(&e.raw).expect("a syslog event is JSON");
    assert!(v["message"].is_string(), "no message: {v}");
}

/// The statsd source's reading of one line: valid JSON events (one per
/// value of a line it takes, one kept whole), or the line counted malformed.
pub fn statsd(data: &[u8]) {
    let (events, malformed, unparsed) = crate::sources::statsd::events_of(data);
    assert!(
        events.is_empty() == (malformed == 1),
        "a line is either events or counted"
    );
    assert!(
        unparsed == 0 || events.len() == 1,
        "a line kept whole is one event"
    );
    for e in events {
        let v: serde_json::Value = serde_json::from_slice(&e.raw).expect("a statsd event is JSON");
        assert!(v.is_object());
    }
}

/// A Splunk HEC body, as `/event` envelopes and as `/raw` lines: JSON
/// object events, or the whole body refused; never more than asked for.
pub fn hec(data: &[u8]) {
    use crate::sources::splunk_hec::envelope::{self, Defaults};
    let d = Defaults::default();
    for events in [
        envelope::events(data, &d, "now", 50),
        envelope::raw(data, &d, "now", 50),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!events.is_empty() && events.len() <= 50);
        for e in events {
            let v: serde_json::Value = serde_json::from_slice(&e.raw).expect("a HEC event is JSON");
            assert!(v.is_object() && v["timestamp"].is_string(), "{v}");
        }
    }
}

/// The fluent source's reading of a connection's bytes: each complete
/// MessagePack object (found by the scanner, fed in pieces) is a message
/// whose events are JSON objects with `tag` and `timestamp`, or it is
/// refused whole; the scanner finds the same objects whatever the pieces.
pub fn fluent(data: &[u8]) {
    crate::sources::fluent::fuzz(data);
}

pub const TARGETS: &[(&str, Target)] = &[
    ("syslog", syslog),
    ("fluent", fluent),
    ("hec", hec),
    ("statsd", statsd),
    ("framing", framing),
    ("json_body", json_body),
    ("filter", filter),
    ("expression", expression),
    ("parse", parse),
    ("template", template),
    ("config", config),
    ("queue_segment", queue_segment),
    #[cfg(feature = "otlp")]
    ("otlp_protobuf", otlp_protobuf),
    #[cfg(feature = "otlp")]
    ("otlp_json", otlp_json),
    #[cfg(feature = "sluice")]
    ("forward", forward),
    ("backstop", backstop),
];
