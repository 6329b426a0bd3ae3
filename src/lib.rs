//! envid tells software where it runs.
//!
//! At deploy time a release system writes an environment descriptor onto
//! every container and VM. envid answers two questions from it:
//!
//! * **Where am I?** [`current()`] reads the descriptor (falling back to the
//!   hostname convention on legacy KVM VMs, and probing container vs VM
//!   itself) and gives a typed, cached [`Environment`] with the provenance
//!   ([`Source`]) of every fact.
//! * **Where is that IP?** A server asks the environment service which
//!   application and environment an address belongs to, on demand
//!   ([`LookupClient`]) or from a full replica of the registry ([`Replica`]);
//!   instances register themselves with a [`Registrar`]. All three take one
//!   [`ServiceConfig`] and fail with one [`ClientError`] ([`client`]).
//!
//! ARCHITECTURE.md in the repository maps the code; the README has the
//! formats and the CLI.
//!
//! # Where am I
//!
//! ```no_run
//! use std::error::Error;
//!
//! fn main() -> Result<(), Box<dyn Error>> {
//!     let env = envid::current()?;
//!     if env.env_type() == &envid::EnvType::Prod {
//!         println!("careful: production");
//!     }
//!     println!("{} in {} at {}", env.app().unwrap_or("?"), env.env(), env.idc());
//!     println!("env came from {}", env.source(envid::Field::Env).unwrap());
//!     Ok(())
//! }
//! ```
//!
//! # Where is that IP
//!
//! ```no_run
//! # #[cfg(feature = "lookup")] {
//! use std::error::Error;
//! use std::net::IpAddr;
//!
//! fn main() -> Result<(), Box<dyn Error>> {
//!     let config = envid::ServiceConfig::builder()
//!         .endpoint("http://envsvc.cn0.example:7070")
//!         .build()?;
//!     let client = envid::LookupClient::builder(config).build()?;
//!     let ip: IpAddr = "10.8.1.77".parse()?;
//!     match client.lookup(ip)? {
//!         Some(record) => println!("{ip} is {:?} in {}", record.app, record.env),
//!         None => println!("{ip} is unknown"),
//!     }
//!     Ok(())
//! }
//! # }
//! ```
//!
//! # Features
//!
//! * `lookup` (on by default): the blocking clients ([`LookupClient`],
//!   [`Replica`], [`Registrar`]) on ureq with rustls. It brings the TLS stack
//!   (rustls, ring, webpki-roots); a crate that only asks "where am I"
//!   depends on envid with `default-features = false` and gets none of it.
//!   It also holds signed identities ([`identity`]: Ed25519 JWTs, the
//!   [`identity::Verifier`], the `Envid-Identity` header helpers), which add
//!   no crate to it.
//! * `opentelemetry`: `otel::EnvidResourceDetector`, envid's facts as an
//!   OpenTelemetry resource.
//! * `fuzzing`: entry points for the fuzz targets; never enable it in a
//!   product.
#![warn(missing_docs)]

pub mod apollo;
pub mod atomic_file;
#[cfg(feature = "lookup")]
pub mod client;
pub mod descriptor;
pub mod detect;
pub mod env_type;
pub mod environment;
pub mod error;
#[cfg(feature = "lookup")]
pub mod events;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "lookup")]
pub mod identity;
pub mod location;
#[cfg(feature = "lookup")]
pub mod lookup;
pub mod model;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod podinfo;
pub mod prefix;
pub mod protocol;
pub mod read;
#[cfg(feature = "lookup")]
pub mod registrar;
#[cfg(feature = "lookup")]
pub mod replica;
pub mod rules;
#[cfg(feature = "lookup")]
#[deprecated(note = "use envid::client")]
pub mod service_config;
pub mod source;
pub mod vars;

#[cfg(feature = "lookup")]
pub use client::{ClientError, ServiceConfig};
pub use env_type::EnvType;
pub use environment::{current, current_if_loaded, Environment, EnvironmentBuilder};
pub use error::LoadError;
#[cfg(feature = "lookup")]
pub use lookup::LookupClient;
pub use model::{ContainerInfo, ContainerRuntime, Field, K8s, Labels, Platform, Release, Secret};
#[cfg(feature = "lookup")]
pub use protocol::HostRecord;
#[cfg(feature = "lookup")]
pub use registrar::{Registrar, Registration};
#[cfg(feature = "lookup")]
pub use replica::{Replica, ReplicaStats};
pub use source::Source;

/// Renamed [`LoadError`]: it is the error of loading an environment only.
#[deprecated(note = "renamed: use envid::LoadError")]
pub type Error = LoadError;

/// Moved: [`ClientError`], the one error of every client.
#[cfg(feature = "lookup")]
#[deprecated(note = "use envid::ClientError (envid::client::ClientError)")]
pub type LookupError = client::ClientError;
