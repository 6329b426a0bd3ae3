//! The longest-prefix table: from an IP address to the record of that exact
//! address or of the narrowest range that holds it. The replica client and
//! the reference service both answer lookups from it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::protocol::{canonical_ip, RecordKey};

/// A longest-prefix-match table from IP addresses to values.
///
/// Exact addresses live in their own hash map and always win over ranges
/// (a record for `10.0.0.1` beats a `10.0.0.1/32` range); ranges live in one
/// hash map per prefix length, probed from the longest length present down.
/// A lookup therefore costs one hash probe plus one per *distinct* prefix
/// length in the table (typically a handful), with a fast non-cryptographic
/// hash (the keys come from the operator's registry, not from callers, so
/// hash flooding is not a concern). IPv4-mapped IPv6 addresses
/// (`::ffff:10.0.0.1`) are looked up as the IPv4 address.
#[derive(Clone, Debug)]
pub struct PrefixTable<V> {
    v4_exact: FastMap<u32, V>,
    v6_exact: FastMap<u128, V>,
    /// (prefix length, masked network → value), longest first.
    v4_nets: Vec<(u8, FastMap<u32, V>)>,
    v6_nets: Vec<(u8, FastMap<u128, V>)>,
    len: usize,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable {
            v4_exact: FastMap::default(),
            v6_exact: FastMap::default(),
            v4_nets: Vec::new(),
            v6_nets: Vec::new(),
            len: 0,
        }
    }
}

