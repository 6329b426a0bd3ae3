//! `envid_lookup_client`: the IP-to-environment lookup client (cache,
//! coalescing, serve-stale, retries, circuit breakers, failover) for servers.

use std::ffi::c_char;
use std::net::IpAddr;
use std::sync::Arc;

use envid::lookup::{LookupClient, LookupResult};
use envid::protocol::HostRecord;

use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, new_out, obj_arg, owned_c_string, str_arg, write_out};
use crate::options::envid_lookup_options;
use crate::panic::{ffi_boundary, ffi_boundary_void};
use crate::record::{parse_ip, record_json};

/// A lookup client. Thread-safe: share one per process (it holds the cache
/// and the keep-alive connections). Free with `envid_lookup_client_free`
/// once no thread uses it any more.
#[derive(Debug)]
pub struct envid_lookup_client {
    client: LookupClient,
}

/// The counters of a lookup client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct envid_lookup_stats {
    /// Lookups answered from a fresh cache entry.
    pub hits: u64,
    /// Lookups that needed the service (or a wait on another thread's request).
    pub misses: u64,
    /// Lookups answered with a stale value because the service failed.
    pub stale: u64,
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Failed requests, and lookups refused by open circuit breakers.
    pub errors: u64,
}

/// One IP's answer in a batch.
pub type Answer = Result<Option<Arc<HostRecord>>, Fail>;

impl envid_lookup_client {
    /// Builds the client: the options' service config and cache policy
    /// (the replica's cache file does not apply).
    pub fn new(opts: &envid_lookup_options) -> FfiResult<envid_lookup_client> {
        let mut b = LookupClient::builder(opts.service_config()?);
        if let Some(v) = opts.ttl {
            b = b.ttl(v);
        }
        if let Some(v) = opts.negative_ttl {
            b = b.negative_ttl(v);
        }
        if let Some(v) = opts.max_stale {
            b = b.max_stale(v);
        }
        if let Some(v) = opts.max_retries {
            b = b.max_retries(v);
        }
        Ok(envid_lookup_client { client: b.build()? })
    }

    /// The record of one IP (`None`: the service does not know it).
    pub fn lookup(&self, ip: &str) -> FfiResult<Option<Arc<HostRecord>>> {
        Ok(self.client.lookup(parse_ip(ip)?)?)
    }

    /// The records of many IPs, in order; invalid IPs fail the whole call.
    pub fn lookup_many(&self, ips: &[&str]) -> FfiResult<Vec<Answer>> {
        let parsed = ips
            .iter()
            .map(|s| parse_ip(s))
            .collect::<FfiResult<Vec<IpAddr>>>()?;
        Ok(self
            .client
            .lookup_many(&parsed)
            .into_iter()
            .map(|r: LookupResult| r.map_err(Fail::from))
            .collect())
    }

    /// The answer of each IP, in order; a malformed IP is its own
    /// `ENVID_INVALID_INPUT` failure instead of failing the whole call.
    pub fn lookup_each(&self, ips: &[&str]) -> Vec<Answer> {
        let parsed: Vec<FfiResult<IpAddr>> = ips.iter().map(|s| parse_ip(s)).collect();
        let valid: Vec<IpAddr> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().copied())
            .collect();
        let mut answers = self.client.lookup_many(&valid).into_iter();
        parsed
            .into_iter()
            .map(|p| {
                p.and_then(|_| {
                    answers
                        .next()
                        .expect("one answer per valid IP")
                        .map_err(Fail::from)
                })
            })
            .collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> envid_lookup_stats {
        let s = self.client.stats();
        envid_lookup_stats {
            hits: s.hits,
            misses: s.misses,
            stale: s.stale,
            requests: s.requests,
            errors: s.errors,
        }
    }
}

/// Creates a lookup client from connection options (`envid_lookup_options`:
/// endpoints, token, proxy, CA file, timeouts, and the cache policy only
/// this client reads). `ENVID_INVALID_INPUT` when there is no endpoint,
/// one is not an `http://`/`https://` URL, the proxy URL is malformed or
/// the CA file holds no certificate. Makes no request yet.
///
/// Ownership: `*out` is owned by the caller; free with
/// `envid_lookup_client_free`. `opts` is only read and may be freed afterwards.
///
/// # Safety
/// `opts` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_client_new(
    opts: *const envid_lookup_options,
    out: *mut *mut envid_lookup_client,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract; `out` NULL or writable.
        let o = unsafe { obj_arg(opts, "opts") }?;
        unsafe { new_out(out, || envid_lookup_client::new(o)) }
    })
}

