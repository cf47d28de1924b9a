use super::*;
use crate::event::Event;
use crate::metrics::{DropReason, Metrics};
use bytes::Bytes;
use std::path::Path;
use std::time::Duration;

fn batch(range: std::ops::Range<u32>) -> Batch {
    Batch::new(
        range
            .map(|i| Event::json(Bytes::from(i.to_string())))
            .collect(),
    )
}

fn ids(b: &Batch) -> Vec<u32> {
    b.events
        .iter()
        .map(|e| std::str::from_utf8(&e.raw).unwrap().parse().unwrap())
        .collect()
}

fn lane(policy: LanePolicy, cap: usize) -> (Arc<Lane>, DestinationMetrics) {
    let lane = Arc::new(Lane::new("d", policy, cap, &Metrics::new()));
    let m = lane.metrics().clone();
    (lane, m)
}

/// Pop a batch and settle it as delivered.
async fn pop(lane: &Arc<Lane>) -> Option<Batch> {
    let mut t = lane.consumer().pop().await?;
    t.lease.delivered(t.batch.len(), 0);
    Some(t.batch)
}

fn try_pop(lane: &Arc<Lane>) -> Option<Batch> {
    let mut t = lane.consumer().try_pop()?;
    t.lease.delivered(t.batch.len(), 0);
    Some(t.batch)
}

