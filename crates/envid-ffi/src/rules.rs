//! `envid_rules`: hostname rules (the KVM fallback) and `explain`.

use std::ffi::c_char;

use envid::rules::{HostnameMatch, Rules};

use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, obj_arg, owned_c_string, path_arg, str_arg, write_out};
use crate::panic::{ffi_boundary, ffi_boundary_void};

/// A set of hostname rules plus the alias table. Immutable; safe to share
/// between threads. Free with `envid_rules_free`.
#[derive(Debug)]
pub struct envid_rules {
    rules: Rules,
}

impl envid_rules {
    /// The built-in rules.
    pub fn builtin() -> envid_rules {
        envid_rules {
            rules: Rules::builtin(),
        }
    }

    /// The built-in rules amended or replaced by a rules file.
    pub fn load(path: &std::path::Path) -> FfiResult<envid_rules> {
        Ok(envid_rules {
            rules: Rules::load(path)?,
        })
    }

    /// What the first matching rule reads from `hostname`.
    pub fn explain(&self, hostname: &str) -> FfiResult<HostnameMatch> {
        self.rules
            .explain(hostname)
            .ok_or_else(|| Fail::not_found(format!("no hostname rule matches {hostname:?}")))
    }
}

/// Creates the built-in hostname rules (`l-<app><n>.<biz>[.<env>].<idc>[.<domain>]`).
///
/// Ownership: `*out` is owned by the caller; free it with `envid_rules_free`.
///
/// # Safety
/// `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_rules_builtin(out: *mut *mut envid_rules) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let p = Box::into_raw(Box::new(envid_rules::builtin()));
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Loads hostname rules and aliases from a TOML rules file (the built-in
/// rules amended or replaced as the file says). `ENVID_IO` when the file
/// cannot be read, `ENVID_RULES` when it is invalid.
///
/// Ownership: `*out` is owned by the caller; free it with `envid_rules_free`.
///
/// # Safety
/// `path` NULL or NUL-terminated; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_rules_load(
    path: *const c_char,
    out: *mut *mut envid_rules,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or NUL-terminated by contract.
        let path = unsafe { path_arg(path, "path") }?.ok_or_else(|| Fail::null("path"))?;
        let p = Box::into_raw(Box::new(envid_rules::load(&path)?));
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees rules. NULL is a no-op.
///
/// # Safety
/// `rules` NULL or from `envid_rules_builtin`/`envid_rules_load`, not yet
/// freed, and no longer used by another thread.
#[no_mangle]
pub unsafe extern "C" fn envid_rules_free(rules: *mut envid_rules) {
    // SAFETY: NULL or from its constructor, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(rules) })
}

/// Explains a hostname: which rule matches it and what it reads, as a JSON
/// object `{"rule", "hostname", "env", "env_defaulted", "env_type", "idc",
/// "app", "biz"}` (`idc`, `app`, `biz` may be null). Hostnames are matched
/// case-insensitively, with a trailing dot removed. `ENVID_NOT_FOUND` when no
/// rule matches.
///
/// Ownership: `*json_out` is owned by the caller; free it with `envid_string_free`.
///
/// # Safety
/// `rules` NULL or live; `hostname` NULL or NUL-terminated; `json_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_rules_explain(
    rules: *const envid_rules,
    hostname: *const c_char,
    json_out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let r = unsafe { obj_arg(rules, "rules") }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let h = unsafe { str_arg(hostname, "hostname") }?;
        let m = r.explain(h)?;
        let json = serde_json::to_string(&m)
            .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))?;
        let s = owned_c_string(json)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(json_out, s, "json_out") }
    })
}
