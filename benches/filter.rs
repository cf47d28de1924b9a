//! Filter evaluation cost per event, on a ~200-byte JSON event.
//!
//! `cargo bench --bench filter`. The goal (DESIGN.md §7) is a three-clause
//! filter under 100 ns per event; `sonic_rs_get_x3` is the same three lookups
//! done with sonic-rs, the approach DESIGN.md first suggested, as a baseline
//! measured in the same run.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice::event::Event;
use sluice::expr::Filter;
use std::hint::black_box;

const EVENT: &[u8] = br#"{"ts":"2026-11-22T10:00:00.123Z","host":"web-01.example.com","level":"error","status":503,"method":"GET","path":"/api/v1/orders/12345","latency_ms":123.4,"kube":{"namespace":"prod-eu","pod":"api-7d9f"}}"#;

fn bench(c: &mut Criterion) {
    let event = Event::json(Bytes::from_static(EVENT));
    let mut group = c.benchmark_group("filter");
    for (name, src) in [
        (
            "three_clause",
            r#"level == "error" && status >= 500 && kube.namespace.startsWith("prod")"#,
        ),
        ("one_clause", r#"level == "error""#),
        ("regex_raw", r#"_raw =~ /orders\/\d+/"#),
        ("in_list", r#"method in ["POST", "PUT", "GET"]"#),
        ("constant_true", "true"),
    ] {
        let filter = Filter::new(src).expect("benchmark filter compiles");
        let mut scratch = filter.scratch();
        assert!(filter.matches(&event, &mut scratch), "{name} must match");
        group.bench_function(name, |b| {
            b.iter(|| filter.matches(black_box(&event), &mut scratch))
        });
    }
    group.finish();

    // Baselines in the same run: the floor (touch every byte once) and the
    // alternatives this design was chosen over.
    let mut base = c.benchmark_group("baseline");
    base.bench_function("byte_loop_count_quotes", |b| {
        b.iter(|| black_box(EVENT).iter().filter(|&&c| c == b'"').count())
    });
    base.bench_function("serde_json_validate", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(EVENT)).is_ok())
    });
    base.bench_function("sonic_rs_get_x3", |b| {
        b.iter(|| {
            let e = black_box(EVENT);
            let l = sonic_rs::get_from_slice(e, ["level"]).ok();
            let s = sonic_rs::get_from_slice(e, ["status"]).ok();
            let n = sonic_rs::get_from_slice(e, ["kube", "namespace"]).ok();
            l.is_some() && s.is_some() && n.is_some()
        })
    });
    base.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
