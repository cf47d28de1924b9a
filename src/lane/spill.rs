//! The tasks that connect a `persistent_queue` lane to its disk queue.
//!
//! - **writer**: takes batches the lane sends to disk, in order, and writes
//!   them as frames in group commits (everything waiting, up to 8 MiB, per
//!   write; under `fsync: always` one fsync per group). Only after that are
//!   the batches dropped, which releases the sources' acknowledgements and
//!   the room they held. At `queue.max_bytes`, or when a write fails (a
//!   full disk), `on_full` decides: wait for room, or drop and count.
//! - **reader**: reads frames ahead into the lane's read-ahead (bounded by
//!   the lane's capacity), each as a batch carrying a fresh acknowledgement.
//! - **committer**: waits for those acknowledgements in read order and
//!   records the position after the longest finished prefix in the ledger,
//!   which deletes consumed segments. A batch left undelivered at shutdown
//!   is "abandoned": the committer stops before it, so the next run starts
//!   there (and may repeat the few batches that finished after it).
//! - **syncer** (`fsync: interval`): fsyncs every `queue.fsync_interval`.
//!
//! The lane itself (`crate::lane`) decides what goes to disk and hands
//! read-ahead batches to the driver; its state for that is its own
//! (`disk_state.rs`). These tasks reach the lane only through [`LaneHandle`],
//! and the disk only through `crate::queue`, which is pure storage.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::disk_state::{DiskState, DrainBucket, WriteItem};
use super::{Books, Lane};
use crate::event::{Ack, AckStatus, Batch, Event};
use crate::metrics::DropReason;
use crate::queue::disk::{DiskQueue, OpenReport, QueueError, Read, now_ms};
use crate::queue::frame;
use crate::queue::ledger::Position;
use crate::queue::{Fsync, Mode, OnFull, Ordering, QueueSettings};

/// Largest frame the writer builds. The read-ahead hands each frame to the
/// driver as one batch, so frames are about a request's size.
const FRAME_EVENTS: usize = 1000;
const FRAME_BYTES: usize = 1 << 20;
/// Most the writer takes for one group commit.
const GROUP_BYTES: usize = 8 << 20;
/// Frames per read.
const READ_FRAMES: usize = 4;
/// How long to wait before retrying after an I/O error.
const IO_RETRY: Duration = Duration::from_secs(1);

/// All the spill tasks may do to their lane: report writes, fill the
/// read-ahead, and let the lane go back to memory when the backlog is gone.
/// Everything else about the lane is none of their business.
pub(super) struct LaneHandle(Arc<Lane>);

impl LaneHandle {
    fn spill(&self) -> Option<&Spill> {
        self.0.spill()
    }
    fn id(&self) -> &str {
        self.0.id()
    }
    fn books(&self) -> &Arc<Books> {
        &self.0.books
    }
    /// `n` events reached the disk (or were dropped on the way).
    fn written(&self, n: usize) {
        self.0.written(n);
    }
    fn readahead_room(&self) -> usize {
        self.0.readahead_room()
    }
    fn push_readahead(&self, batches: Vec<Batch>) {
        self.0.push_readahead(batches);
    }
    fn try_disengage(&self) {
        self.0.try_disengage();
    }
}

/// An opened disk queue, ready to become a lane (`Lane::persistent`).
pub struct Opened {
    pub(super) spill: Spill,
    pub(super) state: DiskState,
    /// Events a previous run left, and damaged ones skipped at open.
    pub(super) recovered: u64,
    pub(super) recovered_corrupt: u64,
}

/// One read frame the committer waits for.
struct Pending {
    end: Position,
    events: u64,
    done: oneshot::Receiver<AckStatus>,
}

