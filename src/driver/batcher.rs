//! Turns the lane's batches (as sources produced them) into request-sized
//! jobs: at most `max_events` events and `max_bytes` bytes, flushed
//! `batch_timeout` after the first event arrived (`flush: interval`), only
//! when full (`lazy`), or as soon as nothing more is waiting (`immediate`).
//! With `partition_by` or `time_key`, `partitions.rs` batches instead.
//!
//! All partial state lives in the struct, not in the future, so when a hard
//! stop cancels `next()` nothing is lost without a count: `abandon` counts
//! whatever is held.

use std::time::Duration;

use tokio::time::Instant;

use super::job::Job;
use super::partitions::Partitioned;
use super::settings::{DeliverySettings, Flush};
use crate::event::{Ack, Batch, Event, Sender};
use crate::lane::{Consumer, Lease, Taken};
use crate::metrics::DropReason;

/// Most events a batcher holds back: half the lane. Held events still
/// count against the lane's capacity, so a batch waiting to fill beyond
/// that (a `lazy` flush, many partitions) would wait on events its own
/// lane stops sources from sending.
pub(crate) fn hold_limit(lane: &Consumer) -> usize {
    (lane.capacity() / 2).max(1)
}

/// The driver's batcher: plain, or partitioned by key.
pub(crate) enum Batching {
    Plain(Batcher),
    Partitioned(Partitioned),
}

impl Batching {
    pub fn new(lane: Consumer, s: &DeliverySettings) -> Self {
        match &s.partition {
            Some(keys) => Batching::Partitioned(Partitioned::new(
                lane,
                s.max_events,
                s.max_bytes,
                s.batch_timeout,
                s.flush,
                keys.clone(),
            )),
            None => Batching::Plain(
                Batcher::new(lane, s.max_events, s.max_bytes, s.batch_timeout)
                    .flush(s.flush)
                    .by_sender(s.by_sender()),
            ),
        }
    }

    pub async fn next(&mut self) -> Option<Job> {
        match self {
            Batching::Plain(b) => b.next().await,
            Batching::Partitioned(b) => b.next().await,
        }
    }

    pub fn requeue(&mut self) {
        match self {
            Batching::Plain(b) => b.requeue(),
            Batching::Partitioned(b) => b.requeue(),
        }
    }

    pub fn abandon(&mut self, reason: DropReason) {
        match self {
            Batching::Plain(b) => b.abandon(reason),
            Batching::Partitioned(b) => b.abandon(reason),
        }
    }
}

pub(crate) struct Batcher {
    lane: Consumer,
    max_events: usize,
    max_bytes: usize,
    timeout: Duration,
    flush: Flush,
    /// Keep each order shard's events in jobs of their own (`ordering`
    /// other than `none`), so that one sender's jobs wait only for each
    /// other, never for another sender's.
    by_sender: bool,
    /// Jobs filling up, one per order shard (one in all without ordering),
    /// oldest first.
    open: Vec<Pending>,
    carry: Option<Carry>,
}

struct Pending {
    /// The order shard of its batches' sender; `None`: unknown senders, or
    /// no ordering.
    shard: Option<u32>,
    job: Job,
    bytes: usize,
    deadline: Option<Instant>,
}

/// The rest of a batch that did not fit the last job. Its events are taken
/// from the front of the vector's iterator, so a huge batch cut into many
/// jobs is never copied (a `split_off` per job would copy the rest each
/// time: quadratic in the batch).
struct Carry {
    events: std::vec::IntoIter<Event>,
    ack: Option<Ack>,
    persisted: bool,
    sender: Sender,
    lease: Lease,
}

impl Carry {
    fn len(&self) -> usize {
        self.events.len()
    }

    /// The first `k` events, as a taken batch of their own.
    fn take(&mut self, k: usize) -> Taken {
        let events: Vec<Event> = self.events.by_ref().take(k).collect();
        let lease = self.lease.split(events.len());
        Taken {
            batch: Batch {
                events,
                ack: self.ack.clone(),
                persisted: self.persisted,
                sender: self.sender,
            },
            lease,
        }
    }

    fn into_taken(self) -> Taken {
        Taken {
            batch: Batch {
                events: self.events.collect(),
                ack: self.ack,
                persisted: self.persisted,
                sender: self.sender,
            },
            lease: self.lease,
        }
    }
}

