//! Sequence ids: the events the generator builds, and the tracker that
//! records, per id, whether it was sent and how often it was received.
//!
//! The tracker is a lazily grown table of atomic counters, so senders and
//! receivers on any thread record ids without a lock; memory grows with the
//! highest id seen (one byte per id per side), not with the number of
//! recordings.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const CHUNK_BITS: u32 = 20;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 4096;

struct Counters {
    chunks: Box<[OnceLock<Box<[AtomicU8]>>]>,
}

impl Counters {
    fn new() -> Self {
        Counters {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn slot(&self, id: u64) -> Option<&AtomicU8> {
        let chunk = usize::try_from(id >> CHUNK_BITS).ok()?;
        let cell = self.chunks.get(chunk)?;
        let chunk = cell.get_or_init(|| (0..CHUNK).map(|_| AtomicU8::new(0)).collect());
        chunk.get(id as usize & (CHUNK - 1))
    }

    fn bump(&self, id: u64) -> bool {
        let Some(slot) = self.slot(id) else {
            return false;
        };
        // Saturate: 255 receipts of one id is as bad as 256.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_add(1));
        true
    }

    fn get(&self, id: u64) -> u8 {
        let Ok(chunk) = usize::try_from(id >> CHUNK_BITS) else {
            return 0;
        };
        match self.chunks.get(chunk).and_then(|c| c.get()) {
            Some(chunk) => chunk[id as usize & (CHUNK - 1)].load(Ordering::Relaxed),
            None => 0,
        }
    }
}

/// What was sent and what was received, by sequence id.
pub struct Tracker {
    sent: Counters,
    received: Counters,
    /// One past the highest id handed out.
    next_id: AtomicU64,
    sent_events: AtomicU64,
    received_events: AtomicU64,
    received_bytes: AtomicU64,
    /// Lines that carried no readable id (or one out of range).
    unreadable: AtomicU64,
    /// Set by `check`: each id's line must be exactly what `write_event`
    /// wrote, and each connection's ids must arrive in increasing order.
    checks: OnceLock<Checks>,
}

/// What `Tracker::check` verifies per received line.
struct Checks {
    /// Bytes per event, to rebuild the line the generator sent.
    event_bytes: usize,
    /// Ids per block a connection reserves at once.
    block: u64,
    /// Which connection (plus one) reserved each block.
    owners: Counters,
    /// Per connection, one past the highest id received so far.
    last: Box<[AtomicU64]>,
    out_of_order: AtomicU64,
    altered: AtomicU64,
}

/// The connections `Tracker::own` tells apart.
pub const MAX_CONNECTIONS: usize = 64;

/// The outcome of comparing what was sent with what was received.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Comparison {
    pub sent: u64,
    pub received_unique: u64,
    pub received_total: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Received ids the generator never recorded as sent (a write that failed
    /// part-way, a request whose answer was lost).
    pub unexpected: u64,
    pub unreadable: u64,
    /// The first lost ids, for the report.
    pub lost_ids: Vec<u64>,
    pub duplicated_ids: Vec<u64>,
    /// With `check`: lines received after a later line of their connection.
    pub out_of_order: u64,
    /// With `check`: lines whose bytes differ from what was sent.
    pub altered: u64,
}

const LISTED: usize = 20;

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            sent: Counters::new(),
            received: Counters::new(),
            next_id: AtomicU64::new(0),
            sent_events: AtomicU64::new(0),
            received_events: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
            checks: OnceLock::new(),
        }
    }

    /// Verify every received line: byte for byte what the generator wrote
    /// (events of `event_bytes`), and in each connection's order (blocks of
    /// `block` ids, recorded with `own`).
    pub fn check(&self, event_bytes: usize, block: u64) {
        let _ = self.checks.set(Checks {
            event_bytes,
            block: block.max(1),
            owners: Counters::new(),
            last: (0..MAX_CONNECTIONS).map(|_| AtomicU64::new(0)).collect(),
            out_of_order: AtomicU64::new(0),
            altered: AtomicU64::new(0),
        });
    }

    /// The block starting at `first` is sent by connection `conn`.
    pub fn own(&self, first: u64, conn: usize) {
        if let Some(c) = self.checks.get()
            && conn < MAX_CONNECTIONS
            && let Some(slot) = c.owners.slot(first / c.block)
        {
            slot.store(conn as u8 + 1, Ordering::Relaxed);
        }
    }

    fn verify(&self, c: &Checks, id: u64, line: &[u8], expected: &mut Vec<u8>) {
        expected.clear();
        write_event(expected, id, c.event_bytes);
        if line != expected.as_slice() {
            c.altered.fetch_add(1, Ordering::Relaxed);
        }
        let owner = c.owners.get(id / c.block);
        if let Some(last) = owner
            .checked_sub(1)
            .and_then(|o| c.last.get(usize::from(o)))
            && last.fetch_max(id + 1, Ordering::Relaxed) > id
        {
            c.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reserve `n` consecutive ids.
    pub fn reserve(&self, n: u64) -> u64 {
        self.next_id.fetch_add(n, Ordering::Relaxed)
    }

    pub fn mark_sent(&self, first: u64, n: u64) {
        for id in first..first + n {
            self.sent.bump(id);
        }
        self.sent_events.fetch_add(n, Ordering::Relaxed);
    }

    /// Count events sent without ids (throughput runs count lines only).
    pub fn count_sent(&self, n: u64) {
        self.sent_events.fetch_add(n, Ordering::Relaxed);
    }

    /// Record every newline-terminated event in `lines`; returns how many.
    pub fn record_lines(&self, lines: &[u8]) -> u64 {
        let mut n = 0;
        let checks = self.checks.get();
        let mut expected = Vec::new();
        for line in lines.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            n += 1;
            match seq_of(line) {
                Some(id) if self.received.bump(id) => {
                    if let Some(c) = checks {
                        self.verify(c, id, line, &mut expected);
                    }
                }
                _ => {
                    self.unreadable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.received_events.fetch_add(n, Ordering::Relaxed);
        self.received_bytes
            .fetch_add(lines.len() as u64, Ordering::Relaxed);
        n
    }

    /// Count events without reading their ids (throughput runs).
    pub fn count_received(&self, events: u64, bytes: u64) {
        self.received_events.fetch_add(events, Ordering::Relaxed);
        self.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sent_events(&self) -> u64 {
        self.sent_events.load(Ordering::Relaxed)
    }

    pub fn received_events(&self) -> u64 {
        self.received_events.load(Ordering::Relaxed)
    }

    pub fn received_bytes(&self) -> u64 {
        self.received_bytes.load(Ordering::Relaxed)
    }

    /// Ids received at least once (a scan; call when the run is over).
    pub fn compare(&self) -> Comparison {
        let mut c = Comparison {
            received_total: self.received_events(),
            unreadable: self.unreadable.load(Ordering::Relaxed),
            ..Comparison::default()
        };
        if let Some(k) = self.checks.get() {
            c.out_of_order = k.out_of_order.load(Ordering::Relaxed);
            c.altered = k.altered.load(Ordering::Relaxed);
        }
        let end = self.next_id.load(Ordering::Relaxed);
        for id in 0..end {
            let sent = self.sent.get(id) > 0;
            let got = self.received.get(id);
            if sent {
                c.sent += 1;
            }
            if got > 0 {
                c.received_unique += 1;
                c.duplicates += u64::from(got - 1);
                if got > 1 && c.duplicated_ids.len() < LISTED {
                    c.duplicated_ids.push(id);
                }
            }
            if sent && got == 0 {
                c.lost += 1;
                if c.lost_ids.len() < LISTED {
                    c.lost_ids.push(id);
                }
            }
            if !sent && got > 0 {
                c.unexpected += 1;
            }
        }
        c
    }
}

/// The `seq` of an event line: the first `"seq":` followed by digits.
/// Dead letters wrap the original event, whose `seq` is found inside.
pub fn seq_of(line: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(line, b"\"seq\":")? + 6;
    // A tag or structured data parameter carries it as text: `"seq":"42"`.
    let digits = line[at..].strip_prefix(b"\"").unwrap_or(&line[at..]);
    let mut id: u64 = 0;
    let mut any = false;
    for &b in digits {
        if !b.is_ascii_digit() {
            break;
        }
        id = id.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(id)
}

/// The `level` of event `id`: it cycles so filters have something to select on.
pub fn level(id: u64) -> &'static str {
    const LEVELS: [&str; 4] = ["info", "warn", "error", "debug"];
    LEVELS[(id % 4) as usize]
}

/// The `status` of event `id`: it cycles, and every status is at least 200.
pub fn status(id: u64) -> u16 {
    const STATUS: [u16; 5] = [200, 201, 404, 500, 503];
    STATUS[(id % 5) as usize]
}

/// Append one event (without its newline) of about `size` bytes to `out`,
/// with its `level` and `status`.
pub fn write_event(out: &mut Vec<u8>, id: u64, size: usize) {
    let start = out.len();
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(num.format(id).as_bytes());
    out.extend_from_slice(b",\"level\":\"");
    out.extend_from_slice(level(id).as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    out.extend_from_slice(num.format(status(id)).as_bytes());
    out.extend_from_slice(b",\"host\":\"loadtest\",\"msg\":\"");
    let used = out.len() - start + 2;
    let pad = size.saturating_sub(used);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_asked_size_and_their_id() {
        let mut buf = Vec::new();
        write_event(&mut buf, 123_456, 200);
        assert_eq!(buf.len(), 200);
        assert_eq!(seq_of(&buf), Some(123_456));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["seq"], 123_456);
        assert!(v["status"].as_u64().unwrap() >= 200);
    }

    #[test]
    fn dead_letters_yield_the_wrapped_id() {
        let line = br#"{"dead_letter":{"status":400},"event":{"seq":77,"level":"info"}}"#;
        assert_eq!(seq_of(line), Some(77));
        assert_eq!(seq_of(b"{\"message\":\"no id\"}"), None);
    }

    #[test]
    fn comparison_finds_lost_duplicated_and_unexpected_ids() {
        let t = Tracker::new();
        let first = t.reserve(5);
        t.mark_sent(first, 4);
        let mut lines = Vec::new();
        for id in [0u64, 1, 1, 3, 4] {
            write_event(&mut lines, id, 80);
            lines.push(b'\n');
        }
        lines.extend_from_slice(b"garbage\n");
        assert_eq!(t.record_lines(&lines), 6);
        let c = t.compare();
        assert_eq!(c.sent, 4);
        assert_eq!(c.received_unique, 4);
        assert_eq!(c.lost_ids, vec![2]);
        assert_eq!(c.duplicated_ids, vec![1]);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.unexpected, 1);
        assert_eq!(c.unreadable, 1);
    }

    #[test]
    fn checks_find_altered_lines_and_lines_out_of_their_connections_order() {
        let t = Tracker::new();
        t.check(80, 2);
        // Connection 0 sends ids 0-1 and 4-5, connection 1 ids 2-3.
        for (first, conn) in [(0, 0), (2, 1), (4, 0)] {
            assert_eq!(t.reserve(2), first);
            t.own(first, conn);
            t.mark_sent(first, 2);
        }
        let mut lines = Vec::new();
        for id in [2u64, 0, 4, 1, 3, 5] {
            write_event(&mut lines, id, 80);
            if id == 5 {
                let at = lines.len() - 3;
                lines[at] = b'y';
            }
            lines.push(b'\n');
        }
        t.record_lines(&lines);
        let c = t.compare();
        // 1 after 4 on connection 0; connections interleaving is no fault.
        assert_eq!(c.out_of_order, 1);
        assert_eq!(c.altered, 1);
        assert_eq!(c.lost, 0);
    }
}
