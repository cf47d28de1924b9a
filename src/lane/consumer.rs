//! The lane's consumer face: the driver takes batches out, each with a
//! [`Lease`] on its events, and gives back what it cannot finish (a
//! reload's retiring driver, a persistent queue's shutdown). The spill
//! tasks feed the read-ahead from here too.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Lane, LanePolicy, Lease, Queue};
use crate::event::Batch;
use crate::metrics::DestinationMetrics;
use crate::queue;

/// A batch the driver took, and its lease.
#[derive(Debug)]
pub struct Taken {
    pub batch: Batch,
    pub lease: Lease,
}

/// What the driver holds of its destination's lane.
#[derive(Clone)]
pub struct Consumer(pub(super) Arc<Lane>);

impl Consumer {
    pub fn id(&self) -> &str {
        self.0.id()
    }

    pub fn policy(&self) -> LanePolicy {
        self.0.policy
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    pub fn metrics(&self) -> &DestinationMetrics {
        self.0.metrics()
    }

    pub fn books(&self) -> &super::Books {
        self.0.books()
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// A `persistent_queue` lane: what the driver cannot deliver at
    /// shutdown goes back to disk rather than being dropped.
    pub fn is_persistent(&self) -> bool {
        self.0.spill.is_some()
    }

    pub fn peer_failing(&self) -> bool {
        self.0.peer_failing()
    }

    pub fn set_peer_failing(&self, failing: bool) {
        self.0.set_peer_failing(failing);
    }

    /// Events not yet delivered or dropped (see `Lane::pending`).
    pub fn pending(&self) -> usize {
        self.0.pending()
    }

    /// Pop the oldest batch, waiting while the lane is empty. `None` once the
    /// lane is closed and empty. One consumer (the destination's driver).
    pub async fn pop(&self) -> Option<Taken> {
        loop {
            if let Some(b) = self.try_pop() {
                return Some(b);
            }
            if self.0.is_closed() {
                // A push may have raced with close; take it if so.
                return self.try_pop();
            }
            self.0.not_empty.notified().await;
        }
    }

    pub fn try_pop(&self) -> Option<Taken> {
        let lane = &*self.0;
        let mut q = lane.lock();
        let Queue { memory, disk } = &mut *q;
        if let Some(d) = disk
            && let Some(front) = d.readahead.front()
        {
            let live_first = lane
                .spill
                .as_ref()
                .is_some_and(|sp| sp.settings.ordering == queue::Ordering::LiveFirst);
            let n = front.len();
            // Under strict ordering whatever is on disk is older than
            // anything in memory.
            if memory.is_empty() || !live_first || d.backlog_turn(n) {
                let batch = d.readahead.pop_front()?;
                d.readahead_events -= n;
                let low = d.readahead_events <= lane.capacity / 2;
                let lease = lane.books.taken(n, true);
                drop(q);
                if low && let Some(sp) = &lane.spill {
                    sp.wake_reader.notify_one();
                }
                return Some(Taken { batch, lease });
            }
        }
        let entry = memory.pop_front()?;
        let n = entry.batch.events.len();
        let lease = lane.books.taken(n, false);
        drop(q);
        lane.depth.fetch_sub(n, Ordering::Relaxed);
        lane.room.add_permits(entry.permits);
        if lane.full.load(Ordering::Relaxed) && lane.room.available_permits() > 0 {
            lane.set_full(false);
        }
        Some(Taken {
            batch: entry.batch,
            lease,
        })
    }

    /// Resolves when the lane is closing and batches the driver is still
    /// retrying should be handed back to the disk queue (persistent-queue
    /// lanes only; never for others).
    pub async fn handing_back(&self) {
        match &self.0.spill {
            Some(sp) => sp.closing.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Take back a job's events at shutdown (persistent-queue lanes): ones
    /// read from disk stay there (their acknowledgements are abandoned, so
    /// the queue does not advance past them); ones from memory are written.
    /// `lease` covers exactly the events of `batches`.
    pub fn hand_back(&self, batches: Vec<Batch>, lease: Lease) {
        let lane = &*self.0;
        let persisted = lease.persisted();
        lease.returned();
        let mut q = lane.lock();
        for b in batches {
            if persisted {
                if let Some(ack) = &b.ack {
                    ack.abandon();
                }
                if let Some(d) = q.disk.as_mut() {
                    d.requeued += b.len();
                }
            } else {
                lane.send_to_disk(&mut q, b, None);
            }
        }
    }

    /// Put batches a retiring driver took back at the front of the lane, in
    /// the order given, for the driver that replaces it (a reload). Their
    /// acknowledgements stay pending: they are not delivered yet. Events
    /// read from disk return to the read-ahead (their disk acknowledgement
    /// still advances the queue once delivered), the rest to memory, without
    /// permits: the lane may sit over capacity until they are taken again.
    /// `lease` covers exactly the events of `batches`.
    pub fn requeue(&self, batches: Vec<Batch>, lease: Lease) {
        lease.returned();
        self.0.push_front(batches);
    }
}

impl Lane {
    /// Room left in the read-ahead, in events (0 once closed).
    pub(super) fn readahead_room(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        let q = self.lock();
        q.disk
            .as_ref()
            .map_or(0, |d| self.capacity.saturating_sub(d.readahead_events))
    }

    /// Batches read back from disk, for the driver (counted on disk all
    /// along: the books do not move).
    pub(super) fn push_readahead(&self, batches: Vec<Batch>) {
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
    pub(super) fn written(&self, n: usize) {
        if let Some(d) = self.lock().disk.as_mut() {
            d.write_pending -= n.min(d.write_pending);
        }
        if let Some(sp) = &self.spill {
            sp.wake_reader.notify_one();
        }
    }
}
