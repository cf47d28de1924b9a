use std::collections::HashMap;
use std::str::FromStr;

use bytes::Bytes;
use tokio::time::Duration;

use super::*;
use crate::event::Event;
use crate::metric_event::MetricEvent;

/// The wall clock of the event-time tests: the events' times are hours
/// before it (none is implausibly ahead).
const NOW: i64 = 1_765_010_000_000;

/// An aggregate whose wall clock starts at `wall_ms`.
fn aggregate(yaml: &str, wall_ms: i64) -> Aggregate {
    let c: AggregateConfig = serde_saphyr::from_str(yaml).expect("config");
    Aggregate {
        windows: Arc::new(c.check().expect("valid")),
        state: Arc::new(State::starting_at(wall_ms)),
        passthrough: c.passthrough,
    }
}

fn feed(a: &Aggregate, events: impl IntoIterator<Item = String>) -> (Vec<MetricEvent>, Tally) {
    let batch = events
        .into_iter()
        .map(|e| Work::Raw(Event::json(Bytes::from(e))))
        .collect();
    let mut out = Vec::new();
    let mut tally = Tally::default();
    a.run(batch, &mut out, &mut tally);
    a.flush(Flush::Due, &mut out, &mut tally);
    (metrics(out), tally)
}

fn flush(a: &Aggregate, mode: Flush) -> Vec<MetricEvent> {
    let mut out = Vec::new();
    let mut tally = Tally::default();
    a.flush(mode, &mut out, &mut tally);
    assert_eq!(tally.emitted, out.len() as u64);
    metrics(out)
}

fn metrics(out: Vec<Work>) -> Vec<MetricEvent> {
    out.into_iter()
        .map(|w| {
            let e = w.into_event().expect("writable");
            MetricEvent::parse(&e.raw).expect("a metric event")
        })
        .collect()
}

fn value(m: &MetricEvent) -> f64 {
    m.value.as_f64().expect("a number")
}

/// 100,000 events over 37 hosts across three 10 s windows of event time:
/// every count and sum exact, min/max/avg exact, percentiles within 1 %.
#[test]
fn counts_sums_and_percentiles_per_group_and_window() {
    let a = aggregate(
        r#"
type: aggregate
window: 10s
time_field: ts
lateness: 0s
group_by: [host]
metrics:
  - { name: requests, type: count }
  - { name: bytes, type: sum, field: size }
  - { name: smallest, type: min, field: size }
  - { name: largest, type: max, field: size }
  - { name: mean, type: avg, field: size }
  - { name: latency, type: percentile, field: ms, percentiles: [50, 99] }
  - { name: users, type: distinct_count, field: user }
"#,
        NOW,
    );
    let base = 1_765_000_000_000i64; // a 10 s boundary
    let mut want: HashMap<(i64, String), Vec<(i64, i64)>> = HashMap::new();
    let mut events = Vec::new();
    for i in 0..100_000i64 {
        let host = format!("h{}", i % 37);
        let ts = base + i * 25_000 / 100_000; // 0..25 s
        let size = (i * 7919) % 1000;
        let ms = 1 + (i * 104_729) % 5000;
        want.entry(((ts - base) / 10_000, host.clone()))
            .or_default()
            .push((size, ms));
        events.push(format!(
            r#"{{"host":"{host}","ts":{ts},"size":{size},"ms":{ms},"user":"u{}"}}"#,
            i % 11
        ));
    }
    let (mut out, tally) = feed(&a, events);
    assert_eq!(tally.dropped[DropReason::Aggregated as usize], 100_000);
    // The newest event is in the third window: two have closed.
    let closed = out.len();
    out.extend(flush(&a, Flush::All));
    assert_eq!(flush(&a, Flush::All), [], "all of it went");
    let per_group = 1 + 1 + 1 + 1 + 1 + 2 + 1;
    assert_eq!(out.len(), 3 * 37 * per_group);
    assert_eq!(closed, 2 * 37 * per_group);
    for m in &out {
        let end = jiff::Timestamp::from_str(m.timestamp.as_deref().unwrap())
            .unwrap()
            .as_millisecond();
        let window = (end - base) / 10_000 - 1;
        let host = m.tags["host"].clone();
        let rows = &want[&(window, host)];
        let mut sizes: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let mut ms: Vec<i64> = rows.iter().map(|r| r.1).collect();
        sizes.sort_unstable();
        ms.sort_unstable();
        let exact = |q: f64| ms[(q * (ms.len() as f64 - 1.0)) as usize] as f64;
        let v = value(m);
        match m.name.as_str() {
            "requests" => {
                assert_eq!(m.value.as_u64(), Some(rows.len() as u64));
                assert_eq!(m.kind, MetricKind::Counter);
            }
            "bytes" => assert_eq!(v, sizes.iter().sum::<i64>() as f64),
            "smallest" => assert_eq!(v, sizes[0] as f64),
            "largest" => assert_eq!(v, *sizes.last().unwrap() as f64),
            "mean" => {
                let mean = sizes.iter().sum::<i64>() as f64 / sizes.len() as f64;
                assert!((v - mean).abs() < 1e-9, "{v} {mean}");
            }
            "latency_p50" => assert!((v - exact(0.5)).abs() <= 0.01 * exact(0.5), "{m:?}"),
            "latency_p99" => assert!((v - exact(0.99)).abs() <= 0.01 * exact(0.99), "{m:?}"),
            "users" => assert_eq!(m.value.as_u64(), Some(11)),
            other => panic!("unexpected metric {other}"),
        }
        assert_eq!(m.interval_ms, Some(10_000));
    }
}

