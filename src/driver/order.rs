//! Order: one sender's events (or one key's, where the peer orders by key)
//! reach the peer in the order they entered the lane, however many
//! requests are in flight.
//!
//! Each job names the order shards it holds as a 64-bit mask: the shards
//! of its batches' senders (`shard_bit`), or of the keys its destination
//! encoded (an SQS message group, a Kinesis partition key, ...). Jobs take
//! a ticket in lane order when the driver spawns them (`Sequencer::enter`);
//! after encoding, a job sends only once no earlier unfinished job shares a
//! shard with it (`Turn::wait`). Jobs of other shards go on in parallel, and
//! encoding, the CPU-heavy part, never waits. A job takes its concurrency
//! slot only once its turn has come, so one busy sender's queued requests
//! never keep another sender's from the slots (and no job holding a slot
//! ever waits on one without). Keeping senders in order, as many jobs
//! again as there are slots may wait, holding their events like in-flight
//! ones; otherwise one job per slot, and with one slot one job at a time,
//! in lane order, as before.
//!
//! A retiring driver gives jobs back to the front of the lane, each in
//! front of the last: a job gives back only after every later job did
//! (`Turn::after_later`), so the lane ends up in the original order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use tokio::sync::Notify;

use crate::event::Sender;

/// `ordering:` — what a destination keeps in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Per key where the destination has one (`message_group_id`,
    /// `partition_key_field`, `ordering_key_field`, Kafka's `key_field`);
    /// otherwise per sender (a TCP or HTTP client connection, a file, a
    /// UDP or Kafka source) on stream destinations (`tcp`, `udp`, `file`,
    /// `console`), and nothing on request/response ones.
    #[default]
    Auto,
    /// Per sender, even where the destination has keys.
    Sender,
    /// None: every request in flight independently (fastest for one
    /// sender over a slow peer; lines of one sender may arrive reordered).
    None,
}

/// `ordering:` resolved against the destination's default: what the
/// driver keeps in order, one value read once per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Every request independent (`none`).
    Nothing,
    /// Each sender's events (`sender`).
    Senders,
    /// Each key's where a request has keys, else nothing (`auto` on a
    /// request/response destination).
    Keys,
    /// Each key's where a request has keys, else each sender's (`auto` on
    /// a stream destination).
    KeysElseSenders,
}

impl Kept {
    /// `ordering`, where `auto` keeps senders' order when `senders_by_default`.
    pub fn resolve(ordering: Ordering, senders_by_default: bool) -> Self {
        match ordering {
            Ordering::None => Kept::Nothing,
            Ordering::Sender => Kept::Senders,
            Ordering::Auto if senders_by_default => Kept::KeysElseSenders,
            Ordering::Auto => Kept::Keys,
        }
    }

    /// The order shards a job waits on: its request's keys or its senders.
    pub fn mask(self, keys: Option<u64>, senders: u64) -> u64 {
        match self {
            Kept::Nothing => 0,
            Kept::Senders => senders,
            Kept::Keys => keys.unwrap_or(0),
            Kept::KeysElseSenders => keys.unwrap_or(senders),
        }
    }

    /// Senders can be kept in order (so they get jobs of their own).
    pub fn senders(self) -> bool {
        matches!(self, Kept::Senders | Kept::KeysElseSenders)
    }
}

/// Shards a mask holds: two senders share one at most as often as two of
/// 64 hashes collide, and then only keep each other's order too.
pub const SHARDS: u32 = 64;

/// Which shard `hash` falls in (the top bits: the low bits of a
/// multiplicative mix are the weakest).
pub fn shard(hash: u64) -> u32 {
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.ilog2())) as u32
}

/// The mask of a batch's sender: 0 for an unknown one (no order kept).
pub fn shard_bit(sender: Sender) -> u64 {
    if sender.is_known() {
        1 << shard(sender.0)
    } else {
        0
    }
}

/// The mask of one key's text.
pub fn key_bit(key: &[u8]) -> u64 {
    1 << shard(Sender::of("key", key).0)
}

/// The shard of a mask holding exactly one: the stream a connection-based
/// destination keeps it on.
pub(crate) fn single_shard(mask: u64) -> Option<u32> {
    (mask.count_ones() == 1).then(|| mask.trailing_zeros())
}

#[derive(Default)]
pub(crate) struct Sequencer {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Unfinished jobs (and finished ones not yet at the front), by ticket.
    jobs: VecDeque<Entry>,
}

struct Entry {
    ticket: u64,
    /// `None` until the job has encoded and knows its shards.
    mask: Option<u64>,
    done: bool,
}