/// A destination's persistent queue at run time.
pub struct Spill {
    pub settings: QueueSettings,
    pub disk: Arc<DiskQueue>,
    /// Bounds the events waiting for the writer (the lane's capacity), so
    /// a disk slower than the input makes sources wait, not memory grow.
    pub write_room: Arc<Semaphore>,
    /// Notified when the disk queue shrinks (or the lane closes).
    pub space: Notify,
    pub wake_reader: Notify,
    /// The lane is closing: stop reading, hand undelivered batches back.
    pub closing: CancellationToken,
    /// Mirrors `DiskState::engaged` for lock-free checks.
    pub engaged: AtomicBool,
    /// When the last write failed (a full disk), in ms since `epoch` plus
    /// one (0: it did not). The queue counts as full for `IO_RETRY` after,
    /// then writes are tried again, so a disk with room again is used again
    /// under `on_full: drop` too (where nothing would otherwise retry).
    write_failed: AtomicU64,
    epoch: std::time::Instant,
    /// The writer found no room under `max_bytes` for its next frame;
    /// cleared when the queue shrinks.
    at_limit: AtomicBool,
    bytes_gauge: Gauge,
    receiver: Mutex<Option<UnboundedReceiver<WriteItem>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Spill {
    /// Open (and recover) the queue; blocking. `capacity` is the lane's,
    /// `bytes_gauge` the destination's `sluice_persistent_queue_bytes` (its
    /// events are in the lane's books).
    pub fn open(
        settings: QueueSettings,
        capacity: usize,
        bytes_gauge: Gauge,
    ) -> Result<(Opened, OpenReport), QueueError> {
        let (disk, report) = DiskQueue::open(&settings.dir, settings.segment_bytes)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let engaged = settings.mode == Mode::Always
            || (settings.ordering == Ordering::Strict && disk.unread() > 0);
        let state = DiskState {
            engaged,
            readahead: VecDeque::new(),
            readahead_events: 0,
            write_pending: 0,
            requeued: 0,
            writes: Some(tx),
            drain: DrainBucket::new(settings.drain_rate as f64),
        };
        let spill = Spill {
            disk: Arc::new(disk),
            write_room: Arc::new(Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS))),
            space: Notify::new(),
            wake_reader: Notify::new(),
            closing: CancellationToken::new(),
            engaged: AtomicBool::new(engaged),
            write_failed: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            at_limit: AtomicBool::new(false),
            bytes_gauge,
            receiver: Mutex::new(Some(rx)),
            tasks: Mutex::new(Vec::new()),
            settings,
        };
        spill.update_gauges();
        Ok((
            Opened {
                spill,
                state,
                recovered: report.events,
                recovered_corrupt: report.corrupt_events,
            },
            report,
        ))
    }

    /// At `max_bytes` (or too near it for the next frame), or a write
    /// failed in the last `IO_RETRY`.
    pub fn is_full(&self) -> bool {
        self.disk.bytes() >= self.settings.max_bytes
            || self.at_limit.load(AtomicOrdering::Relaxed)
            || self.write_failed_recently()
    }

    fn write_failed_recently(&self) -> bool {
        let at = self.write_failed.load(AtomicOrdering::Relaxed);
        at != 0 && self.millis() < at - 1 + IO_RETRY.as_millis() as u64
    }

    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn set_write_failed(&self, failed: bool) -> bool {
        let v = if failed { self.millis() + 1 } else { 0 };
        self.write_failed.swap(v, AtomicOrdering::Relaxed) != 0
    }

    pub fn is_engaged(&self) -> bool {
        self.engaged.load(AtomicOrdering::Relaxed)
    }

    fn update_gauges(&self) {
        self.bytes_gauge.set(self.disk.bytes() as i64);
    }

    /// Start the writer, reader, committer (and syncer) for `lane`. `stop`
    /// is the hard stop: a writer waiting for room then gives up.
    pub fn start(lane: &Arc<Lane>, stop: CancellationToken) {
        let Some(sp) = lane.spill() else { return };
        let Some(rx) = sp.receiver.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let (commits, pending) = mpsc::unbounded_channel();
        let mut tasks = vec![
            tokio::spawn(write_loop(LaneHandle(lane.clone()), rx, stop.clone())),
            tokio::spawn(read_loop(LaneHandle(lane.clone()), commits, stop)),
            tokio::spawn(commit_loop(LaneHandle(lane.clone()), pending)),
        ];
        if sp.settings.fsync == Fsync::Interval {
            tasks.push(tokio::spawn(sync_loop(LaneHandle(lane.clone()))));
        }
        if let Ok(mut t) = sp.tasks.lock() {
            t.extend(tasks);
        }
    }

    /// Wait for the tasks to finish (after the lane closed its writer input).
    pub async fn join(&self) {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "persistent queue task failed");
            }
        }
        self.update_gauges();
    }
}

