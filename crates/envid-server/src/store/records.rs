//! The served record set ([`Records`]): the current registry as an immutable
//! snapshot behind an atomic swap, plus a bounded history of changes. Both
//! stores keep one and answer every read from it; the embedded store writes
//! to it directly, the etcd store applies etcd's watch events to it.
//!
//! The record set has two layers: *static* records from the registry file and
//! *dynamic* records registered over HTTP (`PUT /v1/hosts/{ip}`) with a lease.
//! What is served is the static set with the dynamic records laid over it,
//! except that a static record for the exact IP always wins: the registry
//! file is the operator's word, and no registration replaces it (the service
//! refuses such a registration with `409`; one made before a reload added
//! the static record stays hidden under it until it ends). A file reload
//! replaces only the static layer, so registrations survive reloads.
//!
//! Every change to the served set (a reload that changes records, a
//! registration, an expiry, a deletion) bumps the version by one and is kept
//! in the history as upserts and deletes, so a replica that knows version N
//! can be sent just what changed after N, or told to fetch the whole registry
//! again when N has fallen out of the history. Operations that change nothing
//! served (a renewal, a re-registration with the same record, a reload that
//! only touches comments) do not bump the version.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use envid::protocol::{canonical_ip, HostRecord, RecordKey};
use serde::{Deserialize, Serialize};

use super::view::RecordMap;
use super::{may_touch, StoreError};

/// One immutable version of the registry. Readers hold an `Arc` to it, so a
/// swap never blocks or tears an ongoing lookup.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The history `version` belongs to: versions of two histories are
    /// never compared (see ARCHITECTURE.md, "Invariants").
    pub history: Arc<str>,
    /// The version (1 for the registry loaded at start without saved state).
    pub version: u64,
    /// Every served record by its key, in key order, with the
    /// longest-prefix lookup; a persistent map, so a new version shares all
    /// but what changed with the old one.
    pub records: RecordMap,
}

impl Snapshot {
    /// The most specific record for `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<HostRecord>> {
        self.records.lookup(ip)
    }
}

/// What one version changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The version this change produced.
    pub version: u64,
    /// Records added or replaced: first the `joins` whose keys were not
    /// served before, then those that replaced a served record.
    pub upserts: Vec<Arc<HostRecord>>,
    /// Keys whose records were removed.
    pub deletes: Vec<RecordKey>,
    /// How many of `upserts` (the first ones) are joins, so the console
    /// tells a join from a change without keeping the old records.
    pub joins: usize,
    /// When this process made (or, for the etcd view, applied) the change,
    /// in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// When a served key appeared and last changed.
#[derive(Clone, Copy, Debug)]
struct Times {
    since: u64,
    changed: u64,
}

/// The changes after a version, merged (the replication delta).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The current version.
    pub version: u64,
    /// Records added or replaced after the asked version (latest state of each key).
    pub upserts: Vec<Arc<HostRecord>>,
    /// Keys removed after the asked version (and not re-added).
    pub deletes: Vec<RecordKey>,
}

/// The asked version is not one a delta can start from: older than the
/// retained history, or newer than the current version (a replica that saw a
/// previous run of the service). Fetch the whole registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "version {asked} is not in the retained history (deltas can start from {oldest} to {current})"
)]
pub struct Gone {
    /// The version asked for.
    pub asked: u64,
    /// The oldest version a delta can start from.
    pub oldest: u64,
    /// The current version.
    pub current: u64,
}

/// A registered (dynamic) record and its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The record, with `ip` set to the registered address.
    pub record: HostRecord,
    /// The lease length a renewal extends by.
    pub lease_seconds: u64,
    /// When the lease ends, in milliseconds since the Unix epoch (wall
    /// clock, so it survives a restart).
    pub expires_unix_ms: u64,
}

/// The registrations' leases at one moment ([`Records::lease_due`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseDue {
    /// Registrations, the due ones included.
    pub live: usize,
    /// Registrations whose lease has ended.
    pub due: usize,
    /// The longest lease among the due ones, in milliseconds.
    pub longest_ms: u64,
}

/// A registration: its record and its lease.
struct Leased {
    record: Arc<HostRecord>,
    lease_seconds: u64,
    expires_unix_ms: u64,
    /// When its `PUT` was accepted (0: not known, e.g. restored or etcd's).
    registered_unix_ms: u64,
}

