//! Natives of `io.envid.LookupClient`.

use jni::objects::{JClass, JLongArray, JObject, JObjectArray, JString};
use jni::sys::{jint, jlong};
use jni::EnvUnowned;

use super::host_record::{optional_record, record_array};
use super::{
    borrow_handle, connection_options, handle_ptr, into_handle, jni_boundary, long_array, millis,
    new_envid_exception, string_arg, string_array_arg, JResult,
};
use crate::error::{envid_result, Fail};
use crate::lookup::{envid_lookup_client, envid_lookup_client_free};

/// Borrows the lookup client behind a handle.
fn client_handle<'a>(h: jlong) -> JResult<&'a envid_lookup_client> {
    // SAFETY: handles come from `lookupNew` and are freed by the Java
    // LookupClient only after every call on it returned (it holds a lock).
    unsafe { borrow_handle(h, "lookup client handle (closed?)") }
}

/// `static native long lookupNew(String[] endpoints, String token, long
/// connectMs, long perPhaseMs, long ttlMs, long negativeTtlMs, long
/// maxStaleMs, int maxRetries)`: values ≤ 0 (retries < 0) keep the defaults.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_io_envid_Native_lookupNew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    endpoints: JObjectArray<'local, JString<'local>>,
    token: JString<'local>,
    connect_ms: jlong,
    per_phase_ms: jlong,
    ttl_ms: jlong,
    negative_ttl_ms: jlong,
    max_stale_ms: jlong,
    max_retries: jint,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let opts = connection_options(env, &endpoints, &token, connect_ms, per_phase_ms)?
            .with_cache_policy(
                millis(ttl_ms),
                millis(negative_ttl_ms),
                millis(max_stale_ms),
                u32::try_from(max_retries).ok(),
            );
        Ok(into_handle(envid_lookup_client::new(&opts)?))
    })
}

/// `static native void lookupFree(long handle)`; 0 is ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookupFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0 or an unfreed handle from lookupNew, no longer in use.
        unsafe { envid_lookup_client_free(handle_ptr(handle)) };
        Ok(())
    })
}

/// `static native String[] lookup(long handle, String ip)`: the record, or
/// null when the service does not know the IP.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookup<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ip: JString<'local>,
) -> JObjectArray<'local, JString<'local>> {
    jni_boundary(&mut unowned, |env| {
        let c = client_handle(handle)?;
        let ip = string_arg(env, &ip, "ip")?;
        optional_record(env, c.lookup(&ip)?)
    })
}

/// `static native Object[] lookupMany(long handle, String[] ips)`: for each
/// IP a record `String[]` or null (unknown); any failed IP throws
/// `LOOKUP_FAILED` naming how many failed and the first failure.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookupMany<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ips: JObjectArray<'local, JString<'local>>,
) -> JObjectArray<'local, JObjectArray<'local, JString<'local>>> {
    jni_boundary(&mut unowned, |env| {
        let c = client_handle(handle)?;
        let texts = string_array_arg(env, &ips, "ips", "ip")?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let answers = c.lookup_many(&refs)?;
        let failed: Vec<(&str, &Fail)> = refs
            .iter()
            .zip(&answers)
            .filter_map(|(ip, a)| a.as_ref().err().map(|f| (*ip, f)))
            .collect();
        if let Some((ip, f)) = failed.first() {
            return Err(Fail::new(
                envid_result::ENVID_LOOKUP_FAILED,
                format!(
                    "{} of {} lookups failed; {ip}: {}",
                    failed.len(),
                    refs.len(),
                    f.message
                ),
            )
            .into());
        }
        let out = JObjectArray::<JObjectArray<JString>>::new(
            env,
            answers.len(),
            JObjectArray::<JString>::default(),
        )?;
        for (i, a) in answers.iter().enumerate() {
            if let Ok(Some(r)) = a {
                let arr = record_array(env, r)?;
                out.set_element(env, i, &arr)?;
                env.delete_local_ref(arr);
            }
        }
        Ok(out)
    })
}

/// `static native Object[] lookupEach(long handle, String[] ips)`: for each
/// IP a record `String[]`, null (unknown), or the `EnvidException` of its
/// failure (`INVALID_INPUT` for a malformed IP, `LOOKUP_FAILED` otherwise),
/// returned, not thrown.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookupEach<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ips: JObjectArray<'local, JString<'local>>,
) -> JObjectArray<'local, JObject<'local>> {
    jni_boundary(&mut unowned, |env| {
        let c = client_handle(handle)?;
        let texts = string_array_arg(env, &ips, "ips", "ip")?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let answers = c.lookup_each(&refs);
        let out = JObjectArray::<JObject>::new(env, answers.len(), JObject::null())?;
        for (i, a) in answers.iter().enumerate() {
            let element = match a {
                Ok(None) => continue,
                Ok(Some(r)) => JObject::from(record_array(env, r)?),
                Err(f) => new_envid_exception(env, f.code, &f.message)?,
            };
            out.set_element(env, i, &element)?;
            env.delete_local_ref(element);
        }
        Ok(out)
    })
}

/// `static native long[] lookupStats(long handle)`: hits, misses, stale,
/// requests, errors.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookupStats<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JLongArray<'local> {
    jni_boundary(&mut unowned, |env| {
        let s = client_handle(handle)?.stats();
        let v = [s.hits, s.misses, s.stale, s.requests, s.errors].map(|x| x as jlong);
        long_array(env, &v)
    })
}
