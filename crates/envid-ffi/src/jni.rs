//! The JVM binding: native methods of `io.envid.Native` (Java sources under
//! `java/` at the repository root), on jni 0.22.
//!
//! Every method runs inside `EnvUnowned::with_env`, which catches panics, and
//! resolves its outcome with [`ThrowEnvid`]: an envid failure or a panic
//! becomes an `io.envid.EnvidException(int code, String message)` carrying
//! the same code as the C API's `envid_result`; nothing unwinds into the JVM.
//!
//! Handles are the addresses of the C API's objects (`envid_environment`,
//! `envid_rules`), passed to Java as `long`s. The Java classes own them and
//! free them exactly once (through a `Cleaner`); the process-wide
//! environment's handle is never freed; a lookup client's handle is freed
//! by `LookupClient.close()` (or its cleaner).
//!
//! A Java `Environment` crosses JNI once when it is made (`snapshot`: the
//! JSON, every field and the labels as one `String[]`) and keeps the values
//! in Java fields, so its getters cost a field read, not a JNI call.

use std::any::Any;
use std::sync::OnceLock;
use std::time::Duration;

use envid::protocol::HostRecord;
use jni::errors::ErrorPolicy;
use jni::objects::{JClass, JLongArray, JObject, JObjectArray, JString, JThrowable, JValue};
use jni::sys::{jboolean, jint, jlong};
use jni::{jni_sig, jni_str, Env, EnvUnowned};

use crate::environment::envid_environment;
use crate::error::{envid_result, Fail};
use crate::field::{envid_field, ENVID_FIELD_COUNT};
use crate::identity::envid_verifier;
use crate::load_options::envid_load_options;
use crate::lookup::envid_lookup_client;
use crate::options::envid_lookup_options;
use crate::panic::panic_message;
use crate::registrar::envid_registrar;
use crate::replica::envid_replica;
use crate::rules::envid_rules;

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

impl From<envid::Error> for JniFail {
    fn from(e: envid::Error) -> Self {
        JniFail::Envid(e.into())
    }
}

type JResult<T> = Result<T, JniFail>;

/// Throws `io.envid.EnvidException(code, message)`.
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

/// Borrows the environment behind a handle.
fn env_handle<'a>(h: jlong) -> JResult<&'a envid_environment> {
    let p = h as usize as *const envid_environment;
    // SAFETY: handles come from `current`/`load` below and are freed only
    // by the owning Java object's cleaner, after its last use.
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("environment handle").into())
}

