//! Result codes and the per-thread last error: what a failed call leaves
//! for its caller (`envid_result`, `envid_last_error`), and [`Fail`], the
//! failure every function body returns before the boundary
//! ([`crate::panic::ffi_boundary`]) turns it into both.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of every envid function. `ENVID_OK` is 0; anything else is a
/// failure whose message `envid_last_error` returns on the same thread.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum envid_result {
    /// Success.
    ENVID_OK = 0,
    /// A required pointer argument was NULL.
    ENVID_NULL_PARAMETER = 1,
    /// An argument is malformed: not UTF-8, not an IP address, out of range,
    /// or a value holds a NUL byte and cannot be returned as a C string.
    ENVID_INVALID_INPUT = 2,
    /// The asked-for value is absent: an optional field without a value, an
    /// unknown label, a hostname no rule matches, an IP the service does not know.
    ENVID_NOT_FOUND = 3,
    /// The caller's buffer is too small; the needed size was reported.
    ENVID_BUFFER_TOO_SMALL = 4,
    /// A file (descriptor, rules file) could not be read: missing, not a
    /// regular file, permission denied.
    ENVID_IO = 5,
    /// The descriptor file is invalid (syntax, schema, field types or values,
    /// size, unknown keys in strict mode), or so is a file of the Kubernetes
    /// downward-API volume.
    ENVID_DESCRIPTOR = 6,
    /// The hostname rules file is invalid.
    ENVID_RULES = 7,
    /// An `ENVID_*` variable or a `POD_IP` holds a value of the wrong form.
    ENVID_INVALID_VALUE = 8,
    /// `env` or `idc` is unknown after every source was tried; the message
    /// lists every source and why each gave nothing.
    ENVID_UNIDENTIFIED = 9,
    /// An IP lookup failed (service unreachable, error status, circuit open).
    ENVID_LOOKUP_FAILED = 10,
    /// envid panicked; the panic was caught. A bug: please report the message.
    ENVID_PANIC = 11,
    /// An internal failure of the binding itself (for example a JNI call failed).
    ENVID_INTERNAL = 12,
    /// An identity is not a well-formed EdDSA JWT (or is empty).
    ENVID_IDENTITY_MALFORMED = 13,
    /// An identity's signature does not match its key.
    ENVID_IDENTITY_BAD_SIGNATURE = 14,
    /// An identity is signed with a key the key set does not hold.
    ENVID_IDENTITY_UNKNOWN_KEY = 15,
    /// An identity has expired.
    ENVID_IDENTITY_EXPIRED = 16,
    /// An identity is not valid yet.
    ENVID_IDENTITY_NOT_YET_VALID = 17,
    /// An identity comes from another issuer.
    ENVID_IDENTITY_WRONG_ISSUER = 18,
    /// An identity is for another audience.
    ENVID_IDENTITY_WRONG_AUDIENCE = 19,
    /// No identity keys: the service was unreachable and no cache file was
    /// fresh enough, or it serves no keys.
    ENVID_IDENTITY_NO_KEYS = 20,
    /// `envid_events_next`: the timeout passed with no event. Not a
    /// failure: call again.
    ENVID_TIMEOUT = 21,
    /// An events checkpoint cannot be used: corrupt (the message names the
    /// file and line), of another format, written for another filter, or it
    /// cannot be written. Never silently replaced by a fresh start.
    ENVID_CHECKPOINT = 22,
}

impl envid_result {
    /// Every code, in numeric order.
    pub const ALL: [envid_result; 23] = {
        use envid_result::*;
        [
            ENVID_OK,
            ENVID_NULL_PARAMETER,
            ENVID_INVALID_INPUT,
            ENVID_NOT_FOUND,
            ENVID_BUFFER_TOO_SMALL,
            ENVID_IO,
            ENVID_DESCRIPTOR,
            ENVID_RULES,
            ENVID_INVALID_VALUE,
            ENVID_UNIDENTIFIED,
            ENVID_LOOKUP_FAILED,
            ENVID_PANIC,
            ENVID_INTERNAL,
            ENVID_IDENTITY_MALFORMED,
            ENVID_IDENTITY_BAD_SIGNATURE,
            ENVID_IDENTITY_UNKNOWN_KEY,
            ENVID_IDENTITY_EXPIRED,
            ENVID_IDENTITY_NOT_YET_VALID,
            ENVID_IDENTITY_WRONG_ISSUER,
            ENVID_IDENTITY_WRONG_AUDIENCE,
            ENVID_IDENTITY_NO_KEYS,
            ENVID_TIMEOUT,
            ENVID_CHECKPOINT,
        ]
    };

