//! Moved to [`crate::client`]: the old paths of the connection
//! configuration, kept for one release so that code written against them
//! gets a deprecation warning rather than a break.

use std::time::Duration;

use crate::client;

/// Moved: [`client::ServiceConfig`] (also `envid::ServiceConfig`).
#[deprecated(note = "use envid::client::ServiceConfig or envid::ServiceConfig")]
pub type ServiceConfig = client::ServiceConfig;

/// Moved: [`client::ServiceConfigBuilder`].
#[deprecated(note = "use envid::client::ServiceConfigBuilder")]
pub type ServiceConfigBuilder = client::ServiceConfigBuilder;

/// Moved: [`client::DEFAULT_CONNECT_TIMEOUT`].
#[deprecated(note = "use envid::client::DEFAULT_CONNECT_TIMEOUT")]
pub const DEFAULT_CONNECT_TIMEOUT: Duration = client::DEFAULT_CONNECT_TIMEOUT;

/// Moved: [`client::DEFAULT_PER_PHASE_TIMEOUT`].
#[deprecated(note = "use envid::client::DEFAULT_PER_PHASE_TIMEOUT")]
pub const DEFAULT_PER_PHASE_TIMEOUT: Duration = client::DEFAULT_PER_PHASE_TIMEOUT;

/// Moved: [`client::DEFAULT_MAX_RESPONSE_BYTES`].
#[deprecated(note = "use envid::client::DEFAULT_MAX_RESPONSE_BYTES")]
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = client::DEFAULT_MAX_RESPONSE_BYTES;