/// Borrows the rules behind a handle.
fn rules_handle<'a>(h: jlong) -> JResult<&'a envid_rules> {
    let p = h as usize as *const envid_rules;
    // SAFETY: as for env_handle.
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("rules handle").into())
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
    unowned
        .with_env(|env| -> JResult<jlong> {
            let properties = property_pairs(env, &properties)?;
            let c = crate::environment::jvm_current(properties)?;
            Ok(c as *const envid_environment as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<jlong> {
            let properties = property_pairs(env, &properties)?;
            let opts = envid_load_options::from_parts(
                opt_path(env, &descriptor, "descriptor")?,
                opt_path(env, &root, "root")?,
                opt_path(env, &rules_file, "rulesFile")?,
                strict,
                env_vars,
                properties,
            );
            let e = opts.load()?;
            Ok(Box::into_raw(Box::new(e)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void freeEnvironment(long handle)`: frees a handle from
/// `load`; 0 and the process-wide handle are ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_freeEnvironment<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0, the process-wide handle, or an unfreed handle from `load`.
            unsafe { crate::environment::envid_environment_free(handle as usize as *const _) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JString<'local>> {
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
        .resolve::<ThrowEnvid>()
}

/// `static native String[] snapshot(long handle)`: everything the Java
/// `Environment` keeps, in one call, so its getters never cross JNI again:
/// `{json, field 0, …, field 19, label key, label value, …}` — the JSON
/// without token or sources, the fields in `envid_field` order (null when
/// absent), then the labels in key order.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_snapshot<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JObjectArray<'local, JString<'local>> {
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JString<'local>>> {
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
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JString<'local>> {
            let e = env_handle(handle)?;
            Ok(env.new_string(e.to_json(secrets, explain)?)?)
        })
        .resolve::<ThrowEnvid>()
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

/// `static native void panicForTest()`: panics inside a native method, so the
/// Java tests can check that a panic becomes an `EnvidException` of kind
/// `PANIC` and the JVM lives on. Not part of the public Java API: compiled
/// only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_panicForTest<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
) {
    unowned
        .with_env(|_env| -> JResult<()> { panic!("deliberate panic for the test suite") })
        .resolve::<ThrowEnvid>()
}

// ---- Lookup client -------------------------------------------------------

/// Borrows the lookup client behind a handle.
fn client_handle<'a>(h: jlong) -> JResult<&'a envid_lookup_client> {
    let p = h as usize as *const envid_lookup_client;
    // SAFETY: handles come from `lookupNew` and are freed by the Java
    // LookupClient only after every call on it returned (it holds a lock).
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("lookup client handle (closed?)").into())
}

fn millis(v: jlong) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v as u64))
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
    unowned
        .with_env(|env| -> JResult<jlong> {
            let urls = string_array_arg(env, &endpoints, "endpoints", "endpoint")?;
            let token = opt_string_arg(env, &token)?;
            let opts = envid_lookup_options::from_parts(
                urls,
                token,
                millis(connect_ms),
                millis(per_phase_ms),
                millis(ttl_ms),
                millis(negative_ttl_ms),
                millis(max_stale_ms),
                u32::try_from(max_retries).ok(),
            );
            Ok(Box::into_raw(Box::new(envid_lookup_client::new(&opts)?)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void lookupFree(long handle)`; 0 is ignored.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookupFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0 or an unfreed handle from lookupNew, no longer in use.
            unsafe { crate::lookup::envid_lookup_client_free(handle as usize as *mut _) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
}

fn builtin_rules() -> &'static envid::rules::Rules {
    static RULES: OnceLock<envid::rules::Rules> = OnceLock::new();
    RULES.get_or_init(envid::rules::Rules::builtin)
}

/// A host record as the `String[]` layout of `io.envid.HostRecord`.
fn record_array<'local>(
    env: &mut Env<'local>,
    r: &HostRecord,
) -> JResult<JObjectArray<'local, JString<'local>>> {
    let json = serde_json::to_string(r)
        .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))?;
    let ip = r.ip.map(|i| i.to_string());
    let cidr = r.cidr.map(|c| c.to_string());
    let env_type = r
        .env_type
        .clone()
        .unwrap_or_else(|| builtin_rules().env_type_of(&r.env));
    let platform = r.platform.map(|p| p.as_str());
    let c = r.container.as_ref();
    let rel = r.release.as_ref();
    let batch = rel.and_then(|r| r.batch).map(|b| b.to_string());
    let k = r.k8s.as_ref();
    let mut items: Vec<Option<&str>> = vec![
        Some(&json),
        ip.as_deref(),
        cidr.as_deref(),
        r.app.as_deref(),
        Some(&r.env),
        Some(env_type.as_str()),
        r.sub_env.as_deref(),
        Some(&r.idc),
        platform,
        r.hostname.as_deref(),
        c.and_then(|c| c.runtime.as_ref()).map(|r| r.as_str()),
        c.and_then(|c| c.id.as_deref()),
        rel.and_then(|r| r.id.as_deref()),
        rel.and_then(|r| r.version.as_deref()),
        batch.as_deref(),
        rel.and_then(|r| r.deployed_at.as_deref()),
        k.and_then(|k| k.cluster.as_deref()),
        k.and_then(|k| k.namespace.as_deref()),
        k.and_then(|k| k.pod.as_deref()),
        k.and_then(|k| k.node.as_deref()),
        k.and_then(|k| k.workload.as_deref()),
        k.and_then(|k| k.pod_uid.as_deref()),
    ];
    for (key, v) in &r.labels {
        items.push(Some(key));
        items.push(Some(v));
    }
    string_array(env, &items)
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
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JString<'local>>> {
            let c = client_handle(handle)?;
            let ip = string_arg(env, &ip, "ip")?;
            match c.lookup(&ip)? {
                Some(r) => record_array(env, &r),
                None => Ok(JObjectArray::default()),
            }
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(
            |env| -> JResult<JObjectArray<'local, JObjectArray<'local, JString<'local>>>> {
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
            },
        )
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JObject<'local>>> {
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
        .resolve::<ThrowEnvid>()
}

/// `static native long[] lookupStats(long handle)`: hits, misses, stale,
/// requests, errors.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_lookupStats<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JLongArray<'local> {
    unowned
        .with_env(|env| -> JResult<JLongArray<'local>> {
            let s = client_handle(handle)?.stats();
            let v = [s.hits, s.misses, s.stale, s.requests, s.errors].map(|x| x as jlong);
            let arr = JLongArray::new(env, v.len())?;
            arr.set_region(env, 0, &v)?;
            Ok(arr)
        })
        .resolve::<ThrowEnvid>()
}

// ---- Replica ---------------------------------------------------------------

/// Borrows the replica behind a handle.
fn replica_handle<'a>(h: jlong) -> JResult<&'a envid_replica> {
    let p = h as usize as *const envid_replica;
    // SAFETY: handles come from `replicaNew` and are freed by the Java
    // Replica only after every call on it returned (it holds a lock).
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("replica handle (closed?)").into())
}

