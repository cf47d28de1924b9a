//! The bounded queue in front of each destination's driver, and the policy
//! that decides what happens when it is full.
//!
//! Capacity is counted in events (`queue.max_events`). Free room is a
//! semaphore: a `block` producer waits for permits in FIFO order (so one busy
//! connection cannot starve another), and a `drop` producer never waits. The
//! queue itself is a `VecDeque` of batches behind a mutex that is held only to
//! push or pop one batch — never across an await, never per event.
//!
//! A `persistent_queue` lane adds a disk side (`crate::queue`): when its
//! mode says so (memory full, peer failing, or always) batches go to the
//! disk writer instead, and batches read back from disk wait in a
//! read-ahead next to the in-memory queue. Under strict ordering, once the
//! lane is "engaged" everything in memory moves to disk and every new batch
//! follows it there, until the disk has been read to the end; so what comes
//! out of the lane is always in the order it went in, across restarts too.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::units::{ByteSize, Dur};
use crate::event::Batch;
use crate::metrics::{DestinationMetrics, DropReason};
mod disk_state;
mod spill;

pub use spill::{Opened, Spill};

use crate::queue::{self, DiskCompression, Fsync, Mode, OnFull, QueueSettings};
use disk_state::DiskState;
use spill::WriteItem;

/// What a destination does when it cannot keep up (`backpressure:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Sources wait for room: TCP stops reading, HTTP answers 429.
    #[default]
    Block,
    /// Never wait; shed events and count them (`reason="backpressure"`).
    Drop,
    /// Spill to the destination's disk queue; drain when the peer recovers.
    PersistentQueue,
}

/// Which events `drop` sheds (`queue.drop:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DropWhich {
    /// The incoming events (Vector's `drop_newest`).
    #[default]
    Newest,
    /// The oldest queued events, so the freshest data gets through.
    Oldest,
}

/// `queue:` settings of a destination: the in-memory lane, and the disk
/// queue under `backpressure: persistent_queue`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Lane capacity in events (default 10000).
    pub max_events: Option<usize>,
    /// With `backpressure: drop`: `newest` (default) or `oldest`.
    pub drop: Option<DropWhich>,
    /// When events go to disk: `error`, `backpressure` (default), `always`.
    pub mode: Option<Mode>,
    /// Disk limit (default 1GiB).
    pub max_bytes: Option<ByteSize>,
    /// At the limit: `block` (default) or `drop`.
    pub on_full: Option<OnFull>,
    /// `always`, `interval` (default) or `never`.
    pub fsync: Option<Fsync>,
    /// With `fsync: interval` (default 1s).
    pub fsync_interval: Option<Dur>,
    /// `none` (default) or `zstd`.
    pub compression: Option<DiskCompression>,
    /// Segment file size (default 64MiB).
    pub segment_bytes: Option<ByteSize>,
    /// `strict` (default) or `live_first`.
    pub ordering: Option<queue::Ordering>,
    /// With `ordering: live_first`: backlog events per second (default 1000).
    pub drain_rate: Option<u64>,
}

impl QueueConfig {
    /// The first disk-queue setting that is set, for "only applies with" errors.
    pub fn disk_setting(&self) -> Option<&'static str> {
        [
            (self.mode.is_some(), "mode"),
            (self.max_bytes.is_some(), "max_bytes"),
            (self.on_full.is_some(), "on_full"),
            (self.fsync.is_some(), "fsync"),
            (self.fsync_interval.is_some(), "fsync_interval"),
            (self.compression.is_some(), "compression"),
            (self.segment_bytes.is_some(), "segment_bytes"),
            (self.ordering.is_some(), "ordering"),
            (self.drain_rate.is_some(), "drain_rate"),
        ]
        .into_iter()
        .find(|(set, _)| *set)
        .map(|(_, name)| name)
    }

    /// The disk queue's settings for `destination` under `data_dir`.
    pub fn disk_settings(&self, data_dir: &Path, destination: &str) -> QueueSettings {
        QueueSettings {
            dir: queue::queue_dir(data_dir, destination),
            mode: self.mode.unwrap_or_default(),
            max_bytes: self.max_bytes.map_or(queue::DEFAULT_MAX_BYTES, |b| b.0),
            on_full: self.on_full.unwrap_or_default(),
            fsync: self.fsync.unwrap_or_default(),
            fsync_interval: self
                .fsync_interval
                .map_or(queue::DEFAULT_FSYNC_INTERVAL, Dur::get),
            compress: self.compression == Some(DiskCompression::Zstd),
            segment_bytes: self
                .segment_bytes
                .map_or(queue::DEFAULT_SEGMENT_BYTES, |b| b.0),
            ordering: self.ordering.unwrap_or_default(),
            drain_rate: self.drain_rate.unwrap_or(queue::DEFAULT_DRAIN_RATE),
        }
    }
}

