//! `envid_lookup_options`: the connection options of every client of the
//! environment service (the lookup client, the replica, the registrar, the
//! verifier and the events consumer): endpoints, token, proxy, CA file and
//! timeouts, plus the settings only one client reads (the lookup client's
//! cache policy; the cache file, which is the replica's snapshot and the
//! verifier's keys). [`envid_lookup_options::service_config`] is the one
//! place they become an [`envid::ServiceConfig`], for all five constructors.
//!
//! The name is older than the registrar and the verifier: the object first
//! configured the lookup client alone. It is not renamed because the
//! struct's C tag and every `envid_lookup_options_*` symbol are ABI, and an
//! alias would give every C program two spellings of the same object; the
//! header documents it as every client's connection options instead.

use std::ffi::c_char;
use std::time::Duration;

use envid::{Secret, ServiceConfig};

use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, str_arg, write_out};
use crate::panic::{ffi_boundary, ffi_boundary_void};

/// The connection options of every client of the environment service:
/// `envid_lookup_client_new`, `envid_replica_new`, `envid_registrar_new`,
/// `envid_verifier_new` and `envid_events_new` all take one (the name is
/// historical: it first configured the lookup client alone).
///
/// Every client reads the endpoints (at least one), token, proxy, CA file
/// and the connect, per-phase and total timeouts. Only the lookup client
/// reads the TTL, negative TTL, max stale and retries; only the replica
/// (its snapshot) and the verifier (its keys) read the cache file. Anything
/// not set keeps the library's default (connect 500 ms, per-phase 2 s
/// (10 s for a replica), no total deadline, TTL 5 min, negative TTL 30 s,
/// max stale 1 h, 1 retry). The constructors only read the options, which
/// may be freed right after. Not synchronized: set from one thread.
#[derive(Clone, Debug, Default)]
pub struct envid_lookup_options {
    endpoints: Vec<String>,
    token: Option<Secret>,
    proxy: Option<Secret>,
    ca_file: Option<String>,
    connect_timeout: Option<Duration>,
    per_phase_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    /// How long a known answer is cached (client only).
    pub(crate) ttl: Option<Duration>,
    /// How long an unknown IP is cached (client only).
    pub(crate) negative_ttl: Option<Duration>,
    /// Oldest answer served when the service fails (client only).
    pub(crate) max_stale: Option<Duration>,
    /// Retries per lookup (client only).
    pub(crate) max_retries: Option<u32>,
    /// Where a replica keeps its last snapshot, or a verifier its keys.
    pub(crate) cache_file: Option<String>,
}

impl envid_lookup_options {
    /// Connection options from plain values (the JNI binding, whose
    /// builders set no proxy, CA file or total timeout); `None` keeps a
    /// default.
    pub fn from_parts(
        endpoints: Vec<String>,
        token: Option<String>,
        connect_timeout: Option<Duration>,
        per_phase_timeout: Option<Duration>,
    ) -> envid_lookup_options {
        envid_lookup_options {
            endpoints,
            token: token.map(Secret::new),
            connect_timeout,
            per_phase_timeout,
            ..envid_lookup_options::default()
        }
    }

    /// The lookup client's cache policy (only the lookup client uses it);
    /// `None` keeps a default.
    pub fn with_cache_policy(
        mut self,
        ttl: Option<Duration>,
        negative_ttl: Option<Duration>,
        max_stale: Option<Duration>,
        max_retries: Option<u32>,
    ) -> envid_lookup_options {
        self.ttl = ttl;
        self.negative_ttl = negative_ttl;
        self.max_stale = max_stale;
        self.max_retries = max_retries;
        self
    }

    /// The cache file (only a replica and a verifier use it).
    pub fn with_cache_file(mut self, path: Option<String>) -> envid_lookup_options {
        self.cache_file = path;
        self
    }

