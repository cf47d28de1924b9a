//! Order through the driver, proven on generated workloads: senders'
//! batches interleaved in the lane, jobs of random size, requests taking
//! random times and failing at random, up to eight in flight. Whatever
//! happens, each sender's (or key's) events reach the peer in the order
//! they entered the lane, each exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as Atomic};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use super::concurrency::Concurrency;
use super::order::{Kept, Ordering, key_bit};
use super::*;
use crate::event::{Batch, Event, Sender};
use crate::lane::{Lane, LanePolicy};
use crate::metrics::Metrics;

/// A peer that takes a random while to answer and now and then fails a
/// request once; it records what it accepted, in the order it accepted it.
struct Peer {
    seed: u64,
    /// Order by keys (the sender number is the key), as SQS FIFO groups.
    keyed: bool,
    accepted: Mutex<Vec<(u32, u32)>>,
    attempts: Mutex<HashMap<(u32, u32), u32>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

fn mix(a: u64, b: u64) -> u64 {
    (a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 7
}

impl Destination for Arc<Peer> {
    type Request = Vec<(u32, u32)>;

    fn encode(&self, events: &[Event]) -> Encoded<Self::Request> {
        let mut keys = 0;
        let request: Vec<(u32, u32)> = events
            .iter()
            .filter_map(|e| {
                let text = std::str::from_utf8(&e.raw).ok()?;
                let (s, q) = text.split_once(' ')?;
                let pair = (s.parse().ok()?, q.parse().ok()?);
                keys |= key_bit(s.as_bytes());
                Some(pair)
            })
            .collect();
        let bytes = request.len();
        Encoded {
            keys: self.keyed.then_some(keys),
            request,
            bytes,
            skipped: Vec::new(),
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, req: &Self::Request, _endpoint: usize) -> Outcome {
        let Some(&first) = req.first() else {
            return Outcome::Delivered;
        };
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(first).or_default();
            *n += 1;
            *n
        };
        let h = mix(self.seed, u64::from(first.0) << 32 | u64::from(first.1));
        let now = self.in_flight.fetch_add(1, Atomic::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Atomic::SeqCst);
        tokio::time::sleep(Duration::from_millis(h % 50)).await;
        self.in_flight.fetch_sub(1, Atomic::SeqCst);
        if attempt == 1 && (h >> 8).is_multiple_of(5) {
            return Outcome::Retry {
                after: Some(Duration::from_millis(10)),
                error: "try again".into(),
            };
        }
        self.accepted.lock().unwrap().extend_from_slice(req);
        Outcome::Delivered
    }
}

fn settings(concurrency: usize, max_events: usize, ordering: Ordering) -> DeliverySettings {
    DeliverySettings {
        flush: Flush::Interval,
        partition: None,
        max_events,
        max_bytes: 1 << 20,
        max_event_bytes: None,
        batch_timeout: Duration::from_millis(5),
        concurrency: Concurrency::Fixed(concurrency),
        max_concurrency: 200,
        request_timeout: None,
        kept: Kept::resolve(ordering, true),
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            honor_retry_after: true,
        },
        max_attempts: None,
    }
}

/// Push `batches` (sender, events) with each sender's events numbered in
/// order; run the driver to the end; what the peer accepted.
fn run(
    batches: &[(u32, usize)],
    settings: DeliverySettings,
    keyed: bool,
    seed: u64,
) -> (Vec<(u32, u32)>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = Metrics::new();
        let lane = Arc::new(Lane::new("d", LanePolicy::Block, 1_000_000, &metrics));
        let peer = Arc::new(Peer {
            seed,
            keyed,
            accepted: Mutex::default(),
            attempts: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let driver = Driver::new(
            peer.clone(),
            lane.consumer(),
            settings,
            CancellationToken::new(),
            CancellationToken::new(),
            &metrics,
            None,
        );
        let task = tokio::spawn(driver.run());
        let mut next: HashMap<u32, u32> = HashMap::new();
        let producer = lane.producer();
        for &(sender, n) in batches {
            let events = (0..n)
                .map(|_| {
                    let q = next.entry(sender).or_default();
                    *q += 1;
                    Event::text(Bytes::from(format!("{sender} {q}")))
                })
                .collect();
            // Keyed: the sender is unknown, only the key orders.
            let from = if keyed {
                Sender::NONE
            } else {
                Sender::of("test", sender)
            };
            let r = producer.reserve(n).await.unwrap();
            producer.commit(Batch::new(events).from(from), r);
            // Now and then the lane runs dry, so jobs are cut short.
            if mix(seed, u64::from(sender)).is_multiple_of(3) {
                tokio::task::yield_now().await;
            }
        }
        lane.close();
        task.await.unwrap();
        let accepted = peer.accepted.lock().unwrap().clone();
        (accepted, peer.max_in_flight.load(Atomic::SeqCst))
    })
}

/// Each sender's sequence numbers, in the order the peer accepted them.
fn per_sender(accepted: &[(u32, u32)]) -> HashMap<u32, Vec<u32>> {
    let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(s, q) in accepted {
        out.entry(s).or_default().push(q);
    }
    out
}

fn in_order(accepted: &[(u32, u32)]) -> bool {
    per_sender(accepted)
        .values()
        .all(|qs| qs.iter().enumerate().all(|(i, &q)| q as usize == i + 1))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn each_sender_and_each_key_keeps_its_order(
        batches in prop::collection::vec((0u32..6, 1usize..40), 1..60),
        concurrency in 1usize..8,
        max_events in 1usize..64,
        keyed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let total: usize = batches.iter().map(|b| b.1).sum();
        let (accepted, _) = run(&batches, settings(concurrency, max_events, Ordering::Auto), keyed, seed);
        prop_assert_eq!(accepted.len(), total, "each event exactly once");
        prop_assert!(in_order(&accepted), "out of order: {:?}", per_sender(&accepted));
    }
}

/// Two senders over four slots: their requests overlap (order costs no
/// parallelism between senders), yet each sender's order holds; with
/// `ordering: none` the same workload arrives reordered — what the
/// property above would catch.
#[test]
fn senders_go_in_parallel_and_none_reorders() {
    let batches: Vec<(u32, usize)> = (0..200).map(|i| (i % 2, 7)).collect();
    let (accepted, most) = run(&batches, settings(4, 10, Ordering::Auto), false, 7);
    assert_eq!(accepted.len(), 1400);
    assert!(in_order(&accepted));
    assert!(
        most >= 2,
        "senders never overlapped: {most} in flight at most"
    );

    let (accepted, _) = run(&batches, settings(4, 10, Ordering::None), false, 7);
    assert_eq!(accepted.len(), 1400);
    assert!(
        !in_order(&accepted),
        "ordering: none kept the order by chance"
    );
}
