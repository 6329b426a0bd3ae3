//! Natives of `io.envid.Registrar`.

use std::time::Duration;

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::{jboolean, jlong};
use jni::EnvUnowned;

use super::environment::env_handle;
use super::{
    borrow_handle, connection_options, handle_ptr, into_handle, jni_boundary, opt_string_arg,
    string_arg, JResult,
};
use crate::error::Fail;
use crate::registrar::{envid_registrar, envid_registrar_free};

/// Borrows the registrar behind a handle.
fn registrar_handle<'a>(h: jlong) -> JResult<&'a envid_registrar> {
    // SAFETY: handles come from `registrarNew` and are freed by the Java
    // Registrar only after every call on it returned (it holds a lock).
    unsafe { borrow_handle(h, "registrar handle (closed?)") }
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
    jni_boundary(&mut unowned, |env| {
        let opts = connection_options(env, &endpoints, &token, connect_ms, per_phase_ms)?;
        Ok(into_handle(envid_registrar::new(&opts)?))
    })
}

/// `static native void registrarFree(long handle)`; 0 is ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0 or an unfreed handle from registrarNew, no longer in use.
        unsafe { envid_registrar_free(handle_ptr(handle)) };
        Ok(())
    })
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
    jni_boundary(&mut unowned, |env| {
        let r = registrar_handle(handle)?;
        let e = env_handle(environment)?;
        let ip = opt_string_arg(env, &ip)?;
        let lease = u64::try_from(lease_seconds)
            .map_err(|_| Fail::invalid("the lease must not be negative".to_string()))?;
        Ok(r.register(e, Duration::from_secs(lease), ip.as_deref())?)
    })
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
    jni_boundary(&mut unowned, |env| {
        let r = registrar_handle(handle)?;
        let ip = string_arg(env, &ip, "ip")?;
        Ok(r.renew(&ip)?)
    })
}

/// `static native void registrarDeregister(long handle, String ip)`.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarDeregister<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ip: JString<'local>,
) {
    jni_boundary(&mut unowned, |env| {
        let r = registrar_handle(handle)?;
        let ip = string_arg(env, &ip, "ip")?;
        Ok(r.deregister(&ip)?)
    })
}

/// `static native String registrarIdentity(long handle)`: the newest signed
/// identity, or null when the service gave none.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_registrarIdentity<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    jni_boundary(&mut unowned, |env| {
        let r = registrar_handle(handle)?;
        match r.identity() {
            Some((token, _)) => Ok(env.new_string(token)?),
            None => Ok(JString::default()),
        }
    })
}
