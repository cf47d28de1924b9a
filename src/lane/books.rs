//! A destination's books: where every event that entered its lane is now.
//!
//! An event that enters is in exactly one place until it leaves:
//! `queued` (the in-memory lane, or on its way to the disk writer),
//! `in_flight` (held by the driver: batching, waiting to retry, being
//! sent), `on_disk` (in the persistent queue: unread, read back, or held
//! by the driver, until delivered or dropped), then `sent` or `dropped`
//! under one reason. So at every instant
//! `events = sent + dropped + queued + in_flight + on_disk`.
//!
//! Every move is one method here and changes both sides under the
//! registry's books lock ([`BooksLock`]), which a scrape takes whole: one
//! `/metrics` read sees each move entirely or not at all. Nothing outside
//! `lane/` touches these series. The driver holds what it took from the
//! lane as a [`Lease`], which settles itself: delivered, dropped, given
//! back, or (a bug or a panic) dropped unresolved, which is counted as
//! `internal_error` rather than vanishing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{BookSeries, BooksLock, DropReason};

/// A snapshot of one destination's books.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BookCounts {
    pub events: u64,
    pub sent: u64,
    pub sent_bytes: u64,
    pub dropped: u64,
    pub queued: i64,
    pub in_flight: i64,
    pub on_disk: i64,
}

impl BookCounts {
    /// `events = sent + dropped + queued + in_flight + on_disk`.
    pub fn balanced(&self) -> bool {
        self.events as i128
            == self.sent as i128
                + self.dropped as i128
                + self.queued as i128
                + self.in_flight as i128
                + self.on_disk as i128
    }
}

/// The books of one lane (the series are its destination's, shared with a
/// lane a reload replaces, so every change is a delta), or of an output
/// router (which only ever routes through: events = sent + dropped).
pub struct Books {
    lock: BooksLock,
    s: BookSeries,
    /// This lane's own share of `in_flight` and `on_disk` held by its
    /// driver, for its `pending()` (the series are per destination).
    outstanding: AtomicUsize,
}

impl std::fmt::Debug for Books {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Books")
            .field("counts", &self.counts())
            .finish()
    }
}

impl Books {
    pub fn new(lock: BooksLock, series: BookSeries) -> Self {
        Books {
            lock,
            s: series,
            outstanding: AtomicUsize::new(0),
        }
    }

    fn dropped_counter(&self, reason: DropReason) -> &Counter {
        &self.s.dropped[reason as usize]
    }

    fn holding(&self, persisted: bool) -> &Gauge {
        if persisted {
            &self.s.on_disk
        } else {
            &self.s.in_flight
        }
    }

    // ---- what enters ----

    /// `n` events entered the lane's queue.
    pub(super) fn entered(&self, n: usize) {
        if n == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.events.inc_by(n as u64);
        self.s.queued.inc_by(n as i64);
    }

    /// `n` events came to the lane and were dropped at its door (drop
    /// newest, a full disk queue, a closed lane).
    pub(super) fn refused(&self, n: usize, reason: DropReason) {
        if n == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.events.inc_by(n as u64);
        self.dropped_counter(reason).inc_by(n as u64);
    }

    /// A persistent queue opened with `n` events a previous run left
    /// (`counted`: this process counted them when they first came).
    pub(super) fn recovered(&self, n: u64, corrupt: u64, counted: bool) {
        let _g = self.lock.change();
        if !counted {
            self.s.events.inc_by(n + corrupt);
            self.s.on_disk.inc_by(n as i64);
        } else {
            // What the closed lane left in `on_disk` is what is on disk,
            // unless events it delivered were not committed yet: they
            // will be delivered again, so they enter again.
            let left = self.s.on_disk.get().max(0) as u64;
            if n > left {
                self.s.events.inc_by(n - left);
                self.s.on_disk.inc_by((n - left) as i64);
            }
            self.s.events.inc_by(corrupt);
        }
        self.dropped_counter(DropReason::Corrupt).inc_by(corrupt);
    }

    // ---- inside the lane ----

    /// `n` queued events were shed from the queue (drop oldest, the disk
    /// writer dropping or shutting down).
    pub(super) fn shed(&self, n: usize, reason: DropReason) {
        if n == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.queued.dec_by(n as i64);
        self.dropped_counter(reason).inc_by(n as u64);
    }

    /// `n` queued events are about to be appended to the disk queue. Moved
    /// before the append so that a reader that finds them on disk at once
    /// never settles events the books have not moved yet; `unwritten`
    /// moves them back if the append fails.
    pub(super) fn written(&self, n: usize) {
        if n == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.queued.dec_by(n as i64);
        self.s.on_disk.inc_by(n as i64);
    }

    /// The append of `n` events announced by `written` failed.
    pub(super) fn unwritten(&self, n: usize) {
        if n == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.on_disk.dec_by(n as i64);
        self.s.queued.inc_by(n as i64);
    }

    /// `n` events read back from disk were found damaged.
    pub(super) fn corrupt(&self, n: u64) {
        if n == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.on_disk.dec_by(n as i64);
        self.dropped_counter(DropReason::Corrupt).inc_by(n);
    }

