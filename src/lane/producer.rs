//! The lane's producer face: the router (and a dead-letter hand-over) puts
//! batches in. A `block` or `persistent_queue` lane is reserved first and
//! committed once every lane of a source batch has room (`reserve` +
//! `commit`); a `drop` lane takes what fits at once (`push_nowait`).
//! Counting what enters, and what is shed at the door, happens here.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::disk_state::WriteItem;
use super::spill::Spill;
use super::{BlockedTimer, Closed, Entry, Lane, LanePolicy, Queue};
use crate::event::Batch;
use crate::metrics::DropReason;
use crate::queue::{self, Mode, OnFull};

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

/// What the router holds of a destination's lane.
#[derive(Clone)]
pub struct Producer(pub(super) Arc<Lane>);

impl Producer {
    pub fn id(&self) -> &str {
        self.0.id()
    }

    pub fn policy(&self) -> LanePolicy {
        self.0.policy
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Wait for room for `n` events (a `block` or `persistent_queue` lane).
    /// A batch larger than the whole lane reserves the whole lane, so it is
    /// admitted once the lane drains.
    pub async fn reserve(&self, n: usize) -> Result<Reservation, Closed> {
        self.0.reserve(n).await
    }

    /// Push a batch into room reserved by `reserve`.
    pub fn commit(&self, batch: Batch, reservation: Reservation) {
        self.0.commit(batch, reservation);
    }

    /// Push without waiting (a `drop` lane). Returns how many events were
    /// shed; they are counted with reason `backpressure`, and their
    /// acknowledgements shed.
    pub fn push_nowait(&self, batch: Batch) -> usize {
        self.0.push_nowait(batch)
    }
}

impl Lane {
    pub(super) async fn reserve(&self, n: usize) -> Result<Reservation, Closed> {
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
            since: std::time::Instant::now(),
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
                since: std::time::Instant::now(),
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

    pub(super) fn commit(&self, batch: Batch, reservation: Reservation) {
        let n = batch.len();
        match reservation {
            Reservation::Memory(permit) => {
                let permits = permit.num_permits();
                permit.forget();
                self.books.entered(n);
                if self.spill.is_none() {
                    self.push_entry(Entry { batch, permits });
                    return;
                }
                let mut q = self.lock();
                if self.strict() && q.disk.as_ref().is_some_and(|d| d.engaged) {
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
                self.books.entered(n);
                let mut q = self.lock();
                if self.strict() {
                    self.engage_locked(&mut q, "the in-memory lane is full");
                }
                self.send_to_disk(&mut q, batch, Some(permit));
            }
            Reservation::Full => {
                if let Some(ack) = &batch.ack {
                    ack.shed();
                }
                self.books.refused(n, DropReason::QueueFull);
            }
        }
    }

    /// Hand queued events to the disk writer (under the lane lock, which
    /// keeps the writer's input in lane order).
    pub(super) fn send_to_disk(
        &self,
        q: &mut Queue,
        mut batch: Batch,
        permit: Option<OwnedSemaphorePermit>,
    ) {
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
            ack.shed();
        }
        self.books.shed(n, DropReason::Shutdown);
    }

    /// New batches go to disk from now on (strict ordering), and what is in
    /// memory goes first.
    pub(super) fn engage_locked(&self, q: &mut Queue, why: &str) {
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

    /// Move everything in the in-memory queue to the disk writer, in order
    /// (queued either way: the books do not move).
    fn memory_to_disk(&self, q: &mut Queue) -> usize {
        let mut moved = 0;
        while let Some(entry) = q.memory.pop_front() {
            let n = entry.batch.len();
            moved += n;
            self.depth.fetch_sub(n, Ordering::Relaxed);
            self.room.add_permits(entry.permits);
            self.send_to_disk(q, entry.batch, None);
        }
        if moved > 0 && self.full.load(Ordering::Relaxed) {
            self.set_full(false);
        }
        moved
    }

    pub(super) fn push_nowait(&self, mut batch: Batch) -> usize {
        let n = batch.events.len();
        if n == 0 {
            return 0;
        }
        if self.is_closed() {
            if let Some(ack) = &batch.ack {
                ack.shed();
            }
            self.books.refused(n, DropReason::Shutdown);
            return n;
        }
        if n > self.capacity
            && let Ok(p) = self.room.try_acquire_many(self.capacity as u32)
        {
            // Larger than the whole lane, and the lane is empty: admitted
            // whole, as a block lane admits it, or a source whose batches
            // are larger than the lane would lose part of every one.
            p.forget();
            self.books.entered(n);
            self.push_entry(Entry {
                batch,
                permits: self.capacity,
            });
            return 0;
        }
        let want = n.min(self.capacity);
        // Shed at the door (never queued), and evicted from the queue.
        let mut refused = n - want;
        let mut evicted = 0;
        if refused > 0 {
            // Larger than the whole lane, which holds events: keep what
            // fits (the oldest for drop-newest, the newest for drop-oldest).
            match self.policy {
                LanePolicy::DropOldest => {
                    batch.events.drain(..refused);
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
                    let (freed, events) = self.evict_oldest(want - got);
                    evicted = events;
                    permits += freed;
                    if permits < want {
                        // Nothing left to evict (racing producers): shed the
                        // surplus of this batch instead.
                        let surplus = want - permits;
                        batch.events.drain(..surplus);
                        refused += surplus;
                    }
                }
                _ => {
                    batch.events.truncate(got);
                    refused += want - got;
                }
            }
        }
        if refused > 0
            && let Some(ack) = &batch.ack
        {
            ack.shed();
        }
        self.books.refused(refused, DropReason::Backpressure);
        if !batch.events.is_empty() {
            self.books.entered(batch.events.len());
            self.push_entry(Entry { batch, permits });
        } else if permits > 0 {
            self.room.add_permits(permits);
        }
        refused + evicted
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

    /// Free up to `n` permits by removing the oldest queued events (counted
    /// as shed, their acknowledgements shed); the permits pass to the
    /// caller. Returns the permits freed and the events removed.
    fn evict_oldest(&self, n: usize) -> (usize, usize) {
        let mut q = self.lock();
        let mut evicted = 0;
        let mut events = 0;
        while evicted < n {
            let Some(front) = q.memory.front_mut() else {
                break;
            };
            if let Some(ack) = &front.batch.ack {
                ack.shed();
            }
            let take = (n - evicted).min(front.batch.events.len());
            if take == front.batch.events.len() {
                evicted += front.permits;
                events += take;
                q.memory.pop_front();
            } else {
                front.batch.events.drain(..take);
                // An adopted entry (a reload) holds fewer permits than events.
                let freed = take.min(front.permits);
                front.permits -= freed;
                evicted += freed;
                events += take;
            }
        }
        self.depth.fetch_sub(events, Ordering::Relaxed);
        self.books.shed(events, DropReason::Backpressure);
        (evicted, events)
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
        self.depth.fetch_add(n, Ordering::Relaxed);
    }
}
