//! Events, batches and end-to-end acknowledgements.
//!
//! An event is the raw bytes of one record. Nothing is parsed up front: filters
//! locate the fields they name lazily (see `expr::scan`) and pass-through
//! encodings write the original bytes back out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::oneshot;

/// What the bytes of an event are known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON value (validated by the source, or recognised by its first byte).
    Json,
    /// Opaque text: only `_raw` sees it; JSON encodings wrap it as `{"message": ...}`.
    Text,
}

/// One record.
#[derive(Debug, Clone)]
pub struct Event {
    pub raw: Bytes,
    pub format: Format,
}

impl Event {
    pub fn json(raw: Bytes) -> Self {
        Self {
            raw,
            format: Format::Json,
        }
    }

    pub fn text(raw: Bytes) -> Self {
        Self {
            raw,
            format: Format::Text,
        }
    }

    /// Length used for byte-based batching and accounting.
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Who sent a batch's events, as far as order goes: one TCP connection, one
/// UDP peer, one Kafka partition, one HTTP client connection, one file.
/// Destinations keep one sender's events in order (`ordering: auto`), so
/// the driver never has two of its requests in flight at once; different
/// senders spread across the in-flight slots. A hash, so a batch carries
/// eight bytes, not an address; two senders sharing a hash only keep each
/// other's order too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sender(pub u64);

impl Sender {
    /// Unknown (what a pipeline's aggregate releases): no order is kept
    /// for it.
    pub const NONE: Sender = Sender(0);

    /// The sender identified by `key` within `source` (a peer address, a
    /// partition, a path).
    pub fn of(source: &str, key: impl std::hash::Hash) -> Sender {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one((source, key));
        // 0 means "unknown".
        Sender(h.max(1))
    }

    pub fn is_known(self) -> bool {
        self != Sender::NONE
    }
}

/// The unit that moves between stages: sources hand batches to the router, lanes
/// carry them, metrics are incremented once per batch.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// Set when the source waits for delivery before acknowledging its sender.
    /// For a batch read back from a persistent queue: the handle that tells
    /// the queue when the batch is done with, so it can advance past it.
    pub ack: Option<Ack>,
    /// Read back from the destination's persistent queue (already on disk).
    pub persisted: bool,
    pub sender: Sender,
}

impl Batch {
    pub fn new(events: Vec<Event>) -> Self {
        Self {
            events,
            ack: None,
            persisted: false,
            sender: Sender::NONE,
        }
    }

    pub fn with_ack(events: Vec<Event>, ack: Option<Ack>) -> Self {
        Self {
            events,
            ack,
            persisted: false,
            sender: Sender::NONE,
        }
    }

    pub fn from(mut self, sender: Sender) -> Self {
        self.sender = sender;
        self
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// How a batch ended, as reported to a source waiting on its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Every destination delivered every event, wrote it durably to its
    /// persistent queue, or was not meant to get it (unmatched).
    Delivered,
    /// At least one event was refused for good: rejected by a peer, too
    /// large, unencodable, out of retries. Sending it again changes nothing.
    Failed,
    /// At least one event was dropped for lack of room (a `drop` lane, a
    /// full persistent queue under `on_full: drop`, a failed disk write)
    /// or at shutdown: the sender must send it again. Wins over `Failed`.
    Shed,
    /// Left undelivered at shutdown but kept (in a persistent queue): it
    /// will be delivered by the next run.
    Abandoned,
}

/// A shared acknowledgement handle. Every copy of the batch (one per destination
/// it was routed to, one per request it was folded into) holds a clone; when the
/// last clone is dropped the source learns the outcome. Failure is sticky.
#[derive(Debug, Clone)]
pub struct Ack(Arc<AckInner>);

#[derive(Debug)]
struct AckInner {
    failed: AtomicBool,
    shed: AtomicBool,
    abandoned: AtomicBool,
    tx: Option<oneshot::Sender<AckStatus>>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let status = if self.abandoned.load(Ordering::Acquire) {
                AckStatus::Abandoned
            } else if self.shed.load(Ordering::Acquire) {
                AckStatus::Shed
            } else if self.failed.load(Ordering::Acquire) {
                AckStatus::Failed
            } else {
                AckStatus::Delivered
            };
            // The source may have given up waiting; that is not an error here.
            let _ = tx.send(status);
        }
    }
}

impl Ack {
    /// A new handle and the receiver that resolves when every clone is gone.
    pub fn new() -> (Self, oneshot::Receiver<AckStatus>) {
        let (tx, rx) = oneshot::channel();
        (
            Self(Arc::new(AckInner {
                failed: AtomicBool::new(false),
                shed: AtomicBool::new(false),
                abandoned: AtomicBool::new(false),
                tx: Some(tx),
            })),
            rx,
        )
    }

    /// Refused for good (see `AckStatus::Failed`).
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }

    /// Dropped for lack of room or at shutdown: to be sent again (see
    /// `AckStatus::Shed`).
    pub fn shed(&self) {
        self.0.shed.store(true, Ordering::Release);
    }

    /// Not delivered, but kept for later; wins over `fail`.
    pub fn abandon(&self) {
        self.0.abandoned.store(true, Ordering::Release);
    }

    pub fn same(&self, other: &Ack) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ack_resolves_when_last_clone_drops() {
        let (ack, rx) = Ack::new();
        let a2 = ack.clone();
        drop(ack);
        a2.fail();
        drop(a2);
        assert_eq!(rx.await.ok(), Some(AckStatus::Failed));

        let (ack, rx) = Ack::new();
        drop(ack);
        assert_eq!(rx.await.ok(), Some(AckStatus::Delivered));

        // Shed wins over failed: the sender must send again.
        let (ack, rx) = Ack::new();
        ack.fail();
        ack.clone().shed();
        drop(ack);
        assert_eq!(rx.await.ok(), Some(AckStatus::Shed));
    }
}