#[derive(Default)]
struct Inner {
    history: VecDeque<Arc<Change>>,
    statics: BTreeMap<RecordKey, Arc<HostRecord>>,
    dynamic: BTreeMap<IpAddr, Leased>,
    /// (expiry, ip) for every dynamic record: the expiry sweep's index.
    expiries: BTreeSet<(u64, IpAddr)>,
    /// The version the next commit gets instead of current + 1 (the etcd
    /// view, whose versions are etcd revisions).
    next_version: Option<u64>,
    /// The version just before the oldest retained change (versions need
    /// not be consecutive: etcd revisions are not).
    base: u64,
    /// When each served key appeared and last changed (the console's).
    times: HashMap<RecordKey, Times>,
}

/// The layered record set with its change history (see the module docs):
/// what a store holds in memory and answers every read from.
#[derive(Debug)]
pub struct Records {
    current: RwLock<Arc<Snapshot>>,
    /// Also the writers' lock: held for a whole write, so writes are serialized.
    inner: Mutex<Inner>,
    history_limit: usize,
    version_tx: tokio::sync::watch::Sender<u64>,
    /// Bumped on every change of the dynamic layer (for the persister).
    dynamic_tx: tokio::sync::watch::Sender<u64>,
    /// When this record set was made: the time every record it started
    /// with reads as served since.
    started_unix_ms: u64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("history", &self.history.len())
            .field("statics", &self.statics.len())
            .field("dynamic", &self.dynamic.len())
            .finish()
    }
}

/// The static records by key, each with its `ip` in the canonical form the
/// key has (an etcd static set written by an older instance may hold
/// `::ffff:a.b.c.d`; served as it is, the record would contradict its key).
fn keyed(records: Vec<HostRecord>) -> BTreeMap<RecordKey, Arc<HostRecord>> {
    records
        .into_iter()
        .filter_map(|mut r| {
            r.ip = r.ip.map(canonical_ip);
            Some((r.key()?, Arc::new(r.with_env_type())))
        })
        .collect()
}

impl Records {
    /// A record set at version 1 holding `records` (later records replace earlier
    /// ones with the same key), keeping at most `history_limit` changes.
    pub fn new(records: Vec<HostRecord>, history_limit: usize) -> Records {
        Records::with_registrations(records, Vec::new(), 1, history_limit)
    }

    /// A record set at `version` holding the static `records` with the
    /// registrations `leases` laid over them (leases without a single `ip`
    /// are skipped; expired ones are dropped by the next [`Records::expire`]).
    pub fn with_registrations(
        records: Vec<HostRecord>,
        leases: Vec<Lease>,
        version: u64,
        history_limit: usize,
    ) -> Records {
        let mut inner = Inner {
            statics: keyed(records),
            ..Inner::default()
        };
        for lease in leases {
            let Some(ip) = lease.record.ip.map(canonical_ip) else {
                continue;
            };
            let mut record = lease.record.with_env_type();
            record.ip = Some(ip);
            record.cidr = None;
            inner.expiries.insert((lease.expires_unix_ms, ip));
            inner.dynamic.insert(
                ip,
                Leased {
                    record: Arc::new(record),
                    lease_seconds: lease.lease_seconds,
                    expires_unix_ms: lease.expires_unix_ms,
                    registered_unix_ms: 0,
                },
            );
        }
        let mut records: RecordMap = inner.statics.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (ip, d) in &inner.dynamic {
            // The file's record for the exact IP wins.
            let key = RecordKey::Ip(*ip);
            if records.get(&key).is_none() {
                records.insert(key, d.record.clone());
            }
        }
        let version = version.max(1);
        inner.base = version;
        let started_unix_ms = super::now_unix_ms();
        let at_start = Times {
            since: started_unix_ms,
            changed: started_unix_ms,
        };
        inner.times = records.iter().map(|(k, _)| (*k, at_start)).collect();
        Records {
            current: RwLock::new(Arc::new(Snapshot {
                history: Arc::from(""),
                version,
                records,
            })),
            inner: Mutex::new(inner),
            history_limit: history_limit.max(1),
            version_tx: tokio::sync::watch::channel(version).0,
            dynamic_tx: tokio::sync::watch::channel(0).0,
            started_unix_ms,
        }
    }

    /// Names the history this record set's versions belong to (before it is
    /// shared).
    pub fn with_history(self, history: impl Into<Arc<str>>) -> Records {
        {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            let old = &**current;
            *current = Arc::new(Snapshot {
                history: history.into(),
                version: old.version,
                records: old.records.clone(),
            });
        }
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current snapshot (cheap: one `Arc` clone under a read lock).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.snapshot().version
    }

