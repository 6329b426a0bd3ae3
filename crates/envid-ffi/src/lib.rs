//! envid for other runtimes: a C ABI (header `include/envid.h`) and a JNI
//! binding for the JVM (package `io.envid`, sources under `java/`), in one
//! shared library, `libenvid_ffi`.
//!
//! Both sit on the same Rust code as the `envid` crate, so a Java service, a
//! C program and a Rust crate on one host get the same answers.
//!
//! # C conventions
//!
//! * Every function returns an [`envid_result`]; `ENVID_OK` is 0.
//! * No panic crosses the boundary: every entry point runs in
//!   [`panic::ffi_boundary`], which turns a panic into `ENVID_PANIC`.
//! * On failure, `envid_last_error()` returns the message, per thread; it is
//!   valid until the next envid call on that thread.
//! * Objects (`envid_environment`, `envid_load_options`, `envid_rules`,
//!   `envid_lookup_options`, `envid_lookup_client`, `envid_replica`,
//!   `envid_registrar`, `envid_verifier`, `envid_events`, `envid_event`)
//!   have a `*_free` that accepts NULL;
//!   owned strings are freed with `envid_string_free`; borrowed strings live
//!   as long as their object.
//! * `envid_lookup_options` are the connection options of every client
//!   (lookup client, replica, registrar, verifier, events), despite the name.
//! * Everything is thread-safe; objects are immutable once built (load
//!   options excepted, which are not synchronized; an `envid_events` is one
//!   consumer's, its calls serialized by a lock).
#![warn(missing_docs)]
#![allow(non_camel_case_types)] // C names (envid_environment, …) on purpose

pub mod environment;
pub mod error;
pub mod events;
pub mod field;
pub mod identity;
/// cbindgen:ignore
mod jni;
pub mod load_options;
pub mod lookup;
pub mod marshal;
pub mod options;
pub mod panic;
mod record;
pub mod registrar;
pub mod replica;
pub mod rules;

pub use environment::envid_environment;
pub use error::envid_result;
pub use events::{envid_event, envid_event_kind, envid_events, envid_events_stats};
pub use field::envid_field;
pub use identity::envid_verifier;
pub use load_options::envid_load_options;
pub use lookup::{envid_lookup_client, envid_lookup_stats};
pub use options::envid_lookup_options;
pub use registrar::envid_registrar;
pub use replica::{envid_replica, envid_replica_stats};
pub use rules::envid_rules;
