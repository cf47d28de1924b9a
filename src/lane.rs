//! The bounded queue in front of each destination's driver, and the policy
//! that decides what happens when it is full.
//!
//! Capacity is counted in events (`queue.max_events`). Free room is a
//! semaphore: a `block` producer waits for permits in FIFO order (so one busy
//! connection cannot starve another), and a `drop` producer never waits. The
//! queue itself is a `VecDeque` of batches behind a mutex that is held only to
//! push or pop one batch — never across an await, never per event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::event::Batch;
use crate::metrics::{DestinationMetrics, DropReason};

/// What a destination does when it cannot keep up (`backpressure:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Sources wait for room: TCP stops reading, HTTP answers 429.
    #[default]
    Block,
    /// Never wait; shed events and count them (`reason="backpressure"`).
    Drop,
}

/// Which events `drop` sheds (`queue.drop:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropWhich {
    /// The incoming events (Vector's `drop_newest`).
    #[default]
    Newest,
    /// The oldest queued events, so the freshest data gets through.
    Oldest,
}

/// `queue:` settings of a destination that concern the in-memory lane.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Lane capacity in events (default 10000).
    pub max_events: Option<usize>,
    /// With `backpressure: drop`: `newest` (default) or `oldest`.
    pub drop: Option<DropWhich>,
}

pub const DEFAULT_MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanePolicy {
    Block,
    DropNewest,
    DropOldest,
}

impl LanePolicy {
    pub fn new(policy: Policy, drop: DropWhich) -> Self {
        match (policy, drop) {
            (Policy::Block, _) => LanePolicy::Block,
            (Policy::Drop, DropWhich::Newest) => LanePolicy::DropNewest,
            (Policy::Drop, DropWhich::Oldest) => LanePolicy::DropOldest,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LanePolicy::Block => "block",
            LanePolicy::DropNewest => "drop_newest",
            LanePolicy::DropOldest => "drop_oldest",
        }
    }
}

/// The lane is closed: sluice is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

struct Entry {
    batch: Batch,
    /// Permits this entry holds; returned to the semaphore when it is popped.
    permits: usize,
}

pub struct Lane {
    id: Arc<str>,
    policy: LanePolicy,
    capacity: usize,
    room: Arc<Semaphore>,
    queue: Mutex<VecDeque<Entry>>,
    depth: AtomicUsize,
    /// Events popped by the driver and not yet delivered or dropped.
    outstanding: AtomicUsize,
    not_empty: Notify,
    closed: AtomicBool,
    full: AtomicBool,
    peer_failing: AtomicBool,
    metrics: DestinationMetrics,
}

/// Room reserved in a `block` lane, returned if dropped without `commit`.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
}

