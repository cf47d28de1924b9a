//! A job: the events of one request, with the acknowledgement handle of each
//! source batch they came from, the lease on them from the lane, and the
//! ways it can end. Every event of a job ends in exactly one of delivered,
//! dropped for a reason, or given back to the lane; the lease moves the
//! lane's books as it does, so nothing here counts by hand. A job dropped
//! with events left (a panic) sheds their acknowledgements, and its lease
//! counts them as `internal_error`.

use crate::event::{Ack, Batch, Event, Sender};
use crate::lane::{Consumer, Lease, Taken};
use crate::metrics::DropReason;

#[derive(Debug, Default)]
pub struct Job {
    pub events: Vec<Event>,
    /// (index of the first event of a source batch, its ack), ascending.
    acks: Vec<(usize, Ack)>,
    /// The events were read back from a persistent queue (a job never mixes
    /// them with events from memory; see `Batcher::absorb`).
    pub persisted: bool,
    /// Covers exactly `events` (`None` while empty).
    lease: Option<Lease>,
    /// The order shards (`order::shard`) of its events' known senders: the
    /// driver keeps jobs sharing one in lane order.
    pub senders: u64,
    /// Its first batch's sender, to give back with it.
    sender: Sender,
}

impl Job {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// A job of one taken batch.
    pub fn of(taken: Taken) -> Job {
        let mut j = Job::default();
        j.append(taken);
        j
    }

    pub fn append(&mut self, taken: Taken) {
        let Taken { mut batch, lease } = taken;
        if self.events.is_empty() {
            self.persisted = batch.persisted;
            self.sender = batch.sender;
        }
        self.senders |= super::order::shard_bit(batch.sender);
        match &mut self.lease {
            Some(l) => l.join(lease),
            None => self.lease = Some(lease),
        }
        if let Some(ack) = batch.ack.take() {
            let same = self.acks.last().is_some_and(|(_, a)| a.same(&ack));
            if !same {
                self.acks.push((self.events.len(), ack));
            }
        }
        if self.events.is_empty() {
            self.events = batch.events;
        } else {
            self.events.append(&mut batch.events);
        }
    }

    /// Add one event of a source batch acknowledged by `ack`, with its
    /// share of `from` (a batch spread over several jobs: partitioned
    /// batching).
    pub fn push(&mut self, event: Event, ack: Option<&Ack>, sender: Sender, from: &mut Lease) {
        if self.events.is_empty() {
            self.persisted = from.persisted();
            self.sender = sender;
        }
        self.senders |= super::order::shard_bit(sender);
        from.give(1, &mut self.lease);
        if let Some(ack) = ack
            && !self.acks.last().is_some_and(|(_, a)| a.same(ack))
        {
            self.acks.push((self.events.len(), ack.clone()));
        }
        self.events.push(event);
    }

    fn ack_for(&self, index: usize) -> Option<&Ack> {
        let pos = self.acks.partition_point(|(start, _)| *start <= index);
        pos.checked_sub(1).map(|p| &self.acks[p].1)
    }

