//! What the console reads of the record set beside the records: when each
//! served key appeared and last changed, the lease of a served
//! registration, the retained changes. Kept by [`Records`] as it commits;
//! in memory only.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use envid::protocol::RecordKey;

use super::{Change, Records};

/// When a served record appeared and last changed, and its lease
/// ([`Records::details`]): what the console shows beside each record.
/// Kept in memory only: after a restart every record reads as served since
/// the start ([`Records::started_unix_ms`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordDetails {
    /// When the key was first served by this process.
    pub since_unix_ms: u64,
    /// When its served record last changed.
    pub changed_unix_ms: u64,
    /// The lease, when the served record is a registration.
    pub lease: Option<LeaseDetails>,
}

/// The lease of a served registration ([`RecordDetails::lease`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseDetails {
    /// The lease length; 0 when the lease is etcd's (the etcd view).
    pub lease_seconds: u64,
    /// When it ends; `None` when etcd holds it.
    pub expires_unix_ms: Option<u64>,
    /// When the registration was accepted (its `PUT`), when known.
    pub registered_unix_ms: Option<u64>,
}

impl Records {
    /// When this record set was made (see [`RecordDetails`]).
    pub fn started_unix_ms(&self) -> u64 {
        self.started_unix_ms
    }

    /// The registered IPs whose registration is the served record (not
    /// hidden under a static record of the file).
    pub fn registered_ips(&self) -> HashSet<IpAddr> {
        let inner = self.lock();
        inner
            .dynamic
            .keys()
            .filter(|ip| !inner.statics.contains_key(&RecordKey::Ip(**ip)))
            .copied()
            .collect()
    }

    /// When each of `keys` appeared and last changed, and its lease, under
    /// one lock (a page of records, not the registry: the writers wait).
    /// `None` for a key not served.
    pub fn details(&self, keys: &[RecordKey]) -> Vec<Option<RecordDetails>> {
        let inner = self.lock();
        keys.iter()
            .map(|k| {
                let t = inner.times.get(k)?;
                let lease = match k {
                    RecordKey::Ip(ip) if !inner.statics.contains_key(k) => {
                        inner.dynamic.get(ip).map(|d| LeaseDetails {
                            lease_seconds: d.lease_seconds,
                            // Leases of the etcd view are etcd's: no
                            // length or end is known here.
                            expires_unix_ms: (d.lease_seconds != 0
                                && d.expires_unix_ms != u64::MAX)
                                .then_some(d.expires_unix_ms),
                            registered_unix_ms: (d.registered_unix_ms != 0)
                                .then_some(d.registered_unix_ms),
                        })
                    }
                    _ => None,
                };
                Some(RecordDetails {
                    since_unix_ms: t.since,
                    changed_unix_ms: t.changed,
                    lease,
                })
            })
            .collect()
    }

    /// The retained changes, newest first, at most `limit`.
    pub fn recent_changes(&self, limit: usize) -> Vec<Arc<Change>> {
        self.lock()
            .history
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}