#[tokio::test]
async fn block_waits_for_room_in_fifo_order() {
    let (lane, m) = lane(LanePolicy::Block, 10);
    let r = lane.reserve(8).await.unwrap();
    lane.commit(batch(0..8), r);
    let l2 = lane.clone();
    let waiter = tokio::spawn(async move {
        let r = l2.reserve(5).await.unwrap();
        l2.commit(batch(8..13), r);
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "must wait: only 2 free");
    assert_eq!(m.backpressure.get(), 1);
    assert_eq!(ids(&pop(&lane).await.unwrap()), (0..8).collect::<Vec<_>>());
    waiter.await.unwrap();
    assert_eq!(ids(&pop(&lane).await.unwrap()), (8..13).collect::<Vec<_>>());
    assert_eq!(m.backpressure.get(), 0);
    assert!(m.blocked_seconds.get() > 0.0);
}

#[tokio::test]
async fn oversized_batch_is_admitted_when_empty() {
    let (lane, _) = lane(LanePolicy::Block, 4);
    let r = lane.reserve(10).await.unwrap();
    lane.commit(batch(0..10), r);
    assert_eq!(lane.depth(), 10);
    assert_eq!(pop(&lane).await.unwrap().len(), 10);
    assert_eq!(lane.room.available_permits(), 4);
}

#[tokio::test]
async fn drop_newest_keeps_the_oldest() {
    let (lane, _) = lane(LanePolicy::DropNewest, 10);
    assert_eq!(lane.push_nowait(batch(0..6)), 0);
    assert_eq!(lane.push_nowait(batch(6..12)), 2);
    assert_eq!(lane.push_nowait(batch(12..20)), 8);
    assert_eq!(lane.books().dropped(DropReason::Backpressure), 10);
    let mut got = Vec::new();
    while let Some(b) = try_pop(&lane) {
        got.extend(ids(&b));
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest() {
    let (lane, _) = lane(LanePolicy::DropOldest, 10);
    lane.push_nowait(batch(0..6));
    lane.push_nowait(batch(6..12));
    lane.push_nowait(batch(12..15));
    assert_eq!(lane.push_nowait(batch(15..40)), 25);
    assert_eq!(lane.books().dropped(DropReason::Backpressure), 30);
    let mut got = Vec::new();
    while let Some(b) = try_pop(&lane) {
        got.extend(ids(&b));
    }
    assert_eq!(got, (30..40).collect::<Vec<_>>());
    assert_eq!(lane.room.available_permits(), 10);
    assert_eq!(lane.depth(), 0);
}

#[tokio::test]
async fn close_wakes_everyone() {
    let (lane, _) = lane(LanePolicy::Block, 1);
    let r = lane.reserve(1).await.unwrap();
    lane.commit(batch(0..1), r);
    let l2 = lane.clone();
    let blocked = tokio::spawn(async move { l2.reserve(1).await.err() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    lane.close();
    assert_eq!(blocked.await.unwrap(), Some(Closed));
    assert!(pop(&lane).await.is_some());
    assert!(pop(&lane).await.is_none());
}

fn persistent_lane(dir: &Path, ordering: queue::Ordering, cap: usize) -> Arc<Lane> {
    let q = QueueConfig {
        ordering: Some(ordering),
        drain_rate: Some(1),
        ..QueueConfig::default()
    };
    let metrics = Metrics::new();
    let (opened, _) = Spill::open(
        q.disk_settings(dir, "d"),
        cap,
        metrics.persistent_queue_bytes("d"),
    )
    .unwrap();
    Arc::new(Lane::persistent("d", cap, &metrics, opened, false))
}

fn from_disk(range: std::ops::Range<u32>) -> Batch {
    let mut b = batch(range);
    b.persisted = true;
    b
}

#[tokio::test]
async fn live_first_serves_memory_before_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let lane = persistent_lane(dir.path(), queue::Ordering::LiveFirst, 100);
    lane.push_readahead(vec![from_disk(0..10), from_disk(10..20), from_disk(20..30)]);
    let r = lane.reserve(5).await.unwrap();
    assert!(matches!(r, Reservation::Memory(_)));
    lane.commit(batch(100..105), r);
    let mut order = Vec::new();
    while let Some(b) = try_pop(&lane) {
        order.push(ids(&b)[0]);
    }
    // The backlog's first turn is free; then live events go first, and
    // the backlog takes whatever is left.
    assert_eq!(order, vec![0, 100, 10, 20]);
}

#[tokio::test]
async fn strict_serves_the_backlog_first() {
    let dir = tempfile::tempdir().unwrap();
    let lane = persistent_lane(dir.path(), queue::Ordering::Strict, 100);
    lane.push_readahead(vec![from_disk(0..10)]);
    let r = lane.reserve(5).await.unwrap();
    lane.commit(batch(100..105), r);
    let mut order = Vec::new();
    while let Some(b) = try_pop(&lane) {
        order.push(ids(&b)[0]);
    }
    assert_eq!(order, vec![0, 100]);
}

fn acked(
    range: std::ops::Range<u32>,
) -> (
    Batch,
    tokio::sync::oneshot::Receiver<crate::event::AckStatus>,
) {
    let (ack, rx) = crate::event::Ack::new();
    let mut b = batch(range);
    b.ack = Some(ack);
    (b, rx)
}

#[tokio::test]
async fn what_a_drop_lane_sheds_fails_its_acknowledgement_as_shed() {
    use crate::event::AckStatus;
    // Drop newest: the second batch is cut; its sender must send again.
    let (newest, _) = lane(LanePolicy::DropNewest, 10);
    let (a, ra) = acked(0..6);
    let (b, rb) = acked(6..12);
    newest.producer().push_nowait(a);
    newest.producer().push_nowait(b);
    while try_pop(&newest).is_some() {}
    assert_eq!(ra.await.unwrap(), AckStatus::Delivered);
    assert_eq!(rb.await.unwrap(), AckStatus::Shed);

    // Drop oldest: the evicted batch's sender hears it was shed.
    let (oldest, _) = lane(LanePolicy::DropOldest, 10);
    let (a, ra) = acked(0..6);
    let (b, rb) = acked(6..12);
    oldest.producer().push_nowait(a);
    oldest.producer().push_nowait(b);
    while try_pop(&oldest).is_some() {}
    assert_eq!(ra.await.unwrap(), AckStatus::Shed);
    assert_eq!(rb.await.unwrap(), AckStatus::Delivered);
    let c = oldest.books().counts();
    assert_eq!((c.events, c.sent, c.dropped, c.queued), (12, 10, 2, 0));
    assert!(c.balanced());
}

#[tokio::test]
async fn the_books_balance_at_every_step() {
    let (lane, _) = lane(LanePolicy::Block, 100);
    let p = lane.producer();
    let r = p.reserve(30).await.unwrap();
    p.commit(batch(0..30), r);
    assert_eq!(lane.books().counts().queued, 30);
    let mut t = lane.consumer().try_pop().unwrap();
    let c = lane.books().counts();
    assert_eq!((c.queued, c.in_flight), (0, 30));
    t.lease.delivered(10, 100);
    t.lease.dropped(5, DropReason::Rejected);
    let rest = t.lease.split(15);
    assert!(lane.books().counts().balanced());
    lane.consumer().requeue(vec![batch(15..30)], rest);
    let c = lane.books().counts();
    assert_eq!(
        (c.events, c.sent, c.dropped, c.queued, c.in_flight),
        (30, 10, 5, 15, 0)
    );
    assert_eq!(lane.depth(), 15);
    drop(t);
    // A lease dropped with events left counts them (`internal_error`).
    let t = lane.consumer().try_pop().unwrap();
    drop(t);
    assert_eq!(lane.books().dropped(DropReason::InternalError), 15);
    assert!(lane.books().counts().balanced());
}

#[tokio::test]
async fn a_full_disk_queue_under_on_full_drop_sheds_acknowledgements() {
    use crate::event::AckStatus;
    use crate::queue::{Mode, OnFull};
    let dir = tempfile::tempdir().unwrap();
    let q = QueueConfig {
        mode: Some(Mode::Always),
        on_full: Some(OnFull::Drop),
        max_bytes: Some(crate::config::units::ByteSize(64)),
        ..QueueConfig::default()
    };
    let metrics = Metrics::new();
    let (opened, _) = Spill::open(
        q.disk_settings(dir.path(), "d"),
        100,
        metrics.persistent_queue_bytes("d"),
    )
    .unwrap();
    let lane = Arc::new(Lane::persistent("d", 100, &metrics, opened, false));
    Spill::start(&lane, tokio_util::sync::CancellationToken::new());
    let p = lane.producer();
    let mut rxs = Vec::new();
    for i in 0..20 {
        let (b, rx) = acked(i * 10..i * 10 + 10);
        let r = p.reserve(10).await.unwrap();
        p.commit(b, r);
        rxs.push(rx);
        // Let the writer catch up so the limit is seen.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut statuses = Vec::new();
    for rx in rxs {
        statuses.push(rx.await.unwrap());
    }
    let shed = statuses.iter().filter(|s| **s == AckStatus::Shed).count();
    let kept = statuses
        .iter()
        .filter(|s| **s == AckStatus::Delivered)
        .count();
    assert!(shed > 0 && kept > 0, "{statuses:?}");
    let dropped = lane.books().dropped(DropReason::QueueFull);
    assert_eq!(
        dropped as usize,
        shed * 10,
        "every shed batch, and only those"
    );
    assert!(lane.books().counts().balanced());
    lane.close();
    lane.finish().await;
}

#[tokio::test]
async fn a_batch_larger_than_an_empty_drop_lane_is_admitted_whole() {
    let (lane, _) = lane(LanePolicy::DropNewest, 10);
    assert_eq!(lane.push_nowait(batch(0..25)), 0);
    assert_eq!(lane.depth(), 25);
    // Full now: the next one is shed whole.
    assert_eq!(lane.push_nowait(batch(25..30)), 5);
    assert_eq!(ids(&try_pop(&lane).unwrap()), (0..25).collect::<Vec<_>>());
    assert_eq!(lane.room.available_permits(), 10);
    assert!(lane.books().counts().balanced());
}
