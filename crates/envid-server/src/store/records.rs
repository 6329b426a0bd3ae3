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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use envid::protocol::{HostRecord, RecordKey};
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
    /// Records added or replaced.
    pub upserts: Vec<Arc<HostRecord>>,
    /// Keys whose records were removed.
    pub deletes: Vec<RecordKey>,
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

fn keyed(records: Vec<HostRecord>) -> BTreeMap<RecordKey, Arc<HostRecord>> {
    records
        .into_iter()
        .filter_map(|r| Some((r.key()?, Arc::new(r.with_env_type()))))
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
            let Some(ip) = lease.record.ip else { continue };
            let mut record = lease.record.with_env_type();
            record.cidr = None;
            inner
                .expiries
                .insert((lease.expires_unix_ms, ip.to_canonical()));
            inner.dynamic.insert(
                ip.to_canonical(),
                Leased {
                    record: Arc::new(record),
                    lease_seconds: lease.lease_seconds,
                    expires_unix_ms: lease.expires_unix_ms,
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
        let ip = ip.to_canonical();
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
            .get(&RecordKey::Ip(ip.to_canonical()))
            .cloned()
    }

    /// [`Records::renew`] by its registered lease length, only when
    /// [`may_touch`] allows it (`owner`, `registration`).
    pub fn renew_owned(
        &self,
        ip: IpAddr,
        owner: Option<&str>,
        registration: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        // Checked and renewed under one lock: a registration that changes
        // hands in between cannot be renewed by its former owner.
        let ip = ip.to_canonical();
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
        Ok(Some(lease))
    }

    /// [`Records::deregister`], only when [`may_touch`] allows it (`owner`,
    /// `registration`).
    pub fn deregister_owned(
        &self,
        ip: IpAddr,
        owner: Option<&str>,
        registration: Option<&str>,
    ) -> Result<(bool, Option<Arc<Change>>), StoreError> {
        let ip = ip.to_canonical();
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
        let ip = ip.to_canonical();
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
        let ip = ip.to_canonical();
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
            let Some(ip) = record.ip.map(|ip| ip.to_canonical()) else {
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
        let mut deletes = Vec::new();
        for k in touched {
            let served = inner.statics.get(&k).or_else(|| match k {
                RecordKey::Ip(ip) => inner.dynamic.get(&ip).map(|d| &d.record),
                RecordKey::Net(_) => None,
            });
            match (served, current.records.get(&k)) {
                (Some(new), Some(old)) if Arc::ptr_eq(new, old) || **new == **old => {}
                (Some(new), _) => upserts.push(new.clone()),
                (None, Some(_)) => deletes.push(k),
                (None, None) => {}
            }
        }
        if upserts.is_empty() && deletes.is_empty() {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, env: &str) -> HostRecord {
        let text = if key.contains('/') {
            format!("[[records]]\ncidr = \"{key}\"\nenv = \"{env}\"\nidc = \"cn0\"\n")
        } else {
            format!("[[records]]\nip = \"{key}\"\nenv = \"{env}\"\nidc = \"cn0\"\n")
        };
        crate::registry_file::parse_registry(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .remove(0)
    }

    fn k(s: &str) -> RecordKey {
        s.parse().unwrap()
    }

    #[test]
    fn reload_diff_bumps_version_and_records_history() {
        let store = Records::new(
            vec![rec("10.0.0.1", "beta"), rec("10.1.0.0/16", "prod")],
            10,
        );
        assert_eq!(store.version(), 1);
        let mut rx = store.subscribe();
        let change = store
            .replace_all(vec![rec("10.0.0.1", "prod"), rec("10.2.0.0/16", "dev")])
            .unwrap();
        assert_eq!(change.version, 2);
        assert_eq!(change.upserts.len(), 2);
        assert_eq!(change.deletes, vec![k("10.1.0.0/16")]);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
        let snap = store.snapshot();
        assert_eq!(
            snap.lookup("10.0.0.1".parse().unwrap()).unwrap().env,
            "prod"
        );
        assert!(snap.lookup("10.1.0.1".parse().unwrap()).is_none());
        assert_eq!(snap.lookup("10.2.0.1".parse().unwrap()).unwrap().env, "dev");
        // The same set again: no new version.
        assert!(store
            .replace_all(vec![rec("10.0.0.1", "prod"), rec("10.2.0.0/16", "dev")])
            .is_none());
        assert_eq!(store.version(), 2);
    }

    #[test]
    fn old_snapshots_stay_valid_after_a_swap() {
        let store = Records::new(vec![rec("10.0.0.1", "beta")], 10);
        let old = store.snapshot();
        store.replace_all(vec![]).unwrap();
        assert_eq!(old.lookup("10.0.0.1".parse().unwrap()).unwrap().env, "beta");
        assert!(store
            .snapshot()
            .lookup("10.0.0.1".parse().unwrap())
            .is_none());
    }

    #[test]
    fn changes_since_merges_and_expires() {
        let store = Records::new(vec![rec("10.0.0.1", "a")], 2);
        store
            .replace_all(vec![rec("10.0.0.1", "b"), rec("10.0.0.2", "x")])
            .unwrap(); // v2
        store.replace_all(vec![rec("10.0.0.1", "c")]).unwrap(); // v3
        let d = store.changes_since(1).unwrap();
        assert_eq!(d.version, 3);
        assert_eq!(d.upserts.len(), 1);
        assert_eq!(d.upserts[0].env, "c");
        assert_eq!(d.deletes, vec![k("10.0.0.2")]);
        let d = store.changes_since(3).unwrap();
        assert!(d.upserts.is_empty() && d.deletes.is_empty());
        store.replace_all(vec![rec("10.0.0.1", "d")]).unwrap(); // v4; history keeps v3, v4
        assert_eq!(
            store.changes_since(1),
            Err(Gone {
                asked: 1,
                oldest: 2,
                current: 4
            })
        );
        assert_eq!(store.changes_since(2).unwrap().upserts[0].env, "d");
    }

    #[test]
    fn static_records_win_over_registrations_which_survive_reloads() {
        let store = Records::new(vec![rec("10.0.0.1", "static")], 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // A registration never replaces the file's record for its IP.
        assert!(store
            .register(ip, rec("10.0.0.1", "dyn"), 60, 1_000)
            .is_none());
        assert_eq!(store.snapshot().lookup(ip).unwrap().env, "static");
        assert_eq!(store.static_record(ip).unwrap().env, "static");
        // A reload that drops the static record shows the registration.
        assert_eq!(store.replace_all(vec![]).unwrap().version, 2);
        assert_eq!(store.snapshot().lookup(ip).unwrap().env, "dyn");
        // Same record again: only the lease moves, no version.
        assert!(store
            .register(ip, rec("10.0.0.1", "dyn"), 60, 2_000)
            .is_none());
        // A reload that adds a static record for the IP hides it again.
        assert_eq!(
            store
                .replace_all(vec![rec("10.0.0.1", "static2")])
                .unwrap()
                .version,
            3
        );
        assert_eq!(store.snapshot().lookup(ip).unwrap().env, "static2");
        // Renewal moves the expiry, never the version.
        assert_eq!(store.renew(ip, None, 50_000), Some(60));
        assert_eq!(store.expire(61_000).0, Vec::<IpAddr>::new());
        let (expired, change) = store.expire(110_000);
        assert_eq!(expired, vec![ip]);
        assert!(change.is_none(), "the static record was served all along");
        assert_eq!(store.snapshot().lookup(ip).unwrap().env, "static2");
        assert_eq!(store.deregister(ip), (false, None));
        assert_eq!(store.renew(ip, None, 0), None);
    }

    #[test]
    fn only_the_owner_renews_or_deregisters() {
        let store = Records::new(vec![], 10);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let mut r = rec("10.0.0.9", "prod");
        r.app = Some("payment".into());
        r.registration = Some("r2".into());
        store.register(ip, r, 60, 0).unwrap();
        assert!(matches!(
            store.renew_owned(ip, Some("intruder"), None, 1),
            Err(StoreError::NotOwner(_))
        ));
        assert!(store.deregister_owned(ip, Some("intruder"), None).is_err());
        assert_eq!(
            store.renew_owned(ip, Some("payment"), None, 1),
            Ok(Some(60))
        );
        assert_eq!(store.renew_owned(ip, None, None, 1), Ok(Some(60)));
        // Naming a registration: only that one, and the owner check first.
        assert_eq!(store.renew_owned(ip, None, Some("r2"), 1), Ok(Some(60)));
        assert!(matches!(
            store.renew_owned(ip, Some("payment"), Some("r1"), 1),
            Err(StoreError::RegistrationChanged(theirs)) if theirs.registration.as_deref() == Some("r2")
        ));
        assert!(matches!(
            store.deregister_owned(ip, Some("intruder"), Some("r1")),
            Err(StoreError::NotOwner(_))
        ));
        assert!(matches!(
            store.deregister_owned(ip, None, Some("r1")),
            Err(StoreError::RegistrationChanged(_))
        ));
        assert!(store.snapshot().lookup(ip).is_some(), "nothing removed");
        assert!(
            store
                .deregister_owned(ip, Some("payment"), Some("r2"))
                .unwrap()
                .0
        );
        assert_eq!(store.renew_owned(ip, Some("payment"), None, 1), Ok(None));
        // Nothing registered: nothing to refuse.
        assert!(!store.deregister_owned(ip, None, Some("r2")).unwrap().0);
    }
}