pub const DEFAULT_MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanePolicy {
    Block,
    DropNewest,
    DropOldest,
    Persistent,
}

impl LanePolicy {
    pub fn new(policy: Policy, drop: DropWhich) -> Self {
        match (policy, drop) {
            (Policy::Block, _) => LanePolicy::Block,
            (Policy::Drop, DropWhich::Newest) => LanePolicy::DropNewest,
            (Policy::Drop, DropWhich::Oldest) => LanePolicy::DropOldest,
            (Policy::PersistentQueue, _) => LanePolicy::Persistent,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LanePolicy::Block => "block",
            LanePolicy::DropNewest => "drop_newest",
            LanePolicy::DropOldest => "drop_oldest",
            LanePolicy::Persistent => "persistent_queue",
        }
    }

    /// Producers reserve room first (`reserve` + `commit`) rather than
    /// pushing without waiting.
    pub fn reserves(self) -> bool {
        matches!(self, LanePolicy::Block | LanePolicy::Persistent)
    }
}

/// A persistent queue at a glance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskStatus {
    /// New events go to disk.
    pub engaged: bool,
    /// Queued events are being delivered (the destination is not failing).
    pub draining: bool,
    /// At `max_bytes`, or the last write failed.
    pub full: bool,
    pub events: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub dir: String,
}

/// The lane is closed: sluice is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

struct Entry {
    batch: Batch,
    /// Permits this entry holds; returned to the semaphore when it is popped.
    permits: usize,
}

struct Queue {
    memory: VecDeque<Entry>,
    /// Persistent-queue lanes only.
    disk: Option<DiskState>,
}

pub struct Lane {
    id: Arc<str>,
    policy: LanePolicy,
    capacity: usize,
    room: Arc<Semaphore>,
    queue: Mutex<Queue>,
    /// Events in the in-memory queue.
    depth: AtomicUsize,
    /// Events popped by the driver and not yet delivered, dropped or handed back.
    outstanding: AtomicUsize,
    not_empty: Notify,
    closed: AtomicBool,
    full: AtomicBool,
    peer_failing: AtomicBool,
    metrics: DestinationMetrics,
    spill: Option<Spill>,
}

/// Room reserved by `reserve`, returned if dropped without `commit`.
pub enum Reservation {
    /// In the in-memory queue.
    Memory(OwnedSemaphorePermit),
    /// In the disk writer's input.
    Disk(OwnedSemaphorePermit),
    /// The disk queue is full and `on_full: drop`: `commit` counts the
    /// batch as dropped with reason `queue_full`.
    Full,
}

impl Lane {
    pub fn new(id: &str, policy: LanePolicy, capacity: usize, metrics: DestinationMetrics) -> Self {
        Self::build(id, policy, capacity, metrics, None)
    }

    /// A `persistent_queue` lane over an opened disk queue.
    pub fn persistent(
        id: &str,
        capacity: usize,
        metrics: DestinationMetrics,
        opened: spill::Opened,
    ) -> Self {
        Self::build(
            id,
            LanePolicy::Persistent,
            capacity,
            metrics,
            Some((opened.spill, opened.state)),
        )
    }

