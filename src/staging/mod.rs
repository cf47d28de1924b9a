//! Staged files: what the filesystem and S3 destinations share. Events are
//! appended to a file per partition in a staging directory; a file is
//! closed at `max_file_bytes`, `max_file_age`, `max_file_idle`, or when
//! `max_open_files` needs its place (oldest first); then it is sealed
//! (compressed when asked, fsynced) and finished (moved or uploaded) by a
//! background worker, one file at a time, in the order they closed.
//!
//! A batch counts as delivered once it is in its staged files: from there,
//! a crash loses nothing, because the next start seals and finishes what it
//! finds (`files.rs`). Finishing never runs twice at once on one directory:
//! the worker holds an exclusive lock on `<root>/.lock` (a second sluice on
//! the same directory, or the driver a reload replaced, waits for it).
//!
//! Backpressure, as Cribl documents it for its file-based destinations:
//! writes are refused (the driver retries, the lane fills, the policy
//! acts) while the staging directory cannot be written (not writable, disk
//! full), while finishing fails (the move or upload, with its cause), and
//! while `max_pending_files` closed files wait. Each failure is counted in
//! `sluice_staging_errors_total{stage}` and logged once per cause, and the
//! refusal ends when its cause does.

pub mod config;
mod destination;
pub mod files;
pub mod name;
pub mod partition;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{HasStaging, Limits, StagingKeys};
pub use destination::{Parts, StagedFiles};
use files::OpenFile;
pub use partition::{Groups, PartitionScratch, Partitioner};

use crate::driver::CauseLog;
use crate::metrics::{Metrics, StagingMetrics};

