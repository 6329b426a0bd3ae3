//! `envid_environment`: the process-wide environment (`envid_current`), a
//! freshly loaded one (`envid_load`, with `envid_load_options`), its field
//! and label getters and its JSON.

use std::borrow::Cow;
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use envid::Environment;

use crate::error::{envid_result, Fail, FfiResult};
use crate::field::{envid_field, ENVID_FIELD_COUNT};
use crate::load_options::envid_load_options;
use crate::marshal::{obj_arg, owned_c_string, str_arg, write_out};
use crate::panic::{ffi_boundary, ffi_boundary_void};

/// The text of one field, precomputed.
#[derive(Debug)]
enum Slot {
    Absent,
    Text(CString),
    /// The value holds a NUL byte; only the JSON can carry it.
    HasNul,
}

impl Slot {
    fn text(&self, absent: impl FnOnce() -> Fail) -> FfiResult<&CString> {
        match self {
            Slot::Text(c) => Ok(c),
            Slot::Absent | Slot::HasNul => Err(absent()),
        }
    }
}

/// One label, precomputed.
#[derive(Debug)]
struct Label {
    key: String,
    c_key: Slot,
    value: Slot,
}

/// An identified environment, each field kept as a C string once asked for.
///
/// Obtained from `envid_current` (borrowed, lives as long as the process) or
/// `envid_load` (owned, freed with `envid_environment_free`). Immutable and
/// safe to share between threads.
pub struct envid_environment {
    env: EnvRef,
    /// Each field as a C string, made on first use (see `value`).
    fields: [OnceLock<Slot>; ENVID_FIELD_COUNT],
    /// Sorted by key.
    labels: Vec<Label>,
    release_batch: Option<u32>,
    /// False for the process-wide environment, which must never be freed.
    owned: bool,
}

#[derive(Debug)]
enum EnvRef {
    Static(&'static Environment),
    Owned(Box<Environment>),
}

impl std::fmt::Debug for envid_environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("envid_environment")
            .field("env", &self.env)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

fn slot(v: Option<&str>) -> Slot {
    match v {
        None => Slot::Absent,
        Some(s) => match CString::new(s) {
            Ok(c) => Slot::Text(c),
            Err(_) => Slot::HasNul,
        },
    }
}

impl envid_environment {
    /// A freshly loaded environment, owned by the caller of `envid_load`
    /// (or by a Java `Environment`).
    pub(crate) fn owned(env: Environment) -> envid_environment {
        envid_environment::new(EnvRef::Owned(Box::new(env)), true)
    }

    fn new(env: EnvRef, owned: bool) -> envid_environment {
        let e: &Environment = match &env {
            EnvRef::Static(e) => e,
            EnvRef::Owned(e) => e,
        };
        // BTreeMap iteration is in key order, so the Vec is sorted.
        let labels = e
            .labels()
            .iter()
            .map(|(k, v)| Label {
                key: k.clone(),
                c_key: slot(Some(k)),
                value: slot(Some(v)),
            })
            .collect();
        let release_batch = e.release().and_then(|r| r.batch);
        envid_environment {
            env,
            fields: std::array::from_fn(|_| OnceLock::new()),
            labels,
            release_batch,
            owned,
        }
    }