/// `static native long replicaNew(String[] endpoints, String token, long
/// connectMs, long perPhaseMs, String cacheFile)`: values ≤ 0 keep the
/// defaults; a null cache file means none. Fetches the registry (or reads
/// the cache file) before returning.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaNew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    endpoints: JObjectArray<'local, JString<'local>>,
    token: JString<'local>,
    connect_ms: jlong,
    per_phase_ms: jlong,
    cache_file: JString<'local>,
) -> jlong {
    unowned
        .with_env(|env| -> JResult<jlong> {
            let urls = string_array_arg(env, &endpoints, "endpoints", "endpoint")?;
            let token = opt_string_arg(env, &token)?;
            let cache_file = opt_string_arg(env, &cache_file)?;
            let opts = envid_lookup_options::from_parts(
                urls,
                token,
                millis(connect_ms),
                millis(per_phase_ms),
                None,
                None,
                None,
                None,
            )
            .with_cache_file(cache_file);
            Ok(Box::into_raw(Box::new(envid_replica::new(&opts)?)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void replicaFree(long handle)`; 0 is ignored. Stops the
/// replica's sync thread.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0 or an unfreed handle from replicaNew, no longer in use.
            unsafe { crate::replica::envid_replica_free(handle as usize as *mut _) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
}

/// `static native String[] replicaLookup(long handle, String ip)`: the
/// record, or null when the registry does not know the IP.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaLookup<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ip: JString<'local>,
) -> JObjectArray<'local, JString<'local>> {
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JString<'local>>> {
            let r = replica_handle(handle)?;
            let ip = string_arg(env, &ip, "ip")?;
            match r.lookup(&ip)? {
                Some(rec) => record_array(env, &rec),
                None => Ok(JObjectArray::default()),
            }
        })
        .resolve::<ThrowEnvid>()
}

/// `static native long[] replicaStats(long handle)`: version, records,
/// age ms (-1 when never synced), syncs, snapshots, deltas, sync errors,
/// from cache (0/1), cache errors, protected (0/1), held deletes, protected
/// since (Unix ms, 0 when not), normal records, cache state (the
/// `ENVID_CACHE_*` value), cache age ms (-1 when none).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaStats<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JLongArray<'local> {
    unowned
        .with_env(|env| -> JResult<JLongArray<'local>> {
            let s = replica_handle(handle)?.stats();
            let age = if s.age_ms == u64::MAX {
                -1
            } else {
                s.age_ms as jlong
            };
            let v = [
                s.version as jlong,
                s.records as jlong,
                age,
                s.syncs as jlong,
                s.snapshots as jlong,
                s.deltas as jlong,
                s.sync_errors as jlong,
                jlong::from(s.from_cache),
                s.cache_errors as jlong,
                jlong::from(s.is_protected),
                s.held_deletes as jlong,
                s.protected_since_ms as jlong,
                s.normal_records as jlong,
                jlong::from(s.cache_state),
                if s.cache_age_ms == u64::MAX {
                    -1
                } else {
                    s.cache_age_ms as jlong
                },
            ];
            let arr = JLongArray::new(env, v.len())?;
            arr.set_region(env, 0, &v)?;
            Ok(arr)
        })
        .resolve::<ThrowEnvid>()
}

// ---- Verifier --------------------------------------------------------------

/// Borrows the verifier behind a handle.
fn verifier_handle<'a>(h: jlong) -> JResult<&'a envid_verifier> {
    let p = h as usize as *const envid_verifier;
    // SAFETY: handles come from `verifierNew` and are freed by the Java
    // Verifier only after every call on it returned (it holds a lock).
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("verifier handle (closed?)").into())
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
    unowned
        .with_env(|env| -> JResult<jlong> {
            let urls = string_array_arg(env, &endpoints, "endpoints", "endpoint")?;
            let token = opt_string_arg(env, &token)?;
            let cache_file = opt_string_arg(env, &cache_file)?;
            let audience = opt_string_arg(env, &audience)?;
            let issuer = opt_string_arg(env, &issuer)?;
            let opts = envid_lookup_options::from_parts(
                urls,
                token,
                millis(connect_ms),
                millis(per_phase_ms),
                None,
                None,
                None,
                None,
            )
            .with_cache_file(cache_file);
            let v = envid_verifier::new(&opts, audience.as_deref(), issuer.as_deref())?;
            Ok(Box::into_raw(Box::new(v)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void verifierFree(long handle)`; 0 is ignored. Stops the
/// refresh thread.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_verifierFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0 or an unfreed handle from verifierNew, no longer in use.
            unsafe { crate::identity::envid_verifier_free(handle as usize as *mut _) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JString<'local>>> {
            let v = verifier_handle(handle)?;
            let token = string_arg(env, &token, "token")?;
            let c = v.verify(&token)?;
            let json = crate::identity::claims_to_json(&c)?;
            let (iat, nbf, exp) = (c.iat.to_string(), c.nbf.to_string(), c.exp.to_string());
            let env_type = c.env_type.as_ref().map(|t| t.as_str().to_string());
            let ip = c.ip.map(|i| i.to_string());
            string_array(
                env,
                &[
                    Some(&json),
                    Some(&c.iss),
                    Some(&c.sub),
                    Some(&c.aud),
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
        .resolve::<ThrowEnvid>()
}

// ---- Registrar -------------------------------------------------------------

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