impl Batcher {
    pub fn new(lane: Consumer, max_events: usize, max_bytes: usize, timeout: Duration) -> Self {
        Batcher {
            lane,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            timeout,
            flush: Flush::Interval,
            by_sender: false,
            open: Vec::new(),
            carry: None,
        }
    }

    pub fn flush(mut self, flush: Flush) -> Self {
        self.flush = flush;
        self
    }

    pub fn by_sender(mut self, by_sender: bool) -> Self {
        self.by_sender = by_sender;
        self
    }

    /// The next job, or `None` once the lane is closed and everything is handed out.
    pub async fn next(&mut self) -> Option<Job> {
        loop {
            if let Some(c) = self.carry.take() {
                if let Some(j) = self.absorb_carry(c) {
                    return Some(j);
                }
                continue;
            }
            if let Some(t) = self.lane.try_pop() {
                if let Some(j) = self.absorb(t) {
                    return Some(j);
                }
                continue;
            }
            if self.open.is_empty() {
                let t = self.lane.pop().await?;
                if let Some(j) = self.absorb(t) {
                    return Some(j);
                }
                continue;
            }
            // The oldest deadline goes first; lazy jobs have none: only a
            // full job or the lane's end sends them.
            let due = self
                .open
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.deadline.map(|d| (d, i)))
                .min();
            let Some((deadline, i)) = due else {
                match self.lane.pop().await {
                    Some(t) => {
                        if let Some(j) = self.absorb(t) {
                            return Some(j);
                        }
                        continue;
                    }
                    None => return Some(self.take(0)),
                }
            };
            tokio::select! {
                t = self.lane.pop() => match t {
                    Some(t) => {
                        if let Some(j) = self.absorb(t) {
                            return Some(j);
                        }
                    }
                    None => return Some(self.take(0)),
                },
                _ = tokio::time::sleep_until(deadline) => return Some(self.take(i)),
            }
        }
    }

    fn absorb(&mut self, t: Taken) -> Option<Job> {
        let Taken { batch, lease } = t;
        self.absorb_carry(Carry {
            events: batch.events.into_iter(),
            ack: batch.ack,
            persisted: batch.persisted,
            sender: batch.sender,
            lease,
        })
    }

    /// Add what fits of `c` to its shard's job; the rest waits in `carry`.
    /// A job that is full, or the largest when too much is held.
    fn absorb_carry(&mut self, mut c: Carry) -> Option<Job> {
        if c.len() == 0 {
            return None;
        }
        let shard =
            (self.by_sender && c.sender.is_known()).then(|| super::order::shard(c.sender.0));
        let i = match self.open.iter().position(|p| p.shard == shard) {
            Some(i) => i,
            None => {
                self.open.push(Pending {
                    shard,
                    job: Job::default(),
                    bytes: 0,
                    deadline: None,
                });
                self.open.len() - 1
            }
        };
        let p = &mut self.open[i];
        if !p.job.is_empty() && c.persisted != p.job.persisted {
            // Events from disk and from memory end differently at shutdown
            // (see `Job::resolve`): never in one job.
            self.carry = Some(c);
            return Some(self.take(i));
        }
        if p.job.is_empty() {
            p.deadline = match self.flush {
                Flush::Interval => Some(Instant::now() + self.timeout),
                Flush::Immediate => Some(Instant::now()),
                Flush::Lazy => None,
            };
        }
        let room = self.max_events - p.job.len();
        let mut bytes = p.bytes;
        let mut take = 0;
        for e in c.events.as_slice().iter().take(room) {
            let size = e.raw.len() + 1;
            // A single event larger than the limit still goes, alone.
            if bytes + size > self.max_bytes && (take > 0 || !p.job.is_empty()) {
                break;
            }
            bytes += size;
            take += 1;
        }
        p.bytes = bytes;
        if take < c.len() {
            let head = c.take(take);
            p.job.append(head);
            self.carry = Some(c);
            return Some(self.take(i));
        }
        p.job.append(c.into_taken());
        if p.job.len() >= self.max_events || p.bytes >= self.max_bytes {
            return Some(self.take(i));
        }
        let held: usize = self.open.iter().map(|p| p.job.len()).sum();
        if held >= hold_limit(&self.lane) {
            let largest = (0..self.open.len()).max_by_key(|&i| self.open[i].job.len())?;
            return Some(self.take(largest));
        }
        None
    }

    fn take(&mut self, i: usize) -> Job {
        if i < self.open.len() {
            self.open.remove(i).job
        } else {
            Job::default()
        }
    }

    /// Give what is held here back to the front of the lane (a retiring
    /// driver); unlike `abandon`, the lane's own contents stay where they are.
    pub fn requeue(&mut self) {
        // Newest first (each requeue lands in front of the previous one):
        // the carry, then the open jobs from the last opened.
        if let Some(c) = self.carry.take() {
            Job::of(c.into_taken()).requeue(&self.lane);
        }
        while let Some(p) = self.open.pop() {
            p.job.requeue(&self.lane);
        }
    }

    /// Count everything held here and still in the lane as dropped for
    /// `reason`, failing their acknowledgements. Used after a hard stop.
    pub fn abandon(&mut self, reason: DropReason) {
        let mut jobs: Vec<Job> = self.open.drain(..).map(|p| p.job).collect();
        if let Some(c) = self.carry.take() {
            jobs.push(Job::of(c.into_taken()));
        }
        abandon_with_lane(&self.lane, jobs, reason);
    }
}

