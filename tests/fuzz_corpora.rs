//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`, grown by
//! `scripts/fuzz` and committed) and the inputs of the crashes it once
//! found (`fuzz/regressions/<target>/`, kept apart because minimising a
//! corpus renames and may drop them) through the target's entry point in
//! `sluice::fuzz`: what the fuzzer found stays fixed, and CI runs it in
//! seconds without the fuzzer. Each target must have a corpus.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a corpus entry").path()).collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_corpus_and_regression_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, run) in sluice::fuzz::TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "{name}: no corpus under fuzz/corpus");
        let regressions = inputs(&root.join("regressions").join(name));
        for f in corpus.iter().chain(&regressions) {
            let data = std::fs::read(f).expect("read a corpus file");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(f.display().to_string());
            }
        }
        total += corpus.len() + regressions.len();
        eprintln!(
            "{name}: {} inputs, {} regressions",
            corpus.len(),
            regressions.len()
        );
    }
    assert!(total > 0);
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
}

/// The fuzz crate has one target per entry point, and no other.
#[test]
fn each_entry_point_has_a_fuzz_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/fuzz_targets")
        .map(|e| {
            e.expect("entry")
                .path()
                .file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    targets.sort();
    let mut names: Vec<String> = sluice::fuzz::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.sort();
    assert_eq!(targets, names);
}
