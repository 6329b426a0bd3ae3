//! The reference environment service: answers IP → environment lookups,
//! replication and registrations over HTTP from a registry file and the
//! registrations it stores (embedded, or in etcd).
//!
//! What it answers, and why it answers so (endpoints, errors, limits,
//! reload, stores, persistence, metrics, logging), is in this crate's
//! README.md; where each part lives, and the invariants it keeps, in the
//! repository's ARCHITECTURE.md ("crates/envid-server"). Start a service
//! with [`spawn`] (tests, embedding) or [`run_blocking`] (`envid serve`),
//! both from a [`Config`].
//!
//! The service logs through [`tracing`] and installs no subscriber: the
//! embedding program chooses one (`envid serve` writes to stderr, filtered
//! by `RUST_LOG`, default `info`).
#![warn(missing_docs)]

// Starting, stopping, configuring.
mod config; //         Config, ServerError
mod startup; //        prepare (check, load, bind, build), spawn, run_blocking

// Serving.
mod conn; //           the accept loop: connection cap, header timeout, eviction, drain
mod error; //          ApiError and ErrorCode, every error answer
mod http; //           the router, middleware and handlers
mod metrics; //        the Prometheus metrics
mod recent; //         recent refusals and the last reload (the console's glance)
mod tls; //            rustls, the certificate re-read when it changes

// The records and what keeps them.
mod leases; //         lease expiry and lease self-preservation
mod protection;
pub mod store; //      the RegistryStore trait; records, embedded and etcd stores //     refusal of a reload that would delete most static records

// Files polled while serving.
mod hash; //           the one content hash
mod poll; //           the one polling loop and "has this file changed"
mod reload;
mod utc; //            times as RFC 3339 text, in UTC //         the registry file's reloader

// Parsers and checks of what callers and operators write.
pub mod apps; //       the app credentials file (--apps)
pub mod identity; //   signing keys, the served key set, issued identities
pub mod registration_body; // the PUT and renew bodies
pub mod registry_file; //    the registry file
pub mod validation; //       the one record check, the strict JSON reader

#[cfg(feature = "fuzzing")]
pub mod fuzzing; //    entry points of the cargo-fuzz targets (not an API)

pub use crate::config::{Config, ServerError};
pub use crate::error::ErrorCode;
pub use crate::startup::{limit_malloc_arenas, run_blocking, spawn, ServerHandle, ETCD_NOT_BUILT};
pub use crate::store::etcd_connect::{EtcdAccess, EtcdPassword};
pub use crate::tls::TlsFiles;
