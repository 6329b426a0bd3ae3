//! The served record set as a persistent map: a change costs O(log n) and
//! shares everything else with the previous version, so a writer never
//! copies the registry and a reader keeps its version for as long as it
//! holds it.

use std::net::IpAddr;
use std::sync::Arc;

use envid::protocol::{canonical_ip, HostRecord, RecordKey};
use imbl::OrdMap;

/// Records by key, with the longest-prefix lookup. Cloning is O(1).
#[derive(Clone, Debug)]
pub struct RecordMap {
    records: OrdMap<RecordKey, Arc<HostRecord>>,
    /// How many ranges of each prefix length there are, so a lookup probes
    /// only the lengths in use (an IPv6 lookup would otherwise try 129).
    v4_lens: [u32; 33],
    v6_lens: [u32; 129],
}

impl Default for RecordMap {
    fn default() -> RecordMap {
        RecordMap {
            records: OrdMap::new(),
            v4_lens: [0; 33],
            v6_lens: [0; 129],
        }
    }
}

impl RecordMap {
    /// The record stored under exactly `key`.
    pub fn get(&self, key: &RecordKey) -> Option<&Arc<HostRecord>> {
        self.records.get(key)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record in key order.
    pub fn values(&self) -> impl Iterator<Item = &Arc<HostRecord>> {
        self.records.values()
    }

    /// Every (key, record) in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&RecordKey, &Arc<HostRecord>)> {
        self.records.iter()
    }

    fn lens(&mut self, key: &RecordKey) -> Option<&mut u32> {
        match key {
            RecordKey::Ip(_) => None,
            RecordKey::Net(ipnet::IpNet::V4(n)) => Some(&mut self.v4_lens[n.prefix_len() as usize]),
            RecordKey::Net(ipnet::IpNet::V6(n)) => Some(&mut self.v6_lens[n.prefix_len() as usize]),
        }
    }

    /// Inserts or replaces; returns the record it replaced.
    pub fn insert(&mut self, key: RecordKey, record: Arc<HostRecord>) -> Option<Arc<HostRecord>> {
        let old = self.records.insert(key, record);
        if old.is_none() {
            if let Some(n) = self.lens(&key) {
                *n += 1;
            }
        }
        old
    }

    /// Removes; returns the record removed.
    pub fn remove(&mut self, key: &RecordKey) -> Option<Arc<HostRecord>> {
        let old = self.records.remove(key);
        if old.is_some() {
            if let Some(n) = self.lens(key) {
                *n -= 1;
            }
        }
        old
    }

    /// The most specific record for `ip`: the exact address, else the
    /// narrowest range containing it. IPv4-mapped IPv6 addresses are looked
    /// up as IPv4, as the prefix table does.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<HostRecord>> {
        let ip = canonical_ip(ip);
        if let Some(r) = self.records.get(&RecordKey::Ip(ip)) {
            return Some(r);
        }
        match ip {
            IpAddr::V4(a) => (0..=32u8).rev().find_map(|len| {
                if self.v4_lens[len as usize] == 0 {
                    return None;
                }
                let net = ipnet::Ipv4Net::new(a, len).ok()?.trunc();
                self.records.get(&RecordKey::Net(net.into()))
            }),
            IpAddr::V6(a) => (0..=128u8).rev().find_map(|len| {
                if self.v6_lens[len as usize] == 0 {
                    return None;
                }
                let net = ipnet::Ipv6Net::new(a, len).ok()?.trunc();
                self.records.get(&RecordKey::Net(net.into()))
            }),
        }
    }
}

impl FromIterator<(RecordKey, Arc<HostRecord>)> for RecordMap {
    fn from_iter<T: IntoIterator<Item = (RecordKey, Arc<HostRecord>)>>(iter: T) -> Self {
        let mut map = RecordMap::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(env: &str) -> Arc<HostRecord> {
        Arc::new(serde_json::from_str(&format!(r#"{{"env": "{env}", "idc": "cn0"}}"#)).unwrap())
    }

    #[test]
    fn longest_prefix_wins_and_old_versions_stay() {
        let mut m = RecordMap::default();
        m.insert("10.0.0.0/8".parse().unwrap(), rec("wide"));
        m.insert("10.1.0.0/16".parse().unwrap(), rec("narrow"));
        m.insert("10.1.2.3".parse().unwrap(), rec("exact"));
        m.insert("2001:db8::/32".parse().unwrap(), rec("v6"));
        let old = m.clone();
        assert_eq!(m.lookup("10.1.2.3".parse().unwrap()).unwrap().env, "exact");
        assert_eq!(m.lookup("10.1.9.9".parse().unwrap()).unwrap().env, "narrow");
        assert_eq!(m.lookup("10.9.9.9".parse().unwrap()).unwrap().env, "wide");
        assert_eq!(
            m.lookup("::ffff:10.9.9.9".parse().unwrap()).unwrap().env,
            "wide"
        );
        assert_eq!(m.lookup("2001:db8::1".parse().unwrap()).unwrap().env, "v6");
        assert!(m.lookup("11.0.0.1".parse().unwrap()).is_none());
        m.remove(&"10.1.0.0/16".parse().unwrap());
        assert_eq!(m.lookup("10.1.9.9".parse().unwrap()).unwrap().env, "wide");
        assert_eq!(
            old.lookup("10.1.9.9".parse().unwrap()).unwrap().env,
            "narrow"
        );
        assert_eq!(m.len(), 3);
    }
}