    /// The code with this numeric value.
    pub fn from_code(code: i32) -> Option<envid_result> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The constant's name, e.g. `"ENVID_NOT_FOUND"`.
    pub fn name(self) -> &'static CStr {
        use envid_result::*;
        match self {
            ENVID_OK => c"ENVID_OK",
            ENVID_NULL_PARAMETER => c"ENVID_NULL_PARAMETER",
            ENVID_INVALID_INPUT => c"ENVID_INVALID_INPUT",
            ENVID_NOT_FOUND => c"ENVID_NOT_FOUND",
            ENVID_BUFFER_TOO_SMALL => c"ENVID_BUFFER_TOO_SMALL",
            ENVID_IO => c"ENVID_IO",
            ENVID_DESCRIPTOR => c"ENVID_DESCRIPTOR",
            ENVID_RULES => c"ENVID_RULES",
            ENVID_INVALID_VALUE => c"ENVID_INVALID_VALUE",
            ENVID_UNIDENTIFIED => c"ENVID_UNIDENTIFIED",
            ENVID_LOOKUP_FAILED => c"ENVID_LOOKUP_FAILED",
            ENVID_PANIC => c"ENVID_PANIC",
            ENVID_INTERNAL => c"ENVID_INTERNAL",
            ENVID_IDENTITY_MALFORMED => c"ENVID_IDENTITY_MALFORMED",
            ENVID_IDENTITY_BAD_SIGNATURE => c"ENVID_IDENTITY_BAD_SIGNATURE",
            ENVID_IDENTITY_UNKNOWN_KEY => c"ENVID_IDENTITY_UNKNOWN_KEY",
            ENVID_IDENTITY_EXPIRED => c"ENVID_IDENTITY_EXPIRED",
            ENVID_IDENTITY_NOT_YET_VALID => c"ENVID_IDENTITY_NOT_YET_VALID",
            ENVID_IDENTITY_WRONG_ISSUER => c"ENVID_IDENTITY_WRONG_ISSUER",
            ENVID_IDENTITY_WRONG_AUDIENCE => c"ENVID_IDENTITY_WRONG_AUDIENCE",
            ENVID_IDENTITY_NO_KEYS => c"ENVID_IDENTITY_NO_KEYS",
            ENVID_TIMEOUT => c"ENVID_TIMEOUT",
            ENVID_CHECKPOINT => c"ENVID_CHECKPOINT",
        }
    }
}

/// A failure on its way to the caller: the code and the message for
/// `envid_last_error`.
#[derive(Debug)]
pub struct Fail {
    /// The result code.
    pub code: envid_result,
    /// The message.
    pub message: Cow<'static, str>,
}

impl Fail {
    /// A failure with this code and message.
    pub fn new(code: envid_result, message: impl Into<Cow<'static, str>>) -> Fail {
        Fail {
            code,
            message: message.into(),
        }
    }

    /// `ENVID_NULL_PARAMETER` naming the argument.
    pub fn null(what: &'static str) -> Fail {
        Fail::new(
            envid_result::ENVID_NULL_PARAMETER,
            format!("{what} must not be NULL"),
        )
    }

    /// `ENVID_NOT_FOUND` with a message.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Fail {
        Fail::new(envid_result::ENVID_NOT_FOUND, message)
    }

    /// `ENVID_INVALID_INPUT` with a message.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Fail {
        Fail::new(envid_result::ENVID_INVALID_INPUT, message)
    }
}

