//! `type: file` — append events to a file (NDJSON by default), creating its
//! directories, and rotating it when it reaches `rotate_bytes`.
//!
//! Rotation renames `events.ndjson` to `events.ndjson.N` with N one higher
//! than any rotated file already there (so the highest number is the newest)
//! and starts a new file; `max_files` keeps only the newest N rotated files.
//! A failed write is rolled back to the last complete batch before it is
//! retried, so a retry never leaves a torn or duplicated line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::Validate;
use crate::config::units::ByteSize;
use crate::destination_config;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon, unencodable};
use crate::driver::{DeliveryDefaults, Destination, Encoded, Encoder, Outcome};
use crate::event::Event;

destination_config! {
    pub struct FileConfig {
        pub path: PathBuf,
        /// Start a new file before one would grow past this size.
        #[serde(default)]
        pub rotate_bytes: Option<ByteSize>,
        /// Keep at most this many rotated files (default: all).
        #[serde(default)]
        pub max_files: Option<usize>,
    }
}

impl Validate for FileConfig {
    fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("path must not be empty".into());
        }
        if self.path.file_name().is_none() {
            return Err(format!("path `{}` must name a file", self.path.display()));
        }
        if self.rotate_bytes.is_some_and(|b| b.0 == 0) {
            return Err("rotate_bytes must be at least 1".into());
        }
        if self.max_files == Some(0) {
            return Err("max_files must be at least 1".into());
        }
        Ok(())
    }
}

impl DestinationType for FileDestination {
    const NAME: &'static str = "file";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::LOCAL;
    /// Appending compressed batches would make a file no tool reads line by
    /// line; compress rotated files instead (logrotate, or `filesystem`).
    const CAPABILITIES: Capabilities = Capabilities::LOCAL;
    type Config = FileConfig;

    async fn build(cfg: &FileConfig, _: &BuildContext<'_>) -> Result<Self, String> {
        FileDestination::new(cfg)
    }
}

struct State {
    file: Option<File>,
    size: u64,
    /// The number the next rotated file gets; found on first use.
    next_index: Option<u64>,
}

pub struct FileDestination {
    encoder: Encoder,
    writer: Arc<Writer>,
}

/// The file and its rotation, used from blocking threads.
struct Writer {
    path: PathBuf,
    rotate_bytes: Option<u64>,
    max_files: Option<usize>,
    state: Mutex<State>,
}

impl FileDestination {
    /// Nothing touches the filesystem here: a path that cannot be written yet
    /// (a volume not mounted, a directory in the way) makes writes fail and
    /// retry, visibly in the metrics, without stopping the rest of sluice.
    pub fn new(cfg: &FileConfig) -> Result<Self, String> {
        Ok(FileDestination {
            encoder: cfg.common().encoder()?,
            writer: Arc::new(Writer {
                path: cfg.path.clone(),
                rotate_bytes: cfg.rotate_bytes.map(|b| b.0),
                max_files: cfg.max_files,
                state: Mutex::new(State {
                    file: None,
                    size: 0,
                    next_index: None,
                }),
            }),
        })
    }
}

/// Rotated siblings of `path` (`path.N`), sorted by N.
fn rotated_files(path: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(f) = file_name.to_str() else {
            continue;
        };
        if let Some(n) = f.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()) {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl Writer {
    fn write(&self, data: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.file.is_none() {
            self.open(&mut st)?;
        }
        if let Some(limit) = self.rotate_bytes
            && st.size > 0
            && st.size + data.len() as u64 > limit
        {
            self.rotate(&mut st)?;
            self.open(&mut st)?;
        }
        let size = st.size;
        let Some(f) = st.file.as_mut() else {
            return Err(std::io::Error::other("file not open"));
        };
        if let Err(e) = f.write_all(data) {
            // Roll back a partial write so the retry starts on a clean line.
            let _ = f.set_len(size);
            st.file = None;
            return Err(e);
        }
        st.size += data.len() as u64;
        Ok(())
    }

    fn open(&self, st: &mut State) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        st.size = f.metadata()?.len();
        st.file = Some(f);
        Ok(())
    }

    fn rotate(&self, st: &mut State) -> std::io::Result<()> {
        st.file = None;
        let index = match st.next_index {
            Some(i) => i,
            None => rotated_files(&self.path)?.last().map_or(1, |(i, _)| i + 1),
        };
        let mut target = self.path.as_os_str().to_owned();
        target.push(format!(".{index}"));
        std::fs::rename(&self.path, &target)?;
        st.next_index = Some(index + 1);
        st.size = 0;
        if let Some(keep) = self.max_files {
            let rotated = rotated_files(&self.path)?;
            if rotated.len() > keep {
                for (_, p) in &rotated[..rotated.len() - keep] {
                    std::fs::remove_file(p)?;
                }
            }
        }
        Ok(())
    }
}

impl Destination for FileDestination {
    type Request = Arc<Vec<u8>>;

    fn encode(&self, events: &[Event]) -> Encoded<Arc<Vec<u8>>> {
        let mut out = Vec::new();
        let skipped = self.encoder.encode_batch(events, &mut out);
        let n = out.len();
        Encoded {
            keys: None,
            request: Arc::new(out),
            bytes: n,
            skipped: unencodable(skipped),
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, request: &Arc<Vec<u8>>, _endpoint: usize) -> Outcome {
        let data = request.clone();
        let writer = self.writer.clone();
        // File I/O blocks; keep it off the async workers.
        match tokio::task::spawn_blocking(move || writer.write(&data)).await {
            Ok(Ok(())) => Outcome::Delivered,
            Ok(Err(e)) => Outcome::Retry {
                after: None,
                error: format!("writing {} failed: {e}", self.writer.path.display()),
            },
            Err(e) => Outcome::Retry {
                after: None,
                error: format!("file writer task failed: {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(path: PathBuf, rotate: Option<u64>, max_files: Option<usize>) -> FileConfig {
        FileConfig {
            kind: "file".into(),
            pipeline: None,
            encoding: None,
            compression: None,
            batch: Default::default(),
            request: Default::default(),
            retry: Default::default(),
            backpressure: Default::default(),
            queue: Default::default(),
            dead_letter: None,
            metric: None,
            path,
            rotate_bytes: rotate.map(ByteSize),
            max_files,
        }
    }

    #[test]
    fn appends_creates_dirs_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.ndjson");
        let d = FileDestination::new(&cfg(path.clone(), Some(10), Some(2))).unwrap();
        for i in 0..5 {
            d.writer.write(format!("line-{i}\n").as_bytes()).unwrap();
        }
        // Each 7-byte line fits alone under 10 bytes: every write rotates.
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(
            rotated.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line-4\n");
        assert_eq!(std::fs::read_to_string(&rotated[1].1).unwrap(), "line-3\n");
        // A new writer continues the numbering.
        let d2 = FileDestination::new(&cfg(path.clone(), Some(10), Some(2))).unwrap();
        d2.writer.write(b"line-5\n").unwrap();
        assert_eq!(rotated_files(&path).unwrap().last().unwrap().0, 5);
    }
}
