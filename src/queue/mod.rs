//! The persistent queue: a destination's disk spill, for the
//! `backpressure: persistent_queue` policy.
//!
//! - [`frame`]: one record batch on disk, with its length and CRC32C;
//! - [`segment`]: append-only segment files and the damage-tolerant scan;
//! - [`ledger`]: the acknowledged position, torn-write safe;
//! - [`disk`]: one destination's queue: append, read, commit, and recovery
//!   (torn tails truncated, damaged segments salvaged and quarantined);
//! - [`spill`]: the tasks that connect a lane to its disk queue (group
//!   commit writer, read-ahead, ordered committer);
//! - [`inspect`]: the read-only scan behind `sluice queue inspect|verify`.

pub mod disk;
pub mod frame;
pub mod inspect;
pub mod ledger;
pub mod segment;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use disk::{DiskQueue, OpenReport, QueueError};

/// When events go to disk (`queue.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// As soon as the destination fails (and, like `backpressure`, whenever
    /// the in-memory lane is full): what is in memory is written out at once.
    Error,
    /// As soon as the in-memory lane is full.
    #[default]
    Backpressure,
    /// Every event passes through disk.
    Always,
}

/// What happens when the disk queue reaches `queue.max_bytes` or the disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// The lane behaves like `backpressure: block`.
    #[default]
    Block,
    /// New events are dropped, counted with reason `queue_full`.
    Drop,
}

/// When writes are made durable (`queue.fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every group of writes, before sources are acknowledged.
    Always,
    /// Every `queue.fsync_interval`.
    #[default]
    Interval,
    /// Left to the operating system.
    Never,
}

/// How queued and live events are ordered on the way out (`queue.ordering`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Queued events first; new events queue behind them until the disk is drained.
    #[default]
    Strict,
    /// New events first; the backlog drains at `queue.drain_rate` events/s
    /// (and at full speed whenever no new events are waiting).
    LiveFirst,
}

/// Whether records are compressed on disk (`queue.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskCompression {
    #[default]
    None,
    /// zstd level 1, per record batch.
    Zstd,
}

pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_DRAIN_RATE: u64 = 1000;

/// Everything a persistent queue needs to run, resolved from the config.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub dir: PathBuf,
    pub mode: Mode,
    pub max_bytes: u64,
    pub on_full: OnFull,
    pub fsync: Fsync,
    pub fsync_interval: Duration,
    pub compress: bool,
    pub segment_bytes: u64,
    pub ordering: Ordering,
    /// Events per second the backlog drains at under `live_first`.
    pub drain_rate: u64,
}

/// `<data_dir>/queues/<destination>`.
pub fn queue_dir(data_dir: &Path, destination: &str) -> PathBuf {
    data_dir.join("queues").join(destination)
}