/// Count `held` and everything still in the lane as dropped for `reason`,
/// failing their acknowledgements. The lane is emptied first: resolving at
/// shutdown may hand events back to it (a persistent queue).
pub(crate) fn abandon_with_lane(lane: &Consumer, mut held: Vec<Job>, reason: DropReason) {
    while let Some(t) = lane.try_pop() {
        held.push(Job::of(t));
    }
    for j in held {
        j.resolve(lane, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::lane::{Lane, LanePolicy};
    use crate::metrics::Metrics;
    use bytes::Bytes;
    use std::sync::Arc;

    fn lane() -> Arc<Lane> {
        Arc::new(Lane::new("d", LanePolicy::Block, 1000, &Metrics::new()))
    }

    async fn push(lane: &Arc<Lane>, n: usize, size: usize) {
        let events = (0..n)
            .map(|_| Event::json(Bytes::from(vec![b'x'; size])))
            .collect();
        let p = lane.producer();
        let r = p.reserve(n).await.unwrap();
        p.commit(Batch::new(events), r);
    }

    #[tokio::test(start_paused = true)]
    async fn splits_by_count_and_bytes() {
        let lane = lane();
        push(&lane, 25, 9).await;
        let mut b = Batcher::new(lane.consumer(), 10, 1000, Duration::from_secs(1));
        assert_eq!(b.next().await.unwrap().len(), 10);
        assert_eq!(b.next().await.unwrap().len(), 10);
        // 5 left: waits for the timeout, then flushes.
        let t = Instant::now();
        assert_eq!(b.next().await.unwrap().len(), 5);
        assert_eq!(t.elapsed(), Duration::from_secs(1));

        push(&lane, 7, 99).await;
        let mut b = Batcher::new(lane.consumer(), 100, 250, Duration::from_secs(1));
        assert_eq!(b.next().await.unwrap().len(), 2);
        assert_eq!(b.next().await.unwrap().len(), 2);
        assert_eq!(b.next().await.unwrap().len(), 2);
        lane.close();
        assert_eq!(b.next().await.unwrap().len(), 1);
        assert!(b.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversized_event_goes_alone() {
        let lane = lane();
        push(&lane, 1, 10).await;
        push(&lane, 1, 500).await;
        push(&lane, 1, 10).await;
        lane.close();
        let mut b = Batcher::new(lane.consumer(), 100, 100, Duration::from_secs(1));
        let sizes: Vec<usize> = [
            b.next().await.unwrap(),
            b.next().await.unwrap(),
            b.next().await.unwrap(),
        ]
        .iter()
        .map(|j| j.len())
        .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn abandon_counts_everything() {
        let lane = lane();
        push(&lane, 30, 5).await;
        push(&lane, 30, 5).await;
        let mut b = Batcher::new(lane.consumer(), 20, 1000, Duration::from_secs(1));
        let first = b.next().await.unwrap();
        assert_eq!(first.len(), 20);
        first.resolve(&lane.consumer(), DropReason::Rejected);
        // Partially consumed: 10 carried, 30 in the lane.
        b.abandon(DropReason::Shutdown);
        assert_eq!(lane.books().dropped(DropReason::Shutdown), 40);
        assert_eq!(lane.pending(), 0);
    }
}
