//! envid tells software where it runs.
//!
//! At deploy time a release system writes an environment descriptor onto
//! every container and VM; envid reads it, falls back to the hostname on
//! legacy KVM VMs, detects container vs VM itself, and exposes the result as
//! a typed, cached [`Environment`] with the provenance of every fact. Servers
//! also get a resilient IP-to-environment lookup client ([`lookup`]).
//!
//! ```no_run
//! let env = envid::current().expect("environment identified");
//! println!("{} in {} at {}", env.app().unwrap_or("?"), env.env(), env.idc());
//! ```
#![warn(missing_docs)]

pub mod atomic_file;
pub mod descriptor;
pub mod detect;
pub mod environment;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hostname;
#[cfg(feature = "lookup")]
pub mod lookup;
pub mod model;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod podinfo;
pub mod prefix;
pub mod protocol;
pub mod source;
pub mod vars;

pub use environment::{current, Environment, EnvironmentBuilder};
pub use error::Error;
pub use model::{ContainerInfo, ContainerRuntime, EnvType, Field, K8s, Platform, Release, Secret};
pub use source::Source;
