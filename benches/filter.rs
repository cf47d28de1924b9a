//! Filter evaluation cost per event, on a 214-byte JSON event.
//!
//! `cargo bench --bench filter` runs the criterion benchmarks, then an
//! interleaved comparison: every case and every baseline is timed in short
//! alternating slices, and the medians are reported with ratios to the
//! baselines. On a shared machine whose speed drifts by 2x from one minute to
//! the next, only those same-slice ratios are meaningful.
//!
//! Baselines: `sonic_rs_get_x3` is the same three field lookups done with
//! sonic-rs (the approach first planned for filters); `serde_json_validate`
//! is one validating pass over the event.
//!
//! `cargo bench --bench filter -- --interleaved-only` skips criterion.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::Criterion;
use sluice::event::Event;
use sluice::expr::{FieldSet, Filter, Scratch};

const EVENT: &[u8] = br#"{"ts":"2026-11-22T10:00:00.123Z","host":"web-01.example.com","level":"error","status":503,"method":"GET","path":"/api/v1/orders/12345","latency_ms":123.4,"kube":{"namespace":"prod-eu","pod":"api-7d9f"}}"#;

const FILTERS: &[(&str, &str, bool)] = &[
    (
        "three_clause",
        r#"level == "error" && status >= 500 && kube.namespace.startsWith("prod")"#,
        true,
    ),
    // The usual case when routing: the first clause fails, so the scan stops
    // after `level` and never reaches `kube`.
    (
        "three_clause_first_fails",
        r#"level == "debug" && status >= 500 && kube.namespace.startsWith("prod")"#,
        false,
    ),
    ("one_clause", r#"level == "error""#, true),
    ("regex_raw", r#"_raw =~ /orders\/\d+/"#, true),
    ("in_list", r#"method in ["POST", "PUT", "GET"]"#, true),
    ("constant_true", "true", true),
];

type Case = Box<dyn FnMut()>;

fn cases() -> Vec<(String, Case)> {
    let event = Event::json(Bytes::from_static(EVENT));
    let mut out: Vec<(String, Case)> = Vec::new();
    for &(name, src, expected) in FILTERS {
        let filter = Filter::new(src).expect("benchmark filter compiles");
        let mut scratch = filter.scratch();
        assert_eq!(filter.matches(&event, &mut scratch), expected, "{name}");
        let event = event.clone();
        out.push((
            format!("filter/{name}"),
            Box::new(move || {
                black_box(filter.matches(black_box(&event), &mut scratch));
            }),
        ));
    }
    let mut fields = FieldSet::new();
    for p in [&["level"][..], &["status"][..], &["kube", "namespace"][..]] {
        fields.slot_for(p);
    }
    let mut scratch = Scratch::new(fields.len());
    out.push((
        "locate/three_fields".into(),
        Box::new(move || {
            fields.scan(black_box(EVENT), &mut scratch);
            black_box(&scratch);
        }),
    ));
    out.push((
        "baseline/serde_json_validate".into(),
        Box::new(|| {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(EVENT)).is_ok());
        }),
    ));
    out.push((
        // What `is_json` was before its own syntax check: the UTF-8 pass,
        // then serde.
        "baseline/is_json_via_serde".into(),
        Box::new(|| {
            let e = black_box(EVENT);
            black_box(
                std::str::from_utf8(e)
                    .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()),
            );
        }),
    ));
    out.push((
        "baseline/is_json".into(),
        Box::new(|| {
            black_box(sluice::sources::decoding::is_json(black_box(EVENT)));
        }),
    ));
    out.push((
        "baseline/sonic_rs_validate".into(),
        Box::new(|| {
            black_box(sonic_rs::from_slice::<serde::de::IgnoredAny>(black_box(EVENT)).is_ok());
        }),
    ));
    out.push((
        "baseline/sonic_rs_get_x3".into(),
        Box::new(|| {
            let e = black_box(EVENT);
            let l = sonic_rs::get_from_slice(e, ["level"]).ok();
            let s = sonic_rs::get_from_slice(e, ["status"]).ok();
            let n = sonic_rs::get_from_slice(e, ["kube", "namespace"]).ok();
            black_box(l.is_some() && s.is_some() && n.is_some());
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
    const ROUNDS: usize = 300;
    const ITERS: u32 = 2_000;
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
            samples[i].push(t.elapsed().as_nanos() as f64 / f64::from(ITERS));
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect();
    let find = |n: &str| {
        cases
            .iter()
            .position(|(name, _)| name == n)
            .map_or(f64::NAN, |i| medians[i])
    };
    let sonic = find("baseline/sonic_rs_get_x3");
    let serde = find("baseline/serde_json_validate");
    println!("\ninterleaved medians ({ROUNDS} rounds x {ITERS} iterations, same slices):");
    println!(
        "{:<36} {:>9} {:>12} {:>12}",
        "case", "ns/event", "÷ sonic x3", "÷ serde val"
    );
    for ((name, _), m) in cases.iter().zip(&medians) {
        println!(
            "{name:<36} {m:>9.1} {:>12.2} {:>12.2}",
            m / sonic,
            m / serde
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let interleaved_only = args.iter().any(|a| a == "--interleaved-only");
    // Under `--profile-time` (a profiler is attached) or `--list`, criterion alone.
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
