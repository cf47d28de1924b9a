//! A staged file's life on disk, and what a restart finds there.
//!
//! Under the staging root, at its partition's path:
//!
//! - `NAME.open`: being written, or closed and not yet sealed;
//! - `NAME.part`: sealing in progress (compressing); never complete;
//! - `NAME`: sealed: its final bytes, fsynced, ready to move or upload.
//!
//! `NAME` carries the compression it is sealed with (`….ndjson.gz`), so a
//! file opened under one config is sealed the same way after a restart
//! under another. Sealing writes `NAME.part`, fsyncs it and renames it to
//! `NAME` before removing `NAME.open` (uncompressed: renames `.open` to
//! `NAME`), so at every instant one complete copy exists and a restart can
//! tell which: `.part` files are deleted, a `.open` whose `NAME` exists is
//! a leftover, any other `.open` is sealed again.
//!
//! A crash can cut a write short; sealing keeps whole lines only (every
//! staged encoding is newline-framed), so a torn last line is dropped with
//! the batch it belonged to, which was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::codec::Compression;

pub const OPEN: &str = ".open";
pub const PART: &str = ".part";

/// A staged file being appended to.
#[derive(Debug)]
pub struct OpenFile {
    file: File,
    /// Where it is: `NAME.open`.
    pub path: PathBuf,
    pub bytes: u64,
}

impl OpenFile {
    /// Create `dir/name.open` (and `dir`).
    pub fn create(dir: &Path, name: &str) -> io::Result<OpenFile> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}{OPEN}"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(OpenFile {
            file,
            path,
            bytes: 0,
        })
    }

    /// Append whole lines; a failed write is cut back so the file ends on
    /// the last complete batch.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_all(data) {
            let _ = self.file.set_len(self.bytes);
            return Err(e);
        }
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// The sealed name of an open or partial file (`x.ndjson.gz.open` →
/// `x.ndjson.gz`).
pub fn sealed_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let base = name
        .strip_suffix(OPEN)
        .or_else(|| name.strip_suffix(PART))?;
    Some(path.with_file_name(base))
}

/// The compression a sealed name asks for.
fn compression_of(sealed: &Path) -> Compression {
    match sealed.extension().and_then(|e| e.to_str()) {
        Some("gz") => Compression::Gzip,
        Some("zst") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The extension sealing with `c` adds.
pub fn extension(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => ".gz",
        Compression::Zstd => ".zst",
        _ => "",
    }
}

/// Seal `open` (a `.open` file no one writes to any more): whole lines
/// only, compressed as its name says, fsynced. Returns the sealed path and
/// its size, or `None` when nothing was in it (the file is removed).
pub fn seal(open: &Path) -> io::Result<Option<(PathBuf, u64)>> {
    let sealed = sealed_path(open)
        .ok_or_else(|| io::Error::other(format!("{} is not a staged file", open.display())))?;
    let mut src = OpenOptions::new().read(true).write(true).open(open)?;
    let whole = whole_lines(&mut src)?;
    if whole == 0 {
        drop(src);
        std::fs::remove_file(open)?;
        return Ok(None);
    }
    if whole < src.metadata()?.len() {
        src.set_len(whole)?;
    }
    let compression = compression_of(&sealed);
    if compression == Compression::None {
        src.sync_all()?;
        drop(src);
        std::fs::rename(open, &sealed)?;
        sync_dir(&sealed)?;
        return Ok(Some((sealed, whole)));
    }
    let part = open.with_file_name(format!(
        "{}{PART}",
        sealed
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("staged")
    ));
    src.seek(SeekFrom::Start(0))?;
    let out = File::create(&part)?;
    let out = compress(compression, &mut src.take(whole), out)?;
    let size = out.metadata()?.len();
    out.sync_all()?;
    drop(out);
    std::fs::rename(&part, &sealed)?;
    sync_dir(&sealed)?;
    std::fs::remove_file(open)?;
    Ok(Some((sealed, size)))
}

fn compress(c: Compression, src: &mut impl Read, out: File) -> io::Result<File> {
    match c {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            io::copy(src, &mut enc)?;
            enc.finish()
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
            io::copy(src, &mut enc)?;
            enc.finish()
        }
        _ => Err(io::Error::other("not a file compression")),
    }
}

