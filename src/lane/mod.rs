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
//!
//! The lane has two faces: the router (and a dead-letter hand-over) holds
//! a [`Producer`], the driver a [`Consumer`]. It keeps its own books
//! (`books.rs`): what the driver takes comes as a [`Lease`] that settles
//! itself, so no caller counts events in or out by hand. An event the lane
//! sheds for lack of room fails its acknowledgement as [`Ack::shed`]: the
//! sender is told to send it again, never that it was delivered.
//!
//! [`Ack::shed`]: crate::event::Ack::shed

mod books;
mod consumer;
mod disk_state;
mod producer;
mod settings;
mod spill;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, Semaphore};

use crate::event::Batch;
use crate::metrics::{DestinationMetrics, Metrics};
use crate::queue::{self, Mode};
use disk_state::DiskState;

pub use books::{BookCounts, Books, Lease};
pub use consumer::{Consumer, Taken};
pub use producer::{Producer, Reservation};
pub use settings::{DEFAULT_MAX_EVENTS, DropWhich, LanePolicy, Policy, QueueConfig};
pub use spill::{Opened, Spill};

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
    not_empty: Notify,
    closed: AtomicBool,
    full: AtomicBool,
    peer_failing: AtomicBool,
    metrics: DestinationMetrics,
    books: Arc<Books>,
    spill: Option<Spill>,
}

impl Lane {
    /// A memory lane, counted in `metrics` under `id`.
    pub fn new(id: &str, policy: LanePolicy, capacity: usize, metrics: &Metrics) -> Self {
        let books = Books::new(metrics.books_lock(), metrics.book_series(id, false));
        Self::build(id, policy, capacity, metrics.destination(id), books, None)
    }

    /// A `persistent_queue` lane over an opened disk queue. `counted`: this
    /// process already counted the events the queue holds (a reload
    /// reopening a queue it had closed).
    pub fn persistent(
        id: &str,
        capacity: usize,
        metrics: &Metrics,
        opened: spill::Opened,
        counted: bool,
    ) -> Self {
        let books = Books::new(metrics.books_lock(), metrics.book_series(id, true));
        books.recovered(opened.recovered, opened.recovered_corrupt, counted);
        Self::build(
            id,
            LanePolicy::Persistent,
            capacity,
            metrics.destination(id),
            books,
            Some((opened.spill, opened.state)),
        )
    }

    fn build(
        id: &str,
        policy: LanePolicy,
        capacity: usize,
        metrics: DestinationMetrics,
        books: Books,
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
            not_empty: Notify::new(),
            closed: AtomicBool::new(false),
            full: AtomicBool::new(false),
            peer_failing: AtomicBool::new(false),
            metrics,
            books: Arc::new(books),
            spill,
        }
    }

    /// The router's face (also a dead-letter hand-over's).
    pub fn producer(self: &Arc<Self>) -> Producer {
        Producer(self.clone())
    }

    /// The driver's face.
    pub fn consumer(self: &Arc<Self>) -> Consumer {
        Consumer(self.clone())
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

    /// The destination's delivery metrics (retries, requests, backpressure).
    pub fn metrics(&self) -> &DestinationMetrics {
        &self.metrics
    }

    /// The destination's books, to read.
    pub fn books(&self) -> &Books {
        &self.books
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
    /// driver, or in the disk queue. Counted from the lane's own
    /// structures, not its books, so that a final accounting checks one
    /// against the other.
    pub fn pending(&self) -> usize {
        let mut n = self.depth() + self.books.outstanding();
        if let Some(sp) = &self.spill {
            let q = self.lock();
            if let Some(d) = &q.disk {
                n += d.write_pending + d.readahead_events + d.requeued;
            }
            n += sp.disk.unread() as usize;
        }
        n
    }

    /// Events the driver holds.
    pub fn outstanding(&self) -> usize {
        self.books.outstanding()
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

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every critical section is a few pushes or pops), so recover.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Every batch still in the in-memory queue, oldest first, for the lane
    /// that replaces this one (a reload that changes its policy or size).
    /// Only once the lane is closed and its driver has ended. The books do
    /// not move: both lanes keep the same destination's books, and
    /// [`Lane::adopt`] takes the events in as still queued.
    pub fn take_memory(&self) -> Vec<Batch> {
        let mut q = self.lock();
        let out: Vec<Batch> = q.memory.drain(..).map(|e| e.batch).collect();
        let n: usize = out.iter().map(Batch::len).sum();
        self.depth.fetch_sub(n.min(self.depth()), Ordering::Relaxed);
        out
    }

    /// Put a replaced lane's batches (`take_memory`) at the front of this
    /// one, in order, without permits: the lane may sit over capacity
    /// until they are taken. Their acknowledgements stay pending.
    pub fn adopt(&self, batches: Vec<Batch>) {
        self.push_front(batches);
    }

    /// Put `batches` back at the front, in the order given: ones read from
    /// disk to the read-ahead (their disk acknowledgement still advances
    /// the queue once delivered), the rest to memory, without permits.
    fn push_front(&self, batches: Vec<Batch>) {
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
        self.depth.fetch_add(added, Ordering::Relaxed);
        drop(q);
        self.not_empty.notify_one();
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

    /// Strict ordering: once the backlog is delivered (nothing waiting to
    /// be written, read or taken from the read-ahead, and everything read
    /// back acknowledged), new batches may use memory again. Read back is
    /// not enough: while the peer is down the driver holds what it read,
    /// and new events must keep following it to disk.
    fn try_disengage(&self) {
        let Some(sp) = &self.spill else { return };
        if !sp.is_engaged() || sp.settings.mode == Mode::Always {
            return;
        }
        // While the peer fails nothing drains; a backlog that emptied some
        // other way (its events dropped) is no reason to send new events
        // through memory to a peer that is down, only to engage again.
        if self.peer_failing() {
            return;
        }
        let mut q = self.lock();
        let Queue { memory, disk } = &mut *q;
        let Some(d) = disk else { return };
        if d.write_pending > 0 || !d.readahead.is_empty() || !memory.is_empty() {
            return;
        }
        // Checked under the lane lock after `write_pending`: every append
        // that finished has counted its events here already. `events`
        // counts what is on disk and not yet committed as delivered.
        if sp.disk.unread() > 0 || sp.disk.events() > 0 {
            return;
        }
        d.engaged = false;
        sp.engaged
            .store(false, std::sync::atomic::Ordering::Relaxed);
        drop(q);
        tracing::info!(
            destination = %self.id,
            "persistent queue drained: its backlog is delivered; new events use memory again"
        );
    }

    /// Mark the peer as failing (the driver is retrying) or recovered.
    pub fn set_peer_failing(&self, failing: bool) {
        if self.peer_failing.swap(failing, Ordering::Relaxed) != failing {
            self.update_backpressure();
            if let Some(sp) = &self.spill {
                if failing && sp.settings.mode == Mode::Error {
                    let mut q = self.lock();
                    self.engage_locked(&mut q, "the destination is failing");
                } else if !failing {
                    // The reader looks again whether the backlog is gone.
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

    fn strict(&self) -> bool {
        self.spill
            .as_ref()
            .is_some_and(|sp| sp.settings.ordering == queue::Ordering::Strict)
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
mod tests;
