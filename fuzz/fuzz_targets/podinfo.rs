#![no_main]
// The same entry as tests/fuzz_corpus.rs replays on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| envid::fuzzing::podinfo(data));
