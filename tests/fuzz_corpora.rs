//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`, grown by
//! `scripts/fuzz` and committed) through its entry point in `sluice::fuzz`:
//! what the fuzzer once found stays fixed, and CI runs it in seconds
//! without the fuzzer. Each target must have a corpus.

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (name, run) in sluice::fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target needs a corpus)", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name}: empty corpus");
        for f in &files {
            let data = std::fs::read(f).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", f.display());
        }
        total += files.len();
        eprintln!("{name}: {} inputs", files.len());
    }
    assert!(total > 0);
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
