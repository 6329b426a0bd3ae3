//! What every client of the environment service shares (see ARCHITECTURE.md,
//! "Where is that IP"): the lookup client
//! ([`LookupClient`](crate::lookup::LookupClient)), the replica
//! ([`Replica`](crate::replica::Replica)), the registrar
//! ([`Registrar`](crate::registrar::Registrar)) and the identity verifier
//! ([`Verifier`](crate::identity::Verifier)) all take one [`ServiceConfig`],
//! send every request through one [`Transport`] and fail with one
//! [`ClientError`]. Nothing here knows about any of them, so each can be
//! read on its own.
//!
//! * [`ServiceConfig`] holds the endpoints, the bearer token, an explicit
//!   proxy, extra TLS roots, the timeouts and the response size cap. It is
//!   validated once, by [`ServiceConfigBuilder::build`]: a client built from
//!   it cannot fail on a malformed endpoint, proxy or CA file later.
//! * [`Transport`] is the seam every request goes through, one HTTP
//!   exchange at a time; [`HttpTransport`] is the real one (ureq 3 with
//!   rustls and keep-alive). Implement it to run the clients over a test
//!   double or another HTTP stack.
//! * [`ClientError`] says what failed and at which endpoint, and never
//!   contains the token.
//!
//! Timeouts are named by the phase they bound, as ureq names them:
//!
//! * `connect` (default 500 ms): the TCP connect and TLS handshake;
//! * `per_phase` (default 2 s, 10 s for a replica, whose snapshot may be
//!   large): each phase of a request on its own: sending it, waiting for
//!   the response head, reading the body. A request thus ends within
//!   `connect + 3 × per_phase`; a replica's long poll adds its wait to the
//!   response-head phase;
//! * `total` (off by default): a strict deadline for the whole request. It
//!   costs about 50 µs a request on loopback (the socket timeout is re-armed
//!   on every read and write; `benches/lookup.rs` measures it), while the
//!   per-phase bound already stops every hang.
//!
//! ```no_run
//! use std::time::Duration;
//! use envid::client::{ClientError, ServiceConfig};
//! use envid::Secret;
//! let config = ServiceConfig::builder()
//!     .endpoint("https://envsvc.cn0.example:7070")
//!     .endpoint("https://envsvc.cn5.example:7070")
//!     .token(Secret::new("t0ken"))
//!     .ca_file("/etc/envid/ca.pem")
//!     .per_phase_timeout(Duration::from_secs(1))
//!     .build()?;
//! let client = envid::lookup::LookupClient::builder(config.clone()).build()?;
//! let replica = envid::replica::Replica::builder(config).build()?;
//! # Ok::<(), ClientError>(())
//! ```

// The per-endpoint breaker is the lookup client's; it lives here because
// it is a transport concern, and stays out of the public API.
pub(crate) mod breaker;
mod config;
mod error;
mod transport;

pub use config::{
    is_plain_http_off_loopback, ServiceConfig, ServiceConfigBuilder, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_PER_PHASE_TIMEOUT,
};
pub use error::{CacheProblem, ClientError};
pub(crate) use transport::{decode, not_found};
pub use transport::{Conditional, HttpTransport, Method, Request, Transport};

/// One builder setter: `setter!(/// docs\n name: Type)` makes
/// `pub fn name(mut self, v: Type) -> Self` setting `self.settings.name`.
/// Every client's builder keeps its settings in a `settings` field, so they
/// share this rather than each writing the same dozen methods out.
macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.settings.$name = v;
            self
        }
    };
}
pub(crate) use setter;
