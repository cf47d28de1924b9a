//! The driver's own behaviour, with a destination that follows a script of
//! outcomes. (Real destinations are tested against real peers elsewhere; this
//! tests the shared machinery they all rely on.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::concurrency::Concurrency;
use super::*;
use crate::event::{Ack, AckStatus, Batch, Event};
use crate::lane::{Lane, LanePolicy};
use crate::metrics::Metrics;

#[derive(Default)]
struct Script {
    outcomes: Mutex<VecDeque<Outcome>>,
    /// Event count of every request sent, in order.
    sent: Mutex<Vec<usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Events whose raw text is this are skipped at encode time as oversize.
    skip: Option<&'static str>,
    delay: Option<Duration>,
    /// Declared endpoints (name, weight); empty: untracked.
    endpoints: Vec<(&'static str, u32)>,
    /// Endpoint each request went to.
    sent_to: Mutex<Vec<usize>>,
    /// Endpoints whose every request fails at the endpoint level.
    broken: Mutex<Vec<usize>>,
}

struct Scripted(Arc<Script>);

impl Destination for Scripted {
    type Request = usize;

    fn endpoints(&self) -> Vec<EndpointSpec> {
        self.0
            .endpoints
            .iter()
            .map(|(n, w)| EndpointSpec {
                name: (*n).to_string(),
                weight: *w,
            })
            .collect()
    }

    fn encode(&self, events: &[Event]) -> Encoded<usize> {
        let skipped: Vec<(usize, DropReason)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| self.0.skip.is_some_and(|s| e.raw == s.as_bytes()))
            .map(|(i, _)| (i, DropReason::Oversize))
            .collect();
        let n = events.len() - skipped.len();
        Encoded {
            keys: None,
            request: n,
            bytes: n * 10,
            skipped,
            // Every record is 10 bytes on the wire.
            record_bytes: vec![10; n],
        }
    }

    async fn send(&self, n: &usize, endpoint: usize) -> Outcome {
        let s = &self.0;
        s.sent_to.lock().unwrap().push(endpoint);
        if s.broken.lock().unwrap().contains(&endpoint) {
            return Outcome::EndpointFailed {
                error: "connection refused".into(),
            };
        }
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        s.sent.lock().unwrap().push(*n);
        if let Some(d) = s.delay {
            tokio::time::sleep(d).await;
        }
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        s.outcomes
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Outcome::Delivered)
    }
}

fn settings(concurrency: usize, max_events: usize) -> DeliverySettings {
    DeliverySettings {
        flush: super::Flush::Interval,
        partition: None,
        max_events,
        max_bytes: 1 << 20,
        max_event_bytes: None,
        batch_timeout: Duration::from_millis(10),
        concurrency: Concurrency::Fixed(concurrency),
        max_concurrency: 200,
        request_timeout: None,
        kept: super::settings::Kept::KeysElseSenders,
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            honor_retry_after: true,
        },
        max_attempts: None,
    }
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::json(Bytes::from(format!("{{\"i\":{i}}}"))))
        .collect()
}

struct Rig {
    lane: Arc<Lane>,
    script: Arc<Script>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
    /// The dead-letter destination's lane, when one is wired.
    dead: Option<Arc<Lane>>,
}

fn rig(script: Script, settings: DeliverySettings) -> Rig {
    rig_with(script, settings, false)
}

fn rig_with(script: Script, settings: DeliverySettings, dead_letter: bool) -> Rig {
    let metrics = Metrics::new();
    let script = Arc::new(script);
    let lane = Arc::new(Lane::new("d", LanePolicy::Block, 10_000, &metrics));
    let dead = dead_letter.then(|| Arc::new(Lane::new("dlq", LanePolicy::Block, 10_000, &metrics)));
    let stop = CancellationToken::new();
    let driver = Driver::new(
        Scripted(script.clone()),
        lane.consumer(),
        settings,
        stop.clone(),
        CancellationToken::new(),
        &metrics,
        dead.as_ref().map(|l| DeadLetter {
            origin: "d".into(),
            lane: l.producer(),
        }),
    );
    let task = tokio::spawn(driver.run());
    Rig {
        lane,
        script,
        stop,
        task,
        metrics,
        dead,
    }
}

impl Rig {
    async fn push(&self, events: Vec<Event>, ack: Option<Ack>) {
        let p = self.lane.producer();
        let r = p.reserve(events.len()).await.unwrap();
        p.commit(Batch::with_ack(events, ack), r);
    }

