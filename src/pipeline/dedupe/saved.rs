//! What a `persist` dedupe remembers, on disk between runs: a header
//! (`sluice-dedupe 1\n`, the fingerprint's two keys, the count), then each
//! fingerprint with its age in milliseconds, least recently seen first.
//! Little-endian, fixed width, so a file is exactly as long as its count
//! says; anything else is refused whole. Written to a temporary file and
//! renamed, so a crash mid-write leaves the previous file or none.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 16] = b"sluice-dedupe 1\n";
const HEADER: u64 = 16 + 8 + 8 + 8;
const ENTRY: u64 = 16 + 8;

type Entries = Vec<(u128, u64)>;

/// The keys and entries saved at `path` (at most the `max` most recent);
/// `None` when there is no file.
pub fn read(path: &Path, max: usize) -> io::Result<Option<((u64, u64), Entries)>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if len < HEADER {
        return Err(bad("shorter than its header"));
    }
    let mut head = [0u8; HEADER as usize];
    f.read_exact(&mut head)?;
    if &head[..16] != MAGIC {
        return Err(bad("not a sluice dedupe file"));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let keys = (word(16), word(24));
    let n = word(32);
    if n.checked_mul(ENTRY).and_then(|b| b.checked_add(HEADER)) != Some(len) {
        return Err(bad("its length does not match its count"));
    }
    let skip = n.saturating_sub(max as u64);
    let mut entries = Vec::with_capacity(n.min(max as u64) as usize);
    let mut r = io::BufReader::new(f);
    let mut e = [0u8; ENTRY as usize];
    for i in 0..n {
        r.read_exact(&mut e)?;
        if i < skip {
            continue;
        }
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&e[..16]);
        let mut age = [0u8; 8];
        age.copy_from_slice(&e[16..]);
        entries.push((u128::from_le_bytes(fp), u64::from_le_bytes(age)));
    }
    Ok(Some((keys, entries)))
}

/// Save `n` entries, least recently seen first.
pub fn write(
    path: &Path,
    keys: (u64, u64),
    n: usize,
    entries: impl Iterator<Item = (u128, u64)>,
) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
    w.write_all(MAGIC)?;
    w.write_all(&keys.0.to_le_bytes())?;
    w.write_all(&keys.1.to_le_bytes())?;
    w.write_all(&(n as u64).to_le_bytes())?;
    let mut written = 0usize;
    for (fp, age) in entries {
        w.write_all(&fp.to_le_bytes())?;
        w.write_all(&age.to_le_bytes())?;
        written += 1;
    }
    if written != n {
        return Err(io::Error::other("the cache changed while it was saved"));
    }
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_back_and_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/d.dedupe");
        assert!(read(&path, 10).unwrap().is_none(), "no file, nothing");
        let entries: Entries = (0..5u128).map(|i| (i << 100 | i, i as u64 * 10)).collect();
        write(&path, (7, 9), 5, entries.clone().into_iter()).unwrap();
        let (keys, got) = read(&path, 10).unwrap().unwrap();
        assert_eq!(keys, (7, 9));
        assert_eq!(got, entries);
        let (_, recent) = read(&path, 2).unwrap().unwrap();
        assert_eq!(
            recent,
            entries[3..],
            "the most recent when it holds fewer now"
        );
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path, 10).is_err(), "a cut file");
        std::fs::write(&path, b"not it at all, but long enough to have a header").unwrap();
        assert!(read(&path, 10).is_err());
    }
}
