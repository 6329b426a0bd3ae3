//! The library's integration tests, one binary (each module a former
//! `tests/*.rs` file): linking the library, the service and their
//! dependencies once rather than once per file is most of what a clean
//! `cargo test` costs on a small machine. `tests/current.rs` stays apart: it
//! sets process-wide state (`envid::current()`, environment variables).

mod architecture;
mod deprecated_paths;
mod descriptor;
mod detect;
mod environment;
mod events;
#[cfg(feature = "fuzzing")]
mod fuzz_corpus;
mod identity;
mod lookup;
mod otel;
mod podinfo;
mod podinfo_source;
mod read;
mod registrar;
mod replica;
mod replica_fake;
mod replica_protection;
mod rules;
