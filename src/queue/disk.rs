//! The on-disk queue of one destination: segments, ledger, lock, recovery.
//!
//! All file I/O here blocks; callers run it on blocking threads. Appending,
//! reading and committing each have their own lock, so the writer, the
//! read-ahead and the committer never wait on each other's I/O; the segment
//! list they share is locked only to look up or update one entry. Counts
//! are atomics, readable without any lock.
//!
//! Recovery on open, in constant memory whatever the queue's size:
//! - segments wholly before the acknowledged position are deleted;
//! - the newest segment's torn tail (a frame cut short by a crash) is
//!   truncated;
//! - damage elsewhere (a frame whose CRC fails, bytes that cannot be
//!   framed) is skipped and its events counted as corrupt; the damaged
//!   segment is moved to `quarantine/` and replaced by a copy holding only
//!   its good frames, so nothing readable is lost and startup continues.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::frame::{self, HEADER};
use super::ledger::{Ledger, Position};
use super::segment::{self, Scanned};
use crate::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{dir}: another process is using this queue (its lock file is held)")]
    Locked { dir: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn at(path: &Path) -> impl Fn(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What opening the queue found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Events waiting (recovered from a previous run).
    pub events: u64,
    pub bytes: u64,
    /// Events in frames whose CRC failed, skipped.
    pub corrupt_events: u64,
    /// Bytes that could not be framed at all, skipped.
    pub unreadable_bytes: u64,
    /// Bytes of a torn final write, truncated.
    pub torn_bytes: u64,
    /// Damaged segments moved aside.
    pub quarantined: Vec<PathBuf>,
}

/// Frames read from the queue.
#[derive(Debug, Default)]
pub struct Read {
    pub frames: Vec<ReadFrame>,
    /// Events in frames skipped because their CRC failed, or in bytes that
    /// could not be framed at all.
    pub corrupt_events: u64,
}

#[derive(Debug)]
pub struct ReadFrame {
    /// Empty for a frame skipped as corrupt (it still has to be committed past).
    pub events: Vec<Event>,
    /// Where the next frame starts: commit this once the events are done.
    pub end: Position,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    /// Bytes written and complete: readers never go past this.
    len: u64,
}

struct Writer {
    file: File,
    id: u64,
    len: u64,
    /// Data appended since the last sync.
    dirty: bool,
    /// A segment was created since the last sync: the directory needs one.
    dir_dirty: bool,
}

struct Reader {
    pos: Position,
    file: Option<(u64, File)>,
}

struct Committed {
    ledger: Ledger,
    pos: Position,
    dirty: bool,
}

pub struct DiskQueue {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Mutex<VecDeque<Segment>>,
    writer: Mutex<Writer>,
    reader: Mutex<Reader>,
    committed: Mutex<Committed>,
    /// Events not yet committed.
    events: AtomicU64,
    /// Events not yet read.
    unread: AtomicU64,
    /// Bytes of all segment files.
    bytes: AtomicU64,
    _lock: File,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent (lengths are
    // updated only after the I/O they describe succeeded), so recover.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Take the queue's lock file, or say who holds it.
fn take_lock(dir: &Path) -> Result<File, QueueError> {
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(at(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(QueueError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(at(&lock_path)(e)),
    }
}

impl DiskQueue {
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(DiskQueue, OpenReport), QueueError> {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let lock = take_lock(dir)?;
        let ledger_path = dir.join("ledger");
        let (mut ledger, committed) = Ledger::open(&ledger_path).map_err(at(&ledger_path))?;
        let ids = segment::list(dir).map_err(at(dir))?;
        let mut report = OpenReport::default();
        let mut committed = committed.unwrap_or(Position {
            segment: ids.first().copied().unwrap_or(1),
            offset: 0,
        });
        let mut segments = VecDeque::new();
        let mut buf = Vec::new();
        let newest = ids.last().copied();
        for &id in &ids {
            let path = segment::path(dir, id);
            if id < committed.segment {
                // Every frame in it was acknowledged before the last run ended.
                std::fs::remove_file(&path).map_err(at(&path))?;
                continue;
            }
            let from = if id == committed.segment {
                committed.offset
            } else {
                0
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(at(&path))?;
            let len = file.metadata().map_err(at(&path))?.len();
            let mut good_events = 0u64;
            let mut damaged = false;
            let mut torn_at = None;
            segment::scan(&file, len, from.min(len), &mut buf, |s, _| {
                match s {
                    Scanned::Frame { header, .. } => good_events += u64::from(header.count),
                    Scanned::Corrupt { header, .. } => {
                        report.corrupt_events += u64::from(header.count);
                        damaged = true;
                    }
                    Scanned::Unreadable { offset, end } => {
                        if Some(id) == newest && end == len {
                            // A write cut short by a crash: never acknowledged.
                            torn_at = Some(offset);
                            report.torn_bytes += end - offset;
                        } else {
                            report.unreadable_bytes += end - offset;
                            damaged = true;
                        }
                    }
                }
                true
            })
            .map_err(at(&path))?;
            let mut len = len;
            if let Some(cut) = torn_at {
                file.set_len(cut).map_err(at(&path))?;
                file.sync_all().map_err(at(&path))?;
                len = cut;
            }
            if id == committed.segment && committed.offset > len {
                // The ledger was synced but the data before it was not (a
                // machine crash under `fsync: interval`): resume at the end
                // of what survived, or new frames would land before it.
                committed.offset = len;
            }
            if damaged {
                let kept = salvage(dir, id, &file, len, from, &mut buf)?;
                report.quarantined.push(kept.quarantined);
                len = kept.len;
                if id == committed.segment {
                    // The clean copy starts at its first unacknowledged frame.
                    committed.offset = 0;
                    ledger.commit(committed, true).map_err(at(&ledger_path))?;
                }
            }
            report.events += good_events;
            report.bytes += len;
            segments.push_back(Segment { id, len });
        }
        if segments.is_empty() {
            let id = ids.last().map_or(committed.segment.max(1), |l| l + 1);
            let path = segment::path(dir, id);
            File::create(&path).map_err(at(&path))?;
            segments.push_back(Segment { id, len: 0 });
            committed = Position {
                segment: id,
                offset: 0,
            };
        } else if committed.segment < segments[0].id {
            committed = Position {
                segment: segments[0].id,
                offset: 0,
            };
        }
        let active = segments
            .back()
            .copied()
            .unwrap_or(Segment { id: 1, len: 0 });
        let active_path = segment::path(dir, active.id);
        let file = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(at(&active_path))?;
        Ok((
            DiskQueue {
                dir: dir.to_path_buf(),
                segment_bytes: segment_bytes.max(4096),
                segments: Mutex::new(segments),
                writer: Mutex::new(Writer {
                    file,
                    id: active.id,
                    len: active.len,
                    dirty: false,
                    dir_dirty: true,
                }),
                reader: Mutex::new(Reader {
                    pos: committed,
                    file: None,
                }),
                committed: Mutex::new(Committed {
                    ledger,
                    pos: committed,
                    dirty: false,
                }),
                events: AtomicU64::new(report.events),
                unread: AtomicU64::new(report.events),
                bytes: AtomicU64::new(report.bytes),
                _lock: lock,
            },
            report,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Events waiting (not yet committed).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Acquire)
    }

    /// Events not yet read.
    pub fn unread(&self) -> u64 {
        self.unread.load(Ordering::Acquire)
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Append one encoded frame holding `events` events. On error nothing
    /// of the frame is left behind.
    pub fn append(&self, frame: &[u8], events: u64) -> io::Result<()> {
        let mut w = lock(&self.writer);
        if w.len > 0 && w.len + frame.len() as u64 > self.segment_bytes {
            // Seal the active segment before starting the next.
            w.file.sync_data()?;
            let id = w.id + 1;
            let path = segment::path(&self.dir, id);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            w.file = file;
            w.id = id;
            w.len = 0;
            w.dir_dirty = true;
            lock(&self.segments).push_back(Segment { id, len: 0 });
        }
        if let Err(e) = w.file.write_all(frame) {
            // Do not leave half a frame behind (a full disk, say).
            let _ = w.file.set_len(w.len);
            return Err(e);
        }
        w.len += frame.len() as u64;
        w.dirty = true;
        let (id, len) = (w.id, w.len);
        // Counts first, then the length that lets readers see the frame, so
        // nobody reads an event that is not counted yet.
        self.events.fetch_add(events, Ordering::AcqRel);
        self.unread.fetch_add(events, Ordering::AcqRel);
        self.bytes.fetch_add(frame.len() as u64, Ordering::AcqRel);
        if let Some(s) = lock(&self.segments).iter_mut().rev().find(|s| s.id == id) {
            s.len = len;
        }
        Ok(())
    }

    /// Make everything appended and committed so far durable.
    pub fn sync(&self) -> io::Result<()> {
        {
            let mut w = lock(&self.writer);
            if w.dirty {
                w.file.sync_data()?;
                w.dirty = false;
            }
            if w.dir_dirty {
                File::open(&self.dir)?.sync_all()?;
                w.dir_dirty = false;
            }
        }
        let mut c = lock(&self.committed);
        if c.dirty {
            c.ledger.sync()?;
            c.dirty = false;
        }
        Ok(())
    }

    /// Read up to `max_frames` frames past the read position. Frames whose
    /// CRC fails come back with no events (and are counted), so committing
    /// past them works like any other.
    pub fn read(&self, max_frames: usize) -> io::Result<Read> {
        let mut r = lock(&self.reader);
        let mut out = Read::default();
        while out.frames.len() < max_frames {
            let (seg, next) = {
                let segs = lock(&self.segments);
                // The reader's segment may be gone: a commit at its very
                // end deletes it. Reading goes on in the next one.
                let Some(seg) = segs.iter().find(|s| s.id >= r.pos.segment).copied() else {
                    break;
                };
                (seg, segs.iter().find(|s| s.id > seg.id).map(|s| s.id))
            };
            if seg.id != r.pos.segment {
                r.pos = Position {
                    segment: seg.id,
                    offset: 0,
                };
            }
            if r.pos.offset >= seg.len {
                match next {
                    Some(next) => {
                        r.pos = Position {
                            segment: next,
                            offset: 0,
                        };
                        continue;
                    }
                    None => {
                        // Count anything unread but unreachable (it was in
                        // bytes skipped as unreadable). The writer may be
                        // mid-append: its counts go up before the length does.
                        let w = lock(&self.writer);
                        let left = self.unread.load(Ordering::Acquire);
                        if w.id == seg.id && w.len <= r.pos.offset && left > 0 {
                            out.corrupt_events += left;
                            self.unread.fetch_sub(left, Ordering::AcqRel);
                            self.events.fetch_sub(left, Ordering::AcqRel);
                        }
                        break;
                    }
                }
            }
            if r.file.as_ref().is_none_or(|(id, _)| *id != seg.id) {
                r.file = Some((seg.id, File::open(segment::path(&self.dir, seg.id))?));
            }
            let Some((_, file)) = r.file.as_ref() else {
                break;
            };
            let mut head = [0u8; HEADER];
            file.read_exact_at(&mut head, r.pos.offset)?;
            let Some(h) =
                frame::header(&head).filter(|h| r.pos.offset + h.frame_len as u64 <= seg.len)
            else {
                // Nothing after this point can be framed: skip the rest of it.
                tracing::error!(
                    segment = seg.id,
                    offset = r.pos.offset,
                    "unreadable data in the persistent queue; skipping to the next segment"
                );
                r.pos.offset = seg.len;
                continue;
            };
            let mut buf = frame::read_buffer(h.frame_len);
            file.read_exact_at(&mut buf, r.pos.offset)?;
            let end = Position {
                segment: seg.id,
                offset: r.pos.offset + h.frame_len as u64,
            };
            r.pos = end;
            let count = u64::from(h.count);
            self.unread
                .fetch_sub(count.min(self.unread()), Ordering::AcqRel);
            let events = frame::crc_ok(&buf, &h)
                .then(|| frame::decode(buf.freeze(), &h))
                .flatten();
            match events {
                Some(events) => out.frames.push(ReadFrame { events, end }),
                None => {
                    out.corrupt_events += count;
                    self.events
                        .fetch_sub(count.min(self.events()), Ordering::AcqRel);
                    out.frames.push(ReadFrame {
                        events: Vec::new(),
                        end,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Everything before `pos` is done with (`events` of them, besides any
    /// already counted as corrupt). Deletes segments wholly before it.
    pub fn commit(&self, pos: Position, events: u64, sync: bool) -> io::Result<()> {
        {
            let mut c = lock(&self.committed);
            if pos <= c.pos {
                return Ok(());
            }
            c.ledger.commit(pos, sync)?;
            c.pos = pos;
            c.dirty = !sync;
        }
        self.events
            .fetch_sub(events.min(self.events()), Ordering::AcqRel);
        loop {
            let first = {
                let segs = lock(&self.segments);
                if segs.len() < 2 {
                    break;
                }
                segs[0]
            };
            let done =
                first.id < pos.segment || (first.id == pos.segment && pos.offset >= first.len);
            if !done {
                break;
            }
            let path = segment::path(&self.dir, first.id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            lock(&self.segments).pop_front();
            self.bytes
                .fetch_sub(first.len.min(self.bytes()), Ordering::AcqRel);
        }
        Ok(())
    }

    /// When the oldest waiting frame was written (ms since the epoch).
    pub fn oldest_ms(&self) -> Option<u64> {
        if self.events() == 0 {
            return None;
        }
        let mut pos = lock(&self.committed).pos;
        {
            // The committed position may be the end of a segment (or of
            // one already deleted): the oldest frame starts the next.
            let segs = lock(&self.segments);
            let seg = segs
                .iter()
                .find(|s| s.id > pos.segment || (s.id == pos.segment && pos.offset < s.len))?;
            if seg.id != pos.segment {
                pos = Position {
                    segment: seg.id,
                    offset: 0,
                };
            }
        }
        let file = File::open(segment::path(&self.dir, pos.segment)).ok()?;
        let mut head = [0u8; HEADER];
        file.read_exact_at(&mut head, pos.offset).ok()?;
        frame::header(&head).map(|h| h.time_ms)
    }
}

struct Salvaged {
    len: u64,
    quarantined: PathBuf,
}

/// Replace a damaged segment with a copy of its good frames from `from` on;
/// the original goes to `quarantine/`.
fn salvage(
    dir: &Path,
    id: u64,
    file: &File,
    len: u64,
    from: u64,
    buf: &mut Vec<u8>,
) -> Result<Salvaged, QueueError> {
    let path = segment::path(dir, id);
    let tmp = dir.join(format!("{id:020}.seg.tmp"));
    let mut out = File::create(&tmp).map_err(at(&tmp))?;
    let mut kept = 0u64;
    let mut write_err = None;
    segment::scan(file, len, from.min(len), buf, |s, bytes| {
        if let Scanned::Frame { .. } = s {
            match out.write_all(bytes) {
                Ok(()) => kept += bytes.len() as u64,
                Err(e) => {
                    write_err = Some(e);
                    return false;
                }
            }
        }
        true
    })
    .map_err(at(&path))?;
    if let Some(e) = write_err {
        return Err(at(&tmp)(e));
    }
    out.sync_all().map_err(at(&tmp))?;
    let qdir = dir.join("quarantine");
    std::fs::create_dir_all(&qdir).map_err(at(&qdir))?;
    let quarantined = qdir.join(format!("{id:020}.seg.{}", now_ms()));
    std::fs::rename(&path, &quarantined).map_err(at(&path))?;
    std::fs::rename(&tmp, &path).map_err(at(&tmp))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))?;
    tracing::error!(segment = %path.display(), moved_to = %quarantined.display(), "damaged persistent queue segment quarantined; its good records were kept");
    Ok(Salvaged {
        len: kept,
        quarantined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::frame;
    use bytes::Bytes;

    fn frame_of(ids: std::ops::Range<u32>) -> (Vec<u8>, u64) {
        let events: Vec<Event> = ids
            .clone()
            .map(|i| Event::json(Bytes::from(format!("{{\"i\":{i}}}"))))
            .collect();
        let mut out = Vec::new();
        frame::encode(&events, false, now_ms(), &mut out);
        (out, events.len() as u64)
    }

    fn ids(r: &Read) -> Vec<u32> {
        r.frames
            .iter()
            .flat_map(|f| &f.events)
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.raw).unwrap();
                v["i"].as_u64().unwrap() as u32
            })
            .collect()
    }

    #[test]
    fn appends_reads_commits_rotates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (q, report) = DiskQueue::open(dir.path(), 4096).unwrap();
        assert_eq!(report.events, 0);
        for i in 0..40 {
            let (f, n) = frame_of(i * 10..i * 10 + 10);
            q.append(&f, n).unwrap();
        }
        q.sync().unwrap();
        assert!(segment::list(dir.path()).unwrap().len() > 1, "rotated");
        assert_eq!((q.events(), q.unread()), (400, 400));
        let r = q.read(5).unwrap();
        assert_eq!(ids(&r), (0..50).collect::<Vec<_>>());
        q.commit(r.frames[4].end, 50, true).unwrap();
        assert_eq!((q.events(), q.unread()), (350, 350));
        drop(q);
        // Reopen: reading resumes at the acknowledged position.
        let (q, report) = DiskQueue::open(dir.path(), 4096).unwrap();
        assert_eq!(report.events, 350);
        let r = q.read(100).unwrap();
        assert_eq!(ids(&r), (50..400).collect::<Vec<_>>());
        q.commit(r.frames.last().unwrap().end, 350, true).unwrap();
        assert_eq!(q.events(), 0);
        assert_eq!(
            segment::list(dir.path()).unwrap().len(),
            1,
            "consumed segments deleted"
        );
    }

    #[test]
    fn a_second_process_cannot_share_a_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (_q, _) = DiskQueue::open(dir.path(), 4096).unwrap();
        assert!(matches!(
            DiskQueue::open(dir.path(), 4096),
            Err(QueueError::Locked { .. })
        ));
    }

    #[test]
    fn a_torn_tail_is_truncated_and_is_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (q, _) = DiskQueue::open(dir.path(), 1 << 20).unwrap();
            for i in 0..5 {
                let (f, n) = frame_of(i * 10..i * 10 + 10);
                q.append(&f, n).unwrap();
            }
        }
        let seg = segment::path(dir.path(), segment::list(dir.path()).unwrap()[0]);
        let len = std::fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let (q, report) = DiskQueue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.events, 40);
        assert_eq!(report.corrupt_events, 0);
        assert!(report.torn_bytes > 0);
        assert_eq!(ids(&q.read(10).unwrap()), (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn a_flipped_byte_is_skipped_counted_quarantined_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut offsets = Vec::new();
        {
            let (q, _) = DiskQueue::open(dir.path(), 1 << 20).unwrap();
            let mut at = 0;
            for i in 0..5 {
                let (f, n) = frame_of(i * 10..i * 10 + 10);
                offsets.push(at);
                at += f.len();
                q.append(&f, n).unwrap();
            }
        }
        let seg = segment::path(dir.path(), segment::list(dir.path()).unwrap()[0]);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[offsets[2] + HEADER + 3] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let (q, report) = DiskQueue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.corrupt_events, 10);
        assert_eq!(report.events, 40);
        assert_eq!(report.quarantined.len(), 1);
        assert!(report.quarantined[0].exists());
        let mut want: Vec<u32> = (0..20).collect();
        want.extend(30..50);
        assert_eq!(ids(&q.read(10).unwrap()), want);
    }

    /// Model-based: random appends, reads, commits and reopens behave like
    /// an in-memory queue whose read cursor falls back to the last commit
    /// on reopen, with counts that always match.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append(u32),
            Read(usize),
            /// Commit this many of the frames read and not yet committed.
            Commit(usize),
            Reopen,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (1u32..40).prop_map(Op::Append),
                3 => (1usize..6).prop_map(Op::Read),
                3 => (1usize..6).prop_map(Op::Commit),
                1 => Just(Op::Reopen),
            ]
        }

        fn frame_ids(f: &ReadFrame) -> Vec<u32> {
            f.events
                .iter()
                .map(|e| {
                    let v: serde_json::Value = serde_json::from_slice(&e.raw).unwrap();
                    v["i"].as_u64().unwrap() as u32
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]
            #[test]
            fn behaves_like_a_queue(ops in prop::collection::vec(op(), 1..80)) {
                let dir = tempfile::tempdir().unwrap();
                // Small segments, so rotation and deletion happen often.
                let open = || DiskQueue::open(dir.path(), 4096).unwrap();
                let (mut q, _) = open();
                let mut next = 0u32;
                // Uncommitted frames in order; the first `read` have been read.
                let mut frames: VecDeque<Vec<u32>> = VecDeque::new();
                let mut ends: VecDeque<Position> = VecDeque::new();
                let mut read = 0usize;
                for op in ops {
                    match op {
                        Op::Append(n) => {
                            let (f, count) = frame_of(next..next + n);
                            q.append(&f, count).unwrap();
                            frames.push_back((next..next + n).collect());
                            next += n;
                        }
                        Op::Read(k) => {
                            let r = q.read(k).unwrap();
                            let want: Vec<Vec<u32>> = frames.iter().skip(read).take(k).cloned().collect();
                            let got: Vec<Vec<u32>> = r.frames.iter().map(frame_ids).collect();
                            prop_assert_eq!(got, want);
                            prop_assert_eq!(r.corrupt_events, 0);
                            read += r.frames.len();
                            ends.extend(r.frames.iter().map(|f| f.end));
                        }
                        Op::Commit(c) => {
                            let c = c.min(read);
                            if c > 0 {
                                let events: usize = frames.iter().take(c).map(Vec::len).sum();
                                q.commit(ends[c - 1], events as u64, false).unwrap();
                                frames.drain(..c);
                                ends.drain(..c);
                                read -= c;
                            }
                        }
                        Op::Reopen => {
                            drop(q);
                            let (q2, report) = open();
                            q = q2;
                            let total: usize = frames.iter().map(Vec::len).sum();
                            prop_assert_eq!(report.events, total as u64);
                            prop_assert_eq!(report.corrupt_events, 0);
                            read = 0;
                            ends.clear();
                        }
                    }
                    let total: usize = frames.iter().map(Vec::len).sum();
                    let unread: usize = frames.iter().skip(read).map(Vec::len).sum();
                    prop_assert_eq!(q.events(), total as u64);
                    prop_assert_eq!(q.unread(), unread as u64);
                }
                // Consumed segments are deleted: what is left on disk is
                // about what is waiting, never the whole history.
                if frames.is_empty() && read == 0 {
                    prop_assert!(segment::list(dir.path()).unwrap().len() <= 2);
                }
            }
        }
    }
}