impl From<envid::LoadError> for Fail {
    fn from(e: envid::LoadError) -> Fail {
        use envid::descriptor::ProblemKind;
        use envid::podinfo::PodInfoErrorKind;
        use envid::rules::RulesErrorKind;
        use envid::LoadError;
        let code = match &e {
            LoadError::Descriptor(d) => match d.kind() {
                ProblemKind::NotFound | ProblemKind::Io | ProblemKind::NotAFile => {
                    envid_result::ENVID_IO
                }
                _ => envid_result::ENVID_DESCRIPTOR,
            },
            LoadError::Rules(r) if r.kind == RulesErrorKind::Io => envid_result::ENVID_IO,
            LoadError::Rules(_) => envid_result::ENVID_RULES,
            LoadError::InvalidValue { .. } => envid_result::ENVID_INVALID_VALUE,
            LoadError::PodInfo(p) => match p.kind {
                PodInfoErrorKind::Io
                | PodInfoErrorKind::NotAFile
                | PodInfoErrorKind::NotADirectory => envid_result::ENVID_IO,
                _ => envid_result::ENVID_DESCRIPTOR,
            },
            LoadError::Unidentified(_) => envid_result::ENVID_UNIDENTIFIED,
        };
        Fail::new(code, e.to_string())
    }
}

impl From<envid::identity::IdentityError> for Fail {
    fn from(e: envid::identity::IdentityError) -> Fail {
        use envid::identity::IdentityError as E;
        use envid_result::*;
        let code = match &e {
            E::Missing | E::Malformed { .. } => ENVID_IDENTITY_MALFORMED,
            E::BadSignature => ENVID_IDENTITY_BAD_SIGNATURE,
            E::UnknownKey { .. } => ENVID_IDENTITY_UNKNOWN_KEY,
            E::Expired { .. } => ENVID_IDENTITY_EXPIRED,
            E::NotYetValid { .. } => ENVID_IDENTITY_NOT_YET_VALID,
            E::WrongIssuer { .. } => ENVID_IDENTITY_WRONG_ISSUER,
            E::WrongAudience { .. } => ENVID_IDENTITY_WRONG_AUDIENCE,
            E::NoKeys { .. } => ENVID_IDENTITY_NO_KEYS,
            _ => ENVID_INVALID_INPUT,
        };
        Fail::new(code, e.to_string())
    }
}

impl From<envid::rules::RulesError> for Fail {
    fn from(e: envid::rules::RulesError) -> Fail {
        Fail::from(envid::LoadError::Rules(e))
    }
}

/// The library's lookup errors: bad input (endpoints, settings, IPs) is
/// `ENVID_INVALID_INPUT`, the rest `ENVID_LOOKUP_FAILED`.
impl From<envid::client::ClientError> for Fail {
    fn from(e: envid::client::ClientError) -> Fail {
        let code = match e {
            envid::client::ClientError::InvalidEndpoint { .. }
            | envid::client::ClientError::InvalidConfig { .. }
            | envid::client::ClientError::InvalidIp { .. } => envid_result::ENVID_INVALID_INPUT,
            _ => envid_result::ENVID_LOOKUP_FAILED,
        };
        Fail::new(code, e.to_string())
    }
}

/// A consumer of events: its connection settings as the clients' errors,
/// anything about its checkpoint `ENVID_CHECKPOINT`.
impl From<envid::events::EventsError> for Fail {
    fn from(e: envid::events::EventsError) -> Fail {
        match e {
            envid::events::EventsError::Client(c) => Fail::from(c),
            other => Fail::new(envid_result::ENVID_CHECKPOINT, other.to_string()),
        }
    }
}

/// What an exported function body returns.
pub type FfiResult<T = ()> = Result<T, Fail>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Replaces this thread's last error message (NUL bytes become U+FFFD).
pub fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    // During thread teardown the slot may be gone; then there is no one to tell.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = c;
        }
    });
}

