//! Partitioned batches (`batch.partition_by`, `batch.time_key`): events of
//! one key share a batch and only they, like Fluentd's chunk keys and
//! timekey, so a destination can name a batch by its first event (an HTTP
//! URL, a file) and a peer that indexes by key gets one key per request.
//!
//! Each open partition is a job filling up on its own, with its own size
//! limits and flush time. At most `max_partitions` are open: a new key
//! past that flushes the oldest partition first, so many keys cost smaller
//! batches, never unbounded memory.
//!
//! A key is the raw JSON text of each field (so `1` and `"1"` differ, and
//! nothing is parsed), then the index of the event's time window. Events
//! from the persistent queue and from memory never share a job (see
//! `Batcher::absorb`), so that is part of the key too.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::job::Job;
use super::settings::{BatchConfig, Flush};
use crate::codec::fields::{Field, FieldReader, FieldScratch};
use crate::codec::time::{self, EventTime};
use crate::event::{Batch, Event};
use crate::lane::{Consumer, Taken};
use crate::metrics::DropReason;

pub const DEFAULT_MAX_PARTITIONS: usize = 1000;
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// What a partition's key is made of.
#[derive(Debug)]
pub struct PartitionKeys {
    reader: FieldReader,
    fields: Vec<Field>,
    /// The time field and the window in seconds.
    time: Option<(Field, i64)>,
    pub max_partitions: usize,
}