/// Frees a lookup client. NULL is a no-op.
///
/// # Safety
/// `client` NULL or from `envid_lookup_client_new`, not yet freed, and no
/// longer used by any thread.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_client_free(client: *mut envid_lookup_client) {
    // SAFETY: NULL or from envid_lookup_client_new, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(client) })
}

/// Looks up one IP (IPv4 or IPv6 text). On `ENVID_OK`, `*json_out` is the
/// service's record as JSON (`ip` or `cidr`, `app`, `env`, `env_type`,
/// `sub_env`, `idc`, `platform`, `container`, `hostname`, `release`, `k8s`,
/// `labels`, absent fields left out). `ENVID_NOT_FOUND` when the service
/// does not know the IP, `ENVID_INVALID_INPUT` for a malformed IP,
/// `ENVID_LOOKUP_FAILED` when the service failed and no stale answer was
/// left. Blocks for at most connect + 3 × the per-phase timeout (or the total
/// timeout, when set) per attempt, and 1 + retries attempts.
///
/// Ownership: `*json_out` is owned by the caller; free with `envid_string_free`.
///
/// # Safety
/// `client` NULL or live; `ip` NULL or NUL-terminated; `json_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_client_lookup(
    client: *const envid_lookup_client,
    ip: *const c_char,
    json_out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let c = unsafe { obj_arg(client, "client") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let ip = unsafe { str_arg(ip, "ip") }?;
        let rec = c.lookup(ip)?.ok_or_else(|| {
            Fail::not_found(format!("the environment service does not know {ip}"))
        })?;
        let s = owned_c_string(record_json(&rec)?)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(json_out, s, "json_out") }
    })
}

/// Looks up `count` IPs at once: cached ones locally, the rest in batch
/// requests of at most 1,000. On `ENVID_OK`, `*json_out` is
/// `{"hosts": {IP: record | null, …}, "errors": {IP: message, …}}`: every
/// IP that was answered is under `hosts` (null: unknown to the service),
/// every IP whose lookup failed (service down, no stale answer) under
/// `errors`. IPs are keyed as given. A malformed IP fails the whole call
/// with `ENVID_INVALID_INPUT`; `count` 0 is fine.
///
/// Ownership: `*json_out` is owned by the caller; free with `envid_string_free`.
///
/// # Safety
/// `client` NULL or live; `ips` NULL only when `count` is 0, else `count`
/// NUL-terminated strings; `json_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_client_lookup_many(
    client: *const envid_lookup_client,
    ips: *const *const c_char,
    count: usize,
    json_out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let c = unsafe { obj_arg(client, "client") }?;
        if ips.is_null() && count > 0 {
            return Err(Fail::null("ips"));
        }
        let mut texts = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: `ips` holds `count` pointers by contract.
            let p = unsafe { *ips.add(i) };
            // SAFETY: each NULL or NUL-terminated by contract.
            texts.push(unsafe { str_arg(p, "ips[i]") }?);
        }
        let answers = c.lookup_many(&texts)?;
        let mut hosts = serde_json::Map::new();
        let mut errors = serde_json::Map::new();
        for (ip, a) in texts.iter().zip(answers) {
            match a {
                Ok(rec) => {
                    let v = serde_json::to_value(rec.as_deref()).map_err(|e| {
                        Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}"))
                    })?;
                    hosts.insert(ip.to_string(), v);
                }
                Err(f) => {
                    errors.insert(ip.to_string(), f.message.into_owned().into());
                }
            }
        }
        let json = serde_json::json!({ "hosts": hosts, "errors": errors }).to_string();
        let s = owned_c_string(json)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(json_out, s, "json_out") }
    })
}

/// Reads the client's counters (hits, misses, stale serves, requests, errors).
///
/// # Safety
/// `client` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_client_stats(
    client: *const envid_lookup_client,
    out: *mut envid_lookup_stats,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let c = unsafe { obj_arg(client, "client") }?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_out(out, c.stats(), "out") }
    })
}
