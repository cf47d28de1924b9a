//! Persistent queue throughput next to a plain sequential write on the same
//! disk (the `dd bs=1M conv=fdatasync` of this process).
//!
//! Three workloads over the same 64 MiB of 200-byte events, in a directory
//! under `target/` (the disk sluice's `data_dir` would normally live on):
//! - `sequential_write`: 1 MiB `write`s of prepared bytes, one fdatasync;
//! - `spill_write`: encode the events into frames (1000 events each, CRC32C)
//!   and append them to a fresh queue, rotating 64 MiB segments, then sync
//!   (what the spill writer does per group commit under `fsync: interval`);
//! - `drain_read`: read every frame back, check its CRC, split it into
//!   events, and commit the position (the read-ahead and the committer).
//!
//! The machine's speed drifts, so the rounds interleave the workloads and
//! the report gives medians and same-run ratios. Reads are mostly served
//! from the page cache, as they are when a backlog drains soon after it
//! was written.
//!
//! `cargo bench --bench queue` (criterion, then the interleaved report);
//! `cargo bench --bench queue -- --interleaved-only` skips criterion.

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use sluice::event::Event;
use sluice::queue::disk::{DiskQueue, now_ms};
use sluice::queue::frame;

const TOTAL: usize = 64 << 20;
const EVENT_BYTES: usize = 200;
const FRAME_EVENTS: usize = 1000;
const SEGMENT: u64 = 64 << 20;

fn events() -> Vec<Event> {
    let n = TOTAL / EVENT_BYTES;
    (0..n)
        .map(|i| {
            let head = format!("{{\"seq\":{i},\"host\":\"web-01\",\"msg\":\"");
            let pad = EVENT_BYTES - head.len() - 2;
            Event::json(Bytes::from(format!("{head}{}\"}}", "x".repeat(pad))))
        })
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("queue-bench")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

fn sequential_write(dir: &Path, data: &[u8]) {
    let path = dir.join("plain.bin");
    let mut f = std::fs::File::create(&path).expect("create");
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).expect("write");
    }
    f.sync_data().expect("sync");
    drop(f);
    std::fs::remove_file(path).expect("remove");
}

fn spill_write(dir: &Path, events: &[Event]) -> DiskQueue {
    let _ = std::fs::remove_dir_all(dir);
    let (q, _) = DiskQueue::open(dir, SEGMENT).expect("open");
    let mut buf = Vec::with_capacity(FRAME_EVENTS * (EVENT_BYTES + 8));
    for chunk in events.chunks(FRAME_EVENTS) {
        buf.clear();
        frame::encode(chunk, false, now_ms(), &mut buf);
        q.append(&buf, chunk.len() as u64).expect("append");
    }
    q.sync().expect("sync");
    q
}

fn drain_read(q: &DiskQueue) -> usize {
    let mut n = 0;
    loop {
        let r = q.read(8).expect("read");
        let Some(last) = r.frames.last() else { break };
        let end = last.end;
        let events: usize = r.frames.iter().map(|f| f.events.len()).sum();
        n += events;
        q.commit(end, events as u64, false).expect("commit");
    }
    n
}

fn criterion_benches(c: &mut Criterion, events: &[Event], plain: &[u8]) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    let dir = scratch("criterion");
    g.bench_function("sequential_write", |b| {
        b.iter(|| sequential_write(&dir, plain))
    });
    let qdir = dir.join("q");
    g.bench_function("spill_write", |b| {
        b.iter(|| black_box(spill_write(&qdir, events)))
    });
    g.bench_function("drain_read", |b| {
        b.iter_batched(
            || spill_write(&qdir, events),
            |q| black_box(drain_read(&q)),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn interleaved(events: &[Event], plain: &[u8]) {
    let dir = scratch("interleaved");
    let qdir = dir.join("q");
    let rounds = 9;
    let (mut seq, mut write, mut read) = (Vec::new(), Vec::new(), Vec::new());
    let mb = TOTAL as f64 / (1 << 20) as f64;
    for _ in 0..rounds {
        let t = Instant::now();
        sequential_write(&dir, plain);
        seq.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let q = spill_write(&qdir, events);
        write.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n = drain_read(&q);
        read.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(n, events.len());
    }
    let (s, w, r) = (median(seq), median(write), median(read));
    println!("\ninterleaved, {rounds} rounds of {mb:.0} MiB, medians:");
    println!("  sequential_write {s:8.0} MiB/s  (baseline)");
    println!("  spill_write      {w:8.0} MiB/s  {:.2}x baseline", w / s);
    println!("  drain_read       {r:8.0} MiB/s  {:.2}x baseline", r / s);
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events = events();
    let plain: Vec<u8> = events.iter().flat_map(|e| e.raw.iter().copied()).collect();
    if !args.iter().any(|a| a == "--interleaved-only") {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c, &events, &plain);
        c.final_summary();
    }
    if !args.iter().any(|a| a == "--list" || a == "--profile-time") {
        interleaved(&events, &plain);
    }
}
