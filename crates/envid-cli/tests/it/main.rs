//! The `envid` command's integration tests, one binary (each module a former
//! `tests/*.rs` file): they run the built `envid` against real files, real
//! services and real etcd members.

mod cli;
mod events;
mod identity;
#[cfg(feature = "etcd")]
mod serve_etcd;
