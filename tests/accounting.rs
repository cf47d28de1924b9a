//! The accounting invariant (docs/concepts.md): after a run with mixed policies
//! and a shutdown that cuts a slow destination off, for every destination
//! `events = sent + dropped`, with each drop under its reason, and every
//! event a source accepted is accounted for at each destination it was routed to.

mod common;

use std::time::Duration;

use common::wait_until_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_equal_sent_plus_dropped_for_every_policy() {
    let running = common::topology(
        r#"
api: { enabled: false }
shutdown_timeout: 300ms
sources:
  gen: { type: generator, rate: 0, event_bytes: 100 }
routes:
  - name: to-slow-block
    destination: slow_block
    final: false
  - name: to-drop-newest
    destination: drop_newest
    final: false
  - name: to-drop-oldest
    destination: drop_oldest
    final: false
  - name: errors-only
    filter: 'level == "error"'
    destination: fast
unmatched: drop
destinations:
  slow_block:
    type: blackhole
    rate: 2000
    queue: { max_events: 1000 }
  drop_newest:
    type: blackhole
    rate: 500
    backpressure: drop
    queue: { max_events: 100 }
  drop_oldest:
    type: blackhole
    rate: 500
    backpressure: drop
    queue: { max_events: 100, drop: oldest }
  fast:
    type: blackhole
"#,
    )
    .await;
    let status = running.status().clone();
    // Let the block destination throttle the generator for a while.
    wait_until_async("several thousand events", Duration::from_secs(30), || {
        status.to_json()["sources"][0]["events"]
            .as_u64()
            .unwrap_or(0)
            >= 3000
    })
    .await;
    let reports = running.shutdown().await;
    let json = status.to_json();
    let accepted = json["sources"][0]["events"].as_u64().unwrap();
    let by_id = |id: &str| reports.iter().find(|r| r.id == id).unwrap().clone();
    for r in &reports {
        assert!(r.balanced(), "{r:?}");
        assert_eq!(r.queued, 0, "{r:?}");
    }
    for id in ["slow_block", "drop_newest", "drop_oldest"] {
        assert_eq!(by_id(id).events, accepted, "{id} saw every accepted event");
    }
    // Drop lanes shed under backpressure; the slow block lane was cut off at
    // the shutdown deadline; the fast one delivered everything it got.
    for id in ["drop_newest", "drop_oldest"] {
        let r = by_id(id);
        assert!(
            r.dropped
                .iter()
                .any(|(why, n)| *why == "backpressure" && *n > 0),
            "{r:?}"
        );
    }
    let slow = by_id("slow_block");
    assert!(
        slow.dropped.iter().all(|(why, _)| *why == "shutdown"),
        "{slow:?}"
    );
    assert!(slow.dropped_total() > 0, "{slow:?}");
    let fast = by_id("fast");
    assert_eq!(fast.sent, fast.events);
    assert_eq!(
        json["unmatched"]["events"].as_u64().unwrap(),
        accepted - fast.events
    );
}

/// Where the events are, while they move: every `/metrics` scrape and
/// every status answer satisfies, for every destination,
/// `events = sent + dropped + queued + in_flight + on_disk` — with a slow
/// peer (events in the driver), a dead one behind a persistent queue
/// (events on disk and being retried), a drop lane shedding, and an
/// output router (which only routes through).
#[test]
fn the_books_add_up_in_every_scrape_while_events_move() {
    let rt = common::runtime();
    let slow = rt.block_on(common::receiver::Receiver::start());
    slow.set(common::receiver::Behavior::Delay(Duration::from_millis(30)));
    let mut dead = rt.block_on(common::receiver::Receiver::start());
    rt.block_on(dead.kill());
    let data = tempfile::tempdir().unwrap();
    let s = common::Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: "{}"
sources:
  gen: {{ type: generator, rate: 20000, event_bytes: 120 }}
routes:
  - {{ name: a, destination: slow, final: false }}
  - {{ name: b, destination: pq, final: false }}
  - {{ name: c, destination: shed, final: false }}
  - {{ name: d, destination: split }}
destinations:
  slow: {{ type: http, url: "{}", batch: {{ max_events: 200, timeout: 10ms }}, request: {{ concurrency: 4 }}, queue: {{ max_events: 4000 }} }}
  pq:
    type: http
    url: "{}"
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
    backpressure: persistent_queue
    queue: {{ max_events: 1000 }}
  shed: {{ type: blackhole, rate: 1000, backpressure: drop, queue: {{ max_events: 500 }} }}
  split:
    type: output_router
    rules:
      - {{ filter: 'level == "error"', destination: sink }}
    default: drop
  sink: {{ type: blackhole }}
"#,
        data.path().display(),
        slow.url("/"),
        dead.url("/")
    ));
    let dests = ["slow", "pq", "shed", "split", "sink"];
    let mut seen_in_flight = false;
    let mut seen_on_disk = false;
    let mut seen_queued = false;
    for round in 0..150 {
        let m = s.metrics();
        for d in dests {
            if let Err(e) = m.books_balance(d) {
                panic!("scrape {round}: {e}");
            }
            seen_in_flight |= d == "slow" && m.dest("sluice_destination_in_flight_events", d) > 0;
            seen_queued |= m.dest("sluice_destination_queue_events", d) > 0;
            seen_on_disk |= d == "pq" && m.dest("sluice_persistent_queue_events", d) > 0;
        }
        if round % 10 == 0 {
            let st = s.status();
            for d in st["destinations"].as_array().unwrap() {
                let n = |k: &str| d[k].as_i64().unwrap_or(0);
                let dropped: i64 = d["dropped"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_i64().unwrap())
                    .sum();
                let on_disk = d["persistent_queue"]["events"].as_i64().unwrap_or(0);
                assert_eq!(
                    n("events"),
                    n("sent") + dropped + n("queued") + n("in_flight_events") + on_disk,
                    "status {round}: {d}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen_in_flight, "the slow peer's events were seen in flight");
    assert!(seen_queued, "queued events were seen");
    assert!(seen_on_disk, "the dead peer's events were seen on disk");
}
