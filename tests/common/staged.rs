//! Reading what the staged destinations wrote: the files under an output
//! directory (or S3 objects), decompressed by their extension, as a user
//! would read them with `zcat` or `zstdcat`.

use std::io::Read;
use std::path::Path;

/// The lines of a file's bytes, decompressed when its name says so.
pub fn lines_of(name: &str, bytes: &[u8]) -> Vec<String> {
    let mut text = String::new();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name} is not gzip: {e}"));
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(bytes)
            .and_then(|mut d| d.read_to_string(&mut text))
            .unwrap_or_else(|e| panic!("{name} is not zstd: {e}"));
    } else {
        text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    }
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{name} ends with a torn line"
    );
    text.lines().map(str::to_string).collect()
}

/// Every file under `dir` (path relative to it, `/`-separated), sorted by
/// path, with its lines. Hidden files (a copy in progress) and files that
/// vanished while being read (moved on) are left out.
pub fn read_tree(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for rel in names(dir) {
        if rel.rsplit('/').next().is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.join(&rel)) else {
            continue;
        };
        let lines = lines_of(&rel, &bytes);
        out.push((rel, lines));
    }
    out
}

/// Every file's path under `dir`, relative and `/`-separated, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// Every line under `dir`, files in path order.
pub fn all_lines(dir: &Path) -> Vec<String> {
    read_tree(dir).into_iter().flat_map(|(_, l)| l).collect()
}

/// File names under `dir` (recursively) that are not finished files: hidden
/// partial copies, open or half-sealed staged files.
pub fn unfinished(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            name.starts_with('.') || name.ends_with(".open") || name.ends_with(".part")
        })
        .collect()
}
