//! A job: the events of one request, with the acknowledgement handle of each
//! source batch they came from, and the ways it can end. Every event that
//! leaves the lane ends in exactly one of `delivered` or `resolve(reason)`,
//! which keeps `events = sent + dropped + queued` true.

use crate::event::{Ack, Batch, Event};
use crate::lane::Lane;
use crate::metrics::DropReason;

#[derive(Debug, Default)]
pub struct Job {
    pub events: Vec<Event>,
    /// (index of the first event of a source batch, its ack), ascending.
    acks: Vec<(usize, Ack)>,
    /// The events were read back from a persistent queue (a job never mixes
    /// them with events from memory; see `Batcher::absorb`).
    pub persisted: bool,
}

impl Job {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn append(&mut self, mut batch: Batch) {
        if self.events.is_empty() {
            self.persisted = batch.persisted;
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

    /// Add one event of a source batch acknowledged by `ack` (a batch spread
    /// over several jobs: partitioned batching).
    pub fn push(&mut self, event: Event, ack: Option<&Ack>, persisted: bool) {
        if self.events.is_empty() {
            self.persisted = persisted;
        }
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

    /// The peer confirmed every event.
    pub fn delivered(self, lane: &Lane, bytes: usize) {
        let n = self.events.len() as u64;
        let m = lane.metrics();
        m.sent_events.inc_by(n);
        m.sent_bytes.inc_by(bytes as u64);
        lane.settle(self.events.len());
    }

    /// The peer took the request but refused `rejected` of its records
    /// without naming them: that many count as rejected, the rest as sent.
    /// Every acknowledgement fails (some of its events were lost), so an
    /// acknowledging source redelivers rather than loses.
    /// `sent_bytes`: the delivered records' share of the request.
    pub fn partially_rejected(self, lane: &Lane, rejected: usize, sent_bytes: u64) {
        let n = self.events.len();
        let rejected = rejected.min(n);
        let m = lane.metrics();
        m.sent_events.inc_by((n - rejected) as u64);
        m.sent_bytes.inc_by(sent_bytes);
        m.drop_events(DropReason::Rejected, rejected as u64);
        if rejected > 0 {
            for (_, ack) in &self.acks {
                ack.fail();
            }
        }
        lane.settle(n);
    }

    /// Every event is dropped for `reason`; sources waiting on them learn it
    /// failed. Except at shutdown on a persistent-queue lane: the events go
    /// back to its disk queue instead, to be delivered by the next run.
    pub fn resolve(self, lane: &Lane, reason: DropReason) {
        if self.events.is_empty() {
            return;
        }
        if reason == DropReason::Shutdown && lane.spill().is_some() {
            let (n, persisted) = (self.events.len(), self.persisted);
            lane.hand_back(self.into_batches(), persisted);
            lane.settle(n);
            return;
        }
        lane.metrics().drop_events(reason, self.events.len() as u64);
        for (_, ack) in &self.acks {
            ack.fail();
        }
        lane.settle(self.events.len());
    }

    /// A retiring driver (a reload) gives the events back to the front of
    /// the lane for its replacement; nothing is counted, acknowledgements
    /// stay pending.
    pub fn requeue(self, lane: &Lane) {
        let n = self.events.len();
        if n == 0 {
            return;
        }
        lane.requeue(self.into_batches());
        lane.settle(n);
    }

    /// Keep the events for which `keep(i)` is true, in order; the others are
    /// removed without being counted (the caller has counted them).
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut acks = Vec::new();
        let mut events = Vec::with_capacity(self.events.len());
        let old = std::mem::take(&mut self.events);
        for (i, e) in old.into_iter().enumerate() {
            if keep(i) {
                if let Some(ack) = self.ack_for(i) {
                    let same = acks.last().is_some_and(|(_, a): &(usize, Ack)| a.same(ack));
                    if !same {
                        acks.push((events.len(), ack.clone()));
                    }
                }
                events.push(e);
            }
        }
        self.events = events;
        self.acks = acks;
    }

    /// A new job with copies of the events for which `pick(i)` is true (and
    /// their acknowledgements); `self` is unchanged.
    pub fn extract(&self, mut pick: impl FnMut(usize) -> bool) -> Job {
        let mut out = Job {
            persisted: self.persisted,
            ..Job::default()
        };
        for (i, e) in self.events.iter().enumerate() {
            if pick(i) {
                if let Some(ack) = self.ack_for(i) {
                    let same = out.acks.last().is_some_and(|(_, a)| a.same(ack));
                    if !same {
                        out.acks.push((out.events.len(), ack.clone()));
                    }
                }
                out.events.push(e.clone());
            }
        }
        out
    }

    /// The events as batches again, one per acknowledgement.
    fn into_batches(self) -> Vec<Batch> {
        let persisted = self.persisted;
        let mut events = self.events;
        let mut out = Vec::with_capacity(self.acks.len() + 1);
        for (start, ack) in self.acks.into_iter().rev() {
            let tail = events.split_off(start.min(events.len()));
            out.push(Batch {
                events: tail,
                ack: Some(ack),
                persisted,
            });
        }
        if !events.is_empty() {
            out.push(Batch {
                events,
                ack: None,
                persisted,
            });
        }
        out.reverse();
        out
    }

    /// Mark the acknowledgement of event `index` as failed.
    pub fn fail_event(&self, index: usize) {
        if let Some(a) = self.ack_for(index) {
            a.fail();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AckStatus;
    use bytes::Bytes;

    fn batch(n: usize, ack: Option<Ack>) -> Batch {
        Batch::with_ack(
            (0..n)
                .map(|_| Event::json(Bytes::from_static(b"{}")))
                .collect(),
            ack,
        )
    }

    #[tokio::test]
    async fn retain_keeps_ack_ranges() {
        let (a, ra) = Ack::new();
        let (b, rb) = Ack::new();
        let mut job = Job::default();
        job.append(batch(3, Some(a)));
        job.append(batch(2, Some(b)));
        // Fail an event of the second batch, keep only events 1 and 4.
        job.fail_event(3);
        job.retain(|i| i == 1 || i == 4);
        assert_eq!(job.len(), 2);
        assert_eq!(job.acks.len(), 2);
        assert_eq!(job.acks[1].0, 1);
        drop(job);
        assert_eq!(ra.await.unwrap(), AckStatus::Delivered);
        assert_eq!(rb.await.unwrap(), AckStatus::Failed);
    }

    #[test]
    fn into_batches_splits_at_acks() {
        let (a, _ra) = Ack::new();
        let (b, _rb) = Ack::new();
        let mut job = Job::default();
        job.append(batch(2, None));
        job.append(batch(3, Some(a.clone())));
        job.append(batch(1, Some(b.clone())));
        let out = job.into_batches();
        let shape: Vec<(usize, bool)> = out.iter().map(|b| (b.len(), b.ack.is_some())).collect();
        assert_eq!(shape, vec![(2, false), (3, true), (1, true)]);
        assert!(out[1].ack.as_ref().unwrap().same(&a));
        assert!(out[2].ack.as_ref().unwrap().same(&b));
    }
}
