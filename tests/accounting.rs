//! The accounting invariant (DESIGN.md §3): after a run with mixed policies
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