    /// Empty the job: its events, acks and lease, for a method that ends it.
    fn take(&mut self) -> (Vec<Event>, Vec<(usize, Ack)>, Option<Lease>) {
        (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.acks),
            self.lease.take(),
        )
    }

    /// The peer confirmed every event; `bytes` went on the wire.
    pub fn delivered(mut self, bytes: usize) {
        let (events, _acks, lease) = self.take();
        if let Some(mut l) = lease {
            l.delivered(events.len(), bytes as u64);
        }
    }

    /// The peer took the request but refused `rejected` of its records
    /// without naming them: that many count as rejected, the rest as sent.
    /// Every acknowledgement fails (some of its events were lost), so an
    /// acknowledging source redelivers rather than loses.
    /// `sent_bytes`: the delivered records' share of the request.
    pub fn partially_rejected(mut self, rejected: usize, sent_bytes: u64) {
        let (events, acks, lease) = self.take();
        let n = events.len();
        let rejected = rejected.min(n);
        if rejected > 0 {
            for (_, ack) in &acks {
                ack.fail();
            }
        }
        if let Some(mut l) = lease {
            l.delivered(n - rejected, sent_bytes);
            l.dropped(rejected, DropReason::Rejected);
        }
    }

    /// Every event is dropped for `reason`; sources waiting on them learn
    /// it (for good, or to send again when the reason is a lack of room or
    /// the shutdown). Except at shutdown on a persistent-queue lane: the
    /// events go back to its disk queue instead, to be delivered by the
    /// next run.
    pub fn resolve(mut self, lane: &Consumer, reason: DropReason) {
        if self.events.is_empty() {
            return;
        }
        if reason == DropReason::Shutdown && lane.is_persistent() {
            let batches = self.into_batches();
            if let Some(l) = batches.1 {
                lane.hand_back(batches.0, l);
            }
            return;
        }
        let (events, acks, lease) = self.take();
        for (_, ack) in &acks {
            fail_ack(ack, reason);
        }
        if let Some(mut l) = lease {
            l.dropped(events.len(), reason);
        }
    }

    /// A retiring driver (a reload) gives the events back to the front of
    /// the lane for its replacement; acknowledgements stay pending.
    pub fn requeue(self, lane: &Consumer) {
        if self.events.is_empty() {
            return;
        }
        let (batches, lease) = self.into_batches();
        if let Some(l) = lease {
            lane.requeue(batches, l);
        }
    }

    /// Drop each event at its index for its reason, failing its
    /// acknowledgement; the rest stay, in order.
    pub fn drop_each(&mut self, dropped: &[(usize, DropReason)]) {
        if dropped.is_empty() {
            return;
        }
        let mut sorted = dropped.to_vec();
        sorted.sort_by_key(|(i, _)| *i);
        sorted.dedup_by_key(|(i, _)| *i);
        let mut next = sorted.iter().peekable();
        let mut reasons = Vec::with_capacity(sorted.len());
        let mut gone = self.split_off_where(|i| match next.peek() {
            Some((j, r)) if *j == i => {
                reasons.push(*r);
                next.next();
                true
            }
            _ => false,
        });
        for (k, reason) in reasons.iter().enumerate() {
            if let Some(ack) = gone.ack_for(k) {
                fail_ack(ack, *reason);
            }
        }
        let (_, _, lease) = gone.take();
        if let Some(mut l) = lease {
            let mut per = [0usize; DropReason::ALL.len()];
            for r in reasons {
                per[r as usize] += 1;
            }
            for (r, n) in DropReason::ALL.iter().zip(per) {
                l.dropped(n, *r);
            }
        }
    }

    /// Move the events for which `pick(i)` is true, in order, with their
    /// acknowledgements and share of the lease, into a job of their own.
    pub fn split_off_where(&mut self, mut pick: impl FnMut(usize) -> bool) -> Job {
        let mut out = Job {
            persisted: self.persisted,
            events: Vec::new(),
            acks: Vec::new(),
            lease: None,
            senders: self.senders,
            sender: self.sender,
        };
        let mut acks = Vec::new();
        let mut kept = Vec::with_capacity(self.events.len());
        let old = std::mem::take(&mut self.events);
        for (i, e) in old.into_iter().enumerate() {
            let (events, acks_of) = if pick(i) {
                (&mut out.events, &mut out.acks)
            } else {
                (&mut kept, &mut acks)
            };
            if let Some(ack) = self.ack_for(i) {
                let same = acks_of
                    .last()
                    .is_some_and(|(_, a): &(usize, Ack)| a.same(ack));
                if !same {
                    acks_of.push((events.len(), ack.clone()));
                }
            }
            events.push(e);
        }
        self.events = kept;
        self.acks = acks;
        if let Some(l) = &mut self.lease
            && !out.events.is_empty()
        {
            out.lease = Some(l.split(out.events.len()));
        }
        out
    }

    /// The events as batches again, one per acknowledgement, and the lease.
    fn into_batches(mut self) -> (Vec<Batch>, Option<Lease>) {
        let (persisted, sender) = (self.persisted, self.sender);
        let (mut events, acks, lease) = self.take();
        let mut out = Vec::with_capacity(acks.len() + 1);
        for (start, ack) in acks.into_iter().rev() {
            let tail = events.split_off(start.min(events.len()));
            out.push(Batch {
                events: tail,
                ack: Some(ack),
                persisted,
                sender,
            });
        }
        if !events.is_empty() {
            out.push(Batch {
                events,
                ack: None,
                persisted,
                sender,
            });
        }
        out.reverse();
        (out, lease)
    }
}

