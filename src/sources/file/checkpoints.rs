//! Where each file was read up to, kept in `<data_dir>/sources/<id>.checkpoints.json`
//! and written (temp file, then rename) only with offsets whose lines were
//! delivered or durably queued: a restart resumes there, neither losing
//! nor repeating more than the batch that was on its way.
//!
//! A file is known by its device and inode, and by a hash of its first
//! bytes (at most `HEAD` of them), so an inode the filesystem reuses for a
//! new file is not mistaken for the old one.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

/// Bytes hashed to tell a file from another that reused its inode.
pub const HEAD: usize = 256;

/// A checkpoint not seen by a scan for this long is forgotten (a rotated
/// file long deleted).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub id: FileId,
    /// Where the next line starts.
    pub offset: u64,
    /// The hash of the file's first `head_len` bytes (0: not read yet).
    pub head: u64,
    pub head_len: u64,
    /// The last path it was seen at (for people reading the file).
    pub path: PathBuf,
    /// Seconds since the epoch a scan last saw it.
    pub seen: u64,
}

pub struct Checkpoints {
    path: PathBuf,
    entries: HashMap<FileId, Entry>,
    dirty: bool,
}

pub fn hash(bytes: &[u8]) -> u64 {
    // Fixed keys: the value is stored, and must mean the same next run.
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x5eed, 0xf11e);
    h.write(bytes);
    h.finish()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Checkpoints {
    /// Read the checkpoints of source `id` (an id is a safe file name:
    /// config validation checks it). None yet: empty. A damaged
    /// file is refused whole, with a warning: reading from the start
    /// repeats lines, guessing offsets could lose them.
    pub fn load(data_dir: &Path, id: &str) -> Checkpoints {
        let path = data_dir
            .join("sources")
            .join(format!("{id}.checkpoints.json"));
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<Entry>>(&bytes) {
                Ok(list) => list.into_iter().map(|e| (e.id, e)).collect(),
                Err(e) => {
                    tracing::warn!(source = %id, path = %path.display(), error = %e, "file checkpoints are damaged: ignored");
                    HashMap::new()
                }
            },
            Err(_) => HashMap::new(),
        };
        Checkpoints {
            path,
            entries,
            dirty: false,
        }
    }

    /// Where to resume `id` found at `path` (its current head checked), if
    /// it is the file that was read before.
    pub fn resume(&self, id: FileId, path: &Path) -> Option<u64> {
        let e = self.entries.get(&id)?;
        if e.head_len > 0 {
            let (h, n) = head_prefix(path, e.head_len).ok()?;
            if n < e.head_len || h != e.head {
                return None;
            }
        }
        Some(e.offset)
    }

    /// Lines up to `offset` of `id` are delivered; `head` is the file's
    /// head hash and length as read.
    pub fn advance(&mut self, id: FileId, path: &Path, offset: u64, head: (u64, u64)) {
        let e = self.entries.entry(id).or_insert_with(|| Entry {
            id,
            offset: 0,
            head: 0,
            head_len: 0,
            path: path.to_path_buf(),
            seen: now_secs(),
        });
        e.offset = offset;
        if head.1 > e.head_len {
            (e.head, e.head_len) = head;
        }
        e.path = path.to_path_buf();
        self.dirty = true;
    }

    pub fn seen(&mut self, id: FileId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.seen = now_secs();
        }
    }

    /// The file was deleted: its checkpoint goes too.
    pub fn forget(&mut self, id: FileId) {
        self.dirty |= self.entries.remove(&id).is_some();
    }

    /// Write them if they changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let cutoff = now_secs().saturating_sub(FORGET_AFTER.as_secs());
        let before = self.entries.len();
        self.entries.retain(|_, e| e.seen >= cutoff);
        self.dirty |= self.entries.len() != before;
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut list: Vec<&Entry> = self.entries.values().collect();
        list.sort_by_key(|e| (e.id.dev, e.id.ino));
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&list).unwrap_or_default())?;
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }

    #[cfg(test)]
    pub fn offset(&self, id: FileId) -> Option<u64> {
        self.entries.get(&id).map(|e| e.offset)
    }
}

/// The hash of the first `n` bytes of `path` (fewer if it is shorter).
pub fn head_prefix(path: &Path, n: u64) -> std::io::Result<(u64, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; n.min(HEAD as u64) as usize];
    let mut got = 0;
    while got < buf.len() {
        let k = f.read(&mut buf[got..])?;
        if k == 0 {
            break;
        }
        got += k;
    }
    Ok((hash(&buf[..got]), got as u64))
}

/// Writes the checkpoints whenever a tail asks, one write covering every
/// advance made before it began: a tail waits for the write that holds its
/// batch before it reads the next, so a `kill -9` repeats at most the batch
/// that was on its way, however many files share the writes.
pub struct Saver {
    checkpoints: Arc<Mutex<Checkpoints>>,
    asked: AtomicU64,
    wake: Notify,
    done: watch::Sender<u64>,
}

impl Saver {
    pub fn new(checkpoints: Arc<Mutex<Checkpoints>>) -> Arc<Saver> {
        Arc::new(Saver {
            checkpoints,
            asked: AtomicU64::new(0),
            wake: Notify::new(),
            done: watch::Sender::new(0),
        })
    }

    /// Return once a write begun after this call has ended.
    pub async fn persist(&self) {
        let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let mut rx = self.done.subscribe();
        // The writer ends only when sluice does; then the wait ends too.
        let _ = rx.wait_for(|&d| d >= mine).await;
    }

    /// The writer: runs until `stop`, then writes once more.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken, id: Arc<str>) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
            }
            let upto = self.asked.load(Ordering::SeqCst);
            self.write(&id);
            self.done.send_replace(upto);
        }
        self.write(&id);
        self.done.send_replace(u64::MAX);
    }

    pub fn write(&self, id: &str) {
        let mut c = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = c.save() {
            // Not written: the next run repeats lines, never loses them.
            tracing::warn!(source = %id, error = %e, "cannot write the file checkpoints");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_and_resumed_only_for_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("a.log");
        std::fs::write(&log, "first line\nsecond\n").expect("write");
        let id = FileId { dev: 1, ino: 2 };
        let mut c = Checkpoints::load(dir.path(), "files");
        assert_eq!(c.resume(id, &log), None);
        c.advance(id, &log, 11, head_prefix(&log, HEAD as u64).expect("head"));
        c.save().expect("save");
        let c = Checkpoints::load(dir.path(), "files");
        assert_eq!(c.resume(id, &log), Some(11));
        // The same inode, other content: a new file.
        std::fs::write(&log, "another file\n").expect("write");
        assert_eq!(c.resume(id, &log), None);
        std::fs::write(dir.path().join("sources/files.checkpoints.json"), "{broken")
            .expect("write");
        assert_eq!(Checkpoints::load(dir.path(), "files").offset(id), None);
    }
}