    /// Close the lane and wait for the driver to finish everything.
    async fn finish(self) -> (Arc<Lane>, Arc<Script>) {
        self.lane.close();
        self.task.await.unwrap();
        (self.lane, self.script)
    }
}

fn balanced(lane: &Lane) -> bool {
    let b = lane.books();
    b.events() == b.sent() + b.dropped_total() + lane.pending() as u64 && b.counts().balanced()
}

#[tokio::test(start_paused = true)]
async fn retries_until_delivered_and_honours_retry_after() {
    let script = Script::default();
    script.outcomes.lock().unwrap().extend([
        Outcome::Retry {
            after: None,
            error: "503".into(),
        },
        Outcome::Retry {
            after: Some(Duration::from_secs(3)),
            error: "429".into(),
        },
    ]);
    let rig = rig(script, settings(1, 100));
    let (ack, rx) = Ack::new();
    rig.push(events(5), Some(ack)).await;
    let started = tokio::time::Instant::now();
    let (lane, script) = rig.finish().await;
    let m = lane.metrics();
    let b = lane.books();
    assert_eq!(b.sent(), 5);
    assert_eq!(m.retries.get(), 2);
    assert_eq!(m.backpressure.get(), 0, "recovered");
    assert_eq!(*script.sent.lock().unwrap(), vec![5, 5, 5]);
    // The second retry waited for the peer's Retry-After.
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(rx.await.unwrap(), AckStatus::Delivered);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn rejected_events_are_dropped_counted_and_fail_their_ack() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Rejected(Rejection::new("400")));
    let rig = rig(script, settings(1, 100));
    let (ack, rx) = Ack::new();
    rig.push(events(4), Some(ack)).await;
    let (lane, _) = rig.finish().await;
    assert_eq!(lane.books().dropped(DropReason::Rejected), 4);
    assert_eq!(lane.books().sent(), 0);
    assert_eq!(rx.await.unwrap(), AckStatus::Failed);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn partial_outcomes_retry_only_what_failed() {
    use RecordOutcome::Delivered;
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Partial(vec![
            Delivered,
            RecordOutcome::rejected(Rejection::named("MessageTooLarge", "too big")),
            RecordOutcome::RETRY,
            Delivered,
            RecordOutcome::RETRY,
        ]));
    let rig = rig(script, settings(1, 100));
    rig.push(events(5), None).await;
    let (lane, script) = rig.finish().await;
    let m = lane.metrics();
    let b = lane.books();
    assert_eq!(b.sent(), 4);
    assert_eq!(b.dropped(DropReason::Rejected), 1);
    assert_eq!(m.retries.get(), 1);
    // The retry round re-sent only the two records that asked for it, and
    // bytes count only what was delivered (4 records of 10 bytes).
    assert_eq!(m.retried_events.get(), 2);
    assert_eq!(b.sent_bytes(), 40);
    assert_eq!(m.throttled.get(), 0);
    assert_eq!(*script.sent.lock().unwrap(), vec![5, 2]);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn a_wrong_number_of_record_outcomes_retries_everything() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Partial(vec![RecordOutcome::Delivered]));
    let rig = rig(script, settings(1, 100));
    rig.push(events(3), None).await;
    let (lane, script) = rig.finish().await;
    assert_eq!(lane.books().sent(), 3);
    assert_eq!(*script.sent.lock().unwrap(), vec![3, 3]);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn max_attempts_drops_with_retries_exhausted() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .extend((0..10).map(|_| Outcome::Retry {
            after: None,
            error: "down".into(),
        }));
    let mut s = settings(1, 100);
    s.max_attempts = Some(3);
    let rig = rig(script, s);
    rig.push(events(7), None).await;
    let (lane, script) = rig.finish().await;
    assert_eq!(lane.books().dropped(DropReason::RetriesExhausted), 7);
    assert_eq!(script.sent.lock().unwrap().len(), 3);
    assert!(balanced(&lane));
}

