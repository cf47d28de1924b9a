//! What a pipeline costs per event, on the load test's 200-byte JSON event:
//! the representative pipeline (the event's JSON parsed, three field edits,
//! a mask, 10 % dropped, written back) as Cribl-style functions and as one
//! VRL program, beside a route's zero-parse filter and a bare parse + write
//! (the floor for anything that changes an event); and each
//! volume-reduction function alone (`reduce/...`).
//!
//! `cargo bench --bench pipeline` runs criterion, then an interleaved
//! comparison (every case timed in alternating slices, medians and ratios
//! from the same slices: on a shared machine only those mean anything).
//! `-- --interleaved-only` skips criterion.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::Criterion;
use sluice::config::Config;
use sluice::event::Event;
use sluice::expr::Filter;
use sluice::metrics::Metrics;
use sluice::pipeline::Pipeline;

/// Events per batch, as a source hands them to the router.
const BATCH: usize = 256;

/// The same work both ways (and in `loadtest`'s pipeline rows).
const PIPELINES: &str = r#"
pipelines:
  cribl:
    - type: eval
      set:
        env: "'prod'"
        status_class: "Math.floor(status / 100) + 'xx'"
      remove: [host]
    - { type: mask, field: msg, pattern: '^x{8}', replace: '********' }
    - { type: drop, filter: 'seq =~ /0$/' }
  remap:
    - type: remap
      source: |
        .env = "prod"
        .status_class = to_string(to_int(floor(to_int!(.status) / 100))) + "xx"
        del(.host)
        .msg = replace(string!(.msg), r'^x{8}', "********")
        if mod(to_int!(.seq), 10) == 0 { abort }
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: blackhole }
"#;

/// One volume-reduction function each (and in `loadtest`'s reduction rows).
const REDUCTION: &str = r#"
pipelines:
  sample: [{ type: sample, rate: 10 }]
  throttle: [{ type: throttle, limit: 1000000000, key: status }]
  dedupe: [{ type: dedupe, fields: [seq] }]
  aggregate:
    - type: aggregate
      window: 1h
      group_by: [level, status]
      metrics:
        - { name: events, type: count }
        - { name: status_sum, type: sum, field: status }
        - { name: seq, type: percentile, field: seq, percentiles: [99] }
  log_to_metric:
    - { type: log_to_metric, metrics: [{ type: counter, field: status, name: responses, tags: { status: "{{ status }}" } }] }
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: blackhole }
"#;

fn event(seq: usize) -> Event {
    let mut s = format!(r#"{{"seq":{seq},"level":"info","status":503,"host":"loadtest","msg":""#);
    s.push_str(&"x".repeat(200usize.saturating_sub(s.len() + 2)));
    s.push_str("\"}");
    Event::json(Bytes::from(s))
}

fn batch() -> Vec<Event> {
    (1..=BATCH).map(event).collect()
}

type Case = Box<dyn FnMut()>;

fn build(def: &sluice::config::PipelineDef, metrics: &Metrics) -> Arc<Pipeline> {
    Pipeline::build(
        &def.name,
        &def.functions,
        metrics,
        Arc::default(),
        &Default::default(),
    )
    .expect("the benchmark pipeline builds")
}

fn cases() -> Vec<(String, Case)> {
    let config = Config::load_str("bench.yaml", PIPELINES).expect("the benchmark config loads");
    let metrics = Metrics::new();
    let mut out: Vec<(String, Case)> = Vec::new();
    for def in &config.pipelines {
        let p = build(def, &metrics);
        let sample = p.process(batch());
        assert_eq!(
            sample.len(),
            BATCH - BATCH / 10,
            "{}: 10 % dropped",
            def.name
        );
        let first: serde_json::Value = serde_json::from_slice(&sample[0].raw).expect("json");
        assert_eq!(first["status_class"], "5xx", "{}: {first}", def.name);
        assert!(
            first["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("********"))
        );
        assert!(first.get("host").is_none());
        let input = batch();
        out.push((
            format!("pipeline/{}", def.name),
            Box::new(move || {
                black_box(p.process(black_box(input.clone())));
            }),
        ));
    }
    let config = Config::load_str("reduction.yaml", REDUCTION).expect("the reduction config loads");
    for def in &config.pipelines {
        let p = build(def, &metrics);
        let input = batch();
        out.push((
            format!("reduce/{}", def.name),
            Box::new(move || {
                black_box(p.process(black_box(input.clone())));
            }),
        ));
    }
    // What a route without a pipeline does to each event: its filter, lazily.
    let filter = Filter::new("status >= 200").expect("filter");
    let mut scratch = filter.scratch();
    let input = batch();
    out.push((
        "baseline/route_filter".into(),
        Box::new(move || {
            for e in black_box(&input) {
                black_box(filter.matches(e, &mut scratch));
            }
        }),
    ));
    // The floor for changing an event at all: parse it, write it back.
    let input = batch();
    out.push((
        "baseline/parse_and_write".into(),
        Box::new(move || {
            for e in black_box(&input) {
                let v: vrl::value::Value = serde_json::from_slice(&e.raw).expect("json");
                black_box(serde_json::to_vec(&v).expect("writes"));
            }
        }),
    ));
    out
}

fn criterion_benches(c: &mut Criterion) {
    for (name, mut f) in cases() {
        c.bench_function(&name, |b| b.iter(&mut f));
    }
}

fn interleaved() {
    const ROUNDS: usize = 60;
    const ITERS: u32 = 20;
    let mut cases = cases();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for (_, f) in cases.iter_mut() {
        for _ in 0..ITERS {
            f();
        }
    }
    for _ in 0..ROUNDS {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / f64::from(ITERS) / BATCH as f64);
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect();
    let floor = cases
        .iter()
        .position(|(n, _)| n == "baseline/parse_and_write")
        .map_or(f64::NAN, |i| medians[i]);
    println!("\ninterleaved medians ({ROUNDS} rounds x {ITERS} batches of {BATCH}, same slices):");
    println!("{:<28} {:>10} {:>14}", "case", "ns/event", "÷ parse+write");
    for ((name, _), m) in cases.iter().zip(&medians) {
        println!("{name:<28} {m:>10.1} {:>14.2}", m / floor);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let interleaved_only = args.iter().any(|a| a == "--interleaved-only");
    let criterion_only = args.iter().any(|a| a == "--profile-time" || a == "--list");
    if !interleaved_only {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
    if !criterion_only {
        interleaved();
    }
}
