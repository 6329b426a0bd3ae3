//! [`ReplicaView`]: one immutable version of the registry, as a replica
//! serves it (a new version is a new view, swapped in whole).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::prefix::PrefixTable;
#[cfg(doc)]
use crate::protocol::RegistrySnapshot;
use crate::protocol::{canonical_ip, HostRecord, RecordKey};

/// One consistent version of the registry, as held by a [`Replica`](super::Replica).
/// Immutable: a new version is a new view.
#[derive(Clone, Debug, Default)]
pub struct ReplicaView {
    pub(super) version: u64,
    /// The history `version` belongs to (see [`RegistrySnapshot::history`]).
    pub(super) history: Option<String>,
    pub(super) records: HashMap<RecordKey, Arc<HostRecord>>,
    table: PrefixTable<Arc<HostRecord>>,
}

impl ReplicaView {
    /// Builds a view from whole-registry records; a record with neither
    /// `ip` nor `cidr` is refused.
    pub(crate) fn from_records(
        version: u64,
        records: Vec<HostRecord>,
    ) -> Result<ReplicaView, String> {
        let mut view = ReplicaView {
            version,
            ..ReplicaView::default()
        };
        for rec in records {
            view.upsert(rec)?;
        }
        Ok(view)
    }

    /// A view of records already shared (a consumer's joined set), each
    /// with an `ip` or a `cidr`; one without either is skipped.
    pub(crate) fn from_shared(
        version: u64,
        records: impl IntoIterator<Item = Arc<HostRecord>>,
    ) -> ReplicaView {
        let mut view = ReplicaView {
            version,
            ..ReplicaView::default()
        };
        for rec in records {
            if let Some(key) = rec.key() {
                view.table.insert(key, rec.clone());
                view.records.insert(key, rec);
            }
        }
        view
    }

    fn upsert(&mut self, mut rec: HostRecord) -> Result<(), String> {
        // The key and the record's `ip` in one canonical form, whatever the
        // service sent: the table and the map agree with the service.
        rec.ip = rec.ip.map(canonical_ip);
        let key = rec
            .key()
            .ok_or_else(|| "a record has neither `ip` nor `cidr`".to_string())?;
        let rec = Arc::new(rec);
        self.table.insert(key, rec.clone());
        self.records.insert(key, rec);
        Ok(())
    }

    /// A copy of this view with a delta applied (deletes, then upserts).
    pub(crate) fn apply(
        &self,
        version: u64,
        upserts: Vec<HostRecord>,
        deletes: &[RecordKey],
    ) -> Result<ReplicaView, String> {
        let mut next = self.clone();
        next.apply_mut(version, upserts, deletes)?;
        Ok(next)
    }

    /// Applies a delta to this view itself (deletes, then upserts): for a
    /// view nobody else reads (see `Follow`).
    pub(crate) fn apply_mut(
        &mut self,
        version: u64,
        upserts: Vec<HostRecord>,
        deletes: &[RecordKey],
    ) -> Result<(), String> {
        self.version = version;
        for key in deletes {
            self.table.remove(key);
            self.records.remove(key);
        }
        for rec in upserts {
            self.upsert(rec)?;
        }
        Ok(())
    }

    /// The registry version this view is.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The history [`ReplicaView::version`] belongs to, when the service
    /// names one (see [`RegistrySnapshot::history`]).
    pub fn history(&self) -> Option<&str> {
        self.history.as_deref()
    }

    /// Number of records (single IPs and ranges).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the view holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The most specific record for `ip`: the exact address, else the
    /// narrowest range containing it.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<HostRecord>> {
        self.table.lookup(ip)
    }

    /// The record stored under exactly `key`.
    pub fn get(&self, key: &RecordKey) -> Option<&Arc<HostRecord>> {
        self.records.get(key)
    }

    /// Every record, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = &Arc<HostRecord>> {
        self.records.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, env: &str) -> HostRecord {
        let mut r: HostRecord =
            serde_json::from_value(serde_json::json!({"env": env, "idc": "cn0"})).unwrap();
        match key.parse::<RecordKey>().unwrap() {
            RecordKey::Ip(ip) => r.ip = Some(ip),
            RecordKey::Net(n) => r.cidr = Some(n),
        }
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn view_longest_prefix_and_delta() {
        let v1 = ReplicaView::from_records(
            1,
            vec![
                rec("10.0.0.0/8", "prod"),
                rec("10.1.0.0/16", "beta"),
                rec("10.1.2.3", "dev"),
            ],
        )
        .unwrap();
        assert_eq!(v1.lookup(ip("10.1.2.3")).unwrap().env, "dev");
        assert_eq!(v1.lookup(ip("10.1.9.9")).unwrap().env, "beta");
        assert_eq!(v1.lookup(ip("10.9.9.9")).unwrap().env, "prod");
        assert!(v1.lookup(ip("11.0.0.1")).is_none());

        let v2 = v1
            .apply(
                3,
                vec![rec("10.1.2.4", "fat"), rec("10.0.0.0/8", "uat")],
                &["10.1.2.3".parse().unwrap(), "10.1.0.0/16".parse().unwrap()],
            )
            .unwrap();
        assert_eq!(v2.version(), 3);
        assert_eq!(v2.len(), 2);
        assert_eq!(v2.lookup(ip("10.1.2.3")).unwrap().env, "uat");
        assert_eq!(v2.lookup(ip("10.1.2.4")).unwrap().env, "fat");
        // The old view is untouched.
        assert_eq!(v1.lookup(ip("10.1.2.3")).unwrap().env, "dev");
        assert_eq!(v1.len(), 3);
    }

    #[test]
    fn view_refuses_keyless_record() {
        let mut r = rec("10.0.0.1", "prod");
        r.ip = None;
        assert!(ReplicaView::from_records(1, vec![r]).is_err());
    }
}
