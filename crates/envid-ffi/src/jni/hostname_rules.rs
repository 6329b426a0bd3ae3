//! Natives of `io.envid.HostnameRules`.

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::jlong;
use jni::EnvUnowned;

use super::{opt_path, string_arg, string_array, JResult, ThrowEnvid};
use crate::error::{envid_result, Fail};
use crate::rules::envid_rules;

/// Borrows the rules behind a handle.
fn rules_handle<'a>(h: jlong) -> JResult<&'a envid_rules> {
    let p = h as usize as *const envid_rules;
    // SAFETY: as for env_handle.
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("rules handle").into())
}

/// `static native long rulesBuiltin()`: the built-in hostname rules (owned).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_rulesBuiltin<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> jlong {
    unowned
        .with_env(|_env| -> JResult<jlong> {
            Ok(Box::into_raw(Box::new(envid_rules::builtin())) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native long rulesLoad(String path)`: rules from a file (owned).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_rulesLoad<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    path: JString<'local>,
) -> jlong {
    unowned
        .with_env(|env| -> JResult<jlong> {
            let p = opt_path(env, &path, "path")?.ok_or_else(|| Fail::null("path"))?;
            Ok(Box::into_raw(Box::new(envid_rules::load(&p)?)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void freeRules(long handle)`; 0 is ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_freeRules<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0 or an unfreed handle from rulesBuiltin/rulesLoad.
            unsafe { crate::rules::envid_rules_free(handle as usize as *mut envid_rules) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JString<'local>>> {
            let r = rules_handle(handle)?;
            let h = string_arg(env, &hostname, "hostname")?;
            let m = match r.explain(&h) {
                Ok(m) => m,
                Err(f) if f.code == envid_result::ENVID_NOT_FOUND => {
                    return Ok(JObjectArray::default())
                }
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
        .resolve::<ThrowEnvid>()
}