    /// The driver takes `n` events: from memory they become in flight;
    /// from disk they stay counted on disk until they leave.
    pub(super) fn taken(self: &Arc<Self>, n: usize, persisted: bool) -> Lease {
        self.outstanding.fetch_add(n, Ordering::Relaxed);
        if !persisted && n > 0 {
            let _g = self.lock.change();
            self.s.queued.dec_by(n as i64);
            self.s.in_flight.inc_by(n as i64);
        }
        Lease {
            books: self.clone(),
            n,
            persisted,
        }
    }

    // ---- what leaves ----

    fn settle(&self, n: usize, persisted: bool, to: &Counter) {
        if n == 0 {
            return;
        }
        self.outstanding.fetch_sub(n, Ordering::Relaxed);
        let _g = self.lock.change();
        self.holding(persisted).dec_by(n as i64);
        to.inc_by(n as u64);
    }

    /// An output router's batch: `events` in, `sent` handed on, `dropped`
    /// matched no rule (it has no queue: nothing stays).
    pub fn routed(&self, events: u64, sent: u64, dropped: u64) {
        if events == 0 {
            return;
        }
        let _g = self.lock.change();
        self.s.events.inc_by(events);
        self.s.sent.inc_by(sent);
        self.dropped_counter(DropReason::Unmatched).inc_by(dropped);
    }

    // ---- reading ----

    pub fn events(&self) -> u64 {
        self.s.events.get()
    }

    pub fn sent(&self) -> u64 {
        self.s.sent.get()
    }

    pub fn sent_bytes(&self) -> u64 {
        self.s.sent_bytes.get()
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_counter(reason).get()
    }

    pub fn dropped_total(&self) -> u64 {
        self.s.dropped.iter().map(Counter::get).sum()
    }

    /// Events this lane's driver holds (from memory or from disk).
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The destination's counts. Consistent only under
    /// [`BooksLock::read_all`].
    pub fn counts(&self) -> BookCounts {
        BookCounts {
            events: self.s.events.get(),
            sent: self.s.sent.get(),
            sent_bytes: self.s.sent_bytes.get(),
            dropped: self.dropped_total(),
            queued: self.s.queued.get(),
            in_flight: self.s.in_flight.get(),
            on_disk: self.s.on_disk.get(),
        }
    }
}

/// Events the driver took from a lane and has not finished with. Whatever
/// happens to them goes through here; a lease dropped with events left
/// counts them as dropped (`internal_error`): nothing leaves the books
/// silently.
#[derive(Debug)]
pub struct Lease {
    books: Arc<Books>,
    n: usize,
    persisted: bool,
}

impl Lease {
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Read back from the persistent queue (counted on disk until it leaves).
    pub fn persisted(&self) -> bool {
        self.persisted
    }

    /// Move `k` of these events into a lease of their own.
    pub fn split(&mut self, k: usize) -> Lease {
        let k = k.min(self.n);
        self.n -= k;
        Lease {
            books: self.books.clone(),
            n: k,
            persisted: self.persisted,
        }
    }

    /// Move `k` of these events into `to` (created if `None`).
    pub fn give(&mut self, k: usize, to: &mut Option<Lease>) {
        match to {
            Some(l) => {
                let k = k.min(self.n);
                self.n -= k;
                l.n += k;
            }
            None => *to = Some(self.split(k)),
        }
    }

    /// Take over `other`'s events (leases of one lane and kind only).
    pub fn join(&mut self, mut other: Lease) {
        debug_assert!(Arc::ptr_eq(&self.books, &other.books));
        debug_assert_eq!(self.persisted, other.persisted);
        self.n += std::mem::take(&mut other.n);
    }

    /// `k` events (`bytes` on the wire) were delivered.
    pub fn delivered(&mut self, k: usize, bytes: u64) {
        let k = k.min(self.n);
        self.n -= k;
        if bytes > 0 {
            self.books.s.sent_bytes.inc_by(bytes);
        }
        self.books.settle(k, self.persisted, &self.books.s.sent);
    }

    /// `k` events were dropped for `reason`.
    pub fn dropped(&mut self, k: usize, reason: DropReason) {
        let k = k.min(self.n);
        self.n -= k;
        self.books
            .settle(k, self.persisted, self.books.dropped_counter(reason));
    }

    /// The events went back into the lane (requeued for a new driver, or
    /// handed back at shutdown): from memory they are queued again; from
    /// disk they stay counted there.
    pub(super) fn returned(mut self) {
        let n = std::mem::take(&mut self.n);
        if n == 0 {
            return;
        }
        let b = &self.books;
        b.outstanding.fetch_sub(n, Ordering::Relaxed);
        if !self.persisted {
            let _g = b.lock.change();
            b.s.in_flight.dec_by(n as i64);
            b.s.queued.inc_by(n as i64);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.n > 0 {
            tracing::error!(
                events = self.n,
                "events left the driver unresolved (a bug); counted as dropped: internal_error"
            );
            let n = std::mem::take(&mut self.n);
            self.books.settle(
                n,
                self.persisted,
                self.books.dropped_counter(DropReason::InternalError),
            );
        }
    }
}
