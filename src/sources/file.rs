//! `type: file` — tail files matching `include` globs (less `exclude`):
//! new files are picked up by a scan every `glob_interval`, each file is
//! followed by its own task (`file/tail.rs`: rotation, truncation,
//! deletion, multi-line events, the line limit, backpressure by reading
//! slower), and where each was read up to is checkpointed under `data_dir`
//! only once its lines were delivered (`file/checkpoints.rs`).
//!
//! `read_from` applies to the files found at start that have no
//! checkpoint: `beginning` (default) or `end`. A file that appears later is
//! always read from its start; a file with a checkpoint resumes there.

mod checkpoints;
mod multiline;
mod tail;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use self::checkpoints::{Checkpoints, FileId, Saver};
use self::multiline::{Multiline, MultilineConfig};
use self::tail::{End, Handoff, Tail};
use super::{SourceContext, SourceError, SourceType, Started};
use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

crate::source_config! {
    pub struct FileConfig {
        /// Glob patterns of the files to follow (`/var/log/app/*.log`).
        pub include: Vec<String>,
        /// Glob patterns of paths to leave out (`*.gz`).
        #[serde(default)]
        pub exclude: Vec<String>,
        /// For files found at start with no checkpoint. Default `beginning`.
        #[serde(default)]
        pub read_from: ReadFrom,
        /// Longer lines (or joined multi-line events) are skipped and
        /// counted (`reason="oversize"`). Default 100 KiB.
        #[serde(default = "default_max_line")]
        pub max_line_bytes: ByteSize,
        /// How often the globs are looked at for new files. Default 1s.
        #[serde(default = "default_glob_interval")]
        pub glob_interval: Dur,
        /// Join lines into events (stack traces).
        #[serde(default)]
        pub multiline: Option<MultilineConfig>,
        /// Most files followed at once; more are picked up as others end.
        /// Default 10,000.
        #[serde(default = "default_max_open_files")]
        pub max_open_files: usize,
    }
}

fn default_max_line() -> ByteSize {
    ByteSize::kib(100)
}

fn default_glob_interval() -> Dur {
    Dur::secs(1)
}

fn default_max_open_files() -> usize {
    10_000
}

impl Validate for FileConfig {
    fn validate(&self) -> Result<(), String> {
        if self.include.is_empty() {
            return Err("include needs at least one glob pattern".into());
        }
        for p in self.include.iter().chain(&self.exclude) {
            glob::Pattern::new(p).map_err(|e| format!("glob `{p}`: {e}"))?;
        }
        if self.include.iter().any(|p| !Path::new(p).is_absolute()) {
            return Err("include patterns must be absolute paths".into());
        }
        if self.max_line_bytes.0 == 0 || self.max_open_files == 0 {
            return Err("max_line_bytes and max_open_files must be at least 1".into());
        }
        if self.glob_interval.get().is_zero() {
            return Err("glob_interval must be more than 0s".into());
        }
        if let Some(m) = &self.multiline {
            m.compile()?;
        }
        Ok(())
    }
}

/// How long a file that could not be followed is left alone.
const RETRY_FAILED: Duration = Duration::from_secs(60);

pub struct FileSource;

impl SourceType for FileSource {
    const NAME: &'static str = "file";
    type Config = FileConfig;

    async fn start(cfg: &FileConfig, ctx: SourceContext) -> Result<Started, SourceError> {
        let setup = |message: String| SourceError::Setup {
            id: ctx.id.to_string(),
            message,
        };
        let exclude = cfg
            .exclude
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| setup(format!("glob `{p}`: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(m) = &cfg.multiline {
            m.compile().map_err(setup)?;
        }
        let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&ctx.data_dir, &ctx.id)));
        let handoff: Handoff = Arc::default();
        let tails = TaskTracker::new();
        let saver = Saver::new(checkpoints.clone());
        let writer_stop = tokio_util::sync::CancellationToken::new();
        let spawner = ctx.spawner();
        let writer = spawner.spawn(saver.clone().run(writer_stop.clone(), ctx.id.clone()));
        let active: Arc<Mutex<HashSet<FileId>>> = Arc::default();
        let followed = active.clone();
        let detail: super::Detail = Arc::new(move || {
            let n = followed.lock().unwrap_or_else(|p| p.into_inner()).len();
            vec![("files", serde_json::json!(n))]
        });
        let watcher = Watcher {
            saver: saver.clone(),
            cfg: cfg.clone(),
            exclude,
            checkpoints: checkpoints.clone(),
            handoff: handoff.clone(),
            active,
            failed: Arc::default(),
            tails: tails.clone(),
            host: hostname().into(),
        };
        tracing::info!(source = %ctx.id, include = ?cfg.include, "file source watching");
        let task = spawner.spawn(watcher.run(ctx.clone()));
        // Awaited once the destinations drained: the batches that were on
        // their way at shutdown are delivered (or not) by then; checkpoint
        // them and write the checkpoints a last time.
        let finishing = spawner.spawn(async move {
            ctx.shutdown.cancelled().await;
            tails.close();
            tails.wait().await;
            let pending = std::mem::take(&mut *handoff.lock().unwrap_or_else(|p| p.into_inner()));
            for p in pending {
                if p.rx.await.is_ok_and(tail::advances) {
                    tail::checkpoint(&checkpoints, p.id, &p.path, p.end, p.head);
                }
            }
            writer_stop.cancel();
            let _ = writer.await;
        });
        Ok(Started {
            local_addr: None,
            task,
            finishing: Some(finishing),
            detail: Some(detail),
        })
    }
}

