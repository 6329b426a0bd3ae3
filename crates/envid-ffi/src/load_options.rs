//! `envid_load_options`: how `envid_load` (and the JNI `Environment.load`)
//! finds the facts: descriptor, root, rules file, strict mode, whether
//! `ENVID_*` variables count, and the JVM's system properties.

use std::ffi::c_char;
use std::path::PathBuf;

use envid::Environment;

use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, path_arg, write_out};
use crate::panic::{ffi_boundary, ffi_boundary_void};

/// Options for `envid_load`. Create with `envid_load_options_new`, free with
/// `envid_load_options_free`. Not synchronized: do not set options from two
/// threads at once (reading it from many `envid_load` calls at once is fine).
#[derive(Clone, Debug)]
pub struct envid_load_options {
    descriptor: Option<PathBuf>,
    root: Option<PathBuf>,
    rules_file: Option<PathBuf>,
    strict: bool,
    env_vars: bool,
    /// JVM system properties (`envid.env`, …); the C API never sets them.
    properties: Vec<(String, String)>,
}

impl Default for envid_load_options {
    fn default() -> Self {
        envid_load_options {
            descriptor: None,
            root: None,
            rules_file: None,
            strict: false,
            env_vars: true,
            properties: Vec::new(),
        }
    }
}

impl envid_load_options {
    /// Options from plain values (used by the JNI binding, which also
    /// passes the JVM's `envid.*` system properties).
    pub fn from_parts(
        descriptor: Option<PathBuf>,
        root: Option<PathBuf>,
        rules_file: Option<PathBuf>,
        strict: bool,
        env_vars: bool,
        properties: Vec<(String, String)>,
    ) -> envid_load_options {
        envid_load_options {
            descriptor,
            root,
            rules_file,
            strict,
            env_vars,
            properties,
        }
    }

    /// Loads a fresh environment with these options (the caller wraps it in
    /// the object it hands out: `envid_environment`, or a JNI handle).
    pub fn load(&self) -> FfiResult<Environment> {
        let mut b = Environment::builder()
            .strict(self.strict)
            .env_vars(self.env_vars)
            .system_properties(self.properties.clone());
        if let Some(p) = &self.descriptor {
            b = b.descriptor(p);
        }
        if let Some(p) = &self.root {
            b = b.root(p);
        }
        if let Some(p) = &self.rules_file {
            b = b.rules_file(p);
        }
        Ok(b.load()?)
    }
}

/// Creates load options with the defaults: default descriptor paths (or
/// `ENVID_DESCRIPTOR`), root `/`, built-in rules, not strict, `ENVID_*`
/// variables read.
///
/// Ownership: `*out` is owned by the caller; free it with
/// `envid_load_options_free`.
///
/// # Safety
/// `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_new(out: *mut *mut envid_load_options) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let p = Box::into_raw(Box::<envid_load_options>::default());
        // SAFETY: checked non-null above; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees load options. NULL is a no-op.
///
/// # Safety
/// `opts` must be NULL or from `envid_load_options_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_free(opts: *mut envid_load_options) {
    // SAFETY: NULL or from its constructor, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(opts) })
}

/// Helper for the option setters.
unsafe fn set_option(
    opts: *mut envid_load_options,
    f: impl FnOnce(&mut envid_load_options) -> FfiResult,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: by contract NULL or a live, unshared options object.
        let o = unsafe { opts.as_mut() }.ok_or_else(|| Fail::null("opts"))?;
        f(o)
    })
}

/// Reads exactly this descriptor file (a missing file is then an error,
/// `ENVID_IO`). NULL restores the default location policy. The string is
/// copied.
///
/// # Safety
/// `opts` NULL or live; `path` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_set_descriptor(
    opts: *mut envid_load_options,
    path: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_option(opts, |o| {
            o.descriptor = path_arg(path, "path")?;
            Ok(())
        })
    }
}

/// Probes files below `dir` instead of `/` (fake hosts in tests); the
/// default descriptor paths are looked up below it too. NULL restores `/`.
/// The string is copied.
///
/// # Safety
/// `opts` NULL or live; `dir` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_set_root(
    opts: *mut envid_load_options,
    dir: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_option(opts, |o| {
            o.root = path_arg(dir, "dir")?;
            Ok(())
        })
    }
}

/// Loads hostname rules and aliases from this TOML file. NULL restores the
/// built-in rules. The string is copied.
///
/// # Safety
/// `opts` NULL or live; `path` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_set_rules_file(
    opts: *mut envid_load_options,
    path: *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    unsafe {
        set_option(opts, |o| {
            o.rules_file = path_arg(path, "path")?;
            Ok(())
        })
    }
}

/// Strict mode: descriptor warnings (unknown keys, …) become errors.
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_set_strict(
    opts: *mut envid_load_options,
    strict: bool,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_option(opts, |o| {
            o.strict = strict;
            Ok(())
        })
    }
}

/// Whether `ENVID_*` variables (including `ENVID_DESCRIPTOR`) are read; on by default.
///
/// # Safety
/// `opts` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_load_options_set_env_vars(
    opts: *mut envid_load_options,
    on: bool,
) -> envid_result {
    // SAFETY: forwarded contract.
    unsafe {
        set_option(opts, |o| {
            o.env_vars = on;
            Ok(())
        })
    }
}
