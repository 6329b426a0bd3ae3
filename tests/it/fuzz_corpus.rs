//! Replays every fuzz corpus file and every crash ever found through the
//! same entry functions as the `cargo fuzz` targets (`fuzz/`), on stable, so
//! each is a regression test.

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let ran = envid::fuzzing::replay(&fuzz, envid::fuzzing::TARGETS);
    eprintln!("replayed {ran} fuzz inputs");
}
