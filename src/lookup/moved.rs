//! The old paths of what moved out of `lookup` into [`crate::client`] and
//! [`crate::replica`], kept for one release so that code written against
//! them gets a deprecation warning rather than a break (CHANGELOG.md lists
//! what to write instead).

use crate::client;

/// Moved: [`client::ClientError`], the one error of every client.
#[deprecated(note = "use envid::client::ClientError")]
pub type LookupError = client::ClientError;

/// Moved: [`client::CacheProblem`].
#[deprecated(note = "use envid::client::CacheProblem")]
pub type CacheProblem = client::CacheProblem;

/// Moved: [`client::HttpTransport`].
#[deprecated(note = "use envid::client::HttpTransport")]
pub type HttpTransport = client::HttpTransport;

/// Moved: [`client::Request`].
#[deprecated(note = "use envid::client::Request")]
pub type Request<'a> = client::Request<'a>;

/// Moved: [`client::Method`].
#[deprecated(note = "use envid::client::Method")]
pub type Method = client::Method;

/// Moved: [`client::Conditional`].
#[deprecated(note = "use envid::client::Conditional")]
pub type Conditional = client::Conditional;

// Rust cannot deprecate a re-export, nor alias a trait: the old path of the
// trait still resolves, silently, and leaves the docs.
#[doc(hidden)]
pub use client::Transport;

/// Moved: [`crate::replica::Replica`] (also `envid::Replica`).
#[deprecated(note = "use envid::replica::Replica or envid::Replica")]
pub type Replica = crate::replica::Replica;

/// Moved: [`crate::replica::ReplicaBuilder`].
#[deprecated(note = "use envid::replica::ReplicaBuilder")]
pub type ReplicaBuilder = crate::replica::ReplicaBuilder;

/// Moved: [`crate::replica::ReplicaStats`] (also `envid::ReplicaStats`).
#[deprecated(note = "use envid::replica::ReplicaStats or envid::ReplicaStats")]
pub type ReplicaStats = crate::replica::ReplicaStats;

/// Moved: [`crate::replica::ReplicaView`].
#[deprecated(note = "use envid::replica::ReplicaView")]
pub type ReplicaView = crate::replica::ReplicaView;

/// Moved: [`crate::replica::CacheFileStatus`].
#[deprecated(note = "use envid::replica::CacheFileStatus")]
pub type CacheFileStatus = crate::replica::CacheFileStatus;

/// Moved: [`crate::replica`], a module of its own.
#[deprecated(note = "use envid::replica")]
pub mod replica {
    /// Moved: [`crate::replica::Replica`].
    #[deprecated(note = "use envid::replica::Replica")]
    pub type Replica = crate::replica::Replica;

    /// Moved: [`crate::replica::ReplicaBuilder`].
    #[deprecated(note = "use envid::replica::ReplicaBuilder")]
    pub type ReplicaBuilder = crate::replica::ReplicaBuilder;

    /// Moved: [`crate::replica::ReplicaStats`].
    #[deprecated(note = "use envid::replica::ReplicaStats")]
    pub type ReplicaStats = crate::replica::ReplicaStats;

    /// Moved: [`crate::replica::ReplicaView`].
    #[deprecated(note = "use envid::replica::ReplicaView")]
    pub type ReplicaView = crate::replica::ReplicaView;

    /// Moved: [`crate::replica::CacheFileStatus`].
    #[deprecated(note = "use envid::replica::CacheFileStatus")]
    pub type CacheFileStatus = crate::replica::CacheFileStatus;
}
