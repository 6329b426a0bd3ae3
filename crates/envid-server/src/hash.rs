//! The one content hash: what the file pollers compare to skip a file that
//! did not change, and what etcd's `static-hash` key holds so instances
//! reading the same registry file write it once. Not for security: the
//! inputs are the operator's own files.

use std::hash::{Hash, Hasher};

/// A 64-bit hash of `bytes`.
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
