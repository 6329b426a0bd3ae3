//! Replays the corpora of the service's own fuzz targets (the registry file
//! and the registration bodies, `fuzz/`) on stable, so each input is a
//! regression test.

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let ran = envid::fuzzing::replay(&fuzz, envid_server::fuzzing::TARGETS);
    eprintln!("replayed {ran} fuzz inputs");
}