    /// One field's value. Fields are converted on first use, as the library
    /// runs its probes (hostname, IP, container, virtualization) on first use.
    fn value(&self, f: envid_field) -> Option<Cow<'_, str>> {
        fn text(s: Option<&str>) -> Option<Cow<'_, str>> {
            s.map(Cow::Borrowed)
        }
        use envid_field::*;
        let e = self.environment();
        let release = || e.release();
        let k8s = || e.k8s();
        let container = || e.container();
        match f {
            ENVID_FIELD_APP => text(e.app()),
            ENVID_FIELD_ENV => text(Some(e.env())),
            ENVID_FIELD_ENV_TYPE => text(Some(e.env_type().as_str())),
            ENVID_FIELD_SUB_ENV => text(e.sub_env()),
            ENVID_FIELD_IDC => text(Some(e.idc())),
            ENVID_FIELD_PLATFORM => text(Some(e.platform().as_str())),
            ENVID_FIELD_HOSTNAME => text(e.hostname()),
            ENVID_FIELD_IP => e.ip().map(|ip| Cow::Owned(ip.to_string())),
            ENVID_FIELD_RELEASE_ID => text(release().and_then(|r| r.id.as_deref())),
            ENVID_FIELD_RELEASE_VERSION => text(release().and_then(|r| r.version.as_deref())),
            ENVID_FIELD_RELEASE_BATCH => self.release_batch.map(|b| Cow::Owned(b.to_string())),
            ENVID_FIELD_RELEASE_DEPLOYED_AT => {
                text(release().and_then(|r| r.deployed_at.as_deref()))
            }
            ENVID_FIELD_K8S_CLUSTER => text(k8s().and_then(|k| k.cluster.as_deref())),
            ENVID_FIELD_K8S_NAMESPACE => text(k8s().and_then(|k| k.namespace.as_deref())),
            ENVID_FIELD_K8S_POD => text(k8s().and_then(|k| k.pod.as_deref())),
            ENVID_FIELD_K8S_NODE => text(k8s().and_then(|k| k.node.as_deref())),
            ENVID_FIELD_K8S_WORKLOAD => text(k8s().and_then(|k| k.workload.as_deref())),
            ENVID_FIELD_CONTAINER_RUNTIME => text(
                container()
                    .and_then(|c| c.runtime.as_ref())
                    .map(|r| r.as_str()),
            ),
            ENVID_FIELD_CONTAINER_ID => text(container().and_then(|c| c.id.as_deref())),
            ENVID_FIELD_VIRTUALIZATION => text(e.virtualization()),
            ENVID_FIELD_K8S_POD_UID => text(k8s().and_then(|k| k.pod_uid.as_deref())),
        }
    }

    /// The library's environment behind this object.
    pub fn environment(&self) -> &Environment {
        match &self.env {
            EnvRef::Static(e) => e,
            EnvRef::Owned(e) => e,
        }
    }

    /// One field as a borrowed C string.
    #[inline]
    pub fn field(&self, f: envid_field) -> FfiResult<&CString> {
        let slot = self.fields[f as usize].get_or_init(|| slot(self.value(f).as_deref()));
        match slot {
            Slot::Text(c) => Ok(c),
            Slot::Absent => Err(Fail::not_found(format!("{} has no value", f.name()))),
            Slot::HasNul => Err(nul_fail(f.name())),
        }
    }

    /// One label as a borrowed C string.
    pub fn label(&self, key: &str) -> FfiResult<&CString> {
        match self.labels.binary_search_by(|l| l.key.as_str().cmp(key)) {
            Ok(i) => match &self.labels[i].value {
                Slot::Text(c) => Ok(c),
                _ => Err(nul_fail(&format!("label {key:?}"))),
            },
            Err(_) => Err(Fail::not_found(format!("no label {key:?}"))),
        }
    }

    /// The labels, in key order.
    pub fn labels(&self) -> &envid::model::Labels {
        self.environment().labels()
    }

    /// The environment as JSON (the library's `report`).
    pub fn to_json(&self, secrets: bool, explain: bool) -> FfiResult<String> {
        serde_json::to_string(&self.environment().report(secrets, explain))
            .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))
    }

    /// Whether this object may be freed (false for the process-wide one).
    pub fn is_owned(&self) -> bool {
        self.owned
    }
}

fn nul_fail(what: &str) -> Fail {
    Fail::invalid(format!(
        "{what} holds a NUL byte and cannot be returned as a C string; read it from the JSON"
    ))
}

static CURRENT: OnceLock<envid_environment> = OnceLock::new();

/// The process-wide environment object (loads it on first use; a failed
/// load is not cached).
pub fn current() -> FfiResult<&'static envid_environment> {
    if let Some(c) = CURRENT.get() {
        return Ok(c);
    }
    let env = envid::current()?;
    // Two threads may race here; both build the same view, one is kept.
    Ok(CURRENT.get_or_init(|| envid_environment::new(EnvRef::Static(env), false)))
}

/// The JVM's process-wide environment: like [`current`], but loaded with the
/// JVM's `envid.*` system properties, which rank above `ENVID_*` (the C
/// API has no such properties, so the two are kept apart).
pub fn jvm_current(properties: Vec<(String, String)>) -> FfiResult<&'static envid_environment> {
    static JVM_CURRENT: OnceLock<envid_environment> = OnceLock::new();
    if let Some(c) = JVM_CURRENT.get() {
        return Ok(c);
    }
    let env = Environment::builder()
        .system_properties(properties)
        .load()?;
    // Not owned: `freeEnvironment` ignores it, as it ignores `current`.
    Ok(JVM_CURRENT.get_or_init(|| envid_environment::new(EnvRef::Owned(Box::new(env)), false)))
}

/// Borrows an environment argument.
///
/// # Safety
/// `p` must be NULL or a live `envid_environment`.
#[inline]
pub unsafe fn env_arg<'a>(p: *const envid_environment) -> FfiResult<&'a envid_environment> {
    // SAFETY: by contract `p` is NULL or points to a live object.
    unsafe { obj_arg(p, "env") }
}