fn v4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl<V> PrefixTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (addresses and ranges).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts under `key`, returning the value it replaces. A range's host
    /// bits are ignored (`10.1.2.3/16` is stored as `10.1.0.0/16`).
    pub fn insert(&mut self, key: RecordKey, value: V) -> Option<V> {
        let old = match key {
            RecordKey::Ip(ip) => match canonical_ip(ip) {
                IpAddr::V4(a) => self.v4_exact.insert(a.to_bits(), value),
                IpAddr::V6(a) => self.v6_exact.insert(a.to_bits(), value),
            },
            RecordKey::Net(ipnet::IpNet::V4(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v4_mask(len);
                nets_entry(&mut self.v4_nets, len).insert(bits, value)
            }
            RecordKey::Net(ipnet::IpNet::V6(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v6_mask(len);
                nets_entry(&mut self.v6_nets, len).insert(bits, value)
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry stored under exactly `key`.
    pub fn remove(&mut self, key: &RecordKey) -> Option<V> {
        let old = match *key {
            RecordKey::Ip(ip) => match canonical_ip(ip) {
                IpAddr::V4(a) => self.v4_exact.remove(&a.to_bits()),
                IpAddr::V6(a) => self.v6_exact.remove(&a.to_bits()),
            },
            RecordKey::Net(ipnet::IpNet::V4(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v4_mask(len);
                remove_net(&mut self.v4_nets, len, &bits)
            }
            RecordKey::Net(ipnet::IpNet::V6(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v6_mask(len);
                remove_net(&mut self.v6_nets, len, &bits)
            }
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The most specific value for `ip`: the exact address, else the
    /// narrowest range containing it.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        match canonical_ip(ip) {
            IpAddr::V4(a) => self.lookup_v4(a.to_bits()),
            IpAddr::V6(a) => self.lookup_v6(a.to_bits()),
        }
    }

    #[inline]
    fn lookup_v4(&self, bits: u32) -> Option<&V> {
        if let Some(v) = self.v4_exact.get(&bits) {
            return Some(v);
        }
        self.v4_nets
            .iter()
            .find_map(|(len, map)| map.get(&(bits & v4_mask(*len))))
    }

    #[inline]
    fn lookup_v6(&self, bits: u128) -> Option<&V> {
        if let Some(v) = self.v6_exact.get(&bits) {
            return Some(v);
        }
        self.v6_nets
            .iter()
            .find_map(|(len, map)| map.get(&(bits & v6_mask(*len))))
    }
}

impl<V> FromIterator<(RecordKey, V)> for PrefixTable<V> {
    fn from_iter<I: IntoIterator<Item = (RecordKey, V)>>(iter: I) -> Self {
        let mut t = PrefixTable::new();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

fn nets_entry<K, V>(nets: &mut Vec<(u8, FastMap<K, V>)>, len: u8) -> &mut FastMap<K, V> {
    // Kept sorted longest prefix first.
    let i = match nets.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(i) => i,
        Err(i) => {
            nets.insert(i, (len, FastMap::default()));
            i
        }
    };
    &mut nets[i].1
}

fn remove_net<K: std::hash::Hash + Eq, V>(
    nets: &mut Vec<(u8, FastMap<K, V>)>,
    len: u8,
    bits: &K,
) -> Option<V> {
    let i = nets.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
    let old = nets[i].1.remove(bits);
    if nets[i].1.is_empty() {
        nets.remove(i);
    }
    old
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// A multiply-fold hasher for integer keys (the folded 128-bit product mixes
/// high and low bits, so masked prefixes with zero low bits still spread).
#[derive(Default, Clone, Copy)]
struct FoldHasher(u64);

const FOLD_K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold(x: u64) -> u64 {
    let p = u128::from(x) * u128::from(FOLD_K);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for FoldHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = fold(self.0 ^ u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.0 = fold(self.0 ^ u64::from(x));
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.0 = fold(fold(self.0 ^ x as u64) ^ (x >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> RecordKey {
        s.parse().unwrap()
    }

    fn table(keys: &[&str]) -> PrefixTable<String> {
        keys.iter().map(|k| (key(k), k.to_string())).collect()
    }

    fn find<'a>(t: &'a PrefixTable<String>, ip: &str) -> Option<&'a str> {
        t.lookup(ip.parse().unwrap()).map(String::as_str)
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_ranges() {
        let t = table(&[
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.8.0.0/16",
            "10.8.1.0/24",
            "10.8.1.77/32",
            "10.8.1.77",
        ]);
        assert_eq!(t.len(), 6);
        assert_eq!(find(&t, "10.8.1.77"), Some("10.8.1.77"));
        assert_eq!(find(&t, "10.8.1.78"), Some("10.8.1.0/24"));
        assert_eq!(find(&t, "10.8.2.1"), Some("10.8.0.0/16"));
        assert_eq!(find(&t, "10.9.0.1"), Some("10.0.0.0/8"));
        assert_eq!(find(&t, "192.168.0.1"), Some("0.0.0.0/0"));
        // IPv4 ranges never answer IPv6 (except v4-mapped addresses).
        assert_eq!(find(&t, "2001:db8::1"), None);
        assert_eq!(find(&t, "::ffff:10.8.1.78"), Some("10.8.1.0/24"));
    }
    #[test]
    fn ipv6_prefixes() {
        let t = table(&[
            "2001:db8::/32",
            "2001:db8:5::/48",
            "2001:db8:5:1::/64",
            "2001:db8::10",
            "::/0",
        ]);
        assert_eq!(find(&t, "2001:db8::10"), Some("2001:db8::10"));
        assert_eq!(find(&t, "2001:db8:5:1::9"), Some("2001:db8:5:1::/64"));
        assert_eq!(find(&t, "2001:db8:5:2::9"), Some("2001:db8:5::/48"));
        assert_eq!(find(&t, "2001:db8:6::9"), Some("2001:db8::/32"));
        assert_eq!(find(&t, "2001:db9::1"), Some("::/0"));
        assert_eq!(find(&t, "10.0.0.1"), None);
    }
    #[test]
    fn insert_replace_and_remove() {
        let mut t = table(&["10.0.0.0/8", "10.1.0.0/16"]);
        assert_eq!(
            t.insert(key("10.1.0.0/16"), "again".into()),
            Some("10.1.0.0/16".into())
        );
        assert_eq!(t.len(), 2);
        assert_eq!(find(&t, "10.1.2.3"), Some("again"));
        assert_eq!(t.remove(&key("10.1.0.0/16")), Some("again".into()));
        assert_eq!(find(&t, "10.1.2.3"), Some("10.0.0.0/8"));
        assert_eq!(t.remove(&key("10.1.0.0/16")), None);
        assert_eq!(t.remove(&key("10.0.0.0/8")), Some("10.0.0.0/8".into()));
        assert!(t.is_empty());
        assert_eq!(find(&t, "10.1.2.3"), None);
    }
    #[test]
    fn many_masked_keys_stay_spread() {
        // /24 networks have zero low bits; the hasher must still spread them.
        let t: PrefixTable<u32> = (0..50_000u32)
            .map(|i| {
                (
                    RecordKey::Net(
                        format!("10.{}.{}.0/24", i / 256 % 256, i % 256)
                            .parse()
                            .unwrap(),
                    ),
                    i,
                )
            })
            .collect();
        assert_eq!(
            t.lookup("10.3.7.200".parse().unwrap()),
            Some(&(3 * 256 + 7))
        );
    }
}
