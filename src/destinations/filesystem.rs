//! `type: filesystem` — staged files (`crate::staging`: partitioned,
//! rotated, compressed when sealed) moved to `output_dir` at their
//! partition's path once finished, as Cribl's Filesystem destination does.
//!
//! The move is a rename when staging and output share a filesystem. Across
//! filesystems it is a copy to a hidden `.NAME.partial` beside the target,
//! fsynced, then renamed: a reader of `output_dir` never sees a file that is
//! not complete. A copy whose target already holds the same bytes (a crash
//! after the rename, before the staged copy was removed) is not redone.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::Validate;
use crate::destinations::{BuildContext, Capabilities, DestinationType};
use crate::driver::{DeliveryDefaults, Destination, Encoded, Outcome};
use crate::event::Event;
use crate::staged_destination_config;
use crate::staging::{Finish, HasStaging, Parts, StagedFiles, files};

staged_destination_config! {
    pub struct FilesystemConfig {
        /// Where finished files go, each at its partition's path.
        pub output_dir: PathBuf,
    }
}

impl Validate for FilesystemConfig {
    fn validate(&self) -> Result<(), String> {
        if self.output_dir.as_os_str().is_empty() {
            return Err("output_dir must not be empty".into());
        }
        self.staging().validate()
    }
}

impl DestinationType for FilesystemDestination {
    const NAME: &'static str = "filesystem";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::LOCAL;
    /// Files are newline-framed (a JSON array per batch would not be one
    /// document per file); `compression` applies to each file when sealed.
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: super::kind::STREAM_ENCODINGS,
        compressions: super::kind::ALL_COMPRESSIONS,
        ..Capabilities::LOCAL
    };
    type Config = FilesystemConfig;

    async fn build(cfg: &FilesystemConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let mover = Mover {
            output_dir: cfg.output_dir.clone(),
        };
        Ok(FilesystemDestination {
            files: StagedFiles::start(cfg, ctx, mover)?,
        })
    }
}

pub struct FilesystemDestination {
    files: StagedFiles,
}

impl Destination for FilesystemDestination {
    type Request = Parts;

    fn encode(&self, events: &[Event]) -> Encoded<Parts> {
        self.files.encode(events)
    }

    async fn send(&self, parts: &Parts, _endpoint: usize) -> Outcome {
        self.files.send(parts).await
    }

    async fn close(&self) {
        self.files.close().await;
    }
}

struct Mover {
    output_dir: PathBuf,
}

impl Finish for Mover {
    const STAGE: &'static str = "move";

    async fn finish(&self, path: &Path, rel: &str) -> Result<(), String> {
        let (from, to) = (path.to_path_buf(), self.output_dir.join(rel));
        let moved = tokio::task::spawn_blocking(move || move_file(&from, &to).map(|()| to));
        match moved.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "moving {} to {}: {e}",
                path.display(),
                self.output_dir.join(rel).display()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Move `from` to `to` atomically (see the module documentation).
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => return files::sync_dir(to),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => return Err(e),
    }
    let size = std::fs::metadata(from)?.len();
    if std::fs::metadata(to).is_ok_and(|m| m.is_file() && m.len() == size) {
        return Ok(());
    }
    let name = to
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("the target has no file name"))?;
    let partial = to.with_file_name(format!(".{name}.partial"));
    let result = (|| {
        let mut src = std::fs::File::open(from)?;
        let mut dst = std::fs::File::create(&partial)?;
        io::copy(&mut src, &mut dst)?;
        dst.sync_all()?;
        std::fs::rename(&partial, to)?;
        files::sync_dir(to)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_across_filesystems_copies_then_renames() {
        // /dev/shm is a tmpfs: a rename from it to the temp dir is EXDEV.
        let shm = Path::new("/dev/shm");
        assert!(shm.is_dir(), "this test needs /dev/shm (a tmpfs)");
        let src_dir = tempfile::tempdir_in(shm).unwrap();
        let out = tempfile::tempdir().unwrap();
        let from = src_dir.path().join("a.ndjson");
        std::fs::write(&from, b"1\n2\n").unwrap();
        let to = out.path().join("p/q/a.ndjson");
        move_file(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"1\n2\n");
        let names: Vec<_> = std::fs::read_dir(out.path().join("p/q"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.ndjson")]);
        // Again after a crash that left the staged copy: not copied twice.
        std::fs::write(&from, b"1\n2\n").unwrap();
        move_file(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"1\n2\n");
    }
}
