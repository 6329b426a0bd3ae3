//! `envid_replica`: the whole registry in memory, kept in sync by a
//! background thread (snapshot, then long-polled deltas); lookups are local
//! longest-prefix matches that never touch the network.

use std::ffi::c_char;
use std::sync::Arc;

use envid::protocol::HostRecord;
use envid::replica::{CacheFileStatus, Replica};

use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, new_out, obj_arg, owned_c_string, str_arg, write_out};
use crate::options::envid_lookup_options;
use crate::panic::{ffi_boundary, ffi_boundary_void};
use crate::record::{parse_ip, record_json};

/// A replica of the environment service's registry. Thread-safe: share one
/// per process. Free with `envid_replica_free` (which stops its sync
/// thread) once no thread uses it any more.
#[derive(Debug)]
pub struct envid_replica {
    replica: Replica,
}

/// The counters of a replica.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct envid_replica_stats {
    /// The registry version held.
    pub version: u64,
    /// Records held (single IPs and ranges).
    pub records: u64,
    /// Milliseconds since the last successful sync; `UINT64_MAX` when the
    /// replica has never synced (it started from its cache file).
    pub age_ms: u64,
    /// Successful exchanges with the service (snapshots, deltas, empty polls).
    pub syncs: u64,
    /// Whole-registry fetches.
    pub snapshots: u64,
    /// Deltas applied.
    pub deltas: u64,
    /// Failed exchanges (the replica kept serving its last version).
    pub sync_errors: u64,
    /// 1 when the data came from the cache file (the service was unreachable
    /// at start) and no sync has succeeded since, else 0.
    pub from_cache: u8,
    /// Cache files that could not be read or written.
    pub cache_errors: u64,
    /// 1 while the replica protects its view against a mass deletion (it
    /// serves its last healthy view plus new records and holds the
    /// deletes), else 0.
    pub is_protected: u8,
    /// Deletes held while protected; 0 otherwise.
    pub held_deletes: u64,
    /// When the protection started, in milliseconds since the Unix epoch;
    /// 0 when not protected.
    pub protected_since_ms: u64,
    /// The recent normal record count protection compares with.
    pub normal_records: u64,
    /// The cache file's state: one of the `ENVID_CACHE_*` values.
    pub cache_state: u8,
    /// Milliseconds since the cache file's content was written;
    /// `UINT64_MAX` when there is no usable cache file.
    pub cache_age_ms: u64,
}

/// `cache_state`: no cache file is configured.
pub const ENVID_CACHE_UNUSED: u8 = 0;
/// `cache_state`: the cache file is not there (yet).
pub const ENVID_CACHE_MISSING: u8 = 1;
/// `cache_state`: the cache file was not a replica cache (ignored).
pub const ENVID_CACHE_CORRUPT: u8 = 2;
/// `cache_state`: the cache file could not be read or written.
pub const ENVID_CACHE_UNUSABLE: u8 = 3;
/// `cache_state`: the cache file holds a view (`cache_age_ms` says how old).
pub const ENVID_CACHE_PRESENT: u8 = 4;

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl envid_replica {
    /// Builds the replica: the options' service config and cache file (the
    /// client's TTL, max-stale and retry settings do not apply). Fetches the
    /// registry (or reads the cache file) before returning.
    pub fn new(opts: &envid_lookup_options) -> FfiResult<envid_replica> {
        let mut b = Replica::builder(opts.service_config()?);
        if let Some(f) = &opts.cache_file {
            b = b.cache_file(f);
        }
        Ok(envid_replica {
            replica: b.build()?,
        })
    }

    /// The record for one IP (`None`: the registry does not know it).
    pub fn lookup(&self, ip: &str) -> FfiResult<Option<Arc<HostRecord>>> {
        Ok(self.replica.lookup(parse_ip(ip)?))
    }

    /// The counters so far.
    pub fn stats(&self) -> envid_replica_stats {
        let s = self.replica.stats();
        envid_replica_stats {
            version: s.version,
            records: s.records as u64,
            age_ms: s.age.map_or(u64::MAX, millis),
            syncs: s.syncs,
            snapshots: s.snapshots,
            deltas: s.deltas,
            sync_errors: s.sync_errors,
            from_cache: u8::from(s.from_cache),
            cache_errors: s.cache_errors,
            is_protected: u8::from(s.protected),
            held_deletes: s.held_deletes as u64,
            protected_since_ms: s
                .protected_since
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, millis),
            normal_records: s.normal_records as u64,
            cache_state: match s.cache {
                CacheFileStatus::Unused => ENVID_CACHE_UNUSED,
                CacheFileStatus::Missing => ENVID_CACHE_MISSING,
                CacheFileStatus::Corrupt => ENVID_CACHE_CORRUPT,
                CacheFileStatus::Unusable => ENVID_CACHE_UNUSABLE,
                CacheFileStatus::Present => ENVID_CACHE_PRESENT,
            },
            cache_age_ms: s.cache_age.map_or(u64::MAX, millis),
        }
    }
}