/// A job that gets one record through per attempt is moving: its backoff
/// stays at the first step and `max_attempts` does not run out.
#[tokio::test(start_paused = true)]
async fn progress_restarts_the_backoff_and_the_attempt_count() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .extend((1..8).rev().map(|n| {
            let mut records = vec![RecordOutcome::RETRY; n];
            records[0] = RecordOutcome::Delivered;
            Outcome::Partial(records)
        }));
    let mut s = settings(1, 100);
    s.max_attempts = Some(2);
    let rig = rig(script, s);
    let started = tokio::time::Instant::now();
    rig.push(events(7), None).await;
    let (lane, script) = rig.finish().await;
    assert_eq!(lane.books().sent(), 7);
    assert_eq!(lane.books().dropped(DropReason::RetriesExhausted), 0);
    assert_eq!(*script.sent.lock().unwrap(), vec![7, 6, 5, 4, 3, 2, 1]);
    // Six waits of at most the first step (100 ms), on the paused clock;
    // without the restart the sixth alone could reach 3.2 s.
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn events_skipped_at_encoding_are_counted_not_sent() {
    let script = Script {
        skip: Some("{\"i\":1}"),
        ..Script::default()
    };
    let rig = rig(script, settings(1, 100));
    rig.push(events(3), None).await;
    let (lane, script) = rig.finish().await;
    let b = lane.books();
    assert_eq!(b.dropped(DropReason::Oversize), 1);
    assert_eq!(b.sent(), 2);
    assert_eq!(*script.sent.lock().unwrap(), vec![2]);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn never_more_requests_in_flight_than_the_limit() {
    let script = Script {
        delay: Some(Duration::from_millis(50)),
        ..Script::default()
    };
    let rig = rig(script, settings(3, 10));
    for _ in 0..20 {
        rig.push(events(10), None).await;
    }
    let (lane, script) = rig.finish().await;
    assert_eq!(script.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(lane.books().sent(), 200);
    assert_eq!(lane.metrics().concurrency_limit.get(), 3);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn hard_stop_counts_everything_undelivered_as_shutdown() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| Outcome::Retry {
            after: None,
            error: "down".into(),
        }));
    let rig = rig(script, settings(2, 10));
    for _ in 0..5 {
        rig.push(events(10), None).await;
    }
    // Let two jobs start retrying and the rest wait in the lane.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rig.lane.metrics().backpressure.get(), 1, "peer failing");
    rig.lane.close();
    rig.stop.cancel();
    rig.task.await.unwrap();
    let b = rig.lane.books();
    assert_eq!(b.dropped(DropReason::Shutdown), 50);
    assert_eq!(b.sent(), 0);
    assert!(balanced(&rig.lane));
    assert_eq!(rig.lane.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_skipped_and_its_batch_moves_on() {
    let script = Script {
        endpoints: vec![("a", 1), ("b", 1), ("c", 0)],
        ..Script::default()
    };
    script.broken.lock().unwrap().push(0);
    let rig = rig(script, settings(1, 10));
    for _ in 0..6 {
        rig.push(events(10), None).await;
    }
    let (lane, script) = rig.finish().await;
    let m = lane.metrics();
    let b = lane.books();
    assert_eq!(b.sent(), 60);
    let sent_to = script.sent_to.lock().unwrap().clone();
    // `a` failed once and was then left alone; `c` (weight 0) got nothing.
    assert_eq!(
        sent_to.iter().filter(|&&e| e == 0).count(),
        1,
        "{sent_to:?}"
    );
    assert!(!sent_to.contains(&2));
    assert_eq!(m.retries.get(), 1);
    assert_eq!(
        m.backpressure.get(),
        0,
        "one endpoint down is not backpressure"
    );
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn every_endpoint_down_waits_for_a_probe_then_delivers() {
    let script = Script {
        endpoints: vec![("a", 1)],
        ..Script::default()
    };
    script.broken.lock().unwrap().push(0);
    let rig = rig(script, settings(1, 10));
    rig.push(events(5), None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rig.lane.metrics().backpressure.get(),
        1,
        "all endpoints down"
    );
    let up = common_gauge(&rig.metrics, "a");
    assert_eq!(up, 0);
    // Fixed: the next probe (2 s after going down, jittered) brings it back.
    rig.script.broken.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (lane, script) = rig.finish().await;
    assert_eq!(lane.books().sent(), 5);
    assert_eq!(script.sent_to.lock().unwrap().len(), 2);
    assert!(balanced(&lane));
}

fn common_gauge(metrics: &Metrics, endpoint: &str) -> i64 {
    metrics.endpoint("d", endpoint).0.get()
}

#[tokio::test(start_paused = true)]
async fn rejected_and_exhausted_events_go_to_the_dead_letter_lane() {
    let script = Script::default();
    script.outcomes.lock().unwrap().extend([
        Outcome::Rejected(Rejection {
            error: "HTTP 400".into(),
            status: Some(400),
            response: Some("no".into()),
            ..Rejection::default()
        }),
        Outcome::Retry {
            after: None,
            error: "down".into(),
        },
        Outcome::Retry {
            after: None,
            error: "down".into(),
        },
    ]);
    let mut s = settings(1, 10);
    s.max_attempts = Some(2);
    let rig = rig_with(script, s, true);
    rig.push(events(3), None).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    rig.push(events(4), None).await;
    let dead = rig.dead.clone().unwrap();
    let (lane, _) = rig.finish().await;
    let b = lane.books();
    assert_eq!(b.dropped(DropReason::DeadLetter), 7);
    assert_eq!(b.dropped(DropReason::Rejected), 0);
    assert!(balanced(&lane));
    assert_eq!(dead.books().events(), 7);
    let first = dead.consumer().try_pop().unwrap().batch;
    let v: serde_json::Value = serde_json::from_slice(&first.events[0].raw).unwrap();
    assert_eq!(v["dead_letter"]["status"], 400);
    assert_eq!(v["dead_letter"]["reason"], "rejected");
    assert_eq!(v["event"]["i"], 0);
    let second = dead.consumer().try_pop().unwrap().batch;
    let v: serde_json::Value = serde_json::from_slice(&second.events[0].raw).unwrap();
    assert_eq!(v["dead_letter"]["reason"], "retries_exhausted");
}

#[tokio::test(start_paused = true)]
async fn oversize_events_are_dropped_before_sending() {
    let mut s = settings(1, 10);
    s.max_event_bytes = Some(7);
    let rig = rig(Script::default(), s);
    // `{"i":N}` is 7 bytes for one digit, 8 for two.
    rig.push(events(12), None).await;
    let (lane, script) = rig.finish().await;
    assert_eq!(lane.books().dropped(DropReason::Oversize), 2);
    assert_eq!(lane.books().sent(), 10);
    assert_eq!(*script.sent.lock().unwrap(), vec![10]);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn rejected_records_are_dead_lettered_with_their_own_reasons() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Partial(vec![
            RecordOutcome::rejected(Rejection::named("MessageTooLarge", "record 0 too big")),
            RecordOutcome::Delivered,
            RecordOutcome::rejected(Rejection {
                error: "HTTP 403".into(),
                status: Some(403),
                ..Rejection::default()
            }),
        ]));
    let rig = rig_with(script, settings(1, 10), true);
    rig.push(events(3), None).await;
    let dead = rig.dead.clone().unwrap();
    let (lane, _) = rig.finish().await;
    let b = lane.books();
    assert_eq!(b.sent(), 1);
    assert_eq!(b.dropped(DropReason::DeadLetter), 2);
    assert!(balanced(&lane));
    let letters = dead.consumer().try_pop().unwrap().batch;
    let v: Vec<serde_json::Value> = letters
        .events
        .iter()
        .map(|e| serde_json::from_slice(&e.raw).unwrap())
        .collect();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["dead_letter"]["code"], "MessageTooLarge");
    assert_eq!(v[0]["dead_letter"]["error"], "record 0 too big");
    assert_eq!(v[0]["event"]["i"], 0);
    assert_eq!(v[1]["dead_letter"]["status"], 403);
    assert!(v[1]["dead_letter"].get("code").is_none());
    assert_eq!(v[1]["event"]["i"], 2);
}

#[tokio::test(start_paused = true)]
async fn throttled_records_pause_the_endpoint_and_count_as_pushback() {
    let script = Script {
        endpoints: vec![("a", 1)],
        ..Script::default()
    };
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Partial(vec![
            RecordOutcome::Delivered,
            RecordOutcome::Retry {
                throttled: true,
                after: Some(Duration::from_secs(4)),
            },
        ]));
    let rig = rig(script, settings(1, 10));
    let started = tokio::time::Instant::now();
    rig.push(events(2), None).await;
    let metrics = rig.metrics.clone();
    let (lane, script) = rig.finish().await;
    let m = lane.metrics();
    let b = lane.books();
    assert_eq!(b.sent(), 2);
    assert_eq!(m.throttled.get(), 1);
    assert_eq!(m.retried_events.get(), 1);
    // The peer's hint paused the endpoint before the throttled record went again.
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(*script.sent.lock().unwrap(), vec![2, 1]);
    // Per-endpoint counts are per record delivered.
    assert_eq!(metrics.endpoint("d", "a").1.get(), 2);
    // Throttling is not an outage: the endpoint stayed up.
    assert_eq!(common_gauge(&metrics, "a"), 1);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn one_failed_record_does_not_mark_the_destination_failing() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Partial(vec![
            RecordOutcome::Delivered,
            // A hinted delay, not the jittered backoff (which may be ~0).
            RecordOutcome::Retry {
                throttled: false,
                after: Some(Duration::from_secs(5)),
            },
        ]));
    let mut s = settings(1, 10);
    s.backoff.honor_retry_after = true;
    let rig = rig(script, s);
    rig.push(events(2), None).await;
    // While the one record waits for its retry, the destination is healthy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.lane.books().sent(), 1);
    assert!(!rig.lane.peer_failing());
    let (lane, _) = rig.finish().await;
    assert_eq!(lane.books().sent(), 2);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn a_count_of_rejected_records_is_counted_never_guessed() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::PartialCount {
            rejected: 3,
            why: Rejection::new("partial_success: 3 rejected"),
        });
    let (ack, rx) = Ack::new();
    let rig = rig_with(script, settings(1, 10), true);
    rig.push(events(10), Some(ack)).await;
    let dead = rig.dead.clone().unwrap();
    let (lane, script) = rig.finish().await;
    let b = lane.books();
    assert_eq!(b.sent(), 7);
    assert_eq!(b.dropped(DropReason::Rejected), 3);
    assert_eq!(b.sent_bytes(), 70);
    // Nobody knows which three: nothing is dead-lettered, nothing re-sent.
    assert_eq!(dead.books().events(), 0);
    assert_eq!(*script.sent.lock().unwrap(), vec![10]);
    assert_eq!(rx.await.unwrap(), AckStatus::Failed);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_is_probed_within_seconds_of_the_return() {
    let script = Script {
        endpoints: vec![("a", 1)],
        ..Script::default()
    };
    *script.broken.lock().unwrap() = vec![0];
    let rig = rig(script, settings(1, 10));
    rig.push(events(1), None).await;
    // Five minutes down: the probe backoff alone would have grown to 60 s.
    tokio::time::sleep(Duration::from_secs(300)).await;
    rig.script.broken.lock().unwrap().clear();
    let back = tokio::time::Instant::now();
    while rig.lane.books().sent() == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back.elapsed() <= Duration::from_secs(5),
        "resumed {:?} after the peer returned",
        back.elapsed()
    );
    let (lane, _) = rig.finish().await;
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn a_throttle_backs_off_the_whole_destination() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Throttled {
            after: Some(Duration::from_secs(3)),
            error: "429".into(),
        });
    let rig = rig(script, settings(2, 10));
    rig.push(events(10), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A second job arrives while the peer has asked for 3 s of quiet.
    rig.push(events(10), None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rig.script.sent.lock().unwrap().len(),
        1,
        "sent during the pause"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.lane.books().sent(), 20);
    assert_eq!(rig.lane.metrics().throttled.get(), 1);
    let (lane, _) = rig.finish().await;
    assert!(balanced(&lane));
}

/// Rounds in which every record timed out (a hung peer: no answer, no
/// hint) are retried at least every `OUTAGE_PROBE`, however far the
/// backoff has grown, so the peer's return is seen within seconds.
#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_nothing_is_retried_within_seconds_whatever_the_backoff() {
    let script = Script::default();
    let timed_out = || Outcome::Partial(vec![RecordOutcome::RETRY; 5]);
    script
        .outcomes
        .lock()
        .unwrap()
        .extend(std::iter::repeat_with(timed_out).take(12));
    let mut s = settings(1, 100);
    s.backoff.max = Duration::from_secs(60);
    let rig = rig(script, s);
    rig.push(events(5), None).await;
    let started = tokio::time::Instant::now();
    let (lane, script) = rig.finish().await;
    assert_eq!(lane.books().sent(), 5);
    assert_eq!(script.sent.lock().unwrap().len(), 13);
    // Twelve waits, none longer than the outage probe.
    assert!(
        started.elapsed() <= OUTAGE_PROBE * 12,
        "{:?}",
        started.elapsed()
    );
}