#[test]
fn late_events_are_counted_and_unreadable_times_are_errors() {
    let a = aggregate(
        "{type: aggregate, window: 1s, time_field: t, lateness: 2s, metrics: [{name: n, type: count}]}",
        NOW,
    );
    let e = |t: i64| format!(r#"{{"t":{t}}}"#);
    let base = 1_765_000_000_000i64;
    let (out, _) = feed(&a, [e(base), e(base + 500)]);
    assert_eq!(out, []);
    // 3.5 s later: the first window (ends at +1 s) is 2.5 s past its end.
    let (out, tally) = feed(&a, [e(base + 3_500), e(base + 1_200), e(base + 100)]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].value.as_u64(),
        Some(3),
        "+100 ms came before it closed"
    );
    assert_eq!(tally.dropped[DropReason::Aggregated as usize], 3);
    // Its window is out: late now. A time that cannot be read, or one a
    // day ahead of the clock (which would close every window), is an error.
    let (_, tally) = feed(
        &a,
        [
            e(base + 999),
            r#"{"t":"soon"}"#.to_string(),
            e(NOW + 86_400_000),
        ],
    );
    assert_eq!(tally.dropped[DropReason::Late as usize], 1);
    assert_eq!(tally.dropped[DropReason::Error as usize], 2);
    let rest = flush(&a, Flush::All);
    let counts: Vec<u64> = rest.iter().filter_map(|m| m.value.as_u64()).collect();
    assert_eq!(
        counts,
        [1, 1],
        "+1.2 s in the second window, +3.5 s in the fourth"
    );
}