/// What happens to a sealed file: a move (filesystem) or an upload (S3).
pub trait Finish: Send + Sync + 'static {
    /// The step's name in logs and in `sluice_staging_errors_total{stage}`.
    const STAGE: &'static str;

    /// Deliver the sealed file at `path`. `rel` is its path under the
    /// staging root with `/` separators (`web-1/2026/12/05/sluice-….ndjson`).
    /// Must be idempotent: after a crash it may run again for a file it
    /// already delivered (same name, same bytes).
    fn finish(&self, path: &Path, rel: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// One partition's encoded events of a batch: which events of the request
/// they are (their indices ascend), so that what was written can be
/// counted as delivered when a later part fails. `done` records that it was
/// written, so a retry of the batch does not write it twice.
#[derive(Debug)]
pub struct Part {
    pub partition: String,
    pub data: Vec<u8>,
    pub events: Vec<usize>,
    pub done: AtomicBool,
}

/// A destination's staging directory and its worker.
pub struct Stager {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Asks the worker to close everything and make a last pass.
    closing: CancellationToken,
    /// Stops the worker at once (the destination was dropped).
    _stop: tokio_util::sync::DropGuard,
}

struct Shared {
    id: String,
    root: PathBuf,
    limits: Limits,
    prefix: String,
    suffix: String,
    /// Distinguishes this process's file names from any other's.
    instance: String,
    seq: AtomicU64,
    open: Mutex<HashMap<String, OpenEntry>>,
    /// Set once the worker holds the lock and has taken over what an
    /// earlier process left: only then may new files be written.
    ready: AtomicBool,
    /// The cause while finishing fails; writes are refused meanwhile.
    failing: Mutex<Option<String>>,
    /// Closed files not yet finished (in the channel or the worker's queue).
    pending: AtomicUsize,
    closed: mpsc::UnboundedSender<PathBuf>,
    metrics: StagingMetrics,
    log: CauseLog,
    /// A refused partition name was logged (once per run).
    refused_warned: AtomicBool,
}

#[derive(Debug)]
struct OpenEntry {
    file: OpenFile,
    opened: Instant,
    written: Instant,
}

impl Stager {
    /// Start the worker for the directory `root`, finishing files with
    /// `finish`.
    pub fn start<F: Finish>(
        id: &str,
        keys: &StagingKeys<'_>,
        root: PathBuf,
        finish: F,
        metrics: &Metrics,
    ) -> Stager {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            id: id.to_string(),
            root,
            limits: keys.limits(),
            prefix: keys
                .file_prefix
                .unwrap_or(config::DEFAULT_FILE_PREFIX)
                .to_string(),
            suffix: keys.suffix(),
            instance: format!("{:08x}", fastrand::u32(..)),
            seq: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            failing: Mutex::new(None),
            pending: AtomicUsize::new(0),
            closed: tx,
            metrics: metrics.staging(id),
            log: CauseLog::default(),
            refused_warned: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let closing = stop.child_token();
        let worker = tokio::spawn(worker::run(shared.clone(), finish, rx, closing.clone()));
        Stager {
            shared,
            worker: Mutex::new(Some(worker)),
            closing,
            _stop: stop.drop_guard(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    pub fn metrics(&self) -> &StagingMetrics {
        &self.shared.metrics
    }

    /// Write a batch's parts to their files (blocking file I/O: call it on
    /// a blocking thread). `Err` is the cause, for the driver to retry.
    pub fn write(&self, parts: &[Part]) -> Result<(), String> {
        self.shared.write(parts)
    }

    /// Close every open file and give the worker one last pass to finish
    /// them; what it cannot finish in time stays staged for the next start.
    pub async fn close(&self) {
        self.closing.cancel();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = worker {
            let _ = w.await;
        }
    }
}

impl Shared {
    /// Why writes are refused now, if they are.
    fn refusal(&self) -> Option<String> {
        if !self.ready.load(Ordering::Acquire) {
            return Some(format!(
                "the staging directory {} is not ready: its lock is held by another sluice, or what an earlier run left is still being taken over",
                self.root.display()
            ));
        }
        if let Some(cause) = self
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Some(cause.clone());
        }
        let pending = self.pending.load(Ordering::Acquire);
        (pending >= self.limits.max_pending_files).then(|| {
            format!(
                "{pending} closed files wait to be finished (max_pending_files: {})",
                self.limits.max_pending_files
            )
        })
    }

    fn write(&self, parts: &[Part]) -> Result<(), String> {
        if let Some(why) = self.refusal() {
            return Err(why);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for p in parts {
            if p.done.load(Ordering::Acquire) {
                continue;
            }
            self.append(&mut open, &p.partition, &p.data, p.events.len())?;
            p.done.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn append(
        &self,
        open: &mut HashMap<String, OpenEntry>,
        partition: &str,
        data: &[u8],
        events: usize,
    ) -> Result<(), String> {
        let max = self.limits.max_file_bytes;
        if open
            .get(partition)
            .is_some_and(|s| s.file.bytes > 0 && s.file.bytes + data.len() as u64 > max)
        {
            self.close(open, partition);
        }
        if !open.contains_key(partition) {
            if open.len() >= self.limits.max_open_files
                && let Some(oldest) = open
                    .iter()
                    .min_by_key(|(_, s)| s.opened)
                    .map(|(p, _)| p.clone())
            {
                self.close(open, &oldest);
            }
            let dir = self.root.join(partition);
            let file = match OpenFile::create(&dir, &self.file_name()) {
                Ok(f) => f,
                // The name itself is what this filesystem refuses: file
                // the partition where it can be, rather than stall on it.
                Err(e) if name::refused(&e) => {
                    let instead = self.root.join(name::fallback(partition));
                    if !self.refused_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(destination = %self.id, partition, error = %e, instead = %instead.display(), "the filesystem refuses a partition's name; filing it elsewhere (counted: sluice_staging_renamed_events_total, reason refused; later ones are not logged)");
                    }
                    self.metrics.renamed(name::Renamed::Refused, events as u64);
                    OpenFile::create(&instead, &self.file_name()).map_err(|e| {
                        self.metrics.error("write");
                        format!("creating a staged file in {}: {e}", instead.display())
                    })?
                }
                Err(e) => {
                    self.metrics.error("write");
                    return Err(format!("creating a staged file in {}: {e}", dir.display()));
                }
            };
            self.metrics.files.inc();
            let now = Instant::now();
            open.insert(
                partition.to_string(),
                OpenEntry {
                    file,
                    opened: now,
                    written: now,
                },
            );
        }
        let Some(s) = open.get_mut(partition) else {
            return Err("staged file vanished".into());
        };
        s.file.append(data).map_err(|e| {
            self.metrics.error("write");
            format!("writing {}: {e}", s.file.path.display())
        })?;
        s.written = Instant::now();
        if s.file.bytes >= max {
            self.close(open, partition);
        }
        Ok(())
    }

    /// `<prefix>-<unix ms>-<instance>-<seq><suffix>`: unique, and in the
    /// order written when sorted by name within one run.
    fn file_name(&self) -> String {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{ms:013}-{}-{seq:06}{}",
            self.prefix, self.instance, self.suffix
        )
    }

    /// Hand `partition`'s file to the worker.
    fn close(&self, open: &mut HashMap<String, OpenEntry>, partition: &str) {
        if let Some(s) = open.remove(partition) {
            self.pending.fetch_add(1, Ordering::AcqRel);
            // The worker outlives every writer; if it is gone the file
            // stays staged for the next start.
            let _ = self.closed.send(s.file.path);
        }
    }

    /// Close files past `max_file_age` or `max_file_idle`; every file when
    /// `all`.
    fn close_expired(&self, all: bool) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let expired: Vec<String> = open
            .iter()
            .filter(|(_, s)| {
                all || now.duration_since(s.opened) >= self.limits.max_file_age
                    || now.duration_since(s.written) >= self.limits.max_file_idle
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in expired {
            self.close(&mut open, &p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Compression, Encoding};

    struct Keep;

    impl Finish for Keep {
        const STAGE: &'static str = "keep";
        async fn finish(&self, _: &Path, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    fn part(partition: &str, events: usize) -> Part {
        Part {
            partition: partition.to_string(),
            data: b"{}\n".repeat(events),
            events: (0..events).collect(),
            done: AtomicBool::new(false),
        }
    }

    async fn stager(root: &Path, metrics: &Metrics) -> Stager {
        let keys = StagingKeys {
            staging_dir: None,
            partition: None,
            time_field: None,
            file_prefix: None,
            max_file_bytes: None,
            max_file_age: None,
            max_file_idle: None,
            max_open_files: None,
            max_pending_files: None,
            encoding: Encoding::Ndjson,
            compression: Compression::None,
        };
        let s = Stager::start("out", &keys, root.to_path_buf(), Keep, metrics);
        while !s.shared.ready.load(Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        s
    }

    #[tokio::test]
    async fn a_name_the_filesystem_refuses_is_filed_elsewhere_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let s = stager(dir.path(), &metrics).await;
        // Past `fit` (a partition too long for any file name), as a
        // filesystem with a stricter limit than 200 bytes would refuse it.
        let refused = "x".repeat(300);
        let parts = vec![part("ok", 2), part(&refused, 3)];
        s.write(&parts).unwrap();
        assert!(parts.iter().all(|p| p.done.load(Ordering::Acquire)));
        assert!(dir.path().join(name::fallback(&refused)).is_dir());
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"sluice_staging_renamed_events_total{destination="out",reason="refused"} 3"#
            ),
            "{text}"
        );
        s.close().await;
    }

    #[tokio::test]
    async fn parts_written_before_a_failure_stay_written() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let s = stager(dir.path(), &metrics).await;
        // A file where the second partition's directory should be.
        std::fs::write(dir.path().join("blocked"), b"").unwrap();
        let parts = vec![part("ok", 2), part("blocked/x", 3)];
        assert!(s.write(&parts).is_err());
        assert!(parts[0].done.load(Ordering::Acquire), "written");
        assert!(!parts[1].done.load(Ordering::Acquire), "to retry");
        s.close().await;
    }
}
