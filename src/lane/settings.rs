//! A lane's settings as the user writes them (`backpressure:`, `queue:`)
//! and the rules between them, checked where they are defined so that
//! every destination type gets the same errors.

use std::path::Path;

use serde::Deserialize;

use crate::config::units::{ByteSize, Dur};
use crate::queue::{self, DiskCompression, Fsync, Mode, OnFull, QueueSettings};

/// What a destination does when it cannot keep up (`backpressure:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Sources wait for room: TCP stops reading, HTTP answers 429.
    #[default]
    Block,
    /// Never wait; shed events and count them (`reason="backpressure"`).
    Drop,
    /// Spill to the destination's disk queue; drain when the peer recovers.
    PersistentQueue,
}

/// Which events `drop` sheds (`queue.drop:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DropWhich {
    /// The incoming events (Vector's `drop_newest`).
    #[default]
    Newest,
    /// The oldest queued events, so the freshest data gets through.
    Oldest,
}

/// `queue:` settings of a destination: the in-memory lane, and the disk
/// queue under `backpressure: persistent_queue`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Lane capacity in events (default 10000).
    pub max_events: Option<usize>,
    /// With `backpressure: drop`: `newest` (default) or `oldest`.
    pub drop: Option<DropWhich>,
    /// When events go to disk: `error`, `backpressure` (default), `always`.
    pub mode: Option<Mode>,
    /// Disk limit (default 1GiB).
    pub max_bytes: Option<ByteSize>,
    /// At the limit: `block` (default) or `drop`.
    pub on_full: Option<OnFull>,
    /// `always`, `interval` (default) or `never`.
    pub fsync: Option<Fsync>,
    /// With `fsync: interval` (default 1s).
    pub fsync_interval: Option<Dur>,
    /// `none` (default) or `zstd`.
    pub compression: Option<DiskCompression>,
    /// Segment file size (default 64MiB).
    pub segment_bytes: Option<ByteSize>,
    /// `strict` (default) or `live_first`.
    pub ordering: Option<queue::Ordering>,
    /// With `ordering: live_first`: backlog events per second (default 1000).
    pub drain_rate: Option<u64>,
}

impl QueueConfig {
    /// The first disk-queue setting that is set, for "only applies with" errors.
    pub fn disk_setting(&self) -> Option<&'static str> {
        [
            (self.mode.is_some(), "mode"),
            (self.max_bytes.is_some(), "max_bytes"),
            (self.on_full.is_some(), "on_full"),
            (self.fsync.is_some(), "fsync"),
            (self.fsync_interval.is_some(), "fsync_interval"),
            (self.compression.is_some(), "compression"),
            (self.segment_bytes.is_some(), "segment_bytes"),
            (self.ordering.is_some(), "ordering"),
            (self.drain_rate.is_some(), "drain_rate"),
        ]
        .into_iter()
        .find(|(set, _)| *set)
        .map(|(_, name)| name)
    }

    /// The disk queue's settings for `destination` under `data_dir`.
    pub fn disk_settings(&self, data_dir: &Path, destination: &str) -> QueueSettings {
        QueueSettings {
            dir: queue::queue_dir(data_dir, destination),
            mode: self.mode.unwrap_or_default(),
            max_bytes: self.max_bytes.map_or(queue::DEFAULT_MAX_BYTES, |b| b.0),
            on_full: self.on_full.unwrap_or_default(),
            fsync: self.fsync.unwrap_or_default(),
            fsync_interval: self
                .fsync_interval
                .map_or(queue::DEFAULT_FSYNC_INTERVAL, Dur::get),
            compress: self.compression == Some(DiskCompression::Zstd),
            segment_bytes: self
                .segment_bytes
                .map_or(queue::DEFAULT_SEGMENT_BYTES, |b| b.0),
            ordering: self.ordering.unwrap_or_default(),
            drain_rate: self.drain_rate.unwrap_or(queue::DEFAULT_DRAIN_RATE),
        }
    }
}

pub const DEFAULT_MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanePolicy {
    Block,
    DropNewest,
    DropOldest,
    Persistent,
}

impl LanePolicy {
    pub fn new(policy: Policy, drop: DropWhich) -> Self {
        match (policy, drop) {
            (Policy::Block, _) => LanePolicy::Block,
            (Policy::Drop, DropWhich::Newest) => LanePolicy::DropNewest,
            (Policy::Drop, DropWhich::Oldest) => LanePolicy::DropOldest,
            (Policy::PersistentQueue, _) => LanePolicy::Persistent,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LanePolicy::Block => "block",
            LanePolicy::DropNewest => "drop_newest",
            LanePolicy::DropOldest => "drop_oldest",
            LanePolicy::Persistent => "persistent_queue",
        }
    }

    /// Producers reserve room first (`reserve` + `commit`) rather than
    /// pushing without waiting.
    pub fn reserves(self) -> bool {
        matches!(self, LanePolicy::Block | LanePolicy::Persistent)
    }
}

impl QueueConfig {
    /// The `queue.*` rules: each key applies only with the policy that
    /// reads it, and sizes are at least what works.
    pub fn validate(&self, policy: Policy) -> Result<(), String> {
        if self.max_events == Some(0) {
            return Err("queue.max_events must be at least 1".into());
        }
        if self.drop.is_some() && policy != Policy::Drop {
            return Err("queue.drop applies only with `backpressure: drop`".into());
        }
        if let Some(key) = self.disk_setting()
            && policy != Policy::PersistentQueue
        {
            return Err(format!(
                "queue.{key} applies only with `backpressure: persistent_queue`"
            ));
        }
        if self.drain_rate.is_some() && self.ordering != Some(queue::Ordering::LiveFirst) {
            return Err("queue.drain_rate applies only with `ordering: live_first`".into());
        }
        if self.drain_rate == Some(0) {
            return Err("queue.drain_rate must be at least 1".into());
        }
        if self.max_bytes.is_some_and(|b| b.0 == 0) {
            return Err("queue.max_bytes must be at least 1".into());
        }
        if self.segment_bytes.is_some_and(|b| b.0 < 4096) {
            return Err("queue.segment_bytes must be at least 4KiB".into());
        }
        if self.fsync_interval.is_some() && self.fsync.is_some_and(|f| f != Fsync::Interval) {
            return Err("queue.fsync_interval applies only with `fsync: interval`".into());
        }
        Ok(())
    }

    /// The lane's policy with which events `drop` sheds.
    pub fn lane_policy(&self, policy: Policy) -> LanePolicy {
        LanePolicy::new(policy, self.drop.unwrap_or_default())
    }

    /// The in-memory lane's capacity in events.
    pub fn capacity(&self) -> usize {
        self.max_events.unwrap_or(DEFAULT_MAX_EVENTS)
    }
}
