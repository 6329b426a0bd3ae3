//! `envid_verifier`: verifies signed identities (Ed25519 JWTs) locally
//! against the environment service's key set, kept fresh by a background
//! thread (see `envid::identity`).

use std::ffi::c_char;
use std::sync::Arc;

use envid::identity::{Claims, Verifier};

use crate::envid_result;
use crate::error::{Fail, FfiResult};
use crate::marshal::{owned_c_string, str_arg, write_out};
use crate::options::envid_lookup_options;
use crate::panic::{ffi_boundary, ffi_boundary_void};

/// A verifier of signed identities. Thread-safe: share one per process.
/// Free with `envid_verifier_free` (which stops its refresh thread) once no
/// thread uses it any more.
#[derive(Debug)]
pub struct envid_verifier {
    verifier: Verifier,
}

impl envid_verifier {
    /// The options' service config, with their cache file as the keys
    /// cache; `audience` `None` keeps `envid`, `issuer` `None` accepts any.
    pub fn new(
        opts: &envid_lookup_options,
        audience: Option<&str>,
        issuer: Option<&str>,
    ) -> FfiResult<envid_verifier> {
        let mut b = Verifier::builder(opts.service_config()?);
        if let Some(f) = &opts.cache_file {
            b = b.cache_file(f);
        }
        if let Some(a) = audience {
            b = b.audience(a);
        }
        if let Some(i) = issuer {
            b = b.issuer(i);
        }
        Ok(envid_verifier {
            verifier: b.build()?,
        })
    }

    /// Verifies `token`.
    pub fn verify(&self, token: &str) -> FfiResult<Arc<Claims>> {
        Ok(self.verifier.verify(token)?)
    }
}

/// The claims as JSON, as every binding returns them.
pub fn claims_to_json(c: &Claims) -> FfiResult<String> {
    serde_json::to_string(c)
        .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))
}

/// Creates a verifier from connection options (`envid_lookup_options`):
/// their endpoints (tried in turn), token, proxy, CA file, timeouts, and
/// cache file (the keys cache: written after each change, read when the
/// service is unreachable). `audience` NULL requires `envid`; `issuer` NULL
/// accepts any issuer. Fetches the key set before returning. `ENVID_INVALID_INPUT` for bad options;
/// `ENVID_IDENTITY_NO_KEYS` when neither the service nor the cache file
/// gave keys.
///
/// Ownership: `*out` is owned by the caller; free with
/// `envid_verifier_free`. `opts` is only read.
///
/// # Safety
/// `opts` NULL or live; `audience`, `issuer` NULL or NUL-terminated; `out`
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_verifier_new(
    opts: *const envid_lookup_options,
    audience: *const c_char,
    issuer: *const c_char,
    out: *mut *mut envid_verifier,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let o = unsafe { opts.as_ref() }.ok_or_else(|| Fail::null("opts"))?;
        // SAFETY: NULL or NUL-terminated by contract.
        let audience = (!audience.is_null())
            .then(|| unsafe { str_arg(audience, "audience") })
            .transpose()?;
        // SAFETY: as above.
        let issuer = (!issuer.is_null())
            .then(|| unsafe { str_arg(issuer, "issuer") })
            .transpose()?;
        let p = Box::into_raw(Box::new(envid_verifier::new(o, audience, issuer)?));
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Verifies `token` (a compact JWT) locally: signature by a known key,
/// `exp`/`nbf` with a 60 s leeway, issuer and audience. On `ENVID_OK`,
/// `*claims_json` (when not NULL) is the claims as JSON. Otherwise a typed
/// code: `ENVID_IDENTITY_MALFORMED`, `_BAD_SIGNATURE`, `_UNKNOWN_KEY`,
/// `_EXPIRED`, `_NOT_YET_VALID`, `_WRONG_ISSUER`, `_WRONG_AUDIENCE`; the
/// message (`envid_last_error`) never contains the token.
///
/// Ownership: `*claims_json` is owned by the caller; free with
/// `envid_string_free`.
///
/// # Safety
/// `verifier` NULL or live; `token` NULL or NUL-terminated; `claims_json`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_verifier_verify(
    verifier: *const envid_verifier,
    token: *const c_char,
    claims_json: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let v = unsafe { verifier.as_ref() }.ok_or_else(|| Fail::null("verifier"))?;
        // SAFETY: NULL or NUL-terminated by contract.
        let token = unsafe { str_arg(token, "token") }?;
        let claims = v.verify(token)?;
        if !claims_json.is_null() {
            let s = owned_c_string(claims_to_json(&claims)?)?;
            // SAFETY: non-null; writable by contract.
            unsafe { write_out(claims_json, s, "claims_json") }?;
        }
        Ok(())
    })
}

/// Frees a verifier and stops its refresh thread. NULL is a no-op.
///
/// # Safety
/// `verifier` NULL or from `envid_verifier_new`, not yet freed, and no
/// longer used by any thread.
#[no_mangle]
pub unsafe extern "C" fn envid_verifier_free(verifier: *mut envid_verifier) {
    ffi_boundary_void(|| {
        if !verifier.is_null() {
            // SAFETY: by contract it came from Box::into_raw here.
            drop(unsafe { Box::from_raw(verifier) });
        }
    })
}
