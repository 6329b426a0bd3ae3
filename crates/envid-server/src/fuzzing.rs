//! Entry points shared by the `cargo fuzz` targets of the service's own
//! parsers (`fuzz/`) and their corpus replay (`tests/it/fuzz_corpus.rs`).
//! Compiled only with the `fuzzing` feature: not an API.

use std::net::IpAddr;
use std::path::Path;

use envid::prefix::PrefixTable;

use crate::registration_body::{parse_registration_body, parse_renewal_body, MAX_LEASE_SECONDS};
use crate::registry_file::parse_registry;

pub use envid::fuzzing::Entry;

/// Every target of this crate by name, for the replay test.
pub const TARGETS: &[(&str, Entry)] = &[
    ("registry", registry_file),
    ("registration_request", registration_request),
];

/// The registry file parser, then a prefix table of what it accepted.
pub fn registry_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_registry(text, Path::new("fuzz.toml")) {
        Ok(records) => {
            let mut table = PrefixTable::new();
            for r in &records {
                let key = r.key().expect("accepted records have a key");
                table.insert(key, r.clone());
            }
            for r in &records {
                if let Some(ip) = r.ip {
                    assert!(table.lookup(ip).is_some());
                }
            }
            let _ = table.lookup(IpAddr::from([10, 0, 0, 1]));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The service's registration and renewal bodies.
pub fn registration_request(data: &[u8]) {
    for ip in [IpAddr::from([10, 0, 0, 1]), "2001:db8::1".parse().unwrap()] {
        match parse_registration_body(ip, data) {
            Ok((record, lease)) => {
                assert_eq!(record.ip, Some(ip));
                assert!(record.cidr.is_none());
                assert!(!record.env.trim().is_empty() && !record.idc.trim().is_empty());
                assert!(record.env_type.is_none());
                assert!(serde_json::to_vec(&record).unwrap().len() <= 4096 + 64);
                assert!((1..=MAX_LEASE_SECONDS).contains(&lease));
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
    if parse_renewal_body(data).is_ok() {
        let text = String::from_utf8_lossy(data);
        let t = text.trim();
        assert!(t.is_empty() || t.starts_with('{'), "{t:?}");
    }
}
