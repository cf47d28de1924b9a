//! The staging worker: takes the directory's lock, takes over what an
//! earlier run left, then seals and finishes closed files in the order they
//! closed, one at a time, and closes files that have been open or idle too
//! long.
//!
//! A failure (sealing, or the move or upload) stops the queue at that file:
//! the cause is set (writes are refused, as backpressure), counted and
//! logged once, and the same file is tried again after a backoff from 1 s
//! to 30 s. The first success clears it.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Finish, Shared, files};
use crate::driver::Backoff;

const BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
    honor_retry_after: false,
};

/// How long a closing worker keeps trying to finish what it holds.
const LAST_PASS: Duration = Duration::from_secs(10);

/// A file in the worker's queue.
enum Item {
    /// Closed, to seal.
    Open(PathBuf),
    /// Sealed, to finish.
    Sealed(PathBuf),
}

pub(super) async fn run<F: Finish>(
    shared: Arc<Shared>,
    finish: F,
    mut closed: mpsc::UnboundedReceiver<PathBuf>,
    closing: CancellationToken,
) {
    let Some(lock) = lock(&shared, &closing).await else {
        return;
    };
    let mut queue = VecDeque::new();
    take_over(&shared, &closing, &mut queue).await;
    shared.ready.store(true, Ordering::Release);

    let limits = &shared.limits;
    let tick = (limits.max_file_age.min(limits.max_file_idle) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempt = 0u32;
    let mut retry_at: Option<Instant> = None;
    loop {
        while let Ok(p) = closed.try_recv() {
            queue.push_back(Item::Open(p));
        }
        if retry_at.is_none_or(|t| Instant::now() >= t) {
            retry_at = None;
            if work(&shared, &finish, &mut queue).await {
                attempt = 0;
            } else {
                attempt += 1;
                retry_at = Some(Instant::now() + BACKOFF.delay(attempt, None).max(tick));
            }
        }
        let wake = retry_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = closing.cancelled() => break,
            p = closed.recv() => match p {
                Some(p) => queue.push_back(Item::Open(p)),
                None => break,
            },
            _ = ticker.tick() => shared.close_expired(false),
            _ = tokio::time::sleep_until(wake), if retry_at.is_some() => {}
        }
    }
    // Closing: everything open is closed, and what can be finished in
    // LAST_PASS is; the rest stays staged for the next start.
    shared.close_expired(true);
    while let Ok(p) = closed.try_recv() {
        queue.push_back(Item::Open(p));
    }
    // Bounded as a whole: an upload to a hung peer must not hold up the
    // shutdown. A step cut short leaves its file at the front of the queue.
    let _ = tokio::time::timeout(LAST_PASS, work(&shared, &finish, &mut queue)).await;
    // What is left is counted again by whoever takes the directory over.
    shared.metrics.files.dec_by(queue.len() as i64);
    drop(lock);
}

/// Take the directory's lock, waiting while another holder has it.
async fn lock(shared: &Shared, closing: &CancellationToken) -> Option<File> {
    let mut said = false;
    // A reload's new driver waits a moment for the old one to let go:
    // that is not worth a warning.
    let quiet_until = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = {
            let root = shared.root.clone();
            tokio::task::spawn_blocking(move || try_lock(&root)).await
        };
        let err = match attempt {
            Ok(Ok(Some(f))) => {
                if said {
                    tracing::info!(destination = %shared.id, "staging directory lock taken");
                }
                return Some(f);
            }
            Ok(Ok(None)) => "held by another sluice (or the driver a reload replaces)".to_string(),
            Ok(Err(e)) => {
                shared.metrics.error("lock");
                e.to_string()
            }
            Err(e) => e.to_string(),
        };
        if !said && Instant::now() >= quiet_until {
            tracing::warn!(destination = %shared.id, dir = %shared.root.display(), error = %err, "waiting for the staging directory's lock");
            said = true;
        }
        tokio::select! {
            _ = closing.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn try_lock(root: &Path) -> std::io::Result<Option<File>> {
    std::fs::create_dir_all(root)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(".lock"))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Queue what an earlier run left: open files to seal, sealed ones to
/// finish. Retried until the directory can be read.
async fn take_over(shared: &Shared, closing: &CancellationToken, queue: &mut VecDeque<Item>) {
    let mut attempt = 0u32;
    loop {
        let root = shared.root.clone();
        match tokio::task::spawn_blocking(move || files::scan(&root)).await {
            Ok(Ok(found)) => {
                let n = found.open.len() + found.sealed.len();
                if n > 0 {
                    tracing::info!(
                        destination = %shared.id,
                        open = found.open.len(),
                        sealed = found.sealed.len(),
                        "finishing files an earlier run left staged"
                    );
                }
                shared.pending.fetch_add(n, Ordering::AcqRel);
                shared.metrics.files.inc_by(n as i64);
                queue.extend(found.open.into_iter().map(Item::Open));
                queue.extend(found.sealed.into_iter().map(Item::Sealed));
                return;
            }
            Ok(Err(e)) => {
                shared.metrics.error("lock");
                shared
                    .log
                    .failing(&shared.id, "staging directory unreadable", &e.to_string());
            }
            Err(e) => tracing::error!(destination = %shared.id, error = %e, "staging scan failed"),
        }
        attempt += 1;
        tokio::select! {
            _ = closing.cancelled() => return,
            _ = tokio::time::sleep(BACKOFF.cap(attempt)) => {}
        }
    }
}

/// Work the queue from its front until it is empty (true) or a step fails
/// (false: the file stays at the front).
async fn work<F: Finish>(shared: &Shared, finish: &F, queue: &mut VecDeque<Item>) -> bool {
    while let Some(item) = queue.front_mut() {
        let step = match item {
            Item::Open(p) => {
                let p = p.clone();
                match tokio::task::spawn_blocking(move || files::seal(&p)).await {
                    Ok(Ok(Some((sealed, _)))) => {
                        *item = Item::Sealed(sealed);
                        continue;
                    }
                    Ok(Ok(None)) => Ok(()),
                    Ok(Err(e)) => Err(("seal", e.to_string())),
                    Err(e) => Err(("seal", e.to_string())),
                }
            }
            Item::Sealed(p) => finish_one(shared, finish, p)
                .await
                .map_err(|e| (F::STAGE, e)),
        };
        match step {
            Ok(()) => {
                queue.pop_front();
                shared.pending.fetch_sub(1, Ordering::AcqRel);
                shared.metrics.files.dec();
                *shared.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
                shared.log.ok(&shared.id);
            }
            Err((stage, error)) => {
                shared.metrics.error(stage);
                let cause = format!("{stage} failed: {error}");
                shared.log.failing(&shared.id, stage, &cause);
                *shared.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(cause);
                return false;
            }
        }
    }
    true
}

/// Finish one sealed file, then remove it from staging (if the finisher
/// did not move it away) and any directory it leaves empty.
async fn finish_one<F: Finish>(shared: &Shared, finish: &F, path: &Path) -> Result<(), String> {
    let rel = path
        .strip_prefix(&shared.root)
        .map_err(|_| format!("{} is outside the staging directory", path.display()))?
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    finish.finish(path, &rel).await?;
    let staged = path.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_file(&staged) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", staged.display())),
    });
    removed.await.map_err(|e| e.to_string())??;
    if let Some(dir) = path.parent() {
        // Under the writers' lock: a writer creates its partition's
        // directory and file while holding it, so neither disappears
        // between the two.
        let _open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
        files::prune(dir, &shared.root);
    }
    shared.metrics.finished.inc();
    Ok(())
}
