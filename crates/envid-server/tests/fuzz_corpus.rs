//! Replays every fuzz corpus file and every crash ever found through the
//! same entry functions as the `cargo fuzz` targets (`fuzz/`), on stable, so
//! each is a regression test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use envid_server::fuzzing::TARGETS;

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut ran = 0;
    let mut failures = Vec::new();
    for (name, entry) in TARGETS {
        let mut files = 0;
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
                    failures.push(path.display().to_string());
                }
                files += 1;
            }
        }
        assert!(files > 0, "no corpus for fuzz target {name}");
        ran += files;
    }
    assert!(failures.is_empty(), "panicked on:\n{}", failures.join("\n"));
    eprintln!("replayed {ran} fuzz inputs");
}
