//! The service's integration tests, one binary (each module a former
//! `tests/*.rs` file): the real service over loopback, real etcd members
//! started by the tests (`common::etcd`), `kill -9` of service processes
//! (`src/bin/envid-server.rs`).

mod auth;
mod common;
mod console;
mod embedded;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_partition;
#[cfg(feature = "etcd")]
mod etcd_tls;
mod flood;
#[cfg(feature = "fuzzing")]
mod fuzz_corpus;
mod hostile;
mod late_removal;
mod lookup;
mod metrics;
mod protection;
mod registration;
mod registry_file;
mod reload;
mod replication;
mod trust;
mod trust_findings;
mod trust_limits;
mod trust_scope;
