//! The driver's own behaviour, with a destination that follows a script of
//! outcomes. (Real destinations are tested against real peers elsewhere; this
//! tests the shared machinery they all rely on.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

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
}

struct Scripted(Arc<Script>);

impl Destination for Scripted {
    type Request = usize;

    fn encode(&self, events: &[Event]) -> Encoded<usize> {
        let skipped: Vec<(usize, DropReason)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| self.0.skip.is_some_and(|s| e.raw == s.as_bytes()))
            .map(|(i, _)| (i, DropReason::Oversize))
            .collect();
        let n = events.len() - skipped.len();
        Encoded {
            request: n,
            bytes: n * 10,
            skipped,
        }
    }

    async fn send(&self, n: &usize) -> Outcome {
        let s = &self.0;
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
        max_events,
        max_bytes: 1 << 20,
        batch_timeout: Duration::from_millis(10),
        concurrency,
        request_timeout: None,
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
}

fn rig(script: Script, settings: DeliverySettings) -> Rig {
    let script = Arc::new(script);
    let lane = Arc::new(Lane::new(
        "d",
        LanePolicy::Block,
        10_000,
        Metrics::new().destination("d"),
    ));
    let stop = CancellationToken::new();
    let driver = Driver::new(
        Scripted(script.clone()),
        lane.clone(),
        settings,
        stop.clone(),
    );
    let task = tokio::spawn(driver.run());
    Rig {
        lane,
        script,
        stop,
        task,
    }
}

impl Rig {
    async fn push(&self, events: Vec<Event>, ack: Option<Ack>) {
        let r = self.lane.reserve(events.len()).await.unwrap();
        self.lane.metrics().events.inc_by(events.len() as u64);
        self.lane.commit(Batch::with_ack(events, ack), r);
    }

    /// Close the lane and wait for the driver to finish everything.
    async fn finish(self) -> (Arc<Lane>, Arc<Script>) {
        self.lane.close();
        self.task.await.unwrap();
        (self.lane, self.script)
    }
}

fn balanced(lane: &Lane) -> bool {
    let m = lane.metrics();
    m.events.get() == m.sent_events.get() + m.dropped_total() + lane.pending() as u64
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
    assert_eq!(m.sent_events.get(), 5);
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
        .push_back(Outcome::Rejected {
            error: "400".into(),
        });
    let rig = rig(script, settings(1, 100));
    let (ack, rx) = Ack::new();
    rig.push(events(4), Some(ack)).await;
    let (lane, _) = rig.finish().await;
    assert_eq!(lane.metrics().dropped(DropReason::Rejected), 4);
    assert_eq!(lane.metrics().sent_events.get(), 0);
    assert_eq!(rx.await.unwrap(), AckStatus::Failed);
    assert!(balanced(&lane));
}

#[tokio::test(start_paused = true)]
async fn partial_outcomes_retry_only_what_failed() {
    use RecordOutcome::*;
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .push_back(Outcome::Partial(vec![
            Delivered, Rejected, Retry, Delivered, Retry,
        ]));
    let rig = rig(script, settings(1, 100));
    rig.push(events(5), None).await;
    let (lane, script) = rig.finish().await;
    let m = lane.metrics();
    assert_eq!(m.sent_events.get(), 4);
    assert_eq!(m.dropped(DropReason::Rejected), 1);
    assert_eq!(m.retries.get(), 1);
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
    assert_eq!(lane.metrics().sent_events.get(), 3);
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
    assert_eq!(lane.metrics().dropped(DropReason::RetriesExhausted), 7);
    assert_eq!(script.sent.lock().unwrap().len(), 3);
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
    let m = lane.metrics();
    assert_eq!(m.dropped(DropReason::Oversize), 1);
    assert_eq!(m.sent_events.get(), 2);
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
    assert_eq!(lane.metrics().sent_events.get(), 200);
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
    let m = rig.lane.metrics();
    assert_eq!(m.dropped(DropReason::Shutdown), 50);
    assert_eq!(m.sent_events.get(), 0);
    assert!(balanced(&rig.lane));
    assert_eq!(rig.lane.pending(), 0);
}
