//! `sluice queue inspect` and `sluice queue verify`: a read-only walk of
//! every destination's queue under a data directory. It takes no lock and
//! writes nothing, so it is safe next to a running sluice (whose newest
//! frames may then be seen half-written: reported as a torn tail).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::ledger::{self, Position};
use super::segment::{self, Scanned};

/// One destination's queue as found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueSummary {
    pub destination: String,
    pub dir: PathBuf,
    /// Events in intact frames not yet acknowledged.
    pub events: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
    pub segments: usize,
    /// When the oldest waiting frame was written (ms since the epoch).
    pub oldest_ms: Option<u64>,
    /// Segments already moved aside into `quarantine/`.
    pub quarantined: usize,
    pub damage: Vec<Damage>,
    /// Bytes at the end of the newest segment that do not form a frame: a
    /// write cut short, truncated on the next start (never acknowledged).
    pub torn_bytes: u64,
}

/// A frame whose CRC fails, or bytes that cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    /// How many bytes are affected.
    pub len: u64,
    /// Events lost, when the frame's header still says.
    pub events: Option<u64>,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.events {
            Some(n) => write!(
                f,
                "{} at offset {}: frame of {} bytes fails its CRC ({n} events)",
                self.segment.display(),
                self.offset,
                self.len
            ),
            None => write!(
                f,
                "{} at offset {}: {} bytes cannot be framed",
                self.segment.display(),
                self.offset,
                self.len
            ),
        }
    }
}

/// Every queue under `<data_dir>/queues`, by destination name.
pub fn scan_all(data_dir: &Path) -> io::Result<Vec<QueueSummary>> {
    let root = data_dir.join("queues");
    let mut dirs = Vec::new();
    match std::fs::read_dir(&root) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", root.display()))),
    }
    dirs.sort();
    dirs.iter()
        .map(|d| {
            scan_queue(d).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))
        })
        .collect()
}

/// Walk one queue directory from its acknowledged position, checking every
/// frame's CRC. Memory stays bounded by the largest frame.
pub fn scan_queue(dir: &Path) -> io::Result<QueueSummary> {
    let mut s = QueueSummary {
        destination: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: dir.to_path_buf(),
        ..QueueSummary::default()
    };
    let ids = segment::list(dir)?;
    let committed = ledger::peek(&dir.join("ledger"))?.unwrap_or(Position {
        segment: ids.first().copied().unwrap_or(0),
        offset: 0,
    });
    s.quarantined = match std::fs::read_dir(dir.join("quarantine")) {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    };
    let newest = ids.last().copied();
    let mut buf = Vec::new();
    for &id in &ids {
        let path = segment::path(dir, id);
        let file = match File::open(&path) {
            Ok(f) => f,
            // Deleted by a running sluice as we got to it: fully delivered.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        s.segments += 1;
        s.bytes += len;
        if id < committed.segment {
            continue;
        }
        let from = if id == committed.segment {
            committed.offset.min(len)
        } else {
            0
        };
        segment::scan(&file, len, from, &mut buf, |found, _| {
            match found {
                Scanned::Frame { header, .. } => {
                    s.events += u64::from(header.count);
                    s.oldest_ms.get_or_insert(header.time_ms);
                }
                Scanned::Corrupt { offset, header } => s.damage.push(Damage {
                    segment: path.clone(),
                    offset,
                    len: header.frame_len as u64,
                    events: Some(u64::from(header.count)),
                }),
                Scanned::Unreadable { offset, end } => {
                    if Some(id) == newest && end == len {
                        s.torn_bytes += end - offset;
                    } else {
                        s.damage.push(Damage {
                            segment: path.clone(),
                            offset,
                            len: end - offset,
                            events: None,
                        });
                    }
                }
            }
            true
        })?;
    }
    Ok(s)
}