/// Creates a replica from connection options (`envid_lookup_options`):
/// their endpoints (tried in turn on errors), token, proxy, CA file,
/// timeouts and cache file (the TTL, max-stale and retry settings do not
/// apply). Fetches the whole registry before returning, or reads the cache
/// file when the service is unreachable, then keeps it in sync on a
/// background thread.
/// `ENVID_INVALID_INPUT` without endpoints or with a bad one (or a bad
/// proxy URL or CA file);
/// `ENVID_LOOKUP_FAILED` when neither the service nor the cache file gave
/// data (the message names both).
///
/// Ownership: `*out` is owned by the caller; free with `envid_replica_free`.
/// `opts` is only read and may be freed afterwards.
///
/// # Safety
/// `opts` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_replica_new(
    opts: *const envid_lookup_options,
    out: *mut *mut envid_replica,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract; `out` NULL or writable.
        let o = unsafe { obj_arg(opts, "opts") }?;
        unsafe { new_out(out, || envid_replica::new(o)) }
    })
}

/// Frees a replica and stops its sync thread. NULL is a no-op.
///
/// # Safety
/// `replica` NULL or from `envid_replica_new`, not yet freed, and no longer
/// used by any thread.
#[no_mangle]
pub unsafe extern "C" fn envid_replica_free(replica: *mut envid_replica) {
    // SAFETY: NULL or from envid_replica_new, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(replica) })
}

/// Looks up one IP (IPv4 or IPv6 text) in the replica: the exact IP, else
/// the narrowest range holding it. Never touches the network. On
/// `ENVID_OK`, `*json_out` is the record as JSON (as
/// `envid_lookup_client_lookup` gives it); `ENVID_NOT_FOUND` when the
/// registry does not know the IP; `ENVID_INVALID_INPUT` for a malformed IP.
///
/// Ownership: `*json_out` is owned by the caller; free with `envid_string_free`.
///
/// # Safety
/// `replica` NULL or live; `ip` NULL or NUL-terminated; `json_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_replica_lookup(
    replica: *const envid_replica,
    ip: *const c_char,
    json_out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(replica, "replica") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let ip = unsafe { str_arg(ip, "ip") }?;
        let rec = r
            .lookup(ip)?
            .ok_or_else(|| Fail::not_found(format!("the registry replica does not know {ip}")))?;
        let s = owned_c_string(record_json(&rec)?)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(json_out, s, "json_out") }
    })
}

/// Reads the replica's counters (version, records, age, syncs, errors,
/// protection against mass deletion, the cache file's state and age).
///
/// # Safety
/// `replica` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_replica_get_stats(
    replica: *const envid_replica,
    out: *mut envid_replica_stats,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(replica, "replica") }?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_out(out, r.stats(), "out") }
    })
}
