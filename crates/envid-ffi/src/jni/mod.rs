//! The JVM binding: native methods of `io.envid.Native` (Java sources under
//! `java/` at the repository root), on jni 0.22.
//!
//! One file per Java class that calls them: `environment.rs`
//! (`Environment`, with `LoadOptions`), `hostname_rules.rs`
//! (`HostnameRules`), `lookup_client.rs`, `replica.rs`, `verifier.rs`,
//! `registrar.rs` and `events.rs`; `host_record.rs` is the `HostRecord`
//! layout the lookup client, the replica and the events share,
//! `test_hooks.rs` the natives of the `test-hooks` feature. This file
//! holds what they share.
//!
//! Every method runs its body in `jni_boundary` (jni's
//! `EnvUnowned::with_env`, which catches panics, resolved with
//! `ThrowEnvid`): an envid failure or a panic becomes an
//! `io.envid.EnvidException(int code, String message)` carrying the same
//! code as the C API's `envid_result`; nothing unwinds into the JVM.
//!
//! Handles are the addresses of the C API's objects, passed to Java as
//! `long`s (`into_handle`). The Java classes own them and free them
//! exactly once, through the C API's `*_free`: environments and rules by a
//! `Cleaner`, clients by `close()` (or their cleaner) once no call is in
//! progress; the process-wide environment's handle is never freed.
//!
//! A Java `Environment` crosses JNI once when it is made (`snapshot`: the
//! JSON, every field and the labels as one `String[]`) and keeps the values
//! in Java fields, so its getters cost a field read, not a JNI call.

mod environment;
mod events;
mod host_record;
mod hostname_rules;
mod lookup_client;
mod registrar;
mod replica;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod verifier;

use std::any::Any;
use std::time::Duration;

use jni::errors::ErrorPolicy;
use jni::objects::{JLongArray, JObject, JObjectArray, JString, JThrowable, JValue};
use jni::sys::{jint, jlong};
use jni::{jni_sig, jni_str, Env, EnvUnowned};

use crate::error::{envid_result, Fail};
use crate::options::envid_lookup_options;
use crate::panic::panic_message;

/// A failure inside a native method.
enum JniFail {
    /// An envid failure, thrown as `EnvidException` with its code.
    Envid(Fail),
    /// A JNI call failed (usually: a Java exception is already pending).
    Jni(jni::errors::Error),
}

impl From<jni::errors::Error> for JniFail {
    fn from(e: jni::errors::Error) -> Self {
        JniFail::Jni(e)
    }
}

impl From<Fail> for JniFail {
    fn from(f: Fail) -> Self {
        JniFail::Envid(f)
    }
}

impl From<envid::LoadError> for JniFail {
    fn from(e: envid::LoadError) -> Self {
        JniFail::Envid(e.into())
    }
}

type JResult<T> = Result<T, JniFail>;

/// A new (not thrown) `io.envid.EnvidException`.
fn new_envid_exception<'local>(
    env: &mut Env<'local>,
    code: envid_result,
    message: &str,
) -> jni::errors::Result<JObject<'local>> {
    let class = env.find_class(jni_str!("io/envid/EnvidException"))?;
    let msg = env.new_string(message)?;
    let ex = env.new_object(
        &class,
        jni_sig!("(ILjava/lang/String;)V"),
        &[JValue::Int(code as jint), JValue::Object(&msg)],
    )?;
    env.delete_local_ref(class);
    env.delete_local_ref(msg);
    Ok(ex)
}

