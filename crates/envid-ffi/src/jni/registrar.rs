//! Natives of `io.envid.Registrar`.

use std::time::Duration;

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::{jboolean, jlong};
use jni::EnvUnowned;

use super::environment::env_handle;
use super::{millis, opt_string_arg, string_arg, string_array_arg, JResult, ThrowEnvid};
use crate::error::Fail;
use crate::options::envid_lookup_options;
use crate::registrar::envid_registrar;

/// Borrows the registrar behind a handle.
fn registrar_handle<'a>(h: jlong) -> JResult<&'a envid_registrar> {
    let p = h as usize as *const envid_registrar;
    // SAFETY: handles come from `registrarNew` and are freed by the Java
    // Registrar only after every call on it returned (it holds a lock).
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("registrar handle (closed?)").into())
}

/// `static native long registrarNew(String[] endpoints, String token, long
/// connectMs, long perPhaseMs)`: values <= 0 keep the defaults.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarNew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    endpoints: JObjectArray<'local, JString<'local>>,
    token: JString<'local>,
    connect_ms: jlong,
    per_phase_ms: jlong,
) -> jlong {
    unowned
        .with_env(|env| -> JResult<jlong> {
            let urls = string_array_arg(env, &endpoints, "endpoints", "endpoint")?;
            let token = opt_string_arg(env, &token)?;
            let opts = envid_lookup_options::from_parts(
                urls,
                token,
                millis(connect_ms),
                millis(per_phase_ms),
                None,
                None,
                None,
                None,
            );
            Ok(Box::into_raw(Box::new(envid_registrar::new(&opts)?)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void registrarFree(long handle)`; 0 is ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0 or an unfreed handle from registrarNew, no longer in use.
            unsafe { crate::registrar::envid_registrar_free(handle as usize as *mut _) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void registrarRegister(long handle, long environment,
/// long leaseSeconds, String ip)`: `ip` null: the environment's IP.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarRegister<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    environment: jlong,
    lease_seconds: jlong,
    ip: JString<'local>,
) {
    unowned
        .with_env(|env| -> JResult<()> {
            let r = registrar_handle(handle)?;
            let e = env_handle(environment)?;
            let ip = opt_string_arg(env, &ip)?;
            let lease = u64::try_from(lease_seconds)
                .map_err(|_| Fail::invalid("the lease must not be negative".to_string()))?;
            Ok(r.register(e, Duration::from_secs(lease), ip.as_deref())?)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native boolean registrarRenew(long handle, String ip)`: false
/// when the service no longer knows the IP.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarRenew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ip: JString<'local>,
) -> jboolean {
    unowned
        .with_env(|env| -> JResult<jboolean> {
            let r = registrar_handle(handle)?;
            let ip = string_arg(env, &ip, "ip")?;
            Ok(r.renew(&ip)?)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void registrarDeregister(long handle, String ip)`.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarDeregister<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ip: JString<'local>,
) {
    unowned
        .with_env(|env| -> JResult<()> {
            let r = registrar_handle(handle)?;
            let ip = string_arg(env, &ip, "ip")?;
            Ok(r.deregister(&ip)?)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native String registrarIdentity(long handle)`: the newest signed
/// identity, or null when the service gave none.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarIdentity<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    unowned
        .with_env(|env| -> JResult<JString<'local>> {
            let r = registrar_handle(handle)?;
            match r.identity() {
                Some((token, _)) => Ok(env.new_string(token)?),
                None => Ok(JString::default()),
            }
        })
        .resolve::<ThrowEnvid>()
}
