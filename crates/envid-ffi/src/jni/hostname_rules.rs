//! Natives of `io.envid.HostnameRules`.

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::jlong;
use jni::EnvUnowned;

use super::{
    borrow_handle, handle_ptr, into_handle, jni_boundary, opt_path, string_arg, string_array,
    JResult,
};
use crate::error::{envid_result, Fail};
use crate::rules::{envid_rules, envid_rules_free};

/// Borrows the rules behind a handle.
fn rules_handle<'a>(h: jlong) -> JResult<&'a envid_rules> {
    // SAFETY: handles come from `rulesBuiltin`/`rulesLoad` and are freed
    // only by the owning Java object's cleaner, after its last use.
    unsafe { borrow_handle(h, "rules handle") }
}

/// `static native long rulesBuiltin()`: the built-in hostname rules (owned).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_rulesBuiltin<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> jlong {
    jni_boundary(&mut unowned, |_env| Ok(into_handle(envid_rules::builtin())))
}

/// `static native long rulesLoad(String path)`: rules from a file (owned).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_rulesLoad<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    path: JString<'local>,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let p = opt_path(env, &path, "path")?.ok_or_else(|| Fail::null("path"))?;
        Ok(into_handle(envid_rules::load(&p)?))
    })
}

/// `static native void freeRules(long handle)`; 0 is ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_freeRules<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0 or an unfreed handle from rulesBuiltin/rulesLoad.
        unsafe { envid_rules_free(handle_ptr(handle)) };
        Ok(())
    })
}

/// `static native String[] explain(long rules, String hostname)`: `{rule,
/// hostname, env, envDefaulted ("true"/"false"), envType, idc, app, biz}`,
/// or null when no rule matches.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_explain<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    hostname: JString<'local>,
) -> JObjectArray<'local, JString<'local>> {
    jni_boundary(&mut unowned, |env| {
        let r = rules_handle(handle)?;
        let h = string_arg(env, &hostname, "hostname")?;
        let m = match r.explain(&h) {
            Ok(m) => m,
            Err(f) if f.code == envid_result::ENVID_NOT_FOUND => return Ok(JObjectArray::default()),
            Err(f) => return Err(f.into()),
        };
        let defaulted = if m.env_defaulted { "true" } else { "false" };
        string_array(
            env,
            &[
                Some(&m.rule),
                Some(&m.hostname),
                Some(&m.env),
                Some(defaulted),
                Some(m.env_type.as_str()),
                m.idc.as_deref(),
                m.app.as_deref(),
                m.biz.as_deref(),
            ],
        )
    })
}
