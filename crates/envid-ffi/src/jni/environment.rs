//! Natives of `io.envid.Environment` (and `LoadOptions`, which it passes
//! to `load`).

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned};

use super::{
    borrow_handle, handle_ptr, into_handle, jni_boundary, opt_path, string_array, string_array_arg,
    JResult,
};
use crate::environment::{envid_environment, envid_environment_free, jvm_current};
use crate::error::{envid_result, Fail};
use crate::field::{envid_field, ENVID_FIELD_COUNT};
use crate::load_options::envid_load_options;

/// Borrows the environment behind a handle.
pub(super) fn env_handle<'a>(h: jlong) -> JResult<&'a envid_environment> {
    // SAFETY: handles come from `current`/`load` below and are freed only
    // by the owning Java object's cleaner, after its last use.
    unsafe { borrow_handle(h, "environment handle") }
}

/// `[key, value, key, value, …]` from Java into pairs.
fn property_pairs(
    env: &mut Env<'_>,
    array: &JObjectArray<'_, JString<'_>>,
) -> JResult<Vec<(String, String)>> {
    let flat = string_array_arg(env, array, "properties", "property")?;
    Ok(flat
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect())
}

/// `static native long current(String[] properties)`: the JVM's
/// process-wide environment's handle; `properties` are the JVM's `envid.*`
/// system properties as `[key, value, …]`.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_current<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    properties: JObjectArray<'local, JString<'local>>,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let properties = property_pairs(env, &properties)?;
        let c = jvm_current(properties)?;
        // Never freed: `freeEnvironment` ignores it, as `envid_environment_free` does.
        Ok(c as *const envid_environment as usize as jlong)
    })
}

/// `static native long load(String descriptor, String root, String rulesFile,
/// boolean strict, boolean envVars, String[] properties)`: a fresh
/// environment's handle, owned by the caller (free with `freeEnvironment`).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_load<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    descriptor: JString<'local>,
    root: JString<'local>,
    rules_file: JString<'local>,
    strict: jboolean,
    env_vars: jboolean,
    properties: JObjectArray<'local, JString<'local>>,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let properties = property_pairs(env, &properties)?;
        let opts = envid_load_options::from_parts(
            opt_path(env, &descriptor, "descriptor")?,
            opt_path(env, &root, "root")?,
            opt_path(env, &rules_file, "rulesFile")?,
            strict,
            env_vars,
            properties,
        );
        Ok(into_handle(envid_environment::owned(opts.load()?)))
    })
}

/// `static native void freeEnvironment(long handle)`: frees a handle from
/// `load`; 0 and the process-wide handle are ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_freeEnvironment<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0, the process-wide handle, or an unfreed handle from `load`.
        unsafe { envid_environment_free(handle_ptr::<envid_environment>(handle)) };
        Ok(())
    })
}

/// `static native String field(long handle, int field)`: one field, or null
/// when it has no value.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_field<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    field: jint,
) -> JString<'local> {
    jni_boundary(&mut unowned, |env| {
        let e = env_handle(handle)?;
        let f = envid_field::from_code(field)
            .ok_or_else(|| Fail::invalid(format!("{field} is not a field number")))?;
        match e.field(f) {
            Ok(c) => {
                // Precomputed UTF-8 without NUL; NewStringUTF wants
                // modified UTF-8, which differs only for NUL and
                // supplementary characters, so convert through &str.
                let s = c.to_str().map_err(|_| Fail::invalid("not UTF-8"))?;
                Ok(env.new_string(s)?)
            }
            Err(f) if f.code == envid_result::ENVID_NOT_FOUND => Ok(JString::null()),
            Err(f) => Err(f.into()),
        }
    })
}

/// `static native String[] snapshot(long handle)`: everything the Java
/// `Environment` keeps, in one call, so its getters never cross JNI again:
/// `{json, field 0, …, field 20, label key, label value, …}` — the JSON
/// without token or sources, the fields in `envid_field` order (null when
/// absent), then the labels in key order.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_snapshot<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JObjectArray<'local, JString<'local>> {
    jni_boundary(&mut unowned, |env| {
        let e = env_handle(handle)?;
        let json = e.to_json(false, false)?;
        let mut items: Vec<Option<&str>> = Vec::with_capacity(1 + ENVID_FIELD_COUNT);
        items.push(Some(&json));
        for code in 0..ENVID_FIELD_COUNT as jint {
            let f = envid_field::from_code(code).expect("every code below the count");
            match e.field(f) {
                Ok(c) => items
                    .push(Some(c.to_str().map_err(|_| {
                        Fail::invalid(format!("{} is not UTF-8", f.name()))
                    })?)),
                Err(fail) if fail.code == envid_result::ENVID_NOT_FOUND => items.push(None),
                Err(fail) => return Err(fail.into()),
            }
        }
        for (k, v) in e.labels() {
            items.push(Some(k));
            items.push(Some(v));
        }
        string_array(env, &items)
    })
}

/// `static native String toJson(long handle, boolean secrets, boolean explain)`.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_toJson<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    secrets: jboolean,
    explain: jboolean,
) -> JString<'local> {
    jni_boundary(&mut unowned, |env| {
        let e = env_handle(handle)?;
        Ok(env.new_string(e.to_json(secrets, explain)?)?)
    })
}