#[test]
fn sliding_windows_merge_their_panes() {
    let a = aggregate(
        "{type: aggregate, window: 3s, hop: 1s, time_field: t, lateness: 0s, metrics: [{name: n, type: count}, {name: s, type: sum, field: v}]}",
        NOW,
    );
    let base = 1_765_000_000_000i64;
    // One event in each of 5 seconds, value = its second.
    let events = (0..5).map(|i| format!(r#"{{"t":{},"v":{i}}}"#, base + i * 1000 + 10));
    let (mut out, _) = feed(&a, events);
    out.extend(flush(&a, Flush::All));
    let ends_and_counts: Vec<(i64, u64)> = out
        .iter()
        .filter(|m| m.name == "n")
        .map(|m| {
            let end = jiff::Timestamp::from_str(m.timestamp.as_deref().unwrap())
                .unwrap()
                .as_millisecond();
            (((end - base) / 1000), m.value.as_u64().unwrap())
        })
        .collect();
    // Windows ending at 1..=7 s hold 1, 2, 3, 3, 3, 2, 1 events.
    assert_eq!(
        ends_and_counts,
        [(1, 1), (2, 2), (3, 3), (4, 3), (5, 3), (6, 2), (7, 1)]
    );
    let sums: Vec<f64> = out.iter().filter(|m| m.name == "s").map(value).collect();
    assert_eq!(sums, [0.0, 1.0, 3.0, 6.0, 9.0, 7.0, 4.0]);
    assert!(
        out.iter().all(|m| m.kind == MetricKind::Gauge),
        "overlapping: not deltas"
    );
}

/// Arrival time on the paused clock: a window closes when its time passes,
/// with no event after it.
#[tokio::test(start_paused = true)]
async fn arrival_time_windows_close_on_the_clock() {
    let a = aggregate(
        "{type: aggregate, window: 10s, group_by: [k], metrics: [{name: n, type: count}]}",
        1_765_000_000_000,
    );
    let (out, _) = feed(&a, (0..5).map(|i| format!(r#"{{"k":"{}"}}"#, i % 2)));
    assert_eq!(out, []);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert_eq!(flush(&a, Flush::Due), []);
    tokio::time::advance(Duration::from_millis(1)).await;
    let out = flush(&a, Flush::Due);
    let got: Vec<(String, u64)> = out
        .iter()
        .map(|m| (m.tags["k"].clone(), m.value.as_u64().unwrap()))
        .collect();
    assert_eq!(got, [("0".to_string(), 3), ("1".to_string(), 2)]);
    assert_eq!(
        out[0].timestamp.as_deref(),
        Some("2025-12-06T05:46:50.000Z"),
        "stamped with the window's end"
    );
}

#[test]
fn groups_past_the_bound_share_one_labelled_other() {
    let a = aggregate(
        "{type: aggregate, time_field: t, max_groups: 3, group_by: [k], metrics: [{name: n, type: count}]}",
        NOW,
    );
    let (_, _) = feed(
        &a,
        (0..10).map(|i| format!(r#"{{"t":1765000000000,"k":{i}}}"#)),
    );
    let out = flush(&a, Flush::All);
    assert_eq!(out.len(), 4);
    let other: Vec<&MetricEvent> = out.iter().filter(|m| m.tags["k"] == "_other").collect();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].value.as_u64(), Some(7));
}

#[test]
fn passthrough_and_orphaned_state() {
    let a = aggregate(
        "{type: aggregate, passthrough: true, time_field: t, metrics: [{name: n, type: count}]}",
        NOW,
    );
    let mut out = Vec::new();
    let mut tally = Tally::default();
    let event = Work::Raw(Event::json(Bytes::from_static(br#"{"t":1765000000000}"#)));
    a.run(vec![event], &mut out, &mut tally);
    assert_eq!(out.len(), 1, "the event goes on");
    assert_eq!(tally.dropped, [0; DropReason::ALL.len()]);
    let kept = a.state.clone();
    assert_eq!(flush(&a, Flush::Orphaned), [], "still held elsewhere");
    drop(kept);
    assert_eq!(
        flush(&a, Flush::Orphaned).len(),
        1,
        "its last holder says it"
    );
}

#[test]
fn settings_refused() {
    for bad in [
        "{type: aggregate, metrics: []}",
        "{type: aggregate, window: 10s, hop: 3s, metrics: [{name: n, type: count}]}",
        "{type: aggregate, lateness: 1s, metrics: [{name: n, type: count}]}",
        "{type: aggregate, metrics: [{name: n, type: sum}]}",
        "{type: aggregate, metrics: [{name: n, type: count}, {name: n, type: max, field: a}]}",
        "{type: aggregate, metrics: [{name: n, type: percentile, field: a, percentiles: [100]}]}",
        "{type: aggregate, metrics: [{name: n, type: count, percentiles: [50]}]}",
        "{type: aggregate, window: 1h, hop: 1ms, metrics: [{name: n, type: count}]}",
        "{type: aggregate, window: 400d, metrics: [{name: n, type: count}]}",
        "{type: aggregate, time_field: t, lateness: 100000000d, metrics: [{name: n, type: count}]}",
    ] {
        let c: AggregateConfig = serde_saphyr::from_str(bad).unwrap();
        assert!(c.validate().is_err(), "{bad}");
    }
}

use proptest::prelude::*;

proptest! {
    /// Against a model, whatever the events' times (in order or not),
    /// groups and batching, and wherever the flushes fall: every event is
    /// counted in exactly one tumbling window's count or as late, each
    /// window's count per group is the model's, nothing is emitted twice,
    /// and the books balance.
    #[test]
    fn every_event_in_one_window_or_counted_late(
        events in prop::collection::vec((0i64..20_000, 0u8..3), 0..300),
        cuts in prop::collection::vec(0usize..300, 0..6),
        lateness in 0i64..3_000,
    ) {
        // The paused clock: no wall time passes, so only event time closes
        // windows, as in the model.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _clock = rt.enter();
        let a = aggregate(
            &format!("{{type: aggregate, window: 1s, time_field: t, lateness: {lateness}ms, group_by: [g], metrics: [{{name: n, type: count}}]}}"),
            NOW,
        );
        let base = 1_765_000_000_000i64;
        let mut cuts = cuts;
        cuts.push(events.len());
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut tally = Tally::default();
        // The model: windows close when the newest time less lateness
        // passes their end (no wall time passes in this test).
        let mut newest: Option<i64> = None;
        let mut emitted_through: Option<i64> = None;
        let mut want: HashMap<(i64, u8), u64> = HashMap::new();
        let mut late = 0u64;
        let mut start = 0;
        for cut in cuts {
            let cut = cut.min(events.len());
            if cut < start {
                continue;
            }
            let batch = &events[start..cut];
            for &(t, g) in batch {
                let w = (base + t).div_euclid(1000);
                if emitted_through.is_some_and(|e| w <= e) {
                    late += 1;
                    continue;
                }
                *want.entry((w, g)).or_default() += 1;
                newest = Some(newest.map_or(base + t, |n: i64| n.max(base + t)));
            }
            if let Some(n) = newest {
                let closable = (n - lateness).div_euclid(1000) - 1;
                emitted_through = Some(emitted_through.map_or(closable, |e: i64| e.max(closable)));
            }
            let works = batch
                .iter()
                .map(|(t, g)| Work::Raw(Event::json(Bytes::from(format!(r#"{{"t":{},"g":{g}}}"#, base + t)))))
                .collect();
            a.run(works, &mut out, &mut tally);
            a.flush(Flush::Due, &mut out, &mut tally);
            start = cut;
        }
        a.flush(Flush::All, &mut out, &mut tally);
        let got = metrics(out);
        let mut counted: HashMap<(i64, u8), u64> = HashMap::new();
        for m in &got {
            let end = jiff::Timestamp::from_str(m.timestamp.as_deref().unwrap()).unwrap().as_millisecond();
            let g: u8 = m.tags["g"].parse().unwrap();
            let fresh = counted.insert((end / 1000 - 1, g), m.value.as_u64().unwrap()).is_none();
            prop_assert!(fresh, "a window emitted twice");
        }
        prop_assert_eq!(&counted, &want);
        prop_assert_eq!(tally.dropped[DropReason::Late as usize], late);
        let folded = tally.dropped[DropReason::Aggregated as usize];
        prop_assert_eq!(folded + late, events.len() as u64);
        prop_assert_eq!(counted.values().sum::<u64>(), folded);
        prop_assert_eq!(tally.emitted, got.len() as u64);
    }
}