    /// The connection settings, checked once by the library:
    /// `ENVID_INVALID_INPUT` without endpoints, with a bad one, a bad proxy
    /// URL or an unusable CA file.
    pub fn service_config(&self) -> FfiResult<ServiceConfig> {
        let mut b = ServiceConfig::builder().endpoints(self.endpoints.iter().cloned());
        if let Some(t) = &self.token {
            b = b.token(t.clone());
        }
        if let Some(p) = &self.proxy {
            b = b.proxy(p.expose());
        }
        if let Some(f) = &self.ca_file {
            b = b.ca_file(f);
        }
        if let Some(v) = self.connect_timeout {
            b = b.connect_timeout(v);
        }
        if let Some(v) = self.per_phase_timeout {
            b = b.per_phase_timeout(v);
        }
        if let Some(v) = self.total_timeout {
            b = b.total_timeout(v);
        }
        Ok(b.build()?)
    }
}

/// Creates connection options for any client (no endpoint yet; add at
/// least one).
///
/// Ownership: `*out` is owned by the caller; free with `envid_lookup_options_free`.
///
/// # Safety
/// `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_new(
    out: *mut *mut envid_lookup_options,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let p = Box::into_raw(Box::<envid_lookup_options>::default());
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees connection options. NULL is a no-op.
///
/// # Safety
/// `opts` NULL or from `envid_lookup_options_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_free(opts: *mut envid_lookup_options) {
    // SAFETY: NULL or from its constructor, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(opts) })
}

unsafe fn set_lookup_option(
    opts: *mut envid_lookup_options,
    f: impl FnOnce(&mut envid_lookup_options) -> FfiResult,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or a live, unshared options object by contract.
        let o = unsafe { opts.as_mut() }.ok_or_else(|| Fail::null("opts"))?;
        f(o)
    })
}

/// Adds an endpoint, `http://HOST[:PORT]` or `https://…` (one per data
/// center; tried in the order added). Checked by the client's constructor.
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
                Some(Secret::new(str_arg(token, "token")?))
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
                Some(Secret::new(str_arg(url, "url")?))
            };
            Ok(())
        })
    }
}

/// Sets the cache file; NULL clears it. A replica keeps its last snapshot
/// there and a verifier its key set (written atomically), read at start
/// when the service is unreachable. Used only by `envid_replica_new` and
/// `envid_verifier_new`. The string is copied.
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

/// Sets the per-phase timeout in milliseconds (> 0; default 2000, 10000
/// for a replica): it bounds each phase of a request on its own (sending
/// it, waiting for the response head, reading the body), so a request ends
/// within connect + 3 × per-phase. For one deadline over the whole request
/// see `envid_lookup_options_set_total_timeout_ms`.
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_per_phase_timeout_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.per_phase_timeout = Some(ms(millis, "per-phase timeout")?);
            Ok(())
        })
    }
}

/// Deprecated: the old name of `envid_lookup_options_set_per_phase_timeout_ms`
/// (it was never a whole-request timeout); same behaviour.
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_request_timeout_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe { envid_lookup_options_set_per_phase_timeout_ms(opts, millis) }
}

/// Sets a strict deadline for each whole request, in milliseconds (> 0; off
/// by default: it costs about 50 µs a request, and the per-phase timeout
/// already stops every hang).
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_total_timeout_ms(
    opts: *mut envid_lookup_options,
    millis: u64,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_lookup_option(opts, |o| {
            o.total_timeout = Some(ms(millis, "total timeout")?);
            Ok(())
        })
    }
}

/// Sets a PEM file of CA certificates to trust instead of the bundled
/// Mozilla roots (a service with a private CA); NULL clears it. Read, and
/// checked to hold at least one certificate, by the client's constructor.
/// The string is copied.
///
/// # Safety
/// `opts` NULL or live; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_lookup_options_set_ca_file(
    opts: *mut envid_lookup_options,
    path: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_lookup_option(opts, |o| {
            o.ca_file = if path.is_null() {
                None
            } else {
                Some(str_arg(path, "path")?.to_string())
            };
            Ok(())
        })
    }
}

/// Sets how long a known answer is cached, in milliseconds (> 0; default
/// 5 min). Lookup client only.
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

/// Sets how long an "unknown IP" answer is cached, in milliseconds (> 0;
/// default 30 s). Lookup client only.
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
/// (> 0; default 1 h). Lookup client only.
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

/// Sets the retries per lookup after the first attempt (default 1; 0:
/// none). Lookup client only.
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
