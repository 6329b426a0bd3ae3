//! `envid_registrar`: registers this instance with the environment service,
//! renews and removes the registration, and hands the process the signed
//! identity the service returns.

use std::ffi::c_char;
use std::time::Duration;

use envid::registrar::{Registrar, Registration};

use crate::environment::envid_environment;
use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, new_out, obj_arg, owned_c_string, str_arg, write_out};
use crate::options::envid_lookup_options;
use crate::panic::{ffi_boundary, ffi_boundary_void};
use crate::record::parse_ip;

/// A registrar. Thread-safe: share one per process (it keeps the newest
/// signed identity). Free with `envid_registrar_free` once no thread uses it.
#[derive(Debug)]
pub struct envid_registrar {
    registrar: Registrar,
}

impl envid_registrar {
    /// Builds the registrar on the options' service config (endpoint,
    /// token, proxy, CA file, timeouts); the cache settings do not apply.
    pub fn new(opts: &envid_lookup_options) -> FfiResult<envid_registrar> {
        Ok(envid_registrar {
            registrar: Registrar::new(opts.service_config()?),
        })
    }

    /// Registers `ip` (else the environment's IP) for `lease`.
    pub fn register(
        &self,
        env: &envid_environment,
        lease: Duration,
        ip: Option<&str>,
    ) -> FfiResult {
        let e = env.environment();
        let ip = match ip {
            Some(s) => parse_ip(s)?,
            None => e.ip().ok_or_else(|| {
                Fail::invalid("no IP given and the environment has none".to_string())
            })?,
        };
        let reg = Registration::from_environment(e, lease);
        Ok(self.registrar.register(ip, &reg)?)
    }

    /// Renews `ip`'s lease; `false` when the service no longer knows it.
    pub fn renew(&self, ip: &str) -> FfiResult<bool> {
        Ok(self.registrar.renew(parse_ip(ip)?)?)
    }

    /// Removes `ip`'s registration.
    pub fn deregister(&self, ip: &str) -> FfiResult {
        Ok(self.registrar.deregister(parse_ip(ip)?)?)
    }

    /// The newest signed identity: the token and its lifetime in seconds
    /// (0 when the service gave none).
    pub fn identity(&self) -> Option<(String, u64)> {
        self.registrar.identity().map(|i| {
            (
                i.token.expose().to_string(),
                i.lifetime.map_or(0, |d| d.as_secs()),
            )
        })
    }
}

/// Creates a registrar from connection options (`envid_lookup_options`:
/// endpoint, token, proxy, CA file, timeouts). `ENVID_INVALID_INPUT` when there is no endpoint or the
/// options are malformed. Makes no request yet.
///
/// Ownership: `*out` is owned by the caller; free with
/// `envid_registrar_free`. `opts` is only read and may be freed afterwards.
///
/// # Safety
/// `opts` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_registrar_new(
    opts: *const envid_lookup_options,
    out: *mut *mut envid_registrar,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract; `out` NULL or writable.
        let o = unsafe { obj_arg(opts, "opts") }?;
        unsafe { new_out(out, || envid_registrar::new(o)) }
    })
}

/// Frees a registrar. NULL is a no-op.
///
/// # Safety
/// `registrar` NULL or from `envid_registrar_new`, not yet freed, and no
/// longer used by any thread.
#[no_mangle]
pub unsafe extern "C" fn envid_registrar_free(registrar: *mut envid_registrar) {
    // SAFETY: NULL or from envid_registrar_new, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(registrar) })
}

/// Registers this instance (`PUT /v1/hosts/{ip}`) with the facts of `env`
/// (app, env, idc, sub_env, platform, hostname, release, k8s, labels; never
/// the app token) for `lease_seconds`. `ip` NULL: the environment's IP.
/// `ENVID_INVALID_INPUT` for a malformed IP or when there is none,
/// `ENVID_LOOKUP_FAILED` when the service refused or failed. When the
/// service signs identities, `envid_registrar_identity` then returns one.
///
/// # Safety
/// `registrar` and `env` NULL or live; `ip` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_registrar_register(
    registrar: *const envid_registrar,
    env: *const envid_environment,
    lease_seconds: u64,
    ip: *const c_char,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(registrar, "registrar") }?;
        // SAFETY: NULL or live by contract.
        let e = unsafe { obj_arg(env, "env") }?;
        let ip = if ip.is_null() {
            None
        } else {
            // SAFETY: NUL-terminated by contract.
            Some(unsafe { str_arg(ip, "ip") }?)
        };
        r.register(e, Duration::from_secs(lease_seconds), ip)
    })
}

/// Renews `ip`'s lease (`POST /v1/hosts/{ip}/renew`). On `ENVID_OK`,
/// `*known_out` is false when the service no longer knows `ip` (the lease
/// ended): register again. Only the registration this registrar made is
/// renewed: when another host registered `ip` since, it is
/// `ENVID_LOOKUP_FAILED` (HTTP 409) and nothing is renewed; registering
/// again would take the IP from that host.
///
/// # Safety
/// `registrar` NULL or live; `ip` NULL or NUL-terminated; `known_out` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_registrar_renew(
    registrar: *const envid_registrar,
    ip: *const c_char,
    known_out: *mut bool,
) -> envid_result {
    ffi_boundary(|| {
        if known_out.is_null() {
            return Err(Fail::null("known_out"));
        }
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(registrar, "registrar") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let ip = unsafe { str_arg(ip, "ip") }?;
        let known = r.renew(ip)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(known_out, known, "known_out") }
    })
}

/// Removes `ip`'s registration (`DELETE /v1/hosts/{ip}`); an unknown IP is
/// not an error. Only the registration this registrar made is removed: one
/// another host made for `ip` since is left alone (and that is `ENVID_OK`).
/// `ENVID_LOOKUP_FAILED` when the service refused (an IP of its registry
/// file) or failed.
///
/// # Safety
/// `registrar` NULL or live; `ip` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn envid_registrar_deregister(
    registrar: *const envid_registrar,
    ip: *const c_char,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(registrar, "registrar") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let ip = unsafe { str_arg(ip, "ip") }?;
        r.deregister(ip)
    })
}

/// The newest signed identity (a JWT) from a registration or renewal.
/// `*token_out` is the token; `*lifetime_seconds_out` (when not NULL) its
/// lifetime, 0 when the service gave none. `ENVID_NOT_FOUND` when there is
/// none (the service signs none, or nothing was registered yet). Renew at
/// least every half of the lifetime. The token is a credential: never log it.
///
/// Ownership: `*token_out` is owned by the caller; free with `envid_string_free`.
///
/// # Safety
/// `registrar` NULL or live; `token_out` NULL or writable;
/// `lifetime_seconds_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_registrar_identity(
    registrar: *const envid_registrar,
    token_out: *mut *mut c_char,
    lifetime_seconds_out: *mut u64,
) -> envid_result {
    ffi_boundary(|| {
        if token_out.is_null() {
            return Err(Fail::null("token_out"));
        }
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(registrar, "registrar") }?;
        let (token, lifetime) = r
            .identity()
            .ok_or_else(|| Fail::not_found("the service has given no identity"))?;
        let s = owned_c_string(token)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(token_out, s, "token_out") }?;
        if !lifetime_seconds_out.is_null() {
            // SAFETY: checked non-null; writable by contract.
            unsafe { write_out(lifetime_seconds_out, lifetime, "lifetime_seconds_out") }?;
        }
        Ok(())
    })
}
