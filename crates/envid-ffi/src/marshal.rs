//! Moving values across the C boundary: borrowing the caller's arguments
//! (objects, UTF-8 strings, paths), writing out-parameters, handing out
//! boxed objects and owned strings, and taking them back (`*_free`,
//! `envid_string_free`). Every NULL check names the argument, so the
//! caller's `envid_last_error` says which one was missing.

use std::ffi::{c_char, CStr, CString};

use crate::error::{Fail, FfiResult};
use crate::panic::ffi_boundary_void;

/// Writes `value` through `out`, failing with `ENVID_NULL_PARAMETER` when
/// `out` is NULL.
///
/// # Safety
/// `out` must be NULL or valid for a write of `T`.
#[inline]
pub unsafe fn write_out<T>(out: *mut T, value: T, what: &'static str) -> FfiResult {
    if out.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-null, and the caller promises it is valid for writes.
    unsafe { out.write(value) };
    Ok(())
}

/// Borrows an object argument; NULL is `ENVID_NULL_PARAMETER` naming it.
///
/// # Safety
/// `p` must be NULL or point to a live `T` for the call.
pub unsafe fn obj_arg<'a, T>(p: *const T, what: &'static str) -> FfiResult<&'a T> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null(what))
}

/// The constructor shape every object shares: `*out` gets a new box made by
/// `make`, owned by the caller and freed with [`free_box`].
///
/// # Safety
/// `out` must be NULL or valid for a write.
pub unsafe fn new_out<T>(out: *mut *mut T, make: impl FnOnce() -> FfiResult<T>) -> FfiResult {
    if out.is_null() {
        return Err(Fail::null("out"));
    }
    let p = Box::into_raw(Box::new(make()?));
    // SAFETY: checked non-null; writable by the caller's contract.
    unsafe { write_out(out, p, "out") }
}

/// Frees a box made by [`new_out`]; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or from [`new_out`] (or `Box::into_raw`), not yet freed,
/// and no longer used by any thread.
pub unsafe fn free_box<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: by contract it came from Box::into_raw and is not used again.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Reads a borrowed C string argument as UTF-8.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for the call.
pub unsafe fn str_arg<'a>(p: *const c_char, what: &'static str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Fail::invalid(format!("{what} is not valid UTF-8")))
}

/// Reads an optional path argument (NULL → `None`); any bytes are accepted on Unix.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for the call.
pub unsafe fn path_arg(
    p: *const c_char,
    what: &'static str,
) -> FfiResult<Option<std::path::PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    if c.is_empty() {
        return Err(Fail::invalid(format!("{what} must not be empty")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(Some(std::ffi::OsStr::from_bytes(c.to_bytes()).into()))
    }
    #[cfg(not(unix))]
    {
        c.to_str()
            .map(|s| Some(s.into()))
            .map_err(|_| Fail::invalid(format!("{what} is not valid UTF-8")))
    }
}

/// Frees a string this library allocated for the caller (`envid_environment_to_json`,
/// `envid_rules_explain`, …). NULL is a no-op. Never free borrowed strings
/// (field getters) with it, and never free these strings with `free()`.
///
/// # Safety
/// `s` must be NULL or a string returned as owned by an envid function, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn envid_string_free(s: *mut c_char) {
    ffi_boundary_void(|| {
        if !s.is_null() {
            // SAFETY: by contract `s` came from CString::into_raw in this library.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// Hands a Rust string to C as an owned, NUL-terminated string (freed with
/// `envid_string_free`).
pub fn owned_c_string(s: String) -> FfiResult<*mut c_char> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| Fail::invalid("the value contains a NUL byte"))
}