/// Frame boundaries in the writer's buffer.
#[derive(Clone, Copy)]
struct FrameSpan {
    start: usize,
    end: usize,
    events: u64,
}

async fn write_loop(
    lane: LaneHandle,
    mut rx: UnboundedReceiver<WriteItem>,
    stop: CancellationToken,
) {
    let Some(sp) = lane.spill() else { return };
    let mut items: Vec<WriteItem> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = batch_bytes(&first.batch);
        items.push(first);
        while bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += batch_bytes(&item.batch);
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        buf.clear();
        let spans = encode_frames(&items, sp.settings.compress, &mut buf);
        let events: usize = items.iter().map(|i| i.batch.len()).sum();
        let (back, durable) = write_frames(&lane, buf, spans, &stop).await;
        buf = back;
        if !durable {
            // Not kept (all of it, as promised): the senders send again.
            for item in &items {
                if let Some(ack) = &item.batch.ack {
                    ack.shed();
                }
            }
        }
        lane.written(events);
        // Dropping the batches acknowledges the sources; dropping the
        // permits gives the room back.
        items.clear();
        sp.update_gauges();
    }
    let disk = sp.disk.clone();
    match tokio::task::spawn_blocking(move || disk.sync()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(destination = lane.id(), error = %e, "persistent queue: final sync failed")
        }
        Err(e) => {
            tracing::error!(destination = lane.id(), error = %e, "persistent queue: final sync failed")
        }
    }
}

fn batch_bytes(b: &Batch) -> usize {
    b.events.iter().map(|e| e.raw.len() + 5).sum()
}

/// Encode every event of `items` into frames of at most `FRAME_EVENTS`
/// events and about `FRAME_BYTES` bytes.
fn encode_frames(items: &[WriteItem], compress: bool, buf: &mut Vec<u8>) -> Vec<FrameSpan> {
    let time = now_ms();
    let mut spans = Vec::new();
    let mut chunk: Vec<&Event> = Vec::with_capacity(FRAME_EVENTS);
    let mut chunk_bytes = 0;
    let mut flush = |chunk: &mut Vec<&Event>, buf: &mut Vec<u8>| {
        if chunk.is_empty() {
            return;
        }
        let start = buf.len();
        frame::encode(chunk.iter().copied(), compress, time, buf);
        spans.push(FrameSpan {
            start,
            end: buf.len(),
            events: chunk.len() as u64,
        });
        chunk.clear();
    };
    for e in items.iter().flat_map(|i| &i.batch.events) {
        if chunk.len() >= FRAME_EVENTS
            || (chunk_bytes + e.raw.len() > FRAME_BYTES && !chunk.is_empty())
        {
            flush(&mut chunk, buf);
            chunk_bytes = 0;
        }
        chunk_bytes += e.raw.len() + 5;
        chunk.push(e);
    }
    flush(&mut chunk, buf);
    spans
}

/// Why an append run stopped early.
enum Stopped {
    /// `max_bytes` reached.
    Full,
    /// A write failed (ENOSPC, say).
    Failed(std::io::Error),
    /// The writes succeeded but the fsync did not.
    Sync(std::io::Error),
}

