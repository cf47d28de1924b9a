//! Which offsets may be committed: batches' acknowledgements, awaited in
//! read order. An offset is stored (and so committed by librdkafka's next
//! commit) only once every batch read before it is done with, so a commit
//! never skips an event a destination still holds.
//!
//! Done with: delivered, written to a persistent queue, or refused for
//! good and counted (rejected, too large, unmatched). Not done with: a
//! batch a destination dropped for lack of room (`backpressure: drop`, a
//! full persistent queue with `on_full: drop`). Its offsets are not
//! committed: each of its partitions is sought back to the batch's first
//! offset and paused for a moment, and that partition stores nothing until
//! the batch is read again (the batches read after it on that partition
//! are read again too: at least once, never lost). At shutdown a batch not
//! done with stops storing there, and the next run reads it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Client, Shared};
use crate::event::AckStatus;

/// How long a partition rests after it was sought back, so that a
/// destination with no room is not offered the same batch at full speed.
const REWIND_PAUSE: Duration = Duration::from_secs(1);

/// One batch's offsets: the first and last read of each partition.
pub struct Pending {
    pub generation: u64,
    parts: Vec<(String, i32, i64, i64)>,
    done: Option<oneshot::Receiver<AckStatus>>,
}

impl Pending {
    pub fn new(generation: u64) -> Self {
        Pending {
            generation,
            parts: Vec::new(),
            done: None,
        }
    }

    /// A message was read: batches hold a few partitions, so a short scan.
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64) {
        match self
            .parts
            .iter_mut()
            .find(|(t, p, _, _)| *p == partition && t == topic)
        {
            Some(e) => {
                e.2 = e.2.min(offset);
                e.3 = e.3.max(offset);
            }
            None => self
                .parts
                .push((topic.to_string(), partition, offset, offset)),
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
    /// Partitions sought back to an offset: nothing is stored for them
    /// until a batch starting there is done with.
    rewound: BTreeMap<(String, i32), i64>,
}

impl Offsets {
    pub fn new(consumer: Arc<Client>, shared: Arc<Shared>, shutdown: CancellationToken) -> Self {
        Offsets {
            consumer,
            shared,
            shutdown,
            stored: BTreeMap::new(),
            stored_generation: 0,
            rewound: BTreeMap::new(),
        }
    }

    /// Store offsets as batches are done with until the reader stops and
    /// every batch has resolved; then commit synchronously.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(p) = rx.recv().await {
            let status = match p.done {
                Some(done) => done.await.unwrap_or(AckStatus::Shed),
                None => AckStatus::Delivered,
            };
            match status {
                AckStatus::Delivered | AckStatus::Failed => self.store(p.generation, &p.parts),
                _ if self.shutdown.is_cancelled() => {
                    tracing::info!(
                        "a batch was not delivered before shutdown: it will be read again"
                    );
                    break;
                }
                AckStatus::Shed | AckStatus::Abandoned => self.rewind(p.generation, &p.parts).await,
            }
        }
        // A synchronous commit waits for the broker: off the runtime.
        let _ = tokio::task::spawn_blocking(move || self.commit()).await;
    }

    /// Begin a new generation's books if a rebalance happened: partitions
    /// were handed over with what had been committed. False if `generation`
    /// is an older one (its partitions may belong to another member now).
    fn current(&mut self, generation: u64) -> bool {
        let current = self.shared.generation.load(Ordering::Acquire);
        if generation != current {
            return false;
        }
        if self.stored_generation != current {
            self.stored.clear();
            self.rewound.clear();
            self.stored_generation = current;
        }
        true
    }

    fn store(&mut self, generation: u64, parts: &[(String, i32, i64, i64)]) {
        if !self.current(generation) {
            return;
        }
        for (topic, partition, first, last) in parts {
            let key = (topic.clone(), *partition);
            if let Some(at) = self.rewound.get(&key) {
                if first != at {
                    // Read before the partition was sought back: it is
                    // read again.
                    continue;
                }
                self.rewound.remove(&key);
            }
            // librdkafka stores `offset + 1` (the next to read) itself.
            match self.consumer.store_offset(topic, *partition, *last) {
                Ok(()) => {
                    self.stored.insert(key, last + 1);
                }
                Err(e) => tracing::debug!(%topic, partition, error = %e, "offset not stored"),
            }
        }
    }

    /// A destination dropped some of this batch for lack of room: seek each
    /// of its partitions back to where the batch began, and let it rest.
    async fn rewind(&mut self, generation: u64, parts: &[(String, i32, i64, i64)]) {
        if !self.current(generation) {
            return;
        }
        let mut seek = Vec::new();
        for (topic, partition, first, _) in parts {
            let key = (topic.clone(), *partition);
            match self.rewound.get(&key) {
                // Read after an earlier batch that is read again anyway.
                Some(at) if first > at => continue,
                _ => {}
            }
            self.rewound.insert(key, *first);
            seek.push((topic.clone(), *partition, *first));
        }
        if seek.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _) in &seek {
            tpl.add_partition(topic, *partition);
        }
        tracing::warn!(
            partitions = %seek.iter().map(|(t, p, o)| format!("{t}/{p}@{o}")).collect::<Vec<_>>().join(","),
            "a destination had no room for a batch: not committed; reading it again"
        );
        let consumer = self.consumer.clone();
        let paused = tpl.clone();
        let sought = tokio::task::spawn_blocking(move || {
            if let Err(e) = consumer.pause(&paused) {
                tracing::debug!(error = %e, "cannot pause a partition to read it again");
            }
            for (topic, partition, offset) in seek {
                if let Err(e) = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                ) {
                    tracing::warn!(%topic, partition, offset, error = %e, "cannot seek back; the batch will be read again after a restart or rebalance");
                }
            }
        })
        .await;
        if let Err(e) = sought {
            tracing::warn!(error = %e, "seeking back failed");
        }
        let consumer = self.consumer.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REWIND_PAUSE).await;
            // While the reader waits for room it keeps every partition
            // paused itself, and resumes them all when it may.
            if !shared.paused.load(Ordering::Acquire)
                && let Err(e) = consumer.resume(&tpl)
            {
                tracing::debug!(error = %e, "cannot resume a partition read again");
            }
        });
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
