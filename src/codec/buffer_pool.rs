//! Large buffers handed back for reuse instead of freed: the buffers a
//! request's body is read or decompressed into, which its events then
//! borrow, and those a destination encodes a batch into.
//!
//! A forwarded batch decompresses to a few hundred KB (an HTTP body is read
//! into as much) that live only until the batch is delivered. glibc gives
//! memory that size back to the kernel when it is freed (an mmap, or a
//! trimmed heap top), so every batch faulted its pages in again: 37 page
//! faults a batch, a third of an aggregator's CPU. A buffer kept here stays
//! mapped; the last event to let go of it (any thread) puts it back.
//!
//! Bounded: at most `MAX_KEPT` buffers and `MAX_KEPT_BYTES` a pool, none
//! below `MIN_CAPACITY` (malloc keeps those itself); the rest are freed as
//! before. An idle process holds at most `MAX_KEPT_BYTES` a pool (two) more
//! than it did. A buffer is handed out only for a request of at least a
//! quarter of its size, so a small batch held long (a blocked destination)
//! never pins a large buffer.

use std::sync::Mutex;

use bytes::Bytes;

const MAX_KEPT: usize = 16;
const MAX_KEPT_BYTES: usize = 16 << 20;
const MIN_CAPACITY: usize = 64 << 10;

/// Buffers kept for reuse; `BODIES` is the one request bodies and every
/// decompression draw from, `ENCODED` the one destinations encode and
/// compress a batch into (TCP frames, HTTP bodies, forwarded batches: a
/// few hundred KB each, an aggregator's page faults once bodies were pooled).
pub struct BufferPool(Mutex<Kept>);

struct Kept {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

pub static BODIES: BufferPool = BufferPool::new();
pub static ENCODED: BufferPool = BufferPool::new();

impl BufferPool {
    pub const fn new() -> BufferPool {
        BufferPool(Mutex::new(Kept {
            buffers: Vec::new(),
            bytes: 0,
        }))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A poisoned lock only means another thread panicked holding it:
        // the buffers are still just buffers.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer of at least `at_least` bytes: the smallest kept one
    /// that holds them and is at most four times that (or `MIN_CAPACITY`),
    /// else the largest kept one grown to fit (batches vary in size; growing
    /// a mapped buffer faults in only what it adds), else a new one.
    pub fn take(&self, at_least: usize) -> Vec<u8> {
        let most = at_least.max(MIN_CAPACITY).saturating_mul(4);
        let mut kept = self.kept();
        let fits = kept
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| (at_least..=most).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity());
        let grows = || {
            kept.buffers
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() < at_least)
                .max_by_key(|(_, b)| b.capacity())
        };
        let pick = fits.or_else(grows).map(|(i, _)| i);
        let mut buf = match pick {
            Some(i) => {
                let buf = kept.buffers.swap_remove(i);
                kept.bytes -= buf.capacity();
                buf
            }
            None => Vec::new(),
        };
        drop(kept);
        buf.reserve(at_least);
        buf
    }

    /// `buf` as `Bytes`; it comes back here once the last slice of it drops.
    pub fn share(&'static self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returned { buf, pool: self })
    }

    /// Keep `buf` for reuse (within the bounds), or free it.
    pub fn recycle(&self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity < MIN_CAPACITY {
            return;
        }
        let mut kept = self.kept();
        if kept.buffers.len() < MAX_KEPT && kept.bytes + capacity <= MAX_KEPT_BYTES {
            buf.clear();
            kept.bytes += capacity;
            kept.buffers.push(buf);
        }
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

struct Returned {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.pool.recycle(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_last_slice_drops_and_the_pool_stays_bounded() {
        let pool: &'static BufferPool = Box::leak(Box::new(BufferPool::new()));
        let mut buf = pool.take(100 << 10);
        buf.extend_from_slice(&[7u8; 100 << 10]);
        let ptr = buf.as_ptr();
        let bytes = pool.share(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(&slice[..], &[7u8; 10]);
        assert!(pool.kept().buffers.is_empty(), "a slice still holds it");
        drop(slice);
        // Back, empty, and handed out again for a request that fits it...
        let again = pool.take(50 << 10);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        drop(again);
        // ...but not to one it is more than four times the size of, nor to
        // one it cannot hold.
        let big = Vec::<u8>::with_capacity(1 << 20);
        let ptr = big.as_ptr();
        drop(pool.share(big));
        let small = pool.take(100 << 10);
        assert_ne!(small.as_ptr(), ptr);
        let fits = pool.take(300 << 10);
        assert_eq!(fits.as_ptr(), ptr);
        drop(pool.share(fits));
        // A request larger than every kept buffer grows the largest.
        let larger = pool.take(2 << 20);
        assert!(larger.capacity() >= 2 << 20 && larger.is_empty());
        assert!(pool.kept().buffers.is_empty());
        drop(larger);

        // Small buffers are left to malloc; many large ones stop at the bound.
        drop(pool.share(Vec::with_capacity(1000)));
        for _ in 0..40 {
            drop(pool.share(vec![0u8; 1 << 20]));
        }
        let kept = pool.kept();
        assert_eq!(kept.buffers.len(), MAX_KEPT_BYTES / (1 << 20));
        assert!(kept.buffers.len() <= MAX_KEPT);
        assert!(kept.buffers.iter().all(|b| b.capacity() >= MIN_CAPACITY));
        assert_eq!(
            kept.bytes,
            kept.buffers.iter().map(Vec::capacity).sum::<usize>()
        );
    }
}
