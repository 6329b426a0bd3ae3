//! `envid_lookup_client`: the IP-to-environment lookup client (cache,
//! coalescing, serve-stale, retries, circuit breakers, failover) for servers.

use std::ffi::c_char;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use envid::lookup::{LookupClient, LookupError, LookupResult};
use envid::protocol::HostRecord;
use envid::Secret;

use crate::error::{
    envid_result, guard, guard_void, owned_c_string, str_arg, write_out, Fail, FfiResult,
};

impl From<LookupError> for Fail {
    fn from(e: LookupError) -> Fail {
        let code = match e {
            LookupError::InvalidEndpoint { .. } | LookupError::InvalidIp { .. } => {
                envid_result::ENVID_INVALID_INPUT
            }
            _ => envid_result::ENVID_LOOKUP_FAILED,
        };
        Fail::new(code, e.to_string())
    }
}

/// Options for `envid_lookup_client_new`: endpoints (at least one), token,
/// timeouts and cache policy; anything not set keeps the library's default
/// (connect 500 ms, request 2 s, TTL 5 min, negative TTL 30 s, max stale
/// 1 h, 1 retry). Not synchronized: set from one thread.
#[derive(Clone, Debug, Default)]
pub struct envid_lookup_options {
    endpoints: Vec<String>,
    token: Option<String>,
    proxy: Option<String>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    max_stale: Option<Duration>,
    max_retries: Option<u32>,
    cache_file: Option<String>,
}

/// Applies what the client and the replica builders share (endpoints, token,
/// proxy, timeouts): same method names, different types, so a macro.
macro_rules! connection_settings {
    ($opts:expr, $builder:expr) => {{
        let opts = $opts;
        let mut b = $builder;
        for e in &opts.endpoints {
            b = b.endpoint(e.clone());
        }
        if let Some(t) = &opts.token {
            b = b.token(Secret::new(t.clone()));
        }
        if let Some(p) = &opts.proxy {
            b = b.proxy(p.clone());
        }
        if let Some(v) = opts.connect_timeout {
            b = b.connect_timeout(v);
        }
        if let Some(v) = opts.request_timeout {
            b = b.request_timeout(v);
        }
        b
    }};
}

impl envid_lookup_options {
    /// Options from plain values (the JNI binding); `None` keeps a default.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        endpoints: Vec<String>,
        token: Option<String>,
        connect_timeout: Option<Duration>,
        request_timeout: Option<Duration>,
        ttl: Option<Duration>,
        negative_ttl: Option<Duration>,
        max_stale: Option<Duration>,
        max_retries: Option<u32>,
    ) -> envid_lookup_options {
        envid_lookup_options {
            endpoints,
            token,
            proxy: None,
            connect_timeout,
            request_timeout,
            ttl,
            negative_ttl,
            max_stale,
            max_retries,
            cache_file: None,
        }
    }

    /// The replica's cache file (only a replica uses it).
    pub fn with_cache_file(mut self, path: Option<String>) -> envid_lookup_options {
        self.cache_file = path;
        self
    }

    /// Builds a replica from the endpoints, token, proxy, timeouts and cache
    /// file; the cache policy (TTLs, max stale, retries) does not apply.
    pub fn build_replica(&self) -> FfiResult<crate::replica::envid_replica> {
        let mut b = connection_settings!(self, envid::lookup::Replica::builder());
        if let Some(f) = &self.cache_file {
            b = b.cache_file(f);
        }
        Ok(crate::replica::envid_replica::new(b.build()?))
    }

    /// Builds the client.
    pub fn build(&self) -> FfiResult<envid_lookup_client> {
        let mut b = connection_settings!(self, LookupClient::builder());
        if let Some(v) = self.ttl {
            b = b.ttl(v);
        }
        if let Some(v) = self.negative_ttl {
            b = b.negative_ttl(v);
        }
        if let Some(v) = self.max_stale {
            b = b.max_stale(v);
        }
        if let Some(v) = self.max_retries {
            b = b.max_retries(v);
        }
        Ok(envid_lookup_client { client: b.build()? })
    }
}

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

pub(crate) fn parse_ip(s: &str) -> FfiResult<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| Fail::from(LookupError::InvalidIp { input: s.into() }))
}

pub(crate) fn record_json(r: &HostRecord) -> FfiResult<String> {
    serde_json::to_string(r)
        .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))
}

/// Creates lookup options (no endpoint yet; add at least one).
///
/// Ownership: `*out` is owned by the caller; free with `envid_lookup_options_free`.
///
/// # Safety
/// `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_new(
    out: *mut *mut envid_lookup_options,
) -> envid_result {
    guard(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let p = Box::into_raw(Box::<envid_lookup_options>::default());
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees lookup options. NULL is a no-op.
///
/// # Safety
/// `opts` NULL or from `envid_lookup_options_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_free(opts: *mut envid_lookup_options) {
    guard_void(|| {
        if !opts.is_null() {
            // SAFETY: by contract it came from Box::into_raw here.
            drop(unsafe { Box::from_raw(opts) });
        }
    })
}

unsafe fn set_lookup_option(
    opts: *mut envid_lookup_options,
    f: impl FnOnce(&mut envid_lookup_options) -> FfiResult,
) -> envid_result {
    guard(|| {
        // SAFETY: NULL or a live, unshared options object by contract.
        let o = unsafe { opts.as_mut() }.ok_or_else(|| Fail::null("opts"))?;
        f(o)
    })
}

/// Adds an endpoint, `http://HOST[:PORT]` or `https://…` (one per data
/// center; tried in the order added). Checked by `envid_lookup_client_new`.
/// The string is copied.
///
/// # Safety
/// `opts` NULL or live; `url` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_add_endpoint(
    opts: *mut envid_lookup_options,
    url: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_lookup_option(opts, |o| {
            o.endpoints.push(str_arg(url, "url")?.to_string());
            Ok(())
        })
    }
}