struct Watcher {
    saver: Arc<Saver>,
    cfg: FileConfig,
    exclude: Vec<glob::Pattern>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    handoff: Handoff,
    /// Files followed now.
    active: Arc<Mutex<HashSet<FileId>>>,
    /// Files that could not be followed (unreadable, say), and when: tried
    /// again after `RETRY_FAILED`, warned about once.
    failed: Arc<Mutex<HashMap<FileId, Instant>>>,
    tails: TaskTracker,
    host: Arc<str>,
}

impl Watcher {
    async fn run(self, ctx: SourceContext) {
        let mut first = true;
        let mut scan = tokio::time::interval(self.cfg.glob_interval.get());
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = scan.tick() => {
                    self.scan(&ctx, first);
                    first = false;
                }
            }
        }
    }

    /// Start following every matching file not followed yet.
    fn scan(&self, ctx: &SourceContext, first: bool) {
        for path in self.matching() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let id = FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            };
            let retry_later = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_some_and(|t| t.elapsed() < RETRY_FAILED);
            if retry_later {
                continue;
            }
            {
                let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
                if active.contains(&id) {
                    drop(active);
                    self.checkpoints
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .seen(id);
                    continue;
                }
                if active.len() >= self.cfg.max_open_files {
                    return;
                }
                active.insert(id);
            }
            let offset = {
                let mut c = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
                c.seen(id);
                match c.resume(id, &path) {
                    Some(o) if o <= meta.len() => o,
                    // The file shrank while sluice was away: read it again.
                    Some(_) => 0,
                    None if first && self.cfg.read_from == ReadFrom::End => meta.len(),
                    None => 0,
                }
            };
            tracing::debug!(source = %ctx.id, file = %path.display(), offset, "following");
            let tail = Tail {
                saver: self.saver.clone(),
                handoff: self.handoff.clone(),
                id,
                path: path.clone(),
                offset,
                max_line: self.cfg.max_line_bytes.as_usize(),
                multiline: self
                    .cfg
                    .multiline
                    .as_ref()
                    .and_then(|m| Multiline::new(m, self.cfg.max_line_bytes.as_usize()).ok()),
                checkpoints: self.checkpoints.clone(),
                host: self.host.clone(),
            };
            let (ctx, active, checkpoints, failed) = (
                ctx.clone(),
                self.active.clone(),
                self.checkpoints.clone(),
                self.failed.clone(),
            );
            self.tails.spawn(
                async move {
                    match tail.run(&ctx).await {
                        End::Shutdown => {}
                        End::Gone { deleted } => {
                            tracing::debug!(source = %ctx.id, file = %path.display(), deleted, "let go");
                            if deleted {
                                checkpoints
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .forget(id);
                            }
                        }
                        End::Failed(why) => {
                            let mut failed = failed.lock().unwrap_or_else(|p| p.into_inner());
                            if failed.insert(id, Instant::now()).is_none() {
                                tracing::warn!(source = %ctx.id, file = %path.display(), why, "cannot follow the file: trying again every minute");
                            } else {
                                tracing::debug!(source = %ctx.id, file = %path.display(), why, "still cannot follow the file");
                            }
                        }
                    }
                    active.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                }
                .instrument(tracing::Span::current()),
            );
        }
    }

    /// Paths matching `include` and not `exclude`, each once.
    fn matching(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for pattern in &self.cfg.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for p in paths.flatten() {
                if self.exclude.iter().any(|x| x.matches_path(&p)) {
                    continue;
                }
                if seen.insert(p.clone()) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// This machine's name, for each event's `host`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