/// Gets the process-wide environment: loaded once with the default settings
/// (the process environment variables, `ENVID_DESCRIPTOR` or the default
/// descriptor paths, the built-in hostname rules) and then cached.
///
/// Ownership: `*out` is borrowed and valid until the process exits; never
/// free it (`envid_environment_free` ignores it). A failed load is not
/// cached: the next call tries again, so a process that starts before its
/// descriptor is written recovers once it is.
///
/// # Safety
/// `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_current(out: *mut *const envid_environment) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let c = current()?;
        // SAFETY: checked non-null above; writable by contract.
        unsafe { write_out(out, c as *const envid_environment, "out") }
    })
}

/// Loads a fresh environment (not cached; probes run now). `opts` may be
/// NULL for the defaults; it is only read and may be freed afterwards.
///
/// Errors: `ENVID_IO` (descriptor or rules file unreadable or missing),
/// `ENVID_DESCRIPTOR`, `ENVID_RULES`, `ENVID_INVALID_VALUE`,
/// `ENVID_UNIDENTIFIED`; the message says which file, line and column.
///
/// Ownership: `*out` is owned by the caller; free it with
/// `envid_environment_free`. Strings borrowed from it live as long as it.
///
/// # Safety
/// `opts` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_load(
    opts: *const envid_load_options,
    out: *mut *mut envid_environment,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or a live options object by contract.
        let env = match unsafe { opts.as_ref() } {
            Some(o) => envid_environment::owned(o.load()?),
            None => envid_environment::owned(envid_load_options::default().load()?),
        };
        let p = Box::into_raw(Box::new(env));
        // SAFETY: checked non-null above; writable by contract.
        unsafe { write_out(out, p, "out") }
    })
}

/// Frees an environment from `envid_load`. NULL and the process-wide
/// environment (from `envid_current`) are ignored. Strings borrowed from it
/// become invalid.
///
/// # Safety
/// `env` must be NULL, the process-wide environment, or from `envid_load`
/// and not yet freed; no other thread may still use it.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_free(env: *const envid_environment) {
    ffi_boundary_void(|| {
        // SAFETY: NULL or live by contract.
        let Some(e) = (unsafe { env.as_ref() }) else {
            return;
        };
        if e.owned {
            // SAFETY: owned objects come from Box::into_raw in envid_load.
            drop(unsafe { Box::from_raw(env.cast_mut()) });
        }
    })
}

/// Reads one field as a borrowed, NUL-terminated UTF-8 string.
///
/// Returns `ENVID_NOT_FOUND` (and writes NULL) when the field has no value,
/// `ENVID_INVALID_INPUT` for a `field` that is not an `envid_field` or a
/// value that holds a NUL byte.
///
/// Ownership: `*out` is borrowed from `env` and valid as long as `env` (for
/// the process-wide environment: for the life of the process). Do not free it.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_field(
    env: *const envid_environment,
    field: std::ffi::c_int,
    out: *mut *const c_char,
) -> envid_result {
    ffi_boundary(|| {
        let f = envid_field::from_code(field)
            .ok_or_else(|| Fail::invalid(format!("{field} is not an envid_field")))?;
        // SAFETY: forwarded contracts.
        unsafe { get_field(env, f, out) }
    })
}

/// The body of every field getter.
#[inline]
unsafe fn get_field(
    env: *const envid_environment,
    f: envid_field,
    out: *mut *const c_char,
) -> FfiResult {
    if out.is_null() {
        return Err(Fail::null("out"));
    }
    // SAFETY: NULL or live by contract.
    let e = unsafe { env_arg(env) }?;
    let value = e.field(f);
    let p = value.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: checked non-null above; writable by contract.
    unsafe { out.write(p) };
    value.map(|_| ())
}

// Written out (not generated by a macro) so that cbindgen sees them.
/// The application code (`flight_order`); optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_app(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_APP, out) })
}

/// The environment name (`prod`, `beta`, `betanoah`); always present.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_env(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_ENV, out) })
}

/// The class of `env`: `prod`, `beta`, `dev`, `test`, `local`, or the
/// lower-case name when the alias table does not know it; always present.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_env_type(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_ENV_TYPE, out) })
}

/// The sub environment / build group (`noahauto-2`); optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_sub_env(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_SUB_ENV, out) })
}

/// The data center (`cn0`); always present.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_idc(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_IDC, out) })
}