/// Append `spans[from..]`; how many were appended, and why it stopped.
/// Each frame's events move to `on_disk` in the books just before its
/// append (and back if it fails), so a reader never finds events on disk
/// that the books still count as queued.
fn append_frames(
    disk: &DiskQueue,
    books: &Books,
    buf: &[u8],
    spans: &[FrameSpan],
    max_bytes: u64,
    sync: bool,
) -> (usize, Option<Stopped>) {
    for (i, s) in spans.iter().enumerate() {
        let len = (s.end - s.start) as u64;
        // An empty queue takes one frame whatever its size, or it never would.
        if disk.events() > 0 && disk.bytes() + len > max_bytes {
            return (i, Some(Stopped::Full));
        }
        books.written(s.events as usize);
        if let Err(e) = disk.append(&buf[s.start..s.end], s.events) {
            books.unwritten(s.events as usize);
            return (i, Some(Stopped::Failed(e)));
        }
    }
    if sync && let Err(e) = disk.sync() {
        return (spans.len(), Some(Stopped::Sync(e)));
    }
    (spans.len(), None)
}

/// Write every frame (or drop what `on_full: drop` sheds). Returns the
/// buffer and whether everything was written, as durably as promised.
async fn write_frames(
    lane: &LaneHandle,
    buf: Vec<u8>,
    spans: Vec<FrameSpan>,
    stop: &CancellationToken,
) -> (Vec<u8>, bool) {
    let Some(sp) = lane.spill() else {
        return (buf, false);
    };
    let sync = sp.settings.fsync == Fsync::Always;
    let max_bytes = sp.settings.max_bytes;
    let mut buf = Arc::new(buf);
    let spans = Arc::new(spans);
    let mut next = 0;
    let mut complained = false;
    let mut durable = true;
    while next < spans.len() {
        let disk = sp.disk.clone();
        let books = lane.books().clone();
        let (b, s) = (buf.clone(), spans.clone());
        let from = next;
        let result = tokio::task::spawn_blocking(move || {
            append_frames(&disk, &books, &b, &s[from..], max_bytes, sync)
        })
        .await;
        let (done, stopped) = match result {
            Ok(r) => r,
            Err(e) => (
                0,
                Some(Stopped::Failed(std::io::Error::other(e.to_string()))),
            ),
        };
        next += done;
        let stopped = match stopped {
            None => {
                if sp.set_write_failed(false) {
                    tracing::info!(
                        destination = lane.id(),
                        "persistent queue: writes succeed again"
                    );
                }
                break;
            }
            Some(Stopped::Sync(e)) => {
                tracing::error!(destination = lane.id(), error = %e, "persistent queue: fsync failed; sources are told the write failed");
                durable = false;
                break;
            }
            Some(s) => s,
        };
        if let Stopped::Failed(e) = &stopped {
            sp.set_write_failed(true);
            if !complained {
                tracing::error!(destination = lane.id(), error = %e, on_full = ?sp.settings.on_full, "persistent queue: write failed; treating the queue as full");
            }
        } else {
            sp.at_limit.store(true, AtomicOrdering::Relaxed);
            if !complained {
                tracing::warn!(destination = lane.id(), max_bytes, on_full = ?sp.settings.on_full, "persistent queue is full");
            }
        }
        complained = true;
        match sp.settings.on_full {
            OnFull::Drop => {
                lane.books()
                    .shed(spans[next].events as usize, DropReason::QueueFull);
                next += 1;
                // Sources waiting on this group learn that not all of it
                // was kept (frames do not map back to their batches).
                durable = false;
            }
            OnFull::Block => {
                let room = sp.space.notified();
                tokio::select! {
                    _ = stop.cancelled() => {
                        let left: u64 = spans[next..].iter().map(|s| s.events).sum();
                        lane.books().shed(left as usize, DropReason::Shutdown);
                        durable = false;
                        break;
                    }
                    _ = room => {}
                    _ = tokio::time::sleep(IO_RETRY) => {}
                }
            }
        }
    }
    drop(spans);
    let buf = Arc::get_mut(&mut buf)
        .map(std::mem::take)
        .unwrap_or_default();
    (buf, durable)
}