impl PartitionKeys {
    /// `None` when `batch` asks for no partitioning; `Err` names the key
    /// that is wrong.
    pub fn new(batch: &BatchConfig) -> Result<Option<PartitionKeys>, String> {
        if batch.time_window.is_some() && batch.time_key.is_none() {
            return Err("batch.time_window applies only with batch.time_key".into());
        }
        let partitioned = batch.partition_by.is_some() || batch.time_key.is_some();
        if !partitioned {
            if batch.max_partitions.is_some() {
                return Err(
                    "batch.max_partitions applies only with batch.partition_by or batch.time_key"
                        .into(),
                );
            }
            return Ok(None);
        }
        let mut reader = FieldReader::new();
        let names = batch.partition_by.as_deref().unwrap_or_default();
        if batch.partition_by.is_some() && names.is_empty() {
            return Err("batch.partition_by names no field".into());
        }
        let fields = names
            .iter()
            .map(|f| {
                reader
                    .add(f)
                    .map_err(|e| format!("batch.partition_by: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let time = match &batch.time_key {
            Some(k) => {
                let window = batch.time_window.map_or(DEFAULT_WINDOW, |w| w.get());
                if window < Duration::from_secs(1) {
                    return Err("batch.time_window must be at least 1s".into());
                }
                let field = reader.add(k).map_err(|e| format!("batch.time_key: {e}"))?;
                Some((field, window.as_secs() as i64))
            }
            None => None,
        };
        let max_partitions = batch.max_partitions.unwrap_or(DEFAULT_MAX_PARTITIONS);
        if max_partitions == 0 {
            return Err("batch.max_partitions must be at least 1".into());
        }
        Ok(Some(PartitionKeys {
            reader,
            fields,
            time,
            max_partitions,
        }))
    }

    /// Write `e`'s key into `out`; the end of its time window (Unix
    /// seconds) when there is one.
    fn key(&self, e: &Event, s: &mut FieldScratch, now: i64, out: &mut String) -> Option<i64> {
        out.clear();
        self.reader.locate(e, s);
        for f in &self.fields {
            if let Some(raw) = self.reader.raw(e, s, *f) {
                out.push_str(&String::from_utf8_lossy(raw));
            }
            out.push('\u{1f}');
        }
        let (field, window) = self.time?;
        let secs = match time::read(self.reader.raw(e, s, field)) {
            EventTime::At(ns) => ns.div_euclid(1_000_000_000),
            EventTime::Absent | EventTime::Unreadable => now,
        };
        let index = secs.div_euclid(window);
        out.push_str(itoa::Buffer::new().format(index));
        Some((index + 1) * window)
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One open partition.
struct Open {
    id: u64,
    job: Job,
    bytes: usize,
    created: Instant,
    /// When its time window is over (plus `timeout`, for late events):
    /// fixed when it opens, on the monotonic clock.
    window_over: Option<Instant>,
}

pub(crate) struct Partitioned {
    lane: Consumer,
    max_events: usize,
    max_bytes: usize,
    timeout: Duration,
    flush: Flush,
    keys: Arc<PartitionKeys>,
    scratch: FieldScratch,
    key: String,
    open: HashMap<String, Open>,
    /// Keys in the order their partitions opened, for eviction; entries of
    /// partitions since flushed are skipped (and pruned now and then).
    order: VecDeque<(u64, String)>,
    next_id: u64,
    ready: VecDeque<Job>,
    /// Events in open partitions (at most `hold_limit`).
    held: usize,
}

impl Partitioned {
    pub fn new(
        lane: Consumer,
        max_events: usize,
        max_bytes: usize,
        timeout: Duration,
        flush: Flush,
        keys: Arc<PartitionKeys>,
    ) -> Self {
        Partitioned {
            lane,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            timeout,
            flush,
            scratch: keys.reader.scratch(),
            keys,
            key: String::new(),
            open: HashMap::new(),
            order: VecDeque::new(),
            next_id: 0,
            ready: VecDeque::new(),
            held: 0,
        }
    }

    /// The next job (one key's events), or `None` once the lane is closed
    /// and everything is handed out.
    pub async fn next(&mut self) -> Option<Job> {
        loop {
            if let Some(j) = self.ready.pop_front() {
                return Some(j);
            }
            if let Some(b) = self.lane.try_pop() {
                self.absorb(b);
                continue;
            }
            if self.flush == Flush::Immediate && !self.open.is_empty() {
                self.flush_all();
                continue;
            }
            if self.open.is_empty() {
                let b = self.lane.pop().await?;
                self.absorb(b);
                continue;
            }
            match self.earliest_deadline() {
                Some(deadline) => tokio::select! {
                    b = self.lane.pop() => match b {
                        Some(b) => self.absorb(b),
                        None => self.flush_all(),
                    },
                    _ = tokio::time::sleep_until(deadline) => self.flush_due(Instant::now()),
                },
                None => match self.lane.pop().await {
                    Some(b) => self.absorb(b),
                    None => self.flush_all(),
                },
            }
        }
    }

    fn deadline(&self, o: &Open) -> Option<Instant> {
        match self.flush {
            Flush::Interval => Some(o.created + self.timeout),
            Flush::Immediate => Some(o.created),
            Flush::Lazy => o.window_over,
        }
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.open.values().filter_map(|o| self.deadline(o)).min()
    }

    fn flush_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| self.deadline(o).is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.flush_key(&k);
        }
    }

    fn flush_all(&mut self) {
        // Oldest first, so a key's batches keep their order.
        while let Some((id, k)) = self.order.pop_front() {
            if self.open.get(&k).is_some_and(|o| o.id == id) {
                self.flush_key(&k);
            }
        }
        self.order.clear();
    }

    fn flush_key(&mut self, key: &str) {
        if let Some(o) = self.open.remove(key) {
            self.held -= o.job.len();
            if !o.job.is_empty() {
                self.ready.push_back(o.job);
            }
        }
    }

    /// Make room for one more partition: flush the oldest open one.
    fn evict(&mut self) {
        while let Some((id, k)) = self.order.pop_front() {
            if self.open.get(&k).is_some_and(|o| o.id == id) {
                self.flush_key(&k);
                return;
            }
        }
        // Unreachable while `order` lists every open partition; never spin.
        if let Some(k) = self.open.keys().next().cloned() {
            self.flush_key(&k);
        }
    }

    fn absorb(&mut self, taken: Taken) {
        let Taken {
            batch:
                Batch {
                    events,
                    ack,
                    persisted,
                    sender,
                },
            mut lease,
        } = taken;
        let (secs, now) = (now_secs(), Instant::now());
        for e in events {
            let mut key = std::mem::take(&mut self.key);
            let window_end = self.keys.key(&e, &mut self.scratch, secs, &mut key);
            key.push(if persisted { 'p' } else { 'm' });
            let size = e.raw.len() + 1;
            let full_before = self
                .open
                .get(&key)
                .is_some_and(|o| !o.job.is_empty() && o.bytes + size > self.max_bytes);
            if full_before {
                self.flush_key(&key);
            }
            if !self.open.contains_key(&key) {
                if self.open.len() >= self.keys.max_partitions {
                    self.evict();
                }
                let id = self.next_id;
                self.next_id += 1;
                self.order.push_back((id, key.clone()));
                self.open.insert(
                    key.clone(),
                    Open {
                        id,
                        job: Job::default(),
                        bytes: 0,
                        created: now,
                        window_over: window_end.map(|end| {
                            now + Duration::from_secs(end.saturating_sub(secs).max(0) as u64)
                                + self.timeout
                        }),
                    },
                );
            }
            let full = match self.open.get_mut(&key) {
                Some(o) => {
                    o.job.push(e, ack.as_ref(), sender, &mut lease);
                    self.held += 1;
                    o.bytes += size;
                    o.job.len() >= self.max_events || o.bytes >= self.max_bytes
                }
                None => false,
            };
            if full {
                self.flush_key(&key);
            }
            self.key = key;
            while self.held >= super::batcher::hold_limit(&self.lane) && !self.open.is_empty() {
                self.evict();
            }
        }
        // Entries of partitions flushed by size pile up; drop them.
        if self.order.len() > 2 * self.open.len() + 64 {
            let open = &self.open;
            self.order
                .retain(|(id, k)| open.get(k).is_some_and(|o| o.id == *id));
        }
    }

    /// Give everything held back to the front of the lane (a retiring
    /// driver), newest first so the oldest ends up in front.
    pub fn requeue(&mut self) {
        let mut open: Vec<Open> = self.open.drain().map(|(_, o)| o).collect();
        open.sort_by_key(|o| std::cmp::Reverse(o.id));
        for o in open {
            o.job.requeue(&self.lane);
        }
        self.held = 0;
        while let Some(j) = self.ready.pop_back() {
            j.requeue(&self.lane);
        }
        self.order.clear();
    }

    /// Count everything held here and still in the lane as dropped.
    pub fn abandon(&mut self, reason: DropReason) {
        self.flush_all();
        let held = self.ready.drain(..).collect();
        super::batcher::abandon_with_lane(&self.lane, held, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::{Lane, LanePolicy};
    use crate::metrics::Metrics;
    use bytes::Bytes;

    fn keys(yaml: &str) -> Arc<PartitionKeys> {
        let b: BatchConfig = serde_saphyr::from_str(yaml).unwrap();
        Arc::new(PartitionKeys::new(&b).unwrap().unwrap())
    }

    async fn push(lane: &Arc<Lane>, lines: &[String]) {
        let events: Vec<Event> = lines
            .iter()
            .map(|l| Event::json(Bytes::from(l.clone())))
            .collect();
        let p = lane.producer();
        let r = p.reserve(events.len()).await.unwrap();
        p.commit(Batch::new(events), r);
    }

    fn lane() -> Arc<Lane> {
        Arc::new(Lane::new("d", LanePolicy::Block, 100_000, &Metrics::new()))
    }

    fn hosts(j: &Job) -> Vec<String> {
        j.events
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.raw).unwrap();
                format!("{}:{}", v["host"], v["n"])
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn each_batch_holds_one_key_in_order() {
        let lane = lane();
        let lines: Vec<String> = (0..9)
            .map(|n| format!(r#"{{"host":"h{}","n":{n}}}"#, n % 3))
            .collect();
        push(&lane, &lines).await;
        lane.close();
        let mut b = Partitioned::new(
            lane.consumer(),
            2,
            1 << 20,
            Duration::from_secs(1),
            Flush::Interval,
            keys("partition_by: [host]"),
        );
        let mut got = Vec::new();
        while let Some(j) = b.next().await {
            got.push(hosts(&j));
        }
        // Full at two events: h0 {0,3}, h1 {1,4}, h2 {2,5}; then the rest
        // when the lane closes, oldest partition first.
        assert_eq!(
            got,
            vec![
                vec![r#""h0":0"#, r#""h0":3"#],
                vec![r#""h1":1"#, r#""h1":4"#],
                vec![r#""h2":2"#, r#""h2":5"#],
                vec![r#""h0":6"#],
                vec![r#""h1":7"#],
                vec![r#""h2":8"#],
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_windows_split_and_lazy_waits_for_the_window() {
        let lane = lane();
        let now = now_secs();
        let lines = vec![
            format!(r#"{{"host":"a","n":0,"t":{}}}"#, now - 7200),
            format!(r#"{{"host":"a","n":1,"t":{}}}"#, now - 7199),
            format!(r#"{{"host":"a","n":2,"t":{}}}"#, now),
        ];
        push(&lane, &lines).await;
        let mut b = Partitioned::new(
            lane.consumer(),
            100,
            1 << 20,
            Duration::from_secs(1),
            Flush::Lazy,
            keys("time_key: t\ntime_window: 1h"),
        );
        // The window two hours ago is over: it goes after the timeout.
        let t = Instant::now();
        let j = b.next().await.unwrap();
        assert_eq!(hosts(&j), vec![r#""a":0"#, r#""a":1"#]);
        assert_eq!(t.elapsed(), Duration::from_secs(1));
        // The current window waits for its end (at most an hour).
        let j = b.next().await.unwrap();
        assert_eq!(hosts(&j), vec![r#""a":2"#]);
        assert!(t.elapsed() > Duration::from_secs(1));
        assert!(t.elapsed() <= Duration::from_secs(3602));
    }

    #[tokio::test(start_paused = true)]
    async fn many_keys_flush_the_oldest_and_memory_stays_bounded() {
        let lane = lane();
        let lines: Vec<String> = (0..10_000)
            .map(|n| format!(r#"{{"host":"h{n}","n":{n}}}"#))
            .collect();
        push(&lane, &lines).await;
        lane.close();
        let mut b = Partitioned::new(
            lane.consumer(),
            100,
            1 << 20,
            Duration::from_secs(60),
            Flush::Interval,
            keys("partition_by: [host]\nmax_partitions: 50"),
        );
        let mut n = 0;
        let mut most_open = 0;
        while let Some(j) = b.next().await {
            assert_eq!(j.len(), 1);
            n += 1;
            most_open = most_open.max(b.open.len());
            assert!(b.order.len() <= 2 * b.open.len() + 64 + 1);
        }
        assert_eq!(n, 10_000);
        assert!(most_open <= 50);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |y: &str| {
            let b: BatchConfig = serde_saphyr::from_str(y).unwrap();
            PartitionKeys::new(&b).unwrap_err()
        };
        assert!(err("time_window: 1h").contains("time_key"));
        assert!(err("max_partitions: 5").contains("partition_by"));
        assert!(err("partition_by: []").contains("no field"));
        assert!(err("partition_by: [\"a[\"]").contains("partition_by"));
        assert!(err("time_key: t\ntime_window: 10ms").contains("1s"));
    }
}
