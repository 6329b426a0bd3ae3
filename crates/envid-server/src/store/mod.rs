//! The versioned record store: the one interface ([`RegistryStore`]) the
//! HTTP handlers, the reloader and the background tasks use, whatever holds
//! the records, and the vocabulary they share.
//!
//! * `records.rs`: [`Records`], the served set as two layers (static
//!   records of the registry file, registrations with leases) with its
//!   bounded change history; every store answers reads from one of these.
//! * `view.rs`: [`RecordMap`], the persistent map a snapshot holds.
//! * [`embedded`]: one machine, registrations in a local state file written
//!   by group commit.
//! * `etcd` (feature `etcd`): any number of instances on one etcd cluster;
//!   [`etcd_connect`]: how it reaches etcd (TLS, a user), checked once.
//!
//! Reads are synchronous and never wait on anything but an `Arc` load: every
//! store answers them from its in-memory [`Records`]. Writes are futures that
//! end when the write is durable (fsynced, or committed by etcd); an answer is
//! never sent for a write that a crash could still lose.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use envid::protocol::HostRecord;

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod etcd_connect;
mod records;
mod view;

pub use records::{
    Change, Delta, Gone, Lease, LeaseDetails, LeaseDue, RecordDetails, Records, Snapshot,
};
pub use view::RecordMap;

/// A boxed, sendable future (the trait is used as `dyn RegistryStore`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A write: a future that ends once the write is durable, or refused.
pub type Durable<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// One registration (`PUT /v1/hosts/{ip}`).
#[derive(Clone, Debug)]
pub struct Registration {
    /// The registered address (canonical).
    pub ip: IpAddr,
    /// The record; its `ip` is set to `ip` by the store.
    pub record: HostRecord,
    /// The lease length.
    pub lease_seconds: u64,
    /// Who registers (the authenticated app), when known: the home of
    /// ownership checks.
    pub owner: Option<String>,
}

/// Whose registrations a caller may renew or remove: true for a
/// registration the caller's credential covers (its app, within its
/// scope). Asked by the store at the moment of the write, under the same
/// lock or transaction, so a registration that changed hands in between is
/// never renewed or removed by its former owner.
pub type Owns<'a> = &'a (dyn Fn(&HostRecord) -> bool + Send + Sync);

/// A renewal the store made durable: the lease, and the registration it
/// renewed as the store held it at that moment (with its `ip` and
/// `registration` id), so an identity is signed from the caller's own
/// registration and never from whatever is served for the IP later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The lease length the renewal extended by.
    pub lease_seconds: u64,
    /// The registration renewed.
    pub record: Arc<HostRecord>,
}

/// A write the store made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The version that holds the write (the version already served when
    /// the write changed nothing served).
    pub version: u64,
    /// The lease granted (the etcd store raises it to etcd's 2 s minimum).
    pub lease_seconds: u64,
}

/// What replacing the static records did, for the caller to log or to
/// have refused beforehand (compare [`StaticOutcome::before`] with the new
/// count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaticOutcome {
    /// Static records before.
    pub before: usize,
    /// Static records after.
    pub after: usize,
    /// The new version, `None` when nothing served changed.
    pub version: Option<u64>,
}

/// Why a write was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot commit now (etcd without quorum or not reached, a
    /// disk that refuses the write); nothing was written. Retry later.
    #[error("the store cannot commit writes now: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
        /// When a retry makes sense.
        retry_after: Duration,
    },
    /// The registration is not the caller's (another app's, or outside
    /// the caller's scope); nothing was done.
    #[error("registered by another app or outside the caller's scope")]
    NotOwner(Arc<HostRecord>),
    /// The IP's registration is not the one the caller named (the IP was
    /// registered again since); nothing was done.
    #[error("the registration of this IP is another one now")]
    RegistrationChanged(Arc<HostRecord>),
}

/// Whether a caller may renew or remove `record`, the registration an IP
/// holds: `owner` accepts it (any caller when `None`) and, when the caller
/// named one, it is still `registration`. Every store asks it in the same
/// step as the write, so the registration cannot change in between.
pub(crate) fn may_touch(
    record: &Arc<HostRecord>,
    owner: Option<&dyn Fn(&HostRecord) -> bool>,
    registration: Option<&str>,
) -> Result<(), StoreError> {
    if owner.is_some_and(|owns| !owns(record)) {
        return Err(StoreError::NotOwner(record.clone()));
    }
    if registration.is_some_and(|r| record.registration.as_deref() != Some(r)) {
        return Err(StoreError::RegistrationChanged(record.clone()));
    }
    Ok(())
}

/// How the store is doing, for `/healthz` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Reads are current and writes commit.
    Ok,
    /// Reads are served from a view that may be behind (the backing store
    /// is unreachable); writes are refused.
    Stale {
        /// Why.
        reason: String,
    },
    /// No view yet (waiting for the backing store at start): nothing is
    /// served but `/healthz`.
    Starting {
        /// Why it is still waiting.
        reason: String,
    },
}

/// What the console's Health page and `GET /v1/status` say of the store
/// ([`RegistryStore::status`]), never a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStatus {
    /// `embedded` or `etcd`.
    pub kind: &'static str,
    /// The embedded store keeps registrations in a state file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    /// The etcd endpoints, each with whether it accepted a TCP connection
    /// at the last check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Revisions the view is behind etcd, as of the last probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_lag: Option<u64>,
    /// The last error the store met (it may have recovered since).
    pub last_error: Option<StoreErrorNote>,
}

