//! The panic boundary of the C API: every exported function runs its body
//! in [`ffi_boundary`] (or [`ffi_boundary_void`]), because a panic that
//! unwinds into C is undefined behaviour. The boundary also turns a
//! failure into its result code and this thread's last error, so bodies
//! just return a [`FfiResult`].
//!
//! The JNI binding has its own boundary (jni's `with_env`, see
//! `crate::jni`) and shares only [`panic_message`].

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{envid_result, set_last_error, FfiResult};

/// The text of a panic payload; never panics itself (a payload whose drop
/// panics is leaked).
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    };
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(p);
    }
    text
}

/// The boundary around every exported function: runs `f`, catches any panic,
/// records the message of a failure as this thread's last error, and turns
/// the outcome into an [`envid_result`]. Success leaves the last error alone
/// (no thread-local access on the fast path).
#[inline]
pub fn ffi_boundary(f: impl FnOnce() -> FfiResult) -> envid_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => envid_result::ENVID_OK,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.code
        }
        Err(payload) => {
            set_last_error(&format!("envid panicked: {}", panic_message(payload)));
            envid_result::ENVID_PANIC
        }
    }
}

/// [`ffi_boundary`] for functions that return nothing (the `*_free` functions): a
/// panic is recorded as the last error and swallowed.
#[inline]
pub fn ffi_boundary_void(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        set_last_error(&format!("envid panicked: {}", panic_message(payload)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{with_last_error, Fail};

    fn last() -> String {
        with_last_error(|m| m.to_str().unwrap().to_string())
    }

    #[test]
    fn panics_become_a_result_and_a_message() {
        let rc = ffi_boundary(|| panic!("boom {}", 42));
        assert_eq!(rc, envid_result::ENVID_PANIC);
        assert!(last().contains("boom 42"), "{}", last());
        // A non-string payload.
        let rc = ffi_boundary(|| std::panic::panic_any(7u8));
        assert_eq!(rc, envid_result::ENVID_PANIC);
        assert!(last().contains("non-string"), "{}", last());
        ffi_boundary_void(|| panic!("in a free"));
        assert!(last().contains("in a free"));
    }

    #[test]
    fn failures_set_the_message_successes_keep_it() {
        assert_eq!(
            ffi_boundary(|| Err(Fail::not_found("no such thing"))),
            envid_result::ENVID_NOT_FOUND
        );
        assert_eq!(last(), "no such thing");
        assert_eq!(ffi_boundary(|| Ok(())), envid_result::ENVID_OK);
        assert_eq!(last(), "no such thing");
        // NUL bytes cannot truncate the message.
        ffi_boundary(|| Err(Fail::invalid("a\0b")));
        assert_eq!(last(), "a\u{FFFD}b");
    }
}