    /// Notified with the new version after every change (for long polls).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// Notified after every change of the registrations, renewals included
    /// (for persisting them).
    pub fn subscribe_registrations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.dynamic_tx.subscribe()
    }

    /// Replaces the static record set (a registry reload); registrations
    /// stay. Returns the change, or `None` (and the version stays) when no
    /// served record differs.
    pub fn replace_all(&self, records: Vec<HostRecord>) -> Option<Arc<Change>> {
        let mut inner = self.lock();
        let new = keyed(records);
        let mut touched: BTreeSet<RecordKey> = inner.statics.keys().copied().collect();
        touched.extend(new.keys().copied());
        inner.statics = new;
        self.commit(&mut inner, touched)
    }

    /// Applies upserts and deletes to the static layer as one new version.
    /// Returns the change, or `None` (and the version stays) when nothing
    /// served would change.
    pub fn apply(
        &self,
        upserts: Vec<Arc<HostRecord>>,
        deletes: Vec<RecordKey>,
    ) -> Option<Arc<Change>> {
        let mut inner = self.lock();
        let mut touched = BTreeSet::new();
        for k in deletes {
            inner.statics.remove(&k);
            touched.insert(k);
        }
        for r in upserts {
            if let Some(k) = r.key() {
                let r = if r.env_type.is_some() {
                    r
                } else {
                    Arc::new((*r).clone().with_env_type())
                };
                inner.statics.insert(k, r);
                touched.insert(k);
            }
        }
        self.commit(&mut inner, touched)
    }

    /// Registers (or replaces) the dynamic record for `ip` with a lease of
    /// `lease_seconds` from `now_ms`. Returns the change (`None` when the
    /// served record was already this one: only the lease moved).
    pub fn register(
        &self,
        ip: IpAddr,
        mut record: HostRecord,
        lease_seconds: u64,
        now_ms: u64,
    ) -> Option<Arc<Change>> {
        let ip = canonical_ip(ip);
        record.ip = Some(ip);
        record.cidr = None;
        let record = record.with_env_type();
        let expires_unix_ms = now_ms.saturating_add(lease_seconds.saturating_mul(1000));
        let mut inner = self.lock();
        if let Some(old) = inner.dynamic.remove(&ip) {
            inner.expiries.remove(&(old.expires_unix_ms, ip));
        }
        inner.expiries.insert((expires_unix_ms, ip));
        inner.dynamic.insert(
            ip,
            Leased {
                record: Arc::new(record),
                lease_seconds,
                expires_unix_ms,
                registered_unix_ms: now_ms,
            },
        );
        let change = self.commit(&mut inner, [RecordKey::Ip(ip)]);
        self.dynamic_tx.send_modify(|g| *g += 1);
        change
    }

    /// The static record (from the registry file) for exactly `ip`, if any.
    pub fn static_record(&self, ip: IpAddr) -> Option<Arc<HostRecord>> {
        self.lock()
            .statics
            .get(&RecordKey::Ip(canonical_ip(ip)))
            .cloned()
    }

    /// [`Records::renew`] by its registered lease length, only when
    /// [`may_touch`] allows it (`owner`, `registration`), with the
    /// registration renewed.
    pub fn renew_owned(
        &self,
        ip: IpAddr,
        owner: Option<&dyn Fn(&HostRecord) -> bool>,
        registration: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<(u64, Arc<HostRecord>)>, StoreError> {
        // Checked and renewed under one lock: a registration that changes
        // hands in between cannot be renewed by its former owner.
        let ip = canonical_ip(ip);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(d) = inner.dynamic.get_mut(&ip) else {
            return Ok(None);
        };
        may_touch(&d.record, owner, registration)?;
        let lease = d.lease_seconds;
        inner.expiries.remove(&(d.expires_unix_ms, ip));
        d.expires_unix_ms = now_ms.saturating_add(lease.saturating_mul(1000));
        inner.expiries.insert((d.expires_unix_ms, ip));
        self.dynamic_tx.send_modify(|g| *g += 1);
        Ok(Some((lease, d.record.clone())))
    }

    /// [`Records::deregister`], only when [`may_touch`] allows it (`owner`,
    /// `registration`).
    pub fn deregister_owned(
        &self,
        ip: IpAddr,
        owner: Option<&dyn Fn(&HostRecord) -> bool>,
        registration: Option<&str>,
    ) -> Result<(bool, Option<Arc<Change>>), StoreError> {
        let ip = canonical_ip(ip);
        let mut inner = self.lock();
        if let Some(d) = inner.dynamic.get(&ip) {
            may_touch(&d.record, owner, registration)?;
        }
        let Some(old) = inner.dynamic.remove(&ip) else {
            return Ok((false, None));
        };
        inner.expiries.remove(&(old.expires_unix_ms, ip));
        let change = self.commit(&mut inner, [RecordKey::Ip(ip)]);
        self.dynamic_tx.send_modify(|g| *g += 1);
        Ok((true, change))
    }

    /// Extends the lease of `ip` to `lease_seconds` (its registered lease
    /// when `None`) from `now_ms`. Returns the lease length, or `None` when
    /// `ip` is not registered. Never changes the version.
    pub fn renew(&self, ip: IpAddr, lease_seconds: Option<u64>, now_ms: u64) -> Option<u64> {
        let ip = canonical_ip(ip);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let d = inner.dynamic.get_mut(&ip)?;
        let lease = lease_seconds.unwrap_or(d.lease_seconds);
        inner.expiries.remove(&(d.expires_unix_ms, ip));
        d.lease_seconds = lease;
        d.expires_unix_ms = now_ms.saturating_add(lease.saturating_mul(1000));
        inner.expiries.insert((d.expires_unix_ms, ip));
        self.dynamic_tx.send_modify(|g| *g += 1);
        Some(lease)
    }

    /// Removes the registration of `ip`. Returns whether there was one, and
    /// the change (a delete, or the static record for `ip` showing again).
    pub fn deregister(&self, ip: IpAddr) -> (bool, Option<Arc<Change>>) {
        let ip = canonical_ip(ip);
        let mut inner = self.lock();
        let Some(old) = inner.dynamic.remove(&ip) else {
            return (false, None);
        };
        inner.expiries.remove(&(old.expires_unix_ms, ip));
        let change = self.commit(&mut inner, [RecordKey::Ip(ip)]);
        self.dynamic_tx.send_modify(|g| *g += 1);
        (true, change)
    }

    /// Drops every registration whose lease ended at or before `now_ms`, as
    /// one new version. Returns the expired IPs and the change.
    pub fn expire(&self, now_ms: u64) -> (Vec<IpAddr>, Option<Arc<Change>>) {
        let mut inner = self.lock();
        let mut expired = Vec::new();
        while let Some(&(at, ip)) = inner.expiries.first() {
            if at > now_ms {
                break;
            }
            inner.expiries.pop_first();
            inner.dynamic.remove(&ip);
            expired.push(ip);
        }
        if expired.is_empty() {
            return (expired, None);
        }
        let change = self.commit(&mut inner, expired.iter().map(|ip| RecordKey::Ip(*ip)));
        self.dynamic_tx.send_modify(|g| *g += 1);
        (expired, change)
    }

    /// The current registrations (for persisting them), in IP order.
    pub fn registrations(&self) -> Vec<Lease> {
        self.lock()
            .dynamic
            .values()
            .map(|d| Lease {
                record: (*d.record).clone(),
                lease_seconds: d.lease_seconds,
                expires_unix_ms: d.expires_unix_ms,
            })
            .collect()
    }

    /// For a reload's check: how many static records there are, and how
    /// many of them `records` (the new file) would delete.
    pub fn static_deletions(&self, records: &[HostRecord]) -> (usize, usize) {
        let inner = self.lock();
        let new: BTreeSet<RecordKey> = records.iter().filter_map(HostRecord::key).collect();
        let gone = inner.statics.keys().filter(|k| !new.contains(k)).count();
        (inner.statics.len(), gone)
    }

    /// For the lease sweep and self-preservation: the registrations, how
    /// many of them ended at or before `now_ms`, and the longest lease
    /// among those.
    pub fn lease_due(&self, now_ms: u64) -> LeaseDue {
        let inner = self.lock();
        let mut due = 0;
        let mut longest = 0;
        for (_, ip) in inner.expiries.range(..=(now_ms, IpAddr::from([255u8; 16]))) {
            due += 1;
            if let Some(d) = inner.dynamic.get(ip) {
                longest = longest.max(d.lease_seconds.saturating_mul(1000));
            }
        }
        LeaseDue {
            live: inner.dynamic.len(),
            due,
            longest_ms: longest,
        }
    }

    /// How many registrations there are.
    pub fn registration_count(&self) -> usize {
        self.lock().dynamic.len()
    }

    /// How many static records there are.
    pub fn static_count(&self) -> usize {
        self.lock().statics.len()
    }

    /// Runs `f` (one write) so that its change, if any, is version
    /// `version` rather than the next number: the etcd view's versions are
    /// the revisions that made them. Writes must be serialized by the caller.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))] // the etcd view's
    pub(crate) fn at_version<T>(&self, version: u64, f: impl FnOnce(&Records) -> T) -> T {
        self.lock().next_version = Some(version);
        let out = f(self);
        self.lock().next_version = None;
        out
    }

    /// Replaces both layers at once (the etcd view after a re-list) as one
    /// change: what differs from the served set. Leases never expire here.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))] // the etcd view's
    pub(crate) fn reset(
        &self,
        statics: Vec<HostRecord>,
        registered: Vec<HostRecord>,
    ) -> Option<Arc<Change>> {
        let mut inner = self.lock();
        let mut touched: BTreeSet<RecordKey> = inner.statics.keys().copied().collect();
        touched.extend(inner.dynamic.keys().map(|ip| RecordKey::Ip(*ip)));
        inner.statics = keyed(statics);
        touched.extend(inner.statics.keys().copied());
        inner.dynamic.clear();
        inner.expiries.clear();
        for mut record in registered {
            let Some(ip) = record.ip.map(canonical_ip) else {
                continue;
            };
            record.ip = Some(ip);
            record.cidr = None;
            touched.insert(RecordKey::Ip(ip));
            inner.dynamic.insert(
                ip,
                Leased {
                    record: Arc::new(record.with_env_type()),
                    lease_seconds: 0,
                    expires_unix_ms: u64::MAX,
                    registered_unix_ms: 0,
                },
            );
        }
        self.commit(&mut inner, touched)
    }

    /// Recomputes the served record of each `touched` key (the registration
    /// for an IP, else the static record) and commits what differs from the
    /// current snapshot as one new version.
    fn commit(
        &self,
        inner: &mut Inner,
        touched: impl IntoIterator<Item = RecordKey>,
    ) -> Option<Arc<Change>> {
        let current = self.snapshot();
        let mut upserts = Vec::new();
        let mut replaced = Vec::new();
        let mut deletes = Vec::new();
        for k in touched {
            let served = inner.statics.get(&k).or_else(|| match k {
                RecordKey::Ip(ip) => inner.dynamic.get(&ip).map(|d| &d.record),
                RecordKey::Net(_) => None,
            });
            match (served, current.records.get(&k)) {
                (Some(new), Some(old)) if Arc::ptr_eq(new, old) || **new == **old => {}
                (Some(new), Some(_)) => replaced.push(new.clone()),
                (Some(new), None) => upserts.push(new.clone()),
                (None, Some(_)) => deletes.push(k),
                (None, None) => {}
            }
        }
        if upserts.is_empty() && replaced.is_empty() && deletes.is_empty() {
            return None;
        }
        let now = super::now_unix_ms();
        let joins = upserts.len();
        for r in &upserts {
            if let Some(k) = r.key() {
                inner.times.insert(
                    k,
                    Times {
                        since: now,
                        changed: now,
                    },
                );
            }
        }
        for r in &replaced {
            if let Some(t) = r.key().and_then(|k| inner.times.get_mut(&k)) {
                t.changed = now;
            }
        }
        for k in &deletes {
            inner.times.remove(k);
        }
        upserts.append(&mut replaced);
        let mut records = current.records.clone();
        for k in &deletes {
            records.remove(k);
        }
        for r in &upserts {
            let k = r.key().expect("served records have keys");
            records.insert(k, r.clone());
        }
        let version = inner.next_version.take().unwrap_or(current.version + 1);
        let change = Arc::new(Change {
            version,
            upserts,
            deletes,
            joins,
            at_unix_ms: now,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > self.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.base = old.version;
            }
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot {
            history: current.history.clone(),
            version,
            records,
        });
        self.version_tx.send_replace(version);
        Some(change)
    }

    /// The changes after version `since`, merged per key; `Gone` when the
    /// history no longer reaches back to `since`, or `since` is newer than
    /// the current version.
    pub fn changes_since(&self, since: u64) -> Result<Delta, Gone> {
        let inner = self.lock();
        let current = self.snapshot();
        let oldest = if inner.history.is_empty() {
            current.version
        } else {
            inner.base
        };
        if since > current.version || since < oldest {
            return Err(Gone {
                asked: since,
                oldest,
                current: current.version,
            });
        }
        let mut state: BTreeMap<RecordKey, Option<Arc<HostRecord>>> = BTreeMap::new();
        for change in inner.history.iter().filter(|c| c.version > since) {
            for k in &change.deletes {
                state.insert(*k, None);
            }
            for r in &change.upserts {
                if let Some(k) = r.key() {
                    state.insert(k, Some(r.clone()));
                }
            }
        }
        let mut delta = Delta {
            version: current.version,
            upserts: Vec::new(),
            deletes: Vec::new(),
        };
        for (k, v) in state {
            match v {
                Some(r) => delta.upserts.push(r),
                None => delta.deletes.push(k),
            }
        }
        Ok(delta)
    }
}

mod details;
#[cfg(test)]
mod tests;

pub use details::{LeaseDetails, RecordDetails};