/// One etcd endpoint as last checked ([`StoreStatus::members`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    /// The endpoint as given (`--etcd`).
    pub endpoint: String,
    /// Whether it accepted a TCP connection (`None`: not checked yet).
    pub reachable: Option<bool>,
    /// When it was last checked, in ms since the Unix epoch.
    pub checked_unix_ms: Option<u64>,
}

/// An error of the store and when it was met ([`StoreStatus::last_error`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoreErrorNote {
    /// What failed.
    pub message: String,
    /// When, in ms since the Unix epoch (`None`: still failing, time not kept).
    pub at_unix_ms: Option<u64>,
}

/// Milliseconds since the Unix epoch (leases end on the wall clock, so
/// they survive a restart).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A versioned record store (see the module docs).
pub trait RegistryStore: Send + Sync + std::fmt::Debug + 'static {
    /// The in-memory record set every read is answered from. Reads go
    /// through it rather than through each store, so both stores answer
    /// them alike.
    fn records(&self) -> Arc<Records>;

    /// The current snapshot (one `Arc` load).
    fn snapshot(&self) -> Arc<Snapshot> {
        self.records().snapshot()
    }

    /// Notified with the new version after every change that a delta shows.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.records().subscribe()
    }

    /// The merged changes after `since` (of the current history).
    fn changes_since(&self, since: u64) -> Result<Delta, Gone> {
        self.records().changes_since(since)
    }

    /// Waits (bounded) until the view holds `version` when a replica asks
    /// from a version this instance has not seen yet (it came from another
    /// instance that is ahead). The default does not wait.
    fn catch_up(&self, version: u64) -> BoxFuture<'_, ()> {
        let _ = version;
        Box::pin(async {})
    }

    /// For a reload's check: how many static records there are, and how
    /// many of them `records` (the new file) would delete.
    fn static_deletions(&self, records: &[HostRecord]) -> (usize, usize) {
        self.records().static_deletions(records)
    }

    /// How many registrations there are.
    fn registration_count(&self) -> usize {
        self.records().registration_count()
    }

    /// Registers (or replaces) `r`, durably.
    fn register(&self, r: Registration) -> Durable<'_, Ack>;

    /// Extends the lease of `ip` by its registered length, when `owner`
    /// accepts the registration (any when `None`: an operator, open
    /// registration) and, when `registration` is given, it is still that
    /// registration ([`StoreError::RegistrationChanged`] otherwise), both
    /// checked in the same step as the write. Returns the registration
    /// renewed, read in that step; `None` when `ip` is not registered.
    fn renew<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<Owns<'a>>,
        registration: Option<&'a str>,
    ) -> Durable<'a, Option<Renewed>>;

    /// Removes the registration of `ip` when `owner` accepts it (any when
    /// `None`) and, when `registration` is given, it is still that
    /// registration (as for [`renew`](Self::renew)); whether there was one.
    fn deregister<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<Owns<'a>>,
        registration: Option<&'a str>,
    ) -> Durable<'a, bool>;

    /// The static record (from the registry file) for exactly `ip`: no
    /// registration replaces it.
    fn static_record(&self, ip: IpAddr) -> Option<Arc<HostRecord>> {
        self.records().static_record(ip)
    }

    /// Replaces the static records (the registry file) as one version.
    fn replace_static(&self, records: Vec<HostRecord>) -> Durable<'_, StaticOutcome>;

    /// For the lease sweep (`leases.rs`): the registrations' leases
    /// at `now_ms`. The default suits a store whose leases end elsewhere
    /// (etcd's end inside etcd): nothing is ever due here.
    fn lease_due(&self, now_ms: u64) -> LeaseDue {
        let _ = now_ms;
        LeaseDue::default()
    }

    /// Ends every lease due at `now_ms` as one version (written durably
    /// later: nobody waits for it). Returns the ended IPs and the change,
    /// when one shows. The default has nothing to expire.
    fn expire(&self, now_ms: u64) -> (Vec<IpAddr>, Option<Arc<Change>>) {
        let _ = now_ms;
        (Vec::new(), None)
    }

    /// How the store is doing.
    fn health(&self) -> Health;

    /// Checks once at start, bounded in time, what a retry will not fix
    /// (etcd: the TLS handshake, the credentials, access to the prefix).
    /// `Err` is the cause, and the service does not start; a backing store
    /// that cannot be reached is not an error here (the service starts and
    /// says so on `/healthz`). Runs on the runtime that will serve.
    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// What the console and `GET /v1/status` show of the store. The
    /// default suits the embedded store without its details.
    fn status(&self) -> StoreStatus {
        StoreStatus {
            kind: "embedded",
            ..StoreStatus::default()
        }
    }

    /// More about the store for `/healthz` (the etcd store: TLS, user,
    /// client certificate expiry, credential reloads), never a secret.
    fn health_details(&self) -> Option<serde_json::Value> {
        None
    }

    /// Starts the store's background work (lease sweeps, the durable writer,
    /// the etcd watch) on the current runtime.
    fn start(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>>;

    /// The last word at shutdown (a final durable write).
    fn close(&self) -> BoxFuture<'_, ()>;
}