impl Lane {
    pub fn new(id: &str, policy: LanePolicy, capacity: usize, metrics: DestinationMetrics) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Lane {
            id: id.into(),
            policy,
            capacity,
            room: Arc::new(Semaphore::new(capacity)),
            queue: Mutex::new(VecDeque::new()),
            depth: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            not_empty: Notify::new(),
            closed: AtomicBool::new(false),
            full: AtomicBool::new(false),
            peer_failing: AtomicBool::new(false),
            metrics,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn policy(&self) -> LanePolicy {
        self.policy
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn metrics(&self) -> &DestinationMetrics {
        &self.metrics
    }

    /// Events waiting in the lane.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Events not yet delivered or dropped: in the lane or held by the driver.
    pub fn pending(&self) -> usize {
        self.depth() + self.outstanding.load(Ordering::Relaxed)
    }

    /// The driver finished with `n` events it popped (delivered or dropped).
    pub fn settle(&self, n: usize) {
        self.outstanding.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        // A panic while holding this lock cannot leave the deque inconsistent
        // (every critical section is a single push or pop), so recover.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for room for `n` events (a `block` lane). A batch larger than the
    /// whole lane reserves the whole lane, so it is admitted once the lane drains.
    pub async fn reserve(&self, n: usize) -> Result<Reservation, Closed> {
        let want = n.clamp(1, self.capacity) as u32;
        match Arc::clone(&self.room).try_acquire_many_owned(want) {
            Ok(permit) => return Ok(Reservation { permit }),
            Err(TryAcquireError::Closed) => return Err(Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        self.set_full(true);
        let mut timer = BlockedTimer {
            since: Instant::now(),
            lane: self,
        };
        let acquire = Arc::clone(&self.room).acquire_many_owned(want);
        tokio::pin!(acquire);
        loop {
            // Account waiting time at least every second, so the metric
            // shows a stall while it lasts, not only after it ends.
            match tokio::time::timeout(Duration::from_secs(1), &mut acquire).await {
                Ok(permit) => {
                    let permit = permit.map_err(|_| Closed)?;
                    return Ok(Reservation { permit });
                }
                Err(_) => timer.flush(),
            }
        }
    }

    /// Push a batch into room reserved by `reserve`.
    pub fn commit(&self, batch: Batch, reservation: Reservation) {
        let permits = reservation.permit.num_permits();
        reservation.permit.forget();
        self.push_entry(Entry { batch, permits });
    }

    /// Push without waiting (a `drop` lane). Returns how many events were shed;
    /// they are counted here with reason `backpressure`.
    pub fn push_nowait(&self, mut batch: Batch) -> usize {
        let n = batch.events.len();
        if n == 0 {
            return 0;
        }
        if self.is_closed() {
            self.metrics.drop_events(DropReason::Shutdown, n as u64);
            return n;
        }
        let want = n.min(self.capacity);
        let mut dropped = n - want;
        if dropped > 0 {
            // Larger than the whole lane: keep what fits (the oldest for
            // drop-newest, the newest for drop-oldest).
            match self.policy {
                LanePolicy::DropOldest => {
                    batch.events.drain(..dropped);
                }
                _ => batch.events.truncate(want),
            }
        }
        let got = self.take_up_to(want);
        let mut permits = got;
        if got < want {
            self.set_full(true);
            match self.policy {
                LanePolicy::DropOldest => {
                    let evicted = self.evict_oldest(want - got);
                    permits += evicted;
                    if permits < want {
                        // Nothing left to evict (racing producers): shed the
                        // surplus of this batch instead.
                        let surplus = want - permits;
                        batch.events.drain(..surplus);
                        dropped += surplus;
                    }
                    dropped += evicted;
                }
                _ => {
                    batch.events.truncate(got);
                    dropped += want - got;
                }
            }
        }
        self.metrics
            .drop_events(DropReason::Backpressure, dropped as u64);
        if !batch.events.is_empty() {
            self.push_entry(Entry { batch, permits });
        } else if permits > 0 {
            self.room.add_permits(permits);
        }
        dropped
    }

    /// Take as many free permits as are available, up to `want`.
    fn take_up_to(&self, want: usize) -> usize {
        let mut want = want;
        loop {
            let avail = self.room.available_permits().min(want);
            if avail == 0 {
                return 0;
            }
            match self.room.try_acquire_many(avail as u32) {
                Ok(p) => {
                    p.forget();
                    return avail;
                }
                Err(TryAcquireError::Closed) => return 0,
                // Someone took permits in between; try again with what is left.
                Err(TryAcquireError::NoPermits) => want = avail,
            }
        }
    }

    /// Remove up to `n` of the oldest queued events; their permits pass to the
    /// caller. Returns how many were removed.
    fn evict_oldest(&self, n: usize) -> usize {
        let mut q = self.lock();
        let mut evicted = 0;
        while evicted < n {
            let Some(front) = q.front_mut() else { break };
            let take = (n - evicted).min(front.batch.events.len());
            if take == front.batch.events.len() {
                evicted += front.permits;
                q.pop_front();
            } else {
                front.batch.events.drain(..take);
                front.permits -= take;
                evicted += take;
            }
        }
        let depth = self.depth.fetch_sub(evicted, Ordering::Relaxed) - evicted;
        self.metrics.queue_events.set(depth as i64);
        evicted
    }

    fn push_entry(&self, entry: Entry) {
        let n = entry.batch.events.len();
        self.lock().push_back(entry);
        let depth = self.depth.fetch_add(n, Ordering::Relaxed) + n;
        self.metrics.queue_events.set(depth as i64);
        self.not_empty.notify_one();
    }

    /// Pop the oldest batch, waiting while the lane is empty. `None` once the
    /// lane is closed and empty. One consumer (the destination's driver).
    pub async fn pop(&self) -> Option<Batch> {
        loop {
            if let Some(b) = self.try_pop() {
                return Some(b);
            }
            if self.is_closed() {
                // A push may have raced with close; take it if so.
                return self.try_pop();
            }
            self.not_empty.notified().await;
        }
    }

    pub fn try_pop(&self) -> Option<Batch> {
        let entry = self.lock().pop_front()?;
        let n = entry.batch.events.len();
        self.outstanding.fetch_add(n, Ordering::Relaxed);
        let depth = self.depth.fetch_sub(n, Ordering::Relaxed) - n;
        self.metrics.queue_events.set(depth as i64);
        self.room.add_permits(entry.permits);
        if self.full.load(Ordering::Relaxed) && self.room.available_permits() > 0 {
            self.set_full(false);
        }
        Some(entry.batch)
    }

    /// Stop accepting events: waiting producers get `Closed`, the consumer
    /// drains what is queued and then sees `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.close();
        self.not_empty.notify_one();
    }

    /// Mark the peer as failing (the driver is retrying) or recovered.
    pub fn set_peer_failing(&self, failing: bool) {
        if self.peer_failing.swap(failing, Ordering::Relaxed) != failing {
            self.update_backpressure();
        }
    }

    pub fn peer_failing(&self) -> bool {
        self.peer_failing.load(Ordering::Relaxed)
    }

    fn set_full(&self, full: bool) {
        if self.full.swap(full, Ordering::Relaxed) != full {
            self.update_backpressure();
        }
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    fn update_backpressure(&self) {
        let on = self.full.load(Ordering::Relaxed) || self.peer_failing.load(Ordering::Relaxed);
        self.metrics.backpressure.set(i64::from(on));
    }
}

/// Adds the time a producer waited to `blocked_seconds`, even if the wait is cancelled.
struct BlockedTimer<'a> {
    since: Instant,
    lane: &'a Lane,
}

impl BlockedTimer<'_> {
    fn flush(&mut self) {
        let now = Instant::now();
        self.lane
            .metrics
            .blocked_seconds
            .inc_by((now - self.since).as_secs_f64());
        self.since = now;
    }
}

impl Drop for BlockedTimer<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::metrics::Metrics;
    use bytes::Bytes;
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

    fn lane(policy: LanePolicy, cap: usize) -> (Lane, DestinationMetrics) {
        let m = Metrics::new().destination("d");
        (Lane::new("d", policy, cap, m.clone()), m)
    }

    #[tokio::test]
    async fn block_waits_for_room_in_fifo_order() {
        let (lane, m) = lane(LanePolicy::Block, 10);
        let lane = Arc::new(lane);
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
        assert_eq!(ids(&lane.pop().await.unwrap()), (0..8).collect::<Vec<_>>());
        waiter.await.unwrap();
        assert_eq!(ids(&lane.pop().await.unwrap()), (8..13).collect::<Vec<_>>());
        assert_eq!(m.backpressure.get(), 0);
        assert!(m.blocked_seconds.get() > 0.0);
    }

    #[tokio::test]
    async fn oversized_batch_is_admitted_when_empty() {
        let (lane, _) = lane(LanePolicy::Block, 4);
        let r = lane.reserve(10).await.unwrap();
        lane.commit(batch(0..10), r);
        assert_eq!(lane.depth(), 10);
        assert_eq!(lane.pop().await.unwrap().len(), 10);
        assert_eq!(lane.room.available_permits(), 4);
    }

    #[tokio::test]
    async fn drop_newest_keeps_the_oldest() {
        let (lane, m) = lane(LanePolicy::DropNewest, 10);
        assert_eq!(lane.push_nowait(batch(0..6)), 0);
        assert_eq!(lane.push_nowait(batch(6..12)), 2);
        assert_eq!(lane.push_nowait(batch(12..20)), 8);
        assert_eq!(m.dropped(DropReason::Backpressure), 10);
        let mut got = Vec::new();
        while let Some(b) = lane.try_pop() {
            got.extend(ids(&b));
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest() {
        let (lane, m) = lane(LanePolicy::DropOldest, 10);
        lane.push_nowait(batch(0..6));
        lane.push_nowait(batch(6..12));
        lane.push_nowait(batch(12..15));
        assert_eq!(lane.push_nowait(batch(15..40)), 25);
        assert_eq!(m.dropped(DropReason::Backpressure), 30);
        let mut got = Vec::new();
        while let Some(b) = lane.try_pop() {
            got.extend(ids(&b));
        }
        assert_eq!(got, (30..40).collect::<Vec<_>>());
        assert_eq!(lane.room.available_permits(), 10);
        assert_eq!(lane.depth(), 0);
    }

    #[tokio::test]
    async fn close_wakes_everyone() {
        let (lane, _) = lane(LanePolicy::Block, 1);
        let lane = Arc::new(lane);
        let r = lane.reserve(1).await.unwrap();
        lane.commit(batch(0..1), r);
        let l2 = lane.clone();
        let blocked = tokio::spawn(async move { l2.reserve(1).await.err() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        lane.close();
        assert_eq!(blocked.await.unwrap(), Some(Closed));
        assert!(lane.pop().await.is_some());
        assert!(lane.pop().await.is_none());
    }
}