/// Runs `f` with this thread's last error message (empty when none).
pub fn with_last_error<R>(f: impl FnOnce(&CStr) -> R) -> R {
    let mut f = Some(f);
    let mut call = |s: &CStr| (f.take().expect("called once"))(s);
    match LAST_ERROR.try_with(|slot| slot.try_borrow().ok().map(|s| call(s.as_c_str()))) {
        Ok(Some(r)) => r,
        _ => call(c""),
    }
}

/// A pointer to this thread's last error message (see `envid_last_error`).
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            Ok(s) => s.as_ptr(),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

/// Returns this thread's last error message: the message of the most recent
/// failed envid call on this thread, or `""` when none failed yet. Never NULL.
///
/// Lifetime: the pointer is borrowed and valid until the next envid call on
/// the same thread (which may replace the message); copy it (or use
/// `envid_last_error_copy`) to keep it. Successful calls leave the message in
/// place, so check the result code first, then read the message.
#[no_mangle]
pub extern "C" fn envid_last_error() -> *const c_char {
    last_error_ptr()
}

/// Copies this thread's last error message, NUL-terminated, into `buf` of
/// `len` bytes, and writes the message's full size including the NUL to
/// `*needed` (when `needed` is not NULL).
///
/// Returns `ENVID_BUFFER_TOO_SMALL` when it does not fit; `buf` then holds as
/// much as fits, NUL-terminated (when `len > 0`). This function never
/// replaces the last error itself, so it can be retried with a larger buffer.
/// `buf` may be NULL only when `len` is 0 (to ask for the size).
///
/// # Safety
/// `buf` must be NULL or valid for writes of `len` bytes; `needed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_last_error_copy(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> envid_result {
    let run = || {
        with_last_error(|msg| {
            let bytes = msg.to_bytes_with_nul();
            if !needed.is_null() {
                // SAFETY: non-null; the caller promises it is writable.
                unsafe { needed.write(bytes.len()) };
            }
            if len == 0 {
                return if bytes.len() <= len {
                    envid_result::ENVID_OK
                } else {
                    envid_result::ENVID_BUFFER_TOO_SMALL
                };
            }
            if buf.is_null() {
                return envid_result::ENVID_NULL_PARAMETER;
            }
            let n = bytes.len().min(len);
            // SAFETY: buf is valid for `len` bytes and n <= len; the source is
            // our own CString, which cannot overlap the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n - 1) = 0;
            }
            if n < bytes.len() {
                envid_result::ENVID_BUFFER_TOO_SMALL
            } else {
                envid_result::ENVID_OK
            }
        })
    };
    // Not through `ffi_boundary`: a failure here must not overwrite the message.
    catch_unwind(AssertUnwindSafe(run)).unwrap_or(envid_result::ENVID_PANIC)
}

/// The name of a result code (`"ENVID_NOT_FOUND"`), or `"ENVID_UNKNOWN"` for
/// an integer that is not one. Static storage; never NULL; never freed.
/// Takes an `int` so any value is safe to pass.
#[no_mangle]
pub extern "C" fn envid_result_name(result: std::ffi::c_int) -> *const c_char {
    match envid_result::from_code(result) {
        Some(r) => r.name().as_ptr(),
        None => c"ENVID_UNKNOWN".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic::ffi_boundary;

    fn last() -> String {
        with_last_error(|m| m.to_str().unwrap().to_string())
    }

    #[test]
    fn messages_are_per_thread() {
        ffi_boundary(|| Err(Fail::invalid("main thread")));
        std::thread::spawn(|| {
            assert_eq!(last(), "");
            ffi_boundary(|| Err(Fail::invalid("other thread")));
            assert_eq!(last(), "other thread");
        })
        .join()
        .unwrap();
        assert_eq!(last(), "main thread");
    }

    #[test]
    fn codes_round_trip() {
        for (i, r) in envid_result::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(envid_result::from_code(i as i32), Some(*r));
        }
        assert_eq!(envid_result::from_code(-1), None);
        assert_eq!(
            envid_result::from_code(envid_result::ALL.len() as i32),
            None
        );
    }
}
