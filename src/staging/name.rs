//! Partition paths a filesystem takes. A path rendered from event fields
//! can be anything: a component over the filesystem's name limit (255
//! bytes on most), a whole path longer than a key or a path may be, or
//! bytes one filesystem refuses. Such a partition must not stall the
//! destination (a file it cannot create would be retried forever, and
//! every later event wait behind it), so:
//!
//! - a component over `MAX_COMPONENT` bytes keeps its start and gets a
//!   hash of the whole suffixed (`~` and 16 hex digits): the same value
//!   always lands in the same directory, distinct values in distinct ones;
//! - a path still over `MAX_PATH` bytes is filed as `_long/<hash>`;
//! - a name the filesystem refuses when the file is created (too long for
//!   it, invalid bytes) is filed as `_refused/<hash>` (`fallback`).
//!
//! Each is counted (`sluice_staging_renamed_events_total{reason}`).

/// Longest partition path component kept as it is (`NAME_MAX` is 255 on
/// most filesystems; the rest is margin for stricter ones).
pub const MAX_COMPONENT: usize = 200;
/// Longest partition path kept (S3 keys are at most 1024 bytes).
pub const MAX_PATH: usize = 1024;

/// Why a partition path was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renamed {
    /// A component was over `MAX_COMPONENT` bytes: shortened with a hash.
    LongName,
    /// The whole path was over `MAX_PATH` bytes: filed under `_long/`.
    LongPath,
    /// The filesystem refused the name: filed under `_refused/`.
    Refused,
}

impl Renamed {
    pub const ALL: [Renamed; 3] = [Renamed::LongName, Renamed::LongPath, Renamed::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            Renamed::LongName => "long_name",
            Renamed::LongPath => "long_path",
            Renamed::Refused => "refused",
        }
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, so a value keeps its
/// directory across restarts and upgrades.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Make `path` one the limits allow, in place; what was done, if anything.
/// First it is made relative and kept inside its directory whatever the
/// template's time specifiers rendered (found by the fuzzer: `%:.f/x`
/// rendered as `/x`, an absolute path): empty components are left out, and
/// a component of `.` or `..` becomes `_`.
pub fn fit(path: &mut String) -> Option<Renamed> {
    if path.starts_with('/')
        || path.contains("//")
        || path.split('/').any(|c| c == "." || c == "..")
    {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(|c| if c == "." || c == ".." { "_" } else { c })
            .collect();
        *path = parts.join("/");
    }
    let mut renamed = None;
    if path.split('/').any(|c| c.len() > MAX_COMPONENT) {
        let mut out = String::with_capacity(path.len().min(MAX_PATH + 64));
        for (i, c) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if c.len() <= MAX_COMPONENT {
                out.push_str(c);
                continue;
            }
            let mut keep = MAX_COMPONENT - 17;
            while !c.is_char_boundary(keep) {
                keep -= 1;
            }
            out.push_str(&c[..keep]);
            out.push_str(&format!("~{:016x}", hash(c.as_bytes())));
        }
        *path = out;
        renamed = Some(Renamed::LongName);
    }
    if path.len() > MAX_PATH {
        *path = format!("_long/{:016x}", hash(path.as_bytes()));
        renamed = Some(Renamed::LongPath);
    }
    renamed
}

/// Where a partition the filesystem refused is filed instead.
pub fn fallback(partition: &str) -> String {
    format!("_refused/{:016x}", hash(partition.as_bytes()))
}

/// Whether creating a file failed because of its name (not the disk, not
/// permissions): such a partition goes to its `fallback`.
pub fn refused(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENAMETOOLONG | libc::EILSEQ | libc::EINVAL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_components_keep_their_start_and_a_stable_hash() {
        let long = "a".repeat(300);
        let mut p = format!("{long}/x");
        assert_eq!(fit(&mut p), Some(Renamed::LongName));
        let (first, rest) = p.split_once('/').unwrap();
        assert_eq!(rest, "x");
        assert_eq!(first.len(), MAX_COMPONENT);
        assert!(first.starts_with("aaaa") && first.contains('~'));
        // Stable, and distinct for distinct values.
        let mut again = format!("{long}/x");
        fit(&mut again);
        assert_eq!(p, again);
        let mut other = format!("{}b/x", "a".repeat(299));
        fit(&mut other);
        assert_ne!(p, other);
        // Multi-byte characters are never cut in half.
        let mut wide = "é".repeat(150);
        assert_eq!(fit(&mut wide), Some(Renamed::LongName));
        assert!(wide.len() <= MAX_COMPONENT);
        let mut short = "web-1/2026/12".to_string();
        assert_eq!(fit(&mut short), None);
        assert_eq!(short, "web-1/2026/12");
    }

    #[test]
    fn a_rendered_path_stays_relative_and_inside() {
        for (from, to) in [
            ("/x/y", "x/y"),
            ("a//b/", "a/b"),
            ("../a/./b/..", "_/a/_/b/_"),
            ("ok/2026", "ok/2026"),
        ] {
            let mut p = from.to_string();
            assert_eq!(fit(&mut p), None);
            assert_eq!(p, to);
        }
    }

    #[test]
    fn a_path_too_long_as_a_whole_is_filed_under_long() {
        let mut p = vec!["x".repeat(150); 10].join("/");
        assert_eq!(fit(&mut p), Some(Renamed::LongPath));
        assert!(p.starts_with("_long/") && p.len() == 6 + 16);
        assert!(fallback("a\u{fffd}b").starts_with("_refused/"));
    }
}