/// The length of `f` up to and including its last newline.
fn whole_lines(f: &mut File) -> io::Result<u64> {
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 8192];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Make a rename in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// What a restart finds under the staging root.
#[derive(Debug, Default)]
pub struct Found {
    /// Open files left by a process that ended: to seal.
    pub open: Vec<PathBuf>,
    /// Sealed files not yet moved or uploaded.
    pub sealed: Vec<PathBuf>,
}

/// Walk the staging root: delete partial seals and leftovers of finished
/// ones, and list what is still to do, oldest name first. Names starting
/// with `.` (the lock file) are not staged files.
pub fn scan(root: &Path) -> io::Result<Found> {
    let mut found = Found::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                dirs.push(path);
            } else if name.ends_with(PART) {
                std::fs::remove_file(&path)?;
            } else if name.ends_with(OPEN) {
                found.open.push(path);
            } else {
                found.sealed.push(path);
            }
        }
    }
    // A `.open` whose sealed copy exists was sealed just before the end.
    let sealed = &found.sealed;
    let mut open = Vec::new();
    for p in std::mem::take(&mut found.open) {
        if sealed_path(&p).is_some_and(|s| sealed.contains(&s)) {
            std::fs::remove_file(&p)?;
        } else {
            open.push(p);
        }
    }
    found.open = open;
    let by_name = |a: &PathBuf, b: &PathBuf| a.file_name().cmp(&b.file_name());
    found.open.sort_by(by_name);
    found.sealed.sort_by(by_name);
    Ok(found)
}

/// Remove `dir` and its parents up to (not including) `root` while they
/// are empty: a finished partition leaves no directory behind.
pub fn prune(mut dir: &Path, root: &Path) {
    while dir != root && dir.starts_with(root) {
        if std::fs::remove_dir(dir).is_err() {
            return;
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn sealing_keeps_whole_lines_and_compresses_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = OpenFile::create(&dir.path().join("a/b"), "x.ndjson.gz").unwrap();
        f.append(b"{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
        let (sealed, _) = seal(&f.path).unwrap().unwrap();
        assert_eq!(sealed, dir.path().join("a/b/x.ndjson.gz"));
        assert!(!f.path.exists());
        let plain = Compression::Gzip
            .decompress(&read(&sealed), 1 << 20)
            .unwrap();
        assert_eq!(&plain[..], b"{\"a\":1}\n{\"a\":2}\n");

        let mut f = OpenFile::create(dir.path(), "y.ndjson").unwrap();
        f.append(b"one\ntwo\n").unwrap();
        let (sealed, size) = seal(&f.path).unwrap().unwrap();
        assert_eq!((read(&sealed), size), (b"one\ntwo\n".to_vec(), 8));

        // Nothing whole: no file at all.
        let mut f = OpenFile::create(dir.path(), "z.ndjson.zst").unwrap();
        f.append(b"torn").unwrap();
        assert!(seal(&f.path).unwrap().is_none());
        assert!(!f.path.exists());
    }

    #[test]
    fn a_scan_after_a_crash_finds_what_is_left_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("p/q")).unwrap();
        std::fs::write(root.join("p/q/a.ndjson.open"), b"1\n").unwrap();
        std::fs::write(root.join("p/b.ndjson.gz.part"), b"junk").unwrap();
        std::fs::write(root.join("p/b.ndjson.gz.open"), b"2\n").unwrap();
        std::fs::write(root.join("c.ndjson.zst"), b"sealed").unwrap();
        std::fs::write(root.join("c.ndjson.zst.open"), b"3\n").unwrap();
        std::fs::write(root.join(".lock"), b"").unwrap();
        let found = scan(root).unwrap();
        assert_eq!(
            found.open,
            vec![
                root.join("p/q/a.ndjson.open"),
                root.join("p/b.ndjson.gz.open")
            ]
        );
        assert_eq!(found.sealed, vec![root.join("c.ndjson.zst")]);
        assert!(!root.join("p/b.ndjson.gz.part").exists());
        assert!(!root.join("c.ndjson.zst.open").exists());
        prune(&root.join("p/q"), root);
        assert!(root.join("p").exists(), "not empty: kept");
    }
}
