//! Which offsets may be committed: batches' acknowledgements, awaited in
//! read order. An offset is stored (and so committed by librdkafka's next
//! commit) only once every batch read before it is done with, so a commit
//! never skips an event a destination still holds.
//!
//! Done with: delivered, written to a persistent queue, or refused and
//! counted (rejected, dropped by policy, unmatched). At shutdown a failed
//! batch is different: it may be one lost at the deadline, so storing stops
//! there and the next run reads it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Client, Shared};
use crate::event::AckStatus;

/// One batch's offsets: the last read of each partition.
pub struct Pending {
    pub generation: u64,
    last: Vec<(String, i32, i64)>,
    done: Option<oneshot::Receiver<AckStatus>>,
}

impl Pending {
    pub fn new(generation: u64) -> Self {
        Pending {
            generation,
            last: Vec::new(),
            done: None,
        }
    }

    /// A message was read: batches hold a few partitions, so a short scan.
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .last
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(e) => e.2 = e.2.max(offset),
            None => self.last.push((topic.to_string(), partition, offset)),
        }
    }

    /// Its events were routed; `done` resolves when they are done with.
    pub fn waiting(mut self, done: oneshot::Receiver<AckStatus>) -> Self {
        self.done = Some(done);
        self
    }
}

pub struct Offsets {
    consumer: Arc<Client>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    /// Stored in the current generation: the final commit.
    stored: BTreeMap<(String, i32), i64>,
    stored_generation: u64,
}

impl Offsets {
    pub fn new(consumer: Arc<Client>, shared: Arc<Shared>, shutdown: CancellationToken) -> Self {
        Offsets {
            consumer,
            shared,
            shutdown,
            stored: BTreeMap::new(),
            stored_generation: 0,
        }
    }

    /// Store offsets as batches are done with until the reader stops and
    /// every batch has resolved; then commit synchronously.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(p) = rx.recv().await {
            let status = match p.done {
                Some(done) => done.await.unwrap_or(AckStatus::Failed),
                None => AckStatus::Delivered,
            };
            if status == AckStatus::Failed && self.shutdown.is_cancelled() {
                tracing::info!("a batch was not delivered before shutdown: it will be read again");
                break;
            }
            self.store(p.generation, &p.last);
        }
        // A synchronous commit waits for the broker: off the runtime.
        let _ = tokio::task::spawn_blocking(move || self.commit()).await;
    }

    fn store(&mut self, generation: u64, last: &[(String, i32, i64)]) {
        let current = self.shared.generation.load(Ordering::Acquire);
        if generation != current {
            // Read before a rebalance: its partitions were handed over with
            // what had been committed; the owner reads the rest again.
            return;
        }
        if self.stored_generation != current {
            self.stored.clear();
            self.stored_generation = current;
        }
        for (topic, partition, offset) in last {
            // librdkafka stores `offset + 1` (the next to read) itself.
            match self.consumer.store_offset(topic, *partition, *offset) {
                Ok(()) => {
                    self.stored.insert((topic.clone(), *partition), offset + 1);
                }
                Err(e) => tracing::debug!(%topic, partition, error = %e, "offset not stored"),
            }
        }
    }

    fn commit(&self) {
        if self.stored.is_empty()
            || self.stored_generation != self.shared.generation.load(Ordering::Acquire)
        {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.stored {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(%topic, partition, error = %e, "cannot commit offset");
            }
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tracing::info!(partitions = tpl.count(), "offsets committed"),
            Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
        }
    }
}