/// How an acknowledgement learns that its events were dropped for `reason`:
/// dropped for lack of room or at shutdown, it is told to send again;
/// refused for good (rejected, oversize, ...), it fails.
fn fail_ack(ack: &Ack, reason: DropReason) {
    match reason {
        DropReason::Backpressure
        | DropReason::QueueFull
        | DropReason::Shutdown
        | DropReason::InternalError => ack.shed(),
        _ => ack.fail(),
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Ended without a resolution: a panic in the delivery loop, say.
        // The lease counts the events; their senders must send again.
        if !self.events.is_empty() {
            for (_, ack) in &self.acks {
                ack.shed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AckStatus;
    use crate::lane::{Lane, LanePolicy};
    use crate::metrics::Metrics;
    use bytes::Bytes;
    use std::sync::Arc;

    fn lane() -> Arc<Lane> {
        Arc::new(Lane::new("d", LanePolicy::Block, 1000, &Metrics::new()))
    }

    async fn taken(lane: &Arc<Lane>, n: usize, ack: Option<Ack>) -> Taken {
        let events = (0..n)
            .map(|_| Event::json(Bytes::from_static(b"{}")))
            .collect();
        let p = lane.producer();
        let r = p.reserve(n).await.unwrap();
        p.commit(Batch::with_ack(events, ack), r);
        lane.consumer().try_pop().unwrap()
    }

    #[tokio::test]
    async fn split_keeps_ack_ranges_and_books() {
        let lane = lane();
        let (a, ra) = Ack::new();
        let (b, rb) = Ack::new();
        let mut job = Job::default();
        job.append(taken(&lane, 3, Some(a)).await);
        job.append(taken(&lane, 2, Some(b)).await);
        // Reject event 3 (of the second batch), deliver 1 and 4.
        job.split_off_where(|i| i == 3)
            .resolve(&lane.consumer(), DropReason::Rejected);
        let delivered = job.split_off_where(|i| i == 1 || i == 3);
        assert_eq!(delivered.len(), 2);
        assert_eq!(delivered.acks.len(), 2);
        assert_eq!(delivered.acks[1].0, 1);
        delivered.delivered(10);
        // The rest (0, 2) is dropped for lack of room: told to send again.
        job.resolve(&lane.consumer(), DropReason::Backpressure);
        assert_eq!(ra.await.unwrap(), AckStatus::Shed);
        assert_eq!(rb.await.unwrap(), AckStatus::Failed);
        let c = lane.books().counts();
        assert_eq!((c.events, c.sent, c.dropped, c.in_flight), (5, 2, 3, 0));
    }

    #[tokio::test]
    async fn into_batches_splits_at_acks() {
        let lane = lane();
        let (a, _ra) = Ack::new();
        let (b, _rb) = Ack::new();
        let mut job = Job::default();
        job.append(taken(&lane, 2, None).await);
        job.append(taken(&lane, 3, Some(a.clone())).await);
        job.append(taken(&lane, 1, Some(b.clone())).await);
        let (out, lease) = job.into_batches();
        let shape: Vec<(usize, bool)> = out.iter().map(|b| (b.len(), b.ack.is_some())).collect();
        assert_eq!(shape, vec![(2, false), (3, true), (1, true)]);
        assert!(out[1].ack.as_ref().unwrap().same(&a));
        assert!(out[2].ack.as_ref().unwrap().same(&b));
        lane.consumer().requeue(out, lease.unwrap());
        assert_eq!(lane.depth(), 6);
        assert_eq!(lane.books().counts().in_flight, 0);
    }

    #[tokio::test]
    async fn a_job_dropped_unresolved_is_counted_and_sheds_its_acks() {
        let lane = lane();
        let (a, ra) = Ack::new();
        let job = Job::of(taken(&lane, 4, Some(a)).await);
        drop(job);
        assert_eq!(ra.await.unwrap(), AckStatus::Shed);
        assert_eq!(lane.books().dropped(DropReason::InternalError), 4);
        assert!(lane.books().counts().balanced());
    }
}
