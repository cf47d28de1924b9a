//! The lane's view of its disk queue: which way new events go, what was
//! read back, what is on its way to disk. Owned by the lane and changed only
//! under the lane's lock, so that choosing memory or disk, and the order
//! between them, is atomic. The spill tasks never touch it.

use std::collections::VecDeque;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::event::Batch;

/// A batch on its way to disk, with the write room it holds (none for
/// batches moved out of the in-memory lane).
pub struct WriteItem {
    pub batch: Batch,
    /// Held until the batch is written; dropping it gives the room back.
    pub _permit: Option<OwnedSemaphorePermit>,
}

/// The lane's view of its disk queue, kept under the lane's lock so that
/// choosing memory or disk, and the order between them, is atomic.
pub(super) struct DiskState {
    /// New events go to disk (strict ordering: behind the backlog).
    pub engaged: bool,
    /// Batches read back from disk, waiting for the driver.
    pub readahead: VecDeque<Batch>,
    pub readahead_events: usize,
    /// Events sent to the writer and not yet written (or dropped).
    pub write_pending: usize,
    /// Events handed back undelivered at shutdown; they stay on disk.
    pub requeued: usize,
    /// The writer's input; `None` once the lane has finished.
    pub writes: Option<UnboundedSender<WriteItem>>,
    pub drain: DrainBucket,
}

impl DiskState {
    /// Under `live_first`, whether the backlog gets this turn even though
    /// live events are waiting.
    pub fn backlog_turn(&mut self, events: usize) -> bool {
        self.drain.take(events)
    }
}

/// Paces the backlog under `live_first`: `rate` events per second on
/// average. A frame may overdraw the bucket; the debt delays the next one.
pub(super) struct DrainBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl DrainBucket {
    pub fn new(rate: f64) -> Self {
        DrainBucket {
            rate,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self, n: usize) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        if self.tokens > 0.0 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}
