//! Natives of `io.envid.Verifier` (the claims layout `io.envid.Claims`
//! reads).

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::jlong;
use jni::EnvUnowned;

use super::{
    borrow_handle, connection_options, handle_ptr, into_handle, jni_boundary, opt_string_arg,
    string_arg, string_array, JResult,
};
use crate::identity::{claims_to_json, envid_verifier, envid_verifier_free};

/// Borrows the verifier behind a handle.
fn verifier_handle<'a>(h: jlong) -> JResult<&'a envid_verifier> {
    // SAFETY: handles come from `verifierNew` and are freed by the Java
    // Verifier only after every call on it returned (it holds a lock).
    unsafe { borrow_handle(h, "verifier handle (closed?)") }
}

/// `static native long verifierNew(String[] endpoints, String token, long
/// connectMs, long perPhaseMs, String keysCacheFile, String audience,
/// String issuer)`: values <= 0 keep the defaults; null strings mean none
/// (audience null: `envid`; issuer null: any). Fetches the key set (or reads
/// the cache file) before returning.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_io_envid_Native_verifierNew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    endpoints: JObjectArray<'local, JString<'local>>,
    token: JString<'local>,
    connect_ms: jlong,
    per_phase_ms: jlong,
    cache_file: JString<'local>,
    audience: JString<'local>,
    issuer: JString<'local>,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let opts = connection_options(env, &endpoints, &token, connect_ms, per_phase_ms)?;
        let opts = opts.with_cache_file(opt_string_arg(env, &cache_file)?);
        let audience = opt_string_arg(env, &audience)?;
        let issuer = opt_string_arg(env, &issuer)?;
        let v = envid_verifier::new(&opts, audience.as_deref(), issuer.as_deref())?;
        Ok(into_handle(v))
    })
}

/// `static native void verifierFree(long handle)`; 0 is ignored. Stops the
/// refresh thread.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_verifierFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0 or an unfreed handle from verifierNew, no longer in use.
        unsafe { envid_verifier_free(handle_ptr(handle)) };
        Ok(())
    })
}

/// `static native String[] verifierVerify(long handle, String token)`: the
/// claims as `[json, iss, sub, aud, iat, nbf, exp, jti, app, env, env_type,
/// idc, ip, sub_env]`, or an `EnvidException` with an `IDENTITY_*` kind.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_verifierVerify<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    token: JString<'local>,
) -> JObjectArray<'local, JString<'local>> {
    jni_boundary(&mut unowned, |env| {
        let v = verifier_handle(handle)?;
        let token = string_arg(env, &token, "token")?;
        let c = v.verify(&token)?;
        let json = claims_to_json(&c)?;
        let (iat, nbf, exp) = (c.iat.to_string(), c.nbf.to_string(), c.exp.to_string());
        let env_type = c.env_type.as_ref().map(|t| t.as_str().to_string());
        let ip = c.ip.map(|i| i.to_string());
        let aud = c.aud.to_string();
        string_array(
            env,
            &[
                Some(&json),
                Some(&c.iss),
                Some(&c.sub),
                Some(&aud),
                Some(&iat),
                Some(&nbf),
                Some(&exp),
                Some(&c.jti),
                Some(&c.app),
                Some(&c.env),
                env_type.as_deref(),
                Some(&c.idc),
                ip.as_deref(),
                c.sub_env.as_deref(),
            ],
        )
    })
}
