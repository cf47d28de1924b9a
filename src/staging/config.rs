//! The staging keys the filesystem and S3 destinations share, declared once:
//! `staged_destination_config!` is `destination_config!` with them added,
//! so both types read them the same way and document them in one place.
//!
//! Defaults are Cribl's for its file-based destinations: files of at most
//! 32 MiB, closed after 300 s open or 30 s idle, at most 100 open and 100
//! waiting to be moved or uploaded; partitioned by day (`%Y/%m/%d`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::units::{ByteSize, Dur};
use crate::driver::{Compression, Encoding};

pub const DEFAULT_PARTITION: &str = "%Y/%m/%d";
pub const DEFAULT_TIME_FIELD: &str = "timestamp";
pub const DEFAULT_FILE_PREFIX: &str = "sluice";
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 << 20;
pub const DEFAULT_MAX_FILE_AGE: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_FILE_IDLE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_OPEN_FILES: usize = 100;
pub const DEFAULT_MAX_PENDING_FILES: usize = 100;

/// Declares a staged destination's config: the common delivery settings,
/// the staging keys, then its own fields.
#[macro_export]
macro_rules! staged_destination_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $crate::destination_config! {
            $(#[$meta])*
            pub struct $name {
                /// Where files are staged, under a directory per
                /// destination. Default: `<data_dir>/staging`.
                #[serde(default)]
                pub staging_dir: Option<std::path::PathBuf>,
                /// Each event's file's directory, from its fields
                /// (`{{ host }}`) and its time (strftime, UTC). Default
                /// `%Y/%m/%d`.
                #[serde(default)]
                pub partition: Option<String>,
                /// The field with the event's time; events without one are
                /// filed under the time they are written. Default `timestamp`.
                #[serde(default)]
                pub time_field: Option<String>,
                /// File names start with this. Default `sluice`.
                #[serde(default)]
                pub file_prefix: Option<String>,
                /// Close a file before it grows past this. Default 32MiB.
                #[serde(default)]
                pub max_file_bytes: Option<$crate::config::units::ByteSize>,
                /// Close a file this long after it was opened. Default 300s.
                #[serde(default)]
                pub max_file_age: Option<$crate::config::units::Dur>,
                /// Close a file nothing was written to for this long.
                /// Default 30s.
                #[serde(default)]
                pub max_file_idle: Option<$crate::config::units::Dur>,
                /// Most files open at once; the oldest is closed to open
                /// another. Default 100.
                #[serde(default)]
                pub max_open_files: Option<usize>,
                /// Most closed files waiting to be moved or uploaded before
                /// the destination applies backpressure. Default 100.
                #[serde(default)]
                pub max_pending_files: Option<usize>,
                $( $(#[$fmeta])* pub $field: $ty, )*
            }
        }

        impl $crate::staging::HasStaging for $name {
            fn staging(&self) -> $crate::staging::StagingKeys<'_> {
                $crate::staging::StagingKeys {
                    staging_dir: self.staging_dir.as_deref(),
                    partition: self.partition.as_deref(),
                    time_field: self.time_field.as_deref(),
                    file_prefix: self.file_prefix.as_deref(),
                    max_file_bytes: self.max_file_bytes,
                    max_file_age: self.max_file_age,
                    max_file_idle: self.max_file_idle,
                    max_open_files: self.max_open_files,
                    max_pending_files: self.max_pending_files,
                    encoding: self.encoding.unwrap_or_default(),
                    compression: self.compression.unwrap_or_default(),
                }
            }
        }
    };
}

/// The staging keys of one config, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct StagingKeys<'a> {
    pub staging_dir: Option<&'a Path>,
    pub partition: Option<&'a str>,
    pub time_field: Option<&'a str>,
    pub file_prefix: Option<&'a str>,
    pub max_file_bytes: Option<ByteSize>,
    pub max_file_age: Option<Dur>,
    pub max_file_idle: Option<Dur>,
    pub max_open_files: Option<usize>,
    pub max_pending_files: Option<usize>,
    pub encoding: Encoding,
    /// Applied to each file as it is sealed, not per batch.
    pub compression: Compression,
}

pub trait HasStaging {
    fn staging(&self) -> StagingKeys<'_>;
}

/// The staging settings with defaults applied.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_file_age: Duration,
    pub max_file_idle: Duration,
    pub max_open_files: usize,
    pub max_pending_files: usize,
}

impl StagingKeys<'_> {
    pub fn partition(&self) -> &str {
        self.partition.unwrap_or(DEFAULT_PARTITION)
    }

    /// The partition template with `prefix` (an S3 `key_prefix`) before it.
    pub fn template(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.partition())
    }

    pub fn time_field(&self) -> &str {
        self.time_field.unwrap_or(DEFAULT_TIME_FIELD)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes.map_or(DEFAULT_MAX_FILE_BYTES, |b| b.0),
            max_file_age: self.max_file_age.map_or(DEFAULT_MAX_FILE_AGE, Dur::get),
            max_file_idle: self.max_file_idle.map_or(DEFAULT_MAX_FILE_IDLE, Dur::get),
            max_open_files: self.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES),
            max_pending_files: self.max_pending_files.unwrap_or(DEFAULT_MAX_PENDING_FILES),
        }
    }

    /// `<staging_dir or data_dir/staging>/<id>`.
    pub fn root(&self, data_dir: &Path, id: &str) -> PathBuf {
        self.staging_dir
            .map_or_else(|| data_dir.join("staging"), Path::to_path_buf)
            .join(id)
    }

    /// A file name's ending: the encoding's, then the compression's.
    pub fn suffix(&self) -> String {
        let kind = match self.encoding {
            Encoding::Ndjson | Encoding::JsonArray => ".ndjson",
            _ => ".log",
        };
        format!("{kind}{}", super::files::extension(self.compression))
    }

    pub fn validate(&self) -> Result<(), String> {
        super::partition::Partitioner::new(self.partition(), self.time_field())?;
        if let Some(p) = self.file_prefix
            && (p.is_empty() || p.starts_with('.') || p.contains(['/', '\\']))
        {
            return Err(format!(
                "file_prefix `{p}` must be a plain name (not empty, no `/`, not starting with `.`)"
            ));
        }
        if self.max_file_bytes.is_some_and(|b| b.0 == 0) {
            return Err("max_file_bytes must be at least 1".into());
        }
        for (key, d) in [
            ("max_file_age", self.max_file_age),
            ("max_file_idle", self.max_file_idle),
        ] {
            if d.is_some_and(|d| d.get().is_zero()) {
                return Err(format!("{key} must be more than 0s"));
            }
        }
        if self.max_open_files == Some(0) {
            return Err("max_open_files must be at least 1".into());
        }
        if self.max_pending_files == Some(0) {
            return Err("max_pending_files must be at least 1".into());
        }
        Ok(())
    }
}