async fn read_loop(lane: LaneHandle, commits: UnboundedSender<Pending>, stop: CancellationToken) {
    let Some(sp) = lane.spill() else { return };
    loop {
        let wake = sp.wake_reader.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        if sp.closing.is_cancelled() || stop.is_cancelled() {
            return;
        }
        let room = lane.readahead_room();
        if room > 0 && sp.disk.unread() > 0 {
            let disk = sp.disk.clone();
            let error = match tokio::task::spawn_blocking(move || disk.read(READ_FRAMES)).await {
                Ok(Ok(read)) => {
                    hand_over(&lane, read, &commits);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::error!(destination = lane.id(), %error, "persistent queue: read failed; retrying");
            tokio::select! {
                _ = sp.closing.cancelled() => return,
                _ = tokio::time::sleep(IO_RETRY) => {}
            }
            continue;
        }
        if room > 0 {
            lane.try_disengage();
        }
        tokio::select! {
            _ = &mut wake => {}
            _ = sp.closing.cancelled() => return,
            _ = stop.cancelled() => return,
        }
    }
}

/// Put what was read into the lane's read-ahead and tell the committer
/// what to wait for, in order.
fn hand_over(lane: &LaneHandle, read: Read, commits: &UnboundedSender<Pending>) {
    lane.books().corrupt(read.corrupt_events);
    let mut batches = Vec::with_capacity(read.frames.len());
    // Frames do not record their senders: the queue is one sender, so
    // what it drains keeps the order it was written in.
    let sender = crate::event::Sender::of(lane.id(), "persistent queue");
    for f in read.frames {
        let (ack, done) = Ack::new();
        let events = f.events.len() as u64;
        if !f.events.is_empty() {
            batches.push(Batch {
                events: f.events,
                ack: Some(ack),
                persisted: true,
                sender,
            });
        }
        // A skipped (corrupt) frame's ack is already dropped: it is done.
        let _ = commits.send(Pending {
            end: f.end,
            events,
            done,
        });
    }
    lane.push_readahead(batches);
}

async fn commit_loop(lane: LaneHandle, mut rx: UnboundedReceiver<Pending>) {
    let Some(sp) = lane.spill() else { return };
    let sync = sp.settings.fsync == Fsync::Always;
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(p) => waiting.push_back(p),
                None => return,
            }
        }
        while let Ok(p) = rx.try_recv() {
            waiting.push_back(p);
        }
        let Some(front) = waiting.front_mut() else {
            continue;
        };
        let first = (&mut front.done).await;
        // Shed: counted dropped by the lease that held it (a bug path);
        // done with, like a failed batch.
        if !matches!(
            first,
            Ok(AckStatus::Delivered | AckStatus::Failed | AckStatus::Shed)
        ) {
            // Abandoned at shutdown: it and everything after stay queued.
            return;
        }
        let (mut last, mut events) = (front.end, front.events);
        waiting.pop_front();
        let mut abandoned = false;
        while let Some(p) = waiting.front_mut() {
            match p.done.try_recv() {
                Ok(AckStatus::Delivered | AckStatus::Failed | AckStatus::Shed) => {
                    last = p.end;
                    events += p.events;
                    waiting.pop_front();
                }
                Err(oneshot::error::TryRecvError::Empty) => break,
                Ok(AckStatus::Abandoned) | Err(oneshot::error::TryRecvError::Closed) => {
                    abandoned = true;
                    break;
                }
            }
        }
        let disk = sp.disk.clone();
        match tokio::task::spawn_blocking(move || disk.commit(last, events, sync)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(destination = lane.id(), error = %e, "persistent queue: cannot record progress; delivered events may repeat after a restart")
            }
            Err(e) => {
                tracing::error!(destination = lane.id(), error = %e, "persistent queue: commit failed")
            }
        }
        sp.update_gauges();
        sp.at_limit.store(false, AtomicOrdering::Relaxed);
        sp.space.notify_waiters();
        // The backlog may be delivered now: the reader looks at disengaging.
        sp.wake_reader.notify_one();
        if abandoned {
            return;
        }
    }
}

async fn sync_loop(lane: LaneHandle) {
    let Some(sp) = lane.spill() else { return };
    loop {
        tokio::select! {
            _ = sp.closing.cancelled() => return,
            _ = tokio::time::sleep(sp.settings.fsync_interval) => {}
        }
        let disk = sp.disk.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || disk.sync()).await {
            tracing::error!(destination = lane.id(), error = %e, "persistent queue: fsync failed");
        }
    }
}