    fn build(
        id: &str,
        policy: LanePolicy,
        capacity: usize,
        metrics: DestinationMetrics,
        disk: Option<(Spill, DiskState)>,
    ) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        let (spill, state) = match disk {
            Some((s, d)) => (Some(s), Some(d)),
            None => (None, None),
        };
        Lane {
            id: id.into(),
            policy,
            capacity,
            room: Arc::new(Semaphore::new(capacity)),
            queue: Mutex::new(Queue {
                memory: VecDeque::new(),
                disk: state,
            }),
            depth: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            not_empty: Notify::new(),
            closed: AtomicBool::new(false),
            full: AtomicBool::new(false),
            peer_failing: AtomicBool::new(false),
            metrics,
            spill,
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

    /// The disk queue of a `persistent_queue` lane.
    pub fn spill(&self) -> Option<&Spill> {
        self.spill.as_ref()
    }

    /// Events waiting in the in-memory queue.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Events not yet delivered or dropped: in the lane, held by the
    /// driver, or in the disk queue.
    pub fn pending(&self) -> usize {
        let mut n = self.depth() + self.outstanding.load(Ordering::Relaxed);
        if let Some(sp) = &self.spill {
            let q = self.lock();
            if let Some(d) = &q.disk {
                n += d.write_pending + d.readahead_events + d.requeued;
            }
            n += sp.disk.unread() as usize;
        }
        n
    }

    /// Events popped by the driver and not yet finished with.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The disk queue's state, for `/api/v1/status`.
    pub fn disk_status(&self) -> Option<DiskStatus> {
        let sp = self.spill.as_ref()?;
        let backlog = {
            let q = self.lock();
            q.disk.as_ref().map_or(0, |d| d.readahead_events) as u64 + sp.disk.unread()
        };
        Some(DiskStatus {
            engaged: sp.is_engaged(),
            draining: backlog > 0 && !self.peer_failing(),
            full: sp.is_full(),
            events: sp.disk.events(),
            bytes: sp.disk.bytes(),
            max_bytes: sp.settings.max_bytes,
            dir: sp.settings.dir.display().to_string(),
        })
    }

    /// The driver finished with `n` events it popped (delivered, dropped,
    /// or handed back to the disk queue).
    pub fn settle(&self, n: usize) {
        self.outstanding.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every critical section is a few pushes or pops), so recover.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for room for `n` events (a `block` or `persistent_queue` lane).
    /// A batch larger than the whole lane reserves the whole lane, so it is
    /// admitted once the lane drains.
    pub async fn reserve(&self, n: usize) -> Result<Reservation, Closed> {
        let want = n.clamp(1, self.capacity) as u32;
        if let Some(sp) = &self.spill {
            return self.reserve_persistent(sp, want).await;
        }
        self.wait_for(&self.room, want)
            .await
            .map(Reservation::Memory)
    }

    /// Take `want` permits of `sem`, waiting (and counting the time as
    /// `blocked_seconds`) if there are not enough.
    async fn wait_for(
        &self,
        sem: &Arc<Semaphore>,
        want: u32,
    ) -> Result<OwnedSemaphorePermit, Closed> {
        match Arc::clone(sem).try_acquire_many_owned(want) {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        if Arc::ptr_eq(sem, &self.room) {
            self.set_full(true);
        }
        let mut timer = BlockedTimer {
            since: Instant::now(),
            lane: self,
        };
        let acquire = Arc::clone(sem).acquire_many_owned(want);
        tokio::pin!(acquire);
        loop {
            // Account waiting time at least every second, so the metric
            // shows a stall while it lasts, not only after it ends.
            match tokio::time::timeout(Duration::from_secs(1), &mut acquire).await {
                Ok(permit) => return permit.map_err(|_| Closed),
                Err(_) => timer.flush(),
            }
        }
    }

    /// Memory while the mode allows and there is room, otherwise disk:
    /// waiting only for the disk writer to keep up, or, at `max_bytes` with
    /// `on_full: block`, for the queue to shrink.
    async fn reserve_persistent(&self, sp: &Spill, want: u32) -> Result<Reservation, Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        if self.prefers_memory(sp) {
            match Arc::clone(&self.room).try_acquire_many_owned(want) {
                Ok(p) => return Ok(Reservation::Memory(p)),
                Err(TryAcquireError::Closed) => return Err(Closed),
                Err(TryAcquireError::NoPermits) => self.set_full(true),
            }
        }
        let mut timer = None;
        loop {
            let room = sp.space.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.is_closed() {
                return Err(Closed);
            }
            if !sp.is_full() {
                break;
            }
            if sp.settings.on_full == OnFull::Drop {
                return Ok(Reservation::Full);
            }
            let t = timer.get_or_insert_with(|| BlockedTimer {
                since: Instant::now(),
                lane: self,
            });
            tokio::select! {
                _ = room => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => t.flush(),
            }
        }
        drop(timer);
        self.wait_for(&sp.write_room, want)
            .await
            .map(Reservation::Disk)
    }

    fn prefers_memory(&self, sp: &Spill) -> bool {
        match sp.settings.mode {
            Mode::Always => false,
            Mode::Error if self.peer_failing() => false,
            _ => !(sp.settings.ordering == queue::Ordering::Strict && sp.is_engaged()),
        }
    }

    /// Push a batch into room reserved by `reserve`.
    pub fn commit(&self, batch: Batch, reservation: Reservation) {
        match reservation {
            Reservation::Memory(permit) => {
                let permits = permit.num_permits();
                permit.forget();
                let Some(sp) = &self.spill else {
                    self.push_entry(Entry { batch, permits });
                    return;
                };
                let mut q = self.lock();
                let strict = sp.settings.ordering == queue::Ordering::Strict;
                if strict && q.disk.as_ref().is_some_and(|d| d.engaged) {
                    // Engaged since the reservation: follow the rest to disk.
                    self.room.add_permits(permits);
                    self.send_to_disk(&mut q, batch, None);
                    return;
                }
                self.push_locked(&mut q, Entry { batch, permits });
                drop(q);
                self.not_empty.notify_one();
            }
            Reservation::Disk(permit) => {
                let mut q = self.lock();
                if let Some(sp) = &self.spill
                    && sp.settings.ordering == queue::Ordering::Strict
                {
                    self.engage_locked(&mut q, "the in-memory lane is full");
                }
                self.send_to_disk(&mut q, batch, Some(permit));
            }
            Reservation::Full => {
                self.metrics
                    .drop_events(DropReason::QueueFull, batch.len() as u64);
            }
        }
    }

    /// Hand a batch to the disk writer (under the lane lock, which keeps
    /// the writer's input in lane order).
    fn send_to_disk(&self, q: &mut Queue, mut batch: Batch, permit: Option<OwnedSemaphorePermit>) {
        let n = batch.len();
        if let Some(d) = q.disk.as_mut()
            && let Some(tx) = &d.writes
        {
            match tx.send(WriteItem {
                batch,
                _permit: permit,
            }) {
                Ok(()) => {
                    d.write_pending += n;
                    return;
                }
                Err(e) => batch = e.0.batch,
            }
        }
        // The writer has finished: only possible after shutdown.
        if let Some(ack) = &batch.ack {
            ack.fail();
        }
        self.metrics.drop_events(DropReason::Shutdown, n as u64);
    }

    /// New batches go to disk from now on (strict ordering), and what is in
    /// memory goes first.
    fn engage_locked(&self, q: &mut Queue, why: &str) {
        let Some(sp) = &self.spill else { return };
        if q.disk.as_ref().is_none_or(|d| d.engaged) {
            return;
        }
        if let Some(d) = q.disk.as_mut() {
            d.engaged = true;
        }
        sp.engaged.store(true, Ordering::Relaxed);
        let moved = self.memory_to_disk(q);
        tracing::info!(
            destination = %self.id,
            reason = why,
            moved_events = moved,
            "persistent queue engaged: new events go to disk"
        );
    }

    /// Move everything in the in-memory queue to the disk writer, in order.
    fn memory_to_disk(&self, q: &mut Queue) -> usize {
        let mut moved = 0;
        while let Some(entry) = q.memory.pop_front() {
            let n = entry.batch.len();
            moved += n;
            self.depth.fetch_sub(n, Ordering::Relaxed);
            self.room.add_permits(entry.permits);
            self.send_to_disk(q, entry.batch, None);
        }
        self.metrics.queue_events.set(self.depth() as i64);
        if moved > 0 && self.full.load(Ordering::Relaxed) {
            self.set_full(false);
        }
        moved
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
            let Some(front) = q.memory.front_mut() else {
                break;
            };
            let take = (n - evicted).min(front.batch.events.len());
            if take == front.batch.events.len() {
                evicted += front.permits;
                q.memory.pop_front();
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
        let mut q = self.lock();
        self.push_locked(&mut q, entry);
        drop(q);
        self.not_empty.notify_one();
    }

    fn push_locked(&self, q: &mut Queue, entry: Entry) {
        let n = entry.batch.events.len();
        q.memory.push_back(entry);
        let depth = self.depth.fetch_add(n, Ordering::Relaxed) + n;
        self.metrics.queue_events.set(depth as i64);
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
        let mut q = self.lock();
        let Queue { memory, disk } = &mut *q;
        if let Some(d) = disk
            && let Some(front) = d.readahead.front()
        {
            let live_first = self
                .spill
                .as_ref()
                .is_some_and(|sp| sp.settings.ordering == queue::Ordering::LiveFirst);
            let n = front.len();
            // Under strict ordering whatever is on disk is older than
            // anything in memory.
            if memory.is_empty() || !live_first || d.backlog_turn(n) {
                let batch = d.readahead.pop_front()?;
                d.readahead_events -= n;
                let low = d.readahead_events <= self.capacity / 2;
                self.outstanding.fetch_add(n, Ordering::Relaxed);
                drop(q);
                if low && let Some(sp) = &self.spill {
                    sp.wake_reader.notify_one();
                }
                return Some(batch);
            }
        }
        let entry = memory.pop_front()?;
        drop(q);
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
    /// drains what is queued and then sees `None`. A `persistent_queue`
    /// lane also drops its read-ahead (those events stay on disk) and tells
    /// the driver to hand back, rather than retry, what it cannot deliver.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.close();
        if let Some(sp) = &self.spill {
            // What is in memory stays for the driver, which delivers it or,
            // once the peer cannot take it, hands it back in order behind
            // the jobs it already holds (see `Job::resolve`).
            let mut q = self.lock();
            if let Some(d) = q.disk.as_mut() {
                for b in d.readahead.drain(..) {
                    if let Some(ack) = &b.ack {
                        ack.abandon();
                    }
                }
                d.requeued += d.readahead_events;
                d.readahead_events = 0;
            }
            drop(q);
            sp.write_room.close();
            sp.closing.cancel();
            sp.space.notify_waiters();
        }
        self.not_empty.notify_one();
    }

    /// Resolves when the lane is closing and batches the driver is still
    /// retrying should be handed back to the disk queue (persistent-queue
    /// lanes only; never for others).
    pub async fn handing_back(&self) {
        match &self.spill {
            Some(sp) => sp.closing.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Take back a job's events at shutdown (persistent-queue lanes): ones
    /// read from disk stay there (their acknowledgements are abandoned, so
    /// the queue does not advance past them); ones from memory are written.
    /// The caller settles them.
    pub fn hand_back(&self, batches: Vec<Batch>, persisted: bool) {
        let mut q = self.lock();
        for b in batches {
            if persisted {
                if let Some(ack) = &b.ack {
                    ack.abandon();
                }
                if let Some(d) = q.disk.as_mut() {
                    d.requeued += b.len();
                }
            } else {
                self.send_to_disk(&mut q, b, None);
            }
        }
    }

    /// Put batches a retiring driver took back at the front of the lane, in
    /// the order given, for the driver that replaces it (a reload). Their
    /// acknowledgements stay pending: they are not delivered yet. Events
    /// read from disk return to the read-ahead (their disk acknowledgement
    /// still advances the queue once delivered), the rest to memory, without
    /// permits: the lane may sit over capacity until they are taken again.
    /// The caller settles them.
    pub fn requeue(&self, batches: Vec<Batch>) {
        let mut q = self.lock();
        let mut added = 0;
        for b in batches.into_iter().rev() {
            let n = b.len();
            if b.persisted
                && let Some(d) = q.disk.as_mut()
            {
                d.readahead_events += n;
                d.readahead.push_front(b);
                continue;
            }
            added += n;
            q.memory.push_front(Entry {
                batch: b,
                permits: 0,
            });
        }
        let depth = self.depth.fetch_add(added, Ordering::Relaxed) + added;
        self.metrics.queue_events.set(depth as i64);
        drop(q);
        self.not_empty.notify_one();
    }

    /// Every batch still in the in-memory queue, oldest first, for the lane
    /// that replaces this one (a reload that changes its policy or size).
    /// Only once the lane is closed and its driver has ended.
    pub fn take_memory(&self) -> Vec<Batch> {
        let mut q = self.lock();
        let out: Vec<Batch> = q.memory.drain(..).map(|e| e.batch).collect();
        let n: usize = out.iter().map(Batch::len).sum();
        self.depth.fetch_sub(n.min(self.depth()), Ordering::Relaxed);
        self.metrics.queue_events.set(self.depth() as i64);
        out
    }

    /// After the driver has ended: close the disk writer's input and wait
    /// for the queue's tasks to write, commit and sync what is left.
    pub async fn finish(&self) {
        let Some(sp) = &self.spill else { return };
        if let Some(d) = self.lock().disk.as_mut() {
            d.writes = None;
        }
        sp.closing.cancel();
        sp.join().await;
    }

    /// Room left in the read-ahead, in events (0 once closed).
    fn readahead_room(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        let q = self.lock();
        q.disk
            .as_ref()
            .map_or(0, |d| self.capacity.saturating_sub(d.readahead_events))
    }

    /// Batches read back from disk, for the driver.
    fn push_readahead(&self, batches: Vec<Batch>) {
        if batches.is_empty() {
            return;
        }
        let mut q = self.lock();
        let closed = self.is_closed();
        let Some(d) = q.disk.as_mut() else { return };
        for b in batches {
            let n = b.len();
            if closed {
                if let Some(ack) = &b.ack {
                    ack.abandon();
                }
                d.requeued += n;
            } else {
                d.readahead_events += n;
                d.readahead.push_back(b);
            }
        }
        drop(q);
        self.not_empty.notify_one();
    }

    /// The writer finished with `n` events (written or dropped).
    fn written(&self, n: usize) {
        if let Some(d) = self.lock().disk.as_mut() {
            d.write_pending -= n.min(d.write_pending);
        }
        if let Some(sp) = &self.spill {
            sp.wake_reader.notify_one();
        }
    }

    /// Strict ordering: once the disk has been read to the end (nothing
    /// waiting to be written, read, or taken from the read-ahead), new
    /// batches may use memory again.
    fn try_disengage(&self) {
        let Some(sp) = &self.spill else { return };
        if !sp.is_engaged() || sp.settings.mode == Mode::Always {
            return;
        }
        if sp.settings.mode == Mode::Error && self.peer_failing() {
            return;
        }
        let mut q = self.lock();
        let Queue { memory, disk } = &mut *q;
        let Some(d) = disk else { return };
        if d.write_pending > 0 || !d.readahead.is_empty() || !memory.is_empty() {
            return;
        }
        // Checked under the lane lock after `write_pending`: every append
        // that finished has counted its events here already.
        if sp.disk.unread() > 0 {
            return;
        }
        d.engaged = false;
        sp.engaged.store(false, Ordering::Relaxed);
        drop(q);
        tracing::info!(
            destination = %self.id,
            "persistent queue drained: new events use memory again"
        );
    }

    /// Mark the peer as failing (the driver is retrying) or recovered.
    pub fn set_peer_failing(&self, failing: bool) {
        if self.peer_failing.swap(failing, Ordering::Relaxed) != failing {
            self.update_backpressure();
            if let Some(sp) = &self.spill
                && sp.settings.mode == Mode::Error
            {
                if failing {
                    let mut q = self.lock();
                    self.engage_locked(&mut q, "the destination is failing");
                } else {
                    sp.wake_reader.notify_one();
                }
            }
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

    fn persistent_lane(dir: &Path, ordering: queue::Ordering, cap: usize) -> Lane {
        let q = QueueConfig {
            ordering: Some(ordering),
            drain_rate: Some(1),
            ..QueueConfig::default()
        };
        let metrics = Metrics::new();
        let (opened, _) = Spill::open(
            q.disk_settings(dir, "d"),
            cap,
            metrics.persistent_queue("d"),
        )
        .unwrap();
        Lane::persistent("d", cap, metrics.destination("d"), opened)
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
        while let Some(b) = lane.try_pop() {
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
        while let Some(b) = lane.try_pop() {
            order.push(ids(&b)[0]);
        }
        assert_eq!(order, vec![0, 100]);
    }
}