impl Sequencer {
    /// A ticket for the next job in lane order.
    pub fn enter(self: &Arc<Self>) -> Turn {
        let mut s = self.lock();
        let ticket = s.next;
        s.next += 1;
        s.jobs.push_back(Entry {
            ticket,
            mask: None,
            done: false,
        });
        Turn {
            ticket,
            seq: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement: a panic elsewhere
        // leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until `ready` holds for the state.
    async fn until(&self, mut ready: impl FnMut(&State) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if ready(&self.lock()) {
                return;
            }
            changed.await;
        }
    }
}

/// A job's place in lane order; dropping it (the job ended in any way,
/// a panic included) lets the jobs waiting on it go.
pub(crate) struct Turn {
    ticket: u64,
    seq: Arc<Sequencer>,
}

impl Turn {
    /// Record the job's shards; whether it may send now (`wait` says when
    /// it may otherwise).
    pub fn set(&self, mask: u64) -> bool {
        let ready = {
            let mut s = self.seq.lock();
            if let Some(e) = s.jobs.iter_mut().find(|e| e.ticket == self.ticket) {
                e.mask = Some(mask);
            }
            Self::ready(&s, self.ticket, mask)
        };
        self.seq.changed.notify_waiters();
        ready
    }

    /// No earlier unfinished job shares a shard with `mask` (or has yet to
    /// say which it holds).
    fn ready(s: &State, ticket: u64, mask: u64) -> bool {
        mask == 0
            || s.jobs
                .iter()
                .take_while(|e| e.ticket < ticket)
                .filter(|e| !e.done)
                .all(|e| e.mask.is_some_and(|m| m & mask == 0))
    }

    /// Wait until the job whose shards `set` recorded may send.
    pub async fn wait(&self, mask: u64) {
        let ticket = self.ticket;
        self.seq.until(|s| Self::ready(s, ticket, mask)).await;
    }

    /// Wait until every later job has ended: then giving this one back puts
    /// it in front of them.
    pub async fn after_later(&self) {
        let ticket = self.ticket;
        self.seq
            .until(|s| s.jobs.iter().filter(|e| e.ticket > ticket).all(|e| e.done))
            .await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        {
            let mut s = self.seq.lock();
            if let Some(e) = s.jobs.iter_mut().find(|e| e.ticket == self.ticket) {
                e.done = true;
            }
            while s.jobs.front().is_some_and(|e| e.done) {
                s.jobs.pop_front();
            }
        }
        self.seq.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_shard_waits_for_its_elders_and_others_do_not() {
        let seq = Arc::new(Sequencer::default());
        let a1 = seq.enter();
        let b1 = seq.enter();
        let a2 = seq.enter();
        assert!(a1.set(1));
        assert!(b1.set(2));
        // a2 shares shard 1 with a1, still running.
        assert!(!a2.set(1));
        let waiting = tokio::time::timeout(Duration::from_secs(1), a2.wait(1)).await;
        assert!(waiting.is_err());
        drop(a1);
        tokio::time::timeout(Duration::from_secs(1), a2.wait(1))
            .await
            .unwrap();
        drop(b1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_elder_that_has_not_encoded_holds_back_every_ordered_job() {
        let seq = Arc::new(Sequencer::default());
        let first = seq.enter();
        let second = seq.enter();
        // The first's shards are unknown: it may share one.
        assert!(!second.set(4));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), second.wait(4))
                .await
                .is_err()
        );
        assert!(first.set(1));
        tokio::time::timeout(Duration::from_secs(1), second.wait(4))
            .await
            .unwrap();
        // An unordered job never waits.
        let third = seq.enter();
        assert!(third.set(0));
    }

    #[tokio::test(start_paused = true)]
    async fn giving_back_waits_for_later_jobs() {
        let seq = Arc::new(Sequencer::default());
        let first = seq.enter();
        let second = seq.enter();
        assert!(
            tokio::time::timeout(Duration::from_secs(1), first.after_later())
                .await
                .is_err()
        );
        second.after_later().await;
        drop(second);
        first.after_later().await;
    }

    #[test]
    fn shards_spread_and_unknown_senders_hold_none() {
        assert_eq!(shard_bit(Sender::NONE), 0);
        let used: std::collections::HashSet<u32> = (0..1000u32)
            .map(|i| shard(Sender::of("tcp", i).0))
            .collect();
        assert_eq!(used.len(), SHARDS as usize);
        assert_eq!(single_shard(1 << 5), Some(5));
        assert_eq!(single_shard(0b11), None);
        assert_eq!(single_shard(0), None);
    }
}