/// Throws `io.envid.EnvidException(code, message)`.
fn throw_envid(env: &mut Env<'_>, code: envid_result, message: &str) -> jni::errors::Result<()> {
    let ex = new_envid_exception(env, code, message)?;
    let ex: JThrowable = env.cast_local::<JThrowable>(ex)?;
    // `throw` reports success as Err(JavaException): the exception is now pending.
    match env.throw(ex) {
        Ok(()) | Err(jni::errors::Error::JavaException) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The error policy of every native method: envid failures and panics become
/// `EnvidException`; a Java exception already pending (thrown by a JNI call
/// on the way) is left to propagate as it is.
struct ThrowEnvid;

impl<T: Default> ErrorPolicy<T, JniFail> for ThrowEnvid {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        err: JniFail,
    ) -> jni::errors::Result<T> {
        if env.exception_check() {
            return Ok(T::default());
        }
        match err {
            JniFail::Envid(f) => throw_envid(env, f.code, &f.message)?,
            JniFail::Jni(e) => {
                throw_envid(env, envid_result::ENVID_INTERNAL, &format!("JNI: {e}"))?
            }
        }
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        payload: Box<dyn Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        let msg = format!("envid panicked: {}", panic_message(payload));
        if env.exception_check() {
            env.exception_clear();
        }
        throw_envid(env, envid_result::ENVID_PANIC, &msg)?;
        Ok(T::default())
    }
}

/// The boundary of every native method: runs `f` in jni's
/// `EnvUnowned::with_env`, which catches panics, and resolves the outcome
/// with [`ThrowEnvid`], so a failure or a panic reaches Java as an
/// `EnvidException` (the method then returns `T::default()`, which Java
/// never sees) and nothing unwinds into the JVM.
fn jni_boundary<'local, T: Default + 'local>(
    unowned: &mut EnvUnowned<'local>,
    f: impl FnOnce(&mut Env<'local>) -> JResult<T>,
) -> T {
    unowned.with_env(f).resolve::<ThrowEnvid>()
}

/// Hands a new native object to Java as a handle (its address as a
/// `long`); the Java owner frees it exactly once through the matching
/// `*Free` native.
fn into_handle<T>(value: T) -> jlong {
    Box::into_raw(Box::new(value)) as usize as jlong
}

/// The pointer behind a handle, for the C API's `*_free` functions (0 is
/// NULL, which they ignore).
fn handle_ptr<T>(handle: jlong) -> *mut T {
    handle as usize as *mut T
}

/// Borrows the object behind a handle; 0 is `NULL_PARAMETER` naming `what`.
///
/// # Safety
/// `handle` must be 0 or the address of a live `T` that stays alive for the
/// call: one from [`into_handle`] that its Java owner frees only after its
/// last call, or one never freed (the process-wide environment).
unsafe fn borrow_handle<'a, T>(handle: jlong, what: &'static str) -> JResult<&'a T> {
    // SAFETY: 0 or live for the call, by the caller's contract.
    unsafe { handle_ptr::<T>(handle).cast_const().as_ref() }.ok_or_else(|| Fail::null(what).into())
}

/// The connection options every client's constructor gets from its Java
/// builder (`ServiceBuilder`): endpoints, token, and the connect and
/// per-phase timeouts (≤ 0 keeps the default).
fn connection_options(
    env: &mut Env<'_>,
    endpoints: &JObjectArray<'_, JString<'_>>,
    token: &JString<'_>,
    connect_ms: jlong,
    per_phase_ms: jlong,
) -> JResult<envid_lookup_options> {
    let urls = string_array_arg(env, endpoints, "endpoints", "endpoint")?;
    let token = opt_string_arg(env, token)?;
    Ok(envid_lookup_options::from_parts(
        urls,
        token,
        millis(connect_ms),
        millis(per_phase_ms),
    ))
}

/// A `long[]` from Rust values (the stats natives).
fn long_array<'local>(env: &mut Env<'local>, values: &[jlong]) -> JResult<JLongArray<'local>> {
    let arr = JLongArray::new(env, values.len())?;
    arr.set_region(env, 0, values)?;
    Ok(arr)
}

/// A Java string argument that must not be null.
fn string_arg(env: &Env<'_>, s: &JString<'_>, what: &'static str) -> JResult<String> {
    if s.is_null() {
        return Err(Fail::null(what).into());
    }
    Ok(s.try_to_string(env)?)
}

/// The strings of a Java `String[]`; a null array or element is `NULL_PARAMETER`.
fn string_array_arg(
    env: &mut Env<'_>,
    array: &JObjectArray<'_, JString<'_>>,
    what: &'static str,
    element: &'static str,
) -> JResult<Vec<String>> {
    if array.is_null() {
        return Err(Fail::null(what).into());
    }
    let mut out = Vec::new();
    for i in 0..array.len(env)? {
        let s = array.get_element(env, i)?;
        out.push(string_arg(env, &s, element)?);
        env.delete_local_ref(s);
    }
    Ok(out)
}

/// A Java string that may be null (then `None`).
fn opt_string_arg(env: &Env<'_>, s: &JString<'_>) -> JResult<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    Ok(Some(s.try_to_string(env)?))
}

/// A path argument that may be null (then `None`) but not empty.
fn opt_path(
    env: &Env<'_>,
    s: &JString<'_>,
    what: &'static str,
) -> JResult<Option<std::path::PathBuf>> {
    let Some(v) = opt_string_arg(env, s)? else {
        return Ok(None);
    };
    if v.is_empty() {
        return Err(Fail::invalid(format!("{what} must not be empty")).into());
    }
    Ok(Some(v.into()))
}

/// A `String[]` from Rust strings (`None` → Java null element).
fn string_array<'local>(
    env: &mut Env<'local>,
    items: &[Option<&str>],
) -> JResult<JObjectArray<'local, JString<'local>>> {
    let arr = JObjectArray::<JString>::new(env, items.len(), JString::null())?;
    for (i, item) in items.iter().enumerate() {
        if let Some(s) = item {
            let js = env.new_string(s)?;
            arr.set_element(env, i, &js)?;
            env.delete_local_ref(js);
        }
    }
    Ok(arr)
}

/// A timeout from Java, in milliseconds; ≤ 0 means "keep the default"
/// (`Native.millis` sends 0 for an unset duration).
fn millis(v: jlong) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v as u64))
}