/// The host kind: `container`, `kvm`, `physical` or `unknown`; always present.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_platform(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_PLATFORM, out) })
}

/// This host's name; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_hostname(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_HOSTNAME, out) })
}

/// The primary IP address, as text (`10.1.2.3`, `fe80::1`); optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_ip(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_IP, out) })
}

/// The release id (`r-20261122-0042`); optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_release_id(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_RELEASE_ID, out) })
}

/// The application version of the release (`2.14.0`); optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_release_version(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_RELEASE_VERSION, out) })
}

/// The deployment time, RFC 3339 as written; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_release_deployed_at(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_RELEASE_DEPLOYED_AT, out) })
}

/// The Kubernetes cluster; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_k8s_cluster(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_K8S_CLUSTER, out) })
}

/// The Kubernetes namespace; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_k8s_namespace(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_K8S_NAMESPACE, out) })
}

/// The pod name; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_k8s_pod(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_K8S_POD, out) })
}

/// The node name; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_k8s_node(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_K8S_NODE, out) })
}

/// The workload (deployment, statefulset) name; optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_k8s_workload(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_K8S_WORKLOAD, out) })
}

/// The pod's UID (from the downward-API volume's `uid` file or `POD_UID`);
/// optional.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`; never
/// free it. `ENVID_NOT_FOUND` (and `*out = NULL`) when absent.
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_k8s_pod_uid(
    env: *const envid_environment,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_field(env, envid_field::ENVID_FIELD_K8S_POD_UID, out) })
}

/// The release's rollout batch; `ENVID_NOT_FOUND` when absent (`*out` untouched).
///
/// # Safety
/// `env` NULL or live; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_release_batch(
    env: *const envid_environment,
    out: *mut u32,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let e = unsafe { env_arg(env) }?;
        let b = e
            .release_batch
            .ok_or_else(|| Fail::not_found("release.batch has no value"))?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, b, "out") }
    })
}

/// One label by key, as a borrowed string; `ENVID_NOT_FOUND` (and
/// `*out = NULL`) when there is no such label.
///
/// Ownership: `*out` is borrowed from `env`, valid as long as `env`.
///
/// # Safety
/// `env` NULL or live; `key` NULL or NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_label(
    env: *const envid_environment,
    key: *const c_char,
    out: *mut *const c_char,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let e = unsafe { env_arg(env) }?;
        // SAFETY: NULL or NUL-terminated by contract.
        let key = unsafe { str_arg(key, "key") }?;
        let value = e.label(key);
        let p = value.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: checked non-null; writable by contract.
        unsafe { out.write(p) };
        value.map(|_| ())
    })
}

/// The number of labels.
///
/// # Safety
/// `env` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_label_count(
    env: *const envid_environment,
    out: *mut usize,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let e = unsafe { env_arg(env) }?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_out(out, e.labels.len(), "out") }
    })
}

/// The label at `index` (in key order, `0 <= index < count`): its key and
/// value as borrowed strings, valid as long as `env`. `ENVID_NOT_FOUND` when
/// `index` is out of range.
///
/// # Safety
/// `env` NULL or live; `key_out`, `value_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_label_at(
    env: *const envid_environment,
    index: usize,
    key_out: *mut *const c_char,
    value_out: *mut *const c_char,
) -> envid_result {
    ffi_boundary(|| {
        if key_out.is_null() || value_out.is_null() {
            return Err(Fail::null("key_out and value_out"));
        }
        // SAFETY: NULL or live by contract.
        let e = unsafe { env_arg(env) }?;
        let l = e
            .labels
            .get(index)
            .ok_or_else(|| Fail::not_found(format!("no label at index {index}")))?;
        let key = l.c_key.text(|| nul_fail("a label key"))?;
        let v = l.value.text(|| nul_fail(&format!("label {:?}", l.key)))?;
        // SAFETY: both checked non-null; writable by contract.
        unsafe {
            key_out.write(key.as_ptr());
            value_out.write(v.as_ptr());
        }
        Ok(())
    })
}

/// The environment as a JSON object: the fields of the model (see the
/// README), `token` only when `secrets`, and a `sources` map (where each
/// field came from) when `explain`. Same text as the Rust library's
/// `Environment::report(secrets, explain)` serialized with serde_json.
///
/// Ownership: `*out` is owned by the caller; free it with `envid_string_free`.
///
/// # Safety
/// `env` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_environment_to_json(
    env: *const envid_environment,
    secrets: bool,
    explain: bool,
    out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let e = unsafe { env_arg(env) }?;
        let s = owned_c_string(e.to_json(secrets, explain)?)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, s, "out") }
    })
}
