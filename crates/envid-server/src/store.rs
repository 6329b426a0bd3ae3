//! The versioned record store: the current registry as an immutable snapshot
//! behind an atomic swap, plus a bounded history of changes.
//!
//! Every change to the record set (a registry reload that changes records;
//! later, registrations and lease expiries) bumps the version by one and is
//! kept in the history as upserts and deletes, so a replica that knows
//! version N can be sent just what changed after N, or told to fetch the
//! whole registry again when N has fallen out of the history.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use envid::registry::{HostRecord, PrefixTable, RecordKey};

/// One immutable version of the registry. Readers hold an `Arc` to it, so a
/// swap never blocks or tears an ongoing lookup.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The version (1 for the registry loaded at start).
    pub version: u64,
    /// Every record by its key, in key order.
    pub records: BTreeMap<RecordKey, Arc<HostRecord>>,
    /// The longest-prefix index over `records`.
    pub table: PrefixTable<Arc<HostRecord>>,
}

impl Snapshot {
    /// The most specific record for `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<HostRecord>> {
        self.table.lookup(ip)
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

/// The asked version is older than the retained history: fetch the whole registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version {asked} is older than the retained history (oldest change kept: {oldest})")]
pub struct Gone {
    /// The version asked for.
    pub asked: u64,
    /// The oldest version a delta can start from.
    pub oldest: u64,
}

/// The store shared by the HTTP handlers and the reloader.
#[derive(Debug)]
pub struct Store {
    current: RwLock<Arc<Snapshot>>,
    /// Also the writers' lock: held for a whole write, so writes are serialized.
    history: Mutex<VecDeque<Arc<Change>>>,
    history_limit: usize,
    version_tx: tokio::sync::watch::Sender<u64>,
}

impl Store {
    /// A store at version 1 holding `records` (later records replace earlier
    /// ones with the same key), keeping at most `history_limit` changes.
    pub fn new(records: Vec<HostRecord>, history_limit: usize) -> Store {
        let records: BTreeMap<RecordKey, Arc<HostRecord>> = records
            .into_iter()
            .filter_map(|r| Some((r.key()?, Arc::new(r))))
            .collect();
        let table = records.iter().map(|(k, v)| (*k, v.clone())).collect();
        Store {
            current: RwLock::new(Arc::new(Snapshot {
                version: 1,
                records,
                table,
            })),
            history: Mutex::new(VecDeque::new()),
            history_limit: history_limit.max(1),
            version_tx: tokio::sync::watch::channel(1).0,
        }
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

    /// Replaces the whole record set (a registry reload). Returns the change,
    /// or `None` (and the version stays) when no record differs.
    pub fn replace_all(&self, records: Vec<HostRecord>) -> Option<Arc<Change>> {
        let _writer = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        let new: BTreeMap<RecordKey, HostRecord> = records
            .into_iter()
            .filter_map(|r| Some((r.key()?, r)))
            .collect();
        let deletes = current
            .records
            .keys()
            .filter(|k| !new.contains_key(k))
            .copied()
            .collect();
        let upserts = new
            .into_iter()
            .filter(|(k, r)| current.records.get(k).is_none_or(|old| **old != *r))
            .map(|(_, r)| Arc::new(r))
            .collect();
        drop(_writer);
        self.apply(upserts, deletes)
    }

    /// Applies upserts and deletes as one new version. Returns the change, or
    /// `None` (and the version stays) when nothing would change.
    pub fn apply(
        &self,
        upserts: Vec<Arc<HostRecord>>,
        deletes: Vec<RecordKey>,
    ) -> Option<Arc<Change>> {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        let upserts: Vec<_> = upserts
            .into_iter()
            .filter(|r| r.key().is_some_and(|k| current.records.get(&k) != Some(r)))
            .collect();
        let deletes: Vec<_> = deletes
            .into_iter()
            .filter(|k| {
                current.records.contains_key(k) && !upserts.iter().any(|r| r.key() == Some(*k))
            })
            .collect();
        if upserts.is_empty() && deletes.is_empty() {
            return None;
        }
        let mut records = current.records.clone();
        let mut table = current.table.clone();
        for k in &deletes {
            records.remove(k);
            table.remove(k);
        }
        for r in &upserts {
            let k = r.key().expect("filtered above");
            records.insert(k, r.clone());
            table.insert(k, r.clone());
        }
        let version = current.version + 1;
        let change = Arc::new(Change {
            version,
            upserts,
            deletes,
        });
        history.push_back(change.clone());
        while history.len() > self.history_limit {
            history.pop_front();
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot {
            version,
            records,
            table,
        });
        self.version_tx.send_replace(version);
        Some(change)
    }

    /// The changes after version `since`, merged per key; `Gone` when the
    /// history no longer reaches back to `since`.
    pub fn changes_since(&self, since: u64) -> Result<Delta, Gone> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        if since >= current.version {
            return Ok(Delta {
                version: current.version,
                upserts: Vec::new(),
                deletes: Vec::new(),
            });
        }
        // A delta from `since` needs every change with version > since.
        let oldest = history.front().map_or(current.version, |c| c.version - 1);
        if since < oldest {
            return Err(Gone {
                asked: since,
                oldest,
            });
        }
        let mut state: BTreeMap<RecordKey, Option<Arc<HostRecord>>> = BTreeMap::new();
        for change in history.iter().filter(|c| c.version > since) {
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
        envid::registry::parse_registry(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .remove(0)
    }

    fn k(s: &str) -> RecordKey {
        s.parse().unwrap()
    }

    #[test]
    fn reload_diff_bumps_version_and_records_history() {
        let store = Store::new(
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
        let store = Store::new(vec![rec("10.0.0.1", "beta")], 10);
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
        let store = Store::new(vec![rec("10.0.0.1", "a")], 2);
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
                oldest: 2
            })
        );
        assert_eq!(store.changes_since(2).unwrap().upserts[0].env, "d");
    }
}
