//! `sluice run --watch-config`: reload when the configuration file changes.
//!
//! The file's directory is watched, not the file: editors write a new file
//! and rename it over the old one, and Kubernetes swaps a ConfigMap's
//! symlink, and a watch on the file itself would miss both. Changes are
//! debounced (a burst of writes is one reload) and compared by content, so
//! touching the file or saving it unchanged does not reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;

/// How long the file must stay quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Watches one configuration file; `changed` yields once per settled change.
pub struct ConfigWatch {
    // Dropping it stops the watch.
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<()>,
    path: PathBuf,
    last: Option<Vec<u8>>,
    /// A change was seen and its quiet period has not ended.
    pending: bool,
}

impl ConfigWatch {
    pub fn new(path: &Path) -> Result<ConfigWatch, notify::Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if e.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Ok(ConfigWatch {
            _watcher: watcher,
            rx,
            path: path.to_path_buf(),
            last: std::fs::read(path).ok(),
            pending: false,
        })
    }

    /// Resolves when the file's content has changed and then stayed the
    /// same for `DEBOUNCE`. Cancel-safe.
    pub async fn changed(&mut self) {
        loop {
            if !self.pending {
                if self.rx.recv().await.is_none() {
                    return std::future::pending().await;
                }
                self.pending = true;
            }
            // Quiet period: every further event restarts it.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.rx.recv()).await {}
            self.pending = false;
            let now = std::fs::read(&self.path).ok();
            if now.is_some() && now != self.last {
                self.last = now;
                return;
            }
        }
    }
}
