//! Encoding cost per event: the metric encodings against `ndjson` (a copy
//! of the event's bytes, the floor), on batches of 1,000 JSON events.
//!
//! `cargo bench --bench encoding` runs the criterion benchmarks, then an
//! interleaved comparison (every case timed in short alternating slices,
//! medians reported with their ratio to ndjson): on a shared machine only
//! those same-slice ratios are meaningful.
//! `cargo bench --bench encoding -- --interleaved-only` skips criterion.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use serde_json::json;
use sluice::codec::{Compression, Encoder, Encoding, MetricConfig};
use sluice::event::Event;

const BATCH: usize = 1000;

struct Case {
    name: &'static str,
    encoder: Option<Encoder>,
    events: Vec<Event>,
}

fn metric(cfg: serde_json::Value) -> MetricConfig {
    serde_json::from_value(cfg).expect("a metric config")
}

fn ready(cases: Vec<Case>) -> Vec<(&'static str, Encoder, Vec<Event>)> {
    cases
        .into_iter()
        .filter_map(|c| Some((c.name, c.encoder?, c.events)))
        .collect()
}

fn events(make: impl Fn(usize) -> String) -> Vec<Event> {
    (0..BATCH)
        .map(|i| Event::json(Bytes::from(make(i))))
        .collect()
}

fn cases() -> Vec<Case> {
    let point = |i: usize| {
        format!(
            r#"{{"metric":"api.latency_ms","value":{}.5,"ts":{},"host":"web-{}","region":"eu-west-1","msg":"request served","path":"/api/v1/orders/12345"}}"#,
            i % 977,
            1_796_155_200 + i,
            i % 16
        )
    };
    let rfc = |i: usize| {
        format!(
            r#"{{"metric":"api.latency_ms","value":{}.5,"ts":"2026-12-01T22:00:{:02}.250+02:00","host":"web-{}","region":"eu-west-1"}}"#,
            i % 977,
            i % 60,
            i % 16
        )
    };
    let collectd = |i: usize| {
        format!(
            r#"{{"values":[0.{i},0.4,0.3],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],"time":1796155200.{:03},"interval":10.000,"host":"web-{}","plugin":"load","plugin_instance":"","type":"load","type_instance":""}}"#,
            i % 1000,
            i % 16
        )
    };
    let plain = metric(
        json!({"name": "metric", "value": "value", "timestamp": "ts", "tags": ["host", "region"]}),
    );
    // `None` where this build cannot express the case (for comparing builds).
    let enc = |e: Encoding, m: Option<&MetricConfig>| Encoder::new(e, Compression::None, m).ok();
    vec![
        Case {
            name: "ndjson",
            encoder: enc(Encoding::Ndjson, None),
            events: events(point),
        },
        Case {
            // The same events parsed into one Cap'n Proto message.
            name: "capnp",
            encoder: enc(Encoding::Capnp, None),
            events: events(point),
        },
        Case {
            name: "graphite",
            encoder: enc(Encoding::Graphite, Some(&plain)),
            events: events(point),
        },
        Case {
            name: "influx",
            encoder: enc(Encoding::Influx, Some(&plain)),
            events: events(point),
        },
        Case {
            name: "influx_rfc3339",
            encoder: enc(Encoding::Influx, Some(&plain)),
            events: events(rfc),
        },
        Case {
            name: "statsd",
            encoder: enc(
                Encoding::Statsd,
                Some(&metric(
                    json!({"name": "metric", "value": "value", "tags": ["host", "region"]}),
                )),
            ),
            events: events(point),
        },
        Case {
            name: "collectd_graphite_x3",
            encoder: enc(
                Encoding::Graphite,
                Some(&metric(json!({
                    "name": "{{ host }}.{{ plugin }}-{{ plugin_instance }}.{{ type }}-{{ type_instance }}",
                    "value": "values",
                    "timestamp": "time"
                }))),
            ),
            events: events(collectd),
        },
    ]
}

fn run((name, encoder, events): &(&str, Encoder, Vec<Event>), out: &mut Vec<u8>) -> usize {
    out.clear();
    let skipped = encoder.encode_batch(events, out);
    assert!(skipped.is_empty(), "{name}: {} unencodable", skipped.len());
    out.len()
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut out = Vec::new();
    for case in ready(cases()) {
        g.bench_function(case.0, |b| b.iter(|| black_box(run(&case, &mut out))));
    }
    g.finish();
}

/// Every case timed in alternating 20-batch slices; medians of 60 slices.
fn interleaved() {
    let cases = ready(cases());
    let mut out = Vec::new();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..60 {
        for (i, case) in cases.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..20 {
                black_box(run(case, &mut out));
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / (20 * BATCH) as f64);
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect();
    println!("\ninterleaved medians (ns per event; ratio to ndjson):");
    for (case, m) in cases.iter().zip(&medians) {
        println!("  {:<22} {:>8.1} ns  {:>5.2}x", case.0, m, m / medians[0]);
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--interleaved-only") {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
    interleaved();
}