/// Sets the bearer token sent on every request; NULL clears it. The string
/// is copied; it never appears in error messages.
///
/// # Safety
/// `opts` NULL or live; `token` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_token(
    opts: *mut envid_lookup_options,
    token: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_lookup_option(opts, |o| {
            o.token = if token.is_null() {
                None
            } else {
                Some(str_arg(token, "token")?.to_string())
            };
            Ok(())
        })
    }
}

/// Sets an explicit proxy URL; NULL: none (proxy variables are never read).
///
/// # Safety
/// `opts` NULL or live; `url` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_proxy(
    opts: *mut envid_lookup_options,
    url: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_lookup_option(opts, |o| {
            o.proxy = if url.is_null() {
                None
            } else {
                Some(str_arg(url, "url")?.to_string())
            };
            Ok(())
        })
    }
}

/// Sets the file where a replica keeps its last snapshot (written
/// atomically), read at start when the service is unreachable; NULL clears
/// it. Used only by `envid_replica_new`. The string is copied.
///
/// # Safety
/// `opts` NULL or live; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_cache_file(
    opts: *mut envid_lookup_options,
    path: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_lookup_option(opts, |o| {
            o.cache_file = if path.is_null() {
                None
            } else {
                Some(str_arg(path, "path")?.to_string())
            };
            Ok(())
        })
    }
}

fn ms(v: u64, what: &str) -> FfiResult<Duration> {
    if v == 0 {
        return Err(Fail::invalid(format!("{what} must be more than 0 ms")));
    }
    Ok(Duration::from_millis(v))
}

/// Sets the TCP/TLS connect timeout in milliseconds (> 0; default 500).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_connect_timeout_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.connect_timeout = Some(ms(millis, "connect timeout")?);
            Ok(())
        })
    }
}

/// Sets the whole-request timeout in milliseconds, body included (> 0; default 2000).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_request_timeout_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.request_timeout = Some(ms(millis, "request timeout")?);
            Ok(())
        })
    }
}

/// Sets how long a known answer is cached, in milliseconds (> 0; default 5 min).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_ttl_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.ttl = Some(ms(millis, "ttl")?);
            Ok(())
        })
    }
}

/// Sets how long an "unknown IP" answer is cached, in milliseconds (> 0; default 30 s).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_negative_ttl_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.negative_ttl = Some(ms(millis, "negative ttl")?);
            Ok(())
        })
    }
}

/// Sets the oldest answer served when the service fails, in milliseconds
/// (> 0; default 1 h).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_max_stale_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.max_stale = Some(ms(millis, "max stale")?);
            Ok(())
        })
    }
}

/// Sets the retries per lookup after the first attempt (default 1; 0: none).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_max_retries(
    opts: *mut envid_lookup_options,
    retries: u32,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.max_retries = Some(retries);
            Ok(())
        })
    }
}

/// Creates a lookup client. `ENVID_INVALID_INPUT` when there is no endpoint
/// or one is not an `http://`/`https://` URL. Makes no request yet.
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
    guard(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let o = unsafe { opts.as_ref() }.ok_or_else(|| Fail::null("opts"))?;
        let p = Box::into_raw(Box::new(o.build()?));
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees a lookup client. NULL is a no-op.
///
/// # Safety
/// `client` NULL or from `envid_lookup_client_new`, not yet freed, and no
/// longer used by any thread.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_client_free(client: *mut envid_lookup_client) {
    guard_void(|| {
        if !client.is_null() {
            // SAFETY: by contract it came from Box::into_raw here.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

/// Looks up one IP (IPv4 or IPv6 text). On `ENVID_OK`, `*json_out` is the
/// service's record as JSON (`ip` or `cidr`, `app`, `env`, `env_type`,
/// `sub_env`, `idc`, `platform`, `container`, `hostname`, `release`, `k8s`,
/// `labels`, absent fields left out). `ENVID_NOT_FOUND` when the service
/// does not know the IP, `ENVID_INVALID_INPUT` for a malformed IP,
/// `ENVID_LOOKUP_FAILED` when the service failed and no stale answer was
/// left. Blocks for at most the request timeout × (1 + retries) per endpoint.
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
    guard(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let c = unsafe { client.as_ref() }.ok_or_else(|| Fail::null("client"))?;
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
    guard(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let c = unsafe { client.as_ref() }.ok_or_else(|| Fail::null("client"))?;
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
    guard(|| {
        // SAFETY: NULL or live by contract.
        let c = unsafe { client.as_ref() }.ok_or_else(|| Fail::null("client"))?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_out(out, c.stats(), "out") }
    })
}
